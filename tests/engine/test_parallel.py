"""Data-parallel training steps (engine/nn/parallel.py): a batch cut into shards, run by copies
of the layers in threads, gives the one-thread step's loss, logits, weight gradients and
BatchNorm running statistics (to float32 rounding), for uneven shards, BatchNorm on NCHW, CHWN
and flat inputs, residual nets, with and without the compiled kernels; a failing shard raises
its own error without hanging the others; small steps are not cut."""

from __future__ import annotations

import numpy as np
import pytest

from engine.graph import sequential
from engine.nn import kernels, parallel
from engine.nn.losses import softmax_cross_entropy
from engine.nn.network import Network
from engine.nn.train import TrainConfig, train
from engine.zoo.examples import load_example


def bn_graph(p_drop=0.0):
    return sequential([
        ("Input", "input", {"channels": 3, "height": 8, "width": 8}),
        ("BatchNorm2d", "bn_in", {}),  # on the NCHW input
        ("Conv2d", "conv1", {"out_channels": 16, "kernel_size": 3, "padding": [1, 1, 1, 1]}),
        ("BatchNorm2d", "bn1", {}),  # on a convolution's CHWN output
        ("ReLU", "relu1", {}),
        ("Conv2d", "conv2", {"out_channels": 16, "kernel_size": 3, "padding": [1, 1, 1, 1]}),
        ("BatchNorm2d", "bn2", {}),
        ("ReLU", "relu2", {}),
        ("MaxPool2d", "pool", {"kernel_size": 2}),
        ("Flatten", "flatten", {}),
        ("Linear", "fc1", {"out_features": 12}),
        ("BatchNorm2d", "bn_flat", {}),  # BatchNorm1d's use
        ("ReLU", "relu3", {}),
        ("Dropout", "drop", {"p": p_drop}),
        ("Linear", "fc2", {"out_features": 5}),
    ])


def one_thread_step(net, x, y):
    z = net.forward(x, training=True, logits=True)
    loss, dz = softmax_cross_entropy(z, y)
    net.backward(dz, from_logits=True, input_grad=False)
    return loss, z


def grads(net):
    return {f"{nid}.{k}": g.copy() for nid, layer in net.layers.items()
            for k, g in layer.grads.items()}


def compare(graph, x, y, shards, seed=0):
    """(one thread, sharded) loss, logits, gradients and state of the same net and batch."""
    out = []
    for n in (1, shards):
        net = Network.compile(graph, rng=np.random.default_rng(seed))
        if n == 1:
            loss, z = one_thread_step(net, x, y)
        else:
            runner = parallel.Runner(net, n)
            loss, z = runner.step(x, y)
            # the replicas handed their gradients over: one set is kept, the net's
            assert not any(layer.grads for r in runner.replicas for layer in r.layers.values())
        out.append((loss, z, grads(net), net.state_dict()))
    return out


def assert_same(a, b, rtol=1e-4):
    (l1, z1, g1, s1), (l2, z2, g2, s2) = a, b
    assert l2 == pytest.approx(l1, rel=1e-5)
    np.testing.assert_allclose(z2, z1, rtol=rtol, atol=rtol * np.abs(z1).max())
    assert g1.keys() == g2.keys()
    # a bias before BatchNorm has a gradient of zero up to rounding: judged on the net's scale
    scale = max(np.abs(g).max() for g in g1.values())
    for k in g1:
        np.testing.assert_allclose(g2[k], g1[k], rtol=rtol,
                                   atol=max(rtol * np.abs(g1[k]).max(), 1e-6 * scale),
                                   err_msg=k)
    for k in s1:  # the running statistics: updated once, with the whole batch's
        np.testing.assert_allclose(s2[k], s1[k], rtol=1e-5, atol=1e-6, err_msg=k)


@pytest.mark.parametrize("kernels_on", [True, False])
@pytest.mark.parametrize("shards,batch", [(2, 20), (3, 26)])
def test_sharded_step_equals_one_thread(monkeypatch, kernels_on, shards, batch):
    if not kernels_on:
        monkeypatch.setenv(kernels.ENV, "numpy")
    else:
        monkeypatch.delenv(kernels.ENV, raising=False)
    rng = np.random.default_rng(1)
    x = (rng.standard_normal((batch, 3, 8, 8)) * 2 + 1).astype(np.float32)
    y = rng.integers(0, 5, batch)
    a, b = compare(bn_graph(), x, y, shards)
    assert_same(a, b)


