"""Data loaders: IDX (plain, .gz, folders), image folders, .npz, load_dataset, fit checks, and a
clear DataError for every bad file. Files are made tiny in tmp_path."""

import gzip
import hashlib
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from engine.data import (
    MNIST_DIR,
    MNIST_FILES,
    DataBundle,
    Dataset,
    check_data,
    load_dataset,
    load_idx_folder,
    load_idx_pair,
    load_image_folder,
    load_mnist,
    load_npz,
    read_idx,
)
from engine.errors import DataError
from engine.graph import sequential
from engine.zoo.examples import load_example


def idx_bytes(arr: np.ndarray) -> bytes:
    """Write IDX by the spec (independent of read_idx): 0 0 type ndim, big-endian dims, data."""
    code = {np.dtype(np.uint8): 0x08, np.dtype(">i4"): 0x0C, np.dtype(">f4"): 0x0D}[arr.dtype]
    head = bytes([0, 0, code, arr.ndim]) + b"".join(d.to_bytes(4, "big") for d in arr.shape)
    return head + arr.tobytes()


def write_idx(path: Path, arr: np.ndarray, gz: bool = False) -> Path:
    data = idx_bytes(arr)
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


@pytest.fixture
def tiny_images():
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (5, 4, 3), dtype=np.uint8), np.array([0, 1, 2, 1, 0], np.uint8)


# ---- MNIST ---------------------------------------------------------------------------------

def test_shipped_mnist_md5s_match_readme():
    readme = (MNIST_DIR / "README.md").read_text(encoding="utf-8")
    for fname, md5 in MNIST_FILES.values():
        assert hashlib.md5((MNIST_DIR / fname).read_bytes()).hexdigest() == md5, fname
        assert re.search(rf"{re.escape(fname)}\s*\|\s*{md5}", readme), fname
    for who in ("Yann LeCun", "Corinna Cortes", "Christopher J.C. Burges", "CC BY-SA 3.0"):
        assert who in readme


def test_mnist_limit_and_range():
    ds = load_mnist("test", limit=50)
    assert ds.x.shape == (50, 1, 28, 28) and ds.x.dtype == np.float32
    assert 0 <= ds.x.min() and ds.x.max() <= 1 and ds.x.max() > 0.9
    assert ds.y.dtype == np.int64 and set(ds.y.tolist()) <= set(range(10))
    b = load_dataset("MNIST", limit=30)
    assert len(b.train) == 30 and len(b.test) == 30 and b.num_classes == 10


# ---- IDX -----------------------------------------------------------------------------------

@pytest.mark.parametrize("gz", [False, True])
def test_idx_pair(tmp_path, tiny_images, gz):
    x, y = tiny_images
    img = write_idx(tmp_path / "train-images-idx3-ubyte", x, gz)
    lbl = write_idx(tmp_path / "train-labels-idx1-ubyte", y, gz)
    ds = load_idx_pair(img, lbl)
    assert ds.x.shape == (5, 1, 4, 3)
    np.testing.assert_allclose(ds.x[:, 0], x / 255.0, rtol=1e-6)
    assert ds.y.tolist() == y.tolist() and ds.num_classes == 3


def test_idx_folder_with_test_split(tmp_path, tiny_images):
    x, y = tiny_images
    write_idx(tmp_path / "train-images-idx3-ubyte.gz", x, gz=True)
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", y, gz=True)
    write_idx(tmp_path / "t10k-images-idx3-ubyte", x[:2])
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.array([3, 0], np.uint8))
    b = load_idx_folder(tmp_path)
    assert len(b.train) == 5 and len(b.test) == 2
    assert b.num_classes == 4 and b.train.classes == b.test.classes
    b2 = load_dataset(tmp_path)  # the entry point picks the IDX loader for this folder
    assert len(b2.test) == 2


def test_idx_folder_missing_partner(tmp_path, tiny_images):
    write_idx(tmp_path / "train-images-idx3-ubyte", tiny_images[0])
    with pytest.raises(DataError, match="train-images-idx3-ubyte has no partner"):
        load_idx_folder(tmp_path)


def test_idx_wrong_magic(tmp_path):
    p = tmp_path / "train-images-idx3-ubyte"
    p.write_bytes(b"\x12\x34\x08\x03" + b"\0" * 20)
    with pytest.raises(DataError, match=rf"{re.escape(str(p))}: not an IDX file \(wrong magic"):
        read_idx(p)


