"""The library functions the `emonet` command is built on, called directly: emonet_tf.media (mixed inputs,
progress in frames, activation rows), evaluation.evaluate_folder / label_map, affect.fit_readouts_from_files,
and the MATLAB text dump reader's progress."""

from __future__ import annotations

import csv
import pathlib

import cv2
import keras
import numpy as np
import pytest

from emonet_tf import EmoNet, EmoNetClassifier, affect, evaluation, media
from emonet_tf.weights import matlab_text


class Bar:
    """The part of tqdm the library uses: total, n, update, refresh."""

    def __init__(self, total=None):
        self.total, self.n, self.updates = total, 0, []

    def update(self, n=1):
        self.n += n
        self.updates.append(n)

    def refresh(self):
        pass


def write_video(path, photo: np.ndarray, frames: int = 12, fps: float = 12.0, size=(64, 48)) -> pathlib.Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
    for i in range(frames):
        frame = cv2.resize(np.roll(photo, 25 * i, axis=1), size, interpolation=cv2.INTER_AREA)
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()
    return pathlib.Path(path)


@pytest.fixture(scope="module")
def emonet() -> EmoNet:
    keras.utils.set_random_seed(5)
    model = EmoNetClassifier()
    model.head.kernel.assign(model.head.kernel.numpy() * 3)
    return EmoNet(model)


@pytest.fixture(scope="module")
def files(tmp_path_factory, photos) -> dict[str, pathlib.Path]:
    root = tmp_path_factory.mktemp("media")
    out = {"photo": root / "a.jpg", "face": root / "b.png", "broken": root / "c_broken.jpg"}
    cv2.imwrite(str(out["photo"]), cv2.cvtColor(photos["hopper"], cv2.COLOR_RGB2BGR))
    cv2.imwrite(str(out["face"]), cv2.cvtColor(photos["hopper_face"], cv2.COLOR_RGB2BGR))
    out["broken"].write_bytes(b"\xff\xd8\xff\xe0 not a JPEG")
    out["clip"] = write_video(root / "d_clip.mp4", photos["hopper_wide"])
    out["empty_video"] = root / "e_empty.mp4"
    out["empty_video"].write_bytes(b"")
    return out


def test_estimate_and_progress_count_frames_for_a_mix_of_images_and_videos(emonet, files):
    inputs = media.collect_inputs([str(files[k]) for k in ("photo", "clip", "broken", "empty_video", "face")])
    assert [i.kind for i in inputs] == ["image", "video", "image", "video", "image"]
    assert media.estimated_video_frames(str(files["clip"])) == 12  # 1 s x 12 frames/s
    assert media.estimated_video_frames(str(files["empty_video"])) == 0  # cannot be opened: it decodes nothing
    total = media.estimate_frames(inputs)
    assert total == 3 + 12
    bar = Bar(total)
    results = list(media.iter_results(emonet, inputs, "every5", 4, progress=bar))
    assert [r.status for r in results] == ["ok", "ok", "failed", "failed", "ok"]
    assert bar.n == 15 and bar.total == 15  # every decoded frame of the clip, not only the 3 sampled
    assert max(bar.updates) < 12  # the clip advances the bar while it is decoded, not in one step at its end
    video = results[1]
    assert [f.index for f in video.frames] == [0, 5, 10] and video.frames_decoded == 12
    np.testing.assert_allclose(video.probabilities, np.mean([f.probabilities for f in video.frames], axis=0))
    np.testing.assert_allclose(
        results[0].probabilities, emonet.predict_images([files["photo"]])[0].probabilities, atol=1e-6
    )
    unknown = Bar(None)  # no total (a stream without duration): frames are still counted
    list(media.iter_results(emonet, inputs[:2], "every5", 4, progress=unknown))
    assert unknown.n == 13 and unknown.total is None


def test_total_is_corrected_when_a_video_has_other_frames_than_its_estimate(emonet, files):
    inputs = [media.InputFile(str(files["clip"]), "video")]
    bar = Bar(20)  # as if the container had promised 20 frames
    list(media.iter_preprocessed(emonet, inputs, "all", 4, progress=bar))
    assert bar.n == 12 and bar.total == 20  # the estimate here is 12: nothing to correct
    ticks = media._FrameTicks(bar, media.InputFile("x.mp4", "video", error="known to fail"))
    ticks.finish(0)
    bar = Bar(5)
    ticks = media._FrameTicks(bar, inputs[0])
    ticks.estimate = 5
    ticks.finish(12)
    assert bar.n == 12 and bar.total == 12


