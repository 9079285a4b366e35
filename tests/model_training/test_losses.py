import pytest
import torch
import torch.nn.functional as F

from model_training.losses import PixelWeightedBCE


def _batch() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 1, 8, 8, generator=generator)
    mask = (torch.rand(2, 1, 8, 8, generator=generator) > 0.5).float()
    return logits, mask


def test_one_channel_targets_are_plain_bce():
    logits, mask = _batch()
    assert PixelWeightedBCE()(logits, mask) == pytest.approx(
        float(F.binary_cross_entropy_with_logits(logits, mask))
    )


def test_unit_weights_give_plain_bce_and_weights_move_the_loss_to_their_pixels():
    logits, mask = _batch()
    loss = PixelWeightedBCE()
    ones = torch.cat([mask, torch.ones_like(mask)], dim=1)
    plain = float(F.binary_cross_entropy_with_logits(logits, mask))
    assert float(loss(logits, ones)) == pytest.approx(plain, rel=1e-6)
    # All weight on one pixel: the loss is that pixel's BCE, whatever the others do.
    only = torch.zeros_like(mask)
    only[1, 0, 3, 4] = 7.0
    pixel = F.binary_cross_entropy_with_logits(logits[1, 0, 3, 4], mask[1, 0, 3, 4])
    assert float(loss(logits, torch.cat([mask, only], dim=1))) == pytest.approx(float(pixel))


def test_the_weighted_loss_trains_the_gap_harder():
    # A logit that bridges a gap (says "cell" where the target says background) costs more
    # when that pixel is weighted: the gradient there grows with its share of the weight.
    logits = torch.zeros(1, 1, 4, 4, requires_grad=True)
    mask = torch.ones(1, 1, 4, 4)
    mask[0, 0, :, 2] = 0.0  # a one-pixel gap column
    weights = torch.ones(1, 1, 4, 4)
    weights[0, 0, :, 2] = 5.0
    PixelWeightedBCE()(logits, torch.cat([mask, weights], dim=1)).backward()
    gap, cell = logits.grad[0, 0, 0, 2], logits.grad[0, 0, 0, 0]
    assert gap > 0 > cell and abs(gap) == pytest.approx(5 * abs(cell))
