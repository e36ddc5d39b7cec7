"""One damaged-video policy in the library and every command: skip (default) or keep, never unmarked rows.

A damaged video here is an MJPG AVI cut after 60% of its bytes (decodes part-way, then the stream
ends before its own duration). Frames are 32x24, a few dozen per clip, so the whole module runs in
seconds on CPU.
"""

from __future__ import annotations

import csv
import json
import pathlib

import keras
import numpy as np
import pytest

from emonet_tf import EmoNetClassifier, cli, export, video
from emonet_tf.inference import EmoNet
from tfds_builders import make_dummy_data as dummy


def read_csv(path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> str:
    keras.utils.set_random_seed(3)
    path = str(tmp_path_factory.mktemp("weights") / "emonet.keras")
    export.export_keras(EmoNetClassifier(), path)
    return path


@pytest.fixture(scope="module")
def emonet(weights) -> EmoNet:
    return EmoNet.from_weights(weights)


@pytest.fixture(autouse=True)
def loaded_once(emonet, monkeypatch):
    """The commands get the module's model instead of loading --weights again (seconds per call on 2 cores);
    weight loading itself is tested in tests/test_cli.py."""
    monkeypatch.setattr(cli, "load_emonet", lambda args: emonet)


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, pathlib.Path]:
    root = tmp_path_factory.mktemp("clips")
    return {
        "good": dummy.write_coded_video(root / "Joy" / "good.mp4", 10.0, 11),
        "cut": dummy.write_truncated_avi(root / "Joy" / "cut.avi", fps=10.0, n=20),
        "empty": dummy.write_corrupt(root / "Fear" / "noise.mp4"),
        "other": dummy.write_coded_video(root / "Fear" / "other.avi", 10.0, 6),
    }


@pytest.fixture(scope="module")
def cut_frames(clips) -> list[int]:
    """Indices (all frames) that decode in the damaged clip under keep."""
    frames = video.iter_frames(clips["cut"], video.FrameSampling(), damaged="keep")
    indices = [f.index for f in frames]
    assert frames.damage and 0 < len(indices) < 20, "the cut clip must decode part-way"
    return indices


def test_library_skip_returns_no_frames_and_keep_returns_them_with_the_damage(emonet, clips, cut_frames):
    skipped = emonet.predict_video(clips["cut"], "all")
    assert not skipped.ok and skipped.frames == [] and skipped.damage is None
    assert str(clips["cut"]) in skipped.error
    kept = emonet.predict_video(clips["cut"], "all", damaged="keep")
    assert kept.ok and kept.damage and [f.index for f in kept.frames] == cut_frames
    healthy = emonet.predict_video(clips["good"], "all", damaged="keep")
    assert healthy.ok and healthy.damage is None and len(healthy.frames) == 11

    stream = emonet.iter_predict_video(clips["cut"], "all", batch_size=4, damaged="keep")
    assert stream.damage is None
    assert [f.index for f in stream] == cut_frames and stream.damage == kept.damage
    with pytest.raises(video.VideoDamagedError):
        list(emonet.iter_predict_video(clips["cut"], "all"))
    with pytest.raises(ValueError, match="skip, keep"):
        emonet.iter_predict_video(clips["cut"], "all", damaged="partial")


