"""The fc7-feature fast path versus full forward passes, for the paper's head-only recipe.

    python bench/bench_fast_path.py [--classes 3] [--videos-per-class 4] [--frames 50] [--size 320x180]
                                    [--epochs 10] [--learning-rate 1e-4] [--out bench/results/fast_path.json]

A small corpus of generated videos whose classes look different (tint and stripes on a panned
photo, see bench_frames.moving_frames) is built with the `video_folder` builder (`every5`; test =
20% of each class's videos by the builder's hash split). Then `emonet_tf.training.train_and_evaluate`
trains fc8 with the paper's recipe (SGD momentum 0.9, lr 1e-4, batch 16, conv1-fc7 frozen, no
augmentation) for `--epochs`, twice, each in its own child process:
  * fast path: `feature_cache=True` (relu7 computed once per example, fc8 trained on the cache);
  * full: `feature_cache=False` (every step runs the pipeline and the frozen backbone forward).
Both start from the same seeded random backbone (`init=scratch`: no ImageNet weights are available
offline) and see the same examples in the same order, so they must reach the same head and the same
test accuracy. Timed: the whole `train_and_evaluate` call (model build, cache, training,
evaluation; not the interpreter start), and its own timing breakdown.
"""

from __future__ import annotations

import argparse
import json
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

#: Per class: how its videos look (bench_frames.moving_frames arguments).
CLASS_CONTENT = {
    "reddish": {"tint": (1.3, 0.6, 0.6)},
    "bluish": {"tint": (0.6, 0.7, 1.4)},
    "striped": {"stripes": 12},
    "dark": {"tint": (0.4, 0.4, 0.4)},
}


def build_dataset(tmp: str, classes: int, videos_per_class: int, frames: int, width: int, height: int) -> str:
    import tensorflow_datasets as tfds

    from bench_frames import write_corpus
    from tfds_builders.video_folder import video_folder_dataset_builder as vfb

    labels = tuple(CLASS_CONTENT)[:classes]
    manual = os.path.join(tmp, "corpus")
    write_corpus(
        manual, classes * videos_per_class, frames, width, height, labels=labels, content_by_label=CLASS_CONTENT
    )
    builder = vfb.Builder(config="every5", data_dir=os.path.join(tmp, "tfds"))
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=manual))
    return str(builder.data_path)


def child(spec: dict) -> dict:
    """One train_and_evaluate run; returns its timings, accuracy and where its fc8 weights went."""
    import numpy as np

    from emonet_tf import training

    config = training.TrainConfig(**spec["config"])
    start = time.perf_counter()
    result = training.train_and_evaluate(config)
    seconds = time.perf_counter() - start
    kernel, bias = result["model"].head.get_weights()
    np.savez(spec["weights_out"], kernel=kernel, bias=bias)
    return {
        "seconds": seconds,
        "timing": result["timing"],
        "feature_cache": result["feature_cache"],
        "steps": result["step"],
        "train": result["train"],
        "top1": result["eval"]["top1"],
        "mean_auc": result["eval"]["mean_auc"],
        "eval_examples": result["eval"]["num_examples"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--classes", type=int, default=3, choices=range(2, len(CLASS_CONTENT) + 1))
    parser.add_argument("--videos-per-class", type=int, default=4)
    parser.add_argument("--frames", type=int, default=50, help="frames per video (every5 keeps 1 in 5)")
    parser.add_argument("--size", default="320x180")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--learning-rate", type=float, default=1e-4)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--out", default="bench/results/fast_path.json")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import numpy as np
    import tensorflow  # noqa: F401  (versions in the header)
    import tensorflow_datasets  # noqa: F401

    common.header("Head-only training: fc7 feature cache versus full forward passes")
    print(f"load average at start: {os.getloadavg()}")
    tmp = tempfile.mkdtemp(prefix="bench_fast_path_")
    try:
        width, height = map(int, args.size.split("x"))
        t0 = time.perf_counter()
        dataset = build_dataset(tmp, args.classes, args.videos_per_class, args.frames, width, height)
        print(f"built {dataset} in {time.perf_counter() - t0:.1f} s")
        runs = {}
        for name, cache in (("fast path (feature cache)", True), ("full forward passes", False)):
            config = dict(
                dataset=dataset,
                model_dir=os.path.join(tmp, "run_" + ("fast" if cache else "full")),
                init="scratch",
                train_layers="fc8",
                learning_rate=args.learning_rate,
                momentum=0.9,
                global_batch_size=args.batch,
                epochs=args.epochs,
                seed=0,
                feature_cache=cache,
                eval_split="test",
                export=False,
                log_every=1000,
                checkpoint_every=100000,
            )
            spec = {"config": config, "weights_out": os.path.join(tmp, f"fc8_{int(cache)}.npz")}
            proc = subprocess.run(
                [sys.executable, os.path.abspath(__file__), "--child", json.dumps(spec)],
                env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"),
                capture_output=True,
                text=True,
            )
            if proc.returncode:
                raise RuntimeError(f"{name} failed:\n{proc.stderr[-3000:]}")
            runs[name] = dict(json.loads(proc.stdout.strip().splitlines()[-1]), weights=spec["weights_out"])
        fast, full = runs["fast path (feature cache)"], runs["full forward passes"]
        wf, wl = np.load(fast["weights"]), np.load(full["weights"])
        max_diff = max(float(np.max(np.abs(wf[k] - wl[k]))) for k in ("kernel", "bias"))
        scale = max(float(np.max(np.abs(wl[k]))) for k in ("kernel", "bias"))
        print(
            f"\n{fast['steps']} steps of batch {args.batch} ({args.epochs} epochs), lr {args.learning_rate:g}, "
            f"momentum 0.9; test split {fast['eval_examples']} frames\n"
        )
        print("| run | train_and_evaluate s | feature cache s | training s | eval s | test top1 | test mean AUC |")
        print("|---|---|---|---|---|---|---|")
        for name, r in runs.items():
            t = r["timing"]
            print(
                f"| {name} | {r['seconds']:.1f} | {t.get('feature_cache_seconds', 0.0):.1f} | "
                f"{t['train_seconds']:.1f} | {t.get('eval_seconds', 0.0):.1f} | {r['top1']:.3f} | "
                f"{r['mean_auc']:.3f} |"
            )
        ratio = full["seconds"] / fast["seconds"]
        print(
            f"\nspeed-up (full / fast, whole call): {ratio:.2f}x; same test top1: {fast['top1'] == full['top1']}; "
            f"max |fc8 fast - full| = {max_diff:.2e} (largest |weight| {scale:.3g})"
        )
        print(f"load average at end: {os.getloadavg()}")
        common.write_json(
            args.out,
            {
                "epochs": args.epochs,
                "learning_rate": args.learning_rate,
                "batch": args.batch,
                "runs": {k: {kk: vv for kk, vv in v.items() if kk != "weights"} for k, v in runs.items()},
                "speedup": ratio,
                "same_top1": fast["top1"] == full["top1"],
                "max_abs_fc8_difference": max_diff,
                "load_average_end": os.getloadavg(),
            },
        )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
