"""A decoded upload before one plane is chosen: named axes, channel names, pixel size.

Readers open one position of a multi-position file (``position``, 0 by default) and say how many
there are, so the choice of position is refused or accepted with the other choices.

Every reader (PIL for PNG/JPEG/BMP, tifffile for TIFF, OME-TIFF and ImageJ hyperstacks, the
optional vendor readers for CZI, ND2 and LIF) produces an :class:`ImageStack`. Choosing the plane
(``service.files.planes``) is then the same for all of them. Planes are read on demand, one at a
time, so a 20-plane z-stack held in a compressed file never sits in memory as a whole.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from service.pixel_sizes import checked

# Axes a stack may have besides Y and X, in the order results and errors name them.
PLANE_AXES = ("T", "C", "Z")


@dataclass(frozen=True)
class ImageStack:
    """What a reader learnt from a file's header, plus a way to read one plane.

    ``sizes`` has T, C and Z (each at least 1), ``height`` and ``width`` are Y and X.
    ``read_plane(t, c, z)`` returns that plane as (Y, X), or (Y, X, S) for colour samples
    (RGB(A), which stays one stain as before: the channel mean, or one channel when equal).
    ``channel_names`` has one entry per C (None where the file names none).
    ``pixel_size_um`` is the X pixel size from the file's metadata, None when it gives none;
    a reader passes what the file says, and a size that is not plausible becomes None here,
    with ``pixel_size_ignored`` saying why (``service.pixel_sizes``).
    """

    format: str  # png, jpeg, bmp, tiff, ome-tiff, imagej-tiff, czi, nd2, lif
    sizes: dict[str, int]
    height: int
    width: int
    read_plane: Callable[[int, int, int], np.ndarray]
    channel_names: tuple[str | None, ...] = (None,)
    pixel_size_um: float | None = None
    # Positions (OME images, CZI scenes, ND2 XY points, LIF series) in the file; the stack is
    # the one the reader was asked for, or the first when the ask was out of range.
    positions: int = 1
    pixel_size_ignored: str | None = None
    # Bytes one read_plane call decodes (the whole page or frame it comes from: an ND2 frame
    # holds every channel); 0 when the reader cannot say, and then Y x X x 8 is assumed.
    plane_bytes: int = 0

    def __post_init__(self) -> None:
        if self.pixel_size_ignored is None:
            size, why = checked(self.pixel_size_um)
            object.__setattr__(self, "pixel_size_um", size)
            object.__setattr__(self, "pixel_size_ignored", why)
        for axis in PLANE_AXES:
            self.sizes.setdefault(axis, 1)
        if len(self.channel_names) != self.sizes["C"]:  # a file whose names do not add up
            object.__setattr__(self, "channel_names", (None,) * self.sizes["C"])

    @property
    def decoded_bytes(self) -> int:
        """What reading one plane costs, for the per-upload ceiling."""
        return self.plane_bytes or self.height * self.width * 8

    @property
    def planes(self) -> int:
        return self.sizes["T"] * self.sizes["C"] * self.sizes["Z"]

    def describe_axes(self) -> str:
        """``P=2, T=3, C=4, Z=5, Y=512, X=512``: the axes of more than one, then Y and X."""
        parts = [f"{axis}={self.sizes[axis]}" for axis in PLANE_AXES if self.sizes[axis] > 1]
        if self.positions > 1:
            parts.insert(0, f"P={self.positions}")
        return ", ".join([*parts, f"Y={self.height}", f"X={self.width}"])


def single_plane(array: np.ndarray, fmt: str) -> ImageStack:
    """A stack of one plane already in memory (PNG, JPEG, BMP, a one-page TIFF)."""
    return ImageStack(
        format=fmt,
        sizes={},
        height=int(array.shape[0]),
        width=int(array.shape[1]),
        read_plane=lambda t, c, z: array,
        plane_bytes=int(array.nbytes),
    )
