"""Start-up: where the inference plan comes from (cache, measured, pinned) and what it logs."""

from __future__ import annotations

import asyncio
import dataclasses
import logging

import numpy as np
import torch

from model_training.checkpoint import CheckpointRecord
from model_training.unet import UNet
from service.api.model_info import model_info
from service.serving.engine import GraphMismatch, InferenceEngine
from service.serving.state import choose_plan, plan_cache_for, start_service, stop_service
from service.settings import Settings

RECORD = CheckpointRecord(base_channels=4, tile_size=64, tile_overlap=16)
# Every tuning choice pinned: the "measurement" is instant, the cache logic is what is tested.
PINNED = {
    "device": "cpu",
    "precision": "fp32",
    "channels_last": False,
    "max_batch_size": 1,
    "inference_workers": 1,
}


class UntraceableEngine(InferenceEngine):
    """An engine on whose torch the TorchScript trace fails (a cached plan may say graph)."""

    def use_graph(self, tiles: np.ndarray) -> float:
        raise GraphMismatch("this torch cannot trace the model")


def start(settings: Settings, engine_type: type[InferenceEngine] = InferenceEngine):
    engine = engine_type(UNet(base_channels=4), torch.device("cpu"))
    cache = plan_cache_for(settings, "cd" * 32, engine.device)
    plan, source = choose_plan(settings, engine, RECORD, cache)
    return engine, plan, source, cache


def test_a_second_start_reads_the_plan_and_a_changed_setting_measures_afresh(tmp_path):
    settings = Settings(plan_cache_dir=tmp_path, torchscript=True, **PINNED)
    first_engine, first, source, cache = start(settings)
    assert source == "measured" and cache is not None and cache.path.is_file()
    assert first.torchscript and first_engine.graph is not None
    engine, second, source, _ = start(settings)
    assert source == "cache" and second == first
    assert engine.graph is not None  # traced and checked again on this start
    assert (engine.precision, engine.threads_per_worker) == (
        first.precision,
        first.threads_per_worker,
    )
    changed = settings.model_copy(update={"max_batch_size": 2})
    _, plan, source, other = start(changed)
    assert source == "measured" and plan.max_batch_size == 2 and other.path != cache.path


def test_a_cached_graph_that_no_longer_traces_is_measured_afresh(tmp_path, caplog):
    settings = Settings(plan_cache_dir=tmp_path, torchscript=True, **PINNED)
    _, cached, _, _ = start(settings)
    with caplog.at_level(logging.WARNING):
        engine, plan, source, _ = start(settings, UntraceableEngine)
    assert cached.torchscript and source == "measured"
    assert not plan.torchscript and engine.graph is None
    assert "measuring afresh" in caplog.text


def test_a_corrupt_cache_file_is_ignored_with_a_warning_and_replaced(tmp_path, caplog):
    settings = Settings(plan_cache_dir=tmp_path, torchscript=False, **PINNED)
    _, first, _, cache = start(settings)
    cache.path.write_text('{"key": {"format": 1}, "plan": ')
    with caplog.at_level(logging.WARNING):
        _, plan, source, _ = start(settings)
    assert source == "measured" and "ignored" in caplog.text
    assert dataclasses.replace(plan, measurements=[]) == dataclasses.replace(first, measurements=[])
    assert start(settings)[2] == "cache"  # the measurement replaced the broken file


def test_without_warm_up_the_plan_is_pinned_and_the_cache_untouched(tmp_path):
    settings = Settings(plan_cache_dir=tmp_path, warmup=False, torchscript=False, **PINNED)
    _, plan, source, _ = start(settings)
    assert source == "pinned" and plan.max_batch_size == 1
    assert not any(tmp_path.iterdir())


def test_start_up_logs_each_step_and_model_info_names_the_plan_source(tmp_path, caplog):
    settings = Settings(plan_cache_dir=tmp_path, torchscript=False, **PINNED)

    async def start_and_stop() -> dict:
        state = await start_service(settings)
        try:
            return model_info(state).model_dump()
        finally:
            await stop_service(state)

    with caplog.at_level(logging.INFO, logger="cellcount.service"):
        first = asyncio.run(start_and_stop())
        steps = [r.getMessage() for r in caplog.records if "start-up:" in r.getMessage()]
        caplog.clear()
        second = asyncio.run(start_and_stop())
    names = ["resolve device", "load and verify checkpoint", "plan inference", "start batcher"]
    for name, message in zip([*names, "warm-up image"], steps, strict=True):
        assert message.startswith(f"start-up: {name}") and message.endswith(("ms", " s"))
    assert first["plan_source"] == "measured" and second["plan_source"] == "cache"
    assert first["plan_cache"] == second["plan_cache"] and second["plan_cache"].startswith(
        str(tmp_path)
    )
    assert f"read from {second['plan_cache']}" in caplog.text
