"""SavedModel / .keras / TFLite export: served outputs equal the Keras model's, from a process without emonet_tf."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
import textwrap
import time

import keras
import numpy as np
import pytest
import tensorflow as tf

from emonet_tf import EMONET_CATEGORIES, EmoNet, EmoNetClassifier, export, preprocessing

# A sample of what the bytes signature decodes (JPEG, PNG 8/16 bit, grey, RGBA, BMP); every variant of every
# format is in tests/test_decoding_conformance.py.
SERVED = ("rgb_jpeg", "rgb_png", "gray_png", "rgba_png", "rgb16_png", "rgb_bmp", "wide_jpeg", "exact_png")


@pytest.fixture(scope="module")
def model():
    keras.utils.set_random_seed(11)
    m = EmoNetClassifier()
    m.head.kernel.assign(m.head.kernel.numpy() * 3)  # peaked outputs, so that top-k order is meaningful
    return m


@pytest.fixture(scope="module")
def exports(model, tmp_path_factory):
    """Two SavedModels written once: the defaults (MATLAB resize), and TF bicubic resize with fc7/relu7/fc8 outputs."""
    root = tmp_path_factory.mktemp("export")
    plain, featured = str(root / "plain"), str(root / "featured")
    start = time.perf_counter()
    summary = export.export_saved_model(model, plain)
    seconds = time.perf_counter() - start
    export.export_saved_model(model, featured, include_features=True, resize_method="bicubic")
    print(f"\n{summary} (written in {seconds:.1f} s)")
    return {"plain": plain, "featured": featured, "summary": summary}


@pytest.fixture(scope="module")
def served(exports, image_files, tmp_path_factory):
    """Runs both SavedModels in a fresh interpreter that imports TensorFlow only, on the real image bytes."""
    out = tmp_path_factory.mktemp("served") / "outputs.npz"
    files = [str(image_files[k]) for k in SERVED]
    script = textwrap.dedent("""
        import json, sys
        import numpy as np
        import tensorflow as tf
        dirs, files, out = json.loads(sys.argv[1]), json.loads(sys.argv[2]), sys.argv[3]
        data = tf.constant([open(f, "rb").read() for f in files])
        result = {}
        for key, d in dirs.items():
            loaded = tf.saved_model.load(d)
            outputs = loaded.signatures["serving_default"](images_bytes=data)
            for name, value in outputs.items():
                value = value.numpy()
                result[f"{key}/{name}"] = value.astype("S") if value.dtype == object else value
            result[f"{key}/class_names_variable"] = loaded.class_names.numpy().astype("S")
        assert "emonet_tf" not in sys.modules, "the served model must not need emonet_tf"
        result["modules_ok"] = np.array("emonet_tf" not in sys.modules)
        np.savez(out, **result)
    """)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            script,
            json.dumps({k: exports[k] for k in ("plain", "featured")}),
            json.dumps(files),
            str(out),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        cwd=str(out.parent),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    with np.load(out, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def test_served_bytes_signature_matches_keras_model(model, served, image_files):
    assert served["modules_ok"]
    files = [image_files[k] for k in SERVED]
    for key, method in (("plain", "matlab"), ("featured", "bicubic")):
        expected = EmoNet(model, resize_method=method).predict_images(files)
        assert all(p.ok for p in expected)
        probs = np.stack([p.probabilities for p in expected])
        logits = np.stack([p.logits for p in expected])
        np.testing.assert_allclose(served[f"{key}/probabilities"], probs, atol=1e-5, rtol=0)
        np.testing.assert_allclose(served[f"{key}/logits"], logits, atol=1e-4, rtol=1e-5)
        assert served[f"{key}/top_classes"].shape == (len(files), 5)
        for row, pred in enumerate(expected):
            names = [n.decode() for n in served[f"{key}/top_classes"][row]]
            assert names == [n for n, _ in pred.top_k(5)]
            np.testing.assert_allclose(served[f"{key}/top_scores"][row], [p for _, p in pred.top_k(5)], atol=1e-5)
        assert [n.decode() for n in served[f"{key}/class_names_variable"]] == list(EMONET_CATEGORIES)


def test_served_features_are_the_named_layers(model, served, image_files):
    emonet = EmoNet(model, resize_method="bicubic")
    images = np.stack([preprocessing.load_image(image_files[k], method="bicubic") for k in SERVED])
    np.testing.assert_allclose(served["featured/fc7"], emonet.activations(images, "fc7"), atol=1e-3, rtol=1e-5)
    np.testing.assert_allclose(served["featured/relu7"], np.maximum(served["featured/fc7"], 0), atol=0)
    np.testing.assert_array_equal(served["featured/fc8"], served["featured/logits"])
    assert "plain/fc7" not in served and "plain/relu7" not in served


def test_preprocessed_signature_class_names_asset_and_size(model, exports, image_files):
    loaded = tf.saved_model.load(exports["plain"])
    image = preprocessing.load_image(image_files["rgb_jpeg"])
    out = loaded.signatures[export.SERVE_PREPROCESSED](images=tf.constant(image[None]))
    expected = EmoNet(model).predict_arrays(image[None])
    np.testing.assert_allclose(out["probabilities"].numpy(), expected, atol=1e-5)
    assert export.read_class_names(exports["plain"]) == list(EMONET_CATEGORIES)
    meta = json.loads(pathlib.Path(exports["plain"], "assets.extra", export.METADATA_FILE).read_text())
    assert meta["resize_method"] == "matlab" and meta["include_features"] is False
    # Each weight stored once (Keras' model.export stores them twice: keras-team/keras#23553).
    weight_bytes = 4 * model.count_params()
    size = sum(p.stat().st_size for p in pathlib.Path(exports["plain"]).rglob("*") if p.is_file())
    assert weight_bytes <= size < 1.05 * weight_bytes, (size, weight_bytes)


def test_saved_model_cli_lists_both_signatures(exports):
    cli = pathlib.Path(sys.executable).with_name("saved_model_cli")
    assert cli.exists(), cli
    proc = subprocess.run(
        [str(cli), "show", "--dir", exports["featured"], "--all"],
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"),
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    text = proc.stdout
    assert "signature_def['serving_default']" in text and "signature_def['serve_preprocessed']" in text
    serving = text.split("signature_def['serving_default']")[1]
    assert "inputs['images_bytes'] tensor_info:" in serving and "dtype: DT_STRING" in serving
    for name in ("probabilities", "logits", "top_classes", "top_scores", "fc7", "relu7", "fc8"):
        assert f"outputs['{name}']" in serving, name


def test_corrupt_bytes_in_a_served_batch_name_the_item(exports, image_files):
    serve = tf.saved_model.load(exports["plain"]).signatures["serving_default"]
    good = image_files["rgb_jpeg"].read_bytes()
    for bad in (b"", b"this is a text file, not an image", b"II*\x00 a TIFF header"):
        with pytest.raises(tf.errors.InvalidArgumentError) as info:
            serve(images_bytes=tf.constant([good, good, bad]))
        message = info.value.message
        assert "images_bytes item] [2]" in message and "could not be decoded" in message, message
    # Right magic bytes, broken body: the decoder's own error says what is wrong with the data.
    with pytest.raises(tf.errors.InvalidArgumentError, match="(?i)jpeg"):
        serve(images_bytes=tf.constant([good, good[: len(good) // 3]]))
    # The same module keeps serving good batches afterwards.
    assert serve(images_bytes=tf.constant([good]))["probabilities"].shape == (1, 20)


def test_looks_like_image_recognizes_each_format(image_files):
    for key in ("rgb_jpeg", "rgb_png", "rgb_bmp"):
        assert export.looks_like_image(tf.constant(image_files[key].read_bytes())).numpy()
    assert export.looks_like_image(tf.constant(b"GIF89a....")).numpy()
    assert export.looks_like_image(tf.constant(b"RIFF....WEBPVP8 ")).numpy()  # WebP: decoded in-graph since TF 2.18
    assert not export.looks_like_image(tf.constant(b"II*\x00 a TIFF header")).numpy()
    assert not export.looks_like_image(tf.constant(b"RIFF....WAVE")).numpy()
    assert not export.looks_like_image(tf.constant(b"")).numpy()


def test_keras_file_round_trip(model, tmp_path, image_files):
    path = tmp_path / "emonet.keras"
    assert "MB" in export.export_keras(model, str(path))
    with pytest.raises(ValueError, match=r"\.keras"):
        export.export_keras(model, str(tmp_path / "emonet.h5"))
    reloaded = EmoNet.from_weights(path)
    assert reloaded.class_names == tuple(EMONET_CATEGORIES)
    a = reloaded.predict_images([image_files["rgb_png"]])[0].probabilities
    b = EmoNet(model).predict_images([image_files["rgb_png"]])[0].probabilities
    np.testing.assert_allclose(a, b, atol=1e-6)


def test_tflite_matches_tensorflow(model, tmp_path, image_files):
    path = tmp_path / "emonet.tflite"
    image = preprocessing.load_image(image_files["wide_jpeg"])
    start = time.perf_counter()
    summary = export.export_tflite(model, str(path), check_image=image)
    print(f"\n{summary} (converted in {time.perf_counter() - start:.1f} s)")
    # Weights are in the file (a Keras-variable mix-up once produced a 17 kB file with garbage weights).
    assert path.stat().st_size > 4 * model.count_params() * 0.99
    got = export.tflite_predict(str(path), image[None])
    expected = EmoNet(model).predict_arrays(image[None])
    np.testing.assert_allclose(got["probabilities"], expected, atol=1e-4)
    assert got["logits"].shape == (1, 20)
    # The flatbuffer holds no strings: the class names and the preprocessing to apply are beside it.
    sidecar = json.loads(pathlib.Path(export.tflite_sidecar_path(str(path))).read_text())
    assert sidecar["class_names"] == list(EMONET_CATEGORIES)
    assert sidecar["preprocessing"] == model.preprocessor.get_config()
