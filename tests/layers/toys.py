"""Tiny hand-written models whose layer order and activations are known exactly."""

import torch
from torch import nn


class Shuffled(nn.Module):
    """Defines its layers in a different order from the one in which they run, with a shortcut
    summed after the main branch (EARLY's linearisation) and one layer that never runs."""

    layer_blocks = {"stem": "stem", "body": "layer1", "skip": "layer1", "fc": "head"}

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(8 * 4 * 4, 3)
        self.unused = nn.Linear(2, 2)
        self.skip = nn.Conv2d(4, 8, 1, bias=False)
        self.body = nn.Sequential(nn.Conv2d(4, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.stem = nn.Conv2d(1, 4, 3, padding=1)
        self.act = nn.ReLU()
        self.input_shape = (1, 4, 4)

    def forward(self, x):
        x = self.stem(x)
        x = self.act(self.body(x) + self.skip(x))
        return self.fc(x.flatten(1))


class Scaled(nn.Module):
    """x -> 2x -> 6x through two bias-free 1x1 convolutions with constant weights."""

    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(1, 1, 1, bias=False)
        self.b = nn.Conv2d(1, 1, 1, bias=False)
        with torch.no_grad():
            self.a.weight.fill_(2.0)
            self.b.weight.fill_(3.0)
        self.input_shape = (1, 3, 3)

    def forward(self, x):
        return self.b(self.a(x)).flatten(1)
