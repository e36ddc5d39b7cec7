"""emonet_tf: EmoNet (Kragel, Reddan, LaBar & Wager, 2019, Science Advances) in TensorFlow / Keras 3.

The model is the original 2012 AlexNet exactly as MATLAB ships it (grouped convolutions, local
response normalization, 227x227 input with a mean image) with a 20-way emotion head (fc8).

    from emonet_tf import EmoNet
    emonet = EmoNet.from_weights("emonet.keras")       # or a MATLAB text dump, a .pth, ...
    for p in emonet.predict_images(["photo.jpg"]):
        print(p.source, p.top_k(3))

Top-level names are imported lazily, so that `import emonet_tf.video` or `emonet_tf.categories`
does not load TensorFlow.
"""

import importlib

__version__ = "0.1.0"

_LAZY = {
    "AlexNetBackbone": "emonet_tf.backbone",
    "EmoNetClassifier": "emonet_tf.classifier",
    "EmoNet": "emonet_tf.inference",
    "ImagePrediction": "emonet_tf.inference",
    "VideoPrediction": "emonet_tf.inference",
    "top_k": "emonet_tf.inference",
    "GroupedConv2D": "emonet_tf.layers",
    "LocalResponseNormalization": "emonet_tf.layers",
    "MeanImageSubtraction": "emonet_tf.layers",
    "EMONET_CATEGORIES": "emonet_tf.categories",
    "COWEN_KELTNER_CATEGORIES": "emonet_tf.categories",
}

__all__ = sorted(_LAZY) + ["__version__"]


def __getattr__(name):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'emonet_tf' has no attribute {name!r}")


def __dir__():
    return __all__
