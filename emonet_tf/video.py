"""Streaming, frame-accurate video reading shared by the TFDS builders, `emonet predict` and `activations`.

The reader trusts the stream, not the container's bookkeeping (issue 10 of this project):

* **FFmpeg's own libraries** (PyAV, whose wheels include FFmpeg) decode packet by packet, in
  presentation order; we never seek. Only the current frame and one look-ahead frame are held.
  OpenCV's ``VideoCapture`` is not used for videos any more: it gives neither presentation
  timestamps nor decoder errors, and its frame count (``CAP_PROP_FRAME_COUNT``) is the container's
  estimate, which over-reports for an AVI with zero-size (dropped-frame) index entries, an MKV whose
  audio outlasts the video, and an MP4 with an edit list (healthy files that were rejected).
* **RGB, as ffmpeg gives it.** Every :class:`Frame` carries RGB uint8 (H, W, 3), converted by
  FFmpeg's swscale with bicubic filtering, the ffmpeg command line's default, so the pixels equal
  ``ffmpeg -i VIDEO -f rawvideo -pix_fmt rgb24 -`` (tested against a real ffmpeg). Rotation
  metadata (the display matrix) is honoured as ffmpeg's autorotate does.
* **Timestamps are the stream's presentation times**, in milliseconds, relative to the file's start
  time (``-vf showinfo``'s ``pts_time`` in the ffmpeg command line, which subtracts the start time):
  right for variable-frame-rate clips and for AVIs with dropped frames.
* **Frame counts by decoding.** ``frames_decoded`` of the iterator is the real count once exhausted.
* **Errors.** A missing, zero-length or unopenable file, or one without any decodable frame, raises
  :class:`VideoReadError` naming the file. A video is *damaged* only when FFmpeg itself says so: a
  decoder error, frames the decoder flags as corrupt, or a stream that ends before its own duration
  ("truncated": the video stream's duration, or, for containers that only store one, the file's
  duration compared with the end of its last packet in any stream), never because a frame count
  disagrees. A damaged video yields every frame that decoded; then, with ``damaged="skip"`` (the
  default) :class:`VideoDamagedError` is raised, with ``damaged="keep"`` iteration ends normally and
  the iterator's ``damage`` says what was wrong. Decoding continues after a bad packet, as ffmpeg
  does.

Frame sampling (:class:`FrameSampling`):

* ``all``: every decoded frame.
* ``everyN``: frames whose index is a multiple of N (0, N, 2N, ...), as the lab's MATLAB scripts do
  with N=5.
* ``fpsR``: ffmpeg's ``fps=R`` filter with its defaults (``round=near``, ``eof_action=round``):
  each frame's timestamp t is put in output slot ``round(t * R)`` (halves away from zero, in exact
  rational arithmetic); slot k shows the last frame whose slot is <= k, and slots run from the first
  frame's slot up to (excluding) the slot of the stream's end time (the last frame's timestamp plus
  its duration, estimated as ffmpeg's command line does). So at 30 fps, fps10 keeps frames 1, 4, 7,
  ...; on 23.976 fps, 1, 3, 5, 8, .... Where ffmpeg repeats a frame for several slots (R above the
  source rate, or gaps in a VFR stream), the frame is kept once: every sampled frame is a distinct
  decoded frame with its own index and timestamp. Tested against a real ffmpeg binary
  (``imageio-ffmpeg``) at 23.976/24/25/29.97/30 fps, VFR, B-frames, edit lists, dropped-frame AVIs
  and longer audio tracks (``tests/test_video_ffmpeg_oracle.py``).
"""

from __future__ import annotations

import dataclasses
import fractions
import math
import os
import re
from typing import Iterator, Optional, Union

import numpy as np

PathLike = Union[str, "os.PathLike[str]"]

