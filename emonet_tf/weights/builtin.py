"""The built-in weight formats, registered in detection order (`emonet_tf.weights.registry`).

The order matters where two sniffs can claim one file: the .npy magic before any suffix, the `.binaryproto`
refusal before `.caffemodel`, a .keras zip before the torch zip, emonet-py's layout before the ecco one.
"""

from __future__ import annotations

from emonet_tf.weights import bvlc, keras_file, matlab_text, torch_pickle
from emonet_tf.weights.registry import WeightFormat, register

register(
    WeightFormat(
        name="matlab_text",
        folder=True,
        sniff=matlab_text.is_matlab_text_dir,
        read=matlab_text.read_matlab_text,
        description="a MATLAB text dump",
        signature="conv1.weights.txt[.bz2]",
        suffixes=(".txt", ".txt.bz2"),
    )
)
register(
    WeightFormat(
        name="bvlc_npy",
        sniff=bvlc.looks_like_npy,
        read=bvlc.read_bvlc_npy,
        options=("mean", "fc6_order"),
        description="the ImageNet AlexNet as bvlc_alexnet.npy (caffe-tensorflow layout, BGR conv1)",
        signature="the .npy magic",
        suffixes=(".npy",),
    )
)
register(
    WeightFormat(
        name="caffemodel",
        sniff=bvlc.looks_like_caffemodel,
        read=bvlc.read_caffemodel,
        options=("mean",),
        description="the BVLC AlexNet .caffemodel (NetParameter protobuf, BGR conv1)",
        signature="the .caffemodel suffix",
        suffixes=(".caffemodel",),
    )
)
register(
    WeightFormat(
        name="keras",
        sniff=keras_file.looks_like_keras,
        read=keras_file.read_keras,
        description="a .keras file saved by emonet_tf",
        signature="a zip with config.json and model.weights.*",
        suffixes=(".keras",),
    )
)
register(
    WeightFormat(
        name="emonet_py_pth",
        sniff=torch_pickle.looks_like_emonet_py_pth,
        read=torch_pickle.read_emonet_py_pth,
        description="an emonet-py state_dict (AlexNetBigEmoNet: conv1..conv5, fc1..fc3)",
        signature="a torch zip or legacy pickle with emonet-py's key names",
        suffixes=(".pth", ".pt"),
    )
)
register(
    WeightFormat(
        name="ecco_pth",
        sniff=torch_pickle.looks_like_ecco_pth,
        read=torch_pickle.read_ecco_pth,
        description="an ecco-lab EmoNetPythonic state_dict (conv_0.0 ... classifier.0) or raw onnx2torch names",
        signature="a torch zip or legacy pickle with the ecco or onnx2torch key names",
        suffixes=(".pt", ".pth"),
    )
)
