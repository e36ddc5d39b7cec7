"""The `emonet` command: predict, evaluate, convert, export, affect and activations.

    emonet predict --weights emonet.keras photos/ trailer.mp4 --csv out.csv --plot-dir plots/
    emonet evaluate --weights emonet.keras --folder labelled/ --out_dir eval/
    emonet convert data/ emonet.keras
    emonet export --weights emonet.keras --out models/emonet/1 --tflite --keras
    emonet affect --weights emonet.keras photos/            # valence/arousal, emonet-py read-outs
    emonet affect --weights emonet.keras --fit ratings.csv --out my_readouts.json
    emonet activations --weights emonet.keras --layer fc7 photos/ --out fc7.npz
    emonet run            # the main job; without weights: the whole path on generated clips (emonet_tf.run)

Exit status (documented in docs/serving.md): 0 when at least one input was processed (inputs that
failed are reported by name on stderr and in the output rows), 1 when nothing could be processed,
2 for a usage error (bad arguments, unreadable weights, unknown layer or dataset).

Damaged videos (decoder error, or a stream that ends before its own duration; see emonet_tf.video)
follow one policy in predict, evaluate --folder, affect and activations, chosen with
`--damaged {skip,keep}`: skip (default) reports the video as failed and writes no row of it; keep
uses the frames that decoded and marks every output row of the video (status "damaged").

`--weights` defaults to the EMONET_WEIGHTS environment variable. argparse (not absl) because
this is a user-facing tool with subcommands; absl flags belong to the training script.
"""
from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import math
import os
import re
import sys
from typing import Any, Iterable, Iterator, Optional, Sequence

import numpy as np

EXIT_OK = 0
EXIT_NOTHING_PROCESSED = 1
EXIT_USAGE = 2

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".jpe", ".png", ".gif", ".bmp", ".tif", ".tiff", ".webp"})


def _video_extensions() -> frozenset:
    """emonet_tf.video.VIDEO_EXTENSIONS, the one list of video extensions (shared with the TFDS builders)."""
    from emonet_tf import video

    return frozenset(video.VIDEO_EXTENSIONS)


class UsageError(Exception):
    """A problem with the command line or its files that stops the command (exit status 2)."""


# ------------------------------------------------------------------------------------------------
# Inputs

@dataclasses.dataclass(frozen=True)
class InputFile:
    path: str
    kind: str  # "image" or "video"
    error: Optional[str] = None  # known to fail before reading (e.g. a folder named like a video)


def kind_of(path: str) -> str:
    """"video" for a video extension, else "image" (an unreadable file is then reported by the decoder)."""
    return "video" if os.path.splitext(path)[1].lower() in _video_extensions() else "image"


def is_media_name(path: str) -> bool:
    """Whether the name ends in one of the image or video extensions that folder walks pick up."""
    ext = os.path.splitext(path)[1].lower()
    return ext in IMAGE_EXTENSIONS or ext in _video_extensions()


def collect_inputs(paths: Sequence[str]) -> list[InputFile]:
    """Files as given, and folders walked recursively (sorted) for image and video extensions.

    A path given explicitly is kept even when missing or of an unknown type, so that it is reported
    by name instead of silently skipped. A folder given explicitly whose name has an image or video
    extension (``clip.mp4/``) is such a path too: reported as failed ("not a regular file"), not walked.
    """
    video_ext = _video_extensions()
    found: list[InputFile] = []
    for path in paths:
        if os.path.isdir(path) and is_media_name(os.path.normpath(path)):
            found.append(InputFile(path, kind_of(os.path.normpath(path)),
                                   error=f"{path}: not a regular file (a folder named like an image or video)"))
        elif os.path.isdir(path):
            for root, dirs, files in os.walk(path):
                dirs.sort()
                for name in sorted(files):
                    ext = os.path.splitext(name)[1].lower()
                    if ext in IMAGE_EXTENSIONS or ext in video_ext:
                        full = os.path.join(root, name)
                        found.append(InputFile(full, kind_of(full)))
        elif os.path.exists(path) and not os.path.isfile(path):
            # A FIFO or device would block or stream forever in a decoder: reported, never read.
            found.append(InputFile(path, kind_of(path), error=f"{path}: not a regular file"))
        else:
            found.append(InputFile(path, kind_of(path)))
    return found


def unknown_type_error(path: str, image_error: str) -> str:
    """The error of a file of unknown extension that the image decoder refused: what the image decoder
    and the video reader said of it (an audio-only .m4a is then "no video stream", not just "not an image")."""
    from emonet_tf import video

    prefix = f"{path}: "
    image_said = image_error[len(prefix):] if image_error.startswith(prefix) else image_error
    try:
        video.probe_video(path)
    except video.VideoReadError as err:
        video_said = err.problem
    except Exception as err:  # noqa: BLE001 -- only used to word the error
        video_said = f"{type(err).__name__}: {err}"
    else:
        video_said = ("it reads as a video, but its extension is not a video extension: rename it with one of "
                      + " ".join(sorted(_video_extensions())))
    ext = os.path.splitext(path)[1] or "(none)"
    return (f"{path}: unknown file type (extension {ext}): image decoder: {image_said}; "
            f"video reader: {video_said}")


def _image_error(path: str, error: Optional[str]) -> Optional[str]:
    """An image's error, worded for both readers when the file's extension is neither an image's nor a video's."""
    if error is None or is_media_name(path) or not os.path.isfile(path):
        return error
    return unknown_type_error(path, error)


