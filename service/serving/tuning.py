"""Warm-up measurements that pick the inference mode, batch size and worker count.

What is fastest depends on the device, so it is measured, not assumed: on the 2-core
development CPU a batch of 8 runs slower per image than a batch of 1 and two single-thread
workers beat one two-thread worker, while on a GPU large batches win. Every choice can be pinned
by a setting; pinned choices are not measured. bf16 is adopted only where its masks agree with
fp32 masks on the served weights (and it is faster).
"""

from __future__ import annotations

import logging
import statistics
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from model_training.normalization import PercentileNormalization
from model_training.synthetic import SyntheticConfig, generate_sample
from service.serving.engine import InferenceEngine, available_cores, cpu_has_native_bf16
from service.serving.plan import InferencePlan

log = logging.getLogger("cellcount.tuning")

WARMUP_SEED = 1_000_000_000  # the synthetic validation seed range (model_training.data)
MIN_BF16_AGREEMENT = 0.999  # fraction of mask pixels equal to the fp32 mask
MARGIN = 1.05  # how much faster a bigger batch or worker count must measure to be chosen
SOLO_MARGIN = 1.15  # how much faster all cores must make a lone forward pass to be used
EAGER_MARGIN = 1.05  # how much faster eager must measure for the adopted graph to be dropped


def sample_tiles(tile: int, normalization: PercentileNormalization, count: int) -> np.ndarray:
    """Realistic tiles (synthetic nuclei) for timing, the bf16 agreement check and the
    warm-up, from the generator itself (the service never imports the training Dataset code);
    seeds from the generator's validation range, never used for training."""
    # 1-100 cells per 256x256, fewer in smaller tiles (as the synthetic training source)
    config = SyntheticConfig(
        height=tile, width=tile, max_cells=min(100, max(1, round(100 * tile * tile / 256**2)))
    )
    return np.stack(
        [normalization.apply(generate_sample(WARMUP_SEED + i, config).image) for i in range(count)]
    )


def _time_call(engine: InferenceEngine, tiles: np.ndarray, repeats: int) -> float:
    engine(tiles)  # warm-up (allocations, kernel selection)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        engine(tiles)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _mode_candidates(device: torch.device) -> list[tuple[str, bool]]:
    if device.type == "cuda":
        modes = [("fp32", True)]
        if torch.cuda.is_bf16_supported():
            modes.append(("bf16", True))
        return modes
    modes = [("fp32", False), ("fp32", True)]
    if cpu_has_native_bf16():
        modes += [("bf16", True), ("bf16", False)]
    return modes


def bf16_agreement(engine: InferenceEngine, tiles: np.ndarray, threshold: float) -> float:
    original = (engine.precision, engine.channels_last, engine.threads_per_worker)
    engine.configure("fp32", engine.channels_last, engine.threads_per_worker)
    reference = engine(tiles) > threshold
    engine.configure("bf16", engine.channels_last, engine.threads_per_worker)
    candidate = engine(tiles) > threshold
    engine.configure(*original)
    return float((reference == candidate).mean())


def choose_mode(
    engine: InferenceEngine,
    tiles: np.ndarray,
    threshold: float,
    precision: str,
    channels_last: bool | None,
    measurements: list[dict[str, Any]],
) -> tuple[str, bool]:
    modes = [
        (p, c)
        for p, c in _mode_candidates(engine.device)
        if (precision == "auto" or p == precision) and (channels_last is None or c == channels_last)
    ]
    if not modes:  # a pinned combination that the candidates leave out: honour the pin
        modes = [("fp32" if precision == "auto" else precision, bool(channels_last))]
    if any(p == "bf16" for p, _ in modes) and precision == "auto":
        agreement = bf16_agreement(engine, tiles[:2], threshold)
        measurements.append({"check": "bf16_mask_agreement", "value": round(agreement, 6)})
        if agreement < MIN_BF16_AGREEMENT:
            log.warning("bf16 masks agree with fp32 on only %.4f of pixels: using fp32", agreement)
            modes = [m for m in modes if m[0] != "bf16"]
    if len(modes) == 1:
        return modes[0]
    best, best_seconds = modes[0], float("inf")
    for mode in modes:
        engine.configure(*mode, engine.threads_per_worker)
        seconds = _time_call(engine, tiles[:1], repeats=3)
        measurements.append(
            {
                "precision": mode[0],
                "channels_last": mode[1],
                "batch": 1,
                "ms_per_tile": round(seconds * 1e3, 2),
            }
        )
        if seconds < best_seconds:
            best, best_seconds = mode, seconds
    return best


