"""The image decoder contract, on every path: PIL's pixels (round(v / 257) for 16-bit), or a clear refusal.

Paths: the host (`decode_image_file`, `load_image`: EmoNet.predict_images and the CLI), tf.data
(`decode_image` / `preprocess_image_bytes` in `Dataset.map`, as emonet_tf.data does), and the
SavedModel's `serving_default` bytes signature. The corpus (tests/decoding_corpus.py) is generated
here: every JPEG/PNG/BMP/GIF/WebP/TIFF variant in 64 x 48 and exactly 227 x 227.
"""

from __future__ import annotations

import io
import struct

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image, ImageOps

import decoding_corpus
from emonet_tf import export, preprocessing
from emonet_tf.backbone import AlexNetBackbone
from emonet_tf.classifier import EmoNetClassifier

# PIL's advice when it reads a palette PNG with tRNS; the pixels are what this module checks.
pytestmark = pytest.mark.filterwarnings("ignore:Palette images with Transparency")


def _exact_size(item) -> bool:
    return item.expected.shape == (227, 227, 3)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return decoding_corpus.make_corpus(tmp_path_factory.mktemp("corpus"))


def _max_diff(got: np.ndarray, want: np.ndarray) -> int:
    assert got.shape == want.shape, (got.shape, want.shape)
    return int(np.abs(got.astype(np.int64) - want.astype(np.int64)).max())


def test_corpus_covers_the_formats_and_catches_the_old_decoder(corpus):
    # What the corpus must contain, and proof that it detects the two reported faults of the old
    # in-graph decoder (tf.io.decode_image): the fast IDCT, and colour-table BMPs read as grey indices.
    names = {name.rsplit("_", 1)[0] for name in corpus}
    for needed in (
        "jpeg_progressive",
        "jpeg_q100",
        "jpeg_cmyk",
        "jpeg_ycck",
        "jpeg_exif_rotate90",
        "png_grey1",
        "png_grey2",
        "png_grey4",
        "png_rgb16",
        "png_palette8_trns",
        "png_grey_alpha8",
        "png_rgba8",
        "bmp_1bit",
        "bmp_palette4",
        "bmp_palette8",
        "bmp_grey8",
        "bmp_rgb16_555",
        "bmp_rgb32",
        "bmp_rle8",
        "bmp_rle4",
        "gif_animated",
        "webp_lossy",
        "webp_lossless",
        "webp_animated",
        "tiff_rgb8",
        "tiff_rgb16",
    ):
        assert needed in names, needed
    old = {
        name: tf.io.decode_image(corpus[name].path.read_bytes(), channels=3, expand_animations=False).numpy()
        for name in ("jpeg_q100_exact", "bmp_palette8_all_blue_small")
    }
    assert _max_diff(old["jpeg_q100_exact"], corpus["jpeg_q100_exact"].expected) >= 3
    assert (old["bmp_palette8_all_blue_small"] == 1).all()
    assert (corpus["bmp_palette8_all_blue_small"].expected == (0, 0, 255)).all()
    # The 16-bit expectation is not PIL's: PIL clips 16-bit grey and truncates 16-bit RGB.
    for name in ("png_grey16_small", "png_rgb16_small"):
        assert _max_diff(decoding_corpus.pil_rgb(corpus[name].path), corpus[name].expected) > 0, name


def test_host_decoder_gives_pils_pixels_for_every_file(corpus):
    for name, item in corpus.items():
        got = preprocessing.decode_image_file(item.path)
        assert got.dtype == np.uint8 and got.ndim == 3 and got.shape[-1] == 3, name
        assert _max_diff(got, item.expected) == 0, name
        assert _max_diff(preprocessing.decode_bytes(item.path.read_bytes()), item.expected) == 0, name


def test_host_load_image_does_not_resample_exact_size(corpus):
    for name, item in corpus.items():
        if _exact_size(item):
            out = preprocessing.load_image(item.path)
            assert out.dtype == np.float32 and out.shape == (227, 227, 3), name
            np.testing.assert_array_equal(out, item.expected.astype(np.float32), err_msg=name)