def test_idx_truncated(tmp_path, tiny_images):
    p = tmp_path / "imgs.idx"
    p.write_bytes(idx_bytes(tiny_images[0])[:-7])
    with pytest.raises(DataError, match=r"imgs.idx: IDX header promises 5×4×3 values .*truncated"):
        read_idx(p)
    p.write_bytes(b"\0\0\x08\x03\0\0")  # header itself cut short
    with pytest.raises(DataError, match="header is truncated"):
        read_idx(p)


def test_idx_truncated_gzip(tmp_path, tiny_images):
    p = tmp_path / "imgs.gz"
    p.write_bytes(gzip.compress(idx_bytes(tiny_images[0]))[:-12])
    with pytest.raises(DataError, match="imgs.gz: cannot read it; truncated or damaged"):
        read_idx(p)


def test_idx_label_count_mismatch(tmp_path, tiny_images):
    x, y = tiny_images
    img = write_idx(tmp_path / "a-images", x)
    lbl = write_idx(tmp_path / "a-labels", y[:4])
    with pytest.raises(DataError, match="a-labels: 4 labels but a-images holds 5 images"):
        load_idx_pair(img, lbl)


def test_idx_empty(tmp_path):
    img = write_idx(tmp_path / "e-images", np.zeros((0, 4, 4), np.uint8))
    lbl = write_idx(tmp_path / "e-labels", np.zeros(0, np.uint8))
    with pytest.raises(DataError, match="e-images: the file holds no images"):
        load_idx_pair(img, lbl)


def test_idx_labels_wrong_rank(tmp_path, tiny_images):
    x, _ = tiny_images
    img = write_idx(tmp_path / "i", x)
    lbl = write_idx(tmp_path / "l", x)  # images given as labels
    with pytest.raises(DataError, match="l: an IDX labels file holds N values"):
        load_idx_pair(img, lbl)


def test_idx_negative_labels(tmp_path, tiny_images):
    x, _ = tiny_images
    img = write_idx(tmp_path / "i", x)
    lbl = write_idx(tmp_path / "l", np.array([0, 1, -1, 2, 0], ">i4"))
    with pytest.raises(DataError, match="label -1 is out of range"):
        load_idx_pair(img, lbl)


def test_missing_file():
    with pytest.raises(DataError, match="no such file"):
        read_idx("/nonexistent/train-images")
    with pytest.raises(DataError, match="no such file or folder"):
        load_dataset("/nonexistent/data.npz")


# ---- image folders -------------------------------------------------------------------------

def make_image_folder(root: Path, classes=("cat", "dog"), n=2, size=(6, 5), mode="RGB"):
    rng = np.random.default_rng(1)
    for c in classes:
        (root / c).mkdir(parents=True)
        for i in range(n):
            shape = (size[1], size[0], 3) if mode == "RGB" else (size[1], size[0])
            Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode).save(
                root / c / f"{i}.png")
    return root


def test_image_folder_rgb_and_grey(tmp_path):
    root = make_image_folder(tmp_path / "pets")
    ds = load_image_folder(root, (3, 8, 8))
    assert ds.x.shape == (4, 3, 8, 8) and ds.x.dtype == np.float32
    assert ds.classes == ["cat", "dog"] and ds.y.tolist() == [0, 0, 1, 1]
    assert 0 <= ds.x.min() and ds.x.max() <= 1
    grey = load_image_folder(root, (1, 5, 6))  # native size: no resampling, exact grey values
    assert grey.x.shape == (4, 1, 5, 6)
    with Image.open(root / "cat" / "0.png") as im:
        expect = np.asarray(im.convert("L"), np.float32) / 255
    np.testing.assert_allclose(grey.x[0, 0], expect, atol=1e-6)


def test_image_folder_with_train_and_test(tmp_path):
    make_image_folder(tmp_path / "d" / "train")
    make_image_folder(tmp_path / "d" / "test", classes=("dog",), n=1)
    b = load_dataset(tmp_path / "d", (1, 4, 4))
    assert len(b.train) == 4 and len(b.test) == 1
    assert b.test.y.tolist() == [1]  # 'dog' keeps its training class number


def test_image_folder_no_class_folders(tmp_path):
    (tmp_path / "flat").mkdir()
    Image.new("L", (4, 4)).save(tmp_path / "flat" / "a.png")
    with pytest.raises(DataError, match="flat: no class folders"):
        load_image_folder(tmp_path / "flat", (1, 4, 4))


def test_image_folder_empty_class(tmp_path):
    root = make_image_folder(tmp_path / "p")
    (root / "zebra").mkdir()
    with pytest.raises(DataError, match="class folder 'zebra' holds no images"):
        load_image_folder(root, (1, 4, 4))


