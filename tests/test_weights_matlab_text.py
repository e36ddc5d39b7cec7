"""The MATLAB per-layer text dump (emonet-py data/): full-size files, parity with the numpy reference."""

from __future__ import annotations

import bz2
import os
import shutil

import keras
import numpy as np
import pytest

import reference as R
from emonet_tf.weights import WeightFormatError, WeightMismatchError, convert, detect_format, read_weights
from emonet_tf.weights.matlab_text import read_mean_file


@pytest.fixture(scope="module")
def batch(image_files, photos):
    return R.test_batch(image_files, photos)


@pytest.fixture(scope="module")
def dump(batch):
    return R.text_dump(batch)


def converted_text_dump(batch) -> tuple[str, str]:
    """convert() of the text dump, once per process (also used by the emonet-py parity test)."""

    def make():
        dst = os.path.join(R.scratch_dir(), "from_text.keras")
        return dst, convert(R.text_dump(batch), dst)

    return R.cached(("converted_text", R.batch_digest(batch)), make)


def test_text_dump_converts_to_a_model_matching_the_reference(batch, dump):
    assert detect_format(dump) == "matlab_text"
    dst, summary = converted_text_dump(batch)
    print(summary)
    for line in (
        "conv1  kernel (11, 11, 3, 96)",
        "conv2  kernel (5, 5, 48, 256)",
        "fc6    kernel (9216, 4096)",
        "fc8    kernel (4096, 20)",
        "227x227x3 RGB image",
        "format: matlab_text",
        "Adoration",
    ):
        assert line in summary
    model = keras.saving.load_model(dst)
    setup = R.emonet_setup(batch)
    np.testing.assert_array_equal(np.asarray(model.backbone.mean_image), setup["mean"])
    R.assert_parity(model.predict(batch, verbose=0), setup["probs"])


@pytest.fixture
def small_copy(dump, tmp_path):
    """A copy of the dump whose big fc1/fc2 files are links, so single files can be damaged cheaply."""
    for name in os.listdir(dump):
        src = os.path.join(dump, name)
        if name.startswith(("fc1.", "fc2.")):
            os.symlink(src, tmp_path / name)
        else:
            shutil.copy(src, tmp_path / name)
    return tmp_path


def test_truncated_bz2_is_reported_with_its_file(small_copy):
    path = small_copy / "conv3.weights.txt.bz2"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(WeightFormatError, match=r"conv3\.weights\.txt\.bz2: truncated or corrupt"):
        read_weights(small_copy)


def test_truncated_text_line_is_reported_with_its_file(small_copy):
    with bz2.open(small_copy / "conv2.weights.txt.bz2", "rt") as f:
        text = f.read()
    os.remove(small_copy / "conv2.weights.txt.bz2")
    (small_copy / "conv2.weights.txt").write_text(text[: len(text) - 1000])  # last line cut mid-way
    with pytest.raises(WeightFormatError, match=r"conv2\.weights\.txt: not a comma-separated matrix"):
        read_weights(small_copy)


def test_wrong_width_names_layer_and_both_shapes(small_copy):
    with bz2.open(small_copy / "conv4.weights.txt.bz2", "rt") as f:
        rows = [line.rsplit(",", 1)[0] for line in f.read().splitlines()]  # one value fewer per line
    with bz2.open(small_copy / "conv4.weights.txt.bz2", "wt") as f:
        f.write("\n".join(rows) + "\n")
    with pytest.raises(WeightMismatchError, match=r"conv4 .*expected shape \(3, 221184\), found \(3, 221183\)"):
        read_weights(small_copy)


def test_missing_file_is_named(small_copy):
    os.remove(small_copy / "fc3.bias.txt.bz2")
    with pytest.raises(WeightFormatError, match=r"missing fc3\.bias\.txt\[\.bz2\]"):
        read_weights(small_copy)


def test_mean_file_of_wrong_shape_is_refused(small_copy):
    lines = (small_copy / "img_mean.txt").read_text().splitlines()
    (small_copy / "img_mean.txt").write_text("\n".join(lines[:-1]) + "\n")
    with pytest.raises(WeightMismatchError, match=r"mean image.*expected shape \(227, 681\), found \(226, 681\)"):
        read_mean_file(str(small_copy / "img_mean.txt"))


def test_mapping_of_one_conv_layer_follows_matlab_column_major_order(tmp_path):
    """A hand-made 2x2x2x3 kernel: MATLAB writes W(h,:,:,:)(:) per line, w fastest, then cin, then cout."""
    from emonet_tf.weights.mapping import conv_from_matlab_rows

    kernel = np.arange(24, dtype=np.float32).reshape(2, 2, 2, 3)  # (h, w, cin, cout)
    lines = [[kernel[h, w, c, o] for o in range(3) for c in range(2) for w in range(2)] for h in range(2)]
    np.testing.assert_array_equal(conv_from_matlab_rows(np.array(lines), (2, 2, 2, 3)), kernel)
