"""Training-step images/s: Keras EmoNet vs emonet-py's PyTorch AlexNetBigEmoNet, head-only and full fine-tune.

    python bench/bench_training_step.py [--batch 16] [--seconds 8]

Both take SGD steps (momentum 0.9, lr 1e-4, the paper's recipe) on the same random batch with
softmax cross-entropy. "head only" trains fc8 with the rest frozen (the paper's setting); "full"
trains every layer. The Keras step is one `tf.function` (no XLA: see bench_grouped_conv.py).
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402


def keras_step(model, trainable, x, y):
    import keras
    import tensorflow as tf

    optimizer = keras.optimizers.SGD(learning_rate=1e-4, momentum=0.9)
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            loss = loss_fn(y, model(x, training=True))
        grads = tape.gradient(loss, trainable)
        optimizer.apply_gradients(zip(grads, trainable))
        return loss

    return lambda: step().numpy()


def torch_step(net, params, x, y):
    import torch

    optimizer = torch.optim.SGD(params, lr=1e-4, momentum=0.9)
    loss_fn = torch.nn.CrossEntropyLoss()

    def step():
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(net(x), y)
        loss.backward()
        optimizer.step()
        return loss.item()

    return step


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--out", default="bench/results/training_step.json")
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import numpy as np
    import tensorflow as tf
    import torch
    from emonet_py.alexnet_big import AlexNetBigEmoNet

    from emonet_tf import EmoNetClassifier
    from emonet_tf.image_spec import IMAGE_SIZE

    common.header(f"Training step, images/s at batch {args.batch} (higher is better)")
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, (args.batch, IMAGE_SIZE, IMAGE_SIZE, 3)).astype("float32")
    labels = rng.integers(0, 20, args.batch)

    model = EmoNetClassifier(activation=None)
    net = AlexNetBigEmoNet().train()  # train mode returns logits
    x_tf, y_tf = tf.constant(images), tf.constant(labels)
    x_pt = torch.from_numpy(images.transpose(0, 3, 1, 2).copy() - 115.0)
    y_pt = torch.from_numpy(labels)
    results = {}
    for mode in ("head only", "full"):
        head_only = mode == "head only"
        model.backbone.trainable = not head_only
        trainable = model.trainable_weights
        for p in net.parameters():
            p.requires_grad_(not head_only)
        for p in net.fc3.parameters():
            p.requires_grad_(True)
        params = [p for p in net.parameters() if p.requires_grad]
        results[mode] = {
            "pytorch": common.throughput(torch_step(net, params, x_pt, y_pt), args.batch, args.seconds),
            "keras": common.throughput(keras_step(model, trainable, x_tf, y_tf), args.batch, args.seconds),
        }
    print("\n| mode | keras | pytorch | keras / pytorch |\n|---|---|---|---|")
    for mode, r in results.items():
        print(f"| {mode} | {r['keras']:.1f} | {r['pytorch']:.1f} | {r['keras'] / r['pytorch']:.2f}x |")
    common.write_json(args.out, {"batch": args.batch, "images_per_second": results})


if __name__ == "__main__":
    main()
