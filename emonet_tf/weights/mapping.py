"""Every weight layout EmoNet and the ImageNet AlexNet were published in, mapped to Keras (the one table).

Keras layout (what `WeightSet.layers` holds; `emonet_tf.backbone.WEIGHT_SHAPES`):
conv kernels (kh, kw, cin/groups, cout), Dense kernels (in, out), fc6 rows in NHWC flatten order
(h*6 + w)*256 + c over pool5, the mean image (227, 227, 3) RGB. See docs/model.md (layers, flatten
order, mean image) and docs/weights.md (where each layout comes from).

========  ===============================  ==============================  ===============================  =========================  ===============================
Keras     matlab_text (folder)             emonet_py_pth                   ecco_pth (raw: onnx2torch)       bvlc_npy (caffe-tensorflow) caffemodel (BVLC, protobuf)
========  ===============================  ==============================  ===============================  =========================  ===============================
conv1-5   ``convN.weights.txt[.bz2]``:     ``convN.weight`` [cout, cin/g,  ``conv_{N-1}.0.weight``          ``convN`` [0] (kh, kw,     ``convN`` blob 0 [cout, cin/g,
kernel    line h = the (kw, cin, cout)     kh, kw] -> transpose(2,3,1,0)   (raw: ``Conv_{N-1}.weight``),    cin/g, cout) as is;        kh, kw] -> transpose(2,3,1,0);
          block, column-major (kw                                          same as emonet_py                conv1: BGR -> RGB flip     conv1: BGR -> RGB flip
          fastest): reshape(kh, cout,                                                                       of the cin axis            of the cin axis
          cin, kw).transpose(0,3,2,1)
conv bias ``convN.bias.txt``: one line     ``convN.bias``                  ``conv_{N-1}.0.bias``            ``convN`` [1]              blob 1
fc6       ``fc1.weights.txt``: 4096 lines  ``fc1.weight`` [4096, 9216],    ``conv_5.0.weight`` [4096, 256,  ``fc6`` [0] (9216, 4096),  ``fc6`` blob 0 [4096, 9216],
kernel    x 9216, column h + 6w + 36c      same column order (the port     6, 6] = [o, c, h, w] ->          rows already NHWC (h, w,   column c*36 + h*6 + w (Caffe
          (MATLAB X(:) of h x w x c):      permutes NCHW -> NCWH before    transpose(2,3,1,0).reshape       c): caffe-tensorflow       C-order CHW) -> reshape(o, c,
          reshape(o, c, w, h)              flatten)                        (9216, 4096)                     re-wired it for TF's       h, w).transpose(2,3,1,0)
          .transpose(3,2,1,0)                                                                               NHWC flatten; as is        .reshape(9216, 4096)
          .reshape(9216, 4096)
fc7, fc8  ``fc2``/``fc3.weights.txt``      ``fc2``/``fc3.weight``          ``conv_6.0``/``classifier.0``    ``fc7``/``fc8`` [0] as is  ``fc7``/``fc8`` blob 0
kernel    [out, in] -> .T                  [out, in] -> .T                 [out, in, 1, 1] -> squeeze .T                               [out, in] -> .T
fc bias   ``fcN.bias.txt``: 1 per line     ``fcN.bias``                    ``.bias``                        [1]                        blob 1
mean      ``img_mean.txt``: 227 lines x    none in the file                raw only: ``initializers.        none: Caffe's per-channel  none: per-channel mean, or
          681 = R row, G row, B row:                                       onnx_initializer_0`` [1, 3,      mean ``IMAGENET_RGB_MEAN``  ``--mean`` ilsvrc_2012_mean
          reshape(227, 3, 227)                                             227, 227] -> [0]                 unless ``--mean`` is given  .binaryproto [1, 3, 256, 256]
          .transpose(0, 2, 1)                                              .transpose(1, 2, 0)                                         BGR: centre crop [14:241],
                                                                                                                                       BGR -> RGB, CHW -> HWC
fc8 size  20 (EmoNet)                      20                              20                               1000 (ImageNet)            1000 (ImageNet)
========  ===============================  ==============================  ===============================  =========================  ===============================

MATLAB fc names fc1/fc2/fc3 (text dump, emonet-py) are Keras fc6/fc7/fc8. The .keras format is the library's
own and needs no mapping. All functions here are pure numpy; they take and return float32 arrays.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from emonet_tf.backbone import WEIGHT_SHAPES
from emonet_tf.image_spec import IMAGE_SIZE
from emonet_tf.weights.errors import WeightFormatError, WeightMismatchError
from emonet_tf.weights.weightset import FC8_INPUTS, POOL5_SHAPE, WeightSet, make_weightset

CONV_LAYERS = ("conv1", "conv2", "conv3", "conv4", "conv5")


def conv_from_torch(weight: np.ndarray) -> np.ndarray:
    """PyTorch/Caffe [cout, cin/g, kh, kw] -> Keras (kh, kw, cin/g, cout)."""
    return np.ascontiguousarray(np.asarray(weight, np.float32).transpose(2, 3, 1, 0))


def conv_from_matlab_rows(rows: np.ndarray, kernel_shape: tuple[int, int, int, int]) -> np.ndarray:
    """MATLAB writematrix dump (kh lines of kw*cin*cout, kw fastest, then cin, then cout) -> Keras kernel."""
    kh, kw, cin, cout = kernel_shape
    return np.ascontiguousarray(np.asarray(rows, np.float32).reshape(kh, cout, cin, kw).transpose(0, 3, 2, 1))


def fc_from_torch(weight: np.ndarray) -> np.ndarray:
    """[out, in] or [out, in, 1, 1] (fc as 1x1 conv) -> Keras Dense kernel (in, out)."""
    w = np.asarray(weight, np.float32)
    if w.ndim == 4:
        w = w.reshape(w.shape[0], w.shape[1])
    return np.ascontiguousarray(w.T)


def fc6_from_matlab_columns(weight: np.ndarray) -> np.ndarray:
    """fc6 [out, 9216] with MATLAB column-major columns h + 6w + 36c -> Keras rows (h*6 + w)*256 + c."""
    h, w, c = POOL5_SHAPE
    out = weight.shape[0]
    return np.ascontiguousarray(
        np.asarray(weight, np.float32).reshape(out, c, w, h).transpose(3, 2, 1, 0).reshape(h * w * c, out)
    )


def fc6_from_conv(weight: np.ndarray) -> np.ndarray:
    """fc6 as a 6x6 convolution [out, c, h, w] (ecco/ONNX) -> Keras Dense rows (h*6 + w)*256 + c."""
    h, w, c = POOL5_SHAPE
    out = weight.shape[0]
    return np.ascontiguousarray(
        np.asarray(weight, np.float32).reshape(out, c, h, w).transpose(2, 3, 1, 0).reshape(h * w * c, out)
    )


def fc6_from_chw_columns(weight: np.ndarray) -> np.ndarray:
    """fc6 [out, 9216] with Caffe's C-order CHW columns c*36 + h*6 + w -> Keras rows (h*6 + w)*256 + c."""
    return fc6_from_conv(weight)


