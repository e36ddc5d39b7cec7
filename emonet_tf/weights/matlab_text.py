"""The MATLAB per-layer text dump (emonet-py's data/ folder, written with `writematrix`; docs/weights.md).

Files: conv{1..5}.{weights,bias}.txt.bz2, fc{1,2,3}.{weights,bias}.txt.bz2, img_mean.txt; the
uncompressed `.txt` variants are accepted too. Parsing uses numpy's C reader (np.loadtxt), about
7 s for fc1's 37.7 M values, instead of emonet-py's Python float loops.
"""

from __future__ import annotations

import bz2
import contextlib
import contextvars
import itertools
import os
import warnings
from typing import Iterator, Optional

import numpy as np

from emonet_tf.backbone import IMAGE_SIZE, WEIGHT_SHAPES
from emonet_tf.weights import limits, mapping
from emonet_tf.weights.errors import WeightFormatError, WeightMismatchError
from emonet_tf.weights.weightset import FC8_INPUTS, WeightSet, make_weightset

FC_NAMES = {"fc6": "fc1", "fc7": "fc2", "fc8": "fc3"}
MEAN_FILE = "img_mean.txt"
#: Most fc3 (fc8) lines read from a text dump: limits.MAX_TENSOR_ELEMENTS // 4096 = 16384 classes (EmoNet has 20).
MAX_CLASSES = limits.MAX_TENSOR_ELEMENTS // FC8_INPUTS
#: EmoNet's classes, for the expected size of fc3 before it is read (another count corrects the total then).
EXPECTED_CLASSES = 20

# The progress bar of the read in progress (report_progress): reading goes through weights.api, which
# knows nothing of bars, so the reader finds it here.
_PROGRESS: contextvars.ContextVar = contextvars.ContextVar("matlab_text_progress", default=None)


def expected_values(folder: str) -> int:
    """The numbers a complete dump holds: every weight and bias (fc3 with EXPECTED_CLASSES outputs), plus the
    227 x 227 x 3 mean image when the folder has img_mean.txt; the total of a `report_progress` bar."""
    total = 0
    for name in mapping.CONV_LAYERS + tuple(n for n in FC_NAMES if n != "fc8"):
        kernel, bias = WEIGHT_SHAPES[name]
        total += int(np.prod(kernel)) + int(np.prod(bias))
    total += (FC8_INPUTS + 1) * EXPECTED_CLASSES
    if find_file(os.fspath(folder), MEAN_FILE) is not None:
        total += IMAGE_SIZE * IMAGE_SIZE * 3
    return total


@contextlib.contextmanager
def report_progress(bar):
    """While active, reading a dump calls ``bar.update(n)`` with the values of each line read (and corrects
    ``bar.total`` when fc3 has another number of classes than EXPECTED_CLASSES). `bar`: a tqdm or alike."""
    token = _PROGRESS.set(bar)
    try:
        yield bar
    finally:
        _PROGRESS.reset(token)


def _counted_lines(lines: Iterator[str]) -> Iterator[str]:
    """`lines`, reporting the values of each (commas + 1) to the active progress bar."""
    bar = _PROGRESS.get()
    for line in lines:
        if bar is not None and line.strip():
            bar.update(line.count(",") + 1)
        yield line


def find_file(folder: str, stem: str) -> Optional[str]:
    """`stem`.bz2 or `stem` inside `folder`, or None."""
    for name in (stem + ".bz2", stem):
        path = os.path.join(folder, name)
        if os.path.isfile(path):
            return path
    return None


def is_matlab_text_dir(path: str) -> bool:
    return os.path.isdir(path) and find_file(path, "conv1.weights.txt") is not None


def _bounded_lines(f, path: str, max_chars: int, max_lines: int) -> Iterator[str]:
    """The lines of `f`, each read with at most `max_chars` + 1 characters: a longer line is refused unread."""
    for number in itertools.count(1):
        line = f.readline(max_chars + 1)
        if not line:
            return
        if len(line) > max_chars and not line.endswith("\n"):
            raise WeightFormatError(
                f"{path}: line {number} is longer than {max_chars} characters (at most "
                f"{limits.MAX_CHARS_PER_VALUE} per value, emonet_tf.weights.limits."
                "MAX_CHARS_PER_VALUE); refusing to read it"
            )
        if number > max_lines:
            raise WeightFormatError(f"{path}: more than {max_lines} lines, expected at most {max_lines}")
        yield line


