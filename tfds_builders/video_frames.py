"""Shared machinery of the video TFDS builders: one example per sampled frame, splits by video.

Both `cowen_keltner` and `video_folder` subclass :class:`VideoFramesBuilder`; they only differ in
how they find videos and labels (their `_collect`). Everything else lives here:

* **Extraction.** :func:`extract_video` decodes one video with :mod:`emonet_tf.video`, encodes the
  sampled frames ONCE as JPEG with OpenCV (quality :data:`JPEG_QUALITY`, RGB content) and returns
  all of the video's examples, or a skip reason. The JPEG bytes are handed to
  ``tfds.features.Image(encoding_format="jpeg")`` as ``bytes``, which TFDS stores unchanged (no
  second encoding). A video's examples are buffered (as JPEG bytes, a few MB at most) until the
  whole video decoded, so that a video that breaks mid-way is dropped whole, never half-written.
  Memory stays flat in the corpus size: one video at a time.
* **Plain or Beam.** TFDS picks the writer from what `_generate_examples` returns: a Python
  generator (plain, single process) or a ``beam.PTransform``. We return the PTransform
  (``beam.Create(videos) | beam.Reshuffle() | beam.FlatMap(...)``) when the build was given a Beam
  runner or Beam options (``DownloadConfig.beam_runner``/``beam_options``, i.e.
  ``tfds build --beam_pipeline_options=...``), else a generator. Beam is imported lazily.
* **Splits by video**, never by frame; see :func:`hash_split`.
* **Bad input** (unreadable or truncated videos, missing/unknown labels, unusable label files) is
  logged by name and counted per reason in a summary, never written as a partial record. Strict
  mode (config field ``strict``, builder kwarg ``strict=True`` or environment variable
  ``EMONET_TFDS_STRICT=1``) raises :class:`BadInputError` at the first problem instead. Videos whose
  label is outside the config's categories (e.g. Nostalgia in `emonet20`) are left out by design:
  they are counted in the summary but never raise.
* **Summary.** Per split, logged when the split's generator is exhausted (plain) or from Beam
  counters after the pipeline ran (Beam), and written as JSON next to the data
  (``<data_dir>/<name>/<config>/<version>/extraction_summary.json``).
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
#: Share of each label's videos that go to `test` when no split is given (the released split has 428/2185).
TEST_FRACTION = 0.2
#: File written next to the prepared data.
SUMMARY_FILENAME = "extraction_summary.json"
#: Environment variable that turns strict mode on for `tfds build` (any of 1/true/yes).
STRICT_ENV = "EMONET_TFDS_STRICT"
#: File extensions recognized as videos (case-insensitive).
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv", ".ogv")
#: The frame samplings every builder offers, as config-name suffixes.
SAMPLINGS = ("every5", "fps10", "all")
SAMPLING_DESCRIPTIONS = {
    "every5": "every 5th frame (0, 5, 10, ...), like the lab's MATLAB scripts",
    "fps10": "10 frames per second (first frame at or after each 100 ms tick), like the lab's PyTorch pipeline",
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
VIDEO_TRUNCATED = "video_truncated"
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
    """

    sampling: str = "every5"
    strict: bool = False
    test_fraction: float = TEST_FRACTION


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


def sampling_configs(config_cls: type, prefix: str = "", **fields: Any) -> list:
    """One config per frame sampling, named ``<prefix>_<sampling>`` (or ``<sampling>`` without prefix)."""
    out = []
    for sampling in SAMPLINGS:
        name = f"{prefix}_{sampling}" if prefix else sampling
        description = SAMPLING_DESCRIPTIONS[sampling]
        if prefix:
            description = f"{fields.get('label_set', prefix)} labels, {description}"
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
                duplicates.append(Problem(DUPLICATE_VIDEO_FILE, video_id,
                                          f"found twice: using {found[video_id]}, ignoring {path}"))
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
    for label, ids in by_label.items():
        ids = sorted(ids, key=lambda v: (stable_hash(v), v))
        n_test = int(len(ids) * test_fraction + 0.5)
        if n_test >= len(ids):
            n_test = len(ids) - 1
        for i, video_id in enumerate(ids):
            split[video_id] = "test" if i < n_test else "train"
    return split


def one_hot(label: str, categories: Sequence[str]) -> tuple[float, ...]:
    return tuple(1.0 if c == label else 0.0 for c in categories)


def read_csv(path: epath.Path) -> tuple[list[str], list[list[str]]]:
    """Header and rows of a CSV file (utf-8, BOM tolerated); blank lines are dropped."""
    import csv
    import io

    text = path.read_text(encoding="utf-8-sig")
    rows = [row for row in csv.reader(io.StringIO(text)) if any(cell.strip() for cell in row)]
    if not rows:
        return [], []
    return [h.strip() for h in rows[0]], rows[1:]


