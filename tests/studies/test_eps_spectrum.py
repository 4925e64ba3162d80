"""The eps-spectrum study (SPECTRUM): planner, analysis from synthetic results, claim verdicts,
option errors and one tiny end-to-end run."""

import json

import numpy as np
import pytest

from robustlayers.errors import ConfigError
from robustlayers.studies import get_study
from robustlayers.studies.base import Results, base_config
from robustlayers.studies.claims import FAILS, HOLDS, INCONCLUSIVE
from robustlayers.studies.eps_spectrum_analysis import analyse, paired_noise
from robustlayers.studies.eps_spectrum_eval import pack_bits, unpack_bits
from robustlayers.studies.tasks import run_path_of

STUDY = get_study("eps-spectrum")


def options(preset="demo", **values):
    return STUDY.build_options(preset, values)


# ------------------------------------------------------------------------------ planner

def test_plan_runs_configs_and_dependencies(tmp_path):
    opts = options(delta_list="0.05,0.1", seeds="0,1")
    tasks = {t.key: t for t in STUDY.plan(opts, tmp_path)}
    assert len(tasks) == 2 * 3 * 3          # seeds x eps x (train, robust, quant)
    natural = tasks["train/eps=0/s1"].spec
    assert natural == base_config(opts, tmp_path, 1, method="natural")   # shared with others
    shared = tasks["train/eps=0.1/s0"]
    assert run_path_of(shared) == run_path_of(  # the fmnist-study PGD-AT run of other studies
        type(shared)("x", "train", base_config(opts, tmp_path, 0)))
    high = tasks["train/eps=0.2/s0"].spec
    assert (high["method"], high["eps"], high["alpha"]) == ("pgd-at", 0.2, 0.05)
    assert "eval_alpha" not in high
    robust = tasks["robust/eps=0.2/s0"]
    assert robust.needs == ("train/eps=0.2/s0",)
    args = robust.spec["args"]
    assert args["run"] == str(run_path_of(tasks["train/eps=0.2/s0"]))
    assert args["deltas"] == [0.05, 0.1] and args["alpha_over_delta"] == 0.1
    quant = tasks["quant/eps=0/s1"].spec["args"]
    assert quant["deltas"] == [0.1] and quant["placements"] == ["conv0"]


def test_plan_paper_preset_and_options(tmp_path):
    opts = options("paper")
    tasks = {t.key: t for t in STUDY.plan(opts, tmp_path)}
    assert sum(t.kind == "train" for t in tasks.values()) == 13
    spec = tasks["train/eps=8/255/s0"].spec
    assert spec["alpha"] == pytest.approx(2 / 255)           # (eps/8)·2/255
    assert spec["eval_alpha"] == pytest.approx(0.8 / 255)    # eps/10
    assert spec["epochs"] == 100 and spec["milestones"] == [75, 90]
    assert tasks["robust/eps=8/255/s0"].spec["args"]["images"] is None
    cifar_c = tmp_path / "CIFAR-10-C"
    cifar_c.mkdir()
    opts = options("paper", corruption_dir=str(cifar_c), quant_images=0, eps_list="0,8/255")
    keys = [t.key for t in STUDY.plan(opts, tmp_path)]
    assert keys == ["train/eps=0/s0", "robust/eps=0/s0", "corrupt/eps=0/s0",
                    "train/eps=8/255/s0", "robust/eps=8/255/s0", "corrupt/eps=8/255/s0"]


@pytest.mark.parametrize("values, words", [
    ({"eps_list": "0,abc"}, "eps_list"),
    ({"eps_list": "0,0.1,0.1"}, "repeats"),
    ({"eps_list": " , "}, "at least one"),
    ({"delta_list": "-0.1"}, "delta_list: budget '-0.1'"),
    ({"checkpoint": "first"}, "epoch-N"),
    ({"alpha_over_eps": 2.0}, "(0, 1]"),
    ({"quant_betas": "0"}, "quant_betas"),
    ({"quant_deltas": "0"}, "quant_deltas"),
    ({"eval_images": 0}, "eval_images"),
    ({"corruption_dir": "/nowhere"}, "CIFAR-10"),
])
def test_bad_options_name_the_problem(values, words):
    with pytest.raises(ConfigError, match=words.replace("(", r"\(").replace("]", r"\]")):
        options(**values)


