"""The HTML report of a two-model diagnosis: valid, self-contained, escaped, all sections."""

import json
from html.parser import HTMLParser

import pytest
import torch
from torch import nn

from robustlayers.analysis import diagnose
from robustlayers.report import SECTIONS, summarize, write_report

VOID = {"meta", "img", "br", "hr", "input", "link"}
FIGURES = ("psr", "psr_spread", "criticality", "filter_norms", "quantization", "preactivation",
           "training")
EVIL = "nat<script>alert(1)</script>&"


class Tiny(nn.Module):
    input_shape = (1, 8, 8)

    def __init__(self, seed):
        super().__init__()
        torch.manual_seed(seed)
        self.conv1 = nn.Conv2d(1, 4, 3, padding=1)
        self.act1 = nn.ReLU()
        self.conv2 = nn.Conv2d(4, 4, 3, padding=1)
        self.act2 = nn.ReLU()
        self.fc = nn.Linear(256, 3)

    def forward(self, x):
        return self.fc(self.act2(self.conv2(self.act1(self.conv1(x)))).flatten(1))


class Checker(HTMLParser):
    """Collects tags, ids, image sources and text; records any imbalance."""

    def __init__(self):
        super().__init__()
        self.stack, self.errors, self.ids, self.images, self.text = [], [], set(), [], []
        self.scripts = 0

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if "id" in attrs:
            self.ids.add(attrs["id"])
        if tag == "img":
            self.images.append(attrs.get("src", ""))
        if tag == "script":
            self.scripts += 1
        if tag not in VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        if tag in VOID:
            return
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"unexpected </{tag}>, open: {self.stack[-3:]}")
        else:
            self.stack.pop()

    def handle_data(self, data):
        self.text.append(data)


EVALUATION = {
    EVIL: {"n": 10, "clean": {"accuracy": 0.9, "loss": 0.3, "n": 10},
           "attacks": {"fgsm": {"accuracy": 0.2, "loss": 2.1, "config": {"name": "fgsm"}},
                       "pgd-20": {"accuracy": 0.0, "loss": 4.0,
                                  "config": {"name": "pgd", "eps": 0.1, "steps": 20}},
                       "autoattack": {"accuracy": 0.0, "loss": 5.0,
                                      "config": {"name": "autoattack", "version": "standard"}}},
           "worst_case": {"accuracy": 0.0, "loss": 5.0, "n": 10}},
    "robust": {"n": 10, "clean": {"accuracy": 0.8, "loss": 0.5, "n": 10},
               "attacks": {"fgsm": {"accuracy": 0.6, "loss": 0.9, "config": {"name": "fgsm"}},
                           "pgd-20": {"accuracy": 0.5, "loss": 1.1, "config": {"name": "pgd"}},
                           "autoattack": {"accuracy": 0.45, "loss": 1.2,
                                          "config": {"name": "autoattack"}}},
               "worst_case": {"accuracy": 0.44, "loss": 1.3, "n": 10}},
}
TRAINING = {
    EVIL: [{"epoch": e, "train_loss": 2 - 0.3 * e, "test_clean_acc": 0.5 + 0.1 * e,
            "test_robust_acc": None, "best": e == 3} for e in (1, 2, 3)],
    "robust": [{"epoch": e, "train_loss": 2.2 - 0.2 * e, "train_adv_acc": 0.2 + 0.1 * e,
                "test_clean_acc": 0.4 + 0.1 * e, "test_robust_acc": [0.2, 0.35, 0.3][e - 1],
                "best": e == 2} for e in (1, 2, 3)],
}


@pytest.fixture(scope="module")
def diagnosed(tmp_path_factory):
    out = tmp_path_factory.mktemp("diag")
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(12, 1, 8, 8, generator=g), torch.randint(0, 3, (12,), generator=g)
    diagnosis = diagnose({EVIL: Tiny(0), "robust": Tiny(1)}, (x, y), n_examples=10, out_dir=out,
                         psr_steps=1, crit_steps=1, stability_repeats=3, stability_batch=4,
                         quant_steps=1, betas=(4, 8), epoch_batches=1, batch_size=16,
                         eps=8 / 255, evaluation=EVALUATION, training=TRAINING)
    return diagnosis, out


