"""Corpus-scale feature extraction: several layers and the probabilities of every sampled frame and image,
as sharded Parquet or TFRecord with a manifest, resumable, on one process or on Apache Beam.

    from emonet_tf import extract
    ex = extract.extract(["films/", "photos/"], "features/", weights="emonet.keras", layers=["fc7", "fc8"])
    fc7, keys = ex.layer("fc7"), ex.keys()           # N x 4096 float32; pandas DataFrame of the keys

    emonet extract films/ photos/ --out features/ --layers fc7,fc8 --runner beam --workers 2

Inputs: image and video files, folders (walked as `emonet activations` walks them), a file list, remote
URLs (gs://, s3://, ram:// ... through tf.io.gfile, copied to local scratch before decoding), or a TFDS
split (``tfds:NAME[/CONFIG]:SPLIT``). Preprocessing is the model's own (`EmoNetPreprocessor`, recorded
in the manifest with the weights' fingerprint); the values equal `emonet activations` for the same
layer. Folder layout, row schema and resume: `emonet_tf.extract.shards`; the Beam pipeline:
`emonet_tf.extract.beam`; docs/extract.md.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import tempfile
import threading
import time
from typing import Callable, Optional, Sequence, Union

from emonet_tf.extract.shards import (
    ERRORS,
    MANIFEST,
    OUTPUT_FORMATS,
    Extraction,
    ExtractionError,
    tfrecord_feature_spec,
)
from emonet_tf.extract.sources import (
    DEFAULT_IMAGES_PER_UNIT,
    TfdsSplit,
    WorkUnit,
    is_url,
    parse_tfds,
)

__all__ = [
    "DEFAULT_IMAGES_PER_UNIT",
    "ERRORS",
    "MANIFEST",
    "OUTPUT_FORMATS",
    "RUNNERS",
    "Extraction",
    "ExtractionError",
    "Plan",
    "TfdsSplit",
    "WorkUnit",
    "estimate_rows",
    "extract",
    "plan",
    "run_plan",
    "tfrecord_feature_spec",
]

log = logging.getLogger(__name__)

RUNNERS = ("local", "beam")


@dataclasses.dataclass
class Plan:
    """What an extraction will do: its units, settings and the plan document written to OUT/plan.json."""

    units: list
    document: dict
    extractor: object  # the keras.Model of `emonet_tf.extract.model.build_extractor`
    emonet: object  # the EmoNet whose model and preprocessor are used

    @property
    def settings(self) -> dict:
        return self.document["settings"]


def _sources(inputs: Sequence[str], file_list: Optional[str], tfds: Optional[str], data_dir: Optional[str]):
    from emonet_tf.extract import sources

    split = parse_tfds(tfds, data_dir) if tfds else None
    if tfds and split is None:  # else a mistyped spec would be ignored, and the files extracted alone
        raise ValueError(f"{tfds}: a TFDS split is tfds:NAME[/CONFIG]:SPLIT, e.g. tfds:video_folder:test")
    paths = list(inputs) + (sources.read_file_list(file_list) if file_list else [])
    tfds_inputs = [p for p in paths if p.startswith("tfds:")]
    if tfds_inputs:
        raise ValueError(f"{tfds_inputs[0]}: pass a TFDS split with tfds=..., not among the files")
    if split is None and not paths:
        raise ValueError("nothing to extract: give files, folders, a file list or a TFDS split")
    if split is not None and paths:
        raise ValueError("give files and folders, or a TFDS split, not both")
    return split, sources.collect_sources(paths) if paths else []


def plan(
    inputs: Sequence[str],
    emonet,
    *,
    layers: Sequence[str] = ("fc7", "fc8"),
    output_format: str = "parquet",
    sampling: str = "every5",
    damaged: str = "skip",
    file_list: Optional[str] = None,
    tfds: Optional[str] = None,
    data_dir: Optional[str] = None,
    images_per_unit: int = DEFAULT_IMAGES_PER_UNIT,
    frames_per_unit: Optional[int] = None,
) -> Plan:
    """Lists the inputs and cuts them into work units; builds the extractor. Reads no pixel.

    Raises ValueError for an unknown layer, format, sampling or damaged policy, no inputs, or a TFDS
    split that is not prepared in `data_dir`.
    """
    from emonet_tf import video
    from emonet_tf.extract import model as model_lib
    from emonet_tf.extract import sources
    from emonet_tf.features import weights_fingerprint

    if output_format not in OUTPUT_FORMATS:
        raise ValueError(f"output_format must be one of {', '.join(OUTPUT_FORMATS)}, got {output_format!r}")
    video.FrameSampling.parse(sampling)
    video.check_damaged_policy(damaged)
    extractor = model_lib.build_extractor(emonet.model, layers)
    split, found = _sources(inputs, file_list, tfds, data_dir)
    if split is not None:
        units = sources.plan_tfds_units(split, _tfds_num_examples(split, emonet.preprocessor), images_per_unit)
    else:
        units = sources.plan_units(found, images_per_unit, frames_per_unit)
    settings = {
        "layers": list(layers),
        "output_shapes": model_lib.output_shapes(extractor),
        "output_format": output_format,
        "sampling": video.FrameSampling.parse(sampling).name,
        "damaged": damaged,
        "preprocessing": emonet.preprocessor.get_config(),
        "weights_fingerprint": weights_fingerprint(emonet.model),
        "class_names": list(emonet.class_names),
        "images_per_unit": images_per_unit,
        "frames_per_unit": frames_per_unit,
        "with_label": split is not None,
    }
    from emonet_tf.extract import shards

    return Plan(units, shards.plan_document(settings, [u.to_json() for u in units]), extractor, emonet)


def _tfds_num_examples(split: TfdsSplit, preprocessor) -> int:
    """The split's size; ValueError for a split that is not prepared, or whose frames were pre-resized to
    227x227 by another resize than `preprocessor`'s (they are not resized again: `data.check_preprocessor`)."""
    import tensorflow_datasets as tfds

    from emonet_tf import data

    try:
        builder = tfds.builder(split.name, data_dir=split.data_dir)
        num_examples = builder.info.splits[split.split].num_examples
    except Exception as err:  # tfds raises several kinds (DatasetNotFoundError, KeyError, ValueError ...)
        # The first line only: DatasetNotFoundError goes on to list every dataset TFDS knows (hundreds of lines).
        reason = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise ValueError(
            f"{split.spec}: not a prepared TFDS split in {split.data_dir or 'the default data_dir'} ({reason})"
        ) from None
    made = data.pre_resized_with(builder)
    if made is not None and not data.same_resize(made, preprocessor):
        raise ValueError(
            f"{split.spec}: its frames are already resized to 227x227 ({made.describe()}), but the model's "
            f"preprocessor resizes differently ({preprocessor.describe()}); use the config without _227"
        )
    return num_examples


