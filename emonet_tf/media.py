"""Mixed image and video inputs: collecting them, predicting or preprocessing them as one stream, and
writing a layer's activations with what each row is.

    inputs = media.collect_inputs(["photos/", "trailer.mp4"])          # folders walked, files kept as given
    with tqdm(total=media.estimate_frames(inputs), unit="frame") as bar:
        for result in media.iter_results(emonet, inputs, "every5", 32, progress=bar):
            print(result.source, result.status, result.probabilities)

Units: an image is one frame; a video counts its decoded frames (all of them, not only the sampled
ones: decoding is the work). Timestamps are milliseconds (float64), frame indices count every decoded
frame of a video from 0 (-1 for an image). Probabilities and logits are the model's 20 (C) outputs.

Damaged videos (decoder error, or a stream that ends before its own duration; `emonet_tf.video`)
follow one policy, `damaged` = "skip" (the video is reported as failed and has no rows) or "keep"
(the frames that decoded are used and marked with the damage).

Importing this module does not import TensorFlow or PyAV; the functions that need them import them.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
from typing import Any, Callable, Iterable, Iterator, Optional, Sequence

import numpy as np

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".jpe", ".png", ".gif", ".bmp", ".tif", ".tiff", ".webp"})


def video_extensions() -> frozenset:
    """emonet_tf.video.VIDEO_EXTENSIONS, the one list of video extensions (shared with the TFDS builders)."""
    from emonet_tf import video

    return frozenset(video.VIDEO_EXTENSIONS)


# ------------------------------------------------------------------------------------------------
# Collecting inputs


@dataclasses.dataclass(frozen=True)
class InputFile:
    """One input: its path, "image" or "video", and an error when it is known to fail before reading."""

    path: str
    kind: str  # "image" or "video"
    error: Optional[str] = None  # e.g. a folder named like a video


def kind_of(path: str) -> str:
    """ "video" for a video extension, else "image" (an unreadable file is then reported by the decoder)."""
    return "video" if os.path.splitext(path)[1].lower() in video_extensions() else "image"


def is_media_name(path: str) -> bool:
    """Whether the name ends in one of the image or video extensions that folder walks pick up."""
    ext = os.path.splitext(path)[1].lower()
    return ext in IMAGE_EXTENSIONS or ext in video_extensions()


def collect_inputs(paths: Sequence[str]) -> list[InputFile]:
    """Files as given, and folders walked recursively (sorted) for image and video extensions.

    A path given explicitly is kept even when missing or of an unknown type, so that it is reported
    by name instead of silently skipped. A folder given explicitly whose name has an image or video
    extension (``clip.mp4/``) is such a path too: reported as failed ("not a regular file"), not walked.
    Never raises for a bad path; the errors come with the results.
    """
    found: list[InputFile] = []
    for path in paths:
        if os.path.isdir(path) and is_media_name(os.path.normpath(path)):
            found.append(
                InputFile(
                    path,
                    kind_of(os.path.normpath(path)),
                    error=f"{path}: not a regular file (a folder named like an image or video)",
                )
            )
        elif os.path.isdir(path):
            for root, dirs, files in os.walk(path):
                dirs.sort()
                found.extend(
                    InputFile(os.path.join(root, name), kind_of(name)) for name in sorted(files) if is_media_name(name)
                )
        elif os.path.exists(path) and not os.path.isfile(path):
            # A FIFO or device would block or stream forever in a decoder: reported, never read.
            found.append(InputFile(path, kind_of(path), error=f"{path}: not a regular file"))
        else:
            found.append(InputFile(path, kind_of(path)))
    return found


def unknown_type_error(path: str, image_error: str) -> str:
    """The error of a file of unknown extension that the image decoder refused: what the image decoder
    and the video reader said of it (an audio-only .m4a is then "no video stream", not just "not an image")."""
    from emonet_tf import video

    prefix = f"{path}: "
    image_said = image_error[len(prefix) :] if image_error.startswith(prefix) else image_error
    try:
        video.probe_video(path)
    except video.VideoReadError as err:
        video_said = err.problem
    except Exception as err:  # noqa: BLE001 -- only used to word the error
        video_said = f"{type(err).__name__}: {err}"
    else:
        video_said = (
            "it reads as a video, but its extension is not a video extension: rename it with one of "
            + " ".join(sorted(video_extensions()))
        )
    ext = os.path.splitext(path)[1] or "(none)"
    return f"{path}: unknown file type (extension {ext}): image decoder: {image_said}; video reader: {video_said}"


def image_error(path: str, error: Optional[str]) -> Optional[str]:
    """An image's error, worded for both readers when the file's extension is neither an image's nor a video's."""
    if error is None or is_media_name(path) or not os.path.isfile(path):
        return error
    return unknown_type_error(path, error)


# ------------------------------------------------------------------------------------------------
# Progress in frames


def estimated_video_frames(path: str) -> Optional[int]:
    """Decoded frames a video should have: its stream's duration (s) x average rate (frames/s), rounded.

    None when the container gives no duration or rate; 0 for a video that cannot be opened (it will fail
    without decoding anything). An estimate only: the reader never trusts it (docs/video.md).
    """
    from emonet_tf import video

    try:
        info = video.probe_video(path)
    except video.VideoReadError:
        return 0
    if not info.duration_s or not info.fps or info.duration_s <= 0 or info.fps <= 0:
        return None
    return max(1, round(info.duration_s * info.fps))


def estimate_frames(inputs: Sequence[InputFile]) -> Optional[int]:
    """The frames a stream over `inputs` will decode: 1 per image, the estimate per video; None if any is unknown.

    The total of a progress bar counted in frames (`iter_results`, `iter_preprocessed`). Opens each
    video once (its container metadata and first frame).
    """
    total = 0
    for item in inputs:
        if item.error is not None:
            continue
        if item.kind != "video":
            total += 1
            continue
        frames = estimated_video_frames(item.path)
        if frames is None:
            return None
        total += frames
    return total


class _FrameTicks:
    """Advances a progress bar (anything with `update(n)`, optionally `total`) by one input's decoded frames.

    When the input ends with another count than the one `estimate_frames` put in the total, the total is
    corrected, so that it always equals the frames done plus the estimates of the inputs to come.
    """

    def __init__(self, bar, item: InputFile):
        self.bar, self.done = bar, 0
        self.estimate = None
        if bar is not None and getattr(bar, "total", None) is not None and item.error is None:
            self.estimate = estimated_video_frames(item.path) if item.kind == "video" else 1

    def to(self, decoded: int) -> None:
        """`decoded` frames of this input are done."""
        if self.bar is not None and decoded > self.done:
            self.bar.update(decoded - self.done)
            self.done = decoded

    def finish(self, decoded: Optional[int] = None) -> None:
        if decoded is not None:
            self.to(decoded)
        if self.estimate is not None and self.done != self.estimate and self.bar.total is not None:
            self.bar.total = max(self.bar.n, self.bar.total + self.done - self.estimate)
            if hasattr(self.bar, "refresh"):
                self.bar.refresh()


# ------------------------------------------------------------------------------------------------
# Predictions of mixed inputs


@dataclasses.dataclass
class InputResult:
    """What one input file gave: an image's or a video's mean outputs, the video's frames, or an error.

    ``probabilities``/``logits``: (C,) float32 for an image; for a video the float64 mean over its sampled
    frames (a linear read-out of the mean then equals the mean of the frames' read-outs). ``frames``:
    `inference.FramePrediction` of each sampled frame (index, timestamp_ms, probabilities, logits).
    """

    source: str
    kind: str
    probabilities: Optional[np.ndarray] = None
    logits: Optional[np.ndarray] = None
    frames: list = dataclasses.field(default_factory=list)  # inference.FramePrediction
    error: Optional[str] = None
    damage: Optional[str] = None  # a damaged video kept under damaged="keep": what was wrong
    frames_decoded: Optional[int] = None  # a video's decoded frames (all, not only the sampled), when known

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def status(self) -> str:
        """ "ok", "damaged" (a damaged video whose decoded frames were used) or "failed"."""
        if not self.ok:
            return "failed"
        return "damaged" if self.damage is not None else "ok"


def frames_note(sampled: int, decoded: Optional[int]) -> str:
    """`15 sampled frames (of 45 decoded)`: the count used, and the decoder's count when known."""
    text = f"{sampled} sampled frame{'' if sampled == 1 else 's'}"
    return text if decoded is None else f"{text} (of {decoded} decoded)"


def damaged_error(err, policy: str, sampled: Optional[int] = None) -> str:
    """The error reported for an input that failed; a damaged video skipped says how to keep it instead.

    ``sampled``: how many frames the sampling had taken before the damage was found (what --damaged
    keep would use); ``err.frames_decoded`` counts every decoded frame.
    """
    from emonet_tf import video

    if isinstance(err, video.VideoDamagedError) and policy == "skip":
        if sampled is None:
            return (
                f"{err} [damaged video skipped; --damaged keep uses its sampled frames "
                f"(of {err.frames_decoded} decoded)]"
            )
        return f"{err} [damaged video skipped; --damaged keep uses its {frames_note(sampled, err.frames_decoded)}]"
    return str(err)


def kept_note(result: InputResult) -> str:
    """`its 15 sampled frames (of 45 decoded)` of a damaged video kept under damaged="keep"."""
    return f"its {frames_note(len(result.frames), result.frames_decoded)}"


def _predict_video(emonet, item: InputFile, sampling: str, batch_size: int, progress, damaged: str) -> InputResult:
    from emonet_tf import video

    ticks = _FrameTicks(progress, item)
    result = InputResult(item.path, "video")
    stream = emonet.iter_predict_video(item.path, sampling, batch_size=batch_size, damaged=damaged)
    try:
        for frame in stream:
            result.frames.append(frame)
            ticks.to(frame.index + 1)
        result.damage = stream.damage
    except video.VideoReadError as err:
        result.error = damaged_error(err, damaged, sampled=len(result.frames))
        result.frames = []  # a video that broke off is not averaged over its first part
    result.frames_decoded = getattr(stream, "frames_decoded", None)
    ticks.finish(result.frames_decoded)
    if result.ok:
        result.probabilities = np.mean([f.probabilities for f in result.frames], axis=0, dtype=np.float64)
        result.logits = np.mean([f.logits for f in result.frames], axis=0, dtype=np.float64)
    return result


def _image_run(inputs: Sequence[InputFile], start: int) -> int:
    """The end of the run of readable images that starts at `start` (they share the batched path)."""
    end = start
    while end < len(inputs) and inputs[end].kind != "video" and inputs[end].error is None:
        end += 1
    return end


def iter_results(
    emonet,
    inputs: Sequence[InputFile],
    sampling: str,
    batch_size: int,
    progress=None,
    damaged: str = "skip",
    exif_orientation: Optional[bool] = None,
) -> Iterator[InputResult]:
    """Predicts every input in order, one `InputResult` each; never raises for a bad input (it has ``error``).

    Runs of images go through `EmoNet.iter_predict_images` (threaded decoding, batches of `batch_size`);
    videos stream their frames (`sampling`: every5, fps10, all, everyN, fpsR). ``progress``: a tqdm-like
    bar counted in frames (total from `estimate_frames`, or None). ``damaged``: "skip" or "keep"; a kept
    damaged video has ``damage`` set. ``exif_orientation``: apply images' EXIF Orientation tag (True),
    not (False), or as the model's saved preprocessor says (None, the default; off unless saved on, as
    MATLAB's imread).
    """
    i = 0
    while i < len(inputs):
        item = inputs[i]
        if item.error is not None:
            yield InputResult(item.path, item.kind, error=item.error)
            i += 1
        elif item.kind == "video":
            yield _predict_video(emonet, item, sampling, batch_size, progress, damaged)
            i += 1
        else:
            j = _image_run(inputs, i)
            preds = emonet.iter_predict_images(
                [x.path for x in inputs[i:j]], batch_size=batch_size, exif_orientation=exif_orientation
            )
            for run_item, pred in zip(inputs[i:j], preds):
                _FrameTicks(progress, run_item).finish(1)
                yield InputResult(
                    pred.source, "image", pred.probabilities, pred.logits, error=image_error(run_item.path, pred.error)
                )
            i = j


def prediction_rows(result: InputResult, class_names: Sequence[str]) -> list[dict[str, Any]]:
    """One row per image, or per sampled frame plus a `video_mean` row; error rows keep the file name.

    Columns: source, kind (image, frame, video_mean), status (ok, damaged, failed), frame_index,
    timestamp_ms (rounded to 1 us), n_frames, top1, error, damage and one probability per class, so
    that no row of a damaged or failed input can be mistaken for a healthy one.
    """

    def row(kind, probs, index=None, ts=None, n_frames=None, error=None):
        r: dict[str, Any] = {
            "source": result.source,
            "kind": kind,
            "status": result.status,
            "frame_index": index,
            "timestamp_ms": ts,
            "n_frames": n_frames,
            "top1": None,
            "error": error,
            "damage": result.damage,
        }
        if probs is not None:
            r["top1"] = class_names[int(np.argmax(probs))]
            r.update({name: float(p) for name, p in zip(class_names, probs)})
        return r

    if not result.ok:
        return [row(result.kind, None, error=result.error)]
    if result.kind == "image":
        return [row("image", result.probabilities)]
    rows = [row("frame", f.probabilities, f.index, round(float(f.timestamp_ms), 3)) for f in result.frames]
    rows.append(row("video_mean", result.probabilities, n_frames=len(result.frames)))
    return rows


class RowWriter:
    """Streams rows to a CSV as they come (so a long run keeps what it did) and collects them for a JSON.

    The JSON (written by `close`) is ``metadata`` plus ``rows``: a list of dicts of ``columns``. Missing
    values are empty in the CSV and null in the JSON. Raises OSError when a file cannot be written.
    """

    def __init__(
        self, columns: Sequence[str], csv_path: Optional[str], json_path: Optional[str], metadata: dict[str, Any]
    ):
        self.columns = list(columns)
        self.json_path = json_path
        self.metadata = metadata
        self.rows: list[dict[str, Any]] = []
        self._file = None
        self._csv = None
        if csv_path:
            os.makedirs(os.path.dirname(os.path.abspath(csv_path)), exist_ok=True)
            self._file = open(csv_path, "w", newline="", encoding="utf-8")
            self._csv = csv.DictWriter(self._file, fieldnames=self.columns, extrasaction="ignore")
            self._csv.writeheader()

    def write(self, rows: Iterable[dict[str, Any]]) -> None:
        for r in rows:
            if self._csv is not None:
                self._csv.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in self.columns})
            if self.json_path:
                self.rows.append({k: r.get(k) for k in self.columns})
        if self._file is not None:
            self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
        if self.json_path:
            os.makedirs(os.path.dirname(os.path.abspath(self.json_path)), exist_ok=True)
            with open(self.json_path, "w", encoding="utf-8") as f:
                json.dump(dict(self.metadata, rows=self.rows), f, indent=1, allow_nan=False)


