"""Checkpoint -> bioimage.io model package (a folder, or a ``.zip`` when the name says so).

Everything the package holds is written to a staging folder first; ``bioimageio.spec`` then
copies what the description references into the package and, for a ``.zip``, loads it back to
check it. Before anything is written the TorchScript graph is checked against the eager network
at another size and batch than it was traced at, so a graph that baked a shape in never ships.
"""

from __future__ import annotations

import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tifffile
import torch
from bioimageio.spec import save_bioimageio_package, save_bioimageio_package_as_folder

from model_training.checkpoint import file_sha256, load_checkpoint
from model_training.counting import label_cells
from model_training.zoo.architecture import FILE_NAME, architecture_source, probabilities_model
from model_training.zoo.cover import save_cover
from model_training.zoo.describe import PackageFiles, build_description
from model_training.zoo.documentation import PackageFacts, render_readme
from model_training.zoo.geometry import default_halo, min_side
from model_training.zoo.sample import make_sample

DEFAULT_AUTHORS = ("cellcount contributors",)
GRAPH_TOLERANCE = 1e-5  # probabilities; fp32 traced vs eager differ by rounding only
RECORD_FILE = "cellcount-record.json"


class ExportError(RuntimeError):
    """The package would not reproduce the checkpoint; the message says why."""


@dataclass(frozen=True)
class ExportResult:
    path: Path
    sample_count: int  # nuclei the counting recipe finds on the test image
    sample_truth: int  # nuclei the generator drew
    graph_difference: float  # largest |traced - eager| probability in the shape check


@torch.inference_mode()
def trace_network(network: torch.nn.Module, side: int) -> tuple[torch.jit.ScriptModule, float]:
    """Trace at (1, 1, side, side); return the graph and its largest deviation from eager on a
    batch of 2 at a larger, non-square size (a baked-in shape would fail there)."""
    with warnings.catch_warnings():
        # torch marks TorchScript deprecated; deepImageJ and the zoo still read it.
        warnings.filterwarnings("ignore", category=DeprecationWarning, module="torch.jit")
        graph = torch.jit.trace(network, torch.rand(1, 1, side, side), check_trace=False)
    generator = torch.Generator().manual_seed(0)
    probe = torch.rand(2, 1, side + 32, side + 16, generator=generator)
    difference = float((graph(probe) - network(probe)).abs().max())
    if not difference <= GRAPH_TOLERANCE:
        raise ExportError(
            f"the traced graph differs from the network by {difference:.3g} at another shape"
        )
    return graph, difference


def export_package(
    checkpoint: str | Path,
    output: str | Path,
    *,
    card: str | Path | None = None,
    authors: tuple[str, ...] = DEFAULT_AUTHORS,
    halo: int | None = None,
) -> ExportResult:
    """Write the package of ``checkpoint`` to ``output`` (``*.zip``: zipped, else a folder).

    ``halo``: the tile margin consumers should discard; default the checkpoint's
    ``tile_overlap``, which is the margin the service tiles with unless configured otherwise.
    ``card``: the model card markdown (default: ``README.md`` beside the checkpoint, if any).
    """
    checkpoint, output = Path(checkpoint), Path(output)
    model, record = load_checkpoint(checkpoint)
    halo = default_halo(record) if halo is None else halo
    if halo < 1 or halo % 16:
        raise ExportError(f"halo must be a positive multiple of 16, got {halo}")
    card_path = Path(card) if card is not None else checkpoint.with_name("README.md")
    card_text = card_path.read_text(encoding="utf-8") if card_path.is_file() else None
    sha256 = file_sha256(checkpoint)
    network = probabilities_model(model)
    graph, difference = trace_network(network, min_side(halo))
    sample = make_sample(network, record)
    labels = label_cells(sample.probabilities, record.threshold, record.min_area)
    sample_count = int(labels.max(initial=0))
    sample_truth = int(sample.labels.max(initial=0))

    with tempfile.TemporaryDirectory(prefix="cellcount-export-") as staging:
        root = Path(staging)
        files = PackageFiles(
            architecture=root / FILE_NAME,
            state_dict=root / "weights.pt",
            torchscript=root / "weights_torchscript.pt",
            test_input=root / "test_input.npy",
            test_output=root / "test_output.npy",
            sample_input=root / "sample_input.tif",
            sample_output=root / "sample_output.tif",
            cover=root / "cover.png",
            documentation=root / "README.md",
            record=root / RECORD_FILE,
        )
        files.architecture.write_text(architecture_source(), encoding="utf-8")
        torch.save(model.state_dict(), files.state_dict)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=DeprecationWarning, module="torch.jit")
            torch.jit.save(graph, str(files.torchscript))
        np.save(files.test_input, sample.input_tensor)
        np.save(files.test_output, sample.output_tensor)
        tifffile.imwrite(files.sample_input, sample.image)
        tifffile.imwrite(files.sample_output, sample.probabilities)
        save_cover(sample.image, labels, files.cover)
        facts = PackageFacts(
            checkpoint_file=checkpoint.name,
            checkpoint_sha256=sha256,
            halo=halo,
            min_side=min_side(halo),
            sample_count=sample_count,
            sample_truth=sample_truth,
        )
        files.documentation.write_text(render_readme(record, card_text, facts), encoding="utf-8")
        files.record.write_text(record.model_dump_json(indent=1), encoding="utf-8")
        description = build_description(
            record,
            files,
            checkpoint_file=checkpoint.name,
            checkpoint_sha256=sha256,
            halo=halo,
            authors=list(authors),
            parameter_count=sum(p.numel() for p in model.parameters()),
        )
        if output.suffix.lower() == ".zip":
            output.parent.mkdir(parents=True, exist_ok=True)
            written = save_bioimageio_package(description, output_path=output)
        else:
            written = save_bioimageio_package_as_folder(description, output_path=output)
    return ExportResult(Path(written), sample_count, sample_truth, difference)
