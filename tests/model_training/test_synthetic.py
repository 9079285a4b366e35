"""Tests for the synthetic nuclei generator: determinism, the count/labels invariant, appearance."""

from __future__ import annotations

import hashlib
from dataclasses import replace

import numpy as np
import pytest
from scipy import ndimage

from model_training.synthetic import (
    MIN_VISIBLE_PIXELS,
    SyntheticConfig,
    SyntheticSample,
    generate_sample,
)

LARGE = SyntheticConfig(height=520, width=696)


def _touching_pairs(labels: np.ndarray) -> set[tuple[int, int]]:
    """Pairs of different labels that are 8-adjacent somewhere."""
    pairs: set[tuple[int, int]] = set()
    shifts = (
        (labels[:, :-1], labels[:, 1:]),
        (labels[:-1, :], labels[1:, :]),
        (labels[:-1, :-1], labels[1:, 1:]),
        (labels[:-1, 1:], labels[1:, :-1]),
    )
    for a, b in shifts:
        hit = (a != b) & (a > 0) & (b > 0)
        low, high = np.minimum(a[hit], b[hit]), np.maximum(a[hit], b[hit])
        pairs.update(zip(low.tolist(), high.tolist(), strict=True))
    return pairs


def _check_invariant(sample: SyntheticSample, config: SyntheticConfig) -> None:
    assert sample.labels.shape == sample.image.shape == (config.height, config.width)
    assert sample.labels.dtype == np.int32
    assert sample.labels.max(initial=0) == sample.count
    assert len(np.unique(sample.labels)) - 1 == sample.count
    sizes = np.bincount(sample.labels.ravel(), minlength=sample.count + 1)[1:]
    assert sizes.min(initial=MIN_VISIBLE_PIXELS) >= MIN_VISIBLE_PIXELS


def test_same_seed_gives_identical_arrays() -> None:
    for count in (None, 40):
        first, second = generate_sample(3, count=count), generate_sample(3, count=count)
        assert first.count == second.count
        np.testing.assert_array_equal(first.image, second.image)
        np.testing.assert_array_equal(first.labels, second.labels)


def test_different_seeds_differ() -> None:
    first, second = generate_sample(1, count=30), generate_sample(2, count=30)
    assert not np.array_equal(first.image, second.image)
    assert not np.array_equal(first.labels, second.labels)


def test_count_is_honoured_and_matches_labels() -> None:
    config = SyntheticConfig()
    counts = np.linspace(1, 100, 30).round().astype(int)
    for seed, count in enumerate(counts.tolist()):
        sample = generate_sample(seed, config, count=count)
        assert sample.count == count
        _check_invariant(sample, config)


def test_invariant_on_large_image() -> None:
    for seed, count in ((0, 100), (1, 57)):
        sample = generate_sample(seed, LARGE, count=count)
        assert sample.count == count
        _check_invariant(sample, LARGE)


def test_drawn_count_within_configured_range() -> None:
    config = SyntheticConfig(min_cells=5, max_cells=12)
    counts = set()
    for seed in range(20):
        sample = generate_sample(seed, config)
        assert 5 <= sample.count <= 12
        _check_invariant(sample, config)
        counts.add(sample.count)
    assert len(counts) > 3


def test_zero_cells_gives_empty_labels_and_dark_image() -> None:
    sample = generate_sample(0, count=0)
    assert sample.count == 0
    assert not sample.labels.any()
    assert sample.image.max() < 0.5 * 255


@pytest.mark.parametrize(("bit_depth", "dtype"), [(8, np.uint8), (16, np.uint16)])
def test_dtype_and_range_follow_bit_depth(bit_depth: int, dtype: type) -> None:
    sample = generate_sample(5, SyntheticConfig(bit_depth=bit_depth), count=30)
    assert sample.image.dtype == dtype
    full_scale = 2**bit_depth - 1
    assert 0.5 * full_scale < int(sample.image.max()) <= full_scale


