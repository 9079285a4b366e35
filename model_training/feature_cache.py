"""Caches of network features, keyed by the weights (and options) that computed them.

The size model's probe features are the network's own, so a cache written with other weights
is wrong for these, even under the same file name (a fine-tune replaces ``weights/`` in place).
A cache whose key differs is ignored and rewritten, never reused.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from model_training.checkpoint import file_sha256


def cache_key(checkpoint: Path, *options: object) -> str:
    """SHA-256 of the checkpoint file, then the options that shaped the cached rows."""
    return " ".join([file_sha256(checkpoint), *(str(option) for option in options)])


def load_cache(path: Path, key: str) -> dict[str, np.ndarray] | None:
    """The arrays of ``path`` if it was saved under ``key``; None if missing or stale."""
    if not path.exists():
        return None
    with np.load(path) as cached:
        saved = str(cached["key"]) if "key" in cached.files else ""
        if saved != key:
            print(f"{path} was computed with other weights or options: recomputing")
            return None
        return {name: cached[name] for name in cached.files if name != "key"}


def save_cache(path: Path, key: str, **arrays: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, key=key, **arrays)
