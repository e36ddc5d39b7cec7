"""An extraction's folder: the plan, one shard per work unit, the error output and the manifest.

    OUT/plan.json                     settings + units; a rerun with other settings is refused
    OUT/shards/part-00003-of-00040.parquet (or .tfrecord)   the rows of unit 3
    OUT/units/part-00003.json         unit 3 is done: its rows, failed inputs and kept damage
    OUT/errors.csv                    every failed input with the reason (unit, source, error)
    OUT/manifest.json                 what was extracted, how, from which weights; the shard list

A unit is done when its ``units/`` record exists; the record is written after the shard, and both by
rename from a hidden temporary file, so a process killed at any point leaves either a finished unit or
none. A rerun skips finished units: their files are never rewritten (resume).

Row schema (Parquet columns / TFRecord features), in this order:
  source (string: path, URL or TFDS id), video_id (string, "" for images), frame_index (int64, -1 for
  images), timestamp_ms (float64, presentation time in ms; NaN for images), [label (int64, TFDS only)],
  status ("ok", or "damaged" for rows of a damaged video kept under damaged="keep"), unit (int32),
  row (int32, the row in its shard), then one float32 column per output: each layer in the order asked,
  then ``probabilities``. Parquet stores an output as fixed_size_list<float32>[size] (pandas shows one
  numpy array per cell; `Extraction.layer` stacks them); TFRecord as a float_list, and
  ``timestamp_ms`` as 8 bytes little-endian float64 (a float_list would round it to float32). Conv layers
  are flattened in NHWC order; the manifest gives each output's shape.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime
import hashlib
import io
import json
import os
import re
import struct
import tempfile
from typing import Any, Optional, Sequence

import numpy as np

from emonet_tf.extract import remote
from emonet_tf.extract.rows import RowKey, UnitLog

FORMAT_VERSION = "emonet_tf.extract/1"
OUTPUT_FORMATS = ("parquet", "tfrecord")
SUFFIX = {"parquet": ".parquet", "tfrecord": ".tfrecord"}
PLAN = "plan.json"
MANIFEST = "manifest.json"
ERRORS = "errors.csv"
SHARDS = "shards"
UNITS = "units"
KEY_COLUMNS = ("source", "video_id", "frame_index", "timestamp_ms")


class ExtractionError(Exception):
    """An extraction cannot start or finish; the message names the folder or file and the problem."""


@dataclasses.dataclass(frozen=True)
class Layout:
    """Names and shapes of an extraction's files and columns (from the plan's settings)."""

    out_dir: str
    output_format: str
    num_units: int
    shapes: dict  # output name -> per-row shape
    with_label: bool = False

    def shard_path(self, unit: int) -> str:
        name = f"part-{unit:05d}-of-{self.num_units:05d}{SUFFIX[self.output_format]}"
        return remote.join(remote.join(self.out_dir, SHARDS), name)

    def unit_path(self, unit: int) -> str:
        return remote.join(remote.join(self.out_dir, UNITS), f"part-{unit:05d}.json")

    def key_columns(self) -> list[str]:
        return list(KEY_COLUMNS) + (["label"] if self.with_label else []) + ["status", "unit", "row"]


# ------------------------------------------------------------------------------------------------
# The plan, and resuming


def plan_document(settings: dict, units: Sequence[dict]) -> dict:
    """The plan written before any work: settings, units, and a fingerprint of both."""
    body = json.dumps({"settings": settings, "units": list(units)}, sort_keys=True)
    return {
        "format": FORMAT_VERSION,
        "fingerprint": hashlib.sha256(body.encode()).hexdigest()[:16],
        "settings": settings,
        "units": list(units),
    }


def start(out_dir: str, plan: dict, overwrite: bool = False) -> list[int]:
    """Prepares `out_dir` for `plan` and returns the units already done (resume).

    A folder holding another plan (other inputs, layers, weights, preprocessing, sampling ...) is refused
    with ExtractionError naming what differs, unless `overwrite`, which deletes the old extraction's
    files (plan, shards, unit records, errors, manifest) and nothing else.
    """
    if not out_dir or not out_dir.strip():
        # os.path.join("", name) is `name`: the files would land in the current folder, past the checks below.
        raise ExtractionError("the extraction folder is an empty path; name a folder")
    plan_path = remote.join(out_dir, PLAN)
    if remote.exists(plan_path):
        old = _read_plan(plan_path, overwrite)
        if old.get("fingerprint") != plan["fingerprint"]:
            if not overwrite:
                raise ExtractionError(
                    f"{out_dir}: holds an extraction with other {_differences(old, plan)}; "
                    "use another folder, or --overwrite to replace it"
                )
            clear(out_dir)
    elif remote.exists(out_dir) and remote.listdir(out_dir) and not overwrite:
        names = [n for n in remote.listdir(out_dir) if not n.startswith(".")]
        if names:
            raise ExtractionError(
                f"{out_dir}: not empty and holds no extraction plan ({', '.join(names[:3])} ...); "
                "use an empty or new folder"
            )
    elif overwrite:
        # Unit records without a plan are of unknown settings: kept, they would count as done for this one.
        # Only they go (by their exact names): a folder without a plan may be the user's, "units/" too.
        units = remote.join(out_dir, UNITS)
        for name in remote.listdir(units):
            if re.fullmatch(r"part-\d{5}\.json", name):
                remote.remove(remote.join(units, name))
    for sub in (SHARDS, UNITS):
        remote.makedirs(remote.join(out_dir, sub))
    _remove_stale_temporaries(out_dir)
    remote.write_atomic(plan_path, json.dumps(plan, indent=1).encode())
    layout = layout_of(out_dir, plan)
    return [u for u in range(layout.num_units) if unit_done(layout, u)]


def _read_plan(plan_path: str, overwrite: bool) -> dict:
    """The plan in an extraction folder; {} for an unreadable one under `overwrite` (it is replaced),
    else ExtractionError naming it (a hand-edited or foreign plan.json must not crash the run)."""
    try:
        old = json.loads(remote.read_text(plan_path))
        if isinstance(old, dict):
            return old
    except (ValueError, OSError):
        pass
    if overwrite:
        return {}
    raise ExtractionError(f"{plan_path}: not an extraction plan (unreadable); use another folder, or --overwrite")


def _remove_stale_temporaries(out_dir: str) -> None:
    """Deletes the hidden ``.tmp-*`` files a killed run left (`remote.write_atomic`, `remote.staging_path`):
    never read, but a folder of finished work should hold only its files. One run per folder at a time."""
    for folder in (out_dir, remote.join(out_dir, SHARDS), remote.join(out_dir, UNITS)):
        for name in remote.listdir(folder):
            if re.match(r"\.tmp-[0-9a-f]{12}-", name):  # `remote`'s names only, never a user's file
                remote.remove(remote.join(folder, name))


def _differences(old: dict, new: dict) -> str:
    a, b = old.get("settings", {}), new["settings"]
    keys = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
    if old.get("units") != new["units"]:
        keys.append("inputs or work units")
    return ", ".join(keys) or "plan"


def clear(out_dir: str) -> None:
    """Deletes an extraction's own files from `out_dir` (never anything else there)."""
    for sub in (SHARDS, UNITS):
        remote.rmtree(remote.join(out_dir, sub))
    for name in (PLAN, MANIFEST, ERRORS):
        remote.remove(remote.join(out_dir, name))


