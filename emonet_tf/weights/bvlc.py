"""The ImageNet AlexNet for transfer learning: `bvlc_alexnet.npy`, Caffe `.caffemodel`, Caffe mean `.binaryproto`.

Both weight files hold Caffe's BVLC AlexNet, trained on **BGR** input: conv1's input channels are
reversed here so that the Keras model takes RGB like every other emonet_tf model. fc8 is the 1000-way
ImageNet classifier; `build_classifier(..., new_head=True)` puts a fresh 20-way head on top.

bvlc_alexnet.npy (the file of Guerzhoy's "myalexnet" TensorFlow port, made with caffe-tensorflow) is a
pickled dict {layer: [weights, biases]}. `np.load(allow_pickle=True)` would run any code in it, so it is
read with an Unpickler that only rebuilds numpy arrays. caffe-tensorflow already re-wired fc6 for TF's
NHWC flatten (its DataReshaper transposes [out, c, h, w] -> (h, w, c, out)), which is why myalexnet
feeds `tf.reshape(maxpool5, [-1, 9216])` straight into fc6W; so fc6 rows are taken as is
(`fc6_order="hwc"`). A file converted without that re-wiring can be read with `fc6_order="chw"`.

The .caffemodel is a NetParameter protobuf, read with the minimal wire-format reader below (field
numbers from caffe.proto: NetParameter.layer = 100 (LayerParameter: name 1, type 2, blobs 7),
legacy NetParameter.layers = 2 (V1LayerParameter: name 4, blobs 6, and V0 `layer` 1: name 1,
blobs 50); BlobProto: shape 7 (BlobShape.dim 1, packed int64), data 5 (packed float),
double_data 8, legacy num 1, channels 2, height 3, width 4).
"""
from __future__ import annotations

import ast
import os
import pickle
import struct
from typing import Any, Iterator, Optional

import numpy as np

from emonet_tf.backbone import IMAGENET_RGB_MEAN, WEIGHT_SHAPES
from emonet_tf.weights import mapping
from emonet_tf.weights.errors import WeightFormatError, WeightMismatchError
from emonet_tf.weights.weightset import FC8_INPUTS, LAYERS, WeightSet, make_weightset

NPY_MAGIC = b"\x93NUMPY"
BGR_NOTE = "conv1 input channels reversed BGR -> RGB (Caffe's AlexNet was trained on BGR images)"
NO_MEAN_NOTE = ("no mean in the file: Caffe's per-channel ImageNet mean (R, G, B) = "
                f"{tuple(round(v, 2) for v in IMAGENET_RGB_MEAN)} is used; pass the ilsvrc_2012_mean.binaryproto "
                "as mean= for the full mean image")


# --------------------------------------------------------------------------------------------------
# bvlc_alexnet.npy

def _codecs_encode(text, encoding="utf-8", errors="strict"):
    """Python 3 protocol-2 pickles store bytes as _codecs.encode(str, 'latin1'); allow only that."""
    if str(encoding).lower().replace("_", "-") not in ("latin1", "latin-1", "iso-8859-1"):
        raise pickle.UnpicklingError(f"_codecs.encode with encoding {encoding!r} is not allowed")
    return str(text).encode("latin1")


