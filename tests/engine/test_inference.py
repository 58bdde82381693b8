"""Inference on many images (engine/nn/inference.py): ONNX Runtime where it runs the design, the
engine's forward where it cannot, the same numbers either way, and never a stale session."""

from __future__ import annotations

import numpy as np
import pytest

from engine.errors import DataError
from engine.nn import inference
from engine.nn.inference import ENGINE, ORT, infer, infer_by
from engine.nn.network import Network
from engine.nn.optim import make_optimizer
from engine.nn.train import evaluate
from engine.onnx import runtime
from engine.zoo.examples import load_example

pytest.importorskip("onnxruntime")


def _net(name: str, seed: int = 0) -> Network:
    net = Network.compile(load_example(name), np.random.default_rng(seed))
    rng = np.random.default_rng(seed + 1)
    for layer in net.layers.values():  # non-trivial BatchNorm statistics and affine weights
        for k, w in layer.weights.items():
            if k == "running_var":
                w[...] = rng.uniform(0.5, 2.0, w.shape)
            elif k == "running_mean" or (k in ("weight", "bias") and w.ndim == 1):
                w[...] = rng.uniform(-0.5, 0.5, w.shape) + (k == "weight")
    return net


def _images(net: Network, n: int, seed: int = 3) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 1, (n, *net.input_shape)).astype(np.float32)


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(a.astype(np.float64) - b)) / max(float(np.max(np.abs(b))), 1e-12))


@pytest.mark.parametrize("name", ["lenet5", "small_resnet", "mobile_se", "small_vgg"])
@pytest.mark.parametrize("logits", [False, True])
def test_onnx_runtime_gives_the_engine_forward(name, logits):
    net = _net(name)
    x = _images(net, 70)
    out, by = infer_by(net, x, batch_size=32, logits=logits)
    assert by == ORT
    want = net.forward(x, logits=logits)
    assert out.shape == want.shape == (70, *net.output_shape)
    assert _rel(out, want) < 1e-5
    assert np.array_equal(out.argmax(axis=1), want.argmax(axis=1))


def test_logits_stop_before_the_final_softmax():
    net = _net("lenet5")
    assert net.ends_in_softmax
    x = _images(net, 40)
    probs, logits = infer(net, x), infer(net, x, logits=True)
    assert np.allclose(probs.sum(axis=1), 1, atol=1e-5)
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    np.testing.assert_allclose(e / e.sum(axis=1, keepdims=True), probs, rtol=1e-4, atol=1e-6)
    assert not np.allclose(logits.sum(axis=1), 1, atol=1e-3)


def test_a_weight_change_is_never_served_a_stale_session():
    """After an optimizer step, a loaded state and a single changed value, the outputs are the
    new weights' (the session is keyed by the weights' values, not by the network object)."""
    net = _net("small_resnet")
    x = _images(net, 64)
    before = infer(net, x)
    from engine.nn.losses import softmax_cross_entropy

    opt = make_optimizer("adam", net.parameters(), lr=0.05)
    z = net.forward(x, training=True, logits=True)
    _, dz = softmax_cross_entropy(z, np.arange(64) % 10)
    net.backward(dz, from_logits=True, input_grad=False)
    opt.step()
    after, by = infer_by(net, x)
    assert by == ORT and _rel(after, before) > 1e-3
    assert _rel(after, net.forward(x)) < 1e-5
    state = _net("small_resnet", seed=7).state_dict()
    net.load_state_dict(state)
    assert _rel(infer(net, x), net.forward(x)) < 1e-5
    w = next(layer.weights["weight"] for layer in net.layers.values()
             if layer.type_name == "Linear")
    w[0, 0] += 5.0  # one value, in place
    assert _rel(infer(net, x), net.forward(x)) < 1e-5


def test_a_network_keeps_one_session(monkeypatch):
    """A network's older sessions are dropped when its weights change; the same weights reuse
    the kept session."""
    runtime.clear_sessions()
    built = []
    real = runtime.OnnxModel

    def counting(*args, **kwargs):
        built.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(runtime, "OnnxModel", counting)
    net = _net("lenet5")
    x = _images(net, 40)
    infer(net, x)
    infer(net, x)
    assert len(built) == 1
    net.layers[net.order[1]].weights["weight"][...] *= 0.5
    infer(net, x)
    assert len(built) == 2
    mine = [k for k in runtime._SESSIONS if k[0] == "revision" and k[1][0] == "inference"
            and k[1][1] == net._infer_serial]
    assert len(mine) == 1


def test_a_few_images_use_the_engine_until_a_session_is_kept():
    net = _net("lenet5")
    few = _images(net, inference.MIN_BATCH - 1)
    out, by = infer_by(net, few)
    assert by == ENGINE and np.array_equal(out, net.forward(few))
    infer(net, _images(net, inference.MIN_BATCH))  # builds the session
    out, by = infer_by(net, few)
    assert by == ORT and _rel(out, net.forward(few)) < 1e-5


def test_float64_networks_and_no_onnxruntime_use_the_engine(monkeypatch):
    net = _net("lenet5")
    x = _images(net, 50)
    monkeypatch.setattr(inference, "_have_onnxruntime", lambda: False)
    out, by = infer_by(net, x)
    assert by == ENGINE and np.array_equal(out, net.forward(x))
    monkeypatch.undo()
    for layer in net.layers.values():
        for k in list(layer.weights):
            layer.weights[k] = layer.weights[k].astype(np.float64)
    out, by = infer_by(net, x)
    assert by == ENGINE


def test_a_design_onnx_runtime_refuses_runs_in_the_engine(monkeypatch):
    calls = []

    def refuse(*args, **kwargs):
        calls.append(1)
        raise DataError("ONNX Runtime cannot load the model: test")

    monkeypatch.setattr(runtime, "graph_model", refuse)
    net = _net("lenet5")
    x = _images(net, 50)
    for _ in range(2):
        out, by = infer_by(net, x)
        assert by == ENGINE and np.array_equal(out, net.forward(x))
    assert len(calls) == 1  # not asked again for this network


def test_wrong_input_shape_is_a_clear_error():
    net = _net("lenet5")
    with pytest.raises(ValueError, match="expects input N×1×28×28"):
        infer(net, np.zeros((40, 1, 27, 28), np.float32))


def test_empty_input_gives_an_empty_batch():
    net = _net("lenet5")
    out = infer(net, np.zeros((0, *net.input_shape), np.float32))
    assert out.shape == (0, *net.output_shape)


def test_evaluate_and_predict_agree_with_the_forward():
    net = _net("small_resnet")
    x = _images(net, 300)
    y = np.random.default_rng(9).integers(0, 10, 300)
    loss, acc, pred = evaluate(net, x, y)
    z = net.forward(x, logits=True)
    assert np.array_equal(pred, z.argmax(axis=1))
    from engine.nn.losses import softmax_cross_entropy

    assert loss == pytest.approx(softmax_cross_entropy(z, y)[0], rel=1e-5)
    assert acc == pytest.approx(float((z.argmax(axis=1) == y).mean()))
    assert _rel(net.predict(x), net.forward(x)) < 1e-5
