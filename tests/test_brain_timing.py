"""emonet_tf.brain.timing: stimulus to scan time against by-hand computations and nilearn's own regressors."""

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("nilearn")

from nilearn.glm.first_level import compute_regressor, glover_hrf, spm_hrf  # noqa: E402

from emonet_tf.brain import timing  # noqa: E402

TR = 2.0
OS = 50  # fine-grid steps per TR: dt = 0.04 s
N_SCANS = 12
N_FRAMES = 18  # 3 frames per TR for the first 6 TRs, then nothing on screen


def _design(seed=0, n_features=3):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(N_FRAMES, n_features))
    t = np.arange(N_FRAMES) * (TR / 3)  # 0, 0.667, 1.333, 2.0, ...
    return x, t


def _by_hand_mean(x):
    out = np.zeros((N_SCANS, x.shape[1]))
    for k in range(N_SCANS):
        rows = [j for j in range(N_FRAMES) if k * 3 <= j < k * 3 + 3]
        if rows:
            out[k] = sum(x[j] for j in rows) / len(rows)
    return out


def _by_hand_interpolate(x):
    # Scan k's reference time is the middle of its TR, (k + 0.5) * 2 s = 2k + 1 s, which lies halfway
    # between frames 3k + 1 (at 2k + 2/3 s) and 3k + 2 (at 2k + 4/3 s). After the last frame (shown until
    # 12 s) nothing is on screen: 0.
    out = np.zeros((N_SCANS, x.shape[1]))
    for k in range(N_SCANS):
        if 3 * k + 2 < N_FRAMES:
            out[k] = 0.5 * x[3 * k + 1] + 0.5 * x[3 * k + 2]
    return out


def _convolve_fine(u, hrf):
    return np.stack([np.convolve(u[:, f], hrf)[: u.shape[0]] for f in range(u.shape[1])], axis=1)