# ------------------------------------------------------------------------------------------------
# Extraction (shared by the plain generator and the Beam workers)


def encode_jpeg(rgb: np.ndarray, quality: int = JPEG_QUALITY) -> bytes:
    """JPEG bytes of an RGB uint8 image (OpenCV, baseline, the given quality)."""
    import cv2

    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise RuntimeError("OpenCV failed to encode a frame as JPEG")
    return buf.tobytes()


def example_key(video_id: str, frame_index: int) -> str:
    return f"{video_id}_{frame_index:06d}"


def extract_video(entry: VideoEntry, sampling: str) -> tuple[list[tuple[str, dict]], Optional[Problem], int]:
    """All examples of one video, or none and the reason; plus the number of frames decoded."""
    frame_sampling = video_lib.FrameSampling.parse(sampling)
    soft = np.asarray(entry.soft_label, np.float32)
    examples = []
    frames = None
    try:
        frames = video_lib.iter_frames(entry.path, frame_sampling)
        for frame in frames:
            examples.append((example_key(entry.video_id, frame.index), {
                "image": encode_jpeg(frame.image),
                "label": entry.label,
                "video_id": entry.video_id,
                "frame_index": frame.index,
                "timestamp_ms": frame.timestamp_ms,
                "soft_label": soft,
            }))
    except video_lib.VideoReadError as err:
        decoded = frames.frames_decoded if frames is not None else 0
        reason = VIDEO_TRUNCATED if decoded else VIDEO_UNREADABLE
        return [], Problem(reason, entry.video_id, str(err)), decoded
    return examples, None, frames.frames_decoded


class SplitSummary:
    """Videos and frames written, and videos skipped per reason, for one split."""

    def __init__(self):
        self.videos_written = 0
        self.frames_written = 0
        self.frames_decoded = 0
        self.skipped: dict[str, list[dict[str, str]]] = collections.defaultdict(list)

    def add_problem(self, problem: Problem) -> None:
        self.skipped[problem.reason].append(problem.as_dict())

    def as_dict(self) -> dict[str, Any]:
        return {
            "videos_written": self.videos_written,
            "frames_written": self.frames_written,
            "frames_decoded_in_written_videos": self.frames_decoded,
            "videos_skipped": sum(len(v) for v in self.skipped.values()),
            "skipped": {k: sorted(v, key=lambda d: d["name"]) for k, v in sorted(self.skipped.items())},
        }


#: Reasons that are a config's design, not bad input: strict mode does not raise for them.
EXPECTED_EXCLUSIONS = frozenset({LABEL_NOT_IN_CONFIG})


def report_problem(problem: Problem, strict: bool, where: str) -> None:
    """Logs a left-out input by name; in strict mode raises BadInputError instead (except EXPECTED_EXCLUSIONS)."""
    message = f"{where}: skipped {problem.name} ({problem.reason}): {problem.detail}"
    if strict and problem.reason not in EXPECTED_EXCLUSIONS:
        raise BadInputError(f"{where}: {problem.name} ({problem.reason}): {problem.detail} [strict mode]")
    logging.warning(message)


_BEAM_NAMESPACE = "emonet_tf_video_frames"


def _beam_extract(entry: VideoEntry, sampling: str, strict: bool, split: str, where: str) -> Iterator[tuple[str, dict]]:
    """Beam FlatMap body: the video's examples, with the outcome recorded in Beam counters."""
    from apache_beam.metrics import Metrics

    examples, problem, decoded = extract_video(entry, sampling)
    namespace = f"{_BEAM_NAMESPACE}/{split}"
    if problem is not None:
        report_problem(problem, strict, where)
        Metrics.counter(namespace, "skip:" + json.dumps([problem.reason, problem.name, problem.detail])).inc()
        return
    Metrics.counter(namespace, "videos_written").inc()
    Metrics.counter(namespace, "frames_written").inc(len(examples))
    Metrics.counter(namespace, "frames_decoded").inc(decoded)
    yield from examples


# ------------------------------------------------------------------------------------------------
# The builder


class VideoFramesBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """Base builder: subclasses define `_categories()`, `_collect(dl_manager)` and the class metadata."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release: one example per sampled frame, splits by video."}
    HOMEPAGE: Optional[str] = None

    def __init__(self, *, strict: Optional[bool] = None, **kwargs: Any):
        """``strict`` overrides the config's field (the environment variable can only turn it on)."""
        self._strict_kwarg = strict
        self._use_beam = False
        self._label_problems: list[Problem] = []
        self._summaries: dict[str, SplitSummary] = {}
        super().__init__(**kwargs)
        self._original_state["strict"] = strict

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

    def _info(self) -> tfds.core.DatasetInfo:
        categories = self._categories()
        num = len(categories) if categories is not None else None
        return self.dataset_info_from_configs(
            features=tfds.features.FeaturesDict({
                "image": tfds.features.Image(shape=(None, None, 3), encoding_format="jpeg",
                                             doc=f"RGB frame, JPEG-encoded once by OpenCV at quality {JPEG_QUALITY}"),
                "label": tfds.features.ClassLabel(names=list(categories)) if categories is not None
                else tfds.features.ClassLabel(),
                "video_id": tfds.features.Text(doc="the video's file name without extension, e.g. 0001"),
                "frame_index": tfds.features.Scalar(np.int32, doc="index of the frame among all decoded frames"),
                "timestamp_ms": tfds.features.Scalar(
                    np.float32, doc="frame_index * 1000 / container fps (float32, as tf.train.Example stores floats)"),
                "soft_label": tfds.features.Tensor(
                    shape=(num,), dtype=np.float32,
                    doc="share of raters per class (sums to 1); one-hot when no ratings are known"),
            }),
            supervised_keys=("image", "label"),
            homepage=self.HOMEPAGE,
        )

    def _download_and_prepare(self, dl_manager, download_config) -> None:
        # Beam is used when the caller gave a runner or pipeline options (tfds build --beam_pipeline_options).
        self._use_beam = bool(download_config.beam_runner is not None or download_config.beam_options is not None)
        self._summaries = {}
        self._label_problems = []
        super()._download_and_prepare(dl_manager=dl_manager, download_config=download_config)
        self._write_summary()

    def _split_generators(self, dl_manager):
        per_split, problems = self._collect(dl_manager)
        for problem in problems:
            report_problem(problem, self.strict, self._where())
        self._label_problems = problems
        counts = collections.Counter(p.reason for p in problems)
        logging.info("%s: %d videos to extract (%s); %d left out at the label stage %s",
                     self._where(), sum(len(v) for v in per_split.values()),
                     ", ".join(f"{s}: {len(v)}" for s, v in per_split.items()), len(problems), dict(counts))
        if not any(per_split.values()):
            raise ValueError(f"{self._where()}: no labelled video found; see the MANUAL_DOWNLOAD_INSTRUCTIONS. "
                             f"Left out: {dict(counts)}")
        return {split: self._generate_examples(entries=entries, split=split)
                for split, entries in per_split.items() if entries}

    def _generate_examples(self, entries: list[VideoEntry], split: str):
        sampling, strict, where = self.builder_config.sampling, self.strict, f"{self._where()}/{split}"
        if self._use_beam:
            beam = tfds.core.lazy_imports.apache_beam
            return (beam.Create(entries)
                    | "Reshuffle" >> beam.Reshuffle()
                    | "ExtractFrames" >> beam.FlatMap(
                        functools.partial(_beam_extract, sampling=sampling, strict=strict, split=split, where=where)))
        return self._generate_plain(entries, split, sampling, strict, where)

    def _generate_plain(self, entries, split, sampling, strict, where) -> Iterator[tuple[str, dict]]:
        summary = self._summaries[split] = SplitSummary()
        for entry in entries:
            examples, problem, decoded = extract_video(entry, sampling)
            if problem is not None:
                report_problem(problem, strict, where)
                summary.add_problem(problem)
                continue
            summary.videos_written += 1
            summary.frames_written += len(examples)
            summary.frames_decoded += decoded
            yield from examples
        self._log_split_summary(split)

    def _process_pipeline_result(self, pipeline_result) -> None:
        from apache_beam.metrics.metric import MetricsFilter

        results = pipeline_result.metrics().query(MetricsFilter())
        for counter in results["counters"]:
            namespace = counter.key.metric.namespace
            if not namespace.startswith(_BEAM_NAMESPACE + "/"):
                continue
            split = namespace.split("/", 1)[1]
            summary = self._summaries.setdefault(split, SplitSummary())
            name, value = counter.key.metric.name, counter.committed
            if name == "videos_written":
                summary.videos_written += value
            elif name == "frames_written":
                summary.frames_written += value
            elif name == "frames_decoded":
                summary.frames_decoded += value
            elif name.startswith("skip:"):
                reason, video, detail = json.loads(name[len("skip:"):])
                for _ in range(value):
                    summary.add_problem(Problem(reason, video, detail))
        for split in sorted(self._summaries):
            self._log_split_summary(split)

    def _log_split_summary(self, split: str) -> None:
        s = self._summaries[split].as_dict()
        logging.info("%s/%s summary: %d videos and %d frames written, %d videos skipped %s",
                     self._where(), split, s["videos_written"], s["frames_written"], s["videos_skipped"],
                     {k: [d["name"] for d in v] for k, v in s["skipped"].items()})

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
            "jpeg_quality": JPEG_QUALITY,
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
