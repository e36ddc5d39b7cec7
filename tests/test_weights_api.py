"""apply_weights / build_classifier / convert / the 'keras' format: all-or-nothing loading, clear refusals."""

from __future__ import annotations

import dataclasses

import keras
import numpy as np
import pytest

from emonet_tf.backbone import AlexNetBackbone
from emonet_tf.categories import EMONET_CATEGORIES
from emonet_tf.classifier import EmoNetClassifier
from emonet_tf.weights import (
    WeightFormatError,
    WeightMismatchError,
    WeightSet,
    apply_weights,
    build_classifier,
    convert,
    detect_format,
    from_torch_state_dict,
    read_weights,
)
from emonet_tf.weights.weightset import expected_shapes, make_weightset


def _random_set(num_classes=20, seed=0, mean=None) -> WeightSet:
    rng = np.random.default_rng(seed)
    layers = {
        name: (rng.standard_normal(k).astype(np.float32) * 0.01, rng.standard_normal(b).astype(np.float32))
        for name, (k, b) in expected_shapes(num_classes).items()
    }
    return make_weightset(layers, mean, None, f"<random {seed}>", "keras")


def _snapshot(model) -> list[np.ndarray]:
    return [np.array(v) for v in model.weights]


def _assert_unchanged(model, before):
    after = _snapshot(model)
    assert len(after) == len(before)
    for a, b in zip(after, before):
        np.testing.assert_array_equal(a, b)


@pytest.fixture(scope="module")
def model():
    return EmoNetClassifier()


def test_head_mismatch_raises_before_anything_is_assigned(model):
    before = _snapshot(model)
    ws = _random_set(num_classes=1000, mean=np.full(3, 7.0))
    with pytest.raises(WeightMismatchError, match=r"fc8 kernel: expected shape \(4096, 20\), found \(4096, 1000\)"):
        apply_weights(model, ws)
    _assert_unchanged(model, before)


def test_late_layer_mismatch_leaves_early_layers_untouched(model):
    before = _snapshot(model)
    ws = _random_set()
    bad = dict(ws.layers)
    bad["conv5"] = (np.zeros((3, 3, 384, 256), np.float32), bad["conv5"][1])  # ungrouped conv5
    with pytest.raises(
        WeightMismatchError,
        match=r"conv5 kernel: expected shape \(3, 3, 192, 256\), "
        r"found \(3, 3, 384, 256\)",
    ):
        apply_weights(model, dataclasses.replace(ws, layers=bad))
    _assert_unchanged(model, before)


def test_missing_layer_is_refused_and_nothing_changes(model):
    before = _snapshot(model)
    ws = _random_set()
    with pytest.raises(WeightFormatError, match=r"no weights for layers \['fc7'\]"):
        apply_weights(model, dataclasses.replace(ws, layers={k: v for k, v in ws.layers.items() if k != "fc7"}))
    _assert_unchanged(model, before)


def test_wrong_mean_shape_is_refused_before_assignment(model):
    before = _snapshot(model)
    ws = dataclasses.replace(_random_set(), mean=np.zeros((224, 224, 3), np.float32))
    with pytest.raises(WeightMismatchError, match=r"mean image"):
        apply_weights(model, ws)
    _assert_unchanged(model, before)


def test_head_skip_loads_the_backbone_and_keeps_fc8(model):
    fc8_before = [np.array(v) for v in model.head.weights]
    ws = _random_set(num_classes=1000, seed=1, mean=(1.0, 2.0, 3.0))
    apply_weights(model, ws, head="skip")
    np.testing.assert_array_equal(np.asarray(model.backbone.get_layer("conv3").kernel), ws.layers["conv3"][0])
    np.testing.assert_array_equal(np.asarray(model.backbone.get_layer("fc6").bias), ws.layers["fc6"][1])
    for v, b in zip(model.head.weights, fc8_before):
        np.testing.assert_array_equal(np.asarray(v), b)
    np.testing.assert_array_equal(np.asarray(model.backbone.mean_image)[100, 7], [1.0, 2.0, 3.0])


def test_backbones_take_what_they_have():
    ws = _random_set(seed=2)
    backbone = AlexNetBackbone(output_layer="pool5")
    apply_weights(backbone, ws)  # fc6, fc7, fc8 are not in this backbone
    np.testing.assert_array_equal(np.asarray(backbone.get_layer("conv5").kernel), ws.layers["conv5"][0])


