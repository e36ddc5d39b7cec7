"""Transfer learning for EmoNet: one custom `strategy.run` loop for every tf.distribute strategy.

`train_and_evaluate(TrainConfig(...))` validates its inputs, trains, checkpoints, resumes, logs to
TensorBoard, evaluates and exports. Why a custom loop: Keras 3's `model.fit` fails under
MultiWorkerMirroredStrategy (keras-team/keras#20585); one loop for all strategies keeps the
numerics identical between a laptop and a cluster.

The defaults are the paper's recipe (Kragel et al. 2019): SGD with momentum 0.9, learning rate
1e-4, global batch 16, only fc8 trained on a frozen ImageNet AlexNet. The paper does not state the
number of epochs, a schedule, weight decay or augmentation; we use a constant rate, no decay, no
augmentation, and `epochs` is up to the user.

Fast path: with fc8 alone trained and no augmentation, relu7 features are computed once per example
(`emonet_tf.features`) and fc8 is trained on them, in the same example order and with the same
update rule as the full network, so the result is the same within float tolerance.

Resume: the data order is a pure function of (seed, epoch) (`emonet_tf.data`), so a checkpoint holds
the trained weights, the optimizer state and the step; a restarted run skips the batches consumed
before that step and continues exactly as an uninterrupted run would.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import time
from dataclasses import dataclass
from typing import Any, Callable, Optional, Union

import keras
import numpy as np
import tensorflow as tf

from emonet_tf import data as data_lib
from emonet_tf import distribute
from emonet_tf import evaluation
from emonet_tf import features as features_lib
from emonet_tf import preprocessing
from emonet_tf.backbone import AlexNetBackbone
from emonet_tf.categories import EMONET_CATEGORIES, canonical_name
from emonet_tf.classifier import EmoNetClassifier

log = logging.getLogger(__name__)

INITS = ("imagenet", "emonet", "scratch")
TRAIN_LAYERS = ("fc8", "fc6-fc8", "all")
RUN_CONFIG = "run_config.json"
#: Fields that define the run: a resumed run must use the same values.
IDENTITY_FIELDS = ("dataset", "train_split", "init", "weights", "mean", "new_head", "train_layers", "learning_rate",
                   "momentum", "global_batch_size", "seed", "shuffle_buffer", "augment", "mixed_precision",
                   "resize_method", "antialias")


class TrainConfigError(ValueError):
    """Flags that cannot work together, or that do not fit the data or the weights."""


@dataclass
class TrainConfig:
    """Everything a training run needs; `train.py` maps its absl flags one to one onto these fields."""

    dataset: str                        # TFDS name (with data_dir) or a prepared builder directory
    model_dir: str                      # checkpoints, TensorBoard logs, feature cache, evaluation
    data_dir: Optional[str] = None
    train_split: str = "train"
    eval_split: str = "test"            # "" skips evaluation
    init: str = "imagenet"              # imagenet | emonet | scratch
    weights: Any = None                 # path to a weight file (or a WeightSet); required unless scratch
    mean: Optional[str] = None          # mean image file for weight files that hold none (.pth, ImageNet files)
    new_head: bool = False              # emonet init: a new fc8 instead of EmoNet's 20-way one
    train_layers: str = "fc8"           # fc8 (the paper) | fc6-fc8 | all
    learning_rate: float = 1e-4
    momentum: float = 0.9
    global_batch_size: int = 16
    epochs: int = 10
    max_steps: Optional[int] = None     # stop at this global step (before the end of `epochs`)
    seed: int = 0
    shuffle_buffer: int = 16384         # <= 0: the whole split
    augment: bool = False
    feature_cache: Optional[bool] = None  # None: on when train_layers == "fc8" and not augment
    strategy: str = "auto"
    tpu: Optional[str] = None
    mixed_precision: Union[bool, str] = False  # True: float16 on GPU, bfloat16 on TPU/CPU; or a policy name
    checkpoint_every: int = 500
    keep_checkpoints: int = 3
    log_every: int = 50
    eval_every_epoch: bool = False
    eval_batch_size: int = 32
    video_metrics: bool = True
    export: bool = True
    export_dir: Optional[str] = None    # default: model_dir/export
    resize_method: str = preprocessing.DEFAULT_RESIZE_METHOD  # also baked into the exported SavedModel
    antialias: bool = True

    @property
    def uses_feature_cache(self) -> bool:
        if self.feature_cache is None:
            return self.train_layers == "fc8" and not self.augment
        return bool(self.feature_cache)

    def identity(self) -> dict[str, Any]:
        values = {k: getattr(self, k) for k in IDENTITY_FIELDS}
        if not isinstance(values["weights"], (str, type(None))):
            values["weights"] = getattr(values["weights"], "source", repr(type(values["weights"])))
        return values


def validate_config(config: TrainConfig) -> None:
    """Rejects impossible flag combinations before anything is read."""
    if config.init not in INITS:
        raise TrainConfigError(f"init must be one of {INITS}, got {config.init!r}")
    if config.train_layers not in TRAIN_LAYERS:
        raise TrainConfigError(f"train_layers must be one of {TRAIN_LAYERS}, got {config.train_layers!r}")
    if config.init != "scratch" and config.weights is None:
        raise TrainConfigError(f"init={config.init} needs a weight file (--weights)")
    if config.feature_cache and (config.train_layers != "fc8" or config.augment):
        raise TrainConfigError("the feature cache needs a frozen backbone and fixed inputs: "
                               "train_layers=fc8 and no augmentation")
    for name in ("global_batch_size", "epochs", "checkpoint_every", "log_every", "eval_batch_size"):
        if getattr(config, name) < 1:
            raise TrainConfigError(f"{name} must be >= 1, got {getattr(config, name)}")
    if config.learning_rate <= 0:
        raise TrainConfigError(f"learning_rate must be > 0, got {config.learning_rate}")
    if config.mixed_precision not in (False, True, "auto") + distribute.MIXED_POLICIES:
        raise TrainConfigError(f"mixed_precision must be a bool or one of {distribute.MIXED_POLICIES}, "
                               f"got {config.mixed_precision!r}")
    if config.strategy not in distribute.STRATEGIES:
        raise TrainConfigError(f"strategy must be one of {distribute.STRATEGIES}, got {config.strategy!r}")


def _read_weights(config: TrainConfig, info: data_lib.DatasetInfo):
    """Reads the init weights and checks them against the data before any model is built."""
    if config.init == "scratch":
        return None
    from emonet_tf.weights import read_weights  # only the weight-file inits need the importers

    weights = config.weights if not isinstance(config.weights, (str, os.PathLike)) \
        else read_weights(config.weights, mean=config.mean)
    load_head = config.init == "emonet" and not config.new_head
    if load_head:
        if weights.num_classes is None:
            raise TrainConfigError(f"{weights.source} has no fc8 to load; use --new_head")
        if weights.num_classes != info.num_classes:
            raise TrainConfigError(
                f"The EmoNet weights {weights.source} have a {weights.num_classes}-way head but {info.name} has "
                f"{info.num_classes} classes; use --new_head to train a new {info.num_classes}-way fc8")
        _check_class_order(info.class_names, weights.class_names or EMONET_CATEGORIES)
    return weights


def _check_class_order(data_names, head_names) -> None:
    """A loaded head must see the data's labels in its own output order (a silent label bug otherwise)."""
    data_canon = [canonical_name(n) for n in data_names]
    head_canon = [canonical_name(n) or n for n in head_names]
    if all(data_canon) and data_canon != head_canon:
        raise TrainConfigError("The dataset's label order differs from the loaded head's output order "
                               f"(data: {list(data_names)}; head: {list(head_names)}); use --new_head")
    if not all(data_canon):
        log.warning("Dataset labels %s are not emotion names; assuming they follow the head's order %s",
                    list(data_names), list(head_names))


