"""The `emonet` command: predict, evaluate, convert, export, affect, activations and extract.

    emonet predict --weights emonet.keras photos/ trailer.mp4 --csv out.csv --plot-dir plots/
    emonet evaluate --weights emonet.keras --folder labelled/ --out_dir eval/
    emonet convert data/ emonet.keras
    emonet export --weights emonet.keras --out models/emonet/1 --tflite --keras
    emonet affect --weights emonet.keras photos/            # valence/arousal, emonet-py read-outs
    emonet affect --weights emonet.keras --fit ratings.csv --out my_readouts.json
    emonet activations --weights emonet.keras --layer fc7 photos/ --out fc7.npz
    emonet extract --weights emonet.keras films/ --out features/ --layers fc7,fc8 --runner beam   # a corpus
    emonet run            # the main job; without weights: the whole path on generated clips (emonet_tf.run)
    emonet brain experiment1 --patterns patterns.npy --fc8 fc8.npy --out exp1/   # the paper's fMRI experiment I

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
import contextlib
import math
import os
import re
import sys
from typing import Optional, Sequence

import numpy as np

# The input handling lives in emonet_tf.media (importable without TensorFlow); these names stay reachable
# here for scripts written against earlier versions of the command.
from emonet_tf.media import (  # noqa: F401
    IMAGE_EXTENSIONS,
    InputFile,
    InputResult,
    RowWriter,
    collect_inputs,
    damaged_error,
    frames_note,
    is_media_name,
    iter_results,
    kept_note,
    kind_of,
    prediction_rows,
    rows_sidecar_path,
    unknown_type_error,
    write_rows_sidecar,
)

EXIT_OK = 0
EXIT_NOTHING_PROCESSED = 1
EXIT_USAGE = 2
EXIT_FAILED = 1  # a runtime failure (e.g. the TFLite check), reported in one line
EXIT_INTERRUPTED = 130  # Ctrl-C (128 + SIGINT), as shells report it

PREDICTION_SUFFIXES = (".csv", ".parquet", ".pq")
NO_PROGRESS = ("--no-progress", "--noprogress", "--no_progress")  # --noprogress as train.py's absl flag


class UsageError(Exception):
    """A problem with the command line or its files that stops the command (exit status 2, with the usage;
    ``show_usage=False`` for a problem with the state of a file, e.g. a folder holding another extraction,
    where the usage block would only bury the reason)."""

    def __init__(self, message: str, show_usage: bool = True):
        super().__init__(message)
        self.show_usage = show_usage


class CommandFailed(Exception):
    """A failure of a well-formed command (e.g. TFLite differs from TensorFlow): exit status 1, one line."""


def _exif(args) -> Optional[bool]:
    """--exif-orientation: True when given, else None, so that the model's saved preprocessor decides."""
    return True if getattr(args, "exif_orientation", False) else None


def _progress(total: Optional[int], args, unit: str = "frame", **kwargs):
    """Progress counted in `unit` (`emonet_tf.progress.bar`): a tqdm bar on stderr when it is a terminal,
    otherwise a line on stderr every 30 s and at the end (log files, cluster jobs); off with --no-progress."""
    from emonet_tf import progress

    return progress.bar(
        total,
        kwargs.pop("desc", ""),
        not getattr(args, "no_progress", False),
        unit=unit,
        stream=sys.stderr,
        **kwargs,
    )


def _frames_bar(inputs: Sequence[InputFile], args):
    """A bar counted in frames: an image is one, a video its decoded frames (estimated from its duration x rate)."""
    from emonet_tf import media

    return _progress(None if getattr(args, "no_progress", False) else media.estimate_frames(inputs), args)


def _short(path: str) -> str:
    """The path as the user will recognize it: relative to the working folder when inside it."""
    rel = os.path.relpath(path) if os.path.isabs(path) else path
    return path if rel.startswith("..") else rel


def _say(line: str, stream=None) -> None:
    from tqdm import tqdm

    tqdm.write(line, file=stream or sys.stdout)


def _logger(command: str):
    """One line per library note on stderr, prefixed with the command (above the progress bar)."""
    return lambda message: _say(f"emonet {command}: {message}", sys.stderr)


