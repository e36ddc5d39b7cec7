"""emonet_tf.brain.behaviour: discriminable clusters, components for 95 % variance, clip classification."""

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

from emonet_tf.brain.behaviour import (
    classify_clips,
    components_for_variance,
    confusion_from_labels,
    discriminable_clusters,
    pool_clip_features,
)


def _chance_block(seed, n=200, acc=0.9):
    """20 classes: 0-9 predicted right with probability acc (else at random), 10-19 predicted at random."""
    rng = np.random.default_rng(seed)
    true = np.repeat(np.arange(20), n)
    pred = rng.integers(20, size=len(true))
    hit = (true < 10) & (rng.random(len(true)) < acc)
    pred[hit] = true[hit]
    return confusion_from_labels(true, pred)


GROUPS = np.array([0, 0, 1, 1, 1, 2, 3, 4, 4, 5, 6, 7, 7, 8, 9, 9, 10, 10, 10, 10])  # 11 groups of 20 classes


def _confusable_groups(seed, n=60):
    """Each class is predicted as a random member of its group (80 %) or a random class (20 %)."""
    rng = np.random.default_rng(seed)
    true = np.repeat(np.arange(20), n)
    pred = np.empty_like(true)
    for i, t in enumerate(true):
        members = np.flatnonzero(GROUPS == GROUPS[t])
        pred[i] = rng.choice(members) if rng.random() < 0.8 else rng.integers(20)
    return confusion_from_labels(true, pred)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_chance_classes_merge_into_one_cluster(seed):
    # one-vs-all (CANlab's default): the 10 classes at chance end up in one cluster; it absorbs one of the
    # well-classified classes, which makes every cluster significant: K = 10, 9 singletons + the merged block.
    r = discriminable_clusters(_chance_block(seed), method="average")
    assert r.n_clusters == 10
    block = r.assignment[10:]
    assert np.all(block == block[0])
    others = r.assignment[:10]
    assert np.sum(others == block[0]) == 1
    assert len(np.unique(others)) == 10
    assert r.significant.all()
    assert r.clustered_confusion.sum() == 20 * 200


def test_perfect_classifier_gives_all_classes():
    r = discriminable_clusters(np.diag(np.full(20, 30)))
    assert r.n_clusters == 20
    assert len(np.unique(r.assignment)) == 20


@pytest.mark.parametrize("seed", [0, 1])
def test_pairwise_criterion_recovers_confusable_groups(seed):
    # CANlab's 'pairwise': each cluster against its most confused neighbour; groups of mutually confused classes
    # are exactly the planted 11.
    r = discriminable_clusters(_confusable_groups(seed), criterion="pairwise")
    assert r.n_clusters == 11
    assert adjusted_rand_score(GROUPS, r.assignment) == 1.0
    # one-vs-all keeps them apart: each class alone is well above its base rate of 5 %
    assert discriminable_clusters(_confusable_groups(seed)).n_clusters == 20


def test_random_predictions_give_few_clusters():
    # under the null, clusters chosen from the confusions are still biased upwards (CANlab notes it), but stay few
    ks = []
    for seed in range(5):
        rng = np.random.default_rng(100 + seed)
        true = np.repeat(np.arange(20), 60)
        ks.append(discriminable_clusters(confusion_from_labels(true, rng.integers(20, size=len(true)))).n_clusters)
    assert max(ks) <= 6, ks


def test_clustered_confusion_matches_label_remapping():
    # CANlab's own route: map every true and predicted label through the cluster assignment, then confusionmat
    rng = np.random.default_rng(3)
    true = rng.integers(8, size=500)
    pred = np.where(rng.random(500) < 0.5, true, rng.integers(8, size=500))
    r = discriminable_clusters(confusion_from_labels(true, pred, 8))
    expected = confusion_from_labels(r.assignment[true], r.assignment[pred], r.n_clusters)
    np.testing.assert_array_equal(r.clustered_confusion, expected)
    # binomial p of binotest.m: 2 * min(P(X <= hits), P(X >= hits)) with p0 = the cluster's base rate
    from scipy.stats import binom

    row = expected.sum(1)
    hits = np.diag(expected)
    p0 = row / row.sum()
    p = np.minimum(1, 2 * np.minimum(binom.cdf(hits, row, p0), binom.sf(hits - 1, row, p0)))
    np.testing.assert_allclose(r.p_values, p)


def test_bootstrap_interval():
    r = discriminable_clusters(_chance_block(0), method="average", n_boot=40, seed=0)
    assert r.bootstrap_k.shape == (40,)
    lo, hi = r.ci
    assert lo <= r.n_clusters <= hi
    # MATLAB bootci 'norm': bias-corrected normal interval
    centre = 2 * r.n_clusters - r.bootstrap_k.mean()
    half = 1.959963984540054 * r.bootstrap_k.std(ddof=1)
    np.testing.assert_allclose(r.ci, (centre - half, centre + half))
    rp = discriminable_clusters(_chance_block(0), method="average", n_boot=40, seed=0, ci_method="percentile")
    assert rp.ci[0] <= rp.ci[1]
    np.testing.assert_array_equal(rp.bootstrap_k, r.bootstrap_k)  # same seed, same samples


def test_discriminable_clusters_bad_input():
    with pytest.raises(ValueError, match="square"):
        discriminable_clusters(np.ones((3, 4)))
    with pytest.raises(ValueError, match="counts"):
        discriminable_clusters(np.full((3, 3), 1 / 3))
    with pytest.raises(ValueError, match="without any true example"):
        discriminable_clusters(np.array([[3, 1], [0, 0]]))
    with pytest.raises(ValueError, match="criterion"):
        discriminable_clusters(np.eye(3) * 5, criterion="nope")
    with pytest.raises(ValueError, match="non-negative"):
        discriminable_clusters(-np.eye(3))
    with pytest.raises(ValueError, match="true_labels"):
        confusion_from_labels([0, 1], [0])


