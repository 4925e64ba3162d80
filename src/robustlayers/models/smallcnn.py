"""SmallCNN: the fast default model for the embedded Fashion-MNIST data (28x28 grey).

Not from the papers: it exists so that every analysis and training method can be run end to end on
a CPU in minutes. It keeps the structure the layer-wise methods need — a stem-less stack of two
convolutional stages and a small MLP head:

* ``layer1``: (conv3x3 -> BN -> act) x 2 -> 2x2 max-pool, 16 channels
* ``layer2``: (conv3x3 -> BN -> act) x 2 -> 2x2 max-pool, 32 channels
* ``head``: flatten -> linear (hidden 128) -> act -> linear

That is 10 parameterised layers (4 conv, 4 BN, 2 linear); about 219k parameters for 1x28x28 inputs
and 10 classes. Convolutions have no bias (BN follows). The flatten size is computed from
``input_size`` (which must be >= 4).
"""

from __future__ import annotations

import torch
from torch import nn

from .common import ZooModel, make_activation


def _conv_stage(in_ch: int, out_ch: int, activation: str) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_ch, out_ch, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_ch),
        make_activation(activation),
        nn.Conv2d(out_ch, out_ch, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_ch),
        make_activation(activation),
        nn.MaxPool2d(2),
    )


class SmallCNN(ZooModel):
    """``normalize``, ``layer1``, ``layer2`` (conv stages), ``head`` (MLP). Blocks: ``layer1``,
    ``layer2``, ``head`` (there is no separate stem)."""

    min_input_size = 4

    def __init__(
        self,
        *,
        channels: tuple[int, int] = (16, 32),
        hidden: int = 128,
        **zoo,
    ) -> None:
        # zoo: num_classes, in_channels, input_size, mean, std, activation (see ZooModel)
        super().__init__(**{"in_channels": 1, "input_size": 28, **zoo})
        c1, c2 = channels
        self.layer1 = _conv_stage(self.in_channels, c1, self.activation)
        self.layer2 = _conv_stage(c1, c2, self.activation)
        side = self.input_size // 2 // 2
        self.head = nn.Sequential(
            nn.Flatten(1),
            nn.Linear(c2 * side * side, hidden),
            make_activation(self.activation),
            nn.Linear(hidden, self.num_classes),
        )
        self.layer_blocks = {"normalize": "layer1", "layer1": "layer1", "layer2": "layer2",
                             "head": "head"}
        # the last activation on a spatial map (before the MLP head), as analysis.final_activation
        self.final_activation = "layer2.5"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.layer2(self.layer1(self.normalize(x))))


def smallcnn(**kwargs) -> SmallCNN:
    """SmallCNN for 28x28 inputs (the embedded Fashion-MNIST default)."""
    return SmallCNN(**kwargs)
