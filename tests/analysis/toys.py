"""Tiny models whose layer outputs are known exactly, and fixed-perturbation attack stubs."""

from __future__ import annotations

import torch
from torch import nn


class Scale(nn.Module):
    """f(x) = a·x + b with scalar parameters: a layer (leaf with parameters) of kind 'scale'."""

    def __init__(self, a: float, b: float = 0.0):
        super().__init__()
        self.a = nn.Parameter(torch.tensor(float(a)))
        self.b = nn.Parameter(torch.tensor(float(b)))

    def forward(self, x):
        return self.a * x + self.b


class ScaledStack(nn.Module):
    """F_l(x) = (Π_{k≤l} a_k)·x (+ biases), then a linear head; input shape (1, 4, 4)."""

    input_shape = (1, 4, 4)

    def __init__(self, scales=(2.0, 0.5, 3.0), biases=None):
        super().__init__()
        biases = biases or [0.0] * len(scales)
        self.body = nn.Sequential(*[Scale(a, b) for a, b in zip(scales, biases)])
        self.head = nn.Linear(16, 3)

    def forward(self, x):
        return self.head(self.body(x).flatten(1))


class ConvStack(nn.Module):
    """Two 1x1 convolutions with weights s1·I, s2·I (no bias) and a linear head: conv outputs are
    s1·x and s1·s2·x exactly."""

    input_shape = (2, 3, 3)

    def __init__(self, s1=2.0, s2=-0.5):
        super().__init__()
        self.conv1 = nn.Conv2d(2, 2, 1, bias=False)
        self.conv2 = nn.Conv2d(2, 2, 1, bias=False)
        with torch.no_grad():
            self.conv1.weight.copy_(s1 * torch.eye(2).view(2, 2, 1, 1))
            self.conv2.weight.copy_(s2 * torch.eye(2).view(2, 2, 1, 1))
        self.act = nn.ReLU()
        self.fc = nn.Linear(18, 3)

    def forward(self, x):
        return self.fc(self.act(self.conv2(self.conv1(x))).flatten(1))


class TinyCNN(nn.Module):
    """conv-bn-relu-conv-relu + linear, 1x8x8 inputs: small and fast for real attacks."""

    input_shape = (1, 8, 8)

    def __init__(self, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.conv1 = nn.Conv2d(1, 4, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(4)
        self.act1 = nn.ReLU()
        self.conv2 = nn.Conv2d(4, 6, 3, padding=1)
        self.act2 = nn.ReLU()
        self.fc = nn.Linear(6 * 8 * 8, 3)

    def forward(self, x):
        return self.fc(self.act2(self.conv2(self.act1(self.bn1(self.conv1(x))))).flatten(1))


class FixedPerturbation:
    """Attack stub: returns x + e for a fixed e (broadcast over the batch)."""

    def __init__(self, e: torch.Tensor):
        self.e = e
        self.calls = 0

    def __call__(self, model, x, y):
        self.calls += 1
        return x + self.e.to(x.device)

    def config(self) -> dict:
        return {"name": "fixed", "max_abs": float(self.e.abs().max())}


def images(n: int, shape, seed: int = 0, lo: float = 0.25, hi: float = 0.75) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return lo + (hi - lo) * torch.rand((n, *shape), generator=g)


def labels(n: int, classes: int = 3, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, classes, (n,), generator=torch.Generator().manual_seed(seed))


class MeanBand(nn.Module):
    """Two classes; class 0 iff the mean m of the feature map of ``feat`` lies within ``width``
    of ``center``: logits = ±K·(width² − (m − center)²). ``feat`` is a 1x1 conv with weight 1, so
    a quantiser at its output sees the image itself. The gradient of the class-0 loss pushes m
    away from ``center``: *up* from an image whose mean is above it, *down* from a quantised
    feature map whose mean is below it — an unquantised and a BPDA attack move opposite ways."""

    input_shape = (1, 16, 16)

    def __init__(self, center: float = 0.14, width: float = 0.03, gain: float = 1000.0):
        super().__init__()
        self.feat = nn.Conv2d(1, 1, 1, bias=False)
        with torch.no_grad():
            self.feat.weight.fill_(1.0)
        self.center, self.width, self.gain = center, width, gain

    def forward(self, x):
        m = self.feat(x).mean(dim=(1, 2, 3))
        margin = self.gain * (self.width ** 2 - (m - self.center) ** 2)
        return torch.stack([margin, -margin], dim=1)
