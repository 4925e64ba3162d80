"""Perturbation-to-signal ratio per layer (EARLY §3.2, Eq. 2).

    PSR_l(x) = ‖f_l(x) − f_l(x + e)‖_p / ‖f_l(x)‖_p ,   p ∈ {1, 2, ∞}

computed per image for every selected layer l, with e an adversarial perturbation crafted against
the model being analysed. Defaults follow EARLY's released code: hooks on convolution outputs
(``kind:conv``, before BN and ReLU), PGD-100 with α = ε/8 (EARLY: ε = 8/255, α = 1/255) and a
random start. The summary number per layer is ``20·log10(mean per-image ratio)`` — the form
EARLY's plot uses in its released code (the amplitude form; recorded in ``db_form``).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from robustlayers.analysis._common import (
    QUANTILE_LEVELS, AttackFn, attack_eps, attack_record, data_shape, histogram, jsonable,
    make_pgd, quantiles, resolve_eps, resolve_layers, round_sig, selection_record,
    shared_edges, split_data, to_db,
)
from robustlayers.attacks import describe_eps
from robustlayers.evaluate.metrics import batches, clean_metrics, eval_mode, model_device
from robustlayers.evaluate.robust import run_attack
from robustlayers.evaluate.validate import validate_count

DB_FORM = "20*log10(mean ratio)"
DEFAULT_SELECTION = "kind:conv"
NORMS = ("1", "2", "inf")
GAP_THRESHOLD_DB = 3.0


def _norm_key(p) -> str:
    key = str(p).lower().replace("float(", "").replace(")", "")
    if key in ("inf", "linf", "infinity"):
        return "inf"
    if key in ("1", "1.0", "l1"):
        return "1"
    if key in ("2", "2.0", "l2"):
        return "2"
    raise ValueError(f"unknown norm {p!r}; valid norms: 1, 2, inf")


def _ord(key: str) -> float:
    return float("inf") if key == "inf" else float(key)


@dataclass
class PSRResult:
    """Per-layer, per-image PSR of one model (EARLY Eq. 2) and its summaries."""

    layers: tuple[str, ...]
    kinds: tuple[str, ...]
    ratios: dict[str, np.ndarray]          # norm key -> array [n_layers, n_images]
    attack: dict
    selection: dict
    seed: int
    eps: float | None
    clean_accuracy: float
    adversarial_accuracy: float
    label: str | None = None
    bins: int = 30
    extra: dict = field(default_factory=dict)

    @property
    def n_images(self) -> int:
        return int(next(iter(self.ratios.values())).shape[1]) if self.ratios else 0

    def mean_ratio(self, p="2") -> np.ndarray:
        """Mean over images of the per-image ratio, per layer (NaN ratios from a zero signal
        are left out and counted in ``n_undefined``)."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN layer -> NaN mean
            return np.nanmean(self.ratios[_norm_key(p)], axis=1)

    def mean_db(self, p="2") -> np.ndarray:
        """20·log10 of the mean per-image ratio, per layer (EARLY Fig. 6b)."""
        return to_db(self.mean_ratio(p))

    def layer_summary(self, p="2") -> tuple[list[dict], list[float]]:
        """Per-layer rows (mean, mean dB, quantiles, dB histogram) and the shared dB bin edges."""
        key = _norm_key(p)
        values = self.ratios[key]
        db_values = to_db(values)
        edges = shared_edges(db_values, self.bins)
        means = self.mean_ratio(key)
        rows = []
        for i, name in enumerate(self.layers):
            row = values[i]
            rows.append({
                "layer": name,
                "kind": self.kinds[i],
                "mean_ratio": round_sig(float(means[i])),
                "mean_db": round_sig(float(to_db(means[i]))),
                "quantiles": {k: round_sig(v) if v is not None else None
                              for k, v in quantiles(row).items()},
                "quantiles_db": {k: round_sig(v) if v is not None else None
                                 for k, v in quantiles(db_values[i]).items()},
                "histogram_db": {"counts": histogram(db_values[i], edges)},
                "n_undefined": int(np.sum(~np.isfinite(row))),
            })
        return rows, [round_sig(float(e)) for e in edges]

    def to_dict(self, *, include_per_image: bool = True) -> dict:
        norms = {}
        for key in self.ratios:
            rows, edges = self.layer_summary(key)
            entry = {"layers": rows, "histogram_edges_db": edges}
            if include_per_image:
                entry["per_image"] = [[round_sig(float(v)) for v in row]
                                      for row in self.ratios[key]]
            norms[key] = entry
        return jsonable({
            "analysis": "psr",
            "equation": "EARLY Eq. 2",
            "label": self.label,
            "db_form": DB_FORM,
            "layers": list(self.layers),
            "kinds": list(self.kinds),
            "norms": norms,
            "quantile_levels": list(QUANTILE_LEVELS),
            "n_images": self.n_images,
            "attack": self.attack,
            "eps": describe_eps(self.eps) if self.eps is not None else None,
            "selection": self.selection,
            "seed": self.seed,
            "clean_accuracy": self.clean_accuracy,
            "adversarial_accuracy": self.adversarial_accuracy,
            **self.extra,
        })


