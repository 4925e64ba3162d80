"""Data-parallel training under ``torchrun``: one run, its global batch split across processes.

``torchrun --nproc_per_node N -m robustlayers train ...`` (or ``python -m torch.distributed.run``)
starts N processes that train **one** run. A process is a rank of such a run when the launcher's
variables ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` are set and ``WORLD_SIZE`` > 1; without
them (or with one process) nothing here is used and training is exactly the single-process loop.

The arithmetic is that of ``torch.nn.parallel.DistributedDataParallel`` (gradients summed across
ranks after backward, buffers broadcast from rank 0, identical start weights), done by the loop
itself rather than by wrapping the model: the attacks run extra forward/backward passes on the
model that must not trigger DDP's gradient hooks, and the layer names the methods select keep no
``module.`` prefix. What each rank does:

- **Batches.** The global batch (``batch_size``, which must be divisible by the number of
  processes) is cut into contiguous per-rank rows (:func:`~robustlayers.data.batches.shard_bounds`);
  order and augmentation are those of one process (the draws of the whole batch, each rank
  keeping its rows). Each rank's loss is weighted by its share of the batch, so the summed
  gradient is the gradient of the global batch's mean loss.
- **Randomness.** Attack seeds come from the run seed as in one process (every rank draws the
  same seeds), and each attack's random start is this rank's rows of the start one process
  would draw for the whole batch (:func:`shard_start`; TRADES's Gaussian start
  :func:`shard_randn`). Global RNGs (dropout) are seeded per rank from the run seed (rank 0
  with the run seed itself), so models that use them do not equal one process.
- **BatchNorm.** Per-rank batch statistics (as the papers' multi-GPU code does), running
  statistics from rank 0; with ``sync_bn`` the statistics are those of the global batch
  (:mod:`robustlayers.train.sync_bn`). Only then — or for a model without BN — does an N-process
  run equal a one-process run of the same global batch (to float tolerance).
- **Run directory.** Rank 0 alone writes it (config.json, metrics, checkpoints, result); the
  others read checkpoints from it (one machine, or a shared file system) and wait at barriers.
- **Evaluation.** Every evaluation batch is sharded the same way and the sums all-reduced.
- **Method hooks.** Freeze / reinit / parameter groups are deterministic; AWP's weight
  perturbation uses the global batch's gradient (:func:`reduce_batch_gradients`); CLAT's critical
  layers are computed on every rank and rank 0's choice is broadcast (:func:`broadcast_object`).

Backend: ``nccl`` on CUDA (device ``cuda:LOCAL_RANK``), ``gloo`` on CPU. World size and backend
are runtime settings, not part of a run's identity: a run resumed with another number of
processes (same global batch) continues the same run; ``result.json`` records them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from robustlayers.data.batches import shard_bounds
from robustlayers.errors import ConfigError
from robustlayers.train.context import TrainContext, derive_seed

ENV_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK")


@dataclass(frozen=True)
class DataParallel:
    """This process's place in a data-parallel run."""

    rank: int
    world_size: int
    local_rank: int
    backend: str

    @property
    def main(self) -> bool:
        return self.rank == 0

    def describe(self) -> dict:
        return {"world_size": self.world_size, "backend": self.backend}


@dataclass(frozen=True)
class Shard:
    """Rows ``lo..hi`` of a global batch of ``total`` examples (this rank's part)."""

    lo: int
    hi: int
    total: int

    @property
    def weight(self) -> float:
        """The share of the global batch, which weights this rank's mean loss."""
        return (self.hi - self.lo) / self.total


_STATE: DataParallel | None = None


def torchrun_env(environ=None) -> tuple[int, int, int] | None:
    """(rank, world_size, local_rank) from torchrun's variables, or None when they are absent or
    name a single process."""
    environ = os.environ if environ is None else environ
    present = [name for name in ENV_VARS if name in environ]
    if not present:
        return None
    if len(present) < len(ENV_VARS):
        missing = sorted(set(ENV_VARS) - set(present))
        raise ConfigError(f"torchrun variables incomplete: {', '.join(missing)} unset while "
                          f"{', '.join(present)} set; start with torchrun or unset them all")
    try:
        rank, world, local = (int(environ[name]) for name in ENV_VARS)
    except ValueError:
        raise ConfigError(f"torchrun variables must be integers, got "
                          f"{ {n: environ[n] for n in ENV_VARS} }") from None
    if world < 1 or not 0 <= rank < world:
        raise ConfigError(f"torchrun variables RANK={rank} WORLD_SIZE={world}: need "
                          f"0 <= RANK < WORLD_SIZE")
    return None if world == 1 else (rank, world, local)


