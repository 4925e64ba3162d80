"""The model an eval-mode attack differentiates: batch-norm folded, channels-last on CPU.

In eval() a batch-norm layer is a fixed per-channel affine map, so a convolution followed by
batch-norm is one convolution (Ioffe & Szegedy 2015, Eq. (1) with the running statistics):

    BN(W * x + b) = (γ / √(σ² + ε)) ⊙ (W * x + b − μ) + β = W' * x + b',
    W' = W · γ/√(σ² + ε) (per output channel),   b' = (b − μ) · γ/√(σ² + ε) + β.

The attack then runs on a *copy* of the model with each such pair replaced by the folded conv
(the batch-norm becomes ``nn.Identity`` at the same path, so a feature captured there is
unchanged); every other module shares the model's own parameters and buffers, and the model's
weights are never written. The copy computes the same function, so input gradients agree to float
tolerance; this is checked whenever a copy is built by comparing its logits with the model's on
two of the attacked inputs. Pairs are found by forward hooks (a batch-norm whose input is exactly
a conv's output), once per model structure.

The copy is kept per model and reused by later calls while the model's structure and tensors
are the same objects; the tensors it derives (folded weights, channels-last weights) are
recomputed only when a tensor they come from has changed since (a parameter's version counter:
an optimiser step, ``load_state_dict``; a batch-norm's running statistics by value). Evaluating
a fixed model batch after batch therefore folds once; a training loop refolds after each update.

``channels_last``: images and conv weights of the copy in NHWC layout (oneDNN's fast path on CPU).
Values are identical; only the kernels (and so the last float bits) differ.

``"auto"`` (the default of every gradient attack) turns each on where it was measured faster
(``bench/cpu_speed.py``): on CPU, for eval-mode attacks on models without hooks. What was used is
in ``attack.last_report["fast_path"]``.
"""
from __future__ import annotations

import copy
import weakref

import torch
from torch import nn

from robustlayers.layers.compiled import is_compiled

CHOICES = (True, False, "auto")
_TOL = 1e-4  # max |logit difference| of the folded copy, relative to max(1, max |logit|)
_PLANS: "weakref.WeakKeyDictionary[nn.Module, tuple]" = weakref.WeakKeyDictionary()
_COPIES: "weakref.WeakKeyDictionary[nn.Module, _Copy]" = weakref.WeakKeyDictionary()


def check_choice(name: str, value):
    """Validate a ``fold_bn`` / ``channels_last`` option: True, False or "auto"."""
    if value is True or value is False or value == "auto":
        return value
    raise ValueError(f"{name} must be True, False or 'auto', got {value!r}")


def _has_hooks(model: nn.Module) -> bool:
    from torch.nn.modules import module as M

    if M._global_forward_hooks or M._global_forward_pre_hooks or M._global_backward_hooks:
        return True
    return any(m._forward_hooks or m._forward_pre_hooks or m._backward_hooks
               or getattr(m, "_backward_pre_hooks", None) for m in model.modules())


def _foldable_conv(m) -> bool:
    from torch.nn.utils import parametrize

    return (isinstance(m, nn.modules.conv._ConvNd) and not m.transposed
            and not parametrize.is_parametrized(m))


def _foldable_bn(m) -> bool:
    return isinstance(m, nn.modules.batchnorm._BatchNorm) and m.running_mean is not None \
        and m.running_var is not None and not m.training


def find_pairs(model: nn.Module, probe: torch.Tensor) -> tuple[tuple[str, str], ...]:
    """(conv, batch-norm) module paths where, in one eval forward of ``probe``, the batch-norm's
    input is the conv's output; modules called more than once are left out."""
    convs = {n: m for n, m in model.named_modules() if _foldable_conv(m)}
    bns = {n: m for n, m in model.named_modules() if _foldable_bn(m)}
    outputs: dict[int, tuple[str, torch.Tensor]] = {}
    calls: dict[str, int] = {}
    pairs: dict[str, str] = {}

    def on_conv(name):
        def hook(_m, _inputs, out):
            calls[name] = calls.get(name, 0) + 1
            outputs[id(out)] = (name, out)  # keep ``out`` alive so its id stays unique
        return hook

    def on_bn(name):
        def hook(_m, inputs):
            calls[name] = calls.get(name, 0) + 1
            found = outputs.get(id(inputs[0]))
            if found is not None and found[1] is inputs[0]:
                pairs[name] = found[0]
        return hook

    handles = [m.register_forward_hook(on_conv(n)) for n, m in convs.items()]
    handles += [m.register_forward_pre_hook(on_bn(n)) for n, m in bns.items()]
    try:
        with torch.no_grad():
            model(probe)
    finally:
        for h in handles:
            h.remove()
    used = [c for c in pairs.values()]
    return tuple((conv, bn) for bn, conv in pairs.items()
                 if calls.get(bn) == 1 and calls.get(conv) == 1 and used.count(conv) == 1
                 and convs[conv].out_channels == bns[bn].num_features)


