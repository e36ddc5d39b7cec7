"""Reads PyTorch `.pth`/`.pt` files without torch and without running code from the file.

`torch.save` writes a zip (`<name>/data.pkl` plus one `<name>/data/<key>` entry of raw bytes per storage)
or, before PyTorch 1.6 / with `_use_new_zipfile_serialization=False`, the legacy stream (magic number,
protocol, sys_info, the pickle, the storage keys, then each storage as int64 count + raw bytes).
The pickle is run by `safe_pickle.SafeUnpickler`, which resolves only the tensor-rebuild functions, the
storage types and OrderedDict (fresh stand-ins for every load), refuses state set on anything the load did
not create, and checks every claimed length; anything else (e.g. `os.system` through __reduce__) raises
WeightFormatError before it is called. Storages become numpy arrays (dtype, byte order, storage offset,
sizes and strides honoured and bounds-checked, at most `limits.MAX_LOAD_BYTES` per load).
"""

from __future__ import annotations

import collections
import lzma
import math
import os
import struct
import zipfile
import zlib
from typing import Any, Callable

import numpy as np

from emonet_tf.weights import limits, mapping, safe_pickle
from emonet_tf.weights.errors import WeightFormatError
from emonet_tf.weights.registry import read_head
from emonet_tf.weights.weightset import WeightSet

#: torch.save's legacy magic number, pickled as the first object of a legacy file.
LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_PREFIX = b"\x80\x02\x8a\x0a" + LEGACY_MAGIC.to_bytes(10, "little")

_STORAGE_DTYPES = {
    "FloatStorage": "f4",
    "DoubleStorage": "f8",
    "HalfStorage": "f2",
    "BFloat16Storage": "bf16",
    "LongStorage": "i8",
    "IntStorage": "i4",
    "ShortStorage": "i2",
    "CharStorage": "i1",
    "ByteStorage": "u1",
    "BoolStorage": "?",
}
_KEY_CHARS = frozenset("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_-.")
_MAX_NDIM = 32


class _Frozen:
    """Stand-ins are immutable: `__setattr__` after construction raises (a pickle cannot rewrite them)."""

    __slots__ = ()

    def __setattr__(self, name, value):
        raise AttributeError(f"{type(self).__name__} is immutable")

    def __delattr__(self, name):
        raise AttributeError(f"{type(self).__name__} is immutable")


class _StorageType(_Frozen):
    """Stands in for torch.<X>Storage inside one load's pickle; knows only its numpy dtype."""

    __slots__ = ("name", "dtype", "itemsize")

    def __init__(self, name: str, dtype: str):
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "dtype", dtype)
        object.__setattr__(self, "itemsize", 2 if dtype == "bf16" else np.dtype(dtype).itemsize)


class _Storage(_Frozen):
    """A storage referenced by the pickle; its bytes are fetched when tensors are materialized."""

    __slots__ = ("stype", "key", "numel", "offset")

    def __init__(self, stype: _StorageType, key: str, numel: int, offset: int = 0):
        for name, value in (("stype", stype), ("key", key), ("numel", int(numel)), ("offset", int(offset))):
            object.__setattr__(self, name, value)


def _int(value, what: str) -> int:
    if type(value) is not int or value < 0:
        raise WeightFormatError(f"{what} is {value!r:.40}, not a non-negative integer")
    return value


def _int_tuple(value, what: str) -> tuple[int, ...]:
    if type(value) not in (tuple, list) or len(value) > _MAX_NDIM:
        raise WeightFormatError(f"{what} is not a tuple of at most {_MAX_NDIM} integers")
    return tuple(_int(v, what) for v in value)


