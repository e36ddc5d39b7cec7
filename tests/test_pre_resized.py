"""Pre-resized frame records (`frame_size=227` configs such as `every5_227`) equal resizing at read time.

One generated corpus (frames larger than 227 in both orientations, so that the resize shrinks with
antialiasing, and small ones that it enlarges) is built twice per setting: the ordinary records
(frames at their decoded size) and the pre-resized ones. Read through `emonet_tf.data`, the model
inputs are identical (max difference 0), and so are the relu7 features of a random-weight
EmoNetClassifier in the fc7 cache; for the default MATLAB resize from JPEG q95 frames and for a
`tf.image` method (bicubic) from lossless PNG frames. A model whose preprocessor resizes differently
is refused.
"""

from __future__ import annotations

import json
import pathlib

import numpy as np
import pytest

tfds = pytest.importorskip("tensorflow_datasets")
cv2 = pytest.importorskip("cv2")

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

from _tfds_helpers import build_dataset  # noqa: E402
from emonet_tf import EmoNetClassifier, data, features, preprocessing  # noqa: E402
from emonet_tf.preprocessor import EmoNetPreprocessor  # noqa: E402
from tfds_builders import make_dummy_data as dummy  # noqa: E402
from tfds_builders import video_frames as vf  # noqa: E402
from tfds_builders.video_folder import video_folder_dataset_builder as folder  # noqa: E402

#: (relative path, width, height, frames): wider and taller than 227 (shrunk: MATLAB resizes the
#: dimension with the smaller scale first, so both orders run) and smaller (enlarged).
VIDEOS = (
    ("calm/wide.mp4", 300, 232, 7),
    ("calm/small.avi", 64, 48, 6),
    ("tense/tall.mp4", 236, 304, 7),
    ("tense/tiny.mp4", 48, 64, 6),
)


