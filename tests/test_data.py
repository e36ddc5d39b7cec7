"""The tf.data pipeline: same decode as serving, (seed, epoch) order, sharding, resume, fail-fast errors."""

import time

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from _training_helpers import make_dataset
from emonet_tf import data, preprocessing
from emonet_tf import preprocessor as preprocessor_module
from emonet_tf.preprocessor import EmoNetPreprocessor


@pytest.fixture(scope="module")
def info(tmp_path_factory):
    builder = make_dataset(str(tmp_path_factory.mktemp("tfds")), videos_per_class=(3, 1), frames_per_video=2)
    return data.inspect_dataset(builder.data_dir, splits=("train", "test"))


def indices(info, **kw):
    base = data._stored_examples(info.builder, "train", with_video_id=False)
    return [int(e[0]) for e in data.ordered_epoch(base, info.num_examples("train"), **kw)]


def test_inspect_reads_local_metadata(info, tmp_path):
    assert info.class_names == ("red", "green", "blue") and info.num_classes == 3
    assert info.has_video_id and info.num_examples("train") == 18 and info.num_examples("test") == 6
    by_name = data.inspect_dataset("tiny_frames", str(info.builder.data_path.parent.parent), splits=("train[:50%]",))
    assert by_name.num_examples("train[:50%]") == 9


def test_bad_datasets_fail_fast_without_download(info, tmp_path):
    start = time.monotonic()
    with pytest.raises(data.DatasetError, match="Unknown dataset 'no_such_dataset_xyz'"):
        data.inspect_dataset("no_such_dataset_xyz", str(tmp_path))
    with pytest.raises(data.DatasetError, match="not prepared"):
        data.inspect_dataset("mnist", str(tmp_path))  # registered, but nothing local: no download attempt
    with pytest.raises(data.DatasetError, match="no split 'validation'"):
        data.inspect_dataset(str(info.builder.data_path), splits=("validation",))
    with pytest.raises(data.DatasetError, match="is empty"):
        data.inspect_dataset(str(info.builder.data_path), splits=("test[:0]",))
    assert time.monotonic() - start < 20
    with pytest.raises(data.DatasetError, match="fewer than one global batch"):
        data.steps_per_epoch(3, 4)


def test_training_images_are_the_serving_preprocessing(info):
    ds = data.train_dataset(info, "train", global_batch_size=4, seed=3, epoch=0)
    images, labels = next(iter(ds))
    order = indices(info, seed=3, epoch=0, global_batch_size=4, shuffle_buffer=16384)[:4]
    raw = list(
        info.builder.as_dataset(split="train", shuffle_files=False, decoders={"image": tfds.decode.SkipDecoding()})
    )
    expected = np.stack([preprocessing.preprocess_image_bytes(raw[i]["image"]).numpy() for i in order])
    np.testing.assert_array_equal(images.numpy(), expected)
    np.testing.assert_array_equal(labels.numpy(), [int(raw[i]["label"]) for i in order])
    assert images.shape == (4, 227, 227, 3) and images.dtype == tf.float32


def test_order_is_a_function_of_seed_and_epoch(info):
    kw = dict(global_batch_size=4, shuffle_buffer=16384)
    a = indices(info, seed=1, epoch=0, **kw)
    assert a == indices(info, seed=1, epoch=0, **kw)
    assert len(a) == 16 and len(set(a)) == 16  # 4 whole batches of 18 examples
    assert a != indices(info, seed=1, epoch=1, **kw)
    assert a != indices(info, seed=2, epoch=0, **kw)
    # Resuming at step 2 yields exactly the rest of the epoch.
    assert indices(info, seed=1, epoch=0, start_step=2, **kw) == a[8:]
    # The feature cache shuffles plain indices and gets the same permutation.
    cached = [int(i) for i in data.ordered_epoch(tf.data.Dataset.range(18), 18, seed=1, epoch=0, **kw)]
    assert cached == a


def test_shards_of_a_step_make_up_the_global_batch(info):
    kw = dict(seed=5, epoch=0, global_batch_size=4, shuffle_buffer=16384)
    full = indices(info, **kw)
    shards = [indices(info, input_context=tf.distribute.InputContext(2, i, 2), **kw) for i in range(2)]
    for step in range(4):
        per_worker = [set(s[2 * step : 2 * step + 2]) for s in shards]
        assert per_worker[0] | per_worker[1] == set(full[4 * step : 4 * step + 4])
        assert not per_worker[0] & per_worker[1]
    ctx = tf.distribute.InputContext(2, 1, 2)
    batches = list(data.train_dataset(info, "train", global_batch_size=4, seed=5, epoch=0, input_context=ctx))
    assert [b[0].shape[0] for b in batches] == [2, 2, 2, 2]


