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

from .toys import MeanBand, TinyCNN, images, labels


def test_quantizer_forward_values_exact():
    x = torch.tensor([-0.3, -0.125, 0.0, 0.124, 0.125, 0.3, 0.999, 1.7])
    q = Quantizer(8)(x)
    assert torch.equal(q, torch.tensor([-0.375, -0.125, 0.0, 0.0, 0.125, 0.25, 0.875, 1.625]))
    assert torch.equal(Quantizer(8, straight_through=True)(x), q)
    with pytest.raises(ValueError, match="beta"):
        Quantizer(0)


def test_straight_through_comes_from_the_attacks_package(monkeypatch):
    import robustlayers.analysis.quantization as quantization
    from robustlayers.attacks import straight_through

    wrapped = []

    def spy(fn):
        wrapped.append(fn)
        return straight_through(fn)

    monkeypatch.setattr(quantization, "straight_through", spy)
    q = Quantizer(4, straight_through=True)
    assert torch.equal(q(torch.tensor([0.3, 0.9])), torch.tensor([0.25, 0.75]))
    assert wrapped == [q.quantize]


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
    attacks = out["attacks"]
    assert attacks["bpda"]["attack"]["steps"] == 1
    # SPECTRUM's code: BPDA, transfer and the unquantised baseline all step α = δ/10
    for name in ("bpda", "pgd_masked", "transfer", "baseline_pgd"):
        assert attacks[name]["attack"]["alpha"] == pytest.approx(0.1 * 8 / 255), name
        assert attacks[name]["alpha_rule"] == "alpha = 0.1*delta (SPECTRUM's code: delta/10)"
    assert (out["bpda_alpha_over_eps"], out["test_alpha_over_eps"]) == (0.1, 0.1)
    assert out["alpha_rule"]["bpda"] == out["alpha_rule"]["test"]
    with pytest.raises(ValueError, match="eps_grid"):
        quantization_grid(model, x, y, eps_grid=())


def test_default_beta_outside_the_grid_is_an_error():
    with pytest.raises(ValueError, match=r"default_beta 8 is not in betas \[4.0, 6.0\]"):
        quantization_grid(TinyCNN(), images(2, (1, 8, 8)), labels(2), betas=(4, 6),
                          eps_grid=(0.1,))


def _band_grid(pixel: float, eps: float, steps: int = 20, **kwargs):
    """The grid on MeanBand (class 0 iff |mean − 0.14| < 0.03) for 4 constant images of value
    ``pixel``, β = 8 at the output of ``feat``: returns (baseline, the one cell, the δ key)."""
    x = torch.full((4, 1, 16, 16), pixel)
    y = torch.zeros(4, dtype=torch.long)
    out = quantization_grid(MeanBand(), x, y, placements=["feat"], betas=(8,), eps_grid=(eps,),
                            steps=steps, seed=0, **kwargs)
    assert out["placements"] == [{"spec": "feat", "module": "feat", "where": "output"}]
    return out["baseline"], out["cells"][0], out["eps_grid"][0]["key"]


def test_clean_bpda_transfer_and_masked_pgd_differ_as_designed():
    # pixels 39/255 = 0.153; q = ⌊8·39/255⌋/8 = 1/8 (the step edge 1/8 = 31.875/255 lies
    # 7.125/255 below); ε = 8/255.
    base, cell, key = _band_grid(39 / 255, 8 / 255)
    # unquantised: mean 0.153 is in the band; PGD-20 pushes every pixel *up* (mean > 0.14) to
    # 47/255 = 0.184, out of the band
    assert base["clean_accuracy"] == 1.0 and base["pgd"][key] == 0.0
    # quantised clean: mean 1/8, in the band
    assert cell["clean_accuracy"] == 1.0
    # transfer: crafted on the unquantised model (up to 47/255), 8-bit, ⌊8·47/255⌋/8 = 1/8 on
    # the quantised model: in the band. Crafted through the quantiser (pushed down) or scored on
    # the unquantised model (0.184) they would fail.
    assert cell["transfer"][key] == 1.0
    # BPDA: the straight-through gradient at mean 1/8 < 0.14 pushes every pixel *down* to
    # 31/255 < 1/8, so q = 0 on the true forward: out of the band. (Scored on the unquantised
    # model, 31/255 = 0.122 would be in the band.)
    assert cell["bpda"][key] == 0.0
    # plain PGD through the true ⌊·⌋: zero gradient, only the random start moves pixels; ~5%
    # fall below the step edge, mean ≈ 0.118: in the band — masking, not robustness
    assert cell["pgd_masked"][key] == 1.0


def test_each_attack_takes_its_own_step_size():
    # 5 steps: with the test α = δ/10 the unquantised attack moves pixels ~7δ/16 on average
    # (mean 0.167, still in the band); with α = δ/4 it reaches +δ (0.184, out).
    base, cell, key = _band_grid(39 / 255, 8 / 255, steps=5)
    assert base["pgd"][key] == 1.0 and cell["transfer"][key] == 1.0
    base, cell, key = _band_grid(39 / 255, 8 / 255, steps=5, test_alpha_over_eps=0.25)
    assert base["pgd"][key] == 0.0
    out = quantization_grid(MeanBand(), torch.full((2, 1, 16, 16), 0.15),
                            torch.zeros(2, dtype=torch.long), placements=["feat"], betas=(8,),
                            eps_grid=(8 / 255,), steps=1, bpda_alpha_over_eps=0.25)
    assert out["attacks"]["bpda"]["attack"]["alpha"] == pytest.approx(2 / 255)
    assert out["attacks"]["transfer"]["attack"]["alpha"] == pytest.approx(0.8 / 255)
    assert out["alpha_rule"] == {"bpda": "alpha = 0.25*delta",
                                 "test": "alpha = 0.1*delta (SPECTRUM's code: delta/10)"}


def test_transfer_images_are_rounded_to_8_bit():
    # pixels 32/255 (just above the step edge 31.875/255), ε = 0.4/255: both attacks push every
    # pixel down to 31.6/255. BPDA's images are scored as they are: q = 0, out of the band. The
    # transfer images are rounded back to 32/255: q = 1/8, in the band.
    base, cell, key = _band_grid(32 / 255, 0.4 / 255)
    assert key == "0.4/255"
    assert base["clean_accuracy"] == 1.0 and base["pgd"][key] == 1.0    # 0.124: in the band
    assert cell["clean_accuracy"] == 1.0
    assert cell["transfer"][key] == 1.0
    assert cell["bpda"][key] == 0.0
