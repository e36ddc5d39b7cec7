"""Per-example prediction files: values read back equal the model's outputs; streaming; errors."""

from __future__ import annotations

import csv
import json
import os
import sys
import tracemalloc

import keras
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import tensorflow as tf

from emonet_tf import data, evaluation, predictions
from emonet_tf.classifier import EmoNetClassifier

NAMES = ("red", "green", "blue")


@pytest.fixture(scope="module")
def model():
    keras.utils.set_random_seed(3)
    m = EmoNetClassifier(class_names=NAMES)
    # Random AlexNet features of different images differ little around a large common part: a head on
    # the centred features (logits of spread ~2) makes the probabilities differ between images and classes.
    fc7 = np.asarray(m.backbone(frames_dataset()[1]))
    kernel = np.random.default_rng(4).normal(size=(fc7.shape[1], 3))
    centred = (fc7 - fc7.mean(axis=0)) @ kernel
    kernel *= 2.0 / max(centred.std(), 1e-6)
    m.head.set_weights([kernel.astype(np.float32), (-fc7.mean(axis=0) @ kernel).astype(np.float32)])
    return m


def reference_outputs(model, images):
    """The model's own outputs: its softmax, its fc8 layer and its backbone (relu7)."""
    fc8 = keras.Model(model.input, model.get_layer("fc8").output)
    return (
        np.asarray(model(images, training=False)),
        np.asarray(fc8(images, training=False)),
        np.asarray(model.backbone(images, training=False)),
    )


def frames_dataset(n=5, batch=2):
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, size=(n, 227, 227, 3)).astype(np.float32)
    meta = {
        "label": np.array([0, 2, 1, 1, 0], np.int64)[:n],
        "video_id": np.array([b"v1", b"v1", b"v2", b"v2", b"v3"])[:n],
        "frame_index": np.array([0, 5, 0, 5, 10], np.int32)[:n],
        "timestamp_ms": np.array([0.0, 166.833, 0.0, 208.5, 400.25])[:n],
    }
    ds = tf.data.Dataset.from_tensor_slices(dict(meta, image=images)).batch(batch)
    return ds, images, meta


