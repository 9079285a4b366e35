"""Per-group totals of a folder's counts: the wells of a high-content screen's plate.

``cellcount count --group '_(?P<well>[A-P]\\d{2})_'`` reads the group from each file's path
with a regular expression. Named groups become columns (``well``, or ``row`` and ``column``);
without one, the first group (else the whole match) is the ``group`` column. A file that does not
match is reported under an empty group, so no image drops out of the totals unseen.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

SUMMARY_COLUMNS = (
    "images",
    "failed",
    "count_total",
    "count_mean",
    "area_mm2",
    "density_per_mm2",
)


def group_columns(pattern: re.Pattern[str]) -> tuple[str, ...]:
    return tuple(pattern.groupindex) or ("group",)


def group_key(pattern: re.Pattern[str], path: str) -> tuple[str, ...]:
    """The row's group values; empty strings when the path does not match."""
    columns = group_columns(pattern)
    match = pattern.search(path)
    if match is None:
        return ("",) * len(columns)
    if pattern.groupindex:
        return tuple(match.group(name) or "" for name in columns)
    return ((match.group(1) if pattern.groups else match.group(0)) or "",)


@dataclass
class GroupTotal:
    images: int = 0
    failed: int = 0
    counts: list[int] = field(default_factory=list)
    area_mm2: float | None = 0.0  # None once an image of unknown pixel size is in the group

    def add(self, row: dict[str, Any]) -> None:
        self.images += 1
        if row.get("error") is not None:
            self.failed += 1
            return
        self.counts.append(int(row["count"]))
        area = row.get("image_area_mm2")
        self.area_mm2 = None if area is None or self.area_mm2 is None else self.area_mm2 + area

    def summary(self) -> dict[str, Any]:
        total = sum(self.counts)
        area = self.area_mm2 if self.counts else None
        return {
            "images": self.images,
            "failed": self.failed,
            "count_total": total,
            "count_mean": round(total / len(self.counts), 3) if self.counts else None,
            "area_mm2": None if area is None else round(area, 6),
            "density_per_mm2": round(total / area, 3) if area else None,
        }


def group_totals(rows: Iterable[dict[str, Any]], pattern: re.Pattern[str]) -> list[dict[str, Any]]:
    """One summary per group, sorted by group (the unmatched, empty one first)."""
    totals: dict[tuple[str, ...], GroupTotal] = {}
    for row in rows:
        totals.setdefault(group_key(pattern, str(row["filename"])), GroupTotal()).add(row)
    columns = group_columns(pattern)
    return [
        {**dict(zip(columns, key, strict=True)), **totals[key].summary()} for key in sorted(totals)
    ]