def setup(device: torch.device) -> DataParallel | None:
    """Join the process group of a torchrun launch (once per process): ``nccl`` on CUDA (this
    process on ``cuda:LOCAL_RANK``), ``gloo`` on CPU. None outside torchrun."""
    global _STATE
    env = torchrun_env()
    if env is None:
        return None
    if _STATE is not None:
        return _STATE
    rank, world, local = env
    backend = "nccl" if device.type == "cuda" else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(local)
    if not dist.is_initialized():
        dist.init_process_group(backend)
    _STATE = DataParallel(rank, world, local, backend)
    return _STATE


def current() -> DataParallel | None:
    return _STATE


def shutdown() -> None:
    """Leave the process group (end of a torchrun command)."""
    global _STATE
    if _STATE is not None and dist.is_initialized():
        dist.destroy_process_group()
    _STATE = None


def is_main() -> bool:
    return _STATE is None or _STATE.main


def rank_device(dp: DataParallel | None, device: torch.device) -> torch.device:
    """``cuda:LOCAL_RANK`` for a CUDA rank; ``device`` otherwise."""
    if dp is not None and device.type == "cuda":
        return torch.device("cuda", dp.local_rank)
    return device


def rank_seed(seed: int) -> int:
    """The seed of this rank's global RNGs: the run seed on rank 0 (so one process is unchanged),
    derived from (seed, rank) on the others."""
    if _STATE is None or _STATE.main:
        return seed
    return derive_seed(seed, "rank", _STATE.rank) % 2**63


def check_batch_size(batch_size: int) -> None:
    """ConfigError when the global batch cannot be split evenly across the processes."""
    if _STATE is not None and batch_size % _STATE.world_size:
        world = _STATE.world_size
        raise ConfigError(f"batch_size {batch_size} (the global batch) is not divisible by the "
                          f"{world} processes (WORLD_SIZE={world}); choose a multiple of {world}, "
                          f"e.g. {batch_size - batch_size % world or world}")


def check_last_batch(n_train: int, batch_size: int) -> None:
    """ConfigError when the last, short batch of an epoch leaves a process without examples."""
    last = n_train % batch_size
    if _STATE is not None and 0 < last < _STATE.world_size:
        raise ConfigError(f"the last batch of an epoch holds {last} of {n_train} training "
                          f"examples, fewer than the {_STATE.world_size} processes; choose "
                          f"train_size or batch_size so that it is 0 or >= {_STATE.world_size}")


# --- shards of batches and of random starts --------------------------------------------------

def batch_shard() -> tuple[int, int] | None:
    """``(rank, world_size)`` for ``iter_batches(shard=...)``; None in one process."""
    return None if _STATE is None else (_STATE.rank, _STATE.world_size)


def track_shards(ctx, batches, n: int, batch_size: int):
    """Yield ``batches`` (this rank's rows of each global batch of a split of ``n``), with
    ``ctx.shard`` telling the attacks and the loss which rows they are."""
    try:
        for i, item in enumerate(batches):
            total = min(batch_size, n - i * batch_size)
            ctx.shard = Shard(*shard_bounds(total, _STATE.rank, _STATE.world_size), total)
            yield item
    finally:
        ctx.shard = None


