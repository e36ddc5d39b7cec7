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


def test_arrays_that_are_not_images_are_named_errors_not_nan_predictions(emonet):
    """An array with NaN or inf, of a complex/object/string dtype, with values outside [0, 255], or empty
    used to come back ok with NaN probabilities (or silently converted); now it is that item's error."""
    image = np.random.default_rng(6).integers(0, 256, (40, 50, 3), dtype=np.uint8)
    nan = image.astype(np.float64)
    nan[3, 4, 0] = np.nan
    items = [
        image,
        nan,
        np.where(image > 128, np.inf, 0.0),
        image.astype(complex),
        image.astype(object),
        np.full((40, 50), "x"),
        image / 255.0 * 300,
        image.astype(np.int16) - 10,
        np.zeros((0, 5, 3), np.uint8),
        np.zeros((5, 0, 3)),
        image / 255.0,  # a [0, 1] image is valid (in range), just very dark
    ]
    results = emonet.predict_images(items, batch_size=4)
    assert len(results) == len(items) and results[0].ok and results[-1].ok
    expected = [
        "contains NaN or infinite values",
        "contains NaN or infinite values",
        "dtype complex128 is not an image's",
        "dtype object is not an image's",
        "dtype <U1 is not an image's",
        "values outside [0, 255] (min 0, max 300); pixels are 0-255 (a [0, 1] image must be multiplied by 255)",
        "values outside [0, 255] (min -10,",
        "empty image of shape (0, 5, 3)",
        "empty image of shape (5, 0, 3)",
    ]
    for i, message in enumerate(expected, start=1):
        r = results[i]
        assert not r.ok and r.probabilities is None, (i, r)
        assert r.error.startswith(f"<array #{i}>: ") and message in r.error, (i, r.error)
    assert all(np.isfinite(r.probabilities).all() for r in results if r.ok)


class _ArrayLike:
    """Looks like a tensor (ndim, shape, dtype) but its conversion raises `error`."""

    ndim, shape, dtype = 3, (4, 4, 3), "uint8"

    def __init__(self, error):
        self.error = error

    def __array__(self, *args, **kwargs):
        raise self.error


def test_any_exception_of_one_item_is_its_error(emonet):
    """A __fspath__ that raises or returns an int, a conversion that raises ZeroDivisionError, TypeError
    or tf's InvalidArgumentError, and an object with only an `ndim`, used to raise out of predict_images
    (one bad item killed the call); now each is its item's error, naming the item and the exception type."""
    import os

    import tensorflow as tf

    class RaisingPath(os.PathLike):
        def __fspath__(self):
            raise ZeroDivisionError("division by zero in __fspath__")

    class IntPath(os.PathLike):
        def __fspath__(self):
            return 3

    class FakeNd:
        ndim = 2

    class FakeTensor(_ArrayLike):
        pass

    image = np.random.default_rng(7).integers(0, 256, (40, 50, 3), dtype=np.uint8)
    items = [
        image,
        RaisingPath(),
        IntPath(),
        FakeTensor(TypeError("cannot be read")),
        FakeTensor(ZeroDivisionError("no pixels")),
        FakeTensor(tf.errors.InvalidArgumentError(None, None, "bad tensor")),
        FakeNd(),
        image,
    ]
    for predict in (emonet.predict_images, lambda x, **kw: list(emonet.iter_predict_images(x, **kw))):
        results = predict(items, batch_size=3)
        assert len(results) == len(items) and results[0].ok and results[-1].ok
        errors = [r.error for r in results[1:-1]]
        assert errors[0].startswith("<RaisingPath #1>: ZeroDivisionError: division by zero in __fspath__")
        assert errors[1].startswith("<IntPath #2>: TypeError: ") and "__fspath__" in errors[1]
        assert errors[2] == "<FakeTensor #3>: TypeError: cannot be read"
        assert errors[3] == "<FakeTensor #4>: ZeroDivisionError: no pixels"
        assert errors[4].startswith("<FakeTensor #5>: InvalidArgumentError: ") and "bad tensor" in errors[4]
        assert errors[5].startswith("<FakeNd #6>: unsupported input type FakeNd"), errors[5]
        assert [r.source for r in results[1:-1]] == [e.split(":")[0] for e in errors]


def test_keyboard_interrupt_of_an_item_still_stops_the_call(emonet):
    with pytest.raises(KeyboardInterrupt):
        emonet.predict_images([_ArrayLike(KeyboardInterrupt())])


def test_non_lists_are_refused_at_the_call_and_memoryview_is_bytes(emonet, image_files):
    """None or a number used to fail with numpy/iteration errors, a dict predicted its keys, and
    iter_predict_images(42) raised only at the first next(); a memoryview was read as an array."""
    for caller, call in (
        ("predict_images", emonet.predict_images),
        ("iter_predict_images", emonet.iter_predict_images),
    ):
        for value, kind in ((None, "NoneType"), (42, "int"), (3.5, "float")):
            with pytest.raises(TypeError, match=rf"^{caller} takes a list of inputs, got {kind}$"):
                call(value)  # iter_predict_images: at the call, before any next()
        with pytest.raises(TypeError, match=rf"{caller} takes a list of inputs, got a dict; pass a list of its keys"):
            call({"a.jpg": 1})
        with pytest.raises(TypeError, match=rf"{caller} takes a list of inputs, got a single memoryview"):
            call(memoryview(b"abc"))
    data = image_files["rgb_jpeg"].read_bytes()
    from_view, from_bytes = emonet.predict_images([memoryview(data), data])
    assert from_view.ok and from_view.source == "<bytes #0>"
    np.testing.assert_allclose(from_view.probabilities, from_bytes.probabilities, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(exif_orientation="yes"), r"exif_orientation must be None, True or False, got 'yes'"),
        (dict(exif_orientation=1), r"exif_orientation must be None, True or False, got 1"),
        (dict(batch_size=None), r"batch_size must be a positive integer, got None"),
        (dict(batch_size=0), r"batch_size must be a positive integer, got 0"),
        (dict(batch_size=2.0), r"batch_size must be a positive integer, got 2.0"),
        (dict(batch_size=True), r"batch_size must be a positive integer, got True"),
    ],
)
def test_bad_arguments_are_refused_at_the_call(emonet, kwargs, message):
    image = np.zeros((8, 8, 3), np.uint8)
    with pytest.raises(ValueError, match=message):
        emonet.predict_images([image], **kwargs)
    with pytest.raises(ValueError, match=message):
        emonet.iter_predict_images([image], **kwargs)  # at the call, before any next()


def test_workers_are_checked_and_numpy_values_accepted(emonet):
    image = np.zeros((8, 8, 3), np.uint8)
    for workers in (-1, 0, 1.5, "2"):
        with pytest.raises(ValueError, match=rf"workers must be a positive integer, got {workers!r}"):
            emonet.iter_predict_images([image], workers=workers)
    results = list(
        emonet.iter_predict_images(
            [image], batch_size=np.int64(2), workers=np.int32(1), exif_orientation=np.bool_(True)
        )
    )
    assert len(results) == 1 and results[0].ok
    assert emonet.predict_images([image], exif_orientation=np.False_)[0].ok
