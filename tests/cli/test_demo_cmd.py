"""The main job end to end on a tiny schedule: train both models, evaluate, diagnose."""

import json

from robustlayers.cli.main import main


def test_demo_runs_end_to_end_and_refuses_to_overwrite(tmp_path, capsys):
    out = tmp_path / "demo"
    argv = ["demo", "--out", str(out), "--epochs", "1", "--train-size", "256",
            "--eval-size", "64", "--diagnose-size", "40"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "== Layer map of the small CNN" in printed and "head.3" in printed
    assert "pgd-20 acc" in printed and "natural" in printed and "pgd-at" in printed
    report = out / "diagnosis" / "report.html"
    assert f"report: {report.resolve()}" in printed
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
    for method in ("natural", "pgd-at"):
        result = json.loads((out / "runs" / method / "result.json").read_text())
        assert 0.0 <= result["clean_acc"] <= 1.0
    assert main(argv) == 2
    assert "already holds a demo" in capsys.readouterr().err
