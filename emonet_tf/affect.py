"""Valence and arousal as linear read-outs of EmoNet's 20 pre-softmax fc8 outputs.

Kragel et al. (2019, Fig. 2) predict normative valence and arousal of IAPS images with PLS
regression from the 20 fc8 units (10-fold cross-validation; valence r = 0.88, arousal r = 0.85)
and apply the same read-outs to OASIS without retraining (r = 0.83 / 0.84).

Shipped coefficients (`EMONET_PY_READOUTS`): emonet-py 1.0.8 (KU Leuven, PyPI),
`emonet_valence.py` and `emonet_arousal.py`, described there as "ports of the original models".
Each is an `nn.Linear(20 -> 1)` on EmoNet in train mode, i.e. on the **pre-softmax** fc8 values,
in the 20-category order of `emonet_tf.categories.EMONET_CATEGORIES`. Their signs mostly agree with
the paper's PLS loadings but their magnitudes differ (emonet_reference.md, section 7.2); they are
the only published numeric read-outs, so they are the default, not a claim of the paper's fit.

Fitting new read-outs (`fit_readout`): PLS1 (NIPALS, X and y centred, not scaled: MATLAB
`plsregress`) with n components, or ridge regression, chosen by k-fold cross-validation.
The reported CV r and RMSE are from a *nested* cross-validation (the choice of method and
n components / alpha is made inside each outer training fold), so they are not inflated by the
choice itself. Folds are stratified by rating, as in the paper: examples sorted by rating are dealt
out to the folds in blocks.
"""
from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
from typing import Any, Optional, Sequence

import numpy as np

from emonet_tf.categories import EMONET_CATEGORIES
from emonet_tf.jsonio import json_safe

FORMAT = "emonet_tf.affect.readouts/1"
INPUT_SPACE = "fc8_logits"  # pre-softmax fc8 values, the input of every read-out

#: emonet-py 1.0.8 emonet_valence.py: bias and 20 weights in EMONET_CATEGORIES order.
EMONET_PY_VALENCE_BIAS = 3.2963
EMONET_PY_VALENCE_WEIGHTS = (
    0.5990, 0.4576, 0.3248, -0.0634, 0.0035, 0.0560, 0.1163, -0.1370, -0.7719, -0.1210,
    -0.1862, 0.0214, -0.3015, -0.3680, 0.2467, -0.2335, 0.1096, -0.3858, 0.1538, 0.5741)
#: emonet-py 1.0.8 emonet_arousal.py: bias and 20 weights in EMONET_CATEGORIES order.
EMONET_PY_AROUSAL_BIAS = 6.5139
EMONET_PY_AROUSAL_WEIGHTS = (
    -0.0910, -0.0121, -0.3154, 0.0152, 0.3949, -0.2019, -0.1216, -0.1029, 0.0637, 0.0037,
    -0.1700, 0.0736, 0.2145, 0.1670, -0.2425, -0.0555, 0.1480, 0.1390, 0.1877, -0.0824)

METHODS = ("auto", "pls", "ridge")
#: Ridge penalties, as multiples of the mean diagonal of the centred X'X (so the grid is scale-free).
RIDGE_ALPHAS = tuple(10.0 ** e for e in range(-6, 4))


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
            raise ReadoutError(f"read-out {self.name!r}: {self.weights.size} weights for "
                               f"{len(self.class_names)} classes")

    def predict(self, logits: np.ndarray) -> np.ndarray:
        """Ratings of N x C pre-softmax fc8 values (or one C vector)."""
        logits = np.asarray(logits, dtype=np.float64)
        if logits.shape[-1] != self.weights.size:
            raise ReadoutError(f"read-out {self.name!r} takes {self.weights.size} fc8 values, got {logits.shape[-1]}")
        return self.bias + logits @ self.weights

    def to_json(self) -> dict[str, Any]:
        return {"bias": float(self.bias), "weights": dict(zip(self.class_names, map(float, self.weights))),
                "method": self.method, "params": self.params, "cv": json_safe(self.cv), "source": self.source}


