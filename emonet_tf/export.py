"""Deployable forms of EmoNet: a SavedModel with a bytes signature, a .keras file, and TFLite.

Why `tf.Module` + `tf.saved_model.save` and not Keras' `model.export()`: Keras 3's exporter stores
every weight twice (keras-team/keras#23553; 456 MB instead of 228 MB for EmoNet). Tracking the
Keras model on a plain `tf.Module` stores each variable once (measured: 228 MB, see
docs/serving.md).

The SavedModel needs neither emonet_tf nor Keras to run: `tf.saved_model.load(dir)` alone serves it.

Signatures:
  * `serving_default(images_bytes: tf.string [N])` -> probabilities [N, C], logits [N, C],
    top_classes (tf.string [N, k]), top_scores [N, k] (+ fc7, relu7, fc8 with include_features).
    The input follows TF Serving's `*_bytes` convention, so its REST API accepts {"b64": ...}.
    Decoding and resizing are the model's own `EmoNetPreprocessor` (`model.preprocessor`: the resize
    method and antialias it was trained with), the same ops as the training pipeline: the decoder contract's in-graph path (PIL's pixels for JPEG, PNG, single-image
    GIF, BMP and still WebP; the variants TF cannot decode exactly, e.g. CMYK JPEG or colour-table BMP,
    animated GIFs, and sizes of 0 or over preprocessing.MAX_IMAGE_PIXELS from the header, are refused
    before decoding with the item's index and the reason; see docs/preprocessing.md). An image that is
    already 227 x 227 is not resampled, so the model sees exactly the decoded pixels.
  * `serve_preprocessed(images: float32 [N, 227, 227, 3], RGB 0-255, mean NOT subtracted)` -> the
    same outputs, for clients that decode and resize themselves.

The class names are stored three ways, so that any server can read them: the `top_classes` output,
the file `assets/class_names.txt` (one name per line, output order), and the variable
`class_names` of the loaded object. The preprocessing settings likewise: `assets/preprocessing.json`,
the string variable `preprocessing_config` (JSON) of the loaded object, and `assets.extra/emonet_export.json`;
`read_preprocessor(export_dir)` returns them as an `EmoNetPreprocessor`. A TFLite file (which takes
preprocessed images) gets the same facts in a `<file>.json` next to it.
"""

from __future__ import annotations

import json
import os
import tempfile
from typing import Optional

import keras
import numpy as np
import tensorflow as tf

from emonet_tf import preprocessing
from emonet_tf.classifier import EmoNetClassifier
from emonet_tf.image_spec import IMAGE_SIZE
from emonet_tf.preprocessor import EmoNetPreprocessor, resolve

SERVING_DEFAULT = "serving_default"
SERVE_PREPROCESSED = "serve_preprocessed"
BYTES_INPUT = "images_bytes"
PREPROCESSED_INPUT = "images"
CLASS_NAMES_ASSET = "class_names.txt"
PREPROCESSING_ASSET = "preprocessing.json"
METADATA_FILE = "emonet_export.json"
TOP_K = 5
_PREPROCESSED_SHAPE = [None, IMAGE_SIZE, IMAGE_SIZE, 3]


def looks_like_image(data: tf.Tensor) -> tf.Tensor:
    """True when scalar bytes start like a format the bytes signature decodes (JPEG, PNG, GIF, BMP, WebP).

    Graph ops only. Some variants of these formats are still refused when decoded (see
    `emonet_tf.preprocessing.in_graph_refusal`).
    """
    code = preprocessing.image_format(data)
    return tf.reduce_any(tf.equal(code, preprocessing.IN_GRAPH_FORMAT_CODES))


