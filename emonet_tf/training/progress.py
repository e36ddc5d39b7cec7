"""Progress of the long, otherwise silent parts of a run, counted in examples (frames).

On a terminal: tqdm bars on stderr. Otherwise (a log file, a cluster job): one INFO log line every
30 s and at the end (absl prints it on stderr under train.py). The bars are `emonet_tf.progress`'s,
which the `emonet` commands use too.

The feature cache build runs inside `emonet_tf.features.build_feature_cache`, which has no progress
callback; `watch_cache_build` follows the `progress.json` it rewrites (atomically) after every batch.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
from typing import Iterable, Iterator, Optional

from emonet_tf import features as features_lib
from emonet_tf import progress as _shared
from emonet_tf.progress import LOG_INTERVAL, TTY_INTERVAL  # noqa: F401 -- their earlier home

log = logging.getLogger(__name__)


class LogProgress(_shared.LogProgress):
    """`emonet_tf.progress.LogProgress` logging to this module's logger (absl shows it under train.py)."""

    logger = log


def bar(total: Optional[int], desc: str, enabled: bool = True):
    """Progress of `total` frames: a tqdm bar on a terminal, else LogProgress; silent when not `enabled`."""
    return _shared.bar(total, desc, enabled, log_class=LogProgress)


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
