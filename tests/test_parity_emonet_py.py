"""Numerical parity with emonet-py's AlexNetBigEmoNet (and the ecco-lab port) under torch, same random weights.

The model issue's check: max |softmax difference| < 1e-5 against AlexNetBigEmoNet (torch 2.13 CPU) on real
photos, identical top-1; skipped cleanly where torch is not installed.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest

import reference as R
from emonet_tf.weights import WeightFormatError, WeightMismatchError, convert, detect_format, read_weights

torch = pytest.importorskip("torch")
pytest.importorskip("emonet_py.alexnet_big")


@pytest.fixture(scope="module")
def batch(image_files, photos):
    return R.test_batch(image_files, photos)


@pytest.fixture(scope="module")
def setup(batch):
    return R.emonet_setup(batch)


@pytest.fixture(scope="module")
def emonet_py(setup):
    """AlexNetBigEmoNet holding the weights, and its softmax on the same preprocessed images minus the same mean."""
    model = R.emonet_py_model(setup["ref"])
    with torch.no_grad():
        probs = model(torch.from_numpy(setup["x"].astype(np.float32))).numpy()
    return model, probs


def test_emonet_py_agrees_with_the_numpy_reference(setup, emonet_py):
    R.assert_parity(emonet_py[1], setup["probs"])


def test_emonet_py_pth_matches_alexnet_big_emonet(setup, emonet_py, batch, tmp_path):
    model, expected = emonet_py
    src = tmp_path / "emonet.pth"
    torch.save(model.state_dict(), src)
    mean_file = str(tmp_path / "img_mean.txt")
    np.savetxt(mean_file, setup["mean"].transpose(0, 2, 1).reshape(227, -1), fmt="%.9g", delimiter=",")
    assert detect_format(src) == "emonet_py_pth"
    dst = str(tmp_path / "emonet.keras")
    summary = convert(src, dst, mean=mean_file)
    assert "format: emonet_py_pth" in summary and "mean image from img_mean.txt" in summary
    loaded = keras.saving.load_model(dst)
    R.assert_parity(loaded.predict(batch, verbose=0), expected)
    # Pre-softmax fc8 (MATLAB activations(net, x, 'fc')) equals AlexNetBigEmoNet in train mode (logits).
    logits_model = keras.Model(loaded.input, loaded.get_layer("fc8").output)
    with torch.no_grad():
        logits = model.train()(torch.from_numpy(setup["x"].astype(np.float32))).numpy()
    model.eval()
    np.testing.assert_allclose(logits_model.predict(batch, verbose=0), logits, rtol=0, atol=1e-4)
    # The one-call API reads the same .pth with the mean given beside it; without it, it warns.
    from emonet_tf import EmoNet

    R.assert_parity(EmoNet.from_weights(src, mean=mean_file).predict_arrays(batch), expected)
    with pytest.warns(UserWarning, match="holds no mean image"):
        EmoNet.from_weights(src)


def test_matlab_text_dump_matches_alexnet_big_emonet(batch, emonet_py):
    from test_weights_matlab_text import converted_text_dump

    dst, _summary = converted_text_dump(batch)
    R.assert_parity(keras.saving.load_model(dst).predict(batch, verbose=0), emonet_py[1])


def test_ecco_pth_matches_the_ecco_port_and_emonet_py(setup, emonet_py, batch, tmp_path):
    ecco = R.ecco_model(setup["ref"])
    with torch.no_grad():
        ecco_probs = ecco(torch.from_numpy(setup["x"].astype(np.float32))).numpy()
    src = tmp_path / "EmoNetPythonic.pt"
    torch.save(ecco.state_dict(), src)
    mean_npy = str(tmp_path / "mean.npy")
    np.save(mean_npy, setup["mean"])
    assert detect_format(src) == "ecco_pth"
    dst = str(tmp_path / "ecco.keras")
    summary = convert(src, dst, mean=mean_npy)
    assert "ecco layout" in summary
    probs = keras.saving.load_model(dst).predict(batch, verbose=0)
    R.assert_parity(probs, ecco_probs)
    R.assert_parity(probs, emonet_py[1])


def test_raw_onnx2torch_names_with_mean_initializer(setup, emonet_py, batch, tmp_path):
    src = tmp_path / "onnx2torch.pth"
    torch.save(R.onnx2torch_state_dict(setup["ref"], setup["mean"]), src)
    ws = read_weights(src)
    assert ws.format == "ecco_pth"
    np.testing.assert_array_equal(ws.mean, setup["mean"])
    dst = str(tmp_path / "raw.keras")
    convert(src, dst)
    R.assert_parity(keras.saving.load_model(dst).predict(batch, verbose=0), emonet_py[1])


def test_legacy_torch_save_format_reads_the_same_weights(emonet_py, tmp_path):
    model = emonet_py[0]
    torch.save(model.state_dict(), tmp_path / "zip.pth")
    torch.save(model.state_dict(), tmp_path / "legacy.pth", _use_new_zipfile_serialization=False)
    a, b = read_weights(tmp_path / "zip.pth"), read_weights(tmp_path / "legacy.pth")
    for name in a.layers:
        for i in range(2):
            np.testing.assert_array_equal(a.layers[name][i], b.layers[name][i])


def test_state_dict_with_wrong_shape_names_key_and_both_shapes(emonet_py, tmp_path):
    sd = emonet_py[0].state_dict()
    sd["conv4.weight"] = torch.zeros(384, 384, 3, 3)  # ungrouped
    torch.save(sd, tmp_path / "bad.pth")
    with pytest.raises(
        WeightMismatchError,
        match=r"bad\.pth: conv4\.weight: expected shape \(384, 192, 3, 3\), found \(384, 384, 3, 3\)",
    ):
        read_weights(tmp_path / "bad.pth")


def test_state_dict_with_missing_or_unknown_names_is_refused(emonet_py, tmp_path):
    sd = emonet_py[0].state_dict()
    del sd["fc2.bias"]
    torch.save(sd, tmp_path / "missing.pth")
    with pytest.raises(WeightFormatError, match=r"lacks \['fc2\.bias'\]"):
        read_weights(tmp_path / "missing.pth")
    sd = emonet_py[0].state_dict()
    sd["fc4.weight"] = torch.zeros(2, 2)
    torch.save(sd, tmp_path / "extra.pth")
    with pytest.raises(WeightFormatError, match=r"unexpected keys \['fc4\.weight'\]"):
        read_weights(tmp_path / "extra.pth")
    torch.save({"features.0.weight": torch.zeros(1)}, tmp_path / "torchvision.pth")
    with pytest.raises(WeightFormatError, match="not an EmoNet state_dict"):
        read_weights(tmp_path / "torchvision.pth")


def test_from_torch_state_dict_takes_live_tensors_including_bfloat16(emonet_py, tmp_path):
    from emonet_tf.weights import from_torch_state_dict

    sd = emonet_py[0].state_dict()
    live = from_torch_state_dict(sd)
    torch.save(sd, tmp_path / "e.pth")
    filed = read_weights(tmp_path / "e.pth")
    for name in live.layers:
        for i in range(2):
            np.testing.assert_array_equal(live.layers[name][i], filed.layers[name][i])
    bf16 = from_torch_state_dict({k: v.bfloat16() for k, v in sd.items()})
    rounded = sd["conv1.weight"].bfloat16().float().numpy().transpose(2, 3, 1, 0)
    np.testing.assert_array_equal(bf16.layers["conv1"][0], rounded)
