"""One-call prediction: `EmoNet.from_weights(path).predict_images([...])`, videos, activations.

Files and bytes are decoded by the library's decoder contract (`emonet_tf.preprocessing.load_image`:
PIL's pixels, docs/preprocessing.md). Decoding and the MATLAB resize (numpy on the host, the same pixels
as the in-graph resize bit for bit) run in a thread pool while the model works on the previous batch
(Pillow's decoders and numpy's array operations release the GIL), so a CPU stays busy; results
stream in input order, and a file that cannot be read becomes an error entry that names it, not an
exception that kills the batch.
"""

from __future__ import annotations

import collections
import collections.abc
import concurrent.futures
import numbers
import os
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator, Optional, Sequence, Union

import keras
import numpy as np
import tensorflow as tf

from emonet_tf import preprocessing
from emonet_tf.classifier import EmoNetClassifier
from emonet_tf.forward import BatchSizeDispatch
from emonet_tf.image_spec import IMAGE_SIZE
from emonet_tf.preprocessor import EmoNetPreprocessor, resolve, unsupported_input

ImageInput = Union[str, os.PathLike, bytes, bytearray, memoryview, np.ndarray]


def top_k(probabilities: np.ndarray, class_names: Sequence[str], k: int = 3) -> list[tuple[str, float]]:
    """The k most probable categories of one probability vector, as (name, probability), best first."""
    probabilities = np.asarray(probabilities)
    order = np.argsort(-probabilities, kind="stable")[:k]
    return [(class_names[i], float(probabilities[i])) for i in order]


@dataclass
class ImagePrediction:
    """The 20 (or N) probabilities and pre-softmax fc8 values of one image, or the error that stopped it."""

    source: str
    class_names: tuple[str, ...]
    probabilities: Optional[np.ndarray] = None
    logits: Optional[np.ndarray] = None
    error: Optional[str] = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def top_k(self, k: int = 3) -> list[tuple[str, float]]:
        if not self.ok:
            return []
        return top_k(self.probabilities, self.class_names, k)

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON-friendly form: source, error, top1, and one probability per category."""
        row: dict[str, Any] = {"source": self.source, "error": self.error}
        if self.ok:
            row["top1"] = self.top_k(1)[0][0]
            row.update({name: float(p) for name, p in zip(self.class_names, self.probabilities)})
        return row


@dataclass
class FramePrediction:
    index: int
    timestamp_ms: float
    probabilities: np.ndarray
    logits: np.ndarray


@dataclass
class VideoPrediction:
    """Per-frame predictions of one video, and their mean (the video-level prediction of the ecco lab).

    ``error`` names the problem of a video that was not predicted (``frames`` is then empty: no
    prediction of a failed video is ever returned); ``damage`` says what was wrong with a damaged
    video whose decoded frames were kept (``damaged="keep"``), None for a healthy one.
    """

    source: str
    class_names: tuple[str, ...]
    frames: list[FramePrediction] = field(default_factory=list)
    error: Optional[str] = None
    damage: Optional[str] = None

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def mean_probabilities(self) -> Optional[np.ndarray]:
        if not self.frames:
            return None
        return np.mean([f.probabilities for f in self.frames], axis=0)

    @property
    def mean_logits(self) -> Optional[np.ndarray]:
        if not self.frames:
            return None
        return np.mean([f.logits for f in self.frames], axis=0)

    def top_k(self, k: int = 3) -> list[tuple[str, float]]:
        mean = self.mean_probabilities
        return [] if mean is None else top_k(mean, self.class_names, k)


def _source_name(item: ImageInput, position: int, unsupported: bool = False) -> str:
    """The name of one item in results and errors: its path, "<bytes #i>", "<array #i>" (an ndarray, a
    tf.Tensor, a nested list), else its type and index ("<int #3>", "<FakeNd #3>"). Raises whatever the
    item's ``__fspath__`` raises (TypeError for one that returns no str or bytes); `_iter_loaded` makes
    that the item's error."""
    if isinstance(item, (str, os.PathLike)):
        return os.fsdecode(os.fspath(item))
    if isinstance(item, (bytes, bytearray, memoryview)):
        return f"<bytes #{position}>"
    if unsupported or not isinstance(item, (np.ndarray, tf.Tensor, list, tuple)):
        return f"<{type(item).__name__} #{position}>"  # None, a number, another object: "<int #3>"
    return f"<array #{position}>"


