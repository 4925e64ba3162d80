"""The main job end to end on a tiny schedule: train both models, evaluate, diagnose, one study
on the shared runs, the report with its claims first."""

import json
import re
from pathlib import Path

from robustlayers.cli.main import main


def test_demo_runs_end_to_end_and_refuses_to_overwrite(tmp_path, capsys):
    out = tmp_path / "demo"
    argv = ["demo", "--out", str(out), "--epochs", "1", "--train-size", "256",
            "--eval-size", "64", "--diagnose-size", "40", "--studies", "layer-subsets"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "== Layer map of the small CNN" in printed and "head.3" in printed
    assert "pgd-20 acc" in printed and "natural" in printed and "pgd-at" in printed
    report = out / "diagnosis" / "report.html"
    assert f"diagnosis report: {report.resolve()}" in printed
    page = report.read_text()
    assert report.stat().st_size > 10_000 and "data:image/svg+xml;base64," in page
    assert "<pre" not in page and "<th>pgd-20</th>" in page and "<th>test robust (best)</th>" in page
    table = (out / "evaluation.txt").read_text()
    assert "pgd-20 acc" in table and "natural" in table and "pgd-at" in table
    assert table.splitlines()[1] in printed                   # the same table as printed
    records = json.loads((out / "evaluation.json").read_text())
    assert set(records["models"]) == {"natural", "pgd-at"} and records["n"] == 64
    assert records["models"]["pgd-at"]["attacks"]["pgd-20"]["config"]["steps"] == 20
    diagnosis = json.loads((out / "diagnosis" / "diagnosis.json").read_text())
    assert set(diagnosis["models_info"]) == {"natural", "pgd-at"}
    assert set(diagnosis["evaluation"]) == set(diagnosis["training"]) == {"natural", "pgd-at"}
    assert diagnosis["analyses_run"] == ["psr", "criticality", "filter-norms", "quantization",
                                         "preact"]
    assert diagnosis["data"]["n_examples"] == 40
    runs = dict(re.findall(r"^(natural|pgd-at) +trained in .* -> (\S+)", printed, re.M))
    assert set(runs) == {"natural", "pgd-at"}
    for method, path in runs.items():
        result = json.loads((Path(path) / "result.json").read_text())
        assert 0.0 <= result["clean_acc"] <= 1.0
    study = json.loads((out / "studies" / "layer-subsets" / "study.json").read_text())
    assert study["outcomes"]["AT/s0"]["status"] == "reused"
    assert study["outcomes"]["AT/s0"]["path"] == str(Path(runs["pgd-at"]).resolve())
    assert study["outcomes"]["fixed[3]/s0"]["status"] == "done"
    main_report = (out / "report.html").read_text()
    assert f"report: {(out / 'report.html').resolve()}" in printed
    first_claim = study["claims"][0]
    assert main_report.index("Claims and verdicts") < main_report.index(first_claim["claim"])
    assert first_claim["verdict"] in main_report and "diagnosis/report.html" in main_report
    assert main(argv) == 2
    assert "already holds a demo" in capsys.readouterr().err
