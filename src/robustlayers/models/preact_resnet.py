"""Pre-activation ResNets (He et al. 2016, "Identity mappings"), CIFAR variant.

PreAct ResNet-18 is the baseline model of RAT (Nguyen et al., robust overfitting) and of the
adversarial-training repositories it builds on (Rice et al. 2020, AWP); CLAT uses it too.
Parameter names follow that layout exactly: ``conv1``, ``layerX.Y.bn1``, ``layerX.Y.conv1``,
``layerX.Y.bn2``, ``layerX.Y.conv2``, ``layerX.Y.shortcut.0`` (a 1x1 conv only, no BN), final
``bn`` and ``linear``.

Differences from those repositories that do not change the state dict:

* the shortcut of a block is computed *after* its main branch (it reads the same pre-activated
  input), so the forward execution order puts ``shortcut.0`` after ``conv2`` as in EARLY's
  linearisation (EARLY §3);
* activations are modules: ``layerX.Y.act1`` / ``act2`` in the blocks and a final top-level
  ``act`` after ``bn``, whose *input* is the final pre-activation feature map (SPECTRUM §4.5/§6);
* an adaptive average pool replaces the fixed 4x4 pool (identical for 32x32 inputs).

RAT's "layers" are the four stages ``layer1``..``layer4``; the stem ``conv1`` and the final ``bn``
and ``linear`` belong to none of them (RAT's released code) — here they are blocks ``stem`` and ``head``.
"""

from __future__ import annotations

import torch
from torch import nn

from robustlayers.layers.layermap import mark_shortcut

from .common import ZooModel, make_activation


class PreActBlock(nn.Module):
    """BN -> act -> conv3x3 -> BN -> act -> conv3x3, plus the (pre-activated) shortcut."""

    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int = 1, activation: str = "relu"):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.act1 = make_activation(activation)
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.act2 = make_activation(activation)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.has_projection = stride != 1 or in_planes != planes * self.expansion
        if self.has_projection:
            self.shortcut = mark_shortcut(nn.Sequential(  # not a depth layer (CLAT)
                nn.Conv2d(in_planes, planes * self.expansion, 1, stride=stride, bias=False)
            ))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = self.act1(self.bn1(x))
        out = self.conv2(self.act2(self.bn2(self.conv1(pre))))
        # shortcut after the main branch (EARLY order); as in Rice et al. it reads act1's output
        shortcut = self.shortcut(pre) if self.has_projection else x
        return out + shortcut


class PreActResNet(ZooModel):
    """``normalize``, stem ``conv1``, ``layer1``..``layer4``, head (``bn``, ``act``, ``pool``,
    ``flatten``, ``linear``)."""

    def __init__(
        self,
        num_blocks: tuple[int, int, int, int],
        **zoo,
    ) -> None:
        super().__init__(**zoo)  # num_classes, in_channels, input_size, mean, std, activation
        self.in_planes = 64
        self.conv1 = nn.Conv2d(self.in_channels, 64, 3, stride=1, padding=1, bias=False)
        self.layer1 = self._make_layer(64, num_blocks[0], stride=1)
        self.layer2 = self._make_layer(128, num_blocks[1], stride=2)
        self.layer3 = self._make_layer(256, num_blocks[2], stride=2)
        self.layer4 = self._make_layer(512, num_blocks[3], stride=2)
        self.bn = nn.BatchNorm2d(512 * PreActBlock.expansion)
        self.act = self.act_module()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten(1)
        self.linear = nn.Linear(512 * PreActBlock.expansion, self.num_classes)
        self.layer_blocks = {
            "normalize": "stem", "conv1": "stem",
            "layer1": "layer1", "layer2": "layer2", "layer3": "layer3", "layer4": "layer4",
            "bn": "head", "act": "head", "pool": "head", "flatten": "head", "linear": "head",
        }
        self.final_activation = "act"

    def _make_layer(self, planes: int, n: int, stride: int) -> nn.Sequential:
        layers = []
        for s in [stride] + [1] * (n - 1):
            layers.append(PreActBlock(self.in_planes, planes, s, activation=self.activation))
            self.in_planes = planes * PreActBlock.expansion
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(self.normalize(x))
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        out = self.act(self.bn(out))
        return self.linear(self.flatten(self.pool(out)))


def preact_resnet18(**kwargs) -> PreActResNet:
    """PreAct ResNet-18 (RAT's baseline; Rice et al.): PreActBlock x (2, 2, 2, 2)."""
    return PreActResNet((2, 2, 2, 2), **kwargs)


def preact_resnet34(**kwargs) -> PreActResNet:
    """PreAct ResNet-34: PreActBlock x (3, 4, 6, 3)."""
    return PreActResNet((3, 4, 6, 3), **kwargs)
