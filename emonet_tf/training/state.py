"""The training state (what a step updates), EmoNet's model setup, and checkpoint save/restore.

`TrainState` is deliberately model-agnostic: any `forward` (inputs -> logits) and its variables, so
the step, the epoch loop and the checkpoints are tested on a toy Dense head as on EmoNet.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence

import keras
import tensorflow as tf

from emonet_tf import data as data_lib
from emonet_tf.backbone import AlexNetBackbone
from emonet_tf.classifier import EmoNetClassifier
from emonet_tf.training.config import TrainConfig

log = logging.getLogger(__name__)


@dataclass
class TrainState:
    """What one training step reads and updates.

    forward: per-replica inputs -> logits [batch, classes] (any float dtype; the loss casts to float32).
    variables: the trained variables, the ones `optimizer` was built on.
    optimizer: keras SGD, or a LossScaleOptimizer around it (mixed_float16).
    step: int64 scalar variable, global steps done (checkpointed; the data order resumes from it).
    """

    forward: Callable[[tf.Tensor], tf.Tensor]
    variables: list
    optimizer: keras.optimizers.Optimizer
    step: tf.Variable

    @property
    def loss_scaled(self) -> bool:
        return isinstance(self.optimizer, keras.optimizers.LossScaleOptimizer)


def create_train_state(
    forward: Callable[[tf.Tensor], tf.Tensor],
    variables: Sequence,
    *,
    learning_rate: float,
    momentum: float,
    loss_scale: bool = False,
    strategy: Optional[tf.distribute.Strategy] = None,
) -> TrainState:
    """SGD with momentum (optionally loss-scaled) built on `variables` in `strategy`'s scope; step 0.

    `variables` must have been created in the same strategy's scope (the optimizer's slots mirror them).
    """
    strategy = strategy or tf.distribute.get_strategy()
    variables = list(variables)
    with strategy.scope():
        optimizer = keras.optimizers.SGD(learning_rate=learning_rate, momentum=momentum)
        if loss_scale:
            optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
        optimizer.build(variables)
    # Outside the scope: a plain local variable that the Python loop assigns after every step.
    step = tf.Variable(0, dtype=tf.int64, trainable=False, name="global_step")
    return TrainState(forward=forward, variables=variables, optimizer=optimizer, step=step)


def build_model(config: TrainConfig, info: data_lib.DatasetInfo, weights) -> EmoNetClassifier:
    """The classifier with the requested init and the requested layers trainable (call in strategy scope).

    weights: a WeightSet, or None for init=scratch (seeded by config.seed).
    """
    keras.utils.set_random_seed(config.seed)
    if weights is None:
        model = EmoNetClassifier(AlexNetBackbone(), class_names=info.class_names)
    else:
        from emonet_tf.weights import build_classifier

        new_head = config.init == "imagenet" or config.new_head
        model = build_classifier(
            weights, num_classes=info.num_classes, class_names=info.class_names, activation="softmax", new_head=new_head
        )
    for layer in model.backbone.layers:
        layer.trainable = config.train_layers == "all" or (
            config.train_layers == "fc6-fc8" and layer.name in ("fc6", "fc7")
        )
    model.head.trainable = True
    return model


def trainable_variables(model: EmoNetClassifier, config: TrainConfig) -> list:
    """fc8's variables, plus the backbone's trainable ones unless only fc8 trains."""
    if config.train_layers == "fc8":
        return list(model.head.trainable_variables)
    return list(model.backbone.trainable_variables) + list(model.head.trainable_variables)


def create_emonet_state(
    config: TrainConfig, info: data_lib.DatasetInfo, weights, strategy: tf.distribute.Strategy, policy: str
) -> tuple[EmoNetClassifier, TrainState]:
    """EmoNet per `config` and its TrainState; the forward takes relu7 features on the feature-cache path."""
    with strategy.scope():
        model = build_model(config, info, weights)
    head, backbone = model.head, model.backbone
    train_backbone = config.train_layers != "fc8"
    forward = head if config.uses_feature_cache else (lambda images: head(backbone(images, training=train_backbone)))
    state = create_train_state(
        forward,
        trainable_variables(model, config),
        learning_rate=config.learning_rate,
        momentum=config.momentum,
        loss_scale=policy == "mixed_float16",
        strategy=strategy,
    )
    return model, state


def make_checkpoint(state: TrainState, **trained: Any) -> tf.train.Checkpoint:
    """A checkpoint of the optimizer (slots, iterations), the step and the `trained` objects (layers/models)."""
    return tf.train.Checkpoint(optimizer=state.optimizer, step=state.step, **trained)


def emonet_checkpoint(state: TrainState, model: EmoNetClassifier, config: TrainConfig) -> tf.train.Checkpoint:
    """fc8 alone when only fc8 trains (the frozen backbone is rebuilt from the same weights or seed)."""
    trained = {"head": model.head} if config.train_layers == "fc8" else {"model": model}
    return make_checkpoint(state, **trained)


def restore_checkpoint(checkpoint: tf.train.Checkpoint, directory: str) -> Optional[str]:
    """Restores the latest checkpoint in `directory`; returns its path, or None when there is none.

    Raises:
      AssertionError: the checkpoint lacks a variable of `checkpoint` (another model or optimizer).
    """
    latest = tf.train.latest_checkpoint(directory)
    if latest:
        checkpoint.restore(latest).assert_existing_objects_matched()
    return latest


def save_checkpoint(manager: tf.train.CheckpointManager, step: int) -> str:
    """Saves as `ckpt-<step>` unless the latest checkpoint already is that step; returns its path."""
    latest = manager.latest_checkpoint
    if latest is not None and int(latest.rsplit("-", 1)[-1]) == step:
        return latest
    return manager.save(checkpoint_number=step)