class _PendingTensor(_Frozen):
    """The arguments of `_rebuild_tensor_v2`, turned into a numpy array once the storages are readable."""

    __slots__ = ("storage", "offset", "size", "stride")

    def __init__(self, storage: _Storage, offset, size, stride):
        if not isinstance(storage, _Storage):
            raise WeightFormatError("a tensor rebuilt from something that is not a storage")
        size, stride = _int_tuple(size, "a tensor size"), _int_tuple(stride, "a tensor stride")
        if len(size) != len(stride):
            raise WeightFormatError(f"a tensor with size {size} and stride {stride} of different lengths")
        if math.prod(size) > limits.MAX_TENSOR_ELEMENTS:
            raise WeightFormatError(
                f"a tensor of size {size} has more than {limits.MAX_TENSOR_ELEMENTS} elements "
                "(emonet_tf.weights.limits.MAX_TENSOR_ELEMENTS)"
            )
        for name, value in (
            ("storage", storage),
            ("offset", _int(offset, "a storage offset")),
            ("size", size),
            ("stride", stride),
        ):
            object.__setattr__(self, name, value)


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None, metadata=None):
    return _PendingTensor(storage, storage_offset, size, stride)


def _rebuild_tensor(storage, storage_offset, size, stride):
    return _PendingTensor(storage, storage_offset, size, stride)


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None, *state):
    if not isinstance(data, _PendingTensor):
        raise WeightFormatError("a parameter rebuilt from something that is not a tensor")
    return data


def _ordered_dict(items=()):
    """collections.OrderedDict() as torch.save pickles it (empty, filled by SETITEMS) or [[k, v], ...] (Python 2)."""
    out = collections.OrderedDict()
    if items:
        if type(items) not in (list, tuple):
            raise WeightFormatError("OrderedDict rebuilt from something that is not a list of pairs")
        for pair in items:
            if type(pair) not in (list, tuple) or len(pair) != 2:
                raise WeightFormatError("OrderedDict rebuilt from something that is not a list of pairs")
            out[safe_pickle.plain_key(pair[0], "OrderedDict")] = pair[1]
    return out


_CALLABLES = (_ordered_dict, _rebuild_tensor_v2, _rebuild_tensor, _rebuild_parameter)


def _load_tables() -> tuple[dict[tuple[str, str], Any], tuple[Any, ...]]:
    """The globals one load may name: fresh storage stand-ins every time (nothing is shared between loads)."""
    allowed: dict[tuple[str, str], Any] = {
        ("collections", "OrderedDict"): _ordered_dict,
        ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
        ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
        ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
        ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
        **{("torch", name): _StorageType(name, dtype) for name, dtype in _STORAGE_DTYPES.items()},
    }
    return allowed, _CALLABLES


_BUILD = {collections.OrderedDict: safe_pickle.discard_dict_state, dict: safe_pickle.discard_dict_state}


def _unpickler(reader: safe_pickle.BoundedReader, path: str, persistent, budget: safe_pickle.Budget):
    allowed, callables = _load_tables()
    return safe_pickle.SafeUnpickler(
        reader, path, allowed, callables, build=_BUILD, persistent_load=persistent, encoding="utf-8", budget=budget
    )


def _storage_array(raw: bytes, stype: _StorageType, numel: int, little_endian: bool, where: str) -> np.ndarray:
    needed = numel * stype.itemsize
    if len(raw) < needed:
        raise WeightFormatError(f"{where}: storage holds {len(raw)} bytes, {needed} expected (truncated file?)")
    order = "<" if little_endian else ">"
    if stype.dtype == "bf16":
        bits = np.frombuffer(raw, np.dtype(order + "u2"), count=numel).astype(np.uint32) << 16
        return bits.view(np.float32)
    dtype = np.dtype(stype.dtype).newbyteorder(order) if np.dtype(stype.dtype).itemsize > 1 else np.dtype(stype.dtype)
    return np.frombuffer(raw, dtype, count=numel)