def _numpy_globals() -> dict[tuple[str, str], Any]:
    reconstruct = np.zeros(1).__reduce__()[0]  # numpy's _reconstruct, wherever this numpy keeps it
    scalar = np.float32(0).__reduce__()[0]
    frombuffer = np.zeros(1).__reduce_ex__(5)[0]
    allowed = {("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype, ("_codecs", "encode"): _codecs_encode}
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
        allowed[(module, "_reconstruct")] = reconstruct
        allowed[(module, "scalar")] = scalar
    for module in ("numpy.core.numeric", "numpy._core.numeric"):
        allowed[(module, "_frombuffer")] = frombuffer
    return allowed


class _NumpyOnlyUnpickler(pickle.Unpickler):
    _allowed = _numpy_globals()

    def __init__(self, file, source: str):
        super().__init__(file, encoding="latin1")  # Python 2 pickles: str -> latin1, as numpy documents
        self._source = source

    def find_class(self, module: str, name: str):
        if (module, name) in self._allowed:
            return self._allowed[(module, name)]
        raise WeightFormatError(f"{self._source}: refusing to load: the pickle references {module}.{name}, "
                                "which is not a numpy array constructor (such a global can run code on load); "
                                "nothing was loaded")

    def persistent_load(self, pid):
        raise WeightFormatError(f"{self._source}: unexpected persistent id in a .npy pickle")


def _read_npy_header(f, path: str) -> dict:
    if f.read(6) != NPY_MAGIC:
        raise WeightFormatError(f"{path}: not a .npy file")
    version = f.read(2)
    if len(version) != 2 or version[0] not in (1, 2, 3):
        raise WeightFormatError(f"{path}: unsupported .npy version {tuple(version)}")
    size_fmt = "<H" if version[0] == 1 else "<I"
    raw_len = f.read(struct.calcsize(size_fmt))
    if len(raw_len) != struct.calcsize(size_fmt):
        raise WeightFormatError(f"{path}: truncated .npy header")
    (hlen,) = struct.unpack(size_fmt, raw_len)
    text = f.read(hlen)
    try:
        header = ast.literal_eval(text.decode("utf-8" if version[0] == 3 else "latin1"))
    except (ValueError, SyntaxError, UnicodeDecodeError):
        raise WeightFormatError(f"{path}: corrupt .npy header") from None
    if not isinstance(header, dict) or "descr" not in header:
        raise WeightFormatError(f"{path}: corrupt .npy header")
    return header


def load_npy_pickle(path: str) -> Any:
    """The object inside an object-dtype .npy (what np.load(allow_pickle=True).item() returns), safely."""
    with open(path, "rb") as f:
        header = _read_npy_header(f, path)
        if header["descr"] != "|O":
            raise WeightFormatError(f"{path}: holds a plain {header['descr']} array of shape {header.get('shape')}, "
                                    "not the pickled {layer: [weights, biases]} dict of bvlc_alexnet.npy")
        try:
            obj = _NumpyOnlyUnpickler(f, path).load()
        except WeightFormatError:
            raise
        except (EOFError, pickle.UnpicklingError, ValueError, TypeError, AttributeError, IndexError, KeyError,
                struct.error, UnicodeDecodeError, MemoryError) as err:
            raise WeightFormatError(f"{path}: truncated or corrupt pickle ({type(err).__name__}: {err})") from None
    if isinstance(obj, np.ndarray) and obj.dtype == object and obj.size == 1:
        obj = obj.reshape(()).item()
    return obj


def _key(k) -> str:
    return k.decode("latin1") if isinstance(k, bytes) else str(k)


def _npy_pair(value, name: str, path: str) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(value, dict):
        value = {_key(k): v for k, v in value.items()}
        if "weights" in value and "biases" in value:
            value = [value["weights"], value["biases"]]
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise WeightFormatError(f"{path}: layer {name} is not a [weights, biases] pair")
    w, b = (np.asarray(v) for v in value)
    if w.dtype.kind != "f" or b.dtype.kind != "f":
        raise WeightFormatError(f"{path}: layer {name} holds {w.dtype}/{b.dtype} arrays, not floats")
    return w, b


def read_bvlc_npy(path: str, mean=None, fc6_order: str = "hwc") -> WeightSet:
    """bvlc_alexnet.npy -> WeightSet (RGB conv1, NHWC fc6 rows, 1000-way fc8)."""
    if fc6_order not in ("hwc", "chw"):
        raise ValueError(f"fc6_order must be 'hwc' or 'chw', got {fc6_order!r}")
    obj = load_npy_pickle(path)
    if not isinstance(obj, dict):
        raise WeightFormatError(f"{path}: expected a pickled dict of layers, found {type(obj).__name__}")
    data = {_key(k): v for k, v in obj.items()}
    missing = [n for n in LAYERS if n not in data]
    if missing:
        raise WeightFormatError(f"{path}: missing layers {missing} (found {sorted(data)})")
    layers = {}
    for name in LAYERS:
        w, b = _npy_pair(data[name], name, path)
        if name == "fc8":
            if w.ndim != 2 or w.shape[0] != FC8_INPUTS:
                raise WeightMismatchError(f"{name} weights", (FC8_INPUTS, "N"), w.shape, path)
        elif w.shape != WEIGHT_SHAPES[name][0]:
            raise WeightMismatchError(f"{name} weights", WEIGHT_SHAPES[name][0], w.shape, path)
        w = w.astype(np.float32)
        if name == "conv1":
            w = mapping.bgr_to_rgb_kernel(w)
        elif name == "fc6" and fc6_order == "chw":
            w = mapping.fc6_rows_from_chw(w)
        layers[name] = (w, b.reshape(-1))
    notes = [BGR_NOTE, "fc6 rows taken as NHWC (caffe-tensorflow layout)" if fc6_order == "hwc"
             else "fc6 rows reordered from Caffe's CHW to NHWC"]
    mean, mean_note = _imagenet_mean(mean)
    return make_weightset(layers, mean, None, path, "bvlc_npy", tuple(notes + [mean_note]))


# --------------------------------------------------------------------------------------------------
# Protobuf wire format (only what NetParameter/BlobProto need)

def _varint(buf: memoryview, pos: int, end: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= end:
            raise WeightFormatError("truncated varint")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise WeightFormatError("varint longer than 10 bytes")


def iter_fields(buf: memoryview, start: int, end: int) -> Iterator[tuple[int, int, Any]]:
    """Yields (field number, wire type, value): an int for varint/fixed, a (start, end) span for length-delimited."""
    pos = start
    while pos < end:
        key, pos = _varint(buf, pos, end)
        field, wire = key >> 3, key & 7
        if field == 0:
            raise WeightFormatError("field number 0")
        if wire == 0:
            value, pos = _varint(buf, pos, end)
        elif wire == 1:
            if pos + 8 > end:
                raise WeightFormatError("truncated 64-bit field")
            value, pos = pos, pos + 8
        elif wire == 2:
            length, pos = _varint(buf, pos, end)
            if pos + length > end:
                raise WeightFormatError(f"field {field} claims {length} bytes, only {end - pos} left")
            value, pos = (pos, pos + length), pos + length
        elif wire == 5:
            if pos + 4 > end:
                raise WeightFormatError("truncated 32-bit field")
            value, pos = pos, pos + 4
        else:
            raise WeightFormatError(f"unsupported wire type {wire} (field {field})")
        yield field, wire, value


def _packed_varints(buf: memoryview, span: tuple[int, int]) -> list[int]:
    values, pos = [], span[0]
    while pos < span[1]:
        v, pos = _varint(buf, pos, span[1])
        values.append(v)
    return values


def parse_blob(buf: memoryview, span: tuple[int, int]) -> np.ndarray:
    """A BlobProto -> float32 array with its shape (BlobShape, else legacy num/channels/height/width)."""
    dims: list[int] = []
    legacy = {1: 0, 2: 0, 3: 0, 4: 0}
    chunks: list[np.ndarray] = []
    singles: list[float] = []
    for field, wire, value in iter_fields(buf, *span):
        if field == 7 and wire == 2:
            for f2, w2, v2 in iter_fields(buf, *value):
                if f2 == 1:
                    dims.extend(_packed_varints(buf, v2) if w2 == 2 else [v2])
        elif field in legacy and wire == 0:
            legacy[field] = value
        elif field == 5 and wire == 2:
            if (value[1] - value[0]) % 4:
                raise WeightFormatError("packed float data of a length not divisible by 4")
            chunks.append(np.frombuffer(buf[value[0]:value[1]], "<f4"))
        elif field == 5 and wire == 5:
            singles.append(struct.unpack_from("<f", buf, value)[0])
        elif field == 8 and wire == 2:
            if (value[1] - value[0]) % 8:
                raise WeightFormatError("packed double data of a length not divisible by 8")
            chunks.append(np.frombuffer(buf[value[0]:value[1]], "<f8").astype(np.float32))
    if singles:
        chunks.append(np.asarray(singles, np.float32))
    data = np.concatenate(chunks).astype(np.float32) if chunks else np.zeros(0, np.float32)
    shape = tuple(dims) if dims else tuple(legacy[k] for k in (1, 2, 3, 4) if any(legacy.values()))
    if int(np.prod(shape)) != data.size:
        raise WeightFormatError(f"blob of shape {shape} holds {data.size} values")
    return data.reshape(shape)


def parse_caffemodel_layers(data: bytes) -> dict[str, list[np.ndarray]]:
    """NetParameter bytes -> {layer name: [blob arrays]} for layers that have blobs (new and legacy layouts)."""
    buf = memoryview(data)
    layers: dict[str, list[np.ndarray]] = {}

    def read_layer(span, name_field: int, blob_field: int):
        name, blobs = None, []
        for field, wire, value in iter_fields(buf, *span):
            if field == name_field and wire == 2:
                name = bytes(buf[value[0]:value[1]]).decode("utf-8", "replace")
            elif field == blob_field and wire == 2:
                blobs.append(parse_blob(buf, value))
            elif name_field == 4 and field == 1 and wire == 2:  # V1 layer wrapping a V0 layer
                inner_name, inner_blobs = read_layer(value, 1, 50)
                name = name or inner_name
                blobs = blobs or inner_blobs
        return name, blobs

    for field, wire, value in iter_fields(buf, 0, len(buf)):
        if wire != 2 or field not in (100, 2):
            continue
        name, blobs = read_layer(value, 1, 7) if field == 100 else read_layer(value, 4, 6)
        if name and blobs:
            layers[name] = blobs
    return layers


def _caffe_blobs(blobs: list[np.ndarray], name: str, path: str) -> tuple[np.ndarray, np.ndarray]:
    if len(blobs) != 2:
        raise WeightFormatError(f"{path}: layer {name} has {len(blobs)} blobs, expected weights and bias")
    return blobs[0], blobs[1].reshape(-1)


def _squeeze_to(arr: np.ndarray, ndim: int) -> np.ndarray:
    """Drops leading 1-sized axes of legacy 4-D blobs (1, 1, out, in) until `ndim` axes remain."""
    while arr.ndim > ndim and arr.shape[0] == 1:
        arr = arr.reshape(arr.shape[1:])
    return arr


def read_caffemodel(path: str, mean=None) -> WeightSet:
    """A BVLC AlexNet .caffemodel -> WeightSet (RGB conv1, NHWC fc6 rows, 1000-way fc8)."""
    with open(path, "rb") as f:
        data = f.read()
    try:
        found = parse_caffemodel_layers(data)
    except WeightFormatError as err:
        raise WeightFormatError(f"{path}: corrupt or truncated caffemodel ({err})") from None
    missing = [n for n in LAYERS if n not in found]
    if missing:
        raise WeightFormatError(f"{path}: caffemodel lacks layers {missing} (layers with weights: {sorted(found)})")
    layers = {}
    for name in LAYERS:
        w, b = _caffe_blobs(found[name], name, path)
        if name in mapping.CONV_LAYERS:
            expected = mapping.torch_conv_shape(name)
            if w.shape != expected:
                raise WeightMismatchError(f"{name} blob 0", expected, w.shape, path)
            kernel = mapping.conv_from_torch(w)
            if name == "conv1":
                kernel = mapping.bgr_to_rgb_kernel(kernel)
        else:
            w = _squeeze_to(w, 2)
            n_in = 9216 if name == "fc6" else FC8_INPUTS
            if w.ndim != 2 or w.shape[1] != n_in or (name != "fc8" and w.shape[0] != 4096):
                raise WeightMismatchError(f"{name} blob 0", (4096 if name != "fc8" else "N", n_in), w.shape, path)
            kernel = mapping.fc6_from_chw_columns(w) if name == "fc6" else mapping.fc_from_torch(w)
        layers[name] = (kernel, b)
    mean, mean_note = _imagenet_mean(mean)
    notes = [BGR_NOTE, "fc6 columns reordered from Caffe's CHW flatten to NHWC", mean_note]
    return make_weightset(layers, mean, None, path, "caffemodel", tuple(notes))


# --------------------------------------------------------------------------------------------------
# Mean files

def read_binaryproto_mean(path: str) -> np.ndarray:
    """Caffe's ilsvrc_2012_mean.binaryproto (BlobProto 1x3x256x256, BGR) -> (227, 227, 3) RGB centre crop."""
    with open(path, "rb") as f:
        data = f.read()
    try:
        blob = parse_blob(memoryview(data), (0, len(data)))
    except WeightFormatError as err:
        raise WeightFormatError(f"{path}: corrupt or truncated binaryproto ({err})") from None
    shape = blob.shape[-3:] if blob.ndim >= 3 else blob.shape
    if blob.ndim < 3 or shape[0] != 3 or shape[1] < 227 or shape[2] < 227 or blob.size != int(np.prod(shape)):
        raise WeightMismatchError("mean blob", "(1, 3, H>=227, W>=227)", blob.shape, path)
    return mapping.mean_from_caffe_blob(blob)


def read_mean(mean) -> tuple[Optional[np.ndarray], str]:
    """A mean given by the user: a path (.binaryproto, img_mean.txt, .npy of numbers) or an array."""
    if mean is None:
        return None, ""
    if isinstance(mean, (str, os.PathLike)):
        path = os.fspath(mean)
        if not os.path.isfile(path):
            raise WeightFormatError(f"{path}: mean file not found")
        if path.endswith(".binaryproto"):
            return read_binaryproto_mean(path), f"mean image from {os.path.basename(path)} (centre crop, BGR -> RGB)"
        if path.endswith((".txt", ".txt.bz2")):
            from emonet_tf.weights.matlab_text import read_mean_file
            return read_mean_file(path), f"mean image from {os.path.basename(path)} (MATLAB layout)"
        if path.endswith(".npy"):
            try:
                arr = np.load(path, allow_pickle=False)
            except ValueError as err:
                raise WeightFormatError(f"{path}: not a plain numeric .npy ({err})") from None
            return arr, f"mean from {os.path.basename(path)} (RGB, HxWx3 or 3 values)"
        raise WeightFormatError(f"{path}: unknown mean file type; use .binaryproto, img_mean.txt or .npy")
    return np.asarray(mean, np.float32), "mean given by the caller"


def _imagenet_mean(mean) -> tuple[np.ndarray, str]:
    arr, note = read_mean(mean)
    if arr is None:
        return np.asarray(IMAGENET_RGB_MEAN, np.float32), NO_MEAN_NOTE
    return arr, note
