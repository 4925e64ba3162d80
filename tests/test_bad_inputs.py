"""A hostile-but-fair user's bad inputs, through the command line and the Python API.

Every row asserts: a non-zero exit status (2 for bad input, 1 for failed work) or the library's
error type, a message that names the offending input, no traceback (the CLI prints one line;
with ``--json`` also a JSON object whose kind is not "internal"), and nothing left behind: the
files of the workspace and of the prepared runs are exactly as before, and no index row is
``running``. Each row fails before any real work starts, so the table runs in seconds.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import sqlite3
import warnings
from pathlib import Path

import pytest
import torch

from robustlayers import errors
from robustlayers.attacks import ThreatModel
from robustlayers.builders import build_model, model_kwargs_for
from robustlayers.cli.main import main
from robustlayers.data import load_dataset
from robustlayers.evaluate import run_sanity_checks
from robustlayers.layers import (Selection, count_params, freeze, param_groups, reinit,
                                 select, unfreeze)
from robustlayers.models import load_checkpoint, save_weights
from robustlayers.runs import RunDir, RunIndex, check_output_path, epoch_tag, load_run_model
from robustlayers.train import resume_run
from robustlayers.train import train as train_run

FM = ["--dataset", "fashion-mnist"]
EVAL = ["evaluate", "--model", "smallcnn", "--checkpoint", "{ckpt}", *FM, "--n-examples", "8",
        "--steps", "1", "--batch-size", "8", "--no-sanity"]
DIAG = ["diagnose", "--checkpoint", "{ckpt}", "--model", "smallcnn", *FM, "--n-examples", "8"]
DEEP = "(" * 60 + "all" + ")" * 60
CHAIN = " | ".join(["conv1"] * 300)
LONG = "r" * 250
RO = "/sys" if os.geteuid() == 0 else "{assets}/readonly"  # root writes through chmod 555


class Evil:
    """A pickle that would run a shell command when unpickled without restriction."""

    def __reduce__(self):
        return (os.system, ("echo pwned",))


# ------------------------------------------------------------------------------ assets
def _run(root: Path, name: str, model) -> RunDir:
    config = {"model": "smallcnn", "dataset": "fashion-mnist", "method": "natural", "seed": 0,
              "model_kwargs": model_kwargs_for("fashion-mnist")}
    run = RunDir.create(root / name, config)
    run.append_metrics({"epoch": 1, "test_robust_acc": 0.1, "test_clean_acc": 0.5})
    state = {"epoch": 1, "step": torch.tensor(1)}
    run.save_checkpoint("epoch-0001", model, state)
    run.save_checkpoint("best", model, state, epoch=1)
    run.write_result({"best_epoch": 1})
    return run


def _swap_with_manifest(folder: Path, name: str, data: bytes) -> None:
    (folder / name).write_bytes(data)
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["files"][name] = {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
    (folder / "manifest.json").write_text(json.dumps(manifest))


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    root = tmp_path_factory.mktemp("assets")
    model = build_model("smallcnn", "fashion-mnist", seed=0)
    save_weights(model, root / "smallcnn.safetensors")
    save_weights(build_model("smallcnn", "cifar10", seed=0), root / "cifar.safetensors")
    data = (root / "smallcnn.safetensors").read_bytes()
    (root / "truncated.safetensors").write_bytes(data[: len(data) // 2])
    torch.save({"conv": Evil()}, root / "evil.pt")
    (root / "garbage.pt").write_bytes(b"\x80\x04 certainly not a pickle")
    (root / "bad.yaml").write_text("lr: [0.1,\nepochs 3\n")
    (root / "list.yaml").write_text("- 1\n- 2\n")
    (root / "afile.txt").write_text("a file\n")
    (root / "adir").mkdir()
    if os.geteuid() != 0:
        (root / "readonly").mkdir(mode=0o555)
    runs = root / "runroot"
    _run(runs, "good", model)
    for name in ("badconfig", "badresult", "badmetrics", "tampered", "evilstate"):
        _run(runs, name, model)
    (runs / "badconfig" / "config.json").write_text('{"model": "smallcnn",')
    (runs / "badresult" / "result.json").write_text("[]")
    (runs / "badmetrics" / "metrics.jsonl").write_text('{"epoch": 1}\nnot json\n{"epoch": 2}\n')
    weights = runs / "tampered" / "checkpoints" / "best" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-4] + b"evil")
    evil = io.BytesIO()
    torch.save({"epoch": 1, "hook": Evil()}, evil)
    _swap_with_manifest(runs / "evilstate" / "checkpoints" / "epoch-0001", "state.pt",
                        evil.getvalue())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        RunIndex(runs).rescan()
    return {"assets": str(root), "ckpt": str(root / "smallcnn.safetensors"),
            "runs": str(runs), "model": model, "root": root}


def _snapshot(*roots: Path) -> dict[str, float | None]:
    """Every path under the roots with the mtime of files (WAL side files excluded)."""
    seen = {}
    for root in roots:
        for path in root.rglob("*"):
            if not path.name.endswith(("-wal", "-shm")):
                seen[str(path)] = path.stat().st_mtime_ns if path.is_file() else None
    return seen


def _running_rows(*roots: Path) -> list[str]:
    rows = []
    for root in roots:
        db = root / "runs.sqlite"
        if db.is_file():
            con = sqlite3.connect(db)
            rows += [r[0] for r in con.execute("SELECT id FROM runs WHERE status = 'running'")]
            con.close()
    return rows


@pytest.fixture
def workspace(tmp_path, monkeypatch, assets):
    """An empty current folder (default runs root ./runs); yields a checker that nothing
    changed in it nor in the assets."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("ROBUSTLAYERS_RUNS", raising=False)
    roots = (tmp_path, assets["root"])
    before = _snapshot(*roots)

    def unchanged():
        after = _snapshot(*roots)
        assert after == before, sorted(set(after) ^ set(before)) or "a file was rewritten"
        assert _running_rows(Path(assets["runs"]), tmp_path / "runs") == []
    return unchanged


