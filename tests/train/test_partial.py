"""EARLY's partial adversarial training: every code, a cut at every position of the small CNN,
single-layer codes, the stage-1 kind check, and the BN rule."""

from __future__ import annotations

import copy

import pytest
import torch

from robustlayers.layers import layer_map
from robustlayers.models import create_model
from robustlayers.train import make_method, train_steps
from robustlayers.train.methods.partial import SINGLE_CODES, SPLIT_CODES, parse_code

from .conftest import make_ctx

NAMES = layer_map(create_model("smallcnn", num_classes=10, in_channels=1, input_size=28)).names


def _stage1_model():
    """A 'stage-1' small CNN: every parameter away from its initial value (so a re-initialised
    one is told apart) and non-default BN statistics."""
    model = create_model("smallcnn", num_classes=10, in_channels=1, input_size=28, seed=3)
    gen = torch.Generator().manual_seed(4)
    with torch.no_grad():
        for param in model.parameters():
            param.add_(0.05 * torch.randn(param.shape, generator=gen))
    model.train()
    with torch.no_grad():
        model(torch.rand(16, 1, 28, 28, generator=torch.Generator().manual_seed(5)))
    return model


def _stage2(code, stage1_method, **where):
    model = copy.deepcopy(STAGE1)
    ctx = make_ctx(model, method="partial-at", method_args={"code": code, **where}, steps=1,
                   eps=0.1, alpha=0.05, lr=0.5, train_clean_metrics=False)
    ctx.init_source = {"path": "stage1", "config": {"method": stage1_method}}
    method = make_method("partial-at", ctx.config)
    return ctx, method


STAGE1 = _stage1_model()
BATCHES = [(torch.rand(8, 1, 28, 28, generator=torch.Generator().manual_seed(i)),
            torch.randint(0, 10, (8,), generator=torch.Generator().manual_seed(i)))
           for i in range(2)]


def _layer_params(model, names):
    modules = dict(model.named_modules())
    return {f"{n}.{p}": t.detach().clone() for n in names
            for p, t in modules[n].named_parameters(recurse=False)}


def _check_stage2(ctx, method, retrained, frozen):
    before = _layer_params(ctx.model, NAMES)
    stats_before = {n: b.clone() for n, b in ctx.model.named_buffers()}
    for _ in train_steps(ctx, method, BATCHES):
        pass
    after = _layer_params(ctx.model, NAMES)
    stage1 = _layer_params(STAGE1, NAMES)
    for name, value in after.items():
        layer = name.rsplit(".", 1)[0]
        if layer in frozen:
            assert torch.equal(value, stage1[name]), f"frozen {name} changed"
        else:
            assert layer in retrained
            assert not torch.equal(before[name], stage1[name]), f"{name} not re-initialised"
            assert not torch.equal(value, before[name]), f"retrained {name} did not train"
    # frozen BN layers keep updating their running statistics (stage 2 trains in train())
    for name, buf in ctx.model.named_buffers():
        if name.endswith("running_mean"):
            assert not torch.equal(buf, stats_before[name]), name


@pytest.mark.parametrize("code", SPLIT_CODES)
def test_every_code_at_every_cut_freezes_one_side_and_retrains_the_other(code):
    plan = parse_code(code)
    stage1 = "pgd-at" if plan["stage1"] == "A" else "natural"
    for i, cut in enumerate(NAMES):
        earlier, later = set(NAMES[:i]), set(NAMES[i:])
        frozen, retrained = (earlier, later) if plan["frozen"] == "earlier" else (later, earlier)
        ctx, method = _stage2(code, stage1, cut=cut)
        if not retrained:
            with pytest.raises(ValueError, match="retrains nothing"):
                method.setup(ctx)
            continue
        method.setup(ctx)
        assert set(ctx.selections["partial:retrained"]["names"]) == retrained
        assert set(ctx.selections["partial:frozen"]["names"]) == frozen
        assert method.adversarial == (plan["stage2"] == "A")
        _check_stage2(ctx, method, retrained, frozen)


def test_reinitialised_bn_resets_its_statistics_and_frozen_bn_keeps_them():
    ctx, method = _stage2("A1N2", "pgd-at", cut="layer2.0")
    method.setup(ctx)
    bn = dict(ctx.model.named_modules())
    assert torch.equal(bn["layer2.1"].running_mean, torch.zeros(32))      # retrained: reset
    assert torch.equal(bn["layer1.1"].running_mean,
                       dict(STAGE1.named_modules())["layer1.1"].running_mean)  # frozen: kept


@pytest.mark.parametrize("code", SINGLE_CODES)
def test_single_layer_codes_touch_only_their_layer(code):
    stage1 = "pgd-at" if code[2] == "A" else "natural"
    ctx, method = _stage2(code, stage1, layer="layer2.0")
    method.setup(ctx)
    assert ctx.selections["partial:retrained"]["names"] == ["layer2.0"]
    assert method.adversarial == (code[0] == "A")
    _check_stage2(ctx, method, {"layer2.0"}, set(NAMES) - {"layer2.0"})


@pytest.mark.parametrize("code,stage1,message", [
    ("A1N2", "natural", "needs a stage-1 run trained adversarially"),
    ("N1A2", "trades", "needs a stage-1 run trained naturally"),
    ("NsAr", "natural", "trained adversarially"),
])
def test_a_stage1_run_of_the_wrong_kind_is_refused(code, stage1, message):
    where = {"layer": "layer2.0"} if code in SINGLE_CODES else {"cut": "layer2.0"}
    ctx, method = _stage2(code, stage1, **where)
    with pytest.raises(ValueError, match=message):
        method.setup(ctx)


def test_stage2_needs_a_run_and_valid_settings():
    ctx, method = _stage2("A1N2", "pgd-at", cut="layer2.0")
    ctx.init_source = None
    with pytest.raises(ValueError, match="start it from a stage-1 run with init_from"):
        method.setup(ctx)
    with pytest.raises(ValueError, match="valid codes: A1N2, N1A2"):
        make_ctx(method="partial-at", method_args={"code": "A1B2", "cut": "conv"})
    with pytest.raises(ValueError, match="takes cut"):
        make_ctx(method="partial-at", method_args={"code": "a1n2"})
    with pytest.raises(ValueError, match="retrains one layer: give layer"):
        make_ctx(method="partial-at", method_args={"code": "NsAr", "cut": "conv"})
    ctx, method = _stage2("A1N2", "pgd-at", cut="layer2")  # a block, not one layer
    with pytest.raises(ValueError, match="name the one layer the cut comes before"):
        method.setup(ctx)
    ctx, method = _stage2("A1N2", "pgd-at", cut="layer9.0")
    with pytest.raises(ValueError, match="layer9.0"):
        method.setup(ctx)
