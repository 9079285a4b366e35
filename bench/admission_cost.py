"""What admission by expected wait costs on the request path, against a forward pass.

    .venv/bin/python bench/admission_cost.py

Each submission costs the live tiles queued ahead (a count by tile shape) before it is queued;
``/metrics`` does the same for ``cellcount_expected_wait_seconds``. Timed here with queues of
0, 64 and 2048 tiles (the default ``QUEUE_LIMIT``) of mixed shapes, beside one forward pass of a
256x256 tile through the shipped width-32 model in the engine's graph. Medians of repeats.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import contextlib

from bench.timing import median_ms
from service.serving.batcher import Overloaded, TileBatcher, _Job, _Request
from service.serving.engine import InferenceEngine, load_model
from service.settings import DEFAULT_CHECKPOINT

SHAPES = ((256, 256), (592, 768), (64, 64), (1024, 1024))


def queued_batcher(tiles: int) -> TileBatcher:
    """A batcher whose queue holds ``tiles`` live tiles of mixed shapes (never started)."""
    batcher = TileBatcher(lambda t: t, queue_limit=10_000)
    loop = asyncio.new_event_loop()
    for index in range(tiles):
        shape = SHAPES[index % len(SHAPES)]
        request = _Request(np.zeros((1, *shape), np.float32), loop.create_future(), 1)
        batcher._queue.append(_Job(request, 0))
    for shape in SHAPES:  # every shape measured once, as after a few batches
        batcher.throughput.observe(shape, 1, 0.03 * np.prod(shape) / 65536)
    return batcher


def admit_or_refuse(batcher: TileBatcher, tiles: np.ndarray) -> None:
    """One admission decision, whichever way it goes (a refusal costs the same count)."""
    with contextlib.suppress(Overloaded):
        batcher._admit(tiles, 60.0)


def main() -> None:
    loaded = load_model(DEFAULT_CHECKPOINT, None, torch.device("cpu"))
    engine = InferenceEngine(loaded.model, torch.device("cpu"))
    tile = np.random.default_rng(0).random((1, 256, 256), dtype=np.float32)
    engine.use_graph(tile)
    forward = median_ms(lambda: engine(tile), repeats=15, warmup=3)
    own = np.zeros((1, 256, 256), np.float32)
    print("| tiles queued | admission check (ms) | expected-wait gauge (ms) | vs a forward pass |")
    print("|---:|---:|---:|---:|")
    for tiles in (0, 64, 2048):
        batcher = queued_batcher(tiles)
        admit = median_ms(lambda b=batcher: admit_or_refuse(b, own), repeats=200)
        gauge = median_ms(batcher.expected_wait, repeats=200)
        print(f"| {tiles} | {admit:.3f} | {gauge:.3f} | {100 * admit / forward:.3f} % |")
    print(f"\nforward pass, 256x256, width 32, graph: {forward:.1f} ms (median of 15)")


if __name__ == "__main__":
    main()
