"""The EmoNet network: shapes at every named layer, parameter count, serialization, variants."""

import keras
import numpy as np
import pytest

from emonet_tf import EMONET_CATEGORIES, AlexNetBackbone, EmoNetClassifier
from emonet_tf.backbone import WEIGHT_SHAPES

EXPECTED_SHAPES = {
    "zerocenter": (227, 227, 3),
    "conv1": (55, 55, 96),
    "relu1": (55, 55, 96),
    "norm1": (55, 55, 96),
    "pool1": (27, 27, 96),
    "conv2": (27, 27, 256),
    "norm2": (27, 27, 256),
    "pool2": (13, 13, 256),
    "conv3": (13, 13, 384),
    "conv4": (13, 13, 384),
    "conv5": (13, 13, 256),
    "pool5": (6, 6, 256),
    "flatten": (9216,),
    "fc6": (4096,),
    "relu6": (4096,),
    "fc7": (4096,),
    "relu7": (4096,),
}


@pytest.fixture(scope="module")
def classifier():
    keras.utils.set_random_seed(0)
    return EmoNetClassifier()


def test_static_shapes_at_every_named_layer(classifier):
    for name, shape in EXPECTED_SHAPES.items():
        assert tuple(classifier.backbone.get_layer(name).output.shape[1:]) == shape, name
    assert tuple(classifier.output.shape) == (None, 20)


def test_runtime_shapes_and_probabilities(classifier):
    from emonet_tf import EmoNet

    emonet = EmoNet(classifier)
    x = np.random.default_rng(0).uniform(0, 255, (2, 227, 227, 3)).astype("float32")
    for name in ("conv1", "conv2", "pool5", "relu7", "fc8"):
        out = emonet.activations(x, name)
        expected = EXPECTED_SHAPES.get(name, (20,))
        assert out.shape == (2,) + expected, name
    probs = emonet.predict_arrays(x)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(probs, classifier.predict(x, verbose=0), rtol=1e-5, atol=1e-7)


def test_parameter_count(classifier):
    trainable = sum(int(np.prod(w.shape)) for w in classifier.trainable_weights)
    assert trainable == 56_950_164
    for name, (kernel, bias) in WEIGHT_SHAPES.items():
        layer = classifier.backbone.get_layer(name)
        assert tuple(layer.kernel.shape) == kernel and tuple(layer.bias.shape) == bias
    assert tuple(classifier.head.kernel.shape) == (4096, 20)
    assert tuple(classifier.backbone.mean_image.shape) == (227, 227, 3)
    assert classifier.class_names == EMONET_CATEGORIES


def test_backbone_ends_at_any_named_layer():
    assert tuple(AlexNetBackbone(output_layer="conv5").output.shape) == (None, 13, 13, 256)
    assert tuple(AlexNetBackbone(output_layer="pool1").output.shape) == (None, 27, 27, 96)
    with pytest.raises(ValueError, match="Unknown output_layer"):
        AlexNetBackbone(output_layer="conv9")
    with pytest.raises(ValueError, match="1-D feature layer"):
        EmoNetClassifier(AlexNetBackbone(output_layer="conv5"))


def test_custom_head_and_logits():
    model = EmoNetClassifier(
        AlexNetBackbone(output_layer="relu6"), num_classes=3, activation=None, class_names=["a", "b", "c"]
    )
    assert tuple(model.output.shape) == (None, 3)
    assert model.head.kernel.shape == (4096, 3)
    with pytest.raises(ValueError, match="num_classes=4"):
        EmoNetClassifier(num_classes=4, class_names=["a", "b"])


def test_dropout_layers_only_when_asked():
    names = [l.name for l in AlexNetBackbone(dropout=0.5).layers]
    assert "drop6" in names and "drop7" in names
    assert "drop6" not in [l.name for l in AlexNetBackbone().layers]


def test_get_config_round_trip(classifier):
    config = classifier.get_config()
    clone = EmoNetClassifier.from_config(config)
    assert clone.get_config() == config
    assert [l.name for l in clone.backbone.layers] == [l.name for l in classifier.backbone.layers]
    clone.set_weights(classifier.get_weights())
    x = np.random.default_rng(1).uniform(0, 255, (1, 227, 227, 3)).astype("float32")
    np.testing.assert_allclose(clone.predict(x, verbose=0), classifier.predict(x, verbose=0), rtol=1e-6)


def test_keras_file_round_trip_keeps_weights_and_mean(classifier, tmp_path):
    mean = np.random.default_rng(2).uniform(90, 130, (227, 227, 3)).astype("float32")
    classifier.backbone.get_layer("zerocenter").set_mean(mean)
    path = tmp_path / "emonet.keras"
    classifier.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded, EmoNetClassifier) and loaded.class_names == classifier.class_names
    np.testing.assert_array_equal(loaded.backbone.mean_image.numpy(), mean)
    x = np.random.default_rng(3).uniform(0, 255, (2, 227, 227, 3)).astype("float32")
    np.testing.assert_allclose(loaded.predict(x, verbose=0), classifier.predict(x, verbose=0), rtol=1e-6)


def test_mixed_precision_model_keeps_lrn_and_output_float32():
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model = EmoNetClassifier(AlexNetBackbone(output_layer="relu6"), num_classes=2)
        assert model.backbone.get_layer("norm1").compute_dtype == "float32"
        assert model.backbone.get_layer("conv2").compute_dtype == "float16"
        assert model.output.dtype == "float32"
    finally:
        keras.mixed_precision.set_global_policy("float32")
