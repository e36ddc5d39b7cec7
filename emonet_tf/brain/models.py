"""Encoding and decoding models: features -> voxels and voxels -> features, cross-validated without leaks.

    from emonet_tf.brain.models import BlockedKFold, LeaveOneSubjectOut, encoding_model, decoding_model
    res = encoding_model(fc7_on_tr_grid, bold, model="ridge", cv=BlockedKFold(5, gap=10))
    res.r, res.r2, res.predictions, res.weights          # per voxel; out-of-fold predictions; fold-averaged
    dec = decoding_model(patterns, fc8, model="pls", n_components=20, cv=LeaveOneSubjectOut(subjects))

What is here, and the source of each method:

- Models (scikit-learn): partial least squares, `sklearn.cross_decomposition.PLSRegression`
  (centred, not scaled by default, as MATLAB's `plsregress` that CANlab's tools and the paper's
  experiment I use); ridge with one penalty per target (voxel or unit), `sklearn.linear_model.RidgeCV(alphas,
  alpha_per_target=True)`, whose penalty is chosen inside each training fold by scikit-learn's efficient
  leave-one-out (generalized cross-validation); or any scikit-learn regressor.
- Cross-validation that respects time and people (scikit-learn splitter protocol: `split(X, y, groups)`,
  `get_n_splits()`): `LeaveOneRunOut`, `LeaveOneSubjectOut` (the paper's experiment I; both are
  `sklearn.model_selection.LeaveOneGroupOut` with the group labels held by the splitter, and fold names),
  and `BlockedKFold` (contiguous test blocks with `gap` samples left out of training on both sides of each
  block, because neighbouring TRs are autocorrelated: random k-fold over TRs leaks).
- `CVResult`: per-target r (Pearson) and R^2 (`sklearn.metrics.r2_score`) of the out-of-fold predictions,
  the same per fold, the out-of-fold predictions, and the weights averaged over the folds' fits.
- `noise_ceiling`: split-half reliability of repeated presentations with the Spearman-Brown correction,
  per voxel (Spearman 1910; Brown 1910; e.g. Lage-Castellanos et al. 2019, PLoS Comput Biol 15:e1006397).
  It never refits a model on training data (that is an upper bound of fit, not of reliability).
- `permutation_test`: p-values that respect the blocks: whole blocks are permuted, or each run is shifted
  circularly, and the model is refitted on every permutation (`refit=True`, the default) or the out-of-fold
  predictions are compared with the permuted data (`refit=False`, cheaper); p = (1 + #{null >= observed}) /
  (1 + n_permutations) (Phipson & Smyth 2010, Stat Appl Genet Mol Biol 9:39).

Shapes: samples are rows (time points or trials), `X` [n_samples, n_features], `Y` [n_samples, n_targets],
float. Bad input raises ValueError naming the argument. No TensorFlow here (numpy, scipy, scikit-learn).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Iterator, Optional, Sequence

import numpy as np
from sklearn.base import clone
from sklearn.cross_decomposition import PLSRegression
from sklearn.linear_model import RidgeCV
from sklearn.metrics import r2_score

#: Default ridge penalties searched per target: 10^-2 ... 10^6 (17 values, half a decade apart).
DEFAULT_ALPHAS = tuple(float(a) for a in np.logspace(-2, 6, 17))
MODELS = ("ridge", "pls")
PERMUTATION_SCHEMES = ("blocks", "circular")


# ------------------------------------------------------------------------------------------------
# Checks


def _as_2d(a, name: str) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    if a.ndim == 1:
        a = a[:, None]
    if a.ndim != 2:
        raise ValueError(f"{name}: expected a 2-D array [samples, columns], got shape {a.shape}")
    if a.shape[0] < 2 or a.shape[1] < 1:
        raise ValueError(f"{name}: needs at least 2 rows and 1 column, got shape {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name}: contains NaN or infinite values")
    return a


def _labels(labels, n: int, name: str) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim != 1 or len(labels) != n:
        raise ValueError(f"{name}: expected one label per sample ({n}), got shape {labels.shape}")
    return labels


def pearson_r(a: np.ndarray, b: np.ndarray, axis: int = 0) -> np.ndarray:
    """Pearson r between matching columns (axis=0) or rows (axis=1) of two equally shaped arrays.

    A constant column gives NaN (no warning). Same numbers as `scipy.stats.pearsonr` column by column.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"pearson_r: shapes differ: {a.shape} vs {b.shape}")
    a = a - a.mean(axis=axis, keepdims=True)
    b = b - b.mean(axis=axis, keepdims=True)
    den = np.sqrt((a * a).sum(axis=axis) * (b * b).sum(axis=axis))
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (a * b).sum(axis=axis) / den
    return np.where(den > 0, r, np.nan)


