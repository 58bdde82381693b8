"""Hand-set convolution kernels: the classic presets and the tiny "lesson" network.

The lesson every newcomer should see once: a 3×3 kernel slid over an image finds one kind of
pattern (vertical edges, horizontal edges, blobs...), ReLU keeps only the positive answers and
pooling shrinks the map while keeping the strongest ones.

    k = preset("vertical_edge")                    # (3, 3) float32
    net = lesson_network([k, preset("sobel_y")], input_shape=(1, 28, 28))
    outs = net.forward(x, keep=True)               # "conv", "relu", "pool" maps
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from ..errors import ParamError
from ..graph import Graph, sequential
from ..nn.network import Network


@dataclass(frozen=True)
class Preset:
    name: str
    label: str
    doc: str  # what it finds, in one line
    kernel: tuple[tuple[float, ...], ...]

    def array(self) -> np.ndarray:
        return np.array(self.kernel, np.float32)


# Cross-correlation, as every CNN framework computes it: positive where the pattern of the
# kernel matches the image (e.g. vertical_edge answers dark-left / bright-right).
PRESETS: dict[str, Preset] = {p.name: p for p in (
    Preset("vertical_edge", "Vertical edge",
           "Bright where the image goes from dark (left) to bright (right).",
           ((-1, 0, 1), (-1, 0, 1), (-1, 0, 1))),
    Preset("horizontal_edge", "Horizontal edge",
           "Bright where the image goes from dark (top) to bright (bottom).",
           ((-1, -1, -1), (0, 0, 0), (1, 1, 1))),
    Preset("sobel_x", "Sobel x",
           "Left-to-right brightness change, weighting the centre row twice.",
           ((-1, 0, 1), (-2, 0, 2), (-1, 0, 1))),
    Preset("sobel_y", "Sobel y",
           "Top-to-bottom brightness change, weighting the centre column twice.",
           ((-1, -2, -1), (0, 0, 0), (1, 2, 1))),
    Preset("laplacian", "Laplacian",
           "Responds to spots and thin lines, in every direction; zero on flat areas.",
           ((0, -1, 0), (-1, 4, -1), (0, -1, 0))),
    Preset("box_blur", "Box blur", "The mean of the 3×3 neighbourhood: smooths everything.",
           ((1 / 9, 1 / 9, 1 / 9), (1 / 9, 1 / 9, 1 / 9), (1 / 9, 1 / 9, 1 / 9))),
    Preset("gaussian_blur", "Gaussian blur",
           "A weighted mean, the centre counting most: a gentler blur.",
           ((1 / 16, 2 / 16, 1 / 16), (2 / 16, 4 / 16, 2 / 16), (1 / 16, 2 / 16, 1 / 16))),
    Preset("sharpen", "Sharpen", "The pixel minus its neighbours: boosts edges and detail.",
           ((0, -1, 0), (-1, 5, -1), (0, -1, 0))),
    Preset("identity", "Identity", "Copies the image unchanged: a starting point to edit.",
           ((0, 0, 0), (0, 1, 0), (0, 0, 0))),
)}


def preset(name: str) -> np.ndarray:
    """The preset kernel `name` as a (3, 3) float32 array."""
    if name not in PRESETS:
        raise ParamError(f"no kernel preset named {name!r}; presets: {', '.join(PRESETS)}")
    return PRESETS[name].array()


def fit_kernel(kernel: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Place a (kh, kw) kernel at the centre of a zero (H, W) kernel, e.g. a 3×3 preset into a
    5×5 conv layer: the correlation is the same, only the output border changes."""
    k = np.asarray(kernel, np.float32)
    h, w = int(size[0]), int(size[1])
    kh, kw = k.shape
    if kh > h or kw > w:
        raise ParamError(f"a {kh}×{kw} kernel does not fit a {h}×{w} filter; use a layer with "
                         f"kernel_size at least {kh}×{kw}")
    out = np.zeros((h, w), np.float32)
    t, left = (h - kh) // 2, (w - kw) // 2
    out[t:t + kh, left:left + kw] = k
    return out


