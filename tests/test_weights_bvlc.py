"""ImageNet AlexNet files (bvlc_alexnet.npy, .caffemodel, mean .binaryproto) against a numpy Caffe AlexNet on BGR input."""

from __future__ import annotations

import os

import keras
import numpy as np
import pytest

import reference as R
from emonet_tf.categories import EMONET_CATEGORIES
from emonet_tf.weights import WeightFormatError, WeightMismatchError, convert, detect_format, read_weights
from emonet_tf.weights.__main__ import main


@pytest.fixture(scope="module")
def batch(image_files, photos):
    return R.test_batch(image_files, photos)


@pytest.fixture(scope="module")
def setup(batch):
    return R.imagenet_setup(batch)


@pytest.fixture(scope="module")
def files(setup, tmp_path_factory):
    out = tmp_path_factory.mktemp("bvlc")
    layers = R.caffe_tensorflow_layers(setup["ref"])
    paths = {
        "npy": R.write_bvlc_npy(layers, str(out / "bvlc_alexnet.npy"), python2=True),
        "npy3": R.write_bvlc_npy(layers, str(out / "bvlc_alexnet_py3.npy"), python2=False),
        "caffemodel": str(out / "bvlc_alexnet.caffemodel"),
        "v1": str(out / "bvlc_alexnet_v1.caffemodel"),
        "mean": str(out / "ilsvrc_2012_mean.binaryproto"),
    }
    with open(paths["caffemodel"], "wb") as f:
        f.write(R.caffemodel_bytes(setup["ref"]))
    with open(paths["v1"], "wb") as f:
        f.write(R.caffemodel_bytes(setup["ref"], legacy=True))
    with open(paths["mean"], "wb") as f:
        f.write(R.binaryproto_bytes(setup["blob"]))
    return paths


def test_bvlc_npy_with_mean_file_matches_caffe_alexnet_on_bgr(files, setup, batch, tmp_path):
    assert detect_format(files["npy"]) == "bvlc_npy"
    dst = str(tmp_path / "alexnet.keras")
    summary = convert(files["npy"], dst, mean=files["mean"])
    print(summary)
    assert (
        "BGR -> RGB" in summary
        and "ilsvrc_2012_mean.binaryproto" in summary
        and "fc8    kernel (4096, 1000)" in summary
    )
    model = keras.saving.load_model(dst)
    R.assert_parity(model.predict(batch, verbose=0), setup["probs_full"])


def test_caffemodel_without_mean_uses_caffe_channel_mean(files, setup, batch, tmp_path):
    assert detect_format(files["caffemodel"]) == "caffemodel"
    dst = str(tmp_path / "alexnet.keras")
    summary = convert(files["caffemodel"], dst)
    assert "per-channel ImageNet mean" in summary and "per-channel RGB (122.6789" in summary
    model = keras.saving.load_model(dst)
    R.assert_parity(model.predict(batch, verbose=0), setup["probs_channel"])


def test_cli_puts_a_fresh_emonet_head_on_the_imagenet_backbone(files, setup, batch, tmp_path, capsys):
    dst = str(tmp_path / "transfer.keras")
    assert main([files["caffemodel"], dst, "--new-head-classes", "20", "--mean", files["mean"]]) == 0
    out = capsys.readouterr().out
    assert "head: fresh fc8 with 20 outputs" in out and "written:" in out
    model = keras.saving.load_model(dst)
    assert model.head.kernel.shape == (4096, 20) and tuple(model.class_names) == EMONET_CATEGORIES
    features = np.asarray(model.backbone.predict(batch, verbose=0), np.float64)
    expected = R.reference_forward(setup["ref"], setup["x_full"], until="fc7")
    np.testing.assert_allclose(features, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())


def test_python2_npy_numpy_npy_and_both_caffemodel_layouts_give_identical_weights(files):
    base = read_weights(files["npy"])
    for other in (read_weights(files["npy3"]), read_weights(files["caffemodel"]), read_weights(files["v1"])):
        assert list(other.layers) == list(base.layers)
        for name, (kernel, bias) in base.layers.items():
            np.testing.assert_array_equal(other.layers[name][0], kernel, err_msg=f"{other.source} {name}")
            np.testing.assert_array_equal(other.layers[name][1], bias, err_msg=f"{other.source} {name}")


def test_npy_fc6_in_caffe_order_is_reordered_on_request(setup, files, tmp_path):
    layers = R.caffe_tensorflow_layers(setup["ref"])
    layers["fc6"][0] = np.ascontiguousarray(setup["ref"]["fc6"][0].reshape(4096, -1).T)  # rows c*36 + h*6 + w
    path = R.write_bvlc_npy(layers, str(tmp_path / "chw.npy"))
    np.testing.assert_array_equal(
        read_weights(path, fc6_order="chw").layers["fc6"][0], read_weights(files["npy"]).layers["fc6"][0]
    )


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_npy_pickle_that_runs_code_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    path = str(tmp_path / "evil.npy")
    np.save(path, {"conv1": [_Evil(marker), np.zeros(3)]}, allow_pickle=True)
    with pytest.raises(WeightFormatError, match=r"evil\.npy: refusing to load: .*(posix|os)\.system"):
        read_weights(path)
    assert not marker.exists()


def test_truncated_files_are_reported(files, tmp_path):
    for key, name, pattern in (
        ("caffemodel", "cut.caffemodel", r"cut\.caffemodel: corrupt or truncated caffemodel"),
        ("npy", "cut.npy", r"cut\.npy: .*truncated"),
        ("mean", "cut.binaryproto", r"cut\.binaryproto: corrupt or truncated"),
    ):
        data = open(files[key], "rb").read()
        path = tmp_path / name
        path.write_bytes(data[: len(data) * 2 // 3])
        with pytest.raises(WeightFormatError, match=pattern):
            if key == "mean":
                from emonet_tf.weights.bvlc import read_binaryproto_mean

                read_binaryproto_mean(str(path))
            else:
                read_weights(path)


def test_caffemodel_with_wrong_conv_shape_names_layer_and_shapes(setup, tmp_path):
    ref = dict(setup["ref"])
    ref["conv2"] = (np.zeros((256, 96, 5, 5), np.float32), ref["conv2"][1])  # ungrouped conv2
    path = tmp_path / "bad.caffemodel"
    path.write_bytes(R.caffemodel_bytes(ref))
    with pytest.raises(
        WeightMismatchError, match=r"conv2 blob 0: expected shape \(256, 48, 5, 5\), found \(256, 96, 5, 5\)"
    ):
        read_weights(path)


def test_caffemodel_missing_a_layer_is_refused(setup, tmp_path):
    ref = {k: v for k, v in setup["ref"].items() if k != "fc7"}
    path = tmp_path / "nofc7.caffemodel"
    path.write_bytes(R.caffemodel_bytes(ref))
    with pytest.raises(WeightFormatError, match=r"lacks layers \['fc7'\]"):
        read_weights(path)


def test_binaryproto_is_not_taken_for_weights(files):
    with pytest.raises(WeightFormatError, match="mean file, not weights"):
        detect_format(files["mean"])
