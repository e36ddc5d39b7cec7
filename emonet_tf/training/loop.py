"""The training step, the epoch loop and evaluation: module-level pieces of the custom strategy.run loop.

One loop for every tf.distribute strategy (Keras 3's `model.fit` fails under
MultiWorkerMirroredStrategy, keras-team/keras#20585), so a laptop and a cluster run the same numerics.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Optional, Sequence

import keras
import numpy as np
import tensorflow as tf

from emonet_tf import evaluation
from emonet_tf.training.progress import count_examples
from emonet_tf.training.state import TrainState


def replica_step(
    state: TrainState, inputs: tf.Tensor, labels: tf.Tensor, *, global_batch_size: int
) -> tuple[tf.Tensor, tf.Tensor]:
    """One SGD update from one replica's share of a global batch.

    inputs: the replica's [b, ...] batch; labels: int32 [b]. Returns (this replica's part of the mean
    loss over the global batch, float32 scalar; its number of correct top-1 predictions, float32).
    The loss is divided by the GLOBAL batch size because the Keras 3 optimizer sums the replicas'
    gradients itself.
    """
    with tf.GradientTape() as tape:
        logits = tf.cast(state.forward(inputs), tf.float32)
        per_example = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
        loss = tf.nn.compute_average_loss(per_example, global_batch_size=global_batch_size)
        objective = state.optimizer.scale_loss(loss) if state.loss_scaled else loss
    grads = tape.gradient(objective, state.variables)
    state.optimizer.apply_gradients(zip(grads, state.variables))
    correct = tf.reduce_sum(tf.cast(tf.equal(tf.argmax(logits, -1, output_type=tf.int32), labels), tf.float32))
    return loss, correct


def make_train_step(
    state: TrainState, strategy: tf.distribute.Strategy, global_batch_size: int
) -> Callable[[tuple], tuple[tf.Tensor, tf.Tensor]]:
    """A tf.function: one distributed (inputs, labels) batch -> (mean loss, correct count) of the global batch.

    It updates `state`'s variables and optimizer, not `state.step` (train_epoch counts steps).
    """
    step_fn = functools.partial(replica_step, state, global_batch_size=global_batch_size)

    @tf.function
    def train_step(batch):
        loss, correct = strategy.run(step_fn, args=tuple(batch))
        return (
            strategy.reduce(tf.distribute.ReduceOp.SUM, loss, axis=None),
            strategy.reduce(tf.distribute.ReduceOp.SUM, correct, axis=None),
        )

    return train_step


@dataclass
class LossWindow:
    """Sums of the loss and of correct predictions over the steps since the last log line.

    It outlives an epoch: a log window may span an epoch boundary when log_every does not divide it.
    """

    loss: float = 0.0
    correct: float = 0.0
    steps: int = 0

    def add(self, loss: float, correct: float) -> None:
        self.loss += loss
        self.correct += correct
        self.steps += 1

    def pop(self, global_batch_size: int) -> tuple[float, float]:
        """(mean loss per step, accuracy in [0, 1]) of the window; starts a new window."""
        mean_loss = self.loss / self.steps
        accuracy = self.correct / (self.steps * global_batch_size)
        self.loss, self.correct, self.steps = 0.0, 0.0, 0
        return mean_loss, accuracy


def train_epoch(
    train_step: Callable,
    batches: Iterable,
    state: TrainState,
    *,
    total_steps: int,
    global_batch_size: int,
    log_every: int,
    window: Optional[LossWindow] = None,
    on_log: Optional[Callable[[int, float, float], None]] = None,
    after_step: Optional[Callable[[int], None]] = None,
) -> int:
    """Runs `train_step` on `batches` until they end or `state.step` reaches `total_steps`; returns steps run.

    After every step: `state.step` is assigned; every `log_every` global steps (and at total_steps)
    on_log(step, mean loss, accuracy) gets the window's figures; then after_step(step) runs
    (checkpoints, tests' kill switches).
    """
    window = window if window is not None else LossWindow()
    step = start = int(state.step.numpy())
    if step >= total_steps:
        return 0
    for batch in batches:
        loss, correct = train_step(batch)
        step += 1
        state.step.assign(step)
        window.add(float(loss), float(correct))
        if (step % log_every == 0 or step == total_steps) and on_log is not None:
            on_log(step, *window.pop(global_batch_size))
        if after_step is not None:
            after_step(step)
        if step >= total_steps:  # before fetching another batch
            break
    return step - start


def head_probabilities(
    head: Callable, features: np.ndarray, batch_size: int, progress: Optional[Any] = None
) -> np.ndarray:
    """softmax(head(features)) as float32 [N, classes], `batch_size` rows at a time (features: [N, D])."""
    apply = tf.function(lambda x: tf.nn.softmax(tf.cast(head(x), tf.float32)), reduce_retracing=True)
    out = []
    for i in range(0, features.shape[0], batch_size):
        out.append(apply(tf.constant(np.asarray(features[i : i + batch_size]))).numpy())
        if progress is not None:
            progress.update(len(out[-1]))
    return np.concatenate(out)


def evaluate_features(
    head: Callable,
    features: np.ndarray,
    labels: np.ndarray,
    class_names: Sequence[str],
    *,
    video_ids: Optional[np.ndarray] = None,
    batch_size: int = 32,
    progress: Optional[Any] = None,
) -> dict[str, Any]:
    """`evaluation.metrics_from_predictions` of a head on cached features [N, D] with int labels [N]."""
    probabilities = head_probabilities(head, features, batch_size, progress)
    return evaluation.metrics_from_predictions(probabilities, labels, class_names, video_ids)


def evaluate(
    model: keras.Model, batches: Iterable, class_names: Sequence[str], progress: Optional[Any] = None
) -> dict[str, Any]:
    """`evaluation.evaluate_model` on (images, labels[, video_ids]) batches, ticking `progress` per example.

    Raises:
      ValueError: `batches` is empty.
    """
    return evaluation.evaluate_model(
        model, batches if progress is None else count_examples(batches, progress), class_names
    )
