"""The feature-map views' image arithmetic without Qt: no Qt import, levels, colouring through a
lookup table, the mosaic's tiling and the grid's columns."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from designer.map_images import colorize, grid_columns, map_levels, mosaic

ROOT = Path(__file__).resolve().parents[2]
LUT = np.stack([np.arange(256)] * 4, axis=1).astype(np.uint8)  # grey ramp, value = index


def test_importing_it_loads_no_qt_and_no_plots():
    code = ("import json, sys\nimport designer.map_images\n"
            "print(json.dumps(sorted(sys.modules)))\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         timeout=120, check=True)
    gui = [m for m in json.loads(out.stdout)
           if m.split(".")[0] in ("PySide6", "shiboken6", "pyqtgraph")]
    assert not gui, f"designer.map_images loaded {gui[:5]}"


def test_levels_are_the_range_or_centred_on_zero_and_never_empty():
    a = np.array([[-1.0, 3.0]])
    assert map_levels(a, symmetric=False) == (-1.0, 3.0)
    assert map_levels(a, symmetric=True) == (-3.0, 3.0)
    assert map_levels(np.full((2, 2), 5.0), symmetric=False) == (5.0, 6.0)
    assert map_levels(np.zeros((0, 3)), symmetric=True) == (0.0, 1.0)


def test_colorize_maps_the_levels_onto_the_table():
    rgba = colorize(np.array([[0.0, 0.5, 1.0]]), (0.0, 1.0), LUT)
    assert rgba.shape == (1, 3, 4) and rgba.dtype == np.uint8
    assert list(rgba[0, :, 0]) == [0, 128, 255]


def test_mosaic_tiles_in_a_padded_grid():
    tiles = np.stack([np.full((2, 3), v, np.float32) for v in (0.0, 1.0, 2.0)])
    out = mosaic(tiles, LUT, cols=2, pad=1)
    assert out.shape == (2 * 3 + 1, 2 * 4 + 1, 4)
    assert tuple(out[0, 0]) == (40, 40, 40, 255)  # the background between tiles
    # shared levels 0..2: the tiles are black, mid grey and white; the fourth cell is empty
    assert out[1, 1, 0] == 0 and out[1, 5, 0] == 128 and out[4, 1, 0] == 255
    assert tuple(out[4, 5]) == (40, 40, 40, 255)
    per_tile = mosaic(tiles, LUT, cols=3, per_tile=True)
    assert per_tile[1, 1, 0] == per_tile[1, 5, 0] == 0  # each tile's own (flat) range


def test_grid_columns_follow_the_view_shape():
    assert grid_columns(16, 8, 8, aspect=1.0) == 4
    assert grid_columns(16, 8, 8, aspect=4.0) == 8
    assert grid_columns(3, 8, 8, aspect=100.0) == 3  # never more columns than tiles
    assert grid_columns(1, 8, 8, aspect=0.01) == 1
