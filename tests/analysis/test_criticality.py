"""Criticality (CLAT Eqs. 2–3), its stability over batches, and the epoch-time ratio."""

import json
import math

import numpy as np
import pytest
import torch

from robustlayers.analysis import (
    criticality, criticality_epoch_ratio, criticality_from_weakness, criticality_stability,
    top_k_layers,
)
from robustlayers.layers import FeatureCapture

from .toys import FixedPerturbation, ScaledStack, TinyCNN, images, labels


def test_scaled_stack_criticality_is_each_layer_gain():
    # F_i = (Π_{k≤i} a_k)·x  =>  W_i = |Π a_k|·W_0 with W_0 = mean||e||₂/N_input, C_i = |a_i|;
    # normalised C_1 = W_1/W_0 = |a_1|, literal C_1 = W_1
    scales = (2.0, 0.5, -3.0)
    model = ScaledStack(scales=scales)
    x, y = images(5, (1, 4, 4)), labels(5)
    e = torch.full((1, 1, 4, 4), 0.01)
    out = criticality(model, x, y, selection="kind:scale", attack=FixedPerturbation(e), k=2)
    base = float(e.flatten().norm()) / 16
    np.testing.assert_allclose(out.weakness, np.abs(np.cumprod(scales)) * base, rtol=1e-5)
    np.testing.assert_allclose(out.criticality, np.abs(scales), rtol=1e-5)
    assert out.top_k == ["body.2", "body.0"]
    record = out.to_dict()
    assert record["c1"] == "normalised" and math.isclose(record["w0"], base, rel_tol=1e-6)
    literal = criticality(model, x, y, selection="kind:scale", attack=FixedPerturbation(e), k=2,
                          c1="literal")
    assert math.isclose(literal.criticality[0], literal.weakness[0], rel_tol=1e-12)  # C_1 = W_1
    np.testing.assert_allclose(literal.criticality[1:], np.abs(scales[1:]), rtol=1e-5)
    assert literal.top_k == ["body.2", "body.1"] and literal.to_dict()["c1"] == "literal"
    with pytest.raises(ValueError, match="normalised, literal"):
        criticality(model, x, y, selection="kind:scale", attack=FixedPerturbation(e), c1="x")


def test_matches_ratio_definition_on_a_real_model():
    model = TinyCNN().eval()
    x, y = images(6, (1, 8, 8), lo=0.1, hi=0.9), labels(6)
    g = torch.Generator().manual_seed(3)
    e = 0.03 * torch.sign(torch.randn(1, 1, 8, 8, generator=g))
    out = criticality(model, x, y, attack=FixedPerturbation(e), k=2, batch_size=4)
    assert out.layers == ("conv1", "conv2", "fc")                 # depth:all, exec order
    with torch.no_grad(), FeatureCapture(model, list(out.layers)) as cap:
        model(x)
        clean = dict(cap.features)
        model(x + e)
        adv = dict(cap.features)
    weakness = []
    for name in out.layers:
        diff = (adv[name] - clean[name]).flatten(1).double()
        weakness.append(float((diff.norm(dim=1) / diff.shape[1]).mean()))   # CLAT Eq. 2
    np.testing.assert_allclose(out.weakness, weakness, rtol=1e-5)
    w0 = float((e.expand_as(x).flatten(1).double().norm(dim=1) / 64).mean())   # E‖δ‖₂/N_input
    expected_c = [weakness[0] / w0] + [weakness[i] / weakness[i - 1] for i in range(1, 3)]
    np.testing.assert_allclose(out.criticality, expected_c, rtol=1e-5)           # Eq. 3
    # sanity check of CLAT §3.1: W_ε(F_i) = Π_{k≤i} C_k
    np.testing.assert_allclose(np.cumprod(out.criticality) * w0, out.weakness, rtol=1e-6)
    record = out.to_dict()
    json.dumps(record)
    assert record["selection"]["names"] == ["conv1", "conv2", "fc"]
    # the classifier (last depth layer) is not a candidate: top-2 of conv1, conv2
    assert record["candidates"] == ["conv1", "conv2"] and record["include_classifier"] is False
    by_c = sorted(range(2), key=lambda i: -expected_c[i])
    assert record["top_k"] == [out.layers[i] for i in by_c[:2]]
    assert record["k"] == 2
    with pytest.raises(ValueError, match="from 1 to 2, the number of candidate layers"):
        criticality(model, x, y, attack=FixedPerturbation(e), k=3)
    full = criticality(model, x, y, attack=FixedPerturbation(e), k=3, include_classifier=True)
    assert set(full.top_k) == {"conv1", "conv2", "fc"}


def test_default_attack_is_clat_pgd():
    out = criticality(TinyCNN(), images(4, (1, 8, 8)), labels(4), eps=0.03, steps=2, seed=5)
    assert out.attack["name"] == "pgd" and out.attack["steps"] == 2
    assert math.isclose(out.attack["alpha"], 0.007, rel_tol=1e-9)     # CLAT: ε=0.03, α=0.007
    assert out.attack["seed"] == 5 and out.seed == 5


