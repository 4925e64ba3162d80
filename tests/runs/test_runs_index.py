"""RunIndex: rows derived from run directories, filters, compare, and concurrent writers."""

import multiprocessing
import sqlite3

import pytest

from robustlayers.runs import RunDir, RunIndex, summarize_run


def make_run(root, name, *, method="pgd_at", seed=0, robust=(0.30, 0.45, 0.40), result=None):
    run = RunDir.create(root / name, {"model": "smallcnn", "dataset": "mnist", "method": method,
                                      "seed": seed, "model_kwargs": {}, "lr": 0.1 + seed})
    for epoch, acc in enumerate(robust, start=1):
        run.append_metrics({"epoch": epoch, "robust_acc": acc, "clean_acc": 0.9 + epoch / 100})
    if result is not None:
        run.write_result(result)
    return run


def test_summary_row(tmp_path):
    row = summarize_run(make_run(tmp_path, "a"))
    assert row["epochs_done"] == 3 and row["status"] == "running"
    assert row["robust_acc_best"] == 0.45 and row["best_epoch"] == 2
    assert row["robust_acc_last"] == 0.40 and row["gap"] == pytest.approx(0.05)
    assert row["clean_acc"] == pytest.approx(0.93)
    assert (row["method"], row["model"], row["dataset"], row["seed"]) == ("pgd_at", "smallcnn", "mnist", 0)


def test_result_overrides_metrics(tmp_path):
    run = make_run(tmp_path, "a", result={"clean_acc": 0.95, "robust_acc_last": 0.39})
    row = summarize_run(run)
    assert row["status"] == "finished"
    assert row["clean_acc"] == 0.95 and row["robust_acc_last"] == 0.39
    assert row["gap"] == pytest.approx(0.06)


def test_upsert_list_get_compare(tmp_path):
    index = RunIndex(tmp_path)
    a = make_run(tmp_path, "sweep/a")
    b = make_run(tmp_path, "sweep/b", method="trades", seed=1, robust=(0.5,), result={})
    index.upsert(a)
    index.upsert(b)
    first = index.get("sweep/a")
    index.upsert(a)  # again: one row, created kept
    assert index.ids() == ["sweep/a", "sweep/b"]
    assert index.get("sweep/a")["created"] == first["created"]
    with sqlite3.connect(tmp_path / "runs.sqlite") as con:
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert [r["id"] for r in index.list(method="trades")] == ["sweep/b"]
    assert [r["id"] for r in index.list(status="running")] == ["sweep/a"]
    with pytest.raises(ValueError, match="valid: \\['running'"):
        index.list(status="done")
    with pytest.raises(ValueError, match="known runs: .*sweep/a"):
        index.get("sweep/c")
    cmp = index.compare(["sweep/b", "sweep/a"])
    assert [r["id"] for r in cmp["runs"]] == ["sweep/b", "sweep/a"]
    assert cmp["differing_config"] == {"lr": [1.1, 0.1], "method": ["trades", "pgd_at"], "seed": [1, 0]}
    assert index.run_dir("sweep/b").status == "finished"


def test_rows_and_rescan(tmp_path):
    index = RunIndex(tmp_path)
    index.upsert({"id": "manual", "method": "x", "robust_acc_best": 0.5})
    with pytest.raises(ValueError, match="unknown: \\['bogus'\\]"):
        index.upsert({"id": "y", "bogus": 1})
    make_run(tmp_path, "r1")
    make_run(tmp_path, "group/r2")
    assert index.rescan(prune=True) == 2
    assert index.ids() == ["group/r2", "r1"]
    with pytest.raises(ValueError, match="not under the index root"):
        index.upsert(make_run(tmp_path.parent / f"{tmp_path.name}-elsewhere", "r"))


def test_upsert_many_is_all_or_nothing(tmp_path):
    index = RunIndex(tmp_path)
    with pytest.raises(ValueError):
        index.upsert_many([{"id": "ok"}, {"id": "bad", "nope": 1}])
    with pytest.raises(sqlite3.Error):
        index.upsert_many([{"id": "ok2"}, {"id": "bad2", "epochs_done": object()}])
    assert index.ids() == []


def test_missing_root_without_create(tmp_path):
    with pytest.raises(FileNotFoundError, match="ROBUSTLAYERS_RUNS"):
        RunIndex(tmp_path / "absent", create=False)


def _writer(root, worker, count, barrier):
    index = RunIndex(root)
    barrier.wait(timeout=60)  # start writing together, so that the writers contend
    for i in range(count):
        index.upsert({"id": f"w{worker}/run{i:02d}", "method": "pgd_at", "status": "running",
                      "epochs_done": i, "robust_acc_best": i / 100})


def test_concurrent_writers_lose_no_row(tmp_path):
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(4)
    procs = [ctx.Process(target=_writer, args=(str(tmp_path), w, 25, barrier)) for w in range(4)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(timeout=120)
    assert [proc.exitcode for proc in procs] == [0, 0, 0, 0]
    index = RunIndex(tmp_path)
    assert len(index.ids()) == 100
    assert len(index.list(method="pgd_at")) == 100
