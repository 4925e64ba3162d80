"""The attack's fast path: batch-norm folded into the preceding conv and channels-last layout on a
copy of the model (same input gradients, weights untouched), and no host synchronisation per
attack step."""
import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from robustlayers.attacks import BPDA, FGSM, PGD, FeaturePGD, ThreatModel
from robustlayers.attacks.fold import attack_model, find_pairs, fold_weights
from robustlayers.layers import capture
from robustlayers.models import create_model

from .toys import TinyNet

LINF = ThreatModel("linf", 8 / 255)


def _randomise_bn(model, seed=0):
    """Non-trivial running statistics and affine parameters, so folding changes the weights."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            c = m.num_features
            m.running_mean.copy_(torch.randn(c, generator=g) * 0.3)
            m.running_var.copy_(torch.rand(c, generator=g) + 0.5)
            with torch.no_grad():
                m.weight.copy_(torch.rand(c, generator=g) + 0.5)
                m.bias.copy_(torch.randn(c, generator=g) * 0.2)
    return model.eval()


def _input_grad(model, x, y):
    x = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(F.cross_entropy(model(x), y, reduction="sum"), x)
    return g


def _state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("name,shape", [("tiny", (1, 28, 28)), ("resnet18", (3, 32, 32))])
@pytest.mark.parametrize("fold,cl", [(True, False), (False, True), (True, True)])
def test_same_input_gradients_and_weights_untouched(name, shape, fold, cl):
    torch.manual_seed(0)
    model = TinyNet() if name == "tiny" else create_model("resnet18", seed=0)
    model = _randomise_bn(model)
    x, y = torch.rand(3, *shape), torch.tensor([1, 4, 7])
    before = _state(model)
    runner, x_run, record = attack_model(model, x, fold_bn=fold, channels_last=cl)
    assert runner is not model and bool(record["fold_bn"]) == fold and record["channels_last"] == cl
    if fold:  # every conv that feeds a batch-norm is folded; no batch-norm is left
        n_bn = sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())
        assert len(record["fold_bn"]) == n_bn
        assert not any(isinstance(m, nn.BatchNorm2d) for m in runner.modules())
    if cl:
        assert x_run.is_contiguous(memory_format=torch.channels_last)
    expect = _input_grad(model, x, y)
    got = _input_grad(runner, x_run, y)
    torch.testing.assert_close(got, expect, rtol=1e-4, atol=1e-5 * expect.abs().max().item())
    after = _state(model)
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert all(p.grad is None for p in model.parameters())


def test_fold_weights_formula():
    torch.manual_seed(0)
    conv, bn = nn.Conv2d(3, 5, 3, bias=True), _randomise_bn(nn.BatchNorm2d(5))
    folded = nn.Conv2d(3, 5, 3)
    w, b = fold_weights(conv, bn)
    with torch.no_grad():
        folded.weight.copy_(w)
        folded.bias.copy_(b)
        x = torch.randn(2, 3, 8, 8)
        torch.testing.assert_close(folded(x), bn(conv(x)), rtol=1e-5, atol=1e-5)


def test_pgd_records_the_fast_path_and_matches_the_plain_run(tiny, batch):
    x, y = batch
    fast, plain = PGD(LINF, steps=3), PGD(LINF, steps=3, fold_bn=False, channels_last=False)
    assert fast.config()["fold_bn"] == "auto" and plain.config()["channels_last"] is False
    a, b = fast(tiny, x, y), plain(tiny, x, y)
    assert fast.last_report["fast_path"] == {"fold_bn": ["conv1+bn1"], "channels_last": True}
    assert plain.last_report["fast_path"] == {"fold_bn": [], "channels_last": False}
    assert a.is_contiguous() and (a - b).abs().gt(1e-6).float().mean() < 0.01
    assert (a - x).abs().max() <= 8 / 255 + 1e-6


def test_auto_stays_off_where_not_measured_or_unsafe(tiny, batch):
    x, y = batch
    attack = PGD(LINF, steps=1, train_mode=True)
    attack(copy.deepcopy(tiny), x, y)
    assert attack.last_report["fast_path"]["fold_bn"] == []
    assert attack.last_report["fast_path"]["auto_off"] == "attack runs in train mode"
    bpda = BPDA(PGD(LINF, steps=1), ["act1"])
    bpda(tiny, x, y)
    assert "hooks" in bpda.last_report["fast_path"]["auto_off"]


def test_true_is_refused_clearly_where_it_cannot_apply(tiny, batch):
    x, y = batch
    with pytest.raises(ValueError, match="fold_bn=True cannot be used here: attack runs in train"):
        PGD(LINF, steps=1, train_mode=True, fold_bn=True)(tiny, x, y)
    with pytest.raises(ValueError, match="hooks"):
        BPDA(PGD(LINF, steps=1, fold_bn=True), ["act1"])(tiny, x, y)
    with pytest.raises(ValueError, match="fold_bn must be True, False or 'auto', got 'yes'"):
        PGD(LINF, fold_bn="yes")


class _Reused(nn.Module):
    """The conv's output feeds the batch-norm *and* a residual sum: folding would be wrong."""

    def __init__(self):
        super().__init__()
        self.conv, self.bn, self.fc = nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), \
            nn.Linear(4 * 28 * 28, 10)

    def forward(self, x):
        h = self.conv(x)
        return self.fc((self.bn(h) + h).flatten(1))


