"""VGG with batch norm (Simonyan & Zisserman 2015), CIFAR variant (one linear classifier).

VGG-16 is the second architecture of EARLY (layer-wise partial AT; 14.7M parameters), VGG-19 one
of CLAT's architectures. The convolutional part is built as
five stages ``layer1``..``layer5``; each is a Sequential of (conv3x3, BN, act) triples ending with
a 2x2 max-pool, so stage ``layerS`` has keys ``layerS.{3i}`` (conv) and ``layerS.{3i+1}`` (BN).
(These names differ from kuangliu/pytorch-cifar's flat ``features``/``classifier``; a VGG
checkpoint from there needs its keys renamed.) The head is ``pool`` (adaptive average pool to 1x1,
the identity for 32x32 inputs), ``flatten`` and ``linear``. Five max-pools need input_size >= 32.
"""

from __future__ import annotations

import torch
from torch import nn

from .common import ZooModel, make_activation

#: channels per stage (each stage ends with a max-pool)
VGG_STAGES: dict[str, tuple[tuple[int, ...], ...]] = {
    "vgg11": ((64,), (128,), (256, 256), (512, 512), (512, 512)),
    "vgg13": ((64, 64), (128, 128), (256, 256), (512, 512), (512, 512)),
    "vgg16": ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512)),
    "vgg19": ((64, 64), (128, 128), (256, 256, 256, 256), (512, 512, 512, 512), (512, 512, 512, 512)),
}


class VGG(ZooModel):
    """``normalize``, ``layer1``..``layer5`` (conv-BN-act ... max-pool), head
    (``pool``, ``flatten``, ``linear``). VGG has no separate stem: its first conv belongs to
    block ``layer1``. ``final_activation`` is the last activation of ``layer5``."""

    min_input_size = 32

    def __init__(
        self,
        config: str = "vgg16",
        **zoo,
    ) -> None:
        if config not in VGG_STAGES:
            raise ValueError(f"unknown VGG config {config!r}; valid choices: {', '.join(VGG_STAGES)}")
        super().__init__(**zoo)  # num_classes, in_channels, input_size, mean, std, activation
        self.config = config
        channels = self.in_channels
        for s, stage in enumerate(VGG_STAGES[config], start=1):
            mods: list[nn.Module] = []
            for width in stage:
                mods += [nn.Conv2d(channels, width, 3, padding=1), nn.BatchNorm2d(width),
                         make_activation(self.activation)]
                channels = width
            mods.append(nn.MaxPool2d(2, 2))
            setattr(self, f"layer{s}", nn.Sequential(*mods))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten(1)
        self.linear = nn.Linear(channels, self.num_classes)
        self.layer_blocks = {"normalize": "layer1"}  # VGG has no separate stem
        self.layer_blocks.update({f"layer{s}": f"layer{s}" for s in range(1, 6)})
        self.layer_blocks.update({"pool": "head", "flatten": "head", "linear": "head"})
        self.final_activation = f"layer5.{3 * len(VGG_STAGES[config][-1]) - 1}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.normalize(x)
        for s in range(1, 6):
            out = getattr(self, f"layer{s}")(out)
        return self.linear(self.flatten(self.pool(out)))


def vgg16_bn(**kwargs) -> VGG:
    """VGG-16 with batch norm (EARLY uses VGG-16, 14.7M parameters), CIFAR head: one linear layer."""
    return VGG("vgg16", **kwargs)


def vgg19_bn(**kwargs) -> VGG:
    """VGG-19 with batch norm (CLAT's VGG19), CIFAR head: one linear layer, 20.0M parameters."""
    return VGG("vgg19", **kwargs)
