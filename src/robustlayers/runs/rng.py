"""Global RNG states in a form that ``torch.load(weights_only=True)`` accepts.

``torch.load(weights_only=True)`` refuses numpy arrays and numpy scalars, so the numpy state is
stored as an int64 tensor plus Python numbers. Python's ``random`` state is a tuple of ints,
which loads as is. Save ``capture_rng_state()`` under ``state["rng"]`` in a checkpoint and call
``restore_rng_state(state["rng"])`` after loading it.
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np


def capture_rng_state(*, cuda: bool | None = None) -> dict[str, Any]:
    """The state of Python's ``random``, numpy's global RNG, torch's CPU RNG and (when CUDA is
    in use) every CUDA device's RNG.

    Args:
        cuda: include CUDA RNG states. ``None`` (default) includes them when CUDA has already
            been initialised in this process (so a CPU-only run never initialises CUDA).

    Returns a dict with keys ``python``, ``numpy``, ``torch`` and, when included, ``cuda`` —
    every value loadable with ``torch.load(weights_only=True)``.
    """
    import torch

    name, key, pos, has_gauss, cached = np.random.get_state(legacy=True)
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": {
            "bit_generator": str(name),
            "key": torch.from_numpy(np.asarray(key, dtype=np.int64).copy()),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "torch": torch.get_rng_state(),
    }
    if cuda is None:
        cuda = torch.cuda.is_available() and torch.cuda.is_initialized()
    if cuda:
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Set the global RNGs from a dict made by :func:`capture_rng_state` (after a checkpoint
    round trip). Keys that are absent are left alone; CUDA states are restored for as many
    devices as both the record and this machine have."""
    import torch

    unknown = set(state) - {"python", "numpy", "torch", "cuda"}
    if unknown:
        raise ValueError(
            f"unknown RNG state keys {sorted(unknown)}; expected python, numpy, torch, cuda"
        )
    if "python" in state:
        version, internal, gauss = state["python"]
        random.setstate((int(version), tuple(int(v) for v in internal), gauss))
    if "numpy" in state:
        np_state = state["numpy"]
        key = np_state["key"]
        key = key.cpu().numpy() if isinstance(key, torch.Tensor) else np.asarray(key)
        np.random.set_state((
            np_state["bit_generator"],
            key.astype(np.uint32),
            int(np_state["pos"]),
            int(np_state["has_gauss"]),
            float(np_state["cached_gaussian"]),
        ))
    if "torch" in state:
        torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        cuda_states = state["cuda"]
        for device in range(min(len(cuda_states), torch.cuda.device_count())):
            torch.cuda.set_rng_state(cuda_states[device].cpu(), device)
