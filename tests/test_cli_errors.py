"""The `emonet` command's contract beyond the happy path: every subcommand's bad input exits 2 with its usage and
`emonet <cmd>: error: ...` naming the file, a runtime failure exits 1 in one line, never a traceback; progress
bars counted in frames and values; `evaluate --dataset --predictions`; `python -m emonet_tf.weights`."""

from __future__ import annotations

import csv
import os
import pathlib
import subprocess
import sys

import cv2
import keras
import numpy as np
import pytest

from emonet_tf import EmoNet, EmoNetClassifier, cli, export

REPO = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> str:
    keras.utils.set_random_seed(3)
    path = str(tmp_path_factory.mktemp("weights") / "emonet.keras")
    export.export_keras(EmoNetClassifier(), path)
    return path


@pytest.fixture(scope="module")
def emonet(weights) -> EmoNet:
    return EmoNet.from_weights(weights)


@pytest.fixture
def loaded(emonet, monkeypatch):
    """The commands get the module's model instead of loading --weights again (seconds per call on 2 cores)."""
    monkeypatch.setattr(cli, "load_emonet", lambda args: emonet)
    return emonet


@pytest.fixture(scope="module")
def files(tmp_path_factory, photos) -> dict[str, pathlib.Path]:
    root = tmp_path_factory.mktemp("inputs")
    out = {"photo": root / "a.jpg", "broken": root / "broken.jpg", "clip": root / "clip.mp4"}
    cv2.imwrite(str(out["photo"]), cv2.cvtColor(photos["hopper"], cv2.COLOR_RGB2BGR))
    out["broken"].write_bytes(b"\xff\xd8\xff\xe0 not a JPEG")
    writer = cv2.VideoWriter(str(out["clip"]), cv2.VideoWriter_fourcc(*"mp4v"), 12.0, (64, 48))
    for i in range(12):
        writer.write(cv2.resize(np.roll(photos["hopper"], 20 * i, axis=1), (64, 48)))
    writer.release()
    return out


def usage_error(capsys, command: str, argv: list[str], *expected: str) -> str:
    """Runs `emonet command argv`, asserts exit 2 with the usage and the error line, returns stderr."""
    rc = cli.main([command, *argv])
    err = capsys.readouterr().err
    assert rc == cli.EXIT_USAGE, err
    assert "Traceback" not in err and f"usage: emonet {command}" in err and f"emonet {command}: error:" in err, err
    for text in expected:
        assert text in err, err
    return err


def test_predict_bad_inputs(weights, files, tmp_path, capsys, loaded):
    usage_error(capsys, "predict", ["--csv", str(tmp_path), str(files["photo"])], str(tmp_path), "is a folder")
    blocker = tmp_path / "file"
    blocker.write_text("")
    usage_error(capsys, "predict", ["--plot-dir", str(blocker / "plots"), str(files["photo"])], "is a file")
    with pytest.raises(SystemExit) as info:
        cli.main(["predict", "--top", "0", str(files["photo"])])
    assert info.value.code == cli.EXIT_USAGE and "--top must be at least 1" in capsys.readouterr().err


def test_unloadable_weights_are_a_usage_error(tmp_path, files, capsys):
    bogus = tmp_path / "bogus.pth"
    bogus.write_bytes(b"not a weight file")
    for command, extra in (
        ("predict", [str(files["photo"])]),
        ("export", ["--out", str(tmp_path / "m")]),
        ("activations", [str(files["photo"]), "--out", str(tmp_path / "a.npy")]),
        ("evaluate", ["--folder", str(tmp_path), "--out-dir", str(tmp_path / "e")]),
    ):
        usage_error(capsys, command, ["--weights", str(bogus), *extra], "bogus.pth")


def test_evaluate_bad_inputs(files, tmp_path, capsys, loaded):
    out = ["--out-dir", str(tmp_path / "eval")]
    usage_error(capsys, "evaluate", out, "exactly one of --dataset")
    usage_error(capsys, "evaluate", ["--folder", str(tmp_path / "missing"), *out], "missing: not a folder")
    usage_error(
        capsys,
        "evaluate",
        ["--dataset", "d", "--predictions", str(tmp_path / "p.txt"), *out],
        "p.txt: --predictions must end in .csv or .parquet or .pq",
    )
    usage_error(capsys, "evaluate", ["--dataset", "d", "--fc7", "npy", *out], "add columns to --predictions")
    usage_error(
        capsys,
        "evaluate",
        ["--folder", str(tmp_path), "--predictions", str(tmp_path / "p.csv"), *out],
        "need --dataset",
    )
    usage_error(capsys, "evaluate", ["--dataset", str(tmp_path / "nothing_here"), *out], "nothing_here")


