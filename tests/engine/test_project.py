"""Project files: round trip, atomic save, and every broken or hostile file a clear ProjectError."""

import io
import json
import os
import zipfile

import numpy as np
import pytest

from engine import __version__
from engine.errors import ProjectError
from engine.nn.network import Network
from engine.project import FORMAT, FORMAT_VERSION, load_project, save_architecture, save_project
from engine.zoo.examples import load_example


@pytest.fixture(scope="module")
def lenet():
    g = load_example("lenet5")
    net = Network.compile(g, np.random.default_rng(3))
    return g, net


def npz_bytes(**arrays):
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def make_zip(path, members: dict, compression=zipfile.ZIP_DEFLATED):
    with zipfile.ZipFile(path, "w", compression) as z:
        for name, data in members.items():
            z.writestr(name, data)
    return path


def valid_members(graph, weights=None, meta=None):
    m = {"meta.json": json.dumps(meta or {"format": FORMAT, "version": FORMAT_VERSION}),
         "graph.json": json.dumps(graph.to_json())}
    if weights is not None:
        m["weights.npz"] = npz_bytes(**weights)
    return m


# ---- round trip ---------------------------------------------------------------------------

def test_round_trip_with_weights_and_history(tmp_path, lenet):
    g, net = lenet
    history = {"epochs": [{"epoch": 1, "train_loss": np.float32(0.5)}], "stopped": None}
    path = save_project(tmp_path / "m.cnnd", g, net.state_dict(),
                        {"history": history, "train_config": {"epochs": 1, "lr": 0.001}})
    p = load_project(path)
    assert p.graph.to_json() == g.to_json()
    assert set(p.weights) == set(net.state_dict())
    for k, v in net.state_dict().items():
        assert p.weights[k].dtype == np.float32
        np.testing.assert_array_equal(p.weights[k], v)
    assert p.meta["format"] == FORMAT and p.meta["version"] == FORMAT_VERSION
    assert p.meta["app_version"] == __version__
    assert p.meta["history"]["epochs"][0]["train_loss"] == 0.5
    assert p.meta["train_config"]["lr"] == 0.001
    assert p.meta["created"] and p.meta["modified"]
    # the loaded weights drive a network to the same outputs
    net2 = Network.compile(p.graph, np.random.default_rng(99))
    net2.load_state_dict(p.weights)
    x = np.random.default_rng(0).random((3, 1, 28, 28), dtype=np.float32)
    np.testing.assert_array_equal(net2.forward(x), net.forward(x))


def test_round_trip_without_weights_keeps_created(tmp_path, lenet):
    g, _ = lenet
    path = save_project(tmp_path / "m.cnnd", g, meta={"created": "2020-01-01T00:00:00+00:00"})
    p = load_project(path)
    assert p.weights is None
    assert p.meta["created"] == "2020-01-01T00:00:00+00:00"
    assert p.meta["modified"] != p.meta["created"]


def test_bare_architecture_json_opens(tmp_path, lenet):
    g, _ = lenet
    path = save_architecture(tmp_path / "arch.json", g)
    p = load_project(path)
    assert p.graph.to_json() == g.to_json() and p.weights is None


def test_batchnorm_buffers_survive(tmp_path):
    g = load_example("small_vgg")
    net = Network.compile(g, np.random.default_rng(0))
    net.layers["bn1_1"].weights["running_mean"][...] = 0.25
    save_project(tmp_path / "v.cnnd", g, net.state_dict())
    p = load_project(tmp_path / "v.cnnd")
    np.testing.assert_array_equal(p.weights["bn1_1.running_mean"], 0.25)


# ---- atomic save --------------------------------------------------------------------------

