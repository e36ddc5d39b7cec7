"""Reading one work unit: preprocessed rows with their keys, and what failed, as a stream.

`read_unit` is the one reader of the local loop and of the Beam pipeline. It yields `Row` (a key and a
227 x 227 x 3 float32 image, pixels 0-255, preprocessed by the model's own `EmoNetPreprocessor`) and
`Problem` (an input that failed, with the reason). It never raises for a bad input; `UnitLog` turns the
stream into the unit's summary, which the shard writer needs to drop the rows of a video that broke off
(damaged="skip", as `emonet activations` does) and to mark those of one kept damaged.
"""

from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import math
import os
from typing import Iterator, Optional, Union

import numpy as np

from emonet_tf import media
from emonet_tf.extract.sources import WorkUnit, local_copy


@dataclasses.dataclass(frozen=True)
class RowKey:
    """What a row is: unit and row number in it, the source (path, URL or TFDS id), the video id (file
    name without extension; "" for an image), the frame index among decoded frames (-1 for an image), the
    presentation timestamp in ms (NaN for an image) and, for TFDS examples, the label (-1 when none)."""

    unit: int
    row: int
    source: str
    video_id: str = ""
    frame_index: int = -1
    timestamp_ms: float = math.nan
    label: int = -1


@dataclasses.dataclass
class Row:
    key: RowKey
    image: np.ndarray  # 227 x 227 x 3 float32, 0-255


@dataclasses.dataclass(frozen=True)
class Problem:
    """A failed input (``damage`` None), or a damaged video kept under damaged="keep" (``damage`` set)."""

    source: str
    error: str = ""
    damage: Optional[str] = None


Event = Union[Row, Problem]


@dataclasses.dataclass
class UnitLog:
    """The summary of a unit's stream: rows read, failed sources (their rows are dropped), kept damage."""

    unit: int
    rows: int = 0
    errors: list = dataclasses.field(default_factory=list)  # [(source, error)] in order
    damaged: dict = dataclasses.field(default_factory=dict)  # source -> damage note

    def add(self, event: Event) -> None:
        if isinstance(event, Row):
            self.rows += 1
        elif event.damage is not None:
            self.damaged[event.source] = event.damage
        else:
            self.errors.append((event.source, event.error))

    @property
    def failed_sources(self) -> set:
        return {s for s, _ in self.errors}

    def to_json(self) -> dict:
        return {
            "unit": self.unit,
            "rows_read": self.rows,
            "errors": [{"source": s, "error": e} for s, e in self.errors],
            "damaged": self.damaged,
        }


def read_unit(
    unit: WorkUnit,
    preprocessor,
    sampling: str = "every5",
    damaged: str = "skip",
    scratch: Optional[str] = None,
    decode_workers: int = 2,
) -> Iterator[Event]:
    """The rows and problems of one unit, in order (see the module doc).

    Args:
      unit: a `WorkUnit`.
      preprocessor: the model's `EmoNetPreprocessor` (EXIF orientation included).
      sampling: video frames to keep (`emonet_tf.video.FrameSampling.parse`: every5, fps10, all, ...).
      damaged: "skip" or "keep" (`emonet_tf.video.iter_frames`).
      scratch: local folder for copies of remote inputs (default: the system's temp folder).
      decode_workers: threads decoding the images of an image unit ahead of the model.
    """
    if unit.kind == "images":
        yield from _read_images(unit, preprocessor, scratch, decode_workers)
    elif unit.kind == "video":
        yield from _read_video(unit, preprocessor, sampling, damaged, scratch)
    elif unit.kind == "tfds":
        yield from _read_tfds(unit, preprocessor)
    else:
        raise ValueError(f"unknown unit kind {unit.kind!r}")


def _load_image(item: media.InputFile, preprocessor, scratch) -> tuple[Optional[np.ndarray], Optional[str]]:
    from emonet_tf import preprocessing

    if item.error is not None:
        return None, item.error
    try:
        with local_copy(item.path, scratch) as local:
            try:
                return preprocessor.load_image(local), None
            except preprocessing.ImageDecodeError as err:
                message = str(err).replace(local, item.path)
                if local != item.path:
                    return None, message
                return None, media.image_error(item.path, message)
    except OSError as err:
        return None, f"{item.path}: {err}" if item.path not in str(err) else str(err)


