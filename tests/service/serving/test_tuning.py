"""Warm-up choices: the decision rules, with the timings supplied (the timing itself is noise,
measured in bench/, not asserted in tests)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from model_training.unet import UNet
from service.serving import tuning
from service.serving.engine import InferenceEngine


@pytest.fixture
def engine() -> InferenceEngine:
    return InferenceEngine(UNet(base_channels=4), torch.device("cpu"), "fp32", False, 1)


TILES = np.zeros((2, 64, 64), dtype=np.float32)


def with_rates(monkeypatch, rates: dict[tuple[int, int], float]) -> None:
    """Tiles/s per (workers, batch), in place of the measurement."""
    monkeypatch.setattr(tuning, "available_cores", lambda: 2)
    monkeypatch.setattr(
        tuning,
        "_throughput",
        lambda engine, tiles, batch, workers, threads, rounds: rates[(workers, batch)],
    )


def test_a_bigger_batch_must_win_clearly(monkeypatch, engine):
    rates = {(1, 1): 50, (1, 2): 51, (1, 4): 40, (2, 1): 100, (2, 2): 104, (2, 4): 90}
    with_rates(monkeypatch, rates)
    assert tuning.choose_batching(engine, TILES, None, None, []) == (1, 2, 1)
    rates[(2, 2)] = 110  # now clearly faster
    assert tuning.choose_batching(engine, TILES, None, None, []) == (2, 2, 1)


def test_pinned_batch_and_workers_are_not_measured(monkeypatch, engine):
    with_rates(monkeypatch, {})  # any measurement would raise KeyError
    assert tuning.choose_batching(engine, TILES, 4, 2, []) == (4, 2, 1)


@pytest.mark.parametrize(
    ("one_thread_s", "two_threads_s", "chosen"),
    [(0.048, 0.034, 2), (0.0126, 0.0146, 1), (0.020, 0.018, 1)],
)
def test_a_lone_forward_takes_all_cores_only_where_that_is_faster(
    monkeypatch, engine, one_thread_s, two_threads_s, chosen
):
    monkeypatch.setattr(tuning, "available_cores", lambda: 2)
    engine.threads_per_worker = 1
    monkeypatch.setattr(
        tuning,
        "_time_call",
        lambda eng, tiles, repeats: one_thread_s if eng.solo_threads == 1 else two_threads_s,
    )
    measurements: list[dict] = []
    assert tuning.choose_solo_threads(engine, TILES, measurements) == chosen
    assert [m["solo_threads"] for m in measurements] == [1, 2]
    assert measurements[0]["ms_per_tile"] == one_thread_s * 1e3


@pytest.mark.parametrize(
    ("graph_rate", "eager_rate", "kept"),
    [(5.05, 5.73, False), (5.0, 5.2, True), (9.0, 6.0, True)],
)
def test_the_graph_is_kept_unless_eager_serves_clearly_faster(
    monkeypatch, engine, graph_rate, eager_rate, kept
):
    """5.05 against 5.73 tiles/s is what the AVX2 EPYC measured for width 32 (eager wins);
    within EAGER_MARGIN the graph stays, as it gives up the GIL less often under HTTP load."""
    monkeypatch.setattr(tuning, "available_cores", lambda: 2)
    graph = object()
    engine.graph = graph
    timed: list[bool] = []

    def rate(eng, tiles, batch, workers, threads, rounds):
        timed.append(eng.graph is graph)
        assert (batch, workers, threads) == (1, 2, 1)  # as the service runs under load on 2 cores
        return graph_rate if eng.graph is graph else eager_rate

    monkeypatch.setattr(tuning, "_throughput", rate)
    measurements: list[dict] = []
    assert tuning.graph_pays(engine, TILES, None, measurements) is kept
    assert (engine.graph is graph) is kept
    assert timed == [True, False] * 3  # in alternation
    assert measurements[0]["graph_tiles_per_second"] == graph_rate
    assert measurements[0]["eager_tiles_per_second"] == eager_rate
