"""tf.data input pipelines from any TFDS dataset with an encoded `image` and a ClassLabel `label`.

Design, and why:
- Images are read as encoded bytes (`tfds.decode.SkipDecoding`) and decoded by
  the model's `EmoNetPreprocessor.preprocess_image_bytes`, the in-graph path of the library's decoder
  contract (the SavedModel uses the same op; docs/preprocessing.md). Letting TFDS decode instead
  would use `tf.image.decode_image`: libjpeg's fast IDCT (up to 17 grey levels off PIL/MATLAB at
  JPEG quality 100, 4 at quality 90) and colour-table BMPs returned as grey indices. A record that
  the in-graph decoder refuses (e.g. a CMYK JPEG) stops the pipeline with InvalidArgumentError naming
  the example ("example 17 of split train", stored order) and the reason.
- Every epoch builds its own dataset (its own order, below), as does every split evaluated or cached.
  Their `map` functions call `EmoNetPreprocessor.traced_image_bytes`, one tf.function per setting
  traced once per process, instead of tracing the decoder (AutoGraph, its validation loops) and the
  resize into every new dataset: seconds per epoch and per split on a CPU before (issue 15). With the
  MATLAB resize it runs the host resize in a `tf.numpy_function` (the same pixels as the graph's, a
  6th of its CPU; docs/preprocessing.md), so these pipelines need the Python process that built them.
- The order of an epoch is a pure function of (seed, epoch): the examples are read in their stored
  order (`shuffle_files=False`), numbered, and shuffled by a seeded `Dataset.shuffle` that never
  reshuffles. tf.data's shuffle permutes by count and seed only, so the feature-cache path (which
  shuffles example indices) visits the examples in exactly the same order as the image path, and a
  resumed run skips the batches it already consumed instead of checkpointing the iterator.
- Sharding is by data after the shuffle: input pipeline i of n takes elements i, i+n, ... of each
  global batch, so that every step sees the same global batch whatever the number of workers and
  replicas (the distributed runs reproduce a one-device run). Every worker reads all records, but only
  decodes its own share. Only whole global batches are used (drop remainder), so all replicas
  always run the same number of steps.
- Pre-resized records (the builders' `frame_size=227` configs, e.g. `every5_227`) hold frames already
  resized by a preprocessor, recorded in the dataset's metadata (`info.metadata["pre_resized"]`).
  They go through the same `preprocess_image_bytes`, whose resize of a 227x227 image is the identity
  (every method), so nothing is resized twice; but a model whose preprocessor resizes differently
  would silently get pixels it was not meant to see, so `train_dataset` and `eval_dataset` refuse it
  (`check_preprocessor`, DatasetError naming both settings).
- Augmentation (off by default; the paper used none): random horizontal flip and a random square
  crop of 90-100% of the side, resized back to 227 (bilinear) and rounded like the preprocessing.
  Its randomness is stateless, seeded by (seed, epoch, example index), so it is reproducible and
  resumable too.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Optional

import tensorflow as tf
import tensorflow_datasets as tfds

from emonet_tf import preprocessing
from emonet_tf.preprocessor import EmoNetPreprocessor, resolve

AUTOTUNE = tf.data.AUTOTUNE
MIN_CROP_FRACTION = 0.9


class DatasetError(ValueError):
    """A dataset that cannot be used (unknown, not prepared, wrong features, empty split)."""


@dataclass(frozen=True)
class DatasetInfo:
    """What training needs to know about a dataset, read from its local metadata only."""

    builder: tfds.core.DatasetBuilder
    name: str
    class_names: tuple[str, ...]
    has_video_id: bool
    #: The preprocessor whose resize made the stored frames (pre-resized records), else None.
    pre_resized_with: Optional[EmoNetPreprocessor] = None

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def num_examples(self, split: str) -> int:
        return int(self.builder.info.splits[split].num_examples)


def load_builder(dataset: str, data_dir: Optional[str] = None) -> tfds.core.DatasetBuilder:
    """A prepared TFDS builder from a registered name (with `data_dir`) or a builder directory.

    Never downloads: an unknown or unprepared dataset raises DatasetError at once (tfds.load would
    retry the network for minutes).
    """
    if os.path.isdir(dataset) and tf.io.gfile.exists(os.path.join(dataset, "dataset_info.json")):
        return tfds.builder_from_directory(dataset)
    try:
        builder = tfds.builder(dataset, data_dir=data_dir)
    except tfds.core.registered.DatasetNotFoundError:
        raise DatasetError(
            f"Unknown dataset {dataset!r}: not a registered TFDS name and not a prepared dataset folder "
            "(a folder holding dataset_info.json)"
        ) from None
    if not builder.is_prepared():
        raise DatasetError(
            f"Dataset {dataset!r} is not prepared under data_dir={builder.data_dir!r}; build it first "
            f"(e.g. `tfds build ... --data_dir {data_dir or '~/tensorflow_datasets'}`); nothing is downloaded here"
        )
    return builder


def inspect_dataset(dataset: str, data_dir: Optional[str] = None, splits: tuple[str, ...] = ()) -> DatasetInfo:
    """Loads the builder and checks features and splits; raises DatasetError with one clear message."""
    builder = load_builder(dataset, data_dir)
    features = builder.info.features
    missing = [k for k in ("image", "label") if k not in features]
    if missing:
        raise DatasetError(
            f"Dataset {builder.info.full_name} lacks the feature(s) {missing}; it has {sorted(features.keys())}"
        )
    if not isinstance(features["label"], tfds.features.ClassLabel):
        raise DatasetError(
            f"Dataset {builder.info.full_name}: 'label' must be a ClassLabel, got {type(features['label']).__name__}"
        )
    for split in splits:
        try:  # split expressions such as "train[:90%]" are accepted
            num_examples = builder.info.splits[split].num_examples
        except (KeyError, ValueError, AssertionError):
            raise DatasetError(
                f"Dataset {builder.info.full_name} has no split {split!r}; it has {sorted(builder.info.splits.keys())}"
            ) from None
        if num_examples == 0:
            raise DatasetError(f"Split {split!r} of {builder.info.full_name} is empty")
    return DatasetInfo(
        builder=builder,
        name=builder.info.full_name,
        class_names=tuple(features["label"].names),
        has_video_id="video_id" in features,
        pre_resized_with=pre_resized_with(builder),
    )


#: Key of the dataset metadata that describes pre-resized frames (tfds_builders.video_frames.PRE_RESIZED_KEY).
PRE_RESIZED_KEY = "pre_resized"


def pre_resized_with(builder: tfds.core.DatasetBuilder) -> Optional[EmoNetPreprocessor]:
    """The preprocessor whose resize made the stored frames of a pre-resized dataset, or None (frames at their
    decoded size). Read from `info.metadata["pre_resized"]["preprocessor"]` (metadata.json next to the records);
    unreadable settings raise DatasetError."""
    metadata = builder.info.metadata
    entry = metadata.get(PRE_RESIZED_KEY) if metadata is not None else None
    if not entry:
        return None
    try:
        return EmoNetPreprocessor.from_config(dict(entry["preprocessor"]))
    except (KeyError, TypeError, ValueError) as err:
        raise DatasetError(
            f"Dataset {builder.info.full_name}: unreadable pre-resize settings in its metadata ({err})"
        ) from None


def same_resize(a: EmoNetPreprocessor, b: EmoNetPreprocessor) -> bool:
    """Whether two preprocessors resize alike: same method, and same antialias for the tf.image methods
    (MATLAB's imresize always antialiases when shrinking; the flag does not change its pixels)."""
    if a.resize_method != b.resize_method:
        return False
    return a.resize_method == "matlab" or a.antialias == b.antialias


def check_preprocessor(info: DatasetInfo, preprocessor: EmoNetPreprocessor) -> None:
    """Raises DatasetError when `info`'s frames were pre-resized by a resize other than `preprocessor`'s.

    A 227x227 stored frame is not resized again (the resize of a 227x227 image is the identity), so a
    model whose preprocessor says "bilinear" would be fed frames a MATLAB resize made: refused, naming both.
    """
    made = info.pre_resized_with
    if made is not None and not same_resize(made, preprocessor):
        raise DatasetError(
            f"Dataset {info.name} stores frames already resized to 227x227 ({made.describe()}), but the model's "
            f"preprocessor resizes differently ({preprocessor.describe()}); its inputs would not be what it "
            "expects. Use the records at their decoded size (the config without the _227 suffix) or a model "
            "whose preprocessor matches"
        )


def epoch_seed(seed: int, epoch: int) -> int:
    """The shuffle seed of one epoch: a fixed function of (seed, epoch)."""
    return (int(seed) * 1_000_003 + int(epoch) * 7_919 + 1) % (2**31 - 1)


def steps_per_epoch(num_examples: int, global_batch_size: int) -> int:
    """Whole global batches per epoch (the remainder is dropped, so every replica runs every step)."""
    steps = num_examples // global_batch_size
    if steps == 0:
        raise DatasetError(f"{num_examples} examples are fewer than one global batch of {global_batch_size}")
    return steps


def _input_context(input_context: Optional[tf.distribute.InputContext]) -> tf.distribute.InputContext:
    return input_context or tf.distribute.InputContext(
        num_input_pipelines=1, input_pipeline_id=0, num_replicas_in_sync=1
    )


def _options() -> tf.data.Options:
    options = tf.data.Options()
    options.deterministic = True
    # Sharding is done explicitly (by data, after the seeded shuffle).
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
    return options


def ordered_epoch(
    base: tf.data.Dataset,
    num_examples: int,
    *,
    seed: int,
    epoch: int,
    global_batch_size: int,
    shuffle_buffer: int,
    input_context: Optional[tf.distribute.InputContext] = None,
    start_step: int = 0,
) -> tf.data.Dataset:
    """One epoch of `base` in its (seed, epoch) order, cut to whole global batches, resumed at
    `start_step`, and sharded for this input pipeline (elements still unbatched)."""
    ctx = _input_context(input_context)
    if global_batch_size % ctx.num_replicas_in_sync:
        raise ValueError(f"global batch {global_batch_size} is not divisible by {ctx.num_replicas_in_sync} replicas")
    steps = steps_per_epoch(num_examples, global_batch_size)
    buffer = num_examples if shuffle_buffer <= 0 else min(shuffle_buffer, num_examples)
    ds = base.shuffle(buffer, seed=epoch_seed(seed, epoch), reshuffle_each_iteration=False)
    ds = ds.take(steps * global_batch_size).skip(start_step * global_batch_size)
    if ctx.num_input_pipelines > 1:
        ds = ds.shard(ctx.num_input_pipelines, ctx.input_pipeline_id)
    return ds


def _stored_examples(builder: tfds.core.DatasetBuilder, split: str, with_video_id: bool) -> tf.data.Dataset:
    """(index, image bytes, label[, video_id]) in the stored order of the split."""
    ds = builder.as_dataset(
        split=split,
        shuffle_files=False,
        decoders={"image": tfds.decode.SkipDecoding()},
        read_config=tfds.ReadConfig(try_autocache=False, add_tfds_id=False),
    )

    def pick(index, example):
        out = (index, example["image"], tf.cast(example["label"], tf.int32))
        return out + (example["video_id"],) if with_video_id else out

    return ds.enumerate().map(pick)


def _item_name(split: str, index: tf.Tensor) -> tf.Tensor:
    """What a refused image is called in the pipeline's error: "example <index> of split <split>" (stored order)."""
    return tf.strings.join(["example ", tf.strings.as_string(index), f" of split {split}"])


def augment_image(image: tf.Tensor, seed: tf.Tensor, min_crop_fraction: float = MIN_CROP_FRACTION) -> tf.Tensor:
    """Random flip and a random square crop (min_crop_fraction..1 of the side) resized back; stateless."""
    size = preprocessing.IMAGE_SIZE
    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), num=3)
    min_side = int(round(size * min_crop_fraction))
    side = tf.random.stateless_uniform([], seeds[0], minval=min_side, maxval=size + 1, dtype=tf.int32)
    crop = tf.image.stateless_random_crop(image, tf.stack([side, side, 3]), seed=seeds[1])
    crop = tf.image.resize(crop, (size, size), method="bilinear")
    crop = tf.clip_by_value(tf.round(crop), 0.0, 255.0)
    crop = tf.image.stateless_random_flip_left_right(crop, seed=seeds[2])
    return tf.ensure_shape(crop, [size, size, 3])


