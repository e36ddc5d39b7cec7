"""Inference images/s: Keras EmoNet vs emonet-py's PyTorch AlexNetBigEmoNet (same weights), batch 1/16/64.

    python bench/bench_inference.py [--batch-sizes 1 16 64] [--seconds 6] [--out bench/results/inference.json]

The TF variants run in child processes, because oneDNN is chosen when TF is imported
(TF_ENABLE_ONEDNN_OPTS): default (oneDNN on), oneDNN off, and XLA (`jit_compile=True`). The
PyTorch reference runs in this process with torch's default threads. Weights are copied from
the PyTorch model into Keras, and outputs are checked to agree before timing.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

VARIANTS = {
    "keras (oneDNN on)": {"TF_ENABLE_ONEDNN_OPTS": "1", "jit": "0"},
    "keras (oneDNN off)": {"TF_ENABLE_ONEDNN_OPTS": "0", "jit": "0"},
    "keras + XLA jit_compile": {"TF_ENABLE_ONEDNN_OPTS": "1", "jit": "1"},
}


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


def child(state_dict_path: str, batch_sizes, seconds, jit: bool) -> dict:
    """Runs in a subprocess: loads the same weights into Keras and times it."""
    import numpy as np
    import tensorflow as tf

    from emonet_tf import weights
    from emonet_tf.image_spec import IMAGE_SIZE

    model = weights.build_classifier(weights.read_weights(state_dict_path))
    logits_model = __import__("keras").Model(model.input, model.head.output)
    fn = tf.function(lambda x: logits_model(x, training=False), jit_compile=jit)
    out = {}
    for b in batch_sizes:
        x = tf.constant(np.random.default_rng(0).uniform(0, 255, (b, IMAGE_SIZE, IMAGE_SIZE, 3)).astype("float32"))
        out[b] = common.throughput(lambda: fn(x).numpy(), b, seconds)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 16, 64])
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--out", default="bench/results/inference.json")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--jit", default="0", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.batch_sizes, args.seconds, args.jit == "1")))
        return

    import tempfile

    import torch

    common.header("Inference throughput, images/s (higher is better)")
    tmp = tempfile.mkdtemp()
    state_dict = os.path.join(tmp, "emonet_py.pth")
    net = reference_state_dict(state_dict)
    results = {
        "pytorch emonet-py (torch %s, %d threads)" % (torch.__version__, torch.get_num_threads()): run_torch(
            net, args.batch_sizes, args.seconds
        )
    }
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
        results[name] = {int(k): v for k, v in json.loads(proc.stdout.strip().splitlines()[-1]).items()}
    torch_name = next(iter(results))
    print("\n| implementation | " + " | ".join(f"batch {b}" for b in args.batch_sizes) + " |")
    print("|---|" + "---|" * len(args.batch_sizes))
    for name, row in results.items():
        cells = []
        for b in args.batch_sizes:
            ratio = row[b] / results[torch_name][b]
            cells.append(f"{row[b]:.1f} ({ratio:.2f}x)")
        print(f"| {name} | " + " | ".join(cells) + " |")
    print("\nratios are relative to the PyTorch reference in the same run")
    common.write_json(args.out, {"images_per_second": results})


if __name__ == "__main__":
    main()