@pytest.mark.parametrize("values, words", [
    ({"filter_layers": "kind:bogus"}, "filter_layers 'kind:bogus'.*kinds are: bn, conv"),
    ({"filter_layers": "all"}, "not convolutions"),
    ({"quant_placements": "conv0,layer9"}, "quant_placements 'layer9'.*closest: layer2"),
])
def test_bad_layers_are_refused_at_planning(tmp_path, values, words):
    with pytest.raises(ConfigError, match=words):
        STUDY.plan(options(**values), tmp_path)


# ------------------------------------------------------------------------------ synthetic results

def robust_record(errors, n=1000, norms=(0.5, 0.4, 0.1, 0.1), se=0.001):
    """A robust_errors answer: ``errors`` maps δ -> error; the first correct examples are the
    correct ones (so two models' outcomes are nested)."""
    points = []
    for delta, error in errors.items():
        correct = np.zeros(n, dtype=bool)
        correct[:round((1 - error) * n)] = True
        import torch
        points.append({"delta": delta, "accuracy": 1 - error, "error": error,
                       "correct": pack_bits(torch.from_numpy(correct))})
    fn = {"layers": ["c1", "c2", "c3", "c4"], "mean": list(norms), "se": [se] * 4,
          "first_two_over_rest": (norms[0] + norms[1]) / (norms[2] + norms[3])}
    return {"source": {"n_examples": n}, "points": points, "filter_norms": fn,
            "filter_norms_at_init": dict(fn, first_two_over_rest=2.8)}


def quant_record(base, transfer, bpda, n=500):
    key = "25.5/255"
    return {"grid": {"default_beta": 8.0, "n_examples": n,
                     "eps_grid": [{"key": key, "value": 0.1}],
                     "baseline": {"pgd": {key: base}},
                     "cells": [{"placement": "conv0", "beta": 8.0, "transfer": {key: transfer},
                                "bpda": {key: bpda}}]}}


class FakeResults(Results):
    def __init__(self, tasks, evaluations, finals=None):
        super().__init__(tasks, {k: {"status": "done"} for k in evaluations})
        self.evaluations, self.finals = evaluations, finals or {}

    def final(self, key):
        return self.finals.get(key)

    def evaluation(self, key):
        return self.evaluations.get(key) if self.ok(key) else None


EPS = ("0", "0.1", "0.2", "0.3")
SHAPED = {  # error per eps at delta 0.05 and 0.1: minimum above delta, largest eps worse
    "0": {0.05: 0.90, 0.1: 0.99}, "0.1": {0.05: 0.30, 0.1: 0.50},
    "0.2": {0.05: 0.35, 0.1: 0.40}, "0.3": {0.05: 0.45, 0.1: 0.48}}


def synthetic(errors, *, n=1000, norms=None, quant=None, drop=(), deltas="0.05,0.1"):
    opts = options(eps_list=",".join(EPS), delta_list=deltas, quant_deltas="0.1")
    tasks = STUDY.plan(opts, "/tmp/unused-runs")
    evaluations = {}
    for label in EPS:
        kw = {} if norms is None else {"norms": norms[label]}
        evaluations[f"robust/eps={label}/s0"] = robust_record(errors[label], n=n, **kw)
        evaluations[f"quant/eps={label}/s0"] = quant_record(*(quant[label] if quant else
                                                              (0.5, 0.5, 0.5)))
    for key in drop:
        evaluations.pop(key)
    return opts, FakeResults(tasks, evaluations)


def claims_of(record):
    return {c["id"]: c for c in record["claims"]}


