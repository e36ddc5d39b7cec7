"""Stored-frame encoding of the video builders: lossless PNG versus JPEG quality 95 (the default).

    python bench/bench_frame_encoding.py [--videos 3] [--frames 90] [--size 640x360] [--out bench/results/frame_encoding.json]

On generated 30 fps mp4v videos with moving photographic content (bench_frames.moving_frames), the
frames are decoded once with `emonet_tf.video.iter_frames`, then for each encoding
(`tfds_builders.video_frames.encode_frame`: JPEG at JPEG_QUALITY, PNG at PNG_COMPRESSION and two
other zlib levels for comparison) we measure, side by side:
* bytes per frame (the record size is dominated by it) and the ratio to JPEG;
* encode cost (what the build pays per frame) and decode cost with `emonet_tf.preprocessing.decode_image` (what every
  training epoch pays), as CPU ms per frame (process CPU time: robust when other processes share
  the machine) and as wall-clock frames/s;
* the pixel error against the decoded frame (PNG must be 0; JPEG's max/mean and PSNR);
* `extract_video` with `sampling="all"` end to end (decode + encode), video frames/s.
Variants are timed round-robin, `--repeats` rounds, best round kept; OpenCV runs on one thread
(`cv2.setNumThreads(1)`), as a Beam worker would per core. Results as JSON in bench/results/.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.path.insert(0, ROOT)
import common  # noqa: E402
from bench_frames import write_moving_video  # noqa: E402


def timed(fn) -> tuple[float, float]:
    """(wall seconds, process CPU seconds) of one call."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def best_of_rounds(jobs: dict, repeats: int) -> dict:
    """name -> (best wall s, best CPU s) of each job, timed round-robin after one warm-up round."""
    for fn in jobs.values():
        fn()
    best = {name: (float("inf"), float("inf")) for name in jobs}
    for _ in range(repeats):
        for name, fn in jobs.items():
            wall, cpu = timed(fn)
            best[name] = (min(best[name][0], wall), min(best[name][1], cpu))
    return best


def measure(frames, variants: dict, repeats: int) -> dict:
    import numpy as np

    from emonet_tf import preprocessing

    encoded = {name: [encode(f) for f in frames] for name, encode in variants.items()}
    jobs = {}
    for name, encode in variants.items():
        jobs[("encode", name)] = lambda encode=encode: [encode(f) for f in frames]
        # The decoder the tf.data pipeline uses (the decoder contract: accurate IDCT for JPEG).
        jobs[("decode", name)] = lambda data=encoded[name]: [preprocessing.decode_image(b) for b in data]
    times = best_of_rounds(jobs, repeats)
    n = len(frames)
    out = {}
    for name in variants:
        decoded = [preprocessing.decode_image(b).numpy().astype(np.uint8) for b in encoded[name]]
        err = np.concatenate([np.abs(d.astype(np.int16) - f).ravel() for d, f in zip(decoded, frames)])
        mse = float(np.mean(err.astype(np.float64) ** 2))
        (enc_wall, enc_cpu), (dec_wall, dec_cpu) = times[("encode", name)], times[("decode", name)]
        out[name] = {
            "bytes_per_frame": float(np.mean([len(b) for b in encoded[name]])),
            "encode_cpu_ms_per_frame": 1000 * enc_cpu / n,
            "encode_frames_per_s": n / enc_wall,
            "decode_cpu_ms_per_frame": 1000 * dec_cpu / n,
            "decode_frames_per_s": n / dec_wall,
            "max_abs_error": int(err.max()),
            "mean_abs_error": float(err.mean()),
            "psnr_db": float("inf") if mse == 0 else float(10 * np.log10(255**2 / mse)),
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--videos", type=int, default=3)
    parser.add_argument("--frames", type=int, default=90)
    parser.add_argument("--size", default="640x360")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=os.path.join(HERE, "results", "frame_encoding.json"))
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))

    import cv2
    import tensorflow as tf  # noqa: F401  (imported before timing: decode_image is measured, not the import)

    cv2.setNumThreads(1)

    from emonet_tf import video
    from tfds_builders import video_frames as vf

    common.header("Frame encoding of the video builders: PNG (lossless) vs JPEG q95")
    load = open("/proc/loadavg").read().split()[0] if os.path.exists("/proc/loadavg") else "?"
    with tempfile.TemporaryDirectory() as tmp:
        paths = [
            write_moving_video(os.path.join(tmp, f"clip_{k}.mp4"), args.frames, width, height, seed=k)
            for k in range(args.videos)
        ]
        frames = [f.image for p in paths for f in video.iter_frames(p)]
        variants = {
            f"jpeg q{vf.JPEG_QUALITY} (default)": lambda f: vf.encode_frame(f, "jpeg"),
            f"png level {vf.PNG_COMPRESSION} (frame_encoding=png)": lambda f: vf.encode_frame(f, "png"),
        }
        for level in (3, 6):
            if level != vf.PNG_COMPRESSION:
                variants[f"png level {level}"] = lambda f, level=level: vf.encode_png(f, level)
        results = measure(frames, variants, args.repeats)
        entries = [
            vf.VideoEntry(video_id=f"clip_{k}", path=p, label="x", soft_label=(1.0,)) for k, p in enumerate(paths)
        ]
        n_frames = len(frames)
        extract_times = best_of_rounds(
            {
                enc: lambda enc=enc: [vf.extract_video(e, "all", frame_encoding=enc) for e in entries]
                for enc in vf.FRAME_ENCODINGS
            },
            args.repeats,
        )
        extract = {
            enc: {"frames_per_s": n_frames / wall, "cpu_ms_per_frame": 1000 * cpu / n_frames}
            for enc, (wall, cpu) in extract_times.items()
        }
    load_end = open("/proc/loadavg").read().split()[0] if os.path.exists("/proc/loadavg") else "?"
    jpeg = results[next(iter(results))]
    print(
        f"\n{n_frames} frames of {width}x{height} (mp4v, moving photo); 1-minute load {load} at start, "
        f"{load_end} at end\n"
    )
    print(
        "| encoding | bytes/frame | vs JPEG | encode CPU ms/frame (frames/s) | decode CPU ms/frame (frames/s), "
        "preprocessing.decode_image | max / mean abs error | PSNR dB |"
    )
    print("|---|---|---|---|---|---|---|")
    for name, r in results.items():
        print(
            f"| {name} | {r['bytes_per_frame']:.0f} | {r['bytes_per_frame'] / jpeg['bytes_per_frame']:.2f}x | "
            f"{r['encode_cpu_ms_per_frame']:.2f} ({r['encode_frames_per_s']:.0f}) | "
            f"{r['decode_cpu_ms_per_frame']:.2f} ({r['decode_frames_per_s']:.0f}) | "
            f"{r['max_abs_error']} / {r['mean_abs_error']:.2f} | {r['psnr_db']:.1f} |"
        )
    print(
        "\nextract_video, sampling all (decode + encode): "
        + ", ".join(
            f"{enc} {r['cpu_ms_per_frame']:.2f} CPU ms/frame ({r['frames_per_s']:.0f} frames/s)"
            for enc, r in extract.items()
        )
    )
    common.write_json(
        args.out,
        {
            "frames": n_frames,
            "size": [width, height],
            "load_at_start": load,
            "load_at_end": load_end,
            "encodings": results,
            "extract_video_all": extract,
        },
    )
    print(f"results: {args.out}")


if __name__ == "__main__":
    main()
