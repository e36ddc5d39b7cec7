"""The training loop's pieces on their own, on a toy 2-class Dense head (no AlexNet, no dataset): fast."""

import json
import logging
import time

import keras
import numpy as np
import pytest
import tensorflow as tf

from emonet_tf import evaluation, features, training
from emonet_tf.training import progress

FEATURES = np.array([[2.0, 0.0, 1.0], [0.0, 2.0, -1.0], [1.5, 0.5, 0.0], [0.5, 1.0, 2.0]], np.float32)
LABELS = np.array([0, 1, 0, 1], np.int32)


def toy_state(seed=0, learning_rate=0.1):
    keras.utils.set_random_seed(seed)
    head = keras.layers.Dense(2)
    head.build((None, 3))
    state = training.create_train_state(head, head.trainable_variables, learning_rate=learning_rate, momentum=0.9)
    return head, state


def mean_loss(head):
    logits = head(tf.constant(FEATURES))
    return float(tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=LABELS, logits=logits)))


def batches(n, batch_size=4):
    return [(tf.constant(FEATURES[:batch_size]), tf.constant(LABELS[:batch_size]))] * n


def test_one_train_step_lowers_the_loss_and_counts_correct_predictions():
    head, state = toy_state()
    before = mean_loss(head)
    correct_before = int(np.sum(np.argmax(head(tf.constant(FEATURES)).numpy(), 1) == LABELS))
    train_step = training.make_train_step(state, tf.distribute.get_strategy(), global_batch_size=4)
    loss, correct = train_step(batches(1)[0])
    assert float(loss) == pytest.approx(before, rel=1e-5)  # the loss of the weights before the update
    assert float(correct) == correct_before
    assert mean_loss(head) < before
    assert int(state.optimizer.iterations.numpy()) == 1 and int(state.step.numpy()) == 0  # train_epoch counts


def test_train_epoch_counts_steps_stops_at_total_and_logs_across_epochs():
    head, state = toy_state()
    train_step = training.make_train_step(state, tf.distribute.get_strategy(), global_batch_size=4)
    window, logged, after = training.LossWindow(), [], []
    kw = dict(
        total_steps=7,
        global_batch_size=4,
        log_every=3,
        window=window,
        on_log=lambda step, loss, acc: logged.append((step, loss, acc)),
        after_step=after.append,
    )
    assert training.train_epoch(train_step, batches(5), state, **kw) == 5
    assert int(state.step.numpy()) == 5 and after == [1, 2, 3, 4, 5]
    assert [s for s, _, _ in logged] == [3] and window.steps == 2  # steps 4-5 wait for the next epoch
    assert training.train_epoch(train_step, batches(5), state, **kw) == 2  # stops at total_steps=7
    assert int(state.step.numpy()) == 7 and after[-2:] == [6, 7]
    assert [s for s, _, _ in logged] == [3, 6, 7]  # 6: steps 4-6 (two epochs); 7: the last step
    assert all(0 <= acc <= 1 and np.isfinite(loss) for _, loss, acc in logged)
    assert training.train_epoch(train_step, batches(5), state, **kw) == 0  # nothing left


def test_checkpoint_save_restore_gives_identical_weights_momentum_and_step(tmp_path):
    head, state = toy_state(seed=0)
    train_step = training.make_train_step(state, tf.distribute.get_strategy(), global_batch_size=4)
    training.train_epoch(train_step, batches(3), state, total_steps=3, global_batch_size=4, log_every=10)
    manager = tf.train.CheckpointManager(training.make_checkpoint(state, head=head), str(tmp_path), max_to_keep=2)
    path = training.save_checkpoint(manager, 3)
    assert path.endswith("ckpt-3") and training.save_checkpoint(manager, 3) == path  # not saved twice

    other_head, other = toy_state(seed=1)
    assert not np.array_equal(other_head.get_weights()[0], head.get_weights()[0])
    assert training.restore_checkpoint(training.make_checkpoint(other, head=other_head), str(tmp_path)) == path
    for a, b in zip(head.get_weights(), other_head.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert int(other.step.numpy()) == 3 and int(other.optimizer.iterations.numpy()) == 3
    for a, b in zip(state.optimizer.variables, other.optimizer.variables):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))  # momentum slots too
    assert training.restore_checkpoint(training.make_checkpoint(other, head=other_head), str(tmp_path / "none")) is None


