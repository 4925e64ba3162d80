"""Turn whatever a user holds into the (x, y) tensors evaluation and analyses work on.

Accepted: ``x`` and ``y`` tensors (or numpy arrays); a robustlayers ``TensorData`` (``.x``,
``.y``); an ``(x, y)`` pair; a ``torch.utils.data.DataLoader`` yielding ``(x, y)`` batches; a
``torch.utils.data.Dataset`` whose items are ``(image, label)``. Images must already be float
tensors in [0, 1] (NCHW after stacking); labels become int64.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

_ACCEPTED = ("x and y tensors, a TensorData, an (x, y) pair, a torch DataLoader yielding (x, y) "
             "batches, or a torch Dataset of (image, label) items")


def _tensor(value: Any, what: str) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, np.ndarray):
        return torch.from_numpy(value)
    if isinstance(value, (int, np.integer)):
        return torch.tensor(int(value))
    raise ValueError(f"{what} must be a tensor, got {type(value).__name__}; accepted: {_ACCEPTED}")


def _pair(item: Any, where: str) -> tuple[Any, Any]:
    if isinstance(item, dict) and {"x", "y"} <= set(item):
        return item["x"], item["y"]
    if isinstance(item, (tuple, list)) and len(item) >= 2:
        return item[0], item[1]
    raise ValueError(f"{where} must be an (x, y) pair, got {type(item).__name__}; "
                     f"accepted: {_ACCEPTED}")


def _from_loader(loader) -> tuple[torch.Tensor, torch.Tensor]:
    xs, ys = [], []
    for i, batch in enumerate(loader):
        bx, by = _pair(batch, f"batch {i} of the DataLoader")
        xs.append(_tensor(bx, "a batch's images"))
        ys.append(_tensor(by, "a batch's labels").reshape(-1))
    if not xs:
        raise ValueError("the DataLoader yielded no batches")
    return torch.cat(xs), torch.cat(ys)


def _from_dataset(dataset) -> tuple[torch.Tensor, torch.Tensor]:
    n = len(dataset)
    if n == 0:
        raise ValueError("the Dataset is empty")
    xs, ys = [], []
    for i in range(n):
        ix, iy = _pair(dataset[i], f"item {i} of the Dataset")
        xs.append(_tensor(ix, "an item's image"))
        ys.append(_tensor(iy, "an item's label").reshape(()))
    return torch.stack(xs), torch.stack(ys)


def as_tensors(data: Any, y: Any = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(x, y)`` from any of the accepted inputs (see the module docstring); ``y`` goes with a
    tensor ``x`` only, and the pair is returned as given (``validate_batch`` checks it). Labels
    read from a Dataset or DataLoader become int64; bad input is a ValueError saying what is
    accepted."""
    from torch.utils.data import DataLoader, Dataset

    if y is not None:
        return data, y
    if isinstance(data, (torch.Tensor, np.ndarray)):
        raise ValueError("labels are missing: pass y with the images x, or give "
                         f"{_ACCEPTED}")
    elif hasattr(data, "x") and hasattr(data, "y"):
        x, y = _tensor(data.x, "data.x"), _tensor(data.y, "data.y")
    elif isinstance(data, DataLoader):
        x, y = _from_loader(data)
    elif isinstance(data, Dataset) or (hasattr(data, "__getitem__") and hasattr(data, "__len__")
                                       and not isinstance(data, (tuple, list, str, dict))):
        x, y = _from_dataset(data)
    elif isinstance(data, (tuple, list)) and len(data) == 2:
        x, y = _tensor(data[0], "x"), _tensor(data[1], "y")
    else:
        raise ValueError(f"cannot read images and labels from a {type(data).__name__}; "
                         f"accepted: {_ACCEPTED}")
    return x, (y.long() if not torch.is_floating_point(y) and y.dtype != torch.bool else y)


def dataset_name(data: Any) -> str | None:
    """The dataset a ``TensorData`` comes from (its ``info.name``), else None."""
    return getattr(getattr(data, "info", None), "name", None)
