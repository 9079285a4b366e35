from dataclasses import replace

import numpy as np
import pytest

from model_training.data import (
    ContactWeighting,
    CropDataset,
    FixedCrops,
    augment_wide,
    folder_pairs,
    load_folder,
    nucleus_diameters,
    parse_synthetic,
    rescaled_crop,
    split_names,
    synthetic_image,
    wide_intensity,
    wide_synthetic_config,
)
from model_training.normalization import PercentileNormalization
from model_training.synthetic import SyntheticConfig, generate_sample
from model_training.targets import separated_foreground

NORM = PercentileNormalization()


def test_split_is_deterministic_disjoint_and_complete():
    names = [f"n{i}.png" for i in range(40)]
    split = split_names(names, (0.7, 0.1, 0.2), seed=3)
    assert split == split_names(list(reversed(names)), (0.7, 0.1, 0.2), seed=3)
    assert [len(split[k]) for k in ("train", "val", "test")] == [28, 4, 8]
    assert sorted(split["train"] + split["val"] + split["test"]) == sorted(names)
    assert split != split_names(names, (0.7, 0.1, 0.2), seed=4)
    with pytest.raises(ValueError, match="sum"):
        split_names(names, (0.5, 0.1, 0.1), 0)


def test_synthetic_spec_parsing():
    assert parse_synthetic("synthetic:12:32x48").count == 12
    assert parse_synthetic("synthetic:12:32x48").config.width == 48
    assert parse_synthetic("/data/folder") is None
    with pytest.raises(ValueError, match="synthetic:N"):
        parse_synthetic("synthetic:many")


def test_folder_loading_matches_by_name_and_normalizes(labelled_folder):
    (labelled_folder / "images" / "unmatched.png").write_bytes(b"not read")
    pairs = folder_pairs(labelled_folder)
    assert len(pairs) == 10 and all(i.stem == m.stem for i, m in pairs)
    items = load_folder(labelled_folder, NORM, names=["img00.png", "img03.png"])
    assert [i.name for i in items] == ["img00.png", "img03.png"]
    for item in items:
        assert item.image.dtype == np.float32
        assert np.percentile(item.image, 99.8) == pytest.approx(1.0, abs=1e-3)
        assert item.count == item.labels.max()


def test_synthetic_splits_never_share_images():
    spec = parse_synthetic("synthetic:2:64x64")
    val = synthetic_image(spec, "val", 0, NORM)
    test = synthetic_image(spec, "test", 0, NORM)
    assert not np.array_equal(val.image, test.image)
    assert np.array_equal(test.labels, synthetic_image(spec, "test", 0, NORM).labels)


def test_crop_dataset_is_reproducible_and_augments(labelled_folder):
    images = load_folder(labelled_folder, NORM)
    spec = parse_synthetic("synthetic:4:80x80")
    data = CropDataset(images, 8, spec, 48, NORM, seed=0)
    assert len(data) == 12
    data.set_epoch(1)
    first = [data[i] for i in (0, 9)]
    again = [data[i] for i in (0, 9)]
    data.set_epoch(2)
    other = data[0]
    for (image, target), (image2, target2) in zip(first, again, strict=True):
        assert image.shape == target.shape == (1, 48, 48)
        assert np.array_equal(image, image2) and np.array_equal(target, target2)
        assert set(np.unique(target.numpy())) <= {0.0, 1.0}
    assert not np.array_equal(first[0][0], other[0])


def test_small_images_are_padded_and_fixed_crops_are_stable(labelled_folder):
    images = load_folder(labelled_folder, NORM)[:2]
    crops = FixedCrops(images, 3, 96, seed=1)  # larger than the 64x64 images
    assert len(crops) == 6
    image, _target = crops[4]
    assert image.shape == (1, 96, 96)
    assert np.array_equal(crops[4][0], FixedCrops(images, 3, 96, seed=1)[4][0])


def test_fixed_crops_carry_the_contact_weights_of_their_own_labels(labelled_folder):
    images = load_folder(labelled_folder, NORM)[:2]
    plain = FixedCrops(images, 3, 48, seed=1)
    weighted = FixedCrops(images, 3, 48, seed=1, contact=ContactWeighting(5.0, 3.0))
    for index in range(len(plain)):
        image, target = weighted[index]
        assert target.shape == (2, 48, 48)
        assert np.array_equal(image, plain[index][0])
        assert np.array_equal(target[:1], plain[index][1])
        assert target[1].min() >= 1.0


