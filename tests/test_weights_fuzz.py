"""Property-based fuzzing of every weight reader: mutated valid files load the same as a trusted reader or are refused.

Valid files are written in the published layouts (torch.save zip and legacy, Python 2 and numpy .npy, Caffe
protobuf new and V1, MATLAB writematrix text plain and bz2), then mutated by hypothesis (byte flips, inserts,
deletions, copies, truncation). For each mutant the library must either return the same thing an independent
reader gets from the same bytes (torch.load(weights_only=True); the C pickle module with numpy-only globals; the
protobuf runtime with caffe.proto's messages; numpy.loadtxt), or the unmutated original, or raise its own
WeightFormatError. Any other exception fails, so does a mutant that takes longer than the deadline or whose load
traces more than PEAK_BOUND bytes. The default run is short; `-m slow` runs many more examples.
"""

from __future__ import annotations

import bz2
import collections
import io
import os
import pickle
import tempfile
import tracemalloc
import zipfile

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import reference as R
from emonet_tf.weights import WeightFormatError
from emonet_tf.weights.bvlc import load_npy_pickle, read_caffemodel_layers
from emonet_tf.weights.matlab_text import read_matrix
from emonet_tf.weights.torch_pickle import load_torch_file

#: Peak traced memory one mutant may cost: the valid files are a few KB, so any real growth is a bug.
PEAK_BOUND = 16 * 2**20
TEXT_SHAPE = (3, 5)


# --------------------------------------------------------------------------------------------------
# Valid files


def _small_state_dict(torch):
    rng = np.random.default_rng(3)
    sd = collections.OrderedDict()
    sd["conv1.weight"] = torch.from_numpy(rng.standard_normal((2, 3, 2, 2)).astype(np.float32))
    sd["conv1.bias"] = torch.full((2,), 0.26)
    sd["fc3.weight"] = torch.from_numpy(rng.standard_normal((4, 3)).astype(np.float64)).t()  # strided view
    sd["steps"] = torch.arange(3)
    return sd


def _ref():
    rng = np.random.default_rng(5)
    return {
        "conv1": (rng.standard_normal((2, 3, 2, 2)).astype(np.float32), np.arange(2, dtype=np.float32)),
        "fc8": (rng.standard_normal((3, 4)).astype(np.float32), np.full(3, 0.26, np.float32)),
    }


def _valid_files() -> dict[str, bytes]:
    torch = pytest.importorskip("torch")
    out = {}
    for name, zip_format in (("pth_zip", True), ("pth_legacy", False)):
        buf = io.BytesIO()
        torch.save(_small_state_dict(torch), buf, _use_new_zipfile_serialization=zip_format)
        out[name] = buf.getvalue()
    ref = _ref()
    layers = {
        "conv1": [np.ascontiguousarray(ref["conv1"][0].transpose(2, 3, 1, 0)), ref["conv1"][1]],
        "fc8": [np.ascontiguousarray(ref["fc8"][0].T), ref["fc8"][1]],
    }
    with tempfile.TemporaryDirectory() as d:
        for name, py2 in (("npy_python2", True), ("npy_numpy", False)):
            path = R.write_bvlc_npy(layers, os.path.join(d, "f.npy"), python2=py2)
            with open(path, "rb") as f:
                out[name] = f.read()
    out["caffemodel"] = R.caffemodel_bytes(ref)
    out["caffemodel_v1"] = R.caffemodel_bytes(ref, legacy=True)
    text = io.BytesIO()
    np.savetxt(text, np.random.default_rng(7).standard_normal(TEXT_SHAPE), fmt="%.9g", delimiter=",")
    out["text"] = text.getvalue()
    out["text_bz2"] = bz2.compress(text.getvalue())
    return out


SUFFIX = {
    "pth_zip": ".pth",
    "pth_legacy": ".pth",
    "npy_python2": ".npy",
    "npy_numpy": ".npy",
    "caffemodel": ".caffemodel",
    "caffemodel_v1": ".caffemodel",
    "text": ".txt",
    "text_bz2": ".txt.bz2",
}


