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
def test_predict_csv_and_json_mark_every_row_of_a_damaged_or_failed_video(weights, clips, cut_frames, tmp_path,
                                                                          capsys, policy):
    out_csv, out_json = tmp_path / "p.csv", tmp_path / "p.json"
    argv = ["predict", "--weights", weights, "--sampling", "all", "--no-progress", "--csv", str(out_csv),
            "--json", str(out_json), str(clips["good"]), str(clips["cut"]), str(clips["empty"])]
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
def test_activations_npy_writes_a_rows_sidecar_and_never_unmarked_rows_of_a_failed_video(weights, clips, cut_frames,
                                                                                         tmp_path, policy):
    out = tmp_path / "fc8.npy"
    inputs = [str(clips["good"]), str(clips["cut"]), str(clips["empty"]), str(clips["other"])]
    argv = ["activations", "--weights", weights, "--layer", "fc8", "--sampling", "all", "--no-progress",
            "--damaged", policy, *inputs, "--out", str(out)]
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
    assert cli.main(["activations", "--weights", weights, "--layer", "fc8", "--sampling", "all", "--no-progress",
                     "--damaged", "keep", *inputs, "--out", str(out)]) == cli.EXIT_OK
    with np.load(out) as z:
        n = len(cut_frames)
        assert list(z["damaged"]) == [True] * n + [False] * 11
        assert all(z["damage"][:n]) and not any(z["damage"][n:])
        assert list(z["frame_index"][:n]) == cut_frames and str(z["damaged_policy"]) == "keep"
        expected = emonet.predict_video(clips["cut"], "all", damaged="keep").frames[0].logits
        np.testing.assert_allclose(z["activations"][0], expected, atol=1e-4)
    assert cli.main(["activations", "--weights", weights, "--layer", "fc8", "--sampling", "all", "--no-progress",
                     *inputs, "--out", str(out)]) == cli.EXIT_OK
    with np.load(out) as z:
        assert set(z["sources"]) == {inputs[1]} and not z["damaged"].any()
        assert list(z["failed_sources"]) == [inputs[0]] and "damaged video skipped" in z["errors"][0]


@pytest.mark.parametrize("policy", ["skip", "keep"])
def test_evaluate_folder_follows_the_policy_and_reports_it(weights, clips, cut_frames, tmp_path, capsys, policy):
    root = clips["good"].parents[1]
    out_dir = tmp_path / "eval"
    assert cli.main(["evaluate", "--weights", weights, "--folder", str(root), "--sampling", "all", "--no-progress",
                     "--damaged", policy, "--out-dir", str(out_dir)]) == cli.EXIT_OK
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
            ("cut.avi", len(cut_frames))]
        assert "cut.avi" in capsys.readouterr().err