def test_convert_bad_inputs_and_the_python_dash_m_alias(weights, tmp_path, capsys):
    usage_error(
        capsys,
        "convert",
        [str(tmp_path / "missing.pth"), str(tmp_path / "x.keras")],
        "missing.pth: no such file or folder",
    )
    usage_error(capsys, "convert", [weights, str(tmp_path / "x.h5")], "x.h5: the destination must end in .keras")
    bogus = tmp_path / "bogus.pth"
    bogus.write_bytes(b"not a weight file")
    usage_error(capsys, "convert", [str(bogus), str(tmp_path / "x.keras")], "bogus.pth")
    usage_error(
        capsys,
        "convert",
        [weights, str(tmp_path / "x.keras"), "--format", "gguf"],
        "--format gguf: not a weight format",
        "matlab_text",
    )
    assert not (tmp_path / "x.keras").exists()
    env = dict(
        os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""), TF_CPP_MIN_LOG_LEVEL="2"
    )
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "emonet_tf.weights",
            str(tmp_path / "missing.pth"),
            str(tmp_path / "x.keras"),
            "--new-head",
            "5",
            "--noprogress",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == cli.EXIT_USAGE and "usage: emonet convert" in proc.stderr, proc.stderr[-2000:]
    assert "missing.pth: no such file or folder" in proc.stderr and "Traceback" not in proc.stderr
    proc = subprocess.run(
        [sys.executable, "-m", "emonet_tf.weights", weights, str(tmp_path / "y.keras"), "--new-head", "5"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == cli.EXIT_OK and f"written: {tmp_path / 'y.keras'}" in proc.stdout, proc.stderr[-2000:]
    assert EmoNet.from_weights(tmp_path / "y.keras").model.head.units == 5


def test_export_bad_inputs_and_a_failed_tflite_check(files, tmp_path, capsys, loaded, monkeypatch):
    out = tmp_path / "serving" / "1"
    usage_error(
        capsys,
        "export",
        ["--out", str(out), "--tflite", "--check-image", str(files["broken"])],
        "broken.jpg: --check-image cannot be read as an image",
    )
    usage_error(
        capsys,
        "export",
        ["--out", str(out), "--tflite", "--check-image", str(tmp_path / "none.jpg")],
        "none.jpg: --check-image is not a file",
    )
    usage_error(capsys, "export", ["--out", str(out), "--check-image", str(files["photo"])], "needs --tflite")
    usage_error(
        capsys, "export", ["--out", str(out), "--keras", str(tmp_path / "m.h5")], "m.h5: --keras must end in .keras"
    )
    usage_error(capsys, "export", ["--out", str(files["photo"])], "a.jpg: --out is a file")
    assert not out.exists()

    monkeypatch.setattr(export, "export_saved_model", lambda *a, **k: "SavedModel (stub)")

    def mismatch(model, path, check_image=None):
        raise AssertionError("TFLite probabilities differ from TensorFlow's by 0.3 > 0.0001")

    monkeypatch.setattr(export, "export_tflite", mismatch)
    rc = cli.main(["export", "--out", str(out), "--tflite", "--check-image", str(files["photo"])])
    err = capsys.readouterr().err
    assert rc == cli.EXIT_FAILED and "Traceback" not in err and "usage:" not in err
    assert f"emonet export: error: {out}.tflite: TFLite probabilities differ" in err


def test_affect_bad_inputs(files, tmp_path, capsys, loaded):
    usage_error(capsys, "affect", [], "affect needs input files")
    usage_error(capsys, "affect", ["--coefficients", str(tmp_path / "c.json"), str(files["photo"])], "c.json")
    usage_error(capsys, "affect", ["--fit", str(tmp_path / "ratings.csv")], "--fit needs --out")
    usage_error(
        capsys,
        "affect",
        ["--fit", str(tmp_path / "ratings.csv"), "--out", str(tmp_path / "o.json")],
        "ratings.csv: cannot read the ratings table",
    )


def test_activations_bad_inputs(files, tmp_path, capsys, loaded):
    usage_error(
        capsys, "activations", [str(files["photo"]), "--out", str(tmp_path / "a.txt")], "a.txt: --out must end in .npy"
    )
    usage_error(
        capsys, "activations", [str(files["photo"]), "--layer", "conv9", "--out", str(tmp_path / "a.npy")], "conv9"
    )
    (tmp_path / "dir.npy").mkdir()
    usage_error(capsys, "activations", [str(files["photo"]), "--out", str(tmp_path / "dir.npy")], "is a folder")


def test_an_unexpected_failure_is_one_line_exit_1(files, capsys, loaded, monkeypatch):
    def boom(*args, **kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(cli, "iter_results", boom)
    rc = cli.main(["predict", "--no-progress", str(files["photo"])])
    err = capsys.readouterr().err
    assert rc == cli.EXIT_FAILED and "Traceback" not in err
    assert "emonet predict: error: RuntimeError: disk on fire" in err


def test_predict_progress_counts_frames_of_a_long_video(files, capsys, loaded, monkeypatch):
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)  # tqdm draws only on a terminal
    assert cli.main(["predict", str(files["clip"]), str(files["photo"])]) == cli.EXIT_OK
    err = capsys.readouterr().err
    assert "13/13" in err and "frame/s" in err, err  # 12 decoded frames of the clip + 1 image, not "2/2 file"
    assert cli.main(["predict", "--noprogress", str(files["clip"])]) == cli.EXIT_OK
    assert "frame/s" not in capsys.readouterr().err


def test_convert_progress_counts_values_of_a_matlab_text_dump(tmp_path, capsys, monkeypatch):
    dump = tmp_path / "dump"
    dump.mkdir()
    np.savetxt(dump / "conv1.weights.txt", np.ones((11, 11 * 3 * 96)), delimiter=",", fmt="%.1f")
    np.savetxt(dump / "conv1.bias.txt", np.ones((1, 96)), delimiter=",", fmt="%.1f")
    for stem in [f"conv{i}.{k}.txt" for i in range(2, 6) for k in ("weights", "bias")] + [
        f"fc{i}.{k}.txt" for i in range(1, 4) for k in ("weights", "bias")
    ]:
        (dump / stem).write_text("1,2,3\n")
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    err = usage_error(capsys, "convert", [str(dump), str(tmp_path / "x.keras")], "conv2")
    assert "reading MATLAB text dump" in err and "57.0M" in err and "value/s" in err, err
    assert "34.9k/57.0M" in err, err  # conv1 and its bias read (3 more of conv2), then refused
    usage_error(capsys, "convert", [str(dump), str(tmp_path / "x.keras"), "--no-progress"], "conv2")
    assert "value/s" not in capsys.readouterr().err


def test_evaluate_dataset_writes_predictions_csv_parquet_and_fc7(weights, emonet, tmp_path, capsys, loaded):
    from _training_helpers import make_dataset

    builder = make_dataset(
        str(tmp_path / "tfds"),
        name="cli_predictions",
        videos_per_class=(1, 2),
        frames_per_video=2,
        class_names=["Awe", "sexual_desire", "Nostalgia"],
    )
    table = tmp_path / "preds" / "test.csv"
    assert (
        cli.main(
            [
                "evaluate",
                "--dataset",
                builder.data_dir,
                "--split",
                "test",
                "--out-dir",
                str(tmp_path / "e"),
                "--predictions",
                str(table),
                "--fc7",
                "npy",
                "--logits",
                "--no-progress",
            ]
        )
        == cli.EXIT_OK
    )
    captured = capsys.readouterr()
    assert f"predictions: {table}" in captured.out and "fc7: " in captured.out
    with open(table, newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 12  # every example, also the 4 whose label (Nostalgia) the model does not predict
    assert {r["label_name"] for r in rows} == {"Awe", "sexual_desire", "Nostalgia"}
    assert {"video_id", "frame_index", "timestamp_ms", "logit_Awe"} <= set(rows[0])
    assert sorted({r["frame_index"] for r in rows}) == ["0", "1"] and rows[0]["video_id"]
    probs = np.array([[float(r[c]) for c in emonet.class_names] for r in rows])
    np.testing.assert_allclose(probs.sum(axis=1), 1, atol=1e-5)
    fc7 = np.load(tmp_path / "preds" / "test.fc7.npy")
    assert fc7.shape == (12, 4096) and fc7.dtype == np.float32
    import json

    metrics = json.loads((tmp_path / "e" / "eval_metrics.json").read_text())
    assert metrics["num_examples"] == 8 and metrics["video"]["num_videos"] == 4

    import pyarrow.parquet as pq

    parquet = tmp_path / "preds" / "test.parquet"
    assert (
        cli.main(
            [
                "evaluate",
                "--dataset",
                builder.data_dir,
                "--split",
                "test",
                "--out-dir",
                str(tmp_path / "e2"),
                "--predictions",
                str(parquet),
                "--fc7",
                "columns",
                "--no-progress",
            ]
        )
        == cli.EXIT_OK
    )
    read = pq.read_table(parquet)
    assert read.num_rows == 12 and "fc7_4095" in read.column_names and "video_id" in read.column_names
    np.testing.assert_allclose(read.column("Awe").to_numpy(), probs[:, 4], atol=1e-6)
    second = json.loads((tmp_path / "e2" / "eval_metrics.json").read_text())
    assert second["top1"] == pytest.approx(metrics["top1"])


def _unwritable_folder() -> str | None:
    """/proc (or /sys) where even root cannot create a file; None where this machine has neither."""
    for folder in ("/proc", "/sys"):
        if os.path.isdir(folder) and not cli._writable_folder(folder):
            return folder
    return None


def test_an_output_that_is_an_input_is_refused_before_anything_is_written(weights, files, tmp_path, capsys, loaded):
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(files["photo"].read_bytes())
    original = photo.read_bytes()
    usage_error(capsys, "predict", ["--csv", str(photo), str(photo)], "photo.jpg: --csv is an input")
    usage_error(capsys, "predict", ["--json", str(photo), str(tmp_path)], "photo.jpg: --json is an input")
    usage_error(capsys, "affect", ["--csv", str(photo), str(photo)], "--csv is an input")
    usage_error(capsys, "activations", ["--out", str(photo.with_suffix(".npy")), str(photo.with_suffix(".npy"))])
    sidecar = tmp_path / "x.rows.csv"
    sidecar.write_text("an input\n")
    usage_error(capsys, "activations", ["--out", str(tmp_path / "x.npy"), str(sidecar)], "rows sidecar is an input")
    assert sidecar.read_text() == "an input\n" and not (tmp_path / "x.npy").exists()
    same = str(tmp_path / "rows.csv")
    usage_error(capsys, "predict", ["--csv", same, "--json", same, str(photo)], "--json and --csv name the same file")
    usage_error(capsys, "predict", ["--weights", str(photo), "--csv", str(photo), str(files["photo"])], "is an input")
    usage_error(capsys, "convert", [weights, weights], "DST is an input")
    usage_error(capsys, "export", ["--weights", weights, "--out", str(tmp_path / "m"), "--keras", weights], "input")
    usage_error(
        capsys,
        "export",
        ["--out", str(tmp_path / "m"), "--keras", str(tmp_path / "t.keras"), "--tflite", str(tmp_path / "t.keras")],
        "name the same file",
    )
    assert photo.read_bytes() == original and not os.path.exists(same)


def test_unknown_flags_print_the_subcommands_usage(capsys, tmp_path):
    for argv, command, unknown in (
        (["predict", "--bogus", "x.jpg"], "predict", "--bogus"),
        (["export", "--out", str(tmp_path / "x"), "--bogus"], "export", "--bogus"),
        (["convert", "a", "b", "c"], "convert", "c"),
    ):
        with pytest.raises(SystemExit) as info:
            cli.main(argv)
        err = capsys.readouterr().err
        assert info.value.code == cli.EXIT_USAGE and f"usage: emonet {command}" in err, err
        assert "usage: emonet [-h] COMMAND" not in err
        assert f"emonet {command}: error: unrecognized arguments: {unknown}" in err, err


def test_run_out_file_and_non_finite_numbers_are_usage_errors(tmp_path, capsys):
    blocker = tmp_path / "afile"
    blocker.write_text("keep me")
    usage_error(capsys, "run", ["--out", str(blocker), "--no-progress"], "afile: --out is a file")
    assert blocker.read_text() == "keep me"
    usage_error(capsys, "run", ["--out", str(tmp_path / "r"), "--seconds", "inf"], "--seconds must give", "inf")
    assert not (tmp_path / "r").exists()
    for argv, message in ((["--alpha", "inf"], "--alpha must be"), (["--folds", "1"], "--folds must be at least 2")):
        with pytest.raises(SystemExit) as info:
            cli.main(["affect", "--fit", "r.csv", "--out", "o.json", *argv])
        err = capsys.readouterr().err
        assert info.value.code == cli.EXIT_USAGE and message in err and "usage: emonet affect" in err, err


def test_activations_sidecar_that_is_a_folder_is_refused_before_work(files, tmp_path, capsys, loaded):
    (tmp_path / "x.rows.csv").mkdir()
    usage_error(
        capsys, "activations", ["--out", str(tmp_path / "x.npy"), str(files["photo"])], "x.rows.csv", "is a folder"
    )
    assert not (tmp_path / "x.npy").exists()


def test_unwritable_outputs_are_usage_errors_naming_the_path(weights, files, tmp_path, capsys, monkeypatch):
    def no_model(args):
        raise AssertionError("the model was loaded before the output paths were checked")

    monkeypatch.setattr(cli, "load_emonet", no_model)
    folder = _unwritable_folder()
    if folder:
        photo = str(files["photo"])
        for command, argv, path in (
            ("predict", ["--csv", f"{folder}/out.csv", photo], f"{folder}/out.csv"),
            ("predict", ["--json", f"{folder}/out.json", photo], f"{folder}/out.json"),
            ("activations", ["--out", f"{folder}/a.npz", photo], f"{folder}/a.npz"),
            ("export", ["--out", f"{folder}/e0"], f"{folder}/e0"),
            ("convert", [weights, f"{folder}/o.keras"], f"{folder}/o.keras"),
        ):
            err = usage_error(capsys, command, argv, f"{path}: ", "cannot be written")
            assert ".partial" not in err
    from emonet_tf import weights as weights_module

    def refused(src, dst, **kwargs):
        partial = os.path.join(os.path.dirname(dst), ".o.partial.keras")
        raise PermissionError(13, "Permission denied", partial)

    monkeypatch.setattr(weights_module, "convert", refused)
    dst = str(tmp_path / "o.keras")
    err = usage_error(capsys, "convert", [weights, dst], f"{dst}: cannot be written (Permission denied)")
    assert ".partial" not in err


def test_export_into_a_non_empty_folder_needs_overwrite_and_replaces_it_cleanly(tmp_path, capsys, loaded, monkeypatch):
    out = tmp_path / "serving" / "1"
    out.mkdir(parents=True)
    (out / "old.txt").write_text("old export")
    usage_error(capsys, "export", ["--out", str(out)], f"{out}: --out exists and is not empty; use --overwrite")
    assert (out / "old.txt").read_text() == "old export"

    def failing(model, path, **kwargs):
        with open(os.path.join(path, "saved_model.pb"), "w") as f:
            f.write("half")
        raise RuntimeError("disk full")

    monkeypatch.setattr(export, "export_saved_model", failing)
    assert cli.main(["export", "--out", str(out), "--overwrite"]) == cli.EXIT_FAILED
    assert "disk full" in capsys.readouterr().err
    assert sorted(os.listdir(out)) == ["old.txt"] and os.listdir(out.parent) == ["1"]  # old intact, no leftovers

    def stub(model, path, **kwargs):
        with open(os.path.join(path, "saved_model.pb"), "w") as f:
            f.write("new")
        return f"SavedModel {path}: stub"

    monkeypatch.setattr(export, "export_saved_model", stub)
    assert cli.main(["export", "--out", str(out), "--overwrite"]) == cli.EXIT_OK
    assert f"SavedModel {out}: stub" in capsys.readouterr().out
    assert sorted(os.listdir(out)) == ["saved_model.pb"] and os.listdir(out.parent) == ["1"]


def test_affect_out_without_fit_is_a_usage_error(files, tmp_path, capsys, loaded):
    usage_error(
        capsys, "affect", ["--out", str(tmp_path / "z.json"), str(files["photo"])], "--out is only used with --fit"
    )
    assert not (tmp_path / "z.json").exists()


def test_affect_fit_outputs_that_are_inputs_are_refused(files, tmp_path, capsys, loaded):
    table = tmp_path / "ratings.csv"
    table.write_text(f"path,valence\n{files['photo']},5\n{files['clip']},3\n")
    original = table.read_text()
    usage_error(capsys, "affect", ["--fit", str(table), "--out", str(table)], "ratings.csv: --out is an input")
    usage_error(capsys, "affect", ["--fit", str(table), "--out", str(files["photo"])], "a.jpg: --out is an input")
    plots = tmp_path / "plots"
    plots.mkdir()
    same = str(plots / "valence_cv.png")
    usage_error(capsys, "affect", ["--fit", str(table), "--out", same, "--plot-dir", str(plots)], "name the same file")
    assert table.read_text() == original and not os.path.exists(same)
