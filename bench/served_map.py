"""The probability map the service labels, for benches that re-label it several ways.

The service counts an image at its planned scale and, when ``refine_plan`` asks, once more at
the size its first cells had; a bench that compares labelling rules or signals must start from
the map of that final pass, or it measures something the service never serves.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
import torch

from model_training.checkpoint import CheckpointRecord, load_checkpoint
from model_training.inference import (
    Cells,
    network_min_area,
    predict_probabilities,
    probabilities_to_cells,
)
from model_training.scale import ScalePlan, SizeEstimate, plan_scale, refine_plan, resize_plane
from model_training.size_model import SizeModel, network_diameter, size_model_path

Estimator = Callable[[np.ndarray], SizeEstimate]


def served_bench(
    description: str, add_arguments: Callable[[argparse.ArgumentParser], None] | None = None
) -> tuple[argparse.Namespace, torch.nn.Module, CheckpointRecord, Estimator | None]:
    """Command line of a bench over validation sets (``--checkpoint``, ``--sets``,
    ``--size-model``, and whatever ``add_arguments`` adds), the loaded model and record, and the
    size estimator the service would use with them."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--checkpoint", type=Path, default=Path("weights/unet32.safetensors"))
    parser.add_argument("--sets", nargs="+", required=True)
    parser.add_argument("--size-model", default="beside", help="beside (served) or none")
    if add_arguments is not None:
        add_arguments(parser)
    args = parser.parse_args()
    model, record = load_checkpoint(args.checkpoint)
    torch.set_grad_enabled(False)
    estimator = None
    if args.size_model == "beside":
        size_model = SizeModel.load(size_model_path(args.checkpoint))
        estimator = partial(network_diameter, model, size_model)
    return args, model, record, estimator


def served_map(
    model: torch.nn.Module,
    record: CheckpointRecord,
    image: np.ndarray,
    estimator: Estimator | None,
) -> tuple[np.ndarray, np.ndarray, ScalePlan, Cells]:
    """(resized image, probability map, plan, served cells) of the final pass over ``image``
    (normalized); ``estimator``: the size estimate the service uses (None: image statistics)."""
    trained = record.nucleus_diameter_px
    plan = plan_scale(image, "auto", trained, estimator=estimator)
    while True:
        resized = resize_plane(image, plan.scale)
        probabilities = predict_probabilities(model, resized)
        cells = probabilities_to_cells(
            probabilities,
            plan,
            record,
            image.shape,
            record.threshold,
            network_min_area(record, None, plan),
        )
        if plan.refined:
            return resized, probabilities, plan, cells
        second = refine_plan(plan, cells.quality.network_diameter_px, trained)
        if second is None:
            return resized, probabilities, plan, cells
        plan = second