#: A stream that ends more than this many (mean) frame durations before its own duration is
#: truncated. Measured on the generated cases of tests/test_video_ffmpeg_oracle.py: healthy files end
#: within one frame of it (an MP4 cut with an edit list ends half a frame early); an MJPEG AVI cut at
#: 60% of its bytes ends two frames early, with only a concealed "overread" in ffmpeg's log.
TRUNCATION_TOLERANCE_FRAMES = 1.5
#: File extensions taken for videos when a folder is walked (case-insensitive); the one list that the
#: CLI and the TFDS builders use. Any file can still be read with iter_frames whatever its name.
VIDEO_EXTENSIONS = (
    ".mp4",
    ".m4v",
    ".mov",
    ".avi",
    ".mkv",
    ".webm",
    ".mpg",
    ".mpeg",
    ".wmv",
    ".flv",
    ".3gp",
    ".ogv",
    ".ts",
    ".m2ts",
    ".mts",
    ".h264",
    ".264",
    ".hevc",
    ".h265",
    ".y4m",
)
#: Largest frame (width x height, pixels) the reader decodes: a 200 KB file can declare 8000x8000
#: frames, which cost gigabytes downstream. 8K UHD (7680x4320, 33.2 MP) is below it.
MAX_FRAME_PIXELS = 40_000_000
#: FFmpeg's threading for the decoder: "AUTO" (frame and slice threads), "FRAME", "SLICE" or "NONE".
DEFAULT_THREAD_TYPE = "AUTO"


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
    """What the container says about a video (nominal; decode to count frames and read their times).

    ``fps``: the stream's average frame rate (frames per second, nominal for VFR streams);
    ``reported_frame_count``: the container's count, 0 if unknown (never trusted: it over-reports for
    AVIs with dropped-frame entries and MP4s with edit lists); ``width``/``height``: pixels of the
    frames as yielded (after rotation); ``duration_s``: the video stream's own duration in seconds, or
    the file's when the stream has none (None if unknown); ``rotation``: degrees clockwise applied
    to honour the display matrix (0, 90, 180 or 270).
    """

    path: str
    fps: float
    reported_frame_count: int
    width: int
    height: int
    duration_s: Optional[float] = None
    rotation: int = 0


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


def _round_half_away(x: fractions.Fraction) -> int:
    """av_rescale_q_rnd(..., AV_ROUND_NEAR_INF): the nearest integer, halves away from zero."""
    n = math.floor(abs(x) + fractions.Fraction(1, 2))
    return n if x >= 0 else -n


def _open(path: PathLike, thread_type: str = DEFAULT_THREAD_TYPE):
    """Opens the container and its first video stream; raises VideoReadError naming the file."""
    import av

    path = _check_file(path)
    try:
        container = av.open(path, metadata_errors="ignore")
    except (av.FFmpegError, UnicodeDecodeError, ValueError) as err:
        raise VideoReadError(
            path, f"cannot be opened as a video (unknown container or codec, or corrupt header: {err})"
        ) from None
    if not container.streams.video:
        container.close()
        raise VideoReadError(path, "cannot be opened as a video (the file has no video stream)")
    stream = container.streams.video[0]
    try:
        stream.thread_type = thread_type
    except (av.FFmpegError, ValueError):
        pass  # a codec without threading support decodes on one thread
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    if stream.time_base is None:
        container.close()
        raise VideoReadError(path, "the video stream has no time base; timestamps cannot be computed")
    duration = None
    if stream.duration is not None:
        duration = float(stream.duration * stream.time_base)
    elif container.duration is not None:
        duration = container.duration / 1e6
    pixels = int(stream.codec_context.width) * int(stream.codec_context.height)
    if pixels > MAX_FRAME_PIXELS:
        container.close()
        raise VideoReadError(
            path,
            f"frames of {stream.codec_context.width}x{stream.codec_context.height} pixels exceed "
            f"the reader's limit of {MAX_FRAME_PIXELS:,} pixels (emonet_tf.video.MAX_FRAME_PIXELS)",
        )
    info = VideoInfo(
        path=path,
        fps=float(rate) if rate else 0.0,
        reported_frame_count=int(stream.frames or 0),
        width=int(stream.codec_context.width),
        height=int(stream.codec_context.height),
        duration_s=duration,
    )
    return container, stream, info


