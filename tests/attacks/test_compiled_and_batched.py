"""PGD's GPU-oriented paths, checked on CPU: restarts run side by side in one batch, and the
ascent step compiled as one graph (traced with the "aot_eager" backend here: the same Dynamo
graph capture with fullgraph=True, without code generation, so the test stays fast)."""
import pytest
import torch
from torch import nn

from robustlayers.attacks import PGD, ThreatModel, compiled_step, make_attack

LINF = ThreatModel("linf", 8 / 255)
L2 = ThreatModel("l2", 0.5)


@pytest.fixture
def traced(monkeypatch):
    """Compile with aot_eager; count the graphs Dynamo captures."""
    monkeypatch.setattr(compiled_step, "BACKEND", "aot_eager")
    monkeypatch.setattr(compiled_step, "_COMPILED", {})
    torch._dynamo.reset()
    counters = torch._dynamo.utils.counters
    counters.clear()
    yield lambda: counters["stats"]["unique_graphs"]
    torch._dynamo.reset()


@pytest.mark.parametrize("threat", [LINF, L2], ids=["linf", "l2"])
@pytest.mark.parametrize("loss", ["ce", "cw"])
def test_batched_restarts_equal_restarts_one_after_another(tiny, data, threat, loss):
    x, y = data["x"][:96], data["y"][:96]
    kw = dict(steps=4, restarts=3, loss=loss, seed=5, fold_bn=False, channels_last=False)
    one_by_one = PGD(threat, batch_restarts=False, **kw)
    side_by_side = PGD(threat, batch_restarts=True, **kw)
    a, b = one_by_one(tiny, x, y), side_by_side(tiny, x, y)
    assert not one_by_one.last_report["batch_restarts"]
    assert side_by_side.last_report["batch_restarts"]
    assert torch.allclose(a, b, atol=1e-5)
    with torch.no_grad():
        assert torch.equal(tiny(a).argmax(1), tiny(b).argmax(1))


def test_batched_restarts_keep_the_per_example_best(tiny, data):
    """Side by side, the first restart is still the single-start attack with the same seed, and
    more restarts never lose an example the first start misclassified."""
    x, y = data["x"][:128], data["y"][:128]
    one = PGD(LINF, steps=2, seed=3)
    many = PGD(LINF, steps=2, restarts=5, seed=3, batch_restarts=True)
    with torch.no_grad():
        wrong1 = tiny(one(tiny, x, y)).argmax(1) != y
        wrong5 = tiny(many(tiny, x, y)).argmax(1) != y
    assert (wrong5 | ~wrong1).all() and wrong5.sum() > wrong1.sum()


def test_batch_restarts_auto_stays_off_on_cpu_and_in_train_mode(tiny, batch):
    attack = PGD(LINF, steps=1, restarts=2)
    attack(tiny, *batch)
    assert attack.config()["batch_restarts"] == "auto"
    assert attack.last_report["batch_restarts"] is False
    with pytest.raises(ValueError, match="batch_restarts=True cannot be used with train_mode"):
        PGD(LINF, restarts=2, train_mode=True, batch_restarts=True)
    with pytest.raises(ValueError, match="batch_restarts must be True, False or 'auto'"):
        PGD(LINF, restarts=2, batch_restarts="yes")


@pytest.mark.parametrize("threat", [LINF, L2], ids=["linf", "l2"])
def test_compiled_step_equals_the_eager_step(tiny, batch, traced, threat):
    eager = PGD(threat, steps=5, seed=1, fold_bn=False, channels_last=False)
    compiled = PGD(threat, steps=5, seed=1, compile=True)
    a, b = eager(tiny, *batch), compiled(tiny, *batch)
    assert torch.allclose(a, b, atol=1e-6)
    assert traced() == 1  # one graph: forward, input gradient and projection together
    assert compiled.config()["compile"] == "default"
    assert compiled.config()["fold_bn"] is False  # the compiled step runs the model itself
    assert compiled.last_report["fast_path"]["fold_bn"] == []


def test_new_attack_objects_reuse_the_compiled_step(tiny, batch, traced):
    """A training loop makes a fresh PGD per batch (new seed): no new graph per batch."""
    for seed in range(4):
        PGD(LINF, steps=3, seed=seed, compile=True)(tiny, *batch)
    assert traced() == 1


def test_compiled_step_with_batched_restarts(tiny, batch, traced):
    kw = dict(steps=3, restarts=2, seed=2, batch_restarts=True)
    eager = PGD(LINF, fold_bn=False, channels_last=False, **kw)(tiny, *batch)
    compiled = PGD(LINF, compile="max-autotune", **kw)(tiny, *batch)
    assert torch.allclose(eager, compiled, atol=1e-6)


class _SyncingNet(nn.Module):
    """A model whose forward reads a value back to the host (a graph break)."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(28 * 28, 10)

    def forward(self, x):
        out = self.fc(x.flatten(1))
        return out * 2 if out.sum().item() > 0 else out


def test_a_host_sync_in_the_step_fails_loudly(batch, traced):
    model = _SyncingNet().eval()
    with pytest.raises(Exception, match="(?i)graph break|item|Unsupported"):
        PGD(LINF, steps=2, compile=True)(model, *batch)


def test_compile_options_are_checked_before_any_work():
    with pytest.raises(ValueError, match="compile must be False, True or one of default, "
                                         "reduce-overhead, max-autotune"):
        PGD(LINF, compile="fast")
    with pytest.raises(ValueError, match="fold_bn=True cannot be combined with compile"):
        PGD(LINF, compile=True, fold_bn=True)
    assert make_attack("pgd", LINF, compile="reduce-overhead").config()["compile"] == \
        "reduce-overhead"
