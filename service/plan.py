"""The inference plan: how the engine and the batcher run, whoever chose it.

Tuning measures one (``service.tuning``) or settings pin one; ``InferenceEngine.apply`` puts it
into effect, once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class InferencePlan:
    precision: str
    channels_last: bool
    max_batch_size: int
    workers: int
    threads_per_worker: int | None
    solo_threads: int | None = None
    torchscript: bool = False
    measurements: list[dict[str, Any]] = field(default_factory=list)
