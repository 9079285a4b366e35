"""What the exported rdf.yaml says: the axes, pre-processing, halo, provenance and recipe the
issue asks for, read back from the zip as any consumer would read it."""

from __future__ import annotations

import hashlib
import io
import zipfile

import numpy as np
import yaml
from PIL import Image

from model_training.checkpoint import read_record
from model_training.zoo.describe import checkpoint_version
from model_training.zoo.geometry import default_halo, min_side

from .conftest import CHECKPOINT


def package_file(exported, name: str) -> bytes:
    with zipfile.ZipFile(exported.package) as archive:
        return archive.read(name)


def test_rdf_states_axes_normalization_halo_and_provenance(exported):
    rdf = yaml.safe_load(package_file(exported, "rdf.yaml"))
    record = read_record(CHECKPOINT)
    assert rdf["format_version"].startswith("0.5.") and rdf["type"] == "model"
    (inputs,) = rdf["inputs"]
    assert [axis["type"] for axis in inputs["axes"]] == ["batch", "channel", "space", "space"]
    for axis in inputs["axes"][2:]:
        assert axis["size"]["step"] == 16 and axis["size"]["min"] % 16 == 0
    (scale_range,) = (step for step in inputs["preprocessing"] if step["id"] == "scale_range")
    assert scale_range["kwargs"]["min_percentile"] == record.normalization.low
    assert scale_range["kwargs"]["max_percentile"] == record.normalization.high
    (outputs,) = rdf["outputs"]
    assert [axis.get("halo") for axis in outputs["axes"][2:]] == [default_halo(record)] * 2
    assert outputs["data"]["range"] == [0.0, 1.0]
    weights = rdf["weights"]
    assert set(weights) == {"pytorch_state_dict", "torchscript"}
    architecture = weights["pytorch_state_dict"]["architecture"]
    assert architecture["kwargs"] == {"base_channels": 16, "in_channels": 1}
    assert rdf["license"] == "MIT"
    assert any(c.get("doi") == "10.1007/978-3-319-24574-4_28" for c in rdf["cite"])
    assert {"unet", "nuclei", "2d", "fluorescence-light-microscopy"} <= set(rdf["tags"])
    ours = rdf["config"]["cellcount"]
    assert ours["checkpoint"]["sha256"] == hashlib.sha256(CHECKPOINT.read_bytes()).hexdigest()
    assert ours["checkpoint"]["version"] == rdf["version"] == "1"
    assert ours["counting"]["threshold"] == record.threshold
    assert ours["counting"]["min_area_px"] == record.min_area
    assert ours["counting"]["nucleus_diameter_px"] == record.nucleus_diameter_px


def test_test_tensors_are_the_synthetic_image_and_its_probabilities(exported):
    test_input = np.load(io.BytesIO(package_file(exported, "test_input.npy")))
    test_output = np.load(io.BytesIO(package_file(exported, "test_output.npy")))
    assert test_input.shape == test_output.shape == (1, 1, 256, 256)
    assert test_input.dtype == test_output.dtype == np.float32
    assert test_output.min() >= 0.0 and test_output.max() <= 1.0
    # The recipe's count is close to the generator's own (a real, not a degenerate, map).
    assert abs(exported.sample_count - exported.sample_truth) <= 0.2 * exported.sample_truth


def test_cover_is_two_to_one_and_small(exported):
    data = package_file(exported, "cover.png")
    with Image.open(io.BytesIO(data)) as cover:
        assert cover.size == (512, 256)
    assert len(data) < 500_000


def test_documentation_carries_the_counting_recipe_and_the_limits(exported):
    readme = package_file(exported, "README.md").decode()
    record = read_record(CHECKPOINT)
    for fact in (
        f"probability > {record.threshold:g}",
        f"smaller than {record.min_area} px",
        f"{record.nucleus_diameter_px:g} px",
        "8-connected",
        f"halo {default_halo(record)} px",
        f"at least {min_side(default_halo(record))} px",
    ):
        assert fact in readme, fact
    assert "## Validation" in readme
    assert "## Intended use and limits" in readme and "**Not for:**" in readme
    assert "Fiji" in readme and "napari" in readme
    assert "](../" not in readme  # no link into a repository the package does not carry


def test_checkpoint_version_comes_from_the_name():
    assert checkpoint_version("unet32-dsb2018-synth-wide-v2") == "2"
    assert checkpoint_version("unet16-dsb2018-synth-v1") == "1"
    assert checkpoint_version("my-run") is None
