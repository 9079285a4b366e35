"""The ``rdf.yaml`` of the package, as bioimage.io spec 0.5 objects.

Building the description from ``bioimageio.spec``'s own classes validates it as it is built:
a field the spec does not know, or a halo the smallest input cannot hold, fails here, at
export, rather than in a user's Fiji. Every number in it comes from the checkpoint record.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from bioimageio.spec.model import v0_5

from model_training.checkpoint import CheckpointRecord
from model_training.unet import SIZE_MULTIPLE
from model_training.zoo.architecture import CALLABLE
from model_training.zoo.geometry import min_side

INPUT_ID = "raw"
OUTPUT_ID = "probability"
RECORD_CONFIG_KEY = "cellcount"

U_NET_CITATION = v0_5.CiteEntry(
    text=(
        "Ronneberger O., Fischer P., Brox T. U-Net: Convolutional Networks for Biomedical "
        "Image Segmentation. MICCAI 2015, LNCS 9351, 234-241."
    ),
    doi=v0_5.Doi("10.1007/978-3-319-24574-4_28"),
)
TAGS = (
    "unet",
    "2d",
    "pytorch",
    "fluorescence-light-microscopy",
    "nuclei",
    "semantic-segmentation",
    "instance-segmentation",
    "cell-counting",
    "deepimagej",
)


@dataclass(frozen=True)
class PackageFiles:
    """Local files the description points to (all inside one staging folder)."""

    architecture: Path
    state_dict: Path
    torchscript: Path
    test_input: Path
    test_output: Path
    sample_input: Path  # the test image as a TIFF, for people (the spec's sample_tensor)
    sample_output: Path
    cover: Path
    documentation: Path
    record: Path


def checkpoint_version(name: str) -> str | None:
    """``v2`` at the end of a checkpoint name (``unet32-...-v2``) as ``"2"``; else None."""
    match = re.search(r"-v(\d+(?:\.\d+)*)$", name)
    return match.group(1) if match else None


def counting_config(record: CheckpointRecord) -> dict[str, Any]:
    """The recipe from probabilities to a count, for tools that read it from the config."""
    return {
        "threshold": record.threshold,
        "min_area_px": record.min_area,
        "connectivity": 8,
        "fill_holes": True,
        "nucleus_diameter_px": record.nucleus_diameter_px,
        "diameter_range_px": (list(record.diameter_range_px) if record.diameter_range_px else None),
        "rejection": record.rejection.model_dump(),
    }


def build_description(
    record: CheckpointRecord,
    files: PackageFiles,
    *,
    checkpoint_file: str,
    checkpoint_sha256: str,
    halo: int,
    authors: list[str],
    parameter_count: int,
) -> v0_5.ModelDescr:
    """The model description; its file sources are the staged ``files``."""
    norm = record.normalization
    side = min_side(halo)
    batch = v0_5.BatchAxis()
    channel = v0_5.ChannelAxis(channel_names=[v0_5.Identifier("fluorescence")])
    input_axes = [
        batch,
        channel,
        *(
            v0_5.SpaceInputAxis(
                id=v0_5.AxisId(axis),
                size=v0_5.ParameterizedSize(min=side, step=SIZE_MULTIPLE),
            )
            for axis in ("y", "x")
        ),
    ]
    output_axes = [
        v0_5.BatchAxis(),
        v0_5.ChannelAxis(channel_names=[v0_5.Identifier("nucleus")]),
        *(
            v0_5.SpaceOutputAxisWithHalo(
                id=v0_5.AxisId(axis),
                size=v0_5.SizeReference(
                    tensor_id=v0_5.TensorId(INPUT_ID), axis_id=v0_5.AxisId(axis)
                ),
                halo=halo,
            )
            for axis in ("y", "x")
        ),
    ]
    data = v0_5.IntervalOrRatioDataDescr(type="float32")
    inputs = v0_5.InputTensorDescr(
        id=v0_5.TensorId(INPUT_ID),
        description="one 2-D fluorescence image of nuclei (raw intensities)",
        axes=input_axes,
        test_tensor=v0_5.FileDescr(source=files.test_input),
        sample_tensor=v0_5.FileDescr(source=files.sample_input),
        data=data,
        preprocessing=[
            v0_5.ScaleRangeDescr(
                kwargs=v0_5.ScaleRangeKwargs(
                    axes=[v0_5.AxisId("y"), v0_5.AxisId("x")],
                    min_percentile=norm.low,
                    max_percentile=norm.high,
                )
            )
        ],
    )
    outputs = v0_5.OutputTensorDescr(
        id=v0_5.TensorId(OUTPUT_ID),
        description="per-pixel probability of a nucleus not touching another one",
        axes=output_axes,
        test_tensor=v0_5.FileDescr(source=files.test_output),
        sample_tensor=v0_5.FileDescr(source=files.sample_output),
        data=v0_5.IntervalOrRatioDataDescr(type="float32", range=(0.0, 1.0)),
    )
    torch_version = v0_5.Version(torch.__version__.split("+")[0])
    kwargs = {"base_channels": record.base_channels, "in_channels": record.in_channels}
    weights = v0_5.WeightsDescr(
        pytorch_state_dict=v0_5.PytorchStateDictWeightsDescr(
            source=files.state_dict,
            architecture=v0_5.ArchitectureFromFileDescr(
                source=files.architecture, callable=v0_5.Identifier(CALLABLE), kwargs=kwargs
            ),
            pytorch_version=torch_version,
        ),
        torchscript=v0_5.TorchscriptWeightsDescr(
            source=files.torchscript,
            pytorch_version=torch_version,
            parent="pytorch_state_dict",
        ),
    )
    version = checkpoint_version(record.name)
    return v0_5.ModelDescr(
        name=f"cellcount {record.name}",
        description=(
            "Nucleus probabilities for counting cells in 2-D fluorescence images, from the "
            f"cellcount U-Net checkpoint {record.name} (width {record.base_channels}). "
            "Threshold, 8-connected components and minimum area turn them into counts "
            "(documentation; config.cellcount.counting)."
        ),
        authors=[v0_5.Author(name=name) for name in authors],
        cite=[U_NET_CITATION],
        license=v0_5.LicenseId("MIT"),
        documentation=v0_5.FileDescr(source=files.documentation),
        covers=[v0_5.FileDescr(source=files.cover)],
        tags=list(TAGS),
        version=v0_5.Version(version) if version else None,
        attachments=[v0_5.FileDescr(source=files.record)],
        inputs=[inputs],
        outputs=[outputs],
        weights=weights,
        config=v0_5.Config(
            bioimageio=v0_5.BioimageioConfig(
                architecture_type="U-Net",
                modality="fluorescence microscopy",
                target_structure=["nuclei"],
                task="semantic segmentation (probabilities) for instance counting",
                model_parameter_count=parameter_count,
            ),
            **{
                RECORD_CONFIG_KEY: {
                    "checkpoint": {
                        "name": record.name,
                        "version": version,
                        "file": checkpoint_file,
                        "sha256": checkpoint_sha256,
                        "created": record.created,
                        "code_version": record.code_version,
                        "record": files.record.name,
                    },
                    "counting": counting_config(record),
                    "tile_margin_px": halo,
                }
            },
        ),
    )
