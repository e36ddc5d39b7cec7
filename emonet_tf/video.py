"""Streaming, frame-accurate video reading shared by the TFDS builders and `emonet predict` on videos.

Why it is written this way:

* **Sequential decoding only.** Frames are read one after the other with ``cv2.VideoCapture.read``;
  we never seek (``CAP_PROP_POS_FRAMES``), because seeking in compressed streams lands on a
  keyframe and is not frame accurate in OpenCV's FFmpeg backend. Only one decoded frame is held in
  memory at a time.
* **RGB.** OpenCV decodes to BGR; every :class:`Frame` carries RGB uint8 (H, W, 3), the channel
  order EmoNet was trained on (MATLAB ``imread``/``VideoReader``).
* **Timestamps = frame index / container fps.** ``timestamp_ms = index * 1000 / fps``. This is
  what MATLAB's ``VideoReader`` and the lab's "every 5th frame" scripts assume, it is exact for the
  constant-frame-rate clips of the Cowen & Keltner corpus, and it is reproducible whatever the
  container stores. ``CAP_PROP_POS_MSEC`` is not used because its meaning depends on the container
  and the OpenCV version (missing or DTS-based PTS in AVI, the *next* frame's time in some builds);
  ``tests/test_video.py`` checks that it agrees with ours on mp4 (mp4v) and avi (MJPG) files. For
  variable-frame-rate files the timestamps are therefore nominal.
* **Frame counts by decoding.** Containers lie about their frame count
  (``CAP_PROP_FRAME_COUNT`` is estimated from the duration for some formats). The iterator
  returned by :func:`iter_frames` reports ``frames_decoded``, the real count, once exhausted.
* **Errors.** A missing, zero-length or unopenable file, or one without any decodable frame,
  raises :class:`VideoReadError` naming the file before any frame is yielded. A video that stops
  decoding clearly before its reported length (more than ``max(1, 2%)`` of the reported frames are
  missing, e.g. a truncated file) yields the frames decoded before the break and then raises
  :class:`VideoReadError`, so that callers can drop the partial video.

Frame sampling (:class:`FrameSampling`):

* ``all``: every decoded frame.
* ``everyN``: frames whose index is a multiple of N (0, N, 2N, ...), as the lab's MATLAB scripts do
  with N=5.
* ``fpsR``: output ticks at ``t_k = k / R`` seconds, k = 0, 1, 2, ...; for each tick the *first*
  decoded frame whose timestamp is ``>= t_k`` is kept (comparison with a 1e-6 ms tolerance against
  float round-off). This is the selection of ffmpeg's ``fps`` filter (``-vf fps=R``, as in the
  lab's PyTorch pipeline ``r=10``) for a constant-frame-rate input starting at 0, except that a
  frame is never emitted twice: when R exceeds the source rate, ticks that fall between two frames
  do not duplicate the earlier frame (ffmpeg would), so each frame appears at most once. Ticks
  after the last frame produce nothing.
"""
from __future__ import annotations

import dataclasses
import math
import os
import re
from typing import Iterator, Optional, Union

import numpy as np

PathLike = Union[str, "os.PathLike[str]"]

#: Fraction of the reported frame count that may be missing before a short video counts as broken.
MISSING_FRAMES_TOLERANCE = 0.02

_TICK_EPS_MS = 1e-6


#: What callers do with a damaged video (decoder error, or the stream ends before its own duration):
#: "skip" drops it whole (reported by name, no row of it in any output); "keep" keeps the frames that
#: decoded and marks the video (and its rows) as damaged. Strict modes fail instead.
DAMAGED_POLICIES = ("skip", "keep")
DEFAULT_DAMAGED_POLICY = "skip"


def check_damaged_policy(policy: str) -> str:
    """Returns `policy` if it is one of DAMAGED_POLICIES, else raises ValueError listing them."""
    if policy not in DAMAGED_POLICIES:
        raise ValueError(f"Unknown damaged-video policy {policy!r}; choose one of {', '.join(DAMAGED_POLICIES)}")
    return policy