def read_matrix(path: str, max_rows: int, max_columns: int) -> np.ndarray:
    """A comma-separated text matrix (plain or bz2) as a 2-D float64 array of finite values; errors name the file.

    max_rows, max_columns: the most lines and values per line the caller can use (the expected shape). A line
    longer than `limits.max_line_chars(max_columns)` characters or more than `max_rows` lines are refused while
    reading (never held in memory), so a hostile file (a 1 GB line, a bz2 bomb) costs at most the expected
    matrix plus one bounded line. Raises WeightFormatError for those, for a truncated bz2 stream, a line that is
    not numbers, lines of different widths, and NaN or infinite values.
    """
    max_chars = limits.max_line_chars(max_columns)
    try:
        opener = bz2.open if path.endswith(".bz2") else open
        with opener(path, "rt", encoding="latin1", newline=None) as f, warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "input contained no data": refused below instead
            arr = np.loadtxt(
                _counted_lines(_bounded_lines(f, path, max_chars, max_rows + 8)),
                delimiter=",",
                dtype=np.float64,
                ndmin=2,
                max_rows=max_rows + 1,
            )
    except WeightFormatError:  # a line refused by _bounded_lines (a ValueError too: passed on as it is)
        raise
    except (EOFError, OSError) as err:  # bz2 raises EOFError/OSError on truncated or corrupt streams
        raise WeightFormatError(f"{path}: truncated or corrupt file ({err})") from None
    except (ValueError, UnicodeDecodeError) as err:
        raise WeightFormatError(f"{path}: not a comma-separated matrix of numbers ({str(err)[:300]})") from None
    if arr.size == 0:
        raise WeightFormatError(f"{path}: holds no numbers (an empty file?)")
    if arr.shape[0] > max_rows:
        raise WeightFormatError(f"{path}: more than {max_rows} lines of numbers, expected at most {max_rows}")
    if not np.all(np.isfinite(arr)):
        raise WeightFormatError(
            f"{path}: holds NaN or infinite values (first at line {int(np.argwhere(~np.isfinite(arr))[0][0]) + 1})"
        )
    return arr


def _correct_total(classes: int) -> None:
    """fc3 has `classes` outputs: the bar's total assumed EXPECTED_CLASSES."""
    bar = _PROGRESS.get()
    if bar is not None and getattr(bar, "total", None) is not None and classes != EXPECTED_CLASSES:
        bar.total += (FC8_INPUTS + 1) * (classes - EXPECTED_CLASSES)
        if hasattr(bar, "refresh"):
            bar.refresh()


def _shape_check(path: str, layer: str, arr: np.ndarray, expected: tuple[int, int]) -> np.ndarray:
    if arr.shape != expected:
        raise WeightMismatchError(f"{layer} ({os.path.basename(path)}: lines x values)", expected, arr.shape, path)
    return arr


def read_mean_file(path: str) -> np.ndarray:
    """img_mean.txt (227 lines x 681 values: R row, G row, B row) -> (227, 227, 3) RGB."""
    rows = read_matrix(path, IMAGE_SIZE, 3 * IMAGE_SIZE)
    _shape_check(path, "mean image", rows, (IMAGE_SIZE, 3 * IMAGE_SIZE))
    return mapping.mean_from_matlab_rows(rows)


def read_matlab_text(folder: str) -> WeightSet:
    """Reads the whole dump; every file is checked before anything is returned.

    Raises WeightFormatError naming the file for a missing file or any problem of `read_matrix` (over-long
    line, too many lines, not numbers, NaN/inf, truncated bz2), WeightMismatchError for a wrong shape.
    """
    folder = os.fspath(folder)
    stems = [f"conv{i}.{kind}.txt" for i in range(1, 6) for kind in ("weights", "bias")] + [
        f"fc{i}.{kind}.txt" for i in range(1, 4) for kind in ("weights", "bias")
    ]
    paths = {stem: find_file(folder, stem) for stem in stems}
    missing = [f"{stem}[.bz2]" for stem, p in paths.items() if p is None]
    if missing:
        raise WeightFormatError(f"{folder}: MATLAB text dump is missing {', '.join(missing)}")
    layers: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for i, name in enumerate(mapping.CONV_LAYERS, start=1):
        kh, kw, cin, cout = WEIGHT_SHAPES[name][0]
        wpath, bpath = paths[f"conv{i}.weights.txt"], paths[f"conv{i}.bias.txt"]
        rows = _shape_check(wpath, name, read_matrix(wpath, kh, kw * cin * cout), (kh, kw * cin * cout))
        bias = read_matrix(bpath, cout, cout).reshape(-1)
        if bias.shape != (cout,):
            raise WeightMismatchError(f"{name} bias ({os.path.basename(bpath)})", (cout,), bias.shape, bpath)
        layers[name] = (mapping.conv_from_matlab_rows(rows, (kh, kw, cin, cout)), bias)
    for name, matlab in FC_NAMES.items():
        wpath, bpath = paths[f"{matlab}.weights.txt"], paths[f"{matlab}.bias.txt"]
        n_in, n_out = (FC8_INPUTS, MAX_CLASSES) if name == "fc8" else WEIGHT_SHAPES[name][0]
        w = read_matrix(wpath, n_out, n_in)
        if name == "fc8":
            _correct_total(w.shape[0])
            _shape_check(wpath, name, w, (max(w.shape[0], 1), FC8_INPUTS))
        else:
            n_in, n_out = WEIGHT_SHAPES[name][0]
            _shape_check(wpath, name, w, (n_out, n_in))
        bias = read_matrix(bpath, w.shape[0], w.shape[0]).reshape(-1)
        if bias.shape != (w.shape[0],):
            raise WeightMismatchError(f"{name} bias ({os.path.basename(bpath)})", (w.shape[0],), bias.shape, bpath)
        kernel = mapping.fc6_from_matlab_columns(w) if name == "fc6" else mapping.fc_from_torch(w)
        layers[name] = (kernel, bias)
    notes = ["MATLAB writematrix dump: fc1/fc2/fc3 -> fc6/fc7/fc8, fc1 columns reordered from MATLAB's h+6w+36c"]
    mean_path = find_file(folder, MEAN_FILE)
    mean = None
    if mean_path is not None:
        mean = read_mean_file(mean_path)
        notes.append(f"mean image from {os.path.basename(mean_path)}")
    return make_weightset(layers, mean, None, folder, "matlab_text", tuple(notes))
