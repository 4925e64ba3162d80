"""Layer criticality index (CLAT §3.1, Eqs. 2–3) and its stability over batches.

Feature weakness of layer i (CLAT Eq. 2, with the paper's practical approximation):

    W_ε(F_i) = (1/N_i) · E_x[ ‖F_i(x + δ) − F_i(x)‖₂ ]

N_i = number of elements of F_i(x) per example; δ = one untargeted PGD perturbation against the
model output, shared by all layers (so all indices come from two forward passes once δ is known).
Criticality (CLAT Eq. 3): C_i = W_ε(F_i) / W_ε(F_{i−1}). Critical layers = top-k by C_i.

The computation lives in :mod:`robustlayers.criticality_core` (CLAT training uses it too). As the
CLAT papers' layer lists imply: layers default to the *depth* layers (``depth:all``: main-path
convs and the classifier, no shortcut projections, numbered as in the papers); the classifier is
not a top-k candidate unless ``include_classifier``; C_1 = W_1 / W_0 with W_0 = E‖δ‖₂/N_input
(``c1="normalised"``) unless ``c1="literal"`` (C_1 = W_1). Every result records these choices.
Default attack: CLAT's ℓ∞ PGD-10 with α/ε = 0.007/0.03 and a random start.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from robustlayers.analysis._common import (
    AttackFn, attack_eps, attack_record, data_shape, jsonable, make_pgd, resolve_eps,
    resolve_layers, round_sig, selection_record, split_data,
)
from robustlayers.attacks import describe_eps
from robustlayers.criticality_core import (
    C1_CHOICES, DEPTH_SELECTION, candidate_names, check_c1, compute_criticality,
    criticality_from_weakness, top_k_layers,
)
from robustlayers.criticality_core import check_k as _check_k
from robustlayers.evaluate.metrics import model_device
from robustlayers.evaluate.progress import task
from robustlayers.evaluate.robust import run_attack
from robustlayers.evaluate.validate import validate_count

DEFAULT_SELECTION = DEPTH_SELECTION
CLAT_ALPHA_OVER_EPS = 0.007 / 0.03
DEFAULT_K = 3

__all__ = ["C1_CHOICES", "CriticalityResult", "StabilityResult", "check_k", "criticality",
           "criticality_from_weakness", "criticality_stability", "default_criticality_attack",
           "top_k_layers"]


def default_criticality_attack(eps: float, *, steps: int = 10, alpha: float | None = None,
                               seed: int = 0):
    """CLAT's attack: ℓ∞ PGD-10, α = (0.007/0.03)·ε, random start, against the model output."""
    a = CLAT_ALPHA_OVER_EPS * eps if alpha is None else alpha
    return make_pgd(eps, steps=steps, alpha=a, seed=seed)


def check_k(k, n_layers: int) -> int:
    """k must be an integer with 1 ≤ k ≤ n_layers (the number of candidate layers). ``None``
    means the default: DEFAULT_K, or every candidate when fewer."""
    return _check_k(k, n_layers, DEFAULT_K)


@dataclass
class CriticalityResult:
    """W_ε(F_i), C_i and the top-k critical layers of one model on one batch (CLAT Eqs. 2–3)."""

    layers: tuple[str, ...]
    kinds: tuple[str, ...]
    weakness: np.ndarray
    criticality: np.ndarray
    k: int
    top_k: list[str]
    attack: dict
    selection: dict
    seed: int
    eps: float | None
    n_examples: int
    elapsed_s: float
    label: str | None = None
    choices: dict = field(default_factory=dict)
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return jsonable({
            "analysis": "criticality",
            "equation": "CLAT Eqs. 2-3",
            "label": self.label,
            "layers": list(self.layers),
            "kinds": list(self.kinds),
            "weakness": [round_sig(float(v), 8) for v in self.weakness],
            "criticality": [round_sig(float(v), 8) for v in self.criticality],
            "k": self.k,
            "top_k": self.top_k,
            "n_examples": self.n_examples,
            "elapsed_s": round(self.elapsed_s, 4),
            "attack": self.attack,
            "eps": describe_eps(self.eps) if self.eps is not None else None,
            "selection": self.selection,
            "seed": self.seed,
            **self.choices,
            **self.extra,
        })