# ------------------------------------------------------------------------------ the CLI table
# (id, argv, exit status, words the error line must contain). "{x}" is filled from the assets.
CLI = [
    # command line itself
    ("no-command", [], 2, ["required: COMMAND"]),
    ("unknown-command", ["frobnicate"], 2, ["'frobnicate'"]),
    ("unknown-option", ["models", "--colour"], 2, ["--colour"]),
    # models / layers / data
    ("models-no-match", ["models", "zzz*"], 2, ["'zzz*'", "smallcnn"]),
    ("layers-unknown-model", ["layers", "nosuch"], 2, ["'nosuch'", "smallcnn"]),
    ("layers-unknown-dataset", ["layers", "smallcnn", "--dataset", "nosuch"], 2, ["'nosuch'"]),
    ("layers-garbage-checkpoint", ["layers", "smallcnn", "--checkpoint", "{assets}/garbage.pt"],
     2, ["garbage.pt", "weights_only=True"]),
    ("select-empty", ["layers", "smallcnn", "--select", ""], 2, ["empty selection ''"]),
    ("select-blank", ["layers", "smallcnn", "--select", "   "], 2, ["empty selection '   '"]),
    ("select-deep", ["layers", "smallcnn", "--select", DEEP], 2, ["more than 50 deep"]),
    ("select-long", ["layers", "smallcnn", "--select", CHAIN], 2, ["too deep", "at most 200"]),
    ("select-block", ["layers", "smallcnn", "--select", "block:9"], 2, ["block '9'", "layer1"]),
    ("select-kind", ["layers", "smallcnn", "--select", "kind:lstm"], 2, ["'lstm'", "conv"]),
    ("select-prefix", ["layers", "smallcnn", "--select", "near:conv"], 2, ["'near'", "kind"]),
    ("select-where", ["layers", "smallcnn", "--select", "where:big"], 2, ["'where:'"]),
    ("select-index", ["layers", "smallcnn", "--select", "index:99"], 2, ["index 99", "valid 0.."]),
    ("select-paren", ["layers", "smallcnn", "--select", "(all"], 2, ["missing ')'"]),
    ("select-minus", ["layers", "smallcnn", "--select", "all -layer1"], 2, ["'-'", "spaces"]),
    ("select-name", ["layers", "smallcnn", "--select", "conv9"], 2, ["'conv9'", "closest"]),
    ("data-unknown", ["data", "nosuch"], 2, ["'nosuch'", "fashion-mnist"]),
    ("data-missing-dir", ["data", "cifar10", "--data-dir", "/nonexistent"], 2, ["/nonexistent"]),
    ("data-dir-is-file", ["data", "fashion-mnist", "--data-dir", "{assets}/afile.txt"], 2,
     ["afile.txt"]),
    # runs
    ("runs-missing-root", ["runs", "list", "--root", "/nonexistent"], 2, ["/nonexistent"]),
    ("runs-root-is-file", ["runs", "list", "--root", "{assets}/afile.txt"], 2,
     ["afile.txt is a file"]),
    ("runs-bad-status", ["runs", "list", "--root", "{runs}", "--status", "done"], 2, ["'done'"]),
    ("runs-unknown-run", ["runs", "show", "nope", "--root", "{runs}"], 2, ["'nope'", "good"]),
    ("runs-bad-config", ["runs", "show", "badconfig", "--root", "{runs}"], 1,
     ["badconfig/config.json is not valid JSON", "line 1"]),
    ("runs-bad-result", ["runs", "show", "badresult", "--root", "{runs}"], 1,
     ["badresult/result.json holds the list"]),
    ("runs-bad-metrics", ["runs", "show", "badmetrics", "--root", "{runs}"], 1,
     ["badmetrics/metrics.jsonl line 2 is not valid JSON"]),
    ("runs-compare-one", ["runs", "compare", "good", "--root", "{runs}"], 2,
     ["at least two runs", "good"]),
    ("runs-compare-unknown", ["runs", "compare", "good", "gone", "--root", "{runs}"], 2,
     ["'gone'"]),
    ("runs-unknown-action", ["runs", "prune"], 2, ["'prune'"]),
    # evaluate: the model and its weights
    ("eval-missing-ckpt", ["evaluate", "--model", "smallcnn", "--checkpoint", "missing.pt"], 2,
     ["missing.pt"]),
    ("eval-ckpt-is-dir", ["evaluate", "--model", "smallcnn", "--checkpoint", "{assets}/adir"], 2,
     ["adir", "directory"]),
    ("eval-garbage-ckpt", ["evaluate", "--model", "smallcnn", "--checkpoint",
                           "{assets}/garbage.pt"], 2, ["garbage.pt", "refused"]),
    ("eval-evil-pickle", ["evaluate", "--model", "smallcnn", "--checkpoint", "{assets}/evil.pt"],
     2, ["evil.pt", "refused", "posix.system"]),
    ("eval-truncated", ["evaluate", "--model", "smallcnn", "--checkpoint",
                        "{assets}/truncated.safetensors"], 2, ["truncated.safetensors"]),
    ("eval-wrong-arch", ["evaluate", "--model", "smallcnn", "--checkpoint",
                         "{assets}/cifar.safetensors", *FM], 2,
     ["cifar.safetensors", "does not match the model", "shape mismatches"]),
    ("eval-unknown-model", ["evaluate", "--model", "nosuch", "--checkpoint", "{ckpt}"], 2,
     ["'nosuch'"]),
    ("eval-missing-run", ["evaluate", "--run", "/nonexistent"], 2, ["/nonexistent"]),
    ("eval-run-not-a-run", ["evaluate", "--run", "{assets}/adir"], 2,
     ["adir is not a run directory"]),
    ("eval-run-which", ["evaluate", "--run", "{runs}/good", "--which", "epoch-0009"], 2,
     ["'epoch-0009'", "best"]),
    ("eval-run-tampered", ["evaluate", "--run", "{runs}/tampered"], 1,
     ["tampered/checkpoints/best/model.safetensors is corrupt", "not loaded"]),
    ("eval-run-and-ckpt", ["evaluate", "--run", "{runs}/good", "--checkpoint", "{ckpt}"], 2,
     ["--checkpoint and --normalize go with --model"]),
    ("eval-model-no-ckpt", ["evaluate", "--model", "smallcnn"], 2, ["--model needs --checkpoint"]),
    # evaluate: attack settings
    ("eval-attack", [*EVAL, "--attack", "pgd,bim"], 2, ["'bim'", "fgsm"]),
    ("eval-eps", [*EVAL, "--eps", "abc"], 2, ["'abc'", "8/255"]),
    ("eval-norm", [*EVAL, "--norm", "l3"], 2, ["'l3'", "linf"]),
    ("eval-l2-no-eps", [*EVAL, "--norm", "l2"], 2, ["--norm l2 needs --eps"]),
    ("eval-steps-zero", [*EVAL, "--steps", "0"], 2, ["--steps", "0"]),
    ("eval-steps-text", [*EVAL, "--steps", "ten"], 2, ["'ten'"]),
    ("eval-restarts", [*EVAL, "--restarts", "0"], 2, ["--restarts", "0"]),
    ("eval-n-negative", [*EVAL, "--n-examples", "-1"], 2, ["--n-examples", "-1"]),
    ("eval-n-too-many", [*EVAL, "--n-examples", "100000"], 2, ["100000", "1..10000"]),
    ("eval-batch-zero", [*EVAL, "--batch-size", "0"], 2, ["--batch-size", "0"]),
    ("eval-dataset", [*EVAL, "--dataset", "imagenet"], 2, ["'imagenet'"]),
    ("eval-which-no-run", [*EVAL, "--which", "best"], 2, ["--which goes with --run"]),
    ("eval-device", [*EVAL, "--device", "tpu"], 2, ["'tpu'", "cpu"]),
    # evaluate --out, checked before any work
    ("eval-out-is-dir", [*EVAL, "--out", "{assets}/adir"], 2, ["adir", "is an existing folder"]),
    ("eval-out-under-file", [*EVAL, "--out", "{assets}/afile.txt/eval.json"], 2,
     ["afile.txt", "is a file"]),
    ("eval-out-read-only", [*EVAL, "--out", RO + "/eval.json"], 2, ["not writable"]),
    ("eval-out-long", [*EVAL, "--out", LONG + ".json"], 2, ["too long", "255"]),
    # diagnose
    ("diag-out-is-file", [*DIAG, "--out", "{assets}/afile.txt"], 2,
     ["afile.txt", "is a file; a folder is expected"]),
    ("diag-out-read-only", [*DIAG, "--out", RO + "/report"], 2, ["not writable"]),
    ("diag-out-long", [*DIAG, "--out", LONG], 2, ["too long", "hidden temporary copy"]),
    ("diag-analysis", [*DIAG, "--analyses", "psr,lrp"], 2, ["'lrp'", "criticality"]),
    ("diag-missing-run", ["diagnose", "--run", "/nonexistent"], 2, ["/nonexistent"]),
    ("diag-ckpt-no-model", ["diagnose", "--checkpoint", "{ckpt}"], 2, ["--model"]),
    ("diag-betas", [*DIAG, "--betas", "4,x"], 2, ["'4,x'"]),
    ("diag-default-beta", [*DIAG, "--betas", "4,6", "--default-beta", "8"], 2, ["--default-beta 8"]),
    ("diag-n-zero", [*DIAG, "--n-examples", "0"], 2, ["--n-examples", "0"]),
    ("diag-run-tampered", ["diagnose", "--run", "{runs}/tampered"], 1,
     ["model.safetensors is corrupt"]),
    # train rows that fail before any work
    ("train-method", ["train", "--method", "fast"], 2, ["'fast'", "fast-at"]),
    ("train-preset", ["train", "--preset", "rat"], 2, ["'rat'", "rat-cifar10"]),
    ("train-bad-yaml", ["train", "--config", "{assets}/bad.yaml"], 2, ["YAML", "line 3", "expected ',' or ']'"]),
    ("train-yaml-list", ["train", "--config", "{assets}/list.yaml"], 2, ["list.yaml", "mapping"]),
    ("train-config-missing", ["train", "--config", "nope.yaml"], 2, ["nope.yaml"]),
    ("train-config-dir", ["train", "--config", "{assets}/adir"], 2, ["adir"]),
    ("train-optimizer", ["train", "--optimizer", "lamb"], 2, ["'lamb'", "sgd"]),
    ("train-norm", ["train", "--norm", "l1"], 2, ["'l1'", "linf"]),
    ("train-eps", ["train", "--eps", "eight"], 2, ["'eight'"]),
    ("train-milestones", ["train", "--milestones", "a,b"], 2, ["'a,b'"]),
    ("train-set-unknown", ["train", "--set", "lrate=0.1"], 2, ["'lrate'"]),
    ("train-set-form", ["train", "--set", "lr"], 2, ["'lr'", "key=value"]),
    ("train-epochs", ["train", "--epochs", "0"], 2, ["epochs", "0"]),
    # config values of the wrong type or non-finite: each names its key
    ("train-freeze-int", ["train", "--set", "freeze=5"], 2, ["freeze", "5"]),
    ("train-data-dir-int", ["train", "--set", "data_dir=5"], 2, ["data_dir", "5"]),
    ("train-seed-text", ["train", "--set", "seed=abc"], 2, ["seed", "'abc'"]),
    ("train-augment-text", ["train", "--set", 'augment="no"'], 2, ["augment", "'no'"]),
    ("train-betas", ["train", "--set", "adam_betas=[0.9]"], 2, ["adam_betas", "[0.9]"]),
    ("train-milestones-text", ["train", "--set", "milestones=[a]"], 2, ["milestones", "'a'"]),
    ("train-groups-index", ["train", "--set", "param_groups.5.lr=0.1"], 2,
     ["param_groups", "'5'"]),
    ("train-lr-nan", ["train", "--lr", "nan"], 2, ["lr", "nan"]),
    ("train-lr-inf", ["train", "--lr", "inf"], 2, ["lr", "inf"]),
    ("train-gamma-nan", ["train", "--set", "gamma=.nan"], 2, ["gamma", "nan"]),
    ("train-eps-underscore", ["train", "--eps", "0_1"], 2, ["'0_1'"]),
    ("train-eps-tiny", ["train", "--eps", "1e-320"], 2, ["1e-320"]),
    ("train-freeze-empty", ["train", "--freeze", ""], 2, ["freeze", "empty"]),
    ("train-method-setting", ["train", "--method", "trades", "--gamma", "0.1"], 2,
     ["'gamma'", "'trades'"]),
    ("train-code", ["train", "--code", "A1B2", "--cut", "conv1"], 2, ["'A1B2'", "A1N2"]),
    ("train-attack-mode", ["train", "--attack-mode", "training"], 2, ["'training'", "eval"]),
    ("train-init-missing", ["train", "--init-from", "/nonexistent/run"], 2,
     ["/nonexistent/run"]),
    ("train-epochs-text", ["train", "--epochs", "many"], 2, ["'many'"]),
    ("train-resume-missing", ["train", "--resume", "/nonexistent"], 2, ["/nonexistent"]),
    ("train-resume-with-flags", ["train", "--resume", "{runs}/good", "--lr", "0.1"], 2,
     ["--lr", "--resume"]),
    ("train-freeze-syntax", ["train", "--method", "natural", "--freeze", "(((", "--epochs", "1",
                             "--train-size", "64", "--test-size", "32"], 2, ["'((('"]),
]


