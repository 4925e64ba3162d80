"""RunDir: layout, metrics (torn lines, truncation), checkpoints (round trip, corruption,
incomplete ones, pruning), result and status."""

import json
import os
import random
import stat
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from robustlayers.runs import (
    CheckpointCorrupt,
    CheckpointWarning,
    RunDir,
    capture_rng_state,
    epoch_tag,
    iter_run_dirs,
    restore_rng_state,
)

CONFIG = {"model": "tiny", "dataset": "toy", "method": "pgd_at", "seed": 0,
          "model_kwargs": {"width": 4}, "eps": (8, 255)}


class Tiny(nn.Module):
    def __init__(self, width=4):
        super().__init__()
        self.fc = nn.Linear(3, width)
        self.bn = nn.BatchNorm1d(width)
        self.head = nn.Linear(width, 2)

    def forward(self, x):
        return self.head(torch.relu(self.bn(self.fc(x))))


def trained_tiny(seed=0):
    torch.manual_seed(seed)
    model = Tiny()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    for _ in range(2):
        opt.zero_grad()
        model(torch.randn(8, 3)).sum().backward()
        opt.step()
    return model, opt


@pytest.fixture
def run(tmp_path):
    return RunDir.create(tmp_path / "run", CONFIG)


def save_epochs(run, model, epochs):
    for epoch in epochs:
        run.save_checkpoint(epoch_tag(epoch), model, {"epoch": epoch})


# ---------------------------------------------------------------------- create / open
def test_create_writes_layout(run):
    names = sorted(p.name for p in run.path.iterdir())
    assert names == ["checkpoints", "config.json", "environment.json", "selections.json"]
    assert run.config["eps"] == [8, 255]  # stored as it reads back from JSON
    assert RunDir.open(run.path).config == run.config
    env = run.environment
    assert "torch" in env and "code_version" in env and env["created"]
    assert run.status == "running"


def test_create_refuses_existing_run_unless_resuming(run):
    with pytest.raises(ValueError, match="exist_ok=True"):
        RunDir.create(run.path, CONFIG)
    again = RunDir.create(run.path, CONFIG, exist_ok=True)
    assert again.config == run.config
    assert len(again.environment["resumes"]) == 1
    with pytest.raises(ValueError, match=r"differs .*\['seed'\]"):
        RunDir.create(run.path, {**CONFIG, "seed": 1}, exist_ok=True)


def test_resume_clears_failed_result_but_refuses_finished(run):
    run.mark_failed(RuntimeError("out of memory"))
    assert run.status == "failed" and "RuntimeError" in run.result["error"]
    resumed = RunDir.create(run.path, CONFIG, exist_ok=True)
    assert resumed.status == "running"
    resumed.write_result({"robust_acc": 0.4})
    assert resumed.status == "finished"
    with pytest.raises(ValueError, match="already finished"):
        RunDir.create(run.path, CONFIG, exist_ok=True)


def test_create_refuses_non_run_directory(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="not empty"):
        RunDir.create(tmp_path / "d", CONFIG)
    RunDir.create(tmp_path / "empty", CONFIG)  # an empty existing dir is fine
    (tmp_path / "empty2").mkdir()
    RunDir.create(tmp_path / "empty2", CONFIG)


def _fail_on_write(monkeypatch, name):
    """Make the atomic JSON write of file ``name`` inside RunDir.create raise OSError."""
    import robustlayers.runs.rundir as rundir_module

    real = rundir_module.atomic_write_json

    def write(path, obj, **kw):
        if Path(path).name == name:
            raise OSError(28, "No space left on device")
        return real(path, obj, **kw)

    monkeypatch.setattr(rundir_module, "atomic_write_json", write)


@pytest.mark.parametrize("failing", ["config.json", "environment.json", "selections.json"])
def test_failed_create_leaves_nothing_behind(tmp_path, monkeypatch, failing):
    """A crash between the first and the last file used to leave a non-empty directory
    without config.json, which open() rejects and create() refuses to reuse."""
    with monkeypatch.context() as m:
        _fail_on_write(m, failing)
        with pytest.raises(OSError, match="No space left"):
            RunDir.create(tmp_path / "run", CONFIG)
    assert list(tmp_path.iterdir()) == []  # no run dir, no temporary directory
    run = RunDir.create(tmp_path / "run", CONFIG)
    assert RunDir.open(run.path).config == run.config


