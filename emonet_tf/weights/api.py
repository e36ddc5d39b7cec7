"""Format detection, reading, applying weights to a model, building a classifier, and `convert`."""

from __future__ import annotations

import os
import stat
import warnings
from typing import Any, Optional, Sequence

import numpy as np

from emonet_tf.backbone import IMAGENET_RGB_MEAN, AlexNetBackbone
from emonet_tf.categories import EMONET_CATEGORIES
from emonet_tf.untrusted import file_kind
from emonet_tf.weights import builtin, bvlc, registry  # noqa: F401  (importing builtin registers the formats)
from emonet_tf.weights.errors import WeightFormatError, WeightMismatchError
from emonet_tf.weights.keras_file import MAX_KERAS_JSON_BYTES, read_keras  # noqa: F401  (importable from here)
from emonet_tf.weights.weightset import FORMATS, LAYERS, WeightSet, check_mean, make_weightset

HEADS = ("load", "skip")


class WeightFileNotFoundError(WeightFormatError, FileNotFoundError):
    """A weight path that does not exist: a WeightFormatError, and a FileNotFoundError for callers that catch that."""


def check_weight_path(path: str) -> None:
    """Refuses, before anything opens it, a path that is neither a regular file nor a folder.

    A FIFO would block `open()` forever and a device (/dev/zero, also through a symlink) would be read
    without end, so the type is checked with os.stat (symlinks resolved). Raises WeightFileNotFoundError
    for a missing path, WeightFormatError naming the path and its type for anything else.
    """
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise WeightFileNotFoundError(f"{path}: no such file or folder") from None
    except OSError as err:
        raise WeightFormatError(f"{path}: cannot read ({err.strerror or err})") from None
    if stat.S_ISREG(mode) or stat.S_ISDIR(mode):
        return
    raise WeightFormatError(f"{path}: {file_kind(mode)}, not a regular file; refused before opening")


def detect_format(path) -> str:
    """Names the format of a weight file or folder from its content (extension only for .caffemodel/.keras).

    Asks the sniff of every registered format in turn (`emonet_tf.weights.registry`, built-ins in
    `weights/builtin.py`). Raises WeightFormatError naming the path for a missing path, an unrecognised file,
    or a `.pth` whose pickle is refused (it is read with the same restricted machine as `read_weights`,
    without its storages).
    """
    path = os.fspath(path)
    check_weight_path(path)
    return registry.detect(path)


def weights_from_model(model, source: str) -> WeightSet:
    """The WeightSet of an EmoNetClassifier or AlexNetBackbone (Keras layout already)."""
    layers = {}
    for name, layer in _weighted_layers(model).items():
        layers[name] = (np.asarray(layer.kernel), np.asarray(layer.bias))
    mean_layer = _mean_layer(model)
    mean = np.asarray(mean_layer.mean) if mean_layer is not None else None
    names = tuple(model.class_names) if hasattr(model, "class_names") else None
    weight_set = make_weightset(
        layers,
        mean,
        names,
        source,
        "keras",
        ("Keras model saved by emonet_tf",),
        required=tuple(n for n in LAYERS if n in layers),
    )
    preprocessor = getattr(model, "preprocessor", None)  # the preprocessing the model was trained/saved with
    weight_set.preprocessing = preprocessor.get_config() if preprocessor is not None else None
    return weight_set


def read_weights(path, format: str = "auto", *, mean=None, fc6_order: str = "hwc") -> WeightSet:
    """Reads any supported weight file into a WeightSet (Keras layout).

    mean: optional mean file or array (.binaryproto, img_mean.txt, .npy, or values) that replaces the file's
      own mean (or fills in when the file has none).
    fc6_order: bvlc_npy only: 'hwc' (caffe-tensorflow, the published file) or 'chw' (raw Caffe order).

    Every file is treated as untrusted (docs/weights.md, "Untrusted files"): nothing in it is executed, the memory
    it can claim is bounded by `emonet_tf.weights.limits`, and a refused file changes nothing for later calls.
    Raises WeightFormatError (message: the file, then the problem) for anything that is not a well-formed file
    of the format (a missing path: WeightFileNotFoundError, also a FileNotFoundError; a FIFO, device or
    socket: refused before opening), WeightMismatchError (a subclass) for a layer of the wrong shape, ValueError for an unknown
    `format`.
    """
    path = os.fspath(path)
    check_weight_path(path)  # missing, FIFO, device: refused before any reader opens it
    name = detect_format(path) if format == "auto" else format
    if name not in FORMATS:
        raise ValueError(f"Unknown format {format!r}; choose auto or one of {', '.join(FORMATS)}")
    fmt = registry.get(name)
    options = {"mean": mean, "fc6_order": fc6_order}
    ws = fmt.read(path, **{key: value for key, value in options.items() if key in fmt.options})
    if mean is not None and "mean" not in fmt.options:
        arr, note = bvlc.read_mean(mean)
        ws.mean = check_mean(arr, os.fspath(mean) if isinstance(mean, (str, os.PathLike)) else "mean")
        ws.notes = ws.notes + (note,)
    return ws


