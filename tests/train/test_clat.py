"""CLAT fine-tuning (Algorithm 1, Eq. 9): objective, trainable set, reselection schedule,
ablations, records and bit-identical resume after a kill."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import nn

from robustlayers.train import TIME_FIELDS
from robustlayers.train.methods import make_method

from .conftest import make_ctx, tiny_config
from .test_resume_kill import _cli, _python


class Doubling(nn.Module):
    """F_a(x) = 2x (1x1 conv), F_b = 3·F_a; logits from a linear head: features known exactly."""

    input_shape = (1, 2, 2)

    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(1, 1, 1, bias=False)
        self.b = nn.Conv2d(1, 1, 1, bias=False)
        self.fc = nn.Linear(4, 3)
        with torch.no_grad():
            self.a.weight.fill_(2.0)
            self.b.weight.fill_(3.0)

    def forward(self, x):
        return self.fc(self.b(self.a(x)).flatten(1))


@pytest.mark.parametrize("ce_input", ["clean", "adv"])
def test_objective_equals_eq9_on_known_features(ce_input):
    model = Doubling()
    ctx = make_ctx(model, method="clat", method_args={"lam": 0.5, "ce_input": ce_input})
    method = make_method("clat", ctx.config)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(4, 1, 2, 2, generator=g)
    delta = 0.1 * torch.randn(4, 1, 2, 2, generator=g)
    y = torch.tensor([0, 1, 2, 0])
    out = method.objective(model, ["a", "b"], x, x + delta, y)
    # ‖F_a(x+δ) − F_a(x)‖₂ = 2‖δ‖₂, ‖F_b(x+δ) − F_b(x)‖₂ = 6‖δ‖₂ per example
    penalty = (8 * delta.flatten(1).norm(dim=1)).mean()
    ce = F.cross_entropy(model(x if ce_input == "clean" else x + delta), y)
    assert torch.allclose(out.loss, ce + 0.5 * penalty, rtol=1e-6)
    assert torch.allclose(out.extra["feature_l2"], penalty, rtol=1e-6)


class _Data:
    """Random 28x28 'training images' for ctx.training_batch."""

    def __init__(self, n=40):
        g = torch.Generator().manual_seed(0)
        self.x = torch.rand(n, 1, 28, 28, generator=g)
        self.y = torch.randint(0, 10, (n,), generator=g)

    def __len__(self):
        return len(self.x)


def _ctx(**args):
    """A context on a random-init small CNN (the config's model is smallcnn)."""
    from robustlayers.data import get_dataset_info
    from robustlayers.models import create_model
    from robustlayers.train import TrainContext, config_from_dict

    model = create_model("smallcnn", num_classes=10, in_channels=1, input_size=28, seed=0)
    config = config_from_dict(dict(model="smallcnn", method="clat", method_args=args, eps=0.1,
                                   alpha=0.03, steps=2, device="cpu"))
    ctx = TrainContext(model, config, device=torch.device("cpu"),
                       info=get_dataset_info("fashion-mnist"), steps_per_epoch=4)
    ctx.rebuild_optimizer()
    ctx.seed_epoch(0)
    ctx.train_data = _Data()
    return ctx, make_method("clat", ctx.config)


def test_critical_smallest_random_and_fixed_select_what_they_say():
    candidates = ["layer1.0", "layer1.3", "layer2.0", "layer2.3", "head.1"]  # not head.3
    for rule in ("critical", "smallest"):
        ctx, method = _ctx(k=2, layers=rule)
        method.setup(ctx)
        assert method.candidates == candidates
        chosen, record = method.choose(ctx, 0)
        c = record["criticality"]
        ranked = sorted(candidates, key=lambda n: -c[n] if rule == "critical" else c[n])
        assert chosen == ranked[:2] and "head.3" in c and record["c1"] == "normalised"
    ctx, method = _ctx(k=3, layers="random")
    method.setup(ctx)
    picks = [method.choose(ctx, e)[0] for e in (0, 0, 10)]
    assert picks[0] == picks[1] and len(set(picks[0])) == 3 and set(picks[0]) <= set(candidates)
    assert picks[0] != picks[2]  # a new draw at the next reselection (seeded per epoch)
    ctx, method = _ctx(k=1, include_classifier=True)
    method.setup(ctx)
    assert method.candidates == candidates + ["head.3"]


def test_reselection_schedule_and_fixed():
    ctx, method = _ctx(reselect_every=10)
    method.selected = ["layer1.0"]
    assert [e for e in range(30) if method.due(e)] == [0, 10, 20]   # epoch % 10 == 1, 1-based
    ctx, fixed = _ctx(fixed=True)
    assert fixed.due(0)
    fixed.selected = ["layer1.0"]
    assert not any(fixed.due(e) for e in range(1, 30))


def test_bad_settings_fail_before_work():
    with pytest.raises(ValueError, match="valid choices: critical, random, smallest"):
        _ctx(layers="largest")
    with pytest.raises(ValueError, match="lam"):
        _ctx(lam=-1)
    ctx, method = _ctx(k=6)
    with pytest.raises(ValueError, match="only 5 candidate layers"):
        method.setup(ctx)


def test_train_does_not_import_analysis():
    code = ("import sys, robustlayers.train, robustlayers.train.methods.clat; "
            "assert 'robustlayers.analysis' not in sys.modules")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


@pytest.fixture(scope="module")
def clat_run(mini_data, reference_run, tmp_path_factory):
    from robustlayers.train import train

    out = tmp_path_factory.mktemp("clat") / "run"
    return train(tiny_config(mini_data, out, init_from=f"{reference_run.path}@last",
                             method="clat", method_args={"k": 2, "reselect_every": 2}))


def _params(path: Path) -> dict:
    return load_file(str(path / "model.safetensors"))


def test_only_the_selected_layers_change_and_the_run_records_them(clat_run, reference_run):
    result = clat_run.result
    history = result["method"]["history"]
    assert [h["epoch"] for h in history] == [0, 2]
    assert set(result["selections"]) >= {"critical@0", "critical@2"}
    for h in history:
        assert len(h["layers"]) == 2 and 0 < h["trainable_share"] < 1
        assert h["trainable_params"] == sum(
            p for name, p in _layer_params(clat_run).items() if name in h["layers"])
    ckpt = clat_run.path / "checkpoints"
    before = _params(reference_run.path / "checkpoints" / "epoch-0003")
    for epoch, tag in ((0, "epoch-0001"), (0, "epoch-0002"), (2, "epoch-0003")):
        after = _params(ckpt / tag)
        chosen = next(h["layers"] for h in history if h["epoch"] == epoch)
        for name, value in after.items():
            if name.endswith(("running_mean", "running_var", "num_batches_tracked")):
                continue
            layer = name.rsplit(".", 1)[0]
            assert torch.equal(value, before[name]) == (layer not in chosen), (tag, name)
        before = after


def _layer_params(run) -> dict:
    from robustlayers.models import create_model

    config = json.loads((run.path / "config.json").read_text())
    model = create_model("smallcnn", **config["model_kwargs"])
    out = {}
    for name, p in model.named_parameters():
        layer = name.rsplit(".", 1)[0]
        out[layer] = out.get(layer, 0) + p.numel()
    return out


def test_killed_clat_run_resumes_bit_identically(mini_data, tmp_path, clat_run, reference_run):
    out = tmp_path / "killed"
    args = _cli(tiny_config(mini_data, out, method="clat"), out)
    args += ["--init-from", f"{reference_run.path}@last", "--k", "2", "--reselect-every", "2"]
    first = _python(args, "batch:3:2")  # mid-epoch 3, after the reselection at its start
    assert first.returncode == -signal.SIGKILL, first.stderr
    second = _python(["train", "--resume", str(out), "--quiet"])
    assert second.returncode == 0, second.stderr

    def rows(run: Path):
        lines = (run / "metrics.jsonl").read_text().splitlines()
        return [{k: v for k, v in json.loads(r).items() if k not in TIME_FIELDS} for r in lines]

    assert rows(out) == rows(clat_run.path)
    mine, ref = _params(out / "checkpoints" / "epoch-0003"), \
        _params(clat_run.path / "checkpoints" / "epoch-0003")
    assert all(torch.equal(mine[k], ref[k]) for k in ref)
    result = json.loads((out / "result.json").read_text())
    assert result["method"]["history"] == clat_run.result["method"]["history"]
    assert result["selections"] == clat_run.result["selections"]


def test_presets_hold_the_papers_schedules():
    from robustlayers.train import preset

    base, fine = preset("clat-pretrain"), preset("clat-finetune")
    for config in (base, fine):
        assert (config.epochs, config.lr, config.schedule, config.eps, config.alpha,
                config.steps, config.eval_steps) == (50, 0.1, "cosine", 0.03, 0.007, 10, 10)
    assert base.method == "pgd-at" and fine.method == "clat"
    assert (preset("clat-pretrain-70").epochs, preset("clat-finetune-30").epochs) == (70, 30)
    quick = preset("clat-fmnist")
    assert quick.model == "smallcnn" and quick.method == "clat"
    assert make_method("clat", quick).k == 1 and make_method("clat", fine).k == 1
    assert make_method("clat", preset("clat-finetune", model="densenet121")).k == 5


def test_autoattack_fab_t_on_three_targets_is_an_option():
    from robustlayers.attacks import AutoAttackAdapter, ThreatModel, make_attack
    from robustlayers.cli.evaluate_cmd import build_attacks

    threat = ThreatModel("linf", 0.03)
    adapter = make_attack("autoattack", threat, fab_targets=3)
    assert adapter.build(nn.Linear(4, 10), "cpu").fab.n_target_classes == 3
    assert adapter.config()["fab_targets"] == 3
    assert AutoAttackAdapter(threat).build(nn.Linear(4, 10), "cpu").fab.n_target_classes == 9
    built = build_attacks(["autoattack"], threat, steps=10, alpha=None, restarts=1, seed=0,
                          fab_targets=3)
    assert built["autoattack"].fab_targets == 3
    with pytest.raises(ValueError, match="fab_targets"):
        AutoAttackAdapter(threat, fab_targets=0)
