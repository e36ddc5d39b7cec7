"""Accelerator check: inference and a full training step with mixed precision and XLA, as a fraction of the
device's FLOP limit, and the fc7 feature-cache build. Run by `bench/gpu.sh`.

    python bench/bench_gpu.py [--toy] [--batch 256] [--seconds 10] [--policy mixed_float16]
                              [--out bench/results/gpu.json]

* Inference: `EmoNetClassifier` (logits) on a constant batch of 227x227x3 images already on the device,
  built under `keras.mixed_precision.set_global_policy(policy)`, called through
  `tf.function(jit_compile=True)` (XLA). Images/s over at least `--seconds` (best of 3 windows).
* Training step: every layer trained (full fine-tune: the heaviest step), the library's own step
  (`emonet_tf.training.loop.replica_step` on a `create_train_state` SGD momentum 0.9, lr 1e-4 state,
  loss-scaled under mixed_float16), compiled with `jit_compile=True`.
* FLOPs: AlexNet as EmoNet runs it (grouped conv2/4/5) does 720.3 M multiply-adds per 227x227 image
  (`forward_flops`, from the layer shapes), i.e. 1.44 GFLOP forward; a training step is counted as 3x
  the forward (forward, gradients of the activations and of the weights).
* FLOP limit: on a GPU, the vendor's dense (no sparsity) peak for the policy's compute type, from
  `PEAK_TFLOPS` by the device name (nvidia-smi, else TensorFlow's device details); unknown cards get
  no fraction. On CPU, a float32 matmul (sgemm) measured in the same run is the reference (on CPU,
  float16 is emulated, so expect a tiny fraction under mixed_float16). A large matmul in the policy's
  compute type is measured on every device too, as the attainable peak.
* fc7 cache: `emonet_tf.run.generate_clips` + `run.build_records` (plain video_folder build) make a
  small labelled corpus; `emonet_tf.features.build_feature_cache` (the library's cache build: JPEG
  decode, MATLAB resize, backbone forward, memmap writes) is timed over its train split.

`--toy`: batch 2, 0.3 s windows, a 24-frame corpus: runs on 2 CPU cores in well under 2 minutes
(tests/test_bench_gpu.py). The backbone is random (`init=scratch` weights): speed is that of EmoNet.
"""

from __future__ import annotations

import argparse
import functools
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.path.insert(0, ROOT)
import common  # noqa: E402

#: Dense peak TFLOPS (no structured sparsity), vendor datasheets (SXM parts unless named): (16-bit tensor
#: core with fp32 accumulation, fp32 non-tensor). First matching name wins, so specific names come first.
PEAK_TFLOPS = (
    ("GH200", (989.5, 66.9)),
    ("H200", (989.5, 66.9)),
    ("H100 PCIe", (756.0, 51.2)),
    ("H100 NVL", (835.0, 60.0)),
    ("H100", (989.5, 66.9)),
    ("A100", (312.0, 19.5)),
    ("L40S", (362.1, 91.6)),
    ("L4", (121.0, 30.3)),
    ("A10G", (70.0, 31.2)),
    ("A10", (125.0, 31.2)),
    ("V100", (125.0, 15.7)),
    ("T4", (65.0, 8.1)),
)

#: (output height/width, output channels, kernel height x width x input channels per group) per layer.
ALEXNET_LAYERS = (
    ("conv1", 55, 96, 11 * 11 * 3),
    ("conv2", 27, 256, 5 * 5 * 48),
    ("conv3", 13, 384, 3 * 3 * 256),
    ("conv4", 13, 384, 3 * 3 * 192),
    ("conv5", 13, 256, 3 * 3 * 192),
    ("fc6", 1, 4096, 9216),
    ("fc7", 1, 4096, 4096),
    ("fc8", 1, 20, 4096),
)


def forward_flops() -> float:
    """FLOPs (2 x multiply-adds) of one 227x227 image through EmoNet, from the layer shapes."""
    return 2.0 * sum(hw * hw * cout * k for _, hw, cout, k in ALEXNET_LAYERS)