def extract(
    inputs: Sequence[str],
    out_dir: str,
    *,
    weights: Union[str, os.PathLike, None] = None,
    emonet=None,
    layers: Sequence[str] = ("fc7", "fc8"),
    output_format: str = "parquet",
    sampling: str = "every5",
    damaged: str = "skip",
    file_list: Optional[str] = None,
    tfds: Optional[str] = None,
    data_dir: Optional[str] = None,
    images_per_unit: int = DEFAULT_IMAGES_PER_UNIT,
    frames_per_unit: Optional[int] = None,
    batch_size: int = 32,
    runner: str = "local",
    workers: int = 2,
    pipeline_options: Sequence[str] = (),
    overwrite: bool = False,
    scratch: Optional[str] = None,
    progress=None,
    on_unit: Optional[Callable[[dict], None]] = None,
) -> Extraction:
    """Extracts `layers` and the probabilities of every image and sampled video frame into `out_dir`.

    Args:
      inputs: image/video files and folders, local paths or URLs (tf.io.gfile).
      out_dir: the extraction folder (local or URL); made if missing. A rerun on the same folder with the
        same settings resumes: finished units are kept, not recomputed.
      weights / emonet: a weight file any `EmoNet.from_weights` reads, or a loaded `EmoNet`.
      layers: layer names (`emonet_tf.inference.layer_names`: conv1 ... relu7, fc8); ``probabilities``
        (softmax) is always written.
      output_format: "parquet" or "tfrecord".
      sampling, damaged: video frames to keep (every5, fps10, all ...) and the damaged-video policy,
        as in `emonet activations`.
      file_list: a text file of paths, one per line (relative to its folder).
      tfds, data_dir: a TFDS split ``tfds:NAME[/CONFIG]:SPLIT`` instead of files.
      images_per_unit: images (or TFDS examples) per work unit and shard.
      frames_per_unit: split videos into ranges of this many decoded frames (long films over several
        workers); None keeps each video whole. Each range decodes the whole film (docs/extract.md).
      batch_size: images per forward pass.
      runner: "local" (this process) or "beam" (RunInference; `workers` DirectRunner processes unless
        `pipeline_options` name another runner: Beam's own flags, e.g. ``--runner=DataflowRunner``).
      scratch: local folder for remote copies and staging files (default: the system's temp folder).
      progress: a tqdm-like bar, updated in frames (rows); on Beam from the finished units' records.
      on_unit: called with each finished unit's record (local runner).

    Returns the finished `Extraction`. Raises ValueError for bad arguments, ExtractionError when
    `out_dir` holds another extraction (see `overwrite`) or units did not finish, WeightFormatError for
    unreadable weights. A failed input never raises: it goes to OUT/errors.csv with the reason.
    """
    if runner not in RUNNERS:
        raise ValueError(f"runner must be one of {', '.join(RUNNERS)}, got {runner!r}")
    if batch_size < 1 or workers < 1:
        raise ValueError("batch_size and workers must be >= 1")
    if (weights is None) == (emonet is None):
        raise ValueError("give weights (a path) or emonet (a loaded EmoNet), one of them")
    if emonet is None:
        from emonet_tf.inference import EmoNet

        emonet = EmoNet.from_weights(weights)
    the_plan = plan(
        inputs,
        emonet,
        layers=layers,
        output_format=output_format,
        sampling=sampling,
        damaged=damaged,
        file_list=file_list,
        tfds=tfds,
        data_dir=data_dir,
        images_per_unit=images_per_unit,
        frames_per_unit=frames_per_unit,
    )
    return run_plan(
        the_plan,
        out_dir,
        batch_size=batch_size,
        runner=runner,
        workers=workers,
        pipeline_options=pipeline_options,
        overwrite=overwrite,
        scratch=scratch,
        progress=progress,
        on_unit=on_unit,
        weights=None if weights is None else os.fspath(weights),
    )