@dataclasses.dataclass
class InputResult:
    """What one input file gave: an image's or a video's mean outputs, the video's frames, or an error."""

    source: str
    kind: str
    probabilities: Optional[np.ndarray] = None
    logits: Optional[np.ndarray] = None
    frames: list = dataclasses.field(default_factory=list)  # inference.FramePrediction
    error: Optional[str] = None
    damage: Optional[str] = None  # a damaged video kept under --damaged keep: what was wrong
    frames_decoded: Optional[int] = None  # a video's decoded frames (all, not only the sampled), when known

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def status(self) -> str:
        """"ok", "damaged" (a damaged video whose decoded frames were used) or "failed"."""
        if not self.ok:
            return "failed"
        return "damaged" if self.damage is not None else "ok"


def frames_note(sampled: int, decoded: Optional[int]) -> str:
    """`15 sampled frames (of 45 decoded)`: the count used, and the decoder's count when known."""
    text = f"{sampled} sampled frame{'' if sampled == 1 else 's'}"
    return text if decoded is None else f"{text} (of {decoded} decoded)"


def damaged_error(err, policy: str, sampled: Optional[int] = None) -> str:
    """The error reported for an input that failed; a damaged video skipped says how to keep it instead.

    ``sampled``: how many frames the sampling had taken before the damage was found (what --damaged
    keep would use); ``err.frames_decoded`` counts every decoded frame.
    """
    from emonet_tf import video

    if isinstance(err, video.VideoDamagedError) and policy == "skip":
        if sampled is None:
            return f"{err} [damaged video skipped; --damaged keep uses its sampled frames (of {err.frames_decoded} decoded)]"
        return f"{err} [damaged video skipped; --damaged keep uses its {frames_note(sampled, err.frames_decoded)}]"
    return str(err)


def kept_note(result: "InputResult") -> str:
    """`its 15 sampled frames (of 45 decoded)` of a damaged video kept under --damaged keep."""
    return f"its {frames_note(len(result.frames), result.frames_decoded)}"


def _exif(args) -> bool:
    """--exif-orientation (commands without the flag: off)."""
    return bool(getattr(args, "exif_orientation", False))


def _progress(total: int, args, unit: str = "file"):
    from tqdm import tqdm

    return tqdm(total=total, unit=unit, file=sys.stderr, dynamic_ncols=True,
                disable=True if getattr(args, "no_progress", False) else None)


def iter_results(emonet, inputs: Sequence[InputFile], sampling: str, batch_size: int, bar=None,
                 damaged: str = "skip", exif_orientation: bool = False) -> Iterator[InputResult]:
    """Predicts every input in order; runs of images go through the threaded batch path, videos stream frames.

    ``damaged``: the damaged-video policy (module docstring); a kept damaged video has ``damage`` set.
    ``exif_orientation``: apply images' EXIF Orientation tag (--exif-orientation; off, as MATLAB's imread).
    """
    from emonet_tf import video

    i = 0
    while i < len(inputs):
        if inputs[i].error is not None:
            if bar is not None:
                bar.update(1)
            yield InputResult(inputs[i].path, inputs[i].kind, error=inputs[i].error)
            i += 1
            continue
        if inputs[i].kind == "video":
            path = inputs[i].path
            result = InputResult(path, "video")
            try:
                stream = emonet.iter_predict_video(path, sampling, batch_size=batch_size, damaged=damaged)
                for frame in stream:
                    result.frames.append(frame)
                    if bar is not None:
                        bar.set_postfix_str(f"{os.path.basename(path)}: {len(result.frames)} frames", refresh=False)
                result.damage = stream.damage
                result.frames_decoded = getattr(stream, "frames_decoded", None)
            except video.VideoReadError as err:
                result.error = damaged_error(err, damaged, sampled=len(result.frames))
                result.frames = []  # a video that broke off is not averaged over its first part
            if result.ok:
                # float64 means: a linear read-out of the mean then equals the mean of the frames' read-outs.
                result.probabilities = np.mean([f.probabilities for f in result.frames], axis=0, dtype=np.float64)
                result.logits = np.mean([f.logits for f in result.frames], axis=0, dtype=np.float64)
            if bar is not None:
                bar.update(1)
            yield result
            i += 1
            continue
        j = i
        while j < len(inputs) and inputs[j].kind != "video" and inputs[j].error is None:
            j += 1
        for item, pred in zip(inputs[i:j], emonet.iter_predict_images([x.path for x in inputs[i:j]],
                                                                       batch_size=batch_size,
                                                                       exif_orientation=exif_orientation)):
            if bar is not None:
                bar.update(1)
            yield InputResult(pred.source, "image", pred.probabilities, pred.logits,
                              error=_image_error(item.path, pred.error))
        i = j


def prediction_rows(result: InputResult, class_names: Sequence[str]) -> list[dict[str, Any]]:
    """One row per image, or per sampled frame plus a `video_mean` row; error rows keep the file name.

    Every row carries the input's `status` (ok, damaged, failed) and, for a kept damaged video, its
    `damage`, so that no row of a damaged or failed input can be mistaken for a healthy one.
    """
    def row(kind, probs, index=None, ts=None, n_frames=None, error=None):
        r: dict[str, Any] = {"source": result.source, "kind": kind, "status": result.status, "frame_index": index,
                             "timestamp_ms": ts, "n_frames": n_frames, "top1": None, "error": error,
                             "damage": result.damage}
        if probs is not None:
            r["top1"] = class_names[int(np.argmax(probs))]
            r.update({name: float(p) for name, p in zip(class_names, probs)})
        return r

    if not result.ok:
        return [row(result.kind, None, error=result.error)]
    if result.kind == "image":
        return [row("image", result.probabilities)]
    rows = [row("frame", f.probabilities, f.index, round(float(f.timestamp_ms), 3)) for f in result.frames]
    rows.append(row("video_mean", result.probabilities, n_frames=len(result.frames)))
    return rows


