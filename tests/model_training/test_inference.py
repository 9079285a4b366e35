"""Probabilities to cells on the image grid: the rejection rules of the checkpoint record."""

from __future__ import annotations

import numpy as np

from model_training.checkpoint import CheckpointRecord, Rejection
from model_training.inference import network_min_area, probabilities_to_cells, relative_min_area
from model_training.scale import ScalePlan


def test_relative_min_area_follows_the_nucleus_size_on_the_network_grid():
    rule = Rejection(min_relative_area=0.1)
    assert relative_min_area(ScalePlan(40.0, "auto", 0.5), rule) == 31  # 0.1 * pi/4 * 20^2
    assert relative_min_area(ScalePlan(None, "auto", 1.0), rule) == 0
    assert relative_min_area(ScalePlan(40.0, "auto", 0.5), Rejection()) == 0
    assert relative_min_area(ScalePlan(40.0, "auto", 0.5), None) == 0


def test_specks_far_smaller_than_the_nuclei_are_not_counted():
    probabilities = np.zeros((96, 96), np.float32)
    rows, cols = np.indices(probabilities.shape)
    for y, x in ((30, 30), (60, 64)):
        probabilities[(rows - y) ** 2 + (cols - x) ** 2 <= 81] = 1.0  # nuclei of ~19 px
    probabilities[85:89, 10:14] = 1.0  # a 4x4 speck of debris
    plan = ScalePlan(18.0, "auto", 1.0)
    kept = CheckpointRecord(base_channels=4, rejection=Rejection(min_relative_area=0.1))
    cells = probabilities_to_cells(probabilities, plan, kept, (96, 96), 0.5, 0)
    assert cells.labels.max() == 2
    plain = CheckpointRecord(base_channels=4)
    assert probabilities_to_cells(probabilities, plan, plain, (96, 96), 0.5, 0).labels.max() == 3
    off = probabilities_to_cells(probabilities, plan, kept, (96, 96), 0.5, 0, reject_unsure=False)
    assert off.labels.max() == 3


def test_an_asked_minimum_area_is_in_image_pixels_and_scales_with_the_resize():
    record = CheckpointRecord(base_channels=4, min_area=12)
    assert network_min_area(record, None, ScalePlan(80.0, "auto", 0.25)) == 12
    assert network_min_area(record, 160, ScalePlan(80.0, "auto", 0.25)) == 10
    assert network_min_area(record, 10, ScalePlan(4.0, "auto", 4.0)) == 160


def test_the_peak_rule_spares_images_enlarged_past_the_trusted_scale():
    """Enlarging tiny nuclei blurs their probabilities: the rule calibrated at native scale
    (drop objects whose peak stays under 0.995 where the map is ambiguous) would drop them."""
    probabilities = np.full((96, 96), 0.5, np.float32)  # an ambiguous map throughout
    rows, cols = np.indices(probabilities.shape)
    for y, x in ((30, 30), (60, 64)):
        probabilities[(rows - y) ** 2 + (cols - x) ** 2 <= 81] = 0.9  # soft, never near 1
    rule = Rejection(min_peak_probability=0.995, when_ambiguous_above=0.5)
    record = CheckpointRecord(base_channels=4, rejection=rule)

    def count(scale: float) -> int:
        plan = ScalePlan(18.0 / scale, "auto", scale)
        shape = (round(96 / scale), round(96 / scale))
        return int(probabilities_to_cells(probabilities, plan, record, shape, 0.7, 0).labels.max())

    assert count(1.0) == 0  # native scale: soft objects in an ambiguous map are rejected
    assert count(3.0) == 2  # enlarged 3x (flagged tiny_nuclei): they are kept
    # nuclei that asked for 3x but were capped at 2x: still too small for the rule
    capped = ScalePlan(6.0, "auto", 2.0, wanted_scale=3.0)
    assert int(probabilities_to_cells(probabilities, capped, record, (48, 48), 0.7, 0).labels.max())


def test_a_nucleus_the_network_is_nearly_sure_of_is_kept_in_an_ambiguous_map():
    """The shipped record demands a peak of 0.995 where the map is ambiguous; on real images
    that dropped dim but plain nuclei peaking at 0.98-0.995, so no rule demands more than
    MAX_PEAK_DEMANDED (docs/counting.md, section 2)."""
    probabilities = np.full((96, 96), 0.5, np.float32)  # an ambiguous map throughout
    rows, cols = np.indices(probabilities.shape)
    probabilities[(rows - 30) ** 2 + (cols - 30) ** 2 <= 81] = 0.985  # dim but plain
    probabilities[(rows - 60) ** 2 + (cols - 64) ** 2 <= 81] = 0.9  # texture: stays grey
    rule = Rejection(min_peak_probability=0.995, when_ambiguous_above=0.5)
    record = CheckpointRecord(base_channels=4, rejection=rule)
    plan = ScalePlan(18.0, "auto", 1.0)
    labels = probabilities_to_cells(probabilities, plan, record, (96, 96), 0.7, 0).labels
    assert int(labels.max()) == 1 and labels[30, 30] > 0
