"""Runs one training process for the distribution tests; writes the trained fc8 weights as .npz.

Usage: python train_worker.py CONFIG_JSON OUT_NPZ [LOGICAL_CPUS]
LOGICAL_CPUS splits the CPU into that many logical devices, which TF only allows before it has
initialized its devices, hence a separate process. TF_CONFIG (multi-worker) comes from the environment.
"""

import json
import sys

import numpy as np
import tensorflow as tf


def main(config_path: str, out_path: str, logical_cpus: int = 0) -> None:
    if logical_cpus:
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * logical_cpus)
    from emonet_tf import training

    with open(config_path, encoding="utf-8") as f:
        config = training.TrainConfig(**json.load(f))
    result = training.train_and_evaluate(config)
    kernel, bias = (np.asarray(w) for w in result["model"].head.get_weights())
    np.savez(
        out_path,
        kernel=kernel,
        bias=bias,
        step=result["step"],
        replicas=result["replicas"],
        strategy=result["strategy"],
    )


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else 0)
