"""The forward pass's compiled path by batch size (emonet_tf.forward, issue 15)."""

import numpy as np
import pytest
import tensorflow as tf

from emonet_tf import forward
from emonet_tf.forward import BatchSizeDispatch


def _dense():
    kernel = tf.constant(np.random.default_rng(0).normal(size=(6, 4)).astype("float32"))
    return lambda x: tf.nn.relu(tf.reshape(x, [-1, 6]) @ kernel)


@pytest.mark.parametrize(
    "jit, sizes",
    [("auto", {1: "xla", 2: "graph", 64: "graph"}), (True, {1: "xla", 16: "xla"}), (False, {1: "graph", 16: "graph"})],
)
def test_path_by_batch_size(jit, sizes):
    dispatch = BatchSizeDispatch(_dense(), (2, 3), jit_compile=jit, xla_after_calls=0)
    assert {b: dispatch.path(b) for b in sizes} == sizes


def test_auto_compiles_only_a_batch_size_that_keeps_coming():
    dispatch = BatchSizeDispatch(_dense(), (2, 3), xla_max_batch=1, xla_after_calls=2)
    x = np.ones((1, 2, 3), "float32")
    paths = []
    for _ in range(4):
        paths.append(dispatch.path(1))
        dispatch(x)
    assert paths == ["graph", "graph", "xla", "xla"]
    assert dispatch.xla.experimental_get_tracing_count() == 1


def test_both_paths_run_and_agree():
    dispatch = BatchSizeDispatch(_dense(), (2, 3), jit_compile="auto", xla_max_batch=2, xla_after_calls=0)
    x = np.random.default_rng(1).normal(size=(5, 2, 3)).astype("float32")
    small, large = dispatch(x[:2]).numpy(), dispatch(x).numpy()
    # The batch of 2 was traced by the XLA function only, the batch of 5 by the graph only.
    assert dispatch.xla.experimental_get_tracing_count() == 1
    assert dispatch.graph.experimental_get_tracing_count() == 1
    np.testing.assert_allclose(small, large[:2], atol=1e-5)


@pytest.mark.parametrize(
    "bad", ["xla", "yes", "", 1, 0, 1.0, None, np.int64(1), np.array(["auto"]), np.array([True]), b"auto"]
)
def test_bad_jit_compile_is_refused(bad):
    with pytest.raises(ValueError, match="jit_compile"):
        BatchSizeDispatch(_dense(), (2, 3), jit_compile=bad)


@pytest.mark.parametrize(
    "given, expected", [(np.bool_(True), True), (np.bool_(False), False), (True, True), ("auto", "auto")]
)
def test_numpy_bool_jit_compile_is_a_plain_bool(given, expected):
    import json

    checked = forward.check_jit_compile(given)
    assert checked == expected and type(checked) is type(expected)
    dispatch = BatchSizeDispatch(_dense(), (2, 3), jit_compile=given)
    assert type(dispatch.jit_compile) is type(expected)
    assert json.loads(json.dumps({"jit_compile": dispatch.jit_compile})) == {"jit_compile": expected}
    assert dispatch.path(5) == ("xla" if expected is True else "graph")


def test_emonet_one_image_through_xla_equals_the_graph(tmp_path):
    import keras

    from emonet_tf import EmoNetClassifier
    from emonet_tf.inference import EmoNet

    keras.utils.set_random_seed(0)
    model = EmoNetClassifier()
    auto, graph = EmoNet(model), EmoNet(model, jit_compile=False)
    images = np.random.default_rng(2).uniform(0, 255, (3, 227, 227, 3)).astype("float32")
    for _ in range(forward.XLA_AFTER_CALLS):  # a one-off image stays on the graph
        first = auto.predict_logits(images[:1])
    assert auto._logits.xla.experimental_get_tracing_count() == 0
    one = auto.predict_logits(images[:1])
    assert auto._logits.xla.experimental_get_tracing_count() == 1
    np.testing.assert_allclose(one, first, atol=1e-4, rtol=1e-4)
    np.testing.assert_allclose(one, graph.predict_logits(images[:1]), atol=1e-4, rtol=1e-4)
    np.testing.assert_allclose(auto.predict_logits(images), graph.predict_logits(images), atol=1e-4, rtol=1e-4)
    assert forward.XLA_MAX_BATCH >= 1
    with pytest.raises(ValueError, match="jit_compile"):
        EmoNet(model, jit_compile="fast")
