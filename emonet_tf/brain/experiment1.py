"""The paper's fMRI experiment I as one call: single-trial patterns of N subjects x 112 images -> EmoNet fc8.

    from emonet_tf.brain.experiment1 import experiment_one
    res = experiment_one(patterns, fc8, labels="fc8_argmax")    # patterns [n_subjects, n_images, n_voxels]
    print(res.report())                                          # next to the paper's numbers
    res.mean_r, res.r, res.confusion, res.sensitivity, res.n_discriminable

and as a command (docs/brain.md):

    emonet brain experiment1 --patterns patterns.npy --fc8 fc8.npy [--labels labels.csv] --out DIR

The analysis (Kragel, Reddan, LaBar & Wager 2019, Science Advances 5:eaaw4358, experiment I; 18 people, 112
IAPS/GAPED images of 4 s, single-trial betas of 7,214 occipital voxels):

1. Decoding by partial least squares from voxels to the 20 fc8 units, leave-one-subject-out (LOSO): each fold
   trains one PLSRegression (emonet_tf.brain.models, centred, not scaled, as MATLAB's plsregress) on the
   trials of N-1 subjects (rows: subject x image, targets: the image's fc8) and predicts the left-out subject's
   fc8 from its own patterns. So voxels must be in a common space (same mask, e.g. MNI) for all subjects.
2. r per category (fc8 unit) per subject: Pearson r across the images between predicted and true fc8; the
   subject's mean over the 20 units; mean +/- SE over subjects and Cohen's d = mean / SD over subjects
   (paper: 0.2819 +/- 0.0163, d = 3.00).
3. The 20 x 20 correlation-decoding confusion: a predicted fc8 vector is assigned to the category whose
   template it correlates with best (Pearson r over the 20 units); a category's template is the mean true fc8
   of the images of that category. `decode="category"` (default): per subject, the predicted fc8 averaged over
   the images of each category is decoded, one decision per subject and category (18 x 20 = 360 in the paper;
   its 66.67 % sensitivity is 240 / 360, which single images, 18 x 112, would hardly give as a mean of per-category
   rates: this is our reading, the paper does not spell it out); `decode="image"`: every image's prediction is
   decoded. Rows are the true category (`labels`), counts summed over subjects. Per category from that confusion:
   sensitivity TP/(TP+FN), specificity TN/(TN+FP), PPV TP/(TP+FP); the summary is their mean +/- SE over
   categories (paper: 66.67 +/- 11.4 %, 97.37 +/- 0.88 %, 65.45 +/- 10.4 %; chance about 5 %). Categories with
   no image have no row and no template (NaN metrics).
4. The number of discriminable categories of that confusion: emonet_tf.brain.behaviour.discriminable_clusters
   (CANlab's cluster_confusion_matrix idea; paper: at least 15, 95 % CI 15-17).

Which of these details the paper states and which are this library's choices is listed in docs/brain.md
(the paper gives no number of PLS components here; the default, 20, is the number of fc8 units).
This module imports numpy only at the top (scikit-learn and the others on first use), so `emonet --help` stays
fast; no TensorFlow.
"""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import dataclass, field
from typing import Optional, Sequence, Union

import numpy as np

#: The paper's experiment-I numbers (Kragel et al. 2019, Science Advances 5:eaaw4358, Results, experiment I).
PAPER = {
    "n_subjects": 18,
    "n_images": 112,
    "n_voxels": 7214,
    "mean_r": 0.2819,
    "se_r": 0.0163,
    "cohens_d": 3.00,
    "sensitivity": (66.67, 11.4),
    "specificity": (97.37, 0.88),
    "ppv": (65.45, 10.4),
    "n_discriminable": 15,
    "n_discriminable_ci": (15, 17),
}
DEFAULT_N_COMPONENTS = 20
LABELS_FROM_FC8 = "fc8_argmax"
DECODE_LEVELS = ("category", "image")


