"""Quality warnings: what fires on which probability maps and labels."""

from __future__ import annotations

import numpy as np

from model_training.checkpoint import CheckpointRecord
from model_training.counting import ambiguous_fraction, label_cells, reject_unsure
from model_training.quality import assess

RECORD = CheckpointRecord(base_channels=4, nucleus_diameter_px=16.0, diameter_range_px=(9, 49))


def discs(shape: tuple[int, int], centres: list[tuple[int, int]], radius: int) -> np.ndarray:
    rows, cols = np.indices(shape)
    probabilities = np.zeros(shape, np.float32)
    for y, x in centres:
        probabilities[(rows - y) ** 2 + (cols - x) ** 2 <= radius**2] = 1.0
    return probabilities


def codes(quality) -> set[str]:
    return {warning.code for warning in quality.warnings}


def test_confident_map_of_training_sized_cells_has_no_warnings():
    probabilities = discs((128, 128), [(30, 30), (30, 90), (90, 30), (90, 90)], 8)
    labels = label_cells(probabilities, 0.5)
    quality = assess(ambiguous_fraction(probabilities), labels, 16.0, 1.0, RECORD)
    assert quality.warnings == [] and quality.ambiguous_fraction == 0.0
    assert 14 < quality.network_diameter_px < 19


def test_grey_map_warns_ambiguous_and_huge_cells_warn_size():
    grey = np.full((64, 64), 0.5, np.float32)
    assert ambiguous_fraction(grey) == 1.0
    quality = assess(ambiguous_fraction(grey), np.zeros((64, 64), np.int32), None, 1.0, RECORD)
    assert codes(quality) == {"ambiguous_foreground"}
    huge = discs((512, 512), [(100, 100), (100, 400), (400, 100), (400, 400)], 60)
    labels = label_cells(huge, 0.5)
    assert "size_out_of_range" in codes(assess(0.0, labels, 120.0, 1.0, RECORD))


def test_mostly_foreground_warns():
    labels = np.ones((32, 32), np.int32)
    assert "mostly_foreground" in codes(assess(0.0, labels, 16.0, 1.0, RECORD))


def test_reject_unsure_drops_objects_that_never_get_sure():
    probabilities = discs((64, 64), [(16, 16), (48, 48)], 6)
    probabilities[probabilities > 0] = 0.9
    probabilities[14:19, 14:19] = 1.0  # only the first object reaches a sure core
    labels = label_cells(probabilities, 0.5)
    assert labels.max() == 2
    kept = reject_unsure(labels, probabilities, min_peak_probability=0.99)
    assert kept.max() == 1 and kept[16, 16] == 1 and kept[48, 48] == 0
    assert reject_unsure(labels, probabilities) is labels


def test_heavily_enlarged_nuclei_warn_tiny():
    probabilities = discs((128, 128), [(30, 30), (30, 90), (90, 30), (90, 90)], 8)
    labels = label_cells(probabilities, 0.5)
    assert codes(assess(0.0, labels, 4.0, 4.0, RECORD)) == {"tiny_nuclei"}
    assert codes(assess(0.0, labels, 8.0, 2.0, RECORD)) == set()


def test_a_capped_enlargement_is_warned():
    probabilities = discs((128, 128), [(30, 30), (30, 90), (90, 30), (90, 90)], 8)
    labels = label_cells(probabilities, 0.5)
    warned = codes(assess(0.0, labels, 4.0, 2.0, RECORD, wanted_scale=4.0))
    assert warned == {"tiny_nuclei", "enlargement_capped"}
    assert codes(assess(0.0, labels, 7.0, 2.0, RECORD, wanted_scale=2.3)) == {"enlargement_capped"}


def test_a_faint_glow_around_confident_nuclei_is_not_warned():
    """Real Hoechst images from another lab counted well sit at an ambiguous share of 0.45-0.66
    (faint cytoplasm around sure nuclei); the warning is kept for maps greyer than that."""
    probabilities = discs((128, 128), [(30, 30), (30, 90), (90, 30), (90, 90)], 8)
    glow = discs((128, 128), [(30, 30), (30, 90), (90, 30), (90, 90)], 12) * 0.5
    probabilities = np.maximum(probabilities, glow)
    share = ambiguous_fraction(probabilities)
    assert 0.5 < share < 0.65
    labels = label_cells(probabilities, 0.7)
    assert "ambiguous_foreground" not in codes(assess(share, labels, 16.0, 1.0, RECORD))
    greyer = np.maximum(probabilities, np.full_like(probabilities, 0.4) * (glow > 0))
    wider = np.maximum(greyer, discs((128, 128), [(60, 60)], 40) * 0.5)
    assert "ambiguous_foreground" in codes(
        assess(ambiguous_fraction(wider), labels, 16.0, 1.0, RECORD)
    )
