"""The video builders on hostile input, damaged videos, lossless frames, and byte-identical files across processes.

* Fuzz: corpora that mix every kind of bad input (duplicate video ids, unreadable, non-video and
  empty files, a file that vanishes mid-build, a truncated video) with good videos, in both builders
  and in their plain and Beam builds: the build completes, the summary names each bad input with its
  reason, every good video's frames are there, and no log line carries example bytes.
* The damaged-video policy (`damaged_videos`): skip (default) or keep (flagged `video_damaged`);
  strict mode raises under both.
* `frame_encoding="png"`: the stored frame is exactly the decoded frame.
* Two builds in two fresh processes (different PYTHONHASHSEED) write byte-identical tfrecord files.
"""

from __future__ import annotations

import collections
import logging
import os
import pathlib
import random
import re
import subprocess
import sys

import numpy as np
import pytest

tfds = pytest.importorskip("tensorflow_datasets")
cv2 = pytest.importorskip("cv2")

from _tfds_helpers import build_dataset  # noqa: E402
from emonet_tf import video as video_lib  # noqa: E402
from tfds_builders import make_dummy_data as dummy  # noqa: E402
from tfds_builders import video_frames as vf  # noqa: E402
from tfds_builders.cowen_keltner import cowen_keltner_dataset_builder as ck  # noqa: E402
from tfds_builders.video_folder import video_folder_dataset_builder as folder  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parents[1]
FOLDER_DUMMY = folder.Builder.code_path.parent / "dummy_data"


build = build_dataset


def stored(builder, split):
    """(video_id, frame_index) -> (stored image bytes, video_damaged) for one split."""
    ds = builder.as_dataset(split=split, decoders={"image": tfds.decode.SkipDecoding()})
    return {
        (ex["video_id"].decode(), int(ex["frame_index"])): (bytes(ex["image"]), bool(ex["video_damaged"]))
        for ex in tfds.as_numpy(ds)
    }


def all_stored(builder):
    out = {}
    for split in builder.info.splits:
        out.update(stored(builder, split))
    return out


def reported(summary) -> dict[str, list[str]]:
    """reason -> sorted names, over the label stage and every split."""
    out = collections.defaultdict(list)
    parts = [summary["left_out_at_label_stage"]] + [s["skipped"] for s in summary["splits"].values()]
    for part in parts:
        for reason, items in part.items():
            out[reason] += [d["name"] for d in items]
    return {reason: sorted(names) for reason, names in out.items()}


# ------------------------------------------------------------------------------------------------
# Fuzz corpora: good videos plus one of each bad kind, in random order, names and sizes.

#: Bad kinds and the reason the summary must give.
BAD_KINDS = {
    "duplicate": vf.DUPLICATE_VIDEO_FILE,  # one clip in two containers: same video id
    "corrupt": vf.VIDEO_UNREADABLE,  # random bytes under a video name
    "not_video": vf.VIDEO_UNREADABLE,  # a text file with a video extension
    "empty": vf.VIDEO_UNREADABLE,  # 0 bytes
    "vanish": vf.VIDEO_MISSING,  # listed, then deleted before it is decoded
    "truncated": vf.VIDEO_DAMAGED,  # cut MJPG AVI: decodes part-way
}


class Corpus:
    """Where each input went, what the summary must say, and which (video id, path) must be written."""

    def __init__(self):
        self.expected_bad: dict[str, list[str]] = collections.defaultdict(list)
        self.good: dict[str, pathlib.Path] = {}
        self.vanish: list[pathlib.Path] = []

    def bad(self, kind: str, video_id: str) -> None:
        self.expected_bad[BAD_KINDS[kind]].append(video_id)


def _write_input(kind: str, path: pathlib.Path, rng: random.Random) -> pathlib.Path:
    if kind == "corrupt":
        return dummy.write_corrupt(path, size=rng.randint(100, 3000), seed=rng.randint(0, 1000))
    if kind == "not_video":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("this is a text file, not a video\n" * rng.randint(1, 20))
        return path
    if kind == "empty":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")
        return path
    if kind == "truncated":
        return dummy.write_truncated_avi(path.with_suffix(".avi"), fps=10.0, n=20)
    return dummy.write_coded_video(path, rng.choice([10.0, 15.0, 24.0]), rng.randint(3, 12), blue=rng.randint(0, 255))


