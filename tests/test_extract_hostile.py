"""`emonet extract` under careless and hostile use: damaged extraction folders on a rerun (a truncated
shard, an unreadable unit record or plan, a deleted plan under --overwrite, temporary files a killed run
left), and command lines whose mistakes are found before the model loads (a binary or BOM-prefixed file
list, a --tfds spec without ``tfds:``, a malformed --layers list, an unclosed quote in
--pipeline-options, an unknown TFDS dataset).

The model is a randomly initialised EmoNet built once (no weight file); images are tiny.
"""

from __future__ import annotations

import json
import pathlib

import keras
import numpy as np
import pytest

from emonet_tf import EmoNetClassifier, cli, extract
from emonet_tf.extract import shards
from emonet_tf.inference import EmoNet

keras.utils.set_random_seed(0)
EMONET = EmoNet(EmoNetClassifier())


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> pathlib.Path:
    """4 small photos: 2 units of 2 images."""
    from PIL import Image

    root = tmp_path_factory.mktemp("hostile_corpus")
    rng = np.random.default_rng(3)
    for i in range(4):
        Image.fromarray(rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)).save(root / f"p{i}.png")
    return root


@pytest.fixture(scope="module")
def reference(corpus, tmp_path_factory) -> extract.Extraction:
    out = tmp_path_factory.mktemp("hostile_ref") / "ref"
    return extract.extract([str(corpus)], str(out), emonet=EMONET, layers=["fc7"], images_per_unit=2)


def _run(corpus, out, **kwargs) -> extract.Extraction:
    return extract.extract([str(corpus)], str(out), emonet=EMONET, layers=["fc7"], images_per_unit=2, **kwargs)


def _assert_same(a: extract.Extraction, b: extract.Extraction) -> None:
    assert a.keys().equals(b.keys())
    np.testing.assert_array_equal(a.layer("fc7"), b.layer("fc7"))


def _copy(src: pathlib.Path, dst: pathlib.Path) -> pathlib.Path:
    import shutil

    shutil.copytree(src, dst)
    return dst


# ------------------------------------------------------------------------------------------------
# Resuming a damaged folder


def test_a_truncated_shard_is_redone_not_trusted(corpus, reference, tmp_path):
    out = _copy(pathlib.Path(reference.out_dir), tmp_path / "out")
    shard = out / "shards" / "part-00000-of-00002.parquet"
    shard.write_bytes(shard.read_bytes()[:100])  # a full disk, an interrupted copy
    ex = _run(corpus, out)
    assert ex.manifest["units_resumed"] == 1  # unit 1 kept, unit 0 redone
    _assert_same(ex, reference)


def test_an_unreadable_unit_record_is_redone(corpus, reference, tmp_path):
    out = _copy(pathlib.Path(reference.out_dir), tmp_path / "out")
    (out / "units" / "part-00001.json").write_text('{"unit": ')
    ex = _run(corpus, out)
    assert ex.manifest["units_resumed"] == 1
    _assert_same(ex, reference)


def test_an_unreadable_plan_is_named_and_overwrite_replaces_it(corpus, reference, tmp_path):
    out = _copy(pathlib.Path(reference.out_dir), tmp_path / "out")
    (out / "plan.json").write_text("garbage")
    with pytest.raises(extract.ExtractionError, match="plan.json: not an extraction plan"):
        _run(corpus, out)
    _assert_same(_run(corpus, out, overwrite=True), reference)


def test_overwrite_without_a_plan_does_not_keep_the_old_units(corpus, tmp_path):
    out = tmp_path / "out"
    _run(corpus, out)
    (out / "plan.json").unlink()
    # Other settings into the same folder: the old unit records (fc7, other batches) must not count as done.
    ex = extract.extract([str(corpus)], str(out), emonet=EMONET, layers=["fc8"], images_per_unit=2, overwrite=True)
    assert ex.manifest["units_resumed"] == 0
    assert ex.layer("fc8").shape == (4, 20)


def test_temporary_files_of_a_killed_run_are_removed_on_rerun(corpus, reference, tmp_path):
    out = _copy(pathlib.Path(reference.out_dir), tmp_path / "out")
    stale = [
        out / ".tmp-0123456789ab-manifest.json",
        out / "shards" / ".tmp-0123456789ab-part-00000-of-00002.parquet",
        out / "units" / ".tmp-0123456789ab-part-00001.json",
    ]
    for path in stale:
        path.write_bytes(b"half")
    _assert_same(_run(corpus, out), reference)
    assert not any(path.exists() for path in stale)


def test_unit_records_give_the_shard_size(reference):
    layout = shards.layout_of(
        reference.out_dir, json.loads((pathlib.Path(reference.out_dir) / "plan.json").read_text())
    )
    record = shards.read_unit_record(layout, 0)
    assert record["shard_bytes"] == (pathlib.Path(reference.out_dir) / "shards" / record["shard"]).stat().st_size


