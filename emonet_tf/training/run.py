"""train_and_evaluate: check everything, then set up, build the feature cache, train, evaluate, export.

Nothing is written before every check has passed (`prepare_run`): a refused run leaves model_dir as
it was, so the command its error message suggests is not then refused as "a run with other settings".
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import shutil
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Optional

import keras
import tensorflow as tf

from emonet_tf import data as data_lib
from emonet_tf import distribute, evaluation
from emonet_tf import features as features_lib
from emonet_tf.categories import EMONET_CATEGORIES, canonical_name
from emonet_tf.classifier import EmoNetClassifier
from emonet_tf.preprocessor import EmoNetPreprocessor
from emonet_tf.training import loop, progress
from emonet_tf.training import state as state_lib
from emonet_tf.training.config import TrainConfig, TrainConfigError, validate_config

log = logging.getLogger(__name__)

RUN_CONFIG = "run_config.json"


@dataclass
class RunPlan:
    """A run checked against its data, weights and devices, with nothing written yet."""

    config: TrainConfig
    info: data_lib.DatasetInfo
    weights: Any  # a WeightSet, or None for init=scratch
    strategy: tf.distribute.Strategy
    chief: bool
    steps_per_epoch: int
    policy: str  # Keras dtype policy name: float32, mixed_float16 or mixed_bfloat16
    timing: dict[str, float] = field(default_factory=dict)

    @property
    def preprocessor(self) -> EmoNetPreprocessor:
        """The preprocessing of this run (TrainConfig.resize_method/antialias): training, the feature cache,
        evaluation and the exported model all use it; the model carries it (`model.preprocessor`)."""
        return run_preprocessor(self.config)

    @property
    def total_steps(self) -> int:
        total = self.steps_per_epoch * self.config.epochs
        return total if self.config.max_steps is None else min(total, self.config.max_steps)


def read_weights(config: TrainConfig, info: data_lib.DatasetInfo):
    """The init weights (a WeightSet; None for scratch), checked against the data before any model is built.

    Raises:
      TrainConfigError: a loaded head whose size or class order does not fit the data.
      WeightFormatError: an unreadable weight file.
    """
    if config.init == "scratch":
        return None
    from emonet_tf.weights import read_weights as read_weight_file  # only the weight-file inits need them

    weights = (
        config.weights
        if not isinstance(config.weights, (str, os.PathLike))
        else read_weight_file(config.weights, mean=config.mean)
    )
    if config.init == "emonet" and not config.new_head:
        if weights.num_classes is None:
            raise TrainConfigError(f"{weights.source} has no fc8 to load; use --new_head")
        if weights.num_classes != info.num_classes:
            raise TrainConfigError(
                f"The EmoNet weights {weights.source} have a {weights.num_classes}-way head but {info.name} has "
                f"{info.num_classes} classes; use --new_head to train a new {info.num_classes}-way fc8"
            )
        _check_class_order(info.class_names, weights.class_names or EMONET_CATEGORIES)
    return weights


def _check_class_order(data_names, head_names) -> None:
    """A loaded head must see the data's labels in its own output order (a silent label bug otherwise)."""
    data_canon = [canonical_name(n) for n in data_names]
    head_canon = [canonical_name(n) or n for n in head_names]
    if all(data_canon) and data_canon != head_canon:
        raise TrainConfigError(
            "The dataset's label order differs from the loaded head's output order "
            f"(data: {list(data_names)}; head: {list(head_names)}); use --new_head"
        )
    if not all(data_canon):
        log.warning(
            "Dataset labels %s are not emotion names; assuming they follow the head's order %s",
            list(data_names),
            list(head_names),
        )


def check_resume(config: TrainConfig) -> None:
    """Refuses a model_dir whose run_config.json has other IDENTITY_FIELDS values; reads only.

    Raises:
      TrainConfigError: naming each differing field with its saved and requested value.
    """
    path = os.path.join(config.model_dir, RUN_CONFIG)
    if not os.path.exists(path):
        return
    with open(path, encoding="utf-8") as f:
        saved = json.load(f)
    identity = json.loads(json.dumps(config.identity()))
    diff = {k: (saved.get(k), identity[k]) for k in identity if saved.get(k) != identity[k]}
    if diff:
        raise TrainConfigError(
            f"{config.model_dir} holds a run with other settings "
            f"({', '.join(f'{k}: {a!r} -> {b!r}' for k, (a, b) in diff.items())}); "
            "use a new --model_dir or the same flags to resume"
        )


