"""Data-parallel training for real: ``python -m torch.distributed.run --nproc_per_node 2 -m
robustlayers train ...`` with the gloo backend on CPU, against one process.

The runs (made once per session, shared by pytest-xdist workers through a file lock):
- ``one``: PGD-AT in this process; ``two``: the same config on 2 processes (``sync_bn``, so
  that the BN statistics are those of the global batch and the runs can agree);
- ``killed``: ``two`` again, every rank SIGKILLed mid-epoch 2 (after checkpoint epoch-0001),
  then resumed with torchrun;
- ``clat_one`` / ``clat_two``: CLAT (critical layers reselected every epoch) fine-tuning ``one``,
  in one and in 2 processes.

Tolerances: the gradient of a batch summed in two halves differs from the one-process sum by
float rounding (~1e-7), which early, high-curvature steps amplify (x10 per step at lr 0.1), and
which ℓ∞ PGD's sign() turns into whole α-steps on pixels whose gradient is near zero (measured
with ℓ∞: loss 8e-4 apart after 8 steps). The runs therefore use lr 0.001 and ℓ2 PGD (continuous
steps): the 2-process weights stay within 1e-5 of one process and the losses within 1e-4
(measured: weights ~1.3e-6, losses ~5e-6). A wrong shard (every rank drawing the same random
start, or unweighted losses) misses these by orders of magnitude.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from robustlayers.train import TIME_FIELDS, train

from .conftest import require_fashion_mnist, tiny_config, write_mini_fashion_mnist

KILLABLE = Path(__file__).with_name("killable.py")
CONFIG = dict(epochs=2, lr=0.001, schedule="constant", sync_bn=True, train_size=128,
              batch_size=32, test_size=32, eval_size=32, norm="l2", eps=1.0)
CLAT = dict(method="clat", epochs=2, method_args={"k": 1, "reselect_every": 1})


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _cli(config: dict) -> list[str]:
    args = ["train", "--quiet", "--sync-bn", "--out", config["out"],
            "--runs-root", config["runs_root"]]
    for key in ("model", "dataset", "data_dir", "method", "epochs", "batch_size", "train_size",
                "test_size", "eval_size", "eval_steps", "steps", "lr", "schedule", "device",
                "seed", "init_from", "norm", "eps"):
        if config.get(key) is not None:
            args += ["--" + key.replace("_", "-"), str(config[key])]
    for name, value in config.get("method_args", {}).items():
        args += ["--" + name.replace("_", "-"), str(value)]
    return args + ["--set", f"keep_checkpoints={config['keep_checkpoints']}"]


def _torchrun(args: list[str], *, kill_at: str = "") -> subprocess.Popen:
    """2 processes of ``robustlayers ARGS`` (or of killable.py with KILL_AT) on a free port."""
    target = [str(KILLABLE)] if kill_at else ["-m", "robustlayers"]
    env = dict(os.environ, OMP_NUM_THREADS="1", KILL_AT=kill_at)
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
           "--master_addr", "127.0.0.1", "--master_port", str(_free_port()), *target, *args]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def _wait(proc: subprocess.Popen) -> tuple[int, str]:
    out, err = proc.communicate(timeout=300)
    return proc.returncode, out + err


def _make_runs(root: Path, data: str) -> dict:
    conf = lambda name, **kw: tiny_config(data, root / name, **{**CONFIG, **kw})  # noqa: E731
    one = train(conf("one"))
    clat = dict(CLAT, init_from=str(one.path))
    procs = {"two": _torchrun(_cli(conf("two"))),
             "killed": _torchrun(_cli(conf("killed")), kill_at="batch:2:2"),
             "clat_two": _torchrun(_cli(conf("clat_two", **clat)))}
    logs = {name: _wait(proc) for name, proc in procs.items()}
    killed = root / "killed"
    at_kill = {"checkpoints": sorted(os.listdir(killed / "checkpoints")),
               "epochs": [row["epoch"] for row in _rows(killed)]}
    logs["resumed"] = _wait(_torchrun(["train", "--resume", str(root / "killed"), "--quiet"]))
    train(conf("clat_one", **clat))
    return {"root": str(root), "logs": logs, "at_kill": at_kill}


@pytest.fixture(scope="session")
def ddp_runs(tmp_path_factory, worker_id):
    """The runs of the module docstring, made by the first xdist worker that asks."""
    require_fashion_mnist()
    shared = tmp_path_factory.getbasetemp().parent if worker_id != "master" \
        else tmp_path_factory.getbasetemp()
    from filelock import FileLock

    with FileLock(str(shared / "ddp-runs.lock")):
        record = shared / "ddp-runs.json"
        if not record.is_file():
            root = shared / "ddp-runs"
            data = write_mini_fashion_mnist(root / "fmnist")
            record.write_text(json.dumps(_make_runs(root, data)))
    return json.loads(record.read_text())


def _rows(run: Path) -> list[dict]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k not in TIME_FIELDS} for r in rows]


def _weights(run: Path, tag: str = "epoch-0002") -> dict:
    return load_file(str(run / "checkpoints" / tag / "model.safetensors"))


def _max_weight_diff(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max((a[k].double() - b[k].double()).abs().max().item() for k in a)


def _max_metric_diff(a: list[dict], b: list[dict], kind: str) -> float:
    assert len(a) == len(b) and all(x.keys() == y.keys() for x, y in zip(a, b))
    return max(abs(x[k] - y[k]) for x, y in zip(a, b) for k in x
               if k.endswith(kind) and x[k] is not None)


def test_two_processes_train_one_run_equal_to_one_process(ddp_runs):
    root = Path(ddp_runs["root"])
    code, log = ddp_runs["logs"]["two"]
    assert code == 0, log
    assert log.count("run: ") == 1  # rank 0 reports
    one, two = root / "one", root / "two"
    assert sorted(p.name for p in two.iterdir()) == sorted(p.name for p in one.iterdir())
    rows_one, rows_two = _rows(one), _rows(two)
    assert [r["epoch"] for r in rows_two] == [1, 2]  # one row per epoch: rank 0 alone wrote
    assert _max_metric_diff(rows_one, rows_two, "loss") < 1e-4
    assert _max_metric_diff(rows_one, rows_two, "acc") <= 1 / 32
    assert _max_weight_diff(_weights(one), _weights(two)) < 1e-5
    result = json.loads((two / "result.json").read_text())
    assert result["distributed"] == {"world_size": 2, "backend": "gloo", "sync_bn": True}
    assert "distributed" not in json.loads((one / "result.json").read_text())
    assert abs(result["final"]["last"]["robust_loss"]
               - json.loads((one / "result.json").read_text())["final"]["last"]["robust_loss"]
               ) < 1e-4
    # world size is runtime, not identity: the config records are the same
    config = lambda run: {k: v for k, v in json.loads((run / "config.json").read_text()).items()  # noqa: E731
                          if k not in ("out", "runs_root")}
    assert config(one) == config(two)


def test_a_killed_two_process_run_resumes_to_the_uninterrupted_run(ddp_runs):
    root = Path(ddp_runs["root"])
    code, log = ddp_runs["logs"]["killed"]
    assert code != 0 and "SIGKILL" in log, log
    # killed in epoch 2: epoch 1's checkpoint and metrics are the resume point
    assert ddp_runs["at_kill"] == {"checkpoints": ["best", "epoch-0001"], "epochs": [1]}
    code, log = ddp_runs["logs"]["resumed"]
    assert code == 0, log
    assert "from checkpoint epoch-0001" in log
    killed, two = root / "killed", root / "two"
    assert _rows(killed) == _rows(two)
    for tag in ("epoch-0002", "best"):
        a, b = _weights(killed, tag), _weights(two, tag)
        assert all(torch.equal(a[k], b[k]) for k in b), tag
    result = {k: v for k, v in json.loads((killed / "result.json").read_text()).items()
              if k != "seconds"}
    expected = {k: v for k, v in json.loads((two / "result.json").read_text()).items()
                if k != "seconds"}
    assert result == expected
    env = json.loads((killed / "environment.json").read_text())
    assert len(env["resumes"]) == 1


def test_clat_reselects_the_same_layers_on_two_processes_as_on_one(ddp_runs):
    root = Path(ddp_runs["root"])
    code, log = ddp_runs["logs"]["clat_two"]
    assert code == 0, log
    one, two = root / "clat_one", root / "clat_two"
    history = lambda run: json.loads((run / "result.json").read_text())["method"]["history"]  # noqa: E731
    h1, h2 = history(one), history(two)
    assert [h["layers"] for h in h2] == [h["layers"] for h in h1] and len(h2) == 2
    for a, b in zip(h1, h2):
        assert max(abs(a["criticality"][k] - b["criticality"][k]) for k in a["criticality"]) \
            < 1e-4
    selections = json.loads((two / "selections.json").read_text())
    assert {"critical@0", "critical@1"} <= set(selections)
    w1, w2, start = _weights(one), _weights(two), _weights(root / "one")
    assert _max_weight_diff(w1, w2) < 1e-5
    trained = {layer for h in h1 for layer in h["layers"]}
    params = [k for k in w2 if k.endswith((".weight", ".bias"))]
    changed = {k.rsplit(".", 1)[0] for k in params if not torch.equal(w2[k], start[k])}
    assert changed and changed <= trained  # only the critical layers were trained
