import dataclasses
import math

import pytest
import torch

from robustlayers.attacks import ThreatModel, describe_eps, parse_eps


@pytest.mark.parametrize("text, value", [
    ("8/255", 8 / 255), ("0.5/255", 0.5 / 255), ("0.1", 0.1), (" 8 / 255 ", 8 / 255),
    ("0", 0.0), ("128/255", 128 / 255), (0.03, 0.03), ("1e-2", 0.01),
])
def test_parse_eps(text, value):
    assert parse_eps(text) == pytest.approx(value, abs=1e-15)


def test_plain_number_is_input_units_and_large_linf_is_an_error():
    with pytest.raises(ValueError, match=r"did you mean '8/255'"):
        parse_eps("8")
    with pytest.raises(ValueError, match="exceeds 1"):
        parse_eps("300/255")
    assert parse_eps("8", norm="l2") == 8.0  # l2 budgets above 1 are legitimate
    assert parse_eps("1") == 1.0


@pytest.mark.parametrize("text, match", [
    ("abc", "cannot parse eps"), ("-1/255", "cannot parse eps|>= 0"), ("-0.1", ">= 0"),
    ("nan", "finite"), ("inf", "finite"), ("1/0", "division by zero"), (True, "number"),
    (None, "number"),
])
def test_parse_eps_rejects(text, match):
    with pytest.raises(ValueError, match=match):
        parse_eps(text)


def test_parse_eps_bad_norm():
    with pytest.raises(ValueError, match="linf, l2"):
        parse_eps("8/255", norm="l1")


def test_describe_eps():
    assert describe_eps(8 / 255) == {"value": 8 / 255, "over_255": 8.0}
    assert describe_eps(0.03)["over_255"] == pytest.approx(7.65)


def test_threat_model_validation():
    t = ThreatModel("linf", 8 / 255)
    assert t.to_dict() == {"norm": "linf", "eps": 8 / 255, "eps_over_255": 8.0}
    with pytest.raises(dataclasses.FrozenInstanceError):
        t.eps = 1.0
    with pytest.raises(ValueError, match=r"unknown norm 'l1'; choose one of linf, l2"):
        ThreatModel("l1", 0.1)
    with pytest.raises(ValueError, match=">= 0"):
        ThreatModel("linf", -0.1)
    for bad in (math.nan, math.inf):
        with pytest.raises(ValueError, match="finite"):
            ThreatModel("l2", bad)
    assert ThreatModel("Linf", "8/255") == ThreatModel("linf", 8 / 255)  # lenient spellings
    with pytest.raises(ValueError, match="did you mean '8/255'"):
        ThreatModel("linf", "8")
    assert isinstance(ThreatModel("l2", 1).eps, float)


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_geometry(norm):
    t = ThreatModel(norm, 0.3)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(16, 3, 8, 8, generator=g)
    d0 = t.random_delta(x, g)
    assert (t.distance(x + d0, x) <= 0.3 + 1e-6).all()
    assert (t.distance(x + d0, x) > 0.1).all()
    big = torch.randn(16, 3, 8, 8, generator=g) * 5
    assert (t.distance(t.project(big), torch.zeros_like(big)) <= 0.3 + 1e-6).all()
    small = big * 1e-3
    torch.testing.assert_close(t.project(small), small)  # inside the ball: unchanged
    unit = t.direction(big)
    torch.testing.assert_close(t.distance(unit, torch.zeros_like(unit)), torch.ones(16))
