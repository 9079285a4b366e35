"""``cellcount-export``: a checkpoint to a bioimage.io package, or (``--import``) back.

    cellcount-export weights/unet16.safetensors -o dist/unet16.bioimageio.zip
    cellcount-export --import dist/unet16.bioimageio.zip -o unet16-from-zoo.safetensors

Nothing here touches the network: the package is written and checked locally, and uploading it
to the zoo is the user's step (README, "bioimage.io model package").
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="cellcount-export",
        description="Export a checkpoint as a bioimage.io model package (spec 0.5), or import "
        "such a package back into a checkpoint.",
    )
    parser.add_argument("checkpoint", nargs="?", type=Path, help="checkpoint (.safetensors)")
    parser.add_argument(
        "--import",
        dest="package",
        type=Path,
        help="read this package (folder's rdf.yaml or .zip) back into a checkpoint",
    )
    parser.add_argument(
        "-o",
        "--output",
        type=Path,
        required=True,
        help="export: a folder, or a file ending in .zip; import: the .safetensors to write",
    )
    parser.add_argument(
        "--card",
        type=Path,
        help="model card markdown (default: README.md beside the checkpoint)",
    )
    parser.add_argument(
        "--author",
        action="append",
        dest="authors",
        help="an author of the package (repeatable; default: 'cellcount contributors')",
    )
    parser.add_argument(
        "--halo",
        type=int,
        help="pixels a tiling consumer discards at tile edges (default: the checkpoint's "
        "tile_overlap, the service's tile margin)",
    )
    args = parser.parse_args(argv)
    if (args.checkpoint is None) == (args.package is None):
        parser.error("give either a checkpoint to export or --import PACKAGE")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        from model_training.zoo.export import DEFAULT_AUTHORS, export_package
        from model_training.zoo.package_import import import_package
    except ModuleNotFoundError as error:
        if not (error.name or "").startswith("bioimageio"):
            raise
        print(
            "cellcount-export needs the bioimageio extra: pip install 'cellcount[bioimageio]'",
            file=sys.stderr,
        )
        return 2
    if args.package is not None:
        imported = import_package(args.package, args.output)
        print(f"wrote {imported.path} ({imported.record.name})")
        for field, (before, after) in imported.changes.items():
            print(f"  {field}: record {before!r} -> package {after!r}")
        return 0
    result = export_package(
        args.checkpoint,
        args.output,
        card=args.card,
        authors=tuple(args.authors) if args.authors else DEFAULT_AUTHORS,
        halo=args.halo,
    )
    print(
        f"wrote {result.path}: test image counted {result.sample_count} nuclei "
        f"(drawn: {result.sample_truth}); TorchScript vs eager max difference "
        f"{result.graph_difference:.2g}. Check it with: bioimageio test {result.path}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
