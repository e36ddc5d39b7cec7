"""Valence and arousal as linear read-outs of EmoNet's 20 pre-softmax fc8 outputs.

Kragel et al. (2019, Fig. 2) predict normative valence and arousal of IAPS images with PLS
regression from the 20 fc8 units (10-fold cross-validation; valence r = 0.88, arousal r = 0.85)
and apply the same read-outs to OASIS without retraining (r = 0.83 / 0.84).

Shipped coefficients (`EMONET_PY_READOUTS`): emonet-py 1.0.8 (KU Leuven, PyPI),
`emonet_valence.py` and `emonet_arousal.py`, described there as "ports of the original models".
Each is an `nn.Linear(20 -> 1)` on EmoNet in train mode, i.e. on the **pre-softmax** fc8 values,
in the 20-category order of `emonet_tf.categories.EMONET_CATEGORIES`. Their signs mostly agree with
the paper's PLS loadings but their magnitudes differ (docs/serving.md, "The numbers behind the read-outs"); they are
the only published numeric read-outs, so they are the default, not a claim of the paper's fit.

Fitting new read-outs (`fit_readout`), all numerics from scikit-learn: PLS1 (`PLSRegression`,
NIPALS, X and y centred, not scaled: MATLAB `plsregress`) with n components, or ridge regression
(`Ridge`), chosen by k-fold cross-validation (`GridSearchCV`). The reported CV r and RMSE are from
a *nested* cross-validation (`cross_validate` of that search: the choice of method and
n components / alpha is made inside each outer training fold), so they are not inflated by the
choice itself. Folds are stratified by rating, as in the paper: examples sorted by rating are dealt
out to the folds in blocks (`StratifiedKFold` over rating-rank blocks, `RatingStratifiedKFold`).
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import warnings
from typing import Any, Optional, Sequence

import numpy as np
import scipy.stats
import sklearn
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.cross_decomposition import PLSRegression
from sklearn.linear_model import Ridge
from sklearn.metrics import root_mean_squared_error
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.pipeline import Pipeline

from emonet_tf.categories import EMONET_CATEGORIES
from emonet_tf.jsonio import json_safe

FORMAT = "emonet_tf.affect.readouts/1"
INPUT_SPACE = "fc8_logits"  # pre-softmax fc8 values, the input of every read-out

#: emonet-py 1.0.8 emonet_valence.py: bias and 20 weights in EMONET_CATEGORIES order.
EMONET_PY_VALENCE_BIAS = 3.2963
EMONET_PY_VALENCE_WEIGHTS = (
    0.5990,
    0.4576,
    0.3248,
    -0.0634,
    0.0035,
    0.0560,
    0.1163,
    -0.1370,
    -0.7719,
    -0.1210,
    -0.1862,
    0.0214,
    -0.3015,
    -0.3680,
    0.2467,
    -0.2335,
    0.1096,
    -0.3858,
    0.1538,
    0.5741,
)
#: emonet-py 1.0.8 emonet_arousal.py: bias and 20 weights in EMONET_CATEGORIES order.
EMONET_PY_AROUSAL_BIAS = 6.5139
EMONET_PY_AROUSAL_WEIGHTS = (
    -0.0910,
    -0.0121,
    -0.3154,
    0.0152,
    0.3949,
    -0.2019,
    -0.1216,
    -0.1029,
    0.0637,
    0.0037,
    -0.1700,
    0.0736,
    0.2145,
    0.1670,
    -0.2425,
    -0.0555,
    0.1480,
    0.1390,
    0.1877,
    -0.0824,
)

METHODS = ("auto", "pls", "ridge")
#: Ridge penalties, as multiples of the mean diagonal of the centred X'X (so the grid is scale-free).
RIDGE_ALPHAS = tuple(10.0**e for e in range(-6, 4))


class ReadoutError(ValueError):
    """A read-out file or ratings table that cannot be used; the message names the file and the problem."""


@dataclasses.dataclass
class LinearReadout:
    """y = bias + fc8_logits . weights, for one rating (valence, arousal, ...)."""

    name: str
    bias: float
    weights: np.ndarray
    class_names: tuple[str, ...] = EMONET_CATEGORIES
    method: str = "given"
    params: dict[str, Any] = dataclasses.field(default_factory=dict)
    cv: dict[str, Any] = dataclasses.field(default_factory=dict)
    source: str = ""

    def __post_init__(self):
        self.weights = np.asarray(self.weights, dtype=np.float64).reshape(-1)
        self.class_names = tuple(self.class_names)
        if self.weights.size != len(self.class_names):
            raise ReadoutError(
                f"read-out {self.name!r}: {self.weights.size} weights for {len(self.class_names)} classes"
            )

    def predict(self, logits: np.ndarray) -> np.ndarray:
        """Ratings of N x C pre-softmax fc8 values (or one C vector)."""
        logits = np.asarray(logits, dtype=np.float64)
        if logits.shape[-1] != self.weights.size:
            raise ReadoutError(f"read-out {self.name!r} takes {self.weights.size} fc8 values, got {logits.shape[-1]}")
        return self.bias + logits @ self.weights

    def to_json(self) -> dict[str, Any]:
        return {
            "bias": float(self.bias),
            "weights": dict(zip(self.class_names, map(float, self.weights))),
            "method": self.method,
            "params": self.params,
            "cv": json_safe(self.cv),
            "source": self.source,
        }


def emonet_py_readouts() -> dict[str, LinearReadout]:
    """The valence and arousal read-outs shipped by emonet-py 1.0.8 (see the module docstring)."""
    source = "emonet-py 1.0.8 emonet_valence.py / emonet_arousal.py (ports of the original models)"
    return {
        "valence": LinearReadout(
            "valence", EMONET_PY_VALENCE_BIAS, EMONET_PY_VALENCE_WEIGHTS, method="published", source=source
        ),
        "arousal": LinearReadout(
            "arousal", EMONET_PY_AROUSAL_BIAS, EMONET_PY_AROUSAL_WEIGHTS, method="published", source=source
        ),
    }


# ------------------------------------------------------------------------------------------------
# Estimators (scikit-learn)


class PLS1(RegressorMixin, BaseEstimator):
    """PLS1 regression with X and y centred, not scaled (MATLAB `plsregress`), on scikit-learn's NIPALS.

    `sklearn.cross_decomposition.PLSRegression(n_components, scale=False)`, with two conventions of this
    module: `coef_` (shape (p,), float64) and `intercept_` (float) are in the original units of X and y,
    so that y = intercept_ + X @ coef_; and `n_components` is capped at the rank that the training data
    can have (n_samples - 1 after centring, and p), because further components explain nothing
    (PLSRegression refuses more than n_samples; NIPALS would stop there anyway).
    """

    def __init__(self, n_components: int = 1):
        self.n_components = n_components

    def fit(self, x, y):
        x, y = _as_xy(x, y)
        n_components = max(1, min(int(self.n_components), x.shape[0] - 1, x.shape[1]))
        with warnings.catch_warnings():
            # "y residual is constant": y is fully explained before the last component; the
            # remaining components are zero, which is the fit we want (the old NIPALS stopped there).
            warnings.filterwarnings("ignore", message=".*residual is constant", category=UserWarning)
            model = PLSRegression(n_components=n_components, scale=False).fit(x, y)
        self.coef_ = np.asarray(model.coef_, dtype=np.float64).reshape(-1)
        # PLSRegression's intercept_ is y's mean (its predict centres X first); ours is in X's units.
        self.intercept_ = float(np.ravel(model.predict(np.zeros((1, x.shape[1]))))[0])
        self.n_components_ = n_components
        return self

    def predict(self, x):
        return np.asarray(x, dtype=np.float64) @ self.coef_ + self.intercept_


class ScaleFreeRidge(RegressorMixin, BaseEstimator):
    """Ridge regression whose `alpha` is relative to the mean diagonal of the centred X'X.

    `sklearn.linear_model.Ridge(alpha * trace(Xc'Xc) / p)` with an unpenalized intercept: the penalty
    grid (`RIDGE_ALPHAS`) then means the same for logits of any scale. `coef_` (p,) and `intercept_`
    (float) are in the original units.
    """

    def __init__(self, alpha: float = 1.0):
        self.alpha = alpha

    def fit(self, x, y):
        x, y = _as_xy(x, y)
        centred = x - x.mean(axis=0)
        scale = max(float(np.einsum("ij,ij->", centred, centred)) / x.shape[1], 1e-12)
        model = Ridge(alpha=float(self.alpha) * scale, fit_intercept=True).fit(x, y)
        self.coef_ = np.asarray(model.coef_, dtype=np.float64).reshape(-1)
        self.intercept_ = float(model.intercept_)
        return self

    def predict(self, x):
        return np.asarray(x, dtype=np.float64) @ self.coef_ + self.intercept_


def _as_xy(x, y) -> tuple[np.ndarray, np.ndarray]:
    return np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64).reshape(-1)


def pls1_fit(x: np.ndarray, y: np.ndarray, n_components: int) -> tuple[np.ndarray, float]:
    """PLS1 of y (N,) on x (N x p), centred and unscaled; returns (weights (p,) float64, bias float).

    y ~ bias + x @ weights in the original units. `PLS1` (scikit-learn's PLSRegression, NIPALS).
    """
    model = PLS1(n_components).fit(x, y)
    return model.coef_, model.intercept_


def ridge_fit(x: np.ndarray, y: np.ndarray, alpha: float) -> tuple[np.ndarray, float]:
    """Ridge of y (N,) on x (N x p), unpenalized intercept, `alpha` relative to the mean diagonal of the
    centred X'X; returns (weights (p,) float64, bias float). `ScaleFreeRidge` (scikit-learn's Ridge)."""
    model = ScaleFreeRidge(alpha).fit(x, y)
    return model.coef_, model.intercept_


class RatingStratifiedKFold(StratifiedKFold):
    """K folds stratified by a continuous rating, as in the paper: scikit-learn's StratifiedKFold
    (shuffled, seeded) over blocks of `n_splits` consecutive examples in rating order.

    Each block (a "class" for StratifiedKFold) is dealt out at random, one example per fold, so every
    fold spans the rating range. The last, incomplete block is merged into the one before it, so
    that every block has at least `n_splits` members (fold sizes then differ by at most one).
    Needs len(y) >= n_splits (ValueError otherwise).
    """

    def __init__(self, n_splits: int = 10, *, random_state: Optional[int] = None):
        super().__init__(n_splits=n_splits, shuffle=True, random_state=random_state)

    def split(self, X, y, groups=None):
        return super().split(X, rating_blocks(y, self.n_splits), groups)


def rating_blocks(y: np.ndarray, k: int) -> np.ndarray:
    """Block number (int64, shape (N,)) of each rating: its rank // k, the last partial block merged.

    Ties are ranked in input order (a stable sort), so the blocks are a pure function of y.
    """
    y = np.asarray(y, dtype=np.float64).reshape(-1)
    if y.size < k:
        raise ValueError(f"{y.size} examples cannot be split into {k} folds")
    ranks = np.empty(y.size, dtype=np.int64)
    ranks[np.argsort(y, kind="stable")] = np.arange(y.size)
    return np.minimum(ranks // k, y.size // k - 1)


def stratified_folds(y: np.ndarray, k: int, seed: int = 0) -> np.ndarray:
    """Fold number (int64, shape (N,), values 0..k-1) of each example under `RatingStratifiedKFold(k, seed)`."""
    y = np.asarray(y, dtype=np.float64).reshape(-1)
    folds = np.empty(y.size, dtype=np.int64)
    for f, (_, test) in enumerate(RatingStratifiedKFold(k, random_state=seed).split(np.zeros((y.size, 1)), y)):
        folds[test] = f
    return folds


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson r of two equal-length vectors (scipy.stats.pearsonr); NaN when either side is constant."""
    a, b = np.asarray(a, np.float64).reshape(-1), np.asarray(b, np.float64).reshape(-1)
    if np.ptp(a) == 0 or np.ptp(b) == 0:  # r is undefined; pearsonr would warn and return NaN
        return float("nan")
    return float(scipy.stats.pearsonr(a, b)[0])


