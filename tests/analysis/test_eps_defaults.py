"""Analyses take their default ε from the model's run or dataset; nothing saying which -> error.
Analyses accept a Dataset / DataLoader as well as tensors."""

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from robustlayers.analysis import (compare_psr, criticality, criticality_stability, diagnose, psr,
                                   quantization_grid)
from robustlayers.builders import build_model, tag_model
from robustlayers.data import TensorData, get_dataset_info

from .toys import TinyCNN, images, labels


def _fmnist(n=4):
    g = torch.Generator().manual_seed(0)
    return torch.rand(n, 1, 28, 28, generator=g), torch.randint(0, 10, (n,), generator=g)


def test_fashion_mnist_model_gets_fashion_mnists_eps_not_cifars():
    model = build_model("smallcnn", "fashion-mnist", seed=0).eval()
    x, y = _fmnist()
    assert psr(model, x, y, steps=1).eps == pytest.approx(0.1)
    assert criticality(model, x, y, steps=1).eps == pytest.approx(0.1)
    grid = quantization_grid(model, x, y, placements=["conv0"], betas=(8,), steps=1)
    assert [e["value"] for e in grid["eps_grid"]] == [pytest.approx(0.1)]
    cifar = build_model("smallcnn", "cifar10", seed=0).eval()
    xc = torch.rand(2, 3, 32, 32)
    assert criticality(cifar, xc, torch.tensor([0, 1]), steps=1).eps == pytest.approx(8 / 255)


def test_a_runs_eps_wins_and_an_l2_run_falls_back_to_the_datasets_linf_eps():
    model = tag_model(TinyCNN(), dataset="fashion-mnist", eps=0.2, source="run r1")
    x, y = images(4, (1, 8, 8)), labels(4)
    assert psr(model, x, y, steps=1).eps == pytest.approx(0.2)
    l2 = tag_model(TinyCNN(), dataset="fashion-mnist", eps=1.5, norm="l2", source="run r2")
    assert l2.data_context["eps"] == pytest.approx(0.1)
    assert criticality(l2, x, y, steps=1).eps == pytest.approx(0.1)
    # an explicit eps (text or number) always wins
    assert psr(model, x, y, steps=1, eps="4/255").eps == pytest.approx(4 / 255)


def test_nothing_says_which_dataset_so_eps_is_required():
    x, y = images(4, (1, 8, 8)), labels(4)
    for call in (lambda: psr(TinyCNN(), x, y), lambda: criticality(TinyCNN(), x, y),
                 lambda: criticality_stability(TinyCNN(), (x, y), batch_size=2),
                 lambda: quantization_grid(TinyCNN(), x, y),
                 lambda: compare_psr({"a": TinyCNN()}, x, y)):
        with pytest.raises(ValueError, match=r"needs eps: .*0\.1 for Fashion-MNIST"):
            call()


def test_tensordata_carries_its_datasets_eps():
    x, y = _fmnist()
    data = TensorData(x, y, get_dataset_info("fashion-mnist"))
    out = diagnose({"m": build_model("smallcnn", "fashion-mnist", seed=1)}, data,
                   analyses="filter-norms")
    assert out["data"]["dataset"] == "fashion-mnist" and out["eps"] is None
    bare = build_model("smallcnn", "fashion-mnist", seed=1)
    del bare.data_context                     # only the data says which dataset
    result = psr(bare, data, steps=1)
    assert result.eps == pytest.approx(0.1) and result.n_images == 4


def test_compare_psr_refuses_models_with_different_budgets():
    a = tag_model(TinyCNN(), dataset="fashion-mnist", source="dataset")
    b = tag_model(TinyCNN(), dataset="mnist", source="dataset")
    with pytest.raises(ValueError, match="different default ε"):
        compare_psr({"a": a, "b": b}, images(2, (1, 8, 8)), labels(2), steps=1)


def test_analyses_accept_a_dataloader():
    x, y = images(6, (1, 8, 8)), labels(6)
    loader = DataLoader(TensorDataset(x, y), batch_size=4)
    by_loader = criticality(TinyCNN(), loader, eps=0.1, steps=1, seed=2)
    by_tensor = criticality(TinyCNN(), x, y, eps=0.1, steps=1, seed=2)
    assert by_loader.n_examples == 6
    assert list(by_loader.criticality) == pytest.approx(list(by_tensor.criticality))
    stab = criticality_stability(TinyCNN(), TensorDataset(x, y), batch_size=3, repeats=2,
                                 eps=0.1, steps=1)
    assert stab.repeats == 2
