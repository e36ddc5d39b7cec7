"""The strategy switch, and distributed training that reproduces a one-device run of the same global batch.

Mirrored over 2 logical CPUs and MultiWorkerMirrored over 2 processes on 127.0.0.1 each run in
subprocesses (logical devices and collective ops must be configured before TF initializes).
They train the full network path (feature_cache=False, fc8 only) so that the sharded image
pipeline, the replica batches and the optimizer's gradient all-reduce are all exercised.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from _training_helpers import free_port, make_dataset, worker_env
from emonet_tf import distribute, training

WORKER = os.path.join(os.path.dirname(__file__), "workers", "train_worker.py")


def test_auto_resolution(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    expected = "mirrored" if tf.config.list_physical_devices("GPU") else "one_device"
    assert distribute.resolve_strategy_name("auto") == expected
    assert distribute.resolve_strategy_name("auto", tpu="grpc://10.0.0.2:8470") == "tpu"
    monkeypatch.setenv(
        "TF_CONFIG", json.dumps({"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 0}})
    )
    assert distribute.resolve_strategy_name("auto") == "multi_worker"
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": {"worker": ["a:1"]}, "task": {"type": "worker"}}))
    assert distribute.resolve_strategy_name("auto") == expected
    assert distribute.resolve_strategy_name("mirrored") == "mirrored"
    with pytest.raises(ValueError, match="Unknown strategy 'gpus'"):
        distribute.resolve_strategy_name("gpus")
    monkeypatch.setenv("TF_CONFIG", "{not json")
    with pytest.raises(ValueError, match="TF_CONFIG is not valid JSON"):
        distribute.resolve_strategy_name("auto")


def test_local_strategies_and_policies():
    one = distribute.get_strategy("one_device")
    assert isinstance(one, tf.distribute.OneDeviceStrategy) and distribute.is_chief(one)
    assert distribute.strategy_kind(one) == "one_device"
    mirrored = distribute.get_strategy("mirrored")
    assert distribute.strategy_kind(mirrored) == "mirrored" and mirrored.num_replicas_in_sync >= 1
    if not tf.config.list_physical_devices("GPU"):
        assert distribute.mixed_precision_policy(one) == "mixed_bfloat16"
    assert distribute.mixed_precision_policy(one, "mixed_float16") == "mixed_float16"
    with pytest.raises(ValueError):
        distribute.mixed_precision_policy(one, "float8")


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """One-device run: fc8 on the full network, global batch 4, 4 steps (one epoch of 18 frames)."""
    root = tmp_path_factory.mktemp("dist")
    dataset_dir = make_dataset(str(root / "tfds"), videos_per_class=(3, 1), frames_per_video=2).data_dir
    values = dict(
        dataset=str(dataset_dir),
        init="scratch",
        global_batch_size=4,
        epochs=1,
        eval_split="",
        export=False,
        feature_cache=False,
        learning_rate=1e-3,
        seed=11,
        checkpoint_every=2,
        log_every=1,
    )
    result = training.train_and_evaluate(
        training.TrainConfig(model_dir=str(root / "one"), strategy="one_device", **values)
    )
    return root, values, [np.asarray(w) for w in result["model"].head.get_weights()]


def run_workers(root, name, values, envs, logical_cpus=0, timeout=420):
    config_path = root / f"{name}.json"
    config_path.write_text(json.dumps(dict(values, model_dir=str(root / name))))
    procs, outs = [], []
    for i, env in enumerate(envs):
        out = root / f"{name}_{i}.npz"
        outs.append(out)
        procs.append(
            subprocess.Popen(
                [sys.executable, WORKER, str(config_path), str(out), str(logical_cpus)],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
        )
    logs = []
    try:
        for p in procs:
            logs.append(p.communicate(timeout=timeout)[0])
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    for p, log in zip(procs, logs):
        assert p.returncode == 0, log[-4000:]
    return [np.load(out) for out in outs]


def assert_same_head(result, ref):
    np.testing.assert_allclose(result["kernel"], ref[0], rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(result["bias"], ref[1], rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("feature_cache", [False, pytest.param(True, marks=pytest.mark.slow)])
def test_mirrored_over_two_logical_cpus_matches_one_device(reference, feature_cache):
    root, values, ref = reference
    env = worker_env()
    env.pop("TF_CONFIG", None)
    (result,) = run_workers(
        root,
        f"mirrored_{feature_cache}",
        dict(values, strategy="mirrored", feature_cache=feature_cache),
        [env],
        logical_cpus=2,
    )
    assert str(result["strategy"]) == "mirrored" and int(result["replicas"]) == 2 and int(result["step"]) == 4
    assert_same_head(result, ref)


def test_multi_worker_two_processes_match_one_device(reference):
    root, values, ref = reference
    ports = [free_port(), free_port()]
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    envs = []
    for index in range(2):
        env = worker_env()
        env["TF_CONFIG"] = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})
        envs.append(env)
    results = run_workers(root, "multi_worker", dict(values, strategy="auto"), envs)
    for result in results:
        assert str(result["strategy"]) == "multi_worker" and int(result["replicas"]) == 2
        assert int(result["step"]) == 4
        assert_same_head(result, ref)
    # Only the chief wrote checkpoints into model_dir; the other worker cleaned its scratch folder up.
    assert tf.train.latest_checkpoint(str(root / "multi_worker" / "checkpoints")).endswith("ckpt-4")
    assert not os.path.exists(root / "multi_worker" / "worker1_tmp")
