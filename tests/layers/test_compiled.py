"""A model wrapped by torch.compile keeps the layer names of the model it wraps (no
``_orig_mod.`` prefix): layer map, selections, capture, surgery and attacks all see through it."""

import torch

from robustlayers.attacks import PGD, FeaturePGD
from robustlayers.layers import build_layer_map, capture, freeze, layer_map, resolve_module, select
from robustlayers.layers.compiled import is_compiled, unwrap
from robustlayers.models import create_model


def _pair():
    model = create_model("smallcnn", in_channels=1, input_size=28, seed=0).eval()
    return model, torch.compile(model, backend="eager")


def test_compiled_model_keeps_its_layer_names():
    model, compiled = _pair()
    assert is_compiled(compiled) and not is_compiled(model) and unwrap(compiled) is model
    assert any(n.startswith("_orig_mod.") for n, _ in compiled.named_modules())
    names = build_layer_map(model).names
    assert layer_map(compiled).names == names and build_layer_map(compiled).names == names
    assert names[0] == "layer1.0" and not any("_orig_mod" in n for n in names)
    chosen = select(compiled, "kind:conv")
    assert chosen.names == select(model, "kind:conv").names \
        == ("layer1.0", "layer1.3", "layer2.0", "layer2.3")
    assert chosen.modules(compiled)["layer1.0"] is model.layer1[0]
    assert resolve_module(compiled, "layer1.0") is model.layer1[0]


def test_capture_surgery_and_attacks_on_a_compiled_model():
    model, compiled = _pair()
    x, y = torch.rand(4, 1, 28, 28), torch.tensor([0, 1, 2, 3])
    compiled(x)  # compiled before any hook exists
    feats = capture(compiled, "layer1.0 | layer2.3", x)
    assert feats["layer1.0"].shape == (4, 16, 28, 28)
    torch.testing.assert_close(feats["layer2.3"], capture(model, ["layer2.3"], x)["layer2.3"])
    freeze(compiled, "head.*")
    assert not model.head[1].weight.requires_grad and model.layer1[0].weight.requires_grad
    attack = PGD(eps=8 / 255, steps=2)
    x_adv = attack(compiled, x, y)
    assert (x_adv - x).abs().max() <= 8 / 255 + 1e-6
    assert attack.last_report["fast_path"]["auto_off"] == "compiled model (torch.compile)"
    feat = FeaturePGD(eps=8 / 255, selection="kind:conv", steps=2)
    feat(compiled, x, None)
    assert feat.last_report["layers"] == ["layer1.0", "layer1.3", "layer2.0", "layer2.3"]
