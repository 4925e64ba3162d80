"""Shared fixtures: a 2k-image Fashion-MNIST subset (or synthetic stand-in) and two small
naturally trained models, built once per session (about 3 s together)."""
import pytest
import torch

from .toys import MLP, TinyNet, load_data, train


@pytest.fixture(scope="session")
def data():
    x, y = load_data(2600)
    return {"x_train": x[:2000], "y_train": y[:2000], "x": x[2000:2256], "y": y[2000:2256]}


@pytest.fixture(scope="session")
def _tiny(data):
    torch.manual_seed(0)
    return train(TinyNet(), data["x_train"], data["y_train"], steps=150)


@pytest.fixture(scope="session")
def _mlp(data):
    torch.manual_seed(1)
    return train(MLP(), data["x_train"], data["y_train"], steps=250, seed=1)


@pytest.fixture
def tiny(_tiny):
    """The trained TinyNet, in eval() and without parameter gradients at the start of each test."""
    _tiny.eval()
    for p in _tiny.parameters():
        p.grad = None
        p.requires_grad_(True)
    return _tiny


@pytest.fixture
def mlp(_mlp):
    _mlp.eval()
    for p in _mlp.parameters():
        p.grad = None
        p.requires_grad_(True)
    return _mlp


@pytest.fixture
def batch(data):
    return data["x"][:64], data["y"][:64]
