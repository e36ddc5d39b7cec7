"""Shared machinery of the video TFDS builders: one example per sampled frame, splits by video.

Both `cowen_keltner` and `video_folder` subclass :class:`VideoFramesBuilder`; they only differ in
how they find videos and labels (their `_collect`). Everything else lives here:

* **Extraction.** :func:`extract_video` decodes one video with :mod:`emonet_tf.video`, encodes the
  sampled frames ONCE with OpenCV (config field ``frame_encoding``: JPEG at quality
  :data:`JPEG_QUALITY`, the default, or lossless PNG) and returns all of the video's examples, or
  a skip reason. The bytes are handed to ``tfds.features.Image(encoding_format=...)`` as ``bytes``,
  which TFDS stores unchanged (no second encoding). A video's examples are buffered (encoded
  bytes, a few MB at most) until the whole video decoded, so that a damaged video is either
  dropped whole (``damaged_videos="skip"``, the default) or written with every example flagged
  ``video_damaged`` (``"keep"``), never half-written unmarked. Memory stays flat in the corpus
  size: one video at a time.
* **Pre-resized frames** (config field ``frame_size=227``, configs ``<sampling>_227``): each sampled
  frame is encoded as ``frame_encoding`` says, decoded and resized to 227x227 by the model's
  preprocessing (:class:`emonet_tf.preprocessor.EmoNetPreprocessor` with the config's
  ``resize_method``/``antialias``: exactly the ops `emonet_tf.data` runs on the ordinary records at
  read time), and stored as lossless PNG. The resize rounds and clips to integers 0..255, so uint8
  PNG holds it exactly; reading such a record gives the same model input as reading the ordinary
  record of the same frame and resizing it (tests/test_pre_resized.py), without the per-epoch JPEG
  decode of the full frame and the resize. The settings are recorded in the dataset's metadata
  (``info.metadata["pre_resized"]``, :data:`PRE_RESIZED_KEY`), which `emonet_tf.data` checks
  against the model's preprocessor.
* **Plain or Beam.** TFDS picks the writer from what `_generate_examples` returns: a Python
  generator (plain) or a ``beam.PTransform``. A plain build extracts in its own process, or in
  ``workers`` spawned processes (builder kwarg, or ``EMONET_TFDS_WORKERS=N`` for ``tfds build``;
  :func:`iter_extractions`), in the videos' order, so the files are the same; its memory is bounded
  (a few videos ahead, and TFDS's shuffler spills to disk past 1 GB), which a local Beam build's is
  not (the DirectRunner holds every record in the driver; docs/datasets.md). We return the PTransform
  (``beam.Create(videos) | beam.Reshuffle() | beam.FlatMap(...)``) when the build was given a Beam
  runner or Beam options (``DownloadConfig.beam_runner``/``beam_options``, i.e.
  ``tfds build --beam_pipeline_options=...``), else a generator. Beam is imported lazily.
* **Splits by video**, never by frame; see :func:`hash_split`.
* **Bad input** (unreadable, empty, non-video or vanished files, damaged videos, duplicate video
  ids, missing/unknown labels, unusable label files) is logged by name and counted per reason in a
  summary; one bad input never aborts the build. Log lines carry names and reasons, never example
  bytes. Strict
  mode (config field ``strict``, builder kwarg ``strict=True`` or environment variable
  ``EMONET_TFDS_STRICT=1``) raises :class:`BadInputError` at the first problem instead. Videos whose
  label is outside the config's categories (e.g. Nostalgia in `emonet20`) are left out by design:
  they are counted in the summary but never raise.
* **Deterministic files.** The records are re-serialized with sorted feature maps
  (:class:`DeterministicExampleWriter`), so two builds of the same input give byte-identical
  tfrecord files, in any process and on any machine.
* **Summary.** Per split, logged when the split's generator is exhausted (plain) or from Beam
  counters after the pipeline ran (Beam), and written as JSON next to the data
  (``<data_dir>/<name>/<config>/<version>/extraction_summary.json``). The split is fixed before
  extraction (ids and labels only), so a label whose videos in a split were all skipped has no
  example there: warned per label and listed as ``splits.<split>.labels_without_videos``.
"""

from __future__ import annotations

import abc
import collections
import dataclasses
import functools
import hashlib
import json
from typing import Any, Iterator, Mapping, Optional, Sequence

import numpy as np
import tensorflow_datasets as tfds
from absl import logging
from etils import epath

from emonet_tf import video as video_lib

#: OpenCV JPEG quality of the stored frames (one encoding, by us).
JPEG_QUALITY = 95
#: zlib level of OpenCV's PNG encoder for ``frame_encoding="png"`` (lossless at every level; see
#: bench/bench_frame_encoding.py for the size/speed trade-off).
PNG_COMPRESSION = 1
#: Frame encodings a config may choose (``frame_encoding``); the first is the default.
FRAME_ENCODINGS = ("jpeg", "png")
#: Side of pre-resized frames (config field ``frame_size``): the network's input, `image_spec.IMAGE_SIZE`.
PRE_RESIZED_SIZE = 227
#: Key of ``DatasetInfo.metadata`` (metadata.json next to the records) describing pre-resized frames.
PRE_RESIZED_KEY = "pre_resized"
#: Share of each label's videos that go to `test` when no split is given (the released split has 428/2185).
TEST_FRACTION = 0.2
#: File written next to the prepared data.
SUMMARY_FILENAME = "extraction_summary.json"
#: Environment variable that turns strict mode on for `tfds build` (any of 1/true/yes).
STRICT_ENV = "EMONET_TFDS_STRICT"
#: Environment variable giving a plain build's extraction processes (`tfds build` has no builder kwargs).
WORKERS_ENV = "EMONET_TFDS_WORKERS"
#: Videos extracted ahead of the writer, per worker process (bounds the memory of a parallel plain build).
VIDEOS_AHEAD_PER_WORKER = 2
#: File extensions recognized as videos (case-insensitive): emonet_tf.video's one list, shared with the CLI.
VIDEO_EXTENSIONS = video_lib.VIDEO_EXTENSIONS
#: The frame samplings every builder offers, as config-name suffixes.
SAMPLINGS = ("every5", "fps10", "all")
SAMPLING_DESCRIPTIONS = {
    "every5": "every 5th frame (0, 5, 10, ...), like the lab's MATLAB scripts",
    "fps10": (
        "10 frames per second, ffmpeg's fps=10 filter: for each 100 ms tick, the last frame whose timestamp "
        "rounds to at or before it; frames never repeated (the lab's PyTorch pipeline)"
    ),
    "all": "every decoded frame",
}

