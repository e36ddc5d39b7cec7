"""emonet_tf.brain.experiment1 and `emonet brain experiment1`: the paper's experiment I on planted truth.

Simulation: real EmoNet fc8 of 112 generated images in 20 categories (seeded EmoNetClassifier; tests/_brain_fc8.py),
z-scored, mapped to 300 voxels by weights shared by the subjects (plus a subject-specific 30 % deviation), plus
Gaussian noise of SD sigma: patterns[s] = fc8_z @ (A + D_s) + sigma * noise. What the noise level implies: the r of
the best linear read-out with the population covariances (`optimal_r`); LOSO PLS, trained on 3 x 112 trials, must
come close below it. The null shuffles each subject's patterns across images (a different order per subject).
"""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from sklearn.cross_decomposition import PLSRegression

from emonet_tf.brain.experiment1 import (
    PAPER,
    confusion_metrics,
    correlation_decode,
    experiment_one,
)
from emonet_tf.cli import main

N_SUBJECTS, N_VOXELS = 4, 300


@pytest.fixture(scope="module")
def fc8():
    from _brain_fc8 import emonet_features

    return emonet_features(112)  # (fc8 [112, 20], labels [112]: 20 categories of 5-6 images)


def simulate(fc8, sigma, seed=0, n_subjects=N_SUBJECTS, n_voxels=N_VOXELS):
    f, _ = fc8
    z = (f - f.mean(0)) / f.std(0)
    rng = np.random.default_rng(seed)
    A = rng.normal(size=(20, n_voxels)) / np.sqrt(20)
    P = np.stack(
        [
            z @ (A + 0.3 * rng.normal(size=A.shape) / np.sqrt(20)) + sigma * rng.normal(size=(112, n_voxels))
            for _ in range(n_subjects)
        ]
    )
    return P, optimal_r(z, A, sigma)


def optimal_r(z, A, sigma):
    """Mean over units of the r of E[fc8 | pattern] (population covariances, shared weights A, noise SD sigma)."""
    C = np.cov(z.T)
    M = C @ A @ np.linalg.inv(A.T @ C @ A + sigma**2 * np.eye(A.shape[1])) @ A.T @ C
    return float(np.mean(np.sqrt(np.diag(M) / np.diag(C))))


def test_planted_truth_recovers_r_near_what_the_noise_allows(fc8):
    f, labels = fc8
    results = {}
    for sigma in (3.0, 8.0):
        P, best = simulate(fc8, sigma)
        res = experiment_one(P, f, labels=labels, n_components=10)
        results[sigma] = res
        # measured: sigma 3: r 0.82 (optimal 0.87, 94 %); sigma 8: r 0.43 (optimal 0.64, 68 %: 300 x 20 weights
        # estimated from 336 noisy trials). Tolerance: between 60 % of the optimum and the optimum + 0.02.
        assert 0.6 * best < res.mean_r < best + 0.02, (sigma, res.mean_r, best)
        assert res.r.shape == (N_SUBJECTS, 20) and res.predictions.shape == (N_SUBJECTS, 112, 20)
        assert res.confusion.sum() == N_SUBJECTS * 20 and res.label_source == "given"  # one per subject, category
        assert np.array_equal(res.confusion, res.subject_confusions.sum(0))
        assert res.se_r > 0 and res.cohens_d > 3
    lo, hi = results[8.0], results[3.0]
    assert hi.mean_r > lo.mean_r + 0.2
    # decoding per category (default): measured sensitivity 98.8 % (sigma 3) and 46.2 % (sigma 8), chance 5 %;
    # specificity 99.9 / 97.2 %, PPV 99.0 / 50.3 %; 20 and 8 discriminable categories.
    s_hi, s_lo = hi.summary(), lo.summary()
    assert s_hi["sensitivity"][0] > 85 and s_lo["sensitivity"][0] > 25
    assert s_hi["specificity"][0] > 98 and s_hi["ppv"][0] > 85 and s_lo["specificity"][0] > 95
    assert hi.n_discriminable >= 15 and hi.n_discriminable > lo.n_discriminable
    # per image: 448 decisions, measured sensitivity 79.5 % (sigma 3), 20 discriminable categories
    P, _ = simulate(fc8, 3.0)
    img = experiment_one(P, f, labels=labels, n_components=10, decode="image")
    assert img.confusion.sum() == N_SUBJECTS * 112 and img.summary()["sensitivity"][0] > 60
    assert img.mean_r == pytest.approx(hi.mean_r) and img.n_discriminable >= 15
    # the report shows the paper's numbers next to these
    text = hi.report()
    assert f"{PAPER['mean_r']:.4f}" in text and f"{hi.mean_r:.4f}" in text and "discriminable" in text


