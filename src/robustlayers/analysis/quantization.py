"""Intermediate-feature quantisation (SPECTRUM §4, App. C).

q(x) = ⌊βx⌋/β applied element-wise to *all channels* of one intermediate tensor, inserted with a
forward hook (output of a module) or forward pre-hook (input of a module). Placements:

* ``conv0``            — output of the first conv layer in execution order (the stem conv,
                         before its BN/ReLU, as in SPECTRUM's released code);
* ``layerN`` (a stage) — for residual stages whose last block has an ``act`` module: the *input*
                         of that ``act`` = post-residual-add, pre-ReLU stage output
                         (SPECTRUM's released code);
                         otherwise the output of the stage's last activation module (e.g. the
                         small CNN's conv blocks), or the stage output when it does not end in
                         an activation (PreAct ResNet stages end in the residual add);
* ``input:PATH`` / ``output:PATH`` / ``PATH`` — the input / output of any module path.

Evaluation (SPECTRUM §4): clean accuracy; BPDA_δ — PGD-20 with budget δ on the quantised model
whose quantiser has a straight-through (identity) backward, α = δ/10 (as SPECTRUM's test PGD in
its released code), random start, the images then scored on the true ⌊·⌋ forward;
Transfer-PGD_δ-20 — SPECTRUM's test PGD-20 (α = δ/10) on the unquantised model, adversarial
images quantised to 8 bit, evaluated on the quantised model; next to the unquantised model's
clean and PGD-20 accuracy (the same test attack). Both step sizes are parameters
(``bpda_alpha_over_eps``, ``test_alpha_over_eps``) and recorded with their rule. Plain PGD on the quantised
model (true ⌊·⌋ gradient = 0; BPDA's α, so only the backward differs) is reported at the default
β as a gradient-masking demonstration: its accuracy is *not* a robustness number.
Best placement = the (placement, β) with the highest BPDA accuracy averaged over the δ grid
(ties: higher transfer accuracy, then higher clean accuracy).
"""

from __future__ import annotations

import contextlib
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

from robustlayers.analysis._common import (
    attack_record, data_shape, is_activation, jsonable, make_pgd, resolve_eps, split_data,
)
from robustlayers.attacks import describe_eps, quantize_8bit, straight_through
from robustlayers.evaluate.metrics import clean_metrics
from robustlayers.evaluate.progress import task
from robustlayers.evaluate.robust import run_attack
from robustlayers.evaluate.validate import validate_count

DEFAULT_BETAS = (4, 6, 8, 10, 12)
DEFAULT_BETA = 8
BPDA_ALPHA_OVER_EPS = 0.1    # SPECTRUM's BPDA_δ: α = δ/10 (its released code)
TEST_ALPHA_OVER_EPS = 0.1    # SPECTRUM's test PGD_δ-20: α = δ/10 (its released code)
_PASSIVE = {"maxpool2d", "avgpool2d", "adaptiveavgpool2d", "adaptivemaxpool2d", "dropout",
            "dropout2d", "flatten", "identity"}


class Quantizer(nn.Module):
    """q(x) = ⌊βx⌋/β (SPECTRUM §4). ``straight_through=True`` keeps the forward values and makes
    the backward the identity (BPDA, via robustlayers.attacks.straight_through); otherwise
    autograd sees ⌊·⌋ (zero gradient)."""

    def __init__(self, beta: float, straight_through: bool = False):
        super().__init__()
        if not beta > 0:
            raise ValueError(f"beta must be > 0, got {beta}")
        self.beta = float(beta)
        self.straight_through = bool(straight_through)

    def quantize(self, x: torch.Tensor) -> torch.Tensor:
        """⌊βx⌋/β with autograd's own (zero) gradient."""
        return torch.floor(x * self.beta) / self.beta

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.straight_through:
            return straight_through(self.quantize)(x)
        return self.quantize(x)

    def extra_repr(self) -> str:
        return f"beta={self.beta:g}, straight_through={self.straight_through}"


@dataclass(frozen=True)
class Placement:
    """Where a quantiser goes: the ``input`` or ``output`` of module ``module``."""

    spec: str
    module: str
    where: str

    def describe(self) -> str:
        return f"{self.where} of {self.module}"


def _kind(module: nn.Module) -> str:
    return type(module).__name__.lower()


def _ends_in_act(module: nn.Module) -> bool:
    """A residual block of the zoo: its last child is the post-add activation ``act``."""
    children = list(module.named_children())
    return bool(children) and children[-1][0] == "act" and is_activation(children[-1][1])


