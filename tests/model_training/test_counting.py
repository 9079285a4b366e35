import numpy as np
import pytest
from scipy import ndimage

from model_training.counting import (
    disc_footprint,
    disc_maximum,
    grow_labels,
    label_cells,
    remove_small,
    split_clumps,
)


def disc(shape, centre, radius):
    rows, cols = np.ogrid[: shape[0], : shape[1]]
    return (rows - centre[0]) ** 2 + (cols - centre[1]) ** 2 <= radius**2


def test_threshold_components_and_min_area():
    probs = np.zeros((40, 40), dtype=np.float32)
    probs[disc(probs.shape, (10, 10), 5)] = 0.9
    probs[disc(probs.shape, (30, 30), 5)] = 0.6
    probs[2, 38] = 0.95  # one-pixel speck
    assert label_cells(probs, 0.5, min_area=0, grow=0).max() == 3
    assert label_cells(probs, 0.5, min_area=5, grow=0).max() == 2
    assert label_cells(probs, 0.7, min_area=5, grow=0).max() == 1


def test_diagonal_neighbours_are_one_cell():
    probs = np.zeros((5, 5), dtype=np.float32)
    probs[1, 1] = probs[2, 2] = 1.0
    assert label_cells(probs, grow=0).max() == 1


def test_split_touching_separates_two_overlapping_discs():
    shape = (60, 80)
    both = disc(shape, (30, 28), 12) | disc(shape, (30, 50), 12)
    probs = both.astype(np.float32)
    assert label_cells(probs, grow=0).max() == 1
    assert label_cells(probs, split_touching=True, grow=0).max() == 2


def ellipse(shape, centre, semi_axes):
    rows, cols = np.ogrid[: shape[0], : shape[1]]
    return ((rows - centre[0]) / semi_axes[0]) ** 2 + ((cols - centre[1]) / semi_axes[1]) ** 2 <= 1


def field_of_singles(shape=(200, 200), radius=8):
    """Nine separate round nuclei: the typical object the clump rule compares with."""
    mask = np.zeros(shape, dtype=bool)
    for row in (20, 50, 80):
        for col in (20, 50, 80):
            mask |= disc(shape, (row, col), radius)
    return mask


def test_clumps_far_larger_than_the_typical_nucleus_are_cut():
    probs = field_of_singles().astype(np.float32)
    two = disc(probs.shape, (150, 40), 8) | disc(probs.shape, (150, 53), 8)
    three = disc(probs.shape, (150, 110), 8) | disc(probs.shape, (150, 124), 8)
    three |= disc(probs.shape, (160, 136), 8)  # a bent chain, as defocus leaves them
    probs[two | three] = 1.0
    assert label_cells(probs, grow=0).max() == 9 + 2
    labels = label_cells(probs, grow=0, clumps=True)
    assert labels.max() == 9 + 2 + 3
    assert sorted(np.unique(labels)) == list(range(9 + 2 + 3 + 1))  # still numbered 1..N
    assert ((labels > 0) == (probs > 0.5)).all()  # cut, nothing dropped


def test_convex_nuclei_larger_than_the_rest_stay_whole():
    """An elongated nucleus and a big round one (both > 1.4x the median area) are single
    bodies: their distance transforms have one peak, so neither is cut."""
    probs = field_of_singles().astype(np.float32)
    probs[ellipse(probs.shape, (150, 50), (7, 16))] = 1.0  # 1.75x the area of a single
    probs[disc(probs.shape, (150, 140), 15)] = 1.0  # 3.5x
    labels = label_cells(probs, grow=0)
    assert labels.max() == 11
    assert (split_clumps(labels) == labels).all()


def test_remove_small_renumbers_and_grow_never_merges():
    labels = np.array([[1, 1, 0, 2], [0, 0, 0, 0], [3, 3, 3, 0]], dtype=np.int32)
    kept = remove_small(labels, 2)
    assert sorted(np.unique(kept)) == [0, 1, 2]
    grown = grow_labels(np.array([[1, 0, 0, 2]], dtype=np.int32), 1)
    assert grown.tolist() == [[1, 1, 2, 2]]


def test_holes_inside_one_cell_are_filled_but_rings_of_cells_stay_open():
    probs = np.zeros((40, 40), dtype=np.float32)
    probs[disc(probs.shape, (12, 12), 8)] = 1.0
    probs[10:13, 10:13] = 0.0  # a dim nucleolus inside the cell
    probs[11, 11] = 1.0  # and a speck inside that hole
    labels = label_cells(probs, grow=0)
    assert labels.max() == 1 and labels[11, 11] == 1 and labels[10, 10] == 1
    ring = np.zeros((30, 30), dtype=np.float32)
    ring[5:25, 5:25] = 1.0
    ring[10:20, 10:20] = 0.0  # pocket enclosed by four cells separated by gaps
    ring[5:25, 15] = 0.0
    ring[15, 5:25] = 0.0
    ring_labels = label_cells(ring, grow=0)
    assert ring_labels.max() == 4 and ring_labels[14, 14] == 0


def test_grow_labels_is_a_cross_shaped_grey_dilation_of_the_background():
    """The shifted-view implementation against the textbook one, on crowded random labels."""
    rng = np.random.default_rng(3)
    cross = ndimage.generate_binary_structure(2, 1)
    for _ in range(20):
        seeds = rng.random((64, 80)) < 0.05
        labels, _ = ndimage.label(seeds)
        labels = labels.astype(np.int32)
        for steps in (1, 2, 3):
            expected = labels
            for _ in range(steps):
                dilated = ndimage.grey_dilation(expected, footprint=cross)
                expected = np.where(expected == 0, dilated, expected)
            assert np.array_equal(grow_labels(labels, steps), expected)


def test_remove_small_keeps_consecutive_labels_and_renumbers_gaps():
    labels = np.array([[1, 1, 0, 2, 2], [3, 3, 0, 0, 0]], dtype=np.int32)
    assert np.array_equal(remove_small(labels, 1), labels)
    gapped = np.where(labels == 2, 0, labels)  # ids 1 and 3: renumbered to 1 and 2
    assert sorted(np.unique(remove_small(gapped, 1))) == [0, 1, 2]


@pytest.mark.parametrize("radius", [1, 3.4, 7, 16])
def test_disc_maximum_equals_the_footprint_filter(radius):
    rng = np.random.default_rng(int(radius * 10))
    footprint = disc_footprint(radius)
    for shape in ((2 * round(radius) + 1, 40), (57, 2 * round(radius) + 3), (90, 120)):
        values = ndimage.gaussian_filter(rng.random(shape), 1.5)
        values[rng.random(shape) < 0.3] = 0.0  # flat background, as around a clump
        expected = ndimage.maximum_filter(values, footprint=footprint)
        assert np.array_equal(disc_maximum(values, footprint), expected)
