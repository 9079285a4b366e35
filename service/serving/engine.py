"""The model side of the service: load a checkpoint safely and run batches of tiles.

``InferenceEngine`` is the one object that touches torch at serving time; the batcher hands it
numpy tiles from a worker thread and gets probabilities back.

Why a TorchScript graph: an eager forward pass re-enters Python (and takes the GIL) for each of
its ~80 operators, so while the event loop parses HTTP or the CPU pool labels cells, an
inference worker waits for the GIL between operators. Measured on the 2-core development CPU
(``bench/gil_contention.py``: width 16, one 256x256 tile, two workers of one thread, a pure-Python
thread running beside them): the eager forward went from 18.7 ms to 420 ms, the frozen graph from
12.6 ms to 36 ms. The graph is
traced in the chosen precision, frozen (constants folded, conv+ReLU fused), and adopted only if
its output matches eager on real tiles.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from model_training.checkpoint import (
    CheckpointError,
    CheckpointRecord,
    file_sha256,
    load_checkpoint,
)
from model_training.inference import autocast_context
from service.serving.plan import InferencePlan

log = logging.getLogger("cellcount.engine")


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


GRAPH_TOLERANCE = 1e-3  # max |probability difference| between the graph and eager


class GraphMismatch(RuntimeError):
    """The traced graph does not reproduce the eager model; the engine stays eager."""


class Probabilities(torch.nn.Module):
    """What one forward pass computes: (N, 1, H, W) float32 -> (N, H, W) probabilities.

    Layout change, model and sigmoid in one module, so the traced graph is a single call: each
    torch call from Python is a GIL release and re-acquire, and under load every re-acquire can
    wait a full interpreter switch interval behind the event loop.
    """

    def __init__(self, model: torch.nn.Module, memory_format: torch.memory_format) -> None:
        super().__init__()
        self.model = model
        self.memory_format = memory_format

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        logits = self.model(batch.contiguous(memory_format=self.memory_format))
        return torch.sigmoid(logits.float())[:, 0]


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
        self.graph: torch.jit.ScriptModule | None = None
        self.precision, self.channels_last = precision, channels_last
        self.configure(precision, channels_last, threads_per_worker)
        self._active = 0
        self._active_lock = threading.Lock()
        self.solo_threads = available_cores()  # for a call that runs alone; tuning measures
        self.delay_per_tile_s = 0.0  # settings.inference_delay_ms: a deliberately slower engine

    def configure(
        self, precision: str, channels_last: bool, threads_per_worker: int | None
    ) -> None:
        """Set the mode; a graph traced for another precision or layout is dropped."""
        if (precision, channels_last) != (self.precision, self.channels_last):
            self.graph = None
        self.precision = precision
        self.channels_last = channels_last
        memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.model.to(memory_format=memory_format)
        self.probabilities = Probabilities(self.model, memory_format).eval()
        self.threads_per_worker = threads_per_worker

    def apply(self, plan: InferencePlan, tiles: np.ndarray) -> float | None:
        """Run as ``plan`` says from now on: the one place a plan takes effect.

        A graph the tuning already traced and checked in this mode is kept; otherwise one is
        traced and checked on ``tiles`` (real, normalized), and the difference to eager returned.
        Raises where that fails (GraphMismatch or a tracing error); the engine then runs eager.
        """
        self.configure(plan.precision, plan.channels_last, plan.threads_per_worker)
        self.solo_threads = plan.solo_threads or available_cores()
        if not plan.torchscript:
            self.graph = None
        elif self.graph is None:
            return self.use_graph(tiles)
        return None

    def _as_batch(self, tiles: np.ndarray) -> torch.Tensor:
        batch = torch.from_numpy(np.ascontiguousarray(tiles[:, None], dtype=np.float32))
        return batch if self.device.type == "cpu" else batch.to(self.device, non_blocking=True)

    @torch.inference_mode()
    def _eager(self, tiles: np.ndarray) -> np.ndarray:
        with autocast_context(self.device, self.precision):
            return self.probabilities(self._as_batch(tiles)).cpu().numpy()

    @torch.inference_mode()
    def use_graph(self, tiles: np.ndarray) -> float:
        """Trace and freeze the model in the current mode, check it against eager on ``tiles``
        (real, normalized), and run through it from now on. Returns the largest probability
        difference; raises GraphMismatch (engine stays eager) above GRAPH_TOLERANCE."""
        self.graph = None
        sample = self._as_batch(tiles[:1])
        with autocast_context(self.device, self.precision), warnings.catch_warnings():
            # torch marks TorchScript deprecated in favour of torch.compile/torch.export, which
            # need a C++ compiler at run time (torch.compile) or per-machine builds (AOTInductor);
            # see docs/architecture.md. With torch pinned, the trace works and is verified below.
            warnings.filterwarnings("ignore", category=DeprecationWarning, module="torch.jit")
            # Traced under autocast, the graph records the casts; freezing folds the weights'
            # casts into constants, so the graph runs the chosen precision by itself.
            traced = torch.jit.trace(self.probabilities, sample, check_trace=False)
            graph = torch.jit.freeze(traced)
        reference = self._eager(tiles)
        self.graph = graph
        difference = float(np.abs(self(tiles) - reference).max(initial=0.0))
        if not difference <= GRAPH_TOLERANCE:  # also catches NaN
            self.graph = None
            raise GraphMismatch(
                f"the TorchScript graph differs from the eager model by {difference:.3g} "
                f"(tolerance {GRAPH_TOLERANCE}); serving eager"
            )
        return difference

    @torch.inference_mode()
    def __call__(self, tiles: np.ndarray) -> np.ndarray:
        with self._active_lock:
            self._active += 1
            alone = self._active == 1
        try:
            if self.device.type == "cpu" and self.threads_per_worker:
                # Intra-op threads are per calling thread: under load, N workers x T threads
                # fill the cores; a call that runs alone (a quiet service) may take more, where
                # warm-up measured that it pays (``solo_threads``).
                threads = self.solo_threads if alone else self.threads_per_worker
                if torch.get_num_threads() != threads:
                    torch.set_num_threads(threads)
            if self.delay_per_tile_s:
                time.sleep(self.delay_per_tile_s * len(tiles))
            if self.graph is None:
                return self._eager(tiles)
            return self.graph(self._as_batch(tiles)).cpu().numpy()  # one GIL hand-off per pass
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
