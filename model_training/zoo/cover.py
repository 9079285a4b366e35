"""The package's cover: the test image beside itself with the counted nuclei outlined.

The zoo shows covers at a 2:1 width-to-height ratio and asks for files under 500 KB; two
256-pixel panels side by side as an 8-bit RGB PNG is about a tenth of that. Plain numpy and
Pillow, so the cover needs nothing that matplotlib's fonts or backends could change.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

OUTLINE_RGB = (255, 220, 0)  # yellow, as the evaluation overlays draw predicted cells


def display_grey(image: np.ndarray) -> np.ndarray:
    """uint8 grey for display: the 1st-99.8th percentile stretched to 0-255, clipped."""
    low, high = np.percentile(image.astype(np.float64), [1.0, 99.8])
    scaled = (image.astype(np.float64) - low) / max(high - low, 1e-6)
    return (np.clip(scaled, 0.0, 1.0) * 255).round().astype(np.uint8)


def outlines(labels: np.ndarray) -> np.ndarray:
    """Pixels of a cell that touch another label (background or a neighbour): its rim."""
    eroded = ndimage.grey_erosion(labels, size=(3, 3), mode="nearest")
    dilated = ndimage.grey_dilation(labels, size=(3, 3), mode="nearest")
    return (labels > 0) & ((eroded != labels) | (dilated != labels))


def save_cover(image: np.ndarray, labels: np.ndarray, path: str | Path) -> None:
    """Write the 2:1 cover PNG: the image on the left, outlined on the right."""
    grey = display_grey(image)
    left = np.repeat(grey[..., None], 3, axis=2)
    right = left.copy()
    right[outlines(labels)] = OUTLINE_RGB
    Image.fromarray(np.concatenate([left, right], axis=1)).save(path, optimize=True)
