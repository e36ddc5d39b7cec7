"""Classification metrics as the paper reports them, plus confusion matrix, video-level metrics and plots.

- top-1 / top-5 accuracy (top-k is capped at the number of classes; tied scores: lower class index
  first, as argmax and MATLAB);
- one-vs-rest AUC per category (`sklearn.metrics.roc_auc_score`: equal to the Mann-Whitney U with
  ties counting half); a category without positives or without negatives in the split has no AUC:
  NaN, excluded from the mean;
- confusion matrix, rows = true category, columns = predicted category (counts);
- optional video-level metrics: the mean of the frame probabilities of each video_id, as the ecco lab
  computes them, with the video's label (the label of its frames).
The paper's figures (Kragel et al. 2019, 400 held-out videos, 20 classes) are printed beside ours.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from typing import Any, Callable, Optional, Sequence

import numpy as np
import sklearn.metrics
import tensorflow as tf

from emonet_tf.jsonio import json_safe

#: Kragel et al. 2019, holdout frames (24,634 images, 400 videos), and chance for 20 classes.
PAPER = {"top1": 0.2309, "top5": 0.626, "mean_auc": 0.745}
CHANCE = {"top1": 0.05, "top5": 0.2795, "mean_auc": 0.5}


def roc_auc(scores: np.ndarray, positives: np.ndarray) -> float:
    """Area under the ROC curve of `scores` (N,) for the boolean `positives` (N,); NaN if one class is absent.

    `sklearn.metrics.roc_auc_score`: the trapezoidal area, equal to the Mann-Whitney U statistic
    with ties counted 1/2, i.e. the probability that a random positive scores above a random negative.
    """
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    positives = np.asarray(positives, dtype=bool).reshape(-1)
    if positives.all() or not positives.any():  # undefined; roc_auc_score would warn and return NaN
        return float("nan")
    return float(sklearn.metrics.roc_auc_score(positives, scores))


def top_k_accuracy(probabilities: np.ndarray, labels: np.ndarray, k: int) -> float:
    """Fraction of rows of `probabilities` (N x C scores) whose integer label (N,) is among the k highest.

    k is capped at C (every label is then in the top k: 1.0). Ties are broken by the lower class index,
    as `np.argmax` (the confusion matrix's prediction) and MATLAB's `max`/`sort` do, so top-1 equals
    the confusion matrix's trace / N. `sklearn.metrics.top_k_accuracy_score` prefers the higher index
    among tied scores, so it is given the classes in reverse order. Scores may be probabilities or logits.
    """
    probabilities = np.asarray(probabilities)
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    num_classes = probabilities.shape[1]
    k = min(int(k), num_classes)
    if k == num_classes:
        return 1.0
    if k == 1:  # also the two-class case, which top_k_accuracy_score reads as binary 1-D scores
        return float(sklearn.metrics.accuracy_score(labels, probabilities.argmax(axis=1)))
    reverse = num_classes - 1 - labels  # class c becomes class C-1-c, and its column moves with it
    return float(
        sklearn.metrics.top_k_accuracy_score(reverse, probabilities[:, ::-1], k=k, labels=np.arange(num_classes))
    )


def confusion_matrix(labels: np.ndarray, predictions: np.ndarray, num_classes: int) -> np.ndarray:
    """Counts (num_classes x num_classes, int64), rows = true class, columns = predicted class.

    `sklearn.metrics.confusion_matrix` with every class listed, so absent classes keep their row and column.
    """
    return sklearn.metrics.confusion_matrix(labels, predictions, labels=np.arange(num_classes)).astype(np.int64)


def classification_metrics(probabilities: np.ndarray, labels: np.ndarray, class_names: Sequence[str]) -> dict[str, Any]:
    """top1, top5, per-category AUC (NaN when undefined), mean AUC, confusion matrix, counts."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    num_classes = len(class_names)
    if probabilities.ndim != 2 or probabilities.shape[1] != num_classes:
        raise ValueError(f"probabilities must be N x {num_classes}, got {probabilities.shape}")
    if probabilities.shape[0] != labels.shape[0]:
        raise ValueError(f"{probabilities.shape[0]} predictions for {labels.shape[0]} labels")
    if probabilities.shape[0] == 0:
        raise ValueError("no examples to evaluate")
    if labels.min() < 0 or labels.max() >= num_classes:
        raise ValueError(f"labels must lie in [0, {num_classes}), got {labels.min()}..{labels.max()}")
    aucs = [roc_auc(probabilities[:, c], labels == c) for c in range(num_classes)]
    defined = [a for a in aucs if not math.isnan(a)]
    return {
        "num_examples": int(labels.shape[0]),
        "top1": top_k_accuracy(probabilities, labels, 1),
        "top5": top_k_accuracy(probabilities, labels, 5),
        "auc": dict(zip(class_names, aucs)),
        "mean_auc": float(np.mean(defined)) if defined else float("nan"),
        "num_auc_categories": len(defined),
        "confusion_matrix": confusion_matrix(labels, probabilities.argmax(axis=1), num_classes).tolist(),
        "support": np.bincount(labels, minlength=num_classes).tolist(),
    }


def video_level(
    probabilities: np.ndarray, labels: np.ndarray, video_ids: Sequence
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Mean frame probabilities per video (first-seen order), the videos' labels and ids.

    Raises ValueError when the frames of one video carry different labels.
    """
    ids = [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in video_ids]
    order: dict[str, list[int]] = {}
    for i, vid in enumerate(ids):
        order.setdefault(vid, []).append(i)
    means, video_labels = [], []
    for vid, rows in order.items():
        frame_labels = np.unique(labels[rows])
        if frame_labels.size != 1:
            raise ValueError(f"video {vid!r} has frames with different labels {frame_labels.tolist()}")
        means.append(probabilities[rows].mean(axis=0))
        video_labels.append(int(frame_labels[0]))
    return np.stack(means), np.asarray(video_labels), list(order)


def metrics_from_predictions(
    probabilities: np.ndarray, labels: np.ndarray, class_names: Sequence[str], video_ids: Optional[Sequence] = None
) -> dict[str, Any]:
    """Frame-level metrics, and video-level ones under "video" when video ids are given."""
    probabilities = np.asarray(probabilities)
    labels = np.asarray(labels)
    result = classification_metrics(probabilities, labels, class_names)
    result["class_names"] = list(class_names)
    if video_ids is not None:
        video_probs, video_labels, ids = video_level(probabilities, labels, video_ids)
        result["video"] = classification_metrics(video_probs, video_labels, class_names)
        result["video"]["num_videos"] = len(ids)
    return result


def predict_dataset(model, dataset: tf.data.Dataset) -> tuple[np.ndarray, np.ndarray, Optional[np.ndarray]]:
    """Runs `model` (probabilities out) over (images, labels[, video_ids]) batches."""
    predict = tf.function(lambda x: tf.cast(model(x, training=False), tf.float32), reduce_retracing=True)
    probs, labels, videos = [], [], []
    for batch in dataset:
        probs.append(predict(batch[0]).numpy())
        labels.append(np.asarray(batch[1]))
        if len(batch) > 2:
            videos.append(np.asarray(batch[2]))
    if not probs:
        raise ValueError("the evaluation dataset is empty")
    return np.concatenate(probs), np.concatenate(labels), (np.concatenate(videos) if videos else None)


def evaluate_model(model, dataset: tf.data.Dataset, class_names: Sequence[str]) -> dict[str, Any]:
    """Metrics of a probability-output model (e.g. EmoNetClassifier) on (images, labels[, video_ids]) batches.

    Video-level metrics are added when the batches carry video ids (the third element).
    """
    probabilities, labels, video_ids = predict_dataset(model, dataset)
    return metrics_from_predictions(probabilities, labels, class_names, video_ids)


def format_report(metrics: dict[str, Any]) -> str:
    """Our metrics beside the paper's (20-way, 400 held-out videos) and chance, one line each."""
    n = len(metrics.get("class_names", [])) or len(metrics["auc"])
    lines = [
        f"{'metric':<10} {'ours':>8} {'paper':>8} {'chance':>8}   ({metrics['num_examples']} frames, "
        f"{n} classes; the paper: 24,634 frames of 400 videos, 20 classes)"
    ]
    chance = {"top1": 1.0 / n, "top5": min(5, n) / n, "mean_auc": 0.5} if n != 20 else CHANCE
    for key in ("top1", "top5", "mean_auc"):
        lines.append(f"{key:<10} {metrics[key]:>8.4f} {PAPER[key]:>8.4f} {chance[key]:>8.4f}")
    if "video" in metrics:
        v = metrics["video"]
        lines.append(
            f"video-level ({v['num_videos']} videos): top1 {v['top1']:.4f}, top5 {v['top5']:.4f}, "
            f"mean AUC {v['mean_auc']:.4f}"
        )
    return "\n".join(lines)


def write_report(metrics: dict[str, Any], out_dir: str, prefix: str = "eval") -> dict[str, str]:
    """Writes `<prefix>_metrics.json` (NaN as null), the confusion-matrix heatmap and the AUC bar chart."""
    os.makedirs(out_dir, exist_ok=True)
    paths = {
        "json": os.path.join(out_dir, f"{prefix}_metrics.json"),
        "confusion": os.path.join(out_dir, f"{prefix}_confusion.png"),
        "auc": os.path.join(out_dir, f"{prefix}_auc.png"),
    }
    with open(paths["json"], "w", encoding="utf-8") as f:
        json.dump(json_safe(metrics), f, indent=2)
    plot_confusion(metrics, paths["confusion"])
    plot_auc(metrics, paths["auc"])
    return paths


def _pyplot():
    import matplotlib  # imported lazily: only the plots need it

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_confusion(metrics: dict[str, Any], path: str) -> None:
    """Row-normalized confusion matrix heatmap (each true class sums to 1)."""
    plt = _pyplot()
    names = metrics["class_names"]
    matrix = np.asarray(metrics["confusion_matrix"], dtype=np.float64)
    rows = matrix.sum(axis=1, keepdims=True)
    normalized = np.divide(matrix, rows, out=np.zeros_like(matrix), where=rows > 0)
    size = max(4.0, 0.4 * len(names) + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    image = ax.imshow(normalized, cmap="viridis", vmin=0.0, vmax=1.0)
    ax.set_xticks(range(len(names)), names, rotation=90, fontsize=7)
    ax.set_yticks(range(len(names)), names, fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"Confusion (row-normalized), top-1 {metrics['top1']:.3f}")
    fig.colorbar(image, ax=ax, fraction=0.046)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_auc(metrics: dict[str, Any], path: str) -> None:
    """One bar per category (missing categories left empty), with chance (0.5) and the mean."""
    plt = _pyplot()
    names = metrics["class_names"]
    values = [metrics["auc"][n] for n in names]
    fig, ax = plt.subplots(figsize=(max(4.0, 0.35 * len(names) + 2), 4))
    ax.bar(range(len(names)), [0.0 if math.isnan(v) else v for v in values], color="tab:blue")
    ax.axhline(0.5, color="gray", linestyle="--", label="chance")
    if not math.isnan(metrics["mean_auc"]):
        ax.axhline(metrics["mean_auc"], color="tab:red", label=f"mean {metrics['mean_auc']:.3f}")
    ax.set_xticks(range(len(names)), names, rotation=90, fontsize=7)
    ax.set_ylim(0.0, 1.0)
    ax.set_ylabel("one-vs-rest AUC")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


# ------------------------------------------------------------------------------------------------
# Evaluation inputs: a labelled folder or a TFDS split


class EvaluationInputError(ValueError):
    """A labelled folder or dataset that cannot be evaluated; the message names the path and the problem."""


@dataclasses.dataclass
class EvaluationData:
    """Per-example outputs to score with `metrics_from_predictions`.

    ``probabilities``: N x C (softmax of fc8, float32, or float64 for folder videos' frames);
    ``labels``: N int64 model output indices; ``video_ids``: N ids (video path or dataset id) or None
    when no example comes from a video; ``inputs``: for a folder, what was left out (``failed``: source
    and error) or kept damaged (``damaged_kept``) under ``damaged_policy``; ``predictions``: the
    `predictions.PredictionsSummary` when a per-example table was written.
    """

    probabilities: np.ndarray
    labels: np.ndarray
    video_ids: Optional[Sequence] = None
    inputs: Optional[dict[str, Any]] = None
    predictions: Any = None


def label_map(source_names: Sequence[str], model_names: Sequence[str]) -> list[int]:
    """Model output index of each source label (-1 if the model has none), matched via canonical names
    (`categories.canonical_name`: "sexual_desire" and "Sexual Desire" are one category)."""
    from emonet_tf.categories import canonical_name

    def key(name):
        return canonical_name(name) or str(name).strip().lower()

    model_keys = {key(n): i for i, n in enumerate(model_names)}
    return [model_keys.get(key(n), -1) for n in source_names]


def _say(log: Optional[Callable[[str], None]], message: str) -> None:
    if log is not None:
        log(message)


def labelled_inputs(
    root: str, model_names: Sequence[str], log: Optional[Callable[[str], None]] = None
) -> tuple[list, list[int]]:
    """The files of a labelled folder, root/<category>/<images or videos> (nested folders walked), and the
    model output index of each (`media.InputFile`s, ints). A folder name that is none of `model_names` is
    skipped (said to `log`). Raises EvaluationInputError when `root` is not a folder or holds no file
    under a category folder."""
    from emonet_tf import media

    if not os.path.isdir(root):
        raise EvaluationInputError(f"{root}: not a folder (expected root/<label>/<image or video>)")
    label_dirs = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)))
    inputs, labels = [], []
    for label_dir, index in zip(label_dirs, label_map(label_dirs, model_names)):
        if index < 0:
            _say(log, f"folder {label_dir!r} is not one of the model's categories; skipped")
            continue
        found = media.collect_inputs([os.path.join(root, label_dir)])
        inputs.extend(found)
        labels.extend([index] * len(found))
    if not inputs:
        raise EvaluationInputError(f"{root}: no image or video files under folders named after the model's categories")
    return inputs, labels


