"""``robustlayers train``: config assembly, validation errors, a tiny end-to-end run, resume."""

from __future__ import annotations

import json

import pytest

from robustlayers.cli.main import build_parser, main
from robustlayers.cli.train_cmd import build_config
from tests.train.conftest import mini_data, tiny_config  # noqa: F401  (fixture)


def _args(*argv):
    return build_parser().parse_args(["train", *argv])


def test_preset_file_flags_and_set_combine_later_winning(tmp_path):
    cfg = tmp_path / "exp.yaml"
    cfg.write_text("method: trades\nepochs: 9\nlr: 0.2\neps: 8/255\n")
    config = build_config(_args("--preset", "fmnist-quick", "--config", str(cfg), "--epochs", "4",
                                "--milestones", "0.3,0.6", "--set", "lr=0.01",
                                "--set", "param_groups=[{select: head, lr: 0.5}]"))
    assert (config.method, config.epochs, config.lr, config.train_size) == ("trades", 4, 0.01,
                                                                           10000)
    assert config.eps == pytest.approx(8 / 255) and config.milestones == [0.3, 0.6]
    assert config.param_groups == [{"select": "head", "lr": 0.5}]
    flags = build_config(_args("--eps", "0.5/255", "--alpha", "0.1", "--milestones", "75,90",
                               "--norm", "l2", "--eps", "1.5", "--nesterov", "--no-augment"))
    assert flags.eps == 1.5 and flags.alpha == 0.1 and flags.milestones == [75, 90]
    assert flags.nesterov is True and flags.augment is False


@pytest.mark.parametrize("argv,message", [
    (["--method", "pgd"], "valid choices: natural, pgd-at, trades, mart, awp, fast-at"),
    (["--schedule", "step"], "valid choices: piecewise, cosine, onecycle, constant"),
    (["--optimizer", "rmsprop"], "valid choices: sgd, adam"),
    (["--norm", "l1"], "valid choices: linf, l2"),
    (["--preset", "rat"], "valid choices: rat-cifar10"),
    (["--set", "method_arg.beta=1"], "did you mean method_args"),
    (["--method", "trades", "--gamma", "0.01"], "method 'trades' has no setting 'gamma'"),
    (["--code", "A1X2", "--cut", "conv1"], "valid codes: A1N2"),
    (["--set", "param_groups.5.lr=0.1"], "param_groups has 0 entries"),
    (["--eps", "8"], "did you mean '8/255'"),
    (["--set", "eps=8"], "did you mean '8/255'"),
    (["--set", "alpha=2"], "'2/255'"),
    (["--eval-steps", "0", "--set", "select_by=robust"],
     "valid choices with eval_steps=0: clean, auto"),
    (["--activation", "gelu"], "valid choices: relu, swish"),
    (["--resume", "somewhere", "--lr", "3"], "drop --lr"),
    (["--config", "/nonexistent/exp.yaml"], "config file not found"),
])
def test_invalid_input_exits_2_naming_the_choices(argv, message, capsys):
    assert main(["train", *argv]) == 2
    assert message in capsys.readouterr().err


def test_budgets_are_parsed_once_with_the_final_norm(tmp_path):
    cfg = tmp_path / "l2.yaml"
    cfg.write_text("eps: 2\nalpha: 0.5\n")           # an ℓ2 budget; the norm comes from a flag
    config = build_config(_args("--config", str(cfg), "--norm", "l2"))
    assert (config.norm, config.eps, config.alpha) == ("l2", 2.0, 0.5)
    config = build_config(_args("--eps", "4", "--set", "norm=l2", "--activation", "swish"))
    assert (config.norm, config.eps, config.activation) == ("l2", 4.0, "swish")
    config = build_config(_args("--set", "eps=8/255", "--set", "param_groups=[{select: head}]",
                                "--set", "param_groups.0.lr=0.3"))
    assert config.eps == pytest.approx(8 / 255)
    assert config.param_groups == [{"select": "head", "lr": 0.3}]


def test_list_presets(capsys):
    assert main(["train", "--list-presets"]) == 0
    assert "rat-cifar10" in capsys.readouterr().out


def test_tiny_run_prints_run_dir_and_metrics_then_json(mini_data, tmp_path, capsys):  # noqa: F811
    out = tmp_path / "run"
    config = tiny_config(mini_data, out, epochs=1, train_size=128, eval_steps=1)
    argv = ["train", "--method", "fast-at", "--epochs", "1", "--train-size", "128",
            "--batch-size", "64", "--test-size", "64", "--eval-size", "32", "--eval-steps", "1",
            "--data-dir", config["data_dir"], "--device", "cpu", "--out", str(out),
            "--runs-root", str(tmp_path), "--quiet", "--eps", "0.1"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert f"run: {out}" in printed and "best (epoch 1)" in printed
    assert "test_robust_acc" in printed
    result = json.loads((out / "result.json").read_text())
    assert result["method"]["name"] == "fast-at" and result["status"] == "finished"
    # the same config again returns the finished run; a finished run cannot be resumed
    assert main(argv) == 0
    assert f"{out} already holds this config's finished run" in capsys.readouterr().err
    assert main(["train", "--resume", str(out), "--json"]) == 2
    assert "already finished" in capsys.readouterr().err
