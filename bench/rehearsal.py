"""Full-size rehearsal: a corpus shaped like Cowen & Keltner's, through the documented path, stage by stage.

    python bench/rehearsal.py [--clips 2185] [--scale 1.0] [--epochs 10] [--workers 2]
                              [--stages generate,build,cache,train,evaluate,export] [--work /tmp/rehearsal_run]
                              [--out bench/results/rehearsal.json] [--import OTHER.json ...] [--clean]

Stages (each timed in wall-clock seconds and CPU seconds, with the peak RSS of the whole process tree,
i.e. this process plus the Beam worker processes, sampled every 0.1 s by a thread: psutil when
installed, else /proc; and the 1-minute load average at its start and end):

0. `generate`: the corpus (not part of the documented path; reported, never extrapolated);
1. `build`: the `video_folder` TFDS records (`every5`); `--writer beam` (default, stage
   `build_records_beam`): on Beam's DirectRunner, `--workers` worker processes in multi_processing
   mode (the options of `emonet_tf.extract.beam.default_options`); `--writer plain`
   (`build_records_plain`): TFDS's plain writer, the videos extracted in `--workers` spawned
   processes (the builder's `workers`). Same files; the local Beam driver holds every record in
   memory (about 0.96 MiB each), the plain build a bounded amount, so a full-size build on one
   machine uses `plain`. The extrapolated total takes the plain build where it was measured;
2. `emonet_tf.training.train_and_evaluate` with the paper's recipe (fc8 only, SGD momentum 0.9,
   learning rate 1e-4, batch 16, no augmentation; the other settings are TrainConfig's defaults), cut
   into its own steps by wrapping them for the duration of the call: `setup` (checks, model build,
   restore: the rest of the call, measured whenever the call runs), `cache` (fc7 feature cache, train
   and test), `train`, `evaluate`, `export` (SavedModel + .keras).

The backbone is a seeded random AlexNet (`init=scratch`): EmoNet's published weights cannot be
downloaded here. Its speed is that of the real network; its accuracy means nothing.

**Runs in pieces.** `--stages` picks the stages to measure (default all; `none` measures nothing and
only refits the runs in `--out`). The outputs stay in `--work` (`--clean` deletes the records and the
model at the end; the corpus cache is kept), so a later invocation with the same `--clips --scale
--seed --epochs` and other stages continues: e.g. `--stages generate,build` in one session, then
`--stages cache,train` and `--stages evaluate,export`. A selected stage's outputs are removed first,
so it is measured from scratch (build: the records and the model; cache: `feature_cache`; train: the
checkpoints; evaluate: `eval`; export: `export`). Unselected training steps are skipped, except the
fc7 cache, which the later steps need: it is reused (run unmeasured if missing). Evaluating or
exporting without a trained checkpoint uses the untrained head (same cost). Each measured stage's
figures are merged into `--out` under the run's key (`clips2185_scale0.1_seed0_epochs10`), with
its start time, load averages and command; the other stages keep their earlier figures.

**Extrapolation to the paper's 137,482 frames.** `--out` holds a list of runs keyed by size
(`--import` merges the runs of other results files; the earlier single-run format is read as one
run). Per documented stage, over the runs that measured it, the seconds are
fitted as fixed + per_record x records (least squares, numpy; records = train + test rows of the
run) and evaluated at 137,482 records (a negative per-record slope, i.e. no growth measurable above
the noise, gives the mean of the runs' seconds instead); the fit's inputs (sizes, seconds, peak RSS, times, loads) are
listed in the JSON. With a single size no fixed part can be told apart, and the figure falls back to
seconds per record x 137,482 (an upper bound: Beam's start, TensorFlow imports in the workers,
tracing, model build and export are scaled too). Peak RSS is fitted the same way: "flat" when the
fitted growth over the runs' own range is under 5% of the peak or twice the fit's rms residual
(noise: Beam workers start and exit at different moments), or when the largest run's peak is within
5% of the next largest run's or the fitted peak at 137,482 records stays within 10% of the largest run's,
else "growing". Training
time also grows with the epochs: its fit uses only the runs with the same `--epochs` (the other
stages do not depend on them and use every run). The fit is only as good as its sizes:
use two or more sizes far apart, run on a machine equally loaded (compare the load averages listed).

Stack profiles (each stage's main thread, sampled every 10 ms; `StackSampler`: the driver process
only, the Beam workers are other processes) are written to `<out>_profiles/<run key>_<stage>.txt`.

The corpus (shape of Cowen & Keltner 2017, as used by Kragel et al. 2019):

* 2,185 clips, named 0001.mp4 ... 2185.mp4 as in the released corpus. Kragel et al. report 2,185
  videos and 137,482 extracted frames; the released split has 1,757 train and 428 test videos.
  Labels here: EmoNet's 20 categories, round-robin; 428/2,185 (19.6%) of each category's clips held
  out as `test` (the split is by video, as in the paper), through `labels.csv`.
* Length: the frame rate of the paper's extraction is not stated; 137,482 / 2,185 = 62.9 frames per
  clip. We assume the lab's documented practice for videos, every 5th frame (the builder's `every5`,
  its default), so a clip has on average 5 x 62.9 = 315 decoded frames. Per clip the length in
  seconds is log-normal (sigma 0.5: short clips with a tail of longer ones; durations of the corpus
  are not published) with its mean set so that the mean frame count is 315 (about 11 s at the mean
  frame rate). Had the lab resampled to 10 fps (the ecco port's choice), the clips would be ~6.3 s
  and a build would decode ~45% fewer frames for the same 137,482 records (2.8 instead of 5 per record).
* Frame rate: 30 fps (60%), 24 fps (30%) or 25 fps (10%): the common rates of web video. Not
  published for this corpus.
* Resolution: web/GIF-like sizes, 16:9 and 4:3: 640x360 (35%), 480x270 (20%), 480x360 (15%),
  854x480 (15%), 320x240 (10%), 1280x720 (5%). Not published either. Only the build (decode + JPEG)
  depends on it: every later stage sees 227x227 images.
* Content and encoding (`generate_corpus`): one master clip per (size, frame rate) present in the
  plan (18 at full size), as long as its longest clip, rendered by ffmpeg (the imageio-ffmpeg
  binary): a camera pan over a still with the 1/f spectrum of natural images and correlated colours,
  plus temporal noise (4 grey levels), encoded MPEG-4 part 2 (mp4v, as OpenCV writes it), no
  B-frames, a key frame every 2 s, at 0.12 bits per pixel (web-like bit rates: 0.83 Mbit/s at
  640x360 and 30 fps, 3.3 Mbit/s at 1280x720). Every clip is its master's first N frames, cut by
  stream copy (the master starts on a key frame and has no B-frames, so the cut decodes to exactly
  N frames; `--verify` clips, the shortest, the longest and others at random, are decoded with
  `emonet_tf.video` and checked). So clips of the same size and rate share their beginning and the
  content does not depend on the label (with a random backbone the accuracy means nothing anyway).
  The corpus is cached under `--work`/corpus/<hash of the plan and generator settings>; a rerun of
  the same plan reuses it. Before this generator, clips were drawn frame by frame in Python
  (`emonet_tf.run.motif_frame`, OpenCV mp4v at OpenCV's default quality: 81 kB per frame).

`--clips N` runs N clips of the same distribution; `--scale F` multiplies every clip's length by F
(at least 5 frames). The defaults are the full corpus: about 690,000 decoded and 138,000 written frames.
"""

