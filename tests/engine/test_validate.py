"""Validation: never raises, names the layer, the parameter and the numbers, offers fixes that
work, marks everything downstream of an error unknown, and computes receptive fields."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, note, settings
from hypothesis import strategies as st

from engine.graph import Edge, Graph, sequential
from engine.layers import REGISTRY
from engine.validate import validate
from tests.engine.test_layers import LENET5


def chain(*layers, input_shape=(1, 28, 28)):
    """sequential() with an Input named 'input' first; layers are (type, name, params)."""
    c, h, w = input_shape
    return sequential([("Input", "input", {"channels": c, "height": h, "width": w}),
                       *layers])


def only_error(v, node_id):
    errs = [m for m in v.errors if m.node_id == node_id]
    assert len(errs) == 1, [m.text for m in v.messages]
    return errs[0]


def apply_fix(graph, msg, fix=None):
    """Apply a Fix (msg's preferred one unless given) the way the designer does; returns the
    new graph."""
    g = graph.copy()
    fix = fix or msg.fix
    target = fix.node_id or msg.node_id
    if fix.action == "set_params":
        g.nodes[target].params.update(fix.params)
    elif fix.action == "insert_before":
        (src,) = g.inputs_of(target)
        new = g.add_node(fix.layer_type, params=dict(fix.params))
        g.edges = [e for e in g.edges if not (e.src == src and e.dst == target)]
        g.add_edge(src, new.id)
        g.add_edge(new.id, target)
    elif fix.action == "insert_after" and not g.successors(target):
        new = g.add_node(fix.layer_type, params=dict(fix.params))
        g.add_edge(target, new.id)
    else:
        raise AssertionError(fix.action)
    return g


# ---- shape errors and their fixes ----------------------------------------------------------

def test_output_smaller_than_one_names_layer_numbers_and_offers_same_size_padding():
    g = chain(("Conv2d", "conv1", {"out_channels": 4, "kernel_size": 5}), input_shape=(1, 3, 3))
    v = validate(g)
    m = only_error(v, "conv1")
    assert "conv1" in m.text and "5×5" in m.text and "3×3" in m.text
    assert "-1×-1" in m.text  # the output it would have: 3 − 5 + 1
    assert m.param == "kernel_size"
    # three alternatives, the kernel that fits first: shrink, pad to fit, pad to keep the size
    assert [f.label for f in m.fixes] == ["kernel 5×5→3×3 (fits the 3×3 input)",
                                          "padding 1 (output 1×1)", "padding 2 keeps 3×3"]
    assert [f.params for f in m.fixes] == [{"kernel_size": [3, 3]}, {"padding": [1, 1, 1, 1]},
                                           {"padding": [2, 2, 2, 2]}]
    for fix, out in zip(m.fixes, [(4, 1, 1), (4, 1, 1), (4, 3, 3)]):
        v2 = validate(apply_fix(g, m, fix))
        assert v2.ok and v2.nodes["conv1"].out_shape == out


def test_output_smaller_than_one_with_even_kernel_gets_same_padding():
    g = chain(("Conv2d", "c", {"kernel_size": [4, 2]}), input_shape=(1, 2, 1))
    m = only_error(validate(g), "c")
    # total padding K − 1 is odd: 'same' puts the extra row / column at the end
    same = m.fixes[-1]
    assert same.params == {"padding": "same"} and "keeps 2×1" in same.label
    v2 = validate(apply_fix(g, m, same))
    assert v2.ok and v2.nodes["c"].out_shape == (8, 2, 1)


def test_output_smaller_than_one_with_stride_has_no_same_size_fix():
    g = chain(("Conv2d", "conv1", {"kernel_size": 5, "stride": 2}), input_shape=(1, 3, 3))
    m = only_error(validate(g), "conv1")
    assert "3×3" in m.text
    assert [f.label for f in m.fixes] == ["kernel 5×5→3×3 (fits the 3×3 input)",
                                          "padding 1 (output 1×1)"]


@pytest.mark.parametrize("layer,params,shape,kernel,pad,out", [
    # a pool: its stride follows the kernel; the 4×4 window pools the whole map
    ("MaxPool2d", {"kernel_size": 7}, (8, 4, 5), [4, 5], [2, 1, 2, 1], (8, 1, 1)),
    # only the height misfits: the width keeps its kernel and padding
    ("Conv2d", {"kernel_size": [6, 3], "padding": [0, 1, 0, 1]}, (1, 3, 8), [3, 3],
     [2, 1, 2, 1], (8, 2, 8)),  # 3 + 2·2 − 6: an odd excess leaves 2 rows
    # dilation 2: a 3-tap kernel spans 5 cells, the 5×5 input fits 3 taps
    ("Conv2d", {"kernel_size": 5, "dilation": 2}, (1, 5, 5), [3, 3], [2, 2, 2, 2], (8, 1, 1)),
])
def test_kernel_larger_than_input_offers_shrink_and_pad(layer, params, shape, kernel, pad, out):
    g = chain((layer, "c", params), input_shape=shape)
    m = only_error(validate(g), "c")
    shrink, padded = m.fixes[:2]
    assert shrink.params == {"kernel_size": kernel} and "→" in shrink.label
    assert padded.params == {"padding": pad}
    assert padded.label.endswith(f"(output {out[1]}×{out[2]})")
    v2 = validate(apply_fix(g, m, shrink))
    assert v2.ok, [x.text for x in v2.errors]
    v3 = validate(apply_fix(g, m, padded))
    assert v3.ok and v3.nodes["c"].out_shape == out
    assert m.to_json()["fix"]["params"] == shrink.params
    assert m.to_json()["other_fixes"][0]["params"] == padded.params


def test_pooling_too_big_for_its_input():
    g = chain(("MaxPool2d", "pool", {"kernel_size": 4}), input_shape=(2, 3, 3))
    m = only_error(validate(g), "pool")
    assert "pool" in m.text and "4×4" in m.text and "3×3" in m.text


def test_unread_rows_warning_names_the_numbers():
    # (8 − 3 + 0) = 5 is odd: with stride 2 the last row and column are never read
    g = chain(("Conv2d", "conv", {"kernel_size": 3, "stride": 2}), input_shape=(1, 8, 8))
    v = validate(g)
    assert v.ok and v.nodes["conv"].out_shape == (8, 3, 3)
    # (the net ends in this map: its output warning is tested below)
    texts = [m.text for m in v.warnings if m.node_id == "conv" and m not in classifier_warnings(v)]
    assert len(texts) == 2, texts
    assert "(8 − 3 + 0)" in texts[0] and "stride 2" in texts[0] and "the last row is never read" in texts[0]
    assert "the last column is never read" in texts[1]
    assert all(m.param == "stride" for m in v.warnings if m not in classifier_warnings(v))


def test_unread_warning_counts_input_rows_not_padding():
    # (7 − 3 + 0) = 4, stride 3: the last row is never read; with 1 bottom pad, still 0 + 1 = 1
    g = chain(("Conv2d", "a", {"kernel_size": 3, "stride": 3}), input_shape=(1, 7, 6))
    v = validate(g)
    texts = [m.text for m in v.warnings if m not in classifier_warnings(v)]
    assert len(texts) == 1 and "the last row is never read" in texts[0]  # width: (6 − 3) divisible by 3
    # ResNet's 3×3 stride-2 pad-1 conv on 8×8: the unread cell is the bottom padding only
    g = chain(("Conv2d", "b", {"kernel_size": 3, "stride": 2, "padding": 1}),
              input_shape=(1, 8, 8))
    v = validate(g)
    assert v.ok and v.warnings == classifier_warnings(v), [m.text for m in v.warnings]
    # 'same' padding reads everything by construction
    g = chain(("Conv2d", "c", {"kernel_size": 3, "stride": 2, "padding": "same"}),
              input_shape=(1, 8, 7))
    v = validate(g)
    assert v.warnings == classifier_warnings(v)


def test_pool_unread_warning_offers_ceil_mode():
    g = chain(("MaxPool2d", "pool", {"kernel_size": 2}), input_shape=(3, 7, 7))
    v = validate(g)
    assert v.nodes["pool"].out_shape == (3, 3, 3)
    ws = [m for m in v.warnings if m.node_id == "pool"]
    assert ws and "(7 − 2 + 0)" in ws[0].text and ws[0].fix.params == {"ceil_mode": True}
    v2 = validate(apply_fix(g, ws[0]))
    assert v2.nodes["pool"].out_shape == (3, 4, 4)
    assert v2.warnings == classifier_warnings(v2)  # only the output's: no head


def branches(a_params, b_params, merge, input_shape=(3, 8, 8)):
    g = Graph()
    c, h, w = input_shape
    g.add_node("Input", "input", {"channels": c, "height": h, "width": w}, node_id="input")
    g.add_node("Conv2d", "a", a_params, node_id="a")
    g.add_node("Conv2d", "b", b_params, node_id="b")
    g.add_node(merge, "merge", {}, node_id="merge")
    g.add_node("ReLU", "after", {}, node_id="after")
    for s, d in [("input", "a"), ("input", "b"), ("a", "merge"), ("b", "merge"),
                 ("merge", "after")]:
        g.add_edge(s, d)
    return g


def test_channel_mismatch_into_add():
    g = branches({"out_channels": 4, "kernel_size": 1}, {"out_channels": 8, "kernel_size": 1},
                 "Add")
    v = validate(g)
    m = only_error(v, "merge")
    assert "merge" in m.text and "4×8×8" in m.text and "8×8×8" in m.text
    assert "channels" in m.text
    assert v.nodes["merge"].out_shape is None and v.nodes["after"].out_shape is None


@pytest.mark.parametrize("merge,cb,out", [("Concat", 2, (6, 8, 8)), ("Add", 4, (4, 8, 8))])
def test_spatial_mismatch_into_merge_offers_padding_on_the_branch(merge, cb, out):
    g = branches({"out_channels": 4, "kernel_size": 3, "padding": 1},
                 {"out_channels": cb, "kernel_size": 3}, merge)
    m = only_error(validate(g), "merge")
    assert f"{cb}×6×6" in m.text and "4×8×8" in m.text
    assert m.fix is not None and m.fix.node_id == "b"
    assert "padding 1 keeps 8×8" in m.fix.label
    v2 = validate(apply_fix(g, m))
    assert v2.ok and v2.nodes["merge"].out_shape == out


def test_linear_fed_an_image_gets_an_insert_flatten_fix():
    g = chain(("Conv2d", "conv", {"out_channels": 16, "kernel_size": 3}),
              ("Linear", "fc", {"out_features": 10}), input_shape=(1, 7, 7))
    v = validate(g)
    m = only_error(v, "fc")
    assert "fc" in m.text and "16×5×5" in m.text and "Flatten" in m.text
    assert m.fix.action == "insert_before" and m.fix.layer_type == "Flatten"
    v2 = validate(apply_fix(g, m))
    assert v2.ok and v2.nodes["fc"].trainable_params == (16 * 25 + 1) * 10


def test_groups_not_dividing_channels():
    g = chain(("Conv2d", "conv", {"out_channels": 6, "kernel_size": 3, "groups": 4}),
              input_shape=(6, 5, 5))
    m = only_error(validate(g), "conv")
    assert m.param == "groups" and "4" in m.text and "6" in m.text and "conv" in m.text
    g = chain(("Conv2d", "conv", {"out_channels": 6, "kernel_size": 3, "groups": 4}),
              input_shape=(8, 5, 5))
    m = only_error(validate(g), "conv")
    assert m.param == "groups" and "the 6 out_channels" in m.text


# ---- structure -----------------------------------------------------------------------------

def test_cycle_is_reported_without_raising():
    g = chain(("Conv2d", "a", {}), ("ReLU", "b", {}), ("Conv2d", "c", {}), ("ReLU", "d", {}))
    g.edges.append(Edge("c", "a", 1))  # bypass can_connect, as a hand-written file could
    v = validate(g)
    assert not v.ok
    cycle = [m for m in v.errors if "cycle" in m.text]
    assert len(cycle) == 1  # one message per cycle, on the connection that closes it
    m = cycle[0]
    assert m.node_id == "c" and "'c' → 'a'" in m.text and "'a' → 'b' → 'c' → 'a'" in m.text
    assert m.fix.action == "remove_edge" and m.fix.params == {"src": "c", "dst": "a"}
    assert all(v.nodes[n].out_shape is None for n in "abcd")  # d is downstream: unknown too
    g.edges.remove(Edge("c", "a", 1))  # applying the fix
    assert validate(g).ok


def test_frozen_layers_count_as_non_trainable():
    g = chain(("Conv2d", "conv", {"out_channels": 6, "kernel_size": 5}),
              ("Flatten", "flat", {}), ("Linear", "fc", {"out_features": 10}))
    g.nodes["conv"].trainable = False
    v = validate(g)
    assert v.nodes["conv"].trainable_params == 0
    assert v.nodes["conv"].non_trainable_params == (5 * 5 * 1 + 1) * 6
    assert v.trainable_params == (6 * 24 * 24 + 1) * 10


def test_unconnected_and_overfull_inputs():
    g = chain(("Conv2d", "conv", {"kernel_size": 3}), input_shape=(1, 5, 5))
    g.add_node("ReLU", "lonely", {}, node_id="lonely")
    g.add_node("Add", "add", {}, node_id="add")
    g.add_edge("conv", "add")
    v = validate(g)
    assert "lonely" in only_error(v, "lonely").text and "none" in only_error(v, "lonely").text
    m = only_error(v, "add")
    assert "at least 2 inputs" in m.text and "has 1" in m.text
    g2 = chain(("Conv2d", "conv", {"kernel_size": 3}), input_shape=(1, 5, 5))
    g2.add_node("ReLU", "r", {}, node_id="r")
    g2.add_edge("input", "r")
    g2.edges.append(Edge("r", "conv", 1))
    m = only_error(validate(g2), "conv")
    assert "takes 1 input but has 2" in m.text and "remove 1 connection" in m.text


def test_input_with_an_incoming_edge_is_an_error():
    g = chain(("ReLU", "r", {}))
    g.add_node("Input", "input2", {}, node_id="input2")
    g.edges.append(Edge("input2", "input", 0))
    v = validate(g)
    assert any(m.node_id == "input" for m in v.errors)
    assert any(m.node_id == "input2" and "only one Input" in m.text for m in v.errors)


def test_no_input_layer():
    g = sequential([("Conv2d", "conv", {}), ("ReLU", "relu", {})])
    v = validate(g)
    assert any(m.node_id is None and "no Input" in m.text for m in v.errors)
    assert v.nodes["relu"].out_shape is None


def test_duplicate_names():
    g = chain(("ReLU", "r1", {}))
    g.add_node("ReLU", "r1", {}, node_id="r1b")
    g.add_edge("r1", "r1b")
    m = only_error(validate(g), "r1b")
    assert "'r1'" in m.text and m.param == "name"


def test_unused_output_is_a_warning():
    g = chain(("ReLU", "r", {}))
    g.add_node("Tanh", "t", {}, node_id="t")
    g.add_edge("input", "t")
    v = validate(g)
    assert v.ok and v.output_id == "t"
    assert any(m.node_id == "r" and "not used" in m.text for m in v.warnings)


# ---- parameters ----------------------------------------------------------------------------

def test_out_of_range_parameters_name_layer_param_and_value_with_a_reset_fix():
    cases = [("Conv2d", {"kernel_size": 0}, "kernel_size", "0"),
             ("Dropout", {"p": 1.5}, "p", "1.5"),
             ("Conv2d", {"out_channels": "many"}, "out_channels", "'many'"),
             ("MaxPool2d", {"padding": "full"}, "padding", "'full'"),
             ("BatchNorm2d", {"momentum": -0.1}, "momentum", "-0.1"),
             ("Linear", {"units": 10}, "units", "units")]
    for type_name, params, param, value in cases:
        g = chain((type_name, "bad", params), ("ReLU", "after", {}), input_shape=(2, 6, 6))
        v = validate(g)
        m = only_error(v, "bad")
        assert "bad" in m.text and param in m.text and value in m.text, m.text
        assert m.param == param
        assert v.nodes["bad"].out_shape is None and v.nodes["after"].out_shape is None
        assert not [x for x in v.messages if x.node_id == "after"]  # no knock-on noise
        defaults = {p.name: p.default for p in REGISTRY[type_name].params}
        if param in defaults:  # a reset to the default repairs it
            assert m.fix.params == {param: defaults[param]}
            assert validate(apply_fix(g, m)).nodes["after"].out_shape is not None
        else:
            assert m.fix is None


# ---- totals and receptive fields -----------------------------------------------------------

def test_lenet5_receptive_fields_and_jumps():
    v = validate(sequential(LENET5))
    assert v.ok and v.output_id == "fc3" and v.order[0] == "input"
    # r_out = r_in + (k − 1)·j_in, j_out = j_in·s
    expected = {"input": (1, 1), "conv1": (5, 1), "relu1": (5, 1), "pool1": (6, 2),
                "conv2": (14, 2), "pool2": (16, 4)}
    for nid, (rf, jump) in expected.items():
        assert v.nodes[nid].receptive_field == (rf, rf), nid
        assert v.nodes[nid].jump == (jump, jump), nid
    assert v.total_params == 61_706 and v.trainable_params == 61_706
    assert v.macs == 6 * 28 * 28 * 25 + 16 * 10 * 10 * 150 + 400 * 120 + 120 * 84 + 84 * 10


def test_receptive_field_with_dilation_and_stride_and_merge():
    g = chain(("Conv2d", "d", {"kernel_size": 3, "dilation": 2}),  # K_eff 5: rf 5
              ("Conv2d", "s", {"kernel_size": 3, "stride": [2, 1]}),  # rf 5 + 2 = 7, jump (2, 1)
              ("Conv2d", "t", {"kernel_size": [1, 3]}),  # rf (7, 7 + 2) = (7, 9)
              input_shape=(1, 20, 20))
    v = validate(g)
    assert v.nodes["d"].receptive_field == (5, 5)
    assert v.nodes["s"].receptive_field == (7, 7) and v.nodes["s"].jump == (2, 1)
    assert v.nodes["t"].receptive_field == (7, 9)
    g = branches({"kernel_size": 1}, {"kernel_size": 3, "padding": 1}, "Add")
    v = validate(g)
    assert v.nodes["merge"].receptive_field == (3, 3)  # the larger branch


def test_batchnorm_counts_non_trainable():
    g = chain(("Conv2d", "conv", {"out_channels": 8, "kernel_size": 3, "bias": False}),
              ("BatchNorm2d", "bn", {}), input_shape=(3, 8, 8))
    v = validate(g)
    assert v.nodes["bn"].trainable_params == 16 and v.nodes["bn"].non_trainable_params == 16
    assert v.trainable_params == 8 * 27 + 16 and v.non_trainable_params == 16
    assert v.total_params == 8 * 27 + 32


# ---- never raises --------------------------------------------------------------------------

VALUES = st.one_of(st.integers(-2, 40), st.floats(-1, 2), st.just(float("nan")), st.text(max_size=3),
                   st.none(), st.booleans(), st.lists(st.integers(-1, 5), max_size=5),
                   st.sampled_from(["same", "valid", "he"]))
PARAM_NAMES = sorted({p.name for cls in REGISTRY.values() for p in cls.params} | {"bogus"})


@st.composite
def random_graphs(draw):
    g = Graph()
    n = draw(st.integers(0, 7))
    for i in range(n):
        t = draw(st.sampled_from(sorted(REGISTRY)))
        cls = REGISTRY[t]
        params = {}
        for p in cls.params:
            if draw(st.booleans()):
                params[p.name] = draw(VALUES)
        if draw(st.integers(0, 9)) == 0:
            params[draw(st.sampled_from(PARAM_NAMES))] = draw(VALUES)
        name = draw(st.sampled_from([f"l{i}", "dup"]))
        g.add_node(t, name, params, node_id=f"n{i}")
    for _ in range(draw(st.integers(0, 2 * n))):
        a, b = draw(st.integers(0, n - 1)), draw(st.integers(0, n - 1))
        g.edges.append(Edge(f"n{a}", f"n{b}", draw(st.integers(0, 2))))
    return g


@settings(max_examples=80, deadline=None)
@given(random_graphs())
def test_validate_never_raises_and_unknown_stays_unknown(g):
    note(g.dumps())
    v = validate(g)
    assert set(v.nodes) == set(g.nodes)
    for nid, res in v.nodes.items():
        # naming errors (duplicate name, a second Input) leave the shape arithmetic intact
        if any(m.severity == "error" and m.param != "name" and "only one Input" not in m.text
               for m in res.messages):
            assert res.out_shape is None
        for m in res.messages:
            assert m.node_id == nid and f"'{g.nodes[nid].name}'" in m.text, m.text
        if res.out_shape is not None:
            assert all(isinstance(d, int) and d >= 1 for d in res.out_shape)
            ins = g.inputs_of(nid)
            assert all(v.nodes[s].out_shape is not None for s in ins)
    assert v.ok == (not v.errors)
    # a graph that validates compiles and runs
    if v.ok and v.output_id is not None:
        from engine.nn.network import Network

        net = Network.compile(g, np.random.default_rng(0))
        shape = net.input_shape
        if np.prod(shape) <= 50_000:
            y = net.forward(np.zeros((1,) + shape, np.float32))
            assert y.shape == (1,) + net.output_shape


WINDOWED = ("Conv2d", "MaxPool2d", "AvgPool2d")
CHAIN_TYPES = sorted(t for t in REGISTRY if t not in ("Input", "Add", "Concat"))
pairs = st.lists(st.integers(1, 3), min_size=2, max_size=2)


@st.composite
def random_chains(draw):
    c, h, w = draw(st.integers(1, 3)), draw(st.integers(1, 12)), draw(st.integers(1, 12))
    layers = [("Input", "input", {"channels": c, "height": h, "width": w})]
    for i in range(draw(st.integers(1, 5))):
        t = draw(st.sampled_from(CHAIN_TYPES))
        params = {}
        if t in WINDOWED:
            params = {"kernel_size": draw(pairs), "stride": draw(pairs),
                      "padding": draw(st.one_of(st.sampled_from(["valid", "same"]),
                                                st.lists(st.integers(0, 2), min_size=4,
                                                         max_size=4)))}
        if t == "Conv2d":
            params |= {"out_channels": draw(st.integers(1, 4)), "dilation": draw(pairs)}
        elif t != "Conv2d" and t in WINDOWED:
            params["ceil_mode"] = draw(st.booleans())
        elif t == "AdaptiveAvgPool2d":
            params["output_size"] = draw(pairs)
        elif t == "Linear":
            params["out_features"] = draw(st.integers(1, 5))
        layers.append((t, f"l{i}", params))
    return sequential(layers)


@settings(max_examples=60, deadline=None)
@given(random_chains())
def test_validated_shapes_are_the_shapes_forward_produces(g):
    note(g.dumps())
    v = validate(g)
    for m in v.messages:  # every message names its layer
        assert f"'{g.nodes[m.node_id].name}'" in m.text, m.text
    if not v.ok:
        assert all(v.nodes[n].out_shape is None for n in v.order[v.order.index(
            next(m.node_id for m in v.errors)):])
        return
    from engine.nn.network import Network

    net = Network.compile(g, np.random.default_rng(0))
    x = np.random.default_rng(1).standard_normal((2,) + net.input_shape).astype(np.float32)
    outs = net.forward(x, training=True, keep=True)
    for nid, y in outs.items():
        assert y.shape[1:] == v.nodes[nid].out_shape, nid
        assert y.dtype == np.float32, nid
    dx = net.backward(np.ones_like(outs[net.output_id]))
    assert dx is None or dx.shape == x.shape


def _results(v):
    return {nid: (r.out_shape, r.trainable_params, r.non_trainable_params, r.macs,
                  r.receptive_field, r.jump, [(m.severity, m.text, m.fix) for m in r.messages])
            for nid, r in v.nodes.items()}


def test_cached_validation_equals_a_cold_one_after_edits():
    import engine.validate as V

    g = sequential(LENET5)
    validate(g)
    edits = [("conv1", "kernel_size", [3, 3]), ("conv2", "out_channels", 8),
             ("conv1", "kernel_size", [5, 5]), ("fc1", "out_features", 0),
             ("fc1", "out_features", 120), ("conv2", "stride", [2, 2])]
    for nid, param, value in edits:
        g.nodes[nid].params[param] = value
        warm = _results(validate(g))
        V._CACHE.clear()
        assert _results(validate(g)) == warm, (nid, param, value)
    g.nodes["conv1"].name = "first"  # a rename reaches the messages of the layers it feeds
    v = validate(g)
    V._CACHE.clear()
    assert _results(v) == _results(validate(g))


def test_networks_never_share_layer_instances_with_validation():
    from engine.nn.network import Network

    g = sequential(LENET5)
    v = validate(g)
    a, b = Network.compile(g, validation=v), Network.compile(g, validation=validate(g))
    for nid in a.layers:
        assert a.layers[nid] is not v.nodes[nid].layer
        assert a.layers[nid] is not b.layers[nid]


def test_a_broadcast_gate_does_not_inflate_the_receptive_field_stride():
    """An SE gate (global pool → 1×1 convs → C×1×1) multiplies a C×H×W map: the product keeps the
    map's pixel grid (its jump), while its RF may reach as far as the gate's."""
    from engine.zoo.examples import load_example

    v = validate(load_example("mobile_se"))
    assert v.ok, [m.text for m in v.errors]
    for tag in ("block1", "block2", "block3"):
        act, gate, scale = (v.nodes[f"{tag}_{k}"] for k in ("act2", "se_gate", "se_scale"))
        assert scale.jump == act.jump
        assert scale.receptive_field == tuple(max(a, b) for a, b in
                                              zip(act.receptive_field, gate.receptive_field))
    assert v.nodes["head_act"].jump == (4, 4)  # two stride-2 layers, nothing else


# ---- a classifier whose output is still a map ----------------------------------------------

def classifier_warnings(v):
    return [m for m in v.warnings if "a classifier needs" in m.text]


def test_softmax_over_a_map_warns_and_offers_global_pool_or_flatten():
    g = chain(("Conv2d", "conv", {"out_channels": 10, "kernel_size": 3, "stride": 2}),
              ("Softmax", "softmax", {}), input_shape=(1, 16, 16))
    (m,) = classifier_warnings(validate(g))
    assert m.node_id == "softmax" and "10×7×7" in m.text
    assert "global average pool or flatten" in m.text
    pool, flat = m.fixes
    assert (pool.action, pool.layer_type) == ("insert_before", "GlobalAvgPool2d")
    assert (flat.action, flat.layer_type) == ("insert_before", "Flatten")
    assert "(output 10×1×1)" in pool.label and "490 features" in flat.label
    v2 = validate(apply_fix(g, m, pool))
    assert v2.nodes[v2.output_id].out_shape == (10, 1, 1) and not classifier_warnings(v2)
    v3 = validate(apply_fix(g, m, flat))
    assert v3.nodes[v3.output_id].out_shape == (490,) and not classifier_warnings(v3)


def test_a_net_that_shrank_the_image_without_a_head_warns_with_insert_after():
    g = chain(("Conv2d", "conv", {"out_channels": 4, "kernel_size": 3}),
              ("MaxPool2d", "pool", {}), input_shape=(1, 10, 10))
    (m,) = classifier_warnings(validate(g))
    assert m.node_id == "pool" and "4×4×4" in m.text
    assert [f.action for f in m.fixes] == ["insert_after", "insert_after"]
    v2 = validate(apply_fix(g, m))
    assert v2.nodes[v2.output_id].out_shape == (4, 1, 1) and not classifier_warnings(v2)


@pytest.mark.parametrize("layers", [
    # segmentation: down, then back up (ConvTranspose2d / Upsample), per-pixel softmax
    [("Conv2d", "down", {"out_channels": 4, "kernel_size": 2, "stride": 2}),
     ("ConvTranspose2d", "up", {"out_channels": 3}), ("Softmax", "softmax", {})],
    [("MaxPool2d", "down", {}), ("Upsample", "up", {}), ("Conv2d", "head", {"out_channels": 3})],
    # a full-size map without softmax: a denoiser / per-pixel regressor
    [("Conv2d", "conv", {"out_channels": 1, "kernel_size": 3, "padding": "same"})],
    # a classifier already pooled to C×1×1
    [("Conv2d", "conv", {"out_channels": 10, "kernel_size": 3}), ("GlobalAvgPool2d", "gap", {}),
     ("Softmax", "softmax", {})],
])
def test_dense_prediction_and_pooled_outputs_are_not_warned(layers):
    v = validate(chain(*layers, input_shape=(1, 8, 8)))
    assert v.ok, [m.text for m in v.errors]
    assert not classifier_warnings(v)