# ------------------------------------------------------------------------------------------------
# Cross-validation splitters (scikit-learn protocol)


class _LeaveOneNamedGroupOut:
    """One fold per group (run or subject), the group's samples as the test set; labels held by the splitter."""

    _what = "group"

    def __init__(self, labels: Sequence):
        labels = np.asarray(labels)
        if labels.ndim != 1 or len(labels) < 2:
            raise ValueError(f"{self._what}s: expected one label per sample (1-D, >= 2 samples), got {labels.shape}")
        names = list(dict.fromkeys(labels.tolist()))  # order of first appearance
        if len(names) < 2:
            raise ValueError(f"{self._what}s: leave-one-{self._what}-out needs at least 2 {self._what}s, got 1")
        self.labels = labels
        self.names = names

    def get_n_splits(self, X=None, y=None, groups=None) -> int:
        return len(self.names) if groups is None else len(set(np.asarray(groups).tolist()))

    def split(self, X=None, y=None, groups=None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        labels = self.labels if groups is None else np.asarray(groups)
        if X is not None and len(X) != len(labels):
            raise ValueError(f"{self._what}s: {len(labels)} labels for {len(X)} samples")
        for name in dict.fromkeys(labels.tolist()):
            test = labels == name
            yield np.flatnonzero(~test), np.flatnonzero(test)

    def fold_names(self) -> list:
        """The held-out group of each fold, in split() order."""
        return list(self.names)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({len(self.names)} {self._what}s)"


class LeaveOneRunOut(_LeaveOneNamedGroupOut):
    """Leave-one-run-out: `runs` [n_samples] labels each sample's run; fold k tests on run k, trains on the others.

    The scikit-learn `LeaveOneGroupOut` with the labels kept by the splitter (`split(X)` needs no `groups`).
    Raises ValueError for fewer than 2 runs or a label count that differs from the samples.
    """

    _what = "run"


class LeaveOneSubjectOut(_LeaveOneNamedGroupOut):
    """Leave-one-subject-out (LOSO, the paper's experiment I): fold k tests on subject k, trains on the others.

    `subjects` [n_samples] labels each sample's subject; a subject is never in its own training set.
    """

    _what = "subject"


class BlockedKFold:
    """K contiguous test blocks; training leaves out `gap` samples on both sides of the test block.

    For time series (TRs), where neighbours are autocorrelated: no training index i satisfies
    |i - t| <= gap for any test index t. Blocks are `numpy.array_split(arange(n), n_splits)`, in order,
    so every sample is tested exactly once. Scikit-learn's `TimeSeriesSplit(gap=...)` only leaves a gap
    before the test block and trains on the past only; this is its two-sided, all-data counterpart.
    Choose `gap` >= the HRF's reach in samples (e.g. 30 s / TR). Raises ValueError for n_splits < 2,
    gap < 0, or too few samples.
    """

    def __init__(self, n_splits: int = 5, gap: int = 0):
        if int(n_splits) != n_splits or n_splits < 2:
            raise ValueError(f"n_splits: must be an integer >= 2, got {n_splits!r}")
        if int(gap) != gap or gap < 0:
            raise ValueError(f"gap: must be an integer >= 0 (samples), got {gap!r}")
        self.n_splits = int(n_splits)
        self.gap = int(gap)

    def get_n_splits(self, X=None, y=None, groups=None) -> int:
        return self.n_splits

    def split(self, X, y=None, groups=None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        n = len(X)
        if n < self.n_splits:
            raise ValueError(f"X: {n} samples for {self.n_splits} blocks")
        idx = np.arange(n)
        for test in np.array_split(idx, self.n_splits):
            lo, hi = test[0] - self.gap, test[-1] + self.gap
            train = idx[(idx < lo) | (idx > hi)]
            if len(train) == 0:
                raise ValueError(f"gap: {self.gap} leaves no training sample for the block {test[0]}..{test[-1]}")
            yield train, test

    def fold_names(self) -> list:
        return [f"block{k}" for k in range(self.n_splits)]

    def __repr__(self) -> str:
        return f"BlockedKFold(n_splits={self.n_splits}, gap={self.gap})"


# ------------------------------------------------------------------------------------------------
# Models and cross-validated fits


def make_model(
    model="ridge", *, n_components: Optional[int] = None, alphas: Optional[Sequence[float]] = None, scale: bool = False
):
    """The estimator for `model`: "ridge" (RidgeCV, one alpha per target), "pls" (PLSRegression) or an estimator.

    n_components: PLS components (default 10); scale: PLS scales each column to unit variance (default
    False: centred only, as MATLAB's plsregress). alphas: ridge penalties searched (default DEFAULT_ALPHAS).
    A scikit-learn estimator is cloned (never fitted in place). Raises ValueError for an unknown name.
    """
    if isinstance(model, str):
        if model == "ridge":
            return RidgeCV(alphas=np.asarray(alphas if alphas is not None else DEFAULT_ALPHAS), alpha_per_target=True)
        if model == "pls":
            return PLSRegression(n_components=int(n_components or 10), scale=scale)
        raise ValueError(f"model: expected one of {MODELS} or a scikit-learn estimator, got {model!r}")
    if not hasattr(model, "fit") or not hasattr(model, "predict"):
        raise ValueError(f"model: {model!r} has no fit/predict")
    return clone(model)


def _weights(est) -> tuple[Optional[np.ndarray], Optional[np.ndarray]]:
    """(coef [n_features, n_targets], intercept [n_targets]) of a fitted linear estimator (or a Pipeline's last)."""
    last = est.steps[-1][1] if hasattr(est, "steps") else est
    if hasattr(est, "steps") or not hasattr(last, "coef_"):
        return None, None  # a pipeline's coefficients are not in the input's units
    coef = np.atleast_2d(np.asarray(last.coef_, dtype=np.float64))
    intercept = np.atleast_1d(np.asarray(getattr(last, "intercept_", np.zeros(coef.shape[0])), dtype=np.float64))
    return coef.T, intercept


@dataclass
class CVResult:
    """A cross-validated fit of Y from X. Targets are voxels (encoding) or feature units (decoding).

    r, r2: [n_targets] Pearson r and R^2 of the out-of-fold predictions pooled over the folds.
    fold_r, fold_r2: [n_folds, n_targets] the same within each test fold (e.g. per left-out subject).
    predictions: [n_samples, n_targets] out-of-fold predictions (NaN for a sample in no test fold).
    weights: [n_features, n_targets] coefficients averaged over the folds' fits (Y ~ X @ weights + intercept),
    in the input's units; None for estimators without coef_. intercept: [n_targets].
    alphas: [n_folds, n_targets] ridge penalties chosen in each training fold (None for other models).
    folds: the (train, test) index arrays; fold_names: the held-out run/subject/block of each fold.
    """

    r: np.ndarray
    r2: np.ndarray
    predictions: np.ndarray
    fold_r: np.ndarray
    fold_r2: np.ndarray
    weights: Optional[np.ndarray]
    intercept: Optional[np.ndarray]
    alphas: Optional[np.ndarray]
    folds: list
    fold_names: list
    model: str = ""
    direction: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def mean_r(self) -> float:
        return float(np.nanmean(self.r))


def _fold_names(cv, n_folds: int) -> list:
    if hasattr(cv, "fold_names"):
        names = cv.fold_names()
        if len(names) == n_folds:
            return list(names)
    return [f"fold{k}" for k in range(n_folds)]


def cross_validated_fit(
    X,
    Y,
    *,
    model="ridge",
    cv=None,
    groups=None,
    n_components: Optional[int] = None,
    alphas: Optional[Sequence[float]] = None,
    scale: bool = False,
    direction: str = "",
) -> CVResult:
    """Fit Y [n_samples, n_targets] from X [n_samples, n_features] in each training fold; score the test folds.

    model: "ridge" | "pls" | a scikit-learn estimator (make_model). cv: a splitter (LeaveOneRunOut,
    LeaveOneSubjectOut, BlockedKFold, or any scikit-learn one) - required: there is no default, because a
    random k-fold over time points leaks. groups: passed to cv.split (not needed by this module's splitters).
    Test folds must not overlap. Raises ValueError for bad shapes, NaN, overlapping test folds, or too many
    PLS components for a training fold.
    """
    X = _as_2d(X, "X")
    Y = _as_2d(Y, "Y")
    if X.shape[0] != Y.shape[0]:
        raise ValueError(f"X and Y: different numbers of samples ({X.shape[0]} vs {Y.shape[0]})")
    if cv is None or not hasattr(cv, "split"):
        raise ValueError("cv: a splitter is required (LeaveOneRunOut, LeaveOneSubjectOut, BlockedKFold, ...)")
    est0 = make_model(model, n_components=n_components, alphas=alphas, scale=scale)
    folds = [(np.asarray(tr), np.asarray(te)) for tr, te in cv.split(X, Y, groups)]
    if not folds:
        raise ValueError("cv: produced no folds")
    n, t = Y.shape
    pred = np.full((n, t), np.nan)
    seen = np.zeros(n, dtype=bool)
    fold_r = np.full((len(folds), t), np.nan)
    fold_r2 = np.full((len(folds), t), np.nan)
    coefs, intercepts, fold_alphas = [], [], []
    for k, (train, test) in enumerate(folds):
        if np.any(seen[test]):
            raise ValueError(f"cv: test folds overlap (fold {k}); each sample may be predicted once")
        if isinstance(est0, PLSRegression) and est0.n_components > min(len(train) - 1, X.shape[1]):
            raise ValueError(
                f"n_components: {est0.n_components} > what fold {k} allows "
                f"({min(len(train) - 1, X.shape[1])}: training samples - 1, features)"
            )
        seen[test] = True
        est = clone(est0).fit(X[train], Y[train])
        p = np.asarray(est.predict(X[test]), dtype=np.float64).reshape(len(test), t)
        pred[test] = p
        if len(test) >= 2:
            fold_r[k] = pearson_r(p, Y[test])
            fold_r2[k] = r2_score(Y[test], p, multioutput="raw_values")
        coef, intercept = _weights(est)
        if coef is not None:
            coefs.append(coef)
            intercepts.append(intercept)
        if hasattr(est, "alpha_"):
            fold_alphas.append(np.broadcast_to(np.asarray(est.alpha_, dtype=np.float64), (t,)))
    r = pearson_r(pred[seen], Y[seen])
    r2 = r2_score(Y[seen], pred[seen], multioutput="raw_values")
    name = model if isinstance(model, str) else type(model).__name__
    return CVResult(
        r=r,
        r2=np.asarray(r2, dtype=np.float64),
        predictions=pred,
        fold_r=fold_r,
        fold_r2=fold_r2,
        weights=np.mean(coefs, axis=0) if coefs else None,
        intercept=np.mean(intercepts, axis=0) if intercepts else None,
        alphas=np.stack(fold_alphas) if fold_alphas else None,
        folds=folds,
        fold_names=_fold_names(cv, len(folds)),
        model=name,
        direction=direction,
    )


def encoding_model(features, bold, **kwargs) -> CVResult:
    """Encoding: features [n_samples, n_features] (e.g. HRF-convolved fc7 on the TR grid) -> bold [n_samples,
    n_voxels]. r, R^2 and weights are per voxel. Keyword arguments as cross_validated_fit (cv is required)."""
    return cross_validated_fit(features, bold, direction="encoding", **kwargs)


def decoding_model(bold, features, **kwargs) -> CVResult:
    """Decoding: bold [n_samples, n_voxels] (e.g. single-trial patterns) -> features [n_samples, n_units]
    (e.g. the 20 fc8 units). r, R^2 are per unit; weights [n_voxels, n_units]. As cross_validated_fit."""
    return cross_validated_fit(bold, features, direction="decoding", **kwargs)


# ------------------------------------------------------------------------------------------------
# Noise ceiling


@dataclass
class NoiseCeiling:
    """Per-voxel reliability of repeated presentations.

    split_half_r: [n_voxels] Pearson r across stimuli between the means of two halves of the repeats,
    averaged over the splits. reliability: [n_voxels] Spearman-Brown corrected to the mean of all repeats,
    2r / (1 + r). ceiling_r: [n_voxels] sqrt(max(reliability, 0)), the r that a perfect model of the
    stimulus-driven signal would reach against the mean of all repeats (the bound for CVResult.r when the
    model is scored on that mean). n_splits: how many half splits were averaged.
    """

    split_half_r: np.ndarray
    reliability: np.ndarray
    ceiling_r: np.ndarray
    n_splits: int

    def fraction(self, r) -> np.ndarray:
        """r / ceiling_r per voxel (NaN where the ceiling is 0)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.ceiling_r > 0, np.asarray(r, dtype=np.float64) / self.ceiling_r, np.nan)


def noise_ceiling(repeats, *, n_splits: int = 100, seed: int = 0) -> NoiseCeiling:
    """Split-half noise ceiling from repeats [n_repeats, n_stimuli, n_voxels] (>= 2 repeats, >= 3 stimuli).

    With 2 repeats there is one split; with more, `n_splits` random splits into halves of n_repeats // 2
    and the rest (all distinct splits when there are fewer). No model is fitted: a ceiling from refitting on
    training data measures fit, not reliability. Source: the split-half / Spearman-Brown estimate (Spearman
    1910, Brown 1910); its use as a noise ceiling e.g. Lage-Castellanos et al. 2019. Raises ValueError for
    other shapes or NaN.
    """
    rep = np.asarray(repeats, dtype=np.float64)
    if rep.ndim == 2:
        rep = rep[:, :, None]
    if rep.ndim != 3 or rep.shape[0] < 2 or rep.shape[1] < 3:
        raise ValueError(f"repeats: expected [n_repeats >= 2, n_stimuli >= 3, n_voxels], got shape {rep.shape}")
    if not np.all(np.isfinite(rep)):
        raise ValueError("repeats: contains NaN or infinite values")
    k = rep.shape[0]
    rng = np.random.default_rng(seed)
    total = math.comb(k, k // 2) // (1 if k % 2 else 2)
    if k == 2:
        splits = [np.array([0])]
    elif total <= n_splits:
        from itertools import combinations

        # a split and its complement are the same split when the halves are equal: keep those holding repeat 0
        splits = [np.array(c) for c in combinations(range(k), k // 2) if k % 2 or 0 in c]
    else:
        splits = [rng.permutation(k)[: k // 2] for _ in range(int(n_splits))]
    rs = []
    for a in splits:
        b = np.setdiff1d(np.arange(k), a)
        rs.append(pearson_r(rep[a].mean(axis=0), rep[b].mean(axis=0)))
    split_r = np.nanmean(np.stack(rs), axis=0) if len(rs) > 1 else rs[0]
    with np.errstate(invalid="ignore", divide="ignore"):
        rel = 2 * split_r / (1 + split_r)
    return NoiseCeiling(split_r, rel, np.sqrt(np.clip(rel, 0, None)), len(splits))


# ------------------------------------------------------------------------------------------------
# Permutation tests that respect blocks


def block_permutation(
    n: int,
    rng: np.random.Generator,
    *,
    scheme: str = "blocks",
    blocks=None,
    block_size: Optional[int] = None,
    runs=None,
    min_shift: Optional[int] = None,
) -> np.ndarray:
    """One permutation of range(n) that keeps blocks intact.

    scheme "blocks": the samples are cut into blocks (`blocks` labels, contiguous, or consecutive runs of
    `block_size` samples, within each run when `runs` is given) and the blocks' order is shuffled within each
    run (whole blocks move; the order inside a block is kept). block_size=1 is a plain permutation, right for
    exchangeable trials (e.g. single-trial patterns). scheme "circular": each run (all samples when runs is None)
    is rolled by a random shift in [min_shift, len(run) - min_shift] (default min_shift = max(1, len(run)//10)),
    which keeps the autocorrelation of a time series.
    """
    runs_ = np.zeros(n, dtype=int) if runs is None else _labels(runs, n, "runs")
    perm = np.arange(n)
    for run in dict.fromkeys(runs_.tolist()):
        idx = np.flatnonzero(runs_ == run)
        m = len(idx)
        if scheme == "circular":
            lo = max(1, m // 10) if min_shift is None else int(min_shift)
            if m < 2 or lo > m - lo:
                raise ValueError(f"min_shift: {lo} leaves no shift for a run of {m} samples")
            perm[idx] = np.roll(idx, int(rng.integers(lo, m - lo + 1)))
        elif scheme == "blocks":
            if blocks is not None:
                lab = _labels(blocks, n, "blocks")[idx]
                cuts = np.flatnonzero(lab[1:] != lab[:-1]) + 1
                parts = np.split(idx, cuts)
            else:
                if block_size is None or int(block_size) < 1:
                    raise ValueError(f"block_size: an integer >= 1 is needed with scheme='blocks', got {block_size!r}")
                parts = [idx[i : i + int(block_size)] for i in range(0, m, int(block_size))]
            order = rng.permutation(len(parts))
            perm[idx] = np.concatenate([parts[j] for j in order])
        else:
            raise ValueError(f"scheme: expected one of {PERMUTATION_SCHEMES}, got {scheme!r}")
    return perm


def _refit_r(X: np.ndarray, Y: np.ndarray, est0, folds) -> np.ndarray:
    """r of the out-of-fold predictions of a fresh fit per fold (the folds of the observed fit)."""
    pred = np.full(Y.shape, np.nan)
    for train, test in folds:
        pred[test] = np.asarray(clone(est0).fit(X[train], Y[train]).predict(X[test])).reshape(len(test), -1)
    keep = ~np.isnan(pred).any(axis=1)
    return pearson_r(pred[keep], Y[keep])


@dataclass
class PermutationResult:
    """observed: [n_targets] r of the real fit; null: [n_permutations, n_targets] r with permuted Y;
    p_values: [n_targets] one-sided (r > 0), (1 + #{null >= observed}) / (1 + n_permutations);
    p_max: [n_targets] the same against the maximum over targets of each permutation (family-wise)."""

    observed: np.ndarray
    null: np.ndarray
    p_values: np.ndarray
    p_max: np.ndarray
    refit: bool
    scheme: str


def permutation_test(
    X,
    Y,
    *,
    cv,
    model="ridge",
    n_permutations: int = 100,
    scheme: str = "blocks",
    blocks=None,
    block_size: Optional[int] = None,
    runs=None,
    min_shift: Optional[int] = None,
    refit: bool = True,
    seed: int = 0,
    observed: Optional[CVResult] = None,
    **fit_kwargs,
) -> PermutationResult:
    """Permutation p-values of the cross-validated r per target, with permutations that respect blocks.

    The rows of Y (the data) are permuted with block_permutation (scheme, blocks, block_size, runs, min_shift);
    X stays. refit=True: each permutation is cross-validated again with the same cv and model (the full null
    of the whole procedure). refit=False: the observed fit's out-of-fold predictions are correlated with the
    permuted Y (no refit; valid because those predictions never saw their test data; much cheaper).
    observed: a CVResult of the same X, Y, cv and model, to reuse. The +1 correction (Phipson & Smyth
    2010) keeps p >= 1 / (1 + n_permutations). Raises ValueError for n_permutations < 1 and bad arguments.
    """
    if int(n_permutations) < 1:
        raise ValueError(f"n_permutations: must be >= 1, got {n_permutations!r}")
    X = _as_2d(X, "X")
    Y = _as_2d(Y, "Y")
    if observed is None:
        observed = cross_validated_fit(X, Y, model=model, cv=cv, **fit_kwargs)
    est0 = make_model(model, **{k: fit_kwargs[k] for k in ("n_components", "alphas", "scale") if k in fit_kwargs})
    rng = np.random.default_rng(seed)
    null = np.empty((int(n_permutations), Y.shape[1]))
    keep = ~np.isnan(observed.predictions).any(axis=1)
    for i in range(int(n_permutations)):
        perm = block_permutation(
            len(Y), rng, scheme=scheme, blocks=blocks, block_size=block_size, runs=runs, min_shift=min_shift
        )
        if refit:
            null[i] = _refit_r(X, Y[perm], est0, observed.folds)
        else:
            null[i] = pearson_r(observed.predictions[keep], Y[perm][keep])
    obs = observed.r
    p = (1 + np.sum(np.nan_to_num(null, nan=-np.inf) >= obs, axis=0)) / (1 + len(null))
    mx = np.nanmax(null, axis=1)
    p_max = (1 + np.sum(mx[:, None] >= obs[None, :], axis=0)) / (1 + len(null))
    return PermutationResult(obs, null, p, p_max, bool(refit), scheme)
