"""The adapter over pyautoattack: same result as calling pyautoattack directly, plus bookkeeping."""
import logging

import pytest
import torch
from pyautoattack import AutoAttack
from torch import nn

from robustlayers.attacks import AutoAttackAdapter, ThreatModel, make_attack
from robustlayers.attacks.autoattack import use_standard_settings

from .toys import Quantize, Recorder, accuracy


@pytest.mark.parametrize("norm, eps, settings", [("linf", 4 / 255, "standard"),
                                                  ("l2", 0.3, "standard"),
                                                  ("linf", 4 / 255, "package")])
def test_agrees_with_pyautoattack(mlp, data, norm, eps, settings):
    x, y = data["x"][:32], data["y"][:32]
    adapter = AutoAttackAdapter(ThreatModel(norm, eps), version="custom", attacks=["apgd-ce"],
                                seed=0, settings=settings)
    x_adv = adapter(mlp, x, y)
    direct = AutoAttack(mlp, attacks=["apgd-ce"], device="cpu", eps=eps,
                        norm={"linf": "Linf", "l2": "L2"}[norm], seed=0, version="custom")
    assert direct.apgd.n_restarts == 5  # pyautoattack's own custom setting
    if settings == "standard":
        use_standard_settings(direct)
        assert direct.apgd.n_restarts == 1
    x_ref, y_ref = direct.run_standard_evaluation(x, y, batch_size=250)
    assert torch.equal(x_adv, x_ref)
    robust = (y_ref == y).float().mean().item()
    report = adapter.last_report
    assert report["robust_accuracy"] == robust == accuracy(mlp, x_adv, y)
    assert 0 < robust < report["clean_accuracy"]  # the budget is neither trivial nor total
    assert report["robust_accuracy_after"]["apgd-ce"] == pytest.approx(robust, abs=0.01)
    assert report["attacks_run"] == ["apgd-ce"] and report["n"] == 32
    assert any("initial accuracy" in m for m in report["log"]) and report["flags"] == []
    assert ThreatModel(norm, eps).distance(x_adv, x).max() <= eps + 1e-5


def test_seeded_model_mode_grads_and_global_rng(batch, mlp):
    x, y = batch[0][:16], batch[1][:16]
    model = nn.Sequential(Recorder(), mlp).train()
    frozen = mlp.fc1.bias
    frozen.requires_grad_(False)
    adapter = AutoAttackAdapter(ThreatModel("linf", 4 / 255), version="custom",
                                attacks=["apgd-ce", "apgd-t"], seed=3)
    rng = torch.get_rng_state()
    first = adapter(model, x, y)
    assert torch.equal(torch.get_rng_state(), rng)  # pyautoattack's manual_seed is contained
    assert model.training and mlp.training and not any(model[0].seen)
    assert all(p.grad is None for p in model.parameters())
    assert not frozen.requires_grad and mlp.fc1.weight.requires_grad
    assert torch.equal(first, adapter(model, x, y))


def test_check_flags_are_captured(mlp, batch, caplog):
    x, y = batch[0][:16], batch[1][:16]
    probs = nn.Sequential(mlp, nn.Softmax(dim=1))  # pyautoattack warns: outputs are probabilities
    adapter = make_attack("apgd", ThreatModel("linf", 4 / 255), attacks=["apgd-ce"])
    with caplog.at_level(logging.WARNING, logger="robustlayers.attacks.autoattack"):
        adapter(probs, x, y)
    assert any("probability distribution" in f for f in adapter.last_report["flags"])
    assert "probability distribution" in caplog.text

    masked = nn.Sequential(Quantize(8.0), mlp)  # zero gradients everywhere
    adapter = AutoAttackAdapter(ThreatModel("linf", 4 / 255), version="custom",
                                attacks=["apgd-t"])
    adapter(masked, x, y)
    assert any("zero gradient" in f for f in adapter.last_report["flags"])


def test_standard_version_smoke(mlp, batch):
    x, y = batch[0][:8], batch[1][:8]
    adapter = make_attack("autoattack", ThreatModel("linf", 8 / 255))
    x_adv = adapter(mlp, x, y)
    report = adapter.last_report
    assert report["attacks_run"] == ["apgd-ce", "apgd-t", "fab-t", "square"]
    assert report["robust_accuracy"] == accuracy(mlp, x_adv, y)
    assert (x_adv - x).abs().max() <= 8 / 255 + 1e-6
    assert all(p.grad is None for p in mlp.parameters())
    assert report["config"]["name"] == "autoattack" and report["config"]["seed"] == 0


def test_seed_cannot_vary_per_call(mlp, batch):
    with pytest.raises(ValueError, match="seed at construction"):
        AutoAttackAdapter(ThreatModel("linf", 0.01))(mlp, *batch, seed=5)


def test_custom_subset_settings_are_recorded_and_validated():
    adapter = AutoAttackAdapter(ThreatModel("linf", 0.1), version="custom")
    assert adapter.config()["settings"] == "standard"
    assert adapter.config()["attacks"] == ["apgd-ce", "apgd-t"]
    built = adapter.build(nn.Linear(2, 2), "cpu")
    assert built.apgd.n_restarts == 1 and built.apgd_targeted.n_target_classes == 9
    with pytest.raises(ValueError, match="standard, package"):
        AutoAttackAdapter(ThreatModel("linf", 0.1), version="custom", settings="fast")
