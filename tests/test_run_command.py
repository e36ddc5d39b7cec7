"""`emonet run`: the main job in one command (emonet_tf/run.py).

Without weights: generated clips -> video_folder records -> fc8 trained on a seeded random backbone ->
evaluation -> SavedModel -> predictions of the held-out clips through the SavedModel -> CSV and plots.
The default suite runs it small (3 clips of 2 s per category); the full default size is `-m slow`.
With weights: `emonet predict` on the given inputs (or generated clips), CSV and plots into --out.
"""

import csv
import json
import os
import pathlib
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from emonet_tf import cli, run
from emonet_tf.plots import PNG_SIGNATURE

SMALL = ["--clips", "3", "--seconds", "2", "--epochs", "6"]
#: 2 s at 15 fps = 30 frames, every5 -> 6 sampled frames per clip; 3 clips per category: 2 train, 1 held out.
SMALL_TRAIN_FRAMES, SMALL_TEST_FRAMES = 4 * 2 * 6, 4 * 1 * 6


def is_png(path) -> bool:
    with open(path, "rb") as f:
        return f.read(8) == PNG_SIGNATURE


def read_rows(path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def run_cli(argv, capsys):
    status = cli.main(argv)
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def check_demo(out, stdout, train_frames, test_frames, held_out, min_top1):
    """Every promised output of a no-weights run exists and is sane; accuracy well above chance (0.25)."""
    import tensorflow as tf
    import tensorflow_datasets as tfds

    assert "NOT EmoNet's published weights" in stdout and "Nothing is downloaded" in stdout
    records = out / "tfds" / "video_folder" / f"emonet_run_{run.DEFAULT_SAMPLING}" / "2.0.0"
    model_dir, saved_model = out / "model", out / "model" / "export" / "saved_model"
    for path in (
        records,
        model_dir,
        model_dir / "eval" / "eval_metrics.json",
        saved_model,
        out / "predictions.csv",
        out / "predictions.png",
    ):
        assert str(path) in stdout, (path, stdout[-3000:])
    for n, name in enumerate(
        ("generate labelled clips", "build TFDS records", "train fc8", "predict the held-out", "write predictions"),
        start=1,
    ):
        assert f"[{n}/5] {name}" in stdout and " s\n" in stdout

    info = tfds.builder_from_directory(str(records)).info
    assert info.features["label"].names == list(run.DEFAULT_CATEGORIES)
    assert (info.splits["train"].num_examples, info.splits["test"].num_examples) == (train_frames, test_frames)

    metrics = json.loads((model_dir / "eval" / "eval_metrics.json").read_text())
    assert metrics["num_examples"] == test_frames
    assert metrics["top1"] >= min_top1 and metrics["mean_auc"] >= 0.9, metrics
    assert set(metrics["auc"]) == set(run.DEFAULT_CATEGORIES)
    assert np.asarray(metrics["confusion_matrix"]).shape == (4, 4)
    assert int(np.sum(metrics["confusion_matrix"])) == test_frames
    assert is_png(model_dir / "eval" / "eval_confusion.png") and is_png(model_dir / "eval" / "eval_auc.png")

    served = tf.saved_model.load(str(saved_model))
    assert "serving_default" in served.signatures
    assert [n.decode() for n in served.class_names.numpy()] == list(run.DEFAULT_CATEGORIES)

    rows = read_rows(out / "predictions.csv")
    frames = [r for r in rows if r["kind"] == "frame"]
    means = [r for r in rows if r["kind"] == "video_mean"]
    assert len(frames) == test_frames and len(means) == held_out
    right = sum(os.path.basename(os.path.dirname(r["source"])) == r["top1"] for r in frames)
    assert right / len(frames) >= min_top1, rows
    assert all(abs(sum(float(r[c]) for c in run.DEFAULT_CATEGORIES) - 1) < 1e-4 for r in rows)
    assert is_png(out / "predictions.png")
    plots = sorted((out / "plots").iterdir())
    assert len(plots) == len(means) and all(is_png(p) for p in plots)


def test_demo_whole_path_small(tmp_path, capsys):
    out = tmp_path / "emonet_run"
    status, stdout, stderr = run_cli(["run", "--out", str(out), "--no-progress", *SMALL], capsys)
    assert status == cli.EXIT_OK, stderr[-3000:]
    check_demo(out, stdout, SMALL_TRAIN_FRAMES, SMALL_TEST_FRAMES, held_out=4, min_top1=0.75)


@pytest.mark.slow
def test_demo_whole_path_default_size(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("EMONET_WEIGHTS", raising=False)
    status, stdout, stderr = run_cli(["run"], capsys)  # exactly the README's command
    assert status == cli.EXIT_OK, stderr[-3000:]
    # 4 s at 15 fps -> 12 sampled frames per clip; 6 clips per category: 4 train, 2 held out. The paths are
    # printed relative to the working folder, as the user typed none.
    check_demo(pathlib.Path(run.DEFAULT_OUT), stdout, 4 * 4 * 12, 4 * 2 * 12, held_out=8, min_top1=0.9)


def test_generated_clips_are_deterministic_and_in_the_builder_layout(tmp_path):
    a = run.generate_clips(str(tmp_path / "a"), clips_per_category=2, seconds=0.5, seed=3)
    b = run.generate_clips(str(tmp_path / "b"), clips_per_category=2, seconds=0.5, seed=3)
    assert [c.split for c in a] == ["train", "test"] * 4
    for x, y in zip(a, b):
        assert os.path.relpath(x.path, tmp_path / "a") == os.path.relpath(y.path, tmp_path / "b")
        assert open(x.path, "rb").read() == open(y.path, "rb").read()
    labels = read_rows(tmp_path / "a" / "labels.csv")
    assert [(r["video"], r["label"], r["split"]) for r in labels] == [
        (os.path.relpath(c.path, tmp_path / "a"), c.label, c.split) for c in a
    ]
    assert all(r["video"].startswith(r["label"] + "/") for r in labels)


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory):
    """A seeded random EmoNet (20 categories) saved as .keras: the user's weights in these tests."""
    import keras

    from emonet_tf import export
    from emonet_tf.classifier import EmoNetClassifier

    keras.utils.set_random_seed(5)
    path = str(tmp_path_factory.mktemp("weights") / "emonet.keras")
    export.export_keras(EmoNetClassifier(), path)
    return path


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    """A generated PNG image and a 1 s generated clip (15 frames -> 3 sampled with every5)."""
    from PIL import Image

    root = tmp_path_factory.mktemp("media")
    image = root / "still.png"
    Image.fromarray(run.motif_frame(1, 0.0, np.random.default_rng(0), 0.0)).save(image)
    clip = run.generate_clips(str(root / "clips"), categories=("Fear",), clips_per_category=2, seconds=1.0)[0]
    return {"image": str(image), "clip": clip.path}


def test_with_weights_predicts_the_given_image_and_clip(tmp_path, capsys, weights_file, media, monkeypatch):
    monkeypatch.delenv("EMONET_WEIGHTS", raising=False)
    out = tmp_path / "out"
    status, stdout, stderr = run_cli(
        ["run", "--weights", weights_file, media["image"], media["clip"], "--out", str(out), "--no-progress"], capsys
    )
    assert status == cli.EXIT_OK, stderr[-3000:]
    assert "NOT EmoNet's published weights" not in stdout
    rows = read_rows(out / "predictions.csv")
    assert [r["kind"] for r in rows] == ["image", "frame", "frame", "frame", "video_mean"]
    assert [r["source"] for r in rows] == [media["image"]] + [media["clip"]] * 4
    assert all(r["status"] == "ok" for r in rows) and "Amusement" in rows[0]
    assert is_png(out / "predictions.png") and str(out / "predictions.csv") in stdout
    assert [p.name for p in (out / "plots").iterdir()] == ["fear_00_emotions.png"]


def test_emonet_weights_env_is_honoured_and_clips_are_generated(tmp_path, capsys, weights_file, monkeypatch):
    monkeypatch.setenv("EMONET_WEIGHTS", weights_file)
    out = tmp_path / "out"
    status, stdout, stderr = run_cli(["run", "--out", str(out), "--no-progress"], capsys)
    assert status == cli.EXIT_OK, stderr[-3000:]
    assert "NOT EmoNet's published weights" not in stdout and weights_file in stdout
    means = [r for r in read_rows(out / "predictions.csv") if r["kind"] == "video_mean"]
    assert sorted(os.path.basename(os.path.dirname(r["source"])) for r in means) == sorted(run.DEFAULT_CATEGORIES)
    assert is_png(out / "predictions.png") and len(list((out / "plots").iterdir())) == 4


@pytest.mark.parametrize("via_env", [False, True])
def test_missing_weights_is_a_usage_error_naming_the_file(tmp_path, capsys, monkeypatch, via_env):
    missing = str(tmp_path / "nope.keras")
    if via_env:
        monkeypatch.setenv("EMONET_WEIGHTS", missing)
    argv = ["run", "--out", str(tmp_path / "out")] + ([] if via_env else ["--weights", missing])
    status, _, stderr = run_cli(argv, capsys)
    assert status == cli.EXIT_USAGE
    assert f"emonet run: error: weights not found: {missing}" in stderr
    assert ("EMONET_WEIGHTS" if via_env else "--weights") in stderr
    assert not (tmp_path / "out").exists()


def test_bad_sizes_and_inputs_without_weights_are_usage_errors(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("EMONET_WEIGHTS", raising=False)
    assert run_cli(["run", "--clips", "1", "--out", str(tmp_path / "o")], capsys)[0] == cli.EXIT_USAGE
    status, _, stderr = run_cli(["run", "photo.jpg", "--out", str(tmp_path / "o")], capsys)
    assert status == cli.EXIT_USAGE and "inputs need weights" in stderr
    assert not (tmp_path / "o").exists()


def test_run_help_and_usage_errors_do_not_import_tensorflow(tmp_path):
    script = textwrap.dedent(f"""
        import sys
        from emonet_tf.cli import main
        try:
            main(["run", "--help"])
        except SystemExit:
            pass
        print("STATUS", main(["run", "--weights", {str(tmp_path / "nope.keras")!r}]))
        print("TENSORFLOW", "tensorflow" in sys.modules)
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "STATUS 2" in proc.stdout and "TENSORFLOW False" in proc.stdout, proc.stdout[-2000:]


def test_with_weights_counts_steps_and_files_and_speaks_as_run(tmp_path, capsys, weights_file, media, monkeypatch):
    """[1/2] predict, [2/2] plot; the files found are counted (not the arguments); errors say `emonet run:`;
    predict's closing lines name the preprocessing and the CSV."""
    monkeypatch.delenv("EMONET_WEIGHTS", raising=False)
    folder = tmp_path / "inputs"
    folder.mkdir()
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a JPEG")
    (folder / "still.png").write_bytes(open(media["image"], "rb").read())
    out = tmp_path / "out"
    argv = ["run", "--weights", weights_file, str(folder), media["clip"], "--out", str(out), "--no-progress"]
    status, stdout, stderr = run_cli(argv, capsys)
    assert status == cli.EXIT_OK, stderr[-3000:]
    assert "[1/2] predict 3 file(s) with" in stdout and "[2/2] plot every input's probabilities:" in stdout
    assert "/3]" not in stdout
    assert f"emonet run: {folder / 'broken.jpg'}" in stderr and "emonet predict:" not in stderr
    assert "preprocessing: resize matlab, antialias on" in stderr
    assert f"csv: {out / 'predictions.csv'}" in stderr


def test_with_weights_and_generated_clips_counts_three_steps_and_lists_the_clips(
    tmp_path, capsys, weights_file, monkeypatch
):
    monkeypatch.delenv("EMONET_WEIGHTS", raising=False)
    monkeypatch.setattr(run, "DEFAULT_SECONDS", 1.0)  # 3 sampled frames per clip: cheap
    out = tmp_path / "out"
    status, stdout, stderr = run_cli(["run", "--weights", weights_file, "--out", str(out), "--no-progress"], capsys)
    assert status == cli.EXIT_OK, stderr[-3000:]
    for n, name in enumerate(("generate clips", "predict 4 file(s)", "plot every input"), start=1):
        assert f"[{n}/3] {name}" in stdout, stdout
    assert "/4]" not in stdout
    outputs = stdout[stdout.index("outputs:") :]
    assert f"clips            {out / 'clips'}" in outputs


def test_demo_reports_the_clips_and_the_auc_plot(tmp_path, capsys, monkeypatch):
    """The demo's `outputs:` names clips/ and eval/eval_auc.png (the expensive steps replaced by stand-ins)."""

    class Info:
        splits = {"train": type("S", (), {"num_examples": 2}), "test": type("S", (), {"num_examples": 1})}

    class Builder:
        info, data_path = Info(), str(tmp_path / "out" / "tfds" / "records")

    eval_dir = tmp_path / "out" / "model" / "eval"
    summary = {
        "eval": {"top1": 1.0, "mean_auc": 1.0, "num_examples": 1, "class_names": ["Fear", "Awe"]},
        "eval_files": {k: str(eval_dir / f"eval_{k}") for k in ("json", "confusion", "auc")},
        "export": {"saved_model": "sm", "keras": "k.keras"},
    }
    result = cli.InputResult("clip.mp4", "video")
    result.probabilities = np.array([0.9, 0.1])
    monkeypatch.setattr(run, "generate_clips", lambda *a, **k: [run.Clip("clip.mp4", "Fear", "test")])
    monkeypatch.setattr(run, "build_records", lambda *a, **k: Builder())
    monkeypatch.setattr(run, "train_head", lambda *a, **k: summary)
    monkeypatch.setattr(run, "predict_clips_saved_model", lambda *a, **k: [result])
    monkeypatch.setattr(run, "write_predictions", lambda *a, **k: [])
    monkeypatch.setattr(run, "read_prediction_summary", lambda *a, **k: ([], [], np.zeros((0, 2))))
    monkeypatch.setattr(run, "plot_summary", lambda *a, **k: "predictions.png")
    written = run.run_demo(str(tmp_path / "out"), progress=False, categories=("Fear", "Awe"))["paths"]
    stdout = capsys.readouterr().out
    assert written["clips"] == str(tmp_path / "out" / "clips") and written["auc"] == str(eval_dir / "eval_auc")
    assert f"clips            {tmp_path / 'out' / 'clips'}" in stdout
    assert f"auc              {eval_dir / 'eval_auc'}" in stdout


def test_predict_json_records_the_whole_preprocessing_and_says_where_rows_went(tmp_path, capsys, weights_file, media):
    from emonet_tf.preprocessor import EmoNetPreprocessor

    csv_path, json_path = tmp_path / "p.csv", tmp_path / "p.json"
    argv = ["predict", "--weights", weights_file, media["image"], "--csv", str(csv_path), "--json", str(json_path)]
    status, _, stderr = run_cli([*argv, "--resize-method", "bilinear", "--no-progress"], capsys)
    assert status == cli.EXIT_OK, stderr[-3000:]
    data = json.loads(json_path.read_text())
    assert data["resize_method"] == "bilinear"
    expected = EmoNetPreprocessor(resize_method="bilinear").get_config()
    assert data["preprocessing"] == json.loads(json.dumps(expected))
    assert f"csv: {csv_path}\n" in stderr and f"json: {json_path}\n" in stderr
    assert "preprocessing: resize bilinear, antialias on" in stderr
