"""`python -m emonet_tf.weights SRC DST.keras [--format F] [--new-head-classes N] [--mean FILE]`: calls `convert`."""
from __future__ import annotations

import argparse
import sys
from typing import Optional, Sequence

from emonet_tf.weights.api import convert
from emonet_tf.weights.errors import WeightFormatError
from emonet_tf.weights.weightset import FORMATS


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m emonet_tf.weights",
                                     description="Convert a published EmoNet/AlexNet weight file to a .keras model.")
    parser.add_argument("src", help="weight file or MATLAB text-dump folder")
    parser.add_argument("dst", help="output .keras file")
    parser.add_argument("--format", default="auto", choices=("auto",) + FORMATS)
    parser.add_argument("--new-head-classes", "--new-head", dest="new_head", type=int, default=None, metavar="N",
                        help="a fresh fc8 with N outputs instead of the file's (e.g. 20 on the ImageNet AlexNet)")
    parser.add_argument("--mean", default=None,
                        help="mean file (.binaryproto, img_mean.txt, .npy) replacing or supplying the mean image")
    parser.add_argument("--fc6-order", default="hwc", choices=("hwc", "chw"),
                        help="bvlc_npy only: row order of fc6 (hwc for the published caffe-tensorflow file)")
    args = parser.parse_args(argv)
    try:
        print(convert(args.src, args.dst, format=args.format, new_head_classes=args.new_head, mean=args.mean,
                      fc6_order=args.fc6_order))
    except (WeightFormatError, ValueError) as err:  # WeightMismatchError included; a bad destination too
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
