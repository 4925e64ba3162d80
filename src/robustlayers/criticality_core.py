"""The core of CLAT's layer criticality (Gopal et al., "Criticality Leveraged Adversarial
Training", §3.1, Eqs. 2–3), shared by the analysis (:mod:`robustlayers.analysis.criticality`) and
CLAT fine-tuning (:mod:`robustlayers.train.methods.clat`) — neither imports the other.

Given a clean batch x and its adversarial version x + δ (δ from any attack, shared by all
layers), for layers F_1 … F_L in execution order:

    W_ε(F_i) = (1/N_i) · E_x ‖F_i(x + δ) − F_i(x)‖₂          (Eq. 2; N_i = elements of F_i(x))
    C_i      = W_ε(F_i) / W_ε(F_{i−1})                        (Eq. 3)

and the critical layers are the top-k by C_i. Two choices the papers leave implicit, settled by
their own reported layer lists (which never contain the classifier, and often contain layer 1):

* ``c1``: ``"normalised"`` (default) sets C_1 = W_ε(F_1) / W_0 with W_0 = E‖δ‖₂ / N_input — the
  input perturbation measured like a layer — so that layer 1 competes on equal terms;
  ``"literal"`` keeps Eq. 3's C_1 = W_ε(F_1) (of order 1e-4, never critical).
* ``include_classifier``: the classifier (the last depth layer) is not a top-k candidate by
  default (with 1/N_i its 10-element output inflates its C ~×800); it stays in the W chain.

Layers are CLAT's *depth* layers (``depth:all``: main-path convs and the classifier, no shortcut
projections), numbered 1, 2, … as in the papers' tables.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

C1_CHOICES = ("normalised", "literal")
DEPTH_SELECTION = "depth:all"


def check_c1(c1: str) -> str:
    if c1 not in C1_CHOICES:
        raise ValueError(f"c1 must be one of {', '.join(C1_CHOICES)} (normalised: C_1 = W_1/W_0 "
                         f"with W_0 = E‖δ‖₂/N_input; literal: C_1 = W_1), got {c1!r}")
    return c1


def classifier_name(layer_map) -> str | None:
    """The classifier: the model's last depth layer (None if it has no depth layers)."""
    depth = layer_map.depth_layers
    return depth[-1].name if depth else None


def candidate_names(layer_map, names, include_classifier: bool = False) -> list[str]:
    """The layers of ``names`` that may be chosen as critical: all of them, less the classifier
    unless ``include_classifier``."""
    head = None if include_classifier else classifier_name(layer_map)
    return [n for n in names if n != head]


def input_weakness(x: torch.Tensor, x_adv: torch.Tensor) -> float:
    """W_0 = E_x ‖δ‖₂ / N_input: the input perturbation measured like a layer's (Eq. 2 with F_0
    the identity)."""
    delta = (x_adv.double() - x.double()).flatten(1)
    return float((torch.linalg.vector_norm(delta, dim=1) / delta.shape[1]).mean())


def feature_weakness(model: nn.Module, names, x: torch.Tensor, x_adv: torch.Tensor, *,
                     batch_size: int = 128) -> np.ndarray:
    """CLAT Eq. 2 per layer of ``names``: mean over examples of ‖F_i(x+δ) − F_i(x)‖₂ / N_i, with
    the model in ``eval()`` (mode restored) and no gradients."""
    from robustlayers.layers import capture

    device = next(model.parameters()).device
    names = list(names)
    totals = np.zeros(len(names), dtype=np.float64)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for start in range(0, len(x), batch_size):
                part = slice(start, start + batch_size)
                clean = capture(model, names, x[part].to(device))
                adv = capture(model, names, x_adv[part].to(device))
                for i, name in enumerate(names):
                    diff = (adv[name].double() - clean[name].double()).flatten(1)
                    norms = torch.linalg.vector_norm(diff, dim=1) / diff.shape[1]
                    totals[i] += float(norms.sum())
    finally:
        model.train(was_training)
    return totals / max(1, len(x))


