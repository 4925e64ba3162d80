"""Threat models: the norm ball an attack may move an input inside.

Images live in [0, 1]; ε is written in input units (``8/255`` for ℓ∞, ``128/255`` for ℓ2 in RAT).
Every record writes ε both as the number and in its /255 form (:func:`describe_eps`).
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass

import torch

NORMS = ("linf", "l2")
# spellings accepted for each norm (case-insensitive): torchattacks/AutoAttack write "Linf"/"L2"
_NORM_ALIASES = {"linf": "linf", "l_inf": "linf", "l-inf": "linf", "inf": "linf",
                 "infinity": "linf", "l∞": "linf", "∞": "linf", "l2": "l2", "l_2": "l2", "2": "l2"}
_FRACTION = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*/\s*([0-9]*\.?[0-9]+)\s*$")


def describe_eps(eps: float) -> dict:
    """``{"value": eps, "over_255": eps*255}`` (rounded to 6 decimals so 8/255 reads as 8.0)."""
    return {"value": float(eps), "over_255": round(float(eps) * 255.0, 6)}


def parse_norm(norm) -> str:
    """The canonical name (``"linf"`` or ``"l2"``) of a norm written leniently: ``"Linf"``,
    ``"linf"``, ``"inf"``, ``float("inf")``, ``"L2"``, ``"l2"``, ``2``."""
    if isinstance(norm, bool):
        key = None
    elif isinstance(norm, (int, float)):
        key = "inf" if norm == math.inf else "2" if norm == 2 else None
    else:
        key = str(norm).strip().lower() if isinstance(norm, str) else None
    if key not in _NORM_ALIASES:
        raise ValueError(f"unknown norm {norm!r}; choose one of {', '.join(NORMS)} (also written "
                         f"'Linf', 'inf', 'L2')")
    return _NORM_ALIASES[key]


def parse_eps(text: str | float | int, *, norm: str = "linf") -> float:
    """Parse a budget written as ``"8/255"``, ``"0.5/255"``, ``"0.1"`` or ``"8"`` into input units.

    A plain number is already in input units, so ``"8"`` means 8.0; for ℓ∞ on [0, 1] images any
    ε > 1 covers the whole cube and is almost surely a forgotten ``/255``: that raises ValueError
    suggesting ``"8/255"``. For ℓ2, values above 1 are legitimate and accepted.
    """
    norm = parse_norm(norm)
    if isinstance(text, bool):
        raise ValueError(f"eps must be a number or a string like '8/255', got {text!r}")
    if isinstance(text, (int, float)):
        value, raw = float(text), repr(text)
    elif isinstance(text, str):
        raw = text.strip()
        m = _FRACTION.match(raw)
        if m:
            num, den = float(m.group(1)), float(m.group(2))
            if den == 0:
                raise ValueError(f"eps {text!r}: division by zero")
            value = num / den
        else:
            try:
                value = float(raw)
            except ValueError:
                raise ValueError(f"cannot parse eps {text!r}; write it like '8/255', '0.5/255' "
                                 f"or '0.03'") from None
    else:
        raise ValueError(f"eps must be a number or a string like '8/255', got {type(text).__name__}")
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"eps must be finite and >= 0, got {text!r}")
    if norm == "linf" and value > 1:
        hint = f"'{raw}/255'" if "/" not in raw else "a smaller value"
        raise ValueError(f"linf eps {text!r} = {value:g} exceeds 1, the whole [0,1] image range; "
                         f"budgets are in input units - did you mean {hint} (e.g. '8/255')?")
    return value


@dataclass(frozen=True)
class ThreatModel:
    """An ℓ∞ or ℓ2 ball of radius ``eps`` around each input.

    ``norm`` is parsed leniently (:func:`parse_norm`: ``"Linf"``, ``"inf"``, ``"L2"``) and
    ``eps`` may be text (:func:`parse_eps`: ``"8/255"``), so ``ThreatModel("Linf", "8/255")``
    equals ``ThreatModel("linf", 8/255)``.

    Besides validation it holds the geometry every attack shares: the random start, the ascent
    direction (sign for ℓ∞, per-example normalised gradient for ℓ2) and the projection.
    """

    norm: str
    eps: float

    def __post_init__(self):
        norm = parse_norm(self.norm)
        if isinstance(self.eps, str):
            eps = parse_eps(self.eps, norm=norm)
        elif isinstance(self.eps, bool) or not isinstance(self.eps, (int, float)):
            raise ValueError(f"eps must be a number or a string like '8/255', got {self.eps!r}")
        else:
            eps = self.eps
        if not math.isfinite(eps) or eps < 0:
            raise ValueError(f"eps must be finite and >= 0, got {self.eps!r}")
        object.__setattr__(self, "norm", norm)
        object.__setattr__(self, "eps", float(eps))

    def to_dict(self) -> dict:
        return {"norm": self.norm, "eps": self.eps, "eps_over_255": describe_eps(self.eps)["over_255"]}

    # --- geometry ----------------------------------------------------------------------------
    @staticmethod
    def _per_example(t: torch.Tensor) -> torch.Tensor:
        return t.flatten(1).norm(dim=1).view(-1, *([1] * (t.dim() - 1)))

    def distance(self, x_adv: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Per-example ‖x_adv − x‖ in this norm, shape (N,)."""
        d = (x_adv - x).flatten(1)
        return d.abs().amax(dim=1) if self.norm == "linf" else d.norm(dim=1)

    def random_delta(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """δ₀ ~ U(−ε, ε) per coordinate (ℓ∞) or uniform in the ℓ2 ball (Gaussian direction,
        radius ε·u^(1/d))."""
        if self.norm == "linf":
            u = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype)
            return (2 * u - 1) * self.eps
        g = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        u = torch.rand((x.shape[0],) + (1,) * (x.dim() - 1), generator=generator,
                       device=x.device, dtype=x.dtype)
        radius = self.eps * u ** (1.0 / x[0].numel())
        return g / (self._per_example(g) + 1e-12) * radius

    def direction(self, grad: torch.Tensor) -> torch.Tensor:
        """Steepest-ascent direction of unit size: sign(∇) for ℓ∞, ∇/‖∇‖₂ per example for ℓ2."""
        if self.norm == "linf":
            return grad.sign()
        return grad / (self._per_example(grad) + 1e-12)

    def project(self, delta: torch.Tensor) -> torch.Tensor:
        """Projection onto the ε-ball: clip for ℓ∞, rescale to radius ε for ℓ2."""
        if self.norm == "linf":
            return delta.clamp(-self.eps, self.eps)
        n = self._per_example(delta)
        return delta * torch.clamp(self.eps / (n + 1e-12), max=1.0)


def as_threat(threat=None, *, norm=None, eps=None) -> ThreatModel:
    """The threat model of an attack given either a :class:`ThreatModel` (``threat``) or its
    budget directly, torchattacks-style (``eps`` with an optional ``norm``, default ℓ∞).

    ``PGD(ThreatModel("linf", 8/255))``, ``PGD(eps=8/255)`` and ``PGD(eps="8/255", norm="Linf")``
    all build the same attack. Giving both a ThreatModel and a budget raises ValueError.
    """
    if threat is not None:
        if eps is not None or norm is not None:
            raise ValueError("give either a ThreatModel or eps=/norm=, not both (got threat="
                             f"{threat!r}, eps={eps!r}, norm={norm!r})")
        if not isinstance(threat, ThreatModel):
            raise ValueError(f"threat must be a ThreatModel(norm, eps), got "
                             f"{type(threat).__name__}; or pass the budget as eps=8/255")
        return threat
    if eps is None:
        raise ValueError("an attack needs a budget: pass a ThreatModel(norm, eps) or eps= "
                         "(e.g. eps=8/255 or eps='8/255', norm='linf' or 'l2')")
    return ThreatModel("linf" if norm is None else norm, eps)
