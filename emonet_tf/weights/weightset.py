"""`WeightSet`: weights of one file in Keras layout, plus the canonical shapes every importer checks against."""

from __future__ import annotations

import dataclasses
from typing import Mapping, Optional

import numpy as np

from emonet_tf.backbone import WEIGHT_SHAPES
from emonet_tf.image_spec import IMAGE_SIZE
from emonet_tf.weights import registry
from emonet_tf.weights.errors import WeightFormatError, WeightMismatchError

#: Layer names a WeightSet may hold, in network order.
LAYERS: tuple[str, ...] = ("conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7", "fc8")
#: Input width of fc8 (the fc7 features).
FC8_INPUTS = 4096
#: pool5 grid: fc6 sees POOL5_SHAPE = (h, w, c) flattened.
POOL5_SHAPE = (6, 6, 256)

#: Names of the registered weight formats, in detection order (a live view of `emonet_tf.weights.registry`).
FORMATS = registry.FORMATS


@dataclasses.dataclass
class WeightSet:
    """Weights read from one file, already in Keras layout (see `emonet_tf.weights.mapping`).

    layers: name -> (kernel, bias); keys among conv1..conv5, fc6, fc7, fc8.
    mean: (227, 227, 3) RGB mean image, (3,) per-channel RGB mean, or None when the source has none.
    class_names: names of the fc8 outputs when the file stores them (only .keras files do).
    notes: what the importer did beyond copying (channel flips, assumed means); shown by `convert`.
    preprocessing: the `EmoNetPreprocessor` config the file records (only .keras files saved by emonet_tf);
      None means the default contract (MATLAB's imresize), which every other published file was made with.
    """

    layers: dict[str, tuple[np.ndarray, np.ndarray]]
    mean: Optional[np.ndarray]
    class_names: Optional[tuple[str, ...]]
    source: str
    format: str
    notes: tuple[str, ...] = ()
    preprocessing: Optional[dict] = None

    @property
    def num_classes(self) -> Optional[int]:
        """Outputs of fc8, or None when the set has no fc8."""
        return int(self.layers["fc8"][0].shape[1]) if "fc8" in self.layers else None


def expected_shapes(num_classes: Optional[int]) -> dict[str, tuple[tuple[int, ...], tuple[int, ...]]]:
    """Keras-layout (kernel, bias) shapes of every layer; fc8 with `num_classes` outputs."""
    shapes = dict(WEIGHT_SHAPES)
    if num_classes is not None:
        shapes["fc8"] = ((FC8_INPUTS, num_classes), (num_classes,))
    return shapes


def check_mean(mean, source: str) -> Optional[np.ndarray]:
    """Returns the mean as float32 (227, 227, 3) or (3,); raises WeightMismatchError naming both shapes."""
    if mean is None:
        return None
    arr = np.asarray(mean, dtype=np.float32)
    if arr.shape not in ((IMAGE_SIZE, IMAGE_SIZE, 3), (3,)):
        raise WeightMismatchError("mean image", f"({IMAGE_SIZE}, {IMAGE_SIZE}, 3) or (3,)", arr.shape, source)
    if not np.all(np.isfinite(arr)):
        raise WeightFormatError(f"{source}: the mean image holds NaN or infinite values")
    return arr


def make_weightset(
    layers: Mapping[str, tuple[np.ndarray, np.ndarray]],
    mean,
    class_names,
    source: str,
    fmt: str,
    notes: tuple[str, ...] = (),
    required: tuple[str, ...] = LAYERS,
) -> WeightSet:
    """Validates Keras-layout layers (names, shapes, finite values) and returns them as a WeightSet.

    Every importer ends here, so a WeightSet never holds a wrongly shaped or non-finite array.
    """
    unknown = sorted(set(layers) - set(LAYERS))
    if unknown:
        raise WeightFormatError(f"{source}: unknown layer names {unknown}; expected names among {list(LAYERS)}")
    missing = [name for name in required if name not in layers]
    if missing:
        raise WeightFormatError(f"{source}: missing layers {missing}")
    num_classes = int(np.shape(layers["fc8"][0])[-1]) if "fc8" in layers and np.ndim(layers["fc8"][0]) == 2 else None
    shapes = expected_shapes(num_classes)
    out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for name in LAYERS:
        if name not in layers:
            continue
        kernel, bias = (np.asarray(a) for a in layers[name])
        (k_shape, b_shape) = shapes.get(name, ((FC8_INPUTS, "N"), ("N",)))
        if kernel.shape != k_shape:
            raise WeightMismatchError(f"{name} kernel", k_shape, kernel.shape, source)
        if bias.shape != b_shape:
            raise WeightMismatchError(f"{name} bias", b_shape, bias.shape, source)
        kernel = np.ascontiguousarray(kernel, dtype=np.float32)
        bias = np.ascontiguousarray(bias, dtype=np.float32)
        if not (np.all(np.isfinite(kernel)) and np.all(np.isfinite(bias))):
            raise WeightFormatError(f"{source}: layer {name} holds NaN or infinite values (corrupt file?)")
        out[name] = (kernel, bias)
    names = None if class_names is None else tuple(str(c) for c in class_names)
    if names is not None and num_classes is not None and len(names) != num_classes:
        raise WeightFormatError(f"{source}: {len(names)} class names for a {num_classes}-way fc8")
    return WeightSet(
        layers=out, mean=check_mean(mean, source), class_names=names, source=source, format=fmt, notes=tuple(notes)
    )