def fuzz_video_folder(root: pathlib.Path, seed: int, csv_layout: bool) -> Corpus:
    """A video_folder corpus (label folders, or labels.csv) with every bad kind and 3-5 good videos."""
    rng = random.Random(seed)
    corpus, rows = Corpus(), []
    labels = ["happy", "sad"]
    items = [("good", f"good{i}") for i in range(rng.randint(3, 5))] + [(k, k) for k in BAD_KINDS]
    rng.shuffle(items)
    for n, (kind, stem) in enumerate(items):
        label = labels[n % 2]
        rel = f"{label}/{stem}_{rng.randint(0, 99)}.mp4"
        if kind == "truncated":
            rel = rel[:-4] + ".avi"
        video_id = rel.rsplit(".", 1)[0]
        if kind == "duplicate":
            # The same clip as .avi and .mp4: the first in sorted order (.avi) is used, the other reported.
            kept = dummy.write_coded_video(root / f"{video_id}.avi", 10.0, rng.randint(3, 8))
            _write_input("good", root / rel, rng)
            corpus.good[video_id] = kept
            rows.append([f"{video_id}.avi", label])
        else:
            path = _write_input(kind, root / rel, rng)
            if kind == "good":
                corpus.good[video_id] = path
            elif kind == "vanish":
                corpus.vanish.append(path)
        if kind != "good":
            corpus.bad(kind, video_id)
        rows.append([rel, label])
    if csv_layout:
        rng.shuffle(rows)
        dummy.write_csv(root / "labels.csv", ["video", "label"], rows)
    return corpus


def fuzz_cowen_keltner(root: pathlib.Path, seed: int) -> Corpus:
    """A cowen_keltner manual dir (split files, flat and per-category folders) with every bad kind."""
    rng = random.Random(seed)
    corpus = Corpus()
    items = ["good"] * rng.randint(3, 5) + list(BAD_KINDS)
    rng.shuffle(items)
    rows = {"train": [], "test": []}
    for n, kind in enumerate(items):
        video_id = f"{n + 1:04d}"
        emotion = ["Joy", "Fear", "Awe"][n % 3]
        folder_name = rng.choice(["", f"Videos_by_Category/{emotion}"])
        path = root / folder_name / f"{video_id}.mp4"
        if kind == "duplicate":
            # Flat 0001.mp4 sorts before Videos_by_Category/...: the flat one is used, the other reported.
            kept = dummy.write_coded_video(root / f"{video_id}.mp4", 10.0, rng.randint(3, 8))
            dummy.write_coded_video(root / f"Videos_by_Category/{emotion}/{video_id}.avi", 12.0, 4)
            corpus.good[video_id] = kept
            path = kept
        else:
            path = _write_input(kind, path, rng)
            if kind == "good":
                corpus.good[video_id] = path
            elif kind == "vanish":
                corpus.vanish.append(path)
        if kind != "good":
            corpus.bad(kind, video_id)
        # Each split gets a good video: a Beam build fails on a split without any example (see
        # test_plain_build_leaves_out_a_split_in_which_no_video_could_be_written).
        in_test = n % 4 == 0 if kind != "good" else not any(k == "good" for k in items[:n])
        rows["test" if in_test else "train"].append([path.name, emotion])
    for split, name in ck.SPLIT_FILES.items():
        dummy.write_csv(root / name, ["video", "emotion"], rows[split])
    return corpus


@pytest.fixture
def vanish_after_listing(monkeypatch):
    """Makes the corpus' `vanish` files disappear after the builder listed them, before they are decoded."""

    def install(builder_cls, corpus: Corpus):
        original = builder_cls._collect

        def collect_then_delete(self, dl_manager):
            result = original(self, dl_manager)
            for path in corpus.vanish:
                path.unlink()
            return result

        monkeypatch.setattr(builder_cls, "_collect", collect_then_delete)

    return install


#: A bytes repr of binary data in a log line (b'\xff\xd8...' or long runs of \x escapes), as TFDS printed
#: when it dumped two examples with the same key.
_BYTES_REPR = re.compile(r"b'\\x|b\"\\x|(\\x[0-9a-f]{2}){8}")