# ------------------------------------------------------------------------------------------------
# Preprocessed rows and activations


@dataclasses.dataclass
class Preprocessed:
    """One event of `iter_preprocessed`: a row (``image`` set: 227 x 227 x 3 float32, 0-255), a failed
    input (``error``), or the end of a damaged video kept under damaged="keep" (``damage``).

    ``position`` numbers the inputs; ``frame_index`` is -1 and ``timestamp_ms`` NaN for an image.
    """

    position: int
    source: str
    frame_index: int = -1
    timestamp_ms: float = math.nan
    image: Optional[np.ndarray] = None
    error: Optional[str] = None
    damage: Optional[str] = None
    frames: str = ""  # with damage: `15 sampled frames (of 45 decoded)`


def _preprocessed_video(
    emonet, position: int, item: InputFile, sampling: str, progress, damaged: str
) -> Iterator[Preprocessed]:
    from emonet_tf import video

    ticks = _FrameTicks(progress, item)
    sampled = 0
    frames = None
    try:
        frames = video.iter_frames(item.path, video.FrameSampling.parse(sampling), damaged=damaged)
        for frame in frames:
            image = emonet.preprocessor.preprocess_array(frame.image)
            sampled += 1
            ticks.to(frame.index + 1)
            yield Preprocessed(position, item.path, frame.index, frame.timestamp_ms, image)
        if frames.damage is not None:
            yield Preprocessed(
                position, item.path, damage=frames.damage, frames=frames_note(sampled, frames.frames_decoded)
            )
    except video.VideoReadError as err:
        yield Preprocessed(position, item.path, error=damaged_error(err, damaged, sampled=sampled))
    ticks.finish(getattr(frames, "frames_decoded", None))