def _by_hand_resample_then_convolve(tr_values, hrf):
    n_fine = N_SCANS * OS + 1
    u = np.zeros((n_fine, tr_values.shape[1]))
    for i in range(N_SCANS * OS):
        u[i] = tr_values[i // OS]  # each TR value held over its TR
    conv = _convolve_fine(u, hrf)
    return np.stack([conv[k * OS + OS // 2] for k in range(N_SCANS)])  # sampled mid-TR


def _by_hand_convolve_then_resample(x, hrf, method, fill=0.0):
    n_fine = N_SCANS * OS + 1
    u = np.full((n_fine, x.shape[1]), fill)  # nothing on screen: fill
    for i in range(n_fine):
        j = int(np.floor(i * (TR / OS) / (TR / 3) + 1e-9))  # the frame on screen at t = i * dt
        if j < N_FRAMES:
            u[i] = x[j]
    conv = _convolve_fine(u, hrf)
    if method == "mean":
        return np.stack([conv[k * OS : (k + 1) * OS].mean(axis=0) for k in range(N_SCANS)])
    return np.stack([conv[k * OS + OS // 2] for k in range(N_SCANS)])


def test_import_does_not_load_tensorflow():
    code = "import sys, emonet_tf.brain.timing; assert 'tensorflow' not in sys.modules, 'TF imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("method", ["mean", "interpolate"])
def test_frames_to_tr_grid_matches_by_hand(method):
    x, t = _design()
    got = timing.frames_to_tr_grid(x, t, N_SCANS, TR, method)
    expected = _by_hand_mean(x) if method == "mean" else _by_hand_interpolate(x)
    assert got.shape == (N_SCANS, 3)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)
    assert np.all(got[6:] == 0)  # no frames: fill


def test_frames_to_tr_grid_fill_and_1d():
    x, t = _design(n_features=1)
    got = timing.frames_to_tr_grid(x[:, 0], t, N_SCANS, TR, fill=-7.0)
    assert got.shape == (N_SCANS, 1)
    assert np.all(got[6:] == -7.0) and np.all(got[:6] != -7.0)


@pytest.mark.parametrize("method", ["mean", "interpolate"])
@pytest.mark.parametrize("hrf_model", ["spm", "glover"])
def test_both_orders_equal_their_by_hand_versions_and_differ(method, hrf_model):
    x, t = _design(seed=1)
    hrf = (spm_hrf if hrf_model == "spm" else glover_hrf)(TR, oversampling=OS)
    rtc = timing.stimulus_regressors(
        x, t, N_SCANS, TR, order="resample_then_convolve", method=method, hrf_model=hrf_model, oversampling=OS
    )
    ctr = timing.stimulus_regressors(
        x, t, N_SCANS, TR, order="convolve_then_resample", method=method, hrf_model=hrf_model, oversampling=OS
    )
    tr_values = _by_hand_mean(x) if method == "mean" else _by_hand_interpolate(x)
    np.testing.assert_allclose(rtc, _by_hand_resample_then_convolve(tr_values, hrf), rtol=0, atol=1e-10)
    np.testing.assert_allclose(ctr, _by_hand_convolve_then_resample(x, hrf, method), rtol=0, atol=1e-10)
    # The orders are different regressors (not rounding): measured max |difference| / max |regressor|
    # is 0.18 (mean) and 0.53-0.57 (interpolate) on this design.
    rel = np.abs(rtc - ctr).max() / np.abs(rtc).max()
    assert rel > 0.03, rel


@pytest.mark.parametrize("method", ["mean", "interpolate"])
def test_fill_outside_the_frames_is_convolved_too(method):
    # e.g. fixation filled with the run's mean activation (looming-fmri-naturalistic's choice)
    x, t = _design(seed=5)
    fill = float(x.mean())
    hrf = spm_hrf(TR, oversampling=OS)
    got = timing.stimulus_regressors(x, t, N_SCANS, TR, order="convolve_then_resample", method=method, fill=fill)
    np.testing.assert_allclose(got, _by_hand_convolve_then_resample(x, hrf, method, fill), rtol=0, atol=1e-10)
    rtc = timing.stimulus_regressors(x, t, N_SCANS, TR, method=method, fill=fill)
    tr_values = _by_hand_mean(x) if method == "mean" else _by_hand_interpolate(x)
    tr_values[6:] = fill
    np.testing.assert_allclose(rtc, _by_hand_resample_then_convolve(tr_values, hrf), rtol=0, atol=1e-10)


def test_convolve_hrf_is_nilearn_compute_regressor_of_tr_boxcars():
    rng = np.random.default_rng(2)
    v = rng.normal(size=N_SCANS)
    frame_times = (np.arange(N_SCANS) + 0.5) * TR
    np.testing.assert_array_equal(timing.scan_times(N_SCANS, TR), frame_times)
    ours = timing.convolve_hrf(v, TR, "spm", oversampling=OS)[:, 0]
    theirs, _ = compute_regressor(
        np.vstack([np.arange(N_SCANS) * TR, np.full(N_SCANS, TR), v]), "spm", frame_times, oversampling=OS
    )
    # nilearn's fine grid starts 24 s before the first scan and is stretched by a fraction of a sample,
    # so the boxcar edges land up to one fine sample (0.04 s) apart: measured max |diff| 0.0040 for a
    # regressor peaking at 0.96 (0.42 %); a shift by a TR or half a TR would be tens of percent.
    np.testing.assert_allclose(ours, theirs[:, 0], rtol=0, atol=0.01 * np.abs(theirs).max())
    assert np.corrcoef(ours, theirs[:, 0])[0, 1] > 0.9999


def test_constant_input_settles_at_its_value():
    ones = np.ones((40, 1))
    for model in ("spm", "glover"):
        reg = timing.convolve_hrf(ones, 1.0, model)
        assert abs(reg[-1, 0] - 1.0) < 1e-3  # the HRF sums to 1 and has died down by 32 s


def test_fir_delays_shift_by_exactly_k_trs():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(10, 2))
    out = timing.fir_delays(x, [0, 1, 3, -2])
    assert out.shape == (10, 8)
    np.testing.assert_array_equal(out[:, 0:2], x)
    np.testing.assert_array_equal(out[1:, 2:4], x[:-1])
    np.testing.assert_array_equal(out[0, 2:4], 0)
    np.testing.assert_array_equal(out[3:, 4:6], x[:-3])
    np.testing.assert_array_equal(out[:3, 4:6], 0)
    np.testing.assert_array_equal(out[:-2, 6:8], x[2:])
    np.testing.assert_array_equal(out[-2:, 6:8], 0)
    impulse = np.zeros(10)
    impulse[2] = 1
    fir = timing.fir_delays(impulse, [1, 2, 3, 4])
    assert [int(np.argmax(fir[:, i])) for i in range(4)] == [3, 4, 5, 6]
    assert timing.fir_delays(x, [20]).sum() == 0  # a delay longer than the run: all zeros


def _jittered_image_events(seed=4, n_images=6):
    rng = np.random.default_rng(seed)
    onsets = np.cumsum(4.0 + rng.uniform(2.0, 6.0, size=n_images))  # 4-s images, jittered ITI
    names = [f"images/img_{i:03d}.jpg" for i in range(n_images)]
    order = rng.permutation(n_images)
    events = pd.DataFrame(
        {
            "onset": np.round(onsets, 3),
            "duration": 4.0,
            "trial_type": "image",
            "stim_file": [names[i] for i in order],
        }
    )
    feats = {n: rng.normal(size=5) for n in names}
    return events, feats


@pytest.mark.parametrize("hrf_model", ["spm", "glover"])
def test_events_design_equals_nilearn_compute_regressor(tmp_path, hrf_model):
    events, feats = _jittered_image_events()
    path = tmp_path / "sub-01_task-images_run-1_events.tsv"
    events.to_csv(path, sep="\t", index=False)
    n_scans = 40
    ours = timing.events_regressors(path, feats, n_scans, TR, hrf_model=hrf_model, oversampling=OS)
    assert ours.shape == (n_scans, 5)
    frame_times = (np.arange(n_scans) + 0.5) * TR
    amps = np.stack([feats[s] for s in events["stim_file"]])
    for f in range(5):
        cond = np.vstack([events["onset"].to_numpy(), events["duration"].to_numpy(), amps[:, f]])
        theirs, _ = compute_regressor(cond, hrf_model, frame_times, oversampling=OS)
        # Same boxcars and HRF; the grids differ by up to one 0.04-s sample at the edges (measured max
        # |diff| 0.20-0.42 % of the regressor's peak, r > 0.99999).
        np.testing.assert_allclose(ours[:, f], theirs[:, 0], rtol=0, atol=0.01 * np.abs(theirs).max())
        assert np.corrcoef(ours[:, f], theirs[:, 0])[0, 1] > 0.9999
    # A DataFrame gives the same as the file, and trial_type is used when there is no stim_file.
    np.testing.assert_array_equal(ours, timing.events_regressors(events, feats, n_scans, TR, hrf_model=hrf_model))
    by_type = events.drop(columns="trial_type").rename(columns={"stim_file": "trial_type"})
    np.testing.assert_array_equal(ours, timing.events_regressors(by_type, feats, n_scans, TR, hrf_model=hrf_model))


def test_events_without_hrf_are_the_boxcars():
    events = pd.DataFrame({"onset": [2.0, 10.0], "duration": [4.0, 4.0], "stim_file": ["a", "b"]})
    reg = timing.events_regressors(events, {"a": [1.0], "b": [3.0]}, 10, TR, hrf_model=None)[:, 0]
    # scan reference times 1, 3, 5, ...: a is on at 3 and 5 s, b at 11 and 13 s
    np.testing.assert_array_equal(reg, [0, 1, 1, 0, 0, 3, 3, 0, 0, 0])


def test_film_frame_rate_correction_and_run_offset_place_a_frame_at_the_right_tr():
    pal_fps, film_fps = 25.0, 24000 / 1001
    c = timing.fps_correction(pal_fps, film_fps)
    assert c == pytest.approx(25 / 23.976, abs=1e-4) and round(c, 4) == 1.0427
    # Features from the PAL file (frame n at n / 25 s), the film shown at 23.976 fps after an 8-s lead-in.
    file_times = np.arange(3000) / pal_fps
    flash = np.zeros((3000, 1))
    flash[2500] = 1.0  # a single frame at file time 100 s
    shown = timing.film_times(file_times, fps_correction=c, run_offset_s=8.0)
    assert shown[2500] == pytest.approx(100 * 25 * 1001 / 24000 + 8)  # 112.27 s
    tr_series = timing.frames_to_tr_grid(flash, shown, 70, TR)
    assert int(np.flatnonzero(tr_series[:, 0])[0]) == 56  # 112.27 s / 2 s
    uncorrected = timing.frames_to_tr_grid(flash, timing.film_times(file_times, run_offset_s=8.0), 70, TR)
    assert int(np.flatnonzero(uncorrected[:, 0])[0]) == 54  # 108 s: two TRs early without the correction
    # The second run of the film starts at file time 60 s, after 8 s of fixation.
    run2 = timing.film_times(file_times, fps_correction=c, run_offset_s=8.0 - 60 * c)
    assert run2[1500] == pytest.approx(8.0)  # file time 60 s is shown at run time 8 s
    flash2 = np.zeros((3000, 1))
    flash2[1750] = 1.0  # file time 70 s -> 10 * c + 8 = 18.43 s
    keep = run2 >= 0
    assert int(np.flatnonzero(timing.frames_to_tr_grid(flash2[keep], run2[keep], 30, TR)[:, 0])[0]) == 9


def test_frame_before_the_run_contributes_to_convolution_only():
    # A flash 4 s before the first scan is outside every TR (mean), but its HRF reaches into the run.
    x = np.array([[1.0], [0.0]])
    t = np.array([-4.0, -3.0])
    assert np.all(timing.frames_to_tr_grid(x, t, 10, TR) == 0)
    reg = timing.stimulus_regressors(x, t, 10, TR, order="convolve_then_resample")
    assert reg[:, 0].max() > 0.05 and np.argmax(reg[:, 0]) == 0  # HRF peak at 1-2 s after the run starts


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: timing.frames_to_tr_grid(np.zeros((3, 2)), [0.0, 1.0, 1.0], 5, TR), "strictly increasing"),
        (lambda: timing.frames_to_tr_grid(np.zeros((3, 2)), [0.0, 2.0, 1.0], 5, TR), "times_s must be strictly"),
        (lambda: timing.frames_to_tr_grid(np.zeros((3, 2)), [0.0, 1.0], 5, TR), "times_s has 2 times but features"),
        (lambda: timing.frames_to_tr_grid(np.zeros((3, 2)), [0, 1, 2], 5, -2.0), "tr_s must be a positive"),
        (lambda: timing.frames_to_tr_grid(np.zeros((3, 2)), [0, 1, 2], 5, 0), "tr_s must be a positive"),
        (lambda: timing.frames_to_tr_grid(np.zeros((3, 2)), [0, 1, 2], 0, TR), "n_scans must be a positive"),
        (lambda: timing.frames_to_tr_grid(np.zeros((3, 2)), [0, 1, 2], 5, TR, "median"), "method must be"),
        (lambda: timing.frames_to_tr_grid(np.full((3, 2), np.nan), [0, 1, 2], 5, TR), "features contains NaN"),
        (lambda: timing.frames_to_tr_grid(np.zeros((3, 2, 2)), [0, 1, 2], 5, TR), "features must be 2-D"),
        (lambda: timing.stimulus_regressors(np.zeros((3, 1)), [0, 1, 2], 5, TR, order="both"), "order must be"),
        (lambda: timing.convolve_hrf(np.zeros((3, 1)), TR, "canonical"), "hrf_model must be"),
        (lambda: timing.fir_delays(np.zeros((3, 1)), [1.5]), "delays must be whole numbers"),
        (lambda: timing.fir_delays(np.zeros((3, 1)), []), "at least one delay"),
        (lambda: timing.film_times([0.0, 0.04, 0.02]), "frame_times_s must be strictly increasing"),
        (lambda: timing.film_times([0.0, 0.04], fps_correction=-1), "fps_correction must be a positive"),
        (lambda: timing.fps_correction(25, 0), "presented_fps must be a positive"),
        (lambda: timing.frames_to_tr_grid(np.zeros((3, 1)), [0, 1, 2], 5, TR, fill=np.nan), "fill must be finite"),
        (lambda: timing.scan_times(5, TR, slice_time_ref=1.5), "slice_time_ref must be between 0 and 1"),
    ],
)
def test_bad_inputs_raise_value_error_naming_the_problem(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_bad_events_raise_value_error_naming_the_problem(tmp_path):
    feats = {"a.jpg": [1.0, 2.0], "b.jpg": [0.0, 1.0]}
    ok = pd.DataFrame({"onset": [0.0, 6.0], "duration": [4.0, 4.0], "stim_file": ["a.jpg", "b.jpg"]})
    timing.events_regressors(ok, feats, 10, TR)  # the baseline is fine
    path = tmp_path / "events.tsv"
    ok.drop(columns="duration").to_csv(path, sep="\t", index=False)
    with pytest.raises(ValueError, match=r"events file .*events.tsv.* lacks the column\(s\) \['duration'\]"):
        timing.events_regressors(path, feats, 10, TR)
    with pytest.raises(ValueError, match=r"lacks the column\(s\) \['onset', 'trial_type'\]"):
        timing.events_regressors(pd.DataFrame({"duration": [4.0]}), feats, 10, TR)
    with pytest.raises(ValueError, match=r"1 stimulus\(es\) in events have no entry in features_by_stimulus: 'c.jpg'"):
        timing.events_regressors(ok.assign(stim_file=["a.jpg", "c.jpg"]), feats, 10, TR)
    with pytest.raises(ValueError, match="column 'onset' has a missing or non-numeric value in row 1"):
        timing.events_regressors(ok.assign(onset=[0.0, "n/a"]), feats, 10, TR)
    with pytest.raises(ValueError, match="column 'duration' has a negative value"):
        timing.events_regressors(ok.assign(duration=[4.0, -1.0]), feats, 10, TR)
    with pytest.raises(ValueError, match="different lengths"):
        timing.events_regressors(ok, {"a.jpg": [1.0, 2.0], "b.jpg": [0.0]}, 10, TR)
    path.write_text("onset\tduration\tstim_file\n0\t4\tn/a\n")
    with pytest.raises(ValueError, match="column 'stim_file' is empty"):
        timing.events_regressors(path, feats, 10, TR)
    with pytest.raises(ValueError, match="events must be a path"):
        timing.events_regressors([(0, 4, "a.jpg")], feats, 10, TR)
