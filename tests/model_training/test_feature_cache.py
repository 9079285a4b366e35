"""A feature cache is reused only for the weights and options that wrote it."""

import numpy as np

from model_training.feature_cache import cache_key, load_cache, save_cache


def test_a_cache_of_other_weights_or_options_is_not_reused(tmp_path):
    weights = tmp_path / "unet.safetensors"
    weights.write_bytes(b"first weights")
    cache = tmp_path / "runs" / "features.npz"
    assert load_cache(cache, cache_key(weights, 2)) is None  # nothing there yet
    save_cache(cache, cache_key(weights, 2), features=np.arange(6.0).reshape(2, 3))
    again = load_cache(cache, cache_key(weights, 2))
    assert again is not None and np.array_equal(again["features"], np.arange(6.0).reshape(2, 3))
    assert set(again) == {"features"}
    assert load_cache(cache, cache_key(weights, 3)) is None  # other options
    weights.write_bytes(b"fine-tuned weights, same file name")
    assert load_cache(cache, cache_key(weights, 2)) is None  # other weights


def test_a_cache_from_before_keys_is_recomputed(tmp_path):
    weights = tmp_path / "unet.safetensors"
    weights.write_bytes(b"w")
    cache = tmp_path / "old.npz"
    np.savez(cache, features=np.zeros(3))  # written before caches carried a key
    assert load_cache(cache, cache_key(weights)) is None
