"""How close the per-image nucleus size estimate comes to the truth, across magnifications.

    .venv/bin/python bench/size_estimate_accuracy.py [--data ../shared/datasets/dsb2018-fluo-train]

Takes the DSB2018 val + test images of the shipped checkpoints' split (never trained on), resizes
each by 0.25x-4x (image bilinear, labels nearest; a crop keeps enlarged images under 1400 px),
and compares ``estimate_diameter`` with the true median equivalent diameter of the masks.
Prints a markdown table of the log-ratio per resize factor.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from PIL import Image

from model_training.checkpoint import read_record
from model_training.image_io import read_image, read_labels
from model_training.scale import estimate_diameter, resize_plane

FACTORS = (0.25, 0.5, 1.0, 2.0, 4.0)


def resize_labels(labels: np.ndarray, factor: float) -> np.ndarray:
    size = (max(1, round(labels.shape[1] * factor)), max(1, round(labels.shape[0] * factor)))
    return np.asarray(Image.fromarray(labels.astype(np.int32)).resize(size, Image.NEAREST))


def true_diameter(labels: np.ndarray) -> float | None:
    areas = np.bincount(labels.ravel())[1:]
    areas = areas[areas > 0]
    return float(np.median(2 * np.sqrt(areas / np.pi))) if areas.size else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/datasets/dsb2018-fluo-train"))
    parser.add_argument("--checkpoint", type=Path, default=Path("weights/unet32.safetensors"))
    args = parser.parse_args()
    record = read_record(args.checkpoint)
    names = record.data["split"]["val"] + record.data["split"]["test"]
    ratios: dict[float, list[float]] = {factor: [] for factor in FACTORS}
    seconds = []
    for name in names:
        image = record.normalization.apply(read_image(args.data / "images" / name))
        labels = read_labels(args.data / "masks" / name)
        for factor in FACTORS:
            crop = int(1400 / factor)
            plane, truth_labels = image[:crop, :crop], labels[:crop, :crop]
            if factor != 1.0:
                plane = resize_plane(plane, factor)
                truth_labels = resize_labels(truth_labels, factor)
            truth = true_diameter(truth_labels)
            if truth is None:
                continue
            start = time.perf_counter()
            estimate = estimate_diameter(plane).diameter_px
            seconds.append(time.perf_counter() - start)
            if estimate:
                ratios[factor].append(float(np.log(estimate / truth)))
    print(f"{len(names)} images, estimate median {1e3 * np.median(seconds):.1f} ms")
    print("| resize | images | median log-ratio | within 1.5x | within 2x |")
    print("|---|---:|---:|---:|---:|")
    for factor, values in ratios.items():
        logs = np.abs(np.array(values))
        print(
            f"| {factor:g}x | {len(values)} | {np.median(values):+.2f} | "
            f"{np.mean(logs < np.log(1.5)):.0%} | {np.mean(logs < np.log(2)):.0%} |"
        )


if __name__ == "__main__":
    main()