def _materialize(
    obj: Any, storage_array: Callable[[_Storage], np.ndarray], where: str, budget: safe_pickle.Budget
) -> Any:
    """Replaces every _PendingTensor in dicts/lists/tuples by a native-endian numpy array (bounded walk)."""

    def tensor(t: Any) -> Any:
        if not isinstance(t, _PendingTensor):
            if isinstance(t, (_Storage, _StorageType)):
                raise WeightFormatError(f"{where}: a bare storage where a tensor or value was expected")
            return t
        base = storage_array(t.storage)
        start = t.storage.offset + t.offset
        span = sum((n - 1) * s for n, s in zip(t.size, t.stride)) if all(t.size) else -1
        if start < 0 or (span >= 0 and start + span >= base.size):
            raise WeightFormatError(f"{where}: a tensor reaches outside its storage (corrupt file)")
        budget.charge(math.prod(t.size) * base.itemsize, f"the tensor of size {t.size}")
        if not all(t.size):
            return np.zeros(t.size, base.dtype.newbyteorder("="))
        view = np.lib.stride_tricks.as_strided(
            base[start:], shape=t.size, strides=[s * base.itemsize for s in t.stride], writeable=False
        )
        return np.array(view, dtype=base.dtype.newbyteorder("="))

    return safe_pickle.walk(obj, where, tensor)


def _storage_pid(pid, source: str) -> tuple[_StorageType, str, int, Any]:
    if not (type(pid) is tuple and len(pid) in (5, 6) and pid[0] in ("storage", b"storage")):
        raise WeightFormatError(f"{source}: unexpected persistent id {pid!r:.80} in the pickle")
    stype, key, _location, numel = pid[1], pid[2], pid[3], pid[4]
    if not isinstance(stype, _StorageType):
        raise WeightFormatError(f"{source}: storage of unknown type {stype!r:.80}")
    key = key.decode("ascii", "replace") if isinstance(key, bytes) else key
    if not isinstance(key, str) or not 0 < len(key) <= 64 or not set(key) <= _KEY_CHARS or key.startswith("."):
        raise WeightFormatError(f"{source}: storage key {key!r:.80} is not a plain name")
    numel = _int(numel, f"{source}: the element count of storage {key}")
    if numel * stype.itemsize > limits.MAX_LOAD_BYTES:
        raise WeightFormatError(
            f"{source}: storage {key} claims {numel} elements ({numel * stype.itemsize} bytes), "
            f"more than the {limits.MAX_LOAD_BYTES} bytes one load may read "
            "(emonet_tf.weights.limits.MAX_LOAD_BYTES); refused before reading"
        )
    view = pid[5] if len(pid) > 5 else None
    if view is not None:
        if type(view) is not tuple or len(view) != 3:
            raise WeightFormatError(f"{source}: malformed storage view {view!r:.80}")
        _int(view[1], f"{source}: a storage view offset")
        _int(view[2], f"{source}: a storage view size")
    return stype, key, numel, view


def _register(storages: dict[str, _Storage], stype: _StorageType, key: str, numel: int, source: str) -> _Storage:
    root = storages.get(key)
    if root is None:
        root = storages[key] = _Storage(stype, key, numel)
    elif root.stype.dtype != stype.dtype or root.numel != numel:
        raise WeightFormatError(f"{source}: storage {key} is declared twice with different types or sizes")
    return root


def _check_zip_names(zf: zipfile.ZipFile, path: str) -> str:
    """The one folder all entries share (torch.save's `<name>/`); refuses odd, duplicate or too many names."""
    infos = zf.infolist()
    if len(infos) > limits.MAX_ZIP_ENTRIES:
        raise WeightFormatError(
            f"{path}: a zip of {len(infos)} entries (at most {limits.MAX_ZIP_ENTRIES}, "
            "emonet_tf.weights.limits.MAX_ZIP_ENTRIES)"
        )
    names = [i.filename for i in infos]
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})[:3]
        raise WeightFormatError(f"{path}: the zip holds duplicate entries {dup}; refusing an ambiguous archive")
    for name in names:
        parts = name.split("/")
        if name.startswith("/") or "\\" in name or ".." in parts or ":" in parts[0] or "" in parts[:-1]:
            raise WeightFormatError(
                f"{path}: the zip entry {name[:80]!r} has an absolute, parent (..) or "
                "malformed path; torch.save writes none"
            )
    pkl_names = [n for n in names if n.endswith("/data.pkl") or n == "data.pkl"]
    if len(pkl_names) != 1:
        raise WeightFormatError(f"{path}: not a PyTorch zip checkpoint (no single data.pkl entry)")
    prefix = pkl_names[0][: -len("data.pkl")]
    if prefix.count("/") > 1 or any(not n.startswith(prefix) for n in names):
        raise WeightFormatError(f"{path}: zip entries outside the checkpoint folder {prefix!r}")
    return prefix


