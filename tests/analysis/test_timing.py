"""time_training_epoch times the training engine's own PGD-AT step on a copy of the model."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from robustlayers.analysis import criticality_epoch_ratio, time_training_epoch
from robustlayers.data import TensorData, get_dataset_info, iter_batches
from robustlayers.train import loop

KEYS = {"epoch_s", "measured_s", "measured_batches", "epoch_batches", "extrapolated",
        "epoch_size", "batch_size", "method", "attack", "eps"}


def small_model() -> nn.Module:
    """1x8x8 images -> conv -> BN -> ReLU -> linear(10); no ``input_shape`` attribute."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                         nn.Flatten(), nn.Linear(4 * 8 * 8, 10))


def synthetic(n: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, 8, 8, generator=g), torch.randint(0, 10, (n,), generator=g)


@pytest.fixture
def spy(monkeypatch):
    """Record every call of the training loop's per-batch step (then run it)."""
    calls = []
    real = loop.train_step

    def recording(ctx, method, x, y):
        calls.append({"ctx": ctx, "method": method, "x": x.clone(), "y": y.clone(),
                      "lr": ctx.optimizer.param_groups[0]["lr"]})
        return real(ctx, method, x, y)

    monkeypatch.setattr(loop, "train_step", recording)
    return calls


def test_the_epoch_is_timed_on_the_training_engines_pgd_at_step(spy):
    model = small_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    data = synthetic(40)
    out = time_training_epoch(model, data, eps=0.1, batch_size=16, steps=2, max_batches=2,
                              epoch_size=64, lr=0.02, seed=3)
    json.dumps(out)
    assert set(out) == KEYS
    assert (out["epoch_batches"], out["measured_batches"], out["extrapolated"]) == (4, 2, True)
    assert out["epoch_s"] == pytest.approx(out["measured_s"] * 4 / 2)
    assert out["attack"]["steps"] == 2 and out["attack"]["alpha"] == pytest.approx(0.025)
    assert out["eps"]["value"] == pytest.approx(0.1)
    assert len(spy) == 1 + 2                                  # warm-up + measured batches
    ctx, method = spy[0]["ctx"], spy[0]["method"]
    assert method.name == "pgd-at" and ctx.model is not model
    assert (ctx.config.steps, ctx.alpha, ctx.threat.eps) == (2, pytest.approx(0.025),
                                                             pytest.approx(0.1))
    assert spy[0]["lr"] == pytest.approx(0.02) and ctx.step == 3
    # the batches are iter_batches' (seed, epoch 0) shuffle of the (x, y) pair, no augmentation
    expected = list(iter_batches(data, 16, shuffle=True, seed=3, epoch=0))
    for call, (x, y) in zip(spy, expected):
        assert torch.equal(call["x"], x) and torch.equal(call["y"], y)
    # the copy trained, the analysed model did not change (weights and BN statistics)
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key
    assert not torch.equal(ctx.model[0].weight, model[0].weight)


def test_tensor_data_gets_the_datasets_augmentation_and_further_passes(spy):
    x, y = synthetic(20, seed=1)
    data = TensorData(x, y, info=get_dataset_info("fashion-mnist"), split="train")
    out = time_training_epoch(small_model(), data, eps=0.1, batch_size=8, steps=1,
                              epoch_size=40, seed=0)
    # 40 examples = 5 batches of 8, more than one pass over the 20: all measured, none skipped
    assert (out["epoch_batches"], out["measured_batches"], out["extrapolated"]) == (5, 5, False)
    assert "augment crop_flip" in out["method"] and len(spy) == 6
    first = list(iter_batches(data, 8, shuffle=True, augment="default", seed=0, epoch=0))
    second = list(iter_batches(data, 8, shuffle=True, augment="default", seed=0, epoch=1))
    for call, (bx, by) in zip(spy, first + second):
        assert torch.equal(call["x"], bx) and torch.equal(call["y"], by)
    assert [len(call["y"]) for call in spy] == [8, 8, 4, 8, 8, 4]


def test_epoch_ratio_uses_the_engine_timing(spy):
    model = small_model()
    out = criticality_epoch_ratio(model, synthetic(12), eps=0.03, crit_batch=4, crit_steps=1,
                                  epoch_batch_size=4, epoch_steps=1, max_batches=1,
                                  epoch_size=16)
    assert set(out["epoch"]) == KEYS and out["epoch"]["epoch_batches"] == 4
    assert len(spy) == 2 and out["ratio"] > 0


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match="at least one training example"):
        time_training_epoch(small_model(), synthetic(0), eps=0.1)
    with pytest.raises(ValueError, match="8/255"):
        time_training_epoch(small_model(), synthetic(8), eps=8, batch_size=4, max_batches=1)
