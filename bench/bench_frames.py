"""Frame extraction: the TFDS builders' frame path versus plain sequential OpenCV decoding, and build memory.

    python bench/bench_frames.py [--videos 6] [--video-seconds 4] [--size 640x360] [--repeats 3]
                                 [--memory-videos 10 100] [--profile] [--out bench/results/frames.json]

(a) Throughput, in video frames decoded per second (frames written per second for `all`), on
    generated 30 fps mp4v videos with moving content (a photo panned and zoomed, a moving disc,
    mild sensor noise), measured side by side and interleaved, best of `--repeats`:
    * `cv2.VideoCapture.read` loop: the practical limit (reference, ratio 1);
    * `emonet_tf.video.iter_frames` (decode + BGR->RGB);
    * `tfds_builders.video_frames.extract_video`, the function the builders call per video (decode +
      sampling + JPEG encode at JPEG_QUALITY, i.e. the record's bytes), for `every5` and `all`;
    * the whole build of the same videos with the `video_folder` builder (plain writer), timed
      in a child process around `download_and_prepare` (TensorFlow, which TFDS imports lazily at
      its first write, is imported before the clock starts), and the `tfds build`
      command line, timed as a whole (interpreter start and imports included).
    A breakdown of where a frame's time goes (decode, BGR->RGB, RGB->BGR, imencode, the rest) is
    always printed; `--profile` adds a cProfile of `extract_video`.
(b) Peak memory (VmHWM of a child process, whose only job is the plain build) for corpora of 10
    and 100 small generated videos (320x180, 2 s, sampling `all`), and the same 100-video corpus
    with TFDS's in-memory shuffle buffer lowered to 1 MB, to tell the builder's memory from TFDS's.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.path.insert(0, ROOT)
import common  # noqa: E402

FPS = 30.0


# ------------------------------------------------------------------------------------------------
# Generated videos (also used by bench_pipeline.py and bench_fast_path.py)


def _photo():
    import cv2
    import matplotlib

    path = os.path.join(matplotlib.get_data_path(), "sample_data", "grace_hopper.jpg")
    return cv2.cvtColor(cv2.imread(path), cv2.COLOR_BGR2RGB)


def moving_frames(n: int, width: int, height: int, seed: int = 0, tint=(1.0, 1.0, 1.0), stripes: int = 0):
    """Yields n RGB uint8 frames: a photo panned and zoomed over time, a moving disc, mild noise.

    `tint` scales the RGB channels and `stripes` (> 0: period in pixels) overlays vertical stripes,
    so that classes of a generated corpus look different.
    """
    import cv2
    import numpy as np

    rng = np.random.default_rng(seed)
    photo = _photo().astype(np.float32) * np.asarray(tint, np.float32)
    photo = np.clip(photo, 0, 255).astype(np.uint8)
    ph, pw = photo.shape[:2]
    phase = rng.uniform(0, 2 * np.pi)
    for i in range(n):
        t = i / FPS
        zoom = 1.15 + 0.1 * np.sin(0.7 * t + phase)
        # Affine map from frame coordinates to photo coordinates: pan across the photo, zooming.
        sx, sy = pw / (width * zoom), ph / (height * zoom)
        cx = pw / 2 + 0.15 * pw * np.sin(0.9 * t + phase)
        cy = ph / 2 + 0.1 * ph * np.cos(0.6 * t + phase)
        matrix = np.float32([[sx, 0, cx - sx * width / 2], [0, sy, cy - sy * height / 2]])
        frame = cv2.warpAffine(
            photo, matrix, (width, height), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REFLECT
        )
        if stripes:
            offset = int(4 * t * stripes) % (2 * stripes)
            mask = ((np.arange(width) + offset) // stripes) % 2 == 0
            frame[:, mask] = frame[:, mask] // 3
        disc = (int(width * (0.5 + 0.4 * np.sin(2.1 * t + phase))), int(height * (0.5 + 0.35 * np.cos(1.7 * t))))
        cv2.circle(frame, disc, max(4, height // 8), (250, 240, 40), -1)
        noise = rng.normal(0, 3, frame.shape).astype(np.int16)
        yield np.clip(frame.astype(np.int16) + noise, 0, 255).astype(np.uint8)


def write_moving_video(path: str, n: int, width: int, height: int, seed: int = 0, **content) -> str:
    """An mp4v video at 30 fps of `moving_frames` (OpenCV cannot write H.264)."""
    import cv2

    os.makedirs(os.path.dirname(path), exist_ok=True)
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"mp4v"), FPS, (width, height))
    if not writer.isOpened():
        raise RuntimeError(f"OpenCV cannot write {path}")
    for rgb in moving_frames(n, width, height, seed, **content):
        writer.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    writer.release()
    return path


def write_corpus(
    root: str, n_videos: int, n_frames: int, width: int, height: int, labels=("calm", "busy"), content_by_label=None
) -> list[str]:
    """root/<label>/clip_<n>.mp4, labels assigned round-robin; returns the video paths."""
    paths = []
    for k in range(n_videos):
        label = labels[k % len(labels)]
        content = (content_by_label or {}).get(label, {})
        paths.append(
            write_moving_video(
                os.path.join(root, label, f"clip_{k:03d}.mp4"), n_frames, width, height, seed=k, **content
            )
        )
    return paths


# ------------------------------------------------------------------------------------------------
# (a) throughput


def opencv_read(paths) -> int:
    """The practical limit: decode every frame with cv2.VideoCapture.read, nothing else."""
    import cv2

    frames = 0
    for path in paths:
        cap = cv2.VideoCapture(path)
        while True:
            ok, _ = cap.read()
            if not ok:
                break
            frames += 1
        cap.release()
    return frames


def iter_frames_all(paths) -> int:
    from emonet_tf import video

    frames = 0
    for path in paths:
        for _ in video.iter_frames(path):
            frames += 1
    return frames


def every5_with_grab(paths) -> tuple[int, int]:
    """Prototype, NOT the library's code: every5 where skipped frames are only `grab()`bed (decoded
    but not converted to BGR), kept ones retrieved, converted and encoded as `extract_video` does."""
    import cv2

    from tfds_builders import video_frames as vf

    decoded = written = 0
    for path in paths:
        cap = cv2.VideoCapture(path)
        index = 0
        while cap.grab():
            if index % 5 == 0:
                ok, bgr = cap.retrieve()
                vf.encode_jpeg(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
                written += 1
            index += 1
        decoded += index
        cap.release()
    return decoded, written


def entries_for(paths):
    from tfds_builders import video_frames as vf

    return [vf.VideoEntry(video_id=os.path.basename(p), path=p, label="x", soft_label=(1.0,)) for p in paths]


def extract(entries, sampling: str) -> tuple[int, int, int]:
    """Runs the builders' per-video function; returns (frames decoded, frames written, JPEG bytes)."""
    from tfds_builders import video_frames as vf

    decoded = written = nbytes = 0
    for entry in entries:
        examples, problem, n = vf.extract_video(entry, sampling)
        if problem is not None:
            raise RuntimeError(problem)
        decoded += n
        written += len(examples)
        nbytes += sum(len(ex["image"]) for _, ex in examples)
    return decoded, written, nbytes