# Skip reasons (summary keys).
LABEL_FILE_INVALID = "label_file_invalid"
LABEL_MISSING = "label_missing"
LABEL_UNKNOWN = "label_unknown"
LABEL_NOT_IN_CONFIG = "label_not_in_config"
LABEL_CONFLICT = "label_conflict"
VIDEO_MISSING = "video_missing"
VIDEO_UNREADABLE = "video_unreadable"
VIDEO_DAMAGED = "video_damaged"
DUPLICATE_VIDEO_FILE = "duplicate_video_file"


class BadInputError(ValueError):
    """Raised in strict mode at the first bad input (the message names it)."""


@dataclasses.dataclass(eq=False)
class VideoFramesConfig(tfds.core.BuilderConfig):
    """Config fields shared by the video builders.

    Attributes:
      sampling: ``every5``, ``fps10``, ``all`` or any :meth:`FrameSampling.parse` spec.
      strict: raise on the first bad input instead of skipping and reporting it.
      test_fraction: share of each label's videos put in `test` when no split is given.
      damaged_videos: what to do with a damaged video (decoder error, or the stream ends before its
        own duration): "skip" (default) drops it whole and names it in the summary; "keep" writes
        the frames that decoded with ``video_damaged=True`` and lists the video in the summary.
        Strict mode raises at a damaged video under either policy.
      frame_encoding: "jpeg" (default, OpenCV quality 95) or "png" (lossless: the stored pixels are
        exactly the decoded frame; several times larger, see docs/datasets.md). With ``frame_size``,
        the encoding whose read-time pixels the pre-resized frames reproduce (they are stored as PNG).
      frame_size: None (default: frames stored at their decoded size) or 227: frames stored already
        resized to the network's input by the preprocessing ``resize_method``/``antialias``
        describe, as lossless PNG (see the module doc).
      resize_method, antialias: the `EmoNetPreprocessor` settings of the resize when ``frame_size``
        is set (default: the default contract, MATLAB's imresize); ignored otherwise.
    """

    sampling: str = "every5"
    strict: bool = False
    test_fraction: float = TEST_FRACTION
    damaged_videos: str = video_lib.DEFAULT_DAMAGED_POLICY
    frame_encoding: str = FRAME_ENCODINGS[0]
    frame_size: Optional[int] = None
    resize_method: str = "matlab"
    antialias: bool = True


@dataclasses.dataclass(frozen=True)
class VideoEntry:
    """One unit of work: a labelled video (picklable, so Beam workers receive it as is)."""

    video_id: str
    path: str
    label: str
    soft_label: tuple[float, ...]


@dataclasses.dataclass(frozen=True)
class Problem:
    """A skipped input: why, which video or file, and the details."""

    reason: str
    name: str
    detail: str = ""

    def as_dict(self) -> dict[str, str]:
        return {"name": self.name, "detail": self.detail}


def env_strict() -> bool:
    import os

    return os.environ.get(STRICT_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def check_workers(workers: Any, source: str = "workers") -> int:
    """`workers` as a positive int (1: extract in the build's own process); ValueError naming `source`.

    A string must be ASCII digits (the environment variable): "1_0" or non-ASCII digits are refused.
    More workers than CPU cores is allowed (logged): each is a process that imports TensorFlow.
    """
    import os

    value = workers
    if isinstance(value, str):
        text = value.strip()
        value = int(text) if text.isascii() and text.isdigit() else None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{source} must be a positive integer, got {workers!r}")
    if value > (os.cpu_count() or 1):
        logging.warning("%s=%d is more than this machine's %s CPU cores", source, value, os.cpu_count())
    return int(value)


def env_workers() -> Optional[int]:
    """The processes `EMONET_TFDS_WORKERS` asks for, or None when unset; ValueError when not a positive int."""
    import os

    value = os.environ.get(WORKERS_ENV, "").strip()
    return check_workers(value, WORKERS_ENV) if value else None


def sampling_configs(config_cls: type, prefix: str = "", frame_size: Optional[int] = None, **fields: Any) -> list:
    """One config per frame sampling, named ``<prefix>_<sampling>`` (or ``<sampling>`` without prefix).

    With ``frame_size`` (227), the pre-resized variants, named ``..._<frame_size>``: frames stored
    resized by the default preprocessing (MATLAB's imresize) as PNG, equal at read time to the JPEG
    configs of the same name without the suffix.
    """
    out = []
    for sampling in SAMPLINGS:
        name = f"{prefix}_{sampling}" if prefix else sampling
        description = SAMPLING_DESCRIPTIONS[sampling]
        if prefix:
            description = f"{fields.get('label_set', prefix)} labels, {description}"
        if frame_size is not None:
            name = f"{name}_{frame_size}"
            description = (
                f"{description}; frames stored resized to {frame_size}x{frame_size} by MATLAB's imresize "
                f"(lossless PNG): the model inputs of `{name[: -len(str(frame_size)) - 1]}` without the per-epoch resize"
            )
            out.append(
                config_cls(name=name, description=description, sampling=sampling, frame_size=frame_size, **fields)
            )
        else:
            out.append(config_cls(name=name, description=description, sampling=sampling, **fields))
    return out


# ------------------------------------------------------------------------------------------------
# Discovery and splitting


def walk_files(root: epath.PathLike) -> list[epath.Path]:
    """All files below ``root`` (recursive, hidden entries skipped), sorted by path.

    epath's rglob refuses recursive patterns (to protect GCS), hence the explicit walk.
    """
    out, pending = [], [epath.Path(root)]
    while pending:
        folder = pending.pop()
        for child in folder.iterdir():
            if child.name.startswith("."):
                continue
            if child.is_dir():
                pending.append(child)
            else:
                out.append(child)
    return sorted(out, key=lambda p: p.as_posix())


def find_videos(root: epath.PathLike) -> tuple[dict[str, epath.Path], list[Problem]]:
    """Maps video id (file stem) -> path for every video file below ``root`` (recursive, sorted).

    A stem found twice keeps the first path in sorted order; the others are reported.
    """
    found: dict[str, epath.Path] = {}
    duplicates = []
    for path in walk_files(root):
        if path.suffix.lower() in VIDEO_EXTENSIONS:
            video_id = path.stem
            if video_id in found:
                duplicates.append(
                    Problem(DUPLICATE_VIDEO_FILE, video_id, f"found twice: using {found[video_id]}, ignoring {path}")
                )
                continue
            found[video_id] = path
    return found, duplicates


def stable_hash(video_id: str) -> str:
    """sha256 of the video id: the same on every machine and Python version (unlike hash())."""
    return hashlib.sha256(video_id.encode("utf-8")).hexdigest()


def hash_split(labels: Mapping[str, str], test_fraction: float = TEST_FRACTION) -> dict[str, str]:
    """Deterministic split by video, stratified by label.

    Within each label, videos are ordered by sha256(video_id) and the first
    ``round(n * test_fraction)`` go to `test` (never all of them: at least one stays in `train`),
    the rest to `train`. The same ids give the same split on every machine, whatever the order in
    which they were listed.
    """
    by_label: dict[str, list[str]] = collections.defaultdict(list)
    for video_id, label in labels.items():
        by_label[label].append(video_id)
    split = {}
    for ids in by_label.values():
        ids = sorted(ids, key=lambda v: (stable_hash(v), v))
        n_test = int(len(ids) * test_fraction + 0.5)
        if n_test >= len(ids):
            n_test = len(ids) - 1
        for i, video_id in enumerate(ids):
            split[video_id] = "test" if i < n_test else "train"
    return split


def one_hot(label: str, categories: Sequence[str]) -> tuple[float, ...]:
    return tuple(1.0 if c == label else 0.0 for c in categories)


class LabelFileError(ValueError):
    """A label file that cannot be read as text; builders report it as LABEL_FILE_INVALID."""


def read_csv(path: epath.Path) -> tuple[list[str], list[list[str]]]:
    """Header and rows of a CSV file (utf-8, BOM tolerated); blank lines are dropped.

    Raises LabelFileError naming the file when it is not UTF-8 text (e.g. saved as Latin-1).
    """
    import csv
    import io

    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as err:
        raise LabelFileError(
            f"{path.name}: not UTF-8 text ({err.reason} at byte {err.start}); save it as UTF-8"
        ) from None
    rows = [row for row in csv.reader(io.StringIO(text)) if any(cell.strip() for cell in row)]
    if not rows:
        return [], []
    return [h.strip() for h in rows[0]], rows[1:]


# ------------------------------------------------------------------------------------------------
# Extraction (shared by the plain generator and the Beam workers)


def _bgr(rgb: np.ndarray) -> np.ndarray:
    import cv2

    return cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)