class EmoNetServingModule(tf.Module):
    """What the SavedModel holds: the Keras model's variables, class names, preprocessing and two signatures.

    `resize_method` / `antialias` override the model's preprocessor (None keeps it): a served model
    should resize as it was trained, so overriding is for deliberate experiments only.
    """

    def __init__(
        self,
        model: EmoNetClassifier,
        include_features: bool = False,
        resize_method: Optional[str] = None,
        top_k: int = TOP_K,
        antialias: Optional[bool] = None,
    ):
        super().__init__(name="emonet_serving")
        self.model = model
        self.preprocessor: EmoNetPreprocessor = resolve(getattr(model, "preprocessor", None), resize_method, antialias)
        self.include_features = bool(include_features)
        names = [str(c) for c in model.class_names]
        self.k = int(min(top_k, len(names)))
        self.class_names = tf.Variable(names, trainable=False, dtype=tf.string, name="class_names")
        self.preprocessing_config = tf.Variable(
            self.preprocessor.to_json(), trainable=False, dtype=tf.string, name="preprocessing_config"
        )
        backbone = model.backbone
        if include_features:
            missing = [n for n in ("fc7", "relu7") if n not in {l.name for l in backbone.layers}]
            if missing:
                raise ValueError(
                    f"include_features needs the backbone to reach relu7; it ends at {backbone.output_layer!r}"
                )
            # One pass through the backbone that exposes fc7 and relu7 (no second forward pass).
            self._features = keras.Model(
                backbone.input,
                {
                    "fc7": backbone.get_layer("fc7").output,
                    "relu7": backbone.get_layer("relu7").output,
                    "last": backbone.output,
                },
            )
        self.serve_preprocessed = tf.function(
            self._serve_preprocessed,
            input_signature=[tf.TensorSpec(_PREPROCESSED_SHAPE, tf.float32, name=PREPROCESSED_INPUT)],
        )
        self.serve_bytes = tf.function(
            self._serve_bytes, input_signature=[tf.TensorSpec([None], tf.string, name=BYTES_INPUT)]
        )

    def _outputs(self, images: tf.Tensor) -> dict[str, tf.Tensor]:
        images = tf.convert_to_tensor(images, tf.float32)
        extra = {}
        if self.include_features:
            feats = self._features(images, training=False)
            logits = self.model.head(feats["last"], training=False)
            extra = {"fc7": feats["fc7"], "relu7": feats["relu7"], "fc8": logits}
        else:
            logits = self.model.head(self.model.backbone(images, training=False), training=False)
        logits = tf.cast(logits, tf.float32)
        probabilities = tf.nn.softmax(logits, axis=-1)
        top_scores, top_indices = tf.math.top_k(probabilities, k=self.k)
        outputs = {
            "probabilities": probabilities,
            "logits": logits,
            "top_classes": tf.gather(self.class_names, top_indices),
            "top_scores": top_scores,
        }
        outputs.update(extra)
        return outputs

    def _serve_preprocessed(self, images):
        return self._outputs(images)

    def _serve_bytes(self, images_bytes):
        # An item that cannot be decoded fails with its index and the reason in the message
        # ("images_bytes item 2 could not be decoded in-graph: ...").
        count = tf.shape(images_bytes)[0]
        images = tf.map_fn(
            lambda args: self.preprocessor.preprocess_image_bytes(args[1], what=["images_bytes item", args[0]]),
            (tf.range(count), images_bytes),
            fn_output_signature=tf.TensorSpec([preprocessing.IMAGE_SIZE, preprocessing.IMAGE_SIZE, 3], tf.float32),
        )
        return self._outputs(images)


def _dir_size(path: str) -> int:
    return sum(os.path.getsize(os.path.join(root, f)) for root, _, files in os.walk(path) for f in files)


