"""The forward pass's compiled path, chosen by batch size: TensorFlow's graph (oneDNN) or XLA.

On the 2-core CPU machines of bench/README.md ("Batch size and the compiled path"), XLA
(`jit_compile=True`) gives the steadier batch-1 latency, while the oneDNN graph is faster from a few
images per batch on (issue 15). `BatchSizeDispatch` runs one function through whichever path a
batch's size calls for, so `EmoNet.predict_logits` is fast for one image and for a batch alike.
XLA compiles once per distinct batch size (about 1.6 s more than tracing the graph at batch 1 on
that machine), which is why it is only used up to `XLA_MAX_BATCH` images, and only once a batch size
has come `XLA_AFTER_CALLS` times: a one-off call (`emonet predict one.jpg`, the last short batch of a
folder) stays on the graph instead of paying a compile it would never earn back.
"""

from __future__ import annotations

from typing import Callable, Sequence, Union

import numpy as np
import tensorflow as tf

# The largest batch that runs through XLA under jit_compile="auto"; measured by
# `python bench/bench_inference.py` (bench/README.md, "Batch size and the compiled path").
XLA_MAX_BATCH = 1
# Calls of one batch size on the graph before "auto" compiles it with XLA.
XLA_AFTER_CALLS = 8

JIT_CHOICES = ("auto", True, False)


def check_jit_compile(jit_compile: Union[str, bool]) -> Union[str, bool]:
    """`jit_compile` as "auto", True or False (plain Python values); raises ValueError otherwise.

    A numpy bool (`np.bool_`, e.g. read from an array or a config) counts as the bool it holds; the
    integers 1 and 0, strings other than "auto" and None are refused.
    """
    if isinstance(jit_compile, (bool, np.bool_)):
        return bool(jit_compile)
    if isinstance(jit_compile, str) and jit_compile == "auto":
        return "auto"
    raise ValueError(f"jit_compile must be 'auto', True or False, got {jit_compile!r}")


class BatchSizeDispatch:
    """Calls `fn(x)` through the oneDNN graph or through XLA, depending on x's batch size.

    Args:
      fn: a function of one float32 tensor [N, *item_shape] (e.g. a Keras model called with
        training=False); it must not depend on Python state that changes between calls.
      item_shape: the shape of one item, e.g. (227, 227, 3).
      jit_compile: "auto" (XLA for N <= xla_max_batch once N has come xla_after_calls times, the
        graph otherwise), True (XLA always) or False (the graph always).
      xla_max_batch: the largest N sent to XLA under "auto".
      xla_after_calls: calls of one batch size that "auto" runs on the graph before XLA.

    Raises:
      ValueError: jit_compile is none of "auto", True, False.
    """

    def __init__(
        self,
        fn: Callable[[tf.Tensor], tf.Tensor],
        item_shape: Sequence[int],
        jit_compile: Union[str, bool] = "auto",
        xla_max_batch: int = XLA_MAX_BATCH,
        xla_after_calls: int = XLA_AFTER_CALLS,
    ):
        self.jit_compile = check_jit_compile(jit_compile)
        self.xla_max_batch = int(xla_max_batch)
        self.xla_after_calls = int(xla_after_calls)
        self.calls: dict[int, int] = {}  # batch size -> calls so far
        spec = [tf.TensorSpec([None, *item_shape], tf.float32)]
        self.graph = tf.function(fn, input_signature=spec)
        self.xla = tf.function(fn, input_signature=spec, jit_compile=True)

    def path(self, batch_size: int) -> str:
        """The path the next batch of `batch_size` items takes: "xla" or "graph"."""
        if self.jit_compile == "auto":
            warm = self.calls.get(batch_size, 0) >= self.xla_after_calls
            return "xla" if 0 < batch_size <= self.xla_max_batch and warm else "graph"
        return "xla" if self.jit_compile else "graph"

    def __call__(self, x: tf.Tensor) -> tf.Tensor:
        x = tf.convert_to_tensor(x, tf.float32)
        size = int(x.shape[0])
        fn = self.xla if self.path(size) == "xla" else self.graph
        self.calls[size] = self.calls.get(size, 0) + 1
        return fn(x)
