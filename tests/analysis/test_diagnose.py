"""diagnose(): all analyses on several models, diagnosis.json, validation errors."""

import json

import pytest
import torch
from torch import nn

from robustlayers.analysis import ANALYSES, diagnose, parse_analyses
from robustlayers.layers import SelectionError

from .toys import TinyCNN, images, labels

FAST = dict(eps=8 / 255, psr_steps=1, crit_steps=1, stability_repeats=3, stability_batch=4, quant_steps=1,
            betas=(4, 8), epoch_batches=1, batch_size=16)


def _data(n=16):
    return images(n, (1, 8, 8)), labels(n)


def test_parse_analyses():
    assert parse_analyses("psr, filter_norms,preactivation") == ("psr", "filter-norms", "preact")
    assert parse_analyses(["quantisation", "psr", "psr"]) == ("quantization", "psr")
    with pytest.raises(ValueError, match="valid analyses: " + ", ".join(ANALYSES)):
        parse_analyses("psr,lipschitz")
    with pytest.raises(ValueError, match="no analysis"):
        parse_analyses(" , ")


def test_all_analyses_write_json(tmp_path):
    models = {"a": TinyCNN(seed=0), "b": TinyCNN(seed=1)}
    out = diagnose(models, _data(), n_examples=12, seed=4, out_dir=tmp_path, **FAST)
    saved = json.loads((tmp_path / "diagnosis.json").read_text())
    assert saved["analyses_run"] == list(ANALYSES)
    assert set(saved["analyses"]) == {"psr", "criticality", "filter_norms", "quantization",
                                      "preactivation"}
    assert saved["data"]["n_examples"] == 12 and saved["data"]["subset_of"] == 16
    assert saved["seed"] == 4 and saved["eps"]["over_255"] == 8.0
    assert saved["environment"]["torch"] == torch.__version__
    assert saved["summary"] == out["summary"] and saved["summary"]
    crit = saved["analyses"]["criticality"]["models"]["b"]
    assert crit["stability"]["repeats"] == 3 and crit["timing"]["ratio"] > 0
    assert crit["criticality"]["attack"]["steps"] == 1
    psr = saved["analyses"]["psr"]
    assert psr["models"]["a"]["selection"]["names"] == ["conv1", "conv2"]
    assert psr["models"]["a"]["n_images"] == 12 and psr["gaps"][0]["other"] == "b"
    rows = saved["models_info"]["a"]["layer_map"]
    assert [r["name"] for r in rows if r["selected"]] == ["conv1", "conv2"]
    assert (tmp_path / "report.html").exists()
    assert out["paths"]["report"] == str(tmp_path / "report.html")


def test_selection_subset_and_conv_filter(tmp_path):
    out = diagnose({"a": TinyCNN()}, _data(), analyses="psr,filter-norms,criticality",
                   selection="conv2 | fc", n_examples=8, **{**FAST, "stability_repeats": 0,
                                                            "epoch_batches": 0})
    assert out["analyses"]["psr"]["models"]["a"]["layers"] == ["conv2", "fc"]
    assert out["analyses"]["filter_norms"]["models"]["a"]["layers"] == ["conv2"]
    crit = out["analyses"]["criticality"]["models"]["a"]
    assert crit["criticality"]["layers"] == ["conv2", "fc"]
    assert crit["stability"] is None and crit["timing"] is None
    assert "paths" not in out                                # no out_dir: nothing written


class Wide(nn.Module):
    input_shape = (1, 10, 10)

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3)
        self.fc = nn.Linear(128, 3)

    def forward(self, x):
        return self.fc(self.conv(x).flatten(1))


def test_incompatible_models_and_bad_selection():
    with pytest.raises(ValueError, match="incompatible models"):
        diagnose({"a": TinyCNN(), "b": Wide()}, _data(), analyses="filter-norms")
    with pytest.raises(ValueError, match="data has"):
        diagnose({"b": Wide()}, _data(), analyses="filter-norms")
    with pytest.raises(SelectionError, match="conv1"):
        diagnose({"a": TinyCNN()}, _data(), analyses="psr", selection="conv7", eps=0.1)
    with pytest.raises(ValueError, match="no conv layers"):
        diagnose({"a": TinyCNN()}, _data(), analyses="psr,filter-norms", selection="fc",
                 eps=0.1)
    with pytest.raises(ValueError, match="at least one model"):
        diagnose({}, _data())


def test_bad_k_and_default_beta_fail_before_any_analysis_runs(monkeypatch):
    import importlib

    diagnose_module = importlib.import_module("robustlayers.analysis.diagnose")

    def ran(*_args, **_kwargs):
        raise AssertionError("an analysis ran before the options were checked")

    monkeypatch.setattr(diagnose_module, "compare_psr", ran)
    # the classifier fc is not a candidate: conv1, conv2
    with pytest.raises(ValueError, match="from 1 to 2, the number of candidate layers"):
        diagnose({"a": TinyCNN()}, _data(), analyses="psr,criticality", k=4, eps=0.1)
    with pytest.raises(ValueError, match="from 1 to 2"):
        diagnose({"a": TinyCNN()}, _data(), analyses="psr,criticality", k=3,
                 selection="conv1,conv2", eps=0.1)
    with pytest.raises(ValueError, match=r"default β 8 is not in the β grid \[4.0, 6.0\]"):
        diagnose({"a": TinyCNN()}, _data(), analyses="psr,quantization", betas=(4, 6),
                 eps=0.1)
    with pytest.raises(ValueError, match="diagnose needs eps"):
        diagnose({"a": TinyCNN()}, _data(), analyses="filter-norms,psr")


def test_default_k_fits_a_small_selection():
    out = diagnose({"a": TinyCNN()}, _data(), analyses="criticality", selection="conv1,conv2",
                   n_examples=8, **{**FAST, "epoch_batches": 0})
    crit = out["analyses"]["criticality"]["models"]["a"]
    assert crit["criticality"]["k"] == 2 and crit["stability"]["k"] == 2


def test_diagnosis_json_is_written_before_the_report(tmp_path, monkeypatch):
    import robustlayers.report as report

    def broken(_diagnosis, _out_dir):
        raise RuntimeError("plotting failed")

    monkeypatch.setattr(report, "write_report", broken)
    with pytest.raises(RuntimeError, match="plotting failed"):
        diagnose({"a": TinyCNN()}, _data(), analyses="filter-norms", out_dir=tmp_path)
    saved = json.loads((tmp_path / "diagnosis.json").read_text())
    assert saved["analyses"]["filter_norms"]["models"]["a"]["layers"] == ["conv1", "conv2"]
    assert saved["paths"] == {"diagnosis": str(tmp_path / "diagnosis.json"),
                              "report": str(tmp_path / "report.html")}