def assert_no_example_bytes_in_logs(caplog, captured_err: str):
    for record in caplog.records:
        message = record.getMessage()
        assert not _BYTES_REPR.search(message), message[:300]
        assert len(message) < 4000, message[:300]
    assert not _BYTES_REPR.search(captured_err), captured_err[:300]


def check_fuzz_build(builder, corpus: Corpus, sampling: str = "all"):
    summary = vf.read_summary(builder.data_path)
    got = reported(summary)
    for reason, names in corpus.expected_bad.items():
        assert got.get(reason) == sorted(names), (reason, got)
    details = {
        d["name"]: d["detail"]
        for part in [summary["left_out_at_label_stage"]] + [s["skipped"] for s in summary["splits"].values()]
        for items in part.values()
        for d in items
    }
    for names in corpus.expected_bad.values():
        for name in names:
            assert pathlib.PurePath(name).name.split(".")[0] in details[name] or name in details[name], details[name]
    records = all_stored(builder)
    written = collections.defaultdict(list)
    for (video_id, index), (_, damaged) in records.items():
        written[video_id].append(index)
        assert damaged is False
    assert set(written) == set(corpus.good)
    for video_id, path in corpus.good.items():
        expected = [f.index for f in video_lib.iter_frames(path, video_lib.FrameSampling.parse(sampling))]
        assert sorted(written[video_id]) == expected, video_id


@pytest.mark.parametrize("beam", [False, True], ids=["plain", "beam"])
@pytest.mark.parametrize("csv_layout", [False, True], ids=["folders", "csv"])
def test_video_folder_build_completes_and_names_every_bad_input(
    tmp_path, caplog, capfd, vanish_after_listing, beam, csv_layout
):
    caplog.set_level(logging.INFO)
    corpus = fuzz_video_folder(tmp_path / "corpus", seed=7 + csv_layout, csv_layout=csv_layout)
    vanish_after_listing(folder.Builder, corpus)
    # One split: a Beam build fails on a split without any example, which a random hash split can produce.
    config = folder.VideoFolderConfig(name="fuzz_all", sampling="all", labels=["happy", "sad"], test_fraction=0.0)
    builder = build(folder.Builder, tmp_path / "data", config, root=str(tmp_path / "corpus"), beam=beam)
    check_fuzz_build(builder, corpus)
    assert_no_example_bytes_in_logs(caplog, capfd.readouterr().err)


@pytest.mark.parametrize("beam", [False, True], ids=["plain", "beam"])
def test_cowen_keltner_build_completes_and_names_every_bad_input(tmp_path, caplog, capfd, vanish_after_listing, beam):
    caplog.set_level(logging.INFO)
    corpus = fuzz_cowen_keltner(tmp_path / "manual", seed=3)
    vanish_after_listing(ck.Builder, corpus)
    builder = build(ck.Builder, tmp_path / "data", "emonet20_all", manual_dir=tmp_path / "manual", beam=beam)
    check_fuzz_build(builder, corpus)
    assert_no_example_bytes_in_logs(caplog, capfd.readouterr().err)


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(20, 30))
def test_fuzz_more_seeds(tmp_path, vanish_after_listing, seed):
    corpus = fuzz_video_folder(tmp_path / "folder", seed=seed, csv_layout=bool(seed % 2))
    vanish_after_listing(folder.Builder, corpus)
    config = folder.VideoFolderConfig(name="fuzz_all", sampling="all", labels=["happy", "sad"], test_fraction=0.0)
    check_fuzz_build(build(folder.Builder, tmp_path / "data", config, root=str(tmp_path / "folder")), corpus)
    corpus = fuzz_cowen_keltner(tmp_path / "ck", seed=seed)
    vanish_after_listing(ck.Builder, corpus)
    check_fuzz_build(
        build(ck.Builder, tmp_path / "data", "emonet20_all", manual_dir=tmp_path / "ck", beam=bool(seed % 3 == 0)),
        corpus,
    )


def test_plain_build_leaves_out_a_split_in_which_no_video_could_be_written(tmp_path):
    root = tmp_path / "corpus"
    dummy.write_coded_video(root / "a.mp4", 10.0, 6)
    dummy.write_corrupt(root / "b.mp4")
    dummy.write_csv(root / "labels.csv", ["video", "label", "split"], [["a.mp4", "x", "train"], ["b.mp4", "x", "test"]])
    builder = build(folder.Builder, tmp_path / "data", "all", root=str(root))
    assert list(builder.info.splits) == ["train"] and builder.info.splits["train"].num_examples == 6
    summary = vf.read_summary(builder.data_path)
    assert summary["splits"]["test"]["videos_written"] == 0
    assert reported(summary) == {"video_unreadable": ["b"]}
    (root / "a.mp4").write_bytes(b"")
    with pytest.raises(ValueError, match=r"none of the videos could be written.*video_unreadable"):
        build(folder.Builder, tmp_path / "data2", "all", root=str(root))