def test_residual_net_sharded(monkeypatch):
    monkeypatch.delenv(kernels.ENV, raising=False)
    rng = np.random.default_rng(2)
    x = rng.random((18, 3, 32, 32), dtype=np.float32)
    y = rng.integers(0, 10, 18)
    a, b = compare(load_example("small_resnet"), x, y, 2)
    assert_same(a, b)


def test_a_failing_shard_raises_its_own_error(monkeypatch):
    net = Network.compile(bn_graph(), rng=np.random.default_rng(0))
    runner = parallel.Runner(net, 2)
    bad = runner.replicas[0].layers["conv2"]

    def broken(xs, training=False):
        raise RuntimeError("conv2 broke in shard 1")

    monkeypatch.setattr(bad, "forward", broken)
    x = np.zeros((16, 3, 8, 8), np.float32)
    with pytest.raises(RuntimeError, match="shard 1"):  # not BrokenBarrierError, no hang
        runner.step(x, np.zeros(16, int))
    monkeypatch.undo()  # the runner works again afterwards
    loss, z = runner.step(x, np.zeros(16, int))
    assert np.isfinite(loss) and z.shape == (16, 5)


def _slow(monkeypatch, layer, seconds):
    real = layer.backward

    def slow(dy):
        import time
        time.sleep(seconds)
        return real(dy)

    monkeypatch.setattr(layer, "backward", slow)


def test_weight_gradients_are_worked_off_while_a_shard_waits(monkeypatch):
    """A conv's weight gradient is handed over for later; the shard that reaches a BatchNorm
    first computes it while it waits there (here shard 0: shard 1 is held back), never more
    than MAX_PENDING are held, and the gradients equal the one-thread step's."""
    rng = np.random.default_rng(6)
    x = (rng.standard_normal((20, 3, 8, 8)) * 2 + 1).astype(np.float32)
    y = rng.integers(0, 5, 20)
    net = Network.compile(bn_graph(), rng=np.random.default_rng(0))
    want = one_thread_step(net, x, y), grads(net)
    net = Network.compile(bn_graph(), rng=np.random.default_rng(0))
    runner = parallel.Runner(net, 2)
    _slow(monkeypatch, runner.replicas[0].layers["relu1"], 0.05)  # shard 1, above bn1
    where, pending = [], []
    sums_add, one, later = parallel._Sums.add, parallel.ShardSync._one, parallel.ShardSync.later
    inside = set()

    def add(self, k, arrays, busy=None):
        inside.add(k)
        try:
            return sums_add(self, k, arrays, busy)
        finally:
            inside.discard(k)

    def spy_one(self):
        if self.pending:
            where.append((self.k, self.pending[0][0].name, self.k in inside))
        return one(self)

    def spy_later(self, layer, work):
        later(self, layer, work)
        pending.append(len(self.pending))

    monkeypatch.setattr(parallel._Sums, "add", add)
    monkeypatch.setattr(parallel.ShardSync, "_one", spy_one)
    monkeypatch.setattr(parallel.ShardSync, "later", spy_later)
    loss, z = runner.step(x, y)
    # conv2's gradient, handed over before bn1's backward, done by shard 0 while waiting there
    assert (0, "conv2", True) in where
    assert {(k, n) for k, n, _ in where} == {(k, n) for k in (0, 1) for n in ("conv1", "conv2")}
    assert pending and max(pending) <= parallel.MAX_PENDING
    assert_same(want[0] + (want[1], {}), (loss, z, grads(net), {}))


def test_a_failing_deferred_gradient_raises_its_own_error(monkeypatch):
    net = Network.compile(bn_graph(), rng=np.random.default_rng(0))
    runner = parallel.Runner(net, 2)
    bad = runner.replicas[0].layers["conv2"]

    def broken(*a):
        raise RuntimeError("conv2's weight gradient broke in shard 1")

    monkeypatch.setattr(bad, "_weight_grad", broken)
    x = np.ones((16, 3, 8, 8), np.float32)
    with pytest.raises(RuntimeError, match="weight gradient broke"):  # no hang
        runner.step(x, np.zeros(16, int))
    monkeypatch.undo()
    loss, _ = runner.step(x, np.zeros(16, int))
    assert np.isfinite(loss)
    assert all(layer.defer is None for r in runner.replicas
               for layer in r.layers.values() if hasattr(layer, "defer"))


