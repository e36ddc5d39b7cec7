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
from emonet_tf.weights.api import apply_weights, build_classifier, convert, describe, detect_format, read_weights
from emonet_tf.weights.errors import WeightFormatError, WeightMismatchError
from emonet_tf.weights.mapping import from_torch_state_dict
from emonet_tf.weights.registry import WeightFormat, register, unregister
from emonet_tf.weights.weightset import FORMATS, WeightSet

__all__ = [
    "FORMATS", "WeightFormat", "WeightFormatError", "WeightMismatchError", "WeightSet", "apply_weights",
    "build_classifier", "convert", "describe", "detect_format", "from_torch_state_dict", "read_weights", "register",
    "unregister",
]