def test_label_file_that_is_not_utf8_is_reported_and_the_build_goes_on(tmp_path):
    root = tmp_path / "manual"
    dummy.write_coded_video(root / "0001.mp4", 10.0, 4)
    dummy.write_coded_video(root / "0002.mp4", 10.0, 3)
    dummy.write_csv(root / ck.SPLIT_FILES["train"], ["video", "emotion"], [["0001.mp4", "Joy"]])
    dummy.write_csv(root / ck.SPLIT_FILES["test"], ["video", "emotion"], [["0002.mp4", "Awe"]])
    (root / ck.RATINGS_FILE).write_bytes("Filename,Joy\n0001.mp4,1\nSch\u00e4fer.mp4,1\n".encode("latin-1"))
    builder = build(ck.Builder, tmp_path / "data", "emonet20_all", manual_dir=root)
    assert {k: v.num_examples for k, v in builder.info.splits.items()} == {"train": 4, "test": 3}
    invalid = vf.read_summary(builder.data_path)["left_out_at_label_stage"]["label_file_invalid"]
    assert [d["name"] for d in invalid] == [ck.RATINGS_FILE] and "UTF-8" in invalid[0]["detail"]


def test_any_decoder_exception_on_one_file_becomes_its_skip_reason(tmp_path, monkeypatch):
    path = dummy.write_coded_video(tmp_path / "a.mp4", 10.0, 3)
    entry = vf.VideoEntry(video_id="a", path=str(path), label="x", soft_label=(1.0,))

    def hostile(*args, **kwargs):
        raise MemoryError("decoder asked for 2**40 bytes")  # what a crafted header can make a decoder do

    monkeypatch.setattr(video_lib, "iter_frames", hostile)
    extraction = vf.extract_video(entry, "all")
    assert extraction.examples == [] and extraction.problem.reason == vf.VIDEO_UNREADABLE
    assert str(path) in extraction.problem.detail and "MemoryError" in extraction.problem.detail


def test_csv_duplicate_ids_keep_the_first_path_in_sorted_order_whatever_the_row_order(tmp_path):
    root = tmp_path / "corpus"
    dummy.write_coded_video(root / "clip.mp4", 10.0, 6)
    dummy.write_coded_video(root / "clip.avi", 10.0, 4)
    dummy.write_csv(root / "labels.csv", ["video", "label"], [["clip.mp4", "x"], ["clip.avi", "x"]])
    builder = build(
        folder.Builder,
        tmp_path / "data",
        folder.VideoFolderConfig(name="c", sampling="all", test_fraction=0.0),
        root=str(root),
    )
    assert sorted(i for _, i in stored(builder, "train")) == [0, 1, 2, 3]  # clip.avi's 4 frames
    (dup,) = vf.read_summary(builder.data_path)["left_out_at_label_stage"]["duplicate_video_file"]
    assert dup["name"] == "clip" and "using" in dup["detail"] and dup["detail"].endswith("clip.mp4")


def test_duplicate_ids_in_strict_mode_raise_before_any_decoding(tmp_path, monkeypatch):
    root = tmp_path / "corpus"
    dummy.write_coded_video(root / "happy" / "clip.mp4", 10.0, 4)
    dummy.write_coded_video(root / "happy" / "clip.avi", 10.0, 4)
    dummy.write_coded_video(root / "sad" / "other.mp4", 10.0, 4)

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded a video although the input was already known to be bad")

    monkeypatch.setattr(vf, "extract_video", no_decoding)
    with pytest.raises(vf.BadInputError, match=r"happy/clip \(duplicate_video_file\).*clip\.avi.*clip\.mp4"):
        build(folder.Builder, tmp_path / "data", "all", root=str(root), strict=True)


# ------------------------------------------------------------------------------------------------
# Damaged videos: skip (default) or keep; strict raises.


