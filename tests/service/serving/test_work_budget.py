"""The time budget of a resize: the largest scale whose pass fits, costed per tile shape as
admission costs it."""

from __future__ import annotations

import numpy as np
import pytest

from model_training.scale import resize_plane
from service.serving.admission import Throughput
from service.serving.tiling import plan_tiles
from service.serving.work_budget import affordable_scale, pass_seconds, resized_shape


@pytest.mark.parametrize("shape", [(96, 96), (520, 696), (1, 7), (1040, 1388)])
@pytest.mark.parametrize("scale", [0.13, 0.5, 1.0, 1.37, 2.0])
def test_the_resized_grid_is_the_one_resize_plane_makes(shape, scale):
    assert resized_shape(shape, scale) == resize_plane(np.zeros(shape, np.float32), scale).shape


def test_a_pass_costs_its_tiles_at_the_measured_seconds_per_pixel_over_the_workers():
    throughput = Throughput(seconds_per_pixel=1e-6, workers=2)
    grid = plan_tiles(2000, 3000, 1024, 64)
    expected = grid.count * grid.tile_shape[0] * grid.tile_shape[1] * 1e-6 / 2
    assert pass_seconds(throughput, (1000, 1500), 2.0, 1024, 64) == pytest.approx(expected)
    # a shape measured slower than the per-pixel average is costed at its own time
    throughput.observe(grid.tile_shape, grid.count, 10.0)
    assert pass_seconds(throughput, (1000, 1500), 2.0, 1024, 64) == pytest.approx(5.0)


def test_the_largest_scale_within_the_budget_is_chosen():
    def cost(scale: float) -> float:  # a pass of 4 s at native size, growing with the pixels
        return 4.0 * scale**2

    assert affordable_scale(cost, 16.0, 1.0, 2.0) == 2.0  # everything fits
    assert affordable_scale(cost, 9.0, 1.0, 2.0) == pytest.approx(1.5, rel=1e-4)
    assert cost(affordable_scale(cost, 9.0, 1.0, 2.0)) <= 9.0  # never past it
    assert affordable_scale(cost, 1.0, 1.0, 2.0) == 1.0  # nothing fits: the floor
    assert affordable_scale(cost, 1.0, 0.4, 1.0) == pytest.approx(0.5, rel=1e-4)
    assert affordable_scale(cost, 100.0, 1.0, 1.0) == 1.0  # no room to grow at all


def test_a_stepped_cost_stops_below_the_step_that_breaks_the_budget():
    """Tile counts jump in steps; the answer stays on the affordable side of the step."""

    def cost(scale: float) -> float:
        grid = plan_tiles(*resized_shape((700, 700), scale), 512, 32)
        return float(grid.count)

    scale = affordable_scale(cost, 4.0, 1.0, 2.0)
    assert cost(scale) <= 4.0 < cost(scale * 1.01)
