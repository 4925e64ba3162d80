"""Which device work runs on: ``"cpu"``, ``"cuda"`` or ``"auto"`` (the one rule every entry
point uses)."""

from __future__ import annotations

DEVICE_CHOICES = ("auto", "cpu", "cuda")


def resolve_device(name: str | None = "auto"):
    """The ``torch.device`` for ``name``: ``"cpu"``, ``"cuda"`` or ``"auto"`` (cuda when
    available, else cpu; ``None`` means auto). An unknown name, or ``"cuda"`` on a machine
    without a usable CUDA device, raises ValueError naming the valid choices."""
    import torch

    if name is None:
        name = "auto"
    if not isinstance(name, str) or name not in DEVICE_CHOICES:
        raise ValueError(f"unknown device {name!r}; choose one of {', '.join(DEVICE_CHOICES)}")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' requested but CUDA is not available; valid choices "
                         "here: cpu, auto")
    return torch.device(name)
