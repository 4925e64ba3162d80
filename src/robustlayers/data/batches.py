"""Mini-batches from in-memory tensors, with on-device augmentation.

Order and augmentation of one epoch are a deterministic function of ``(seed, epoch)``: a CPU
``torch.Generator`` is seeded from both (through ``numpy.random.SeedSequence``), draws the
permutation and then, batch after batch, the crop offsets and flip decisions. A training run can
therefore resume mid-run with no loader state, and results do not depend on the device.

Augmentations (the standard CIFAR recipe used by the papers' code):
- ``crop``: random 32x32 (or HxW) crop of the image zero-padded by 4 pixels on every side,
  vectorised with per-example index grids (no Python loop over examples);
- ``crop_flip``: ``crop`` then a horizontal flip of each example with probability 0.5;
- ``none``/``None``: the images as stored; ``default``: the dataset's ``info.augment``.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
import torch.nn.functional as F

from .dataset import TensorData

AUGMENTS = ("none", "crop", "crop_flip", "default")
PADDING = 4


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """A CPU generator whose state is a function of (seed, epoch) only."""
    for label, value in (("seed", seed), ("epoch", epoch)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
            raise ValueError(f"{label} must be a non-negative integer, got {value!r}")
    state = np.random.SeedSequence([int(seed), int(epoch)]).generate_state(1, np.uint64)[0]
    return torch.Generator().manual_seed(int(state) & 0x7FFF_FFFF_FFFF_FFFF)


def random_crop(x: torch.Tensor, generator: torch.Generator,
                padding: int = PADDING, *,
                rows: tuple[int, int, int] | None = None) -> torch.Tensor:
    """Random HxW crops of ``x`` (N, C, H, W) zero-padded by ``padding`` pixels per side.

    Offsets are drawn on the CPU ``generator`` (uniform in 0..2*padding per axis and example);
    the crop is one gather on ``x``'s device. ``rows=(lo, hi, total)``: ``x`` is rows lo..hi of
    a batch of ``total`` examples; the draws are those of the whole batch (a data-parallel shard
    gets exactly its part of what one process would draw).
    """
    n, c, h, w = x.shape
    dev = x.device
    lo, hi, total = rows or (0, n, n)
    offsets = torch.randint(0, 2 * padding + 1, (2, total), generator=generator)[:, lo:hi]
    offsets = offsets.to(dev)
    padded = F.pad(x, (padding, padding, padding, padding))
    top = offsets[0][:, None] + torch.arange(h, device=dev)          # (N, H)
    cols = offsets[1][:, None] + torch.arange(w, device=dev)         # (N, W)
    batch = torch.arange(n, device=dev)[:, None, None, None]
    chan = torch.arange(c, device=dev)[None, :, None, None]
    return padded[batch, chan, top[:, None, :, None], cols[:, None, None, :]]


def random_flip(x: torch.Tensor, generator: torch.Generator, p: float = 0.5, *,
                rows: tuple[int, int, int] | None = None) -> torch.Tensor:
    """Flip each example of ``x`` left-right with probability ``p`` (draws on ``generator``;
    ``rows`` as in :func:`random_crop`)."""
    lo, hi, total = rows or (0, x.shape[0], x.shape[0])
    flip = (torch.rand(total, generator=generator)[lo:hi] < p).to(x.device)
    return torch.where(flip[:, None, None, None], x.flip(-1), x)


def augment_batch(x: torch.Tensor, augment: str | None, generator: torch.Generator, *,
                  rows: tuple[int, int, int] | None = None) -> torch.Tensor:
    """Apply augmentation ``augment`` ("none", "crop", "crop_flip") to a batch (``rows``: ``x``
    is a shard of a larger batch, see :func:`random_crop`)."""
    if augment in (None, "none"):
        return x
    if augment == "crop":
        return random_crop(x, generator, rows=rows)
    if augment == "crop_flip":
        return random_flip(random_crop(x, generator, rows=rows), generator, rows=rows)
    raise ValueError(f"unknown augment {augment!r}; valid choices: none, crop, crop_flip")


def _resolve_augment(data, augment: str | None) -> str:
    if augment is None:
        return "none"
    if augment not in AUGMENTS:
        raise ValueError(f"unknown augment {augment!r}; valid choices: None, "
                         f"{', '.join(AUGMENTS)}")
    if augment == "default":
        if not isinstance(data, TensorData):
            raise ValueError("augment='default' needs a TensorData (it uses info.augment)")
        return data.info.augment
    return augment


def _check_batch_size(batch_size: int) -> int:
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) \
            or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    return int(batch_size)


def _length(data) -> int:
    return len(data) if isinstance(data, TensorData) else len(data[1])


def num_batches(data: TensorData | int, batch_size: int, drop_last: bool = False) -> int:
    """Number of batches ``iter_batches`` yields for ``data`` (or a dataset size)."""
    batch_size = _check_batch_size(batch_size)
    n = data if isinstance(data, int) else _length(data)
    return n // batch_size if drop_last else -(-n // batch_size)


def iter_batches(data: TensorData | tuple[torch.Tensor, torch.Tensor], batch_size: int, *,
                 shuffle: bool = True, augment: str | None = None, seed: int = 0, epoch: int = 0,
                 device: str | torch.device = "cpu", drop_last: bool = False,
                 shard: tuple[int, int] | None = None,
                 ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield ``(x, y)`` batches on ``device``; every example appears once per epoch.

    ``shuffle`` permutes the examples with the (seed, epoch) generator; ``augment`` is None,
    "none", "crop", "crop_flip" or "default" (the dataset's own). ``drop_last`` drops a final
    short batch. ``shard=(rank, world_size)`` (data-parallel training) yields only this rank's
    rows of every batch (:func:`shard_bounds`), augmented exactly as those rows of the whole
    batch would be. Arguments are checked when called, before the first batch.
    """
    batch_size = _check_batch_size(batch_size)
    mode = _resolve_augment(data, augment)
    x, y = (data.x, data.y) if isinstance(data, TensorData) else data
    if len(x) != len(y):
        raise ValueError(f"x and y differ in length: {len(x)} vs {len(y)}")
    if shard is not None:
        rank, world = shard
        if not 0 <= rank < world:
            raise ValueError(f"shard (rank, world_size) needs 0 <= rank < world_size, got {shard}")
    generator = epoch_generator(seed, epoch)
    device = torch.device(device)
    return _batches(x, y, batch_size, shuffle, mode, generator, device, drop_last, shard)


def shard_bounds(n: int, rank: int, world_size: int) -> tuple[int, int]:
    """Rows ``lo..hi`` of a batch of ``n`` examples that rank ``rank`` of ``world_size`` takes:
    contiguous, sizes as equal as possible (the first ``n % world_size`` ranks one more)."""
    base, extra = divmod(int(n), int(world_size))
    lo = rank * base + min(rank, extra)
    return lo, lo + base + (1 if rank < extra else 0)


def _batches(x, y, batch_size, shuffle, mode, generator, device, drop_last, shard=None):
    n = len(y)
    order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
    stop = n - n % batch_size if drop_last else n
    for start in range(0, stop, batch_size):
        idx = order[start:start + batch_size]
        rows = None
        if shard is not None:
            lo, hi = shard_bounds(len(idx), *shard)
            rows, idx = (lo, hi, len(idx)), idx[lo:hi]
        idx = idx.to(x.device)
        xb = x[idx].to(device, non_blocking=True)
        yb = y[idx].to(device, non_blocking=True)
        yield augment_batch(xb, mode, generator, rows=rows), yb
