"""The checkpoint format: one ``.safetensors`` file, weights plus a JSON record in its header.

safetensors holds raw tensors and a string-to-string metadata map, so loading a checkpoint can
never execute code (unlike pickle-based ``torch.load``). The record under the ``cellcount`` key
carries everything a server needs to reproduce training-time behaviour: architecture, tile
geometry, normalization, decision threshold and minimum object area, plus provenance and the
test metrics for the model card.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch
from pydantic import BaseModel, Field, ValidationError, ValidationInfo, field_validator
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from model_training.normalization import PercentileNormalization
from model_training.unet import SIZE_MULTIPLE, UNet

FORMAT = "cellcount-unet/1"
METADATA_KEY = "cellcount"


class CheckpointError(ValueError):
    """A file that is not a readable cellcount checkpoint; the message says why."""


class Rejection(BaseModel):
    """Which objects that pass the threshold are still not counted (``counting.reject_unsure``).

    Objects whose probability never reaches ``min_peak_probability`` are dropped, in images
    whose share of ambiguous candidate foreground exceeds ``when_ambiguous_above`` (0: in
    every image), and so are objects below ``min_relative_area`` of the nucleus size.
    Calibrated on the out-of-domain validation sets; the defaults turn it off.
    """

    min_peak_probability: float = Field(default=0.0, ge=0.0, lt=1.0)
    when_ambiguous_above: float = Field(default=0.0, ge=0.0, le=1.0)
    # Objects smaller than this share of a disc of the image's nucleus diameter are dropped
    # (debris specks, texture crumbs), in every image with a size estimate.
    min_relative_area: float = Field(default=0.0, ge=0.0, le=1.0)


class CheckpointRecord(BaseModel):
    """What a checkpoint knows about itself."""

    format: str = FORMAT
    name: str = "unet"
    base_channels: int = Field(ge=1)
    in_channels: int = 1
    tile_size: int = Field(default=256, ge=16)
    tile_overlap: int = Field(default=32, ge=0)
    normalization: PercentileNormalization = PercentileNormalization()
    threshold: float = Field(default=0.5, gt=0.0, lt=1.0)
    min_area: int = Field(default=0, ge=0)
    # The object size the network learnt (scale-aware counting brings every image to it):
    # median equivalent diameter (2*sqrt(area/pi)) of the training nuclei, all sources pooled,
    # and the 5th-95th percentile of the per-image medians, i.e. the sizes training covered.
    # None: unknown (a checkpoint from before these fields), which disables the resizing.
    rejection: Rejection = Rejection()
    nucleus_diameter_px: float | None = Field(default=None, gt=0)
    diameter_range_px: tuple[float, float] | None = None
    # Micrometres per pixel of the training images, when the data recorded one. Known, it
    # sets the scale of an image whose own pixel size is known; None (DSB2018 records none)
    # leaves the scale to the per-image size estimate.
    pixel_size_um: float | None = Field(default=None, gt=0)
    data: dict[str, Any] = Field(default_factory=dict)
    training: dict[str, Any] = Field(default_factory=dict)
    metrics: dict[str, Any] = Field(default_factory=dict)
    code_version: str = "unknown"
    created: str = ""

    @field_validator("tile_size", "tile_overlap")
    @classmethod
    def _whole_poolings(cls, value: int, info: ValidationInfo) -> int:
        """Refused here, at load: a tile or overlap the U-Net's poolings cannot halve evenly
        would otherwise load fine and then fail every image with a 500."""
        if value % SIZE_MULTIPLE:
            raise ValueError(
                f"{info.field_name} must be a multiple of {SIZE_MULTIPLE} "
                f"(the U-Net pools {SIZE_MULTIPLE}x), got {value}"
            )
        return value


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file, read in 1 MiB blocks: a checkpoint's identity (what a deployment pins,
    what a fine-tune records of its parent, what a feature cache is keyed by)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def save_checkpoint(path: str | Path, model: torch.nn.Module, record: CheckpointRecord) -> None:
    """Write weights and record atomically (a crash never leaves a half-written checkpoint)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = getattr(model, "module", model)  # unwrap DistributedDataParallel
    tensors = {
        key: value.detach().to("cpu", torch.float32).contiguous()
        for key, value in model.state_dict().items()
    }
    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, str(tmp), metadata={METADATA_KEY: record.model_dump_json()})
    tmp.replace(path)


def read_record(path: str | Path) -> CheckpointRecord:
    """Read only the header record, without loading any weights."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
    except (SafetensorError, OSError, ValueError) as error:
        raise CheckpointError(f"{path} is not a valid safetensors file: {error}") from error
    if METADATA_KEY not in metadata:
        raise CheckpointError(f"{path} has no '{METADATA_KEY}' record in its safetensors header")
    try:
        record = CheckpointRecord.model_validate(json.loads(metadata[METADATA_KEY]))
    except (json.JSONDecodeError, ValidationError) as error:
        raise CheckpointError(f"{path} carries an invalid record: {error}") from error
    if record.format != FORMAT:
        raise CheckpointError(f"{path} has format {record.format!r}, expected {FORMAT!r}")
    return record


def load_checkpoint(
    path: str | Path, device: str | torch.device = "cpu"
) -> tuple[UNet, CheckpointRecord]:
    """Build the network the record describes and fill it with the file's weights."""
    record = read_record(path)
    try:
        tensors = load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError) as error:
        raise CheckpointError(f"cannot read the weights of {path}: {error}") from error
    model = UNet(base_channels=record.base_channels, in_channels=record.in_channels)
    try:
        model.load_state_dict(tensors, strict=True)
    except RuntimeError as error:
        raise CheckpointError(
            f"{path}: weights do not match a UNet(base_channels={record.base_channels}): {error}"
        ) from error
    return model.to(device).eval(), record


def update_record(path: str | Path, **changes: Any) -> CheckpointRecord:
    """Rewrite a checkpoint's record (e.g. to add test metrics), keeping its weights bit-exact."""
    model, record = load_checkpoint(path)
    updated = record.model_copy(update=changes)
    save_checkpoint(path, model, updated)
    return updated