def evaluate_folder(
    emonet,
    root: str,
    *,
    sampling: str = "every5",
    batch_size: int = 32,
    damaged: str = "skip",
    exif_orientation: Optional[bool] = None,
    progress=None,
    log: Optional[Callable[[str], None]] = None,
) -> EvaluationData:
    """Predicts a labelled folder, root/<category>/<images or videos>, for `metrics_from_predictions`.

    `emonet` is an `inference.EmoNet`. `labelled_inputs` finds the files, `evaluate_inputs` predicts them
    (see both for the arguments and the errors raised).
    """
    inputs, labels = labelled_inputs(root, emonet.class_names, log)
    return evaluate_inputs(
        emonet,
        inputs,
        labels,
        source=root,
        sampling=sampling,
        batch_size=batch_size,
        damaged=damaged,
        exif_orientation=exif_orientation,
        progress=progress,
        log=log,
    )


def evaluate_inputs(
    emonet,
    inputs: Sequence,
    labels: Sequence[int],
    *,
    source: str = "the inputs",
    sampling: str = "every5",
    batch_size: int = 32,
    damaged: str = "skip",
    exif_orientation: Optional[bool] = None,
    progress=None,
    log: Optional[Callable[[str], None]] = None,
) -> EvaluationData:
    """Predicts labelled inputs (`media.InputFile`s and the model output index of each) for metrics.

    One example per image and per sampled video frame (`sampling`), with its input's label; a file
    that cannot be read is left out, said to `log` and listed in ``inputs["failed"]``; damaged videos
    follow `damaged` ("skip" or "keep"). ``progress``: a tqdm-like bar counted in frames
    (`media.estimate_frames`). Raises EvaluationInputError (naming `source`) when no file could be read.
    """
    from emonet_tf import media

    labels_of = {item.path: label for item, label in zip(inputs, labels)}
    probs, example_labels, ids, failed, damaged_kept, has_video = [], [], [], [], [], False
    for result in media.iter_results(emonet, inputs, sampling, batch_size, progress, damaged, exif_orientation):
        if not result.ok:
            failed.append({"source": result.source, "error": result.error})
            _say(log, result.error)
            continue
        if result.damage is not None:
            damaged_kept.append({"source": result.source, "damage": result.damage, "frames": len(result.frames)})
            _say(
                log,
                f"{result.source}: damaged video, {media.kept_note(result)} are evaluated "
                f"(--damaged keep): {result.damage}",
            )
        rows = [f.probabilities for f in result.frames] if result.kind == "video" else [result.probabilities]
        has_video |= result.kind == "video"
        probs.extend(rows)
        example_labels.extend([labels_of[result.source]] * len(rows))
        ids.extend([result.source] * len(rows))
    if not probs:
        raise EvaluationInputError(f"{source}: none of the {len(inputs)} files could be read")
    if failed:
        _say(log, f"{len(failed)} of {len(inputs)} files could not be read and were left out")
    report = {"damaged_policy": damaged, "failed": failed, "damaged_kept": damaged_kept}
    return EvaluationData(np.stack(probs), np.asarray(example_labels, np.int64), ids if has_video else None, report)


