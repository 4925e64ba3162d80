"""A subset is taken from the raw uint8 arrays before the float32 conversion: the same examples
as subsetting the full float split, without ever materialising it."""

import numpy as np
import pytest
import torch

from robustlayers.data import dataset as dataset_module
from robustlayers.data import load_corruption, load_dataset

RNG = np.random.default_rng(1)


@pytest.fixture
def conversions(monkeypatch):
    """Shapes of every uint8 image array converted to a tensor while loading."""
    seen = []
    original = dataset_module.torch.from_numpy

    def spy(array):
        if array.dtype == np.uint8:
            seen.append(array.shape)
        return original(array)

    monkeypatch.setattr(dataset_module.torch, "from_numpy", spy)
    return seen


def test_subset_load_converts_only_the_subset_and_equals_the_old_path(tmp_path, fmt,
                                                                       conversions):
    images = RNG.integers(0, 256, (60, 28, 28), dtype=np.uint8)
    labels = RNG.integers(0, 10, 60).astype(np.uint8)
    fmt.write_idx_split(tmp_path / "fashion-mnist", "train", images, labels)
    full = load_dataset("fashion-mnist", "train", data_dir=tmp_path)
    assert conversions == [(60, 1, 28, 28)]
    conversions.clear()
    part = load_dataset("fashion-mnist", "train", data_dir=tmp_path, subset=7, seed=3)
    assert conversions == [(7, 1, 28, 28)]  # never the whole split
    old = full.subset(7, seed=3)  # the previous path: convert everything, then subset
    assert torch.equal(part.x, old.x) and torch.equal(part.y, old.y)
    assert part.x.dtype == torch.float32 and part.y.dtype == torch.int64
    assert (part.split, part.source) == (full.split, full.source)
    assert load_dataset("fashion-mnist", "train", data_dir=tmp_path, subset=60).y.tolist() \
        == full.y.tolist()
    with pytest.raises(ValueError, match=r"subset size must be an int in 1..60 .*got 61"):
        load_dataset("fashion-mnist", "train", data_dir=tmp_path, subset=61)


def test_corruption_subset_converts_only_the_subset(tmp_path, fmt, conversions):
    fmt.write_cifar10c(tmp_path / "CIFAR-10-C", per_severity=4)
    full = load_corruption(tmp_path, "gaussian_noise", None)
    conversions.clear()
    part = load_corruption(tmp_path, "gaussian_noise", None, subset=5, seed=2)
    assert conversions == [(5, 3, 32, 32)]
    old = full.subset(5, seed=2)
    assert torch.equal(part.x, old.x) and torch.equal(part.y, old.y)
