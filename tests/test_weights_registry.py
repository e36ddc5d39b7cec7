"""The weight-format registry: a format registered from outside is detected, read and converted like a built-in."""

from __future__ import annotations

import io

import keras
import numpy as np
import pytest

from emonet_tf.weights import (
    FORMATS,
    WeightFormat,
    WeightFormatError,
    convert,
    detect_format,
    read_weights,
    register,
    registry,
    unregister,
)
from emonet_tf.weights.weightset import LAYERS, expected_shapes, make_weightset

TOY_MAGIC = b"TOYWEIGHTS\n"


def _looks_like_toy(path: str) -> bool:
    return registry.read_head(path, len(TOY_MAGIC)) == TOY_MAGIC


def _read_toy(path: str):
    with open(path, "rb") as f:
        f.seek(len(TOY_MAGIC))
        with np.load(io.BytesIO(f.read()), allow_pickle=False) as data:
            layers = {name: (data[f"{name}_kernel"], data[f"{name}_bias"]) for name in LAYERS}
    return make_weightset(layers, None, None, path, "toy", ("a toy file of the registry test",))


def _write_toy(path, num_classes=20, seed=0) -> dict:
    rng = np.random.default_rng(seed)
    arrays = {}
    for name, (k, b) in expected_shapes(num_classes).items():
        arrays[f"{name}_kernel"] = rng.standard_normal(k, dtype=np.float32) * 0.01
        arrays[f"{name}_bias"] = rng.standard_normal(b, dtype=np.float32)
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    path.write_bytes(TOY_MAGIC + buf.getvalue())
    return arrays


def test_the_builtin_formats_are_registered_in_detection_order():
    assert tuple(FORMATS) == ("matlab_text", "bvlc_npy", "caffemodel", "keras", "emonet_py_pth", "ecco_pth")
    assert [f.name for f in registry.formats()] == list(FORMATS)
    assert ("auto",) + FORMATS == ("auto", *FORMATS)
    assert registry.get("matlab_text").folder and not registry.get("keras").folder


def test_a_registered_toy_format_converts_through_the_public_api(tmp_path):
    src = tmp_path / "net.toyw"
    arrays = _write_toy(src)
    toy = WeightFormat(
        name="toy",
        sniff=_looks_like_toy,
        read=_read_toy,
        description="a toy weight file",
        signature="the TOYWEIGHTS magic",
        suffixes=(".toyw",),
    )
    with pytest.raises(WeightFormatError, match=r"net\.toyw: unrecognised weight file"):
        detect_format(src)
    assert register(toy) is toy
    try:
        assert "toy" in FORMATS and FORMATS[-1] == "toy"
        assert detect_format(src) == "toy"
        with pytest.raises(ValueError, match="already registered"):
            register(toy)
        # the caller's mean goes on top of a reader that takes no mean option
        ws = read_weights(src, format="toy", mean=np.array([1.0, 2.0, 3.0]))
        assert ws.format == "toy" and ws.mean.tolist() == [1.0, 2.0, 3.0]
        dst = tmp_path / "toy.keras"
        summary = convert(src, dst, mean=np.array([1.0, 2.0, 3.0]))
        assert "format: toy" in summary and "a toy file of the registry test" in summary
        model = keras.saving.load_model(dst)
        np.testing.assert_array_equal(np.asarray(model.backbone.get_layer("fc7").kernel), arrays["fc7_kernel"])
        np.testing.assert_array_equal(np.asarray(model.head.kernel), arrays["fc8_kernel"])
    finally:
        assert unregister("toy") is toy
    assert "toy" not in FORMATS
    with pytest.raises(WeightFormatError, match="unrecognised weight file"):
        detect_format(src)
    with pytest.raises(ValueError, match="Unknown format 'toy'"):
        read_weights(src, format="toy")


def test_register_refuses_bad_records_and_places_before():
    toy = WeightFormat(name="toy_first", sniff=lambda p: False, read=_read_toy, description="never matches")
    with pytest.raises(ValueError, match="no such format"):
        register(toy, before="nope")
    with pytest.raises(ValueError, match="cannot be named 'auto'"):
        register(WeightFormat(name="auto", sniff=lambda p: False, read=_read_toy, description="x"))
    with pytest.raises(TypeError):
        register("toy")
    register(toy, before="matlab_text")
    try:
        assert FORMATS[0] == "toy_first"
    finally:
        unregister("toy_first")
    assert FORMATS[0] == "matlab_text"
