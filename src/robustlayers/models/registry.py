"""The model zoo registry: ``create_model(name, ...)``, ``list_models(pattern)``, ``model_info(name)``."""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from .common import check_activation, check_positive_int
from .densenet import densenet121
from .preact_resnet import preact_resnet18, preact_resnet34
from .resnet import resnet18, resnet18_spectrum, resnet34, resnet50
from .smallcnn import smallcnn
from .vgg import vgg16_bn, vgg19_bn
from .wide_resnet import wrn28_10, wrn34_10, wrn70_16


@dataclass(frozen=True)
class ModelInfo:
    """What the zoo knows about an architecture (for ``robustlayers models`` and docs)."""

    name: str
    family: str
    description: str
    papers: tuple[str, ...]
    min_input_size: int
    factory: Callable[..., nn.Module]
    raw_inputs: bool = False  # no input normalisation: takes [0, 1] images as they are


_REGISTRY: dict[str, ModelInfo] = {}


def register_model(name: str, factory: Callable[..., nn.Module], *, family: str,
                   description: str, papers: tuple[str, ...] = (), min_input_size: int = 1,
                   raw_inputs: bool = False) -> None:
    """Add an architecture to the zoo (names are lower case; re-registering a name is an error)."""
    key = name.lower()
    if key in _REGISTRY:
        raise ValueError(f"model {name!r} is already registered")
    _REGISTRY[key] = ModelInfo(key, family, description, tuple(papers), min_input_size, factory,
                               bool(raw_inputs))


for _name, _factory, _family, _desc, _papers, _min in [
    ("resnet18", resnet18, "resnet", "CIFAR ResNet-18, BasicBlock x (2,2,2,2)", ("EARLY", "SPECTRUM", "CLAT"), 1),
    ("resnet34", resnet34, "resnet", "CIFAR ResNet-34, BasicBlock x (3,4,6,3)", (), 1),
    ("resnet50", resnet50, "resnet", "CIFAR ResNet-50, Bottleneck x (3,4,6,3)", ("CLAT",), 1),
    ("preact_resnet18", preact_resnet18, "preact_resnet", "PreAct ResNet-18 (Rice et al. layout)", ("RAT", "CLAT"), 1),
    ("preact_resnet34", preact_resnet34, "preact_resnet", "PreAct ResNet-34", (), 1),
    ("wrn28_10", wrn28_10, "wide_resnet", "WideResNet-28-10", ("SPECTRUM",), 1),
    ("wrn34_10", wrn34_10, "wide_resnet", "WideResNet-34-10 (TRADES/AWP layout)", ("CLAT", "RAT"), 1),
    ("wrn70_16", wrn70_16, "wide_resnet", "WideResNet-70-16", ("CLAT",), 1),
    ("vgg16_bn", vgg16_bn, "vgg", "VGG-16 with BN, one linear classifier", ("EARLY",), 32),
    ("vgg19_bn", vgg19_bn, "vgg", "VGG-19 with BN, one linear classifier", ("CLAT",), 32),
    ("densenet121", densenet121, "densenet", "DenseNet-121 CIFAR variant, growth 32", ("CLAT",), 8),
    ("smallcnn", smallcnn, "smallcnn", "2 conv stages (16, 32 ch) + MLP head; fast CPU default for 28x28",
     (), 4),
]:
    register_model(_name, _factory, family=_family, description=_desc, papers=_papers, min_input_size=_min)
register_model("resnet18_spectrum", resnet18_spectrum, family="resnet",
               description="SPECTRUM's ResNet-18: raw [0, 1] inputs, no ReLU between the two "
                           "blocks of a stage", papers=("SPECTRUM",), raw_inputs=True)


def list_models(pattern: str = "*") -> list[str]:
    """Sorted zoo names matching the fnmatch ``pattern`` (case-insensitive), e.g. ``"resnet*"``."""
    if not isinstance(pattern, str):
        raise ValueError(f"pattern must be a string (fnmatch wildcards); got {pattern!r}")
    pat = pattern.lower()
    return sorted(n for n in _REGISTRY if fnmatch.fnmatchcase(n, pat))


def _unknown(name: object) -> ValueError:
    valid = sorted(_REGISTRY)
    close = difflib.get_close_matches(str(name).lower(), valid, n=3, cutoff=0.5)
    hint = f" Closest: {', '.join(close)}." if close else ""
    return ValueError(f"unknown model {name!r}.{hint} Valid choices: {', '.join(valid)}")


def model_info(name: str) -> ModelInfo:
    """The :class:`ModelInfo` of a zoo name; unknown names raise ``ValueError`` with close matches."""
    key = name.strip().lower() if isinstance(name, str) else name
    if key not in _REGISTRY:
        raise _unknown(name)
    return _REGISTRY[key]


def create_model(
    name: str,
    *,
    num_classes: int = 10,
    in_channels: int = 3,
    input_size: int = 32,
    mean=None,
    std=None,
    activation: str = "relu",
    seed: int | None = None,
) -> nn.Module:
    """Build a zoo model (in ``train()`` mode) for inputs in [0, 1] of shape
    ``(in_channels, input_size, input_size)``.

    ``mean``/``std`` (one value per channel, or one for all; default 0.5) configure the model's
    first child ``normalize``. ``activation`` is ``"relu"`` or ``"swish"`` (SiLU). ``seed`` makes the
    weight initialisation deterministic without touching the global RNG state; without it the
    global torch RNG is used. The returned model has ``input_shape``, ``layer_blocks`` and
    ``zoo_config`` (the JSON-able arguments that rebuild it: ``create_model(**zoo_config)``).
    """
    info = model_info(name)
    check_positive_int(num_classes, "num_classes")
    check_positive_int(in_channels, "in_channels")
    check_positive_int(input_size, "input_size")
    activation = check_activation(activation)
    if input_size < info.min_input_size:
        raise ValueError(
            f"model {info.name!r} needs input_size >= {info.min_input_size}; got {input_size}"
        )
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise ValueError(f"seed must be an int or None; got {seed!r}")
    kwargs = dict(num_classes=num_classes, in_channels=in_channels, input_size=input_size,
                  mean=mean, std=std, activation=activation)
    if seed is None:
        model = info.factory(**kwargs)
    else:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = info.factory(**kwargs)
    model.zoo_config = {
        "name": info.name, "num_classes": num_classes, "in_channels": in_channels,
        "input_size": input_size,
        "mean": [float(v) for v in model.normalize.mean.flatten().tolist()],
        "std": [float(v) for v in model.normalize.std.flatten().tolist()],
        "activation": activation,
    }
    return model
