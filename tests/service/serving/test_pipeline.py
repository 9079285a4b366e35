"""CountingPipeline owns a request: decode-all-first, announce and withdraw, the scale step,
metrics, and errors that name the file. Real width-16 model, real PNG bytes."""

from __future__ import annotations

import asyncio
import io
import time

import numpy as np
import pytest
import tifffile
import torch
from PIL import Image

from model_training.checkpoint import load_checkpoint
from model_training.synthetic import SyntheticConfig, generate_sample
from service.errors import ApiError
from service.options import CountOptions
from service.serving.batcher import TileBatcher
from service.serving.metrics import ServiceMetrics
from service.serving.pipeline import CountingPipeline, Upload
from service.settings import PROJECT_ROOT

CHECKPOINT = PROJECT_ROOT / "weights" / "unet16.safetensors"


@pytest.fixture(scope="module")
def model_and_record():
    return load_checkpoint(CHECKPOINT)


def png_of(seed: int, side: int = 128, **config) -> tuple[bytes, int]:
    sample = generate_sample(seed, SyntheticConfig(height=side, width=side, max_cells=20, **config))
    buffer = io.BytesIO()
    Image.fromarray(sample.image).save(buffer, format="PNG")
    return buffer.getvalue(), sample.count


def run_with_pipeline(model_and_record, scenario, **pipeline_options):
    model, record = model_and_record

    def infer(tiles: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            batch = torch.from_numpy(np.ascontiguousarray(tiles))[:, None]
            return torch.sigmoid(model(batch))[:, 0].numpy()

    async def main():
        batcher = TileBatcher(infer, max_batch_size=4, max_wait_ms=5, workers=1)
        await batcher.start()
        metrics = ServiceMetrics()
        pipeline = CountingPipeline(
            record, batcher, 256, 32, 10_000_000, 2, metrics, **pipeline_options
        )
        try:
            return await scenario(pipeline, batcher, metrics)
        finally:
            await batcher.stop()
            pipeline.close()

    return asyncio.run(main())


def deadline() -> float:
    return time.monotonic() + 60


def test_counts_every_upload_in_order_and_withdraws_nothing_left(model_and_record):
    uploads = [png_of(seed) for seed in (1, 2, 3)]

    async def scenario(pipeline, batcher, metrics):
        segs = await pipeline.count(
            [Upload(f"f{i}.png", data) for i, (data, _) in enumerate(uploads)],
            CountOptions(),
            deadline(),
        )
        assert batcher.expected == 0
        return segs, metrics.images._value.get()

    segs, images = run_with_pipeline(model_and_record, scenario)
    assert images == 3
    for seg, (_, true_count) in zip(segs, uploads, strict=True):
        assert seg.labels.shape == (128, 128)
        assert abs(seg.count - true_count) <= max(2, 0.2 * true_count)  # width 16: rough
        assert seg.diameter_source == "auto" and seg.diameter_px is not None


def test_a_broken_upload_refuses_the_request_naming_it_and_leaves_nothing_announced(
    model_and_record,
):
    good, _ = png_of(4)

    async def scenario(pipeline, batcher, metrics):
        with pytest.raises(ApiError) as refused:
            await pipeline.count(
                [Upload("good.png", good), Upload("bad.png", b"\x89PNG\r\n\x1a\nnot really")],
                CountOptions(),
                deadline(),
            )
        assert batcher.expected == 0 and batcher.pending == 0
        return refused.value, metrics.images._value.get()

    error, images = run_with_pipeline(model_and_record, scenario)
    assert error.status == 400 and "bad.png" in error.message
    assert images == 0


def test_pinned_diameter_sets_the_scale_and_labels_return_to_the_upload_grid(model_and_record):
    data, _ = png_of(5, side=96)
    record = model_and_record[1]

    async def scenario(pipeline, batcher, metrics):
        options = CountOptions(diameter=record.nucleus_diameter_px / 2)
        (seg,) = await pipeline.count([Upload("a.png", data)], options, deadline())
        return seg

    seg = run_with_pipeline(model_and_record, scenario)
    assert seg.diameter_source == "given"
    assert seg.scale == pytest.approx(2.0)
    assert seg.labels.shape == (96, 96)


# No machine runs a pass in a nanosecond: every resize the service chooses is past this budget.
NO_TIME = 1e-9


def test_an_enlargement_past_the_work_budget_is_held_back_and_said(model_and_record):
    """Nuclei pinned at half the training size ask for 2x, within the pixel cap; a budget no
    pass can meet keeps the image at its own size, reports what was asked and warns."""
    data, _ = png_of(5, side=96)
    record = model_and_record[1]

    async def scenario(pipeline, batcher, metrics):
        options = CountOptions(diameter=record.nucleus_diameter_px / 2)
        (seg,) = await pipeline.count([Upload("a.png", data)], options, deadline())
        return seg

    seg = run_with_pipeline(model_and_record, scenario, work_budget_s=NO_TIME)
    assert seg.scale == 1.0 and seg.plan.wanted_scale == pytest.approx(2.0)
    assert "enlargement_capped" in [warning.code for warning in seg.quality.warnings]
    assert seg.labels.shape == (96, 96)


def test_a_second_pass_past_the_work_budget_is_held_back_and_said(model_and_record):
    """Image statistics read a packed field as large nuclei and shrink it; the cells the
    network finds ask for a second pass at native size (counted: 157 of 172 with width 16).
    Past the budget the first pass stands, reports the size it asked for and warns."""
    from model_training.validation_sets import SYNTHETIC_SETS

    dense = SYNTHETIC_SETS["dense"]
    sample = generate_sample(dense.seed(11), dense.config)
    buffer = io.BytesIO()
    Image.fromarray(sample.image).save(buffer, format="PNG")

    async def scenario(pipeline, batcher, metrics):
        (seg,) = await pipeline.count(
            [Upload("dense.png", buffer.getvalue())], CountOptions(), deadline()
        )
        return seg

    free = run_with_pipeline(model_and_record, scenario)
    assert free.plan.refined and free.scale == 1.0 and not free.plan.capped
    held = run_with_pipeline(model_and_record, scenario, work_budget_s=NO_TIME)
    assert not held.plan.refined and held.scale < 0.6
    assert held.plan.wanted_scale == pytest.approx(1.0)
    assert "enlargement_capped" in [warning.code for warning in held.quality.warnings]
    assert held.labels.shape == sample.labels.shape


def test_out_of_range_diameter_is_refused_before_any_work(model_and_record):
    data, _ = png_of(6)

    async def scenario(pipeline, batcher, metrics):
        with pytest.raises(ApiError) as refused:
            await pipeline.count([Upload("a.png", data)], CountOptions(diameter=0.1), deadline())
        return refused.value

    error = run_with_pipeline(model_and_record, scenario)
    assert error.status == 422 and "diameter" in error.message


def test_a_recorded_training_pixel_size_scales_an_image_of_known_pixel_size(model_and_record):
    """A checkpoint trained at 0.5 um/px that gets an OME-TIFF at 0.25 um/px expects its
    nuclei at twice the pixels: the size comes from the two pixel sizes, not the estimate."""
    model, record = model_and_record
    trained = record.model_copy(update={"pixel_size_um": 0.5})
    sample = generate_sample(4, SyntheticConfig(height=128, width=128, max_cells=20))
    buffer = io.BytesIO()
    tifffile.imwrite(buffer, sample.image, ome=True, metadata={"PhysicalSizeX": 0.25})

    async def scenario(pipeline, batcher, metrics):
        deadline = time.monotonic() + 60
        (known,) = await pipeline.count(
            [Upload("a.ome.tif", buffer.getvalue())], CountOptions(), deadline
        )
        (png,) = await pipeline.count([Upload("a.png", png_of(4)[0])], CountOptions(), deadline)
        formats = {fmt: metrics.formats.labels(fmt)._value.get() for fmt in ("ome-tiff", "png")}
        return known, png, formats

    known, png, formats = run_with_pipeline((model, trained), scenario)
    assert formats == {"ome-tiff": 1, "png": 1}
    assert known.diameter_source == "pixel_size"
    assert known.diameter_px == pytest.approx(2 * trained.nucleus_diameter_px)
    assert known.pixel_size.um == 0.25 and known.pixel_size.source == "metadata"
    assert png.diameter_source == "auto" and png.pixel_size.um is None
