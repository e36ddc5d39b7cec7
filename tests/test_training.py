"""train_and_evaluate end to end on tiny local TFDS datasets: fast path, resume, export, bad input, learnability.

The backbone is built from a fixed seed (init="scratch"): no weight file is needed and every run
starts from the same network, which is what the equality checks below rely on.
"""

import glob
import logging
import os
import time

import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from _training_helpers import make_dataset
from emonet_tf import data, features, training
from emonet_tf.classifier import EmoNetClassifier


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory):
    """3 classes; train 18 frames (9 videos), test 6 frames (3 videos)."""
    return make_dataset(str(tmp_path_factory.mktemp("tfds")), videos_per_class=(3, 1), frames_per_video=2).data_dir


def config(dataset_dir, model_dir, **kw):
    values = dict(
        dataset=str(dataset_dir),
        model_dir=str(model_dir),
        init="scratch",
        global_batch_size=4,
        epochs=2,
        eval_split="",
        export=False,
        log_every=1,
        checkpoint_every=100,
        seed=7,
    )
    values.update(kw)
    return training.TrainConfig(**values)


def head_weights(result):
    return [np.asarray(w) for w in result["model"].head.get_weights()]


def test_feature_cache_gives_the_same_head_as_the_full_network(dataset_dir, tmp_path):
    fast = training.train_and_evaluate(config(dataset_dir, tmp_path / "fast", feature_cache=True))
    full = training.train_and_evaluate(config(dataset_dir, tmp_path / "full", feature_cache=False))
    assert fast["feature_cache"] and not full["feature_cache"]
    assert fast["step"] == full["step"] == 8  # 2 epochs x (18 // 4) steps
    for timing in (fast["timing"], full["timing"]):
        # The steady rate leaves out the first step (its tracing, the first dataset's start): faster.
        assert 0 < timing["first_step_seconds"] < timing["train_seconds"]
        assert np.isfinite(timing["steady_examples_per_second"])
        assert timing["steady_examples_per_second"] > timing["examples_per_second"] > 0
        steady_seconds = timing["train_seconds"] - timing["first_step_seconds"]
        assert timing["steady_examples_per_second"] == pytest.approx(7 * 4 / steady_seconds, rel=1e-6)
    for a, b in zip(head_weights(fast), head_weights(full)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    keras.utils.set_random_seed(7)  # the head moved away from its (seeded) initialization
    start = EmoNetClassifier(class_names=("red", "green", "blue")).head.get_weights()[0]
    assert np.abs(head_weights(fast)[0] - start).max() > 1e-6
    assert fast["train"]["loss"] == pytest.approx(full["train"]["loss"], rel=1e-3)


def test_killed_run_resumes_to_the_same_weights(dataset_dir, tmp_path):
    straight = training.train_and_evaluate(config(dataset_dir, tmp_path / "straight", epochs=3))

    class Killed(RuntimeError):
        pass

    def kill_after_7(step):
        if step == 7:  # mid-epoch 1; the last checkpoint is step 6
            raise Killed()

    resumed_dir = tmp_path / "resumed"
    with pytest.raises(Killed):
        training.train_and_evaluate(
            config(dataset_dir, resumed_dir, epochs=3, checkpoint_every=3), step_hook=kill_after_7
        )
    assert tf.train.latest_checkpoint(str(resumed_dir / "checkpoints")).endswith("ckpt-6")
    resumed = training.train_and_evaluate(config(dataset_dir, resumed_dir, epochs=3, checkpoint_every=3))
    assert resumed["start_step"] == 6 and resumed["step"] == straight["step"] == 12
    for a, b in zip(head_weights(straight), head_weights(resumed)):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    # Different flags on the same model_dir are refused instead of silently mixing two runs.
    with pytest.raises(training.TrainConfigError, match="learning_rate"):
        training.train_and_evaluate(config(dataset_dir, resumed_dir, epochs=3, learning_rate=1e-3))


def test_interrupted_feature_cache_resumes(dataset_dir, tmp_path):
    info = data.inspect_dataset(str(dataset_dir), splits=("train",))
    keras.utils.set_random_seed(0)
    backbone = EmoNetClassifier(class_names=info.class_names).backbone
    kw = dict(fingerprint="f", batch_size=4)
    features.build_feature_cache(backbone, info, "train", str(tmp_path / "a"), stop_after_batches=2, **kw)
    assert not features.is_complete(str(tmp_path / "a"), "f")
    features.build_feature_cache(backbone, info, "train", str(tmp_path / "a"), **kw)
    features.build_feature_cache(backbone, info, "train", str(tmp_path / "b"), **kw)
    assert features.is_complete(str(tmp_path / "a"), "f")
    fa, la, va = features.load_cache(str(tmp_path / "a"))
    fb, lb, vb = features.load_cache(str(tmp_path / "b"))
    np.testing.assert_array_equal(fa, fb)
    np.testing.assert_array_equal(la, lb)
    assert va.tolist() == vb.tolist() and len(va) == 18


def test_fc7_function_is_traced_once_for_every_batch_size(dataset_dir):
    keras.utils.set_random_seed(0)
    backbone = EmoNetClassifier(class_names=("a", "b", "c")).backbone
    extract = features.fc7_function(backbone)
    assert features.fc7_function(backbone) is extract  # the cache of the next split reuses it
    for n in (3, 5):  # a split's last batch is smaller: the same concrete function runs it
        x = tf.random.stateless_uniform([n, 227, 227, 3], (n, 0), maxval=255.0)
        np.testing.assert_allclose(extract(x).numpy(), backbone(x, training=False).numpy(), rtol=1e-5, atol=1e-5)
    import gc
    import weakref

    alive = weakref.ref(backbone)
    del backbone, extract, x
    gc.collect()
    assert alive() is None  # its cached function does not keep a dropped model (and its weights) alive


def test_end_to_end_train_evaluate_export_reload(dataset_dir, tmp_path):
    model_dir = tmp_path / "run"
    result = training.train_and_evaluate(
        config(dataset_dir, model_dir, epochs=1, eval_split="test", export=True, eval_every_epoch=True)
    )
    metrics = result["eval"]
    assert metrics["num_examples"] == 6 and metrics["video"]["num_videos"] == 3
    assert set(metrics["auc"]) == {"red", "green", "blue"} and len(result["epochs"]) == 1
    for path in result["eval_files"].values():
        assert os.path.getsize(path) > 0
    assert glob.glob(str(model_dir / "logs" / "train" / "events.out.tfevents.*"))
    assert glob.glob(str(model_dir / "logs" / "eval" / "events.out.tfevents.*"))

    builder = tfds.builder_from_directory(str(dataset_dir))
    raw = list(builder.as_dataset(split="test", shuffle_files=False, decoders={"image": tfds.decode.SkipDecoding()}))
    images_bytes = tf.constant([r["image"].numpy() for r in raw])
    from emonet_tf.preprocessing import preprocess_image_bytes

    expected = result["model"](tf.stack([preprocess_image_bytes(b) for b in images_bytes]), training=False).numpy()
    # The evaluation saw the same probabilities (fast path: cached features -> fc8 -> softmax).
    np.testing.assert_allclose(metrics["top1"], np.mean(expected.argmax(1) == [int(r["label"]) for r in raw]))
    serving = tf.saved_model.load(result["export"]["saved_model"]).signatures["serving_default"]
    outputs = serving(images_bytes=images_bytes)
    np.testing.assert_allclose(outputs["probabilities"].numpy(), expected, rtol=1e-4, atol=1e-6)
    reloaded = keras.saving.load_model(result["export"]["keras"])
    np.testing.assert_allclose(
        reloaded.predict(tf.stack([preprocess_image_bytes(b) for b in images_bytes]), verbose=0),
        expected,
        rtol=1e-4,
        atol=1e-6,
    )
    assert tuple(reloaded.class_names) == ("red", "green", "blue")


def test_bad_input_fails_before_any_work(dataset_dir, tmp_path):
    from emonet_tf.weights.weightset import LAYERS, expected_shapes, make_weightset

    model_dir = tmp_path / "never"
    start = time.monotonic()
    with pytest.raises(data.DatasetError, match="Unknown dataset"):
        training.train_and_evaluate(config("no_such_dataset_xyz", model_dir, data_dir=str(tmp_path)))
    with pytest.raises(data.DatasetError, match="is empty"):
        training.train_and_evaluate(config(dataset_dir, model_dir, eval_split="test[:0]"))
    assert time.monotonic() - start < 30
    with pytest.raises(training.TrainConfigError, match="frozen backbone"):
        training.train_and_evaluate(config(dataset_dir, model_dir, feature_cache=True, train_layers="all"))
    with pytest.raises(training.TrainConfigError, match="needs a weight file"):
        training.train_and_evaluate(config(dataset_dir, model_dir, init="imagenet"))
    # EmoNet weights (a 20-way head) on 3-class data with the head loaded.
    shapes = expected_shapes(20)
    emonet = make_weightset(
        {n: (np.zeros(shapes[n][0], np.float32), np.zeros(shapes[n][1], np.float32)) for n in LAYERS},
        mean=None,
        class_names=None,
        source="emonet.pth",
        fmt="emonet_py_pth",
    )
    with pytest.raises(training.TrainConfigError, match="20-way head.*3 classes.*--new_head"):
        training.train_and_evaluate(config(dataset_dir, model_dir, init="emonet", weights=emonet))
    assert not os.path.exists(model_dir / "checkpoints") and not os.path.exists(model_dir / "feature_cache")


def test_emonet_init_with_new_head_trains_fc6_to_fc8_only(dataset_dir, tmp_path):
    from emonet_tf.weights.weightset import LAYERS, expected_shapes, make_weightset

    rng = np.random.default_rng(0)
    shapes = expected_shapes(20)
    emonet = make_weightset(
        {n: (rng.normal(0, 0.01, shapes[n][0]).astype(np.float32), np.zeros(shapes[n][1], np.float32)) for n in LAYERS},
        mean=np.array([120.0, 110.0, 100.0]),
        class_names=None,
        source="emonet.pth",
        fmt="emonet_py_pth",
    )
    result = training.train_and_evaluate(
        config(
            dataset_dir,
            tmp_path / "ft",
            init="emonet",
            weights=emonet,
            new_head=True,
            train_layers="fc6-fc8",
            max_steps=2,
            learning_rate=1e-2,
        )
    )
    model = result["model"]
    assert not result["feature_cache"] and model.num_classes == 3
    np.testing.assert_array_equal(model.backbone.get_layer("conv5").get_weights()[0], emonet.layers["conv5"][0])
    assert not np.array_equal(model.backbone.get_layer("fc7").get_weights()[0], emonet.layers["fc7"][0])
    np.testing.assert_array_equal(model.backbone.mean_image.numpy()[0, 0], [120.0, 110.0, 100.0])


@pytest.mark.parametrize("requested,policy", [(True, "mixed_bfloat16"), ("mixed_float16", "mixed_float16")])
def test_mixed_precision_keeps_lrn_and_mean_in_float32(dataset_dir, tmp_path, requested, policy):
    result = training.train_and_evaluate(config(dataset_dir, tmp_path / policy, mixed_precision=requested, max_steps=3))
    assert result["dtype_policy"] == policy
    assert keras.config.dtype_policy().name == "float32"  # restored after the run
    model = result["model"]
    compute = {layer.name: layer.dtype_policy.compute_dtype for layer in model.backbone.layers}
    assert compute["zerocenter"] == compute["norm1"] == compute["norm2"] == "float32"
    assert compute["conv1"] == compute["fc7"] == policy.split("_")[1]
    assert model.head.kernel.dtype == "float32"
    assert np.isfinite(result["train"]["loss"])
    if policy == "mixed_float16":
        images = tf.zeros([1, 227, 227, 3])
        assert model.backbone.get_layer("norm1")(tf.cast(images[..., :1], tf.float16)).dtype == tf.float32


def test_head_only_recipe_learns_visibly_different_classes(tmp_path):
    """Guards against label or preprocessing bugs: 4 classes (red, green, blue, stripes), held-out videos.

    The backbone is a fixed random AlexNet (seeded); the learning rate is raised from the paper's 1e-4
    to 1e-3 so that a few epochs on 48 frames suffice.
    """
    builder = make_dataset(
        str(tmp_path / "tfds"),
        name="learnable_frames",
        num_classes=4,
        videos_per_class=(4, 2),
        frames_per_video=3,
        seed=1,
    )
    result = training.train_and_evaluate(
        config(builder.data_dir, tmp_path / "run", epochs=20, eval_split="test", learning_rate=1e-3, log_every=12)
    )
    assert result["feature_cache"]
    assert result["eval"]["num_examples"] == 24
    assert result["eval"]["top1"] >= 0.9, result["eval"]
    assert result["eval"]["mean_auc"] >= 0.95


@pytest.mark.slow
def test_killed_full_network_run_resumes_to_the_same_weights(dataset_dir, tmp_path):
    """fc6-fc8 on the full network: the checkpoint holds the whole model and the momentum of fc6/fc7."""
    kw = dict(train_layers="fc6-fc8", epochs=1, learning_rate=1e-3, checkpoint_every=2)
    straight = training.train_and_evaluate(config(dataset_dir, tmp_path / "straight", **kw))

    def kill_after_3(step):
        if step == 3:
            raise KeyboardInterrupt()

    with pytest.raises(KeyboardInterrupt):
        training.train_and_evaluate(config(dataset_dir, tmp_path / "resumed", **kw), step_hook=kill_after_3)
    resumed = training.train_and_evaluate(config(dataset_dir, tmp_path / "resumed", **kw))
    assert resumed["start_step"] == 2 and resumed["step"] == 4
    for name in ("fc6", "fc7"):
        for a, b in zip(
            straight["model"].backbone.get_layer(name).get_weights(),
            resumed["model"].backbone.get_layer(name).get_weights(),
        ):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    for a, b in zip(head_weights(straight), head_weights(resumed)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_refused_run_leaves_model_dir_as_it_was_and_the_suggested_fix_runs(dataset_dir, tmp_path, caplog):
    """Every check runs before run_config.json is written: the fix a refusal suggests is not then refused."""
    from emonet_tf.weights import WeightFormatError
    from emonet_tf.weights.weightset import LAYERS, expected_shapes, make_weightset

    shapes = expected_shapes(20)
    emonet = make_weightset(
        {n: (np.zeros(shapes[n][0], np.float32), np.zeros(shapes[n][1], np.float32)) for n in LAYERS},
        mean=None,
        class_names=None,
        source="emonet.pth",
        fmt="emonet_py_pth",
    )
    absent, empty = tmp_path / "absent", tmp_path / "empty"
    empty.mkdir()
    garbage = tmp_path / "garbage.npy"
    garbage.write_bytes(b"not a weight file")
    for model_dir in (absent, empty):
        with pytest.raises(training.TrainConfigError, match="20-way head.*--new_head"):
            training.train_and_evaluate(config(dataset_dir, model_dir, init="emonet", weights=emonet))
        with pytest.raises(WeightFormatError):
            training.train_and_evaluate(config(dataset_dir, model_dir, init="imagenet", weights=str(garbage)))
        with pytest.raises(training.TrainConfigError, match="global_batch_size"):
            training.train_and_evaluate(config(dataset_dir, model_dir, global_batch_size=0))
    assert not absent.exists() and list(empty.iterdir()) == []
    caplog.set_level(logging.INFO, logger="emonet_tf.training.progress")
    fixed = training.train_and_evaluate(
        config(dataset_dir, absent, init="emonet", weights=emonet, new_head=True, max_steps=1, eval_split="test")
    )
    assert fixed["step"] == 1 and (absent / training.RUN_CONFIG).exists()
    # Progress of the long parts counted in frames (train 18, test 6); log lines, since stderr is no terminal.
    lines = [r.getMessage() for r in caplog.records if r.name == "emonet_tf.training.progress"]
    assert any(line.startswith("feature cache train: 100%") and "18/18" in line for line in lines), lines
    assert any(line.startswith("evaluate test: 100%") and "6/6" in line for line in lines), lines
