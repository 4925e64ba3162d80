"""The layer-subsets study (RAT): plan, analysis and claims on synthetic results, and one tiny
study run on the local and the Ray executor giving the same result."""

from __future__ import annotations

import pytest

from robustlayers.errors import ConfigError
from robustlayers.studies import get_study, layer_subsets
from robustlayers.studies.base import Results
from robustlayers.studies.runner import plan_study

STUDY = get_study("layer-subsets")


def test_quick_plan_covers_every_subset_of_the_small_cnn_stages_that_trains(tmp_path):
    """The small CNN's stages are all its blocks: fixing all three would train nothing, so
    "all" leaves that subset out and a list naming it is refused before any work."""
    opts = STUDY.build_options("quick")
    tasks = plan_study(STUDY, opts, tmp_path)
    assert [t.key for t in tasks] == ["AT/s0", "fixed[1]/s0", "fixed[2]/s0", "fixed[3]/s0",
                                      "fixed[1,2]/s0", "fixed[1,3]/s0", "fixed[2,3]/s0"]
    with pytest.raises(ConfigError, match="subset layer1\\+layer2\\+head fixes every parameter "
                                          "of smallcnn.*leave it out of --subsets"):
        plan_study(STUDY, STUDY.build_options("quick", {"subsets": "3;1+2+3"}), tmp_path)
    rat_lr = plan_study(STUDY, STUDY.build_options("quick", {"method": "rat-lr"}), tmp_path)
    assert rat_lr[-1].key == "rat-lr[1,2,3]/s0"  # a smaller learning rate everywhere still trains
    assert all(not t.needs for t in tasks)
    spec = {t.key: t.spec for t in tasks}
    assert "freeze" not in spec["AT/s0"]
    assert spec["fixed[1,3]/s0"]["freeze"] == "block:layer1,head"
    assert spec["fixed[2]/s0"]["epochs"] == 10 and spec["fixed[2]/s0"]["train_size"] == 2000


def test_rat_methods_regularise_the_subset_and_bad_subsets_are_refused(tmp_path):
    opts = STUDY.build_options("quick", {"method": "rat-wp", "subsets": "3;1+2", "seeds": "0,1"})
    tasks = plan_study(STUDY, opts, tmp_path)
    assert [t.key for t in tasks] == ["AT/s0", "rat-wp[3]/s0", "rat-wp[1,2]/s0", "AT/s1",
                                      "rat-wp[3]/s1", "rat-wp[1,2]/s1"]
    assert tasks[1].spec["method"] == "rat-wp"
    assert tasks[1].spec["method_args"] == {"layers": "block:head"}
    assert tasks[3].spec["seed"] == 1
    for bad, message in (("5", "neither a stage number 1..3"), ("1;1", "listed twice"),
                         ("layer9", "layer1, layer2, head")):
        with pytest.raises(ConfigError, match=message):
            plan_study(STUDY, STUDY.build_options("quick", {"subsets": bad}), tmp_path)
    with pytest.raises(ConfigError, match="method.*fixed, rat-lr, rat-wp"):
        STUDY.build_options("quick", {"method": "freeze"})


class FakeResults(Results):
    """Hand-made final numbers and curves by task key."""

    def __init__(self, tasks, finals, curves):
        super().__init__(tasks, {t.key: {"status": "done", "path": None} for t in tasks})
        self.finals, self.curves = finals, curves

    def final(self, key):
        return self.finals[key]

    def metrics(self, key):
        return [{"test_robust_acc": a, "train_eval_robust_acc": b} for a, b in self.curves[key]]


def _final(best, last, n=1000):
    return {"best": {"epoch": 3, "robust_acc": best, "clean_acc": 0.8},
            "last": {"epoch": 5, "robust_acc": last, "clean_acc": 0.75},
            "best_minus_last": {"robust_acc": best - last}, "n": n, "collapsed": False}