#: What zipfile and its decompressors raise on a damaged archive or entry (a bad header, a cut file, an
#: unsupported or corrupt compressed stream); each becomes one WeightFormatError naming the file.
_ZIP_READ_ERRORS = (
    zipfile.BadZipFile,
    OSError,
    EOFError,
    ValueError,
    NotImplementedError,  # zipfile: "That compression method is not supported" (e.g. a method id of 99)
    RuntimeError,
    zlib.error,
    lzma.LZMAError,
)


def _zip_entry(zf: zipfile.ZipFile, name: str, size: int, path: str, what: str) -> bytes:
    """Exactly `size` bytes of an entry whose declared size is checked first (a zip bomb stops at `size`)."""
    try:
        info = zf.getinfo(name)
    except KeyError:
        raise WeightFormatError(f"{path}: {what} entry {name} is missing") from None
    if info.file_size < size:
        raise WeightFormatError(f"{path}: {name} holds {info.file_size} bytes, {size} expected (truncated file?)")
    if info.file_size > size:
        raise WeightFormatError(
            f"{path}: {name} declares {info.file_size} bytes, {size} expected (a storage "
            "larger than its tensors, or a zip bomb); refused before decompressing"
        )
    try:
        with zf.open(info) as f:
            data = f.read(size)
    except _ZIP_READ_ERRORS as err:
        raise WeightFormatError(f"{path}: cannot read {name} ({type(err).__name__}: {err}); truncated file?") from None
    if len(data) != size:
        raise WeightFormatError(f"{path}: {name} ended after {len(data)} of {size} bytes (truncated file?)")
    return data


def _declared_zip_entries(path: str) -> int:
    """The entry count of the zip's end record, read before zipfile builds one object per entry."""
    try:
        with open(path, "rb") as f:
            end = zipfile._EndRecData(f)  # the reader ZipFile itself uses; -1 where this Python lacks it
        return -1 if end is None else int(end[zipfile._ECD_ENTRIES_TOTAL])
    except AttributeError:
        return -1


