"""The video TFDS builders beyond DatasetBuilderTestCase: labels, splits, determinism, Beam, bad input, strict mode.

All builds read the committed tiny dummy corpora (tfds_builders/*/dummy_data) or copies of them in
tmp dirs; nothing is downloaded.
"""

from __future__ import annotations

import collections
import json
import pathlib
import shutil

import numpy as np
import pytest

tfds = pytest.importorskip("tensorflow_datasets")
cv2 = pytest.importorskip("cv2")

from _tfds_helpers import build_dataset  # noqa: E402
from emonet_tf.categories import COWEN_KELTNER_CATEGORIES, EMONET_CATEGORIES  # noqa: E402
from emonet_tf.video import FrameSampling, iter_frames  # noqa: E402
from tfds_builders import make_dummy_data as dummy  # noqa: E402
from tfds_builders import video_frames as vf  # noqa: E402
from tfds_builders.cowen_keltner import cowen_keltner_dataset_builder as ck  # noqa: E402
from tfds_builders.video_folder import video_folder_dataset_builder as folder  # noqa: E402

CK_DUMMY = ck.Builder.code_path.parent / "dummy_data"
FOLDER_DUMMY = folder.Builder.code_path.parent / "dummy_data"


def build(builder_cls, data_dir, manual_dir, config, beam=False, **kwargs):
    return build_dataset(builder_cls, data_dir, config, manual_dir=manual_dir, beam=beam, **kwargs)


def records(builder, split):
    """Sorted (video_id, frame_index, timestamp_ms, label, jpeg bytes as stored, soft_label) tuples."""
    ds = builder.as_dataset(split=split, decoders={"image": tfds.decode.SkipDecoding()})
    return sorted(
        (
            ex["video_id"].decode(),
            int(ex["frame_index"]),
            float(ex["timestamp_ms"]),
            int(ex["label"]),
            bytes(ex["image"]),
            tuple(np.round(ex["soft_label"], 6)),
        )
        for ex in tfds.as_numpy(ds)
    )


def skipped_names(summary_part):
    return {reason: sorted(d["name"] for d in items) for reason, items in summary_part.items()}


@pytest.fixture(scope="module")
def every5(tmp_path_factory):
    return build(ck.Builder, tmp_path_factory.mktemp("every5"), CK_DUMMY, "emonet20_every5")


@pytest.fixture(scope="module")
def ck27_builds(tmp_path_factory):
    root = tmp_path_factory.mktemp("ck27")
    return {s: build(ck.Builder, root, CK_DUMMY, f"ck27_{s}") for s in ("fps10", "all")}


def test_label_histograms_and_splits_by_video(every5):
    names = every5.info.features["label"].names
    assert names == list(EMONET_CATEGORIES)
    hist = {split: collections.Counter(names[r[3]] for r in records(every5, split)) for split in ("train", "test")}
    assert hist["train"] == {"Adoration": 3, "Amusement": 4, "Awe": 2, "Fear": 4}
    assert hist["test"] == {"Adoration": 2, "Fear": 3}
    videos = {split: {r[0] for r in records(every5, split)} for split in ("train", "test")}
    assert videos == {"train": {"0001", "0002", "0003", "0004"}, "test": {"0010", "0011"}}


def test_summary_names_every_bad_input(every5):
    summary = vf.read_summary(every5.data_path)
    assert summary["config"] == "emonet20_every5" and summary["jpeg_quality"] == vf.JPEG_QUALITY
    assert skipped_names(summary["left_out_at_label_stage"]) == {
        "label_missing": ["0013"],
        "label_not_in_config": ["0005", "0006", "0014"],
        "label_unknown": ["0012"],
        "video_missing": ["0009"],
    }
    train, test = summary["splits"]["train"], summary["splits"]["test"]
    assert (train["videos_written"], train["frames_written"], train["videos_skipped"]) == (4, 13, 2)
    assert skipped_names(train["skipped"]) == {"video_damaged": ["0008"], "video_unreadable": ["0007"]}
    assert "0008.avi" in train["skipped"]["video_damaged"][0]["detail"]
    assert summary["damaged_videos"] == "skip" and train["damaged_kept"] == [] and train["videos_damaged_kept"] == 0
    assert (test["videos_written"], test["frames_written"], test["skipped"]) == (2, 5, {})
    assert train["frames_decoded_in_written_videos"] == 12 + 20 + 10 + 16