def rmse(a: np.ndarray, b: np.ndarray) -> float:
    """Root mean squared difference of two equal-length vectors (sklearn.metrics.root_mean_squared_error)."""
    return float(root_mean_squared_error(np.asarray(a, np.float64).reshape(-1), np.asarray(b, np.float64).reshape(-1)))


def candidates(
    method: str, n_examples: int, n_features: int, max_components: Optional[int] = None
) -> list[tuple[str, float]]:
    """The (method, parameter) pairs that cross-validation chooses among (PLS: 1 .. all components).

    Raises ValueError for a method not in METHODS.
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    out: list[tuple[str, float]] = []
    if method in ("auto", "pls"):
        top = max(1, min(max_components or n_features, n_features, n_examples - 2))
        out += [("pls", n) for n in range(1, top + 1)]
    if method in ("auto", "ridge"):
        out += [("ridge", a) for a in RIDGE_ALPHAS]
    return out


def _estimator(method: str, param: float) -> BaseEstimator:
    return PLS1(int(param)) if method == "pls" else ScaleFreeRidge(float(param))


def _search(options: Sequence[tuple[str, float]], k: int, seed: int) -> GridSearchCV:
    """GridSearchCV over the candidates (PLS first, fewest components first: GridSearchCV keeps the
    first of equal scores, so a tie goes to the simpler model): k-fold `RatingStratifiedKFold` CV,
    lowest mean squared error over the folds, refit on all the data it is given."""
    pls = [int(p) for m, p in options if m == "pls"]
    ridge = [float(p) for m, p in options if m == "ridge"]
    grid = ([{"model": [PLS1()], "model__n_components": pls}] if pls else []) + (
        [{"model": [ScaleFreeRidge()], "model__alpha": ridge}] if ridge else []
    )
    return GridSearchCV(
        Pipeline([("model", _estimator(*options[0]))]),
        grid,
        scoring="neg_mean_squared_error",
        cv=RatingStratifiedKFold(k, random_state=seed),
        refit=True,
        error_score="raise",
    )


def _final_model(estimator):
    """The fitted PLS1 / ScaleFreeRidge itself, or a fitted GridSearchCV's refit best one."""
    return estimator.best_estimator_[-1] if isinstance(estimator, GridSearchCV) else estimator


