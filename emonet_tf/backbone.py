"""The original 2012 AlexNet as MATLAB ships it (grouped convolutions, LRN), ending at any named layer."""

from __future__ import annotations

from typing import Callable, Optional, Sequence

import keras

from emonet_tf.image_spec import IMAGE_SIZE
from emonet_tf.layers import PACKAGE, GroupedConv2D, LocalResponseNormalization, MeanImageSubtraction

#: Caffe's ILSVRC-2012 per-channel mean in RGB order; used only when no mean image is given.
IMAGENET_RGB_MEAN = (122.6789143406786, 116.66876761696767, 104.0069879317889)

#: Names of the layers in order, as MATLAB names them (MATLAB calls fc8 'fc').
LAYER_NAMES: tuple[str, ...] = (
    "zerocenter",
    "conv1",
    "relu1",
    "norm1",
    "pool1",
    "conv2",
    "relu2",
    "norm2",
    "pool2",
    "conv3",
    "relu3",
    "conv4",
    "relu4",
    "conv5",
    "relu5",
    "pool5",
    "flatten",
    "fc6",
    "relu6",
    "drop6",
    "fc7",
    "relu7",
    "drop7",
)

#: Layers that hold weights, with their weight shapes (Keras layout) for the 20-way EmoNet.
WEIGHT_SHAPES: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {
    "conv1": ((11, 11, 3, 96), (96,)),
    "conv2": ((5, 5, 48, 256), (256,)),
    "conv3": ((3, 3, 256, 384), (384,)),
    "conv4": ((3, 3, 192, 384), (384,)),
    "conv5": ((3, 3, 192, 256), (256,)),
    "fc6": ((9216, 4096), (4096,)),
    "fc7": ((4096, 4096), (4096,)),
}


def _layer_factories(dropout: float) -> list[tuple[str, Callable[[], keras.layers.Layer]]]:
    relu = lambda name: (name, lambda: keras.layers.ReLU(name=name))
    pool = lambda name: (name, lambda: keras.layers.MaxPooling2D(3, strides=2, padding="valid", name=name))
    lrn = lambda name: (name, lambda: LocalResponseNormalization(size=5, alpha=1e-4, beta=0.75, k=1.0, name=name))
    layers = [
        ("conv1", lambda: keras.layers.Conv2D(96, 11, strides=4, padding="valid", name="conv1")),
        relu("relu1"),
        lrn("norm1"),
        pool("pool1"),
        ("conv2", lambda: GroupedConv2D(256, 5, groups=2, padding="same", name="conv2")),
        relu("relu2"),
        lrn("norm2"),
        pool("pool2"),
        ("conv3", lambda: keras.layers.Conv2D(384, 3, padding="same", name="conv3")),
        relu("relu3"),
        ("conv4", lambda: GroupedConv2D(384, 3, groups=2, padding="same", name="conv4")),
        relu("relu4"),
        ("conv5", lambda: GroupedConv2D(256, 3, groups=2, padding="same", name="conv5")),
        relu("relu5"),
        pool("pool5"),
        # NHWC flatten: fc6 rows are in (h, w, c) order; importers reorder MATLAB's (c, w, h) order.
        ("flatten", lambda: keras.layers.Flatten(name="flatten")),
        ("fc6", lambda: keras.layers.Dense(4096, name="fc6")),
        relu("relu6"),
        ("drop6", lambda: keras.layers.Dropout(dropout, name="drop6")),
        ("fc7", lambda: keras.layers.Dense(4096, name="fc7")),
        relu("relu7"),
        ("drop7", lambda: keras.layers.Dropout(dropout, name="drop7")),
    ]
    return layers


@keras.saving.register_keras_serializable(package=PACKAGE)
class AlexNetBackbone(keras.Model):
    """AlexNet from 227x227x3 RGB images in 0-255 to any named layer (`relu7`, the 4096-d fc7 features, by default).

    The first layer subtracts the mean image (MATLAB's 'zerocenter'), so the model takes the output
    of `emonet_tf.preprocessing` directly and the mean is saved with the weights.

    Args:
      output_layer: the last layer to build, one of `LAYER_NAMES` (e.g. "conv5", "pool5", "fc7", "relu7").
      dropout: rate of drop6/drop7 (active in training only). EmoNet's saved network has none, so 0.
      mean: initial mean image, (3,) or (227, 227, 3); importers overwrite it with the file's mean.
    """

    def __init__(
        self,
        output_layer: str = "relu7",
        dropout: float = 0.0,
        mean: Optional[Sequence[float]] = IMAGENET_RGB_MEAN,
        **kwargs,
    ):
        if output_layer not in LAYER_NAMES:
            raise ValueError(f"Unknown output_layer {output_layer!r}; choose one of {', '.join(LAYER_NAMES)}")
        images = keras.Input(shape=(IMAGE_SIZE, IMAGE_SIZE, 3), name="images")
        x = MeanImageSubtraction((IMAGE_SIZE, IMAGE_SIZE), mean=mean, name="zerocenter")(images)
        if output_layer != "zerocenter":
            reached = False
            for name, make in _layer_factories(dropout):
                is_dropout = name.startswith("drop")
                if reached and not is_dropout:
                    break
                if not is_dropout or dropout > 0.0:
                    # With dropout, relu6/relu7 features pass through drop6/drop7 (active in training only).
                    x = make()(x)
                if name == output_layer or reached:
                    reached = True
                    if is_dropout:
                        break
        super().__init__(inputs=images, outputs=x, name=kwargs.pop("name", "alexnet_backbone"), **kwargs)
        self.output_layer = output_layer
        self.dropout = float(dropout)
        self._mean_config = None if mean is None else [float(v) for v in mean] if len(mean) == 3 else None

    def get_config(self):
        return {
            "output_layer": self.output_layer,
            "dropout": self.dropout,
            "mean": self._mean_config,
            "name": self.name,
            "trainable": self.trainable,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    @property
    def mean_image(self):
        """The 227x227x3 mean image subtracted from every input (a Keras variable)."""
        return self.get_layer("zerocenter").mean