def test_prediction_rows_mark_status_and_row_writer_streams_csv_and_json(emonet, files, tmp_path):
    inputs = media.collect_inputs([str(files["clip"]), str(files["broken"])])
    results = list(media.iter_results(emonet, inputs, "every5", 8))
    names = list(emonet.class_names)
    rows = [r for res in results for r in media.prediction_rows(res, names)]
    assert [r["kind"] for r in rows] == ["frame"] * 3 + ["video_mean", "image"]
    assert [r["status"] for r in rows] == ["ok"] * 4 + ["failed"] and "c_broken.jpg" in rows[-1]["error"]
    writer = media.RowWriter(
        ["source", "kind", "status", "top1"], str(tmp_path / "r.csv"), str(tmp_path / "r.json"), {"sampling": "every5"}
    )
    writer.write(rows)
    writer.close()
    with open(tmp_path / "r.csv", newline="") as f:
        assert [r["status"] for r in csv.DictReader(f)] == ["ok"] * 4 + ["failed"]
    assert '"sampling": "every5"' in (tmp_path / "r.json").read_text()


def test_activation_rows_npy_sidecar_and_npz(emonet, files, tmp_path):
    inputs = media.collect_inputs([str(files[k]) for k in ("photo", "clip", "broken")])
    events = []
    items = media.iter_preprocessed(emonet, inputs, "every5", 4)
    result = media.collect_activations(emonet, items, "fc8", 2, on_event=events.append)
    assert len(events) == 1 and "c_broken.jpg" in events[0].error
    acts, rows, sidecar = media.save_activations(
        str(tmp_path / "fc8.npy"), result, layer="fc8", class_names=emonet.class_names, damaged_policy="skip"
    )
    assert acts.shape == (4, 20) and acts.dtype == np.float32
    assert [r.frame_index for r in rows] == [-1, 0, 5, 10]
    np.testing.assert_allclose(
        np.load(tmp_path / "fc8.npy")[0], emonet.predict_images([files["photo"]])[0].logits, atol=1e-4
    )
    assert sidecar == str(tmp_path / "fc8.rows.csv") == media.rows_sidecar_path(str(tmp_path / "fc8.npy"))
    with open(sidecar, newline="") as f:
        assert [r["status"] for r in csv.DictReader(f)] == ["ok"] * 4 + ["failed"]
    media.save_activations(
        str(tmp_path / "fc8.npz"), result, layer="fc8", class_names=emonet.class_names, damaged_policy="skip"
    )
    with np.load(tmp_path / "fc8.npz") as z:
        assert list(z["frame_index"]) == [-1, 0, 5, 10] and list(z["failed_sources"]) == [str(files["broken"])]
    with pytest.raises(ValueError, match="must end in .npy or .npz"):
        media.save_activations(
            str(tmp_path / "x.txt"), result, layer="fc8", class_names=emonet.class_names, damaged_policy="skip"
        )
    with pytest.raises(ValueError, match="no row"):
        media.ActivationRows().kept_rows()


def test_evaluate_folder_and_label_map(emonet, files, tmp_path):
    assert evaluation.label_map(["sexual_desire", "Awe", "Nostalgia"], emonet.class_names) == [18, 4, -1]
    root = tmp_path / "labelled"
    for label, keys in (("Awe", ["photo", "clip"]), ("Empathetic Pain", ["face", "broken"]), ("Nostalgia", ["photo"])):
        (root / label).mkdir(parents=True)
        for key in keys:
            (root / label / files[key].name).write_bytes(files[key].read_bytes())
    notes, bar = [], Bar(None)
    data = evaluation.evaluate_folder(emonet, str(root), progress=bar, log=notes.append)
    assert data.probabilities.shape == (5, 20) and list(data.labels) == [4, 4, 4, 4, 9]
    assert data.video_ids[1:4] == [str(root / "Awe" / files["clip"].name)] * 3
    assert [f["source"] for f in data.inputs["failed"]] == [str(root / "Empathetic Pain" / files["broken"].name)]
    assert any("'Nostalgia' is not one of the model's categories" in n for n in notes)
    assert bar.n == 1 + 12 + 2
    with pytest.raises(evaluation.EvaluationInputError, match="not a folder"):
        evaluation.evaluate_folder(emonet, str(tmp_path / "missing"))
    (tmp_path / "empty" / "Awe").mkdir(parents=True)
    with pytest.raises(evaluation.EvaluationInputError, match="no image or video files"):
        evaluation.evaluate_folder(emonet, str(tmp_path / "empty"))
    (tmp_path / "bad" / "Awe").mkdir(parents=True)
    (tmp_path / "bad" / "Awe" / "x.jpg").write_bytes(b"nothing")
    with pytest.raises(evaluation.EvaluationInputError, match="none of the 1 files could be read"):
        evaluation.evaluate_folder(emonet, str(tmp_path / "bad"))


