"""Kill a training process with SIGKILL mid-epoch, resume it, kill the resumed process while it
writes a checkpoint, resume again, and require bit-identical weights and identical metrics to an
uninterrupted run (CPU)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

from robustlayers.train import TIME_FIELDS

from .conftest import tiny_config

SCRIPT = Path(__file__).with_name("killable.py")


def _cli(config: dict, out: Path) -> list[str]:
    args = ["train", "--out", str(out), "--runs-root", str(out.parent), "--quiet"]
    for key in ("model", "dataset", "data_dir", "method", "epochs", "batch_size", "train_size",
                "test_size", "eval_size", "eval_steps", "steps", "lr", "schedule", "device",
                "seed"):
        args += ["--" + key.replace("_", "-"), str(config[key])]
    return args + ["--set", f"keep_checkpoints={config['keep_checkpoints']}"]


def _python(args, kill_at=""):
    env = dict(os.environ, KILL_AT=kill_at, OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, str(SCRIPT), *args], env=env, capture_output=True,
                          text=True, timeout=300)


def _state(run: Path):
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    rows = [{k: v for k, v in r.items() if k not in TIME_FIELDS} for r in rows]
    weights = {tag: load_file(str(run / "checkpoints" / tag / "model.safetensors"))
               for tag in ("epoch-0003", "best")}
    result = json.loads((run / "result.json").read_text())
    result.pop("seconds")
    return rows, weights, result


def _metric_lines(out: Path) -> int:
    return len([line for line in (out / "metrics.jsonl").read_text().splitlines() if line])


def test_killed_twice_and_resumed_run_equals_uninterrupted(mini_data, tmp_path, reference_run):
    out = tmp_path / "killed"
    # 1. SIGKILL in the middle of epoch 2 (after its 3rd batch): epoch-0001 is the resume point
    first = _python(_cli(tiny_config(mini_data, out), out), "batch:2:3")
    assert first.returncode == -signal.SIGKILL, first.stderr
    assert _metric_lines(out) == 1 and not (out / "checkpoints" / "epoch-0002").exists()
    # 2. resume; SIGKILL while writing checkpoint epoch-0002 (weights written, no manifest yet)
    second = _python(["train", "--resume", str(out), "--quiet"], "manifest:epoch-0002")
    assert second.returncode == -signal.SIGKILL, second.stderr
    assert "from checkpoint epoch-0001" in second.stderr
    assert list((out / "checkpoints").glob(".tmp-epoch-0002-*"))  # the torn save
    assert _metric_lines(out) == 2 and not (out / "result.json").exists()
    # 3. resume again: the torn save is ignored, epoch 2 is replayed from epoch-0001
    third = _python(["train", "--resume", str(out), "--quiet"])
    assert third.returncode == 0, third.stderr
    assert "from checkpoint epoch-0001" in third.stderr

    rows, weights, result = _state(out)
    ref_rows, ref_weights, ref_result = _state(reference_run.path)
    assert rows == ref_rows
    for tag in weights:
        assert weights[tag].keys() == ref_weights[tag].keys()
        for name in weights[tag]:
            assert torch.equal(weights[tag][name], ref_weights[tag][name]), (tag, name)
    assert result == ref_result
    env = json.loads((out / "environment.json").read_text())
    assert len(env["resumes"]) == 2


def test_a_killed_stage2_run_resumes_bit_identically(mini_data, tmp_path, reference_run):
    """EARLY stage 2 (A1N2 from the PGD-AT reference run) killed mid-epoch 2 and resumed ends
    with the weights and metrics of an uninterrupted stage 2."""
    from robustlayers.train import train

    stage2 = dict(init_from=f"{reference_run.path}@best", method="partial-at", epochs=2,
                  method_args={"code": "A1N2", "cut": "layer2.0"})
    straight = train(tiny_config(mini_data, tmp_path / "straight", **stage2))
    out = tmp_path / "killed"
    args = _cli(tiny_config(mini_data, out, epochs=2), out)
    at = args.index("--method")
    del args[at:at + 2]  # --code alone selects partial-at
    args += ["--init-from", f"{reference_run.path}@best", "--code", "A1N2", "--cut", "layer2.0"]
    first = _python(args, "batch:2:2")
    assert first.returncode == -signal.SIGKILL, first.stderr
    second = _python(["train", "--resume", str(out), "--quiet"])
    assert second.returncode == 0, second.stderr
    config = json.loads((out / "config.json").read_text())
    assert config["method"] == "partial-at"  # --code implied the method
    assert config["init_source"]["checkpoint"] == "best"

    def state(run: Path):
        rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        rows = [{k: v for k, v in r.items() if k not in TIME_FIELDS} for r in rows]
        return rows, load_file(str(run / "checkpoints" / "epoch-0002" / "model.safetensors"))

    rows, weights = state(out)
    ref_rows, ref_weights = state(straight.path)
    assert rows == ref_rows
    assert all(torch.equal(weights[k], ref_weights[k]) for k in ref_weights)
    result = json.loads((out / "result.json").read_text())
    assert result["final"] == straight.result["final"]
