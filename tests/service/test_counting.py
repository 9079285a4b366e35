import numpy as np

from service.counting import grow_labels, label_cells, remove_small


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


def test_remove_small_renumbers_and_grow_never_merges():
    labels = np.array([[1, 1, 0, 2], [0, 0, 0, 0], [3, 3, 3, 0]], dtype=np.int32)
    kept = remove_small(labels, 2)
    assert sorted(np.unique(kept)) == [0, 1, 2]
    grown = grow_labels(np.array([[1, 0, 0, 2]], dtype=np.int32), 1)
    assert grown.tolist() == [[1, 1, 2, 2]]
