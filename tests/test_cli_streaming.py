"""Heavier checks behind the CLI: video memory stays flat, the image pool gives the same answers, export --tflite.

Run with `pytest -m slow tests/test_cli_streaming.py -s` (prints the measured numbers).
"""

from __future__ import annotations

import time
import tracemalloc

import cv2
import keras
import numpy as np
import pytest

from emonet_tf import EmoNet, EmoNetClassifier, preprocessing

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def emonet():
    keras.utils.set_random_seed(31)
    return EmoNet(EmoNetClassifier())


def _write_video(path, frames: int, fps: float = 30.0, size=(96, 72)) -> str:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
    rng = np.random.default_rng(0)
    base = rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    for i in range(frames):
        writer.write(np.roll(base, i, axis=1))
    writer.release()
    return str(path)


def _peak_traced(emonet, path) -> tuple[int, int]:
    """(frames predicted, peak Python/numpy memory in bytes) while streaming the predictions of a video."""
    count = 0
    tracemalloc.start()
    try:
        for _ in emonet.iter_predict_video(path, "every5", batch_size=16):
            count += 1
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return count, peak


def test_video_memory_does_not_grow_with_length(emonet, tmp_path):
    short = _write_video(tmp_path / "short.mp4", 160)
    long = _write_video(tmp_path / "long.mp4", 1600)
    _peak_traced(emonet, short)  # warm-up: tracing and lazy imports allocate once
    start = time.perf_counter()
    n_short, peak_short = _peak_traced(emonet, short)
    n_long, peak_long = _peak_traced(emonet, long)
    seconds = time.perf_counter() - start
    print(
        f"\nstreamed {n_short} and {n_long} sampled frames: peak traced memory {peak_short / 2**20:.1f} MiB "
        f"vs {peak_long / 2**20:.1f} MiB ({seconds:.1f} s)"
    )
    assert (n_short, n_long) == (32, 320)
    # Ten times the frames; the peak is one batch of decoded and preprocessed frames either way.
    assert peak_long < 1.25 * peak_short + 2**20, (peak_short, peak_long)


def test_thread_pool_path_equals_sequential_and_report_throughput(emonet, tmp_path, photos):
    paths = []
    for i in range(64):
        image = cv2.resize(np.roll(photos["hopper"], 9 * i, axis=1), (640, 480))
        paths.append(str(tmp_path / f"{i}.jpg"))
        cv2.imwrite(paths[-1], cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    emonet.predict_images(paths[:4])  # warm-up

    start = time.perf_counter()
    images = np.stack([preprocessing.load_image(p) for p in paths])
    sequential = np.concatenate([emonet.predict_arrays(images[s : s + 32]) for s in range(0, 64, 32)])
    t_seq = time.perf_counter() - start
    rates = {}
    for workers in (1, 2, 4):
        start = time.perf_counter()
        pooled = list(emonet.iter_predict_images(paths, batch_size=32, workers=workers))
        rates[workers] = 64 / (time.perf_counter() - start)
        np.testing.assert_allclose(np.stack([p.probabilities for p in pooled]), sequential, atol=1e-5)
    print(
        f"\n64 images 640x480 JPEG, MATLAB resize: sequential {64 / t_seq:.1f} images/s; thread pool "
        + ", ".join(f"{w} worker(s) {r:.1f} images/s" for w, r in rates.items())
    )


def test_export_command_with_tflite(emonet, tmp_path, capsys):
    """The CLI's --tflite path: converted, checked on the synthetic image, and equal to the Keras model."""
    from emonet_tf import cli, export

    weights = tmp_path / "w.keras"
    export.export_keras(emonet.model, str(weights))
    out = tmp_path / "serving" / "1"
    assert cli.main(["export", "--weights", str(weights), "--out", str(out), "--tflite"]) == cli.EXIT_OK
    printed = capsys.readouterr().out
    assert f"TFLite {out}.tflite" in printed and "max |TFLite - TF| probability difference" in printed
    image = np.random.default_rng(0).uniform(0, 255, (1, 227, 227, 3)).astype(np.float32)
    got = export.tflite_predict(f"{out}.tflite", image)["probabilities"]
    np.testing.assert_allclose(got, emonet.predict_arrays(image), atol=1e-4)
