"""Transfer attacks (SPECTRUM §4 Transfer PGD, CLAT black-box matrix)."""
import pytest
import torch
from torch import nn

from robustlayers.attacks import PGD, ThreatModel, TransferAttack, quantize_8bit

from .toys import Quantize, accuracy

LINF = ThreatModel("linf", 8 / 255)


class Untouchable(nn.Module):
    def forward(self, x):
        raise AssertionError("the target model must not be called by the attack")


def test_returns_the_source_attack_images(tiny, batch):
    x, y = batch
    attack = PGD(LINF, steps=5, seed=3)
    transfer = TransferAttack(tiny, attack)
    x_adv = transfer(Untouchable(), x, y)
    assert torch.equal(x_adv, attack(tiny, x, y))
    cfg = transfer.config()
    assert cfg["name"] == "transfer-pgd" and cfg["source_model"] == "TinyNet"
    assert cfg["to_8bit"] is False and cfg["source_attack"]["steps"] == 5


def test_8bit_quantisation(tiny, batch):
    x, y = batch  # Fashion-MNIST pixels are on the 8-bit grid
    x_adv = TransferAttack(tiny, PGD(LINF, steps=5), to_8bit=True)(Untouchable(), x, y)
    codes = x_adv * 255
    torch.testing.assert_close(codes, codes.round(), atol=1e-4, rtol=0)
    assert (x_adv - x).abs().max() <= LINF.eps + 1e-6
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    torch.testing.assert_close(quantize_8bit(torch.tensor([0.0, 0.5 / 255 + 1e-4, 1.0])),
                               torch.tensor([0.0, 1 / 255, 1.0]))


def test_black_box_weaker_than_white_box(tiny, mlp, data):
    x, y = data["x"], data["y"]
    t = ThreatModel("linf", 0.1)
    white = accuracy(mlp, PGD(t, steps=10)(mlp, x, y), y)
    black = accuracy(mlp, TransferAttack(tiny, PGD(t, steps=10))(mlp, x, y), y)
    assert white <= black < accuracy(mlp, x, y)


def test_transfer_pgd_on_quantised_model(mlp, data):
    """Craft on the model without the quantiser, evaluate on the one with it (SPECTRUM §4)."""
    x, y = data["x"], data["y"]
    quantised = nn.Sequential(Quantize(8.0), mlp)
    t = ThreatModel("linf", 0.1)
    x_adv = TransferAttack(mlp, PGD(t, steps=10), to_8bit=True)(quantised, x, y)
    assert accuracy(quantised, x_adv, y) < accuracy(quantised, x, y) - 0.3


@pytest.mark.parametrize("seed", [0, 1])
def test_seed_passes_through(tiny, batch, seed):
    x, y = batch
    attack = TransferAttack(tiny, PGD(LINF, steps=2, seed=0))
    assert torch.equal(attack(tiny, x, y, seed=seed), PGD(LINF, steps=2, seed=seed)(tiny, x, y))