def test_tf_data_path_decodes_exactly_or_refuses_with_the_reason(corpus):
    accepted = [(n, f) for n, f in corpus.items() if f.in_graph]
    refused = [(n, f) for n, f in corpus.items() if not f.in_graph]
    assert len(accepted) > 50 and len(refused) > 25
    ds = tf.data.Dataset.from_tensor_slices([f.path.read_bytes() for _, f in accepted])
    for (name, item), image in zip(accepted, ds.map(preprocessing.decode_image)):
        image = image.numpy()
        assert image.dtype == np.float32
        np.testing.assert_array_equal(image, np.round(image), err_msg=name)  # integers, as uint8 pixels
        assert _max_diff(image, item.expected) == 0, name
    # The training pipeline's op (decode + resize): an exactly 227 x 227 image comes through untouched.
    exact = [(n, f) for n, f in accepted if _exact_size(f)]
    ds = tf.data.Dataset.from_tensor_slices([f.path.read_bytes() for _, f in exact])
    for (name, item), image in zip(exact, ds.map(preprocessing.preprocess_image_bytes)):
        assert _max_diff(image.numpy(), item.expected) == 0, name
    # One pipeline for all refused files: a tf.data iterator reports each element's error and goes on.
    iterator = iter(
        tf.data.Dataset.from_tensor_slices([f.path.read_bytes() for _, f in refused]).map(preprocessing.decode_image)
    )
    for name, item in refused:
        with pytest.raises(tf.errors.InvalidArgumentError) as info:
            next(iterator)
        message = info.value.message
        assert "could not be decoded in-graph" in message and item.refusal in message, (name, message)
    with pytest.raises(StopIteration):
        next(iterator)


