"""Out-of-domain validation sets: synthetic sets, the grouping rule, the spec loader.

No test reads the shared DSB2018 folder: DSB specs run on a generated folder and a groups CSV
written for it; the committed CSV is checked for its shape only.
"""

from __future__ import annotations

import csv

import numpy as np
import pytest

from model_training.data import nucleus_diameters, split_names
from model_training.normalization import PercentileNormalization
from model_training.validation_sets import (
    GROUPS,
    GROUPS_CSV,
    OOD_SEED_BASE,
    SYNTHETIC_SETS,
    TRAINING_DIAMETER_PX,
    acquisition_group,
    folder_statistics,
    leave_one_group_out,
    load_validation_set,
    read_groups,
    synthetic_set,
    validation_specs,
    write_groups,
)

NORM = PercentileNormalization()


@pytest.mark.parametrize(
    ("name", "factor"),
    [("scale-0.25x", 0.25), ("scale-0.5x", 0.5), ("scale-1x", 1.0), ("scale-4x", 4.0)],
)
def test_scale_sets_have_nuclei_at_their_factor_of_the_training_size(name, factor):
    items = load_validation_set(f"ood:synthetic-{name}", NORM)
    assert len(items) == SYNTHETIC_SETS[name].images
    median, _ = nucleus_diameters([item.labels for item in items])
    assert median == pytest.approx(factor * TRAINING_DIAMETER_PX, rel=0.12)
    assert all(item.image.dtype == np.float32 and item.count > 0 for item in items)


def test_sets_stay_small_enough_to_evaluate_quickly():
    for name, spec in SYNTHETIC_SETS.items():
        pixels = spec.images * spec.config.height * spec.config.width
        # 0.25x is upscaled 4x at inference: its native pixels count 16 times.
        weight = 16 if name == "scale-0.25x" else 1
        assert pixels * weight <= 5.3e6, name


def test_synthetic_sets_are_fixed_and_use_their_own_seeds():
    first = synthetic_set("dim", NORM)
    again = synthetic_set("dim", NORM)
    assert [a.name for a in first] == [b.name for b in again]
    for a, b in zip(first, again, strict=True):
        assert np.array_equal(a.image, b.image) and np.array_equal(a.labels, b.labels)
    seeds = [spec.seed(i) for spec in SYNTHETIC_SETS.values() for i in range(spec.images)]
    assert len(set(seeds)) == len(seeds) and min(seeds) >= OOD_SEED_BASE


def test_tissue_set_has_few_nuclei_and_a_lit_background():
    items = synthetic_set("tissue", NORM)
    counts = [item.count for item in items]
    assert max(counts) <= 8 and min(counts) == 0
    # The texture is well above the dark background of a plain image.
    plain = synthetic_set("scale-1x", NORM)
    lit = np.median([np.percentile(i.image[i.labels == 0], 90) for i in items])
    dark = np.median([np.percentile(i.image[i.labels == 0], 90) for i in plain])
    assert lit > dark + 0.15


def test_dense_set_packs_many_nuclei():
    items = synthetic_set("dense", NORM)
    cover = np.mean([np.mean(item.labels > 0) for item in items])
    assert np.median([item.count for item in items]) > 60 and cover > 0.3


def test_acquisition_group_rule():
    assert acquisition_group(10.0, 3.0) == "small-dark"
    assert acquisition_group(15.99, 13.0) == "small-grey"
    assert acquisition_group(16.0, 10.0) == "medium-dark"
    assert acquisition_group(31.9, 10.5) == "medium-grey"
    assert acquisition_group(47.0, 5.0) == "large-dark"
    assert acquisition_group(32.0, 20.0) == "large-grey"
    assert set(GROUPS) == {
        f"{s}-{b}" for s in ("small", "medium", "large") for b in ("dark", "grey")
    }


def test_committed_groups_csv_covers_the_folder_with_known_groups():
    groups = read_groups(GROUPS_CSV)
    assert len(groups) == 541
    assert set(groups.values()) == set(GROUPS)
    assert all(name.endswith(".png") for name in groups)


def test_leave_one_group_out_partitions_every_fold():
    groups = {f"n{i}.png": GROUPS[i % 3] for i in range(30)}
    folds = leave_one_group_out(groups)
    assert set(folds) == set(GROUPS[:3])
    for group, fold in folds.items():
        assert sorted(fold["train"] + fold["heldout"]) == sorted(groups)
        assert all(groups[name] == group for name in fold["heldout"])
        assert not set(fold["train"]) & set(fold["heldout"])


@pytest.fixture
def grouped_folder(tmp_path, labelled_folder):
    statistics = folder_statistics(labelled_folder)
    path = tmp_path / "groups.csv"
    write_groups(statistics, path)
    return labelled_folder, path, statistics


def test_group_specs_load_their_files_and_split_subsets(grouped_folder):
    folder, path, statistics = grouped_folder
    with path.open() as handle:
        rows = list(csv.DictReader(handle))
    assert [row["filename"] for row in rows] == [s.name for s in statistics]
    group = statistics[0].group
    members = sorted(s.name for s in statistics if s.group == group)
    items = load_validation_set(f"ood:dsb-group:{group}", NORM, folder, path)
    assert sorted(item.name for item in items) == members
    split = split_names([s.name for s in statistics], (0.75, 0.1, 0.15), 0)
    heldout = load_validation_set(f"ood:dsb-group:{group}:heldout", NORM, folder, path)
    assert {item.name for item in heldout} == set(members) & set(split["val"] + split["test"])
    with pytest.raises(ValueError, match="unknown DSB group"):
        load_validation_set("ood:dsb-group:huge-pink", NORM, folder, path)


def test_rescaled_specs_scale_nuclei_and_cap_the_size(labelled_folder):
    names = sorted(p.name for p in (labelled_folder / "images").iterdir())
    split = split_names(names, (0.75, 0.1, 0.15), 0)
    plain = load_validation_set("ood:dsb-rescaled-1x:heldout", NORM, labelled_folder)
    double = load_validation_set("ood:dsb-rescaled-2x:heldout", NORM, labelled_folder)
    assert len(plain) == len(double) == len(split["val"] + split["test"])
    for one, two in zip(plain, double, strict=True):
        assert two.image.shape == (2 * one.image.shape[0], 2 * one.image.shape[1])
        assert two.count == one.count
        assert np.count_nonzero(two.labels) == pytest.approx(
            4 * np.count_nonzero(one.labels), rel=0.1
        )
        assert two.labels.max() == two.count  # compact numbering
    eightfold = load_validation_set("ood:dsb-rescaled-8x:val", NORM, labelled_folder)
    assert all(max(item.image.shape) <= 512 for item in eightfold)


def test_bad_specs_are_refused():
    for spec in ("ood:synthetic-scale-3x", "ood:dsb-rescaled-20x", "ood:whatever", "dsb"):
        with pytest.raises(ValueError):
            load_validation_set(spec, NORM)
    assert "ood:synthetic-scale-4x" in validation_specs()
    assert "ood:dsb-group:large-grey" in validation_specs()
