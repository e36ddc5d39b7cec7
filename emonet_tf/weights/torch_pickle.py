"""Reads PyTorch `.pth`/`.pt` files without torch and without running code from the file.

`torch.save` writes a zip (`<name>/data.pkl` plus one `<name>/data/<key>` entry of raw bytes per storage)
or, before PyTorch 1.6 / with `_use_new_zipfile_serialization=False`, the legacy stream (magic number,
protocol, sys_info, the pickle, the storage keys, then each storage as int64 count + raw bytes).
The pickle is read by an Unpickler whose `find_class` allows only the tensor-rebuild functions, the
storage types and OrderedDict; anything else (e.g. `os.system` through __reduce__) raises
WeightFormatError before it is called. Storages become numpy arrays (dtype, byte order, storage offset,
sizes and strides honoured and bounds-checked).
"""
from __future__ import annotations

import collections
import io
import os
import pickle
import struct
import zipfile
from typing import Any, Callable

import numpy as np

from emonet_tf.weights.errors import WeightFormatError

#: torch.save's legacy magic number, pickled as the first object of a legacy file.
LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_PREFIX = b"\x80\x02\x8a\x0a" + LEGACY_MAGIC.to_bytes(10, "little")

_STORAGE_DTYPES = {
    "FloatStorage": "f4", "DoubleStorage": "f8", "HalfStorage": "f2", "BFloat16Storage": "bf16",
    "LongStorage": "i8", "IntStorage": "i4", "ShortStorage": "i2", "CharStorage": "i1", "ByteStorage": "u1",
    "BoolStorage": "?",
}


class _StorageType:
    """Stands in for torch.<X>Storage classes inside the pickle; knows only its numpy dtype."""

    def __init__(self, name: str, dtype: str):
        self.name, self.dtype = name, dtype

    @property
    def itemsize(self) -> int:
        return 2 if self.dtype == "bf16" else np.dtype(self.dtype).itemsize


class _Storage:
    """A storage referenced by the pickle; its bytes are fetched when tensors are materialized."""

    def __init__(self, stype: _StorageType, key: str, numel: int, offset: int = 0):
        self.stype, self.key, self.numel, self.offset = stype, key, int(numel), int(offset)


class _PendingTensor:
    """The arguments of `_rebuild_tensor_v2`, turned into a numpy array once the storages are readable."""

    def __init__(self, storage: _Storage, offset: int, size, stride):
        if not isinstance(storage, _Storage):
            raise pickle.UnpicklingError("tensor rebuilt from something that is not a storage")
        self.storage, self.offset = storage, int(offset)
        self.size, self.stride = tuple(int(s) for s in size), tuple(int(s) for s in stride)


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None,
                       metadata=None):
    return _PendingTensor(storage, storage_offset, size, stride)


def _rebuild_tensor(storage, storage_offset, size, stride):
    return _PendingTensor(storage, storage_offset, size, stride)


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None, *state):
    return data


_ALLOWED: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    **{("torch", name): _StorageType(name, dtype) for name, dtype in _STORAGE_DTYPES.items()},
}


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file, source: str, persistent: Callable[[Any], Any]):
        super().__init__(file, encoding="utf-8")
        self._source, self._persistent = source, persistent

    def find_class(self, module: str, name: str):
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise WeightFormatError(
                f"{self._source}: refusing to load: the pickle references {module}.{name}, which is not a "
                "tensor, storage or container (such a global can run code on load); nothing was loaded") from None

    def persistent_load(self, pid):
        return self._persistent(pid)


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


def _materialize(obj: Any, storage_array: Callable[[_Storage], np.ndarray], where: str) -> Any:
    """Replaces every _PendingTensor in dicts/lists/tuples by a native-endian numpy array."""
    if isinstance(obj, _PendingTensor):
        base = storage_array(obj.storage)
        start = obj.storage.offset + obj.offset
        span = sum((n - 1) * s for n, s in zip(obj.size, obj.stride)) if all(obj.size) else -1
        if start < 0 or any(s < 0 for s in obj.stride) or (span >= 0 and start + span >= base.size):
            raise WeightFormatError(f"{where}: a tensor reaches outside its storage (corrupt file)")
        if not all(obj.size):
            return np.zeros(obj.size, base.dtype.newbyteorder("="))
        view = np.lib.stride_tricks.as_strided(base[start:], shape=obj.size,
                                               strides=[s * base.itemsize for s in obj.stride], writeable=False)
        return np.array(view, dtype=base.dtype.newbyteorder("="))
    if isinstance(obj, dict):
        out = type(obj)() if isinstance(obj, collections.OrderedDict) else {}
        for k, v in obj.items():
            out[k] = _materialize(v, storage_array, where)
        return out
    if isinstance(obj, (list, tuple)):
        return type(obj)(_materialize(v, storage_array, where) for v in obj)
    return obj


def _storage_pid(pid, source: str) -> tuple[_StorageType, str, int, Any]:
    if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] in ("storage", b"storage")):
        raise WeightFormatError(f"{source}: unexpected persistent id {pid!r:.80} in the pickle")
    stype, key, _location, numel = pid[1], pid[2], pid[3], pid[4]
    if not isinstance(stype, _StorageType):
        raise WeightFormatError(f"{source}: storage of unknown type {stype!r:.80}")
    key = key.decode("ascii") if isinstance(key, bytes) else str(key)
    return stype, key, int(numel), pid[5] if len(pid) > 5 else None


