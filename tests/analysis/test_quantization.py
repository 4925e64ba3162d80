"""Feature quantisation (SPECTRUM §4, SPEC §9): the quantiser, BPDA, placements, the grid."""

import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from robustlayers.analysis import (
    Placement, Quantizer, default_placements, quantization_grid, quantized, resolve_placement,
)
from robustlayers.layers import capture
from robustlayers.models import create_model

from .toys import TinyCNN, images, labels


def test_quantizer_forward_values_exact():
    x = torch.tensor([-0.3, -0.125, 0.0, 0.124, 0.125, 0.3, 0.999, 1.7])
    q = Quantizer(8)(x)
    assert torch.equal(q, torch.tensor([-0.375, -0.125, 0.0, 0.0, 0.125, 0.25, 0.875, 1.625]))
    assert torch.equal(Quantizer(8, straight_through=True)(x), q)
    with pytest.raises(ValueError, match="beta"):
        Quantizer(0)


def test_bpda_backward_is_identity_and_plain_floor_is_zero():
    x = torch.randn(3, 4, requires_grad=True)
    w = torch.randn(3, 4)
    (Quantizer(6, straight_through=True)(x) * w).sum().backward()
    assert torch.equal(x.grad, w)                        # straight-through: d q / d x = I
    x.grad = None
    (Quantizer(6)(x) * w).sum().backward()
    assert torch.count_nonzero(x.grad) == 0              # true floor: zero gradient


def _small_resnet():
    torch.manual_seed(0)
    model = create_model("resnet18", num_classes=3, in_channels=1, input_size=8).eval()
    for m in model.modules():                            # non-trivial BN statistics
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 1.5)
    return model


def test_resnet_layer1_placement_is_post_add_pre_relu():
    model = _small_resnet()
    place = resolve_placement(model, "layer1")
    assert place == Placement("layer1", "layer1.1.act", "input")
    assert resolve_placement(model, "conv0") == Placement("conv0", "conv1", "output")
    assert resolve_placement(model, "layer3") == Placement("layer3", "layer3.1.act", "input")
    assert default_placements(model) == ["conv0", "layer1", "layer2", "layer3", "layer4"]
    x = images(2, (1, 8, 8))
    beta = 4.0
    with torch.no_grad():
        # manual forward with q on the last block of layer1 after the residual add, before ReLU
        h = capture(model, ["layer1.0"], x)["layer1.0"]     # output of the first block
        blk = model.layer1[1]
        pre = blk.bn2(blk.conv2(blk.act1(blk.bn1(blk.conv1(h))))) + blk.shortcut(h)
        h = F.relu(torch.floor(beta * pre) / beta)
        h = model.layer4(model.layer3(model.layer2(h)))
        manual = model.linear(torch.flatten(model.pool(h), 1))
        with quantized(model, place, beta):
            hooked = model(x)
        plain = model(x)
    torch.testing.assert_close(hooked, manual, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(plain, manual)             # the quantiser did change something
    assert torch.equal(model(x), plain)                  # hook removed


def test_smallcnn_and_generic_placements():
    model = create_model("smallcnn", num_classes=10, in_channels=1, input_size=28)
    assert default_placements(model) == ["conv0", "layer1", "layer2"]
    assert resolve_placement(model, "conv0") == Placement("conv0", "layer1.0", "output")
    assert resolve_placement(model, "layer1") == Placement("layer1", "layer1.5", "output")
    assert resolve_placement(model, "input:layer2.2").where == "input"
    assert resolve_placement(model, "head.1") == Placement("head.1", "head.1", "output")
    with pytest.raises(ValueError, match="closest"):
        resolve_placement(model, "layer9")


def test_input_gradient_masked_without_bpda():
    model = TinyCNN().eval()
    place = resolve_placement(model, "conv1")
    x = images(2, (1, 8, 8)).requires_grad_(True)
    y = labels(2)
    with quantized(model, place, 8, straight_through=True):
        (g_bpda,) = torch.autograd.grad(F.cross_entropy(model(x), y), x)
    with quantized(model, place, 8):
        (g_plain,) = torch.autograd.grad(F.cross_entropy(model(x), y), x)
    assert g_bpda.abs().sum() > 0 and g_plain.abs().sum() == 0


class SharedAct(nn.Module):
    input_shape = (1, 4, 4)

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 1, 1)
        self.relu = nn.ReLU()
        self.fc = nn.Linear(16, 2)

    def forward(self, x):
        return self.fc(self.relu(self.conv(self.relu(x))).flatten(1))


def test_module_used_twice_is_refused():
    model = SharedAct()
    with pytest.raises(ValueError, match="runs 2 times"):
        with quantized(model, Placement("p", "relu", "input"), 8):
            model(images(1, (1, 4, 4)))


def test_grid_structure_and_best():
    model = TinyCNN()
    x, y = images(8, (1, 8, 8)), labels(8)
    out = quantization_grid(model, x, y, placements=["conv1", "input:act2"], betas=(4, 8),
                            eps_grid=(8 / 255, 16 / 255), steps=1, seed=2)
    json.dumps(out)
    assert len(out["cells"]) == 4
    assert [p["module"] for p in out["placements"]] == ["conv1", "act2"]
    keys = {"8/255", "16/255"}
    for cell in out["cells"]:
        assert set(cell["bpda"]) == set(cell["transfer"]) == keys
        assert 0 <= cell["clean_accuracy"] <= 1
        assert (cell["pgd_masked"] is not None) == (cell["beta"] == 8.0)
    assert set(out["baseline"]["pgd"]) == keys
    best = out["best"]
    scores = [sum(c["bpda"].values()) / 2 for c in out["cells"]]
    assert best["bpda_mean"] == pytest.approx(max(scores))
    assert out["attacks"]["bpda"]["attack"]["steps"] == 1
    assert out["attacks"]["bpda"]["attack"]["alpha"] == pytest.approx(0.25 * 8 / 255)
    with pytest.raises(ValueError, match="eps_grid"):
        quantization_grid(model, x, y, eps_grid=())