def read_csv(path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_csv_and_parquet_hold_the_model_outputs_and_the_frame_fields(model, tmp_path):
    ds, images, meta = frames_dataset()
    probs, logits, fc7 = reference_outputs(model, images)
    assert probs.std(axis=0).min() > 1e-3  # the check below is not between near-constant columns

    out_csv = predictions.write_predictions(
        model, ds, str(tmp_path / "p.csv"), logits=True, fc7="columns", label_names=NAMES
    )
    out_pq = predictions.write_predictions(
        model, ds, str(tmp_path / "p.parquet"), logits=True, fc7="npy", label_names=NAMES
    )
    assert out_csv.rows == out_pq.rows == 5 and out_pq.fc7_path == str(tmp_path / "p.fc7.npy")

    table = pq.read_table(out_pq.path)
    assert table.column_names == [
        "index",
        "video_id",
        "frame_index",
        "timestamp_ms",
        "label",
        "label_name",
        *NAMES,
        *[f"logit_{n}" for n in NAMES],
    ]
    assert table.schema.field("red").type == pa.float32()
    got = table.to_pydict()
    assert got["index"] == [0, 1, 2, 3, 4]
    assert got["video_id"] == ["v1", "v1", "v2", "v2", "v3"]
    assert got["frame_index"] == [0, 5, 0, 5, 10]
    assert got["timestamp_ms"] == meta["timestamp_ms"].tolist()
    assert got["label"] == [0, 2, 1, 1, 0] and got["label_name"] == ["red", "blue", "green", "green", "red"]
    parquet_probs = np.stack([got[n] for n in NAMES], axis=1)
    parquet_logits = np.stack([got[f"logit_{n}"] for n in NAMES], axis=1)
    np.testing.assert_allclose(parquet_probs, probs, rtol=0, atol=1e-6)
    np.testing.assert_allclose(parquet_logits, logits, rtol=1e-5, atol=1e-4)
    saved_fc7 = np.load(out_pq.fc7_path)
    assert saved_fc7.shape == (5, 4096) and saved_fc7.dtype == np.float32
    np.testing.assert_allclose(saved_fc7, fc7, rtol=1e-5, atol=1e-4)
    assert (fc7 > 0).mean() > 0.05  # relu7 is not all zeros, so the comparison means something
    info = json.loads(table.schema.metadata[predictions.METADATA_KEY])
    assert info["class_names"] == list(NAMES) and info["fc7_layer"] == "relu7" and info["fc7_file"] == "p.fc7.npy"

    rows = read_csv(out_csv.path)
    assert list(rows[0])[:9] == ["index", "video_id", "frame_index", "timestamp_ms", "label", "label_name", *NAMES]
    assert len(rows[0]) == 6 + 3 + 3 + 4096 and list(rows[0])[-1] == "fc7_4095"
    assert [r["video_id"] for r in rows] == got["video_id"] and [int(r["label"]) for r in rows] == got["label"]
    assert [float(r["timestamp_ms"]) for r in rows] == got["timestamp_ms"]
    # CSV floats are exact float32 values: equal, bit for bit, to the Parquet ones.
    csv_probs = np.array([[np.float32(r[n]) for n in NAMES] for r in rows])
    np.testing.assert_array_equal(csv_probs, parquet_probs.astype(np.float32))
    csv_fc7 = np.array([[np.float32(r[f"fc7_{i:04d}"]) for i in range(4096)] for r in rows])
    np.testing.assert_array_equal(csv_fc7, saved_fc7)
    assert not [p for p in os.listdir(tmp_path) if "partial" in p]


def test_a_tfds_split_with_tuples_or_dicts_gives_the_evaluation_numbers(model, tmp_path):
    import tensorflow_datasets as tfds

    from _training_helpers import frame, jpeg

    rng = np.random.default_rng(1)
    examples = [
        (
            i,
            {
                "image": jpeg(frame(("red", "green", "blue")[i % 3], rng)),
                "label": i % 3,
                "video_id": f"vid{i // 2}",
                "frame_index": 5 * (i % 2),
                "timestamp_ms": 200.5 * (i % 2),
            },
        )
        for i in range(7)
    ]
    features = tfds.features.FeaturesDict(
        {
            "image": tfds.features.Image(shape=(None, None, 3), encoding_format="jpeg"),
            "label": tfds.features.ClassLabel(names=list(NAMES)),
            "video_id": tfds.features.Text(),
            "frame_index": np.int32,
            "timestamp_ms": np.float32,
        }
    )
    builder = tfds.dataset_builders.store_as_tfds_dataset(
        name="tiny_predictions",
        version="1.0.0",
        features=features,
        split_datasets={"test": examples},
        data_dir=str(tmp_path / "tfds"),
        disable_shuffling=True,
    )
    info = data.inspect_dataset(builder.data_dir, splits=("test",))

    batches = predictions.prediction_batches(info, "test", batch_size=3)
    out = predictions.write_predictions(
        model, batches, str(tmp_path / "split.parquet"), label_names=info.class_names, collect=True
    )
    probs, labels, video_ids = evaluation.predict_dataset(
        model, data.eval_dataset(info, "test", batch_size=3, with_video_id=True)
    )
    np.testing.assert_allclose(out.probabilities, probs, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(out.labels, labels)
    assert out.video_ids.tolist() == [v.decode() for v in video_ids]
    got = pq.read_table(out.path).to_pydict()
    assert got["frame_index"] == [0, 5, 0, 5, 0, 5, 0]
    assert got["timestamp_ms"] == [0.0, 200.5, 0.0, 200.5, 0.0, 200.5, 0.0]
    assert got["label_name"] == [NAMES[i % 3] for i in range(7)]

    # The (images, labels, video_ids) tuples of data.eval_dataset work too; missing fields are empty.
    plain = predictions.write_predictions(
        model, data.eval_dataset(info, "test", batch_size=4), str(tmp_path / "tuples.csv"), collect=True
    )
    rows = read_csv(plain.path)
    assert [r["frame_index"] for r in rows] == [""] * 7 and [r["video_id"] for r in rows] == [""] * 7
    assert plain.video_ids is None
    np.testing.assert_allclose(plain.probabilities, probs, rtol=0, atol=1e-6)


class TinyBackbone(keras.Model):
    """A stand-in with EmoNetClassifier's interface (.backbone, .head) on 8-d inputs, 512-d features."""

    def __init__(self):
        inputs = keras.Input((8,))
        super().__init__(inputs, keras.layers.Dense(512, activation="relu")(inputs))
        self.output_layer = "dense_relu"


class TinyClassifier:
    def __init__(self):
        self.backbone = TinyBackbone()
        self.head = keras.layers.Dense(3)
        self.class_names = NAMES


@pytest.mark.parametrize("suffix, fc7", [("csv", "npy"), ("parquet", "columns")])
def test_memory_stays_flat_with_the_number_of_batches(tmp_path, suffix, fc7):
    model = TinyClassifier()
    rng = np.random.default_rng(2)
    x = rng.normal(size=(256, 8)).astype(np.float32)
    arrow_bytes = []

    def batches(n):
        for i in range(n):
            arrow_bytes.append(pa.total_allocated_bytes())
            yield {"image": x, "frame_index": np.full(256, i), "video_id": np.array([f"v{i}"] * 256)}

    def peak(n, name):
        tracemalloc.start()
        out = predictions.write_predictions(
            model, batches(n), str(tmp_path / f"{name}.{suffix}"), fc7=fc7, row_group_rows=1024
        )
        peak_bytes = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert out.rows == 256 * n
        return peak_bytes, out

    predictions.write_predictions(model, batches(2), str(tmp_path / f"warm.{suffix}"), fc7=fc7)  # traces
    small, _ = peak(4, "small")
    arrow_bytes.clear()
    large, out = peak(40, "large")
    batch_bytes = 256 * 512 * 4
    written = 40 * batch_bytes  # 21 MB of features alone went through
    assert large < small + 2_000_000 and large < written / 5, (small, large)
    # Arrow holds at most the row group being gathered (4 batches) and the one being written.
    assert max(arrow_bytes) < 10 * batch_bytes, max(arrow_bytes)
    expected = np.asarray(model.backbone(x))
    if fc7 == "npy":
        saved = np.load(out.fc7_path, mmap_mode="r")
        assert saved.shape == (40 * 256, 512)
        np.testing.assert_allclose(saved[-256:], expected, rtol=1e-6, atol=1e-6)
    else:
        parquet = pq.ParquetFile(out.path)
        assert parquet.metadata.num_row_groups == 10  # 1024-row groups
        last = parquet.read_row_group(9).to_pydict()
        np.testing.assert_allclose(
            np.stack([last[f"fc7_{i:04d}"] for i in range(512)], axis=1)[-256:], expected, rtol=1e-6, atol=1e-6
        )


def test_errors_and_interrupted_runs(model, tmp_path, monkeypatch):
    ds, _, _ = frames_dataset(n=2)
    with pytest.raises(predictions.PredictionsError, match="from the suffix '.txt'"):
        predictions.write_predictions(model, ds, str(tmp_path / "p.txt"))
    with pytest.raises(predictions.PredictionsError, match="fc7 must be"):
        predictions.write_predictions(model, ds, str(tmp_path / "p.csv"), fc7="yes")
    with pytest.raises(predictions.PredictionsError, match="need an EmoNetClassifier"):
        predictions.write_predictions(
            lambda x, training=False: x, ds, str(tmp_path / "p.csv"), logits=True, class_names=NAMES
        )
    with pytest.raises(predictions.PredictionsError, match="clash"):
        predictions.write_predictions(model, ds, str(tmp_path / "p.csv"), class_names=("label", "a", "b"))
    with pytest.raises(predictions.PredictionsError, match="3 outputs for 2 class names"):
        predictions.write_predictions(model, ds, str(tmp_path / "p.csv"), class_names=("a", "b"))
    with pytest.raises(predictions.PredictionsError, match="2 images but"):
        predictions.write_predictions(model, ds.map(lambda b: dict(b, label=b["label"][:1])), str(tmp_path / "p.csv"))
    with pytest.raises(predictions.PredictionsError, match="'image' entry"):
        predictions.write_predictions(model, [{"pixels": np.zeros((1, 227, 227, 3))}], str(tmp_path / "p.csv"))

    def broken():
        yield from ds
        raise RuntimeError("decoder died")

    with pytest.raises(RuntimeError, match="decoder died"):
        predictions.write_predictions(model, broken(), str(tmp_path / "cut.parquet"), fc7="npy")
    assert os.listdir(tmp_path) == []  # neither a half file nor a partial left behind

    monkeypatch.setitem(sys.modules, "pyarrow", None)
    with pytest.raises(ImportError, match=r"emonet_tf\[parquet\]"):
        predictions.write_predictions(model, ds, str(tmp_path / "p.parquet"))
