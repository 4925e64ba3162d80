"""Each sanity check fires on a model/attack built to violate it and passes on a sane one (SPEC §6)."""
import json

import pytest
import torch
from torch import nn

from robustlayers.attacks import FGSM, PGD, AutoAttackAdapter, ThreatModel
from robustlayers.evaluate import (SanityError, TransferResult, check_eps_monotone,
                                   check_fgsm_vs_pgd, check_large_eps, check_more_restarts,
                                   check_more_steps, check_randomness, check_train_mode,
                                   check_transfer, check_transfer_matrix, check_zero_gradients,
                                   checks_from_results, eps_sweep, evaluate_model, report_checks,
                                   rise_threshold, run_sanity_checks)

from .toys import Brightness, FixedAttack, Linear, Noisy, Quantised, identity_attack, linear_data

THREAT = ThreatModel("linf", 0.1)


@pytest.fixture
def sane():
    model = Linear().eval()
    x, y = linear_data(n=48, model=model)
    return model, x, y


def by_name(checks):
    out = {}
    for c in checks:
        out.setdefault(c.name, c)
    return out


def test_all_checks_pass_on_a_sane_model(sane, capsys):
    model, x, y = sane
    res = evaluate_model(model, x, y, {"fgsm": FGSM(THREAT), "pgd-5": PGD(THREAT, steps=5),
                                       "pgd-10": PGD(THREAT, steps=10)})
    checks = run_sanity_checks(model, x, y, threat=THREAT, steps=5, results=res, strict=True)
    names = {c.name for c in checks}
    assert {"train_mode", "randomness", "zero_gradients", "eps_monotone", "large_eps",
            "more_steps", "more_restarts", "fgsm_vs_pgd", "perturbation_budget",
            "attack_zero_gradients"} <= names
    assert all(c.passed for c in checks), [c.detail for c in checks if not c.passed]
    assert "SANITY CHECK FAILED" not in capsys.readouterr().err
    json.dumps([c.to_dict() for c in checks])


def test_threshold_is_one_pp_plus_two_standard_errors():
    assert rise_threshold(0.5, 0.5, 100) == pytest.approx(0.01 + 2 * 0.05)
    assert rise_threshold(0.0, 0.0, 10) == pytest.approx(0.01)


def test_eps_monotone_numbers():
    assert check_eps_monotone([0, 0.1, 0.2], [0.9, 0.5, 0.51], 1000).passed
    bad = check_eps_monotone([0.2, 0, 0.1], [0.8, 0.9, 0.3], 1000)
    assert not bad.passed and "ε=0.1" in bad.detail and "ε=0.2" in bad.detail
    assert "gradient masking" in bad.suggestion


def test_eps_monotone_fires_when_accuracy_rises_with_eps():
    """Brightness model, dark inputs labelled 'bright': an 'attack' that adds ε helps it."""
    x = torch.full((20, 1, 2, 2), 0.3)
    y = torch.ones(20, dtype=torch.long)

    def factory(eps):
        return FixedAttack(lambda v: (v + eps).clamp(0, 1), config={"name": "add", "eps": eps})

    res = eps_sweep(Brightness(), x, y, factory, [0.0, 0.1, 0.3])
    assert res.accuracy == [0.0, 0.0, 1.0]
    assert not check_eps_monotone(res.eps, res.accuracy, res.n).passed


class FarIsCorrect(nn.Module):
    """Correct iff the input is more than 0.15 (ℓ∞) from the clean image: accuracy *rises* with ε
    under a random-start attack."""

    def __init__(self, x, y, k=3):
        super().__init__()
        self.register_buffer("x_ref", x.clone())
        self.register_buffer("onehot", torch.nn.functional.one_hot(y, k).float())

    def forward(self, x):
        dist = (x - self.x_ref).flatten(1).abs().amax(1, keepdim=True)
        return self.onehot * 20 * (dist - 0.15)


def test_run_sanity_checks_flags_accuracy_rising_with_eps(sane):
    _, x, y = sane
    model = FarIsCorrect(x, y).eval()
    checks = by_name(run_sanity_checks(model, x, y, threat=THREAT, steps=3, num_classes=3,
                                       report=False))
    assert not checks["eps_monotone"].passed
    assert not checks["large_eps"].passed


