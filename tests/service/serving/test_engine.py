"""The inference engine: the TorchScript graph must compute exactly what the eager model does."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from model_training.checkpoint import load_checkpoint
from model_training.unet import UNet
from service.serving.engine import GraphMismatch, InferenceEngine, cpu_has_native_bf16
from service.serving.plan import InferencePlan
from service.serving.tuning import adopt_graph, sample_tiles
from service.settings import PROJECT_ROOT

CHECKPOINT = PROJECT_ROOT / "weights" / "unet16.safetensors"
MODES = [("fp32", False), ("fp32", True)] + ([("bf16", True)] if cpu_has_native_bf16() else [])


@pytest.fixture(scope="module")
def trained():
    return load_checkpoint(CHECKPOINT)


@pytest.mark.parametrize(("precision", "channels_last"), MODES)
def test_graph_matches_eager_for_every_tile_shape_and_batch(trained, precision, channels_last):
    model, record = trained
    engine = InferenceEngine(model, torch.device("cpu"), precision, channels_last, 1)
    real = sample_tiles(256, record.normalization, 2)
    # Bit-identical when run alone; under other load oneDNN may pick another kernel order,
    # hence float rounding, not more (the service itself accepts 1e-3).
    assert engine.use_graph(real) <= 1e-6
    assert engine.graph is not None
    rng = np.random.default_rng(0)
    # Traced on one 256x256 tile; served on the fitted tiles of any image, in any batch.
    for shape in ((1, 256, 256), (3, 128, 384), (2, 304, 208)):
        batch = rng.random(shape, dtype=np.float32) * 2
        through_graph = engine(batch)
        eager = engine._eager(batch)
        assert through_graph.shape == shape
        np.testing.assert_allclose(through_graph, eager, rtol=0, atol=1e-6)


def test_a_graph_that_disagrees_is_refused_and_the_engine_stays_eager(trained, monkeypatch):
    model, record = trained
    engine = InferenceEngine(model, torch.device("cpu"), "fp32", False, 1)
    other = UNet(base_channels=16).eval()  # untrained: a wrong graph, as a broken trace would be
    real_trace = torch.jit.trace
    monkeypatch.setattr(
        torch.jit, "trace", lambda module, sample, **kw: real_trace(other, sample, **kw)
    )
    real = sample_tiles(256, record.normalization, 2)
    with pytest.raises(GraphMismatch, match="differs from the eager model"):
        engine.use_graph(real)
    assert engine.graph is None
    measurements: list[dict] = []
    assert adopt_graph(engine, real, measurements) is False
    assert measurements[0]["adopted"] is False and "differs" in measurements[0]["reason"]
    np.testing.assert_allclose(engine(real), engine._eager(real), rtol=0, atol=1e-6)


def test_changing_the_mode_drops_the_graph_but_changing_threads_keeps_it(trained):
    model, record = trained
    engine = InferenceEngine(model, torch.device("cpu"), "fp32", False, 1)
    engine.use_graph(sample_tiles(256, record.normalization, 1))
    engine.configure("fp32", False, 2)
    assert engine.graph is not None
    engine.configure("fp32", True, 2)
    assert engine.graph is None


def test_apply_puts_a_plan_into_effect_once_and_keeps_a_graph_already_checked(trained):
    model, record = trained
    engine = InferenceEngine(model, torch.device("cpu"))
    tiles = sample_tiles(256, record.normalization, 2)
    plan = InferencePlan("fp32", True, 4, 2, 1, 2, torchscript=True)
    assert engine.apply(plan, tiles) <= 1e-6  # traced and checked here
    graph = engine.graph
    assert (engine.channels_last, engine.threads_per_worker, engine.solo_threads) == (True, 1, 2)
    assert engine.apply(plan, tiles) is None and engine.graph is graph  # not traced twice
    engine.apply(dataclasses.replace(plan, torchscript=False), tiles)
    assert engine.graph is None
    np.testing.assert_allclose(engine(tiles), engine._eager(tiles), rtol=0, atol=1e-6)
