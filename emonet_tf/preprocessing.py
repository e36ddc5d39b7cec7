"""MATLAB-matching preprocessing: one image decoder contract, RGB, resize to 227x227, values 0-255.

MATLAB's EmoNet pipeline is `imread` (RGB uint8) -> `imresize(I, [227 227])` (bicubic, antialiased
when shrinking, aspect ratio NOT kept, output rounded to uint8) -> the network's 'zerocenter'
input layer subtracts a 227x227x3 mean image. Everything up to the mean subtraction lives here;
the mean lives in the model (`MeanImageSubtraction`), so it is saved with the weights.

The decoder contract (docs/preprocessing.md has the tables and the measurements). Every path returns
the pixels PIL returns for `Image.open(f).convert("RGB")` (PIL stands for MATLAB's `imread`: both use
libjpeg's accurate integer IDCT, both ignore EXIF orientation), or raises an error that names the
source and the reason. Exception: 16-bit content (PNG, TIFF, 16-bit grey of any format), where PIL
clips (grey) or keeps only the high byte (RGB); it becomes round(value / 257), computed from the
true 16-bit values. MATLAB would feed 0-65535 to a network trained on 0-255.
- Host path (`decode_bytes`, `decode_image_file`, `preprocess_bytes`, `load_image`, hence
  `EmoNet.predict_images` and the CLI): PIL decodes the formats of HOST_FORMATS (JPEG incl.
  CMYK/YCCK, PNG, GIF, BMP of every bit count and compression, WebP, TIFF, JPEG 2000, PBM/PGM/PPM,
  PCX, ICO/CUR, Sun raster: MATLAB's imread formats that PIL reads, and WebP); 16-bit PNG/TIFF, detected
  from the header, are decoded by OpenCV. `exif_orientation=True` applies the EXIF Orientation tag
  (opt-in: MATLAB's `imread` ignores it). Truncated files raise ImageDecodeError saying "truncated".
- In-graph path (`decode_image`, `preprocess_image_bytes`: tf.data from records, the SavedModel's
  bytes signature; plain TF ops, so a SavedModel needs no emonet_tf): dispatches on the magic bytes
  to JPEG (accurate IDCT), PNG (1-16 bit), GIF (single image), BMP (24/32-bit uncompressed, 8-bit
  grey ramp) and WebP (still images), and refuses what TF's decoders do not return exactly as PIL
  does (CMYK/YCCK JPEG, colour-table/16-bit/compressed BMP or an unknown BMP info-header size, GIFs
  with a transparent colour, a first frame smaller than the canvas or a second image, animated WebP,
  TIFF, anything else) with InvalidArgumentError naming the reason (`in_graph_refusal`). It always
  ignores EXIF orientation.
- Limits on both paths: only regular files are read (a FIFO or device is refused before reading), at
  most MAX_IMAGE_FILE_BYTES; width and height from the header must be positive, their product at most
  MAX_IMAGE_PIXELS (checked before decoding).
- TFLite files take preprocessed float32 227x227x3 images; they never decode.

Other decisions:
- RGBA drops alpha (as MATLAB's `imread` returns alpha separately); grayscale is replicated.
- Animated GIFs and WebP use their first frame on the host; in-graph both are refused.
- `resize_method="matlab"` (the default) is MATLAB's `imresize` bicubic, transcribed: Keys cubic
  kernel (a = -0.5) stretched by 1/scale when shrinking (antialiasing), MATLAB's sample positions,
  mirrored borders, the most-shrunk dimension first, and uint8 rounding after each dimension.
  `tf.image.resize` methods ("bicubic" with `antialias=True` is the same kernel but with TF's
  border handling and no rounding between passes: mean difference 0.15 grey levels on photos)
  are accepted too. Images already 227x227 are not resampled (as MATLAB and emonet-py do). The host
  path runs it in numpy (`_host_matlab_imresize`, taps cached per size), the graph in TF ops
  (`_matlab_resize_axis0`, in blocks of output rows); both give the same float32 sums bit for bit
  (docs/preprocessing.md, "The MATLAB resize: implementation notes").
"""

from __future__ import annotations

import functools
import io
import os
import stat
from typing import Callable, NamedTuple, Optional, Sequence, Union

import numpy as np
import tensorflow as tf
from PIL import Image, UnidentifiedImageError

from emonet_tf.image_spec import DEFAULT_RESIZE_METHOD, IMAGE_SIZE, RESIZE_METHODS  # noqa: E402,F401
from emonet_tf.untrusted import file_kind

# The formats `decode_image` decodes in-graph (some variants of each are refused, see in_graph_refusal).
IN_GRAPH_FORMATS = ("JPEG", "PNG", "GIF", "BMP", "WebP")
# The formats the host path reads: those of MATLAB's imread that Pillow reads (PBM/PGM/PPM are "PPM",
# Sun raster is "SUN"), and WebP. Restricting Image.open to them keeps PIL's other plugins away from
# untrusted files (its EPS plugin, for one, runs Ghostscript).
HOST_FORMATS = ("JPEG", "PNG", "GIF", "BMP", "WEBP", "TIFF", "JPEG2000", "PPM", "PCX", "ICO", "CUR", "SUN")
#: Most pixels (width x height, as the header declares them) an image may have on any path: 40,000,000.
#: 8K UHD (7680 x 4320 = 33.2 MP) fits, as do the photos of today's cameras. Checked from the header
#: before anything is decoded (PIL opens lazily; the in-graph path reads the header bytes): a 140 KB PNG
#: can declare 12000 x 12000, which took 56 s and 11.5 GB through `load_image` before this limit (PIL
#: only warns from 89.5 MP and refuses from 179 MP, and the MATLAB resize then holds out x taps x W x C
#: floats). At the limit, `load_image` of an 8000 x 5000 RGB JPEG took 2.75 GB above the process's
#: baseline (peak RSS 0.75 -> 3.50 GB, measured 2026-12-01) and 6 s on the 2-core development machine.
MAX_IMAGE_PIXELS = 40_000_000
#: Largest image file the host path reads: 1 GiB (2**30 bytes). No image under MAX_IMAGE_PIXELS needs as
#: much (an uncompressed 40 MP 32-bit BMP is 160 MB); the bound keeps a file that grows without end, or a
#: huge file of junk, from being read into memory whole.
MAX_IMAGE_FILE_BYTES = 2**30
_HOST_HINT = "decode it on the host (emonet_tf.preprocessing.load_image) or convert it to PNG"


class ImageDecodeError(ValueError):
    """An image file or byte string that cannot be decoded; the message names the source and the reason."""


def check_resize_method(method: str) -> str:
    """Returns `method` if it is one of RESIZE_METHODS, else raises ValueError listing them."""
    if method not in RESIZE_METHODS:
        raise ValueError(f"Unknown resize method {method!r}; choose one of {', '.join(RESIZE_METHODS)}")
    return method


# == In-graph decoding (plain TF ops) ===================================================================
# Format codes of `image_format`; the order is the branch order of the switch_case calls below.
_EMPTY, _UNKNOWN, _JPEG, _PNG, _GIF, _BMP, _WEBP, _TIFF = range(8)
IN_GRAPH_FORMAT_CODES = (_JPEG, _PNG, _GIF, _BMP, _WEBP)  # the codes of IN_GRAPH_FORMATS


def _substr(data: tf.Tensor, at, length) -> tf.Tensor:
    """tf.strings.substr that returns "" past either end (TF's raises "pos out of range" for a short input)."""
    return tf.strings.substr(data, tf.clip_by_value(at, 0, tf.strings.length(data)), length)


def _starts_with(data: tf.Tensor, magic: bytes, at: int = 0) -> tf.Tensor:
    return tf.equal(_substr(data, at, len(magic)), magic)


def image_format(data: tf.Tensor) -> tf.Tensor:
    """int32 scalar: the format code of scalar `data` from its leading (magic) bytes.

    0 empty, 1 unknown, 2 JPEG (FF D8 FF), 3 PNG, 4 GIF (GIF87a/GIF89a), 5 BMP ("BM"),
    6 WebP ("RIFF" .... "WEBP"), 7 TIFF ("II*\\0" or "MM\\0*"). Graph ops only.
    """
    data = tf.convert_to_tensor(data, tf.string)
    checks = [
        (_JPEG, _starts_with(data, b"\xff\xd8\xff")),
        (_PNG, _starts_with(data, b"\x89PNG\r\n\x1a\n")),
        (_GIF, _starts_with(data, b"GIF87a") | _starts_with(data, b"GIF89a")),
        (_BMP, _starts_with(data, b"BM")),
        (_WEBP, _starts_with(data, b"RIFF") & _starts_with(data, b"WEBP", at=8)),
        (_TIFF, _starts_with(data, b"II*\x00") | _starts_with(data, b"MM\x00*")),
    ]
    code = tf.constant(_UNKNOWN)
    for value, matched in checks:  # the signatures are mutually exclusive
        code = tf.where(matched, value, code)
    return tf.where(tf.strings.length(data) == 0, _EMPTY, code)


