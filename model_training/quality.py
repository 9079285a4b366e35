"""When a count should not be trusted: a few cheap signals from the probability map and labels.

A count comes with no error bar; these signals say when an image looks unlike what the model
was trained and validated on, so a pipeline can flag it for a human instead of trusting it:

- ``network_diameter_px``: median equivalent diameter of the cells *as the network segmented
  them* (after the resize), against the per-image range training covered. The estimate that
  chose the resize can be wrong; this is what the network actually saw.
- ``ambiguous_fraction``: share of candidate-foreground pixels (probability >= 0.2) whose
  probability stays between 0.2 and 0.8. A confident model is near 0 or 1 almost everywhere but
  at cell edges; a background that "lights up" (tissue texture, debris, haze) is grey.
- ``foreground_fraction``: share of the image labelled as cells.

- ``scale``: nuclei so small that they had to be enlarged 2.5x or more, and resizes the work
  caps held back (``scale.scale_cap``: 4x the upload's pixels, ``max_pixels``; the service's
  time budget, ``service.serving.work_budget``).

Warning thresholds are calibrated on real validation images (``docs/counting.md``), which
the synthetic suite flattered: on real images they fire on few good counts, and find only a
minority of the bad ones (both rates are reported there).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from model_training.checkpoint import CheckpointRecord
from model_training.counting import AMBIGUOUS_HIGH, AMBIGUOUS_LOW

# Calibrated on real images (docs/counting.md, "Quality warnings"): at 0.45, chosen on the
# synthetic suite, the ambiguous share warned 41 of 42 good counts of the other lab's set, whose
# faint cytoplasm keeps it at 0.45-0.66 whether the count is right or not.
MAX_AMBIGUOUS_FRACTION = 0.65
MAX_FOREGROUND_FRACTION = 0.4
SIZE_TOLERANCE = 1.0  # segmented sizes beyond the trained range (times this): out of domain
MAX_TRUSTED_SCALE = 2.5  # nuclei needing more enlargement are too small to resolve well
MIN_CELLS_FOR_SIZE = 3  # fewer cells say nothing reliable about their size


@dataclass(frozen=True)
class QualityWarning:
    code: str
    message: str


@dataclass(frozen=True)
class Quality:
    diameter_px: float | None
    network_diameter_px: float | None
    trained_diameter_range_px: tuple[float, float] | None
    ambiguous_fraction: float
    foreground_fraction: float
    warnings: list[QualityWarning] = field(default_factory=list)


def capped_warning(diameter_px: float | None, wanted_scale: float, scale: float) -> QualityWarning:
    """A resize held back by the work caps: the network saw the image smaller than its nuclei
    asked for."""
    return QualityWarning(
        "enlargement_capped",
        f"nuclei of about {diameter_px or 0:.1f} px asked for a {wanted_scale:.2g}x resize; the "
        f"network saw the image at {scale:.2g}x, the most one upload may cost (4x its pixels, "
        "max_pixels, and the service's work_budget_s at this machine's speed): small nuclei "
        "may merge. If the nuclei are not that small, pin 'diameter'",
    )


def assess(
    ambiguous: float,
    labels: np.ndarray,
    diameter_px: float | None,
    scale: float,
    record: CheckpointRecord,
    wanted_scale: float | None = None,
) -> Quality:
    """Quality signals of one image, from its labels on the network's grid (``scale`` network
    pixels per uploaded pixel; ``wanted_scale``: what the nucleus size asked for when the work
    cap allowed less) and the ambiguous share of its probability map
    (``counting.ambiguous_fraction``)."""
    foreground = float((labels > 0).mean()) if labels.size else 0.0
    areas = np.bincount(labels.ravel())[1:]
    areas = areas[areas > 0]
    network_diameter = (
        float(np.median(2 * np.sqrt(areas / np.pi))) if areas.size >= MIN_CELLS_FOR_SIZE else None
    )
    trained = record.diameter_range_px
    warnings: list[QualityWarning] = []
    if network_diameter is not None and trained is not None:
        low, high = trained[0] / SIZE_TOLERANCE, trained[1] * SIZE_TOLERANCE
        if not low <= network_diameter <= high:
            warnings.append(
                QualityWarning(
                    "size_out_of_range",
                    f"the cells were segmented at a median diameter of {network_diameter:.1f} px "
                    f"(after resizing by {scale:.3g}), outside the {low:.0f}-{high:.0f} px the "
                    "model was trained and validated on: pin 'diameter' if the estimate is wrong",
                )
            )
    asked = scale if wanted_scale is None else wanted_scale
    if asked >= MAX_TRUSTED_SCALE:
        warnings.append(
            QualityWarning(
                "tiny_nuclei",
                f"nuclei of about {diameter_px or 0:.1f} px needed enlarging {asked:.2g}x to "
                "reach the training size; at that size touching nuclei are often not resolved: "
                "image at a higher magnification, or pin 'diameter' if the estimate is wrong",
            )
        )
    if wanted_scale is not None and wanted_scale > scale:
        warnings.append(capped_warning(diameter_px, wanted_scale, scale))
    if foreground > MAX_FOREGROUND_FRACTION:
        warnings.append(
            QualityWarning(
                "mostly_foreground",
                f"{foreground:.0%} of the image is labelled as cells: a confluent layer or a "
                "bright background, where touching cells merge. Look at the overlay: merged "
                "cells make the count a lower bound; a lit-up background makes it meaningless",
            )
        )
    if ambiguous > MAX_AMBIGUOUS_FRACTION:
        warnings.append(
            QualityWarning(
                "ambiguous_foreground",
                f"{ambiguous:.0%} of the candidate foreground has a probability between "
                f"{AMBIGUOUS_LOW} and {AMBIGUOUS_HIGH}: the background lights up or the cells "
                "look unlike the training data. Look at the overlay: background counted as "
                "cells means an over-count; dim nuclei missing means an under-count "
                "(reject_unsure=false keeps them)",
            )
        )
    return Quality(
        diameter_px=None if diameter_px is None else round(diameter_px, 2),
        network_diameter_px=None if network_diameter is None else round(network_diameter, 2),
        trained_diameter_range_px=trained,
        ambiguous_fraction=round(ambiguous, 4),
        foreground_fraction=round(foreground, 4),
        warnings=warnings,
    )