def run_plan(
    the_plan: Plan,
    out_dir: str,
    *,
    batch_size: int = 32,
    runner: str = "local",
    workers: int = 2,
    pipeline_options: Sequence[str] = (),
    overwrite: bool = False,
    scratch: Optional[str] = None,
    progress=None,
    on_unit: Optional[Callable[[dict], None]] = None,
    weights: Optional[str] = None,
) -> Extraction:
    """Runs a `plan` into `out_dir` (see `extract`): resumes finished units, writes errors and manifest."""
    from emonet_tf.extract import shards

    done = shards.start(out_dir, the_plan.document, overwrite=overwrite)
    layout = shards.layout_of(out_dir, the_plan.document)
    pending = [u for u in the_plan.units if u.index not in set(done)]
    if done:
        log.info("%s: %d of %d units already done, kept", out_dir, len(done), len(the_plan.units))
    own_scratch = _scratch_folder(out_dir, scratch)
    started = time.perf_counter()
    try:
        if runner == "local":
            _run_local(the_plan, pending, layout, batch_size, own_scratch, progress, on_unit)
        else:
            _run_beam(the_plan, pending, layout, out_dir, batch_size, workers, pipeline_options, own_scratch, progress)
    finally:
        shutil.rmtree(own_scratch, ignore_errors=True)
    extra = {
        "runner": runner if runner == "local" else f"beam {' '.join(pipeline_options) or 'DirectRunner'}",
        "weights": weights,
        "units_resumed": len(done),
        "seconds": round(time.perf_counter() - started, 1),
    }
    shards.finish(out_dir, the_plan.document, extra)
    return Extraction(out_dir)


SCRATCH = ".scratch"


def _scratch_folder(out_dir: str, scratch: Optional[str]) -> str:
    """This run's scratch folder (copies of remote inputs, staging files, the Beam weights file).

    For a local OUT without --scratch: OUT/.scratch, emptied first, so that what a killed run left there
    (up to the 228 MB weights file of a Beam run) goes with the next run instead of piling up in /tmp.
    Otherwise a new folder under `scratch` (the system's temp folder by default), deleted at the end.
    """
    if scratch is None and not is_url(out_dir):
        folder = os.path.join(out_dir, SCRATCH)
        shutil.rmtree(folder, ignore_errors=True)
        os.makedirs(folder)
        return folder
    return tempfile.mkdtemp(prefix="emonet_extract_", dir=scratch)