def test_helpers_edge_cases():
    c = criticality_from_weakness([0.5, 0.0, 0.0, 1.0])
    assert c[0] == 0.5 and c[1] == 0.0 and np.isnan(c[2]) and np.isinf(c[3])
    assert top_k_layers([1.0, np.nan, 3.0, 3.0], ["a", "b", "c", "d"], 3) == ["c", "d", "a"]
    assert top_k_layers([1.0, np.nan], ["a", "b"], 2) == ["a", "b"]      # NaN ranks last
    for bad in (0, -1, 5, 2.0, True):                          # no silent clamping of k
        with pytest.raises(ValueError, match="from 1 to 1"):
            top_k_layers([1.0], ["a"], bad)


def test_top_k_names_on_known_gains():
    # normalised C_i = |a_i| for every i: the ranking is fixed by the gains
    model = ScaledStack(scales=(0.5, 4.0, 1.5, -2.0))
    x, y = images(3, (1, 4, 4)), labels(3)
    attack = FixedPerturbation(torch.full((1, 1, 4, 4), 0.01))
    out = criticality(model, x, y, selection="kind:scale", attack=attack, k=2)
    assert out.top_k == ["body.1", "body.3"]
    out = criticality(model, x, y, selection="kind:scale", attack=attack, k=4)
    assert out.top_k == ["body.1", "body.3", "body.2", "body.0"]
    assert criticality(model, x, y, selection="kind:scale", attack=attack).k == 3   # default
    two = criticality(model, x, y, selection="body.0,body.1", attack=attack)
    assert two.k == 2 and two.top_k == ["body.1", "body.0"]   # default: all when fewer than 3


@pytest.mark.parametrize("k", [0, 5])
def test_k_outside_the_selection_is_an_error(k):
    model = ScaledStack(scales=(0.5, 4.0, 1.5, -2.0))
    x, y = images(3, (1, 4, 4)), labels(3)
    attack = FixedPerturbation(torch.full((1, 1, 4, 4), 0.01))
    with pytest.raises(ValueError, match=r"from 1 to 4, the number of candidate layers"):
        criticality(model, x, y, selection="kind:scale", attack=attack, k=k)
    assert attack.calls == 0                                   # refused before the attack
    with pytest.raises(ValueError, match="from 1 to 4"):
        criticality_stability(model, (x, y), batch_size=2, repeats=1, k=k, attack=attack,
                              selection="kind:scale")


def test_stability_fields_and_counts():
    model = TinyCNN()
    x, y = images(20, (1, 8, 8)), labels(20)
    stab = criticality_stability(model, (x, y), batch_size=4, repeats=5, k=2, steps=1, seed=3,
                                 eps=8 / 255)
    d = stab.to_dict()
    json.dumps(d)
    assert d["repeats"] == 5 and d["batch_size"] == 4 and d["k"] == 2
    assert len(d["top_k_per_repeat"]) == 5 and all(len(t) == 2 for t in d["top_k_per_repeat"])
    assert math.isclose(sum(d["frequency"].values()), 2.0)            # k layers per repeat
    assert set(d["frequency"]) == set(d["layers"]) == {"conv1", "conv2", "fc"}
    assert d["modal_count"] in range(1, 6)
    assert math.isclose(d["change_rate"], 1 - d["modal_count"] / 5)
    assert sum(d["layers_changed_histogram"].values()) == 5
    assert d["layers_changed_histogram"].get("0", 0) == d["modal_count"]
    assert len(d["mean_criticality"]) == 3 and d["mean_time_s"] > 0
    assert stab.criticality_per_repeat.shape == (5, 3)


def test_stability_of_a_deterministic_ranking_is_perfect():
    model = ScaledStack(scales=(2.0, 0.5, -3.0))
    x, y = images(12, (1, 4, 4)), labels(12)
    attack = FixedPerturbation(torch.full((1, 1, 4, 4), 0.01))
    d = criticality_stability(model, (x, y), batch_size=3, repeats=4, k=2, attack=attack,
                              selection="kind:scale").to_dict()
    assert d["change_rate"] == 0.0 and d["modal_count"] == 4
    assert d["modal_top_k"] == ["body.0", "body.2"]                   # C = 2, 0.5, 3
    assert d["frequency"] == {"body.0": 1.0, "body.1": 0.0, "body.2": 1.0}
    assert d["c1"] == "normalised" and "w0" not in d


def test_stability_rejects_bad_sizes():
    with pytest.raises(ValueError, match="batch_size"):
        criticality_stability(TinyCNN(), (images(3, (1, 8, 8)), labels(3)), batch_size=10,
                              eps=0.1)
    with pytest.raises(ValueError, match="repeats"):
        criticality_stability(TinyCNN(), (images(3, (1, 8, 8)), labels(3)), repeats=0,
                              eps=0.1)


def test_epoch_ratio_record():
    model = TinyCNN()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    data = (images(40, (1, 8, 8)), labels(40))
    out = criticality_epoch_ratio(model, data, eps=0.03, crit_batch=5, crit_steps=1,
                                  epoch_batch_size=16, epoch_steps=1, max_batches=1,
                                  epoch_size=64)
    json.dumps(out)
    assert out["epoch"]["epoch_batches"] == 4 and out["epoch"]["measured_batches"] == 1
    assert out["epoch"]["extrapolated"] is True
    assert out["ratio"] > 0 and math.isclose(out["ratio"],
                                             out["criticality_s"] / out["epoch"]["epoch_s"])
    for key, value in model.state_dict().items():                     # trained a copy only
        assert torch.equal(value, before[key])