def shard_start(attack, shard: Shard | None):
    """Make ``attack``'s random start this shard's rows of the start drawn for the whole batch
    (same seed, same draws as one process); unchanged for ``shard=None``. Returns ``attack``."""
    if shard is None or not hasattr(attack, "start"):
        return attack

    def start(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        if not attack.random_start or attack.threat.eps == 0:
            return torch.zeros_like(x)
        whole = torch.empty((shard.total, *x.shape[1:]), dtype=x.dtype, device=x.device)
        delta = attack.threat.random_delta(whole, generator)[shard.lo:shard.lo + len(x)]
        return (x + delta).clamp(0, 1) - x

    attack.start = start
    return attack


def shard_randn(ctx, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Standard normal noise of ``x``'s shape on ``generator``; in a data-parallel step, this
    rank's rows of the noise drawn for the whole batch (TRADES's start)."""
    shard = getattr(ctx, "shard", None)
    shape = x.shape if shard is None else (shard.total, *x.shape[1:])
    noise = torch.randn(shape, generator=generator, device=x.device, dtype=x.dtype)
    return noise if shard is None else noise[shard.lo:shard.lo + len(x)]


class DataParallelContext(TrainContext):
    """The TrainContext of a rank: training attacks get sharded random starts."""

    shard: Shard | None = None

    def pgd(self, **kwargs):
        return shard_start(super().pgd(**kwargs), self.shard)

    def feature_pgd(self, selection, **kwargs):
        return shard_start(super().feature_pgd(selection, **kwargs), self.shard)


# --- collectives ------------------------------------------------------------------------------

def sync_gradients(model: torch.nn.Module) -> None:
    """Sum every existing ``.grad`` across ranks (one all-reduce of the flattened gradients).
    The losses were weighted by each rank's share, so the sum is the global batch's gradient."""
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    offset = 0
    for g in grads:
        g.copy_(flat[offset:offset + g.numel()].view_as(g))
        offset += g.numel()


def reduce_batch_gradients(ctx, grads):
    """Gradients of this rank's mean loss → gradients of the global batch's mean loss (AWP's
    proxy step). ``grads`` unchanged in one process; None entries stay None."""
    shard = getattr(ctx, "shard", None)
    if shard is None or _STATE is None:
        return grads
    present = [g for g in grads if g is not None]
    if not present:
        return grads
    flat = torch.cat([g.reshape(-1) for g in present]) * shard.weight
    dist.all_reduce(flat)
    out, offset = [], 0
    for g in grads:
        if g is None:
            out.append(None)
            continue
        out.append(flat[offset:offset + g.numel()].view_as(g))
        offset += g.numel()
    return type(grads)(out) if isinstance(grads, tuple) else out


def broadcast_module(model: torch.nn.Module, *, buffers_only: bool = False) -> None:
    """Rank 0's parameters (unless ``buffers_only``) and buffers on every rank."""
    with torch.no_grad():
        tensors = [] if buffers_only else [p.data for p in model.parameters()]
        tensors += [b for b in model.buffers()]
        for tensor in tensors:
            dist.broadcast(tensor, 0)


def reduce_sums(values: dict, device: torch.device) -> dict:
    """``values`` (name → number or 0-d tensor) summed across ranks (float64; names in sorted
    order, the same on every rank). Unchanged in one process."""
    if _STATE is None or not values:
        return values
    names = sorted(values)
    flat = torch.stack([torch.as_tensor(values[k], device=device).double().reshape(())
                        for k in names])
    dist.all_reduce(flat)
    return dict(zip(names, flat.unbind()))


def broadcast_object(obj):
    """Rank 0's ``obj`` (picklable) on every rank; ``obj`` itself in one process."""
    if _STATE is None:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, 0)
    return box[0]


def gather_objects(obj) -> list | None:
    """Every rank's ``obj``, by rank (on every rank); None in one process."""
    if _STATE is None:
        return None
    out = [None] * _STATE.world_size
    dist.all_gather_object(out, obj)
    return out


def barrier() -> None:
    if _STATE is not None:
        dist.barrier()


def on_main(fn):
    """``fn()`` on rank 0; its outcome is shared: if it raises, every rank raises the same error
    (so no rank waits forever at the next collective). Other ranks get None."""
    if _STATE is None:
        return fn()
    value, error = None, None
    if _STATE.main:
        try:
            value = fn()
        except BaseException as err:  # noqa: BLE001 - re-raised on every rank
            error = err
    error = broadcast_object(error)
    if error is not None:
        raise error
    return value


class FollowerRun:
    """The run directory as ranks > 0 see it: reads pass through, writes are rank 0's."""

    WRITES = frozenset({"append_metrics", "save_checkpoint", "prune_checkpoints", "write_result",
                        "mark_failed", "record_selections", "truncate_metrics", "extend"})

    def __init__(self, run) -> None:
        self._run = run

    def __getattr__(self, name):
        if name in self.WRITES:
            return lambda *args, **kwargs: None
        return getattr(self._run, name)
