"""Progress of the long, otherwise silent parts of a run, counted in examples (frames).

On a terminal: tqdm bars on stderr. Otherwise (a log file, a cluster job): one INFO log line every
30 s and at the end (absl prints it on stderr under train.py).

The feature cache build runs inside `emonet_tf.features.build_feature_cache`, which has no progress
callback; `watch_cache_build` follows the `progress.json` it rewrites (atomically) after every batch.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import threading
import time
from typing import Iterable, Iterator, Optional

from tqdm import tqdm

from emonet_tf import features as features_lib

log = logging.getLogger(__name__)

#: Seconds between two redraws of a terminal bar, and between two log lines when stderr is not a terminal.
TTY_INTERVAL, LOG_INTERVAL = 0.5, 30.0


class LogProgress:
    """tqdm's text as an INFO log line at most every `interval` seconds and at the end, for log files.

    A tqdm bar redraws with carriage returns, which a log file keeps as one endless line. Same
    interface as the tqdm calls used here: update(n), n, disable, close(), a context manager.
    """

    def __init__(self, total: Optional[int], desc: str, enabled: bool = True, interval: float = LOG_INTERVAL):
        self.total, self.desc, self.disable, self.interval = total, desc, not enabled, interval
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
        log.info("%s", tqdm.format_meter(self.n, self.total, self._last - self._start, prefix=self.desc, unit="frame"))

    def close(self) -> None:
        self._log()

    def __enter__(self) -> "LogProgress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def bar(total: Optional[int], desc: str, enabled: bool = True):
    """Progress of `total` frames: a tqdm bar on a terminal, else LogProgress; silent when not `enabled`."""
    if not (hasattr(sys.stderr, "isatty") and sys.stderr.isatty()):
        return LogProgress(total, desc, enabled)
    return tqdm(
        total=total,
        desc=desc,
        unit="frame",
        file=sys.stderr,
        disable=not enabled,
        dynamic_ncols=True,
        mininterval=TTY_INTERVAL,
        leave=True,
    )


def count_examples(batches: Iterable, progress) -> Iterator:
    """Yields `batches` unchanged, advancing `progress` by each batch's example count.

    A batch is a tuple (images, labels, ...) or a dict with `image` (`predictions.prediction_batches`).
    """
    for batch in batches:
        yield batch
        progress.update(int((batch["image"] if isinstance(batch, dict) else batch[1]).shape[0]))


def _cache_done(cache_dir: str, fingerprint: str) -> int:
    """Rows the cache build of `fingerprint` has written (0 for a stale or unreadable progress file)."""
    try:
        with open(os.path.join(cache_dir, features_lib.PROGRESS), encoding="utf-8") as f:
            progress = json.load(f)
    except (OSError, ValueError):
        return 0
    return int(progress.get("done", 0)) if progress.get("fingerprint") == fingerprint else 0


@contextlib.contextmanager
def watch_cache_build(
    cache_dir: str, fingerprint: str, total: int, desc: str, enabled: bool = True, poll_seconds: float = 0.5
) -> Iterator:
    """A bar of the rows written to the cache in `cache_dir` while the body builds it.

    A daemon thread reads progress.json every `poll_seconds`; rows already cached count from the start.
    """
    progress = bar(total, desc, enabled)
    stop = threading.Event()

    def follow():
        while True:
            done = _cache_done(cache_dir, fingerprint)
            if done > progress.n:
                progress.update(done - progress.n)
            if stop.wait(poll_seconds):
                return

    thread = threading.Thread(target=follow, daemon=True) if enabled else None
    if thread:
        thread.start()
    try:
        yield progress
    finally:
        stop.set()
        if thread:
            thread.join()
            done = _cache_done(cache_dir, fingerprint)
            if done > progress.n:
                progress.update(done - progress.n)
        progress.close()
