"""Per-example predictions of a model over a TFDS split or any batches, streamed to CSV or Parquet.

One row per example, in input order:

- `index` (int64, position in the input), `video_id` (string), `frame_index` (int64),
  `timestamp_ms` (float64, milliseconds), `label` (int64), and `label_name` (string) when label names
  are given; a field the input does not carry is empty (CSV) or null (Parquet);
- one probability column per class, named by the class (float32, softmax of fc8, rows sum to 1);
- optionally `logit_<class>` (float32, pre-softmax fc8 values: the input of the affect read-outs);
- optionally the fc7 features (float32, the backbone's output, `relu7` for EmoNet): 4096 columns
  `fc7_0000` ... (fc7="columns"), or one N x 4096 `.npy` next to the table whose row i is the table's
  row i (fc7="npy").

Batches are written as they come (the memory used does not grow with the number of examples; the
`.npy` is assembled from a raw side file at the end), to `<path>.partial` renamed to `<path>` when
complete, so an interrupted run never leaves a file that looks whole. CSV uses the stdlib `csv`
module, floats in their shortest exact form (they read back to the same float32); Parquet uses
`pyarrow.parquet.ParquetWriter` (the optional extra `emonet_tf[parquet]`), with the class names and
the feature layer in the schema metadata under `emonet_tf.predictions`.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import shutil
from typing import Any, Callable, Iterable, Optional, Sequence

import numpy as np
import tensorflow as tf

FORMATS = ("csv", "parquet")
FC7_MODES = ("columns", "npy")
META_COLUMNS = ("index", "video_id", "frame_index", "timestamp_ms", "label")
#: The metadata fields a batch may carry, besides the images; the TFDS frame builders have them all.
BATCH_FIELDS = ("label", "video_id", "frame_index", "timestamp_ms")
METADATA_KEY = b"emonet_tf.predictions"
#: Default Parquet row group: large enough for fast column reads, small enough to hold in memory
#: (about 1.3 MB with 20 probability columns).
ROW_GROUP_ROWS = 16384
#: ... and a row group is written early when the gathered batches reach this size (wide fc7 columns).
ROW_GROUP_BYTES = 64 << 20


class PredictionsError(ValueError):
    """Arguments or batches that cannot be written (unknown format, clashing column names, bad batch)."""


@dataclasses.dataclass
class PredictionsSummary:
    """What `write_predictions` wrote: the table, its row count and columns, and the fc7 `.npy` if any.

    With `collect=True`, also the probabilities (N x C float32), labels (N int64, -1 where absent)
    and video ids (N strings, or None when the input has none), for `evaluation.metrics_from_predictions`.
    """

    path: str
    format: str
    rows: int
    columns: list[str]
    fc7_path: Optional[str] = None
    probabilities: Optional[np.ndarray] = None
    labels: Optional[np.ndarray] = None
    video_ids: Optional[np.ndarray] = None


def write_predictions(
    model,
    batches: Iterable,
    path: str,
    *,
    class_names: Optional[Sequence[str]] = None,
    label_names: Optional[Sequence[str]] = None,
    logits: bool = False,
    fc7: Optional[str] = None,
    file_format: Optional[str] = None,
    collect: bool = False,
    row_group_rows: int = ROW_GROUP_ROWS,
) -> PredictionsSummary:
    """Runs `model` over `batches` and writes one row per example to `path` (CSV or Parquet).

    Args:
      model: an `EmoNetClassifier` (softmax or logits output; logits and fc7 come from its `backbone`
        and `head` in the same forward pass), or any callable images -> probabilities (N x C) when
        neither `logits` nor `fc7` is asked for.
      batches: an iterable (a `tf.data.Dataset`, a generator) of either dicts with `image`
        (N x 227 x 227 x 3 float32, 0-255, as `emonet_tf.preprocessing` makes them) and any of
        `label`, `video_id`, `frame_index`, `timestamp_ms`, or tuples (images, labels[, video_ids]) as
        `data.eval_dataset` yields them.
      path: the output file; its suffix (.csv, .parquet or .pq) gives the format unless `file_format`.
      class_names: the names of the model's outputs (default: `model.class_names`).
      label_names: names of the label values, for a `label_name` column (e.g. the dataset's classes).
      logits: add the pre-softmax fc8 values as `logit_<class>` columns.
      fc7: None, "columns" (one column per feature) or "npy" (`<path stem>.fc7.npy`, N x D float32).
      collect: also return the probabilities, labels and video ids (memory then grows 4 C bytes per example).
      row_group_rows: Parquet only: batches are gathered into row groups of about this many rows, or
        ROW_GROUP_BYTES (readers work best with large groups); memory holds at most one row group.

    Returns a `PredictionsSummary`. Raises `PredictionsError` for an unknown format or fc7 mode, clashing
    column names, not as many class names as outputs, a batch without images or with fields of another
    length, or logits/fc7 asked of a model without backbone and head; ImportError naming the extra when
    Parquet is asked for without pyarrow. Nothing is left at `path` (or the .npy) when it raises.
    """
    file_format = _format_of(path, file_format)
    if fc7 is not None and fc7 not in FC7_MODES:
        raise PredictionsError(f"fc7 must be None or one of {', '.join(FC7_MODES)}, got {fc7!r}")
    class_names = [str(c) for c in (class_names if class_names is not None else model.class_names)]
    forward, feature_layer, width = _forward(model, logits, fc7 is not None)
    columns = _columns(class_names, label_names, logits, width if fc7 == "columns" else 0)
    fc7_path = os.path.splitext(path)[0] + ".fc7.npy" if fc7 == "npy" else None
    sink = _open_sink(file_format, path, columns, _metadata(class_names, feature_layer, fc7, fc7_path), row_group_rows)
    fc7_rows = None
    collected: dict[str, list] = {"probabilities": [], "labels": [], "video_ids": []}
    rows = 0
    try:
        fc7_rows = _NpyRowWriter(fc7_path, width) if fc7 == "npy" else None
        for batch in batches:
            images, meta = _split_batch(batch)
            outputs = {k: v.numpy() for k, v in forward(images).items()}
            table = _table(rows, meta, outputs, class_names, label_names, logits, fc7 == "columns")
            sink.write(table)
            if fc7_rows is not None:
                fc7_rows.write(outputs["fc7"])
            if collect:
                _collect(collected, outputs["probabilities"], table)
            rows += len(table["index"])
        if fc7_rows is not None:  # first, so that the table appears only when everything is complete
            fc7_rows.close()
        sink.close()
    except BaseException:
        for part in (sink, fc7_rows):
            if part is not None:
                part.abort()
        raise
    summary = PredictionsSummary(path, file_format, rows, list(columns), fc7_path)
    if collect:
        _finish_collect(summary, collected, len(class_names))
    return summary


def prediction_batches(
    info,
    split: str,
    *,
    batch_size: int = 32,
    preprocessor=None,
    resize_method: Optional[str] = None,
    antialias: Optional[bool] = None,
) -> tf.data.Dataset:
    """Dict batches of a whole TFDS split, in stored order, for `write_predictions`.

    `info` is a `data.DatasetInfo` (`data.inspect_dataset`). Each batch holds `image` (N x 227 x 227 x 3
    float32, decoded and resized by `preprocessor`, the model's `EmoNetPreprocessor`, with the ops of
    training and serving; the default contract when None, `resize_method` / `antialias` override it) and
    those of `label`, `video_id`, `frame_index`, `timestamp_ms` that the split has. Raises
    data.DatasetError for frames pre-resized by another resize (`data.check_preprocessor`).
    """
    import tensorflow_datasets as tfds

    from emonet_tf import data
    from emonet_tf.preprocessor import resolve

    preprocessor = resolve(preprocessor, resize_method, antialias)
    data.check_preprocessor(info, preprocessor)
    present = [f for f in BATCH_FIELDS if f in info.builder.info.features]
    ds = info.builder.as_dataset(
        split=split,
        shuffle_files=False,
        decoders={"image": tfds.decode.SkipDecoding()},
        read_config=tfds.ReadConfig(try_autocache=False, add_tfds_id=False),
    )

    def pick(example):
        out = {f: example[f] for f in present}
        out["image"] = preprocessor.preprocess_image_bytes(example["image"])
        return out

    ds = ds.map(pick, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).batch(batch_size)
    return ds.prefetch(tf.data.AUTOTUNE)


# ------------------------------------------------------------------------------------------------
# The model


def _forward(model, want_logits: bool, want_fc7: bool) -> tuple[Callable, Optional[str], int]:
    """A tf.function images -> {"probabilities"[, "logits"][, "fc7"]} (float32), the feature layer's name
    and width (None and 0 for a plain callable)."""
    backbone = getattr(model, "backbone", None)
    head = _head(model) if backbone is not None else None
    if head is None:
        if want_logits or want_fc7:
            raise PredictionsError(
                "logits and fc7 need an EmoNetClassifier (a model with .backbone and .head); "
                f"got {type(model).__name__}"
            )
        return (
            tf.function(
                lambda x: {"probabilities": tf.cast(model(x, training=False), tf.float32)}, reduce_retracing=True
            ),
            None,
            0,
        )

    def run(x):
        # One pass through the backbone gives fc7, fc8 and the softmax; the classifier's own output
        # layer is softmax(fc8) in float32 too, so this equals model(x) for a softmax model.
        features = backbone(x, training=False)
        fc8 = tf.cast(head(features), tf.float32)
        out = {"probabilities": tf.nn.softmax(fc8)}
        if want_logits:
            out["logits"] = fc8
        if want_fc7:
            out["fc7"] = tf.cast(features, tf.float32)
        return out

    width = int(backbone.output.shape[-1])
    return tf.function(run, reduce_retracing=True), getattr(backbone, "output_layer", None), width


def _head(model):
    try:
        return model.head
    except (AttributeError, ValueError):  # a model with a backbone but no fc8 layer
        return None


# ------------------------------------------------------------------------------------------------
# Batches -> columns


def _split_batch(batch) -> tuple[Any, dict[str, np.ndarray]]:
    """(images, {field: N values}) of a dict batch or an (images, labels[, video_ids]) tuple."""
    if isinstance(batch, dict):
        if "image" not in batch:
            raise PredictionsError(f"a batch dict needs an 'image' entry; it has {sorted(batch)}")
        return batch["image"], {f: np.asarray(batch[f]) for f in BATCH_FIELDS if f in batch}
    if isinstance(batch, (tuple, list)) and 1 <= len(batch) <= 3:
        meta = dict(zip(("label", "video_id"), (np.asarray(b) for b in batch[1:])))
        return batch[0], meta
    raise PredictionsError(
        f"a batch must be a dict with 'image' or a tuple (images, labels[, video_ids]); got {type(batch).__name__}"
    )


def _columns(class_names, label_names, logits: bool, fc7_width: int) -> list[str]:
    columns = list(META_COLUMNS) + (["label_name"] if label_names is not None else []) + list(class_names)
    columns += [f"logit_{c}" for c in class_names] if logits else []
    columns += [f"fc7_{i:04d}" for i in range(fc7_width)]
    clashes = sorted({c for c in columns if columns.count(c) > 1})
    if clashes:
        raise PredictionsError(
            f"column names clash: {clashes} (class names must differ from each other and "
            f"from {', '.join(META_COLUMNS)}, label_name)"
        )
    return columns


def _table(
    start: int,
    meta: dict[str, np.ndarray],
    outputs: dict[str, np.ndarray],
    class_names,
    label_names,
    logits: bool,
    fc7_columns: bool,
) -> dict[str, Any]:
    """Column name -> N values; None stands for a field the batch does not carry."""
    n, width = outputs["probabilities"].shape
    if width != len(class_names):
        raise PredictionsError(f"the model gives {width} outputs for {len(class_names)} class names")
    for field, values in meta.items():
        if values.shape[:1] != (n,):
            raise PredictionsError(f"the batch has {n} images but {values.shape[:1] or 'a scalar'} {field} values")
    table: dict[str, Any] = {"index": np.arange(start, start + n, dtype=np.int64)}
    table["video_id"] = [_text(v) for v in meta["video_id"]] if "video_id" in meta else None
    table["frame_index"] = meta["frame_index"].astype(np.int64) if "frame_index" in meta else None
    table["timestamp_ms"] = meta["timestamp_ms"].astype(np.float64) if "timestamp_ms" in meta else None
    table["label"] = meta["label"].astype(np.int64) if "label" in meta else None
    if label_names is not None:
        table["label_name"] = (
            None
            if table["label"] is None
            else [label_names[i] if 0 <= i < len(label_names) else None for i in table["label"]]
        )
    for name, column in zip(class_names, outputs["probabilities"].T):
        table[name] = column
    if logits:
        for name, column in zip(class_names, outputs["logits"].T):
            table[f"logit_{name}"] = column
    if fc7_columns:
        # Contiguous columns: Arrow then takes each one without a strided copy.
        for i, column in enumerate(np.ascontiguousarray(outputs["fc7"].T)):
            table[f"fc7_{i:04d}"] = column
    return table


def _text(value) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def _metadata(class_names, feature_layer, fc7, fc7_path) -> dict[str, Any]:
    return {
        "class_names": list(class_names),
        "probabilities": "softmax of fc8",
        "logits": "fc8 (pre-softmax)",
        "fc7": fc7,
        "fc7_layer": feature_layer,
        "fc7_file": os.path.basename(fc7_path) if fc7_path else None,
    }


def _collect(collected: dict[str, list], probabilities: np.ndarray, table: dict[str, Any]) -> None:
    n = probabilities.shape[0]
    collected["probabilities"].append(probabilities)
    collected["labels"].append(table["label"] if table["label"] is not None else np.full(n, -1, np.int64))
    collected["video_ids"].append(table["video_id"])


def _finish_collect(summary: PredictionsSummary, collected: dict[str, list], num_classes: int) -> None:
    probs = collected["probabilities"]
    summary.probabilities = np.concatenate(probs) if probs else np.zeros((0, num_classes), np.float32)
    summary.labels = np.concatenate(collected["labels"]) if probs else np.zeros(0, np.int64)
    ids = collected["video_ids"]
    summary.video_ids = (
        np.asarray([v for part in ids for v in part]) if ids and all(p is not None for p in ids) else None
    )


# ------------------------------------------------------------------------------------------------
# Files


def _format_of(path: str, file_format: Optional[str]) -> str:
    if file_format is None:
        suffix = os.path.splitext(path)[1].lower()
        file_format = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}.get(suffix)
        if file_format is None:
            raise PredictionsError(
                f"{path}: cannot tell the format from the suffix {suffix!r}; use .csv or .parquet, or file_format="
            )
    if file_format not in FORMATS:
        raise PredictionsError(f"unknown format {file_format!r}; choose one of {', '.join(FORMATS)}")
    return file_format


def _open_sink(file_format: str, path: str, columns: list[str], metadata: dict[str, Any], row_group_rows: int):
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    return _CsvSink(path, columns) if file_format == "csv" else _ParquetSink(path, columns, metadata, row_group_rows)


class _CsvSink:
    """Rows to `<path>.partial` with the stdlib csv writer; renamed to `path` on close."""

    def __init__(self, path: str, columns: list[str]):
        self.path, self.columns = path, columns
        self._file = open(path + ".partial", "w", newline="", encoding="utf-8")
        self._writer = csv.writer(self._file)
        self._writer.writerow(columns)

    def write(self, table: dict[str, Any]) -> None:
        n = len(table["index"])
        cells = [self._strings(table[c], n) for c in self.columns]
        self._writer.writerows(zip(*cells))

    @staticmethod
    def _strings(values, n: int) -> list[str]:
        if values is None:
            return [""] * n
        if isinstance(values, np.ndarray):
            # numpy's str() of a float32 is its shortest repr that reads back to the same float32.
            return values.astype(str).tolist()
        return ["" if v is None else v for v in values]

    def close(self) -> None:
        self._file.close()
        os.replace(self.path + ".partial", self.path)

    def abort(self) -> None:
        self._file.close()
        _remove(self.path + ".partial")


class _ParquetSink:
    """Row groups of about `row_group_rows` rows to `<path>.partial` with pyarrow.parquet.ParquetWriter;
    renamed to `path` on close. Only the batches of the row group being gathered are held."""

    def __init__(self, path: str, columns: list[str], metadata: dict[str, Any], row_group_rows: int):
        try:
            import pyarrow as pa
            import pyarrow.parquet as pq
        except ImportError:
            raise ImportError(
                "writing Parquet needs pyarrow, the optional extra 'parquet': "
                "pip install 'emonet_tf[parquet]' (or write .csv)"
            ) from None
        self._pa = pa
        self.path, self.columns, self.row_group_rows = path, columns, max(1, int(row_group_rows))
        types = {
            "index": pa.int64(),
            "video_id": pa.string(),
            "frame_index": pa.int64(),
            "timestamp_ms": pa.float64(),
            "label": pa.int64(),
            "label_name": pa.string(),
        }
        self._schema = pa.schema(
            [pa.field(c, types.get(c, pa.float32())) for c in columns],
            metadata={METADATA_KEY: json.dumps(metadata).encode("utf-8")},
        )
        self._writer = pq.ParquetWriter(path + ".partial", self._schema)
        self._pending: list = []
        self._pending_rows = self._pending_bytes = 0

    def write(self, table: dict[str, Any]) -> None:
        pa, n = self._pa, len(table["index"])
        arrays = [
            pa.nulls(n, f.type) if table[f.name] is None else pa.array(table[f.name], type=f.type) for f in self._schema
        ]
        self._pending.append(pa.Table.from_arrays(arrays, schema=self._schema))
        self._pending_rows += n
        self._pending_bytes += self._pending[-1].nbytes
        if self._pending_rows >= self.row_group_rows or self._pending_bytes >= ROW_GROUP_BYTES:
            self._flush()

    def _flush(self) -> None:
        if self._pending:
            self._writer.write_table(self._pa.concat_tables(self._pending), row_group_size=self._pending_rows)
        self._pending, self._pending_rows, self._pending_bytes = [], 0, 0

    def close(self) -> None:
        self._flush()
        self._writer.close()
        os.replace(self.path + ".partial", self.path)

    def abort(self) -> None:
        self._pending = []
        try:
            self._writer.close()
        finally:
            _remove(self.path + ".partial")


class _NpyRowWriter:
    """N x width float32 rows streamed to a raw side file, made a `.npy` (header + rows) on close.

    The header holds the row count, unknown until the end; writing the rows raw first and copying them
    behind the header keeps memory flat at the price of one extra sequential copy on disk.
    """

    def __init__(self, path: str, width: int):
        self.path, self.width, self.rows = path, int(width), 0
        self._raw = open(path + ".partial.raw", "wb")

    def write(self, rows: np.ndarray) -> None:
        rows = np.ascontiguousarray(rows, dtype=np.float32)
        if rows.ndim != 2 or rows.shape[1] != self.width:
            raise PredictionsError(f"fc7 rows of shape {rows.shape}, expected N x {self.width}")
        rows.tofile(self._raw)
        self.rows += rows.shape[0]

    def close(self) -> None:
        self._raw.close()
        header = {
            "descr": np.lib.format.dtype_to_descr(np.dtype(np.float32)),
            "fortran_order": False,
            "shape": (self.rows, self.width),
        }
        with open(self.path + ".partial", "wb") as out, open(self.path + ".partial.raw", "rb") as raw:
            np.lib.format.write_array_header_1_0(out, header)
            shutil.copyfileobj(raw, out, 1 << 20)  # a small buffer: memory stays flat
        _remove(self.path + ".partial.raw")
        os.replace(self.path + ".partial", self.path)

    def abort(self) -> None:
        self._raw.close()
        _remove(self.path + ".partial.raw")
        _remove(self.path + ".partial")


def _remove(path: str) -> None:
    try:
        os.remove(path)
    except FileNotFoundError:
        pass
