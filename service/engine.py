"""The model side of the service: load a checkpoint safely and run batches of tiles.

``InferenceEngine`` is the one object that touches torch at serving time; the batcher hands it
numpy tiles from a worker thread and gets probabilities back.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from model_training.checkpoint import CheckpointError, CheckpointRecord, load_checkpoint
from model_training.inference import autocast_context

log = logging.getLogger("cellcount.engine")


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def resolve_device(requested: str) -> torch.device:
    if requested == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("CELLCOUNT_DEVICE=cuda but no CUDA device is available")
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(requested)


def cpu_has_native_bf16() -> bool:
    """bf16 pays on CPUs with AVX512-BF16 or AMX; elsewhere it is emulated and slower."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return any(flag in flags for flag in (" amx_bf16", " avx512_bf16"))


@dataclass
class LoadedModel:
    model: torch.nn.Module
    record: CheckpointRecord
    path: Path
    sha256: str


def load_model(path: Path, expected_sha256: str | None, device: torch.device) -> LoadedModel:
    """Load and verify a checkpoint; every failure is a CheckpointError that says why."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist (CELLCOUNT_CHECKPOINT)")
    digest = file_sha256(path)
    if expected_sha256 is not None and digest != expected_sha256:
        raise CheckpointError(
            f"checkpoint {path} has sha256 {digest}, but CELLCOUNT_CHECKPOINT_SHA256 expects "
            f"{expected_sha256}; refusing to serve a different model"
        )
    model, record = load_checkpoint(path, device)
    return LoadedModel(model=model, record=record, path=path, sha256=digest)


class InferenceEngine:
    """Runs (N, T, T) float32 tiles through the U-Net, returns (N, T, T) probabilities."""

    def __init__(
        self,
        model: torch.nn.Module,
        device: torch.device,
        precision: str = "fp32",
        channels_last: bool = False,
        threads_per_worker: int | None = None,
    ) -> None:
        self.model = model.eval().to(device)
        self.device = device
        self.configure(precision, channels_last, threads_per_worker)
        self.fail_next: Exception | None = None  # fault injection for tests of batch isolation
        self._active = 0
        self._active_lock = threading.Lock()
        self._cores = available_cores()

    def configure(
        self, precision: str, channels_last: bool, threads_per_worker: int | None
    ) -> None:
        self.precision = precision
        self.channels_last = channels_last
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.model.to(memory_format=self.memory_format)
        self.threads_per_worker = threads_per_worker

    @torch.inference_mode()
    def __call__(self, tiles: np.ndarray) -> np.ndarray:
        if self.fail_next is not None:
            error, self.fail_next = self.fail_next, None
            raise error
        with self._active_lock:
            self._active += 1
            alone = self._active == 1
        try:
            if self.device.type == "cpu" and self.threads_per_worker:
                # Intra-op threads are per calling thread: under load, N workers x T threads
                # fill the cores; a call that runs alone (a quiet service) takes all of them.
                torch.set_num_threads(self._cores if alone else self.threads_per_worker)
            batch = torch.from_numpy(np.ascontiguousarray(tiles, dtype=np.float32))[:, None]
            batch = batch.to(self.device, non_blocking=True).to(memory_format=self.memory_format)
            with autocast_context(self.device, self.precision):
                logits = self.model(batch)
            return torch.sigmoid(logits.float())[:, 0].cpu().numpy()
        finally:
            with self._active_lock:
                self._active -= 1


def available_cores() -> int:
    """CPUs this process may use: its affinity, capped by a cgroup v2 CPU quota (containers).

    ``docker --cpus 2`` or a Kubernetes CPU limit leaves every host core visible, but only the
    quota's worth of time usable; more threads than that only contend.
    """
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - non-Linux
        cores = os.cpu_count() or 1
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            cores = min(cores, max(1, int(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return cores
