"""An independent numpy transcription of MATLAB's `imresize(I, [h w])` (bicubic, antialiased), for tests.

Follows MATLAB's documented algorithm: Keys cubic kernel (a = -0.5), kernel stretched by 1/scale
when shrinking, output sample u = x / scale + 0.5 * (1 - 1/scale) in 1-based coordinates, weights
normalized per output pixel, out-of-range indices mirrored, the dimension with the smaller scale
resized first, and uint8 rounding after each dimension (imresizemex keeps the input class).
"""

from __future__ import annotations

import numpy as np


def _cubic(x: np.ndarray) -> np.ndarray:
    ax = np.abs(x)
    ax2, ax3 = ax**2, ax**3
    return (1.5 * ax3 - 2.5 * ax2 + 1) * (ax <= 1) + (-0.5 * ax3 + 2.5 * ax2 - 4 * ax + 2) * ((ax > 1) & (ax <= 2))


def _contributions(in_len: int, out_len: int, scale: float) -> tuple[np.ndarray, np.ndarray]:
    kernel_width = 4.0
    if scale < 1:
        kernel = lambda x: scale * _cubic(scale * x)
        kernel_width = kernel_width / scale
    else:
        kernel = _cubic
    x = np.arange(1, out_len + 1, dtype=np.float64)
    u = x / scale + 0.5 * (1 - 1 / scale)
    left = np.floor(u - kernel_width / 2)
    p = int(np.ceil(kernel_width)) + 2
    indices = left[:, None] + np.arange(p)[None, :]
    weights = kernel(u[:, None] - indices)
    weights = weights / weights.sum(axis=1, keepdims=True)
    aux = np.concatenate([np.arange(1, in_len + 1), np.arange(in_len, 0, -1)])
    indices = aux[np.mod(indices - 1, len(aux)).astype(int)] - 1
    return weights, indices


def _resize_dim(image: np.ndarray, axis: int, out_len: int) -> np.ndarray:
    in_len = image.shape[axis]
    weights, indices = _contributions(in_len, out_len, out_len / in_len)
    moved = np.moveaxis(image.astype(np.float64), axis, 0)
    out = np.einsum("op,op...->o...", weights, moved[indices])
    out = np.clip(np.round(out), 0, 255)  # uint8 in, uint8 out
    return np.moveaxis(out, 0, axis)


def imresize(image: np.ndarray, size: tuple[int, int] = (227, 227)) -> np.ndarray:
    """uint8 H x W x C -> float64 holding the uint8 values MATLAB's imresize would return."""
    scales = [size[0] / image.shape[0], size[1] / image.shape[1]]
    out = image
    for axis in np.argsort(scales, kind="stable"):
        out = _resize_dim(out, int(axis), size[axis])
    return out