def _describe(err: Exception) -> str:
    """An item's error text: our ValueErrors (ImageDecodeError, an array that is not an image) say what
    is wrong themselves; any other exception is named by its type ("TypeError: ...")."""
    if isinstance(err, ValueError):
        return str(err)
    return f"{type(err).__name__}: {err}"


def _check_items(items: Any, caller: str) -> None:
    """Refuses a single input passed where a list of inputs belongs: a path or bytes would otherwise be
    iterated into characters or byte values, and one H x W x 3 image array into its rows, each read as
    an image of its own. An array is taken as a batch only if it is N x H x W x C (4-D). Also refuses
    what is no list at all (None, a number) and a mapping (iterating it would predict its keys)."""
    if isinstance(items, (str, os.PathLike, bytes, bytearray, memoryview)):
        raise TypeError(
            f"{caller} takes a list of inputs, got a single {type(items).__name__}; wrap a single path as [path]"
        )
    if isinstance(items, collections.abc.Mapping):
        raise TypeError(
            f"{caller} takes a list of inputs, got a {type(items).__name__}; pass a list of its keys or values"
        )
    if isinstance(items, (np.ndarray, tf.Tensor)) and np.ndim(items) != 4:
        raise TypeError(
            f"{caller} takes a list of inputs or an N x H x W x C array of images, got an array of shape "
            f"{tuple(np.shape(items))}; wrap a single image array as [image]"
        )
    try:
        iter(items)
    except TypeError:
        raise TypeError(f"{caller} takes a list of inputs, got {type(items).__name__}") from None


def _check_options(batch_size: Any, workers: Any, exif_orientation: Any) -> tuple[int, Optional[int], Optional[bool]]:
    """The call's settings, checked before any work: batch_size a positive integer, workers None or a
    positive integer, exif_orientation None, True or False (numpy integers and bools are taken as such).
    Raises ValueError naming the argument and the value."""

    def positive_int(name: str, value: Any) -> int:
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
        return int(value)

    batch_size = positive_int("batch_size", batch_size)
    if workers is not None:
        workers = positive_int("workers", workers)
    if exif_orientation is not None:
        if not isinstance(exif_orientation, (bool, np.bool_)):
            raise ValueError(f"exif_orientation must be None, True or False, got {exif_orientation!r}")
        exif_orientation = bool(exif_orientation)
    return batch_size, workers, exif_orientation


class FramePredictionStream(Iterator[FramePrediction]):
    """The frame predictions of one video, in order, a batch of frames at a time.

    ``damage`` is None until the video was read to its end; then it says what was wrong with a
    damaged video kept under ``damaged="keep"`` (None for a healthy one). ``frames_decoded`` counts
    the video's decoded frames so far (the sampled ones are a subset), also after a failure.
    """

    def __init__(self, emonet: "EmoNet", path: Union[str, os.PathLike], sampling: Any, batch_size: int, damaged: str):
        from emonet_tf import video

        self.path = os.fspath(path)
        self.damage: Optional[str] = None
        self.frames_decoded = 0
        self._sampling = video.FrameSampling.parse(sampling) if isinstance(sampling, str) else sampling
        self._damaged = video.check_damaged_policy(damaged)
        self._emonet = emonet
        self._batch_size = batch_size
        self._predictions = self._run()

    def __iter__(self) -> "FramePredictionStream":
        return self

    def __next__(self) -> FramePrediction:
        return next(self._predictions)

    def _predict(self, frames: list) -> list[FramePrediction]:
        emonet = self._emonet
        images = np.stack([emonet.preprocessor.preprocess_array(f.image) for f in frames])
        logits = emonet.predict_logits(images)
        probs = tf.nn.softmax(logits).numpy()
        return [FramePrediction(f.index, f.timestamp_ms, p, l) for f, p, l in zip(frames, probs, logits)]

    def _run(self) -> Iterator[FramePrediction]:
        from emonet_tf import video

        frames_iter = video.iter_frames(self.path, self._sampling, damaged=self._damaged)
        frames: list = []
        failure = None
        try:
            for frame in frames_iter:
                frames.append(frame)
                if len(frames) == self._batch_size:
                    yield from self._predict(frames)
                    frames = []
        except video.VideoReadError as err:
            failure = err
        self.frames_decoded = frames_iter.frames_decoded
        if frames:
            yield from self._predict(frames)
        if failure is not None:
            raise failure
        self.damage = frames_iter.damage