def default_placements(model: nn.Module) -> list[str]:
    """``conv0`` plus every top-level *container* stage with parameters that is neither stem
    nor head (ResNet-18: conv0, layer1…layer4; small CNN: conv0, layer1, layer2; a flat model
    of single layers: conv0 only — name other points explicitly)."""
    blocks = getattr(model, "layer_blocks", None) or {}
    out = ["conv0"]
    for name, child in model.named_children():
        if name == "normalize" or blocks.get(name, name) in ("stem", "head"):
            continue
        if next(child.children(), None) is None or next(child.parameters(), None) is None:
            continue
        if blocks or any(isinstance(m, nn.Conv2d) for m in child.modules()):
            out.append(name)
    return out


def resolve_placement(model: nn.Module, spec: str, *, input_shape=None) -> Placement:
    """Turn a placement text into (module path, input|output); see the module docstring."""
    from robustlayers.layers import layer_map, resolve_module

    text = str(spec).strip()
    for where in ("input", "output"):
        if text.startswith(where + ":"):
            path = text[len(where) + 1:]
            resolve_module(model, path)
            return Placement(text, path, where)
    names = dict(model.named_modules())
    if text == "conv0" and "conv0" not in names:
        convs = [info.name for info in layer_map(model, input_shape).layers
                 if info.kind == "conv"]
        if not convs:
            raise ValueError("placement 'conv0' needs a conv layer; the model has none")
        return Placement(text, convs[0], "output")
    module = resolve_module(model, text)
    children = list(module.named_children())
    if children and _ends_in_act(children[-1][1]):
        return Placement(text, f"{text}.{children[-1][0]}.act", "input")
    if _ends_in_act(module):
        return Placement(text, f"{text}.act", "input")
    leaves = [(n, m) for n, m in module.named_modules() if not list(m.children()) and n]
    while leaves and _kind(leaves[-1][1]) in _PASSIVE:
        leaves.pop()
    if leaves and is_activation(leaves[-1][1]):
        return Placement(text, f"{text}.{leaves[-1][0]}", "output")
    return Placement(text, text, "output")


@contextlib.contextmanager
def quantized(model: nn.Module, placement: Placement, beta: float, *,
              straight_through: bool = False):
    """Context manager: ``model`` with q inserted at ``placement`` (hook removed on exit).
    Raises ValueError if the hooked module runs more than once per forward (a shared module
    would be quantised at every use)."""
    from robustlayers.layers import resolve_module

    quantizer = Quantizer(beta, straight_through)
    module = resolve_module(model, placement.module)
    calls = []

    def pre_hook(_m, args):
        calls.append(1)
        return (quantizer(args[0]),) + tuple(args[1:])

    def post_hook(_m, _args, output):
        calls.append(1)
        return quantizer(output)

    def check(_m, args):
        calls.clear()

    def verify(_m, _args, _out):
        if len(calls) > 1:
            raise ValueError(f"module {placement.module!r} runs {len(calls)} times per forward; "
                             f"quantising it would act at every use — choose another placement "
                             f"(e.g. input:/output: of a module used once)")

    handles = [model.register_forward_pre_hook(check), model.register_forward_hook(verify)]
    if placement.where == "input":
        handles.append(module.register_forward_pre_hook(pre_hook))
    else:
        handles.append(module.register_forward_hook(post_hook))
    try:
        yield model
    finally:
        for handle in handles:
            handle.remove()


def _delta_key(eps: float) -> str:
    return f"{eps * 255:g}/255"


def _mean_over(values: dict) -> float:
    return float(np.mean(list(values.values()))) if values else float("nan")


