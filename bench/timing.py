"""The one timing rule of the benches that time a call: median of repeats after a warm-up."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


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
