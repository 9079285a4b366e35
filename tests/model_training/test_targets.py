import numpy as np
from scipy import ndimage

from model_training.targets import contact_pixels, separated_foreground


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
