"""emonet_tf.brain.controls: control encoders through EmoNet's call, and variance partitioning with planted truth."""

import subprocess
import sys

import numpy as np
import pytest
from sklearn.model_selection import GroupKFold, KFold

from emonet_tf.brain.controls import cross_validated_r2, layer_features, variance_partitioning


def _planted(seed, n=400, from_b=0.0, noise=1.0):
    """A: 8 features; B: 8 features, 4 of them mixing A's first 4 (shared part) and 4 independent.
    target = A @ 1 + from_b * B_indep @ 1 + noise: A's last 4 columns (half of A's part) reach no column of B."""
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((n, 8))
    b_indep = rng.standard_normal((n, 4))
    b = np.hstack([a[:, :4] @ rng.standard_normal((4, 4)) + 0.3 * rng.standard_normal((n, 4)), b_indep])
    y = a.sum(axis=1) + from_b * b_indep.sum(axis=1) + noise * rng.standard_normal(n)
    return a, b, y


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_target_from_a_only(seed):
    a, b, y = _planted(seed)
    vp = variance_partitioning(a, b, y, cv=KFold(5, shuffle=True, random_state=0))
    # R^2 of A is 8 / 9; A's last 4 columns give 4 / 9 that B cannot reach, the first 4 are shared with B
    assert vp.r2_a[0] == pytest.approx(8 / 9, abs=0.05)
    assert vp.unique_a[0] == pytest.approx(4 / 9, abs=0.07)
    assert abs(vp.unique_b[0]) < 0.02
    assert vp.shared[0] == pytest.approx(4 / 9, abs=0.07)
    np.testing.assert_allclose(vp.unique_a + vp.unique_b + vp.shared, vp.r2_ab)
    np.testing.assert_allclose(vp.unique_a + vp.shared, vp.r2_a)


def test_both_sets_contribute_and_null():
    a, b, y = _planted(3, from_b=1.5)
    vp = variance_partitioning(a, b, y, cv=KFold(5, shuffle=True, random_state=0))
    assert vp.unique_a[0] > 0.1 and vp.unique_b[0] > 0.1
    rng = np.random.default_rng(4)
    noise = rng.standard_normal((400, 3))
    vp0 = variance_partitioning(a, b, noise, cv=KFold(5, shuffle=True, random_state=0))
    assert vp0.r2_ab.shape == (3,)
    for part in (vp0.r2_a, vp0.r2_b, vp0.r2_ab, vp0.unique_a, vp0.unique_b, vp0.shared):
        assert np.all(np.abs(part) < 0.05)


def test_cross_validated_r2_respects_groups():
    # a target that is only a per-group offset: predictable when groups leak into training, not otherwise
    rng = np.random.default_rng(5)
    groups = np.repeat(np.arange(20), 10)
    offsets = rng.standard_normal(20)[groups]
    features = np.eye(20)[groups] + 0.01 * rng.standard_normal((200, 20))  # a group indicator
    y = offsets + 0.1 * rng.standard_normal(200)
    leak = cross_validated_r2(features, y, cv=KFold(5, shuffle=True, random_state=0))
    held_out = cross_validated_r2(features, y, cv=GroupKFold(5), groups=groups)
    assert leak[0] > 0.8
    assert held_out[0] < 0.05


def test_folds_that_overlap_are_refused():
    class Overlapping:
        def split(self, x, y=None, groups=None):
            idx = np.arange(len(x))
            yield idx[:60], idx[40:]

    a, b, y = _planted(0, n=100)
    with pytest.raises(ValueError, match="overlap"):
        variance_partitioning(a, b, y, cv=Overlapping())
    with pytest.raises(ValueError, match="features_b has 99 samples"):
        variance_partitioning(a, b[:99], y, cv=KFold(5))


def test_layer_features_from_a_callable_in_batches():
    calls = []

    def encoder(images, layer):
        calls.append((len(images), layer))
        return images.mean(axis=(1, 2)) * (2.0 if layer == "double" else 1.0)

    images = np.random.default_rng(0).uniform(0, 255, (10, 8, 8, 3))
    f = layer_features(encoder, images, "double", batch_size=4)
    assert calls == [(4, "double"), (4, "double"), (2, "double")]
    np.testing.assert_allclose(f, 2 * images.mean(axis=(1, 2)), rtol=1e-6)
    with pytest.raises(ValueError, match="batch"):
        layer_features(encoder, images[0], "x")
    with pytest.raises(ValueError, match="rows"):
        layer_features(lambda im, layer: im[:1], images, "x")
    with pytest.raises(ValueError, match="callable"):
        layer_features(object(), images, "x")


