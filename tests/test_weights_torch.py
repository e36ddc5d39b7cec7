"""The restricted PyTorch checkpoint reader: same arrays as torch.load(weights_only=True), no code execution."""

from __future__ import annotations

import collections
import io
import os
import pickle
import zipfile

import numpy as np
import pytest

from emonet_tf.weights import WeightFormatError, read_weights
from emonet_tf.weights.torch_pickle import load_torch_file


class _Global:
    """Pickles as a bare GLOBAL opcode, so a test can reference torch/os names without importing them."""

    def __init__(self, module: str, name: str):
        self.module, self.name = module, name

    def __call__(self, *args):
        raise AssertionError("only pickled, never called")


class _Call:
    def __init__(self, func: _Global, args: tuple):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


class _Storage:
    def __init__(self, key: str, numel: int):
        self.key, self.numel = key, numel


class _HandPickler(pickle._Pickler):
    dispatch = pickle._Pickler.dispatch.copy()

    def _save_global_obj(self, obj):
        self.write(pickle.GLOBAL + f"{obj.module}\n{obj.name}\n".encode())

    dispatch[_Global] = _save_global_obj

    def persistent_id(self, obj):
        if isinstance(obj, _Storage):
            return ("storage", _Global("torch", "FloatStorage"), obj.key, "cpu", obj.numel)
        return None


def _hand_made_checkpoint(path, obj, storages: dict[str, bytes]) -> None:
    """A torch.save-style zip written without torch: archive/data.pkl plus archive/data/<key> entries."""
    buf = io.BytesIO()
    _HandPickler(buf, protocol=2).dump(obj)
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("archive/data.pkl", buf.getvalue())
        zf.writestr("archive/byteorder", "little")
        for key, data in storages.items():
            zf.writestr(f"archive/data/{key}", data)


def _tensor(key, numel, offset, size, stride):
    return _Call(
        _Global("torch._utils", "_rebuild_tensor_v2"),
        (_Storage(key, numel), offset, size, stride, False, collections.OrderedDict()),
    )


def test_hand_made_zip_with_offset_and_strides_is_read_without_torch(tmp_path):
    data = np.arange(12, dtype="<f4")
    path = tmp_path / "hand.pth"
    _hand_made_checkpoint(path, collections.OrderedDict(t=_tensor("0", 12, 2, (3, 2), (1, 4))), {"0": data.tobytes()})
    t = load_torch_file(path)["t"]
    np.testing.assert_array_equal(t, np.lib.stride_tricks.as_strided(data[2:], (3, 2), (4, 16)))


def test_tensor_reaching_outside_its_storage_is_refused(tmp_path):
    path = tmp_path / "oob.pth"
    _hand_made_checkpoint(path, {"t": _tensor("0", 4, 0, (100,), (1,))}, {"0": np.zeros(4, "<f4").tobytes()})
    with pytest.raises(WeightFormatError, match="reaches outside its storage"):
        load_torch_file(path)


def test_storage_shorter_than_declared_is_refused(tmp_path):
    path = tmp_path / "short.pth"
    _hand_made_checkpoint(path, {"t": _tensor("0", 40, 0, (40,), (1,))}, {"0": np.zeros(4, "<f4").tobytes()})
    with pytest.raises(WeightFormatError, match="truncated file"):
        load_torch_file(path)


def test_pickle_that_runs_code_is_refused_and_runs_nothing(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    _hand_made_checkpoint(path, {"conv1.weight": _Call(_Global("os", "system"), (f"touch {marker}",))}, {})
    with pytest.raises(WeightFormatError, match=r"evil\.pth: refusing to load: .*os\.system"):
        read_weights(path)
    assert not marker.exists()


def test_not_a_checkpoint(tmp_path):
    path = tmp_path / "junk.pth"
    path.write_bytes(b"\x00" * 64)
    with pytest.raises(WeightFormatError, match=r"junk\.pth: neither a PyTorch zip checkpoint"):
        read_weights(path)


# ---- against torch itself -------------------------------------------------------------------------


def _varied_state_dict(torch):
    base = torch.arange(24, dtype=torch.float64).reshape(4, 6)
    sd = collections.OrderedDict()
    sd["conv.weight"] = torch.randn(8, 3, 5, 5)
    sd["view"] = base.t()[1:]  # non-contiguous, storage offset
    sd["shared"] = base  # same storage as "view"
    sd["half"] = torch.randn(7).half()
    sd["bf16"] = torch.randn(7).bfloat16()
    sd["long"] = torch.arange(5)
    sd["mask"] = torch.tensor([True, False, True])
    sd["scalar"] = torch.tensor(3.5)
    sd["empty"] = torch.zeros(0, 3)
    sd["param"] = torch.nn.Parameter(torch.randn(2, 2))
    return sd


@pytest.mark.parametrize("zip_format", [True, False], ids=["zip", "legacy"])
def test_reader_matches_torch_load_weights_only(tmp_path, zip_format):
    torch = pytest.importorskip("torch")
    sd = _varied_state_dict(torch)
    path = tmp_path / "varied.pt"
    torch.save(sd, path, _use_new_zipfile_serialization=zip_format)
    expected = torch.load(path, weights_only=True)
    ours = load_torch_file(path)
    assert list(ours) == list(expected)
    for key, tensor in expected.items():
        ref = tensor.detach().float().numpy() if tensor.dtype == torch.bfloat16 else tensor.detach().numpy()
        assert ours[key].shape == tuple(tensor.shape), key
        np.testing.assert_array_equal(ours[key], ref, err_msg=key)
        if tensor.dtype != torch.bfloat16:
            assert ours[key].dtype == ref.dtype, key


@pytest.mark.parametrize("zip_format", [True, False], ids=["zip", "legacy"])
def test_torch_saved_object_that_runs_code_is_refused(tmp_path, zip_format):
    torch = pytest.importorskip("torch")
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return os.system, (f"touch {marker}",)

    path = tmp_path / "evil.pth"
    torch.save({"conv1.weight": torch.zeros(1), "x": Evil()}, path, _use_new_zipfile_serialization=zip_format)
    with pytest.raises(WeightFormatError, match=r"refusing to load: .*(posix|os)\.system"):
        load_torch_file(path)
    assert not marker.exists()


def test_truncated_zip_is_reported(tmp_path):
    torch = pytest.importorskip("torch")
    path = tmp_path / "cut.pth"
    torch.save({"w": torch.randn(1000)}, path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(WeightFormatError, match=r"cut\.pth"):
        read_weights(path)
