"""emonet_tf: EmoNet (Kragel, Reddan, LaBar & Wager, 2019, Science Advances) in TensorFlow / Keras 3.

The model is the original 2012 AlexNet exactly as MATLAB ships it (grouped convolutions, local
response normalization, 227x227 input with a mean image) with a 20-way emotion head (fc8).

    from emonet_tf import EmoNet
    emonet = EmoNet.from_weights("emonet.keras")       # or a MATLAB text dump, a .pth, ...
    for p in emonet.predict_images(["photo.jpg"]):
        print(p.source, p.top_k(3))
"""
from emonet_tf.backbone import AlexNetBackbone
from emonet_tf.categories import COWEN_KELTNER_CATEGORIES, EMONET_CATEGORIES
from emonet_tf.classifier import EmoNetClassifier
from emonet_tf.inference import EmoNet, ImagePrediction, VideoPrediction, top_k
from emonet_tf.layers import GroupedConv2D, LocalResponseNormalization, MeanImageSubtraction

__version__ = "0.1.0"

__all__ = [
    "AlexNetBackbone", "EmoNetClassifier", "EmoNet", "ImagePrediction", "VideoPrediction", "top_k",
    "GroupedConv2D", "LocalResponseNormalization", "MeanImageSubtraction",
    "EMONET_CATEGORIES", "COWEN_KELTNER_CATEGORIES", "__version__",
]
