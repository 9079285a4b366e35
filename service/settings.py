"""Service settings, read once from ``CELLCOUNT_*`` environment variables.

Every knob that an operator may need is here with a safe default; ``None`` for the batcher
geometry means "measure it on this device at warm-up" (see ``service.serving.tuning``).
"""

from __future__ import annotations

import json
import os
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CHECKPOINT = PROJECT_ROOT / "weights" / "unet32.safetensors"
# Bytes of planes one upload may decode (CELLCOUNT_MAX_DECODED_BYTES), checked by
# service.files.planes before any plane is decoded.
DEFAULT_MAX_DECODED_BYTES = 2 * 1024**3


def default_plan_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/cellcount``, else ``~/.cache/cellcount`` (the XDG default)."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "cellcount"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CELLCOUNT_", extra="ignore")

    checkpoint: Path = Field(DEFAULT_CHECKPOINT, description="the .safetensors checkpoint to serve")
    checkpoint_sha256: str | None = Field(
        None, description="refuse to start unless the checkpoint file has this sha256"
    )
    device: Literal["auto", "cpu", "cuda"] = "auto"
    precision: Literal["auto", "fp32", "bf16"] = Field(
        "auto",
        description="auto: bf16 where the device runs it natively and its masks agree with fp32",
    )
    channels_last: bool | None = Field(None, description="None: on wherever it is faster")
    torchscript: Literal["auto"] | bool = Field(
        "auto",
        description="run the forward pass as a frozen TorchScript graph, checked against eager at "
        "start-up (eager if it differs). auto: only where warm-up measures it no slower than eager "
        "(it holds the GIL once per pass, not per operator, but on some CPUs its kernels are "
        "slower); true: whenever it agrees; false: never",
    )
    max_batch_size: int | None = Field(None, ge=1, le=1024, description="None: measured")
    inference_workers: int | None = Field(None, ge=1, le=16, description="None: measured")
    max_wait_ms: float = Field(2.0, ge=0.0, le=1000.0)
    cpu_threads: int | None = Field(
        None, ge=1, le=64, description="threads decoding and post-processing; None: the cores"
    )
    queue_limit: int = Field(2048, ge=1, description="pending tiles before 503")
    request_timeout_s: float = Field(
        60.0,
        gt=0.0,
        description="a request not answered by then gets a 504; one expected to take longer "
        "(the work queued ahead plus its own) is refused at once with a 503 and Retry-After",
    )
    work_budget_s: float = Field(
        15.0,
        gt=0.0,
        description="network seconds, at this machine's measured speed, that an enlargement "
        "or a second pass at a better size may bring one image to; past it the image is "
        "resized less, and the result says so (enlargement_capped). An upload counted at its "
        "own size is never shrunk to fit",
    )
    inference_delay_ms: float = Field(
        0.0,
        ge=0.0,
        le=60_000.0,
        description="extra milliseconds per tile in every forward pass: a slower machine "
        "through the real engine, for capacity drills and tests of overload and shutdown; "
        "0 in production",
    )
    max_tile_size: int = Field(
        1024,
        ge=64,
        le=4096,
        description="images up to this side are one tile; larger ones are cut into equal tiles",
    )
    tile_margin: int | None = Field(None, ge=0, le=512, description="None: checkpoint's")
    max_upload_bytes: int = Field(64 * 1024**2, ge=1)
    max_request_bytes: int = Field(256 * 1024**2, ge=1)
    max_pixels: int = Field(64 * 1024**2, ge=1, description="per image, checked before decoding")
    max_decoded_bytes: int = Field(
        DEFAULT_MAX_DECODED_BYTES,
        ge=1,
        description="bytes of planes one upload may decode (a z=max projection decodes every Z "
        "plane), checked from the header before decoding: 413 past it",
    )
    # The network's estimate by default where the checkpoint has one: image statistics read
    # grainy chromatin, specks, packing, defocus and tissue texture as nuclei; on the real sets
    # the two count alike (docs/counting.md, "Size from the network").
    size_estimate: Literal["auto", "network", "statistics"] = Field(
        "auto",
        description="how an 'auto' nucleus size is estimated: auto (the network when the "
        "checkpoint has a size model, <stem>.size.json beside it, else image statistics), "
        "network (that size model, or refuse to start), statistics (image statistics only)",
    )
    max_files: int = Field(64, ge=1)
    warmup: bool = Field(True, description="run warm-up batches (and the tuning) at start-up")
    plan_cache_dir: Path | None = Field(
        default_factory=default_plan_cache_dir,
        description="where measured inference plans are kept, so a restart with the same "
        "checkpoint, device, torch, cores and tuning settings skips measuring; empty: off",
    )
    api_key: SecretStr | None = Field(
        None, description="when set, the API requires 'Authorization: Bearer <key>'"
    )
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="origins allowed to call the API from a browser (JSON list or comma list)",
    )

    @field_validator("api_key")
    @classmethod
    def _no_empty_key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value():
            return None
        return value

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _comma_list(cls, value: object) -> object:
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                return json.loads(text)
            return [item.strip() for item in text.split(",") if item.strip()]
        return value

    @field_validator("plan_cache_dir", mode="before")
    @classmethod
    def _empty_disables(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("checkpoint_sha256")
    @classmethod
    def _lower_hex(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        value = value.strip().lower()
        if len(value) != 64 or any(c not in "0123456789abcdef" for c in value):
            raise ValueError("checkpoint_sha256 must be 64 hexadecimal characters")
        return value

    @model_validator(mode="after")
    def _geometry(self) -> Settings:
        if self.max_tile_size % 16:
            raise ValueError(f"max_tile_size must be a multiple of 16, got {self.max_tile_size}")
        if self.tile_margin is not None and self.tile_margin % 16:
            raise ValueError(f"tile_margin must be a multiple of 16, got {self.tile_margin}")
        margin = self.tile_margin
        if margin is not None and self.max_tile_size - 2 * margin < 16:
            raise ValueError("max_tile_size must exceed twice tile_margin by at least 16")
        return self


@lru_cache
def get_settings() -> Settings:
    return Settings()