def default_psr_attack(eps: float, *, steps: int = 100, alpha: float | None = None,
                       seed: int = 0):
    """EARLY's test attack: ℓ∞ PGD, 100 steps, α = ε/8 (1/255 at ε = 8/255), random start."""
    return make_pgd(eps, steps=steps, alpha=eps / 8 if alpha is None else alpha, seed=seed)


def _batch_ratios(clean: torch.Tensor, adv: torch.Tensor, keys) -> dict[str, torch.Tensor]:
    c = clean.detach().flatten(1).double()
    d = (adv.detach().flatten(1).double() - c)
    out = {}
    for key in keys:
        num = torch.linalg.vector_norm(d, ord=_ord(key), dim=1)
        den = torch.linalg.vector_norm(c, ord=_ord(key), dim=1)
        ratio = num / den
        ratio[den == 0] = float("nan")
        out[key] = ratio.cpu()
    return out


def psr(model: nn.Module, x, y=None, *, selection=None,
        attack: AttackFn | None = None, eps: float | None = None, steps: int = 100,
        alpha: float | None = None, norms=NORMS, batch_size: int = 128, seed: int = 0,
        input_shape=None, bins: int = 30, label: str | None = None) -> PSRResult:
    """PSR_l(x) for each image of ``x`` and each selected layer (EARLY Eq. 2).

    The data is ``x, y`` tensors or, with ``y`` left out, a Dataset, DataLoader, TensorData or
    ``(x, y)`` pair. ``attack`` is any callable ``attack(model, x, y) -> x_adv`` (default:
    EARLY's PGD-100 at ``eps`` with α = ε/8, seeded with ``seed``); e = x_adv − x. ``eps``
    defaults to the run's / dataset's ε the model carries (``model.data_context``) or the
    dataset of a TensorData, and is required when nothing says which. ``selection`` defaults
    to ``kind:conv`` (convolution outputs, as EARLY's released code hooks them). The model is
    in eval() throughout.
    """
    from robustlayers.layers import capture

    batch_size = validate_count(batch_size, name="batch_size")
    if attack is None:
        eps = resolve_eps(model, eps, data=x, what="psr")
    x, y = split_data(x, y)
    keys = tuple(dict.fromkeys(_norm_key(p) for p in norms))
    shape = data_shape(model, x, input_shape)
    _, resolved = resolve_layers(model, selection, DEFAULT_SELECTION, shape)
    if attack is None:
        attack = default_psr_attack(eps, steps=steps, alpha=alpha, seed=seed)
    x_adv, _, _ = run_attack(model, attack, x, y, batch_size=batch_size,
                             desc=f"psr{': ' + label if label else ''} (attack)")
    device = model_device(model)
    per_key = {k: [[] for _ in resolved.names] for k in keys}
    with eval_mode(model), torch.no_grad():
        for part in batches(len(x), batch_size):
            clean = capture(model, resolved, x[part].to(device))
            adv = capture(model, resolved, x_adv[part].to(device))
            for i, name in enumerate(resolved.names):
                for key, ratio in _batch_ratios(clean[name], adv[name], keys).items():
                    per_key[key][i].append(ratio)
    ratios = {k: np.stack([torch.cat(parts).numpy() for parts in rows]) for k, rows in
              per_key.items()}
    return PSRResult(
        layers=tuple(resolved.names), kinds=tuple(info.kind for info in resolved.layers),
        ratios=ratios, attack=attack_record(attack), selection=selection_record(resolved),
        seed=int(seed), eps=attack_eps(attack),
        clean_accuracy=clean_metrics(model, x, y, batch_size=batch_size)["accuracy"],
        adversarial_accuracy=clean_metrics(model, x_adv, y, batch_size=batch_size)["accuracy"],
        label=label, bins=bins,
    )


