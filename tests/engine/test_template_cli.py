"""The `templates` and `new` commands (engine.cli.templates)."""

from __future__ import annotations

import argparse
import json

import pytest

from engine.cli.templates import add_commands
from engine.project import load_project
from engine.zoo.templates import make_template


def parse(argv):
    parser = argparse.ArgumentParser()
    add_commands(parser.add_subparsers(dest="command"))
    return parser.parse_args(argv)


def test_new_writes_the_template_with_its_blocks(tmp_path):
    out = tmp_path / "r.cnnd"
    args = parse(["new", "resnet18", "--classes", "5", "--out", str(out)])
    assert args.func(args) == 0
    p = load_project(out)
    assert p.graph.nodes["fc"].params["out_features"] == 5
    assert p.weights is None
    want = make_template("resnet18", 5).blocks
    assert p.meta["blocks"] == want and "layer3.1" in p.meta["blocks"]


def test_new_with_weights_and_the_list(tmp_path, capsys):
    out = tmp_path / "l.cnnd"
    args = parse(["new", "lenet5", "--out", str(out), "--weights", "--seed", "3"])
    assert args.func(args) == 0
    p = load_project(out)
    assert p.weights and p.weights["conv1.weight"].shape[0] == 6
    args = parse(["templates"])
    assert args.func(args) == 0
    text = capsys.readouterr().out
    assert "lenet5" in text and "61,706 parameters" in text


def test_new_refuses_unknown_templates_and_bad_paths(tmp_path):
    with pytest.raises(SystemExit):
        parse(["new", "resnet19", "--out", str(tmp_path / "x.cnnd")])
    from engine.cli.common import UsageError

    args = parse(["new", "lenet5", "--out", str(tmp_path / "missing" / "x.cnnd")])
    with pytest.raises(UsageError, match="does not exist"):
        args.func(args)


def test_templates_shows_what_summary_counts(capsys):
    """`templates` and `summary` agree: trainable + non-trainable = summary's total."""
    import re

    from engine.cli.main import main

    assert main(["templates"]) == 0
    line = next(ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("resnet18"))
    m = re.search(r"([\d,]+) parameters \(\+([\d,]+) non-trainable: BatchNorm statistics\)", line)
    assert m, line
    trainable, stats = (int(g.replace(",", "")) for g in m.groups())
    assert main(["summary", "resnet18", "-f", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert (trainable, stats) == (data["trainable_params"], data["non_trainable_params"])
    assert stats > 0
