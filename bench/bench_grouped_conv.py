"""Grouped convolution: Keras 3 `Conv2D(groups=2)` vs emonet_tf's split/concat `GroupedConv2D`.

    python bench/bench_grouped_conv.py [--seconds 4]

Times forward and forward+backward of AlexNet's conv2 (27x27x96 -> 256, 5x5, 2 groups) at batch 16,
checks that the two give the same outputs, and whether each can be saved as a SavedModel.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--batch", type=int, default=16)
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    import numpy as np
    import tensorflow as tf

    from emonet_tf.layers import GroupedConv2D

    common.header("Grouped convolution (AlexNet conv2), batches/s")
    x = tf.constant(np.random.default_rng(0).standard_normal((args.batch, 27, 27, 96)).astype("float32"))
    split = GroupedConv2D(256, 5, groups=2, padding="same")
    split.build(x.shape)
    native = keras.layers.Conv2D(256, 5, groups=2, padding="same")
    native.build(x.shape)
    native.set_weights(split.get_weights())
    diff = float(tf.reduce_max(tf.abs(native(x) - split(x))))
    print(f"max |native - split| = {diff:.2e}")

    rows = {}
    for name, layer in (("keras Conv2D(groups=2)", native), ("GroupedConv2D split/concat", split)):
        fwd = tf.function(lambda: layer(x))

        @tf.function
        def step():
            with tf.GradientTape() as tape:
                y = tf.reduce_sum(layer(x) ** 2)
            return tape.gradient(y, layer.trainable_weights)

        rows[name] = (
            common.throughput(lambda: fwd().numpy(), 1, args.seconds),
            common.throughput(lambda: [g.numpy() for g in step()], 1, args.seconds),
        )
        module = tf.Module()
        module.layer = layer
        module.f = tf.function(lambda t: layer(t), input_signature=[tf.TensorSpec([None, 27, 27, 96], tf.float32)])
        try:
            tf.saved_model.save(module, tempfile.mkdtemp())
            saved = "yes"
        except Exception as err:  # noqa: BLE001 - report any failure
            saved = f"no ({type(err).__name__})"
        rows[name] += (saved,)
    print("\n| layer | forward | forward+backward | SavedModel |\n|---|---|---|---|")
    base = rows["keras Conv2D(groups=2)"]
    for name, (f, fb, saved) in rows.items():
        print(f"| {name} | {f:.1f} ({f / base[0]:.2f}x) | {fb:.1f} ({fb / base[1]:.2f}x) | {saved} |")


if __name__ == "__main__":
    main()
