"""Seeing through ``torch.compile``: names and modules of the model a compiled wrapper runs.

``torch.compile(model)`` returns an ``OptimizedModule`` whose only child is the model, so every
module path gains an ``_orig_mod.`` prefix. The layer map, selections and feature capture work on
:func:`unwrap` of a model, so a compiled model keeps the layer names of the model it wraps
(``conv1``, not ``_orig_mod.conv1``) and a selection written for one resolves on the other.

Forward hooks registered after compilation are not seen by the compiled code (TorchDynamo does
not guard on module hooks by default), so code that captures features with hooks runs the
wrapped module itself (:func:`unwrap`), uncompiled.
"""
from __future__ import annotations

import sys

from torch import nn


def is_compiled(model: nn.Module) -> bool:
    """True for the wrapper ``torch.compile(module)`` returns (an ``OptimizedModule``)."""
    eval_frame = sys.modules.get("torch._dynamo.eval_frame")  # never imported: nothing compiled
    return eval_frame is not None and isinstance(model, eval_frame.OptimizedModule)


def unwrap(model: nn.Module) -> nn.Module:
    """The module a (possibly nested) ``torch.compile`` wrapper runs; ``model`` itself if it is
    not compiled. Its parameters are the wrapper's, so hooks and surgery on it act on both."""
    while is_compiled(model):
        model = model._orig_mod
    return model
