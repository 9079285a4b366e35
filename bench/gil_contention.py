"""Why the service runs a TorchScript graph: forward passes beside busy Python threads.

    .venv/bin/python bench/gil_contention.py
    .venv/bin/python bench/gil_contention.py --checkpoint weights/unet32.safetensors

A serving process runs Python beside the model: the event loop parses HTTP, the CPU pool
decodes and labels. An eager forward pass takes the GIL for each of its ~80 operators, so each
one can wait behind that Python; a frozen TorchScript graph takes it once per pass. This prints
the forward time of each (two inference threads of one intra-op thread each, as the service's
workers run on two cores) alone and beside one Python thread that never sleeps, the worst case
of a busy event loop. Same weights, same precision and layout, on one 256x256 tile.
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time
from pathlib import Path

import torch

from model_training.checkpoint import load_checkpoint
from service.serving.engine import InferenceEngine, available_cores, cpu_has_native_bf16
from service.serving.tuning import sample_tiles

ROOT = Path(__file__).resolve().parent.parent


def forward_times(engine: InferenceEngine, tiles, workers: int, calls: int, busy: bool) -> float:
    """Median seconds per forward pass over `workers` threads, with or without a busy thread."""
    stop = threading.Event()
    times: list[float] = []
    lock = threading.Lock()

    def spin() -> None:
        while not stop.is_set():
            sum(i * i for i in range(1000))

    def work() -> None:
        engine(tiles)  # this thread's warm-up
        for _ in range(calls):
            start = time.perf_counter()
            engine(tiles)
            with lock:
                times.append(time.perf_counter() - start)

    spinner = threading.Thread(target=spin) if busy else None
    if spinner:
        spinner.start()
    threads = [threading.Thread(target=work) for _ in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    stop.set()
    if spinner:
        spinner.join()
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", type=Path, default=ROOT / "weights/unet16.safetensors")
    parser.add_argument("--calls", type=int, default=10, help="timed calls per thread")
    args = parser.parse_args()

    model, record = load_checkpoint(args.checkpoint)
    fast = cpu_has_native_bf16()
    precision = "bf16" if fast else "fp32"
    workers = max(1, min(2, available_cores()))
    engine = InferenceEngine(model, torch.device("cpu"), precision, fast, 1)
    engine.solo_threads = 1
    tiles = sample_tiles(256, record.normalization, 1)
    print(
        f"# {args.checkpoint.name}, {precision}{' channels_last' if fast else ''}, "
        f"{workers} inference thread(s) x 1 intra-op thread, torch {torch.__version__}\n"
    )
    print("| execution | alone ms | beside a busy Python thread ms | slowdown |")
    print("|---|---:|---:|---:|")
    rows = []
    for name in ("eager", "TorchScript graph"):
        if name != "eager":
            engine.use_graph(sample_tiles(256, record.normalization, 2))
        alone = forward_times(engine, tiles, workers, args.calls, busy=False)
        busy = forward_times(engine, tiles, workers, args.calls, busy=True)
        rows.append((name, alone, busy))
        print(f"| {name} | {alone * 1e3:.1f} | {busy * 1e3:.1f} | {busy / alone:.1f}x |")
    (_, eager_alone, eager_busy), (_, graph_alone, graph_busy) = rows
    print(
        f"\ngraph vs eager: {eager_alone / graph_alone:.2f}x faster alone, "
        f"{eager_busy / graph_busy:.1f}x faster beside a busy Python thread"
    )


if __name__ == "__main__":
    main()
