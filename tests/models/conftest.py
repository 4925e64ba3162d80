"""Shared helpers for the model-zoo tests (kept CPU-cheap: small batches, cached big models)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from robustlayers.models import create_model

PARAM_LEAF_TYPES = (nn.Conv2d, nn.BatchNorm2d, nn.Linear)


def param_leaf_order(model: nn.Module, x: torch.Tensor) -> list[str]:
    """Names of leaf modules with their own parameters, in forward execution order (via hooks)."""
    order: list[str] = []
    handles = []
    for name, mod in model.named_modules():
        if len(list(mod.children())) == 0 and len(list(mod.parameters(recurse=False))) > 0:
            handles.append(mod.register_forward_hook(lambda m, i, o, n=name: order.append(n)))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return order


@pytest.fixture(scope="module")
def zoo_cache():
    """Models built once per test module with default arguments (big ones cost seconds to build)."""
    cache: dict[str, nn.Module] = {}

    def get(name: str) -> nn.Module:
        if name not in cache:
            cache[name] = create_model(name, seed=0)
        return cache[name]

    return get
