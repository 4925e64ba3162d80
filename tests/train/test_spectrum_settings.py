"""SPECTRUM's settings (Sridhar et al., Analysis of Adversarial Training at a Spectrum of
Perturbations): α rules that follow ε, and a fixed epoch's checkpoint kept for evaluation."""

from __future__ import annotations

import json

import pytest

from robustlayers.cli.main import build_parser
from robustlayers.cli.train_cmd import build_config
from robustlayers.data import get_dataset_info
from robustlayers.runs import RunDir, load_run_model
from robustlayers.train import config_from_dict, preset, resolve_threat, resume_run, train
from robustlayers.train.identity import identity_hash

from .conftest import tiny_config

CIFAR = get_dataset_info("cifar10")


def _alphas(config):
    threat, alpha, eval_alpha = resolve_threat(config, CIFAR)
    return threat.eps * 255, alpha * 255, eval_alpha * 255


@pytest.mark.parametrize("eps", [1, 2, 4, 8, 12])
def test_spectrum_preset_alpha_follows_every_eps(eps):
    # training α = (ε/8)·2/255, per-epoch test α = ε/10, at every ε of the spectrum
    got = _alphas(preset("spectrum-resnet", eps=f"{eps}/255"))
    assert got == pytest.approx((eps, eps / 4, eps / 10))


def test_spectrum_preset_on_the_command_line_with_eps_4():
    args = build_parser().parse_args(["train", "--preset", "spectrum-resnet", "--eps", "4/255"])
    config = build_config(args)
    assert _alphas(config) == pytest.approx((4, 1, 0.4))
    assert (config.alpha_ratio, config.eval_alpha_ratio, config.keep_epochs) == (0.25, 0.1, [76])
    # an explicit α still wins over the rule
    args = build_parser().parse_args(["train", "--preset", "spectrum-resnet", "--eps", "4/255",
                                      "--alpha", "0.5/255"])
    assert _alphas(build_config(args)) == pytest.approx((4, 0.5, 0.4))


def test_alpha_rules_and_their_fallbacks():
    base = {"dataset": "cifar10", "eps": 6 / 255}
    # no rule: the dataset default α scaled with ε, eval α = α
    assert _alphas(config_from_dict(base)) == pytest.approx((6, 1.5, 1.5))
    # ℓ2 with a rule
    l2 = config_from_dict({**base, "norm": "l2", "eps": 0.5, "alpha_ratio": 0.2,
                           "eval_alpha_ratio": 0.05})
    assert _alphas(l2) == pytest.approx((0.5 * 255, 0.1 * 255, 0.025 * 255))
    # an explicit eval α wins over its rule
    both = config_from_dict({**base, "eval_alpha": "1/255", "eval_alpha_ratio": 0.1})
    assert _alphas(both)[2] == pytest.approx(1)


@pytest.mark.parametrize("key,value,match", [
    ("alpha_ratio", 0, "alpha_ratio must be a number > 0"),
    ("eval_alpha_ratio", "a tenth", "eval_alpha_ratio must be a number"),
    ("keep_epochs", 76, r"keep_epochs must be a list of epoch numbers such as \[76\]"),
    ("keep_epochs", [0], "keep_epochs entry must be an integer >= 1"),
    ("keep_epochs", [5, 20], r"keep_epochs \[20\] lie beyond the run's 10 epochs"),
])
def test_bad_rule_and_keep_values_are_refused(key, value, match):
    with pytest.raises(ValueError, match=match):
        config_from_dict({"epochs": 10, key: value})


def test_new_keys_at_their_defaults_keep_an_old_config_hash():
    config = config_from_dict({"epochs": 3}).to_dict()
    old = {k: v for k, v in config.items()
           if k not in ("alpha_ratio", "eval_alpha_ratio", "keep_epochs")}
    assert identity_hash(config) == identity_hash(old)
    assert identity_hash({**config, "keep_epochs": [2]}) != identity_hash(old)
    assert config_from_dict({"keep_epochs": [3, 1, 3], "epochs": 3}).keep_epochs == [1, 3]


def test_resolved_alpha_is_recorded_in_config_json(mini_data, tmp_path):
    run = train(tiny_config(mini_data, tmp_path / "r", epochs=1, eps=0.2, alpha_ratio=0.25,
                            eval_alpha_ratio=0.1, final_eval=False))
    saved = json.loads((run.path / "config.json").read_text())
    assert saved["alpha"] == pytest.approx(0.05) and saved["eval_alpha"] == pytest.approx(0.02)
    assert (saved["alpha_ratio"], saved["eval_alpha_ratio"]) == (0.25, 0.1)
    assert run.result["eval_attack"]["alpha"] == pytest.approx(0.02)


def test_kept_epoch_survives_pruning_and_resume(mini_data, tmp_path):
    # keep_checkpoints=1 prunes every other epoch checkpoint; epoch 1 is kept through the
    # run and through an extension (a resume) to 3 epochs
    config = tiny_config(mini_data, tmp_path / "k", epochs=2, keep_checkpoints=1,
                         keep_epochs=[1], final_eval=False, eval_steps=0)
    run = train(config)
    assert [t for t in run.checkpoint_tags() if t.startswith("epoch")] == \
        ["epoch-0001", "epoch-0002"]
    run = resume_run(run.path, epochs=3)
    assert [t for t in run.checkpoint_tags() if t.startswith("epoch")] == \
        ["epoch-0001", "epoch-0003"]
    assert RunDir.open(run.path).config["keep_epochs"] == [1]
    model, _ = load_run_model(run.path, "epoch-1")
    same, _ = load_run_model(run.path, 1)
    for a, b in zip(model.state_dict().values(), same.state_dict().values()):
        assert (a == b).all()
    last, _ = load_run_model(run.path, "last")
    assert any((a != b).any() for a, b in zip(model.state_dict().values(),
                                              last.state_dict().values()))
    # a new run starts from the kept epoch: RUN@epoch-1
    child = train(tiny_config(mini_data, tmp_path / "c", epochs=1, final_eval=False,
                              eval_steps=0, init_from=f"{run.path}@epoch-1"))
    source = child.config["init_source"]
    assert (source["checkpoint"], source["epoch"]) == ("epoch-0001", 1)


def test_keep_epochs_saves_off_the_checkpoint_every_grid(mini_data, tmp_path):
    run = train(tiny_config(mini_data, tmp_path / "g", epochs=3, checkpoint_every=2,
                            keep_checkpoints=1, keep_epochs=[1], final_eval=False,
                            eval_steps=0))
    assert [t for t in run.checkpoint_tags() if t.startswith("epoch")] == \
        ["epoch-0001", "epoch-0003"]


def test_dry_run_names_the_directory_train_uses(mini_data, tmp_path, capsys):
    # α comes from a rule: the dry run resolves it as train() does before hashing the config
    from robustlayers.cli.main import main

    args = ["train", "--model", "smallcnn", "--dataset", "fashion-mnist", "--data-dir",
            mini_data, "--epochs", "1", "--train-size", "64", "--test-size", "32",
            "--eval-size", "32", "--steps", "1", "--eval-steps", "1", "--device", "cpu",
            "--runs-root", str(tmp_path), "--set", "alpha_ratio=0.3", "--no-final-eval",
            "--quiet"]
    assert main(args + ["--dry-run"]) == 0
    printed = capsys.readouterr().out
    assert "alpha: 0.03" in printed and "starts a new run" in printed
    planned = printed.split("# dry run: ")[1].split(" — ")[0]
    assert main(args) == 0
    assert [str(p) for p in tmp_path.iterdir() if p.is_dir()] == [planned]