def _bytes_at(data: tf.Tensor, at: tf.Tensor, count: int) -> tf.Tensor:
    """`count` bytes from byte `at` as int32, zero-padded: fields past the end of a short file read as 0."""
    raw = tf.io.decode_raw(_substr(data, at, count), tf.uint8)
    return tf.cast(tf.pad(raw, [[0, count - tf.shape(raw)[0]]]), tf.int32)


def _le(header: tf.Tensor, at: int, size: int) -> tf.Tensor:
    """Little-endian unsigned field of `size` bytes at byte `at` (as int32; 4-byte fields above 2^31 wrap)."""
    value = tf.constant(0)
    for i in reversed(range(size)):
        value = value * 256 + header[at + i]
    return value


def _contains(data: tf.Tensor, pattern: bytes) -> tf.Tensor:
    """True when `pattern` occurs anywhere in `data` (vectorized over all positions)."""
    raw = tf.io.decode_raw(data, tf.uint8)
    n = tf.shape(raw)[0] - len(pattern) + 1
    found = tf.ones([tf.maximum(n, 0)], tf.bool)
    for i, byte in enumerate(pattern):
        found &= tf.equal(raw[i : i + tf.maximum(n, 0)], byte)
    return tf.reduce_any(found)


def _ends_with_or_contains(data: tf.Tensor, pattern: bytes, tail: int) -> tf.Tensor:
    """Whether `pattern` is in `data`: a look at the usual place (`tail` bytes before the end) first,
    the full scan only when it is not there (files with trailing bytes, or truncated ones)."""
    length = tf.strings.length(data)
    at_tail = tf.equal(tf.strings.substr(data, tf.maximum(length - tail, 0), len(pattern)), pattern)
    return tf.cond(at_tail, lambda: tf.constant(True), lambda: _contains(data, pattern))


def _be(header: tf.Tensor, at: int, size: int) -> tf.Tensor:
    """Big-endian unsigned field of `size` bytes at byte `at`, as int64."""
    value = tf.constant(0, tf.int64)
    for i in range(size):
        value = value * 256 + tf.cast(header[at + i], tf.int64)
    return value


def _size_refusal(kind: str, width: tf.Tensor, height: tf.Tensor) -> tf.Tensor:
    """ "" when width x height (int64, from the header) is a size the graph may decode, else the reason:
    width or height 0 (or negative), or more than MAX_IMAGE_PIXELS pixels (checked before any decoding)."""
    width, height = tf.cast(width, tf.int64), tf.cast(height, tf.int64)
    return tf.case(
        [
            (
                (width <= 0) | (height <= 0),
                lambda: tf.strings.format(
                    kind + " whose header declares {} x {} pixels: an image needs a positive width and height",
                    (width, height),
                ),
            ),
            (
                width * height > MAX_IMAGE_PIXELS,
                lambda: tf.strings.format(
                    kind
                    + " of {} x {} = {} pixels, more than MAX_IMAGE_PIXELS ("
                    + str(MAX_IMAGE_PIXELS)
                    + "); refused "
                    "before decoding (decompression bomb guard; shrink the image first)",
                    (width, height, width * height),
                ),
            ),
        ],
        default=lambda: tf.constant(""),
        exclusive=False,
    )


def _then(reason: tf.Tensor, rest) -> tf.Tensor:
    """`reason` when it is not "", else `rest()` (run only then)."""
    return tf.cond(tf.equal(reason, ""), rest, lambda: reason)


#: Most marker segments read before a JPEG's frame header (SOF): 4096 (a camera JPEG has about 10:
#: APP0/APP1/APP2..., DQT, DHT, DRI). Bounds the graph walk's time on hostile input.
_MAX_JPEG_SEGMENTS = 4096


def _jpeg_frame(data: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor]:
    """(found, height, width, components) of the first frame header (SOFn), walking the marker segments
    from byte 2 (each FF xx with a 2-byte length; APPn, and so an EXIF thumbnail, is skipped whole).
    Read in graph ops because libjpeg (extract_jpeg_shape) fails with "Invalid JPEG data" on height 0."""
    length = tf.strings.length(data)

    def step(i, pos, found, height, width, components, stop):
        b = _bytes_at(data, pos, 10)
        marker = b[1]
        is_ff = tf.equal(b[0], 0xFF)
        fill = is_ff & tf.equal(marker, 0xFF)  # FF fill bytes before a marker
        standalone = is_ff & (((marker >= 0xD0) & (marker <= 0xD7)) | tf.equal(marker, 0x01))
        sof = is_ff & (marker >= 0xC0) & (marker <= 0xCF) & (marker != 0xC4) & (marker != 0xC8) & (marker != 0xCC)
        seg = b[2] * 256 + b[3]
        bad = (
            ~is_ff
            | tf.equal(marker, 0xD9)
            | tf.equal(marker, 0xDA)
            | tf.equal(marker, 0)
            | (~fill & ~standalone & (seg < 2))
            | (pos >= length)
        )
        new_pos = tf.where(fill, pos + 1, tf.where(standalone, pos + 2, pos + 2 + seg))
        return (
            i + 1,
            new_pos,
            sof,
            tf.where(sof, b[5] * 256 + b[6], height),
            tf.where(sof, b[7] * 256 + b[8], width),
            tf.where(sof, b[9], components),
            sof | bad,
        )

    zero = tf.constant(0)
    _, _, found, height, width, components, _ = tf.while_loop(
        lambda i, pos, f, h, w, c, stop: ~stop & (i < _MAX_JPEG_SEGMENTS),
        step,
        (zero, tf.constant(2), tf.constant(False), zero, zero, zero, tf.constant(False)),
    )
    return found, height, width, components


def _jpeg_refusal(data: tf.Tensor) -> tf.Tensor:
    # A complete JPEG has an end-of-image marker; PIL refuses one without ("image file is truncated"),
    # and TF's own error ("Invalid JPEG data") would not say why.
    complete = _ends_with_or_contains(data, b"\xff\xd9", tail=2)

    def frame():
        found, height, width, components = _jpeg_frame(data)
        # 4 components = CMYK or YCCK (Adobe). TF converts them to RGB, but up to 1 grey level away from
        # PIL's conversion (measured), and it cannot be fixed after the fact: refuse.
        cmyk = tf.where(
            tf.equal(components, 4),
            "CMYK or YCCK JPEG (4 colour components) is not decoded in-graph: TensorFlow's "
            f"conversion to RGB differs from PIL's by up to 1 grey level; {_HOST_HINT}",
            "",
        )
        return tf.cond(
            found,
            lambda: _then(_size_refusal("JPEG", width, height), lambda: cmyk),
            lambda: tf.constant(
                "JPEG without a frame header (SOF marker) in its first "
                f"{_MAX_JPEG_SEGMENTS} marker segments: not a valid JPEG"
            ),
        )

    return tf.cond(
        complete, frame, lambda: tf.constant("truncated JPEG: no end-of-image marker (FF D9); the file was cut short")
    )


def _png_refusal(data: tf.Tensor) -> tf.Tensor:
    # TF's decode_png refuses a PNG without IEND with "Invalid PNG data"; say what is wrong instead.
    header = _bytes_at(data, 0, 24)
    has_ihdr = tf.equal(_substr(data, 12, 4), "IHDR")

    def rest():
        complete = _ends_with_or_contains(data, b"IEND", tail=8)
        return tf.where(complete, "", "truncated PNG: no IEND chunk; the file was cut short")

    return tf.cond(
        has_ihdr,
        lambda: _then(_size_refusal("PNG", _be(header, 16, 4), _be(header, 20, 4)), rest),
        lambda: tf.constant("PNG without an IHDR chunk first: not a valid PNG"),
    )


#: BMP info-header sizes decoded in-graph: BITMAPINFOHEADER (40), its 52/56-byte extensions, OS/2 2.x (64),
#: V4 (108), V5 (124). TensorFlow's decode_bmp reads the 40-byte layout from each as PIL does (measured on
#: 24, 32 and 8-bit grey files); other sizes are refused.
_BMP_INFO_SIZES = (40, 52, 56, 64, 108, 124)


