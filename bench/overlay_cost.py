"""What drawing the /segment overlay costs: the outline, its dark rim, and the PNG encoding.

    .venv/bin/python bench/overlay_cost.py [--side 2048] [--cells 2000] [--repeats 7]

A generated field of ``--cells`` nuclei, ``--side`` pixels square; median milliseconds of each
step over ``--repeats`` runs, and the rim's share of the overlay before encoding.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np

from model_training.synthetic import SyntheticConfig, generate_sample
from service.files.imaging import (
    OUTLINE_RGB,
    display_plane,
    outlines,
    overlay_png,
    overlay_rgb,
)


def outline_only(plane: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """The overlay as it was before the rim: the baseline of the same run."""
    rgb = np.repeat(display_plane(plane)[..., None], 3, axis=-1)
    rgb[outlines(labels)] = OUTLINE_RGB
    return rgb


def median_ms(step: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return 1e3 * float(np.median(times))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--side", type=int, default=2048)
    parser.add_argument("--cells", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    config = SyntheticConfig(
        height=args.side, width=args.side, min_cells=args.cells, max_cells=args.cells
    )
    sample = generate_sample(3, config)
    plane, labels = sample.image.astype(np.float32), sample.labels
    before = median_ms(lambda: outline_only(plane, labels), args.repeats)
    now = median_ms(lambda: overlay_rgb(plane, labels), args.repeats)
    encoded = median_ms(lambda: overlay_png(plane, labels), args.repeats)
    print(f"{args.side}x{args.side}, {sample.count} cells, median of {args.repeats}")
    print("| step | ms |")
    print("|---|---:|")
    print(f"| outline only (before the rim) | {before:.1f} |")
    print(f"| outline + rim (served) | {now:.1f} |")
    print(f"| outline + rim + PNG encoding | {encoded:.1f} |")
    print(f"rim: +{now - before:.1f} ms ({(now - before) / before:.0%} of the drawing)")


if __name__ == "__main__":
    main()
