"""MATLAB-matching preprocessing: decode any common image, RGB, resize to 227x227, values 0-255.

MATLAB's EmoNet pipeline is `imread` (RGB uint8) -> `imresize(I, [227 227])` (bicubic, antialiased
when shrinking, aspect ratio NOT kept, output rounded to uint8) -> the network's 'zerocenter'
input layer subtracts a 227x227x3 mean image. Everything up to the mean subtraction lives here;
the mean lives in the model (`MeanImageSubtraction`), so it is saved with the weights.

The same TF ops serve the tf.data training pipeline, the SavedModel's bytes signature and the CLI,
so that the three cannot drift apart.

Decisions a user may want to know:
- 16-bit images are scaled to 0-255 (value / 257) before resizing; MATLAB would feed 0-65535.
- RGBA drops alpha (as MATLAB's `imread` returns alpha separately); grayscale is replicated.
- Animated GIFs use their first frame.
- `resize_method="matlab"` (the default) is MATLAB's `imresize` bicubic, transcribed: Keys cubic
  kernel (a = -0.5) stretched by 1/scale when shrinking (antialiasing), MATLAB's sample positions,
  mirrored borders, the most-shrunk dimension first, and uint8 rounding after each dimension.
  `tf.image.resize` methods ("bicubic" with `antialias=True` is the same kernel but with TF's
  border handling and no rounding between passes: mean difference 0.15 grey levels on photos)
  are accepted too. Images already 227x227 are not resampled (as MATLAB and emonet-py do).
"""
from __future__ import annotations

import functools
import os
from typing import Union

import numpy as np
import tensorflow as tf

IMAGE_SIZE = 227
RESIZE_METHODS = ("matlab", "bicubic", "bilinear", "nearest", "area", "lanczos3", "lanczos5", "gaussian", "mitchellcubic")
DEFAULT_RESIZE_METHOD = "matlab"


class ImageDecodeError(ValueError):
    """An image file or byte string that cannot be decoded; the message names the source."""


def check_resize_method(method: str) -> str:
    """Returns `method` if it is one of RESIZE_METHODS, else raises ValueError listing them."""
    if method not in RESIZE_METHODS:
        raise ValueError(f"Unknown resize method {method!r}; choose one of {', '.join(RESIZE_METHODS)}")
    return method


def decode_image(data: tf.Tensor) -> tf.Tensor:
    """Decodes JPEG/PNG/GIF/BMP bytes (8 or 16 bit, gray, RGB, RGBA) to float32 RGB H x W x 3 in [0, 255]."""
    image = tf.io.decode_image(data, channels=3, dtype=tf.float32, expand_animations=False)
    image.set_shape([None, None, 3])
    return image * 255.0


def resize_image(image: tf.Tensor, method: str = DEFAULT_RESIZE_METHOD, antialias: bool = True,
                 size: int = IMAGE_SIZE) -> tf.Tensor:
    """Resizes an H x W x 3 image in [0, 255] to size x size (aspect ratio not kept), rounded and clipped as uint8.

    Rounding and clipping reproduce `imresize` on uint8 input, whose output is uint8.
    """
    check_resize_method(method)
    image = tf.convert_to_tensor(image, tf.float32)
    shape = tf.shape(image)

    def resize():
        if method == "matlab":
            return _matlab_imresize(image, size)
        return tf.image.resize(image, (size, size), method=method, antialias=antialias)

    same_size = tf.logical_and(tf.equal(shape[0], size), tf.equal(shape[1], size))
    resized = tf.cond(same_size, lambda: image, resize)
    resized = tf.clip_by_value(tf.round(resized), 0.0, 255.0)
    return tf.ensure_shape(resized, [size, size, 3])


def _cubic(x: tf.Tensor) -> tf.Tensor:
    ax = tf.abs(x)
    ax2, ax3 = ax * ax, ax * ax * ax
    near = (1.5 * ax3 - 2.5 * ax2 + 1.0) * tf.cast(ax <= 1.0, x.dtype)
    far = (-0.5 * ax3 + 2.5 * ax2 - 4.0 * ax + 2.0) * tf.cast((ax > 1.0) & (ax <= 2.0), x.dtype)
    return near + far


def _matlab_resize_axis0(image: tf.Tensor, out_len: int) -> tf.Tensor:
    """Resizes axis 0 as MATLAB's imresize does (contributions(), bicubic, antialiased), rounding to uint8."""
    in_len = tf.shape(image, out_type=tf.int64)[0]
    scale = tf.cast(out_len, tf.float64) / tf.cast(in_len, tf.float64)
    shrink = scale < 1.0
    kernel_width = tf.where(shrink, 4.0 / scale, tf.constant(4.0, tf.float64))
    u = tf.range(1, out_len + 1, dtype=tf.float64) / scale + 0.5 * (1.0 - 1.0 / scale)
    left = tf.floor(u - kernel_width / 2.0)
    taps = tf.cast(tf.math.ceil(kernel_width), tf.int64) + 2
    indices = left[:, None] + tf.cast(tf.range(taps), tf.float64)[None, :]
    offsets = u[:, None] - indices
    weights = tf.where(shrink, scale * _cubic(scale * offsets), _cubic(offsets))
    weights = weights / tf.reduce_sum(weights, axis=1, keepdims=True)
    # MATLAB mirrors out-of-range indices: aux = [1:n, n:-1:1]; here 0-based.
    period = 2 * in_len
    wrapped = tf.math.floormod(tf.cast(indices, tf.int64) - 1, period)
    gather_at = tf.where(wrapped < in_len, wrapped, period - 1 - wrapped)
    samples = tf.gather(image, gather_at)  # out x taps x W x C
    # Broadcast-multiply + sum: 7x faster on CPU than the equivalent einsum (measured, 800x600 input).
    out = tf.reduce_sum(tf.cast(weights, image.dtype)[:, :, None, None] * samples, axis=1)
    return tf.clip_by_value(tf.round(out), 0.0, 255.0)


