"""Where a count goes wrong: each error of one image, by kind.

A count error is a sum of opposite mistakes (a missed nucleus and a split one cancel), so the
count alone does not say what to fix. Here every true nucleus is either *hosted* by the
predicted object covering most of it or *missed* (less than ``MIN_COVER`` of it predicted),
and every predicted object either hosts nuclei, is a *fragment* (most of it lies on a nucleus
that another object hosts) or is *false* (most of it on background). Then, exactly:

    predicted - true = false + fragments - missed - merged

where ``merged`` counts the nuclei beyond the first that one object hosts. Missed nuclei are
reported with their median area relative to the image's median true area: a missed nucleus
at a tenth of the typical area is a speck the annotators labelled, not a lost cell.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from model_training.metrics import overlap_table

MIN_COVER = 0.3  # share of a true nucleus (or of a predicted object) that must overlap


@dataclass(frozen=True)
class CountErrors:
    true: int
    predicted: int
    missed: int
    merged: int
    fragments: int
    false: int
    missed_relative_areas: tuple[float, ...]  # each missed nucleus / the median true area


def count_errors_by_kind(truth: np.ndarray, predicted: np.ndarray) -> CountErrors:
    """The decomposition of the module docstring for one image (labels on the same grid)."""
    true_ids, pred_ids, joint = overlap_table(truth, predicted)
    true_rows, pred_cols = true_ids != 0, pred_ids != 0
    overlap = joint[true_rows][:, pred_cols]  # true x predicted, background excluded
    true_area = joint[true_rows].sum(axis=1)
    pred_area = joint[:, pred_cols].sum(axis=0)
    n_true, n_pred = overlap.shape
    hosted = np.zeros(n_true, bool)
    host = np.full(n_true, -1)
    if n_pred:
        best = overlap.argmax(axis=1)
        hosted = overlap[np.arange(n_true), best] >= MIN_COVER * true_area
        host = np.where(hosted, best, -1)
    per_object = np.bincount(host[hosted], minlength=n_pred) if n_pred else np.zeros(0, int)
    merged = int(np.maximum(per_object - 1, 0).sum())
    fragments = false = 0
    for column in np.flatnonzero(per_object == 0):
        on = overlap[:, column]
        owner = int(on.argmax()) if n_true else -1
        if n_true and on[owner] >= MIN_COVER * pred_area[column]:
            fragments += 1
        else:
            false += 1
    median = float(np.median(true_area)) if n_true else 0.0
    missed = np.flatnonzero(~hosted)
    return CountErrors(
        true=n_true,
        predicted=n_pred,
        missed=int(missed.size),
        merged=merged,
        fragments=fragments,
        false=false,
        missed_relative_areas=tuple(float(true_area[i] / median) for i in missed),
    )
