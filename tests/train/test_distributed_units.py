"""The pieces of data-parallel training that need no second process: torchrun detection, the
per-rank rows of a batch and of an attack's random start, the batch-size checks, and that
``sync_bn`` leaves the identity of every earlier config alone."""

from __future__ import annotations

import pytest
import torch

from robustlayers.attacks import PGD, ThreatModel
from robustlayers.data import TensorData, get_dataset_info, iter_batches
from robustlayers.data.batches import shard_bounds
from robustlayers.errors import ConfigError
from robustlayers.train import config_from_dict
from robustlayers.train import distributed as ddp
from robustlayers.train.identity import identity_hash

from .conftest import Toy


def test_torchrun_env_is_detected_only_with_all_three_variables():
    assert ddp.torchrun_env({}) is None
    assert ddp.torchrun_env({"RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0"}) is None
    assert ddp.torchrun_env({"RANK": "1", "WORLD_SIZE": "4", "LOCAL_RANK": "1"}) == (1, 4, 1)
    with pytest.raises(ConfigError, match="LOCAL_RANK unset"):
        ddp.torchrun_env({"RANK": "0", "WORLD_SIZE": "2"})
    with pytest.raises(ConfigError, match="0 <= RANK < WORLD_SIZE"):
        ddp.torchrun_env({"RANK": "2", "WORLD_SIZE": "2", "LOCAL_RANK": "0"})
    assert ddp.current() is None and ddp.is_main()  # this test process is no rank


@pytest.mark.parametrize("n, world", [(64, 2), (7, 3), (5, 4), (2, 4)])
def test_shards_cover_a_batch_once_and_nearly_evenly(n, world):
    bounds = [shard_bounds(n, r, world) for r in range(world)]
    assert bounds[0][0] == 0 and bounds[-1][1] == n
    assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:]))
    sizes = [hi - lo for lo, hi in bounds]
    assert max(sizes) - min(sizes) <= 1


def test_sharded_batches_are_the_rows_of_the_global_batches_augmentation_included():
    gen = torch.Generator().manual_seed(0)
    data = TensorData(torch.rand(70, 1, 8, 8, generator=gen), torch.arange(70) % 10,
                      get_dataset_info("fashion-mnist"))
    kw = dict(augment="crop_flip", seed=3, epoch=2)
    whole = list(iter_batches(data, 32, **kw))
    parts = [list(iter_batches(data, 32, shard=(r, 2), **kw)) for r in range(2)]
    assert len(whole) == len(parts[0]) == len(parts[1]) == 3
    for i, (x, y) in enumerate(whole):
        assert torch.equal(torch.cat([parts[0][i][0], parts[1][i][0]]), x)
        assert torch.equal(torch.cat([parts[0][i][1], parts[1][i][1]]), y)
    assert [len(p[2][1]) for p in parts] == [3, 3]  # the short last batch, split too
    with pytest.raises(ValueError, match="rank < world_size"):
        iter_batches(data, 32, shard=(2, 2))


@pytest.mark.parametrize("norm, eps", [("linf", 0.1), ("l2", 0.5)])
def test_a_sharded_random_start_is_the_rows_of_the_whole_batchs_start(norm, eps):
    model = Toy().eval()
    gen = torch.Generator().manual_seed(1)
    x, y = torch.rand(10, 1, 4, 4, generator=gen), torch.randint(0, 3, (10,), generator=gen)
    attack = lambda: PGD(ThreatModel(norm, eps), steps=3, restarts=2)  # noqa: E731
    whole = attack()(model, x, y, seed=11)
    rows = []
    for lo, hi in (shard_bounds(10, r, 3) for r in range(3)):
        sharded = ddp.shard_start(attack(), ddp.Shard(lo, hi, 10))
        rows.append(sharded(model, x[lo:hi], y[lo:hi], seed=11))
    # the same draws; ℓ2 steps differ only by float rounding of a smaller batch's forward
    assert (torch.cat(rows) - whole).abs().max() < 1e-6
    # without the shard, the rows draw their own starts: a different result
    plain = attack()(model, x[3:], y[3:], seed=11)
    assert (plain - whole[3:]).abs().max() > 1e-3


def test_batch_sizes_that_do_not_split_are_refused_naming_both_numbers(monkeypatch):
    monkeypatch.setattr(ddp, "_STATE", ddp.DataParallel(0, 3, 0, "gloo"))
    with pytest.raises(ConfigError, match=r"batch_size 128 .* not divisible by the 3 "
                                          r"processes.*e\.g\. 126"):
        ddp.check_batch_size(128)
    ddp.check_batch_size(129)
    with pytest.raises(ConfigError, match="last batch of an epoch holds 2 of 258"):
        ddp.check_last_batch(258, 128)
    ddp.check_last_batch(259, 128)
    ddp.check_last_batch(256, 128)


def test_sync_bn_is_a_config_key_that_keeps_earlier_identities():
    base = config_from_dict({}).to_dict()
    assert base["sync_bn"] is False
    earlier = {k: v for k, v in base.items() if k != "sync_bn"}  # a config.json of before
    assert identity_hash(base) == identity_hash(earlier)
    assert identity_hash({**base, "sync_bn": True}) != identity_hash(base)
    with pytest.raises(ConfigError, match="sync_bn must be true or false"):
        config_from_dict({"sync_bn": "yes"})


def test_converted_batch_norm_is_plain_batch_norm_in_one_process():
    from robustlayers.train.sync_bn import SyncBatchNorm2d, convert_sync_bn

    model, ref = Toy(), Toy()
    assert convert_sync_bn(model) == ["bn"]
    assert isinstance(model.bn, SyncBatchNorm2d) and isinstance(model.bn, torch.nn.BatchNorm2d)
    assert model.state_dict().keys() == ref.state_dict().keys()
    x = torch.rand(6, 1, 4, 4, generator=torch.Generator().manual_seed(2))
    assert torch.equal(model.train()(x), ref.train()(x))
    assert torch.equal(model.bn.running_var, ref.bn.running_var)


def test_trades_noise_and_fast_at_starts_are_rows_of_the_whole_batchs_draw(batch):
    from robustlayers.train.methods import make_method

    from .conftest import make_ctx

    x, y = batch
    gen = lambda: torch.Generator().manual_seed(3)  # noqa: E731
    ctx = ddp.DataParallelContext.__new__(ddp.DataParallelContext)
    whole = ddp.shard_randn(ctx, x, gen())
    assert torch.equal(whole, torch.randn(x.shape, generator=gen()))  # one process: as before
    ctx.shard = ddp.Shard(3, 8, 8)
    assert torch.equal(ddp.shard_randn(ctx, x[3:], gen()), whole[3:])

    ctx = make_ctx(method="fast-at")
    method = make_method("fast-at", ctx.config)
    ctx.seed_epoch(0)
    full = method.attack(ctx)(ctx.model, x, y)
    ctx.seed_epoch(0)
    ctx.shard = ddp.Shard(3, 8, 8)
    rows = method.attack(ctx)(ctx.model, x[3:], y[3:])
    assert (rows - full[3:]).abs().max() < 1e-6