def test_images_are_the_jpeg_we_encoded_once_and_show_their_frame(every5):
    rows = records(every5, "train")
    by_video = collections.defaultdict(dict)
    for video_id, index, _, _, jpeg, _ in rows:
        by_video[video_id][index] = jpeg
    path = CK_DUMMY / "Videos_by_Category" / "Amusement" / "0002.mp4"
    for frame in iter_frames(path, FrameSampling(every_n=5)):
        stored = by_video["0002"][frame.index]
        assert stored[:2] == b"\xff\xd8" and stored == vf.encode_jpeg(frame.image)
    decoded = every5.as_dataset(split="train")
    for ex in tfds.as_numpy(decoded):
        red = int(ex["image"][12, 16, 0])
        assert abs(red - 10 * int(ex["frame_index"])) <= 8, (ex["video_id"], ex["frame_index"], red)


def test_two_builds_give_identical_records(every5, tmp_path):
    again = build(ck.Builder, tmp_path, CK_DUMMY, "emonet20_every5")
    for split in ("train", "test"):
        assert records(again, split) == records(every5, split)
        first = sorted(p.name for p in pathlib.Path(every5.data_path).glob(f"*-{split}.tfrecord*"))
        assert first
        for name in first:
            assert (pathlib.Path(again.data_path) / name).read_bytes() == (
                pathlib.Path(every5.data_path) / name
            ).read_bytes()


def test_beam_build_gives_the_same_examples_and_summary(every5, tmp_path):
    beam_builder = build(ck.Builder, tmp_path, CK_DUMMY, "emonet20_every5", beam=True)
    for split in ("train", "test"):
        assert records(beam_builder, split) == records(every5, split)
    beam_summary, plain_summary = vf.read_summary(beam_builder.data_path), vf.read_summary(every5.data_path)
    assert beam_summary.pop("beam") is True and plain_summary.pop("beam") is False
    assert beam_summary == plain_summary


def test_parallel_plain_build_writes_the_serial_files_and_summary(every5, tmp_path, monkeypatch):
    # Two spawned extraction processes (builder kwarg), then the environment variable `tfds build` uses.
    parallel = build(ck.Builder, tmp_path / "kwarg", CK_DUMMY, "emonet20_every5", workers=2)
    monkeypatch.setenv(vf.WORKERS_ENV, "2")
    from_env = build(ck.Builder, tmp_path / "env", CK_DUMMY, "emonet20_every5")
    assert parallel.workers == from_env.workers == 2 and every5.workers == 1
    for builder in (parallel, from_env):
        for split in ("train", "test"):
            names = sorted(p.name for p in pathlib.Path(every5.data_path).glob(f"*-{split}.tfrecord*"))
            assert names
            for name in names:
                assert (pathlib.Path(builder.data_path) / name).read_bytes() == (
                    pathlib.Path(every5.data_path) / name
                ).read_bytes(), (split, name)
        assert vf.read_summary(builder.data_path) == vf.read_summary(every5.data_path)


def test_a_parallel_build_runs_one_set_of_processes_for_all_its_splits(tmp_path, monkeypatch):
    # TFDS starts every split's generator before writing the first: a pool per split ran 2 x workers.
    started = []
    start = vf.ExtractionPool._start

    def counting_start(self, workers):
        started.append(workers)
        return start(self, workers)

    monkeypatch.setattr(vf.ExtractionPool, "_start", counting_start)
    builder = build(ck.Builder, tmp_path, CK_DUMMY, "emonet20_every5", workers=2)
    assert set(builder.info.splits) == {"train", "test"}
    assert started == [2]


def test_a_script_without_the_main_guard_gets_told_so_not_its_videos_blamed(tmp_path):
    import subprocess
    import sys

    script = tmp_path / "build_script.py"  # the spawned processes re-run it, and die in their bootstrap
    script.write_text(
        "from tfds_builders import video_frames as vf\n"
        f"entry = vf.VideoEntry('0001', {str(CK_DUMMY / '0001.mp4')!r}, 'Joy', (1.0,))\n"
        "try:\n"
        "    list(vf.iter_extractions([entry], 2, sampling='every5'))\n"
        "except RuntimeError as err:\n"
        "    if 'could not start' not in str(err):\n"
        "        raise  # in the spawned process: Python's bootstrap error, which kills it\n"
        "    print('REFUSED:', err)\n"
    )
    root = pathlib.Path(vf.__file__).resolve().parents[1]
    env = dict(__import__("os").environ, PYTHONPATH=str(root))
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300, env=env)
    assert "REFUSED:" in out.stdout and '__name__ == "__main__"' in out.stdout, out.stdout[-2000:]
    assert "video_unreadable" not in out.stdout


