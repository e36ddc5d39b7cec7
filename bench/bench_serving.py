"""Serving images/s: the exported SavedModel on JPEG bytes versus `EmoNet.predict_images` and the model alone.

    python bench/bench_serving.py [--batch-sizes 16 64] [--seconds 4] [--out bench/results/serving.json]

Inputs are real JPEGs: the photographs of tests/conftest.py `photo_arrays()` (matplotlib's sample
photos and crops of them), each resized to 320x240, 640x480 and 1280x720 and encoded at quality 90
(18 distinct files, cycled to fill a batch). One EmoNetClassifier (seeded random weights: speed does
not depend on the values) is
  * exported with `emonet_tf.export.export_saved_model` twice, with the MATLAB resize (the
    export's default and what `predict_images` does) and with `bicubic`, reloaded with
    `tf.saved_model.load` and called through its `serving_default` signature (images_bytes);
  * wrapped in `emonet_tf.inference.EmoNet` and called with `predict_images(list of bytes)`
    (MATLAB resize, decoding in a thread pool);
  * called as a `tf.function` of the Keras model on already preprocessed 227x227 arrays: the
    model-only ceiling (reference, ratio 1).
The served probabilities are checked against `predict_images` (MATLAB resize) before timing.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tests"))
import common  # noqa: E402

SIZES = ((320, 240), (640, 480), (1280, 720))


def jpeg_files(quality: int = 90) -> list[bytes]:
    import cv2
    from conftest import photo_arrays

    out = []
    for image in photo_arrays().values():
        for size in SIZES:
            resized = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
            ok, buf = cv2.imencode(
                ".jpg", cv2.cvtColor(resized, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality]
            )
            assert ok
            out.append(buf.tobytes())
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[16, 64])
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--out", default="bench/results/serving.json")
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    import numpy as np
    import tensorflow as tf

    from emonet_tf import EmoNetClassifier, preprocessing
    from emonet_tf.export import SERVING_DEFAULT, export_saved_model
    from emonet_tf.inference import EmoNet

    common.header("Serving images/s from JPEG bytes: SavedModel vs EmoNet.predict_images vs model-only ceiling")
    print(f"load average at start: {os.getloadavg()}")
    files = jpeg_files()
    print(
        f"{len(files)} JPEGs, {min(map(len, files)) / 1e3:.0f}-{max(map(len, files)) / 1e3:.0f} kB, sizes "
        + ", ".join(f"{w}x{h}" for w, h in SIZES)
    )
    keras.utils.set_random_seed(0)
    model = EmoNetClassifier()
    emonet = EmoNet(model)
    tmp = tempfile.mkdtemp(prefix="bench_serving_")
    try:
        served = {}
        for method in ("matlab", "bicubic"):
            path = os.path.join(tmp, method)
            print(export_saved_model(model, path, resize_method=method))
            served[method] = tf.saved_model.load(path).signatures[SERVING_DEFAULT]

        # Correctness before speed: the SavedModel (MATLAB resize) and predict_images agree.
        check = files[:4]
        want = np.stack([p.probabilities for p in emonet.predict_images(check)])
        got = served["matlab"](images_bytes=tf.constant(check))["probabilities"].numpy()
        diff = float(np.max(np.abs(got - want)))
        print(f"max |SavedModel(matlab) - predict_images| probability difference on 4 photos: {diff:.2e}")

        ceiling_fn = tf.function(lambda x: model(x, training=False))
        results: dict[str, dict[int, float]] = {}
        for b in args.batch_sizes:
            batch = [files[i % len(files)] for i in range(b)]
            batch_t = tf.constant(batch)
            arrays = tf.constant(
                np.stack([preprocessing.preprocess_image_bytes(tf.constant(d)).numpy() for d in batch])
            )
            measures = {
                "Keras model on preprocessed arrays (ceiling, reference)": lambda: ceiling_fn(arrays).numpy(),
                "SavedModel serving_default, resize matlab (export default)": lambda: served["matlab"](
                    images_bytes=batch_t
                )["probabilities"].numpy(),
                "SavedModel serving_default, resize bicubic": lambda: served["bicubic"](images_bytes=batch_t)[
                    "probabilities"
                ].numpy(),
                "EmoNet.predict_images(bytes), resize matlab": lambda: emonet.predict_images(batch, batch_size=b),
            }
            for name, fn in measures.items():
                results.setdefault(name, {})[b] = common.throughput(fn, b, args.seconds, warmup=1)

        ceiling = results["Keras model on preprocessed arrays (ceiling, reference)"]
        predict = results["EmoNet.predict_images(bytes), resize matlab"]
        print(
            "\n| path | " + " | ".join(f"batch {b}: img/s (/ceiling, /predict_images)" for b in args.batch_sizes) + " |"
        )
        print("|---|" + "---|" * len(args.batch_sizes))
        for name, row in results.items():
            cells = [f"{row[b]:.1f} ({row[b] / ceiling[b]:.2f}x, {row[b] / predict[b]:.2f}x)" for b in args.batch_sizes]
            print(f"| {name} | " + " | ".join(cells) + " |")
        print(f"\nload average at end: {os.getloadavg()}")
        common.write_json(
            args.out,
            {
                "images_per_second": results,
                "jpeg_count": len(files),
                "savedmodel_vs_predict_images_max_prob_diff": diff,
                "load_average_end": os.getloadavg(),
            },
        )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