def test_cells_are_brighter_than_background() -> None:
    for seed in range(5):
        sample = generate_sample(seed, count=25)
        inside = sample.image[sample.labels > 0].astype(float).mean()
        outside = sample.image[sample.labels == 0].astype(float).mean()
        assert inside > 2 * outside


def test_clustering_produces_touching_cells() -> None:
    clustered = SyntheticConfig(height=520, width=696, cluster_probability=1.0)
    scattered = SyntheticConfig(height=520, width=696, cluster_probability=0.0)
    clustered_pairs = [
        len(_touching_pairs(generate_sample(s, clustered, 8).labels)) for s in range(10)
    ]
    scattered_pairs = [
        len(_touching_pairs(generate_sample(s, scattered, 8).labels)) for s in range(10)
    ]
    # Clustered neighbours are placed at 0.8-1.1 x the sum of radii, so nearly all touch.
    assert min(clustered_pairs) >= 3
    # Uniform placement of a few cells in a large image rarely makes two cells touch.
    assert sum(n == 0 for n in scattered_pairs) >= 7
    assert 5 * sum(scattered_pairs) < sum(clustered_pairs)


def test_zero_overlap_still_places_clustered_cells() -> None:
    """max_overlap=0 forbids covering, not touching: clusters still form, the invariant holds."""
    config = SyntheticConfig(cluster_probability=1.0, max_overlap=0.0)
    sample = generate_sample(4, config, count=40)
    _check_invariant(sample, config)
    assert _touching_pairs(sample.labels)


def test_too_crowded_raises() -> None:
    config = SyntheticConfig(height=64, width=64, radius_range=(10.0, 10.0))
    with pytest.raises(ValueError, match="cannot place 100 cells"):
        generate_sample(0, config, count=100)


def test_invalid_arguments_raise() -> None:
    with pytest.raises(ValueError, match="bit_depth"):
        SyntheticConfig(bit_depth=12)
    with pytest.raises(ValueError, match="min_cells"):
        SyntheticConfig(min_cells=10, max_cells=5)
    with pytest.raises(ValueError, match="non-negative"):
        generate_sample(0, count=-1)


# ---- out-of-domain options ------------------------------------------------------------------


def _median_area(config: SyntheticConfig, seeds: range) -> float:
    areas = [np.bincount(generate_sample(seed, config).labels.ravel())[1:] for seed in seeds]
    return float(np.median(np.concatenate(areas)))


def test_scale_multiplies_nucleus_size_not_image_size() -> None:
    base = SyntheticConfig(max_cells=20, cluster_probability=0.0)
    large = replace(base, scale=2.0, max_cells=5)
    sample = generate_sample(0, large)
    assert sample.image.shape == (base.height, base.width)
    ratio = _median_area(large, range(12)) / _median_area(base, range(12))
    assert 3.3 < ratio < 4.7
    small = replace(base, scale=0.5, max_cells=40)
    assert 0.18 < _median_area(small, range(12)) / _median_area(base, range(12)) < 0.32
    sample = generate_sample(1, small)
    assert len(np.unique(sample.labels)) - 1 == sample.count == sample.labels.max()


def _lit_background(sample: SyntheticSample) -> float:
    """Share of background pixels above 12 % of the brightest nucleus pixel."""
    background = sample.labels == 0
    peak = float(sample.image[~background].max())
    return float(np.mean(sample.image[background] > 0.12 * peak))


@pytest.mark.parametrize(
    "option",
    [
        {"tissue": 0.6},
        {"debris": 30},
        {"haze": 10},
        {"tissue": 0.5, "debris": 10},
        {"cytoplasm": 0.3},
    ],
)
def test_negatives_add_intensity_but_no_labels(option: dict) -> None:
    base = SyntheticConfig(max_cells=15)
    cluttered = replace(base, **option)
    for seed in range(3):
        plain, noisy = generate_sample(seed, base), generate_sample(seed, cluttered)
        np.testing.assert_array_equal(plain.labels, noisy.labels)  # same nuclei, same labels
        assert plain.count == noisy.count
        assert _lit_background(noisy) > 1.5 * _lit_background(plain) + 0.003