def device_info() -> dict:
    """kind (gpu/cpu), name, and for a known GPU its peak TFLOPS per compute type."""
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        return {"kind": "cpu", "name": common.machine().get("cpu", "cpu"), "gpus": 0}
    name = ""
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True, text=True, timeout=30
        )
        name = out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout.strip() else ""
    except (OSError, subprocess.SubprocessError):
        pass
    if not name:
        name = tf.config.experimental.get_device_details(gpus[0]).get("device_name", "GPU")
    info = {"kind": "gpu", "name": name, "gpus": len(gpus)}
    entry = peak_for(name)
    if entry:
        info.update(peak_tflops=entry[1], peak_entry=entry[0])
    return info


def peak_for(name: str):
    """(table entry, {compute dtype: dense peak TFLOPS}) of the first PEAK_TFLOPS name in `name`, or None."""
    for key, (half, single) in PEAK_TFLOPS:
        if key.lower() in name.lower():
            return key, {"float16": half, "bfloat16": half, "float32": single}
    return None


def matmul_tflops(dtype: str, n: int, seconds: float) -> float:
    """Achieved TFLOPS of an n x n x n matmul in `dtype` (the result reduced to a scalar to synchronise)."""
    import tensorflow as tf

    a = tf.random.uniform((n, n), dtype=tf.float32)
    a, b = tf.cast(a, dtype), tf.cast(tf.transpose(a), dtype)
    fn = tf.function(lambda: tf.reduce_sum(tf.cast(tf.matmul(a, b), tf.float32)))
    return common.throughput(lambda: fn().numpy(), 1, seconds) * 2.0 * n**3 / 1e12