def encode_jpeg(rgb: np.ndarray, quality: int = JPEG_QUALITY) -> bytes:
    """JPEG bytes of an RGB uint8 image (OpenCV, baseline, the given quality)."""
    import cv2

    ok, buf = cv2.imencode(".jpg", _bgr(rgb), [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise RuntimeError("OpenCV failed to encode a frame as JPEG")
    return buf.tobytes()


def encode_png(rgb: np.ndarray, compression: int = PNG_COMPRESSION) -> bytes:
    """PNG bytes of an RGB uint8 image (OpenCV, 8-bit RGB, lossless)."""
    import cv2

    ok, buf = cv2.imencode(".png", _bgr(rgb), [cv2.IMWRITE_PNG_COMPRESSION, int(compression)])
    if not ok:
        raise RuntimeError("OpenCV failed to encode a frame as PNG")
    return buf.tobytes()


_ENCODERS = {"jpeg": encode_jpeg, "png": encode_png}


def check_frame_encoding(encoding: str) -> str:
    """Returns `encoding` if it is one of FRAME_ENCODINGS, else raises ValueError listing them."""
    if encoding not in FRAME_ENCODINGS:
        raise ValueError(f"Unknown frame_encoding {encoding!r}; choose one of {', '.join(FRAME_ENCODINGS)}")
    return encoding


def encode_frame(rgb: np.ndarray, encoding: str = FRAME_ENCODINGS[0]) -> bytes:
    """The stored bytes of a frame: JPEG (quality JPEG_QUALITY) or PNG."""
    return _ENCODERS[check_frame_encoding(encoding)](rgb)


def check_frame_size(frame_size: Optional[int]) -> Optional[int]:
    """Returns `frame_size` if it is None or PRE_RESIZED_SIZE (an int), else raises ValueError."""
    if frame_size is not None and (type(frame_size) is not int or frame_size != PRE_RESIZED_SIZE):
        raise ValueError(
            f"frame_size must be null (frames at their decoded size) or {PRE_RESIZED_SIZE} (the network's input), "
            f"got {frame_size!r}"
        )
    return frame_size


def resize_preprocessor(resize_method: str = "matlab", antialias: bool = True):
    """The `EmoNetPreprocessor` whose resize makes pre-resized frames (ValueError for a bad setting)."""
    from emonet_tf.preprocessor import EmoNetPreprocessor

    return EmoNetPreprocessor(resize_method=resize_method, antialias=antialias)


@functools.lru_cache(maxsize=None)
def _pre_resize_function(resize_method: str, antialias: bool):
    """encoded bytes -> float32 227x227x3: what `emonet_tf.data` runs on a record (the preprocessor's
    `traced_image_bytes`: in-graph decode; with the MATLAB resize, the host resize in a numpy_function,
    about 6x less CPU than the graph's and the same pixels, docs/preprocessing.md)."""
    import tensorflow as tf

    preprocessor = resize_preprocessor(resize_method, antialias)
    return tf.function(
        lambda data: preprocessor.traced_image_bytes(data, "video frame"),
        input_signature=[tf.TensorSpec([], tf.string)],
    )


def pre_resize(encoded: bytes, resize_method: str = "matlab", antialias: bool = True) -> np.ndarray:
    """uint8 227x227x3: the model input that `emonet_tf.data` makes of a record holding `encoded`.

    The resize ends with round and clip to 0..255 (after each pass for "matlab"), so its float32
    output holds integers and converts to uint8 exactly; checked here, RuntimeError otherwise.
    """
    out = _pre_resize_function(resize_method, bool(antialias))(encoded).numpy()
    pixels = out.astype(np.uint8)
    if out.shape != (PRE_RESIZED_SIZE, PRE_RESIZED_SIZE, 3) or not np.array_equal(pixels.astype(np.float32), out):
        raise RuntimeError(f"the resize gave {out.shape} values that are not integers in 0..255; cannot store as uint8")
    return pixels


def stored_frame(
    rgb: np.ndarray,
    frame_encoding: str = FRAME_ENCODINGS[0],
    frame_size: Optional[int] = None,
    resize_method: str = "matlab",
    antialias: bool = True,
) -> bytes:
    """The stored bytes of one decoded frame: `encode_frame`, or with `frame_size` the PNG of `pre_resize`."""
    encoded = encode_frame(rgb, frame_encoding)
    if check_frame_size(frame_size) is None:
        return encoded
    return encode_png(pre_resize(encoded, resize_method, antialias))


def example_key(video_id: str, frame_index: int) -> str:
    return f"{video_id}_{frame_index:06d}"


@dataclasses.dataclass
class Extraction:
    """What one video gave: its examples (all of them, or none and a problem), frames decoded, damage.

    ``damage`` is set when a damaged video was kept (policy "keep"); its examples then all carry
    ``video_damaged=True``.
    """

    examples: list[tuple[str, dict]]
    problem: Optional[Problem] = None
    frames_decoded: int = 0
    damage: Optional[str] = None


def _read_problem(entry: VideoEntry, err: Exception) -> Problem:
    """The skip reason of a video whose decoding failed: vanished file, damaged video, or unreadable."""
    import os

    if isinstance(err, video_lib.VideoDamagedError):
        return Problem(VIDEO_DAMAGED, entry.video_id, str(err))
    if not os.path.exists(entry.path):
        # Found when the videos were listed, gone now (moved or deleted during the build).
        return Problem(VIDEO_MISSING, entry.video_id, f"{entry.path}: file vanished during the build")
    if isinstance(err, video_lib.VideoReadError):
        return Problem(VIDEO_UNREADABLE, entry.video_id, str(err))
    # Anything else a decoder library may throw on a hostile file (one input never aborts a build).
    return Problem(VIDEO_UNREADABLE, entry.video_id, f"{entry.path}: {type(err).__name__}: {err}")


def extract_video(
    entry: VideoEntry,
    sampling: str,
    damaged: str = video_lib.DEFAULT_DAMAGED_POLICY,
    frame_encoding: str = FRAME_ENCODINGS[0],
    frame_size: Optional[int] = None,
    resize_method: str = "matlab",
    antialias: bool = True,
) -> Extraction:
    """All examples of one video, or none and the reason; see :class:`Extraction`.

    ``damaged``: "skip" returns a damaged video as a VIDEO_DAMAGED problem with no example; "keep"
    returns the frames that decoded, flagged ``video_damaged``. ``frame_size`` (227): frames stored
    pre-resized (`stored_frame`).
    """
    frame_sampling = video_lib.FrameSampling.parse(sampling)
    check_frame_encoding(frame_encoding)
    check_frame_size(frame_size)
    if frame_size is not None:
        resize_preprocessor(resize_method, antialias)  # a bad setting raises here, not per frame
    soft = np.asarray(entry.soft_label, np.float32)
    examples = []
    try:
        frames = video_lib.iter_frames(entry.path, frame_sampling, damaged=damaged)
        for frame in frames:
            examples.append(
                (
                    example_key(entry.video_id, frame.index),
                    {
                        "image": stored_frame(frame.image, frame_encoding, frame_size, resize_method, antialias),
                        "label": entry.label,
                        "video_id": entry.video_id,
                        "frame_index": frame.index,
                        "timestamp_ms": frame.timestamp_ms,
                        "soft_label": soft,
                        "video_damaged": False,
                    },
                )
            )
    except Exception as err:  # noqa: BLE001 -- any failure of one input becomes its reported skip reason
        problem = _read_problem(entry, err)
        return Extraction([], problem, getattr(err, "frames_decoded", 0))
    damage = frames.damage
    if damage is not None:
        for _, example in examples:
            example["video_damaged"] = True
    return Extraction(examples, None, frames.frames_decoded, damage)


class SplitSummary:
    """Videos and frames written, damaged videos kept, and videos skipped per reason, for one split."""

    def __init__(self):
        self.videos_written = 0
        self.frames_written = 0
        self.frames_decoded = 0
        self.skipped: dict[str, list[dict[str, str]]] = collections.defaultdict(list)
        self.damaged_kept: list[dict[str, str]] = []
        #: label -> video ids the split rule put in this split (set by the builder before extraction).
        self.assigned: dict[str, list[str]] = {}
        self.labels_written: set[str] = set()

    def add_problem(self, problem: Problem) -> None:
        self.skipped[problem.reason].append(problem.as_dict())

    def add_written(self, extraction: Extraction, video_id: str, label: Optional[str] = None) -> None:
        self.videos_written += 1
        if label is not None:
            self.labels_written.add(label)
        self.frames_written += len(extraction.examples)
        self.frames_decoded += extraction.frames_decoded
        if extraction.damage is not None:
            self.damaged_kept.append({"name": video_id, "detail": extraction.damage})

    def as_dict(self) -> dict[str, Any]:
        return {
            "videos_written": self.videos_written,
            "frames_written": self.frames_written,
            "frames_decoded_in_written_videos": self.frames_decoded,
            "videos_damaged_kept": len(self.damaged_kept),
            "damaged_kept": sorted(self.damaged_kept, key=lambda d: d["name"]),
            "videos_skipped": sum(len(v) for v in self.skipped.values()),
            "skipped": {k: sorted(v, key=lambda d: d["name"]) for k, v in sorted(self.skipped.items())},
            "labels_without_videos": self.labels_without_videos(),
        }

    def labels_without_videos(self) -> dict[str, list[str]]:
        """label -> its videos in this split, for each label that had videos here but none written.

        The split rule runs before extraction (it depends only on ids and labels, so that it is
        stable), so an unreadable file keeps the slot it was given: a label whose only test video is
        junk has no example in `test`.
        """
        return {
            label: sorted(ids)
            for label, ids in sorted(self.assigned.items())
            if ids and label not in self.labels_written
        }


#: Reasons that are a config's design, not bad input: strict mode does not raise for them.
EXPECTED_EXCLUSIONS = frozenset({LABEL_NOT_IN_CONFIG})


def report_problem(problem: Problem, strict: bool, where: str) -> None:
    """Logs a left-out input by name; in strict mode raises BadInputError instead (except EXPECTED_EXCLUSIONS)."""
    message = f"{where}: skipped {problem.name} ({problem.reason}): {problem.detail}"
    if strict and problem.reason not in EXPECTED_EXCLUSIONS:
        raise BadInputError(f"{where}: {problem.name} ({problem.reason}): {problem.detail} [strict mode]")
    logging.warning(message)


def report_damaged_kept(video_id: str, damage: str, strict: bool, where: str) -> None:
    """Logs a damaged video whose decoded frames are kept (policy "keep"); strict mode raises instead."""
    if strict:
        raise BadInputError(f"{where}: {video_id} ({VIDEO_DAMAGED}): {damage} [strict mode]")
    logging.warning("%s: kept damaged video %s (its examples have video_damaged=True): %s", where, video_id, damage)


def check_extraction(entry: VideoEntry, extraction: Extraction, strict: bool, where: str) -> None:
    """Reports what went wrong with one video (a skip or a kept damaged video), raising in strict mode."""
    if extraction.problem is not None:
        report_problem(extraction.problem, strict, where)
    elif extraction.damage is not None:
        report_damaged_kept(entry.video_id, extraction.damage, strict, where)


def _crashed(entry: VideoEntry, err: BaseException) -> Extraction:
    """A video whose extraction killed its worker process (e.g. a decoder crash on a hostile file)."""
    return Extraction(
        [], Problem(VIDEO_UNREADABLE, entry.video_id, f"{entry.path}: the extraction process died ({err})")
    )


def _probe() -> int:
    """A task that needs nothing but a started worker process (see `ExtractionPool`)."""
    import os

    return os.getpid()


#: Why a pool's processes may fail to start at all, in the words a user needs.
POOL_START_ERROR = (
    "the build's extraction processes could not start (workers > 1 spawns them, and each imports the "
    "main module again): a script that builds with workers > 1 must run the build under "
    '`if __name__ == "__main__":`'
)


class ExtractionPool:
    """The spawned processes of a parallel plain build: ``workers`` in all, shared by the build's splits.

    TFDS starts every split's generator before writing the first split (`_drop_empty_splits` reads
    each one's first example), so a pool per split would run one set of processes per split. The
    pool is started by a probe task, so a pool that cannot start at all (e.g. a script without the
    `__main__` guard) raises RuntimeError (`POOL_START_ERROR`) instead of blaming the videos.
    """

    def __init__(self, workers: int):
        import multiprocessing

        self.workers = check_workers(workers)
        self._context = multiprocessing.get_context("spawn")  # TensorFlow is not fork-safe
        self._executor = None

    def _start(self, workers: int):
        from concurrent.futures import ProcessPoolExecutor
        from concurrent.futures.process import BrokenProcessPool

        executor = ProcessPoolExecutor(workers, mp_context=self._context)
        try:
            executor.submit(_probe).result()
        except BrokenProcessPool as err:
            executor.shutdown(wait=True, cancel_futures=True)
            raise RuntimeError(POOL_START_ERROR) from err
        return executor

    def executor(self):
        """The running `ProcessPoolExecutor` (started at the first call, or after `renew`)."""
        if self._executor is None:
            self._executor = self._start(self.workers)
        return self._executor

    def renew(self, broken) -> None:
        """Drops `broken` (an executor whose process died) if it is still the current one."""
        if self._executor is broken:
            broken.shutdown(wait=True, cancel_futures=True)
            self._executor = None

    def run_alone(self, extract: Any, entry: VideoEntry) -> Extraction:
        """`extract(entry)` in a fresh one-process pool: tells which video in flight killed a pool."""
        from concurrent.futures.process import BrokenProcessPool

        executor = self._start(1)
        try:
            return executor.submit(extract, entry).result()
        except BrokenProcessPool as err:
            return _crashed(entry, err)
        finally:
            executor.shutdown(wait=True, cancel_futures=True)

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None


def iter_extractions(
    entries: Sequence[VideoEntry],
    workers: int = 1,
    extract: Any = None,
    pool: Optional[ExtractionPool] = None,
    **kwargs: Any,
) -> Iterator[tuple[VideoEntry, Extraction]]:
    """(entry, `extract_video(entry, **kwargs)`) for each entry, in the entries' order.

    ``workers`` > 1 (or a shared ``pool``, which the caller closes) extracts in spawned processes, at
    most :data:`VIDEOS_AHEAD_PER_WORKER` x workers videos ahead of the consumer, so memory stays a few
    videos' encoded frames whatever the corpus size. The order, hence the records, is the serial
    build's (tests/test_tfds_builders.py compares the files). A video whose extraction kills its
    process (a crash in a decoder library) becomes a VIDEO_UNREADABLE problem: the videos that were in
    flight in that pool are run again one by one in fresh processes, so only the culprit is reported,
    and the build goes on. ``extract``: the per-video function (default `extract_video`; module-level).

    Raises:
      RuntimeError: the processes could not start at all (`POOL_START_ERROR`).
    """
    import itertools
    from concurrent.futures.process import BrokenProcessPool

    extract = functools.partial(extract or extract_video, **kwargs)
    if pool is None and workers <= 1:
        for entry in entries:
            yield entry, extract(entry)
        return
    own = pool is None
    pool = pool or ExtractionPool(workers)
    ahead = VIDEOS_AHEAD_PER_WORKER * pool.workers
    todo = iter(entries)
    pending: collections.deque = collections.deque()  # (entry, future, executor), in the entries' order

    def submit(entry: VideoEntry) -> None:
        executor = pool.executor()
        pending.append((entry, executor.submit(extract, entry), executor))

    try:
        for entry in itertools.islice(todo, ahead):
            submit(entry)
        while pending:
            entry, future, executor = pending.popleft()
            try:
                extraction = future.result()
            except BrokenProcessPool:
                # Every video in flight in that pool failed with it (they come first: submitted earlier);
                # rerun each alone to find the one that kills it.
                pool.renew(executor)
                lost = [entry] + [e for e, _, x in pending if x is executor]
                kept = [p for p in pending if p[2] is not executor]
                pending.clear()
                pending.extend(kept)
                for e in lost:
                    yield e, pool.run_alone(extract, e)
                for e in itertools.islice(todo, max(ahead - len(pending), 0)):
                    submit(e)
                continue
            following = next(todo, None)
            if following is not None:
                submit(following)
            yield entry, extraction
    finally:  # also when the consumer stops early (strict mode raised): do not extract the rest
        for _, future, _ in pending:
            future.cancel()
        if own:
            pool.close()


_BEAM_NAMESPACE = "emonet_tf_video_frames"


def _beam_extract(
    entry: VideoEntry,
    sampling: str,
    strict: bool,
    split: str,
    where: str,
    damaged: str,
    frame_encoding: str,
    frame_size: Optional[int] = None,
    resize_method: str = "matlab",
    antialias: bool = True,
) -> Iterator[tuple[str, dict]]:
    """Beam FlatMap body: the video's examples, with the outcome recorded in Beam counters."""
    from apache_beam.metrics import Metrics

    extraction = extract_video(entry, sampling, damaged, frame_encoding, frame_size, resize_method, antialias)
    check_extraction(entry, extraction, strict, where)
    namespace = f"{_BEAM_NAMESPACE}/{split}"
    problem = extraction.problem
    if problem is not None:
        Metrics.counter(namespace, "skip:" + json.dumps([problem.reason, problem.name, problem.detail])).inc()
        return
    if extraction.damage is not None:
        Metrics.counter(namespace, "damaged_kept:" + json.dumps([entry.video_id, extraction.damage])).inc()
    Metrics.counter(namespace, "videos_written").inc()
    Metrics.counter(namespace, "label_written:" + json.dumps(entry.label)).inc()
    Metrics.counter(namespace, "frames_written").inc(len(extraction.examples))
    Metrics.counter(namespace, "frames_decoded").inc(extraction.frames_decoded)
    yield from extraction.examples


def unique_video_ids(
    per_split: Mapping[str, Sequence[VideoEntry]],
) -> tuple[dict[str, list[VideoEntry]], list[Problem]]:
    """Drops every entry whose video id was already taken (splits in sorted order, then list order).

    Example keys are ``<video_id>_<frame>``, so two files with one id (``happy/clip.mp4`` and
    ``happy/clip.avi``) would make TFDS abort the whole build at the very end ("Two examples share the
    same hashed key"), after decoding everything. Each builder reports duplicates as it finds them;
    this is the guard for any that reach the extraction stage.
    """
    first: dict[str, VideoEntry] = {}
    kept: dict[str, list[VideoEntry]] = {}
    problems = []
    for split in sorted(per_split):
        kept[split] = []
        for entry in per_split[split]:
            if entry.video_id in first:
                problems.append(
                    Problem(
                        DUPLICATE_VIDEO_FILE,
                        entry.video_id,
                        f"two files with this video id: using {first[entry.video_id].path}, ignoring {entry.path}",
                    )
                )
                continue
            first[entry.video_id] = entry
            kept[split].append(entry)
    return kept, problems


class DeterministicExampleWriter(tfds.core.writer.ExampleWriter):
    """Writes each serialized tf.train.Example again with sorted feature-map keys.

    TFDS serializes with protobuf's default ``SerializeToString()``, whose map order (upb) differs
    from process to process, so two builds of the same input gave the same examples in files that
    ``cmp`` and checksums call different. ``DatasetBuilder._example_writer`` is TFDS's documented
    hook for a custom writer, and the serialized bytes reach it in the plain and the Beam writers
    alike; re-serializing with ``deterministic=True`` (sorted map keys) there makes the files
    byte-identical across processes and machines, at the cost of one parse per example.
    """

    def write(self, path, examples):
        return super().write(path, ((key, canonical_example_bytes(data)) for key, data in examples))


def canonical_example_bytes(serialized: bytes) -> bytes:
    """The same tf.train.Example, serialized with its feature map in sorted key order."""
    from tensorflow_datasets.proto import tf_example_pb2

    return tf_example_pb2.Example.FromString(serialized).SerializeToString(deterministic=True)


# ------------------------------------------------------------------------------------------------
# The builder


class VideoFramesBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """Base builder: subclasses define `_categories()`, `_collect(dl_manager)` and the class metadata."""

    VERSION = tfds.core.Version("2.0.0")
    RELEASE_NOTES = {
        "1.0.0": "Initial release: one example per sampled frame, splits by video.",
        "2.0.0": (
            "timestamp_ms is the frame's presentation timestamp in the stream (was frame_index * 1000 / fps); "
            "fps10 follows ffmpeg's fps=10 filter (for each 100 ms tick, the last frame whose timestamp rounds "
            "to at or before it; frames never repeated); new feature video_damaged; config fields "
            "damaged_videos (skip/keep) and frame_encoding (jpeg/png); skip reason video_truncated is now "
            "video_damaged; duplicate video ids and vanished files are reported instead of aborting the "
            "build; byte-identical tfrecord files across processes (sorted feature maps)."
        ),
    }
    HOMEPAGE: Optional[str] = None

    def __init__(self, *, strict: Optional[bool] = None, workers: Optional[int] = None, **kwargs: Any):
        """``strict`` overrides the config's field (the environment variable can only turn it on).

        ``workers``: processes that decode and encode the videos of a plain build (default: the
        environment variable `EMONET_TFDS_WORKERS`, else 1, i.e. the build's own process); the records
        are the same for any value. A Beam build distributes over Beam's workers instead.

        Raises:
          ValueError: ``workers`` (or `EMONET_TFDS_WORKERS`) is not a positive integer.
        """
        self._strict_kwarg = strict
        self.workers = check_workers(workers) if workers is not None else (env_workers() or 1)
        self._pool: Optional[ExtractionPool] = None
        self._use_beam = False
        self._label_problems: list[Problem] = []
        self._summaries: dict[str, SplitSummary] = {}
        self._assigned: dict[str, dict[str, list[str]]] = {}  # split -> label -> video ids
        super().__init__(**kwargs)
        self._original_state["strict"] = strict
        self._original_state["workers"] = workers

    # --- to be defined by subclasses
    @abc.abstractmethod
    def _categories(self) -> Optional[Sequence[str]]:
        """Class names in ClassLabel order, or None when only known once the data is scanned."""

    @abc.abstractmethod
    def _collect(self, dl_manager: tfds.download.DownloadManager) -> tuple[dict[str, list[VideoEntry]], list[Problem]]:
        """Videos per split and the label-stage problems (videos or files that were left out)."""

    # --- shared
    @property
    def strict(self) -> bool:
        if self._strict_kwarg is not None:
            return bool(self._strict_kwarg) or env_strict()
        return bool(self.builder_config.strict) or env_strict()

    def _where(self) -> str:
        return f"{self.name}/{self.builder_config.name}"

    def pre_resized(self) -> Optional[dict[str, Any]]:
        """What ``info.metadata["pre_resized"]`` records for a ``frame_size`` config, else None.

        ``preprocessor``: the `EmoNetPreprocessor` config whose resize made the frames (readers compare
        it with the model's); ``frame_size``; ``source_encoding`` (and ``jpeg_quality``): the ordinary
        records whose read-time inputs the frames equal; ``stored_encoding``: "png".
        """
        config = self.builder_config
        if config.frame_size is None:
            return None
        return {
            "frame_size": config.frame_size,
            "preprocessor": resize_preprocessor(config.resize_method, config.antialias).get_config(),
            "source_encoding": config.frame_encoding,
            "jpeg_quality": JPEG_QUALITY if config.frame_encoding == "jpeg" else None,
            "stored_encoding": "png",
            "png_compression": PNG_COMPRESSION,
        }

    def _image_doc(self) -> str:
        pre = self.pre_resized()
        if pre is not None:
            p = pre["preprocessor"]
            source = "JPEG q%d" % JPEG_QUALITY if pre["source_encoding"] == "jpeg" else "lossless PNG"
            return (
                f"RGB frame already resized to {pre['frame_size']}x{pre['frame_size']} (resize {p['resize_method']}, "
                f"antialias {p['antialias']}) from its {source} encoding, stored as lossless PNG"
            )
        if self.builder_config.frame_encoding == "png":
            return "RGB frame, PNG-encoded once by OpenCV (lossless: exactly the decoded pixels)"
        return f"RGB frame, JPEG-encoded once by OpenCV at quality {JPEG_QUALITY}"

    def _info(self) -> tfds.core.DatasetInfo:
        # Runs at construction: a wrong choice fails there, naming the field's values, not at the first video.
        video_lib.check_damaged_policy(self.builder_config.damaged_videos)
        check_frame_encoding(self.builder_config.frame_encoding)
        check_frame_size(self.builder_config.frame_size)
        pre = self.pre_resized()
        categories = self._categories()
        num = len(categories) if categories is not None else None
        return self.dataset_info_from_configs(
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Image(
                        shape=(pre["frame_size"], pre["frame_size"], 3) if pre else (None, None, 3),
                        encoding_format=pre["stored_encoding"] if pre else self.builder_config.frame_encoding,
                        doc=self._image_doc(),
                    ),
                    "label": tfds.features.ClassLabel(names=list(categories))
                    if categories is not None
                    else tfds.features.ClassLabel(),
                    "video_id": tfds.features.Text(doc="the video's file name without extension, e.g. 0001"),
                    "frame_index": tfds.features.Scalar(np.int32, doc="index of the frame among all decoded frames"),
                    "timestamp_ms": tfds.features.Scalar(
                        np.float32,
                        doc="presentation timestamp of the frame in the stream, ms (relative to the start; "
                        "float32, as tf.train.Example stores floats)",
                    ),
                    "video_damaged": tfds.features.Scalar(
                        np.bool_,
                        doc="True when the video was damaged (decoder error or stream shorter than its "
                        "duration) and its decoded frames were kept (damaged_videos='keep')",
                    ),
                    "soft_label": tfds.features.Tensor(
                        shape=(num,),
                        dtype=np.float32,
                        doc="share of raters per class (sums to 1); one-hot when no ratings are known",
                    ),
                }
            ),
            supervised_keys=("image", "label"),
            homepage=self.HOMEPAGE,
            # Only pre-resized configs write metadata.json; the ordinary ones are left as they were.
            metadata=tfds.core.MetadataDict({PRE_RESIZED_KEY: pre}) if pre else None,
        )

    def _example_writer(self) -> tfds.core.writer.ExampleWriter:
        return DeterministicExampleWriter(file_format=self.info.file_format)

    def _download_and_prepare(self, dl_manager, download_config) -> None:
        # Beam is used when the caller gave a runner or pipeline options (tfds build --beam_pipeline_options).
        self._use_beam = bool(download_config.beam_runner is not None or download_config.beam_options is not None)
        self._summaries = {}
        self._label_problems = []
        self._assigned = {}
        # One set of extraction processes for the whole build, shared by its splits (see ExtractionPool).
        self._pool = ExtractionPool(self.workers) if self.workers > 1 and not self._use_beam else None
        try:
            super()._download_and_prepare(dl_manager=dl_manager, download_config=download_config)
        finally:
            if self._pool is not None:
                self._pool.close()
                self._pool = None
        self._write_summary()

    def _split_generators(self, dl_manager):
        per_split, problems = self._collect(dl_manager)
        per_split, duplicates = unique_video_ids(per_split)
        problems = [*problems, *duplicates]
        for problem in problems:
            report_problem(problem, self.strict, self._where())
        self._label_problems = problems
        self._assigned = {}
        for split, entries in per_split.items():
            by_label = self._assigned.setdefault(split, {})
            for entry in entries:
                by_label.setdefault(entry.label, []).append(entry.video_id)
        counts = collections.Counter(p.reason for p in problems)
        logging.info(
            "%s: %d videos to extract (%s); %d left out at the label stage %s",
            self._where(),
            sum(len(v) for v in per_split.values()),
            ", ".join(f"{s}: {len(v)}" for s, v in per_split.items()),
            len(problems),
            dict(counts),
        )
        if not any(per_split.values()):
            raise ValueError(
                f"{self._where()}: no labelled video found; see the MANUAL_DOWNLOAD_INSTRUCTIONS. "
                f"Left out: {dict(counts)}"
            )
        generators = {
            split: self._generate_examples(entries=entries, split=split)
            for split, entries in per_split.items()
            if entries
        }
        if self._use_beam:
            return generators
        return self._drop_empty_splits(generators)

    def _drop_empty_splits(self, generators: Mapping[str, Iterator]) -> dict[str, Iterator]:
        """Plain builds: leaves out the splits in which no video could be written.

        TFDS aborts the whole build when a split's generator yields nothing ("No examples were
        yielded"), e.g. a test split whose only video is corrupt. So each split's generator is run up
        to its first example here (decoding its videos until one is good, which the build would do
        anyway); a split without any is reported in the summary and not written.
        """
        import itertools

        kept = {}
        for split, generator in generators.items():
            first = next(generator, None)
            if first is None:
                logging.warning(
                    "%s/%s: no video of this split could be written; the split is left out (see %s)",
                    self._where(),
                    split,
                    SUMMARY_FILENAME,
                )
                continue
            kept[split] = itertools.chain([first], generator)
        if not kept:
            skipped = {
                split: {reason: [d["name"] for d in items] for reason, items in summary.as_dict()["skipped"].items()}
                for split, summary in self._summaries.items()
            }
            raise ValueError(f"{self._where()}: none of the videos could be written; skipped: {skipped}")
        return kept

    def _extract_kwargs(self) -> dict[str, Any]:
        config = self.builder_config
        kwargs = {
            "sampling": config.sampling,
            "damaged": config.damaged_videos,
            "frame_encoding": config.frame_encoding,
        }
        if config.frame_size is not None:
            kwargs.update(frame_size=config.frame_size, resize_method=config.resize_method, antialias=config.antialias)
        return kwargs

    def _generate_examples(self, entries: list[VideoEntry], split: str):
        strict, where = self.strict, f"{self._where()}/{split}"
        if self._use_beam:
            beam = tfds.core.lazy_imports.apache_beam
            return (
                beam.Create(entries)
                | "Reshuffle" >> beam.Reshuffle()
                | "ExtractFrames"
                >> beam.FlatMap(
                    functools.partial(_beam_extract, strict=strict, split=split, where=where, **self._extract_kwargs())
                )
            )
        return self._generate_plain(entries, split, strict, where)

    def _generate_plain(self, entries, split, strict, where) -> Iterator[tuple[str, dict]]:
        summary = self._summaries[split] = self._new_summary(split)
        for entry, extraction in iter_extractions(entries, pool=self._pool, **self._extract_kwargs()):
            check_extraction(entry, extraction, strict, where)
            if extraction.problem is not None:
                summary.add_problem(extraction.problem)
                continue
            summary.add_written(extraction, entry.video_id, entry.label)
            yield from extraction.examples
        self._log_split_summary(split)

    def _process_pipeline_result(self, pipeline_result) -> None:
        from apache_beam.metrics.metric import MetricsFilter

        results = pipeline_result.metrics().query(MetricsFilter())
        for counter in results["counters"]:
            namespace = counter.key.metric.namespace
            if not namespace.startswith(_BEAM_NAMESPACE + "/"):
                continue
            split = namespace.split("/", 1)[1]
            if split not in self._summaries:
                self._summaries[split] = self._new_summary(split)
            summary = self._summaries[split]
            name, value = counter.key.metric.name, counter.committed
            if name == "videos_written":
                summary.videos_written += value
            elif name.startswith("label_written:"):
                if value:
                    summary.labels_written.add(json.loads(name[len("label_written:") :]))
            elif name == "frames_written":
                summary.frames_written += value
            elif name == "frames_decoded":
                summary.frames_decoded += value
            elif name.startswith("skip:"):
                reason, video, detail = json.loads(name[len("skip:") :])
                for _ in range(value):
                    summary.add_problem(Problem(reason, video, detail))
            elif name.startswith("damaged_kept:"):
                video, detail = json.loads(name[len("damaged_kept:") :])
                summary.damaged_kept.extend([{"name": video, "detail": detail}] * value)
        for split in self._assigned:
            if split not in self._summaries:
                self._summaries[split] = self._new_summary(split)
        for split in sorted(self._summaries):
            self._log_split_summary(split)

    def _new_summary(self, split: str) -> SplitSummary:
        summary = SplitSummary()
        summary.assigned = {label: list(ids) for label, ids in self._assigned.get(split, {}).items()}
        return summary

    def _log_split_summary(self, split: str) -> None:
        s = self._summaries[split].as_dict()
        for label, ids in s["labels_without_videos"].items():
            logging.warning(
                "%s/%s: label %r has no example in this split: its %d video(s) here (%s) could not be "
                "written; the split is fixed before extraction, so unreadable files keep their slots "
                "(see %s, splits.%s.labels_without_videos)",
                self._where(),
                split,
                label,
                len(ids),
                ", ".join(ids),
                SUMMARY_FILENAME,
                split,
            )
        logging.info(
            "%s/%s summary: %d videos and %d frames written (%d damaged videos kept %s), %d videos skipped %s",
            self._where(),
            split,
            s["videos_written"],
            s["frames_written"],
            s["videos_damaged_kept"],
            [d["name"] for d in s["damaged_kept"]],
            s["videos_skipped"],
            {k: [d["name"] for d in v] for k, v in s["skipped"].items()},
        )

    def summary(self) -> dict[str, Any]:
        """The extraction summary of the last build by this builder object (also written as JSON)."""
        label_stage: dict[str, list] = collections.defaultdict(list)
        for p in self._label_problems:
            label_stage[p.reason].append(p.as_dict())
        return {
            "dataset": self.name,
            "config": self.builder_config.name,
            "version": str(self.version),
            "sampling": self.builder_config.sampling,
            "frame_encoding": self.builder_config.frame_encoding,
            "jpeg_quality": JPEG_QUALITY if self.builder_config.frame_encoding == "jpeg" else None,
            "damaged_videos": self.builder_config.damaged_videos,
            **({PRE_RESIZED_KEY: self.pre_resized()} if self.builder_config.frame_size is not None else {}),
            "strict": self.strict,
            "beam": self._use_beam,
            "left_out_at_label_stage": {k: sorted(v, key=lambda d: d["name"]) for k, v in sorted(label_stage.items())},
            "splits": {split: self._summaries[split].as_dict() for split in sorted(self._summaries)},
        }

    def _write_summary(self) -> None:
        path = epath.Path(self.data_dir) / SUMMARY_FILENAME
        path.write_text(json.dumps(self.summary(), indent=2, sort_keys=True))
        logging.info("%s: %s written with the prepared data", self._where(), SUMMARY_FILENAME)


def read_summary(data_path: epath.PathLike) -> dict[str, Any]:
    """The JSON summary of a prepared dataset (``builder.data_path``)."""
    return json.loads((epath.Path(data_path) / SUMMARY_FILENAME).read_text())
