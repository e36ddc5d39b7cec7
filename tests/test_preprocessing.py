"""Preprocessing on real encoded images of every kind, against an independent MATLAB imresize transcription."""

import numpy as np
import pytest
import tensorflow as tf

import matlab_imresize
from emonet_tf import preprocessing


def _check_227(x):
    assert x.shape == (227, 227, 3) and x.dtype == np.float32
    assert x.min() >= 0 and x.max() <= 255
    np.testing.assert_array_equal(x, np.round(x))  # uint8 semantics, as MATLAB's imresize output


def test_matches_matlab_imresize_on_photos(photos):
    for name, image in photos.items():
        out = preprocessing.preprocess_array(image)
        _check_227(out)
        ref = matlab_imresize.imresize(image)
        diff = np.abs(out - ref)
        # Identical except rare float32 rounding ties (x.5), which move a value by one grey level.
        assert diff.max() <= 1, name
        assert (diff == 0).mean() > 0.9995, name


def test_tf_bicubic_option_is_close_to_matlab(photos):
    image = photos["hopper"]
    out = preprocessing.preprocess_array(image, method="bicubic", antialias=True)
    _check_227(out)
    diff = np.abs(out - matlab_imresize.imresize(image))
    assert diff.mean() < 0.5 and (diff <= 1).mean() > 0.99
    with pytest.raises(ValueError, match="Unknown resize method"):
        preprocessing.preprocess_array(image, method="cubic-ish")


def test_every_file_kind_decodes_to_the_same_picture(image_files, photos):
    reference = matlab_imresize.imresize(photos["hopper"])
    for kind in ("rgb_png", "rgba_png", "rgb16_png", "rgb_bmp"):
        out = preprocessing.load_image(image_files[kind])
        _check_227(out)
        assert np.abs(out - reference).max() <= 1, kind
    jpeg = preprocessing.load_image(image_files["rgb_jpeg"])
    assert np.abs(jpeg - reference).mean() < 3  # lossy, but the same picture


def test_grayscale_is_replicated(image_files):
    gray = preprocessing.load_image(image_files["gray_png"])
    _check_227(gray)
    np.testing.assert_array_equal(gray[..., 0], gray[..., 1])
    np.testing.assert_array_equal(gray[..., 0], gray[..., 2])


def test_non_square_is_stretched_not_cropped(image_files, photos):
    out = preprocessing.load_image(image_files["wide_jpeg"])
    _check_227(out)
    ref = matlab_imresize.imresize(photos["hopper_wide"])
    assert np.abs(out - ref).mean() < 3


def test_exact_size_is_not_resampled(image_files):
    import cv2

    raw = cv2.cvtColor(cv2.imread(str(image_files["exact_png"])), cv2.COLOR_BGR2RGB).astype(np.float32)
    np.testing.assert_array_equal(preprocessing.load_image(image_files["exact_png"]), raw)


