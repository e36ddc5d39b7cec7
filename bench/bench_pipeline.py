"""Input pipeline images/s (`emonet_tf.data.train_dataset` from TFDS records) versus what a training step consumes.

    python bench/bench_pipeline.py [--videos 20] [--frames 30] [--size 480x270] [--batch 16] [--seconds 6]
                                   [--out bench/results/pipeline.json]

A small corpus (20 generated mp4v videos x 30 frames, 480x270, sampling `all`) is built with the
`video_folder` builder into a temporary data_dir; its `train` split is then read with
`emonet_tf.data.train_dataset` at the training batch size (paper: 16), epoch after epoch (a new
seeded epoch dataset each time, as the training loop does), JPEG decode + resize to 227 (MATLAB
imresize, the default, and tf.image bicubic) + batching, for `--seconds`.

Consumers, timed in the same process on a constant batch (`bench_training_step.py`'s Keras step:
SGD momentum 0.9, lr 1e-4, softmax cross-entropy, one tf.function):
  * head only (the paper's recipe without the feature cache): frozen conv1-fc7 forward + fc8 update;
  * full: every layer trained.
Target: the pipeline delivers >= 3x the head-only step rate (the faster consumer, hence the
stricter test). Last row: the pipeline feeding the head-only step, end to end, on the same cores.
Then a per-image breakdown of the map function (decode, resize) on one stored frame, and, per
epoch, the time to the first batch (records read and shuffle buffer filled) versus the rate within
the epoch.
"""

from __future__ import annotations

import argparse
import itertools
import os
import shutil
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.path.insert(0, ROOT)
import common  # noqa: E402


def build_dataset(tmp: str, videos: int, frames: int, width: int, height: int) -> str:
    """Generates the corpus and builds video_folder/all; returns the prepared builder directory."""
    import tensorflow_datasets as tfds

    from bench_frames import write_corpus
    from tfds_builders.video_folder import video_folder_dataset_builder as vfb

    manual = os.path.join(tmp, "corpus")
    write_corpus(manual, videos, frames, width, height)
    builder = vfb.Builder(config="all", data_dir=os.path.join(tmp, "tfds"))
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=manual))
    return str(builder.data_path)


def batches(info, batch: int, resize_method: str):
    """Endless training batches, epoch after epoch, exactly as the training loop makes them."""
    from emonet_tf import data

    for epoch in itertools.count():
        yield from data.train_dataset(
            info, "train", global_batch_size=batch, seed=0, epoch=epoch, resize_method=resize_method
        )


def make_step(model, trainable):
    """bench_training_step.py's Keras step, taking the batch as arguments."""
    import keras
    import tensorflow as tf

    optimizer = keras.optimizers.SGD(learning_rate=1e-4, momentum=0.9)
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    @tf.function
    def step(x, y):
        with tf.GradientTape() as tape:
            loss = loss_fn(y, model(x, training=True))
        grads = tape.gradient(loss, trainable)
        optimizer.apply_gradients(zip(grads, trainable))
        return loss

    return step


def epoch_profile(info, batch: int, resize_method: str, epochs: int = 3) -> dict:
    """Per epoch: seconds from creating the epoch's dataset to its first batch (reading and
    shuffling fill), and images/s of the rest of the epoch (steady state). Best of `epochs`."""
    from emonet_tf import data

    startup, steady = [], []
    for epoch in range(epochs):
        t0 = time.perf_counter()
        it = iter(
            data.train_dataset(info, "train", global_batch_size=batch, seed=0, epoch=epoch, resize_method=resize_method)
        )
        next(it)
        t1 = time.perf_counter()
        n = sum(1 for _ in it)
        steady.append(n * batch / (time.perf_counter() - t1))
        startup.append(t1 - t0)
    return {"epoch startup s": min(startup), "steady images/s": max(steady)}


