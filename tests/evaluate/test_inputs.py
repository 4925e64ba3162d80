"""Evaluation accepts a torch Dataset or DataLoader as well as tensors (one helper)."""

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Dataset, TensorDataset

from robustlayers.attacks import FGSM, ThreatModel
from robustlayers.evaluate import evaluate_model
from robustlayers.evaluate.inputs import as_tensors

from .toys import Linear

G = torch.Generator().manual_seed(0)
X = torch.rand(10, 1, 2, 2, generator=G)
Y = torch.randint(0, 3, (10,), generator=G)


class Items(Dataset):
    """A user's dataset: numpy images and int labels, one item at a time."""

    def __len__(self):
        return len(Y)

    def __getitem__(self, i):
        return X[i].numpy(), int(Y[i])


@pytest.mark.parametrize("data", [
    (X, Y), TensorDataset(X, Y), Items(), DataLoader(TensorDataset(X, Y), batch_size=3),
    DataLoader(Items(), batch_size=4), [X, Y],
], ids=["pair", "TensorDataset", "Dataset", "DataLoader", "DataLoader-numpy", "list"])
def test_every_input_gives_the_same_tensors(data):
    x, y = as_tensors(data)
    torch.testing.assert_close(x, X)
    assert y.dtype == torch.int64 and y.tolist() == Y.tolist()


def test_evaluate_model_on_a_dataloader_equals_tensors():
    model = Linear(d=4, k=3)
    attacks = {"fgsm": FGSM(ThreatModel("linf", 0.1))}
    by_tensor = evaluate_model(model, X, Y, attacks).to_dict()
    by_loader = evaluate_model(model, DataLoader(TensorDataset(X, Y), batch_size=4),
                               attacks).to_dict()
    by_dataset = evaluate_model(model, Items(), attacks=attacks).to_dict()
    for other in (by_loader, by_dataset):
        assert other["clean"] == by_tensor["clean"]
        assert other["attacks"]["fgsm"]["accuracy"] == by_tensor["attacks"]["fgsm"]["accuracy"]


@pytest.mark.parametrize("data, match", [
    (X, "labels are missing"),
    ("images/", "cannot read images and labels from a str"),
    (DataLoader(TensorDataset(X), batch_size=4), r"must be an \(x, y\) pair"),
    (TensorDataset(torch.zeros(0, 1, 2, 2), torch.zeros(0)), "the Dataset is empty"),
    (np.zeros((2, 1, 2, 2), dtype=np.float32), "labels are missing"),
])
def test_bad_inputs_say_what_is_accepted(data, match):
    with pytest.raises(ValueError, match=match):
        as_tensors(data)
