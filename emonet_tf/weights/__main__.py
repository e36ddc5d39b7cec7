"""`python -m emonet_tf.weights SRC DST.keras [flags]`: the same command as `emonet convert`.

One parser, one set of flags (--format, --new-head-classes/--new-head, --mean, --fc6-order,
--no-progress) and one set of exit codes (0 converted, 2 usage error or refused file, 1 other failure):
this calls `emonet_tf.cli.main(["convert", ...])`, whose usage also names `python -m emonet_tf.weights`. TensorFlow is imported only after parsing.
"""

from __future__ import annotations

import sys
from typing import Optional, Sequence


def main(argv: Optional[Sequence[str]] = None) -> int:
    from emonet_tf import cli

    return cli.main(["convert", *(sys.argv[1:] if argv is None else argv)], convert_alias="python -m emonet_tf.weights")


if __name__ == "__main__":
    sys.exit(main())
