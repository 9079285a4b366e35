"""The size estimate, the resize policy and the trip of labels back to the image grid."""

from __future__ import annotations

import numpy as np
import pytest

from model_training.normalization import PercentileNormalization
from model_training.scale import (
    BAND_ABOVE,
    BAND_BELOW,
    MAX_PIXEL_GROWTH,
    MAX_SCALE,
    MIN_SCALE,
    PINNED_MAX_SCALE,
    ScalePlan,
    SizeEstimate,
    choose_scale,
    diameter_bounds,
    estimate_diameter,
    labels_to_shape,
    plan_scale,
    refine_plan,
    resize_plane,
    scale_cap,
)
from model_training.synthetic import SyntheticConfig, generate_sample

TRAINED = 16.2


def median_diameter(labels: np.ndarray) -> float:
    areas = np.bincount(labels.ravel())[1:]
    return float(np.median(2 * np.sqrt(areas[areas > 0] / np.pi)))


@pytest.mark.parametrize(
    ("factor", "side", "tolerance"),
    [(0.25, 160, 2.0), (0.5, 192, 1.6), (1.0, 256, 1.4), (2.0, 384, 1.3), (4.0, 640, 1.3)],
)
def test_estimate_is_near_the_true_diameter(factor, side, tolerance):
    """Nuclei of 3-4 px are blurred by the optics (the generator's PSF) to twice their size:
    the estimate reads the blur too, hence the wider tolerance at the small end."""
    config = SyntheticConfig(height=side, width=side, min_cells=6, max_cells=30, scale=factor)
    for seed in range(3):
        sample = generate_sample(seed, config)
        image = PercentileNormalization().apply(sample.image)
        estimate = estimate_diameter(image)
        truth = median_diameter(sample.labels)
        assert estimate.diameter_px is not None and estimate.objects > 0
        assert 1 / tolerance < estimate.diameter_px / truth < tolerance, (seed, estimate, truth)


def test_blank_or_empty_noisy_field_has_no_estimate_and_is_not_resized():
    estimate = estimate_diameter(np.zeros((64, 64), np.float32))
    assert estimate.diameter_px is None
    # Otsu splits pure noise too; its specks must not read as tiny nuclei (a 4x enlargement)
    noise = np.random.default_rng(0).normal(0.1, 0.02, (256, 256)).astype(np.float32)
    assert estimate_diameter(noise).diameter_px is None
    assert plan_scale(noise, "auto", TRAINED).scale == 1.0
    assert plan_scale(np.zeros((64, 64), np.float32), "auto", TRAINED).scale == 1.0


def test_scale_policy_band_and_limits():
    assert choose_scale(TRAINED, TRAINED) == 1.0
    assert choose_scale(TRAINED / BAND_BELOW * 1.01, TRAINED) == 1.0
    assert choose_scale(TRAINED * BAND_ABOVE * 0.99, TRAINED) == 1.0
    assert choose_scale(TRAINED * 4, TRAINED) == pytest.approx(0.25)
    assert choose_scale(TRAINED / 3, TRAINED, max_scale=4.0) == pytest.approx(3.0)
    assert choose_scale(TRAINED * 100, TRAINED) == MIN_SCALE
    assert choose_scale(TRAINED / 100, TRAINED) == MAX_SCALE
    assert choose_scale(TRAINED / 3, TRAINED, max_scale=1.5) == 1.5
    assert choose_scale(None, TRAINED) == 1.0 and choose_scale(30.0, None) == 1.0
    low, high = diameter_bounds(TRAINED)
    assert low == pytest.approx(TRAINED / PINNED_MAX_SCALE, abs=0.01)
    assert high == pytest.approx(TRAINED / MIN_SCALE, abs=0.01)


def test_pinned_diameter_skips_the_estimate_and_pixels_cap_enlarging():
    image = np.zeros((100, 100), np.float32)
    plan = plan_scale(image, TRAINED / 4, TRAINED)
    assert (plan.source, plan.scale) == ("given", pytest.approx(MAX_SCALE))
    assert plan.capped and plan.wanted_scale == pytest.approx(4.0)
    capped = plan_scale(image, TRAINED / 4, TRAINED, max_pixels=2 * image.size)
    assert capped.scale == pytest.approx(2**0.5, rel=1e-3)
    assert plan_scale(image, TRAINED / 1.5, TRAINED).wanted_scale is None  # within the cap


