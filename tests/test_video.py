"""The streaming frame reader: counts, timestamps, sampling, RGB order and broken files (tiny synthetic videos)."""
from __future__ import annotations

import math

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2")

from emonet_tf import video  # noqa: E402
from emonet_tf.video import FrameSampling, VideoReadError, count_frames, iter_frames, probe_video  # noqa: E402
from tfds_builders.make_dummy_data import (  # noqa: E402
    frame_colour, write_coded_video, write_corrupt, write_truncated_avi, write_video)


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    root = tmp_path_factory.mktemp("videos")
    return {
        "mp4_30": write_coded_video(root / "a30.mp4", 30.0, 20),
        "avi_25": write_coded_video(root / "b25.avi", 25.0, 13),
        "mp4_10": write_coded_video(root / "c10.mp4", 10.0, 9),
    }


def indices(path, spec):
    return [f.index for f in iter_frames(path, FrameSampling.parse(spec))]


def test_probe_reports_container_metadata(videos):
    info = probe_video(videos["avi_25"])
    assert (info.fps, info.reported_frame_count, info.width, info.height) == (25.0, 13, 32, 24)
    assert info.path == str(videos["avi_25"])


@pytest.mark.parametrize("name,n", [("mp4_30", 20), ("avi_25", 13), ("mp4_10", 9)])
def test_every_frame_is_decoded_once_in_order(videos, name, n):
    frames = iter_frames(videos[name])
    got = list(frames)
    assert [f.index for f in got] == list(range(n))
    assert frames.frames_decoded == n == count_frames(videos[name])
    for f in got:  # the frame's pixels encode its index: red = 10 * index
        assert f.image.dtype == np.uint8 and f.image.shape == (24, 32, 3)
        assert abs(int(f.image[12, 16, 0]) - frame_colour(f.index, 0)[0]) <= 6


def test_timestamps_are_index_over_fps_and_agree_with_opencv_pos_msec(videos):
    for name in ("mp4_30", "avi_25"):
        path = videos[name]
        ours = [f.timestamp_ms for f in iter_frames(path)]
        fps = probe_video(path).fps
        assert ours == [i * 1000.0 / fps for i in range(len(ours))]
        cap = cv2.VideoCapture(str(path))
        pos = []
        while cap.read()[0]:
            pos.append(cap.get(cv2.CAP_PROP_POS_MSEC))
        cap.release()
        assert len(pos) == len(ours)
        np.testing.assert_allclose(pos, ours, atol=0.5)


def test_rgb_order(tmp_path):
    colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0)]
    frames = [np.full((24, 32, 3), c, np.uint8) for c in colours]
    for name in ("rgb.mkv", "rgb.avi", "rgb.mp4"):  # FFV1 (lossless), MJPG, mp4v
        got = [f.image[12, 16].astype(int) for f in iter_frames(write_video(tmp_path / name, 10.0, frames))]
        assert len(got) == 4
        for pixel, colour in zip(got, colours):
            assert np.abs(pixel - colour).max() <= (0 if name.endswith("mkv") else 40), (name, pixel, colour)


def test_every_n(videos):
    assert indices(videos["mp4_30"], "every5") == [0, 5, 10, 15]
    assert indices(videos["avi_25"], "every5") == [0, 5, 10]
    assert indices(videos["mp4_10"], "every1") == list(range(9))


def test_fps_picks_first_frame_reaching_each_tick(videos):
    # 30 fps -> 10 fps: frames at 0, 100, 200, ... ms are exactly frames 0, 3, 6, ...
    assert indices(videos["mp4_30"], "fps10") == [0, 3, 6, 9, 12, 15, 18]
    # 25 fps (40 ms): ticks 0,100,...,400 ms -> first frames at 0, 120, 200, 320, 400 ms.
    assert indices(videos["avi_25"], "fps10") == [0, 3, 5, 8, 10]
    # 10 fps -> 4 fps: ticks 0, 250, 500, 750 ms -> frames at 0, 300, 500, 800 ms.
    assert indices(videos["mp4_10"], "fps4") == [0, 3, 5, 8]
    # Upsampling never duplicates a frame.
    assert indices(videos["mp4_10"], "fps25") == list(range(9))
    frames = list(iter_frames(videos["avi_25"], FrameSampling(fps=10)))
    for f in frames:  # some tick falls in (previous frame's time, this frame's time]
        tick = math.floor(f.timestamp_ms / 100 + 1e-9) * 100
        assert f.timestamp_ms - 40 < tick <= f.timestamp_ms + 1e-6


def test_sampling_names_and_parser():
    for spec, sampling in [("all", FrameSampling()), ("every5", FrameSampling(every_n=5)),
                           ("fps10", FrameSampling(fps=10.0)), ("fps7.5", FrameSampling(fps=7.5))]:
        assert FrameSampling.parse(spec) == sampling
        assert sampling.name == spec
    assert FrameSampling.parse(" Every5 ") == FrameSampling(every_n=5)
    for bad in ("every0", "fps0", "fps-1", "five", "every5fps10", ""):
        with pytest.raises(ValueError):
            FrameSampling.parse(bad)
    with pytest.raises(ValueError):
        FrameSampling(every_n=5, fps=10.0)


def test_missing_empty_and_corrupt_files_raise_naming_the_file(tmp_path):
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    cases = {
        tmp_path / "missing.mp4": "does not exist",
        empty: "empty",
        write_corrupt(tmp_path / "garbage.mp4"): "cannot be opened",
    }
    for path, problem in cases.items():
        for call in (lambda p: list(iter_frames(p)), probe_video, count_frames):
            with pytest.raises(VideoReadError, match=problem) as err:
                call(path)
            assert str(path) in str(err.value) and err.value.path == str(path)


def test_zero_frame_video_raises(tmp_path):
    path = tmp_path / "zero.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (32, 24))
    writer.release()
    assert path.stat().st_size > 0
    with pytest.raises(VideoReadError, match="no decodable frame") as err:
        list(iter_frames(path))
    assert str(path) in str(err.value)


def test_truncated_video_yields_the_frames_before_the_break_then_raises(tmp_path):
    path = write_truncated_avi(tmp_path / "cut.avi", fps=10.0, n=20)
    assert probe_video(path).reported_frame_count == 20
    frames = iter_frames(path)
    got = []
    with pytest.raises(VideoReadError, match="decoding stopped after") as err:
        for frame in frames:
            got.append(frame.index)
    assert str(path) in str(err.value)
    assert 0 < len(got) < 20 and got == list(range(len(got))) and frames.frames_decoded == len(got)


def test_container_count_off_by_one_is_tolerated(tmp_path, monkeypatch):
    """Containers lie a little: one frame fewer than reported is not a break, two of 20 are."""
    path = write_coded_video(tmp_path / "v.mp4", 10.0, 20)
    real_open = video._open

    def lying_open(p, reported):
        cap, info = real_open(p)
        return cap, video.VideoInfo(info.path, info.fps, reported, info.width, info.height)

    monkeypatch.setattr(video, "_open", lambda p: lying_open(p, 21))
    assert len(list(iter_frames(path))) == 20
    monkeypatch.setattr(video, "_open", lambda p: lying_open(p, 22))
    with pytest.raises(VideoReadError, match="after 20 of 22"):
        list(iter_frames(path))