def test_failed_replace_leaves_old_file_intact(tmp_path, lenet, monkeypatch):
    g, net = lenet
    path = save_project(tmp_path / "m.cnnd", g, net.state_dict())
    before = path.read_bytes()

    def boom(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", boom)
    g2 = g.copy()
    g2.name = "changed"
    with pytest.raises(ProjectError, match="No space left"):
        save_project(path, g2, None)
    assert path.read_bytes() == before
    assert [f.name for f in tmp_path.iterdir()] == ["m.cnnd"]  # no temp file left behind


def test_failure_while_writing_leaves_old_file_intact(tmp_path, lenet):
    g, net = lenet
    path = save_project(tmp_path / "m.cnnd", g, net.state_dict())
    before = path.read_bytes()
    with pytest.raises(ProjectError, match="metadata"):
        save_project(path, g, None, {"bad": object()})
    with pytest.raises(TypeError):  # a bug mid-write: the exception passes, the file stays
        save_project(path, g, {"conv1.weight": object()})
    assert path.read_bytes() == before
    assert [f.name for f in tmp_path.iterdir()] == ["m.cnnd"]


def test_save_into_missing_folder_is_a_project_error(tmp_path, lenet):
    with pytest.raises(ProjectError, match="cannot write"):
        save_project(tmp_path / "nope" / "m.cnnd", lenet[0])


# ---- broken and hostile files ------------------------------------------------------------

def test_missing_file(tmp_path):
    with pytest.raises(ProjectError, match="no such file"):
        load_project(tmp_path / "missing.cnnd")


def test_not_a_zip_nor_json(tmp_path):
    p = tmp_path / "x.cnnd"
    p.write_bytes(b"\x00\x01garbage" * 10)
    with pytest.raises(ProjectError, match="neither a CNN Designer project"):
        load_project(p)


def test_truncated_zip(tmp_path, lenet):
    g, net = lenet
    path = save_project(tmp_path / "m.cnnd", g, net.state_dict())
    data = path.read_bytes()
    for cut in (len(data) // 2, len(data) - 30, 100):
        path.write_bytes(data[:cut])
        with pytest.raises(ProjectError, match="damaged|truncated"):
            load_project(path)


def test_corrupted_member_fails_its_check(tmp_path, lenet):
    g, _ = lenet
    path = make_zip(tmp_path / "m.cnnd", valid_members(g), zipfile.ZIP_STORED)
    data = bytearray(path.read_bytes())
    i = data.index(b'"nodes"')
    data[i + 2] ^= 0x20  # flip a bit inside graph.json: CRC mismatch
    path.write_bytes(bytes(data))
    with pytest.raises(ProjectError, match="damaged"):
        load_project(path)


def test_missing_graph_json(tmp_path):
    path = make_zip(tmp_path / "m.cnnd", {"meta.json": "{}", "other.txt": "hi"})
    with pytest.raises(ProjectError, match="no graph.json"):
        load_project(path)


@pytest.mark.parametrize("member, text, match", [
    ("graph.json", "{not json", "architecture is damaged.*invalid JSON"),
    ("graph.json", "[1, 2]", "not a valid architecture"),
    ("graph.json", '{"nodes": [{"type": "Warp"}]}', "unknown layer type 'Warp'"),
    ("meta.json", "{]", "metadata is damaged"),
    ("meta.json", "[]", "must be a JSON object"),
    ("graph.json", "[" * 100000 + "]" * 100000, "damaged"),
])
def test_bad_json(tmp_path, lenet, member, text, match):
    members = valid_members(lenet[0])
    members[member] = text
    path = make_zip(tmp_path / "m.cnnd", members)
    with pytest.raises(ProjectError, match=match):
        load_project(path)


def test_bad_bare_json(tmp_path):
    p = tmp_path / "a.json"
    p.write_text('{"format": "cnn-designer-graph", "nodes": [', encoding="utf-8")
    with pytest.raises(ProjectError, match="invalid JSON at line 1"):
        load_project(p)


def test_newer_format_version(tmp_path, lenet):
    members = valid_members(lenet[0], meta={"format": FORMAT, "version": FORMAT_VERSION + 1,
                                            "app_version": "9.0"})
    path = make_zip(tmp_path / "m.cnnd", members)
    with pytest.raises(ProjectError, match=f"version {FORMAT_VERSION + 1}.*newer.*Update"):
        load_project(path)


def test_foreign_format(tmp_path, lenet):
    members = valid_members(lenet[0], meta={"format": "keras", "version": 1})
    with pytest.raises(ProjectError, match="not a CNN Designer project"):
        load_project(make_zip(tmp_path / "m.cnnd", members))


@pytest.mark.parametrize("name", ["../evil.txt", "/etc/evil", "a/../../evil", "C:/evil",
                                  "..\\evil"])
def test_path_tricks_refused(tmp_path, lenet, name):
    members = valid_members(lenet[0])
    members[name] = "x"
    path = make_zip(tmp_path / "m.cnnd", members)
    with pytest.raises(ProjectError, match="unsafe path"):
        load_project(path)
    assert not (tmp_path.parent / "evil.txt").exists()


def test_duplicate_member_refused(tmp_path, lenet):
    members = valid_members(lenet[0])
    path = make_zip(tmp_path / "m.cnnd", members)
    with pytest.warns(UserWarning), zipfile.ZipFile(path, "a") as z:
        z.writestr("graph.json", "{}")
    with pytest.raises(ProjectError, match="twice"):
        load_project(path)


def test_zip_bomb_by_ratio(tmp_path, lenet):
    members = valid_members(lenet[0])
    members["padding.bin"] = b"\0" * (8 << 20)  # 8 MiB of zeros deflate ~1000:1
    path = make_zip(tmp_path / "m.cnnd", members)
    assert path.stat().st_size < 100_000
    with pytest.raises(ProjectError, match="zip bomb"):
        load_project(path)


def test_zip_bomb_by_declared_size(tmp_path, lenet):
    """A member whose header claims 2 GiB: refused from the directory, nothing inflated."""
    members = valid_members(lenet[0])
    path = make_zip(tmp_path / "m.cnnd", members, zipfile.ZIP_STORED)
    data = bytearray(path.read_bytes())
    # patch the central directory entry of graph.json: uncompressed size at offset 24
    i = data.index(b"PK\x01\x02")
    while i >= 0:
        name_len = int.from_bytes(data[i + 28:i + 30], "little")
        if data[i + 46:i + 46 + name_len] == b"graph.json":
            data[i + 24:i + 28] = (2 << 30).to_bytes(4, "little")
        i = data.find(b"PK\x01\x02", i + 4)
    path.write_bytes(bytes(data))
    with pytest.raises(ProjectError, match="refused: the archive would inflate"):
        load_project(path)


def test_member_over_the_size_cap_refused(tmp_path, lenet, monkeypatch):
    """Sizes are checked before reading; reads never go past the declared size."""
    from engine import project

    members = valid_members(lenet[0])
    members["graph.json"] = " " * 5000 + members["graph.json"]
    path = make_zip(tmp_path / "m.cnnd", members)
    monkeypatch.setattr(project, "MAX_JSON_BYTES", 4000)
    with pytest.raises(ProjectError, match="declares .* more than"):
        load_project(path)


def test_pickled_weights_refused(tmp_path, lenet):
    g = lenet[0]
    members = valid_members(g)
    members["weights.npz"] = npz_bytes(**{"conv1.weight": np.array([{"x": 1}], dtype=object)})
    path = make_zip(tmp_path / "m.cnnd", members)
    with pytest.raises(ProjectError, match="refused array 'conv1.weight'.*[Oo]bject arrays"):
        load_project(path)


def test_non_numeric_weights_refused(tmp_path, lenet):
    members = valid_members(lenet[0])
    members["weights.npz"] = npz_bytes(**{"conv1.weight": np.array(["a", "b"])})
    with pytest.raises(ProjectError, match="must be numbers"):
        load_project(make_zip(tmp_path / "m.cnnd", members))


def test_stored_arrays_of_any_layout_and_number_type_load_as_float32(tmp_path, lenet):
    """Stored .npy members are read in place (not through np.load): Fortran order, float64,
    int32 and big-endian arrays still arrive as the same numbers, float32, C order, writable,
    each its own memory."""
    g, net = lenet
    w = net.state_dict()
    given = dict(w)
    given["conv1.weight"] = np.asfortranarray(w["conv1.weight"])
    given["conv2.weight"] = w["conv2.weight"].astype(np.float64)
    given["fc1.bias"] = np.arange(w["fc1.bias"].size, dtype=np.int32)
    given["fc2.weight"] = w["fc2.weight"].astype(">f4")
    path = make_zip(tmp_path / "m.cnnd", valid_members(g, given), zipfile.ZIP_STORED)
    back = load_project(path).weights
    for k, a in given.items():
        assert back[k].dtype == np.float32 and back[k].flags.c_contiguous, k
        assert back[k].flags.writeable and back[k].flags.aligned, k
        assert np.array_equal(back[k], a.astype(np.float32)), k
    arrays = list(back.values())
    assert not any(np.shares_memory(a, b) for i, a in enumerate(arrays) for b in arrays[:i])


def _npy(shape, payload: bytes) -> bytes:
    """An .npy member whose header declares float32 `shape` and whose data is `payload`."""
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": "<f4", "fortran_order": False,
                                              "shape": shape})
    return buf.getvalue() + payload


