"""Tiling a large image must not change its mask: tiles vs one pass over the whole image."""

from dataclasses import replace

import numpy as np
import pytest
import torch

from model_training.checkpoint import load_checkpoint
from model_training.counting import label_cells
from model_training.synthetic import SyntheticConfig, generate_sample
from service.serving.engine import InferenceEngine, cpu_has_native_bf16
from service.serving.tiling import cut_tiles, pad_for_grid, plan_tiles, stitch
from service.settings import DEFAULT_CHECKPOINT


@pytest.fixture(scope="module")
def engine_and_record():
    model, record = load_checkpoint(DEFAULT_CHECKPOINT)
    fast = cpu_has_native_bf16()
    engine = InferenceEngine(model, torch.device("cpu"), "bf16" if fast else "fp32", fast)
    return engine, record


@pytest.mark.parametrize(("max_tile", "n_tiles"), [(256, 48), (1024, 4)])
def test_tiled_large_image_has_no_seam(engine_and_record, max_tile, n_tiles):
    engine, record = engine_and_record
    config = replace(SyntheticConfig(), height=1100, width=1500)
    sample = generate_sample(5, config, count=100)
    image = record.normalization.apply(sample.image)
    grid = plan_tiles(*image.shape, max_tile, record.tile_overlap)
    tiles = cut_tiles(image, grid)
    tiled = stitch(
        np.concatenate([engine(tiles[i : i + 4]) for i in range(0, len(tiles), 4)]), grid
    )
    padded = pad_for_grid(image, grid)  # the same padding, as one whole image
    whole = engine(padded[None])[0]
    top, left = grid.rows.pad_before, grid.cols.pad_before
    whole = whole[top : top + image.shape[0], left : left + image.shape[1]]
    tiled_mask, whole_mask = tiled > record.threshold, whole > record.threshold
    assert grid.count == n_tiles
    assert (tiled_mask != whole_mask).sum() <= 5  # of 1.65 million pixels
    assert np.abs(tiled - whole).max() < 0.05
    tiled_count = label_cells(tiled, record.threshold, record.min_area).max()
    assert tiled_count == label_cells(whole, record.threshold, record.min_area).max()
    assert abs(int(tiled_count) - sample.count) <= 3
