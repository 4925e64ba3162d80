"""Batch-norm statistics of the global batch in data-parallel training (``sync_bn``), on CPU
(gloo) and CUDA (nccl) alike.

``torch.nn.SyncBatchNorm`` runs on GPUs only, so the data-parallel tests on CPU could not use
it; this is the same computation for any backend. In ``train()`` mode each BN layer computes
the mean and (biased) variance of its input over the **global** batch — sums all-reduced across
ranks, two passes (mean, then the centred squares) as one process computes them — normalises
with them and updates its running statistics as ``nn.BatchNorm`` does (unbiased variance,
``momentum``). The all-reduce is differentiable (its backward sums the gradients of every
rank), so gradients, including the attacks' input gradients in ``attack_mode="train"``, are
those of one process on the whole batch. In ``eval()`` mode, or with a single process, it is
plain batch norm. :func:`convert_sync_bn` swaps the class of every ``BatchNorm1d/2d/3d`` in
place (a subclass: names, parameters, ``state_dict`` and ``isinstance`` stay the same).
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn


class _AllReduceSum(torch.autograd.Function):
    """Sum across ranks; the gradient is summed across ranks too."""

    @staticmethod
    def forward(ctx, tensor):
        out = tensor.clone()
        dist.all_reduce(out)
        return out

    @staticmethod
    def backward(ctx, grad):
        grad = grad.clone()
        dist.all_reduce(grad)
        return grad


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Differentiable sum of ``tensor`` over all ranks."""
    return _AllReduceSum.apply(tensor)


class _GlobalStats:
    """Mixin of the sync classes: training-mode statistics over the global batch."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or not dist.is_initialized() or dist.get_world_size() == 1:
            return super().forward(x)
        self._check_input_dim(x)
        dims = [0] + list(range(2, x.dim()))
        shape = [1, -1] + [1] * (x.dim() - 2)
        count = all_reduce_sum(torch.tensor([x.numel() / x.shape[1]], dtype=x.dtype,
                                            device=x.device)).detach()
        mean = all_reduce_sum(x.sum(dims)) / count
        centred = x - mean.view(shape)
        var = all_reduce_sum((centred * centred).sum(dims)) / count
        out = centred * torch.rsqrt(var + self.eps).view(shape)
        if self.affine:
            out = out * self.weight.view(shape) + self.bias.view(shape)
        if self.track_running_stats:
            self._update_running(mean.detach(), var.detach(), count)
        return out

    @torch.no_grad()
    def _update_running(self, mean, var, count) -> None:
        self.num_batches_tracked.add_(1)
        momentum = self.momentum
        if momentum is None:  # cumulative moving average, as nn.BatchNorm
            momentum = 1.0 / float(self.num_batches_tracked)
        unbiased = var * count / (count - 1).clamp(min=1)
        self.running_mean.mul_(1 - momentum).add_(momentum * mean)
        self.running_var.mul_(1 - momentum).add_(momentum * unbiased)


class SyncBatchNorm1d(_GlobalStats, nn.BatchNorm1d):
    """BatchNorm1d with global-batch statistics in data-parallel training."""


class SyncBatchNorm2d(_GlobalStats, nn.BatchNorm2d):
    """BatchNorm2d with global-batch statistics in data-parallel training."""


class SyncBatchNorm3d(_GlobalStats, nn.BatchNorm3d):
    """BatchNorm3d with global-batch statistics in data-parallel training."""


_SYNC = {nn.BatchNorm1d: SyncBatchNorm1d, nn.BatchNorm2d: SyncBatchNorm2d,
         nn.BatchNorm3d: SyncBatchNorm3d}


def convert_sync_bn(model: nn.Module) -> list[str]:
    """Make every ``BatchNorm1d/2d/3d`` of ``model`` use global-batch statistics (in place);
    returns the names of the converted modules."""
    done = []
    for name, module in model.named_modules():
        cls = _SYNC.get(type(module))
        if cls is not None:
            module.__class__ = cls
            done.append(name)
    return done


__all__ = ["SyncBatchNorm1d", "SyncBatchNorm2d", "SyncBatchNorm3d", "all_reduce_sum",
           "convert_sync_bn"]
