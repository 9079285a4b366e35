import numpy as np
import pytest

from model_training.metrics import count_errors, dice, match_objects


def test_perfect_prediction():
    labels = np.zeros((10, 10), dtype=np.int32)
    labels[1:4, 1:4] = 1
    labels[6:9, 6:9] = 2
    match = match_objects(labels, labels * 7)  # ids differ, objects are the same
    assert (match.true_positives, match.n_true, match.n_pred) == (2, 2, 2)
    assert match.f1 == 1.0


def test_iou_below_half_is_not_a_match():
    true = np.zeros((10, 10), dtype=np.int32)
    true[0:4, 0:4] = 1  # 16 pixels
    pred = np.zeros_like(true)
    pred[0:4, 0:2] = 1  # 8 pixels inside: IoU exactly 0.5, not above
    assert match_objects(true, pred).true_positives == 0
    pred[0:4, 0:3] = 1  # IoU 0.75
    assert match_objects(true, pred).true_positives == 1


def test_merged_prediction_counts_one_miss_and_f1():
    true = np.zeros((10, 20), dtype=np.int32)
    true[2:8, 2:8] = 1
    true[2:8, 8:10] = 2  # small neighbour
    pred = (true > 0).astype(np.int32)  # merged into one object
    match = match_objects(true, pred)
    # IoU with instance 1 is 36/48 = 0.75 -> matched; instance 2 missed.
    assert (match.true_positives, match.n_true, match.n_pred) == (1, 2, 1)
    assert match.f1 == pytest.approx(2 / 3)
    assert match.precision == 1.0 and match.recall == 0.5


def test_empty_cases():
    empty = np.zeros((5, 5), dtype=np.int32)
    assert match_objects(empty, empty).f1 == 1.0
    one = empty.copy()
    one[1, 1] = 1
    assert match_objects(one, empty).f1 == 0.0
    assert dice(empty, empty) == 1.0


def test_dice_and_count_errors():
    a = np.zeros((4, 4), dtype=bool)
    a[:2] = True  # 8 pixels
    b = np.zeros((4, 4), dtype=bool)
    b[:, :2] = True  # 8 pixels, 4 shared
    assert dice(a, b) == pytest.approx(0.5)
    errors = count_errors([10, 20, 0], [12, 19, 1])
    assert errors["count_mse"] == pytest.approx((4 + 1 + 1) / 3)
    assert errors["count_mae"] == pytest.approx(4 / 3)
    assert errors["mean_relative_count_error"] == pytest.approx((0.2 + 0.05) / 2)