def fc6_rows_from_chw(kernel: np.ndarray) -> np.ndarray:
    """A (9216, out) Dense kernel whose rows are in CHW order -> rows in NHWC order."""
    return fc6_from_chw_columns(np.asarray(kernel).T)


def bgr_to_rgb_kernel(kernel: np.ndarray) -> np.ndarray:
    """Reverses the input-channel axis of a Keras conv kernel: a BGR-trained conv1 then takes RGB input."""
    return np.ascontiguousarray(kernel[:, :, ::-1, :])


def mean_from_matlab_rows(rows: np.ndarray) -> np.ndarray:
    """img_mean.txt (227 lines of R(i, :), G(i, :), B(i, :)) -> (227, 227, 3) RGB."""
    n = IMAGE_SIZE
    return np.ascontiguousarray(np.asarray(rows, np.float32).reshape(n, 3, n).transpose(0, 2, 1))


def mean_from_nchw(mean: np.ndarray) -> np.ndarray:
    """An ONNX/PyTorch mean [1, 3, H, W] (RGB) -> (H, W, 3)."""
    m = np.asarray(mean, np.float32)
    return np.ascontiguousarray(m.reshape(m.shape[-3:]).transpose(1, 2, 0))


def mean_from_caffe_blob(mean: np.ndarray, size: int = IMAGE_SIZE) -> np.ndarray:
    """Caffe's mean blob [1, 3, 256, 256] in BGR -> centre crop `size` -> (size, size, 3) RGB."""
    m = np.asarray(mean, np.float32)
    m = m.reshape(m.shape[-3:])
    top = (m.shape[1] - size) // 2
    left = (m.shape[2] - size) // 2
    crop = m[::-1, top : top + size, left : left + size]
    return np.ascontiguousarray(crop.transpose(1, 2, 0))


