"""FGSM / FGSM-RS / PGD (CE, CW, restarts, targeted) on a naturally trained TinyNet."""
import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from robustlayers.attacks import FGSM, PGD, ThreatModel, make_attack, margin_loss

from .toys import Recorder, TinyNet, accuracy

THREATS = {"linf": ThreatModel("linf", 8 / 255), "l2": ThreatModel("l2", 0.5)}
MAKERS = {
    "fgsm": lambda t, s: FGSM(t, seed=s),
    "fgsm-rs": lambda t, s: FGSM(t, random_start=True, seed=s),
    "pgd": lambda t, s: PGD(t, steps=5, seed=s),
    "pgd-cw": lambda t, s: PGD(t, steps=5, loss="cw", seed=s),
    "pgd-restarts": lambda t, s: PGD(t, steps=3, restarts=2, seed=s),
    "pgd-targeted": lambda t, s: PGD(t, steps=5, targeted=True, seed=s),
    "pgd-zero-start": lambda t, s: PGD(t, steps=5, random_start=False, seed=s),
}
RANDOM = {"fgsm-rs", "pgd", "pgd-cw", "pgd-restarts", "pgd-targeted"}
ALL = pytest.mark.parametrize("name", list(MAKERS))
NORMS = pytest.mark.parametrize("norm", list(THREATS))


@ALL
@NORMS
def test_inside_ball_and_box(tiny, batch, name, norm):
    x, y = batch
    t = THREATS[norm]
    x_adv = MAKERS[name](t, 0)(tiny, x, y)
    assert x_adv.shape == x.shape and x_adv.dtype == x.dtype
    assert (t.distance(x_adv, x) <= t.eps + 1e-6).all()
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    assert not x_adv.requires_grad and x_adv.grad_fn is None
    assert (x_adv != x).any()


@ALL
@NORMS
def test_deterministic_under_seed(tiny, batch, name, norm):
    x, y = batch
    t = THREATS[norm]
    a = MAKERS[name](t, 3)
    first = a(tiny, x, y)
    assert torch.equal(first, a(tiny, x, y))
    assert torch.equal(first, MAKERS[name](t, 3)(tiny, x, y))
    other = MAKERS[name](t, 4)(tiny, x, y)
    assert torch.equal(first, other) != (name in RANDOM)
    # a per-call seed overrides the attack's seed (training loops vary it per step)
    assert torch.equal(a(tiny, x, y, seed=4), other)


@NORMS
def test_restarts_never_worse_than_one_start(tiny, data, norm):
    x, y = data["x"][:128], data["y"][:128]
    t = THREATS[norm]
    for loss in ("ce", "cw"):
        one = PGD(t, steps=3, loss=loss, seed=7)
        many = PGD(t, steps=3, loss=loss, restarts=4, seed=7)
        with torch.no_grad():
            z1, zn = tiny(one(tiny, x, y)), tiny(many(tiny, x, y))
        l1, ln = one.objective(z1, y), many.objective(zn, y)
        wrong1, wrongn = z1.argmax(1) != y, zn.argmax(1) != y
        assert (wrongn | ~wrong1).all()  # misclassified by the first start stays misclassified
        same_outcome = wrongn == wrong1
        assert (ln[same_outcome] >= l1[same_outcome] - 1e-5).all()
        assert wrongn.sum() >= wrong1.sum() and (ln - l1).mean() >= 0


def test_pgd_stronger_than_fgsm_on_trained_model(tiny, data):
    x, y = data["x"], data["y"]
    clean = accuracy(tiny, x, y)
    assert clean > 0.7  # the fixture model did learn
    for norm, t in THREATS.items():
        fgsm, pgd = FGSM(t), PGD(t, steps=10)
        xf, xp = fgsm(tiny, x, y), pgd(tiny, x, y)
        acc_f, acc_p = accuracy(tiny, xf, y), accuracy(tiny, xp, y)
        with torch.no_grad():
            loss_f = F.cross_entropy(tiny(xf), y).item()
            loss_p = F.cross_entropy(tiny(xp), y).item()
        assert acc_p < acc_f < clean, (norm, clean, acc_f, acc_p)
        assert loss_p > loss_f, (norm, loss_f, loss_p)


def test_cw_loss_and_targeted(tiny, batch):
    x, y = batch
    z = torch.tensor([[1.0, 3.0, 2.0], [5.0, 0.0, 1.0]])
    torch.testing.assert_close(margin_loss(z, torch.tensor([0, 0])), torch.tensor([2.0, -4.0]))
    with torch.no_grad():
        target = tiny(x).topk(2, dim=1).indices[:, 1]  # each example's runner-up class
    t = ThreatModel("linf", 0.1)
    x_adv = PGD(t, steps=10, targeted=True)(tiny, x, target)
    with torch.no_grad():
        hit_clean = (tiny(x).argmax(1) == target).float().mean()
        hit_adv = (tiny(x_adv).argmax(1) == target).float().mean()
    assert hit_adv > hit_clean + 0.5, (hit_clean, hit_adv)