@dataclass(frozen=True)
class GridAttacks:
    """The PGD attacks of the grid at budget δ: ``test`` (SPECTRUM's test PGD, α =
    test_alpha_over_eps·δ) for the unquantised baseline and the transfer images; ``bpda`` (α =
    bpda_alpha_over_eps·δ) for BPDA and the plain-PGD masking demo."""

    steps: int
    test_alpha_over_eps: float
    bpda_alpha_over_eps: float
    seed: int

    def test(self, eps: float):
        return make_pgd(eps, steps=self.steps, alpha=self.test_alpha_over_eps * eps,
                        seed=self.seed)

    def bpda(self, eps: float):
        return make_pgd(eps, steps=self.steps, alpha=self.bpda_alpha_over_eps * eps,
                        seed=self.seed)

    def record(self, eps: float, default_beta: float) -> dict:
        return {
            "bpda": {"attack": attack_record(self.bpda(eps)),
                     "backward": "straight-through (identity) through the quantiser",
                     "scored_on": "the quantised model (true floor forward)",
                     "alpha_over_eps": self.bpda_alpha_over_eps,
                     "alpha_rule": _rule(self.bpda_alpha_over_eps)},
            "transfer": {"source": "the unquantised model",
                         "attack": attack_record(self.test(eps)),
                         "alpha_over_eps": self.test_alpha_over_eps,
                         "alpha_rule": _rule(self.test_alpha_over_eps),
                         "images": "quantised to 8 bit before the quantised model"},
            "baseline_pgd": {"model": "the unquantised model",
                             "attack": attack_record(self.test(eps)),
                             "alpha_over_eps": self.test_alpha_over_eps,
                             "alpha_rule": _rule(self.test_alpha_over_eps)},
            "pgd_masked": {"attack": attack_record(self.bpda(eps)),
                           "alpha_over_eps": self.bpda_alpha_over_eps,
                           "alpha_rule": _rule(self.bpda_alpha_over_eps),
                           "note": "true floor gradient (zero): gradient masking demo, "
                                   f"beta={default_beta:g} only; not a robustness number"},
        }


def _rule(ratio: float) -> str:
    """The step-size rule as text, naming SPECTRUM's when it is the one used."""
    text = f"alpha = {ratio:g}*delta"
    return text + " (SPECTRUM's code: delta/10)" if ratio == TEST_ALPHA_OVER_EPS else text


# two adapters over the shared evaluation code (no logic of their own), to keep the grid short
def _accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int) -> float:
    return clean_metrics(model, x, y, batch_size=batch_size)["accuracy"]


def _adversarial(attack, model, x, y, batch_size: int) -> torch.Tensor:
    return run_attack(model, attack, x, y, batch_size=batch_size)[0]


def _check_grid(betas, eps_grid, default_beta) -> None:
    if not betas:
        raise ValueError("betas must name at least one β")
    if not eps_grid or any(e <= 0 for e in eps_grid):
        raise ValueError(f"eps_grid must be non-empty with ε > 0, got {list(eps_grid)}")
    if float(default_beta) not in [float(b) for b in betas]:
        raise ValueError(f"default_beta {default_beta:g} is not in betas "
                         f"{[float(b) for b in betas]}; choose one of them or add it to betas")


def _baseline(model, x, y, eps_grid, attacks: GridAttacks, batch_size: int):
    """Unquantised clean and test-PGD accuracy, and the 8-bit transfer images per ε."""
    base = {"clean_accuracy": _accuracy(model, x, y, batch_size), "pgd": {}}
    transfer_images = {}
    for eps in eps_grid:
        x_adv = _adversarial(attacks.test(eps), model, x, y, batch_size)
        base["pgd"][_delta_key(eps)] = _accuracy(model, x_adv, y, batch_size)
        transfer_images[eps] = quantize_8bit(x_adv)
    return base, transfer_images


def _cell(model, x, y, place: Placement, beta: float, eps_grid, attacks: GridAttacks,
          transfer_images: dict, masked_demo: bool, batch_size: int) -> dict:
    """Clean, Transfer-PGD_δ and BPDA_δ accuracy (and the plain-PGD demo) of one (placement, β).
    BPDA images are crafted through the straight-through quantiser and scored on the true one."""
    cell = {"placement": place.spec, "beta": float(beta), "bpda": {}, "transfer": {},
            "pgd_masked": {} if masked_demo else None}
    with quantized(model, place, beta):
        cell["clean_accuracy"] = _accuracy(model, x, y, batch_size)
        for eps in eps_grid:
            cell["transfer"][_delta_key(eps)] = _accuracy(model, transfer_images[eps], y,
                                                          batch_size)
            if masked_demo:
                x_m = _adversarial(attacks.bpda(eps), model, x, y, batch_size)
                cell["pgd_masked"][_delta_key(eps)] = _accuracy(model, x_m, y, batch_size)
    for eps in eps_grid:
        with quantized(model, place, beta, straight_through=True):
            x_b = _adversarial(attacks.bpda(eps), model, x, y, batch_size)
        with quantized(model, place, beta):
            cell["bpda"][_delta_key(eps)] = _accuracy(model, x_b, y, batch_size)
    return cell


