import numpy as np
import pytest
from scipy import ndimage

from model_training.targets import contact_pixels, contact_weights, separated_foreground


def two_touching_squares() -> np.ndarray:
    labels = np.zeros((20, 30), dtype=np.int32)
    labels[5:15, 5:15] = 1
    labels[5:15, 15:25] = 2  # shares an edge with instance 1
    labels[2:4, 27:29] = 3  # isolated
    return labels


def test_touching_instances_stay_apart_under_8_connectivity():
    labels = two_touching_squares()
    target = separated_foreground(labels)
    _merged, n_merged = ndimage.label(labels > 0, structure=np.ones((3, 3)))
    _, n_components = ndimage.label(target > 0, structure=np.ones((3, 3)))
    assert n_merged == 2  # the naive binary mask merges the squares
    assert n_components == 3
    assert target.dtype == np.float32


def test_only_contact_pixels_are_removed():
    labels = two_touching_squares()
    contact = contact_pixels(labels)
    assert contact[5:15, 14].all() and contact[5:15, 15].all()
    assert contact.sum() == 20
    assert not contact[labels == 3].any()


def test_diagonal_contact_is_separated():
    labels = np.zeros((6, 6), dtype=np.int32)
    labels[1:3, 1:3] = 1
    labels[3:5, 3:5] = 2  # touches instance 1 only at a corner
    _, n = ndimage.label(separated_foreground(labels), structure=np.ones((3, 3)))
    assert n == 2


def test_contact_weights_are_high_in_the_gap_and_one_far_from_any_neighbour():
    labels = two_touching_squares()
    weights = contact_weights(labels, strength=5.0, sigma=3.0)
    assert weights.dtype == np.float32 and weights.shape == labels.shape
    gap = contact_pixels(labels)
    assert weights[gap].min() > 4.0  # d1 = 0, d2 = 1 at the shared edge: 1 + 5 exp(-1/18)
    assert weights[gap].max() <= 6.0
    # The far side of the pair is not near two instances (square 3 sits 3 px off square 2,
    # so its corner is weighted too: any two close instances count, touching or not).
    assert np.allclose(weights[:, :3], 1.0, atol=1e-3)
    assert weights[3, 26] > 2.0
    # Nearer the contact, heavier: along the middle row the weight rises towards the edge.
    row = weights[10, 5:15]
    assert np.all(np.diff(row) > 0)


def test_contact_weights_follow_the_nearest_two_instances_not_the_label_order():
    labels = np.zeros((30, 30), dtype=np.int32)
    labels[5:10, 5:10] = 7  # numbered out of order, one label skipped
    labels[5:10, 12:17] = 2
    labels[20:25, 20:25] = 5
    weights = contact_weights(labels, strength=4.0, sigma=2.0)
    between = weights[7, 10:12]  # background between 7 and 2, two pixels from each
    expected = 1 + 4.0 * np.exp(-((1.0 + 2.0) ** 2) / (2 * 2.0**2))
    assert between[0] == pytest.approx(expected, rel=1e-5)
    assert weights[22, 22] == pytest.approx(1.0, abs=1e-3)


def test_contact_weights_are_all_one_when_off_or_alone():
    labels = two_touching_squares()
    assert np.array_equal(contact_weights(labels, 0.0, 3.0), np.ones(labels.shape, np.float32))
    single = (labels == 1).astype(np.int32)
    assert np.array_equal(contact_weights(single, 5.0, 3.0), np.ones(labels.shape, np.float32))
