"""Zoo-wide contract: registry, forward/backward shapes, normalisation, blocks, activations."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from robustlayers.models import (
    Normalize,
    create_model,
    list_models,
    model_info,
)

ALL = [
    "densenet121", "preact_resnet18", "preact_resnet34", "resnet18", "resnet18_spectrum",
    "resnet34", "resnet50", "smallcnn", "vgg16_bn", "vgg19_bn", "wrn28_10", "wrn34_10", "wrn70_16",
]
# wrn70_16 (267M parameters) is built once (module cache, ~5 s on 2 cores); its grey variant is the
# same WideResNet code path as wrn28_10 / wrn34_10, which test_grey_inputs_and_other_sizes covers.
BIG = {"wrn70_16"}


def test_list_models_all_and_patterns():
    assert list_models() == sorted(ALL)
    assert list_models("resnet*") == ["resnet18", "resnet18_spectrum", "resnet34", "resnet50"]
    assert list_models("*resnet18") == ["preact_resnet18", "resnet18"]
    assert list_models("WRN*") == ["wrn28_10", "wrn34_10", "wrn70_16"]
    assert list_models("vgg1?_bn") == ["vgg16_bn", "vgg19_bn"]
    assert list_models("nothing*") == []


def test_unknown_model_lists_close_names():
    with pytest.raises(ValueError) as err:
        create_model("resnet19")
    msg = str(err.value)
    assert "resnet19" in msg and "resnet18" in msg
    assert "Closest" in msg and "Valid choices" in msg
    for name in ALL:
        assert name in msg
    with pytest.raises(ValueError, match="wrn34_10"):
        create_model("wrn34-10")


def test_bad_activation_lists_choices():
    with pytest.raises(ValueError) as err:
        create_model("smallcnn", activation="gelu")
    assert "relu" in str(err.value) and "swish" in str(err.value)
    with pytest.raises(ValueError, match="swish"):
        create_model("smallcnn", activation="swsh")


@pytest.mark.parametrize("kwargs, match", [
    (dict(num_classes=0), "num_classes"),
    (dict(in_channels=0), "in_channels"),
    (dict(input_size=2), "input_size"),
    (dict(mean=[0.1, 0.2]), "mean"),
    (dict(std=[0.5, 0.0, 0.5]), "std"),
])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        create_model("smallcnn", **kwargs)


def test_min_input_sizes():
    with pytest.raises(ValueError, match="input_size >= 32"):
        create_model("vgg16_bn", input_size=28)
    with pytest.raises(ValueError, match="input_size >= 8"):
        create_model("densenet121", input_size=7)
    assert model_info("resnet18").min_input_size == 1


@pytest.mark.parametrize("name", ALL)
def test_forward_backward_default_shape(name, zoo_cache):
    torch.manual_seed(0)
    if name in BIG:  # 267M params, ~100 GFLOP per image fwd+bwd: one image, no finiteness sweep
        model, num_classes, batch = zoo_cache(name), 10, 1
    else:
        model, num_classes, batch = create_model(name, num_classes=7), 7, 2
    assert model.training
    x = torch.rand(batch, *model.input_shape)
    out = model(x)
    assert out.shape == (batch, num_classes)
    out.square().sum().backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None for g in grads), "every parameter takes part in forward"
    if name not in BIG:
        assert all(torch.isfinite(g).all() for g in grads)
    model.zero_grad(set_to_none=True)


@pytest.mark.parametrize("name", [n for n in ALL if n not in BIG])
def test_grey_inputs_and_other_sizes(name):
    size = 28 if model_info(name).min_input_size <= 28 else 32
    model = create_model(name, in_channels=1, input_size=size, num_classes=3).eval()
    assert model.input_shape == (1, size, size)
    with torch.no_grad():
        assert model(torch.rand(2, 1, size, size)).shape == (2, 3)


@pytest.mark.parametrize("name", ["resnet18", "smallcnn", "preact_resnet18", "densenet121"])
def test_other_input_sizes(name):
    for size in (16, 40):
        model = create_model(name, input_size=size).eval()
        with torch.no_grad():
            assert model(torch.rand(1, 3, size, size)).shape == (1, 10)


@pytest.mark.parametrize("name", ALL)
def test_zoo_attributes(name, zoo_cache):
    model = zoo_cache(name)
    children = [n for n, _ in model.named_children()]
    assert children[0] == "normalize" and isinstance(model.normalize, Normalize)
    assert model.input_shape == (3, 32, 32)
    # every top-level child has a block; blocks are stem/layerN/head
    assert set(model.layer_blocks) == set(children)
    for block in model.layer_blocks.values():
        assert block in ("stem", "head") or (block.startswith("layer") and block[5:].isdigit())
    assert "head" in model.layer_blocks.values()
    # no inplace activations anywhere; there are activation modules
    acts = [m for m in model.modules() if isinstance(m, (nn.ReLU, nn.SiLU))]
    assert acts and not any(getattr(m, "inplace", False) for m in acts)
    # normalisation buffers are not in the state dict
    assert not any(k.startswith("normalize.") for k in model.state_dict())
    assert {n for n, _ in model.named_buffers()} >= {"normalize.mean", "normalize.std"}
    json.dumps(model.zoo_config)
    assert model.zoo_config["name"] == name
    # final_activation names the last activation module that sees a spatial (N,C,H,W) input
    final = model.get_submodule(model.final_activation)
    assert isinstance(final, (nn.ReLU, nn.SiLU))
    names = [n for n, m in model.named_modules()
             if isinstance(m, (nn.ReLU, nn.SiLU)) and not n.startswith("head")]
    assert names[-1] == model.final_activation


def test_blocks_per_family(zoo_cache):
    rn = zoo_cache("resnet18").layer_blocks
    assert (rn["conv1"], rn["bn1"], rn["layer3"], rn["linear"]) == ("stem", "stem", "layer3", "head")
    assert rn["act1"] == "stem" and "act" not in rn  # stem activation is act1, not act
    assert zoo_cache("resnet18").final_activation == "layer4.1.act"
    assert zoo_cache("resnet50").final_activation == "layer4.2.act"
    pa = zoo_cache("preact_resnet18").layer_blocks
    assert (pa["conv1"], pa["bn"], pa["linear"]) == ("stem", "head", "head")
    wrn = zoo_cache("wrn34_10").layer_blocks
    assert (wrn["conv1"], wrn["block1"], wrn["block3"], wrn["bn1"], wrn["fc"]) == (
        "stem", "layer1", "layer3", "head", "head")
    vgg = zoo_cache("vgg16_bn").layer_blocks
    assert [vgg[f"layer{i}"] for i in range(1, 6)] == [f"layer{i}" for i in range(1, 6)]
    dn = zoo_cache("densenet121").layer_blocks
    assert (dn["conv1"], dn["dense1"], dn["trans1"], dn["dense4"], dn["bn"], dn["linear"]) == (
        "stem", "layer1", "layer1", "layer4", "head", "head")
    sc = zoo_cache("smallcnn").layer_blocks
    assert (sc["layer1"], sc["layer2"], sc["head"]) == ("layer1", "layer2", "head")


def test_normalize_module():
    norm = Normalize([0.1, 0.2, 0.3], [0.5, 0.25, 0.125], in_channels=3)
    x = torch.rand(2, 3, 4, 4)
    expected = (x - torch.tensor([0.1, 0.2, 0.3]).view(1, 3, 1, 1)) / torch.tensor(
        [0.5, 0.25, 0.125]).view(1, 3, 1, 1)
    assert torch.allclose(norm(x), expected)
    assert norm.state_dict() == {}
    default = Normalize(in_channels=1)
    assert default.mean.flatten().tolist() == [0.5] and default.std.flatten().tolist() == [0.5]
    assert Normalize(0.3, 0.2, in_channels=3).mean.flatten().tolist() == pytest.approx([0.3] * 3)


def test_dataset_stats_reach_normalize():
    mean, std = (0.4914, 0.4822, 0.4465), (0.2471, 0.2435, 0.2616)
    model = create_model("resnet18", mean=mean, std=std)
    assert model.normalize.mean.flatten().tolist() == pytest.approx(mean)
    assert model.normalize.std.flatten().tolist() == pytest.approx(std)
    assert model.zoo_config["mean"] == pytest.approx(list(mean))


def test_swish_option():
    model = create_model("wrn28_10", activation="swish")
    acts = [m for m in model.modules() if isinstance(m, (nn.ReLU, nn.SiLU))]
    assert acts and all(isinstance(m, nn.SiLU) for m in acts)
    small = create_model("smallcnn", activation="SiLU")
    assert small.zoo_config["activation"] == "swish"


def test_seed_is_deterministic_and_leaves_global_rng_alone():
    torch.manual_seed(123)
    before = torch.get_rng_state()
    a = create_model("smallcnn", seed=5)
    assert torch.equal(torch.get_rng_state(), before)
    b = create_model("smallcnn", seed=5)
    c = create_model("smallcnn", seed=6)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)


def test_zoo_config_rebuilds_same_architecture():
    model = create_model("smallcnn", in_channels=1, input_size=28, mean=0.2860, std=0.3530)
    again = create_model(**model.zoo_config)
    assert again.input_shape == model.input_shape
    assert {k: v.shape for k, v in again.state_dict().items()} == {
        k: v.shape for k, v in model.state_dict().items()}
    assert torch.equal(again.normalize.mean, model.normalize.mean)


def test_smallcnn_size():
    model = create_model("smallcnn", in_channels=1, input_size=28)
    n = sum(p.numel() for p in model.parameters())
    assert n == 218_586
    kinds = [type(m).__name__ for m in model.modules() if list(m.parameters(recurse=False))]
    assert kinds.count("Conv2d") == 4 and kinds.count("BatchNorm2d") == 4 and kinds.count("Linear") == 2


def test_model_moves_with_normalize_buffers():
    model = create_model("smallcnn").to(torch.float64)
    assert model.normalize.mean.dtype == torch.float64
    out = model(torch.rand(1, 3, 32, 32, dtype=torch.float64))
    assert out.dtype == torch.float64