def _fill(argv, assets):
    return [a.format(**assets) if "{" in a and "(" not in a else a for a in argv]


@pytest.mark.parametrize("argv, code, words", [c[1:] for c in CLI], ids=[c[0] for c in CLI])
def test_cli_bad_input(argv, code, words, assets, workspace, capsys):
    argv = _fill(argv, assets)
    json_flag = ["--json"] if argv and argv[0] != "frobnicate" else []
    try:
        rc = main(argv + json_flag)
    except SystemExit as exit_:  # command-line parse errors exit like argparse
        rc = exit_.code
    out, err = capsys.readouterr()
    assert rc == code, err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if ": error: " in line]
    assert len(lines) == 1, err
    for word in words:
        assert _fill([word], assets)[0] in lines[0], lines[0]
    if json_flag:
        record = json.loads(out.strip().splitlines()[-1])
        assert record["kind"] != "internal" and record["exit_code"] == code
        assert record["error"] in lines[0]
    workspace()


# ------------------------------------------------------------------------------ the API table
def _model(assets):
    return assets["model"]


API = [
    # selections
    ("select-model-name", lambda a: select("smallcnn", "all"), errors.SelectionError,
     "got the str 'smallcnn'; build the model first"),
    ("select-empty", lambda a: select(_model(a), ""), errors.SelectionError, "empty selection ''"),
    ("select-blank", lambda a: select(_model(a), " \n"), errors.SelectionError, "empty selection"),
    ("select-int", lambda a: select(_model(a), 3), errors.SelectionError, "got the int 3"),
    ("select-none", lambda a: select(_model(a), None), errors.SelectionError, "NoneType None"),
    ("select-dict", lambda a: select(_model(a), {"layer1": 1}), errors.SelectionError,
     "got the dict"),
    ("select-deep", lambda a: select(_model(a), "(" * 5000 + "all" + ")" * 5000),
     errors.SelectionError, "more than 50 deep"),
    ("select-long", lambda a: select(_model(a), " | ".join(["layer1"] * 5000)),
     errors.SelectionError, "too deep"),
    ("select-built-deep", lambda a: [s := Selection.all()] and [s := s | Selection.all()
                                                                for _ in range(500)],
     errors.SelectionError, "too deep"),
    ("selection-names-int", lambda a: Selection.names("layer1", 7), errors.SelectionError,
     "non-empty strings"),
    ("selection-parse-list", lambda a: Selection.parse(["all"]), errors.SelectionError,
     "got the list ['all']"),
    ("selection-position", lambda a: Selection.position("near", "layer1"), errors.SelectionError,
     "'near'"),
    ("select-unknown-layer", lambda a: select(_model(a), "conv9"), errors.SelectionError,
     "'conv9'"),
    # surgery and parameter groups
    ("param-groups-string", lambda a: param_groups(_model(a), "block:1"), errors.ConfigError,
     "got the str 'block:1'"),
    ("param-groups-options", lambda a: param_groups(_model(a), [("all", 0.1)]),
     errors.ConfigError, "options must be a dict"),
    ("param-groups-pair", lambda a: param_groups(_model(a), [("all", {}, {})]),
     errors.ConfigError, "(selection, options) pair"),
    ("param-groups-model", lambda a: param_groups("smallcnn", [("all", {})]), errors.ConfigError,
     "got the str 'smallcnn'"),
    ("param-groups-default", lambda a: param_groups(_model(a), [], default=[0.1]),
     errors.ConfigError, "default must be a dict"),
    ("freeze-model-name", lambda a: freeze("smallcnn", "all"), errors.ConfigError,
     "freeze() expects a torch.nn.Module"),
    ("unfreeze-selection", lambda a: unfreeze(_model(a), 1.5), errors.SelectionError,
     "got the float 1.5"),
    ("reinit-seed", lambda a: reinit(_model(a), "all", seed="abc"), errors.ConfigError,
     "seed must be an int"),
    ("count-params-model", lambda a: count_params("smallcnn"), errors.ConfigError,
     "count_params() expects"),
    # checkpoints
    ("load-ckpt-model-name", lambda a: load_checkpoint("smallcnn", a["ckpt"]),
     errors.ConfigError, "load_checkpoint() expects a torch.nn.Module as 'model', got the str"),
    ("load-ckpt-evil", lambda a: load_checkpoint(_model(a), f"{a['assets']}/evil.pt"),
     errors.CheckpointError, "evil.pt: refused"),
    ("load-ckpt-garbage", lambda a: load_checkpoint(_model(a), f"{a['assets']}/garbage.pt"),
     errors.CheckpointError, "garbage.pt: refused"),
    ("load-ckpt-truncated", lambda a: load_checkpoint(
        _model(a), f"{a['assets']}/truncated.safetensors"), errors.CheckpointError,
     "truncated.safetensors: could not be read"),
    ("load-ckpt-mismatch", lambda a: load_checkpoint(
        _model(a), f"{a['assets']}/cifar.safetensors"), errors.CheckpointError,
     "cifar.safetensors: checkpoint does not match"),
    # data
    ("dataset-subset-float", lambda a: load_dataset("fashion-mnist", "test", subset=2.5),
     errors.DataError, "got 2.5"),
    ("dataset-subset-zero", lambda a: load_dataset("fashion-mnist", "test", subset=0),
     errors.DataError, "got 0"),
    ("dataset-subset-huge", lambda a: load_dataset("fashion-mnist", "test", subset=10 ** 6),
     errors.DataError, "1..10000 (the number of examples to keep), got 1000000"),
    ("dataset-subset-text", lambda a: load_dataset("fashion-mnist", "test", subset="100"),
     errors.DataError, "got '100'"),
    ("dataset-unknown", lambda a: load_dataset("imagenet"), errors.DataError, "'imagenet'"),
    ("dataset-split", lambda a: load_dataset("fashion-mnist", "valid"), errors.DataError,
     "'valid'"),
    # runs
    ("rundir-open-missing", lambda a: RunDir.open("/nonexistent/run"), errors.RunError,
     "/nonexistent/run does not exist"),
    ("rundir-open-not-path", lambda a: RunDir.open(42), errors.RunError, "got the int 42"),
    ("rundir-open-bad-config", lambda a: RunDir.open(f"{a['runs']}/badconfig"),
     errors.RunStoreError, "badconfig/config.json is not valid JSON (line 1"),
    ("rundir-bad-result", lambda a: RunDir.open(f"{a['runs']}/badresult").status,
     errors.RunStoreError, "result.json holds the list []"),
    ("rundir-bad-metrics", lambda a: RunDir.open(f"{a['runs']}/badmetrics").metrics(),
     errors.RunStoreError, "metrics.jsonl line 2"),
    ("rundir-evil-state", lambda a: RunDir.open(f"{a['runs']}/evilstate").load_checkpoint(
        "epoch-0001", _model(a)), errors.CheckpointCorrupt, "state.pt: refused"),
    ("rundir-tampered-weights", lambda a: RunDir.open(f"{a['runs']}/tampered").load_checkpoint(
        "best", _model(a)), errors.CheckpointCorrupt, "model.safetensors is corrupt"),
    ("rundir-load-into-name", lambda a: RunDir.open(f"{a['runs']}/good").load_checkpoint(
        "best", "smallcnn"), errors.ConfigError, "got the str 'smallcnn'"),
    ("train-api-string", lambda a: train_run("fast"),
     errors.ConfigError, "got the str 'fast'"),
    ("train-api-legacy-key", lambda a: train_run(
        {"method": "trades", "trades_bta": 1}), errors.ConfigError, "'trades_bta'"),
    ("train-api-resume-missing", lambda a: resume_run(
        "/nonexistent/run"), errors.RunError, "/nonexistent/run"),
    ("rundir-create-on-file", lambda a: RunDir.create(f"{a['assets']}/afile.txt", {}),
     errors.OutputPathError, "afile.txt' exists and is a file"),
    ("rundir-create-long", lambda a: RunDir.create(Path("runs") / LONG, {"model": "x"}),
     errors.OutputPathError, "is too long: 250 bytes"),
    ("rundir-create-config", lambda a: RunDir.create("runs/x", ["model"]), errors.ConfigError,
     "config must be a dict, got the list"),
    ("rundir-create-existing", lambda a: RunDir.create(f"{a['runs']}/good", {"model": "x"}),
     errors.RunError, "already exists"),
    ("load-run-which", lambda a: load_run_model(f"{a['runs']}/good", "latest"), errors.RunError,
     "no checkpoint 'latest'"),
    ("load-run-tampered", lambda a: load_run_model(f"{a['runs']}/tampered"),
     errors.CheckpointCorrupt, "model.safetensors is corrupt"),
    ("epoch-tag", lambda a: epoch_tag(-1), errors.ConfigError, "got -1"),
    ("index-root-file", lambda a: RunIndex(f"{a['assets']}/afile.txt"), errors.RunError,
     "afile.txt is a file"),
    ("index-unknown-run", lambda a: RunIndex(a["runs"]).get("gone"), errors.RunError, "'gone'"),
    ("index-status", lambda a: RunIndex(a["runs"]).list(status="done"), errors.ConfigError,
     "'done'"),
    ("index-filter", lambda a: RunIndex(a["runs"]).list(owner="me"), errors.ConfigError,
     "['owner']"),
    # output paths
    ("out-file-on-dir", lambda a: check_output_path(f"{a['assets']}/adir", "file"),
     errors.OutputPathError, "adir' is an existing folder"),
    ("out-dir-on-file", lambda a: check_output_path(f"{a['assets']}/afile.txt", "dir"),
     errors.OutputPathError, "afile.txt' exists and is a file"),
    ("out-read-only", lambda a: check_output_path(_fill([RO], a)[0] + "/x", "dir"),
     errors.OutputPathError, "is not writable"),
    ("out-kind", lambda a: check_output_path("x", "folder"), errors.OutputPathError, "'folder'"),
    # evaluation
    ("sanity-threat", lambda a: run_sanity_checks(_model(a), torch.rand(2, 1, 28, 28),
                                                  torch.zeros(2, dtype=torch.long), threat=0.1),
     ValueError, "ThreatModel"),
    ("threat-norm", lambda a: ThreatModel("l3", 0.1), ValueError, "'l3'"),
]


@pytest.mark.parametrize("call, error, words", [c[1:] for c in API], ids=[c[0] for c in API])
def test_api_bad_input(call, error, words, assets, workspace):
    with pytest.raises(error) as info:
        call(assets)
    assert isinstance(info.value, ValueError)  # old `except ValueError` callers keep working
    assert words in str(info.value), str(info.value)
    workspace()


def test_the_table_is_large_enough():
    assert len(CLI) + len(API) >= 80
