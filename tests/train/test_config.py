"""TrainConfig validation, files, merging, overrides and presets."""

from __future__ import annotations

import json

import pytest

from robustlayers.train import (TrainConfig, apply_overrides, config_from_dict, list_presets,
                                load_config_file, merge, preset)


@pytest.mark.parametrize("key,value,match", [
    ("method", "pgd", "valid choices: natural, pgd-at, trades, mart, awp, fast-at"),
    ("schedule", "cosin", "did you mean 'cosine'.*piecewise, cosine, onecycle, constant"),
    ("optimizer", "adamw", "valid choices: sgd, adam"),
    ("norm", "linf2", "valid choices: linf, l2"),
    ("awp_base", "mart", "valid choices: pgd-at, trades"),
    ("epochs", 0, "epochs must be an integer >= 1"),
    ("lr", -1.0, "lr must be a number >= 0"),
    ("eps", 0, "eps must be a number > 0"),
    ("param_groups", [{"lr": 0.1}], "must be a dict with a 'select' key"),
    ("param_groups", [{"select": "fc", "lrr": 1}], "valid keys: select, lr"),
])
def test_invalid_values_name_the_valid_choices(key, value, match):
    with pytest.raises(ValueError, match=match):
        config_from_dict({key: value})


def test_unknown_key_suggests_close_matches():
    with pytest.raises(ValueError, match="unknown config key 'trades_bta'.*did you mean trades_beta"):
        config_from_dict({"trades_bta": 3})


def test_method_names_are_canonicalised():
    assert config_from_dict({"method": "PGD_AT"}).method == "pgd-at"


def test_files_and_merge_order(tmp_path):
    yaml_file = tmp_path / "c.yaml"
    yaml_file.write_text("method: trades\nepochs: 7\nmilestones: [75, 90]\n")
    json_file = tmp_path / "c.json"
    json_file.write_text(json.dumps({"lr": 0.05, "param_groups": [{"select": "fc", "lr": 1}]}))
    assert load_config_file(yaml_file) == {"method": "trades", "epochs": 7, "milestones": [75, 90]}
    config = merge(preset("fmnist-quick"), load_config_file(yaml_file),
                   load_config_file(json_file), {"epochs": 2})
    assert (config.method, config.epochs, config.lr, config.train_size) == ("trades", 2, 0.05, 10000)
    assert config.milestones == [75, 90] and config.param_groups[0]["select"] == "fc"
    bad = tmp_path / "c.toml"
    bad.write_text("x = 1")
    with pytest.raises(ValueError, match=r"\.yaml, \.yml or \.json"):
        load_config_file(bad)
    with pytest.raises(FileNotFoundError):
        load_config_file(tmp_path / "missing.yaml")
    (tmp_path / "k.yaml").write_text("epoch: 3\n")
    with pytest.raises(ValueError, match="did you mean epochs"):
        load_config_file(tmp_path / "k.yaml")


def test_dotted_overrides():
    base = TrainConfig(param_groups=[{"select": "fc", "lr": 0.1}])
    data = apply_overrides({}, ["epochs=3", "param_groups.0.lr=0.5", "milestones=[0.3, 0.6]",
                                "freeze=null", "eps=8/255"], base=base)
    assert data["epochs"] == 3 and data["param_groups"] == [{"select": "fc", "lr": 0.5}]
    assert data["milestones"] == [0.3, 0.6] and data["freeze"] is None
    assert config_from_dict(data).eps == pytest.approx(8 / 255)
    with pytest.raises(ValueError, match="key=value"):
        apply_overrides({}, ["epochs"])
    with pytest.raises(ValueError, match="unknown config key 'epoch'"):
        apply_overrides({}, ["epoch=3"])


def test_presets_follow_the_papers():
    assert {"rat-cifar10", "early-resnet", "fmnist-quick"} <= set(list_presets())
    rat = preset("rat-cifar10")
    assert (rat.epochs, rat.weight_decay, rat.milestones, rat.steps) == (200, 5e-4, [0.5, 0.75], 10)
    early = preset("early-resnet")
    assert (early.weight_decay, early.milestones, early.epochs, early.seed) == (2e-4, [75], 80, 2022)
    assert preset("rat-wp-cifar10").awp_select == "block:3,4"
    assert preset("fmnist-quick", epochs=1).epochs == 1
    with pytest.raises(ValueError, match="valid choices: rat-cifar10"):
        preset("rat")


def test_every_preset_names_a_zoo_model_and_a_dataset():
    from robustlayers.data import get_dataset_info
    from robustlayers.models import list_models
    from robustlayers.train import list_presets, preset

    for name in list_presets():
        config = preset(name)
        assert config.model in list_models(), name
        assert get_dataset_info(config.dataset).name == config.dataset, name


def test_unknown_model_and_dataset_name_the_choices():
    import pytest

    from robustlayers.train import config_from_dict

    with pytest.raises(ValueError, match="resnet18"):
        config_from_dict({"model": "resnet81"})
    with pytest.raises(ValueError, match="fashion-mnist"):
        config_from_dict({"dataset": "imagenet"})