def test_augmentation_is_seeded_and_off_by_default(info):
    kw = dict(global_batch_size=4, seed=2, epoch=0)
    plain = next(iter(data.train_dataset(info, "train", **kw)))[0].numpy()
    aug1 = next(iter(data.train_dataset(info, "train", augment=True, **kw)))[0].numpy()
    aug2 = next(iter(data.train_dataset(info, "train", augment=True, **kw)))[0].numpy()
    np.testing.assert_array_equal(aug1, aug2)
    assert not np.array_equal(plain, aug1)
    assert aug1.min() >= 0 and aug1.max() <= 255 and np.all(aug1 == np.round(aug1))
    # A crop of a solid-colour frame keeps its colour: augmentation does not change what the class looks like.
    np.testing.assert_allclose(aug1.mean(axis=(1, 2)), plain.mean(axis=(1, 2)), atol=12)


def test_eval_dataset_keeps_every_example_in_order(info):
    batches = list(data.eval_dataset(info, "test", batch_size=4, with_video_id=True))
    labels = np.concatenate([b[1].numpy() for b in batches])
    videos = np.concatenate([b[2].numpy() for b in batches])
    assert labels.tolist() == [0, 0, 1, 1, 2, 2]
    assert videos.tolist() == [b"test_red_0"] * 2 + [b"test_green_0"] * 2 + [b"test_blue_0"] * 2


def test_a_new_epoch_or_split_does_not_trace_the_decode_again(info, monkeypatch):
    """The decode and resize are traced once per process and setting; every later dataset calls that graph."""
    traces = []
    real = preprocessing.preprocess_image_bytes

    def counted(*args, **kwargs):
        traces.append(kwargs.get("method"))
        return real(*args, **kwargs)

    monkeypatch.setattr(preprocessing, "preprocess_image_bytes", counted)
    preprocessor_module._traced_image_bytes.cache_clear()
    prep = EmoNetPreprocessor(resize_method="bilinear", antialias=False)
    first = [
        next(iter(data.train_dataset(info, "train", global_batch_size=4, seed=1, epoch=e, preprocessor=prep)))
        for e in (0, 1)
    ]
    assert traces == ["bilinear"]  # traced for epoch 0 only
    evals = [next(iter(data.eval_dataset(info, split, batch_size=4, preprocessor=prep))) for split in ("train", "test")]
    assert traces == ["bilinear"]
    # ... and it is the same preprocessing: the graph called is the untraced function's.
    order = indices(info, seed=1, epoch=1, global_batch_size=4, shuffle_buffer=16384)[:4]
    raw = list(
        info.builder.as_dataset(split="train", shuffle_files=False, decoders={"image": tfds.decode.SkipDecoding()})
    )
    expected = np.stack([real(raw[i]["image"], method="bilinear", antialias=False).numpy() for i in order])
    np.testing.assert_array_equal(first[1][0].numpy(), expected)
    np.testing.assert_array_equal(
        evals[0][0].numpy(), np.stack([real(raw[i]["image"], method="bilinear", antialias=False) for i in range(4)])
    )
    # Another setting is its own graph, traced once too.
    next(iter(data.eval_dataset(info, "test", batch_size=4, resize_method="area")))
    next(iter(data.eval_dataset(info, "train", batch_size=4, resize_method="area")))
    assert traces == ["bilinear", "area"]


def test_a_refused_image_in_a_pipeline_names_the_example():
    ds = tf.data.Dataset.from_tensor_slices([b"\x89PNG\r\n\x1a\n not really"]).enumerate()
    prep = EmoNetPreprocessor()
    ds = ds.map(lambda index, raw: prep.traced_image_bytes(raw, data._item_name("train[:10%]", index)))
    with pytest.raises(tf.errors.InvalidArgumentError) as err:
        next(iter(ds))
    assert "[example 0 of split train[:10%]] [could not be decoded in-graph:]" in err.value.message
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"\[image\] \[could not be decoded in-graph:\]"):
        prep.traced_image_bytes(tf.constant(b"GIF89a"))
