"""Where the served counts go wrong, per validation set: missed, merged, fragments, false.

    .venv/bin/python bench/count_errors.py --sets ood:aitslab ood:dsb-group:large-dark:heldout

Counts each image as the service does (size model beside the checkpoint, clumps cut) and
splits the difference between predicted and true counts into its kinds
(``model_training.count_errors``): predicted - true = false + fragments - missed - merged.
"Missed specks" are missed nuclei under a quarter of the image's median true area. No
training, no choice: a diagnostic for deciding what to work on.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from model_training.checkpoint import load_checkpoint
from model_training.count_errors import count_errors_by_kind
from model_training.inference import segment_image
from model_training.size_model import SizeModel, size_model_path
from model_training.validation_sets import load_validation_set

SPECK = 0.25  # a missed nucleus under this share of the median true area is a speck


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", type=Path, default=Path("weights/unet32.safetensors"))
    parser.add_argument("--sets", nargs="+", required=True)
    args = parser.parse_args()
    model, record = load_checkpoint(args.checkpoint)
    torch.set_grad_enabled(False)
    beside = size_model_path(args.checkpoint)
    size_model = SizeModel.load(beside) if beside.is_file() else None
    print("| set | images | true | predicted | missed (specks) | merged | fragments | false |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for spec in args.sets:
        totals = np.zeros(7, int)
        images = load_validation_set(spec, record.normalization)
        for item in images:
            cells = segment_image(model, record, item.image, size_model=size_model)
            errors = count_errors_by_kind(item.labels, cells.labels)
            specks = sum(area < SPECK for area in errors.missed_relative_areas)
            totals += [
                errors.true,
                errors.predicted,
                errors.missed,
                specks,
                errors.merged,
                errors.fragments,
                errors.false,
            ]
        true, predicted, missed, specks, merged, fragments, false = totals.tolist()
        print(
            f"| {spec} | {len(images)} | {true} | {predicted} | {missed} ({specks}) | {merged} "
            f"| {fragments} | {false} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
