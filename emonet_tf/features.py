"""The fc7 (relu7) feature cache: the fast path of the paper's head-only recipe.

With conv1-fc7 frozen, no dropout and no augmentation, fc8 sees the same 4096-d relu7 vector for an
example in every epoch. Computing it once per example and training fc8 on the cache gives the same
updates as the full network at a small fraction of the cost (~50 images/s forward on 2 CPU cores,
versus thousands of head steps per second).

The cache of a split is a folder with `features.npy` (float32, N x 4096, stored order),
`labels.npy`, optional `video_ids.npy` and `progress.json`. It is filled in stored order and
`progress.json` records how many rows are done after every batch, so an interrupted build resumes
where it stopped. A fingerprint of the backbone weights, the dataset and the preprocessing guards
against reusing a stale cache: a mismatch rebuilds it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import weakref
from typing import Optional

import numpy as np
import tensorflow as tf

from emonet_tf import data as data_lib
from emonet_tf.backbone import AlexNetBackbone
from emonet_tf.image_spec import IMAGE_SIZE
from emonet_tf.preprocessor import EmoNetPreprocessor

log = logging.getLogger(__name__)

FEATURES = "features.npy"
LABELS = "labels.npy"
VIDEO_IDS = "video_ids.npy"
VIDEO_IDS_TXT = "video_ids.txt"
PROGRESS = "progress.json"


def _read_video_ids(cache_dir: str) -> list[str]:
    path = os.path.join(cache_dir, VIDEO_IDS_TXT)
    if not os.path.exists(path):
        return []
    with open(path, encoding="utf-8") as f:
        return [line.rstrip("\n") for line in f]


def backbone_fingerprint(backbone: AlexNetBackbone) -> str:
    """A short hash of every backbone weight (mean image included) and its output layer."""
    return weights_fingerprint(backbone, salt=backbone.output_layer)


def weights_fingerprint(model, salt: str = "") -> str:
    """A short hash (16 hex digits) of `salt` and every weight of a Keras layer or model, by path and value.

    Two models that compute the same function from the same values hash alike; used by the fc7 cache and
    by `emonet_tf.extract`'s manifest.
    """
    digest = hashlib.sha256(salt.encode())
    for weight in model.weights:
        value = np.asarray(weight.numpy() if hasattr(weight, "numpy") else weight)
        digest.update(weight.path.encode() if hasattr(weight, "path") else weight.name.encode())
        digest.update(np.ascontiguousarray(value, dtype=np.float32).tobytes())
    return digest.hexdigest()[:16]


def cache_fingerprint(
    backbone_hash: str, info: data_lib.DatasetInfo, split: str, preprocessor: EmoNetPreprocessor, compute_dtype: str
) -> str:
    """What the cached features depend on: weights, dataset split and size, every preprocessing setting, dtype."""
    key = json.dumps(
        [backbone_hash, info.name, split, info.num_examples(split), preprocessor.get_config(), compute_dtype],
        sort_keys=True,
    )
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def _read_progress(cache_dir: str) -> Optional[dict]:
    path = os.path.join(cache_dir, PROGRESS)
    if not os.path.exists(path):
        return None
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _write_progress(cache_dir: str, progress: dict) -> None:
    tmp = os.path.join(cache_dir, PROGRESS + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(progress, f)
    os.replace(tmp, os.path.join(cache_dir, PROGRESS))


#: backbone -> its traced forward pass (`fc7_function`); weak, so a dropped model frees its function.
_FC7_FUNCTIONS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def fc7_function(backbone: AlexNetBackbone) -> tf.types.experimental.ConcreteFunction:
    """The backbone's forward pass (images float32 [batch, 227, 227, 3] -> float32 [batch, D]) as one
    concrete function, traced once per backbone for any batch size.

    The cache of every split reuses it, and the last, smaller batch of a split is not traced again (a
    plain tf.function traced every new batch size: a second trace of the whole backbone, seconds on a CPU).
    """
    extract = _FC7_FUNCTIONS.get(backbone)
    if extract is None:
        model = weakref.ref(backbone)  # the cached function must not keep its key alive

        def forward(x):
            return tf.cast(model()(x, training=False), tf.float32)

        spec = tf.TensorSpec([None, IMAGE_SIZE, IMAGE_SIZE, 3], tf.float32)
        extract = _FC7_FUNCTIONS[backbone] = tf.function(forward).get_concrete_function(spec)
    return extract


def build_feature_cache(
    backbone: AlexNetBackbone,
    info: data_lib.DatasetInfo,
    split: str,
    cache_dir: str,
    *,
    fingerprint: str,
    batch_size: int = 32,
    preprocessor: Optional[EmoNetPreprocessor] = None,
    stop_after_batches: Optional[int] = None,
) -> str:
    """Fills (or resumes) the cache of `split` in `cache_dir`; returns `cache_dir`.

    Images go through `preprocessor` (the model's `EmoNetPreprocessor`; the default contract when None).

    stop_after_batches: stop early after that many new batches (used to test resuming).
    """
    os.makedirs(cache_dir, exist_ok=True)
    num_examples = info.num_examples(split)
    dim = int(backbone.output.shape[-1])
    progress = _read_progress(cache_dir)
    if (
        progress
        and progress.get("fingerprint") == fingerprint
        and progress.get("num_examples") == num_examples
        and os.path.exists(os.path.join(cache_dir, FEATURES))
    ):
        done = int(progress["done"])
        if done >= num_examples:
            return cache_dir
        features = np.load(os.path.join(cache_dir, FEATURES), mmap_mode="r+")
        labels = np.load(os.path.join(cache_dir, LABELS), mmap_mode="r+")
        video_ids = _read_video_ids(cache_dir)[:done]
        log.info("Resuming the feature cache of %s at %d/%d", split, done, num_examples)
    else:
        done = 0
        features = np.lib.format.open_memmap(
            os.path.join(cache_dir, FEATURES), mode="w+", dtype=np.float32, shape=(num_examples, dim)
        )
        labels = np.lib.format.open_memmap(
            os.path.join(cache_dir, LABELS), mode="w+", dtype=np.int32, shape=(num_examples,)
        )
        video_ids = []
        _write_progress(cache_dir, {"fingerprint": fingerprint, "num_examples": num_examples, "done": 0, "dim": dim})
    with_video_id = info.has_video_id
    ds = data_lib.eval_dataset(
        info, split, batch_size=batch_size, preprocessor=preprocessor, with_video_id=with_video_id
    )
    # Rows are written in whole batches, so `done` is a multiple of batch_size unless complete.
    ds = ds.skip(done // batch_size)
    ids_file = open(os.path.join(cache_dir, VIDEO_IDS_TXT), "w", encoding="utf-8") if with_video_id else None
    if ids_file:
        ids_file.writelines(v + "\n" for v in video_ids)
    # The iterator first: its prefetch decodes the first batches while the forward pass is traced.
    batches = iter(ds)
    extract = fc7_function(backbone)
    new_batches = 0
    for batch in batches:
        images, batch_labels = batch[0], batch[1]
        n = int(batch_labels.shape[0])
        features[done : done + n] = extract(images).numpy()
        labels[done : done + n] = batch_labels.numpy()
        if ids_file:
            ids = [v.decode("utf-8") for v in batch[2].numpy()]
            video_ids.extend(ids)
            ids_file.writelines(v + "\n" for v in ids)
            ids_file.flush()
        done += n
        features.flush()
        labels.flush()
        _write_progress(cache_dir, {"fingerprint": fingerprint, "num_examples": num_examples, "done": done, "dim": dim})
        new_batches += 1
        if stop_after_batches is not None and new_batches >= stop_after_batches and done < num_examples:
            if ids_file:
                ids_file.close()
            return cache_dir
    if ids_file:
        ids_file.close()
        np.save(os.path.join(cache_dir, VIDEO_IDS), np.asarray(video_ids, dtype=str))
    log.info("Feature cache of %s complete: %d x %d in %s", split, num_examples, dim, cache_dir)
    return cache_dir


def is_complete(cache_dir: str, fingerprint: str) -> bool:
    progress = _read_progress(cache_dir)
    return (
        bool(progress)
        and progress.get("fingerprint") == fingerprint
        and int(progress["done"]) >= int(progress["num_examples"])
    )


def load_cache(cache_dir: str) -> tuple[np.ndarray, np.ndarray, Optional[np.ndarray]]:
    """(features memmap N x D, labels N, video ids N or None) of a complete cache."""
    features = np.load(os.path.join(cache_dir, FEATURES), mmap_mode="r")
    labels = np.load(os.path.join(cache_dir, LABELS))
    path = os.path.join(cache_dir, VIDEO_IDS)
    video_ids = np.load(path) if os.path.exists(path) else None
    return features, labels, video_ids


def _file_identity(stat: os.stat_result) -> tuple[int, int, int, int]:
    """What changes when a file is replaced (device, inode) or rewritten (size, modification time)."""
    return stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns


class CacheRows:
    """Reads rows of a cache's `features.npy` with plain file reads, by index, in any order.

    Why not the memory map of `load_cache`: `tf.numpy_function` keeps its Python function (and what it
    holds) alive for the life of the process, and training builds one dataset per epoch. With a map in
    the function, every epoch mapped the whole file again and kept it: at the corpus's size (1.8 GB of
    train features) training for 10 epochs reported 18.8 GiB resident (the same file pages, counted
    once per map) and held 10 maps. Reads go through the page cache, which the kernel can reclaim, and
    the reader holds no open file between calls.

    Args:
      path: a 2-D float32 `.npy` file (C order), as written by `build_feature_cache`.

    Raises:
      ValueError: the file is not a 2-D C-order float32 array (the message names the file).
    """

    def __init__(self, path: str):
        with open(path, "rb") as f:
            try:
                version = np.lib.format.read_magic(f)
                read_header = (
                    np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
                )
                shape, fortran, dtype = read_header(f)
            except ValueError as e:
                raise ValueError(f"{path}: not a .npy file ({e})") from None
            offset = f.tell()
            self._identity = _file_identity(os.fstat(f.fileno()))
        if len(shape) != 2 or dtype != np.float32 or (fortran and shape[0] > 1):
            raise ValueError(f"{path}: expected a 2-D C-order float32 array, found {dtype} {shape}")
        self.path, self.shape, self.offset = path, tuple(int(n) for n in shape), int(offset)
        self.row_bytes = self.shape[1] * 4

    def __call__(self, rows: np.ndarray) -> np.ndarray:
        """float32 [len(rows), D]: the rows at `rows` (int indices, 0 <= row < N), in the order given.

        Raises:
          TypeError: `rows` are not integers (floats, booleans, strings).
          IndexError: a row outside [0, N).
          OSError: the file is shorter than its header says (truncated), or was replaced or rewritten
            since this reader read its header (a cache rebuilt while it is read); the message names the file.
        """
        rows = np.asarray(rows)
        if rows.size and rows.dtype.kind not in "iu":
            raise TypeError(f"{self.path}: row indices must be integers, got {rows.dtype}")
        rows = rows.astype(np.int64, copy=False).reshape(-1)
        if rows.size and (rows.min() < 0 or rows.max() >= self.shape[0]):
            raise IndexError(
                f"{self.path}: rows outside [0, {self.shape[0]}): {rows[(rows < 0) | (rows >= self.shape[0])][:5]}"
            )
        out = np.empty((rows.size, self.shape[1]), dtype=np.float32)
        with open(self.path, "rb", buffering=0) as f:
            if _file_identity(os.fstat(f.fileno())) != self._identity:
                raise OSError(
                    f"{self.path}: the file was replaced or rewritten after its header was read "
                    "(a feature cache rebuilt while training reads it?); start the run again"
                )
            for i, row in enumerate(rows):
                f.seek(self.offset + int(row) * self.row_bytes)
                if f.readinto(memoryview(out[i]).cast("B")) != self.row_bytes:
                    raise OSError(f"{self.path}: row {int(row)} is past the end of the file (truncated cache?)")
        return out


def cached_train_dataset(
    cache_dir: str,
    *,
    global_batch_size: int,
    seed: int,
    epoch: int,
    start_step: int = 0,
    shuffle_buffer: int = 16384,
    input_context: Optional[tf.distribute.InputContext] = None,
) -> tf.data.Dataset:
    """Per-replica batches (relu7 features, labels) in exactly the order of `data.train_dataset`."""
    read_rows = CacheRows(os.path.join(cache_dir, FEATURES))
    labels = np.load(os.path.join(cache_dir, LABELS))
    num_examples, dim = read_rows.shape
    if labels.shape != (num_examples,):
        raise ValueError(
            f"{os.path.join(cache_dir, LABELS)}: {labels.shape} labels for the {num_examples} rows of "
            f"{os.path.join(cache_dir, FEATURES)}; the cache is damaged (delete the folder to rebuild it)"
        )
    ctx = input_context or tf.distribute.InputContext()
    base = tf.data.Dataset.range(num_examples)
    ds = data_lib.ordered_epoch(
        base,
        num_examples,
        seed=seed,
        epoch=epoch,
        global_batch_size=global_batch_size,
        shuffle_buffer=shuffle_buffer,
        input_context=ctx,
        start_step=start_step,
    )
    ds = ds.batch(ctx.get_per_replica_batch_size(global_batch_size), drop_remainder=True)

    def gather(indices):
        rows = np.asarray(indices)
        return read_rows(rows), labels[rows].astype(np.int32)

    # Plain graph ops around a numpy call: nothing for AutoGraph to convert (it warned on every epoch).
    @tf.autograph.experimental.do_not_convert
    def lookup(indices):
        x, y = tf.numpy_function(gather, [indices], (tf.float32, tf.int32), stateful=False)
        x.set_shape([None, dim])
        y.set_shape([None])
        return x, y

    return ds.map(lookup).prefetch(data_lib.AUTOTUNE).with_options(data_lib._options())
