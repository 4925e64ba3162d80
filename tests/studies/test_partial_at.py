"""The partial-at study (EARLY: Bakiskan, Cekic & Madhow, "Early Layers Are More Important For
Adversarial Robustness"): cuts, planning, tables and figures from synthetic results, each claim's
verdict, bad options, and one tiny end-to-end run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from robustlayers.errors import ConfigError
from robustlayers.studies import partial_at as pa
from robustlayers.studies import partial_at_analysis as paa
from robustlayers.studies.claims import FAILS, HOLDS, INCONCLUSIVE
from robustlayers.studies.tasks import run_path_of
from robustlayers.train.runner import planned_run_path

SMALLCNN = ("layer1.0", "layer1.1", "layer1.3", "layer1.4", "layer2.0", "layer2.1", "layer2.3",
            "layer2.4", "head.1", "head.3")
LAYERS = ("c1", "b1", "c2", "b2", "c3", "b3", "c4", "fc")   # 8 synthetic layers


def options(**values):
    return pa.STUDY.build_options("quick", values)


# --- cuts, codes, layer counts ------------------------------------------------------------

def test_cuts_all_every_and_list_follow_the_layer_map():
    assert pa.layer_names(options()) == SMALLCNN
    assert pa.resolve_cuts("all", SMALLCNN) == list(range(10))
    assert pa.resolve_cuts("every:3", SMALLCNN) == [0, 3, 6, 9]
    assert pa.resolve_cuts("head.1, layer1.3,layer1.3", SMALLCNN) == [2, 8]
    with pytest.raises(ConfigError, match="'layer2.9' is not a layer.*did you mean"):
        pa.resolve_cuts("layer2.9", SMALLCNN)


@pytest.mark.parametrize("values, message", [
    ({"cuts": "every:0"}, "every:N needs a positive integer"),
    ({"cuts": " "}, "cuts is empty"),
    ({"codes": "A1N2,A1X2"}, "unknown code 'A1X2'.*valid: A1N2"),
    ({"codes": ","}, "codes is empty"),
    ({"seeds": "0,0"}, "distinct"),
])
def test_bad_options_are_refused_before_any_work(values, message):
    with pytest.raises(ConfigError, match=message):
        options(**values)


def test_bad_cut_name_and_empty_grid_are_refused_at_planning(tmp_path):
    with pytest.raises(ConfigError, match="not a layer of the model"):
        pa.plan(options(cuts="conv1"), tmp_path)
    with pytest.raises(ConfigError, match="no stage-2 run"):
        pa.plan(options(codes="A2N1", cuts="layer1.0"), tmp_path)


def test_codes_groups_and_spelling():
    assert options(codes="single,a1n2").code_list() == ["A1N2", "NsNr", "NsAr", "AsAr", "AsNr"]
    assert options(codes="all").code_list() == list(pa.SPLIT_CODES)


@pytest.mark.parametrize("code, cut, expected", [
    ("A1N2", 3, 3), ("N1A2", 3, 7), ("N2A1", 3, 7), ("A2N1", 3, 3), ("A1A2", 3, 10),
    ("A2A1", 5, 10), ("N1N2", 3, 0), ("N2N1", 0, 0), ("AsAr", 4, 10), ("NsAr", 4, 9),
    ("AsNr", 4, 1), ("NsNr", 4, 0)])
def test_adversarially_trained_layers(code, cut, expected):
    assert pa.adversarial_layers(code, cut, 10) == expected


# --- planning -------------------------------------------------------------------------------

def test_plan_runs_and_dependencies(tmp_path):
    opts = options(codes="A1N2,A2N1,NsAr", cuts="layer1.0,layer2.0", seeds="0,1")
    tasks = {t.key: t for t in pa.plan(opts, tmp_path)}
    per_seed = ["stage1/natural", "stage1/pgd-at", "A1N2/layer1.0", "A1N2/layer2.0",
                "A2N1/layer2.0", "NsAr/layer1.0", "NsAr/layer2.0"]   # A2N1 before layer 0: none
    assert sorted(tasks) == sorted(f"s{s}/{k}" for s in (0, 1) for k in per_seed)
    assert all(t.kind == "train" for t in tasks.values())     # two seeds: no loss evaluations
    for seed in (0, 1):
        nat, adv = tasks[f"s{seed}/stage1/natural"], tasks[f"s{seed}/stage1/pgd-at"]
        assert nat.spec["method"] == "natural" and adv.spec["method"] == "pgd-at"
        assert nat.needs == adv.needs == ()
        a1n2 = tasks[f"s{seed}/A1N2/layer2.0"]
        assert a1n2.needs == (adv.key,)
        assert a1n2.spec["init_from"] == f"{run_path_of(adv)}@last"
        assert a1n2.spec["method_args"] == {"code": "A1N2", "cut": "layer2.0"}
        assert a1n2.spec["seed"] == seed and a1n2.spec["epochs"] == nat.spec["epochs"]
        assert tasks[f"s{seed}/A2N1/layer2.0"].needs == (nat.key,)
        assert tasks[f"s{seed}/NsAr/layer1.0"].spec["method_args"] == {"code": "NsAr",
                                                                      "layer": "layer1.0"}
        assert tasks[f"s{seed}/NsAr/layer1.0"].needs == (adv.key,)


def test_one_seed_measures_the_loss_noise_of_the_loss_claims_runs(tmp_path):
    opts = options(codes="A1N2,N1N2,A1A2,N2A1", cuts="layer1.3,layer2.1,head.1")
    evals = {t.key: t for t in pa.plan(opts, tmp_path) if t.kind == "evaluate"}
    # middle cut: layer2.1 (5 of 10 before it); quarter: layer1.3 (2)
    assert sorted(evals) == sorted(f"loss-se/s0/{k}" for k in (
        "A1N2/layer2.1", "N1N2/layer2.1", "A1A2/layer2.1", "N2A1/layer2.1", "A1N2/layer1.3",
        "N1N2/layer1.3"))
    task = evals["loss-se/s0/A1N2/layer2.1"]
    assert task.needs == ("s0/A1N2/layer2.1",)
    assert task.spec["fn"] == "robustlayers.studies.partial_at:loss_spread"
    assert not [t for t in pa.plan(options(loss_noise=False), tmp_path) if t.kind == "evaluate"]


def test_demo_stage1_runs_are_the_shared_fmnist_study_runs(tmp_path):
    opts = pa.STUDY.build_options("demo")
    tasks = {t.key: t for t in pa.plan(opts, tmp_path)}
    from robustlayers.train.presets import preset_values

    for method in ("natural", "pgd-at"):
        shared = dict(preset_values("fmnist-study"), method=method, seed=0,
                      runs_root=str(tmp_path))
        assert run_path_of(tasks[f"s0/stage1/{method}"]) == planned_run_path(shared)
    assert sum(t.kind == "train" for t in tasks.values()) - 2 <= 4


# --- analysis from synthetic results -----------------------------------------------------------

class FakeResults:
    """Results with hand-made final numbers: ``finals[key] = (clean_loss, clean_acc,
    robust_loss, robust_acc)`` (a 5th item True marks a collapsed run); ``ses[key]`` the loss
    standard error of a loss-noise evaluation."""

    def __init__(self, finals: dict, ses: dict | None = None, n: int = 1000):
        self.finals, self.ses, self.n = finals, ses or {}, n
        self.tasks = dict.fromkeys(list(finals) + ["s0/missing"])

    def ok(self, key):
        return key in self.finals

    def final(self, key):
        if key not in self.finals:
            return None
        v = self.finals[key]
        last = dict(zip(("clean_loss", "clean_acc", "robust_loss", "robust_acc"), v[:4]))
        return {"last": last, "collapsed": len(v) > 4 and v[4], "n": self.n}

    def evaluation(self, key):
        key = key.removeprefix("loss-se/")
        return {"robust_loss_se": self.ses[key]} if key in self.ses else None


def fake_opts(codes, seeds="0"):
    return options(codes=codes, seeds=seeds)


def analyse(codes, values, seeds=(0,), ses=None, n=1000, layers=LAYERS):
    """values: {(code, cut): tuple or [tuple per seed]}; stage-1 with code N / A, cut None."""
    finals, cells = {}, []
    for (code, cut), v in values.items():
        per_seed = v if isinstance(v, list) else [v] * len(seeds)
        for seed, numbers in zip(seeds, per_seed):
            key = pa.stage1_key(seed, code) if cut is None else pa.stage2_key(seed, code,
                                                                              layers[cut])
            finals[key] = numbers
        if cut is not None:
            cells.append((code, cut))
    ses = {pa.stage2_key(0, c, layers[k]): s for (c, k), s in (ses or {}).items()}
    opts = fake_opts(",".join(codes), ",".join(map(str, seeds)))
    return paa.analyse(opts, FakeResults(finals, ses, n), layers, cells)


def test_tables_reproduce_hand_made_numbers_and_mark_collapse():
    record = analyse(["A1N2", "N1A2"], {
        ("N", None): (0.2, 0.9, 40.0, 0.0), ("A", None): (0.5, 0.8, 1.6, 0.45),
        ("A1N2", 2): (0.25, 0.88, 20.0, 0.05), ("A1N2", 6): (0.4, 0.85, 6.0, 0.3),
        ("N1A2", 2): (0.6, 0.78, 1.9, 0.40), ("N1A2", 6): (2.3, 0.1, 2.3, 0.1, True)})
    tables = {t["name"]: t for t in record["tables"]}
    assert tables["stage1"]["rows"] == [["natural (N)", 0.2, 0.9, 40.0, 0.0, ""],
                                        ["adversarial (A)", 0.5, 0.8, 1.6, 0.45, ""]]
    losses, accs = tables["later-losses"], tables["later-accuracies"]
    assert losses["columns"] == ["cut before", "layers before it", "clean N1A2", "clean A1N2",
                                 "adversarial N1A2", "adversarial A1N2", "collapsed"]
    assert losses["rows"] == [["c2", 2, 0.6, 0.25, 1.9, 20.0, ""],
                              ["c4", 6, 2.3, 0.4, 2.3, 6.0, "N1A2"]]
    assert accs["rows"][1] == ["c4", 6, 0.1, 0.85, 0.1, 0.3, "N1A2"]
    assert "N1A2 at c4" in " ".join(record["notes"])


def test_difference_figures_against_adversarial_layers():
    record = analyse(["A1N2", "A1A2", "N1N2", "N2A1"], {
        ("A1N2", 2): (0, 0, 20.0, 0.05), ("A1A2", 2): (0, 0, 2.0, 0.4),
        ("N1N2", 2): (0, 0, 40.0, 0.0), ("A1N2", 6): (0, 0, 5.0, 0.3),
        ("A1A2", 6): (0, 0, 1.5, 0.42, True), ("N1N2", 6): (0, 0, 38.0, 0.0),
        ("N2A1", 6): (0, 0, 30.0, 0.01)})
    figures = {f["name"]: f for f in record["figures"]}
    series = {s["label"]: s for s in figures["differences-loss"]["series"]}
    assert series["|A1A2 - A1N2|"]["x"] == [2, 6]             # A1N2's A layers = the cut
    assert series["|A1A2 - A1N2|"]["y"] == pytest.approx([18.0, 3.5])
    assert series["|N1N2 - A1N2|"]["y"] == pytest.approx([20.0, 33.0])
    assert "|N2N1 - N2A1|" not in series                       # N2N1 not run
    assert series["involves a collapsed run"] == {
        "label": "involves a collapsed run", "x": [6], "y": [pytest.approx(3.5)],
        "marker": "x", "linestyle": "none"}
    acc = {s["label"]: s for s in figures["differences-accuracy"]["series"]}
    assert acc["|N1N2 - A1N2|"]["y"] == pytest.approx([0.05, 0.3])


# --- claims -----------------------------------------------------------------------------------

def claims_of(codes, values, **kw):
    return {c["id"]: c for c in analyse(codes, values, **kw)["claims"]}


MIDDLE, QUARTER, DEEP = 4, 2, 6       # of the 8 synthetic layers, cuts 2, 4, 6


@pytest.mark.parametrize("early, late, verdict", [
    ((0.30, 0.35), (0.02, 0.20), HOLDS), ((0.02, 0.20), (0.30, 0.35), FAILS),
    ((0.30, 0.35), (0.29, 0.34), INCONCLUSIVE)])
def test_early_adversarial_layers_accuracy_claim(early, late, verdict):
    v = {("A1N2", MIDDLE): (0, 0, 5, early[0]), ("N2A1", MIDDLE): (0, 0, 9, late[0]),
         ("A2N1", MIDDLE): (0, 0, 2, early[1]), ("N1A2", MIDDLE): (0, 0, 2, late[1])}
    claim = claims_of(["A1N2", "N2A1", "A2N1", "N1A2"], v)["early-adversarial-layers-accuracy"]
    assert claim["verdict"] == verdict
    assert claim["measured"]["A1N2-vs-N2A1"]["A1N2"] == early[0]


@pytest.mark.parametrize("losses, se, verdict", [
    ((5.0, 30.0), 0.5, HOLDS), ((30.0, 5.0), 0.5, FAILS), ((5.0, 6.0), 1.0, INCONCLUSIVE),
    ((5.0, 30.0), None, INCONCLUSIVE)])
def test_early_adversarial_layers_loss_claim_uses_the_measured_loss_noise(losses, se, verdict):
    v = {("A1N2", MIDDLE): (0, 0, losses[0], 0.1), ("N2A1", MIDDLE): (0, 0, losses[1], 0.0)}
    ses = {} if se is None else {("A1N2", MIDDLE): se, ("N2A1", MIDDLE): se}
    claim = claims_of(["A1N2", "N2A1"], v, ses=ses)["early-adversarial-layers-loss"]
    assert claim["verdict"] == verdict


@pytest.mark.parametrize("a1a2, n1a2, verdict", [
    (0.40, 0.10, HOLDS), (0.10, 0.40, FAILS), (0.40, 0.39, INCONCLUSIVE)])
def test_natural_early_layers_claim_at_the_deepest_cut(a1a2, n1a2, verdict):
    v = {("A1A2", DEEP): (0, 0, 2, a1a2), ("N1A2", DEEP): (2.3, 0.1, 2.3, n1a2, True),
         ("A1A2", QUARTER): (0, 0, 2, 0.0), ("N1A2", QUARTER): (0, 0, 2, 0.9)}
    claim = claims_of(["A1A2", "N1A2"], v)["natural-early-layers-block-robustness"]
    assert claim["verdict"] == verdict
    assert claim["measured"]["N1A2 collapsed before"] == "c4"


@pytest.mark.parametrize("a1n2, verdict", [(8.0, HOLDS), (30.0, FAILS), (20.5, INCONCLUSIVE)])
def test_loss_gap_claim_with_two_seeds(a1n2, verdict):
    v = {("N1N2", MIDDLE): [(0, 0, 40.0, 0), (0, 0, 41.0, 0)],
         ("A1A2", MIDDLE): [(0, 0, 2.0, 0.4), (0, 0, 2.0, 0.4)],
         ("A1N2", MIDDLE): [(0, 0, a1n2, 0.1), (0, 0, a1n2 + 1.0, 0.1)]}
    claim = claims_of(["N1N2", "A1A2", "A1N2"], v, seeds=(0, 1))[
        "first-layers-close-most-of-the-loss-gap"]
    assert claim["verdict"] == verdict
    assert claim["measured"]["seeds"] == 2


@pytest.mark.parametrize("a1n2, verdict", [(20.0, HOLDS), (45.0, FAILS), (39.5, INCONCLUSIVE)])
def test_loss_shows_early_layers_claim(a1n2, verdict):
    v = {("A1N2", QUARTER): (0, 0, a1n2, 0.0), ("N1N2", QUARTER): (0, 0, 40.0, 0.0)}
    claim = claims_of(["A1N2", "N1N2"], v, ses={("A1N2", QUARTER): 0.5,
                                                ("N1N2", QUARTER): 0.5})["loss-shows-early-layers"]
    assert claim["verdict"] == verdict
    assert claim["measured"]["adversarial acc A1N2"] == 0.0


@pytest.mark.parametrize("early_drop, verdict", [(0.3, HOLDS), (0.0, FAILS), (0.05, INCONCLUSIVE)])
def test_single_layer_claim(early_drop, verdict):
    v = {}
    for cut in range(8):
        drop = early_drop if cut < 4 else 0.05
        v[("AsAr", cut)], v[("NsAr", cut)] = (0, 0, 2, 0.45), (0, 0, 3, 0.45 - drop)
    assert claims_of(["AsAr", "NsAr"], v)["early-single-layers-matter-more"]["verdict"] == verdict


def test_every_split_claim_holds_on_the_papers_own_resnet_numbers():
    """EARLY Tables 1, 3, 5, 7 (ResNet-18, 41 layers) at the cuts before layer2.0.conv1 (10
    layers before it), layer3.0.conv1 (20) and linear (40; N1A2 collapsed there)."""
    paper = {  # (code, cut): (adversarial loss, adversarial accuracy)
        ("N1N2", 10): (44.2159, 0.0), ("A1N2", 10): (19.7713, 0.0143),
        ("N1N2", 20): (57.0524, 0.0), ("N1A2", 20): (2.3927, 0.1745),
        ("A1A2", 20): (1.7731, 0.4725), ("A1N2", 20): (10.7359, 0.1247),
        ("N2A1", 20): (31.0587, 0.0), ("A2N1", 20): (1.9180, 0.2983),
        ("A1A2", 40): (1.6, 0.4806), ("N1A2", 40): (2.303, 0.0)}
    values = {key: (0.5, 0.1 if key == ("N1A2", 40) else 0.85, *v, key == ("N1A2", 40))
              for key, v in paper.items()}
    layers = tuple(f"layer{i}" for i in range(41))
    claims = claims_of(["N1N2", "N1A2", "A1A2", "A1N2", "N2A1", "A2N1"], values, n=10000,
                       layers=layers, ses=dict.fromkeys(paper, 0.05))
    assert {k: c["verdict"] for k, c in claims.items()} == {
        "early-adversarial-layers-accuracy": HOLDS, "early-adversarial-layers-loss": HOLDS,
        "natural-early-layers-block-robustness": HOLDS,
        "first-layers-close-most-of-the-loss-gap": HOLDS, "loss-shows-early-layers": HOLDS,
        "early-single-layers-matter-more": INCONCLUSIVE}
    assert claims["loss-shows-early-layers"]["threshold"].endswith(
        "(adversarial loss at the cut before layer10 (10 of 41 layers before it))")


def test_claims_without_their_runs_are_inconclusive():
    claims = claims_of(["A1N2"], {("A1N2", MIDDLE): (0, 0, 5, 0.2)})
    assert len(claims) == 6
    assert {c["verdict"] for c in claims.values()} == {INCONCLUSIVE}
    assert all(c["rule"].startswith("not measured") for c in claims.values())


# --- end to end -------------------------------------------------------------------------------

def test_tiny_study_end_to_end(tmp_path):
    from robustlayers.studies import run

    record = run("partial-at", "demo", out=tmp_path, quiet=True, log=lambda *_: None,
                 epochs=1, train_size=256, test_size=100, eval_size=100,
                 codes="A1N2,N1N2", cuts="layer2.1")
    assert record["status"] == "finished"
    assert sorted(record["outcomes"]) == sorted(
        ["s0/stage1/natural", "s0/stage1/pgd-at", "s0/A1N2/layer2.1", "s0/N1N2/layer2.1",
         "loss-se/s0/A1N2/layer2.1", "loss-se/s0/N1N2/layer2.1"])
    saved = json.loads((tmp_path / "study.json").read_text())
    later = {t["name"]: t for t in saved["tables"]}["later-losses"]
    run_dir = Path(record["outcomes"]["s0/A1N2/layer2.1"]["path"])
    final = json.loads((run_dir / "result.json").read_text())["final"]["last"]
    assert later["rows"][0][:2] == ["layer2.1", 5]
    assert later["rows"][0][-2] == pytest.approx(final["robust_loss"])
    spread = [json.loads(p.read_text())["result"] for p in (tmp_path / "evaluations").iterdir()
              if "A1N2" in p.name][0]
    assert spread["robust_loss"] == pytest.approx(final["robust_loss"], rel=1e-5)
    assert spread["n"] == 100 and spread["robust_loss_se"] > 0
    assert len(saved["claims"]) == 6 and (tmp_path / "report.html").is_file()
    assert any("PGD-10" in note and "100 test images" in note for note in saved["notes"])
