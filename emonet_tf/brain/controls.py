"""Control encoders through the same calls as EmoNet, and variance partitioning between two feature sets.

A brain or behaviour effect of EmoNet means little until it is set against controls of the same architecture
(Gao, Ajith & Peelen 2025, Communications Biology: the ImageNet AlexNet's layers predict everyday-scene
responses better than EmoNet's fc7/fc8; EmoNet wins on evocative clips):

- :func:`emonet_encoder`: EmoNet from any weight file the library reads (``emonet_tf.EmoNet.from_weights``).
- :func:`imagenet_alexnet`: the ImageNet AlexNet from a ``bvlc_alexnet.npy`` / ``.caffemodel`` file the user
  points at (read by ``emonet_tf.weights``; its fc8 is the 1000-way ImageNet classifier).
- :func:`random_alexnet`: the same architecture with seeded random weights (Glorot-uniform kernels, the Keras
  default, drawn with ``numpy.random.default_rng(seed)``; zero biases), the usual untrained-network control.
- :func:`layer_features`: features of any layer for images from any of them through one call
  (``emonet_tf.EmoNet.activations(images, layer)``), or from any callable ``(images, layer) -> array``.
- :func:`variance_partitioning`: cross-validated R^2 of A, B and A+B with the same folds -> the variance unique
  to A, unique to B, and shared (Lescroart, Stansbury & Gallant 2015, Front. Comput. Neurosci. 9:135;
  de Heer et al. 2017, J. Neurosci. 37:6539).

Importing this module does not import TensorFlow: the encoder builders import ``emonet_tf``'s Keras model on
call; :func:`layer_features` and :func:`variance_partitioning` take numpy arrays and callables.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

__all__ = [
    "emonet_encoder",
    "imagenet_alexnet",
    "random_alexnet",
    "layer_features",
    "VariancePartition",
    "cross_validated_r2",
    "variance_partitioning",
]


# --------------------------------------------------------------------------------------------------------------------
# Encoders
# --------------------------------------------------------------------------------------------------------------------


def emonet_encoder(weights, *, mean=None, **kwargs):
    """EmoNet (an ``emonet_tf.EmoNet``) from a weight file or folder the library reads (``.keras``, MATLAB text
    dump, ``.pth``, ...), or from an ``EmoNetClassifier`` already built. ``mean`` and ``kwargs`` go to
    ``EmoNet.from_weights`` (see docs/weights.md). Raises WeightFormatError naming the file."""
    import emonet_tf

    if isinstance(weights, emonet_tf.EmoNet):
        return weights
    if hasattr(weights, "backbone") and hasattr(weights, "head"):  # an EmoNetClassifier
        return emonet_tf.EmoNet(weights, **kwargs)
    return emonet_tf.EmoNet.from_weights(weights, mean=mean, **kwargs)


def imagenet_alexnet(path, *, mean=None, **kwargs):
    """The ImageNet AlexNet (an ``emonet_tf.EmoNet`` whose fc8 is the 1000-way ImageNet classifier) from the
    ``bvlc_alexnet.npy`` (caffe-tensorflow) or ``bvlc_alexnet.caffemodel`` file at ``path``; ``mean``: the
    ``ilsvrc_2012_mean.binaryproto`` (else the per-channel ImageNet mean). Nothing is downloaded.

    Raises:
        ValueError: the file is not one of the ImageNet formats (an EmoNet file was given by mistake).
        WeightFormatError: the file cannot be read (its message names the file).
    """
    from emonet_tf import weights

    fmt = weights.detect_format(path)
    if fmt not in ("bvlc_npy", "caffemodel"):
        raise ValueError(f"path {path!s}: a {fmt} file, not the ImageNet AlexNet (bvlc_alexnet.npy / .caffemodel)")
    return emonet_encoder(path, mean=mean, **kwargs)


def random_alexnet(seed: int = 0, *, num_classes: int = 20):
    """AlexNet (EmoNet's architecture) with seeded random weights, as an ``emonet_tf.EmoNet``.

    Every kernel is drawn Glorot-uniform (the Keras default initializer: U(-a, a), a = sqrt(6 / (fan_in +
    fan_out)), fans from the kernel's shape) from ``numpy.random.default_rng(seed)``, in layer order; biases are
    zero; the mean image is the default one. The same seed gives the same network in any process, whatever the
    global Keras/TensorFlow seed state (nothing global is touched).
    """
    import emonet_tf

    model = emonet_tf.EmoNetClassifier(num_classes=num_classes)
    rng = np.random.default_rng(seed)
    for w in model.trainable_weights:
        shape = tuple(int(s) for s in w.shape)
        if len(shape) >= 2:
            receptive = int(np.prod(shape[:-2])) if len(shape) > 2 else 1
            fan_in, fan_out = shape[-2] * receptive, shape[-1] * receptive
            limit = np.sqrt(6.0 / (fan_in + fan_out))
            w.assign(rng.uniform(-limit, limit, size=shape).astype(np.float32))
        else:
            w.assign(np.zeros(shape, dtype=np.float32))
    return emonet_tf.EmoNet(model)


def layer_features(encoder, images, layer: str, *, batch_size: int = 32, flatten: bool = True) -> np.ndarray:
    """Features of one layer for a batch of preprocessed images, from any encoder through one call.

    Args:
        encoder: an ``emonet_tf.EmoNet`` (EmoNet, :func:`imagenet_alexnet`, :func:`random_alexnet`; its
            ``activations(images, layer)`` is called), any object with that method, or a callable
            ``(images, layer) -> array``.
        images: float array [n_images, 227, 227, 3], preprocessed (``encoder.preprocessor.load_image`` for files).
        layer: a layer name of the encoder ("conv1" ... "relu7", "fc8", "softmax").
        batch_size: images per call (memory: conv1 of 32 images is about 34 MB).
        flatten: reshape each image's features to one vector ([n_images, n_features]); False keeps NHWC.

    Returns:
        float32 array [n_images, n_features] (or the layer's own shape with ``flatten=False``).

    Raises:
        ValueError: images not a 4-D batch, encoder without ``activations`` and not callable, or the encoder's
            output does not have one row per image. An unknown layer raises the encoder's own ValueError.
    """
    x = np.asarray(images)
    if x.ndim != 4:
        raise ValueError(f"images must be a batch [n_images, height, width, 3], got shape {x.shape}")
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    fn: Callable[[Any, str], Any]
    if hasattr(encoder, "activations"):
        fn = encoder.activations
    elif callable(encoder):
        fn = encoder
    else:
        raise ValueError(f"encoder must have an activations(images, layer) method or be callable, got {type(encoder)}")
    parts = []
    for start in range(0, x.shape[0], int(batch_size)):
        chunk = x[start : start + int(batch_size)].astype(np.float32)
        out = np.asarray(fn(chunk, layer))
        if out.shape[0] != chunk.shape[0]:
            raise ValueError(f"encoder returned {out.shape[0]} rows for {chunk.shape[0]} images (layer {layer!r})")
        parts.append(out)
    feats = np.concatenate(parts) if parts else np.zeros((0,), np.float32)
    return feats.reshape(feats.shape[0], -1) if flatten else feats


# --------------------------------------------------------------------------------------------------------------------
# Variance partitioning
# --------------------------------------------------------------------------------------------------------------------


def _default_estimator():
    from sklearn.linear_model import RidgeCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), RidgeCV(alphas=np.logspace(-2, 5, 15), alpha_per_target=True))


def _as_2d(a, name, n=None):
    x = np.asarray(a, dtype=float)
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2:
        raise ValueError(f"{name} must be [n_samples, n_columns], got shape {x.shape}")
    if n is not None and x.shape[0] != n:
        raise ValueError(f"{name} has {x.shape[0]} samples, the target has {n}")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{name} holds NaN or infinite values")
    return x


def _splits(cv, x, y, groups):
    splits = list(cv.split(x, y, groups))
    tested = np.zeros(x.shape[0], dtype=int)
    for train, test in splits:
        if np.intersect1d(train, test).size:
            raise ValueError("cv yields a fold whose training and test samples overlap")
        tested[test] += 1
    if np.any(tested > 1):
        raise ValueError("cv tests some samples more than once; use a splitter whose test folds partition the data")
    if not np.any(tested):
        raise ValueError("cv yields no test samples")
    return splits, tested == 1


def cross_validated_r2(features, target, *, cv, groups=None, estimator=None, splits=None) -> np.ndarray:
    """Out-of-fold R^2 of each target column, predicted from ``features``.

    Every sample is predicted by the model fit on the folds that do not hold it; R^2 (``sklearn.metrics.r2_score``,
    ``multioutput="raw_values"``) is computed once on the pooled out-of-fold predictions of all tested samples.
    Default estimator: ``StandardScaler`` + ``RidgeCV`` (alphas 1e-2 .. 1e5, one alpha per target), refit in each
    fold, so the alpha is chosen on training data only.

    Args:
        features: [n_samples, n_features]; target: [n_samples] or [n_samples, n_targets].
        cv: an sklearn splitter (``LeaveOneGroupOut``, ``GroupKFold``, a blocked splitter, ...) whose test folds
            do not overlap; groups: passed to ``cv.split``.
        estimator: any sklearn regressor (cloned per fold).
        splits: optional list of (train, test) index arrays to use instead of ``cv.split`` (how
            :func:`variance_partitioning` gives A, B and A+B the same folds).

    Returns:
        float array [n_targets].
    """
    from sklearn.base import clone
    from sklearn.metrics import r2_score

    y = _as_2d(target, "target")
    x = _as_2d(features, "features", y.shape[0])
    if splits is None:
        splits, tested = _splits(cv, x, y, groups)
    else:
        tested = np.zeros(x.shape[0], dtype=bool)
        for _, test in splits:
            tested[test] = True
    base = estimator if estimator is not None else _default_estimator()
    pred = np.zeros_like(y)
    for train, test in splits:
        model = clone(base).fit(x[train], y[train])
        pred[test] = np.asarray(model.predict(x[test])).reshape(len(test), -1)
    return np.atleast_1d(r2_score(y[tested], pred[tested], multioutput="raw_values"))


@dataclass
class VariancePartition:
    """Result of :func:`variance_partitioning`; every field is a float array [n_targets] of R^2 units.

    Attributes:
        r2_a, r2_b, r2_ab: cross-validated R^2 of A alone, B alone, and A and B side by side.
        unique_a: r2_ab - r2_b, the variance only A explains.
        unique_b: r2_ab - r2_a, the variance only B explains.
        shared: r2_a + r2_b - r2_ab, the variance both explain.
    """

    r2_a: np.ndarray
    r2_b: np.ndarray
    r2_ab: np.ndarray
    unique_a: np.ndarray
    unique_b: np.ndarray
    shared: np.ndarray


def variance_partitioning(features_a, features_b, target, *, cv, groups=None, estimator=None) -> VariancePartition:
    """Variance of the target unique to feature set A, unique to B, and shared, from cross-validated R^2.

    R^2 of A, of B and of the concatenation [A, B] are computed by :func:`cross_validated_r2` with the same folds
    (``cv.split`` is called once and the folds reused), then ``unique_a = R2_AB - R2_B``, ``unique_b = R2_AB -
    R2_A``, ``shared = R2_A + R2_B - R2_AB`` (set-theoretic partitioning: Lescroart et al. 2015; de Heer et al.
    2017). Cross-validated estimates can make a part slightly negative (noise, or over-fitting of the joint
    model); they are reported as they are, not clipped.

    Args:
        features_a: [n_samples, n_a] (e.g. EmoNet fc7 on the TR grid); features_b: [n_samples, n_b] (e.g. the
            ImageNet AlexNet's fc7); target: [n_samples] or [n_samples, n_voxels].
        cv, groups, estimator: as :func:`cross_validated_r2`. Scale both sets alike (the default estimator
            standardises every column), or one set's ridge penalty will favour it.

    Raises:
        ValueError: sample counts differ, non-finite values, or folds that overlap.
    """
    y = _as_2d(target, "target")
    a = _as_2d(features_a, "features_a", y.shape[0])
    b = _as_2d(features_b, "features_b", y.shape[0])
    ab = np.hstack([a, b])
    splits, _ = _splits(cv, ab, y, groups)
    r2 = {
        name: cross_validated_r2(x, y, cv=None, estimator=estimator, splits=splits)
        for name, x in (("a", a), ("b", b), ("ab", ab))
    }
    return VariancePartition(
        r2_a=r2["a"],
        r2_b=r2["b"],
        r2_ab=r2["ab"],
        unique_a=r2["ab"] - r2["b"],
        unique_b=r2["ab"] - r2["a"],
        shared=r2["a"] + r2["b"] - r2["ab"],
    )