def _damaged_corpus(root: pathlib.Path) -> pathlib.Path:
    dummy.write_coded_video(root / "happy" / "good.mp4", 10.0, 7)
    dummy.write_truncated_avi(root / "happy" / "cut.avi", fps=10.0, n=20)
    dummy.write_coded_video(root / "sad" / "fine.mp4", 10.0, 5)
    return root


@pytest.mark.parametrize("beam", [False, True], ids=["plain", "beam"])
def test_damaged_video_kept_and_flagged_with_keep_policy(tmp_path, beam):
    root = _damaged_corpus(tmp_path / "corpus")
    cut = root / "happy" / "cut.avi"
    config = folder.VideoFolderConfig(name="keep_all", sampling="all", damaged_videos="keep", test_fraction=0.0)
    builder = build(folder.Builder, tmp_path / "data", config, root=str(root), beam=beam)
    records = stored(builder, "train")
    frames = video_lib.iter_frames(cut, video_lib.FrameSampling(), damaged="keep")
    kept = [f.index for f in frames]
    assert frames.damage and 0 < len(kept) < 20
    assert sorted(i for (v, i) in records if v == "happy/cut") == kept
    assert {v: d for (v, _), (_, d) in records.items()} == {"happy/cut": True, "happy/good": False, "sad/fine": False}
    summary = vf.read_summary(builder.data_path)
    assert summary["damaged_videos"] == "keep"
    train = summary["splits"]["train"]
    assert train["videos_written"] == 3 and train["videos_damaged_kept"] == 1 and train["skipped"] == {}
    assert [d["name"] for d in train["damaged_kept"]] == ["happy/cut"] and train["damaged_kept"][0]["detail"]


def test_damaged_video_skipped_by_default_and_strict_raises_under_both_policies(tmp_path):
    root = _damaged_corpus(tmp_path / "corpus")
    skip = build(
        folder.Builder,
        tmp_path / "skip",
        folder.VideoFolderConfig(name="s", sampling="all", test_fraction=0.0),
        root=str(root),
    )
    assert {v for v, _ in stored(skip, "train")} == {"happy/good", "sad/fine"}
    assert reported(vf.read_summary(skip.data_path)) == {"video_damaged": ["happy/cut"]}
    for policy in video_lib.DAMAGED_POLICIES:
        config = folder.VideoFolderConfig(name=f"strict_{policy}", sampling="all", damaged_videos=policy)
        with pytest.raises(vf.BadInputError, match=r"happy/cut \(video_damaged\).*strict mode"):
            build(folder.Builder, tmp_path / policy, config, root=str(root), strict=True)


def test_unknown_policy_or_encoding_fails_at_construction_naming_the_choices(tmp_path):
    with pytest.raises(ValueError, match="skip, keep"):
        folder.Builder(data_dir=str(tmp_path), config=folder.VideoFolderConfig(name="x", damaged_videos="drop"))
    with pytest.raises(ValueError, match="jpeg, png"):
        folder.Builder(data_dir=str(tmp_path), config=folder.VideoFolderConfig(name="y", frame_encoding="webp"))


# ------------------------------------------------------------------------------------------------
# Lossless frames


def test_png_frames_are_exactly_the_decoded_frames_and_jpeg_ones_are_not(tmp_path):
    root = tmp_path / "corpus"
    rng = np.random.default_rng(0)
    # Noise and gradients: the codec's decoded pixels are far from flat, so any re-encoding loss shows.
    frames = [np.clip(rng.normal(128, 60, (24, 32, 3)) + 4 * i, 0, 255).astype(np.uint8) for i in range(9)]
    dummy.write_video(root / "a" / "noisy.mp4", 10.0, frames)
    dummy.write_video(root / "b" / "noisy2.avi", 10.0, frames[::-1])
    decoded = {}
    for video_id, path in (("a/noisy", root / "a" / "noisy.mp4"), ("b/noisy2", root / "b" / "noisy2.avi")):
        for f in video_lib.iter_frames(path):
            decoded[(video_id, f.index)] = f.image
    for encoding in vf.FRAME_ENCODINGS:
        config = folder.VideoFolderConfig(
            name=f"all_{encoding}", sampling="all", frame_encoding=encoding, test_fraction=0.0
        )
        builder = build(folder.Builder, tmp_path / encoding, config, root=str(root))
        assert builder.info.features["image"].encoding_format == encoding
        records = stored(builder, "train")
        assert set(records) == set(decoded)
        diffs = []
        for key, (data, _) in records.items():
            image = tfds.as_numpy(builder.info.features["image"].decode_example(data))
            diffs.append(int(np.abs(image.astype(int) - decoded[key]).max()))
        if encoding == "png":
            assert data[:8] == b"\x89PNG\r\n\x1a\n" and max(diffs) == 0
        else:
            assert data[:2] == b"\xff\xd8" and min(diffs) > 0
        assert vf.read_summary(builder.data_path)["frame_encoding"] == encoding


