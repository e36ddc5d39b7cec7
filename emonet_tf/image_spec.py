"""The network's input image settings, without TensorFlow, so that `emonet --help` and argument errors
answer before TensorFlow is imported (`emonet_tf.preprocessing` re-exports these names).

IMAGE_SIZE: 227, the input side of the 2012 AlexNet as MATLAB ships it (`imageInputLayer([227 227 3])`).
RESIZE_METHODS: "matlab" (a transcription of MATLAB's `imresize` bicubic with antialiasing, the default)
or a `tf.image.resize` method.
"""

IMAGE_SIZE = 227
RESIZE_METHODS = (
    "matlab",
    "bicubic",
    "bilinear",
    "nearest",
    "area",
    "lanczos3",
    "lanczos5",
    "gaussian",
    "mitchellcubic",
)
DEFAULT_RESIZE_METHOD = "matlab"
