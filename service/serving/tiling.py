"""Cut any image into equal tiles and stitch the tile outputs back without seams.

Overlap is paid in compute, so tiles are fitted to each image instead of being one fixed size:

- along an axis no longer than ``max_tile`` the image is one tile, padded only up to the next
  multiple of 16 (what a whole-image pass would cost, nothing more);
- along a longer axis the image is cut into the fewest tiles of at most ``max_tile`` that cover
  it, all of equal length, overlapping by ``margin`` on each side; each tile keeps its centre, so
  every kept pixel saw at least ``margin`` pixels of real context.

All tiles of one image share a shape, and images of the same size (the common case: one camera,
one plate) produce the same shapes, so the batcher batches by shape. Lengths, margins and origins
are multiples of 16, aligned with the U-Net's pooling grid, so a tile computes the same features a
whole-image pass would, up to context beyond the margin.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class AxisPlan:
    size: int  # image pixels along the axis
    pad_before: int
    pad_after: int
    origins: tuple[int, ...]  # tile starts in padded coordinates
    keep_start: int  # first kept row/column inside a tile
    keep: int  # kept rows/columns per tile
    length: int  # tile length along this axis


def _ceil16(value: int) -> int:
    return -(-value // 16) * 16


def plan_axis(size: int, max_tile: int, margin: int) -> AxisPlan:
    if size <= max_tile:
        length = _ceil16(size)
        return AxisPlan(size, 0, length - size, (0,), 0, size, length)
    count = math.ceil(size / (max_tile - 2 * margin))
    length = _ceil16(math.ceil(size / count) + 2 * margin)
    stride = length - 2 * margin
    padded = count * stride + 2 * margin
    return AxisPlan(
        size=size,
        pad_before=margin,
        pad_after=padded - margin - size,
        origins=tuple(k * stride for k in range(count)),
        keep_start=margin,
        keep=stride,
        length=length,
    )


@dataclass(frozen=True)
class TileGrid:
    """Where the tiles of one image lie; enough to cut and to stitch."""

    rows: AxisPlan
    cols: AxisPlan

    @property
    def tile_shape(self) -> tuple[int, int]:
        return self.rows.length, self.cols.length

    @property
    def count(self) -> int:
        return len(self.rows.origins) * len(self.cols.origins)

    @property
    def shape(self) -> tuple[int, int]:
        return self.rows.size, self.cols.size


def plan_tiles(height: int, width: int, max_tile: int, margin: int) -> TileGrid:
    if max_tile % 16 or margin % 16 or max_tile - 2 * margin < 16:
        raise ValueError(
            f"max_tile {max_tile} / margin {margin}: both multiples of 16, max_tile > 2*margin"
        )
    return TileGrid(plan_axis(height, max_tile, margin), plan_axis(width, max_tile, margin))


def pad_for_grid(image: np.ndarray, grid: TileGrid) -> np.ndarray:
    widths = (
        (grid.rows.pad_before, grid.rows.pad_after),
        (grid.cols.pad_before, grid.cols.pad_after),
    )
    return np.pad(image, widths, mode="reflect")


def cut_tiles(image: np.ndarray, grid: TileGrid) -> np.ndarray:
    """(N, rows, cols) float32 tiles in row-major order."""
    padded = pad_for_grid(np.asarray(image, dtype=np.float32), grid)
    height, width = grid.tile_shape
    tiles = np.empty((grid.count, height, width), dtype=np.float32)
    index = 0
    for top in grid.rows.origins:
        for left in grid.cols.origins:
            tiles[index] = padded[top : top + height, left : left + width]
            index += 1
    return tiles


def stitch(tiles: np.ndarray, grid: TileGrid) -> np.ndarray:
    """Assemble per-tile outputs into one (H, W) map, keeping each tile's centre."""
    out = np.empty(grid.shape, dtype=tiles.dtype)
    rows, cols = grid.rows, grid.cols
    index = 0
    for row_index, _ in enumerate(rows.origins):
        y0 = row_index * rows.keep
        height = min(rows.keep, rows.size - y0)
        for col_index, _ in enumerate(cols.origins):
            x0 = col_index * cols.keep
            width = min(cols.keep, cols.size - x0)
            tile = tiles[index]
            out[y0 : y0 + height, x0 : x0 + width] = tile[
                rows.keep_start : rows.keep_start + height,
                cols.keep_start : cols.keep_start + width,
            ]
            index += 1
    return out
