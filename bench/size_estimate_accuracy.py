"""How close the nucleus size estimates come to the truth, per validation set.

    .venv/bin/python bench/size_estimate_accuracy.py [--checkpoint weights/unet32.safetensors]

Sets (none of them fitted on): the real other-lab images (``ood:aitslab``, when its folder is
there), the DSB2018 val + test images of the checkpoints' split resized by 0.25x-4x (image
bilinear, labels nearest; a crop keeps enlarged images under 1400 px), and the generated hard
cases of ``model_training.size_cases`` (validation seeds). For each image: the true median
equivalent diameter of the masks, the image-statistics estimate (``scale.estimate_diameter``)
and, with a size model beside the checkpoint, the network's (``size_model``). The probe
features are cached (``--cache``, keyed by the weights), so a refitted size model is re-scored
without network time.
Prints, per set and estimator, the share within 1.25x / 1.5x / 2x and the 5th/50th/95th
percentile of estimate / truth.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from model_training.checkpoint import load_checkpoint
from model_training.feature_cache import cache_key, load_cache, save_cache
from model_training.image_io import read_image, read_labels
from model_training.scale import estimate_diameter, resize_plane
from model_training.size_cases import SIZE_CASES, VALIDATION_SEEDS
from model_training.size_model import (
    FEATURES_PER_PROBE,
    PROBES,
    SizeModel,
    image_features,
    size_model_path,
)
from model_training.synthetic import generate_sample
from model_training.validation_sets import aitslab_folder, dsb_folder

FACTORS = (0.25, 0.5, 1.0, 2.0, 4.0)
CASE_IMAGES = 12


def resize_labels(labels: np.ndarray, factor: float) -> np.ndarray:
    size = (max(1, round(labels.shape[1] * factor)), max(1, round(labels.shape[0] * factor)))
    return np.asarray(Image.fromarray(labels.astype(np.int32)).resize(size, Image.NEAREST))


def true_diameter(labels: np.ndarray) -> float | None:
    areas = np.bincount(labels.ravel())[1:]
    areas = areas[areas > 0]
    return float(np.median(2 * np.sqrt(areas / np.pi))) if areas.size else None


def validation_images(record, dsb_images: int | None = None):
    """(set, name, normalized image, true diameter) of every validation image;
    ``dsb_images``: an evenly spaced subsample of the DSB val + test images (None: all)."""
    folder = aitslab_folder()
    if (folder / "images").is_dir():
        for path in sorted((folder / "images").glob("*.png")):
            truth = true_diameter(read_labels(folder / "masks" / path.name))
            yield "aitslab", path.name, record.normalization.apply(read_image(path)), truth
    data = dsb_folder()
    names = sorted(record.data["split"]["val"] + record.data["split"]["test"])
    if dsb_images is not None and dsb_images < len(names):
        picks = np.unique(np.round(np.linspace(0, len(names) - 1, dsb_images)).astype(int))
        names = [names[i] for i in picks]
    for name in names:
        image = record.normalization.apply(read_image(data / "images" / name))
        labels = read_labels(data / "masks" / name)
        for factor in FACTORS:
            crop = int(1400 / factor)
            plane, truth_labels = image[:crop, :crop], labels[:crop, :crop]
            if factor != 1.0:
                plane = resize_plane(plane, factor)
                truth_labels = resize_labels(truth_labels, factor)
            truth = true_diameter(truth_labels)
            if truth is not None:
                yield f"dsb-{factor:g}x", name, plane, truth
    for case, config in SIZE_CASES.items():
        for index in range(CASE_IMAGES):
            sample = generate_sample(VALIDATION_SEEDS + index, config)
            truth = true_diameter(sample.labels)
            yield f"case-{case}", str(index), record.normalization.apply(sample.image), truth


def table(sets: np.ndarray, ratios: dict[str, np.ndarray]) -> None:
    print("| set | images | estimator | within 1.25x | within 1.5x | within 2x | p5 / p50 / p95 |")
    print("|---|---:|---|---:|---:|---:|---|")
    for name in [*dict.fromkeys(sets), "all"]:
        pick = np.ones(len(sets), bool) if name == "all" else sets == name
        for estimator, ratio in ratios.items():
            r = ratio[pick]
            logs = np.abs(np.log(np.where(np.isfinite(r), r, 1e-6)))
            p5, p50, p95 = np.nanpercentile(r, (5, 50, 95)) if np.isfinite(r).any() else (0,) * 3
            print(
                f"| {name} | {pick.sum()} | {estimator} | {np.mean(logs < np.log(1.25)):.0%} | "
                f"{np.mean(logs < np.log(1.5)):.0%} | {np.mean(logs < np.log(2)):.0%} | "
                f"{p5:.2f} / {p50:.2f} / {p95:.2f} |"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", type=Path, default=Path("weights/unet32.safetensors"))
    parser.add_argument("--cache", type=Path, default=Path("runs/size-validation.npz"))
    parser.add_argument("--size-model", type=Path, help="default: beside the checkpoint")
    parser.add_argument("--dsb-images", type=int, help="evenly spaced subsample of DSB val+test")
    args = parser.parse_args()
    model, record = load_checkpoint(args.checkpoint)
    torch.set_grad_enabled(False)
    key = cache_key(args.checkpoint, args.dsb_images)
    cached = load_cache(args.cache, key)
    if cached is not None:
        sets, names = cached["sets"], cached["names"]
        truths, stats, features = cached["truths"], cached["stats"], cached["features"]
    else:
        rows = []
        for set_name, name, image, truth in validation_images(record, args.dsb_images):
            estimate = estimate_diameter(image).diameter_px
            rows.append((set_name, name, truth, estimate or np.nan, image_features(model, image)))
            if len(rows) % 25 == 0:
                print(f"{len(rows)} images", file=sys.stderr, flush=True)
        sets = np.array([r[0] for r in rows])
        names = np.array([r[1] for r in rows])
        truths = np.array([r[2] for r in rows])
        stats = np.array([r[3] for r in rows])
        features = np.stack([r[4] for r in rows])
        save_cache(
            args.cache, key, sets=sets, names=names, truths=truths, stats=stats, features=features
        )
    ratios = {"image statistics": stats / truths}
    path = args.size_model or size_model_path(args.checkpoint)
    if path.exists():
        size_model = SizeModel.load(path)
        found = features[:, 2::FEATURES_PER_PROBE][:, : len(PROBES)].any(1) | (features[:, -1] > 0)
        network = np.where(found, np.exp(size_model.predict_log(features)), np.nan)
        ratios["network (size model)"] = network / truths
    print(f"{len(truths)} images, checkpoint {args.checkpoint.name}, size model {path.name}")
    table(sets, ratios)


if __name__ == "__main__":
    main()
