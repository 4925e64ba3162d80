"""Wide ResNets (Zagoruyko & Komodakis 2016), pre-activation blocks, CIFAR variant.

WRN-34-10 is the large model of CLAT and RAT (and of TRADES/AWP, whose code RAT builds on);
WRN-28-10 with Swish activations (``activation="swish"``, SiLU; Gowal et al. 2020) is
SPECTRUM's second model; WRN-70-16 is CLAT's largest model (also a common RobustBench size).
Depth d gives (d - 4) / 6 blocks per stage; widths 16, 16k, 32k, 64k.

Parameter names follow the community layout of the TRADES/AWP/RobustBench ``WideResNet`` exactly,
so their checkpoints load: ``conv1``, ``blockS.layer.Y.bn1``, ``.conv1``, ``.bn2``, ``.conv2``,
``.convShortcut`` (1x1 conv, only where the width or stride changes), final ``bn1`` and ``fc``.
Stages are therefore *named* ``block1``..``block3``; for the layer map they are the blocks
``layer1``..``layer3`` (``layer_blocks``), stem = ``conv1``, head = ``bn1`` + ``fc``.
(TRADES checkpoints also carry an unused ``sub_block1.*`` stage that never runs in forward; load
those with ``strict=False`` and those keys are reported as unexpected.)

As in the original code the shortcut of a block is computed after its main branch (EARLY's layer
order); activations are modules (``act1``/``act2`` per block, top-level ``act`` after the final
``bn1`` — its input is the final pre-activation feature map, SPECTRUM §6); the fixed 8x8 average
pool is an adaptive pool (identical for 32x32 inputs).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from robustlayers.layers.layermap import mark_shortcut

from .common import ZooModel, make_activation


class WideBasicBlock(nn.Module):
    """Pre-activation block: BN -> act -> conv3x3 -> BN -> act -> conv3x3, plus shortcut."""

    def __init__(self, in_planes: int, out_planes: int, stride: int, activation: str = "relu"):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.act1 = make_activation(activation)
        self.conv1 = nn.Conv2d(in_planes, out_planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_planes)
        self.act2 = make_activation(activation)
        self.conv2 = nn.Conv2d(out_planes, out_planes, 3, stride=1, padding=1, bias=False)
        self.equal_in_out = in_planes == out_planes and stride == 1
        self.convShortcut = None
        if not self.equal_in_out:
            self.convShortcut = mark_shortcut(  # not a depth layer (CLAT's numbering)
                nn.Conv2d(in_planes, out_planes, 1, stride=stride, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = self.act1(self.bn1(x))
        out = self.conv2(self.act2(self.bn2(self.conv1(pre))))
        # identity blocks add the raw input, projection blocks the pre-activated one (as in TRADES)
        shortcut = x if self.convShortcut is None else self.convShortcut(pre)
        return out + shortcut


class NetworkBlock(nn.Module):
    """One stage: ``layer`` = Sequential of ``n`` WideBasicBlocks (community key layout)."""

    def __init__(self, n: int, in_planes: int, out_planes: int, stride: int, activation: str):
        super().__init__()
        self.layer = nn.Sequential(*[
            WideBasicBlock(in_planes if i == 0 else out_planes, out_planes,
                           stride if i == 0 else 1, activation=activation)
            for i in range(n)
        ])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(x)


class WideResNet(ZooModel):
    """``normalize``, stem ``conv1``, stages ``block1``..``block3`` (blocks ``layer1``..``layer3``),
    head (``bn1``, ``act``, ``pool``, ``flatten``, ``fc``)."""

    def __init__(
        self,
        depth: int = 34,
        widen_factor: int = 10,
        **zoo,
    ) -> None:
        if (depth - 4) % 6 != 0 or depth < 10:
            raise ValueError(f"WideResNet depth must be 6n + 4 with n >= 1 (e.g. 28, 34, 70); got {depth}")
        super().__init__(**zoo)  # num_classes, in_channels, input_size, mean, std, activation
        n = (depth - 4) // 6
        widths = [16, 16 * widen_factor, 32 * widen_factor, 64 * widen_factor]
        self.depth, self.widen_factor = depth, widen_factor
        self.conv1 = nn.Conv2d(self.in_channels, widths[0], 3, stride=1, padding=1, bias=False)
        self.block1 = NetworkBlock(n, widths[0], widths[1], 1, self.activation)
        self.block2 = NetworkBlock(n, widths[1], widths[2], 2, self.activation)
        self.block3 = NetworkBlock(n, widths[2], widths[3], 2, self.activation)
        self.bn1 = nn.BatchNorm2d(widths[3])
        self.act = self.act_module()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten(1)
        self.fc = nn.Linear(widths[3], self.num_classes)
        self.layer_blocks = {
            "normalize": "stem", "conv1": "stem",
            "block1": "layer1", "block2": "layer2", "block3": "layer3",
            "bn1": "head", "act": "head", "pool": "head", "flatten": "head", "fc": "head",
        }
        self.final_activation = "act"
        self._init_weights()

    def _init_weights(self) -> None:
        # the initialisation of the original WRN / TRADES code
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels
                nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / fan_out))
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(self.normalize(x))
        out = self.block3(self.block2(self.block1(out)))
        out = self.act(self.bn1(out))
        return self.fc(self.flatten(self.pool(out)))


def wrn28_10(**kwargs) -> WideResNet:
    """WRN-28-10 (SPECTRUM, with ``activation="swish"``), 36.5M parameters."""
    return WideResNet(28, 10, **kwargs)


def wrn34_10(**kwargs) -> WideResNet:
    """WRN-34-10 (CLAT, RAT, TRADES, AWP), 46.2M parameters."""
    return WideResNet(34, 10, **kwargs)


def wrn70_16(**kwargs) -> WideResNet:
    """WRN-70-16 (CLAT; ``activation="swish"`` for the SiLU variants), 267M parameters."""
    return WideResNet(70, 16, **kwargs)
