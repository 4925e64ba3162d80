"""Tiny models and attacks with known behaviour for the evaluation tests."""

import torch
from torch import nn


class Linear(nn.Module):
    """Flatten -> fixed linear map (seeded); no normalisation."""

    def __init__(self, d=12, k=3, seed=0, scale=1.0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.fc = nn.Linear(d, k)
        with torch.no_grad():
            self.fc.weight.copy_(torch.randn(k, d, generator=g) * scale)
            self.fc.bias.copy_(torch.randn(k, generator=g) * 0.1)

    def forward(self, x):
        return self.fc(x.flatten(1))


class FirstPixel(nn.Module):
    """Two classes: class 1 iff the first pixel > 0.5; logits ±10·(p − 0.5)."""

    def forward(self, x):
        p = x.flatten(1)[:, 0] - 0.5
        return torch.stack([-10 * p, 10 * p], dim=1)


class Brightness(nn.Module):
    """Two classes: class 1 iff the mean pixel > 0.5."""

    def forward(self, x):
        m = x.flatten(1).mean(1) - 0.5
        return torch.stack([-10 * m, 10 * m], dim=1)


class Quantised(nn.Module):
    """A linear model on floor(4x)/4: piecewise constant, so every input gradient is zero."""

    def __init__(self, d=12, k=3):
        super().__init__()
        self.inner = Linear(d, k)

    def forward(self, x):
        return self.inner(torch.floor(4 * x) / 4)


class Noisy(nn.Module):
    """A stochastic defence: Gaussian noise on the input, also in eval()."""

    def __init__(self, d=12, k=3):
        super().__init__()
        self.inner = Linear(d, k)

    def forward(self, x):
        return self.inner(x + 0.5 * torch.randn_like(x))


class FixedAttack:
    """attack(model, x, y) -> fn(x); records calls; optional report."""

    def __init__(self, fn, name="fixed", report=None, config=None):
        self.fn, self.name, self.calls = fn, name, 0
        self.last_report = report or {}
        self._config = config

    def __call__(self, model, x, y):
        self.calls += 1
        return self.fn(x)

    def config(self):
        return dict(self._config) if self._config else {"name": self.name}


def identity_attack(name="identity", **config):
    return FixedAttack(lambda x: x.clone(), name=name, config={"name": name, **config})


def linear_data(n=64, d=12, k=3, seed=0, model=None):
    """Inputs in [0.25, 0.75]^d labelled by ``model`` (so clean accuracy is 100%)."""
    g = torch.Generator().manual_seed(seed)
    x = 0.25 + 0.5 * torch.rand(n, 1, 1, d, generator=g)
    model = model or Linear(d, k)
    with torch.no_grad():
        y = model(x).argmax(1)
    return x, y