# ------------------------------------------------------------------------------------------------
# Byte-identical files across processes

_BUILD_SCRIPT = """
import sys
import tensorflow_datasets as tfds
from tfds_builders.video_folder import video_folder_dataset_builder as folder
builder = folder.Builder(data_dir=sys.argv[1], config="all")
builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=sys.argv[2]))
print(builder.data_path)
"""


def test_two_builds_in_two_fresh_processes_write_byte_identical_files(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(REPO), TF_CPP_MIN_LOG_LEVEL="2")
    procs = []
    for seed in ("1", "2"):  # different hash seeds, as two machines or two days would have
        procs.append(
            subprocess.Popen(
                [sys.executable, "-c", _BUILD_SCRIPT, str(tmp_path / f"data{seed}"), str(FOLDER_DUMMY)],
                env=dict(env, PYTHONHASHSEED=seed),
                cwd=str(tmp_path),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    paths = []
    for proc in procs:
        out, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err[-3000:]
        paths.append(pathlib.Path(out.strip().splitlines()[-1]))
    files = [sorted(p.glob("*.tfrecord*")) for p in paths]
    assert [f.name for f in files[0]] == [f.name for f in files[1]] and len(files[0]) >= 2
    for a, b in zip(*files):
        assert a.read_bytes() == b.read_bytes(), a.name


def test_canonical_example_bytes_sort_the_feature_map():
    from tensorflow_datasets.proto import tf_example_pb2

    example = tf_example_pb2.Example()
    for name in ("zeta", "alpha", "mid"):
        example.features.feature[name].int64_list.value.append(len(name))
    canonical = vf.canonical_example_bytes(example.SerializeToString())
    assert tf_example_pb2.Example.FromString(canonical) == example
    positions = [canonical.index(name.encode()) for name in ("alpha", "mid", "zeta")]
    assert positions == sorted(positions)


@pytest.mark.parametrize("beam", [False, True], ids=["plain", "beam"])
def test_label_whose_split_videos_are_all_unreadable_is_named_in_the_summary_and_log(tmp_path, caplog, beam):
    """The hash split is fixed before extraction: junk keeps the test slot it got, and the summary says so."""
    root = tmp_path / "corpus"
    split = vf.hash_split({"sad/a": "sad", "sad/b": "sad", "happy/c": "happy", "happy/d": "happy"}, 0.5)
    for video_id in ("happy/c", "happy/d"):
        dummy.write_coded_video(root / f"{video_id}.mp4", 10.0, 3)
    junk = next(v for v in ("sad/a", "sad/b") if split[v] == "test")
    good = next(v for v in ("sad/a", "sad/b") if split[v] == "train")
    (root / f"{junk}.mp4").parent.mkdir(parents=True, exist_ok=True)
    (root / f"{junk}.mp4").write_text("notes, not a video\n")
    dummy.write_coded_video(root / f"{good}.mp4", 10.0, 3)
    config = folder.VideoFolderConfig(name="half_all", sampling="all", test_fraction=0.5)
    with caplog.at_level(logging.WARNING):
        builder = build(folder.Builder, tmp_path / "data", config, root=str(root), beam=beam)
    summary = vf.read_summary(builder.data_path)
    assert summary["splits"]["test"]["labels_without_videos"] == {"sad": [junk]}
    assert summary["splits"]["train"]["labels_without_videos"] == {}
    assert reported(summary) == {"video_unreadable": [junk]}  # it still counted for the split
    assert {v for v, _ in stored(builder, "test")} == {v for v in split if split[v] == "test"} - {junk}
    assert any(
        "'sad' has no example in this split" in r.getMessage() and junk in r.getMessage() for r in caplog.records
    )