def test_null_patterns_shuffled_across_images_give_r_about_zero(fc8):
    f, labels = fc8
    rs, ks, acc = [], [], []
    for seed in range(3):
        P, _ = simulate(fc8, 5.0, seed=seed)
        rng = np.random.default_rng(10 + seed)
        null = np.stack([p[rng.permutation(112)] for p in P])
        res = experiment_one(null, f, labels=labels, n_components=10)
        rs.append(res.mean_r)
        ks.append(res.n_discriminable)
        acc.append(res.summary()["accuracy"])
    # measured mean r 0.028, -0.010, 0.066; accuracy 5.0, 8.8, 8.8 % of 80 decisions (chance 5 %); 2-5
    # "discriminable" categories by chance. Tolerance: |mean over seeds| < 0.05, each |r| < 0.1, accuracy < 12.5 %
    # (80 decisions: 2.8 SD above chance), at most 7 discriminable.
    assert abs(np.mean(rs)) < 0.05 and max(abs(r) for r in rs) < 0.1, rs
    assert max(acc) < 12.5, acc
    assert max(ks) <= 7, ks


def test_loso_predictions_are_pls_fitted_on_the_other_subjects_only(fc8):
    f, labels = fc8
    P, _ = simulate(fc8, 5.0, n_subjects=3, n_voxels=60)
    res = experiment_one(P, f, labels=labels, n_components=5)
    f = (f - f.mean(0)) / f.std(0)  # standardize_fc8=True: the targets are the z-scored units
    for s in range(3):
        others = [k for k in range(3) if k != s]
        pls = PLSRegression(n_components=5, scale=False).fit(np.concatenate(P[others]), np.tile(f, (2, 1)))
        np.testing.assert_allclose(res.predictions[s], pls.predict(P[s]), rtol=1e-6, atol=1e-8)
    # changing a subject's patterns changes the other subjects' predictions, never its own model's training data
    P2 = P.copy()
    P2[0] = np.random.default_rng(5).normal(size=P[0].shape)
    res2 = experiment_one(P2, fc8[0], labels=labels, n_components=5)
    pls = PLSRegression(n_components=5, scale=False).fit(np.concatenate(P[1:]), np.tile(f, (2, 1)))
    np.testing.assert_allclose(res2.predictions[0], pls.predict(P2[0]), rtol=1e-6, atol=1e-8)


def test_confusion_metrics_and_correlation_decoding_by_hand():
    cm = np.array([[8, 2, 0], [1, 6, 3], [0, 0, 0]])
    sens, spec, ppv = confusion_metrics(cm)
    np.testing.assert_allclose(sens[:2], [80.0, 60.0])
    np.testing.assert_allclose(spec[:2], [100 * 9 / 10, 100 * 8 / 10])  # class 0: TN 9, FP 1; class 1: TN 8, FP 2
    np.testing.assert_allclose(ppv[:2], [100 * 8 / 9, 100 * 6 / 8])
    assert np.isnan(sens[2]) and np.isnan(spec[2]) and np.isnan(ppv[2])  # a category without images
    templates = np.array([[1.0, 0, 0, 0], [0, 1.0, 0, 0], [0, 0, 1.0, 1.0]])
    pred = np.array([[5.0, 1, 1, 1], [0, 2, 0, 0.5], [0, 0, 3, 3.5], [1, 1, 1, 1]])
    assert correlation_decode(pred, templates).tolist() == [0, 1, 2, 0]  # a constant vector: the first


