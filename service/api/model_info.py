"""What ``GET /model`` and every response say about the model being served."""

from __future__ import annotations

from service.api.schemas import ModelInfo, ModelSummary
from service.serving.state import ServiceState


def model_summary(state: ServiceState) -> ModelSummary:
    """Fixed once start-up has chosen the plan; echoed in every response."""
    record = state.loaded.record
    return ModelSummary(
        id=state.model_id,
        name=record.name,
        sha256=state.loaded.sha256,
        base_channels=record.base_channels,
        device=str(state.engine.device),
        precision=state.plan.precision,
    )


def model_info(state: ServiceState) -> ModelInfo:
    plan = state.plan
    return ModelInfo(
        id=state.model_id,
        path=str(state.loaded.path),
        sha256=state.loaded.sha256,
        device=str(state.engine.device),
        precision=plan.precision,
        channels_last=plan.channels_last,
        max_tile_size=state.tile,
        tile_margin=state.margin,
        max_batch_size=plan.max_batch_size,
        inference_workers=plan.workers,
        torchscript=plan.torchscript,
        plan_source=state.plan_source,
        plan_cache=str(state.plan_cache.path) if state.plan_cache else None,
        tuning=plan.measurements,
        trained_pixel_size_um=state.loaded.record.pixel_size_um,
        record=state.loaded.record.model_dump(),
    )