def _bmp_refusal(data: tf.Tensor) -> tf.Tensor:
    """TF's decode_bmp reads BI_RGB pixels as they are stored: right for 24/32-bit colour, and for 8-bit
    only when the colour table is the grey ramp (entry i = (i, i, i), what PIL and OpenCV write for grey
    images). Colour tables are ignored (an all-blue 8-bit image decodes as grey (1, 1, 1)), 1/4/16-bit
    fail or come out wrong, compression (RLE, BITFIELDS) is not read: all refused."""
    header = _bytes_at(data, 0, 64)
    info_size, bit_count, compression = _le(header, 14, 4), _le(header, 28, 2), _le(header, 30, 4)
    colours_used = _le(header, 46, 4)

    def grey_ramp():
        table_at = 14 + info_size
        table = tf.io.decode_raw(_substr(data, table_at, 1024), tf.uint8)
        full = tf.equal(tf.shape(table)[0], 1024)
        table = tf.reshape(tf.pad(table, [[0, 1024 - tf.shape(table)[0]]]), [256, 4])[:, :3]
        ramp = tf.reduce_all(tf.equal(tf.cast(table, tf.int32), tf.range(256)[:, None]))
        return full & ramp & ((colours_used == 0) | (colours_used == 256))

    colour_table = (
        f"{{}}-bit colour-table BMP is not decoded in-graph (TensorFlow returns the table "
        f"indices, not the colours); {_HOST_HINT}"
    )
    width = tf.cast(_le(header, 18, 4), tf.int64)  # signed: a negative height means top-down rows
    height = tf.abs(tf.cast(_le(header, 22, 4), tf.int64))
    known_header = tf.reduce_any(tf.equal(info_size, _BMP_INFO_SIZES))
    header_reason = tf.strings.format(
        "BMP with an info header of {} bytes is not decoded in-graph ("
        + ", ".join(map(str, _BMP_INFO_SIZES))
        + " are: the sizes TensorFlow's decoder reads as PIL does; 12 (OS/2 1.x) stores 16-bit sizes that it "
        "misreads, other sizes are not valid BMPs); " + _HOST_HINT,
        info_size,
    )
    return _then(
        tf.where(known_header, "", header_reason),
        lambda: _then(
            _size_refusal("BMP", width, height),
            lambda: _bmp_pixel_refusal(bit_count, compression, grey_ramp, colour_table),
        ),
    )


def _bmp_pixel_refusal(bit_count, compression, grey_ramp, colour_table) -> tf.Tensor:
    return tf.case(
        [  # the first true condition wins
            (bit_count == 16, lambda: tf.constant(f"16-bit BMP is not decoded in-graph; {_HOST_HINT}")),
            (
                compression != 0,
                lambda: tf.strings.format(
                    "compressed or bit-field BMP (compression {}: 1 RLE8, 2 RLE4, 3 BITFIELDS) is not decoded in-graph; "
                    + _HOST_HINT,
                    compression,
                ),
            ),
            ((bit_count == 24) | (bit_count == 32), lambda: tf.constant("")),
            (bit_count == 8, lambda: tf.where(grey_ramp(), "", colour_table.format(8))),
            ((bit_count == 1) | (bit_count == 4), lambda: tf.strings.format(colour_table, bit_count)),
        ],
        default=lambda: tf.strings.format("BMP with {} bits per pixel is not a valid BMP", bit_count),
        exclusive=False,
    )


_GIF_HOPS = 32  # image-data sub-blocks crossed per step of the GIF walk


def _gif_frames(data: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor]:
    """(found, transparent, covers_canvas, more_images) of a GIF: walks its blocks (GIF89a spec) through
    the first image's data to the trailer or a second image.

    Layout: 13-byte header + logical screen, optional global colour table, then blocks: extensions (0x21,
    label, sub-blocks ended by a 0 size), images (0x2C descriptor: left, top, width, height, flags; local
    colour table; LZW code size; data sub-blocks) and the trailer (0x3B). A graphic control extension
    (label 0xF9) before the first image applies to it. TF's decode_gif decodes every image (a 14.5 KB file
    of 600 tiny frames on a 1000 x 1000 canvas took 1.8 GB), so a second image is refused. One loop step
    per block, extension sub-block, or _GIF_HOPS image-data sub-blocks (at most 255 bytes each).
    """
    raw = tf.cast(tf.io.decode_raw(data, tf.uint8), tf.int32)
    raw = tf.pad(raw, [[0, 16]])  # reads past the end see zeros: a malformed file ends the walk
    n = tf.shape(raw)[0] - 16
    flags = raw[10]
    start = 13 + tf.where(flags >= 128, 3 * tf.bitwise.left_shift(tf.constant(2), flags % 8), 0)
    at_block, in_extension, in_image = 0, 1, 2

    def step(pos, mode, transparent, images, first_at, stop):
        # Image data first: up to _GIF_HOPS sub-blocks per loop step (a loop step costs about 30 times a
        # hop), so a real GIF's data, 255-byte sub-blocks, is crossed in few steps.
        for _ in range(_GIF_HOPS):
            hop = tf.gather(raw, tf.minimum(pos, n))
            hopping = tf.equal(mode, in_image) & (pos < n) & (hop != 0)
            pos = tf.where(hopping, pos + 1 + hop, pos)
        pos = tf.minimum(pos, n)  # past the end: the gathers below read the zero padding
        size = raw[pos]
        in_blocks = tf.not_equal(mode, at_block)
        opens = ~in_blocks & tf.equal(size, 0x21)
        control = opens & tf.equal(raw[pos + 1], 0xF9)
        image = ~in_blocks & tf.equal(size, 0x2C)
        local_table = tf.where(raw[pos + 9] >= 128, 3 * tf.bitwise.left_shift(tf.constant(2), raw[pos + 9] % 8), 0)
        new_transparent = tf.where(control & tf.equal(images, 0), tf.equal(raw[pos + 3] % 2, 1), transparent)
        new_images = images + tf.cast(image, tf.int32)
        new_first_at = tf.where(image & tf.equal(images, 0), pos, first_at)
        new_pos = tf.where(in_blocks, pos + 1 + size, tf.where(opens, pos + 2, pos + 11 + local_table))
        new_mode = tf.where(
            in_blocks, tf.where(tf.equal(size, 0), at_block, mode), tf.where(opens, in_extension, in_image)
        )
        # The trailer, or anything else where a block should start (malformed), ends the walk.
        ends = ~in_blocks & ~opens & ~image
        return new_pos, new_mode, new_transparent, new_images, new_first_at, ends | (new_images >= 2)

    _, _, transparent, images, pos, _ = tf.while_loop(
        lambda pos, m, t, images, f, stop: (pos < n) & ~stop,
        step,
        (start, tf.constant(at_block), tf.constant(False), tf.constant(0), tf.constant(0), tf.constant(False)),
    )
    found = images >= 1
    screen_w, screen_h = raw[6] + 256 * raw[7], raw[8] + 256 * raw[9]
    left, top = raw[pos + 1] + 256 * raw[pos + 2], raw[pos + 3] + 256 * raw[pos + 4]
    width, height = raw[pos + 5] + 256 * raw[pos + 6], raw[pos + 7] + 256 * raw[pos + 8]
    covers = found & (left == 0) & (top == 0) & (width == screen_w) & (height == screen_h)
    return found, transparent, covers, images >= 2


def _gif_refusal(data: tf.Tensor) -> tf.Tensor:
    # TF's decode_gif fills transparent pixels of the first frame with black (PIL and MATLAB's imread +
    # ind2rgb give the palette colour) and returns only the frame's rectangle (PIL: the whole canvas).
    header = _bytes_at(data, 0, 10)

    def structure():
        found, transparent, covers, animated = _gif_frames(data)
        return tf.case(
            [
                (~found, lambda: tf.constant("GIF without an image: the file is truncated or not a valid GIF")),
                (
                    animated,
                    lambda: tf.constant(
                        "animated GIF (more than one image) is not decoded in-graph: TensorFlow's decoder decodes every "
                        "frame, whatever their number; decode on the host (emonet_tf.preprocessing.load_image reads the "
                        "first frame) or send the first frame as PNG"
                    ),
                ),
                (
                    transparent,
                    lambda: tf.constant(
                        f"GIF whose first frame has a transparent colour is not decoded in-graph; {_HOST_HINT}"
                    ),
                ),
                (
                    ~covers,
                    lambda: tf.constant(
                        f"GIF whose first frame does not cover the whole canvas is not decoded in-graph; {_HOST_HINT}"
                    ),
                ),
            ],
            default=lambda: tf.constant(""),
            exclusive=False,
        )

    return _then(_size_refusal("GIF", _le(header, 6, 2), _le(header, 8, 2)), structure)


