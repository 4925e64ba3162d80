import json

import pytest

from robustlayers.cli.main import main


def run_json(capsys, argv):
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out)


def test_layers_json_has_the_contract_fields(capsys):
    rows = run_json(capsys, ["layers", "resnet18", "--json"])
    assert len(rows) == 41
    assert set(rows[0]) == {"index", "name", "kind", "block", "params", "out_shape", "depth",
                            "selected"}
    assert rows[0] == {"index": 0, "name": "conv1", "kind": "conv", "block": "stem",
                       "params": 1728, "out_shape": [64, 32, 32], "depth": 1, "selected": True}
    assert rows[-1]["out_shape"] == [10]
    assert rows[-1]["name"] == "linear" and rows[-1]["block"] == "head"
    assert rows[-1]["depth"] == 18   # CLAT's depth numbering: no shortcut projections
    assert [r["depth"] for r in rows if "shortcut" in r["name"]] == [None] * 6


def test_layers_selected_column(capsys):
    rows = run_json(capsys, ["layers", "resnet18", "--select", "block:4 & kind:conv", "--json"])
    chosen = [r["name"] for r in rows if r["selected"]]
    assert chosen == ["layer4.0.conv1", "layer4.0.conv2", "layer4.0.shortcut.0",
                      "layer4.1.conv1", "layer4.1.conv2"]


def test_layers_dataset_sets_the_input(capsys):
    rows = run_json(capsys, ["layers", "smallcnn", "--dataset", "fashion-mnist", "--json"])
    assert rows[0]["params"] == 16 * 1 * 9  # one input channel, bias-free first conv
    rows = run_json(capsys, ["layers", "resnet18", "--dataset", "cifar100", "--json"])
    assert rows[-1]["params"] == 512 * 100 + 100


def test_layers_table_output(capsys):
    assert main(["layers", "smallcnn", "--select", "kind:linear"]) == 0
    out = capsys.readouterr().out
    assert "10 layers" in out and "selection 'kind:linear': 2 layers" in out
    assert "head.3" in out


def test_layers_of_a_run_directory(tmp_path, capsys):
    from robustlayers.builders import model_kwargs_for
    from robustlayers.models import create_model
    from robustlayers.runs import RunDir

    kwargs = model_kwargs_for("fashion-mnist")
    run = RunDir.create(tmp_path / "run", {"model": "smallcnn", "model_kwargs": kwargs,
                                           "dataset": "fashion-mnist"})
    run.save_checkpoint("best", create_model("smallcnn", **kwargs), {"epoch": 0})
    rows = run_json(capsys, ["layers", "--run", str(tmp_path / "run"), "--json"])
    assert len(rows) == 10 and rows[0]["out_shape"] == [16, 28, 28]
    assert main(["layers", "--run", str(tmp_path / "run"), "--select", "kind:linear"]) == 0
    out = capsys.readouterr().out
    assert "smallcnn from run" in out and "fashion-mnist (1, 28, 28)" in out
    assert main(["layers", "smallcnn", "--run", str(tmp_path / "run")]) == 2
    assert "drop MODEL" in capsys.readouterr().err
    assert main(["layers"]) == 2
    assert "--run RUN_DIR" in capsys.readouterr().err


def test_layers_normalize_option(tmp_path, capsys):
    import torch

    from robustlayers.builders import build_model

    path = tmp_path / "raw.pt"
    torch.save(build_model("smallcnn", "fashion-mnist").state_dict(), path)
    assert main(["layers", "smallcnn", "--checkpoint", str(path), "--json"]) == 0
    assert "--normalize none" in capsys.readouterr().err
    assert main(["layers", "smallcnn", "--checkpoint", str(path), "--normalize", "none",
                 "--json"]) == 0
    assert capsys.readouterr().err == ""
    assert main(["layers", "smallcnn", "--normalize", "zscore"]) == 2
    assert "valid choices: dataset" in capsys.readouterr().err


def test_layers_checkpoint_round_trip(tmp_path, capsys):
    from robustlayers.builders import build_model
    from robustlayers.models import save_weights

    path = save_weights(build_model("smallcnn", "fashion-mnist"), tmp_path / "w.safetensors")
    rows = run_json(capsys, ["layers", "smallcnn", "--checkpoint", str(path), "--json"])
    assert len(rows) == 10


@pytest.mark.parametrize("argv, message", [
    (["layers", "resnet18", "--select", "layer4.0.conv3"], "closest: layer4.0.conv"),
    (["layers", "resnet81"], "resnet18"),
    (["layers", "resnet18", "--dataset", "imagenet"], "fashion-mnist"),
    (["models", "transformer*"], "no zoo model matches"),
])
def test_errors_exit_2_with_the_valid_choices(capsys, argv, message):
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_models_lists_the_zoo(capsys):
    rows = run_json(capsys, ["models", "--json"])
    names = {r["name"] for r in rows}
    assert names == {"resnet18", "resnet18_spectrum", "resnet34", "resnet50", "preact_resnet18", "preact_resnet34",
                     "wrn28_10", "wrn34_10", "wrn70_16", "vgg16_bn", "vgg19_bn", "densenet121",
                     "smallcnn"}
    rows = run_json(capsys, ["models", "preact*", "--json"])
    assert [r["name"] for r in rows] == ["preact_resnet18", "preact_resnet34"]