def make_corpus(tmp: str, clips_per_category: int, seconds: float) -> tuple[str, int]:
    """Generated clips (emonet_tf.run) built into video_folder records; (dataset dir, train examples)."""
    from emonet_tf import run

    clips = os.path.join(tmp, "clips")
    run.generate_clips(clips, clips_per_category=clips_per_category, seconds=seconds, seed=0)
    builder = run.build_records(clips, os.path.join(tmp, "tfds"), run.DEFAULT_CATEGORIES)
    return os.fspath(builder.data_path), builder.info.splits["train"].num_examples


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--toy", action="store_true", help="tiny sizes: runs on CPU in CI")
    parser.add_argument("--batch", type=int, help="batch of inference and training (default 256; toy 2)")
    parser.add_argument("--seconds", type=float, help="timing window per figure (default 10; toy 0.3)")
    parser.add_argument("--policy", default="mixed_float16", help="Keras dtype policy (default mixed_float16)")
    parser.add_argument("--no-xla", action="store_true", help="without jit_compile (for comparison)")
    parser.add_argument("--out", default=os.path.join(HERE, "results", "gpu.json"))
    args = parser.parse_args(argv)
    batch = args.batch or (2 if args.toy else 256)
    seconds = args.seconds or (0.3 if args.toy else 10.0)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    t_start = time.perf_counter()
    import keras
    import numpy as np
    import tensorflow as tf

    from emonet_tf import data as data_lib
    from emonet_tf import features
    from emonet_tf.classifier import EmoNetClassifier
    from emonet_tf.image_spec import IMAGE_SIZE
    from emonet_tf.training.loop import replica_step
    from emonet_tf.training.state import create_train_state

    common.header(f"Accelerator check: batch {batch}, policy {args.policy}, XLA {not args.no_xla}")
    device = device_info()
    jit = not args.no_xla
    keras.mixed_precision.set_global_policy(args.policy)
    compute = keras.mixed_precision.global_policy().compute_dtype
    flops = forward_flops()
    n = 256 if args.toy else (8192 if device["kind"] == "gpu" else 2048)
    measured = {"float32": matmul_tflops("float32", n, seconds)}
    if compute != "float32":
        measured[compute] = matmul_tflops(compute, n, seconds)
    if device["kind"] == "gpu" and "peak_tflops" in device:
        peak, peak_source = device["peak_tflops"][compute], f"datasheet, {device['peak_entry']}, dense {compute}"
    elif device["kind"] == "gpu":
        peak, peak_source = None, f"unknown GPU {device['name']!r}: add it to PEAK_TFLOPS"
    else:
        peak, peak_source = measured["float32"], f"measured float32 matmul {n}x{n} in this run (sgemm)"

    rng = np.random.default_rng(0)
    images = tf.constant(rng.uniform(0, 255, (batch, IMAGE_SIZE, IMAGE_SIZE, 3)).astype("float32"))
    labels = tf.constant(rng.integers(0, 20, batch).astype("int32"))
    model = EmoNetClassifier(num_classes=20, activation=None)
    model(images[:1])

    infer = tf.function(lambda x: tf.reduce_sum(tf.cast(model(x, training=False), tf.float32)), jit_compile=jit)
    t0 = time.perf_counter()
    infer(images).numpy()
    infer_compile = time.perf_counter() - t0
    infer_ips = common.throughput(lambda: infer(images).numpy(), batch, seconds)

    state = create_train_state(
        lambda x: model(x, training=True),
        model.trainable_weights,
        learning_rate=1e-4,
        momentum=0.9,
        loss_scale=compute == "float16",
    )
    step = tf.function(functools.partial(replica_step, state, global_batch_size=batch), jit_compile=jit)
    t0 = time.perf_counter()
    step(images, labels)[0].numpy()
    step_compile = time.perf_counter() - t0
    train_ips = common.throughput(lambda: step(images, labels)[0].numpy(), batch, seconds)
    loss = float(step(images, labels)[0].numpy())

    def figure(ips: float, flops_per_image: float) -> dict:
        tflops = ips * flops_per_image / 1e12
        return {
            "images_per_second": ips,
            "tflops": tflops,
            "fraction_of_peak": tflops / peak if peak else None,
        }

    results = {
        "inference": dict(figure(infer_ips, flops), first_call_seconds=infer_compile),
        "train_step_full": dict(figure(train_ips, 3 * flops), first_call_seconds=step_compile, loss=loss),
    }

    tmp = tempfile.mkdtemp(prefix="bench_gpu_")
    try:
        clips, clip_seconds = (2, 1.0) if args.toy else (20, 16.0)
        t0 = time.perf_counter()
        dataset, train_examples = make_corpus(tmp, clips, clip_seconds)
        corpus_seconds = time.perf_counter() - t0
        info = data_lib.inspect_dataset(dataset, splits=("train",))
        t0 = time.perf_counter()
        features.build_feature_cache(
            model.backbone, info, "train", os.path.join(tmp, "cache"), fingerprint="bench", batch_size=min(batch, 256)
        )
        cache_seconds = time.perf_counter() - t0
        cached = np.load(os.path.join(tmp, "cache", features.FEATURES), mmap_mode="r")
        finite = bool(np.isfinite(np.asarray(cached)).all())
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    results["fc7_cache"] = {
        "records": train_examples,
        "seconds": cache_seconds,
        "images_per_second": train_examples / cache_seconds,
        "fraction_of_inference": train_examples / cache_seconds / infer_ips,
        "features_finite": finite,
        "corpus_seconds": corpus_seconds,
        "note": "includes the tf.function trace and the input pipeline (JPEG decode, MATLAB resize on the host)",
    }

    print(f"\ndevice: {device['name']} ({device['kind']}); FLOP limit {peak and f'{peak:.4g} TFLOPS'} ({peak_source})")
    print(f"measured matmul: {', '.join(f'{k} {v:.4g} TFLOPS' for k, v in measured.items())}\n")
    print("| figure | images/s | TFLOPS | fraction of limit |\n|---|---|---|---|")
    for key in ("inference", "train_step_full"):
        r = results[key]
        frac = "" if r["fraction_of_peak"] is None else f"{r['fraction_of_peak']:.3f}"
        print(f"| {key} (batch {batch}) | {r['images_per_second']:.1f} | {r['tflops']:.4g} | {frac} |")
    c = results["fc7_cache"]
    print(f"| fc7 cache build ({c['records']} records) | {c['images_per_second']:.1f} | | |")
    payload = {
        "toy": args.toy,
        "batch": batch,
        "policy": args.policy,
        "compute_dtype": compute,
        "xla": jit,
        "device": device,
        "flop_limit_tflops": peak,
        "flop_limit_source": peak_source,
        "forward_gflop_per_image": flops / 1e9,
        "train_step_gflop_per_image": 3 * flops / 1e9,
        "measured_matmul_tflops": measured,
        "matmul_n": n,
        "results": results,
        "total_seconds": time.perf_counter() - t_start,
        "tensorflow": tf.__version__,
    }
    common.write_json(args.out, payload)
    print(f"wrote {args.out} ({payload['total_seconds']:.1f} s)")
    return payload


if __name__ == "__main__":
    main()
