"""Real EmoNet features of generated images, for the brain tests' planted-truth simulations.

No published weights exist here: the network is `EmoNetClassifier()` built after `keras.utils.set_random_seed(0)`,
and its fc8 (and fc7) are computed for seeded generated images of 20 "categories" (a colour/grating motif each,
with per-image jitter and noise), so that images of a category have similar features, as real photos would.
TensorFlow is imported here (tests only), never by emonet_tf.brain.
"""

import functools

import numpy as np

N_CATEGORIES = 20
SIZE = 227


def generated_images(n_images: int = 112, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(images [n, 227, 227, 3] float32 in 0..255, labels [n] int in 0..19), category k = image index % 20."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n_images) % N_CATEGORIES
    motif = np.random.default_rng(1000 + seed)
    lo = motif.uniform(0, 160, (N_CATEGORIES, 3))
    amp = motif.uniform(40, 95, (N_CATEGORIES, 3))
    freq = motif.uniform(0.5, 8.0, (N_CATEGORIES, 2))
    yy, xx = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32) / SIZE
    images = np.empty((n_images, SIZE, SIZE, 3), np.float32)
    for i, k in enumerate(labels):
        f = freq[k] * rng.uniform(0.85, 1.15, 2)
        phase = rng.uniform(0, 2 * np.pi)
        grating = 0.5 + 0.5 * np.sin(2 * np.pi * (f[0] * xx + f[1] * yy) + phase)
        images[i] = lo[k] + amp[k] * grating[..., None] + rng.normal(0, 12, (SIZE, SIZE, 3))
    return np.clip(images, 0, 255), labels


@functools.lru_cache(maxsize=4)
def emonet_features(n_images: int = 112, seed: int = 0, layer: str = "fc8") -> tuple[np.ndarray, np.ndarray]:
    """(features [n, units] float64 of `layer`, labels [n]) through a seeded EmoNetClassifier (seed 0)."""
    import keras

    import emonet_tf

    keras.utils.set_random_seed(0)
    emonet = emonet_tf.EmoNet(emonet_tf.EmoNetClassifier())
    images, labels = generated_images(n_images, seed)
    feats = np.concatenate([emonet.activations(images[i : i + 32], layer) for i in range(0, n_images, 32)])
    return feats.astype(np.float64), labels