def _fixed_results(tmp_path, gaps_trained, gaps_fixed, train_first, train_last):
    tasks = plan_study(STUDY, STUDY.build_options("quick", {"subsets": "1;3"}), tmp_path)
    finals = {"AT/s0": _final(0.60, 0.60 - gaps_trained),
              "fixed[1]/s0": _final(0.58, 0.58 - gaps_trained),
              "fixed[3]/s0": _final(0.55, 0.55 - gaps_fixed)}
    curves = {"AT/s0": [(0.5, 0.6), (0.6, 0.7)], "fixed[1]/s0": [(0.5, 0.6), (0.55, train_first)],
              "fixed[3]/s0": [(0.5, 0.5), (0.5, train_last)]}
    return tasks, FakeResults(tasks, finals, curves)


def test_analysis_reproduces_the_hand_made_table_and_verdicts(tmp_path):
    opts = STUDY.build_options("quick", {"subsets": "1;3"})
    tasks, results = _fixed_results(tmp_path, 0.10, 0.01, 0.70, 0.55)
    out = layer_subsets.analyse(opts, results)
    rows = {r[0]: r for r in out["tables"][0]["rows"]}
    assert rows["fixed[3]"][3:10] == [3, 0.55, pytest.approx(0.54), pytest.approx(0.01), 0.75,
                                      0.55, False]
    assert [s["y"] for s in out["figures"][0]["series"]] == [[0.5, 0.6], [0.5, 0.55],
                                                             [0.5, 0.5]]
    verdicts = {c["id"]: c["verdict"] for c in out["claims"]}
    assert verdicts == {"RAT-1": "holds", "RAT-2": "holds"}
    # gap larger with the last stage fixed: does not hold; equal within noise: inconclusive
    _, results = _fixed_results(tmp_path, 0.01, 0.10, 0.55, 0.70)
    verdicts = {c["id"]: c["verdict"] for c in layer_subsets.analyse(opts, results)["claims"]}
    assert verdicts == {"RAT-1": "does not hold", "RAT-2": "does not hold"}
    _, results = _fixed_results(tmp_path, 0.03, 0.025, 0.60, 0.59)
    verdicts = {c["id"]: c["verdict"] for c in layer_subsets.analyse(opts, results)["claims"]}
    assert verdicts == {"RAT-1": "inconclusive", "RAT-2": "inconclusive"}


def test_rat_claims_compare_with_standard_at(tmp_path):
    opts = STUDY.build_options("quick", {"subsets": "3", "method": "rat-lr"})
    tasks = plan_study(STUDY, opts, tmp_path)
    finals = {"AT/s0": _final(0.60, 0.50), "rat-lr[3]/s0": _final(0.62, 0.61)}
    curves = {k: [(0.5, 0.5)] for k in finals}
    out = layer_subsets.analyse(opts, FakeResults(tasks, finals, curves))
    assert {c["id"]: c["verdict"] for c in out["claims"]} == {"RAT-3": "holds",
                                                             "RAT-4": "holds"}
    assert out["claims"][0]["measured"]["difference"] == pytest.approx(0.11)


TINY = dict(epochs=1, train_size=128, test_size=100, eval_size=50, subsets="3")


def test_local_and_ray_executors_give_the_same_study_result(tmp_path):
    ray = pytest.importorskip("ray")
    from robustlayers import studies

    local = studies.run("layer-subsets", "demo", out=tmp_path / "local", quiet=True,
                        log=lambda *_: None, **TINY)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        remote = studies.run("layer-subsets", "demo", out=tmp_path / "ray", executor="ray",
                             quiet=True, log=lambda *_: None, **TINY)
    finally:
        ray.shutdown()
    assert local["status"] == remote["status"] == "finished"
    assert {o["status"] for o in remote["outcomes"].values()} == {"done"}
    assert local["tables"] == remote["tables"]
    assert [c["verdict"] for c in local["claims"]] == [c["verdict"] for c in remote["claims"]]
    assert all(str(tmp_path / "ray" / "runs") in o["path"] for o in remote["outcomes"].values())
    again = studies.run("layer-subsets", "demo", out=tmp_path / "local", quiet=True,
                        log=lambda *_: None, **TINY)
    assert {o["status"] for o in again["outcomes"].values()} == {"reused"}
    assert again["tables"] == local["tables"]
    first, second = again["executions"]
    assert (first["done"], first["reused"], second["done"], second["reused"]) == (2, 0, 0, 2)
    assert first["wall_s"] == local["wall_s"]