@pytest.mark.parametrize("value", [0, -2, 1.5, True, "two", "1_0", "\u0662", ""])
def test_bad_worker_counts_are_refused_by_name(value, monkeypatch):
    if value == "":
        monkeypatch.setenv(vf.WORKERS_ENV, "zero")
        with pytest.raises(ValueError, match=vf.WORKERS_ENV):
            ck.Builder(data_dir="/nonexistent", config="emonet20_every5")
        return
    with pytest.raises(ValueError, match="workers must be a positive integer"):
        ck.Builder(data_dir="/nonexistent", config="emonet20_every5", workers=value)


def test_a_video_that_kills_its_worker_process_is_reported_and_the_rest_extracted(tmp_path):
    import _crashing_extract as crash

    entries = [
        vf.VideoEntry(video_id, str(CK_DUMMY / f"{video_id}.mp4"), "Joy", (1.0,))
        for video_id in ("0001", "0003", crash.CRASHING_VIDEO, "0007", "0010", "0011")
    ]
    assert all(pathlib.Path(e.path).exists() for e in entries)
    serial = {e.video_id: x for e, x in vf.iter_extractions(entries[:2] + entries[3:], 1, sampling="every5")}
    got = list(vf.iter_extractions(entries, 2, extract=crash.extract_or_crash, sampling="every5"))
    assert [e.video_id for e, _ in got] == [e.video_id for e in entries]  # the input order, crash included
    for entry, extraction in got:
        if entry.video_id == crash.CRASHING_VIDEO:
            assert extraction.examples == [] and extraction.problem.reason == vf.VIDEO_UNREADABLE
            assert entry.path in extraction.problem.detail and "process died" in extraction.problem.detail
        else:  # as the serial run has it, bad input (0007 is not a video) included
            assert extraction.problem == serial[entry.video_id].problem
            assert [k for k, _ in extraction.examples] == [k for k, _ in serial[entry.video_id].examples]
    assert sum(bool(x.examples) for x in serial.values()) >= 3 and serial["0007"].problem is not None


@pytest.mark.parametrize("spec", ["fps10", "all"])
def test_records_hold_exactly_the_frames_and_timestamps_the_video_reader_gives(ck27_builds, every5, spec):
    # Which frames a sampling selects, and their timestamps, are emonet_tf.video's job (tests/test_video.py);
    # the builder must store exactly those, for every video, whatever the container.
    builders = {"every5": every5, **ck27_builds}
    for name, builder in ((spec, builders[spec]), ("every5", every5)):
        got = collections.defaultdict(list)
        for split in ("train", "test"):
            for video_id, index, ts, *_ in records(builder, split):
                got[video_id].append((index, ts))
        assert got
        for video_id, frames in got.items():
            path = vf.find_videos(CK_DUMMY)[0][video_id]
            expected = [
                (f.index, float(np.float32(f.timestamp_ms))) for f in iter_frames(path, FrameSampling.parse(name))
            ]
            assert frames == expected, (name, video_id)


def test_soft_labels_are_normalized_shares_over_the_config_categories(every5, ck27_builds):
    for builder, categories in ((every5, EMONET_CATEGORIES), (ck27_builds["all"], COWEN_KELTNER_CATEGORIES)):
        for _video_id, _, _, label, _, soft in records(builder, "train"):
            soft = np.array(soft)
            assert soft.shape == (len(categories),) and abs(soft.sum() - 1) < 1e-5
            assert int(np.argmax(soft)) == label
    # 0003 (Awe 0.5, Joy 0.3, Calmness 0.2): Calmness is not among EmoNet's 20, so 0.5/0.8 and 0.3/0.8.
    soft = dict(zip(EMONET_CATEGORIES, next(r[5] for r in records(every5, "train") if r[0] == "0003")))
    assert soft["Awe"] == pytest.approx(0.625) and soft["Joy"] == pytest.approx(0.375)


def test_hash_split_is_stable_and_stratified():
    labels = {f"{i:04d}": ("A" if i % 3 else "B") for i in range(1, 101)}
    split = vf.hash_split(labels, 0.2)
    assert split == vf.hash_split(dict(reversed(list(labels.items()))), 0.2)
    for label in ("A", "B"):
        ids = [v for v in labels if labels[v] == label]
        assert sum(split[v] == "test" for v in ids) == int(len(ids) * 0.2 + 0.5)
    assert vf.hash_split({"x": "A"}, 0.2) == {"x": "train"}
    assert vf.hash_split({"x": "A", "y": "A"}, 0.9) in ({"x": "test", "y": "train"}, {"x": "train", "y": "test"})


