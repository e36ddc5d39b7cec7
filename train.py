"""Train EmoNet's head (or more) on any TFDS dataset of labelled images; resumable, distributed, exported.

    python train.py --dataset=cowen_keltner --data_dir=~/tensorflow_datasets \
        --init=imagenet --weights=bvlc_alexnet.npy --model_dir=runs/ck

Flags map one to one onto `emonet_tf.training.TrainConfig` (see docs/training.md); `--flagfile=run.flags`
reads them from a file (absl). Running the same command again resumes from the last checkpoint.
"""
from __future__ import annotations

import sys

from absl import app, flags, logging

from emonet_tf import distribute, training
from emonet_tf.data import DatasetError
from emonet_tf.preprocessing import DEFAULT_RESIZE_METHOD, RESIZE_METHODS

FLAGS = flags.FLAGS

flags.DEFINE_string("dataset", None, "TFDS dataset name (looked up in --data_dir) or a prepared builder directory.")
flags.DEFINE_string("data_dir", None, "TFDS data_dir of --dataset. Nothing is ever downloaded.")
flags.DEFINE_string("model_dir", None, "Checkpoints, TensorBoard logs, feature cache, evaluation, export.")
flags.DEFINE_string("train_split", "train", "Training split (TFDS split expressions allowed).")
flags.DEFINE_string("eval_split", "test", "Evaluation split; empty to skip evaluation.")
flags.DEFINE_enum("init", "imagenet", training.INITS, "Start from ImageNet AlexNet, EmoNet, or random weights.")
flags.DEFINE_string("weights", None, "Weight file of --init (bvlc_alexnet.npy, .caffemodel, EmoNet dump, .pth, .keras).")
flags.DEFINE_string("mean", None, "Mean image for weight files without one (emonet-py/ecco .pth, ImageNet files): "
                    "img_mean.txt, .binaryproto or .npy.")
flags.DEFINE_bool("new_head", False, "With --init=emonet: a new fc8 for the dataset's classes instead of EmoNet's.")
flags.DEFINE_enum("train_layers", "fc8", training.TRAIN_LAYERS, "Layers that train; fc8 is the paper's recipe.")
flags.DEFINE_float("learning_rate", 1e-4, "SGD learning rate (the paper: 1e-4).")
flags.DEFINE_float("momentum", 0.9, "SGD momentum (MATLAB sgdm default).")
flags.DEFINE_integer("global_batch_size", 16, "Global batch over all replicas (the paper: 16).")
flags.DEFINE_integer("epochs", 10, "Epochs (the paper does not say).")
flags.DEFINE_integer("max_steps", None, "Stop at this global step, before the end of --epochs.")
flags.DEFINE_integer("seed", 0, "Seed of the data order, augmentation and new weights.")
flags.DEFINE_integer("shuffle_buffer", 16384, "Shuffle buffer in examples; <= 0 shuffles the whole split.")
flags.DEFINE_bool("augment", False, "Random flip and 90-100% crop (the paper used none). Disables the feature cache.")
flags.DEFINE_enum("feature_cache", "auto", ["auto", "true", "false"],
                  "Train fc8 on cached relu7 features (auto: when train_layers=fc8 and no augmentation).")
flags.DEFINE_enum("strategy", "auto", distribute.STRATEGIES, "tf.distribute strategy; auto respects TF_CONFIG and --tpu.")
flags.DEFINE_string("tpu", None, "TPU name or address (implies --strategy=tpu under auto).")
flags.DEFINE_enum("mixed_precision", "false", ["false", "true"] + list(distribute.MIXED_POLICIES),
                  "true: mixed_float16 on GPU, mixed_bfloat16 on TPU/CPU; or name the policy.")
flags.DEFINE_integer("checkpoint_every", 500, "Steps between checkpoints.")
flags.DEFINE_integer("keep_checkpoints", 3, "Checkpoints kept.")
flags.DEFINE_integer("log_every", 50, "Steps between TensorBoard/log lines.")
flags.DEFINE_bool("eval_every_epoch", False, "Also evaluate after every epoch.")
flags.DEFINE_integer("eval_batch_size", 32, "Batch of evaluation and feature extraction.")
flags.DEFINE_bool("video_metrics", True, "Add video-level metrics (mean frame probabilities per video_id).")
flags.DEFINE_bool("export", True, "Export a SavedModel and a .keras file at the end.")
flags.DEFINE_string("export_dir", None, "Where to export (default: <model_dir>/export).")
flags.DEFINE_enum("resize_method", DEFAULT_RESIZE_METHOD, list(RESIZE_METHODS), "Image resize (training and export).")
flags.DEFINE_bool("antialias", True, "Antialias when shrinking (tf.image.resize methods).")
flags.mark_flags_as_required(["dataset", "model_dir"])

_BOOL_TEXT = {"true": True, "false": False, "auto": None}


def config_from_flags() -> training.TrainConfig:
    values = {name: FLAGS[name].value for name in training.TrainConfig.__dataclass_fields__}
    values["feature_cache"] = _BOOL_TEXT[values["feature_cache"]]
    values["mixed_precision"] = _BOOL_TEXT.get(values["mixed_precision"], values["mixed_precision"])
    return training.config_from_dict(values)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    logging.set_verbosity(logging.INFO)
    from emonet_tf.weights import WeightFormatError

    try:
        result = training.train_and_evaluate(config_from_flags())
    except (DatasetError, training.TrainConfigError, WeightFormatError) as err:
        sys.exit(f"train.py: error: {err}")
    logging.info("Done at step %d (%s, %d replica(s)); timing %s", result["step"], result["strategy"],
                 result["replicas"], result["timing"])
    if "export" in result:
        logging.info("Exported %s", result["export"])


if __name__ == "__main__":
    app.run(main)
