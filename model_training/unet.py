"""The reference U-Net: 23 convolutions, 1 -> 64 -> ... -> 1024 -> ... -> 1 logit channel.

Every layer mirrors the reference design so that a checkpoint's ``base_channels`` is the only
architecture knob: 3x3 ``same`` convolutions with ReLU, 2x2 max-pooling on the way down, and on the
way up a nearest-neighbour upsample x2 followed by a 2x2 ``same`` convolution that halves the
channels (the Keras-style "up-convolution"), concatenated with the skip connection.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

DEPTH = 4
"""Number of 2x2 poolings; inputs must have sides divisible by ``2**DEPTH``."""

SIZE_MULTIPLE = 2**DEPTH


def _double_conv(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, padding="same"),
        nn.ReLU(inplace=True),
        nn.Conv2d(out_channels, out_channels, 3, padding="same"),
        nn.ReLU(inplace=True),
    )


class UpStep(nn.Module):
    """Upsample x2, 2x2 conv halving the channels, concatenate the skip, two 3x3 convs."""

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        out_channels = in_channels // 2
        self.upsample = nn.Upsample(scale_factor=2, mode="nearest")
        # "same" padding for a 2x2 kernel: one zero row/column at the bottom/right, as the
        # reference (Keras) implementation pads. Done explicitly in forward().
        self.up_conv = nn.Conv2d(in_channels, out_channels, 2)
        self.convs = _double_conv(in_channels, out_channels)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.up_conv(F.pad(self.upsample(x), (0, 1, 0, 1))))
        return self.convs(torch.cat([skip, x], dim=1))


class UNet(nn.Module):
    """Reference U-Net returning one logit channel; ``base_channels`` scales every width."""

    def __init__(self, base_channels: int = 64, in_channels: int = 1) -> None:
        super().__init__()
        if base_channels < 1:
            raise ValueError(f"base_channels must be a positive integer, got {base_channels}")
        self.base_channels = base_channels
        self.in_channels = in_channels
        widths = [base_channels * 2**level for level in range(DEPTH + 1)]
        self.down = nn.ModuleList()
        previous = in_channels
        for width in widths:
            self.down.append(_double_conv(previous, width))
            previous = width
        self.pool = nn.MaxPool2d(2)
        self.up = nn.ModuleList(UpStep(width) for width in reversed(widths[1:]))
        self.head = nn.Conv2d(base_channels, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        # A traced graph (the service's TorchScript path) would bake this check into a constant;
        # its callers pad every tile to the multiple themselves.
        if not torch.jit.is_tracing() and (height % SIZE_MULTIPLE or width % SIZE_MULTIPLE):
            pad_h = -height % SIZE_MULTIPLE
            pad_w = -width % SIZE_MULTIPLE
            raise ValueError(
                f"input of {height}x{width} pixels: both sides must be multiples of "
                f"{SIZE_MULTIPLE}; pad by {pad_h} rows and {pad_w} columns "
                "(see model_training.inference.pad_to_multiple)"
            )
        skips = []
        for index, block in enumerate(self.down):
            if index:
                x = self.pool(x)
            x = block(x)
            skips.append(x)
        skips.pop()
        for step in self.up:
            x = step(x, skips.pop())
        return self.head(x)