def breakdown(paths) -> dict:
    """Seconds per frame of each step of the `all` frame path, timed inline over every frame."""
    import cv2

    from tfds_builders import video_frames as vf

    parts = dict.fromkeys(
        (
            "decode (VideoCapture.read)",
            "BGR->RGB (iter_frames)",
            "RGB->BGR (encode_jpeg)",
            "imencode q%d" % vf.JPEG_QUALITY,
        ),
        0.0,
    )
    keys = list(parts)
    frames = 0
    quality = [cv2.IMWRITE_JPEG_QUALITY, vf.JPEG_QUALITY]
    for path in paths:
        cap = cv2.VideoCapture(path)
        while True:
            t0 = time.perf_counter()
            ok, bgr = cap.read()
            t1 = time.perf_counter()
            if not ok:
                break
            rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            t2 = time.perf_counter()
            back = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
            t3 = time.perf_counter()
            ok, buf = cv2.imencode(".jpg", back, quality)
            buf.tobytes()
            t4 = time.perf_counter()
            for key, dt in zip(keys, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
                parts[key] += dt
            frames += 1
        cap.release()
    return {k: v / frames for k, v in parts.items()}


def profile_extract(entries, sampling: str, top: int = 12) -> str:
    profiler = cProfile.Profile()
    profiler.enable()
    extract(entries, sampling)
    profiler.disable()
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(top)
    return out.getvalue()


# ------------------------------------------------------------------------------------------------
# Build child: one plain `download_and_prepare` per process, so that its peak memory is its own.


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return -1


def build_child(spec: dict) -> dict:
    import tensorflow  # noqa: F401  (TFDS imports it lazily at the first write: ~6 s, kept out of the timing)
    import tensorflow_datasets as tfds

    from tfds_builders import video_frames as vf
    from tfds_builders.video_folder import video_folder_dataset_builder as vfb

    if spec.get("max_mem_buffer") is not None:
        from tensorflow_datasets.core import shuffle

        shuffle.MAX_MEM_BUFFER_SIZE = int(spec["max_mem_buffer"])
    rss_before = _status_kib("VmRSS")
    builder = vfb.Builder(config=spec["config"], data_dir=spec["data_dir"])
    start = time.perf_counter()
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=spec["manual_dir"]))
    seconds = time.perf_counter() - start
    summary = vf.read_summary(builder.data_path)
    splits = summary["splits"].values()
    record_bytes = sum(
        os.path.getsize(os.path.join(builder.data_path, f)) for f in os.listdir(builder.data_path) if ".tfrecord" in f
    )
    return {
        "seconds": seconds,
        "frames_written": sum(s["frames_written"] for s in splits),
        "frames_decoded": sum(s["frames_decoded_in_written_videos"] for s in splits),
        "videos_written": sum(s["videos_written"] for s in splits),
        "record_bytes": record_bytes,
        "rss_before_build_mib": rss_before / 1024,
        "peak_rss_mib": _status_kib("VmHWM") / 1024,
    }


