"""``robustlayers study``: listing, the plan of a dry run, and clear errors before any work."""

import json

import pytest

from robustlayers.cli.main import main


def test_list_and_dry_run_print_the_plan_without_running(tmp_path, capsys):
    assert main(["study", "--list"]) == 0
    assert "layer-subsets" in capsys.readouterr().out
    out = tmp_path / "s"
    assert main(["study", "layer-subsets", "--preset", "quick", "--subsets", "3;1+2",
                 "--out", str(out), "--dry-run"]) == 0
    printed = capsys.readouterr().out
    assert "3 training runs, 0 evaluations" in printed
    assert "fixed[3]/s0" in printed and "fixed[1,2]/s0" in printed
    assert "estimated training cost on this machine" in printed
    assert not out.exists()


def test_dry_run_json_record_carries_the_plan(tmp_path, capsys):
    assert main(["study", "layer-subsets", "--subsets", "3", "--out", str(tmp_path / "s"),
                 "--dry-run", "--json"]) == 0
    printed = capsys.readouterr().out
    record = json.loads(printed[printed.index("{"):])
    assert record["status"] == "planned" and record["preset"] == "quick"
    assert [p["key"] for p in record["plan"]] == ["AT/s0", "fixed[3]/s0"]
    assert record["plan"][1]["spec"]["freeze"] == "block:head"


@pytest.mark.parametrize("argv, message", [
    (["study", "layer-subsetz"], "invalid choice: 'layer-subsetz'"),
    (["study"], "name a study"),
    (["study", "layer-subsets", "--subsets", "9"], "neither a stage number 1..3"),
    (["study", "layer-subsets", "--method", "frozen"], "valid choices: fixed, rat-lr, rat-wp"),
    (["study", "layer-subsets", "--jobs", "0"], "jobs must be a positive integer"),
    (["study", "layer-subsets", "--epochs", "two"], "epochs must be a number"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, argv, message):
    code = None
    try:
        code = main(argv + ["--out", str(tmp_path / "s")] if len(argv) > 1 else argv)
    except SystemExit as exit_:
        code = exit_.code
    assert code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "s").exists()


def test_resume_needs_a_study_folder(tmp_path, capsys):
    assert main(["study", "--resume", str(tmp_path)]) == 2
    assert "holds no study (no study.json)" in capsys.readouterr().err