def layout_of(out_dir: str, plan: dict) -> Layout:
    s = plan["settings"]
    return Layout(out_dir, s["output_format"], len(plan["units"]), s["output_shapes"], s.get("with_label", False))


def unit_done(layout: Layout, unit: int) -> bool:
    """Whether `unit` is finished: its record reads, and its shard exists with the size the record gives
    (a shard truncated or replaced after the run -- a full disk, a partial copy -- is redone, not trusted)."""
    record = read_unit_record(layout, unit)
    if record is None or not remote.exists(layout.shard_path(unit)):
        return False
    size = record.get("shard_bytes")  # absent in records of older runs: trusted as before
    return size is None or remote.size(layout.shard_path(unit)) == size


def read_unit_record(layout: Layout, unit: int) -> Optional[dict]:
    """A unit's record, or None when it is missing or unreadable (the unit is then redone)."""
    path = layout.unit_path(unit)
    if not remote.exists(path):
        return None
    try:
        record = json.loads(remote.read_text(path))
    except (ValueError, OSError):
        return None
    return record if isinstance(record, dict) and "rows" in record and "errors" in record else None


# ------------------------------------------------------------------------------------------------
# Writing a unit


class UnitWriter:
    """Streams one unit's rows to disk as they come, then writes its shard and its record.

    Memory stays at one batch whatever the unit's length (a whole film): `add` appends each batch to a
    staging Parquet file in local scratch; `close` reads it back a row group at a time into the shard,
    adding each row's status and dropping the rows of a source that failed (a video that broke off under
    damaged="skip", as `emonet activations` drops them) -- both known only at the unit's end.
    """

    def __init__(self, layout: Layout, unit: int, scratch: Optional[str] = None):
        self.layout, self.unit = layout, unit
        self.scratch = scratch or tempfile.gettempdir()
        self.rows = 0
        self._staging = os.path.join(self.scratch, f".emonet-unit-{unit:05d}-{os.getpid()}-{id(self):x}.parquet")
        self._writer = None

    def add(self, keys: Sequence[RowKey], outputs: dict[str, np.ndarray]) -> None:
        """Appends a batch: keys in row order and {output: len(keys) x shape float32}."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        if not keys:
            return
        schema = _staging_schema(self.layout)
        arrays = [
            pa.array([k.source for k in keys], pa.string()),
            pa.array([k.video_id for k in keys], pa.string()),
            pa.array([int(k.frame_index) for k in keys], pa.int64()),
            pa.array([float(k.timestamp_ms) for k in keys], pa.float64()),
            pa.array([int(k.label) for k in keys], pa.int64()),
        ]
        for name, shape in self.layout.shapes.items():
            size = int(np.prod(shape))
            flat = np.ascontiguousarray(outputs[name], np.float32).reshape(len(keys) * size)
            arrays.append(pa.FixedSizeListArray.from_arrays(pa.array(flat), size))
        if self._writer is None:
            self._writer = pq.ParquetWriter(self._staging, schema)
        self._writer.write_table(pa.Table.from_arrays(arrays, schema=schema))
        self.rows += len(keys)

    def close(self, log: UnitLog) -> dict:
        """Writes the shard (by rename) and then the unit's record; returns the record.

        Raises ExtractionError when fewer or more rows reached the writer than the reader read.
        """
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        try:
            if self.rows != log.rows:
                raise ExtractionError(f"unit {self.unit}: {self.rows} rows reached the writer, {log.rows} were read")
            final = self.layout.shard_path(self.unit)
            staged = remote.staging_path(final, self.scratch)
            try:
                kept = _write_shard(staged, self.layout, self._staging if self.rows else None, log)
                size = os.path.getsize(staged)  # in the record: `unit_done` checks the shard against it
                remote.put_file(staged, final)
            finally:
                if os.path.exists(staged):
                    os.remove(staged)
        finally:
            self.abort()
        record = dict(log.to_json(), rows=kept, shard=os.path.basename(final), shard_bytes=size)
        remote.write_atomic(self.layout.unit_path(self.unit), json.dumps(record, indent=1).encode())
        return record

    def abort(self) -> None:
        """Drops the staging file (a unit that will be redone)."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if os.path.exists(self._staging):
            os.remove(self._staging)


