"""A per-video extraction that kills its process for one named video: tests/test_tfds_builders.py runs it
in the spawned workers of `video_frames.iter_extractions` (it must be importable there, hence its own module)."""

from __future__ import annotations

import os

from tfds_builders import video_frames as vf

#: The video whose extraction exits the process without a Python exception (as a decoder crash would).
CRASHING_VIDEO = "0005"


def extract_or_crash(entry, **kwargs):
    if entry.video_id == CRASHING_VIDEO:
        os._exit(3)
    return vf.extract_video(entry, **kwargs)
