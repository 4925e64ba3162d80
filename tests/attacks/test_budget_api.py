"""The call shapes people know from torchattacks / AutoAttack: the budget given directly, norms
and budgets written leniently, AutoAttack versions through make_attack."""
import math

import pytest
import torch

from robustlayers.attacks import (FGSM, PGD, AutoAttackAdapter, FeaturePGD, ThreatModel,
                                  as_threat, make_attack, parse_eps, parse_norm)

LINF = ThreatModel("linf", 8 / 255)


@pytest.mark.parametrize("text,norm", [("Linf", "linf"), ("linf", "linf"), ("inf", "linf"),
                                       ("LINF", "linf"), (math.inf, "linf"), ("L2", "l2"),
                                       ("l2", "l2"), (2, "l2"), (" l2 ", "l2")])
def test_norms_are_parsed_leniently(text, norm):
    assert parse_norm(text) == norm


@pytest.mark.parametrize("bad", ["l1", "L3", 1, True, None, "lin"])
def test_unknown_norms_name_the_choices(bad):
    with pytest.raises(ValueError, match="unknown norm .*choose one of linf, l2"):
        parse_norm(bad)


def test_budget_directly_equals_a_threat_model(tiny, batch):
    x, y = batch
    reference = PGD(LINF, alpha=2 / 255, steps=3)
    for attack in (PGD(eps=8 / 255, alpha=2 / 255, steps=3),
                   PGD(eps="8/255", norm="Linf", alpha="2/255", steps=3),
                   PGD(eps=8 / 255, norm="inf", alpha=2 / 255, steps=3)):
        assert attack.threat == LINF and attack.alpha == pytest.approx(2 / 255)
        assert attack.config() == reference.config()
        assert torch.equal(attack(tiny, x, y), reference(tiny, x, y))


def test_fgsm_and_l2_budgets():
    assert FGSM(eps=8 / 255).alpha == pytest.approx(8 / 255)
    assert FGSM(eps="8/255", random_start=True).alpha == pytest.approx(1.25 * 8 / 255)
    l2 = PGD(eps="128/255", norm="L2", alpha="15/255", steps=10)
    assert l2.threat == ThreatModel("l2", 128 / 255) and l2.alpha == pytest.approx(15 / 255)
    assert PGD(eps=0.5, norm="l2").threat.eps == 0.5
    assert FeaturePGD(eps=0.03, selection="kind:conv").threat == ThreatModel("linf", 0.03)


def test_old_call_shapes_still_work():
    assert PGD(LINF, steps=20, alpha=1 / 255).steps == 20
    assert PGD(threat=LINF).threat == LINF
    assert FGSM(LINF, random_start=True).name == "fgsm-rs"
    assert FeaturePGD(LINF, "kind:conv").selection == "kind:conv"
    assert make_attack("pgd", LINF, steps=5).steps == 5


@pytest.mark.parametrize("build,message", [
    (lambda: PGD(), "needs a budget: pass a ThreatModel"),
    (lambda: PGD(LINF, eps=8 / 255), "either a ThreatModel or eps="),
    (lambda: PGD("linf"), "threat must be a ThreatModel"),
    (lambda: PGD(eps="8"), "did you mean '8/255'"),
    (lambda: PGD(eps=8 / 255, alpha="2"), r"did you mean '2/255'"),
    (lambda: PGD(eps=8 / 255, norm="l1"), "unknown norm 'l1'"),
    (lambda: FeaturePGD(eps=0.03), "needs selection="),
])
def test_bad_budgets_are_refused_before_any_work(build, message):
    with pytest.raises(ValueError, match=message):
        build()


def test_parse_eps_takes_lenient_norms():
    assert parse_eps("8/255", norm="Linf") == pytest.approx(8 / 255)
    assert as_threat(eps="0.5", norm="L2") == ThreatModel("l2", 0.5)


def test_make_attack_takes_the_budget_and_autoattack_versions():
    assert make_attack("pgd", eps="8/255", steps=7).threat == LINF
    assert make_attack("fgsm", eps=8 / 255, norm="Linf").threat == LINF
    for version in ("standard", "plus", "rand", "custom", "Rand"):
        aa = make_attack("autoattack", LINF, version=version)
        assert aa.version == version.lower()
        assert aa.config()["version"] == version.lower()
    assert make_attack("autoattack", LINF).config()["name"] == "autoattack"
    assert make_attack("autoattack", eps="8/255", version="custom",
                       attacks=["apgd-ce"]).attacks == ["apgd-ce"]
    assert AutoAttackAdapter(norm="Linf", eps=8 / 255, version="rand").version == "rand"
    with pytest.raises(ValueError, match="unknown AutoAttack version 'fast'; choose one of "
                                         "standard, custom, plus, rand"):
        make_attack("autoattack", LINF, version="fast")
    with pytest.raises(ValueError, match="attack 'apgd' fixes version"):
        make_attack("apgd", LINF, version="standard")