def test_analysis_reproduces_the_hand_made_tables():
    opts, results = synthetic(SHAPED)
    record = analyse(opts, results)
    tables = {t["name"]: t for t in record["tables"]}
    assert tables["robust-error"]["columns"] == ["ε \\ δ", "0.05", "0.1"]
    assert tables["robust-error"]["rows"] == [["0", 90.0, 99.0], ["0.1", 30.0, 50.0],
                                              ["0.2", 35.0, 40.0], ["0.3", 45.0, 48.0]]
    star = tables["eps-star"]["rows"]
    assert [r[:4] for r in star] == [["0.05", "0.1", 0.05, 30.0], ["0.1", "0.2", 0.1, 40.0]]
    assert [r[-1] for r in star] == [HOLDS, HOLDS]
    figure = next(f for f in record["figures"] if f["name"] == "robust-error")
    assert figure["x_ticks"] == list(EPS) and figure["series"][1]["y"] == [99.0, 50.0, 40.0, 48.0]
    assert tables["quantisation-transfer"]["rows"][0][:3] == ["0.1", "none", None]


def test_collapsed_runs_are_marked_not_dropped():
    opts, results = synthetic(SHAPED)
    results.finals["train/eps=0.3/s0"] = {"collapsed": True, "last": {"clean_acc": 0.1}}
    results.outcomes["train/eps=0.3/s0"] = {"status": "done"}
    record = analyse(opts, results)
    rows = next(t for t in record["tables"] if t["name"] == "robust-error")["rows"]
    assert rows[-1] == ["0.3 (collapsed)", 45.0, 48.0]
    assert any("Collapsed runs" in note and "ε = 0.3" in note for note in record["notes"])


def test_overdesign_claims_hold_fail_and_are_inconclusive():
    verdict = claims_of(analyse(*synthetic(SHAPED)))
    assert verdict["overdesign"]["verdict"] == HOLDS
    assert verdict["not-far-above"]["verdict"] == HOLDS
    # robust error lowest at eps <= delta, and growing with eps above it: both fail
    below_wins = {"0": {0.05: 0.2, 0.1: 0.3}, "0.1": {0.05: 0.25, 0.1: 0.35},
                  "0.2": {0.05: 0.4, 0.1: 0.5}, "0.3": {0.05: 0.22, 0.1: 0.45}}
    verdict = claims_of(analyse(*synthetic(below_wins)))
    assert verdict["overdesign"]["verdict"] == FAILS
    assert verdict["not-far-above"]["verdict"] == FAILS
    # one example apart on 200 images: the argmin is not resolved
    close = {"0": {0.05: 0.5, 0.1: 0.6}, "0.1": {0.05: 0.3, 0.1: 0.400},
             "0.2": {0.05: 0.2, 0.1: 0.395}, "0.3": {0.05: 0.4, 0.1: 0.6}}
    verdict = claims_of(analyse(*synthetic(close, n=200)))
    assert verdict["overdesign"]["verdict"] == INCONCLUSIVE
    case = verdict["overdesign"]["measured"]["overdesign δ=0.1"]
    assert case["difference"] == pytest.approx(0.005)
    assert case["noise"] == pytest.approx(2 * np.sqrt(1 / 200 / 200))   # variance floor 1/n
    # a missing evaluation makes the claims that need it inconclusive
    verdict = claims_of(analyse(*synthetic(SHAPED, drop=["robust/eps=0.2/s0"])))
    assert verdict["overdesign"]["verdict"] == INCONCLUSIVE


def test_a_delta_beyond_the_trained_range_is_not_tested():
    errors = {k: {**v, 0.4: 0.9} for k, v in SHAPED.items()}
    record = analyse(*synthetic(errors, deltas="0.05,0.1,0.4"))
    assert claims_of(record)["overdesign"]["verdict"] == HOLDS
    assert set(claims_of(record)["overdesign"]["measured"]) == {"overdesign δ=0.05",
                                                                "overdesign δ=0.1"}
    star = next(t for t in record["tables"] if t["name"] == "eps-star")["rows"]
    assert star[-1][0] == "0.4" and star[-1][-1].startswith("not tested")


