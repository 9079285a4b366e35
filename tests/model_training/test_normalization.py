"""Percentile normalization: the histogram route for 8/16-bit images equals the general one."""

from __future__ import annotations

import numpy as np
import pytest

from model_training.normalization import PercentileNormalization, histogram_percentiles


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_histogram_percentiles_equal_numpy_bit_for_bit(dtype):
    rng = np.random.default_rng(7)
    top = np.iinfo(dtype).max + 1
    for trial in range(300):
        size = int(rng.integers(1, 20000))
        image = rng.integers(0, int(rng.choice([3, 300, top])), size=size).astype(dtype)
        if trial % 10 == 0:
            image[:] = image[0]  # constant images
        percents = (1.0, 99.8, float(rng.uniform(0, 100)), 0.0, 100.0)
        expected = np.percentile(image.astype(np.float32), percents)
        assert histogram_percentiles(image, percents) == expected.tolist()


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_integer_images_normalize_exactly_as_their_float_copies(dtype):
    rng = np.random.default_rng(8)
    norm = PercentileNormalization()
    for _ in range(50):
        image = rng.integers(0, np.iinfo(dtype).max, size=(37, 53)).astype(dtype)
        fast, general = norm.apply(image), norm.apply(image.astype(np.float32))
        assert fast.dtype == np.float32
        assert np.array_equal(fast, general)
    flat = np.full((8, 8), 40, dtype=dtype)
    assert np.array_equal(norm.apply(flat), norm.apply(flat.astype(np.float32)))