class EmoNet:
    """EmoNet ready to predict: a classifier plus the preprocessing saved with it.

    Args:
      model: an `EmoNetClassifier` (softmax or logits; both are reported).
      resize_method, antialias: override the model's saved preprocessing (`model.preprocessor`, an
        `EmoNetPreprocessor`; MATLAB's imresize for weights that record none) for this object only;
        None keeps the model's. The model itself is not changed, so exporting it keeps its own.
      jit_compile: the forward pass's compiled path (`emonet_tf.forward.BatchSizeDispatch`): "auto"
        (default) runs a batch of one image that keeps coming through XLA (after
        `forward.XLA_AFTER_CALLS` calls on the graph) and larger batches through TensorFlow's
        oneDNN graph, the faster path for each on the machines of bench/README.md; True or False
        force XLA or the graph. Both give the same logits within float32 rounding (1e-4).

    Raises:
      ValueError: an unknown resize method, or jit_compile not "auto", True or False.
    """

    def __init__(
        self,
        model: EmoNetClassifier,
        resize_method: Optional[str] = None,
        antialias: Optional[bool] = None,
        jit_compile: Union[str, bool] = "auto",
    ):
        self.model = model
        self.preprocessor: EmoNetPreprocessor = resolve(getattr(model, "preprocessor", None), resize_method, antialias)
        self.class_names = tuple(model.class_names)
        logits_model = keras.Model(model.input, model.head.output, name="emonet_logits")
        # One image goes through XLA, batches through the oneDNN graph (forward.py, issue 15).
        self._logits = BatchSizeDispatch(
            lambda x: logits_model(x, training=False), (IMAGE_SIZE, IMAGE_SIZE, 3), jit_compile=jit_compile
        )
        self._activation_fns: dict[str, Any] = {}

    @property
    def resize_method(self) -> str:
        """The resize method of `self.preprocessor` ("matlab" or a tf.image.resize method)."""
        return self.preprocessor.resize_method

    @property
    def antialias(self) -> bool:
        """Whether `self.preprocessor` antialiases when shrinking (tf.image.resize methods)."""
        return self.preprocessor.antialias

    @classmethod
    def from_weights(
        cls,
        path: Union[str, os.PathLike],
        format: str = "auto",
        mean: Optional[Union[str, os.PathLike, np.ndarray]] = None,
        **kwargs,
    ) -> "EmoNet":
        """Loads any supported weight file (.keras, MATLAB text dump folder, .pth, ...) given by path.

        Nothing is downloaded: `path` must point at a file or folder on disk (see docs/weights.md).
        `mean` supplies the mean image for files that hold none (emonet-py and ecco .pth files):
        img_mean.txt, a Caffe .binaryproto, a .npy, or an array. The preprocessing is the one the file
        records (a `.keras` file saved by emonet_tf), else the default contract; `resize_method=` and
        `antialias=` in `kwargs` override it (see `EmoNet`). Raises WeightFormatError naming the file.
        """
        from emonet_tf import weights  # the importers are only needed here

        # A missing path raises WeightFormatError (a FileNotFoundError too), like read_weights.
        weight_set = weights.read_weights(os.fspath(path), format=format, mean=mean)
        if isinstance(weight_set, keras.Model):
            model = weight_set
        else:
            model = weights.build_classifier(weight_set)
        return cls(model, **kwargs)

    # -- arrays ------------------------------------------------------------------------------
    def predict_logits(self, images: np.ndarray) -> np.ndarray:
        """Pre-softmax fc8 values of preprocessed images (N x 227 x 227 x 3 in 0-255)."""
        return self._logits(tf.convert_to_tensor(images, tf.float32)).numpy()

    def predict_arrays(self, images: np.ndarray) -> np.ndarray:
        """Probabilities of preprocessed images (N x 227 x 227 x 3 in 0-255)."""
        return tf.nn.softmax(self.predict_logits(images)).numpy()

    # -- images ------------------------------------------------------------------------------
    def _load(self, item: ImageInput, source: str, exif_orientation: Optional[bool]) -> np.ndarray:
        """One input through `self.preprocessor` (EXIF orientation: None = the preprocessor's setting).

        Every failure (any Exception) raises ImageDecodeError naming `source`; an exception other than
        our ValueErrors is named by its type too ("<FakeNd #3>: TypeError: ...")."""
        preprocessor = self.preprocessor.replace(exif_orientation=exif_orientation)
        try:
            return preprocessor(item, source=source)
        except preprocessing.ImageDecodeError:
            raise
        except Exception as err:  # noqa: BLE001 - an array that is not an image, an odd object's own error
            raise preprocessing.ImageDecodeError(f"{source}: {_describe(err)}") from None

    def _iter_loaded(
        self,
        items: Iterable[ImageInput],
        lookahead: int,
        workers: Optional[int],
        exif_orientation: Optional[bool] = None,
    ) -> Iterator[tuple[str, Optional[np.ndarray], Optional[str]]]:
        """Yields (source, preprocessed image or None, error or None) in input order, decoding ahead in threads.

        An item that is no path, bytes or image array (None, a number: `preprocessor.unsupported_input`)
        gets an error naming its type and index ("<int #3>: unsupported input type int (...)"). Any
        Exception raised while naming, loading or preprocessing one item becomes that item's error;
        KeyboardInterrupt and other BaseExceptions propagate."""

        def job(item, source):
            try:
                return self._load(item, source, exif_orientation), None
            except preprocessing.ImageDecodeError as err:
                return None, str(err)
            except Exception as err:  # noqa: BLE001 - one item's failure is its error, not the call's
                return None, f"{source}: {_describe(err)}"

        def failed(error: str) -> concurrent.futures.Future:
            future: concurrent.futures.Future = concurrent.futures.Future()
            future.set_result((None, error))
            return future

        with concurrent.futures.ThreadPoolExecutor(max_workers=workers or min(8, os.cpu_count() or 1)) as pool:
            pending: collections.deque = collections.deque()
            for position, item in enumerate(items):
                try:
                    unsupported = unsupported_input(item)
                    source = _source_name(item, position, unsupported is not None)
                except Exception as err:  # noqa: BLE001 - e.g. a __fspath__ that raises or returns an int
                    source = f"<{type(item).__name__} #{position}>"
                    future = failed(f"{source}: {_describe(err)}")
                else:
                    if unsupported is None:
                        future = pool.submit(job, item, source)
                    else:
                        future = failed(f"{source}: {unsupported}")
                pending.append((source, future))
                if len(pending) >= lookahead:
                    source, future = pending.popleft()
                    yield (source, *future.result())
            while pending:
                source, future = pending.popleft()
                yield (source, *future.result())

    def iter_predict_images(
        self,
        items: Iterable[ImageInput],
        batch_size: int = 32,
        workers: Optional[int] = None,
        exif_orientation: Optional[bool] = None,
    ) -> Iterator[ImagePrediction]:
        """Streams one `ImagePrediction` per input, in order; unreadable inputs carry `error`.

        `items`: an iterable of paths, encoded bytes or RGB arrays, or an N x H x W x C array (N images).
        An item of another type (None, a number) is reported in its result's `error`, not raised.
        `exif_orientation=True` applies the EXIF Orientation tag of encoded inputs (paths, bytes) before
        resizing, False does not, None (default) follows `self.preprocessor` (off unless the model was
        saved with it on; MATLAB's imread ignores it: docs/preprocessing.md, "EXIF orientation").

        Every per-item problem (unreadable, undecodable, not an image, an array with NaN or values outside
        [0, 255], any exception an odd item raises) is that item's `error`, naming it (its path,
        "<bytes #i>", "<array #i>", "<int #i>"); arrays hold RGB values in [0, 255]. `workers`: decoding
        threads (None: up to 8, one per CPU).

        Raises (at the call, before the first result is asked for):
          TypeError: for a single input in place of a list (a str, os.PathLike, bytes, bytearray or
            memoryview: wrap it as [path]), an array that is not 4-D (wrap one image as [image]), a
            mapping (pass a list of its keys or values), or no iterable at all (None, a number).
          ValueError: for batch_size not a positive integer, workers not None or a positive integer, or
            exif_orientation not None, True or False; the message names the argument and the value.
        """
        _check_items(items, "iter_predict_images")
        batch_size, workers, exif_orientation = _check_options(batch_size, workers, exif_orientation)
        return self._iter_predictions(items, batch_size, workers, exif_orientation)

    def _iter_predictions(
        self, items: Iterable[ImageInput], batch_size: int, workers: Optional[int], exif_orientation: Optional[bool]
    ) -> Iterator[ImagePrediction]:
        batch: list[tuple[str, Optional[np.ndarray], Optional[str]]] = []

        def flush():
            good = [b for b in batch if b[2] is None]
            logits = self.predict_logits(np.stack([b[1] for b in good])) if good else np.zeros((0, 0))
            probs = tf.nn.softmax(logits).numpy() if good else logits
            results, j = [], 0
            for source, _, error in batch:
                if error is None:
                    results.append(ImagePrediction(source, self.class_names, probs[j], logits[j]))
                    j += 1
                else:
                    results.append(ImagePrediction(source, self.class_names, error=error))
            return results

        for loaded in self._iter_loaded(
            items, lookahead=2 * batch_size, workers=workers, exif_orientation=exif_orientation
        ):
            batch.append(loaded)
            if len(batch) == batch_size:
                yield from flush()
                batch = []
        if batch:
            yield from flush()

    def predict_images(
        self, items: Iterable[ImageInput], batch_size: int = 32, exif_orientation: Optional[bool] = None
    ) -> list[ImagePrediction]:
        """Predicts paths, encoded bytes or RGB arrays; one result per input, errors named, never raised.

        `items` and `exif_orientation=True`: see `iter_predict_images`. An unreadable or unsupported item
        (None, a number, an array that is not an RGB image in [0, 255], an object whose conversion fails)
        gets its result's `error`, naming the item; the call itself raises TypeError for a single path,
        bytes or image array passed in place of a list (wrap it: `predict_images([path])`), a mapping or a
        non-iterable (None, a number), and ValueError for batch_size not a positive integer or
        exif_orientation not None, True or False (the message names the argument and the value)."""
        _check_items(items, "predict_images")
        batch_size, _, exif_orientation = _check_options(batch_size, None, exif_orientation)
        return list(self._iter_predictions(items, batch_size, None, exif_orientation))

    # -- videos ------------------------------------------------------------------------------
    def iter_predict_video(
        self, path: Union[str, os.PathLike], sampling: Any = "every5", batch_size: int = 32, damaged: str = "skip"
    ) -> "FramePredictionStream":
        """Streams frame predictions of a video (sequential decode; memory does not grow with length).

        `sampling` is a `emonet_tf.video.FrameSampling` or its name ("every5" as the lab's MATLAB
        scripts, "fps10" as its PyTorch pipeline, "all"). `damaged` is the policy for a damaged video
        (decoder error, or a stream that ends before its own duration; `emonet_tf.video`): "skip"
        raises `VideoDamagedError` after the frames that decoded, which then belong to a video
        reported as failed (drop them, as `predict_video` does); "keep" ends normally and the
        returned iterator's `damage` says what was wrong. An unreadable video raises `VideoReadError`
        naming the file.
        """
        return FramePredictionStream(self, path, sampling, batch_size, damaged)

    def predict_video(
        self, path: Union[str, os.PathLike], sampling: Any = "every5", batch_size: int = 32, damaged: str = "skip"
    ) -> VideoPrediction:
        """All sampled frames of a video and their mean; an unreadable video sets `error` instead of raising.

        `damaged="skip"` (default): a damaged video sets `error` and has no frames. `"keep"`: its
        decoded frames are predicted and `damage` says what was wrong.
        """
        from emonet_tf import video

        result = VideoPrediction(os.fspath(path), self.class_names)
        stream = self.iter_predict_video(path, sampling, batch_size, damaged)
        try:
            for frame in stream:
                result.frames.append(frame)
        except video.VideoReadError as err:
            result.error = str(err)
            result.frames = []  # rows of a failed video are never returned
        result.damage = stream.damage
        return result

    # -- activations -------------------------------------------------------------------------
    def activation_model(self, layer: str):
        """A function from preprocessed images to the output of a named layer (conv1 ... relu7, fc8/fc, softmax)."""
        if layer not in self._activation_fns:
            sub = keras.Model(self.model.input, layer_output(self.model, layer))
            self._activation_fns[layer] = tf.function(
                lambda x: sub(x, training=False),
                input_signature=[tf.TensorSpec([None, IMAGE_SIZE, IMAGE_SIZE, 3], tf.float32)],
            )
        return self._activation_fns[layer]

    def activations(self, images: np.ndarray, layer: str) -> np.ndarray:
        """The named layer's output for preprocessed images (N x 227 x 227 x 3), NHWC for conv layers.

        Preprocess files with `emonet.preprocessor.load_image` (the CLI's `activations` does it for you).
        """
        if not isinstance(images, (np.ndarray, tf.Tensor)) or np.ndim(images) != 4:
            raise TypeError(
                "activations() takes preprocessed images, an N x 227 x 227 x 3 array; for files use "
                "np.stack([emonet.preprocessor.load_image(p) for p in paths])"
            )
        return self.activation_model(layer)(tf.convert_to_tensor(images, tf.float32)).numpy()


LOGIT_LAYERS = ("fc8", "fc")
PROBABILITY_LAYERS = ("predictions", "softmax", "prob")


def layer_names(model: EmoNetClassifier) -> list[str]:
    """The names `layer_output` takes, in network order: the backbone's (zerocenter ... relu7), fc8, softmax."""
    return [l.name for l in model.backbone.layers[1:]] + ["fc8", "softmax"]


def layer_output(model: EmoNetClassifier, layer: str):
    """The symbolic output of a named layer of `model`: a backbone layer (conv1 ... relu7, NHWC for conv
    layers), ``fc8``/``fc`` (logits) or ``softmax``/``predictions``/``prob`` (probabilities).

    One lookup for `EmoNet.activations` and `emonet_tf.extract`, so both name layers alike. Raises
    ValueError naming the choices for an unknown layer.
    """
    if layer in LOGIT_LAYERS:
        return model.head.output
    if layer in PROBABILITY_LAYERS:
        return model.output
    try:
        return model.backbone.get_layer(layer).output
    except ValueError:
        raise ValueError(f"Unknown layer {layer!r}; choose one of {', '.join(layer_names(model))}") from None