def _choice(estimator) -> tuple[str, float]:
    model = _final_model(estimator)
    return ("pls", float(model.n_components)) if isinstance(model, PLS1) else ("ridge", float(model.alpha))


def fit_readout(
    x: np.ndarray,
    y: np.ndarray,
    name: str = "rating",
    method: str = "auto",
    n_components: Optional[int] = None,
    alpha: Optional[float] = None,
    folds: int = 10,
    seed: int = 0,
    class_names: Sequence[str] = EMONET_CATEGORIES,
    max_components: Optional[int] = None,
) -> LinearReadout:
    """Fits a rating y (N,) on fc8 logits x (N x C); method and parameter chosen by CV unless fixed.

    `n_components` fixes PLS, `alpha` fixes ridge; otherwise scikit-learn's GridSearchCV chooses among
    `candidates(method, ...)` by k-fold CV (`RatingStratifiedKFold`, lowest mean squared error) and the
    read-out is refit on all the data. The reported CV r and RMSE come from nested CV (that search
    run inside each training fold of outer `RatingStratifiedKFold` folds), so the choice does not
    inflate them. `cv` of the result holds the out-of-fold predictions' r and
    RMSE, the number of folds, what each outer fold chose, the predictions and the ratings.
    Raises ValueError for shapes that disagree, non-finite values, or fewer than 4 examples.
    """
    x, y = _as_xy(x, y)
    if x.ndim != 2 or x.shape[0] != y.size:
        raise ValueError(f"x must be N x C with N = len(y); got {x.shape} and {y.shape}")
    if not np.all(np.isfinite(x)) or not np.all(np.isfinite(y)):
        raise ValueError(f"{name}: non-finite values in the features or ratings")
    if y.size < 4:
        raise ValueError(f"{name}: {y.size} examples are too few to fit and cross-validate a read-out")
    if n_components is not None:
        options = [("pls", float(n_components))]
    elif alpha is not None:
        options = [("ridge", float(alpha))]
    else:
        options = candidates(method, y.size, x.shape[1], max_components)
    with sklearn.config_context(assume_finite=True, skip_parameter_validation=True):
        # x and y were checked above; sklearn's own checks, repeated in each of the thousands of fits
        # of a nested search, cost about 15% of the time.
        return _nested_fit(x, y, name, options, folds, seed, class_names)