# --------------------------------------------------------------------------------------------------
# The library's readers and the independent ones


def _ours(kind: str, path: str):
    if kind.startswith("pth"):
        return load_torch_file(path)
    if kind.startswith("npy"):
        return load_npy_pickle(path)
    if kind.startswith("caffemodel"):
        return read_caffemodel_layers(path)
    return read_matrix(path, *TEXT_SHAPE)


class _NumpyOnly(pickle.Unpickler):
    """The standard library's 'restricting globals' recipe: the C unpickler, numpy's constructors only."""

    _names = {
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy.core.numeric", "_frombuffer"),
        ("numpy._core.numeric", "_frombuffer"),
    }

    def find_class(self, module, name):
        if (module, name) not in self._names:
            raise pickle.UnpicklingError(f"{module}.{name}")
        import codecs
        import importlib

        if module == "_codecs":
            return codecs.encode
        return getattr(importlib.import_module(module.replace("numpy.core", "numpy._core")), name)


def _caffe_messages():
    """NetParameter / V1LayerParameter / LayerParameter / BlobProto / BlobShape from caffe.proto's field numbers."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    F = descriptor_pb2.FieldDescriptorProto
    fdp = descriptor_pb2.FileDescriptorProto(
        name="caffe_fuzz_oracle.proto", package="caffe_fuzz_oracle", syntax="proto2"
    )

    def message(name, fields):
        m = fdp.message_type.add(name=name)
        for fname, number, ftype, label, type_name, packed in fields:
            f = m.field.add(name=fname, number=number, type=ftype, label=label)
            if type_name:
                f.type_name = f".caffe_fuzz_oracle.{type_name}"
            if packed:
                f.options.packed = True

    opt, rep = F.LABEL_OPTIONAL, F.LABEL_REPEATED
    message("BlobShape", [("dim", 1, F.TYPE_INT64, rep, None, True)])
    message(
        "BlobProto",
        [
            ("shape", 7, F.TYPE_MESSAGE, opt, "BlobShape", False),
            ("data", 5, F.TYPE_FLOAT, rep, None, True),
            ("double_data", 8, F.TYPE_DOUBLE, rep, None, True),
            ("num", 1, F.TYPE_INT32, opt, None, False),
            ("channels", 2, F.TYPE_INT32, opt, None, False),
            ("height", 3, F.TYPE_INT32, opt, None, False),
            ("width", 4, F.TYPE_INT32, opt, None, False),
        ],
    )
    message(
        "LayerParameter",
        [("name", 1, F.TYPE_BYTES, opt, None, False), ("blobs", 7, F.TYPE_MESSAGE, rep, "BlobProto", False)],
    )
    message(
        "V0LayerParameter",
        [("name", 1, F.TYPE_BYTES, opt, None, False), ("blobs", 50, F.TYPE_MESSAGE, rep, "BlobProto", False)],
    )
    message(
        "V1LayerParameter",
        [
            ("name", 4, F.TYPE_BYTES, opt, None, False),
            ("blobs", 6, F.TYPE_MESSAGE, rep, "BlobProto", False),
            ("layer", 1, F.TYPE_MESSAGE, opt, "V0LayerParameter", False),
        ],
    )
    message(
        "NetParameter",
        [
            ("layer", 100, F.TYPE_MESSAGE, rep, "LayerParameter", False),
            ("layers", 2, F.TYPE_MESSAGE, rep, "V1LayerParameter", False),
        ],
    )
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("caffe_fuzz_oracle.NetParameter"))


def _caffe_blob(blob) -> np.ndarray:
    data = np.concatenate(
        [np.asarray(blob.data, np.float32), np.asarray(blob.double_data, np.float64).astype(np.float32)]
    )
    if len(blob.shape.dim):
        shape = tuple(blob.shape.dim)
    else:
        legacy = (blob.num, blob.channels, blob.height, blob.width)
        shape = legacy if any(legacy) else ()
    return data.reshape(shape)


def _theirs(kind: str, path: str, net_class):
    if kind.startswith("pth"):
        import torch

        loaded = torch.load(path, weights_only=True)
        return collections.OrderedDict((k, v.numpy()) for k, v in loaded.items())
    if kind.startswith("npy"):
        with open(path, "rb") as f:
            version = np.lib.format.read_magic(f)
            (np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0)(f)
            obj = _NumpyOnly(f, encoding="latin1").load()
        return obj.reshape(()).item() if isinstance(obj, np.ndarray) and obj.dtype == object else obj
    if kind.startswith("caffemodel"):
        with open(path, "rb") as f:
            net = net_class.FromString(f.read())
        out = {}
        for layer in net.layer:
            if layer.name and len(layer.blobs):
                out[layer.name.decode("utf-8", "replace")] = [_caffe_blob(b) for b in layer.blobs]
        for layer in net.layers:
            name = layer.name or layer.layer.name
            blobs = layer.blobs if len(layer.blobs) else layer.layer.blobs
            if name and len(blobs):
                out[name.decode("utf-8", "replace")] = [_caffe_blob(b) for b in blobs]
        return out
    return np.loadtxt(path, delimiter=",", dtype=np.float64, ndmin=2)


def _same(a, b) -> bool:
    if isinstance(a, dict) or isinstance(b, dict):
        return (
            isinstance(a, dict)
            and isinstance(b, dict)
            and list(map(str, a)) == list(map(str, b))
            and all(_same(x, y) for x, y in zip(a.values(), b.values()))
        )
    if isinstance(a, (list, tuple)) or isinstance(b, (list, tuple)):
        return (
            isinstance(a, (list, tuple))
            and isinstance(b, (list, tuple))
            and len(a) == len(b)
            and all(_same(x, y) for x, y in zip(a, b))
        )
    a, b = np.asarray(a), np.asarray(b)
    if a.dtype == object or b.dtype == object:
        return a.shape == b.shape and all(_same(x, y) for x, y in zip(a.reshape(-1), b.reshape(-1)))
    return a.shape == b.shape and a.dtype.kind == b.dtype.kind and np.array_equal(a, b, equal_nan=True)


# --------------------------------------------------------------------------------------------------
# Mutations


@st.composite
def mutants(draw, valid: dict[str, bytes]):
    kind = draw(st.sampled_from(sorted(valid)))
    data = bytearray(valid[kind])
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "set", "insert", "delete", "copy", "truncate"]))
        pos = draw(st.integers(0, max(len(data) - 1, 0)))
        if op == "flip" and data:
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "set" and data:
            data[pos] = draw(st.sampled_from([0x00, 0x7F, 0x80, 0xFF, draw(st.integers(0, 255))]))
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=8))
        elif op == "delete":
            del data[pos : pos + draw(st.integers(1, 8))]
        elif op == "copy":
            n = draw(st.integers(1, 64))
            data[draw(st.integers(0, len(data))) : 0] = data[pos : pos + n]
        elif op == "truncate":
            del data[pos:]
    return kind, bytes(data)


@pytest.fixture(scope="module")
def valid():
    return _valid_files()


@pytest.fixture(scope="module")
def net_class():
    pytest.importorskip("google.protobuf")
    return _caffe_messages()


def _check(kind: str, data: bytes, original, net_class, folder: str) -> str:
    path = os.path.join(folder, "mutant" + SUFFIX[kind])
    with open(path, "wb") as f:
        f.write(data)
    tracemalloc.start()
    try:
        try:
            ours = _ours(kind, path)
        except WeightFormatError as err:
            assert str(err).startswith(path), str(err)
            return "refused"
        finally:
            _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < PEAK_BOUND, f"{kind}: a mutant of {len(data)} bytes traced {peak} bytes"
    if _same(ours, original):
        return "original"
    try:
        theirs = _theirs(kind, path, net_class)
    except Exception as err:  # noqa: BLE001 - the trusted reader refused a file ours accepted with other values
        pytest.fail(
            f"{kind}: the library loaded values differing from the original, and the independent reader "
            f"refused the file ({type(err).__name__}: {err})"
        )
    assert _same(ours, theirs), f"{kind}: the library and the independent reader disagree on a mutant"
    return "same as the independent reader"


def _run(valid, net_class, tmp_path, max_examples: int):
    originals = {}
    for kind, data in valid.items():  # the valid files themselves: both readers agree
        path = str(tmp_path / ("valid" + SUFFIX[kind]))
        with open(path, "wb") as f:
            f.write(data)
        originals[kind] = _ours(kind, path)
        assert _same(originals[kind], _theirs(kind, path, net_class)), kind
    outcomes = collections.Counter()

    @settings(
        max_examples=max_examples,
        deadline=5000,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(mutants(valid))
    def prop(case):
        kind, data = case
        outcomes[(kind, _check(kind, data, originals[kind], net_class, str(tmp_path)))] += 1

    prop()
    print(sorted(outcomes.items()))
    return outcomes


def test_fuzz_every_format_short(valid, net_class, tmp_path):
    outcomes = _run(valid, net_class, tmp_path, max_examples=200)
    assert {kind for kind, _ in outcomes} == set(valid)  # every format was mutated
    assert any(result == "refused" for _, result in outcomes)


@pytest.mark.slow
def test_fuzz_every_format_long(valid, net_class, tmp_path):
    outcomes = _run(valid, net_class, tmp_path, max_examples=5000)
    assert {kind for kind, _ in outcomes} == set(valid)


# --------------------------------------------------------------------------------------------------
# Model level (slow): a full-size emonet-py emonet.pth through read_weights. Mutations hit the structure (the
# pickle and the zip directory, or the legacy header and pickle), where a bug would load a wrong model.


def _weightsets_equal(a, b) -> bool:
    return list(a.layers) == list(b.layers) and all(
        np.array_equal(a.layers[n][0], b.layers[n][0]) and np.array_equal(a.layers[n][1], b.layers[n][1])
        for n in a.layers
    )


@pytest.mark.slow
@pytest.mark.parametrize("zip_format", [True, False], ids=["zip", "legacy"])
def test_fuzz_full_emonet_pth_through_read_weights(tmp_path, zip_format):
    torch = pytest.importorskip("torch")
    alexnet_big = pytest.importorskip("emonet_py.alexnet_big")
    from emonet_tf.weights import from_torch_state_dict, read_weights

    model = alexnet_big.AlexNetBigEmoNet()
    src = str(tmp_path / "emonet.pth")
    torch.save(model.state_dict(), src, _use_new_zipfile_serialization=zip_format)
    data = open(src, "rb").read()
    original = read_weights(src)
    if zip_format:
        with zipfile.ZipFile(src) as zf:
            info = zf.getinfo([n for n in zf.namelist() if n.endswith("data.pkl")][0])
        regions = [(info.header_offset, info.header_offset + 80 + info.compress_size), (len(data) - 2048, len(data))]
    else:
        regions = [(0, 2048)]
    outcomes = collections.Counter()
    path = str(tmp_path / "mutant.pth")

    @settings(
        max_examples=60,
        deadline=60000,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(
        st.lists(
            st.tuples(st.sampled_from(regions), st.integers(0, 10**6), st.integers(1, 255)), min_size=1, max_size=3
        )
    )
    def prop(flips):
        mutant = bytearray(data)
        for (start, end), offset, xor in flips:
            mutant[start + offset % (end - start)] ^= xor
        with open(path, "wb") as f:
            f.write(mutant)
        try:
            ours = read_weights(path)
        except WeightFormatError as err:
            assert str(err).startswith(path), str(err)
            outcomes["refused"] += 1
            return
        if _weightsets_equal(ours, original):
            outcomes["original"] += 1
            return
        theirs = from_torch_state_dict(torch.load(path, weights_only=True), source=path)
        assert _weightsets_equal(ours, theirs)
        outcomes["same as torch.load"] += 1

    prop()
    print(dict(outcomes))