def build_model(config: TrainConfig, info: data_lib.DatasetInfo, weights) -> EmoNetClassifier:
    """The classifier with the requested init, and the requested layers trainable (call in scope)."""
    keras.utils.set_random_seed(config.seed)
    if weights is None:
        model = EmoNetClassifier(AlexNetBackbone(), class_names=info.class_names)
    else:
        from emonet_tf.weights import build_classifier

        new_head = config.init == "imagenet" or config.new_head
        model = build_classifier(weights, num_classes=info.num_classes, class_names=info.class_names,
                                 activation="softmax", new_head=new_head)
    for layer in model.backbone.layers:
        layer.trainable = config.train_layers == "all" or (
            config.train_layers == "fc6-fc8" and layer.name in ("fc6", "fc7"))
    model.head.trainable = True
    return model


def _trainable_variables(model: EmoNetClassifier, config: TrainConfig) -> list:
    if config.train_layers == "fc8":
        return list(model.head.trainable_variables)
    return list(model.backbone.trainable_variables) + list(model.head.trainable_variables)


def _check_resume(config: TrainConfig, model_dir: str, write: bool) -> None:
    if not write:  # only the chief checks and writes; other workers follow it
        return
    path = os.path.join(model_dir, RUN_CONFIG)
    identity = json.loads(json.dumps(config.identity()))
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            saved = json.load(f)
        diff = {k: (saved.get(k), identity[k]) for k in identity if saved.get(k) != identity[k]}
        if diff:
            raise TrainConfigError(
                f"{model_dir} holds a run with other settings ({', '.join(f'{k}: {a!r} -> {b!r}' for k, (a, b) in diff.items())}); "
                "use a new --model_dir or the same flags to resume")
    else:
        os.makedirs(model_dir, exist_ok=True)
        with open(path, "w", encoding="utf-8") as f:
            json.dump(identity, f, indent=2)