def test_labels_are_explicit_fc8_argmax_or_given(fc8):
    f, labels = fc8
    P, _ = simulate(fc8, 5.0, n_subjects=2, n_voxels=40)
    res = experiment_one(P, f, labels="fc8_argmax", n_components=3)
    assert res.label_source == "fc8_argmax" and np.array_equal(res.labels, f.argmax(1))
    absent = np.setdiff1d(np.arange(20), f.argmax(1))
    rows = res.per_category_rows()
    assert all(rows[c]["n_images"] == 0 and np.isnan(rows[c]["sensitivity"]) for c in absent)
    names = [res.class_names[k] for k in labels]
    by_name = experiment_one(P, f, labels=names, n_components=3)
    assert np.array_equal(by_name.labels, labels) and by_name.label_source == "given"
    with pytest.raises(TypeError):
        experiment_one(P, f, n_components=3)  # labels has no default
    with pytest.raises(ValueError, match="labels: image 0 has the unknown category 'Joyful'"):
        experiment_one(P, f, labels=["Joyful"] * 112)
    with pytest.raises(ValueError, match="patterns: leave-one-subject-out needs at least 2 subjects"):
        experiment_one(P[:1], f, labels=labels)
    with pytest.raises(ValueError, match="fc8: 111 images"):
        experiment_one(P, f[:111], labels=labels[:111])
    with pytest.raises(ValueError, match="n_components"):
        experiment_one(P, f, labels=labels, n_components=500)
    with pytest.raises(ValueError, match="decode"):
        experiment_one(P, f, labels=labels, n_components=3, decode="trial")
    # raw fc8: the PLS targets are fc8 as given (the by-hand oracle of the LOSO test with raw targets)
    raw = experiment_one(P, f, labels=labels, n_components=3, standardize_fc8=False)
    pls = PLSRegression(n_components=3, scale=False).fit(P[1], f)
    np.testing.assert_allclose(raw.predictions[0], pls.predict(P[0]), rtol=1e-6, atol=1e-8)
    with pytest.raises(ValueError, match="fc8: units \\[0\\] are constant"):
        experiment_one(P, np.column_stack([np.ones(112), f[:, 1:]]), labels=labels, n_components=3)
    with pytest.raises(ValueError, match="patterns: the subjects' arrays differ"):
        experiment_one([P[0], P[1][:, :30]], f, labels=labels)


# ------------------------------------------------------------------------------------------------ the command


def _write_inputs(tmp_path, fc8, sigma=3.0):
    f, labels = fc8
    P, _ = simulate(fc8, sigma)
    np.save(tmp_path / "patterns.npy", P)
    np.save(tmp_path / "fc8.npy", f)
    from emonet_tf.categories import EMONET_CATEGORIES

    (tmp_path / "labels.csv").write_text(
        "image,label\n" + "".join(f"img{i:03d}.jpg,{EMONET_CATEGORIES[k]}\n" for i, k in enumerate(labels))
    )
    return P, f, labels


def test_command_end_to_end(tmp_path, fc8, capsys):
    P, f, labels = _write_inputs(tmp_path, fc8)
    out = tmp_path / "exp1"
    argv = [
        "brain",
        "experiment1",
        "--patterns",
        str(tmp_path / "patterns.npy"),
        "--fc8",
        str(tmp_path / "fc8.npy"),
        "--labels",
        str(tmp_path / "labels.csv"),
        "--out",
        str(out),
        "--n-components",
        "10",
    ]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    for name in (
        "summary.json",
        "per_category.csv",
        "per_subject.csv",
        "confusion.csv",
        "confusion.png",
        "weights.npy",
    ):
        assert (out / name).stat().st_size > 0, name
    summary = json.loads((out / "summary.json").read_text())
    ref = experiment_one(P, f, labels=labels, n_components=10)
    assert summary["mean_r"] == pytest.approx(ref.mean_r) and summary["n_discriminable"] == ref.n_discriminable
    assert summary["paper"]["mean_r"] == 0.2819 and summary["label_source"] == "given"
    assert not (out / "weights.nii.gz").exists()  # no grid to write to for a .npy input
    assert "0.2819 +/- 0.0163" in printed and f"{ref.mean_r:.4f}" in printed
    conf = np.loadtxt(out / "confusion.csv", delimiter=",", skiprows=1, usecols=range(1, 21))
    assert np.array_equal(conf, ref.confusion)
    rows = (out / "per_category.csv").read_text().splitlines()
    assert rows[0] == "category,n_images,mean_r,se_r,sensitivity,specificity,ppv" and len(rows) == 21


