"""Process-group bookkeeping for ``torchrun`` launches (one process per GPU, or gloo on CPU).

Kept apart from the training loop so the loop reads as a recipe: ranks, device choice and the few
collectives it needs (mean of a scalar, barrier) live here.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist


class Distributed:
    """Rank bookkeeping; a single process when not launched by torchrun."""

    def __init__(self) -> None:
        self.world_size = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        self.enabled = self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def start(self, device: torch.device) -> None:
        if self.enabled:
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo")

    def mean(self, value: float, device: torch.device) -> float:
        if not self.enabled:
            return value
        tensor = torch.tensor([value], dtype=torch.float64, device=device)
        dist.all_reduce(tensor)
        return float(tensor.item()) / self.world_size

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def stop(self) -> None:
        if self.enabled:
            dist.destroy_process_group()


def choose_device(requested: str, local_rank: int) -> torch.device:
    if requested == "auto":
        requested = "cuda" if torch.cuda.is_available() else "cpu"
    if requested == "cuda":
        torch.cuda.set_device(local_rank)
        return torch.device("cuda", local_rank)
    return torch.device(requested)