def _write_dir(model_dir: str, strategy: tf.distribute.Strategy, sub: str) -> str:
    """The chief writes under model_dir; other workers write to a scratch folder they delete."""
    if distribute.is_chief(strategy):
        return os.path.join(model_dir, sub)
    return os.path.join(model_dir, f"worker{distribute.task_id(strategy)}_tmp", sub)


def train_and_evaluate(config: TrainConfig, step_hook: Optional[Callable[[int], None]] = None) -> dict[str, Any]:
    """Trains (or resumes) per `config`, evaluates on `eval_split`, exports; returns a summary dict.

    step_hook(step) is called after every training step (and its checkpoint); tests raise from it to
    simulate a killed run.
    """
    validate_config(config)
    splits = (config.train_split,) + ((config.eval_split,) if config.eval_split else ())
    info = data_lib.inspect_dataset(config.dataset, config.data_dir, splits=splits)
    num_train = info.num_examples(config.train_split)
    spe = data_lib.steps_per_epoch(num_train, config.global_batch_size)
    strategy = distribute.get_strategy(config.strategy, config.tpu)
    chief = distribute.is_chief(strategy)
    _check_resume(config, config.model_dir, write=chief)
    weights = _read_weights(config, info)
    if config.global_batch_size % strategy.num_replicas_in_sync:
        raise TrainConfigError(f"global_batch_size {config.global_batch_size} is not divisible by the "
                               f"{strategy.num_replicas_in_sync} replicas")

    previous_policy = keras.config.dtype_policy()
    policy = distribute.mixed_precision_policy(strategy, config.mixed_precision) if config.mixed_precision \
        else "float32"
    keras.config.set_dtype_policy(policy)
    try:
        return _run(config, info, weights, strategy, chief, spe, policy, step_hook)
    finally:
        keras.config.set_dtype_policy(previous_policy)


