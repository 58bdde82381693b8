"""Graph model: construction, connection rules, topological order, names and the JSON form."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.errors import GraphError, ParamError
from engine.graph import FORMAT, FORMAT_VERSION, Edge, Graph, sequential


def sample_graph() -> Graph:
    g = Graph("sample")
    g.add_node("Input", "input", {"channels": 3, "height": 16, "width": 12}, (10.5, -3),
               node_id="input")
    g.add_node("Conv2d", "conv a", {"out_channels": 4, "kernel_size": [3, 1],
                                    "padding": [1, 0, 1, 0]}, (0, 100), node_id="a")
    g.add_node("Conv2d", None, {"padding": "same", "groups": 1}, (200, 100), node_id="b",
               trainable=False)
    g.add_node("Concat", "cat", {}, (100, 200), node_id="cat")
    g.add_node("Dropout", "drop", {"p": 0.25}, node_id="drop")
    g.add_edge("input", "a")
    g.add_edge("input", "b")
    g.add_edge("b", "cat")  # port 0: b first
    g.add_edge("a", "cat")  # port 1
    g.add_edge("cat", "drop")
    return g


def test_json_round_trip_is_identical():
    g = sample_graph()
    data = g.to_json()
    assert data["format"] == FORMAT and data["version"] == FORMAT_VERSION
    text = json.dumps(data)  # plain JSON: no tuples, numpy types or objects
    g2 = Graph.from_json(json.loads(text))
    assert g2.to_json() == data
    assert Graph.loads(g.dumps()).to_json() == data
    assert g.copy().to_json() == data
    assert g2.inputs_of("cat") == ["b", "a"]  # port order survives
    assert g2.nodes["b"].trainable is False and g2.nodes["b"].name == "conv1"
    assert g2.nodes["input"].position == (10.5, -3.0)


def test_copy_is_independent():
    g = sample_graph()
    c = g.copy()
    c.nodes["a"].params["out_channels"] = 99
    c.remove_node("drop")
    assert g.nodes["a"].params["out_channels"] == 4 and "drop" in g.nodes


@settings(max_examples=25, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["ReLU", "Conv2d", "Add", "Concat", "Linear"]),
                          st.text(min_size=1, max_size=8),
                          st.floats(-1e4, 1e4, allow_nan=False)), max_size=6),
       st.data())
def test_json_round_trip_of_random_graphs(specs, data):
    g = Graph("random ☃")
    g.add_node("Input", "input", {}, node_id="input")
    for t, name, pos in specs:
        g.add_node(t, name, {"anything": [1, {"x": name}]}, (pos, -pos))
    ids = list(g.nodes)
    for _ in range(len(ids)):
        a, b = data.draw(st.sampled_from(ids)), data.draw(st.sampled_from(ids))
        if g.can_connect(a, b)[0]:
            g.add_edge(a, b)
    text = g.dumps()
    assert Graph.loads(text).dumps() == text


@pytest.mark.parametrize("data,words", [
    ([], ["JSON object"]),
    ({"format": "keras", "nodes": []}, ["keras"]),
    ({"version": 99, "nodes": []}, ["99", "newer"]),
    ({"version": "1", "nodes": []}, ["'1'"]),
    ({"nodes": {}}, ["nodes"]),
    ({"nodes": [], "edges": "a->b"}, ["edges"]),
    ({"nodes": [{"type": "ReLU"}, {"name": "x"}]}, ["node 2", "type"]),
    ({"nodes": [{"id": "q", "type": "Conv3d"}]}, ["'q'", "Conv3d", "Conv2d"]),
    ({"nodes": [{"id": "q", "type": "ReLU", "params": [1]}]}, ["'q'", "params"]),
    ({"nodes": [{"id": "q", "type": "ReLU", "position": "here"}]}, ["'q'", "position"]),
    ({"nodes": [{"id": "q", "type": "ReLU", "position": [1]}]}, ["'q'", "position"]),
    ({"nodes": [{"id": "q", "type": "ReLU", "position": [1, float("nan")]}]},
     ["'q'", "position", "finite"]),
    ({"nodes": [{"id": "q", "type": "ReLU", "trainable": "false"}]},
     ["'q'", "trainable", "'false'"]),
    ({"nodes": [{"id": "q", "type": "ReLU"}, {"id": "q", "type": "Tanh"}]}, ["'q'", "twice"]),
    ({"nodes": [{"id": "a", "type": "ReLU"}], "edges": [["a"]]}, ["edge 1"]),
    ({"nodes": [{"id": "a", "type": "ReLU"}], "edges": [["a", "a", 0], ["a", "zz"]]},
     ["edge 2", "zz"]),
    ({"nodes": [{"id": "a", "type": "ReLU"}, {"id": "b", "type": "ReLU"}],
      "edges": [["a", "b", -1]]}, ["edge 1", "port"]),
    ({"nodes": [{"id": "a", "type": "ReLU"}, {"id": "b", "type": "ReLU"}],
      "edges": [["a", "b", True]]}, ["edge 1", "port"]),
    # versions below 1 are not valid (they used to raise KeyError: no migration from them)
    ({"version": 0, "nodes": []}, ["version 0", "not valid"]),
    ({"version": -3, "nodes": []}, ["version -3", "not valid"]),
    ({"version": True, "nodes": []}, ["version True", "not valid"]),
])
def test_malformed_json_names_the_entry(data, words):
    with pytest.raises(GraphError) as exc:
        Graph.from_json(data)
    for w in words:
        assert w in str(exc.value), (w, str(exc.value))


def test_loads_rejects_invalid_json_text():
    with pytest.raises(GraphError, match="not valid JSON"):
        Graph.loads('{"nodes": [')


def test_edges_as_objects_and_bad_params_still_load():
    # bad parameter values load (validation reports them), so a broken file can be repaired
    g = Graph.from_json({"nodes": [{"id": "i", "type": "Input"},
                                   {"id": "c", "type": "Conv2d", "params": {"kernel_size": 0}}],
                         "edges": [{"src": "i", "dst": "c"}]})
    assert g.edges == [Edge("i", "c", 0)] and g.nodes["c"].params == {"kernel_size": 0}


# ---- construction and connection rules -----------------------------------------------------

def test_unknown_type_and_duplicate_id_are_refused():
    g = Graph()
    with pytest.raises(ParamError, match="Conv2d"):
        g.add_node("Conv4d")
    g.add_node("ReLU", node_id="x")
    with pytest.raises(GraphError, match="'x'"):
        g.add_node("ReLU", node_id="x")


def test_can_connect_refusals_name_the_layers():
    g = Graph()
    i = g.add_node("Input", "input").id
    c1 = g.add_node("Conv2d", "c1").id
    c2 = g.add_node("Conv2d", "c2").id
    cat = g.add_node("Concat", "cat").id
    g.add_edge(i, c1)
    g.add_edge(c1, c2)
    cases = [
        ((c1, c1), ["'c1'", "itself"]),
        ((c1, i), ["Input", "'input'", "no input"]),
        ((i, c1), ["'input'", "'c1'", "already"]),
        ((cat, c2), ["'c2'", "1 input", "already has 1"]),
        ((c2, "nope"), ["layers of this graph"]),
    ]
    for (a, b), words in cases:
        ok, reason = g.can_connect(a, b)
        assert not ok
        for w in words:
            assert w in reason, (w, reason)
        with pytest.raises(GraphError):
            g.add_edge(a, b)
    # a cycle: c2 -> cat -> c1 would loop back through c1 -> c2
    g.remove_edge(Edge(i, c1, 0))
    g.add_edge(c2, cat)
    ok, reason = g.can_connect(cat, c1)
    assert not ok and "cycle" in reason and "'cat'" in reason and "'c1'" in reason
    # Concat takes any number
    for _ in range(3):
        n = g.add_node("ReLU").id
        assert g.can_connect(n, cat) == (True, "")
        g.add_edge(n, cat)
    assert len(g.inputs_of(cat)) == 4 and len(g.edges) == 5


def test_ports_are_assigned_in_order_and_remove_node_returns_its_edges():
    g = sample_graph()
    assert [e.port for e in g.edges if e.dst == "cat"] == [0, 1]
    removed = g.remove_node("cat")
    assert {(e.src, e.dst) for e in removed} == {("b", "cat"), ("a", "cat"), ("cat", "drop")}
    assert all("cat" not in (e.src, e.dst) for e in g.edges) and "cat" not in g.nodes
    assert g.successors("input") == ["a", "b"]


def test_topological_order():
    g = Graph()
    for name in ["d", "c", "b", "a", "input"]:  # inserted in reverse
        g.add_node("ReLU" if name != "input" else "Input", name, node_id=name)
    for a, b in [("input", "a"), ("a", "b"), ("a", "c"), ("b", "d"), ("c", "d")]:
        g.edges.append(Edge(a, b))
    order = g.topological_order()
    assert sorted(order) == sorted(g.nodes)
    for e in g.edges:
        assert order.index(e.src) < order.index(e.dst)
    assert order[0] == "input" and order[-1] == "d"
    assert g.copy().topological_order() == order  # deterministic
    g.edges.append(Edge("d", "a"))
    with pytest.raises(GraphError) as exc:
        g.topological_order()
    assert "cycle" in str(exc.value) and "'a'" in str(exc.value) and "'d'" in str(exc.value)
    order, cyclic = g.order_and_cycle()
    assert order == ["input"] and set(cyclic) == {"a", "b", "c", "d"}


def test_unique_names():
    g = Graph()
    names = [g.add_node("Conv2d").name for _ in range(3)]
    assert names == ["conv1", "conv2", "conv3"]
    assert g.add_node("Linear").name == "fc1"
    assert g.add_node("ReLU").name == "relu1"
    assert g.unique_name("conv1") == "conv4"
    assert g.unique_name("fresh") == "fresh"
    g.add_node("ReLU", "block")
    assert g.unique_name("block") == "block1"
    ids = [n.id for n in g.nodes.values()]
    assert len(set(ids)) == len(ids)
    # ids stay unique after removals
    g.remove_node(ids[0])
    assert g.add_node("ReLU").id not in ids[1:]


def test_find_and_sequential():
    g = sequential([("Input", "in", {}), ("Conv2d", "c", {"out_channels": 2}), ("ReLU", {})])
    assert list(g.nodes)[:2] == ["in", "c"]
    assert [(e.src, e.dst) for e in g.edges] == [("in", "c"), ("c", list(g.nodes)[2])]
    assert g.find("c").params == {"out_channels": 2}
    with pytest.raises(GraphError, match="'zz'"):
        g.find("zz")
