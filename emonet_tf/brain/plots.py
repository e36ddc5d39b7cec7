"""Figures of the brain analyses: r maps on a glass brain, RDM heat maps, confusion matrices with values.

Each function writes one PNG (or any format matplotlib infers from the file name) and returns its path.
matplotlib runs on the Agg backend (no display; ``emonet_tf.plots.pyplot``); nilearn draws the glass brain
(``nilearn.plotting.plot_glass_brain``). Imports happen on call: importing this module loads neither
matplotlib, nilearn nor TensorFlow.
"""

from __future__ import annotations

import os
from typing import Optional, Sequence

import numpy as np

__all__ = ["plot_glass_brain_map", "plot_rdm", "plot_confusion"]


def _pyplot():
    from emonet_tf.plots import pyplot

    return pyplot()


def _check_path(path) -> str:
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise ValueError(f"path {path!r}: folder {folder!r} does not exist")
    return path


def _labels(labels, n, name):
    if labels is None:
        return None
    labels = [str(x) for x in labels]
    if len(labels) != n:
        raise ValueError(f"{name} must have {n} entries, got {len(labels)}")
    return labels


def plot_glass_brain_map(
    values,
    masker,
    path,
    *,
    title: Optional[str] = None,
    threshold="auto",
    vmax: Optional[float] = None,
    plot_abs: bool = False,
    cmap: str = "cold_hot",
) -> str:
    """A per-voxel map (r, R^2, a weight) on a glass brain (``nilearn.plotting.plot_glass_brain``).

    Args:
        values: float array [n_voxels], one value per voxel inside the mask (e.g. an encoding model's r).
        masker: the fitted ``nilearn.maskers.NiftiMasker`` the voxels came from (``emonet_tf.brain.io.load_bold``
            returns it), or a 3-D mask image (path or nibabel image; nonzero = inside, voxels in the image's
            C order, as ``NiftiMasker(mask).fit()``).
        path: output file (.png, .pdf, .svg).
        title: drawn on the figure.
        threshold: values with |value| below it are not drawn; "auto" (nilearn: the 80th percentile of
            |values|) or a number, or None to draw all.
        vmax: colour scale limit (default: max |value|); plot_abs: draw |value| (nilearn's default is True;
            False here, so negative r shows in blue).
        cmap: a matplotlib or nilearn colour map.

    Returns:
        ``path``.

    Raises:
        ValueError: values not 1-D finite, a voxel count that is not the mask's, or a missing output folder.
    """
    from nilearn import plotting
    from nilearn.maskers import NiftiMasker

    path = _check_path(path)
    v = np.asarray(values, dtype=float)
    if v.ndim != 1 or not np.all(np.isfinite(v)):
        raise ValueError(f"values must be a finite 1-D array [n_voxels], got shape {v.shape}")
    if not isinstance(masker, NiftiMasker):
        masker = NiftiMasker(mask_img=masker).fit()
    elif not hasattr(masker, "mask_img_"):
        raise ValueError("masker is not fitted (call .fit() or use the masker load_bold returned)")
    n_mask = int(np.count_nonzero(np.asarray(masker.mask_img_.dataobj)))
    if v.size != n_mask:
        raise ValueError(f"values has {v.size} voxels, the mask has {n_mask}")
    img = masker.inverse_transform(v[None])
    if len(img.shape) == 4:
        from nilearn.image import index_img

        img = index_img(img, 0)
    plt = _pyplot()
    fig = plt.figure(figsize=(9, 3.4))
    display = plotting.plot_glass_brain(
        img,
        figure=fig,
        title=title,
        threshold=threshold,
        vmax=vmax if vmax is not None else (float(np.abs(v).max()) or 1.0),
        plot_abs=plot_abs,
        colorbar=True,
        cmap=cmap,
    )
    display.savefig(path, dpi=100)
    display.close()
    plt.close(fig)
    return path


