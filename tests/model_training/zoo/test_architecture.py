"""The architecture file the package ships rebuilds the checkpoint's network, sigmoid added."""

from __future__ import annotations

import torch

from model_training.checkpoint import load_checkpoint
from model_training.zoo.architecture import architecture_source, package_network_class

from .conftest import CHECKPOINT


def test_package_network_is_the_checkpoint_network_with_a_sigmoid():
    model, record = load_checkpoint(CHECKPOINT)
    network = package_network_class()(base_channels=record.base_channels)
    network.load_state_dict(model.state_dict(), strict=True)  # same keys, no new parameters
    batch = torch.rand(2, 1, 80, 96, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        assert torch.equal(network.eval()(batch), torch.sigmoid(model(batch)))


def test_source_is_the_training_unet_verbatim_plus_the_subclass():
    source = architecture_source()
    assert source.startswith('"""The reference U-Net')
    assert "class UNetProbabilities(UNet):" in source