def criticality(model: nn.Module, x, y=None, *, selection=None,
                attack: AttackFn | None = None, eps: float | None = None, steps: int = 10,
                alpha: float | None = None, k: int | None = None, batch_size: int = 128,
                seed: int = 0, input_shape=None, label: str | None = None,
                c1: str = "normalised", include_classifier: bool = False,
                _resolved=None) -> CriticalityResult:
    """Criticality indices of the selected layers from the batch (x, y) (CLAT Eqs. 2–3).

    ``attack`` is any ``attack(model, x, y) -> x_adv``; δ = x_adv − x is shared by all layers.
    ``k`` critical layers are reported among the candidates (the selected layers less the
    classifier unless ``include_classifier``): 1 ≤ k ≤ their number, else ValueError; None = 3,
    or all candidates when fewer. ``c1``: ``normalised`` (C_1 = W_1/W_0) or ``literal``. Data
    and the ``eps`` default as for :func:`robustlayers.analysis.psr` (from the model's run or
    dataset; required otherwise).
    """
    batch_size = validate_count(batch_size, name="batch_size")
    check_c1(c1)
    if attack is None:
        eps = resolve_eps(model, eps, data=x, what="criticality")
    x, y = split_data(x, y)
    lmap, resolved = resolve_layers(model, selection if _resolved is None else list(
        _resolved.names), DEFAULT_SELECTION, data_shape(model, x, input_shape))
    _resolved = _resolved or resolved
    k = check_k(k, len(candidate_names(lmap, _resolved.names, include_classifier)))
    if attack is None:
        attack = default_criticality_attack(eps, steps=steps, alpha=alpha, seed=seed)
    _sync(model)
    start = time.perf_counter()
    x_adv, _, _ = run_attack(model, attack, x, y, batch_size=batch_size,
                             desc=f"criticality{': ' + label if label else ''} (attack)")
    core = compute_criticality(model, lmap, _resolved.names, x, x_adv, c1=c1,
                               include_classifier=include_classifier, batch_size=batch_size)
    _sync(model)
    elapsed = time.perf_counter() - start
    return CriticalityResult(
        layers=tuple(core.layers), kinds=tuple(info.kind for info in _resolved.layers),
        weakness=core.weakness, criticality=core.criticality, k=k, top_k=core.top_k(k),
        attack=attack_record(attack), selection=selection_record(_resolved), seed=int(seed),
        eps=attack_eps(attack), n_examples=len(x), elapsed_s=elapsed, label=label,
        choices=jsonable(core.choices),
    )


def _sync(model: nn.Module) -> None:
    if model_device(model).type == "cuda":
        torch.cuda.synchronize()