def test_fgsm_matches_the_formula(tiny, batch):
    x, y = batch
    eps = 8 / 255
    xr = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(F.cross_entropy(tiny(xr), y, reduction="sum"), xr)
    expect = (x + eps * grad.sign()).clamp(0, 1)
    torch.testing.assert_close(FGSM(ThreatModel("linf", eps))(tiny, x, y), expect)
    assert FGSM(ThreatModel("linf", eps), random_start=True).alpha == pytest.approx(1.25 * eps)
    assert PGD(ThreatModel("linf", eps), steps=4).alpha == pytest.approx(2.5 * eps / 4)


def _with_recorder():
    torch.manual_seed(0)
    return nn.Sequential(Recorder(), TinyNet(), Recorder())


@pytest.mark.parametrize("name", ["fgsm", "fgsm-rs", "pgd", "pgd-restarts"])
def test_model_mode_restored(batch, name):
    x, y = batch
    model = _with_recorder().train()
    model[2].eval()  # mixed modes are restored module by module
    stats = model[1].bn1.running_mean.clone()
    MAKERS[name](THREATS["linf"], 0)(model, x, y)
    assert model[0].seen and not any(model[0].seen)  # eval() during the attack
    assert model.training and model[0].training and model[1].training and model[1].bn1.training
    assert not model[2].training
    torch.testing.assert_close(model[1].bn1.running_mean, stats)  # BN statistics untouched


def test_train_mode_option_keeps_train_mode(batch):
    x, y = batch
    model = _with_recorder().train()
    PGD(THREATS["linf"], steps=2, train_mode=True)(model, x, y)
    assert all(model[0].seen) and model.training


def test_mode_restored_after_error(batch):
    x, y = batch

    class Boom(nn.Module):
        def forward(self, t):
            assert not self.training
            raise RuntimeError("boom")

    model = nn.Sequential(Boom()).train()
    with pytest.raises(RuntimeError, match="boom"):
        PGD(THREATS["linf"], steps=2)(model, x, y)
    assert model.training and model[0].training


@ALL
def test_no_parameter_gradients(tiny, batch, name):
    x, y = batch
    MAKERS[name](THREATS["l2"], 0)(tiny, x, y)
    assert all(p.grad is None for p in tiny.parameters())
    # existing gradients (e.g. mid training step) are left exactly as they were
    for p in tiny.parameters():
        p.grad = torch.ones_like(p)
    MAKERS[name](THREATS["linf"], 0)(tiny, x, y)
    assert all(torch.equal(p.grad, torch.ones_like(p)) for p in tiny.parameters())
    assert all(p.requires_grad for p in tiny.parameters())


def test_works_under_no_grad_and_with_requires_grad_input(tiny, batch):
    x, y = batch
    expect = PGD(THREATS["linf"], steps=3)(tiny, x, y)
    with torch.no_grad():
        got = PGD(THREATS["linf"], steps=3)(tiny, x, y)
    assert torch.equal(got, expect)
    got = PGD(THREATS["linf"], steps=3)(tiny, x.clone().requires_grad_(True), y)
    assert torch.equal(got, expect) and got.grad_fn is None


def test_zero_eps_and_empty_batch(tiny, batch):
    x, y = batch
    for name in MAKERS:
        assert torch.equal(MAKERS[name](ThreatModel("linf", 0.0), 0)(tiny, x, y), x)
    empty = PGD(THREATS["linf"])(tiny, x[:0], y[:0])
    assert empty.shape == (0, 1, 28, 28)


def test_zero_gradient_fraction_is_reported(tiny, batch):
    x, y = batch
    attack = PGD(THREATS["linf"], steps=2)
    attack(tiny, x, y)
    assert attack.last_report["zero_grad_fraction"] == 0.0
    flat = nn.Sequential(TinyNet(), nn.Flatten())
    for p in flat.parameters():
        nn.init.zeros_(p)
    attack(flat, x, y)
    assert attack.last_report["zero_grad_fraction"] == 1.0


@pytest.mark.parametrize("name", ["fgsm", "fgsm-rs", "pgd", "pgd-cw", "autoattack", "apgd"])
def test_registry_configs_are_json(name):
    attack = make_attack(name, THREATS["linf"])
    cfg = json.loads(json.dumps(attack.config()))
    for key in ("name", "norm", "eps", "eps_over_255", "steps", "alpha", "restarts",
                "random_start", "loss", "targeted", "seed"):
        assert key in cfg
    assert cfg["eps_over_255"] == 8.0 and cfg["norm"] == "linf"
    assert make_attack(name.upper().replace("-", "_"), THREATS["linf"]).config() == cfg


def test_registry_options():
    pgd = make_attack("pgd-cw", THREATS["l2"], steps=20, restarts=2, seed=5)
    assert (pgd.steps, pgd.restarts, pgd.loss, pgd.seed) == (20, 2, "cw", 5)
    assert make_attack("fgsm-rs", THREATS["linf"]).random_start
    assert make_attack("apgd", THREATS["linf"]).attacks == ["apgd-ce", "apgd-t"]
    assert make_attack("apgd", THREATS["linf"], attacks=["apgd-ce"]).attacks == ["apgd-ce"]