def test_an_estimate_of_1_5_px_on_a_512_upload_stays_within_the_pixel_budget(monkeypatch):
    """Bounded work: a tissue image read as 1.5 px nuclei once became a 2048x2048 pass (a 504);
    whatever the estimate, the network sees at most 4x the upload's pixels."""
    monkeypatch.setattr(
        "model_training.scale.estimate_diameter", lambda image: SizeEstimate(1.5, 40)
    )
    image = np.random.default_rng(0).random((512, 512), dtype=np.float32)
    plan = plan_scale(image, "auto", TRAINED, max_pixels=64 * 1024**2)
    resized = resize_plane(image, plan.scale)
    assert resized.size <= MAX_PIXEL_GROWTH * image.size
    assert plan.capped and plan.wanted_scale == pytest.approx(TRAINED / 1.5)
    # and never past max_pixels, nor more than 4x for odd shapes where rounding adds a row
    assert resize_plane(image, plan_scale(image, "auto", TRAINED, 600_000).scale).size <= 600_000
    for shape in ((333, 517), (7, 3), (1001, 999)):
        cap = scale_cap(shape, None)
        assert round(shape[0] * cap) * round(shape[1] * cap) <= MAX_PIXEL_GROWTH * np.prod(shape)
    assert scale_cap((4096, 4096), 1024**2) == 1.0  # already past max_pixels: never enlarged


def test_resize_plane_shapes():
    image = np.random.default_rng(0).random((50, 80), dtype=np.float32)
    assert resize_plane(image, 0.5).shape == (25, 40)
    assert resize_plane(image, 3.0).shape == (150, 240)
    assert resize_plane(image, 1.0) is not None and resize_plane(image, 1.0).shape == (50, 80)


@pytest.mark.parametrize("factor", [0.25, 3.0])
def test_labels_to_shape_keeps_every_cell(factor):
    sample = generate_sample(3, SyntheticConfig(height=128, width=128, min_cells=20, max_cells=40))
    labels = sample.labels
    shape = (round(128 * factor), round(128 * factor))
    back = labels_to_shape(labels, shape)
    assert back.shape == shape
    assert int(back.max()) == len(np.unique(labels)) - 1
    assert set(np.unique(back)) == set(range(int(back.max()) + 1))


def test_labels_to_shape_is_identity_on_the_same_grid():
    labels = np.arange(12, dtype=np.int32).reshape(3, 4)
    assert labels_to_shape(labels, (3, 4)) is labels


def test_refine_plan_takes_the_size_the_network_saw_after_a_shrink_only():
    shrunk = ScalePlan(40.0, "auto", 16.2 / 40.0)
    # cells at 9 px on the network grid: 9 / 0.405 = 22 image px, inside the band: no resize
    second = refine_plan(shrunk, 9.0, 16.2)
    assert second is not None and second.refined and second.scale == 1.0
    assert second.diameter_px == pytest.approx(9.0 / shrunk.scale)
    assert refine_plan(shrunk, 15.0, 16.2) is None  # the network agrees with the estimate
    assert refine_plan(shrunk, None, 16.2) is None  # too few cells to tell
    assert refine_plan(ScalePlan(40.0, "given", 0.405), 9.0, 16.2) is None  # pinned: trusted
    assert refine_plan(ScalePlan(5.0, "auto", 3.24), 9.0, 16.2) is None  # enlarged: not refined
    assert refine_plan(ScalePlan(20.0, "auto", 1.0), 5.0, 16.2) is None  # not resized
    # a refinement that asks to enlarge past the cap is capped and says so
    tiny = refine_plan(ScalePlan(200.0, "auto", 0.081), 0.2, 16.2)
    assert tiny is not None and tiny.scale == MAX_SCALE and tiny.capped


@pytest.mark.parametrize(
    ("network_px", "statistics_px", "planned_scale"),
    [
        (6.0, None, 1.0),  # texture read as small nuclei, nothing bright for the statistics
        (6.0, 22.0, 1.0),  # the statistics see training-sized nuclei: not enlarged
        (6.0, 7.0, 2.0),  # both see small nuclei: enlarged (to the 2x cap)
        (60.0, 5.0, TRAINED / 60.0),  # shrinking needs no second witness
    ],
)
def test_the_network_alone_does_not_enlarge(network_px, statistics_px, planned_scale):
    """On textured tissue the network's probe reads texture as small nuclei (an empty synthetic
    tissue field enlarged 2x was counted as 117 cells); enlarging takes both estimates."""
    image = np.zeros((256, 256), np.float32)
    estimate = SizeEstimate(network_px, 10, from_network=True, statistics_px=statistics_px)
    plan = plan_scale(image, "auto", TRAINED, estimator=lambda _: estimate)
    assert plan.scale == pytest.approx(planned_scale, rel=1e-3)
    if planned_scale == 1.0:
        assert plan.diameter_px == pytest.approx(TRAINED / BAND_BELOW)
    # the statistics' own estimate is never second-guessed
    alone = plan_scale(image, "auto", TRAINED, estimator=lambda _: SizeEstimate(6.0, 10))
    assert alone.scale == pytest.approx(2.0)
