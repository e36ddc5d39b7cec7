"""The two errors every importer raises, so that callers (CLI, notebooks) need to catch only these."""

from __future__ import annotations

from typing import Sequence


class WeightFormatError(ValueError):
    """A weight file that cannot be read as the expected format; the message names the file and the problem."""


class WeightMismatchError(WeightFormatError):
    """A layer whose weights have the wrong shape (or are missing); the message names the layer and both shapes."""

    def __init__(
        self, layer: str, expected: Sequence[int] | str, found: Sequence[int] | str, source: str = "", hint: str = ""
    ):
        self.layer = layer
        self.expected = tuple(expected) if not isinstance(expected, str) else expected
        self.found = tuple(found) if not isinstance(found, str) else found
        self.source = source
        where = f"{source}: " if source else ""
        message = f"{where}{layer}: expected shape {self.expected}, found {self.found}"
        super().__init__(message + (f" ({hint})" if hint else ""))