def _matlab_imresize(image: tf.Tensor, size: int) -> tf.Tensor:
    """MATLAB `imresize(I, [size size])` on an H x W x C image: the dimension with the smaller scale first."""
    shape = tf.shape(image)

    def rows_first():
        x = _matlab_resize_axis0(image, size)
        return tf.transpose(_matlab_resize_axis0(tf.transpose(x, [1, 0, 2]), size), [1, 0, 2])

    def cols_first():
        x = _matlab_resize_axis0(tf.transpose(image, [1, 0, 2]), size)
        return _matlab_resize_axis0(tf.transpose(x, [1, 0, 2]), size)

    # scale_h <= scale_w  <=>  size/H <= size/W  <=>  H >= W (MATLAB's sort is stable: rows win ties).
    return tf.cond(shape[0] >= shape[1], rows_first, cols_first)


def preprocess_image_bytes(data: tf.Tensor, method: str = DEFAULT_RESIZE_METHOD, antialias: bool = True) -> tf.Tensor:
    """Encoded image bytes -> float32 227 x 227 x 3 in [0, 255], ready for the model (which subtracts the mean)."""
    return resize_image(decode_image(data), method=method, antialias=antialias)


def to_rgb_float(array: np.ndarray) -> np.ndarray:
    """An in-memory image (H x W, H x W x 1/3/4; uint8, uint16 or float in [0, 255]) as float32 RGB in [0, 255]."""
    arr = np.asarray(array)
    if arr.dtype == np.uint16:
        arr = arr.astype(np.float32) / 257.0
    elif arr.dtype == bool:
        arr = arr.astype(np.float32) * 255.0
    else:
        arr = arr.astype(np.float32)
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.ndim != 3 or arr.shape[-1] not in (1, 3, 4):
        raise ValueError(f"Expected an image of shape HxW, HxWx1, HxWx3 or HxWx4, got {array.shape}")
    if arr.shape[-1] == 1:
        arr = np.repeat(arr, 3, axis=-1)
    return arr[..., :3]


def preprocess_array(array: np.ndarray, method: str = DEFAULT_RESIZE_METHOD, antialias: bool = True) -> np.ndarray:
    """An RGB image already in memory (e.g. a video frame) -> float32 227 x 227 x 3 in [0, 255]."""
    check_resize_method(method)
    return _graph_functions(method, bool(antialias))[1](tf.constant(to_rgb_float(array))).numpy()


def _decode_with_opencv(data: bytes) -> np.ndarray:
    """Fallback for formats TF cannot decode (TIFF, WebP, ...): OpenCV, converted to RGB."""
    import cv2  # imported here: only the fallback needs it

    arr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if arr is None:
        raise ValueError("not a decodable image")
    if arr.ndim == 3 and arr.shape[-1] == 3:
        arr = cv2.cvtColor(arr, cv2.COLOR_BGR2RGB)
    elif arr.ndim == 3 and arr.shape[-1] == 4:
        arr = cv2.cvtColor(arr, cv2.COLOR_BGRA2RGBA)
    return to_rgb_float(arr)


@functools.lru_cache(maxsize=None)
def _graph_functions(method: str, antialias: bool):
    """Traced once per setting: eager execution of the resize costs several times the graph's time."""
    from_bytes = tf.function(lambda data: preprocess_image_bytes(data, method, antialias),
                             input_signature=[tf.TensorSpec([], tf.string)])
    from_image = tf.function(lambda image: resize_image(image, method, antialias),
                             input_signature=[tf.TensorSpec([None, None, 3], tf.float32)])
    return from_bytes, from_image


def preprocess_bytes(data: bytes, source: str = "<bytes>", method: str = DEFAULT_RESIZE_METHOD,
                     antialias: bool = True) -> np.ndarray:
    """Encoded bytes on the host -> float32 227 x 227 x 3 in [0, 255] (the in-graph path, OpenCV as fallback).

    Raises ImageDecodeError naming `source` for empty or undecodable bytes.
    """
    check_resize_method(method)
    from_bytes, from_image = _graph_functions(method, bool(antialias))
    if not data:
        raise ImageDecodeError(f"{source}: empty file, not an image")
    try:
        return from_bytes(tf.constant(data)).numpy()
    except (tf.errors.InvalidArgumentError, tf.errors.UnknownError):
        pass
    try:
        image = _decode_with_opencv(data)
    except Exception as err:  # noqa: BLE001 - any decoder failure becomes one clear error
        raise ImageDecodeError(f"{source}: cannot decode as an image ({err})") from None
    return from_image(tf.constant(image)).numpy()


def load_image(path: Union[str, os.PathLike], method: str = DEFAULT_RESIZE_METHOD, antialias: bool = True) -> np.ndarray:
    """Reads and preprocesses one image file -> float32 227 x 227 x 3 in [0, 255].

    Raises ImageDecodeError (naming the file) for a missing, unreadable or non-image file.
    """
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as err:
        raise ImageDecodeError(f"{path}: cannot read file ({err.strerror or err})") from None
    return preprocess_bytes(data, source=path, method=method, antialias=antialias)
