"""Evaluation CLI and functions: count errors, Dice and object F1 on held-out images.

    cellcount-evaluate --checkpoint weights/unet16.safetensors \
        --data ../shared/datasets/dsb2018-fluo-train --subset test --output runs/eval-dsb

``--subset test`` takes exactly the file names the checkpoint records as its held-out split, so a
model-card figure can only come from images the model never saw. Synthetic test sets
(``synthetic:N[:HxW]``) use a seed range that training and validation never draw from.
Out-of-domain sets (``ood:...``, ``model_training/validation_sets.py``) are read by their spec;
``--suite ood`` runs all of them and prints one table (DSB groups on the held-out split only).

Counting is scale-aware as in the service (``--diameter auto``, the default): each image is
resized so its nuclei reach the training size, then labelled and mapped back.
``--diameter native`` reproduces the figures from before scale-aware counting.
"""

from __future__ import annotations

import argparse
import csv
import json
import shlex
import sys
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from model_training.checkpoint import CheckpointRecord, load_checkpoint, update_record
from model_training.counting import label_cells
from model_training.data import (
    LabelledImage,
    load_folder,
    parse_synthetic,
    synthetic_image,
)
from model_training.inference import Cells, predict_probabilities, segment_image
from model_training.metrics import count_errors, dice, match_objects
from model_training.normalization import PercentileNormalization
from model_training.plots import plot_counts, save_overlay
from model_training.size_model import SizeModel, size_model_path
from model_training.validation_sets import load_validation_set, missing_data, validation_specs


@dataclass
class ImageResult:
    filename: str
    true_count: int
    pred_count: int
    dice: float
    true_positives: int
    f1: float
    scale: float = 1.0  # the resize the network saw the image at
    warnings: str = ""  # quality warnings, space-separated codes
    diameter_px: float = float("nan")  # estimated nucleus diameter
    network_diameter_px: float = float("nan")  # median cell diameter as the network saw it
    ambiguous_fraction: float = float("nan")
    foreground_fraction: float = float("nan")

    @property
    def abs_error(self) -> int:
        return abs(self.pred_count - self.true_count)


def score_image(
    item: LabelledImage,
    probabilities: np.ndarray,
    threshold: float,
    min_area: int,
    split_touching: bool = False,
) -> ImageResult:
    pred = label_cells(probabilities, threshold, min_area, split_touching=split_touching)
    return score_labels(item, pred)


def score_labels(item: LabelledImage, pred: np.ndarray, cells: Cells | None = None) -> ImageResult:
    match = match_objects(item.labels, pred)
    return ImageResult(
        filename=item.name,
        true_count=match.n_true,
        pred_count=match.n_pred,
        dice=dice(item.labels > 0, pred > 0),
        true_positives=match.true_positives,
        f1=match.f1,
        **(_quality_fields(cells) if cells is not None else {}),
    )


def _quality_fields(cells: Cells) -> dict[str, float | str]:
    quality = cells.quality
    return {
        "scale": round(cells.plan.scale, 4),
        "warnings": " ".join(w.code for w in quality.warnings),
        "diameter_px": quality.diameter_px if quality.diameter_px is not None else float("nan"),
        "network_diameter_px": (
            quality.network_diameter_px if quality.network_diameter_px is not None else float("nan")
        ),
        "ambiguous_fraction": quality.ambiguous_fraction,
        "foreground_fraction": quality.foreground_fraction,
    }


def summarize(results: list[ImageResult]) -> dict[str, float]:
    """Dataset-level figures; object F1 pools matches over all images (micro average)."""
    true = np.array([r.true_count for r in results])
    pred = np.array([r.pred_count for r in results])
    tp = sum(r.true_positives for r in results)
    summary = {"n_images": len(results), **count_errors(true, pred)}
    summary["dice"] = float(np.mean([r.dice for r in results])) if results else float("nan")
    total = int(true.sum() + pred.sum())
    summary["object_f1_iou50"] = 2 * tp / total if total else 1.0
    summary["object_precision_iou50"] = tp / int(pred.sum()) if pred.sum() else float("nan")
    summary["object_recall_iou50"] = tp / int(true.sum()) if true.sum() else float("nan")
    return summary


