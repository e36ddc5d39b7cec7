"""The single switch from a name to a `tf.distribute.Strategy`, and the mixed-precision policy.

Keras 3 on TF supports these strategies differently (checked on TF 2.21 / Keras 3.15):
- `model.fit` works with OneDevice/Mirrored, and fails with MultiWorkerMirroredStrategy
  (keras-team/keras#20585). The training loop of `emonet_tf.training` is therefore a custom
  `strategy.run` loop, one code path for every strategy.
- A Keras 3 optimizer created inside `strategy.scope()` all-reduces (sums) the per-replica
  gradients itself in `apply_gradients` (keras/src/backend/tensorflow/optimizer.py,
  `_all_reduce_sum_gradients`), so each replica's loss must be divided by the GLOBAL batch size.
- `keras.optimizers.LossScaleOptimizer.apply` handles replica/cross-replica contexts itself.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Optional

import tensorflow as tf

STRATEGIES = ("auto", "one_device", "mirrored", "multi_worker", "tpu")

log = logging.getLogger(__name__)


def tf_config_num_workers() -> int:
    """Number of worker tasks (chief included) in the TF_CONFIG environment variable; 0 when unset."""
    raw = os.environ.get("TF_CONFIG")
    if not raw:
        return 0
    try:
        cluster = json.loads(raw).get("cluster", {})
    except json.JSONDecodeError as err:
        raise ValueError(f"TF_CONFIG is not valid JSON: {err}") from None
    return len(cluster.get("worker", [])) + len(cluster.get("chief", []))


def _local_devices(kind: str) -> list[str]:
    return [d.name for d in tf.config.list_logical_devices(kind)]


def resolve_strategy_name(name: str = "auto", tpu: Optional[str] = None) -> str:
    """What "auto" means here: tpu if given, multi_worker under a multi-worker TF_CONFIG, mirrored with
    GPUs, else one_device. Other names are returned unchanged (after checking them)."""
    if name not in STRATEGIES:
        raise ValueError(f"Unknown strategy {name!r}; choose one of {', '.join(STRATEGIES)}")
    if name != "auto":
        return name
    if tpu:
        return "tpu"
    if tf_config_num_workers() > 1:
        return "multi_worker"
    if tf.config.list_physical_devices("GPU"):
        return "mirrored"
    return "one_device"


def get_strategy(name: str = "auto", tpu: Optional[str] = None) -> tf.distribute.Strategy:
    """Returns the strategy for `name` in auto|one_device|mirrored|multi_worker|tpu.

    auto: a TPU when `tpu` is given, multi_worker when TF_CONFIG lists several workers, mirrored
    over all local GPUs when there is a GPU, else one_device on the CPU.
    mirrored without GPUs mirrors over all logical CPU devices (tests split the CPU in two).
    multi_worker must be created before any other TF op runs in the process (a TF requirement).
    """
    name = resolve_strategy_name(name, tpu)
    if name == "tpu":
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu or "")
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        strategy = tf.distribute.TPUStrategy(resolver)
    elif name == "multi_worker":
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
    elif name == "mirrored":
        gpus = _local_devices("GPU")
        strategy = tf.distribute.MirroredStrategy(devices=gpus or _local_devices("CPU"))
    else:
        gpus = _local_devices("GPU")
        strategy = tf.distribute.OneDeviceStrategy(gpus[0] if gpus else "/cpu:0")
    log.info("Strategy %s with %d replica(s)", type(strategy).__name__, strategy.num_replicas_in_sync)
    return strategy


def strategy_kind(strategy: tf.distribute.Strategy) -> str:
    """'tpu', 'multi_worker', 'mirrored' or 'one_device' (also for the default strategy)."""
    if isinstance(strategy, tf.distribute.TPUStrategy):
        return "tpu"
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return "multi_worker"
    if isinstance(strategy, tf.distribute.MirroredStrategy):
        return "mirrored"
    return "one_device"


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """True on the task that writes checkpoints, logs and exports (always true off multi-worker)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if strategy_kind(strategy) != "multi_worker" or resolver is None:
        return True
    task_type, task_id = resolver.task_type, resolver.task_id
    cluster = resolver.cluster_spec().as_dict()
    if task_type is None:
        return True
    return task_type == "chief" or (task_type == "worker" and task_id == 0 and "chief" not in cluster)


def task_id(strategy: tf.distribute.Strategy) -> int:
    resolver = getattr(strategy, "cluster_resolver", None)
    if strategy_kind(strategy) != "multi_worker" or resolver is None or resolver.task_id is None:
        return 0
    return int(resolver.task_id)


MIXED_POLICIES = ("mixed_float16", "mixed_bfloat16")


def mixed_precision_policy(strategy: tf.distribute.Strategy, requested="auto") -> str:
    """mixed_float16 on GPUs (with loss scaling), mixed_bfloat16 on TPUs and CPUs; or the policy named."""
    if requested in MIXED_POLICIES:
        return requested
    if requested not in (True, "auto"):
        raise ValueError(f"mixed precision must be True/'auto' or one of {MIXED_POLICIES}, got {requested!r}")
    if strategy_kind(strategy) == "tpu":
        return "mixed_bfloat16"
    devices = strategy.extended.worker_devices
    on_gpu = any("GPU" in d.upper() for d in devices) or (
        strategy_kind(strategy) == "multi_worker" and bool(tf.config.list_physical_devices("GPU"))
    )
    return "mixed_float16" if on_gpu else "mixed_bfloat16"
