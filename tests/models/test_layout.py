"""Layer order and parameter names the analyses and community checkpoints rely on."""

from __future__ import annotations

import torch
from torch import nn

from robustlayers.models import create_model

from .conftest import param_leaf_order


def early_resnet18_order() -> list[str]:
    """EARLY's linearisation of the CIFAR ResNet-18 (SPEC §9): 41 Conv/BN/Linear layers."""
    names = ["conv1", "bn1"]
    for stage in range(1, 5):
        for block in range(2):
            p = f"layer{stage}.{block}"
            names += [f"{p}.conv1", f"{p}.bn1", f"{p}.conv2", f"{p}.bn2"]
            if stage > 1 and block == 0:
                names += [f"{p}.shortcut.0", f"{p}.shortcut.1"]
    return names + ["linear"]


def test_resnet18_execution_order_is_early_linearisation():
    model = create_model("resnet18")
    order = param_leaf_order(model, torch.rand(1, 3, 32, 32))
    assert len(order) == 41
    assert order == early_resnet18_order()
    assert order.index("layer2.0.shortcut.0") == order.index("layer2.0.bn2") + 1
    assert model.training  # mode restored by the helper


def test_resnet18_keys_match_kuangliu_layout():
    keys = set(create_model("resnet18").state_dict())
    expected = set()
    for layer in early_resnet18_order():
        if layer.endswith(("conv1", "conv2")) or layer.endswith("shortcut.0"):
            expected.add(f"{layer}.weight")
        elif layer == "linear":
            expected |= {"linear.weight", "linear.bias"}
        else:  # batch norm
            expected |= {f"{layer}.{s}" for s in
                         ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")}
    assert keys == expected


def test_resnet50_bottleneck_names_and_order():
    model = create_model("resnet50")
    keys = set(model.state_dict())
    for k in ("layer1.0.conv3.weight", "layer1.0.bn3.running_var", "layer1.0.shortcut.0.weight",
              "layer4.2.conv3.weight", "linear.weight"):
        assert k in keys
    assert model.linear.in_features == 2048
    order = param_leaf_order(model, torch.rand(1, 3, 32, 32))
    i = order.index("layer1.0.bn3")
    assert order[i + 1:i + 3] == ["layer1.0.shortcut.0", "layer1.0.shortcut.1"]


def test_block_act_input_is_post_add_pre_relu():
    model = create_model("resnet18").eval()
    blk = model.layer2[0]
    seen = {}
    hooks = [
        blk.bn2.register_forward_hook(lambda m, i, o: seen.__setitem__("bn2", o)),
        blk.shortcut.register_forward_hook(lambda m, i, o: seen.__setitem__("sc", o)),
        blk.act.register_forward_hook(lambda m, i, o: seen.__setitem__("act_in", i[0])),
    ]
    with torch.no_grad():
        model(torch.rand(2, 3, 32, 32))
    for h in hooks:
        h.remove()
    assert torch.allclose(seen["act_in"], seen["bn2"] + seen["sc"])
    assert (seen["act_in"] < 0).any()  # pre-ReLU values are visible
    assert isinstance(blk.act, nn.ReLU) and isinstance(blk.act1, nn.ReLU)


def test_preact_resnet18_names():
    model = create_model("preact_resnet18")
    keys = set(model.state_dict())
    expected_tops = {"conv1.weight", "bn.weight", "bn.bias", "bn.running_mean", "bn.running_var",
                     "bn.num_batches_tracked", "linear.weight", "linear.bias"}
    assert expected_tops <= keys
    block_keys = {k for k in keys if k.startswith("layer2.0.")}
    assert block_keys == {
        "layer2.0.bn1.weight", "layer2.0.bn1.bias", "layer2.0.bn1.running_mean",
        "layer2.0.bn1.running_var", "layer2.0.bn1.num_batches_tracked", "layer2.0.conv1.weight",
        "layer2.0.bn2.weight", "layer2.0.bn2.bias", "layer2.0.bn2.running_mean",
        "layer2.0.bn2.running_var", "layer2.0.bn2.num_batches_tracked", "layer2.0.conv2.weight",
        "layer2.0.shortcut.0.weight",
    }
    assert not any(k.startswith("layer1.0.shortcut") or k.startswith("bn1.") for k in keys)
    assert not any("shortcut.1" in k for k in keys)  # conv-only shortcut
    order = param_leaf_order(model, torch.rand(1, 3, 32, 32))
    assert order[:5] == ["conv1", "layer1.0.bn1", "layer1.0.conv1", "layer1.0.bn2", "layer1.0.conv2"]
    i = order.index("layer2.0.conv2")
    assert order[i + 1] == "layer2.0.shortcut.0"
    assert order[-2:] == ["bn", "linear"]
    assert len(order) == 1 + 8 * 4 + 3 + 2


def test_preact_final_act_reads_final_preactivation():
    model = create_model("preact_resnet18").eval()
    names = [n for n, _ in model.named_children()]
    assert names.index("act") == names.index("bn") + 1
    seen = {}
    h1 = model.bn.register_forward_hook(lambda m, i, o: seen.__setitem__("bn", o))
    h2 = model.act.register_forward_hook(lambda m, i, o: seen.__setitem__("act_in", i[0]))
    with torch.no_grad():
        model(torch.rand(2, 3, 32, 32))
    h1.remove(), h2.remove()
    assert torch.equal(seen["bn"], seen["act_in"])


def test_wrn_community_names_and_depth():
    model = create_model("wrn28_10")
    keys = set(model.state_dict())
    for k in ("conv1.weight", "block1.layer.0.bn1.weight", "block1.layer.0.conv1.weight",
              "block1.layer.0.convShortcut.weight", "block2.layer.0.convShortcut.weight",
              "block3.layer.3.conv2.weight", "bn1.running_mean", "fc.weight", "fc.bias"):
        assert k in keys, k
    assert "block1.layer.1.convShortcut.weight" not in keys
    assert len(model.block1.layer) == 4 and model.fc.in_features == 640
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    # depth 28 = 1 stem conv + 3 stages x 4 blocks x 2 convs + final fc (+ 3 shortcut 1x1 convs)
    assert len(convs) == 1 + 24 + 3
    order = param_leaf_order(model, torch.rand(1, 3, 32, 32))
    i = order.index("block2.layer.0.conv2")
    assert order[i + 1] == "block2.layer.0.convShortcut"
    assert order[-2:] == ["bn1", "fc"]


def test_densenet121_has_121_weight_layers():
    model = create_model("densenet121")
    order = param_leaf_order(model, torch.rand(1, 3, 32, 32))
    weight_layers = [n for n in order if n.rsplit(".", 1)[-1].startswith(("conv", "linear"))]
    assert len(weight_layers) == 121  # CLAT numbers the conv + linear layers in execution order
    assert order[0] == "conv1" and order[-1] == "linear"
    keys = set(model.state_dict())
    for k in ("dense1.0.bn1.weight", "dense1.5.conv2.weight", "trans1.bn.weight", "trans3.conv.weight",
              "dense4.15.conv2.weight", "bn.weight", "linear.weight"):
        assert k in keys, k
    assert model.linear.in_features == 1024


def test_vgg_stages_end_with_maxpool():
    model = create_model("vgg16_bn")
    for s in range(1, 6):
        stage = getattr(model, f"layer{s}")
        assert isinstance(stage[-1], nn.MaxPool2d)
        assert isinstance(stage[0], nn.Conv2d) and isinstance(stage[1], nn.BatchNorm2d)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 13
    assert len([m for m in create_model("vgg19_bn").modules() if isinstance(m, nn.Conv2d)]) == 16


def test_smallcnn_layout():
    model = create_model("smallcnn", in_channels=1, input_size=28)
    order = param_leaf_order(model, torch.rand(1, 1, 28, 28))
    assert order == ["layer1.0", "layer1.1", "layer1.3", "layer1.4",
                     "layer2.0", "layer2.1", "layer2.3", "layer2.4", "head.1", "head.3"]
    assert model.head[1].in_features == 32 * 7 * 7
