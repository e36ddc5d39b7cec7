"""The decoding conformance corpus: one small file per format variant the library must read or refuse.

Every file is generated here (PIL, OpenCV, numpy and two small header writers for what neither library
writes: PNG at any bit depth, BMP with any bit count, compression or row order), with structure in the
pixels (gradients plus noise), in two sizes: 64 x 48 (resized by the preprocessing) and exactly
227 x 227 (not resampled, so the served output shows the decoded pixels themselves).

`make_corpus(folder)` returns {name: CorpusFile}; `CorpusFile.expected` is the 0-255 RGB uint8 answer
of the decoder contract: PIL's `Image.open(f).convert("RGB")` for 8-bit content, and round(a / 257)
of the 16-bit array the writer was given for 16-bit content (where PIL clips or truncates).
"""

from __future__ import annotations

import dataclasses
import io
import pathlib
import struct
import zlib
from typing import Optional

import numpy as np
from PIL import Image

SIZES = {"small": (48, 64), "exact": (227, 227)}  # (height, width)


@dataclasses.dataclass
class CorpusFile:
    path: pathlib.Path
    expected: np.ndarray  # H x W x 3 uint8, the contract's answer before resizing
    in_graph: bool  # True: the in-graph decoder must return `expected` exactly; False: refuse
    refusal: str = ""  # a word the in-graph refusal message must contain