@pytest.mark.parametrize("policy", ["skip", "keep"])
def test_predict_csv_and_json_mark_every_row_of_a_damaged_or_failed_video(
    weights, clips, cut_frames, tmp_path, capsys, policy
):
    out_csv, out_json = tmp_path / "p.csv", tmp_path / "p.json"
    argv = [
        "predict",
        "--weights",
        weights,
        "--sampling",
        "all",
        "--no-progress",
        "--csv",
        str(out_csv),
        "--json",
        str(out_json),
        str(clips["good"]),
        str(clips["cut"]),
        str(clips["empty"]),
    ]
    if policy == "keep":
        argv += ["--damaged", "keep"]
    assert cli.main(argv) == cli.EXIT_OK
    err = capsys.readouterr().err
    rows = read_csv(out_csv)
    by_source = {}
    for r in rows:
        by_source.setdefault(r["source"], []).append(r)
    good, cut, noise = (by_source[str(clips[k])] for k in ("good", "cut", "empty"))
    assert {r["status"] for r in good} == {"ok"} and {r["damage"] for r in good} == {""} and len(good) == 12
    assert [r["status"] for r in noise] == ["failed"] and noise[0]["error"]
    if policy == "skip":
        assert [(r["status"], r["frame_index"]) for r in cut] == [("failed", "")]
        assert "damaged video skipped" in cut[0]["error"] and "--damaged keep" in cut[0]["error"]
        assert "1 predicted, 2 failed" in err
    else:
        assert [r["frame_index"] for r in cut] == [str(i) for i in cut_frames] + [""]
        assert {r["status"] for r in cut} == {"damaged"} and all(r["damage"] for r in cut)
        assert cut[-1]["kind"] == "video_mean" and cut[-1]["n_frames"] == str(len(cut_frames))
        assert "2 predicted, 1 failed, 1 damaged video kept (" in err and "cut.avi" in err
    doc = json.loads(out_json.read_text())
    assert doc["damaged"] == policy
    assert [r["status"] for r in doc["rows"]] == [r["status"] for r in rows]


@pytest.mark.parametrize("policy", ["skip", "keep"])
def test_activations_npy_writes_a_rows_sidecar_and_never_unmarked_rows_of_a_failed_video(
    weights, clips, cut_frames, tmp_path, policy
):
    out = tmp_path / "fc8.npy"
    inputs = [str(clips["good"]), str(clips["cut"]), str(clips["empty"]), str(clips["other"])]
    argv = [
        "activations",
        "--weights",
        weights,
        "--layer",
        "fc8",
        "--sampling",
        "all",
        "--no-progress",
        "--damaged",
        policy,
        *inputs,
        "--out",
        str(out),
    ]
    assert cli.main(argv) == cli.EXIT_OK
    acts = np.load(out)
    sidecar = read_csv(cli.rows_sidecar_path(str(out)))
    assert cli.rows_sidecar_path(str(out)) == str(tmp_path / "fc8.rows.csv")
    rows = [r for r in sidecar if r["row"] != ""]
    failed = [r for r in sidecar if r["row"] == ""]
    assert [int(r["row"]) for r in rows] == list(range(acts.shape[0]))
    cut_rows = [r for r in rows if r["source"] == inputs[1]]
    if policy == "skip":
        # The bug this guards against: the .npy held the rows of the video reported as failed.
        assert acts.shape == (11 + 6, 20) and cut_rows == []
        assert sorted(r["source"] for r in failed) == sorted([inputs[1], inputs[2]])
        assert {r["status"] for r in rows} == {"ok"}
    else:
        assert acts.shape == (11 + len(cut_frames) + 6, 20)
        assert [int(r["frame_index"]) for r in cut_rows] == cut_frames
        assert {r["status"] for r in cut_rows} == {"damaged"} and all(r["detail"] for r in cut_rows)
        assert {r["status"] for r in rows if r["source"] != inputs[1]} == {"ok"}
        assert [r["source"] for r in failed] == [inputs[2]]
    assert {r["status"] for r in failed} == {"failed"} and all(r["detail"] for r in failed)


def test_activations_npz_flags_damaged_rows(weights, emonet, clips, cut_frames, tmp_path):
    out = tmp_path / "fc8.npz"
    inputs = [str(clips["cut"]), str(clips["good"])]
    assert (
        cli.main(
            [
                "activations",
                "--weights",
                weights,
                "--layer",
                "fc8",
                "--sampling",
                "all",
                "--no-progress",
                "--damaged",
                "keep",
                *inputs,
                "--out",
                str(out),
            ]
        )
        == cli.EXIT_OK
    )
    with np.load(out) as z:
        n = len(cut_frames)
        assert list(z["damaged"]) == [True] * n + [False] * 11
        assert all(z["damage"][:n]) and not any(z["damage"][n:])
        assert list(z["frame_index"][:n]) == cut_frames and str(z["damaged_policy"]) == "keep"
        expected = emonet.predict_video(clips["cut"], "all", damaged="keep").frames[0].logits
        np.testing.assert_allclose(z["activations"][0], expected, atol=1e-4)
    assert (
        cli.main(
            [
                "activations",
                "--weights",
                weights,
                "--layer",
                "fc8",
                "--sampling",
                "all",
                "--no-progress",
                *inputs,
                "--out",
                str(out),
            ]
        )
        == cli.EXIT_OK
    )
    with np.load(out) as z:
        assert set(z["sources"]) == {inputs[1]} and not z["damaged"].any()
        assert list(z["failed_sources"]) == [inputs[0]] and "damaged video skipped" in z["errors"][0]