class InputError(ValueError):
    """A bad input file or array of experiment I; the message names the file or argument (exit 2 in the CLI)."""


# ------------------------------------------------------------------------------------------------
# Result


@dataclass
class Experiment1Result:
    """The outputs of experiment_one. Shapes: S subjects, I images, C categories (fc8 units, 20).

    r [S, C]: r per subject and category; subject_r [S]: each subject's mean over categories;
    mean_r, se_r, cohens_d: over subjects; category_r, category_se [C]: mean and SE over subjects.
    predictions [S, I, C]: out-of-fold predicted fc8. confusion [C, C] int: rows the image's category,
    columns the decoded one, summed over subjects; subject_confusions [S, C, C].
    sensitivity, specificity, ppv [C] in percent (NaN for a category without images or, PPV, without decodes).
    n_discriminable: number of discriminable categories (discriminable.n_clusters); discriminable: the
    behaviour.DiscriminableClusters of the confusion over the categories that have images.
    labels [I] int: each image's category; label_source: "given" or "fc8_argmax".
    weights [n_voxels, C]: the PLS coefficients (voxels -> fc8 units as decoded, z-scored units by default)
    averaged over the LOSO folds.
    """

    class_names: list
    subjects: list
    labels: np.ndarray
    label_source: str
    n_components: int
    r: np.ndarray
    predictions: np.ndarray
    confusion: np.ndarray
    subject_confusions: np.ndarray
    sensitivity: np.ndarray
    specificity: np.ndarray
    ppv: np.ndarray
    n_discriminable: int
    discriminable: object = None
    n_voxels: int = 0
    weights: Optional[np.ndarray] = None
    extra: dict = field(default_factory=dict)

    @property
    def subject_r(self) -> np.ndarray:
        return np.nanmean(self.r, axis=1)

    @property
    def mean_r(self) -> float:
        return float(np.mean(self.subject_r))

    @property
    def se_r(self) -> float:
        s = self.subject_r
        return float(np.std(s, ddof=1) / np.sqrt(len(s))) if len(s) > 1 else float("nan")

    @property
    def cohens_d(self) -> float:
        s = self.subject_r
        sd = np.std(s, ddof=1) if len(s) > 1 else float("nan")
        return float(np.mean(s) / sd) if sd > 0 else float("nan")

    @property
    def category_r(self) -> np.ndarray:
        return np.mean(self.r, axis=0)

    @property
    def category_se(self) -> np.ndarray:
        n = self.r.shape[0]
        return np.std(self.r, axis=0, ddof=1) / np.sqrt(n) if n > 1 else np.full(self.r.shape[1], np.nan)

    def _mean_se(self, values) -> tuple[float, float]:
        v = np.asarray(values, dtype=float)
        v = v[np.isfinite(v)]
        if len(v) == 0:
            return float("nan"), float("nan")
        return float(v.mean()), float(v.std(ddof=1) / np.sqrt(len(v))) if len(v) > 1 else float("nan")

    def summary(self) -> dict:
        """A JSON-able summary: the numbers the paper reports, and the paper's next to them."""
        present = np.bincount(self.labels, minlength=len(self.class_names)) > 0
        d = self.discriminable
        return {
            "n_subjects": len(self.subjects),
            "n_images": int(len(self.labels)),
            "n_voxels": int(self.n_voxels),
            "n_components": int(self.n_components),
            "label_source": self.label_source,
            "decode": self.extra.get("decode", ""),
            "n_categories_with_images": int(present.sum()),
            "mean_r": self.mean_r,
            "se_r": self.se_r,
            "cohens_d": self.cohens_d,
            "subject_r": {str(s): float(v) for s, v in zip(self.subjects, self.subject_r)},
            "sensitivity": self._mean_se(self.sensitivity),
            "specificity": self._mean_se(self.specificity),
            "ppv": self._mean_se(self.ppv),
            "accuracy": float(np.trace(self.confusion) / max(self.confusion.sum(), 1) * 100),
            "chance": float(100 / max(present.sum(), 1)),
            "n_discriminable": int(self.n_discriminable),
            "n_discriminable_ci": list(d.ci) if d is not None and getattr(d, "ci", None) is not None else None,
            "discriminable_method": self.extra.get("discriminable_method", ""),
            "paper": {k: list(v) if isinstance(v, tuple) else v for k, v in PAPER.items()},
        }

    def per_category_rows(self) -> list[dict]:
        """One row per category: n_images, mean r and SE over subjects, sensitivity, specificity, PPV (%)."""
        counts = np.bincount(self.labels, minlength=len(self.class_names))
        return [
            {
                "category": name,
                "n_images": int(counts[c]),
                "mean_r": float(self.category_r[c]),
                "se_r": float(self.category_se[c]),
                "sensitivity": float(self.sensitivity[c]),
                "specificity": float(self.specificity[c]),
                "ppv": float(self.ppv[c]),
            }
            for c, name in enumerate(self.class_names)
        ]

    def report(self) -> str:
        """A short text report next to the paper's numbers."""
        s = self.summary()
        p = PAPER

        def pm(v):
            return f"{v[0]:6.2f} +/- {v[1]:5.2f} %"

        order = np.argsort(-self.category_r)
        best = ", ".join(f"{self.class_names[c]} {self.category_r[c]:.3f}" for c in order[:3])
        worst = ", ".join(f"{self.class_names[c]} {self.category_r[c]:.3f}" for c in order[-3:][::-1])
        ci = s["n_discriminable_ci"]
        ci_text = f" (95% CI {ci[0]:.1f}-{ci[1]:.1f})" if ci else ""
        accuracy = f"{s['accuracy']:.2f} % ({s['chance']:.2f} %)"
        discriminable = f"{s['n_discriminable']}{ci_text}"
        paper_discriminable = f"at least {p['n_discriminable']} (95% CI 15-17)"
        lines = [
            f"experiment I: {s['n_subjects']} subjects x {s['n_images']} images x {s['n_voxels']} voxels, "
            f"LOSO PLS ({s['n_components']} components) voxels -> fc8; categories from {s['label_source']} "
            f"({s['n_categories_with_images']} with images); decoded per {s['decode']}",
            f"{'':28s}{'this data':>26s}   {'paper (n=18, 7,214 voxels)':>28s}",
            f"{'mean r (+/- SE), d':28s}{s['mean_r']:7.4f} +/- {s['se_r']:6.4f}, d={s['cohens_d']:5.2f}"
            f"   {p['mean_r']:7.4f} +/- {p['se_r']:6.4f}, d={p['cohens_d']:.2f}",
            f"{'sensitivity':28s}{pm(s['sensitivity']):>26s}   {pm(p['sensitivity']):>28s}",
            f"{'specificity':28s}{pm(s['specificity']):>26s}   {pm(p['specificity']):>28s}",
            f"{'PPV':28s}{pm(s['ppv']):>26s}   {pm(p['ppv']):>28s}",
            f"{'accuracy (chance)':28s}{accuracy:>26s}   {'about 5 % chance':>28s}",
            f"{'discriminable categories':28s}{discriminable:>26s}   {paper_discriminable:>28s}",
            f"best r: {best}; worst r: {worst}",
        ]
        return "\n".join(lines)