def test_components_for_variance_planted_rank():
    rng = np.random.default_rng(0)
    scales = np.array([10, 8, 6, 5, 4, 3, 2.5, 2])  # 8 planted components
    latent = rng.standard_normal((2000, 8)) * scales
    basis = np.linalg.qr(rng.standard_normal((20, 20)))[0][:, :8]
    x = latent @ basis.T + 0.01 * rng.standard_normal((2000, 20))
    var = scales**2 / np.sum(scales**2)
    expected_95 = int(np.searchsorted(np.cumsum(var), 0.95) + 1)
    assert components_for_variance(x, 0.95) == expected_95
    assert components_for_variance(x, 0.9999) == 8
    assert components_for_variance(x, 1.0) <= 20
    with pytest.raises(ValueError, match="fraction"):
        components_for_variance(x, 0)
    with pytest.raises(ValueError, match="constant"):
        components_for_variance(np.ones((5, 3)))


def _slope_clips(seed, n_clips=30, n_frames=24, n_features=6):
    """Clips of 3 classes with the same mean but a rising slope over time on feature <class>."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(3), n_clips // 3)
    feats, ids, times, y = [], [], [], []
    for c, lab in enumerate(labels):
        t = np.arange(n_frames) / 5.0  # 5 frames per second, seconds
        x = rng.standard_normal((n_frames, n_features)) * 0.5
        x[:, lab] += t - t.mean()
        feats.append(x)
        ids += [f"clip{c:02d}"] * n_frames
        times.append(t)
        y += [lab] * n_frames
    return np.concatenate(feats), np.array(ids), np.concatenate(times), np.array(y)


def test_pool_clip_features_by_hand():
    x = np.array([[1.0, 0.0], [3.0, 2.0], [5.0, 4.0], [10.0, 1.0], [10.0, 1.0]])
    ids = np.array(["b", "b", "b", "a", "a"])
    t = np.array([0.0, 0.5, 1.0, 0.0, 2.0])
    pooled, clips = pool_clip_features(x, ids, times=t)
    assert list(clips) == ["a", "b"]
    np.testing.assert_allclose(pooled, [[10, 1, 0, 0], [3, 2, 4, 4]], atol=1e-12)  # means, then slopes per second
    with pytest.raises(ValueError, match="distinct"):
        pool_clip_features(x[:1], ids[:1])
    with pytest.raises(ValueError, match="pooling"):
        pool_clip_features(x, ids, pooling=("max",))


@pytest.mark.parametrize("classifier", ["pls", "logistic"])
def test_classify_clips_slope_is_what_separates(classifier):
    x, ids, t, y = _slope_clips(0)
    with_slope = classify_clips(x, ids, y, times=t, classifier=classifier, n_splits=5)
    mean_only = classify_clips(x, ids, y, times=t, pooling=("mean",), classifier=classifier, n_splits=5)
    assert with_slope.accuracy >= 0.9
    assert with_slope.mean_auc >= 0.95
    assert mean_only.accuracy <= 0.6  # chance is 1/3
    assert with_slope.confusion.sum() == 30 and with_slope.confusion.shape == (3, 3)
    assert np.trace(with_slope.confusion) == round(with_slope.accuracy * 30)
    assert with_slope.chance == pytest.approx(1 / 3)


def test_classify_clips_groups_never_split():
    x, ids, t, y = _slope_clips(1)
    clips = np.unique(ids)
    film = {c: i // 2 for i, c in enumerate(clips)}  # two clips per film
    r = classify_clips(x, ids, y, times=t, groups=film, n_splits=5)
    for f in set(film.values()):
        members = [i for i, c in enumerate(r.clips) if film[c] == f]
        assert len(set(r.folds[members])) == 1
    assert set(r.folds) == set(range(5))


def test_classify_clips_bad_labels():
    x, ids, t, y = _slope_clips(2)
    y2 = y.copy()
    y2[0] = 2
    with pytest.raises(ValueError, match="varies within clip"):
        classify_clips(x, ids, y2)
    with pytest.raises(ValueError, match="classifier"):
        classify_clips(x, ids, y, classifier="svm")


def test_plsda_is_an_sklearn_classifier():
    from sklearn.base import clone
    from sklearn.model_selection import cross_val_score

    from emonet_tf.brain.behaviour import PLSDAClassifier

    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(3), 30)
    x = rng.standard_normal((90, 5)) + 2.0 * np.eye(5)[y]
    model = clone(PLSDAClassifier(n_components=2))
    assert model.get_params() == {"n_components": 2, "scale": True}
    assert cross_val_score(model, x, y, cv=5).mean() > 0.8
    assert model.fit(x, y).decision_function(x).shape == (90, 3)


def test_permutation_p_value():
    # CANlab's 'perm': structureless confusions of the same accuracy keep all 20 classes apart, so K = 10 is
    # below every simulation (p at its floor 2 / (n_perm + 1)); a near-perfect classifier's K = 20 never is (p = 1)
    r = discriminable_clusters(_chance_block(0), method="average", n_perm=30, seed=0)
    assert r.n_clusters == 10 and np.all(r.permutation_k == 20)
    assert r.p_value == pytest.approx(2 / 31)
    perfect = discriminable_clusters(np.diag(np.full(20, 30)) + 1, n_perm=10, seed=0)
    assert perfect.n_clusters == 20 and perfect.p_value == 1.0
    assert discriminable_clusters(_chance_block(0)).p_value is None
