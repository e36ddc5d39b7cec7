"""Shared fixtures: real photographs (shipped with matplotlib) written in every format we must decode."""

from __future__ import annotations

import os
import pathlib

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _sample_data_dir() -> pathlib.Path:
    import matplotlib

    return pathlib.Path(matplotlib.get_data_path()) / "sample_data"


def photo_arrays() -> dict[str, np.ndarray]:
    """A handful of real RGB uint8 photographs of different sizes and content (no network needed).

    grace_hopper.jpg (512x600 portrait), Minduka_Present_Blue_Pack.png and crops/flips of both give
    natural image statistics, which random noise does not.
    """
    import cv2

    root = _sample_data_dir()
    hopper = cv2.cvtColor(cv2.imread(str(root / "grace_hopper.jpg")), cv2.COLOR_BGR2RGB)
    pack = cv2.imread(str(root / "Minduka_Present_Blue_Pack.png"), cv2.IMREAD_COLOR)
    pack = cv2.cvtColor(pack, cv2.COLOR_BGR2RGB)
    return {
        "hopper": hopper,
        "hopper_face": hopper[60:330, 150:420],
        "hopper_wide": hopper[300:520, :],
        "hopper_flipped": hopper[:, ::-1].copy(),
        "pack": pack,
        "pack_crop": pack[pack.shape[0] // 4 :, : pack.shape[1] // 2],
    }


@pytest.fixture(scope="session")
def photos() -> dict[str, np.ndarray]:
    return photo_arrays()


@pytest.fixture(scope="session")
def image_files(tmp_path_factory, photos) -> dict[str, pathlib.Path]:
    """Real photos encoded as JPEG, PNG, grayscale PNG, RGBA PNG, 16-bit PNG, BMP, and a non-square image."""
    import cv2

    out = tmp_path_factory.mktemp("images")
    hopper = photos["hopper"]
    bgr = cv2.cvtColor(hopper, cv2.COLOR_RGB2BGR)
    files = {}

    def write(name, array):
        path = out / name
        assert cv2.imwrite(str(path), array), name
        files[name.split(".")[0]] = path

    write("rgb_jpeg.jpg", bgr)
    write("rgb_png.png", bgr)
    write("gray_png.png", cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY))
    alpha = np.full(hopper.shape[:2] + (1,), 255, np.uint8)
    alpha[:100] = 0
    write("rgba_png.png", np.concatenate([bgr, alpha], axis=-1))
    write("rgb16_png.png", bgr.astype(np.uint16) * 257)
    write("rgb_bmp.bmp", bgr)
    write("wide_jpeg.jpg", cv2.cvtColor(photos["hopper_wide"], cv2.COLOR_RGB2BGR))
    write("exact_png.png", cv2.resize(bgr, (227, 227), interpolation=cv2.INTER_AREA))
    return files