@pytest.mark.parametrize("shape", [(6, 1, 5, 5), (2**40, 2**40), (2**62, 4)])
def test_a_header_claiming_more_values_than_its_bytes_is_refused(tmp_path, lenet, shape):
    members = valid_members(lenet[0])
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        z.writestr("conv1.weight.npy", _npy(shape, b"\0" * 40))
    members["weights.npz"] = buf.getvalue()
    with pytest.raises(ProjectError, match=r"refused array 'conv1.weight': its .* values do "
                                           r"not fit its \d+ bytes"):
        load_project(make_zip(tmp_path / "m.cnnd", members))


def test_saved_weights_are_a_plain_npz(tmp_path, lenet):
    """The .npz written straight into the project reads with np.load (older versions, other
    tools) and holds each array exactly."""
    g, net = lenet
    w = net.state_dict()
    path = save_project(tmp_path / "m.cnnd", g, w)
    with zipfile.ZipFile(path) as z:
        npz = np.load(io.BytesIO(z.read("weights.npz")), allow_pickle=False)
        assert sorted(npz.files) == sorted(w)
        assert all(np.array_equal(npz[k], w[k]) for k in w)


def test_weights_npz_not_a_zip(tmp_path, lenet):
    members = valid_members(lenet[0])
    members["weights.npz"] = b"not an npz at all"
    with pytest.raises(ProjectError, match="weights.npz is damaged"):
        load_project(make_zip(tmp_path / "m.cnnd", members))