def write_run_config(config: TrainConfig) -> None:
    """Creates model_dir and records the run's identity in it, once (a resumed run keeps the first file)."""
    path = os.path.join(config.model_dir, RUN_CONFIG)
    if os.path.exists(path):
        return
    os.makedirs(config.model_dir, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(config.identity(), f, indent=2)


def run_preprocessor(config: TrainConfig) -> EmoNetPreprocessor:
    """The run's preprocessing (--resize_method/--antialias), for the checks before the RunPlan exists."""
    return EmoNetPreprocessor(resize_method=config.resize_method, antialias=config.antialias)


def prepare_run(config: TrainConfig) -> RunPlan:
    """Every check a run can fail before work starts; writes nothing.

    Raises:
      TrainConfigError: bad settings, a model_dir of another run, a head that does not fit the data,
        a global batch not divisible by the replicas.
      DatasetError: an unknown, unprepared or empty dataset or split, fewer examples than one batch,
        records pre-resized by another resize than the run's (`data.check_preprocessor`).
      WeightFormatError: an unreadable weight file.
    """
    validate_config(config)
    splits = (config.train_split,) + ((config.eval_split,) if config.eval_split else ())
    info = data_lib.inspect_dataset(config.dataset, config.data_dir, splits=splits)
    # Pre-resized records read by a model that resizes differently: refused here, before run_config.json
    # and the feature cache are written (the datasets check it too, but only once the run has started).
    data_lib.check_preprocessor(info, run_preprocessor(config))
    spe = data_lib.steps_per_epoch(info.num_examples(config.train_split), config.global_batch_size)
    strategy = distribute.get_strategy(config.strategy, config.tpu)
    chief = distribute.is_chief(strategy)
    if chief:  # only the chief checks and writes run_config.json; other workers follow it
        check_resume(config)
    weights = read_weights(config, info)
    if config.global_batch_size % strategy.num_replicas_in_sync:
        raise TrainConfigError(
            f"global_batch_size {config.global_batch_size} is not divisible by the "
            f"{strategy.num_replicas_in_sync} replicas"
        )
    policy = (
        distribute.mixed_precision_policy(strategy, config.mixed_precision) if config.mixed_precision else "float32"
    )
    _note_weights_preprocessing(config, weights)
    return RunPlan(
        config=config, info=info, weights=weights, strategy=strategy, chief=chief, steps_per_epoch=spe, policy=policy
    )


def _note_weights_preprocessing(config: TrainConfig, weights) -> None:
    """Logs when the init weights were saved with other preprocessing than the run's: the run's wins."""
    saved = getattr(weights, "preprocessing", None)
    if saved is None:
        return
    run = run_preprocessor(config)
    if EmoNetPreprocessor.from_config(saved) != run:
        log.warning(
            "%s was saved with preprocessing %s; this run trains, evaluates and exports with %s "
            "(--resize_method/--antialias)",
            weights.source,
            EmoNetPreprocessor.from_config(saved).describe(),
            run.describe(),
        )


@contextlib.contextmanager
def dtype_policy(policy: str) -> Iterator[None]:
    """Keras' global dtype policy set to `policy` in the body, restored after."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def train_and_evaluate(config: TrainConfig, step_hook: Optional[Callable[[int], None]] = None) -> dict[str, Any]:
    """Trains (or resumes) per `config`, evaluates on `eval_split`, exports; returns a summary dict.

    step_hook(step) is called after every training step (and its checkpoint); tests raise from it to
    simulate a killed run. The summary: step, start_step, steps_per_epoch, total_steps, feature_cache,
    strategy, replicas, dtype_policy, timing (seconds; examples_per_second overall and
    steady_examples_per_second after the first step, see fit_epochs), train (last logged loss
    and accuracy), epochs (per-epoch metrics), eval/eval_files (chief, with eval_split), export, model.

    Raises:
      see prepare_run; nothing is written to model_dir when it raises.
    """
    plan = prepare_run(config)
    with dtype_policy(plan.policy):
        return _execute(plan, step_hook)


def _worker_dir(plan: RunPlan, sub: str) -> str:
    """The chief writes under model_dir; other workers write to a scratch folder they delete."""
    if plan.chief:
        return os.path.join(plan.config.model_dir, sub)
    return os.path.join(plan.config.model_dir, f"worker{distribute.task_id(plan.strategy)}_tmp", sub)


def start_run(plan: RunPlan) -> tuple[EmoNetClassifier, state_lib.TrainState, tf.train.CheckpointManager]:
    """Builds the model and its state, restores the latest checkpoint, then records run_config.json.

    The run starts here: run_config.json is written (by the chief) only after the model was built
    and the checkpoint restored.
    """
    config = plan.config
    model, state = state_lib.create_emonet_state(config, plan.info, plan.weights, plan.strategy, plan.policy)
    model.preprocessor = plan.preprocessor  # saved in the exported .keras/SavedModel: they serve as trained
    plan.weights = None  # the model holds a copy now; let the weight arrays (up to 230 MB) be freed
    checkpoint = state_lib.emonet_checkpoint(state, model, config)
    manager = tf.train.CheckpointManager(
        checkpoint, _worker_dir(plan, "checkpoints"), max_to_keep=config.keep_checkpoints
    )
    # Every worker resumes from the chief's checkpoints (a shared file system on a cluster).
    latest = state_lib.restore_checkpoint(checkpoint, os.path.join(config.model_dir, "checkpoints"))
    if latest:
        log.info("Resumed from %s at step %d", latest, int(state.step.numpy()))
    if plan.chief:
        write_run_config(config)
    return model, state, manager


def _execute(plan: RunPlan, step_hook) -> dict[str, Any]:
    config = plan.config
    model, state, manager = start_run(plan)
    cache_dirs = build_feature_caches(plan, model) if config.uses_feature_cache else {}
    writers = _Writers(os.path.join(config.model_dir, "logs"), plan.chief)
    evaluate = functools.partial(run_evaluation, plan, model, cache_dirs)
    start_step = int(state.step.numpy())
    fit = fit_epochs(plan, state, manager, cache_dirs, writers, evaluate, step_hook)
    state_lib.save_checkpoint(manager, int(state.step.numpy()))
    writers.train.flush()
    result: dict[str, Any] = {
        "step": int(state.step.numpy()),
        "start_step": start_step,
        "steps_per_epoch": plan.steps_per_epoch,
        "total_steps": plan.total_steps,
        "feature_cache": config.uses_feature_cache,
        "strategy": distribute.strategy_kind(plan.strategy),
        "replicas": plan.strategy.num_replicas_in_sync,
        "dtype_policy": plan.policy,
        "timing": plan.timing,
        "train": fit["train"],
        "epochs": fit["epochs"],
    }
    if config.eval_split and plan.chief:
        result.update(final_evaluation(plan, evaluate, writers, result["step"]))
        if config.eval_predictions:
            result["eval_predictions"] = write_eval_predictions(plan, model)
    if config.export and plan.chief:
        result["export"] = export_model(model, config.export_dir or os.path.join(config.model_dir, "export"))
    if not plan.chief:
        shutil.rmtree(
            os.path.join(config.model_dir, f"worker{distribute.task_id(plan.strategy)}_tmp"), ignore_errors=True
        )
    result["model"] = model
    return result


def build_feature_caches(plan: RunPlan, model: EmoNetClassifier) -> dict[str, str]:
    """Fills (or resumes) the relu7 cache of the train and eval splits; returns {split: cache folder}.

    Shows a bar per split counted in frames; adds timing["feature_cache_seconds"].
    """
    config, info = plan.config, plan.info
    t0 = time.perf_counter()
    backbone_hash = features_lib.backbone_fingerprint(model.backbone)
    # Workers other than the chief build their own copy: the cache is read by every input pipeline.
    root = os.path.join(
        config.model_dir, "feature_cache" if plan.chief else f"feature_cache_worker{distribute.task_id(plan.strategy)}"
    )
    cache_dirs = {}
    for split in [config.train_split] + ([config.eval_split] if config.eval_split else []):
        fingerprint = features_lib.cache_fingerprint(backbone_hash, info, split, plan.preprocessor, plan.policy)
        cache_dirs[split] = os.path.join(root, split)
        with progress.watch_cache_build(
            cache_dirs[split], fingerprint, info.num_examples(split), f"feature cache {split}", enabled=config.progress
        ):
            features_lib.build_feature_cache(
                model.backbone,
                info,
                split,
                cache_dirs[split],
                fingerprint=fingerprint,
                batch_size=config.eval_batch_size,
                preprocessor=plan.preprocessor,
            )
    plan.timing["feature_cache_seconds"] = time.perf_counter() - t0
    return cache_dirs


def train_batches(plan: RunPlan, cache_dirs: dict[str, str], epoch: int, offset: int):
    """The distributed batches of `epoch` from its step `offset` on: cached features or decoded images."""
    config = plan.config
    common = dict(
        global_batch_size=config.global_batch_size,
        seed=config.seed,
        epoch=epoch,
        start_step=offset,
        shuffle_buffer=config.shuffle_buffer,
    )

    def make(ctx: tf.distribute.InputContext) -> tf.data.Dataset:
        if cache_dirs:
            return features_lib.cached_train_dataset(cache_dirs[config.train_split], input_context=ctx, **common)
        return data_lib.train_dataset(
            plan.info,
            config.train_split,
            augment=config.augment,
            preprocessor=plan.preprocessor,
            input_context=ctx,
            **common,
        )

    return plan.strategy.distribute_datasets_from_function(make)


def run_evaluation(plan: RunPlan, model: EmoNetClassifier, cache_dirs: dict[str, str]) -> dict[str, Any]:
    """Metrics of `model` on eval_split (see evaluation.metrics_from_predictions), with a bar in frames."""
    config, info = plan.config, plan.info
    with progress.bar(info.num_examples(config.eval_split), f"evaluate {config.eval_split}", config.progress) as bar:
        if cache_dirs:
            feats, labels, video_ids = features_lib.load_cache(cache_dirs[config.eval_split])
            return loop.evaluate_features(
                model.head,
                feats,
                labels,
                info.class_names,
                video_ids=video_ids if config.video_metrics else None,
                batch_size=config.eval_batch_size,
                progress=bar,
            )
        batches = data_lib.eval_dataset(
            info,
            config.eval_split,
            batch_size=config.eval_batch_size,
            preprocessor=model.preprocessor,
            with_video_id=config.video_metrics,
        )
        return loop.evaluate(model, batches, info.class_names, progress=bar)


class _Writers:
    """TensorBoard writers of logs/train and logs/eval (no-op writers off the chief)."""

    def __init__(self, logs_dir: str, chief: bool):
        make = (
            (lambda sub: tf.summary.create_file_writer(os.path.join(logs_dir, sub)))
            if chief
            else (lambda sub: tf.summary.create_noop_writer())
        )
        self.train, self.eval = make("train"), make("eval")

    def write_train(self, step: int, loss: float, accuracy: float, learning_rate: float) -> None:
        with self.train.as_default(step=step):
            tf.summary.scalar("loss", loss)
            tf.summary.scalar("accuracy", accuracy)
            tf.summary.scalar("learning_rate", learning_rate)

    def write_eval(self, step: int, metrics: dict[str, Any]) -> None:
        with self.eval.as_default(step=step):
            for key in ("top1", "top5", "mean_auc"):
                tf.summary.scalar(key, metrics[key])


def fit_epochs(
    plan: RunPlan,
    state: state_lib.TrainState,
    manager: tf.train.CheckpointManager,
    cache_dirs: dict[str, str],
    writers: _Writers,
    evaluate: Callable[[], dict],
    step_hook: Optional[Callable[[int], None]],
) -> dict[str, Any]:
    """Epochs from state.step to total_steps, checkpointing and logging; adds train timing to plan.timing.

    timing: "train_seconds" (wall time of all the steps, every epoch's dataset start, the first step's
    tracing, checkpoints, evaluations between epochs), "examples_per_second" (examples over
    train_seconds), "first_step_seconds" (to the end of the run's first step: the first dataset's start
    and the step's tracing) and "steady_examples_per_second" (the examples of the other steps over the
    time after the first step, less the evaluations between epochs: the rate a longer run converges to,
    comparable with the step on a constant batch; NaN with fewer than two steps).

    Returns {"train": last logged {"loss", "accuracy"} (NaN when none), "epochs": per-epoch metrics}.
    """
    config, spe, total = plan.config, plan.steps_per_epoch, plan.total_steps
    train_step = loop.make_train_step(state, plan.strategy, config.global_batch_size)
    window, last = loop.LossWindow(), {"loss": float("nan"), "accuracy": float("nan")}
    epochs: list[dict[str, Any]] = []

    def on_log(step: int, loss: float, accuracy: float) -> None:
        last.update(loss=loss, accuracy=accuracy)
        writers.write_train(step, loss, accuracy, float(keras.ops.convert_to_numpy(state.optimizer.learning_rate)))
        log.info("step %d/%d epoch %d loss %.4f accuracy %.4f", step, total, (step - 1) // spe, loss, accuracy)

    first_step_done: list[float] = []  # perf_counter after the run's first step (its tracing included)

    def after_step(step: int) -> None:
        if not first_step_done:
            first_step_done.append(time.perf_counter())
        if step % config.checkpoint_every == 0:
            state_lib.save_checkpoint(manager, step)
        if step_hook is not None:
            step_hook(step)

    start = step = int(state.step.numpy())
    eval_seconds = 0.0  # evaluations between epochs: not part of the steady training rate
    t0 = time.perf_counter()
    while step < total:
        epoch, offset = divmod(step, spe)
        step += loop.train_epoch(
            train_step,
            train_batches(plan, cache_dirs, epoch, offset),
            state,
            total_steps=total,
            global_batch_size=config.global_batch_size,
            log_every=config.log_every,
            window=window,
            on_log=on_log,
            after_step=after_step,
        )
        if config.eval_every_epoch and config.eval_split and step % spe == 0 and plan.chief:
            e0 = time.perf_counter()
            epochs.append(_epoch_evaluation(evaluate, writers, step, spe))
            eval_seconds += time.perf_counter() - e0
    end = time.perf_counter()
    seconds = end - t0
    plan.timing["train_seconds"] = seconds
    plan.timing["examples_per_second"] = (
        (step - start) * config.global_batch_size / seconds if step > start else float("nan")
    )
    if first_step_done:
        plan.timing["first_step_seconds"] = first_step_done[0] - t0
    steady_steps = step - start - 1
    steady_seconds = end - first_step_done[0] - eval_seconds if first_step_done else 0.0
    plan.timing["steady_examples_per_second"] = (
        steady_steps * config.global_batch_size / steady_seconds
        if steady_steps > 0 and steady_seconds > 0
        else float("nan")
    )
    return {"train": last, "epochs": epochs}


def _epoch_evaluation(evaluate: Callable[[], dict], writers: _Writers, step: int, spe: int) -> dict[str, Any]:
    metrics = evaluate()
    writers.write_eval(step, metrics)
    log.info(
        "epoch %d: top1 %.4f top5 %.4f mean AUC %.4f",
        step // spe,
        metrics["top1"],
        metrics["top5"],
        metrics["mean_auc"],
    )
    return {
        "epoch": step // spe,
        "step": step,
        "top1": metrics["top1"],
        "top5": metrics["top5"],
        "mean_auc": metrics["mean_auc"],
    }


def final_evaluation(plan: RunPlan, evaluate: Callable[[], dict], writers: _Writers, step: int) -> dict[str, Any]:
    """Evaluates, logs to TensorBoard, writes model_dir/eval and prints the report beside the paper's."""
    t0 = time.perf_counter()
    metrics = evaluate()
    plan.timing["eval_seconds"] = time.perf_counter() - t0
    writers.write_eval(step, metrics)
    writers.eval.flush()
    files = evaluation.write_report(metrics, os.path.join(plan.config.model_dir, "eval"))
    print(evaluation.format_report(metrics), flush=True)
    return {"eval": metrics, "eval_files": files}


def write_eval_predictions(plan: RunPlan, model: EmoNetClassifier) -> str:
    """Per-example predictions of eval_split (probabilities, logits, video_id, frame_index, timestamp_ms,
    label) to TrainConfig.eval_predictions (.csv or .parquet; relative paths are under model_dir), with a
    bar in frames. A second pass over the split's images (the feature cache has no frame times).
    Returns the path written.
    """
    from emonet_tf import predictions

    config, info = plan.config, plan.info
    path = (
        config.eval_predictions
        if os.path.isabs(config.eval_predictions)
        else os.path.join(config.model_dir, config.eval_predictions)
    )
    batches = predictions.prediction_batches(
        info, config.eval_split, batch_size=config.eval_batch_size, preprocessor=model.preprocessor
    )
    with progress.bar(info.num_examples(config.eval_split), f"predictions {config.eval_split}", config.progress) as bar:
        summary = predictions.write_predictions(
            model, progress.count_examples(batches, bar), path, label_names=info.class_names, logits=True
        )
    log.info("Wrote %d predictions of %s to %s", summary.rows, config.eval_split, summary.path)
    return summary.path


def export_model(model: EmoNetClassifier, export_dir: str) -> dict[str, str]:
    """A SavedModel (serving on image bytes with `model.preprocessor`, as in training) and a .keras file
    (which records the same preprocessor) under `export_dir`.

    Returns {"saved_model": folder, "keras": file path}.
    """
    from emonet_tf.export import export_keras, export_saved_model

    os.makedirs(export_dir, exist_ok=True)
    saved_model = os.path.join(export_dir, "saved_model")
    log.info(export_saved_model(model, saved_model))
    keras_path = os.path.join(export_dir, "emonet.keras")
    log.info(export_keras(model, keras_path))
    return {"saved_model": saved_model, "keras": keras_path}
