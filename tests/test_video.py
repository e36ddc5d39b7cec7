"""The streaming frame reader: counts, timestamps, sampling, RGB order and broken files (tiny synthetic videos)."""

from __future__ import annotations

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2")

from emonet_tf import video  # noqa: E402
from emonet_tf.video import FrameSampling, VideoReadError, count_frames, iter_frames, probe_video  # noqa: E402
from tfds_builders.make_dummy_data import (  # noqa: E402
    frame_colour,
    write_coded_video,
    write_corrupt,
    write_truncated_avi,
    write_video,
)


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


def test_timestamps_are_presentation_times_of_constant_rate_files(videos):
    """For constant-rate files the presentation times are index / fps (they are the stream's own)."""
    for name in ("mp4_30", "avi_25"):
        path = videos[name]
        ours = [f.timestamp_ms for f in iter_frames(path)]
        fps = probe_video(path).fps
        np.testing.assert_allclose(ours, [i * 1000.0 / fps for i in range(len(ours))], atol=1e-9)


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


def test_fps_follows_ffmpeg_rounding(videos):
    """ffmpeg's fps filter puts frame t in slot round(t * R) and shows the last frame of each slot.

    (tests/test_video_ffmpeg_oracle.py checks the same against a real ffmpeg on many files.)
    """
    # 30 fps -> 10 fps: frames 0, 1 -> slot 0 (1 wins), 2, 3, 4 -> slot 1 (4 wins), ...: 1, 4, 7, ...
    assert indices(videos["mp4_30"], "fps10") == [1, 4, 7, 10, 13, 16, 19]
    # 25 fps (40 ms): slots round(0.4 i): frames 0,1 -> 0; 2,3 -> 1; 4,5,6 -> 2; 7,8 -> 3; 9,10,11 -> 4;
    # 12 -> 5, but the stream ends at 520 ms, also slot 5, so frame 12 is never shown (ffmpeg agrees).
    assert indices(videos["avi_25"], "fps10") == [1, 3, 6, 8, 11]
    # 10 fps -> 4 fps: slots round(0.4 i) as above, 9 frames end at 900 ms -> slot 4 (exclusive).
    assert indices(videos["mp4_10"], "fps4") == [1, 3, 6, 8]
    # Upsampling never duplicates a frame.
    assert indices(videos["mp4_10"], "fps25") == list(range(9))


def test_sampling_names_and_parser():
    for spec, sampling in [
        ("all", FrameSampling()),
        ("every5", FrameSampling(every_n=5)),
        ("fps10", FrameSampling(fps=10.0)),
        ("fps7.5", FrameSampling(fps=7.5)),
    ]:
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
    frames = iter_frames(path)
    got = []
    with pytest.raises(video.VideoDamagedError) as err:
        for frame in frames:
            got.append(frame.index)
    assert str(path) in str(err.value) and "decoder error" in str(err.value)
    assert 0 < len(got) < 20 and got == list(range(len(got))) and frames.frames_decoded == len(got)
    assert err.value.frames_decoded == len(got)


def test_damaged_policy_keep_ends_normally_and_says_why(tmp_path):
    path = write_truncated_avi(tmp_path / "cut.avi", fps=10.0, n=20)
    frames = iter_frames(path, damaged="keep")
    got = list(frames)
    assert 0 < len(got) < 20 and frames.damage and "decoder error" in frames.damage
    healthy = iter_frames(write_coded_video(tmp_path / "ok.avi", 10.0, 20), damaged="keep")
    assert len(list(healthy)) == 20 and healthy.damage is None
    with pytest.raises(ValueError, match="damaged-video policy"):
        iter_frames(path, damaged="ignore")


def test_container_count_is_not_trusted(tmp_path, monkeypatch):
    """A container that over-reports its frame count does not make a healthy video damaged."""
    import av

    path = write_coded_video(tmp_path / "v.mp4", 10.0, 20)
    real_open = av.open

    class Lying:
        def __init__(self, container):
            self._c = container

        def __getattr__(self, name):
            return getattr(self._c, name)

    def lying_open(*args, **kwargs):
        container = real_open(*args, **kwargs)
        monkeypatch.setattr(type(container.streams.video[0]), "frames", property(lambda s: 444), raising=False)
        return container

    monkeypatch.setattr(av, "open", lying_open)
    frames = iter_frames(path, damaged="keep")
    assert probe_video(path).reported_frame_count == 444
    assert len(list(frames)) == 20 and frames.damage is None