def test_rgb_order_and_in_graph_bytes_path():
    import cv2

    image = np.zeros((300, 200, 3), np.uint8)
    image[:150, :, 0] = 255  # red top half (RGB)
    ok, png = cv2.imencode(".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    out = preprocessing.preprocess_image_bytes(tf.constant(png.tobytes())).numpy()
    _check_227(out)
    assert out[10, 100, 0] == 255 and out[10, 100, 2] == 0 and out[200, 100, 0] == 0
    batch = tf.map_fn(
        preprocessing.preprocess_image_bytes,
        tf.constant([png.tobytes()] * 2),
        fn_output_signature=tf.TensorSpec([227, 227, 3], tf.float32),
    )
    np.testing.assert_array_equal(batch[1].numpy(), out)


def test_in_memory_arrays_of_every_layout(photos):
    rgb = photos["pack"]
    expected = preprocessing.preprocess_array(rgb)
    rgba = np.concatenate([rgb, np.zeros(rgb.shape[:2] + (1,), np.uint8)], axis=-1)
    np.testing.assert_array_equal(preprocessing.preprocess_array(rgba), expected)
    assert np.abs(preprocessing.preprocess_array(rgb.astype(np.uint16) * 257) - expected).max() <= 1
    gray = preprocessing.preprocess_array(rgb[..., 1])
    np.testing.assert_array_equal(gray[..., 0], gray[..., 2])
    with pytest.raises(ValueError, match="Expected an image"):
        preprocessing.preprocess_array(np.zeros((4, 4, 2), np.uint8))


def test_bad_files_name_the_file(tmp_path):
    text = tmp_path / "notes.jpg"
    text.write_text("this is not an image")
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    truncated = tmp_path / "truncated.png"
    import cv2

    ok, png = cv2.imencode(".png", np.zeros((40, 40, 3), np.uint8))
    truncated.write_bytes(png.tobytes()[:30])
    for path in (text, empty, truncated, tmp_path / "missing.jpg"):
        with pytest.raises(preprocessing.ImageDecodeError, match=str(path.name)):
            preprocessing.load_image(path)


def _varied_sizes(photos):
    """Real photos at sizes that exercise every branch of the MATLAB resize: upscaling, downscaling, odd
    sizes, rows first and columns first, fewer and more than 16 taps, and rows of W * 3 floats that are
    and are not a multiple of 8 (Eigen's packet; see preprocessing._host_axis0)."""
    import cv2

    images = {name: image for name, image in photos.items()}
    for height, width in ((721, 1279), (1103, 703), (1500, 229), (227, 1201), (97, 1000), (228, 227), (13, 17)):
        images[f"hopper {height}x{width}"] = cv2.resize(
            photos["hopper"], (width, height), interpolation=cv2.INTER_CUBIC
        )
    images["pack 1x1"] = photos["pack"][:1, :1]
    images["hopper 227x227"] = photos["hopper"][:227, :227]
    return images


def test_host_resize_is_the_graph_resize_bit_for_bit(photos):
    """predict_images / load_image resize in numpy (_host_matlab_imresize); the SavedModel and tf.data in
    the graph (resize_image). Same pixels, exactly, on every size."""
    assert preprocessing._host_resize_exact()  # the numpy path is the one in use on this machine
    graph = tf.function(lambda im: preprocessing.resize_image(tf.cast(im, tf.float32), "matlab"))
    for name, image in _varied_sizes(photos).items():
        image = np.ascontiguousarray(image)
        host = preprocessing._host_matlab_imresize(image)
        assert host.dtype == np.float32 and host.shape == (227, 227, 3), name
        np.testing.assert_array_equal(host, graph(tf.constant(image)).numpy(), err_msg=name)
        np.testing.assert_array_equal(host, preprocessing.preprocess_array(image), err_msg=name)
        diff = np.abs(host - matlab_imresize.imresize(image))  # float64 reference: rare x.5 ties only
        assert diff.max() <= 1 and (diff == 0).mean() > 0.999, name


def test_host_sums_follow_the_graph_order_bit_for_bit():
    """The unrounded float32 sums of one resize pass (before rounding hides a different order)."""
    rng = np.random.default_rng(3)
    graph = tf.function(lambda x, n: preprocessing._matlab_resize_axis0(x, n, rounded=False))
    for in_len, width, out_len in (
        (1280, 720, 227),
        (1103, 227, 227),
        (600, 171, 227),
        (100, 5, 227),
        (2000, 3, 31),
        (3, 4, 227),
    ):
        x = rng.integers(0, 256, (in_len, width, 3), dtype=np.uint8)
        want = graph(tf.constant(x, tf.float32), out_len).numpy().reshape(out_len, -1)
        for axis0 in (preprocessing._host_axis0, preprocessing._host_axis0_sparse):
            got = axis0(x.reshape(in_len, -1), out_len)
            assert got.dtype == np.float32 and got.shape == want.shape
            np.testing.assert_array_equal(
                got.view(np.int32), want.view(np.int32), err_msg=f"{axis0.__name__} {in_len} -> {out_len}"
            )


def test_the_sparse_pass_is_the_one_in_use_and_keeps_duplicate_taps():
    """scipy's CSR product sums each row's entries in stored (tap) order, in float32, without FMA on this
    build: `_host_axis0_function` picks it. Mirrored borders name one input row in two taps (upscaling a
    3-row image): both entries stay (a canonical CSR would add them first: another order)."""
    assert preprocessing._host_axis0_function() is preprocessing._host_axis0_sparse
    (matrix,), tail = preprocessing._sparse_taps(3, 227)
    assert tail == [] and matrix.nnz == 227 * preprocessing._matlab_taps(3, 227)[0].shape[0]
    x = np.random.default_rng(5).uniform(0, 255, (3, 10)).astype(np.float32)
    np.testing.assert_array_equal(
        preprocessing._host_axis0_sparse(x, 227).view(np.int32), preprocessing._host_axis0(x, 227).view(np.int32)
    )
    # The product left the shared, cached matrix as it was (no in-place sum_duplicates).
    assert matrix.nnz == 227 * preprocessing._matlab_taps(3, 227)[0].shape[0] and not matrix.has_canonical_format


def test_graph_resize_in_blocks_is_one_reduce_sum(monkeypatch):
    """The graph sums blocks of output rows (_RESIZE_BLOCK_BYTES); the bits equal one reduce_sum over all rows."""
    rng = np.random.default_rng(4)

    def sums(budget, x, out_len, dynamic=False):
        monkeypatch.setattr(preprocessing, "_RESIZE_BLOCK_BYTES", budget)
        spec = [tf.TensorSpec([None, None, None], tf.float32)] if dynamic else None  # the SavedModel's case
        fn = tf.function(lambda t: preprocessing._matlab_resize_axis0(t, out_len, rounded=False), input_signature=spec)
        return fn(tf.constant(x)).numpy()

    for in_len, width in ((1280, 720), (1103, 229), (480, 333), (50, 7)):
        x = rng.uniform(0, 255, (in_len, width, 3)).astype(np.float32)
        whole = sums(2**40, x, 227)
        for budget in (2**14, 2**18, 2**21):
            np.testing.assert_array_equal(sums(budget, x, 227).view(np.int32), whole.view(np.int32))
            np.testing.assert_array_equal(sums(budget, x, 227, dynamic=True).view(np.int32), whole.view(np.int32))


def test_graph_functions_are_the_resizes_and_bytes_have_one_traced_function():
    """`_graph_functions` held an unused bytes function beside `EmoNetPreprocessor.traced_image_bytes`;
    now it holds the two resizes, by name, and those agree with each other and with preprocess_array."""
    from emonet_tf.preprocessor import EmoNetPreprocessor

    fns = preprocessing._graph_functions("bilinear", True)
    assert fns._fields == ("from_image", "from_pixels")
    pixels = np.random.default_rng(2).integers(0, 256, (30, 41, 3), dtype=np.uint8)
    from_pixels = fns.from_pixels(tf.constant(pixels)).numpy()
    np.testing.assert_array_equal(from_pixels, fns.from_image(tf.constant(pixels.astype(np.float32))).numpy())
    np.testing.assert_array_equal(from_pixels, preprocessing.preprocess_array(pixels, method="bilinear"))
    np.testing.assert_array_equal(
        preprocessing.preprocess_array(pixels.astype(np.float32), method="bilinear"), from_pixels
    )
    data = tf.io.encode_png(pixels)
    traced = EmoNetPreprocessor(resize_method="bilinear").traced_image_bytes(data)
    np.testing.assert_array_equal(traced.numpy(), from_pixels)


def test_arrays_that_are_not_images_are_refused_naming_the_problem():
    """NaN, inf, complex/object/string dtypes, values outside [0, 255] and empty images used to come back
    as NaN probabilities or be silently converted; `to_rgb_float` (every array but uint8 H x W x 3) and the
    uint8 path of `preprocess_array` now raise ValueError naming the problem."""
    nan = np.full((6, 7, 3), 100.0)
    nan[2, 3, 1] = np.nan
    inf = np.full((6, 7), 100.0, np.float32)
    inf[0, 0] = -np.inf
    bad = [
        (nan, r"contains NaN or infinite values"),
        (inf, r"contains NaN or infinite values"),
        (np.zeros((6, 7, 3), complex), r"dtype complex128 is not an image's \(expected uint8, uint16, bool, integer"),
        (np.zeros((6, 7, 3), object), r"dtype object is not an image's"),
        (np.full((6, 7), "x"), r"dtype <U1 is not an image's"),
        (
            np.full((6, 7, 3), 300.5),
            r"values outside \[0, 255\] \(min 300.5, max 300.5\); pixels are 0-255 \(a \[0, 1\]",
        ),
        (np.full((6, 7, 3), -3, np.int16), r"values outside \[0, 255\] \(min -3, max -3\)"),
        (np.full((6, 7, 3), 256, np.int64), r"values outside \[0, 255\] \(min 256, max 256\)"),
        (np.zeros((0, 5, 3)), r"empty image of shape \(0, 5, 3\)"),
        (np.zeros((5, 0, 3), np.float32), r"empty image of shape \(5, 0, 3\)"),
        (np.zeros((0, 5)), r"empty image of shape \(0, 5\)"),
    ]
    for array, message in bad:
        with pytest.raises(ValueError, match=message):
            preprocessing.to_rgb_float(array)
        with pytest.raises(ValueError, match=message):
            preprocessing.preprocess_array(array)
    for shape in ((0, 5, 3), (5, 0, 3)):  # uint8 H x W x 3 takes the frames' path, which checks emptiness
        with pytest.raises(ValueError, match=rf"empty image of shape \({shape[0]}, {shape[1]}, 3\)"):
            preprocessing.preprocess_array(np.zeros(shape, np.uint8))
    # Valid images of every accepted dtype still convert, 0 and 255 included.
    for good in (
        np.array([[0, 255]], np.uint8),
        np.array([[0, 65535]], np.uint16),
        np.array([[False, True]]),
        np.array([[0, 255]], np.int64),
        np.array([[0.0, 255.0]], np.float32),
        np.array([[0.0, 1.0]]),  # a [0, 1] image is in range (it is read as very dark)
    ):
        rgb = preprocessing.to_rgb_float(good)
        assert rgb.shape == (1, 2, 3) and rgb.dtype == np.float32 and np.isfinite(rgb).all()
    np.testing.assert_array_equal(preprocessing.to_rgb_float(np.array([[0, 65535]], np.uint16))[0, :, 0], [0, 255])


def test_uint8_frames_skip_the_value_checks(photos, monkeypatch):
    """Video frames (uint8 H x W x 3) do not go through `to_rgb_float`: no min/max or finiteness pass
    over their pixels, and their result is unchanged."""
    frame = photos["pack"]
    expected = preprocessing._resize_pixels(frame, "matlab", True)

    def refuse(array):
        raise AssertionError("uint8 frames must not be converted to float on the host")

    monkeypatch.setattr(preprocessing, "to_rgb_float", refuse)
    np.testing.assert_array_equal(preprocessing.preprocess_array(frame), expected)


def test_tf_data_preprocessing_runs_the_host_resize_with_the_graphs_pixels(photos, monkeypatch):
    """`EmoNetPreprocessor.traced_image_bytes` (every tf.data pipeline) resizes with the host code in a
    numpy_function where `_host_resize_exact` holds: the pixels of the graph-only path (the SavedModel's)
    bit for bit, on JPEG and PNG photos of every branch's size; and the graph-only path where it does not."""
    import cv2

    from emonet_tf import preprocessor as preprocessor_lib
    from emonet_tf.preprocessor import EmoNetPreprocessor

    def encodings(image):
        bgr = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2BGR)
        return [cv2.imencode(ext, bgr)[1].tobytes() for ext in (".jpg", ".png")]

    def op_types():  # of a new graph that calls traced_image_bytes, and of the functions it calls
        graph = tf.function(lambda: traced.traced_image_bytes(tf.constant(b""), "x")).get_concrete_function().graph
        return {op.type for op in graph.get_operations()} | {
            node.op for f in graph.as_graph_def().library.function for node in f.node_def
        }

    preprocessor_lib._traced_image_bytes.cache_clear()
    graph_only = tf.function(lambda d: preprocessing.preprocess_image_bytes(d, "matlab"))
    traced = EmoNetPreprocessor(resize_method="matlab")
    assert "PyFuncStateless" in op_types()  # tf.numpy_function(stateful=False)
    for name, image in _varied_sizes(photos).items():
        for data in encodings(image):
            want = graph_only(tf.constant(data)).numpy()
            np.testing.assert_array_equal(traced.traced_image_bytes(tf.constant(data), name).numpy(), want, name)

    monkeypatch.setattr(preprocessing, "_host_resize_exact", lambda: False)
    preprocessor_lib._traced_image_bytes.cache_clear()
    try:
        assert not any("PyFunc" in op for op in op_types())
        data = encodings(photos["hopper"])[0]
        np.testing.assert_array_equal(
            traced.traced_image_bytes(tf.constant(data)).numpy(), graph_only(tf.constant(data)).numpy()
        )
    finally:
        preprocessor_lib._traced_image_bytes.cache_clear()