def train_dataset(
    info: DatasetInfo,
    split: str,
    *,
    global_batch_size: int,
    seed: int,
    epoch: int,
    start_step: int = 0,
    shuffle_buffer: int = 16384,
    augment: bool = False,
    preprocessor: Optional[EmoNetPreprocessor] = None,
    resize_method: Optional[str] = None,
    antialias: Optional[bool] = None,
    input_context: Optional[tf.distribute.InputContext] = None,
) -> tf.data.Dataset:
    """Per-replica batches (images 227x227x3 float32 0-255, int32 labels) of one training epoch.

    Images are decoded and resized by `preprocessor` (the model's `EmoNetPreprocessor`; the default
    contract when None), with `resize_method` / `antialias` overriding it when given. Pre-resized records
    must have been resized by the same settings (`check_preprocessor`, DatasetError otherwise).
    """
    preprocessor = resolve(preprocessor, resize_method, antialias)
    check_preprocessor(info, preprocessor)
    ctx = _input_context(input_context)
    num_examples = info.num_examples(split)
    base = _stored_examples(info.builder, split, with_video_id=False)
    ds = ordered_epoch(
        base,
        num_examples,
        seed=seed,
        epoch=epoch,
        global_batch_size=global_batch_size,
        shuffle_buffer=shuffle_buffer,
        input_context=ctx,
        start_step=start_step,
    )

    def decode(index, data, label):
        image = preprocessor.traced_image_bytes(data, _item_name(split, index))
        if augment:
            image = augment_image(image, tf.stack([tf.cast(epoch_seed(seed, epoch), tf.int64), index]))
        return image, label

    ds = ds.map(decode, num_parallel_calls=AUTOTUNE, deterministic=True)
    ds = ds.batch(ctx.get_per_replica_batch_size(global_batch_size), drop_remainder=True)
    return ds.prefetch(AUTOTUNE).with_options(_options())


def eval_dataset(
    info: DatasetInfo,
    split: str,
    *,
    batch_size: int = 32,
    preprocessor: Optional[EmoNetPreprocessor] = None,
    resize_method: Optional[str] = None,
    antialias: Optional[bool] = None,
    with_video_id: bool = False,
) -> tf.data.Dataset:
    """(images, labels[, video_ids]) batches of a whole split in stored order, nothing dropped.

    Images: float32 [N, 227, 227, 3], 0-255, by `preprocessor` (see `train_dataset`; pre-resized records
    are checked against it).
    """
    preprocessor = resolve(preprocessor, resize_method, antialias)
    check_preprocessor(info, preprocessor)
    with_video_id = with_video_id and info.has_video_id
    ds = _stored_examples(info.builder, split, with_video_id=with_video_id)

    def decode(index, data, label, *video_id):
        image = preprocessor.traced_image_bytes(data, _item_name(split, index))
        return (image, label) + tuple(video_id)

    ds = ds.map(decode, num_parallel_calls=AUTOTUNE, deterministic=True).batch(batch_size)
    return ds.prefetch(AUTOTUNE).with_options(_options())
