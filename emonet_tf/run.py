"""`emonet run`: the main job in one command.

With weights (``--weights PATH`` or ``$EMONET_WEIGHTS``), it is `emonet predict` on the given inputs
(or on generated clips when none are given), writing ``predictions.csv``, a time-course plot per
video and ``predictions.png`` (every input's probabilities) into ``--out``.

Without weights, it runs the whole path of the library on an embedded default, offline, in a few
minutes on two CPU cores:

1. generate labelled clips (seeded): one visually distinct motif per category, with noise, in the
   layout of the `video_folder` TFDS builder (``<root>/<label>/<clip>.mp4`` plus ``labels.csv``
   naming the held-out clips);
2. build the TFDS records with that builder;
3. train fc8 on the fc7 feature cache of a seeded random backbone (`train_and_evaluate`);
4. evaluate (top-1, per-category AUC, confusion matrix) and export a SavedModel;
5. predict the held-out clips through the exported SavedModel (`tf.saved_model.load`, bytes
   signature), and write the predictions CSV and plots.

These are NOT EmoNet's published weights: the backbone is random and the head learns the generated
motifs. Nothing is downloaded. The top level of this module imports no TensorFlow, so that
`emonet --help` stays fast (tests/test_cli_light.py).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import dataclasses
import logging
import math
import os
import pathlib
import sys
import time
from typing import Iterator, Optional, Sequence

import numpy as np

#: The embedded default: four of EmoNet's 20 categories, one generated motif each (see `motif_frame`).
DEFAULT_CATEGORIES = ("Amusement", "Awe", "Fear", "Sadness")
DEFAULT_OUT = "emonet_run"
#: Clip geometry: small frames keep generation, decoding and the build cheap; MATLAB resize brings them to 227.
FRAME_WIDTH, FRAME_HEIGHT, CLIP_FPS = 128, 96, 15
DEFAULT_CLIPS_PER_CATEGORY, DEFAULT_SECONDS, DEFAULT_EPOCHS = 6, 4.0, 8
#: Frames of a clip are every5-sampled: 15 fps -> 3 frames per second in the records and predictions.
DEFAULT_SAMPLING = "every5"
NOT_PUBLISHED = (
    "NOTE: no weights given, so these are NOT EmoNet's published weights: a seeded random AlexNet "
    "backbone with an fc8 head trained on generated clips. Nothing is downloaded. For real "
    "predictions: EMONET_WEIGHTS=emonet.keras emonet run photos/ clip.mp4 (docs/weights.md)."
)


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Defines the options of `emonet run` on `parser` (no TensorFlow needed)."""
    parser.add_argument(
        "inputs", nargs="*", help="with weights: images, videos or folders to predict (default: generated clips)"
    )
    parser.add_argument(
        "--weights",
        help="EmoNet weights (.keras, MATLAB text dump folder, .pth, ...; default: "
        "$EMONET_WEIGHTS); without them the built-in demo trains its own head",
    )
    parser.add_argument("--mean", help="mean image for weight files without one (.pth): img_mean.txt, .npy")
    parser.add_argument(
        "--out",
        default=DEFAULT_OUT,
        help=f"output folder (default: {DEFAULT_OUT}/); a demo run replaces its clips/, tfds/, model/ and plots/",
    )
    parser.add_argument("--sampling", default=DEFAULT_SAMPLING, help="video frames (default every5; see predict)")
    parser.add_argument(
        "--clips",
        type=int,
        default=DEFAULT_CLIPS_PER_CATEGORY,
        help=f"generated clips per category, >= 2 (default {DEFAULT_CLIPS_PER_CATEGORY})",
    )
    parser.add_argument(
        "--seconds",
        type=float,
        default=DEFAULT_SECONDS,
        help=f"length of a generated clip in seconds (default {DEFAULT_SECONDS:g})",
    )
    parser.add_argument(
        "--epochs",
        type=int,
        default=DEFAULT_EPOCHS,
        help=f"training epochs of the demo head (default {DEFAULT_EPOCHS})",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the clips, the backbone and the data order")
    # The spellings of the other commands and of train.py's absl flag.
    parser.add_argument(
        "--no-progress",
        "--noprogress",
        "--no_progress",
        dest="no_progress",
        action="store_true",
        help="no progress bars on stderr",
    )
    return parser


def check_arguments(args: argparse.Namespace) -> Optional[str]:
    """The first problem with the demo sizes, or None (the CLI turns it into a usage error)."""
    if args.clips < 2:
        return f"--clips must be at least 2 (one to train, one held out), got {args.clips}"
    if not (math.isfinite(args.seconds) and args.seconds * CLIP_FPS >= 1):
        return f"--seconds must give at least one frame at {CLIP_FPS} fps, got {args.seconds}"
    if args.epochs < 1:
        return f"--epochs must be at least 1, got {args.epochs}"
    return None


# ------------------------------------------------------------------------------------------------
# Steps: a short line each, with its wall time


class Steps:
    """Prints `[i/n] what ...` when a step starts and `[i/n] what: 12.3 s` (wall time) when it ends.

    `seconds` keeps each step's wall time in seconds, by name.
    """

    def __init__(self, total: int, stream=None):
        self.total, self.done, self.seconds = total, 0, {}
        self.stream = stream or sys.stdout

    @contextlib.contextmanager
    def step(self, name: str) -> Iterator[None]:
        self.done += 1
        print(f"[{self.done}/{self.total}] {name} ...", file=self.stream, flush=True)
        start = time.perf_counter()
        yield
        self.seconds[name] = time.perf_counter() - start
        print(f"[{self.done}/{self.total}] {name}: {self.seconds[name]:.1f} s", file=self.stream, flush=True)


def _say(line: str) -> None:
    print(line, flush=True)


@contextlib.contextmanager
def progress_logs(enabled: bool) -> Iterator[None]:
    """Shows the training bars' INFO lines (what they log when stderr is no terminal) once, plainly.

    Without a handler they would vanish; through a root handler they would come with a level prefix,
    and twice when the root logs too. The logger's settings are restored afterwards.
    """
    logger = logging.getLogger("emonet_tf.training.progress")
    if not enabled:
        yield
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    saved = logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(saved[0])
        logger.propagate = saved[1]


# ------------------------------------------------------------------------------------------------
# Generated clips


@dataclasses.dataclass(frozen=True)
class Clip:
    path: str  # the mp4 file
    label: str
    split: str  # "train" or "test" (held out: evaluation and predictions)


def motif_frame(
    category: int,
    t: float,
    rng: np.random.Generator,
    phase: float,
    width: int = FRAME_WIDTH,
    height: int = FRAME_HEIGHT,
) -> np.ndarray:
    """One RGB uint8 frame (height x width x 3) of category `category`'s motif at time `t` seconds.

    Motifs differ in colour and structure so that even a random backbone's relu7 separates them:
    0 warm yellow with moving dark dots, 1 green rings expanding from the centre, 2 dark red
    flickering diagonal stripes, 3 blue-grey with falling light streaks. `phase` (per clip) shifts
    the motion; Gaussian noise (sigma 12 grey levels) makes every frame different.
    """
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    k = category % 4
    if k == 0:
        img = np.empty((height, width, 3), np.float32)
        img[:] = (235, 200, 60)
        for i in range(3):
            cx = (0.5 + 0.4 * np.sin(1.3 * t + phase + 2.1 * i)) * width
            cy = (0.5 + 0.35 * np.cos(1.7 * t + phase + 1.3 * i)) * height
            img[(x - cx) ** 2 + (y - cy) ** 2 < 100] = (60, 40, 20)
    elif k == 1:
        r = np.hypot(x - width / 2, y - height / 2)
        wave = 0.5 + 0.5 * np.sin(r / 4.0 - 3.0 * t - phase)
        img = np.stack([40 + 180 * wave, 120 + 120 * wave, 60 + 100 * wave], axis=-1)
    elif k == 2:
        stripes = (np.sin((x + y) / 5.0 + 6.0 * t + phase) > 0.3).astype(np.float32)
        flicker = 0.6 + 0.4 * np.sin(11.0 * t + phase) ** 2
        img = np.stack([30 + 170 * stripes * flicker, 10 + 10 * stripes, 15 + 15 * stripes], axis=-1)
    else:
        drops = np.sin(x * 1.7 + phase) > 0.9
        fall = np.sin(y / 3.0 - 8.0 * t + x * 0.37) > 0.6
        light = (drops & fall).astype(np.float32)
        grad = y / height
        img = np.stack(
            [70 + 30 * grad + 150 * light, 85 + 30 * grad + 150 * light, 130 + 40 * grad + 110 * light], axis=-1
        )
    img = img + rng.normal(0.0, 12.0, img.shape)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def clip_splits(clips_per_category: int) -> list[str]:
    """Split of each clip index of a category: the last third (at least one) is held out as "test"."""
    held_out = max(1, clips_per_category // 3)
    return ["train"] * (clips_per_category - held_out) + ["test"] * held_out


def generate_clips(
    root: str,
    categories: Sequence[str] = DEFAULT_CATEGORIES,
    clips_per_category: int = DEFAULT_CLIPS_PER_CATEGORY,
    seconds: float = DEFAULT_SECONDS,
    seed: int = 0,
    progress=None,
) -> list[Clip]:
    """Writes `root/<label>/<label>_NN.mp4` (15 fps, 128x96, mp4v) and `root/labels.csv` (video,label,split).

    Deterministic in `seed`. This is the layout of the video_folder builder (docs/datasets.md); the
    CSV fixes which clips are held out. `progress.update(n)` is called per frame written.
    """
    from tfds_builders.make_dummy_data import write_video

    frames_per_clip = max(1, int(round(seconds * CLIP_FPS)))
    clips = []
    for c, label in enumerate(categories):
        for i, split in enumerate(clip_splits(clips_per_category)):
            rng = np.random.default_rng([seed, c, i])
            phase = float(rng.uniform(0, 2 * np.pi))
            frames = [motif_frame(c, n / CLIP_FPS, rng, phase) for n in range(frames_per_clip)]
            path = os.path.join(root, label, f"{label.lower()}_{i:02d}.mp4")
            write_video(pathlib.Path(path), CLIP_FPS, frames)
            clips.append(Clip(path, label, split))
            if progress is not None:
                progress.update(frames_per_clip)
    with open(os.path.join(root, "labels.csv"), "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["video", "label", "split"])
        writer.writerows([os.path.relpath(c.path, root), c.label, c.split] for c in clips)
    return clips


# ------------------------------------------------------------------------------------------------
# Records, training, SavedModel predictions


def build_records(root: str, data_dir: str, categories: Sequence[str], sampling: str = DEFAULT_SAMPLING):
    """Builds the video_folder TFDS records of the clips under `root` into `data_dir`; returns the builder."""
    import tensorflow_datasets as tfds

    from tfds_builders.video_folder import video_folder_dataset_builder as video_folder

    config = video_folder.VideoFolderConfig(name=f"emonet_run_{sampling}", sampling=sampling, labels=list(categories))
    builder = video_folder.Builder(root=root, config=config, data_dir=data_dir)
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig())
    return builder


def train_head(
    dataset_dir: str, model_dir: str, epochs: int = DEFAULT_EPOCHS, seed: int = 0, progress: bool = True
) -> dict:
    """Trains fc8 on the fc7 feature cache of a seeded random backbone; evaluates on "test"; exports.

    The learning rate is 10x the paper's 1e-4 because the demo has only tens of steps; 1e-2 overshoots
    (a random backbone's relu7 vectors have norms near 100 and share most of their direction).
    Returns train_and_evaluate's summary.
    """
    from emonet_tf.training import TrainConfig, train_and_evaluate

    config = TrainConfig(
        dataset=dataset_dir,
        model_dir=model_dir,
        init="scratch",
        train_layers="fc8",
        learning_rate=1e-3,
        global_batch_size=16,
        epochs=epochs,
        seed=seed,
        feature_cache=True,
        checkpoint_every=10_000,
        log_every=10_000,
        progress=progress,
    )
    return train_and_evaluate(config)


def predict_clips_saved_model(
    saved_model_dir: str, paths: Sequence[str], sampling: str = DEFAULT_SAMPLING, batch_size: int = 32, progress=None
) -> list:
    """Predicts every sampled frame of each video through the SavedModel's bytes signature.

    The frames are encoded as PNG (lossless), as a client of TF Serving would send them. Returns one
    `InputResult` per video (as `emonet predict` makes them), with per-frame predictions.
    """
    import tensorflow as tf

    from emonet_tf import cli, video
    from emonet_tf.inference import FramePrediction
    from tfds_builders.video_frames import encode_png

    serve = tf.saved_model.load(saved_model_dir).signatures["serving_default"]
    results = []
    for path in paths:
        frames = list(video.iter_frames(path, video.FrameSampling.parse(sampling)))
        result = cli.InputResult(path, "video")
        for start in range(0, len(frames), batch_size):
            chunk = frames[start : start + batch_size]
            out = serve(images_bytes=tf.constant([encode_png(f.image) for f in chunk]))
            for f, p, lg in zip(chunk, out["probabilities"].numpy(), out["logits"].numpy()):
                result.frames.append(FramePrediction(f.index, f.timestamp_ms, p, lg))
            if progress is not None:
                progress.update(len(chunk))
        result.probabilities = np.mean([f.probabilities for f in result.frames], axis=0, dtype=np.float64)
        result.logits = np.mean([f.logits for f in result.frames], axis=0, dtype=np.float64)
        results.append(result)
    return results


def write_predictions(
    results: Sequence, class_names: Sequence[str], csv_path: str, plot_dir: str, sampling: str
) -> list[str]:
    """`emonet predict`'s CSV rows (one per sampled frame plus a video mean) and a time course per video.

    Returns the plot paths.
    """
    from emonet_tf import cli, plots

    columns = ["source", "kind", "status", "frame_index", "timestamp_ms", "n_frames", "top1", "error", "damage"]
    writer = cli.RowWriter(columns + list(class_names), csv_path, None, {})
    plot_paths, used = [], set()
    try:
        for result in results:
            writer.write(cli.prediction_rows(result, class_names))
            path = os.path.join(plot_dir, cli._plot_name(result.source, used))
            plots.plot_emotion_timecourse(
                [f.timestamp_ms for f in result.frames],
                np.stack([f.probabilities for f in result.frames]),
                class_names,
                path,
                title=f"{os.path.basename(result.source)} ({sampling})",
            )
            plot_paths.append(path)
    finally:
        writer.close()
    return plot_paths


def read_prediction_summary(csv_path: str) -> tuple[list[str], list[str], np.ndarray]:
    """(sources, class names, probabilities N x C) of the image and video-mean rows of a predictions CSV."""
    with open(csv_path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        names = reader.fieldnames[reader.fieldnames.index("damage") + 1 :]
        rows = [r for r in reader if r["kind"] in ("image", "video_mean") and r["status"] != "failed"]
    probs = np.array([[float(r[n]) for n in names] for r in rows], dtype=np.float64).reshape(len(rows), len(names))
    return [r["source"] for r in rows], names, probs


def plot_summary(
    sources: Sequence[str], probabilities: np.ndarray, class_names: Sequence[str], path: str, title: str
) -> str:
    """Heatmap of each input's probabilities (rows: images and video means; columns: categories) as PNG."""
    from emonet_tf import plots

    plt = plots.pyplot()
    fig, ax = plt.subplots(figsize=(max(6.0, 0.45 * len(class_names) + 3), max(2.5, 0.35 * len(sources) + 1.8)))
    image = ax.imshow(probabilities, aspect="auto", cmap="viridis", vmin=0.0, vmax=max(1e-6, probabilities.max()))
    ax.set_xticks(range(len(class_names)), class_names, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(len(sources)), [os.path.basename(s) for s in sources], fontsize=8)
    fig.colorbar(image, ax=ax, label="probability")
    ax.set_title(title)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _frame_bar(total: int, desc: str, enabled: bool):
    from emonet_tf.training import progress

    return progress.bar(total, desc, enabled)


# ------------------------------------------------------------------------------------------------
# The two paths


def run_demo(
    out: str,
    clips_per_category: int = DEFAULT_CLIPS_PER_CATEGORY,
    seconds: float = DEFAULT_SECONDS,
    epochs: int = DEFAULT_EPOCHS,
    seed: int = 0,
    sampling: str = DEFAULT_SAMPLING,
    progress: bool = True,
    categories: Sequence[str] = DEFAULT_CATEGORIES,
) -> dict:
    """The whole path without weights (module docstring). Returns the paths written and the metrics."""
    import shutil

    _say(NOT_PUBLISHED)
    steps = Steps(5)
    paths = {
        "clips": os.path.join(out, "clips"),
        "records": os.path.join(out, "tfds"),
        "model_dir": os.path.join(out, "model"),
        "predictions_csv": os.path.join(out, "predictions.csv"),
        "plot_dir": os.path.join(out, "plots"),
    }
    # A demo run starts clean: a resumed model_dir or a stale cache would not match the new clips.
    for key in ("clips", "records", "model_dir", "plot_dir"):
        shutil.rmtree(paths[key], ignore_errors=True)
    with steps.step("generate labelled clips"):
        total = len(categories) * clips_per_category * max(1, int(round(seconds * CLIP_FPS)))
        with _frame_bar(total, "generate clips", progress) as bar:
            clips = generate_clips(paths["clips"], categories, clips_per_category, seconds, seed, bar)
        _say(
            f"    {len(clips)} clips ({sum(c.split == 'test' for c in clips)} held out) of "
            f"{', '.join(categories)} -> {paths['clips']}"
        )
    with steps.step("build TFDS records (video_folder builder)"):
        builder = build_records(paths["clips"], paths["records"], categories, sampling)
        counts = {s: builder.info.splits[s].num_examples for s in ("train", "test")}
        _say(f"    {counts['train']} train / {counts['test']} test frames ({sampling}) -> {builder.data_path}")
    with steps.step("train fc8 on a seeded random backbone's fc7 features, evaluate, export"):
        summary = train_head(os.fspath(builder.data_path), paths["model_dir"], epochs, seed, progress)
        metrics = summary["eval"]
        _say(
            f"    top-1 {metrics['top1']:.3f} (chance {1 / len(categories):.3f}), mean AUC "
            f"{metrics['mean_auc']:.3f} on {metrics['num_examples']} held-out frames"
        )
    saved_model = summary["export"]["saved_model"]
    held_out = [c.path for c in clips if c.split == "test"]
    with steps.step("predict the held-out clips through the exported SavedModel"):
        with _frame_bar(counts["test"], "SavedModel predictions", progress) as bar:
            results = predict_clips_saved_model(saved_model, held_out, sampling, progress=bar)
        truth = {c.path: c.label for c in clips}
        correct = sum(metrics["class_names"][int(np.argmax(r.probabilities))] == truth[r.source] for r in results)
        _say(f"    {correct}/{len(results)} held-out clips predicted as their category (mean of their frames)")
    with steps.step("write predictions CSV and plots"):
        names = list(metrics["class_names"])
        plots_written = write_predictions(results, names, paths["predictions_csv"], paths["plot_dir"], sampling)
        sources, _, probs = read_prediction_summary(paths["predictions_csv"])
        summary_plot = plot_summary(
            sources,
            probs,
            names,
            os.path.join(out, "predictions.png"),
            "held-out generated clips (mean of frames); NOT EmoNet's weights",
        )
    written = {
        "clips": paths["clips"],
        "records": os.fspath(builder.data_path),
        "model_dir": paths["model_dir"],
        "evaluation": summary["eval_files"]["json"],
        "confusion": summary["eval_files"]["confusion"],
        "auc": summary["eval_files"]["auc"],
        "saved_model": saved_model,
        "keras": summary["export"]["keras"],
        "predictions_csv": paths["predictions_csv"],
        "plot": summary_plot,
        "video_plots": plots_written,
    }
    _report(written, steps)
    return {
        "paths": written,
        "metrics": metrics,
        "records": counts,
        "clips": clips,
        "results": results,
        "clips_correct": correct,
        "seconds": steps.seconds,
    }


def run_with_weights(
    weights: str,
    inputs: Sequence[str],
    out: str,
    sampling: str = DEFAULT_SAMPLING,
    mean: Optional[str] = None,
    progress: bool = True,
    seed: int = 0,
) -> int:
    """`emonet predict` with `weights` on `inputs` (generated clips when empty); CSV and plots into `out`.

    Returns predict's exit status (0: something was predicted; 1: nothing could be).
    """
    from emonet_tf import cli

    steps = Steps(2 if inputs else 3)
    clips_dir = None
    if not inputs:
        with steps.step("generate clips to predict (no inputs given)"):
            clips_dir = os.path.join(out, "clips")
            clips = generate_clips(clips_dir, clips_per_category=1, seconds=DEFAULT_SECONDS, seed=seed)
            inputs = [os.path.dirname(c.path) for c in clips]
    csv_path, plot_dir = os.path.join(out, "predictions.csv"), os.path.join(out, "plots")
    argv = (
        ["predict", "--weights", weights, *inputs, "--csv", csv_path, "--plot-dir", plot_dir, "--sampling", sampling]
        + (["--mean", mean] if mean else [])
        + ([] if progress else ["--no-progress"])
    )
    # predict's own parser and command, but its messages say `emonet run:` (a UsageError reaches run's main).
    predict_args = cli.build_parser().parse_args(argv)
    predict_args.command = "run"
    found = len(cli.collect_inputs(inputs))
    with steps.step(f"predict {found} file(s) with {weights}"):
        status = cli.cmd_predict(predict_args)
    if status != cli.EXIT_OK:
        return status
    with steps.step("plot every input's probabilities"):
        sources, names, probs = read_prediction_summary(csv_path)
        plot = plot_summary(
            sources,
            probs,
            names,
            os.path.join(out, "predictions.png"),
            f"EmoNet ({os.path.basename(os.path.normpath(weights))})",
        )
    written = ({"clips": clips_dir} if clips_dir else {}) | {"predictions_csv": csv_path, "plot": plot}
    if os.path.isdir(plot_dir):
        written["video_plots"] = sorted(os.path.join(plot_dir, n) for n in os.listdir(plot_dir))
    _report(written, steps)
    return status


def _report(written: dict, steps: Steps) -> None:
    """Where each output went, then the total wall time."""
    _say("outputs:")
    for key, value in written.items():
        if isinstance(value, list):
            value = f"{len(value)} file(s) in {os.path.dirname(value[0])}" if value else "none"
        _say(f"    {key:<16} {value}")
    _say(f"total: {sum(steps.seconds.values()):.1f} s")


def main(args: argparse.Namespace) -> int:
    """`emonet run` (options: `add_arguments`). Raises `emonet_tf.cli.UsageError` for bad options or weights."""
    from emonet_tf import cli

    problem = check_arguments(args)
    if problem:
        raise cli.UsageError(problem)
    if os.path.exists(args.out) and not os.path.isdir(args.out):
        raise cli.UsageError(f"{args.out}: --out is a file; emonet run writes a folder")
    cli._check_output_folder(args.out, "--out")
    weights = args.weights or os.environ.get("EMONET_WEIGHTS")
    progress = not args.no_progress
    if weights:
        if not os.path.exists(weights):
            origin = "--weights" if args.weights else "EMONET_WEIGHTS"
            raise cli.UsageError(f"weights not found: {weights} (from {origin})")
        return run_with_weights(weights, args.inputs, args.out, args.sampling, args.mean, progress, args.seed)
    if args.inputs:
        raise cli.UsageError(
            "inputs need weights: pass --weights PATH or set EMONET_WEIGHTS (without weights, "
            "`emonet run` runs the built-in demo on generated clips)"
        )
    with progress_logs(progress):
        result = run_demo(args.out, args.clips, args.seconds, args.epochs, args.seed, args.sampling, progress)
    return cli.EXIT_OK if result["results"] else cli.EXIT_NOTHING_PROCESSED