def _load_zip(path: str, lazy: bool) -> Any:
    declared = _declared_zip_entries(path)
    if declared > limits.MAX_ZIP_ENTRIES:
        raise WeightFormatError(
            f"{path}: the zip declares {declared} entries (at most {limits.MAX_ZIP_ENTRIES}, "
            "emonet_tf.weights.limits.MAX_ZIP_ENTRIES); refused before reading its directory"
        )
    try:
        zf = zipfile.ZipFile(path)
    except _ZIP_READ_ERRORS as err:
        raise WeightFormatError(f"{path}: not a readable zip archive ({err})") from None
    with zf:
        prefix = _check_zip_names(zf, path)
        names = set(zf.namelist())
        little = True
        budget = safe_pickle.Budget(path)
        if prefix + "byteorder" in names:
            order = _zip_entry(
                zf, prefix + "byteorder", min(zf.getinfo(prefix + "byteorder").file_size, 16), path, "byteorder"
            ).strip()
            if order not in (b"little", b"big"):
                raise WeightFormatError(f"{path}: byteorder entry says {order[:16]!r}, not little or big")
            little = order != b"big"
        pkl_info = zf.getinfo(prefix + "data.pkl")
        if pkl_info.file_size > limits.MAX_PICKLE_BYTES:
            raise WeightFormatError(
                f"{path}: data.pkl declares {pkl_info.file_size} bytes, more than "
                f"{limits.MAX_PICKLE_BYTES} (emonet_tf.weights.limits.MAX_PICKLE_BYTES; a "
                "state_dict pickle holds only names and tensor headers)"
            )
        data = _zip_entry(zf, prefix + "data.pkl", pkl_info.file_size, path, "pickle")
        storages: dict[str, _Storage] = {}

        def persistent(pid):
            stype, key, numel, view = _storage_pid(pid, path)
            root = _register(storages, stype, key, numel, path)
            if view is not None:
                raise WeightFormatError(f"{path}: storage views are a legacy-format feature, not in a zip")
            return root

        obj = _unpickler(safe_pickle.BoundedReader.of_bytes(data, path), path, persistent, budget).load()
        if lazy:
            return safe_pickle.walk(obj, path, lambda leaf: leaf)
        cache: dict[str, np.ndarray] = {}

        def storage_array(storage: _Storage) -> np.ndarray:
            if storage.key not in cache:
                entry = f"{prefix}data/{storage.key}"
                size = storage.numel * storage.stype.itemsize
                budget.charge(size, f"storage {storage.key}")
                raw = _zip_entry(zf, entry, size, path, "storage")
                cache[storage.key] = _storage_array(raw, storage.stype, storage.numel, little, f"{path}:{entry}")
            return cache[storage.key]

        return _materialize(obj, storage_array, path, budget)


def _load_legacy(path: str, lazy: bool) -> Any:
    with open(path, "rb") as f:
        reader = safe_pickle.BoundedReader.of_file(f, path)
        budget = safe_pickle.Budget(path)
        storages: dict[str, _Storage] = {}

        def persistent(pid):
            stype, key, numel, view = _storage_pid(pid, path)
            root = _register(storages, stype, key, numel, path)
            if view is not None:
                _view_key, offset, view_size = view
                if offset + view_size > numel:
                    raise WeightFormatError(f"{path}: a view of storage {key} reaches outside it")
                return _Storage(stype, key, view_size, offset=offset)
            return root

        def header(what: str):
            return safe_pickle.SafeUnpickler(reader, path, {}, budget=budget).load()

        magic = header("magic number")
        if magic != LEGACY_MAGIC:
            raise WeightFormatError(f"{path}: not a PyTorch checkpoint (bad magic number)")
        header("protocol version")
        sys_info = header("sys_info")
        little = bool(sys_info.get("little_endian", True)) if isinstance(sys_info, dict) else True
        obj = _unpickler(reader, path, persistent, budget).load()
        structure = safe_pickle.walk(obj, path, lambda leaf: leaf)  # cycles and depth refused before any storage
        if lazy:
            return structure
        keys = header("storage keys")
        if type(keys) not in (list, tuple):
            raise WeightFormatError(f"{path}: the storage key list is a {type(keys).__name__}")
        arrays: dict[str, np.ndarray] = {}
        for key in keys:
            key = key.decode("ascii", "replace") if isinstance(key, bytes) else str(key)
            if key not in storages:
                raise WeightFormatError(f"{path}: storage {key[:64]} is listed but never used")
            if key in arrays:
                raise WeightFormatError(f"{path}: storage {key[:64]} is listed twice")
            stype = storages[key].stype
            (count,) = struct.unpack("<q" if little else ">q", reader.read(8, f"the size of storage {key}"))
            if count != storages[key].numel:
                raise WeightFormatError(
                    f"{path}: storage {key} holds {count} elements, the pickle declared "
                    f"{storages[key].numel} (corrupt or forged file)"
                )
            budget.charge(count * stype.itemsize, f"storage {key}")
            raw = reader.read(count * stype.itemsize, f"storage {key}")
            arrays[key] = _storage_array(raw, stype, count, little, f"{path}: storage {key}")

    def storage_array(storage: _Storage) -> np.ndarray:
        if storage.key not in arrays:
            raise WeightFormatError(f"{path}: storage {storage.key} has no data (truncated file?)")
        return arrays[storage.key]

    return _materialize(obj, storage_array, path, budget)