# --------------------------------------------------------------------------------------------------
# Applying weights to a model


def _backbone_of(model):
    return model.backbone if hasattr(model, "backbone") and isinstance(model.backbone, AlexNetBackbone) else model


def _weighted_layers(model) -> dict[str, Any]:
    """name -> layer for every conv/fc layer the model has (fc8 only on a classifier)."""
    backbone = _backbone_of(model)
    found = {}
    for name in LAYERS:
        owner = model if name == "fc8" else backbone
        try:
            found[name] = owner.get_layer(name)
        except ValueError:
            continue
    return found


def _mean_layer(model):
    try:
        return _backbone_of(model).get_layer("zerocenter")
    except ValueError:
        return None


def apply_weights(model, weights: WeightSet, head: str = "load") -> None:
    """Copies a WeightSet into an EmoNetClassifier or AlexNetBackbone, all or nothing.

    Every layer of the model with weights must be in the set (fc8 too, unless head='skip', which leaves
    a new head for transfer learning); names and shapes of all of them (and of the mean) are checked
    before the first assignment, so a mismatch raises WeightMismatchError with the model untouched.
    Layers the model lacks (fc8 on a bare backbone, fc6/fc7 on one cut at pool5) are ignored.
    """
    if head not in HEADS:
        raise ValueError(f"head must be one of {HEADS}, got {head!r}")
    targets = _weighted_layers(model)
    if head == "skip":
        targets.pop("fc8", None)
    missing = [name for name in targets if name not in weights.layers]
    if missing:
        raise WeightFormatError(
            f"{weights.source}: has no weights for layers {missing} of the model"
            + ("; use head='skip' (a new head)" if missing == ["fc8"] else "")
        )
    plan = []
    for name, layer in targets.items():
        kernel, bias = weights.layers[name]
        for what, var, value in (("kernel", layer.kernel, kernel), ("bias", layer.bias, bias)):
            if tuple(var.shape) != tuple(value.shape):
                hint = "use head='skip' or new_head=True for a new head" if name == "fc8" else ""
                raise WeightMismatchError(f"{name} {what}", tuple(var.shape), value.shape, weights.source, hint)
            plan.append((var, value))
    mean_layer = _mean_layer(model)
    mean_value = None
    if weights.mean is not None and mean_layer is not None:
        mean_value = check_mean(weights.mean, weights.source)
        mean_value = mean_layer.broadcast_mean(mean_value, mean_layer.image_size)
    for var, value in plan:
        var.assign(np.asarray(value, dtype=var.dtype))
    if mean_value is not None:
        mean_layer.set_mean(mean_value)
    if (
        head == "load"
        and weights.class_names is not None
        and getattr(model, "class_names", None) is not None
        and len(weights.class_names) == len(model.class_names)
    ):
        model.class_names = tuple(weights.class_names)


def build_classifier(
    weights: WeightSet,
    num_classes: Optional[int] = None,
    class_names: Optional[Sequence[str]] = None,
    activation: Optional[str] = "softmax",
    new_head: bool = False,
):
    """A ready EmoNetClassifier holding `weights`.

    new_head=False: fc8 comes from the file (its size gives num_classes; a different num_classes is refused).
    new_head=True: a new head, a freshly initialised fc8 with num_classes outputs (20 EmoNet categories by
    default) - transfer learning from the ImageNet AlexNet or re-training EmoNet's head.
    """
    from emonet_tf.classifier import EmoNetClassifier
    from emonet_tf.preprocessor import EmoNetPreprocessor

    if new_head:
        if num_classes is None and class_names is None:
            class_names = EMONET_CATEGORIES
    else:
        if "fc8" not in weights.layers:
            raise WeightFormatError(f"{weights.source}: has no fc8; use new_head=True for a new head")
        file_classes = weights.num_classes
        if num_classes is not None and num_classes != file_classes:
            raise WeightMismatchError(
                "fc8 kernel",
                (4096, num_classes),
                weights.layers["fc8"][0].shape,
                weights.source,
                "use new_head=True for a new head",
            )
        num_classes = file_classes
        if class_names is None:
            class_names = weights.class_names
    if num_classes is not None and num_classes < 1:
        raise ValueError(f"the new head needs at least 1 class, got {num_classes}")
    if weights.mean is None:
        warnings.warn(
            f"{weights.source}: the file holds no mean image, so the model subtracts the per-channel "
            "ImageNet mean; EmoNet subtracts its own 227x227 mean image (pass mean=img_mean.txt, "
            "--mean on the command line, or convert once with `emonet convert SRC DST.keras --mean ...`)",
            stacklevel=2,
        )
    per_channel = weights.mean is not None and np.size(weights.mean) == 3
    backbone = AlexNetBackbone(mean=tuple(float(v) for v in weights.mean) if per_channel else IMAGENET_RGB_MEAN)
    preprocessor = None if weights.preprocessing is None else EmoNetPreprocessor.from_config(weights.preprocessing)
    model = EmoNetClassifier(
        backbone, num_classes=num_classes, activation=activation, class_names=class_names, preprocessor=preprocessor
    )
    apply_weights(model, weights, head="skip" if new_head else "load")
    return model