def _nested_fit(x, y, name, options, folds, seed, class_names) -> LinearReadout:
    k = max(2, min(folds, y.size))
    nested = len(options) > 1

    def estimator(inner_seed: int, n_train: int):
        return _search(options, max(2, min(folds, n_train)), inner_seed) if nested else _estimator(*options[0])

    pred = np.empty_like(y)
    chosen = []
    # Nested CV: each outer training fold runs its own search (inner folds seeded seed + 1 + fold),
    # and only its held-out fold is predicted.
    for f, (train, test) in enumerate(RatingStratifiedKFold(k, random_state=seed).split(x, y)):
        fitted = estimator(seed + 1 + f, train.size).fit(x[train], y[train])
        pred[test] = fitted.predict(x[test])
        chosen.append(_describe_choice(*_choice(fitted)))
    final = estimator(seed, y.size).fit(x, y)
    best_m, best_p = _choice(final)
    model = _final_model(final)
    cv = {
        "r": correlation(pred, y),
        "rmse": rmse(pred, y),
        "folds": k,
        "n": int(y.size),
        "nested": nested,
        "outer_fold_choices": chosen,
        "predictions": pred.tolist(),
        "ratings": y.tolist(),
    }
    return LinearReadout(
        name,
        model.intercept_,
        model.coef_,
        class_names=tuple(class_names),
        method=best_m,
        params=_describe_choice(best_m, best_p),
        cv=cv,
        source="fit_readout",
    )