def parse_kernel(text: str, size: tuple[int, int] | None = None) -> np.ndarray:
    """Numbers typed by a person -> (kh, kw) float32. Rows are separated by new lines or ';',
    values by spaces or commas; fractions like 1/9 are allowed.

    "-1 0 1; -2 0 2; -1 0 1" -> the Sobel x kernel."""
    rows = [r for r in re.split(r"[;\n]+", text.strip()) if r.strip()]
    if not rows:
        raise ParamError("the kernel is empty: type one row per line, e.g. '-1 0 1'")
    values: list[list[float]] = []
    for i, row in enumerate(rows, 1):
        cells = [c for c in re.split(r"[,\s]+", row.strip().strip("[]")) if c]
        out = []
        for c in cells:
            try:
                if "/" in c:
                    num, den = c.split("/", 1)
                    v = float(num) / float(den)
                else:
                    v = float(c)
            except (ValueError, ZeroDivisionError):
                raise ParamError(f"row {i} of the kernel: {c!r} is not a number") from None
            if not np.isfinite(v):
                raise ParamError(f"row {i} of the kernel: {c!r} is not a finite number")
            out.append(v)
        values.append(out)
    widths = {len(r) for r in values}
    if len(widths) != 1:
        raise ParamError(f"the kernel's rows have different lengths ({sorted(widths)}); every "
                         f"row needs the same number of values")
    k = np.array(values, np.float32)
    if size is not None and k.shape != tuple(size):
        raise ParamError(f"the kernel is {k.shape[0]}×{k.shape[1]} but the filter is "
                         f"{size[0]}×{size[1]}; type {size[0]} rows of {size[1]} values")
    return k


def format_kernel(kernel: np.ndarray) -> str:
    """Inverse of parse_kernel, short and readable: one row per line."""
    return "\n".join(" ".join(f"{v:g}" if abs(v - round(v)) < 1e-6 else f"{v:.4g}"
                              for v in row) for row in np.asarray(kernel, np.float64))


def lesson_graph(n_kernels: int, kernel_size: tuple[int, int] = (3, 3),
                 input_shape: tuple[int, int, int] = (1, 28, 28), pool: int = 2) -> Graph:
    """Input -> Conv2d(n_kernels, 'same' padding, no bias) -> ReLU -> MaxPool2d(pool).

    Node ids: "input", "conv", "relu", "pool"."""
    c, h, w = input_shape
    return sequential([
        ("Input", "input", {"channels": c, "height": h, "width": w}),
        ("Conv2d", "conv", {"out_channels": n_kernels, "kernel_size": list(kernel_size),
                            "padding": "same", "bias": False}),
        ("ReLU", "relu", {}),
        ("MaxPool2d", "pool", {"kernel_size": [pool, pool]}),
    ], name="kernel lesson")


def lesson_network(kernels: list[np.ndarray],
                   input_shape: tuple[int, int, int] = (1, 28, 28), pool: int = 2) -> Network:
    """A compiled lesson network whose filter i is kernels[i] (all of the same (kh, kw)).

    With several input channels each filter applies the kernel to their mean (brightness), so
    the lesson reads the same on colour images."""
    if not kernels:
        raise ParamError("the lesson needs at least one kernel")
    ks = [np.asarray(k, np.float32) for k in kernels]
    shapes = {k.shape for k in ks}
    if len(shapes) != 1 or len(next(iter(shapes))) != 2:
        raise ParamError(f"the lesson's kernels must all be 2-D of one size, got {sorted(shapes)}")
    net = Network.compile(lesson_graph(len(ks), ks[0].shape, input_shape, pool),
                          np.random.default_rng(0))
    c = input_shape[0]
    w = np.stack([np.repeat(k[None] / c, c, axis=0) for k in ks])  # (n, C, kh, kw)
    net.layers["conv"].weights["weight"][...] = w
    return net


def with_kernels(weights: dict[str, np.ndarray], node_id: str,
                 kernels: dict[int, np.ndarray], zero_bias: bool = True) -> dict[str, np.ndarray]:
    """A copy of the state dict `weights` where filter i of conv layer `node_id` is kernels[i]
    (a 2-D kernel, centred into the filter size and applied to the mean of the input channels).

    The weights of other filters and layers are left as they are."""
    key = f"{node_id}.weight"
    if key not in weights:
        raise ParamError(f"layer {node_id!r} has no convolution weights to set")
    out = {k: v.copy() for k, v in weights.items()}
    w = out[key]  # (Cout, Cin/groups, kh, kw)
    cout, cin, kh, kw = w.shape
    for i, k in kernels.items():
        if not 0 <= i < cout:
            raise ParamError(f"layer {node_id!r} has {cout} filters; there is no filter {i + 1}")
        w[i] = fit_kernel(k, (kh, kw))[None] / cin
        if zero_bias and f"{node_id}.bias" in out:
            out[f"{node_id}.bias"][i] = 0.0
    return out


__all__ = [
    "PRESETS",
    "Preset",
    "fit_kernel",
    "format_kernel",
    "lesson_graph",
    "lesson_network",
    "parse_kernel",
    "preset",
    "with_kernels",
]
