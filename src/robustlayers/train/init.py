"""Start a run from existing weights: ``init_from`` (EARLY's stage 2, CLAT fine-tuning).

``init_from`` names a run directory with an optional checkpoint tag — ``RUN_DIR`` (= ``@last``),
``RUN_DIR@best``, ``RUN_DIR@last``, ``RUN_DIR@epoch-N`` — or a weights file (safetensors or a
state dict read weights-only). The new run has its own optimiser and schedule from epoch 0 (as
EARLY's stage 2: a fresh optimiser and the full schedule again). A source run must have trained
the same architecture (model name and ``model_kwargs``); a weights file must fit the model
exactly. The run records its source (:func:`load_init`): path, tag, the resolved checkpoint and
its epoch, the source run's config, and a SHA-256 of the loaded weights, so that every stage-2
run can be traced to its stage-1 run.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import torch
from torch import nn

from robustlayers.train.settings import ConfigError

_TAG = re.compile(r"^(best|last|epoch-\d+|\d+)$")


def parse_init_from(text: str) -> tuple[Path, str | None]:
    """``(path, tag)`` of ``RUN_DIR[@TAG]`` or a file path; the tag is None when not given."""
    head, sep, tail = str(text).rpartition("@")
    if sep and _TAG.match(tail):
        return Path(head), tail
    return Path(str(text)), None


def weights_hash(model: nn.Module) -> str:
    """SHA-256 over the model's state dict (names, shapes, dtypes and bytes, in key order)."""
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        t = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{tuple(t.shape)}:{t.dtype}".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()


def load_init(init_from: str, model: nn.Module, *, model_name: str, model_kwargs: dict) -> dict:
    """Load the weights ``init_from`` names into ``model`` and return the source record."""
    path, tag = parse_init_from(init_from)
    if path.is_dir():
        record = _load_from_run(path, tag or "last", model, model_name, model_kwargs)
    elif path.is_file():
        if tag is not None:
            raise ConfigError(f"init_from {init_from!r}: a tag (@{tag}) goes with a run "
                              f"directory, but {path} is a file")
        record = _load_from_file(path, model, model_name)
    else:
        raise FileNotFoundError(f"init_from {init_from!r}: {path} is neither a run directory "
                                f"nor a weights file")
    record["weights_sha256"] = weights_hash(model)
    return record


def _load_from_run(path: Path, tag: str, model, model_name: str, model_kwargs: dict) -> dict:
    from robustlayers.runs import RunDir
    from robustlayers.runs.load import resolve_which

    run = RunDir.open(path)
    source = run.config
    theirs = (source.get("model"), source.get("model_kwargs"))
    ours = (model_name, model_kwargs)
    if _rounded(theirs) != _rounded(ours):
        diff = [k for k in set(theirs[1] or {}) | set(ours[1])
                if (theirs[1] or {}).get(k) != ours[1].get(k)]
        raise ConfigError(
            f"init_from {path}: its model is {theirs[0]!r} with {theirs[1]}, this run's is "
            f"{ours[0]!r} with {ours[1]}" + (f" (they differ in {sorted(diff)})" if diff else "")
            + "; start from a run of the same architecture and dataset")
    number = tag[len("epoch-"):] if tag.startswith("epoch-") else tag
    which = int(number) if number.isdigit() else tag
    checkpoint = resolve_which(run, which)
    manifest = run.load_weights(checkpoint, model)
    return {"kind": "run", "path": str(path.resolve()), "tag": tag, "checkpoint": checkpoint,
            "epoch": manifest.get("epoch"), "config": source}


def _rounded(value):
    """``value`` with floats rounded to 6 significant digits (float32 round trips compare
    equal)."""
    if isinstance(value, float):
        return float(f"{value:.6g}")
    if isinstance(value, (list, tuple)):
        return type(value)(_rounded(v) for v in value)
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    return value


def _load_from_file(path: Path, model, model_name: str) -> dict:
    from robustlayers.models import load_checkpoint

    try:
        load_checkpoint(model, path)
    except ValueError as err:
        raise ConfigError(f"init_from {path} does not fit model {model_name!r}: {err}") from None
    return {"kind": "file", "path": str(path.resolve()), "tag": None, "checkpoint": None,
            "epoch": None, "config": None}
