"""LRN and grouped convolution against direct, independent numpy/Keras computations."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from emonet_tf.layers import GroupedConv2D, LocalResponseNormalization, MeanImageSubtraction


def matlab_lrn(x: np.ndarray, size=5, alpha=1e-4, beta=0.75, k=1.0) -> np.ndarray:
    """MATLAB crossChannelNormalization: y = x / (k + alpha * ss / size) ^ beta, ss over the channel window."""
    x = x.astype(np.float64)
    channels = x.shape[-1]
    half = (size - 1) // 2
    out = np.empty_like(x)
    for c in range(channels):
        lo, hi = max(0, c - half), min(channels, c + half + 1)
        ss = np.sum(x[..., lo:hi] ** 2, axis=-1)
        out[..., c] = x[..., c] / (k + alpha * ss / size) ** beta
    return out


@pytest.mark.parametrize("scale", [1.0, 50.0, 300.0])
def test_lrn_matches_matlab_formula(scale):
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((2, 7, 5, 96)) * scale).astype("float32")
    y = LocalResponseNormalization()(x)
    np.testing.assert_allclose(np.asarray(y), matlab_lrn(x), rtol=2e-5, atol=1e-6)
    # At these magnitudes normalization matters: the output must differ from the input.
    if scale > 1:
        assert np.abs(np.asarray(y) - x).max() > 1e-2 * scale


def test_lrn_other_constants_and_config_round_trip():
    rng = np.random.default_rng(1)
    x = (rng.standard_normal((1, 3, 3, 16)) * 20).astype("float32")
    layer = LocalResponseNormalization(size=3, alpha=2e-3, beta=0.5, k=2.0, name="n")
    np.testing.assert_allclose(np.asarray(layer(x)), matlab_lrn(x, 3, 2e-3, 0.5, 2.0), rtol=2e-5)
    clone = LocalResponseNormalization.from_config(layer.get_config())
    assert (clone.size, clone.alpha, clone.beta, clone.k) == (3, 2e-3, 0.5, 2.0)
    with pytest.raises(ValueError, match="odd"):
        LocalResponseNormalization(size=4)


def test_lrn_stays_float32_under_mixed_precision():
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        layer = LocalResponseNormalization()
        x = tf.constant(np.full((1, 2, 2, 8), 200.0), tf.float16)
        y = layer(x)
        assert layer.compute_dtype == "float32"
        assert y.dtype == tf.float32
        np.testing.assert_allclose(y.numpy(), matlab_lrn(np.full((1, 2, 2, 8), 200.0)), rtol=1e-5)
        assert MeanImageSubtraction().compute_dtype == "float32"
    finally:
        keras.mixed_precision.set_global_policy("float32")


@pytest.mark.parametrize(
    "kernel,strides,padding,cin,filters", [(5, 1, "same", 96, 256), (3, 1, "same", 384, 384), (3, 2, "valid", 8, 6)]
)
def test_grouped_conv_equals_two_independent_convolutions(kernel, strides, padding, cin, filters):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 9, 11, cin)).astype("float32")
    grouped = GroupedConv2D(filters, kernel, groups=2, strides=strides, padding=padding)
    y = np.asarray(grouped(x))
    w, b = grouped.kernel.numpy(), rng.standard_normal(filters).astype("float32")
    grouped.bias.assign(b)
    y = np.asarray(grouped(x))
    halves = []
    for g in range(2):
        conv = keras.layers.Conv2D(filters // 2, kernel, strides=strides, padding=padding)
        conv.build((None, None, None, cin // 2))
        conv.set_weights(
            [w[..., g * filters // 2 : (g + 1) * filters // 2], b[g * filters // 2 : (g + 1) * filters // 2]]
        )
        halves.append(np.asarray(conv(x[..., g * cin // 2 : (g + 1) * cin // 2])))
    expected = np.concatenate(halves, axis=-1)
    assert y.shape == expected.shape == tuple(grouped.compute_output_shape(x.shape))
    np.testing.assert_allclose(y, expected, rtol=1e-4, atol=1e-4)


def test_grouped_conv_rejects_bad_groups_and_round_trips():
    with pytest.raises(ValueError, match="divisible"):
        GroupedConv2D(5, 3, groups=2)
    layer = GroupedConv2D(4, 3, groups=2, padding="same", name="g")
    with pytest.raises(ValueError, match="not divisible"):
        layer.build((None, 5, 5, 3))
    clone = GroupedConv2D.from_config(GroupedConv2D(4, 3, groups=2, padding="same").get_config())
    assert clone.groups == 2 and clone.kernel_size == (3, 3) and clone.padding == "same"


def test_mean_image_subtraction_full_and_per_channel():
    mean = np.random.default_rng(3).uniform(0, 255, (227, 227, 3)).astype("float32")
    x = np.full((1, 227, 227, 3), 128.0, "float32")
    layer = MeanImageSubtraction(mean=[1.0, 2.0, 3.0])
    np.testing.assert_allclose(np.asarray(layer(x))[0, 5, 7], [127, 126, 125])
    layer.set_mean(mean)
    np.testing.assert_allclose(np.asarray(layer(x))[0], 128.0 - mean, rtol=1e-6)
    with pytest.raises(ValueError, match="mean image must have shape"):
        layer.set_mean(np.zeros((224, 224, 3)))
