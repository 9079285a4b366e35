"""Pydantic models of the API: what clients send as options and get back as JSON."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class CountOptions(BaseModel):
    """Per-request post-processing; ``None`` means the checkpoint's calibrated value."""

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
            "drop objects whose probability never comes near 1 in images whose background "
            "lights up, and specks far smaller than the image's nuclei (the checkpoint's "
            "calibrated rejection); false counts every object above the threshold"
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


class CountQuery(CountOptions):
    """A misspelled option must fail loudly (422), not silently fall back to a default."""

    model_config = ConfigDict(extra="forbid")

    include_cells: bool = False
    include_mask: bool = False


class SegmentQuery(CountOptions):
    model_config = ConfigDict(extra="forbid")

    output: Literal["mask", "labels", "overlay"] = "mask"


class Cell(BaseModel):
    id: int = Field(description="label of the cell in the labels PNG")
    area: int = Field(description="pixels")
    centroid: tuple[float, float] = Field(description="(x, y) in pixels")
    bbox: tuple[int, int, int, int] = Field(description="(x, y, width, height) in pixels")


class Timings(BaseModel):
    decode_ms: float
    queue_and_inference_ms: float
    postprocess_ms: float


class QualityWarningModel(BaseModel):
    code: str = Field(
        description=(
            "size_out_of_range, tiny_nuclei, mostly_foreground or ambiguous_foreground "
            "(docs/counting.md)"
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


class ImageCount(BaseModel):
    filename: str
    count: int = Field(description="number of cells counted")
    width: int
    height: int
    tiles: int = Field(description="model tiles this image was cut into")
    threshold: float
    min_area: int
    split_touching: bool
    exclude_border: bool
    diameter_px: float | None = Field(
        description="nucleus diameter in upload pixels: estimated ('auto') or as given"
    )
    diameter_source: Literal["auto", "given"]
    scale: float = Field(description="resize factor the network saw the image at")
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
    diameter_px: float | None
    scale: float
    quality: QualityReport
    output: str = Field(description="mask, labels or overlay")
    png_base64: str
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
    record: dict[str, Any] = Field(description="the checkpoint's own record")


class ErrorDetail(BaseModel):
    code: str = Field(description="stable machine-readable error code")
    message: str = Field(description="what was wrong, in words")
    filename: str | None = Field(None, description="the refused upload, for file errors")


class ErrorResponse(BaseModel):
    error: ErrorDetail


class Health(BaseModel):
    status: str
