"""The fc7 cache's training input reads rows from `features.npy` without memory maps.

Regression: `cached_train_dataset` used to capture a memory map of the whole file in its
`tf.numpy_function`, which TensorFlow keeps alive for the process. Training builds one dataset per
epoch, so the full-size rehearsal (111,642 x 4096 train features, 1.8 GB) mapped the file 10 times and
reported 18.8 GiB resident (bench/README.md, "Full size").
"""

import json
import os
import sys

import numpy as np
import pytest

from emonet_tf import features


def write_cache(folder, n=40, dim=8, seed=0):
    rng = np.random.default_rng(seed)
    os.makedirs(folder, exist_ok=True)
    values = rng.standard_normal((n, dim)).astype(np.float32)
    labels = rng.integers(0, 3, n).astype(np.int32)
    np.save(os.path.join(folder, features.FEATURES), values)
    np.save(os.path.join(folder, features.LABELS), labels)
    with open(os.path.join(folder, features.PROGRESS), "w") as f:
        json.dump({"fingerprint": "x", "num_examples": n, "done": n, "dim": dim}, f)
    return values, labels


def test_rows_are_read_in_the_order_given_with_repeats(tmp_path):
    values, _ = write_cache(str(tmp_path))
    read = features.CacheRows(str(tmp_path / features.FEATURES))
    rows = np.array([39, 0, 7, 7, 21, 1])
    assert read.shape == (40, 8)
    np.testing.assert_array_equal(read(rows), values[rows])
    assert read(np.array([], np.int64)).shape == (0, 8)


def test_cached_batches_are_the_rows_of_the_file(tmp_path):
    values, labels = write_cache(str(tmp_path))
    seen = []
    for x, y in features.cached_train_dataset(str(tmp_path), global_batch_size=4, seed=3, epoch=1):
        x, y = x.numpy(), y.numpy()
        # each row of x is one stored row, with its label
        index = [int(np.flatnonzero((values == row).all(axis=1))[0]) for row in x]
        np.testing.assert_array_equal(labels[index], y)
        seen += index
    assert sorted(seen) == list(range(40))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/maps")
def test_epochs_leave_no_map_of_the_features_file(tmp_path):
    write_cache(str(tmp_path))
    path = os.path.realpath(str(tmp_path / features.FEATURES))
    for epoch in range(3):
        for _ in features.cached_train_dataset(str(tmp_path), global_batch_size=4, seed=0, epoch=epoch):
            pass
    with open("/proc/self/maps") as f:
        maps = [line for line in f if line.rstrip().endswith(path)]
    assert maps == []


def test_a_truncated_cache_is_named(tmp_path):
    write_cache(str(tmp_path))
    path = str(tmp_path / features.FEATURES)
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) - 4 * 8 * 3)  # the last 3 rows gone
    read = features.CacheRows(path)
    np.testing.assert_array_equal(read(np.array([0])).shape, (1, 8))
    with pytest.raises(OSError, match=r"features\.npy: row 39 is past the end"):
        read(np.array([2, 39]))
    with pytest.raises(IndexError, match="outside"):
        read(np.array([40]))


@pytest.mark.parametrize(
    "content, problem",
    [
        (np.zeros((4, 8), np.float64), r"found float64 \(4, 8\)"),
        (np.zeros(8, np.float32), r"found float32 \(8,\)"),
        (b"not an npy file", r"not a \.npy file"),
    ],
)
def test_a_file_that_is_not_a_cache_is_refused_by_name(tmp_path, content, problem):
    path = str(tmp_path / features.FEATURES)
    if isinstance(content, bytes):
        with open(path, "wb") as f:
            f.write(content)
    else:
        np.save(path, content)
    with pytest.raises(ValueError, match=r"features\.npy: .*" + problem):
        features.CacheRows(path)


def test_a_cache_replaced_while_read_is_refused_not_misread(tmp_path):
    """A reader keeps the header it read: a file replaced (another width) or rewritten under it would be
    read with the old layout, giving rows of neither file. It raises instead."""
    write_cache(str(tmp_path), n=40, dim=6)
    path = str(tmp_path / features.FEATURES)
    read = features.CacheRows(path)
    other = str(tmp_path / "other.npy")
    np.save(other, np.arange(40 * 12, dtype=np.float32).reshape(40, 12))
    os.replace(other, path)
    with pytest.raises(OSError, match=r"features\.npy: the file was replaced or rewritten"):
        read(np.array([1]))
    read = features.CacheRows(path)  # a new reader reads the new file
    np.testing.assert_array_equal(read(np.array([1])), np.arange(12, 24, dtype=np.float32)[None])


@pytest.mark.parametrize("rows", [[1.7], np.array([True, False]), ["3"]])
def test_row_indices_must_be_integers(tmp_path, rows):
    write_cache(str(tmp_path))
    with pytest.raises(TypeError, match="must be integers"):
        features.CacheRows(str(tmp_path / features.FEATURES))(rows)


def test_labels_that_do_not_match_the_rows_are_named(tmp_path):
    write_cache(str(tmp_path), n=40)
    np.save(str(tmp_path / features.LABELS), np.zeros(30, np.int32))
    with pytest.raises(ValueError, match=r"labels\.npy: \(30,\) labels for the 40 rows"):
        features.cached_train_dataset(str(tmp_path), global_batch_size=4, seed=0, epoch=0)
