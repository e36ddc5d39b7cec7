"""Hostile inputs on every decoding path: things that are not regular files, decompression bombs, animated
GIFs, malformed BMP headers. Each is generated here; each must be refused quickly, with a reason, never
hang or take gigabytes. (tests/test_decoding_conformance.py checks the pixels of well-formed files.)
"""

from __future__ import annotations

import io
import os
import struct
import threading
import time
import zlib

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

import decoding_corpus
from emonet_tf import EmoNet, export, preprocessing, weights
from emonet_tf.backbone import AlexNetBackbone
from emonet_tf.classifier import EmoNetClassifier


def _finishes(call, seconds: float = 60.0):
    """Runs `call` in a daemon thread: returns its exception (or None), fails instead of hanging forever."""
    outcome = {}

    def run():
        try:
            call()
            outcome["error"] = None
        except BaseException as err:  # noqa: BLE001 - returned to the test
            outcome["error"] = err

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert "error" in outcome, f"still running after {seconds} s (blocked?)"
    return outcome["error"]


# == Not regular files =======================================================================================
@pytest.fixture
def odd_paths(tmp_path):
    fifo = tmp_path / "ff.jpg"
    os.mkfifo(fifo)
    zero = tmp_path / "zero.png"
    zero.symlink_to("/dev/zero")
    folder = tmp_path / "folder.jpg"
    folder.mkdir()
    return {"FIFO": fifo, "character device": zero, "folder": folder}


@pytest.mark.parametrize("reader", ["load_image", "decode_image_file", "read_image_file"])
def test_image_readers_refuse_what_is_not_a_regular_file(odd_paths, reader):
    for kind, path in odd_paths.items():
        err = _finishes(lambda: getattr(preprocessing, reader)(path))
        assert isinstance(err, preprocessing.ImageDecodeError), (kind, err)
        assert str(path) in str(err) and kind in str(err) and "not a regular file" in str(err), str(err)


def test_image_file_size_is_bounded(tmp_path, monkeypatch):
    monkeypatch.setattr(preprocessing, "MAX_IMAGE_FILE_BYTES", 1000)
    path = tmp_path / "big.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(2000))
    with pytest.raises(preprocessing.ImageDecodeError, match="big.png: 2008 bytes, more than MAX_IMAGE_FILE_BYTES"):
        preprocessing.load_image(path)


def test_weight_readers_refuse_what_is_not_a_regular_file(odd_paths, tmp_path):
    for kind, path in odd_paths.items():
        if kind == "folder":
            continue  # a folder is a MATLAB text dump candidate: refused as "not a MATLAB text dump"
        weight_path = path.with_suffix(".pth")
        os.rename(path, weight_path)
        for call in (
            lambda: weights.read_weights(weight_path),
            lambda: weights.read_weights(weight_path, "ecco_pth"),
            lambda: weights.detect_format(weight_path),
            lambda: EmoNet.from_weights(weight_path),
            lambda: EmoNet.from_weights(weight_path, format="caffemodel"),
        ):
            err = _finishes(call)
            assert isinstance(err, weights.WeightFormatError), (kind, err)
            assert str(weight_path) in str(err) and kind in str(err), str(err)


def test_missing_weight_file_is_a_weight_format_error_and_a_file_not_found_error(tmp_path):
    missing = tmp_path / "nothing.pth"
    for call in (
        lambda: weights.read_weights(missing),
        lambda: weights.read_weights(missing, "bvlc_npy"),
        lambda: EmoNet.from_weights(missing),
    ):
        with pytest.raises(weights.WeightFormatError, match="nothing.pth: no such file") as info:
            call()
        assert isinstance(info.value, FileNotFoundError)


@pytest.fixture(scope="module")
def emonet():
    keras.utils.set_random_seed(4)
    return EmoNet(EmoNetClassifier(AlexNetBackbone(output_layer="flatten")))


def test_predict_images_reports_a_fifo_and_goes_on(emonet, odd_paths, tmp_path):
    good = tmp_path / "good.png"
    Image.fromarray(decoding_corpus.structured(30, 40, 3, seed=1)).save(good)
    box: list = []
    assert _finishes(lambda: box.append(emonet.predict_images([good, odd_paths["FIFO"], good]))) is None
    got = box.pop()
    assert [r.error is None for r in got] == [True, False, True]
    assert "FIFO" in got[1].error and str(odd_paths["FIFO"]) in got[1].error


