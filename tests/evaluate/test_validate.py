"""Input validation: every violation raises ValueError naming the problem (SPEC §2, §6)."""
import math

import pytest
import torch

from robustlayers.evaluate import (clean_metrics, eps_sweep, evaluate_model, validate_batch,
                                   validate_count, validate_eps, validate_eps_list, validate_step)

from .toys import Linear, identity_attack


@pytest.fixture
def model():
    return Linear(d=4, k=3)


GOOD_X = torch.full((2, 1, 2, 2), 0.5)
GOOD_Y = torch.tensor([0, 1])


@pytest.mark.parametrize("x, y, match", [
    ([[0.5]], GOOD_Y, "torch.Tensor"),
    (torch.full((2, 4), 0.5), GOOD_Y, "4-D NCHW"),
    (torch.ones(2, 1, 2, 2, dtype=torch.uint8), GOOD_Y, "float"),
    (torch.full((2, 1, 2, 2), float("nan")), GOOD_Y, "NaN"),
    (torch.full((2, 1, 2, 2), math.inf), GOOD_Y, "infinite"),
    (torch.full((2, 1, 2, 2), 1.5), GOOD_Y, r"outside \[0, 1\]"),
    (torch.full((2, 1, 2, 2), -0.1), GOOD_Y, r"outside \[0, 1\]"),
    (torch.zeros(0, 1, 2, 2), torch.zeros(0, dtype=torch.long), "empty"),
    (GOOD_X, torch.tensor([0, 1, 2]), "label count mismatch"),
    (GOOD_X, torch.tensor([0.0, 1.0]), "integer class labels"),
    (GOOD_X, torch.tensor([[0, 1]]), "1-D"),
    (GOOD_X, torch.tensor([0, -1]), "negative label"),
    (GOOD_X, torch.tensor([True, False]), "integer class labels"),
    (GOOD_X, [0, 1], "torch.Tensor"),
])
def test_bad_batches_raise_naming_the_problem(model, x, y, match):
    with pytest.raises(ValueError, match=match):
        validate_batch(x, y)
    with pytest.raises(ValueError, match=match):
        clean_metrics(model, x, y)
    with pytest.raises(ValueError, match=match):
        evaluate_model(model, x, y, {"id": identity_attack()})


@pytest.mark.parametrize("dtype", [torch.int64, torch.int32, torch.uint8])
def test_integer_labels_become_int64(model, dtype):
    x, y = validate_batch(GOOD_X, GOOD_Y.to(dtype))
    assert y.dtype == torch.int64 and y.tolist() == [0, 1]
    assert clean_metrics(model, GOOD_X, GOOD_Y.to(dtype)) == clean_metrics(model, GOOD_X, GOOD_Y)
    with pytest.raises(ValueError, match="model has 1 classes"):
        validate_batch(GOOD_X, GOOD_Y.to(dtype), num_classes=1)


def test_label_beyond_model_outputs(model):
    with pytest.raises(ValueError, match="3 outputs"):
        clean_metrics(model, GOOD_X, torch.tensor([0, 5]))


def test_scalars():
    assert validate_eps(0) == 0.0 and validate_eps(8 / 255) == pytest.approx(8 / 255)
    for bad, match in [(-0.1, ">= 0"), (math.nan, "finite"), ("0.1", "number"), (True, "number")]:
        with pytest.raises(ValueError, match=match):
            validate_eps(bad)
    for bad in (0, -1e-3, math.inf):
        with pytest.raises(ValueError, match="alpha"):
            validate_step(bad)
    for bad in (0, -2, 1.5, True):
        with pytest.raises(ValueError, match="steps"):
            validate_count(bad, name="steps")
    with pytest.raises(ValueError, match="empty"):
        validate_eps_list([])
    with pytest.raises(ValueError, match="repeated"):
        validate_eps_list([0.1, 0.1])
    with pytest.raises(ValueError, match=r"eps_list\[1\]"):
        validate_eps_list([0.1, -0.2])


def test_other_arguments(model):
    with pytest.raises(ValueError, match="nn.Module"):
        clean_metrics(lambda x: x, GOOD_X, GOOD_Y)
    with pytest.raises(ValueError, match="batch_size"):
        clean_metrics(model, GOOD_X, GOOD_Y, batch_size=0)
    with pytest.raises(ValueError, match="dict"):
        evaluate_model(model, GOOD_X, GOOD_Y, [identity_attack()])
    with pytest.raises(ValueError, match="not callable"):
        evaluate_model(model, GOOD_X, GOOD_Y, {"a": 3})
    with pytest.raises(ValueError, match="eps_list"):
        eps_sweep(model, GOOD_X, GOOD_Y, lambda e: identity_attack(), [-1.0])
