"""The two layers that Keras lacks for the original AlexNet: cross-channel LRN and a grouped convolution.

Both are registered Keras serializables, so `.keras` files and SavedModels carry them.
"""

from __future__ import annotations

from typing import Sequence

import keras
import numpy as np
import tensorflow as tf

from emonet_tf.image_spec import IMAGE_SIZE

PACKAGE = "emonet_tf"


@keras.saving.register_keras_serializable(package=PACKAGE)
class LocalResponseNormalization(keras.layers.Layer):
    """Cross-channel local response normalization with MATLAB/Caffe/PyTorch constants.

    y = x / (k + alpha / size * sum_{window} x^2) ** beta, over `size` neighbouring channels.
    Arguments use the MATLAB/PyTorch convention (alpha is divided by the window size); TF's
    `tf.nn.local_response_normalization` does not divide, so it is called with alpha / size.

    The layer computes in float32 by default, also under a mixed-precision policy: the sum of
    squares overflows and loses precision in float16.
    """

    def __init__(self, size: int = 5, alpha: float = 1e-4, beta: float = 0.75, k: float = 1.0, dtype=None, **kwargs):
        if size < 1 or size % 2 != 1:
            raise ValueError(f"LRN size must be a positive odd number, got {size}")
        super().__init__(dtype=dtype if dtype is not None else "float32", **kwargs)
        self.size = int(size)
        self.alpha = float(alpha)
        self.beta = float(beta)
        self.k = float(k)

    def call(self, inputs):
        return tf.nn.local_response_normalization(
            inputs, depth_radius=(self.size - 1) // 2, bias=self.k, alpha=self.alpha / self.size, beta=self.beta
        )

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(size=self.size, alpha=self.alpha, beta=self.beta, k=self.k)
        return config


@keras.saving.register_keras_serializable(package=PACKAGE)
class GroupedConv2D(keras.layers.Layer):
    """2-D convolution in `groups` independent channel groups, computed as split -> convs -> concat.

    The kernel has Keras' grouped layout (kh, kw, in_channels // groups, filters), which is also
    MATLAB's, and output filters [g * filters/groups, (g+1) * filters/groups) see input channels
    [g * cin/groups, (g+1) * cin/groups). Keras 3's `Conv2D(groups>1)` forces XLA on the TF
    backend and trains about 10x slower on CPU (`bench/bench_grouped_conv.py`); split/concat runs
    everywhere (CPU, GPU, TFLite, SavedModel) with identical results.
    """

    def __init__(
        self,
        filters: int,
        kernel_size,
        groups: int = 2,
        strides=1,
        padding: str = "valid",
        use_bias: bool = True,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        **kwargs,
    ):
        super().__init__(**kwargs)
        if filters % groups:
            raise ValueError(f"filters ({filters}) must be divisible by groups ({groups})")
        self.filters = int(filters)
        self.kernel_size = tuple(kernel_size) if isinstance(kernel_size, (list, tuple)) else (kernel_size,) * 2
        self.groups = int(groups)
        self.strides = tuple(strides) if isinstance(strides, (list, tuple)) else (strides,) * 2
        self.padding = padding.lower()
        self.use_bias = bool(use_bias)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)

    def build(self, input_shape):
        in_channels = input_shape[-1]
        if in_channels % self.groups:
            raise ValueError(f"{self.name}: input channels ({in_channels}) not divisible by groups ({self.groups})")
        self.kernel = self.add_weight(
            name="kernel",
            shape=self.kernel_size + (in_channels // self.groups, self.filters),
            initializer=self.kernel_initializer,
        )
        self.bias = (
            self.add_weight(name="bias", shape=(self.filters,), initializer=self.bias_initializer)
            if self.use_bias
            else None
        )

    def call(self, inputs):
        kernel = tf.cast(self.kernel, inputs.dtype)
        x_groups = tf.split(inputs, self.groups, axis=-1)
        k_groups = tf.split(kernel, self.groups, axis=-1)
        outputs = tf.concat(
            [
                tf.nn.conv2d(x, k, strides=self.strides, padding=self.padding.upper())
                for x, k in zip(x_groups, k_groups)
            ],
            axis=-1,
        )
        if self.use_bias:
            outputs = tf.nn.bias_add(outputs, tf.cast(self.bias, outputs.dtype))
        return outputs

    def compute_output_shape(self, input_shape):
        def out(size, k, s):
            if size is None:
                return None
            return -(-size // s) if self.padding == "same" else (size - k) // s + 1

        return (
            input_shape[0],
            out(input_shape[1], self.kernel_size[0], self.strides[0]),
            out(input_shape[2], self.kernel_size[1], self.strides[1]),
            self.filters,
        )

    def get_config(self):
        config = super().get_config()
        config.update(
            filters=self.filters,
            kernel_size=self.kernel_size,
            groups=self.groups,
            strides=self.strides,
            padding=self.padding,
            use_bias=self.use_bias,
            kernel_initializer=keras.initializers.serialize(self.kernel_initializer),
            bias_initializer=keras.initializers.serialize(self.bias_initializer),
        )
        return config


@keras.saving.register_keras_serializable(package=PACKAGE)
class MeanImageSubtraction(keras.layers.Layer):
    """MATLAB's 'zerocenter' input normalization: subtracts a stored H x W x 3 mean image.

    The mean is a non-trainable weight, so it travels with the other weights in every format
    (.keras, SavedModel, presets). A per-channel mean (3 values) is broadcast to the full image.
    """

    def __init__(self, image_size: Sequence[int] = (IMAGE_SIZE, IMAGE_SIZE), mean=None, dtype=None, **kwargs):
        # float32 also under mixed precision: 0-255 pixels minus the mean lose precision in float16.
        super().__init__(dtype=dtype if dtype is not None else "float32", **kwargs)
        self.image_size = tuple(int(s) for s in image_size)
        self._initial_mean = None if mean is None else np.asarray(mean, dtype="float32").tolist()

    def build(self, input_shape):
        initial = (
            self.broadcast_mean(self._initial_mean, self.image_size)
            if self._initial_mean is not None
            else np.zeros(self.image_size + (3,), "float32")
        )
        self.mean = self.add_weight(
            name="mean", shape=self.image_size + (3,), initializer=keras.initializers.Constant(initial), trainable=False
        )

    @staticmethod
    def broadcast_mean(mean, image_size: Sequence[int] = (IMAGE_SIZE, IMAGE_SIZE)) -> np.ndarray:
        """Returns `mean` as an H x W x 3 float32 array; accepts (3,), (1, 1, 3) or (H, W, 3)."""
        arr = np.asarray(mean, dtype="float32")
        target = tuple(image_size) + (3,)
        if arr.size == 3:
            return np.broadcast_to(arr.reshape(1, 1, 3), target).copy()
        if arr.shape != target:
            raise ValueError(f"mean image must have shape (3,) or {target}, got {arr.shape}")
        return arr

    def set_mean(self, mean) -> None:
        self.mean.assign(self.broadcast_mean(mean, self.image_size))

    def call(self, inputs):
        return inputs - tf.cast(self.mean, inputs.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        # The mean itself is a weight; only a per-channel initial value is kept in the config.
        initial = self._initial_mean if self._initial_mean is not None and np.size(self._initial_mean) == 3 else None
        config.update(image_size=self.image_size, mean=initial)
        return config