def _counted(batches, progress):
    """The batches of `batches`, advancing `progress` by each batch's examples (frames)."""
    for batch in batches:
        yield batch
        if progress is not None:
            images = batch["image"] if isinstance(batch, dict) else batch[0]
            progress.update(int(images.shape[0]))


def _softmax_model(model):
    """`model` as images -> probabilities (a logits-output classifier gets a softmax)."""
    if getattr(model, "activation", "softmax") == "softmax":
        return model
    return lambda x, training=False: tf.nn.softmax(model(x, training=training))


def inspect_labelled_dataset(dataset: str, data_dir: Optional[str], split: str, model_names: Sequence[str]):
    """(`data.DatasetInfo`, model output index of each dataset label or -1) of a prepared TFDS split.

    Raises EvaluationInputError for a dataset that is neither a prepared builder folder nor a TFDS name,
    lacks the split or the features, or none of whose labels is an output of the model.
    """
    from emonet_tf import data

    try:
        info = data.inspect_dataset(dataset, data_dir, splits=(split,))
    except data.DatasetError as err:
        raise EvaluationInputError(str(err)) from None
    except ValueError as err:  # tfds' own parse error for names that are neither a dataset nor a folder
        raise EvaluationInputError(
            f"{dataset!r} is neither a prepared dataset folder (with dataset_info.json) "
            f"nor a TFDS name ({str(err).splitlines()[0]})"
        ) from None
    mapping = np.asarray(label_map(info.class_names, model_names))
    if (mapping < 0).all():
        raise EvaluationInputError(
            f"none of the labels of {info.name} ({', '.join(info.class_names[:5])}, ...) is an output of the model"
        )
    return info, mapping


