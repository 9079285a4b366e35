"""Reading microscopy images and masks from disk into plain numpy arrays.

Microscopy data arrives as 8- or 16-bit PNG or TIFF, grayscale or RGB(A) (DSB2018 stores
grayscale as RGBA with equal channels). Everything downstream wants one 2-D intensity plane, so
the conversion lives here, once.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tifffile
from PIL import Image
from scipy import ndimage

IMAGE_SUFFIXES = (".png", ".tif", ".tiff", ".jpg", ".jpeg", ".bmp")
# Microscope files the service reads besides IMAGE_SUFFIXES (CZI, ND2, LIF need its extra).
VENDOR_SUFFIXES = (".czi", ".nd2", ".lif")
TIFF_SUFFIXES = (".tif", ".tiff")


def read_array(path: str | Path) -> np.ndarray:
    """Decode a file into its native array (dtype and channels preserved)."""
    path = Path(path)
    if path.suffix.lower() in TIFF_SUFFIXES:
        return np.asarray(tifffile.imread(path))
    with Image.open(path) as image:
        if image.mode == "P":
            image = image.convert("RGBA")
        return np.asarray(image)


def to_grayscale(array: np.ndarray) -> np.ndarray:
    """One float32 intensity plane from gray, gray+alpha, RGB or RGBA data.

    Alpha is dropped (it carries no fluorescence signal); colour channels are averaged, which for
    the common case of equal channels returns the original values unchanged.
    """
    array = np.asarray(array)
    if array.ndim == 2:
        return array.astype(np.float32, copy=False)
    if array.ndim == 3 and array.shape[-1] in (2, 3, 4):
        colour = array[..., :1] if array.shape[-1] == 2 else array[..., :3]
        return colour.astype(np.float32).mean(axis=-1)
    raise ValueError(
        f"expected a 2-D image or an (H, W, C) image with 2-4 channels, got shape {array.shape}"
    )


def read_image(path: str | Path) -> np.ndarray:
    """Read an image as one float32 plane in its original intensity units."""
    return to_grayscale(read_array(path))


def read_labels(path: str | Path) -> np.ndarray:
    """Read a mask as int32 instance labels (0 = background).

    Instance-label masks (more than one non-zero value) are kept as they are; binary masks (one
    non-zero value, e.g. 0/255) are split into connected components, the best available
    approximation of their instances.
    """
    mask = read_array(path)
    if mask.ndim == 3:
        mask = mask[..., 0]
    values = np.unique(mask)
    nonzero = values[values != 0]
    if nonzero.size <= 1:
        labels, _ = ndimage.label(mask != 0, structure=np.ones((3, 3), dtype=bool))
        return labels.astype(np.int32)
    return mask.astype(np.int32)


def list_images(folder: str | Path) -> list[Path]:
    """Image files of a folder, sorted by name, hidden files skipped."""
    folder = Path(folder)
    return sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")
    )
