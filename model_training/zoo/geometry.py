"""Tile geometry of the package: the halo and the smallest input (no bioimageio import, so the
service's tests can check the halo against the margin the service tiles with)."""

from __future__ import annotations

from model_training.checkpoint import CheckpointRecord
from model_training.unet import SIZE_MULTIPLE


def default_halo(record: CheckpointRecord) -> int:
    """Pixels a tiling consumer discards at each inner tile edge: the checkpoint's
    ``tile_overlap``, which is the margin the service tiles with when ``tile_margin`` is not
    set (``service.settings``)."""
    return record.tile_overlap


def min_side(halo: int) -> int:
    """Smallest input side that is a multiple of 16 and keeps a centre after cutting the halo
    off both ends (the spec requires ``size - 2 * halo >= 1``)."""
    return (2 * halo // SIZE_MULTIPLE + 1) * SIZE_MULTIPLE
