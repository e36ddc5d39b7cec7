"""The one-call prediction API, including bad input inside a batch."""

import keras
import numpy as np
import pytest

from emonet_tf import EMONET_CATEGORIES, EmoNet, EmoNetClassifier, top_k


@pytest.fixture(scope="module")
def emonet():
    keras.utils.set_random_seed(4)
    model = EmoNetClassifier()
    # Peaked outputs, so that top-k is meaningful.
    model.head.kernel.assign(model.head.kernel.numpy() * 3)
    return EmoNet(model)


def test_predict_images_of_every_kind_with_a_broken_one_in_the_batch(emonet, image_files, tmp_path):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff not really a jpeg")
    files = [image_files[k] for k in ("rgb_jpeg", "gray_png", "rgba_png", "rgb16_png", "wide_jpeg")]
    items = files[:2] + [broken] + files[2:]
    results = emonet.predict_images(items, batch_size=3)
    assert [r.source for r in results] == [str(p) for p in items]
    assert not results[2].ok and "broken.jpg" in results[2].error and results[2].probabilities is None
    good = [r for r in results if r.ok]
    assert len(good) == 5
    for r in good:
        assert r.probabilities.shape == (20,) and abs(r.probabilities.sum() - 1) < 1e-5
        e = np.exp(r.logits.astype(np.float64) - r.logits.max())
        np.testing.assert_allclose(r.probabilities, e / e.sum(), rtol=1e-4, atol=1e-7)
        assert r.probabilities.max() > 0.1  # peaked, not uniform
        assert r.top_k(3)[0][1] >= r.top_k(3)[1][1] >= r.top_k(3)[2][1]
        assert set(r.as_dict()) >= {"source", "top1", *EMONET_CATEGORIES}
    # Same answers one by one as in a batch, and from bytes and arrays as from files.
    single = emonet.predict_images([files[0]])[0]
    np.testing.assert_allclose(single.probabilities, results[0].probabilities, rtol=1e-5, atol=1e-7)
    from_bytes = emonet.predict_images([files[0].read_bytes()])[0]
    np.testing.assert_allclose(from_bytes.probabilities, results[0].probabilities, rtol=1e-5, atol=1e-7)
    assert from_bytes.source == "<bytes #0>"


def test_a_single_input_in_place_of_a_list_is_refused(emonet, image_files):
    """A bare path or bytes used to be iterated into characters (one error each); a single image array
    into its rows (one prediction each). Both raise TypeError at the call, iter_predict_images too."""
    import tensorflow as tf

    path = image_files["rgb_jpeg"]
    for single in (str(path), path, path.read_bytes(), bytearray(path.read_bytes())):
        with pytest.raises(TypeError, match=r"predict_images takes a list of inputs.*wrap a single path as \[path\]"):
            emonet.predict_images(single)
        with pytest.raises(TypeError, match=r"iter_predict_images takes a list of inputs"):
            emonet.iter_predict_images(single)  # at the call, before any iteration
    image = np.random.default_rng(3).integers(0, 256, (40, 50, 3), dtype=np.uint8)
    for single in (image, image[..., 0], tf.constant(image)):
        with pytest.raises(TypeError, match=r"wrap a single image array as \[image\]"):
            emonet.predict_images(single)
    # An N x H x W x C array is N images, as a list of them.
    batch = np.stack([image, image[::-1]])
    results = emonet.predict_images(batch)
    assert [r.source for r in results] == ["<array #0>", "<array #1>"] and all(r.ok for r in results)
    listed = emonet.predict_images(list(batch))
    np.testing.assert_allclose(
        [r.probabilities for r in results], [r.probabilities for r in listed], rtol=1e-5, atol=1e-7
    )


def test_items_of_unsupported_types_are_named_errors(emonet):
    """42 or None used to be read as an image of shape (); now each is that item's error, naming its type
    and index, and the other items are predicted."""
    image = np.random.default_rng(5).integers(0, 256, (40, 50, 3), dtype=np.uint8)
    items = [image, 42, None, np.array(7), 3.5, True, {"a": 1}, image.tolist()]
    results = emonet.predict_images(items, batch_size=3)
    assert len(results) == len(items)
    assert results[0].ok and results[-1].ok
    np.testing.assert_allclose(results[0].probabilities, results[-1].probabilities, rtol=1e-5, atol=1e-7)
    for i, kind in [(1, "int"), (2, "NoneType"), (3, "ndarray"), (4, "float"), (5, "bool"), (6, "dict")]:
        r = results[i]
        assert not r.ok and r.probabilities is None
        assert r.source == f"<{kind} #{i}>"
        assert r.error.startswith(f"<{kind} #{i}>: unsupported input type {kind}"), r.error
    assert "Expected an image" not in results[1].error


def test_top_k_helper():
    probs = np.array([0.1, 0.5, 0.05, 0.35])
    assert top_k(probs, ["a", "b", "c", "d"], 2) == [("b", 0.5), ("d", 0.35)]


def test_unknown_layer_and_missing_weights(emonet, tmp_path):
    with pytest.raises(ValueError, match="Unknown layer 'conv9'"):
        emonet.activation_model("conv9")
    with pytest.raises(FileNotFoundError, match="nothing.pth"):
        EmoNet.from_weights(tmp_path / "nothing.pth")


def test_predict_images_pixels_order_and_errors_with_the_host_resize(emonet, photos):
    """predict_images decodes and resizes on the host (numpy MATLAB resize): the pixels are the in-graph
    path's exactly, results keep input order across batches and threads, and bad items are named."""
    import cv2
    import tensorflow as tf

    from emonet_tf import preprocessing

    def jpeg(image, size):
        resized = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
        return cv2.imencode(".jpg", cv2.cvtColor(resized, cv2.COLOR_RGB2BGR))[1].tobytes()

    sizes = ((320, 240), (641, 479), (1280, 720), (227, 227), (100, 300))
    items = [jpeg(photos[name], size) for name in ("hopper", "pack") for size in sizes]
    items.insert(3, b"\xff\xd8\xff not a jpeg")
    items.insert(7, b"")
    loaded = list(emonet._iter_loaded(items, lookahead=4, workers=2))
    assert [source for source, _, _ in loaded] == [f"<bytes #{i}>" for i in range(len(items))]
    assert [error is not None for _, _, error in loaded] == [i in (3, 7) for i in range(len(items))]
    assert "<bytes #3>" in loaded[3][2] and "<bytes #7>" in loaded[7][2] and "empty" in loaded[7][2]
    for data, (source, pixels, error) in zip(items, loaded):
        if error is None:
            in_graph = preprocessing.preprocess_image_bytes(tf.constant(data)).numpy()
            np.testing.assert_array_equal(pixels, in_graph, err_msg=source)
    results = emonet.predict_images(items, batch_size=4)
    assert [r.source for r in results] == [source for source, _, _ in loaded]
    assert [r.ok for r in results] == [error is None for _, _, error in loaded]
    good = np.stack([pixels for _, pixels, error in loaded if error is None])
    np.testing.assert_allclose(
        np.stack([r.probabilities for r in results if r.ok]), emonet.predict_arrays(good), rtol=1e-4, atol=1e-6
    )