# ------------------------------------------------------------------------------------------------
# Command-line mistakes: exit 2, a message naming the problem, before the model loads


def _no_model(args):
    raise AssertionError("the model was loaded before the usage error")


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--layers", ",,"], "name at least one layer"),
        (["--layers", "fc7,fc7"], "names a layer twice"),
        (["--runner", "beam", "--pipeline-options=--runner=DirectRunner 'oops"], "--pipeline-options"),
        (["--tfds", "mnist:train"], "mnist:train: --tfds is tfds:NAME[/CONFIG]:SPLIT"),
        (["--tfds", "tfds:mnist:train"], "or --tfds, not both"),
        (["--list", "{binary}"], "list.bin: not a text file list"),
        (["--list", "{missing}"], "nope.txt: cannot read"),
    ],
)
def test_usage_errors_before_the_model_loads(extra, message, corpus, tmp_path, monkeypatch, capsys):
    (tmp_path / "list.bin").write_bytes(b"\x89PNG\r\n\x1a\n\xc8\xff\x00binary")
    paths = {"{binary}": str(tmp_path / "list.bin"), "{missing}": str(tmp_path / "nope.txt")}
    monkeypatch.setattr(cli, "load_emonet", _no_model)
    argv = ["extract", str(corpus), "--out", str(tmp_path / "o")] + [paths.get(e, e) for e in extra]
    assert cli.main(argv) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_layers_with_spaces_are_the_same_layers(corpus, tmp_path, monkeypatch):
    monkeypatch.setattr(cli, "load_emonet", lambda args: EMONET)
    out = tmp_path / "o"
    common = ["extract", str(corpus), "--out", str(out), "--images-per-unit", "2", "--no-progress"]
    assert cli.main(common + ["--layers", " fc7 , fc8"]) == 0
    assert json.loads((out / "plan.json").read_text())["settings"]["layers"] == ["fc7", "fc8"]
    assert cli.main(common + ["--layers", "fc7,fc8"]) == 0  # the same plan: resumed, not refused
    assert json.loads((out / "manifest.json").read_text())["units_resumed"] == 2


def test_a_file_list_with_a_byte_order_mark(corpus, tmp_path):
    listing = tmp_path / "list.txt"
    listing.write_bytes(b"\xef\xbb\xbf" + "\r\n".join(str(p) for p in sorted(corpus.iterdir())).encode())
    ex = extract.extract([], str(tmp_path / "o"), emonet=EMONET, layers=["fc7"], file_list=str(listing))
    assert ex.manifest["errors"] == 0 and ex.manifest["rows"] == 4


def test_a_mistyped_tfds_spec_is_not_ignored(corpus, tmp_path):
    with pytest.raises(ValueError, match="mnist:train: a TFDS split is tfds:"):
        extract.extract([str(corpus)], str(tmp_path / "o"), emonet=EMONET, tfds="mnist:train")


def test_an_unknown_tfds_dataset_is_one_line(tmp_path):
    with pytest.raises(ValueError) as err:
        extract.plan([], EMONET, tfds="tfds:no_such_dataset_xyz:train", data_dir=str(tmp_path))
    assert "tfds:no_such_dataset_xyz:train: not a prepared TFDS split" in str(err.value)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--out", ""], "--out is empty"),
        (["--out", "{tmp}/o", "--scratch", "{tmp}/no_such_scratch"], "--scratch is not a folder"),
        (["--out", "{tmp}/o", "--data-dir", "{tmp}"], "add --tfds"),
    ],
)
def test_out_scratch_and_data_dir_mistakes_before_the_model_loads(
    extra, message, corpus, tmp_path, monkeypatch, capsys
):
    monkeypatch.setattr(cli, "load_emonet", _no_model)
    monkeypatch.chdir(tmp_path)
    assert cli.main(["extract", str(corpus)] + [e.replace("{tmp}", str(tmp_path)) for e in extra]) == 2
    assert message in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # nothing written, in the current folder neither


