"""Full-size rehearsal: a corpus shaped like Cowen & Keltner's, through the documented path, stage by stage.

    python bench/rehearsal.py [--clips 2185] [--scale 1.0] [--epochs 10] [--workers 2] [--keep]
                              [--work /tmp/rehearsal_run] [--out bench/results/rehearsal.json]

Stages (each timed in wall-clock seconds, with the peak RSS of the whole process tree, i.e. this
process plus the Beam worker processes, sampled every 0.1 s by a thread: psutil when installed, else
/proc):

0. generate the corpus (not part of the documented path; reported, never extrapolated);
1. build the `video_folder` TFDS records (`every5`) on Beam: DirectRunner, `--workers` worker
   processes in multi_processing mode (the options of `emonet_tf.extract.beam.default_options`);
2. `emonet_tf.training.train_and_evaluate` with the paper's recipe (fc8 only, SGD momentum 0.9,
   learning rate 1e-4, batch 16, no augmentation; the other settings are TrainConfig's defaults), cut
   into its own steps by wrapping them for the duration of the call: setup (checks, model build,
   restore), fc7 feature cache (train and test), training, evaluation, SavedModel + .keras export.

The backbone is a seeded random AlexNet (`init=scratch`): EmoNet's published weights cannot be
downloaded here. Its speed is that of the real network; its accuracy means nothing.

Each stage's main thread is stack-sampled every 10 ms (`StackSampler`: the driver process only; the
Beam workers are other processes). The profiles are written next to the JSON
(`rehearsal_profile.txt`), the slowest documented stage first. The
extrapolation to the paper's 137,482 frames is each stage's seconds per record (frame in the records)
x 137,482, labelled as such in the JSON; fixed costs (setup, export, Beam's start) do not grow with
the corpus, so that linear figure overstates them, and the JSON says which stages those are.

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
* Content: `emonet_tf.run.motif_frame` (one of four moving motifs by category, with noise), mp4v.

`--clips N` runs N clips of the same distribution; `--scale F` multiplies every clip's length by F
(at least 5 frames). The defaults are the full corpus: about 687,000 decoded and 138,000 written frames.
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
DOCUMENTED_STAGES = ("build_records_beam", "setup", "fc7_cache", "train_fc8", "evaluate", "export")


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


class _MotifFrames(collections.abc.Sequence):
    """A clip's frames, made when read (`make_dummy_data.write_video` then holds one frame at a time)."""

    def __init__(self, spec: dict, seed: int):
        import numpy as np

        self.spec = spec
        self.rng = np.random.default_rng([seed, int(spec["name"][:4])])
        self.phase = float(self.rng.uniform(0, 2 * np.pi))

    def __len__(self) -> int:
        return self.spec["frames"]

    def __getitem__(self, i):
        from emonet_tf.run import motif_frame

        if not 0 <= i < len(self):
            raise IndexError(i)
        s = self.spec
        return motif_frame(s["category"], i / s["fps"], self.rng, self.phase, s["width"], s["height"])


def _write_clip(job: tuple) -> int:
    import pathlib

    from tfds_builders.make_dummy_data import write_video

    root, spec, seed = job
    write_video(pathlib.Path(root) / spec["name"], spec["fps"], _MotifFrames(spec, seed))
    return spec["frames"]


def generate_corpus(root: str, plan: list[dict], seed: int, workers: int) -> int:
    """Writes the clips and `labels.csv` (video,label,split); returns the number of frames written."""
    import multiprocessing

    os.makedirs(root, exist_ok=True)
    jobs = [(root, spec, seed) for spec in plan]
    if workers > 1:
        with multiprocessing.get_context("spawn").Pool(workers) as pool:
            frames = sum(pool.imap_unordered(_write_clip, jobs, chunksize=4))
    else:
        frames = sum(map(_write_clip, jobs))
    with open(os.path.join(root, "labels.csv"), "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["video", "label", "split"])
        writer.writerows([s["name"], s["label"], s["split"]] for s in plan)
    return frames


def build_records_beam(root: str, data_dir: str, workers: int):
    """The video_folder records (`every5`, EmoNet's 20 labels) built on Beam's DirectRunner; the builder."""
    import tensorflow_datasets as tfds
    from apache_beam.options.pipeline_options import PipelineOptions

    from emonet_tf.categories import EMONET_CATEGORIES
    from emonet_tf.extract.beam import default_options
    from tfds_builders.video_folder import video_folder_dataset_builder as video_folder

    config = video_folder.VideoFolderConfig(name="rehearsal_every5", sampling="every5", labels=list(EMONET_CATEGORIES))
    builder = video_folder.Builder(root=root, config=config, data_dir=data_dir)
    options = PipelineOptions(default_options(workers))
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(beam_options=options))
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
            }
            r = self.results[name]
            print(f"[{name}] {r['seconds']:.1f} s, peak RSS {r['peak_rss_mib']:.0f} MiB", flush=True)

    def wrap(self, name: str, fn: Callable) -> Callable:
        def wrapped(*args, **kwargs):
            with self.stage(name):
                return fn(*args, **kwargs)

        return wrapped


