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


def test_an_existing_out_dir_of_another_config_is_refused(reference, mini_data):
    with pytest.raises(ValueError, match="holds a run of another config.*epochs"):
        train(tiny_config(mini_data, reference.path, epochs=5))


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


# --- resume exactness beyond plain PGD-AT, stale best, failures, activation, data -----------------

class Interrupt(Exception):
    """Stands in for a kill: raised at the start of an epoch's training."""


def _stop_at(monkeypatch, epoch: int | None):
    """Make the loop raise :class:`Interrupt` when it starts training ``epoch`` (0-based;
    None: at the first epoch it trains)."""
    from robustlayers.train import loop

    real = loop.train_epoch

    def stopping(ctx, method, data, e):
        if epoch is None or e == epoch:
            raise Interrupt(f"stopped at epoch {e}")
        return real(ctx, method, data, e)

    monkeypatch.setattr(loop, "train_epoch", stopping)


def _assert_same_run(a, b):
    assert _untimed(a.metrics()) == _untimed(b.metrics())
    tags = a.checkpoint_tags()
    assert tags == b.checkpoint_tags() and "best" in tags
    for tag in tags:
        assert_same_weights(_weights(a.path, tag), _weights(b.path, tag))
    strip = lambda r: {k: v for k, v in r.items() if k != "seconds"}  # noqa: E731
    assert strip(a.result) == strip(b.result)


@pytest.mark.parametrize("overrides", [
    pytest.param(dict(freeze="layer1", param_groups=[{"select": "head", "lr": 0.2,
                                                      "schedule": "constant"}]),
                 id="freeze+param_groups"),
    pytest.param(dict(method="awp", awp_select="block:layer2,head", awp_warmup=1), id="awp"),
])
def test_interrupted_and_resumed_run_equals_the_straight_one(mini_data, tmp_path, monkeypatch,
                                                             overrides):
    straight = train(tiny_config(mini_data, tmp_path / "straight", **overrides))
    out = tmp_path / "resumed"
    _stop_at(monkeypatch, 1)                           # after epoch 1 and its checkpoints
    with pytest.raises(Interrupt):
        train(tiny_config(mini_data, out, **overrides))
    assert [r["epoch"] for r in _failed_run_metrics(out)] == [1]
    monkeypatch.undo()
    resumed = resume_run(out)
    _assert_same_run(resumed, straight)
    rows = resumed.metrics()
    if "param_groups" in overrides:                    # the head keeps its constant lr of 0.2
        assert [r["lrs"][0] for r in rows] == [0.2] * 3 and rows[2]["lrs"][1] < rows[1]["lrs"][1]
        assert resumed.result["params"]["trainable"] < resumed.result["params"]["total"]
    else:
        assert resumed.result["method"]["warmup"] == 1


def _failed_run_metrics(out):
    from robustlayers.runs import RunDir

    run = RunDir.open(out)
    assert run.status == "failed" and "Interrupt" in run.result["error"]
    return run.metrics()


def _stale_best_copy(reference, path, resume_epoch: int, record_epoch: int | None = None):
    """A copy of the reference run as if killed after saving ``best`` at epoch 3 but before its
    epoch checkpoint, resuming from ``epoch-<resume_epoch>``; ``best`` holds foreign weights.
    ``record_epoch`` rewrites the resume checkpoint's best record to that epoch's."""
    from robustlayers.runs import RunDir, epoch_tag

    shutil.copytree(reference.path, path)
    (path / "result.json").unlink()
    for epoch in range(resume_epoch + 1, 4):
        shutil.rmtree(path / "checkpoints" / epoch_tag(epoch))
    run = RunDir.open(path)
    model, config = load_run_model(path, epoch_tag(resume_epoch))
    state = run.load_checkpoint(epoch_tag(resume_epoch))
    if record_epoch is not None:
        state["best"] = run.load_checkpoint(epoch_tag(record_epoch))["best"]
        run.save_checkpoint(epoch_tag(resume_epoch), model, state)
    foreign = create_model("smallcnn", seed=123, **config["model_kwargs"])
    run.save_checkpoint("best", foreign, {**state, "epoch": 3}, epoch=3)
    return run


