"""Optimiser groups from selections, frozen layers, and the learning-rate schedules."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from robustlayers.models import create_model
from robustlayers.train import TrainConfig, build_optimizer, build_scheduler, lr_factor
from robustlayers.train.optim import milestone_steps

from .conftest import Toy, make_ctx


def _run_steps(ctx, n=3, seed=0):
    gen = torch.Generator().manual_seed(seed)
    for _ in range(n):
        x = torch.rand(16, *ctx.model.input_shape, generator=gen)
        y = torch.randint(0, 10, (16,), generator=gen) % ctx.model(x[:1]).shape[1]
        ctx.optimizer.zero_grad()
        F.cross_entropy(ctx.model(x), y).backward()
        ctx.optimizer.step()
        ctx.scheduler.step()
        ctx.step += 1


def test_per_selection_lr_and_weight_decay_reach_the_optimizer():
    config = TrainConfig(lr=0.1, weight_decay=5e-4, param_groups=[
        {"select": "conv", "lr": 0.5, "weight_decay": 0.0}, {"select": "kind:bn", "lr": 0.2}])
    opt = build_optimizer(Toy(), config.validate())
    groups = opt.param_groups
    assert [g["names"] for g in groups] == [["conv.weight", "conv.bias"],
                                            ["bn.weight", "bn.bias"], ["fc.weight", "fc.bias"]]
    assert [g["lr"] for g in groups] == [0.5, 0.2, 0.1]
    assert [g["weight_decay"] for g in groups] == [0.0, 5e-4, 5e-4]
    assert groups[0]["select"] == "conv" and groups[2]["select"] == "default"
    assert isinstance(opt, torch.optim.SGD) and groups[0]["momentum"] == 0.9
    adam = build_optimizer(Toy(), TrainConfig(optimizer="adam", lr=1e-3).validate())
    assert isinstance(adam, torch.optim.Adam) and adam.param_groups[0]["lr"] == 1e-3


def test_selection_matching_nothing_is_an_error():
    config = TrainConfig(param_groups=[{"select": "layer9"}]).validate()
    with pytest.raises(ValueError, match="layer9"):
        build_optimizer(Toy(), config)


def test_frozen_layers_never_change_but_frozen_bn_statistics_still_update():
    model = create_model("smallcnn", in_channels=1, input_size=28, seed=0)
    ctx = make_ctx(model, eps=0.1)
    ctx.freeze("layer1", label="frozen")
    names = {n for g in ctx.optimizer.param_groups for n in g["names"]}
    assert not any(n.startswith("layer1.") for n in names)
    before = {n: t.clone() for n, t in model.state_dict().items()}
    model.train()
    _run_steps(ctx, 3)
    after = model.state_dict()
    for name, param in model.named_parameters():
        if name.startswith("layer1."):
            assert torch.equal(after[name], before[name]), name
        else:
            assert not torch.equal(after[name], before[name]), name
    # BN rule (EARLY §3.1): the frozen BN's running statistics keep updating
    assert not torch.equal(after["layer1.1.running_mean"], before["layer1.1.running_mean"])
    assert ctx.frozen_names() == ["layer1.0.weight", "layer1.1.weight", "layer1.1.bias",
                                  "layer1.3.weight", "layer1.4.weight", "layer1.4.bias"]


def test_rebuilding_the_optimizer_keeps_momentum_of_params_still_trained():
    ctx = make_ctx()
    _run_steps(ctx, 2)
    momentum = ctx.optimizer.state[ctx.model.fc.weight]["momentum_buffer"].clone()
    ctx.freeze("conv")
    assert ctx.model.conv.weight not in ctx.optimizer.state
    assert torch.equal(ctx.optimizer.state[ctx.model.fc.weight]["momentum_buffer"], momentum)
    assert ctx.scheduler.step_count == ctx.step == 2
    ctx.unfreeze("conv")
    assert any("conv.weight" in g["names"] for g in ctx.optimizer.param_groups)


def test_schedules_give_the_expected_lr():
    config = TrainConfig(epochs=4, milestones=[0.5, 0.75], gamma=0.1).validate()
    ms = milestone_steps(config, steps_per_epoch=10)
    assert ms == [20, 30]
    assert lr_factor("piecewise", 19, 40, milestones=ms) == 1.0
    assert lr_factor("piecewise", 20, 40, milestones=ms) == pytest.approx(0.1)
    assert lr_factor("piecewise", 39, 40, milestones=ms) == pytest.approx(0.01)
    assert milestone_steps(TrainConfig(epochs=80, milestones=[75]).validate(), 3) == [225]
    assert lr_factor("cosine", 0, 40) == 1.0
    assert lr_factor("cosine", 20, 40) == pytest.approx(0.5)
    assert lr_factor("cosine", 30, 40) == pytest.approx(0.5 * (1 + math.cos(0.75 * math.pi)))
    assert lr_factor("onecycle", 15, 40, peak=0.4) == pytest.approx(1.0)  # (15+1)/16
    assert lr_factor("onecycle", 7, 40, peak=0.4) == pytest.approx(0.5)
    assert lr_factor("onecycle", 39, 40, peak=0.4) == pytest.approx(0.0)
    assert lr_factor("constant", 33, 40) == 1.0
    with pytest.raises(ValueError, match="valid choices: piecewise, cosine"):
        lr_factor("linear", 0, 10)


def test_scheduler_steps_per_iteration_with_per_group_schedules():
    """RAT_LR: blocks with schedule "constant" keep their lr while the rest decays."""
    config = TrainConfig(epochs=2, lr=0.1, milestones=[1], param_groups=[
        {"select": "fc", "lr": 0.1, "schedule": "constant"}]).validate()
    opt = build_optimizer(Toy(), config)
    sched = build_scheduler(opt, config, steps_per_epoch=5)
    seen = []
    for _ in range(10):
        seen.append(sched.get_last_lr())
        opt.step()
        sched.step()
    assert seen[4] == [0.1, 0.1] and seen[5] == [0.1, pytest.approx(0.01)]
    restored = build_scheduler(build_optimizer(Toy(), config), config, 5)
    restored.load_state_dict(sched.state_dict())
    assert restored.get_last_lr() == sched.get_last_lr()
