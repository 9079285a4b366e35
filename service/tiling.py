"""Cut any image into fixed-size tiles and stitch the tile outputs back without seams.

Fixed-size tiles are what make batching shape-free: tiles of a 300x300 upload and of a
2048x2048 one share a batch. Along an axis that fits one tile the image is simply reflect-padded
to the tile size (no overlap, no waste beyond the padding). Along a longer axis tiles step by
``tile - 2 * margin`` and each keeps only its centre, so every kept pixel saw at least ``margin``
pixels of real context on each side; tile origins are multiples of 16, aligned with the U-Net's
pooling grid, so a tile computes the same features a whole-image pass would, up to context
beyond the margin.
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


def plan_axis(size: int, tile: int, margin: int) -> AxisPlan:
    if size <= tile:
        return AxisPlan(size, 0, tile - size, (0,), 0, size)
    stride = tile - 2 * margin
    count = math.ceil(size / stride)
    padded = count * stride + 2 * margin
    return AxisPlan(
        size=size,
        pad_before=margin,
        pad_after=padded - margin - size,
        origins=tuple(k * stride for k in range(count)),
        keep_start=margin,
        keep=stride,
    )


@dataclass(frozen=True)
class TileGrid:
    """Where the tiles of one image lie; enough to cut and to stitch."""

    rows: AxisPlan
    cols: AxisPlan
    tile: int

    @property
    def count(self) -> int:
        return len(self.rows.origins) * len(self.cols.origins)

    @property
    def shape(self) -> tuple[int, int]:
        return self.rows.size, self.cols.size


def plan_tiles(height: int, width: int, tile: int, margin: int) -> TileGrid:
    if tile % 16 or margin % 16 or tile - 2 * margin < 16:
        raise ValueError(f"tile {tile} / margin {margin}: both multiples of 16, tile > 2*margin")
    return TileGrid(plan_axis(height, tile, margin), plan_axis(width, tile, margin), tile)


def pad_for_grid(image: np.ndarray, grid: TileGrid) -> np.ndarray:
    widths = (
        (grid.rows.pad_before, grid.rows.pad_after),
        (grid.cols.pad_before, grid.cols.pad_after),
    )
    return np.pad(image, widths, mode="reflect")


def cut_tiles(image: np.ndarray, grid: TileGrid) -> np.ndarray:
    """(N, tile, tile) float32 tiles in row-major order."""
    padded = pad_for_grid(np.asarray(image, dtype=np.float32), grid)
    size = grid.tile
    tiles = np.empty((grid.count, size, size), dtype=np.float32)
    index = 0
    for top in grid.rows.origins:
        for left in grid.cols.origins:
            tiles[index] = padded[top : top + size, left : left + size]
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
