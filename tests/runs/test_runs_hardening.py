"""The run store under damage: output paths checked before work, a corrupt index rebuilt, an
unreadable run directory skipped with a warning naming it, parse errors naming their file, and a
tampered checkpoint state refused like a tampered weights file."""

import io
import json
import os
import pickle
import sqlite3
from pathlib import Path

import pytest
import torch
from torch import nn

from robustlayers.errors import (CheckpointCorrupt, ConfigError, OutputPathError, RunError,
                                 RunStoreError)
from robustlayers.runs import RunDir, RunIndex, check_output_path
from robustlayers.runs.index import RunStoreWarning
from robustlayers.runs.paths import TWIN_EXTRA

CONFIG = {"model": "tiny", "dataset": "toy", "method": "pgd-at", "seed": 0, "model_kwargs": {}}


def read_only_folder(tmp_path) -> Path:
    """A folder this process cannot write: /sys for root (root ignores permission bits,
    not sysfs), a chmod 555 folder for everyone else."""
    if os.geteuid() == 0:
        return Path("/sys")
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    return folder


def listing(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


# ----------------------------------------------------------------------------- output paths
def test_output_path_accepts_new_and_existing_paths_and_creates_nothing(tmp_path):
    (tmp_path / "old.json").write_text("{}")
    assert check_output_path(tmp_path / "a" / "b" / "run", "dir") == tmp_path / "a/b/run"
    assert check_output_path(tmp_path / "old.json", "file") == tmp_path / "old.json"
    assert check_output_path(tmp_path, "dir") == tmp_path
    assert listing(tmp_path) == {"old.json"}  # the probe file is gone, no folder made


@pytest.mark.parametrize("kind, make, message", [
    ("dir", lambda t: (t / "f").write_text("x") and t / "f", "exists and is a file"),
    ("file", lambda t: (t / "d").mkdir() or t / "d", "is an existing folder"),
    ("dir", lambda t: (t / "f").write_text("x") and t / "f" / "sub", "is a file, so no folder"),
    ("file", lambda t: (t / "f").write_text("x") and t / "f" / "x.json", "is a file, so no"),
    ("dir", lambda t: t / ("r" * 250), f"hidden temporary copy written first adds {TWIN_EXTRA}"),
    ("file", lambda t: t / ("e" * 245 + ".json"), "is too long: 250 bytes"),
    ("dir", lambda t: t / ("x" * 300) / "run", "this filesystem allows 255 per name"),
    ("dir", lambda t: t.joinpath(*["d" * 200] * 21), "path is too long"),
])
def test_output_path_refusals(tmp_path, kind, make, message):
    path = make(tmp_path)
    before = listing(tmp_path)
    with pytest.raises(OutputPathError, match=message):
        check_output_path(path, kind)
    assert listing(tmp_path) == before


def test_output_path_in_a_read_only_folder(tmp_path):
    folder = read_only_folder(tmp_path)
    with pytest.raises(OutputPathError, match="is not writable|read-only") as info:
        check_output_path(folder / "out" / "eval.json", "file")
    assert str(folder) in str(info.value) and info.value.exit_code == 2


@pytest.mark.parametrize("path, kind, message", [
    ("", "dir", "non-empty path"), (None, "file", "NoneType"), (5, "dir", "int 5"),
    ("x", "folder", "kind must be one of"),
])
def test_output_path_bad_arguments(path, kind, message):
    with pytest.raises(OutputPathError, match=message):
        check_output_path(path, kind)


def test_run_dir_with_a_name_too_long_for_its_twin_leaves_nothing(tmp_path):
    with pytest.raises(OutputPathError, match="too long"):
        RunDir.create(tmp_path / "runs" / ("n" * 250), CONFIG)
    assert listing(tmp_path) == set()


# ----------------------------------------------------------------------------- the index
def make_run(root: Path, name: str) -> RunDir:
    run = RunDir.create(root / name, CONFIG)
    run.append_metrics({"epoch": 1, "robust_acc": 0.25})
    return run


@pytest.mark.parametrize("damage", [
    lambda p: p.write_bytes(b"this is not a database" * 100),
    lambda p: p.write_bytes(p.read_bytes()[:100] + os.urandom(4000)),
    lambda p: sqlite3.connect(p).executescript("DROP TABLE runs; CREATE TABLE runs (id TEXT)"),
])
def test_corrupt_index_is_rebuilt_from_the_run_dirs(tmp_path, damage):
    root = tmp_path / "runs"
    for name in ("a", "b"):
        make_run(root, name)
    RunIndex(root).rescan()
    damage(root / "runs.sqlite")
    with pytest.warns(RunStoreWarning, match="was unreadable .* rebuilt it from the 2 run"):
        index = RunIndex(root)
        rows = index.list()
    assert [r["id"] for r in rows] == ["a", "b"] and rows[0]["robust_acc_best"] == 0.25
    aside = [p for p in root.glob("runs.sqlite.corrupt-*") if not p.name.endswith(("-wal", "-shm"))]
    assert len(aside) == 1  # kept for inspection, with its WAL files if it had any
    assert RunIndex(root).ids() == ["a", "b"]  # the new index is sound


def test_index_that_is_a_folder_is_a_clear_error(tmp_path):
    (tmp_path / "runs.sqlite").mkdir()
    with pytest.raises(RunStoreError, match="runs.sqlite is a folder"):
        RunIndex(tmp_path)


@pytest.mark.parametrize("file, content, message", [
    ("config.json", "{oops", r"config.json is not valid JSON \(line 1, column 2"),
    ("config.json", "[1]", "config.json holds the list"),
    ("result.json", '{"status": ', "result.json is not valid JSON"),
    ("environment.json", "\xff\xfe", "environment.json"),
    ("metrics.jsonl", '{"epoch": 1}\n"text"\n{"epoch": 2}\n', "metrics.jsonl line 2 is not a"),
    ("metrics.jsonl", '{"epoch": 1}\n{bad\n{"epoch": 2}\n', "metrics.jsonl line 2 is not valid"),
])
def test_unreadable_run_is_skipped_with_a_warning_naming_it(tmp_path, file, content, message):
    root = tmp_path / "runs"
    make_run(root, "good")
    bad = make_run(root, "bad")
    (bad.path / file).write_text(content, encoding="latin-1")
    index = RunIndex(root)
    with pytest.warns(RunStoreWarning, match=f"skipped run directory {bad.path}: .*{message}"):
        assert index.rescan() == 2
    assert index.ids() == ["good"]
    with pytest.raises(RunStoreError, match=message) as info:
        RunIndex(root).upsert(bad.path)  # asked for by name, it is an error
    assert info.value.exit_code == 1


def test_unknown_run_and_bad_filters_are_library_errors(tmp_path):
    index = RunIndex(tmp_path)
    with pytest.raises(RunError, match="unknown run 'nope'"):
        index.get("nope")
    with pytest.raises(ConfigError, match="unknown status 'done'"):
        index.list(status="done")
    (tmp_path / "file").write_text("x")
    with pytest.raises(RunError, match="is a file"):
        RunIndex(tmp_path / "file")


# ----------------------------------------------------------------------------- checkpoints
class Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def saved_run(tmp_path) -> tuple[RunDir, nn.Module]:
    run = RunDir.create(tmp_path / "run", CONFIG)
    model = nn.Linear(2, 2)
    run.save_checkpoint("epoch-0001", model, {"epoch": 1, "step": torch.tensor(3)})
    return run, model


def rewrite_with_manifest(run: RunDir, name: str, data: bytes) -> None:
    """Replace a checkpoint file and update the manifest as a careful attacker would."""
    import hashlib

    folder = run.checkpoint_root / "epoch-0001"
    (folder / name).write_bytes(data)
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["files"][name] = {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
    (folder / "manifest.json").write_text(json.dumps(manifest))


@pytest.mark.parametrize("name", ["state.pt", "model.safetensors"])
def test_tampered_file_with_a_matching_manifest_is_refused(tmp_path, name):
    run, model = saved_run(tmp_path)
    payload = io.BytesIO()
    torch.save({"epoch": 1, "evil": Evil()}, payload) if name == "state.pt" else \
        payload.write(pickle.dumps(Evil()))
    rewrite_with_manifest(run, name, payload.getvalue())
    before = [p.detach().clone() for p in model.parameters()]
    with pytest.raises(CheckpointCorrupt, match=f"{name}.*not loaded") as info:
        run.load_checkpoint("epoch-0001", model)
    assert info.value.exit_code == 1
    if name == "state.pt":
        assert "weights_only=True" in str(info.value) and "refused" in str(info.value)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))


@pytest.mark.parametrize("name", ["state.pt", "model.safetensors"])
def test_tampered_file_without_manifest_update_is_refused_alike(tmp_path, name):
    run, model = saved_run(tmp_path)
    path = run.checkpoint_root / "epoch-0001" / name
    path.write_bytes(path.read_bytes()[:-1] + b"!")
    with pytest.raises(CheckpointCorrupt, match=f"checkpoint file {path} is corrupt: sha256"):
        run.load_checkpoint("epoch-0001", model)


def test_loading_into_a_model_name_is_a_clear_error(tmp_path):
    run, _ = saved_run(tmp_path)
    with pytest.raises(ConfigError, match="expects a torch.nn.Module as 'model', got the str "
                                          "'smallcnn'; build the model first"):
        run.load_checkpoint("epoch-0001", "smallcnn")
