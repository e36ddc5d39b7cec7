"""The ImageNet AlexNet for transfer learning: `bvlc_alexnet.npy`, Caffe `.caffemodel`, Caffe mean `.binaryproto`.

Both weight files hold Caffe's BVLC AlexNet, trained on **BGR** input: conv1's input channels are
reversed here so that the Keras model takes RGB like every other emonet_tf model. fc8 is the 1000-way
ImageNet classifier; `build_classifier(..., new_head=True)` puts a new 20-way head on top.

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
import math
import os
import re
import struct
from typing import Any, Iterable, Iterator, Optional

import numpy as np

from emonet_tf.backbone import IMAGENET_RGB_MEAN, WEIGHT_SHAPES
from emonet_tf.image_spec import IMAGE_SIZE
from emonet_tf.weights import limits, mapping, safe_pickle
from emonet_tf.weights.errors import WeightFormatError, WeightMismatchError
from emonet_tf.weights.registry import read_head
from emonet_tf.weights.weightset import FC8_INPUTS, LAYERS, WeightSet, make_weightset

NPY_MAGIC = b"\x93NUMPY"
BGR_NOTE = "conv1 input channels reversed BGR -> RGB (Caffe's AlexNet was trained on BGR images)"
NO_MEAN_NOTE = (
    "no mean in the file: Caffe's per-channel ImageNet mean (R, G, B) = "
    f"{tuple(round(v, 2) for v in IMAGENET_RGB_MEAN)} is used; pass the ilsvrc_2012_mean.binaryproto "
    "as mean= for the full mean image"
)


# --------------------------------------------------------------------------------------------------
# bvlc_alexnet.npy


def looks_like_npy(path: str) -> bool:
    """A file starting with numpy's .npy magic number (the `bvlc_npy` format)."""
    return read_head(path).startswith(NPY_MAGIC)


_NPY_DTYPE_CODE = re.compile(r"[a-zA-Z?][0-9]{0,2}")
_ARRAY_KINDS = "biufc?O"


def _plain_dtype(dtype, what: str) -> np.dtype:
    """A numeric or object dtype without fields or sub-arrays (all a weight file holds)."""
    if (
        not isinstance(dtype, np.dtype)
        or dtype.kind not in _ARRAY_KINDS
        or dtype.names is not None
        or dtype.subdtype is not None
        or dtype.itemsize > 16
    ):
        raise WeightFormatError(f"{what} has dtype {dtype!r:.60}, not a plain numeric (or object) dtype")
    return dtype


def _array_size(shape, what: str) -> int:
    if type(shape) not in (tuple, list) or len(shape) > 32 or any(type(n) is not int or n < 0 for n in shape):
        raise WeightFormatError(f"{what} has shape {shape!r:.60}, not a tuple of non-negative integers")
    size = math.prod(shape)
    if size > limits.MAX_TENSOR_ELEMENTS:
        raise WeightFormatError(
            f"{what} of shape {tuple(shape)} has more than {limits.MAX_TENSOR_ELEMENTS} "
            "elements (emonet_tf.weights.limits.MAX_TENSOR_ELEMENTS); refused before allocating"
        )
    return size