# ------------------------------------------------------------------------------------------------
# Analysis


def _check_patterns(patterns) -> np.ndarray:
    if isinstance(patterns, (list, tuple)):
        arrs = [np.asarray(p, dtype=np.float64) for p in patterns]
        shapes = {a.shape for a in arrs}
        if len(shapes) != 1:
            raise InputError(
                f"patterns: the subjects' arrays differ in shape {sorted(shapes)}; every subject needs "
                "[n_images, n_voxels] with the same images and voxels (a common mask)"
            )
        patterns = np.stack(arrs) if arrs else np.zeros((0, 0, 0))
    p = np.asarray(patterns, dtype=np.float64)
    if p.ndim != 3:
        raise InputError(f"patterns: expected [n_subjects, n_images, n_voxels], got shape {p.shape}")
    if p.shape[0] < 2:
        raise InputError(f"patterns: leave-one-subject-out needs at least 2 subjects, got {p.shape[0]}")
    if p.shape[1] < 3 or p.shape[2] < 1:
        raise InputError(f"patterns: needs >= 3 images and >= 1 voxel, got shape {p.shape}")
    if not np.all(np.isfinite(p)):
        bad = sorted({int(s) for s in np.argwhere(~np.isfinite(p))[:, 0]})
        raise InputError(f"patterns: NaN or infinite values (subjects {bad}); mask them out first")
    return p