def test_importing_controls_does_not_import_tensorflow():
    code = "import sys, emonet_tf.brain.controls, emonet_tf.brain.rsa; print('tensorflow' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def _generated_images(n, seed=0, size=227):
    """Smooth random colour fields (0..255), different per image."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    images = np.empty((n, size, size, 3), np.float32)
    for i in range(n):
        f = rng.uniform(1, 6, size=(3, 2))
        p = rng.uniform(0, 2 * np.pi, size=(3, 2))
        for c in range(3):
            images[i, :, :, c] = 127.5 + 100 * np.sin(2 * np.pi * f[c, 0] * xx + p[c, 0]) * np.cos(
                2 * np.pi * f[c, 1] * yy + p[c, 1]
            )
    return images


@pytest.fixture(scope="module")
def encoders():
    keras = pytest.importorskip("keras")
    import emonet_tf
    from emonet_tf.brain.controls import emonet_encoder, random_alexnet

    keras.utils.set_random_seed(0)
    return {"emonet": emonet_encoder(emonet_tf.EmoNetClassifier()), "random0": random_alexnet(0)}


def test_control_encoders_through_one_call(encoders):
    from emonet_tf.brain.controls import random_alexnet

    images = _generated_images(4)
    emonet, rand0 = encoders["emonet"], encoders["random0"]
    assert layer_features(emonet, images, "fc8").shape == layer_features(rand0, images, "fc8").shape == (4, 20)
    # the seeded random AlexNet is the same network whatever the global seed state; another seed differs
    again = random_alexnet(0)
    np.testing.assert_array_equal(layer_features(again, images, "relu7"), layer_features(rand0, images, "relu7"))
    assert not np.allclose(layer_features(random_alexnet(1), images, "fc8"), layer_features(rand0, images, "fc8"))
    assert layer_features(rand0, images[:2], "conv5").shape == (2, 13 * 13 * 256)
    assert layer_features(rand0, images[:2], "conv5", flatten=False).shape == (2, 13, 13, 256)
    assert np.ptp(layer_features(rand0, images, "relu7"), axis=0).max() > 0  # image-dependent features
    with pytest.raises(ValueError, match="Unknown layer"):
        layer_features(rand0, images[:2], "fc9")


@pytest.mark.slow
def test_partitioning_on_real_features(encoders):
    # planted truth on real features (EmoNet built after set_random_seed(0) vs the seeded random AlexNet): a
    # "voxel" driven by EmoNet fc8 only. Measured (128 images, 4 seeds): R2_A 0.89-0.93, unique A 0.71-0.91,
    # unique B -0.02 to -0.04 (one ridge penalty for both sets lets B's 20 columns cost a little).
    images = _generated_images(128)
    f_emonet = layer_features(encoders["emonet"], images, "fc8")
    f_rand = layer_features(encoders["random0"], images, "fc8")
    for seed in range(2):
        rng = np.random.default_rng(seed)
        z = (f_emonet - f_emonet.mean(0)) / f_emonet.std(0)
        signal = z @ rng.standard_normal(20)
        y = signal + 0.3 * signal.std() * rng.standard_normal(len(signal))
        vp = variance_partitioning(f_emonet, f_rand, y, cv=KFold(8, shuffle=True, random_state=0))
        assert vp.r2_a[0] > 0.8
        assert vp.unique_a[0] > 0.6
        assert abs(vp.unique_b[0]) < 0.06


@pytest.mark.slow
def test_imagenet_alexnet_from_a_bvlc_file_matches_the_numpy_caffe_alexnet(tmp_path):
    import reference as R
    from emonet_tf.backbone import IMAGENET_RGB_MEAN
    from emonet_tf.brain.controls import imagenet_alexnet

    ref = R.random_weights(seed=2012, num_classes=1000)
    path = R.write_bvlc_npy(R.caffe_tensorflow_layers(ref), str(tmp_path / "bvlc_alexnet.npy"))
    alexnet = imagenet_alexnet(path)
    images = _generated_images(3, seed=1)
    ours = layer_features(alexnet, images, "relu7")
    expected = R.reference_forward(ref, R.nchw(images, np.asarray(IMAGENET_RGB_MEAN), bgr=True), until="fc7")
    np.testing.assert_allclose(ours, expected, rtol=1e-3, atol=1e-3 * np.abs(expected).max())
    assert layer_features(alexnet, images, "fc8").shape == (3, 1000)
    with pytest.raises(ValueError, match="not the ImageNet AlexNet"):
        imagenet_alexnet(R.write_matlab_text(ref, R.mean_image(), str(tmp_path / "dump")))


def test_rdm_of_real_emonet_layers_separates_two_image_families(encoders):
    # RSA on real features: EmoNet (set_random_seed(0), no published weights) sees grey gratings and colour
    # noise as two families in relu7: every within-family correlation distance is below every between-family one
    from emonet_tf.brain.rsa import compare_rdms, rdm

    rng = np.random.default_rng(0)
    yy = np.mgrid[0:227, 0:227][0] / 227
    gratings = [127.5 + 100 * np.sin(2 * np.pi * rng.uniform(8, 12) * yy + rng.uniform(0, 6.28)) for _ in range(6)]
    images = np.concatenate(
        [
            np.repeat(np.stack(gratings)[..., None], 3, axis=-1),
            np.clip(127.5 + 60 * rng.standard_normal((6, 227, 227, 3)), 0, 255),
        ]
    ).astype(np.float32)
    family = np.repeat([0, 1], 6)
    between = family[:, None] != family[None, :]
    within = ~between & ~np.eye(12, dtype=bool)
    d = rdm(layer_features(encoders["emonet"], images, "relu7"))
    assert d[within].max() < d[between].min()
    assert compare_rdms(between.astype(float), d) > 0.85  # 0.866 is the most a 2-level model can reach here
