"""`emonet extract` and `emonet_tf.extract`: the same values as `emonet activations`, locally and on Beam
RunInference (2 DirectRunner worker processes), a kill and a rerun equal to an uninterrupted run, damaged
videos and failed inputs as `emonet activations` treats them, and the command's usage errors.

Other inputs and outputs (ram://, file lists, TFDS splits, TFRecord, plan mismatch, frame ranges) are in
tests/test_extract_inputs.py; throughput and memory in bench/bench_extract.py.
"""

from __future__ import annotations

import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import cv2
import keras
import numpy as np
import pandas as pd
import pytest

from emonet_tf import EmoNetClassifier, cli, export, extract
from emonet_tf.inference import EmoNet
from tfds_builders import make_dummy_data as dummy

LAYERS = ["fc7", "fc8", "pool5"]


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> str:
    keras.utils.set_random_seed(5)
    path = str(tmp_path_factory.mktemp("weights") / "emonet.keras")
    export.export_keras(EmoNetClassifier(), path)
    return path


@pytest.fixture(scope="module")
def emonet(weights) -> EmoNet:
    return EmoNet.from_weights(weights)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> pathlib.Path:
    """3 photos, an unreadable "jpg", a healthy clip, a clip cut part-way (damaged) and an empty "mp4"."""
    root = tmp_path_factory.mktemp("corpus")
    rng = np.random.default_rng(7)
    for i, (h, w) in enumerate([(48, 64), (300, 200), (227, 227)]):
        cv2.imwrite(str(root / f"photo{i}.png"), rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
    (root / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    dummy.write_coded_video(root / "clips" / "good.mp4", 10.0, 23)
    dummy.write_truncated_avi(root / "clips" / "cut.avi", fps=10.0, n=20)
    dummy.write_corrupt(root / "clips" / "empty.mp4")
    return root


def _activations(emonet, corpus, tmp_path, layer, damaged="skip", monkeypatch=None):
    """`emonet activations` (the command, the module's model) -> the .npz arrays."""
    out = tmp_path / f"{layer}-{damaged}.npz"
    monkeypatch.setattr(cli, "load_emonet", lambda args: emonet)
    rc = cli.main(
        ["activations", str(corpus), "--layer", layer, "--out", str(out), "--damaged", damaged, "--no-progress"]
    )
    assert rc == 0
    return dict(np.load(out))


def _keyed(keys: pd.DataFrame) -> list[tuple]:
    return list(zip(keys.source, keys.frame_index))


def _compare(ex: extract.Extraction, acts: dict, layer: str) -> float:
    """Rows of `ex` and of the .npz matched by (source, frame): same set of rows; max |difference|."""
    keys = ex.keys()
    theirs = {(s, int(f)): i for i, (s, f) in enumerate(zip(acts["sources"], acts["frame_index"]))}
    assert sorted(theirs) == sorted((s, int(f)) for s, f in _keyed(keys))
    mine = ex.layer(layer).reshape(len(keys), -1)
    order = [theirs[(s, int(f))] for s, f in _keyed(keys)]
    reference = acts["activations"][order].reshape(len(keys), -1)
    ts = np.asarray(keys.timestamp_ms, np.float64)
    np.testing.assert_array_equal(np.isnan(ts), np.isnan(acts["timestamp_ms"][order]))
    np.testing.assert_array_equal(ts[~np.isnan(ts)], acts["timestamp_ms"][order][~np.isnan(ts)])
    return float(np.abs(mine - reference).max())


@pytest.fixture(scope="module")
def local_run(emonet, corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("local") / "features"
    return extract.extract([str(corpus)], str(out), emonet=emonet, layers=LAYERS, images_per_unit=2, batch_size=8)


def test_local_run_equals_emonet_activations(local_run, emonet, corpus, tmp_path, monkeypatch):
    for layer in LAYERS:
        acts = _activations(emonet, corpus, tmp_path, layer, monkeypatch=monkeypatch)
        diff = _compare(local_run, acts, layer)
        print(f"local run vs emonet activations, {layer}: max |difference| {diff:.3g}")
        # Measured (2026-12-01): fc7 6.7e-06, fc8 5.3e-06, pool5 3.8e-06: float32 noise; the same ops, with
        # rows batched per work unit here and across inputs in `emonet activations`.
        assert diff <= 1e-5, (layer, diff)
    softmax = _activations(emonet, corpus, tmp_path, "softmax", monkeypatch=monkeypatch)
    assert _compare(local_run, softmax, "probabilities") <= 1e-6
    np.testing.assert_allclose(local_run.layer("probabilities").sum(axis=1), 1.0, atol=1e-5)


def test_failed_and_damaged_inputs_as_emonet_activations_reports_them(local_run, corpus):
    errors = local_run.errors()
    failed = {os.path.basename(s): e for s, e in zip(errors.source, errors.error)}
    assert set(failed) == {"broken.jpg", "cut.avi", "empty.mp4"}
    assert "damaged video skipped" in failed["cut.avi"] and "--damaged keep" in failed["cut.avi"]
    assert all(str(corpus) in s for s in errors.source)
    m = local_run.manifest
    assert m["errors"] == 3 and m["damaged_videos"] == {}
    keys = local_run.keys()
    assert not keys.source.str.endswith("cut.avi").any()  # its rows read before the damage are dropped
    assert set(keys.status) == {"ok"}
    # 23 frames every5 -> 0, 5, 10, 15, 20; three photos with frame -1
    good = keys[keys.video_id == "good"]
    assert list(good.frame_index) == [0, 5, 10, 15, 20] and list(good.timestamp_ms) == [0, 500, 1000, 1500, 2000]
    assert (keys[keys.video_id == ""].frame_index == -1).all() and len(keys) == 8


def test_damaged_keep_marks_rows_like_emonet_activations(emonet, corpus, tmp_path, monkeypatch):
    ex = extract.extract([str(corpus)], str(tmp_path / "keep"), emonet=emonet, layers=["fc8"], damaged="keep")
    acts = _activations(emonet, corpus, tmp_path, "fc8", damaged="keep", monkeypatch=monkeypatch)
    assert _compare(ex, acts, "fc8") <= 1e-5
    keys = ex.keys()
    cut = keys.source.str.endswith("cut.avi")
    assert cut.sum() == acts["damaged"].sum() > 0
    assert set(keys.status[cut]) == {"damaged"} and set(keys.status[~cut]) == {"ok"}
    assert list(ex.manifest["damaged_videos"]) == [str(corpus / "clips" / "cut.avi")]


def test_manifest_records_preprocessing_weights_and_shapes(local_run, emonet):
    m = local_run.manifest
    assert m["preprocessing"] == emonet.preprocessor.get_config()
    assert m["output_shapes"] == {"fc7": [4096], "fc8": [20], "pool5": [6, 6, 256], "probabilities": [20]}
    assert m["class_names"] == list(emonet.class_names) and len(m["weights_fingerprint"]) == 16
    assert m["rows"] == sum(s["rows"] for s in m["shards"]) == 8
    assert local_run.layer("pool5").shape == (8, 6, 6, 256)
    table = pd.read_parquet(os.path.join(local_run.out_dir, "shards"))
    assert len(table) == 8 and list(table.columns[:4]) == ["source", "video_id", "frame_index", "timestamp_ms"]


def test_beam_run_inference_equals_local_run(local_run, emonet, corpus, tmp_path):
    """RunInference with Beam's TF model handler on 2 DirectRunner worker processes (multi_processing)."""
    ex = extract.extract(
        [str(corpus)], str(tmp_path / "beam"), emonet=emonet, layers=LAYERS, images_per_unit=2, batch_size=8,
        runner="beam", workers=2,
    )  # fmt: skip
    a, b = local_run.keys(), ex.keys()
    pd.testing.assert_frame_equal(a, b)
    for name in local_run.outputs:
        diff = float(np.abs(local_run.layer(name) - ex.layer(name)).max())
        print(f"Beam vs local run, {name}: max |difference| {diff:.3g}")
        # Measured (2026-12-01): fc7 7.6e-06, fc8 4.4e-06, pool5 3.8e-06, probabilities 4.5e-07: float32
        # noise (RunInference batches rows differently from the local loop).
        assert diff <= 1e-4 * max(1.0, float(np.abs(local_run.layer(name)).max())), (name, diff)
    assert ex.manifest["runner"].startswith("beam") and ex.manifest["errors"] == 3
    assert not os.path.exists(tmp_path / "beam" / ".model")


# ------------------------------------------------------------------------------------------------
# Kill and rerun


def _command(weights, corpus, out, runner="local") -> list[str]:
    return [
        sys.executable, "-m", "emonet_tf.cli", "extract", "--weights", weights, str(corpus), "--out", str(out),
        "--layers", "fc7,fc8", "--images-per-unit", "1", "--batch-size", "4", "--no-progress", "--runner", runner,
    ]  # fmt: skip


def _unit_files(out) -> dict[str, tuple]:
    """name -> (inode, mtime_ns) of every finished unit's shard and record."""
    found = {}
    for sub in ("shards", "units"):
        for path in sorted((out / sub).glob("part-*")):
            st = path.stat()
            found[f"{sub}/{path.name}"] = (st.st_ino, st.st_mtime_ns)
    return found


@pytest.fixture(scope="module")
def big_corpus(tmp_path_factory) -> pathlib.Path:
    """10 photos and 2 clips: 12 units of one input each, so a kill lands between finished units."""
    root = tmp_path_factory.mktemp("big")
    rng = np.random.default_rng(11)
    for i in range(10):
        cv2.imwrite(str(root / f"img{i:02d}.png"), rng.integers(0, 256, (120, 160, 3), dtype=np.uint8))
    dummy.write_coded_video(root / "v1.mp4", 10.0, 30)
    dummy.write_coded_video(root / "v2.mp4", 10.0, 30)
    return root


@pytest.mark.parametrize("runner", ["local", pytest.param("beam", marks=pytest.mark.slow)])
def test_kill_then_rerun_keeps_finished_shards_and_equals_an_uninterrupted_run(runner, weights, big_corpus, tmp_path):
    """SIGKILL once 4 units are done, rerun: finished units untouched, the result equals an uninterrupted run.

    On Beam (slow: about 4 min here) the killed driver's DirectRunner workers stop with it, and a rerun redoes
    the units that were in flight; the uninterrupted run to compare with is a local one (values to float32 noise).
    """
    out = tmp_path / "killed"
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.Popen(
        _command(weights, big_corpus, out, runner), env=env, stderr=subprocess.PIPE, stdout=subprocess.PIPE
    )
    deadline = time.time() + 300
    while time.time() < deadline and not (out / "units" / "part-00003.json").exists():
        assert proc.poll() is None, proc.communicate()[1].decode()[-2000:]
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    before = _unit_files(out)
    done = {k for k in before if k.startswith("units/")}
    assert 4 <= len(done) < 12, "the kill must land mid-run"
    assert not (out / "manifest.json").exists()
    with pytest.raises(extract.ExtractionError, match="no manifest.json"):
        extract.Extraction(str(out))

    rerun = subprocess.run(
        _command(weights, big_corpus, out, runner), env=env, capture_output=True, text=True, timeout=900
    )
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert f"({len(done)} units kept from an earlier run)" in rerun.stdout
    after = _unit_files(out)
    for name, stamp in before.items():
        unit = name.split("part-")[1][:5]
        if f"units/part-{unit}.json" in done:  # a finished unit: neither its shard nor its record is redone
            assert after[name] == stamp, f"{name} was rewritten"
    assert not [p for p in (out / "shards").iterdir() if p.name.startswith(".")], "a staging file was left"

    whole = tmp_path / "uninterrupted"
    clean = subprocess.run(_command(weights, big_corpus, whole), env=env, capture_output=True, text=True, timeout=600)
    assert clean.returncode == 0, clean.stderr[-2000:]
    a, b = extract.Extraction(str(out)), extract.Extraction(str(whole))
    pd.testing.assert_frame_equal(a.keys(), b.keys())
    for name in a.outputs:
        if runner == "local":
            np.testing.assert_array_equal(a.layer(name), b.layer(name))  # same batches per unit: bit for bit
        else:
            np.testing.assert_allclose(a.layer(name), b.layer(name), rtol=1e-4, atol=1e-4)
    assert json.loads((out / "manifest.json").read_text())["units_resumed"] == len(done)


# ------------------------------------------------------------------------------------------------
# The command's usage errors: exit 2 before the model loads


def _exit_status(argv) -> int:
    """`emonet` exit status: returned by main, or raised by argparse for what it checks itself."""
    try:
        return cli.main(argv)
    except SystemExit as exit:
        return exit.code


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--pipeline-options=--runner=DirectRunner"], "add --runner beam"),
        (["--workers", "0", "--runner", "beam"], "at least 1"),
        (["--layers", "fc9"], "Unknown layer 'fc9'"),
        (["--sampling", "every0"], "every_n must be a positive integer"),
        (["--tfds", "tfds:nope:train", "--data-dir", "{tmp}"], "tfds:nope:train: not a prepared TFDS split"),
    ],
)
def test_usage_errors_exit_2(extra, message, emonet, corpus, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(cli, "load_emonet", lambda args: emonet)
    argv = ["extract", "--out", str(tmp_path / "o")] + [e.replace("{tmp}", str(tmp_path)) for e in extra]
    if "--tfds" not in extra:
        argv.append(str(corpus))
    assert _exit_status(argv) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "o" / "shards").exists()


def test_out_that_is_a_file_or_an_input_is_refused(emonet, corpus, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(cli, "load_emonet", lambda args: emonet)
    target = tmp_path / "file.txt"
    target.write_text("keep me")
    assert cli.main(["extract", str(corpus), "--out", str(target)]) == 2
    assert "is a file" in capsys.readouterr().err and target.read_text() == "keep me"
    assert cli.main(["extract", "--out", str(tmp_path / "x")]) == 2
    assert "nothing to extract" in capsys.readouterr().err


def test_outputs_feed_the_brain_analyses_directly(local_run):
    """A video's fc8 rows and timestamps -> `emonet_tf.brain.timing.stimulus_regressors` (TR grid + HRF)."""
    from emonet_tf.brain import timing

    keys = local_run.keys()
    clip = (keys.video_id == "good").to_numpy()
    fc8, seconds = local_run.layer("fc8")[clip], keys.timestamp_ms[clip].to_numpy() / 1000.0
    grid = timing.frames_to_tr_grid(fc8, seconds, n_scans=3, tr_s=1.0)
    np.testing.assert_allclose(grid[0], fc8[:2].mean(axis=0), rtol=1e-6)  # frames at 0 and 0.5 s
    np.testing.assert_allclose(grid[2], fc8[4], rtol=1e-6)  # the frame at 2.0 s
    regressors = timing.stimulus_regressors(fc8, seconds, n_scans=10, tr_s=1.0)
    assert regressors.shape == (10, 20) and np.isfinite(regressors).all()


def test_prefetch_keeps_order_raises_the_readers_error_and_stops_when_closed():
    from emonet_tf.extract.local import prefetch

    assert list(prefetch(iter(range(500)), 3)) == list(range(500))

    def broken():
        yield 1
        raise ValueError("the reader's error")

    with pytest.raises(ValueError, match="the reader's error"):
        list(prefetch(broken(), 2))
    endless = prefetch(iter(range(10**12)), 2)
    assert next(endless) == 0
    started = time.perf_counter()
    endless.close()  # the consumer stops (an error, Ctrl-C): the reading thread must not hang the process
    assert time.perf_counter() - started < 2.0


def test_another_extraction_in_out_is_refused_without_burying_the_reason(emonet, corpus, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(cli, "load_emonet", lambda args: emonet)
    out = str(tmp_path / "features")
    assert cli.main(["extract", str(corpus / "photo0.png"), "--out", out, "--layers", "fc8", "--no-progress"]) == 0
    capsys.readouterr()
    assert cli.main(["extract", str(corpus / "photo0.png"), "--out", out, "--layers", "fc7", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "holds an extraction with other layers" in err and "--overwrite" in err
    assert "usage:" not in err  # a problem with the folder, not with the command line


def test_ctrl_c_keeps_finished_units_says_so_and_exits_130(emonet, big_corpus, tmp_path, monkeypatch, capsys):
    from emonet_tf.extract import local

    monkeypatch.setattr(cli, "load_emonet", lambda args: emonet)
    real, calls = local.run_unit, []

    def interrupted_after_two(unit, *args, **kwargs):
        calls.append(unit.index)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(unit, *args, **kwargs)

    monkeypatch.setattr(local, "run_unit", interrupted_after_two)
    out = tmp_path / "features"
    argv = ["extract", str(big_corpus), "--out", str(out), "--images-per-unit", "4", "--no-progress"]
    assert cli.main(argv) == cli.EXIT_INTERRUPTED == 130
    err = capsys.readouterr().err
    assert "interrupted; 2 of 5 units are done and kept" in err and "run the same command again" in err
    assert "Traceback" not in err
    assert not (out / ".scratch").exists() and not (out / "manifest.json").exists()
    monkeypatch.setattr(local, "run_unit", real)
    assert cli.main(argv) == 0
    assert "(2 units kept from an earlier run)" in capsys.readouterr().out
