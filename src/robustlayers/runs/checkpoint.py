"""One checkpoint directory: ``model.safetensors`` + ``state.pt`` + ``manifest.json``.

A checkpoint is *complete* only if its ``manifest.json`` exists and the sha256 and size of both
files match it. The manifest is written last, so a crash mid-save leaves a checkpoint without a
manifest, which readers ignore.

Saving stages the three files in a hidden sibling directory and renames it into place; an
existing checkpoint of the same tag (``best`` is re-saved often) is first renamed aside to
``.old-TAG-*`` and removed only after the new one is in place, so a crash never leaves *no*
complete copy. Readers fall back to the ``.old-`` copy when the tag directory is missing.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from robustlayers.runs.atomic import (
    atomic_write_bytes,
    atomic_write_json,
    fsync_dir,
    safetensors_bytes,
)

if TYPE_CHECKING:  # torch is imported where used, so that the index works without it
    import torch
    from torch import nn

WEIGHTS_FILE = "model.safetensors"
STATE_FILE = "state.pt"
MANIFEST_FILE = "manifest.json"
MANIFEST_FORMAT = "robustlayers-checkpoint/1"

_TAG_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_EPOCH_RE = re.compile(r"^epoch-(\d+)$")


from robustlayers.errors import (  # noqa: E402,F401 (CheckpointCorrupt is re-exported)
    CheckpointCorrupt, CheckpointError, ConfigError, expect_module,
)


def epoch_tag(epoch: int) -> str:
    """The checkpoint tag of an epoch: ``epoch_tag(3) == "epoch-0003"``."""
    if not isinstance(epoch, int) or isinstance(epoch, bool) or epoch < 0:
        raise ConfigError(f"epoch must be a non-negative int, got {epoch!r}")
    return f"epoch-{epoch:04d}"


def tag_epoch(tag: str) -> int | None:
    """The epoch of an ``epoch-NNNN`` tag, else ``None``."""
    match = _EPOCH_RE.match(tag)
    return int(match.group(1)) if match else None


def check_tag(tag: str) -> str:
    """Validate a checkpoint tag (``best``, ``epoch-0003``, any simple name without slashes)."""
    if not isinstance(tag, str) or not _TAG_RE.match(tag):
        raise ConfigError(
            f"invalid checkpoint tag {tag!r}: use 'best', 'epoch-0003' (see epoch_tag) or a "
            "name of letters, digits, '_', '.', '-' not starting with a dot"
        )
    return tag


def unwrap_model(model: nn.Module) -> nn.Module:
    """The plain module under ``torch.compile`` / ``DataParallel`` / DDP wrappers, so that
    parameter names match ``create_model``'s."""
    from torch import nn

    while True:
        if hasattr(model, "_orig_mod"):
            model = model._orig_mod
        elif isinstance(model, (nn.DataParallel, nn.parallel.DistributedDataParallel)):
            model = model.module
        else:
            return model


def model_tensors(model: nn.Module) -> dict[str, torch.Tensor]:
    """``state_dict()`` on the CPU, contiguous, with shared storage (tied weights) cloned so that
    safetensors accepts it."""
    tensors: dict[str, torch.Tensor] = {}
    seen: set[tuple[int, int]] = set()
    for name, tensor in unwrap_model(model).state_dict().items():
        tensor = tensor.detach().to("cpu").contiguous()
        key = (tensor.untyped_storage().data_ptr(), tensor.storage_offset())
        if tensor.numel() and key in seen:
            tensor = tensor.clone()
        seen.add(key)
        tensors[name] = tensor
    return tensors


def _unsafe_path(obj: Any, path: str = "state") -> str | None:
    """Best-effort: the first place in ``obj`` holding a type weights_only loading refuses."""
    import torch

    if isinstance(obj, torch.Tensor) or obj is None:
        return None
    if type(obj) in (int, float, bool, str, bytes, complex, torch.dtype, torch.device, torch.Size):
        return None
    if isinstance(obj, dict) and type(obj).__module__ in ("builtins", "collections"):
        for key, value in obj.items():
            found = _unsafe_path(key, f"{path} key") or _unsafe_path(value, f"{path}[{key!r}]")
            if found:
                return found
        return None
    if type(obj) in (list, tuple, set, frozenset):
        for i, value in enumerate(obj):
            found = _unsafe_path(value, f"{path}[{i}]")
            if found:
                return found
        return None
    return f"{path} ({type(obj).__module__}.{type(obj).__qualname__})"


