"""Valence/arousal read-outs: the shipped emonet-py coefficients, PLS/ridge fitting and coefficient files."""
from __future__ import annotations

import json

import numpy as np
import pytest

from emonet_tf import affect
from emonet_tf.categories import EMONET_CATEGORIES

# emonet-py 1.0.8 emonet_valence.py / emonet_arousal.py, typed again here from emonet_reference.md section 7.2.
VALENCE = (3.2963, [0.5990, 0.4576, 0.3248, -0.0634, 0.0035, 0.0560, 0.1163, -0.1370, -0.7719, -0.1210,
                    -0.1862, 0.0214, -0.3015, -0.3680, 0.2467, -0.2335, 0.1096, -0.3858, 0.1538, 0.5741])
AROUSAL = (6.5139, [-0.0910, -0.0121, -0.3154, 0.0152, 0.3949, -0.2019, -0.1216, -0.1029, 0.0637, 0.0037,
                    -0.1700, 0.0736, 0.2145, 0.1670, -0.2425, -0.0555, 0.1480, 0.1390, 0.1877, -0.0824])


def test_shipped_readouts_equal_a_direct_numpy_computation():
    readouts = affect.emonet_py_readouts()
    logits = np.random.default_rng(0).normal(0, 3, size=(7, 20))
    for name, (bias, weights) in (("valence", VALENCE), ("arousal", AROUSAL)):
        direct = np.array([bias + sum(w * v for w, v in zip(weights, row)) for row in logits])
        np.testing.assert_allclose(readouts[name].predict(logits), direct, rtol=1e-12)
        np.testing.assert_allclose(readouts[name].predict(logits[0]), direct[0], rtol=1e-12)
    # Category order: the weights are named, e.g. the strongest negative valence weight is Disgust.
    valence = readouts["valence"]
    assert valence.class_names == EMONET_CATEGORIES
    assert EMONET_CATEGORIES[int(np.argmin(valence.weights))] == "Disgust"
    assert EMONET_CATEGORIES[int(np.argmax(readouts["arousal"].weights))] == "Awe"
    with pytest.raises(affect.ReadoutError, match="20 fc8 values"):
        valence.predict(np.zeros((2, 19)))


def test_pls_with_all_components_is_least_squares_and_ridge_shrinks():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(80, 20)) @ rng.normal(size=(20, 20)) + 2.0
    y = rng.normal(size=80)
    coef, bias = affect.pls1_fit(x, y, 20)
    ols = np.linalg.lstsq(np.c_[np.ones(80), x], y, rcond=None)[0]
    np.testing.assert_allclose(coef, ols[1:], atol=1e-8)
    assert bias == pytest.approx(ols[0], abs=1e-8)
    errors = [np.mean((affect.pls1_fit(x, y, k)[1] + x @ affect.pls1_fit(x, y, k)[0] - y) ** 2) for k in (1, 3, 10)]
    assert errors[0] > errors[1] > errors[2]  # more components fit the training data better
    tiny, _ = affect.ridge_fit(x, y, 1e-10)
    np.testing.assert_allclose(tiny, ols[1:], atol=1e-5)
    big, big_bias = affect.ridge_fit(x, y, 1e6)
    assert np.abs(big).max() < 1e-4 and big_bias == pytest.approx(y.mean() - x.mean(0) @ big)


@pytest.mark.parametrize("method", ["auto", "pls", "ridge"])
def test_fit_recovers_a_known_linear_map(method):
    rng = np.random.default_rng(2)
    # Correlated "logits", like fc8 outputs, and a known read-out plus rating noise.
    x = rng.normal(size=(300, 20)) @ (np.eye(20) + 0.1 * rng.normal(size=(20, 20))) + rng.normal(0, 2, 20)
    true_w, true_b = rng.normal(0, 0.5, 20), 4.2
    y = true_b + x @ true_w + rng.normal(0, 0.05, 300)
    fit = affect.fit_readout(x, y, name="valence", method=method, folds=10)
    np.testing.assert_allclose(fit.weights, true_w, atol=0.03)
    assert fit.bias == pytest.approx(true_b, abs=0.1)
    assert fit.cv["r"] > 0.999 and fit.cv["rmse"] < 0.08 and fit.cv["folds"] == 10 and fit.cv["nested"]
    assert len(fit.cv["outer_fold_choices"]) == 10
    assert method == "auto" or fit.method == method


