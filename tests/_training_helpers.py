"""Tiny local TFDS datasets for the training tests (prepared on disk, never downloaded)."""

from __future__ import annotations

import os
import socket

import cv2
import numpy as np

#: Visibly different classes: a solid colour or a texture per class.
PATTERNS = ("red", "green", "blue", "stripes")


def frame(pattern: str, rng: np.random.Generator, size=(48, 64)) -> np.ndarray:
    """An RGB uint8 frame of `pattern` with mild noise, so that frames differ."""
    h, w = size
    base = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (30, 40, 220)}
    if pattern in base:
        image = np.broadcast_to(np.asarray(base[pattern], np.float32), (h, w, 3)).copy()
    else:
        stripes = ((np.arange(w) // 4) % 2 * 255).astype(np.float32)
        image = np.broadcast_to(stripes[None, :, None], (h, w, 3)).copy()
    image += rng.normal(0, 12, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


def jpeg(rgb: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95])
    assert ok
    return buf.tobytes()


def make_dataset(
    data_dir: str,
    name: str = "tiny_frames",
    num_classes: int = 3,
    videos_per_class=(3, 1),
    frames_per_video: int = 2,
    seed: int = 0,
    class_names=None,
    empty_test: bool = False,
):
    """Prepares a frames dataset (image JPEG, label, video_id, frame_index) with train/test split by video.

    Returns the builder; its `data_dir` is the builder directory.
    """
    import tensorflow_datasets as tfds

    rng = np.random.default_rng(seed)
    names = list(class_names or PATTERNS[:num_classes])
    splits = {}
    for split, n_videos in zip(("train", "test"), videos_per_class):
        examples = []
        if not (split == "test" and empty_test):
            for v in range(n_videos):
                for c, pattern in enumerate(names):
                    vid = f"{split}_{pattern}_{v}"
                    for f in range(frames_per_video):
                        examples.append(
                            (
                                len(examples),
                                {
                                    "image": jpeg(frame(PATTERNS[c % len(PATTERNS)], rng)),
                                    "label": c,
                                    "video_id": vid,
                                    "frame_index": f,
                                },
                            )
                        )
        splits[split] = examples
    features = tfds.features.FeaturesDict(
        {
            "image": tfds.features.Image(shape=(None, None, 3), encoding_format="jpeg"),
            "label": tfds.features.ClassLabel(names=names),
            "video_id": tfds.features.Text(),
            "frame_index": np.int32,
        }
    )
    return tfds.dataset_builders.store_as_tfds_dataset(
        name=name, version="1.0.0", features=features, split_datasets=splits, data_dir=data_dir, disable_shuffling=True
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def worker_env() -> dict:
    env = dict(os.environ)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (os.path.dirname(os.path.dirname(__file__)), env.get("PYTHONPATH")) if p
    )
    return env
