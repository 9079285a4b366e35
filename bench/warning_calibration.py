"""How well the quality warnings separate bad counts from good ones, per threshold.

    .venv/bin/python bench/warning_calibration.py runs/size-network/per_image.csv

Reads the per-image CSV that ``cellcount-evaluate`` writes (its warnings, ambiguous and
foreground shares), re-decides the two threshold warnings (``ambiguous_foreground``,
``mostly_foreground``) for every pair of thresholds on a grid, keeps the size warnings as
served, and scores each pair on the even-numbered images: share of bad counts warned minus
twice the share of good counts warned (bad: off by more than 25 %). The best pair is then
checked on the odd-numbered images. Nothing here trains or runs the model.
"""

from __future__ import annotations

import argparse
import csv
import math
from dataclasses import dataclass
from pathlib import Path

THRESHOLD_WARNINGS = {"ambiguous_foreground", "mostly_foreground"}
AMBIGUOUS_GRID = (0.45, 0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.9, 1.0)
FOREGROUND_GRID = (0.2, 0.25, 0.3, 0.35, 0.4, 0.5)


@dataclass(frozen=True)
class Row:
    bad: bool
    size_warned: bool
    ambiguous: float
    foreground: float


def read_rows(path: Path, tolerance: float) -> list[Row]:
    rows = []
    with path.open(newline="") as stream:
        for record in csv.DictReader(stream):
            true, predicted = int(record["true_count"]), int(record["pred_count"])
            codes = set(record["warnings"].split())
            rows.append(
                Row(
                    bad=abs(predicted - true) > tolerance * max(1, true),
                    size_warned=bool(codes - THRESHOLD_WARNINGS),
                    ambiguous=float(record["ambiguous_fraction"] or "nan"),
                    foreground=float(record["foreground_fraction"] or "nan"),
                )
            )
    return rows


def warned(row: Row, ambiguous: float, foreground: float) -> bool:
    # NaN compares False: an image with no candidate foreground is not warned for its share.
    return row.size_warned or row.ambiguous > ambiguous or row.foreground > foreground


def rates(rows: list[Row], ambiguous: float, foreground: float) -> tuple[float, float, int, int]:
    bad = [row for row in rows if row.bad]
    good = [row for row in rows if not row.bad]

    def share(group: list[Row]) -> float:
        if not group:
            return math.nan
        return sum(warned(r, ambiguous, foreground) for r in group) / len(group)

    return share(bad), share(good), len(bad), len(good)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("csv", type=Path, help="per_image.csv of cellcount-evaluate")
    parser.add_argument(
        "--tolerance", type=float, default=0.25, help="relative error of a bad count"
    )
    args = parser.parse_args(argv)
    rows = read_rows(args.csv, args.tolerance)
    even, odd = rows[0::2], rows[1::2]
    print(f"{len(rows)} images, {sum(r.bad for r in rows)} off by more than {args.tolerance:.0%}")
    print("| ambiguous > | foreground > | even: bad warned | good warned | score |")
    print("|---:|---:|---:|---:|---:|")
    best: tuple[float, float, float] | None = None
    for ambiguous in AMBIGUOUS_GRID:
        for foreground in FOREGROUND_GRID:
            bad, good, _, _ = rates(even, ambiguous, foreground)
            score = bad - 2 * good
            print(f"| {ambiguous} | {foreground} | {bad:.0%} | {good:.0%} | {score:+.3f} |")
            if best is None or score > best[0]:
                best = (score, ambiguous, foreground)
    assert best is not None
    _, ambiguous, foreground = best
    for label, part in (("even (searched)", even), ("odd (held out)", odd), ("all", rows)):
        bad, good, n_bad, n_good = rates(part, ambiguous, foreground)
        print(
            f"chosen ambiguous > {ambiguous}, foreground > {foreground}: {label}: "
            f"{bad:.0%} of {n_bad} bad counts warned, {good:.0%} of {n_good} good ones"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