def per_image_breakdown(jpeg: bytes, seconds: float) -> dict:
    """ms per image of each pipeline op on one stored frame (single-image tf.functions)."""
    import tensorflow as tf

    from emonet_tf import preprocessing as P

    data = tf.constant(jpeg)
    image = P.decode_image(data)

    fns = {
        "decode JPEG (tf.io.decode_image)": (P.decode_image, data),
        "resize matlab (library: gather + weighted sum per axis)": (lambda x: P.resize_image(x, "matlab"), image),
        "resize bicubic (tf.image.resize, antialias)": (lambda x: P.resize_image(x, "bicubic"), image),
    }
    out = {}
    for name, (fn, arg) in fns.items():
        compiled = tf.function(tf.autograph.experimental.do_not_convert(fn))
        out[name] = 1e3 / common.throughput(lambda: compiled(arg).numpy(), 1, seconds / 2)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=int, default=20)
    parser.add_argument("--frames", type=int, default=30)
    parser.add_argument("--size", default="480x270")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--out", default="bench/results/pipeline.json")
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import numpy as np
    import tensorflow as tf
    import tensorflow_datasets as tfds

    from emonet_tf import EmoNetClassifier, data
    from emonet_tf.image_spec import IMAGE_SIZE

    common.header(f"tf.data pipeline images/s versus training-step images/s at batch {args.batch}")
    print(f"load average at start: {os.getloadavg()}")
    tmp = tempfile.mkdtemp(prefix="bench_pipeline_")
    try:
        width, height = map(int, args.size.split("x"))
        t0 = time.perf_counter()
        builder_dir = build_dataset(tmp, args.videos, args.frames, width, height)
        info = data.inspect_dataset(builder_dir, splits=("train",))
        n_train = info.num_examples("train")
        print(
            f"built {builder_dir}: {n_train} train frames ({width}x{height} JPEG q95) from {args.videos} "
            f"videos in {time.perf_counter() - t0:.1f} s"
        )

        results = {}
        for method in ("matlab", "bicubic"):
            it = batches(info, args.batch, method)
            results[f"pipeline, resize {method}"] = common.throughput(lambda: next(it), args.batch, args.seconds)

        rng = np.random.default_rng(0)
        x = tf.constant(rng.uniform(0, 255, (args.batch, IMAGE_SIZE, IMAGE_SIZE, 3)).astype("float32"))
        y = tf.constant(rng.integers(0, info.num_classes, args.batch).astype("int32"))
        model = EmoNetClassifier(num_classes=info.num_classes, activation=None)
        steps = {}
        for mode in ("head only", "full"):
            model.backbone.trainable = mode == "full"
            steps[mode] = make_step(model, model.trainable_weights)
            results[f"train step, {mode} (constant batch)"] = common.throughput(
                lambda: steps[mode](x, y).numpy(), args.batch, args.seconds
            )
        model.backbone.trainable = False
        feed = batches(info, args.batch, "matlab")

        def fed_step():
            images, labels = next(feed)
            return steps["head only"](images, labels).numpy()

        results["pipeline (matlab) feeding the head-only step"] = common.throughput(fed_step, args.batch, args.seconds)

        builder = info.builder
        sample = next(iter(builder.as_dataset(split="train", decoders={"image": tfds.decode.SkipDecoding()}).take(1)))
        parts = per_image_breakdown(sample["image"].numpy(), args.seconds)
        epochs = {m: epoch_profile(info, args.batch, m) for m in ("matlab", "bicubic")}

        head = results["train step, head only (constant batch)"]
        full = results["train step, full (constant batch)"]
        print("\n| measurement | images/s | / head-only step | / full step | target |\n|---|---|---|---|---|")
        for name, value in results.items():
            target = (
                ("met" if value / head >= 3 else "missed") + " (>= 3x head-only)"
                if name.startswith("pipeline, ")
                else ""
            )
            print(f"| {name} | {value:.1f} | {value / head:.2f}x | {value / full:.2f}x | {target} |")
        print(f"\n### where one {width}x{height} frame's time goes in the pipeline map (single image, ms)\n")
        print("| op | ms/image |\n|---|---|")
        for name, value in parts.items():
            print(f"| {name} | {value:.1f} |")
        print(
            f"\n### epoch start versus steady state ({n_train} train frames = {n_train // args.batch} batches "
            f"per epoch; best of 3 epochs)\n"
        )
        print("| resize | epoch startup (s to first batch) | steady images/s within the epoch |\n|---|---|---|")
        for method, e in epochs.items():
            print(f"| {method} | {e['epoch startup s']:.2f} | {e['steady images/s']:.1f} |")
        print(f"\nload average at end: {os.getloadavg()}")
        common.write_json(
            args.out,
            {
                "batch": args.batch,
                "train_examples": n_train,
                "frame_size": [width, height],
                "images_per_second": results,
                "ratio_to_head_only_step": {k: v / head for k, v in results.items()},
                "per_image_ms": parts,
                "epoch_profile": epochs,
                "load_average_end": os.getloadavg(),
            },
        )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
