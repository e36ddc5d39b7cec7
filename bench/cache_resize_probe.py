"""The fc7 cache build on a prepared dataset with tf.data's two MATLAB resizes, interleaved in one process.

    python bench/cache_resize_probe.py --dataset /work/rehearsal_full/clips2185_scale1_seed0/tfds/video_folder/rehearsal_every5/2.0.0
                                       [--split test] [--batches 60] [--rounds 2]

`host`: `EmoNetPreprocessor.traced_image_bytes` as shipped (graph decode, host resize in a
numpy_function, where `_host_resize_exact` holds). `graph`: the same with `_host_resize_exact` forced
False (graph decode and graph resize, what tf.data ran before 2026-12-01 18:30 UTC). Each round builds
the first `--batches` x 32 records of `--split` into a temporary cache with each, and prints records/s
and the ratio to the backbone's forward alone (seeded random weights, batch 32, 20 s). The first round
also reads the records from disk; compare later rounds.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", required=True, help="a prepared TFDS dataset folder (holds dataset_info.json)")
    parser.add_argument("--split", default="test")
    parser.add_argument("--batches", type=int, default=60)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    import tensorflow as tf

    from emonet_tf import data as data_lib
    from emonet_tf import features, preprocessing
    from emonet_tf import preprocessor as preprocessor_lib
    from emonet_tf.backbone import AlexNetBackbone

    info = data_lib.inspect_dataset(args.dataset)
    keras.utils.set_random_seed(0)
    backbone = AlexNetBackbone()
    forward = features.fc7_function(backbone)
    x = tf.zeros([32, 227, 227, 3])
    for _ in range(3):
        forward(x).numpy()
    t0, n = time.perf_counter(), 0
    while time.perf_counter() - t0 < 20:
        forward(x).numpy()
        n += 32
    alone = n / (time.perf_counter() - t0)
    print(f"forward alone: {alone:.1f} images/s", flush=True)
    exact = preprocessing._host_resize_exact
    out = {"forward_images_per_second": alone, "host": [], "graph": []}
    tmp = tempfile.mkdtemp(prefix="cache_probe_")
    try:
        for round_ in range(args.rounds):
            for mode in ("host", "graph"):
                preprocessing._host_resize_exact = exact if mode == "host" else (lambda: False)
                preprocessor_lib._traced_image_bytes.cache_clear()
                folder = os.path.join(tmp, mode)
                shutil.rmtree(folder, ignore_errors=True)
                t0 = time.perf_counter()
                features.build_feature_cache(
                    backbone, info, args.split, folder, fingerprint=mode, batch_size=32, stop_after_batches=args.batches
                )
                rate = args.batches * 32 / (time.perf_counter() - t0)
                out[mode].append(rate)
                load = os.getloadavg()[0]
                print(f"round {round_} {mode}: {rate:.1f} records/s ({rate / alone:.2f}x) load {load:.2f}", flush=True)
    finally:
        preprocessing._host_resize_exact = exact
        shutil.rmtree(tmp, ignore_errors=True)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
