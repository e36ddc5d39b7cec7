"""Stimulus to scan time: features of frames or images on the fMRI repetition-time (TR) grid.

Conventions (the same in every function here):

* Times are in seconds from the first scan of the run. Scan ``k`` (0-based) is acquired during the
  interval ``[k * tr_s, (k + 1) * tr_s)``; its reference time (the time a regressor is sampled at)
  is ``(k + slice_time_ref) * tr_s``, with nilearn's name and meaning of ``slice_time_ref``. The
  default 0.5 is the middle of the TR (fMRIPrep's slice-timing correction references the middle slice
  by default); use 0.0 for data without slice-timing correction or referenced to the first slice
  (nilearn's default). ``scan_times`` gives these times.
* A frame shown at time ``t_j`` stays on screen until the next frame ``t_{j+1}``; the last frame
  stays ``frame_duration_s`` (default: the median frame interval). Time outside every frame or
  event holds ``fill`` (default 0).
* The HRF is nilearn's canonical SPM or Glover HRF (``nilearn.glm.first_level.spm_hrf`` /
  ``glover_hrf``), sampled on a fine grid of ``tr_s / oversampling`` seconds and normalised by
  nilearn to sum 1, so a constant input of 1 gives a regressor of 1 once the response has settled.
  Convolution happens on that grid, as in ``nilearn.glm.first_level.compute_regressor``: an event of
  amplitude ``a`` from ``onset`` to ``onset + duration`` is a boxcar on the fine grid (samples with
  ``onset <= t < onset + duration``; at least one sample).

The two orders of resampling and convolution (``stimulus_regressors(order=...)``) are different
regressors, not rounding variants: ``"resample_then_convolve"`` first reduces the frames to one value
per TR (``frames_to_tr_grid``) and convolves that TR series (each value a boxcar of one TR,
``convolve_hrf``); ``"convolve_then_resample"`` convolves the frame time course itself on the fine
grid and then reduces the convolved signal to the TR grid by the same ``method``. Public analysis
scripts have used both (see docs/brain.md); here the choice is a named argument.

Only numpy, scipy, nilearn and pandas (for events.tsv) are imported (no TensorFlow). Every bad input raises ``ValueError``
naming the argument and the problem.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence

import numpy as np

__all__ = [
    "ORDERS",
    "METHODS",
    "HRF_MODELS",
    "hrf_kernel",
    "scan_times",
    "frames_to_tr_grid",
    "convolve_hrf",
    "fir_delays",
    "stimulus_regressors",
    "read_events",
    "events_regressors",
    "fps_correction",
    "film_times",
]

ORDERS = ("resample_then_convolve", "convolve_then_resample")
METHODS = ("mean", "interpolate")
HRF_MODELS = ("spm", "glover", None)

# Index arithmetic on the fine grid tolerates this fraction of a grid step of floating-point error, so
# that an onset of exactly k * tr_s lands on the grid sample k * oversampling.
_GRID_TOL = 1e-6


# ----------------------------------------------------------------------------------------- checks
def _check_tr(tr_s) -> float:
    try:
        tr = float(tr_s)
    except (TypeError, ValueError):
        raise ValueError(f"tr_s must be a number of seconds, got {tr_s!r}") from None
    if not math.isfinite(tr) or tr <= 0:
        raise ValueError(f"tr_s must be a positive, finite number of seconds, got {tr_s!r}")
    return tr


def _check_n_scans(n_scans) -> int:
    if isinstance(n_scans, bool) or not isinstance(n_scans, (int, np.integer)) or n_scans < 1:
        raise ValueError(f"n_scans must be a positive integer, got {n_scans!r}")
    return int(n_scans)


def _check_oversampling(oversampling) -> int:
    if isinstance(oversampling, bool) or not isinstance(oversampling, (int, np.integer)) or oversampling < 1:
        raise ValueError(f"oversampling must be a positive integer, got {oversampling!r}")
    return int(oversampling)


def _check_slice_time_ref(slice_time_ref) -> float:
    try:
        ref = float(slice_time_ref)
    except (TypeError, ValueError):
        raise ValueError(f"slice_time_ref must be a fraction of the TR, got {slice_time_ref!r}") from None
    if not 0.0 <= ref <= 1.0:
        raise ValueError(f"slice_time_ref must be between 0 and 1 (a fraction of the TR), got {slice_time_ref!r}")
    return ref


def _check_features(features, name="features") -> np.ndarray:
    x = np.asarray(features, dtype=np.float64)
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2:
        raise ValueError(f"{name} must be 2-D [n, n_features] (or 1-D [n]), got shape {np.shape(features)}")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return x


def _check_times(times_s, n: int, name="times_s") -> np.ndarray:
    t = np.asarray(times_s, dtype=np.float64)
    if t.ndim != 1:
        raise ValueError(f"{name} must be 1-D (one time in seconds per frame), got shape {t.shape}")
    if t.size != n:
        raise ValueError(f"{name} has {t.size} times but features has {n} rows (one time per frame is needed)")
    if n == 0:
        raise ValueError(f"{name} is empty: at least one frame is needed")
    if not np.all(np.isfinite(t)):
        raise ValueError(f"{name} contains NaN or infinite values")
    if n > 1 and not np.all(np.diff(t) > 0):
        bad = int(np.flatnonzero(np.diff(t) <= 0)[0])
        raise ValueError(
            f"{name} must be strictly increasing (presentation order); "
            f"time {bad + 1} ({float(t[bad + 1]):g} s) is not after time {bad} ({float(t[bad]):g} s)"
        )
    return t


def _check_fill(fill) -> float:
    try:
        value = float(fill)
    except (TypeError, ValueError):
        raise ValueError(f"fill must be a number, got {fill!r}") from None
    if not math.isfinite(value):
        raise ValueError(f"fill must be finite, got {fill!r}")
    return value


def _check_choice(value, choices, name):
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices!r}, got {value!r}")
    return value


def _frame_ends(t: np.ndarray, frame_duration_s) -> np.ndarray:
    """End of each frame's display: the next frame's time; the last frame lasts frame_duration_s."""
    if frame_duration_s is None:
        if t.size < 2:
            raise ValueError("frame_duration_s is required when there is a single frame")
        last = float(np.median(np.diff(t)))
    else:
        last = float(frame_duration_s)
        if not math.isfinite(last) or last <= 0:
            raise ValueError(f"frame_duration_s must be a positive number of seconds, got {frame_duration_s!r}")
    return np.append(t[1:], t[-1] + last)


# ------------------------------------------------------------------------------------ fine grid
def hrf_kernel(hrf_model, tr_s, oversampling=50) -> np.ndarray:
    """The HRF sampled every ``tr_s / oversampling`` seconds, float64 [n_taps], summing to 1.

    ``hrf_model``: ``"spm"`` (``nilearn.glm.first_level.spm_hrf``: SPM's canonical double gamma,
    peak 6 s, undershoot 16 s, ratio 1/6, 32 s long), ``"glover"`` (``glover_hrf``, Glover 1999,
    NeuroImage 9:416) or ``None`` (no convolution: a kernel of one tap, 1.0). Raises ValueError for
    another model or a bad ``tr_s`` / ``oversampling``.
    """
    _check_choice(hrf_model, HRF_MODELS, "hrf_model")
    tr = _check_tr(tr_s)
    oversampling = _check_oversampling(oversampling)
    if hrf_model is None:
        return np.ones(1)
    from nilearn.glm.first_level import glover_hrf, spm_hrf

    fn = spm_hrf if hrf_model == "spm" else glover_hrf
    return np.asarray(fn(tr, oversampling=oversampling), dtype=np.float64)


class _Grid:
    """Fine time grid t_i = (i0 + i) * dt, i = 0 .. n-1, covering the run and anything shown before it.

    ``regressors`` is the fine-grid pipeline of nilearn's ``compute_regressor`` (boxcars of the events
    on the grid, ``np.convolve`` with the HRF kernel truncated to the grid, then a reduction to one value
    per scan), written as one sparse matrix M [n_scans, n_events] applied to the amplitudes: the
    convolved boxcar of samples lo <= j < hi is c(i) = H(i - lo) - H(i - hi), with H the cumulative sum
    of the kernel (0 before it starts, its total after it ends), so M holds for each event the reduced
    c of the few scans its response reaches. A 2-hour film of 36,000 frames x 4096 fc7 units never
    builds the [180,000 x 4096] fine signal.
    """

    def __init__(self, n_scans: int, tr: float, oversampling: int, earliest_s: float = 0.0):
        self.tr, self.os, self.n_scans = tr, oversampling, n_scans
        self.dt = tr / oversampling
        self.i0 = min(0, int(math.floor(earliest_s / self.dt + _GRID_TOL)))
        self.n = n_scans * oversampling - self.i0 + 1  # up to and including n_scans * tr

    def index(self, t: np.ndarray) -> np.ndarray:
        """First grid index with t_i >= t (clipped to the grid)."""
        i = np.ceil(np.asarray(t, dtype=np.float64) / self.dt - _GRID_TOL).astype(np.int64) - self.i0
        return np.clip(i, 0, self.n)

    def _matrix(self, lo, hi, kernel, reduce):
        from scipy import sparse

        length = kernel.size
        h_cum = np.cumsum(kernel)
        g_cum = np.cumsum(h_cum)
        total = h_cum[-1]

        def H(q):  # sum of kernel[0..q]
            return np.where(q < 0, 0.0, h_cum[np.clip(q, 0, length - 1)])

        def G(q):  # sum of H(0..q)
            inside = g_cum[np.clip(q, 0, length - 1)]
            return np.where(q < 0, 0.0, np.where(q < length, inside, g_cum[-1] + (q - length + 1) * total))

        end = hi + length - 1  # c(i) = 0 from here on (both H at the total), and before lo
        if reduce == "mean":  # fine samples start_k <= i < start_k + os
            first = np.arange(self.n_scans) * self.os - self.i0
            k_lo = np.searchsorted(first + self.os, lo, side="right")
            k_hi = np.searchsorted(first, end, side="left")
        else:  # linear interpolation between fine samples left_k and right_k
            pos = (np.arange(self.n_scans) + reduce) * self.os - self.i0
            left = np.minimum(np.floor(pos + _GRID_TOL).astype(np.int64), self.n - 1)
            right = np.minimum(left + 1, self.n - 1)
            w = np.clip(pos - left, 0.0, 1.0)
            k_lo = np.searchsorted(right, lo, side="left")
            k_hi = np.searchsorted(left, end, side="left")
        counts = np.maximum(k_hi - k_lo, 0)
        events = np.repeat(np.arange(lo.size), counts)
        offsets = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
        scans = np.repeat(k_lo, counts) + offsets
        lo_e, hi_e = lo[events], hi[events]
        if reduce == "mean":
            a, b = first[scans], first[scans] + self.os
            values = (G(b - 1 - lo_e) - G(a - 1 - lo_e) - G(b - 1 - hi_e) + G(a - 1 - hi_e)) / self.os
        else:
            ll, rr, ww = left[scans], right[scans], w[scans]
            values = (1 - ww) * (H(ll - lo_e) - H(ll - hi_e)) + ww * (H(rr - lo_e) - H(rr - hi_e))
        return sparse.csr_matrix((values, (scans, events)), shape=(self.n_scans, lo.size))

    def regressors(self, onsets, offsets, amplitudes, kernel, reduce, fill=0.0) -> np.ndarray:
        """[n_scans, n_features]: the grid holds ``fill`` plus (amplitude - fill) on the samples
        onset <= t_i < offset of each event (at least one sample, as nilearn), convolved with the kernel
        and reduced per scan: ``reduce="mean"`` averages the samples k * tr <= t_i < (k + 1) * tr; a float
        samples at (k + reduce) * tr by linear interpolation."""
        lo = self.index(onsets)
        hi = np.maximum(self.index(offsets), np.minimum(lo + 1, self.n))
        m = self._matrix(lo, hi, kernel, reduce)
        out = np.asarray(m @ amplitudes, dtype=np.float64)
        if fill:
            whole = self._matrix(np.array([0]), np.array([self.n]), kernel, reduce).toarray()[:, 0]
            out += fill * (whole - np.asarray(m.sum(axis=1)).ravel())[:, None]
        return out


# --------------------------------------------------------------------------------- public API
def scan_times(n_scans, tr_s, slice_time_ref=0.5) -> np.ndarray:
    """Reference time of each scan, ``(arange(n_scans) + slice_time_ref) * tr_s``: float64 [n_scans], seconds.

    The times every regressor here is sampled at; pass them as ``frame_times`` to nilearn
    (``compute_regressor``, ``make_first_level_design_matrix``) for the same convention. Raises
    ValueError for a bad n_scans, tr_s or slice_time_ref.
    """
    n_scans, tr = _check_n_scans(n_scans), _check_tr(tr_s)
    return (np.arange(n_scans) + _check_slice_time_ref(slice_time_ref)) * tr


def frames_to_tr_grid(
    features,
    times_s,
    n_scans,
    tr_s,
    method="mean",
    *,
    slice_time_ref=0.5,
    fill=0.0,
    frame_duration_s=None,
) -> np.ndarray:
    """Per-frame features onto the TR grid, without any HRF.

    Args:
      features: float [n_frames, n_features] (or [n_frames]): one row per frame, any layer.
      times_s: float [n_frames], presentation time of each frame in seconds from the run's first scan
        (the video reader's timestamps, after ``film_times``), strictly increasing.
      n_scans: number of scans (TRs) in the run.
      tr_s: repetition time in seconds.
      method: ``"mean"``: the mean of the frames whose time falls in ``[k * tr_s, (k + 1) * tr_s)``
        (every frame counts once, as MATLAB's ``resample(features, nTR, nFrames)`` pipelines intend);
        ``"interpolate"``: linear interpolation between frame times at the scan's reference time
        ``(k + slice_time_ref) * tr_s`` (the last frame is held for ``frame_duration_s``).
      slice_time_ref: fraction of the TR of the scan's reference time (``"interpolate"`` only).
      fill: value of a TR without frames (``"mean"``) or outside the frames' display (``"interpolate"``).
      frame_duration_s: how long the last frame stays on screen (default: median frame interval).

    Returns:
      float64 [n_scans, n_features].

    Raises:
      ValueError: features not 2-D or not finite, times not 1-D, of another length, not finite or not
        strictly increasing; n_scans, tr_s, method or slice_time_ref invalid.
    """
    x = _check_features(features)
    t = _check_times(times_s, x.shape[0])
    n_scans, tr = _check_n_scans(n_scans), _check_tr(tr_s)
    _check_choice(method, METHODS, "method")
    ref = _check_slice_time_ref(slice_time_ref)
    ends = _frame_ends(t, frame_duration_s)
    out = np.full((n_scans, x.shape[1]), _check_fill(fill))
    if method == "mean":
        k = np.floor(t / tr + _GRID_TOL).astype(np.int64)
        keep = (k >= 0) & (k < n_scans)
        from scipy import sparse

        counts = np.bincount(k[keep], minlength=n_scans)
        rows = k[keep]
        averaging = sparse.csr_matrix((1.0 / counts[rows], (rows, np.flatnonzero(keep))), shape=(n_scans, t.size))
        has = counts > 0
        out[has] = np.asarray(averaging @ x)[has]
        return out
    s = (np.arange(n_scans) + ref) * tr
    inside = (s >= t[0]) & (s < ends[-1])
    si = s[inside]
    j = np.clip(np.searchsorted(t, si, side="right") - 1, 0, t.size - 1)
    nxt = np.minimum(j + 1, t.size - 1)
    span = np.where(nxt > j, t[nxt] - t[j], 1.0)
    w = np.where(nxt > j, np.clip((si - t[j]) / span, 0.0, 1.0), 0.0)[:, None]
    out[inside] = (1 - w) * x[j] + w * x[nxt]
    return out


def convolve_hrf(x, tr_s, hrf_model="spm", *, oversampling=50, slice_time_ref=0.5) -> np.ndarray:
    """Convolve a TR-grid series with the canonical HRF.

    Each value ``x[k]`` is a boxcar of amplitude ``x[k]`` over scan k's interval ``[k * tr_s,
    (k + 1) * tr_s)``; the boxcars are convolved with ``hrf_kernel(hrf_model, tr_s, oversampling)``
    on the fine grid and sampled at the scan reference times ``(k + slice_time_ref) * tr_s``. This is
    ``nilearn.glm.first_level.compute_regressor`` for the events ``(k * tr_s, tr_s, x[k])`` with
    ``frame_times = (arange(n_scans) + slice_time_ref) * tr_s``, for all columns at once.

    Args:
      x: float [n_scans, n_features] (or [n_scans]).
      tr_s: repetition time in seconds.
      hrf_model: ``"spm"``, ``"glover"`` or ``None`` (no convolution).
      oversampling: fine-grid steps per TR.
      slice_time_ref: fraction of the TR at which each scan is sampled.

    Returns:
      float64 [n_scans, n_features].

    Raises:
      ValueError: x not 2-D / not finite; bad tr_s, hrf_model, oversampling or slice_time_ref.
    """
    x = _check_features(x, "x")
    tr = _check_tr(tr_s)
    kernel = hrf_kernel(hrf_model, tr, oversampling)
    ref = _check_slice_time_ref(slice_time_ref)
    n = x.shape[0]
    grid = _Grid(n, tr, int(oversampling))
    onsets = np.arange(n) * tr
    return grid.regressors(onsets, onsets + tr, x, kernel, ref)


def fir_delays(x, delays=(1, 2, 3, 4)) -> np.ndarray:
    """Finite impulse response (FIR) design: copies of ``x`` delayed by whole TRs, side by side.

    Column block ``i`` is ``x`` shifted down by ``delays[i]`` scans (``out[t] = x[t - d]``, zeros
    where ``t - d`` is outside the run; a negative delay shifts up). The layout is that of
    voxelwise_tutorials' ``Delayer`` (Huth/Gallant lab): ``[x(t-d0), x(t-d1), ...]``, so a ridge
    weight per feature and delay replaces the canonical HRF.

    Args:
      x: float [n_scans, n_features] (or [n_scans]).
      delays: sequence of integers, delays in TRs.

    Returns:
      float64 [n_scans, n_features * len(delays)].

    Raises:
      ValueError: x not 2-D / not finite; delays empty or not integers.
    """
    x = _check_features(x, "x")
    if isinstance(delays, (int, np.integer)):
        delays = [delays]
    delays = list(delays)
    if not delays:
        raise ValueError("delays must contain at least one delay (in TRs)")
    for d in delays:
        if isinstance(d, bool) or not isinstance(d, (int, np.integer)):
            raise ValueError(f"delays must be whole numbers of TRs, got {d!r}")
    n = x.shape[0]
    blocks = []
    for d in delays:
        shifted = np.zeros_like(x)
        if d >= 0:
            if d < n:
                shifted[d:] = x[: n - d]
        elif -d < n:
            shifted[: n + d] = x[-d:]
        blocks.append(shifted)
    return np.concatenate(blocks, axis=1)


def stimulus_regressors(
    features,
    times_s,
    n_scans,
    tr_s,
    *,
    order="resample_then_convolve",
    method="mean",
    hrf_model="spm",
    oversampling=50,
    slice_time_ref=0.5,
    fill=0.0,
    frame_duration_s=None,
) -> np.ndarray:
    """Per-frame features -> HRF-convolved regressors on the TR grid, in an explicit order.

    ``order="resample_then_convolve"``: ``convolve_hrf(frames_to_tr_grid(..., method), ...)``.
    ``order="convolve_then_resample"``: each frame is a boxcar from its time to the next frame's on
    the fine grid (``fill`` where nothing is shown), convolved with the HRF there, then reduced to the
    TR grid: ``"mean"`` averages the convolved signal over ``[k * tr_s, (k + 1) * tr_s)``,
    ``"interpolate"`` samples it at ``(k + slice_time_ref) * tr_s``.

    For an FIR model instead of the canonical HRF, compose: ``fir_delays(frames_to_tr_grid(...),
    delays)``. Arguments, shapes and errors as in ``frames_to_tr_grid`` and ``convolve_hrf``; also
    ValueError for an unknown ``order``. Returns float64 [n_scans, n_features].
    """
    _check_choice(order, ORDERS, "order")
    if order == "resample_then_convolve":
        tr_series = frames_to_tr_grid(
            features,
            times_s,
            n_scans,
            tr_s,
            method,
            slice_time_ref=slice_time_ref,
            fill=fill,
            frame_duration_s=frame_duration_s,
        )
        return convolve_hrf(tr_series, tr_s, hrf_model, oversampling=oversampling, slice_time_ref=slice_time_ref)
    x = _check_features(features)
    t = _check_times(times_s, x.shape[0])
    n_scans, tr = _check_n_scans(n_scans), _check_tr(tr_s)
    _check_choice(method, METHODS, "method")
    ref = _check_slice_time_ref(slice_time_ref)
    kernel = hrf_kernel(hrf_model, tr, oversampling)
    grid = _Grid(n_scans, tr, int(oversampling), earliest_s=float(t[0]))
    reduce = "mean" if method == "mean" else ref
    return grid.regressors(t, _frame_ends(t, frame_duration_s), x, kernel, reduce, fill=_check_fill(fill))


# ------------------------------------------------------------------------------------ events.tsv
def read_events(events, stim_column=None):
    """A BIDS ``events.tsv`` (path or pandas DataFrame) -> (onsets_s, durations_s, stimuli).

    Columns: ``onset`` and ``duration`` in seconds (BIDS), and the stimulus of each row from
    ``stim_column`` (default: ``stim_file`` if present, else ``trial_type``). Rows are kept in file
    order. Raises ValueError naming the file (or "events") for: a file that cannot be read as
    tab-separated values, a missing column, a non-numeric / n/a / infinite onset or duration, a
    negative duration, or an empty stimulus (n/a).
    """
    import pandas as pd

    if isinstance(events, (str, os.PathLike)):
        where = f"events file {os.fspath(events)!r}"
        try:
            df = pd.read_csv(events, sep="\t", na_values=["n/a"], keep_default_na=True, dtype={"stim_file": str})
        except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
            raise ValueError(f"{where} could not be read as tab-separated values: {e}") from None
    elif isinstance(events, pd.DataFrame):
        where, df = "events", events
    else:
        raise ValueError(f"events must be a path to a BIDS events.tsv or a pandas DataFrame, got {type(events)}")
    if stim_column is None:
        stim_column = "stim_file" if "stim_file" in df.columns else "trial_type"
    missing = [c for c in ("onset", "duration", stim_column) if c not in df.columns]
    if missing:
        raise ValueError(f"{where} lacks the column(s) {missing} (it has {list(df.columns)})")
    if len(df) == 0:
        raise ValueError(f"{where} has no rows")
    out = []
    for c in ("onset", "duration"):
        v = pd.to_numeric(df[c], errors="coerce").to_numpy(dtype=np.float64)
        if not np.all(np.isfinite(v)):
            row = int(np.flatnonzero(~np.isfinite(v))[0])
            raise ValueError(f"{where}: column {c!r} has a missing or non-numeric value in row {row}")
        out.append(v)
    onsets, durations = out
    if np.any(durations < 0):
        raise ValueError(f"{where}: column 'duration' has a negative value in row {int(np.argmax(durations < 0))}")
    stim = df[stim_column]
    if stim.isna().any():
        raise ValueError(f"{where}: column {stim_column!r} is empty (n/a) in row {int(np.flatnonzero(stim.isna())[0])}")
    return onsets, durations, [str(s) for s in stim]


def events_regressors(
    events,
    features_by_stimulus: Mapping[str, Sequence[float]],
    n_scans,
    tr_s,
    *,
    hrf_model="spm",
    oversampling=50,
    slice_time_ref=0.5,
    stim_column=None,
) -> np.ndarray:
    """An image (or clip) design from a BIDS ``events.tsv`` -> HRF-convolved feature regressors.

    Every row is a boxcar from ``onset`` to ``onset + duration`` whose amplitude is the feature vector
    of its stimulus (e.g. 112 images x 4 s, each with its fc8); the boxcars of all rows are summed,
    convolved with the HRF on the fine grid and sampled at ``(k + slice_time_ref) * tr_s``. Per
    feature this is ``nilearn.glm.first_level.compute_regressor((onsets, durations, amplitudes),
    hrf_model, frame_times)``, for all features at once. ``hrf_model=None`` gives the boxcars sampled
    at the scan times (compose with ``fir_delays`` for an FIR model).

    Args:
      events: path to a BIDS events.tsv, or a pandas DataFrame with the same columns (``read_events``).
        Rows of other trial types (fixation, ratings) must be removed first: every row's stimulus
        needs features.
      features_by_stimulus: mapping stimulus name (the exact ``stim_file`` / ``trial_type`` value) ->
        float [n_features].
      n_scans, tr_s, hrf_model, oversampling, slice_time_ref: as in ``convolve_hrf``.
      stim_column: the column naming the stimulus (default ``stim_file``, else ``trial_type``).

    Returns:
      float64 [n_scans, n_features].

    Raises:
      ValueError: as ``read_events``; a stimulus without features (named); feature vectors of
        different lengths or not finite; bad n_scans, tr_s, hrf_model, oversampling, slice_time_ref.
    """
    onsets, durations, stimuli = read_events(events, stim_column)
    if not isinstance(features_by_stimulus, Mapping) or not features_by_stimulus:
        raise ValueError("features_by_stimulus must be a non-empty mapping stimulus name -> feature vector")
    lacking = sorted({s for s in stimuli if s not in features_by_stimulus})
    if lacking:
        shown = ", ".join(repr(s) for s in lacking[:5]) + (" ..." if len(lacking) > 5 else "")
        raise ValueError(f"{len(lacking)} stimulus(es) in events have no entry in features_by_stimulus: {shown}")
    vectors = {}
    for s in set(stimuli):
        v = np.asarray(features_by_stimulus[s], dtype=np.float64)
        if v.ndim != 1:
            raise ValueError(f"features_by_stimulus[{s!r}] must be 1-D [n_features], got shape {v.shape}")
        if not np.all(np.isfinite(v)):
            raise ValueError(f"features_by_stimulus[{s!r}] contains NaN or infinite values")
        vectors[s] = v
    sizes = {v.size for v in vectors.values()}
    if len(sizes) != 1:
        raise ValueError(f"features_by_stimulus has feature vectors of different lengths: {sorted(sizes)}")
    n_scans, tr = _check_n_scans(n_scans), _check_tr(tr_s)
    kernel = hrf_kernel(hrf_model, tr, oversampling)
    ref = _check_slice_time_ref(slice_time_ref)
    amplitudes = np.stack([vectors[s] for s in stimuli])
    grid = _Grid(n_scans, tr, int(oversampling), earliest_s=float(onsets.min()))
    return grid.regressors(onsets, onsets + durations, amplitudes, kernel, ref)


# ------------------------------------------------------------------------------------------ films
def fps_correction(source_fps, presented_fps) -> float:
    """Factor from a video file's timeline to the timeline it was shown on: ``source_fps / presented_fps``.

    A film runs at 24000/1001 = 23.976 fps; its PAL (25 fps) transfer shows the same frames 4 %
    faster. Features read from the PAL file (``source_fps=25``) of a film shown at film speed
    (``presented_fps=23.976``) need their times stretched by 25 / 23.976 = 1.0427; the reverse case
    by 0.959. Raises ValueError for a non-positive or non-finite rate.
    """
    for name, v in (("source_fps", source_fps), ("presented_fps", presented_fps)):
        if not isinstance(v, (int, float, np.integer, np.floating)) or not math.isfinite(v) or v <= 0:
            raise ValueError(f"{name} must be a positive frame rate, got {v!r}")
    return float(source_fps) / float(presented_fps)


def film_times(frame_times_s, *, fps_correction=1.0, run_offset_s=0.0) -> np.ndarray:
    """Frame timestamps of a video file -> presentation times in the run: ``t * fps_correction + run_offset_s``.

    Args:
      frame_times_s: float [n_frames], the reader's presentation timestamps (seconds from the start of
        the file), strictly increasing.
      fps_correction: the speed factor (``fps_correction(source_fps, presented_fps)``), > 0.
      run_offset_s: the run time (seconds from the run's first scan) at which the file's time 0 is
        shown. For a film cut into runs, the run that starts the film at file time ``T`` after a
        lead-in of ``L`` s has ``run_offset_s = L - T * fps_correction``; frames of other runs then
        fall outside ``[0, n_scans * tr_s)`` and must be dropped before ``frames_to_tr_grid``.

    Returns:
      float64 [n_frames].

    Raises:
      ValueError: times not 1-D, not finite or not strictly increasing; a non-positive fps_correction;
        a non-finite run_offset_s.
    """
    t = np.asarray(frame_times_s, dtype=np.float64)
    t = _check_times(t, t.size if t.ndim == 1 else -1, "frame_times_s")
    c = float(fps_correction)
    if not math.isfinite(c) or c <= 0:
        raise ValueError(f"fps_correction must be a positive factor, got {fps_correction!r}")
    off = float(run_offset_s)
    if not math.isfinite(off):
        raise ValueError(f"run_offset_s must be a finite number of seconds, got {run_offset_s!r}")
    return t * c + off
