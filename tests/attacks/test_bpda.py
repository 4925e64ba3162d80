"""BPDA (SPECTRUM §4): a floor quantiser masks gradients; straight-through gradients unmask them."""
import pytest
import torch
from torch import nn

from robustlayers.attacks import BPDA, PGD, BPDAWrapper, ThreatModel, straight_through

from .toys import Quantize, accuracy

LINF = ThreatModel("linf", 0.1)


class QuantInput(nn.Module):
    """q(x) = ⌊8x⌋/8 on the input, then the trained MLP."""

    def __init__(self, net, quant=None):
        super().__init__()
        self.quant, self.net = quant or Quantize(8.0), net

    def forward(self, x):
        return self.net(self.quant(x))


class QuantFeatures(nn.Module):
    """The quantiser on hidden features, as SPECTRUM inserts it after a block."""

    def __init__(self, net, quant=None):
        super().__init__()
        self.net, self.quant = net, quant or Quantize(8.0)

    def forward(self, x):
        return self.net.fc2(self.quant(self.net.act(self.net.fc1(x.flatten(1)))))


def test_straight_through_function_and_module():
    q = Quantize(4.0)
    x = torch.rand(3, 5, requires_grad=True)
    st = straight_through(q)
    out = st(x)
    torch.testing.assert_close(out, q(x.detach()))
    (grad,) = torch.autograd.grad((out * torch.arange(5.0)).sum(), x)
    torch.testing.assert_close(grad, torch.arange(5.0).expand(3, 5))  # identity backward
    (masked,) = torch.autograd.grad(q(x).sum(), x)
    assert masked.abs().sum() == 0  # the true quantiser has zero gradient
    wrapper = BPDAWrapper(q)
    (grad,) = torch.autograd.grad(wrapper(x).sum(), x)
    torch.testing.assert_close(grad, torch.ones(3, 5))
    with pytest.raises(ValueError, match="keep the shape"):
        straight_through(lambda t: t.sum(1))(x)
    with pytest.raises(ValueError, match="callable"):
        straight_through(3)
    with pytest.raises(ValueError, match="nn.Module"):
        BPDAWrapper(torch.floor)


@pytest.mark.parametrize("where", [QuantInput, QuantFeatures])
def test_bpda_unmasks_quantised_model(mlp, data, where):
    x, y = data["x"], data["y"]
    model = where(mlp)
    clean = accuracy(model, x, y)
    assert clean > 0.7
    plain = PGD(LINF, steps=10, random_start=False)
    x_plain = plain(model, x, y)
    assert plain.last_report["zero_grad_fraction"] == 1.0
    assert accuracy(model, x_plain, y) == clean  # gradient masking: falsely "robust"
    noisy = PGD(LINF, steps=10)  # with a random start it only adds noise
    assert accuracy(model, noisy(model, x, y), y) > clean - 0.05

    bpda = BPDA(PGD(LINF, steps=10), "quant")
    x_bpda = bpda(model, x, y)
    assert bpda.last_report["zero_grad_fraction"] == 0.0
    assert (x_bpda - x).abs().max() <= LINF.eps + 1e-6
    acc_bpda = accuracy(model, x_bpda, y)  # evaluated on the true (quantised) forward pass
    assert acc_bpda < clean - 0.4, (clean, acc_bpda)
    assert all(not m._forward_hooks for m in model.modules())  # hooks removed
    assert all(p.grad is None for p in model.parameters())
    assert bpda.config()["name"] == "bpda-pgd" and bpda.config()["bpda_modules"] == ["quant"]

    # the same attack on a model variant built with BPDAWrapper
    variant = where(mlp, quant=BPDAWrapper(Quantize(8.0)))
    x_var = PGD(LINF, steps=10)(variant, x, y)
    assert torch.equal(x_var, x_bpda)


def test_bpda_unknown_module(mlp, batch):
    x, y = batch
    with pytest.raises(ValueError, match="quant"):
        BPDA(PGD(LINF, steps=1), ["qaunt"])(QuantInput(mlp), x, y)
    with pytest.raises(ValueError, match="keep its input shape"):
        BPDA(PGD(LINF, steps=1), ["net.fc1"])(QuantInput(mlp), x, y)
    model = QuantInput(mlp)
    assert all(not m._forward_hooks for m in model.modules())