@pytest.mark.parametrize("policy", ["skip", "keep"])
def test_evaluate_folder_follows_the_policy_and_reports_it(weights, clips, cut_frames, tmp_path, capsys, policy):
    root = clips["good"].parents[1]
    out_dir = tmp_path / "eval"
    assert (
        cli.main(
            [
                "evaluate",
                "--weights",
                weights,
                "--folder",
                str(root),
                "--sampling",
                "all",
                "--no-progress",
                "--damaged",
                policy,
                "--out-dir",
                str(out_dir),
            ]
        )
        == cli.EXIT_OK
    )
    metrics = json.loads((out_dir / "eval_metrics.json").read_text())
    report = metrics["inputs"]
    assert report["damaged_policy"] == policy
    failed = sorted(pathlib.Path(d["source"]).name for d in report["failed"])
    if policy == "skip":
        assert metrics["num_examples"] == 11 + 6 and failed == ["cut.avi", "noise.mp4"]
        assert report["damaged_kept"] == []
    else:
        assert metrics["num_examples"] == 11 + len(cut_frames) + 6 and failed == ["noise.mp4"]
        assert [(pathlib.Path(d["source"]).name, d["frames"]) for d in report["damaged_kept"]] == [
            ("cut.avi", len(cut_frames))
        ]
        assert "cut.avi" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------------
# Damage messages count sampled frames (of decoded); inputs of every kind are reported by name.


def _cut_counts(clip, sampling):
    frames = video.iter_frames(clip, video.FrameSampling.parse(sampling), damaged="keep")
    sampled = len(list(frames))
    assert sampled < frames.frames_decoded, "the sampling must take fewer frames than decode"
    return sampled, frames.frames_decoded


@pytest.mark.parametrize("command", ["predict", "activations"])
def test_damage_messages_say_sampled_frames_of_decoded(weights, clips, tmp_path, capsys, command):
    sampled, decoded = _cut_counts(clips["cut"], "every5")
    out = ["--csv", str(tmp_path / "p.csv")] if command == "predict" else ["--out", str(tmp_path / "a.npz")]
    base = [
        command,
        "--weights",
        weights,
        "--sampling",
        "every5",
        "--no-progress",
        *out,
        str(clips["cut"]),
        str(clips["good"]),
    ]
    assert cli.main(base) == cli.EXIT_OK
    err = capsys.readouterr().err
    note = cli.frames_note(sampled, decoded)  # "1 sampled frame (of 2 decoded)"
    assert note == f"{sampled} sampled frame{'s' if sampled > 1 else ''} (of {decoded} decoded)"
    assert f"--damaged keep uses its {note}]" in err
    assert cli.main(base + ["--damaged", "keep"]) == cli.EXIT_OK
    err = capsys.readouterr().err
    assert f"its {sampled} sampled frame" in err and "decoded frames were used" not in err
    if command == "activations":  # the library stream of predict does not expose its decoded count
        assert f"its {note} are kept" in err


def _write_wav(path: pathlib.Path) -> pathlib.Path:
    import wave

    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(b"\0\0" * 800)
    return path


