"""A run's identity is its config; concurrent starts train once; SIGTERM / SIGKILL leave runs
that know how they ended and resume exactly; a diverging run is marked diverged."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from robustlayers.cli.main import main
from robustlayers.runs import RunDir
from robustlayers.train import TIME_FIELDS, train
from robustlayers.train.identity import identity_hash

from .conftest import tiny_config
from .test_resume_kill import _cli, _python

PYTHON_ENV = dict(os.environ, OMP_NUM_THREADS="1")


def _no_out(config: dict) -> dict:
    return {k: v for k, v in config.items() if k != "out"}


def test_same_config_same_directory_and_a_finished_run_is_returned(mini_data, tmp_path):
    config = _no_out(tiny_config(mini_data, tmp_path / "x", epochs=1, final_eval=False))
    first = train(config)
    assert first.path.parent == tmp_path and first.path.name.startswith("pgd-at-smallcnn-")
    assert first.path.name.endswith(identity_hash(first.config))
    again = train({**config, "quiet": False})  # runtime keys are not part of the identity
    assert again.path == first.path and again.status == "finished"
    assert len(again.metrics()) == 1
    other = train({**config, "lr": 0.04})
    assert other.path != first.path
    with pytest.raises(ValueError, match="holds a run of another config.*lr"):
        train({**config, "lr": 0.03, "out": str(first.path)})


def test_eight_concurrent_identical_starts_train_once(mini_data, tmp_path):
    config = _no_out(tiny_config(mini_data, tmp_path / "x", epochs=1, final_eval=False))
    results, errors = [], []

    def start():
        try:
            results.append(train(dict(config)))
        except Exception as err:  # noqa: BLE001 - collected and asserted below
            errors.append(err)

    threads = [threading.Thread(target=start) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert len({r.path for r in results}) == 1 and all(r.status == "finished" for r in results)
    run = results[0]
    assert len(run.metrics()) == 1
    env = json.loads((run.path / "environment.json").read_text())
    assert not env.get("resumes")  # trained once, never resumed
    assert [p.name for p in tmp_path.iterdir() if p.is_dir()] == [run.path.name]


def test_a_concurrent_lr_sweep_keeps_every_run(mini_data, tmp_path):
    base = _no_out(tiny_config(mini_data, tmp_path / "x", epochs=1, final_eval=False))
    runs = []
    threads = [threading.Thread(target=lambda lr=lr: runs.append(train({**base, "lr": lr})))
               for lr in (0.01, 0.02, 0.03, 0.04)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({r.path for r in runs}) == 4
    assert sorted(r.config["lr"] for r in runs) == [0.01, 0.02, 0.03, 0.04]


def _state(run: Path):
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    rows = [{k: v for k, v in r.items() if k not in TIME_FIELDS} for r in rows]
    return rows, load_file(str(run / "checkpoints" / "epoch-0003" / "model.safetensors"))


def _runs_list(root: Path, capsys) -> str:
    capsys.readouterr()
    assert main(["runs", "list", "--root", str(root)]) == 0
    return capsys.readouterr().out


def default_sigint() -> None:
    """In the child: Ctrl-C handled by default even when the test runs in a background job (a
    shell starts those with SIGINT ignored, and Python keeps an ignored SIGINT ignored)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.parametrize("sig,code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)],
                         ids=["SIGTERM", "Ctrl-C"])
def test_sigterm_or_ctrl_c_marks_the_run_interrupted_and_resume_completes(
        mini_data, tmp_path, reference_run, capsys, sig, code):
    out = tmp_path / "termed"
    script = Path(__file__).with_name("killable.py")
    proc = subprocess.Popen([sys.executable, str(script), *_cli(tiny_config(mini_data, out), out)],
                            env=PYTHON_ENV, stderr=subprocess.PIPE, text=True,
                            preexec_fn=default_sigint)
    deadline = time.time() + 240
    while time.time() < deadline and not (out / "checkpoints" / "epoch-0001").exists():
        time.sleep(0.05)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == code, err
    lines = [line for line in err.splitlines() if "error" in line]
    assert len(lines) == 1 and f"robustlayers train --resume {out}" in lines[0]
    assert RunDir.open(out).status == "interrupted"
    assert "interrupted" in _runs_list(tmp_path, capsys)
    resumed = _python(["train", "--resume", str(out), "--quiet"])
    assert resumed.returncode == 0, resumed.stderr
    rows, weights = _state(out)
    ref_rows, ref_weights = _state(reference_run.path)
    assert rows == ref_rows
    assert all(torch.equal(weights[k], ref_weights[k]) for k in ref_weights)


def test_a_sigkilled_run_shows_as_dead_and_resume_takes_it_over(mini_data, tmp_path,
                                                               reference_run, capsys):
    out = tmp_path / "killed"
    first = _python(_cli(tiny_config(mini_data, out), out), "batch:2:2")
    assert first.returncode == -signal.SIGKILL
    assert RunDir.open(out).status == "dead"
    assert "dead" in _runs_list(tmp_path, capsys)
    assert _python(["train", "--resume", str(out), "--quiet"]).returncode == 0
    assert RunDir.open(out).status == "finished"
    rows, weights = _state(out)
    assert rows == _state(reference_run.path)[0]
    assert "finished" in _runs_list(tmp_path, capsys)


def test_a_diverging_run_stops_marked_diverged_keeping_its_last_finite_checkpoint(
        mini_data, tmp_path):
    # epoch 1 trains at lr 0.05; the piecewise milestone at epoch 1 multiplies it by 1e12
    run = train(tiny_config(mini_data, tmp_path / "div", schedule="piecewise", milestones=[1],
                            gamma=1e12, epochs=3))
    result = run.result
    assert result["status"] == "diverged" and result["diverged_epoch"] == 2
    assert result["last_finite_checkpoint"] == "epoch-0001"
    assert run.checkpoint_tags() == ["epoch-0001", "best"]
    assert all(torch.isfinite(v).all() for v in load_file(
        str(run.path / "checkpoints" / "epoch-0001" / "model.safetensors")).values())
    assert run.metrics()[-1]["diverged"] is True


def test_dry_run_print_config_and_extending_a_finished_run(mini_data, tmp_path, capsys):
    out = tmp_path / "ext"
    args = _cli(tiny_config(mini_data, out, epochs=1), out)
    assert main(args + ["--dry-run"]) == 0
    printed = capsys.readouterr().out
    assert "epochs: 1" in printed and f"{out} — starts a new run" in printed
    assert not out.exists()
    assert main(args + ["--print-config"]) == 0 and "method: pgd-at" in capsys.readouterr().out
    assert main(args) == 0
    assert main(args + ["--dry-run"]) == 0 and "returns the finished run" in \
        capsys.readouterr().out
    assert main(["train", "--resume", str(out), "--epochs", "2", "--quiet"]) == 0
    run = RunDir.open(out)
    assert run.status == "finished" and [r["epoch"] for r in run.metrics()] == [1, 2]
    env = json.loads((out / "environment.json").read_text())
    assert [(e["from"], e["to"]) for e in env["extensions"]] == [(1, 2)]
    assert (out / "result-epoch-0001.json").is_file()
    assert main(["train", "--resume", str(out), "--epochs", "2"]) == 2
    assert "must be more than the run's 2 epochs" in capsys.readouterr().err
