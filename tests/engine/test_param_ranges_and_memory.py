"""Every parameter has a sane range, and validation reports a network that cannot fit in this
machine's memory as a problem with the numbers (issue 16: padding 1e308 was accepted as an
integer and `summary` died in human_count; Input 4096×8192×8192 → Flatten → Linear, or padding
100 000, validated and then export / train died allocating 10 TiB)."""

from __future__ import annotations

import math

import pytest

from engine import validate as validate_module
from engine.cli.main import main
from engine.errors import ParamError
from engine.graph import sequential
from engine.layers import REGISTRY
from engine.layers.base import FLOAT, INT, PADDING, PAIR
from engine.project import save_architecture
from engine.summary import human_bytes, summarize
from engine.validate import validate

NUMERIC = (INT, FLOAT, PAIR, PADDING)


def test_every_numeric_parameter_declares_a_finite_range():
    missing = [f"{t}.{p.name}" for t, cls in REGISTRY.items() for p in cls.params
               if p.kind in NUMERIC and (p.min is None or p.max is None
                                         or not math.isfinite(p.max))]
    assert missing == []


@pytest.mark.parametrize("type_name", sorted(REGISTRY))
def test_a_value_past_the_maximum_is_refused_naming_the_maximum(type_name):
    for p in REGISTRY[type_name].params:
        if p.kind not in NUMERIC:
            continue
        for too_big in (p.max + 1 if p.kind != FLOAT else p.max * 2 + 1, 1e308):
            with pytest.raises(ParamError, match=f"'{p.name}' must be at most") as e:
                p.normalize(too_big, type_name)
            assert len(str(e.value)) < 200  # 1e308 is not written out in 309 digits


def test_padding_1e308_is_a_problem_and_summary_exits_1(tmp_path, capsys):
    g = sequential([("Input", "in", {"channels": 1, "height": 28, "width": 28}),
                    ("Conv2d", "conv", {"out_channels": 4, "kernel_size": 3}),
                    ("Flatten", "f", {}), ("Linear", "fc", {"out_features": 10})])
    g.nodes[next(i for i, n in g.nodes.items() if n.name == "conv")].params["padding"] = 1e308
    path = save_architecture(tmp_path / "pad.json", g)
    assert main(["summary", str(path)]) == 1
    out, err = capsys.readouterr()
    assert "'padding' must be at most 2048; got 1e+308" in out + err
    assert "Traceback" not in err


def _huge_input():
    return sequential([("Input", "in", {"channels": 4096, "height": 8192, "width": 8192}),
                       ("Flatten", "f", {}), ("Linear", "fc", {"out_features": 10})])


def _huge_padding():
    return sequential([("Input", "in", {"channels": 3, "height": 28, "width": 28}),
                       ("Conv2d", "conv", {"out_channels": 2048, "kernel_size": 3,
                                           "padding": 2048}),
                       ("GlobalAvgPool2d", "gap", {}), ("Flatten", "f", {}),
                       ("Linear", "fc", {"out_features": 10})])


@pytest.mark.parametrize("make, worst", [(_huge_input, "fc"), (_huge_padding, "conv")])
def test_a_network_too_big_for_memory_is_an_error_with_the_numbers(monkeypatch, make, worst):
    monkeypatch.setattr(validate_module, "MEMORY_BYTES", 64 << 30)
    g = make()
    v = validate(g)
    (m,) = v.errors
    assert g.nodes[m.node_id].name == worst
    s = summarize(g, v)
    need = s.weight_bytes + s.activation_bytes  # the summary's own figures
    assert need > 64 << 30
    assert "cannot fit in this machine's memory" in m.text
    for figure in (s.weight_bytes, s.activation_bytes, need, 64 << 30):
        assert human_bytes(figure) in m.text
    assert worst in m.text


def test_the_limit_is_the_machines_memory(monkeypatch):
    g = sequential([("Input", "in", {"channels": 3, "height": 64, "width": 64}),
                    ("Conv2d", "conv", {"out_channels": 16, "kernel_size": 3}),
                    ("Flatten", "f", {}), ("Linear", "fc", {"out_features": 10})])
    s = summarize(g)
    need = s.weight_bytes + s.activation_bytes
    monkeypatch.setattr(validate_module, "MEMORY_BYTES", need)
    assert validate(g).ok
    monkeypatch.setattr(validate_module, "MEMORY_BYTES", need - 1)
    assert not validate(g).ok


@pytest.mark.parametrize("command", ["export", "train"])
def test_export_and_train_refuse_it_in_one_message_instead_of_dying(tmp_path, capsys,
                                                                     monkeypatch, command):
    monkeypatch.setattr(validate_module, "MEMORY_BYTES", 64 << 30)
    path = save_architecture(tmp_path / "huge.json", _huge_input())
    argv = {"export": ["export", str(path), "--out", str(tmp_path / "x.onnx")],
            "train": ["train", str(path), "--data", "mnist", "--limit", "10", "--out",
                      str(tmp_path / "x.cnnd")]}[command]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "cannot fit in this machine's memory" in err and "Traceback" not in err
    assert not (tmp_path / "x.onnx").exists() and not (tmp_path / "x.cnnd").exists()
