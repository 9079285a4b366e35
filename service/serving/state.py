"""Start-up and shutdown of the serving machinery, and the object the routes depend on.

Start-up order: resolve the device, verify and load the checkpoint, choose the inference plan
(read from the plan cache, measured, or pinned by settings) and apply it to the engine once,
start the batcher, push one warm-up image through the whole path, and only then report ready.
Each step is logged with its duration. Any failure stops start-up with a message that says what
to fix; the service never runs half-working.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial

import numpy as np
import torch

from model_training.checkpoint import CheckpointError, CheckpointRecord
from model_training.scale import SizeEstimate
from model_training.size_model import SizeModel, network_diameter, size_model_path
from service.options import CountOptions
from service.serving.batcher import TileBatcher
from service.serving.drain import on_shutdown
from service.serving.engine import (
    InferenceEngine,
    LoadedModel,
    available_cores,
    load_model,
    resolve_device,
)
from service.serving.metrics import ServiceMetrics
from service.serving.pipeline import CountingPipeline
from service.serving.plan import InferencePlan, PlanCache, PlanSource, device_name
from service.serving.tuning import log_plan, pinned_plan, plan_inference, sample_tiles
from service.settings import Settings

log = logging.getLogger("cellcount.service")


@dataclass
class ServiceState:
    settings: Settings
    loaded: LoadedModel
    engine: InferenceEngine
    plan: InferencePlan
    batcher: TileBatcher
    pipeline: CountingPipeline
    metrics: ServiceMetrics
    tile: int
    margin: int
    plan_source: PlanSource
    plan_cache: PlanCache | None
    ready: bool = False
    unsubscribe_drain: Callable[[], None] = lambda: None

    @property
    def model_id(self) -> str:
        """``name@sha256[:12]``: the checkpoint as responses and logs name it."""
        return f"{self.loaded.record.name}@{self.loaded.sha256[:12]}"


class _Step:
    """One logged start-up step; ``detail`` says what it found."""

    def __init__(self, name: str) -> None:
        self.name, self.detail = name, ""


@contextmanager
def _step(name: str) -> Iterator[_Step]:
    step, started = _Step(name), time.perf_counter()
    yield step
    seconds = time.perf_counter() - started
    took = f"{seconds * 1e3:.0f} ms" if seconds < 1 else f"{seconds:.1f} s"
    log.info("start-up: %s%s in %s", step.name, f" ({step.detail})" if step.detail else "", took)


def plan_cache_for(settings: Settings, sha256: str, device: torch.device) -> PlanCache | None:
    """The cache entry for this checkpoint, machine and the settings that steer tuning."""
    if settings.plan_cache_dir is None:
        return None
    key = {
        "checkpoint_sha256": sha256,
        "device": str(device),
        "device_name": device_name(device),
        "torch": torch.__version__,
        "cores": available_cores(),
        **settings.model_dump(
            include={
                "precision",
                "channels_last",
                "max_batch_size",
                "inference_workers",
                "torchscript",
            }
        ),
    }
    return PlanCache(settings.plan_cache_dir, key)


def choose_plan(
    settings: Settings, engine: InferenceEngine, record: CheckpointRecord, cache: PlanCache | None
) -> tuple[InferencePlan, PlanSource]:
    """Pinned (no warm-up), cached, or measured now; applied to the engine exactly once.

    A cached plan still traces and checks its TorchScript graph (a fraction of a second); where
    that fails on this start, the plan is measured afresh rather than served half-true.
    """
    tiles = sample_tiles(record.tile_size, record.normalization, 2)
    if not settings.warmup:
        plan = pinned_plan(
            engine.device,
            settings.precision,
            settings.channels_last,
            settings.max_batch_size,
            settings.inference_workers,
            settings.torchscript,
        )
        _apply_or_eager(engine, plan, tiles)
        return plan, "pinned"
    cached = cache.load() if cache is not None else None
    if cached is not None:
        try:
            engine.apply(cached, tiles)
            return cached, "cache"
        except Exception as error:  # GraphMismatch or any tracing failure
            log.warning("cached plan's TorchScript graph failed (%s): measuring afresh", error)
    plan = plan_inference(
        engine,
        record.tile_size,  # measured on training-crop tiles, the plan's unit
        record.threshold,
        record.normalization,
        settings.precision,
        settings.channels_last,
        settings.max_batch_size,
        settings.inference_workers,
        settings.torchscript,
    )
    engine.apply(plan, tiles)  # the graph, if adopted, was traced and checked while measuring
    if cache is not None:
        cache.store(plan)
    return plan, "measured"


def _apply_or_eager(engine: InferenceEngine, plan: InferencePlan, tiles: np.ndarray) -> None:
    """Apply a pinned plan; a graph that fails to trace or to match leaves it eager."""
    try:
        difference = engine.apply(plan, tiles)
    except Exception as error:
        log.warning("TorchScript graph not used: %s", error)
        plan.torchscript = False
        plan.measurements.append({"check": "torchscript", "adopted": False, "reason": str(error)})
        engine.apply(plan, tiles)
        return
    if plan.torchscript:
        plan.measurements.append(
            {"check": "torchscript", "adopted": True, "max_probability_difference": difference}
        )


def seed_seconds_per_pixel(plan: InferencePlan, tile_size: int) -> float:
    """One worker's seconds per pixel in the plan's measured throughput at its chosen batch
    and workers (the batcher's first estimate; 1e-6 where nothing was measured)."""
    for row in plan.measurements:
        if row.get("batch") == plan.max_batch_size and row.get("workers") == plan.workers:
            rate = float(row.get("tiles_per_second", 0.0))
            if rate > 0:
                return plan.workers / (rate * tile_size**2)
    return 1e-6


def _plan_detail(source: PlanSource, cache: PlanCache | None) -> str:
    if source == "pinned":
        return "pinned by settings, not measured"
    if cache is None:
        return "measured, plan cache off"
    return f"read from {cache.path}" if source == "cache" else f"measured, stored in {cache.path}"


def size_estimator(
    settings: Settings, loaded: LoadedModel
) -> Callable[[np.ndarray], SizeEstimate] | None:
    """The network's size estimate when the settings and the checkpoint allow it; None: image
    statistics. The probe runs the eager model in the CPU pool (one batch of 64x64 windows),
    beside the batcher's workers: a few percent of a forward pass (docs/counting.md)."""
    path = size_model_path(loaded.path)
    if settings.size_estimate == "statistics":
        log.info("size estimate: image statistics (CELLCOUNT_SIZE_ESTIMATE=statistics)")
        return None
    if not path.is_file():
        if settings.size_estimate == "network":
            raise CheckpointError(f"CELLCOUNT_SIZE_ESTIMATE=network, but there is no {path}")
        log.warning("size estimate: image statistics, the checkpoint has no size model %s", path)
        return None
    size_model = SizeModel.load(path)
    log.info("size estimate: the network's, %s", path.name)
    return partial(network_diameter, loaded.model, size_model)


async def start_service(settings: Settings) -> ServiceState:
    started = time.perf_counter()
    with _step("resolve device") as step:
        device = resolve_device(settings.device)
        step.detail = str(device)
    with _step("load and verify checkpoint") as step:
        loaded = load_model(settings.checkpoint, settings.checkpoint_sha256, device)
        record = loaded.record
        step.detail = f"{loaded.path.name}, sha256 {loaded.sha256[:12]}"
    tile = settings.max_tile_size
    margin = settings.tile_margin if settings.tile_margin is not None else record.tile_overlap
    if tile - 2 * margin < 16:
        raise ValueError(f"tile {tile} with margin {margin} leaves no centre to keep")
    engine = InferenceEngine(loaded.model, device)
    cache = plan_cache_for(settings, loaded.sha256, device)
    with _step("plan inference") as step:
        plan, source = choose_plan(settings, engine, record, cache)
        step.detail = _plan_detail(source, cache)
    log_plan(plan)
    metrics = ServiceMetrics()
    with _step("start batcher") as step:
        batcher = TileBatcher(
            engine,
            plan.max_batch_size,
            settings.max_wait_ms,
            plan.workers,
            settings.queue_limit,
            on_batch=metrics.observe_batch,
            # The plan counts tiles of the training crop size; bigger tiles fill a batch sooner.
            batch_pixels=plan.max_batch_size * record.tile_size**2,
            seconds_per_pixel=seed_seconds_per_pixel(plan, record.tile_size),
            on_refusal=metrics.observe_refusal,
        )
        metrics.track_queue(lambda: batcher.pending, batcher.expected_wait)
        await batcher.start()
        pipeline = CountingPipeline(
            record,
            batcher,
            tile,
            margin,
            settings.max_pixels,
            cpu_threads=settings.cpu_threads or max(2, available_cores()),
            metrics=metrics,
            max_decoded_bytes=settings.max_decoded_bytes,
            size_estimator=size_estimator(settings, loaded),
            work_budget_s=settings.work_budget_s,
        )
        step.detail = f"{plan.workers} worker(s), batches of up to {plan.max_batch_size}"
    state = ServiceState(
        settings, loaded, engine, plan, batcher, pipeline, metrics, tile, margin, source, cache
    )
    if settings.warmup:
        with _step("warm-up image"):
            await _warm_up(state)
    engine.delay_per_tile_s = settings.inference_delay_ms / 1000.0
    startup_s = time.perf_counter() - started
    state.unsubscribe_drain = on_shutdown(
        lambda grace_s: batcher.drain(grace_s, retry_after_s=startup_s)
    )
    state.ready = True
    log.info(
        "ready: %s on %s (%s) in %.1f s",
        state.model_id,
        device,
        plan.precision,
        time.perf_counter() - started,
    )
    return state


async def _warm_up(state: ServiceState) -> None:
    """One real image through normalization, tiles, batcher, stitching and counting."""
    (plane,) = sample_tiles(state.loaded.record.tile_size, state.loaded.record.normalization, 1)
    deadline = time.monotonic() + max(60.0, state.settings.request_timeout_s)
    await state.pipeline.count_plane(plane, CountOptions(), deadline)


async def stop_service(state: ServiceState) -> None:
    state.ready = False
    state.unsubscribe_drain()
    await state.batcher.stop()
    state.pipeline.close()