from __future__ import annotations

import argparse
import collections.abc
import contextlib
import csv
import math
import os
import shutil
import sys
import threading
import time
from typing import Callable, Optional

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.path.insert(0, ROOT)
import common  # noqa: E402

#: Kragel et al. 2019: videos and frames extracted from them; the released split's test videos.
PAPER_CLIPS, PAPER_FRAMES, PAPER_TEST_CLIPS = 2185, 137_482, 428
SAMPLING_STEP = 5  # every5
MEAN_DECODED_FRAMES = SAMPLING_STEP * PAPER_FRAMES / PAPER_CLIPS  # 314.6
FPS_CHOICES = ((30, 0.6), (24, 0.3), (25, 0.1))
RESOLUTIONS = (
    ((640, 360), 0.35),
    ((480, 270), 0.2),
    ((480, 360), 0.15),
    ((854, 480), 0.15),
    ((320, 240), 0.1),
    ((1280, 720), 0.05),
)
DURATION_SIGMA = 0.5
#: Stages whose cost does not grow with the number of frames.
FIXED_STAGES = ("setup", "export")
#: Stages whose time depends on the number of epochs: the fit only uses runs with the same epochs.
EPOCH_STAGES = ("train_fc8",)
#: The two ways to build the records (`--writer`): Beam's DirectRunner, or TFDS's plain writer with the
#: builder's extraction processes (`workers`); the same files. A run's total uses one of them.
BUILD_STAGES = ("build_records_beam", "build_records_plain")
DOCUMENTED_STAGES = BUILD_STAGES + ("setup", "fc7_cache", "train_fc8", "evaluate", "export")


# ------------------------------------------------------------------------------------------------
# Corpus


def clip_plan(clips: int, scale: float, seed: int = 0) -> list[dict]:
    """Per clip: name, category index, split, fps, frames, width, height (deterministic in `seed`)."""
    import numpy as np

    from emonet_tf.categories import EMONET_CATEGORIES

    rng = np.random.default_rng(seed)
    fps_values = np.array([f for f, _ in FPS_CHOICES])
    fps = rng.choice(fps_values, size=clips, p=[p for _, p in FPS_CHOICES])
    sizes = rng.choice(len(RESOLUTIONS), size=clips, p=[p for _, p in RESOLUTIONS])
    # Log-normal seconds with E[frames] = MEAN_DECODED_FRAMES: E[seconds] = 315 / E[fps].
    mean_seconds = MEAN_DECODED_FRAMES / float(sum(f * p for f, p in FPS_CHOICES))
    mu = math.log(mean_seconds) - DURATION_SIGMA**2 / 2
    seconds = rng.lognormal(mu, DURATION_SIGMA, size=clips)
    categories = np.arange(clips) % len(EMONET_CATEGORIES)
    split = np.array(["train"] * clips, dtype=object)
    for c in range(len(EMONET_CATEGORIES)):
        members = np.flatnonzero(categories == c)
        held = int(round(len(members) * PAPER_TEST_CLIPS / PAPER_CLIPS)) if len(members) > 1 else 0
        split[rng.permutation(members)[: max(1 if len(members) > 1 else 0, held)]] = "test"
    plan = []
    for i in range(clips):
        (w, h), _ = RESOLUTIONS[int(sizes[i])]
        plan.append(
            {
                "name": f"{i + 1:04d}.mp4",
                "category": int(categories[i]),
                "label": EMONET_CATEGORIES[int(categories[i])],
                "split": str(split[i]),
                "fps": int(fps[i]),
                "frames": max(SAMPLING_STEP, int(round(seconds[i] * fps[i] * scale))),
                "width": int(w),
                "height": int(h),
            }
        )
    return plan


#: Version of the clip generator: part of the corpus cache key (bump when the content changes).
GENERATOR = "ffmpeg masters + stream-copy cuts, v1"
#: Target bit rate of the clips, bits per pixel per frame: 0.12 is web-like (640x360 at 30 fps:
#: 0.83 Mbit/s; 1280x720 at 30 fps: 3.3 Mbit/s).
BITS_PER_PIXEL = 0.12
GOP_SECONDS = 2  # a key frame every 2 s, as in web video