def _check_labels(labels, fc8: np.ndarray, class_names: Sequence[str]) -> tuple[np.ndarray, str]:
    n, c = fc8.shape
    if isinstance(labels, str):
        if labels != LABELS_FROM_FC8:
            raise InputError(f"labels: expected {LABELS_FROM_FC8!r} or one category per image, got {labels!r}")
        return np.argmax(fc8, axis=1).astype(int), LABELS_FROM_FC8
    lab = np.asarray(labels)
    if lab.ndim != 1 or len(lab) != n:
        raise InputError(f"labels: expected one category per image ({n}), got shape {lab.shape}")
    if lab.dtype.kind in "iu":
        out = lab.astype(int)
    else:
        index = {name: i for i, name in enumerate(class_names)}
        lower = {name.lower(): i for i, name in enumerate(class_names)}
        out = np.empty(n, dtype=int)
        for i, v in enumerate(lab.tolist()):
            s = str(v).strip()
            if s in index or s.lower() in lower:
                out[i] = index.get(s, lower.get(s.lower()))
            elif s.lstrip("-").isdigit():
                out[i] = int(s)
            else:
                raise InputError(f"labels: image {i} has the unknown category {s!r} (known: {list(class_names)})")
    if out.min() < 0 or out.max() >= c:
        raise InputError(f"labels: category indices must be in 0..{c - 1}, got {out.min()}..{out.max()}")
    return out, "given"


def correlation_decode(predicted, templates) -> np.ndarray:
    """Index of the template [K, C] each predicted vector [I, C] correlates with best (Pearson r over C units).

    A constant predicted vector (r undefined) is assigned to the first template."""
    from emonet_tf.brain.models import pearson_r

    p = np.asarray(predicted, dtype=np.float64)
    t = np.asarray(templates, dtype=np.float64)
    r = np.stack([pearson_r(p, np.broadcast_to(tk, p.shape), axis=1) for tk in t], axis=1)
    return np.argmax(np.nan_to_num(r, nan=-np.inf), axis=1)


