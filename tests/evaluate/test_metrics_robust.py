"""clean_metrics and evaluate_model against manual computation; worst case per example (SPEC §6)."""
import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from robustlayers.evaluate import (clean_metrics, eval_mode, evaluate_model,
                                   per_example_metrics)

from .toys import FirstPixel, FixedAttack, Linear, linear_data


def manual(model, x, y):
    with torch.no_grad():
        logits = model(x)
    return (logits.argmax(1) == y).float().mean().item(), F.cross_entropy(logits, y).item()


def test_clean_metrics_match_manual_and_batching():
    model = Linear()
    x, _ = linear_data(n=37)
    y = torch.arange(37) % 3
    acc, loss = manual(model, x, y)
    for bs in (1, 5, 256):
        out = clean_metrics(model, x, y, batch_size=bs)
        assert out["n"] == 37
        assert out["accuracy"] == pytest.approx(acc)
        assert out["loss"] == pytest.approx(loss, rel=1e-5)


def test_eval_mode_is_used_and_every_mode_restored():
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 3), nn.Dropout(0.9))
    model.train()
    model[1].eval()  # mixed modes must survive
    x, _ = linear_data(n=16)
    y = torch.zeros(16, dtype=torch.long)
    a = clean_metrics(model, x, y)
    b = clean_metrics(model, x, y)
    assert a == b  # dropout off in eval(), so deterministic
    assert model.training and model[2].training and not model[1].training
    with eval_mode(model):
        assert not any(m.training for m in model.modules())
    assert model[0].training and not model[1].training


def _flip_first_pixel(indices):
    """An attack that flips the first pixel (0.9 <-> 0.1) of the given example indices."""
    def fn(x):
        out = x.clone()
        out.view(len(x), -1)[indices, 0] = 1.0 - out.view(len(x), -1)[indices, 0]
        return out
    return fn


def test_evaluate_model_numbers_and_worst_case_is_per_example_and():
    model = FirstPixel()
    x = torch.full((6, 1, 2, 2), 0.5)
    x.view(6, -1)[:, 0] = torch.tensor([0.9, 0.9, 0.9, 0.9, 0.1, 0.1])
    y = torch.tensor([1, 1, 1, 1, 0, 1])  # example 5 is wrong on clean inputs
    a = FixedAttack(_flip_first_pixel([0]), name="a", config={"name": "a", "eps": 0.8})
    b = FixedAttack(_flip_first_pixel([1, 5]), name="b")  # 5 becomes *correct* under b
    res = evaluate_model(model, x, y, {"A": a, "B": b})

    clean_acc, clean_loss = manual(model, x, y)
    assert res.clean == {"accuracy": pytest.approx(clean_acc), "loss": pytest.approx(clean_loss),
                         "n": 6}
    assert res.clean_correct.tolist() == [True, True, True, True, True, False]
    xa, xb = a.fn(x), b.fn(x)
    for name, xadv in (("A", xa), ("B", xb)):
        acc, loss = manual(model, xadv, y)
        assert res.attacks[name].accuracy == pytest.approx(acc)
        assert res.attacks[name].loss == pytest.approx(loss, rel=1e-5)
    assert res.attacks["A"].correct.tolist() == [False, True, True, True, True, False]
    assert res.attacks["B"].correct.tolist() == [True, False, True, True, True, True]
    # robust only if correct on clean AND every attack: 0 falls to A, 1 to B, 5 is wrong clean
    assert res.worst_correct.tolist() == [False, False, True, True, True, False]
    assert res.worst_case["accuracy"] == pytest.approx(3 / 6)
    with torch.no_grad():
        losses = torch.stack([F.cross_entropy(model(v), y, reduction="none")
                              for v in (x, xa, xb)])
    assert torch.allclose(res.worst_losses, losses.max(0).values)
    assert res.worst_case["loss"] == pytest.approx(losses.max(0).values.mean().item(), rel=1e-5)
    assert res.attacks["A"].config == {"name": "a", "eps": 0.8}
    assert res.attacks["A"].max_perturbation["linf"] == pytest.approx(0.8)
    assert a.calls == 1


def test_seconds_time_the_attack_calls_only(monkeypatch):
    """``seconds`` is the wall-clock time spent inside the attack's batches: with a fake clock
    that only the attacks advance (A: 2 s per batch, B: 0.5 s), it is exactly their sum - clean
    evaluation and the metrics on the adversarial batch are not counted."""
    import types

    import robustlayers.evaluate.robust as robust

    clock = types.SimpleNamespace(now=100.0)
    monkeypatch.setattr(robust, "time", types.SimpleNamespace(perf_counter=lambda: clock.now))

    def slow(seconds):
        def fn(x):
            clock.now += seconds
            return x.clone()
        return fn

    model, (x, y) = Linear(), linear_data(n=10)
    res = evaluate_model(model, x, y, {"A": FixedAttack(slow(2.0), name="a"),
                                       "B": FixedAttack(slow(0.5), name="b")}, batch_size=4)
    assert res.attacks["A"].seconds == pytest.approx(3 * 2.0)  # 3 batches of at most 4
    assert res.attacks["B"].seconds == pytest.approx(3 * 0.5)
    assert res.to_dict()["attacks"]["A"]["seconds"] == pytest.approx(6.0)


def test_to_dict_is_json_and_per_example_optional():
    model = Linear()
    x, y = linear_data(n=10)
    res = evaluate_model(model, x, y, {"id": FixedAttack(lambda v: v, report={"flags": ["z"]})})
    d = res.to_dict()
    json.dumps(d)
    assert "correct" not in d["clean"] and "correct" not in d["attacks"]["id"]
    assert d["attacks"]["id"]["report"] == {"flags": ["z"]}
    full = res.to_dict(per_example=True)
    assert full["worst_case"]["correct"] == [True] * 10
    assert len(full["attacks"]["id"]["losses"]) == 10


def test_reports_merged_over_batches_and_train_mode_recorded():
    model = Linear()
    model.train()
    x, y = linear_data(n=10)
    att = FixedAttack(lambda v: v, report={"zero_grad_fraction": 0.5, "n": 4, "flags": ["f"]})
    res = evaluate_model(model, x, y, {"id": att}, batch_size=4)
    assert res.attacks["id"].report == {"zero_grad_fraction": 0.5, "n": 12, "flags": ["f"]}
    assert res.model_was_training and "" in res.training_modules
    assert model.training  # restored


@pytest.mark.parametrize("fn, match", [
    (lambda v: v + 2.0, r"outside \[0, 1\]"),
    (lambda v: v[:1], "shape"),
    (lambda v: v * float("nan"), "NaN"),
])
def test_bad_attack_output_raises(fn, match):
    x, y = linear_data(n=4)
    with pytest.raises(ValueError, match=match):
        evaluate_model(Linear(), x, y, {"bad": FixedAttack(fn)})


def test_real_pgd_lowers_accuracy_and_per_example_helper():
    from robustlayers.attacks import PGD, ThreatModel

    model = Linear()
    x, y = linear_data(n=32, model=model)
    res = evaluate_model(model, x, y, {"pgd": PGD(ThreatModel("linf", 0.2), steps=5)})
    assert res.clean["accuracy"] == 1.0
    assert res.attacks["pgd"].accuracy < 0.5
    assert res.attacks["pgd"].config["steps"] == 5
    assert res.attacks["pgd"].max_perturbation["linf"] <= 0.2 + 1e-6
    correct, losses = per_example_metrics(model, x, y)
    assert correct.all() and losses.shape == (32,)
