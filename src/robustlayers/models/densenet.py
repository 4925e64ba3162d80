"""DenseNet-121 (Huang et al. 2017), CIFAR variant: growth rate 32, 3x3 stem, no max-pool.

DN121 is one of CLAT's architectures (5 critical layers selected; CLAT numbers layers as the conv
and linear layers in execution order — 121 weight layers here: 1 stem conv, 2 per dense-layer
bottleneck x 58, 3 transition convs, 1 linear). Parameter names follow kuangliu/pytorch-cifar's
``DenseNet121``: ``conv1``, ``denseS.Y.bn1``, ``.conv1``, ``.bn2``, ``.conv2``, ``transS.bn``,
``transS.conv``, final ``bn`` and ``linear``.

Blocks for the layer map: ``conv1`` -> ``stem``; ``denseS`` and the following ``transS`` ->
``layerS`` (S = 1..4, there is no ``trans4``); final ``bn`` + ``linear`` -> ``head``. Activations
are modules; the final top-level ``act`` reads the final pre-activation features. Three 2x2
average-pool transitions need input_size >= 8; an adaptive pool precedes the classifier.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .common import ZooModel, make_activation


class DenseBottleneck(nn.Module):
    """BN -> act -> conv1x1 (4·growth) -> BN -> act -> conv3x3 (growth); output concatenated
    in front of the input."""

    def __init__(self, in_planes: int, growth_rate: int, activation: str = "relu"):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.act1 = make_activation(activation)
        self.conv1 = nn.Conv2d(in_planes, 4 * growth_rate, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(4 * growth_rate)
        self.act2 = make_activation(activation)
        self.conv2 = nn.Conv2d(4 * growth_rate, growth_rate, 3, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(self.act1(self.bn1(x)))
        out = self.conv2(self.act2(self.bn2(out)))
        return torch.cat([out, x], 1)


class Transition(nn.Module):
    """BN -> act -> conv1x1 (channel reduction) -> 2x2 average pool."""

    def __init__(self, in_planes: int, out_planes: int, activation: str = "relu"):
        super().__init__()
        self.bn = nn.BatchNorm2d(in_planes)
        self.act = make_activation(activation)
        self.conv = nn.Conv2d(in_planes, out_planes, 1, bias=False)
        self.pool = nn.AvgPool2d(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.conv(self.act(self.bn(x))))


class DenseNet(ZooModel):
    """``normalize``, stem ``conv1``, ``dense1``, ``trans1``, ..., ``dense4``, head
    (``bn``, ``act``, ``pool``, ``flatten``, ``linear``)."""

    min_input_size = 8

    def __init__(
        self,
        num_layers: tuple[int, int, int, int] = (6, 12, 24, 16),
        growth_rate: int = 32,
        reduction: float = 0.5,
        **zoo,
    ) -> None:
        super().__init__(**zoo)  # num_classes, in_channels, input_size, mean, std, activation
        self.growth_rate = growth_rate
        planes = 2 * growth_rate
        self.conv1 = nn.Conv2d(self.in_channels, planes, 3, padding=1, bias=False)
        self.layer_blocks = {"normalize": "stem", "conv1": "stem"}
        for s, n in enumerate(num_layers, start=1):
            dense = nn.Sequential(*[
                DenseBottleneck(planes + i * growth_rate, growth_rate, self.activation)
                for i in range(n)
            ])
            setattr(self, f"dense{s}", dense)
            self.layer_blocks[f"dense{s}"] = f"layer{s}"
            planes += n * growth_rate
            if s < len(num_layers):
                out_planes = int(math.floor(planes * reduction))
                setattr(self, f"trans{s}", Transition(planes, out_planes, self.activation))
                self.layer_blocks[f"trans{s}"] = f"layer{s}"
                planes = out_planes
        self.num_stages = len(num_layers)
        self.bn = nn.BatchNorm2d(planes)
        self.act = self.act_module()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten(1)
        self.linear = nn.Linear(planes, self.num_classes)
        self.layer_blocks.update(
            {"bn": "head", "act": "head", "pool": "head", "flatten": "head", "linear": "head"}
        )
        self.final_activation = "act"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(self.normalize(x))
        for s in range(1, self.num_stages + 1):
            out = getattr(self, f"dense{s}")(out)
            if s < self.num_stages:
                out = getattr(self, f"trans{s}")(out)
        out = self.act(self.bn(out))
        return self.linear(self.flatten(self.pool(out)))


def densenet121(**kwargs) -> DenseNet:
    """DenseNet-121, CIFAR variant (CLAT's DN121): dense layers (6, 12, 24, 16), growth 32."""
    return DenseNet((6, 12, 24, 16), 32, **kwargs)