def _webp_channels(data: tf.Tensor) -> tf.Tensor:
    """Channels stored in a still WebP (3 or 4), or 0 for an animation, from the first chunk.

    "VP8 " is lossy without alpha; "VP8L" has an alpha-is-used bit (bit 4 of byte 24); "VP8X" has
    flags at byte 20 (0x10 alpha, 0x02 animation). TF's decode_webp needs exactly the stored count
    (else it errors), and with channels=0 on an animation it corrupts memory (measured, TF 2.21).
    """
    header = _bytes_at(data, 0, 32)
    chunk = _substr(data, 12, 4)
    vp8l_alpha = tf.equal(tf.bitwise.bitwise_and(header[24], 0x10), 0x10)
    vp8x_flags = header[20]
    vp8x_alpha = tf.equal(tf.bitwise.bitwise_and(vp8x_flags, 0x10), 0x10)
    vp8x_animated = tf.equal(tf.bitwise.bitwise_and(vp8x_flags, 0x02), 0x02)
    return tf.case(
        [
            (tf.equal(chunk, "VP8 "), lambda: tf.constant(3)),
            (tf.equal(chunk, "VP8L"), lambda: tf.where(vp8l_alpha, 4, 3)),
            (tf.equal(chunk, "VP8X"), lambda: tf.where(vp8x_animated, 0, tf.where(vp8x_alpha, 4, 3))),
        ],
        default=lambda: tf.constant(-1),
        exclusive=True,
    )


def _webp_refusal(data: tf.Tensor) -> tf.Tensor:
    if not hasattr(tf.io, "decode_webp"):  # added in TF 2.18
        return tf.constant(f"this TensorFlow ({tf.__version__}) has no WebP decoder; {_HOST_HINT}")
    channels = _webp_channels(data)
    header = _bytes_at(data, 0, 32)
    chunk = _substr(data, 12, 4)
    # Canvas size: "VP8 " 14-bit width/height at 26/28; "VP8L" 14-bit (width - 1, height - 1) packed
    # from byte 21; "VP8X" 24-bit (width - 1, height - 1) at 24/27.
    vp8l = _le(header, 21, 4)
    width = tf.case(
        [
            (tf.equal(chunk, "VP8 "), lambda: _le(header, 26, 2) % 16384),
            (tf.equal(chunk, "VP8L"), lambda: vp8l % 16384 + 1),
        ],
        default=lambda: _le(header, 24, 3) + 1,
        exclusive=True,
    )
    height = tf.case(
        [
            (tf.equal(chunk, "VP8 "), lambda: _le(header, 28, 2) % 16384),
            (tf.equal(chunk, "VP8L"), lambda: tf.bitwise.right_shift(vp8l, 14) % 16384 + 1),
        ],
        default=lambda: _le(header, 27, 3) + 1,
        exclusive=True,
    )
    size = tf.where(channels > 0, _size_refusal("WebP", width, height), "")
    return _then(
        size,
        lambda: tf.case(
            [
                (
                    tf.equal(channels, 0),
                    lambda: tf.constant(
                        "animated WebP is not decoded in-graph (TensorFlow's decoder fails or corrupts memory on some "
                        f"animations); {_HOST_HINT}"
                    ),
                ),
                (
                    tf.equal(channels, -1),
                    lambda: tf.constant("WebP without a VP8, VP8L or VP8X chunk: not a valid WebP"),
                ),
            ],
            default=lambda: tf.constant(""),
            exclusive=True,
        ),
    )


def in_graph_refusal(data: tf.Tensor) -> tf.Tensor:
    """Why `decode_image` would refuse scalar `data`, as a scalar tf.string TENSOR (not a Python str):
    b"" when it decodes `data` exactly as PIL does, else the reason (`.numpy().decode()` gives the text).

    Reads headers only: the size (refused when 0 or over MAX_IMAGE_PIXELS), the JPEG marker segments up
    to the frame header, the BMP info header and colour table, the GIF block structure (a second image
    is refused), the first WebP chunk; for a JPEG or PNG that does not end with its end marker, a scan
    for it. Graph ops only, for the SavedModel.
    """
    data = tf.convert_to_tensor(data, tf.string)
    return _refusal(data, image_format(data))


def _refusal(data: tf.Tensor, code: tf.Tensor) -> tf.Tensor:
    formats = " or ".join([", ".join(IN_GRAPH_FORMATS[:-1]), IN_GRAPH_FORMATS[-1]])
    branches = [
        lambda: tf.constant("empty: no bytes, not an image"),
        lambda: tf.constant(
            f"not a {formats} image (the formats decoded in-graph; checked by their leading "
            f"bytes); for other formats {_HOST_HINT}"
        ),
        lambda: _jpeg_refusal(data),
        lambda: _png_refusal(data),
        lambda: _gif_refusal(data),
        lambda: _bmp_refusal(data),
        lambda: _webp_refusal(data),
        lambda: tf.constant(f"TIFF is not decoded in-graph; {_HOST_HINT}"),
    ]
    return tf.switch_case(code, branches)


def _decode_webp(data: tf.Tensor) -> tf.Tensor:
    channels = _webp_channels(data)
    return tf.cond(
        tf.equal(channels, 4),
        lambda: tf.io.decode_webp(data, channels=4)[0, :, :, :3],
        lambda: tf.io.decode_webp(data, channels=3)[0],
    )


def _decode_png(data: tf.Tensor) -> tf.Tensor:
    # 16-bit samples (IHDR bit depth, byte 24): round(v / 257), as floor(v / 257 + 0.5) in float32 (v / 257
    # is never within 0.0019 of a tie, float32's error here is below 2e-5). 1-8-bit: TF's uint8 output
    # is PIL's (measured); decoding those at 16 bits too would cost 2x (a pass per arithmetic op).
    sixteen_bit = tf.equal(_bytes_at(data, 24, 1)[0], 16)
    return tf.cond(
        sixteen_bit,
        lambda: tf.floor(tf.cast(tf.io.decode_png(data, channels=3, dtype=tf.uint16), tf.float32) / 257.0 + 0.5),
        lambda: tf.cast(tf.io.decode_png(data, channels=3), tf.float32),
    )


def decode_image(data: tf.Tensor, what: Optional[Sequence] = None) -> tf.Tensor:
    """Encoded image bytes (scalar tf.string) -> float32 H x W x 3 RGB holding integers 0..255.

    The pixels PIL's `Image.open(f).convert("RGB")` gives (16-bit PNG: round(v / 257)), for the
    formats and variants `in_graph_refusal` accepts; anything else raises InvalidArgumentError whose
    message is `what` (default ["image"]), "could not be decoded in-graph:" and the reason. JPEGs use
    the accurate integer IDCT (TF's default, the fast one, is up to 17 grey levels off at quality 100).
    EXIF orientation is ignored, as MATLAB's imread does. Graph ops only.
    """
    data = tf.convert_to_tensor(data, tf.string)
    code = image_format(data)
    reason = _refusal(data, code)
    what = list(what) if what is not None else ["image"]
    check = tf.debugging.Assert(
        tf.equal(reason, ""),
        what + ["could not be decoded in-graph:", reason],
        summarize=8,
        name="check_image_decodable",
    )
    with tf.control_dependencies([check]):
        code = tf.identity(code)

    def refused():  # never runs: the Assert above fails first
        return tf.zeros([0, 0, 3], tf.float32)

    def as_float(decode):
        return lambda: tf.cast(decode(), tf.float32)

    branches = [
        refused,
        refused,
        as_float(lambda: tf.io.decode_jpeg(data, channels=3, dct_method="INTEGER_ACCURATE")),
        lambda: _decode_png(data),
        as_float(lambda: tf.io.decode_gif(data)[0]),
        as_float(lambda: tf.io.decode_bmp(data, channels=3)),
        as_float(lambda: _decode_webp(data)) if hasattr(tf.io, "decode_webp") else refused,
        refused,
    ]
    image = tf.switch_case(code, branches)
    image.set_shape([None, None, 3])
    return image


# == Host decoding (PIL; OpenCV for 16-bit PNG/TIFF) ========================================================
# What PIL's Image.Transpose does for each EXIF orientation (PIL.ImageOps.exif_transpose's table), on arrays.
_ORIENTATIONS = {
    2: lambda a: a[:, ::-1],  # FLIP_LEFT_RIGHT
    3: lambda a: a[::-1, ::-1],  # ROTATE_180
    4: lambda a: a[::-1],  # FLIP_TOP_BOTTOM
    5: lambda a: a.transpose(1, 0, 2),  # TRANSPOSE
    6: lambda a: np.rot90(a, -1),  # ROTATE_270 (counter-clockwise) = 90 clockwise
    7: lambda a: a[::-1, ::-1].transpose(1, 0, 2),  # TRANSVERSE
    8: lambda a: np.rot90(a, 1),  # ROTATE_90 (counter-clockwise)
}


def apply_exif_orientation(image: np.ndarray, orientation: int) -> np.ndarray:
    """H x W x C array as displayed under EXIF Orientation `orientation` (1-8; others leave it as is),
    the same transposition as `PIL.ImageOps.exif_transpose`."""
    transform = _ORIENTATIONS.get(int(orientation))
    return np.ascontiguousarray(transform(image)) if transform else image