def confusion_metrics(confusion) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(sensitivity, specificity, PPV) per class in percent from counts [C, C] (rows true, columns decoded).

    NaN where undefined: a class without true examples (sensitivity), without decodes (PPV)."""
    cm = np.asarray(confusion, dtype=np.float64)
    tp = np.diag(cm)
    fn = cm.sum(axis=1) - tp
    fp = cm.sum(axis=0) - tp
    tn = cm.sum() - tp - fn - fp
    with np.errstate(invalid="ignore", divide="ignore"):
        sens = np.where(tp + fn > 0, tp / (tp + fn), np.nan) * 100
        spec = np.where(tn + fp > 0, tn / (tn + fp), np.nan) * 100
        ppv = np.where(tp + fp > 0, tp / (tp + fp), np.nan) * 100
    present = cm.sum(axis=1) > 0
    return np.where(present, sens, np.nan), np.where(present, spec, np.nan), np.where(present, ppv, np.nan)


def experiment_one(
    patterns: Union[np.ndarray, Sequence[np.ndarray]],
    fc8,
    *,
    labels: Union[str, Sequence],
    class_names: Optional[Sequence[str]] = None,
    subjects: Optional[Sequence[str]] = None,
    n_components: int = DEFAULT_N_COMPONENTS,
    scale: bool = False,
    decode: str = "category",
    standardize_fc8: bool = True,
    n_boot: int = 0,
    seed: int = 0,
) -> Experiment1Result:
    """The paper's experiment I in one call (module docstring; Kragel et al. 2019, experiment I).

    Args:
      patterns: float [n_subjects, n_images, n_voxels] single-trial patterns (e.g. betas in an occipital mask),
        or a list of [n_images, n_voxels] per subject; the same images in the same order and the same voxels
        for every subject.
      fc8: float [n_images, n_units] EmoNet's fc8 of the same images (20 units; pre-softmax as the paper's).
      labels: the category of each image, required: "fc8_argmax" (the fc8 unit with the largest value), or
        [n_images] category names (from class_names) or indices 0..n_units-1 (e.g. the images' normative labels).
      class_names: names of the fc8 units (default: emonet_tf.categories.EMONET_CATEGORIES for 20 units,
        else unit0, unit1, ...).
      subjects: names of the subjects (default sub-01, sub-02, ...).
      n_components: PLS components (default 20, the number of fc8 units; the paper does not state its number).
      scale: PLS scales voxels and units to unit variance (default False, as MATLAB's plsregress).
      standardize_fc8: z-score each fc8 unit across the images first (default True): PLS then weighs the units
        equally, and the decoding compares category profiles without the profile all images share (with a
        seeded, untrained network that shared profile dominates and halves the decoding accuracy). r per unit
        is unaffected by the scaling itself. False: raw fc8.
      decode: "category" (each subject's predicted fc8 averaged per category, one decision per subject and
        category; default) or "image" (one decision per subject and image); module docstring, step 3.
      n_boot: bootstrap samples for the CI of the number of discriminable categories (0: none).
      seed: seed of that bootstrap.

    Returns:
      Experiment1Result (its report() prints the paper's numbers next to these).

    Raises:
      InputError (a ValueError) naming the argument: wrong shapes, NaN, fewer than 2 subjects, labels of unknown
      categories, too many components for the training data.
    """
    from emonet_tf.brain.behaviour import discriminable_clusters
    from emonet_tf.brain.models import LeaveOneSubjectOut, cross_validated_fit

    p = _check_patterns(patterns)
    y = np.asarray(fc8, dtype=np.float64)
    if y.ndim != 2 or y.shape[1] < 2:
        raise InputError(f"fc8: expected [n_images, n_units >= 2], got shape {y.shape}")
    if y.shape[0] != p.shape[1]:
        raise InputError(f"fc8: {y.shape[0]} images, but patterns have {p.shape[1]} images per subject")
    if not np.all(np.isfinite(y)):
        raise InputError("fc8: NaN or infinite values")
    n_sub, n_img, n_vox = p.shape
    n_units = y.shape[1]
    if standardize_fc8:
        sd = y.std(axis=0)
        if np.any(sd == 0):
            raise InputError(f"fc8: units {np.flatnonzero(sd == 0).tolist()} are constant across the images")
        y = (y - y.mean(axis=0)) / sd
    if class_names is None:
        from emonet_tf.categories import EMONET_CATEGORIES

        class_names = (
            list(EMONET_CATEGORIES) if n_units == len(EMONET_CATEGORIES) else [f"unit{k}" for k in range(n_units)]
        )
    class_names = [str(c) for c in class_names]
    if len(class_names) != n_units:
        raise InputError(f"class_names: {len(class_names)} names for {n_units} fc8 units")
    subjects = [f"sub-{k + 1:02d}" for k in range(n_sub)] if subjects is None else [str(s) for s in subjects]
    if len(subjects) != n_sub or len(set(subjects)) != n_sub:
        raise InputError(f"subjects: expected {n_sub} distinct names, got {subjects}")
    lab, source = _check_labels(labels, np.asarray(fc8, dtype=np.float64), class_names)  # argmax of the raw fc8
    if decode not in DECODE_LEVELS:
        raise InputError(f"decode: expected one of {DECODE_LEVELS}, got {decode!r}")
    max_comp = min((n_sub - 1) * n_img - 1, n_vox)
    if int(n_components) < 1 or int(n_components) > max_comp:
        raise InputError(f"n_components: must be in 1..{max_comp} for this data, got {n_components}")

    X = p.reshape(n_sub * n_img, n_vox)
    Y = np.tile(y, (n_sub, 1))
    groups = np.repeat(subjects, n_img)
    res = cross_validated_fit(
        X,
        Y,
        model="pls",
        n_components=int(n_components),
        scale=scale,
        cv=LeaveOneSubjectOut(groups),
        direction="decoding",
    )
    order = [res.fold_names.index(s) for s in subjects]
    r = res.fold_r[order]
    pred = res.predictions.reshape(n_sub, n_img, n_units)

    present = np.flatnonzero(np.bincount(lab, minlength=n_units) > 0)
    templates = np.stack([y[lab == c].mean(axis=0) for c in present])
    sub_conf = np.zeros((n_sub, n_units, n_units), dtype=np.int64)
    for s in range(n_sub):
        if decode == "category":
            means = np.stack([pred[s][lab == c].mean(axis=0) for c in present])
            np.add.at(sub_conf[s], (present, present[correlation_decode(means, templates)]), 1)
        else:
            np.add.at(sub_conf[s], (lab, present[correlation_decode(pred[s], templates)]), 1)
    conf = sub_conf.sum(axis=0)
    sens, spec, ppv = confusion_metrics(conf)
    if len(present) >= 2:
        disc = discriminable_clusters(conf[np.ix_(present, present)], n_boot=int(n_boot), seed=seed)
        n_disc = int(disc.n_clusters)
    else:
        disc, n_disc = None, len(present)
    return Experiment1Result(
        class_names=class_names,
        subjects=subjects,
        labels=lab,
        label_source=source,
        n_components=int(n_components),
        r=r,
        predictions=pred,
        confusion=conf,
        subject_confusions=sub_conf,
        sensitivity=sens,
        specificity=spec,
        ppv=ppv,
        n_discriminable=n_disc,
        discriminable=disc,
        n_voxels=n_vox,
        weights=res.weights,
        extra={
            "discriminable_method": "emonet_tf.brain.behaviour.discriminable_clusters (ward, one_vs_all)",
            "decode": decode,
            "standardize_fc8": bool(standardize_fc8),
        },
    )


# ------------------------------------------------------------------------------------------------
# Files and the command `emonet brain experiment1`


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The options of `emonet brain experiment1` (parsing needs numpy only)."""
    parser.add_argument(
        "--patterns",
        required=True,
        help="single-trial patterns: a .npy/.npz [n_subjects, n_images, n_voxels], or a folder with one 4-D NIfTI "
        "per subject (images along the 4th axis, sorted by file name) read through --mask",
    )
    parser.add_argument("--mask", help="with a NIfTI folder: the 3-D mask (nonzero = voxels used), e.g. occipital")
    parser.add_argument("--fc8", required=True, help="EmoNet's fc8 of the same images: .npy [n_images, 20] or .csv")
    parser.add_argument(
        "--labels",
        help="CSV with one row per image (image order) and a 'label' or 'category' column: category names or "
        "indices 0-19 (default: each image's fc8 argmax)",
    )
    parser.add_argument("--out", required=True, help="output folder (summary.json, per_category.csv, ...)")
    parser.add_argument(
        "--n-components",
        "--n_components",
        dest="n_components",
        type=int,
        default=DEFAULT_N_COMPONENTS,
        help=f"PLS components (default {DEFAULT_N_COMPONENTS})",
    )
    parser.add_argument(
        "--n-boot",
        "--n_boot",
        dest="n_boot",
        type=int,
        default=0,
        help="bootstrap samples for the CI of the discriminable categories (default 0: none)",
    )
    parser.add_argument(
        "--decode",
        default="category",
        choices=DECODE_LEVELS,
        help="decode each subject's category-mean predicted fc8 (default; one decision per subject and category) "
        "or every image's",
    )
    parser.add_argument(
        "--raw-fc8",
        "--raw_fc8",
        dest="raw_fc8",
        action="store_true",
        help="use fc8 as given (default: each unit z-scored across the images)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-plot", "--no_plot", dest="no_plot", action="store_true", help="skip confusion.png")
    return parser


def _load_array(path: str, what: str) -> np.ndarray:
    if not os.path.exists(path):
        raise InputError(f"{what} file {path!r} does not exist")
    try:
        if path.endswith(".npz"):
            with np.load(path) as z:
                if len(z.files) != 1:
                    raise InputError(f"{what} file {path!r}: expected one array in the .npz, found {z.files}")
                return np.asarray(z[z.files[0]], dtype=np.float64)
        if path.endswith((".csv", ".tsv", ".txt")):
            return np.loadtxt(path, delimiter="\t" if path.endswith(".tsv") else ",", ndmin=2)
        return np.asarray(np.load(path, allow_pickle=False), dtype=np.float64)
    except InputError:
        raise
    except (OSError, ValueError, TypeError) as e:
        raise InputError(f"{what} file {path!r} could not be read as a numeric array: {e}") from None


def load_patterns(path: str, mask: Optional[str] = None) -> tuple[np.ndarray, list, object]:
    """(patterns [n_subjects, n_images, n_voxels], subject names, masker or None) from a .npy/.npz or a NIfTI
    folder + mask.

    A folder holds one 4-D NIfTI per subject (`*.nii` / `*.nii.gz`, sorted by name; the name without suffix is
    the subject), read with emonet_tf.brain.io.load_bold through the same mask; the first subject's fitted
    masker is returned (to write maps back with io.to_nifti). Raises InputError naming the file."""
    if os.path.isdir(path):
        names = sorted(f for f in os.listdir(path) if f.endswith((".nii", ".nii.gz")))
        if not names:
            raise InputError(f"patterns folder {path!r} holds no .nii/.nii.gz file")
        if mask is None:
            raise InputError(f"patterns folder {path!r}: --mask is required with NIfTI inputs (a common voxel set)")
        if not os.path.exists(mask):
            raise InputError(f"mask file {mask!r} does not exist")
        from emonet_tf.brain.io import load_bold

        arrays, masker = [], None
        for name in names:
            f = os.path.join(path, name)
            try:
                x, m = load_bold(f, mask)
            except (ValueError, OSError, TypeError) as e:
                raise InputError(f"patterns file {f!r}: {e}") from None
            arrays.append(x)
            masker = masker or m
        subjects = [n[: -len(".nii.gz")] if n.endswith(".nii.gz") else n[: -len(".nii")] for n in names]
        try:
            return _check_patterns(arrays), subjects, masker
        except InputError as e:
            raise InputError(f"patterns folder {path!r}: {e}") from None
    if mask is not None:
        raise InputError(f"mask: --mask applies to a NIfTI folder, not to {path!r}")
    arr = _load_array(path, "patterns")
    try:
        return _check_patterns(arr), [f"sub-{k + 1:02d}" for k in range(arr.shape[0] if arr.ndim == 3 else 0)], None
    except InputError as e:
        raise InputError(f"patterns file {path!r}: {e}") from None


def load_labels(path: str) -> list:
    """Category per image from a CSV with a 'label' or 'category' column (one row per image, image order)."""
    import csv

    if not os.path.exists(path):
        raise InputError(f"labels file {path!r} does not exist")
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise InputError(f"labels file {path!r} could not be read as CSV: {e}") from None
    if not rows:
        raise InputError(f"labels file {path!r} has no rows")
    column = next((c for c in ("label", "category") if c in rows[0]), None)
    if column is None:
        raise InputError(f"labels file {path!r} needs a 'label' or 'category' column, has {list(rows[0])}")
    return [r[column] for r in rows]


def write_outputs(result: Experiment1Result, out: str, *, plot: bool = True, masker=None) -> list[str]:
    """summary.json, per_category.csv, per_subject.csv, confusion.csv (counts with category names), weights.npy
    [n_voxels, 20] and, with a masker (NIfTI input), weights.nii.gz (4-D: one volume per fc8 unit), and, with
    matplotlib, confusion.png into `out`; returns the paths written."""
    import csv

    os.makedirs(out, exist_ok=True)
    paths = []
    path = os.path.join(out, "summary.json")
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(result.summary(), fh, indent=2, allow_nan=True)
    paths.append(path)
    path = os.path.join(out, "per_category.csv")
    rows = result.per_category_rows()
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    paths.append(path)
    path = os.path.join(out, "per_subject.csv")
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["subject", "mean_r", *result.class_names])
        for s, name in enumerate(result.subjects):
            w.writerow([name, f"{result.subject_r[s]:.6f}", *(f"{v:.6f}" for v in result.r[s])])
    paths.append(path)
    path = os.path.join(out, "confusion.csv")
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["true \\ decoded", *result.class_names])
        for name, row in zip(result.class_names, result.confusion):
            w.writerow([name, *map(int, row)])
    paths.append(path)
    if result.weights is not None:
        path = os.path.join(out, "weights.npy")
        np.save(path, result.weights)
        paths.append(path)
        if masker is not None:
            from emonet_tf.brain.io import to_nifti

            path = os.path.join(out, "weights.nii.gz")
            to_nifti(result.weights.T, masker, path=path)
            paths.append(path)
    if plot:
        try:
            from emonet_tf.brain.plots import plot_confusion
        except ImportError:  # matplotlib is in the brain extra; without it there is no plot
            return paths
        present = np.flatnonzero(result.confusion.sum(axis=1) > 0)
        path = os.path.join(out, "confusion.png")
        plot_confusion(
            result.confusion[np.ix_(present, present)],
            path,
            labels=[result.class_names[c] for c in present],
            normalize="true",
            title=f"experiment I decoding (rows: true; {len(result.subjects)} subjects, LOSO)",
        )
        paths.append(path)
    return paths


def run_command(args: argparse.Namespace) -> int:
    """`emonet brain experiment1`: load the files, run experiment_one, write the outputs, print the report.

    Raises InputError (naming the file) for bad input; the CLI turns it into exit status 2."""
    patterns, subjects, masker = load_patterns(args.patterns, args.mask)
    fc8 = _load_array(args.fc8, "fc8")
    if args.labels:
        labels = load_labels(args.labels)
        if len(labels) != fc8.shape[0]:
            raise InputError(f"labels file {args.labels!r}: {len(labels)} rows for {fc8.shape[0]} images in fc8")
    else:
        labels = LABELS_FROM_FC8
    if args.n_boot < 0:
        raise InputError(f"--n-boot: must be >= 0, got {args.n_boot}")
    try:
        result = experiment_one(
            patterns,
            fc8,
            labels=labels,
            subjects=subjects,
            n_components=args.n_components,
            decode=args.decode,
            standardize_fc8=not args.raw_fc8,
            n_boot=args.n_boot,
            seed=args.seed,
        )
    except InputError as e:
        where = {"fc8": args.fc8, "labels": args.labels, "patterns": args.patterns}
        key = str(e).split(":", 1)[0]
        raise InputError(f"{key} file {where[key]!r}: {e}" if where.get(key) else str(e)) from None
    paths = write_outputs(result, args.out, plot=not args.no_plot, masker=masker)
    print(result.report())
    print("wrote " + ", ".join(paths))
    return 0
