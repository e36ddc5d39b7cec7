"""emonet_tf.brain.rsa: RDMs, comparisons (checked against rsatoolbox's own numbers), bootstrap, export."""

import numpy as np
import pytest

from emonet_tf.brain.rsa import (
    bootstrap_rdm_comparison,
    compare_rdms,
    kendall_tau_a,
    rdm,
    to_rsatoolbox_dataset,
    to_rsatoolbox_rdms,
    upper_triangle,
)

rsatoolbox = pytest.importorskip("rsatoolbox")


def _two_clusters(seed, n_per=10, n_features=50, separation=1.0, noise=1.0):
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((2, n_features)) * separation
    labels = np.repeat([0, 1], n_per)
    return centres[labels] + noise * rng.standard_normal((2 * n_per, n_features)), labels


def _category_model(labels):
    return (labels[:, None] != labels[None, :]).astype(float)  # 0 within, 1 between: many ties


@pytest.mark.parametrize("metric", ["correlation", "euclidean"])
def test_planted_clusters_recovered(metric):
    from scipy.cluster.hierarchy import fcluster, linkage
    from sklearn.metrics import adjusted_rand_score

    x, labels = _two_clusters(0, separation=2.0)
    d = rdm(x, metric)
    between = _category_model(labels) == 1
    within = ~between & ~np.eye(20, dtype=bool)
    assert d[within].max() < d[between].min()
    found = fcluster(linkage(upper_triangle(d), "average"), 2, criterion="maxclust")
    assert adjusted_rand_score(labels, found) == 1.0
    np.testing.assert_allclose(np.diag(d), 0)
    np.testing.assert_allclose(d, d.T)
    assert compare_rdms(_category_model(labels), d, "spearman") > 0.8
    assert compare_rdms(_category_model(labels), d, "kendall_tau_a") > 0.4  # tau-a is capped by the model's ties


def test_rdm_matches_rsatoolbox_calc_rdm():
    x, _ = _two_clusters(1, n_per=6, n_features=30)
    ds = to_rsatoolbox_dataset(x, item_names=[f"img{i:03d}" for i in range(12)], descriptors={"layer": "fc7"})
    corr = rsatoolbox.rdm.calc_rdm(ds, method="correlation", descriptor="item").get_matrices()[0]
    np.testing.assert_allclose(rdm(x, "correlation"), corr, atol=1e-12)
    # rsatoolbox's "euclidean" is the squared distance / n_features
    sq = rsatoolbox.rdm.calc_rdm(ds, method="euclidean", descriptor="item").get_matrices()[0]
    np.testing.assert_allclose(rdm(x, "euclidean") ** 2 / 30, sq, atol=1e-12)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_comparisons_match_rsatoolbox_compare(seed):
    x, labels = _two_clusters(seed, n_per=8, separation=0.3)
    data = rdm(x)
    model = _category_model(labels)
    graded = rdm(np.random.default_rng(seed + 10).standard_normal((16, 5)))
    for ours, theirs in (("spearman", "spearman"), ("kendall_tau_a", "tau-a"), ("pearson", "corr")):
        for m in (model, graded):
            expected = rsatoolbox.rdm.compare(to_rsatoolbox_rdms(m), to_rsatoolbox_rdms(data), method=theirs)[0, 0]
            assert compare_rdms(m, data, ours) == pytest.approx(expected, abs=1e-12), (ours, seed)


def test_tau_a_is_not_tau_b_under_ties():
    from scipy.stats import kendalltau

    x = np.array([0, 0, 0, 1, 1, 1, 1, 2.0])
    y = np.array([1, 2, 3, 4, 5, 6, 8, 7.0])
    # by hand: 28 pairs; x ties 3 + 6 = 9 pairs (neither concordant nor discordant); of the other 19, one is
    # discordant (x 1 -> 2 while y 8 -> 7), 18 concordant: tau-a = (18 - 1) / 28
    assert kendall_tau_a(x, y) == pytest.approx(17 / 28)
    assert kendalltau(x, y).statistic > kendall_tau_a(x, y)  # tau-b rewards the tied model
    assert kendall_tau_a(np.ones(5), np.arange(5)) == 0.0
    assert kendall_tau_a(np.arange(6), np.arange(6)[::-1]) == -1.0


def test_null_comparison_is_about_zero():
    rng = np.random.default_rng(5)
    values = []
    for _ in range(20):
        a = rdm(rng.standard_normal((40, 20)))
        b = rdm(rng.standard_normal((40, 20)))
        values.append(compare_rdms(a, b))
    assert abs(np.mean(values)) < 0.03
    assert np.max(np.abs(values)) < 0.15


