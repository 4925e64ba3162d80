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


def test_seed_makes_the_initialisation_deterministic_without_touching_the_global_rng():
    state = torch.get_rng_state()
    a = build_model("smallcnn", "fashion-mnist", seed=3)
    b = build_model("smallcnn", "fashion-mnist", seed=3)
    c = build_model("smallcnn", "fashion-mnist", seed=4)
    assert torch.equal(torch.get_rng_state(), state)
    for (name, pa), pb, pc in zip(a.named_parameters(), b.parameters(), c.parameters()):
        assert torch.equal(pa, pb), name
    assert not all(torch.equal(pa, pc) for pa, pc in zip(a.parameters(), c.parameters()))


def test_activation_reaches_the_model():
    swish = build_model("smallcnn", "fashion-mnist", activation="swish", seed=0)
    kinds = {type(m) for m in swish.modules()}
    assert torch.nn.SiLU in kinds and torch.nn.ReLU not in kinds
    assert swish.zoo_config["activation"] == "swish"
