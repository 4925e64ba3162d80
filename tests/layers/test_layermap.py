import pytest
import torch
from torch import nn

from robustlayers.layers import build_layer_map, layer_kind, layer_map
from robustlayers.models import create_model

from .toys import Shuffled


def test_execution_order_not_definition_order():
    lmap = build_layer_map(Shuffled())
    assert lmap.names == ("stem", "body.0", "body.1", "skip", "fc", "unused")
    assert [info.index for info in lmap] == list(range(6))


def test_layer_fields():
    lmap = build_layer_map(Shuffled())
    assert [info.kind for info in lmap] == ["conv", "conv", "bn", "conv", "linear", "linear"]
    assert [info.block for info in lmap] == ["stem", "layer1", "layer1", "layer1", "head", "unused"]
    assert lmap["body.0"].params == 8 * 4 * 9 + 8
    assert lmap["skip"].params == 32
    assert lmap["body.1"].out_shape == (8, 4, 4)
    assert lmap["fc"].out_shape == (3,)
    assert lmap["unused"].executed is False and lmap["unused"].out_shape is None
    assert lmap.blocks == ("stem", "layer1", "head", "unused")


def test_activation_modules_are_not_layers():
    lmap = build_layer_map(Shuffled())
    assert "act" not in lmap and "body.2" not in lmap


def test_mode_restored_and_running_stats_untouched():
    model = Shuffled().train()
    before = model.body[1].running_mean.clone()
    build_layer_map(model)
    assert model.training
    assert torch.equal(model.body[1].running_mean, before)
    assert model.body[1].num_batches_tracked.item() == 0


def test_missing_input_shape_is_a_clear_error():
    model = nn.Sequential(nn.Linear(3, 2))
    with pytest.raises(ValueError, match="input_shape"):
        layer_map(model)
    assert layer_map(model, (3,)).names == ("0",)
    assert layer_map(model).names == ("0",)  # remembers the shape it was built with


def test_cache_follows_structure_changes():
    model = nn.Sequential(nn.Linear(3, 2))
    first = layer_map(model, (3,))
    assert layer_map(model, (3,)) is first
    model.append(nn.Linear(2, 2))
    assert layer_map(model, (3,)).names == ("0", "1")


def test_kinds():
    assert layer_kind(nn.Conv1d(1, 1, 1)) == "conv"
    assert layer_kind(nn.BatchNorm1d(2)) == "bn"
    assert layer_kind(nn.GroupNorm(1, 2)) == "norm"
    assert layer_kind(nn.PReLU()) == "prelu"


EARLY_BLOCK = ["conv1", "bn1", "conv2", "bn2"]


def test_resnet18_has_the_41_layers_of_early_in_order():
    """SPEC §9: conv1, bn1, each block's conv/bn pairs, the shortcut conv and BN right after
    the block's conv2/bn2, then linear."""
    lmap = layer_map(create_model("resnet18", num_classes=10))
    expected = ["conv1", "bn1"]
    for stage in range(1, 5):
        for block in range(2):
            prefix = f"layer{stage}.{block}."
            expected += [prefix + n for n in EARLY_BLOCK]
            if stage > 1 and block == 0:
                expected += [prefix + "shortcut.0", prefix + "shortcut.1"]
    expected.append("linear")
    assert len(lmap) == 41
    assert list(lmap.names) == expected
    assert lmap.blocks == ("stem", "layer1", "layer2", "layer3", "layer4", "head")
    assert sum(info.kind == "conv" for info in lmap) == 20
    assert sum(info.params for info in lmap) == sum(
        p.numel() for p in create_model("resnet18").parameters())
