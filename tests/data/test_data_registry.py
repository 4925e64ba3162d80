"""Dataset registry: names, defaults, errors."""

import dataclasses

import pytest

from robustlayers.data import (CIFAR10C_CORRUPTIONS, DataError, DatasetInfo, get_dataset_info,
                               list_datasets)


def test_list_datasets_default_first():
    names = list_datasets()
    assert names[0] == "fashion-mnist"
    assert set(names) == {"fashion-mnist", "mnist", "cifar10", "cifar100", "svhn", "cifar10-c"}


def test_unknown_dataset_names_choices():
    with pytest.raises(DataError) as err:
        get_dataset_info("imagenet")
    assert isinstance(err.value, ValueError)
    for name in list_datasets():
        assert name in str(err.value)


@pytest.mark.parametrize("name,eps,alpha,augment,model,shape", [
    ("fashion-mnist", 0.1, 0.01, "crop_flip", "smallcnn", (1, 28, 28)),
    ("mnist", 0.3, 0.01, "crop", "smallcnn", (1, 28, 28)),
    ("cifar10", 8 / 255, 2 / 255, "crop_flip", "resnet18", (3, 32, 32)),
    ("cifar100", 8 / 255, 2 / 255, "crop_flip", "resnet18", (3, 32, 32)),
    ("svhn", 8 / 255, 1 / 255, "crop", "resnet18", (3, 32, 32)),
    ("cifar10-c", 8 / 255, 2 / 255, "crop_flip", "resnet18", (3, 32, 32)),
])
def test_defaults(name, eps, alpha, augment, model, shape):
    info = get_dataset_info(name)
    assert isinstance(info, DatasetInfo)
    assert (info.default_eps, info.default_alpha) == pytest.approx((eps, alpha))
    assert (info.augment, info.default_model, info.shape) == (augment, model, shape)
    assert len(info.classes) == info.num_classes == len(set(info.classes))
    assert len(info.mean) == len(info.std) == shape[0]
    assert info.url.startswith("http") and info.files and info.default_dir
    hash(info)  # frozen and hashable


def test_info_is_frozen():
    info = get_dataset_info("cifar10")
    with pytest.raises(dataclasses.FrozenInstanceError):
        info.default_eps = 0.5  # type: ignore[misc]


def test_aliases_and_case():
    assert get_dataset_info("CIFAR-10").name == "cifar10"
    assert get_dataset_info("Fashion_MNIST").name == "fashion-mnist"


def test_corruptions_are_the_19_of_spectrum():
    assert len(CIFAR10C_CORRUPTIONS) == len(set(CIFAR10C_CORRUPTIONS)) == 19
    for extra in ("speckle_noise", "gaussian_blur", "spatter", "saturate"):
        assert extra in CIFAR10C_CORRUPTIONS
    assert get_dataset_info("cifar10-c").splits == ("test",)


def test_unknown_split_in_files_for():
    with pytest.raises(DataError, match="valid choices: train, test"):
        get_dataset_info("mnist").files_for("val")