def test_predict_images_exif_orientation_is_passed_to_the_loader(emonet, tmp_path):
    rgb = decoding_corpus.structured(40, 90, 3, seed=2)
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "rotated.jpg"
    Image.fromarray(rgb).save(path, "JPEG", quality=95, exif=exif.tobytes())
    data = path.read_bytes()
    stored = emonet.predict_images([path, data])
    shown = emonet.predict_images([path, data], exif_orientation=True)
    streamed = list(emonet.iter_predict_images([path], exif_orientation=True))
    want_stored = emonet.predict_arrays(preprocessing.load_image(path)[None])[0]
    want_shown = emonet.predict_arrays(preprocessing.load_image(path, exif_orientation=True)[None])[0]
    assert np.abs(want_stored - want_shown).max() > 0  # the rotation changes the input
    for result in stored:
        np.testing.assert_allclose(result.probabilities, want_stored, atol=1e-6)
    for result in shown + streamed:
        np.testing.assert_allclose(result.probabilities, want_shown, atol=1e-6)


# == Hostile image bytes =====================================================================================
def _png(width: int, height: int, rows: bytes = b"") -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit grey
    return (
        b"\x89PNG\r\n\x1a\n"
        + decoding_corpus._chunk(b"IHDR", ihdr)
        + decoding_corpus._chunk(b"IDAT", rows)
        + decoding_corpus._chunk(b"IEND", b"")
    )


def _grey_png_bomb(side: int = 12000) -> bytes:
    """A valid side x side all-black grey PNG: about 140 KB for 12000 x 12000."""
    packer = zlib.compressobj(9)
    row = bytes(side + 1)  # filter byte 0, then the samples
    body = b"".join(packer.compress(row) for _ in range(side)) + packer.flush()
    return _png(side, side, body)


def _jpeg(height=None, width=None) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(decoding_corpus.structured(16, 16, 3, seed=3)).save(buf, "JPEG", quality=90)
    data = bytearray(buf.getvalue())
    sof = data.find(b"\xff\xc0")
    if height is not None:
        data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def _animated_gif(frames: int = 600, side: int = 1000) -> bytes:
    """A side x side first frame followed by `frames` 1 x 1 images (TF's decode_gif decodes them all)."""
    buf = io.BytesIO()
    Image.fromarray(np.zeros((side, side), np.uint8)).convert("P").save(buf, "GIF")
    single = buf.getvalue()
    assert single.endswith(b";")
    tiny = b"\x2c\0\0\0\0\x01\0\x01\0\0" + b"\x02\x02\x44\x01\x00"  # descriptor, LZW size 2, one data sub-block
    return single[:-1] + tiny * frames + b";"


def _bmp_with_info_size(size: int) -> bytes:
    data = bytearray(decoding_corpus.bmp_bytes(decoding_corpus.structured(8, 8, 3, seed=4), 24))
    data[14:18] = struct.pack("<I", size)
    return bytes(data)