def _staging_schema(layout: Layout):
    import pyarrow as pa

    fields = [
        pa.field("source", pa.string()),
        pa.field("video_id", pa.string()),
        pa.field("frame_index", pa.int64()),
        pa.field("timestamp_ms", pa.float64()),
        pa.field("label", pa.int64()),
    ]
    fields += [pa.field(n, pa.list_(pa.float32(), int(np.prod(s)))) for n, s in layout.shapes.items()]
    return pa.schema(fields)


def _staged_batches(staging: Optional[str], log: UnitLog, layout: Layout):
    """The staging file's row groups as shard tables: failed sources dropped, status/unit/row added."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    if staging is None:
        return
    failed = pa.array(sorted(log.failed_sources), pa.string())
    damaged = pa.array(sorted(log.damaged), pa.string())
    start = 0
    reader = pq.ParquetFile(staging)
    for group in range(reader.num_row_groups):
        table = reader.read_row_group(group)
        if len(failed):
            table = table.filter(pc.invert(pc.is_in(table["source"], value_set=failed)))
        n = table.num_rows
        if n == 0:
            continue
        status = pc.if_else(pc.is_in(table["source"], value_set=damaged), "damaged", "ok") if len(damaged) else None
        columns = {
            "source": table["source"],
            "video_id": table["video_id"],
            "frame_index": table["frame_index"],
            "timestamp_ms": table["timestamp_ms"],
            "label": table["label"],
            "status": status if status is not None else pa.array(["ok"] * n, pa.string()),
            "unit": pa.array(np.full(n, log.unit, np.int32)),
            "row": pa.array(np.arange(start, start + n, dtype=np.int32)),
        }
        start += n
        schema = arrow_schema(layout)
        arrays = [columns[c] for c in layout.key_columns()] + [table[name] for name in layout.shapes]
        yield pa.Table.from_arrays(
            [a.combine_chunks() if hasattr(a, "combine_chunks") else a for a in arrays], schema=schema
        )


_ARROW_TYPES = {"frame_index": "int64", "timestamp_ms": "float64", "label": "int64", "unit": "int32", "row": "int32"}


def arrow_schema(layout: Layout):
    """The Parquet schema of every shard (one schema, so pyarrow and pandas read the folder as one table)."""
    import pyarrow as pa

    fields = [pa.field(c, getattr(pa, _ARROW_TYPES.get(c, "string"))()) for c in layout.key_columns()]
    for name, shape in layout.shapes.items():
        fields.append(pa.field(name, pa.list_(pa.float32(), int(np.prod(shape)))))
    meta = {"emonet_tf.extract": json.dumps({"format": FORMAT_VERSION, "output_shapes": layout.shapes})}
    return pa.schema(fields, metadata=meta)


def _write_shard(path: str, layout: Layout, staging: Optional[str], log: UnitLog) -> int:
    """Writes the shard from the staging file; returns its row count (an empty shard when none is kept)."""
    import pyarrow.parquet as pq

    rows = 0
    if layout.output_format == "parquet":
        with pq.ParquetWriter(path, arrow_schema(layout)) as writer:
            for table in _staged_batches(staging, log, layout):
                writer.write_table(table)
                rows += table.num_rows
        return rows
    import tensorflow as tf

    with tf.io.TFRecordWriter(path) as writer:
        for table in _staged_batches(staging, log, layout):
            for example in _tf_examples(table, layout):
                writer.write(example)
            rows += table.num_rows
    return rows


def _tf_examples(table, layout: Layout):
    import tensorflow as tf

    keys = {c: table[c].to_pylist() for c in layout.key_columns()}
    outputs = {
        n: np.asarray(table[n].combine_chunks().values, np.float32).reshape(table.num_rows, -1) for n in layout.shapes
    }
    for i in range(table.num_rows):
        feature = {}
        for column, values in keys.items():
            value = values[i]
            if column == "timestamp_ms":
                feature[column] = _bytes(struct.pack("<d", value))
            elif isinstance(value, str):
                feature[column] = _bytes(value.encode("utf-8"))
            else:
                feature[column] = tf.train.Feature(int64_list=tf.train.Int64List(value=[value]))
        for name, matrix in outputs.items():
            feature[name] = tf.train.Feature(float_list=tf.train.FloatList(value=matrix[i]))
        yield tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def _bytes(value: bytes):
    import tensorflow as tf

    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))


def tfrecord_feature_spec(manifest: dict) -> dict:
    """The `tf.io.parse_single_example` spec of a TFRecord extraction's rows (see the module doc);
    decode ``timestamp_ms`` with ``tf.io.decode_raw(x, tf.float64)[0]``."""
    import tensorflow as tf

    spec = {}
    for column in manifest["key_columns"]:
        kind = tf.int64 if column in ("frame_index", "label", "unit", "row") else tf.string
        spec[column] = tf.io.FixedLenFeature([], kind)
    for name, shape in manifest["output_shapes"].items():
        spec[name] = tf.io.FixedLenFeature([int(np.prod(shape))], tf.float32)
    return spec


# ------------------------------------------------------------------------------------------------
# Finishing: errors and manifest


def finish(out_dir: str, plan: dict, extra: dict[str, Any]) -> dict:
    """Writes errors.csv and manifest.json from the unit records; returns the manifest.

    Raises ExtractionError when a unit is not done (the run did not finish; a rerun resumes it).
    """
    layout = layout_of(out_dir, plan)
    missing = [u for u in range(layout.num_units) if not unit_done(layout, u)]
    if missing:
        raise ExtractionError(
            f"{out_dir}: {len(missing)} of {layout.num_units} units are not done (first: {missing[0]})"
        )
    records = [read_unit_record(layout, u) for u in range(layout.num_units)]
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["unit", "source", "error"])
    errors = 0
    for r in records:
        unit = plan["units"][r["unit"]]
        for e in r["errors"]:
            # Every frame range of a failed video reports it; a continuation range (not from frame 0) is the
            # same input, listed and counted once, under its first range.
            if unit["kind"] == "video" and unit["first_frame"] > 0 and e["source"] in unit["sources"]:
                continue
            writer.writerow([r["unit"], e["source"], e["error"]])
            errors += 1
    remote.write_atomic(remote.join(out_dir, ERRORS), buffer.getvalue().encode("utf-8"))
    settings = plan["settings"]
    manifest = {
        "format": FORMAT_VERSION,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "plan_fingerprint": plan["fingerprint"],
        **settings,
        "key_columns": layout.key_columns(),
        "rows": sum(r["rows"] for r in records),
        "units": layout.num_units,
        "errors": errors,
        "damaged_videos": {s: d for r in records for s, d in r["damaged"].items()},
        "shards": [{"file": f"{SHARDS}/{r['shard']}", "unit": r["unit"], "rows": r["rows"]} for r in records],
        **extra,
    }
    remote.write_atomic(remote.join(out_dir, MANIFEST), json.dumps(manifest, indent=1).encode())
    return manifest


# ------------------------------------------------------------------------------------------------
# Reading back


class Extraction:
    """A finished extraction folder, read back in unit and row order.

        ex = Extraction("features/")
        keys = ex.keys()                 # pandas DataFrame: source, video_id, frame_index, timestamp_ms, ...
        fc7 = ex.layer("fc7")            # N x 4096 float32, row i belongs to keys.iloc[i]
        ex.errors()                      # the failed inputs and why

    pandas also reads the Parquet shards directly: ``pd.read_parquet("features/shards")``.
    Raises ExtractionError for a folder without a manifest (a run that did not finish: rerun it).
    """

    def __init__(self, out_dir: str):
        path = remote.join(out_dir, MANIFEST)
        if not remote.exists(path):
            raise ExtractionError(f"{out_dir}: no {MANIFEST} (not an extraction, or one that did not finish)")
        self.out_dir = out_dir
        self.manifest = json.loads(remote.read_text(path))

    @property
    def outputs(self) -> list[str]:
        return list(self.manifest["output_shapes"])

    def shard_paths(self) -> list[str]:
        return [remote.join(self.out_dir, s["file"]) for s in self.manifest["shards"]]

    def _parquet(self, columns: list[str]):
        import pyarrow as pa
        import pyarrow.parquet as pq

        tables = []
        for path in self.shard_paths():
            with remote_file(path) as f:
                tables.append(pq.read_table(f, columns=columns))
        return pa.concat_tables(tables)

    def _tfrecord_rows(self):
        import tensorflow as tf

        spec = tfrecord_feature_spec(self.manifest)
        for path in self.shard_paths():
            for record in tf.data.TFRecordDataset(path):
                yield tf.io.parse_single_example(record, spec)

    def keys(self):
        """The key columns of every row, a pandas DataFrame."""
        import pandas as pd

        columns = self.manifest["key_columns"]
        if self.manifest["output_format"] == "parquet":
            return self._parquet(columns).to_pandas()
        rows = []
        for ex in self._tfrecord_rows():
            row = {}
            for c in columns:
                value = ex[c].numpy()
                if c == "timestamp_ms":
                    value = struct.unpack("<d", value)[0]
                elif isinstance(value, bytes):
                    value = value.decode("utf-8")
                row[c] = value
            rows.append(row)
        # The Parquet schema's dtypes (an int64_list reads back int64: unit and row are int32 there), so
        # that an extraction's keys are the same DataFrame in either format, also when it has no row.
        return pd.DataFrame(rows, columns=columns).astype({c: _ARROW_TYPES[c] for c in columns if c in _ARROW_TYPES})

    def layer(self, name: str) -> np.ndarray:
        """One output for every row: N x its shape (conv layers N x H x W x C), float32.

        Raises KeyError naming the outputs there are.
        """
        if name not in self.manifest["output_shapes"]:
            raise KeyError(f"{name!r} was not extracted; outputs: {', '.join(self.outputs)}")
        shape = self.manifest["output_shapes"][name]
        if self.manifest["output_format"] == "parquet":
            column = self._parquet([name]).column(name).combine_chunks()
            flat = np.asarray(column.values, np.float32) if len(column) else np.zeros(0, np.float32)
        else:
            parts = [ex[name].numpy() for ex in self._tfrecord_rows()]
            flat = np.concatenate(parts) if parts else np.zeros(0, np.float32)
        return flat.reshape(-1, *shape)

    def errors(self):
        """The failed inputs: unit, source, error (a pandas DataFrame; empty when none failed)."""
        import pandas as pd

        return pd.read_csv(io.StringIO(remote.read_text(remote.join(self.out_dir, ERRORS))), keep_default_na=False)


class remote_file:
    """A readable binary file object for a local path or URL (pyarrow reads local files itself)."""

    def __init__(self, path: str):
        self.path = path

    def __enter__(self):
        if "://" not in self.path:
            self._f = open(self.path, "rb")
        else:
            self._f = io.BytesIO(remote.read_bytes(self.path))
        return self._f

    def __exit__(self, *exc):
        self._f.close()