def _bits_per_sample(data: bytes, image: Image.Image) -> int:
    """Bits per sample from the header: PNG IHDR bit depth (byte 24), TIFF BitsPerSample (tag 258),
    16 for PIL's 16-bit grey modes of other formats (e.g. 16-bit PGM), else 8."""
    if image.format == "PNG" and data[12:16] == b"IHDR":
        return data[24]
    if image.format == "TIFF":
        bits = image.tag_v2.get(258, 8)
        return max(bits) if isinstance(bits, tuple) else int(bits)
    return 16 if image.mode.startswith("I;16") else 8


def _from_16bit(samples: np.ndarray) -> np.ndarray:
    """uint16 H x W or H x W x C (RGB order) -> uint8 RGB, round(v / 257) = (v + 128) // 257."""
    out = ((samples.astype(np.uint32) + 128) // 257).astype(np.uint8)
    if out.ndim == 2:
        out = out[..., None]
    if out.shape[-1] in (1, 2):  # grey, grey + alpha
        out = np.repeat(out[..., :1], 3, axis=-1)
    return np.ascontiguousarray(out[..., :3])


def _decode_16bit(data: bytes, image: Image.Image) -> np.ndarray:
    """16-bit content: PIL clips 16-bit grey to 255 in convert("RGB") and keeps the high byte of 16-bit
    RGB (a floor, not a rounding), so the true samples are read (OpenCV for PNG/TIFF, PIL's own array
    for its 16-bit grey modes) and rounded."""
    if image.format in ("PNG", "TIFF"):
        import cv2  # OpenCV is a core dependency; imported here because only this path needs it

        samples = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
        if samples is None:
            raise ValueError(f"OpenCV could not decode this 16-bit {image.format}")
        if samples.ndim == 3 and samples.shape[-1] >= 3:
            samples = samples[..., 2::-1]  # BGR(A) -> RGB
        if samples.dtype == np.uint8:  # e.g. a TIFF with mixed depths that OpenCV reduced itself
            return _from_16bit(samples.astype(np.uint16) * 257)
        return _from_16bit(samples)
    return _from_16bit(np.asarray(image, dtype=np.uint16))


def _reason(err: Exception) -> str:
    text = str(err) or type(err).__name__
    if "truncated" in text.lower() or isinstance(err, EOFError):
        return f"truncated file; PIL: {text}"
    return text


def decode_bytes(data: bytes, source: str = "<bytes>", exif_orientation: bool = False) -> np.ndarray:
    """Encoded image bytes -> uint8 H x W x 3 RGB, 0..255, before any resizing (the host decoder contract).

    8-bit content: exactly `PIL.Image.open(f).convert("RGB")` (PIL stands for MATLAB's imread), for
    the formats in HOST_FORMATS; multi-frame files give their first frame. 16-bit content (PNG, TIFF; PIL's
    16-bit grey modes): round(v / 257) of the true 16-bit samples. EXIF orientation is ignored unless
    `exif_orientation=True` (MATLAB's imread ignores it; PIL.ImageOps.exif_transpose's rotation then).
    Raises ImageDecodeError naming `source` and the reason: empty, not an image, truncated ("truncated
    file"), 32-bit integer or float samples (no defined 8-bit conversion), a header size of 0 or over
    MAX_IMAGE_PIXELS (checked before decoding), or any decoder failure. PIL's LOAD_TRUNCATED_IMAGES is
    left as is (False by default: a file missing its end raises instead of being grey-filled; a JPEG cut
    in the middle whose end marker is still there is grey-filled, see docs/preprocessing.md).
    """
    if not data:
        raise ImageDecodeError(f"{source}: empty file, not an image")
    try:
        with Image.open(io.BytesIO(data), formats=HOST_FORMATS) as image:
            check_image_size(*image.size, source=source)  # from the header: nothing is decoded yet
            bits = _bits_per_sample(data, image)
            if bits > 16 or image.mode in ("I", "F"):
                raise ImageDecodeError(
                    f"{source}: {bits}-bit {image.mode} samples ({image.format}) have no "
                    "defined conversion to 0-255; convert the file to 8 or 16 bits"
                )
            if bits > 8:
                pixels = _decode_16bit(data, image)
            else:
                pixels = np.asarray(image if image.mode == "RGB" else image.convert("RGB"))
            if exif_orientation:
                pixels = apply_exif_orientation(pixels, image.getexif().get(0x0112, 1))
    except ImageDecodeError:
        raise
    except UnidentifiedImageError:
        raise ImageDecodeError(
            f"{source}: cannot decode as an image (not a {', '.join(HOST_FORMATS[:-1])} or {HOST_FORMATS[-1]} file)"
        ) from None
    except Image.DecompressionBombError as err:  # PIL's own check in Image.open, from twice its MAX_IMAGE_PIXELS
        raise ImageDecodeError(
            f"{source}: more than MAX_IMAGE_PIXELS ({MAX_IMAGE_PIXELS}) pixels; refused before "
            f"decoding (decompression bomb guard; PIL: {err})"
        ) from None
    except Exception as err:  # noqa: BLE001 - any decoder failure becomes one error naming the source
        raise ImageDecodeError(f"{source}: cannot decode as an image ({_reason(err)})") from None
    return pixels


def decode_image_file(path: Union[str, os.PathLike], exif_orientation: bool = False) -> np.ndarray:
    """Reads and decodes one image file -> uint8 H x W x 3 RGB 0..255 before resizing (see `decode_bytes`).

    Raises ImageDecodeError naming the file for a missing or unreadable file, anything that is not a
    regular file (FIFO, device, socket, folder; `read_image_file`), a file over MAX_IMAGE_FILE_BYTES, and
    every decode failure.
    """
    path = os.fspath(path)
    return decode_bytes(read_image_file(path), source=path, exif_orientation=exif_orientation)


def read_image_file(path: Union[str, os.PathLike]) -> bytes:
    """The bytes of an image file, read only when it is a regular file of at most MAX_IMAGE_FILE_BYTES.

    The file is opened non-blocking (a FIFO would block `open()` forever) and its type is checked on the
    open descriptor (symlinks resolved), so a FIFO, a device such as /dev/zero (or a symlink to one), a
    socket or a folder is refused before a byte is read. Raises ImageDecodeError naming the file.
    """
    path = os.fspath(path)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    except OSError as err:
        raise ImageDecodeError(f"{path}: cannot read file ({err.strerror or err})") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ImageDecodeError(f"{path}: {file_kind(info.st_mode)}, not a regular file; refused before reading")
        if info.st_size > MAX_IMAGE_FILE_BYTES:
            raise ImageDecodeError(
                f"{path}: {info.st_size} bytes, more than MAX_IMAGE_FILE_BYTES "
                f"({MAX_IMAGE_FILE_BYTES}); not an image this library reads"
            )
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        with os.fdopen(fd, "rb", closefd=True) as f:
            fd = -1
            data = f.read(MAX_IMAGE_FILE_BYTES + 1)  # bounded even if the file grows after fstat
    except OSError as err:
        raise ImageDecodeError(f"{path}: cannot read file ({err.strerror or err})") from None
    finally:
        if fd >= 0:
            os.close(fd)
    if len(data) > MAX_IMAGE_FILE_BYTES:
        raise ImageDecodeError(
            f"{path}: more than MAX_IMAGE_FILE_BYTES ({MAX_IMAGE_FILE_BYTES}) bytes; not an image this library reads"
        )
    return data


def check_image_size(width: int, height: int, source: str = "<bytes>") -> None:
    """Raises ImageDecodeError naming `source` for a header size with no pixels or over MAX_IMAGE_PIXELS."""
    if width <= 0 or height <= 0:
        raise ImageDecodeError(
            f"{source}: the header declares {width} x {height} pixels; an image needs a positive width and height"
        )
    if width * height > MAX_IMAGE_PIXELS:
        raise ImageDecodeError(
            f"{source}: {width} x {height} = {width * height} pixels, more than "
            f"MAX_IMAGE_PIXELS ({MAX_IMAGE_PIXELS}); refused before decoding (decompression "
            "bomb guard; shrink the image first)"
        )


# == Resizing ==============================================================================================
def resize_image(
    image: tf.Tensor, method: str = DEFAULT_RESIZE_METHOD, antialias: bool = True, size: int = IMAGE_SIZE
) -> tf.Tensor:
    """Resizes an H x W x 3 image in [0, 255] to size x size (aspect ratio not kept), rounded and clipped as uint8.

    Rounding and clipping reproduce `imresize` on uint8 input, whose output is uint8.
    """
    check_resize_method(method)
    image = tf.convert_to_tensor(image, tf.float32)
    shape = tf.shape(image)

    def resize():
        if method == "matlab":
            return _matlab_imresize(image, size)
        return tf.image.resize(image, (size, size), method=method, antialias=antialias)

    same_size = tf.logical_and(tf.equal(shape[0], size), tf.equal(shape[1], size))
    resized = tf.cond(same_size, lambda: image, resize)
    resized = tf.clip_by_value(tf.round(resized), 0.0, 255.0)
    return tf.ensure_shape(resized, [size, size, 3])


def matlab_resize_on_host(image: tf.Tensor) -> tf.Tensor:
    """`resize_image(image, "matlab")` run by the host code (`_host_matlab_imresize`) from inside a graph,
    through `tf.numpy_function`: the same pixels bit for bit, about 6x less CPU than the graph's resize
    (bench/bench_serving.py: 6.5 against 38 CPU ms per image over its 18 JPEGs, 2026-12-01).

    For tf.data pipelines in a Python process (training, the fc7 cache, evaluation): a SavedModel cannot
    hold it, so `export` keeps the graph's `resize_image`. Use only where `_host_resize_exact()` holds
    (checked by the caller, outside the graph; `EmoNetPreprocessor.traced_image_bytes` does).

    image: float32 [H, W, 3] holding integers 0-255 (what `decode_image` returns). Returns float32
    [227, 227, 3], integers 0-255.
    """
    out = tf.numpy_function(_host_matlab_imresize, [tf.cast(image, tf.uint8)], tf.float32, stateful=False)
    return tf.ensure_shape(out, [IMAGE_SIZE, IMAGE_SIZE, 3])


def _cubic(x: tf.Tensor) -> tf.Tensor:
    ax = tf.abs(x)
    ax2, ax3 = ax * ax, ax * ax * ax
    near = (1.5 * ax3 - 2.5 * ax2 + 1.0) * tf.cast(ax <= 1.0, x.dtype)
    far = (-0.5 * ax3 + 2.5 * ax2 - 4.0 * ax + 2.0) * tf.cast((ax > 1.0) & (ax <= 2.0), x.dtype)
    return near + far


#: Bytes of the gathered samples of one block of output rows in the graph's MATLAB resize (see below).
_RESIZE_BLOCK_BYTES = 2**21
_BLOCK_ROWS = 8  # a block holds a multiple of this many output rows (Eigen's packet: 8 floats)


def _matlab_resize_axis0(image: tf.Tensor, out_len: int, rounded: bool = True) -> tf.Tensor:
    """Resizes axis 0 as MATLAB's imresize does (contributions(), bicubic, antialiased), rounding to uint8
    (`rounded=False`: the float32 sums before rounding, for `_host_resize_exact`)."""
    in_len = tf.shape(image, out_type=tf.int64)[0]
    scale = tf.cast(out_len, tf.float64) / tf.cast(in_len, tf.float64)
    shrink = scale < 1.0
    kernel_width = tf.where(shrink, 4.0 / scale, tf.constant(4.0, tf.float64))
    u = tf.range(1, out_len + 1, dtype=tf.float64) / scale + 0.5 * (1.0 - 1.0 / scale)
    left = tf.floor(u - kernel_width / 2.0)
    taps = tf.cast(tf.math.ceil(kernel_width), tf.int64) + 2
    indices = left[:, None] + tf.cast(tf.range(taps), tf.float64)[None, :]
    offsets = u[:, None] - indices
    weights = tf.where(shrink, scale * _cubic(scale * offsets), _cubic(offsets))
    weights = weights / tf.reduce_sum(weights, axis=1, keepdims=True)
    # MATLAB mirrors out-of-range indices: aux = [1:n, n:-1:1]; here 0-based.
    period = 2 * in_len
    wrapped = tf.math.floormod(tf.cast(indices, tf.int64) - 1, period)
    gather_at = tf.where(wrapped < in_len, wrapped, period - 1 - wrapped)
    weights = tf.cast(weights, image.dtype)
    shape = tf.shape(image, out_type=tf.int64)
    flat = tf.reshape(image, [shape[0], -1])  # in x (W * C): the same sums, W and C side by side

    def weighted_sum(block_weights, block_at):
        # Broadcast-multiply + sum over the taps: 7x faster on CPU than the equivalent einsum (measured,
        # 800x600 input). reduce_sum's order is Eigen's; `_host_axis0` reproduces it.
        return tf.reduce_sum(block_weights[:, :, None] * tf.gather(flat, block_at), axis=1)

    # The gathered out x taps x (W * C) tensor and its product are 49 MB each for a 1280x720 image: done
    # in blocks of output rows that keep them near _RESIZE_BLOCK_BYTES (in cache): about 1.4x less wall
    # time over bench_serving's JPEGs (320x240 to 1280x720). Blocks hold a multiple of _BLOCK_ROWS rows, so that every element keeps its place within
    # Eigen's 8-float packets (row o starts at o * W * C in both) and is summed in the same order: the
    # same bits as one reduce_sum over all rows (tests/test_preprocessing.py).
    row_bytes = taps * shape[1] * 4
    rows = tf.maximum(_RESIZE_BLOCK_BYTES // row_bytes // _BLOCK_ROWS, 1) * _BLOCK_ROWS
    blocks = (out_len + rows - 1) // rows

    def in_blocks():
        pad = blocks * rows - out_len  # zero-weight rows after the last one, dropped below
        w = tf.reshape(tf.pad(weights, [[0, pad], [0, 0]]), [blocks, rows, taps])
        at = tf.reshape(tf.pad(gather_at, [[0, pad], [0, 0]]), [blocks, rows, taps])
        out = tf.map_fn(
            lambda args: weighted_sum(*args),
            (w, at),
            fn_output_signature=tf.TensorSpec([None, None], image.dtype),
            parallel_iterations=1,
        )
        return tf.reshape(out, [blocks * rows, -1])[:out_len]

    out = tf.cond(blocks > 1, in_blocks, lambda: weighted_sum(weights, gather_at))
    out = tf.reshape(out, [out_len, shape[1], shape[2]])
    return tf.clip_by_value(tf.round(out), 0.0, 255.0) if rounded else out


# -- The same MATLAB resize on the host, in numpy (EmoNet.predict_images, load_image, video frames) ------------
# The graph above sums taps x products in float32 with TensorFlow's reduce_sum, whose order is Eigen's
# (TensorReduction.h, InnerMostDimPreserver): one after the other for fewer than 16 taps; from 16 taps,
# four interleaved partial sums (tap t into sum t % 4) added up as ((s0 + s1) + s2) + s3, then the taps
# past the last multiple of 4, for the elements Eigen evaluates as packets (8 floats with AVX) that lie
# within one row of the [out, W*C] output; the other elements (packets that straddle two rows, and the
# last incomplete packet) are summed one after the other. `_host_axis0` reproduces that order, so its
# float32 sums, and the rounded pixels, are bit for bit the graph's (tests/test_preprocessing.py checks
# it on photos and odd sizes; `_host_resize_exact` checks it once per process, and the host path falls
# back to the graph where it does not hold, e.g. a TensorFlow built with another packet size). Why:
# the graph materializes the gathered out x taps x W x C tensor and its product (49 MB each for a
# 1280x720 image), while this accumulates one [out, W*C] row set per tap, with taps and weights computed
# once per (in_len, out_len) and cached: about 2x less CPU per image (bench/bench_serving.py, issue 15).
_EIGEN_PACKET = 8  # floats per packet of TensorFlow's x86-64 builds (AVX); verified by _host_resize_exact


def _cubic_np(x: np.ndarray) -> np.ndarray:
    ax = np.abs(x)
    ax2, ax3 = ax * ax, ax * ax * ax
    near = (1.5 * ax3 - 2.5 * ax2 + 1.0) * (ax <= 1.0)
    far = (-0.5 * ax3 + 2.5 * ax2 - 4.0 * ax + 2.0) * ((ax > 1.0) & (ax <= 2.0))
    return near + far


@functools.lru_cache(maxsize=512)
def _matlab_taps(in_len: int, out_len: int) -> tuple[np.ndarray, np.ndarray]:
    """(weights float32 [taps, out], source rows int64 [taps, out]) of `_matlab_resize_axis0`, the same
    float64 arithmetic in numpy (weights rounded to float32 last, as the graph casts them)."""
    scale = out_len / in_len
    shrink = scale < 1.0
    kernel_width = 4.0 / scale if shrink else 4.0
    u = np.arange(1, out_len + 1, dtype=np.float64) / scale + 0.5 * (1.0 - 1.0 / scale)
    left = np.floor(u - kernel_width / 2.0)
    taps = int(np.ceil(kernel_width)) + 2
    indices = left[:, None] + np.arange(taps, dtype=np.float64)[None, :]
    offsets = u[:, None] - indices
    weights = scale * _cubic_np(scale * offsets) if shrink else _cubic_np(offsets)
    weights = weights / weights.sum(axis=1, keepdims=True)
    period = 2 * in_len
    wrapped = np.mod(indices.astype(np.int64) - 1, period)
    gather_at = np.where(wrapped < in_len, wrapped, period - 1 - wrapped)
    weights, gather_at = np.ascontiguousarray(weights.astype(np.float32).T), np.ascontiguousarray(gather_at.T)
    weights.flags.writeable = gather_at.flags.writeable = False  # shared by every caller through the cache
    return weights, gather_at


@functools.lru_cache(maxsize=512)
def _scalar_elements(out_len: int, n: int) -> Optional[tuple[np.ndarray, np.ndarray]]:
    """(columns, mask [out, len(columns)]) of the [out, n] elements Eigen sums one by one (not in a packet
    within one row); None when there are none (n a multiple of the packet size). Such elements lie in the
    first and last _EIGEN_PACKET columns of a row: any other element's packet starts and ends in its row."""
    if n % _EIGEN_PACKET == 0:
        return None
    columns = np.unique(np.r_[0 : min(_EIGEN_PACKET, n), max(n - _EIGEN_PACKET, 0) : n])
    index = np.arange(out_len, dtype=np.int64)[:, None] * n + columns[None, :]
    start = index // _EIGEN_PACKET * _EIGEN_PACKET
    in_packet = (start + _EIGEN_PACKET <= out_len * n) & ((start % n) + _EIGEN_PACKET - 1 < n)
    return columns, ~in_packet


def _host_axis0(x: np.ndarray, out_len: int) -> np.ndarray:
    """[in, n] (uint8 or float32) -> float32 [out, n]: the unrounded sums of `_matlab_resize_axis0` on
    [in, W, C] reshaped, bit for bit (the summation order is the graph's; see above)."""
    weights, gather_at = _matlab_taps(x.shape[0], out_len)
    taps, n = weights.shape[0], x.shape[1]
    rows = np.empty((out_len, n), x.dtype)
    product = np.empty((out_len, n), np.float32)

    def term(t: int, out: np.ndarray) -> np.ndarray:
        np.take(x, gather_at[t], axis=0, out=rows)
        return np.multiply(rows, weights[t][:, None], out=out, casting="unsafe")  # uint8 -> float32 is exact

    total = term(0, np.empty((out_len, n), np.float32))
    if taps < 16:
        for t in range(1, taps):
            total += term(t, product)
        return total
    partial = [total] + [term(t, np.empty((out_len, n), np.float32)) for t in (1, 2, 3)]
    unrolled = taps // 4 * 4
    for t in range(4, unrolled):
        partial[t % 4] += term(t, product)
    total += partial[1]
    total += partial[2]
    total += partial[3]
    for t in range(unrolled, taps):
        total += term(t, product)
    _sum_scalar_elements(x, out_len, total)
    return total


@functools.lru_cache(maxsize=512)
def _sparse_taps(in_len: int, out_len: int) -> tuple[list, list[int]]:
    """The taps of `_matlab_taps` as scipy CSR matrices [out, in] whose rows list their entries in tap
    order, and the taps summed after them (see `_host_axis0_sparse`). Fewer than 16 taps: one matrix of
    every tap. From 16: four matrices, tap t in matrix t % 4 for the taps up to the last multiple of 4
    (Eigen's four partial sums), and the rest listed to be added one by one."""
    from scipy import sparse  # a core dependency; imported here to keep `import emonet_tf` light

    weights, gather_at = _matlab_taps(in_len, out_len)
    taps = weights.shape[0]

    def csr(tap_list: list[int]) -> "sparse.csr_matrix":
        k = len(tap_list)
        matrix = sparse.csr_matrix(
            (weights[tap_list].T.reshape(-1), gather_at[tap_list].T.reshape(-1), np.arange(0, out_len * k + 1, k)),
            shape=(out_len, in_len),
        )
        # Mirrored borders can name one input row twice: keep both entries, in tap order (a canonical
        # matrix would add them first, another summation order).
        matrix.has_canonical_format = matrix.has_sorted_indices = False
        return matrix

    if taps < 16:
        return [csr(list(range(taps)))], []
    unrolled = taps // 4 * 4
    return [csr(list(range(k, unrolled, 4))) for k in range(4)], list(range(unrolled, taps))


def _host_axis0_sparse(x: np.ndarray, out_len: int) -> np.ndarray:
    """`_host_axis0` (the same float32 sums, bit for bit) as scipy sparse products: CSR times a dense
    matrix runs, for each output row, y += w * x_row over the row's entries in the stored (tap) order, in
    float32 and in one compiled loop, instead of numpy's three full passes (gather, multiply, add) per
    tap: about 3x less CPU for a 1280x720 frame (bench/bench_serving.py). Used where
    `_host_axis0_function` finds it exact on this machine (a scipy build that fuses y += w * x into
    one FMA rounds differently, and falls back to `_host_axis0`)."""
    matrices, tail = _sparse_taps(x.shape[0], out_len)
    x32 = x.astype(np.float32, copy=False)  # exact for uint8
    if len(matrices) == 1:  # fewer than 16 taps: one sequential sum
        total = np.asarray(matrices[0] @ x32)
    else:
        partial = [np.asarray(m @ x32) for m in matrices]
        total = partial[0]
        total += partial[1]
        total += partial[2]
        total += partial[3]
        weights, gather_at = _matlab_taps(x.shape[0], out_len)
        for t in tail:
            total += x32[gather_at[t]] * weights[t][:, None]
    if len(matrices) == 4:
        _sum_scalar_elements(x, out_len, total)
    return total


def _sum_scalar_elements(x: np.ndarray, out_len: int, total: np.ndarray) -> None:
    """From 16 taps: overwrites in `total` the elements Eigen sums one after the other (`_scalar_elements`)."""
    scalar = _scalar_elements(out_len, x.shape[1])
    if scalar is None:
        return
    weights, gather_at = _matlab_taps(x.shape[0], out_len)
    columns, mask = scalar
    sub = x[:, columns]
    one_by_one = sub[gather_at[0]] * weights[0][:, None]
    for t in range(1, weights.shape[0]):
        one_by_one += sub[gather_at[t]] * weights[t][:, None]
    total[:, columns] = np.where(mask, one_by_one, total[:, columns])


@functools.lru_cache(maxsize=None)
def _host_axis0_function() -> Optional[Callable[[np.ndarray, int], np.ndarray]]:
    """The fastest host resize pass that sums exactly as this TensorFlow's graph does, checked once per
    process (a few ms) by `_sums_as_the_graph`: `_host_axis0_sparse`, else `_host_axis0`, else None (the
    host path then runs the graph)."""
    for candidate in (_host_axis0_sparse, _host_axis0):
        if _sums_as_the_graph(candidate):
            return candidate
    return None


def _host_resize_exact() -> bool:
    """Whether the host MATLAB resize runs in numpy/scipy on this machine (see `_host_axis0_function`)."""
    return _host_axis0_function() is not None


def _host_resize_rows(image: np.ndarray, out_len: int) -> np.ndarray:
    """H x W x C (uint8) -> uint8 out_len x W x C: one MATLAB pass along axis 0, rounded as the graph rounds."""
    height, width, channels = image.shape
    out = _host_axis0_function()(image.reshape(height, width * channels), out_len)
    np.round(out, out=out)  # half to even, as tf.round
    np.clip(out, 0.0, 255.0, out=out)
    return out.astype(np.uint8).reshape(out_len, width, channels)


def _host_matlab_imresize(pixels: np.ndarray, size: int = IMAGE_SIZE) -> np.ndarray:
    """uint8 H x W x 3 -> float32 size x size x 3: `resize_image(pixels, "matlab")`, bit for bit, in numpy."""
    height, width = pixels.shape[:2]
    if height == size and width == size:
        return pixels.astype(np.float32)
    if height >= width:  # rows first (MATLAB: the smaller scale first, rows on ties), as _matlab_imresize
        x = _host_resize_rows(np.ascontiguousarray(pixels), size)
        x = _transposed(_host_resize_rows(_transposed(x), size))
    else:
        x = _host_resize_rows(_transposed(pixels), size)
        x = _host_resize_rows(_transposed(x), size)
    return x.astype(np.float32)


def _transposed(image: np.ndarray) -> np.ndarray:
    """uint8 H x W x C -> the contiguous W x H x C copy. OpenCV's transpose: 0.75 ms for a 1280x720 RGB
    frame where numpy's copy of the transposed view takes 8 ms (3-byte pixels; measured 2026-12-01, the
    2-core dev machine). A copy either way: the same bytes."""
    import cv2  # a core dependency; imported here to keep `import emonet_tf` light

    out = cv2.transpose(np.ascontiguousarray(image))
    return out.reshape(image.shape[1], image.shape[0], image.shape[2])  # OpenCV drops a 1-channel axis


def _sums_as_the_graph(axis0: Callable[[np.ndarray, int], np.ndarray]) -> bool:
    """Whether `axis0` (a host pass) gives this TensorFlow graph's unrounded sums on random float32 rows,
    for fewer than 16 taps, 16+ taps, and rows whose length is not a multiple of the packet size. False on
    a build that differs (another packet size, a compiler that fuses multiply-adds)."""
    rng = np.random.default_rng(0)
    spec = [tf.TensorSpec([None, None, None], tf.float32)]  # run-time shapes, as in resize_image's graph
    graphs = {
        out_len: tf.function(lambda x, out_len=out_len: _matlab_resize_axis0(x, out_len, rounded=False), spec)
        for out_len in (IMAGE_SIZE, 13)
    }
    for in_len, n, out_len in ((300, 15, IMAGE_SIZE), (1000, 681, IMAGE_SIZE), (997, 24, 13), (50, 9, IMAGE_SIZE)):
        x = rng.uniform(0.0, 255.0, (in_len, n)).astype(np.float32)
        want = graphs[out_len](tf.constant(x[:, :, None])).numpy()[:, :, 0]
        if not np.array_equal(want.view(np.int32), axis0(x, out_len).view(np.int32)):
            return False
    return True


def _matlab_imresize(image: tf.Tensor, size: int) -> tf.Tensor:
    """MATLAB `imresize(I, [size size])` on an H x W x C image: the dimension with the smaller scale first."""
    shape = tf.shape(image)

    def rows_first():
        x = _matlab_resize_axis0(image, size)
        return tf.transpose(_matlab_resize_axis0(tf.transpose(x, [1, 0, 2]), size), [1, 0, 2])

    def cols_first():
        x = _matlab_resize_axis0(tf.transpose(image, [1, 0, 2]), size)
        return _matlab_resize_axis0(tf.transpose(x, [1, 0, 2]), size)

    # scale_h <= scale_w  <=>  size/H <= size/W  <=>  H >= W (MATLAB's sort is stable: rows win ties).
    return tf.cond(shape[0] >= shape[1], rows_first, cols_first)


def preprocess_image_bytes(
    data: tf.Tensor, method: str = DEFAULT_RESIZE_METHOD, antialias: bool = True, what: Optional[Sequence] = None
) -> tf.Tensor:
    """Encoded image bytes -> float32 227 x 227 x 3 in [0, 255], ready for the model (which subtracts the mean).

    The in-graph path (tf.data, the SavedModel): `decode_image` (errors name `what`), then `resize_image`.
    """
    return resize_image(decode_image(data, what=what), method=method, antialias=antialias)


def to_rgb_float(array: np.ndarray) -> np.ndarray:
    """An in-memory image (H x W, H x W x 1/3/4; uint8, uint16, bool, or integer or float values in
    [0, 255]) as float32 RGB in [0, 255]. uint16 is divided by 257, bool is 0 or 255.

    Every array input of the host path comes through here (`preprocess_array`, hence
    `EmoNetPreprocessor.__call__` and `EmoNet.predict_images`), except uint8 H x W x 3 pixels (video
    frames), which `preprocess_array` resizes directly: uint8 holds no other values, so only their
    shape is checked. The checks cost nothing on uint8, uint16 and bool (no value is out of range);
    integer and float arrays get one min/max, float arrays one finiteness test.

    Raises:
      ValueError: naming the problem, for an array that is not an image: a dtype with no pixel values
        (object, complex, string: "dtype complex128 is not an image's (...)"), a shape other than those
        above, an empty image ("empty image of shape (0, 5, 3)"), NaN or infinite values ("contains NaN or
        infinite values"), or integer or float values outside [0, 255] ("values outside [0, 255] (min ...,
        max ...); ..."; a [0, 1] image must be multiplied by 255).
    """
    arr = np.asarray(array)
    kind = arr.dtype.kind
    if kind not in "biuf":  # object, complex, strings, bytes, datetimes, structured records
        raise ValueError(f"dtype {arr.dtype} is not an image's (expected uint8, uint16, bool, integer or float pixels)")
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[-1] not in (1, 3, 4)):
        raise ValueError(f"Expected an image of shape HxW, HxWx1, HxWx3 or HxWx4, got {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"empty image of shape {arr.shape}")
    if kind == "f" and not np.isfinite(arr).all():
        raise ValueError("contains NaN or infinite values")
    if arr.dtype not in (np.uint8, np.uint16, np.bool_):
        low, high = arr.min(), arr.max()
        if low < 0 or high > 255:
            raise ValueError(
                f"values outside [0, 255] (min {low.item():g}, max {high.item():g}); pixels are 0-255 "
                "(a [0, 1] image must be multiplied by 255)"
            )
    if arr.dtype == np.uint16:
        arr = arr.astype(np.float32) / 257.0
    elif arr.dtype == bool:
        arr = arr.astype(np.float32) * 255.0
    else:
        arr = arr.astype(np.float32)
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.shape[-1] == 1:
        arr = np.repeat(arr, 3, axis=-1)
    return arr[..., :3]


class _GraphFunctions(NamedTuple):
    """The traced host-side resizes of one setting (`_graph_functions`). Encoded bytes have one traced
    function, `EmoNetPreprocessor.traced_image_bytes` (emonet_tf/preprocessor.py), not one here."""

    from_image: Callable[[tf.Tensor], tf.Tensor]  # float32 [H, W, 3] in 0-255 -> float32 [227, 227, 3]
    from_pixels: Callable[[tf.Tensor], tf.Tensor]  # uint8 [H, W, 3] -> float32 [227, 227, 3]


@functools.lru_cache(maxsize=None)
def _graph_functions(method: str, antialias: bool) -> _GraphFunctions:
    """Traced once per setting: eager execution of the resize costs several times the graph's time."""
    from_image = tf.function(
        lambda image: resize_image(image, method, antialias),
        input_signature=[tf.TensorSpec([None, None, 3], tf.float32)],
    )
    # Decoded uint8 pixels from the host decoder: the cast happens in the graph, not in numpy.
    from_pixels = tf.function(
        lambda pixels: resize_image(tf.cast(pixels, tf.float32), method, antialias),
        input_signature=[tf.TensorSpec([None, None, 3], tf.uint8)],
    )
    return _GraphFunctions(from_image=from_image, from_pixels=from_pixels)


def preprocess_array(array: np.ndarray, method: str = DEFAULT_RESIZE_METHOD, antialias: bool = True) -> np.ndarray:
    """An RGB image already in memory (e.g. a video frame) -> float32 227 x 227 x 3 in [0, 255].

    uint8 H x W x 3 pixels (video frames) are resized directly; every other array goes through
    `to_rgb_float`, which checks it.

    Raises:
      ValueError: for an array that is not an image (`to_rgb_float`: its dtype, shape, emptiness, NaN or
        infinite values, values outside [0, 255]); the message names the problem.
    """
    check_resize_method(method)
    array = np.asarray(array)
    if array.dtype == np.uint8 and array.ndim == 3 and array.shape[-1] == 3:  # video frames
        if array.size == 0:
            raise ValueError(f"empty image of shape {array.shape}")
        return _resize_pixels(array, method, bool(antialias))
    from_image = _graph_functions(method, bool(antialias)).from_image
    return from_image(tf.constant(to_rgb_float(array))).numpy()


def _resize_pixels(pixels: np.ndarray, method: str, antialias: bool) -> np.ndarray:
    """Decoded uint8 H x W x 3 -> float32 227 x 227 x 3: `resize_image`'s pixels, bit for bit. The MATLAB
    resize runs in numpy (`_host_matlab_imresize`, 2-4x less CPU than the graph) where `_host_resize_exact`
    holds; the other methods, and the MATLAB resize otherwise, run the traced graph (cast in the graph)."""
    if method == "matlab" and _host_resize_exact():
        return _host_matlab_imresize(pixels)
    return _graph_functions(method, antialias).from_pixels(tf.constant(pixels)).numpy()


def preprocess_bytes(
    data: bytes,
    source: str = "<bytes>",
    method: str = DEFAULT_RESIZE_METHOD,
    antialias: bool = True,
    exif_orientation: bool = False,
) -> np.ndarray:
    """Encoded bytes on the host -> float32 227 x 227 x 3, integers in [0, 255]: `decode_bytes` (PIL),
    then the same traced resize as the in-graph path.

    Raises ImageDecodeError naming `source` and the reason (empty, not an image, truncated, ...).
    """
    check_resize_method(method)
    pixels = decode_bytes(data, source=source, exif_orientation=exif_orientation)
    return _resize_pixels(pixels, method, bool(antialias))


def load_image(
    path: Union[str, os.PathLike],
    method: str = DEFAULT_RESIZE_METHOD,
    antialias: bool = True,
    exif_orientation: bool = False,
) -> np.ndarray:
    """Reads and preprocesses one image file -> float32 227 x 227 x 3, integers in [0, 255].

    Decoding is `decode_image_file` (PIL's pixels; EXIF orientation only with `exif_orientation=True`).
    Raises ImageDecodeError (naming the file and the reason) for a missing, unreadable, truncated or
    non-image file.
    """
    check_resize_method(method)
    pixels = decode_image_file(path, exif_orientation=exif_orientation)
    return _resize_pixels(pixels, method, bool(antialias))
