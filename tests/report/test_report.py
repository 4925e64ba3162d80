"""The HTML report of a two-model diagnosis: valid, self-contained, escaped, all sections."""

import json
from html.parser import HTMLParser

import pytest
import torch
from torch import nn

from robustlayers.analysis import diagnose
from robustlayers.report import SECTIONS, summarize, write_report

VOID = {"meta", "img", "br", "hr", "input", "link"}
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


@pytest.fixture(scope="module")
def diagnosed(tmp_path_factory):
    out = tmp_path_factory.mktemp("diag")
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(12, 1, 8, 8, generator=g), torch.randint(0, 3, (12,), generator=g)
    diagnosis = diagnose({EVIL: Tiny(0), "robust": Tiny(1)}, (x, y), n_examples=10, out_dir=out,
                         psr_steps=1, crit_steps=1, stability_repeats=3, stability_batch=4,
                         quant_steps=1, betas=(4, 8), epoch_batches=1, batch_size=16)
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
    assert len(checker.images) == 5
    assert all(src.startswith("data:image/png;base64,iVBORw0KGgo") for src in checker.images)
    for key in ("psr", "criticality", "filter_norms", "quantization", "preactivation"):
        png = out / f"{key}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "http://" not in page and "https://" not in page          # nothing external


def test_report_content(diagnosed):
    diagnosis, out = diagnosed
    page = (out / "report.html").read_text(encoding="utf-8")
    for needle in ("Summary", "Layer map", "20*log10(mean ratio)", "C_i (Eq. 3)",
                   "BPDA 8/255", "Versions", "conv1", diagnosis["environment"]["torch"]):
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
    assert checker.errors == [] and len(checker.images) == 1
    assert page.count("Not run in this diagnosis") == 4


def test_report_and_plots_are_replaced_atomically(diagnosed, tmp_path, monkeypatch):
    import os

    diagnosis, _ = diagnosed
    out = tmp_path / "atomic"
    write_report(diagnosis, out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert "report.html" in before and "psr.png" in before

    def disk_full(_fd):
        raise OSError("disk full")

    # every file goes through robustlayers.runs.atomic: a write that fails before its rename
    # leaves the previous files whole and no temporary file behind
    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(OSError, match="disk full"):
        write_report(dict(diagnosis, summary=["changed"]), out)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
