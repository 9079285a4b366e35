import numpy as np
import pytest

from service.serving.tiling import cut_tiles, plan_tiles, stitch


@pytest.mark.parametrize(
    "shape", [(1, 1), (17, 300), (256, 256), (257, 256), (500, 700), (1100, 1500)]
)
@pytest.mark.parametrize(("tile", "margin"), [(256, 32), (128, 16), (1024, 32)])
def test_cut_then_stitch_is_identity(shape, tile, margin):
    image = np.random.default_rng(0).random(shape, dtype=np.float32)
    grid = plan_tiles(*shape, tile, margin)
    tiles = cut_tiles(image, grid)
    assert tiles.shape == (grid.count, *grid.tile_shape)
    assert max(grid.tile_shape) <= tile and all(side % 16 == 0 for side in grid.tile_shape)
    assert np.array_equal(stitch(tiles, grid), image)


def test_images_that_fit_are_one_tile_padded_only_to_16():
    grid = plan_tiles(130, 200, 256, 32)
    assert grid.count == 1 and grid.tile_shape == (144, 208)


def test_large_images_get_the_fewest_equal_tiles():
    grid = plan_tiles(1100, 1500, 256, 32)
    assert (len(grid.rows.origins), len(grid.cols.origins)) == (6, 8)  # ceil(n / 192)
    assert all(origin % 16 == 0 for origin in grid.rows.origins + grid.cols.origins)
    fitted = plan_tiles(1040, 1388, 1024, 32)  # a large DSB2018 image, 1024 tiles
    assert fitted.count == 4 and fitted.tile_shape == (592, 768)
    assert fitted.count * 592 * 768 < 1.3 * 1040 * 1388  # overlap costs < 30 %


def test_every_kept_pixel_has_the_margin_as_context():
    grid = plan_tiles(1000, 300, 256, 32)
    assert grid.rows.keep_start == 32 and grid.rows.keep == grid.rows.length - 64
    assert grid.rows.pad_before == 32 and grid.rows.pad_after >= 32


def test_bad_geometry_is_refused():
    with pytest.raises(ValueError, match="multiples of 16"):
        plan_tiles(100, 100, 250, 32)
    with pytest.raises(ValueError):
        plan_tiles(100, 100, 64, 32)