def _run_local(the_plan: Plan, pending, layout, batch_size, scratch, progress, on_unit) -> None:
    from emonet_tf.extract import local

    s = the_plan.settings
    local.run(
        pending,
        layout,
        the_plan.extractor,
        the_plan.emonet.preprocessor,
        sampling=s["sampling"],
        damaged=s["damaged"],
        batch_size=batch_size,
        scratch=scratch,
        progress=progress,
        on_unit=on_unit,
    )


def _run_beam(the_plan: Plan, pending, layout, out_dir, batch_size, workers, pipeline_options, scratch, progress):
    from emonet_tf.extract import beam, remote
    from emonet_tf.extract import model as model_lib

    if not pending:
        return
    s = the_plan.settings
    # The workers rebuild the extractor and load these weights (Beam's SAVED_WEIGHTS model type). With the
    # default DirectRunner they share this machine's scratch; on another runner they may be elsewhere, so
    # the weights go next to OUT, where the workers write.
    weights_path = os.path.join(scratch, "extractor.weights.h5")
    the_plan.extractor.save_weights(weights_path)
    model_dir = None
    if pipeline_options:
        model_dir = remote.join(out_dir, ".model")
        remote.makedirs(model_dir)
        remote.copy_file(weights_path, remote.join(model_dir, "extractor.weights.h5"))
        weights_path = remote.join(model_dir, "extractor.weights.h5")
    options = list(pipeline_options) or beam.default_options(workers)
    watcher = _UnitWatcher(layout, [u.index for u in pending], progress)
    try:
        beam.run(
            pending,
            layout,
            weights_path=weights_path,
            classifier_config_json=model_lib.classifier_config_json(the_plan.emonet.model),
            layers=s["layers"],
            preprocessor_config=s["preprocessing"],
            sampling=s["sampling"],
            damaged=s["damaged"],
            batch_size=batch_size,
            scratch=None if pipeline_options else scratch,
            pipeline_options=options,
        )
    finally:
        watcher.stop()
        if model_dir is not None:
            remote.rmtree(model_dir)


def estimate_rows(units: Sequence[WorkUnit], sampling: str) -> Optional[int]:
    """About how many rows `units` will give (a progress total): 1 per image, a video's sampled frames
    estimated from its container (duration x rate, `media.estimated_video_frames`), a TFDS range's size.
    None when a video's length is unknown (a remote one, or a container without a duration)."""
    from emonet_tf import media, video
    from emonet_tf.extract.sources import is_url

    spec = video.FrameSampling.parse(sampling)
    total = 0
    for unit in units:
        if unit.kind != "video":
            total += len(unit.items) if unit.items else unit.stop_frame - unit.first_frame
            continue
        path = unit.items[0].path
        decoded = None if is_url(path) else media.estimated_video_frames(path)
        if decoded is None:
            return None
        stop = decoded if unit.stop_frame is None else min(decoded, unit.stop_frame)
        frames = max(0, stop - unit.first_frame)
        if spec.every_n:
            frames = -(-frames // spec.every_n)
        elif spec.fps and frames:
            info = video.probe_video(path)
            frames = round(frames / info.fps * spec.fps) if info.fps else frames
        total += frames
    return total


class _UnitWatcher:
    """Progress of a Beam run in frames, from the unit records the workers write (any runner, any machine)."""

    def __init__(self, layout, units: Sequence[int], progress, interval: float = 2.0):
        self.layout, self.waiting, self.progress, self.interval = layout, set(units), progress, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True) if progress is not None else None
        if self._thread is not None:
            self._thread.start()

    def _loop(self):
        while not self._stop.wait(self.interval):
            self._poll()

    def _poll(self):
        import json

        from emonet_tf.extract import remote

        for unit in sorted(self.waiting):
            path = self.layout.unit_path(unit)
            if remote.exists(path):
                self.waiting.discard(unit)
                self.progress.update(json.loads(remote.read_text(path)).get("rows_read", 0))

    def stop(self):
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._poll()