def test_resume_replaces_a_best_saved_after_the_resume_point(reference, tmp_path, monkeypatch,
                                                            capsys):
    # the recorded best is the resume epoch itself: best = the resumed weights
    run = _stale_best_copy(reference, tmp_path / "a", resume_epoch=1)
    _stop_at(monkeypatch, None)
    with pytest.raises(Interrupt):
        resume_run(run.path)
    assert run.verify_checkpoint("best")["epoch"] == 1
    assert_same_weights(_weights(run.path, "best"), _weights(reference.path, "epoch-0001"))
    assert run.load_checkpoint("best")["best"]["epoch"] == 1
    monkeypatch.undo()
    _assert_same_run(resume_run(run.path), reference)   # and the replay ends identical

    # the recorded best is an earlier epoch: restored from its epoch checkpoint
    run = _stale_best_copy(reference, tmp_path / "b", resume_epoch=2, record_epoch=1)
    _stop_at(monkeypatch, None)
    with pytest.raises(Interrupt):
        resume_run(run.path)
    assert run.verify_checkpoint("best")["epoch"] == 1
    assert_same_weights(_weights(run.path, "best"), _weights(reference.path, "epoch-0001"))

    # ...and when that checkpoint is gone, the stale best is dropped, not kept
    run = _stale_best_copy(reference, tmp_path / "c", resume_epoch=2, record_epoch=1)
    shutil.rmtree(run.path / "checkpoints" / "epoch-0001")
    capsys.readouterr()
    with pytest.raises(Interrupt):
        resume_run(run.path)
    assert "best" not in run.checkpoint_tags()
    assert "dropping checkpoint best (epoch 3)" in capsys.readouterr().err


def test_a_failure_before_the_first_epoch_marks_the_run_failed(mini_data, tmp_path, monkeypatch):
    from robustlayers.runs import RunDir
    from robustlayers.train import loop

    def broken_index(run, config):
        raise RuntimeError("runs index unavailable")

    monkeypatch.setattr(loop, "index_run", broken_index)
    out = tmp_path / "broken"
    with pytest.raises(RuntimeError, match="runs index unavailable"):
        train(tiny_config(mini_data, out, epochs=1))
    run = RunDir.open(out)
    assert run.status == "failed" and "runs index unavailable" in run.result["error"]

    def broken_restore(ctx, method, state):
        raise RuntimeError("bad state")

    monkeypatch.undo()
    _stop_at(monkeypatch, 1)
    out = tmp_path / "broken-resume"
    with pytest.raises(Interrupt):
        train(tiny_config(mini_data, out, epochs=2))
    monkeypatch.setattr(loop, "restore_state", broken_restore)
    with pytest.raises(RuntimeError, match="bad state"):
        resume_run(out)
    run = RunDir.open(out)
    assert run.status == "failed" and "bad state" in run.result["error"]


def test_swish_models_train_and_record_their_activation(mini_data, tmp_path, reference):
    assert json.loads((reference.path / "config.json").read_text())["model_kwargs"][
        "activation"] == "relu"
    out = tmp_path / "swish"
    run = train(tiny_config(mini_data, out, method="natural", epochs=1, eval_steps=0,
                            train_size=64, activation="swish"))
    config = json.loads((out / "config.json").read_text())
    assert config["activation"] == "swish" and config["model_kwargs"]["activation"] == "swish"
    model, _ = load_run_model(out, "best")
    kinds = {type(m) for m in model.modules()}
    assert torch.nn.SiLU in kinds and torch.nn.ReLU not in kinds
    assert_same_weights(model.state_dict(), _weights(out, "epoch-0001"))
    assert run.result["status"] == "finished"


def test_missing_fashion_mnist_fails_the_tests_instead_of_skipping(tmp_path):
    from .conftest import FMNIST, require_fashion_mnist

    assert require_fashion_mnist() == FMNIST
    with pytest.raises(pytest.fail.Exception, match="make test"):
        require_fashion_mnist(str(tmp_path))
