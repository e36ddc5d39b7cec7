"""The preprocessing contract travels with the model: config, .keras, WeightSet, training, SavedModel, TFLite.

The end-to-end check trains with non-default preprocessing (bilinear, no antialias), exports, and serves the
SavedModel from a process that imports TensorFlow only: it must resize as training did, not as the default.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import textwrap
import zipfile

import keras
import numpy as np
import pytest

from _training_helpers import make_dataset
from emonet_tf import EmoNet, EmoNetClassifier, export, features, training
from emonet_tf.preprocessor import EmoNetPreprocessor, resolve

# Large photos, so that the resize method matters (a 227x227 image is not resampled at all).
SERVED = ("rgb_jpeg", "rgb_png", "wide_jpeg", "gray_png")
NON_DEFAULT = dict(resize_method="bilinear", antialias=False)


def test_config_round_trip_and_validation():
    p = EmoNetPreprocessor(**NON_DEFAULT)
    assert EmoNetPreprocessor.from_config(p.get_config()) == p
    assert EmoNetPreprocessor.from_json(p.to_json()) == p
    assert p != EmoNetPreprocessor()
    assert p.describe() == "resize bilinear, antialias off, JPEG INTEGER_ACCURATE, RGB"
    assert resolve(None) == EmoNetPreprocessor()
    assert resolve(p, resize_method="area") == EmoNetPreprocessor(resize_method="area", antialias=False)
    assert resolve(p, antialias=None) == p  # None keeps the setting
    for bad, match in (
        (dict(resize_method="cubic"), "Unknown resize method 'cubic'"),
        (dict(image_size=224), "image_size must be 227"),
        (dict(jpeg_dct_method="INTEGER_FAST"), "jpeg_dct_method='INTEGER_FAST' is not supported"),
        (dict(channel_order="bgr"), "channel_order='bgr' is not supported"),
    ):
        with pytest.raises(ValueError, match=match):
            EmoNetPreprocessor(**bad)
    with pytest.raises(ValueError, match=r"Unknown preprocessing settings \['gamma'\]"):
        EmoNetPreprocessor.from_config({"gamma": 2.2})


def test_host_methods_are_the_preprocessing_functions(image_files):
    from emonet_tf import preprocessing

    p = EmoNetPreprocessor(**NON_DEFAULT)
    path = image_files["rgb_jpeg"]
    want = preprocessing.load_image(path, method="bilinear", antialias=False)
    np.testing.assert_array_equal(p.load_image(path), want)
    np.testing.assert_array_equal(p(str(path)), want)
    np.testing.assert_array_equal(p(path.read_bytes()), want)
    assert np.abs(want - EmoNetPreprocessor().load_image(path)).max() > 1  # the setting is used


def test_items_that_are_no_image_are_refused_by_type():
    import tensorflow as tf

    from emonet_tf.preprocessor import unsupported_input

    p = EmoNetPreprocessor()
    for item, kind in [(42, "int"), (None, "NoneType"), (2.5, "float"), (True, "bool"), (np.array(7), "ndarray")]:
        message = unsupported_input(item)
        assert message is not None and message.startswith(f"unsupported input type {kind}"), (item, message)
        with pytest.raises(TypeError, match=f"unsupported input type {kind}"):
            p(item)
    assert "unsupported input type dict" in unsupported_input({"a": 1})
    assert "unsupported input type list" in unsupported_input([[1, 2], [3]])  # ragged: not an image
    assert "unsupported input type EagerTensor of shape ()" in unsupported_input(tf.constant(3.0))
    image = np.random.default_rng(1).integers(0, 256, (30, 40, 3), dtype=np.uint8)
    for good in (image, image.tolist(), tf.constant(image), "x.jpg", b"\xff\xd8", bytearray(b"x"), np.zeros(3)):
        assert unsupported_input(good) is None
    np.testing.assert_array_equal(p(image.tolist()), p(image))


def test_keras_file_and_weight_set_keep_the_preprocessor(tmp_path, image_files):
    from emonet_tf import weights

    keras.utils.set_random_seed(3)
    model = EmoNetClassifier(num_classes=3, preprocessor=EmoNetPreprocessor(**NON_DEFAULT))
    path = str(tmp_path / "m.keras")
    model.save(path)
    with zipfile.ZipFile(path) as z:
        saved = json.loads(z.read("config.json"))["config"]["preprocessor"]["config"]
    assert saved["resize_method"] == "bilinear" and saved["antialias"] is False
    assert weights.read_weights(path).preprocessing == EmoNetPreprocessor(**NON_DEFAULT).get_config()
    emonet = EmoNet.from_weights(path)
    assert emonet.preprocessor == EmoNetPreprocessor(**NON_DEFAULT)
    # Converting the file again (emonet convert) keeps it too.
    again = str(tmp_path / "again.keras")
    weights.convert(path, again)
    assert EmoNet.from_weights(again).preprocessor == EmoNetPreprocessor(**NON_DEFAULT)
    # An explicit override is for this EmoNet only; the model keeps its own.
    override = EmoNet.from_weights(path, resize_method="matlab")
    assert override.resize_method == "matlab" and override.antialias is False
    assert override.model.preprocessor == EmoNetPreprocessor(**NON_DEFAULT)
    # Predictions on files use the saved preprocessor.
    image = EmoNetPreprocessor(**NON_DEFAULT).load_image(image_files["rgb_jpeg"])
    got = emonet.predict_images([image_files["rgb_jpeg"]])[0].logits
    np.testing.assert_allclose(got, emonet.predict_logits(image[None])[0], atol=1e-5)


def test_keras_file_without_a_preprocessor_loads_with_the_default(tmp_path):
    """Files saved before the preprocessor was part of the config were all made with the default."""
    keras.utils.set_random_seed(4)
    path, old = str(tmp_path / "new.keras"), str(tmp_path / "old.keras")
    EmoNetClassifier(num_classes=2, preprocessor=EmoNetPreprocessor(**NON_DEFAULT)).save(path)
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(old, "w") as dst:
        for item in src.infolist():
            data = src.read(item)
            if item.filename == "config.json":
                config = json.loads(data)
                del config["config"]["preprocessor"]
                data = json.dumps(config).encode()
            dst.writestr(item, data)
    assert keras.saving.load_model(old).preprocessor == EmoNetPreprocessor()


def test_feature_cache_fingerprint_covers_every_setting(tmp_path):
    from emonet_tf import data

    builder = make_dataset(str(tmp_path), videos_per_class=(1, 1), frames_per_video=1)
    info = data.inspect_dataset(builder.data_dir, splits=("train",))
    prints = {
        features.cache_fingerprint("h", info, "train", p, "float32")
        for p in (
            EmoNetPreprocessor(),
            EmoNetPreprocessor(antialias=False),
            EmoNetPreprocessor(resize_method="bicubic"),
            EmoNetPreprocessor(exif_orientation=True),
        )
    }
    assert len(prints) == 4


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A head trained with bilinear, non-antialiased resizing, evaluated, exported."""
    root = tmp_path_factory.mktemp("trained")
    builder = make_dataset(str(root / "tfds"), videos_per_class=(2, 1), frames_per_video=2)
    config = training.TrainConfig(
        dataset=builder.data_dir,
        model_dir=str(root / "run"),
        init="scratch",
        global_batch_size=4,
        epochs=2,
        eval_split="test",
        export=True,
        log_every=1,
        checkpoint_every=100,
        seed=5,
        progress=False,
        eval_predictions="eval.csv",
        **NON_DEFAULT,
    )
    result = training.train_and_evaluate(config)
    return result