class Counter:
    def __init__(self):
        self.n = 0

    def update(self, n):
        self.n += n


def test_evaluate_features_returns_the_metrics_of_known_predictions():
    head = keras.layers.Dense(2, use_bias=False)
    head.build((None, 2))
    head.set_weights([np.eye(2, dtype=np.float32)])  # logits = features
    feats = np.log(np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.55, 0.45]], np.float32))
    labels = np.array([0, 1, 1, 0])
    counter = Counter()
    metrics = training.evaluate_features(
        head, feats, labels, ("a", "b"), video_ids=np.array(["v", "w", "x", "v"]), batch_size=3, progress=counter
    )
    assert metrics["top1"] == pytest.approx(0.75) and metrics["num_examples"] == 4 and counter.n == 4
    assert metrics["auc"]["a"] == pytest.approx(0.75)  # positives 0.9, 0.55 vs negatives 0.2, 0.6: 3 of 4 pairs
    expected = evaluation.metrics_from_predictions(np.exp(feats), labels, ("a", "b"), ["v", "w", "x", "v"])
    assert metrics["mean_auc"] == pytest.approx(expected["mean_auc"])
    assert metrics["video"]["num_videos"] == 3


def test_evaluate_runs_a_model_on_batches_and_counts_examples():
    model = keras.Sequential([keras.Input((2,)), keras.layers.Softmax()])
    feats = np.log(np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]], np.float32))
    ds = tf.data.Dataset.from_tensor_slices((feats, np.array([0, 1, 1]))).batch(2)
    counter = Counter()
    metrics = training.evaluate(model, ds, ("a", "b"), progress=counter)
    assert metrics["top1"] == pytest.approx(2 / 3) and counter.n == 3


def test_cache_progress_follows_progress_json(tmp_path):
    def write(done, fingerprint="f"):
        (tmp_path / features.PROGRESS).write_text(json.dumps({"fingerprint": fingerprint, "done": done}))

    write(5, fingerprint="stale")  # an old cache being replaced counts as nothing done
    with progress.watch_cache_build(str(tmp_path), "f", 8, "cache", poll_seconds=0.01) as bar:
        time.sleep(0.05)
        assert bar.n == 0
        write(4)
        deadline = time.monotonic() + 5
        while bar.n != 4 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert bar.n == 4
        write(8)
    assert bar.n == 8  # read once more at the end
    with progress.watch_cache_build(str(tmp_path), "f", 8, "cache", enabled=False) as bar:
        assert bar.disable


def test_log_progress_writes_a_line_per_interval_and_at_the_end(caplog):
    caplog.set_level(logging.INFO, logger="emonet_tf.training.progress")
    with progress.LogProgress(10, "cache", interval=3600) as bar:
        bar.update(4)  # within the interval: silent
        bar.update(6)  # the end: logged once, not again on close
    with progress.LogProgress(10, "quiet", enabled=False) as quiet:
        quiet.update(10)
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and lines[0].startswith("cache: 100%") and "10/10" in lines[0], lines


def test_output_paths_are_checked_before_any_work(tmp_path):
    """A run whose results cannot be written is refused up front, not after training (found by a breaker run)."""
    from emonet_tf.training.config import validate_config

    a_file = tmp_path / "afile"
    a_file.write_text("keep")
    a_dir = tmp_path / "preds.csv"
    a_dir.mkdir()

    def config(**kw):
        values = dict(dataset="d", model_dir=str(tmp_path / "run"), init="scratch", eval_split="test")
        values.update(kw)
        return training.TrainConfig(**values)

    validate_config(config(eval_predictions="p.csv"))  # fine: nothing exists yet
    for kw, message in (
        (dict(model_dir=str(a_file)), "model_dir .* is a file"),
        (dict(export_dir=str(a_file)), "export_dir .* is a file"),
        (dict(eval_predictions=str(a_dir)), "eval_predictions .* is a folder"),
        (dict(model_dir=str(a_file / "run")), "lies under the file"),
    ):
        with pytest.raises(training.TrainConfigError, match=message):
            validate_config(config(**kw))
    assert a_file.read_text() == "keep" and not (tmp_path / "run").exists()
