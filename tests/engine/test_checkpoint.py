"""Weights in (engine.transfer.checkpoint, engine.transfer.torch_pickle): PyTorch checkpoints
read without torch and without running anything they hold, safetensors, .npz, ONNX and project
files, matched to a design as strictly as torch's load_state_dict.

Without torch, the checkpoints are written here opcode by opcode in the layout torch.save
uses (zip: <name>/data.pkl + <name>/data/<key>; legacy: magic, protocol, system info, pickle,
storage keys, storages), and hostile pickles with Python's own pickler. With torch, the reader
is compared with torch.load, and torchvision's ResNet-18, SqueezeNet 1.1 and Inception-v3 with
re-drawn weights, saved by torch.save, must give torch's outputs in the templates.
"""

from __future__ import annotations

import builtins
import io
import os
import pickle
import struct
import subprocess
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

from engine.cli.main import main
from engine.graph import Graph
from engine.nn.network import Network
from engine.project import load_project, save_project
from engine.transfer.checkpoint import (
    CheckpointError,
    load_weights,
    match_weights,
    read_checkpoint,
)
from engine.transfer.torch_pickle import LEGACY_MAGIC, LEGACY_PROTOCOL, read_torch_file
from engine.zoo.templates import make_template

ITEM = {"FloatStorage": 4, "HalfStorage": 2, "LongStorage": 8, "BFloat16Storage": 2,
        "DoubleStorage": 8}


# ---- writing torch's layouts by hand (protocol 2 opcodes, as torch.save writes them) -------

def _str(s: str) -> bytes:
    b = s.encode()
    return b"X" + struct.pack("<I", len(b)) + b


def _int(i: int) -> bytes:
    return b"J" + struct.pack("<i", i)


def _tuple(items) -> bytes:
    return b"(" + b"".join(items) + b"t"


def _global(module: str, name: str) -> bytes:
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def tensor_ops(kind: str, key: str, numel: int, offset: int, size, stride,
               legacy: bool = False) -> bytes:
    """torch._utils._rebuild_tensor_v2(storage, offset, size, stride, False, OrderedDict())
    with the storage as a persistent id."""
    pid = [_str("storage"), _global("torch", kind), _str(key), _str("cpu"), _int(numel)]
    if legacy:
        pid.append(b"N")  # no view
    return (_global("torch._utils", "_rebuild_tensor_v2") + b"(" + _tuple(pid) + b"Q"
            + _int(offset) + _tuple(_int(s) for s in size) + _tuple(_int(s) for s in stride)
            + b"\x89" + _global("collections", "OrderedDict") + b")R" + b"tR")


def state_pickle(entries: dict[str, bytes], metadata: bool = True) -> bytes:
    """An OrderedDict of name -> tensor, with the `_metadata` attribute set by BUILD, as
    Module.state_dict() pickles."""
    body = b"".join(_str(k) + ops for k, ops in entries.items())
    out = b"\x80\x02" + _global("collections", "OrderedDict") + b")R(" + body + b"u"
    if metadata:
        out += b"}" + _str("_metadata") + b"}" + _str("") + b"}" + _str("version") + _int(1) \
            + b"sss" + b"b"
    return out + b"."


class Storages:
    """Storage key -> (kind, raw bytes); the tensors of a handmade checkpoint point into them."""

    def __init__(self):
        self.data: dict[str, tuple[str, bytes]] = {}

    def add(self, key: str, kind: str, arr: np.ndarray) -> int:
        raw = np.ascontiguousarray(arr).tobytes()
        self.data[key] = (kind, raw)
        return len(raw) // ITEM[kind]


def write_zip(path: Path, pkl: bytes, storages: Storages, byteorder: str = "little",
              prefix: str = "archive") -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        z.writestr(f"{prefix}/data.pkl", pkl)
        z.writestr(f"{prefix}/byteorder", byteorder)
        for key, (_, raw) in storages.data.items():
            z.writestr(f"{prefix}/data/{key}", raw)
        z.writestr(f"{prefix}/version", "3\n")
    return path


