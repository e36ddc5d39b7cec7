r"""Train EmoNet's head (or more) on any TFDS dataset of labelled images; resumable, distributed, exported.

    python train.py --dataset=cowen_keltner --data_dir=~/tensorflow_datasets \
        --init=imagenet --weights=bvlc_alexnet.npy --model_dir=runs/ck

The flags are generated from `emonet_tf.training.TrainConfig`, one per field with its default and
documentation (`python train.py --help`; docs/training.md). `--flagfile=run.flags` reads them from a
file (absl). Running the same command again resumes from the last checkpoint. A refused command
(bad flags, data, weights or model_dir) writes nothing.
"""

from __future__ import annotations

import sys

from absl import app, flags, logging

from emonet_tf import training
from emonet_tf.data import DatasetError
from emonet_tf.training import cli_flags

FLAGS = flags.FLAGS

cli_flags.define_flags(FLAGS)
flags.adopt_module_key_flags(cli_flags)  # `--help` lists them as this script's own flags


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    logging.set_verbosity(logging.INFO)
    from emonet_tf.weights import WeightFormatError

    try:
        result = training.train_and_evaluate(cli_flags.config_from_flags(FLAGS))
    except (DatasetError, training.TrainConfigError, WeightFormatError) as err:
        sys.exit(f"train.py: error: {err}")
    logging.info(
        "Done at step %d (%s, %d replica(s)); timing %s",
        result["step"],
        result["strategy"],
        result["replicas"],
        result["timing"],
    )
    timing = result["timing"]
    if "steady_examples_per_second" in timing:
        logging.info(
            "Training rate: %.2f examples/s after the first step (steady_examples_per_second), %.2f over the "
            "whole training time with the first step's tracing and dataset start (examples_per_second)",
            timing["steady_examples_per_second"],
            timing["examples_per_second"],
        )
    if "export" in result:
        logging.info("Exported %s", result["export"])


if __name__ == "__main__":
    app.run(main)