def _run(config, info, weights, strategy, chief, spe, policy, step_hook) -> dict[str, Any]:
    use_cache = config.uses_feature_cache
    with strategy.scope():
        model = build_model(config, info, weights)
        optimizer = keras.optimizers.SGD(learning_rate=config.learning_rate, momentum=config.momentum)
        if policy == "mixed_float16":
            optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
        train_vars = _trainable_variables(model, config)
        optimizer.build(train_vars)
    del weights
    step_var = tf.Variable(0, dtype=tf.int64, trainable=False, name="global_step")
    # A frozen backbone is rebuilt from the same weights (or seed) on resume: checkpoint fc8 only.
    tracked = {"head": model.head} if config.train_layers == "fc8" else {"model": model}
    checkpoint = tf.train.Checkpoint(optimizer=optimizer, step=step_var, **tracked)
    ckpt_dir = _write_dir(config.model_dir, strategy, "checkpoints")
    manager = tf.train.CheckpointManager(checkpoint, ckpt_dir, max_to_keep=config.keep_checkpoints)
    latest = tf.train.latest_checkpoint(os.path.join(config.model_dir, "checkpoints"))
    if latest:
        checkpoint.restore(latest).assert_existing_objects_matched()
        log.info("Resumed from %s at step %d", latest, int(step_var.numpy()))
    start_step = int(step_var.numpy())

    total_steps = spe * config.epochs
    if config.max_steps is not None:
        total_steps = min(total_steps, config.max_steps)
    timing: dict[str, float] = {}

    cache_dirs: dict[str, str] = {}
    if use_cache:
        t0 = time.perf_counter()
        backbone_hash = features_lib.backbone_fingerprint(model.backbone)
        cache_root = os.path.join(config.model_dir, "feature_cache") if chief else \
            os.path.join(config.model_dir, f"feature_cache_worker{distribute.task_id(strategy)}")
        cache_splits = [config.train_split] + ([config.eval_split] if config.eval_split else [])
        for split in cache_splits:
            fingerprint = features_lib.cache_fingerprint(backbone_hash, info, split, config.resize_method,
                                                         config.antialias, policy)
            cache_dirs[split] = os.path.join(cache_root, split)
            features_lib.build_feature_cache(model.backbone, info, split, cache_dirs[split], fingerprint=fingerprint,
                                             batch_size=config.eval_batch_size, resize_method=config.resize_method,
                                             antialias=config.antialias)
        timing["feature_cache_seconds"] = time.perf_counter() - t0

    def make_dataset(epoch: int, offset: int):
        def fn(ctx: tf.distribute.InputContext):
            if use_cache:
                return features_lib.cached_train_dataset(
                    cache_dirs[config.train_split], global_batch_size=config.global_batch_size, seed=config.seed,
                    epoch=epoch, start_step=offset, shuffle_buffer=config.shuffle_buffer, input_context=ctx)
            return data_lib.train_dataset(
                info, config.train_split, global_batch_size=config.global_batch_size, seed=config.seed,
                epoch=epoch, start_step=offset, shuffle_buffer=config.shuffle_buffer, augment=config.augment,
                resize_method=config.resize_method, antialias=config.antialias, input_context=ctx)
        return strategy.distribute_datasets_from_function(fn)

    scale_loss = isinstance(optimizer, keras.optimizers.LossScaleOptimizer)
    head, backbone = model.head, model.backbone
    global_batch = config.global_batch_size

    def step_fn(inputs, labels):
        with tf.GradientTape() as tape:
            features = inputs if use_cache else backbone(inputs, training=config.train_layers != "fc8")
            logits = tf.cast(head(features), tf.float32)
            per_example = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
            loss = tf.nn.compute_average_loss(per_example, global_batch_size=global_batch)
            objective = optimizer.scale_loss(loss) if scale_loss else loss
        grads = tape.gradient(objective, train_vars)
        # The Keras 3 optimizer all-reduces (sums) the replicas' gradients itself.
        optimizer.apply_gradients(zip(grads, train_vars))
        correct = tf.reduce_sum(tf.cast(tf.equal(tf.argmax(logits, -1, output_type=tf.int32), labels), tf.float32))
        return loss, correct

    @tf.function
    def train_step(batch):
        loss, correct = strategy.run(step_fn, args=batch)
        return (strategy.reduce(tf.distribute.ReduceOp.SUM, loss, axis=None),
                strategy.reduce(tf.distribute.ReduceOp.SUM, correct, axis=None))

    logs_dir = os.path.join(config.model_dir, "logs")
    train_writer = tf.summary.create_file_writer(os.path.join(logs_dir, "train")) if chief \
        else tf.summary.create_noop_writer()
    eval_writer = tf.summary.create_file_writer(os.path.join(logs_dir, "eval")) if chief \
        else tf.summary.create_noop_writer()

    def evaluate() -> dict[str, Any]:
        if use_cache:
            feats, labels, video_ids = features_lib.load_cache(cache_dirs[config.eval_split])
            probs = _head_probabilities(head, feats, config.eval_batch_size)
            return evaluation.metrics_from_predictions(
                probs, labels, info.class_names, video_ids if config.video_metrics else None)
        ds = data_lib.eval_dataset(info, config.eval_split, batch_size=config.eval_batch_size,
                                   resize_method=config.resize_method, antialias=config.antialias,
                                   with_video_id=config.video_metrics)
        return evaluation.evaluate_model(model, ds, info.class_names)

    def write_eval(metrics: dict[str, Any], step: int) -> None:
        with eval_writer.as_default(step=step):
            for key in ("top1", "top5", "mean_auc"):
                tf.summary.scalar(key, metrics[key])

    step = start_step
    window_loss, window_correct, window_steps = 0.0, 0.0, 0
    last_loss, last_accuracy = float("nan"), float("nan")
    t_train = time.perf_counter()
    epoch_metrics: list[dict[str, Any]] = []
    while step < total_steps:
        epoch, offset = divmod(step, spe)
        for batch in make_dataset(epoch, offset):
            loss, correct = train_step(batch)
            step += 1
            step_var.assign(step)
            window_loss += float(loss)
            window_correct += float(correct)
            window_steps += 1
            if step % config.log_every == 0 or step == total_steps:
                last_loss = window_loss / window_steps
                last_accuracy = window_correct / (window_steps * global_batch)
                with train_writer.as_default(step=step):
                    tf.summary.scalar("loss", last_loss)
                    tf.summary.scalar("accuracy", last_accuracy)
                    tf.summary.scalar("learning_rate", float(keras.ops.convert_to_numpy(optimizer.learning_rate)))
                log.info("step %d/%d epoch %d loss %.4f accuracy %.4f", step, total_steps, epoch, last_loss,
                         last_accuracy)
                window_loss, window_correct, window_steps = 0.0, 0.0, 0
            if step % config.checkpoint_every == 0:
                manager.save(checkpoint_number=step)
            if step_hook is not None:
                step_hook(step)
            if step >= total_steps:
                break
        if config.eval_every_epoch and config.eval_split and step % spe == 0 and chief:
            metrics = evaluate()
            write_eval(metrics, step)
            epoch_metrics.append({"epoch": step // spe, "step": step, "top1": metrics["top1"],
                                  "top5": metrics["top5"], "mean_auc": metrics["mean_auc"]})
            log.info("epoch %d: top1 %.4f top5 %.4f mean AUC %.4f", step // spe, metrics["top1"], metrics["top5"],
                     metrics["mean_auc"])
    train_seconds = time.perf_counter() - t_train
    steps_run = step - start_step
    timing["train_seconds"] = train_seconds
    timing["examples_per_second"] = steps_run * global_batch / train_seconds if steps_run else float("nan")
    if manager.latest_checkpoint is None or int(manager.latest_checkpoint.rsplit("-", 1)[-1]) != step:
        manager.save(checkpoint_number=step)
    train_writer.flush()

    result: dict[str, Any] = {
        "step": step, "start_step": start_step, "steps_per_epoch": spe, "total_steps": total_steps,
        "feature_cache": use_cache, "strategy": distribute.strategy_kind(strategy),
        "replicas": strategy.num_replicas_in_sync, "dtype_policy": policy, "timing": timing,
        "train": {"loss": last_loss, "accuracy": last_accuracy}, "epochs": epoch_metrics,
    }
    if config.eval_split and chief:
        t0 = time.perf_counter()
        metrics = evaluate()
        timing["eval_seconds"] = time.perf_counter() - t0
        write_eval(metrics, step)
        eval_writer.flush()
        result["eval"] = metrics
        result["eval_files"] = evaluation.write_report(metrics, os.path.join(config.model_dir, "eval"))
        report = evaluation.format_report(metrics)
        print(report, flush=True)
    if config.export and chief:
        result["export"] = export_model(model, config.export_dir or os.path.join(config.model_dir, "export"),
                                        resize_method=config.resize_method)
    if not chief:
        shutil.rmtree(os.path.join(config.model_dir, f"worker{distribute.task_id(strategy)}_tmp"),
                      ignore_errors=True)
    result["model"] = model
    return result


