"""The single-process runner: the units in order, read -> batches through the model -> one shard each."""

from __future__ import annotations

import logging
import queue
import threading
from typing import Callable, Iterable, Iterator, Optional, Sequence

from emonet_tf.extract import model as model_lib
from emonet_tf.extract.rows import Row, UnitLog, read_unit
from emonet_tf.extract.shards import Layout, UnitWriter
from emonet_tf.extract.sources import WorkUnit

log = logging.getLogger(__name__)

_END = object()


def prefetch(events: Iterable, depth: int) -> Iterator:
    """`events`, produced by a background thread up to `depth` ahead: decoding and resizing the next rows
    overlaps the model's forward pass on the current batch. Exceptions are re-raised here; closing the
    generator (an error or interrupt in the consumer) stops the thread.
    """
    buffer: queue.Queue = queue.Queue(maxsize=max(1, depth))
    stop = threading.Event()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                buffer.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce():
        try:
            for event in events:
                if not put(event):
                    return
            put((_END, None))
        except BaseException as err:  # noqa: BLE001 -- handed to the consumer, which raises it
            put((_END, err))

    thread = threading.Thread(target=produce, name="emonet-extract-read", daemon=True)
    thread.start()
    try:
        while True:
            item = buffer.get()
            if isinstance(item, tuple) and len(item) == 2 and item[0] is _END:
                if item[1] is not None:
                    raise item[1]
                return
            yield item
    finally:
        stop.set()
        thread.join(timeout=5)


def run_unit(
    unit: WorkUnit,
    layout: Layout,
    extractor,
    preprocessor,
    *,
    sampling: str,
    damaged: str,
    batch_size: int,
    scratch: Optional[str] = None,
    on_rows: Optional[Callable[[int], None]] = None,
) -> dict:
    """Reads, runs and writes one unit; returns its record (`UnitWriter.close`). ``on_rows(n)`` is called
    after each batch with its row count (progress in frames)."""
    summary, writer, batch = UnitLog(unit.index), UnitWriter(layout, unit.index, scratch), []

    def flush():
        if batch:
            outputs = model_lib.run_batch(extractor, [r.image for r in batch])
            writer.add([r.key for r in batch], outputs)
            if on_rows is not None:
                on_rows(len(batch))
            batch.clear()

    try:
        for event in prefetch(read_unit(unit, preprocessor, sampling, damaged, scratch), 2 * batch_size):
            summary.add(event)
            if isinstance(event, Row):
                batch.append(event)
                if len(batch) == batch_size:
                    flush()
        flush()
    except BaseException:
        writer.abort()  # the unit is redone by the next run; nothing half-written stays
        raise
    return writer.close(summary)


def run(
    units: Sequence[WorkUnit],
    layout: Layout,
    extractor,
    preprocessor,
    *,
    sampling: str,
    damaged: str,
    batch_size: int,
    scratch: Optional[str] = None,
    progress=None,
    on_unit: Optional[Callable[[dict], None]] = None,
) -> None:
    """Runs `run_unit` over `units` in order. ``progress``: a tqdm-like bar counted in frames."""
    for unit in units:
        record = run_unit(
            unit,
            layout,
            extractor,
            preprocessor,
            sampling=sampling,
            damaged=damaged,
            batch_size=batch_size,
            scratch=scratch,
            on_rows=progress.update if progress is not None else None,
        )
        if on_unit is not None:
            on_unit(record)