def iter_preprocessed(
    emonet,
    inputs: Sequence[InputFile],
    sampling: str,
    batch_size: int,
    progress=None,
    damaged: str = "skip",
    exif_orientation: Optional[bool] = None,
) -> Iterator[Preprocessed]:
    """Rows of preprocessed images and video frames, in input order, with failures and damage as events.

    Preprocessing is `emonet.preprocessor`'s. Frames stream one at a time (memory does not
    grow with the video), so the rows of a video that fails part-way come before its error event: the
    consumer must drop them (`collect_activations` marks them, `ActivationRows.kept` drops them).
    ``progress``: a tqdm-like bar counted in frames (see `iter_results`). Never raises for a bad input.
    """
    i = 0
    while i < len(inputs):
        item = inputs[i]
        if item.error is not None:
            yield Preprocessed(i, item.path, error=item.error)
            i += 1
        elif item.kind == "video":
            yield from _preprocessed_video(emonet, i, item, sampling, progress, damaged)
            i += 1
        else:
            j = _image_run(inputs, i)
            loaded = emonet._iter_loaded(
                [x.path for x in inputs[i:j]], lookahead=2 * batch_size, workers=None, exif_orientation=exif_orientation
            )
            for position, run_item, (source, image, error) in zip(range(i, j), inputs[i:j], loaded):
                _FrameTicks(progress, run_item).finish(1)
                yield Preprocessed(position, source, image=image, error=image_error(run_item.path, error))
            i = j