def test_a_fold_that_changes_the_function_is_caught(batch):
    x, y = batch
    model = _randomise_bn(_Reused())
    assert find_pairs(model, x[:2]) == (("conv", "bn"),)  # structurally it looks foldable
    _, _, record = attack_model(model, x, fold_bn="auto", channels_last=False)
    assert record["fold_bn"] == [] and "disagreed" in record["auto_off"]
    with pytest.raises(ValueError, match="folded model's logits differ"):
        attack_model(model, x, fold_bn=True, channels_last=False)


def test_feature_pgd_keeps_captured_convs_unfolded(tiny, batch):
    x, _ = batch
    on_bn = FeaturePGD(LINF, "bn1", steps=1)
    on_bn(tiny, x, None)
    assert on_bn.last_report["fast_path"]["fold_bn"] == ["conv1+bn1"]
    on_conv = FeaturePGD(LINF, "conv1 | bn1", steps=1)
    on_conv(tiny, x, None)
    assert on_conv.last_report["fast_path"]["fold_bn"] == []
    # the identity left at bn1's path outputs what bn1 did
    runner, x_run, _ = attack_model(tiny, x, fold_bn=True, channels_last=False)
    torch.testing.assert_close(capture(runner, ["bn1"], x_run)["bn1"],
                               capture(tiny, ["bn1"], x)["bn1"], rtol=1e-4, atol=1e-5)


# --- no host synchronisation per step --------------------------------------------------------

_SYNCS = ("item", "tolist", "__bool__", "__int__", "__float__", "__index__", "cpu", "numpy",
          "nonzero")


def _count_syncs(monkeypatch, fn) -> int:
    """Calls of every Tensor method that copies a value to the host while ``fn`` runs."""
    count = [0]
    for name in _SYNCS:
        original = getattr(torch.Tensor, name)

        def wrapped(self, *a, _original=original, **k):
            count[0] += 1
            return _original(self, *a, **k)

        monkeypatch.setattr(torch.Tensor, name, wrapped)
    try:
        fn()
    finally:
        monkeypatch.undo()
    return count[0]