def _load_zip(path: str, lazy: bool) -> Any:
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as err:
        raise WeightFormatError(f"{path}: not a readable zip archive ({err})") from None
    with zf:
        pkl_names = [n for n in zf.namelist() if n.endswith("/data.pkl") or n == "data.pkl"]
        if len(pkl_names) != 1:
            raise WeightFormatError(f"{path}: not a PyTorch zip checkpoint (no single data.pkl entry)")
        prefix = pkl_names[0][: -len("data.pkl")]
        little = True
        if prefix + "byteorder" in zf.namelist():
            little = zf.read(prefix + "byteorder").strip() != b"big"
        storages: dict[str, _Storage] = {}

        def persistent(pid):
            stype, key, numel, _ = _storage_pid(pid, path)
            storages.setdefault(key, _Storage(stype, key, numel))
            return storages[key]

        try:
            data = zf.read(pkl_names[0])
            obj = _RestrictedUnpickler(io.BytesIO(data), path, persistent).load()
        except WeightFormatError:
            raise
        except (zipfile.BadZipFile, OSError, EOFError, pickle.UnpicklingError, ValueError, TypeError,
                AttributeError, IndexError, KeyError, struct.error, UnicodeDecodeError) as err:
            raise WeightFormatError(f"{path}: corrupt PyTorch checkpoint ({type(err).__name__}: {err})") from None
        if lazy:
            return obj
        cache: dict[str, np.ndarray] = {}

        def storage_array(storage: _Storage) -> np.ndarray:
            if storage.key not in cache:
                entry = f"{prefix}data/{storage.key}"
                try:
                    raw = zf.read(entry)
                except KeyError:
                    raise WeightFormatError(f"{path}: storage entry {entry} is missing") from None
                except (zipfile.BadZipFile, OSError, EOFError, ValueError) as err:
                    raise WeightFormatError(f"{path}: cannot read {entry} ({err}); truncated file?") from None
                cache[storage.key] = _storage_array(raw, storage.stype, storage.numel, little, f"{path}:{entry}")
            return cache[storage.key]

        return _materialize(obj, storage_array, path)


def _load_legacy(path: str, lazy: bool) -> Any:
    with open(path, "rb") as f:
        storages: dict[str, _Storage] = {}

        def persistent(pid):
            stype, key, numel, view = _storage_pid(pid, path)
            root = storages.setdefault(key, _Storage(stype, key, numel))
            if view is not None:
                _view_key, offset, view_size = view
                return _Storage(stype, key, int(view_size), offset=int(offset))
            return root

        def no_persistent(pid):
            raise WeightFormatError(f"{path}: unexpected persistent id in the file header")

        try:
            magic = _RestrictedUnpickler(f, path, no_persistent).load()
            if magic != LEGACY_MAGIC:
                raise WeightFormatError(f"{path}: not a PyTorch checkpoint (bad magic number)")
            _RestrictedUnpickler(f, path, no_persistent).load()  # protocol version
            sys_info = _RestrictedUnpickler(f, path, no_persistent).load()
            little = bool(sys_info.get("little_endian", True)) if isinstance(sys_info, dict) else True
            obj = _RestrictedUnpickler(f, path, persistent).load()
            if lazy:
                return obj
            keys = _RestrictedUnpickler(f, path, no_persistent).load()
            arrays: dict[str, np.ndarray] = {}
            for key in keys:
                key = key.decode("ascii") if isinstance(key, bytes) else str(key)
                if key not in storages:
                    raise WeightFormatError(f"{path}: storage {key} is listed but never used")
                stype = storages[key].stype
                header = f.read(8)
                if len(header) != 8:
                    raise WeightFormatError(f"{path}: truncated before storage {key}")
                (count,) = struct.unpack("<q" if little else ">q", header)
                raw = f.read(count * stype.itemsize)
                arrays[key] = _storage_array(raw, stype, count, little, f"{path}: storage {key}")
        except WeightFormatError:
            raise
        except (OSError, EOFError, pickle.UnpicklingError, ValueError, TypeError, AttributeError, IndexError,
                KeyError, struct.error, UnicodeDecodeError) as err:
            raise WeightFormatError(f"{path}: corrupt legacy PyTorch checkpoint ({type(err).__name__}: {err})") \
                from None

    def storage_array(storage: _Storage) -> np.ndarray:
        if storage.key not in arrays:
            raise WeightFormatError(f"{path}: storage {storage.key} has no data (truncated file?)")
        return arrays[storage.key]

    return _materialize(obj, storage_array, path)


def is_legacy_torch_file(path: str) -> bool:
    with open(path, "rb") as f:
        return f.read(len(LEGACY_PREFIX)) == LEGACY_PREFIX


def load_torch_file(path: str, lazy: bool = False) -> Any:
    """The object saved with torch.save (usually a state_dict), tensors as numpy arrays.

    lazy=True returns the unpickled structure without reading any storage (for format detection);
    its tensors are placeholders.
    """
    path = os.fspath(path)
    if zipfile.is_zipfile(path):
        return _load_zip(path, lazy)
    if is_legacy_torch_file(path):
        return _load_legacy(path, lazy)
    raise WeightFormatError(f"{path}: neither a PyTorch zip checkpoint nor a legacy torch.save stream "
                            "(a truncated zip loses its directory and looks like this too)")
