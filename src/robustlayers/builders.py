"""Build a zoo model for a dataset (its channels, size, classes and input normalisation) and
optionally load a checkpoint into it — the one place where models and datasets meet.

Input normalisation of a checkpoint (``normalize=``; CLI ``--normalize``):

* ``"dataset"`` — the dataset's mean/std (robustlayers' own convention);
* ``"none"`` — raw [0, 1] inputs (mean 0, std 1), as many published robust CIFAR checkpoints;
* ``"MEAN/STD"`` — per-channel values, e.g. ``"0.4914,0.4822,0.4465/0.2471,0.2435,0.2616"``
  (or a ``(mean, std)`` pair in Python);
* ``None`` (not chosen) — the mean/std the checkpoint stores (normalisation buffers, or the
  metadata of ``save_weights``); when it stores none, the dataset's, with a note on stderr.

The choice is kept on the model as ``model.normalization`` (recorded by every result) and the
dataset as ``model.data_context`` (analyses take their default ε from it).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Callable

from torch import nn

from robustlayers.data import DatasetInfo, get_dataset_info
from robustlayers.models import create_model, load_checkpoint

NORMALIZE_CHOICES = ("dataset", "none", "MEAN/STD")
BIG_CHECKPOINT_BYTES = 50 * 2**20     # larger files announce their loading (progress)


def model_kwargs_for(dataset: str | DatasetInfo, *, activation: str = "relu") -> dict:
    """Keyword arguments of ``create_model`` that fit ``dataset``: in_channels, input_size,
    num_classes, and the dataset's mean/std for the model's own ``normalize`` module. Run
    configs record this dict as ``model_kwargs`` so a run's model can be rebuilt exactly."""
    info = _info(dataset)
    channels, height, _width = info.shape
    return {
        "num_classes": info.num_classes,
        "in_channels": channels,
        "input_size": height,
        "mean": list(info.mean),
        "std": list(info.std),
        "activation": activation,
    }


def _info(dataset: str | DatasetInfo) -> DatasetInfo:
    return dataset if isinstance(dataset, DatasetInfo) else get_dataset_info(dataset)


def _values(text: str, what: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"--normalize {what} {text!r} is not a comma-separated list of "
                         f"numbers") from None


def parse_normalize(value, dataset: str | DatasetInfo) -> dict | None:
    """The normalisation asked for: ``{"convention", "mean", "std"}``, or None when ``value``
    is None (not chosen). Bad values are a ValueError listing the choices."""
    if value is None:
        return None
    info = _info(dataset)
    channels = info.shape[0]
    if isinstance(value, (tuple, list)) and len(value) == 2:
        mean, std = value
        mean = [float(mean)] if isinstance(mean, (int, float)) else [float(v) for v in mean]
        std = [float(std)] if isinstance(std, (int, float)) else [float(v) for v in std]
        convention = "custom"
    elif isinstance(value, str) and value.strip().lower() == "dataset":
        mean, std, convention = list(info.mean), list(info.std), "dataset"
    elif isinstance(value, str) and value.strip().lower() == "none":
        mean, std, convention = [0.0] * channels, [1.0] * channels, "none"
    elif isinstance(value, str) and value.count("/") == 1:
        left, right = value.split("/")
        mean, std, convention = _values(left, "mean"), _values(right, "std"), "custom"
    else:
        raise ValueError(f"unknown normalisation {value!r}; valid choices: dataset (the "
                         f"dataset's mean/std), none (raw [0, 1] inputs) or MEAN/STD with one "
                         f"value per channel, e.g. 0.4914,0.4822,0.4465/0.2471,0.2435,0.2616")
    for what, values in (("mean", mean), ("std", std)):
        if len(values) not in (1, channels):
            raise ValueError(f"normalisation {what} has {len(values)} values but {info.name} "
                             f"images have {channels} channel(s); give one per channel or one")
    if any(v <= 0 for v in std):
        raise ValueError(f"normalisation std must be > 0, got {std}")
    return {"convention": convention, "mean": mean, "std": std}


def set_normalization(model: nn.Module, mean, std) -> None:
    """Set the zoo model's ``normalize`` mean/std (and its ``zoo_config``) in place."""
    model.normalize.set(mean, std)
    if isinstance(getattr(model, "zoo_config", None), dict):
        model.zoo_config["mean"] = [float(v) for v in model.normalize.mean.flatten()]
        model.zoo_config["std"] = [float(v) for v in model.normalize.std.flatten()]


