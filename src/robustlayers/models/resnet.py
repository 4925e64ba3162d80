"""CIFAR-style ResNets (He et al. 2016): 3x3 stem convolution, no max-pool, four residual stages.

ResNet-18 is the model of EARLY (partial adversarial training, PSR), SPECTRUM (ε-spectrum,
feature quantisation, filter norms) and CLAT (criticality-leveraged AT); ResNet-50 appears in CLAT's
tables. Parameter names follow the widely shared kuangliu/pytorch-cifar layout exactly
(``conv1``, ``bn1``, ``layerX.Y.conv1``, ``layerX.Y.bn1``, ``layerX.Y.conv2``, ``layerX.Y.bn2``,
``layerX.Y.shortcut.0`` / ``.1``, ``linear``; Bottleneck adds ``conv3``/``bn3``), so those
checkpoints load with :func:`robustlayers.models.load_checkpoint`.

Two choices that the analyses rely on:

* Each block computes its whole main branch *before* calling ``self.shortcut(x)``. The forward
  execution order of the parameterised layers therefore reproduces EARLY's linearisation
  (EARLY's released code): for ResNet-18 exactly 41 Conv/BN/Linear layers, with a block's shortcut conv and
  BN right after its ``conv2``/``bn2``.
* Each block ends with an activation *module* ``act`` applied after the residual add, so the input
  of ``layerX.Y.act`` is the post-add, pre-ReLU output that SPECTRUM §4 quantises (its released code).

``resnet18_spectrum`` is the ResNet-18 of SPECTRUM's released code (Sridhar et al., Analysis of
Adversarial Training at a Spectrum of Perturbations): raw [0, 1] inputs (no input normalisation)
and no ReLU between the two blocks of a stage — the first block of each stage ends at its
residual add (its ``act`` is an ``nn.Identity``), the stage's last block keeps its post-add ReLU,
so ``layerX`` still ends "after the residual add, before the ReLU" where SPECTRUM quantises.
Parameter names and the state dict are those of ``resnet18``.
"""

from __future__ import annotations

import torch
from torch import nn

from robustlayers.layers.layermap import mark_shortcut

from .common import Normalize, ZooModel, make_activation


def shortcut(in_planes: int, out_planes: int, stride: int) -> nn.Sequential:
    """Identity, or a 1x1 conv + BN projection (``shortcut.0``, ``shortcut.1``) when the block
    changes resolution or width — the kuangliu/pytorch-cifar key layout."""
    if stride == 1 and in_planes == out_planes:
        return nn.Sequential()
    return mark_shortcut(nn.Sequential(  # not a depth layer (CLAT's numbering)
        nn.Conv2d(in_planes, out_planes, 1, stride=stride, bias=False),
        nn.BatchNorm2d(out_planes),
    ))


class BasicBlock(nn.Module):
    """Two 3x3 convolutions + identity/projection shortcut; ``act`` after the residual add."""

    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int = 1, activation: str = "relu",
                 post_act: bool = True):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.act1 = make_activation(activation)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = shortcut(in_planes, planes * self.expansion, stride)
        # post_act=False: no activation after the add (SPECTRUM's first block of a stage)
        self.act = make_activation(activation) if post_act else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # main branch first, then the shortcut (EARLY's layer order), then add, then act
        out = self.bn2(self.conv2(self.act1(self.bn1(self.conv1(x)))))
        out = out + self.shortcut(x)
        return self.act(out)


