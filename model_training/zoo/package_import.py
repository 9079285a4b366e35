"""bioimage.io model package -> cellcount checkpoint the service can serve.

The weights come from the package's ``pytorch_state_dict`` entry (loaded with
``weights_only=True``: tensors only, no code runs), the record from the ``cellcount-record.json``
attachment the exporter wrote. Where the package's own description says something the record
also says (network width, percentiles, halo), the description wins: it is what every other
consumer of the package runs, and a user may have edited it. Each such difference is reported.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path

import torch
from bioimageio.spec import load_model_description
from bioimageio.spec.model import v0_5

from model_training.checkpoint import CheckpointRecord, save_checkpoint
from model_training.unet import UNet
from model_training.zoo.describe import RECORD_CONFIG_KEY


class PackageError(ValueError):
    """A package this importer cannot turn into a checkpoint; the message says why."""


@dataclass(frozen=True)
class ImportResult:
    path: Path
    record: CheckpointRecord
    changes: dict[str, tuple[object, object]]  # field: (record's value, the package's)


def _load(package: str | Path) -> v0_5.ModelDescr:
    try:
        descr = load_model_description(str(package), perform_io_checks=True)
    except ValueError as error:  # the validator's reason: a wrong hash, a bad field
        raise PackageError(f"{package} is not a valid model package: {error}") from error
    if not isinstance(descr, v0_5.ModelDescr):
        raise PackageError(f"{package} is not a bioimage.io 0.5 model description")
    return descr


def _record_of(descr: v0_5.ModelDescr) -> CheckpointRecord:
    extra = descr.config.model_extra or {}
    ours = extra.get(RECORD_CONFIG_KEY)
    if not isinstance(ours, dict) or "checkpoint" not in ours:
        raise PackageError(
            f"the package has no config.{RECORD_CONFIG_KEY}: it was not written by "
            "cellcount-export, so its threshold and minimum area are unknown"
        )
    name = ours["checkpoint"].get("record")
    for attachment in descr.attachments:
        reader = attachment.get_reader()
        if reader.original_file_name == name:
            return CheckpointRecord.model_validate(json.loads(reader.read().decode("utf-8")))
    raise PackageError(f"the package lists no attachment {name!r} with the checkpoint record")


def _from_description(descr: v0_5.ModelDescr, record: CheckpointRecord) -> dict[str, object]:
    """Fields of the record as the package's description states them."""
    weights = descr.weights.pytorch_state_dict
    assert weights is not None
    kwargs = weights.architecture.kwargs
    stated: dict[str, object] = {
        "base_channels": int(kwargs.get("base_channels", record.base_channels)),  # type: ignore[arg-type]
        "in_channels": int(kwargs.get("in_channels", record.in_channels)),  # type: ignore[arg-type]
    }
    for step in descr.inputs[0].preprocessing:
        if isinstance(step, v0_5.ScaleRangeDescr):
            stated["normalization"] = record.normalization.model_copy(
                update={"low": step.kwargs.min_percentile, "high": step.kwargs.max_percentile}
            )
    halos = {getattr(axis, "halo", None) for axis in descr.outputs[0].axes} - {None}
    if len(halos) == 1:
        stated["tile_overlap"] = int(halos.pop())  # type: ignore[arg-type]
    return stated


def import_package(package: str | Path, output: str | Path) -> ImportResult:
    """Write the checkpoint that ``package`` holds to ``output`` (``.safetensors``)."""
    descr = _load(package)
    if descr.weights.pytorch_state_dict is None:
        raise PackageError(f"{package} has no pytorch_state_dict weights")
    record = _record_of(descr)
    stated = _from_description(descr, record)
    changes = {
        key: (getattr(record, key), value)
        for key, value in stated.items()
        if getattr(record, key) != value
    }
    record = CheckpointRecord.model_validate({**record.model_dump(), **stated})
    raw = descr.weights.pytorch_state_dict.get_reader().read()
    state = torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
    model = UNet(base_channels=record.base_channels, in_channels=record.in_channels)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as error:
        raise PackageError(
            f"the package's weights do not fit UNet(base_channels={record.base_channels}): {error}"
        ) from error
    save_checkpoint(output, model, record)
    return ImportResult(Path(output), record, changes)
