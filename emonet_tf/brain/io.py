"""BOLD in and out: NIfTI through a nilearn masker, or plain time x voxel arrays.

``load_bold`` turns a 4-D NIfTI run (or a list of 3-D volumes, e.g. single-trial beta maps) and a
mask into a float array ``[n_scans, n_voxels]`` with ``nilearn.maskers.NiftiMasker`` and returns the
fitted masker; ``to_nifti`` writes per-voxel values (r, R^2, weights, predictions) back through the
same masker. A plain ``[n_scans, n_voxels]`` array passes through unchanged, with no masker, so the
models work on either. ``mni_brain_mask`` is the MNI152 brain mask nilearn ships in its wheel
(``nilearn.datasets.load_mni152_brain_mask``: the ICBM 2009a symmetric T1 template bundled with
nilearn, thresholded at 0.2 and resampled to the resolution asked for; nothing is downloaded).

Only numpy, nibabel and nilearn are imported (no TensorFlow). Every bad input raises ``ValueError``
naming the argument and the problem.
"""

from __future__ import annotations

import os
import warnings

import numpy as np

__all__ = ["mni_brain_mask", "load_bold", "to_nifti"]


def mni_brain_mask(resolution=2, threshold=0.2):
    """The MNI152 whole-brain mask nilearn ships, as a ``nibabel.Nifti1Image`` (int8, 1 inside).

    ``resolution`` in mm (isotropic voxels; 1 is the shipped 1-mm grid, 197 x 233 x 189; 2 gives
    99 x 117 x 95 with 235,375 brain voxels; 4 gives 50 x 59 x 48 with 29,398), ``threshold`` on the
    template rescaled to 0-1 (nilearn's default 0.2). Source: ``nilearn.datasets.load_mni152_brain_mask``
    (no download; the template file is part of the nilearn package). Raises ValueError for a
    non-positive resolution or a threshold outside [0, 1).
    """
    if isinstance(resolution, bool) or not isinstance(resolution, (int, np.integer)) or resolution < 1:
        raise ValueError(f"resolution must be a positive whole number of mm, got {resolution!r}")
    if not 0.0 <= float(threshold) < 1.0:
        raise ValueError(f"threshold must be in [0, 1) (the template is scaled to 0-1), got {threshold!r}")
    from nilearn.datasets import load_mni152_brain_mask

    return load_mni152_brain_mask(resolution=int(resolution), threshold=float(threshold))


def _describe(img) -> str:
    return repr(os.fspath(img)) if isinstance(img, (str, os.PathLike)) else type(img).__name__


def _load_img(img, name):
    from nilearn.image import load_img

    try:
        return load_img(img)
    except Exception as e:  # nibabel / nilearn raise many types for unreadable or odd images
        raise ValueError(f"{name} {_describe(img)} could not be read as a NIfTI image: {e}") from None


def _same_grid(a, b) -> bool:
    return tuple(a.shape[:3]) == tuple(b.shape[:3]) and np.allclose(a.affine, b.affine, atol=1e-5)