def probe_video(path: PathLike) -> VideoInfo:
    """The container's metadata, after checking that the first frame decodes (no full decode).

    Raises VideoReadError naming the file when it cannot be opened or has no decodable frame.
    """
    frames = FrameIterator(path, FrameSampling(every_n=1 << 62), damaged="keep")
    try:
        next(frames)
    except StopIteration:
        raise VideoReadError(frames.info.path, "no decodable frame") from None
    finally:
        frames.close()
    return frames.info


@dataclasses.dataclass
class _Decoded:
    """A decoded frame waiting for the look-ahead that decides whether the sampling keeps it."""

    frame: "object"  # av.VideoFrame, not yet converted to RGB
    index: int
    time: fractions.Fraction  # seconds from the file's start time
    duration: fractions.Fraction  # seconds, as ffmpeg's command line estimates it


class FrameIterator(Iterator[Frame]):
    """Iterator over the sampled frames of one video; ``frames_decoded`` is the real frame count so far.

    Opening happens at construction, so an unreadable file raises before iteration starts. The
    decoder is released when the iterator is exhausted, fails, or is closed (``close()``). After
    exhaustion, ``damage`` is None for a healthy video, else what was wrong (policy "keep").
    """

    def __init__(
        self,
        path: PathLike,
        sampling: FrameSampling = FrameSampling(),
        damaged: str = DEFAULT_DAMAGED_POLICY,
        thread_type: str = DEFAULT_THREAD_TYPE,
    ):
        from av.video.reformatter import VideoReformatter

        self.damaged_policy = check_damaged_policy(damaged)
        self.sampling = sampling
        #: None for a healthy video; after exhaustion, what was wrong with a damaged one.
        self.damage: Optional[str] = None
        self.frames_decoded = 0
        self._thread_type = thread_type
        self._container, self._stream, self.info = _open(path, thread_type)
        self._start_us = self._container.start_time or 0  # the file's start time, microseconds
        self._offsets: dict = {}  # time base -> the start time in its ticks
        self._expected_end = self._own_end()
        self._frames = self._decode()
        self._pending: Optional[_Decoded] = None
        self._next_slot: Optional[int] = None  # fps sampling: ffmpeg's next output slot (next_pts)
        self._reformatter = VideoReformatter()  # one swscale context for the whole video (2x faster)
        self._errors: list[str] = []
        self._corrupt_frames = 0
        self._stream_end = fractions.Fraction(0)  # latest packet end of any stream, seconds from start
        self._video_start: Optional[fractions.Fraction] = None  # first frame's time
        self._video_end = fractions.Fraction(0)  # last frame's time + its estimated duration
        self._done = False

    # -- decoding -------------------------------------------------------------------------------
    def _decode(self) -> Iterator[_Decoded]:
        """Decoded frames in presentation order with their times; errors recorded, decoding goes on.

        FFmpeg's frame threads (through PyAV) lose the frames in flight when a packet fails (measured:
        37 of the 39 frames ffmpeg decodes from an MP4 cut at 60%, and the decoder error unreported),
        so at the first decoder error, or when a threaded pass ends before the stream's duration, the
        video is decoded again without threads, resuming after the frames already given out: healthy
        files keep the threads' speed, damaged ones get ffmpeg's frames.
        """
        given = 0
        for pass_threads in (self._thread_type, "NONE"):
            if pass_threads != self._thread_type:
                self._reopen(pass_threads)
            threaded = pass_threads != "NONE"
            for decoded in self._decode_pass(stop_at_error=threaded):
                if decoded.index >= given:
                    given += 1
                    yield decoded
            if not (threaded and (self._errors or self._truncation())):
                return

    def _reopen(self, thread_type: str) -> None:
        self._container.close()
        self._container, self._stream, _ = _open(self.info.path, thread_type)
        self._errors, self._corrupt_frames = [], 0
        self._stream_end, self._video_start, self._video_end = fractions.Fraction(0), None, fractions.Fraction(0)

    def _decode_pass(self, stop_at_error: bool) -> Iterator[_Decoded]:
        import av

        stream, index, previous = self._stream, 0, None  # previous: (pts, duration) of the last frame
        tb = stream.time_base
        codec_rate = stream.codec_context.framerate
        splices = _SpliceCorrection(self._container, tb)
        packets = self._container.demux()
        while True:
            try:
                packet = next(packets)
            except StopIteration:
                return
            except av.FFmpegError as err:  # the demuxer cannot go on (cut file): nothing more to decode
                self._errors.append(f"demuxer error after {index} frames ({err})")
                packet = None
            if packet is None:
                packets = iter(())
                decoded = self._flush()
            elif packet.stream.index != stream.index:
                self._note_packet_end(packet)
                continue
            else:
                splices.correct(packet)
                self._note_packet_end(packet)
                try:
                    decoded = packet.decode()
                except av.FFmpegError as err:
                    self._errors.append(f"decoder error after {index} frames ({err})")
                    if stop_at_error:
                        return
                    continue
            for frame in decoded:
                pts = _frame_pts(frame.pts, previous)
                if getattr(frame, "is_corrupt", False):
                    self._corrupt_frames += 1
                diff = pts - previous[0] if previous is not None else -1
                duration = _duration_estimate(frame.duration or 0, diff, codec_rate, tb)
                previous = (pts, duration)
                time = self._relative(pts, tb)
                if self._video_start is None:
                    self._video_start = time
                self._video_end = max(self._video_end, time + duration * tb)
                yield _Decoded(frame, index, time, duration * tb)
                index += 1

    def _flush(self):
        import av

        try:
            return self._stream.codec_context.decode(None)
        except av.FFmpegError as err:
            self._errors.append(f"decoder error at the end of the stream ({err})")
            return []

    def _relative(self, pts: int, time_base: fractions.Fraction) -> fractions.Fraction:
        """Seconds from the file's start time, as the ffmpeg command line computes them: the start time
        (microseconds) is first rescaled to the stream's time base, rounded (av_rescale_q), so that a
        stream's own ticks stay exact (an MPEG-TS starting at 132000/90000 s)."""
        offset = self._offsets.get(time_base)
        if offset is None:  # once per time base: Fraction arithmetic is slow enough to show per frame
            offset = self._offsets[time_base] = _round_half_away(
                fractions.Fraction(self._start_us, 1_000_000) / time_base
            )
        return (pts - offset) * time_base

    def _note_packet_end(self, packet) -> None:
        if packet.pts is None or packet.time_base is None:
            return
        end = self._relative(packet.pts + (packet.duration or 0), packet.time_base)
        self._stream_end = max(self._stream_end, end)

    # -- sampling -------------------------------------------------------------------------------
    def _slot(self, t: fractions.Fraction) -> int:
        return _round_half_away(t * fractions.Fraction(self.sampling.fps).limit_denominator(1_000_000))

    def _keep(self, current: _Decoded, following: Optional[_Decoded]) -> bool:
        """Whether the sampling keeps `current`; `following` is the next decoded frame (None at the end)."""
        if self.sampling.every_n is not None:
            return current.index % self.sampling.every_n == 0
        if self.sampling.fps is None:
            return True
        # ffmpeg's fps filter: a frame is shown iff the next frame lands in a later slot (else the
        # next one replaces it); the last frame iff the stream's end lands in a later slot.
        slot = self._slot(current.time)
        next_slot = self._slot(following.time if following is not None else current.time + current.duration)
        first_free = slot if self._next_slot is None else max(slot, self._next_slot)
        if next_slot > first_free:
            self._next_slot = next_slot
            return True
        self._next_slot = first_free
        return False

    # -- iteration ------------------------------------------------------------------------------
    def close(self) -> None:
        """Releases the decoder; further iteration stops."""
        if not self._done:
            self._done = True
            self._container.close()

    def __iter__(self) -> "FrameIterator":
        return self

    def __next__(self) -> Frame:
        while not self._done:
            following = next(self._frames, None)
            current, self._pending = self._pending, following
            if following is not None:
                self.frames_decoded += 1
            if current is None:
                if following is None:
                    self._finish()
                continue
            if self._keep(current, following):
                return self._to_frame(current)
        raise StopIteration

    def _to_frame(self, decoded: _Decoded) -> Frame:
        rgb = self._reformatter.reformat(decoded.frame, format="rgb24", interpolation="BICUBIC").to_ndarray()
        rotation = _clockwise_rotation(decoded.frame)
        if rotation:
            rgb = np.ascontiguousarray(np.rot90(rgb, k=-rotation // 90))
            if self.info.rotation != rotation:
                self.info = dataclasses.replace(self.info, rotation=rotation, width=rgb.shape[1], height=rgb.shape[0])
        return Frame(index=decoded.index, timestamp_ms=float(decoded.time * 1000), image=rgb)

    def _finish(self) -> None:
        """End of the stream: raise for an unreadable video, decide whether it is damaged."""
        self.close()
        if self.frames_decoded == 0 or self._video_start is None:
            detail = f" ({self._errors[0]})" if self._errors else ""
            raise VideoReadError(self.info.path, f"no decodable frame{detail}")
        problems = []
        if self._errors:
            more = f" and {len(self._errors) - 1} more" if len(self._errors) > 1 else ""
            problems.append(f"{self._errors[0]}{more}")
        if self._corrupt_frames:
            problems.append(f"{self._corrupt_frames} frames flagged corrupt by the decoder")
        truncated = self._truncation()
        if truncated:
            problems.append(truncated)
        if problems:
            self.damage = "; ".join(problems)
            if self.damaged_policy == "skip":
                raise VideoDamagedError(self.info.path, self.damage, self.frames_decoded)

    def _own_end(self) -> Optional[tuple[fractions.Fraction, str, bool]]:
        """(end time the file declares, what declares it, whether it is the video stream's own)."""
        stream, container = self._stream, self._container
        if stream.duration is not None:
            start = self._relative(stream.start_time or 0, stream.time_base)
            return start + fractions.Fraction(stream.duration) * stream.time_base, "the video stream's duration", True
        if container.duration is not None:
            return fractions.Fraction(container.duration, 1_000_000), "the file's duration", False
        return None

    def _truncation(self) -> Optional[str]:
        """'truncated: ...' when the stream ends clearly before its own duration, else None."""
        if self._expected_end is None:
            return None
        expected, what, own = self._expected_end
        # MKV/WebM store only the file's duration: compare it with the end of the last packet of any
        # stream, so that an audio track that outlasts the video is not taken for a cut.
        end = self._video_end if own else max(self._stream_end, self._video_end)
        if self._video_start is None:
            return None
        frame = (self._video_end - self._video_start) / max(1, self.frames_decoded)  # mean frame duration
        if expected - end > TRUNCATION_TOLERANCE_FRAMES * frame:
            return (
                f"truncated: the stream ends at {float(end):.3f} s, before {what} of {float(expected):.3f} s "
                f"({self.frames_decoded} frames decoded)"
            )
        return None

    def __del__(self):
        if not getattr(self, "_done", True):
            self.close()


#: A timestamp jump larger than this (seconds) in a format whose timestamps may be discontinuous
#: (MPEG-TS) is a splice, not a gap: ffmpeg's ``-dts_delta_threshold`` default.
DISCONTINUITY_THRESHOLD_S = 10


class _SpliceCorrection:
    """Closes up timestamp discontinuities of spliced MPEG-TS (and other formats flagged so), on the
    packets before they are decoded, as ffmpeg's demuxer does (``fftools/ffmpeg_demux.c``,
    ``ts_discontinuity_detect``): a packet whose DTS is more than 10 s from the predicted one, or
    0.1 s behind the previous one, shifts this and every later timestamp so that time goes on."""

    def __init__(self, container, time_base: fractions.Fraction):
        import av

        self.enabled = bool(container.format.flags & av.format.Flags.ts_discont.value)
        self.time_base = time_base
        self.shift = 0  # ticks
        self.last_dts: Optional[int] = None
        self.next_dts: Optional[int] = None

    def correct(self, packet) -> None:
        if not self.enabled or packet.dts is None:
            return
        dts = packet.dts + self.shift
        if self.next_dts is not None:
            delta = dts - self.next_dts
            if abs(delta * self.time_base) > DISCONTINUITY_THRESHOLD_S or (
                dts - self.last_dts
            ) * self.time_base < -fractions.Fraction(1, 10):
                self.shift -= delta
                dts -= delta
        if self.shift:
            packet.dts = dts
            if packet.pts is not None:
                packet.pts = packet.pts + self.shift
        step = packet.duration or ((dts - self.last_dts) if self.last_dts is not None else 0)
        self.last_dts, self.next_dts = dts, dts + max(step, 0)


def _frame_pts(pts: Optional[int], previous: Optional[tuple[int, int]]) -> int:
    """The frame's timestamp in stream ticks: its own, or for a frame without one (raw H.264
    streams) the previous frame's plus its duration, as ffmpeg's generated timestamps do."""
    if pts is not None:
        return pts
    return previous[0] + previous[1] if previous is not None else 0


def _duration_estimate(frame_duration: int, ts_diff: int, codec_rate, time_base) -> int:
    """A frame's duration in time-base units, as the ffmpeg command line estimates it.

    Source: FFmpeg ``fftools/ffmpeg_dec.c`` ``video_duration_estimate``: the frame's own duration
    unless it is the 1-unit guess that demuxers make up (1 while the timestamps step by more than 2),
    else the step from the previous frame's timestamp, else the codec's frame rate, else 1.
    """
    unreliable = frame_duration == 1 and ts_diff > 2
    if frame_duration > 0 and not unreliable:
        return frame_duration
    if ts_diff > 0:
        return ts_diff
    if frame_duration > 0:
        return frame_duration
    if codec_rate:
        codec_duration = round(1 / (fractions.Fraction(codec_rate) * time_base))
        if codec_duration > 0:
            return codec_duration
    return 1


def _clockwise_rotation(frame) -> int:
    """Degrees clockwise (0/90/180/270) that ffmpeg's autorotate applies for the frame's display matrix."""
    angle = getattr(frame, "rotation", 0) or 0  # counter-clockwise degrees (av_display_rotation_get)
    return int(round(-angle / 90.0)) % 4 * 90


def iter_frames(
    path: PathLike,
    sampling: FrameSampling = FrameSampling(),
    *,
    damaged: str = DEFAULT_DAMAGED_POLICY,
    thread_type: str = DEFAULT_THREAD_TYPE,
) -> FrameIterator:
    """Decodes ``path`` sequentially and yields the frames selected by ``sampling`` (see module doc).

    Args:
      path: a video file (any container and codec FFmpeg reads).
      sampling: :class:`FrameSampling` (``all``, ``everyN``, ``fpsR``).
      damaged: "skip" raises :class:`VideoDamagedError` after the last decodable frame of a damaged
        video; "keep" ends normally and sets the iterator's ``damage``.
      thread_type: FFmpeg decoder threading (see :data:`DEFAULT_THREAD_TYPE`).

    Yields :class:`Frame` (RGB uint8 H x W x 3, index among decoded frames, presentation time in ms).
    Raises VideoReadError at once for a missing, empty or unopenable file, and at the end for a
    video without any decodable frame. After exhaustion, ``frames_decoded`` is the real frame count.
    """
    return FrameIterator(path, sampling, damaged, thread_type)


def count_frames(path: PathLike) -> int:
    """The real number of frames, counted by decoding the whole video (containers' counts can be wrong).

    A damaged video counts the frames that decoded. Raises VideoReadError for an unreadable file.
    """
    frames = FrameIterator(path, FrameSampling(every_n=1 << 62), damaged="keep")
    for _ in frames:
        pass
    return frames.frames_decoded