@dataclass
class PSRComparison:
    """PSR of several models on the same images, each attacked by its own perturbation
    (EARLY §3.2), and where the dB gap between the reference model and each other opens."""

    results: dict[str, PSRResult]
    gaps: list[dict]
    threshold_db: float
    norm: str

    def to_dict(self, *, include_per_image: bool = True) -> dict:
        return jsonable({
            "analysis": "psr_compare",
            "equation": "EARLY Eq. 2",
            "db_form": DB_FORM,
            "gap_norm": self.norm,
            "gap_threshold_db": self.threshold_db,
            "gap_rule": (f"first layer (in selection order) where |mean_db(reference) − "
                         f"mean_db(other)| > {self.threshold_db} dB, p = {self.norm}"),
            "models": {label: r.to_dict(include_per_image=include_per_image)
                       for label, r in self.results.items()},
            "gaps": self.gaps,
        })


def psr_gap(reference: PSRResult, other: PSRResult, *, threshold_db: float = GAP_THRESHOLD_DB,
            p="2") -> dict:
    """Per-layer dB gap (reference − other) on the layers both share, and the first layer where
    its magnitude exceeds ``threshold_db`` ("where the gap opens")."""
    key = _norm_key(p)
    ref_db = dict(zip(reference.layers, reference.mean_db(key)))
    oth_db = dict(zip(other.layers, other.mean_db(key)))
    common = [name for name in reference.layers if name in oth_db]
    gap = [float(ref_db[n] - oth_db[n]) for n in common]
    opens = next((i for i, g in enumerate(gap) if np.isfinite(g) and abs(g) > threshold_db),
                 None)
    finite = [abs(g) for g in gap if np.isfinite(g)]
    return {
        "reference": reference.label, "other": other.label, "norm": key,
        "layers": common, "gap_db": [round_sig(g) for g in gap],
        "opens_at": common[opens] if opens is not None else None,
        "opens_at_position": opens,
        "opens_at_fraction": (round(opens / max(1, len(common) - 1), 4)
                              if opens is not None else None),
        "max_abs_gap_db": round_sig(max(finite)) if finite else None,
        "n_common_layers": len(common),
    }


def compare_psr(models: dict[str, nn.Module], x, y=None, *,
                selection=None, attack: AttackFn | None = None, eps: float | None = None,
                steps: int = 100, alpha: float | None = None, norms=NORMS,
                batch_size: int = 128, seed: int = 0, input_shape=None, bins: int = 30,
                threshold_db: float = GAP_THRESHOLD_DB, gap_norm="2") -> PSRComparison:
    """PSR of every model on the same images ``x`` (each attacked by its own perturbation, with
    the same attack settings and seed), and the gap from the first model (the reference) to each
    other model. The gap "opens" at the first shared layer where |ΔdB| > ``threshold_db``
    (3 dB by default: the perturbation-to-signal amplitude ratio differs by a factor √2).
    Data and ``eps`` as for :func:`psr` (the ε default must agree across the models)."""
    if not models:
        raise ValueError("compare_psr needs at least one model")
    if attack is None and eps is None:
        budgets = {resolve_eps(m, None, data=x, what="compare_psr") for m in models.values()}
        if len(budgets) > 1:
            raise ValueError(f"the models carry different default ε {sorted(budgets)}; pass "
                             f"eps= so they are attacked with the same budget")
        eps = budgets.pop()
    x, y = split_data(x, y)
    gap_key = _norm_key(gap_norm)
    computed = tuple(dict.fromkeys(_norm_key(p) for p in norms))
    if gap_key not in computed:
        raise ValueError(f"gap_norm {gap_norm!r} is not among the computed norms "
                         f"{', '.join(computed)}; choose one of them or add it to norms")
    results = {}
    for label, model in models.items():
        results[label] = psr(model, x, y, selection=selection, attack=attack, eps=eps,
                             steps=steps, alpha=alpha, norms=norms, batch_size=batch_size,
                             seed=seed, input_shape=input_shape, bins=bins, label=label)
    labels = list(results)
    gaps = [psr_gap(results[labels[0]], results[other], threshold_db=threshold_db, p=gap_key)
            for other in labels[1:]]
    return PSRComparison(results=results, gaps=gaps, threshold_db=threshold_db, norm=gap_key)