def _describe_choice(method: str, param: float) -> dict[str, Any]:
    return (
        {"method": method, "n_components": int(param)} if method == "pls" else {"method": method, "alpha": float(param)}
    )


# ------------------------------------------------------------------------------------------------
# Files


def save_readouts(readouts: dict[str, LinearReadout], path: str, **metadata: Any) -> None:
    """Writes a coefficient file for `emonet affect --coefficients FILE` (weights keyed by category name)."""
    doc = {
        "format": FORMAT,
        "input": INPUT_SPACE,
        "class_names": list(next(iter(readouts.values())).class_names) if readouts else list(EMONET_CATEGORIES),
        "readouts": {name: r.to_json() for name, r in readouts.items()},
    }
    doc.update(json_safe(metadata))
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(doc, f, indent=2)


def load_readouts(path: str) -> dict[str, LinearReadout]:
    """Reads a file written by `save_readouts`; weights are matched to classes by name, not position."""
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
    except (OSError, json.JSONDecodeError) as err:
        raise ReadoutError(f"{path}: cannot read the coefficient file ({err})") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT or not isinstance(doc.get("readouts"), dict):
        raise ReadoutError(f'{path}: not an emonet_tf read-out file (expected "format": "{FORMAT}")')
    if doc.get("input", INPUT_SPACE) != INPUT_SPACE:
        raise ReadoutError(f"{path}: read-outs on {doc.get('input')!r}; only {INPUT_SPACE!r} is supported")
    names = tuple(doc.get("class_names") or EMONET_CATEGORIES)
    out = {}
    for key, entry in doc["readouts"].items():
        weights = entry.get("weights")
        if isinstance(weights, dict):
            missing = [n for n in names if n not in weights]
            if missing:
                raise ReadoutError(f"{path}: read-out {key!r} has no weight for {', '.join(missing)}")
            weights = [weights[n] for n in names]
        out[key] = LinearReadout(
            key,
            float(entry["bias"]),
            weights,
            class_names=names,
            method=entry.get("method", "given"),
            params=entry.get("params", {}),
            cv=entry.get("cv", {}),
            source=entry.get("source", path),
        )
    if not out:
        raise ReadoutError(f"{path}: no read-outs in the file")
    return out


