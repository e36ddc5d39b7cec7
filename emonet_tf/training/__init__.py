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

The pieces, each usable and tested on its own:
  config      TrainConfig (the one declaration of the settings), validate_config, IDENTITY_FIELDS
  cli_flags   define_flags / config_from_flags: absl flags generated from TrainConfig
  state       TrainState, create_train_state, build_model, save_checkpoint / restore_checkpoint
  loop        replica_step, make_train_step, train_epoch, evaluate, evaluate_features
  progress    progress bars on stderr counted in frames
  run         prepare_run (every check, nothing written), train_and_evaluate, export_model
"""

from emonet_tf.training.config import (
    IDENTITY_FIELDS,
    INITS,
    TRAIN_LAYERS,
    TrainConfig,
    TrainConfigError,
    config_from_dict,
    validate_config,
)
from emonet_tf.training.loop import LossWindow, evaluate, evaluate_features, make_train_step, replica_step, train_epoch
from emonet_tf.training.run import (
    RUN_CONFIG,
    RunPlan,
    check_resume,
    export_model,
    prepare_run,
    read_weights,
    start_run,
    train_and_evaluate,
    write_run_config,
)
from emonet_tf.training.state import (
    TrainState,
    build_model,
    create_emonet_state,
    create_train_state,
    make_checkpoint,
    restore_checkpoint,
    save_checkpoint,
)

__all__ = [
    "IDENTITY_FIELDS",
    "INITS",
    "RUN_CONFIG",
    "TRAIN_LAYERS",
    "LossWindow",
    "RunPlan",
    "TrainConfig",
    "TrainConfigError",
    "TrainState",
    "build_model",
    "check_resume",
    "config_from_dict",
    "create_emonet_state",
    "create_train_state",
    "evaluate",
    "evaluate_features",
    "export_model",
    "make_checkpoint",
    "make_train_step",
    "prepare_run",
    "read_weights",
    "replica_step",
    "restore_checkpoint",
    "save_checkpoint",
    "start_run",
    "train_and_evaluate",
    "train_epoch",
    "validate_config",
    "write_run_config",
]
