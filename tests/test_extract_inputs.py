"""`emonet_tf.extract` end to end on the local runner: what it reads and what it writes.

Remote inputs and a remote output folder (TensorFlow's in-memory ``ram://`` file system, the code path of
gs:// and s3://), a file list, a TFDS split built with the repo's own builder, TFRecord output, a plan
that does not match the folder, bad inputs, videos cut into frame ranges, and pandas reading the shards.
Every extraction is compared with an independent one (a local run, direct paths, the other format, the
whole video, `EmoNet.activations`): the same bits where the batches are the same, float32 noise where
they differ (the single-image reference passes).

The model is a randomly initialised EmoNet (no weight file); images are tiny and videos short.
"""

from __future__ import annotations

import math
import os
import pathlib
import uuid

import cv2
import keras
import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from emonet_tf import EmoNet, EmoNetClassifier
from emonet_tf.extract import Extraction, ExtractionError, extract, tfrecord_feature_spec

SIZE = (64, 48)  # width, height of every test image and video


@pytest.fixture(scope="module")
def emonet():
    keras.utils.set_random_seed(31)
    return EmoNet(EmoNetClassifier())


@pytest.fixture
def ram():
    """A fresh folder on TensorFlow's in-memory file system (global to the process), deleted afterwards."""
    root = f"ram://exin-{uuid.uuid4().hex[:10]}"
    yield root
    # File by file: ram:// lists children by name prefix ("a" lists "a-b/..." as "-b"), which makes
    # rmtree of a tree with such names fail on an entry that does not exist.
    for folder, _, files in tf.io.gfile.walk(root):
        for name in files:
            path = f"{folder.rstrip('/')}/{name}"
            if tf.io.gfile.exists(path) and not tf.io.gfile.isdir(path):
                tf.io.gfile.remove(path)


