"""Round trip: the exported package, read back, is a checkpoint the service loads and that
counts the test image exactly as the original does."""

from __future__ import annotations

import zipfile

import pytest
import torch
import yaml

from model_training.checkpoint import load_checkpoint
from model_training.inference import segment_image
from model_training.zoo.cli import main
from model_training.zoo.package_import import PackageError, import_package
from model_training.zoo.sample import sample_image

from .conftest import CHECKPOINT


def count(checkpoint) -> int:
    model, record = load_checkpoint(checkpoint)
    image, _ = sample_image()
    cells = segment_image(model, record, record.normalization.apply(image))
    return int(cells.labels.max(initial=0))


def test_imported_checkpoint_counts_the_test_image_as_the_original(exported, no_network, tmp_path):
    output = tmp_path / "from-package.safetensors"
    assert main(["--import", str(exported.package), "-o", str(output)]) == 0
    original_model, original_record = load_checkpoint(CHECKPOINT)
    model, record = load_checkpoint(output)
    assert record == original_record
    for key, value in original_model.state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key
    assert count(output) == count(CHECKPOINT) > 0
    assert no_network == []


def test_the_package_description_wins_over_the_record(exported, no_network, tmp_path):
    """A user who edits the package's percentiles or halo gets them in the checkpoint."""
    folder = tmp_path / "package"
    with zipfile.ZipFile(exported.package) as archive:
        archive.extractall(folder)
    rdf = yaml.safe_load((folder / "rdf.yaml").read_text())
    (scale_range,) = (p for p in rdf["inputs"][0]["preprocessing"] if p["id"] == "scale_range")
    scale_range["kwargs"]["max_percentile"] = 99.5
    for axis in rdf["outputs"][0]["axes"][2:]:
        axis["halo"] = 16
    (folder / "rdf.yaml").write_text(yaml.safe_dump(rdf))
    result = import_package(folder / "rdf.yaml", tmp_path / "edited.safetensors")
    assert result.record.normalization.high == 99.5
    assert result.record.tile_overlap == 16
    assert set(result.changes) == {"normalization", "tile_overlap"}


def test_a_package_without_the_cellcount_record_is_refused(exported, no_network, tmp_path):
    folder = tmp_path / "package"
    with zipfile.ZipFile(exported.package) as archive:
        archive.extractall(folder)
    rdf = yaml.safe_load((folder / "rdf.yaml").read_text())
    del rdf["config"]["cellcount"]
    (folder / "rdf.yaml").write_text(yaml.safe_dump(rdf))
    with pytest.raises(PackageError, match="not written by cellcount-export"):
        import_package(folder / "rdf.yaml", tmp_path / "refused.safetensors")


def test_an_invalid_package_is_refused_with_the_validators_reason(exported, no_network, tmp_path):
    folder = tmp_path / "package"
    with zipfile.ZipFile(exported.package) as archive:
        archive.extractall(folder)
    (folder / "weights.pt").write_bytes(b"not the exported weights")
    with pytest.raises(PackageError, match="SHA256 mismatch"):
        import_package(folder / "rdf.yaml", tmp_path / "refused.safetensors")
