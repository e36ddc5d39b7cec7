"""Host decoding cost of the decoder contract: `EmoNet.predict_images` on JPEG files, PIL decoding (now)
versus the previous host path (TF's `tf.io.decode_image`, fast IDCT, decode and resize in one traced call).

    python bench/bench_decoding.py [--count 64] [--rounds 3] [--out bench/results/decoding.json]

Files: `--count` JPEGs (quality 90) of real photo content (matplotlib's grace_hopper.jpg, crops and
flips), 640x480 and 227x227. Model: EmoNet with random weights (the forward pass does not depend on
them), batch 32, the library's thread pool. Each round times the previous path and the current one
back to back, on the same files; the best round of each is reported (the machine is shared), with
the process CPU time per image (less sensitive to other processes than wall time) and the CPU time
of the preprocessing alone (decode + resize, one thread).
Decode-only rows time one call per image on one thread: PIL (`decode_bytes`), TF fast IDCT, TF accurate
IDCT.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import types

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402


def make_files(folder: str, count: int) -> dict[str, list[str]]:
    import cv2
    import matplotlib
    from PIL import Image

    from emonet_tf.image_spec import IMAGE_SIZE

    side = f"{IMAGE_SIZE}x{IMAGE_SIZE}"
    photo = cv2.imread(os.path.join(matplotlib.get_data_path(), "sample_data", "grace_hopper.jpg"))[..., ::-1]
    files: dict[str, list[str]] = {"640x480": [], side: []}
    for i in range(count):
        crop = photo[i % 40 :, (i * 3) % 60 :]
        crop = crop[:, ::-1] if i % 2 else crop
        for size, (w, h) in (("640x480", (640, 480)), (side, (IMAGE_SIZE, IMAGE_SIZE))):
            path = os.path.join(folder, f"{size}_{i}.jpg")
            Image.fromarray(np.ascontiguousarray(cv2.resize(crop, (w, h), interpolation=cv2.INTER_AREA))).save(
                path, "JPEG", quality=90
            )
            files[size].append(path)
    return files


def previous_host_path(method: str):
    """The host path before the decoder contract: tf.io.decode_image (fast IDCT) + resize, one tf.function."""
    import tensorflow as tf

    from emonet_tf import preprocessing

    def preprocess(data):
        image = tf.io.decode_image(data, channels=3, dtype=tf.float32, expand_animations=False)
        image.set_shape([None, None, 3])
        return preprocessing.resize_image(image * 255.0, method=method)

    from_bytes = tf.function(preprocess, input_signature=[tf.TensorSpec([], tf.string)])

    def load_image(path, method=method, antialias=True, **_):
        with open(path, "rb") as f:
            return from_bytes(tf.constant(f.read())).numpy()

    return types.SimpleNamespace(**{**vars(preprocessing), "load_image": load_image})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results", "decoding.json"))
    args = parser.parse_args()

    import keras
    import tensorflow as tf

    from emonet_tf import EmoNet, EmoNetClassifier, inference, preprocessing

    common.header("Host decoding: PIL (decoder contract) vs the previous tf.io.decode_image path")
    keras.utils.set_random_seed(0)
    results: dict = {"count": args.count, "predict_images": {}, "decode_only": {}}
    with tempfile.TemporaryDirectory() as tmp:
        files = make_files(tmp, args.count)
        for method in ("matlab", "bicubic"):
            emonet = EmoNet(EmoNetClassifier(), resize_method=method)
            current = inference.preprocessing
            previous = previous_host_path(method)
            for size, paths in files.items():
                best = {"previous (tf.io.decode_image)": 0.0, "current (PIL)": 0.0}
                emonet.predict_images(paths[:8])  # warm-up: tracing of both paths
                inference.preprocessing = previous
                emonet.predict_images(paths[:8])
                inference.preprocessing = current
                cpu = {name: float("inf") for name in best}
                prep = {name: float("inf") for name in best}
                for _ in range(args.rounds):
                    for name, module in (("previous (tf.io.decode_image)", previous), ("current (PIL)", current)):
                        inference.preprocessing = module
                        start, start_cpu = time.perf_counter(), time.process_time()
                        preds = emonet.predict_images(paths)
                        rate = len(paths) / (time.perf_counter() - start)
                        cpu[name] = min(cpu[name], (time.process_time() - start_cpu) / len(paths))
                        assert all(p.ok for p in preds)
                        best[name] = max(best[name], rate)
                        # Preprocessing alone (decode + resize, one thread): CPU seconds per image.
                        start_cpu = time.process_time()
                        for path in paths:
                            module.load_image(path, method=method)
                        prep[name] = min(prep[name], (time.process_time() - start_cpu) / len(paths))
                inference.preprocessing = current
                key = f"{method} resize, {size}"
                results["predict_images"][key] = {
                    "images_per_s": best,
                    "cpu_s_per_image": cpu,
                    "preprocess_cpu_s_per_image": prep,
                }
                old, new = "previous (tf.io.decode_image)", "current (PIL)"
                print(
                    f"| predict_images, {key} | previous {best[old]:.1f} images/s, {cpu[old] * 1e3:.0f} ms CPU/image "
                    f"(preprocess {prep[old] * 1e3:.1f} ms) | current {best[new]:.1f} images/s, "
                    f"{cpu[new] * 1e3:.0f} ms CPU/image (preprocess {prep[new] * 1e3:.1f} ms) | "
                    f"images/s ratio {best[new] / best[old]:.2f} |"
                )
        for size, paths in files.items():
            blobs = [open(p, "rb").read() for p in paths]
            it = iter(range(10**9))
            rows = {
                "PIL (decode_bytes)": lambda: preprocessing.decode_bytes(blobs[next(it) % len(blobs)]),
                "TF decode_jpeg, fast IDCT": lambda: tf.io.decode_jpeg(blobs[next(it) % len(blobs)], channels=3),
                "TF decode_jpeg, accurate IDCT": lambda: tf.io.decode_jpeg(
                    blobs[next(it) % len(blobs)], channels=3, dct_method="INTEGER_ACCURATE"
                ),
            }
            for name, fn in rows.items():
                rate = common.throughput(fn, 1, min_seconds=3.0)
                results["decode_only"][f"{name}, {size}"] = rate
                print(f"| decode only, {name}, {size} | {rate:.0f} images/s |")
    common.write_json(args.out, results)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
