"""Whole-image inference for evaluation: pad to a multiple of 16, one forward pass, crop back.

The service tiles large images for batching; evaluation runs the full padded image so its
figures never depend on tile geometry (the service's tests check that tiling changes nothing).
"""

from __future__ import annotations

import contextlib

import numpy as np
import torch

from model_training.unet import SIZE_MULTIPLE


def pad_to_multiple(image: np.ndarray, multiple: int = SIZE_MULTIPLE) -> np.ndarray:
    """Reflect-pad bottom/right so both sides are multiples of ``multiple``."""
    pad_h, pad_w = -image.shape[0] % multiple, -image.shape[1] % multiple
    if not pad_h and not pad_w:
        return image
    mode = "reflect" if min(image.shape) > max(pad_h, pad_w) else "symmetric"
    return np.pad(image, ((0, pad_h), (0, pad_w)), mode=mode)


def autocast_context(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """bf16 autocast when asked for, a no-op for fp32."""
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    if precision != "fp32":
        raise ValueError(f"precision must be 'fp32' or 'bf16', got {precision!r}")
    return contextlib.nullcontext()


@torch.inference_mode()
def predict_probabilities(
    model: torch.nn.Module,
    image: np.ndarray,
    device: torch.device | str = "cpu",
    precision: str = "fp32",
) -> np.ndarray:
    """Per-pixel cell probability for one normalized 2-D image of any size."""
    device = torch.device(device)
    height, width = image.shape
    padded = pad_to_multiple(np.asarray(image, dtype=np.float32))
    batch = torch.from_numpy(np.ascontiguousarray(padded))[None, None].to(device)
    with autocast_context(device, precision):
        logits = model(batch)
    probabilities = torch.sigmoid(logits.float())[0, 0, :height, :width]
    return probabilities.cpu().numpy()
