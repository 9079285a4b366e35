"""The inference plan (how the engine and batcher run) and its cache on disk.

Measuring the plan takes most of a start-up, and on a busy host it measures the load of that
moment as much as the machine. The plan depends only on what the cache key holds (checkpoint,
device, torch, usable cores and the settings that steer tuning), so a restart with the same key
reads the plan measured before instead of measuring again.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import platform
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import TypeAdapter, ValidationError

log = logging.getLogger("cellcount.service")

PLAN_FORMAT = 1  # bump when InferencePlan changes meaning: older files are then measured afresh
PlanSource = Literal["measured", "cache", "pinned"]


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


PLAN_ADAPTER = TypeAdapter(InferencePlan)


def device_name(device: torch.device) -> str:
    """The hardware behind a device type: a cache on a volume shared by different nodes must not
    hand one machine's plan to another."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return cpu_model()


def cpu_model() -> str:
    """The CPU's model name (Linux ``/proc/cpuinfo``, else what ``platform`` knows)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


class PlanCache:
    """One JSON file per key under ``directory``; the file repeats its key, which is checked."""

    def __init__(self, directory: Path, key: dict[str, Any]) -> None:
        self.key = {"format": PLAN_FORMAT, **key}
        digest = hashlib.sha256(json.dumps(self.key, sort_keys=True).encode()).hexdigest()
        self.path = Path(directory) / f"plan-{digest[:16]}.json"

    def load(self) -> InferencePlan | None:
        """The cached plan, or None (missing silently; unreadable or foreign with a warning)."""
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return None
        except OSError as error:
            log.warning("plan cache %s unreadable (%s): measuring afresh", self.path, error)
            return None
        try:
            content = json.loads(text)
            if content.get("key") != self.key:
                raise ValueError("the file was written for another key")
            return PLAN_ADAPTER.validate_python(content["plan"])
        except (AttributeError, KeyError, ValueError, ValidationError) as error:
            log.warning("plan cache %s ignored (%s): measuring afresh", self.path, error)
            return None

    def store(self, plan: InferencePlan) -> None:
        """Write atomically (a crash never leaves half a file); a read-only disk only warns."""
        content = {"key": self.key, "plan": dataclasses.asdict(plan)}
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            handle, temporary = tempfile.mkstemp(dir=self.path.parent, suffix=".tmp")
            try:
                os.fchmod(handle, 0o644)  # mkstemp's 0600 would hide it from other users
                with os.fdopen(handle, "w") as stream:
                    json.dump(content, stream, indent=1)
                os.replace(temporary, self.path)
            except BaseException:
                os.unlink(temporary)
                raise
        except OSError as error:
            log.warning("plan cache %s not written: %s", self.path, error)