def test_killed_create_leaves_only_a_hidden_temporary_dir(tmp_path, monkeypatch):
    """A process killed mid-create cannot clean up: what is left is a hidden ``.tmp-*``
    sibling that iter_run_dirs skips, and the run path itself is still free."""
    import robustlayers.runs.rundir as rundir_module

    with monkeypatch.context() as m:
        _fail_on_write(m, "selections.json")
        m.setattr(rundir_module.shutil, "rmtree", lambda *a, **k: None)  # no cleanup
        with pytest.raises(OSError):
            RunDir.create(tmp_path / "run", CONFIG)
    (leftover,) = tmp_path.iterdir()
    assert leftover.name.startswith(".tmp-run-") and (leftover / "config.json").is_file()
    assert not (tmp_path / "run").exists()
    assert list(iter_run_dirs(tmp_path)) == []
    run = RunDir.create(tmp_path / "run", CONFIG)
    assert list(iter_run_dirs(tmp_path)) == [run.path]


def test_bad_selection_fails_before_the_run_dir_exists(tmp_path):
    with pytest.raises(ValueError, match="selection record"):
        RunDir.create(tmp_path / "run", CONFIG, selections={"attack": 3})
    assert list(tmp_path.iterdir()) == []


def test_new_run_dir_has_normal_permissions_and_selections(tmp_path):
    run = RunDir.create(tmp_path / "run", CONFIG, selections={"frozen": ["fc"]})
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(run.path.stat().st_mode) == 0o777 & ~umask  # not mkdtemp's 0700
    assert run.selections == {"frozen": {"expression": None, "names": ["fc"]}}
    assert json.loads((run.path / "config.json").read_text()) == run.config


def test_create_through_a_symlink_to_an_empty_dir(tmp_path):
    (tmp_path / "target").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "target")
    run = RunDir.create(tmp_path / "link", CONFIG)
    assert run.path == tmp_path / "link" and (tmp_path / "link").is_symlink()
    assert (tmp_path / "target" / "config.json").is_file()
    assert RunDir.open(tmp_path / "link").config == run.config


def test_open_names_missing_config(tmp_path):
    with pytest.raises(ValueError, match="config.json is missing"):
        RunDir.open(tmp_path)
    with pytest.raises(ValueError, match="does not exist"):
        RunDir.open(tmp_path / "nope")


def test_selections_recorded(tmp_path):
    class Resolved:  # duck-typed ResolvedSelection
        expression = "kind:linear"
        names = ("fc", "head")

    run = RunDir.create(tmp_path / "r", CONFIG, selections={"attack": Resolved()})
    run.record_selections({"frozen": ["fc"]})
    assert run.selections == {
        "attack": {"expression": "kind:linear", "names": ["fc", "head"]},
        "frozen": {"expression": None, "names": ["fc"]},
    }
    run.record_selections({"frozen": ["fc"]})  # same names: fine
    with pytest.raises(ValueError, match="already recorded"):
        run.record_selections({"frozen": ["head"]})


# ---------------------------------------------------------------------- metrics
def test_metrics_append_and_read(run):
    for epoch in range(3):
        run.append_metrics({"epoch": epoch, "loss": torch.tensor(1.5), "acc": np.float32(0.25)})
    assert run.metrics() == [{"epoch": e, "loss": 1.5, "acc": 0.25} for e in range(3)]
    with pytest.raises(ValueError, match="int 'epoch'"):
        run.append_metrics({"loss": 1.0})


def test_torn_last_line_dropped_and_repaired(run):
    run.append_metrics({"epoch": 1, "loss": 1.0})
    with open(run.path / "metrics.jsonl", "ab") as handle:
        handle.write(b'{"epoch": 2, "lo')  # crash mid-append
    reader = RunDir.open(run.path)
    assert reader.metrics() == [{"epoch": 1, "loss": 1.0}]
    assert any("torn" in w for w in reader.warnings)
    writer = RunDir.open(run.path)  # e.g. the resumed process
    writer.append_metrics({"epoch": 2, "loss": 0.5})
    assert writer.metrics() == [{"epoch": 1, "loss": 1.0}, {"epoch": 2, "loss": 0.5}]


