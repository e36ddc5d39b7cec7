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