def export_saved_model(
    model: EmoNetClassifier,
    export_dir: str,
    include_features: bool = False,
    resize_method: Optional[str] = None,
    antialias: Optional[bool] = None,
) -> str:
    """Writes a SavedModel with the `serving_default` (bytes) and `serve_preprocessed` signatures.

    The bytes signature preprocesses with `model.preprocessor` (the settings the model was trained or
    saved with; the default contract is MATLAB's imresize, identical to `EmoNet.predict_images`).
    `resize_method` / `antialias` override it (None keeps the model's), e.g. "bicubic" (antialiased,
    cheaper, 0.15 grey levels off MATLAB on average). Returns a one-line summary with the size on disk.
    Raises ValueError for an unknown resize method.
    """
    export_dir = os.fspath(export_dir)
    module = EmoNetServingModule(
        model, include_features=include_features, resize_method=resize_method, antialias=antialias
    )
    with tempfile.TemporaryDirectory() as tmp:
        names_file = os.path.join(tmp, CLASS_NAMES_ASSET)
        with open(names_file, "w", encoding="utf-8") as f:
            f.write("\n".join(model.class_names) + "\n")
        module.class_names_file = tf.saved_model.Asset(names_file)
        preprocessing_file = os.path.join(tmp, PREPROCESSING_ASSET)
        with open(preprocessing_file, "w", encoding="utf-8") as f:
            f.write(module.preprocessor.to_json() + "\n")
        module.preprocessing_file = tf.saved_model.Asset(preprocessing_file)
        signatures = {
            SERVING_DEFAULT: module.serve_bytes.get_concrete_function(),
            SERVE_PREPROCESSED: module.serve_preprocessed.get_concrete_function(),
        }
        tf.saved_model.save(module, export_dir, signatures=signatures)
    # Facts about the export for humans and tools (TF Serving ignores assets.extra).
    extra = os.path.join(export_dir, "assets.extra")
    os.makedirs(extra, exist_ok=True)
    metadata = {
        "model": "EmoNet (Kragel et al. 2019)",
        "class_names": list(model.class_names),
        "resize_method": module.preprocessor.resize_method,
        "preprocessing": module.preprocessor.get_config(),
        "mean_image": _mean_facts(model),
        "include_features": bool(include_features),
        "top_k": module.k,
        "signatures": {SERVING_DEFAULT: BYTES_INPUT, SERVE_PREPROCESSED: PREPROCESSED_INPUT},
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
    }
    with open(os.path.join(extra, METADATA_FILE), "w", encoding="utf-8") as f:
        json.dump(metadata, f, indent=2)
    size = _dir_size(export_dir)
    return (
        f"SavedModel {export_dir}: {size / 1e6:.1f} MB, {model.count_params():,} parameters, signatures "
        f"{SERVING_DEFAULT}({BYTES_INPUT}: string[N]) and {SERVE_PREPROCESSED}({PREPROCESSED_INPUT}: "
        f"float32[N,{IMAGE_SIZE},{IMAGE_SIZE},3]), preprocessing: {module.preprocessor.describe()}"
        + (", features fc7/relu7/fc8" if include_features else "")
    )


def _mean_facts(model: EmoNetClassifier) -> dict:
    """Where the mean image is and its per-channel averages, for humans reading the metadata."""
    mean = np.asarray(model.backbone.get_layer("zerocenter").mean)
    return {
        "where": "inside the model: layer 'zerocenter' subtracts it (MATLAB's imageInputLayer 'zerocenter'); "
        "clients send 0-255 RGB",
        "shape": list(mean.shape),
        "channel_means_rgb": [round(float(v), 4) for v in mean.reshape(-1, 3).mean(axis=0)],
    }


def read_preprocessor(export_dir: str) -> EmoNetPreprocessor:
    """The `EmoNetPreprocessor` a SavedModel written by `export_saved_model` serves with (its asset file).

    Raises FileNotFoundError naming the file for a folder without it (not a SavedModel of emonet_tf, or
    one written before the preprocessing was saved), ValueError for settings this version does not know.
    """
    path = os.path.join(os.fspath(export_dir), "assets", PREPROCESSING_ASSET)
    with open(path, encoding="utf-8") as f:
        return EmoNetPreprocessor.from_json(f.read())


def export_keras(model: EmoNetClassifier, path: str) -> str:
    """Saves the model as a native Keras file (the `.keras` suffix is required by Keras 3)."""
    path = os.fspath(path)
    if not path.endswith(".keras"):
        raise ValueError(f"{path}: a Keras model file must end with .keras")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    model.save(path)
    return f"Keras model {path}: {os.path.getsize(path) / 1e6:.1f} MB"


class _TFLiteModule(tf.Module):
    """Numeric outputs only (no strings), from preprocessed images: what TFLite runtimes handle everywhere."""

    def __init__(self, model: EmoNetClassifier):
        super().__init__(name="emonet_tflite")
        self.model = model
        # The converter finds variable values through the tf.Variables tracked by this object; it does
        # not see through Keras 3 variables and would write garbage weights (measured on TF 2.21).
        self.tf_variables = [v.value for v in model.variables]

    @tf.function(input_signature=[tf.TensorSpec([1, IMAGE_SIZE, IMAGE_SIZE, 3], tf.float32, name=PREPROCESSED_INPUT)])
    def serve(self, images):
        logits = tf.cast(self.model.head(self.model.backbone(images, training=False), training=False), tf.float32)
        return {"probabilities": tf.nn.softmax(logits, axis=-1), "logits": logits}