def adopt_graph(
    engine: InferenceEngine, tiles: np.ndarray, measurements: list[dict[str, Any]]
) -> bool:
    """Serve through a frozen TorchScript graph of the current mode if it reproduces eager.

    A trace that fails or disagrees leaves the engine eager: slower under load, never wrong.
    """
    try:
        difference = engine.use_graph(tiles)
    except Exception as error:  # GraphMismatch, or any tracing failure of a future torch
        log.warning("TorchScript graph not used: %s", error)
        measurements.append({"check": "torchscript", "adopted": False, "reason": str(error)})
        return False
    measurements.append(
        {"check": "torchscript", "adopted": True, "max_probability_difference": difference}
    )
    return True


def worker_options(workers: int | None, gpu: bool, cores: int) -> list[int]:
    """The worker counts warm-up measures: the pinned one, else 1 and 2 where there is room."""
    return [workers] if workers else [1, 2] if gpu or cores >= 2 else [1]


def threads_per_worker(gpu: bool, cores: int, workers: int) -> int | None:
    """Intra-op threads of each worker: the cores shared out on a CPU, torch's own on a GPU."""
    return None if gpu else max(1, cores // workers)


def graph_pays(
    engine: InferenceEngine,
    tiles: np.ndarray,
    workers: int | None,
    measurements: list[dict[str, Any]],
) -> bool:
    """Keep the adopted graph unless eager serves clearly faster (EAGER_MARGIN) on this device.

    Measured, because it differs by CPU: on the AMX Xeon the graph served 256x256 tiles faster
    under load (one GIL hand-off per pass), while on an AVX2-only EPYC eager measured 13 % faster
    (5.73 against 5.05 tiles/s bare), the graph's fused kernels being slower there. Timed as
    the service runs under load (every worker busy, batch 1 on a CPU), the two in alternation so
    that a machine that gets busier meanwhile favours neither. Ties keep the graph: under HTTP
    load the event loop competes for the GIL, which the graph gives up less often.
    """
    graph = engine.graph
    gpu = engine.device.type == "cuda"
    cores = available_cores()
    n_workers = max(worker_options(workers, gpu, cores))
    threads = threads_per_worker(gpu, cores, n_workers)
    batch = 8 if gpu else 1
    samples: dict[str, list[float]] = {"graph": [], "eager": []}
    for _ in range(3):
        for name in samples:
            engine.graph = graph if name == "graph" else None
            samples[name].append(_throughput(engine, tiles, batch, n_workers, threads, 2))
    engine.graph = graph
    rates = {name: statistics.median(values) for name, values in samples.items()}
    measurements.append(
        {
            "check": "torchscript_speed",
            "workers": n_workers,
            "batch": batch,
            **{f"{name}_tiles_per_second": round(rate, 2) for name, rate in rates.items()},
        }
    )
    if rates["eager"] > rates["graph"] * EAGER_MARGIN:
        log.info(
            "TorchScript graph not used: eager serves %.2f tiles/s against the graph's %.2f here",
            rates["eager"],
            rates["graph"],
        )
        engine.graph = None
        return False
    return True


def _throughput(
    engine: InferenceEngine,
    tiles: np.ndarray,
    batch: int,
    workers: int,
    threads: int | None,
    rounds: int,
) -> float:
    """Tiles per second with `workers` threads each running batches of `batch`."""
    engine.configure(engine.precision, engine.channels_last, threads)
    chunk = np.resize(tiles, (batch, *tiles.shape[1:]))

    def work() -> None:
        for _ in range(rounds):
            engine(chunk)

    engine(chunk)
    threads_ = [threading.Thread(target=work) for _ in range(workers)]
    start = time.perf_counter()
    for thread in threads_:
        thread.start()
    for thread in threads_:
        thread.join()
    return workers * rounds * batch / (time.perf_counter() - start)


def choose_batching(
    engine: InferenceEngine,
    tiles: np.ndarray,
    max_batch_size: int | None,
    workers: int | None,
    measurements: list[dict[str, Any]],
) -> tuple[int, int, int | None]:
    cores = available_cores()
    gpu = engine.device.type == "cuda"
    batch_options = (
        [max_batch_size] if max_batch_size else ([1, 4, 16, 32, 64] if gpu else [1, 2, 4])
    )
    counts = worker_options(workers, gpu, cores)
    best = (batch_options[0], counts[0], None)
    if len(batch_options) == 1 and len(counts) == 1:
        return batch_options[0], counts[0], threads_per_worker(gpu, cores, counts[0])
    best_rate = -1.0
    for n_workers in counts:
        threads = threads_per_worker(gpu, cores, n_workers)
        for batch in batch_options:
            rounds = 8 if gpu else max(2, 8 // batch)  # >= 8 tiles per worker on CPU
            rate = _throughput(engine, tiles, batch, n_workers, threads, rounds)
            measurements.append(
                {
                    "workers": n_workers,
                    "threads_per_worker": threads,
                    "batch": batch,
                    "tiles_per_second": round(rate, 2),
                }
            )
            # A bigger batch or more workers must win clearly (5 %): within the noise of a
            # short measurement, the smaller batch has the lower latency.
            if rate > best_rate * MARGIN:
                best, best_rate = (batch, n_workers, threads), rate
    return best


def _off_main_thread(measure: Callable[[], None]) -> None:
    """Run a timing in a fresh thread, as the batcher's workers run (not the event loop's)."""
    worker = threading.Thread(target=measure)
    worker.start()
    worker.join()


def choose_solo_threads(
    engine: InferenceEngine, tiles: np.ndarray, measurements: list[dict[str, Any]]
) -> int | None:
    """Threads for a forward pass that runs alone (a quiet service): all cores only where
    that is clearly faster (SOLO_MARGIN) than the per-worker share.

    Measured, because it varies with the model: on the development CPU (TorchScript graph) the
    width-32 model answers a 256x256 tile in ~27 ms with two threads against ~36 ms with one,
    while for width 16 the second thread costs time (15.3 vs 12.8 ms) and widens the tail:
    waking a passive OpenMP thread for each of ~50 parallel regions costs more than it shares
    on the smaller layers. The two settings are timed in alternation, so that a machine that
    gets busier during the measurement does not favour one of them.
    """
    per_worker, cores = engine.threads_per_worker, available_cores()
    if engine.device.type != "cpu" or not per_worker or per_worker >= cores:
        return per_worker
    options = (per_worker, cores)
    samples: dict[int, list[float]] = {threads: [] for threads in options}

    def measure() -> None:
        for _ in range(3):
            for threads in options:
                engine.solo_threads = threads
                samples[threads].append(_time_call(engine, tiles[:1], 3))

    _off_main_thread(measure)
    seconds = {threads: statistics.median(values) for threads, values in samples.items()}
    for threads in options:
        measurements.append(
            {"solo_threads": threads, "ms_per_tile": round(seconds[threads] * 1e3, 2)}
        )
    return cores if seconds[cores] * SOLO_MARGIN < seconds[per_worker] else per_worker


def plan_inference(
    engine: InferenceEngine,
    tile: int,
    threshold: float,
    normalization: PercentileNormalization,
    precision: str,
    channels_last: bool | None,
    max_batch_size: int | None,
    workers: int | None,
    torchscript: bool | str = "auto",
) -> InferencePlan:
    """Measure on this device and return the fastest correct configuration.

    The batch and worker measurements run through the graph when it is adopted, since that is
    what will serve. ``torchscript`` "auto" adopts the graph only where it serves no slower than
    eager (``graph_pays``); True adopts it whenever it agrees with eager. The engine is left in
    whatever state the last measurement needed: ``InferenceEngine.apply`` puts the returned plan
    into effect.
    """
    measurements: list[dict[str, Any]] = []
    tiles = sample_tiles(tile, normalization, 2)
    mode = choose_mode(engine, tiles, threshold, precision, channels_last, measurements)
    engine.configure(*mode, engine.threads_per_worker)
    graph = torchscript is not False and adopt_graph(engine, tiles, measurements)
    if graph and torchscript == "auto":
        graph = graph_pays(engine, tiles, workers, measurements)
    batch, n_workers, threads = choose_batching(
        engine, tiles, max_batch_size, workers, measurements
    )
    engine.configure(*mode, threads)
    solo = choose_solo_threads(engine, tiles, measurements)
    return InferencePlan(mode[0], mode[1], batch, n_workers, threads, solo, graph, measurements)


def pinned_plan(
    device: torch.device,
    precision: str,
    channels_last: bool | None,
    max_batch_size: int | None,
    workers: int | None,
    torchscript: bool | str,
) -> InferencePlan:
    """The plan without measuring: pinned settings, else conservative defaults (fp32, one
    worker, batches of 1 on a CPU and 32 on a GPU, the TorchScript graph unless switched off)."""
    gpu = device.type == "cuda"
    workers = workers or 1
    threads = threads_per_worker(gpu, available_cores(), workers)
    return InferencePlan(
        precision="fp32" if precision == "auto" else precision,
        channels_last=gpu if channels_last is None else channels_last,
        max_batch_size=max_batch_size or (32 if gpu else 1),
        workers=workers,
        threads_per_worker=threads,
        solo_threads=None if gpu else available_cores(),
        torchscript=torchscript is not False,
    )


def log_plan(plan: InferencePlan) -> None:
    log.info(
        "inference plan: %s%s, %s, batch %d, %d worker(s) x %s thread(s), %s alone",
        plan.precision,
        " channels_last" if plan.channels_last else "",
        "TorchScript graph" if plan.torchscript else "eager",
        plan.max_batch_size,
        plan.workers,
        plan.threads_per_worker or "-",
        plan.solo_threads or "-",
    )
