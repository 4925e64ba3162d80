"""Claim verdicts computed from the data: holds, does not hold, inconclusive."""

import math

import pytest

from robustlayers.studies import claims


def test_one_seed_uses_the_supplied_noise():
    holds = claims.compare("C", "P", "a > b", [0.60], [0.50], noise=0.05)
    assert holds["verdict"] == "holds" and holds["measured"]["difference"] == pytest.approx(0.1)
    fails = claims.compare("C", "P", "a > b", [0.40], [0.50], noise=0.05)
    assert fails["verdict"] == "does not hold"
    small = claims.compare("C", "P", "a > b", [0.52], [0.50], noise=0.05)
    assert small["verdict"] == "inconclusive" and "sampling error" in small["rule"]
    unknown = claims.compare("C", "P", "a > b", [0.9], [0.1])
    assert unknown["verdict"] == "inconclusive" and "one seed" in unknown["rule"]


def test_seed_spread_decides_with_several_seeds():
    assert claims.compare("C", "P", "t", [0.60, 0.62], [0.50, 0.51])["verdict"] == "holds"
    spread = claims.compare("C", "P", "t", [0.60, 0.40], [0.50, 0.45])
    assert spread["verdict"] == "inconclusive" and spread["measured"]["noise"] == \
        pytest.approx(0.15)
    assert claims.compare("C", "P", "t", [0.3, 0.31], [0.5, 0.5], relation="<")["verdict"] \
        == "holds"
    assert claims.compare("C", "P", "t", [0.7, 0.71], [0.5, 0.5], relation="<",
                          margin=0.1)["verdict"] == "does not hold"


def test_missing_or_non_finite_numbers_are_inconclusive():
    assert claims.compare("C", "P", "t", [], [0.5], noise=0.1)["verdict"] == "inconclusive"
    assert claims.compare("C", "P", "t", [math.nan], [0.5], noise=0.1)["verdict"] == \
        "inconclusive"
    assert claims.missing("C", "P", "t", "run failed")["rule"] == "not measured: run failed"


def test_combine_and_noise_helpers():
    h = claims.claim("a", "P", "t", "holds", {"x": 1}, "x > 0")
    f = claims.claim("b", "P", "t", "does not hold", {"x": -1}, "x > 0")
    i = claims.claim("c", "P", "t", "inconclusive", {"x": 0}, "x > 0")
    assert claims.combine("all", "P", "t", [h, h], "all")["verdict"] == "holds"
    assert claims.combine("all", "P", "t", [h, i], "all")["verdict"] == "inconclusive"
    assert claims.combine("all", "P", "t", [h, i, f], "all")["verdict"] == "does not hold"
    assert claims.accuracy_noise(0.5, 10000) == pytest.approx(0.01)
    assert claims.difference_noise(0.5, 0.5, 10000) == pytest.approx(0.01 * math.sqrt(2))
    assert claims.count([h, f, i, i]) == {"holds": 1, "does not hold": 1, "inconclusive": 2}
    with pytest.raises(ValueError, match="verdict"):
        claims.claim("a", "P", "t", "maybe", None, "")