def _read_images(unit: WorkUnit, preprocessor, scratch, workers: int) -> Iterator[Event]:
    row = 0
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        pending: collections.deque = collections.deque()

        def results():
            for item in unit.items:
                pending.append((item, pool.submit(_load_image, item, preprocessor, scratch)))
                if len(pending) > 2 * workers:  # a bounded look-ahead: memory stays at a few images
                    done_item, future = pending.popleft()
                    yield done_item, future.result()
            while pending:
                done_item, future = pending.popleft()
                yield done_item, future.result()

        for item, (image, error) in results():
            if error is not None:
                yield Problem(item.path, error)
            else:
                yield Row(RowKey(unit.index, row, item.path), image)
                row += 1


def _read_video(unit: WorkUnit, preprocessor, sampling: str, damaged: str, scratch) -> Iterator[Event]:
    from emonet_tf import video

    item = unit.items[0]
    video_id = os.path.splitext(os.path.basename(item.path.rstrip("/")))[0]
    row = 0
    try:
        with local_copy(item.path, scratch) as local:
            frames = video.iter_frames(local, video.FrameSampling.parse(sampling), damaged=damaged)
            try:
                for frame in frames:
                    if frame.index < unit.first_frame:
                        continue
                    if unit.stop_frame is not None and frame.index >= unit.stop_frame:
                        # Decoded on to the end, unused: damage after this range decides its rows too (skip
                        # drops every row of a damaged video, keep marks them "damaged"), as for the whole
                        # video; stopping here would keep a damaged film's first ranges as "ok".
                        for _ in frames:
                            pass
                        break
                    key = RowKey(unit.index, row, item.path, video_id, frame.index, frame.timestamp_ms)
                    yield Row(key, preprocessor.preprocess_array(frame.image))
                    row += 1
            finally:
                frames.close()
            if frames.damage is not None:
                note = media.frames_note(row, frames.frames_decoded)
                yield Problem(item.path, damage=f"{frames.damage} ({note})".replace(local, item.path))
    except video.VideoReadError as err:
        message = media.damaged_error(err, damaged, sampled=row)
        yield Problem(item.path, message.replace(str(err.path), item.path) if hasattr(err, "path") else message)
    except OSError as err:  # a remote file that could not be copied
        yield Problem(item.path, str(err))


def _read_tfds(unit: WorkUnit, preprocessor) -> Iterator[Event]:
    from emonet_tf import preprocessing

    split = unit.tfds
    row = 0
    for example in iter_tfds_examples(split, unit.first_frame, unit.stop_frame):
        source = example["tfds_id"]
        try:
            image = preprocessor.preprocess_bytes(example["image"], source=source)
        except preprocessing.ImageDecodeError as err:
            yield Problem(source, str(err))
            continue
        key = RowKey(
            unit.index,
            row,
            source,
            example.get("video_id", ""),
            int(example.get("frame_index", -1)),
            float(example.get("timestamp_ms", math.nan)),
            int(example.get("label", -1)),
        )
        yield Row(key, image)
        row += 1


def iter_tfds_examples(split, start: int, stop: int) -> Iterator[dict]:
    """Examples [start, stop) of a TFDS split in record order, images as encoded bytes (decoded by the model's
    preprocessor like any other image), with ``tfds_id``; text features as str, scalars as Python numbers."""
    import tensorflow_datasets as tfds

    builder = tfds.builder(split.name, data_dir=split.data_dir)
    ds = builder.as_dataset(
        split=f"{split.split}[{start}:{stop}]",
        shuffle_files=False,
        decoders={"image": tfds.decode.SkipDecoding()},
        read_config=tfds.ReadConfig(add_tfds_id=True),
    )
    for example in tfds.as_numpy(ds):
        out = {}
        for name, value in example.items():
            if isinstance(value, bytes) and name != "image":
                value = value.decode("utf-8")
            elif isinstance(value, np.generic):
                value = value.item()
            out[name] = value
        yield out
