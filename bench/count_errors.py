"""Where the served counts go wrong, per validation set: missed, merged, fragments, false.

    .venv/bin/python bench/count_errors.py --sets ood:aitslab ood:dsb-group:large-dark:heldout

Counts each image as the service does (size model beside the checkpoint, second pass, clumps
cut) and
splits the difference between predicted and true counts into its kinds
(``model_training.count_errors``): predicted - true = false + fragments - missed - merged.
"Missed specks" are missed nuclei under a quarter of the image's median true area. No
training, no choice: a diagnostic for deciding what to work on.
"""

from __future__ import annotations

import numpy as np
from served_map import served_bench, served_map  # bench/served_map.py, beside this script

from model_training.count_errors import count_errors_by_kind
from model_training.validation_sets import load_validation_set

SPECK = 0.25  # a missed nucleus under this share of the median true area is a speck


def main() -> None:
    args, model, record, estimator = served_bench(__doc__.split("\n")[0])
    print("| set | images | true | predicted | missed (specks) | merged | fragments | false |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for spec in args.sets:
        totals = np.zeros(7, int)
        images = load_validation_set(spec, record.normalization)
        for item in images:
            cells = served_map(model, record, item.image, estimator)[3]
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
