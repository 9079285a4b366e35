"""Segmentation and counting metrics: count errors, Dice, object F1 at an IoU threshold."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ObjectMatch:
    """Matching of predicted objects to true instances at one IoU threshold."""

    true_positives: int
    n_true: int
    n_pred: int

    @property
    def precision(self) -> float:
        return self.true_positives / self.n_pred if self.n_pred else float(self.n_true == 0)

    @property
    def recall(self) -> float:
        return self.true_positives / self.n_true if self.n_true else float(self.n_pred == 0)

    @property
    def f1(self) -> float:
        total = self.n_true + self.n_pred
        return 2 * self.true_positives / total if total else 1.0


def overlap_table(
    true_labels: np.ndarray, pred_labels: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(true ids, predicted ids, pixel counts of every true x predicted pair), background (0)
    included as an id wherever it occurs: one pass over the pixels for all overlaps."""
    true_ids, true_flat = np.unique(true_labels, return_inverse=True)
    pred_ids, pred_flat = np.unique(pred_labels, return_inverse=True)
    joint = np.bincount(
        true_flat.ravel() * len(pred_ids) + pred_flat.ravel(),
        minlength=len(true_ids) * len(pred_ids),
    ).reshape(len(true_ids), len(pred_ids))
    return true_ids, pred_ids, joint


def match_objects(
    true_labels: np.ndarray, pred_labels: np.ndarray, iou_threshold: float = 0.5
) -> ObjectMatch:
    """Count true instances matched by a predicted object with IoU above the threshold.

    For thresholds >= 0.5 a match is necessarily one-to-one (two objects cannot both overlap
    more than half of a third), so counting qualifying pairs needs no assignment solver.
    """
    if iou_threshold < 0.5:
        raise ValueError("match_objects counts pairs, which is one-to-one only for IoU >= 0.5")
    true_ids, pred_ids, joint = overlap_table(true_labels, pred_labels)
    n_true = int((true_ids != 0).sum())
    n_pred = int((pred_ids != 0).sum())
    if n_true == 0 or n_pred == 0:
        return ObjectMatch(0, n_true, n_pred)
    true_area = joint.sum(axis=1, keepdims=True)
    pred_area = joint.sum(axis=0, keepdims=True)
    iou = joint / (true_area + pred_area - joint)
    iou = iou[true_ids != 0][:, pred_ids != 0]
    return ObjectMatch(int((iou > iou_threshold).sum()), n_true, n_pred)


def dice(true_foreground: np.ndarray, pred_foreground: np.ndarray) -> float:
    """Dice coefficient of two binary masks (1.0 when both are empty)."""
    true_foreground = np.asarray(true_foreground, dtype=bool)
    pred_foreground = np.asarray(pred_foreground, dtype=bool)
    total = int(true_foreground.sum()) + int(pred_foreground.sum())
    if total == 0:
        return 1.0
    return 2.0 * int((true_foreground & pred_foreground).sum()) / total


def count_errors(true_counts: np.ndarray, pred_counts: np.ndarray) -> dict[str, float]:
    """MSE and MAE of counts, and mean relative error (images with a true count of 0 skipped)."""
    true_counts = np.asarray(true_counts, dtype=np.float64)
    pred_counts = np.asarray(pred_counts, dtype=np.float64)
    error = pred_counts - true_counts
    positive = true_counts > 0
    relative = np.abs(error[positive]) / true_counts[positive]
    return {
        "count_mse": float(np.mean(error**2)) if error.size else float("nan"),
        "count_mae": float(np.mean(np.abs(error))) if error.size else float("nan"),
        "mean_relative_count_error": float(relative.mean()) if relative.size else float("nan"),
    }
