"""The feature-map views' image arithmetic, without Qt: fitting a picture to the Input's shape,
per-map statistics, colour levels, colouring through a lookup table and tiling maps into one
mosaic. The widgets (designer/feature_maps.py, the training panel's timeline) draw the results.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

# ---- pictures in ----------------------------------------------------------------------------


def fit_image(img: np.ndarray, input_shape: tuple[int, int, int]) -> np.ndarray:
    """(H, W) or (H, W, 3) or (C, H, W) float in [0, 1] -> (C, H, W) float32 of the Input's
    shape: resized (bilinear), grey made colour by repetition and colour made grey by the mean."""
    from PIL import Image

    c, h, w = input_shape
    a = np.asarray(img, np.float32)
    if a.ndim == 3 and a.shape[0] in (1, 3) and a.shape[2] not in (1, 3):
        a = a.transpose(1, 2, 0)  # CHW -> HWC
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if a.ndim == 2:
        chans = [a]
    else:
        chans = [a[:, :, i] for i in range(a.shape[2])]
    if c == 1 and len(chans) > 1:
        chans = [np.mean(chans, axis=0)]
    elif c > 1 and len(chans) == 1:
        chans = chans * c
    elif c != len(chans):
        chans = [np.mean(chans, axis=0)] * c
    out = []
    for ch in chans:
        if ch.shape != (h, w):
            ch = np.asarray(Image.fromarray(ch.astype(np.float32), mode="F").resize(
                (w, h), Image.Resampling.BILINEAR), np.float32)
        out.append(ch)
    return np.clip(np.stack(out), 0.0, 1.0).astype(np.float32)


def load_image_file(path: str | Path, input_shape: tuple[int, int, int]) -> np.ndarray:
    """An image file -> (C, H, W) float32 in [0, 1] of the Input's shape."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im = im.convert("L" if input_shape[0] == 1 else "RGB")
            a = np.asarray(im, np.float32) / 255.0
    except (OSError, UnidentifiedImageError) as exc:
        raise ValueError(f"{path}: cannot read this image ({exc})") from None
    return fit_image(a, input_shape)


# ---- maps out --------------------------------------------------------------------------------


def map_stats(maps: np.ndarray) -> np.ndarray:
    """(N, H, W) -> (N, 4): min, max, mean and the fraction of values that are zero after
    ReLU (≤ 0)."""
    flat = maps.reshape(len(maps), -1)
    return np.stack([flat.min(1), flat.max(1), flat.mean(1), (flat <= 0).mean(1)], axis=1)


def is_flat(out: np.ndarray) -> bool:
    """A layer output without spatial axes (one value per unit): shown as bars, not maps."""
    return np.asarray(out).ndim != 3


def as_maps(out: np.ndarray) -> np.ndarray:
    """One sample's layer output -> (N, H, W) maps: (C, H, W) as is, a vector (F,) as one
    1×F strip."""
    a = np.asarray(out, np.float32)
    if a.ndim == 3:
        return a
    return a.reshape(1, 1, -1)


def map_levels(a: np.ndarray, symmetric: bool) -> tuple[float, float]:
    """(lo, hi) colour levels of `a`: its range, or ±max|a| when symmetric (zero in the
    middle); never an empty range."""
    if a.size == 0:
        return 0.0, 1.0
    if symmetric:
        m = float(np.abs(a).max()) or 1.0
        return -m, m
    lo, hi = float(a.min()), float(a.max())
    if hi - lo < 1e-12:
        hi = lo + 1.0
    return lo, hi


def colorize(values: np.ndarray, levels: tuple[float, float], lut: np.ndarray) -> np.ndarray:
    """(H, W) -> (H, W, K) uint8 through a 256-entry lookup table `lut` (256, K)."""
    lo, hi = levels
    t = (values - lo) / (hi - lo) if hi > lo else np.zeros_like(values)
    idx = np.clip((t * 255).round(), 0, 255).astype(np.int64)
    return lut[idx]


def grid_columns(n: int, h: int, w: int, aspect: float) -> int:
    """Columns for `n` tiles of h×w in a view `aspect` (width / height) times as wide as
    high: the grid's shape follows the view's."""
    return max(1, min(n, round(math.sqrt(n * aspect * h / max(w, 1)))))


def mosaic(tiles: np.ndarray, lut: np.ndarray, symmetric: bool = False, per_tile: bool = False,
           cols: int | None = None, pad: int = 1, background=(40, 40, 40, 255)) -> np.ndarray:
    """(N, h, w) -> one (H, W, 4) RGBA image of the tiles in a grid, each coloured through the
    RGBA lookup table `lut` (256, 4) (shared or per-tile levels; symmetric levels centre zero).
    For the timeline's quick views."""
    n, h, w = tiles.shape
    cols = cols or max(1, math.ceil(math.sqrt(n * h / max(w, 1))))
    rows = math.ceil(n / cols)
    out = np.zeros((rows * (h + pad) + pad, cols * (w + pad) + pad, 4), np.uint8)
    out[...] = background
    for i in range(n):
        levels = map_levels(tiles[i] if per_tile else tiles, symmetric)
        r, c = divmod(i, cols)
        y0, x0 = pad + r * (h + pad), pad + c * (w + pad)
        out[y0:y0 + h, x0:x0 + w] = colorize(tiles[i], levels, lut)
    return out