def test_corrupt_middle_line_is_an_error(run):
    (run.path / "metrics.jsonl").write_text('{"epoch": 1}\nnot json\n{"epoch": 2}\n')
    with pytest.raises(ValueError, match="line 2"):
        run.metrics()


def test_truncate_metrics(run):
    for epoch in range(1, 6):
        run.append_metrics({"epoch": epoch})
    assert run.truncate_metrics(after_epoch=3) == 2
    assert [r["epoch"] for r in run.metrics()] == [1, 2, 3]
    run.append_metrics({"epoch": 4})
    assert [r["epoch"] for r in run.metrics()] == [1, 2, 3, 4]
    assert sorted(p.name for p in run.path.iterdir() if p.name.startswith(".")) == []


# ---------------------------------------------------------------------- checkpoints
def test_checkpoint_round_trip_with_optimizer_and_rng(run):
    model, opt = trained_tiny()
    random.seed(5)
    np.random.seed(5)
    torch.manual_seed(5)
    rng = capture_rng_state()
    expected = (random.random(), np.random.rand(), torch.rand(1).item())
    state = {"epoch": 3, "optimizer": opt.state_dict(), "rng": rng, "method": {"alpha": 0.5}}
    path = run.save_checkpoint(epoch_tag(3), model, state)
    assert sorted(p.name for p in path.iterdir()) == ["manifest.json", "model.safetensors", "state.pt"]
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["epoch"] == 3 and manifest["tag"] == "epoch-0003"
    assert set(manifest["files"]) == {"model.safetensors", "state.pt"}

    raw = torch.load(path / "state.pt", weights_only=True)  # the plain loader accepts it
    assert isinstance(raw["rng"]["numpy"]["key"], torch.Tensor)
    assert isinstance(raw["rng"]["python"], tuple)
    assert isinstance(raw["rng"]["torch"], torch.Tensor)

    fresh, fresh_opt = Tiny(), None
    loaded = run.load_checkpoint("epoch-0003", fresh)
    for (name, a), b in zip(model.state_dict().items(), fresh.state_dict().values()):
        assert torch.equal(a, b), name
    fresh_opt = torch.optim.SGD(fresh.parameters(), lr=0.1, momentum=0.9)
    fresh_opt.load_state_dict(loaded["optimizer"])
    momentum = [fresh_opt.state[p]["momentum_buffer"] for p in fresh.parameters()]
    assert all(m is not None and m.abs().sum() > 0 for m in momentum)
    assert loaded["method"] == {"alpha": 0.5}

    random.random(), np.random.rand(), torch.rand(1)  # move the streams on
    restore_rng_state(loaded["rng"])
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected


def test_state_that_would_not_load_weights_only_is_refused(run):
    model, _ = trained_tiny()
    with pytest.raises(ValueError, match=r"state\['rng'\]\['np'\].*numpy"):
        run.save_checkpoint("epoch-0001", model, {"epoch": 1, "rng": {"np": np.random.get_state()}})
    assert run.checkpoint_tags() == []
    assert [p.name for p in run.checkpoint_root.iterdir()] == []


def test_epoch_tag_must_match_state(run):
    model, _ = trained_tiny()
    with pytest.raises(ValueError, match="does not match epoch"):
        run.save_checkpoint("epoch-0002", model, {"epoch": 3})
    with pytest.raises(ValueError, match="invalid checkpoint tag"):
        run.save_checkpoint("../escape", model, {"epoch": 3})


def test_wrong_model_is_a_clear_error(run):
    model, _ = trained_tiny()
    run.save_checkpoint("best", model, {"epoch": 1})
    with pytest.raises(ValueError, match="do not fit the model"):
        run.load_checkpoint("best", nn.Linear(3, 2))
    with pytest.raises(FileNotFoundError, match="available: best"):
        run.load_checkpoint("epoch-0009", model)