class RowWriter:
    """Streams rows to --csv as they come (so a long run keeps what it did) and collects them for --json."""

    def __init__(self, columns: Sequence[str], csv_path: Optional[str], json_path: Optional[str],
                 metadata: dict[str, Any]):
        self.columns = list(columns)
        self.json_path = json_path
        self.metadata = metadata
        self.rows: list[dict[str, Any]] = []
        self._file = None
        self._csv = None
        if csv_path:
            os.makedirs(os.path.dirname(os.path.abspath(csv_path)), exist_ok=True)
            self._file = open(csv_path, "w", newline="", encoding="utf-8")
            self._csv = csv.DictWriter(self._file, fieldnames=self.columns, extrasaction="ignore")
            self._csv.writeheader()

    def write(self, rows: Iterable[dict[str, Any]]) -> None:
        for r in rows:
            if self._csv is not None:
                self._csv.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in self.columns})
            if self.json_path:
                self.rows.append({k: r.get(k) for k in self.columns})
        if self._file is not None:
            self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
        if self.json_path:
            os.makedirs(os.path.dirname(os.path.abspath(self.json_path)), exist_ok=True)
            with open(self.json_path, "w", encoding="utf-8") as f:
                json.dump(dict(self.metadata, rows=self.rows), f, indent=1, allow_nan=False)


def _short(path: str) -> str:
    """The path as the user will recognize it: relative to the working folder when inside it."""
    rel = os.path.relpath(path) if os.path.isabs(path) else path
    return path if rel.startswith("..") else rel


def _say(line: str, stream=None) -> None:
    from tqdm import tqdm

    tqdm.write(line, file=stream or sys.stdout)