def test_transport_stream_and_other_new_video_extensions_are_videos(weights, clips, tmp_path, capsys):
    folder = tmp_path / "walk"
    folder.mkdir()
    ts = folder / "clip.ts"
    ts.write_bytes(clips["good"].read_bytes())  # the container is probed from the bytes, not the name
    assert cli.kind_of(str(ts)) == "video" and cli.kind_of("x.M2TS") == "video" and cli.kind_of("x.y4m") == "video"
    assert [x.path for x in cli.collect_inputs([str(folder)])] == [str(ts)]
    out = tmp_path / "p.csv"
    assert (
        cli.main(["predict", "--weights", weights, "--sampling", "all", "--no-progress", "--csv", str(out), str(ts)])
        == cli.EXIT_OK
    )
    rows = read_csv(out)
    assert [r["kind"] for r in rows] == ["frame"] * 11 + ["video_mean"] and {r["status"] for r in rows} == {"ok"}


def test_folder_named_like_a_video_and_audio_only_file_given_explicitly_are_reported(weights, clips, tmp_path, capsys):
    fake = tmp_path / "x.mp4"
    fake.mkdir()
    (fake / "inside.mp4").write_bytes(clips["good"].read_bytes())
    audio = _write_wav(tmp_path / "song.m4a")
    inputs = [str(fake), str(audio), str(clips["good"])]
    out = tmp_path / "p.csv"
    assert (
        cli.main(["predict", "--weights", weights, "--sampling", "all", "--no-progress", "--csv", str(out), *inputs])
        == cli.EXIT_OK
    )
    rows = {r["source"]: r for r in read_csv(out) if r["kind"] != "frame"}
    assert rows[str(fake)]["status"] == "failed" and "not a regular file" in rows[str(fake)]["error"]
    error = rows[str(audio)]["error"]
    assert rows[str(audio)]["status"] == "failed"
    assert "cannot decode as an image" in error and "no video stream" in error, error

    npy = tmp_path / "a.npy"
    assert (
        cli.main(
            [
                "activations",
                "--weights",
                weights,
                "--layer",
                "fc8",
                "--sampling",
                "all",
                "--no-progress",
                *inputs,
                "--out",
                str(npy),
            ]
        )
        == cli.EXIT_OK
    )
    failed = {r["source"]: r["detail"] for r in read_csv(cli.rows_sidecar_path(str(npy))) if r["status"] == "failed"}
    assert set(failed) == {str(fake), str(audio)}
    assert "not a regular file" in failed[str(fake)] and "no video stream" in failed[str(audio)]


def test_exif_orientation_flag_reaches_the_image_decoder_in_every_image_command(weights, emonet, tmp_path, capsys):
    from PIL import Image

    rng = np.random.default_rng(0)
    path = tmp_path / "rotated.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    Image.fromarray(rng.integers(0, 256, (40, 90, 3), dtype=np.uint8)).save(path, quality=95, exif=exif)
    upright, raw = (emonet.predict_images([str(path)], exif_orientation=e)[0].probabilities for e in (True, False))
    assert not np.allclose(upright, raw, atol=1e-6), "the rotation must change the prediction"
    for flag, expected in (([], raw), (["--exif-orientation"], upright)):
        out = tmp_path / f"p{len(flag)}.json"
        assert cli.main(["predict", "--weights", weights, "--no-progress", "--json", str(out), str(path), *flag]) == 0
        doc = json.loads(out.read_text())
        assert doc["exif_orientation"] == bool(flag)
        np.testing.assert_allclose([doc["rows"][0][n] for n in emonet.class_names], expected, atol=1e-5)
        npz = tmp_path / f"a{len(flag)}.npz"
        assert (
            cli.main(
                [
                    "activations",
                    "--weights",
                    weights,
                    "--layer",
                    "softmax",
                    "--no-progress",
                    str(path),
                    "--out",
                    str(npz),
                    *flag,
                ]
            )
            == 0
        )
        with np.load(npz) as z:
            np.testing.assert_allclose(z["activations"][0], expected, atol=1e-5)
    for command in ("evaluate", "affect"):
        assert (
            cli.build_parser()
            .parse_args(
                [command, "--exif-orientation", "--out-dir", "x"]
                if command == "evaluate"
                else [command, "--exif-orientation"]
            )
            .exif_orientation
            is True
        )
