"""What every reader of untrusted files (images, weights) says about a path that is not a regular file.

A FIFO would block `open()` forever and a device (/dev/zero) would be read without end, so the image and
weight readers refuse them from `os.stat`/`os.fstat` before reading; this names the kind in their errors.
"""

from __future__ import annotations

import stat

_KINDS = (
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISDIR, "a folder"),
    (stat.S_ISREG, "a regular file"),
)


def file_kind(mode: int) -> str:
    """The kind of file an `st_mode` describes, for messages: "a FIFO (named pipe)", "a folder", ..."""
    return next((name for test, name in _KINDS if test(mode)), "an unknown kind of file")
