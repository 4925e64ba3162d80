"""``robustlayers runs list|show|compare`` through the real dispatcher."""

import json

import pytest

from robustlayers.cli.main import main
from robustlayers.runs import RunDir, RunIndex


def make_run(root, name, *, method="pgd_at", seed=0, robust=(0.30, 0.45, 0.40), finished=False):
    run = RunDir.create(root / name, {"model": "smallcnn", "dataset": "fashion-mnist",
                                      "method": method, "seed": seed, "model_kwargs": {},
                                      "epochs": len(robust)})
    for epoch, acc in enumerate(robust, start=1):
        run.append_metrics({"epoch": epoch, "lr": 0.1, "train_loss": 1.0 / epoch,
                            "test_clean_acc": 0.8, "test_robust_acc": acc, "seconds": 1.0})
    if finished:
        run.write_result({"robust_acc_last": robust[-1]})
    return run


@pytest.fixture
def root(tmp_path, monkeypatch):
    root = tmp_path / "runs"
    make_run(root, "pgd-s0", finished=True)
    make_run(root, "trades-s1", method="trades", seed=1, robust=(0.2, 0.5))
    monkeypatch.setenv("ROBUSTLAYERS_RUNS", str(root))
    return root


def run_cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_list_json_indexes_new_runs(root, capsys):
    code, out, _ = run_cli(capsys, "runs", "list", "--json")
    assert code == 0
    rows = json.loads(out)
    assert [r["id"] for r in rows] == ["pgd-s0", "trades-s1"]
    pgd = rows[0]
    assert pgd["status"] == "finished" and pgd["epochs_done"] == 3
    assert pgd["robust_acc_best"] == 0.45 and pgd["best_epoch"] == 2
    assert pgd["gap"] == pytest.approx(0.05)
    assert "config_json" not in pgd
    assert (root / "runs.sqlite").is_file()
    assert RunIndex(root).ids() == ["pgd-s0", "trades-s1"]


def test_list_filters_and_table(root, capsys):
    code, out, _ = run_cli(capsys, "runs", "list", "--method", "trades", "--json")
    assert [r["id"] for r in json.loads(out)] == ["trades-s1"]
    code, out, _ = run_cli(capsys, "runs", "list", "--status", "finished", "--root", str(root))
    assert code == 0
    assert "pgd-s0" in out and "trades-s1" not in out and "45.00" in out


def test_list_refreshes_running_runs(root, capsys):
    run_cli(capsys, "runs", "list")
    RunDir.open(root / "trades-s1").append_metrics({"epoch": 3, "test_robust_acc": 0.6})
    _, out, _ = run_cli(capsys, "runs", "list", "--json", "--method", "trades")
    assert json.loads(out)[0]["epochs_done"] == 3


def test_list_missing_root_is_exit_2(tmp_path, capsys):
    code, _, err = run_cli(capsys, "runs", "list", "--root", str(tmp_path / "nope"))
    assert code == 2 and "does not exist" in err


def test_show_json_and_text(root, capsys):
    code, out, _ = run_cli(capsys, "runs", "show", "pgd-s0", "--json")
    assert code == 0
    record = json.loads(out)
    assert record["config"]["method"] == "pgd_at"
    assert [m["epoch"] for m in record["metrics"]] == [1, 2, 3]
    assert record["result"]["status"] == "finished"
    assert record["summary"]["robust_acc_last"] == 0.40
    code, out, _ = run_cli(capsys, "runs", "show", str(root / "trades-s1"))  # a path works too
    assert code == 0
    assert "test_robust_acc" in out and "config:" in out and "status: running" in out


def test_show_unknown_run_lists_known_ids(root, capsys):
    code, _, err = run_cli(capsys, "runs", "show", "pgd-s9")
    assert code == 2
    assert "unknown run 'pgd-s9'" in err and "pgd-s0" in err and "trades-s1" in err


def test_compare_json_and_text(root, capsys):
    code, out, _ = run_cli(capsys, "runs", "compare", "pgd-s0", "trades-s1", "--json")
    assert code == 0
    cmp = json.loads(out)
    assert [r["id"] for r in cmp["runs"]] == ["pgd-s0", "trades-s1"]
    assert [r["robust_acc_best"] for r in cmp["runs"]] == [0.45, 0.5]
    assert [r["robust_acc_last"] for r in cmp["runs"]] == [0.40, 0.5]
    assert cmp["runs"][1]["gap"] == 0
    assert cmp["differing_config"]["epochs"] == [3, 2]
    code, out, _ = run_cli(capsys, "runs", "compare", "pgd-s0", "trades-s1")
    assert code == 0 and "robust_acc_best" in out and "config.epochs" in out


def test_compare_needs_two_known_runs(root, capsys):
    assert run_cli(capsys, "runs", "compare", "pgd-s0")[0] == 2
    code, _, err = run_cli(capsys, "runs", "compare", "pgd-s0", "nope")
    assert code == 2 and "known runs" in err


def test_rescan_rebuilds_a_corrupt_index_and_skips_a_corrupt_run(root, capsys):
    (root / "runs.sqlite").write_bytes(b"not a database at all" * 50)
    (root / "broken").mkdir()
    (root / "broken" / "config.json").write_text("{")
    code, out, err = run_cli(capsys, "runs", "list", "--rescan", "--json")
    assert code == 0
    assert [r["id"] for r in json.loads(out)] == ["pgd-s0", "trades-s1"]
    assert "warning: runs index" in err and "rebuilt it from the" in err
    assert f"warning: skipped run directory {root / 'broken'}: " in err
    assert "Traceback" not in err
