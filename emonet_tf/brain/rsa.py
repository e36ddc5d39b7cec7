"""Representational similarity analysis (RSA) of EmoNet layers against brain and behaviour RDMs.

- :func:`rdm`: the representational dissimilarity matrix (RDM) of any layer's features across images, frames
  or videos (frames averaged per video with ``groups``): correlation distance (1 - Pearson r) or Euclidean
  distance, with ``scipy.spatial.distance.pdist``.
- :func:`compare_rdms`: Spearman's rho, Kendall's tau-a (for models that predict tied dissimilarities, as
  rsatoolbox recommends: Nili et al. 2014, PLoS Comput Biol 10:e1003553) or Pearson r on the upper triangle.
- :func:`bootstrap_rdm_comparison`: bootstrap over stimuli (items resampled with replacement; pairs of an item
  with its own copy dropped, as ``rsatoolbox.rdm.RDMs.subsample_pattern`` does), over subjects, or both.
- :func:`to_rsatoolbox_rdms` / :func:`to_rsatoolbox_dataset`: the same data as ``rsatoolbox.rdm.RDMs`` and
  ``rsatoolbox.data.Dataset`` objects, for the rest of rsatoolbox (model fitting, noise ceilings, plots).

RDMs are square ``[n_items, n_items]`` float64 arrays (zero diagonal); every function that takes an RDM also
takes its condensed upper triangle (``scipy.spatial.distance.squareform``, length n_items * (n_items - 1) / 2).
numpy and scipy only at import; rsatoolbox is imported inside the export functions. No TensorFlow.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "rdm",
    "upper_triangle",
    "compare_rdms",
    "kendall_tau_a",
    "RDMBootstrap",
    "bootstrap_rdm_comparison",
    "to_rsatoolbox_rdms",
    "to_rsatoolbox_dataset",
]

METRICS = ("correlation", "euclidean")
METHODS = ("spearman", "kendall_tau_a", "pearson")


def _features_2d(features, name="features") -> np.ndarray:
    x = np.asarray(features, dtype=float)
    if x.ndim < 2:
        raise ValueError(f"{name} must be [n_items, n_features, ...], got shape {x.shape}")
    x = x.reshape(x.shape[0], -1)
    if x.shape[0] < 2 or x.shape[1] < 1:
        raise ValueError(f"{name} needs at least 2 items and 1 feature, got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{name} hold NaN or infinite values")
    return x


def _group_mean(x: np.ndarray, groups):
    g = np.asarray(groups)
    if g.shape != (x.shape[0],):
        raise ValueError(f"groups must be [n_items] = [{x.shape[0]}], got {g.shape}")
    names, inverse = np.unique(g, return_inverse=True)
    sums = np.zeros((len(names), x.shape[1]))
    np.add.at(sums, inverse, x)
    return sums / np.bincount(inverse)[:, None], names


def rdm(features, metric: str = "correlation", *, groups=None):
    """The RDM of a set of feature vectors.

    Args:
        features: float array [n_items, n_features] (or [n_items, ...], flattened per item), e.g. fc7 of 112
            images (``emonet_tf.EmoNet(model).activations(images, "fc7")``) or a brain pattern per image.
        metric: "correlation" (1 - Pearson r between items, 0 .. 2; rsatoolbox's "correlation") or "euclidean"
            (Euclidean distance, in feature units; rsatoolbox's "euclidean" is the squared distance divided by
            n_features, a monotonic transform that rank-based comparisons cannot tell apart).
        groups: optional [n_items] labels; rows sharing a label are averaged first (frames -> videos); the RDM
            is then ordered as ``numpy.unique(groups)``.

    Returns:
        float64 array [n_items, n_items] (or [n_groups, n_groups]), symmetric with a zero diagonal. With
        ``groups`` given, returns ``(rdm, group_names)``.

    Raises:
        ValueError: bad shape, non-finite values, unknown metric, or an item with constant features under the
            correlation distance (its correlation is undefined).
    """
    from scipy.spatial.distance import pdist, squareform

    x = _features_2d(features)
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
    names = None
    if groups is not None:
        x, names = _group_mean(x, groups)
        if x.shape[0] < 2:
            raise ValueError("groups must hold at least 2 distinct labels")
    if metric == "correlation":
        flat = np.flatnonzero(np.ptp(x, axis=1) == 0)
        if flat.size:
            raise ValueError(f"features of items {flat[:10].tolist()} are constant: correlation distance undefined")
    d = squareform(pdist(x, metric=metric))
    return (d, names) if groups is not None else d


def upper_triangle(rdm_or_vector, name: str = "the RDM") -> np.ndarray:
    """The condensed upper triangle (row-major, as ``scipy.spatial.distance.squareform``) of a square RDM.

    A 1-D input is returned as is (already condensed). Raises ValueError (naming `name`) when the matrix is
    not square and symmetric.
    """
    a = np.asarray(rdm_or_vector, dtype=float)
    if a.ndim == 1:
        n = (1 + np.sqrt(1 + 8 * a.size)) / 2
        if a.size < 1 or n != int(n):
            raise ValueError(f"{name}: a condensed RDM must have n * (n - 1) / 2 entries, got {a.size}")
        return a
    if a.ndim != 2 or a.shape[0] != a.shape[1] or a.shape[0] < 2:
        raise ValueError(f"{name}: an RDM must be square [n_items, n_items], n_items >= 2, got {a.shape}")
    if not np.allclose(a, a.T, equal_nan=True):
        raise ValueError(f"{name} is not symmetric")
    return a[np.triu_indices(a.shape[0], k=1)]


def kendall_tau_a(x, y) -> float:
    """Kendall's tau-a: (concordant - discordant pairs) / (n (n - 1) / 2), ties counted in neither.

    Unlike tau-b (``scipy.stats.kendalltau``'s default), the denominator is not reduced for ties, so a model that
    predicts tied dissimilarities (e.g. a categorical model RDM) is not favoured (Nili et al. 2014). Computed
    from scipy's tau-b: ``tau_a = tau_b * sqrt((n0 - n1) (n0 - n2)) / n0`` with n0 = n (n - 1) / 2 and n1, n2 the
    pairs tied in x and in y (the count of concordant minus discordant pairs rounded to its integer). Returns 0.0
    when x or y is constant.
    """
    from scipy.stats import kendalltau

    x = np.asarray(x, dtype=float).ravel()
    y = np.asarray(y, dtype=float).ravel()
    if x.shape != y.shape or x.size < 2:
        raise ValueError(f"x and y must be 1-D of one length >= 2, got {x.shape} and {y.shape}")
    n0 = x.size * (x.size - 1) / 2

    def tied_pairs(v):
        counts = np.unique(v, return_counts=True)[1].astype(float)
        return float(np.sum(counts * (counts - 1) / 2))

    n1, n2 = tied_pairs(x), tied_pairs(y)
    if n1 == n0 or n2 == n0:
        return 0.0
    tau_b = kendalltau(x, y, variant="b").statistic
    concordant_minus_discordant = np.round(tau_b * np.sqrt((n0 - n1) * (n0 - n2)))  # an integer count
    return float(np.clip(concordant_minus_discordant / n0, -1.0, 1.0))


def _compare_vectors(a: np.ndarray, b: np.ndarray, method: str) -> float:
    from scipy.stats import pearsonr, spearmanr

    keep = ~(np.isnan(a) | np.isnan(b))
    a, b = a[keep], b[keep]
    if a.size < 2:
        return float("nan")
    if method == "kendall_tau_a":
        return kendall_tau_a(a, b)
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    if method == "spearman":
        return float(spearmanr(a, b).statistic)
    return float(pearsonr(a, b).statistic)


def compare_rdms(a, b, method: str = "spearman") -> float:
    """Similarity of two RDMs on their upper triangles.

    Args:
        a, b: RDMs [n_items, n_items] or condensed vectors of one length. NaN entries (in either) are left out.
        method: "spearman" (``scipy.stats.spearmanr``; rsatoolbox "spearman"), "kendall_tau_a" (:func:`kendall_tau_a`;
            rsatoolbox "tau-a", for models with ties) or "pearson" (``scipy.stats.pearsonr``; rsatoolbox "corr").

    Returns:
        float in [-1, 1]; NaN when an RDM is constant (Spearman, Pearson).

    Raises:
        ValueError: shapes differ, not an RDM, or unknown method.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    va, vb = upper_triangle(a, "RDM a"), upper_triangle(b, "RDM b")
    if va.shape != vb.shape:
        raise ValueError(f"RDMs a and b differ in size: {va.size} and {vb.size} pairs")
    return _compare_vectors(va, vb, method)


@dataclass
class RDMBootstrap:
    """Result of :func:`bootstrap_rdm_comparison`.

    Attributes:
        estimate: the comparison on all data (mean over subjects of each subject's comparison).
        samples: float array [n_boot], the comparison in each bootstrap sample (NaN where undefined).
        ci: (low, high) percentile interval of the samples.
        se: standard deviation of the samples (the bootstrap standard error).
        over: what was resampled ("stimuli", "subjects" or "both").
    """

    estimate: float
    samples: np.ndarray
    ci: tuple[float, float]
    se: float
    over: str


def _square(r, name) -> np.ndarray:
    from scipy.spatial.distance import squareform

    a = np.asarray(r, dtype=float)
    if a.ndim == 1:
        return squareform(upper_triangle(a), checks=False)
    upper_triangle(a)  # validates
    return a


def bootstrap_rdm_comparison(
    model_rdm,
    data_rdms,
    *,
    method: str = "spearman",
    over: str = "stimuli",
    n_boot: int = 1000,
    ci: float = 0.95,
    seed=None,
) -> RDMBootstrap:
    """Bootstrap distribution of the comparison of a model RDM with one or several (per-subject) data RDMs.

    The estimate is the mean over subjects of ``compare_rdms(model_rdm, data_rdms[s], method)`` (rsatoolbox's
    evaluation: the mean of per-RDM comparisons). Resampling (rsatoolbox ``inference.bootstrap_sample*``):

    - ``over="stimuli"``: the items are drawn with replacement (the same draw for the model and every subject);
      the RDMs are re-indexed with the drawn items and every pair of an item with a copy of itself is dropped
      (its zero dissimilarity is trivially predicted; rsatoolbox sets those entries to NaN).
    - ``over="subjects"``: the subjects are drawn with replacement (needs >= 2 subjects).
    - ``over="both"``: subjects and items, as ``rsatoolbox.inference.bootstrap_sample``.

    Args:
        model_rdm: [n_items, n_items] or condensed.
        data_rdms: one RDM ([n_items, n_items] or condensed) or a stack [n_subjects, n_items, n_items] /
            [n_subjects, n_pairs].
        method: as :func:`compare_rdms`.
        over: "stimuli", "subjects" or "both".
        n_boot: number of bootstrap samples (>= 1).
        ci: coverage of the percentile interval.
        seed: seed of numpy's default_rng.

    Raises:
        ValueError: sizes differ, fewer than 2 subjects with ``over`` = "subjects"/"both", bad options.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if over not in ("stimuli", "subjects", "both"):
        raise ValueError(f"over must be 'stimuli', 'subjects' or 'both', got {over!r}")
    if int(n_boot) < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    if not 0 < ci < 1:
        raise ValueError(f"ci must be in (0, 1), got {ci}")
    model = _square(model_rdm, "model_rdm")
    n = model.shape[0]
    d = np.asarray(data_rdms, dtype=float)
    single = d.ndim == 1 or (d.ndim == 2 and d.shape == (n, n) and np.allclose(d, d.T, equal_nan=True))
    stack = [d] if single else list(d)
    data = np.stack([_square(s, "data_rdms") for s in stack])
    if data.shape[1:] != (n, n):
        raise ValueError(f"data_rdms have {data.shape[1]} items, model_rdm has {n}")
    n_subjects = data.shape[0]
    if over in ("subjects", "both") and n_subjects < 2:
        raise ValueError("bootstrapping over subjects needs data_rdms of at least 2 subjects")

    iu = np.triu_indices(n, k=1)

    def evaluate(items, subjects):
        if items is None:
            rows, cols = iu
        else:
            items = np.sort(items)
            i, j = np.triu_indices(len(items), k=1)
            keep = items[i] != items[j]  # drop an item paired with a copy of itself
            rows, cols = items[i[keep]], items[j[keep]]
        vm = model[rows, cols]
        return np.nanmean([_compare_vectors(vm, data[s][rows, cols], method) for s in subjects])

    estimate = float(evaluate(None, range(n_subjects)))
    rng = np.random.default_rng(seed)
    samples = np.empty(int(n_boot))
    for b in range(int(n_boot)):
        items = rng.integers(n, size=n) if over in ("stimuli", "both") else None
        subjects = rng.integers(n_subjects, size=n_subjects) if over in ("subjects", "both") else range(n_subjects)
        samples[b] = evaluate(items, subjects)
    q = np.nanquantile(samples, [0.5 - ci / 2, 0.5 + ci / 2])
    return RDMBootstrap(
        estimate=estimate,
        samples=samples,
        ci=(float(q[0]), float(q[1])),
        se=float(np.nanstd(samples, ddof=1)) if n_boot > 1 else float("nan"),
        over=over,
    )


def to_rsatoolbox_rdms(rdms, *, measure: str = "correlation", item_names=None, rdm_names=None):
    """RDMs as an ``rsatoolbox.rdm.RDMs`` object.

    Args:
        rdms: one RDM [n_items, n_items] / condensed, or a stack [n_rdms, n_items, n_items] / [n_rdms, n_pairs].
        measure: the ``dissimilarity_measure`` recorded in the object (e.g. "correlation", "euclidean").
        item_names: optional [n_items] names, stored as the pattern descriptor "item".
        rdm_names: optional [n_rdms] names (e.g. subjects, layers), stored as the rdm descriptor "name".

    Raises:
        ValueError: not RDMs, or names of the wrong length.
    """
    from rsatoolbox.rdm import RDMs

    a = np.asarray(rdms, dtype=float)
    if a.ndim == 1 or (a.ndim == 2 and a.shape[0] == a.shape[1] and np.allclose(a, a.T, equal_nan=True)):
        a = a[None]
    vectors = np.stack([upper_triangle(r) for r in a])
    n_items = int(round((1 + np.sqrt(1 + 8 * vectors.shape[1])) / 2))
    pattern_descriptors = {"index": list(range(n_items))}
    if item_names is not None:
        if len(item_names) != n_items:
            raise ValueError(f"item_names must have {n_items} entries, got {len(item_names)}")
        pattern_descriptors["item"] = list(item_names)
    rdm_descriptors = {"index": list(range(len(vectors)))}
    if rdm_names is not None:
        if len(rdm_names) != len(vectors):
            raise ValueError(f"rdm_names must have {len(vectors)} entries, got {len(rdm_names)}")
        rdm_descriptors["name"] = list(rdm_names)
    return RDMs(
        dissimilarities=vectors,
        dissimilarity_measure=measure,
        rdm_descriptors=rdm_descriptors,
        pattern_descriptors=pattern_descriptors,
    )


def to_rsatoolbox_dataset(features, *, item_names=None, feature_names=None, descriptors=None):
    """Features [n_items, n_features] (flattened per item) as an ``rsatoolbox.data.Dataset``.

    ``item_names`` become the observation descriptor "item" (default 0 .. n_items-1), ``feature_names`` the
    channel descriptor "name"; ``descriptors`` (a dict, e.g. {"layer": "fc7", "subject": 3}) is stored as is.
    ``rsatoolbox.rdm.calc_rdm(dataset, method="correlation", descriptor="item")`` then gives :func:`rdm`'s RDM.
    """
    from rsatoolbox.data import Dataset

    x = _features_2d(features)
    items = list(range(x.shape[0])) if item_names is None else list(item_names)
    if len(items) != x.shape[0]:
        raise ValueError(f"item_names must have {x.shape[0]} entries, got {len(items)}")
    channels = {}
    if feature_names is not None:
        if len(feature_names) != x.shape[1]:
            raise ValueError(f"feature_names must have {x.shape[1]} entries, got {len(feature_names)}")
        channels["name"] = list(feature_names)
    return Dataset(
        measurements=x,
        descriptors=dict(descriptors or {}),
        obs_descriptors={"item": items},
        channel_descriptors=channels or None,
    )
