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
    ("method_args", {"gamma": 1}, "method 'pgd-at' has no setting 'gamma'; its settings: none"),
    ("epochs", 0, "epochs must be an integer >= 1"),
    ("lr", -1.0, "lr must be a number >= 0"),
    ("eps", 0, "eps must be a finite number > 0"),
    ("param_groups", [{"lr": 0.1}], "must be a mapping with a 'select' key"),
    ("param_groups", [{"select": "fc", "lrr": 1}], "valid keys: select, lr"),
])
def test_invalid_values_name_the_valid_choices(key, value, match):
    with pytest.raises(ValueError, match=match):
        config_from_dict({key: value})


def test_unknown_key_suggests_close_matches():
    with pytest.raises(ValueError, match="unknown config key 'method_arg'.*did you mean "
                                         "method_args"):
        config_from_dict({"method_arg": {"beta": 3}})


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
    rat_wp = preset("rat-wp-cifar10")
    assert (rat_wp.method, rat_wp.method_args["layers"], rat_wp.method_args["gamma"],
            rat_wp.attack_mode) == ("rat-wp", "block:3,4", 0.01, "train")
    trades_wp = preset("rat-wp-trades-cifar10").method_args
    assert (trades_wp["base"], trades_wp["gamma"], trades_wp["warmup"], trades_wp["beta"]) == \
        ("trades", 0.005, 10, 6.0)
    rat_lr = preset("rat-lr-cifar10")
    assert (rat_lr.method, rat_lr.method_args) == (
        "rat-lr", {"layers": "block:3,4", "layers_lr": 0.1, "layers_schedule": "constant"})
    assert preset("rat-svhn").alpha == pytest.approx(1 / 255)
    l2 = preset("rat-l2-cifar10")
    assert (l2.norm, l2.eps, l2.alpha) == ("l2", pytest.approx(128 / 255), pytest.approx(15 / 255))
    vgg = preset("early-vgg")
    assert (vgg.optimizer, vgg.lr, vgg.weight_decay, vgg.milestones, vgg.epochs) == \
        ("adam", 1e-3, 0.0, [50, 75], 100)
    assert (early.final_steps, early.final_alpha) == (100, pytest.approx(1 / 255))
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


@pytest.mark.parametrize("key", ["eps", "alpha", "eval_alpha"])
@pytest.mark.parametrize("value", [8, 8.0, "8"])
def test_linf_budgets_over_one_are_refused_as_numbers_too(key, value):
    # --set eps=8 reaches the config as the int 8 (YAML), not a string: it must not train at ε=8
    with pytest.raises(ValueError, match=f"{key}: .*exceeds 1.*'8/255'"):
        config_from_dict({key: value})
    with pytest.raises(ValueError, match="8/255"):
        merge(apply_overrides({}, [f"{key}=8"]))
    assert getattr(config_from_dict({key: 0.5}), key) == 0.5


def test_l2_budgets_over_one_are_kept_and_read_with_the_final_norm():
    assert config_from_dict({"norm": "l2", "eps": 2, "alpha": "0.5"}).eps == 2.0
    # a file's ℓ2 budget with the norm from a later layer (flags): values are checked once
    config = merge({"eps": "2", "alpha": 0.25}, {"norm": "l2"})
    assert (config.norm, config.eps, config.alpha) == ("l2", 2.0, 0.25)
    with pytest.raises(ValueError, match="8/255"):
        merge({"norm": "l2", "eps": 8}, {"norm": "linf"})


def test_robust_selection_needs_the_robust_evaluation():
    with pytest.raises(ValueError, match="select_by 'robust'.*eval_steps.*valid choices.*"
                                         "clean, auto"):
        config_from_dict({"select_by": "robust", "eval_steps": 0})
    for select_by in ("clean", "auto"):
        assert config_from_dict({"select_by": select_by, "eval_steps": 0}).eval_steps == 0
    assert config_from_dict({"select_by": "robust", "eval_steps": 1}).select_by == "robust"


def test_activation_is_checked_against_the_zoo():
    assert TrainConfig().validate().activation == "relu"
    assert config_from_dict({"activation": " Swish"}).activation == "swish"
    with pytest.raises(ValueError, match="unknown activation 'tanh'.*valid choices: relu, swish"):
        config_from_dict({"activation": "tanh"})
    with pytest.raises(ValueError, match="activation must be a string"):
        config_from_dict({"activation": 1})
