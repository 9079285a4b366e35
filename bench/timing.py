"""The one timing rule of the benches that time a call: median of repeats after a warm-up."""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch

from model_training.checkpoint import CheckpointRecord, load_checkpoint
from model_training.unet import UNet


def median_ms(task: Callable[[], object], repeats: int, warmup: int = 1) -> float:
    """Milliseconds per call; the first calls (imports, caches, autotuning) are not what a
    request pays."""
    for _ in range(warmup):
        task()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        task()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def model_bench(description: str) -> tuple[argparse.Namespace, UNet, CheckpointRecord]:
    """The opening of a bench that times one checkpoint: ``--checkpoint`` and ``--repeats``,
    the model loaded on the CPU, autograd off, and a line saying what ran."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--checkpoint", type=Path, default=Path("weights/unet32.safetensors"))
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    model, record = load_checkpoint(args.checkpoint)
    torch.set_grad_enabled(False)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.checkpoint.name}")
    return args, model, record
