"""``cellcount``: count cells in many images, or segment one, against a running service.

``cellcount count DIR_OR_FILE... --output results.csv`` sends one file per request, several at
once, so a large folder keeps the server's batcher full and one bad file costs only its own row.
``--group REGEX`` adds a CSV of per-group totals (the wells of a plate), ``--cells`` one of
every cell.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

import httpx
from tqdm import tqdm

from model_training.image_io import IMAGE_SUFFIXES as IMAGE_FILE_SUFFIXES
from model_training.image_io import VENDOR_SUFFIXES
from service.cli.client import (
    DEFAULT_TIMEOUT_S,
    SEGMENT_FORMATS,
    SEGMENT_OUTPUTS,
    AsyncCellCountClient,
    CellCountClient,
    CellCountError,
)
from service.cli.plate import SUMMARY_COLUMNS, group_columns, group_totals

IMAGE_SUFFIXES = frozenset(IMAGE_FILE_SUFFIXES) | frozenset(VENDOR_SUFFIXES)
CSV_COLUMNS = (
    "filename",
    "count",
    "width",
    "height",
    "channel",
    "channel_name",
    "z",
    "t",
    "position",
    "pixel_size_um",
    "image_area_mm2",
    "density_per_mm2",
    "mean_cell_area_um2",
    "error",
)
PLANE_COLUMNS = ("channel", "channel_name", "z", "t", "position")
DEFAULT_URL = "http://127.0.0.1:8000"


def probability(text: str) -> float:
    value = float(text)
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError("must be between 0 and 1 (exclusive)")
    return value


def non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must be >= 0")
    return value


def positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be >= 1")
    return value


def positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError("must be > 0")
    return value


def z_plane(text: str) -> int | str:
    if text == "max":
        return text
    return non_negative(text)


def regex(text: str) -> re.Pattern[str]:
    try:
        return re.compile(text)
    except re.error as error:
        raise argparse.ArgumentTypeError(f"not a regular expression: {error}") from error


def common_options() -> argparse.ArgumentParser:
    """Connection and post-processing flags shared by both subcommands."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument(
        "--url",
        default=os.environ.get("CELLCOUNT_URL", DEFAULT_URL),
        help="service base URL (default: $CELLCOUNT_URL or %(default)s)",
    )
    parser.add_argument(
        "--api-key",
        default=os.environ.get("CELLCOUNT_API_KEY"),
        help="sent as a Bearer token (default: $CELLCOUNT_API_KEY)",
    )
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S, help="seconds")
    parser.add_argument("--threshold", type=probability, help="cell probability threshold")
    parser.add_argument("--min-area", type=non_negative, help="smallest cell, in pixels")
    parser.add_argument("--split-touching", action="store_true", help="split touching cells")
    parser.add_argument(
        "--exclude-border", action="store_true", help="do not count cells cut by the image edge"
    )
    plane = parser.add_argument_group("plane and scale (microscope files)")
    plane.add_argument(
        "--channel",
        help="channel index or name (e.g. DAPI); default: the one "
        "channel named like a nuclear stain",
    )
    plane.add_argument("--z", type=z_plane, help="Z plane index, or 'max' (maximum projection)")
    plane.add_argument("--t", type=non_negative, help="time point index")
    plane.add_argument(
        "--position", type=non_negative, help="scene, XY point or series of a multi-position file"
    )
    plane.add_argument(
        "--pixel-size-um",
        type=positive_float,
        help="micrometres per pixel (wins over the file's metadata)",
    )
    plane.add_argument(
        "--diameter",
        type=positive_float,
        help="nucleus diameter in pixels (default: estimated per image)",
    )
    plane.add_argument(
        "--diameter-um",
        type=positive_float,
        help="nucleus diameter in micrometres (needs the pixel size)",
    )
    return parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cellcount", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    common = common_options()

    count = commands.add_parser("count", parents=[common], help="count cells in many images")
    count.add_argument("paths", nargs="+", type=Path, help="image files or folders (recursive)")
    count.add_argument("--concurrency", type=positive, default=8, help="requests in flight")
    count.add_argument("-o", "--output", type=Path, help="results file (default: stdout)")
    count.add_argument(
        "--format", choices=("csv", "json"), help="default: from --output's suffix, else csv"
    )
    count.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    count.add_argument(
        "--group",
        type=regex,
        help="regular expression read from each path, e.g. '_(?P<well>[A-P]\\d{2})_': writes "
        "per-group totals to --group-output",
    )
    count.add_argument(
        "--group-output", type=Path, help="per-group CSV (default: <output>.groups.csv)"
    )
    count.add_argument(
        "--each-position",
        action="store_true",
        help="count every position (scene, XY point, series) of multi-position files, one row "
        "each (asks POST /inspect first)",
    )
    count.add_argument(
        "--cells",
        type=Path,
        help="also write a per-cell CSV (area, centroid, bbox; in um and um^2 when the pixel "
        "size is known)",
    )

    inspect = commands.add_parser(
        "inspect", parents=[common], help="what files hold: positions, axes, channels, pixel size"
    )
    inspect.add_argument("files", nargs="+", type=Path, help="image or microscope files")

    segment = commands.add_parser("segment", parents=[common], help="segment one image")
    segment.add_argument("file", type=Path, help="the image")
    segment.add_argument("-o", "--output", type=Path, required=True, help="PNG or TIFF to write")
    segment.add_argument("--output-kind", choices=SEGMENT_OUTPUTS, default="mask")
    segment.add_argument(
        "--format",
        choices=SEGMENT_FORMATS,
        help="default: tiff for a .tif/.tiff output, else png (32-bit labels need tiff)",
    )
    return parser