def test_report_is_valid_self_contained_html(diagnosed):
    diagnosis, out = diagnosed
    page = (out / "report.html").read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>")
    checker = Checker()
    checker.feed(page)
    checker.close()
    assert checker.errors == [] and checker.stack == []
    assert checker.scripts == 0                                   # label was escaped
    assert "&lt;script&gt;alert(1)&lt;/script&gt;&amp;" in page
    assert EVIL in "".join(checker.text)
    assert {key for key, _ in SECTIONS} <= checker.ids
    assert len(checker.images) == 7
    assert all(src.startswith("data:image/svg+xml;base64,") for src in checker.images)
    for key in FIGURES:
        assert (out / f"{key}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert b"<svg" in (out / f"{key}.svg").read_bytes()[:500]
        assert f'href="{key}.png"' in page
    assert "http://" not in page and "https://" not in page          # nothing external


def test_report_content(diagnosed):
    diagnosis, out = diagnosed
    page = (out / "report.html").read_text(encoding="utf-8")
    for needle in ("Summary", "Layer map", "20*log10(mean ratio)", "C_i (Eq. 3)",
                   "BPDA 8/255", "Versions", "conv1", diagnosis["environment"]["torch"],
                   "(C₁ = W₁)", "p = ∞", '<a href="diagnosis.json">'):
        assert needle in page
    text = " ".join(summarize(diagnosis))
    assert "most critical layers" in text and "best quantisation placement" in text
    assert "PSR" in text and "filter norm" in text and "pre-activation" in text


def test_report_renders_again_from_saved_json_and_partial(diagnosed, tmp_path):
    diagnosis, out = diagnosed
    saved = json.loads((out / "diagnosis.json").read_text())
    path = write_report(saved, tmp_path / "again")
    assert path.name == "report.html" and path.exists()
    partial = dict(saved, analyses={"filter_norms": saved["analyses"]["filter_norms"]},
                   summary=None)
    page = write_report(partial, tmp_path / "partial").read_text()
    checker = Checker()
    checker.feed(page)
    assert checker.errors == [] and len(checker.images) == 2    # filter norms + training
    assert page.count("Not run in this diagnosis") == 4


def test_report_and_plots_are_replaced_atomically(diagnosed, tmp_path, monkeypatch):
    import os

    diagnosis, _ = diagnosed
    out = tmp_path / "atomic"
    write_report(diagnosis, out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert "report.html" in before and "psr.png" in before and "psr.svg" in before

    def disk_full(_fd):
        raise OSError("disk full")

    # every file goes through robustlayers.runs.atomic: a write that fails before its rename
    # leaves the previous files whole and no temporary file behind
    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(OSError, match="disk full"):
        write_report(dict(diagnosis, summary=["changed"]), out)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_no_raw_json_in_the_page(diagnosed):
    _, out = diagnosed
    page = (out / "report.html").read_text(encoding="utf-8")
    assert "<pre" not in page
    assert '{&quot;' not in page and "{'" not in page and '{"' not in page


def test_evaluation_and_training_tables(diagnosed):
    _, out = diagnosed
    page = (out / "report.html").read_text(encoding="utf-8")
    for needle in ("<th>clean</th>", "<th>fgsm</th>", "<th>pgd-20</th>", "<th>autoattack</th>",
                   "<th>worst case</th>", "45.00% (1.200)", "pgd: eps=0.1", "steps=20",
                   "<th>test robust (best)</th>", "35.00%", "30.00%"):
        assert needle in page, needle


def test_layer_map_shows_every_module_an_analysis_used(diagnosed):
    diagnosis, out = diagnosed
    page = (out / "report.html").read_text(encoding="utf-8")
    preact = diagnosis["analyses"]["preactivation"]["models"]["robust"]["module"]
    assert preact == "act2" and "module (not a layer)" in page
    assert "✓ top-" in page and "input (conv0)" not in page


def _axes_of(fig):
    return [ax for ax in fig.axes if ax.get_visible()]


@pytest.mark.parametrize("key", FIGURES)
def test_every_figure_has_labelled_axes_and_a_legend(diagnosed, key):
    import robustlayers.report as report

    diagnosis, out = diagnosed
    make = getattr(report, f"figure_{key}")
    section = (diagnosis["training"] if key == "training" else
               diagnosis["analyses"]["psr" if key == "psr_spread" else key])
    fig = make(section)
    for ax in _axes_of(fig):
        if ax.get_label() == "<colorbar>":
            assert ax.get_ylabel() == "accuracy (%)"
            continue
        assert ax.get_xlabel() and ax.get_ylabel(), (key, ax.get_title())
    if key != "quantization":            # heatmaps: one panel per model, titled with it
        legends = list(fig.legends) + [ax.get_legend() for ax in fig.axes if ax.get_legend()]
        texts = {t.get_text() for legend in legends for t in legend.get_texts()}
        assert {"robust"} <= {t.split(" (")[0] for t in texts}, (key, texts)
    svg = (out / f"{key}.svg").read_text(encoding="utf-8")
    for ax in _axes_of(fig):
        if ax.get_label() != "<colorbar>":
            assert ax.get_ylabel() in svg.replace("&gt;", ">").replace("&lt;", "<")


def test_psr_figure_has_three_norms_and_the_delta_curve(diagnosed):
    from robustlayers.report.plots import figure_psr

    diagnosis, _ = diagnosed
    fig = figure_psr(diagnosis["analyses"]["psr"])
    titles = [ax.get_title() for ax in _axes_of(fig)]
    assert titles[:3] == ["mean PSR, p = 1", "mean PSR, p = 2", "mean PSR, p = ∞"]
    assert titles[3].startswith("ΔPSR") and _axes_of(fig)[3].get_ylabel() == "ΔPSR (dB)"
    ylims = {ax.get_xlim() for ax in _axes_of(fig)}
    assert len(ylims) == 1                                           # shared layer axis