# ---- the wide recipe ------------------------------------------------------------------------


def _disc_labels(size: int = 96, radius: float = 8.0) -> np.ndarray:
    yy, xx = np.mgrid[:size, :size]
    labels = np.zeros((size, size), np.int32)
    for number, (cy, cx) in enumerate(((30, 30), (30, 47), (70, 60)), start=1):
        labels[(yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2] = number
    return labels


@pytest.mark.parametrize("factor", [0.5, 1.0, 2.0])
def test_rescaled_crop_scales_nuclei_and_keeps_the_crop_size(factor):
    yy, xx = np.mgrid[:400, :400]
    labels = np.zeros((400, 400), np.int32)
    for number, (cy, cx) in enumerate(np.ndindex(10, 10), start=1):
        labels[(yy - 20 - 40 * cy) ** 2 + (xx - 20 - 40 * cx) ** 2 <= 8**2] = number
    image = np.where(labels > 0, 1.0, 0.0).astype(np.float32)
    crop, crop_labels = rescaled_crop(image, labels, 160, factor, np.random.default_rng(0))
    assert crop.shape == crop_labels.shape == (160, 160) and crop_labels.dtype == labels.dtype
    border = np.unique(
        np.concatenate([crop_labels[[0, -1]].ravel(), crop_labels[:, [0, -1]].ravel()])
    )
    sizes = np.bincount(crop_labels.ravel())[1:]
    inner = [size for number, size in enumerate(sizes, 1) if size and number not in border]
    assert len(inner) >= 2
    assert np.median(inner) == pytest.approx(np.pi * 8.0**2 * factor**2, rel=0.15)
    # The image follows the labels: bright where labelled, dark elsewhere.
    assert crop[crop_labels > 0].mean() > 0.75 and crop[crop_labels == 0].mean() < 0.1


def test_augment_wide_rebuilds_the_target_from_rescaled_labels():
    sample = generate_sample(3, SyntheticConfig(height=128, width=128, max_cells=30))
    image = NORM.apply(sample.image)
    factors = []
    for seed in range(12):
        rng = np.random.default_rng(seed)
        crop, target = augment_wide(image, sample.labels, 64, rng)
        assert crop.shape == target.shape == (64, 64) and crop.dtype == np.float32
        assert set(np.unique(target)) <= {0.0, 1.0}
        again = augment_wide(image, sample.labels, 64, np.random.default_rng(seed))
        assert np.array_equal(crop, again[0]) and np.array_equal(target, again[1])
        factors.append(target.mean())
    assert np.std(factors) > 0.02  # crops differ in scale and position


def test_wide_intensity_dims_nuclei_and_changes_the_image():
    labels = _disc_labels()
    image = np.where(labels > 0, 1.0, 0.05).astype(np.float32)
    changed = [wide_intensity(image, labels, np.random.default_rng(s)) for s in range(40)]
    assert all(c.shape == image.shape and c.dtype == np.float32 for c in changed)
    assert sum(not np.allclose(c, image) for c in changed) > 30
    # Some draws make a nucleus much dimmer than another one in the same image.
    ratios = []
    for c in changed:
        means = [c[labels == n].mean() for n in (1, 2, 3)]
        ratios.append(min(means) / max(max(means), 1e-6))
    assert min(ratios) < 0.6 and np.median(ratios) > 0.8


def test_wide_synthetic_mix_covers_every_option():
    base = parse_synthetic("synthetic:1").config
    configs = [wide_synthetic_config(base, np.random.default_rng(s)) for s in range(200)]
    assert sum(c.tissue > 0 for c in configs) > 30
    assert sum(c.debris > 0 for c in configs) > 30
    assert sum(c.haze > 0 for c in configs) > 20
    assert sum(c.dense for c in configs) > 15
    assert sum(c.dim_fraction > 0 for c in configs) > 30
    assert sum(c.cytoplasm > 0 for c in configs) > 30
    assert sum(c.defocus > 0 for c in configs) > 15
    assert sum(c.grain > 0 for c in configs) > 20
    assert sum(c.hot_pixels > 0 and c.bit_depth == 16 for c in configs) > 15
    assert sum(c.scale != 1.0 for c in configs) > 50
    assert sum(c == replace(base, max_cells=base.max_cells) for c in configs) > 10  # plain too
    for config in configs[:40]:
        sample = generate_sample(0, config)  # every variant fits its cells
        assert sample.labels.max() == sample.count


def test_wide_crop_dataset_is_reproducible_and_separates_touching_nuclei(labelled_folder):
    images = load_folder(labelled_folder, NORM)
    spec = parse_synthetic("synthetic:6:96x96")
    data = CropDataset(images, 6, spec, 48, NORM, seed=0, augmentation="wide")
    data.set_epoch(1)
    for index in (0, 8):
        image, target = data[index]
        again = data[index]
        assert image.shape == target.shape == (1, 48, 48)
        assert np.array_equal(image, again[0]) and np.array_equal(target, again[1])
    basic = CropDataset(images, 6, spec, 48, NORM, seed=0)
    basic.set_epoch(1)
    assert not np.array_equal(basic[0][0], data[0][0])
    with pytest.raises(ValueError, match="augmentation"):
        CropDataset(images, 6, spec, 48, NORM, seed=0, augmentation="extreme")


def test_contact_weighting_adds_a_weight_channel_to_the_wide_targets(labelled_folder):
    images = load_folder(labelled_folder, NORM)
    spec = parse_synthetic("synthetic:6:96x96")
    contact = ContactWeighting(strength=5.0, sigma=3.0)
    weighted = CropDataset(images, 6, spec, 48, NORM, 0, augmentation="wide", contact=contact)
    plain = CropDataset(images, 6, spec, 48, NORM, seed=0, augmentation="wide")
    weighted.set_epoch(1)
    plain.set_epoch(1)
    heavier = 0
    for index in range(len(weighted)):
        image, target = weighted[index]
        assert target.shape == (2, 48, 48)
        # Same crop and mask as without weights: only the second channel is new.
        assert np.array_equal(image, plain[index][0])
        assert np.array_equal(target[:1], plain[index][1])
        weights = target[1].numpy()
        assert weights.min() >= 1.0 and weights.max() <= 6.0
        heavier += int(weights.max() > 2.0)
    assert heavier >= 1  # some crop has nuclei close enough to weigh their gap
    with pytest.raises(ValueError, match="wide"):
        CropDataset(images, 6, spec, 48, NORM, seed=0, contact=contact)


def test_wide_validation_images_are_fixed_and_out_of_domain():
    spec = parse_synthetic("synthetic:1:96x96")
    wide = [synthetic_image(spec, "val", i, NORM, augmentation="wide") for i in range(12)]
    plain = [synthetic_image(spec, "val", i, NORM) for i in range(12)]
    again = synthetic_image(spec, "val", 5, NORM, augmentation="wide")
    assert np.array_equal(wide[5].image, again.image)
    assert sum(not np.array_equal(w.image, p.image) for w, p in zip(wide, plain, strict=True)) > 4
    for item in wide:
        assert np.array_equal(item.target, separated_foreground(item.labels))


def test_nucleus_diameters_pool_nuclei_and_range_over_image_medians():
    def discs(radius: float, n: int) -> np.ndarray:
        labels = np.zeros((64, 64 * n), np.int32)
        yy, xx = np.mgrid[:64, : 64 * n]
        for k in range(n):
            labels[(yy - 32) ** 2 + (xx - 32 - 64 * k) ** 2 <= radius**2] = k + 1
        return labels

    images = [discs(4.0, 3)] * 10 + [discs(10.0, 1)] * 10
    median, (low, high) = nucleus_diameters(images)
    small = 2 * np.sqrt(np.count_nonzero(discs(4.0, 1)) / np.pi)
    large = 2 * np.sqrt(np.count_nonzero(discs(10.0, 1)) / np.pi)
    assert median == pytest.approx(small, abs=0.01)  # 30 small nuclei outvote 10 large ones
    assert (low, high) == (pytest.approx(small, abs=0.01), pytest.approx(large, abs=0.01))
    with pytest.raises(ValueError, match="no labelled nucleus"):
        nucleus_diameters([np.zeros((8, 8), np.int32)])
