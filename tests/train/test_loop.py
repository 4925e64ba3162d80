"""The training loop end to end on tiny runs: run directory, checkpoints, resume, validation."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file

from robustlayers.models import create_model
from robustlayers.runs import RunIndex, load_run_model
from robustlayers.train import TIME_FIELDS, derive_seed, resume_run, train

from .conftest import tiny_config


def _untimed(rows):
    return [{k: v for k, v in row.items() if k not in TIME_FIELDS} for row in rows]


def _weights(run_path, tag):
    return load_file(str(run_path / "checkpoints" / tag / "model.safetensors"))


def assert_same_weights(a: dict, b: dict):
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name


@pytest.fixture
def reference(reference_run):
    return reference_run


def test_run_directory_holds_config_metrics_checkpoints_result(reference):
    path = reference.path
    config = json.loads((path / "config.json").read_text())
    assert config["eps"] == pytest.approx(0.1) and config["alpha"] == pytest.approx(0.01)
    assert config["model_kwargs"]["in_channels"] == 1 and config["seed"] == 7
    env = json.loads((path / "environment.json").read_text())
    assert {"torch", "code_version", "robustlayers"} <= set(env)
    rows = reference.metrics()
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    expected = {"lr", "train_loss", "train_clean_acc", "train_adv_acc", "test_clean_acc",
                "test_clean_loss", "test_robust_acc", "test_robust_loss", "seconds",
                "images_per_s", "best"}
    assert expected <= set(rows[0])
    assert rows[0]["lr"] == pytest.approx(0.05) and rows[2]["lr"] < rows[1]["lr"]  # cosine
    tags = reference.checkpoint_tags()
    assert {"epoch-0001", "epoch-0002", "epoch-0003", "best"} <= set(tags)
    result = reference.result
    assert result["status"] == "finished" and result["select_by"] == "test_robust_acc"
    best = max(r["test_robust_acc"] for r in rows)
    assert result["best"]["test_robust_acc"] == best
    assert result["best_minus_last"]["test_robust_acc"] == pytest.approx(
        best - rows[-1]["test_robust_acc"])
    assert result["eval_attack"]["steps"] == 2 and result["threat"]["eps"] == pytest.approx(0.1)
    row = RunIndex(path.parent).get("ref")
    assert row["status"] == "finished" and row["method"] == "pgd-at"
    model, _ = load_run_model(path, "last")
    assert_same_weights(model.state_dict(), _weights(path, "epoch-0003"))


def test_resume_skips_a_corrupt_checkpoint_and_ends_identical(reference, tmp_path, capsys):
    copy = tmp_path / "copy"
    shutil.copytree(reference.path, copy)
    (copy / "result.json").unlink()           # as if killed before the end
    weights = copy / "checkpoints" / "epoch-0003" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])   # truncated
    with pytest.warns(UserWarning, match="epoch-0003"):
        run = resume_run(copy)
    assert "epoch-0003" in capsys.readouterr().err
    assert _untimed(run.metrics()) == _untimed(reference.metrics())
    assert_same_weights(_weights(copy, "epoch-0003"), _weights(reference.path, "epoch-0003"))
    assert_same_weights(_weights(copy, "best"), _weights(reference.path, "best"))
    strip = lambda r: {k: v for k, v in r.items() if k != "seconds"}  # noqa: E731
    assert strip(run.result) == strip(reference.result)


def test_resume_of_a_finished_run_is_refused(reference):
    with pytest.raises(ValueError, match="already finished"):
        resume_run(reference.path)


def test_existing_out_dir_needs_resume(reference, mini_data):
    with pytest.raises(ValueError, match="--resume"):
        train(tiny_config(mini_data, reference.path))


def test_natural_with_validation_split_and_frozen_layers(mini_data, tmp_path):
    out = tmp_path / "nat"
    run = train(tiny_config(mini_data, out, method="natural", epochs=2, val_size=64,
                            freeze="layer1", eval_steps=0, eval_every=2, train_size=192))
    result = run.result
    assert result["select_by"] == "val_clean_acc" and result["best_epoch"] == 2
    first, row = run.metrics()
    assert "test_clean_acc" not in first and first["best"] is False  # eval_every=2
    assert row["val_clean_acc"] is not None and row["train_adv_acc"] is None
    assert "test_robust_acc" not in row
    assert run.selections["freeze"]["names"] == ["layer1.0", "layer1.1", "layer1.3", "layer1.4"]
    trained = _weights(out, "epoch-0002")
    _, config = load_run_model(out, "best")
    assert config["freeze"] == "layer1"
    # frozen parameters equal their initial values; the rest trained
    fresh = create_model("smallcnn", seed=derive_seed(7, "model") % 2**31,
                         **config["model_kwargs"])
    for name, param in fresh.named_parameters():
        same = torch.equal(param.detach(), trained[name])
        assert same == name.startswith("layer1."), name
    assert result["params"]["trainable"] < result["params"]["total"]


@pytest.mark.parametrize("method", ["trades", "mart", "awp", "fast-at"])
def test_every_method_runs_through_the_loop(mini_data, tmp_path, method):
    run = train(tiny_config(mini_data, tmp_path / method, method=method, epochs=1,
                            train_size=128, eval_steps=1, awp_select="block:layer2,head"))
    row = run.metrics()[0]
    assert 0 <= row["train_adv_acc"] <= 1 and 0 <= row["test_robust_acc"] <= 1
    if method == "awp":
        assert run.selections["awp"]["names"][0] == "layer2.0"
    if method in ("trades", "mart"):
        assert "train_kl" in row