def test_image_folder_unreadable_image_is_named(tmp_path):
    root = make_image_folder(tmp_path / "p")
    (root / "dog" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    with pytest.raises(DataError, match=r"broken\.jpg: unreadable image"):
        load_image_folder(root, (3, 4, 4))


def test_image_folder_bad_channels(tmp_path):
    root = make_image_folder(tmp_path / "p")
    with pytest.raises(DataError, match="Input has 2 channels"):
        load_image_folder(root, (2, 4, 4))


# ---- .npz ----------------------------------------------------------------------------------

@pytest.mark.parametrize("layout", ["NHW", "NCHW", "NHWC"])
def test_npz_layouts(tmp_path, layout):
    rng = np.random.default_rng(2)
    base = rng.integers(0, 256, (6, 3, 5, 7), dtype=np.uint8)  # N, C, H, W
    x = {"NHW": base[:, 0], "NCHW": base, "NHWC": base.transpose(0, 2, 3, 1)}[layout]
    y = np.array([0, 1, 2, 3, 4, 0])
    np.savez(tmp_path / "d.npz", x=x, y=y)
    b = load_dataset(tmp_path / "d.npz", (1 if layout == "NHW" else 3, 5, 7))
    want = base[:, :1] if layout == "NHW" else base
    assert b.train.x.shape == want.shape
    np.testing.assert_allclose(b.train.x, want / 255.0, rtol=1e-6)
    assert b.train.y.tolist() == y.tolist() and b.test is None


def test_npz_float_and_test_split_and_classes(tmp_path):
    x = np.linspace(0, 1, 2 * 4 * 4, dtype=np.float32).reshape(2, 4, 4)
    np.savez(tmp_path / "d.npz", x=x, y=[0, 1], x_test=x[:1], y_test=[1],
             classes=np.array(["no", "yes"]))
    b = load_npz(tmp_path / "d.npz")
    np.testing.assert_array_equal(b.train.x[:, 0], x)  # already in [0, 1]: kept
    assert b.classes == ["no", "yes"] and len(b.test) == 1


def test_npz_float_0_255_and_other_ranges(tmp_path):
    np.savez(tmp_path / "a.npz", x=np.full((2, 3, 3), 255.0), y=[0, 1])
    assert load_npz(tmp_path / "a.npz").train.x.max() == pytest.approx(1.0)
    np.savez(tmp_path / "b.npz", x=np.array([[[-2.0, 2.0]]] * 2), y=[0, 1])
    xb = load_npz(tmp_path / "b.npz").train.x
    assert xb.min() == 0 and xb.max() == 1


def test_npz_pickle_refused(tmp_path):
    np.savez(tmp_path / "p.npz", x=np.array([object()], dtype=object), y=np.array([0]))
    with pytest.raises(DataError, match="p.npz: cannot load it: .*pickle"):
        load_npz(tmp_path / "p.npz")


def test_npz_missing_arrays(tmp_path):
    np.savez(tmp_path / "m.npz", images=np.zeros((2, 3, 3)))
    with pytest.raises(DataError, match=r"m.npz: no array 'x' or 'y'; the file holds images"):
        load_npz(tmp_path / "m.npz")


def test_npz_count_mismatch_and_bad_labels(tmp_path):
    np.savez(tmp_path / "c.npz", x=np.zeros((3, 4, 4), np.uint8), y=[0, 1])
    with pytest.raises(DataError, match="2 labels for 3 images"):
        load_npz(tmp_path / "c.npz")
    np.savez(tmp_path / "f.npz", x=np.zeros((2, 4, 4), np.uint8), y=[0.5, 1])
    with pytest.raises(DataError, match="whole class numbers"):
        load_npz(tmp_path / "f.npz")
    np.savez(tmp_path / "r.npz", x=np.zeros((2, 4, 4), np.uint8), y=[0, 2],
             classes=np.array(["a", "b"]))
    with pytest.raises(DataError, match="label 2 is out of range for 2 classes"):
        load_npz(tmp_path / "r.npz")


def test_npz_one_hot_labels(tmp_path):
    np.savez(tmp_path / "o.npz", x=np.zeros((3, 4, 4), np.uint8),
             y=np.eye(4, dtype=np.float32)[[2, 0, 3]])
    assert load_npz(tmp_path / "o.npz").train.y.tolist() == [2, 0, 3]


def test_npz_empty_and_truncated_and_bad_shape(tmp_path):
    np.savez(tmp_path / "e.npz", x=np.zeros((0, 4, 4), np.uint8), y=np.zeros(0))
    with pytest.raises(DataError, match="no images"):
        load_npz(tmp_path / "e.npz")
    np.savez(tmp_path / "t.npz", x=np.zeros((50, 8, 8), np.uint8), y=np.zeros(50))
    data = (tmp_path / "t.npz").read_bytes()
    (tmp_path / "t.npz").write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match="t.npz"):
        load_npz(tmp_path / "t.npz")
    np.savez(tmp_path / "s.npz", x=np.zeros((2, 4)), y=[0, 1])
    with pytest.raises(DataError, match="images must be N×H×W"):
        load_npz(tmp_path / "s.npz")
    (tmp_path / "junk.npz").write_bytes(b"hello")
    with pytest.raises(DataError, match="junk.npz: not an .npz file"):
        load_npz(tmp_path / "junk.npz")
    np.save(tmp_path / "one.npy", np.zeros(3))
    (tmp_path / "one.npz").write_bytes((tmp_path / "one.npy").read_bytes())
    with pytest.raises(DataError, match="single array"):
        load_npz(tmp_path / "one.npz")


