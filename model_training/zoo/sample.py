"""The package's test image and the tensors a consumer must reproduce from it.

The image comes from the project's own generator (``model_training.synthetic``), drawn at the
nucleus size the checkpoints were trained on, so the test exercises the network where it is
meant to work and the round trip can compare counts on it. The expected output is computed the
way the service computes it: ``PercentileNormalization.apply`` (the checkpoint's percentiles),
the network in fp32, sigmoid.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from model_training.checkpoint import CheckpointRecord
from model_training.synthetic import SyntheticConfig, generate_sample

SAMPLE_SIDE = 256  # a multiple of 16, so consumers need no padding
SAMPLE_SEED = 19
SAMPLE_CELLS = 24


@dataclass(frozen=True)
class PackageSample:
    """The raw image (what a user opens), its true labels and the network's probabilities."""

    image: np.ndarray  # (H, W) uint16, as the generator wrote it
    labels: np.ndarray  # (H, W) int, the generator's instances
    probabilities: np.ndarray  # (H, W) float32

    @property
    def input_tensor(self) -> np.ndarray:
        """(batch, channel, y, x) float32: the raw intensities, before pre-processing."""
        return self.image.astype(np.float32)[None, None]

    @property
    def output_tensor(self) -> np.ndarray:
        """(batch, channel, y, x) float32 probabilities."""
        return self.probabilities.astype(np.float32)[None, None]


def sample_image() -> tuple[np.ndarray, np.ndarray]:
    """A 16-bit synthetic fluorescence image of nuclei and its instance labels."""
    config = SyntheticConfig(height=SAMPLE_SIDE, width=SAMPLE_SIDE, bit_depth=16)
    sample = generate_sample(SAMPLE_SEED, config, count=SAMPLE_CELLS)
    return sample.image, sample.labels


@torch.inference_mode()
def make_sample(network: torch.nn.Module, record: CheckpointRecord) -> PackageSample:
    """Run ``network`` (the package's, probabilities out) on the test image."""
    image, labels = sample_image()
    normalized = record.normalization.apply(image)
    batch = torch.from_numpy(np.ascontiguousarray(normalized, dtype=np.float32))[None, None]
    probabilities = network(batch)[0, 0].numpy().astype(np.float32)
    return PackageSample(image=image, labels=labels, probabilities=probabilities)