def _plot_name(source: str, used: set) -> str:
    """`<video name>_emotions.png`; a second video of the same name gets `_2`, `_3`, ..."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", os.path.splitext(os.path.basename(source))[0]) or "video"
    name, n = f"{stem}_emotions.png", 1
    while name in used:
        n += 1
        name = f"{stem}_{n}_emotions.png"
    used.add(name)
    return name


# ------------------------------------------------------------------------------------------------
# Model loading

def load_emonet(args):
    """EmoNet from --weights (any format EmoNet.from_weights reads), or a UsageError that says why not."""
    from emonet_tf.inference import EmoNet
    from emonet_tf.weights import WeightFormatError

    path = args.weights or os.environ.get("EMONET_WEIGHTS")
    if not path:
        raise UsageError("no weights: pass --weights PATH (a .keras file, a MATLAB text dump folder, a .pth, ...) "
                         "or set EMONET_WEIGHTS")
    try:
        return EmoNet.from_weights(path, mean=getattr(args, "mean", None), resize_method=args.resize_method)
    except (FileNotFoundError, WeightFormatError, OSError, ValueError) as err:
        raise UsageError(f"cannot load weights from {path}: {err}") from None


# ------------------------------------------------------------------------------------------------
# predict

def cmd_predict(args) -> int:
    from emonet_tf.inference import top_k

    emonet = load_emonet(args)
    names = list(emonet.class_names)
    inputs = collect_inputs(args.inputs)
    if not inputs:
        print(f"emonet predict: no image or video files found in {', '.join(args.inputs)}", file=sys.stderr)
        return EXIT_NOTHING_PROCESSED
    columns = ["source", "kind", "status", "frame_index", "timestamp_ms", "n_frames", "top1", "error", "damage"] + names
    writer = RowWriter(columns, args.csv, args.json, {
        "weights": args.weights or os.environ.get("EMONET_WEIGHTS"), "sampling": args.sampling,
        "damaged": args.damaged, "resize_method": args.resize_method, "exif_orientation": _exif(args),
        "class_names": names})
    ok = failed = 0
    damaged: list[str] = []
    plot_names: set = set()
    _say(f"{'file':<48}  {'kind':<5}  top-{args.top}")
    with _progress(len(inputs), args) as bar:
        try:
            for result in iter_results(emonet, inputs, args.sampling, args.batch_size, bar, args.damaged,
                                       _exif(args)):
                writer.write(prediction_rows(result, names))
                if not result.ok:
                    failed += 1
                    _say(f"{_short(result.source):<48}  {result.kind:<5}  ERROR: {result.error}")
                    _say(f"emonet predict: {result.error}", sys.stderr)
                    continue
                ok += 1
                top = ", ".join(f"{n} {p:.3f}" for n, p in top_k(result.probabilities, names, args.top))
                extra = f" (mean of {len(result.frames)} frames)" if result.kind == "video" else ""
                if result.damage is not None:
                    damaged.append(result.source)
                    extra += " DAMAGED, kept (--damaged keep)"
                    _say(f"emonet predict: {result.source}: damaged video, {kept_note(result)} were used "
                         f"(--damaged keep): {result.damage}", sys.stderr)
                _say(f"{_short(result.source):<48}  {result.kind:<5}  {top}{extra}")
                if args.plot_dir and result.kind == "video":
                    from emonet_tf import plots

                    path = os.path.join(args.plot_dir, _plot_name(result.source, plot_names))
                    plots.plot_emotion_timecourse([f.timestamp_ms for f in result.frames],
                                                  np.stack([f.probabilities for f in result.frames]), names, path,
                                                  title=f"{os.path.basename(result.source)} ({args.sampling})")
                    _say(f"plot: {path}", sys.stderr)
        finally:
            writer.close()
    _say(f"{ok} predicted, {failed} failed{_damaged_note(damaged)}", sys.stderr)
    return EXIT_OK if ok else EXIT_NOTHING_PROCESSED


def _damaged_note(sources: Sequence[str]) -> str:
    """`, 2 damaged videos kept (a.mp4, b.avi)` for the final summary line; empty when there were none."""
    if not sources:
        return ""
    return f", {len(sources)} damaged video{'s' if len(sources) > 1 else ''} kept ({', '.join(map(_short, sources))})"


# ------------------------------------------------------------------------------------------------
# evaluate

def _label_map(source_names: Sequence[str], model_names: Sequence[str]) -> list[int]:
    """Model output index of each source label (-1 if the model has none), matched via canonical names."""
    from emonet_tf.categories import canonical_name

    def key(name):
        return canonical_name(name) or str(name).strip().lower()

    model_keys = {key(n): i for i, n in enumerate(model_names)}
    return [model_keys.get(key(n), -1) for n in source_names]


def cmd_evaluate(args) -> int:
    from emonet_tf import evaluation

    if bool(args.dataset) == bool(args.folder):
        raise UsageError("evaluate needs exactly one of --dataset (TFDS name or builder folder) and --folder")
    emonet = load_emonet(args)
    names = list(emonet.class_names)
    inputs_report = None
    if args.dataset:
        probs, labels, video_ids = _evaluate_tfds(emonet, args)
    else:
        probs, labels, video_ids, inputs_report = _evaluate_folder(emonet, args)
    metrics = evaluation.metrics_from_predictions(probs, labels, names, video_ids)
    metrics["source"] = args.dataset or args.folder
    if inputs_report is not None:
        # Which files are not in the metrics (failed) and which videos count with part of their frames.
        metrics["inputs"] = inputs_report
    paths = evaluation.write_report(metrics, args.out_dir)
    print(evaluation.format_report(metrics))
    for kind, path in paths.items():
        print(f"{kind}: {path}")
    return EXIT_OK


def _evaluate_tfds(emonet, args):
    import tensorflow as tf

    from emonet_tf import data, evaluation

    try:
        info = data.inspect_dataset(args.dataset, args.data_dir, splits=(args.split,))
    except data.DatasetError as err:
        raise UsageError(str(err)) from None
    except ValueError as err:  # tfds' own parse error for names that are neither a dataset nor a folder
        raise UsageError(f"{args.dataset!r} is neither a prepared dataset folder (with dataset_info.json) nor a "
                         f"TFDS name ({str(err).splitlines()[0]})") from None
    mapping = np.asarray(_label_map(info.class_names, emonet.class_names))
    if (mapping < 0).all():
        raise UsageError(f"none of the labels of {info.name} ({', '.join(info.class_names[:5])}, ...) is an output "
                         f"of the model")
    ds = data.eval_dataset(info, args.split, batch_size=args.batch_size, resize_method=emonet.resize_method,
                           antialias=emonet.antialias, with_video_id=True)
    model = emonet.model
    if getattr(model, "activation", "softmax") != "softmax":
        logits_model = model
        model = lambda x, training=False: tf.nn.softmax(logits_model(x, training=training))  # noqa: E731
    total = math.ceil(info.num_examples(args.split) / args.batch_size)
    with _progress(total, args, unit="batch") as bar:
        def batches():
            for batch in ds:
                yield batch
                bar.update(1)

        probs, labels, video_ids = evaluation.predict_dataset(model, batches())
    labels = mapping[labels]
    keep = labels >= 0
    if not keep.all():
        dropped = sorted({info.class_names[i] for i in np.flatnonzero(mapping < 0)})
        print(f"emonet evaluate: {int((~keep).sum())} examples with labels the model does not predict were left "
              f"out ({', '.join(dropped)})", file=sys.stderr)
    return probs[keep], labels[keep], (video_ids[keep] if video_ids is not None else None)


def _evaluate_folder(emonet, args):
    root = args.folder
    if not os.path.isdir(root):
        raise UsageError(f"{root}: not a folder (expected root/<label>/<image or video>)")
    label_dirs = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)))
    mapping = _label_map(label_dirs, emonet.class_names)
    inputs, labels_of = [], {}
    for label_dir, index in zip(label_dirs, mapping):
        if index < 0:
            print(f"emonet evaluate: folder {label_dir!r} is not one of the model's categories; skipped",
                  file=sys.stderr)
            continue
        for item in collect_inputs([os.path.join(root, label_dir)]):
            inputs.append(item)
            labels_of[item.path] = index
    if not inputs:
        raise UsageError(f"{root}: no image or video files under folders named after the model's categories")
    probs, labels, ids, failed, damaged, has_video = [], [], [], [], [], False
    with _progress(len(inputs), args) as bar:
        for result in iter_results(emonet, inputs, args.sampling, args.batch_size, bar, args.damaged,
                                   _exif(args)):
            if not result.ok:
                failed.append({"source": result.source, "error": result.error})
                _say(f"emonet evaluate: {result.error}", sys.stderr)
                continue
            if result.damage is not None:
                damaged.append({"source": result.source, "damage": result.damage, "frames": len(result.frames)})
                _say(f"emonet evaluate: {result.source}: damaged video, {kept_note(result)} are evaluated "
                     f"(--damaged keep): {result.damage}", sys.stderr)
            rows = [f.probabilities for f in result.frames] if result.kind == "video" else [result.probabilities]
            has_video |= result.kind == "video"
            probs.extend(rows)
            labels.extend([labels_of[result.source]] * len(rows))
            ids.extend([result.source] * len(rows))
    if not probs:
        raise UsageError(f"{root}: none of the {len(inputs)} files could be read")
    if failed:
        print(f"emonet evaluate: {len(failed)} of {len(inputs)} files could not be read and were left out",
              file=sys.stderr)
    inputs_report = {"damaged_policy": args.damaged, "failed": failed, "damaged_kept": damaged}
    return np.stack(probs), np.asarray(labels), (ids if has_video else None), inputs_report


# ------------------------------------------------------------------------------------------------
# convert, export

def cmd_convert(args) -> int:
    from emonet_tf import weights

    try:
        summary = weights.convert(args.src, args.dst, format=args.format, new_head_classes=args.new_head_classes,
                                  mean=args.mean, fc6_order=args.fc6_order)
    except (weights.WeightFormatError, FileNotFoundError, ValueError) as err:
        raise UsageError(str(err)) from None
    print(summary)
    return EXIT_OK


def cmd_export(args) -> int:
    from emonet_tf import export, preprocessing

    emonet = load_emonet(args)
    out = os.path.normpath(args.out)
    print(export.export_saved_model(emonet.model, out, include_features=args.include_features,
                                    resize_method=args.resize_method))
    if args.keras:
        print(export.export_keras(emonet.model, args.keras if args.keras is not True else out + ".keras"))
    if args.tflite:
        check = None
        if args.check_image:
            check = preprocessing.load_image(args.check_image, method=emonet.resize_method)
        else:  # a smooth synthetic image exercises every layer without needing a file
            yy, xx = np.mgrid[0:227, 0:227].astype(np.float32)
            check = np.stack([xx * 255 / 226, yy * 255 / 226, (xx + yy) * 255 / 452], axis=-1)
        print(export.export_tflite(emonet.model, args.tflite if args.tflite is not True else out + ".tflite",
                                   check_image=check))
    return EXIT_OK


# ------------------------------------------------------------------------------------------------
# affect

def _features_for(emonet, paths: Sequence[str], args) -> tuple[list[InputResult], int]:
    inputs = [InputFile(p, kind_of(p)) for p in paths]
    results, failed = [], 0
    with _progress(len(inputs), args) as bar:
        for result in iter_results(emonet, inputs, args.sampling, args.batch_size, bar, args.damaged,
                                   _exif(args)):
            if not result.ok:
                failed += 1
                _say(f"emonet affect: {result.error}", sys.stderr)
            elif result.damage is not None:
                _say(f"emonet affect: {result.source}: damaged video, {kept_note(result)} were used "
                     f"(--damaged keep): {result.damage}", sys.stderr)
            results.append(result)
    return results, failed


def _resolve(name: str, root: Optional[str], table: str) -> str:
    if os.path.isabs(name):
        return name
    base = root if root else os.path.dirname(os.path.abspath(table))
    return os.path.join(base, name)


def cmd_affect(args) -> int:
    from emonet_tf import affect

    if args.fit:
        return _affect_fit(args)
    if not args.inputs:
        raise UsageError("affect needs input files or folders (or --fit RATINGS.csv to fit new read-outs)")
    try:
        readouts = affect.load_readouts(args.coefficients) if args.coefficients else affect.emonet_py_readouts()
    except affect.ReadoutError as err:
        raise UsageError(str(err)) from None
    emonet = load_emonet(args)
    try:
        affect.check_class_names(readouts, emonet.class_names)
    except affect.ReadoutError as err:
        raise UsageError(str(err)) from None
    inputs = collect_inputs(args.inputs)
    if not inputs:
        print(f"emonet affect: no image or video files found in {', '.join(args.inputs)}", file=sys.stderr)
        return EXIT_NOTHING_PROCESSED
    targets = list(readouts)
    columns = ["source", "kind", "status", "frame_index", "timestamp_ms", "n_frames", "error", "damage"] + targets
    writer = RowWriter(columns, args.csv, args.json, {
        "weights": args.weights or os.environ.get("EMONET_WEIGHTS"), "sampling": args.sampling,
        "damaged": args.damaged, "exif_orientation": _exif(args),
        "coefficients": args.coefficients or "emonet-py 1.0.8 (published)", "input": affect.INPUT_SPACE})
    ok = 0
    _say(f"{'file':<48}  {'kind':<5}  " + "  ".join(f"{t:>9}" for t in targets))
    with _progress(len(inputs), args) as bar:
        try:
            for result in iter_results(emonet, inputs, args.sampling, args.batch_size, bar, args.damaged,
                                       _exif(args)):
                base = {"source": result.source, "kind": result.kind, "status": result.status, "error": result.error,
                        "damage": result.damage}
                if not result.ok:
                    writer.write([base])
                    _say(f"{_short(result.source):<48}  {result.kind:<5}  ERROR: {result.error}")
                    _say(f"emonet affect: {result.error}", sys.stderr)
                    continue
                ok += 1
                rows = []
                for f in result.frames:
                    rows.append(dict(base, kind="frame", frame_index=f.index, timestamp_ms=round(f.timestamp_ms, 3),
                                     **{t: float(r.predict(f.logits)) for t, r in readouts.items()}))
                mean = {t: float(r.predict(result.logits)) for t, r in readouts.items()}
                kind = "video_mean" if result.kind == "video" else "image"
                rows.append(dict(base, kind=kind, n_frames=len(result.frames) or None, **mean))
                writer.write(rows)
                _say(f"{_short(result.source):<48}  {result.kind:<5}  " +
                     "  ".join(f"{mean[t]:>9.3f}" for t in targets))
        finally:
            writer.close()
    return EXIT_OK if ok else EXIT_NOTHING_PROCESSED


def _affect_fit(args) -> int:
    from emonet_tf import affect

    if not args.out:
        raise UsageError("--fit needs --out FILE.json for the fitted coefficients")
    targets = [t.strip() for t in args.targets.split(",")] if args.targets else None
    try:
        names, ratings = affect.read_ratings(args.fit, path_column=args.path_column, targets=targets)
    except affect.ReadoutError as err:
        raise UsageError(str(err)) from None
    emonet = load_emonet(args)
    paths = [_resolve(n, args.image_root, args.fit) for n in names]
    results, failed = _features_for(emonet, paths, args)
    keep = np.array([r.ok for r in results])
    if keep.sum() < 4:
        print(f"emonet affect: only {int(keep.sum())} of {len(paths)} rated files could be read; need at least 4",
              file=sys.stderr)
        return EXIT_NOTHING_PROCESSED
    x = np.stack([r.logits for r in results if r.ok])
    readouts = {}
    for target, values in ratings.items():
        rated = np.isfinite(values[keep])
        if not rated.all():
            print(f"{target}: {int((~rated).sum())} file(s) without a {target} rating left out of its fit",
                  file=sys.stderr)
        if rated.sum() < 4:
            print(f"emonet affect: only {int(rated.sum())} readable files have a {target} rating; need at least 4",
                  file=sys.stderr)
            return EXIT_NOTHING_PROCESSED
        readout = affect.fit_readout(x[rated], values[keep][rated], name=target, method=args.method, n_components=args.components,
                                     alpha=args.alpha, folds=args.folds, seed=args.seed,
                                     class_names=emonet.class_names)
        readouts[target] = readout
        print(f"{target}: {readout.params}, {args.folds}-fold CV r = {readout.cv['r']:.4f}, "
              f"RMSE = {readout.cv['rmse']:.4f} (n = {readout.cv['n']}"
              f"{', nested selection' if readout.cv['nested'] else ''})")
        if args.plot_dir:
            from emonet_tf import plots

            path = plots.plot_readout_fit(readout.cv["ratings"], readout.cv["predictions"],
                                          os.path.join(args.plot_dir, f"{target}_cv.png"), target,
                                          readout.cv["r"], readout.cv["rmse"])
            print(f"plot: {path}")
    affect.save_readouts(readouts, args.out, ratings_file=os.path.abspath(args.fit),
                         weights=args.weights or os.environ.get("EMONET_WEIGHTS"), sampling=args.sampling,
                         left_out=[r.source for r in results if not r.ok])
    print(f"coefficients: {args.out} ({int(keep.sum())} files used, {failed} unreadable)")
    return EXIT_OK


# ------------------------------------------------------------------------------------------------
# activations

@dataclasses.dataclass
class Preprocessed:
    """One event of `_iter_preprocessed`: a row (``image`` set), a failed input (``error``), or the
    end of a damaged video kept under --damaged keep (``damage``). ``position`` numbers the inputs."""

    position: int
    source: str
    frame_index: int = -1
    timestamp_ms: float = math.nan
    image: Optional[np.ndarray] = None
    error: Optional[str] = None
    damage: Optional[str] = None
    frames: str = ""  # with damage: `15 sampled frames (of 45 decoded)`


def _iter_preprocessed(emonet, inputs: Sequence[InputFile], sampling: str, batch_size: int, bar,
                       damaged: str = "skip", exif_orientation: bool = False) -> Iterator[Preprocessed]:
    """Rows of preprocessed images and video frames, in input order, with failures and damage as events.

    Frames stream one at a time (memory does not grow with the video), so the rows of a video that
    fails part-way come before its error event: the consumer must drop them (`cmd_activations` does).
    """
    from emonet_tf import preprocessing, video

    i = 0
    while i < len(inputs):
        if inputs[i].error is not None:
            yield Preprocessed(i, inputs[i].path, error=inputs[i].error)
            bar.update(1)
            i += 1
            continue
        if inputs[i].kind == "video":
            path = inputs[i].path
            sampled = 0
            try:
                frames = video.iter_frames(path, video.FrameSampling.parse(sampling), damaged=damaged)
                for frame in frames:
                    image = preprocessing.preprocess_array(frame.image, emonet.resize_method, emonet.antialias)
                    sampled += 1
                    yield Preprocessed(i, path, frame.index, frame.timestamp_ms, image)
                if frames.damage is not None:
                    yield Preprocessed(i, path, damage=frames.damage,
                                       frames=frames_note(sampled, frames.frames_decoded))
            except video.VideoReadError as err:
                yield Preprocessed(i, path, error=damaged_error(err, damaged, sampled=sampled))
            bar.update(1)
            i += 1
            continue
        j = i
        while j < len(inputs) and inputs[j].kind != "video" and inputs[j].error is None:
            j += 1
        loaded = emonet._iter_loaded([x.path for x in inputs[i:j]], lookahead=2 * batch_size, workers=None,
                                     exif_orientation=exif_orientation)
        for position, item, (source, image, error) in zip(range(i, j), inputs[i:j], loaded):
            bar.update(1)
            yield Preprocessed(position, source, image=image, error=_image_error(item.path, error))
        i = j


@dataclasses.dataclass
class ActivationRows:
    """The activations of every row so far, and what each row and each failed input is."""

    chunks: list = dataclasses.field(default_factory=list)
    rows: list = dataclasses.field(default_factory=list)  # Preprocessed without image, one per activation row
    failed: dict = dataclasses.field(default_factory=dict)  # position -> Preprocessed with error
    damaged: dict = dataclasses.field(default_factory=dict)  # position -> damage

    def kept(self) -> np.ndarray:
        """Mask of the rows to write: none of an input that failed (a video that broke off under skip)."""
        return np.array([r.position not in self.failed for r in self.rows], bool)

    def status(self, row: Preprocessed) -> str:
        return "damaged" if row.position in self.damaged else "ok"


def _collect_activations(emonet, items: Iterable[Preprocessed], layer: str, batch_size: int) -> ActivationRows:
    out, batch = ActivationRows(), []

    def flush():
        if batch:
            out.chunks.append(emonet.activations(np.stack([b.image for b in batch]), layer))
            out.rows.extend(dataclasses.replace(b, image=None) for b in batch)
            batch.clear()

    for item in items:
        if item.error is not None:
            out.failed[item.position] = item
            _say(f"emonet activations: {item.error}", sys.stderr)
        elif item.damage is not None:
            out.damaged[item.position] = item.damage
            _say(f"emonet activations: {item.source}: damaged video, its {item.frames} are kept and marked "
                 f"(--damaged keep): {item.damage}", sys.stderr)
        else:
            batch.append(item)
            if len(batch) == batch_size:
                flush()
    flush()
    return out


def rows_sidecar_path(npy_path: str) -> str:
    """`x.npy` -> `x.rows.csv`: what each row of a bare .npy is, and which inputs failed."""
    return os.path.splitext(npy_path)[0] + ".rows.csv"


def write_rows_sidecar(path: str, result: ActivationRows, rows: Sequence[Preprocessed]) -> None:
    """One line per .npy row (row, source, frame_index, timestamp_ms, status ok/damaged, detail), then one
    per failed input (empty row, status failed, detail = the error): a .npy alone cannot tell its rows apart."""
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["row", "source", "frame_index", "timestamp_ms", "status", "detail"])
        for n, r in enumerate(rows):
            ts = "" if math.isnan(r.timestamp_ms) else round(float(r.timestamp_ms), 3)
            writer.writerow([n, r.source, r.frame_index, ts, result.status(r), result.damaged.get(r.position, "")])
        for position in sorted(result.failed):
            item = result.failed[position]
            writer.writerow(["", item.source, "", "", "failed", item.error])


def cmd_activations(args) -> int:
    ext = os.path.splitext(args.out)[1].lower()
    if ext not in (".npy", ".npz"):
        raise UsageError(f"{args.out}: --out must end in .npy (one array, plus a .rows.csv sidecar) or .npz "
                         f"(array + sources + frames + status)")
    emonet = load_emonet(args)
    try:
        emonet.activation_model(args.layer)
    except ValueError as err:
        raise UsageError(str(err)) from None
    inputs = collect_inputs(args.inputs)
    with _progress(len(inputs), args) as bar:
        result = _collect_activations(
            emonet, _iter_preprocessed(emonet, inputs, args.sampling, args.batch_size, bar, args.damaged, _exif(args)),
            args.layer, args.batch_size)
    keep = result.kept()
    if not keep.any():
        print("emonet activations: nothing could be read", file=sys.stderr)
        return EXIT_NOTHING_PROCESSED
    acts = np.concatenate(result.chunks)[keep]
    rows = [r for r, k in zip(result.rows, keep) if k]
    errors = [result.failed[p].error for p in sorted(result.failed)]
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    if ext == ".npy":
        np.save(args.out, acts)
        sidecar = rows_sidecar_path(args.out)
        write_rows_sidecar(sidecar, result, rows)
        print(f"rows: {sidecar}")
    else:
        np.savez(args.out, activations=acts, sources=np.asarray([r.source for r in rows]),
                 frame_index=np.asarray([r.frame_index for r in rows], np.int64),
                 timestamp_ms=np.asarray([r.timestamp_ms for r in rows], np.float64),
                 damaged=np.asarray([r.position in result.damaged for r in rows], bool),
                 damage=np.asarray([result.damaged.get(r.position, "") for r in rows], dtype=str),
                 layer=np.asarray(args.layer), class_names=np.asarray(emonet.class_names),
                 errors=np.asarray(errors, dtype=str),
                 failed_sources=np.asarray([result.failed[p].source for p in sorted(result.failed)], dtype=str),
                 damaged_policy=np.asarray(args.damaged))
    notes = [f"{len(errors)} file(s) failed"] if errors else []
    if result.damaged:
        notes.append(f"{len(result.damaged)} damaged video(s) kept, rows marked")
    print(f"{args.layer}: {acts.shape[0]} rows of shape {acts.shape[1:]} from {len({r.source for r in rows})} files "
          f"-> {args.out}" + (f" ({'; '.join(notes)})" if notes else ""))
    return EXIT_OK


def cmd_run(args) -> int:
    from emonet_tf import run

    return run.main(args)


# ------------------------------------------------------------------------------------------------
# Parser

def build_parser() -> argparse.ArgumentParser:
    # Light modules only: --help and usage errors must not wait for TensorFlow (issue 12).
    from emonet_tf.image_spec import DEFAULT_RESIZE_METHOD, RESIZE_METHODS
    from emonet_tf.video import DAMAGED_POLICIES, DEFAULT_DAMAGED_POLICY

    parser = argparse.ArgumentParser(
        prog="emonet", description="EmoNet (Kragel et al. 2019): emotion categories of images and videos.",
        epilog="Exit status: 0 if anything was processed, 1 if nothing could be, 2 for usage errors.")
    def model_options(resize_default: str) -> argparse.ArgumentParser:
        # A fresh parent per default: argparse shares parent actions, so set_defaults would leak across commands.
        parent = argparse.ArgumentParser(add_help=False)
        parent.add_argument("--weights", help="weights: .keras, MATLAB text dump folder, emonet-py .pth, ecco .pt "
                                              "(default: $EMONET_WEIGHTS)")
        parent.add_argument("--mean", help="mean image for weight files without one (emonet-py/ecco .pth): "
                                           "img_mean.txt, .binaryproto or .npy")
        parent.add_argument("--resize-method", "--resize_method", dest="resize_method", default=resize_default,
                            choices=RESIZE_METHODS, help=f"image resize (default: {resize_default}; matlab is "
                                                         "MATLAB's imresize, as the original)")
        parent.add_argument("--batch-size", "--batch_size", dest="batch_size", type=int, default=32)
        parent.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
        return parent

    model = model_options(DEFAULT_RESIZE_METHOD)
    frames = argparse.ArgumentParser(add_help=False)
    frames.add_argument("--sampling", default="every5",
                        help="video frames: every5 (the lab's MATLAB scripts), fps10 (its PyTorch pipeline: "
                             "ffmpeg's fps=10 filter, frames never repeated), all, everyN, fpsR (default every5)")
    frames.add_argument("--damaged", default=DEFAULT_DAMAGED_POLICY, choices=DAMAGED_POLICIES,
                        help="a damaged video (decoder error, or the stream ends before its own duration): skip "
                             "(default) reports it as failed and writes no row of it; keep uses the frames that "
                             "decoded and marks its rows (status 'damaged' in CSV/JSON, 'damaged' in .npz, "
                             ".rows.csv next to a .npy)")
    frames.add_argument("--exif-orientation", "--exif_orientation", dest="exif_orientation", action="store_true",
                        help="rotate/flip image files by their EXIF Orientation tag before resizing (default off, "
                             "as MATLAB's imread and the published EmoNet; videos and TFDS frames are unaffected)")
    outputs = argparse.ArgumentParser(add_help=False)
    outputs.add_argument("--csv", help="write one row per image / sampled frame / video mean to this CSV")
    outputs.add_argument("--json", help="the same rows as JSON")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("predict", parents=[model, frames, outputs], help="emotion categories of images, folders, videos")
    p.add_argument("inputs", nargs="+", help="image or video files, or folders (searched recursively)")
    p.add_argument("--top", type=int, default=3, help="categories shown per file (default 3)")
    p.add_argument("--plot-dir", "--plot_dir", dest="plot_dir", help="write an emotion time-course PNG per video")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("evaluate", parents=[model, frames], help="top-1/top-5/AUC/confusion on a TFDS split or folder")
    p.add_argument("--dataset", help="TFDS name or prepared builder folder")
    p.add_argument("--data-dir", "--data_dir", dest="data_dir", help="TFDS data_dir")
    p.add_argument("--split", default="test")
    p.add_argument("--folder", help="labelled folder root/<category>/<image or video>")
    p.add_argument("--out-dir", "--out_dir", dest="out_dir", required=True, help="metrics JSON and plots go here")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("convert", help="convert published weights to a .keras file")
    p.add_argument("src", help="weight file or folder (MATLAB text dump, .pth, .pt, .npy, .caffemodel, .keras)")
    p.add_argument("dst", help="output .keras file")
    p.add_argument("--format", default="auto")
    p.add_argument("--new-head-classes", "--new_head_classes", dest="new_head_classes", type=int,
                   help="fresh fc8 with this many outputs instead of the file's head")
    p.add_argument("--mean", help="mean image file for sources without one (img_mean.txt, Caffe .binaryproto, .npy)")
    p.add_argument("--fc6-order", "--fc6_order", dest="fc6_order", default="hwc", choices=("hwc", "chw"),
                   help="row order of fc6 in a bvlc_alexnet.npy (hwc: as published; chw: raw Caffe order)")
    p.set_defaults(func=cmd_convert)

    p = sub.add_parser("export", parents=[model_options(DEFAULT_RESIZE_METHOD)], help="SavedModel for TF Serving (+ .keras, TFLite)")
    p.add_argument("--out", required=True, help="SavedModel folder (e.g. models/emonet/1 for TF Serving)")
    p.add_argument("--include-features", "--include_features", dest="include_features", action="store_true",
                   help="also output fc7, relu7 and fc8")
    p.add_argument("--tflite", nargs="?", const=True, help="also write TFLite (default path: OUT.tflite)")
    p.add_argument("--keras", nargs="?", const=True, help="also write a .keras file (default path: OUT.keras)")
    p.add_argument("--check-image", dest="check_image", help="image for the TFLite-vs-TF check (default synthetic)")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("affect", parents=[model, frames, outputs],
                       help="valence/arousal from the fc8 logits; or fit new read-outs with --fit")
    p.add_argument("inputs", nargs="*", help="image or video files, or folders")
    p.add_argument("--coefficients", help="read-out JSON written by --fit (default: emonet-py's published ones)")
    p.add_argument("--fit", metavar="RATINGS_CSV", help="fit read-outs: CSV with a file column and rating columns")
    p.add_argument("--out", help="with --fit: the coefficient JSON to write")
    p.add_argument("--image-root", "--image_root", dest="image_root",
                   help="folder the CSV's file names are relative to (default: the CSV's folder)")
    p.add_argument("--path-column", dest="path_column", help="file column of the CSV (default: detected)")
    p.add_argument("--targets", help="comma-separated rating columns (default: every numeric column)")
    p.add_argument("--method", default="auto", choices=("auto", "pls", "ridge"))
    p.add_argument("--components", type=int, help="fix the number of PLS components (no selection)")
    p.add_argument("--alpha", type=float, help="fix the ridge penalty (no selection)")
    p.add_argument("--folds", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--plot-dir", "--plot_dir", dest="plot_dir", help="with --fit: CV scatter plots")
    p.set_defaults(func=cmd_affect)

    p = sub.add_parser("activations", parents=[model, frames], help="a layer's outputs as .npy/.npz")
    p.add_argument("inputs", nargs="+", help="image or video files, or folders")
    p.add_argument("--layer", default="fc7", help="conv1..conv5, relu*, norm*, pool*, fc6, relu6, fc7, relu7, fc8, "
                                                 "softmax (default fc7)")
    p.add_argument("--out", required=True, help=".npy (activations only, plus OUT.rows.csv: source, frame, "
                                                "timestamp and status of each row, and the failed inputs) or .npz "
                                                "(+ sources, frame indices, timestamps, damaged flags, errors)")
    p.set_defaults(func=cmd_activations)

    from emonet_tf import run  # its top level is TensorFlow-free

    p = sub.add_parser("run", help="the main job: predict with --weights; without weights, generated clips -> "
                                   "records -> training -> evaluation -> SavedModel -> predictions")
    run.add_arguments(p)
    p.set_defaults(func=cmd_run)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of the `emonet` console script; returns the exit status."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "batch_size", 1) < 1:
        parser.error("--batch-size must be at least 1")
    if hasattr(args, "sampling"):
        from emonet_tf.video import FrameSampling

        try:
            FrameSampling.parse(args.sampling)
        except ValueError as err:
            parser.error(str(err))
    try:
        return args.func(args)
    except UsageError as err:
        print(f"emonet {args.command}: error: {err}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
