"""Small models and data for the attack tests (kept here so the tests do not depend on the zoo)."""
from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import torch
from torch import nn

FMNIST = Path("/usr/share/datasets/fashion-mnist")


def _idx(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def load_data(n: int = 2600, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``n`` Fashion-MNIST test images (raw IDX), or separable synthetic 28x28 data
    with the same shape if the dataset package is not installed."""
    images, labels = FMNIST / "t10k-images-idx3-ubyte.gz", FMNIST / "t10k-labels-idx1-ubyte.gz"
    if images.exists() and labels.exists():
        x = torch.from_numpy(_idx(images)[:n].copy()).float().div(255).unsqueeze(1)
        y = torch.from_numpy(_idx(labels)[:n].copy()).long()
        return x, y
    g = torch.Generator().manual_seed(seed)
    protos = torch.rand(10, 1, 28, 28, generator=g)
    y = torch.randint(0, 10, (n,), generator=g)
    x = (protos[y] + 0.35 * torch.randn(n, 1, 28, 28, generator=g)).clamp(0, 1)
    return x, y


class TinyNet(nn.Module):
    """conv-bn-relu-conv-relu-linear; named layers for feature attacks and selections."""

    input_shape = (1, 28, 28)

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, 3, stride=2, padding=1)
        self.bn1 = nn.BatchNorm2d(8)
        self.act1 = nn.ReLU()
        self.conv2 = nn.Conv2d(8, 16, 3, stride=2, padding=1)
        self.act2 = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(4)
        self.fc = nn.Linear(16 * 16, 10)

    def forward(self, x):
        h = self.act1(self.bn1(self.conv1(x)))
        h = self.pool(self.act2(self.conv2(h)))
        return self.fc(h.flatten(1))


class MLP(nn.Module):
    input_shape = (1, 28, 28)

    def __init__(self, hidden: int = 64):
        super().__init__()
        self.fc1 = nn.Linear(784, hidden)
        self.act = nn.ReLU()
        self.fc2 = nn.Linear(hidden, 10)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x.flatten(1))))


def train(model: nn.Module, x, y, *, steps: int = 300, lr: float = 3e-3, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    for _ in range(steps):
        idx = torch.randint(0, len(x), (128,), generator=g)
        loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    for p in model.parameters():
        p.grad = None
    return model


class Quantize(nn.Module):
    """SPECTRUM §4 quantiser q(x) = ⌊βx⌋/β: zero gradient almost everywhere."""

    def __init__(self, beta: float = 8.0):
        super().__init__()
        self.beta = beta

    def forward(self, x):
        return torch.floor(self.beta * x) / self.beta


class Recorder(nn.Module):
    """Identity that records ``self.training`` at every forward pass."""

    def __init__(self):
        super().__init__()
        self.seen: list[bool] = []

    def forward(self, x):
        self.seen.append(self.training)
        return x


@torch.no_grad()
def accuracy(model, x, y) -> float:
    was = model.training
    model.eval()
    acc = (model(x).argmax(1) == y).float().mean().item()
    model.train(was)
    return acc