def check_class_names(readouts: dict[str, LinearReadout], class_names: Sequence[str]) -> None:
    """Refuses read-outs made for a model with other outputs (a silent reorder would give wrong ratings)."""
    for r in readouts.values():
        if tuple(r.class_names) != tuple(class_names):
            raise ReadoutError(
                f"read-out {r.name!r} expects the outputs {list(r.class_names)[:3]}..., "
                f"the model has {list(class_names)[:3]}... ({len(class_names)} outputs)"
            )


PATH_COLUMNS = ("path", "filename", "file", "image", "video", "stimulus", "name")


def read_ratings(
    path: str, path_column: Optional[str] = None, targets: Optional[Sequence[str]] = None
) -> tuple[list[str], dict[str, np.ndarray]]:
    """A ratings CSV -> (file names, {rating name: values}).

    The file column is `path_column` or the first of path/filename/file/image/video/stimulus/name
    (any case). Without `targets`, every other column whose cells are numbers or empty is a rating.
    Empty cells (or NA/NaN) are NaN: that file is left out of that rating's fit only.
    """
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            rows = list(csv.DictReader(f))
    except OSError as err:
        raise ReadoutError(f"{path}: cannot read the ratings table ({err.strerror or err})") from None
    if not rows:
        raise ReadoutError(f"{path}: the ratings table has no rows")
    columns = list(rows[0].keys())
    lower = {c.lower().strip(): c for c in columns}
    if path_column is None:
        path_column = next((lower[c] for c in PATH_COLUMNS if c in lower), None)
        if path_column is None:
            raise ReadoutError(f"{path}: no file column (one of {', '.join(PATH_COLUMNS)}); columns are {columns}")
    elif path_column not in columns:
        raise ReadoutError(f"{path}: no column {path_column!r}; columns are {columns}")

    missing_marks = {"", "na", "nan", "n/a", "none", "null"}

    def numeric(col, strict: bool):
        """Column values as floats, missing cells as NaN; None (or an error naming the row, if strict) when
        a cell is neither a number nor empty, or when the column holds no number at all."""
        out = []
        for row_number, r in enumerate(rows, start=2):  # line 1 is the header
            cell = (r.get(col) or "").strip()
            if cell.lower() in missing_marks:
                out.append(np.nan)
                continue
            try:
                out.append(float(cell))
            except ValueError:
                if strict:
                    raise ReadoutError(f"{path}: line {row_number}, column {col!r}: {cell!r} is not a number") from None
                return None
        arr = np.array(out)
        return arr if np.isfinite(arr).any() else None

    if targets:
        values = {}
        for t in targets:
            col = t if t in columns else lower.get(t.lower())
            if col is None:
                raise ReadoutError(f"{path}: no rating column {t!r}; columns are {columns}")
            v = numeric(col, strict=True)
            if v is None:
                raise ReadoutError(f"{path}: column {col!r} holds no number")
            values[t] = v
    else:
        values = {c: v for c in columns if c != path_column for v in [numeric(c, strict=False)] if v is not None}
        if not values:
            raise ReadoutError(
                f"{path}: no rating column besides {path_column!r} (a rating column holds numbers "
                "and empty cells only; name the columns with --targets to see which cell is wrong)"
            )
    return [r[path_column] for r in rows], values