def _score(cell: dict):
    return (_mean_over(cell["bpda"]), _mean_over(cell["transfer"]), cell["clean_accuracy"])


def quantization_grid(model: nn.Module, x, y=None, *, placements=None,
                      betas=DEFAULT_BETAS, eps_grid=None, steps: int = 20,
                      bpda_alpha_over_eps: float = BPDA_ALPHA_OVER_EPS,
                      test_alpha_over_eps: float = TEST_ALPHA_OVER_EPS,
                      default_beta: float = DEFAULT_BETA, batch_size: int = 128, seed: int = 0,
                      input_shape=None, label: str | None = None) -> dict:
    """Clean / BPDA_δ / Transfer-PGD_δ-20 accuracy for every placement × β × δ (SPECTRUM §4,
    App. C), the unquantised baseline, the plain-PGD gradient-masking demo at ``default_beta``
    (which must be one of ``betas``), and the best placement (highest mean BPDA accuracy).
    Every attack of budget δ steps α = ratio·δ: ``bpda_alpha_over_eps`` for BPDA (and the
    masking demo), ``test_alpha_over_eps`` for the baseline and transfer attacks; both default
    to 1/10, SPECTRUM's rule (its released code uses its test PGD's α = δ/10 for BPDA too).
    ``eps_grid`` (the attack budgets δ) defaults to the one ε of the model's run / dataset
    (``model.data_context``) or of a TensorData, and is required when nothing says which. Data as for
    :func:`robustlayers.analysis.psr`. Returns a JSON-able dict."""
    if eps_grid is None:
        eps_grid = (resolve_eps(model, None, data=x, what="quantization_grid (eps_grid)"),)
    x, y = split_data(x, y)
    _check_grid(betas, eps_grid, default_beta)
    batch_size = validate_count(batch_size, name="batch_size")
    specs = list(placements) if placements else default_placements(model)
    shape = data_shape(model, x, input_shape)
    resolved = [resolve_placement(model, s, input_shape=shape) for s in specs]
    attacks = GridAttacks(int(steps), float(test_alpha_over_eps), float(bpda_alpha_over_eps),
                          int(seed))
    base, transfer_images = _baseline(model, x, y, eps_grid, attacks, batch_size)
    cells = []
    with task(len(resolved) * len(betas), f"quantisation grid{': ' + label if label else ''}",
              unit="cell") as bar:
        for place in resolved:
            for beta in betas:
                cells.append(_cell(model, x, y, place, beta, eps_grid, attacks, transfer_images,
                                   float(beta) == float(default_beta), batch_size))
                bar.update(1)
    best = max(cells, key=_score)
    best_default = max((c for c in cells if c["beta"] == float(default_beta)), key=_score)
    return jsonable({
        "analysis": "quantization",
        "equation": "SPECTRUM §4: q(x) = floor(beta*x)/beta",
        "label": label,
        "placements": [asdict(p) for p in resolved],
        "betas": [float(b) for b in betas],
        "default_beta": float(default_beta),
        "eps_grid": [dict(describe_eps(e), key=_delta_key(e)) for e in eps_grid],
        "bpda_alpha_over_eps": attacks.bpda_alpha_over_eps,
        "test_alpha_over_eps": attacks.test_alpha_over_eps,
        "alpha_rule": {"bpda": _rule(attacks.bpda_alpha_over_eps),
                       "test": _rule(attacks.test_alpha_over_eps)},
        "baseline": base,
        "cells": cells,
        "best": _best_record(best, base),
        "best_at_default_beta": _best_record(best_default, base),
        "best_rule": "highest BPDA accuracy averaged over the eps grid; ties: transfer, clean",
        "attacks": attacks.record(eps_grid[0], float(default_beta)),
        "n_examples": len(x),
        "seed": seed,
    })


def _best_record(cell: dict, base: dict) -> dict:
    return {
        "placement": cell["placement"], "beta": cell["beta"],
        "clean_accuracy": cell["clean_accuracy"],
        "bpda_mean": _mean_over(cell["bpda"]),
        "transfer_mean": _mean_over(cell["transfer"]),
        "unquantised_clean": base["clean_accuracy"],
        "unquantised_pgd_mean": _mean_over(base["pgd"]),
    }


def quantization_analysis(model: nn.Module, data, **kwargs) -> dict:
    """``quantization_grid`` on anything it accepts as data (Dataset, DataLoader, TensorData,
    ``(x, y)``)."""
    return quantization_grid(model, data, **kwargs)
