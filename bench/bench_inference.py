"""Inference images/s: Keras EmoNet vs emonet-py's PyTorch AlexNetBigEmoNet (same weights), by batch size,
and the model's FLOP efficiency against the machine's measured sgemm peak.

    python bench/bench_inference.py [--batch-sizes 1 2 4 8 16 64] [--seconds 6] [--rounds 2] [--out bench/results/inference.json]

The TF variants run in child processes, because oneDNN is chosen when TF is imported
(TF_ENABLE_ONEDNN_OPTS): default (oneDNN on), oneDNN off, XLA (`jit_compile=True`), and the library's
own `EmoNet.predict_logits` (jit_compile="auto": `emonet_tf.forward.BatchSizeDispatch` picks XLA or
the oneDNN graph by batch size; its rows show whether that pick is the fastest path per batch size).
The PyTorch reference runs in this process with torch's default threads. Weights are copied from
the PyTorch model into Keras, and outputs are checked to agree before timing.

FLOP efficiency (issue 15): images/s x `bench_gpu.forward_flops()` (1.44 GFLOP per 227x227 image,
from the layer shapes) as a fraction of the sgemm peak: the fastest float32 n x n matmul (n = 1024,
2048, 4096) among numpy, TensorFlow and torch, measured in this run before and after the models (the
larger of the two, so the fraction is not flattered by a slow moment).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_gpu import forward_flops  # noqa: E402

import common  # noqa: E402

VARIANTS = {
    "keras (oneDNN on)": {"TF_ENABLE_ONEDNN_OPTS": "1", "jit": "0"},
    "keras (oneDNN off)": {"TF_ENABLE_ONEDNN_OPTS": "0", "jit": "0"},
    "keras + XLA jit_compile": {"TF_ENABLE_ONEDNN_OPTS": "1", "jit": "1"},
    "EmoNet.predict_logits (jit_compile='auto')": {"TF_ENABLE_ONEDNN_OPTS": "1", "jit": "auto"},
}
MATMUL_SIZES = (1024, 2048, 4096)


def sgemm_gflops(seconds: float) -> dict:
    """GFLOPS of float32 n x n matmuls in numpy, TensorFlow (child process) and torch; 'peak' is the max."""
    import numpy as np
    import torch

    out = {}
    for n in MATMUL_SIZES:
        a = np.random.default_rng(0).random((n, n), dtype=np.float32)
        out[f"numpy n={n}"] = common.throughput(lambda: a @ a, 1, seconds) * 2.0 * n**3 / 1e9
        t = torch.from_numpy(a)
        out[f"torch n={n}"] = common.throughput(lambda: torch.mm(t, t), 1, seconds) * 2.0 * n**3 / 1e9
    proc = subprocess.run(
        [sys.executable, __file__, "--child", "sgemm", "--seconds", str(seconds)],
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"),
        capture_output=True,
        text=True,
    )
    if proc.returncode == 0:
        out.update(json.loads(proc.stdout.strip().splitlines()[-1]))
    out["peak"] = max(out.values())
    return out


def tf_sgemm(seconds: float) -> dict:
    """Runs in a subprocess: TensorFlow's float32 matmul GFLOPS per size."""
    import numpy as np
    import tensorflow as tf

    out = {}
    for n in MATMUL_SIZES:
        a = tf.constant(np.random.default_rng(0).random((n, n), dtype=np.float32))
        fn = tf.function(lambda: tf.reduce_sum(tf.matmul(a, a)))
        out[f"tensorflow n={n}"] = common.throughput(lambda: fn().numpy(), 1, seconds) * 2.0 * n**3 / 1e9
    return out


def reference_state_dict(path: str):
    import torch
    from emonet_py.alexnet_big import AlexNetBigEmoNet

    torch.manual_seed(0)
    net = AlexNetBigEmoNet().eval()
    torch.save(net.state_dict(), path)
    return net


def run_torch(net, batch_sizes, seconds):
    import numpy as np
    import torch

    from emonet_tf.image_spec import IMAGE_SIZE

    out = {}
    with torch.no_grad():
        for b in batch_sizes:
            x = torch.from_numpy(
                np.random.default_rng(0).uniform(-120, 120, (b, 3, IMAGE_SIZE, IMAGE_SIZE)).astype("float32")
            )
            out[b] = common.throughput(lambda: net(x), b, seconds)
    return out


