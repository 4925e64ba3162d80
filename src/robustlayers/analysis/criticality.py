"""Layer criticality index (CLAT §3.1, Eqs. 2–3) and its stability over batches.

Feature weakness of layer i (CLAT Eq. 2, with the paper's practical approximation):

    W_ε(F_i) = (1/N_i) · E_x[ ‖F_i(x + δ) − F_i(x)‖₂ ]

N_i = number of elements of F_i(x) per example; δ = one untargeted PGD perturbation against the
model output, shared by all layers (so all indices come from two forward passes once δ is known).
Criticality (CLAT Eq. 3): C_i = W_ε(F_i) / W_ε(F_{i−1}), C_1 = W_ε(F_1); hence
W_ε(F_i) = Π_{k≤i} C_k. Critical layers = top-k by C_i.

Layers default to the conv and linear layers in execution order (``kind:conv,linear``; CLAT
has no public code) with features taken at their outputs. Default attack: CLAT's ℓ∞ PGD-10
with α/ε = 0.007/0.03 and a random start.
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
from robustlayers.evaluate.metrics import batches, eval_mode, model_device
from robustlayers.evaluate.progress import task
from robustlayers.evaluate.robust import run_attack
from robustlayers.evaluate.validate import validate_count

DEFAULT_SELECTION = "kind:conv,linear"
CLAT_ALPHA_OVER_EPS = 0.007 / 0.03
DEFAULT_K = 3


def default_criticality_attack(eps: float, *, steps: int = 10, alpha: float | None = None,
                               seed: int = 0):
    """CLAT's attack: ℓ∞ PGD-10, α = (0.007/0.03)·ε, random start, against the model output."""
    a = CLAT_ALPHA_OVER_EPS * eps if alpha is None else alpha
    return make_pgd(eps, steps=steps, alpha=a, seed=seed)


def criticality_from_weakness(weakness) -> np.ndarray:
    """CLAT Eq. 3: C_1 = W_1, C_i = W_i / W_{i−1} (inf where W_{i−1} = 0 < W_i, NaN for 0/0)."""
    w = np.asarray(weakness, dtype=np.float64)
    c = np.empty_like(w)
    if w.size:
        c[0] = w[0]
        with np.errstate(divide="ignore", invalid="ignore"):
            c[1:] = w[1:] / w[:-1]
    return c


def check_k(k, n_layers: int) -> int:
    """k must be an integer with 1 ≤ k ≤ n_layers (the number of selected layers). ``None``
    means the default: DEFAULT_K, or every layer when fewer are selected."""
    if k is None:
        return min(DEFAULT_K, n_layers)
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= n_layers:
        raise ValueError(f"k (number of critical layers) must be an integer from 1 to "
                         f"{n_layers}, the number of selected layers; got {k!r}")
    return int(k)


def top_k_layers(criticality, names, k: int) -> list[str]:
    """The k layers with the largest C_i (NaN ranks last; ties keep execution order).
    Raises ValueError unless 1 ≤ k ≤ len(names)."""
    k = check_k(k, len(names))
    c = np.nan_to_num(np.asarray(criticality, dtype=np.float64), nan=-np.inf)
    order = sorted(range(len(names)), key=lambda i: (-c[i], i))
    return [names[i] for i in order[:k]]


def _weakness(model, resolved, x, x_adv, batch_size) -> np.ndarray:
    """CLAT Eq. 2 with δ = x_adv − x: mean over examples of ‖ΔF_i‖₂ / N_i, per layer."""
    from robustlayers.layers import capture

    device = model_device(model)
    totals = np.zeros(len(resolved.names), dtype=np.float64)
    with eval_mode(model), torch.no_grad():
        for part in batches(len(x), batch_size):
            clean = capture(model, resolved, x[part].to(device))
            adv = capture(model, resolved, x_adv[part].to(device))
            for i, name in enumerate(resolved.names):
                diff = (adv[name].double() - clean[name].double()).flatten(1)
                n_i = diff.shape[1]
                totals[i] += float((torch.linalg.vector_norm(diff, dim=1) / n_i).sum())
    return totals / max(1, len(x))


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
            **self.extra,
        })