def criticality_from_weakness(weakness, w0: float | None = None) -> np.ndarray:
    """CLAT Eq. 3: C_i = W_i / W_{i−1}; C_1 = W_1 / w0 when ``w0`` is given (normalised), else
    C_1 = W_1 (literal). inf where the divisor is 0 < W_i, NaN for 0/0."""
    w = np.asarray(weakness, dtype=np.float64)
    c = np.empty_like(w)
    if w.size:
        with np.errstate(divide="ignore", invalid="ignore"):
            c[0] = w[0] if w0 is None else np.float64(w[0]) / np.float64(w0)
            c[1:] = w[1:] / w[:-1]
    return c


def check_k(k, n_candidates: int, default: int = 3) -> int:
    """k must be an integer with 1 ≤ k ≤ n_candidates. ``None`` means ``default`` (at most
    every candidate)."""
    if k is None:
        return min(default, n_candidates)
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= n_candidates:
        raise ValueError(f"k (number of critical layers) must be an integer from 1 to "
                         f"{n_candidates}, the number of candidate layers; got {k!r}")
    return int(k)


def rank_layers(criticality, names, candidates=None, *, largest: bool = True) -> list[str]:
    """Candidate layers ordered by C_i, largest first (``largest=False``: smallest first; NaN
    ranks last either way, ties keep execution order)."""
    c = np.asarray(criticality, dtype=np.float64)
    allowed = set(names if candidates is None else candidates)
    sign = -1.0 if largest else 1.0
    keyed = [(math.inf if np.isnan(c[i]) else sign * c[i], i)
             for i, n in enumerate(names) if n in allowed]
    return [names[i] for _, i in sorted(keyed)]


def top_k_layers(criticality, names, k: int, candidates=None) -> list[str]:
    """The k candidate layers with the largest C_i; ValueError unless 1 ≤ k ≤ #candidates."""
    pool = list(names) if candidates is None else list(candidates)
    k = check_k(k, len(pool))
    return rank_layers(criticality, list(names), pool)[:k]


@dataclass
class CriticalityCore:
    """W, C and the ranking of one batch; ``choices`` records c1, the classifier rule and W_0."""

    layers: list[str]
    weakness: np.ndarray
    criticality: np.ndarray
    candidates: list[str]
    w0: float
    c1: str
    include_classifier: bool

    @property
    def choices(self) -> dict:
        return {"c1": self.c1, "c1_rule": ("C_1 = W_1 / W_0, W_0 = E||delta||_2 / N_input"
                                           if self.c1 == "normalised" else "C_1 = W_1"),
                "w0": self.w0, "include_classifier": self.include_classifier,
                "candidates": list(self.candidates)}

    def top_k(self, k: int, *, largest: bool = True) -> list[str]:
        k = check_k(k, len(self.candidates))
        return rank_layers(self.criticality, self.layers, self.candidates, largest=largest)[:k]


def compute_criticality(model: nn.Module, layer_map, names, x, x_adv, *, c1: str = "normalised",
                        include_classifier: bool = False, batch_size: int = 128
                        ) -> CriticalityCore:
    """CLAT Eqs. 2–3 on the layers ``names`` (execution order) from a clean batch and its
    adversarial version (see the module docstring for ``c1`` and ``include_classifier``)."""
    check_c1(c1)
    names = list(names)
    candidates = candidate_names(layer_map, names, include_classifier)
    if not candidates:
        raise ValueError(f"no candidate layers for criticality among {names} (the classifier "
                         "is excluded unless include_classifier)")
    weakness = feature_weakness(model, names, x, x_adv, batch_size=batch_size)
    w0 = input_weakness(x, x_adv)
    crit = criticality_from_weakness(weakness, w0 if c1 == "normalised" else None)
    return CriticalityCore(names, weakness, crit, candidates, w0, c1, bool(include_classifier))
