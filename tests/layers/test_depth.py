"""CLAT's depth-layer numbering: main-path convs and the classifier, no shortcut projections."""

import pytest
from torch import nn

from robustlayers.layers import Selection, SelectionError, build_layer_map, mark_shortcut, select
from robustlayers.models import create_model

from .toys import Shuffled


def test_resnet18_depth_11_is_layer3_0_conv2():
    # CLAT Table 6: ResNet-18 with k = 1 trains 590K parameters = one 3x3 256->256 conv
    model = create_model("resnet18", num_classes=10)
    chosen = select(model, "depth:11")
    assert chosen.names == ("layer3.0.conv2",)
    assert chosen.layers[0].params == 256 * 256 * 9 == 589_824
    depth = build_layer_map(model).depth_layers
    assert len(depth) == 18 and depth[0].name == "conv1" and depth[-1].name == "linear"
    assert not any("shortcut" in info.name for info in depth)
    assert select(model, "depth:-1").names == ("linear",)


def test_densenet121_transition_convs_are_14_39_88():
    model = create_model("densenet121", num_classes=10)
    assert select(model, "depth:14,39,88").names == ("trans1.conv", "trans2.conv", "trans3.conv")
    assert len(build_layer_map(model).depth_layers) == 121


@pytest.mark.parametrize("name, shortcuts, depth", [
    ("resnet50", 4, 50), ("preact_resnet18", 3, 18), ("wrn34_10", 3, 32), ("vgg19_bn", 0, 17),
    ("smallcnn", 0, 6)])
def test_every_zoo_architecture_knows_its_shortcuts(name, shortcuts, depth):
    lmap = build_layer_map(create_model(name, num_classes=10))
    marked = [info for info in lmap if info.shortcut]
    assert len([i for i in marked if i.kind == "conv"]) == shortcuts
    assert len(lmap.depth_layers) == depth
    assert [i.depth for i in lmap.depth_layers] == list(range(1, depth + 1))
    assert all(i.depth is None for i in marked)


def test_marked_or_declared_shortcut_in_a_foreign_model():
    model = Shuffled()
    assert [i.name for i in build_layer_map(model).depth_layers] == ["stem", "body.0", "skip",
                                                                     "fc"]
    model.shortcut_layers = ("skip",)
    assert [i.name for i in build_layer_map(model).depth_layers] == ["stem", "body.0", "fc"]
    other = Shuffled()
    mark_shortcut(other.skip)
    assert build_layer_map(other)["skip"].shortcut and build_layer_map(other)["skip"].depth is None
    assert build_layer_map(other)["fc"].to_dict()["depth"] == 3


def test_depth_ranges_all_and_errors():
    model = create_model("resnet18", num_classes=10)
    assert select(model, "depth:1:3").names == ("conv1", "layer1.0.conv1", "layer1.0.conv2")
    assert len(select(model, "depth:all")) == 18
    assert select(model, "depth:all - depth:-1").names[-1] == "layer4.1.conv2"
    assert str(Selection.depth(11, "1:2")) == "depth:11,1:2"
    for bad in ("depth:0", "depth:19", "depth:x", "depth:5:2", "depth:1:2:3"):
        with pytest.raises(SelectionError, match="depth"):
            select(model, bad)
