"""Import every published weight format of EmoNet and of the ImageNet AlexNet into emonet_tf models.

Formats (`detect_format` names them; the layout table is in `emonet_tf.weights.mapping`, prose in docs/weights.md):
  matlab_text    folder of MATLAB writematrix dumps (emonet-py data/: conv*.txt.bz2, fc*.txt.bz2, img_mean.txt)
  emonet_py_pth  emonet-py `emonet.pth` state_dict (AlexNetBigEmoNet: conv1..conv5, fc1..fc3)
  ecco_pth       ecco-lab `EmoNetPythonic.pt` state_dict (conv_0.0 ... classifier.0), or raw onnx2torch names
  bvlc_npy       `bvlc_alexnet.npy` (ImageNet, caffe-tensorflow layout, BGR conv1)
  caffemodel     BVLC `bvlc_alexnet.caffemodel` (ImageNet, NetParameter protobuf, BGR conv1)
  keras          this library's own .keras files

Each format is one record of `emonet_tf.weights.registry` (a sniff and a reader; built-ins in weights/builtin.py):
`register(WeightFormat(...))` adds one, and FORMATS lists the registered names in detection order.

No reader runs code from a file (pickles are read by allow-listed unpicklers) and none needs torch or Caffe.

    weights = read_weights("emonet.pth")                  # -> WeightSet in Keras layout
    model = build_classifier(weights)                      # ready EmoNetClassifier
    print(convert("data/", "emonet.keras"))                # or: python -m emonet_tf.weights data/ emonet.keras
"""

import importlib

from emonet_tf.weights.errors import WeightFormatError, WeightMismatchError

# The other names are imported on first use: they need TensorFlow, and `python -m emonet_tf.weights --help`
# (this package is imported before its __main__) must answer without it, as `emonet convert --help` does.
_LAZY = {
    "apply_weights": "api",
    "build_classifier": "api",
    "convert": "api",
    "describe": "api",
    "detect_format": "api",
    "read_weights": "api",
    "from_torch_state_dict": "mapping",
    "WeightFormat": "registry",
    "register": "registry",
    "unregister": "registry",
    "FORMATS": "weightset",
    "WeightSet": "weightset",
}

__all__ = [
    "FORMATS",
    "WeightFormat",
    "WeightFormatError",
    "WeightMismatchError",
    "WeightSet",
    "apply_weights",
    "build_classifier",
    "convert",
    "describe",
    "detect_format",
    "from_torch_state_dict",
    "read_weights",
    "register",
    "unregister",
]


def __getattr__(name):
    if name in _LAZY:
        importlib.import_module("emonet_tf.weights.api")  # registers the built-in formats (weights/builtin.py)
        value = getattr(importlib.import_module(f"emonet_tf.weights.{_LAZY[name]}"), name)
        globals()[name] = value
        return value
    if not name.startswith("_"):  # a submodule (weights.limits, weights.api, ...), loaded eagerly before
        try:
            return importlib.import_module(f"emonet_tf.weights.{name}")
        except ModuleNotFoundError as err:
            if err.name != f"emonet_tf.weights.{name}":
                raise
    raise AttributeError(f"module 'emonet_tf.weights' has no attribute {name!r}")