def test_large_eps(sane):
    assert check_large_eps(0.12, n=1000, num_classes=10, eps=1.0).passed
    bad = check_large_eps(0.5, n=1000, num_classes=10, eps=1.0)
    assert not bad.passed and "chance 10.00%" in bad.detail
    model, x, y = sane

    def build(kind, threat, **kw):  # a broken attack that never moves the input
        return identity_attack(kind, eps=threat.eps)

    checks = by_name(run_sanity_checks(model, x, y, threat=THREAT, build=build, report=False))
    assert not checks["large_eps"].passed and checks["eps_monotone"].passed


def test_more_steps_and_restarts(sane):
    assert not check_more_steps(0.3, 0.5, 1000).passed
    assert check_more_steps(0.3, 0.3, 1000).passed
    assert not check_more_restarts(0.3, 0.5, 1000).passed
    model, x, y = sane

    def build(kind, threat, **kw):  # PGD-2k and restarted PGD are secretly no-ops
        if kind == "fgsm":
            return FGSM(threat)
        if kw["steps"] > 3 and threat.eps == THREAT.eps or kw["restarts"] > 1:
            return identity_attack("pgd")
        return PGD(threat, **kw)

    checks = by_name(run_sanity_checks(model, x, y, threat=THREAT, steps=3, build=build,
                                       report=False))
    assert not checks["more_steps"].passed and "PGD-6" in checks["more_steps"].detail
    assert not checks["more_restarts"].passed
    assert checks["fgsm_vs_pgd"].passed


def test_fgsm_stronger_than_a_crafted_weak_pgd(sane):
    assert not check_fgsm_vs_pgd(0.1, 0.6, 1000).passed
    model, x, y = sane

    def build(kind, threat, **kw):
        return FGSM(threat) if kind == "fgsm" else identity_attack("pgd")

    checks = by_name(run_sanity_checks(model, x, y, threat=THREAT, build=build, report=False))
    bad = checks["fgsm_vs_pgd"]
    assert not bad.passed and "FGSM" in bad.suggestion and "AutoAttack" in bad.suggestion


def test_transfer_not_better_than_white_box():
    assert check_transfer(0.4, 0.45, 1000).passed
    assert not check_transfer(0.4, 0.1, 1000, source="a", target="b").passed
    ok = TransferResult(["a", "b"], {"a": {"a": 0.1, "b": 0.5}, "b": {"a": 0.6, "b": 0.2}},
                        {}, {}, {}, {}, n=500)
    assert check_transfer_matrix(ok).passed
    bad = TransferResult(["a", "b"], {"a": {"a": 0.1, "b": 0.05}, "b": {"a": 0.6, "b": 0.5}},
                         {}, {}, {}, {}, n=500)
    c = check_transfer_matrix(bad)
    assert not c.passed and "a->b" in c.detail and "transfer" in c.suggestion


def test_zero_gradients_flag_a_quantising_model(sane):
    _, x, y = sane
    bad = check_zero_gradients(Quantised().eval(), x, y)
    assert not bad.passed and "100.00%" in bad.detail and "BPDA" in bad.suggestion
    assert check_zero_gradients(Linear().eval(), x, y).passed
    checks = by_name(run_sanity_checks(Quantised().eval(), x, y, threat=THREAT, steps=2,
                                       results=evaluate_model(Quantised(), x, y,
                                                              {"pgd": PGD(THREAT, steps=2)}),
                                       report=False))
    assert not checks["zero_gradients"].passed and not checks["attack_zero_gradients"].passed


def test_randomness_flags_a_stochastic_model(sane):
    _, x, _ = sane
    bad = check_randomness(Noisy().eval(), x)
    assert not bad.passed and "EOT" in bad.suggestion
    assert check_randomness(Linear().eval(), x).passed


def test_train_mode_flagged(sane):
    model, x, y = sane
    model.train()
    c = check_train_mode(model)
    assert not c.passed and c.severity == "warning" and "model.eval()" in c.suggestion
    res = evaluate_model(model, x, y, {})
    assert not by_name(checks_from_results(res))["train_mode"].passed
    model.eval()
    assert check_train_mode(model).passed


