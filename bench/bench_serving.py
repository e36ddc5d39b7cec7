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

Then a per-stage breakdown per image size (`--stages`, on by default; best of 3, ms per image, wall and
CPU time of the whole process): PIL decode (`decode_bytes`), the host MATLAB resize in numpy
(`_host_matlab_imresize`: scipy CSR passes, what `predict_images` runs) and the graph's (`resize_image`
traced, what the SavedModel runs), the in-graph decode (`decode_image`), the SavedModel's whole per-image
work (`preprocess_image_bytes` traced) and tf.data's (`EmoNetPreprocessor.traced_image_bytes`: graph
decode, host resize in a numpy_function); the model's CPU ms per image at each batch size. From these, the
ceiling the CPU allows: the model alone keeps every core busy at batch 64, so an end-to-end path that
also preprocesses can reach at most model CPU / (model CPU + preprocessing CPU) of the model-only rate,
however well the two overlap (CPU times in the same run: steadier than wall time on a shared machine).
Host stages run in one thread here; predict_images spreads them over a thread pool while the model runs.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time

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


def stage_costs(fn, items, repeats: int = 3) -> tuple[float, float]:
    """(wall ms, CPU ms of this process) per item of `fn(item)` over `items`, best of `repeats` (one warm-up)."""
    for item in items:
        fn(item)
    wall = cpu = float("inf")
    for _ in range(repeats):
        w0, c0 = time.perf_counter(), time.process_time()
        for item in items:
            fn(item)
        wall = min(wall, (time.perf_counter() - w0) * 1e3 / len(items))
        cpu = min(cpu, (time.process_time() - c0) * 1e3 / len(items))
    return wall, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[16, 64])
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--out", default="bench/results/serving.json")
    parser.add_argument("--no-stages", dest="stages", action="store_false", help="skip the per-stage breakdown")
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
        model_cpu_ms: dict[int, float] = {}
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
            model_cpu_ms[b] = stage_costs(lambda _: ceiling_fn(arrays).numpy(), [None])[1] / b

        ceiling = results["Keras model on preprocessed arrays (ceiling, reference)"]
        predict = results["EmoNet.predict_images(bytes), resize matlab"]
        print(
            "\n| path | " + " | ".join(f"batch {b}: img/s (/ceiling, /predict_images)" for b in args.batch_sizes) + " |"
        )
        print("|---|" + "---|" * len(args.batch_sizes))
        for name, row in results.items():
            cells = [f"{row[b]:.1f} ({row[b] / ceiling[b]:.2f}x, {row[b] / predict[b]:.2f}x)" for b in args.batch_sizes]
            print(f"| {name} | " + " | ".join(cells) + " |")
        stages = per_stage(files) if args.stages else {}
        ceilings = {}
        if stages:
            for path, stage in (
                ("predict_images", "host preprocess_bytes"),
                ("predict_images before (graph resize)", "graph resize + PIL decode"),
                ("SavedModel", "graph bytes -> 227"),
            ):
                pre_cpu = stages["all 18 files"][stage][1]
                for b in args.batch_sizes:
                    ceilings[f"{path} batch {b}"] = model_cpu_ms[b] / (model_cpu_ms[b] + pre_cpu)
            print(f"\nmodel CPU ms per image: {', '.join(f'batch {b}: {v:.2f}' for b, v in model_cpu_ms.items())}")
            print(
                "CPU ceiling of the ratio to model-only (model CPU / (model CPU + preprocessing CPU) per image): "
                + ", ".join(f"{k}: {v:.2f}x" for k, v in ceilings.items())
            )
        print(f"\nload average at end: {os.getloadavg()}")
        common.write_json(
            args.out,
            {
                "images_per_second": results,
                "jpeg_count": len(files),
                "savedmodel_vs_predict_images_max_prob_diff": diff,
                "stages_ms_per_image_wall_cpu": stages,
                "model_cpu_ms_per_image": model_cpu_ms,
                "cpu_ceiling_ratio": ceilings,
                "load_average_end": os.getloadavg(),
            },
        )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def per_stage(files: list[bytes]) -> dict[str, dict[str, tuple[float, float]]]:
    """ms per image (wall, CPU) of each preprocessing stage, per image size and over all files; printed."""
    import numpy as np
    import tensorflow as tf

    from emonet_tf import preprocessing
    from emonet_tf.preprocessor import EmoNetPreprocessor

    graph_resize = preprocessing._graph_functions("matlab", True).from_pixels
    # The SavedModel's per-image work: preprocess_image_bytes, graph ops only (what export.py serves).
    graph_bytes = tf.function(
        lambda d: preprocessing.preprocess_image_bytes(d, method="matlab", antialias=True),
        input_signature=[tf.TensorSpec([], tf.string)],
    )
    # tf.data's (training, evaluation, the fc7 cache): graph decode, then the host resize in a numpy_function.
    data_bytes = EmoNetPreprocessor(resize_method="matlab", antialias=True).traced_image_bytes
    graph_decode = tf.function(preprocessing.decode_image, input_signature=[tf.TensorSpec([], tf.string)])
    groups = {f"{w}x{h}": files[i :: len(SIZES)] for i, (w, h) in enumerate(SIZES)}
    groups["all 18 files"] = files
    out: dict[str, dict[str, tuple[float, float]]] = {}
    print("\n| stage (ms per image, wall / CPU) | " + " | ".join(groups) + " |")
    print("|---|" + "---|" * len(groups))
    for name, group in groups.items():
        pixels = [preprocessing.decode_bytes(d) for d in group]
        tensors = [tf.constant(d) for d in group]
        pixel_tensors = [tf.constant(p) for p in pixels]
        out[name] = {
            "PIL decode (decode_bytes)": stage_costs(preprocessing.decode_bytes, group),
            "host MATLAB resize, scipy CSR (predict_images)": stage_costs(preprocessing._host_matlab_imresize, pixels),
            "graph MATLAB resize (resize_image traced)": stage_costs(lambda t: graph_resize(t).numpy(), pixel_tensors),
            "host preprocess_bytes (decode + resize)": stage_costs(preprocessing.preprocess_bytes, group),
            "graph decode_image (checks + decode_jpeg + cast)": stage_costs(lambda t: graph_decode(t).numpy(), tensors),
            "graph bytes -> 227 (the SavedModel's per-image work)": stage_costs(
                lambda t: graph_bytes(t).numpy(), tensors
            ),
            "tf.data bytes -> 227 (traced_image_bytes: graph decode + host resize)": stage_costs(
                lambda t: data_bytes(t).numpy(), tensors
            ),
            "np.stack of 227x227x3 float32 images, batch 64 (batching)": tuple(
                v / 64 for v in stage_costs(lambda batch: np.stack(batch), [[np.zeros((227, 227, 3), np.float32)] * 64])
            ),
        }
    # Short keys for the ceiling computation.
    for name in out:
        out[name]["host preprocess_bytes"] = out[name]["host preprocess_bytes (decode + resize)"]
        out[name]["graph bytes -> 227"] = out[name]["graph bytes -> 227 (the SavedModel's per-image work)"]
        out[name]["graph resize + PIL decode"] = tuple(  # predict_images before the numpy resize
            a + b
            for a, b in zip(
                out[name]["graph MATLAB resize (resize_image traced)"], out[name]["PIL decode (decode_bytes)"]
            )
        )
    for stage in list(out["all 18 files"])[:-3]:
        cells = [f"{out[g][stage][0]:.2f} / {out[g][stage][1]:.2f}" for g in groups]
        print(f"| {stage} | " + " | ".join(cells) + " |")
    return out


if __name__ == "__main__":
    main()