def is_legacy_torch_file(path: str) -> bool:
    with open(path, "rb") as f:
        return f.read(len(LEGACY_PREFIX)) == LEGACY_PREFIX


def load_torch_file(path: str, lazy: bool = False) -> Any:
    """The object saved with torch.save (usually a state_dict), tensors as numpy arrays.

    lazy=True returns the unpickled structure without reading any storage (for format detection);
    its tensors are placeholders.

    Raises WeightFormatError (message: the file, then the problem) for anything but a well-formed checkpoint:
    a global outside the allow-list (OrderedDict, torch._utils._rebuild_tensor[_v2]/_rebuild_parameter[_with_state],
    torch.<X>Storage), a class-instantiating opcode, state set on an object the load did not create, a zip
    with duplicate, absolute or `..` entry names, a length or element count past the end of the file or past
    `emonet_tf.weights.limits`, a truncated or corrupt file. Each call builds its own stand-ins, so a refused
    file cannot change what a later call returns.
    """
    path = os.fspath(path)
    if zipfile.is_zipfile(path):
        return _load_zip(path, lazy)
    if is_legacy_torch_file(path):
        return _load_legacy(path, lazy)
    raise WeightFormatError(
        f"{path}: neither a PyTorch zip checkpoint nor a legacy torch.save stream "
        "(a truncated zip loses its directory and looks like this too)"
    )


# --------------------------------------------------------------------------------------------------
# The emonet_py_pth and ecco_pth formats: one container, two layouts of the state_dict (weights/mapping.py)

#: Format name -> the layout `mapping.from_torch_state_dict` reads it with.
_FORMAT_LAYOUT = {"emonet_py_pth": "emonet_py", "ecco_pth": "auto"}


def _looks_like_torch(path: str) -> bool:
    head = read_head(path)
    return head.startswith(b"PK\x03\x04") or head.startswith(LEGACY_PREFIX[:4]) or path.endswith((".pth", ".pt"))


def torch_layout(path: str) -> str:
    """The state_dict layout of a torch file (emonet_py, ecco or onnx2torch), read without its storages.

    Raises WeightFormatError naming the file for a refused pickle or a state_dict of no known layout.
    """
    obj = load_torch_file(path, lazy=True)
    return mapping.detect_layout(mapping.unwrap_state_dict(obj, path), path)


def looks_like_emonet_py_pth(path: str) -> bool:
    """A torch zip or legacy stream (or a .pth/.pt file) holding emonet-py's AlexNetBigEmoNet state_dict."""
    return _looks_like_torch(path) and torch_layout(path) == "emonet_py"


def looks_like_ecco_pth(path: str) -> bool:
    """A torch zip or legacy stream (or a .pth/.pt file) holding the ecco lab's (or onnx2torch's) state_dict."""
    return _looks_like_torch(path) and torch_layout(path) != "emonet_py"


def _read_torch_format(path: str, fmt: str) -> WeightSet:
    ws = mapping.from_torch_state_dict(load_torch_file(path), layout=_FORMAT_LAYOUT[fmt], source=path)
    if ws.format != fmt:
        raise WeightFormatError(f"{path}: asked for {fmt} but the file is in the {ws.format} layout")
    return ws


def read_emonet_py_pth(path: str) -> WeightSet:
    """emonet-py's emonet.pth -> WeightSet (Keras layout)."""
    return _read_torch_format(path, "emonet_py_pth")


def read_ecco_pth(path: str) -> WeightSet:
    """The ecco lab's EmoNetPythonic.pt (or a raw onnx2torch state_dict) -> WeightSet (Keras layout)."""
    return _read_torch_format(path, "ecco_pth")
