"""Pre-resized frame records (`all_227`) versus ordinary ones (`all`, JPEG q95 at the decoded size), side by side.

    python bench/bench_pre_resized.py [--videos 12] [--frames 60] [--size 720x528] [--batch 16] [--seconds 6]
                                      [--train-steps 30] [--out bench/results/pre_resized.json]

A generated corpus (`--videos` mp4v videos x `--frames` frames at `--size`, moving photographic
content, bench_frames.write_corpus) is built twice with the `video_folder` builder: `all` (frames
stored as JPEG q95 at their size, decoded and resized to 227 by MATLAB's imresize every epoch) and
`all_227` (frames stored already resized by the same preprocessing, as PNG). Measured in one process,
one after the other, round-robin where it matters:
  * build time and record bytes per frame;
  * `emonet_tf.data.train_dataset` images/s in the steady state (one epoch's dataset repeated), and
    each epoch's start apart (seconds to the first batch of a new epoch's dataset: since issue 15 the
    decode graph is traced once per process, `EmoNetPreprocessor.traced_image_bytes`, so what is left is
    tf.data's iterator start, about 2 s on 2 CPU cores, the same for both datasets);
  * bench_training_step's Keras step on a constant batch (head only, full fine-tune), and the full
    step fed by each pipeline (the in-process equivalent of train.py's loop, steady state);
  * the fc7 (relu7) cache build (`emonet_tf.features.build_feature_cache`, eval batch 32) of each,
    whole (its iterator start included; the decode and the forward pass are traced before, once per
    process, as train.py's second split finds them), and `eval_dataset` feeding the forward pass after
    the first batch (steady state), versus the backbone's forward pass alone on a constant batch of 32
    (model-only inference);
  * `train.py` itself, full fine-tune (`--init=scratch --train_layers=all`) for `--train-steps`
    steps on each dataset: its own `steady_examples_per_second` (after the first step) beside the
    constant-batch full step, and `examples_per_second` (whole training time, first step's tracing
    and dataset start included).
Targets (issue 15): train.py's full fine-tune (steady) >= 0.8x the full step; cache build >= 0.9x
model-only inference. A sanity check first: the first eval batch of both datasets is identical.
`--configs all` (or `all_227`) measures one dataset only (shorter).
"""

from __future__ import annotations

import argparse
import ast
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.path.insert(0, ROOT)
from bench_pipeline import make_step  # noqa: E402

import common  # noqa: E402

CONFIGS = {"ordinary (all, JPEG q95)": "all", "pre-resized (all_227, PNG 227)": "all_227"}


def build(manual: str, data_dir: str, config: str) -> tuple[str, float]:
    import tensorflow_datasets as tfds

    from tfds_builders.video_folder import video_folder_dataset_builder as vfb

    t0 = time.perf_counter()
    builder = vfb.Builder(config=config, data_dir=data_dir)
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=manual))
    return str(builder.data_path), time.perf_counter() - t0


def record_bytes(path: str) -> int:
    return sum(os.path.getsize(os.path.join(path, f)) for f in os.listdir(path) if ".tfrecord" in f)


def batches(info, batch: int):
    """Steady-state training batches: one epoch's `train_dataset`, repeated (the per-epoch start is
    measured apart, `epoch_startup`: each new epoch's dataset traces the decode graph again)."""
    from emonet_tf import data

    return iter(data.train_dataset(info, "train", global_batch_size=batch, seed=0, epoch=0).repeat())


def epoch_startup(info, batch: int, epoch: int) -> float:
    """Seconds from creating an epoch's dataset to its first batch, as the training loop does every epoch."""
    from emonet_tf import data

    t0 = time.perf_counter()
    next(iter(data.train_dataset(info, "train", global_batch_size=batch, seed=0, epoch=epoch)))
    return time.perf_counter() - t0


def fed_forward_rate(forward, info) -> float:
    """images/s of eval_dataset (batch 32, the cache's) feeding the forward pass, after the first batch."""
    from emonet_tf import data

    it = iter(data.eval_dataset(info, "train", batch_size=32))
    forward(next(it)[0]).numpy()
    n, t0 = 0, time.perf_counter()
    for images, _ in it:
        forward(images).numpy()
        n += int(images.shape[0])
    return n / (time.perf_counter() - t0)


