"""File operations of an extraction, local or remote, through `tf.io.gfile` (gs://, s3://, hdfs://, ram://).

One module so that every read and write of `emonet_tf.extract` goes through the same file system layer:
a local path works the same (tf.io.gfile handles it), which is how the tests run the remote code path
on TensorFlow's in-memory ``ram://`` file system.
"""

from __future__ import annotations

import os
import uuid

import tensorflow as tf


def exists(path: str) -> bool:
    return tf.io.gfile.exists(path)


def isdir(path: str) -> bool:
    return tf.io.gfile.isdir(path)


def size(path: str) -> int:
    """A file's size in bytes."""
    return tf.io.gfile.stat(path).length


def makedirs(path: str) -> None:
    tf.io.gfile.makedirs(path)


def listdir(path: str) -> list[str]:
    """Names in a folder (sorted); [] when it does not exist."""
    if not tf.io.gfile.exists(path):
        return []
    return sorted(n.rstrip("/") for n in tf.io.gfile.listdir(path))


def walk_files(root: str) -> list[str]:
    """Every file under `root` in the order `media.collect_inputs` walks a local folder (`os.walk` with
    sorted folders): a folder's files by name, then its subfolders one by one, each with all it holds.

    Not a sort of the full paths: "a-b/c.png" sorts before "a/sub/d.png" ('-' < '/'), but the walk
    finishes "a" first, and remote and local copies of a corpus must give the same rows in the same order.
    """
    out = []
    for folder, subdirs, files in tf.io.gfile.walk(root):
        # In place: tf.io.gfile.walk (top-down) descends in this list's order. Object stores may list a
        # folder as "sub/"; the slash must not change the order ("a-b/" < "a/").
        subdirs.sort(key=lambda name: name.rstrip("/"))
        out.extend(join(folder, name) for name in sorted(files))
    return out


def join(folder: str, name: str) -> str:
    return f"{folder.rstrip('/')}/{name}" if "://" in folder else os.path.join(folder, name)


def read_text(path: str) -> str:
    """A text file's contents (UTF-8; UnicodeDecodeError for other bytes); OSError names the file."""
    return read_bytes(path).decode("utf-8")


def read_bytes(path: str) -> bytes:
    """A file's bytes; OSError names the file."""
    try:
        with tf.io.gfile.GFile(path, "rb") as f:
            return f.read()
    except tf.errors.OpError as err:
        raise OSError(f"{path}: cannot read ({err.message})") from None


def copy_to_local(path: str, local: str) -> None:
    """Copies a (remote) file to a local path; OSError names the file."""
    try:
        tf.io.gfile.copy(path, local, overwrite=True)
    except tf.errors.OpError as err:
        raise OSError(f"{path}: cannot copy to local scratch ({err.message})") from None


def copy_file(local: str, path: str) -> None:
    """Copies a local file to `path` (local or remote), replacing it."""
    tf.io.gfile.copy(local, path, overwrite=True)


def write_atomic(path: str, data: bytes) -> None:
    """Writes `data` to `path` so that a reader sees the old file, or none, or the whole new one.

    The bytes go to a hidden sibling first (``.tmp-...``, skipped by pyarrow's dataset discovery), then
    a rename puts them in place: a process killed mid-write leaves no half shard behind under the name.
    """
    folder, name = os.path.split(path) if "://" not in path else path.rsplit("/", 1)
    tmp = join(folder, f".tmp-{uuid.uuid4().hex[:12]}-{name}")
    with tf.io.gfile.GFile(tmp, "wb") as f:
        f.write(data)
    tf.io.gfile.rename(tmp, path, overwrite=True)


def staging_path(path: str, scratch: str) -> str:
    """Where to write a file bound for `path` before `put_file` moves it there: a hidden sibling for a
    local path (so the final move is a rename on one file system), a file in local `scratch` for a URL
    (writers such as pyarrow's write local files)."""
    name = f".tmp-{uuid.uuid4().hex[:12]}-{os.path.basename(path)}"
    return os.path.join(os.path.dirname(path) if "://" not in path else scratch, name)


def put_file(local: str, path: str) -> None:
    """Moves a finished file from `staging_path(path, ...)` to `path` atomically, as `write_atomic` does."""
    if "://" not in path:
        os.replace(local, path)
        return
    folder, name = path.rsplit("/", 1)
    tmp = join(folder, f".tmp-{uuid.uuid4().hex[:12]}-{name}")
    tf.io.gfile.copy(local, tmp, overwrite=True)
    tf.io.gfile.rename(tmp, path, overwrite=True)
    os.remove(local)


def remove(path: str) -> None:
    if tf.io.gfile.exists(path):
        tf.io.gfile.remove(path)


def rmtree(path: str) -> None:
    if tf.io.gfile.exists(path):
        tf.io.gfile.rmtree(path)