@dataclass
class StabilityResult:
    """How stable the top-k critical set is over R random batches (CLAT §4.4 reports < 5%
    of 1000 runs differ, mostly by one layer)."""

    layers: tuple[str, ...]
    k: int
    batch_size: int
    repeats: int
    top_k_per_repeat: list[list[str]]
    criticality_per_repeat: np.ndarray      # [repeats, n_layers]
    attack: dict
    selection: dict
    seed: int
    eps: float | None
    mean_time_s: float
    label: str | None = None
    choices: dict = field(default_factory=dict)

    @property
    def frequency(self) -> dict[str, float]:
        """Share of repeats in which each layer is in the top-k."""
        counts = Counter(name for top in self.top_k_per_repeat for name in top)
        return {name: counts.get(name, 0) / self.repeats for name in self.layers}

    @property
    def modal_top_k(self) -> tuple[list[str], int]:
        """The most frequent top-k *set* (in execution order) and how many repeats gave it."""
        sets = Counter(frozenset(top) for top in self.top_k_per_repeat)
        order = {name: i for i, name in enumerate(self.layers)}
        # most_common is stable for ties: the set seen first wins
        best, count = sets.most_common(1)[0]
        return sorted(best, key=order.__getitem__), count

    def to_dict(self) -> dict:
        modal, count = self.modal_top_k
        modal_set = set(modal)
        changed = Counter(len(set(top) - modal_set) for top in self.top_k_per_repeat)
        c = self.criticality_per_repeat
        with np.errstate(invalid="ignore"):
            mean_c = np.nanmean(np.where(np.isfinite(c), c, np.nan), axis=0) if c.size else c
            std_c = np.nanstd(np.where(np.isfinite(c), c, np.nan), axis=0) if c.size else c
        return jsonable({
            "analysis": "criticality_stability",
            "equation": "CLAT Eqs. 2-3, §4.4",
            "label": self.label,
            "layers": list(self.layers),
            "k": self.k,
            "batch_size": self.batch_size,
            "repeats": self.repeats,
            "frequency": {n: round(v, 6) for n, v in self.frequency.items()},
            "modal_top_k": modal,
            "modal_count": count,
            "change_rate": round(1 - count / self.repeats, 6),
            "change_rate_rule": "share of repeats whose top-k set differs from the modal set",
            "layers_changed_histogram": {str(n): changed[n] for n in sorted(changed)},
            "top_k_per_repeat": self.top_k_per_repeat,
            "mean_criticality": [round_sig(float(v), 8) for v in mean_c],
            "std_criticality": [round_sig(float(v), 8) for v in std_c],
            "mean_time_s": round(self.mean_time_s, 5),
            "attack": self.attack,
            "eps": describe_eps(self.eps) if self.eps is not None else None,
            "selection": self.selection,
            "seed": self.seed,
            **self.choices,
        })


def criticality_stability(model: nn.Module, data, *, batch_size: int = 10, repeats: int = 100,
                          k: int | None = None, seed: int = 0, selection=None,
                          attack: AttackFn | None = None, eps: float | None = None,
                          steps: int = 10, alpha: float | None = None, input_shape=None,
                          label: str | None = None, c1: str = "normalised",
                          include_classifier: bool = False) -> StabilityResult:
    """Criticality (CLAT Eq. 3) on ``repeats`` random batches of ``batch_size`` drawn without
    replacement from ``data`` (TensorData or (x, y)); batch r uses attack seed ``seed + r``
    when the default attack is used. Returns per-layer top-k frequencies, the modal top-k set
    and how often the top-k set differs from it. ``data``: anything :func:`criticality`
    accepts; ``eps`` as there."""
    if attack is None:
        eps = resolve_eps(model, eps, data=data, what="criticality_stability")
    x, y = split_data(data)
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    if not 1 <= batch_size <= len(x):
        raise ValueError(f"batch_size must be in [1, {len(x)}] (the data size), got {batch_size}")
    lmap, resolved = resolve_layers(model, selection, DEFAULT_SELECTION,
                                    data_shape(model, x, input_shape))
    k = check_k(k, len(candidate_names(lmap, resolved.names, include_classifier)))
    generator = torch.Generator().manual_seed(int(seed))
    tops, crits, times, record = [], [], [], None
    with task(repeats, f"criticality stability{': ' + label if label else ''}",
              unit="batch") as bar:
        for r in range(repeats):
            idx = torch.randperm(len(x), generator=generator)[:batch_size]
            att = attack if attack is not None else default_criticality_attack(
                eps, steps=steps, alpha=alpha, seed=seed + r)
            result = criticality(model, x[idx], y[idx], attack=att, eps=eps, k=k,
                                 batch_size=batch_size, seed=seed + r, _resolved=resolved,
                                 c1=c1, include_classifier=include_classifier)
            tops.append(result.top_k)
            crits.append(result.criticality)
            times.append(result.elapsed_s)
            record = record or result.attack
            choices = {key: v for key, v in result.choices.items() if key != "w0"}
            bar.update(1)
    return StabilityResult(

        layers=tuple(resolved.names), k=k, batch_size=batch_size, repeats=repeats,
        top_k_per_repeat=tops, criticality_per_repeat=np.stack(crits), attack=record,
        selection=selection_record(resolved), seed=int(seed),
        eps=attack_eps(attack) if attack is not None else float(eps),
        mean_time_s=float(np.mean(times)), label=label, choices=choices,
    )
