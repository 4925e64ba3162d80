"""PSR (EARLY Eq. 2) against analytic answers."""

import json
import math

import numpy as np
import pytest
import torch

from robustlayers.analysis import DB_FORM, compare_psr, psr, psr_gap
from robustlayers.layers import SelectionError

from .toys import ConvStack, FixedPerturbation, ScaledStack, TinyCNN, images, labels


def _norms(t):
    flat = t.flatten(1).double()
    return {"1": flat.abs().sum(1), "2": flat.norm(dim=1), "inf": flat.abs().amax(1)}


def test_scaled_stack_psr_is_input_ratio_at_every_layer():
    # f_l(x) = (Π a_k)·x, so PSR_l = ||Π a·e|| / ||Π a·x|| = ||e|| / ||x|| for every l and p
    model = ScaledStack(scales=(2.0, 0.5, -3.0))
    x, y = images(6, (1, 4, 4)), labels(6)
    e = 0.01 * torch.sign(torch.randn(1, 1, 4, 4, generator=torch.Generator().manual_seed(1)))
    attack = FixedPerturbation(e)
    result = psr(model, x, y, selection="kind:scale", attack=attack, batch_size=4)
    assert result.layers == ("body.0", "body.1", "body.2")
    assert attack.calls == 2  # two batches
    num, den = _norms(e.expand_as(x)), _norms(x)
    for p in ("1", "2", "inf"):
        expected = (num[p] / den[p]).numpy()
        assert result.ratios[p].shape == (3, 6)
        for layer_ratios in result.ratios[p]:
            np.testing.assert_allclose(layer_ratios, expected, rtol=1e-5)
        np.testing.assert_allclose(result.mean_db(p), 20 * np.log10(expected.mean()), rtol=1e-5)


def test_conv_stack_default_selection_and_record():
    model = ConvStack(s1=2.0, s2=-0.5)
    x, y = images(5, (2, 3, 3), seed=2), labels(5)
    e = torch.full((1, 2, 3, 3), 0.02)
    out = psr(model, x, y, attack=FixedPerturbation(e), seed=7)
    assert out.layers == ("conv1", "conv2")                      # default kind:conv
    expected = (e.expand_as(x).flatten(1).norm(dim=1) / x.flatten(1).norm(dim=1)).numpy()
    np.testing.assert_allclose(out.ratios["2"][1], expected, rtol=1e-5)
    record = out.to_dict()
    json.dumps(record)
    assert record["db_form"] == DB_FORM == "20*log10(mean ratio)"
    assert record["selection"] == {"expression": "kind:conv", "names": ["conv1", "conv2"]}
    assert record["seed"] == 7 and record["attack"]["name"] == "fixed"
    row = record["norms"]["2"]["layers"][0]
    assert set(row["quantiles"]) == {"q5", "q25", "q50", "q75", "q95"}
    assert sum(row["histogram_db"]["counts"]) == 5
    assert len(record["norms"]["2"]["histogram_edges_db"]) == len(row["histogram_db"]["counts"]) + 1
    assert math.isclose(row["mean_db"], 20 * math.log10(expected.mean()), rel_tol=1e-4)
    assert len(record["norms"]["inf"]["per_image"][0]) == 5


def test_default_attack_is_early_pgd():
    model = TinyCNN()
    x, y = images(4, (1, 8, 8)), labels(4)
    out = psr(model, x, y, eps=8 / 255, steps=2)
    cfg = out.attack
    assert cfg["name"] == "pgd" and cfg["steps"] == 2 and cfg["random_start"] is True
    assert math.isclose(cfg["alpha"], 1 / 255) and math.isclose(cfg["eps"], 8 / 255)
    assert np.all(np.isfinite(out.ratios["2"])) and np.all(out.ratios["2"] > 0)


def test_zero_signal_images_are_undefined_not_inf():
    model = ScaledStack()
    x = images(3, (1, 4, 4))
    x[1] = 0.0
    out = psr(model, x, labels(3), selection="kind:scale",
              attack=FixedPerturbation(torch.full((1, 1, 4, 4), 0.01)))
    assert np.isnan(out.ratios["2"][0, 1])
    rows, _ = out.layer_summary("2")
    assert rows[0]["n_undefined"] == 1 and math.isfinite(rows[0]["mean_db"])


def test_compare_gap_opens_where_the_signal_differs():
    # same perturbation growth in both; model b adds a large bias at its 2nd layer, so its signal
    # grows and its PSR drops there: the gap must open at body.1, not body.0
    a = ScaledStack(scales=(1.0, 1.0, 1.0))
    b = ScaledStack(scales=(1.0, 1.0, 1.0), biases=[0.0, 5.0, 0.0])
    x, y = images(4, (1, 4, 4)), labels(4)
    attack = FixedPerturbation(torch.full((1, 1, 4, 4), 0.02))
    comp = compare_psr({"a": a, "b": b}, x, y, selection="kind:scale", attack=attack)
    gap = comp.gaps[0]
    assert gap["reference"] == "a" and gap["other"] == "b"
    assert abs(gap["gap_db"][0]) < 1e-6
    assert gap["opens_at"] == "body.1" and gap["opens_at_position"] == 1
    assert gap["gap_db"][1] > 3
    again = psr_gap(comp.results["a"], comp.results["b"], threshold_db=1e9)
    assert again["opens_at"] is None
    record = comp.to_dict(include_per_image=False)
    json.dumps(record)
    assert "per_image" not in record["models"]["a"]["norms"]["2"]


def test_gap_norm_outside_the_computed_norms_is_an_error():
    models = {"a": ScaledStack(), "b": ScaledStack(scales=(1.0, 1.0, 1.0))}
    x, y = images(2, (1, 4, 4)), labels(2)
    attack = FixedPerturbation(torch.full((1, 1, 4, 4), 0.01))
    with pytest.raises(ValueError, match=r"gap_norm '2' .* norms 1, inf"):
        compare_psr(models, x, y, selection="kind:scale", attack=attack, norms=("1", "inf"))
    assert attack.calls == 0                                      # refused before any attack
    comp = compare_psr(models, x, y, selection="kind:scale", attack=attack, norms=("inf",),
                       gap_norm="linf")
    assert [g["norm"] for g in comp.gaps] == ["inf"]


def test_bad_selection_names_choices():
    with pytest.raises(SelectionError, match="conv"):
        psr(ConvStack(), images(2, (2, 3, 3)), labels(2), selection="conv9",
            attack=FixedPerturbation(torch.zeros(1)))