def test_bootstrap_over_stimuli_drops_self_pairs_as_rsatoolbox():
    x, labels = _two_clusters(3, n_per=6, separation=0.5)
    data, model = rdm(x), _category_model(labels)
    boot = bootstrap_rdm_comparison(model, data, method="kendall_tau_a", over="stimuli", n_boot=5, seed=7)
    assert boot.estimate == pytest.approx(compare_rdms(model, data, "kendall_tau_a"))
    rng = np.random.default_rng(7)  # the b-th sample uses the b-th draw of the seeded generator
    for b in range(5):
        items = rng.integers(12, size=12)
        sub_m = to_rsatoolbox_rdms(model).subsample_pattern("index", items)
        sub_d = to_rsatoolbox_rdms(data).subsample_pattern("index", items)
        expected = rsatoolbox.rdm.compare(sub_m, sub_d, method="tau-a")[0, 0]
        assert boot.samples[b] == pytest.approx(expected, abs=1e-12)


def test_bootstrap_intervals():
    rng = np.random.default_rng(11)
    x, labels = _two_clusters(4, n_per=10, separation=1.0)
    model = _category_model(labels)
    subjects = np.stack([rdm(x + 1.0 * rng.standard_normal(x.shape)) for _ in range(6)])
    for over in ("stimuli", "subjects", "both"):
        boot = bootstrap_rdm_comparison(model, subjects, over=over, n_boot=200, seed=0)
        lo, hi = boot.ci
        assert lo < boot.estimate < hi and lo > 0, (over, boot.ci)
        assert boot.se > 0
    # the null: the model against unrelated data RDMs; the interval covers 0
    null = np.stack([rdm(rng.standard_normal(x.shape)) for _ in range(6)])
    boot = bootstrap_rdm_comparison(model, null, over="both", n_boot=200, seed=0)
    assert boot.ci[0] < 0 < boot.ci[1]
    assert abs(boot.estimate) < 0.1


def test_grouped_frames_to_videos():
    rng = np.random.default_rng(2)
    frames = rng.standard_normal((9, 4))
    ids = np.array(["v2", "v1", "v2", "v3", "v1", "v3", "v3", "v1", "v2"])
    d, names = rdm(frames, "euclidean", groups=ids)
    assert list(names) == ["v1", "v2", "v3"]
    means = np.stack([frames[ids == v].mean(0) for v in names])
    np.testing.assert_allclose(d, rdm(means, "euclidean"))


def test_export_objects():
    x, labels = _two_clusters(6, n_per=4)
    ds = to_rsatoolbox_dataset(x, feature_names=[f"unit{i}" for i in range(50)])
    assert isinstance(ds, rsatoolbox.data.Dataset) and ds.n_obs == 8 and ds.n_channel == 50
    stack = np.stack([rdm(x), rdm(x, "euclidean")])
    obj = to_rsatoolbox_rdms(stack, measure="mixed", rdm_names=["corr", "euc"], item_names=list("abcdefgh"))
    assert isinstance(obj, rsatoolbox.rdm.RDMs) and obj.n_rdm == 2 and obj.n_cond == 8
    np.testing.assert_allclose(obj.get_matrices(), stack)
    assert obj.pattern_descriptors["item"] == list("abcdefgh")
    np.testing.assert_allclose(to_rsatoolbox_rdms(upper_triangle(stack[0])).get_matrices()[0], stack[0])


def test_bad_input():
    with pytest.raises(ValueError, match="metric"):
        rdm(np.ones((3, 2)) + np.arange(2), "cosine")
    with pytest.raises(ValueError, match="constant"):
        rdm(np.ones((3, 4)))
    with pytest.raises(ValueError, match="features"):
        rdm(np.ones(4))
    with pytest.raises(ValueError, match="differ in size"):
        compare_rdms(rdm(np.random.rand(4, 3)), rdm(np.random.rand(5, 3)))
    with pytest.raises(ValueError, match="symmetric"):
        upper_triangle(np.arange(9.0).reshape(3, 3))
    with pytest.raises(ValueError, match="method"):
        compare_rdms(np.ones(3), np.ones(3), "cosine")
    with pytest.raises(ValueError, match="at least 2 subjects"):
        bootstrap_rdm_comparison(np.ones(3), np.arange(3.0), over="subjects")