def emonet_py_readouts() -> dict[str, LinearReadout]:
    """The valence and arousal read-outs shipped by emonet-py 1.0.8 (see the module docstring)."""
    source = "emonet-py 1.0.8 emonet_valence.py / emonet_arousal.py (ports of the original models)"
    return {
        "valence": LinearReadout("valence", EMONET_PY_VALENCE_BIAS, EMONET_PY_VALENCE_WEIGHTS,
                                 method="published", source=source),
        "arousal": LinearReadout("arousal", EMONET_PY_AROUSAL_BIAS, EMONET_PY_AROUSAL_WEIGHTS,
                                 method="published", source=source),
    }


# ------------------------------------------------------------------------------------------------
# Estimators

def pls1_fit(x: np.ndarray, y: np.ndarray, n_components: int) -> tuple[np.ndarray, float]:
    """PLS1 regression by NIPALS on centred (unscaled) data; returns (weights, bias) in the original units."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64).reshape(-1)
    x_mean, y_mean = x.mean(axis=0), y.mean()
    xk, yk = x - x_mean, y - y_mean
    p_dim = x.shape[1]
    w_mat = np.zeros((p_dim, 0))
    p_mat = np.zeros((p_dim, 0))
    q_vec = []
    for _ in range(int(n_components)):
        w = xk.T @ yk
        norm = np.linalg.norm(w)
        if norm < 1e-12:  # nothing left to explain
            break
        w /= norm
        t = xk @ w
        tt = t @ t
        if tt < 1e-12:
            break
        p = xk.T @ t / tt
        q = (yk @ t) / tt
        xk = xk - np.outer(t, p)
        yk = yk - q * t
        w_mat = np.column_stack([w_mat, w])
        p_mat = np.column_stack([p_mat, p])
        q_vec.append(q)
    if not q_vec:
        return np.zeros(p_dim), float(y_mean)
    coef = w_mat @ np.linalg.solve(p_mat.T @ w_mat, np.asarray(q_vec))
    return coef, float(y_mean - x_mean @ coef)


def ridge_fit(x: np.ndarray, y: np.ndarray, alpha: float) -> tuple[np.ndarray, float]:
    """Ridge regression with an unpenalized intercept; `alpha` is relative to the mean diagonal of X'X."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64).reshape(-1)
    x_mean, y_mean = x.mean(axis=0), y.mean()
    xc, yc = x - x_mean, y - y_mean
    gram = xc.T @ xc
    scale = max(float(np.trace(gram)) / gram.shape[0], 1e-12)
    coef = np.linalg.solve(gram + alpha * scale * np.eye(gram.shape[0]), xc.T @ yc)
    return coef, float(y_mean - x_mean @ coef)


def _fit(x, y, method: str, param) -> tuple[np.ndarray, float]:
    return pls1_fit(x, y, int(param)) if method == "pls" else ridge_fit(x, y, float(param))


def stratified_folds(y: np.ndarray, k: int, seed: int = 0) -> np.ndarray:
    """Fold number per example: sorted by rating, each block of k consecutive examples goes to k different folds."""
    y = np.asarray(y, dtype=np.float64)
    rng = np.random.default_rng(seed)
    order = np.lexsort((rng.random(y.size), y))  # ties broken at random
    folds = np.empty(y.size, dtype=np.int64)
    for start in range(0, y.size, k):
        block = order[start:start + k]
        folds[block] = rng.permutation(k)[:block.size]
    return folds


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson r; NaN when either side is constant."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    a, b = a - a.mean(), b - b.mean()
    denom = math.sqrt(float(a @ a) * float(b @ b))
    return float(a @ b / denom) if denom > 0 else float("nan")


def rmse(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.sqrt(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2)))


def candidates(method: str, n_examples: int, n_features: int,
               max_components: Optional[int] = None) -> list[tuple[str, float]]:
    """The (method, parameter) pairs that cross-validation chooses among (PLS: 1 .. all components)."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    out: list[tuple[str, float]] = []
    if method in ("auto", "pls"):
        top = max(1, min(max_components or n_features, n_features, n_examples - 2))
        out += [("pls", n) for n in range(1, top + 1)]
    if method in ("auto", "ridge"):
        out += [("ridge", a) for a in RIDGE_ALPHAS]
    return out


def _select(x, y, options, folds: int, seed: int) -> tuple[str, float, dict]:
    """The candidate with the lowest k-fold CV RMSE on (x, y), and every candidate's RMSE."""
    k = max(2, min(folds, x.shape[0]))
    fold = stratified_folds(y, k, seed)
    scores = {}
    for method, param in options:
        pred = np.empty_like(y)
        for f in range(k):
            test = fold == f
            coef, bias = _fit(x[~test], y[~test], method, param)
            pred[test] = bias + x[test] @ coef
        scores[(method, param)] = rmse(pred, y)
    best = min(scores, key=scores.get)
    return best[0], best[1], scores