class VideoReadError(Exception):
    """A video cannot be read, or broke off mid-way. The message names the file and the problem."""

    def __init__(self, path: PathLike, problem: str):
        self.path = os.fspath(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class VideoDamagedError(VideoReadError):
    """Raised (policy "skip") after the last decodable frame of a damaged video was yielded.

    ``frames_decoded`` is how many frames did decode; ``problem`` says what was wrong (decoder error
    or "truncated": the stream ended before its own duration).
    """

    def __init__(self, path: PathLike, problem: str, frames_decoded: int):
        self.frames_decoded = frames_decoded
        super().__init__(path, problem)


@dataclasses.dataclass(frozen=True)
class VideoInfo:
    """What the container says about a video (the frame count may be wrong: decode to count)."""

    path: str
    fps: float
    reported_frame_count: int
    width: int
    height: int


@dataclasses.dataclass(frozen=True)
class Frame:
    """One decoded frame: its index among all decoded frames, its time and its RGB uint8 pixels."""

    index: int
    timestamp_ms: float
    image: np.ndarray  # (height, width, 3) uint8, RGB


@dataclasses.dataclass(frozen=True)
class FrameSampling:
    """Which frames to keep: every Nth (``every_n``), R per second (``fps``), or all (neither)."""

    every_n: Optional[int] = None
    fps: Optional[float] = None

    def __post_init__(self):
        if self.every_n is not None and self.fps is not None:
            raise ValueError("FrameSampling takes every_n or fps, not both.")
        if self.every_n is not None and (int(self.every_n) != self.every_n or self.every_n < 1):
            raise ValueError(f"every_n must be a positive integer, got {self.every_n!r}.")
        if self.fps is not None and not (math.isfinite(self.fps) and self.fps > 0):
            raise ValueError(f"fps must be positive, got {self.fps!r}.")

    @property
    def name(self) -> str:
        """Canonical short name, the inverse of :meth:`parse`: ``all``, ``every5``, ``fps10``, ``fps7.5``."""
        if self.every_n is not None:
            return f"every{int(self.every_n)}"
        if self.fps is not None:
            return f"fps{self.fps:g}"
        return "all"

    @classmethod
    def parse(cls, text: str) -> "FrameSampling":
        """Parses ``all``, ``everyN`` (N >= 1) or ``fpsR`` (R > 0, may be fractional)."""
        spec = str(text).strip().lower()
        if spec == "all":
            return cls()
        match = re.fullmatch(r"every(\d+)", spec)
        if match:
            return cls(every_n=int(match.group(1)))
        match = re.fullmatch(r"fps(\d+(?:\.\d+)?)", spec)
        if match:
            return cls(fps=float(match.group(1)))
        raise ValueError(f"Unknown frame sampling {text!r}: expected 'all', 'everyN' or 'fpsR' (e.g. every5, fps10).")


def _check_file(path: PathLike) -> str:
    path = os.fspath(path)
    if not os.path.exists(path):
        raise VideoReadError(path, "file does not exist")
    if not os.path.isfile(path):
        raise VideoReadError(path, "not a regular file")
    if os.path.getsize(path) == 0:
        raise VideoReadError(path, "file is empty (0 bytes)")
    return path


def _open(path: PathLike):
    import cv2

    path = _check_file(path)
    cap = cv2.VideoCapture(path)
    if not cap.isOpened():
        cap.release()
        raise VideoReadError(path, "cannot be opened as a video (unknown container or codec, or corrupt header)")
    fps = cap.get(cv2.CAP_PROP_FPS)
    if not (math.isfinite(fps) and fps > 0):
        cap.release()
        raise VideoReadError(path, f"container reports no usable frame rate ({fps!r}); timestamps cannot be computed")
    count = cap.get(cv2.CAP_PROP_FRAME_COUNT)
    info = VideoInfo(
        path=path,
        fps=float(fps),
        reported_frame_count=int(count) if math.isfinite(count) and count > 0 else 0,
        width=int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)),
        height=int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)),
    )
    return cap, info


def probe_video(path: PathLike) -> VideoInfo:
    """Reads the container's metadata and checks that the first frame decodes (no full decode)."""
    cap, info = _open(path)
    try:
        if not cap.grab():
            raise VideoReadError(info.path, "no decodable frame")
    finally:
        cap.release()
    return info