def test_command_reads_a_nifti_folder_through_a_mask(tmp_path, fc8):
    nib = pytest.importorskip("nibabel")
    f, labels = fc8
    P, _ = simulate(fc8, 3.0, n_voxels=120)
    shape = (6, 6, 5)  # 180 voxels, 120 inside the mask
    mask = np.zeros(shape, dtype=np.uint8)
    mask.reshape(-1)[np.sort(np.random.default_rng(0).choice(180, 120, replace=False))] = 1
    affine = np.diag([4.0, 4.0, 4.0, 1.0])
    nib.save(nib.Nifti1Image(mask, affine), tmp_path / "mask.nii.gz")
    folder = tmp_path / "betas"
    folder.mkdir()
    for s in range(N_SUBJECTS):
        vol = np.zeros((*shape, 112), dtype=np.float32)
        vol[mask.astype(bool)] = P[s].T  # C order of the mask's voxels, as nilearn's masker
        nib.save(nib.Nifti1Image(vol, affine), folder / f"sub-{s + 1:02d}.nii.gz")
    np.save(tmp_path / "fc8.npy", f)
    out = tmp_path / "out"
    rc = main(
        [
            "brain",
            "experiment1",
            "--patterns",
            str(folder),
            "--mask",
            str(tmp_path / "mask.nii.gz"),
            "--fc8",
            str(tmp_path / "fc8.npy"),
            "--out",
            str(out),
            "--n-components",
            "10",
            "--no-plot",
        ]
    )
    assert rc == 0
    summary = json.loads((out / "summary.json").read_text())
    ref = experiment_one(P.astype(np.float32), f, labels="fc8_argmax", n_components=10)
    assert summary["mean_r"] == pytest.approx(ref.mean_r, abs=1e-5) and summary["n_voxels"] == 120
    assert list(summary["subject_r"]) == [f"sub-{s + 1:02d}" for s in range(N_SUBJECTS)]
    # the fold-averaged PLS weights as a 4-D NIfTI on the mask's grid: one volume per fc8 unit, 0 outside the mask
    w = np.asarray(nib.load(out / "weights.nii.gz").dataobj)
    assert w.shape == (*shape, 20) and np.all(w[~mask.astype(bool)] == 0)
    np.testing.assert_allclose(w[mask.astype(bool)], ref.weights, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(np.load(out / "weights.npy"), ref.weights, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize(
    "case,needle",
    [
        ("missing_patterns", "patterns file"),
        ("patterns_2d", "patterns file"),
        ("fc8_rows", "fc8 file"),
        ("labels_unknown", "labels file"),
        ("labels_rows", "labels file"),
        ("folder_without_mask", "--mask is required"),
    ],
)
def test_command_bad_input_exits_2_naming_the_file(tmp_path, fc8, capsys, case, needle):
    _write_inputs(tmp_path, fc8)
    pat, fc, lab = tmp_path / "patterns.npy", tmp_path / "fc8.npy", tmp_path / "labels.csv"
    if case == "missing_patterns":
        pat = tmp_path / "nope.npy"
    elif case == "patterns_2d":
        np.save(pat, np.zeros((112, 10)))
    elif case == "fc8_rows":
        np.save(fc, np.zeros((100, 20)))
        lab = None
    elif case == "labels_unknown":
        lab.write_text("label\n" + "Joyful\n" * 112)
    elif case == "labels_rows":
        lab.write_text("label\n" + "Awe\n" * 5)
    elif case == "folder_without_mask":
        pat = tmp_path / "betas"
        pat.mkdir()
        (pat / "sub-01.nii.gz").write_bytes(b"")
    argv = ["brain", "experiment1", "--patterns", str(pat), "--fc8", str(fc), "--out", str(tmp_path / "o")]
    if lab is not None:
        argv += ["--labels", str(lab)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "usage: emonet brain experiment1" in err and needle in err and "Traceback" not in err, err
    named = {
        "missing_patterns": pat,
        "patterns_2d": pat,
        "fc8_rows": fc,
        "labels_unknown": lab,
        "labels_rows": lab,
        "folder_without_mask": pat,
    }[case]
    assert os.fspath(named) in err, err


def test_help_does_not_import_tensorflow_or_sklearn():
    script = textwrap.dedent("""
        import sys
        from emonet_tf.cli import main
        try:
            main(["brain", "experiment1", "--help"])
        except SystemExit as e:
            print("STATUS", e.code)
        print("TENSORFLOW", "tensorflow" in sys.modules, "SKLEARN", "sklearn" in sys.modules)
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert "STATUS 0" in proc.stdout and "TENSORFLOW False SKLEARN False" in proc.stdout, proc.stdout + proc.stderr
