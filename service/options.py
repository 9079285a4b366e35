"""The options of a count, shared by every layer: the API parses them from the query, the
pipeline counts by them and the readers choose a plane and a pixel size from them."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field

from service.pixel_sizes import PLAUSIBLE_UM


class CountOptions(BaseModel):
    """Per-request options: which plane, its pixel size, and the post-processing; ``None``
    means the file's own metadata or the checkpoint's calibrated value."""

    channel: Annotated[int, Field(ge=0)] | Annotated[str, Field(max_length=200)] | None = Field(
        None,
        description=(
            "the channel to count: an index (0-based) or a channel name from the file's "
            "metadata (case and spaces ignored, e.g. 'dapi' or 'Hoechst 33342'). Without it a "
            "file of several channels is counted on the one channel named like a nuclear "
            "stain (DAPI, Hoechst, DRAQ5, ...), else it gets a 422 that lists its channels"
        ),
    )
    z: Literal["max"] | Annotated[int, Field(ge=0)] | None = Field(
        None,
        description="the Z plane of a z-stack (0-based), or 'max' for the maximum projection",
    )
    t: int | None = Field(None, ge=0, description="the time point of a time series (0-based)")
    position: int | None = Field(
        None,
        ge=0,
        description=(
            "the position of a file that holds several (0-based): an OME-TIFF's image, a CZI "
            "scene, an ND2 XY point, a LIF series"
        ),
    )
    pixel_size_um: float | None = Field(
        None,
        ge=PLAUSIBLE_UM[0],
        le=PLAUSIBLE_UM[1],
        allow_inf_nan=False,
        description=(
            "pixel size in micrometres (1e-4 to 1e4); wins over the file's metadata (OME, "
            "ImageJ, CZI, ND2, LIF). When known, results give areas in um^2 and the density "
            "per mm^2"
        ),
    )
    diameter_um: float | None = Field(
        None,
        gt=0,
        le=10_000,
        description=(
            "typical nucleus diameter in micrometres, instead of 'diameter' in pixels; needs "
            "the pixel size (metadata or pixel_size_um)"
        ),
    )

    threshold: float | None = Field(
        None, gt=0.0, lt=1.0, description="probability above which a pixel is cell"
    )
    min_area: int | None = Field(
        None, ge=0, le=1_000_000, description="smallest object, in pixels, counted as a cell"
    )
    split_touching: bool = Field(
        False, description="split clumps along the distance-transform watershed"
    )
    exclude_border: bool = Field(False, description="do not count cells cut by the image edge")
    reject_unsure: bool = Field(
        True,
        description=(
            "apply the checkpoint's rejection rules: specks far smaller than the image's "
            "nuclei (the shipped checkpoint), and where its record asks for it, objects whose "
            "probability never comes near 1 in images whose background lights up; false "
            "counts every object above the threshold"
        ),
    )
    diameter: Literal["auto"] | Annotated[float, Field(gt=0, le=100_000)] = Field(
        "auto",
        description=(
            "typical nucleus diameter in pixels of the upload: 'auto' estimates it per image; a "
            "number pins it and skips the estimate. The image is resized so that nuclei reach "
            "the size the model was trained at; GET /model gives the allowed range"
        ),
    )