class FrameIterator(Iterator[Frame]):
    """Iterator over the sampled frames of one video; ``frames_decoded`` is the real frame count so far.

    Opening happens at construction, so an unreadable file raises before iteration starts. The
    capture is released when the iterator is exhausted, fails, or is closed (``close()``).
    """

    def __init__(self, path: PathLike, sampling: FrameSampling = FrameSampling(),
                 max_missing_fraction: float = MISSING_FRAMES_TOLERANCE, damaged: str = DEFAULT_DAMAGED_POLICY):
        self.damaged_policy = check_damaged_policy(damaged)
        #: None for a healthy video; after exhaustion, what was wrong with a damaged one.
        self.damage: Optional[str] = None
        self._cap, self.info = _open(path)
        self.sampling = sampling
        self.max_missing_fraction = max_missing_fraction
        self.frames_decoded = 0
        self._next_tick = 0  # fps sampling: index k of the next output tick k / fps
        self._done = False

    def _keep(self, index: int, timestamp_ms: float) -> bool:
        if self.sampling.every_n is not None:
            return index % self.sampling.every_n == 0
        if self.sampling.fps is not None:
            tick_ms = self._next_tick * 1000.0 / self.sampling.fps
            if timestamp_ms + _TICK_EPS_MS < tick_ms:
                return False
            # This frame is the first to reach tick k; skip every further tick it also reaches.
            self._next_tick = math.floor((timestamp_ms + _TICK_EPS_MS) * self.sampling.fps / 1000.0) + 1
            return True
        return True

    def close(self) -> None:
        """Releases the decoder; further iteration stops."""
        if not self._done:
            self._done = True
            self._cap.release()

    def __iter__(self) -> "FrameIterator":
        return self

    def __next__(self) -> Frame:
        import cv2

        while not self._done:
            # grab() decodes; retrieve() converts to BGR, which frames that the sampling drops skip.
            if not self._cap.grab():
                self._finish()
                break
            index = self.frames_decoded
            self.frames_decoded += 1
            timestamp_ms = index * 1000.0 / self.info.fps
            if self._keep(index, timestamp_ms):
                ok, bgr = self._cap.retrieve()
                if not ok or bgr is None:
                    self.frames_decoded -= 1
                    self._finish()
                    break
                if bgr.ndim == 2:
                    rgb = cv2.cvtColor(bgr, cv2.COLOR_GRAY2RGB)
                else:
                    rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
                return Frame(index=index, timestamp_ms=timestamp_ms, image=rgb)
        raise StopIteration

    def _finish(self) -> None:
        self.close()
        decoded, reported = self.frames_decoded, self.info.reported_frame_count
        if decoded == 0:
            raise VideoReadError(self.info.path, "no decodable frame")
        missing = reported - decoded
        if reported > 0 and missing > max(1, self.max_missing_fraction * reported):
            self.damage = f"decoding stopped after {decoded} of {reported} reported frames (truncated or corrupt stream)"
            if self.damaged_policy == "skip":
                raise VideoDamagedError(self.info.path, self.damage, decoded)

    def __del__(self):
        cap = getattr(self, "_cap", None)
        if cap is not None and not getattr(self, "_done", True):
            cap.release()


def iter_frames(path: PathLike, sampling: FrameSampling = FrameSampling(), *,
                max_missing_fraction: float = MISSING_FRAMES_TOLERANCE,
                damaged: str = DEFAULT_DAMAGED_POLICY) -> FrameIterator:
    """Decodes ``path`` sequentially and yields the frames selected by ``sampling`` (see module doc).

    Raises VideoReadError at once for a missing, empty or unopenable file, and during iteration for
    a video without decodable frames or one that breaks off (after yielding the frames before the
    break). After exhaustion, the returned iterator's ``frames_decoded`` is the real frame count.
    """
    return FrameIterator(path, sampling, max_missing_fraction, damaged)


def count_frames(path: PathLike) -> int:
    """The real number of frames, counted by decoding the whole video (containers' counts can be wrong)."""
    frames = FrameIterator(path, FrameSampling(every_n=1 << 62))
    for _ in frames:
        pass
    return frames.frames_decoded