def test_in_graph_refusal_is_empty_exactly_for_accepted_files(corpus):
    for name, item in corpus.items():
        reason = preprocessing.in_graph_refusal(tf.constant(item.path.read_bytes())).numpy().decode()
        assert (reason == "") == item.in_graph, (name, reason)
        assert item.refusal in reason, (name, reason)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A small real export (backbone up to flatten, 20-way head), loaded back as TF Serving would."""
    keras.utils.set_random_seed(5)
    model = EmoNetClassifier(AlexNetBackbone(output_layer="flatten"))
    folder = str(tmp_path_factory.mktemp("saved") / "model")
    export.export_saved_model(model, folder)
    loaded = tf.saved_model.load(folder)
    return loaded.signatures[export.SERVING_DEFAULT], loaded.signatures[export.SERVE_PREPROCESSED]


def test_saved_model_bytes_signature_sees_pils_pixels(corpus, served):
    serve_bytes, serve_pixels = served
    exact = [(n, f) for n, f in corpus.items() if f.in_graph and _exact_size(f)]
    data = tf.constant([f.path.read_bytes() for _, f in exact])
    pixels = np.stack([f.expected for _, f in exact]).astype(np.float32)
    from_bytes = serve_bytes(images_bytes=data)["logits"].numpy()
    # The same batch of the contract's pixels through the same network: equal to the last bit when, and
    # only when, the signature decoded the same pixels (227 x 227 images are not resampled).
    np.testing.assert_array_equal(from_bytes, serve_pixels(images=tf.constant(pixels))["logits"].numpy())
    nudged = pixels.copy()
    nudged[len(exact) // 2, 100, 100, 1] += 1  # one grey level at one pixel of one image
    moved = np.abs(serve_pixels(images=tf.constant(nudged))["logits"].numpy() - from_bytes).max(axis=1)
    assert moved[len(exact) // 2] > 0 and (np.delete(moved, len(exact) // 2) == 0).all()


def test_saved_model_refuses_with_the_item_and_the_reason(corpus, served):
    serve_bytes, _ = served
    good = corpus["png_rgb8_exact"].path.read_bytes()
    for name, item in corpus.items():
        if item.in_graph or not name.endswith("_small"):
            continue
        with pytest.raises(tf.errors.InvalidArgumentError) as info:
            serve_bytes(images_bytes=tf.constant([good, item.path.read_bytes()]))
        message = info.value.message
        assert "[images_bytes item] [1] [could not be decoded in-graph:]" in message, (name, message)
        assert item.refusal in message, (name, message)
    with pytest.raises(tf.errors.InvalidArgumentError, match="JPEG, PNG, GIF, BMP or WebP"):
        serve_bytes(images_bytes=tf.constant([b"plain text, not an image"]))


def _truncated_files(tmp_path):
    rgb = decoding_corpus.structured(96, 128, 3, seed=3)
    files = {}
    for name, fmt, kwargs in (
        ("baseline.jpg", "JPEG", {"quality": 90}),
        ("progressive.jpg", "JPEG", {"quality": 90, "progressive": True}),
        ("image.png", "PNG", {}),
    ):
        buf = io.BytesIO()
        Image.fromarray(rgb).save(buf, fmt, **kwargs)
        path = tmp_path / f"half_{name}"
        path.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
        files[name] = path
    return files


def test_truncated_files_are_refused_and_called_truncated(tmp_path):
    for name, path in _truncated_files(tmp_path).items():
        with pytest.raises(preprocessing.ImageDecodeError, match="truncated") as info:
            preprocessing.load_image(path)
        assert str(path) in str(info.value), name
        with pytest.raises(tf.errors.InvalidArgumentError, match="truncated"):
            preprocessing.decode_image(tf.constant(path.read_bytes()))


def test_palette_bmp_of_blue_pixels(corpus):
    # Every pixel is colour-table entry 1 = pure blue: the old in-graph decoder returned (1, 1, 1).
    item = corpus["bmp_palette8_all_blue_small"]
    pixels = preprocessing.decode_image_file(item.path)
    assert (pixels == np.array([0, 0, 255], np.uint8)).all()
    with pytest.raises(tf.errors.InvalidArgumentError, match="8-bit colour-table BMP is not decoded in-graph"):
        preprocessing.decode_image(tf.constant(item.path.read_bytes()))


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_ignored_by_default_and_applied_on_request(tmp_path, orientation):
    rgb = decoding_corpus.structured(48, 64, 3, seed=orientation)
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = tmp_path / f"oriented{orientation}.jpg"
    Image.fromarray(rgb).save(path, "JPEG", quality=95, exif=exif.tobytes())
    with Image.open(path) as im:
        as_stored = np.asarray(im.convert("RGB"))
        as_displayed = np.asarray(ImageOps.exif_transpose(im).convert("RGB"))
    np.testing.assert_array_equal(preprocessing.decode_image_file(path), as_stored)
    np.testing.assert_array_equal(preprocessing.decode_image_file(path, exif_orientation=True), as_displayed)
    np.testing.assert_array_equal(preprocessing.decode_image(tf.constant(path.read_bytes())).numpy(), as_stored)
    expected = preprocessing.preprocess_array(as_displayed)
    np.testing.assert_array_equal(preprocessing.load_image(path, exif_orientation=True), expected)
    np.testing.assert_array_equal(preprocessing.preprocess_bytes(path.read_bytes(), exif_orientation=True), expected)


def test_exif_orientation_of_16_bit_png(tmp_path):
    grey16 = decoding_corpus.structured(40, 56, 1, seed=8, maximum=65535)[..., 0]
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "grey16_rotated.png"
    Image.fromarray(grey16.astype(np.uint16)).save(path, "PNG", exif=exif.tobytes())
    eight = decoding_corpus.from_16bit(grey16)
    # The rotation PIL applies to an 8-bit image with the same tag.
    holder = tmp_path / "eight.png"
    Image.fromarray(eight).save(holder, "PNG", exif=exif.tobytes())
    with Image.open(holder) as im:
        rotated = np.asarray(ImageOps.exif_transpose(im).convert("RGB"))
    np.testing.assert_array_equal(preprocessing.decode_image_file(path), eight)
    np.testing.assert_array_equal(preprocessing.decode_image_file(path, exif_orientation=True), rotated)


def test_host_errors_name_the_source_and_the_reason(tmp_path):
    cases = {
        "empty.png": (b"", "empty file"),
        "notes.jpg": (b"this is not an image", "not a JPEG, PNG, GIF, BMP, WEBP, TIFF"),
    }
    # A format PIL reads but the library does not accept (outside MATLAB's imread formats).
    buf = io.BytesIO()
    Image.fromarray(decoding_corpus.structured(8, 8, 3, seed=1)).save(buf, "TGA")
    cases["image.tga"] = (buf.getvalue(), "not a JPEG, PNG")
    buf = io.BytesIO()
    Image.fromarray(np.zeros((8, 8), np.float32), "F").save(buf, "TIFF")
    cases["float.tif"] = (buf.getvalue(), "no defined conversion to 0-255")
    for name, (data, reason) in cases.items():
        path = tmp_path / name
        path.write_bytes(data)
        with pytest.raises(preprocessing.ImageDecodeError, match=reason) as info:
            preprocessing.load_image(path)
        assert str(path) in str(info.value)
        with pytest.raises(preprocessing.ImageDecodeError, match=f"<bytes #7>: .*{reason}"):
            preprocessing.preprocess_bytes(data, source="<bytes #7>")
    with pytest.raises(preprocessing.ImageDecodeError, match="missing.png: cannot read file"):
        preprocessing.decode_image_file(tmp_path / "missing.png")


def test_png_without_iend_host_reads_it_graph_calls_it_truncated(tmp_path):
    rgb = decoding_corpus.structured(30, 40, 3, seed=4)
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "PNG")
    data = buf.getvalue()
    assert data[-12:] == struct.pack(">I", 0) + b"IEND" + struct.pack(">I", 0xAE426082)
    np.testing.assert_array_equal(preprocessing.decode_bytes(data[:-12]), rgb)  # PIL reads it (all rows are there)
    with pytest.raises(tf.errors.InvalidArgumentError, match="truncated PNG"):
        preprocessing.decode_image(tf.constant(data[:-12]))
    # Bytes after the end marker (some writers append data): read by every path.
    np.testing.assert_array_equal(preprocessing.decode_image(tf.constant(data + b"trailer")).numpy(), rgb)
