"""The study framework: plans, the scheduler (reuse, retry, isolation, dependents), claims,
the study folder and its report — on evaluate-only studies that need no training."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from robustlayers.errors import ConfigError
from robustlayers.studies import base, claims
from robustlayers.studies.execute import execute
from robustlayers.studies.runner import run_study
from robustlayers.studies.tasks import (Task, check_plan, dependents, evaluate_task,
                                        evaluation_path, train_task)

CALLS: list[str] = []


def record_call(name: str, fail_times: int = 0, marker: str = "") -> dict:
    """An evaluation for the tests: fails its first ``fail_times`` calls (counted in a marker
    file), then returns its name."""
    CALLS.append(name)
    if fail_times:
        path = Path(marker)
        count = int(path.read_text()) if path.exists() else 0
        path.write_text(str(count + 1))
        if count < fail_times:
            raise RuntimeError(f"{name} failed on purpose (call {count + 1})")
    return {"name": name, "value": len(name)}


FN = f"{__name__}:record_call"


def _task(key, needs=(), **args):
    return evaluate_task(key, FN, dict({"name": key}, **args), needs=needs)


def test_check_plan_orders_by_needs_and_rejects_bad_plans():
    tasks = [_task("c", needs=("b",)), _task("b", needs=("a",)), _task("a")]
    assert [t.key for t in check_plan(tasks)] == ["a", "b", "c"]
    assert dependents(tasks, "a") == {"b", "c"}
    with pytest.raises(ConfigError, match="share the key"):
        check_plan([_task("a"), _task("a")])
    with pytest.raises(ConfigError, match="needs 'z'"):
        check_plan([_task("a", needs=("z",))])
    with pytest.raises(ConfigError, match="cycle: a -> b -> a"):
        check_plan([_task("a", needs=("b",)), _task("b", needs=("a",))])
    with pytest.raises(ConfigError, match="task key"):
        check_plan([_task("bad key")])
    with pytest.raises(ConfigError, match="kind"):
        check_plan([Task("a", "sing", {})])


def test_train_task_path_is_known_before_the_run_exists(tmp_path):
    from robustlayers.train.presets import preset_values
    from robustlayers.train.runner import planned_run_path

    stage1 = train_task("s1", dict(preset_values("fmnist-study"), runs_root=str(tmp_path)))
    path = planned_run_path(stage1.spec)
    assert path.parent == tmp_path and path.name.startswith("pgd-at-smallcnn-fashion-mnist-s0-")
    stage2 = dict(stage1.spec, method="natural", init_from=f"{path}@last")
    before = planned_run_path(stage2)
    path.mkdir()  # the stage-1 directory appearing does not change the stage-2 identity
    assert planned_run_path(stage2) == before


def test_execute_runs_in_order_and_reuses_stored_evaluations(tmp_path):
    CALLS.clear()
    tasks = check_plan([_task("b", needs=("a",)), _task("a")])
    outcomes = execute(tasks, tmp_path, quiet=True)
    assert CALLS == ["a", "b"]
    assert {k: o["status"] for k, o in outcomes.items()} == {"a": "done", "b": "done"}
    stored = json.loads(evaluation_path(tasks[1], tmp_path).read_text())
    assert stored["result"] == {"name": "b", "value": 1}
    again = execute(tasks, tmp_path, quiet=True)
    assert CALLS == ["a", "b"]  # nothing computed twice
    assert {o["status"] for o in again.values()} == {"reused"}


def test_failing_task_is_retried_once_then_isolated(tmp_path):
    CALLS.clear()
    flaky = _task("flaky", fail_times=1, marker=str(tmp_path / "flaky.count"))
    broken = _task("broken", fail_times=5, marker=str(tmp_path / "broken.count"))
    tasks = check_plan([flaky, broken, _task("after-broken", needs=("broken",)),
                        _task("after-flaky", needs=("flaky",)), _task("other")])
    outcomes = execute(tasks, tmp_path, quiet=True)
    status = {k: o["status"] for k, o in outcomes.items()}
    assert status == {"flaky": "done", "broken": "failed", "after-broken": "skipped",
                      "after-flaky": "done", "other": "done"}
    assert outcomes["flaky"]["attempts"] == 2 and outcomes["broken"]["attempts"] == 2
    assert "failed on purpose (call 2)" in outcomes["broken"]["error"]
    assert "needs broken" in outcomes["after-broken"]["error"]
    assert CALLS.count("broken") == 2 and "after-broken" not in CALLS


def test_process_pool_gives_the_same_outcomes(tmp_path):
    tasks = check_plan([_task("a"), _task("b"), _task("c", needs=("a", "b"))])
    outcomes = execute(tasks, tmp_path, jobs=2, quiet=True)
    assert {k: o["status"] for k, o in outcomes.items()} == dict.fromkeys("abc", "done")
    assert json.loads(evaluation_path(tasks[2], tmp_path).read_text())["result"]["value"] == 1


def test_bad_executor_settings_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="unknown executor 'slurm'.*local, ray"):
        execute([], tmp_path, executor="slurm")
    with pytest.raises(ConfigError, match="jobs must be a positive integer"):
        execute([], tmp_path, jobs=0)
    with pytest.raises(ConfigError, match="--address goes with --executor ray"):
        execute([], tmp_path, address="auto")


@dataclasses.dataclass
class ToyOptions(base.CommonOptions):
    items: str = base.setting("a,b", "evaluations to run")


def _toy_plan(opts, runs_root):
    return [_task(k) for k in opts.items.split(",")]


def _toy_analyse(opts, results):
    values = {k: (results.evaluation(k) or {}).get("value") for k in results.tasks}
    return {"tables": [{"name": "t", "title": "values", "columns": ["key", "value"],
                        "rows": [[k, v] for k, v in values.items()]}],
            "figures": [{"name": "f", "title": "values", "x_label": "i", "y_label": "value",
                         "series": [{"label": "v", "x": [0, 1], "y": [1, 2]}]}],
            "claims": [claims.compare("T-1", "toy", "a beats b", [0.9], [0.1], noise=0.1)]}


TOY = base.Study("toy", "toy paper", "a toy", ToyOptions, {"quick": {}}, _toy_plan, _toy_analyse)


def test_study_folder_record_report_and_option_clash(tmp_path, capsys):
    opts = TOY.build_options("quick", {"items": "a,bb"})
    record = run_study(TOY, opts, preset="quick", out=tmp_path / "s", quiet=True)
    saved = json.loads((tmp_path / "s" / "study.json").read_text())
    assert saved["status"] == "finished" and saved["tables"][0]["rows"] == [["a", 1], ["bb", 2]]
    assert saved["claims"][0]["verdict"] == "holds" and record["verdicts"]["holds"] == 1
    html = Path(record["report"]).read_text()
    assert html.index("Claims and verdicts") < html.index("<h2>toy")
    assert "a beats b" in html and "data:image/svg+xml;base64," in html
    with pytest.raises(ConfigError, match="holds study 'toy' with other options.*items"):
        run_study(TOY, TOY.build_options("quick", {"items": "a"}), preset="quick",
                  out=tmp_path / "s", quiet=True)
    planned = run_study(TOY, opts, preset="quick", out=tmp_path / "dry", dry_run=True,
                        quiet=True)
    assert planned["status"] == "planned" and not (tmp_path / "dry").exists()
    assert "toy" in capsys.readouterr().out


def test_bad_options_name_the_choices():
    with pytest.raises(ConfigError, match="study 'toy' has no setting 'itemz'.*items"):
        TOY.build_options("quick", {"itemz": "a"})
    with pytest.raises(ConfigError, match="no preset 'paper'; presets: quick"):
        TOY.build_options("paper")
    with pytest.raises(ConfigError, match="seeds must be comma-separated integers"):
        TOY.build_options("quick", {"seeds": "0,x"})
