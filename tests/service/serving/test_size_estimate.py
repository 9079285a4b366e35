"""Which size estimate the service plans with (CELLCOUNT_SIZE_ESTIMATE)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from model_training.checkpoint import CheckpointError, load_checkpoint
from service.serving.engine import LoadedModel
from service.serving.state import size_estimator
from service.settings import Settings

WEIGHTS = Path(__file__).resolve().parents[3] / "weights"


def loaded(path: Path) -> LoadedModel:
    model, record = load_checkpoint(WEIGHTS / "unet32.safetensors")
    return LoadedModel(model=model, record=record, path=path, sha256="0" * 64)


def test_the_network_by_default_and_statistics_when_asked(tmp_path):
    shipped = loaded(WEIGHTS / "unet32.safetensors")
    assert Settings().size_estimate == "auto"
    assert size_estimator(Settings(size_estimate="statistics"), shipped) is None
    estimate = size_estimator(Settings(), shipped)
    assert estimate is not None and size_estimator(Settings(size_estimate="network"), shipped)
    assert estimate(np.zeros((128, 128), np.float32)).diameter_px is None  # empty field


def test_a_checkpoint_without_a_size_model(tmp_path):
    alone = tmp_path / "unet32.safetensors"
    shutil.copyfile(WEIGHTS / "unet32.safetensors", alone)
    assert size_estimator(Settings(size_estimate="auto"), loaded(alone)) is None
    with pytest.raises(CheckpointError, match=r"size\.json"):
        size_estimator(Settings(size_estimate="network"), loaded(alone))