def test_an_empty_out_dir_is_refused_by_the_library(corpus, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(extract.ExtractionError, match="empty path"):
        extract.extract([str(corpus)], "", emonet=EMONET, layers=["fc7"])
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------------------------------------
# A damaged video cut into frame ranges is treated as the whole video


@pytest.fixture(scope="module")
def cut_video(tmp_path_factory) -> str:
    """An AVI cut part-way: 2 frames decode of the 12 its container announces."""
    from tfds_builders import make_dummy_data as dummy

    path = tmp_path_factory.mktemp("hostile_cut") / "cut.avi"
    dummy.write_truncated_avi(path, fps=10.0, n=20)
    return str(path)


@pytest.mark.parametrize("damaged", ["skip", "keep"])
def test_frame_ranges_of_a_damaged_video_equal_the_whole_video(damaged, cut_video, tmp_path):
    common = dict(emonet=EMONET, layers=["fc7"], sampling="all", damaged=damaged)
    whole = extract.extract([cut_video], str(tmp_path / "whole"), **common)
    ranges = extract.extract([cut_video], str(tmp_path / "ranges"), frames_per_unit=1, **common)
    assert ranges.manifest["units"] > 2  # the container's count splits it, the damage is past range 0
    for column in ("frame_index", "status"):
        assert list(ranges.keys()[column]) == list(whole.keys()[column])
    assert ranges.manifest["errors"] == whole.manifest["errors"] == (1 if damaged == "skip" else 0)
    assert len(ranges.errors()) == len(whole.errors())
    assert ranges.manifest["damaged_videos"].keys() == whole.manifest["damaged_videos"].keys()


def test_overwrite_into_a_folder_without_a_plan_keeps_the_users_files(corpus, tmp_path):
    out = tmp_path / "project"
    (out / "units").mkdir(parents=True)
    (out / "units" / "notes.json").write_text("{}")
    (out / "shards").mkdir()
    (out / "shards" / "mine.txt").write_text("keep")
    _run(corpus, out, overwrite=True)
    assert (out / "units" / "notes.json").read_text() == "{}" and (out / "shards" / "mine.txt").read_text() == "keep"


# ------------------------------------------------------------------------------------------------
# URLs of a file system TensorFlow does not have


def test_an_input_url_of_an_unknown_scheme_is_a_failed_input(corpus, tmp_path):
    url = "nosuchfs://bucket/a.png"
    ex = extract.extract([url, str(corpus)], str(tmp_path / "o"), emonet=EMONET, layers=["fc7"])
    assert ex.manifest["rows"] == 4
    errors = ex.errors()
    assert list(errors["source"]) == [url] and "cannot list" in errors["error"][0]


@pytest.mark.parametrize("out", ["nosuchfs://bucket/features", "{tmp}/dangling"])
def test_an_out_that_cannot_be_written_is_refused_before_the_model_loads(out, corpus, tmp_path, monkeypatch, capsys):
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere" / "x")
    monkeypatch.setattr(cli, "load_emonet", _no_model)
    assert cli.main(["extract", str(corpus), "--out", out.replace("{tmp}", str(tmp_path))]) == 2
    assert "--out" in capsys.readouterr().err


def test_an_out_that_is_a_folder_of_other_files_is_refused_before_the_model_loads(corpus, monkeypatch, capsys):
    monkeypatch.setattr(cli, "load_emonet", _no_model)
    before = sorted(p.name for p in corpus.iterdir())
    assert cli.main(["extract", str(corpus), "--out", str(corpus)]) == 2
    assert "not empty and holds no extraction plan (p0.png, p1.png, p2.png ...)" in capsys.readouterr().err
    assert sorted(p.name for p in corpus.iterdir()) == before


# ------------------------------------------------------------------------------------------------
# SIGTERM


_TERMINATED_RUN = """
import sys
import keras
keras.utils.set_random_seed(0)
from emonet_tf import EmoNetClassifier, cli
from emonet_tf.inference import EmoNet
emonet = EmoNet(EmoNetClassifier())
cli.load_emonet = lambda args: emonet
sys.exit(cli.main(sys.argv[1:]))
"""


def test_sigterm_unwinds_and_a_rerun_completes(tmp_path):
    """`timeout` or a scheduler's kill: the scratch folder (staging files) and --out's temporaries go, as on
    Ctrl-C; finished units stay and the rerun resumes them."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from tfds_builders import make_dummy_data as dummy

    video, out, scratch = tmp_path / "film.mp4", tmp_path / "out", tmp_path / "scratch"
    dummy.write_coded_video(video, 10.0, 120)
    scratch.mkdir()
    argv = [str(video), "--out", str(out), "--scratch", str(scratch), "--layers", "fc7", "--sampling", "all"]
    argv += ["--frames-per-unit", "10", "--batch-size", "1", "--no-progress"]
    command = [sys.executable, "-c", _TERMINATED_RUN, "extract"] + argv
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 240
    while not list((out / "units").glob("part-*.json")) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(60) == 128 + signal.SIGTERM, proc.stderr.read().decode()[-2000:]
    assert list(scratch.iterdir()) == []
    assert [p for p in out.rglob(".tmp-*")] == []
    done = len(list((out / "units").glob("part-*.json")))
    assert 1 <= done < 12
    rerun = subprocess.run(command, capture_output=True, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    assert rerun.returncode == 0, rerun.stderr.decode()[-2000:]
    manifest = extract.Extraction(str(out)).manifest
    assert manifest["units_resumed"] == done and manifest["rows"] == 120
