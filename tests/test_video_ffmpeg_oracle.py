"""The video reader against a real ffmpeg (imageio-ffmpeg's binary) as the oracle for frames and timing.

Every clip is generated here. Each frame carries its own index as ten black/white bars (top half)
and per-frame noise (bottom half, so that chroma up-sampling differences would show); the oracle's
frames are identified by reading the bars back. Cases: constant rates 23.976/24/25/29.97/30 with
B-frames (H.264), a variable-frame-rate MKV, an AVI whose index holds zero-size (dropped-frame)
entries, an MKV whose audio outlasts the video, an MP4 cut with an edit list (`-ss 1.3 -c copy`),
an MPEG-TS with a non-zero start time, and a rotated MP4 (display matrix). Damaged files are
checked against `ffmpeg -v error -f null`, which prints errors for them and nothing for the others.
"""

from __future__ import annotations

import fractions
import re
import subprocess

import numpy as np
import pytest

av = pytest.importorskip("av")
imageio_ffmpeg = pytest.importorskip("imageio_ffmpeg")

from emonet_tf import video  # noqa: E402

FFMPEG = imageio_ffmpeg.get_ffmpeg_exe()
W, H = 64, 48
BITS = 10
RATES = (10, 5, 7.5, 24, 60)


def frame_image(i: int, seed: int = 0) -> np.ndarray:
    """RGB frame i: its index in bars (top half), noise (bottom half), colours that vary with i."""
    img = np.zeros((H, W, 3), np.uint8)
    for b in range(BITS):
        if (i >> b) & 1:
            img[: H // 2, b * 6 : (b + 1) * 6 - 1] = 255
    rng = np.random.default_rng(seed * 100_000 + i)
    img[H // 2 :] = rng.integers(0, 256, (H - H // 2, W, 3), dtype=np.uint8)
    img[: H // 2, 60:] = (i * 37 % 256, 255 - i * 11 % 256, 90)
    return img


def read_index(img: np.ndarray) -> int:
    return sum(1 << b for b in range(BITS) if img[: H // 2 - 4, b * 6 + 2].mean() > 127)


def write_h264(path, rate, n, *, pts_ms=None, container_options=None):
    """H.264 with B-frames (bf=2, GOP 12); `pts_ms` makes a variable-frame-rate stream."""
    with av.open(str(path), "w", options=container_options or {}) as out:
        stream = out.add_stream("libx264", rate=fractions.Fraction(rate).limit_denominator(1001))
        stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
        stream.options = {"bf": "2", "crf": "8", "g": "12"}
        if pts_ms is not None:
            stream.codec_context.time_base = fractions.Fraction(1, 1000)
        for i in range(n):
            frame = av.VideoFrame.from_ndarray(frame_image(i), format="rgb24")
            if pts_ms is not None:
                frame.pts, frame.time_base = int(pts_ms[i]), fractions.Fraction(1, 1000)
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def write_avi_with_dropped_frames(path):
    """MJPEG AVI at 15 fps whose frames sit at pts 0, 11, 17, 24, 30, 36, ...: the muxer fills the gaps
    with zero-size index entries, so the container reports far more frames than there are."""
    pts = [0, 11, 17, 24] + list(range(30, 30 + 64 * 6, 6))
    with av.open(str(path), "w") as out:
        stream = out.add_stream("mjpeg", rate=15)
        stream.width, stream.height, stream.pix_fmt = W, H, "yuvj420p"
        stream.codec_context.time_base = fractions.Fraction(1, 15)
        for i, p in enumerate(pts):
            frame = av.VideoFrame.from_ndarray(frame_image(i), format="rgb24")
            frame.pts, frame.time_base = p, fractions.Fraction(1, 15)
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path, pts


def ffmpeg(*args) -> subprocess.CompletedProcess:
    return subprocess.run([FFMPEG, "-hide_banner", "-nostdin", *map(str, args)], capture_output=True, check=True)


def oracle_frames(path, vf=None):
    """(frames as RGB arrays, their pts_time in seconds) as the ffmpeg command line outputs them."""
    filters = f"{vf}," if vf else ""
    run = ffmpeg(
        "-i",
        path,
        "-an",
        "-vf",
        filters + "showinfo",
        "-fps_mode",
        "passthrough",
        "-f",
        "rawvideo",
        "-pix_fmt",
        "rgb24",
        "-",
    )
    times = [float(t) for t in re.findall(r"pts_time:\s*(-?[\d.]+)", run.stderr.decode())]
    frames = np.frombuffer(run.stdout, np.uint8)
    return frames.reshape(len(times), -1), times


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    root = tmp_path_factory.mktemp("oracle")
    out = {}
    for rate in ("24000/1001", "24", "25", "30000/1001", "30"):
        out[f"h264_{rate.replace('/', '_')}.mp4"] = write_h264(
            root / f"h264_{rate.replace('/', '_')}.mp4", fractions.Fraction(rate), 40
        )
    rng = np.random.default_rng(0)
    vfr = np.concatenate([[0], np.cumsum(rng.integers(20, 90, size=39))])
    out["vfr.mkv"] = write_h264(root / "vfr.mkv", 30, 40, pts_ms=vfr)
    out["dropped.avi"], _ = write_avi_with_dropped_frames(root / "dropped.avi")
    ffmpeg(
        "-y",
        "-i",
        out["h264_25.mp4"],
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=440:duration=4",
        "-c:v",
        "copy",
        "-c:a",
        "aac",
        root / "long_audio.mkv",
    )
    out["long_audio.mkv"] = root / "long_audio.mkv"
    src = write_h264(root / "src100.mp4", 25, 100)
    ffmpeg("-y", "-ss", "1.3", "-i", src, "-c", "copy", root / "edit_list.mp4")
    out["edit_list.mp4"] = root / "edit_list.mp4"
    ffmpeg("-y", "-i", out["h264_30.mp4"], "-c", "copy", "-f", "mpegts", root / "start_offset.ts")
    out["start_offset.ts"] = root / "start_offset.ts"
    ffmpeg("-y", "-display_rotation", "90", "-i", out["h264_25.mp4"], "-c", "copy", root / "rotated.mp4")
    out["rotated.mp4"] = root / "rotated.mp4"
    # A raw H.264 stream: no container timestamps at all.
    ffmpeg("-y", "-i", out["h264_25.mp4"], "-c", "copy", "-f", "h264", root / "raw.h264")
    out["raw.h264"] = root / "raw.h264"
    # Two MPEG-TS files concatenated: the timestamps jump back by 10 s half-way (spliced TS/HLS).
    ffmpeg("-y", "-i", out["h264_25.mp4"], "-c", "copy", "-output_ts_offset", "10", root / "a.ts")
    ffmpeg("-y", "-i", out["h264_30.mp4"], "-c", "copy", root / "b.ts")
    (root / "spliced.ts").write_bytes((root / "a.ts").read_bytes() + (root / "b.ts").read_bytes())
    out["spliced.ts"] = root / "spliced.ts"
    return out


CASES = (
    "h264_24000_1001.mp4",
    "h264_24.mp4",
    "h264_25.mp4",
    "h264_30000_1001.mp4",
    "h264_30.mp4",
    "vfr.mkv",
    "dropped.avi",
    "long_audio.mkv",
    "edit_list.mp4",
    "start_offset.ts",
    "rotated.mp4",
    "raw.h264",
    "spliced.ts",
)


@pytest.mark.parametrize("name", CASES)
def test_every_frame_equals_ffmpeg_pixels_and_timestamps(clips, name):
    path = clips[name]
    expected, times = oracle_frames(path)
    frames = video.iter_frames(path)
    got = list(frames)
    assert frames.damage is None and frames.frames_decoded == len(got) == len(expected) > 0
    assert [f.index for f in got] == list(range(len(got)))
    # Pixels: max difference 0 to ffmpeg's own rgb24 conversion (and rotation).
    ours = np.stack([f.image.reshape(-1) for f in got])
    assert np.abs(ours.astype(int) - expected.astype(int)).max() == 0
    # Timestamps: ffmpeg's pts_time (printed with 6 decimals).
    np.testing.assert_allclose([f.timestamp_ms / 1000 for f in got], times, atol=1e-6)


@pytest.mark.parametrize("name", CASES)
def test_fps_sampling_keeps_the_frames_ffmpeg_fps_filter_keeps(clips, name):
    path = clips[name]
    index_of = {
        f.index: read_index(f.image if name != "rotated.mp4" else np.rot90(f.image)) for f in video.iter_frames(path)
    }
    for rate in RATES:
        shown, _ = oracle_frames(path, f"fps={rate}")
        shape = (W, H, 3) if name == "rotated.mp4" else (H, W, 3)
        ids = [read_index(x.reshape(shape) if name != "rotated.mp4" else np.rot90(x.reshape(shape))) for x in shown]
        distinct = [x for i, x in enumerate(ids) if i == 0 or ids[i - 1] != x]  # ffmpeg repeats; we don't
        ours = [index_of[f.index] for f in video.iter_frames(path, video.FrameSampling(fps=rate))]
        assert ours == distinct, (name, rate)


def test_the_issue_cases_are_healthy_with_their_true_counts_and_times(clips):
    # AVI: 68 real frames behind a much larger index; times from the stream (0, 11, 17, 24 in 1/15 s).
    path, pts = write_avi_with_dropped_frames(clips["dropped.avi"].parent / "dropped2.avi")
    info = video.probe_video(path)
    assert info.reported_frame_count > 2 * len(pts)
    got = list(video.iter_frames(path))
    assert len(got) == len(pts) == 68
    np.testing.assert_allclose([f.timestamp_ms for f in got], [p * 1000 / 15 for p in pts], atol=1e-9)
    # MKV whose audio outlasts the video: 40 frames, healthy.
    frames = video.iter_frames(clips["long_audio.mkv"], damaged="keep")
    assert len(list(frames)) == 40 and frames.damage is None
    # MP4 with an edit list: 100 frames stored from 1.3 s on, the shown ones start at 0 ms.
    frames = list(video.iter_frames(clips["edit_list.mp4"]))
    assert frames[0].timestamp_ms == 0.0 and read_index(frames[0].image) == 33 and len(frames) == 67
    # 29.97 fps -> fps10 keeps 1, 4, 7, ... as ffmpeg does; 23.976 fps keeps 1, 3, 5, 8, ...
    ids = [f.index for f in video.iter_frames(clips["h264_30000_1001.mp4"], video.FrameSampling(fps=10))]
    assert ids[:4] == [1, 4, 7, 10]
    ids = [f.index for f in video.iter_frames(clips["h264_24000_1001.mp4"], video.FrameSampling(fps=10))]
    assert ids[:4] == [1, 3, 5, 8]


def test_frames_too_large_are_refused_before_decoding(tmp_path, monkeypatch):
    path = write_h264(tmp_path / "v.mp4", 25, 3)
    monkeypatch.setattr(video, "MAX_FRAME_PIXELS", W * H - 1)
    with pytest.raises(video.VideoReadError, match="exceed the reader's limit") as err:
        video.iter_frames(path)
    assert str(path) in str(err.value)


def test_rotation_is_honoured(clips):
    frames = list(video.iter_frames(clips["rotated.mp4"]))
    assert frames[0].image.shape == (W, H, 3)
    assert video.probe_video(clips["rotated.mp4"]).rotation in (90, 270)


def _ffmpeg_reports_errors(path) -> bool:
    """Errors of ffmpeg's demuxer and decoder (the null muxer's own complaints about the output's
    timing of a VFR stream are not about the input and are left out)."""
    run = subprocess.run([FFMPEG, "-v", "error", "-nostdin", "-i", str(path), "-f", "null", "-"], capture_output=True)
    return any(line and not line.startswith("[null @") for line in run.stderr.decode(errors="replace").splitlines())


def _damaged_copies(clips, root):
    src_mkv = write_h264(root / "whole.mkv", 25, 60)
    src_avi = root / "whole.avi"
    with av.open(str(src_avi), "w") as out:
        stream = out.add_stream("mjpeg", rate=25)
        stream.width, stream.height, stream.pix_fmt = W, H, "yuvj420p"
        for i in range(60):
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame_image(i), format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    faststart = root / "faststart.mp4"  # the index first: a cut file still opens, the stream just ends
    ffmpeg("-y", "-i", clips["h264_25.mp4"], "-c", "copy", "-movflags", "+faststart", faststart)
    cases = {}
    for src in (src_mkv, src_avi, clips["h264_25.mp4"], faststart):
        data = src.read_bytes()
        cut = root / f"cut_{src.name}"
        cut.write_bytes(data[: int(len(data) * 0.6)])
        flipped = bytearray(data)
        for k in np.random.default_rng(1).integers(len(data) // 3, 2 * len(data) // 3, 40):
            flipped[k] ^= 0xFF
        bad = root / f"flipped_{src.name}"
        bad.write_bytes(bytes(flipped))
        cases[cut], cases[bad] = "cut", "flipped"
    return cases


def test_damage_agrees_with_ffmpeg_errors(clips, tmp_path):
    """Every cut or corrupted copy that ffmpeg reports errors for is damaged (or unreadable) for us,
    and the healthy clips, which ffmpeg decodes silently, are not."""
    for name in CASES:
        assert not _ffmpeg_reports_errors(clips[name]), name
    for path, how in _damaged_copies(clips, tmp_path).items():
        assert _ffmpeg_reports_errors(path), path
        try:
            frames = video.iter_frames(path, damaged="keep")
            kept = list(frames)
        except video.VideoReadError as err:  # e.g. an MP4 cut before its index: cannot be opened
            assert str(path) in str(err)
            continue
        assert frames.damage, (path, how)
        assert kept and [f.index for f in kept] == list(range(len(kept)))
        if how == "cut":  # every frame ffmpeg decodes, whatever the decoder threading
            run = ffmpeg("-i", path, "-fps_mode", "passthrough", "-f", "null", "-")
            ffmpeg_count = int(re.findall(rb"frame=\s*(\d+)", run.stderr)[-1])
            assert len(kept) == ffmpeg_count, (path, len(kept), ffmpeg_count)
        with pytest.raises(video.VideoDamagedError, match=re.escape(str(path))):
            list(video.iter_frames(path))
