"""AutoAttack (Croce & Hein 2020) through the ``pyautoattack`` package - never reimplemented.

Standard version: APGD-CE, APGD-T, FAB-T, Square (Croce & Hein 2020; RAT/CLAT tables). ``version="custom"``
with the default ``attacks=["apgd-ce", "apgd-t"]`` is the cheap subset: the first two attacks of
the standard version with the standard version's per-attack settings (APGD-CE 1 restart x 100
iterations, APGD-T 9 target classes x 100 iterations, FAB-T 9 targets, Square 5000 queries), so
its robust accuracy is an upper bound on the standard one. ``settings="package"`` keeps
pyautoattack's own custom-version settings instead (APGD-CE with 5 restarts).

What the adapter adds: model in eval() (mode restored), parameters' ``requires_grad`` switched off
during the run (FAB calls ``.backward()``, which would otherwise fill parameter ``.grad``), an
explicit seed (pyautoattack's default is the clock), the global torch RNG left untouched
(pyautoattack calls ``torch.manual_seed``), and its log and check messages captured into
``.last_report`` (warnings also re-logged on the ``robustlayers.attacks.autoattack`` logger).
"""
from __future__ import annotations

import logging
import re
import sys
import warnings

import torch

from .base import Attack, attack_mode, check_inputs, check_model
from .threat import ThreatModel, describe_eps

VERSIONS = ("standard", "custom", "plus", "rand")
SETTINGS = ("standard", "package")  # per-attack settings of a custom subset
AA_ATTACKS = ("apgd-ce", "apgd-dlr", "fab", "square", "apgd-t", "fab-t")
_NORMS = {"linf": "Linf", "l2": "L2"}
# what pyautoattack 0.2 runs per version (for the record; last_report["attacks_run"] is authoritative)
_VERSION_ATTACKS = {"standard": ["apgd-ce", "apgd-t", "fab-t", "square"],
                    "plus": ["apgd-ce", "apgd-dlr", "fab", "square", "apgd-t", "fab-t"],
                    "rand": ["apgd-ce", "apgd-dlr"]}
_AFTER = re.compile(r"robust accuracy after ([A-Z0-9-]+): ([0-9.]+)%")
log = logging.getLogger(__name__)


class _Collect(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record):
        self.records.append(record)