def flip_bit(path, offset=-20):
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", ["flip_weights", "flip_state", "truncate_weights", "delete_state"])
def test_corrupt_checkpoint_reported_and_skipped(run, damage):
    model, _ = trained_tiny()
    save_epochs(run, model, [1, 2])
    newest = run.checkpoint_root / "epoch-0002"
    if damage == "flip_weights":
        flip_bit(newest / "model.safetensors")
    elif damage == "flip_state":
        flip_bit(newest / "state.pt", offset=40)
    elif damage == "truncate_weights":
        data = (newest / "model.safetensors").read_bytes()
        (newest / "model.safetensors").write_bytes(data[: len(data) // 2])
    else:
        (newest / "state.pt").unlink()
    target = Tiny()
    before = {k: v.clone() for k, v in target.state_dict().items()}
    with pytest.raises(CheckpointCorrupt, match="epoch-0002/(model.safetensors|state.pt)"):
        run.load_checkpoint("epoch-0002", target)
    assert all(torch.equal(before[k], v) for k, v in target.state_dict().items())  # untouched
    with pytest.warns(CheckpointWarning, match="epoch-0002"):
        assert run.latest_checkpoint() == "epoch-0001"
    assert any("epoch-0002" in w for w in run.warnings)
    assert run.load_checkpoint("epoch-0001", target)["epoch"] == 1


def test_checkpoint_without_manifest_is_ignored(run):
    model, _ = trained_tiny()
    save_epochs(run, model, [1, 2])
    (run.checkpoint_root / "epoch-0002" / "manifest.json").unlink()  # crash before the manifest
    with pytest.warns(CheckpointWarning, match="incomplete"):
        assert run.latest_checkpoint() == "epoch-0001"
    assert run.checkpoint_tags() == ["epoch-0001"]
    with pytest.raises(CheckpointCorrupt, match="manifest.json is missing"):
        run.load_checkpoint("epoch-0002", Tiny())


def test_no_checkpoint_gives_none(run):
    assert run.latest_checkpoint() is None


def test_resaving_a_tag_replaces_it_and_crash_mid_swap_falls_back(run):
    model, _ = trained_tiny(0)
    run.save_checkpoint("best", model, {"epoch": 1})
    other, _ = trained_tiny(1)
    run.save_checkpoint("best", other, {"epoch": 2})
    assert run.load_checkpoint("best", Tiny())["epoch"] == 2
    assert sorted(p.name for p in run.checkpoint_root.iterdir()) == ["best"]
    # a crash between "rename best aside" and "rename the new one in":
    (run.checkpoint_root / "best").rename(run.checkpoint_root / ".old-best-deadbeef")
    assert run.checkpoint_tags() == ["best"]
    assert run.load_checkpoint("best", Tiny())["epoch"] == 2
    RunDir.create(run.path, CONFIG, exist_ok=True)  # resume puts it back
    assert sorted(p.name for p in run.checkpoint_root.iterdir()) == ["best"]


def test_prune_keeps_newest_complete_and_best(run):
    model, _ = trained_tiny()
    save_epochs(run, model, [1, 2, 3, 4, 5])
    run.save_checkpoint("best", model, {"epoch": 2})
    (run.checkpoint_root / "epoch-0005" / "manifest.json").unlink()  # incomplete newest
    (run.checkpoint_root / ".tmp-epoch-0006-1-abcd").mkdir()  # staging leftover
    with pytest.warns(CheckpointWarning):
        removed = run.prune_checkpoints(keep=2)
    assert removed == ["epoch-0001", "epoch-0002", "epoch-0005"]
    assert sorted(p.name for p in run.checkpoint_root.iterdir()) == ["best", "epoch-0003", "epoch-0004"]
    with pytest.raises(ValueError, match="keep"):
        run.prune_checkpoints(keep=0)


def test_tied_weights_are_saved(run):
    class Tied(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Linear(4, 4)
            self.b = nn.Linear(4, 4)
            self.b.weight = self.a.weight

    model = Tied()
    run.save_checkpoint("best", model, {})
    fresh = Tied()
    run.load_checkpoint("best", fresh)
    assert torch.equal(fresh.a.weight, model.a.weight)


# ---------------------------------------------------------------------- result
def test_result_and_status(run):
    run.write_result({"robust_acc": 0.41, "clean_acc": torch.tensor(0.8)})
    assert run.status == "finished"
    assert run.result["clean_acc"] == pytest.approx(0.8)
    with pytest.raises(ValueError, match="must be one of finished, failed, interrupted, diverged"):
        run.write_result({}, status="done")
