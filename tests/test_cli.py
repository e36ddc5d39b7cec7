"""The `emonet` command on generated images and videos: every subcommand, every output format, bad input."""

from __future__ import annotations

import csv
import json
import os
import pathlib
import shutil
import subprocess
import sys
import time

import cv2
import keras
import numpy as np
import pytest

from emonet_tf import EMONET_CATEGORIES, EmoNet, EmoNetClassifier, affect, cli, export, plots, preprocessing, video

REPO = pathlib.Path(__file__).resolve().parents[1]


def write_video(path, photo: np.ndarray, frames: int = 12, fps: float = 12.0, size=(64, 48)) -> pathlib.Path:
    """A tiny mp4v clip of a photo panning sideways, so that frames differ."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
    assert writer.isOpened()
    for i in range(frames):
        frame = cv2.resize(np.roll(photo, 25 * i, axis=1), size, interpolation=cv2.INTER_AREA)
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()
    return pathlib.Path(path)


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> str:
    """One small random-init model saved once as .keras, for --weights."""
    keras.utils.set_random_seed(21)
    model = EmoNetClassifier()
    model.head.kernel.assign(model.head.kernel.numpy() * 3)  # peaked outputs: a meaningful top-3
    path = str(tmp_path_factory.mktemp("weights") / "emonet.keras")
    start = time.perf_counter()
    export.export_keras(model, path)
    print(f"\nbuilt and saved the test model in {time.perf_counter() - start:.1f} s")
    return path


@pytest.fixture(scope="module")
def emonet(weights) -> EmoNet:
    """The reference: the same file loaded through the library API."""
    return EmoNet.from_weights(weights)


@pytest.fixture(scope="module")
def media(tmp_path_factory, photos) -> dict[str, pathlib.Path]:
    """A folder of good and bad images and videos (nested), and a file type the folder walk must ignore."""
    root = tmp_path_factory.mktemp("media")
    (root / "nested").mkdir()
    files = {"folder": root}
    files["photo_jpg"] = root / "a_hopper.jpg"
    cv2.imwrite(str(files["photo_jpg"]), cv2.cvtColor(photos["hopper"], cv2.COLOR_RGB2BGR))
    files["photo_png"] = root / "b_pack.png"
    cv2.imwrite(str(files["photo_png"]), cv2.cvtColor(photos["pack_crop"], cv2.COLOR_RGB2BGR))
    files["clip"] = write_video(root / "c_clip.mp4", photos["hopper_wide"])
    files["broken"] = root / "nested" / "broken.jpg"
    files["broken"].write_bytes(b"\xff\xd8\xff\xe0 this is not really a JPEG")
    files["empty_video"] = root / "nested" / "empty.mp4"
    files["empty_video"].write_bytes(b"")
    files["corrupt_video"] = root / "nested" / "corrupt.avi"
    files["corrupt_video"].write_bytes(b"RIFF\x10\x00\x00\x00AVI LIST" + bytes(300))
    files["face_png"] = root / "nested" / "d_face.png"
    cv2.imwrite(str(files["face_png"]), cv2.cvtColor(photos["hopper_face"], cv2.COLOR_RGB2BGR))
    (root / "notes.txt").write_text("not an image, and not picked up from a folder")
    return files


def read_csv(path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def probabilities_of(row: dict) -> np.ndarray:
    return np.array([float(row[c]) for c in EMONET_CATEGORIES])


def test_predict_folder_table_csv_json_plot_and_bad_files(weights, emonet, media, tmp_path, capsys):
    out_csv, out_json, plot_dir = tmp_path / "p.csv", tmp_path / "p.json", tmp_path / "plots"
    rc = cli.main(
        [
            "predict",
            "--weights",
            weights,
            str(media["folder"]),
            "--csv",
            str(out_csv),
            "--json",
            str(out_json),
            "--plot-dir",
            str(plot_dir),
        ]
    )
    captured = capsys.readouterr()
    assert rc == cli.EXIT_OK
    # The terminal table: one line per file with its top 3; every bad file named on stderr.
    for key in ("photo_jpg", "photo_png", "face_png", "clip"):
        line = next(l for l in captured.out.splitlines() if media[key].name in l)
        expected = emonet.predict_images([media[key]])[0] if key != "clip" else emonet.predict_video(media[key])
        for name, _ in expected.top_k(3):
            assert name in line, (line, expected.top_k(3))
    for key in ("broken", "empty_video", "corrupt_video"):
        assert str(media[key]) in captured.err
    assert "4 predicted, 3 failed" in captured.err
    assert "notes.txt" not in captured.out + captured.err

    rows = read_csv(out_csv)
    by_source: dict[str, list[dict]] = {}
    for row in rows:
        by_source.setdefault(row["source"], []).append(row)
    assert len(by_source) == 7
    # Images: one row, all 20 probabilities, equal to the library's.
    for key in ("photo_jpg", "photo_png", "face_png"):
        (row,) = by_source[str(media[key])]
        assert row["kind"] == "image" and row["error"] == ""
        np.testing.assert_allclose(
            probabilities_of(row), emonet.predict_images([media[key]])[0].probabilities, atol=1e-5
        )
    # The video: every 5th frame of 12 (0, 5, 10) with its time at 12 fps, then the mean row.
    frames = [r for r in by_source[str(media["clip"])] if r["kind"] == "frame"]
    (mean_row,) = [r for r in by_source[str(media["clip"])] if r["kind"] == "video_mean"]
    assert [int(r["frame_index"]) for r in frames] == [0, 5, 10]
    np.testing.assert_allclose([float(r["timestamp_ms"]) for r in frames], [0.0, 416.667, 833.333], atol=1e-3)
    reference = emonet.predict_video(media["clip"], "every5")
    np.testing.assert_allclose(
        [probabilities_of(r) for r in frames], [f.probabilities for f in reference.frames], atol=1e-5
    )
    np.testing.assert_allclose(probabilities_of(mean_row), reference.mean_probabilities, atol=1e-5)
    assert mean_row["n_frames"] == "3" and mean_row["top1"] == reference.top_k(1)[0][0]
    # Bad files: a row each, with the file named in the error column and no probabilities.
    for key, words in (("broken", "decode"), ("empty_video", "empty"), ("corrupt_video", "")):
        (row,) = by_source[str(media[key])]
        assert str(media[key]) in row["error"] and words in row["error"] and row["Awe"] == ""

    doc = json.loads(out_json.read_text())
    assert doc["class_names"] == list(EMONET_CATEGORIES) and doc["sampling"] == "every5"
    assert len(doc["rows"]) == len(rows)
    for from_json, from_csv in zip(doc["rows"], rows):
        assert from_json["source"] == from_csv["source"] and from_json["kind"] == from_csv["kind"]
        if from_json["error"] is None:
            np.testing.assert_allclose(probabilities_of(from_json), probabilities_of(from_csv), rtol=1e-12)

    (plot,) = list(plot_dir.iterdir())
    assert plot.name == "c_clip_emotions.png" and plots.is_png(str(plot))
    import matplotlib.image

    assert matplotlib.image.imread(str(plot)).shape[:2] == (450, 1100)


def test_predict_video_sampling_options(weights, media, tmp_path, capsys):
    for sampling in ("all", "fps10"):
        out = tmp_path / f"{sampling}.csv"
        assert (
            cli.main(["predict", "--weights", weights, str(media["clip"]), "--sampling", sampling, "--csv", str(out)])
            == cli.EXIT_OK
        )
        frames = [int(r["frame_index"]) for r in read_csv(out) if r["kind"] == "frame"]
        expected = [f.index for f in video.iter_frames(str(media["clip"]), video.FrameSampling.parse(sampling))]
        assert frames == expected
        assert len(frames) == (12 if sampling == "all" else len(expected))
    with pytest.raises(SystemExit) as info:
        cli.main(["predict", "--weights", weights, str(media["clip"]), "--sampling", "sometimes"])
    assert info.value.code == cli.EXIT_USAGE and "sometimes" in capsys.readouterr().err


def test_exit_status_when_nothing_or_no_model(weights, media, tmp_path, capsys, monkeypatch):
    rc = cli.main(
        [
            "predict",
            "--weights",
            weights,
            str(media["broken"]),
            str(media["empty_video"]),
            str(tmp_path / "missing.jpg"),
            "--csv",
            str(tmp_path / "none.csv"),
        ]
    )
    err = capsys.readouterr().err
    assert rc == cli.EXIT_NOTHING_PROCESSED
    assert "missing.jpg" in err and "broken.jpg" in err and "0 predicted, 3 failed" in err
    assert [r["error"] != "" for r in read_csv(tmp_path / "none.csv")] == [True, True, True]
    empty_dir = tmp_path / "empty_dir"
    empty_dir.mkdir()
    assert cli.main(["predict", "--weights", weights, str(empty_dir)]) == cli.EXIT_NOTHING_PROCESSED
    assert "no image or video files" in capsys.readouterr().err
    assert cli.main(["predict", "--weights", str(tmp_path / "nope.keras"), str(media["photo_jpg"])]) == cli.EXIT_USAGE
    assert "nope.keras" in capsys.readouterr().err
    monkeypatch.delenv("EMONET_WEIGHTS", raising=False)
    assert cli.main(["predict", str(media["photo_jpg"])]) == cli.EXIT_USAGE
    assert "--weights" in capsys.readouterr().err
    monkeypatch.setenv("EMONET_WEIGHTS", weights)  # the documented fallback
    assert cli.main(["predict", str(media["photo_jpg"])]) == cli.EXIT_OK


def test_activations_npy_and_npz(weights, emonet, media, tmp_path, capsys):
    inputs = [str(media["photo_jpg"]), str(media["clip"]), str(media["broken"]), str(media["face_png"])]
    npy, npz = tmp_path / "conv5.npy", tmp_path / "fc8.npz"
    assert cli.main(["activations", "--weights", weights, "--layer", "conv5", *inputs, "--out", str(npy)]) == 0
    assert "broken.jpg" in capsys.readouterr().err
    conv5 = np.load(npy)
    assert conv5.shape == (5, 13, 13, 256)  # 2 images + frames 0, 5, 10 of the clip
    image = preprocessing.load_image(media["photo_jpg"])
    np.testing.assert_allclose(conv5[0], emonet.activations(image[None], "conv5")[0], atol=1e-4)

    assert (
        cli.main(
            ["activations", "--weights", weights, "--layer", "fc8", *inputs, "--out", str(npz), "--sampling", "all"]
        )
        == 0
    )
    with np.load(npz) as z:
        assert z["activations"].shape == (14, 20) and str(z["layer"]) == "fc8"
        assert list(z["sources"]) == [inputs[0]] + [inputs[1]] * 12 + [inputs[3]]
        assert list(z["frame_index"]) == [-1] + list(range(12)) + [-1]
        np.testing.assert_allclose(z["timestamp_ms"][1:13], np.arange(12) * 1000 / 12, atol=1e-5)
        assert np.isnan(z["timestamp_ms"][0]) and len(z["errors"]) == 1 and "broken.jpg" in z["errors"][0]
        np.testing.assert_allclose(z["activations"][0], emonet.predict_images([inputs[0]])[0].logits, atol=1e-4)
    assert cli.main(["activations", "--weights", weights, "--layer", "conv9", inputs[0], "--out", str(npy)]) == 2
    assert "Unknown layer 'conv9'" in capsys.readouterr().err
    assert cli.main(["activations", "--weights", weights, inputs[0], "--out", str(tmp_path / "x.txt")]) == 2


def test_affect_with_shipped_and_fitted_coefficients(weights, emonet, media, photos, tmp_path, capsys):
    out = tmp_path / "affect.csv"
    assert (
        cli.main(
            [
                "affect",
                "--weights",
                weights,
                str(media["photo_jpg"]),
                str(media["clip"]),
                str(media["broken"]),
                "--csv",
                str(out),
            ]
        )
        == cli.EXIT_OK
    )
    rows = read_csv(out)
    logits = emonet.predict_images([media["photo_jpg"]])[0].logits.astype(np.float64)
    bias, w = affect.EMONET_PY_VALENCE_BIAS, np.array(affect.EMONET_PY_VALENCE_WEIGHTS)
    assert float(rows[0]["valence"]) == pytest.approx(bias + logits @ w, abs=1e-4)
    bias, w = affect.EMONET_PY_AROUSAL_BIAS, np.array(affect.EMONET_PY_AROUSAL_WEIGHTS)
    assert float(rows[0]["arousal"]) == pytest.approx(bias + logits @ w, abs=1e-4)
    video_rows = [r for r in rows if r["source"] == str(media["clip"])]
    assert [r["kind"] for r in video_rows] == ["frame"] * 3 + ["video_mean"]
    assert float(video_rows[-1]["valence"]) == pytest.approx(
        np.mean([float(r["valence"]) for r in video_rows[:3]]), abs=1e-9
    )
    assert "broken.jpg" in rows[-1]["error"] and "broken.jpg" in capsys.readouterr().err

    # Fit read-outs from a ratings table (file names relative to the table; one unreadable file left out).
    rated = tmp_path / "rated"
    rated.mkdir()
    rng = np.random.default_rng(0)
    names = []
    for i in range(10):
        crop = photos["hopper"][rng.integers(0, 200) :, rng.integers(0, 200) :]
        names.append(f"img{i}.png")
        cv2.imwrite(str(rated / names[-1]), cv2.cvtColor(np.ascontiguousarray(crop), cv2.COLOR_RGB2BGR))
    shutil.copy(media["broken"], rated / "broken.jpg")
    table = rated / "ratings.csv"
    values = rng.uniform(1, 9, size=(11, 2))
    lines = [f"{n},{v:.3f},{a:.3f}\n" for n, (v, a) in zip(names + ["broken.jpg"], values)]
    lines[0] = f"{names[0]},{values[0, 0]:.3f},\n"  # a missing arousal rating: left out of that fit only
    table.write_text("Filename,valence,arousal\n" + "".join(lines))
    coef, plot_dir = tmp_path / "coef.json", tmp_path / "fit_plots"
    assert (
        cli.main(
            [
                "affect",
                "--weights",
                weights,
                "--fit",
                str(table),
                "--out",
                str(coef),
                "--folds",
                "5",
                "--plot-dir",
                str(plot_dir),
            ]
        )
        == cli.EXIT_OK
    )
    printed = capsys.readouterr()
    assert "valence:" in printed.out and "5-fold CV r =" in printed.out and "broken.jpg" in printed.err
    assert "1 file(s) without a arousal rating" in printed.err
    doc = json.loads(coef.read_text())
    assert set(doc["readouts"]) == {"valence", "arousal"} and doc["left_out"] == [str(rated / "broken.jpg")]
    assert doc["readouts"]["valence"]["cv"]["folds"] == 5 and doc["readouts"]["valence"]["cv"]["n"] == 10
    assert doc["readouts"]["arousal"]["cv"]["n"] == 9
    assert all(plots.is_png(str(plot_dir / f"{t}_cv.png")) for t in ("valence", "arousal"))
    # The file works with --coefficients and gives bias + logits . weights.
    out2 = tmp_path / "affect2.json"
    assert (
        cli.main(
            ["affect", "--weights", weights, "--coefficients", str(coef), str(media["photo_jpg"]), "--json", str(out2)]
        )
        == cli.EXIT_OK
    )
    readouts = affect.load_readouts(str(coef))
    row = json.loads(out2.read_text())["rows"][0]
    assert row["valence"] == pytest.approx(float(readouts["valence"].predict(logits)), abs=1e-4)
    assert cli.main(["affect", "--weights", weights, "--fit", str(table)]) == cli.EXIT_USAGE  # no --out


def test_evaluate_labelled_folder(weights, emonet, media, tmp_path, capsys):
    root = tmp_path / "labelled"
    for label, files in (
        ("Awe", ["photo_jpg", "clip"]),
        ("sexual_desire", ["photo_png"]),
        ("Empathetic Pain", ["face_png", "broken"]),
        ("Nostalgia", ["photo_jpg"]),
    ):
        (root / label).mkdir(parents=True)
        for key in files:
            shutil.copy(media[key], root / label / media[key].name)
    out_dir = tmp_path / "eval"
    assert cli.main(["evaluate", "--weights", weights, "--folder", str(root), "--out_dir", str(out_dir)]) == 0
    captured = capsys.readouterr()
    assert "'Nostalgia' is not one of the model's categories" in captured.err and "broken.jpg" in captured.err
    metrics = json.loads((out_dir / "eval_metrics.json").read_text())
    # Frame level: 1 image + 3 clip frames (Awe), 1 (Sexual Desire), 1 (Empathic Pain).
    assert metrics["num_examples"] == 6 and metrics["video"]["num_videos"] == 4
    labels = [4, 4, 4, 4, 18, 9]
    preds = [
        emonet.predict_images([media["photo_jpg"]])[0].probabilities,
        *[f.probabilities for f in emonet.predict_video(media["clip"]).frames],
        emonet.predict_images([media["photo_png"]])[0].probabilities,
        emonet.predict_images([media["face_png"]])[0].probabilities,
    ]
    expected_top1 = float(np.mean(np.argmax(preds, axis=1) == labels))
    assert metrics["top1"] == pytest.approx(expected_top1)
    assert metrics["support"][4] == 4 and metrics["support"][18] == 1 and metrics["support"][9] == 1
    for name in ("eval_confusion.png", "eval_auc.png"):
        assert plots.is_png(str(out_dir / name))
    assert cli.main(["evaluate", "--weights", weights, "--out_dir", str(out_dir)]) == cli.EXIT_USAGE


def test_evaluate_tfds_split(weights, emonet, tmp_path, capsys):
    from _training_helpers import make_dataset

    builder = make_dataset(
        str(tmp_path / "tfds"),
        name="cli_frames",
        videos_per_class=(1, 2),
        frames_per_video=2,
        class_names=["Awe", "sexual_desire", "Nostalgia"],
    )
    out_dir = tmp_path / "eval"
    assert (
        cli.main(
            [
                "evaluate",
                "--weights",
                weights,
                "--dataset",
                builder.data_dir,
                "--split",
                "test",
                "--out_dir",
                str(out_dir),
            ]
        )
        == cli.EXIT_OK
    )
    captured = capsys.readouterr()
    assert "4 examples with labels the model does not predict were left out (Nostalgia)" in captured.err
    assert "top1" in captured.out and "paper" in captured.out
    metrics = json.loads((out_dir / "eval_metrics.json").read_text())
    assert metrics["num_examples"] == 8 and metrics["video"]["num_videos"] == 4
    assert metrics["support"][4] == 4 and metrics["support"][18] == 4
    assert (
        cli.main(
            ["evaluate", "--weights", weights, "--dataset", str(tmp_path / "nothing_here"), "--out_dir", str(out_dir)]
        )
        == cli.EXIT_USAGE
    )


def test_convert_and_export(weights, emonet, media, tmp_path, capsys):
    converted = tmp_path / "converted.keras"
    assert cli.main(["convert", weights, str(converted)]) == cli.EXIT_OK
    assert f"written: {converted}" in capsys.readouterr().out
    bogus = tmp_path / "bogus.pth"
    bogus.write_bytes(b"not a weight file")
    assert cli.main(["convert", str(bogus), str(tmp_path / "x.keras")]) == cli.EXIT_USAGE
    assert "bogus.pth" in capsys.readouterr().err

    out = tmp_path / "serving" / "1"
    assert (
        cli.main(["export", "--weights", str(converted), "--out", str(out), "--keras", "--resize-method", "matlab"])
        == cli.EXIT_OK
    )
    printed = capsys.readouterr().out
    assert "serving_default" in printed and f"Keras model {out}.keras" in printed
    import tensorflow as tf

    served = tf.saved_model.load(str(out)).signatures["serving_default"](
        images_bytes=tf.constant([media["photo_jpg"].read_bytes()])
    )
    np.testing.assert_allclose(
        served["probabilities"].numpy()[0], emonet.predict_images([media["photo_jpg"]])[0].probabilities, atol=1e-5
    )
    assert EmoNet.from_weights(f"{out}.keras").class_names == tuple(EMONET_CATEGORIES)


def test_python_dash_m_runs_the_cli(weights, media, tmp_path):
    out = tmp_path / "p.json"
    env = dict(
        os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""), TF_CPP_MIN_LOG_LEVEL="2"
    )
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "emonet_tf.cli",
            "predict",
            "--weights",
            weights,
            str(media["photo_png"]),
            str(media["broken"]),
            "--json",
            str(out),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        cwd=str(tmp_path),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "b_pack.png" in proc.stdout and "broken.jpg" in proc.stderr
    rows = json.loads(out.read_text())["rows"]
    assert [r["error"] is None for r in rows] == [True, False]
    proc = subprocess.run(
        [sys.executable, "-m", "emonet_tf.cli", "--help"], capture_output=True, text=True, env=env, timeout=300
    )
    assert proc.returncode == 0 and all(
        c in proc.stdout for c in ("predict", "evaluate", "convert", "export", "affect", "activations")
    )
