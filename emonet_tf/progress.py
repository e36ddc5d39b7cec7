"""Progress of long, otherwise silent work: one implementation for the `emonet` commands and training.

On a terminal: a tqdm bar on stderr. Otherwise (a log file, a cluster job): `LogProgress`, one line
every 30 s and at the end, as an INFO log record or, given a `stream`, written to it (the `emonet`
commands write to stderr). Silent when not `enabled` (`--no-progress`, train.py's `--noprogress`).
No TensorFlow here: the command line imports this module.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Optional

from tqdm import tqdm

#: Seconds between two redraws of a terminal bar, and between two log lines when stderr is not a terminal.
TTY_INTERVAL, LOG_INTERVAL = 0.5, 30.0


def stderr_is_terminal() -> bool:
    return bool(hasattr(sys.stderr, "isatty") and sys.stderr.isatty())


class LogProgress:
    """tqdm's text as one line at most every `interval` seconds and at the end, for log files.

    A tqdm bar redraws with carriage returns, which a log file keeps as one endless line. The line
    goes to `stream` when given, else to `logger` (INFO; default the class's `logger`). Same interface
    as the tqdm calls used here: update(n), n, total, disable, close(), a context manager.
    """

    logger = logging.getLogger(__name__)

    def __init__(
        self,
        total: Optional[int],
        desc: str = "",
        enabled: bool = True,
        interval: float = LOG_INTERVAL,
        unit: str = "frame",
        unit_scale: bool = False,
        stream=None,
        logger: Optional[logging.Logger] = None,
    ):
        self.total, self.desc, self.disable, self.interval = total, desc, not enabled, interval
        self.unit, self.unit_scale, self.stream = unit, unit_scale, stream
        if logger is not None:
            self.logger = logger
        self.n = 0
        self._start = self._last = time.monotonic()
        self._logged_n = -1

    def update(self, n: int = 1) -> None:
        self.n += n
        if time.monotonic() - self._last >= self.interval or (self.total is not None and self.n >= self.total):
            self._log()

    def _log(self) -> None:
        if self.disable or self.n == self._logged_n:
            return
        self._last, self._logged_n = time.monotonic(), self.n
        line = tqdm.format_meter(
            self.n,
            self.total,
            self._last - self._start,
            prefix=self.desc,
            unit=self.unit,
            unit_scale=self.unit_scale,
        )
        if self.stream is not None:
            print(line, file=self.stream, flush=True)
        else:
            self.logger.info("%s", line)

    def close(self) -> None:
        self._log()

    def __enter__(self) -> "LogProgress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def bar(
    total: Optional[int],
    desc: str = "",
    enabled: bool = True,
    unit: str = "frame",
    unit_scale: bool = False,
    stream=None,
    log_class: type = LogProgress,
):
    """Progress of `total` units: a tqdm bar on a terminal, else `log_class` (LogProgress) writing to
    `stream` (None: its logger); silent when not `enabled`."""
    if not stderr_is_terminal():
        return log_class(total, desc, enabled, unit=unit, unit_scale=unit_scale, stream=stream)
    return tqdm(
        total=total,
        desc=desc or None,
        unit=unit,
        unit_scale=unit_scale,
        file=sys.stderr,
        disable=not enabled,
        dynamic_ncols=True,
        mininterval=TTY_INTERVAL,
        leave=True,
    )