def tag_model(model: nn.Module, *, dataset: str | None, eps: float | None = None,
              norm: str = "linf", source: str = "dataset", normalization: dict | None = None
              ) -> nn.Module:
    """Attach what the model belongs to: ``model.data_context`` (dataset, ε, norm, source),
    from which analyses take their default ε, and ``model.normalization`` (its input
    mean/std and where they come from; default: read from its ``normalize`` module)."""
    if (eps is None or norm != "linf") and dataset is not None:
        try:        # analyses attack in l-inf: an l2 run falls back to the dataset's l-inf ε
            eps, norm = get_dataset_info(dataset).default_eps, "linf"
        except ValueError:
            eps = None
    model.data_context = {"dataset": dataset, "eps": eps, "norm": norm, "source": source}
    normalize = getattr(model, "normalize", None)
    if not (hasattr(normalize, "mean") and hasattr(normalize, "std")):
        return model                   # a user's own module: nothing to record
    if normalization is None:
        normalization = {"convention": source, "source": source}
    if normalization is not None:
        normalization = dict(normalization,
                             mean=[round(float(v), 6) for v in normalize.mean.flatten()],
                             std=[round(float(v), 6) for v in normalize.std.flatten()])
        model.normalization = normalization
    return model


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _load(model: nn.Module, checkpoint: Path, name: str):
    from robustlayers.evaluate.progress import note

    size = checkpoint.stat().st_size if checkpoint.is_file() else 0
    big = size >= BIG_CHECKPOINT_BYTES
    if big:
        note(f"loading {name} weights from {checkpoint} ({size / 2**20:.0f} MiB) ...")
    started = time.perf_counter()
    report = load_checkpoint(model, checkpoint)
    if big:
        note(f"loaded {len(report.loaded)} tensors in {time.perf_counter() - started:.1f} s")
    return report


def _short(values) -> str:
    return "(" + ", ".join(f"{v:.4g}" for v in values) + ")"


def _assumed_note(checkpoint, info: DatasetInfo) -> str:
    mean = ", ".join(f"{v:.4g}" for v in info.mean)
    std = ", ".join(f"{v:.4g}" for v in info.std)
    return (f"robustlayers: note: {checkpoint} stores no input normalisation; assuming the "
            f"{info.name} mean/std (mean {mean}; std {std}), robustlayers' own convention. "
            f"Weights trained on raw [0, 1] inputs (e.g. TRADES, MART, AWP-TRADES checkpoints) "
            f"need --normalize none (Python: normalize='none'); other statistics: --normalize "
            f"MEAN/STD. See the README section 'Checkpoints and input normalisation'.")


def _resolve_normalization(model, checkpoint, chosen, stored, info, notify) -> dict:
    """Apply the chosen / stored / assumed mean/std to ``model``; return the record."""
    if chosen is not None:
        set_normalization(model, chosen["mean"], chosen["std"])
        if stored is not None and (stored["mean"], stored["std"]) != (chosen["mean"],
                                                                      chosen["std"]):
            notify(f"robustlayers: note: {checkpoint} stores mean {_short(stored['mean'])} / "
                   f"std {_short(stored['std'])}; the given normalisation "
                   f"({chosen['convention']}) is used instead")
        return {"convention": chosen["convention"], "source": "user"}
    if stored is not None:
        set_normalization(model, stored["mean"], stored["std"])
        return {"convention": "checkpoint", "source": "checkpoint", "stored_as": stored["from"]}
    if checkpoint is not None:
        notify(_assumed_note(checkpoint, info))
        return {"convention": "dataset", "source": "assumed"}
    return {"convention": "dataset", "source": "default"}


def build_model(name: str, dataset: str | DatasetInfo, *, checkpoint: str | Path | None = None,
                normalize=None, activation: str = "relu", seed: int | None = None,
                notify: Callable[[str], None] | None = None) -> nn.Module:
    """``create_model(name, seed=seed, **model_kwargs_for(dataset, activation=activation))``,
    then load ``checkpoint`` (strict, weights only) when given, with its input normalisation
    resolved as the module docstring says (``normalize``: ``"dataset"``, ``"none"``,
    ``"MEAN/STD"``, a ``(mean, std)`` pair, or None). ``notify`` receives the note printed when
    the convention had to be assumed (default: stderr). ``seed`` makes the weight
    initialisation deterministic without touching the global RNG (``create_model``)."""
    info = _info(dataset)
    chosen = parse_normalize(normalize, info)          # bad values fail before any work
    model = create_model(name, seed=seed, **model_kwargs_for(info, activation=activation))
    stored = None
    if checkpoint is not None:
        stored = _load(model, Path(checkpoint), name).normalization
    record = _resolve_normalization(model, checkpoint, chosen, stored, info, notify or _stderr)
    return tag_model(model, dataset=info.name, source="dataset", normalization=record)