def _manual_copy(tmp_path, keep_split_files=True, keep_ratings=True):
    root = tmp_path / "manual"
    shutil.copytree(CK_DUMMY, root)
    if not keep_split_files:
        for name in ck.SPLIT_FILES.values():
            (root / name).unlink()
    if not keep_ratings:
        (root / ck.RATINGS_FILE).unlink()
    return root


def test_ratings_table_alone_gives_argmax_labels_and_a_stratified_hash_split(tmp_path):
    root = _manual_copy(tmp_path, keep_split_files=False)
    # With 1-2 videos per label, a 50% test fraction puts one of each pair in test.
    config = ck.CowenKeltnerConfig(name="ck27_every5_half", label_set="ck27", sampling="every5", test_fraction=0.5)
    builder = build(ck.Builder, tmp_path / "data", root, config)
    names = builder.info.features["label"].names
    labels = {r[0]: names[r[3]] for split in ("train", "test") for r in records(builder, split)}
    assert labels == {
        "0001": "Adoration",
        "0002": "Amusement",
        "0003": "Awe",
        "0004": "Fear",
        "0005": "Nostalgia",
        "0010": "Adoration",
        "0011": "Fear",
        "0014": "Anger",
    }
    expected = vf.hash_split(labels, 0.5)
    for split in ("train", "test"):
        assert {r[0] for r in records(builder, split)} == {v for v, s in expected.items() if s == split}
    test_labels = sorted(labels[v] for v, s in expected.items() if s == "test")
    assert test_labels == ["Adoration", "Fear"]
    summary = vf.read_summary(builder.data_path)
    # The ratings table has no Pride column, so 0006 has no positive rating among the known categories.
    assert skipped_names(summary["left_out_at_label_stage"]) == {
        "label_missing": ["0006", "0012", "0013"],
        "video_missing": ["0009"],
    }


def test_label_files_with_wrong_columns_are_reported_and_skipped(tmp_path):
    root = _manual_copy(tmp_path)
    dummy.write_csv(root / ck.SPLIT_FILES["train"], ["clip", "feeling"], [["0001.mp4", "Adoration"]])
    builder = build(ck.Builder, tmp_path / "data", root, "emonet20_every5")
    summary = vf.read_summary(builder.data_path)
    invalid = summary["left_out_at_label_stage"]["label_file_invalid"]
    assert [d["name"] for d in invalid] == [ck.SPLIT_FILES["train"]] and "video" in invalid[0]["detail"]
    # The test split file is still used: its videos keep their split, the train videos have no label.
    assert {r[0] for r in records(builder, "test")} == {"0010", "0011"}
    assert "train" not in builder.info.splits
    assert {"0001", "0002", "0003", "0004"} <= set(skipped_names(summary["left_out_at_label_stage"])["label_missing"])

    dummy.write_csv(root / ck.SPLIT_FILES["test"], ["clip"], [["0010.mp4"]])
    dummy.write_csv(root / ck.RATINGS_FILE, ["name", "Awe"], [["0001.mp4", "1"]])
    with pytest.raises(ValueError, match="no labelled video"):
        build(ck.Builder, tmp_path / "data2", root, "emonet20_every5")


def test_strict_mode_raises_on_the_first_bad_input(tmp_path, monkeypatch):
    # 0005 (Nostalgia) and 0006 (Pride) are left out by design; 0009 (listed, no file) is bad input.
    with pytest.raises(vf.BadInputError, match=r"0009 \(video_missing\).*strict mode"):
        build(ck.Builder, tmp_path / "a", CK_DUMMY, "emonet20_every5", strict=True)
    monkeypatch.setenv(vf.STRICT_ENV, "1")
    with pytest.raises(vf.BadInputError):
        build(ck.Builder, tmp_path / "b", CK_DUMMY, "emonet20_every5")
    monkeypatch.delenv(vf.STRICT_ENV)
    # The JSON config that `tfds build --config '{...}'` turns into a builder config.
    config = ck.Builder.builder_config_cls(
        **json.loads('{"name": "strict_every5", "label_set": "emonet20", "sampling": "every5", "strict": true}')
    )
    with pytest.raises(vf.BadInputError):
        build(ck.Builder, tmp_path / "c", CK_DUMMY, config)


