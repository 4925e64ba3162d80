"""robustlayers: layer-wise adversarial robustness for image classifiers.

The main entry points, importable from the top level (loaded on first use, so ``import
robustlayers`` stays fast)::

    import robustlayers as rl

    model = rl.build_model("resnet18", "cifar10", checkpoint="w.pt", normalize="none")
    rl.layer_map(model)                                   # the layers, in execution order
    rl.select(model, "block:layer1 & kind:conv").names    # the selection language
    result = rl.evaluate(model, test_loader, {"pgd-20": rl.PGD(eps=8/255, steps=20)})
    report = rl.diagnose({"natural": a, "robust": b}, test_data, out_dir="diag")
    run = rl.train(rl.preset("fmnist-quick", method="pgd-at"))

Papers: EARLY (Bakiskan, Cekic, Madhow — PSR, partial adversarial training), SPECTRUM (Sridhar
et al. — filter norms, quantisation, pre-activations), CLAT (Gopal et al. — criticality), RAT
(Nguyen et al. — layer-wise robust overfitting); full citations in the README.
"""

from __future__ import annotations

import importlib
import sys
import types

__version__ = "0.1.0"

# top-level name -> (module, attribute)
_EXPORTS = {
    "create_model": ("robustlayers.models", "create_model"),
    "list_models": ("robustlayers.models", "list_models"),
    "load_checkpoint": ("robustlayers.models", "load_checkpoint"),
    "save_weights": ("robustlayers.models", "save_weights"),
    "build_model": ("robustlayers.builders", "build_model"),
    "layer_map": ("robustlayers.layers", "layer_map"),
    "select": ("robustlayers.layers", "select"),
    "load_dataset": ("robustlayers.data", "load_dataset"),
    "evaluate_model": ("robustlayers.evaluate", "evaluate_model"),
    "diagnose": ("robustlayers.analysis", "diagnose"),
    "psr": ("robustlayers.analysis", "psr"),
    "criticality": ("robustlayers.analysis", "criticality"),
    "filter_norms": ("robustlayers.analysis", "filter_norms"),
    "quantization_grid": ("robustlayers.analysis", "quantization_grid"),
    "preactivation_stats": ("robustlayers.analysis", "preactivation_stats"),
    "preset": ("robustlayers.train", "preset"),
    "TrainConfig": ("robustlayers.train", "TrainConfig"),
    "resume_run": ("robustlayers.train", "resume_run"),
    "load_run_model": ("robustlayers.runs", "load_run_model"),
    "make_trackers": ("robustlayers.tracking", "make_trackers"),
    "show_progress": ("robustlayers.evaluate.progress", "show_progress"),
    **{name: ("robustlayers.attacks", name) for name in (
        "PGD", "FGSM", "FeaturePGD", "AutoAttackAdapter", "BPDA", "TransferAttack",
        "ThreatModel", "make_attack", "parse_eps")},
}
# subpackages that are also called as functions: robustlayers.train(config),
# robustlayers.evaluate(model, data, attacks)
_CALLABLE_PACKAGES = {"train": "train", "evaluate": "evaluate_model"}

__all__ = ["__version__", *_EXPORTS, *_CALLABLE_PACKAGES]


class _CallablePackage(types.ModuleType):
    """A subpackage that forwards calls to one of its functions (``_call_target``)."""

    _call_target = ""

    def __call__(self, *args, **kwargs):
        return getattr(self, self._call_target)(*args, **kwargs)


def _make_callable(module_name: str) -> types.ModuleType:
    """Import ``robustlayers.<module_name>`` and make the package object itself callable."""
    module = importlib.import_module(f"robustlayers.{module_name}")
    if not isinstance(module, _CallablePackage):
        module.__class__ = type("CallablePackage", (_CallablePackage,),
                                {"_call_target": _CALLABLE_PACKAGES[module_name]})
    return module


def __getattr__(name: str):
    if name in _CALLABLE_PACKAGES:
        return _make_callable(name)
    if name in _EXPORTS:
        module, attribute = _EXPORTS[name]
        value = getattr(importlib.import_module(module), attribute)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'robustlayers' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))