def structured(height: int, width: int, channels: int, seed: int, maximum: int = 255) -> np.ndarray:
    """Gradients in different directions per channel plus Gaussian noise, as integers 0..maximum."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    ramps = [
        x / max(width - 1, 1),
        y / max(height - 1, 1),
        (x + y) / max(width + height - 2, 1),
        1 - x / max(width - 1, 1),
    ]
    planes = [ramps[c % 4] * maximum + rng.normal(0, maximum * 0.08, (height, width)) for c in range(channels)]
    out = np.clip(np.rint(np.stack(planes, -1)), 0, maximum)
    return out.astype(np.uint16 if maximum > 255 else np.uint8)


def pil_rgb(path: pathlib.Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def from_16bit(a: np.ndarray) -> np.ndarray:
    """The contract for 16-bit content, computed independently of the library: round(a / 257) as RGB."""
    rgb = np.floor(a.astype(np.float64) / 257.0 + 0.5).astype(np.uint8)
    if rgb.ndim == 2:
        rgb = np.repeat(rgb[..., None], 3, axis=-1)
    return rgb[..., :3]


# -- PNG writer (any colour type and bit depth: PIL writes 2/4-bit only for palette images) -----------
def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)


def png_bytes(
    samples: np.ndarray, bit_depth: int, colour_type: int, palette: Optional[bytes] = None, trns: Optional[bytes] = None
) -> bytes:
    """samples: H x W x C integers (C = 1 grey/palette, 2 grey+alpha, 3 RGB, 4 RGBA) at `bit_depth`."""
    h, w, c = samples.shape
    rows = []
    for row in samples:
        flat = row.reshape(-1).astype(np.uint32)
        if bit_depth == 16:
            raw = flat.astype(">u2").tobytes()
        elif bit_depth == 8:
            raw = flat.astype(np.uint8).tobytes()
        else:  # pack 1/2/4-bit samples, most significant first
            per_byte = 8 // bit_depth
            padded = np.concatenate([flat, np.zeros((-len(flat)) % per_byte, np.uint32)]).reshape(-1, per_byte)
            shifts = np.arange(per_byte - 1, -1, -1) * bit_depth
            raw = (padded << shifts).sum(axis=1).astype(np.uint8).tobytes()
        rows.append(b"\x00" + raw)
    out = b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, bit_depth, colour_type, 0, 0, 0))
    if palette is not None:
        out += _chunk(b"PLTE", palette)
    if trns is not None:
        out += _chunk(b"tRNS", trns)
    return out + _chunk(b"IDAT", zlib.compress(b"".join(rows))) + _chunk(b"IEND", b"")


# -- BMP writer (bit counts 1/4/8/16/24/32, BI_RGB, RLE8, RLE4, BI_BITFIELDS, top-down rows) --------------
def _rle8(indices: np.ndarray) -> bytes:
    out = bytearray()
    for row in indices[::-1]:  # bottom-up
        i = 0
        while i < len(row):
            j = i
            while j < len(row) and row[j] == row[i] and j - i < 255:
                j += 1
            out += bytes([j - i, int(row[i])])
            i = j
        out += b"\x00\x00"  # end of line
    return bytes(out + b"\x00\x01")  # end of bitmap


def _rle4(indices: np.ndarray) -> bytes:
    out = bytearray()
    for row in indices[::-1]:
        i = 0
        while i < len(row):
            j = i
            while j < len(row) and row[j] == row[i] and j - i < 255:
                j += 1
            out += bytes([j - i, (int(row[i]) << 4) | int(row[i])])
            i = j
        out += b"\x00\x00"
    return bytes(out + b"\x00\x01")


def bmp_bytes(
    pixels: np.ndarray,
    bit_count: int,
    palette: Optional[np.ndarray] = None,
    compression: int = 0,
    masks: Optional[tuple[int, int, int]] = None,
    top_down: bool = False,
    info_size: int = 40,
) -> bytes:
    """pixels: H x W palette indices (bit counts 1/4/8), H x W x 3 RGB uint8 (24, 32), or H x W packed
    integers (16-bit, and 32-bit with masks). palette: N x 3 RGB. compression 1 = RLE8, 2 = RLE4, 3 = BITFIELDS.
    info_size: 40 (BITMAPINFOHEADER), or 108/124 (V4/V5, as GIMP writes; the extra fields are left 0)."""
    h, w = pixels.shape[:2]
    if compression == 1:
        body = _rle8(pixels)
    elif compression == 2:
        body = _rle4(pixels)
    else:
        rows = []
        for row in pixels:
            if bit_count in (1, 4, 8):
                per_byte = 8 // bit_count
                flat = row.astype(np.uint32)
                padded = np.concatenate([flat, np.zeros((-len(flat)) % per_byte, np.uint32)]).reshape(-1, per_byte)
                raw = (padded << (np.arange(per_byte - 1, -1, -1) * bit_count)).sum(axis=1).astype(np.uint8).tobytes()
            elif bit_count == 16:
                raw = row.astype("<u2").tobytes()
            elif bit_count == 24:
                raw = row[:, ::-1].astype(np.uint8).tobytes()  # BGR
            elif masks is not None:
                raw = row.astype("<u4").tobytes()
            else:  # 32-bit BI_RGB: B, G, R, then an unused byte (written as 0x80 to expose decoders that read it)
                bgrx = np.concatenate([row[:, ::-1], np.full((w, 1), 0x80, np.uint8)], axis=1)
                raw = bgrx.astype(np.uint8).tobytes()
            rows.append(raw + b"\x00" * ((-len(raw)) % 4))
        body = b"".join(rows if top_down else rows[::-1])
    colours = b""
    if palette is not None:
        colours = b"".join(bytes([int(b), int(g), int(r), 0]) for r, g, b in palette)
    mask_bytes = struct.pack("<III", *masks) if masks is not None else b""
    offset = 14 + info_size + len(mask_bytes) + len(colours)
    info = struct.pack(
        "<IiiHHIIiiII",
        info_size,
        w,
        -h if top_down else h,
        1,
        bit_count,
        compression,
        len(body),
        2835,
        2835,
        0 if palette is None else len(palette),
        0,
    ) + bytes(info_size - 40)
    header = b"BM" + struct.pack("<IHHI", offset + len(body), 0, 0, offset)
    return header + info + mask_bytes + colours + body


def _palette(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 3)).astype(np.uint8)


def _pil_bytes(image: Image.Image, fmt: str, **kwargs) -> bytes:
    buf = io.BytesIO()
    image.save(buf, fmt, **kwargs)
    return buf.getvalue()


def _ycck_from_cmyk(jpeg: bytes) -> bytes:
    """PIL writes CMYK JPEGs with an Adobe APP14 marker, transform 0; libjpeg writes YCCK when told, PIL
    cannot. Transform 2 declares the components YCCK: a valid YCCK file (its content is whatever the
    CMYK planes say when read as Y, Cb, Cr, K), enough to see what each decoder does with one."""
    at = jpeg.find(b"Adobe")
    assert at > 0, "no Adobe marker"
    transform = at + 11  # "Adobe", version (2), flags0 (2), flags1 (2), transform (1)
    assert jpeg[transform] == 0
    return jpeg[:transform] + b"\x02" + jpeg[transform + 1 :]


def _exif_orientation(value: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = value
    return exif.tobytes()


def encoded_variants(height: int, width: int, seed: int) -> dict[str, tuple[bytes, object, bool, str]]:
    """{name: (file bytes, expected (array, or None for PIL's answer), decoded in-graph?, refusal word)}."""
    rgb = structured(height, width, 3, seed)
    grey = structured(height, width, 1, seed + 1)[..., 0]
    rgba = structured(height, width, 4, seed + 2)
    rgb16 = structured(height, width, 3, seed + 3, maximum=65535)
    grey16 = structured(height, width, 1, seed + 4, maximum=65535)[..., 0]
    rgba16 = structured(height, width, 4, seed + 5, maximum=65535)
    idx256 = (structured(height, width, 1, seed + 6)[..., 0]).astype(np.uint8)
    pal256 = _palette(256, seed)
    out: dict[str, tuple[bytes, object, bool, str]] = {}
    im = Image.fromarray(rgb)

    # JPEG
    out["jpeg_q90_420"] = (_pil_bytes(im, "JPEG", quality=90, subsampling=2), None, True, "")
    out["jpeg_q90_444"] = (_pil_bytes(im, "JPEG", quality=90, subsampling=0), None, True, "")
    out["jpeg_q90_422"] = (_pil_bytes(im, "JPEG", quality=90, subsampling=1), None, True, "")
    for q in (50, 75, 100):
        out[f"jpeg_q{q}"] = (_pil_bytes(im, "JPEG", quality=q), None, True, "")
    out["jpeg_progressive"] = (_pil_bytes(im, "JPEG", quality=90, progressive=True), None, True, "")
    out["jpeg_optimized"] = (_pil_bytes(im, "JPEG", quality=85, optimize=True), None, True, "")
    out["jpeg_grey"] = (_pil_bytes(Image.fromarray(grey), "JPEG", quality=90), None, True, "")
    ok, cv_jpeg = __import__("cv2").imencode(".jpg", rgb[..., ::-1], [1, 95])  # IMWRITE_JPEG_QUALITY = 1
    out["jpeg_opencv"] = (cv_jpeg.tobytes(), None, True, "")
    cmyk = _pil_bytes(Image.fromarray(rgba, "CMYK"), "JPEG", quality=90)
    out["jpeg_cmyk"] = (cmyk, None, False, "CMYK")
    out["jpeg_ycck"] = (_ycck_from_cmyk(cmyk), None, False, "CMYK")
    out["jpeg_exif_rotate90"] = (_pil_bytes(im, "JPEG", quality=90, exif=_exif_orientation(6)), None, True, "")

    # PNG
    out["png_rgb8"] = (_pil_bytes(im, "PNG"), None, True, "")
    out["png_rgba8"] = (_pil_bytes(Image.fromarray(rgba, "RGBA"), "PNG"), None, True, "")
    out["png_grey8"] = (_pil_bytes(Image.fromarray(grey), "PNG"), None, True, "")
    out["png_grey_alpha8"] = (png_bytes(rgba[..., :2], 8, 4), None, True, "")
    for bits in (1, 2, 4):
        levels = grey.astype(np.uint32) >> (8 - bits)
        out[f"png_grey{bits}"] = (png_bytes(levels[..., None], bits, 0), None, True, "")
        pal = _palette(2**bits, seed + bits)
        out[f"png_palette{bits}"] = (png_bytes(levels[..., None], bits, 3, palette=pal.tobytes()), None, True, "")
    out["png_palette8"] = (png_bytes(idx256[..., None], 8, 3, palette=pal256.tobytes()), None, True, "")
    alphas = bytes(range(0, 256, 4))  # tRNS for the first 64 entries
    out["png_palette8_trns"] = (
        png_bytes(idx256[..., None], 8, 3, palette=pal256.tobytes(), trns=alphas),
        None,
        True,
        "",
    )
    out["png_rgb8_trns"] = (png_bytes(rgb, 8, 2, trns=struct.pack(">HHH", *rgb[0, 0])), None, True, "")
    out["png_grey16"] = (png_bytes(grey16[..., None], 16, 0), from_16bit(grey16), True, "")
    out["png_rgb16"] = (png_bytes(rgb16, 16, 2), from_16bit(rgb16), True, "")
    out["png_rgba16"] = (png_bytes(rgba16, 16, 6), from_16bit(rgba16), True, "")
    out["png_grey_alpha16"] = (png_bytes(rgba16[..., :2], 16, 4), from_16bit(rgba16[..., 0]), True, "")

    # BMP
    out["bmp_rgb24"] = (_pil_bytes(im, "BMP"), None, True, "")
    out["bmp_rgb24_top_down"] = (bmp_bytes(rgb, 24, top_down=True), None, True, "")
    out["bmp_rgb32"] = (bmp_bytes(rgb, 32), None, True, "")
    out["bmp_rgb24_v5_header"] = (bmp_bytes(rgb, 24, info_size=124), None, True, "")
    for info_size in (52, 56, 64, 108):  # the other info-header sizes TF reads as PIL does
        out[f"bmp_rgb24_info{info_size}"] = (bmp_bytes(rgb, 24, info_size=info_size), None, True, "")
    out["bmp_palette8"] = (_pil_bytes(_with_palette(idx256, pal256), "BMP"), None, False, "colour-table")
    out["bmp_grey8"] = (_pil_bytes(Image.fromarray(grey), "BMP"), None, True, "")  # colour table = grey ramp
    ramp = np.repeat(np.arange(256, dtype=np.uint8)[:, None], 3, axis=1)
    out["bmp_grey8_inverted_table"] = (bmp_bytes(grey, 8, palette=ramp[::-1]), None, False, "colour-table")
    blue = np.zeros((256, 3), np.uint8)
    blue[1] = (0, 0, 255)
    out["bmp_palette8_all_blue"] = (bmp_bytes(np.ones_like(grey), 8, palette=blue), None, False, "colour-table")
    out["bmp_1bit"] = (_pil_bytes(Image.fromarray(grey > 127), "BMP"), None, False, "colour-table")
    idx16 = (grey >> 4).astype(np.uint8)
    pal16 = _palette(16, seed + 9)
    out["bmp_palette4"] = (bmp_bytes(idx16, 4, palette=pal16), None, False, "colour-table")
    out["bmp_rle8"] = (bmp_bytes(idx256, 8, palette=pal256, compression=1), None, False, "compressed")
    out["bmp_rle4"] = (bmp_bytes(idx16, 4, palette=pal16, compression=2), None, False, "compressed")
    r5, g5, b5 = (rgb[..., 0] >> 3).astype(np.uint32), (rgb[..., 1] >> 3).astype(np.uint32), (rgb[..., 2] >> 3)
    out["bmp_rgb16_555"] = (bmp_bytes((r5 << 10) | (g5 << 5) | b5, 16), None, False, "16-bit")
    g6 = (rgb[..., 1] >> 2).astype(np.uint32)
    out["bmp_rgb16_565"] = (
        bmp_bytes((r5 << 11) | (g6 << 5) | b5, 16, compression=3, masks=(0xF800, 0x07E0, 0x001F)),
        None,
        False,
        "16-bit",
    )
    packed = (rgb[..., 0].astype(np.uint32) << 16) | (rgb[..., 1].astype(np.uint32) << 8) | rgb[..., 2]
    out["bmp_rgb32_bitfields"] = (
        bmp_bytes(packed, 32, compression=3, masks=(0xFF0000, 0xFF00, 0xFF)),
        None,
        False,
        "compressed",
    )

    # GIF
    gif_frame = _with_palette(idx256, pal256)
    out["gif"] = (_pil_bytes(gif_frame, "GIF"), None, True, "")
    out["gif_transparent"] = (_pil_bytes(gif_frame, "GIF", transparency=int(idx256[0, 0])), None, False, "transparent")
    # The logical screen (bytes 6-9) made larger than the only frame: PIL returns the whole canvas.
    canvas = bytearray(_pil_bytes(gif_frame, "GIF"))
    canvas[6:10] = struct.pack("<HH", width + 8, height + 4)
    out["gif_frame_smaller_than_canvas"] = (bytes(canvas), None, False, "canvas")
    # A second frame with other colours (PIL drops a frame whose pixels equal the previous one's).
    second = _with_palette(np.roll(idx256, 7, axis=1), pal256)
    # TF's decode_gif decodes every frame (memory grows with their number): refused in-graph; PIL reads frame 1.
    out["gif_animated"] = (
        _pil_bytes(gif_frame, "GIF", save_all=True, append_images=[second], duration=100, loop=0),
        None,
        False,
        "animated GIF",
    )

    # WebP
    out["webp_lossy"] = (_pil_bytes(im, "WEBP", quality=80), None, True, "")
    out["webp_lossless"] = (_pil_bytes(im, "WEBP", lossless=True), None, True, "")
    out["webp_lossy_alpha"] = (_pil_bytes(Image.fromarray(rgba, "RGBA"), "WEBP", quality=80), None, True, "")
    out["webp_animated"] = (
        _pil_bytes(
            im, "WEBP", save_all=True, append_images=[Image.fromarray(rgb[::-1].copy())], duration=100, lossless=True
        ),
        None,
        False,
        "animated",
    )

    # TIFF
    out["tiff_rgb8"] = (_pil_bytes(im, "TIFF"), None, False, "TIFF")
    out["tiff_grey8"] = (_pil_bytes(Image.fromarray(grey), "TIFF"), None, False, "TIFF")
    cv2 = __import__("cv2")
    ok, tiff16 = cv2.imencode(".tiff", rgb16[..., ::-1])
    out["tiff_rgb16"] = (tiff16.tobytes(), from_16bit(rgb16), False, "TIFF")
    ok, tiffg16 = cv2.imencode(".tiff", grey16)
    out["tiff_grey16"] = (tiffg16.tobytes(), from_16bit(grey16), False, "TIFF")
    return out


def _with_palette(indices: np.ndarray, palette: np.ndarray) -> Image.Image:
    image = Image.new("P", indices.shape[::-1])
    image.putdata(indices.reshape(-1).tolist())
    image.putpalette(palette.reshape(-1).tolist())
    return image


def make_corpus(folder: pathlib.Path) -> dict[str, CorpusFile]:
    """Writes every variant in both sizes into `folder`; names are `<variant>_<size>`."""
    folder = pathlib.Path(folder)
    files: dict[str, CorpusFile] = {}
    for size_name, (h, w) in SIZES.items():
        for name, (data, expected, in_graph, refusal) in encoded_variants(h, w, seed=len(files)).items():
            ext = name.split("_")[0].replace("jpeg", "jpg")
            path = folder / f"{name}_{size_name}.{ext}"
            path.write_bytes(data)
            if expected is None:
                expected = pil_rgb(path)
            files[f"{name}_{size_name}"] = CorpusFile(path, np.asarray(expected, np.uint8), in_graph, refusal)
    return files