@dataclasses.dataclass
class ActivationRows:
    """The activations of every row so far, and what each row and each failed input is.

    ``chunks``: arrays (n x layer shape, float32) in row order; ``rows``: one `Preprocessed` (without
    image) per activation row; ``failed``: position -> the failed input's event; ``damaged``: position ->
    the damage of a video kept under damaged="keep".
    """

    chunks: list = dataclasses.field(default_factory=list)
    rows: list = dataclasses.field(default_factory=list)
    failed: dict = dataclasses.field(default_factory=dict)
    damaged: dict = dataclasses.field(default_factory=dict)

    def kept(self) -> np.ndarray:
        """Mask of the rows to write: none of an input that failed (a video that broke off under skip)."""
        return np.array([r.position not in self.failed for r in self.rows], bool)

    def status(self, row: Preprocessed) -> str:
        """ "damaged" for a row of a kept damaged video, else "ok"."""
        return "damaged" if row.position in self.damaged else "ok"

    def kept_rows(self) -> tuple[np.ndarray, list]:
        """(activations of the kept rows, N x layer shape float32; their `Preprocessed`); ValueError if none."""
        keep = self.kept()
        if not keep.any():
            raise ValueError("no row could be read")
        return np.concatenate(self.chunks)[keep], [r for r, k in zip(self.rows, keep) if k]

    def errors(self) -> list[str]:
        """The errors of the failed inputs, in input order."""
        return [self.failed[p].error for p in sorted(self.failed)]


