"""``compile`` in the run config: the training PGD step runs as one compiled graph and training
gives the same losses as the eager step (traced with "aot_eager" here, see
tests/attacks/test_compiled_and_batched.py)."""

from __future__ import annotations

import pytest
import torch

from robustlayers.attacks import compiled_step
from robustlayers.train import make_method, train_steps
from robustlayers.train.identity import identity_hash
from robustlayers.train.settings import ConfigError

from .conftest import Toy, make_ctx

BATCHES = [(torch.rand(8, 1, 4, 4, generator=torch.Generator().manual_seed(i)),
            torch.randint(0, 3, (8,), generator=torch.Generator().manual_seed(i)))
           for i in range(3)]


def _losses(compile_mode, method="pgd-at"):
    ctx = make_ctx(Toy(), method=method, compile=compile_mode, steps=4)
    losses = [out.loss.item() for _, out, _ in
              train_steps(ctx, make_method(method, ctx.config), BATCHES)]
    return losses, ctx


@pytest.mark.parametrize("method", ["pgd-at", "mart"])
def test_compiled_training_step_gives_the_eager_losses(monkeypatch, method):
    monkeypatch.setattr(compiled_step, "BACKEND", "aot_eager")
    monkeypatch.setattr(compiled_step, "_COMPILED", {})
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    try:
        eager, _ = _losses("off", method)
        compiled, ctx = _losses("default", method)
        graphs = torch._dynamo.utils.counters["stats"]["unique_graphs"]
    finally:
        torch._dynamo.reset()
    assert ctx.pgd().config()["compile"] == "default"
    assert compiled == pytest.approx(eager, rel=1e-5)
    assert graphs == 1  # one graph for every batch's fresh attack


def test_compile_choice_is_checked_and_off_keeps_old_run_identities():
    with pytest.raises(ConfigError, match="invalid compile 'fast'.*off, default, "
                                          "reduce-overhead, max-autotune"):
        make_ctx(Toy(), compile="fast")
    base = make_ctx(Toy()).config.to_dict()
    old = {k: v for k, v in base.items() if k != "compile"}  # a config.json from before
    assert identity_hash(old) == identity_hash(base)
    assert identity_hash({**base, "compile": "default"}) != identity_hash(base)