@pytest.mark.parametrize("make", [
    lambda k: PGD(LINF, steps=k),
    lambda k: PGD(ThreatModel("l2", 0.5), steps=k, restarts=2, loss="cw"),
    lambda k: PGD(LINF, steps=k, fold_bn=False, channels_last=False),
    lambda k: FeaturePGD(LINF, "kind:conv", steps=k),
], ids=["pgd", "pgd-l2-restarts", "pgd-plain", "feature-pgd"])
def test_syncs_do_not_grow_with_steps(monkeypatch, tiny, batch, make):
    x, y = batch
    first, second = copy.deepcopy(tiny), copy.deepcopy(tiny)  # each folded (and checked) anew
    one = _count_syncs(monkeypatch, lambda: make(1)(first, x, y))
    many = _count_syncs(monkeypatch, lambda: make(7)(second, x, y))
    assert one == many, (one, many)
    assert one <= 8  # input range, label range, zero-gradient note, the fold check
    again = _count_syncs(monkeypatch, lambda: make(7)(second, x, y))
    assert again <= one  # the kept copy is not checked again


def test_the_counter_sees_a_sync(monkeypatch):
    t = torch.ones(3)
    assert _count_syncs(monkeypatch, lambda: (t.sum().item(), bool(t[0]), t.tolist())) == 3


def test_fgsm_formula_holds_on_the_fast_path(tiny, batch):
    x, y = batch
    eps = 8 / 255
    grad = _input_grad(tiny, x, y)
    expect = (x + eps * grad.sign()).clamp(0, 1)
    got = FGSM(eps=eps)(tiny, x, y)
    assert (got - expect).abs().gt(1e-6).float().mean() < 1e-3  # sign of ~0 gradients may flip


def _fresh_grad(model, x, y):
    """Input gradient through a copy built now (nothing kept from earlier calls)."""
    runner, x_run, _ = attack_model(copy.deepcopy(model), x, fold_bn=True, channels_last=True)
    return _input_grad(runner, x_run, y)


def test_the_copy_is_kept_and_follows_in_place_updates(monkeypatch):
    """A fixed model is folded once; an optimiser step, new running statistics or a replaced
    parameter are seen by the next call (the kept copy refolds or is rebuilt)."""
    from robustlayers.attacks import fold

    torch.manual_seed(0)
    model = _randomise_bn(create_model("resnet18", seed=0))
    x, y = torch.rand(4, 3, 32, 32), torch.tensor([0, 3, 5, 9])
    folds = []
    real_fold = fold.fold_weights
    monkeypatch.setattr(fold, "fold_weights", lambda c, b: folds.append(1) or real_fold(c, b))

    first, _, _ = attack_model(model, x, fold_bn=True, channels_last=True)
    n_pairs, built = len(folds), len(folds)
    assert n_pairs == 20  # every pair folded once (weight and bias together)
    again, _, _ = attack_model(model, x, fold_bn=True, channels_last=True)
    assert again is first and len(folds) == built  # same model, nothing changed: no refold

    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    model.train()
    F.cross_entropy(model(x), y).backward()  # also new running statistics
    opt.step()
    model.eval()
    after, x_run, _ = attack_model(model, x, fold_bn=True, channels_last=True)
    assert after is first and len(folds) == built + n_pairs
    torch.testing.assert_close(_input_grad(after, x_run, y), _fresh_grad(model, x, y))

    model.train()
    with torch.no_grad():
        model(x + 0.5)  # new running statistics only (the kernel does not bump their version)
    model.eval()
    before = len(folds)
    stats_only, x_run, _ = attack_model(model, x, fold_bn=True, channels_last=True)
    assert stats_only is first and len(folds) == before + n_pairs
    torch.testing.assert_close(_input_grad(stats_only, x_run, y), _fresh_grad(model, x, y))

    with torch.no_grad():
        model.linear.weight = nn.Parameter(model.linear.weight * 2)  # a new tensor object
    rebuilt, x_run, _ = attack_model(model, x, fold_bn=True, channels_last=True)
    assert rebuilt is not first
    torch.testing.assert_close(_input_grad(rebuilt, x_run, y), _fresh_grad(model, x, y))