def _plan(model: nn.Module, probe: torch.Tensor) -> tuple[tuple[str, str], ...]:
    key = (tuple((n, type(m)) for n, m in model.named_modules()), tuple(probe.shape[1:]))
    cached = _PLANS.get(model)
    if cached is not None and cached[0] == key:
        return cached[1]
    pairs = find_pairs(model, probe)
    _PLANS[model] = (key, pairs)
    return pairs


@torch.no_grad()
def fold_weights(conv: nn.Module, bn: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """(W', b') of the conv that equals ``bn(conv(x))`` in eval() (module docstring), computed
    in float64 and returned in the conv's dtype; neither module is changed."""
    w = conv.weight.detach()
    scale = torch.rsqrt(bn.running_var.double() + bn.eps)
    if bn.weight is not None:
        scale = scale * bn.weight.detach().double()
    bias = -bn.running_mean.double()
    if conv.bias is not None:
        bias = bias + conv.bias.detach().double()
    bias = bias * scale
    if bn.bias is not None:
        bias = bias + bn.bias.detach().double()
    shape = (-1,) + (1,) * (w.dim() - 1)
    return (w.double() * scale.view(shape)).to(w.dtype), bias.to(w.dtype)


def _set_tensor(module: nn.Module, name: str, value) -> None:
    module._parameters.pop(name, None)
    object.__setattr__(module, name, value)


class _Derived:
    """Tensors of the copy computed from tensors of the model (``compute(model) -> {attribute:
    tensor}`` on ``module``), recomputed when one of those has changed since:
    ``sources(model) -> (params, stats)``; a parameter by its version counter (every in-place
    update through PyTorch's operators bumps it), a batch-norm running statistic by value (the
    batch-norm kernel updates it without bumping the counter; one small comparison per call)."""

    def __init__(self, module: nn.Module, sources, compute, model: nn.Module):
        self.module, self.sources, self.compute = module, sources, compute
        self.versions = self.stats = None
        self.refresh(model)

    def refresh(self, model: nn.Module) -> None:
        params, stats = self.sources(model)
        versions = tuple(t._version for t in params if t is not None)
        if versions == self.versions and all(map(torch.equal, stats, self.stats)):
            return
        for name, value in self.compute(model).items():
            _set_tensor(self.module, name, value)
        self.versions, self.stats = versions, [t.clone() for t in stats]


class _Copy:
    """A built copy, the key it was built for and whether its logits were checked."""

    def __init__(self, key, work: nn.Module, derived: list[_Derived]):
        self.key, self.work, self.derived, self.checked = key, work, derived, False


def _layout(weight: torch.Tensor, channels_last: bool) -> torch.Tensor:
    return weight.contiguous(memory_format=torch.channels_last) \
        if channels_last and weight.dim() == 4 else weight


def _folded(conv_name: str, bn_name: str, channels_last: bool):
    """``(sources, compute)`` of a folded pair, read from the model (one fold per refresh)."""
    def sources(model):
        conv, bn = model.get_submodule(conv_name), model.get_submodule(bn_name)
        return (conv.weight, conv.bias, bn.weight, bn.bias), (bn.running_mean, bn.running_var)

    def compute(model):
        weight, bias = fold_weights(model.get_submodule(conv_name), model.get_submodule(bn_name))
        return {"weight": _layout(weight, channels_last), "bias": bias}
    return sources, compute


def _relaid(conv_name: str):
    """``(sources, compute)`` of a conv weight only put in channels-last layout."""
    return (lambda model: ((model.get_submodule(conv_name).weight,), ()),
            lambda model: {"weight": _layout(model.get_submodule(conv_name).weight.detach(),
                                             True)})


def build_copy(model: nn.Module, pairs, *, channels_last: bool):
    """``(copy, derived)``: a copy of ``model`` sharing its parameters and buffers, with each
    (conv, bn) of ``pairs`` folded and, with ``channels_last``, 4-D conv weights in
    channels-last layout; ``derived`` lists the copy's tensors computed from the model's."""
    memo = {id(t): t for t in (*model.parameters(), *model.buffers())}
    work = copy.deepcopy(model, memo)
    derived = []
    for conv_name, bn_name in pairs:
        derived.append(_Derived(work.get_submodule(conv_name),
                                *_folded(conv_name, bn_name, channels_last), model))
        parent, _, child = bn_name.rpartition(".")
        setattr(work.get_submodule(parent), child, nn.Identity())
    if channels_last:
        folded = {conv for conv, _ in pairs}
        derived += [_Derived(m, *_relaid(name), model) for name, m in work.named_modules()
                    if name not in folded and _foldable_conv(m) and m.weight.dim() == 4]
    return work, derived


def _copy_for(model: nn.Module, pairs, channels_last: bool) -> _Copy:
    """The kept copy of ``model`` for these settings, its derived tensors brought up to date;
    a new one when the structure, the tensor objects or their storage changed."""
    tensors = (*model.parameters(), *model.buffers())
    key = (tuple((n, type(m)) for n, m in model.named_modules()),
           tuple((id(t), t.data_ptr(), t.dtype, t.device) for t in tensors), pairs, channels_last)
    kept = _COPIES.get(model)
    if kept is not None and kept.key == key:
        with torch.no_grad():
            for d in kept.derived:
                d.refresh(model)
        return kept
    work, derived = build_copy(model, pairs, channels_last=channels_last)
    kept = _COPIES[model] = _Copy(key, work, derived)
    return kept


def _agrees(copy_out: torch.Tensor, out: torch.Tensor) -> bool:
    if not (torch.is_tensor(copy_out) and torch.is_tensor(out)) or copy_out.shape != out.shape:
        return False
    scale = max(1.0, out.abs().max().item())
    return bool((copy_out.float() - out.float()).abs().max().item() <= _TOL * scale)


def _reason_off(model, x, train_mode) -> str | None:
    if train_mode:
        return "attack runs in train mode"
    if x.device.type != "cpu":
        return f"measured on CPU only (device {x.device.type})"
    return _reason_copy_off(model)


def _reason_copy_off(model) -> str | None:
    """Why no copy of ``model`` may be made whatever the settings (None: it may)."""
    if is_compiled(model):
        return "compiled model (torch.compile)"
    if _has_hooks(model):
        return "model has forward/backward hooks (e.g. BPDA)"
    if any("forward" in vars(m) for m in model.modules()):
        return "a module's forward is patched on the instance (a copy may not be self-contained)"
    return None


def attack_model(model: nn.Module, x: torch.Tensor, *, fold_bn, channels_last,
                 train_mode: bool = False, keep=()) -> tuple[nn.Module, torch.Tensor, dict]:
    """``(runner, x_run, record)``: the module and input layout an attack should use for
    ``model`` (already in attack mode) and ``x``. ``keep``: module paths whose own output must
    stay as in ``model`` (a conv captured by feature-space PGD is not folded). ``record`` says
    what was used and why (for ``attack.last_report``): ``fold_bn`` lists the folded pairs as
    ``"conv+bn"`` paths, ``channels_last`` the layout, ``auto_off`` why "auto" stayed off."""
    reason = _reason_off(model, x, train_mode)
    record = {"fold_bn": [], "channels_last": False}
    if reason is not None and (fold_bn == "auto" or channels_last == "auto"):
        record["auto_off"] = reason
    for name, value in (("fold_bn", fold_bn), ("channels_last", channels_last)):
        refused = _reason_copy_off(model) or (train_mode and name == "fold_bn"
                                              and "attack runs in train mode")
        if value is True and refused:
            raise ValueError(f"{name}=True cannot be used here: {refused}; use {name}=False "
                             f"or 'auto'")
    want_fold = fold_bn is True or (fold_bn == "auto" and reason is None)
    want_cl = (channels_last is True or (channels_last == "auto" and reason is None)) \
        and x.dim() == 4 and any(_foldable_conv(m) and m.weight.dim() == 4
                                 for m in model.modules())
    pairs = ()
    if want_fold and any(map(_foldable_bn, model.modules())):
        try:
            pairs = tuple(p for p in _plan(model, x[:2]) if p[0] not in keep)
        except Exception as err:  # a model that cannot run on 2 of the examples
            if fold_bn is True:
                raise
            record["auto_off"] = f"probe forward failed ({type(err).__name__}); not folded"
    if not pairs and not want_cl:
        return model, x, record
    kept = _copy_for(model, pairs, want_cl)
    work = kept.work
    x_run = x.contiguous(memory_format=torch.channels_last) if want_cl else x
    if pairs and not kept.checked:
        with torch.no_grad():
            kept.checked = _agrees(work(x_run[:2]), model(x[:2]))
        if not kept.checked:
            del _COPIES[model]
            if fold_bn is True:
                raise ValueError(f"fold_bn=True: the folded model's logits differ from the "
                                 f"model's (pairs {list(pairs)}); use fold_bn=False")
            record["auto_off"] = "folded copy disagreed with the model; not folded"
            pairs = ()
            if not want_cl:
                return model, x, record
            work = _copy_for(model, (), True).work
    record.update(fold_bn=[f"{conv}+{bn}" for conv, bn in pairs], channels_last=want_cl)
    return work, x_run, record
