"""Fixtures of the training tests: a toy classifier with known structure and a context on it."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from robustlayers.data import get_dataset_info
from robustlayers.train import TrainContext, config_from_dict


class Toy(nn.Module):
    """4x4 grey images -> conv (2 ch) -> BN -> ReLU -> linear(32, 3); layers conv, bn, fc."""

    input_shape = (1, 4, 4)

    def __init__(self, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.conv = nn.Conv2d(1, 2, 3, padding=1)
        self.bn = nn.BatchNorm2d(2)
        self.act = nn.ReLU()
        self.fc = nn.Linear(32, 3)

    def forward(self, x):
        return self.fc(self.act(self.bn(self.conv(x))).flatten(1))


def make_ctx(model=None, *, steps_per_epoch: int = 4, **overrides):
    """A TrainContext on the toy model with ε=0.1, α=0.03 (CPU)."""
    fields = dict(eps=0.1, alpha=0.03, steps=3, lr=0.1, epochs=2, device="cpu")
    fields.update(overrides)
    config = config_from_dict(fields)  # old flat method keys (awp_gamma=...) still translate
    model = model if model is not None else Toy()
    ctx = TrainContext(model, config, device=torch.device("cpu"),
                       info=get_dataset_info("fashion-mnist"), steps_per_epoch=steps_per_epoch)
    ctx.rebuild_optimizer()
    ctx.seed_epoch(0)
    return ctx


@pytest.fixture
def batch():
    gen = torch.Generator().manual_seed(1)
    x = torch.rand(8, 1, 4, 4, generator=gen)
    y = torch.randint(0, 3, (8,), generator=gen)
    return x, y


FMNIST = "/usr/share/datasets/fashion-mnist"


def write_mini_fashion_mnist(folder, n_train: int = 512, n_test: int = 128) -> str:
    """The first examples of the real Fashion-MNIST as uncompressed IDX files in ``folder``
    (reading a few kB of the gzip streams instead of decompressing all 60k images)."""
    import gzip
    import os
    import struct

    os.makedirs(folder, exist_ok=True)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        for kind, item in (("images-idx3-ubyte", 784), ("labels-idx1-ubyte", 1)):
            with gzip.open(f"{FMNIST}/{prefix}-{kind}.gz", "rb") as src:
                magic = src.read(4)
                dims = struct.unpack(">" + "I" * magic[3], src.read(4 * magic[3]))
                body = src.read(n * item)
            with open(f"{folder}/{prefix}-{kind}", "wb") as dst:
                dst.write(magic + struct.pack(">" + "I" * len(dims), n, *dims[1:]) + body)
    return str(folder)


FMNIST_FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
                "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")


def require_fashion_mnist(folder: str = FMNIST) -> str:
    """``folder`` when it holds the four Fashion-MNIST files; else the test *fails* (never
    skips: the training tests must not pass vacuously) saying how to install the data."""
    import os

    missing = [f for f in FMNIST_FILES if not os.path.isfile(os.path.join(folder, f))]
    if missing:
        pytest.fail(f"Fashion-MNIST is missing from {folder} ({', '.join(missing)}): the "
                    f"training-loop tests need it. Install it with `make test` (scripts/setup.sh) "
                    f"or as root: apt-get install -y dataset-fashion-mnist", pytrace=False)
    return folder


@pytest.fixture(scope="session")
def mini_data(tmp_path_factory):
    require_fashion_mnist()
    return write_mini_fashion_mnist(tmp_path_factory.mktemp("fmnist"))


def tiny_config(mini_data, out, **overrides) -> dict:
    """A seconds-long run: smallcnn, 256 train / 64 test images, batch 64, PGD-2, eval PGD-2."""
    config = dict(model="smallcnn", dataset="fashion-mnist", data_dir=mini_data, method="pgd-at",
                  epochs=3, batch_size=64, train_size=256, test_size=64, eval_size=64,
                  eval_steps=2, steps=2, lr=0.05, schedule="cosine", device="cpu", quiet=True,
                  keep_checkpoints=3, out=str(out), runs_root=str(out.parent), seed=7)
    config.update(overrides)
    return config


@pytest.fixture(scope="session")
def reference_run(mini_data, tmp_path_factory):
    """One uninterrupted 3-epoch PGD-AT run of :func:`tiny_config`, shared by the tests."""
    from robustlayers.train import train

    out = tmp_path_factory.mktemp("runs") / "ref"
    return train(tiny_config(mini_data, out))