def _image(path: pathlib.Path, seed: int, size=SIZE) -> str:
    """A random-content image (PNG, JPEG ... by the extension) of `size`; returns its path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    # Smooth content plus noise: the network sees more than flat noise, the JPEG is not trivially small.
    ramp = np.linspace(0, 200, size[0], dtype=np.float32)[None, :, None]
    array = np.clip(ramp + rng.normal(0, 40, (size[1], size[0], 3)), 0, 255).astype(np.uint8)
    assert cv2.imwrite(str(path), array), path
    return str(path)


def _write_video(path: pathlib.Path, frames: int, fps: float = 30.0, size=SIZE) -> str:
    """An mp4v video whose frames differ (a rolled random image), as tests/test_cli_streaming.py writes them."""
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
    rng = np.random.default_rng(0)
    base = rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    for i in range(frames):
        writer.write(np.roll(base, 3 * i, axis=1))
    writer.release()
    assert os.path.getsize(path) > 0, path
    return str(path)


def _copy_tree_to(local_root: pathlib.Path, url_root: str) -> None:
    for path in sorted(local_root.rglob("*")):
        if path.is_file():
            target = f"{url_root}/{path.relative_to(local_root).as_posix()}"
            tf.io.gfile.makedirs(target.rsplit("/", 1)[0])
            tf.io.gfile.copy(str(path), target, overwrite=True)


def _max_diff(a: Extraction, b: Extraction, name: str) -> float:
    x, y = a.layer(name), b.layer(name)
    assert x.shape == y.shape, (name, x.shape, y.shape)
    assert len(x) > 0
    return float(np.max(np.abs(x - y)))


def _assert_same_rows(a: Extraction, b: Extraction, source=lambda s: s) -> None:
    """Same keys (sources through `source`) and bit-identical outputs, in the same order."""
    keys_a, keys_b = a.keys(), b.keys()
    keys_a["source"] = keys_a["source"].map(source)
    pd.testing.assert_frame_equal(keys_a, keys_b)
    assert a.outputs == b.outputs
    for name in a.outputs:
        # Same images, same batches, same model: the same bits (no tolerance needed, none given).
        assert _max_diff(a, b, name) == 0.0, name


def _corpus(root: pathlib.Path) -> pathlib.Path:
    """Images in nested folders and a short video. The folders `a` and `a-b` walk as `os.walk` walks
    them (a, a/sub, a-b), which a plain sort of the folder names ("a-b" < "a/sub") would not give."""
    _image(root / "z.png", 1)
    _image(root / "a" / "e.png", 2)
    _image(root / "a" / "sub" / "d.png", 3)
    _image(root / "a-b" / "c.png", 4)
    _write_video(root / "clips" / "clip.mp4", 20)
    return root


# ------------------------------------------------------------------------------------------------
# 1. Remote inputs and a remote output folder


def test_ram_inputs_and_output_equal_a_local_extraction(emonet, tmp_path, ram):
    local_root = _corpus(tmp_path / "corpus")
    _copy_tree_to(local_root, f"{ram}/in")
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    common = dict(emonet=emonet, layers=["fc7", "fc8"], images_per_unit=2, batch_size=2)

    local = extract([str(local_root)], str(tmp_path / "local"), **common)
    remote = extract([f"{ram}/in"], f"{ram}/out", scratch=str(scratch), **common)

    keys = remote.keys()
    assert all(s.startswith(f"{ram}/in/") for s in keys["source"])  # sources stay URLs, not scratch copies
    assert (
        list(keys["source"])
        == [f"{ram}/in/{n}" for n in ("z.png", "a/e.png", "a/sub/d.png", "a-b/c.png")]
        + [f"{ram}/in/clips/clip.mp4"] * 4
    )
    assert list(keys["frame_index"]) == [-1] * 4 + [0, 5, 10, 15]
    assert list(keys["video_id"]) == [""] * 4 + ["clip"] * 4
    _assert_same_rows(remote, local, source=lambda s: s.replace(f"{ram}/in", str(local_root)))
    assert remote.manifest["rows"] == local.manifest["rows"] == 8
    assert remote.manifest["errors"] == 0 and len(remote.errors()) == 0

    # Everything was written to ram://, through hidden temporary names that are all gone; nothing stays
    # in scratch (the local copies of the inputs and the staging files).
    names = sorted(n.rstrip("/") for n in tf.io.gfile.listdir(f"{ram}/out"))
    assert names == ["errors.csv", "manifest.json", "plan.json", "shards", "units"]
    shards = sorted(tf.io.gfile.listdir(f"{ram}/out/shards"))
    assert shards == [f"part-0000{i}-of-00003.parquet" for i in range(3)]
    assert list(scratch.iterdir()) == []
    assert Extraction(f"{ram}/out").manifest["plan_fingerprint"] == remote.manifest["plan_fingerprint"]

    # A rerun on the ram:// folder finds every unit done there and recomputes none.
    finished = []
    again = extract([f"{ram}/in"], f"{ram}/out", scratch=str(scratch), on_unit=finished.append, **common)
    assert again.manifest["units_resumed"] == 3 and finished == []
    _assert_same_rows(again, remote)


def test_missing_and_bad_ram_files_are_errors_with_their_url(emonet, tmp_path, ram):
    _image(tmp_path / "in" / "z.png", 1)
    jpeg = pathlib.Path(_image(tmp_path / "big.jpg", 2, size=(160, 120))).read_bytes()
    (tmp_path / "in" / "cut.jpg").write_bytes(jpeg[: len(jpeg) // 2])
    (tmp_path / "in" / "empty.mp4").write_bytes(b"")
    _copy_tree_to(tmp_path / "in", f"{ram}/in")
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    missing = [f"{ram}/in/missing.png", f"{ram}/in/gone.mp4"]
    bad = [f"{ram}/in/cut.jpg", f"{ram}/in/empty.mp4"]
    inputs = [f"{ram}/in/z.png", missing[0], bad[0], missing[1], bad[1]]

    ex = extract(inputs, f"{ram}/out", emonet=emonet, layers=["fc8"], batch_size=2, scratch=str(scratch))

    assert list(ex.keys()["source"]) == [f"{ram}/in/z.png"]
    errors = ex.errors()
    assert list(errors["source"]) == inputs[1:]
    reasons = dict(zip(errors["source"], errors["error"]))
    for url in missing:
        assert reasons[url] == f"{url}: no such file"
    # The decoders read scratch copies; the reasons name the URL, never the copy.
    assert reasons[bad[0]].startswith(f"{bad[0]}: ") and "truncated" in reasons[bad[0]]
    assert reasons[bad[1]] == f"{bad[1]}: file is empty (0 bytes)"
    assert not any(str(scratch) in r for r in reasons.values())
    assert ex.manifest["errors"] == 4 and ex.manifest["rows"] == 1
    assert list(scratch.iterdir()) == []


# ------------------------------------------------------------------------------------------------
# 2. A file list


def test_file_list_equals_passing_the_paths(emonet, tmp_path, monkeypatch):
    corpus = tmp_path / "corpus"
    paths = [
        _image(corpus / "imgs" / "b.jpg", 5),
        _write_video(corpus / "clip.mp4", 12),
        _image(corpus / "imgs" / "a.png", 6),
    ]
    listing = corpus / "list.txt"
    listing.write_text(
        "# my corpus, relative to this file\n\nimgs/b.jpg\n   \n  clip.mp4  \n# a comment\nimgs/a.png\n\n"
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # relative to the list's folder, not to the working directory
    common = dict(emonet=emonet, layers=["fc7"], images_per_unit=3, batch_size=2)

    from_list = extract([], str(tmp_path / "from_list"), file_list=str(listing), **common)
    direct = extract(paths, str(tmp_path / "direct"), **common)

    assert list(from_list.keys()["source"]) == [paths[0]] + [paths[1]] * 3 + [paths[2]]
    assert from_list.manifest["plan_fingerprint"] == direct.manifest["plan_fingerprint"]
    _assert_same_rows(from_list, direct)
    assert from_list.manifest["errors"] == 0


def test_file_list_on_ram_resolves_relative_paths_to_urls(emonet, tmp_path, ram):
    local = _image(tmp_path / "local.png", 11)
    _image(tmp_path / "in" / "imgs" / "r.png", 12)
    _copy_tree_to(tmp_path / "in", f"{ram}/in")
    with tf.io.gfile.GFile(f"{ram}/in/list.txt", "w") as f:
        f.write(f"# remote corpus\nimgs/r.png\n\n{local}\nimgs/nope.png\n")

    ex = extract([], str(tmp_path / "out"), file_list=f"{ram}/in/list.txt", emonet=emonet, layers=["fc8"])

    assert list(ex.keys()["source"]) == [f"{ram}/in/imgs/r.png", local]  # absolute paths kept as they are
    assert list(ex.errors()["source"]) == [f"{ram}/in/imgs/nope.png"]
    want = emonet.activations(emonet.preprocessor.load_image(local)[None], "fc8")[0]
    assert np.max(np.abs(ex.layer("fc8")[1] - want)) <= 1e-5 * float(np.max(np.abs(want)))


# ------------------------------------------------------------------------------------------------
# 3. A TFDS split


def test_tfds_split_rows_are_the_records_and_their_activations(emonet, tmp_path):
    tfds = pytest.importorskip("tensorflow_datasets")
    from _tfds_helpers import build_dataset
    from tfds_builders.video_folder import video_folder_dataset_builder as folder

    data_dir = tmp_path / "data"
    builder = build_dataset(
        folder.Builder, data_dir, "every5", manual_dir=folder.Builder.code_path.parent / "dummy_data"
    )
    num = builder.info.splits["train"].num_examples
    assert num > 8  # three units below, the last one short
    spec = "tfds:video_folder/every5:train"

    ex = extract(
        [], str(tmp_path / "out"), emonet=emonet, tfds=spec, data_dir=str(data_dir), images_per_unit=4, batch_size=4
    )

    ds = builder.as_dataset(
        split="train",
        shuffle_files=False,
        decoders={"image": tfds.decode.SkipDecoding()},
        read_config=tfds.ReadConfig(add_tfds_id=True),
    )
    records = list(tfds.as_numpy(ds))
    keys = ex.keys()
    assert len(keys) == num == len(records) == ex.manifest["rows"]
    assert ex.manifest["units"] == math.ceil(num / 4) and ex.manifest["errors"] == 0
    assert ex.manifest["key_columns"] == [
        "source",
        "video_id",
        "frame_index",
        "timestamp_ms",
        "label",
        "status",
        "unit",
        "row",
    ]
    expected = pd.DataFrame(
        {
            "source": [r["tfds_id"].decode() for r in records],
            "video_id": [r["video_id"].decode() for r in records],
            "frame_index": [int(r["frame_index"]) for r in records],
            "timestamp_ms": [float(r["timestamp_ms"]) for r in records],
            "label": [int(r["label"]) for r in records],
        }
    )
    pd.testing.assert_frame_equal(keys[list(expected.columns)], expected)
    assert set(keys["video_id"]) == {"cats/clip_a", "cats/clip_b", "dogs/clip_d", "dogs/clip_e"}
    assert set(keys["label"]) == {0, 1}

    # A row of the last unit: its fc7 is the model's on the record's own image bytes.
    i = num - 1
    image = emonet.preprocessor.preprocess_bytes(records[i]["image"])
    want = emonet.activations(image[None], "fc7")[0]
    got = ex.layer("fc7")[i]
    # float32 noise of another batch size only (1 here, 4 there; measured: max abs diff 5e-6 on the
    # train split's rows, |fc7| up to 6.4).
    assert np.max(np.abs(got - want)) <= 1e-5 * max(1.0, float(np.max(np.abs(want))))
    assert np.max(np.abs(want)) > 0

    # The prepared dataset has no such split: refused by name before any work.
    missing = "tfds:video_folder/every5:validation"
    with pytest.raises(ValueError, match=missing):
        extract([], str(tmp_path / "out2"), emonet=emonet, tfds=missing, data_dir=str(data_dir))
    assert not (tmp_path / "out2").exists()


def test_tfds_split_that_is_not_prepared_is_a_value_error_naming_it(emonet, tmp_path):
    pytest.importorskip("tensorflow_datasets")
    from tfds_builders.video_folder import video_folder_dataset_builder  # noqa: F401  (registers video_folder)

    empty = tmp_path / "empty"
    empty.mkdir()
    spec = "tfds:video_folder/every5:test"
    with pytest.raises(ValueError, match=spec):
        extract([], str(tmp_path / "out"), emonet=emonet, tfds=spec, data_dir=str(empty))
    assert not (tmp_path / "out").exists()  # refused before anything was written
    with pytest.raises(ValueError, match="tfds:no_such_dataset_exin:train"):
        extract([], str(tmp_path / "out"), emonet=emonet, tfds="tfds:no_such_dataset_exin:train", data_dir=str(empty))


# ------------------------------------------------------------------------------------------------
# 4. TFRecord output


def test_tfrecord_output_equals_parquet_and_keeps_timestamps_exact(emonet, tmp_path):
    paths = [_image(tmp_path / "in" / "a.png", 7), _write_video(tmp_path / "in" / "v.mp4", 30, fps=29.97)]
    common = dict(emonet=emonet, layers=["conv5", "fc8"], images_per_unit=2, batch_size=3)
    parquet = extract(paths, str(tmp_path / "pq"), **common)
    tfrecord = extract(paths, str(tmp_path / "tfr"), output_format="tfrecord", **common)

    assert tfrecord.manifest["output_format"] == "tfrecord"
    assert [os.path.splitext(p)[1] for p in tfrecord.shard_paths()] == [".tfrecord", ".tfrecord"]
    _assert_same_rows(tfrecord, parquet)
    assert parquet.layer("conv5").shape == (7, 13, 13, 256)

    # The records parse with the published spec alone; timestamps round-trip as float64.
    spec = tfrecord_feature_spec(tfrecord.manifest)
    assert set(spec) == set(tfrecord.manifest["key_columns"]) | {"conv5", "fc8", "probabilities"}
    parsed = [
        tf.io.parse_single_example(record, spec)
        for path in tfrecord.shard_paths()
        for record in tf.data.TFRecordDataset(path)
    ]
    stamps = np.array([tf.io.decode_raw(p["timestamp_ms"], tf.float64)[0].numpy() for p in parsed])
    want = parquet.keys()["timestamp_ms"].to_numpy()
    np.testing.assert_array_equal(stamps, want)  # NaN for the image, the exact float64 for frames
    frames = want[~np.isnan(want)]
    assert len(frames) == 6 and np.any(frames.astype(np.float32).astype(np.float64) != frames)  # not float32
    np.testing.assert_array_equal(np.stack([p["fc8"].numpy() for p in parsed]), parquet.layer("fc8"))
    np.testing.assert_array_equal(np.stack([p["conv5"].numpy() for p in parsed]), parquet.layer("conv5").reshape(7, -1))
    assert [p["source"].numpy().decode() for p in parsed] == list(parquet.keys()["source"])


# ------------------------------------------------------------------------------------------------
# 5. A folder that holds another extraction, or something else


def test_other_layers_in_the_same_folder_are_refused_unless_overwrite(emonet, tmp_path):
    paths = [_image(tmp_path / "in" / f"{n}.png", n) for n in range(3)]
    out = tmp_path / "out"
    first = extract(paths, str(out), emonet=emonet, layers=["fc8"], images_per_unit=2, batch_size=2)
    assert first.outputs == ["fc8", "probabilities"]
    (out / "notes.txt").write_text("mine")

    with pytest.raises(ExtractionError, match="layers") as info:
        extract(paths, str(out), emonet=emonet, layers=["fc7"], images_per_unit=2, batch_size=2)
    assert str(out) in str(info.value)
    assert Extraction(str(out)).outputs == ["fc8", "probabilities"]  # left as it was

    second = extract(paths, str(out), emonet=emonet, layers=["fc7"], images_per_unit=2, batch_size=2, overwrite=True)
    assert second.outputs == ["fc7", "probabilities"] and second.manifest["units_resumed"] == 0
    assert second.manifest["rows"] == 3
    with pytest.raises(KeyError, match="fc8"):
        second.layer("fc8")
    np.testing.assert_array_equal(second.layer("probabilities"), first.layer("probabilities"))
    want = emonet.activations(np.stack([emonet.preprocessor.load_image(p) for p in paths[:2]]), "fc7")
    assert np.max(np.abs(second.layer("fc7")[:2] - want)) <= 1e-5 * float(np.max(np.abs(want)))
    assert (out / "notes.txt").read_text() == "mine"  # overwrite deletes the extraction's files only

    other = tmp_path / "other"
    other.mkdir()
    (other / "data.csv").write_text("x\n")
    with pytest.raises(ExtractionError, match="not empty"):
        extract(paths, str(other), emonet=emonet, layers=["fc8"])
    assert sorted(p.name for p in other.iterdir()) == ["data.csv"]


# ------------------------------------------------------------------------------------------------
# 6. Bad inputs


def test_bad_inputs_go_to_the_error_output_and_the_rest_is_extracted(emonet, tmp_path):
    root = tmp_path / "in"
    good = [_image(root / "a_good.png", 8), _image(root / "b_good.jpg", 9)]
    big = _image(tmp_path / "big.jpg", 10, size=(160, 120))
    data = pathlib.Path(big).read_bytes()
    truncated = root / "c_truncated.jpg"
    truncated.write_bytes(data[: len(data) // 2])
    text = root / "d_text.png"
    text.write_text("this is not a PNG\n")
    empty = root / "e_empty.mp4"
    empty.write_bytes(b"")
    video = _write_video(root / "f_clip.mp4", 10)

    ex = extract([str(root)], str(tmp_path / "out"), emonet=emonet, layers=["fc8"], images_per_unit=2, batch_size=2)

    errors = ex.errors()
    assert list(errors["source"]) == [str(truncated), str(text), str(empty)]
    assert list(errors["unit"]) == [1, 1, 2]  # units: [a, b], [c, d], e (a video), f
    reasons = dict(zip(errors["source"], errors["error"]))
    assert reasons[str(truncated)].startswith(f"{truncated}: cannot decode as an image (truncated file")
    assert reasons[str(text)].startswith(f"{text}: cannot decode as an image (not a JPEG, PNG")
    assert reasons[str(empty)] == f"{empty}: file is empty (0 bytes)"
    assert ex.manifest["errors"] == 3
    keys = ex.keys()
    assert list(keys["source"]) == good + [video] * 2
    assert ex.manifest["rows"] == 4 and set(keys["status"]) == {"ok"}
    want = emonet.activations(np.stack([emonet.preprocessor.load_image(p) for p in good]), "fc8")
    assert np.max(np.abs(ex.layer("fc8")[:2] - want)) <= 1e-5 * float(np.max(np.abs(want)))


# ------------------------------------------------------------------------------------------------
# 7. Long videos in frame ranges


def test_frame_ranges_concatenate_to_the_whole_video(emonet, tmp_path):
    video = _write_video(tmp_path / "long.mp4", 60)
    common = dict(emonet=emonet, layers=["fc8"], batch_size=4)
    whole = extract([video], str(tmp_path / "whole"), **common)
    ranges = extract([video], str(tmp_path / "ranges"), frames_per_unit=20, **common)

    assert whole.manifest["units"] == 1
    assert ranges.manifest["units"] == 3  # 60 frames in ranges of 20
    a, b = ranges.keys(), whole.keys()
    assert list(a["unit"]) == [0] * 4 + [1] * 4 + [2] * 4
    assert list(a["row"]) == [0, 1, 2, 3] * 3  # rows are numbered within their shard
    assert list(b["frame_index"]) == list(range(0, 60, 5))
    for column in ("source", "video_id", "frame_index", "timestamp_ms", "status"):
        assert list(a[column]) == list(b[column]), column
    assert np.all(np.diff(a["timestamp_ms"]) > 0)
    # The ranges' batches (4 rows each) are the whole video's batches: the same bits.
    assert _max_diff(ranges, whole, "fc8") == 0.0
    assert _max_diff(ranges, whole, "probabilities") == 0.0


# ------------------------------------------------------------------------------------------------
# 8. pandas reads the shards folder


def test_pandas_reads_the_shards_folder_as_the_extraction(emonet, tmp_path):
    paths = [_image(tmp_path / "in" / f"{n}.png", 20 + n) for n in range(3)]
    paths.append(_write_video(tmp_path / "in" / "v.mp4", 15))
    paths.append(str(tmp_path / "in" / "missing.png"))  # an error: its unit still has a shard
    ex = extract(paths, str(tmp_path / "out"), emonet=emonet, layers=["fc7"], images_per_unit=2, batch_size=2)

    table = pd.read_parquet(tmp_path / "out" / "shards")
    keys = ex.keys()
    assert len(table) == len(keys) == 6
    pd.testing.assert_frame_equal(table[list(keys.columns)].reset_index(drop=True), keys)
    np.testing.assert_array_equal(np.stack(table["fc7"].to_numpy()), ex.layer("fc7"))
    np.testing.assert_array_equal(np.stack(table["probabilities"].to_numpy()), ex.layer("probabilities"))
    assert list(table.columns) == list(keys.columns) + ["fc7", "probabilities"]
