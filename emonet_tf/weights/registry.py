"""The weight-format registry: every format `detect_format` recognises and `read_weights` reads is one record here.

Adding a format is one reader module (a `sniff` and a `read` function) and one registration:

    register(WeightFormat(name="my_format", description="my lab's weight file", signature="the MYF magic",
                          suffixes=(".myf",), sniff=my_reader.looks_like_myf, read=my_reader.read_myf))

The built-in formats are registered in `emonet_tf.weights.builtin` (the order there is the detection order).
Detection asks the formats in registration order (a folder only the `folder=True` formats, a file the others);
the first sniff that answers True names the format. A sniff may raise WeightFormatError naming the file when
the file claims the format (its magic number or suffix) but cannot be read as it; detection ends there with
that message. `FORMATS` is a live, read-only sequence of the registered names. This module imports no reader
and no TensorFlow itself; the built-in formats are loaded on the first use of the registry.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import importlib
import os
from typing import Any, Callable, Iterator, Optional

from emonet_tf.weights.errors import WeightFormatError


@dataclasses.dataclass(frozen=True)
class WeightFormat:
    """One weight format: how to recognise it and how to read it.

    name: the format's name (`detect_format`'s answer, `read_weights(format=...)`, `--format`).
    sniff: path -> bool, True when the file (or folder) is in this format; reads as little as it can. It may
      raise WeightFormatError when the file claims the format but cannot be it (e.g. a truncated `.keras`).
    read: (path, **options) -> WeightSet in Keras layout (`weightset.make_weightset`), raising WeightFormatError
      (WeightMismatchError for a wrong shape) that names the file.
    description: what the file is, in a few words (docs, help and the "a folder, but not ..." message).
    signature: what `sniff` looks for, in words (said when no folder format matches).
    suffixes: the usual file suffixes (documentation; detection is the sniff's business).
    folder: True for a format that is a folder rather than a file.
    options: keyword options of `read_weights` that `read` takes (among "mean", "fc6_order"); a reader that does
      not take "mean" gets the caller's mean applied after reading.
    """

    name: str
    sniff: Callable[[str], bool]
    read: Callable[..., Any]
    description: str
    signature: str = ""
    suffixes: tuple[str, ...] = ()
    folder: bool = False
    options: tuple[str, ...] = ()


_REGISTRY: dict[str, WeightFormat] = {}  # insertion order is detection order
_builtin_loaded = False


def _load_builtin() -> None:
    """Registers the built-in formats once, before anything else reads or extends the registry."""
    global _builtin_loaded
    if _builtin_loaded:
        return
    _builtin_loaded = True  # set first: builtin's own register() calls come back here
    try:
        importlib.import_module("emonet_tf.weights.builtin")
    except BaseException:
        _builtin_loaded = False
        raise


def register(fmt: WeightFormat, *, before: Optional[str] = None) -> WeightFormat:
    """Adds `fmt` (last, or just before the format named `before`); returns it. A taken name is refused."""
    _load_builtin()
    if not isinstance(fmt, WeightFormat):
        raise TypeError(f"register() takes a WeightFormat, got {type(fmt).__name__}")
    if not fmt.name or fmt.name == "auto":
        raise ValueError(f"a weight format cannot be named {fmt.name!r}")
    if fmt.name in _REGISTRY:
        raise ValueError(f"the weight format {fmt.name!r} is already registered; unregister it first")
    if before is not None and before not in _REGISTRY:
        raise ValueError(f"before={before!r}: no such format; registered: {', '.join(_REGISTRY)}")
    items = list(_REGISTRY.items())
    at = len(items) if before is None else [name for name, _ in items].index(before)
    items.insert(at, (fmt.name, fmt))
    _REGISTRY.clear()
    _REGISTRY.update(items)
    return fmt


def unregister(name: str) -> WeightFormat:
    """Removes the format `name` and returns its record (KeyError when it is not registered)."""
    _load_builtin()
    return _REGISTRY.pop(name)


def get(name: str) -> WeightFormat:
    """The record of the format `name` (KeyError when it is not registered)."""
    _load_builtin()
    return _REGISTRY[name]


def formats() -> tuple[WeightFormat, ...]:
    """Every registered format, in detection order."""
    _load_builtin()
    return tuple(_REGISTRY.values())


class _FormatNames(collections.abc.Sequence):
    """The registered format names, in detection order, read live (a later `register` shows up)."""

    def __getitem__(self, index):
        return tuple(f.name for f in formats())[index]

    def __len__(self) -> int:
        return len(formats())

    def __iter__(self) -> Iterator[str]:
        return iter(tuple(f.name for f in formats()))

    def __contains__(self, name) -> bool:
        return any(f.name == name for f in formats())

    def __add__(self, other) -> tuple:
        return tuple(self) + tuple(other)

    def __radd__(self, other) -> tuple:
        return tuple(other) + tuple(self)

    def __eq__(self, other) -> bool:
        return isinstance(other, collections.abc.Sequence) and tuple(self) == tuple(other)

    def __hash__(self) -> int:
        return id(self)

    def __repr__(self) -> str:
        return repr(tuple(self))


#: Names of the registered formats (matlab_text, emonet_py_pth, ...), in detection order; live.
FORMATS = _FormatNames()


def read_head(path: str, size: int = 16) -> bytes:
    """The first `size` bytes of the file `path` (for magic numbers in a sniff)."""
    with open(path, "rb") as f:
        return f.read(size)


def detect(path: str) -> str:
    """The name of the first registered format whose sniff recognises `path` (a checked, existing path).

    Raises WeightFormatError naming the path when none does (or when a sniff refuses the file).
    """
    if os.path.isdir(path):
        folder_formats = [f for f in formats() if f.folder]
        for fmt in folder_formats:
            if fmt.sniff(path):
                return fmt.name
        if not folder_formats:
            raise WeightFormatError(f"{path}: a folder, and no registered weight format is a folder")
        kinds = " or ".join(
            f"{f.description} (no {f.signature})" if f.signature else f.description for f in folder_formats
        )
        raise WeightFormatError(f"{path}: a folder, but not {kinds}")
    for fmt in formats():
        if not fmt.folder and fmt.sniff(path):
            return fmt.name
    raise WeightFormatError(f"{path}: unrecognised weight file; expected one of {', '.join(FORMATS)}")