def test_unknown_format(tmp_path):
    (tmp_path / "d.csv").write_text("1,2,3")
    with pytest.raises(DataError, match="unknown data format"):
        load_dataset(tmp_path / "d.csv")


# ---- does the data fit the network? -------------------------------------------------------

def small_net(channels=1, size=8, classes=3):
    return sequential([("Input", "in", {"channels": channels, "height": size, "width": size}),
                       ("Conv2d", "c", {"out_channels": 2, "kernel_size": 3}),
                       ("Flatten", "f", {}),
                       ("Linear", "head", {"out_features": classes}),
                       ("Softmax", "sm", {})])


def dataset(c=1, h=8, w=8, classes=3):
    return Dataset(np.zeros((4, c, h, w), np.float32), np.arange(4) % classes,
                   [str(i) for i in range(classes)])


def test_check_data_fits():
    assert check_data(small_net(), dataset()) == []
    assert check_data(load_example("lenet5"), load_dataset("mnist", limit=10)) == []


def test_check_data_channels_size_classes():
    probs = check_data(small_net(channels=3, size=8, classes=2), dataset(1, 6, 6, classes=5))
    text = " | ".join(m.text for m in probs)
    assert all(m.fatal for m in probs) and len(probs) == 3
    assert "1 channel (greyscale) but Input 'in' expects 3: set the Input's channels to 1" in text
    assert "6×6 but Input 'in' expects 8×8" in text and "height to 6 and width to 6" in text
    assert "5 classes but the last layer 'head' outputs 2" in text
    assert "set units (out_features) of 'head' to 5" in text
    fixes = {m.kind: (m.node_id, m.params) for m in probs}
    assert fixes == {"channels": ("in", {"channels": 1}), "size": ("in", {"height": 6, "width": 6}),
                     "classes": ("head", {"out_features": 5})}


def test_check_data_mismatches_carry_the_values_they_compare():
    probs = {m.kind: m for m in check_data(small_net(channels=3, size=8, classes=2),
                                           dataset(1, 6, 6, classes=5))}
    # the Input's and the images' whole C×H×W for either Input mismatch: one fix sets all three
    for kind in ("channels", "size"):
        assert (probs[kind].expected, probs[kind].actual) == ((3, 8, 8), (1, 6, 6))
    assert (probs["classes"].expected, probs["classes"].actual) == (2, 5)
    note = check_data(small_net(classes=10), DataBundle(dataset(classes=3)))[0]
    assert (note.kind, note.expected, note.actual, note.params) == ("classes", 10, 3,
                                                                    {"out_features": 3})


def test_check_data_fewer_classes_is_a_note():
    probs = check_data(small_net(classes=10), DataBundle(dataset(classes=3)))
    assert len(probs) == 1 and not probs[0].fatal and "7 outputs are never" in probs[0].text


def test_idx_limit_reads_the_first_entries_only(tmp_path, tiny_images):
    x, _ = tiny_images
    p = tmp_path / "i.gz"
    p.write_bytes(gzip.compress(idx_bytes(x)[:-5]))  # the tail is damaged but never read
    np.testing.assert_array_equal(read_idx(p, limit=2), x[:2])
    with pytest.raises(DataError, match="truncated"):
        read_idx(p)


def test_idx_trailing_bytes_refused(tmp_path, tiny_images):
    p = tmp_path / "i.idx"
    p.write_bytes(idx_bytes(tiny_images[0]) + b"extra")
    with pytest.raises(DataError, match="promises 5×4×3 values"):
        read_idx(p)
