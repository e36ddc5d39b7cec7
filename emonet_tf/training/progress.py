"""Progress on stderr for the long, otherwise silent parts of a run, counted in examples (frames).

The feature cache build runs inside `emonet_tf.features.build_feature_cache`, which has no progress
callback; `watch_cache_build` follows the `progress.json` it rewrites (atomically) after every batch.
"""
from __future__ import annotations

import contextlib
import json
import os
import sys
import threading
from typing import Iterable, Iterator, Optional

from tqdm import tqdm

from emonet_tf import features as features_lib

#: Seconds between two redraws: often on a terminal, rarely in a log file (every line stays there).
TTY_INTERVAL, LOG_INTERVAL = 0.5, 30.0


def bar(total: Optional[int], desc: str, enabled: bool = True) -> tqdm:
    """A tqdm bar on stderr counting frames out of `total`; a silent no-op when not `enabled`."""
    interactive = hasattr(sys.stderr, "isatty") and sys.stderr.isatty()
    return tqdm(total=total, desc=desc, unit="frame", file=sys.stderr, disable=not enabled, dynamic_ncols=True,
                mininterval=TTY_INTERVAL if interactive else LOG_INTERVAL, leave=True)


def count_examples(batches: Iterable, progress: tqdm) -> Iterator:
    """Yields `batches` unchanged, advancing `progress` by each batch's example count (len of batch[1])."""
    for batch in batches:
        yield batch
        progress.update(int(batch[1].shape[0]))


def _cache_done(cache_dir: str, fingerprint: str) -> int:
    """Rows the cache build of `fingerprint` has written (0 for a stale or unreadable progress file)."""
    try:
        with open(os.path.join(cache_dir, features_lib.PROGRESS), encoding="utf-8") as f:
            progress = json.load(f)
    except (OSError, ValueError):
        return 0
    return int(progress.get("done", 0)) if progress.get("fingerprint") == fingerprint else 0


@contextlib.contextmanager
def watch_cache_build(cache_dir: str, fingerprint: str, total: int, desc: str, enabled: bool = True,
                      poll_seconds: float = 0.5) -> Iterator[tqdm]:
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
