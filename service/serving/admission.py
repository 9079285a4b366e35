"""How long the queue takes to drain, from the batcher's own measured throughput.

A fixed queue limit admits the same number of tiles whatever the machine does per second: on a
slow CPU it admits work that can never finish before its deadline, and the client waits the
whole deadline for a 504. The batcher instead refuses at once (503 with a ``Retry-After``) a
request whose expected completion, the work queued ahead of it plus its own, lies past its
deadline (the queue policy of Triton's max queue delay and of Ray Serve's backpressure). The
tile limit stays, as a memory bound.

Throughput is kept per tile shape: traffic holds few shapes (one camera, one plate), and a tile
of 64x64 does not cost a sixteenth of one of 256x256 (a forward pass has a fixed part). A shape
not seen yet is costed per pixel from those that were. The estimate is seeded by the warm-up
plan's measurement and follows the batches as they run: the first batches of a shape count in
full, later ones with a fixed weight, so a machine that slows down under other load is followed
within a few batches.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field

RECENT_WEIGHT = 0.2  # the weight of each new batch in the moving average
DEVIATIONS = 2.0  # a tile is costed at its mean time plus this many mean deviations
# A request is admitted only if the expected wait fits within this share of its remaining time:
# the estimate is a moving average, and the request still needs its post-processing after.
ADMIT_SHARE = 0.75


@dataclass
class _Average:
    """A moving mean and mean deviation (as TCP estimates its round-trip time)."""

    value: float
    deviation: float = 0.0
    samples: int = 0

    def add(self, sample: float) -> None:
        self.samples += 1
        # The first samples count in full (a running mean), so a poor seed is replaced at once.
        weight = max(RECENT_WEIGHT, 1.0 / self.samples)
        if self.samples > 1:
            self.deviation += weight * (abs(sample - self.value) - self.deviation)
        self.value += weight * (sample - self.value)

    @property
    def cautious(self) -> float:
        """The mean plus DEVIATIONS mean deviations: a forward pass slowed by other load on the
        machine is within it, so an admitted request finishes in time."""
        return self.value + DEVIATIONS * self.deviation


@dataclass
class Throughput:
    """Seconds one worker spends per tile, by tile shape, measured as batches run."""

    seconds_per_pixel: float  # the seed, then the average over every shape: for new shapes
    workers: int = 1
    per_shape: dict[tuple[int, ...], _Average] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._per_pixel = _Average(self.seconds_per_pixel)

    def observe(self, shape: tuple[int, ...], tiles: int, seconds: float) -> None:
        if tiles <= 0 or not math.isfinite(seconds) or seconds < 0:
            return
        per_tile = seconds / tiles
        self.per_shape.setdefault(shape, _Average(per_tile)).add(per_tile)
        self._per_pixel.add(per_tile / math.prod(shape))
        self.seconds_per_pixel = self._per_pixel.value

    def tile_seconds(self, shape: tuple[int, ...]) -> float:
        known = self.per_shape.get(shape)
        return known.cautious if known else math.prod(shape) * self.seconds_per_pixel

    def seconds_for(self, tiles: Iterable[tuple[tuple[int, ...], int]]) -> float:
        """Wall seconds to run ``(shape, count)`` tiles with every worker busy."""
        return sum(self.tile_seconds(shape) * count for shape, count in tiles) / self.workers


def admits(expected_wait_s: float, remaining_s: float, backlog_tiles: int) -> bool:
    """Whether a request expected to finish ``expected_wait_s`` from now fits its deadline.

    With nothing queued ahead the request is always tried: the estimate of its own cost is the
    least reliable part, and an idle service that refused work would serve nobody."""
    return backlog_tiles == 0 or expected_wait_s <= ADMIT_SHARE * remaining_s


def retry_after(seconds: float) -> int:
    """A ``Retry-After`` in whole seconds, at least 1."""
    return max(1, math.ceil(seconds)) if math.isfinite(seconds) else 60
