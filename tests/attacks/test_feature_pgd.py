"""Feature-space PGD (CLAT Eq. 5) on top of robustlayers.layers selections and FeatureCapture."""
import json

import pytest
import torch

from robustlayers.attacks import (
    PGD, FeaturePGD, ThreatModel, feature_distance, feature_l2, make_attack,
)
from robustlayers.layers import Selection, SelectionError, select

from .toys import Recorder, TinyNet

THREATS = {"linf": ThreatModel("linf", 8 / 255), "l2": ThreatModel("l2", 0.5)}


def _start(attack, x, seed):
    gen = torch.Generator().manual_seed(seed)
    return x + attack.start(x, gen)


@pytest.mark.parametrize("norm", list(THREATS))
@pytest.mark.parametrize("selection", ["conv1 | conv2", "kind:conv", ["conv1", "conv2"]])
def test_increases_the_feature_distance(tiny, batch, norm, selection):
    x, y = batch
    attack = FeaturePGD(THREATS[norm], selection, steps=5, seed=1)
    x_adv = attack(tiny, x, y)
    t = THREATS[norm]
    assert (t.distance(x_adv, x) <= t.eps + 1e-6).all() and x_adv.min() >= 0 and x_adv.max() <= 1
    d_adv = feature_distance(tiny, selection, x, x_adv)
    d_start = feature_distance(tiny, selection, x, _start(attack, x, 1))
    assert d_adv.shape == (len(x),)
    assert (d_adv > d_start).float().mean() > 0.95 and d_adv.mean() > 1.5 * d_start.mean()
    torch.testing.assert_close(feature_distance(tiny, selection, x, x), torch.zeros(len(x)))
    assert attack.last_report["layers"] == ["conv1", "conv2"]


def test_targets_its_own_layers(tiny, batch):
    """Attacking conv1 moves conv1 more than an output-space PGD of the same budget does."""
    x, y = batch
    t = THREATS["linf"]
    x_feat = FeaturePGD(t, "conv1", steps=5)(tiny, x, y)
    x_pgd = PGD(t, steps=5)(tiny, x, y)
    assert feature_distance(tiny, "conv1", x, x_feat).mean() > \
        feature_distance(tiny, "conv1", x, x_pgd).mean()


def test_matches_manual_objective(tiny, batch):
    x, _ = batch
    x2 = (x + 0.05).clamp(0, 1)
    with torch.no_grad():
        c1, c2 = tiny.conv1(x), tiny.conv1(x2)
    expect = (c2 - c1).flatten(1).norm(dim=1)
    torch.testing.assert_close(feature_distance(tiny, "conv1", x, x2), expect)
    torch.testing.assert_close(feature_l2({"a": c2}, {"a": c1}), expect)


def test_deterministic_and_labels_optional(tiny, batch):
    x, y = batch
    a = FeaturePGD(THREATS["l2"], "kind:conv", steps=3, seed=5)
    first = a(tiny, x, None)
    assert torch.equal(first, a(tiny, x, y))
    assert not torch.equal(first, FeaturePGD(THREATS["l2"], "kind:conv", steps=3, seed=6)(tiny, x, y))


def test_custom_objective(tiny, batch):
    """objective(feats_adv, feats_clean) overrides Eq. 5, e.g. to attack one channel only."""
    x, y = batch

    def channel0(adv, clean):
        return (adv["conv2"][:, 0] - clean["conv2"][:, 0]).flatten(1).norm(dim=1)

    attack = FeaturePGD(THREATS["linf"], "conv2", steps=5, objective=channel0, seed=2)
    assert attack.config()["loss"] == "channel0"
    x_custom = attack(tiny, x, y)
    x_default = FeaturePGD(THREATS["linf"], "conv2", steps=5, seed=2)(tiny, x, y)
    d = {k: feature_distance(tiny, "conv2", x, v, objective=channel0).mean()
         for k, v in [("custom", x_custom), ("default", x_default),
                      ("start", _start(attack, x, 2))]}
    assert d["custom"] > d["default"] and d["custom"] > 2 * d["start"], d
    bad = FeaturePGD(THREATS["linf"], "conv2", steps=1, objective=lambda a, c: 1.0)
    with pytest.raises(ValueError, match=r"per-example tensor of shape \(64,\)"):
        bad(tiny, x, y)


def test_selection_forms_and_errors(tiny, batch):
    x, y = batch
    t = THREATS["linf"]
    by_text = FeaturePGD(t, "conv1", steps=2)(tiny, x, y)
    assert torch.equal(by_text, FeaturePGD(t, Selection.parse("conv1"), steps=2)(tiny, x, y))
    assert torch.equal(by_text, FeaturePGD(t, select(tiny, "conv1"), steps=2)(tiny, x, y))
    assert torch.equal(by_text, FeaturePGD(t, ["conv1"], steps=2)(tiny, x, y))
    FeaturePGD(t, ["act1"], steps=1)(tiny, x, y)  # explicit module paths may be non-layers
    with pytest.raises(SelectionError, match="conv1"):
        FeaturePGD(t, "conv9", steps=1)(tiny, x, y)
    with pytest.raises(ValueError, match="conv1"):
        feature_distance(tiny, ["cnv1"], x, x)
    with pytest.raises(ValueError, match="selection must be"):
        FeaturePGD(t, 3, steps=1)(tiny, x, y)
    with pytest.raises(ValueError, match="shapes differ"):
        feature_distance(tiny, "conv1", x, x[:2])


def test_mode_grads_and_hooks_are_restored(batch):
    x, y = batch
    torch.manual_seed(0)
    model = TinyNet()
    model.rec = Recorder()
    model.forward = lambda t, m=model: TinyNet.forward(m, m.rec(t))
    model.train()
    stats = model.bn1.running_mean.clone()
    FeaturePGD(THREATS["linf"], "conv1 | bn1", steps=2)(model, x, y)
    assert model.rec.seen and not any(model.rec.seen) and model.training and model.bn1.training
    torch.testing.assert_close(model.bn1.running_mean, stats)
    assert all(p.grad is None for p in model.parameters())
    assert all(not m._forward_hooks for m in model.modules())


def test_config_and_registry(tiny):
    a = make_attack("feature-pgd", THREATS["linf"], selection="kind:conv", steps=4)
    cfg = json.loads(json.dumps(a.config()))
    assert cfg["name"] == "feature-pgd" and cfg["selection"] == "kind:conv"
    assert cfg["loss"] == "feature-l2" and cfg["steps"] == 4
    assert cfg["alpha"] == pytest.approx(2.5 * (8 / 255) / 4)
    assert FeaturePGD(THREATS["linf"], ["conv1"]).config()["selection"] == ["conv1"]
