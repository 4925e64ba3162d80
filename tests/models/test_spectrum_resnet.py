"""SPECTRUM's ResNet-18 variant (Sridhar et al., its released code): raw [0, 1] inputs and no
ReLU between the two blocks of a stage; same parameters, layer map and quantisation points as
ResNet-18."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from robustlayers.analysis import default_placements, quantized, resolve_placement
from robustlayers.analysis.preactivation import final_activation
from robustlayers.layers import layer_map
from robustlayers.models import create_model, model_info
from robustlayers.train import config_from_dict


@pytest.fixture(scope="module")
def pair():
    return (create_model("resnet18_spectrum", input_size=8, seed=0).eval(),
            create_model("resnet18", input_size=8, mean=0.0, std=1.0, seed=0).eval())


def test_same_layers_and_weights_as_resnet18(pair):
    spectrum, plain = pair
    assert spectrum.state_dict().keys() == plain.state_dict().keys()
    assert all(torch.equal(a, b) for a, b in zip(spectrum.state_dict().values(),
                                                  plain.state_dict().values()))
    ours, theirs = layer_map(spectrum), layer_map(plain)
    assert len(ours) == 41 and ours.names == theirs.names
    assert [i.out_shape for i in ours.layers] == [i.out_shape for i in theirs.layers]
    assert ours["layer4.1.conv2"].out_shape == (512, 1, 1)
    assert [i.name for i in ours.depth_layers][10] == "layer3.0.conv2"
    assert spectrum(torch.rand(2, 3, 8, 8)).shape == (2, 10)
    assert model_info("resnet18_spectrum").papers == ("SPECTRUM",)


def test_no_relu_between_the_two_blocks_of_a_stage(pair):
    spectrum, plain = pair
    for stage in ("layer1", "layer2", "layer3", "layer4"):
        blocks = getattr(spectrum, stage)
        assert isinstance(blocks[0].act, nn.Identity) and isinstance(blocks[1].act, nn.ReLU)
    assert isinstance(spectrum.act1, nn.ReLU)
    # the first block's output (the second block's input) keeps negative values; with the same
    # weights, ResNet-18 passes it through a ReLU
    seen = {}
    for label, model in (("spectrum", spectrum), ("plain", plain)):
        handle = model.layer1[1].register_forward_pre_hook(
            lambda _m, args, label=label: seen.__setitem__(label, args[0]))
        with torch.no_grad():
            out = model(torch.rand(4, 3, 8, 8, generator=torch.Generator().manual_seed(0)))
        handle.remove()
        seen[label + "_out"] = out
    assert seen["spectrum"].min() < 0 <= seen["plain"].min()
    assert torch.equal(seen["spectrum"].clamp(min=0), seen["plain"])
    assert not torch.allclose(seen["spectrum_out"], seen["plain_out"])


def test_raw_inputs_whatever_mean_is_given():
    model = create_model("resnet18_spectrum", input_size=8, mean=[0.49, 0.48, 0.45],
                         std=[0.25, 0.24, 0.26])
    assert model.normalize.mean.flatten().tolist() == [0.0] * 3
    assert model.normalize.std.flatten().tolist() == [1.0] * 3
    assert (model.zoo_config["mean"], model.zoo_config["std"]) == ([0.0] * 3, [1.0] * 3)
    model.normalize.set(0.0, 1.0)
    with pytest.raises(ValueError, match="raw \\[0, 1\\] images.*unset or choose 'none'"):
        model.normalize.set([0.49, 0.48, 0.45], [0.25, 0.24, 0.26])
    assert config_from_dict({"model": "resnet18_spectrum"}).normalize == "none"
    with pytest.raises(ValueError, match="normalize 'dataset' cannot apply"):
        config_from_dict({"model": "resnet18_spectrum", "normalize": "dataset"})


def test_quantisation_points_resolve_and_act(pair):
    spectrum, _ = pair
    assert default_placements(spectrum) == ["conv0", "layer1", "layer2", "layer3", "layer4"]
    places = {p: resolve_placement(spectrum, p) for p in default_placements(spectrum)}
    assert (places["conv0"].module, places["conv0"].where) == ("conv1", "output")
    for n in range(1, 5):  # after the stage's last residual add, before its ReLU
        assert (places[f"layer{n}"].module, places[f"layer{n}"].where) == \
            (f"layer{n}.1.act", "input")
    assert final_activation(spectrum) == "layer4.1.act"
    x = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        clean = spectrum(x)
        for place in places.values():
            with quantized(spectrum, place, 4):
                assert not torch.allclose(spectrum(x), clean)
