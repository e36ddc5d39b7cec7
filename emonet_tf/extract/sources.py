"""What an extraction reads, cut into work units: files, folders, a file list, remote URLs, or a TFDS split.

A work unit is what one worker reads and one shard holds: a run of consecutive images
(`images_per_unit`), one video, a frame range of a long film (`frames_per_unit`), or a range of
examples of a TFDS split. Units are numbered in input order, so the same inputs always give the same
plan, and a rerun can tell which shards are already done (see `emonet_tf.extract.shards`).

Remote inputs (``gs://``, ``s3://``, ``hdfs://``, TensorFlow's ``ram://``, anything `tf.io.gfile` reads)
are listed with `tf.io.gfile` and copied to local scratch before PIL or FFmpeg opens them
(`local_copy`): neither can read those URLs, and FFmpeg seeks in the file.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import shutil
import tempfile
from typing import Iterator, Optional, Sequence

from emonet_tf import media

DEFAULT_IMAGES_PER_UNIT = 256

_URL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")
_TFDS = re.compile(r"^tfds:(?P<name>[^:]+):(?P<split>[^:]+)$")


def is_url(path: str) -> bool:
    """Whether `path` names a remote file system (``gs://``, ``s3://``, ``ram://`` ...), read with tf.io.gfile."""
    return bool(_URL.match(path))


@dataclasses.dataclass(frozen=True)
class TfdsSplit:
    """A TFDS split to read: ``tfds:NAME[/CONFIG][:VERSION]:SPLIT`` plus the data folder that holds it."""

    name: str  # e.g. "video_folder/default" (what tfds.builder takes)
    split: str  # e.g. "test"
    data_dir: Optional[str] = None

    @property
    def spec(self) -> str:
        return f"tfds:{self.name}:{self.split}"


def parse_tfds(spec: str, data_dir: Optional[str] = None) -> Optional[TfdsSplit]:
    """``tfds:NAME[/CONFIG]:SPLIT`` -> TfdsSplit, or None when `spec` does not start with ``tfds:``.

    Raises ValueError for a ``tfds:`` spec without a name and a split.
    """
    if not spec.startswith("tfds:"):
        return None
    match = _TFDS.match(spec)
    if not match:
        raise ValueError(f"{spec}: a TFDS input is tfds:NAME[/CONFIG]:SPLIT, e.g. tfds:video_folder:test")
    return TfdsSplit(match.group("name"), match.group("split"), data_dir)


def read_file_list(path: str) -> list[str]:
    """The paths of a file list: one per line, ``#`` comments and blank lines skipped; a relative path is
    relative to the list's folder (so a list travels with its corpus). Raises OSError naming the list."""
    from emonet_tf.extract import remote

    try:
        # utf-8-sig: a list saved by Windows Notepad starts with a BOM, which would be part of the first path.
        text = remote.read_bytes(path).decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise OSError(f"{path}: not a text file list of paths ({err.reason} at byte {err.start})") from None
    base = os.path.dirname(path)
    out = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        out.append(line if (os.path.isabs(line) or is_url(line) or not base) else _join(base, line))
    return out


def _join(base: str, name: str) -> str:
    return f"{base.rstrip('/')}/{name}" if is_url(base) else os.path.join(base, name)


def collect_sources(paths: Sequence[str]) -> list[media.InputFile]:
    """Files as given and folders walked (sorted) for image and video names, local or remote.

    Local paths go through `media.collect_inputs` (so `emonet activations` and `emonet extract` see the
    same files in the same order); URLs through tf.io.gfile. A missing path is kept with an error, never
    dropped: it reaches the error output by name.
    """
    found: list[media.InputFile] = []
    for path in paths:
        if not is_url(path):
            found.extend(media.collect_inputs([path]))
            continue
        import tensorflow as tf

        from emonet_tf.extract import remote

        try:
            if remote.isdir(path):
                found.extend(
                    media.InputFile(p, media.kind_of(p)) for p in remote.walk_files(path) if media.is_media_name(p)
                )
            elif remote.exists(path):
                found.append(media.InputFile(path, media.kind_of(path)))
            else:
                found.append(media.InputFile(path, media.kind_of(path), error=f"{path}: no such file"))
        except tf.errors.OpError as err:  # a scheme without its file system plugin, a denied bucket ...
            found.append(media.InputFile(path, media.kind_of(path), error=f"{path}: cannot list ({err.message})"))
    return found


@dataclasses.dataclass(frozen=True)
class WorkUnit:
    """One shard's worth of work.

    ``kind``: "images" (``items`` are image files), "video" (one video; frames whose decoded index is in
    [``first_frame``, ``stop_frame``) -- ``stop_frame`` None means to the end), or "tfds" (examples
    [``first_frame``, ``stop_frame``) of ``tfds``). ``index`` numbers the units from 0 in input order.
    """

    index: int
    kind: str
    items: tuple = ()
    first_frame: int = 0
    stop_frame: Optional[int] = None
    tfds: Optional[TfdsSplit] = None

    def describe(self) -> str:
        if self.kind == "images":
            return f"{len(self.items)} images from {self.items[0].path}"
        if self.kind == "video":
            span = "" if (self.first_frame == 0 and self.stop_frame is None) else f" frames {self.span()}"
            return f"{self.items[0].path}{span}"
        return f"{self.tfds.spec}[{self.first_frame}:{self.stop_frame}]"

    def span(self) -> str:
        return f"[{self.first_frame}:{'' if self.stop_frame is None else self.stop_frame}]"

    def to_json(self) -> dict:
        """What the plan records of this unit (and compares on a rerun)."""
        return {
            "index": self.index,
            "kind": self.kind,
            "sources": [i.path for i in self.items] if self.items else [self.tfds.spec],
            "first_frame": self.first_frame,
            "stop_frame": self.stop_frame,
        }


def plan_units(
    sources: Sequence[media.InputFile],
    images_per_unit: int = DEFAULT_IMAGES_PER_UNIT,
    frames_per_unit: Optional[int] = None,
) -> list[WorkUnit]:
    """Cuts sources into work units, in input order: consecutive images by `images_per_unit`, each video
    whole, or -- with `frames_per_unit` -- in ranges of that many decoded frames.

    The ranges come from the container's frame count (`media.estimated_video_frames`), which can be
    wrong; the last range is open-ended (to the end of the stream), so a wrong count changes how the
    work is split, never which frames are read. Remote videos are not split (counting needs the file).
    Raises ValueError for a non-positive size.
    """
    if images_per_unit < 1:
        raise ValueError(f"images_per_unit must be >= 1, got {images_per_unit}")
    if frames_per_unit is not None and frames_per_unit < 1:
        raise ValueError(f"frames_per_unit must be >= 1, got {frames_per_unit}")
    units: list[WorkUnit] = []
    images: list[media.InputFile] = []

    def flush_images():
        if images:
            units.append(WorkUnit(len(units), "images", tuple(images)))
            images.clear()

    for item in sources:
        if item.kind != "video" or item.error is not None:
            images.append(item)  # a failed input of any kind is reported by the image reader's error path
            if len(images) == images_per_unit:
                flush_images()
            continue
        flush_images()
        for first, stop in _frame_ranges(item.path, frames_per_unit):
            units.append(WorkUnit(len(units), "video", (item,), first, stop))
    flush_images()
    return units


def _frame_ranges(path: str, frames_per_unit: Optional[int]) -> list[tuple[int, Optional[int]]]:
    if frames_per_unit is None or is_url(path):
        return [(0, None)]
    estimate = media.estimated_video_frames(path) or 0
    starts = list(range(0, max(estimate, 1), frames_per_unit))
    return [(a, b) for a, b in zip(starts, starts[1:] + [None])]


def plan_tfds_units(split: TfdsSplit, num_examples: int, examples_per_unit: int) -> list[WorkUnit]:
    """Examples [0, num_examples) of a TFDS split in ranges of `examples_per_unit`."""
    if examples_per_unit < 1:
        raise ValueError(f"examples_per_unit must be >= 1, got {examples_per_unit}")
    return [
        WorkUnit(i, "tfds", first_frame=a, stop_frame=min(a + examples_per_unit, num_examples), tfds=split)
        for i, a in enumerate(range(0, num_examples, examples_per_unit))
    ]


@contextlib.contextmanager
def local_copy(path: str, scratch: Optional[str] = None) -> Iterator[str]:
    """A local path for `path`: itself when local, else a copy in scratch (deleted on exit).

    PIL and FFmpeg read local files only; FFmpeg also seeks, so a stream would not do. The copy keeps the
    file's name (its extension tells the reader what it is). Raises OSError naming the URL.
    """
    if not is_url(path):
        yield path
        return
    from emonet_tf.extract import remote

    folder = tempfile.mkdtemp(prefix="emonet_extract_", dir=scratch)
    try:
        local = os.path.join(folder, os.path.basename(path.rstrip("/")) or "input")
        remote.copy_to_local(path, local)
        yield local
    finally:
        shutil.rmtree(folder, ignore_errors=True)
