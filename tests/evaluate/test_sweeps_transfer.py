"""ε sweeps (monotone on a linear model) and the black-box transfer matrix (CLAT Tables 3–4)."""
import json

import pytest
import torch

from robustlayers.attacks import PGD, ThreatModel, describe_eps
from robustlayers.evaluate import (check_eps_monotone, check_transfer_matrix, clean_metrics,
                                   eps_sweep, evaluate_attack, transfer_matrix)

from .toys import Linear, linear_data


def pgd_factory(eps):
    return PGD(ThreatModel("linf", eps), steps=10, seed=0)


def test_eps_sweep_monotone_on_linear_model():
    model = Linear()
    x, y = linear_data(n=64, model=model)
    eps = [0.2, 0.0, 0.01, 0.05, 0.1]
    res = eps_sweep(model, x, y, pgd_factory, eps)
    assert res.eps == sorted(eps)
    assert res.accuracy[0] == clean_metrics(model, x, y)["accuracy"] == 1.0
    assert all(b <= a for a, b in zip(res.accuracy, res.accuracy[1:]))
    assert all(b >= a - 1e-6 for a, b in zip(res.loss, res.loss[1:]))  # loss rises with ε
    assert res.accuracy[-1] < 0.5
    assert res.configs[0]["name"] == "clean" and res.configs[2]["eps"] == 0.05
    d = res.to_dict()
    json.dumps(d)
    assert d["points"][4]["eps_over_255"] == pytest.approx(51.0)
    # the /255 form is the one every record writes (attacks.describe_eps): 8/255 reads as 8.0
    assert [p["eps_over_255"] for p in d["points"]] == \
        [describe_eps(e)["over_255"] for e in sorted(eps)]
    assert eps_sweep(model, x, y, pgd_factory, [8 / 255]).to_dict()["points"][0]["eps_over_255"] \
        == 8.0
    assert check_eps_monotone(res.eps, res.accuracy, res.n).passed


def test_transfer_matrix_diagonal_is_white_box():
    models = {f"m{i}": Linear(seed=i) for i in range(3)}
    x, _ = linear_data(n=48, model=models["m0"])
    y = torch.arange(48) % 3
    attack = PGD(ThreatModel("linf", 0.1), steps=5, seed=0)
    res = transfer_matrix(models, x, y, attack, batch_size=20)
    assert res.names == ["m0", "m1", "m2"]
    for name, model in models.items():
        white = evaluate_attack(model, attack, x, y, batch_size=20)
        assert res.white_box[name] == pytest.approx(white.accuracy)
        assert res.matrix[name][name] == pytest.approx(white.accuracy)
        assert res.clean[name]["accuracy"] == pytest.approx(clean_metrics(model, x, y)["accuracy"])
    assert set(res.matrix["m0"]) == {"m0", "m1", "m2"}
    d = res.to_dict()
    json.dumps(d)
    assert d["attack"]["steps"] == 5 and d["n"] == 48
    assert check_transfer_matrix(res).passed


def test_transfer_matrix_validation():
    x, y = linear_data(n=4)
    attack = PGD(ThreatModel("linf", 0.1), steps=1)
    with pytest.raises(ValueError, match="non-empty dict"):
        transfer_matrix({}, x, y, attack)
    with pytest.raises(ValueError, match="models\\['a'\\]"):
        transfer_matrix({"a": "not a model"}, x, y, attack)
