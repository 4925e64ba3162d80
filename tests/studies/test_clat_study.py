"""The clat study (Gopal et al., "Boosting Adversarial Robustness with CLAT: Criticality-Leveraged
Adversarial Training"): planning and dependencies, bad options, the tables from synthetic
results, each claim's verdicts, and one tiny end-to-end run."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from robustlayers.errors import ConfigError
from robustlayers.studies import clat, clat_analysis, clat_claims
from robustlayers.studies.base import base_config
from robustlayers.studies.claims import FAILS, HOLDS, INCONCLUSIVE
from robustlayers.studies.tasks import run_path_of


def options(preset="demo", **values):
    return clat.STUDY.build_options(preset, values)


# --- planning -------------------------------------------------------------------------------

def test_demo_plan_shares_the_fmnist_study_pgd_at_run(tmp_path):
    opts = options()
    tasks = {t.key: t for t in clat.plan(opts, tmp_path)}
    assert sorted(tasks) == ["base/s0", "baseline/s0", "clat/s0", "stability/s0"]
    base = tasks["base/s0"]
    assert base.spec == base_config(opts, tmp_path, 0)          # the shared PGD-AT run
    assert base.spec["method"] == "pgd-at" and base.spec["epochs"] == 4 and not base.needs
    start = f"{run_path_of(base)}@last"
    for name, method in (("baseline", "pgd-at"), ("clat", "clat")):
        spec = tasks[f"{name}/s0"].spec
        assert (spec["method"], spec["epochs"], spec["init_from"]) == (method, 2, start)
        assert tasks[f"{name}/s0"].needs == ("base/s0",)
        assert {k: v for k, v in spec.items() if k not in ("method", "epochs", "init_from",
                                                           "method_args")} == \
            {k: v for k, v in base.spec.items() if k not in ("method", "epochs")}
    assert "method_args" not in tasks["baseline/s0"].spec
    assert tasks["clat/s0"].spec["method_args"] == {"reselect_every": 1}
    stab = tasks["stability/s0"]
    assert stab.kind == "evaluate" and stab.needs == ("base/s0",)
    assert stab.spec["fn"] == clat.STABILITY_FN
    assert stab.spec["args"] == {"run": str(run_path_of(base)), "k": None, "repeats": 50,
                                 "batch_size": 10, "seed": 0}


def test_ablations_k_sweep_pretrain_axis_and_seeds(tmp_path):
    opts = options(ablations="random,fixed,fast", k_sweep="1,3", pretrain_epochs="2,4",
                   seeds="0,1", lam=0.5, stability_repeats=0)
    tasks = {t.key: t for t in clat.plan(opts, tmp_path)}
    names = ["base", "base-2", "baseline", "clat", "random", "fixed", "fast-at", "fast", "k=3",
             "clat-after-2"]        # k=1 is the main run, E=4 the main base
    assert sorted(tasks) == sorted(f"{n}/s{s}" for n in names for s in (0, 1))
    args = lambda n: tasks[f"{n}/s1"].spec.get("method_args")  # noqa: E731
    assert args("clat") == {"lam": 0.5, "reselect_every": 1}
    assert args("random") == {"lam": 0.5, "reselect_every": 1, "layers": "random"}
    assert args("fixed")["fixed"] is True and args("fast")["inner"] == "fgsm-rs"
    assert args("k=3")["k"] == 3 and tasks["fast-at/s1"].spec["method"] == "fast-at"
    assert tasks["base-2/s1"].spec["epochs"] == 2 and tasks["base-2/s1"].spec["seed"] == 1
    after = tasks["clat-after-2/s1"]
    assert after.spec["epochs"] == 4 and after.needs == ("base-2/s1",)    # 2 + 4 = 4 + 2
    assert after.spec["init_from"] == f"{run_path_of(tasks['base-2/s1'])}@last"
    assert tasks["random/s0"].needs == ("base/s0",)


@pytest.mark.parametrize("values, message", [
    ({"ablations": "random,biggest"}, "unknown clat ablation 'biggest'.*random, smallest"),
    ({"ablations": "random,random"}, "must not repeat"),
    ({"k_sweep": "1,two"}, "k_sweep must be comma-separated integers"),
    ({"k_sweep": "0"}, "k_sweep must list distinct integers >= 1"),
    ({"pretrain_epochs": "2,2"}, "distinct"),
    ({"finetune_epochs": 0}, "finetune_epochs must be an integer >= 1"),
    ({"lam": -1}, "lam"),
    ({"ablations": "fixed", "reselect_every": 2}, "fixed ablation needs CLAT to reselect"),
    ({"ablations": "fixed", "reselect_every": 10, "finetune_epochs": 10},
     "reselect_every \\(10\\) must be smaller than finetune_epochs"),
    ({"seeds": "0,0"}, "distinct"),
])
def test_bad_options_are_refused_before_any_work(values, message):
    with pytest.raises(ConfigError, match=message):
        options(**values)


def test_bad_plans_are_refused_at_planning(tmp_path):
    with pytest.raises(ConfigError, match="k=9 but smallcnn has only 5 candidate layers"):
        clat.plan(options(k_sweep="9"), tmp_path)
    with pytest.raises(ConfigError, match="pretrain_epochs 6 leaves no CLAT epochs.*total 6"):
        clat.plan(options(pretrain_epochs="6"), tmp_path)


# --- analysis from synthetic results --------------------------------------------------------

class FakeResults:
    """Hand-made runs: ``finals[name] = (clean_last, robust_last, clean_best, robust_best)``
    for seed 0 (a list of such tuples for several seeds); ``history[name]`` CLAT's
    reselections; ``stability`` the change rates per seed."""

    def __init__(self, opts, finals, history=None, stability=None, n=1000):
        self.opts, self.n, self.history = opts, n, history or {}
        self.finals = {}
        for name, values in finals.items():
            for seed, v in enumerate(values if isinstance(values, list) else [values]):
                self.finals[clat.key(name, seed)] = v
        self.stab = {clat.key("stability", s): r for s, r in enumerate(stability or [])}
        self.tasks = {t.key: t for t in clat.plan(opts, Path("/nonexistent"))}
        self.outcomes = {}

    def ok(self, key):
        return key in self.finals or key in self.stab

    def status(self, key):
        return "done" if self.ok(key) else "failed"

    def final(self, key):
        if key not in self.finals:
            return None
        cl, rl, cb, rb = self.finals[key]
        return {"best": {"epoch": 1, "clean_acc": cb, "robust_acc": rb},
                "last": {"epoch": 2, "clean_acc": cl, "robust_acc": rl}, "n": self.n,
                "collapsed": cl < 0.15, "attack": {"steps": 20, "eps": 0.1, "alpha": 0.01,
                                                   "norm": "linf"}}

    def run(self, key):
        if key not in self.finals:
            return None
        name = key.split("/")[0]
        history = self.history.get(name, [])
        return SimpleNamespace(result={"method": {"history": history},
                                       "params": {"total": 1000, "trainable": 1000}})

    def metrics(self, key):
        if key not in self.finals:
            return []
        return [{"epoch": 1, "test_robust_acc": 0.3, "test_clean_acc": 0.6},
                {"epoch": 2, "test_robust_acc": self.finals[key][1],
                 "test_clean_acc": self.finals[key][0]}]

    def evaluation(self, key):
        if key not in self.stab:
            return None
        return {"k": 1, "repeats": 100, "batch_size": 10, "modal_top_k": ["layer2.3"],
                "change_rate": self.stab[key], "frequency": {"layer2.3": 1 - self.stab[key],
                                                             "head.1": self.stab[key]}}


def _hist(share, *layers):
    return [{"epoch": e, "layers": [layer], "trainable_share": share,
             "trainable_params": int(share * 1000), "total_params": 1000}
            for e, layer in enumerate(layers)]


def test_variants_table_reproduces_hand_made_numbers():
    opts = options(ablations="random")
    res = FakeResults(opts, {"base": (0.70, 0.50, 0.70, 0.50),
                             "baseline": (0.72, 0.52, 0.73, 0.53),
                             "clat": (0.75, 0.56, 0.75, 0.57),
                             "random": (0.10, 0.05, 0.60, 0.40)},
                      history={"clat": _hist(0.04, "layer2.3", "layer1.3"),
                               "random": _hist(0.01, "layer1.0")}, stability=[0.02])
    out = clat_analysis.analyse(opts, res)
    table = {t["name"]: t for t in out["tables"]}["variants"]
    rows = {r[0]: dict(zip(table["columns"], r)) for r in table["rows"]}
    assert list(rows) == ["base", "baseline", "clat", "random"]
    assert rows["clat"] == {
        "variant": "clat", "what": "CLAT", "epochs (base + own)": "4 + 2", "seeds": 1,
        "layers trained": "layer2.3 / layer1.3", "trainable share": 0.04, "best epoch": "1",
        "clean best": 0.75, "robust best": 0.57, "clean last": 0.75, "robust last": 0.56,
        "collapsed": False, "status": "done"}
    assert rows["baseline"]["trainable share"] == 1.0 and rows["baseline"]["layers trained"] \
        == "all"
    assert rows["random"]["collapsed"] is True            # shown, not dropped
    assert "1000 test images" in table["caption"] and "PGD-20" in table["caption"]
    curves = {f["name"]: f for f in out["figures"]}["curves-robust"]
    series = {s["label"]: s for s in curves["series"]}
    assert series["clat"]["x"] == [5, 6] and series["clat"]["y"] == [0.3, 0.56]
    assert series["base"]["x"] == [1, 2]
    stab = {t["name"]: t for t in out["tables"]}["stability"]["rows"]
    assert stab == [[0, 1, 100, "layer2.3", 0.02, "layer2.3 0.98, head.1 0.02", "done"]]
    assert out["notes"] == []                   # CLAT changed its layer between reselections
    res.history["clat"] = _hist(0.04, "layer2.3", "layer2.3")
    assert clat_analysis.analyse(opts, res)["notes"] == [
        "seed 0: CLAT chose layer2.3 at each of its 2 reselections, so dynamic and fixed CLAT "
        "trained the same layers."]


def _claims(opts, res):
    return {c["id"]: c for c in clat_claims.claims(opts, res)}


def test_main_claims_hold_fail_and_are_inconclusive():
    opts = options(ablations="random,smallest")
    finals = {"baseline": (0.70, 0.50, 0.70, 0.50), "clat": (0.76, 0.56, 0.76, 0.56),
              "random": (0.70, 0.40, 0.70, 0.40), "smallest": (0.75, 0.555, 0.75, 0.555)}
    c = _claims(opts, FakeResults(opts, finals, history={"clat": _hist(0.05, "a")},
                                  stability=[0.0]))
    assert c["clat-robust"]["verdict"] == HOLDS and c["clat-clean"]["verdict"] == HOLDS
    assert c["clat-robust"]["measured"]["difference"] == pytest.approx(0.06)
    assert c["critical-vs-random"]["verdict"] == HOLDS
    assert c["critical-vs-smallest"]["verdict"] == INCONCLUSIVE        # 0.005 < noise
    assert c["trainable-share"]["verdict"] == HOLDS and c["stability"]["verdict"] == HOLDS
    finals.update(clat=(0.60, 0.40, 0.60, 0.40))
    c = _claims(opts, FakeResults(opts, finals, history={"clat": _hist(0.92, "head.1")},
                                  stability=[0.3]))
    assert c["clat-robust"]["verdict"] == FAILS and c["clat-clean"]["verdict"] == FAILS
    assert c["trainable-share"]["verdict"] == FAILS and c["stability"]["verdict"] == FAILS
    assert c["trainable-share"]["measured"]["share"] == 0.92
    del finals["clat"]
    c = _claims(opts, FakeResults(opts, finals, stability=[0.05]))
    for cid in ("clat-robust", "clat-clean", "critical-vs-random", "trainable-share"):
        assert c[cid]["verdict"] == INCONCLUSIVE and "not measured" in c[cid]["rule"]
    assert c["stability"]["verdict"] == INCONCLUSIVE                    # 0.05 within noise


def test_claims_use_the_seed_spread_with_two_seeds():
    opts = options(seeds="0,1", stability_repeats=0)
    res = FakeResults(opts, {"baseline": [(0.7, 0.50, 0.7, 0.5), (0.7, 0.50, 0.7, 0.5)],
                             "clat": [(0.7, 0.53, 0.7, 0.53), (0.7, 0.49, 0.7, 0.49)]})
    c = _claims(opts, res)
    assert c["clat-robust"]["verdict"] == INCONCLUSIVE       # +0.03 and -0.01: spread 0.04
    assert c["clat-robust"]["measured"]["seeds"] == 2 and "stability" not in c


def test_k_optimum_fixed_fast_and_pretrain_stage_claims():
    opts = options(ablations="fixed,fast", k_sweep="2,3", pretrain_epochs="2",
                   stability_repeats=0)
    finals = {"baseline": (0.70, 0.50, 0.7, 0.5), "clat": (0.76, 0.58, 0.76, 0.58),
              "fixed": (0.74, 0.50, 0.74, 0.50), "fast": (0.7, 0.45, 0.7, 0.45),
              "fast-at": (0.7, 0.52, 0.7, 0.52), "k=2": (0.72, 0.52, 0.7, 0.5),
              "k=3": (0.70, 0.50, 0.7, 0.5), "clat-after-2": (0.75, 0.56, 0.75, 0.56)}
    c = _claims(opts, FakeResults(opts, finals))
    assert c["k-optimum"]["verdict"] == HOLDS and c["k-optimum"]["measured"]["robust best k"] == 1
    assert c["dynamic-vs-fixed"]["verdict"] == HOLDS
    assert c["fast-vs-fast-at"]["verdict"] == FAILS
    assert c["pretrain-stages"]["verdict"] == HOLDS
    assert set(c["pretrain-stages"]["measured"]) == {
        "clat-robust_acc", "clat-clean_acc", "clat-after-2-robust_acc", "clat-after-2-clean_acc"}
    finals.update({"k=2": (0.85, 0.51, 0.85, 0.51), "clat-after-2": (0.60, 0.56, 0.6, 0.56)})
    c = _claims(opts, FakeResults(opts, finals))
    assert c["k-optimum"]["verdict"] == FAILS               # robust best k=1, clean best k=2
    assert c["pretrain-stages"]["verdict"] == FAILS          # clean 0.60 < 0.70 after 2 epochs
    finals.update({"k=2": (0.77, 0.575, 0.77, 0.575)})
    assert _claims(opts, FakeResults(opts, finals))["k-optimum"]["verdict"] == INCONCLUSIVE
    figures = {f["name"]: f for f in clat_analysis.analyse(opts, FakeResults(opts, finals))[
        "figures"]}
    assert figures["k-sweep"]["series"][0]["x"] == [1, 2, 3]
    assert figures["pretrain-epochs"]["series"][0] == {"label": "CLAT robust", "x": [2, 4],
                                                       "y": [0.56, 0.58]}


# --- one tiny run ---------------------------------------------------------------------------

def test_tiny_study_end_to_end(tmp_path):
    from robustlayers.studies import run

    record = run("clat", "demo", out=tmp_path, quiet=True, log=lambda *_: None, epochs=1,
                 train_size=256, test_size=100, eval_size=100, finetune_epochs=1,
                 stability_repeats=4)
    assert record["status"] == "finished"
    assert sorted(record["outcomes"]) == ["base/s0", "baseline/s0", "clat/s0", "stability/s0"]
    saved = json.loads((tmp_path / "study.json").read_text())
    rows = {r[0]: r for r in {t["name"]: t for t in saved["tables"]}["variants"]["rows"]}
    run_dir = Path(record["outcomes"]["clat/s0"]["path"])
    result = json.loads((run_dir / "result.json").read_text())
    assert rows["clat"][10] == result["final"]["last"]["robust_acc"]
    assert rows["clat"][5] == result["method"]["history"][0]["trainable_share"] < 1
    stab = json.loads(Path(record["outcomes"]["stability/s0"]["path"]).read_text())["result"]
    assert stab["repeats"] == 4 and stab["batch_size"] == 10 and stab["k"] == 1
    claims = {c["id"]: c for c in saved["claims"]}
    assert set(claims) == {"clat-robust", "clat-clean", "stability", "trainable-share"}
    assert claims["trainable-share"]["measured"]["share"] == rows["clat"][5]
    assert (tmp_path / "report.html").is_file()
