"""`EmoNetPreprocessor`: the one preprocessing contract, saved with the model.

Every path that turns an image into the network's input reads its settings from one object, the
model's `preprocessor` (keras-hub's `ImageClassifierPreprocessor` idea): `EmoNet.predict_images`,
`predict_video` and `activations` on files, `emonet predict | evaluate | activations | export`, the
tf.data pipelines of training and evaluation, the fc7 feature cache, and the SavedModel's bytes
signature. It is part of `EmoNetClassifier.get_config()`, so a `.keras` file records it; a SavedModel
holds it as `assets/preprocessing.json` and as the string variable `preprocessing_config` (readable
with TensorFlow alone). A model trained with `resize_method="bilinear", antialias=False` is therefore
evaluated, exported and served with exactly those settings (tests/test_preprocessor.py).

What the contract fixes (docs/preprocessing.md has the measurements):
- decoding: PIL's pixels on the host, the same pixels in-graph (JPEG with libjpeg's accurate integer
  IDCT, `jpeg_dct_method="INTEGER_ACCURATE"`, as MATLAB's `imread`), RGB channel order;
- resizing to `image_size` x `image_size` (227, the network's input) with `resize_method`
  ("matlab" = MATLAB's `imresize` bicubic, or a `tf.image.resize` method) and `antialias`
  (used by the `tf.image.resize` methods; MATLAB's resize always antialiases when shrinking);
- `exif_orientation`: whether the host path applies the EXIF Orientation tag (MATLAB does not).
The mean image is not here: it is a weight of the network's first layer (`zerocenter`, MATLAB's
`imageInputLayer` normalization), so it is saved with every weight format and cannot drift either.
"""

from __future__ import annotations

import functools
import json
import numbers
import os
from typing import Any, Optional, Sequence, Union

import keras
import numpy as np
import tensorflow as tf

from emonet_tf import preprocessing
from emonet_tf.image_spec import DEFAULT_RESIZE_METHOD, IMAGE_SIZE
from emonet_tf.layers import PACKAGE

#: The only JPEG decoding the contract allows: libjpeg's accurate integer IDCT, which PIL (standing for
#: MATLAB's imread) uses; TF's default ("" / INTEGER_FAST) is up to 17 grey levels off (docs/preprocessing.md).
JPEG_DCT_METHODS = ("INTEGER_ACCURATE",)
#: Channel order of the network's input. BGR weights (Caffe) are converted to RGB when imported.
CHANNEL_ORDERS = ("rgb",)