def _webp_declaring(width: int, height: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(decoding_corpus.structured(16, 16, 3, seed=5)).save(buf, "WEBP", quality=80)
    data = bytearray(buf.getvalue())
    assert data[12:16] == b"VP8 "
    data[26:30] = struct.pack("<HH", width, height)
    return bytes(data)


HOSTILE = {  # name: (bytes, words of the in-graph refusal)
    "png_bomb_12000": (_grey_png_bomb(), "PNG of 12000 x 12000 = 144000000 pixels, more than MAX_IMAGE_PIXELS"),
    "png_width_0": (_png(0, 5), "PNG whose header declares 0 x 5 pixels"),
    "png_height_0": (_png(5, 0), "PNG whose header declares 5 x 0 pixels"),
    "png_int_max": (_png(2**31 - 1, 2**31 - 1), "more than MAX_IMAGE_PIXELS"),
    "png_4g_wide": (_png(2**32 - 1, 1), "more than MAX_IMAGE_PIXELS"),
    "jpeg_sof_height_0": (_jpeg(0, 16), "JPEG whose header declares 16 x 0 pixels"),
    "jpeg_sof_30000": (_jpeg(30000, 30000), "JPEG of 30000 x 30000 = 900000000 pixels"),
    "gif_600_frames": (_animated_gif(), "animated GIF"),
    "gif_screen_0": (None, "GIF whose header declares 0 x"),
    "bmp_info_0": (_bmp_with_info_size(0), "BMP with an info header of 0 bytes"),
    "bmp_info_12": (_bmp_with_info_size(12), "BMP with an info header of 12 bytes"),
    "bmp_info_39": (_bmp_with_info_size(39), "BMP with an info header of 39 bytes"),
    "bmp_info_200": (_bmp_with_info_size(200), "BMP with an info header of 200 bytes"),
    "bmp_width_0": (None, "BMP whose header declares 0 x 8 pixels"),
    "webp_16000": (_webp_declaring(16000, 16000), "WebP of 16000 x 16000"),
    "webp_width_0": (_webp_declaring(0, 16), "WebP whose header declares 0 x 16"),
}
_gif = bytearray(_animated_gif(frames=0, side=8))
_gif[6:8] = b"\0\0"
HOSTILE["gif_screen_0"] = (bytes(_gif), HOSTILE["gif_screen_0"][1])
_bmp = bytearray(_bmp_with_info_size(40))
_bmp[18:22] = struct.pack("<i", 0)
HOSTILE["bmp_width_0"] = (bytes(_bmp), HOSTILE["bmp_width_0"][1])


def test_in_graph_refusal_names_each_hostile_input():
    for name, (data, words) in HOSTILE.items():
        reason = preprocessing.in_graph_refusal(tf.constant(data)).numpy().decode()
        assert words in reason, (name, reason)


def test_host_refuses_bombs_from_the_header_before_decoding(tmp_path):
    path = tmp_path / "bomb.png"
    path.write_bytes(HOSTILE["png_bomb_12000"][0])
    assert path.stat().st_size < 200_000
    start = time.monotonic()
    with pytest.raises(
        preprocessing.ImageDecodeError,
        match=r"bomb.png: 12000 x 12000 = 144000000 pixels, more than MAX_IMAGE_PIXELS \(40000000\)",
    ):
        preprocessing.load_image(path)
    assert time.monotonic() - start < 5  # was 56 s and 11.5 GB
    for name in ("jpeg_sof_30000", "webp_16000"):
        with pytest.raises(preprocessing.ImageDecodeError, match="MAX_IMAGE_PIXELS"):
            preprocessing.decode_bytes(HOSTILE[name][0], source=name)


def test_host_reads_only_the_first_frame_of_the_animated_gif():
    pixels = preprocessing.decode_bytes(HOSTILE["gif_600_frames"][0])
    assert pixels.shape == (1000, 1000, 3) and (pixels == 0).all()


def test_bmp_info_sizes_pil_refuses_are_refused_in_graph_too():
    # The sizes PIL refuses ("Unsupported BMP header type"); the graph refuses them (and 12) above.
    for size in (0, 39, 200):
        with pytest.raises(preprocessing.ImageDecodeError):
            preprocessing.decode_bytes(_bmp_with_info_size(size))


@pytest.fixture(scope="module")
def serve_bytes(tmp_path_factory):
    keras.utils.set_random_seed(5)
    folder = str(tmp_path_factory.mktemp("saved") / "model")
    export.export_saved_model(EmoNetClassifier(AlexNetBackbone(output_layer="flatten")), folder)
    return tf.saved_model.load(folder).signatures[export.SERVING_DEFAULT]


def test_saved_model_refuses_each_hostile_item_with_its_index_and_reason(serve_bytes):
    good = decoding_corpus._pil_bytes(Image.fromarray(decoding_corpus.structured(30, 40, 3, seed=6)), "PNG")
    for name, (data, words) in HOSTILE.items():
        start = time.monotonic()
        with pytest.raises(tf.errors.InvalidArgumentError) as info:
            serve_bytes(images_bytes=tf.constant([good, data]))
        message = info.value.message
        assert "[images_bytes item] [1] [could not be decoded in-graph:]" in message, (name, message)
        assert words in message, (name, message)
        assert time.monotonic() - start < 10, name
