import pytest
import torch
from torch import nn

from robustlayers.layers import count_params, freeze, param_groups, reinit, unfreeze

from .toys import Shuffled


def train_steps(model, steps=3):
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    gen = torch.Generator().manual_seed(0)
    model.train()
    for _ in range(steps):
        x = torch.rand(8, 1, 4, 4, generator=gen)
        loss = model(x).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()


def test_frozen_bn_keeps_affine_but_updates_running_stats():
    """EARLY §3.1 / SPEC §3 batch-norm rule."""
    torch.manual_seed(0)
    model = Shuffled()
    bn = model.body[1]
    frozen = freeze(model, "body")
    assert frozen == ("body.0", "body.1")
    weight, bias = bn.weight.clone(), bn.bias.clone()
    conv = model.body[0].weight.clone()
    mean, var = bn.running_mean.clone(), bn.running_var.clone()
    stem = model.stem.weight.clone()
    train_steps(model)
    assert torch.equal(bn.weight, weight) and torch.equal(bn.bias, bias)
    assert torch.equal(model.body[0].weight, conv)
    assert not torch.equal(bn.running_mean, mean) and not torch.equal(bn.running_var, var)
    assert not torch.equal(model.stem.weight, stem)


def test_unfreeze():
    model = Shuffled()
    freeze(model, "all")
    assert count_params(model, trainable_only=True) == 0
    unfreeze(model, "kind:bn")
    assert count_params(model, trainable_only=True) == 16


def test_reinit_resets_bn_statistics_and_weights():
    torch.manual_seed(0)
    model = Shuffled()
    train_steps(model)
    bn = model.body[1]
    assert bn.num_batches_tracked.item() == 3
    with torch.no_grad():
        bn.weight.fill_(5.0)
    reinit(model, "body.1")
    assert torch.all(bn.running_mean == 0) and torch.all(bn.running_var == 1)
    assert bn.num_batches_tracked.item() == 0 and torch.all(bn.weight == 1)


def test_reinit_is_seeded_and_leaves_global_rng():
    a, b = Shuffled(), Shuffled()
    state = torch.get_rng_state()
    reinit(a, "kind:conv", seed=7)
    assert torch.equal(torch.get_rng_state(), state)
    reinit(b, "kind:conv", seed=7)
    assert torch.equal(a.stem.weight, b.stem.weight)
    reinit(b, "stem", seed=8)
    assert not torch.equal(a.stem.weight, b.stem.weight)
    assert torch.equal(a.skip.weight, b.skip.weight)  # unselected layers untouched


def test_reinit_changes_only_selected_layers():
    model = Shuffled()
    fc, stem = model.fc.weight.clone(), model.stem.weight.clone()
    reinit(model, "fc", seed=1)
    assert not torch.equal(model.fc.weight, fc) and torch.equal(model.stem.weight, stem)


def test_count_params():
    model = Shuffled()
    assert count_params(model) == sum(p.numel() for p in model.parameters())
    assert count_params(model, "kind:bn") == 16
    assert count_params(model, "stem | skip") == 4 * 9 + 4 + 32
    freeze(model, "stem")
    assert count_params(model, "stem | skip", trainable_only=True) == 32


def test_param_groups_first_match_wins_and_frozen_excluded():
    model = Shuffled()
    freeze(model, "skip")
    groups = param_groups(model, [("block:1", {"lr": 0.1}), ("kind:conv", {"lr": 0.5})],
                          default={"lr": 0.01})
    assert [g["lr"] for g in groups] == [0.1, 0.5, 0.01]
    assert groups[0]["names"] == ["body.0.weight", "body.0.bias", "body.1.weight", "body.1.bias"]
    assert groups[1]["names"] == ["stem.weight", "stem.bias"]
    assert "skip.weight" not in sum((g["names"] for g in groups), [])
    assert set(groups[2]["names"]) == {"fc.weight", "fc.bias", "unused.weight", "unused.bias"}
    total = sum(p.numel() for g in groups for p in g["params"])
    assert total == count_params(model, trainable_only=True)
    torch.optim.SGD(groups, lr=1.0)  # torch accepts the groups (extra "names" key included)


def test_param_groups_without_default_and_errors():
    model = Shuffled()
    groups = param_groups(model, [("fc", {"lr": 0.2})])
    assert len(groups) == 1 and groups[0]["names"] == ["fc.weight", "fc.bias"]
    freeze(model, "all")
    with pytest.raises(ValueError, match="no trainable parameters"):
        param_groups(model, [("fc", {"lr": 0.2})])
    with pytest.raises(ValueError, match="dict"):
        param_groups(Shuffled(), [("fc", 0.2)])


def test_reinit_requires_reset_parameters():
    class Scale(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.ones(2))

        def forward(self, x):
            return x * self.w

    model = nn.Sequential(Scale())
    model.input_shape = (2,)
    with pytest.raises(ValueError, match="reset_parameters"):
        reinit(model, "all")


def test_arguments_of_the_wrong_shape_are_config_errors():
    from robustlayers.errors import ConfigError
    from robustlayers.layers import count_params, freeze, param_groups, reinit
    from robustlayers.models import create_model

    model = create_model("smallcnn", num_classes=10, in_channels=1, input_size=28)
    cases = [
        (lambda: param_groups(model, "block:1"), "list of \\(selection, options\\) pairs"),
        (lambda: param_groups(model, [("all", 0.1)]), "group 0: options must be a dict"),
        (lambda: param_groups(model, [("all",)]), "group 0 must be a \\(selection, options\\)"),
        (lambda: param_groups(model, [("all", {})], default=0.1), "default must be a dict"),
        (lambda: param_groups("smallcnn", []), "param_groups\\(\\) expects a torch.nn.Module"),
        (lambda: freeze("smallcnn", "all"), "freeze\\(\\) expects a torch.nn.Module"),
        (lambda: reinit(model, "all", seed="abc"), "seed must be an int"),
        (lambda: count_params(None), "count_params\\(\\) expects"),
    ]
    for call, message in cases:
        with pytest.raises(ConfigError, match=message):
            call()
