"""The opening the benches that time one checkpoint share (kept out of ``timing.py``, which the
file-reading benches import without torch)."""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from model_training.checkpoint import CheckpointRecord, load_checkpoint
from model_training.unet import UNet


def model_bench(description: str) -> tuple[argparse.Namespace, UNet, CheckpointRecord]:
    """``--checkpoint`` and ``--repeats``, the model loaded on the CPU, autograd off, and a line
    saying what ran."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--checkpoint", type=Path, default=Path("weights/unet32.safetensors"))
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    model, record = load_checkpoint(args.checkpoint)
    torch.set_grad_enabled(False)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.checkpoint.name}")
    return args, model, record
