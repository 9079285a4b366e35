"""How far the service may resize an image within the time it may spend on it.

The pixel cap (``model_training.scale.scale_cap``: 4x the upload, ``max_pixels``) bounds the
work of an enlargement in pixels, which is not time: a 1040x1388 upload takes 11.5 s at
native size on a 2-core AVX2 EPYC (docs/benchmarks.md), so its 2x enlargement, within the pixel
cap, would take about 46 s there, a few seconds on a GPU. The service therefore also holds
the network time it *chooses* to spend on one image (an enlargement, a second pass at a size
its first cells showed) to a budget in seconds, costed at the batcher's measured throughput
per tile shape, the figure admission uses. An image is never shrunk below what its nuclei ask
for to fit: a count at the wrong size is a wrong count, and an upload's own size is the
deployment's to provision for (``request_timeout_s``, hardware). A held-back resize is reported
(``ScalePlan.wanted_scale``) and warned (``enlargement_capped``).
"""

from __future__ import annotations

import math
from collections.abc import Callable

from service.serving.admission import Throughput
from service.serving.tiling import plan_tiles

BISECTION_STEPS = 24  # scale resolution about (high / low) ** 2**-24: far below a pixel


def resized_shape(shape: tuple[int, ...], scale: float) -> tuple[int, int]:
    """The network grid of an image of ``shape`` resized by ``scale`` (as ``resize_plane``)."""
    height, width = int(shape[0]), int(shape[1])
    if scale == 1.0:
        return height, width
    return max(1, round(height * scale)), max(1, round(width * scale))


def pass_seconds(
    throughput: Throughput, shape: tuple[int, ...], scale: float, tile: int, margin: int
) -> float:
    """Expected wall seconds of one network pass over an image of ``shape`` at ``scale``:
    its tiles, costed as the batcher costs them (every worker busy)."""
    height, width = resized_shape(shape, scale)
    grid = plan_tiles(height, width, tile, margin)
    return throughput.seconds_for([(grid.tile_shape, grid.count)])


def affordable_scale(
    seconds_at: Callable[[float], float], budget_s: float, low: float, high: float
) -> float:
    """The largest scale in ``[low, high]`` whose pass costs at most ``budget_s``
    (``seconds_at``: cost of a pass at a scale, non-decreasing); ``low`` when none does."""
    if high <= low or seconds_at(high) <= budget_s:
        return max(low, high)
    if seconds_at(low) > budget_s:
        return low
    lo, hi = math.log(low), math.log(high)
    for _ in range(BISECTION_STEPS):
        middle = 0.5 * (lo + hi)
        if seconds_at(math.exp(middle)) <= budget_s:
            lo = middle
        else:
            hi = middle
    return math.exp(lo)
