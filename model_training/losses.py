"""The training loss: BCE on logits, optionally weighted per pixel.

Targets are (N, 1, H, W) foreground masks, or (N, 2, H, W) with per-pixel loss weights in the
second channel (``targets.contact_weights``: the gaps between touching nuclei). Weighted, the
loss is the weighted mean, so its scale stays that of plain BCE and validation costs (always
unweighted) stay comparable with a parent checkpoint's.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


class PixelWeightedBCE(torch.nn.Module):
    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        if targets.shape[1] == 1:
            return F.binary_cross_entropy_with_logits(logits, targets)
        mask, weights = targets[:, :1], targets[:, 1:]
        losses = F.binary_cross_entropy_with_logits(logits, mask, reduction="none")
        return (losses * weights).sum() / weights.sum().clamp_min(1e-6)