# --------------------------------------------------------------------------------------------------
# Summary and conversion


def _mean_description(mean) -> str:
    if mean is None:
        return (
            "none in the file: the model keeps its default per-channel ImageNet mean "
            f"{tuple(round(v, 2) for v in IMAGENET_RGB_MEAN)}"
        )
    m = np.asarray(mean)
    if m.shape == (3,):
        return f"per-channel RGB {tuple(round(float(v), 4) for v in m)}"
    return (
        f"{m.shape[0]}x{m.shape[1]}x3 RGB image, channel means "
        f"{tuple(round(float(v), 4) for v in m.reshape(-1, 3).mean(axis=0))}, range {m.min():.4g}..{m.max():.4g}"
    )


def describe(weights: WeightSet) -> str:
    """A human-readable account of a WeightSet: every layer with its shapes, the mean, class names, notes."""
    lines = [f"source: {weights.source}", f"format: {weights.format}"]
    for name in LAYERS:
        if name in weights.layers:
            k, b = weights.layers[name]
            lines.append(f"  {name:<6} kernel {str(tuple(k.shape)):<20} bias {tuple(b.shape)}")
    lines.append(f"mean: {_mean_description(weights.mean)}")
    if weights.class_names:
        names = list(weights.class_names)
        shown = ", ".join(names if len(names) <= 20 else names[:5] + ["..."] + names[-2:])
        lines.append(f"class names ({len(names)}): {shown}")
    else:
        lines.append("class names: none in the file")
    lines.extend(f"note: {n}" for n in weights.notes)
    return "\n".join(lines)


def convert(
    src, dst, format: str = "auto", new_head_classes: Optional[int] = None, *, mean=None, fc6_order: str = "hwc"
) -> str:
    """Reads `src`, builds the classifier (refusing any mismatch) and writes `dst` (.keras, mean included).

    new_head_classes: a new head (a freshly initialised fc8) with that many outputs instead of the file's one
    (e.g. 20 on top of the 1000-way ImageNet AlexNet). Returns the summary of what was loaded and written.
    """
    dst = os.fspath(dst)
    if not dst.endswith(".keras"):
        raise ValueError(f"{dst}: the destination must end in .keras")
    weights = read_weights(src, format=format, mean=mean, fc6_order=fc6_order)
    new_head = new_head_classes is not None
    model = build_classifier(weights, num_classes=new_head_classes, new_head=new_head)
    folder = os.path.dirname(os.path.abspath(dst))
    os.makedirs(folder, exist_ok=True)
    partial = os.path.join(folder, f".{os.path.basename(dst)[: -len('.keras')]}.partial.keras")
    try:
        model.save(partial)
        os.replace(partial, dst)
    finally:
        if os.path.exists(partial):
            os.remove(partial)
    summary = describe(weights)
    if new_head:
        head = f"head: fresh fc8 with {model.num_classes} outputs (the file's fc8 was not loaded)"
    else:
        head = f"head: fc8 from the file, {model.num_classes} outputs"
    if weights.mean is None:
        mean_line = "mean in the model: default per-channel ImageNet mean"
    else:
        mean_line = "mean in the model: " + ("per-channel" if np.size(weights.mean) == 3 else "full image")
    names = list(model.class_names)
    classes = ", ".join(names if len(names) <= 20 else names[:5] + ["..."] + names[-2:])
    return "\n".join(
        [
            summary,
            head,
            mean_line,
            f"model classes ({len(names)}): {classes}",
            f"written: {dst} ({os.path.getsize(dst) / 2**20:.1f} MiB)",
        ]
    )
