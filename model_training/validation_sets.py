"""Out-of-domain validation sets: DSB2018 acquisition groups, rescaled DSB, synthetic shifts.

The in-domain figures come from a split of the same experiments the model trained on; users
send other microscopes, magnifications and samples. These sets stand in for that, so every
threshold and recipe change can be chosen on validation that is not the training domain:

- ``ood:dsb-group:<group>[:<subset>]`` — one acquisition group of the DSB2018 folder (see
  ``acquisition_group``; the group of every file is committed in ``GROUPS_CSV``). ``subset`` is
  ``all`` (default: for leave-one-group-out training), or ``train``/``val``/``test``/``heldout``
  (val + test) of the standard seed-0 split (for checkpoints trained on that split).
- ``ood:dsb-rescaled-<factor>x[:<subset>]`` — DSB images of the seed-0 split resized by
  ``factor`` (image bilinear, labels nearest), centre-cropped to at most 512x512 after resizing.
  ``subset`` is ``sample`` (default: 40 evenly spaced val + test images), ``val``, ``test`` or
  ``heldout`` (all val + test).
- ``ood:aitslab`` — real images from another lab: 50 Hoechst-stained U2OS fields (1104x1104,
  nuclei ~44 px; Arvidsson, Aits et al., Data in Brief 2022), read from
  ``$CELLCOUNT_AITSLAB`` or ``../shared/datasets/aitslab-u2os-hoechst``. Validation only: never
  trained on, never committed; the suite skips it (saying so) where the folder is absent.
- ``ood:synthetic-<name>`` — fixed synthetic sets (``SYNTHETIC_SETS``) with seeds from a range
  disjoint from training, validation and test: nuclei at 0.25x-4x the training nucleus size,
  tissue-like backgrounds with few nuclei, debris and haze, dense packing, dim nuclei, defocus.

``python -m model_training.validation_sets groups FOLDER`` rewrites the groups CSV;
``python -m model_training.validation_sets list`` prints every spec with its image count.
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import re
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from model_training.data import (
    LabelledImage,
    folder_pairs,
    load_folder,
    resample,
    split_names,
)
from model_training.image_io import read_image, read_labels
from model_training.normalization import PercentileNormalization
from model_training.synthetic import SyntheticConfig, generate_sample
from model_training.targets import separated_foreground

REPO_ROOT = Path(__file__).resolve().parent.parent
GROUPS_CSV = REPO_ROOT / "docs" / "validation" / "dsb2018-groups.csv"
DSB_FOLDER_ENV = "CELLCOUNT_DSB2018"
DEFAULT_DSB_FOLDER = REPO_ROOT.parent / "shared" / "datasets" / "dsb2018-fluo-train"
AITSLAB_SPEC = "ood:aitslab"
AITSLAB_FOLDER_ENV = "CELLCOUNT_AITSLAB"
DEFAULT_AITSLAB_FOLDER = REPO_ROOT.parent / "shared" / "datasets" / "aitslab-u2os-hoechst"

# The grouping rule: nucleus size class x background class (documented in docs/validation.md).
SMALL_BELOW_PX, LARGE_FROM_PX = 16.0, 32.0  # median equivalent diameter of the image's nuclei
DARK_UP_TO = 10.0  # median non-nucleus pixel, 8-bit units: the histogram has a gap at 8-12
GROUPS = tuple(
    f"{size}-{background}"
    for size in ("small", "medium", "large")
    for background in ("dark", "grey")
)

# The standard split of the DSB folder (the shipped checkpoints' record `data.split`).
STANDARD_SPLIT = {"fractions": (0.75, 0.1, 0.15), "seed": 0}
RESCALED_SAMPLE = 40  # images of the default ``dsb-rescaled`` subset
RESCALED_MAX_SIDE = 512

TRAINING_DIAMETER_PX = 20.06
"""Median nucleus diameter of the DSB train split (the shipped checkpoint's record)."""

# Drawn radii that give a measured median diameter ~ the target: outlines are ellipses with
# aspect up to 1.43 and neighbours cover part of each other, so nuclei measure ~10 % smaller.
_RADIUS_PER_DIAMETER = 0.5 * 1.11

# Above the synthetic train/val/test ranges (0, 1e9, 2e9): never generated for training.
OOD_SEED_BASE = 3_000_000_000
_SEEDS_PER_SET = 10_000_000


@dataclass(frozen=True)
class SyntheticSet:
    """A fixed synthetic validation set: ``images`` images of ``config``, seeds from ``slot``."""

    slot: int  # position in the OOD seed range; fixed per set so adding sets changes nothing
    images: int
    config: SyntheticConfig
    description: str

    def seed(self, index: int) -> int:
        return OOD_SEED_BASE + self.slot * _SEEDS_PER_SET + index


def _at_scale(factor: float, side: int, cells: tuple[int, int], slot: int) -> SyntheticSet:
    """Nuclei ``factor`` x the training diameter; counts chosen to cover a similar share."""
    radius = TRAINING_DIAMETER_PX * _RADIUS_PER_DIAMETER
    config = SyntheticConfig(
        height=side,
        width=side,
        min_cells=cells[0],
        max_cells=cells[1],
        radius_range=(0.8 * radius, 1.2 * radius),
        scale=factor,
    )
    return SyntheticSet(
        slot, 24, config, f"{side}x{side}, nuclei {factor:g}x the training diameter"
    )


_RADIUS = TRAINING_DIAMETER_PX * _RADIUS_PER_DIAMETER
_TRAINING_SIZE = SyntheticConfig(radius_range=(0.8 * _RADIUS, 1.2 * _RADIUS))
SYNTHETIC_SETS: dict[str, SyntheticSet] = {
    "scale-0.25x": replace(_at_scale(0.25, 128, (60, 160), slot=0), images=20),
    "scale-0.5x": _at_scale(0.5, 192, (30, 90), slot=1),
    "scale-1x": _at_scale(1.0, 256, (10, 50), slot=2),
    "scale-2x": _at_scale(2.0, 384, (5, 25), slot=3),
    "scale-4x": replace(_at_scale(4.0, 512, (3, 10), slot=4), images=20),
    "tissue": SyntheticSet(
        5,
        24,
        replace(_TRAINING_SIZE, min_cells=0, max_cells=8, tissue=0.55),
        "256x256, autofluorescent tissue texture, 0-8 nuclei",
    ),
    "clutter": SyntheticSet(
        6,
        24,
        replace(_TRAINING_SIZE, min_cells=5, max_cells=40, debris=30, haze=10, tissue=0.25),
        "256x256, debris specks, out-of-focus haze, faint tissue",
    ),
    "dense": SyntheticSet(
        7,
        24,
        replace(_TRAINING_SIZE, dense=True),
        "256x256, nuclei packed edge to edge in patches",
    ),
    "dim": SyntheticSet(
        8,
        24,
        replace(_TRAINING_SIZE, min_cells=20, max_cells=60, dim_fraction=0.3),
        "256x256, 30 % of the nuclei at 0.1-0.3 of full brightness",
    ),
    "defocus": SyntheticSet(
        9,
        16,
        replace(_TRAINING_SIZE, height=384, width=384, min_cells=20, max_cells=60, defocus=0.6),
        "384x384, 20-60 nuclei blurred by 0.6 nucleus radii (heavy defocus, as BBBC005's worst)",
    ),
}


def synthetic_set(name: str, normalization: PercentileNormalization) -> list[LabelledImage]:
    """The images of one ``SYNTHETIC_SETS`` entry, normalized; identical on every call."""
    if name not in SYNTHETIC_SETS:
        raise ValueError(f"unknown synthetic set {name!r}; known: {', '.join(SYNTHETIC_SETS)}")
    spec = SYNTHETIC_SETS[name]
    items = []
    for index in range(spec.images):
        sample = generate_sample(spec.seed(index), spec.config)
        items.append(
            LabelledImage(
                name=f"ood-synthetic-{name}-{index:03d}.png",
                image=normalization.apply(sample.image),
                labels=sample.labels,
                target=separated_foreground(sample.labels),
            )
        )
    return items


# ---- DSB2018 acquisition groups ---------------------------------------------------------------


@dataclass(frozen=True)
class ImageStatistics:
    """What the grouping looks at, per image: geometry, intensity levels, nucleus size."""

    name: str
    height: int
    width: int
    background: float  # median pixel outside the masks, in the file's units
    foreground: float  # median pixel inside the masks
    diameter_px: float  # median equivalent diameter of the image's nuclei
    count: int

    @property
    def group(self) -> str:
        return acquisition_group(self.diameter_px, self.background)


def acquisition_group(diameter_px: float, background: float) -> str:
    """``<size>-<background>``: small (< 16 px), medium (16-32 px) or large (>= 32 px) median
    nucleus diameter, and a dark (<= 10 of 255) or grey (raised, offset) background.

    In DSB2018 these two numbers separate the acquisition types: the image geometry follows
    them (360x360 and 512x640 images are all large-dark; the grey backgrounds are the 256x256
    and 520x696 sets with a camera offset), and nucleus size is what a model sees.
    """
    if diameter_px < SMALL_BELOW_PX:
        size = "small"
    elif diameter_px < LARGE_FROM_PX:
        size = "medium"
    else:
        size = "large"
    return f"{size}-{'dark' if background <= DARK_UP_TO else 'grey'}"


def image_statistics(name: str, image: np.ndarray, labels: np.ndarray) -> ImageStatistics:
    areas = np.bincount(np.asarray(labels).ravel())[1:]
    areas = areas[areas > 0]
    inside = labels > 0
    diameter = float(np.median(2.0 * np.sqrt(areas / math.pi))) if areas.size else 0.0
    return ImageStatistics(
        name=name,
        height=int(image.shape[0]),
        width=int(image.shape[1]),
        background=float(np.median(image[~inside])) if (~inside).any() else 0.0,
        foreground=float(np.median(image[inside])) if inside.any() else 0.0,
        diameter_px=round(diameter, 2),
        count=int(areas.size),
    )


def folder_statistics(folder: str | Path) -> list[ImageStatistics]:
    """Statistics of every labelled image of a folder, in file-name order."""
    return [
        image_statistics(image.name, read_image(image), read_labels(mask))
        for image, mask in sorted(folder_pairs(folder))
    ]


_CSV_FIELDS = ("filename", "group", "height", "width", "background", "foreground", "diameter_px")


def write_groups(statistics: list[ImageStatistics], path: str | Path = GROUPS_CSV) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow([*_CSV_FIELDS, "count"])
        for row in statistics:
            writer.writerow(
                [
                    row.name,
                    row.group,
                    row.height,
                    row.width,
                    f"{row.background:g}",
                    f"{row.foreground:g}",
                    f"{row.diameter_px:g}",
                    row.count,
                ]
            )


def read_groups(path: str | Path = GROUPS_CSV) -> dict[str, str]:
    """File name -> acquisition group, from the committed CSV."""
    with Path(path).open(newline="") as handle:
        return {row["filename"]: row["group"] for row in csv.DictReader(handle)}


def leave_one_group_out(groups: dict[str, str]) -> dict[str, dict[str, list[str]]]:
    """Per group: ``heldout`` (its own files) and ``train`` (every other file), sorted."""
    folds = {}
    for group in sorted(set(groups.values())):
        folds[group] = {
            "train": sorted(name for name, g in groups.items() if g != group),
            "heldout": sorted(name for name, g in groups.items() if g == group),
        }
    return folds


def standard_split(names: list[str]) -> dict[str, list[str]]:
    """The seed-0 train/val/test split every shipped checkpoint was trained with."""
    return split_names(names, STANDARD_SPLIT["fractions"], STANDARD_SPLIT["seed"])


# ---- the loader --------------------------------------------------------------------------------


def dsb_folder(folder: str | Path | None = None) -> Path:
    """The DSB2018 folder: the argument, else ``$CELLCOUNT_DSB2018``, else ``../shared``."""
    if folder is not None:
        return Path(folder)
    return Path(os.environ.get(DSB_FOLDER_ENV, DEFAULT_DSB_FOLDER))


def aitslab_folder(folder: str | Path | None = None) -> Path:
    """The aitslab folder: the argument, else ``$CELLCOUNT_AITSLAB``, else ``../shared``."""
    if folder is not None:
        return Path(folder)
    return Path(os.environ.get(AITSLAB_FOLDER_ENV, DEFAULT_AITSLAB_FOLDER))


def missing_data(spec: str) -> str | None:
    """Why a set cannot be loaded on this machine (its folder is absent), or None."""
    if spec == AITSLAB_SPEC and not (aitslab_folder() / "images").is_dir():
        return f"{spec}: no folder {aitslab_folder()} (set ${AITSLAB_FOLDER_ENV})"
    return None


def _split_subset(names: list[str], subset: str) -> list[str]:
    split = standard_split(names)
    if subset in split:
        return split[subset]
    if subset == "heldout":
        return sorted(split["val"] + split["test"])
    raise ValueError(f"unknown subset {subset!r}")


def _rescaled(
    item: LabelledImage, factor: float, normalization: PercentileNormalization
) -> LabelledImage:
    """Resize a labelled image by ``factor`` (centre-cropped to RESCALED_MAX_SIDE afterwards);
    the crop is taken from the source first so large upscales stay cheap."""
    height, width = item.image.shape
    side = math.floor(RESCALED_MAX_SIDE / factor)
    top, left = max(0, (height - side) // 2), max(0, (width - side) // 2)
    image = item.image[top : top + side, left : left + side]
    labels = item.labels[top : top + side, left : left + side]
    shape = (round(image.shape[0] * factor), round(image.shape[1] * factor))
    image, labels = resample(image, labels, factor, shape)
    # Renormalize: the service normalizes the image it receives, not the original one.
    image = normalization.apply(image)
    # Relabel 1..n: nuclei cut away or shrunk below a pixel leave no gap in the numbering.
    ids = np.union1d([0], labels)
    labels = np.searchsorted(ids, labels).astype(np.int32)
    return LabelledImage(
        name=f"{Path(item.name).stem}-x{factor:g}.png",
        image=image,
        labels=labels,
        target=separated_foreground(labels),
    )


def load_validation_set(
    spec: str,
    normalization: PercentileNormalization,
    folder: str | Path | None = None,
    groups_csv: str | Path = GROUPS_CSV,
) -> list[LabelledImage]:
    """Load an out-of-domain validation set by its spec string (see the module docstring).

    ``folder`` is the DSB2018 folder (default: ``dsb_folder()``), or for ``ood:aitslab`` the
    aitslab folder (default: ``aitslab_folder()``); synthetic sets need none.
    """
    if spec.startswith("ood:synthetic-"):
        return synthetic_set(spec.removeprefix("ood:synthetic-"), normalization)
    if spec == AITSLAB_SPEC:
        return load_folder(aitslab_folder(folder), normalization)
    if spec.startswith("ood:dsb-group:"):
        parts = spec.removeprefix("ood:dsb-group:").split(":")
        if len(parts) > 2:
            raise ValueError(f"bad spec {spec!r}; expected ood:dsb-group:<group>[:<subset>]")
        group, subset = parts[0], parts[1] if len(parts) > 1 else "all"
        if group not in GROUPS:
            raise ValueError(f"unknown DSB group {group!r}; known: {', '.join(GROUPS)}")
        groups = read_groups(groups_csv)
        names = sorted(name for name, g in groups.items() if g == group)
        if subset != "all":
            wanted = set(_split_subset(sorted(groups), subset))
            names = [name for name in names if name in wanted]
        return load_folder(dsb_folder(folder), normalization, names)
    match = re.fullmatch(r"ood:dsb-rescaled-(?P<factor>[0-9.]+)x(?::(?P<subset>[a-z]+))?", spec)
    if match:
        factor = float(match["factor"])
        if not 0.1 <= factor <= 8:
            raise ValueError(f"rescale factor must be in [0.1, 8], got {factor:g}")
        root = dsb_folder(folder)
        names = sorted(image.name for image, _ in folder_pairs(root))
        subset = match["subset"] or "sample"
        if subset == "sample":
            heldout = _split_subset(names, "heldout")
            picks = np.linspace(0, len(heldout) - 1, min(RESCALED_SAMPLE, len(heldout)))
            chosen = [heldout[i] for i in np.unique(np.round(picks).astype(int))]
        else:
            chosen = _split_subset(names, subset)
        raw = PercentileNormalization(low=0.0, high=100.0)  # resample, then normalize as served
        return [_rescaled(item, factor, normalization) for item in load_folder(root, raw, chosen)]
    raise ValueError(
        f"unknown validation set {spec!r}; expected ood:aitslab, ood:synthetic-<name>, "
        "ood:dsb-group:<group>[:<subset>] or ood:dsb-rescaled-<factor>x[:<subset>]"
    )


def validation_specs() -> list[str]:
    """Every named set: the real other-lab one, the synthetic ones, the DSB groups and the
    usual rescalings."""
    return [
        AITSLAB_SPEC,
        *(f"ood:synthetic-{name}" for name in SYNTHETIC_SETS),
        *(f"ood:dsb-group:{group}" for group in GROUPS),
        *(f"ood:dsb-rescaled-{factor}x" for factor in ("0.5", "2", "4")),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    write = commands.add_parser("groups", help="group a DSB2018 folder and rewrite the CSV")
    write.add_argument("folder", type=Path, nargs="?", default=None)
    write.add_argument("--output", type=Path, default=GROUPS_CSV)
    commands.add_parser("list", help="print every spec with its number of images")
    args = parser.parse_args(argv)
    if args.command == "groups":
        statistics = folder_statistics(dsb_folder(args.folder))
        write_groups(statistics, args.output)
        sizes = {group: sum(s.group == group for s in statistics) for group in GROUPS}
        print(f"{len(statistics)} images -> {args.output}: {sizes}")
    else:
        groups = read_groups()
        for spec in validation_specs():
            if spec.startswith("ood:synthetic-"):
                count = SYNTHETIC_SETS[spec.removeprefix("ood:synthetic-")].images
            elif spec.startswith("ood:dsb-group:"):
                count = sum(g == spec.rsplit(":", 1)[1] for g in groups.values())
            elif spec == AITSLAB_SPEC:
                count = 0 if missing_data(spec) else len(folder_pairs(aitslab_folder()))
            else:
                count = RESCALED_SAMPLE
            print(f"{spec}\t{count}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