def _numpy_load_tables(budget: safe_pickle.Budget):
    """Globals, callables and BUILD handlers for one .npy pickle; numpy's own constructors wrapped with checks.

    numpy pickles an array as `_reconstruct(ndarray, (0,), b'b')` + BUILD (version, shape, dtype, fortran, data),
    a dtype as `dtype('f4', False, True)` + BUILD (its state), a scalar as `scalar(dtype, bytes)`, and with
    protocol 5 `_frombuffer(buffer, dtype, shape, order)`. The wrappers always make new objects (never numpy's
    shared dtype singletons) and check every shape, dtype and byte count before numpy allocates anything.
    """
    reconstruct = np.zeros(1).__reduce__()[0]  # numpy's _reconstruct, wherever this numpy keeps it
    scalar = np.float32(0).__reduce__()[0]
    frombuffer = np.zeros(1).__reduce_ex__(5)[0]

    def new_array(subtype, shape, typecode):
        if subtype is not np.ndarray:
            raise WeightFormatError(f"_reconstruct of {subtype!r:.60}, not numpy.ndarray")
        return reconstruct(np.ndarray, (0,), b"b")  # empty: BUILD gives shape and data, after checks

    def new_dtype(obj, align=False, copy=False):
        if not isinstance(obj, str) or not _NPY_DTYPE_CODE.fullmatch(obj):
            raise WeightFormatError(f"a dtype made from {obj!r:.60}, not a type code like 'f4'")
        return np.dtype(obj, bool(align), True)  # copy=True: a new object, never numpy's shared singleton

    def new_scalar(dtype, data=None):
        dtype = _plain_dtype(dtype, "a scalar")
        if dtype.kind != "O" and (not isinstance(data, (bytes, str)) or len(data) != dtype.itemsize):
            raise WeightFormatError(
                f"a {dtype} scalar from {len(data) if isinstance(data, (bytes, str)) else '?'} bytes"
            )
        if isinstance(data, str):
            data = data.encode("latin1")
        return scalar(dtype, data)

    def from_buffer(buf, dtype, shape, order):
        dtype = _plain_dtype(dtype, "an array")
        size = _array_size(shape, "an array")
        if dtype.kind == "O" or not isinstance(buf, (bytes, bytearray)) or len(buf) != size * dtype.itemsize:
            raise WeightFormatError(
                f"an array of shape {tuple(shape)} and dtype {dtype} from a buffer of the wrong size or type"
            )
        if order not in ("C", "F"):
            raise WeightFormatError(f"array order {order!r:.10}")
        budget.charge(len(buf), "an array")
        return frombuffer(bytes(buf), dtype, tuple(shape), order)

    def codecs_encode(text, encoding="utf-8", errors="strict"):
        """Python 3 protocol-2 pickles store bytes as _codecs.encode(str, 'latin1'); allow only that."""
        if not isinstance(text, str) or str(encoding).lower().replace("_", "-") not in (
            "latin1",
            "latin-1",
            "iso-8859-1",
        ):
            raise WeightFormatError(f"_codecs.encode with encoding {encoding!r:.20} is not allowed")
        return text.encode("latin1")

    def set_array_state(arr, state):
        if type(state) is not tuple or len(state) not in (4, 5):
            raise WeightFormatError("an array state that is not numpy's (version, shape, dtype, fortran, data)")
        shape, dtype, fortran, data = state[-4:]
        dtype = _plain_dtype(dtype, "an array")
        size = _array_size(shape, "an array")
        if type(fortran) not in (bool, int):
            raise WeightFormatError("an array state whose Fortran flag is not a boolean")
        if dtype.kind == "O":
            if type(data) is not list or len(data) != size:  # numpy itself would read past a short list
                raise WeightFormatError(
                    f"an object array of {size} elements from "
                    f"{len(data) if type(data) is list else type(data).__name__} items"
                )
            budget.charge(size * 8, "an object array")
        else:
            if not isinstance(data, (bytes, str)) or len(data) != size * dtype.itemsize:
                raise WeightFormatError(
                    f"an array of shape {tuple(shape)} and dtype {dtype} from "
                    f"{len(data) if isinstance(data, (bytes, str)) else type(data).__name__} "
                    f"bytes, {size * dtype.itemsize} expected"
                )
            budget.charge(size * dtype.itemsize, "an array")
        arr.__setstate__(state)

    def set_dtype_state(dtype, state):
        # numpy's dtype state: (version, byteorder, subarray, names, fields, elsize, alignment, flags)
        if (
            type(state) is not tuple
            or len(state) not in (8, 9)
            or state[2:5] != (None, None, None)
            or state[1] not in ("<", ">", "|", "=")
        ):
            raise WeightFormatError("a dtype state with fields, sub-arrays or an unknown byte order")
        dtype.__setstate__(state)
        _plain_dtype(dtype, "a dtype")

    allowed = {("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): new_dtype, ("_codecs", "encode"): codecs_encode}
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
        allowed[(module, "_reconstruct")] = new_array
        allowed[(module, "scalar")] = new_scalar
    for module in ("numpy.core.numeric", "numpy._core.numeric"):
        allowed[(module, "_frombuffer")] = from_buffer
    callables = (new_array, new_dtype, new_scalar, from_buffer, codecs_encode)
    build = {np.ndarray: set_array_state, np.dtype: set_dtype_state, type(np.dtype("f4")): set_dtype_state}
    for code in "?bBhHiIlLqQefdgFDGO":
        build[type(np.dtype(code))] = set_dtype_state
    return allowed, callables, build


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
    if hlen > limits.MAX_NPY_HEADER_BYTES:
        raise WeightFormatError(
            f"{path}: .npy header of {hlen} bytes (numpy's own limit, "
            f"emonet_tf.weights.limits.MAX_NPY_HEADER_BYTES, is {limits.MAX_NPY_HEADER_BYTES})"
        )
    text = f.read(hlen)
    try:
        header = ast.literal_eval(text.decode("utf-8" if version[0] == 3 else "latin1"))
    except (ValueError, SyntaxError, UnicodeDecodeError, TypeError, MemoryError, RecursionError):
        raise WeightFormatError(f"{path}: corrupt .npy header") from None
    if (
        not isinstance(header, dict)
        or not isinstance(header.get("descr"), (str, list))
        or not isinstance(header.get("shape"), tuple)
        or header.get("fortran_order") not in (True, False)
    ):
        raise WeightFormatError(f"{path}: corrupt .npy header (needs descr, fortran_order and shape)")
    return header


def load_npy_pickle(path: str) -> Any:
    """The object inside an object-dtype .npy (what np.load(allow_pickle=True).item() returns), safely.

    The pickle runs on `safe_pickle.SafeUnpickler` with only numpy's array, dtype and scalar constructors
    (wrapped: new objects only, shapes and byte counts checked first), at most `limits.MAX_LOAD_BYTES` of data.
    Raises WeightFormatError naming the file for a plain (non-object) array, a forbidden global or opcode,
    state set on anything the load did not create, a forged length, a cycle, or a truncated file.
    """
    path = os.fspath(path)
    with open(path, "rb") as f:
        header = _read_npy_header(f, path)
        if header["descr"] != "|O" or header["shape"] != ():
            raise WeightFormatError(
                f"{path}: holds a plain {header['descr']!r:.40} array of shape "
                f"{header.get('shape')!r:.40}, not the pickled {{layer: [weights, biases]}} dict "
                "of bvlc_alexnet.npy"
            )
        budget = safe_pickle.Budget(path)
        allowed, callables, build = _numpy_load_tables(budget)
        obj = safe_pickle.SafeUnpickler(
            safe_pickle.BoundedReader.of_file(f, path),
            path,
            allowed,
            callables,
            build=build,
            encoding="latin1",
            budget=budget,
        ).load()
    if isinstance(obj, np.ndarray) and obj.dtype == object and obj.size == 1:
        obj = obj.reshape(()).item()
    return safe_pickle.walk(obj, path, lambda leaf: leaf)


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
    """bvlc_alexnet.npy -> WeightSet (RGB conv1, NHWC fc6 rows, 1000-way fc8).

    Raises WeightFormatError naming the file for anything `load_npy_pickle` refuses or a missing layer,
    WeightMismatchError for a layer of the wrong shape, ValueError for an unknown fc6_order.
    """
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
    notes = [
        BGR_NOTE,
        "fc6 rows taken as NHWC (caffe-tensorflow layout)"
        if fc6_order == "hwc"
        else "fc6 rows reordered from Caffe's CHW to NHWC",
    ]
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


def _packed_varints(buf: memoryview, span: tuple[int, int], limit: int) -> list[int]:
    values, pos = [], span[0]
    while pos < span[1]:
        v, pos = _varint(buf, pos, span[1])
        values.append(v)
        if len(values) > limit:
            raise WeightFormatError(f"more than {limit} packed values where at most {limit} are expected")
    return values


def parse_blob(buf: memoryview, span: tuple[int, int]) -> np.ndarray:
    """A BlobProto -> float32 array with its shape (BlobShape, else legacy num/channels/height/width).

    Raises WeightFormatError for more than `limits.MAX_BLOB_DIMS` dimensions, a dimension or a value count above
    `limits.MAX_TENSOR_ELEMENTS`, or data that does not fill the shape (checked before any copy).
    """
    dims: list[int] = []
    legacy = {1: 0, 2: 0, 3: 0, 4: 0}
    spans: list[tuple[tuple[int, int], str]] = []
    singles: list[float] = []
    count = 0
    for field, wire, value in iter_fields(buf, *span):
        if field == 7 and wire == 2:
            for f2, w2, v2 in iter_fields(buf, *value):
                if f2 == 1:
                    dims.extend(_packed_varints(buf, v2, limits.MAX_BLOB_DIMS) if w2 == 2 else [v2])
                    if len(dims) > limits.MAX_BLOB_DIMS:
                        raise WeightFormatError(f"a blob with more than {limits.MAX_BLOB_DIMS} dimensions")
        elif field in legacy and wire == 0:
            legacy[field] = value
        elif field in (5, 8) and wire == 2:
            size = 4 if field == 5 else 8
            if (value[1] - value[0]) % size:
                raise WeightFormatError(
                    f"packed {'float' if size == 4 else 'double'} data of a length not divisible by {size}"
                )
            spans.append((value, "<f4" if size == 4 else "<f8"))
            count += (value[1] - value[0]) // size
        elif field == 5 and wire == 5:
            singles.append(struct.unpack_from("<f", buf, value)[0])
            count += 1
        if count > limits.MAX_TENSOR_ELEMENTS:
            raise WeightFormatError(
                f"a blob with more than {limits.MAX_TENSOR_ELEMENTS} values "
                "(emonet_tf.weights.limits.MAX_TENSOR_ELEMENTS)"
            )
    shape = tuple(dims) if dims else tuple(legacy[k] for k in (1, 2, 3, 4) if any(legacy.values()))
    if any(d > limits.MAX_TENSOR_ELEMENTS for d in shape) or math.prod(shape) != count:
        raise WeightFormatError(f"blob of shape {shape} holds {count} values")
    data = np.empty(count, np.float32)
    pos = 0
    for (start, end), dtype in spans:
        chunk = np.frombuffer(buf[start:end], dtype)
        data[pos : pos + chunk.size] = chunk
        pos += chunk.size
    data[pos:] = singles
    return data.reshape(shape)


def _layer_spans(buf: memoryview) -> Iterator[tuple[Optional[str], list[tuple[int, int]]]]:
    """(name, blob spans) of every layer, new (NetParameter.layer = 100) and legacy (layers = 2) layouts."""

    def read_layer(span, name_field: int, blob_field: int):
        name, blobs = None, []
        for field, wire, value in iter_fields(buf, *span):
            if field == name_field and wire == 2:
                name = bytes(buf[value[0] : value[1]]).decode("utf-8", "replace")
            elif field == blob_field and wire == 2:
                blobs.append(value)
            elif name_field == 4 and field == 1 and wire == 2:  # V1 layer wrapping a V0 layer
                inner_name, inner_blobs = read_layer(value, 1, 50)
                name = name or inner_name
                blobs = blobs or inner_blobs
        return name, blobs

    for field, wire, value in iter_fields(buf, 0, len(buf)):
        if wire != 2 or field not in (100, 2):
            continue
        yield read_layer(value, 1, 7) if field == 100 else read_layer(value, 4, 6)


def parse_caffemodel_layers(data: bytes, names: Optional[Iterable[str]] = None) -> dict[str, list[np.ndarray]]:
    """NetParameter bytes -> {layer name: [blob arrays]} for layers that have blobs (new and legacy layouts).

    names: parse only these layers' blobs (the others are skipped unread). Raises WeightFormatError for a
    malformed message, a blob past the bounds of `parse_blob`, or a wanted layer name that occurs twice.
    """
    buf = memoryview(data)
    wanted = None if names is None else set(names)
    layers: dict[str, list[np.ndarray]] = {}
    for name, spans in _layer_spans(buf):
        if not name or not spans or (wanted is not None and name not in wanted):
            continue
        if name in layers and wanted is not None:
            raise WeightFormatError(f"layer {name} occurs twice; refusing an ambiguous file")
        layers[name] = [parse_blob(buf, span) for span in spans]
    return layers


def read_caffemodel_layers(path, names: Optional[Iterable[str]] = None) -> dict[str, list[np.ndarray]]:
    """`parse_caffemodel_layers` of a file; errors name the file. Files over `limits.MAX_LOAD_BYTES` are refused.

    Raises WeightFormatError ("<path>: corrupt or truncated caffemodel (<problem>)") for any malformed input.
    """
    path = os.fspath(path)
    data = _read_bounded(path, "caffemodel")
    try:
        return parse_caffemodel_layers(data, names)
    except WeightFormatError as err:
        raise WeightFormatError(f"{path}: corrupt or truncated caffemodel ({err})") from None


def _read_bounded(path: str, what: str) -> bytes:
    """The whole file, refused unheld when larger than `limits.MAX_LOAD_BYTES` (no AlexNet file comes close)."""
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size > limits.MAX_LOAD_BYTES:
            raise WeightFormatError(
                f"{path}: a {what} of {size} bytes, more than {limits.MAX_LOAD_BYTES} "
                "(emonet_tf.weights.limits.MAX_LOAD_BYTES; bvlc_alexnet.caffemodel is 233 MB)"
            )
        return f.read(size)


def _caffe_blobs(blobs: list[np.ndarray], name: str, path: str) -> tuple[np.ndarray, np.ndarray]:
    if len(blobs) != 2:
        raise WeightFormatError(f"{path}: layer {name} has {len(blobs)} blobs, expected weights and bias")
    return blobs[0], blobs[1].reshape(-1)


def _squeeze_to(arr: np.ndarray, ndim: int) -> np.ndarray:
    """Drops leading 1-sized axes of legacy 4-D blobs (1, 1, out, in) until `ndim` axes remain."""
    while arr.ndim > ndim and arr.shape[0] == 1:
        arr = arr.reshape(arr.shape[1:])
    return arr


def looks_like_caffemodel(path: str) -> bool:
    """A `.caffemodel` file (a protobuf has no magic number); a Caffe `.binaryproto` mean file is refused."""
    if path.endswith(".binaryproto"):
        raise WeightFormatError(f"{path}: a Caffe mean file, not weights; pass it as the mean (--mean)")
    return path.endswith(".caffemodel")


def read_caffemodel(path: str, mean=None) -> WeightSet:
    """A BVLC AlexNet .caffemodel -> WeightSet (RGB conv1, NHWC fc6 rows, 1000-way fc8).

    Raises WeightFormatError naming the file for a file over `limits.MAX_LOAD_BYTES`, a malformed or truncated
    protobuf, a length field past the end of its message, a blob over the bounds of `parse_blob`, a missing or
    duplicated layer; WeightMismatchError for a blob of the wrong shape.
    """
    path = os.fspath(path)
    found = read_caffemodel_layers(path, LAYERS)
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
    """Caffe's ilsvrc_2012_mean.binaryproto (BlobProto 1x3x256x256, BGR) -> (227, 227, 3) RGB centre crop.

    Raises WeightFormatError naming the file for a file over `limits.MAX_LOAD_BYTES` or a malformed blob
    (`parse_blob`), WeightMismatchError for a blob that is not 1x3xHxW with H, W >= 227.
    """
    data = _read_bounded(path, "binaryproto")
    try:
        blob = parse_blob(memoryview(data), (0, len(data)))
    except WeightFormatError as err:
        raise WeightFormatError(f"{path}: corrupt or truncated binaryproto ({err})") from None
    shape = blob.shape[-3:] if blob.ndim >= 3 else blob.shape
    if (
        blob.ndim < 3
        or shape[0] != 3
        or shape[1] < IMAGE_SIZE
        or shape[2] < IMAGE_SIZE
        or blob.size != int(np.prod(shape))
    ):
        raise WeightMismatchError("mean blob", f"(1, 3, H>={IMAGE_SIZE}, W>={IMAGE_SIZE})", blob.shape, path)
    return mapping.mean_from_caffe_blob(blob)


def read_mean(mean) -> tuple[Optional[np.ndarray], str]:
    """A mean given by the user: a path (.binaryproto, img_mean.txt, .npy of numbers) or an array.

    Raises WeightFormatError naming the file for a missing or unknown file, an object .npy or one of more than
    227x227x3 numbers (checked from its header before loading), or any problem of the file's reader.
    """
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
            with open(path, "rb") as f:
                header = _read_npy_header(f, path)
            shape = header["shape"]
            if (
                header["descr"] == "|O"
                or len(shape) > 3
                or not all(type(n) is int and 0 <= n <= 3 * IMAGE_SIZE for n in shape)
                or math.prod(shape) > 3 * IMAGE_SIZE * IMAGE_SIZE
            ):
                raise WeightFormatError(
                    f"{path}: a mean .npy must hold at most {IMAGE_SIZE}x{IMAGE_SIZE}x3 numbers, "
                    f"found descr {header['descr']!r:.20} shape {shape!r:.40}"
                )
            try:
                arr = np.load(path, allow_pickle=False)
            except (ValueError, OSError, EOFError) as err:
                raise WeightFormatError(f"{path}: not a plain numeric .npy ({err})") from None
            return arr, f"mean from {os.path.basename(path)} (RGB, HxWx3 or 3 values)"
        raise WeightFormatError(f"{path}: unknown mean file type; use .binaryproto, img_mean.txt or .npy")
    return np.asarray(mean, np.float32), "mean given by the caller"


def _imagenet_mean(mean) -> tuple[np.ndarray, str]:
    arr, note = read_mean(mean)
    if arr is None:
        return np.asarray(IMAGENET_RGB_MEAN, np.float32), NO_MEAN_NOTE
    return arr, note