def test_tissue_texture_lights_up_the_background_broadly() -> None:
    sample = generate_sample(3, SyntheticConfig(tissue=0.6), count=0)
    assert sample.count == 0 and not sample.labels.any()
    image = sample.image.astype(float)
    plain = generate_sample(3, SyntheticConfig(), count=0).image.astype(float)
    assert image.std() > 3 * plain.std()  # structured, not flat
    assert np.percentile(image, 99) > 0.3 * 255


def test_cell_bodies_surround_the_nuclei_and_leave_the_far_background_dark() -> None:
    base = SyntheticConfig(max_cells=12, cluster_probability=0.0)
    for seed in range(3):
        plain = generate_sample(seed, base)
        bodies = generate_sample(seed, replace(base, cytoplasm=0.4))
        distance = ndimage.distance_transform_edt(plain.labels == 0)
        radius = sum(base.radius_range) / 2
        ring, far = (distance > 2) & (distance < 1.5 * radius), distance > 6 * radius

        def level(sample: SyntheticSample, where: np.ndarray) -> float:
            return float(sample.image[where].mean() / sample.image[sample.labels > 0].max())

        assert level(bodies, ring) > level(plain, ring) + 0.04
        assert level(bodies, far) < level(plain, far) + 0.02


def test_dense_packs_touching_nuclei() -> None:
    config = SyntheticConfig(dense=True)
    sample = generate_sample(2, config)
    _check_invariant(sample, config)
    pairs = _touching_pairs(sample.labels)
    assert sample.count > 80
    touching = {label for pair in pairs for label in pair}
    assert len(touching) > 0.6 * sample.count
    capped = generate_sample(2, config, count=30)
    assert capped.count == 30
    _check_invariant(capped, config)


def test_dim_fraction_renders_some_nuclei_much_dimmer() -> None:
    def brightness(config: SyntheticConfig) -> np.ndarray:
        sample = generate_sample(4, config, count=60)
        sums = ndimage.sum_labels(sample.image, sample.labels, np.arange(1, sample.count + 1))
        return sums / np.bincount(sample.labels.ravel())[1:] / sample.image.max()

    plain = brightness(SyntheticConfig(cluster_probability=0.0))
    dim = brightness(SyntheticConfig(cluster_probability=0.0, dim_fraction=0.3))
    assert np.mean(plain < 0.5 * np.median(plain)) < 0.05
    assert 0.12 < np.mean(dim < 0.5 * np.median(dim)) < 0.45


def test_options_are_deterministic_by_seed() -> None:
    config = SyntheticConfig(
        scale=1.5, tissue=0.4, debris=10, haze=5, dense=True, dim_fraction=0.2, cytoplasm=0.3
    )
    first, second = generate_sample(9, config), generate_sample(9, config)
    np.testing.assert_array_equal(first.image, second.image)
    np.testing.assert_array_equal(first.labels, second.labels)
    assert not np.array_equal(first.image, generate_sample(10, config).image)


def test_invalid_options_raise() -> None:
    options = (
        {"scale": 0.0},
        {"tissue": 2.0},
        {"debris": -1},
        {"dim_fraction": 1.5},
        {"cytoplasm": -0.1},
    )
    for option in options:
        with pytest.raises(ValueError, match="invalid SyntheticConfig"):
            SyntheticConfig(**option)


def test_default_output_is_pinned() -> None:
    """The options must not move the default random stream: recorded figures depend on it."""
    digest = hashlib.sha256()
    for seed in range(3):
        sample = generate_sample(seed, SyntheticConfig(height=96, width=96, max_cells=20))
        digest.update(sample.image.tobytes())
        digest.update(sample.labels.tobytes())
    assert digest.hexdigest() == (
        "9e3ca898ef75e9464d002933bfa7392daa26a41fca7577c28452e5b6d8e8a267"
    )
