"""Output ports: a layer with several outputs (TestChunk, declared in tests/multi_output.py)
through the graph JSON, validation, the network's forward and backward, ONNX export, PyTorch
code, the summary, block detection and fine-tune splitting; and older graph files migrating."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest

from engine.errors import GraphError
from engine.graph import FORMAT_VERSION, Edge, Graph, parse_port_ref, port_ref
from engine.nn.network import Network
from engine.project import load_project
from engine.summary import format_summary, summarize, to_json
from engine.validate import validate
from engine.zoo.examples import load_example
from tests.engine.test_gradients import float64_network, numeric_grad
from tests.multi_output import CHUNK, chunk_layer  # noqa: F401  (the fixture)

DATA = Path(__file__).resolve().parent.parent / "data"
pytestmark = pytest.mark.usefixtures("chunk_layer")  # TestChunk registered for each test


def chunk_graph(chunks: int = 3) -> Graph:
    """input ─ conv ─ chunk ─┬ :0 ─ conv_a ───────┐
                             ├ :1 ─ relu ──────────┤
                             ├ :1 ─ tanh ──────────┼ concat ─ pool ─ flatten ─ fc
                             └ :2 ─────────────────┘
    Output 1 feeds two layers (their gradients add up), output 2 feeds the concat directly."""
    g = Graph("chunks")
    add = g.add_node
    add("Input", "input", {"channels": 2, "height": 4, "width": 4}, node_id="input")
    add("Conv2d", "conv", {"out_channels": 6, "kernel_size": 3, "padding": 1}, node_id="conv")
    add(CHUNK, "chunk", {"chunks": chunks}, node_id="chunk")
    add("Conv2d", "conv_a", {"out_channels": 2, "kernel_size": 1}, node_id="conv_a")
    add("Tanh", "tanh", {}, node_id="tanh")
    add("Sigmoid", "sigmoid", {}, node_id="sigmoid")
    add("Concat", "concat", {}, node_id="concat")
    add("AvgPool2d", "pool", {"kernel_size": 2}, node_id="pool")
    add("Flatten", "flatten", {}, node_id="flatten")
    add("Linear", "fc", {"out_features": 3}, node_id="fc")
    g.add_edge("input", "conv")
    g.add_edge("conv", "chunk")
    g.add_edge("chunk", "conv_a", src_port=0)
    g.add_edge("chunk", "tanh", src_port=1)
    g.add_edge("chunk", "sigmoid", src_port=1)
    for src in ("conv_a", "tanh", "sigmoid"):
        g.add_edge(src, "concat")
    g.add_edge("chunk", "concat", src_port=2)
    for a, b in [("concat", "pool"), ("pool", "flatten"), ("flatten", "fc")]:
        g.add_edge(a, b)
    return g


# ---- graph and JSON -----------------------------------------------------------------------

@pytest.mark.parametrize("nid, port, text", [
    ("conv1", 0, "conv1"), ("split1", 1, "split1:1"), ("a:b", 0, "a:b:0"), ("x:2", 3, "x:2:3"),
    ("x:", 0, "x::0")])
def test_port_references_round_trip(nid, port, text):
    assert port_ref(nid, port) == text
    assert parse_port_ref(text) == (nid, port)


def test_json_names_output_ports_and_round_trips():
    g = chunk_graph()
    data = g.to_json()
    assert data["version"] == FORMAT_VERSION == 2
    assert ["chunk:1", "tanh", 0] in data["edges"]
    assert ["chunk:2", "concat", 3] in data["edges"]
    assert ["conv", "chunk", 0] in data["edges"]  # output 0: the bare id, as in version 1
    back = Graph.from_json(json.loads(json.dumps(data)))
    assert back.edges == g.edges
    assert back.to_json() == data
    assert Edge("chunk", "concat", 3, 2) in back.edges
    assert back.input_refs("concat") == [("conv_a", 0), ("tanh", 0), ("sigmoid", 0),
                                         ("chunk", 2)]


def test_object_edges_and_ids_with_colons_read_back():
    g = Graph()
    g.add_node("Input", "in", {"channels": 4, "height": 2, "width": 2}, node_id="in:put")
    g.add_node(CHUNK, "c", {}, node_id="c:1")
    g.add_node("ReLU", "r", {}, node_id="r")
    g.add_edge("in:put", "c:1")
    g.add_edge("c:1", "r", src_port=1)
    data = g.to_json()
    assert data["edges"] == [["in:put:0", "c:1", 0], ["c:1:1", "r", 0]]
    assert Graph.from_json(data).edges == g.edges
    data["edges"] = [{"src": "in:put", "dst": "c:1"},
                     {"src": "c:1", "dst": "r", "port": 0, "src_port": 1}]
    assert Graph.from_json(data).edges == g.edges


def test_version_1_ids_are_taken_literally():
    """Version 1 had no ports: a source "a:1" there is the node "a:1", never output 1 of "a"."""
    v1 = {"format": "cnn-designer-graph", "version": 1, "nodes": [
        {"id": "a", "type": "Input", "params": {"channels": 1, "height": 4, "width": 4}},
        {"id": "a:1", "type": "ReLU"}, {"id": "b", "type": "ReLU"}],
        "edges": [["a", "a:1", 0], ["a:1", "b"]]}
    g = Graph.from_json(v1)
    assert g.edges == [Edge("a", "a:1", 0, 0), Edge("a:1", "b", 0, 0)]
    assert Graph.from_json(g.to_json()).edges == g.edges


def test_newer_version_and_bad_ports_are_refused():
    with pytest.raises(GraphError, match="newer"):
        Graph.from_json({"version": FORMAT_VERSION + 1, "nodes": [], "edges": []})
    data = {"nodes": [{"id": "a", "type": "ReLU"}, {"id": "b", "type": "ReLU"}],
            "edges": [{"src": "a", "dst": "b", "src_port": -1}]}
    with pytest.raises(GraphError, match="src_port must be a whole number"):
        Graph.from_json(data)


def test_can_connect_knows_the_output_ports():
    g = chunk_graph(chunks=3)
    ok, why = g.can_connect("chunk", "fc", src_port=3)
    assert not ok
    assert why == "TestChunk 'chunk' has 3 outputs (ports 0 to 2); there is no output port 3"
    with pytest.raises(GraphError, match="no output port 5"):
        g.add_edge("chunk", "pool", src_port=5)
    ok, why = g.can_connect("chunk", "tanh", src_port=1)
    assert not ok and why == "output 1 of 'chunk' already feeds 'tanh'"
    assert g.output_count("chunk") == 3 and g.output_count("conv") == 1


# ---- version 1 files open -----------------------------------------------------------------

@pytest.mark.parametrize("file, example", [("project_v1.cnnd", "small_resnet"),
                                           ("lenet5_v1.cnnd", "lenet5"),
                                           ("graph_v1.json", "small_resnet")])
def test_committed_version_1_files_open_as_built_fresh(file, example):
    raw = (DATA / file).read_bytes()
    if file.endswith(".json"):
        assert json.loads(raw)["version"] == 1
    project = load_project(DATA / file)
    fresh = load_example(example)
    got = project.graph
    assert got.name == fresh.name
    assert [n.to_json() for n in got.nodes.values()] == \
        [n.to_json() for n in fresh.nodes.values()]
    assert got.edges == fresh.edges
    assert all(e.src_port == 0 for e in got.edges)
    v_got, v_fresh = validate(got), validate(fresh)
    assert v_got.ok
    assert {k: r.out_shapes for k, r in v_got.nodes.items()} == \
        {k: r.out_shapes for k, r in v_fresh.nodes.items()}
    if file.endswith(".cnnd"):
        # the weights are the file's own arrays, bit for bit, and they fit the graph
        with zipfile.ZipFile(DATA / file) as z, z.open("weights.npz") as f:
            stored = dict(np.load(io.BytesIO(f.read()), allow_pickle=False))
        assert sorted(project.weights) == sorted(stored)
        for k, w in stored.items():
            np.testing.assert_array_equal(project.weights[k], w, err_msg=k)
        net = Network.compile(got)
        net.load_state_dict(project.weights)  # strict: every weight present, every shape right
    # saved again, it is a version 2 file that reads back the same
    again = Graph.from_json(json.loads(json.dumps(got.to_json())))
    assert again.to_json()["version"] == 2 and again.edges == got.edges


# ---- validation ---------------------------------------------------------------------------

def test_validation_reports_every_output_shape():
    v = validate(chunk_graph())
    assert v.ok, [m.text for m in v.errors]
    res = v.nodes["chunk"]
    assert res.out_shapes == [(2, 4, 4)] * 3
    assert res.out_shape == (2, 4, 4)  # the first, for callers that know one output
    assert v.nodes["concat"].in_shapes == [(2, 4, 4)] * 4
    assert v.nodes["concat"].out_shape == (8, 4, 4)
    assert v.nodes["conv"].out_shapes == [(6, 4, 4)]


def test_an_edge_from_a_missing_output_is_an_error_naming_it():
    g = chunk_graph(chunks=3)
    g.nodes["chunk"].params["chunks"] = 2  # output 2 disappears; its edge stays
    g.nodes["conv"].params["out_channels"] = 4
    v = validate(g)
    texts = [m.text for m in v.errors]
    assert texts == [("'concat' reads output 2 of TestChunk 'chunk', which has 2 outputs "
                      "(ports 0 to 1); connect it to one of those")]
    assert v.errors[0].node_id == "concat"
    assert v.nodes["concat"].out_shape is None and v.nodes["fc"].out_shape is None
    # and a file naming a port that does not exist loads, so the user can repair it
    data = chunk_graph().to_json()
    data["edges"].append(["chunk:7", "concat", 4])
    assert any("reads output 7 of TestChunk 'chunk'" in m.text for m in validate(Graph.from_json(data)).errors)


def test_unused_outputs_are_a_warning():
    g = chunk_graph()
    g.edges = [e for e in g.edges if not (e.src == "chunk" and e.src_port == 2)]
    v = validate(g)
    assert v.ok
    assert [m.text for m in v.warnings] == ["output 2 of TestChunk 'chunk' is not used"]


# ---- network ------------------------------------------------------------------------------

def test_forward_routes_each_output():
    net = Network.compile(chunk_graph(), np.random.default_rng(0))
    x = np.random.default_rng(1).standard_normal((2, 2, 4, 4)).astype(np.float32)
    outs = net.forward(x, keep=True)
    conv = outs["conv"]
    np.testing.assert_array_equal(outs["chunk"], conv[:, :2])  # keep: output 0
    np.testing.assert_array_equal(outs["tanh"], np.tanh(conv[:, 2:4]))
    cat = outs["concat"]
    np.testing.assert_array_equal(cat[:, 6:], conv[:, 4:])  # output 2 straight in
    np.testing.assert_allclose(net.forward(x), outs["fc"])


def test_backward_matches_finite_differences():
    net = float64_network(chunk_graph())
    rng = np.random.default_rng(5)
    x = (np.round(rng.standard_normal((2, 2, 4, 4)) * 1024) / 1024).astype(np.float32)
    r = rng.standard_normal((2, 3))

    def loss(xx=x):
        return float((net.forward(xx, training=True) * r).sum())

    net.forward(x, training=True)
    dx = net.backward(r)
    for nid, layer in net.layers.items():
        for k in layer.trainable_names():
            np.testing.assert_allclose(layer.grads[k], numeric_grad(loss, layer.weights[k]),
                                       rtol=1e-5, atol=1e-7, err_msg=f"{nid}.{k}")
    h = 2.0 ** -8  # exact in float32 on this input grid
    num = np.zeros(x.shape)
    for i in range(x.size):
        xp, xm = x.copy(), x.copy()
        xp.flat[i] += h
        xm.flat[i] -= h
        num.flat[i] = (loss(xp) - loss(xm)) / (2 * h)
    np.testing.assert_allclose(dx, num, rtol=1e-3, atol=1e-4)


def test_backward_gives_zeros_to_an_unread_output():
    g = chunk_graph()
    g.edges = [e for e in g.edges if not (e.src == "chunk" and e.src_port == 2)]
    net = float64_network(g)
    x = np.random.default_rng(2).standard_normal((2, 2, 4, 4)).astype(np.float32)
    net.forward(x, training=True)
    assert net.backward(np.ones((2, 3))).shape == x.shape
    # the conv channels that only reach output 2 get no gradient
    assert not net.layers["conv"].grads["weight"][4:].any()
    assert net.layers["conv"].grads["weight"][:4].any()


def test_one_chunk_still_runs_as_a_list_returning_layer():
    def net(with_chunk):
        g = Graph()
        g.add_node("Input", "x", {"channels": 2, "height": 2, "width": 2}, node_id="x")
        g.add_node("Conv2d", "conv", {"out_channels": 2, "kernel_size": 1}, node_id="conv")
        g.add_node("Flatten", "f", {}, node_id="f")
        g.add_edge("x", "conv")
        if with_chunk:
            g.add_node(CHUNK, "c", {"chunks": 1}, node_id="c")
            g.add_edge("conv", "c")
            g.add_edge("c", "f")
        else:
            g.add_edge("conv", "f")
        return float64_network(g)

    a, b = net(True), net(False)
    x = np.arange(8, dtype=np.float32).reshape(1, 2, 2, 2)
    np.testing.assert_array_equal(a.forward(x, training=True), b.forward(x, training=True))
    dy = np.linspace(-1, 1, 8).reshape(1, 8)
    np.testing.assert_array_equal(a.backward(dy), b.backward(dy))
    np.testing.assert_array_equal(a.layers["conv"].grads["weight"],
                                  b.layers["conv"].grads["weight"])


# ---- ONNX and PyTorch ---------------------------------------------------------------------

def test_onnx_export_names_each_output_and_matches_onnxruntime():
    ort = pytest.importorskip("onnxruntime")
    from engine.onnx.export import export_onnx

    g = chunk_graph()
    net = Network.compile(g, np.random.default_rng(0))
    model = export_onnx(g, net.state_dict(), all_outputs=True)  # checker and shapes agree
    split = next(n for n in model.graph.node if n.op_type == "Split")
    assert list(split.output) == ["chunk", "chunk:1", "chunk:2"]
    names = [o.name for o in model.graph.output]
    assert {"chunk", "chunk:1", "chunk:2"} <= set(names)
    x = np.random.default_rng(1).standard_normal((3, 2, 4, 4)).astype(np.float32)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    got = dict(zip(names, sess.run(names, {"input": x})))
    keep = net.forward(x, keep=True)
    np.testing.assert_allclose(got["output"], keep["fc"], rtol=1e-5, atol=1e-5)
    for k in range(3):
        np.testing.assert_allclose(got["chunk" if k == 0 else f"chunk:{k}"],
                                   keep["conv"][:, 2 * k:2 * k + 2], rtol=1e-5, atol=1e-6)


def test_pytorch_code_unpacks_the_outputs_and_equals_the_engine(tmp_path):
    from engine.pytorch_export import generate_model
    from tests.engine.test_pytorch_export import _export_and_compare

    src = generate_model(chunk_graph()).source
    assert "chunk_0, chunk_1, chunk_2 = torch.chunk(" in src
    _export_and_compare(chunk_graph(), tmp_path)


# ---- summary, blocks, fine-tuning ---------------------------------------------------------

def test_summary_shows_every_output():
    s = summarize(chunk_graph())
    row = next(r for r in s.rows if r.name == "chunk")
    assert row.shape_text == "2×4×4, 2×4×4, 2×4×4"
    assert "2×4×4, 2×4×4, 2×4×4" in format_summary(s, "text")
    concat = next(r for r in s.rows if r.name == "concat")
    assert concat.inputs == ["conv_a", "tanh", "sigmoid", "chunk:2"]
    layer = next(r for r in to_json(s)["layers"] if r["name"] == "chunk")
    assert layer["output_shapes"] == [[2, 4, 4]] * 3
    conv = next(r for r in to_json(s)["layers"] if r["name"] == "conv")
    assert "output_shapes" not in conv  # single-output rows read as before
    per_sample = 2 * 16 + 6 * 16 + 3 * 2 * 16 + 2 * 16 * 3 + 8 * 16 + 8 * 4 + 32 + 3
    assert s.activation_values == per_sample


def test_block_summary_reads_the_port_shapes():
    from engine.blocks import block_summary

    g = chunk_graph()
    g.nodes["conv_a"].params["out_channels"] = 5
    info = block_summary(g, validate(g), ["tanh", "sigmoid"])
    assert info.in_shapes == [(2, 4, 4)]
    info = block_summary(g, validate(g), ["conv_a", "concat"])
    assert (2, 4, 4) in info.in_shapes


def test_finetune_cut_is_one_tensor():
    from engine.transfer.finetune import split_graph, tail_graph

    g = chunk_graph()
    for nid in ("conv",):
        g.nodes[nid].trainable = False
    split = split_graph(g)
    assert split.cut == "conv"  # the chunk layer is weightless but its outputs cross apart
    tail = tail_graph(g, split)
    assert Edge("chunk", "concat", 3, 2) in tail.edges
    assert validate(tail).ok
