"""Shared by the TFDS builder tests: prepare a builder, plainly or on Beam's FnApiRunner."""

import tensorflow_datasets as tfds


def build_dataset(builder_cls, data_dir, config, manual_dir=None, beam=False, **kwargs):
    """Builds `config` of `builder_cls` into `data_dir` and returns the prepared builder."""
    builder = builder_cls(data_dir=str(data_dir), config=config, **kwargs)
    runner = None
    if beam:
        # FnApiRunner is what DirectRunner falls back to; DirectRunner would first try to download Prism.
        from apache_beam.runners.portability.fn_api_runner import FnApiRunner

        runner = FnApiRunner()
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(
            manual_dir=str(manual_dir) if manual_dir else None, beam_runner=runner
        )
    )
    return builder