def _head_probabilities(head: keras.layers.Dense, feats: np.ndarray, batch_size: int) -> np.ndarray:
    apply = tf.function(lambda x: tf.nn.softmax(tf.cast(head(x), tf.float32)), reduce_retracing=True)
    out = [apply(tf.constant(np.asarray(feats[i:i + batch_size]))).numpy()
           for i in range(0, feats.shape[0], batch_size)]
    return np.concatenate(out)


def export_model(model: EmoNetClassifier, export_dir: str,
                 resize_method: str = preprocessing.DEFAULT_RESIZE_METHOD) -> dict[str, str]:
    """A SavedModel (serving on image bytes, resized as in training) and a .keras file under `export_dir`."""
    from emonet_tf.export import export_keras, export_saved_model

    os.makedirs(export_dir, exist_ok=True)
    saved_model = os.path.join(export_dir, "saved_model")
    log.info(export_saved_model(model, saved_model, resize_method=resize_method))
    keras_path = os.path.join(export_dir, "emonet.keras")
    log.info(export_keras(model, keras_path))
    return {"saved_model": saved_model, "keras": keras_path}


def config_from_dict(values: dict[str, Any]) -> TrainConfig:
    """A TrainConfig from a mapping, rejecting unknown keys (used by train.py and notebooks)."""
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise TrainConfigError(f"unknown config fields {unknown}")
    return TrainConfig(**values)