@keras.saving.register_keras_serializable(package=PACKAGE)
class EmoNetPreprocessor:
    """Image -> float32 [227, 227, 3] in 0-255 (RGB), the input the model expects (it subtracts the mean).

    Args:
      image_size: side of the network's input in pixels; must be 227 (`image_spec.IMAGE_SIZE`), the
        2012 AlexNet's.
      resize_method: "matlab" (default; MATLAB's `imresize`, transcribed) or a `tf.image.resize` method
        (`image_spec.RESIZE_METHODS`).
      antialias: antialias when shrinking with a `tf.image.resize` method (default True).
      jpeg_dct_method: "INTEGER_ACCURATE", the only value: the pixels MATLAB's imread and PIL return.
      channel_order: "rgb", the only value (lower case).
      exif_orientation: apply the EXIF Orientation tag on the host path (default False, as MATLAB's
        imread). The in-graph path never applies it, so a model that sets it serves images rotated
        differently from its host path; the SavedModel records the setting.

    Raises:
      ValueError: an unknown resize method, another image size, DCT method or channel order, or a value
        of the wrong type (e.g. the string "false" for a flag; nothing is coerced). The message names
        the setting and the values allowed.
    """

    def __init__(
        self,
        image_size: int = IMAGE_SIZE,
        resize_method: str = DEFAULT_RESIZE_METHOD,
        antialias: bool = True,
        jpeg_dct_method: str = "INTEGER_ACCURATE",
        channel_order: str = "rgb",
        exif_orientation: bool = False,
    ):
        # Strict types: the settings come from files (.keras config, SavedModel assets), where a "false"
        # string or 227.9 must be refused, not coerced ("false" is truthy).
        if type(image_size) is not int or image_size != IMAGE_SIZE:
            raise ValueError(
                f"image_size must be {IMAGE_SIZE}, an integer (the network's input side), got {image_size!r}"
            )
        for name, value in (("antialias", antialias), ("exif_orientation", exif_orientation)):
            if not isinstance(value, (bool, np.bool_)):
                raise ValueError(f"{name} must be true or false, got {value!r}")
        if not isinstance(resize_method, str):
            raise ValueError(f"resize_method must be a string, got {resize_method!r}")
        _check_choice("jpeg_dct_method", jpeg_dct_method, JPEG_DCT_METHODS)
        _check_choice("channel_order", channel_order, CHANNEL_ORDERS)
        self.image_size = IMAGE_SIZE
        self.resize_method = preprocessing.check_resize_method(resize_method)
        self.antialias = bool(antialias)
        self.jpeg_dct_method = jpeg_dct_method
        self.channel_order = channel_order
        self.exif_orientation = bool(exif_orientation)

    # -- configuration -----------------------------------------------------------------------
    def get_config(self) -> dict[str, Any]:
        return {
            "image_size": self.image_size,
            "resize_method": self.resize_method,
            "antialias": self.antialias,
            "jpeg_dct_method": self.jpeg_dct_method,
            "channel_order": self.channel_order,
            "exif_orientation": self.exif_orientation,
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "EmoNetPreprocessor":
        """The inverse of `get_config`; unknown keys raise ValueError naming them (a newer file)."""
        if not isinstance(config, dict):
            raise ValueError(f"preprocessing settings must be an object of settings, got {config!r:.80}")
        known = set(cls().get_config())
        unknown = sorted(set(config) - known)
        if unknown:
            raise ValueError(f"Unknown preprocessing settings {unknown}; this emonet_tf knows {sorted(known)}")
        return cls(**config)

    def replace(self, **changes) -> "EmoNetPreprocessor":
        """A copy with some settings changed (None values are ignored): `p.replace(resize_method="bicubic")`."""
        config = self.get_config()
        config.update({k: v for k, v in changes.items() if v is not None})
        return type(self).from_config(config)

    def to_json(self) -> str:
        return json.dumps(self.get_config(), sort_keys=True)

    @classmethod
    def from_json(cls, text: Union[str, bytes]) -> "EmoNetPreprocessor":
        return cls.from_config(json.loads(text))

    def __eq__(self, other) -> bool:
        return isinstance(other, EmoNetPreprocessor) and self.get_config() == other.get_config()

    def __hash__(self) -> int:
        return hash(self.to_json())

    def __repr__(self) -> str:
        settings = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"EmoNetPreprocessor({settings})"

    def describe(self) -> str:
        """One line for logs and summaries: "resize matlab, antialias on, JPEG INTEGER_ACCURATE, RGB"."""
        text = (
            f"resize {self.resize_method}, antialias {'on' if self.antialias else 'off'}, "
            f"JPEG {self.jpeg_dct_method}, {self.channel_order.upper()}"
        )
        return text + (", EXIF orientation applied" if self.exif_orientation else "")

    # -- in-graph (tf.data, SavedModel) ---------------------------------------------------------
    def preprocess_image_bytes(self, data: tf.Tensor, what: Optional[Sequence] = None) -> tf.Tensor:
        """Encoded bytes (scalar tf.string) -> float32 [227, 227, 3] in 0-255, with TF ops only.

        A refused or undecodable item raises InvalidArgumentError naming `what` and the reason.
        """
        return preprocessing.preprocess_image_bytes(
            data, method=self.resize_method, antialias=self.antialias, what=what
        )

    def traced_image_bytes(self, data: tf.Tensor, what: Union[str, tf.Tensor] = "image") -> tf.Tensor:
        """`preprocess_image_bytes` through a `tf.function` traced once per process and setting.

        For `Dataset.map` functions that are built again and again (every training epoch, every split,
        every feature cache): they call the one traced graph instead of running AutoGraph and building
        the decode (its validation loops) and the resize again, seconds each time on a CPU. `what`
        (a Python string or a scalar tf.string, e.g. the example's index) names the item in the
        InvalidArgumentError of a refused image: "[<what>] [could not be decoded in-graph:] [reason]".

        With the MATLAB resize, where `preprocessing._host_resize_exact()` holds (checked once per
        process), the resize runs the host code in a `tf.numpy_function`
        (`preprocessing.matlab_resize_on_host`): the same pixels, bit for bit, at a 6th of the graph's CPU.
        So a graph that calls this needs the Python process: tf.data in training, evaluation and the fc7
        cache, not a SavedModel (`export` uses `preprocess_image_bytes`).
        """
        return _traced_image_bytes(self.resize_method, self.antialias)(
            tf.convert_to_tensor(data, tf.string), tf.convert_to_tensor(what, tf.string)
        )

    def resize(self, image: tf.Tensor) -> tf.Tensor:
        """A decoded float32 [H, W, 3] image (0-255) -> float32 [227, 227, 3], with TF ops only."""
        return preprocessing.resize_image(image, method=self.resize_method, antialias=self.antialias)

    # -- host (files, bytes, arrays) -------------------------------------------------------------
    def load_image(self, path: Union[str, os.PathLike]) -> np.ndarray:
        """One image file -> float32 [227, 227, 3], integers 0-255; ImageDecodeError names the file."""
        return preprocessing.load_image(
            path, method=self.resize_method, antialias=self.antialias, exif_orientation=self.exif_orientation
        )

    def preprocess_bytes(self, data: bytes, source: str = "<bytes>") -> np.ndarray:
        """Encoded bytes on the host -> float32 [227, 227, 3]; ImageDecodeError names `source`."""
        return preprocessing.preprocess_bytes(
            data,
            source=source,
            method=self.resize_method,
            antialias=self.antialias,
            exif_orientation=self.exif_orientation,
        )

    def preprocess_array(self, array: np.ndarray) -> np.ndarray:
        """An RGB image in memory (H x W x 3 uint8 video frame, or see `to_rgb_float`) -> float32 [227, 227, 3].

        Pixels are RGB values in [0, 255] (a [0, 1] float image must be multiplied by 255 first).

        Raises:
          ValueError: for an array that is not an image, naming the problem (`preprocessing.to_rgb_float`):
            wrong rank or channel count, an empty image, a dtype with no pixel values (object, complex,
            string), NaN or infinite values, integer or float values outside [0, 255].
        """
        return preprocessing.preprocess_array(array, method=self.resize_method, antialias=self.antialias)

    def __call__(self, item: Union[str, os.PathLike, bytes, np.ndarray], source: Optional[str] = None) -> np.ndarray:
        """A path, encoded bytes (bytes, bytearray, memoryview) or an array -> float32 [227, 227, 3]
        (dispatches to the three host methods).

        Raises:
          TypeError: for an item that is none of these (None, a number, a 0-d array: `unsupported_input`).
          ValueError: for an array that is not an image (`preprocess_array`); ImageDecodeError (a
            ValueError) for a file or bytes that cannot be decoded.
        """
        if isinstance(item, (str, os.PathLike)):
            return self.load_image(item)
        if isinstance(item, (bytes, bytearray, memoryview)):
            return self.preprocess_bytes(bytes(item), source=source or "<bytes>")
        unsupported = unsupported_input(item)
        if unsupported is not None:
            raise TypeError(unsupported)
        return self.preprocess_array(np.asarray(item))


def unsupported_input(item: Any) -> Optional[str]:
    """None for an item the host path takes (a path, encoded bytes, an array-like image of rank >= 1);
    otherwise why not: "unsupported input type int (...)" for None, a number, a 0-d array or an object
    that is not array-like (numpy would make a 0-d array of it, which then reads as an image of shape ())."""
    if isinstance(item, (str, os.PathLike, bytes, bytearray, memoryview)):
        return None
    kind = type(item).__name__
    expected = "expected a path, encoded image bytes or an H x W (x C) image array"
    if item is None or isinstance(item, (numbers.Number, np.generic)):
        return f"unsupported input type {kind} ({expected})"
    if isinstance(item, np.ndarray):
        arr = item
    elif isinstance(getattr(item, "ndim", None), int) and hasattr(item, "shape") and hasattr(item, "dtype"):
        # a tensor (tf, torch, ...): its rank, no conversion (an object with only an `ndim` is converted)
        return f"unsupported input type {kind} of shape () ({expected})" if item.ndim == 0 else None
    else:
        try:
            arr = np.asarray(item)
        except Exception:  # noqa: BLE001 - anything numpy cannot read is not an image
            return f"unsupported input type {kind} ({expected})"
    if arr.ndim == 0:
        return f"unsupported input type {kind} of shape () ({expected})"
    if arr.dtype == object and arr is not item:  # numpy found no numbers in it (ragged, or not an image)
        return f"unsupported input type {kind} of dtype object ({expected})"
    return None


@functools.lru_cache(maxsize=None)
def _traced_image_bytes(method: str, antialias: bool):
    """(scalar tf.string bytes, scalar tf.string what) -> float32 [227, 227, 3]; one tf.function per setting,
    traced at its first call and reused by every graph that calls it (`EmoNetPreprocessor.traced_image_bytes`)."""

    with tf.init_scope():  # eager, also when first called while a Dataset.map function is traced
        host_resize = method == "matlab" and preprocessing._host_resize_exact()

    def preprocess(data, what):
        if host_resize:  # the same pixels; the host code's CPU (a 6th of the graph's resize)
            return preprocessing.matlab_resize_on_host(preprocessing.decode_image(data, what=[what]))
        return preprocessing.preprocess_image_bytes(data, method=method, antialias=antialias, what=[what])

    return tf.function(preprocess, input_signature=[tf.TensorSpec([], tf.string), tf.TensorSpec([], tf.string)])


def _check_choice(name: str, value: str, allowed: Sequence[str]) -> None:
    if not isinstance(value, str) or value not in allowed:
        raise ValueError(
            f"{name}={value!r} is not supported; the preprocessing contract allows "
            f"{', '.join(repr(a) for a in allowed)} (docs/preprocessing.md)"
        )


def resolve(
    preprocessor: Optional[EmoNetPreprocessor] = None,
    resize_method: Optional[str] = None,
    antialias: Optional[bool] = None,
) -> EmoNetPreprocessor:
    """`preprocessor` (the default contract when None) with the settings given explicitly replaced."""
    return (preprocessor or EmoNetPreprocessor()).replace(resize_method=resize_method, antialias=antialias)


__all__ = ["EmoNetPreprocessor", "JPEG_DCT_METHODS", "CHANNEL_ORDERS", "resolve", "unsupported_input"]