def post_options(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "threshold": args.threshold,
        "min_area": args.min_area,
        "split_touching": args.split_touching,
        "exclude_border": args.exclude_border,
        "channel": args.channel,
        "z": args.z,
        "t": args.t,
        "position": args.position,
        "pixel_size_um": args.pixel_size_um,
        "diameter": args.diameter,
        "diameter_um": args.diameter_um,
    }


def is_image(path: Path) -> bool:
    """Image suffixes only, skipping dot-files (e.g. macOS ``._x.png`` resource forks)."""
    return (
        path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")
    )


def collect_images(paths: Sequence[Path]) -> list[Path]:
    """Folders expand to their images, sorted; anything else is kept as given, so a missing
    or non-image file still gets a row saying why instead of vanishing from the results."""
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found.extend(sorted(p for p in path.rglob("*") if is_image(p)))
        else:
            found.append(path)
    return found


def describe(error: Exception) -> str:
    if isinstance(error, CellCountError):
        return f"{error.code}: {error.message}"
    return f"{type(error).__name__}: {error}"


async def count_row(
    client: AsyncCellCountClient, path: Path, options: dict[str, Any]
) -> dict[str, Any]:
    """One output row; failures become the row's ``error`` rather than aborting the run."""
    try:
        result = await client.count_file(path, **options)
    except (CellCountError, httpx.HTTPError, OSError) as error:
        failed = dict.fromkeys(CSV_COLUMNS)
        return {**failed, "filename": str(path), "error": describe(error)}
    plane = result.get("plane") or {}
    return {
        **result,
        **{key: plane.get(key) for key in PLANE_COLUMNS},
        "filename": str(path),
        "error": None,
    }


async def positions_of(client: AsyncCellCountClient, path: Path) -> list[int | None]:
    """Every position of a multi-position file; [None] for others, or when the file cannot be
    inspected (its count row then says why)."""
    try:
        data = await asyncio.to_thread(path.read_bytes)
        info = await client.inspect_bytes(path.name, data)
    except (CellCountError, httpx.HTTPError, OSError):
        return [None]
    return list(range(info["positions"])) if info["positions"] > 1 else [None]


async def count_all(paths: list[Path], args: argparse.Namespace) -> list[dict[str, Any]]:
    """Rows in input order (positions in order within a file); at most ``--concurrency``
    requests in flight."""
    semaphore = asyncio.Semaphore(args.concurrency)
    options = {**post_options(args), "include_cells": True if args.cells else None}
    client = AsyncCellCountClient(
        args.url, args.api_key, args.timeout, max_connections=args.concurrency
    )
    async with client:
        jobs: list[tuple[Path, int | None]] = [(path, args.position) for path in paths]
        if args.each_position:

            async def expand(path: Path) -> list[tuple[Path, int | None]]:
                async with semaphore:
                    return [(path, position) for position in await positions_of(client, path)]

            jobs = [job for found in await asyncio.gather(*map(expand, paths)) for job in found]
        with tqdm(total=len(jobs), unit="img", file=sys.stderr, disable=args.quiet) as bar:

            async def one(path: Path, position: int | None) -> dict[str, Any]:
                async with semaphore:
                    row = await count_row(client, path, {**options, "position": position})
                bar.update()
                return row

            return list(await asyncio.gather(*(one(*job) for job in jobs)))


def write_csv(
    rows: list[dict[str, Any]], stream: TextIO, columns: Sequence[str] = CSV_COLUMNS
) -> None:
    writer = csv.DictWriter(stream, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)


