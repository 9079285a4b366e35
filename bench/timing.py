"""The one timing rule of the benches that time a call: median of repeats after a warm-up."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def median_ms(task: Callable[[], object], repeats: int) -> float:
    """Milliseconds per call; the first call (imports, caches) is not what a request pays."""
    task()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        task()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)