def criticality(model: nn.Module, x, y=None, *, selection=None,
                attack: AttackFn | None = None, eps: float | None = None, steps: int = 10,
                alpha: float | None = None, k: int | None = None, batch_size: int = 128,
                seed: int = 0, input_shape=None, label: str | None = None,
                _resolved=None) -> CriticalityResult:
    """Criticality indices of the selected layers from the batch (x, y) (CLAT Eqs. 2–3).

    ``attack`` is any ``attack(model, x, y) -> x_adv``; δ = x_adv − x is shared by all layers.
    ``k`` critical layers are reported: 1 ≤ k ≤ the number of selected layers, else ValueError;
    None = 3, or all layers when fewer are selected. Data and the ``eps`` default as for
    :func:`robustlayers.analysis.psr` (from the model's run or dataset; required otherwise).
    """
    batch_size = validate_count(batch_size, name="batch_size")
    if attack is None:
        eps = resolve_eps(model, eps, data=x, what="criticality")
    x, y = split_data(x, y)
    if _resolved is None:
        _, _resolved = resolve_layers(model, selection, DEFAULT_SELECTION,
                                      data_shape(model, x, input_shape))
    k = check_k(k, len(_resolved.names))
    if attack is None:
        attack = default_criticality_attack(eps, steps=steps, alpha=alpha, seed=seed)
    _sync(model)
    start = time.perf_counter()
    x_adv, _, _ = run_attack(model, attack, x, y, batch_size=batch_size,
                             desc=f"criticality{': ' + label if label else ''} (attack)")
    weakness = _weakness(model, _resolved, x, x_adv, batch_size)
    _sync(model)
    elapsed = time.perf_counter() - start
    crit = criticality_from_weakness(weakness)
    names = list(_resolved.names)
    return CriticalityResult(
        layers=tuple(names), kinds=tuple(info.kind for info in _resolved.layers),
        weakness=weakness, criticality=crit, k=k, top_k=top_k_layers(crit, names, k),
        attack=attack_record(attack), selection=selection_record(_resolved), seed=int(seed),
        eps=attack_eps(attack), n_examples=len(x), elapsed_s=elapsed, label=label,
    )


def _one_repeat(model, x, y, r, generator, batch_size, attack, eps, steps, alpha, k, seed,
                resolved) -> "CriticalityResult":
    """Criticality on the r-th random batch (attack seed ``seed + r`` for the default attack)."""
    idx = torch.randperm(len(x), generator=generator)[:batch_size]
    att = attack if attack is not None else default_criticality_attack(
        eps, steps=steps, alpha=alpha, seed=seed + r)
    return criticality(model, x[idx], y[idx], attack=att, eps=eps, k=k, batch_size=batch_size,
                       seed=seed + r, _resolved=resolved)


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
        })


def criticality_stability(model: nn.Module, data, *, batch_size: int = 10, repeats: int = 100,
                          k: int | None = None, seed: int = 0, selection=None,
                          attack: AttackFn | None = None, eps: float | None = None,
                          steps: int = 10, alpha: float | None = None, input_shape=None,
                          label: str | None = None) -> StabilityResult:
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
    _, resolved = resolve_layers(model, selection, DEFAULT_SELECTION,
                                 data_shape(model, x, input_shape))
    k = check_k(k, len(resolved.names))
    generator = torch.Generator().manual_seed(int(seed))
    tops, crits, times, record = [], [], [], None
    with task(repeats, f"criticality stability{': ' + label if label else ''}",
              unit="batch") as bar:
        for r in range(repeats):
            result = _one_repeat(model, x, y, r, generator, batch_size, attack, eps, steps,
                                 alpha, k, seed, resolved)
            tops.append(result.top_k)
            crits.append(result.criticality)
            times.append(result.elapsed_s)
            record = record or result.attack
            bar.update(1)
    return StabilityResult(

        layers=tuple(resolved.names), k=k, batch_size=batch_size, repeats=repeats,
        top_k_per_repeat=tops, criticality_per_repeat=np.stack(crits), attack=record,
        selection=selection_record(resolved), seed=int(seed),
        eps=attack_eps(attack) if attack is not None else float(eps),
        mean_time_s=float(np.mean(times)), label=label,
    )
