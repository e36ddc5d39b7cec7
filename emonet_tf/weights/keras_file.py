"""The `keras` format: .keras files saved by this library (an EmoNetClassifier or AlexNetBackbone)."""

from __future__ import annotations

import zipfile

from emonet_tf.weights import limits, torch_pickle
from emonet_tf.weights.errors import WeightFormatError
from emonet_tf.weights.registry import read_head
from emonet_tf.weights.weightset import WeightSet

ZIP_MAGIC = b"PK\x03\x04"
#: Largest JSON entry (config.json, metadata.json) accepted in a .keras archive: 1 MiB (an EmoNetClassifier's
#: config.json is about 3 KB).
MAX_KERAS_JSON_BYTES = 2**20


def _is_keras_zip(path: str) -> bool:
    if torch_pickle._declared_zip_entries(path) > limits.MAX_ZIP_ENTRIES:
        return False  # never a .keras file; the .pth reader refuses it before reading the directory
    try:
        with zipfile.ZipFile(path) as zf:
            names = set(zf.namelist())
    except (zipfile.BadZipFile, OSError):
        return False
    return "config.json" in names and any(n.startswith("model.weights") for n in names)


def looks_like_keras(path: str) -> bool:
    """A zip holding config.json and model.weights.*; a `.keras` file that is not one is refused."""
    if read_head(path).startswith(ZIP_MAGIC) and _is_keras_zip(path):
        return True
    if path.endswith(".keras"):
        raise WeightFormatError(f"{path}: not a readable .keras archive (truncated?)")
    return False


def _check_keras_archive(path: str) -> None:
    """Names and declared sizes of a .keras zip, checked before Keras reads it (Keras reads entries whole)."""
    if torch_pickle._declared_zip_entries(path) > limits.MAX_ZIP_ENTRIES:
        raise WeightFormatError(f"{path}: a .keras zip declaring more than {limits.MAX_ZIP_ENTRIES} entries")
    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as err:
        raise WeightFormatError(f"{path}: not a readable .keras archive ({err})") from None
    names = [i.filename for i in infos]
    if len(set(names)) != len(names):
        raise WeightFormatError(f"{path}: the .keras zip holds duplicate entries; refusing an ambiguous archive")
    total = 0
    for info in infos:
        parts = info.filename.split("/")
        if info.filename.startswith("/") or "\\" in info.filename or ".." in parts:
            raise WeightFormatError(
                f"{path}: the .keras entry {info.filename[:80]!r} has an absolute or parent (..) path"
            )
        if info.filename.endswith(".json") and info.file_size > MAX_KERAS_JSON_BYTES:
            raise WeightFormatError(
                f"{path}: {info.filename} declares {info.file_size} bytes (at most "
                f"{MAX_KERAS_JSON_BYTES}); refused before decompressing"
            )
        total += info.file_size
    if total > limits.MAX_LOAD_BYTES:
        raise WeightFormatError(
            f"{path}: the .keras entries declare {total} bytes, more than {limits.MAX_LOAD_BYTES} "
            "(emonet_tf.weights.limits.MAX_LOAD_BYTES); refused before decompressing"
        )


def read_keras(path: str) -> WeightSet:
    """A .keras file saved by this library -> WeightSet.

    The archive's names and declared sizes are checked first (`_check_keras_archive`); then Keras loads it in
    safe mode (no lambdas or arbitrary code from the config). Raises WeightFormatError naming the file.
    """
    import keras

    import emonet_tf.classifier  # noqa: F401  (registers the serializable classes)
    from emonet_tf.weights.api import weights_from_model

    _check_keras_archive(path)
    try:
        model = keras.saving.load_model(path, compile=False, safe_mode=True)
    except Exception as err:  # noqa: BLE001 - Keras raises many types for a bad archive
        raise WeightFormatError(f"{path}: cannot load the .keras file ({type(err).__name__}: {err})") from None
    return weights_from_model(model, path)
