"""The video reader (PyAV, presentation timestamps, damage checks) against plain decoding, same run.

    python bench/bench_video_reader.py [--videos 4] [--frames 150] [--size 640x360] [--repeats 3]
                                       [--out bench/results/video_reader.json]

Generated 30 fps videos with moving content (`bench_frames.moving_frames`: a photo panned and
zoomed, a moving disc, mild noise), in two codecs: H.264 with B-frames (PyAV/libx264, what most
corpora hold) and mp4v (OpenCV's writer, the codec of the other benches). For each, interleaved and
best of `--repeats`, in video frames per second:

* plain decoding, the references: the `cv2.VideoCapture.read` loop (decode + BGR, the old reader's
  basis), and PyAV's `container.decode()` loop with each frame converted to an RGB array
  (`VideoFrame.to_ndarray(format="rgb24")`), both with their default threading;
* `emonet_tf.video.iter_frames` with `all` (every frame converted, timestamps, look-ahead, damage
  checks), for each FFmpeg threading mode, and with `every5` and `fps10` (frames the sampling drops
  are decoded but never converted).

The issue's target: the reader's `all` >= 0.9x of plain decoding (the faster of the two references).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))
import common  # noqa: E402
from bench_frames import moving_frames, opencv_read, write_moving_video  # noqa: E402


def write_h264(path: str, n: int, width: int, height: int, seed: int) -> str:
    import av

    with av.open(path, "w") as out:
        stream = out.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"bf": "2", "crf": "20", "g": "60"}
        for rgb in moving_frames(n, width, height, seed):
            for packet in stream.encode(__import__("av").VideoFrame.from_ndarray(rgb, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def pyav_decode_rgb(paths) -> int:
    import av

    frames = 0
    for path in paths:
        with av.open(path) as container:
            for frame in container.decode(video=0):
                frame.to_ndarray(format="rgb24")
                frames += 1
    return frames


def reader(paths, sampling: str = "all", thread_type: str = "AUTO") -> int:
    from emonet_tf import video

    frames = 0
    for path in paths:
        it = video.iter_frames(path, video.FrameSampling.parse(sampling), thread_type=thread_type)
        for _ in it:
            pass
        frames += it.frames_decoded
    return frames


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=int, default=4)
    parser.add_argument("--frames", type=int, default=150)
    parser.add_argument("--size", default="640x360")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default="bench/results/video_reader.json")
    args = parser.parse_args()
    width, height = map(int, args.size.split("x"))
    common.header("video reader vs plain decoding")
    root = tempfile.mkdtemp(prefix="bench_video_reader_")
    corpora = {
        "h264": [
            write_h264(os.path.join(root, f"v{k}.mp4"), args.frames, width, height, k) for k in range(args.videos)
        ],
        "mp4v": [
            write_moving_video(os.path.join(root, f"m{k}.mp4"), args.frames, width, height, k)
            for k in range(args.videos)
        ],
    }
    methods = {
        "plain: cv2.VideoCapture.read loop": opencv_read,
        "plain: PyAV decode + to_ndarray(rgb24)": pyav_decode_rgb,
        "iter_frames all (AUTO threads, default)": lambda p: reader(p, "all", "AUTO"),
        "iter_frames all (SLICE threads)": lambda p: reader(p, "all", "SLICE"),
        "iter_frames all (FRAME threads)": lambda p: reader(p, "all", "FRAME"),
        "iter_frames every5": lambda p: reader(p, "every5"),
        "iter_frames fps10": lambda p: reader(p, "fps10"),
    }
    results = {}
    for codec, paths in corpora.items():
        best = dict.fromkeys(methods, 0.0)
        for _ in range(args.repeats):  # interleaved: load changes hit every method alike
            for name, fn in methods.items():
                start = time.perf_counter()
                n = fn(paths)
                best[name] = max(best[name], n / (time.perf_counter() - start))
        plain = max(best["plain: cv2.VideoCapture.read loop"], best["plain: PyAV decode + to_ndarray(rgb24)"])
        results[codec] = {name: {"frames_per_s": fps, "vs_plain": fps / plain} for name, fps in best.items()}
        print(f"\n## {codec}, {args.videos} videos x {args.frames} frames at {args.size}, best of {args.repeats}")
        print("| method | frames/s | vs plain decoding (the faster reference) |")
        print("|---|---|---|")
        for name, fps in best.items():
            print(f"| {name} | {fps:.0f} | {fps / plain:.2f} |")
    common.write_json(args.out, {"results": results, "args": vars(args)})
    print(f"\nwritten: {args.out}")


if __name__ == "__main__":
    main()