def collect_activations(
    emonet,
    items: Iterable[Preprocessed],
    layer: str,
    batch_size: int,
    on_event: Optional[Callable[[Preprocessed], None]] = None,
) -> ActivationRows:
    """Runs `emonet.activations(images, layer)` over the rows of `items` in batches of `batch_size`.

    ``on_event`` is called with each failure and damage event as it comes (to report it). Raises
    ValueError for an unknown layer (`EmoNet.activation_model`).
    """
    out, batch = ActivationRows(), []

    def flush():
        if batch:
            out.chunks.append(emonet.activations(np.stack([b.image for b in batch]), layer))
            out.rows.extend(dataclasses.replace(b, image=None) for b in batch)
            batch.clear()

    for item in items:
        if item.error is not None:
            out.failed[item.position] = item
        elif item.damage is not None:
            out.damaged[item.position] = item.damage
        else:
            batch.append(item)
            if len(batch) == batch_size:
                flush()
            continue
        if on_event is not None:
            on_event(item)
    flush()
    return out


def rows_sidecar_path(npy_path: str) -> str:
    """`x.npy` -> `x.rows.csv`: what each row of a bare .npy is, and which inputs failed."""
    return os.path.splitext(npy_path)[0] + ".rows.csv"


def write_rows_sidecar(path: str, result: ActivationRows, rows: Sequence[Preprocessed]) -> None:
    """One line per .npy row (row, source, frame_index, timestamp_ms, status ok/damaged, detail), then one
    per failed input (empty row, status failed, detail = the error): a .npy alone cannot tell its rows apart."""
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["row", "source", "frame_index", "timestamp_ms", "status", "detail"])
        for n, r in enumerate(rows):
            ts = "" if math.isnan(r.timestamp_ms) else round(float(r.timestamp_ms), 3)
            writer.writerow([n, r.source, r.frame_index, ts, result.status(r), result.damaged.get(r.position, "")])
        for position in sorted(result.failed):
            item = result.failed[position]
            writer.writerow(["", item.source, "", "", "failed", item.error])