def test_budget_steps_and_autoattack_flags_from_results(sane):
    model, x, y = sane
    attacks = {
        "over": FixedAttack(lambda v: (v + 0.2).clamp(0, 1),
                            config={"name": "pgd", "norm": "linf", "eps": 0.01, "steps": 5}),
        "more": identity_attack("pgd", norm="linf", eps=0.01, steps=50),
        "aa": identity_attack("autoattack", norm="linf", eps=0.1),
    }
    attacks["aa"].last_report = {"flags": ["there are 3 points with zero gradient!"]}
    checks = by_name(checks_from_results(evaluate_model(model, x, y, attacks)))
    assert not checks["perturbation_budget"].passed and "over" in checks[
        "perturbation_budget"].detail
    assert not checks["more_steps"].passed and "PGD-50" in checks["more_steps"].detail
    assert not checks["autoattack_flags"].passed and "zero gradient" in checks[
        "autoattack_flags"].detail
    attacks["aa"].last_report = {"flags": []}
    assert by_name(checks_from_results(evaluate_model(model, x, y, attacks)))[
        "autoattack_flags"].passed
    assert "autoattack_flags" not in by_name(checks_from_results(evaluate_model(
        model, x, y, {"pgd": PGD(THREAT, steps=1)})))


def test_autoattack_own_flags_pass_through(sane):
    _, x, y = sane
    aa = AutoAttackAdapter(THREAT, version="custom", attacks=["apgd-ce"])
    res = evaluate_model(Noisy().eval(), x[:8], y[:8], {"aa": aa})
    c = by_name(checks_from_results(res))["autoattack_flags"]
    assert not c.passed and "randomized" in c.detail


def test_strict_raises_and_lenient_prints(sane, capsys):
    _, x, y = sane
    model = Quantised().eval()
    checks = run_sanity_checks(model, x, y, threat=THREAT, attack_checks=False)
    err = capsys.readouterr().err
    assert "SANITY CHECK FAILED: zero_gradients" in err
    assert {c.name for c in checks} == {"train_mode", "finite_outputs", "randomness",
                                        "zero_gradients"}
    with pytest.raises(SanityError, match="zero_gradients") as info:
        run_sanity_checks(model, x, y, threat=THREAT, attack_checks=False, strict=True)
    assert [c.name for c in info.value.checks] == ["zero_gradients"]
    with pytest.raises(SanityError):
        report_checks(checks, strict=True)
    with pytest.raises(ValueError, match="restarts"):
        run_sanity_checks(model, x, y, threat=THREAT, restarts=1)
    with pytest.raises(ValueError, match="ThreatModel"):
        run_sanity_checks(model, x, y, threat=0.1)


def test_non_finite_outputs_get_their_own_check_not_stochastic_advice(sane, capsys):
    _, x, y = sane
    model = Linear().eval()
    with torch.no_grad():
        model.fc.weight[0, 0] = float("nan")  # a diverged weight: every logit of class 0 is NaN
    checks = by_name(run_sanity_checks(model, x, y, threat=THREAT, steps=2))
    assert not checks["finite_outputs"].passed
    assert f"{len(x)} of {len(x)} inputs" in checks["finite_outputs"].detail
    assert "diverged" in checks["finite_outputs"].suggestion
    for name in ("randomness", "zero_gradients", "eps_monotone", "large_eps", "more_steps"):
        assert checks[name].skipped and checks[name].passed, name
        assert "not finite" in checks[name].detail
    err = capsys.readouterr().err
    assert "SANITY CHECK FAILED: finite_outputs" in err
    assert "stochastic" not in err and "sanity check skipped: randomness" in err
    assert checks["randomness"].to_dict()["skipped"] is True


def test_eps_zero_says_the_attack_checks_are_skipped(sane, capsys):
    model, x, y = sane
    checks = run_sanity_checks(model, x, y, threat=ThreatModel("linf", 0.0), steps=2)
    skipped = {c.name for c in checks if c.skipped}
    assert skipped == {"eps_monotone", "more_steps", "more_restarts", "fgsm_vs_pgd", "large_eps"}
    assert all("ε = 0" in c.detail for c in checks if c.skipped)
    assert capsys.readouterr().err.count("sanity check skipped:") == 5


def test_eps_reaching_every_image_measures_large_eps_with_the_pgd_at_eps(sane, capsys):
    model, x, y = sane
    checks = by_name(run_sanity_checks(model, x, y, threat=ThreatModel("linf", 1.0), steps=5))
    assert not any(c.skipped for c in checks.values())
    large = checks["large_eps"]
    assert large.data["eps"] == 1.0 and "measured with the PGD at ε" in large.detail
    assert checks["eps_monotone"].data["eps"] == [0.0, 0.5, 1.0]
    assert "no 2ε point" in checks["eps_monotone"].detail


def test_sanity_error_is_a_library_error_exiting_1():
    from robustlayers.errors import RobustLayersError
    err = SanityError([])
    assert isinstance(err, RobustLayersError) and isinstance(err, RuntimeError)
    assert err.exit_code == 1
