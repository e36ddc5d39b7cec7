"""The whole path a user takes, on the corpus' real formats: videos -> TFDS records -> train.py -> serving.

1. The cowen_keltner builder turns the committed dummy corpus (0001.mp4 ..., the released split
   CSVs and the ratings table) into frame records (emonet20_every5).
2. `train.py` (absl flags, in a subprocess as a user runs it) starts from an ImageNet AlexNet
   written in the published bvlc_alexnet.npy layout, trains the paper's head-only recipe for a
   few steps, evaluates on the test split and exports.
3. The SavedModel, loaded by a fresh interpreter that never imports emonet_tf, gives the same
   probabilities on the test frames' JPEG bytes as the exported .keras model in the library.
"""

import json
import pathlib
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow_datasets as tfds

import reference
from tfds_builders.cowen_keltner import cowen_keltner_dataset_builder as ck

REPO = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("tfds")
    builder = ck.Builder(data_dir=str(data_dir), config="emonet20_every5")
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir=str(ck.Builder.code_path.parent / "dummy_data"))
    )
    return builder


def test_corpus_to_trained_served_model(corpus, tmp_path):
    layers = reference.caffe_tensorflow_layers(reference.random_weights(seed=3, num_classes=1000))
    weights = reference.write_bvlc_npy(layers, str(tmp_path / "bvlc_alexnet.npy"))
    model_dir = tmp_path / "run"
    flagfile = tmp_path / "flags.txt"
    flagfile.write_text(
        "\n".join(
            [
                f"--dataset={corpus.data_path}",
                f"--model_dir={model_dir}",
                "--init=imagenet",
                f"--weights={weights}",
                "--train_layers=fc8",
                "--global_batch_size=4",
                "--epochs=1",
                "--log_every=1",
                "--checkpoint_every=2",
            ]
        )
    )
    proc = subprocess.run(
        [sys.executable, str(REPO / "train.py"), f"--flagfile={flagfile}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]

    metrics = json.loads((model_dir / "eval" / "eval_metrics.json").read_text())
    test_frames = corpus.info.splits["test"].num_examples
    assert metrics["num_examples"] == test_frames > 0
    assert 0.0 <= metrics["top1"] <= metrics["top5"] <= 1.0
    for png in ("eval_confusion.png", "eval_auc.png"):
        assert (model_dir / "eval" / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # The test frames as a server receives them: the JPEG bytes stored in the records.
    ds = corpus.as_dataset(split="test", shuffle_files=False, decoders={"image": tfds.decode.SkipDecoding()})
    jpegs = [ex["image"] for ex in tfds.as_numpy(ds)]
    np.save(tmp_path / "jpegs.npy", np.array(jpegs, dtype=object), allow_pickle=True)
    script = textwrap.dedent(f"""
        import sys, numpy as np, tensorflow as tf
        served = tf.saved_model.load({str(model_dir / "export" / "saved_model")!r})
        jpegs = np.load({str(tmp_path / "jpegs.npy")!r}, allow_pickle=True)
        out = served.signatures["serving_default"](images_bytes=tf.constant(list(jpegs)))
        np.save({str(tmp_path / "served.npy")!r}, out["probabilities"].numpy())
        assert not any(m.startswith("emonet_tf") for m in sys.modules), "the SavedModel must not need emonet_tf"
    """)
    served = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600)
    assert served.returncode == 0, served.stderr[-4000:]

    import keras

    from emonet_tf import EmoNet

    trained = keras.saving.load_model(model_dir / "export" / "emonet.keras")
    expected = np.stack([p.probabilities for p in EmoNet(trained).predict_images(jpegs)])
    np.testing.assert_allclose(np.load(tmp_path / "served.npy"), expected, atol=1e-5)
    # The frozen ImageNet backbone came through training and export intact; the head has the corpus' classes.
    np.testing.assert_allclose(trained.backbone.get_layer("conv2").kernel.numpy(), layers["conv2"][0], rtol=1e-6)
    assert trained.class_names == tuple(corpus.info.features["label"].names)
