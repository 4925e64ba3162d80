"""Attacks by name, for the CLI and run configs: ``make_attack("pgd", ThreatModel("linf", 8/255),
steps=20)`` or, with the budget given directly, ``make_attack("pgd", eps="8/255", steps=20)``."""
from __future__ import annotations

import inspect

from .autoattack import AutoAttackAdapter
from .feature_pgd import FeaturePGD
from .fgsm import FGSM
from .pgd import PGD
from .threat import ThreatModel, as_threat

# name -> (class, fixed keyword arguments, one-line description)
_REGISTRY = {
    "fgsm": (FGSM, {"random_start": False}, "FGSM, one step of size eps"),
    "fgsm-rs": (FGSM, {"random_start": True}, "FGSM from a random start, alpha=1.25 eps (fast AT)"),
    "pgd": (PGD, {"loss": "ce"}, "PGD on cross-entropy"),
    "pgd-cw": (PGD, {"loss": "cw"}, "PGD on the CW margin loss"),
    "feature-pgd": (FeaturePGD, {}, "feature-space PGD (CLAT Eq. 5); needs selection=..."),
    "autoattack": (AutoAttackAdapter, {},
                   "AutoAttack (default version standard: APGD-CE, APGD-T, FAB-T, Square; "
                   "version= custom, plus or rand) via pyautoattack"),
    "apgd": (AutoAttackAdapter, {"version": "custom"},
             "cheap AutoAttack subset (default attacks=['apgd-ce', 'apgd-t']) via pyautoattack"),
}


def list_attacks() -> list[str]:
    """Names accepted by :func:`make_attack`."""
    return sorted(_REGISTRY)


def describe_attacks() -> dict[str, str]:
    return {name: entry[2] for name, entry in sorted(_REGISTRY.items())}


def make_attack(name: str, threat: ThreatModel | None = None, **kw):
    """Build the attack called ``name`` (case-insensitive, ``_`` = ``-``) with options ``kw``.

    The budget is ``threat`` or ``eps=`` / ``norm=`` in ``kw`` (``eps="8/255"``, ``norm="Linf"``).
    ``make_attack("autoattack", threat, version="rand")`` picks an AutoAttack version (standard,
    custom, plus, rand); ``"apgd"`` is the custom version with ``attacks=["apgd-ce", "apgd-t"]``.
    """
    threat = as_threat(threat, norm=kw.pop("norm", None), eps=kw.pop("eps", None))
    key = str(name).strip().lower().replace("_", "-")
    if key not in _REGISTRY:
        raise ValueError(f"unknown attack {name!r}; choose one of {', '.join(list_attacks())}")
    cls, fixed, _ = _REGISTRY[key]
    clash = sorted(set(fixed) & set(kw))
    if clash:
        raise ValueError(f"attack {key!r} fixes {', '.join(clash)}; use another attack name "
                         f"(choices: {', '.join(list_attacks())}) instead of overriding it")
    params = inspect.signature(cls.__init__).parameters
    allowed = [p for p in params if p not in ("self", "threat", "eps", "norm") and p not in fixed]
    unknown = sorted(set(kw) - set(allowed))
    if unknown:
        raise ValueError(f"attack {key!r} does not take {', '.join(unknown)}; options: "
                         f"{', '.join(allowed)}")
    if key == "feature-pgd":
        if "selection" not in kw:
            raise ValueError("attack 'feature-pgd' needs selection=<layer selection>")
        return cls(threat, kw.pop("selection"), **kw)
    return cls(threat, **fixed, **kw)