def predict_all(
    model: torch.nn.Module,
    images: Iterable[LabelledImage],
    device: torch.device,
    precision: str,
    progress: bool = True,
) -> Iterator[tuple[LabelledImage, np.ndarray]]:
    for item in tqdm(images, desc="predict", disable=not progress, leave=False):
        yield item, predict_probabilities(model, item.image, device, precision)


def calibrate(
    predictions: list[tuple[LabelledImage, np.ndarray]],
    thresholds: Iterable[float] = (0.3, 0.4, 0.5, 0.6, 0.7),
    min_areas: Iterable[int] = (0, 4, 8, 12, 16, 24, 32),
) -> tuple[float, int, dict[str, float]]:
    """Pick the threshold and minimum area with the best pooled F1 (then lowest count MAE).

    Meant for the validation split only: choosing them on the test split would leak.
    """
    best: tuple[tuple[float, float], float, int, dict[str, float]] | None = None
    for threshold in thresholds:
        for min_area in min_areas:
            summary = summarize(
                [score_image(item, probs, threshold, min_area) for item, probs in predictions]
            )
            key = (summary["object_f1_iou50"], -summary["count_mae"])
            if best is None or key > best[0]:
                best = (key, threshold, min_area, summary)
    assert best is not None
    return best[1], best[2], best[3]


def load_eval_images(
    spec: str, subset: str, record: CheckpointRecord, normalization: PercentileNormalization
) -> list[LabelledImage]:
    if spec.startswith("ood:"):
        return load_validation_set(spec, normalization)
    synthetic = parse_synthetic(spec)
    if synthetic is not None:
        split = "test" if subset in ("all", "test") else subset
        return [synthetic_image(synthetic, split, i, normalization) for i in range(synthetic.count)]
    if subset == "all":
        return load_folder(spec, normalization)
    split = record.data.get("split", {})
    names = split.get(subset)
    if not names:
        raise SystemExit(f"the checkpoint records no '{subset}' split; use --subset all")
    return load_folder(spec, normalization, names=names)


def write_rows(results: list[ImageResult], path: Path) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow([*asdict(results[0]).keys(), "abs_error"] if results else [])
        for result in results:
            writer.writerow([*asdict(result).values(), result.abs_error])


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="cellcount-evaluate", description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", required=True, type=Path)
    data = parser.add_mutually_exclusive_group(required=True)
    data.add_argument("--data", help="labelled folder, synthetic:N[:HxW] or an ood:... spec")
    data.add_argument(
        "--suite",
        choices=["ood"],
        help="every out-of-domain validation set, one table (DSB groups: held-out split)",
    )
    parser.add_argument(
        "--sets",
        nargs="+",
        metavar="SPEC",
        help="with --suite: only these sets of it (e.g. ood:aitslab)",
    )
    parser.add_argument(
        "--subset",
        default="all",
        choices=["all", "train", "val", "test"],
        help="for a folder: the split recorded in the checkpoint (default: every image)",
    )
    parser.add_argument("--output", type=Path, default=Path("runs/eval"))
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    parser.add_argument("--threshold", type=float, help="override the checkpoint's threshold")
    parser.add_argument(
        "--min-area",
        type=int,
        help="override the checkpoint's minimum area, in image pixels (as the service's min_area)",
    )
    parser.add_argument(
        "--split-touching", action="store_true", help="watershed split of every object"
    )
    parser.add_argument(
        "--no-split-clumps",
        action="store_true",
        help="leave objects far larger than the image's typical one whole (the counting "
        "before clumps were cut; the service always cuts them)",
    )
    parser.add_argument(
        "--size-model",
        default="auto",
        help="with --diameter auto: 'auto' (as the service: the checkpoint's <stem>.size.json "
        "where it exists, else image statistics), 'none' (image statistics), 'beside' (that "
        "file, required) or a path: estimate sizes from the network's probes",
    )
    parser.add_argument(
        "--keep-unsure",
        action="store_true",
        help="do not apply the checkpoint's rejection rules (the service's reject_unsure=false)",
    )
    parser.add_argument(
        "--diameter",
        default="auto",
        help="nucleus diameter in px: auto (estimate per image, as the service), a number, "
        "or native (no resize: the figures from before scale-aware counting)",
    )
    parser.add_argument(
        "--worst",
        type=int,
        default=0,
        metavar="N",
        help="with --suite: write overlays of the N worst-counted images to OUTPUT/worst/",
    )
    parser.add_argument(
        "--record-as",
        metavar="NAME",
        help="store the summary in the checkpoint's record under metrics[NAME]",
    )
    args = parser.parse_args(argv)
    if args.diameter not in ("auto", "native"):
        try:
            args.diameter = float(args.diameter)
        except ValueError:
            parser.error(f"--diameter must be auto, native or a number, got {args.diameter!r}")
    return args