def state_bytes(state: Mapping[str, Any]) -> bytes:
    """``torch.save`` bytes of ``state``, checked to load with ``torch.load(weights_only=True)``.

    Raises ValueError naming the offending entry (e.g. a numpy array: use
    ``robustlayers.runs.capture_rng_state`` for RNG states, ``torch.from_numpy`` otherwise).
    """
    import torch

    if not isinstance(state, Mapping):
        raise ConfigError(f"checkpoint state must be a dict, got {type(state).__name__}")
    buffer = io.BytesIO()
    torch.save(dict(state), buffer)
    data = buffer.getvalue()
    try:
        torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as err:  # the unpickler raises UnpicklingError / RuntimeError
        where = _unsafe_path(dict(state)) or "an entry"
        raise ConfigError(
            f"checkpoint state would not load with torch.load(weights_only=True): {where} is "
            "not a tensor / number / str / list / tuple / dict. Convert numpy arrays with "
            "torch.from_numpy and record RNG states with robustlayers.runs.capture_rng_state(). "
            f"(torch said: {str(err).splitlines()[0][:200]})"
        ) from None
    return data


def _file_record(data: bytes) -> dict[str, Any]:
    return {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}


def write_checkpoint(
    ckpt_root: Path, tag: str, tensors: Mapping[str, torch.Tensor], state_data: bytes, epoch: int | None
) -> dict[str, Any]:
    """Write a complete checkpoint ``ckpt_root/tag`` (see module docstring); returns the manifest."""
    check_tag(tag)
    weights = safetensors_bytes(
        tensors, {"tag": tag, "epoch": "" if epoch is None else str(epoch)}
    )
    token = os.urandom(4).hex()
    stage = ckpt_root / f".tmp-{tag}-{os.getpid()}-{token}"
    stage.mkdir(parents=True)
    try:
        atomic_write_bytes(stage / WEIGHTS_FILE, weights)
        atomic_write_bytes(stage / STATE_FILE, state_data)
        manifest = {
            "format": MANIFEST_FORMAT,
            "tag": tag,
            "epoch": epoch,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "files": {WEIGHTS_FILE: _file_record(weights), STATE_FILE: _file_record(state_data)},
        }
        atomic_write_json(stage / MANIFEST_FILE, manifest)  # last: marks the checkpoint complete
        final = ckpt_root / tag
        old = None
        if final.exists():
            old = ckpt_root / f".old-{tag}-{token}"
            os.rename(final, old)
        os.rename(stage, final)
        fsync_dir(ckpt_root)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return manifest


def resolve_dir(ckpt_root: Path, tag: str) -> Path | None:
    """The directory holding checkpoint ``tag``: ``ckpt_root/tag``, or the ``.old-TAG-*`` copy a
    crash mid-swap left behind; ``None`` when neither exists."""
    final = ckpt_root / tag
    if final.is_dir():
        return final
    olds = sorted(
        (p for p in ckpt_root.glob(f".old-{tag}-*") if (p / MANIFEST_FILE).is_file()),
        key=lambda p: p.stat().st_mtime,
    )
    return olds[-1] if olds else None


def read_manifest(ckpt_dir: Path) -> dict[str, Any]:
    """The manifest of a checkpoint dir; CheckpointCorrupt when missing or unreadable."""
    path = ckpt_dir / MANIFEST_FILE
    if not path.is_file():
        raise CheckpointCorrupt(f"checkpoint {ckpt_dir} is incomplete: {path} is missing")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
        for name in (WEIGHTS_FILE, STATE_FILE):
            record = manifest["files"][name]
            if not isinstance(record["sha256"], str) or not isinstance(record["size"], int):
                raise TypeError(f"bad record for {name}: {record!r}")
    except (ValueError, KeyError, TypeError) as err:
        raise CheckpointCorrupt(f"checkpoint manifest {path} is unreadable: {err}") from None
    return manifest


def read_verified(ckpt_dir: Path, name: str, manifest: Mapping[str, Any]) -> bytes:
    """The bytes of one checkpoint file after checking them against the manifest (read once, so
    what is verified is what gets loaded)."""
    path = ckpt_dir / name
    expected = manifest["files"][name]
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise CheckpointCorrupt(f"checkpoint file {path} is missing") from None
    if len(data) != expected["size"]:
        raise CheckpointCorrupt(
            f"checkpoint file {path} is truncated or altered: {len(data)} bytes, manifest says "
            f"{expected['size']}; not loaded"
        )
    digest = hashlib.sha256(data).hexdigest()
    if digest != expected["sha256"]:
        raise CheckpointCorrupt(
            f"checkpoint file {path} is corrupt: sha256 {digest[:16]}… does not match the "
            f"manifest's {expected['sha256'][:16]}…; not loaded"
        )
    return data


def verify_dir(ckpt_dir: Path) -> dict[str, Any]:
    """Check both files of a checkpoint against its manifest; returns the manifest."""
    manifest = read_manifest(ckpt_dir)
    for name in (WEIGHTS_FILE, STATE_FILE):
        read_verified(ckpt_dir, name, manifest)
    return manifest