def run_build_child(spec: dict) -> dict:
    proc = subprocess.run(
        [sys.executable, os.path.abspath(__file__), "--build-child", json.dumps(spec)],
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"),
        capture_output=True,
        text=True,
    )
    if proc.returncode:
        raise RuntimeError(f"build child failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run_tfds_cli(manual_dir: str, data_dir: str, config: str) -> float:
    """Wall seconds of the `tfds build` command (plain writer), interpreter start included."""
    tfds_bin = os.path.join(os.path.dirname(sys.executable), "tfds")
    cmd = [
        tfds_bin,
        "build",
        os.path.join(ROOT, "tfds_builders", "video_folder"),
        f"--config={config}",
        f"--manual_dir={manual_dir}",
        f"--data_dir={data_dir}",
    ]
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"), capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    return seconds


# ------------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=int, default=6)
    parser.add_argument("--video-seconds", type=float, default=4.0)
    parser.add_argument("--size", default="640x360")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--memory-videos", type=int, nargs="+", default=[10, 100])
    parser.add_argument("--memory-size", default="320x180")
    parser.add_argument("--memory-video-seconds", type=float, default=2.0)
    parser.add_argument("--memory-sampling", default="all")
    parser.add_argument("--profile", action="store_true", help="add a cProfile of extract_video(all)")
    parser.add_argument("--out", default="bench/results/frames.json")
    parser.add_argument("--build-child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.build_child:
        print(json.dumps(build_child(json.loads(args.build_child))))
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import cv2  # noqa: F401
    import tensorflow_datasets  # noqa: F401  (versions in the header)

    from tfds_builders import video_frames as vf

    common.header("Frame extraction: frames/s versus plain OpenCV decoding; peak memory of the build")
    print(f"load average at start: {os.getloadavg()}")
    tmp = tempfile.mkdtemp(prefix="bench_frames_")
    try:
        width, height = map(int, args.size.split("x"))
        n_frames = int(round(args.video_seconds * FPS))
        corpus = os.path.join(tmp, "corpus")
        t0 = time.perf_counter()
        paths = write_corpus(corpus, args.videos, n_frames, width, height)
        print(
            f"generated {len(paths)} videos {width}x{height} mp4v 30 fps x {n_frames} frames "
            f"({sum(os.path.getsize(p) for p in paths) / 1e6:.1f} MB) in {time.perf_counter() - t0:.1f} s"
        )
        entries = entries_for(paths)

        # Interleaved repeats: every method once per round, best round kept.
        methods = {
            "cv2.VideoCapture.read loop (reference)": lambda: (opencv_read(paths),) * 2,
            "emonet_tf.video.iter_frames (decode + RGB)": lambda: (iter_frames_all(paths),) * 2,
            "extract_video, every5 (builder default)": lambda: extract(entries, "every5")[:2],
            "extract_video, all": lambda: extract(entries, "all")[:2],
            "prototype (not library code): every5 with grab() for skipped frames": lambda: every5_with_grab(paths),
        }
        best = {name: 0.0 for name in methods}
        written_rate = {name: 0.0 for name in methods}
        for _ in range(args.repeats):
            for name, fn in methods.items():
                start = time.perf_counter()
                decoded, written = fn()
                dt = time.perf_counter() - start
                best[name] = max(best[name], decoded / dt)
                written_rate[name] = max(written_rate[name], written / dt)
        jpeg_bytes = extract(entries[:1], "all")[2] / n_frames

        # Whole builds (plain writer) of the same corpus, best of the repeats for each.
        builds = {}
        for config in ("every5", "all"):
            runs = [
                run_build_child(
                    {"config": config, "manual_dir": corpus, "data_dir": os.path.join(tmp, f"tfds_{config}_{r}")}
                )
                for r in range(max(1, args.repeats - 1))
            ]
            builds[config] = min(runs, key=lambda r: r["seconds"])
        cli_seconds = run_tfds_cli(corpus, os.path.join(tmp, "tfds_cli"), "every5")
        reference = best["cv2.VideoCapture.read loop (reference)"]

        rows = []
        for name in methods:
            rows.append((name, best[name], written_rate[name]))
        for config, r in builds.items():
            rows.append(
                (
                    f"video_folder build {config} (download_and_prepare)",
                    r["frames_decoded"] / r["seconds"],
                    r["frames_written"] / r["seconds"],
                )
            )
        total_decoded = builds["every5"]["frames_decoded"]
        rows.append(
            (
                "`tfds build` every5 command, whole wall time",
                total_decoded / cli_seconds,
                builds["every5"]["frames_written"] / cli_seconds,
            )
        )

        print(f"\n## (a) {len(paths)} videos x {n_frames} frames, {width}x{height}; best of {args.repeats}\n")
        print("| path | video frames/s | frames written/s | ratio to OpenCV read | target >= 0.8 |")
        print("|---|---|---|---|---|")
        for name, rate, wrate in rows:
            ratio = rate / reference
            target = (
                "reference"
                if name.startswith("cv2")
                else "n/a (prototype)"
                if name.startswith("prototype")
                else "met"
                if ratio >= 0.8
                else "missed"
            )
            print(f"| {name} | {rate:.0f} | {wrate:.0f} | {ratio:.2f} | {target} |")
        print(
            f"\n`tfds build` wall time {cli_seconds:.1f} s for {total_decoded} frames; the same build "
            f"in-process took {builds['every5']['seconds']:.1f} s, so interpreter start and imports "
            f"cost about {cli_seconds - builds['every5']['seconds']:.1f} s"
        )
        print(f"JPEG q{vf.JPEG_QUALITY}: {jpeg_bytes / 1e3:.1f} kB per {width}x{height} frame")

        parts = breakdown(paths)
        extract_all = 1.0 / best["extract_video, all"]
        print("\n### where a frame's time goes (`all`: every frame decoded and encoded), ms per frame\n")
        print("| step | ms/frame | share of extract_video(all) |\n|---|---|---|")
        for key, sec in parts.items():
            print(f"| {key} | {sec * 1e3:.2f} | {sec / extract_all:.0%} |")
        rest = extract_all - sum(parts.values())
        print(f"| rest (Frame/dict objects, Python loop; timing noise) | {rest * 1e3:.2f} | {rest / extract_all:.0%} |")
        print(f"| **extract_video(all), measured** | {extract_all * 1e3:.2f} | 100% |")
        profile = profile_extract(entries, "all") if args.profile else None
        if profile:
            print("\n### cProfile of extract_video(all), by own time\n```\n" + profile.strip() + "\n```")

        # (b) memory
        mw, mh = map(int, args.memory_size.split("x"))
        mframes = int(round(args.memory_video_seconds * FPS))
        memory = {}
        largest = max(args.memory_videos)
        mem_corpus = os.path.join(tmp, f"mem_{largest}")
        write_corpus(mem_corpus, largest, mframes, mw, mh)
        for n in sorted(args.memory_videos):
            root = os.path.join(tmp, f"mem_only_{n}")
            os.makedirs(root)
            for label in os.listdir(mem_corpus):  # the first n videos of the largest corpus (symlinks)
                os.makedirs(os.path.join(root, label))
            for k in range(n):
                label = ("calm", "busy")[k % 2]
                name = f"clip_{k:03d}.mp4"
                os.symlink(os.path.join(mem_corpus, label, name), os.path.join(root, label, name))
            memory[f"{n} videos"] = run_build_child(
                {"config": args.memory_sampling, "manual_dir": root, "data_dir": os.path.join(tmp, f"mem_tfds_{n}")}
            )
        memory[f"{largest} videos, TFDS shuffle buffer 1 MB"] = run_build_child(
            {
                "config": args.memory_sampling,
                "manual_dir": os.path.join(tmp, f"mem_only_{largest}"),
                "data_dir": os.path.join(tmp, f"mem_tfds_{largest}_spill"),
                "max_mem_buffer": 1 << 20,
            }
        )
        print(
            f"\n## (b) peak RSS of a child running the plain build, {mw}x{mh} {mframes}-frame videos, "
            f"sampling {args.memory_sampling}\n"
        )
        print(
            "| corpus | frames written | records (MB) | RSS before build (MiB) | peak RSS (MiB) | "
            "peak - before (MiB) | build s |"
        )
        print("|---|---|---|---|---|---|---|")
        for name, r in memory.items():
            print(
                f"| {name} | {r['frames_written']} | {r['record_bytes'] / 1e6:.1f} | {r['rss_before_build_mib']:.0f} "
                f"| {r['peak_rss_mib']:.0f} | {r['peak_rss_mib'] - r['rss_before_build_mib']:.0f} "
                f"| {r['seconds']:.1f} |"
            )
        small, big = (memory[f"{n} videos"] for n in (min(args.memory_videos), largest))
        growth = big["peak_rss_mib"] - small["peak_rss_mib"]
        print(
            f"\npeak growth {min(args.memory_videos)} -> {largest} videos: {growth:+.0f} MiB "
            f"({growth / small['peak_rss_mib']:+.1%}); records grew by "
            f"{(big['record_bytes'] - small['record_bytes']) / 2**20:.0f} MiB"
        )
        print(f"load average at end: {os.getloadavg()}")
        common.write_json(
            args.out,
            {
                "videos": len(paths),
                "frames_per_video": n_frames,
                "size": [width, height],
                "frames_per_second": {name: rate for name, rate, _ in rows},
                "frames_written_per_second": {name: w for name, _, w in rows},
                "ratio_to_opencv_read": {name: rate / reference for name, rate, _ in rows},
                "builds": builds,
                "tfds_cli_seconds": cli_seconds,
                "breakdown_seconds_per_frame": parts,
                "jpeg_bytes_per_frame": jpeg_bytes,
                "memory": memory,
                "profile": profile,
                "load_average_end": os.getloadavg(),
            },
        )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
