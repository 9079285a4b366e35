"""Evaluation CLI and functions: count errors, Dice and object F1 on held-out images.

    cellcount-evaluate --checkpoint weights/unet16.safetensors \
        --data ../shared/datasets/dsb2018-fluo-train --subset test --output runs/eval-dsb

``--subset test`` takes exactly the file names the checkpoint records as its held-out split, so a
model-card figure can only come from images the model never saw. Synthetic test sets
(``synthetic:N[:HxW]``) use a seed range that training and validation never draw from.
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
from model_training.inference import predict_probabilities
from model_training.metrics import count_errors, dice, match_objects
from model_training.normalization import PercentileNormalization
from model_training.plots import plot_counts


@dataclass
class ImageResult:
    filename: str
    true_count: int
    pred_count: int
    dice: float
    true_positives: int
    f1: float

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
    match = match_objects(item.labels, pred)
    return ImageResult(
        filename=item.name,
        true_count=match.n_true,
        pred_count=match.n_pred,
        dice=dice(item.labels > 0, pred > 0),
        true_positives=match.true_positives,
        f1=match.f1,
    )


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
    parser.add_argument("--data", required=True, help="labelled folder or synthetic:N[:HxW]")
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
    parser.add_argument("--min-area", type=int, help="override the checkpoint's minimum area")
    parser.add_argument("--split-touching", action="store_true", help="watershed split of clumps")
    parser.add_argument(
        "--record-as",
        metavar="NAME",
        help="store the summary in the checkpoint's record under metrics[NAME]",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    device = torch.device(
        ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    )
    model, record = load_checkpoint(args.checkpoint, device)
    threshold = record.threshold if args.threshold is None else args.threshold
    min_area = record.min_area if args.min_area is None else args.min_area
    images = load_eval_images(args.data, args.subset, record, record.normalization)
    results = [
        score_image(item, probs, threshold, min_area, args.split_touching)
        for item, probs in predict_all(model, images, device, args.precision)
    ]
    summary = summarize(results)
    args.output.mkdir(parents=True, exist_ok=True)
    write_rows(results, args.output / "per_image.csv")
    plot_counts(
        [r.true_count for r in results],
        [r.pred_count for r in results],
        args.output / "counts.png",
        title=f"{Path(args.data).name} ({args.subset})",
    )
    command = shlex.join(["cellcount-evaluate", *(sys.argv[1:] if argv is None else argv)])
    report = {
        "summary": summary,
        "data": args.data,
        "subset": args.subset,
        "threshold": threshold,
        "min_area": min_area,
        "split_touching": args.split_touching,
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
