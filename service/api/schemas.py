"""Pydantic models of the API: the query of each endpoint and the JSON it answers."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from service.options import CountOptions


class CountQuery(CountOptions):
    """A misspelled option must fail loudly (422), not silently fall back to a default."""

    model_config = ConfigDict(extra="forbid")

    include_cells: bool = False
    include_mask: bool = False


class SegmentQuery(CountOptions):
    model_config = ConfigDict(extra="forbid")

    output: Literal["mask", "labels", "overlay"] = "mask"
    format: Literal["png", "tiff"] = Field(
        "png",
        description=(
            "png, or tiff: 32-bit labels for images of more than 65535 cells (a 16-bit PNG "
            "cannot hold them), with the pixel size as the TIFF resolution"
        ),
    )


class InspectQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    position: int | None = Field(
        None, ge=0, description="the position to describe, in a file that holds several"
    )


class Cell(BaseModel):
    id: int = Field(description="label of the cell in the labels PNG")
    area: int = Field(description="pixels")
    area_um2: float | None = Field(
        None, description="square micrometres, when the pixel size is known"
    )
    centroid: tuple[float, float] = Field(description="(x, y) in pixels")
    bbox: tuple[int, int, int, int] = Field(description="(x, y, width, height) in pixels")


class Timings(BaseModel):
    decode_ms: float
    queue_and_inference_ms: float
    postprocess_ms: float


class QualityWarningModel(BaseModel):
    code: str = Field(
        description=(
            "size_out_of_range, tiny_nuclei, enlargement_capped, mostly_foreground or "
            "ambiguous_foreground (docs/counting.md)"
        )
    )
    message: str


class QualityReport(BaseModel):
    """Signals that say when a count should not be trusted (docs/counting.md)."""

    diameter_px: float | None = Field(description="nucleus diameter used, in upload pixels")
    network_diameter_px: float | None = Field(
        description="median diameter of the segmented cells as the network saw them (resized)"
    )
    trained_diameter_range_px: tuple[float, float] | None = Field(
        description="per-image median diameters the model was trained on (5th-95th percentile)"
    )
    ambiguous_fraction: float = Field(
        description="share of candidate-foreground pixels with a probability between 0.2 and 0.8"
    )
    foreground_fraction: float = Field(description="share of the image labelled as cells")
    warnings: list[QualityWarningModel] = Field(
        description="empty when the image looks like what the model was validated on"
    )


class PlaneReport(BaseModel):
    """Where in the file the counted plane came from."""

    format: str = Field(description="png, jpeg, bmp, tiff, ome-tiff, imagej-tiff, czi, nd2 or lif")
    axes: str = Field(
        description="the file's axes and sizes, e.g. 'P=2, C=4, Z=5, Y=512, X=512' (P: positions)"
    )
    channel: int = Field(description="index of the counted channel")
    channel_name: str | None = Field(description="its name in the file's metadata")
    channel_source: Literal["only", "given", "nuclear_stain"] = Field(
        description="only: the file has one channel; given: the channel option; nuclear_stain: "
        "picked as the one channel named like a nuclear stain"
    )
    z: int | Literal["max"] | None = Field(description="the Z plane, 'max'; null: one plane")
    t: int | None = Field(description="the time point; null: the file has one")
    position: int | None = Field(
        description="the position (image, scene, XY point, series); null: the file has one"
    )


class ImageCount(BaseModel):
    filename: str
    count: int = Field(description="number of cells counted")
    width: int
    height: int
    plane: PlaneReport
    pixel_size_um: float | None = Field(description="micrometres per pixel; null: unknown")
    pixel_size_source: Literal["given", "metadata", "ignored"] | None = Field(
        description="the pixel_size_um option or the file's metadata; ignored: the file's was "
        "not a plausible size (a quality warning, pixel_size_ignored, says why) and none is used"
    )
    image_area_mm2: float | None = Field(
        description="area of the image, when the pixel size is known"
    )
    density_per_mm2: float | None = Field(description="cells per mm^2 of the image")
    mean_cell_area_um2: float | None = Field(description="mean area of the counted cells")
    diameter_um: float | None = Field(description="diameter_px in micrometres")
    tiles: int = Field(description="model tiles run for this image (both passes if refined)")
    threshold: float
    min_area: int
    split_touching: bool
    exclude_border: bool
    diameter_px: float | None = Field(
        description="nucleus diameter in upload pixels: estimated ('auto') or as given"
    )
    diameter_source: Literal["auto", "given", "pixel_size"] = Field(
        description="auto: estimated; given: diameter or diameter_um; pixel_size: the image's "
        "pixel size against the checkpoint's training pixel size"
    )
    scale: float = Field(description="resize factor the network saw the image at")
    scale_refined: bool = Field(
        description="a second pass ran at the size the first pass's cells had: the estimate "
        "had read packed nuclei as larger ones and shrunk the image too far"
    )
    scale_wanted: float | None = Field(
        None,
        description="the resize the nucleus size asked for, when the work caps (4x the "
        "upload's pixels, max_pixels, and work_budget_s of network time at this machine's "
        "speed) allowed less; null: not capped",
    )
    quality: QualityReport
    cells: list[Cell] | None = Field(None, description="with include_cells=true")
    mask_png_base64: str | None = Field(None, description="with include_mask=true: 0/255 PNG")
    timings: Timings


class ModelSummary(BaseModel):
    id: str = Field(description="checkpoint name and the first 12 hex digits of its sha256")
    name: str
    sha256: str
    base_channels: int
    device: str
    precision: str


class CountResponse(BaseModel):
    results: list[ImageCount]
    model: ModelSummary


class SegmentJSON(BaseModel):
    filename: str
    count: int
    width: int
    height: int
    plane: PlaneReport
    pixel_size_um: float | None
    density_per_mm2: float | None
    diameter_px: float | None
    scale: float
    quality: QualityReport
    output: str = Field(description="mask, labels or overlay")
    format: Literal["png", "tiff"]
    png_base64: str | None = Field(description="the image, with format=png")
    tiff_base64: str | None = Field(description="the image, with format=tiff")
    model: ModelSummary


class ModelInfo(BaseModel):
    id: str
    path: str
    sha256: str
    device: str
    precision: str
    channels_last: bool
    max_tile_size: int
    tile_margin: int
    max_batch_size: int
    inference_workers: int
    torchscript: bool = Field(description="the forward pass runs as a frozen TorchScript graph")
    plan_source: Literal["measured", "cache", "pinned"] = Field(
        description="where the plan above came from: measured at this start-up, read from the "
        "plan cache, or pinned by settings (CELLCOUNT_WARMUP=false)"
    )
    plan_cache: str | None = Field(
        description="the plan cache file of this checkpoint, device and settings; null: off"
    )
    tuning: list[dict[str, Any]] = Field(description="the warm-up measurements behind the choices")
    trained_pixel_size_um: float | None = Field(
        description="pixel size of the training images; null: the training data recorded none "
        "(DSB2018 did not), so an image's pixel size gives areas and densities but does not set "
        "its scale: the per-image size estimate (or diameter / diameter_um) does"
    )
    record: dict[str, Any] = Field(description="the checkpoint's own record")


class ChannelInfo(BaseModel):
    index: int
    name: str | None = Field(description="the name in the file's metadata")
    nuclear_stain: bool = Field(description="named like a nuclear stain (DAPI, Hoechst, ...)")


class FileInfo(BaseModel):
    """What ``POST /inspect`` found in a file, read from its header and metadata only."""

    filename: str
    format: str = Field(description="png, jpeg, bmp, tiff, ome-tiff, imagej-tiff, czi, nd2 or lif")
    axes: str = Field(description="axes and sizes, e.g. 'P=2, C=4, Z=5, Y=512, X=512'")
    positions: int = Field(description="images, scenes, XY points or series in the file")
    position: int | None = Field(description="the position described; null: the file has one")
    time_points: int
    z_planes: int
    height: int
    width: int
    channels: list[ChannelInfo]
    default_channel: int | None = Field(
        description="the channel counted without a channel option; null: one must be chosen"
    )
    pixel_size_um: float | None = Field(description="from the metadata; null: none")
    pixel_size_ignored: str | None = Field(
        None, description="why the file's pixel size is not used (not a plausible size)"
    )
    needs: list[str] = Field(
        description="the options a count of this file must give (channel, position, t, z)"
    )


class ErrorDetail(BaseModel):
    code: str = Field(description="stable machine-readable error code")
    message: str = Field(description="what was wrong, in words")
    filename: str | None = Field(None, description="the refused upload, for file errors")


class ErrorResponse(BaseModel):
    error: ErrorDetail


class Health(BaseModel):
    status: str