def load_weights_into(model: nn.Module, data: bytes, source: Path) -> None:
    """Load safetensors bytes into ``model`` (strict); CheckpointError listing key mismatches."""
    from safetensors.torch import load

    expect_module(model, function="load_checkpoint")
    try:
        tensors = load(data)
    except Exception as err:  # safetensors raises its own SafetensorError on a bad header
        raise CheckpointCorrupt(f"{source} is not a readable safetensors file "
                                f"({type(err).__name__}: {err}); not loaded") from None
    target = unwrap_model(model)
    expected = set(target.state_dict())
    missing, unexpected = sorted(expected - set(tensors)), sorted(set(tensors) - expected)
    if missing or unexpected:
        raise CheckpointError(
            f"weights in {source} do not fit the model: missing {missing[:10]}"
            f"{' …' if len(missing) > 10 else ''}, unexpected {unexpected[:10]}"
            f"{' …' if len(unexpected) > 10 else ''}"
        )
    try:
        target.load_state_dict(tensors, strict=True)
    except RuntimeError as err:  # shape mismatches
        raise CheckpointError(f"weights in {source} do not fit the model: {err}") from None


def load_state_bytes(data: bytes, map_location: Any = "cpu", *, source: Path | str = "state.pt"
                     ) -> dict[str, Any]:
    """``torch.load(weights_only=True)`` of verified state bytes. A file the restricted loader
    refuses (a tampered state holding Python objects, even with a matching manifest) raises
    CheckpointCorrupt, as a tampered weights file does; it is never unpickled unrestricted."""
    import torch

    try:
        state = torch.load(io.BytesIO(data), map_location=map_location, weights_only=True)
    except Exception as err:  # UnpicklingError, RuntimeError, EOFError, ...
        found = re.search(r"GLOBAL\s+([\w.]+)", str(err))
        detail = (f"it references the Python object {found.group(1)!r}" if found else
                  f"{type(err).__name__}: {(str(err).splitlines() or [''])[0][:120]}")
        raise CheckpointCorrupt(
            f"checkpoint file {source}: refused — it is not a plain state of tensors, numbers "
            f"and strings ({detail}). It was loaded with "
            "weights_only=True, and robustlayers never falls back to unrestricted unpickling "
            "(that can run arbitrary code); not loaded") from None
    if not isinstance(state, dict):
        raise CheckpointCorrupt(f"checkpoint file {source} holds {type(state).__name__}, not a "
                                "dict; not loaded")
    return state


def _tag_of_old(path: Path) -> str:
    """``.old-TAG-token`` → ``TAG``."""
    return path.name[len(".old-"):].rsplit("-", 1)[0]


def list_tags(ckpt_root: Path) -> list[str]:
    """Tags that have a manifest (not hash-verified), epochs ascending then others by name."""
    if not ckpt_root.is_dir():
        return []
    tags = {p.name for p in ckpt_root.iterdir() if not p.name.startswith(".")}
    tags |= {_tag_of_old(p) for p in ckpt_root.glob(".old-*")}
    complete = []
    for tag in tags:
        directory = resolve_dir(ckpt_root, tag)
        if directory is not None and (directory / MANIFEST_FILE).is_file():
            complete.append(tag)
    return sorted(complete, key=lambda t: (tag_epoch(t) is None, tag_epoch(t) or 0, t))


def epoch_tags_desc(ckpt_root: Path) -> list[str]:
    """Every ``epoch-NNNN`` tag present (complete or not), newest first."""
    if not ckpt_root.is_dir():
        return []
    names = {p.name for p in ckpt_root.iterdir() if tag_epoch(p.name) is not None}
    names |= {_tag_of_old(p) for p in ckpt_root.glob(".old-epoch-*")}
    return sorted((n for n in names if tag_epoch(n) is not None), key=tag_epoch, reverse=True)


def cleanup(ckpt_root: Path) -> None:
    """Remove staging leftovers of interrupted saves; move an ``.old-`` copy back into place
    when a crash mid-swap left its tag directory missing. Only the run's writer calls this."""
    if not ckpt_root.is_dir():
        return
    for stale in ckpt_root.glob(".tmp-*"):
        shutil.rmtree(stale, ignore_errors=True)
    for old in sorted(ckpt_root.glob(".old-*"), key=lambda p: p.stat().st_mtime):
        final = ckpt_root / _tag_of_old(old)
        if not final.exists() and (old / MANIFEST_FILE).is_file():
            os.rename(old, final)
        else:
            shutil.rmtree(old, ignore_errors=True)
    fsync_dir(ckpt_root)
