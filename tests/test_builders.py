import pytest
import torch

from robustlayers.builders import build_model, model_kwargs_for
from robustlayers.data import get_dataset_info, list_datasets


@pytest.mark.parametrize("dataset", ["fashion-mnist", "cifar10", "cifar100", "svhn", "mnist"])
def test_model_fits_the_dataset(dataset):
    info = get_dataset_info(dataset)
    model = build_model(info.default_model, dataset).eval()
    assert model.input_shape == info.shape
    with torch.no_grad():
        out = model(torch.rand(2, *info.shape))
    assert out.shape == (2, info.num_classes)
    torch.testing.assert_close(model.normalize.mean.flatten(), torch.tensor(info.mean))


def test_kwargs_are_json_and_rebuild_the_same_architecture():
    import json

    kwargs = model_kwargs_for("cifar10", activation="swish")
    assert json.loads(json.dumps(kwargs)) == kwargs
    assert kwargs["activation"] == "swish" and kwargs["input_size"] == 32


def test_unknown_dataset_lists_choices():
    with pytest.raises(ValueError, match="fashion-mnist"):
        model_kwargs_for("imagenet")
    assert "fashion-mnist" in list_datasets()
