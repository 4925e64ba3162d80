"""Start from an existing run (init_from), reinit, fixed-parameter AT, RAT_LR, the final
best/last evaluation and the collapse record, end to end on tiny runs."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from robustlayers import builders
from robustlayers.data import get_dataset_info, load_dataset
from robustlayers.models import save_weights
from robustlayers.runs import load_run_model
from robustlayers.train import derive_seed, train
from robustlayers.train.init import parse_init_from, weights_hash

from .conftest import tiny_config


def _weights(run_path, tag):
    return load_file(str(run_path / "checkpoints" / tag / "model.safetensors"))


def _layer(weights: dict, prefix: str) -> dict:
    return {k: v for k, v in weights.items() if k.startswith(prefix + ".")}


def _equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_parse_init_from_splits_only_real_tags():
    assert parse_init_from("runs/a@best") == (parse_init_from("runs/a")[0], "best")
    assert parse_init_from("runs/a@epoch-3")[1] == "epoch-3"
    assert parse_init_from("runs/me@home/w.safetensors")[1] is None


@pytest.mark.parametrize("tag,checkpoint", [("best", "best"), ("last", "epoch-0003"),
                                            ("epoch-2", "epoch-0002"), (None, "epoch-0003")])
def test_init_from_loads_exactly_the_source_weights(reference_run, mini_data, tmp_path, tag,
                                                    checkpoint):
    """Everything but the classifier frozen: after a stage-2 epoch those layers still hold
    exactly the source checkpoint's weights, and the run records where they came from."""
    source = str(reference_run.path) + (f"@{tag}" if tag else "")
    run = train(tiny_config(mini_data, tmp_path / "s2", init_from=source, epochs=1,
                            freeze="index:0:9", final_eval=False))
    loaded = _weights(reference_run.path, checkpoint)
    after = _weights(run.path, "epoch-0001")
    frozen = {k: v for k, v in loaded.items() if not k.startswith("head.3.")
              and "running" not in k and "num_batches" not in k}
    assert _equal({k: after[k] for k in frozen}, frozen)
    assert not torch.equal(after["head.3.weight"], loaded["head.3.weight"])
    record = json.loads((run.path / "config.json").read_text())["init_source"]
    assert record["checkpoint"] == checkpoint and record["kind"] == "run"
    assert record["config"]["method"] == "pgd-at" and record["config"]["seed"] == 7
    model, _ = load_run_model(reference_run.path, checkpoint)
    assert record["weights_sha256"] == weights_hash(model)
    assert run.result["init_source"]["checkpoint"] == checkpoint


def test_init_from_a_weights_file_and_refusals(reference_run, mini_data, tmp_path):
    model, _ = load_run_model(reference_run.path, "best")
    weights = tmp_path / "w.safetensors"
    save_weights(model, weights)
    run = train(tiny_config(mini_data, tmp_path / "f", init_from=str(weights), epochs=1,
                            freeze="index:0:9", final_eval=False))
    assert run.config["init_source"]["kind"] == "file"
    assert torch.equal(_weights(run.path, "epoch-0001")["layer1.0.weight"],
                       model.state_dict()["layer1.0.weight"])
    with pytest.raises(ValueError, match="its model is 'smallcnn'.*this run's is 'smallcnn'.*"
                                         "differ in \\['activation'\\]"):
        train(tiny_config(mini_data, tmp_path / "x", init_from=str(reference_run.path),
                          activation="swish"))
    with pytest.raises(ValueError, match="does not fit model 'resnet18'"):
        train(tiny_config(mini_data, tmp_path / "y", init_from=str(weights), model="resnet18"))
    with pytest.raises(ValueError, match="no checkpoint 9 in .*choose 'last', 'best'"):
        train(tiny_config(mini_data, tmp_path / "z", init_from=f"{reference_run.path}@epoch-9"))
    with pytest.raises(FileNotFoundError, match="neither a run directory nor a weights file"):
        train(tiny_config(mini_data, tmp_path / "w", init_from=str(tmp_path / "nothing")))
    assert not any((tmp_path / n).exists() for n in "xyzw")  # refused before writing