def write_legacy(path: Path, pkl: bytes, storages: Storages) -> Path:
    out = io.BytesIO()
    for obj in (LEGACY_MAGIC, LEGACY_PROTOCOL, {"protocol_version": LEGACY_PROTOCOL,
                                                 "little_endian": True,
                                                 "type_sizes": {"short": 2, "int": 4,
                                                                "long": 4}}):
        out.write(pickle.dumps(obj, protocol=2))
    out.write(pkl)
    out.write(pickle.dumps(list(storages.data), protocol=2))
    for kind, raw in storages.data.values():
        out.write(struct.pack("<q", len(raw) // ITEM[kind]))
        out.write(raw)
    path.write_bytes(out.getvalue())
    return path


def sample_checkpoint(legacy: bool = False):
    """(pickle bytes, storages, expected arrays): float32 weights, a transposed view, two
    tensors sharing one storage at an offset, float16, bfloat16 and an int64 counter."""
    rng = np.random.default_rng(0)
    st = Storages()
    w = rng.standard_normal((3, 4)).astype(np.float32)
    shared = rng.standard_normal(10).astype(np.float32)
    half = rng.standard_normal(5).astype(np.float16)
    bf = rng.standard_normal(3).astype(np.float32)
    bf_bits = (bf.view(np.uint32) >> 16).astype(np.uint16)
    n0 = st.add("0", "FloatStorage", w)
    n1 = st.add("1", "FloatStorage", shared)
    n2 = st.add("2", "HalfStorage", half)
    n3 = st.add("3", "BFloat16Storage", bf_bits)
    n4 = st.add("4", "LongStorage", np.array([7], np.int64))
    ops = {
        "a.weight": tensor_ops("FloatStorage", "0", n0, 0, (3, 4), (4, 1), legacy),
        "a.weight_t": tensor_ops("FloatStorage", "0", n0, 0, (4, 3), (1, 4), legacy),
        "b.first": tensor_ops("FloatStorage", "1", n1, 0, (4,), (1,), legacy),
        "b.rest": tensor_ops("FloatStorage", "1", n1, 4, (2, 3), (3, 1), legacy),
        "c.half": tensor_ops("HalfStorage", "2", n2, 0, (5,), (1,), legacy),
        "c.bf16": tensor_ops("BFloat16Storage", "3", n3, 0, (3,), (1,), legacy),
        "bn.num_batches_tracked": tensor_ops("LongStorage", "4", n4, 0, (), (), legacy),
    }
    want = {"a.weight": w, "a.weight_t": w.T, "b.first": shared[:4],
            "b.rest": shared[4:].reshape(2, 3), "c.half": half,
            "c.bf16": (bf_bits.astype(np.uint32) << 16).view(np.float32),
            "bn.num_batches_tracked": np.array(7, np.int64)}
    return state_pickle(ops), st, want


def lenet_state(classes: int = 10, seed: int = 0) -> dict[str, np.ndarray]:
    g = make_template("lenet5", classes).graph
    return Network.compile(g, np.random.default_rng(seed)).state_dict()


def torch_zip_of(path: Path, state: dict[str, np.ndarray]) -> Path:
    """A float32 state dict as torch.save's zip layout, written without torch."""
    st = Storages()
    ops = {}
    for i, (k, a) in enumerate(state.items()):
        n = st.add(str(i), "FloatStorage", a.astype(np.float32))
        stride = tuple(int(s) // 4 for s in np.ascontiguousarray(a).strides)
        ops[k] = tensor_ops("FloatStorage", str(i), n, 0, a.shape, stride)
    return write_zip(path, state_pickle(ops), st)


# ---- the reader, on well-formed files ---------------------------------------------------------

@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
def test_reads_both_layouts_views_and_dtypes(tmp_path, legacy):
    pkl, st, want = sample_checkpoint(legacy)
    path = (write_legacy if legacy else write_zip)(tmp_path / "c.pth", pkl, st)
    got = read_torch_file(path)
    assert list(got) == list(want)
    for k, a in want.items():
        assert got[k].shape == a.shape and got[k].dtype == (np.float32 if k == "c.bf16"
                                                            else a.dtype), k
        np.testing.assert_array_equal(got[k], a)
        assert got[k].flags.c_contiguous and got[k].flags.writeable
    # tensors on one storage do not share memory: writing one leaves the other as it was
    assert not np.shares_memory(got["a.weight"], got["a.weight_t"])
    assert not np.shares_memory(got["b.first"], got["b.rest"])


def test_reads_big_endian_archives_and_any_archive_name(tmp_path):
    w = np.arange(6, dtype=np.float32).reshape(2, 3)
    st = Storages()
    st.data["0"] = ("FloatStorage", w.astype(">f4").tobytes())
    pkl = state_pickle({"w": tensor_ops("FloatStorage", "0", 6, 0, (2, 3), (3, 1))})
    got = read_torch_file(write_zip(tmp_path / "b.pth", pkl, st, "big", prefix="resnet18"))
    np.testing.assert_array_equal(got["w"], w)
    assert got["w"].dtype == np.float32


def test_progress_reports_every_byte_of_the_storages(tmp_path):
    pkl, st, _ = sample_checkpoint()
    calls = []
    read_torch_file(write_zip(tmp_path / "c.pth", pkl, st), lambda d, t: calls.append((d, t)))
    total = sum(len(raw) for _, raw in st.data.values())
    assert calls[-1] == (total, total) and len(calls) == len(st.data)


# ---- hostile pickles: refused by name, nothing run ---------------------------------------------

class Reduce:
    """Pickles as a call fn(*args), as an attacker's object would."""

    def __init__(self, fn, *args):
        self.fn, self.args = fn, args

    def __reduce__(self):
        return self.fn, self.args


def hostile_payloads(marker: Path) -> dict[str, tuple[bytes, str]]:
    """name -> (pickle, the global the refusal must name)."""
    m = str(marker)
    getattr_chain = (b"\x80\x02cbuiltins\ngetattr\n(cbuiltins\n__import__\n(Vos\ntRVsystem\ntR(V"
                     + f"touch {m}".encode() + b"\ntR.")
    name = b"OrderedDict.__init__.__globals__"  # STACK_GLOBAL with a dotted name
    dotted = b"\x80\x04\x8c\x0bcollections\x8c" + bytes([len(name)]) + name + b"\x93."
    return {
        "os.system": (pickle.dumps(Reduce(os.system, f"touch {m}"), protocol=2),
                      f"{os.system.__module__}.system"),
        "eval": (pickle.dumps(Reduce(builtins.eval, f"open({m!r}, 'w')"), protocol=2),
                 "builtins.eval"),
        "exec": (pickle.dumps(Reduce(builtins.exec, f"open({m!r}, 'w').write('x')"),
                              protocol=4), "builtins.exec"),
        "getattr chain": (getattr_chain, "builtins.getattr"),
        "subprocess": (pickle.dumps(Reduce(subprocess.call, ["touch", m]), protocol=2),
                       "subprocess.call"),
        "not listed": (pickle.dumps({"w": Reduce(np.zeros, 3)}, protocol=2), "numpy"),
        "dotted name": (dotted, "collections.OrderedDict.__init__.__globals__"),
        "pickled module": (b"\x80\x02ctorch.nn.modules.linear\nLinear\n)\x81.",
                           "torch.nn.modules.linear.Linear"),
    }


@pytest.mark.parametrize("layout", ["zip", "legacy", "bare pickle"])
def test_hostile_pickles_are_refused_and_nothing_runs(tmp_path, layout):
    marker = tmp_path / "pwned"
    for name, (payload, glob) in hostile_payloads(marker).items():
        path = tmp_path / f"{name.replace(' ', '_')}.pth"
        if layout == "zip":
            write_zip(path, payload, Storages())
        elif layout == "legacy":
            write_legacy(path, payload, Storages())
        else:
            path.write_bytes(payload)
        with pytest.raises(CheckpointError, match="refused") as exc:
            read_checkpoint(path)
        text = str(exc.value)
        assert glob in text and "nothing in it was run" in text, (name, text)
        assert "\n" not in text
        assert not marker.exists(), name
    # the refusal of a pickled model says what to save instead
    assert "state_dict()" in text


def test_the_allowed_names_cannot_be_turned_into_anything_else(tmp_path):
    """A rebuild function fed something that is not a storage, a storage id of the wrong kind,
    a whole model's source id: each a clear refusal or 'malformed'."""
    cases = {
        "not a storage": _global("torch._utils", "_rebuild_tensor_v2") + b"(" + _str("x")
        + _int(0) + _tuple([_int(1)]) + _tuple([_int(1)]) + b"tR.",
        "module id": b"\x80\x02" + _tuple([_str("module"), _str("Evil"), _str("f.py"),
                                           _str("import os")]) + b"Q.",
        "fake storage type": b"\x80\x02" + _tuple([_str("storage"), _str("FloatStorage"),
                                                   _str("0"), _str("cpu"), _int(1)]) + b"Q.",
        "tensor subclass": _global("torch._tensor", "_rebuild_from_type_v2") + b"("
        + _global("torch._utils", "_rebuild_tensor_v2") + _global("torch", "Tensor")
        + b")}" + _str("evil") + _int(1) + b"stR.",
    }
    for name, payload in cases.items():
        path = write_zip(tmp_path / "x.pth", b"\x80\x02" + payload.removeprefix(b"\x80\x02"),
                         Storages())
        with pytest.raises(CheckpointError, match="malformed|refused") as exc:
            read_checkpoint(path)
        assert str(exc.value).startswith(str(path)), name


@pytest.mark.parametrize("size,stride,offset,numel,words", [
    ((10,), (1,), 0, 4, "reaches element 9 of a storage of 4"),
    ((2, 2), (3, 1), 0, 4, "reaches element 4"),
    ((4,), (1,), 2, 4, "offset 2"),
    ((1000, 1000), (0, 0), 0, 4, "storage of 4"),
    ((4,), (-1,), 3, 4, "negative"),
    ((-4,), (1,), 0, 4, "negative"),
])
def test_views_outside_their_storage_are_refused(tmp_path, size, stride, offset, numel, words):
    st = Storages()
    st.add("0", "FloatStorage", np.zeros(numel, np.float32))
    pkl = state_pickle({"w": tensor_ops("FloatStorage", "0", numel, offset, size, stride)})
    with pytest.raises(CheckpointError, match=words):
        read_checkpoint(write_zip(tmp_path / "v.pth", pkl, st))


def test_damaged_files_give_clear_errors(tmp_path):
    pkl, st, _ = sample_checkpoint()
    good = write_zip(tmp_path / "good.pth", pkl, st).read_bytes()
    cut = tmp_path / "cut.pth"
    cut.write_bytes(good[: len(good) // 2])
    with pytest.raises(CheckpointError, match="damaged or truncated"):
        read_checkpoint(cut)
    # a storage shorter than its tensor needs
    short = Storages()
    short.data = dict(st.data)
    short.data["0"] = ("FloatStorage", st.data["0"][1][:-4])
    with pytest.raises(CheckpointError, match="holds 44 bytes, but 12 FloatStorage elements "
                                              "need 48"):
        read_checkpoint(write_zip(tmp_path / "short.pth", pkl, short))
    # a storage member missing
    missing = Storages()
    missing.data = {k: v for k, v in st.data.items() if k != "1"}
    with pytest.raises(CheckpointError, match="storage '1' is missing"):
        read_checkpoint(write_zip(tmp_path / "missing.pth", pkl, missing))
    # legacy stream cut inside the storages
    lpkl, lst, _ = sample_checkpoint(legacy=True)
    data = write_legacy(tmp_path / "l.pth", lpkl, lst).read_bytes()
    (tmp_path / "l.pth").write_bytes(data[:-3])
    with pytest.raises(CheckpointError, match="truncated"):
        read_checkpoint(tmp_path / "l.pth")
    # a damaged pickle, a plain pickle without torch's magic, junk, an empty file
    with pytest.raises(CheckpointError, match="pickle is damaged"):
        read_checkpoint(write_zip(tmp_path / "p.pth", pkl[:40], st))
    (tmp_path / "plain.pth").write_bytes(pickle.dumps({"a": 1}, protocol=2))
    with pytest.raises(CheckpointError, match="not a PyTorch checkpoint"):
        read_checkpoint(tmp_path / "plain.pth")
    (tmp_path / "junk.bin").write_bytes(b"hello world, not weights")
    with pytest.raises(CheckpointError, match="not a weights file"):
        read_checkpoint(tmp_path / "junk.bin")
    (tmp_path / "empty.pth").write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty"):
        read_checkpoint(tmp_path / "empty.pth")
    with pytest.raises(CheckpointError, match="no such file"):
        read_checkpoint(tmp_path / "nowhere.pth")


def test_torchscript_archives_are_named(tmp_path):
    path = tmp_path / "s.pt"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("s/data.pkl", b"\x80\x02}.")
        z.writestr("s/constants.pkl", b"\x80\x02).")
        z.writestr("s/code/__torch__.py", "def forward(self): ...")
    with pytest.raises(CheckpointError, match="TorchScript"):
        read_checkpoint(path)


# ---- other formats ------------------------------------------------------------------------

def test_wrappers_are_opened(tmp_path):
    state = lenet_state()
    st = Storages()
    ops = {}
    for i, (k, a) in enumerate(state.items()):
        ops[k] = tensor_ops("FloatStorage", str(i), st.add(str(i), "FloatStorage", a), 0,
                            a.shape, tuple(s // 4 for s in a.strides))
    inner = state_pickle(ops, metadata=False)[2:-1]  # the OrderedDict's opcodes
    for wrapper in ("state_dict", "model"):
        pkl = (b"\x80\x02}(" + _str("epoch") + _int(3) + _str(wrapper) + inner
               + _str("arch") + _str("lenet5") + b"u.")
        ckpt = read_checkpoint(write_zip(tmp_path / f"{wrapper}.pth", pkl, st))
        assert any(f"under '{wrapper}'" in n for n in ckpt.notes)
        m = match_weights(make_template("lenet5").graph, ckpt)
        assert m.ok and all(np.array_equal(m.weights[k], a) for k, a in state.items())


def test_safetensors_npz_onnx_and_project_files(tmp_path):
    from safetensors.numpy import save_file

    from engine.onnx.export import export_onnx

    graph = make_template("lenet5").graph
    state = lenet_state(seed=3)
    save_file(state, str(tmp_path / "w.safetensors"))
    np.savez(tmp_path / "w.npz", **state)
    export_onnx(graph, state, path=tmp_path / "w.onnx")
    save_project(tmp_path / "w.cnnd", graph, state)
    for name in ("w.safetensors", "w.npz", "w.onnx", "w.cnnd"):
        m = load_weights(graph, tmp_path / name)
        assert m.ok and m.loaded == len(state), name
        for k, a in state.items():
            np.testing.assert_array_equal(m.weights[k], a, err_msg=f"{name} {k}")


def test_onnx_weights_by_initializer_name_when_nodes_are_not_module_paths(tmp_path):
    """A file whose node names say nothing (dynamo-style "node_3") still has the state dict's
    names on its initializers: that reading wins."""
    import onnx

    from engine.onnx.export import export_onnx

    graph = make_template("lenet5").graph
    state = lenet_state(seed=4)
    model = export_onnx(graph, state)
    for i, node in enumerate(model.graph.node):
        node.name = f"node_{i}"
    onnx.save(model, tmp_path / "anon.onnx")
    m = load_weights(graph, tmp_path / "anon.onnx")
    assert m.ok
    np.testing.assert_array_equal(m.weights["fc1.weight"], state["fc1.weight"])


def test_npz_with_object_arrays_is_refused(tmp_path):
    np.savez(tmp_path / "o.npz", w=np.array([{"a": 1}], dtype=object))
    with pytest.raises(CheckpointError, match="refused"):
        read_checkpoint(tmp_path / "o.npz")


def test_damaged_safetensors_and_onnx(tmp_path):
    (tmp_path / "bad.safetensors").write_bytes(struct.pack("<Q", 7) + b'{"a":1}')
    with pytest.raises(CheckpointError, match="safetensors"):
        read_checkpoint(tmp_path / "bad.safetensors")
    (tmp_path / "bad.onnx").write_bytes(b"\x08\x07\x12garbage")
    with pytest.raises(CheckpointError, match="ONNX"):
        read_checkpoint(tmp_path / "bad.onnx")


# ---- name mapping -----------------------------------------------------------------------------

def test_strict_lists_missing_unexpected_and_mis_shaped_with_both_shapes(tmp_path):
    graph = make_template("lenet5").graph
    state = lenet_state()
    state["fc3.weight"] = np.zeros((5, 84), np.float32)
    del state["conv1.bias"]
    state["extra.weight"] = np.zeros((2, 3), np.float32)
    np.savez(tmp_path / "w.npz", **state)
    with pytest.raises(CheckpointError) as exc:
        load_weights(graph, tmp_path / "w.npz")
    text = str(exc.value)
    assert "\n" not in text
    assert "1 mis-shaped: fc3.weight (file 5×84, design 10×84)" in text
    assert "1 missing from the file: conv1.bias (6)" in text
    assert "1 unexpected (no such weight in the design): extra.weight (2×3)" in text
    assert "8 of 10 weights fit" in text
    # non-strict: what fits, and what was skipped
    m = load_weights(graph, tmp_path / "w.npz", strict=False)
    assert m.loaded == 8 and set(m.weights) == set(state) - {"fc3.weight", "extra.weight"}
    assert "skipped" in m.skipped() and "fc3.weight (file 5×84, design 10×84)" in m.skipped()
    assert len(m.details()) == 3


def test_another_architecture_is_summarised(tmp_path):
    graph = make_template("lenet5").graph
    other = {f"features.{i}.weight": np.zeros((4, 4), np.float32) for i in range(20)}
    np.savez(tmp_path / "o.npz", **other)
    m = match_weights(graph, read_checkpoint(tmp_path / "o.npz"))
    text = m.summary()
    assert "another architecture" in text and "0 of 10 weights fit" in text
    assert "10 missing from the file: conv1.weight (6×1×5×5), conv1.bias (6), conv2.weight " \
           "(16×6×5×5) and 7 more" in text
    assert "20 unexpected" in text and "and 17 more" in text
    with pytest.raises(CheckpointError, match="another architecture"):
        load_weights(graph, tmp_path / "o.npz", strict=False)  # nothing fits: an error anyway


def test_prefixes_counters_auxiliary_heads_and_module_held_tensors(tmp_path):
    graph = make_template("lenet5").graph
    state = lenet_state()
    wrapped = {f"module.{k}": v for k, v in state.items()}
    wrapped["module.bn.num_batches_tracked"] = np.array(3)
    wrapped["module.AuxLogits.fc.weight"] = np.zeros((10, 768), np.float32)
    m = match_weights(graph, wrapped)
    assert m.ok, m.summary()
    assert any("prefix 'module.'" in n for n in m.notes)
    assert any("auxiliary classifier 'AuxLogits'" in n for n in m.notes)
    # ConvNeXt keeps its layer scale on the block itself: features.1.0.layer_scale (C, 1, 1)
    g = Graph("scale")
    g.add_node("Input", "input", {"channels": 4, "height": 5, "width": 5}, node_id="input")
    g.add_node("Scale", "features.1.0.layer_scale", {}, node_id="features.1.0.layer_scale")
    g.add_edge("input", "features.1.0.layer_scale")
    gamma = np.arange(4, dtype=np.float32)
    m = match_weights(g, {"features.1.0.layer_scale": gamma.reshape(4, 1, 1)})
    assert m.ok, m.summary()
    np.testing.assert_array_equal(m.weights["features.1.0.layer_scale.weight"], gamma)


def test_float16_is_widened_and_nan_is_refused():
    graph = make_template("lenet5").graph
    state = {k: v.astype(np.float16) for k, v in lenet_state().items()}
    m = match_weights(graph, state)
    assert m.ok and all(a.dtype == np.float32 for a in m.weights.values())
    assert any("float16 to float32" in n for n in m.notes)
    state["fc1.bias"] = np.full(120, np.nan, np.float16)
    m = match_weights(graph, state)
    assert not m.ok and m.bad_values == ["fc1.bias"] and "NaN" in m.summary()


def test_an_invalid_design_is_refused():
    g = make_template("lenet5").graph
    g.nodes["fc1"].params["in_features"] = 7  # no longer fits the flattened 400 features
    with pytest.raises(CheckpointError, match="fix it before loading weights"):
        match_weights(g, lenet_state())


# ---- the command line ---------------------------------------------------------------------------

def test_cli_new_with_weights_from(tmp_path, capsys):
    state = lenet_state(seed=5)
    ckpt = torch_zip_of(tmp_path / "lenet.pth", state)
    out = tmp_path / "l.cnnd"
    assert main(["new", "lenet5", "--weights-from", str(ckpt), "--out", str(out)]) == 0
    assert "weights from 'lenet.pth' (10 of 10)" in capsys.readouterr().err
    p = load_project(out)
    assert all(np.array_equal(p.weights[k], a) for k, a in state.items())
    assert p.meta["template"] == "lenet5"


def test_cli_mismatch_errors_and_non_strict(tmp_path, capsys):
    ckpt = torch_zip_of(tmp_path / "five.pth", lenet_state(classes=5, seed=6))
    out = tmp_path / "l.cnnd"
    assert main(["new", "lenet5", "--weights-from", str(ckpt), "--out", str(out)]) == 1
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: 'five.pth' does not fit")
    assert "fc3.weight (file 5×84, design 10×84)" in err and "add --classes 5" in err
    assert "--non-strict" in err and not out.exists()
    # the class count from the hint makes it fit
    assert main(["new", "lenet5", "--classes", "5", "--weights-from", str(ckpt), "--out",
                 str(out)]) == 0
    capsys.readouterr()
    # non-strict: the head gets fresh weights, the rest comes from the file
    assert main(["new", "lenet5", "--weights-from", str(ckpt), "--out", str(out),
                 "--non-strict", "--seed", "2"]) == 0
    err = capsys.readouterr().err
    assert "loaded 8 of the design's 10 weights" in err and "seed 2" in err
    p = load_project(out)
    src = read_torch_file(ckpt)
    assert np.array_equal(p.weights["conv1.weight"], src["conv1.weight"])
    assert p.weights["fc3.weight"].shape == (10, 84)


def test_cli_usage_and_hostile_files(tmp_path, capsys):
    out = str(tmp_path / "l.cnnd")
    assert main(["new", "lenet5", "--non-strict", "--out", out]) == 2
    assert main(["new", "lenet5", "--weights", "--weights-from", "x.pth", "--out", out]) == 2
    assert main(["new", "lenet5", "--weights-from", str(tmp_path / "none.pth"), "--out",
                 out]) == 1
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pth"
    write_zip(evil, pickle.dumps(Reduce(os.system, f"touch {marker}"), protocol=2), Storages())
    capsys.readouterr()
    assert main(["new", "lenet5", "--weights-from", str(evil), "--out", out]) == 1
    err = capsys.readouterr().err
    assert "refused" in err and ".system" in err and not marker.exists()
    assert not Path(out).exists()


# ---- with torch: the reader against torch.load, torchvision's nets end to end -----------------

def photo_like(size: int, n: int = 1) -> np.ndarray:
    """A smooth, photo-like RGB image (gradients, blobs, a little noise) normalised with
    ImageNet's mean and std, as torchvision's weights expect: (n, 3, size, size)."""
    rng = np.random.default_rng(11)
    y, x = np.mgrid[0:size, 0:size] / size
    imgs = []
    for _ in range(n):
        img = np.stack([0.5 + 0.4 * np.sin(3 * x + rng.random() * 6) * np.cos(2 * y),
                        0.4 + 0.3 * x * y + 0.2 * np.exp(-((x - 0.5) ** 2 + (y - 0.4) ** 2) * 9),
                        0.3 + 0.4 * (1 - y) * rng.random()])
        img = np.clip(img + 0.02 * rng.standard_normal(img.shape), 0, 1)
        imgs.append(img)
    mean = np.array([0.485, 0.456, 0.406])[:, None, None]
    std = np.array([0.229, 0.224, 0.225])[:, None, None]
    return ((np.stack(imgs) - mean) / std).astype(np.float32)


def test_reader_equals_torch_load(tmp_path):
    torch = pytest.importorskip("torch")
    gen = torch.Generator().manual_seed(0)
    base = torch.randn(6, 5, generator=gen)
    state = {
        "w": torch.randn(3, 4, 5, generator=gen),
        "t": base.t(), "slice": base[2:4, 1:], "half": torch.randn(7, generator=gen).half(),
        "bf16": torch.randn(4, generator=gen).bfloat16(), "f64": torch.randn(2, generator=gen,
                                                                              dtype=torch.float64),
        "param": torch.nn.Parameter(torch.randn(3, generator=gen)),
        "n": torch.tensor(4), "empty": torch.zeros(0, 3), "scalar": torch.tensor(2.5),
    }
    for legacy in (False, True):
        path = tmp_path / f"s{legacy}.pth"
        torch.save({"state_dict": state, "epoch": 2, "names": ["a", ("b", 1.5)]}, path,
                   _use_new_zipfile_serialization=not legacy)
        ref = torch.load(path, weights_only=True)
        got = read_torch_file(path)
        assert got["epoch"] == 2 and got["names"] == ["a", ("b", 1.5)]
        for k, t in ref["state_dict"].items():
            want = t.detach().float().numpy() if t.dtype == torch.bfloat16 else \
                t.detach().numpy()
            assert got["state_dict"][k].dtype == want.dtype, k
            np.testing.assert_array_equal(got["state_dict"][k], want, err_msg=k)


def _torchvision():
    from tests.engine.test_templates_torchvision import redraw_torch, torchvision_models

    torch, models = torchvision_models()
    return torch, models, redraw_torch


def _end_to_end(tmp_path, name: str, size: int, **kwargs):
    """torchvision's `name` re-drawn, torch.save(model.state_dict()), loaded into the template
    through the file: (relative error against torch, seconds to read + match + run, the
    match)."""
    torch, models, redraw = _torchvision()
    model = getattr(models, name)(weights=None, **kwargs).eval()
    redraw(torch, model)
    path = tmp_path / f"{name}.pth"
    torch.save(model.state_dict(), path)
    graph = make_template(name).graph
    x = photo_like(size)
    t0 = time.perf_counter()
    m = load_weights(graph, path)
    net = Network.compile(graph)
    net.load_state_dict(m.weights)
    ours = net.forward(x)
    seconds = time.perf_counter() - t0
    with torch.no_grad():
        ref = model(torch.from_numpy(x))
    ref = (ref.logits if hasattr(ref, "logits") else ref).numpy()
    assert ours.shape == ref.shape
    err = float(np.max(np.abs(ours - ref)) / np.max(np.abs(ref)))
    print(f"{name}: relative error {err:.1e}; read + match + forward of one {size}×{size} "
          f"image: {seconds:.1f} s")
    return err, seconds, m


@pytest.mark.parametrize("name", ["resnet18", "squeezenet1_1"])
def test_torchvision_state_dicts_give_torchs_outputs(tmp_path, name):
    err, _, m = _end_to_end(tmp_path, name, 224)
    assert err <= 1e-4 and m.ok


def test_inception_v3_with_its_auxiliary_head_at_299(tmp_path):
    """torchvision's file carries AuxLogits (training only): left out, said, and the outputs
    still agree. The figure printed is the time to read, match and run one image."""
    err, _, m = _end_to_end(tmp_path, "inception_v3", 299, aux_logits=True,
                            init_weights=False)
    assert err <= 1e-4 and m.ok
    assert any("auxiliary classifier 'AuxLogits'" in n for n in m.notes)


def test_torch_wrappers_and_dataparallel_prefix(tmp_path):
    torch, models, redraw = _torchvision()
    model = models.resnet18(weights=None).eval()
    redraw(torch, model)
    sd = model.state_dict()
    want = {k: v.numpy() for k, v in sd.items() if not k.endswith("num_batches_tracked")}
    graph = make_template("resnet18").graph
    files = {"sd.pth": {"state_dict": sd, "epoch": 90, "best_acc1": torch.tensor(69.7)},
             "model.pth": {"model": sd, "optimizer": {"lr": 0.1}},
             "dp.pth": {"state_dict": {f"module.{k}": v for k, v in sd.items()}}}
    for fname, obj in files.items():
        torch.save(obj, tmp_path / fname)
        m = load_weights(graph, tmp_path / fname)
        assert m.ok, fname
        for k, a in want.items():
            np.testing.assert_array_equal(m.weights[k], a, err_msg=f"{fname} {k}")
    torch.save(model, tmp_path / "whole.pth")  # a pickled nn.Module: refused, not run
    with pytest.raises(CheckpointError, match="torchvision.models.resnet.ResNet.*state_dict"):
        load_weights(graph, tmp_path / "whole.pth")