def plot_rdm(
    rdm,
    path,
    *,
    labels: Optional[Sequence[str]] = None,
    title: Optional[str] = None,
    cmap: str = "viridis",
    rank_transform: bool = False,
    colorbar_label: str = "dissimilarity",
) -> str:
    """An RDM [n_items, n_items] (or its condensed upper triangle) as a heat map.

    ``rank_transform`` shows percentile ranks of the dissimilarities (0-100, as rsatoolbox's ``show_rdm`` with
    ``rank_transform``), which makes RDMs of different measures comparable by eye. Item labels are drawn when
    there are at most 60 items. Returns ``path``; raises ValueError for a non-RDM or wrong label count.
    """
    from scipy.spatial.distance import squareform
    from scipy.stats import rankdata

    from emonet_tf.brain.rsa import upper_triangle

    path = _check_path(path)
    vec = upper_triangle(rdm)
    if rank_transform:
        vec = 100.0 * (rankdata(vec) - 1) / max(len(vec) - 1, 1)
        colorbar_label = "dissimilarity (percentile)"
    mat = squareform(vec, checks=False)
    n = mat.shape[0]
    labels = _labels(labels, n, "labels")
    plt = _pyplot()
    size = min(12.0, 4.0 + 0.12 * n)
    fig, ax = plt.subplots(figsize=(size + 1.2, size))
    image = ax.imshow(np.where(np.eye(n, dtype=bool), np.nan, mat), cmap=cmap, interpolation="nearest")
    fig.colorbar(image, ax=ax, label=colorbar_label, fraction=0.046, pad=0.04)
    if labels is not None and n <= 60:
        ax.set_xticks(range(n), labels, rotation=90, fontsize=7)
        ax.set_yticks(range(n), labels, fontsize=7)
    else:
        ax.set_xticks([])
        ax.set_yticks([])
    if title:
        ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_confusion(
    confusion,
    path,
    *,
    labels: Optional[Sequence[str]] = None,
    normalize: Optional[str] = "true",
    title: Optional[str] = None,
    cmap: str = "Blues",
    decimals: int = 2,
) -> str:
    """A confusion matrix with its values written in the cells (rows true class, columns predicted).

    Args:
        confusion: counts [n_classes, n_classes] (e.g. ``sklearn.metrics.confusion_matrix``, or the 20 x 20
            decoding confusion of experiment I).
        path: output file.
        labels: class names (e.g. ``emonet_tf.EMONET_CATEGORIES``).
        normalize: "true" (each row sums to 1: sensitivity on the diagonal, as sklearn's
            ``ConfusionMatrixDisplay``/``confusion_matrix(normalize="true")``), "pred" (columns: PPV on the
            diagonal), "all", or None (counts, written as integers).
        decimals: digits of the normalised values.

    Returns:
        ``path``.

    Raises:
        ValueError: not square, negative or non-finite values, an empty row/column to normalise, a wrong
            label count, or an unknown ``normalize``.
    """
    path = _check_path(path)
    c = np.asarray(confusion, dtype=float)
    if c.ndim != 2 or c.shape[0] != c.shape[1] or c.shape[0] < 1:
        raise ValueError(f"confusion must be square [n_classes, n_classes], got shape {c.shape}")
    if not np.all(np.isfinite(c)) or np.any(c < 0):
        raise ValueError("confusion must hold finite non-negative values")
    if normalize not in ("true", "pred", "all", None):
        raise ValueError(f"normalize must be 'true', 'pred', 'all' or None, got {normalize!r}")
    if normalize == "true":
        sums = c.sum(axis=1, keepdims=True)
    elif normalize == "pred":
        sums = c.sum(axis=0, keepdims=True)
    elif normalize == "all":
        sums = np.array([[c.sum()]])
    if normalize is not None:
        if np.any(sums == 0):
            raise ValueError(f"confusion has an empty {'row' if normalize == 'true' else 'column'}: cannot normalize")
        c = c / sums
    n = c.shape[0]
    labels = _labels(labels, n, "labels")
    plt = _pyplot()
    size = min(10.0, 3.0 + 0.35 * n)
    fig, ax = plt.subplots(figsize=(size + 1.5, size))
    vmax = 1.0 if normalize is not None else max(float(c.max()), 1.0)
    image = ax.imshow(c, cmap=cmap, vmin=0, vmax=vmax, interpolation="nearest")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="proportion" if normalize else "count")
    fontsize = max(4, min(10, int(130 / max(n, 1))))
    for i in range(n):
        for j in range(n):
            text = f"{c[i, j]:.{decimals}f}" if normalize is not None else f"{int(round(c[i, j]))}"
            colour = "white" if c[i, j] > 0.6 * vmax else "black"
            ax.text(j, i, text, ha="center", va="center", color=colour, fontsize=fontsize)
    ticks = labels if labels is not None else [str(i) for i in range(n)]
    ax.set_xticks(range(n), ticks, rotation=90 if n > 6 else 0, fontsize=8)
    ax.set_yticks(range(n), ticks, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if title:
        ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
