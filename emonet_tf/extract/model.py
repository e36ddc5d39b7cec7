"""The extraction model: several named layers and the probabilities in one forward pass.

`build_extractor` wraps an `EmoNetClassifier` in a functional Keras model whose outputs are a dict
{layer: tensor}; the layers are looked up by `emonet_tf.inference.layer_output`, the lookup that
`EmoNet.activations` (and so `emonet activations`) uses, so a layer means the same here and there.

On Beam, every worker rebuilds the model from the classifier's config (`create_extractor`, the
`create_model_fn` of Beam's `TFModelHandlerNumpy`) and loads the weights the driver saved with
`save_extractor_weights` (`ModelType.SAVED_WEIGHTS`): any weight format the driver reads (.keras,
MATLAB text dump, .pth ...) reaches the workers as one Keras weights file.
"""

from __future__ import annotations

import json
from typing import Any, Iterable, Optional, Sequence

import keras
import numpy as np
import tensorflow as tf

from emonet_tf.image_spec import IMAGE_SIZE
from emonet_tf.inference import PROBABILITY_LAYERS, layer_output

PROBABILITIES = "probabilities"


def output_names(layers: Sequence[str]) -> list[str]:
    """The outputs an extraction writes: the chosen layers in the order given, then ``probabilities``
    (a probability layer asked for by name is written once, as ``probabilities``). Raises ValueError for
    an empty or repeated layer list."""
    layers = [l.strip() for l in layers]
    if not layers or any(not l for l in layers):
        raise ValueError("layers: name at least one layer, e.g. fc7,fc8")
    if len(set(layers)) != len(layers):
        raise ValueError(f"layers: {','.join(layers)} names a layer twice")
    return [l for l in layers if l not in PROBABILITY_LAYERS and l != PROBABILITIES] + [PROBABILITIES]


def build_extractor(classifier, layers: Sequence[str]) -> keras.Model:
    """A Keras model from preprocessed images (N x 227 x 227 x 3 float32, 0-255) to {name: N x layer shape}.

    Raises ValueError naming the choices for an unknown layer.
    """
    outputs = {}
    for name in output_names(layers):
        outputs[name] = layer_output(classifier, "softmax" if name == PROBABILITIES else name)
    return keras.Model(classifier.input, outputs, name="emonet_extractor")


def create_extractor(classifier_config_json: str, layers: Sequence[str]) -> keras.Model:
    """`build_extractor` on a fresh classifier built from its config (weights random until loaded).

    The `create_model_fn` of the Beam model handler: picklable as a `functools.partial` of this function.
    """
    from emonet_tf.classifier import EmoNetClassifier

    classifier = EmoNetClassifier.from_config(json.loads(classifier_config_json))
    return build_extractor(classifier, layers)


def classifier_config_json(classifier) -> str:
    return json.dumps(classifier.get_config())


def output_shapes(extractor: keras.Model) -> dict[str, list[int]]:
    """{name: per-row shape} of the extractor's outputs (conv layers NHWC without N, e.g. [13, 13, 256])."""
    return {name: [int(d) for d in tensor.shape[1:]] for name, tensor in extractor.output.items()}


def predict_fn(extractor: keras.Model):
    """The extractor as a `tf.function` with a fixed input signature (traced once), cached on the model."""
    fn = getattr(extractor, "_emonet_predict_fn", None)
    if fn is None:
        fn = tf.function(
            lambda x: extractor(x, training=False),
            input_signature=[tf.TensorSpec([None, IMAGE_SIZE, IMAGE_SIZE, 3], tf.float32)],
        )
        extractor._emonet_predict_fn = fn
    return fn


def run_batch(extractor: keras.Model, images: Sequence[np.ndarray]) -> dict[str, np.ndarray]:
    """{name: N x shape float32} for a batch of preprocessed images."""
    out = predict_fn(extractor)(tf.convert_to_tensor(np.stack(images), tf.float32))
    return {name: value.numpy() for name, value in out.items()}


def beam_inference_fn(
    model: keras.Model, batch: Sequence[np.ndarray], inference_args: dict[str, Any], model_id: Optional[str] = None
) -> Iterable[Any]:
    """The `inference_fn` of the Beam TF model handler: one `PredictionResult` per image, its inference a
    dict {name: per-row array}. The example (the 618 KB preprocessed image) is not kept in the result:
    the writer needs only the key and the outputs."""
    from apache_beam.ml.inference.base import PredictionResult

    outputs = run_batch(model, batch)
    names = list(outputs)
    return [PredictionResult(None, {n: outputs[n][i] for n in names}, model_id) for i in range(len(batch))]