def export_tflite(
    model: EmoNetClassifier, path: str, check_image: Optional[np.ndarray] = None, atol: float = 1e-4
) -> str:
    """Converts the preprocessed-input path (float32 [1, 227, 227, 3], 0-255) to a float32 TFLite file.

    `<path>.json` (`tflite_sidecar_path`) receives the class names and `model.preprocessor`'s settings,
    which a client must apply before calling the file.

    No quantization: the outputs then match the TF model within float round-off. When `check_image`
    (227 x 227 x 3, 0-255) is given, the TFLite interpreter's probabilities are compared with the
    Keras model's and a mismatch above `atol` raises. The class names are not in the file; they are
    in the sidecar JSON, the summary and the model's `class_names`.
    """
    path = os.fspath(path)
    module = _TFLiteModule(model)
    concrete = module.serve.get_concrete_function()
    converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete], module)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    flatbuffer = converter.convert()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "wb") as f:
        f.write(flatbuffer)
    # The flatbuffer holds no strings: class names and the preprocessing the client must apply go beside it.
    with open(tflite_sidecar_path(path), "w", encoding="utf-8") as f:
        json.dump(
            {
                "class_names": list(model.class_names),
                "preprocessing": model.preprocessor.get_config(),
                "input": f"float32[1,{IMAGE_SIZE},{IMAGE_SIZE},3], RGB 0-255, mean not subtracted",
            },
            f,
            indent=2,
        )
    summary = (
        f"TFLite {path}: {len(flatbuffer) / 1e6:.1f} MB, input float32[1,{IMAGE_SIZE},{IMAGE_SIZE},3] 0-255 "
        f"preprocessed with: {model.preprocessor.describe()} (class names and preprocessing in "
        f"{tflite_sidecar_path(path)})"
    )
    if check_image is not None:
        image = np.asarray(check_image, np.float32)[None]
        got = tflite_predict(path, image)["probabilities"]
        want = concrete(tf.constant(image))["probabilities"].numpy()
        diff = float(np.max(np.abs(got - want)))
        if diff > atol:
            raise AssertionError(f"TFLite probabilities differ from TensorFlow's by {diff:.3g} > {atol}")
        summary += f"; max |TFLite - TF| probability difference {diff:.2g}"
    return summary


def tflite_sidecar_path(path: str) -> str:
    """`emonet.tflite` -> `emonet.tflite.json`: the class names and preprocessing of a TFLite export."""
    return os.fspath(path) + ".json"


def tflite_predict(path: str, images: np.ndarray) -> dict[str, np.ndarray]:
    """Runs a file written by `export_tflite` on preprocessed images (N x 227 x 227 x 3), one at a time."""
    import warnings

    with warnings.catch_warnings():  # TF 2.21 warns that tf.lite moves to ai_edge_litert; it still works
        warnings.simplefilter("ignore", UserWarning)
        interpreter = tf.lite.Interpreter(model_path=os.fspath(path))
    runner = interpreter.get_signature_runner()
    rows: dict[str, list] = {}
    for image in np.asarray(images, np.float32):
        for key, value in runner(**{PREPROCESSED_INPUT: image[None]}).items():
            rows.setdefault(key, []).append(value[0])
    return {key: np.stack(value) for key, value in rows.items()}


def read_class_names(export_dir: str) -> list[str]:
    """The class names of a SavedModel written by `export_saved_model`, from its asset file."""
    with open(os.path.join(os.fspath(export_dir), "assets", CLASS_NAMES_ASSET), encoding="utf-8") as f:
        return [line.rstrip("\n") for line in f if line.strip()]


__all__ = [
    "export_saved_model",
    "export_keras",
    "export_tflite",
    "tflite_predict",
    "read_class_names",
    "read_preprocessor",
    "tflite_sidecar_path",
    "EmoNetServingModule",
    "looks_like_image",
    "SERVING_DEFAULT",
    "SERVE_PREPROCESSED",
]