def test_filter_norm_claims():
    far_growing = {"0": (0.3, 0.2, 0.1, 0.1), "0.1": (0.5, 0.4, 0.1, 0.1),
                   "0.2": (0.6, 0.5, 0.1, 0.1), "0.3": (0.7, 0.6, 0.1, 0.1)}
    verdict = claims_of(analyse(*synthetic(SHAPED, norms=far_growing)))
    assert verdict["filters-first-two"]["verdict"] == HOLDS
    assert verdict["filters-grow"]["verdict"] == HOLDS
    flat = {k: (0.15, 0.15, 0.1, 0.1) for k in EPS}
    verdict = claims_of(analyse(*synthetic(SHAPED, norms=flat)))
    assert verdict["filters-first-two"]["verdict"] == FAILS     # 0.15 < 2 x 0.1
    assert verdict["filters-grow"]["verdict"] == INCONCLUSIVE   # equal within noise
    shrinking = {"0": (0.9, 0.8, 0.1, 0.1), "0.1": (0.5, 0.4, 0.1, 0.1),
                 "0.2": (0.5, 0.4, 0.1, 0.1), "0.3": (0.4, 0.3, 0.1, 0.1)}
    assert claims_of(analyse(*synthetic(SHAPED, norms=shrinking)))["filters-grow"]["verdict"] \
        == FAILS


def test_quantisation_and_corruption_claims():
    helps = {k: (0.40, 0.50, 0.41) for k in EPS}
    helps["0.2"] = (0.40, 0.55, 0.60)
    verdict = claims_of(analyse(*synthetic(SHAPED, quant=helps)))
    assert verdict["quantisation-transfer"]["verdict"] == HOLDS
    assert verdict["quantisation-bpda"]["verdict"] == HOLDS      # at eps 0.2 only: "some eps"
    hurts = {k: (0.50, 0.30, 0.49) for k in EPS}
    verdict = claims_of(analyse(*synthetic(SHAPED, quant=hurts)))
    assert verdict["quantisation-transfer"]["verdict"] == FAILS
    assert verdict["quantisation-bpda"]["verdict"] == INCONCLUSIVE
    corrupt = verdict["corruptions-low-eps"]
    assert corrupt["verdict"] == INCONCLUSIVE and "corruption_dir" in corrupt["rule"]


def test_paired_noise_and_bit_packing():
    a, b = np.array([1, 1, 0, 0], bool), np.array([1, 0, 1, 0], bool)
    assert paired_noise(a, b) == pytest.approx(2 * np.sqrt(0.5 / 4))
    assert paired_noise(a, a) == pytest.approx(2 * np.sqrt(1 / 4 / 4))   # floored at 1/n
    import torch
    bits = torch.tensor([True, False, True] * 7)
    assert unpack_bits(pack_bits(bits), 21).tolist() == bits.tolist()


# ------------------------------------------------------------------------------ end to end

def test_tiny_study_end_to_end(tmp_path):
    from robustlayers.studies import run

    record = run("eps-spectrum", "demo", out=tmp_path, quiet=True, log=lambda *a: None,
                 epochs=1, train_size=256, test_size=100, eval_size=100, eps_list="0,0.1",
                 delta_list="0,0.1", eval_images=100, attack_steps=3, quant_images=50)
    assert record["status"] == "finished"
    saved = json.loads((tmp_path / "study.json").read_text())
    tables = {t["name"]: t for t in saved["tables"]}
    rows = tables["robust-error"]["rows"]
    # one epoch on 256 images may collapse: such a row is kept and marked
    assert [r[0].split()[0] for r in rows] == ["0", "0.1"]
    assert all(0 <= v <= 100 for r in rows for v in r[1:])
    assert {c["id"] for c in saved["claims"]} >= {"overdesign", "filters-first-two",
                                                   "quantisation-bpda", "corruptions-low-eps"}
    assert tables["filter-norms"]["columns"] == ["ε", "layer1.0", "layer1.3", "layer2.0",
                                                 "layer2.3"]
    assert (tmp_path / "report.html").is_file()