# --------------------------------------------------------------------------------------------------
# PyTorch state_dicts (pure numpy: values may be numpy arrays or anything with .detach().cpu().numpy())


def torch_conv_shape(name: str) -> tuple[int, ...]:
    """Expected PyTorch shape [cout, cin/g, kh, kw] of a conv layer."""
    kh, kw, cin, cout = WEIGHT_SHAPES[name][0]
    return (cout, cin, kh, kw)


_LAYOUT_KEYS = {
    # layout: (our layer -> (weight key, bias key)), with fc kinds
    "emonet_py": {
        **{c: (f"{c}.weight", f"{c}.bias") for c in CONV_LAYERS},
        "fc6": ("fc1.weight", "fc1.bias"),
        "fc7": ("fc2.weight", "fc2.bias"),
        "fc8": ("fc3.weight", "fc3.bias"),
    },
    "ecco": {
        **{c: (f"conv_{i}.0.weight", f"conv_{i}.0.bias") for i, c in enumerate(CONV_LAYERS)},
        "fc6": ("conv_5.0.weight", "conv_5.0.bias"),
        "fc7": ("conv_6.0.weight", "conv_6.0.bias"),
        "fc8": ("classifier.0.weight", "classifier.0.bias"),
    },
    "onnx2torch": {
        **{c: (f"Conv_{i}.weight", f"Conv_{i}.bias") for i, c in enumerate(CONV_LAYERS)},
        "fc6": ("Conv_5.weight", "Conv_5.bias"),
        "fc7": ("Conv_6.weight", "Conv_6.bias"),
        "fc8": ("Conv_7.weight", "Conv_7.bias"),
    },
}
_LAYOUT_ALIASES = {
    "emonet_py": "emonet_py",
    "emonet_py_pth": "emonet_py",
    "ecco": "ecco",
    "ecco_pth": "ecco",
    "onnx2torch": "onnx2torch",
}
_LAYOUT_FORMAT = {"emonet_py": "emonet_py_pth", "ecco": "ecco_pth", "onnx2torch": "ecco_pth"}
ONNX_MEAN_KEY = "initializers.onnx_initializer_0"
_WRAPPER_KEYS = ("state_dict", "model_state_dict", "model", "net")


def _to_numpy(value: Any) -> Any:
    if hasattr(value, "detach") and hasattr(value, "cpu"):  # a torch tensor; torch itself is never imported
        value = value.detach().cpu()
        if str(value.dtype) == "torch.bfloat16":  # numpy has no bfloat16
            value = value.float()
        return value.numpy()
    return value


def unwrap_state_dict(obj: Any, source: str) -> dict[str, Any]:
    """Finds the flat name -> array mapping inside a checkpoint ({'state_dict': ...}, DataParallel prefixes)."""
    if not isinstance(obj, Mapping):
        raise WeightFormatError(
            f"{source}: expected a state_dict (a mapping of names to tensors), found {type(obj).__name__}"
        )
    for key in _WRAPPER_KEYS:
        if key in obj and isinstance(obj[key], Mapping):
            obj = obj[key]
            break
    flat = {str(k): _to_numpy(v) for k, v in obj.items()}
    if flat and all(k.startswith("module.") for k in flat):
        flat = {k[len("module.") :]: v for k, v in flat.items()}
    return flat