def load_bold(img, mask=None, **masker_kwargs):
    """BOLD (or single-trial patterns) -> (float array [n_scans, n_voxels], fitted masker or None).

    Args:
      img: a 4-D NIfTI (path or nibabel image), a list of 3-D NIfTI volumes (stacked in order, e.g.
        one beta map per image), or a plain numpy array [n_scans, n_voxels] (returned as float64 with
        masker ``None``; no mask may be given then).
      mask: a 3-D NIfTI mask (path or image; nonzero = inside), e.g. ``mni_brain_mask(resolution)``;
        an already fitted ``NiftiMasker`` (to give several runs the same voxels); or ``None``, in which
        case nilearn computes a mask from the data (``mask_strategy`` of ``NiftiMasker``, default
        "background"; "epi" suits raw EPI).
      **masker_kwargs: passed to ``nilearn.maskers.NiftiMasker`` (``standardize``, ``detrend``,
        ``high_pass``, ``t_r``, ``smoothing_fwhm``, ``mask_strategy``, ...); none by default, so the
        values inside the mask are the image's values exactly.

    Returns:
      ``(X, masker)``: X float [n_scans, n_voxels] in the image's float dtype (float32 for float32
      NIfTI; float64 for a plain array), voxels in the mask's C order (``data[mask > 0]``); masker is
      the fitted ``NiftiMasker`` for ``to_nifti``.

    Raises:
      ValueError: an unreadable image or mask; a NIfTI that is not 4-D (or a list of 3-D volumes); a
        mask that is not 3-D or selects no voxel; image and mask on different grids (shape or affine:
        resample one with ``nilearn.image.resample_to_img`` first; this function never resamples
        silently); a plain array that is not 2-D, is empty or holds NaN/inf; a mask with a plain array.
    """
    if isinstance(img, np.ndarray):
        if mask is not None or masker_kwargs:
            raise ValueError("mask and masker options apply to NIfTI input; img is a plain array [n_scans, n_voxels]")
        x = np.asarray(img, dtype=np.float64)
        if x.ndim != 2 or 0 in x.shape:
            raise ValueError(f"img as a plain array must be 2-D [n_scans, n_voxels] and non-empty, got shape {x.shape}")
        if not np.all(np.isfinite(x)):
            raise ValueError("img (plain array) contains NaN or infinite values")
        return x, None

    from nilearn.maskers import NiftiMasker

    if isinstance(img, (list, tuple)):
        if not img:
            raise ValueError("img is an empty list of volumes")
        vols = [_load_img(v, f"img[{i}]") for i, v in enumerate(img)]
        for i, v in enumerate(vols):
            if v.ndim != 3:
                raise ValueError(f"img[{i}] must be a 3-D volume when img is a list, got shape {v.shape}")
            if not _same_grid(v, vols[0]):
                raise ValueError(f"img[{i}] is on another grid (shape or affine) than img[0]")
        from nilearn.image import concat_imgs

        image = concat_imgs(vols)
    else:
        image = _load_img(img, "img")
        if image.ndim != 4:
            raise ValueError(
                f"img {_describe(img)} must be 4-D (x, y, z, time), got shape {image.shape}; "
                "pass a list of 3-D volumes for one volume per trial"
            )

    if isinstance(mask, NiftiMasker):
        if masker_kwargs:
            raise ValueError("masker options cannot be combined with an already fitted masker as mask")
        if not hasattr(mask, "mask_img_"):
            raise ValueError("mask is a NiftiMasker that has not been fitted; fit it first or pass its mask image")
        masker = mask
        mask_img = masker.mask_img_
    else:
        mask_img = None
        if mask is not None:
            mask_img = _load_img(mask, "mask")
            if mask_img.ndim != 3:
                raise ValueError(f"mask {_describe(mask)} must be a 3-D image, got shape {mask_img.shape}")
            if not np.any(np.asarray(mask_img.dataobj) != 0):
                raise ValueError(f"mask {_describe(mask)} selects no voxel (all zero)")
        masker = NiftiMasker(mask_img=mask_img, **masker_kwargs)
    if mask_img is not None and not _same_grid(image, mask_img):
        raise ValueError(
            f"img {_describe(img)} (shape {image.shape[:3]}) and mask (shape {mask_img.shape[:3]}) are on "
            "different grids (shape or affine); resample one to the other with nilearn.image.resample_to_img"
        )
    with warnings.catch_warnings():
        if "standardize" not in masker_kwargs:  # nilearn >= 0.14 warns about its own default standardize=False
            warnings.filterwarnings("ignore", message="boolean values for 'standardize'", category=FutureWarning)
        if not hasattr(masker, "mask_img_"):
            masker.fit(image if mask_img is None else None)  # nilearn computes a mask only without one
        x = masker.transform(image)
    return np.asarray(x), masker


def to_nifti(values, masker, path=None):
    """Per-voxel values back to NIfTI through the masker ``load_bold`` returned.

    Args:
      values: float [n_voxels] (one map: r, R^2, a weight) -> a 3-D image, or [n, n_voxels] (time
        courses, predictions, one map per feature) -> a 4-D image. Voxels outside the mask are 0.
      masker: the fitted ``NiftiMasker`` from ``load_bold``.
      path: optional file name (``.nii`` or ``.nii.gz``) to save the image to.

    Returns:
      ``nibabel.Nifti1Image`` on the mask's grid (``masker.inverse_transform``).

    Raises:
      ValueError: masker is None (the input was a plain array: there is no image to write into) or not
        fitted; values not 1-D or 2-D, or with another number of voxels than the mask.
    """
    if masker is None:
        raise ValueError("masker is None: the data came in as a plain array, so there is no NIfTI grid to write to")
    if not hasattr(masker, "mask_img_") or not hasattr(masker, "inverse_transform"):
        raise ValueError(f"masker must be a fitted nilearn masker (from load_bold), got {type(masker).__name__}")
    v = np.asarray(values)
    n_voxels = int(np.count_nonzero(np.asarray(masker.mask_img_.dataobj)))
    if v.ndim not in (1, 2) or v.shape[-1] != n_voxels:
        raise ValueError(f"values must be [n_voxels] or [n, n_voxels] with n_voxels = {n_voxels}, got shape {v.shape}")
    if not np.issubdtype(v.dtype, np.floating):
        v = v.astype(np.float64)
    image = masker.inverse_transform(v)
    if path is not None:
        image.to_filename(os.fspath(path))
    return image
