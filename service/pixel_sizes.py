"""Which pixel sizes are believed: a file's metadata is checked before any area is computed.

A pixel size from a file (OME ``PhysicalSizeX``, ImageJ resolution, CZI ``Scaling``, ND2
``dCalibration``, LIF ``Length``) is whatever the writer or a hostile sender put there: NaN,
0, negative, 1e300. Used as is, 1e300 overflows the area arithmetic (a 500) and NaN gives
densities made up from nothing. So a size is used only when it is a finite number within
:data:`PLAUSIBLE_UM`; any other is ignored, and the result says why.

1e-4 to 1e4 µm spans every light microscope pixel with a wide margin on both sides (an
electron micrograph's 0.1 nm pixel is 1e-4 µm; a slide scanner's overview 10-50 µm); within
it the largest image area (64 Mpx x 1e8 µm²) stays far below float overflow.
"""

from __future__ import annotations

import math

PLAUSIBLE_UM = (1e-4, 1e4)


def implausible(value: float) -> str | None:
    """Why ``value`` (µm per pixel) cannot be used; None when it can."""
    low, high = PLAUSIBLE_UM
    if not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
        return f"the file's pixel size ({value!r} µm) is not a finite positive number"
    if not low <= value <= high:
        return f"the file's pixel size ({value:g} µm) is outside the plausible {low:g}-{high:g} µm"
    return None


def checked(value: float | None) -> tuple[float | None, str | None]:
    """(the size to use, why it was ignored): (value, None), (None, reason) or (None, None)."""
    if value is None:
        return None, None
    reason = implausible(value)
    if reason is not None:
        return None, reason + "; it is ignored (send pixel_size_um to give one)"
    return float(value), None