def evaluate_set(
    model: torch.nn.Module,
    record: CheckpointRecord,
    images: list[LabelledImage],
    args: argparse.Namespace,
    device: torch.device,
) -> list[ImageResult]:
    results = []
    for item in tqdm(images, desc="evaluate", leave=False):
        cells = segment_with_args(model, record, item.image, args, device)
        results.append(score_labels(item, cells.labels, cells))
    return results


def segment_with_args(
    model: torch.nn.Module,
    record: CheckpointRecord,
    image: np.ndarray,
    args: argparse.Namespace,
    device: torch.device,
) -> Cells:
    """One image counted as the command line asks: scoring and the worst overlays must count
    the same way."""
    return segment_image(
        model,
        record,
        image,
        args.diameter,
        device,
        args.precision,
        args.threshold,
        args.min_area,
        args.split_touching,
        reject_unsure=not args.keep_unsure,
        size_model=getattr(args, "loaded_size_model", None),
        split_clumps=not getattr(args, "no_split_clumps", False),
    )


def suite_specs(suite: str) -> list[str]:
    """The sets of a suite; DSB groups restricted to the held-out split (val + test) of the
    shipped checkpoints, whose train split they would otherwise include."""
    assert suite == "ood"
    return [
        f"{spec}:heldout" if spec.startswith("ood:dsb-group:") else spec
        for spec in validation_specs()
    ]


def warning_rates(results: list[ImageResult], tolerance: float = 0.25) -> dict[str, float]:
    """How well the quality warnings separate bad counts (relative error > ``tolerance``)
    from good ones: the share of bad images warned about, and of good images warned about."""
    bad = [r for r in results if r.abs_error > tolerance * max(1, r.true_count)]
    good = [r for r in results if r.abs_error <= tolerance * max(1, r.true_count)]
    return {
        "bad_images": len(bad),
        "warned_bad": sum(bool(r.warnings) for r in bad) / len(bad) if bad else float("nan"),
        "good_images": len(good),
        "warned_good": sum(bool(r.warnings) for r in good) / len(good) if good else float("nan"),
    }


