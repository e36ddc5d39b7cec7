"""emonet_tf.brain.plots: the PNGs are written, non-trivial, and show what they should."""

import os

import numpy as np
import pytest

from emonet_tf.brain.plots import plot_confusion, plot_glass_brain_map, plot_rdm

pytest.importorskip("nilearn")


def _png(path, min_bytes=5000):
    import matplotlib.image

    assert os.path.getsize(path) > min_bytes, os.path.getsize(path)
    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    pixels = matplotlib.image.imread(path)[..., :3]
    colours = np.unique(pixels.reshape(-1, 3), axis=0)
    assert len(colours) > 20, len(colours)  # not one colour, not a blank canvas with a frame
    return pixels


@pytest.fixture(scope="module")
def masker():
    from nilearn.datasets import load_mni152_brain_mask
    from nilearn.maskers import NiftiMasker

    return NiftiMasker(mask_img=load_mni152_brain_mask(resolution=4)).fit()  # ships with nilearn, no download


def _occipital_r(masker):
    """A planted r map: 0.5 at an occipital blob (MNI y < -70), small noise elsewhere."""
    from nilearn.image import coord_transform

    mask = masker.mask_img_
    ijk = np.argwhere(np.asarray(mask.dataobj) > 0)  # C order, as the masker's voxels
    x, y, z = coord_transform(ijk[:, 0], ijk[:, 1], ijk[:, 2], mask.affine)
    r = 0.5 * np.exp(-((y + 85) ** 2 + x**2 + (z - 5) ** 2) / (2 * 15**2))
    return r + 0.01 * np.random.default_rng(0).standard_normal(len(r))


@pytest.mark.filterwarnings("ignore:empty mask")  # nilearn, for the all-zero map below the threshold
def test_glass_brain_map(masker, tmp_path):
    r = _occipital_r(masker)
    path = plot_glass_brain_map(r, masker, tmp_path / "r_map.png", title="encoding r", threshold=0.1)
    pixels = _png(path)
    # the blob is drawn in the hot colours of cold_hot: many strongly red pixels
    red = (pixels[..., 0] > 0.7) & (pixels[..., 1] < 0.5) & (pixels[..., 2] < 0.3)
    assert red.sum() > 200
    # a map of zeros above the threshold draws no red at all: the red came from the planted r
    blank = _png(plot_glass_brain_map(np.zeros_like(r), masker, tmp_path / "zero.png", threshold=0.1, vmax=0.5))
    assert ((blank[..., 0] > 0.7) & (blank[..., 1] < 0.5) & (blank[..., 2] < 0.3)).sum() < red.sum() / 10


def test_glass_brain_from_a_mask_image(masker, tmp_path):
    r = _occipital_r(masker)
    _png(plot_glass_brain_map(r, masker.mask_img_, tmp_path / "from_mask.png"))
    with pytest.raises(ValueError, match="voxels, the mask has"):
        plot_glass_brain_map(r[:-1], masker, tmp_path / "bad.png")
    with pytest.raises(ValueError, match="does not exist"):
        plot_glass_brain_map(r, masker, tmp_path / "no" / "such.png")


def test_rdm_heatmap(tmp_path):
    from emonet_tf.brain.rsa import rdm

    rng = np.random.default_rng(0)
    centres = rng.standard_normal((2, 30))
    x = centres[np.repeat([0, 1], 8)] + 0.5 * rng.standard_normal((16, 30))
    d = rdm(x)
    path = plot_rdm(d, tmp_path / "rdm.png", labels=[f"img{i}" for i in range(16)], title="fc7 RDM")
    pixels = _png(path)
    _png(plot_rdm(d, tmp_path / "rdm_rank.png", rank_transform=True))
    assert pixels.shape[0] > 300
    with pytest.raises(ValueError, match="labels"):
        plot_rdm(d, tmp_path / "x.png", labels=["a"])


def test_confusion_with_values(tmp_path):
    from emonet_tf.categories import EMONET_CATEGORIES

    rng = np.random.default_rng(1)
    counts = rng.integers(0, 5, size=(20, 20)) + np.diag(rng.integers(5, 30, size=20))
    path = plot_confusion(counts, tmp_path / "confusion.png", labels=EMONET_CATEGORIES, title="experiment I")
    _png(path, min_bytes=20000)  # 400 written values make a busy image
    _png(plot_confusion(counts[:3, :3], tmp_path / "counts.png", normalize=None))
    with pytest.raises(ValueError, match="square"):
        plot_confusion(np.ones((2, 3)), tmp_path / "x.png")
    with pytest.raises(ValueError, match="empty row"):
        plot_confusion(np.array([[1, 0], [0, 0]]), tmp_path / "x.png")
    with pytest.raises(ValueError, match="normalize"):
        plot_confusion(np.eye(2), tmp_path / "x.png", normalize="rows")


def test_confusion_values_are_the_texts(tmp_path, monkeypatch):
    # the numbers written in the cells are the row-normalised values
    import matplotlib.axes

    written = []
    original = matplotlib.axes.Axes.text

    def spy(self, x, y, s, *args, **kwargs):
        written.append(s)
        return original(self, x, y, s, *args, **kwargs)

    monkeypatch.setattr(matplotlib.axes.Axes, "text", spy)
    plot_confusion(np.array([[3, 1], [0, 4]]), tmp_path / "c.png")
    assert written == ["0.75", "0.25", "0.00", "1.00"]


def test_importing_plots_is_light():
    import subprocess
    import sys

    code = "import sys, emonet_tf.brain.plots; print(any(m in sys.modules for m in ('matplotlib', 'nilearn', 'tensorflow')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