class AutoAttackAdapter(Attack):
    """``AutoAttackAdapter(threat, version=..., attacks=..., seed=0)(model, x, y) -> x_adv``.

    The budget may also be given directly, as in AutoAttack's own call:
    ``AutoAttackAdapter(norm="Linf", eps=8/255, version="standard")``. ``version`` is one of
    standard, custom, plus, rand (case-insensitive)."""

    name = "autoattack"

    def __init__(self, threat: ThreatModel | None = None, *, eps=None, norm=None,
                 version: str = "standard", attacks=None, seed: int = 0, batch_size: int = 250,
                 settings: str = "standard", fab_targets: int | None = None):
        super().__init__(threat, eps=eps, norm=norm, seed=seed)
        if fab_targets is not None and (isinstance(fab_targets, bool) or not isinstance(
                fab_targets, int) or fab_targets < 1):
            raise ValueError(f"fab_targets (FAB-T target classes; CLAT uses 3, the standard "
                             f"version 9) must be an integer >= 1 or None, got {fab_targets!r}")
        self.fab_targets = fab_targets
        version = version.strip().lower() if isinstance(version, str) else version
        if settings not in SETTINGS:
            raise ValueError(f"unknown settings {settings!r}; choose one of {', '.join(SETTINGS)}")
        self.settings = settings
        if version not in VERSIONS:
            raise ValueError(f"unknown AutoAttack version {version!r}; choose one of "
                             f"{', '.join(VERSIONS)}")
        if attacks is not None and version != "custom":
            raise ValueError(f"attacks={attacks!r} needs version='custom' (version {version!r} "
                             f"fixes its own attack list)")
        if version == "custom":
            attacks = ["apgd-ce", "apgd-t"] if attacks is None else list(attacks)
            bad = [a for a in attacks if a not in AA_ATTACKS]
            if bad or not attacks:
                raise ValueError(f"unknown AutoAttack attacks {bad or attacks!r}; choose from "
                                 f"{', '.join(AA_ATTACKS)}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
        self.version, self.attacks, self.batch_size = version, attacks, batch_size
        self.steps = self.alpha = self.restarts = self.loss = None
        self.random_start = True

    def config(self) -> dict:
        return {**super().config(), "name": "autoattack" if self.version == "standard"
                else f"autoattack-{self.version}", "version": self.version,
                "attacks": self.attacks or _VERSION_ATTACKS[self.version], "package": "pyautoattack",
                "settings": self.settings if self.version == "custom" else self.version,
                **({"fab_targets": self.fab_targets} if self.fab_targets is not None else {})}

    def build(self, model, device) -> "object":
        """The ``pyautoattack.AutoAttack`` instance this adapter runs (for inspection)."""
        from pyautoattack import AutoAttack

        adversary = AutoAttack(model, attacks=self.attacks, device=device, eps=self.threat.eps,
                               norm=_NORMS[self.threat.norm], seed=self.seed, version=self.version)
        if self.version == "custom" and self.settings == "standard":
            use_standard_settings(adversary)
        if self.fab_targets is not None:  # CLAT §4.1: FAB-T on 3 target classes
            adversary.fab.n_target_classes = self.fab_targets
        return adversary


    def __call__(self, model, x, y, *, seed=None):
        check_model(model)
        x, y = check_inputs(x, y)
        if seed is not None and seed != self.seed:
            raise ValueError("AutoAttackAdapter takes its seed at construction only")
        if len(x) == 0:
            return x.clone()
        from pyautoattack import checks

        aa_logger = logging.getLogger("auto-attack")
        handler, saved = _Collect(), (aa_logger.level, aa_logger.propagate)
        params = [p for p in model.parameters() if p.requires_grad]
        tracer = sys.gettrace()
        devices = list(range(torch.cuda.device_count())) if torch.cuda.is_initialized() else []
        for key in checks.funcs:  # pyautoattack's dynamic-defence counters are module globals
            checks.funcs[key] = 0
        aa_logger.addHandler(handler)
        aa_logger.setLevel(logging.DEBUG)
        aa_logger.propagate = False
        try:
            with attack_mode(model), torch.random.fork_rng(devices=devices), \
                    warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                for p in params:
                    p.requires_grad_(False)
                adversary = self.build(model, x.device)
                x_adv, y_adv = adversary.run_standard_evaluation(x, y, batch_size=self.batch_size)
                with torch.no_grad():
                    clean = torch.cat([model(x[i:i + self.batch_size]).argmax(1)
                                       for i in range(0, len(x), self.batch_size)])
        finally:
            for p in params:
                p.requires_grad_(True)
            aa_logger.removeHandler(handler)
            aa_logger.setLevel(saved[0])
            aa_logger.propagate = saved[1]
            sys.settrace(tracer)  # check_dynamic ends with sys.settrace(None)
        ours = [w for w in caught if "pyautoattack" in str(w.filename)]
        for w in caught:
            if w not in ours:
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        self.last_report = self._report(handler.records, ours, x, y, clean, y_adv,
                                        adversary.attacks_to_run)
        for flag in self.last_report["flags"]:
            log.warning("pyautoattack: %s", flag)
        return x_adv.detach().clamp(0, 1)

    def _report(self, records, caught, x, y, clean, y_adv, attacks) -> dict:
        messages = [f"{r.levelname}: {r.getMessage()}" for r in records]
        flags = [r.getMessage() for r in records if r.levelno >= logging.WARNING]
        flags += [str(w.message) for w in caught]
        per_attack = {m.group(1).lower(): float(m.group(2)) / 100
                      for m in map(_AFTER.search, messages) if m}
        return {"config": self.config(), "n": len(x), "attacks_run": list(attacks),
                "clean_accuracy": (clean == y).float().mean().item(),
                "robust_accuracy": (y_adv.to(y.device) == y).float().mean().item(),
                "robust_accuracy_after": per_attack, "flags": flags, "log": messages,
                "eps": describe_eps(self.threat.eps)}


def use_standard_settings(adversary) -> None:
    """Give a custom-version ``pyautoattack.AutoAttack`` the per-attack settings its standard
    version uses (the values pyautoattack 0.2 sets for ``version="standard"``)."""
    adversary.apgd.n_restarts = 1
    adversary.apgd_targeted.n_restarts = 1
    adversary.apgd_targeted.n_target_classes = 9
    adversary.fab.n_restarts = 1
    adversary.fab.n_target_classes = 9
    adversary.square.n_queries = 5000