# ------------------------------------------------------------------------------------------------
# Fitting read-outs from rated image and video files

#: The fewest rated, readable files a read-out is fitted on (fewer cannot be cross-validated).
MIN_RATED = 4


class NotEnoughRatingsError(ReadoutError):
    """Fewer than MIN_RATED rated files could be read (for one rating, or at all)."""


@dataclasses.dataclass
class ReadoutFit:
    """What `fit_readouts_from_files` fitted: a read-out per rating, the files used and those left out."""

    readouts: dict[str, LinearReadout]
    used: int
    left_out: list[str]


def rated_paths(names: Sequence[str], table: str, root: Optional[str] = None) -> list[str]:
    """The ratings table's file names as paths: absolute ones kept, others relative to `root` or the table's folder."""
    base = root if root else os.path.dirname(os.path.abspath(table))
    return [n if os.path.isabs(n) else os.path.join(base, n) for n in names]


def fit_readouts_from_files(
    emonet,
    paths: Sequence[str],
    ratings: dict[str, np.ndarray],
    *,
    method: str = "auto",
    n_components: Optional[int] = None,
    alpha: Optional[float] = None,
    folds: int = 10,
    seed: int = 0,
    sampling: str = "every5",
    batch_size: int = 32,
    damaged: str = "skip",
    exif_orientation: Optional[bool] = None,
    progress=None,
    log=None,
) -> ReadoutFit:
    """Fits one read-out per rating on the fc8 logits of rated images and videos (`read_ratings`, `rated_paths`).

    `paths[i]` is rated `ratings[name][i]` (NaN: left out of that rating's fit only). A video's input is
    the mean of its sampled frames' logits (`sampling`, `damaged` as in `emonet_tf.media`). A file that
    cannot be read is left out and said to `log` (a callable taking one line), as are missing ratings.
    ``progress``: a tqdm-like bar counted in frames. The fit is `fit_readout` (method, n_components,
    alpha, folds, seed). Raises NotEnoughRatingsError when fewer than MIN_RATED readable files (have a
    given rating).
    """
    from emonet_tf import media

    inputs = [media.InputFile(p, media.kind_of(p)) for p in paths]
    results = []
    for result in media.iter_results(emonet, inputs, sampling, batch_size, progress, damaged, exif_orientation):
        if not result.ok:
            _log(log, result.error)
        elif result.damage is not None:
            _log(
                log,
                f"{result.source}: damaged video, {media.kept_note(result)} were used (--damaged keep): "
                f"{result.damage}",
            )
        results.append(result)
    keep = np.array([r.ok for r in results], bool)
    if keep.sum() < MIN_RATED:
        raise NotEnoughRatingsError(
            f"only {int(keep.sum())} of {len(paths)} rated files could be read; need at least {MIN_RATED}"
        )
    x = np.stack([r.logits for r in results if r.ok])
    readouts = {}
    for target, values in ratings.items():
        y = np.asarray(values, np.float64)[keep]
        rated = np.isfinite(y)
        if not rated.all():
            _log(log, f"{target}: {int((~rated).sum())} file(s) without a {target} rating left out of its fit")
        if rated.sum() < MIN_RATED:
            raise NotEnoughRatingsError(
                f"only {int(rated.sum())} readable files have a {target} rating; need at least {MIN_RATED}"
            )
        readouts[target] = fit_readout(
            x[rated],
            y[rated],
            name=target,
            method=method,
            n_components=n_components,
            alpha=alpha,
            folds=folds,
            seed=seed,
            class_names=emonet.class_names,
        )
    return ReadoutFit(readouts, int(keep.sum()), [r.source for r in results if not r.ok])


def _log(log, message: str) -> None:
    if log is not None:
        log(message)