def ffmpeg_exe() -> str:
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def plan_key(plan: list[dict], seed: int) -> str:
    """The corpus cache key: a hash of the plan, the seed and the generator's settings."""
    import hashlib
    import json

    blob = json.dumps([plan, seed, GENERATOR, BITS_PER_PIXEL, GOP_SECONDS], sort_keys=True).encode()
    return hashlib.sha1(blob).hexdigest()[:12]


def masters_of(plan: list[dict]) -> dict[tuple[int, int, int], int]:
    """{(width, height, fps): frames of the longest clip with that size and rate}: the master clips."""
    masters: dict[tuple[int, int, int], int] = {}
    for s in plan:
        key = (s["width"], s["height"], s["fps"])
        masters[key] = max(masters.get(key, 0), s["frames"])
    return masters


def master_name(width: int, height: int, fps: int) -> str:
    return f"master_{width}x{height}_{fps}fps.mp4"


def write_texture(path: str, width: int, height: int, seed: int) -> None:
    """A still with the 1/f amplitude spectrum of natural images (correlated colours), 1.5x the frame
    size: the master pans a frame-sized window over it."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    h, w = (3 * height) // 2, (3 * width) // 2
    fy, fx = np.fft.fftfreq(h)[:, None], np.fft.rfftfreq(w)[None, :]
    radius = np.hypot(fy, fx)
    radius[0, 0] = 1.0
    channels = []
    for _ in range(3):
        spectrum = (rng.normal(size=radius.shape) + 1j * rng.normal(size=radius.shape)) / radius
        spectrum[0, 0] = 0
        x = np.fft.irfft2(spectrum, s=(h, w))
        channels.append((x - x.mean()) / x.std())
    img = np.stack(channels, axis=-1) @ np.array([[1.0, 0.6, 0.3], [0.6, 1.0, 0.6], [0.3, 0.6, 1.0]])
    img = img / img.std() * 45 + rng.uniform(90, 140, size=3)
    Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(path)


def render_master(path: str, width: int, height: int, fps: int, frames: int, seed: int) -> None:
    """`frames` frames of a camera pan over a 1/f texture with temporal noise, MPEG-4 part 2 (mp4v, as
    OpenCV writes), no B-frames (so the first N packets are the first N frames), a key frame every
    GOP_SECONDS, at BITS_PER_PIXEL; one ffmpeg process on one thread."""
    import subprocess

    texture = os.path.splitext(path)[0] + "_texture.png"
    write_texture(texture, width, height, seed)
    a, b = 0.5 + 0.4 * ((seed * 7919) % 100) / 100, 0.3 + 0.4 * ((seed * 104729) % 100) / 100
    vf = (
        f"format=yuv444p,loop=loop=-1:size=1:start=0,setpts=N/({fps}*TB),"
        f"crop={width}:{height}:x='(iw-ow)/2*(1+sin(t*{a:.3f}+{seed % 7}))':y='(ih-oh)/2*(1+sin(t*{b:.3f}+{seed % 5}))',"
        f"noise=alls=4:allf=t:all_seed={seed % 2**31},format=yuv420p"
    )
    bitrate = int(BITS_PER_PIXEL * width * height * fps)
    cmd = [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", "-i", texture, "-vf", vf, "-r", str(fps)]
    cmd += ["-frames:v", str(frames), "-c:v", "mpeg4", "-tag:v", "mp4v", "-bf", "0", "-g", str(GOP_SECONDS * fps)]
    cmd += ["-b:v", str(bitrate), "-threads", "1", "-an", path]
    subprocess.run(cmd, check=True)
    os.remove(texture)


def cut_clip(master: str, path: str, frames: int) -> None:
    """The master's first `frames` frames by stream copy (the master starts with a key frame)."""
    import subprocess

    cmd = [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", "-i", master, "-map", "0:v:0", "-c", "copy"]
    subprocess.run(cmd + ["-frames:v", str(frames), "-an", path], check=True)


def generate_corpus(folder: str, plan: list[dict], seed: int, workers: int, verify: int = 24) -> dict:
    """The clips under `folder`/clips with `labels.csv` (video,label,split), made once per plan.

    One master clip per (size, fps) as long as its longest clip, rendered by ffmpeg (`render_master`),
    then each clip cut from its master's start by stream copy; `workers` ffmpeg processes at a time.
    `verify` clips (the longest, the shortest, the rest at random) are decoded with `emonet_tf.video`
    and must have exactly their planned frame count. `folder`/corpus.json (written last) marks a
    complete corpus: when it exists nothing is made again. Returns its content.
    """
    import json
    from concurrent.futures import ThreadPoolExecutor

    import numpy as np

    from emonet_tf.video import count_frames

    done = os.path.join(folder, "corpus.json")
    if os.path.exists(done):
        with open(done) as f:
            return dict(json.load(f), reused=True)
    clips, masters_dir = os.path.join(folder, "clips"), os.path.join(folder, "masters")
    os.makedirs(clips, exist_ok=True)
    os.makedirs(masters_dir, exist_ok=True)
    masters = masters_of(plan)
    t0 = time.perf_counter()
    jobs = sorted(masters.items(), key=lambda kv: -kv[0][0] * kv[0][1] * kv[1])  # biggest first
    with ThreadPoolExecutor(max(1, workers)) as pool:
        list(
            pool.map(
                lambda kv: render_master(
                    os.path.join(masters_dir, master_name(*kv[0])),
                    *kv[0],
                    kv[1],
                    seed * 1000 + sorted(masters).index(kv[0]),
                ),
                jobs,
            )
        )
        t1 = time.perf_counter()
        list(
            pool.map(
                lambda s: cut_clip(
                    os.path.join(masters_dir, master_name(s["width"], s["height"], s["fps"])),
                    os.path.join(clips, s["name"]),
                    s["frames"],
                ),
                plan,
            )
        )
    t2 = time.perf_counter()
    with open(os.path.join(clips, "labels.csv"), "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["video", "label", "split"])
        writer.writerows([s["name"], s["label"], s["split"]] for s in plan)
    order = sorted(range(len(plan)), key=lambda i: plan[i]["frames"])
    rest = [i for i in order[1:-1]]
    sample = {order[0], order[-1]} | set(np.random.default_rng(seed).permutation(rest)[: max(0, verify - 2)].tolist())
    sample = sorted(sample)[: max(0, verify)] if verify else []
    for i in sample:
        got = count_frames(os.path.join(clips, plan[i]["name"]))
        if got != plan[i]["frames"]:
            raise RuntimeError(f"{plan[i]['name']}: {got} frames decoded, {plan[i]['frames']} planned")
    t3 = time.perf_counter()
    info = {
        "generator": GENERATOR,
        "bits_per_pixel": BITS_PER_PIXEL,
        "gop_seconds": GOP_SECONDS,
        "masters": len(masters),
        "master_frames": sum(masters.values()),
        "master_seconds": t1 - t0,
        "cut_seconds": t2 - t1,
        "verify_seconds": t3 - t2,
        "verified_clips": len(sample),
        "decoded_frames": sum(s["frames"] for s in plan),
        "bytes": sum(os.path.getsize(os.path.join(clips, s["name"])) for s in plan),
        "master_bytes": sum(os.path.getsize(os.path.join(masters_dir, master_name(*k))) for k in masters),
    }
    with open(done, "w") as f:
        json.dump(info, f, indent=2)
    return dict(info, reused=False)


def records_builder(root: str, data_dir: str, workers: int, prepare: bool = True, writer: str = "beam"):
    """The video_folder records (`every5`, EmoNet's 20 labels): built when `prepare` (`writer` "beam":
    on Beam's DirectRunner with `workers` processes; "plain": TFDS's plain writer, the videos extracted
    in `workers` processes), else those already under `data_dir` (FileNotFoundError when there are
    none); the builder."""
    import tensorflow_datasets as tfds
    from apache_beam.options.pipeline_options import PipelineOptions

    from emonet_tf.categories import EMONET_CATEGORIES
    from emonet_tf.extract.beam import default_options
    from tfds_builders.video_folder import video_folder_dataset_builder as video_folder

    config = video_folder.VideoFolderConfig(name="rehearsal_every5", sampling="every5", labels=list(EMONET_CATEGORIES))
    builder = video_folder.Builder(root=root, config=config, data_dir=data_dir, workers=workers)
    if prepare and writer == "plain":
        builder.download_and_prepare()
    elif prepare:
        options = PipelineOptions(default_options(workers))
        builder.download_and_prepare(download_config=tfds.download.DownloadConfig(beam_options=options))
    elif not os.path.exists(os.path.join(builder.data_path, "dataset_info.json")):
        raise FileNotFoundError(f"no records under {data_dir}: run the build stage first")
    return builder


# ------------------------------------------------------------------------------------------------
# Measuring


class TreeMemory:
    """Samples the RSS of this process and its descendants (bytes) every `interval` s in a thread."""

    def __init__(self, interval: float = 0.1):
        self.interval, self.samples = interval, []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        try:
            import psutil

            self._proc = psutil.Process()
            self.source = "psutil"
        except ImportError:
            self._proc, self.source = None, "/proc"

    def rss(self) -> int:
        if self._proc is not None:
            total = 0
            for p in [self._proc] + self._proc.children(recursive=True):
                with contextlib.suppress(Exception):  # a child may exit between listing and reading
                    total += p.memory_info().rss
            return total
        return sum(_proc_rss(pid) for pid in _proc_tree(os.getpid()))

    def sample(self) -> None:
        self.samples.append((time.perf_counter(), self.rss()))

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def start(self) -> "TreeMemory":
        self.sample()
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def peak(self, start: float, end: float) -> int:
        return max((b for t, b in self.samples if start <= t <= end), default=0)


def _proc_tree(pid: int) -> list[int]:
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
                parents.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(parents.get(p, []))
    return out


def _proc_rss(pid: int) -> int:
    with contextlib.suppress(OSError, ValueError, IndexError):
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    return 0


def _cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


class StackSampler:
    """A sampling profiler of one thread: every `interval` s, the function at the top of its stack (self
    time) and every distinct function on it (inclusive time) are counted. Unlike cProfile it does not
    slow the traced code down, which matters here: under cProfile, TensorFlow's AutoGraph tracing (pure
    Python AST work) ran several times slower and made the tracing look like the main cost."""

    def __init__(self, thread_id: int, interval: float = 0.01):
        self.thread_id, self.interval = thread_id, interval
        self.self_counts: collections.Counter = collections.Counter()
        self.total_counts: collections.Counter = collections.Counter()
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            frame = sys._current_frames().get(self.thread_id)
            if frame is None:
                continue
            self.samples += 1
            seen = set()
            top = True
            while frame is not None:
                code = frame.f_code
                key = f"{os.path.relpath(code.co_filename, ROOT) if code.co_filename.startswith(ROOT) else _short(code.co_filename)}:{code.co_firstlineno}({code.co_name})"
                if top:
                    self.self_counts[key] += 1
                    top = False
                if key not in seen:
                    seen.add(key)
                    self.total_counts[key] += 1
                frame = frame.f_back

    def start(self) -> "StackSampler":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def report(self, seconds: float, top: int = 30) -> str:
        n = max(1, self.samples)
        lines = [f"{self.samples} samples every {self.interval * 1e3:.0f} ms over {seconds:.1f} s (main thread)"]
        for title, counts in (
            ("inclusive (on the stack)", self.total_counts),
            ("self (top of the stack)", self.self_counts),
        ):
            lines.append(f"\n=== top {top} functions, {title}: share of samples, ~seconds ===")
            for key, c in counts.most_common(top):
                lines.append(f"{100 * c / n:6.1f}%  {seconds * c / n:8.1f} s  {key}")
        return "\n".join(lines) + "\n"


def _short(filename: str) -> str:
    """site-packages/<package>/... or the file name."""
    marker = "site-packages" + os.sep
    return filename.split(marker, 1)[1] if marker in filename else os.path.basename(filename)


class Stages:
    """Wall time, CPU time (this process + children it waited for), peak tree RSS and a stack profile per stage."""

    def __init__(self, memory: TreeMemory, profile: bool = True):
        self.memory, self.profile = memory, profile
        self.results: dict[str, dict] = {}
        self.profiles: dict[str, str] = {}

    @contextlib.contextmanager
    def stage(self, name: str):
        print(f"[{name}] ...", flush=True)
        self.memory.sample()
        sampler = StackSampler(threading.get_ident()).start() if self.profile else None
        load0, utc = os.getloadavg(), time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
        cpu0, t0 = _cpu_seconds(), time.perf_counter()
        try:
            yield
        finally:
            t1 = time.perf_counter()
            if sampler:
                sampler.stop()
                self.profiles[name] = sampler.report(t1 - t0)
            self.memory.sample()
            self.results[name] = {
                "seconds": t1 - t0,
                "cpu_seconds": _cpu_seconds() - cpu0,
                "peak_rss_mib": self.memory.peak(t0, t1 + 1e-3) / 2**20,
                "started_utc": utc,
                "load_average_start_end": [round(load0[0], 2), round(os.getloadavg()[0], 2)],
            }
            r = self.results[name]
            print(f"[{name}] {r['seconds']:.1f} s, peak RSS {r['peak_rss_mib']:.0f} MiB", flush=True)

    def wrap(self, name: str, fn: Callable) -> Callable:
        def wrapped(*args, **kwargs):
            with self.stage(name):
                return fn(*args, **kwargs)

        return wrapped


#: train_and_evaluate's steps (functions of emonet_tf.training.run) and their stage names.
TRAINING_STEPS = {
    "build_feature_caches": "fc7_cache",
    "fit_epochs": "train_fc8",
    "final_evaluation": "evaluate",
    "export_model": "export",
}
#: What an unselected step returns instead of running (the feature cache is never skipped: it is reused).
_SKIPPED = {"fit_epochs": {"train": {}, "epochs": []}, "final_evaluation": {}, "export_model": {}}


@contextlib.contextmanager
def staged_training(stages: Stages, selected: set, unmeasured: dict):
    """train_and_evaluate's own steps run as stages while inside (module functions wrapped, then restored).

    A step whose stage is not in `selected` is skipped (its stub result returned), except the fc7
    cache, which then runs unmeasured (reused when it exists; its seconds go to `unmeasured`).
    """
    from emonet_tf.training import run as run_lib

    saved = {fn: getattr(run_lib, fn) for fn in TRAINING_STEPS}

    def timed(fn: Callable, stage: str) -> Callable:
        def wrapped(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                unmeasured[stage] = time.perf_counter() - t0

        return wrapped

    try:
        for fn, stage in TRAINING_STEPS.items():
            if stage in selected:
                setattr(run_lib, fn, stages.wrap(stage, saved[fn]))
            elif fn in _SKIPPED:
                setattr(run_lib, fn, lambda *a, _r=_SKIPPED[fn], **k: dict(_r))
            else:
                setattr(run_lib, fn, timed(saved[fn], stage))
        yield
    finally:
        for fn, original in saved.items():
            setattr(run_lib, fn, original)


# ------------------------------------------------------------------------------------------------
# Extrapolation: time = fixed + per_record x records, fitted over runs of different sizes


def fit_line(x: list[float], y: list[float]) -> dict:
    """Least squares y = fixed + slope * x. One distinct x: no fixed part can be told apart, so
    fixed = 0 and slope = mean(y / x) (the single-size linear upper bound), flagged in `method`."""
    import numpy as np

    x_arr, y_arr = np.asarray(x, float), np.asarray(y, float)
    if len(set(x)) < 2:
        slope = float(np.mean(y_arr / x_arr))
        return {"fixed": 0.0, "slope": slope, "r2": None, "rms_residual": None, "method": "single size: y / x"}
    design = np.stack([np.ones_like(x_arr), x_arr], axis=1)
    (fixed, slope), *_ = np.linalg.lstsq(design, y_arr, rcond=None)
    residuals = y_arr - fixed - slope * x_arr
    r2 = None
    if len(x) > 2:
        ss_res = float(np.sum(residuals**2))
        ss_tot = float(np.sum((y_arr - y_arr.mean()) ** 2))
        r2 = 1 - ss_res / ss_tot if ss_tot > 0 else None
    return {
        "fixed": float(fixed),
        "slope": float(slope),
        "r2": r2,
        "rms_residual": float(np.sqrt(np.mean(residuals**2))),
        "method": f"least squares over {len(x)} runs",
    }


def fit_runs(runs: dict, epochs: int, target: int = PAPER_FRAMES) -> dict:
    """Per documented stage, over the runs that measured it (for EPOCH_STAGES only those with `epochs`
    epochs): seconds and peak RSS against the run's records (train + test), fitted by `fit_line` and
    evaluated at `target` records."""
    out: dict = {"target_records": target, "epochs": epochs, "stages": {}}
    for stage in DOCUMENTED_STAGES:
        inputs = [
            {
                "run": key,
                "records": run["records"]["total"],
                "seconds": run["stages"][stage]["seconds"],
                "peak_rss_mib": run["stages"][stage]["peak_rss_mib"],
                "started_utc": run["stages"][stage].get("started_utc"),
                "load_average_start_end": run["stages"][stage].get("load_average_start_end"),
            }
            for key, run in sorted(runs.items())
            if (run.get("epochs") == epochs or stage not in EPOCH_STAGES)
            and stage in run.get("stages", {})
            and run.get("records", {}).get("total")
        ]
        if not inputs:
            continue
        inputs.sort(key=lambda i: i["records"])
        x = [i["records"] for i in inputs]
        time_fit = fit_line(x, [i["seconds"] for i in inputs])
        mem_fit = fit_line(x, [i["peak_rss_mib"] for i in inputs])
        if time_fit["slope"] >= 0:
            seconds, time_note = time_fit["fixed"] + time_fit["slope"] * target, "fixed + per_record x target"
        else:  # no growth measurable: the sizes' differences are within the noise
            seconds = sum(i["seconds"] for i in inputs) / len(inputs)
            time_note = "negative slope (no per-record cost measurable): the mean of the runs' seconds, as fixed"
        if mem_fit["method"].startswith("single"):
            mem = {"extrapolated_peak_mib": None, "growth": "unknown (one size)"}
        else:
            measured = max(i["peak_rss_mib"] for i in inputs)
            within_runs = mem_fit["slope"] * (max(x) - min(x))  # fitted growth over the measured range
            peak = mem_fit["fixed"] + mem_fit["slope"] * target if mem_fit["slope"] > 0 else measured
            by_size = [i["peak_rss_mib"] for i in sorted(inputs, key=lambda i: i["records"])]
            if mem_fit["slope"] <= 0:
                growth = "flat (no growth with the records; the largest run's peak is given)"
            elif by_size[-1] <= 1.05 * by_size[-2]:
                growth = "flat at the top (the largest run's peak is within 5% of the next largest run's)"
                peak = measured
            elif within_runs < max(0.05 * measured, 2 * mem_fit["rms_residual"]):
                growth = "flat within the runs (fitted growth over their range < 5% of the peak or 2x the fit's rms residual: noise)"
                peak = measured
            else:
                growth = "growing" if peak > 1.1 * measured else "flat (the fit stays within 10% of the largest peak)"
            mem = {
                "fixed_mib": mem_fit["fixed"],
                "mib_per_1000_records": mem_fit["slope"] * 1000,
                "fitted_growth_over_the_runs_mib": within_runs,
                "extrapolated_peak_mib": peak,
                "growth": growth,
            }
        out["stages"][stage] = {
            "inputs": inputs,
            "fit": time_fit["method"],
            "fixed_seconds": time_fit["fixed"],
            "seconds_per_record": time_fit["slope"],
            "r2": time_fit["r2"],
            "extrapolation_factor": target / max(x),
            f"extrapolated_seconds_{target}_records": seconds,
            "extrapolated_from": time_note,
            "memory": mem,
        }
    # The total takes one build: the plain writer's where fitted (it fits one machine's memory), else Beam's.
    builds = [s for s in reversed(BUILD_STAGES) if s in out["stages"]]
    others = [s for s in DOCUMENTED_STAGES if s not in BUILD_STAGES]
    complete = bool(builds) and all(s in out["stages"] for s in others)
    key = f"extrapolated_seconds_{target}_records"
    total = sum(out["stages"][s][key] for s in builds[:1] + others) if complete else None
    out[f"extrapolated_total_seconds_{target}_records"] = total
    out["total_build_stage"] = builds[0] if builds else None
    out["label"] = (
        f"EXTRAPOLATION, not a measurement: per stage, seconds = fixed + per_record x records, least "
        f"squares over the runs listed, evaluated at {target:,} records"
    )
    return out


def load_runs(path: str, single_run: bool = True) -> dict:
    """The runs of a results file: {"runs": {...}}, or (`single_run`) the earlier single-run format as one run."""
    import json

    if not os.path.exists(path):
        return {}
    with open(path) as f:
        payload = json.load(f)
    if "runs" in payload:
        return payload["runs"]
    if "stages" not in payload or not single_run:
        if "stages" in payload:
            print(f"{path}: a single-run results file, replaced (merge it with --import)")
        return {}
    a = payload["arguments"]
    stages = {}
    for name, r in payload["stages"].items():
        stages[name] = {k: r.get(k) for k in ("seconds", "cpu_seconds", "peak_rss_mib") if k in r} | {
            "started_utc": payload.get("started_utc"),
            "load_average_start_end": [
                round(payload["load_average_start"][0], 2),
                round(payload["load_average_end"][0], 2),
            ],
        }
    key = run_key(a["clips"], a["scale"], a["seed"], a["epochs"])
    return {
        key: {
            "clips": a["clips"],
            "scale": a["scale"],
            "seed": a["seed"],
            "epochs": a["epochs"],
            "workers": a["workers"],
            "corpus": dict(payload["corpus"], generator="OpenCV mp4v, emonet_tf.run.motif_frame (before v1)"),
            "records": payload["records"],
            "stages": stages,
            "training": payload.get("training"),
            "imported_from": f"{path} (single-run format, {payload.get('started_utc')})",
        }
    }


def run_key(clips: int, scale: float, seed: int, epochs: int) -> str:
    return f"clips{clips}_scale{scale:g}_seed{seed}_epochs{epochs}"


# ------------------------------------------------------------------------------------------------

ALL_STAGES = ("generate", "build", "cache", "train", "evaluate", "export")
STAGE_OF = {"generate": "generate_corpus", "build": "build_records_<writer>", "cache": "fc7_cache"}
STAGE_OF.update({"train": "train_fc8", "evaluate": "evaluate", "export": "export"})


def main(argv: Optional[list[str]] = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clips", type=int, default=PAPER_CLIPS, help="clips (default: 2185, the corpus)")
    parser.add_argument("--scale", type=float, default=1.0, help="multiplies every clip's length (default 1)")
    parser.add_argument("--epochs", type=int, default=10, help="training epochs (the paper does not say; default 10)")
    parser.add_argument(
        "--workers", type=int, default=2, help="build processes: Beam DirectRunner workers or plain extraction (2)"
    )
    parser.add_argument(
        "--writer",
        choices=("beam", "plain"),
        default="beam",
        help="build on Beam (the issue's documented path; its local driver holds every record in memory) or "
        "with TFDS's plain writer and `workers` extraction processes (bounded memory; full size on one machine)",
    )
    parser.add_argument("--gen-workers", type=int, default=2, help="ffmpeg processes generating the clips (default 2)")
    parser.add_argument("--verify", type=int, default=24, help="generated clips whose frames are counted (default 24)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--stages",
        default=",".join(ALL_STAGES),
        help=f"comma-separated, of {','.join(ALL_STAGES)} (default all), or 'none' to only refit the runs in --out",
    )
    parser.add_argument("--work", default="/tmp/rehearsal_run", help="scratch folder: corpus cache, records, model")
    parser.add_argument("--clean", action="store_true", help="delete this run's records and model at the end")
    parser.add_argument("--import", dest="imports", nargs="*", default=[], help="results files whose runs to merge")
    parser.add_argument("--no-profile", action="store_true", help="no stack sampling during the stages")
    parser.add_argument("--out", default=os.path.join(HERE, "results", "rehearsal.json"))
    args = parser.parse_args(argv)
    if args.clips < 2 or args.scale <= 0 or args.epochs < 1 or args.workers < 1:
        parser.error("--clips >= 2, --scale > 0, --epochs >= 1 and --workers >= 1")
    selected = set() if args.stages == "none" else {s.strip() for s in args.stages.split(",") if s.strip()}
    if selected - set(ALL_STAGES):
        parser.error(f"unknown stages {sorted(selected - set(ALL_STAGES))}; choose from {ALL_STAGES}")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    runs = load_runs(args.out, single_run=False)
    for path in args.imports:
        runs.update(load_runs(path))
    key = run_key(args.clips, args.scale, args.seed, args.epochs)
    if selected:
        runs[key] = measure(args, selected, runs.get(key, {}))
    fit = fit_runs(runs, args.epochs)
    print_fit(fit)
    profile_dir = os.path.splitext(args.out)[0] + "_profiles"
    payload = {
        "what": "rehearsal of the documented path on a generated corpus shaped like Cowen & Keltner (2017); "
        "runs keyed by size, each stage's figures from its latest measurement",
        "runs": runs,
        "fit": fit,
        "profiles": os.path.relpath(profile_dir, ROOT),
    }
    common.write_json(args.out, payload)
    print(f"wrote {args.out}")
    return payload


def measure(args, selected: set, run: dict) -> dict:
    """Runs the selected stages of one size; returns the run's entry with their figures updated."""
    common.header(f"Rehearsal: {args.clips} clips x scale {args.scale}, stages {','.join(sorted(selected))}")
    plan = clip_plan(args.clips, args.scale, args.seed)
    corpus_dir = os.path.join(args.work, "corpus", plan_key(plan, args.seed))
    run_dir = os.path.join(args.work, f"clips{args.clips}_scale{args.scale:g}_seed{args.seed}")
    paths = {"clips": os.path.join(corpus_dir, "clips"), "tfds": os.path.join(run_dir, "tfds")}
    paths["model"] = os.path.join(run_dir, f"model_epochs{args.epochs}")
    run = dict(run) or {}
    run.update(clips=args.clips, scale=args.scale, seed=args.seed, epochs=args.epochs, workers=args.workers)
    key = run_key(args.clips, args.scale, args.seed, args.epochs)
    run.setdefault("stages", {})
    memory = TreeMemory().start()
    stages = Stages(memory, profile=not args.no_profile)
    unmeasured: dict[str, float] = {}
    try:
        if "generate" in selected or "build" in selected:
            with stages.stage("generate_corpus"):
                corpus = generate_corpus(corpus_dir, plan, args.seed, args.gen_workers, args.verify)
            if corpus["reused"]:
                stages.results.pop("generate_corpus")
                print(f"corpus reused from {corpus_dir}")
            fps_counts = collections.Counter(s["fps"] for s in plan)
            run["corpus"] = dict(
                {k: v for k, v in corpus.items() if k != "reused"},
                folder=corpus_dir,
                clips=args.clips,
                scale=args.scale,
                mean_frames_per_clip=corpus["decoded_frames"] / args.clips,
                fps_counts={str(k): v for k, v in sorted(fps_counts.items())},
                resolution_counts=dict(collections.Counter(f"{s['width']}x{s['height']}" for s in plan)),
                split_clips=dict(collections.Counter(s["split"] for s in plan)),
            )
        if "build" in selected:
            shutil.rmtree(run_dir, ignore_errors=True)  # new records: the model's cache would be stale
            with stages.stage(f"build_records_{args.writer}"):
                builder = records_builder(paths["clips"], paths["tfds"], args.workers, writer=args.writer)
        training = selected & {"cache", "train", "evaluate", "export"}
        if "build" not in selected:
            try:
                builder = records_builder(paths["clips"], paths["tfds"], args.workers, prepare=False)
            except FileNotFoundError:
                if training:
                    raise
                builder = None  # --stages generate alone
        if builder is not None:
            records = {s: builder.info.splits[s].num_examples for s in builder.info.splits}
            run["records"] = {
                "per_split": records,
                "total": sum(records.values()),
                "bytes": sum(
                    os.path.getsize(os.path.join(builder.data_path, f)) for f in os.listdir(builder.data_path)
                ),
            }
        if training:
            run["training"] = run_training(args, builder, paths["model"], stages, training, unmeasured, memory)
    finally:
        memory.stop()
        if args.clean:
            shutil.rmtree(run_dir, ignore_errors=True)
    for name, r in stages.results.items():
        run["stages"][name] = dict(r, command=" ".join(sys.argv))
    if stages.profiles:
        profile_dir = os.path.splitext(args.out)[0] + "_profiles"
        os.makedirs(profile_dir, exist_ok=True)
        for name, text in stages.profiles.items():
            if name in stages.results:
                with open(os.path.join(profile_dir, f"{key}_{name}.txt"), "w") as f:
                    f.write(f"Stack samples of stage {name}, driver process only; command: {' '.join(sys.argv)}\n")
                    f.write(text)
    records = run.get("records", {})
    print(f"\n{key}: {records.get('total')} records {records.get('per_split')}")
    print("| stage | wall s | CPU s | peak RSS MiB | load 1 min (start, end) | measured |")
    print("|---|---|---|---|---|---|")
    for name in ("generate_corpus",) + DOCUMENTED_STAGES:
        if name in run["stages"]:
            r = run["stages"][name]
            cpu = "" if r.get("cpu_seconds") is None else f"{r['cpu_seconds']:.1f}"
            now = "now" if name in stages.results else r.get("started_utc")
            print(
                f"| {name} | {r['seconds']:.1f} | {cpu} | {r['peak_rss_mib']:.0f} | {r.get('load_average_start_end')} | {now} |"
            )
    return run


def run_training(args, builder, model_dir: str, stages: Stages, selected: set, unmeasured: dict, memory) -> dict:
    """train_and_evaluate with the paper's recipe, its selected steps measured (see staged_training).

    The selected steps' outputs are removed first so that they are measured from scratch: cache ->
    feature_cache, train -> checkpoints and logs, evaluate -> eval, export -> export."""
    from emonet_tf.training import TrainConfig, train_and_evaluate

    for stage, sub in (("cache", "feature_cache"), ("train", "checkpoints"), ("train", "logs")):
        if stage in selected:
            shutil.rmtree(os.path.join(model_dir, sub), ignore_errors=True)
    for stage, sub in (("evaluate", "eval"), ("export", "export")):
        if stage in selected:
            shutil.rmtree(os.path.join(model_dir, sub), ignore_errors=True)
    if "train" not in selected and not os.path.isdir(os.path.join(model_dir, "checkpoints")):
        print("note: no trained checkpoint; evaluate/export see the untrained head", flush=True)
    config = TrainConfig(
        dataset=os.fspath(builder.data_path),
        model_dir=model_dir,
        init="scratch",
        train_layers="fc8",
        learning_rate=1e-4,
        momentum=0.9,
        global_batch_size=16,
        epochs=args.epochs,
        seed=args.seed,
        feature_cache=True,
        progress=False,
    )
    chosen = {STAGE_OF[s] for s in selected}
    t0 = time.perf_counter()
    with staged_training(stages, chosen, unmeasured), stages.stage("train_and_evaluate (whole call)"):
        summary = train_and_evaluate(config)
    whole = stages.results.pop("train_and_evaluate (whole call)")
    stages.profiles.pop("train_and_evaluate (whole call)", None)
    inner = sum(stages.results[s]["seconds"] for s in chosen if s in stages.results) + sum(unmeasured.values())
    # Setup: everything in the call outside its four steps (checks, model build, restore, glue).
    stages.results["setup"] = {
        "seconds": whole["seconds"] - inner,
        "cpu_seconds": None,
        "peak_rss_mib": memory.peak(t0, t0 + whole["seconds"]) / 2**20,
        "started_utc": whole["started_utc"],
        "load_average_start_end": whole["load_average_start_end"],
        "note": "train_and_evaluate minus its four steps; peak RSS is that of the whole call",
    }
    out = {
        "recipe": "fc8 only, SGD momentum 0.9, lr 1e-4, batch 16, feature cache, init=scratch (random backbone)",
        "epochs": args.epochs,
        "steps": summary["step"],
        "start_step": summary["start_step"],
        "timing": summary["timing"],
        "unmeasured_steps_seconds": dict(unmeasured),
    }
    if "eval" in summary:
        out.update(eval_top1=summary["eval"]["top1"], eval_mean_auc=summary["eval"]["mean_auc"])
    if summary.get("export"):
        saved_model = summary["export"]["saved_model"]
        out["saved_model_bytes"] = sum(
            os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(saved_model) for f in files
        )
    return out


def print_fit(fit: dict) -> None:
    target = fit["target_records"]
    print(
        f"\nfit over the runs ({fit['epochs']} epochs): seconds = fixed + per_record x records, at {target:,} records"
    )
    print(
        "| stage | runs (records) | fixed s | ms / record | R^2 | x largest run | at target (**extrapolation**) "
        "| peak RSS at target |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for stage, f in fit["stages"].items():
        sizes = ", ".join(str(i["records"]) for i in f["inputs"])
        r2 = "" if f["r2"] is None else f"{f['r2']:.3f}"
        mem = f["memory"].get("extrapolated_peak_mib")
        mem = f["memory"]["growth"] if mem is None else f"{mem:.0f} MiB, {f['memory']['growth']}"
        print(
            f"| {stage} | {sizes} | {f['fixed_seconds']:.1f} | {f['seconds_per_record'] * 1e3:.3f} | {r2} | "
            f"{f['extrapolation_factor']:.0f} | "
            f"{f[f'extrapolated_seconds_{target}_records'] / 60:.1f} min | {mem} |"
        )
    total = fit[f"extrapolated_total_seconds_{target}_records"]
    if total is not None:
        print(f"extrapolated total: {total / 3600:.2f} h")


if __name__ == "__main__":
    main()
