"""Pixels to micrometres: which pixel size an image has, and what follows from it.

The ``pixel_size_um`` option wins over the file's metadata: a user who types it knows their
microscope, and metadata is sometimes a default the acquisition software wrote. A size from
the file that is not plausible (``service.pixel_sizes``) is not used: ``source`` is "ignored".
With a pixel size, ``diameter_um`` becomes pixels, and a checkpoint that recorded its training
pixel size sets the scale from the two sizes instead of the per-image estimate.
"""

from __future__ import annotations

from dataclasses import dataclass

from model_training.checkpoint import CheckpointRecord
from service.files.imaging import DecodedImage, ImageError
from service.options import CountOptions


@dataclass(frozen=True)
class PixelSize:
    um: float | None
    source: str | None  # "given", "metadata", "ignored" (the file's was implausible), or None
    ignored: str | None = None  # why the file's pixel size was not used

    def area_um2(self, pixels: float) -> float | None:
        return None if self.um is None else pixels * self.um**2

    def density_per_mm2(self, count: int, pixels: int) -> float | None:
        """Cells per mm^2 of the whole image."""
        area = self.area_um2(pixels)
        return None if not area else count / (area * 1e-6)


def pixel_size(options: CountOptions, decoded: DecodedImage) -> PixelSize:
    if options.pixel_size_um is not None:
        return PixelSize(options.pixel_size_um, "given")
    if decoded.pixel_size_um is not None:
        return PixelSize(decoded.pixel_size_um, "metadata")
    if decoded.pixel_size_ignored is not None:
        return PixelSize(None, "ignored", decoded.pixel_size_ignored)
    return PixelSize(None, None)


def requested_diameter(
    options: CountOptions,
    size: PixelSize,
    record: CheckpointRecord,
    bounds: tuple[float, float],
) -> tuple[float | str, str]:
    """The nucleus diameter in image pixels (or "auto") and where it came from."""
    if options.diameter_um is not None:
        if size.um is None:
            raise ImageError(
                422,
                "pixel_size_unknown",
                "diameter_um needs the pixel size, and the file's metadata gives none: send "
                "pixel_size_um, or diameter in pixels",
            )
        diameter = options.diameter_um / size.um
        low, high = bounds
        if not low <= diameter <= high:
            raise ImageError(
                422,
                "invalid_parameters",
                f"diameter_um: {options.diameter_um:g} um at {size.um:g} um per pixel is "
                f"{diameter:.3g} px, outside [{low:g}, {high:g}] px, the sizes this model can be "
                "rescaled to",
            )
        return diameter, "given"
    if options.diameter != "auto":
        return options.diameter, "given"
    if size.um is not None and record.pixel_size_um and record.nucleus_diameter_px:
        return record.nucleus_diameter_px * record.pixel_size_um / size.um, "pixel_size"
    return "auto", "auto"
