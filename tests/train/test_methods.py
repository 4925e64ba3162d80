"""Each method's loss equals its definition computed by hand on a toy model."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from robustlayers.attacks import PGD
from robustlayers.train import StepOutput, list_methods, make_method
from robustlayers.train.methods import Method, register_method

from .conftest import make_ctx


def _in_ball(x_adv, x, eps):
    return (x_adv - x).abs().max() <= eps + 1e-6 and x_adv.min() >= 0 and x_adv.max() <= 1


def test_registry_lists_the_six_methods_and_rejects_unknown():
    assert list_methods()[:6] == ["natural", "pgd-at", "trades", "mart", "awp", "fast-at"]
    with pytest.raises(ValueError, match="did you mean 'trades'.*valid choices: natural"):
        make_method("tradez", make_ctx().config)
    assert make_method("PGD_AT", make_ctx().config).name == "pgd-at"


def test_natural_is_clean_cross_entropy(batch):
    x, y = batch
    ctx = make_ctx(method="natural")
    out = make_method("natural", ctx.config).loss(ctx, x, y)
    assert isinstance(out, StepOutput) and out.logits_adv is None
    torch.testing.assert_close(out.loss, F.cross_entropy(ctx.model(x), y))


def test_pgd_at_is_cross_entropy_on_the_seeded_attack(batch):
    x, y = batch
    ctx = make_ctx(method="pgd-at")
    before = copy.deepcopy(ctx.model)  # the loss's train-mode forward moves BN running stats
    out = make_method("pgd-at", ctx.config).loss(ctx, x, y)
    ctx.seed_epoch(0)  # same generator state -> same attack seed
    attack = PGD(ctx.threat, steps=3, alpha=0.03, random_start=True, seed=ctx.next_seed())
    x_adv = attack(before, x, y)
    assert torch.equal(out.x_adv, x_adv) and _in_ball(x_adv, x, 0.1)
    assert ctx.model.training  # attack ran in eval(), model back in train()
    torch.testing.assert_close(out.loss, F.cross_entropy(ctx.model(x_adv), y))


def test_pgd_at_l2_stays_in_the_l2_ball(batch):
    x, y = batch
    ctx = make_ctx(method="pgd-at", norm="l2", eps=0.5, alpha=0.2)
    out = make_method("pgd-at", ctx.config).loss(ctx, x, y)
    assert (out.x_adv - x).flatten(1).norm(dim=1).max() <= 0.5 + 1e-5


def test_trades_is_ce_plus_beta_kl(batch):
    x, y = batch
    ctx = make_ctx(method="trades", trades_beta=6.0)
    ctx.model.eval()  # no BN batch statistics: the hand computation reuses the same forward
    out = make_method("trades", ctx.config).loss(ctx, x, y)
    p = F.softmax(ctx.model(x), dim=1)
    q = F.softmax(ctx.model(out.x_adv), dim=1)
    kl = (p * (p.log() - q.log())).sum(dim=1).mean()          # KL(p(x) || p(x_adv))
    expected = F.cross_entropy(ctx.model(x), y) + 6.0 * kl
    torch.testing.assert_close(out.loss, expected, rtol=1e-5, atol=1e-6)
    assert _in_ball(out.x_adv, x, 0.1)
    # the inner maximisation increased the KL from its 0.001-noise start
    start = F.softmax(ctx.model((x + 0.001 * torch.randn_like(x)).clamp(0, 1)), dim=1)
    assert kl > (p * (p.log() - start.log())).sum(dim=1).mean()


def test_mart_matches_its_formula(batch):
    x, y = batch
    ctx = make_ctx(method="mart", mart_beta=5.0)
    ctx.model.eval()
    out = make_method("mart", ctx.config).loss(ctx, x, y)
    p_nat = F.softmax(ctx.model(x), dim=1)
    p_adv = F.softmax(ctx.model(out.x_adv), dim=1)
    bce, kl = [], []
    for i in range(len(y)):
        others = [k for k in range(3) if k != y[i]]
        top_other = max(others, key=lambda k: p_adv[i, k])
        bce.append(-torch.log(p_adv[i, y[i]]) - torch.log(1.0001 - p_adv[i, top_other] + 1e-12))
        kl_i = (p_nat[i] * (p_nat[i].log() - torch.log(p_adv[i] + 1e-12))).sum()
        kl.append(kl_i * (1.0000001 - p_nat[i, y[i]]))
    expected = torch.stack(bce).mean() + 5.0 * torch.stack(kl).mean()
    torch.testing.assert_close(out.loss, expected, rtol=1e-5, atol=1e-6)


def test_fast_at_uses_fgsm_rs_with_step_1_25_eps(batch):
    x, y = batch
    ctx = make_ctx(method="fast-at")
    method = make_method("fast-at", ctx.config)
    attack = method.attack(ctx)
    assert attack.alpha == pytest.approx(1.25 * 0.1) and attack.random_start
    assert attack.steps == 1
    out = method.loss(ctx, x, y)
    assert _in_ball(out.x_adv, x, 0.1)
    torch.testing.assert_close(out.loss, F.cross_entropy(ctx.model(out.x_adv), y))


@pytest.mark.parametrize("name,select,targets", [("awp", "all", ["conv.weight", "fc.weight"]),
                                                 ("awp", "fc", ["fc.weight"]),
                                                 ("rat-wp", "fc", ["fc.weight"])])
def test_awp_perturbs_selected_weights_by_gamma_and_restores_exactly(batch, name, select,
                                                                      targets):
    x, y = batch
    ctx = make_ctx(method=name, method_args={"gamma": 0.01, "layers": select})
    model = ctx.model
    method = make_method(name, ctx.config)
    method.setup(ctx)
    assert list(method.targets) == targets  # ndim > 1 only: no biases, no BN
    assert ctx.selections["awp"]["names"] == (["conv", "bn", "fc"] if select == "all" else ["fc"])
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    buffers = {n: b.clone() for n, b in model.named_buffers()}

    # v by hand: the normalised gradient of CE(f(x_adv)) at w, in train mode, scaled to γ‖w‖
    out = method.loss(ctx, x, y)
    proxy = copy.deepcopy(model)
    proxy.load_state_dict({**{n: before[n] for n in before}, **buffers}, strict=False)
    proxy.train()
    grads = torch.autograd.grad(F.cross_entropy(proxy(out.x_adv), y),
                                [dict(proxy.named_parameters())[t] for t in targets])
    for name, param in model.named_parameters():
        if name in targets:
            g = grads[targets.index(name)]
            v = param.detach() - before[name]
            expected = 0.01 * before[name].norm() * g / g.norm()
            torch.testing.assert_close(v, expected, rtol=1e-4, atol=1e-7)
            torch.testing.assert_close(v.norm(), 0.01 * before[name].norm(), rtol=1e-4, atol=0)
        else:
            assert torch.equal(param, before[name]), name
    # the loss was evaluated at w + v
    torch.testing.assert_close(out.loss, F.cross_entropy(model(out.x_adv), y))
    out.loss.backward()
    method.before_optimizer_step(ctx)
    for name, param in model.named_parameters():
        assert torch.equal(param, before[name]), name  # bit-exact restore


def test_awp_proxy_step_leaves_batchnorm_statistics_alone(batch):
    x, y = batch
    ctx = make_ctx(method="awp")
    method = make_method("awp", ctx.config)
    method.setup(ctx)
    buffers = {n: b.clone() for n, b in ctx.model.named_buffers()}
    method.perturbation(ctx, x, x, y)
    for name, buf in ctx.model.named_buffers():
        assert torch.equal(buf, buffers[name]), name


def test_awp_warmup_epochs_have_no_perturbation(batch):
    x, y = batch
    ctx = make_ctx(method="awp", awp_warmup=1)
    method = make_method("awp", ctx.config)
    method.setup(ctx)
    before = {n: p.detach().clone() for n, p in ctx.model.named_parameters()}
    method.loss(ctx, x, y)
    assert method.last_perturbation == {}
    assert all(torch.equal(p, before[n]) for n, p in ctx.model.named_parameters())
    ctx.seed_epoch(1)
    method.loss(ctx, x, y)
    assert set(method.last_perturbation) == {"conv.weight", "fc.weight"}
    method.before_optimizer_step(ctx)


def test_awp_trades_base_and_bad_selection(batch):
    x, y = batch
    ctx = make_ctx(method="awp", awp_base="trades")
    method = make_method("awp", ctx.config)
    method.setup(ctx)
    out = method.loss(ctx, x, y)
    assert "kl" in out.extra
    method.before_optimizer_step(ctx)
    bad = make_method("awp", make_ctx(method="awp", method_args={"layers": "bn"}).config)
    with pytest.raises(ValueError, match="more than one dimension"):
        bad.setup(make_ctx(method="awp", method_args={"layers": "bn"}))
    with pytest.raises(ValueError, match="invalid awp setting base 'mart'.*valid choices: "
                                         "pgd-at, trades"):
        make_ctx(method="awp", method_args={"base": "mart"})


def test_a_new_method_plugs_in_through_the_registry(batch):
    """The interface layer-targeted methods use: freeze a selection, own param groups."""

    @register_method("test-freeze-fc")
    class FreezeFC(Method):
        adversarial = False

        def on_epoch_start(self, ctx, epoch):
            ctx.freeze("fc", label="frozen")
            ctx.set_param_groups([{"select": "conv", "lr": 0.5}])

        def loss(self, ctx, x, y):
            logits = ctx.model(x)
            return StepOutput(F.cross_entropy(logits, y), logits_clean=logits)

    try:
        ctx = make_ctx()
        method = make_method("test-freeze-fc", ctx.config)
        method.on_epoch_start(ctx, 0)
        names = [g["names"] for g in ctx.optimizer.param_groups]
        assert names[0] == ["conv.weight", "conv.bias"] and ctx.optimizer.param_groups[0]["lr"] == 0.5
        assert not any("fc." in n for group in names for n in group)
        assert ctx.selections["frozen"]["names"] == ["fc"]
        assert [e["event"] for e in ctx.events] == ["freeze", "param_groups"]
    finally:
        from robustlayers.train.methods import base
        base._REGISTRY.pop("test-freeze-fc", None)


def test_feature_pgd_helper_for_clat(batch):
    x, y = batch
    ctx = make_ctx()
    attack = ctx.feature_pgd("conv", steps=2)
    x_adv = attack(ctx.model, x, y)
    assert attack.steps == 2 and attack.alpha == 0.03
    assert (x_adv - x).abs().max() <= 0.1 + 1e-6


def test_explicit_zero_steps_and_alpha_are_not_replaced_by_the_defaults(batch):
    from robustlayers.train.methods.trades import trades_examples

    ctx = make_ctx(steps=3)
    assert ctx.pgd().steps == 3 and ctx.pgd().alpha == pytest.approx(0.03)
    assert ctx.pgd(steps=1, alpha=0.01).steps == 1
    # an explicit 0 reaches the attack (which refuses it) instead of becoming config.steps / α
    with pytest.raises(ValueError, match="steps"):
        ctx.pgd(steps=0)
    with pytest.raises(ValueError, match="alpha"):
        ctx.pgd(alpha=0.0)
    with pytest.raises(ValueError, match="steps"):
        ctx.feature_pgd("conv", steps=0)
    with pytest.raises(ValueError, match="alpha"):
        ctx.feature_pgd("conv", alpha=0)
    x, y = batch
    # TRADES with 0 steps is its 0.001·N(0, I) start; with alpha=0 the steps do not move it
    start = trades_examples(ctx, x, steps=0)
    assert (start - x).abs().max() < 0.01
    ctx.seed_epoch(0)
    still = trades_examples(ctx, x, alpha=0.0)
    ctx.seed_epoch(0)
    torch.testing.assert_close(still, trades_examples(ctx, x, steps=0).clamp(0, 1))
    ctx.seed_epoch(0)
    assert (trades_examples(ctx, x) - x).abs().max() > 0.05      # config: 3 steps of 0.03


@pytest.mark.parametrize("mode,forwards", [("eval", 1), ("train", 3 + 2)])
def test_training_attack_mode_eval_or_train_with_the_extra_clean_forward(batch, mode, forwards):
    """eval: the attack leaves BN alone, one train-mode forward (the loss). train (RAT / AWP
    code): each of the 3 PGD steps, the loss and the clean forward after the step all run in
    train() mode and update the BN statistics; the clean logits give the train accuracy."""
    from robustlayers.train import train_step

    x, y = batch
    ctx = make_ctx(method="pgd-at", attack_mode=mode)
    method = make_method("pgd-at", ctx.config)
    ctx.model.train()
    out, logits_clean = train_step(ctx, method, x, y)
    assert int(ctx.model.bn.num_batches_tracked) == forwards
    assert (logits_clean is not None) == (mode == "train")
    assert ctx.model.training
