"""The Beam runner: RunInference with Beam's TensorFlow model handler, keyed by row.

    units -> Reshuffle -> ReadUnit (rows: (key, image)) -> RunInference(KeyedModelHandler(
        TFModelHandlerNumpy(SAVED_WEIGHTS, create_model_fn=create_extractor))) -> WriteUnits (shards)

* Work units (`emonet_tf.extract.sources`) are the elements that get distributed: a video, a frame range
  of a film, a run of images, a range of TFDS examples. The Reshuffle spreads them over the workers.
* Each worker loads the model once (`RunInference` shares it in the process): the handler builds the
  extractor from the classifier's config and loads the weights file the driver saved, so any weight
  format the driver reads reaches the workers.
* The shard of a unit is written in the same fused stage as its inference, with no GroupByKey after the
  model: a GroupByKey would make the runner hold every unit's activations between stages (the
  FnApiRunner keeps them in memory), and memory would grow with the corpus. The reader holds back a
  unit's last row and sends the unit's summary with it; `WriteUnits` streams rows into the unit's
  `UnitWriter` and closes it when the summary and all rows are in. This relies on the runner fusing
  ReadUnit -> RunInference -> WriteUnits into one stage, which Beam's runners do for consecutive ParDos;
  a unit found incomplete at the end of a bundle raises ExtractionError instead of writing a wrong shard.
* A unit with no row (every input failed) is written by the reader itself.

Runners: `pipeline_options` are Beam's own flags. The default is the DirectRunner in multi-processing
mode with `workers` processes (``--direct_num_workers``); Dataflow, Flink or Spark by their flags (see
docs/extract.md), with OUT, the inputs and the scratch folder where the workers can reach them.
"""

from __future__ import annotations

import functools
import logging
from typing import Optional, Sequence

import apache_beam as beam
import numpy as np
from apache_beam.metrics import Metrics

from emonet_tf.extract import model as model_lib
from emonet_tf.extract.rows import Row, UnitLog, read_unit
from emonet_tf.extract.shards import ExtractionError, Layout, UnitWriter
from emonet_tf.extract.sources import WorkUnit

log = logging.getLogger(__name__)

NAMESPACE = "emonet_extract"


def default_options(workers: int) -> list[str]:
    """The DirectRunner with `workers` processes (FnApiRunner in multi-processing mode); the workers log
    warnings and errors only (their INFO lines, dozens per run, would bury the command's own output)."""
    return [
        "--runner=DirectRunner",
        f"--direct_num_workers={workers}",
        "--direct_running_mode=multi_processing",
        "--default_sdk_harness_log_level=WARNING",
    ]


class ReadUnitFn(beam.DoFn):
    """unit -> ((RowKey, UnitLog or None), image) per row; the unit's last row carries its UnitLog."""

    def __init__(self, layout: Layout, preprocessor_config: dict, sampling: str, damaged: str, scratch):
        self.layout, self.preprocessor_config = layout, preprocessor_config
        self.sampling, self.damaged, self.scratch = sampling, damaged, scratch
        self.frames = Metrics.counter(NAMESPACE, "frames_read")
        self.failed = Metrics.counter(NAMESPACE, "inputs_failed")

    def setup(self):
        from emonet_tf.preprocessor import EmoNetPreprocessor

        self.preprocessor = EmoNetPreprocessor.from_config(self.preprocessor_config)

    def process(self, unit: WorkUnit):
        summary, held = UnitLog(unit.index), None
        for event in read_unit(unit, self.preprocessor, self.sampling, self.damaged, self.scratch):
            summary.add(event)
            if not isinstance(event, Row):
                self.failed.inc()
                continue
            self.frames.inc()
            if held is not None:
                yield (held.key, None), held.image
            held = event
        if held is None:
            UnitWriter(self.layout, unit.index, self.scratch).close(summary)
            return
        yield (held.key, summary), held.image


class WriteUnitsFn(beam.DoFn):
    """(key, PredictionResult) -> rows streamed into their unit's shard; yields each unit's record."""

    def __init__(self, layout: Layout, scratch, batch_size: int):
        self.layout, self.scratch, self.batch_size = layout, scratch, batch_size
        self.units_done = Metrics.counter(NAMESPACE, "units_written")

    def start_bundle(self):
        self.open: dict = {}  # unit -> [writer, pending keys, pending outputs, summary]

    def process(self, element):
        (key, summary), result = element
        state = self.open.get(key.unit)
        if state is None:
            state = self.open[key.unit] = [UnitWriter(self.layout, key.unit, self.scratch), [], [], None]
        state[1].append(key)
        state[2].append(result.inference)
        if summary is not None:
            state[3] = summary
        if len(state[1]) >= self.batch_size:
            self._flush(state)
        writer, pending, _, summary = state
        if summary is not None and writer.rows + len(pending) == summary.rows:
            self._flush(state)
            del self.open[key.unit]
            self.units_done.inc()
            yield writer.close(summary)

    @staticmethod
    def _flush(state):
        writer, keys, outputs, _ = state
        if keys:
            names = list(outputs[0])
            writer.add(keys, {n: np.stack([o[n] for o in outputs]) for n in names})
            keys.clear()
            outputs.clear()

    def finish_bundle(self):
        if self.open:
            for state in self.open.values():
                state[0].abort()
            units = sorted(self.open)
            raise ExtractionError(
                f"units {units} were incomplete at the end of a bundle: the runner split ReadUnit and "
                "WriteUnits into separate stages; the units are redone by a rerun"
            )


def model_handler(weights_path: str, classifier_config_json: str, layers: Sequence[str], batch_size: int):
    """`KeyedModelHandler(TFModelHandlerNumpy(...))`: the extractor built by `create_extractor` on each
    worker, its weights loaded from `weights_path` (a Keras ``.weights.h5``; remote paths are fetched by
    Keras), batches of exactly `batch_size` images except at a bundle's end."""
    from apache_beam.ml.inference.base import KeyedModelHandler
    from apache_beam.ml.inference.tensorflow_inference import ModelType, TFModelHandlerNumpy

    return KeyedModelHandler(
        TFModelHandlerNumpy(
            model_uri=weights_path,
            model_type=ModelType.SAVED_WEIGHTS,
            create_model_fn=functools.partial(model_lib.create_extractor, classifier_config_json, list(layers)),
            inference_fn=model_lib.beam_inference_fn,
            min_batch_size=batch_size,
            max_batch_size=batch_size,
        )
    )


def run(
    units: Sequence[WorkUnit],
    layout: Layout,
    *,
    weights_path: str,
    classifier_config_json: str,
    layers: Sequence[str],
    preprocessor_config: dict,
    sampling: str,
    damaged: str,
    batch_size: int,
    scratch: Optional[str],
    pipeline_options: Sequence[str],
) -> None:
    """Runs the pipeline over `units` and waits for it. Raises what the runner raises (a failed unit
    leaves no shard; a rerun resumes)."""
    from apache_beam.ml.inference.base import RunInference
    from apache_beam.options.pipeline_options import PipelineOptions

    handler = model_handler(weights_path, classifier_config_json, layers, batch_size)
    options = PipelineOptions(list(pipeline_options))
    with beam.Pipeline(options=options) as pipeline:
        _ = (
            pipeline
            | "Units" >> beam.Create(list(units))
            | "Spread" >> beam.Reshuffle()
            | "ReadUnit" >> beam.ParDo(ReadUnitFn(layout, preprocessor_config, sampling, damaged, scratch))
            | "RunInference" >> RunInference(handler)
            | "WriteUnits" >> beam.ParDo(WriteUnitsFn(layout, scratch, batch_size))
        )