def write_json(rows: list[dict[str, Any]], stream: TextIO) -> None:
    """The CSV columns first, then everything else the server reported (tiles, timings...)."""
    ordered = [{**{key: row.get(key) for key in CSV_COLUMNS}, **row} for row in rows]
    json.dump(ordered, stream, indent=2)
    stream.write("\n")


def write_results(rows: list[dict[str, Any]], fmt: str, output: Path | None) -> None:
    write = write_json if fmt == "json" else write_csv
    if output is None:
        write(rows, sys.stdout)
        return
    with output.open("w", newline="", encoding="utf-8") as stream:
        write(rows, stream)


def write_groups(rows: list[dict[str, Any]], pattern: re.Pattern[str], output: Path) -> None:
    totals = group_totals(rows, pattern)
    columns = (*group_columns(pattern), *SUMMARY_COLUMNS)
    with output.open("w", newline="", encoding="utf-8") as stream:
        write_csv(totals, stream, columns)
    unmatched = sum(all(not total[c] for c in group_columns(pattern)) for total in totals)
    if unmatched:
        print(
            "cellcount: some paths match no --group; their totals have an empty group",
            file=sys.stderr,
        )


CELL_COLUMNS = (
    "filename",
    "id",
    "area_px",
    "area_um2",
    "x_px",
    "y_px",
    "x_um",
    "y_um",
    "bbox_x",
    "bbox_y",
    "bbox_width",
    "bbox_height",
)


def cell_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per cell of every counted image, in image order."""
    table = []
    for row in rows:
        size = row.get("pixel_size_um")
        for cell in row.get("cells") or []:
            x, y = cell["centroid"]
            table.append(
                {
                    "filename": row["filename"],
                    "id": cell["id"],
                    "area_px": cell["area"],
                    "area_um2": cell.get("area_um2"),
                    "x_px": x,
                    "y_px": y,
                    "x_um": None if size is None else round(x * size, 4),
                    "y_um": None if size is None else round(y * size, 4),
                    **dict(zip(CELL_COLUMNS[-4:], cell["bbox"], strict=True)),
                }
            )
    return table


def run_count(args: argparse.Namespace) -> int:
    paths = collect_images(args.paths)
    if not paths:
        print("cellcount: no images found", file=sys.stderr)
        return 2
    fmt = args.format or ("json" if args.output and args.output.suffix == ".json" else "csv")
    group_output = args.group_output
    if args.group is not None and group_output is None:
        if args.output is None:
            print("cellcount: --group needs --output or --group-output", file=sys.stderr)
            return 2
        group_output = args.output.with_name(args.output.stem + ".groups.csv")
    rows = asyncio.run(count_all(paths, args))
    try:
        write_results(rows, fmt, args.output)
        if args.group is not None:
            write_groups(rows, args.group, group_output)
        if args.cells is not None:
            with args.cells.open("w", newline="", encoding="utf-8") as stream:
                write_csv(cell_rows(rows), stream, CELL_COLUMNS)
    except OSError as error:
        print(f"cellcount: cannot write results: {error}", file=sys.stderr)
        return 2
    failed = sum(row["error"] is not None for row in rows)
    if failed:
        print(f"cellcount: {failed} of {len(rows)} images failed", file=sys.stderr)
    return 1 if failed else 0


def run_inspect(args: argparse.Namespace) -> int:
    found, failed = [], 0
    with CellCountClient(args.url, args.api_key, args.timeout) as client:
        for path in args.files:
            try:
                found.append(client.inspect(path, args.position))
            except (CellCountError, httpx.HTTPError, OSError) as error:
                print(f"cellcount: {path}: {describe(error)}", file=sys.stderr)
                failed += 1
    json.dump(found, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 1 if failed else 0


def run_segment(args: argparse.Namespace) -> int:
    try:
        with CellCountClient(args.url, args.api_key, args.timeout) as client:
            tiff = args.output.suffix.lower() in (".tif", ".tiff")
            fmt = args.format or ("tiff" if tiff else "png")
            image, count = client.segment(args.file, args.output_kind, fmt, **post_options(args))
        args.output.write_bytes(image)
    except (CellCountError, httpx.HTTPError, OSError) as error:
        print(f"cellcount: {describe(error)}", file=sys.stderr)
        return 1
    print(count)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Exit status: 0 all good, 1 some image failed, 2 bad usage or unwritable output."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exit_:
        return exit_.code if isinstance(exit_.code, int) else 2
    commands = {"count": run_count, "inspect": run_inspect, "segment": run_segment}
    return commands[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