def test_small_steps_and_one_thread_are_not_cut(monkeypatch):
    net = Network.compile(bn_graph(), rng=np.random.default_rng(0))
    monkeypatch.setattr(kernels, "threads", lambda: 2)
    assert parallel.runner(net, 64).n == 1  # 64 × ~0.2 M multiply-adds: below MIN_MACS
    monkeypatch.setattr(parallel, "MIN_MACS", 0)
    assert parallel.runner(net, 64).n == 2
    assert parallel.runner(net, 2 * parallel.MIN_SHARD - 1).n == 1
    monkeypatch.setenv(parallel.ENV, "0")
    assert parallel.runner(net, 64) is None
    monkeypatch.delenv(parallel.ENV)
    monkeypatch.setattr(kernels, "threads", lambda: 1)
    assert parallel.runner(net, 64) is None


def test_a_step_too_small_to_cut_runs_on_this_thread_alone(monkeypatch):
    """A one-shard Runner: the plain step's numbers, with the kernels and OpenBLAS at one
    thread while it runs (no pool thread woken at each call) and as before afterwards."""
    from threadpoolctl import threadpool_info

    rng = np.random.default_rng(5)
    x = rng.standard_normal((16, 3, 8, 8)).astype(np.float32)
    y = rng.integers(0, 5, 16)
    net = Network.compile(bn_graph(), rng=np.random.default_rng(0))
    state = net.state_dict()
    want = one_thread_step(net, x, y)
    grads = {nid: {k: g.copy() for k, g in layer.grads.items()} for nid, layer in net.layers.items()}
    net.load_state_dict(state)
    monkeypatch.setattr(kernels, "threads", lambda: 1 if kernels._LOCAL.__dict__.get("one")
                        else 2)
    seen = []
    conv = net.layers["conv2"]
    forward = conv.forward

    def spy(xs, training=False):
        seen.append((kernels.threads(), [i["num_threads"] for i in threadpool_info()
                                         if i["user_api"] == "blas"]))
        return forward(xs, training)

    monkeypatch.setattr(conv, "forward", spy)
    blas_before = [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]
    runner = parallel.runner(net, len(x))
    assert runner.n == 1
    loss, z = runner.step(x, y)
    assert seen == [(1, [1] * len(blas_before))]
    assert [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"] \
        == blas_before
    assert loss == pytest.approx(want[0], rel=1e-6)
    np.testing.assert_array_equal(z, want[1])
    for nid, layer in net.layers.items():
        for k, g in layer.grads.items():
            np.testing.assert_array_equal(g, grads[nid][k])


def test_training_in_shards_learns_as_one_thread(monkeypatch):
    """The training loop with sharded steps: the same epochs' losses as one thread (Dropout
    off: its masks come from a generator per shard), and a seeded run repeats exactly."""
    rng = np.random.default_rng(3)
    x = (rng.standard_normal((96, 3, 8, 8))).astype(np.float32)
    y = rng.integers(0, 5, 96)
    cfg = TrainConfig(epochs=2, batch_size=32, lr=0.01, optimizer="adam", seed=0,
                      val_split=0.0)
    monkeypatch.setattr(kernels, "threads", lambda: 2)

    def losses(min_macs, p_drop=0.0):
        monkeypatch.setattr(parallel, "MIN_MACS", min_macs)
        net = Network.compile(bn_graph(p_drop), rng=np.random.default_rng(0))
        return [e.train_loss for e in train(net, x, y, cfg).epochs]

    one, sharded = losses(float("inf")), losses(0)
    np.testing.assert_allclose(sharded, one, rtol=1e-4)
    assert losses(0, 0.3) == losses(0, 0.3)


@pytest.mark.parametrize("name", ["adam", "sgd"])
def test_optimizer_split_over_threads_is_bit_identical(monkeypatch, name):
    """The parameters dealt into groups, one per thread, get exactly the one-thread update
    (each update is element-wise and touches only its own arrays)."""
    from engine.nn import optim

    rng = np.random.default_rng(4)
    x = rng.standard_normal((16, 3, 8, 8)).astype(np.float32)
    y = rng.integers(0, 5, 16)
    out = []
    for threads, split in ((1, 1 << 40), (3, 1)):
        monkeypatch.setattr(optim, "SPLIT_PARAMS", split)
        net = Network.compile(bn_graph(), rng=np.random.default_rng(0))
        opt = optim.make_optimizer(name, net.parameters(), weight_decay=1e-3)
        for _ in range(3):
            monkeypatch.setattr(kernels, "threads", lambda: 1)
            one_thread_step(net, x, y)
            monkeypatch.setattr(kernels, "threads", lambda t=threads: t)
            opt.step()
        out.append(net.state_dict())
    for k in out[0]:
        assert np.array_equal(out[0][k], out[1][k]), k
