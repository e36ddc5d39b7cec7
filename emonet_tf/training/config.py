"""`TrainConfig`: the one declaration of a training run's settings.

Each field carries its documentation in `dataclasses.field(metadata=...)`, readable at run time:
`help` (the text of its `train.py` flag), `identity` (True for the fields that decide whether a
resumed run is the same run, see `IDENTITY_FIELDS`), and for fields with a fixed set of values
`choices` (the flag's texts) with, where a text is not the value itself, `values` (text -> value).
`emonet_tf.training.flags` turns these fields into absl flags; nothing else lists them again.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import Any, Optional, Union

from emonet_tf import distribute, preprocessing

INITS = ("imagenet", "emonet", "scratch")
TRAIN_LAYERS = ("fc8", "fc6-fc8", "all")
#: Flag texts of a tri-state switch (None means "decide from the other settings").
AUTO_BOOL = {"auto": None, "true": True, "false": False}
MIXED_PRECISION = {"false": False, "true": True, **{p: p for p in distribute.MIXED_POLICIES}}


class TrainConfigError(ValueError):
    """Flags that cannot work together, or that do not fit the data or the weights."""


def setting(
    default: Any = dataclasses.MISSING,
    *,
    help: str,
    identity: bool = False,  # noqa: A002 (absl's word)
    choices: Optional[tuple] = None,
    values: Optional[dict] = None,
) -> Any:
    """A TrainConfig field with its flag help, identity mark and allowed values (see the module docstring)."""
    metadata = {"help": help, "identity": identity}
    if values is not None:
        metadata["values"] = dict(values)
        choices = tuple(values)
    if choices is not None:
        metadata["choices"] = tuple(choices)
    return dataclasses.field(default=default, metadata=metadata)


@dataclass
class TrainConfig:
    """Everything a training run needs; every field is one `train.py` flag of the same name.

    Units: learning rates per step, batch sizes and buffers in examples, `*_every` in global steps.
    """

    dataset: str = setting(
        identity=True, help=("TFDS dataset name (looked up in --data_dir) or a prepared builder directory.")
    )
    model_dir: str = setting(help="Checkpoints, TensorBoard logs, feature cache, evaluation, export.")
    data_dir: Optional[str] = setting(None, help="TFDS data_dir of --dataset. Nothing is ever downloaded.")
    train_split: str = setting("train", identity=True, help="Training split (TFDS split expressions allowed).")
    eval_split: str = setting("test", help="Evaluation split; empty to skip evaluation.")
    init: str = setting(
        "imagenet",
        identity=True,
        choices=INITS,
        help=("Start from ImageNet AlexNet, EmoNet, or random (seeded) weights."),
    )
    # A path on the command line; Python callers may also pass a loaded WeightSet.
    weights: Any = setting(
        None,
        identity=True,
        help=(
            "Weight file of --init (bvlc_alexnet.npy, .caffemodel, EmoNet dump, .pth, .keras); required unless "
            "--init=scratch."
        ),
    )
    mean: Optional[str] = setting(
        None,
        identity=True,
        help=(
            "Mean image for weight files without one (emonet-py/ecco .pth, ImageNet files): img_mean.txt, "
            ".binaryproto or .npy."
        ),
    )
    new_head: bool = setting(
        False,
        identity=True,
        help=("With --init=emonet: a new fc8 for the dataset's classes instead of EmoNet's 20-way one."),
    )
    train_layers: str = setting(
        "fc8", identity=True, choices=TRAIN_LAYERS, help=("Layers that train; fc8 is the paper's recipe.")
    )
    learning_rate: float = setting(1e-4, identity=True, help="SGD learning rate per step (the paper: 1e-4).")
    momentum: float = setting(0.9, identity=True, help="SGD momentum (MATLAB sgdm default).")
    global_batch_size: int = setting(16, identity=True, help="Global batch over all replicas (the paper: 16).")
    epochs: int = setting(10, help="Epochs (the paper does not say).")
    max_steps: Optional[int] = setting(None, help="Stop at this global step, before the end of --epochs.")
    seed: int = setting(0, identity=True, help="Seed of the data order, augmentation and new weights.")
    shuffle_buffer: int = setting(
        16384, identity=True, help=("Shuffle buffer in examples; <= 0 shuffles the whole split.")
    )
    augment: bool = setting(
        False, identity=True, help=("Random flip and 90-100% crop (the paper used none). Disables the feature cache.")
    )
    feature_cache: Optional[bool] = setting(
        None,
        values=AUTO_BOOL,
        help=("Train fc8 on cached relu7 features (auto: when train_layers=fc8 and no augmentation)."),
    )
    strategy: str = setting(
        "auto", choices=distribute.STRATEGIES, help=("tf.distribute strategy; auto respects TF_CONFIG and --tpu.")
    )
    tpu: Optional[str] = setting(None, help="TPU name or address (implies --strategy=tpu under auto).")
    # Python callers may also pass "auto" (the same as True).
    mixed_precision: Union[bool, str] = setting(
        False,
        identity=True,
        values=MIXED_PRECISION,
        help=("true: mixed_float16 on GPU, mixed_bfloat16 on TPU/CPU; or name the policy."),
    )
    checkpoint_every: int = setting(500, help="Global steps between checkpoints.")
    keep_checkpoints: int = setting(3, help="Checkpoints kept.")
    log_every: int = setting(50, help="Global steps between TensorBoard/log lines.")
    eval_every_epoch: bool = setting(False, help="Also evaluate after every epoch.")
    eval_batch_size: int = setting(32, help="Batch (examples) of evaluation and feature extraction.")
    video_metrics: bool = setting(True, help="Add video-level metrics (mean frame probabilities per video_id).")
    eval_predictions: Optional[str] = setting(
        None,
        help=(
            "Also write per-example predictions of eval_split (probabilities, logits, video_id, frame_index, "
            "timestamp_ms, label) to this .csv or .parquet file; relative to model_dir."
        ),
    )
    export: bool = setting(True, help="Export a SavedModel and a .keras file at the end.")
    export_dir: Optional[str] = setting(None, help="Where to export (default: <model_dir>/export).")
    resize_method: str = setting(
        preprocessing.DEFAULT_RESIZE_METHOD,
        identity=True,
        choices=preprocessing.RESIZE_METHODS,
        help="Image resize of training, evaluation and export; saved with the model "
        "(its preprocessor), so the .keras file and SavedModel serve with it.",
    )
    antialias: bool = setting(True, identity=True, help="Antialias when shrinking (tf.image.resize methods).")
    progress: bool = setting(
        True, help=("Progress bars on stderr, counted in frames, for the feature cache build and the evaluation.")
    )

    @property
    def uses_feature_cache(self) -> bool:
        """Whether fc8 trains on cached relu7 features (resolves feature_cache=None)."""
        if self.feature_cache is None:
            return self.train_layers == "fc8" and not self.augment
        return bool(self.feature_cache)

    def identity(self) -> dict[str, Any]:
        """The IDENTITY_FIELDS values, JSON-ready (a WeightSet is named by its source)."""
        values = {k: getattr(self, k) for k in IDENTITY_FIELDS}
        if not isinstance(values["weights"], (str, type(None))):
            values["weights"] = (
                os.fspath(values["weights"])
                if isinstance(values["weights"], os.PathLike)
                else getattr(values["weights"], "source", repr(type(values["weights"])))
            )
        return values


#: Fields that define the run: a resumed run must use the same values (marked identity=True above).
IDENTITY_FIELDS = tuple(f.name for f in dataclasses.fields(TrainConfig) if f.metadata["identity"])
#: Settings that must be >= 1.
_POSITIVE = ("global_batch_size", "epochs", "checkpoint_every", "log_every", "eval_batch_size")


def validate_config(config: TrainConfig) -> None:
    """Rejects impossible settings before anything is read.

    Raises:
      TrainConfigError: a value outside a field's choices, a missing weight file, the feature cache
        with a trained backbone or augmentation, a non-positive size or rate, eval_predictions without
        an eval_split or with another suffix than .csv/.parquet/.pq, an output path (model_dir,
        export_dir, eval_predictions) that is a file where a folder goes or the reverse, or unwritable.
    """
    for f in dataclasses.fields(TrainConfig):
        allowed = tuple(f.metadata.get("values", {}).values()) or f.metadata.get("choices")
        if f.name == "mixed_precision":
            allowed = allowed + ("auto",)
        if allowed and getattr(config, f.name) not in allowed:
            raise TrainConfigError(f"{f.name} must be one of {allowed}, got {getattr(config, f.name)!r}")
    if config.init != "scratch" and config.weights is None:
        raise TrainConfigError(f"init={config.init} needs a weight file (--weights)")
    if config.feature_cache and (config.train_layers != "fc8" or config.augment):
        raise TrainConfigError(
            "the feature cache needs a frozen backbone and fixed inputs: train_layers=fc8 and no augmentation"
        )
    for name in _POSITIVE:
        if getattr(config, name) < 1:
            raise TrainConfigError(f"{name} must be >= 1, got {getattr(config, name)}")
    if config.learning_rate <= 0:
        raise TrainConfigError(f"learning_rate must be > 0, got {config.learning_rate}")
    if config.eval_predictions:
        if not config.eval_split:
            raise TrainConfigError("eval_predictions needs an eval_split to predict")
        if not config.eval_predictions.lower().endswith((".csv", ".parquet", ".pq")):
            raise TrainConfigError(
                f"eval_predictions must end in .csv, .parquet or .pq, got {config.eval_predictions!r}"
            )
    _check_output_paths(config)


def _output_paths(config: TrainConfig) -> list[tuple[str, str, bool]]:
    """(setting, path, is_folder) of everything a run writes, resolved as the run resolves them."""
    paths = [("model_dir", config.model_dir, True)]
    if config.export:
        paths.append(("export_dir", config.export_dir or os.path.join(config.model_dir, "export"), True))
    if config.eval_predictions:
        target = config.eval_predictions
        paths.append(
            ("eval_predictions", target if os.path.isabs(target) else os.path.join(config.model_dir, target), False)
        )
    return paths


def _check_output_paths(config: TrainConfig) -> None:
    """Refuses, before any work, an output folder that is a file, or an output file that is a folder, or
    one under an existing file or where nothing can be written: otherwise a whole run trains and
    evaluates, then dies writing its results."""
    for name, path, folder in _output_paths(config):
        path = os.path.abspath(path)
        if folder and os.path.exists(path) and not os.path.isdir(path):
            raise TrainConfigError(f"{name} {path!r} is a file; it must be a folder (or not exist yet)")
        if not folder and os.path.isdir(path):
            raise TrainConfigError(f"{name} {path!r} is a folder; it must be a file path")
        existing = path  # the nearest part of the path that exists decides whether it can be written
        while not os.path.exists(existing) and os.path.dirname(existing) != existing:
            existing = os.path.dirname(existing)
        if existing != path and not os.path.isdir(existing):
            raise TrainConfigError(f"{name} {path!r} lies under the file {existing!r}")
        if not os.access(existing, os.W_OK):
            raise TrainConfigError(f"{name} {path!r} cannot be written: {existing!r} is not writable")


def config_from_dict(values: dict[str, Any]) -> TrainConfig:
    """A TrainConfig from a mapping (train.py, JSON files, notebooks).

    Raises:
      TrainConfigError: unknown keys, or a missing dataset/model_dir.
    """
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise TrainConfigError(f"unknown config fields {unknown}")
    missing = [
        f.name
        for f in dataclasses.fields(TrainConfig)
        if f.default is dataclasses.MISSING and values.get(f.name) is None
    ]
    if missing:
        raise TrainConfigError(f"missing required settings {missing}")
    return TrainConfig(**values)
