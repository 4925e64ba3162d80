"""Atomic writes: complete new content or the old content, never a partial file or a temp file."""

import json
import os

import pytest
import torch

from robustlayers.runs import (
    atomic_safetensors_save,
    atomic_torch_save,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
)


def test_writes_and_leaves_no_temp_files(tmp_path):
    atomic_write_bytes(tmp_path / "a.bin", b"\x00\x01")
    atomic_write_text(tmp_path / "b.txt", "héllo")
    atomic_write_json(tmp_path / "c.json", {"x": (1, 2), "t": torch.tensor(0.5)})
    assert (tmp_path / "a.bin").read_bytes() == b"\x00\x01"
    assert (tmp_path / "b.txt").read_text(encoding="utf-8") == "héllo"
    assert json.loads((tmp_path / "c.json").read_text()) == {"x": [1, 2], "t": 0.5}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.bin", "b.txt", "c.json"]


def test_permissions_follow_umask_not_mkstemp(tmp_path):
    atomic_write_text(tmp_path / "f", "x")
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "f").stat().st_mode & 0o777 == 0o666 & ~umask


def test_failing_replace_keeps_old_content(tmp_path, monkeypatch):
    target = tmp_path / "config.json"
    atomic_write_json(target, {"version": 1})

    def boom(src, dst):
        raise OSError("disk on fire")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="disk on fire"):
        atomic_write_json(target, {"version": 2})
    monkeypatch.undo()
    assert json.loads(target.read_text()) == {"version": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["config.json"]


def test_failure_mid_write_keeps_old_content(tmp_path, monkeypatch):
    target = tmp_path / "state.pt"
    atomic_torch_save(target, {"a": torch.ones(3)})
    real_save = torch.save

    def half_then_fail(obj, handle, *args, **kwargs):
        handle.write(b"partial garbage")
        raise RuntimeError("killed mid-write")

    monkeypatch.setattr(torch, "save", half_then_fail)
    with pytest.raises(RuntimeError, match="mid-write"):
        atomic_torch_save(target, {"a": torch.zeros(3)})
    monkeypatch.setattr(torch, "save", real_save)
    loaded = torch.load(target, weights_only=True)
    assert torch.equal(loaded["a"], torch.ones(3))
    assert [p.name for p in tmp_path.iterdir()] == ["state.pt"]


def test_failing_fsync_keeps_old_content(tmp_path, monkeypatch):
    target = tmp_path / "x.bin"
    atomic_write_bytes(target, b"old")

    def no_fsync(fd):
        raise OSError("fsync failed")

    monkeypatch.setattr(os, "fsync", no_fsync)
    with pytest.raises(OSError, match="fsync failed"):
        atomic_write_bytes(target, b"new content")
    monkeypatch.undo()
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["x.bin"]


def test_missing_directory_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        atomic_write_bytes(tmp_path / "nope" / "f", b"")


def test_safetensors_round_trip_and_metadata_check(tmp_path):
    from safetensors import safe_open

    path = tmp_path / "w.safetensors"
    atomic_safetensors_save(path, {"w": torch.arange(4.0)}, {"tag": "best"})
    with safe_open(str(path), "pt") as handle:
        assert handle.metadata() == {"tag": "best"}
        assert torch.equal(handle.get_tensor("w"), torch.arange(4.0))
    with pytest.raises(ValueError, match="must be str"):
        atomic_safetensors_save(path, {"w": torch.zeros(1)}, {"epoch": 3})
