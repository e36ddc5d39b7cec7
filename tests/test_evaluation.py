"""Metrics against brute-force definitions; report files; the paper's figures beside ours."""

import json
import math

import numpy as np
import pytest

from emonet_tf import evaluation


def brute_auc(scores, positives):
    pos, neg = scores[positives], scores[~positives]
    wins = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return wins / (pos.size * neg.size)


def test_auc_matches_pairwise_definition_with_ties():
    rng = np.random.default_rng(0)
    for _ in range(20):
        scores = rng.integers(0, 5, size=40).astype(float)  # many ties
        positives = rng.random(40) < 0.3
        if positives.all() or not positives.any():
            continue
        assert evaluation.roc_auc(scores, positives) == pytest.approx(brute_auc(scores, positives))
    assert evaluation.roc_auc(np.array([0.1, 0.9]), np.array([False, True])) == 1.0
    assert evaluation.roc_auc(np.array([0.5, 0.5]), np.array([False, True])) == 0.5
    assert math.isnan(evaluation.roc_auc(np.array([0.1, 0.2]), np.array([True, True])))


def test_metrics_absent_category_is_nan_and_excluded_from_mean():
    names = ["a", "b", "c"]
    probs = np.array([[0.7, 0.2, 0.1], [0.2, 0.7, 0.1], [0.6, 0.3, 0.1], [0.1, 0.8, 0.1]])
    labels = np.array([0, 1, 1, 1])  # "c" never occurs
    m = evaluation.classification_metrics(probs, labels, names)
    assert math.isnan(m["auc"]["c"])
    assert m["auc"]["a"] == pytest.approx(brute_auc(probs[:, 0], labels == 0))
    assert m["mean_auc"] == pytest.approx(np.mean([m["auc"]["a"], m["auc"]["b"]]))
    assert m["num_auc_categories"] == 2
    assert m["top1"] == pytest.approx(0.75)
    assert m["top5"] == 1.0  # top-k is capped at the number of classes
    assert m["confusion_matrix"] == [[1, 0, 0], [1, 2, 0], [0, 0, 0]]
    assert m["support"] == [1, 3, 0]


def test_top_k_and_video_level():
    probs = np.array([[0.5, 0.3, 0.2], [0.1, 0.2, 0.7], [0.2, 0.5, 0.3], [0.6, 0.1, 0.3]])
    labels = np.array([2, 2, 1, 1])
    assert evaluation.top_k_accuracy(probs, labels, 1) == 0.5
    assert evaluation.top_k_accuracy(probs, labels, 2) == 0.5  # rows 0 and 3 miss
    assert evaluation.top_k_accuracy(probs, np.array([1, 2, 1, 2]), 2) == 1.0
    m = evaluation.metrics_from_predictions(probs, labels, ["x", "y", "z"], video_ids=[b"v1", b"v1", b"v2", b"v2"])
    # v1 mean = [0.3, 0.25, 0.45] -> z (its label), v2 mean = [0.4, 0.3, 0.3] -> x (label y).
    assert m["video"]["num_videos"] == 2
    assert m["video"]["top1"] == 0.5
    with pytest.raises(ValueError, match="different labels"):
        evaluation.video_level(probs, np.array([0, 1, 1, 1]), ["v1", "v1", "v2", "v2"])


def test_bad_shapes_are_rejected():
    with pytest.raises(ValueError, match="N x 3"):
        evaluation.classification_metrics(np.zeros((2, 4)), np.zeros(2, int), ["a", "b", "c"])
    with pytest.raises(ValueError, match="labels must lie"):
        evaluation.classification_metrics(np.full((2, 3), 1 / 3), np.array([0, 3]), ["a", "b", "c"])