def cache_rate(backbone, info, cache_dir: str) -> float:
    from emonet_tf import features

    n = info.num_examples("train")
    t0 = time.perf_counter()
    features.build_feature_cache(backbone, info, "train", cache_dir, fingerprint="bench", batch_size=32)
    return n / (time.perf_counter() - t0)


def train_py(dataset_dir: str, model_dir: str, steps: int, batch: int) -> dict:
    """Runs train.py (full fine-tune from scratch, no eval, no export); its timing dict."""
    cmd = [
        sys.executable,
        os.path.join(ROOT, "train.py"),
        f"--dataset={dataset_dir}",
        f"--model_dir={model_dir}",
        "--init=scratch",
        "--train_layers=all",
        "--eval_split=",
        "--noexport",
        "--noprogress",
        f"--global_batch_size={batch}",
        f"--max_steps={steps}",
        "--epochs=1000",
        "--checkpoint_every=100000",
        "--log_every=100000",
    ]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    wall = time.perf_counter() - t0
    if proc.returncode:
        raise RuntimeError(f"train.py failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    match = re.search(r"timing (\{.*\})", proc.stderr + proc.stdout)
    timing = ast.literal_eval(match.group(1)) if match else {}
    return dict(timing, process_wall_seconds=wall)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=int, default=12)
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--size", default="720x528")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--train-steps", type=int, default=30)
    parser.add_argument("--out", default="bench/results/pre_resized.json")
    parser.add_argument("--configs", default="all,all_227", help="builder configs to measure (comma-separated)")
    args = parser.parse_args()
    wanted = args.configs.split(",")
    configs = {name: config for name, config in CONFIGS.items() if config in wanted}
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import numpy as np
    import tensorflow as tf

    from bench_frames import write_corpus
    from emonet_tf import EmoNetClassifier, data, features
    from emonet_tf.image_spec import IMAGE_SIZE

    common.header(f"pre-resized records versus resizing at read time, batch {args.batch}")
    loads = {"start": os.getloadavg()}
    print(f"load average at start: {loads['start']}")
    tmp = tempfile.mkdtemp(prefix="preres_bench_", dir="/tmp")
    try:
        width, height = map(int, args.size.split("x"))
        manual = os.path.join(tmp, "corpus")
        write_corpus(manual, args.videos, args.frames, width, height)
        infos, sizes, build_s = {}, {}, {}
        for name, config in configs.items():
            path, build_s[name] = build(manual, os.path.join(tmp, "tfds"), config)
            infos[name] = data.inspect_dataset(path, splits=("train",))
            n = sum(infos[name].num_examples(s) for s in infos[name].builder.info.splits)
            sizes[name] = record_bytes(path) / n
        n_train = infos[next(iter(infos))].num_examples("train")
        print(f"corpus: {args.videos} videos x {args.frames} frames at {width}x{height}; {n_train} train frames")

        # Sanity: the same model inputs from both (tests/test_pre_resized.py proves it on every frame).
        firsts = [next(iter(data.eval_dataset(info, "train", batch_size=8)))[0].numpy() for info in infos.values()]
        same_inputs_max_diff = float(np.abs(firsts[0] - firsts[-1]).max())
        print(f"first eval batch, max |pre-resized - resized at read time| = {same_inputs_max_diff}")

        startup = {name: min(epoch_startup(info, args.batch, e) for e in (1, 2)) for name, info in infos.items()}
        pipeline = {name: 0.0 for name in infos}
        iters = {name: batches(info, args.batch) for name, info in infos.items()}
        for _ in range(2):  # round-robin, best of two rounds
            for name, it in iters.items():
                rate = common.throughput(lambda it=it: next(it), args.batch, args.seconds)
                pipeline[name] = max(pipeline[name], rate)

        num_classes = infos[next(iter(infos))].num_classes
        rng = np.random.default_rng(0)
        x = tf.constant(rng.uniform(0, 255, (args.batch, IMAGE_SIZE, IMAGE_SIZE, 3)).astype("float32"))
        y = tf.constant(rng.integers(0, num_classes, args.batch).astype("int32"))
        model = EmoNetClassifier(num_classes=num_classes, activation=None)
        step_rates = {}
        model.backbone.trainable = False
        head_step = make_step(model, model.trainable_weights)
        step_rates["head only"] = common.throughput(lambda: head_step(x, y).numpy(), args.batch, args.seconds)
        model.backbone.trainable = True
        full_step = make_step(model, model.trainable_weights)
        fed = {name: 0.0 for name in infos}
        full = 0.0
        for _ in range(2):  # constant batch and both fed variants, round-robin, best of two rounds
            full = max(full, common.throughput(lambda: full_step(x, y).numpy(), args.batch, args.seconds))
            for name, it in iters.items():

                def fed_step(it=it):
                    images, labels = next(it)
                    return full_step(images, labels).numpy()

                fed[name] = max(fed[name], common.throughput(fed_step, args.batch, args.seconds))
        step_rates["full"] = full

        backbone = EmoNetClassifier(num_classes=num_classes).backbone
        x32 = tf.constant(rng.uniform(0, 255, (32, IMAGE_SIZE, IMAGE_SIZE, 3)).astype("float32"))
        # The cache build's own traced forward pass (features.fc7_function), traced here once.
        forward = features.fc7_function(backbone)
        inference = common.throughput(lambda: forward(x32).numpy(), 32, args.seconds)
        cache = {
            name: cache_rate(backbone, info, os.path.join(tmp, "cache", str(i)))
            for i, (name, info) in enumerate(infos.items())
        }
        cache_steady = {name: fed_forward_rate(forward, info) for name, info in infos.items()}
        inference = max(inference, common.throughput(lambda: forward(x32).numpy(), 32, args.seconds))

        loads["before train.py"] = os.getloadavg()
        trained = {}
        if args.train_steps > 0:
            for i, (name, info) in enumerate(infos.items()):
                trained[name] = train_py(
                    str(info.builder.data_path), os.path.join(tmp, f"run{i}"), args.train_steps, args.batch
                )
        loads["end"] = os.getloadavg()

        print(
            "\n| dataset | build s | record bytes/frame | epoch startup s | pipeline images/s (steady) | "
            "full step fed by it | / full step | fc7 cache build images/s (whole) | / inference | "
            "eval pipeline + forward (steady) | / inference | train.py examples/s (steady) | / full step | "
            "train.py examples/s (whole) | / full step |"
        )
        print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
        for name in infos:
            tp = trained.get(name, {}).get("examples_per_second", float("nan"))
            steady = trained.get(name, {}).get("steady_examples_per_second", float("nan"))
            print(
                f"| {name} | {build_s[name]:.1f} | {sizes[name]:.0f} | {startup[name]:.1f} | {pipeline[name]:.1f} | "
                f"{fed[name]:.1f} | {fed[name] / full:.2f}x | {cache[name]:.1f} | {cache[name] / inference:.2f}x | "
                f"{cache_steady[name]:.1f} | {cache_steady[name] / inference:.2f}x | {steady:.1f} | "
                f"{steady / full:.2f}x | {tp:.1f} | {tp / full:.2f}x |"
            )
        print(
            f"\nconstant-batch steps, images/s: head only {step_rates['head only']:.1f}, full {full:.1f}; "
            f"model-only inference (backbone to relu7, batch 32) {inference:.1f}"
        )
        print(f"load averages: {loads}")
        common.write_json(
            args.out,
            {
                "batch": args.batch,
                "corpus": {"videos": args.videos, "frames": args.frames, "size": [width, height]},
                "train_examples": n_train,
                "build_seconds": build_s,
                "record_bytes_per_frame": sizes,
                "first_batch_max_diff": same_inputs_max_diff,
                "pipeline_images_per_second": pipeline,
                "constant_batch_step_images_per_second": step_rates,
                "full_step_fed_images_per_second": fed,
                "fed_over_full_step": {k: v / full for k, v in fed.items()},
                "model_only_inference_images_per_second": inference,
                "epoch_startup_seconds": startup,
                "fc7_cache_build_images_per_second": cache,
                "eval_pipeline_feeding_forward_images_per_second": cache_steady,
                "eval_fed_over_inference": {k: v / inference for k, v in cache_steady.items()},
                "cache_over_inference": {k: v / inference for k, v in cache.items()},
                "train_py": trained,
                "train_py_steady_over_full_step": {
                    k: v.get("steady_examples_per_second", float("nan")) / full for k, v in trained.items()
                },
                "load_averages": loads,
            },
        )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