class Bottleneck(nn.Module):
    """1x1 -> 3x3 -> 1x1 bottleneck (expansion 4) + shortcut; ``act`` after the residual add."""

    expansion = 4

    def __init__(self, in_planes: int, planes: int, stride: int = 1, activation: str = "relu"):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.act1 = make_activation(activation)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.act2 = make_activation(activation)
        self.conv3 = nn.Conv2d(planes, planes * self.expansion, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.shortcut = shortcut(in_planes, planes * self.expansion, stride)
        self.act = make_activation(activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act1(self.bn1(self.conv1(x)))
        out = self.act2(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        out = out + self.shortcut(x)
        return self.act(out)


class ResNet(ZooModel):
    """CIFAR ResNet: ``normalize``, stem (``conv1``, ``bn1``, ``act1``), ``layer1``..``layer4``,
    head (``pool`` = adaptive average pool, ``flatten``, ``linear``).

    With 32x32 inputs the adaptive pool equals the original 4x4 average pool; any input size >= 1
    works. Blocks for the layer map: ``conv1``/``bn1`` -> ``stem``, ``layerX`` -> itself,
    ``linear`` -> ``head``. ``final_activation`` names the module whose input is the final
    pre-ReLU feature map (SPECTRUM §6): the last block's ``act``, e.g. ``layer4.1.act``.
    """

    def __init__(
        self,
        block: type[BasicBlock] | type[Bottleneck],
        num_blocks: tuple[int, int, int, int],
        *,
        act_between_blocks: bool = True,
        **zoo,
    ) -> None:
        super().__init__(**zoo)  # num_classes, in_channels, input_size, mean, std, activation
        self.act_between_blocks = act_between_blocks
        self.in_planes = 64
        self.conv1 = nn.Conv2d(self.in_channels, 64, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.act1 = self.act_module()
        self.layer1 = self._make_layer(block, 64, num_blocks[0], stride=1)
        self.layer2 = self._make_layer(block, 128, num_blocks[1], stride=2)
        self.layer3 = self._make_layer(block, 256, num_blocks[2], stride=2)
        self.layer4 = self._make_layer(block, 512, num_blocks[3], stride=2)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten(1)
        self.linear = nn.Linear(512 * block.expansion, self.num_classes)
        self.layer_blocks = {
            "normalize": "stem", "conv1": "stem", "bn1": "stem", "act1": "stem",
            "layer1": "layer1", "layer2": "layer2", "layer3": "layer3", "layer4": "layer4",
            "pool": "head", "flatten": "head", "linear": "head",
        }
        self.final_activation = f"layer4.{num_blocks[3] - 1}.act"

    def _make_layer(self, block, planes: int, n: int, stride: int) -> nn.Sequential:
        layers = []
        for i, s in enumerate([stride] + [1] * (n - 1)):
            extra = {} if self.act_between_blocks else {"post_act": i == n - 1}
            layers.append(block(self.in_planes, planes, s, activation=self.activation, **extra))
            self.in_planes = planes * block.expansion
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act1(self.bn1(self.conv1(self.normalize(x))))
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        return self.linear(self.flatten(self.pool(out)))


def resnet18(**kwargs) -> ResNet:
    """ResNet-18 (EARLY, SPECTRUM, CLAT): BasicBlock x (2, 2, 2, 2), 11.2M parameters."""
    return ResNet(BasicBlock, (2, 2, 2, 2), **kwargs)


class RawInputs(Normalize):
    """The ``normalize`` child of a model that takes raw [0, 1] images: mean 0 and std 1, and
    any other mean/std is refused (a run or checkpoint cannot give it a normalisation)."""

    def __init__(self, in_channels: int) -> None:
        super().__init__(0.0, 1.0, in_channels)

    def set(self, mean, std) -> None:
        given = Normalize(mean, std, self.in_channels)  # checks the values' count and std > 0
        if given.mean.abs().max() > 0 or (given.std - 1).abs().max() > 0:
            raise ValueError(
                f"this model takes raw [0, 1] images (SPECTRUM's ResNet-18 has no input "
                f"normalisation) and cannot normalise with mean {mean} / std {std}; leave the "
                f"normalisation unset or choose 'none'")


def resnet18_spectrum(**kwargs) -> ResNet:
    """SPECTRUM's ResNet-18 (Sridhar et al., its released code): BasicBlock x (2, 2, 2, 2), raw
    [0, 1] inputs (``mean``/``std`` arguments are ignored: it has no input normalisation) and
    no ReLU between the two blocks of a stage; the same parameters as ``resnet18``."""
    kwargs.pop("mean", None)
    kwargs.pop("std", None)
    model = ResNet(BasicBlock, (2, 2, 2, 2), act_between_blocks=False, **kwargs)
    model.normalize = RawInputs(model.in_channels)
    return model


def resnet34(**kwargs) -> ResNet:
    """ResNet-34: BasicBlock x (3, 4, 6, 3)."""
    return ResNet(BasicBlock, (3, 4, 6, 3), **kwargs)


def resnet50(**kwargs) -> ResNet:
    """ResNet-50 (CLAT tables): Bottleneck x (3, 4, 6, 3)."""
    return ResNet(Bottleneck, (3, 4, 6, 3), **kwargs)