def fit_readout(x: np.ndarray, y: np.ndarray, name: str = "rating", method: str = "auto",
                n_components: Optional[int] = None, alpha: Optional[float] = None, folds: int = 10,
                seed: int = 0, class_names: Sequence[str] = EMONET_CATEGORIES,
                max_components: Optional[int] = None) -> LinearReadout:
    """Fits y ~ fc8 logits x; method/parameter chosen by CV unless fixed; CV r/RMSE from nested CV.

    `n_components` fixes PLS (method "pls"), `alpha` fixes ridge. `cv` of the result holds the
    out-of-fold predictions' r and RMSE, the folds, and what each outer fold chose.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64).reshape(-1)
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
    k = max(2, min(folds, y.size))
    outer = stratified_folds(y, k, seed)
    pred = np.empty_like(y)
    chosen = []
    for f in range(k):
        test = outer == f
        if len(options) == 1:
            m, p = options[0]
        else:
            m, p, _ = _select(x[~test], y[~test], options, folds, seed + 1 + f)
        coef, bias = _fit(x[~test], y[~test], m, p)
        pred[test] = bias + x[test] @ coef
        chosen.append(_describe_choice(m, p))
    if len(options) == 1:
        best_m, best_p = options[0]
    else:
        best_m, best_p, _ = _select(x, y, options, folds, seed)
    coef, bias = _fit(x, y, best_m, best_p)
    cv = {"r": correlation(pred, y), "rmse": rmse(pred, y), "folds": k, "n": int(y.size),
          "nested": len(options) > 1, "outer_fold_choices": chosen, "predictions": pred.tolist(),
          "ratings": y.tolist()}
    return LinearReadout(name, bias, coef, class_names=tuple(class_names), method=best_m,
                         params=_describe_choice(best_m, best_p), cv=cv, source="fit_readout")


def _describe_choice(method: str, param: float) -> dict[str, Any]:
    return {"method": method, "n_components": int(param)} if method == "pls" else \
        {"method": method, "alpha": float(param)}


# ------------------------------------------------------------------------------------------------
# Files

def save_readouts(readouts: dict[str, LinearReadout], path: str, **metadata: Any) -> None:
    """Writes a coefficient file for `emonet affect --coefficients FILE` (weights keyed by category name)."""
    doc = {"format": FORMAT, "input": INPUT_SPACE,
           "class_names": list(next(iter(readouts.values())).class_names) if readouts else list(EMONET_CATEGORIES),
           "readouts": {name: r.to_json() for name, r in readouts.items()}}
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
        raise ReadoutError(f"{path}: not an emonet_tf read-out file (expected \"format\": \"{FORMAT}\")")
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
        out[key] = LinearReadout(key, float(entry["bias"]), weights, class_names=names,
                                 method=entry.get("method", "given"), params=entry.get("params", {}),
                                 cv=entry.get("cv", {}), source=entry.get("source", path))
    if not out:
        raise ReadoutError(f"{path}: no read-outs in the file")
    return out


def check_class_names(readouts: dict[str, LinearReadout], class_names: Sequence[str]) -> None:
    """Refuses read-outs made for a model with other outputs (a silent reorder would give wrong ratings)."""
    for r in readouts.values():
        if tuple(r.class_names) != tuple(class_names):
            raise ReadoutError(f"read-out {r.name!r} expects the outputs {list(r.class_names)[:3]}..., "
                               f"the model has {list(class_names)[:3]}... ({len(class_names)} outputs)")


PATH_COLUMNS = ("path", "filename", "file", "image", "video", "stimulus", "name")


def read_ratings(path: str, path_column: Optional[str] = None,
                 targets: Optional[Sequence[str]] = None) -> tuple[list[str], dict[str, np.ndarray]]:
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
            raise ReadoutError(f"{path}: no rating column besides {path_column!r} (a rating column holds numbers "
                               "and empty cells only; name the columns with --targets to see which cell is wrong)")
    return [r[path_column] for r in rows], values