def test_weights_of_wrong_shape_name_the_layer(tmp_path, lenet):
    g, net = lenet
    w = net.state_dict()
    w["conv2.weight"] = np.zeros((16, 6, 3, 3), np.float32)
    path = make_zip(tmp_path / "m.cnnd", valid_members(g, w))
    with pytest.raises(ProjectError, match=r"layer 'conv2': 'weight' is 16×6×3×3 in the weights "
                                           r"but the layer needs 16×6×5×5"):
        load_project(path)
    p = load_project(path, strict=False)  # lenient: the rest loads, the mismatch is reported
    assert "conv2.weight" not in p.weights and "conv1.weight" in p.weights
    assert any("conv2" in w for w in p.warnings)


def test_missing_and_extra_weights(tmp_path, lenet):
    g, net = lenet
    w = net.state_dict()
    del w["fc1.bias"]
    w["ghost.weight"] = np.zeros(3, np.float32)
    path = make_zip(tmp_path / "m.cnnd", valid_members(g, w))
    with pytest.raises(ProjectError) as exc:
        load_project(path)
    msg = str(exc.value)
    assert "layer 'fc1' has no 'bias'" in msg and "ghost" in msg


def test_nan_weights_reported(tmp_path, lenet):
    g, net = lenet
    w = net.state_dict()
    w["fc3.bias"][0] = np.nan
    with pytest.raises(ProjectError, match="fc3.*NaN"):
        load_project(make_zip(tmp_path / "m.cnnd", valid_members(g, w)))


@pytest.mark.parametrize("history", [["x"], "text", 3, None])
def test_a_history_that_is_not_an_object_is_ignored(tmp_path, history):
    import json
    import zipfile

    from engine.project import load_project
    from engine.zoo.examples import example_path

    path = tmp_path / "odd.cnnd"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("graph.json", example_path("lenet5").read_text())
        z.writestr("meta.json", json.dumps({"format": "cnn-designer-project", "version": 1,
                                            "history": history}))
    assert load_project(path).history is None