def _plot_name(source: str, used: set) -> str:
    """`<video name>_emotions.png`; a second video of the same name gets `_2`, `_3`, ..."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", os.path.splitext(os.path.basename(source))[0]) or "video"
    name, n = f"{stem}_emotions.png", 1
    while name in used:
        n += 1
        name = f"{stem}_{n}_emotions.png"
    used.add(name)
    return name


def _command(args) -> str:
    """The command the user typed (`predict`; `run` when `emonet run` predicts with weights), for messages."""
    return getattr(args, "command", None) or "predict"


def _weights_path(args) -> Optional[str]:
    return args.weights or os.environ.get("EMONET_WEIGHTS")


def _model_inputs(args) -> list[str]:
    """The files the model is read from (--weights or $EMONET_WEIGHTS, --mean): no output may overwrite them."""
    return [p for p in (_weights_path(args), getattr(args, "mean", None)) if p]


# ------------------------------------------------------------------------------------------------
# Checks of output paths, before any model is loaded


def _check_output_file(path: Optional[str], flag: str, suffixes: Sequence[str] = ()) -> None:
    """A file the command will write: not a folder, a parent that is not a file, one of `suffixes` if given."""
    if not path:
        return
    if suffixes and os.path.splitext(path)[1].lower() not in suffixes:
        raise UsageError(f"{path}: {flag} must end in {' or '.join(suffixes)}")
    if os.path.isdir(path):
        raise UsageError(f"{path}: {flag} is a folder, expected a file")
    _check_output_folder(os.path.dirname(os.path.abspath(path)), flag, shown=path)


def _check_output_folder(path: Optional[str], flag: str, shown: Optional[str] = None) -> None:
    """A folder the command will create or write into: neither it nor a parent may be a file, and the nearest
    existing one must be writable (a probe file is created and removed there: os.access alone says yes to root
    on /proc and /sys)."""
    if not path:
        return
    probe = os.path.abspath(path)
    while probe and not os.path.exists(probe):
        probe = os.path.dirname(probe)
    if probe and not os.path.isdir(probe):
        raise UsageError(f"{shown or path}: {flag} cannot be created, {probe} is a file")
    if probe and not _writable_folder(probe):
        raise UsageError(f"{shown or path}: {flag} cannot be written, {probe} is not a writable folder")


def _writable_folder(folder: str) -> bool:
    import tempfile

    if not os.access(folder, os.W_OK | os.X_OK):
        return False
    try:
        with tempfile.TemporaryFile(dir=folder):
            return True
    except OSError:
        return False


def _same_file(a: str, b: str) -> bool:
    """Whether two paths name the same file (realpath, or os.path.samefile for hard links)."""
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _input_files(paths: Sequence[Optional[str]], search_folders: bool = True) -> list[str]:
    """The files a command reads: those named, and (when cheap: a folder walk) the media files in named folders."""
    found = []
    for path in paths:
        if not path:
            continue
        if search_folders and os.path.isdir(path):
            found.extend(f.path for f in collect_inputs([path]))
        else:
            found.append(path)
    return found


def _check_not_inputs(outputs: Sequence[tuple[str, Optional[str]]], inputs: Sequence[Optional[str]]) -> None:
    """No output may be one of the inputs (it would be truncated before it is read), nor two outputs one file.

    `outputs`: (flag, path) pairs, None paths skipped; `inputs`: files and folders the command reads.
    """
    outputs = [(flag, path) for flag, path in outputs if path]
    if not outputs:
        return
    real_outputs = {os.path.realpath(path) for _, path in outputs}
    for source in _input_files(inputs):
        if os.path.realpath(source) in real_outputs or any(_same_file(source, p) for _, p in outputs):
            flag, path = next((f, p) for f, p in outputs if _same_file(source, p))
            raise UsageError(f"{path}: {flag} is an input of this command ({source}); it would be overwritten")
    for i, (flag, path) in enumerate(outputs):
        for other_flag, other in outputs[:i]:
            if _same_file(path, other):
                raise UsageError(f"{path}: {flag} and {other_flag} name the same file")


# ------------------------------------------------------------------------------------------------
# Model loading


def load_emonet(args):
    """EmoNet from --weights (any format EmoNet.from_weights reads), or a UsageError that says why not.

    --resize-method is passed only when given: otherwise the model's saved preprocessing applies.
    """
    from emonet_tf.inference import EmoNet
    from emonet_tf.weights import WeightFormatError

    path = _weights_path(args)
    if not path:
        raise UsageError(
            "no weights: pass --weights PATH (a .keras file, a MATLAB text dump folder, a .pth, ...) "
            "or set EMONET_WEIGHTS"
        )
    options = {"resize_method": args.resize_method} if getattr(args, "resize_method", None) else {}
    try:
        return EmoNet.from_weights(path, mean=getattr(args, "mean", None), **options)
    except (FileNotFoundError, WeightFormatError, OSError, ValueError) as err:
        raise UsageError(f"cannot load weights from {path}: {err}") from None


# ------------------------------------------------------------------------------------------------
# predict


def cmd_predict(args) -> int:
    _check_output_file(args.csv, "--csv")
    _check_output_file(args.json, "--json")
    _check_output_folder(args.plot_dir, "--plot-dir")
    _check_not_inputs([("--csv", args.csv), ("--json", args.json)], _model_inputs(args) + list(args.inputs))
    emonet = load_emonet(args)
    names = list(emonet.class_names)
    inputs = collect_inputs(args.inputs)
    if not inputs:
        print(f"emonet {_command(args)}: no image or video files found in {', '.join(args.inputs)}", file=sys.stderr)
        return EXIT_NOTHING_PROCESSED
    columns = ["source", "kind", "status", "frame_index", "timestamp_ms", "n_frames", "top1", "error", "damage"] + names
    writer = RowWriter(
        columns,
        args.csv,
        args.json,
        {
            "weights": _weights_path(args),
            "sampling": args.sampling,
            "damaged": args.damaged,
            "resize_method": emonet.resize_method,
            "preprocessing": emonet.preprocessor.get_config(),
            "exif_orientation": emonet.preprocessor.replace(exif_orientation=_exif(args)).exif_orientation,
            "class_names": names,
        },
    )
    counts = {"ok": 0, "failed": 0}
    damaged: list[str] = []
    plot_names: set = set()
    _say(f"{'file':<48}  {'kind':<5}  top-{args.top}")
    with _frames_bar(inputs, args) as bar:
        try:
            for result in iter_results(emonet, inputs, args.sampling, args.batch_size, bar, args.damaged, _exif(args)):
                writer.write(prediction_rows(result, names))
                _report_prediction(result, names, args, counts, damaged, plot_names)
        finally:
            writer.close()
    _say(f"{counts['ok']} predicted, {counts['failed']} failed{_damaged_note(damaged)}", sys.stderr)
    _say(f"preprocessing: {emonet.preprocessor.describe()}", sys.stderr)
    for kind, path in (("csv", args.csv), ("json", args.json)):
        if path:
            _say(f"{kind}: {path}", sys.stderr)
    return EXIT_OK if counts["ok"] else EXIT_NOTHING_PROCESSED


def _report_prediction(result: InputResult, names, args, counts: dict, damaged: list, plot_names: set) -> None:
    """The table line of one input (and its error or damage on stderr, and its plot)."""
    from emonet_tf.inference import top_k

    if not result.ok:
        counts["failed"] += 1
        _say(f"{_short(result.source):<48}  {result.kind:<5}  ERROR: {result.error}")
        _say(f"emonet {_command(args)}: {result.error}", sys.stderr)
        return
    counts["ok"] += 1
    top = ", ".join(f"{n} {p:.3f}" for n, p in top_k(result.probabilities, names, args.top))
    extra = f" (mean of {len(result.frames)} frames)" if result.kind == "video" else ""
    if result.damage is not None:
        damaged.append(result.source)
        extra += " DAMAGED, kept (--damaged keep)"
        _say(
            f"emonet {_command(args)}: {result.source}: damaged video, {kept_note(result)} were used "
            f"(--damaged keep): {result.damage}",
            sys.stderr,
        )
    _say(f"{_short(result.source):<48}  {result.kind:<5}  {top}{extra}")
    if args.plot_dir and result.kind == "video":
        from emonet_tf import plots

        path = os.path.join(args.plot_dir, _plot_name(result.source, plot_names))
        plots.plot_emotion_timecourse(
            [f.timestamp_ms for f in result.frames],
            np.stack([f.probabilities for f in result.frames]),
            names,
            path,
            title=f"{os.path.basename(result.source)} ({args.sampling})",
        )
        _say(f"plot: {path}", sys.stderr)


def _damaged_note(sources: Sequence[str]) -> str:
    """`, 2 damaged videos kept (a.mp4, b.avi)` for the final summary line; empty when there were none."""
    if not sources:
        return ""
    return f", {len(sources)} damaged video{'s' if len(sources) > 1 else ''} kept ({', '.join(map(_short, sources))})"


# ------------------------------------------------------------------------------------------------
# evaluate


def _check_evaluate_args(args) -> None:
    if bool(args.dataset) == bool(args.folder):
        raise UsageError("evaluate needs exactly one of --dataset (TFDS name or builder folder) and --folder")
    if args.folder and (args.predictions or args.fc7 or args.logits):
        raise UsageError("--predictions, --fc7 and --logits need --dataset (a folder's rows: emonet predict --csv)")
    if (args.fc7 or args.logits) and not args.predictions:
        raise UsageError("--fc7 and --logits add columns to --predictions PATH (.csv or .parquet)")
    _check_output_file(args.predictions, "--predictions", PREDICTION_SUFFIXES)
    _check_output_folder(args.out_dir, "--out-dir")
    written = [("--predictions", args.predictions)]
    if args.predictions and args.fc7 == "npy":
        written.append(("--fc7 npy", os.path.splitext(args.predictions)[0] + ".fc7.npy"))
    report = ("eval_metrics.json", "eval_confusion.png", "eval_auc.png")  # evaluation.write_report's files
    written += [("--out-dir", os.path.join(args.out_dir, name)) for name in report]
    _check_not_inputs(written, _model_inputs(args) + [args.folder])
    if args.predictions and os.path.splitext(args.predictions)[1].lower() != ".csv":
        try:
            import pyarrow.parquet  # noqa: F401
        except ImportError:
            raise UsageError(
                f"{args.predictions}: Parquet needs pyarrow (pip install 'emonet_tf[parquet]'); or write .csv"
            ) from None


def cmd_evaluate(args) -> int:
    from emonet_tf import evaluation

    _check_evaluate_args(args)
    emonet = load_emonet(args)
    try:
        if args.dataset:
            data = _evaluate_tfds(emonet, args)
        else:
            log = _logger("evaluate")
            inputs, labels = evaluation.labelled_inputs(args.folder, emonet.class_names, log)
            with _frames_bar(inputs, args) as bar:
                data = evaluation.evaluate_inputs(
                    emonet,
                    inputs,
                    labels,
                    source=args.folder,
                    sampling=args.sampling,
                    batch_size=args.batch_size,
                    damaged=args.damaged,
                    exif_orientation=_exif(args),
                    progress=bar,
                    log=log,
                )
    except evaluation.EvaluationInputError as err:
        raise UsageError(str(err)) from None
    metrics = evaluation.metrics_from_predictions(data.probabilities, data.labels, emonet.class_names, data.video_ids)
    metrics["source"] = args.dataset or args.folder
    if data.inputs is not None:
        # Which files are not in the metrics (failed) and which videos count with part of their frames.
        metrics["inputs"] = data.inputs
    paths = evaluation.write_report(metrics, args.out_dir)
    print(evaluation.format_report(metrics))
    if data.predictions is not None:
        paths["predictions"] = data.predictions.path
        if data.predictions.fc7_path:
            paths["fc7"] = data.predictions.fc7_path
    for kind, path in paths.items():
        print(f"{kind}: {path}")
    return EXIT_OK


def _evaluate_tfds(emonet, args):
    from emonet_tf import evaluation

    info, mapping = evaluation.inspect_labelled_dataset(args.dataset, args.data_dir, args.split, emonet.class_names)
    with _progress(info.num_examples(args.split), args) as bar:
        return evaluation.evaluate_dataset(
            emonet,
            info,
            mapping,
            args.split,
            batch_size=args.batch_size,
            predictions_path=args.predictions,
            fc7=args.fc7,
            logits=args.logits,
            progress=bar,
            log=_logger("evaluate"),
        )


# ------------------------------------------------------------------------------------------------
# convert, export


def cmd_convert(args) -> int:
    if not os.path.exists(args.src):
        raise UsageError(f"{args.src}: no such file or folder")
    if not args.dst.endswith(".keras"):
        raise UsageError(f"{args.dst}: the destination must end in .keras")
    _check_output_file(args.dst, "DST")
    _check_not_inputs([("DST", args.dst)], [args.src, args.mean])
    from emonet_tf import weights

    if args.format != "auto" and args.format not in weights.FORMATS:  # the registry: known only after importing
        raise UsageError(
            f"--format {args.format}: not a weight format; choose auto or one of {', '.join(weights.FORMATS)}"
        )
    try:
        with _matlab_text_progress(args):
            summary = weights.convert(
                args.src,
                args.dst,
                format=args.format,
                new_head_classes=args.new_head_classes,
                mean=args.mean,
                fc6_order=args.fc6_order,
            )
    except (weights.WeightFormatError, OSError, ValueError) as err:  # OSError: e.g. DST cannot be written
        message = str(err)
        if isinstance(err, OSError) and err.filename and ".partial" in os.path.basename(str(err.filename)):
            # The temporary file next to DST is an implementation detail: name the destination the user gave.
            message = f"{args.dst}: cannot be written ({err.strerror or err})"
        raise UsageError(message) from None
    print(summary)
    return EXIT_OK


def _matlab_text_progress(args):
    """A bar counted in values read while a MATLAB text dump is parsed (2.5 minutes for EmoNet's 57M values)."""
    import contextlib

    from emonet_tf.weights import matlab_text

    if args.format not in ("auto", "matlab_text") or not matlab_text.is_matlab_text_dir(args.src):
        return contextlib.nullcontext()
    stack = contextlib.ExitStack()
    bar = stack.enter_context(
        _progress(
            matlab_text.expected_values(args.src), args, unit="value", unit_scale=True, desc="reading MATLAB text dump"
        )
    )
    stack.enter_context(matlab_text.report_progress(bar))
    return stack


def _check_image(args, emonet):
    """The image of the TFLite check (227 x 227 x 3): --check-image, or a smooth synthetic one (every layer)."""
    if not args.check_image:
        yy, xx = np.mgrid[0:227, 0:227].astype(np.float32)
        return np.stack([xx * 255 / 226, yy * 255 / 226, (xx + yy) * 255 / 452], axis=-1)
    if not os.path.isfile(args.check_image):
        raise UsageError(f"{args.check_image}: --check-image is not a file")
    try:
        return emonet.preprocessor.load_image(args.check_image)
    except (OSError, ValueError) as err:  # ImageDecodeError is a ValueError
        raise UsageError(f"{args.check_image}: --check-image cannot be read as an image ({err})") from None


def _export_paths(args) -> tuple[str, Optional[str], Optional[str]]:
    """(SavedModel folder, .keras path or None, .tflite path or None) after checking they can be written."""
    out = os.path.normpath(args.out)
    if os.path.isfile(out):
        raise UsageError(f"{out}: --out is a file; a SavedModel is a folder")
    _check_output_folder(out, "--out")
    _check_output_folder(os.path.dirname(os.path.abspath(out)), "--out", shown=out)  # the temporary sibling
    keras_path = (out + ".keras" if args.keras is True else args.keras) if args.keras else None
    tflite_path = (out + ".tflite" if args.tflite is True else args.tflite) if args.tflite else None
    if os.path.isdir(out) and os.listdir(out) and not args.overwrite:
        raise UsageError(f"{out}: --out exists and is not empty; use --overwrite or a new folder")
    _check_output_file(keras_path, "--keras", (".keras",))
    _check_output_file(tflite_path, "--tflite")
    if args.check_image and not tflite_path:
        raise UsageError("--check-image is the image of the TFLite check: it needs --tflite")
    _check_not_inputs(
        [("--out", out), ("--keras", keras_path), ("--tflite", tflite_path)],
        _model_inputs(args) + [args.check_image],
    )
    inside = os.path.realpath(out) + os.sep
    for flag, path in (("--keras", keras_path), ("--tflite", tflite_path)):
        if path and os.path.realpath(path).startswith(inside):
            raise UsageError(f"{path}: {flag} is inside --out {out}, which the SavedModel replaces")
    for path in _model_inputs(args) + [args.check_image]:
        if path and os.path.realpath(path).startswith(inside):
            raise UsageError(f"{path}: an input of this command is inside --out {out}, which the SavedModel replaces")
    return out, keras_path, tflite_path


def _export_saved_model_replacing(export, model, out: str, **options) -> str:
    """The SavedModel is written to a temporary sibling of `out` and renamed into place only when complete, so a
    failed export leaves an existing `out` (kept or replaced under --overwrite) as it was."""
    import shutil
    import tempfile

    parent, name = os.path.split(os.path.abspath(out))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{name}.", suffix=".partial", dir=parent)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)  # mkdtemp's 0700 would hide the SavedModel from a serving user
    old = None
    try:
        summary = export.export_saved_model(model, tmp, **options)
        if os.path.lexists(out):
            old = tempfile.mkdtemp(prefix=f".{name}.", suffix=".old", dir=parent)
            os.rename(out, os.path.join(old, name))
        os.rename(tmp, out)
    except BaseException:
        if old is not None and not os.path.lexists(out):
            os.rename(os.path.join(old, name), out)
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    return summary.replace(tmp, out)


def cmd_export(args) -> int:
    from emonet_tf import export

    out, keras_path, tflite_path = _export_paths(args)
    emonet = load_emonet(args)
    check = _check_image(args, emonet) if tflite_path else None
    options = {"resize_method": args.resize_method} if args.resize_method else {}
    try:
        print(
            _export_saved_model_replacing(export, emonet.model, out, include_features=args.include_features, **options)
        )
    except ValueError as err:  # e.g. --include-features on a backbone that does not reach relu7
        raise UsageError(str(err)) from None
    if keras_path:
        print(export.export_keras(emonet.model, keras_path))
    if tflite_path:
        try:
            print(export.export_tflite(emonet.model, tflite_path, check_image=check))
        except AssertionError as err:  # the TFLite-vs-TF check: the file is written but not trustworthy
            raise CommandFailed(f"{tflite_path}: {err}") from None
    return EXIT_OK


# ------------------------------------------------------------------------------------------------
# affect


def cmd_affect(args) -> int:
    from emonet_tf import affect

    if args.fit:
        return _affect_fit(args)
    if args.out:
        raise UsageError(f"{args.out}: --out is only used with --fit (the coefficient JSON); rows go to --csv/--json")
    if args.plot_dir:
        raise UsageError(f"{args.plot_dir}: --plot-dir is only used with --fit (CV scatter plots)")
    if not args.inputs:
        raise UsageError("affect needs input files or folders (or --fit RATINGS.csv to fit new read-outs)")
    _check_output_file(args.csv, "--csv")
    _check_output_file(args.json, "--json")
    _check_not_inputs(
        [("--csv", args.csv), ("--json", args.json)], _model_inputs(args) + [args.coefficients] + list(args.inputs)
    )
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
    writer = RowWriter(
        columns,
        args.csv,
        args.json,
        {
            "weights": _weights_path(args),
            "sampling": args.sampling,
            "damaged": args.damaged,
            "exif_orientation": emonet.preprocessor.replace(exif_orientation=_exif(args)).exif_orientation,
            "coefficients": args.coefficients or "emonet-py 1.0.8 (published)",
            "input": affect.INPUT_SPACE,
        },
    )
    ok = 0
    _say(f"{'file':<48}  {'kind':<5}  " + "  ".join(f"{t:>9}" for t in targets))
    with _frames_bar(inputs, args) as bar:
        try:
            for result in iter_results(emonet, inputs, args.sampling, args.batch_size, bar, args.damaged, _exif(args)):
                ok += result.ok
                writer.write(_affect_rows(result, readouts))
        finally:
            writer.close()
    return EXIT_OK if ok else EXIT_NOTHING_PROCESSED


def _affect_rows(result: InputResult, readouts) -> list[dict]:
    """The rows of one input (each frame's read-outs, then the image's or video mean's), and its table line."""
    base = {
        "source": result.source,
        "kind": result.kind,
        "status": result.status,
        "error": result.error,
        "damage": result.damage,
    }
    if not result.ok:
        _say(f"{_short(result.source):<48}  {result.kind:<5}  ERROR: {result.error}")
        _say(f"emonet affect: {result.error}", sys.stderr)
        return [base]
    rows = [
        dict(
            base,
            kind="frame",
            frame_index=f.index,
            timestamp_ms=round(f.timestamp_ms, 3),
            **{t: float(r.predict(f.logits)) for t, r in readouts.items()},
        )
        for f in result.frames
    ]
    mean = {t: float(r.predict(result.logits)) for t, r in readouts.items()}
    kind = "video_mean" if result.kind == "video" else "image"
    rows.append(dict(base, kind=kind, n_frames=len(result.frames) or None, **mean))
    _say(f"{_short(result.source):<48}  {result.kind:<5}  " + "  ".join(f"{mean[t]:>9.3f}" for t in readouts))
    return rows


def _affect_fit(args) -> int:
    from emonet_tf import affect

    if not args.out:
        raise UsageError("--fit needs --out FILE.json for the fitted coefficients")
    _check_output_file(args.out, "--out")
    _check_output_folder(args.plot_dir, "--plot-dir")
    targets = [t.strip() for t in args.targets.split(",")] if args.targets else None
    try:
        names, ratings = affect.read_ratings(args.fit, path_column=args.path_column, targets=targets)
    except affect.ReadoutError as err:
        raise UsageError(str(err)) from None
    paths = affect.rated_paths(names, args.fit, args.image_root)
    plots = (
        [(f"--plot-dir ({t})", os.path.join(args.plot_dir, f"{t}_cv.png")) for t in ratings] if args.plot_dir else []
    )
    _check_not_inputs(
        [("--out", args.out)] + plots,
        _model_inputs(args) + [args.fit] + list(args.inputs) + list(paths),
    )
    emonet = load_emonet(args)
    inputs = [InputFile(p, kind_of(p)) for p in paths]
    try:
        with _frames_bar(inputs, args) as bar:
            fit = affect.fit_readouts_from_files(
                emonet,
                paths,
                ratings,
                method=args.method,
                n_components=args.components,
                alpha=args.alpha,
                folds=args.folds,
                seed=args.seed,
                sampling=args.sampling,
                batch_size=args.batch_size,
                damaged=args.damaged,
                exif_orientation=_exif(args),
                progress=bar,
                log=_logger("affect"),
            )
    except affect.NotEnoughRatingsError as err:
        print(f"emonet affect: {err}", file=sys.stderr)
        return EXIT_NOTHING_PROCESSED
    for target, readout in fit.readouts.items():
        _print_readout(target, readout, args)
    affect.save_readouts(
        fit.readouts,
        args.out,
        ratings_file=os.path.abspath(args.fit),
        weights=_weights_path(args),
        sampling=args.sampling,
        left_out=fit.left_out,
    )
    print(f"coefficients: {args.out} ({fit.used} files used, {len(fit.left_out)} unreadable)")
    return EXIT_OK


def _print_readout(target: str, readout, args) -> None:
    cv = readout.cv
    print(
        f"{target}: {readout.params}, {args.folds}-fold CV r = {cv['r']:.4f}, RMSE = {cv['rmse']:.4f} "
        f"(n = {cv['n']}{', nested selection' if cv['nested'] else ''})"
    )
    if args.plot_dir:
        from emonet_tf import plots

        path = plots.plot_readout_fit(
            cv["ratings"],
            cv["predictions"],
            os.path.join(args.plot_dir, f"{target}_cv.png"),
            target,
            cv["r"],
            cv["rmse"],
        )
        print(f"plot: {path}")


# ------------------------------------------------------------------------------------------------
# activations


def _report_activation_event(item) -> None:
    if item.error is not None:
        _say(f"emonet activations: {item.error}", sys.stderr)
    else:
        _say(
            f"emonet activations: {item.source}: damaged video, its {item.frames} are kept and marked "
            f"(--damaged keep): {item.damage}",
            sys.stderr,
        )


def cmd_activations(args) -> int:
    from emonet_tf import media

    if os.path.splitext(args.out)[1].lower() not in media.ACTIVATION_SUFFIXES:
        raise UsageError(
            f"{args.out}: --out must end in .npy (one array, plus a .rows.csv sidecar) or .npz "
            f"(array + sources + frames + status)"
        )
    _check_output_file(args.out, "--out")
    written = [("--out", args.out)]
    if os.path.splitext(args.out)[1].lower() == ".npy":
        sidecar = rows_sidecar_path(args.out)
        _check_output_file(sidecar, "--out's rows sidecar")
        written.append(("--out's rows sidecar", sidecar))
    _check_not_inputs(written, _model_inputs(args) + list(args.inputs))
    emonet = load_emonet(args)
    try:
        emonet.activation_model(args.layer)
    except ValueError as err:
        raise UsageError(str(err)) from None
    inputs = collect_inputs(args.inputs)
    with _frames_bar(inputs, args) as bar:
        items = media.iter_preprocessed(emonet, inputs, args.sampling, args.batch_size, bar, args.damaged, _exif(args))
        result = media.collect_activations(emonet, items, args.layer, args.batch_size, _report_activation_event)
    if not result.kept().any():
        print("emonet activations: nothing could be read", file=sys.stderr)
        return EXIT_NOTHING_PROCESSED
    acts, rows, sidecar = media.save_activations(
        args.out, result, layer=args.layer, class_names=emonet.class_names, damaged_policy=args.damaged
    )
    if sidecar:
        print(f"rows: {sidecar}")
    errors = result.errors()
    notes = [f"{len(errors)} file(s) failed"] if errors else []
    if result.damaged:
        notes.append(f"{len(result.damaged)} damaged video(s) kept, rows marked")
    print(
        f"{args.layer}: {acts.shape[0]} rows of shape {acts.shape[1:]} from {len({r.source for r in rows})} files "
        f"-> {args.out}" + (f" ({'; '.join(notes)})" if notes else "")
    )
    return EXIT_OK


# ------------------------------------------------------------------------------------------------
# extract


@contextlib.contextmanager
def _terminate_unwinds():
    """SIGTERM (`timeout`, `kill`, a batch scheduler's preemption) as an exit that unwinds, as Ctrl-C does:
    Python's default ends the process on the spot, leaving the run's scratch folder and its staging files
    (a whole film's activations) in the temp folder, and half-written ``.tmp-`` files in --out."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def terminate(signum, frame):
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _check_extract_args(args) -> tuple[list[str], list[str]]:
    """What `emonet extract` can check before the model loads (a usage error should not wait for the
    weights): flags, --out, --scratch, the layer list's form, Beam's flags, the TFDS spec and that the file
    list reads. Returns (layers, Beam pipeline options); raises UsageError."""
    import shlex

    from emonet_tf import extract
    from emonet_tf.extract import model as extract_model
    from emonet_tf.extract import sources as extract_sources

    if args.runner == "local" and args.pipeline_options:
        raise UsageError("--pipeline-options are Beam's: add --runner beam")
    if args.workers < 1 or args.images_per_unit < 1 or (args.frames_per_unit is not None and args.frames_per_unit < 1):
        raise UsageError("--workers, --images-per-unit and --frames-per-unit must be at least 1")
    if not args.out.strip():  # "" would put the extraction's files in the current folder, unchecked
        raise UsageError("--out is empty: name the extraction folder")
    if args.scratch is not None and not os.path.isdir(args.scratch):
        raise UsageError(f"{args.scratch}: --scratch is not a folder")
    if args.data_dir and not args.tfds:
        raise UsageError("--data-dir is the folder of a --tfds split: add --tfds, or drop --data-dir")
    if extract.sources.is_url(args.out):
        import tensorflow as tf

        try:  # a scheme without its file system plugin would fail only after the model loads
            extract.shards.remote.exists(args.out)
        except tf.errors.OpError as err:
            raise UsageError(f"{args.out}: --out cannot be reached ({err.message})") from None
    else:
        _check_extract_out(args)
    if not args.inputs and not args.list and not args.tfds:
        raise UsageError("nothing to extract: give files or folders, --list FILE or --tfds tfds:NAME:SPLIT")
    layers = [l.strip() for l in args.layers.split(",") if l.strip()] or [""]
    try:
        pipeline_options = shlex.split(args.pipeline_options or "")
    except ValueError as err:
        raise UsageError(f"--pipeline-options {args.pipeline_options!r}: {err}") from None
    try:
        extract_model.output_names(layers)
        if args.tfds and extract_sources.parse_tfds(args.tfds) is None:
            raise ValueError(f"{args.tfds}: --tfds is tfds:NAME[/CONFIG]:SPLIT, e.g. tfds:video_folder:test")
        if args.tfds and (args.inputs or args.list):
            raise ValueError("give files and folders (or --list), or --tfds, not both")
        if args.list:
            extract_sources.read_file_list(args.list)
    except (ValueError, OSError) as err:
        raise UsageError(str(err)) from None
    return layers, pipeline_options


def _check_extract_out(args) -> None:
    """A local --out: a folder that can be written, not an input, and empty or an extraction."""
    from emonet_tf import extract

    if os.path.islink(args.out) and not os.path.exists(args.out):
        raise UsageError(f"{args.out}: --out is a link to nothing ({os.readlink(args.out)})")
    if os.path.isfile(args.out):
        raise UsageError(f"{args.out}: --out is a file, expected a folder")
    _check_output_folder(args.out, "--out")
    _check_not_inputs([("--out", args.out)], _model_inputs(args) + list(args.inputs))
    # The refusal `extract.shards.start` gives (an input folder, someone's project), before the model loads.
    names = [n for n in os.listdir(args.out) if not n.startswith(".")] if os.path.isdir(args.out) else []
    if names and extract.shards.PLAN not in names and not args.overwrite:
        raise UsageError(
            f"{args.out}: --out is not empty and holds no extraction plan ({', '.join(sorted(names)[:3])} ...); "
            "use an empty or new folder"
        )


def cmd_extract(args) -> int:
    from emonet_tf import extract

    layers, pipeline_options = _check_extract_args(args)
    emonet = load_emonet(args)
    if _exif(args):
        emonet.preprocessor = emonet.preprocessor.replace(exif_orientation=True)
    try:
        plan = extract.plan(
            args.inputs,
            emonet,
            layers=layers,
            output_format=args.format,
            sampling=args.sampling,
            damaged=args.damaged,
            file_list=args.list,
            tfds=args.tfds,
            data_dir=args.data_dir,
            images_per_unit=args.images_per_unit,
            frames_per_unit=args.frames_per_unit,
        )
        # The plan is checked against OUT (and OUT prepared) before the progress bar starts; the bar then
        # counts the rows still to do, not those of units a killed run finished.
        done = set(extract.shards.start(args.out, plan.document, overwrite=args.overwrite))
    except (ValueError, OSError) as err:
        raise UsageError(str(err)) from None
    except extract.ExtractionError as err:
        raise UsageError(str(err), show_usage=False) from None
    pending = [u for u in plan.units if u.index not in done]
    total = None if args.no_progress else extract.estimate_rows(pending, args.sampling)
    try:
        with _progress(total, args, desc="extract") as bar, _terminate_unwinds():
            ex = extract.run_plan(
                plan,
                args.out,
                batch_size=args.batch_size,
                runner=args.runner,
                workers=args.workers,
                pipeline_options=pipeline_options,
                overwrite=False,  # start() above already replaced what --overwrite replaces
                scratch=args.scratch,
                progress=bar,
                weights=_weights_path(args),
            )
    except extract.ExtractionError as err:
        raise UsageError(str(err), show_usage=False) from None
    except KeyboardInterrupt:
        kept = sum(
            extract.shards.unit_done(extract.shards.layout_of(args.out, plan.document), u.index) for u in plan.units
        )
        print(
            f"\nemonet extract: interrupted; {kept} of {len(plan.units)} units are done and kept in {args.out}: "
            "run the same command again to resume",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
    _report_extraction(ex, args.out)
    return EXIT_OK if ex.manifest["rows"] else EXIT_NOTHING_PROCESSED


def _report_extraction(ex, out: str) -> None:
    from emonet_tf import extract

    m = ex.manifest
    print(
        f"{m['rows']} rows ({', '.join(ex.outputs)}) from {m['units']} units in {m['seconds']} s "
        f"({m['units_resumed']} units kept from an earlier run): {out}"
    )
    print(f"manifest: {extract.shards.remote.join(out, extract.MANIFEST)}")
    if m["errors"]:
        print(
            f"emonet extract: {m['errors']} input(s) failed, listed with the reason in "
            f"{extract.shards.remote.join(out, extract.ERRORS)}",
            file=sys.stderr,
        )
    if m["damaged_videos"]:
        print(
            f"emonet extract: {len(m['damaged_videos'])} damaged video(s) kept, rows marked 'damaged'", file=sys.stderr
        )


def cmd_run(args) -> int:
    from emonet_tf import run

    return run.main(args)


def cmd_brain_experiment1(args) -> int:
    """`emonet brain experiment1`: emonet_tf.brain.experiment1.run_command; a bad input file exits 2."""
    from emonet_tf.brain import experiment1

    try:
        return experiment1.run_command(args)
    except experiment1.InputError as err:
        raise UsageError(str(err)) from None


# ------------------------------------------------------------------------------------------------
# Parser


def build_parser(convert_alias: Optional[str] = None) -> argparse.ArgumentParser:
    """The `emonet` parser; `convert_alias` ("python -m emonet_tf.weights") adds it to convert's usage."""
    # Light modules only: --help and usage errors must not wait for TensorFlow (issue 12).
    from emonet_tf.image_spec import RESIZE_METHODS
    from emonet_tf.video import DAMAGED_POLICIES, DEFAULT_DAMAGED_POLICY

    parser = argparse.ArgumentParser(
        prog="emonet",
        description="EmoNet (Kragel et al. 2019): emotion categories of images and videos.",
        epilog="Exit status: 0 if anything was processed, 1 if nothing could be, 2 for usage errors.",
    )

    def model_options() -> argparse.ArgumentParser:
        # A fresh parent per command: argparse shares parent actions, so set_defaults would leak across commands.
        parent = argparse.ArgumentParser(add_help=False)
        parent.add_argument(
            "--weights",
            help="weights: .keras, MATLAB text dump folder, emonet-py .pth, ecco .pt (default: $EMONET_WEIGHTS)",
        )
        parent.add_argument(
            "--mean",
            help="mean image for weight files without one (emonet-py/ecco .pth): img_mean.txt, .binaryproto or .npy",
        )
        parent.add_argument(
            "--resize-method",
            "--resize_method",
            dest="resize_method",
            default=None,
            choices=RESIZE_METHODS,
            help="image resize (default: the model's saved preprocessing; "
            "MATLAB's imresize for weights that record none)",
        )
        parent.add_argument(
            "--batch-size",
            "--batch_size",
            dest="batch_size",
            type=int,
            default=32,
            help="images per forward pass (default 32)",
        )
        parent.add_argument(
            *NO_PROGRESS,
            dest="no_progress",
            action="store_true",
            help="no progress on stderr (a bar on a terminal, otherwise a line every 30 s and at the end)",
        )
        return parent

    model = model_options()
    frames = argparse.ArgumentParser(add_help=False)
    frames.add_argument(
        "--sampling",
        default="every5",
        help="video frames: every5 (the lab's MATLAB scripts), fps10 (its PyTorch pipeline: "
        "ffmpeg's fps=10 filter, frames never repeated), all, everyN, fpsR (default every5)",
    )
    frames.add_argument(
        "--damaged",
        default=DEFAULT_DAMAGED_POLICY,
        choices=DAMAGED_POLICIES,
        help="a damaged video (decoder error, or the stream ends before its own duration): skip "
        "(default) reports it as failed and writes no row of it; keep uses the frames that "
        "decoded and marks its rows (status 'damaged' in CSV/JSON, 'damaged' in .npz, "
        ".rows.csv next to a .npy)",
    )
    frames.add_argument(
        "--exif-orientation",
        "--exif_orientation",
        dest="exif_orientation",
        action="store_true",
        help="rotate/flip image files by their EXIF Orientation tag before resizing (default off, "
        "as MATLAB's imread and the published EmoNet; videos and TFDS frames are unaffected)",
    )
    outputs = argparse.ArgumentParser(add_help=False)
    outputs.add_argument("--csv", help="write one row per image / sampled frame / video mean to this CSV")
    outputs.add_argument("--json", help="the same rows as JSON")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser(
        "predict", parents=[model, frames, outputs], help="emotion categories of images, folders, videos"
    )
    p.add_argument("inputs", nargs="+", help="image or video files, or folders (searched recursively)")
    p.add_argument("--top", type=int, default=3, help="categories shown per file (default 3)")
    p.add_argument("--plot-dir", "--plot_dir", dest="plot_dir", help="write an emotion time-course PNG per video")
    p.set_defaults(func=cmd_predict, subparser=p)

    p = sub.add_parser("evaluate", parents=[model, frames], help="top-1/top-5/AUC/confusion on a TFDS split or folder")
    p.add_argument("--dataset", help="TFDS name or prepared builder folder")
    p.add_argument("--data-dir", "--data_dir", dest="data_dir", help="TFDS data_dir")
    p.add_argument("--split", default="test")
    p.add_argument("--folder", help="labelled folder root/<category>/<image or video>")
    p.add_argument("--out-dir", "--out_dir", dest="out_dir", required=True, help="metrics JSON and plots go here")
    p.add_argument(
        "--predictions",
        metavar="PATH",
        help="with --dataset: one row per example (video_id, frame_index, "
        "timestamp_ms, label, probabilities) to .csv or .parquet",
    )
    p.add_argument(
        "--fc7",
        choices=("columns", "npy"),
        help="with --predictions: the fc7 features as 4096 columns or as PATH-stem.fc7.npy (row i = table row i)",
    )
    p.add_argument("--logits", action="store_true", help="with --predictions: also the fc8 logits (logit_<class>)")
    p.set_defaults(func=cmd_evaluate, subparser=p)

    add_convert_parser(sub, convert_alias)

    p = sub.add_parser("export", parents=[model_options()], help="SavedModel for TF Serving (+ .keras, TFLite)")
    p.add_argument("--out", required=True, help="SavedModel folder (e.g. models/emonet/1 for TF Serving)")
    p.add_argument(
        "--include-features",
        "--include_features",
        dest="include_features",
        action="store_true",
        help="also output fc7, relu7 and fc8",
    )
    p.add_argument("--tflite", nargs="?", const=True, help="also write TFLite (default path: OUT.tflite)")
    p.add_argument("--keras", nargs="?", const=True, help="also write a .keras file (default path: OUT.keras)")
    p.add_argument("--check-image", dest="check_image", help="image for the TFLite-vs-TF check (default synthetic)")
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an existing non-empty --out folder (the new SavedModel is renamed into place when complete)",
    )
    p.set_defaults(func=cmd_export, subparser=p)

    p = sub.add_parser(
        "affect",
        parents=[model, frames, outputs],
        help="valence/arousal from the fc8 logits; or fit new read-outs with --fit",
    )
    p.add_argument("inputs", nargs="*", help="image or video files, or folders")
    p.add_argument("--coefficients", help="read-out JSON written by --fit (default: emonet-py's published ones)")
    p.add_argument("--fit", metavar="RATINGS_CSV", help="fit read-outs: CSV with a file column and rating columns")
    p.add_argument("--out", help="with --fit: the coefficient JSON to write")
    p.add_argument(
        "--image-root",
        "--image_root",
        dest="image_root",
        help="folder the CSV's file names are relative to (default: the CSV's folder)",
    )
    p.add_argument("--path-column", dest="path_column", help="file column of the CSV (default: detected)")
    p.add_argument("--targets", help="comma-separated rating columns (default: every numeric column)")
    p.add_argument("--method", default="auto", choices=("auto", "pls", "ridge"))
    p.add_argument("--components", type=int, help="fix the number of PLS components (no selection)")
    p.add_argument("--alpha", type=float, help="fix the ridge penalty (no selection)")
    p.add_argument("--folds", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--plot-dir", "--plot_dir", dest="plot_dir", help="with --fit: CV scatter plots")
    p.set_defaults(func=cmd_affect, subparser=p)

    p = sub.add_parser("activations", parents=[model, frames], help="a layer's outputs as .npy/.npz")
    p.add_argument("inputs", nargs="+", help="image or video files, or folders")
    p.add_argument(
        "--layer",
        default="fc7",
        help="conv1..conv5, relu*, norm*, pool*, fc6, relu6, fc7, relu7, fc8, softmax (default fc7)",
    )
    p.add_argument(
        "--out",
        required=True,
        help=".npy (activations only, plus OUT.rows.csv: source, frame, "
        "timestamp and status of each row, and the failed inputs) or .npz "
        "(+ sources, frame indices, timestamps, damaged flags, errors)",
    )
    p.set_defaults(func=cmd_activations, subparser=p)

    p = sub.add_parser(
        "extract",
        parents=[model, frames],
        help="layers + probabilities of a whole corpus as sharded Parquet/TFRecord; resumable; on Beam",
    )
    p.add_argument("inputs", nargs="*", help="image or video files, folders, or URLs (gs://, s3://, ...)")
    p.add_argument("--out", required=True, help="the extraction folder (local or a URL); a rerun resumes it")
    p.add_argument("--list", help="a text file of inputs, one per line (relative to its folder)")
    p.add_argument("--tfds", help="a TFDS split instead of files: tfds:NAME[/CONFIG]:SPLIT")
    p.add_argument("--data-dir", "--data_dir", dest="data_dir", help="TFDS data_dir for --tfds")
    p.add_argument(
        "--layers",
        default="fc7,fc8",
        help="comma-separated layers, one forward pass (conv1..conv5, relu*, norm*, pool*, fc6, relu6, fc7, "
        "relu7, fc8); probabilities are always written (default fc7,fc8)",
    )
    p.add_argument("--format", default="parquet", choices=["parquet", "tfrecord"], help="shard format")
    p.add_argument(
        "--runner",
        default="local",
        choices=["local", "beam"],
        help="local: this process; beam: Apache Beam RunInference (DirectRunner with --workers processes, or "
        "the runner in --pipeline-options)",
    )
    p.add_argument("--workers", type=int, default=2, help="DirectRunner worker processes (default 2)")
    p.add_argument(
        "--pipeline-options",
        "--pipeline_options",
        dest="pipeline_options",
        help="Beam's own flags in one string, e.g. \"--runner=DataflowRunner --project=P --region=R "
        '--temp_location=gs://B/tmp" (docs/extract.md)',
    )
    p.add_argument(
        "--images-per-unit",
        "--images_per_unit",
        dest="images_per_unit",
        type=int,
        default=256,
        help="images (or TFDS examples) per work unit and shard (default 256)",
    )
    p.add_argument(
        "--frames-per-unit",
        "--frames_per_unit",
        dest="frames_per_unit",
        type=int,
        help="split each video into work units of this many decoded frames (long films over several "
        "workers; each range decodes the whole film); default: one unit per video",
    )
    p.add_argument("--scratch", help="local folder for copies of remote inputs and staging files")
    p.add_argument("--overwrite", action="store_true", help="replace an extraction in --out made with other settings")
    p.set_defaults(func=cmd_extract, subparser=p)

    from emonet_tf import run  # its top level is TensorFlow-free

    p = sub.add_parser(
        "run",
        help="the main job: predict with --weights; without weights, generated clips -> "
        "records -> training -> evaluation -> SavedModel -> predictions",
    )
    run.add_arguments(p)
    p.set_defaults(func=cmd_run, subparser=p)

    from emonet_tf.brain import experiment1  # numpy only at import: parsing stays light

    p = sub.add_parser("brain", help="the paper's fMRI analyses (needs the brain extra): experiment1")
    brain = p.add_subparsers(dest="brain_command", required=True, metavar="ANALYSIS")
    p = brain.add_parser(
        "experiment1",
        help="LOSO PLS from single-trial patterns to fc8: r per category, decoding confusion, discriminable "
        "categories, next to the paper's numbers (emonet_tf.brain.experiment1)",
    )
    experiment1.add_arguments(p)
    p.set_defaults(func=cmd_brain_experiment1, subparser=p)
    return parser


def add_convert_parser(sub, alias: Optional[str] = None) -> argparse.ArgumentParser:
    """`emonet convert` (also `python -m emonet_tf.weights`): one parser, one set of flags and exit codes.

    `alias`: the usage shows the same arguments a second time under this name (`   or: ALIAS ...`).
    """
    p = sub.add_parser(
        "convert",
        help="convert published weights to a .keras file",
        description="Convert a published EmoNet/AlexNet weight file or MATLAB text dump to .keras.",
    )
    p.add_argument("src", help="weight file or folder (MATLAB text dump, .pth, .pt, .npy, .caffemodel, .keras)")
    p.add_argument("dst", help="output .keras file")
    p.add_argument(
        "--format",
        default="auto",
        help="the source's layout, one of emonet_tf.weights.FORMATS "
        "(matlab_text, emonet_py_pth, ecco_pth, bvlc_npy, caffemodel, "
        "keras, and any registered; default: auto, detected)",
    )
    p.add_argument(
        "--new-head-classes",
        "--new_head_classes",
        "--new-head",
        dest="new_head_classes",
        type=int,
        metavar="N",
        help="fresh fc8 with this many outputs instead of the file's head",
    )
    p.add_argument("--mean", help="mean image file for sources without one (img_mean.txt, Caffe .binaryproto, .npy)")
    p.add_argument(
        *NO_PROGRESS,
        dest="no_progress",
        action="store_true",
        help="no progress bar on stderr while a MATLAB text dump is read",
    )
    p.add_argument(
        "--fc6-order",
        "--fc6_order",
        dest="fc6_order",
        default="hwc",
        choices=("hwc", "chw"),
        help="row order of fc6 in a bvlc_alexnet.npy (hwc: as published; chw: raw Caffe order)",
    )
    p.set_defaults(func=cmd_convert, subparser=p)
    if alias:
        usage = p.format_usage().strip()[len("usage: ") :]
        arguments = [line.strip() for line in usage[len(p.prog) :].splitlines()]
        again = ("\n" + " " * (len("   or: ") + len(alias) + 1)).join(arguments)
        p.usage = f"{usage}\n   or: {alias} {again}"
    return p


def main(argv: Optional[Sequence[str]] = None, convert_alias: Optional[str] = None) -> int:
    """Entry point of the `emonet` console script; returns the exit status (0, 1 or 2; module docstring).

    A usage error prints the subcommand's usage and `emonet <command>: error: ...`; any other failure one
    line `emonet <command>: error: ...` (EMONET_TRACEBACK=1 shows the traceback instead).
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    parser = build_parser(convert_alias)
    args, unknown = parser.parse_known_args(argv)
    sub = args.subparser
    if unknown:  # the subcommand's usage, not the top-level one that parse_args would print
        sub.error(f"unrecognized arguments: {' '.join(unknown)}")
    if getattr(args, "batch_size", 1) < 1:
        sub.error("--batch-size must be at least 1")
    if getattr(args, "top", 1) < 1:
        sub.error("--top must be at least 1")
    for flag, name, low in (("--components", "components", 1), ("--folds", "folds", 2)):
        if getattr(args, name, None) is not None and getattr(args, name) < low:
            sub.error(f"{flag} must be at least {low}, got {getattr(args, name)}")
    alpha = getattr(args, "alpha", None)
    if alpha is not None and not (math.isfinite(alpha) and alpha > 0):
        sub.error(f"--alpha must be a finite number above 0, got {alpha}")
    if hasattr(args, "sampling"):
        from emonet_tf.video import FrameSampling

        try:
            FrameSampling.parse(args.sampling)
        except ValueError as err:
            sub.error(str(err))
    try:
        return args.func(args)
    except UsageError as err:
        if err.show_usage:
            sub.print_usage(sys.stderr)
        print(f"{sub.prog}: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except CommandFailed as err:
        print(f"{sub.prog}: error: {err}", file=sys.stderr)
        return EXIT_FAILED
    except (KeyboardInterrupt, SystemExit):
        raise
    except Exception as err:  # noqa: BLE001 -- a command-line tool answers in one line, not a traceback
        if os.environ.get("EMONET_TRACEBACK"):
            raise
        print(f"{sub.prog}: error: {type(err).__name__}: {err} (EMONET_TRACEBACK=1 shows where)", file=sys.stderr)
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
