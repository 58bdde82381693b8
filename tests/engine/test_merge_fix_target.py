"""A merge's shape error names one input, and its quick fix is on that input, never another
(issue 16: a Concat error that named one input was offered a padding fix on another)."""

from __future__ import annotations

import pytest

from engine.graph import Graph
from engine.validate import validate
from tests.engine.test_validate import apply_fix, only_error


def merge_of(branches: list[tuple[str, str, dict]], merge: str, input_shape=(3, 8, 8)):
    """Input -> each branch (type, name, params) -> merge (inputs in the given order)."""
    g = Graph()
    c, h, w = input_shape
    g.add_node("Input", "input", {"channels": c, "height": h, "width": w}, node_id="input")
    for t, name, params in branches:
        g.add_node(t, name, params, node_id=name)
        g.add_edge("input", name)
    g.add_node(merge, "merge", {}, node_id="merge")
    for _, name, _ in branches:
        g.add_edge(name, "merge")
    return g


SAME = ("Conv2d", "same", {"out_channels": 3, "kernel_size": 3, "padding": 1})  # 8×8
SHRUNK = ("Conv2d", "shrunk", {"out_channels": 3, "kernel_size": 3})  # 6×6, paddable
POOLED = ("MaxPool2d", "pooled", {"kernel_size": 2, "stride": 1})  # 7×7, no padding fix


def _named_input(text: str) -> int:
    """The input number the message calls wrong: 'input K is …'."""
    return int(text.split("input ", 1)[1].split(" ", 1)[0])


@pytest.mark.parametrize("merge", ["Concat", "Add"])
def test_the_smaller_first_input_is_named_and_fixed(merge):
    """The shrunk branch comes first: the message names input 1 (before it named input 2, the
    larger one, and the fix went to input 1)."""
    g = merge_of([SHRUNK, SAME], merge)
    m = only_error(validate(g), "merge")
    assert _named_input(m.text) == 1 and "6×6" in m.text and "8×8" in m.text
    assert m.fix is not None and m.fix.node_id == "shrunk"
    assert validate(apply_fix(g, m)).ok


@pytest.mark.parametrize("merge", ["Concat", "Add"])
def test_no_fix_on_another_input_than_the_named_one(merge):
    """Two wrong inputs: the message names the first (a pooling, which no padding fix grows),
    so no fix is offered; the convolution's fix comes once the pooling is right."""
    g = merge_of([SAME, POOLED, SHRUNK], merge)
    m = only_error(validate(g), "merge")
    assert _named_input(m.text) == 2 and "7×7" in m.text
    assert m.fix is None or m.fix.node_id == "pooled"
    g.nodes["pooled"].params["padding"] = [0, 0, 1, 1]  # 8×8 now (by hand)
    m = only_error(validate(g), "merge")
    assert _named_input(m.text) == 3 and m.fix is not None and m.fix.node_id == "shrunk"
    assert validate(apply_fix(g, m)).ok


def test_every_merge_fix_targets_the_input_its_message_names():
    """Over every order of three branches, a fix is always on the input the message names."""
    import itertools

    for order in itertools.permutations([SAME, POOLED, SHRUNK]):
        for merge in ("Concat", "Add"):
            g = merge_of(list(order), merge)
            m = only_error(validate(g), "merge")
            named = order[_named_input(m.text) - 1][1]
            assert m.fix is None or m.fix.node_id == named, (merge, [o[1] for o in order])
