"""The method interface of the training loop, and the registry of methods.

A method is a small object that computes the loss of one batch (``loss``) and may act on the
model between epochs (``on_epoch_start``: freeze/unfreeze a selection, rebuild the optimiser's
parameter groups through :class:`~robustlayers.train.context.TrainContext`) or around the
optimiser step (``before_optimizer_step``: AWP restores the perturbed weights there). The loop
never needs to know which method runs.

Order of calls made by :func:`robustlayers.train.loop.run_loop`::

    method.setup(ctx)                         # once, fresh run or resume (before state is restored)
    for epoch in epochs:
        method.on_epoch_start(ctx, epoch)
        for x, y in batches:
            optimizer.zero_grad()
            out = method.loss(ctx, x, y)      # StepOutput; model in train() mode
            out.loss.backward()
            method.before_optimizer_step(ctx)
            optimizer.step(); scheduler.step()
        method.on_epoch_end(ctx, epoch)
    checkpoint: method.state_dict() / method.load_state_dict(state) on resume
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Callable

import torch

from robustlayers.train.settings import NoSettings, build_settings, settings_dict


@dataclass
class StepOutput:
    """What a method returns for one batch.

    ``loss`` is the scalar that is back-propagated. ``logits_clean``/``logits_adv`` are used for
    the train accuracy metrics only (either may be None: the loop then measures clean accuracy
    itself in eval mode, and reports no adversarial train accuracy). ``x_adv`` is the batch the
    adversarial term was computed on (for tests and analyses); ``extra`` holds named scalars
    (e.g. the TRADES KL term) averaged into the epoch's metrics as ``train_<name>``.
    """

    loss: torch.Tensor
    logits_clean: torch.Tensor | None = None
    logits_adv: torch.Tensor | None = None
    x_adv: torch.Tensor | None = None
    extra: dict[str, torch.Tensor | float] = field(default_factory=dict)


class Method(abc.ABC):
    """Base class: override ``loss``; the other hooks default to doing nothing.

    ``adversarial`` says whether the method trains on adversarial inputs (it decides the default
    checkpoint-selection metric: robust accuracy, else clean accuracy). ``Settings`` is the
    dataclass of the method's own parameters (:mod:`robustlayers.train.settings`); the run's
    values are ``self.settings``, built from ``config.method_args`` (or ``settings``).
    """

    name: str = "method"
    adversarial: bool = True
    Settings = NoSettings

    def __init__(self, config, settings=None) -> None:
        self.config = config
        self.settings = settings if settings is not None else \
            build_settings(self.Settings, config.method_args, method=self.name)

    def setup(self, ctx) -> None:
        """Once, before the first epoch (also on resume, before the saved state is restored)."""

    def on_epoch_start(self, ctx, epoch: int) -> None:
        """Before each epoch (0-based): may call ctx.freeze / ctx.unfreeze / ctx.set_param_groups."""

    @abc.abstractmethod
    def loss(self, ctx, x: torch.Tensor, y: torch.Tensor) -> StepOutput:
        """The training loss of one batch (the loop calls backward on it)."""

    def before_optimizer_step(self, ctx) -> None:
        """After backward, before ``optimizer.step()`` (gradients are in ``.grad``)."""

    def on_epoch_end(self, ctx, epoch: int) -> None:
        """After the last batch of an epoch, before evaluation and checkpointing."""

    def state_dict(self) -> dict:
        """Anything the method needs to resume exactly (saved with every checkpoint)."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        """Restore what :meth:`state_dict` returned."""

    def describe(self) -> dict:
        """The method's resolved settings, recorded in the run (result.json)."""
        return {"name": self.name, **settings_dict(self.settings)}


_REGISTRY: dict[str, Callable[..., Method]] = {}


def register_method(name: str) -> Callable:
    """Class decorator: ``@register_method("pgd-at")`` makes ``make_method("pgd-at", cfg)`` work.
    Layer-targeted methods (partial AT, CLAT, RAT_LR, ...) register the same way."""

    def decorate(cls):
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise ValueError(f"method {name!r} is already registered")
        _REGISTRY[name] = cls
        cls.name = name
        return cls

    return decorate


def list_methods() -> list[str]:
    """Registered method names, in registration order."""
    return list(_REGISTRY)


def method_class(name: str) -> type[Method]:
    """The registered class of ``name``; an unknown name raises ValueError listing the valid
    ones."""
    import difflib

    key = str(name).strip().lower().replace("_", "-")
    if key not in _REGISTRY:
        close = difflib.get_close_matches(key, list(_REGISTRY), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(f"unknown method {name!r}{hint}; valid choices: "
                         f"{', '.join(_REGISTRY)}")
    return _REGISTRY[key]


def make_method(name: str, config, args: dict | None = None) -> Method:
    """A new method object for ``config``. Its settings come from ``args`` when given, else from
    ``config.method_args`` when ``name`` is the config's method (defaults otherwise)."""
    cls = method_class(name)
    if args is None:
        same = str(config.method).strip().lower().replace("_", "-") == cls.name
        args = config.method_args if same else {}
    return cls(config, build_settings(cls.Settings, args, method=cls.name))
