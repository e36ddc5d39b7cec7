"""emonet_tf.brain.io: NIfTI round trips through a mask from the MNI template nilearn ships (no download)."""

import socket
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("nilearn")
nib = pytest.importorskip("nibabel")

from nilearn.maskers import NiftiMasker  # noqa: E402

from emonet_tf.brain import io as bio  # noqa: E402


@pytest.fixture(scope="module")
def mask():
    return bio.mni_brain_mask(resolution=4)


def _bold(mask, n_scans=12, seed=0, dtype=np.float32):
    rng = np.random.default_rng(seed)
    data = (100 + rng.normal(size=mask.shape + (n_scans,))).astype(dtype)  # nonzero outside the brain too
    return nib.Nifti1Image(data, mask.affine), data


def test_import_does_not_load_tensorflow():
    code = "import sys, emonet_tf.brain.io; assert 'tensorflow' not in sys.modules, 'TF imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_mni_mask_is_shipped_in_the_nilearn_wheel_and_loads_without_network(monkeypatch):
    from nilearn.datasets import struct

    template = Path(struct.MNI152_FILE_PATH)
    assert template.is_file()
    installed = {Path(str(f)).as_posix() for f in metadata.files("nilearn")}
    assert "nilearn/datasets/data/" + template.name in installed  # part of the installed distribution

    def no_network(*args, **kwargs):
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    m = bio.mni_brain_mask(resolution=4)
    assert m.shape == (50, 59, 48)
    assert np.allclose(np.diag(m.affine)[:3], 4.0)
    assert int(np.count_nonzero(m.get_fdata())) == 29398


@pytest.mark.parametrize("as_files", [False, True])
def test_nifti_round_trip_inside_the_mask_is_identical(mask, tmp_path, as_files):
    img, data = _bold(mask)
    inside = np.asarray(mask.dataobj) > 0
    if as_files:
        mask.to_filename(tmp_path / "mask.nii.gz")
        img.to_filename(tmp_path / "sub-01_bold.nii.gz")
        x, masker = bio.load_bold(tmp_path / "sub-01_bold.nii.gz", tmp_path / "mask.nii.gz")
    else:
        x, masker = bio.load_bold(img, mask)
    assert isinstance(masker, NiftiMasker)
    assert x.shape == (12, 29398) and x.dtype == np.float32
    np.testing.assert_array_equal(x, data[inside].T)  # time x voxel, voxels in the mask's C order
    back = bio.to_nifti(x, masker, path=tmp_path / "back.nii.gz")
    assert back.shape == data.shape
    np.testing.assert_array_equal(back.get_fdata()[inside], data[inside])
    assert np.all(back.get_fdata()[~inside] == 0)
    reread = nib.load(tmp_path / "back.nii.gz")
    np.testing.assert_array_equal(reread.get_fdata()[inside], data[inside])
    np.testing.assert_allclose(reread.affine, mask.affine)
    # a per-voxel map (e.g. r) -> a 3-D image whose voxels hold exactly those values
    r = np.linspace(-1, 1, x.shape[1])
    r_img = bio.to_nifti(r, masker)
    assert r_img.shape == mask.shape
    np.testing.assert_array_equal(r_img.get_fdata()[inside], r)


def test_fitted_masker_gives_a_second_run_the_same_voxels(mask):
    run1, _ = _bold(mask, seed=1)
    run2, data2 = _bold(mask, n_scans=7, seed=2)
    _, masker = bio.load_bold(run1, mask)
    x2, same = bio.load_bold(run2, masker)
    assert same is masker
    np.testing.assert_array_equal(x2, data2[np.asarray(mask.dataobj) > 0].T)


def test_list_of_3d_volumes_is_stacked_in_order(mask):
    img, data = _bold(mask, n_scans=3)
    vols = [nib.Nifti1Image(data[..., i], mask.affine) for i in range(3)]
    x, _ = bio.load_bold(vols, mask)
    np.testing.assert_array_equal(x, data[np.asarray(mask.dataobj) > 0].T)


def test_masker_options_are_nilearns(mask):
    img, data = _bold(mask, n_scans=20, dtype=np.float64)
    x, _ = bio.load_bold(img, mask, standardize="zscore_sample")
    np.testing.assert_allclose(x.mean(axis=0), 0, atol=1e-8)
    np.testing.assert_allclose(x.std(axis=0, ddof=1), 1, atol=1e-6)


def test_plain_arrays_pass_through():
    rng = np.random.default_rng(3)
    a = rng.normal(size=(30, 50))
    x, masker = bio.load_bold(a)
    assert masker is None
    np.testing.assert_array_equal(x, a)
    with pytest.raises(ValueError, match="masker is None: the data came in as a plain array"):
        bio.to_nifti(x[0], None)


def test_bad_inputs_raise_value_error_naming_the_problem(mask, tmp_path):
    img, data = _bold(mask, n_scans=4)
    with pytest.raises(ValueError, match=r"img .* must be 4-D"):
        bio.load_bold(nib.Nifti1Image(data[..., 0], mask.affine), mask)
    with pytest.raises(ValueError, match="are on different grids"):
        bio.load_bold(nib.Nifti1Image(data[:-1], mask.affine), mask)
    shifted = mask.affine.copy()
    shifted[0, 3] += 2
    with pytest.raises(ValueError, match="are on different grids"):
        bio.load_bold(nib.Nifti1Image(data, shifted), mask)
    with pytest.raises(ValueError, match="selects no voxel"):
        bio.load_bold(img, nib.Nifti1Image(np.zeros(mask.shape, np.int8), mask.affine))
    with pytest.raises(ValueError, match="mask .* must be a 3-D image"):
        bio.load_bold(img, img)
    (tmp_path / "broken.nii.gz").write_bytes(b"not a nifti")
    with pytest.raises(ValueError, match=r"img '.*broken.nii.gz' could not be read as a NIfTI image"):
        bio.load_bold(tmp_path / "broken.nii.gz", mask)
    with pytest.raises(ValueError, match="mask and masker options apply to NIfTI input"):
        bio.load_bold(np.zeros((3, 4)), mask)
    with pytest.raises(ValueError, match="must be 2-D"):
        bio.load_bold(np.zeros(5))
    with pytest.raises(ValueError, match="NaN or infinite"):
        bio.load_bold(np.full((2, 2), np.nan))
    with pytest.raises(ValueError, match="has not been fitted"):
        bio.load_bold(img, NiftiMasker(mask))
    _, masker = bio.load_bold(img, mask)
    with pytest.raises(ValueError, match=r"values must be \[n_voxels\] or \[n, n_voxels\] with n_voxels = 29398"):
        bio.to_nifti(np.zeros(100), masker)
    with pytest.raises(ValueError, match="resolution must be a positive"):
        bio.mni_brain_mask(resolution=0)