def test_report_files_and_paper_comparison(tmp_path):
    rng = np.random.default_rng(1)
    names = [f"c{i}" for i in range(20)]
    probs = rng.dirichlet(np.ones(20), size=60)
    labels = rng.integers(0, 19, size=60)  # c19 absent -> NaN -> null in JSON
    m = evaluation.metrics_from_predictions(probs, labels, names)
    paths = evaluation.write_report(m, str(tmp_path))
    saved = json.loads(open(paths["json"]).read())
    assert saved["auc"]["c19"] is None and saved["top1"] == pytest.approx(m["top1"])
    for key in ("confusion", "auc"):
        with open(paths[key], "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    text = evaluation.format_report(m)
    assert "0.2309" in text and "0.6260" in text and "0.7450" in text and "0.2795" in text


# ------------------------------------------------------------------------------------------------
# The scikit-learn implementation against numbers frozen from the previous, hand-written one
# (commit 4d50145: average-rank Mann-Whitney AUC, stable-argsort top-k), computed on 2026-12-01.


def _tied_scores():
    """80 rows of integer scores 0..5 over 20 classes (ties in almost every row); class 19 is absent."""
    rng = np.random.default_rng(11)
    return rng.integers(0, 6, size=(80, 20)).astype(float), rng.integers(0, 20, size=80)


FROZEN_TOP_K = {1: 0.075, 2: 0.175, 3: 0.2375, 5: 0.325}
FROZEN_AUC = [
    0.5641447368421053,
    0.2565789473684211,
    0.42367906066536204,
    0.6762820512820513,
    0.5575657894736842,
    0.974025974025974,
    0.37335526315789475,
    0.6037181996086106,
    0.2564102564102564,
    0.39144736842105265,
    0.5106666666666667,
    0.4053819444444444,
    0.48085585585585583,
    0.40315315315315314,
    0.8012820512820513,
    0.5789473684210527,
    0.6835443037974683,
    0.38782051282051283,
    0.8173333333333334,
    math.nan,
]


def test_sklearn_metrics_equal_the_previous_implementation_with_ties():
    scores, labels = _tied_scores()
    for k, value in FROZEN_TOP_K.items():
        assert evaluation.top_k_accuracy(scores, labels, k) == value
    m = evaluation.classification_metrics(scores, labels, [f"c{i}" for i in range(20)])
    np.testing.assert_allclose([m["auc"][f"c{i}"] for i in range(20)], FROZEN_AUC, rtol=0, atol=1e-14)
    assert m["mean_auc"] == pytest.approx(0.5340101493173659, abs=1e-14)
    expected = np.zeros((20, 20), int)
    np.add.at(expected, (labels, scores.argmax(axis=1)), 1)
    assert m["confusion_matrix"] == expected.tolist()
    # Top-1 is the confusion matrix's trace / N: ties go to the lower index in both.
    assert m["top1"] == np.trace(expected) / labels.size


def test_top_k_tie_convention_and_agreement_with_sklearn_without_ties():
    from sklearn.metrics import top_k_accuracy_score

    # A tie between classes 0 and 1 (and 2): the lower index wins, as np.argmax and MATLAB's max/sort.
    probs = np.array([[0.4, 0.4, 0.2], [1 / 3, 1 / 3, 1 / 3]])
    assert evaluation.top_k_accuracy(probs, np.array([0, 0]), 1) == 1.0
    assert evaluation.top_k_accuracy(probs, np.array([1, 1]), 1) == 0.0
    assert evaluation.top_k_accuracy(probs, np.array([1, 1]), 2) == 1.0
    assert evaluation.top_k_accuracy(probs, np.array([2, 2]), 2) == 0.0
    # sklearn's own order prefers the higher index (documented in top_k_accuracy_score).
    assert top_k_accuracy_score([0, 0], probs, k=1, labels=[0, 1, 2]) == 0.0
    # Without ties both conventions are the same number.
    rng = np.random.default_rng(3)
    scores, labels = rng.random((50, 7)), rng.integers(0, 7, 50)
    for k in (1, 2, 3, 6):
        assert evaluation.top_k_accuracy(scores, labels, k) == top_k_accuracy_score(
            labels, scores, k=k, labels=np.arange(7)
        )
    # Two classes: top-1 is argmax accuracy, on probabilities or logits alike.
    two = np.array([[0.9, 0.1], [0.2, 0.8], [0.5, 0.5]])
    assert evaluation.top_k_accuracy(two, np.array([0, 0, 0]), 1) == pytest.approx(2 / 3)
    assert evaluation.top_k_accuracy(np.log(two) - 3.0, np.array([0, 0, 0]), 1) == pytest.approx(2 / 3)
