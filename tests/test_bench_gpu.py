"""bench/gpu.sh --toy: the accelerator check runs on CPU at toy size and writes sane JSON.

On the device machine the same script measures inference and a full training step with mixed precision
and XLA against the card's FLOP limit, and the fc7 cache build (bench/README.md). Here it checks that
the script, the FLOP accounting and the JSON work without a GPU: CPU time about a minute on 2 cores.
"""

import json
import math
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "bench"))
import bench_gpu  # noqa: E402


def test_forward_flops_of_alexnet():
    """720.3 M multiply-adds per 227x227 image (grouped conv2/4/5 and the 20-way fc8)."""
    assert bench_gpu.forward_flops() == pytest.approx(1.4406e9, rel=1e-3)


@pytest.mark.parametrize(
    "name, entry",
    [
        ("NVIDIA H200", "H200"),
        ("NVIDIA GH200 480GB", "GH200"),
        ("NVIDIA H100 PCIe", "H100 PCIe"),
        ("NVIDIA H100 80GB HBM3", "H100"),
        ("NVIDIA A100-SXM4-40GB", "A100"),
        ("NVIDIA A10G", "A10G"),
        ("NVIDIA L4", "L4"),
        ("Tesla T4", "T4"),
        ("Some Future GPU", None),
    ],
)
def test_peak_table_lookup(name, entry):
    found = bench_gpu.peak_for(name)
    assert (found and found[0]) == entry
    if found:
        assert found[1]["float16"] > found[1]["float32"] > 0


def test_gpu_sh_toy_writes_its_json(tmp_path):
    out = tmp_path / "gpu_toy.json"
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="", TF_CPP_MIN_LOG_LEVEL="2", PYTHON=sys.executable)
    proc = subprocess.run(
        ["bash", os.path.join(ROOT, "bench", "gpu.sh"), "--toy", "--out", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "| inference (batch 2) |" in proc.stdout
    d = json.loads(out.read_text())
    assert d["toy"] is True and d["batch"] == 2 and d["xla"] is True
    assert d["policy"] == "mixed_float16" and d["compute_dtype"] == "float16"
    assert d["device"]["kind"] == "cpu"
    assert d["flop_limit_source"].startswith("measured float32 matmul")
    assert d["flop_limit_tflops"] == d["measured_matmul_tflops"]["float32"] > 0
    assert d["forward_gflop_per_image"] == pytest.approx(1.4406, rel=1e-3)
    assert d["train_step_gflop_per_image"] == pytest.approx(3 * d["forward_gflop_per_image"])
    for key, gflop in (("inference", 1.4406), ("train_step_full", 3 * 1.4406)):
        r = d["results"][key]
        assert r["images_per_second"] > 0 and r["first_call_seconds"] > 0
        assert r["tflops"] == pytest.approx(r["images_per_second"] * gflop / 1e3, rel=1e-3)
        assert r["fraction_of_peak"] == pytest.approx(r["tflops"] / d["flop_limit_tflops"])
        assert 0 < r["fraction_of_peak"] < 100  # measured on a shared CPU: loose bounds
    assert math.isfinite(d["results"]["train_step_full"]["loss"])
    cache = d["results"]["fc7_cache"]
    # 4 categories x 2 clips of 1 s at 15 fps, every5: 3 frames per clip; 1 clip per category held out.
    assert cache["records"] == 12 and cache["features_finite"] is True
    assert cache["images_per_second"] == pytest.approx(cache["records"] / cache["seconds"])
    assert d["machine"]["cores"] >= 1 and "bench_gpu.py" in d["command"]
