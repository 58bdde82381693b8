"""Training-time augmentation for fine-tuning: random resized crop and horizontal flip, seeded.

    aug = Augment()                               # torchvision's RandomResizedCrop ratios
    xb = aug(xb, rng)                             # (N, C, H, W) -> (N, C, H, W), new array

The images arrive already prepared by the model's input spec (resized, normalised), so the crop
is taken from that array and enlarged back to H×W (bilinear, half-pixel centres). Cropping,
bilinear resizing and flipping commute with the spec's per-channel normalisation (an affine map
per channel; bilinear weights sum to 1), so this equals augmenting the photo before normalising.
The smallest crop is a quarter of the image rather than torchvision's 8 %: the crop comes from
the image at the model's size, and a smaller one would be enlarged more than 2× and blur.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..layers.upsample import _axis_matrix


@dataclass(frozen=True)
class Augment:
    """Random resized crop (area fraction in `scale`, aspect ratio in `ratio`, as torchvision's
    RandomResizedCrop.get_params draws them) then a horizontal flip with probability `flip`."""

    scale: tuple[float, float] = (0.25, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip: float = 0.5

    def describe(self) -> str:
        return (f"random resized crop ({self.scale[0]:.0%}–{self.scale[1]:.0%} of the image, "
                f"aspect {self.ratio[0]:.2f}–{self.ratio[1]:.2f}) and horizontal flip "
                f"(p = {self.flip:g})")

    def crop_box(self, h: int, w: int, rng: np.random.Generator) -> tuple[int, int, int, int]:
        """(top, left, height, width) of one crop: torchvision's ten tries, then the centre
        crop of the closest allowed aspect ratio."""
        area = h * w
        lo, hi = math.log(self.ratio[0]), math.log(self.ratio[1])
        for _ in range(10):
            target = area * rng.uniform(*self.scale)
            aspect = math.exp(rng.uniform(lo, hi))
            cw = round(math.sqrt(target * aspect))
            ch = round(math.sqrt(target / aspect))
            if 0 < cw <= w and 0 < ch <= h:
                return int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1)), ch, cw
        aspect = w / h
        if aspect < self.ratio[0]:
            cw, ch = w, round(w / self.ratio[0])
        elif aspect > self.ratio[1]:
            ch, cw = h, round(h * self.ratio[1])
        else:
            cw, ch = w, h
        return (h - ch) // 2, (w - cw) // 2, ch, cw

    def __call__(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """(N, C, H, W) float32 -> augmented copy, each image with its own crop and flip."""
        x = np.asarray(x, np.float32)
        n, _, h, w = x.shape
        out = np.empty_like(x)
        for i in range(n):
            top, left, ch, cw = self.crop_box(h, w, rng)
            crop = x[i, :, top:top + ch, left:left + cw]
            mh = _axis_matrix(ch, h, "bilinear", ch / h).astype(np.float32)
            mw = _axis_matrix(cw, w, "bilinear", cw / w).astype(np.float32)
            img = mh @ crop @ mw.T  # (C, H, W): rows by mh, columns by mw, per channel
            if rng.random() < self.flip:
                img = img[:, :, ::-1]
            out[i] = img
        return out
