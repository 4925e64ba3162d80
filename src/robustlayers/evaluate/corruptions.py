"""Common-corruption accuracy on CIFAR-10-C (SPECTRUM §6).

Layout (Hendrycks & Dietterich, as published): ``<corruption>.npy`` of shape (N, 32, 32, 3)
uint8 holding severities 1..5 as five consecutive equal blocks (N = 50 000 for the real data),
plus ``labels.npy``. Reading is :func:`robustlayers.data.load_corruption`. SPECTRUM uses all
50k images of 19 corruptions (:data:`robustlayers.data.CIFAR10C_CORRUPTIONS`).

Reported: accuracy and loss per corruption × severity, the mean over severities per corruption,
the mean over corruptions per severity, and the overall mean (equal weight per cell).
"""

from __future__ import annotations

import math
from numbers import Integral

from torch import nn

from .metrics import per_example_metrics, summarize
from .validate import validate_count, validate_model

SEVERITIES = (1, 2, 3, 4, 5)


def _mean(values) -> float:
    values = list(values)
    return math.fsum(values) / len(values)


def _check_severities(severities) -> tuple[int, ...]:
    out = tuple(severities)
    if not out:
        raise ValueError("severities is empty; choose from 1, 2, 3, 4, 5")
    for s in out:
        if isinstance(s, bool) or not isinstance(s, Integral) or not 1 <= s <= 5:
            raise ValueError(f"severity {s!r} is not valid; choose from 1, 2, 3, 4, 5")
    if len(set(out)) != len(out):
        raise ValueError(f"severities has repeated values: {out}")
    return tuple(int(s) for s in out)


def corruption_accuracy(model: nn.Module, data_dir, *, corruptions=None,
                        severities=SEVERITIES, n_examples: int | None = None,
                        batch_size: int = 256) -> dict:
    """Accuracy (and loss) of ``model`` on CIFAR-10-C.

    ``corruptions`` defaults to the 19 of SPECTRUM §6; ``n_examples`` keeps the first n images
    of every severity block (the same underlying test images in every cell). Returns::

        {"per_corruption_severity": {c: {"1": {"accuracy", "loss", "n"}, ...}},
         "per_corruption": {c: mean accuracy}, "per_severity": {"1": mean accuracy, ...},
         "mean": overall mean accuracy, "mean_loss": overall mean loss,
         "corruptions": [...], "severities": [...], "n_per_cell": n}

    Severity keys are strings so the dict round-trips through JSON unchanged.
    """
    from robustlayers.data import CIFAR10C_CORRUPTIONS, load_corruption

    validate_model(model)
    batch_size = validate_count(batch_size, name="batch_size")
    corruptions = tuple(CIFAR10C_CORRUPTIONS if corruptions is None else corruptions)
    if not corruptions:
        raise ValueError("corruptions is empty; choose from " + ", ".join(CIFAR10C_CORRUPTIONS))
    for c in corruptions:
        if not isinstance(c, str) or not c:
            raise ValueError(f"corruption names must be non-empty strings, got {c!r}")
    severities = _check_severities(severities)
    if n_examples is not None:
        n_examples = validate_count(n_examples, name="n_examples")
    cells: dict[str, dict[str, dict]] = {}
    n_cell = None
    for c in corruptions:
        cells[c] = {}
        for s in severities:
            data = load_corruption(data_dir, c, s)
            x, y = data.x, data.y
            if n_examples is not None:
                if n_examples > len(x):
                    raise ValueError(f"n_examples={n_examples} but {c} severity {s} has only "
                                     f"{len(x)} images")
                x, y = x[:n_examples], y[:n_examples]
            correct, losses = per_example_metrics(model, x, y, batch_size=batch_size)
            cells[c][str(s)] = summarize(correct, losses)
            n_cell = len(x) if n_cell is None else min(n_cell, len(x))
    acc = {c: {s: v["accuracy"] for s, v in row.items()} for c, row in cells.items()}
    return {
        "per_corruption_severity": cells,
        "per_corruption": {c: _mean(row.values()) for c, row in acc.items()},
        "per_severity": {str(s): _mean(acc[c][str(s)] for c in corruptions) for s in severities},
        "mean": _mean(a for row in acc.values() for a in row.values()),
        "mean_loss": _mean(v["loss"] for row in cells.values() for v in row.values()),
        "corruptions": list(corruptions),
        "severities": list(severities),
        "n_per_cell": n_cell,
    }
