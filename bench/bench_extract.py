"""Corpus extraction (`emonet_tf.extract.extract`): the Beam runner with 2 workers versus the local runner,
and peak memory as the corpus grows 10x.

    python bench/bench_extract.py [--clips 3] [--images 32] [--scale 10] [--frames 160] [--size 320x240]
                                  [--sampling every5] [--workers 2] [--batch 32] [--images-per-unit 32]
                                  [--quick] [--replot] [--out bench/results/extract.json]

The corpus: generated 30 fps mp4v clips (`bench_frames.moving_frames`: a photo panned and zoomed, a
moving disc, mild noise) and JPEG images (q90) of the same size. The small corpus is `--clips` clips and
`--images` images, the large one `--scale` times as many (the small one is its first files). Each clip is
one work unit, the images go `--images-per-unit` to a unit. The defaults (160-frame clips, every5, 32
images per unit) make every unit 32 rows, one full batch: the local runner batches within a unit, Beam's
RunInference across units, so both run batches of 32. Default: 128 rows (small) and 1280 rows (x10).
`--quick` (1 clip of 40 frames, 4 images, x2, 96x72) only smoke-tests the script: its time is the fixed
costs (four child processes importing TensorFlow, two Beam start-ups), 3-3.5 minutes at a load of 4-6.

Four runs, each in a fresh child process (this script with `--one`), so that none inherits another's
memory: local small, Beam small, local large, Beam large. Each child builds the model
(``keras.utils.set_random_seed(0); EmoNet(EmoNetClassifier())``: random weights, the speed is the same)
and calls ``extract(inputs, out, emonet=..., layers=["fc7", "fc8"], runner=..., workers=2, ...)``
(probabilities are always written; Parquet shards). Beam is RunInference on the DirectRunner in
multi-processing mode with `--workers` worker processes.

* Throughput: rows written (sampled frames + images) / wall time of the `extract` call, which includes
  planning, building the extractor, and for Beam saving the weights, starting the worker processes (each
  imports TensorFlow and builds and loads the model) and the pipeline's own overhead; not included: the
  child's interpreter start, imports and model build (the same for both). "time to first unit" and
  "rows/s after the first unit" come from the modification times of the units' records (OUT/units/).
* CPU time of the `extract` call: the driver's (os.times) plus each worker's last sampled user + system
  time (psutil, every 0.2 s; the final < 0.2 s of a worker is missed). CPU seconds per row do not depend
  on how many cores other users' processes take, unlike wall time: on a shared machine they are the
  sturdier comparison. (Under a high load, a runner with more processes also gets a larger share of the
  cores, which favours Beam's wall time.)
* Memory: a thread in the child samples, every 0.2 s, the RSS of the child (the driver) and of all its
  descendants (psutil; the Beam workers are the driver's child processes). Reported: the driver's peak
  (VmHWM, exact), the peak of the sampled sum over the process tree, and the largest single worker. A
  sum of RSS counts pages shared between processes (e.g. libraries) once per process. Beam starts each
  worker through ``/bin/sh -c``; "workers" counts the descendants above 100 MiB.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.path.insert(0, ROOT)
import common  # noqa: E402

SAMPLE_SECONDS = 0.2
LAYERS = ["fc7", "fc8"]


# ------------------------------------------------------------------------------------------------
# The corpus


def write_corpus(root: str, clips: int, images: int, frames: int, width: int, height: int) -> tuple[list, list]:
    """root/videos/clip_NNN.mp4 and root/images/img_NNNN.jpg; returns (video paths, image paths)."""
    import cv2

    from bench_frames import moving_frames, write_moving_video

    videos = [
        write_moving_video(os.path.join(root, "videos", f"clip_{k:03d}.mp4"), frames, width, height, seed=k)
        for k in range(clips)
    ]
    os.makedirs(os.path.join(root, "images"), exist_ok=True)
    paths = []
    for k, rgb in enumerate(moving_frames(images, width, height, seed=1000)):
        path = os.path.join(root, "images", f"img_{k:04d}.jpg")
        cv2.imwrite(path, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90])
        paths.append(path)
    return videos, paths


# ------------------------------------------------------------------------------------------------
# One run (the child process)


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


class TreeSampler:
    """Samples the RSS of this process and of its descendants every `interval` seconds (psutil)."""

    def __init__(self, interval: float = SAMPLE_SECONDS):
        import psutil

        self.psutil, self.me, self.interval = psutil, psutil.Process(), interval
        self.peak_tree = self.peak_driver = self.peak_worker = 0
        self.max_children = self.max_workers = self.samples = 0
        self.child_commands = set()  # distinct command lines of the descendants (what Beam starts)
        self.child_cpu = {}  # pid -> latest user + system CPU seconds of that descendant
        self.timeline = []  # (seconds, driver MiB, tree MiB, children)
        self._start = time.time()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def sample(self) -> None:
        driver = self.me.memory_info().rss
        total, children, workers = driver, 0, 0
        try:
            kids = self.me.children(recursive=True)
        except self.psutil.Error:
            kids = []
        for child in kids:
            try:
                rss = child.memory_info().rss
                times = child.cpu_times()
                self.child_cpu[child.pid] = times.user + times.system
                if len(self.child_commands) < 20:
                    self.child_commands.add(" ".join(child.cmdline())[:200])
            except self.psutil.Error:  # ended between the listing and the reading
                continue
            total += rss
            children += 1
            workers += rss > 100 * 2**20  # a Python worker, not the /bin/sh that Beam starts it with
            self.peak_worker = max(self.peak_worker, rss)
        self.peak_tree = max(self.peak_tree, total)
        self.peak_driver = max(self.peak_driver, driver)
        self.max_children = max(self.max_children, children)
        self.max_workers = max(self.max_workers, workers)
        self.samples += 1
        self.timeline.append(
            (round(time.time() - self._start, 2), round(driver / 2**20), round(total / 2**20), children)
        )

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()


def one(spec: dict) -> dict:
    """Runs one extraction and measures it; returns the measurements (printed as JSON by `--one`)."""
    sampler = TreeSampler()
    import keras

    from emonet_tf import EmoNet, EmoNetClassifier
    from emonet_tf.extract import extract

    keras.utils.set_random_seed(0)
    emonet = EmoNet(EmoNetClassifier())
    rss_before = sampler.me.memory_info().rss
    cpu_before = sum(os.times()[:2])
    start = time.time()
    ex = extract(
        spec["inputs"],
        spec["out"],
        emonet=emonet,
        layers=LAYERS,
        runner=spec["runner"],
        workers=spec["workers"],
        batch_size=spec["batch"],
        images_per_unit=spec["images_per_unit"],
        sampling=spec["sampling"],
    )
    wall = time.time() - start
    sampler.stop()
    driver_cpu = sum(os.times()[:2]) - cpu_before
    workers_cpu = sum(sampler.child_cpu.values())
    manifest = ex.manifest
    # When each unit finished (its record is written last), relative to the call's start.
    done = []
    for record in manifest["shards"]:
        path = os.path.join(spec["out"], "units", f"part-{record['unit']:05d}.json")
        done.append((os.stat(path).st_mtime - start, record["rows"]))
    done.sort()
    first = done[0][0]
    later_rows = sum(rows for _, rows in done[1:])
    after_first = later_rows / (done[-1][0] - first) if len(done) > 1 and done[-1][0] > first else None
    shutil.rmtree(spec["out"], ignore_errors=True)
    return {
        "runner": spec["runner"],
        "corpus": spec["corpus"],
        "inputs": len(spec["inputs"]),
        "units": manifest["units"],
        "rows": manifest["rows"],
        "errors": manifest["errors"],
        "wall_s": wall,
        "rows_per_s": manifest["rows"] / wall,
        "cpu_driver_s": driver_cpu,
        "cpu_workers_s": workers_cpu,
        "cpu_s_per_row": (driver_cpu + workers_cpu) / manifest["rows"],
        "cpu_children_waited_s": sum(os.times()[2:4]),
        "first_unit_s": first,
        "last_unit_s": done[-1][0],
        "rows_per_s_after_first_unit": after_first,
        "rss_before_extract_mib": rss_before / 2**20,
        "driver_peak_mib": _status_kib("VmHWM") / 1024,
        "driver_peak_sampled_mib": sampler.peak_driver / 2**20,
        "tree_peak_mib": sampler.peak_tree / 2**20,
        "largest_worker_peak_mib": sampler.peak_worker / 2**20,
        "max_child_processes": sampler.max_children,
        "max_worker_processes_over_100mib": sampler.max_workers,
        "child_commands": sorted(sampler.child_commands),
        "samples": sampler.samples,
        "timeline": sampler.timeline[:: max(1, len(sampler.timeline) // 200)],
    }


def run_one(spec: dict) -> dict:
    load, start = os.getloadavg()[0], time.perf_counter()
    proc = subprocess.run(
        [sys.executable, os.path.abspath(__file__), "--one", json.dumps(spec)],
        cwd=ROOT,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"),
        capture_output=True,
        text=True,
    )
    if proc.returncode:
        raise RuntimeError(f"{spec['runner']} {spec['corpus']} failed:\n{proc.stderr[-4000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    return dict(result, child_wall_s=time.perf_counter() - start, load_1min_at_start=load)


# ------------------------------------------------------------------------------------------------
# Report


def plot(path: str, payload: dict) -> None:
    """Peak memory against corpus size, memory over time in the large runs, and rows/s (from the JSON)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs, settings = payload["runs"], payload["settings"]
    colours = {"local": "tab:blue", "beam": "tab:orange"}
    labels = {"local": "local", "beam": f"beam ({settings['workers']} workers)"}
    fig, (left, middle, right) = plt.subplots(1, 3, figsize=(15, 4.4))
    for runner in ("local", "beam"):
        mine = sorted((r for r in runs if r["runner"] == runner), key=lambda r: r["rows"])
        x = [r["rows"] for r in mine]
        colour = colours[runner]
        left.plot(x, [r["tree_peak_mib"] for r in mine], "o-", color=colour, label=f"{labels[runner]}: process tree")
        left.plot(x, [r["driver_peak_mib"] for r in mine], "s--", color=colour, label=f"{labels[runner]}: driver")
        big = mine[-1]
        t = [p[0] for p in big["timeline"]]
        middle.plot(t, [p[2] for p in big["timeline"]], color=colour, label=f"{labels[runner]}: process tree")
    left.set_xscale("log")
    ticks = sorted({r["rows"] for r in runs})
    left.set_xticks(ticks, [str(t) for t in ticks])
    left.minorticks_off()
    left.set_xlabel("rows extracted (corpus size, log scale)")
    left.set_ylabel("peak RSS (MiB)")
    left.set_ylim(bottom=0)
    left.set_title(f"peak memory, corpus x{settings['scale']}")
    left.legend(fontsize=8)
    middle.set_xlabel("seconds since the child started (imports, model, extract)")
    middle.set_ylabel("RSS, sampled every 0.2 s (MiB)")
    middle.set_ylim(bottom=0)
    middle.set_title(f"x{settings['scale']} corpus: memory over the run")
    middle.legend(fontsize=8)
    names, values = [], []
    for r in runs:
        names.append(f"{r['runner']}\n{r['corpus']} ({r['rows']} rows)")
        values.append(r["rows_per_s"])
    right.bar(range(len(values)), values, color=[colours[r["runner"]] for r in runs])
    right.set_xticks(range(len(values)), names, fontsize=8)
    right.set_ylabel("rows (frames + images) / s, wall")
    right.set_title(f"throughput ({', '.join(LAYERS)} + probabilities, batch {settings['batch']})")
    machine = payload.get("machine", {})
    fig.suptitle(
        f"emonet_tf.extract, {machine.get('cpu', '?')}, {machine.get('cores', '?')} cores, {payload['date']}, "
        f"1-min load {payload['load_average_start'][0]:.1f} -> {payload['load_average_end'][0]:.1f}",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _git() -> dict:
    """The commit measured, and whether the library had uncommitted changes (others edit it too)."""

    def git(*cmd):
        return subprocess.run(["git", *cmd], cwd=ROOT, capture_output=True, text=True).stdout.strip()

    return {"commit": git("rev-parse", "HEAD"), "uncommitted": git("status", "--short", "emonet_tf").splitlines()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=3, help="clips in the small corpus")
    parser.add_argument("--images", type=int, default=32, help="images in the small corpus")
    parser.add_argument("--scale", type=int, default=10, help="the large corpus is this many times the small one")
    parser.add_argument("--frames", type=int, default=160, help="frames per clip (30 fps)")
    parser.add_argument("--size", default="320x240")
    parser.add_argument("--sampling", default="every5")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--images-per-unit", type=int, default=32)
    parser.add_argument("--quick", action="store_true", help="a tiny run to smoke-test the script (~1-2 min)")
    parser.add_argument("--out", default="bench/results/extract.json")
    parser.add_argument("--replot", action="store_true", help="only redraw the plot from the JSON at --out")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one(json.loads(args.one))))
        return
    if args.replot:
        with open(args.out) as f:
            plot(os.path.splitext(args.out)[0] + ".png", json.load(f))
        return
    if args.quick:
        args.clips, args.images, args.scale, args.frames, args.size = 1, 4, 2, 40, "96x72"
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import apache_beam  # noqa: F401  (versions below)
    import cv2  # noqa: F401
    import keras  # noqa: F401
    import pyarrow
    import tensorflow  # noqa: F401

    common.header("Corpus extraction: Beam RunInference (DirectRunner) versus the local runner, and peak memory")
    load_start = os.getloadavg()
    started = datetime.datetime.now(datetime.timezone.utc)
    git_info = _git()
    print(f"date: {started.isoformat(timespec='seconds')}; load average at start: {load_start}")
    print(f"apache-beam {apache_beam.__version__}, pyarrow {pyarrow.__version__}")
    width, height = map(int, args.size.split("x"))
    tmp = tempfile.mkdtemp(prefix="exbench_")
    try:
        t0 = time.perf_counter()
        videos, images = write_corpus(
            os.path.join(tmp, "corpus"), args.clips * args.scale, args.images * args.scale, args.frames, width, height
        )
        print(
            f"corpus: {len(videos)} clips x {args.frames} frames and {len(images)} images at {args.size}, "
            f"written in {time.perf_counter() - t0:.1f} s; sampling {args.sampling}"
        )
        sizes = {
            "small": videos[: args.clips] + images[: args.images],
            f"x{args.scale}": videos + images,
        }
        runs = []
        for corpus, inputs in sizes.items():
            for runner in ("local", "beam"):
                spec = {
                    "runner": runner,
                    "corpus": corpus,
                    "inputs": inputs,
                    "out": os.path.join(tmp, f"out_{runner}_{corpus}"),
                    "workers": args.workers,
                    "batch": args.batch,
                    "images_per_unit": args.images_per_unit,
                    "sampling": args.sampling,
                }
                r = run_one(spec)
                runs.append(r)
                print(
                    f"  {runner:5s} {corpus:5s}: {r['rows']} rows in {r['wall_s']:.1f} s = {r['rows_per_s']:.1f}/s; "
                    f"driver peak {r['driver_peak_mib']:.0f} MiB, tree peak {r['tree_peak_mib']:.0f} MiB "
                    f"({r['max_worker_processes_over_100mib']} workers); load {r['load_1min_at_start']:.2f}",
                    flush=True,
                )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    load_end = os.getloadavg()
    finished = datetime.datetime.now(datetime.timezone.utc)
    by = {(r["runner"], r["corpus"]): r for r in runs}
    large = f"x{args.scale}"
    print()
    print(
        "| runner | corpus | inputs | units | rows | wall s | rows/s | first unit s | rows/s after first unit "
        "| CPU s (driver + workers) | CPU ms/row | driver peak MiB | tree peak MiB | largest worker MiB "
        "| load at start |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in runs:
        after = r["rows_per_s_after_first_unit"]
        print(
            f"| {r['runner']} | {r['corpus']} | {r['inputs']} | {r['units']} | {r['rows']} | {r['wall_s']:.1f} | "
            f"{r['rows_per_s']:.1f} | {r['first_unit_s']:.1f} | {'-' if after is None else f'{after:.1f}'} | "
            f"{r['cpu_driver_s']:.0f} + {r['cpu_workers_s']:.0f} | {1000 * r['cpu_s_per_row']:.0f} | "
            f"{r['driver_peak_mib']:.0f} | {r['tree_peak_mib']:.0f} | {r['largest_worker_peak_mib']:.0f} | "
            f"{r['load_1min_at_start']:.2f} |"
        )
    summary = {}
    for corpus in sizes:
        summary[f"beam / local rows/s, {corpus}"] = by["beam", corpus]["rows_per_s"] / by["local", corpus]["rows_per_s"]
        summary[f"beam / local CPU s per row, {corpus}"] = (
            by["beam", corpus]["cpu_s_per_row"] / by["local", corpus]["cpu_s_per_row"]
        )
    for runner in ("local", "beam"):
        small, big = by[runner, "small"], by[runner, large]
        summary[f"{runner}: rows {large} / small"] = big["rows"] / small["rows"]
        summary[f"{runner}: driver peak {large} / small"] = big["driver_peak_mib"] / small["driver_peak_mib"]
        summary[f"{runner}: tree peak {large} / small"] = big["tree_peak_mib"] / small["tree_peak_mib"]
        summary[f"{runner}: tree peak {large} - small, MiB"] = big["tree_peak_mib"] - small["tree_peak_mib"]
    print()
    for name, value in summary.items():
        print(f"{name}: {value:.2f}")
    print(f"load average at end: {load_end}")
    payload = {
        "date": started.isoformat(timespec="seconds"),
        "finished": finished.isoformat(timespec="seconds"),
        "load_average_start": load_start,
        "load_average_end": load_end,
        "apache_beam": apache_beam.__version__,
        "git": git_info,
        "pyarrow": pyarrow.__version__,
        "settings": {
            "clips_small": args.clips,
            "images_small": args.images,
            "scale": args.scale,
            "frames_per_clip": args.frames,
            "size": [width, height],
            "sampling": args.sampling,
            "workers": args.workers,
            "batch": args.batch,
            "images_per_unit": args.images_per_unit,
            "layers": LAYERS + ["probabilities"],
            "output_format": "parquet",
            "quick": args.quick,
            "model": "keras.utils.set_random_seed(0); EmoNet(EmoNetClassifier())",
            "memory_sample_seconds": SAMPLE_SECONDS,
        },
        "summary": summary,
        "runs": runs,
    }
    common.write_json(args.out, payload)
    png = os.path.splitext(args.out)[0] + ".png"
    with open(args.out) as f:
        plot(png, json.load(f))
    print(f"wrote {args.out} and {png}")


if __name__ == "__main__":
    main()