def test_reinit_resets_exactly_the_selection(reference_run, mini_data, tmp_path):
    run = train(tiny_config(mini_data, tmp_path / "r", init_from=str(reference_run.path),
                            reinit="layer2.3,layer2.4", freeze="index:0:9", epochs=1,
                            final_eval=False, method="natural", lr=1e-9))
    source = _weights(reference_run.path, "epoch-0003")
    after = _weights(run.path, "epoch-0001")
    for key, value in after.items():
        reset = key.startswith(("layer2.3.", "layer2.4."))
        if key.startswith("head.3."):
            continue  # the one trained layer (lr 1e-9)
        if key.endswith(("running_mean", "running_var", "num_batches_tracked")):
            continue  # BN statistics move in train(); checked below
        assert torch.equal(value, source[key]) != reset, key
    # the re-initialised BN started from fresh statistics: its mean is that of one epoch
    # of updates from 0, far from the source's
    assert (after["layer2.4.running_mean"] - source["layer2.4.running_mean"]).abs().max() > 0
    assert after["layer2.4.num_batches_tracked"] < source["layer2.4.num_batches_tracked"]


def test_fixed_parameter_at_never_updates_the_fixed_layers(mini_data, tmp_path):
    config = tiny_config(mini_data, tmp_path / "fixed", freeze="block:layer1,head", epochs=2,
                         final_eval=False)
    run = train(config)
    info = get_dataset_info("fashion-mnist")
    init = builders.build_model("smallcnn", info, seed=derive_seed(7, "model") % 2**31)
    start = {k: v for k, v in init.state_dict().items()}
    after = _weights(run.path, "epoch-0002")
    for key in after:
        if "running" in key or "num_batches" in key:
            continue
        fixed = key.startswith(("layer1.", "head."))
        assert torch.equal(after[key], start[key]) == fixed, key


def test_rat_lr_groups_carry_their_learning_rates_every_epoch(mini_data, tmp_path):
    run = train(tiny_config(mini_data, tmp_path / "ratlr", method="rat-lr", epochs=3,
                            schedule="piecewise", milestones=[1, 2], lr=0.05,
                            method_args={"layers": "block:layer2,head", "layers_lr": 0.1},
                            final_eval=False))
    rows = run.metrics()
    assert [r["lrs"] for r in rows] == [pytest.approx([0.1, 0.05]), pytest.approx([0.1, 0.005]),
                                        pytest.approx([0.1, 0.0005])]
    groups = run.result["selections"]["param_groups[0]"]["names"]
    assert groups == ["layer2.0", "layer2.1", "layer2.3", "layer2.4", "head.1", "head.3"]


def test_final_numbers_come_from_the_whole_test_split(mini_data, tmp_path):
    run = train(tiny_config(mini_data, tmp_path / "final", epochs=2, eval_size=16,
                            train_eval_size=32))
    final = run.result["final"]
    assert final["n"] == 64 and run.config["eval_size"] == 16
    assert set(final["last"]) >= {"clean_acc", "clean_loss", "robust_acc", "robust_loss"}
    assert final["attack"]["steps"] == 2 and final["collapsed"] in (True, False)
    # the last model's clean accuracy on all 64 test images, recomputed by hand
    model, _ = load_run_model(run.path, "last")
    test = load_dataset("fashion-mnist", "test", data_dir=mini_data, subset=64, seed=7)
    with torch.no_grad():
        acc = (model(test.x).argmax(1) == test.y).float().mean().item()
    assert final["last"]["clean_acc"] == pytest.approx(acc)
    best = final["best"]
    assert final["best_minus_last"]["robust_acc"] == pytest.approx(
        best["robust_acc"] - final["last"]["robust_acc"])
    rows = run.metrics()
    assert all("train_eval_robust_acc" in r and "train_eval_clean_acc" in r for r in rows)


def test_a_collapsed_model_is_recorded_as_collapsed(mini_data, tmp_path):
    from robustlayers.train.evaluation import final_evaluation

    from .conftest import make_ctx

    ctx = make_ctx(builders.build_model("smallcnn", "fashion-mnist", seed=1), eval_steps=1,
                   quiet=True)
    with torch.no_grad():
        for param in ctx.model.parameters():
            param.zero_()  # constant logits: one class for every image
    test = load_dataset("fashion-mnist", "test", data_dir=mini_data, subset=64, seed=7)
    final = final_evaluation(ctx, None, test, best_epoch=None)
    assert final["collapsed"] is True and final["last"]["clean_acc"] <= 0.15
    assert "1.5 x chance" in final["collapse_rule"]


def test_normalize_is_built_into_the_model_and_recorded(mini_data, tmp_path):
    run = train(tiny_config(mini_data, tmp_path / "raw", normalize="none", epochs=1,
                            final_eval=False))
    assert (run.config["model_kwargs"]["mean"], run.config["model_kwargs"]["std"]) == \
        ([0.0], [1.0])
    model, _ = load_run_model(run.path, "last")
    assert model.normalize.mean.flatten().tolist() == [0.0]
    with pytest.raises(ValueError, match="normalize: unknown normalisation 'raw'"):
        train(tiny_config(mini_data, tmp_path / "bad", normalize="raw"))
