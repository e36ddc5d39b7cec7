"""EmoNet: the AlexNet backbone with an N-way head (fc8; 20 emotions by default)."""

from __future__ import annotations

from typing import Optional, Sequence

import keras

from emonet_tf.backbone import AlexNetBackbone
from emonet_tf.categories import EMONET_CATEGORIES
from emonet_tf.layers import PACKAGE
from emonet_tf.preprocessor import EmoNetPreprocessor


@keras.saving.register_keras_serializable(package=PACKAGE)
class EmoNetClassifier(keras.Model):
    """Backbone -> fc8 (Dense num_classes) -> softmax (or logits).

    Args:
      backbone: an `AlexNetBackbone` ending at a 1-D feature layer (relu7 by default). A new one is
        made when None.
      num_classes: outputs of fc8; defaults to the 20 EmoNet categories.
      activation: "softmax" for probabilities (MATLAB `predict`), None for the pre-softmax fc8
        values (MATLAB `activations(net, x, 'fc')`, used by the valence/arousal read-outs).
      class_names: names of the outputs, in order; the 20 EmoNet categories by default.
      preprocessor: the `EmoNetPreprocessor` (decoding and resize settings) that every path from a file
        to this model uses; saved in the config, hence in `.keras` files and SavedModels. The default
        contract (MATLAB's imresize, antialias, accurate JPEG IDCT, RGB) when None.
    """

    def __init__(
        self,
        backbone: Optional[AlexNetBackbone] = None,
        num_classes: Optional[int] = None,
        activation: Optional[str] = "softmax",
        class_names: Optional[Sequence[str]] = None,
        preprocessor: Optional[EmoNetPreprocessor] = None,
        **kwargs,
    ):
        backbone = backbone if backbone is not None else AlexNetBackbone()
        if num_classes is not None and num_classes < 1:
            raise ValueError(f"num_classes must be at least 1, got {num_classes}")
        if class_names is None:
            num_classes = num_classes or len(EMONET_CATEGORIES)
            class_names = (
                EMONET_CATEGORIES
                if num_classes == len(EMONET_CATEGORIES)
                else tuple(f"class_{i}" for i in range(num_classes))
            )
        class_names = tuple(str(c) for c in class_names)
        if num_classes is not None and num_classes != len(class_names):
            raise ValueError(f"num_classes={num_classes} but {len(class_names)} class_names were given")
        if len(backbone.output.shape) != 2:
            raise ValueError(
                f"The backbone ends at {backbone.output_layer!r} with shape {backbone.output.shape}; "
                "a classifier needs a 1-D feature layer (fc6, relu6, fc7, relu7)"
            )
        images = backbone.input
        features = backbone(images)
        logits = keras.layers.Dense(len(class_names), name="fc8")(features)
        outputs = keras.layers.Activation(activation or "linear", dtype="float32", name="predictions")(logits)
        super().__init__(inputs=images, outputs=outputs, name=kwargs.pop("name", "emonet"), **kwargs)
        self.backbone = backbone
        self.activation = activation
        self.class_names = class_names
        self.num_classes = len(class_names)
        self.preprocessor = preprocessor if preprocessor is not None else EmoNetPreprocessor()

    @property
    def head(self) -> keras.layers.Dense:
        """The fc8 layer; it can be applied on its own to cached fc7 features."""
        return self.get_layer("fc8")

    def get_config(self):
        return {
            "backbone": keras.saving.serialize_keras_object(self.backbone),
            "num_classes": self.num_classes,
            "activation": self.activation,
            "class_names": list(self.class_names),
            "preprocessor": keras.saving.serialize_keras_object(self.preprocessor),
            "name": self.name,
            "trainable": self.trainable,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["backbone"] = keras.saving.deserialize_keras_object(config["backbone"])
        # .keras files written before the preprocessor was saved hold none: they were made with the default.
        if config.get("preprocessor") is not None:
            config["preprocessor"] = preprocessor_from_config(config["preprocessor"])
        return cls(**config)


def preprocessor_from_config(entry) -> EmoNetPreprocessor:
    """The `preprocessor` entry of a saved config -> EmoNetPreprocessor, checked before anything is built.

    The entry must be what `keras.saving.serialize_keras_object` wrote for an EmoNetPreprocessor; any other
    class name is refused before it is instantiated (a .keras file is untrusted input).

    Raises:
      ValueError: not an object, another class, or settings EmoNetPreprocessor refuses.
    """
    if not isinstance(entry, dict) or not isinstance(entry.get("config"), dict):
        raise ValueError(f"the saved 'preprocessor' is not a serialized EmoNetPreprocessor: {entry!r:.120}")
    name, registered = entry.get("class_name"), entry.get("registered_name")
    if name != EmoNetPreprocessor.__name__ or registered not in (None, f"{PACKAGE}>{EmoNetPreprocessor.__name__}"):
        raise ValueError(
            f"the saved 'preprocessor' names {registered or name!r}, not an EmoNetPreprocessor; refusing to build it"
        )
    return EmoNetPreprocessor.from_config(entry["config"])