def detect_layout(keys, source: str = "<state_dict>") -> str:
    """'emonet_py', 'ecco' or 'onnx2torch' from the key names of a state_dict."""
    keys = set(keys)
    if "fc1.weight" in keys or "conv1.weight" in keys:
        return "emonet_py"
    if "conv_0.0.weight" in keys or "classifier.0.weight" in keys:
        return "ecco"
    if "Conv_0.weight" in keys:
        return "onnx2torch"
    shown = ", ".join(sorted(keys)[:8]) + (" ..." if len(keys) > 8 else "")
    raise WeightFormatError(
        f"{source}: not an EmoNet state_dict: keys are {shown or 'none'}; expected the "
        "emonet-py names (conv1..conv5, fc1..fc3) or the ecco names (conv_0.0 ... classifier.0)"
    )


def _check(key: str, array: Any, expected: tuple, source: str) -> np.ndarray:
    arr = np.asarray(array)
    if arr.shape != tuple(expected):
        raise WeightMismatchError(key, expected, arr.shape, source)
    return arr


def from_torch_state_dict(
    state_dict: Mapping[str, Any], layout: str = "auto", source: str = "<state_dict>"
) -> WeightSet:
    """Maps an emonet-py, ecco or raw onnx2torch state_dict (numpy arrays or torch tensors) to a WeightSet.

    Strict like `load_state_dict(strict=True)`: a missing, extra or wrongly shaped entry raises
    WeightFormatError / WeightMismatchError naming the key and both shapes.
    """
    flat = unwrap_state_dict(state_dict, source)
    if layout == "auto":
        layout = detect_layout(flat, source)
    if layout not in _LAYOUT_ALIASES:
        raise ValueError(f"Unknown state_dict layout {layout!r}; choose auto, emonet_py, ecco or onnx2torch")
    layout = _LAYOUT_ALIASES[layout]
    keys = _LAYOUT_KEYS[layout]
    wanted = {k for pair in keys.values() for k in pair}
    missing = sorted(wanted - set(flat))
    if missing:
        raise WeightFormatError(f"{source}: {layout} state_dict lacks {missing}")
    extra = sorted(k for k in set(flat) - wanted if not (layout == "onnx2torch" and k.startswith("initializers.")))
    if extra:
        raise WeightFormatError(f"{source}: unexpected keys {extra} in the {layout} state_dict layout")
    fc8_out = np.shape(flat[keys["fc8"][0]])[0] if np.ndim(flat[keys["fc8"][0]]) >= 1 else 0
    conv_fc = layout != "emonet_py"  # ecco/ONNX store fc layers as convolutions
    layers: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for name, (wkey, bkey) in keys.items():
        if name in CONV_LAYERS:
            w = _check(wkey, flat[wkey], torch_conv_shape(name), source)
            kernel = conv_from_torch(w)
            out = w.shape[0]
        elif name == "fc6":
            h, w_, c = POOL5_SHAPE
            if conv_fc:
                kernel = fc6_from_conv(_check(wkey, flat[wkey], (4096, c, h, w_), source))
            else:
                kernel = fc6_from_matlab_columns(_check(wkey, flat[wkey], (4096, h * w_ * c), source))
            out = 4096
        else:
            out = 4096 if name == "fc7" else fc8_out
            shape = (out, FC8_INPUTS, 1, 1) if conv_fc else (out, FC8_INPUTS)
            kernel = fc_from_torch(_check(wkey, flat[wkey], shape, source))
        bias = _check(bkey, flat[bkey], (out,), source).astype(np.float32)
        layers[name] = (kernel, bias)
    mean = None
    notes = [f"PyTorch state_dict in the {layout} layout"]
    if layout == "onnx2torch" and ONNX_MEAN_KEY in flat:
        mean = mean_from_nchw(_check(ONNX_MEAN_KEY, flat[ONNX_MEAN_KEY], (1, 3, IMAGE_SIZE, IMAGE_SIZE), source))
        notes.append(f"mean image from {ONNX_MEAN_KEY}")
    return make_weightset(layers, mean, None, source, _LAYOUT_FORMAT[layout], tuple(notes))