def test_training_uses_and_saves_its_preprocessing(trained):
    assert trained["model"].preprocessor == EmoNetPreprocessor(**NON_DEFAULT)
    saved_model, keras_file = trained["export"]["saved_model"], trained["export"]["keras"]
    assert export.read_preprocessor(saved_model) == EmoNetPreprocessor(**NON_DEFAULT)
    assert EmoNet.from_weights(keras_file).preprocessor == EmoNetPreprocessor(**NON_DEFAULT)
    with open(os.path.join(saved_model, "assets.extra", export.METADATA_FILE), encoding="utf-8") as f:
        meta = json.load(f)
    assert meta["preprocessing"] == EmoNetPreprocessor(**NON_DEFAULT).get_config()
    assert meta["mean_image"]["shape"] == [227, 227, 3]
    # train.py --eval_predictions: one row per test frame, with the frame's identity and the label.
    with open(trained["eval_predictions"], newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 6 and {r["video_id"] for r in rows} == {"test_red_0", "test_green_0", "test_blue_0"}
    assert {"frame_index", "label", "label_name", "logit_red"} <= set(rows[0])
    for r in rows:
        assert abs(sum(float(r[c]) for c in ("red", "green", "blue")) - 1) < 1e-5


def test_served_model_resizes_as_it_was_trained(trained, image_files, tmp_path):
    """The SavedModel, run by a process without emonet_tf, preprocesses like training (bilinear, no antialias)."""
    files = [str(image_files[k]) for k in SERVED]
    out = tmp_path / "served.npz"
    script = textwrap.dedent("""
        import json, sys
        import numpy as np
        import tensorflow as tf
        saved_model, files, out = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3]
        loaded = tf.saved_model.load(saved_model)
        served = loaded.signatures["serving_default"](images_bytes=tf.constant([open(f, "rb").read() for f in files]))
        config = loaded.preprocessing_config.numpy().decode()
        assert "emonet_tf" not in sys.modules
        np.savez(out, logits=served["logits"].numpy(), config=np.array(config))
    """)
    proc = subprocess.run(
        [sys.executable, "-c", script, trained["export"]["saved_model"], json.dumps(files), str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"),
        cwd=str(tmp_path),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    with np.load(out) as z:
        served, config = z["logits"], json.loads(str(z["config"]))
    assert EmoNetPreprocessor.from_config(config) == EmoNetPreprocessor(**NON_DEFAULT)
    model = trained["model"]
    as_trained = EmoNet(model).predict_images(files)
    default = EmoNet(model, resize_method="matlab", antialias=True).predict_images(files)
    want = np.stack([p.logits for p in as_trained])
    other = np.stack([p.logits for p in default])
    np.testing.assert_allclose(served, want, atol=1e-4, rtol=1e-5)
    # The check can fail: the default preprocessing gives measurably other logits.
    assert np.abs(served - other).max() > 10 * max(np.abs(served - want).max(), 1e-6)


@pytest.mark.parametrize(
    "bad",
    [
        dict(antialias="false"),
        dict(exif_orientation="no"),
        dict(antialias=1),
        dict(image_size=227.9),
        dict(image_size="227"),
        dict(image_size=True),
        dict(channel_order="RGB"),
        dict(resize_method=["matlab"]),
        dict(jpeg_dct_method=None),
    ],
)
def test_settings_from_files_are_not_coerced(bad):
    """A saved "false" is truthy: coercing it would silently turn the setting on (found by a breaker run)."""
    with pytest.raises(ValueError):
        EmoNetPreprocessor(**bad)
    with pytest.raises(ValueError):
        EmoNetPreprocessor.from_config(bad)


def _with_preprocessor_entry(src: str, dst: str, entry) -> None:
    """A copy of the .keras file `src` whose config.json holds `entry` as the preprocessor."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for item in zin.infolist():
            data = zin.read(item)
            if item.filename == "config.json":
                config = json.loads(data)
                config["config"]["preprocessor"] = entry
                data = json.dumps(config).encode()
            zout.writestr(item, data)


def test_hostile_preprocessor_entries_are_refused_naming_the_file(tmp_path):
    from emonet_tf import weights
    from emonet_tf.weights import WeightFormatError

    keras.utils.set_random_seed(6)
    src = str(tmp_path / "m.keras")
    EmoNetClassifier(num_classes=2).save(src)
    good = json.loads(zipfile.ZipFile(src).read("config.json"))["config"]["preprocessor"]
    dense = keras.saving.serialize_keras_object(keras.layers.Dense(3))
    entries = {
        "false": False,
        "number": 5,
        "string": "matlab",
        "list": [1, 2],
        "empty": {},
        "no_class": {"config": good["config"]},
        "dense": dense,  # another class: refused before Keras builds it
        "renamed": dict(good, registered_name="keras.layers>Dense"),
        "os_system": dict(good, class_name="system", module="os", registered_name="os>system"),
        "bad_value": dict(good, config=dict(good["config"], antialias="false")),
    }
    for name, entry in entries.items():
        path = str(tmp_path / f"{name}.keras")
        _with_preprocessor_entry(src, path, entry)
        with pytest.raises(WeightFormatError, match=path.replace(".", r"\.")):
            weights.read_weights(path)


def test_the_command_line_honours_the_saved_exif_setting(tmp_path):
    """`emonet activations` on a model saved with exif_orientation=True rotates as the Python API does."""
    import io

    from PIL import Image

    from emonet_tf import cli

    keras.utils.set_random_seed(8)
    path = str(tmp_path / "exif.keras")
    EmoNetClassifier(num_classes=3, preprocessor=EmoNetPreprocessor(exif_orientation=True)).save(path)
    rng = np.random.default_rng(0)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (120, 300, 3), dtype=np.uint8)).save(buffer, "JPEG", exif=exif.tobytes())
    image = tmp_path / "rotated.jpg"
    image.write_bytes(buffer.getvalue())
    out = tmp_path / "fc8.npy"
    assert cli.main(["activations", "--weights", path, "--layer", "fc8", str(image), "--out", str(out)]) == 0
    emonet = EmoNet.from_weights(path)
    rotated = emonet.activations(emonet.preprocessor.load_image(image)[None], "fc8")
    upright = emonet.activations(EmoNetPreprocessor().load_image(image)[None], "fc8")
    np.testing.assert_allclose(np.load(out), rotated, atol=1e-4)
    assert np.abs(rotated - upright).max() > 1e-2  # the check can fail


def test_memoryview_is_bytes_and_an_object_with_only_ndim_is_no_tensor(image_files):
    from emonet_tf.preprocessor import unsupported_input

    p = EmoNetPreprocessor()
    data = image_files["rgb_jpeg"].read_bytes()
    assert unsupported_input(memoryview(data)) is None
    np.testing.assert_array_equal(p(memoryview(data)), p(data))

    class FakeNd:  # claims a rank but is not array-like: numpy makes a 0-d object array of it
        ndim = 2

    assert unsupported_input(FakeNd()).startswith("unsupported input type FakeNd of shape ()")
    with pytest.raises(TypeError, match="unsupported input type FakeNd"):
        p(FakeNd())
    with pytest.raises(ValueError, match="contains NaN or infinite values"):
        p(np.full((8, 8, 3), np.nan))