def test_empty_video_is_skipped_or_raises_in_strict_mode(tmp_path):
    root = tmp_path / "manual"
    dummy.write_coded_video(root / "0001.mp4", 10.0, 6)
    dummy.write_coded_video(root / "0003.mp4", 10.0, 5)
    (root / "0002.mp4").write_bytes(b"")
    dummy.write_csv(root / ck.SPLIT_FILES["train"], ["video", "emotion"], [["0001.mp4", "Joy"], ["0002.mp4", "Awe"]])
    dummy.write_csv(root / ck.SPLIT_FILES["test"], ["video", "emotion"], [["0003.mp4", "Joy"]])
    builder = build(ck.Builder, tmp_path / "data", root, "emonet20_all")
    assert {k: v.num_examples for k, v in builder.info.splits.items()} == {"train": 6, "test": 5}
    skipped = vf.read_summary(builder.data_path)["splits"]["train"]["skipped"]
    assert (
        skipped_names(skipped) == {"video_unreadable": ["0002"]} and "empty" in skipped["video_unreadable"][0]["detail"]
    )
    with pytest.raises(vf.BadInputError, match="0002"):
        build(ck.Builder, tmp_path / "strict", root, "emonet20_all", strict=True)
    with pytest.raises(vf.BadInputError, match="0002"):  # raised in the build's process, the pool shut down
        build(ck.Builder, tmp_path / "strict_parallel", root, "emonet20_all", strict=True, workers=2)
    # Without bad input, strict mode builds; a label outside the config is left out by design, not an error.
    (root / "0002.mp4").unlink()
    dummy.write_coded_video(root / "0004.mp4", 10.0, 3)
    dummy.write_csv(root / ck.SPLIT_FILES["train"], ["video", "emotion"], [["0001.mp4", "Joy"], ["0004.mp4", "Relief"]])
    strict = build(ck.Builder, tmp_path / "strict_ok", root, "emonet20_all", strict=True)
    assert {k: v.num_examples for k, v in strict.info.splits.items()} == {"train": 6, "test": 5}
    summary = vf.read_summary(strict.data_path)
    assert summary["strict"] is True
    assert skipped_names(summary["left_out_at_label_stage"]) == {"label_not_in_config": ["0004"]}


def test_video_folder_discovers_labels_and_reloads_them(tmp_path):
    builder = build(folder.Builder, tmp_path, FOLDER_DUMMY, "every5")
    assert builder.info.features["label"].names == ["cats", "dogs"]
    reloaded = tfds.builder_from_directory(builder.data_path)
    assert reloaded.info.features["label"].names == ["cats", "dogs"]
    summary = vf.read_summary(builder.data_path)
    assert skipped_names(summary["left_out_at_label_stage"]) == {"label_missing": ["loose"]}
    assert skipped_names(summary["splits"]["train"]["skipped"]) == {"video_unreadable": ["dogs/broken"]}
    videos = {split: {r[0] for r in records(builder, split)} for split in ("train", "test")}
    assert videos == {
        "train": {"cats/clip_a", "cats/clip_b", "dogs/clip_d", "dogs/clip_e"},
        "test": {"cats/clip_c", "dogs/clip_f"},
    }


def test_video_folder_csv_with_splits_and_configured_labels(tmp_path):
    root = tmp_path / "corpus"
    dummy.write_coded_video(root / "clips" / "a.mp4", 10.0, 6)
    dummy.write_coded_video(root / "clips" / "b.avi", 10.0, 11)
    dummy.write_coded_video(root / "c.mp4", 20.0, 7)
    dummy.write_coded_video(root / "d.mp4", 10.0, 3)
    dummy.write_csv(
        root / "labels.csv",
        ["video", "label", "split"],
        [
            ["clips/a.mp4", "happy", "train"],
            ["clips/b.avi", "sad", "train"],
            ["c.mp4", "happy", "validation"],
            ["d.mp4", "angry", "train"],
            ["e.mp4", "sad", "test"],
            ["clips/a.mp4", "sad", "train"],
        ],
    )
    config = folder.VideoFolderConfig(name="mine_every5", sampling="every5", labels=["sad", "happy"])
    builder = build(folder.Builder, tmp_path / "data", None, config, root=str(root))
    assert builder.info.features["label"].names == ["sad", "happy"]
    assert builder.info.features["soft_label"].shape == (2,)
    assert {k: v.num_examples for k, v in builder.info.splits.items()} == {"train": 2 + 3, "validation": 2}
    rows = records(builder, "train")
    assert {(r[0], r[3], r[5]) for r in rows} == {("clips/a", 1, (0.0, 1.0)), ("clips/b", 0, (1.0, 0.0))}
    summary = vf.read_summary(builder.data_path)
    assert skipped_names(summary["left_out_at_label_stage"]) == {
        "label_conflict": ["clips/a"],
        "label_not_in_config": ["d"],
        "video_missing": ["e"],
    }