@contextlib.contextmanager
def staged_training(stages: Stages):
    """train_and_evaluate's own steps run as stages while inside (module functions wrapped, then restored)."""
    from emonet_tf.training import run as run_lib

    names = {
        "build_feature_caches": "fc7_cache",
        "fit_epochs": "train_fc8",
        "final_evaluation": "evaluate",
        "export_model": "export",
    }
    saved = {fn: getattr(run_lib, fn) for fn in names}
    try:
        for fn, stage in names.items():
            setattr(run_lib, fn, stages.wrap(stage, saved[fn]))
        yield
    finally:
        for fn, original in saved.items():
            setattr(run_lib, fn, original)


# ------------------------------------------------------------------------------------------------


def main(argv: Optional[list[str]] = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clips", type=int, default=PAPER_CLIPS, help="clips (default: 2185, the corpus)")
    parser.add_argument("--scale", type=float, default=1.0, help="multiplies every clip's length (default 1)")
    parser.add_argument("--epochs", type=int, default=10, help="training epochs (the paper does not say; default 10)")
    parser.add_argument("--workers", type=int, default=2, help="Beam DirectRunner worker processes (default 2)")
    parser.add_argument("--gen-workers", type=int, default=2, help="processes generating the clips (default 2)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", default="/tmp/rehearsal_run", help="scratch folder (clips, records, model)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder (default: deleted at the end)")
    parser.add_argument("--no-profile", action="store_true", help="no stack sampling during the stages")
    parser.add_argument("--out", default=os.path.join(HERE, "results", "rehearsal.json"))
    args = parser.parse_args(argv)
    if args.clips < 2 or args.scale <= 0 or args.epochs < 1 or args.workers < 1:
        parser.error("--clips >= 2, --scale > 0, --epochs >= 1 and --workers >= 1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    common.header(f"Rehearsal: {args.clips} clips x scale {args.scale} through the documented path")
    load_start = os.getloadavg()
    started = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    shutil.rmtree(args.work, ignore_errors=True)
    paths = {k: os.path.join(args.work, k) for k in ("clips", "tfds", "model")}
    memory = TreeMemory().start()
    stages = Stages(memory, profile=not args.no_profile)
    plan = clip_plan(args.clips, args.scale, args.seed)
    try:
        with stages.stage("generate_corpus"):
            decoded = generate_corpus(paths["clips"], plan, args.seed, args.gen_workers)
        corpus_bytes = sum(os.path.getsize(os.path.join(paths["clips"], s["name"])) for s in plan)
        with stages.stage("build_records_beam"):
            builder = build_records_beam(paths["clips"], paths["tfds"], args.workers)
        records = {s: builder.info.splits[s].num_examples for s in builder.info.splits}
        records_bytes = sum(os.path.getsize(os.path.join(builder.data_path, f)) for f in os.listdir(builder.data_path))

        from emonet_tf.training import TrainConfig, train_and_evaluate

        config = TrainConfig(
            dataset=os.fspath(builder.data_path),
            model_dir=paths["model"],
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
        t0 = time.perf_counter()
        with staged_training(stages), stages.stage("train_and_evaluate (whole call)"):
            summary = train_and_evaluate(config)
        whole = stages.results.pop("train_and_evaluate (whole call)")
        inner = sum(stages.results[s]["seconds"] for s in ("fc7_cache", "train_fc8", "evaluate", "export"))
        # Setup: everything in the call outside the four wrapped steps (checks, model build, restore, glue).
        stages.results["setup"] = {
            "seconds": whole["seconds"] - inner,
            "cpu_seconds": None,
            "peak_rss_mib": memory.peak(t0, t0 + whole["seconds"]) / 2**20,
            "note": "train_and_evaluate minus its four measured steps; peak RSS is that of the whole call",
        }
        stages.profiles.pop("train_and_evaluate (whole call)", None)
        metrics = summary["eval"]
        saved_model = summary["export"]["saved_model"]
        saved_model_bytes = sum(
            os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(saved_model) for f in files
        )
    finally:
        memory.stop()
        if not args.keep:
            shutil.rmtree(args.work, ignore_errors=True)

    total_records = sum(records.values())
    split_records = {"train": records.get("train", 0), "test": records.get("test", 0)}
    table = {}
    for name in ("generate_corpus",) + DOCUMENTED_STAGES:
        r = dict(stages.results[name])
        if name in DOCUMENTED_STAGES:
            per_frame = r["seconds"] / total_records
            r["seconds_per_record"] = per_frame
            r["extrapolated_seconds_137482_frames"] = per_frame * PAPER_FRAMES
            r["grows_with_frames"] = name not in FIXED_STAGES
        table[name] = r
    slowest = max(DOCUMENTED_STAGES, key=lambda s: stages.results[s]["seconds"])
    linear_total = sum(table[s]["extrapolated_seconds_137482_frames"] for s in DOCUMENTED_STAGES)
    fixed_kept = sum(
        table[s]["seconds"] if s in FIXED_STAGES else table[s]["extrapolated_seconds_137482_frames"]
        for s in DOCUMENTED_STAGES
    )
    profile_path = None
    if stages.profiles.get(slowest) is not None:
        profile_path = os.path.splitext(args.out)[0] + "_profile.txt"
        os.makedirs(os.path.dirname(profile_path) or ".", exist_ok=True)
        with open(profile_path, "w") as f:
            f.write(f"Stack samples of the slowest stage, {slowest} ({stages.results[slowest]['seconds']:.1f} s), ")
            f.write(f"driver process only; command: {' '.join(sys.argv)}\n")
            f.write(stages.profiles[slowest])
            for name in ("generate_corpus",) + DOCUMENTED_STAGES:
                if name != slowest and name in stages.profiles:
                    f.write(f"\n\n######## stage {name} ({stages.results[name]['seconds']:.1f} s)\n")
                    f.write(stages.profiles[name])

    print(f"\n{args.clips} clips, {decoded} decoded frames, {total_records} records {split_records}, ")
    print(f"epochs {args.epochs}, test top1 {metrics['top1']:.3f} (random backbone: meaningless)\n")
    print("| stage | wall s | CPU s | peak RSS MiB | s / record | x 137,482 frames (extrapolation) |")
    print("|---|---|---|---|---|---|")
    for name, r in table.items():
        cpu = "" if r.get("cpu_seconds") is None else f"{r['cpu_seconds']:.1f}"
        extra = (
            f"{r['seconds_per_record'] * 1e3:.2f} ms | {r['extrapolated_seconds_137482_frames'] / 60:.1f} min"
            if "seconds_per_record" in r
            else "| (not extrapolated)"
        )
        print(f"| {name} | {r['seconds']:.1f} | {cpu} | {r['peak_rss_mib']:.0f} | {extra} |")
    print(f"\nslowest stage: {slowest}; profile: {profile_path}")
    print(
        f"extrapolated total (linear): {linear_total / 3600:.2f} h; fixed stages kept fixed: {fixed_kept / 3600:.2f} h"
    )

    fps_counts = collections.Counter(s["fps"] for s in plan)
    res_counts = collections.Counter(f"{s['width']}x{s['height']}" for s in plan)
    payload = {
        "what": "rehearsal of the documented path on a generated corpus shaped like Cowen & Keltner (2017)",
        "started_utc": started,
        "load_average_start": load_start,
        "load_average_end": os.getloadavg(),
        "arguments": vars(args),
        "corpus": {
            "clips": args.clips,
            "scale": args.scale,
            "decoded_frames": decoded,
            "mean_frames_per_clip": decoded / args.clips,
            "fps_counts": dict(fps_counts),
            "resolution_counts": dict(res_counts),
            "split_clips": dict(collections.Counter(s["split"] for s in plan)),
            "bytes": corpus_bytes,
            "assumptions": {
                "mean_decoded_frames_per_clip_at_scale_1": MEAN_DECODED_FRAMES,
                "sampling": "every5",
                "fps": dict(FPS_CHOICES),
                "resolutions": {f"{w}x{h}": p for (w, h), p in RESOLUTIONS},
                "duration": f"log-normal, sigma {DURATION_SIGMA}, mean {MEAN_DECODED_FRAMES:.1f} frames x scale",
            },
        },
        "records": {"per_split": records, "total": total_records, "bytes": records_bytes},
        "saved_model_bytes": saved_model_bytes,
        "training": {
            "recipe": "fc8 only, SGD momentum 0.9, lr 1e-4, batch 16, feature cache, init=scratch (random backbone)",
            "epochs": args.epochs,
            "steps": summary["step"],
            "timing": summary["timing"],
            "eval_top1": metrics["top1"],
            "eval_mean_auc": metrics["mean_auc"],
        },
        "memory_source": memory.source,
        "stages": table,
        "slowest_stage": slowest,
        "slowest_stage_profile": profile_path and os.path.relpath(profile_path, ROOT),
        "extrapolation_137482_frames": {
            "label": "EXTRAPOLATION, not a measurement: each stage's seconds per record here x 137,482",
            "linear_total_seconds": linear_total,
            "total_seconds_fixed_stages_kept": fixed_kept,
            "note": "training scales with epochs too (same --epochs assumed); Beam's start-up is inside "
            "build_records_beam and is also scaled linearly",
        },
    }
    common.write_json(args.out, payload)
    print(f"wrote {args.out}")
    return payload


if __name__ == "__main__":
    main()
