import numpy as np

from model_training.count_errors import count_errors_by_kind


def _squares(*corners: tuple[int, int], size: int = 6, shape=(40, 40)) -> np.ndarray:
    labels = np.zeros(shape, np.int32)
    for number, (top, left) in enumerate(corners, start=1):
        labels[top : top + size, left : left + size] = number
    return labels


def test_each_kind_of_mistake_is_counted_and_the_books_balance():
    truth = _squares((2, 2), (2, 8), (20, 20), (30, 2), (30, 30))
    truth[10, 30] = 6  # a one-pixel speck the annotators labelled
    predicted = np.zeros_like(truth)
    predicted[2:8, 2:14] = 1  # one object over the first two nuclei: merged
    predicted[20:26, 20:23] = 2  # the third nucleus cut in two: a fragment
    predicted[20:26, 23:26] = 3
    predicted[30:36, 2:8] = 4  # the fourth found as it is
    predicted[12:16, 12:16] = 5  # background lit up: false
    # the fifth nucleus and the speck are missed
    errors = count_errors_by_kind(truth, predicted)
    assert (errors.true, errors.predicted) == (6, 5)
    assert (errors.missed, errors.merged, errors.fragments, errors.false) == (2, 1, 1, 1)
    balance = errors.false + errors.fragments - errors.missed - errors.merged
    assert errors.predicted - errors.true == balance
    assert sorted(errors.missed_relative_areas) == [1 / 36, 1.0]


def test_a_perfect_prediction_and_empty_images_have_no_errors():
    truth = _squares((2, 2), (20, 20))
    perfect = count_errors_by_kind(truth, truth * 7)  # numbering does not matter
    assert (perfect.missed, perfect.merged, perfect.fragments, perfect.false) == (0, 0, 0, 0)
    empty = np.zeros_like(truth)
    assert count_errors_by_kind(truth, empty).missed == 2
    assert count_errors_by_kind(empty, truth).false == 2
    assert count_errors_by_kind(empty, empty).true == 0