def test_fixed_parameters_and_noise_only_ratings():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(60, 20))
    fit = affect.fit_readout(x, x[:, 0] * 2 + 1, method="pls", n_components=3, folds=5)
    assert fit.params == {"method": "pls", "n_components": 3} and not fit.cv["nested"]
    noise = affect.fit_readout(x, rng.normal(size=60), folds=5)
    assert abs(noise.cv["r"]) < 0.5  # no signal: cross-validation must not report one
    with pytest.raises(ValueError, match="too few"):
        affect.fit_readout(x[:3], np.arange(3.0))


def test_stratified_folds_are_balanced_over_the_rating_range():
    y = np.random.default_rng(4).normal(size=103)
    folds = affect.stratified_folds(y, 10, seed=0)
    sizes = np.bincount(folds, minlength=10)
    assert sizes.min() >= 10 and sizes.max() <= 11
    ranks = np.argsort(np.argsort(y))
    mean_rank = [ranks[folds == f].mean() for f in range(10)]
    assert max(mean_rank) - min(mean_rank) < 20  # each fold spans the range, not a slice of it


def test_coefficient_file_round_trip_matches_weights_by_name(tmp_path):
    rng = np.random.default_rng(5)
    x = rng.normal(size=(40, 20))
    fitted = {"valence": affect.fit_readout(x, x @ rng.normal(size=20), name="valence", folds=4)}
    path = tmp_path / "coef.json"
    affect.save_readouts(fitted, str(path), ratings_file="r.csv")
    loaded = affect.load_readouts(str(path))
    np.testing.assert_allclose(loaded["valence"].predict(x), fitted["valence"].predict(x), rtol=1e-12)
    # Weights are keyed by category name: reordering the JSON does not change the read-out.
    doc = json.loads(path.read_text())
    doc["readouts"]["valence"]["weights"] = dict(reversed(list(doc["readouts"]["valence"]["weights"].items())))
    path.write_text(json.dumps(doc))
    np.testing.assert_allclose(affect.load_readouts(str(path))["valence"].predict(x), fitted["valence"].predict(x))
    del doc["readouts"]["valence"]["weights"]["Awe"]
    path.write_text(json.dumps(doc))
    with pytest.raises(affect.ReadoutError, match="no weight for Awe"):
        affect.load_readouts(str(path))
    (tmp_path / "other.json").write_text('{"valence": 1}')
    with pytest.raises(affect.ReadoutError, match="not an emonet_tf read-out file"):
        affect.load_readouts(str(tmp_path / "other.json"))
    with pytest.raises(affect.ReadoutError, match="expects the outputs"):
        affect.check_class_names(loaded, ["a", "b"])


def test_read_ratings_detects_the_file_column_and_numeric_ratings(tmp_path):
    table = tmp_path / "ratings.csv"
    table.write_text("Filename,valence,arousal,comment\na.jpg,5.5,3,nice\nb.jpg,2,7.25,bad\n", encoding="utf-8")
    names, ratings = affect.read_ratings(str(table))
    assert names == ["a.jpg", "b.jpg"] and list(ratings) == ["valence", "arousal"]
    np.testing.assert_array_equal(ratings["arousal"], [3.0, 7.25])
    names, ratings = affect.read_ratings(str(table), targets=["Valence"])
    assert list(ratings) == ["Valence"]
    with pytest.raises(affect.ReadoutError, match="not a number"):
        affect.read_ratings(str(table), targets=["comment"])
    with pytest.raises(affect.ReadoutError, match="no rating column 'dominance'"):
        affect.read_ratings(str(table), targets=["dominance"])
    (tmp_path / "bad.csv").write_text("x,y\n1,2\n")
    with pytest.raises(affect.ReadoutError, match="no file column"):
        affect.read_ratings(str(tmp_path / "bad.csv"))


def test_read_ratings_keeps_columns_with_missing_cells_and_names_bad_cells(tmp_path):
    table = tmp_path / "ratings.csv"
    table.write_text("file,valence,arousal\na.jpg,5,\nb.jpg,NA,2\nc.jpg,3,4\n", encoding="utf-8")
    names, ratings = affect.read_ratings(str(table))
    assert list(ratings) == ["valence", "arousal"]
    np.testing.assert_array_equal(np.isnan(ratings["valence"]), [False, True, False])
    np.testing.assert_array_equal(np.isnan(ratings["arousal"]), [True, False, False])
    (tmp_path / "typo.csv").write_text("file,valence\na.jpg,5\nb.jpg,five\n", encoding="utf-8")
    with pytest.raises(affect.ReadoutError, match=r"line 3, column 'valence': 'five' is not a number"):
        affect.read_ratings(str(tmp_path / "typo.csv"), targets=["valence"])
    with pytest.raises(affect.ReadoutError, match="no rating column besides 'file'"):
        affect.read_ratings(str(tmp_path / "typo.csv"))
