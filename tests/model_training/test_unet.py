import numpy as np
import pytest
import torch
from torch import nn

from model_training.inference import pad_to_multiple, predict_probabilities
from model_training.unet import UNet


def conv_param_count(k: int, c_in: int, c_out: int) -> int:
    return k * k * c_in * c_out + c_out


def reference_param_count(base: int) -> int:
    """Parameters of the reference design, summed layer by layer from its description."""
    widths = [base * 2**i for i in range(5)]
    total, previous = 0, 1
    for width in widths:  # encoder: two 3x3 convs per level
        total += conv_param_count(3, previous, width) + conv_param_count(3, width, width)
        previous = width
    for width in reversed(widths[1:]):  # decoder: 2x2 up-conv, then two 3x3 convs
        half = width // 2
        total += conv_param_count(2, width, half)
        total += conv_param_count(3, width, half) + conv_param_count(3, half, half)
    return total + conv_param_count(1, base, 1)


def test_default_model_matches_reference_design():
    model = UNet()
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 23
    assert [c.kernel_size for c in convs].count((3, 3)) == 18
    assert [c.kernel_size for c in convs].count((2, 2)) == 4
    assert convs[-1].kernel_size == (1, 1) and convs[-1].out_channels == 1
    encoder_outputs = [c.out_channels for c in convs[:10:2]]
    assert encoder_outputs == [64, 128, 256, 512, 1024]
    up_convs = [c for c in convs if c.kernel_size == (2, 2)]
    assert [(c.in_channels, c.out_channels) for c in up_convs] == [
        (1024, 512),
        (512, 256),
        (256, 128),
        (128, 64),
    ]
    n_params = sum(p.numel() for p in model.parameters())
    assert n_params == reference_param_count(64) == 31_030_593


@pytest.mark.parametrize("base", [4, 16])
def test_width_scales_every_layer(base):
    model = UNet(base_channels=base)
    assert sum(p.numel() for p in model.parameters()) == reference_param_count(base)


@pytest.mark.parametrize("shape", [(16, 16), (48, 80), (64, 32)])
def test_output_has_input_size(shape):
    model = UNet(base_channels=4).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 1, *shape))
    assert out.shape == (2, 1, *shape)


def test_non_multiple_input_names_the_padding():
    with pytest.raises(ValueError, match="pad by 3 rows and 11 columns"):
        UNet(base_channels=4)(torch.zeros(1, 1, 45, 53))


@pytest.mark.parametrize("shape", [(37, 53), (1, 1), (5, 200), (100, 17)])
def test_whole_image_prediction_on_odd_sizes(shape):
    torch.manual_seed(0)
    model = UNet(base_channels=4).eval()
    image = np.random.default_rng(0).random(shape, dtype=np.float32)
    probs = predict_probabilities(model, image)
    assert probs.shape == shape
    assert np.all((probs >= 0) & (probs <= 1))
    assert pad_to_multiple(image).shape == tuple(-(-s // 16) * 16 for s in shape)