def test_fit_readouts_from_files(emonet, photos, files, tmp_path):
    rng = np.random.default_rng(0)
    names = []
    for i in range(8):
        crop = photos["hopper"][rng.integers(0, 200) :, rng.integers(0, 200) :]
        names.append(f"img{i}.png")
        cv2.imwrite(str(tmp_path / names[-1]), cv2.cvtColor(np.ascontiguousarray(crop), cv2.COLOR_RGB2BGR))
    paths = affect.rated_paths(names + [str(files["broken"])], str(tmp_path / "ratings.csv"))
    assert paths[0] == str(tmp_path / "img0.png") and paths[-1] == str(files["broken"])
    valence = rng.uniform(1, 9, 9)
    arousal = valence.copy()
    arousal[0] = np.nan
    notes = []
    fit = affect.fit_readouts_from_files(
        emonet, paths, {"valence": valence, "arousal": arousal}, folds=4, log=notes.append
    )
    assert set(fit.readouts) == {"valence", "arousal"} and fit.used == 8 and fit.left_out == [str(files["broken"])]
    assert fit.readouts["valence"].cv["n"] == 8 and fit.readouts["arousal"].cv["n"] == 7
    assert any("c_broken.jpg" in n for n in notes) and any("without a arousal rating" in n for n in notes)
    logits = np.stack([p.logits for p in emonet.predict_images(paths[:8])])
    assert np.all(np.isfinite(fit.readouts["valence"].predict(logits)))
    with pytest.raises(affect.NotEnoughRatingsError, match="need at least 4"):
        affect.fit_readouts_from_files(emonet, paths[:3], {"valence": valence[:3]})


def _mini_dump(folder: pathlib.Path) -> pathlib.Path:
    """conv1 of the right shape (11 lines x 3168 values), every other file present but tiny."""
    folder.mkdir()
    rng = np.random.default_rng(0)
    np.savetxt(folder / "conv1.weights.txt", rng.normal(size=(11, 11 * 3 * 96)), delimiter=",", fmt="%.4f")
    np.savetxt(folder / "conv1.bias.txt", rng.normal(size=(1, 96)), delimiter=",", fmt="%.4f")
    for stem in [f"conv{i}.{k}.txt" for i in range(2, 6) for k in ("weights", "bias")] + [
        f"fc{i}.{k}.txt" for i in range(1, 4) for k in ("weights", "bias")
    ]:
        (folder / stem).write_text("1,2,3\n")
    return folder


def test_matlab_text_reader_reports_values_read(tmp_path):
    dump = _mini_dump(tmp_path / "dump")
    assert matlab_text.expected_values(str(dump)) == 56_950_164  # EmoNet's parameters (no img_mean.txt here)
    bar = Bar(matlab_text.expected_values(str(dump)))
    with matlab_text.report_progress(bar), pytest.raises(Exception, match="conv2"):
        matlab_text.read_matlab_text(str(dump))
    assert bar.n == 11 * 3168 + 96 + 3  # conv1 and its bias, then the 3 values of the refused conv2 file
    assert len(bar.updates) == 11 + 1 + 1  # one update per line
    before = bar.n
    matlab_text.read_matrix(str(dump / "conv1.bias.txt"), 1, 96)  # outside report_progress: nothing reported
    assert bar.n == before
    with matlab_text.report_progress(bar):
        matlab_text._correct_total(25)
    assert bar.total == 56_950_164 + 5 * 4097
