import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from model_training.checkpoint import (
    CheckpointError,
    CheckpointRecord,
    load_checkpoint,
    read_record,
    save_checkpoint,
    update_record,
)
from model_training.unet import UNet


@pytest.fixture
def saved(tmp_path):
    torch.manual_seed(1)
    model = UNet(base_channels=4).eval()
    record = CheckpointRecord(name="tiny", base_channels=4, threshold=0.4, min_area=7)
    path = tmp_path / "tiny.safetensors"
    save_checkpoint(path, model, record)
    return path, model, record


def test_round_trip_gives_identical_outputs(saved):
    path, model, record = saved
    loaded, loaded_record = load_checkpoint(path)
    assert loaded_record == record
    x = torch.randn(2, 1, 48, 64)
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))


def test_channels_last_model_saves(tmp_path):
    model = UNet(base_channels=4).to(memory_format=torch.channels_last)
    save_checkpoint(tmp_path / "cl.safetensors", model, CheckpointRecord(base_channels=4))
    loaded, _ = load_checkpoint(tmp_path / "cl.safetensors")
    assert torch.equal(loaded.head.weight, model.head.weight)


def test_update_record_keeps_weights(saved):
    path, model, _ = saved
    update_record(path, metrics={"test": {"count_mae": 1.5}})
    loaded, record = load_checkpoint(path)
    assert record.metrics["test"]["count_mae"] == 1.5
    assert torch.equal(loaded.head.weight, model.head.weight)


def test_truncated_file_is_refused(saved):
    path, _, _ = saved
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"weights|not a valid"):
        load_checkpoint(path)


def test_garbage_and_missing_files_are_refused(tmp_path):
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"\x00" * 64)
    with pytest.raises(CheckpointError, match="not a valid safetensors"):
        read_record(garbage)
    with pytest.raises(CheckpointError, match="does not exist"):
        read_record(tmp_path / "missing.safetensors")


def test_file_without_record_or_wrong_width_is_refused(tmp_path):
    plain = tmp_path / "plain.safetensors"
    save_file({"w": torch.zeros(2)}, str(plain))
    with pytest.raises(CheckpointError, match="no 'cellcount' record"):
        read_record(plain)
    wrong = tmp_path / "wrong.safetensors"
    save_checkpoint(wrong, UNet(base_channels=4), CheckpointRecord(base_channels=4))
    # Forge a record claiming another width: the weights must not silently load.
    tensors = load_file(str(wrong))
    record = CheckpointRecord(base_channels=8).model_dump_json()
    save_file(tensors, str(wrong), metadata={"cellcount": record})
    with pytest.raises(CheckpointError, match="do not match"):
        load_checkpoint(wrong)
    assert json.loads(record)["base_channels"] == 8


@pytest.mark.parametrize(("field", "value"), [("tile_overlap", 40), ("tile_size", 250)])
def test_geometry_the_unet_cannot_pool_is_refused_at_load(tmp_path, field, value):
    """Such a checkpoint used to load and then answer every image with a 500."""
    with pytest.raises(ValueError, match=rf"{field} must be a multiple of 16"):
        CheckpointRecord(base_channels=4, **{field: value})
    path = tmp_path / "odd.safetensors"
    save_checkpoint(path, UNet(base_channels=4), CheckpointRecord(base_channels=4))
    tensors = load_file(str(path))
    record = json.loads(CheckpointRecord(base_channels=4).model_dump_json()) | {field: value}
    save_file(tensors, str(path), metadata={"cellcount": json.dumps(record)})
    with pytest.raises(CheckpointError, match=rf"{field}[\s\S]*multiple of 16"):
        load_checkpoint(path)