def evaluate_dataset(
    emonet,
    info,
    mapping: np.ndarray,
    split: str,
    *,
    batch_size: int = 32,
    predictions_path: Optional[str] = None,
    fc7: Optional[str] = None,
    logits: bool = False,
    progress=None,
    log: Optional[Callable[[str], None]] = None,
) -> EvaluationData:
    """Predicts a TFDS split (`inspect_labelled_dataset` gives `info` and `mapping`) with `emonet.preprocessor`.

    With `predictions_path` (.csv or .parquet), also writes one row per example with `predictions.write_predictions`
    (video_id, frame_index, timestamp_ms, the dataset's label and label_name, the probabilities; `logits`
    adds logit_<class> columns, `fc7` = "columns" or "npy" the fc7 features). Examples whose label the
    model does not predict are left out of the returned arrays (said to `log`), not of the table.
    ``progress``: a tqdm-like bar counted in examples (frames). Raises `predictions.PredictionsError` for
    a bad suffix or fc7 mode, ImportError for Parquet without pyarrow, ValueError for an empty split.
    """
    from emonet_tf import data, predictions

    summary = None
    if predictions_path:
        batches = predictions.prediction_batches(info, split, batch_size=batch_size, preprocessor=emonet.preprocessor)
        summary = predictions.write_predictions(
            emonet.model,
            _counted(batches, progress),
            predictions_path,
            class_names=emonet.class_names,
            label_names=info.class_names,
            logits=logits,
            fc7=fc7,
            collect=True,
        )
        if summary.rows == 0:
            raise ValueError("the evaluation dataset is empty")
        probs, labels, video_ids = summary.probabilities, summary.labels, summary.video_ids
    else:
        ds = data.eval_dataset(info, split, batch_size=batch_size, preprocessor=emonet.preprocessor, with_video_id=True)
        probs, labels, video_ids = predict_dataset(_softmax_model(emonet.model), _counted(ds, progress))
    labels = mapping[labels]
    keep = labels >= 0
    if not keep.all():
        dropped = sorted({info.class_names[i] for i in np.flatnonzero(mapping < 0)})
        _say(
            log,
            f"{int((~keep).sum())} examples with labels the model does not predict were left out "
            f"({', '.join(dropped)})",
        )
    ids = video_ids[keep] if video_ids is not None else None
    return EvaluationData(probs[keep], labels[keep], ids, predictions=summary)