ACTIVATION_SUFFIXES = (".npy", ".npz")


def save_activations(
    path: str, result: ActivationRows, *, layer: str, class_names: Sequence[str], damaged_policy: str
) -> tuple[np.ndarray, list, Optional[str]]:
    """Writes the kept rows of `result` to `path`; returns (activations, their rows, the sidecar path or None).

    ``.npy``: the activations only (N x layer shape, float32) plus `rows_sidecar_path(path)`. ``.npz``:
    ``activations``, ``sources``, ``frame_index`` (int64), ``timestamp_ms`` (float64, NaN for images),
    ``damaged`` (bool), ``damage``, ``layer``, ``class_names``, ``errors`` and ``failed_sources`` of the
    failed inputs, ``damaged_policy``. Raises ValueError for another suffix or when no row was kept,
    OSError when the file cannot be written.
    """
    ext = os.path.splitext(path)[1].lower()
    if ext not in ACTIVATION_SUFFIXES:
        raise ValueError(f"{path}: must end in .npy or .npz")
    acts, rows = result.kept_rows()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    if ext == ".npy":
        np.save(path, acts)
        sidecar = rows_sidecar_path(path)
        write_rows_sidecar(sidecar, result, rows)
        return acts, rows, sidecar
    failed = [result.failed[p] for p in sorted(result.failed)]
    np.savez(
        path,
        activations=acts,
        sources=np.asarray([r.source for r in rows]),
        frame_index=np.asarray([r.frame_index for r in rows], np.int64),
        timestamp_ms=np.asarray([r.timestamp_ms for r in rows], np.float64),
        damaged=np.asarray([r.position in result.damaged for r in rows], bool),
        damage=np.asarray([result.damaged.get(r.position, "") for r in rows], dtype=str),
        layer=np.asarray(layer),
        class_names=np.asarray(class_names),
        errors=np.asarray([f.error for f in failed], dtype=str),
        failed_sources=np.asarray([f.source for f in failed], dtype=str),
        damaged_policy=np.asarray(damaged_policy),
    )
    return acts, rows, None