def test_make_weightset_names_layer_and_both_shapes():
    layers = dict(_random_set().layers)
    layers["fc6"] = (np.zeros((4096, 9216), np.float32), layers["fc6"][1])  # transposed
    with pytest.raises(
        WeightMismatchError, match=r"src: fc6 kernel: expected shape \(9216, 4096\), found \(4096, 9216\)"
    ):
        make_weightset(layers, None, None, "src", "keras")
    layers = dict(_random_set().layers)
    layers["fc9"] = layers.pop("fc8")
    with pytest.raises(WeightFormatError, match=r"unknown layer names \['fc9'\]"):
        make_weightset(layers, None, None, "src", "keras")
    layers = dict(_random_set().layers)
    layers["conv1"] = (np.full((11, 11, 3, 96), np.nan, np.float32), layers["conv1"][1])
    with pytest.raises(WeightFormatError, match="NaN"):
        make_weightset(layers, None, None, "src", "keras")


def test_build_classifier_new_head_and_refused_class_count():
    ws = _random_set(num_classes=1000, seed=3)
    with pytest.warns(UserWarning, match="holds no mean image"):
        model = build_classifier(ws, new_head=True)
    assert model.head.kernel.shape == (4096, 20) and tuple(model.class_names) == EMONET_CATEGORIES
    np.testing.assert_array_equal(np.asarray(model.backbone.get_layer("fc7").kernel), ws.layers["fc7"][0])
    with pytest.raises(WeightMismatchError, match=r"fc8 kernel.*new_head=True"):
        build_classifier(ws, num_classes=20)


def test_keras_round_trip_and_refusals(tmp_path):
    ws = _random_set(seed=4, mean=np.arange(227 * 227 * 3, dtype=np.float32).reshape(227, 227, 3) % 255)
    model = build_classifier(ws, class_names=[f"c{i}" for i in range(20)])
    src = str(tmp_path / "model.keras")
    model.save(src)
    assert detect_format(src) == "keras"
    back = read_weights(src)
    assert back.class_names == tuple(f"c{i}" for i in range(20))
    np.testing.assert_array_equal(back.mean, ws.mean)
    for name, (k, b) in ws.layers.items():
        np.testing.assert_array_equal(back.layers[name][0], k)
        np.testing.assert_array_equal(back.layers[name][1], b)
    dst = str(tmp_path / "again.keras")
    summary = convert(src, dst, new_head_classes=5)
    assert "fresh fc8 with 5 outputs" in summary and "class names (20): c0" in summary
    assert keras.saving.load_model(dst).head.kernel.shape == (4096, 5)
    with pytest.raises(ValueError, match="must end in .keras"):
        convert(src, str(tmp_path / "out.h5"))
    cut = tmp_path / "cut.keras"
    data = open(src, "rb").read()
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(WeightFormatError, match=r"cut\.keras"):
        convert(cut, str(tmp_path / "never.keras"))
    assert not (tmp_path / "never.keras").exists()


def test_from_torch_state_dict_accepts_plain_numpy_and_checkpoint_wrappers():
    ws = _random_set(seed=5)
    sd = {f"{n}.weight": ws.layers[n][0].transpose(3, 2, 0, 1) for n in ("conv1", "conv2", "conv3", "conv4", "conv5")}
    sd.update({f"{n}.bias": ws.layers[n][1] for n in ("conv1", "conv2", "conv3", "conv4", "conv5")})
    w6 = ws.layers["fc6"][0].reshape(6, 6, 256, 4096)  # (h, w, c, out) -> emonet-py columns 36c + 6w + h
    sd.update(
        {
            "fc1.weight": w6.transpose(3, 2, 1, 0).reshape(4096, 9216),
            "fc1.bias": ws.layers["fc6"][1],
            "fc2.weight": ws.layers["fc7"][0].T,
            "fc2.bias": ws.layers["fc7"][1],
            "fc3.weight": ws.layers["fc8"][0].T,
            "fc3.bias": ws.layers["fc8"][1],
        }
    )
    got = from_torch_state_dict({"state_dict": {"module." + k: v for k, v in sd.items()}})
    assert got.format == "emonet_py_pth"
    for name, (k, b) in ws.layers.items():
        np.testing.assert_array_equal(got.layers[name][0], k)
        np.testing.assert_array_equal(got.layers[name][1], b)


def test_unrecognised_files(tmp_path):
    junk = tmp_path / "weights.bin"
    junk.write_bytes(b"not weights at all")
    with pytest.raises(WeightFormatError, match=r"weights\.bin: unrecognised weight file"):
        detect_format(junk)
    with pytest.raises(WeightFormatError, match="not a MATLAB text dump"):
        detect_format(tmp_path)
    with pytest.raises(WeightFormatError, match="no such file"):
        read_weights(tmp_path / "absent.pth")


def test_a_new_head_needs_at_least_one_class():
    with pytest.raises(ValueError, match="at least 1 class"):
        build_classifier(_random_set(num_classes=1000, seed=3), num_classes=0, new_head=True)