def run_suite(
    model: torch.nn.Module,
    record: CheckpointRecord,
    args: argparse.Namespace,
    device: torch.device,
    command: str,
) -> int:
    rows, everything = [], []
    worst: list[tuple[float, str, LabelledImage]] = []  # (relative error, set, image)
    for spec in suite_specs(args.suite):
        if args.sets and spec not in args.sets:
            continue
        reason = missing_data(spec)
        if reason is not None:
            print(f"skipped {reason}", flush=True)
            continue
        images = load_eval_images(spec, "all", record, record.normalization)
        results = evaluate_set(model, record, images, args, device)
        for item, result in zip(images, results, strict=True):
            result.filename = f"{spec}/{result.filename}"
            signed = (result.pred_count - result.true_count) / max(1, result.true_count)
            worst.append((signed, spec, item))
        worst = sorted(worst, key=lambda entry: -abs(entry[0]))[: args.worst]
        everything += results
        summary = summarize(results)
        rows.append({"set": spec, **summary, **warning_rates(results)})
        print(
            f"{spec:36s} n={summary['n_images']:3d} F1 {summary['object_f1_iou50']:.3f} "
            f"rel.err {summary['mean_relative_count_error']:.3f}",
            flush=True,
        )
    args.output.mkdir(parents=True, exist_ok=True)
    write_rows(everything, args.output / "per_image.csv")
    if worst:
        write_worst(model, record, worst, args, device, args.output / "worst")
    report = {"sets": rows, "warnings_all": warning_rates(everything), "command": command}
    (args.output / "summary.json").write_text(json.dumps(report, indent=2))
    print(
        "| set | images | object F1 | mean relative count error | count MAE | warned (bad / good) |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for row in rows:
        print(
            f"| {row['set']} | {row['n_images']} | {row['object_f1_iou50']:.3f} | "
            f"{100 * row['mean_relative_count_error']:.1f} % | {row['count_mae']:.2f} | "
            f"{row['warned_bad']:.2f} / {row['warned_good']:.2f} |"
        )
    print("warnings over all sets:", json.dumps(report["warnings_all"]))
    return 0


def write_worst(
    model: torch.nn.Module,
    record: CheckpointRecord,
    worst: list[tuple[float, str, LabelledImage]],
    args: argparse.Namespace,
    device: torch.device,
    folder: Path,
) -> None:
    """Overlays of the worst-counted images (predicted yellow, true cyan), worst first."""
    folder.mkdir(parents=True, exist_ok=True)
    for rank, (error, spec, item) in enumerate(worst, start=1):
        cells = segment_with_args(model, record, item.image, args, device)
        count = int(cells.labels.max(initial=0))
        title = (
            f"{spec} {item.name}: {item.count} true, {count} counted ({error:+.0%}), "
            f"scale {cells.plan.scale:.2f}, warnings: "
            f"{' '.join(w.code for w in cells.quality.warnings) or 'none'}"
        )
        save_overlay(item.image, cells.labels, item.labels, folder / f"{rank:02d}.png", title)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    device = torch.device(
        ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    )
    model, record = load_checkpoint(args.checkpoint, device)
    args.loaded_size_model = None
    beside = size_model_path(args.checkpoint)
    if args.size_model == "auto":
        args.size_model = "beside" if beside.is_file() else "none"
    if args.size_model != "none":
        args.loaded_size_model = SizeModel.load(
            beside if args.size_model == "beside" else args.size_model
        )
    command = shlex.join(["cellcount-evaluate", *(sys.argv[1:] if argv is None else argv)])
    if args.suite:
        return run_suite(model, record, args, device, command)
    threshold = record.threshold if args.threshold is None else args.threshold
    min_area = record.min_area if args.min_area is None else args.min_area
    images = load_eval_images(args.data, args.subset, record, record.normalization)
    results = evaluate_set(model, record, images, args, device)
    summary = summarize(results)
    args.output.mkdir(parents=True, exist_ok=True)
    write_rows(results, args.output / "per_image.csv")
    plot_counts(
        [r.true_count for r in results],
        [r.pred_count for r in results],
        args.output / "counts.png",
        title=f"{Path(args.data).name} ({args.subset})",
    )
    report = {
        "summary": summary,
        "warnings": warning_rates(results),
        "data": args.data,
        "subset": args.subset,
        "threshold": threshold,
        "min_area": min_area,
        "split_touching": args.split_touching,
        "split_clumps": not args.no_split_clumps,
        "diameter": args.diameter,
        "size_model": args.size_model,
        "precision": args.precision,
        "device": str(device),
        "command": command,
    }
    (args.output / "summary.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))
    if args.record_as:
        metrics = {**record.metrics, args.record_as: report}
        update_record(args.checkpoint, metrics=metrics)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
