"""Loading and saving model weights safely.

* ``load_checkpoint`` reads ``.safetensors`` files (recognised by suffix or by content) or PyTorch
  files, the latter ALWAYS with ``torch.load(..., weights_only=True, map_location="cpu")``. There is
  no fallback to unrestricted unpickling: a file that the restricted unpickler refuses (a pickled
  ``nn.Module``, arbitrary Python objects, a crafted pickle) raises :class:`CheckpointError`.
* Accepted layouts: a raw state dict, or a dict wrapping one under ``state_dict``,
  ``model_state_dict``, ``model`` or ``net`` (looked up recursively, a few levels deep). Key
  prefixes ``module.`` (DataParallel) and ``model.`` / ``net.`` (wrappers) are stripped when doing
  so makes the keys match the model. Normalisation buffers stored in the file (``normalize.mean``,
  ``mu``, ``sigma``, ...) are ignored: zoo models keep mean/std as non-persistent buffers.
  ``*.num_batches_tracked`` missing from old (pre-PyTorch-0.4) checkpoints is tolerated.
* ``save_weights`` writes safetensors atomically with the run store's writer
  (:func:`robustlayers.runs.atomic.atomic_safetensors_save`: temporary file in the same
  directory, fsync, ``os.replace``, directory fsync).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file as _st_load_file
from torch import nn

# runs imports models only inside functions (runs.load), so this import cannot cycle
from robustlayers.runs.atomic import atomic_safetensors_save

WRAPPER_KEYS = ("state_dict", "model_state_dict", "model", "net")
STRIPPABLE_PREFIXES = ("module.", "model.", "net.")
_NORM_MODULES = {"normalize", "normalizer", "normalization", "norm", "norm_layer", "data_normalize"}
_MEAN_BUFFERS = {"mean", "mu", "new_mean"}
_STD_BUFFERS = {"std", "sigma", "new_std"}
_NORM_BUFFERS = _MEAN_BUFFERS | _STD_BUFFERS
METADATA_MEAN, METADATA_STD = "robustlayers.normalize.mean", "robustlayers.normalize.std"
_LIST_LIMIT = 10


from robustlayers.errors import CheckpointError, expect_module  # noqa: E402 (with the other errors)


@dataclass(frozen=True)
class LoadReport:
    """What :func:`load_checkpoint` did.

    ``missing``: model keys absent from the file; ``unexpected``: file keys the model lacks;
    ``mismatched``: ``(key, shape_in_file, shape_in_model)`` for keys present in both with different
    shapes; ``loaded``: keys copied into the model; ``source_format``: ``"safetensors"`` or
    ``"torch"``; ``wrapper_key``: the dict key the state dict was found under (``None`` for a raw
    one, e.g. ``"state_dict"`` or ``"checkpoint.model"``); ``stripped_prefixes``: prefixes removed
    from the file's keys; ``ignored``: file keys skipped on purpose (normalisation buffers) and
    tolerated missing ``num_batches_tracked`` keys; ``normalization``: the input mean/std the file
    stores (``{"mean": [...], "std": [...], "from": keys or "metadata"}``), None when it stores
    none.
    """

    missing: tuple[str, ...]
    unexpected: tuple[str, ...]
    loaded: tuple[str, ...]
    source_format: str
    mismatched: tuple[tuple[str, tuple[int, ...], tuple[int, ...]], ...] = ()
    wrapper_key: str | None = None
    stripped_prefixes: tuple[str, ...] = ()
    ignored: tuple[str, ...] = field(default=())
    normalization: dict | None = None

    @property
    def ok(self) -> bool:
        """True when every model key was loaded and nothing was left over."""
        return not (self.missing or self.unexpected or self.mismatched)


def _format_list(names, limit: int = _LIST_LIMIT) -> str:
    names = list(names)
    shown = ", ".join(str(n) for n in names[:limit])
    if len(names) > limit:
        shown += f", ... and {len(names) - limit} more"
    return shown


def _looks_like_safetensors(path: Path) -> bool:
    if path.suffix.lower() == ".safetensors":
        return True
    try:
        with open(path, "rb") as fh:
            head = fh.read(9)
    except OSError:
        return False
    # 8-byte little-endian header length followed by the JSON header's opening brace
    return len(head) == 9 and head[8:9] == b"{" and not head.startswith(b"PK")


def _is_state_dict(obj) -> bool:
    return isinstance(obj, dict) and len(obj) > 0 and all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()
    )


def _find_state_dict(obj, path: str = "", depth: int = 0):
    """Return (state_dict, wrapper_key) or (None, None)."""
    if _is_state_dict(obj):
        return obj, (path or None)
    if not isinstance(obj, dict) or depth >= 3:
        return None, None
    for key in WRAPPER_KEYS:
        if key in obj:
            found, where = _find_state_dict(obj[key], f"{path}.{key}" if path else key, depth + 1)
            if found is not None:
                return found, where
    return None, None


def _safetensors_metadata(path: Path) -> dict:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        return dict(handle.metadata() or {})


def _read(path: Path) -> tuple[dict, str, str | None, dict]:
    """(state dict, format, wrapper key, safetensors metadata)."""
    if _looks_like_safetensors(path):
        try:
            return (_st_load_file(str(path), device="cpu"), "safetensors", None,
                    _safetensors_metadata(path))
        except Exception as exc:  # corrupt header, truncated file, ...
            raise CheckpointError(f"{path}: could not be read as a safetensors file: {exc}") from exc
    try:
        obj = torch.load(str(path), weights_only=True, map_location="cpu")
    except Exception as exc:
        found = re.search(r"GLOBAL\s+([\w.]+)", str(exc))
        detail = (f"it references the Python object {found.group(1)!r}" if found
                  else f"{type(exc).__name__}: {(str(exc).splitlines() or [''])[0]}")
        raise CheckpointError(
            f"{path}: refused — the file is not a plain state dict of tensors ({detail}). "
            f"It was loaded with weights_only=True, which failed, and robustlayers never falls "
            f"back to unrestricted unpickling (that can run arbitrary code). Re-save the weights "
            f"with torch.save(model.state_dict(), ...) or robustlayers.models.save_weights."
        ) from exc
    state, where = _find_state_dict(obj)
    if state is None:
        keys = _format_list(list(obj)) if isinstance(obj, dict) else type(obj).__name__
        raise CheckpointError(
            f"{path}: no state dict found. Expected a dict of tensors, or a dict holding one under "
            f"one of {', '.join(WRAPPER_KEYS)}; the file holds: {keys}"
        )
    return state, "torch", where, {}


def _is_norm_key(key: str) -> bool:
    parts = key.split(".")
    if parts[-1] not in _NORM_BUFFERS:
        return False
    return len(parts) == 1 or parts[-2] in _NORM_MODULES


def stored_normalization(state: dict, metadata: dict | None = None) -> dict | None:
    """The input mean/std a checkpoint stores: safetensors metadata written by
    :func:`save_weights`, else the first module holding both a mean-like (``mean``, ``mu``,
    ``new_mean``) and a std-like (``std``, ``sigma``, ``new_std``) normalisation buffer.
    ``{"mean": [...], "std": [...], "from": ...}`` or None."""
    import json

    metadata = metadata or {}
    if METADATA_MEAN in metadata and METADATA_STD in metadata:
        return {"mean": [float(v) for v in json.loads(metadata[METADATA_MEAN])],
                "std": [float(v) for v in json.loads(metadata[METADATA_STD])],
                "from": "metadata"}
    found: dict[str, dict[str, str]] = {}
    for key in state:
        if _is_norm_key(key):
            owner, _, leaf = key.rpartition(".")
            found.setdefault(owner, {})["mean" if leaf in _MEAN_BUFFERS else "std"] = key
    for owner, keys in found.items():
        if {"mean", "std"} <= set(keys):
            mean, std = (state[keys[k]].detach().double().flatten() for k in ("mean", "std"))
            if mean.numel() == std.numel() and bool((std > 0).all()):
                return {"mean": [float(v) for v in mean], "std": [float(v) for v in std],
                        "from": [keys["mean"], keys["std"]]}
    return None


def _strip(keys: list[str], prefix: str) -> list[str]:
    return [k[len(prefix):] if k.startswith(prefix) else k for k in keys]


def _match_prefixes(file_keys: list[str], model_keys: set[str]) -> tuple[list[str], list[str]]:
    """Strip wrapper prefixes while it increases the number of keys matching the model."""
    keys, stripped = list(file_keys), []
    # DataParallel: strip even when nothing matches either way, so reports show the real names
    if keys and all(k.startswith("module.") for k in keys) and not any(
        k.startswith("module.") for k in model_keys
    ):
        keys, stripped = _strip(keys, "module."), ["module."]
    improved = True
    while improved:
        improved = False
        score = sum(k in model_keys for k in keys)
        for prefix in STRIPPABLE_PREFIXES:
            candidate = _strip(keys, prefix)
            if candidate != keys and sum(k in model_keys for k in candidate) > score:
                keys, improved = candidate, True
                stripped.append(prefix)
                break
    return keys, stripped


def _mismatch_message(path, model, missing, unexpected, mismatched, stripped) -> str:
    lines = [f"{path}: checkpoint does not match the model ({type(model).__name__})"]
    if missing:
        lines.append(f"  missing keys ({len(missing)}): {_format_list(missing)}")
    if unexpected:
        lines.append(f"  unexpected keys ({len(unexpected)}): {_format_list(unexpected)}")
    if mismatched:
        shown = [f"{k}: file {list(a)} vs model {list(b)}" for k, a, b in mismatched]
        lines.append(f"  shape mismatches ({len(mismatched)}): {_format_list(shown)}")
    if stripped:
        lines.append(f"  (prefixes stripped from the file's keys: {', '.join(stripped)})")
    lines.append("  Pass strict=False to load the matching keys and get a report of the rest.")
    return "\n".join(lines)


def load_checkpoint(model: nn.Module, path: str | os.PathLike, *, strict: bool = True) -> LoadReport:
    """Load weights from ``path`` into ``model`` (on the model's device and dtype).

    ``strict=True``: any missing, unexpected or shape-mismatched key raises :class:`CheckpointError`
    (listing them) and the model is left unchanged. ``strict=False``: every key present in both
    with matching shape is loaded; the rest is reported in the returned :class:`LoadReport`.
    A missing file raises ``FileNotFoundError`` naming the path.
    """
    expect_module(model, function="load_checkpoint")
    path = Path(path)
    if not path.is_file():
        where = " (it is a directory)" if path.is_dir() else ""
        raise FileNotFoundError(f"checkpoint not found: {path}{where}")
    state, fmt, wrapper, metadata = _read(path)

    model_state = model.state_dict()
    model_keys = set(model_state)
    keys, stripped = _match_prefixes(list(state), model_keys)
    renamed: dict[str, torch.Tensor] = {}
    ignored: list[str] = []
    for new, old in zip(keys, state):
        if new not in model_keys and _is_norm_key(new):
            ignored.append(old)
            continue
        if new in renamed:
            raise CheckpointError(
                f"{path}: key {new!r} appears twice after stripping prefixes {stripped}")
        renamed[new] = state[old]

    missing = [k for k in model_state if k not in renamed]
    tolerated = [k for k in missing if k.endswith("num_batches_tracked")]
    missing = [k for k in missing if k not in tolerated]
    unexpected = [k for k in renamed if k not in model_keys]
    mismatched = [
        (k, tuple(renamed[k].shape), tuple(model_state[k].shape))
        for k in model_state
        if k in renamed and tuple(renamed[k].shape) != tuple(model_state[k].shape)
    ]
    if strict and (missing or unexpected or mismatched):
        raise CheckpointError(_mismatch_message(path, model, missing, unexpected, mismatched, stripped))

    bad = {k for k, _, _ in mismatched}
    to_load = {k: v for k, v in renamed.items() if k in model_keys and k not in bad}
    result = model.load_state_dict(to_load, strict=False)
    # load_state_dict fills missing num_batches_tracked itself; anything else unexpected is a bug
    if result.unexpected_keys:
        raise CheckpointError(f"{path}: internal error, unexpected keys {result.unexpected_keys}")
    return LoadReport(
        missing=tuple(missing),
        unexpected=tuple(unexpected),
        loaded=tuple(k for k in model_state if k in to_load),
        source_format=fmt,
        mismatched=tuple(mismatched),
        wrapper_key=wrapper,
        stripped_prefixes=tuple(stripped),
        ignored=tuple(ignored) + tuple(tolerated),
        normalization=stored_normalization(state, metadata),
    )


def save_weights(model: nn.Module, path: str | os.PathLike) -> Path:
    """Write ``model.state_dict()`` to ``path`` as safetensors, atomically; returns the path.

    Tensors are copied to contiguous CPU memory (no shared storage, as safetensors requires).
    Normalisation mean/std are non-persistent buffers of zoo models: they are not written as
    tensors but as the file's metadata, so :func:`load_checkpoint` reports them. The
    write goes through :func:`robustlayers.runs.atomic.atomic_safetensors_save` (temporary file
    in the same directory, fsync, ``os.replace``, directory fsync whose errors propagate).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    import json

    tensors = {k: v.detach().to("cpu").clone().contiguous() for k, v in model.state_dict().items()}
    metadata = {"format": "pt", "writer": "robustlayers"}
    normalize = getattr(model, "normalize", None)
    if isinstance(getattr(normalize, "mean", None), torch.Tensor) and \
            isinstance(getattr(normalize, "std", None), torch.Tensor):
        metadata[METADATA_MEAN] = json.dumps(normalize.mean.flatten().tolist())
        metadata[METADATA_STD] = json.dumps(normalize.std.flatten().tolist())
    atomic_safetensors_save(path, tensors, metadata=metadata)
    return path