def textured_frames(n: int, width: int, height: int, seed: int) -> list[np.ndarray]:
    """Frames with edges and noise (so that JPEG loss and the resize kernels both show), moving over time."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    base = rng.integers(0, 256, (height // 4 + 1, width // 4 + 1, 3), dtype=np.uint8)
    base = cv2.resize(base, (width, height), interpolation=cv2.INTER_NEAREST).astype(np.float32)
    frames = []
    for i in range(n):
        wave = 60.0 * np.sin((x + 7 * i) / 9.0)[..., None] + 40.0 * np.cos((y - 5 * i) / 13.0)[..., None]
        frames.append(np.clip(0.6 * base + wave + 50.0, 0, 255).astype(np.uint8))
    return frames


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> pathlib.Path:
    root = tmp_path_factory.mktemp("pre_resized_corpus")
    for i, (rel, width, height, n) in enumerate(VIDEOS):
        dummy.write_video(root / rel, 10.0, textured_frames(n, width, height, seed=i))
    return root


def build(corpus, data_dir, name, **fields):
    config = folder.VideoFolderConfig(name=name, sampling="every5", **fields)
    return build_dataset(folder.Builder, data_dir, config, manual_dir=corpus)


@pytest.fixture(scope="module")
def builds(corpus, tmp_path_factory):
    """setting -> (ordinary builder, pre-resized builder, the preprocessor of the setting)."""
    root = tmp_path_factory.mktemp("pre_resized_builds")
    bicubic = EmoNetPreprocessor(resize_method="bicubic")
    return {
        "matlab from jpeg": (
            build_dataset(folder.Builder, root, "every5", manual_dir=corpus),
            build_dataset(folder.Builder, root, "every5_227", manual_dir=corpus),
            EmoNetPreprocessor(),
        ),
        "bicubic from png": (
            build(corpus, root, "every5_png", frame_encoding="png"),
            build(
                corpus, root, "every5_png_227_bicubic", frame_encoding="png", frame_size=227, resize_method="bicubic"
            ),
            bicubic,
        ),
    }


def inputs(builder, preprocessor):
    """(images, labels, video ids) of the whole `train` split through eval_dataset, in stored order."""
    info = data.inspect_dataset(str(builder.data_path), splits=("train",))
    batches = list(data.eval_dataset(info, "train", batch_size=8, preprocessor=preprocessor, with_video_id=True))
    return tuple(np.concatenate([b[i].numpy() for b in batches]) for i in range(3))


def test_resize_of_a_227_image_is_the_identity_for_every_method():
    image = tf.constant(np.random.default_rng(0).integers(0, 256, (227, 227, 3)).astype(np.float32))
    for method in preprocessing.RESIZE_METHODS:
        for antialias in (True, False):
            out = preprocessing.resize_image(image, method=method, antialias=antialias)
            np.testing.assert_array_equal(out.numpy(), image.numpy(), err_msg=method)


def test_the_resize_output_is_integer_so_uint8_png_stores_it_exactly(corpus):
    frame = textured_frames(1, 300, 232, seed=0)[0]
    for method in ("matlab", "bicubic", "bilinear"):
        out = EmoNetPreprocessor(resize_method=method).preprocess_image_bytes(tf.constant(vf.encode_jpeg(frame)))
        out = out.numpy()
        assert out.dtype == np.float32 and out.min() >= 0 and out.max() <= 255
        np.testing.assert_array_equal(out, np.round(out))
        stored = vf.pre_resize(vf.encode_jpeg(frame), method)
        assert stored.dtype == np.uint8
        np.testing.assert_array_equal(stored.astype(np.float32), out)
        decoded = preprocessing.decode_image(tf.constant(vf.encode_png(stored))).numpy()
        np.testing.assert_array_equal(decoded, out)


@pytest.mark.parametrize("setting", ["matlab from jpeg", "bicubic from png"])
def test_pre_resized_records_give_the_same_inputs_and_fc7_as_resizing_at_read_time(builds, setting, tmp_path):
    ordinary, pre, preprocessor = builds[setting]
    x_read, y_read, ids_read = inputs(ordinary, preprocessor)
    x_pre, y_pre, ids_pre = inputs(pre, preprocessor)
    assert x_read.shape == x_pre.shape == (2 + 2 + 2 + 2, 227, 227, 3)
    np.testing.assert_array_equal(ids_pre, ids_read)
    np.testing.assert_array_equal(y_pre, y_read)
    diff = np.abs(x_pre - x_read).max()
    print(f"{setting}: max |pre-resized - resized at read time| = {diff} over {x_pre.shape[0]} frames")
    assert diff == 0
    # The frames are not trivial: the resize changed them, and differently per frame.
    assert len({x.tobytes() for x in x_pre}) == x_pre.shape[0]

    # fc7 (relu7) of a random-weight model, through the feature cache as training builds it.
    keras.utils.set_random_seed(0)
    backbone = EmoNetClassifier(num_classes=2).backbone
    caches = {}
    for name, builder in (("read", ordinary), ("pre", pre)):
        info = data.inspect_dataset(str(builder.data_path), splits=("train",))
        features.build_feature_cache(
            backbone, info, "train", str(tmp_path / name), fingerprint="f", batch_size=4, preprocessor=preprocessor
        )
        caches[name] = features.load_cache(str(tmp_path / name))
    fc7_read, fc7_pre = caches["read"][0], caches["pre"][0]
    assert np.abs(fc7_read).max() > 0
    print(f"{setting}: max |fc7 pre-resized - fc7 resized at read time| = {np.abs(fc7_pre - fc7_read).max()}")
    np.testing.assert_array_equal(fc7_pre, fc7_read)
    np.testing.assert_array_equal(caches["pre"][1], caches["read"][1])


def test_metadata_records_the_resize_and_the_records_are_227_png(builds):
    _, pre, _ = builds["matlab from jpeg"]
    reloaded = tfds.builder_from_directory(str(pre.data_path))
    meta = dict(reloaded.info.metadata)[vf.PRE_RESIZED_KEY]
    assert meta["frame_size"] == 227 and meta["stored_encoding"] == "png" and meta["source_encoding"] == "jpeg"
    assert meta["jpeg_quality"] == vf.JPEG_QUALITY
    assert EmoNetPreprocessor.from_config(meta["preprocessor"]) == EmoNetPreprocessor()
    assert reloaded.info.features["image"].shape == (227, 227, 3)
    info = data.inspect_dataset(str(pre.data_path))
    assert info.pre_resized_with == EmoNetPreprocessor()
    summary = vf.read_summary(pre.data_path)
    assert summary[vf.PRE_RESIZED_KEY] == json.loads(json.dumps(meta))
    ds = reloaded.as_dataset(split="train", decoders={"image": tfds.decode.SkipDecoding()})
    for ex in tfds.as_numpy(ds):
        assert ex["image"][:8] == b"\x89PNG\r\n\x1a\n"
        assert cv2.imdecode(np.frombuffer(ex["image"], np.uint8), cv2.IMREAD_UNCHANGED).shape == (227, 227, 3)
    # The ordinary configs write no metadata and read as before.
    ordinary, _, _ = builds["matlab from jpeg"]
    assert data.inspect_dataset(str(ordinary.data_path)).pre_resized_with is None
    assert not (pathlib.Path(ordinary.data_path) / "metadata.json").exists()


def test_a_model_that_resizes_differently_is_refused(builds):
    _, pre, _ = builds["matlab from jpeg"]
    info = data.inspect_dataset(str(pre.data_path), splits=("train",))
    for other in (EmoNetPreprocessor(resize_method="bilinear"), EmoNetPreprocessor(resize_method="bicubic")):
        with pytest.raises(data.DatasetError, match="already resized to 227x227.*resize matlab.*resize b"):
            data.eval_dataset(info, "train", preprocessor=other)
        with pytest.raises(data.DatasetError, match="resizes differently"):
            data.train_dataset(info, "train", global_batch_size=2, seed=0, epoch=0, preprocessor=other)
    with pytest.raises(data.DatasetError, match="resizes differently"):
        data.eval_dataset(info, "train", resize_method="area")
    # antialias does not change MATLAB's resize: accepted.
    data.eval_dataset(info, "train", preprocessor=EmoNetPreprocessor(antialias=False))
    _, pre_bicubic, _ = builds["bicubic from png"]
    info = data.inspect_dataset(str(pre_bicubic.data_path), splits=("train",))
    for other in (EmoNetPreprocessor(), EmoNetPreprocessor(resize_method="bicubic", antialias=False)):
        with pytest.raises(data.DatasetError, match="resizes differently"):
            data.eval_dataset(info, "train", preprocessor=other)


def test_configs_and_bad_frame_sizes():
    names = {c.name: c for c in folder.Builder.BUILDER_CONFIGS}
    assert {"every5_227", "fps10_227", "all_227"} <= set(names)
    assert names["every5_227"].frame_size == 227 and names["every5"].frame_size is None
    for bad in (224, 227.0, "227"):
        with pytest.raises(ValueError, match="frame_size"):
            vf.check_frame_size(bad)
    with pytest.raises(ValueError, match="Unknown resize method 'cubic'"):
        folder.Builder(config=folder.VideoFolderConfig(name="bad", frame_size=227, resize_method="cubic"))
    with pytest.raises(ValueError, match="frame_size"):
        folder.Builder(config=folder.VideoFolderConfig(name="bad", frame_size=224))


def test_beam_build_writes_the_same_records(builds, corpus, tmp_path):
    _, plain, _ = builds["matlab from jpeg"]
    beam = build_dataset(folder.Builder, tmp_path, "every5_227", manual_dir=corpus, beam=True)
    files = sorted(p.name for p in pathlib.Path(plain.data_path).glob("*.tfrecord*"))
    assert files
    for name in files:
        assert (pathlib.Path(beam.data_path) / name).read_bytes() == (pathlib.Path(plain.data_path) / name).read_bytes()
    assert dict(beam.info.metadata) == dict(plain.info.metadata)


def test_extract_and_predictions_read_pre_resized_records_only_with_the_same_resize(builds):
    """`emonet extract --tfds` and `predictions.prediction_batches` do not resize 227x227 frames again
    either: the same features as the ordinary records with the same resize, a refusal with another."""
    import keras

    from emonet_tf import EmoNet, EmoNetClassifier, extract, predictions

    ordinary, pre, _ = builds["matlab from jpeg"]
    data_dir = str(pathlib.Path(pre.data_path).parents[2])
    keras.utils.set_random_seed(2)
    emonet = EmoNet(EmoNetClassifier())
    out = pathlib.Path(data_dir).parent / "extract_pre_resized"
    runs = {
        name: extract.extract(
            [],
            str(out / name),
            emonet=emonet,
            layers=["fc7"],
            tfds=f"tfds:video_folder/{name}:train",
            data_dir=data_dir,
        )
        for name in ("every5", "every5_227")
    }
    a, b = runs["every5"], runs["every5_227"]
    assert len(a.keys()) == len(b.keys()) > 0
    np.testing.assert_array_equal(a.keys().frame_index, b.keys().frame_index)
    np.testing.assert_array_equal(a.layer("fc7"), b.layer("fc7"))
    other = EmoNet(emonet.model, resize_method="bilinear")
    with pytest.raises(ValueError, match="already resized to 227x227.*resizes differently"):
        extract.extract(
            [], str(out / "refused"), emonet=other, tfds="tfds:video_folder/every5_227:train", data_dir=data_dir
        )
    assert not (out / "refused").exists()
    info = data.inspect_dataset(str(pre.data_path), splits=("train",))
    with pytest.raises(data.DatasetError, match="resizes differently"):
        predictions.prediction_batches(info, "train", resize_method="bilinear")


def test_train_py_refuses_another_resize_before_writing_anything(builds, tmp_path):
    """A refused run writes nothing (docs/training.md, "Bad input"): the pre-resize check runs in
    prepare_run, before run_config.json and the feature cache (found by a fresh user: both were written,
    and the corrected rerun in the same model_dir was then refused as "another run")."""
    from emonet_tf import training

    _, pre, _ = builds["matlab from jpeg"]
    model_dir = tmp_path / "run"

    def config(resize_method):
        return training.TrainConfig(
            dataset=str(pre.data_path),
            model_dir=str(model_dir),
            init="scratch",
            resize_method=resize_method,
            global_batch_size=2,
            epochs=1,
            eval_split="",
            export=False,
            max_steps=1,
        )

    with pytest.raises(data.DatasetError, match="resizes differently"):
        training.prepare_run(config("bilinear"))
    with pytest.raises(data.DatasetError, match="resizes differently"):
        training.train_and_evaluate(config("bilinear"))
    assert not model_dir.exists()
    assert training.train_and_evaluate(config("matlab"))["step"] == 1  # the corrected run, same model_dir