def child(state_dict_path: str, batch_sizes, seconds, jit: str) -> dict:
    """Runs in a subprocess: loads the same weights into Keras and times it (jit: "0", "1" or "auto")."""
    import numpy as np
    import tensorflow as tf

    from emonet_tf import forward, weights
    from emonet_tf.image_spec import IMAGE_SIZE
    from emonet_tf.inference import EmoNet

    model = weights.build_classifier(weights.read_weights(state_dict_path))
    if jit == "auto":  # the library's own call, numpy in and out
        emonet = EmoNet(model)
        fn = emonet.predict_logits
    else:
        logits_model = __import__("keras").Model(model.input, model.head.output)
        graph = tf.function(lambda x: logits_model(x, training=False), jit_compile=jit == "1")
        fn = lambda x: graph(x).numpy()  # noqa: E731
    out = {}
    for b in batch_sizes:
        x = np.random.default_rng(0).uniform(0, 255, (b, IMAGE_SIZE, IMAGE_SIZE, 3)).astype("float32")
        x = x if jit == "auto" else tf.constant(x)
        if jit == "auto":  # past the calls that stay on the graph before "auto" compiles XLA
            for _ in range(forward.XLA_AFTER_CALLS + 1):
                fn(x)
        out[b] = common.throughput(lambda: fn(x), b, seconds)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 2, 4, 8, 16, 64])
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--rounds", type=int, default=2, help="variants run round-robin; the best round is kept")
    parser.add_argument("--out", default="bench/results/inference.json")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--jit", default="0", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child == "sgemm":
        print(json.dumps(tf_sgemm(args.seconds / 3)))
        return
    if args.child:
        print(json.dumps(child(args.child, args.batch_sizes, args.seconds, args.jit)))
        return

    import tempfile

    import torch

    common.header("Inference throughput, images/s (higher is better)")
    print(f"load average at start: {os.getloadavg()}")
    sgemm = {"before": sgemm_gflops(args.seconds / 3)}
    tmp = tempfile.mkdtemp()
    state_dict = os.path.join(tmp, "emonet_py.pth")
    net = reference_state_dict(state_dict)
    torch_name = "pytorch emonet-py (torch %s, %d threads)" % (torch.__version__, torch.get_num_threads())
    results: dict = {}

    def keep_best(name: str, row: dict) -> None:
        results[name] = {b: max(v, results.get(name, {}).get(b, 0.0)) for b, v in row.items()}

    for _ in range(args.rounds):  # every variant once per round: a slow moment hits one round, not one variant
        keep_best(torch_name, run_torch(net, args.batch_sizes, args.seconds))
        for name, env in VARIANTS.items():
            proc = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--child",
                    state_dict,
                    "--jit",
                    env["jit"],
                    "--seconds",
                    str(args.seconds),
                    "--batch-sizes",
                    *map(str, args.batch_sizes),
                ],
                env=dict(os.environ, TF_ENABLE_ONEDNN_OPTS=env["TF_ENABLE_ONEDNN_OPTS"], TF_CPP_MIN_LOG_LEVEL="2"),
                capture_output=True,
                text=True,
            )
            if proc.returncode:
                print(f"{name}: failed\n{proc.stderr[-2000:]}")
                continue
            keep_best(name, {int(k): v for k, v in json.loads(proc.stdout.strip().splitlines()[-1]).items()})
    sgemm["after"] = sgemm_gflops(args.seconds / 3)
    peak = max(sgemm["before"]["peak"], sgemm["after"]["peak"])
    print("\n| implementation | " + " | ".join(f"batch {b}" for b in args.batch_sizes) + " |")
    print("|---|" + "---|" * len(args.batch_sizes))
    for name, row in results.items():
        cells = []
        for b in args.batch_sizes:
            ratio = row[b] / results[torch_name][b]
            cells.append(f"{row[b]:.1f} ({ratio:.2f}x)")
        print(f"| {name} | " + " | ".join(cells) + " |")
    print("\nratios are relative to the PyTorch reference in the same run")
    flops = forward_flops()
    tf_names = [n for n in results if n != torch_name]
    fastest = {b: max(tf_names, key=lambda n: results[n][b]) for b in args.batch_sizes}
    efficiency = {n: {b: results[n][b] * flops / 1e9 / peak for b in args.batch_sizes} for n in results}
    print(
        f"\nsgemm peak {peak:.1f} GFLOPS (before: {sgemm['before']['peak']:.1f}, after: {sgemm['after']['peak']:.1f})"
    )
    print(f"forward {flops / 1e9:.3f} GFLOP per image; FLOP efficiency = images/s x GFLOP / sgemm peak")
    print("\n| implementation | " + " | ".join(f"batch {b}" for b in args.batch_sizes) + " |")
    print("|---|" + "---|" * len(args.batch_sizes))
    for name in results:
        print(f"| {name} | " + " | ".join(f"{efficiency[name][b]:.2f}" for b in args.batch_sizes) + " |")
    print("\nfastest TF path per batch size: " + ", ".join(f"{b}: {fastest[b]}" for b in args.batch_sizes))
    print(f"load average at end: {os.getloadavg()}")
    common.write_json(
        args.out,
        {
            "images_per_second": results,
            "sgemm_gflops": sgemm,
            "sgemm_peak_gflops": peak,
            "forward_gflop_per_image": flops / 1e9,
            "flop_efficiency": efficiency,
            "fastest_tf_path": fastest,
        },
    )


if __name__ == "__main__":
    main()
