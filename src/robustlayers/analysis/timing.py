"""Cost of one criticality computation relative to one adversarial-training epoch.

CLAT §4.4 / Table 10 argue the criticality index is cheap: computed on one batch of 10 it costs a
small fraction of one PGD-AT epoch. ``criticality_epoch_ratio`` measures that ratio on the model at
hand: the epoch is a PGD-AT epoch (ℓ∞ PGD-10, α = ε/4 — SPECTRUM's (2/255)·ε/8 — attack in eval(),
SGD step in train(), batch 128) run on a *copy* of the model so the analysed weights never change.
When ``max_batches`` is given, the epoch time is measured on that many batches and extrapolated
linearly to ``epoch_size`` examples; the record says which.
"""

from __future__ import annotations

import copy
import math
import time

import torch
import torch.nn.functional as F
from torch import nn

from robustlayers.analysis._common import (
    eps_record, jsonable, make_pgd, model_device, split_data,
)
from robustlayers.analysis.criticality import criticality, default_criticality_attack


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def time_training_epoch(model: nn.Module, data, *, eps: float, batch_size: int = 128,
                        steps: int = 10, alpha: float | None = None,
                        max_batches: int | None = None, epoch_size: int | None = None,
                        lr: float = 0.01, seed: int = 0) -> dict:
    """Seconds for one PGD-AT epoch (Madry) over ``data`` (or ``epoch_size`` examples) of a copy
    of ``model``: per batch PGD-``steps`` against the current weights, then one SGD step."""
    x, y = split_data(data)
    size = len(x) if epoch_size is None else int(epoch_size)
    n_batches = math.ceil(size / batch_size)
    measured = n_batches if max_batches is None else max(1, min(n_batches, int(max_batches)))
    work = copy.deepcopy(model)
    device = model_device(work)
    attack = make_pgd(eps, steps=steps, alpha=eps / 4 if alpha is None else alpha, seed=seed)
    optimizer = torch.optim.SGD(work.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4)
    generator = torch.Generator().manual_seed(int(seed))
    order = torch.randperm(len(x), generator=generator)

    def step(b: int) -> None:
        idx = order[torch.arange(b * batch_size, (b + 1) * batch_size) % len(x)]
        xb, yb = x[idx].to(device), y[idx].to(device)
        x_adv = attack(work, xb, yb)
        work.train()
        loss = F.cross_entropy(work(x_adv), yb)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    step(0)  # untimed warm-up: first-call costs (lazy imports, allocators) are not an epoch's
    _sync(device)
    start = time.perf_counter()
    for b in range(measured):
        step(b)
    _sync(device)
    measured_s = time.perf_counter() - start
    return jsonable({
        "epoch_s": measured_s * n_batches / measured,
        "measured_s": measured_s,
        "measured_batches": measured,
        "epoch_batches": n_batches,
        "extrapolated": measured < n_batches,
        "epoch_size": size,
        "batch_size": batch_size,
        "method": "pgd-at (Madry): PGD in eval(), SGD step in train(), on a copy of the model",
        "attack": attack.config() if hasattr(attack, "config") else repr(attack),
        "eps": eps_record(eps),
    })


def criticality_epoch_ratio(model: nn.Module, crit_data, train_data=None, *, eps: float,
                            crit_batch: int = 10, crit_steps: int = 10,
                            selection=None, epoch_batch_size: int = 128,
                            epoch_steps: int = 10, max_batches: int | None = None,
                            epoch_size: int | None = None, seed: int = 0,
                            input_shape=None) -> dict:
    """Time one criticality computation (CLAT Eq. 3 on a batch of ``crit_batch``, PGD included)
    against one PGD-AT epoch; ratio = criticality_s / epoch_s (CLAT Table 10: "negligible")."""
    x, y = split_data(crit_data)
    if len(x) < crit_batch:
        raise ValueError(f"need at least crit_batch={crit_batch} examples, got {len(x)}")
    # one untimed call warms up kernels/allocators so the timed call measures steady state
    attack = default_criticality_attack(eps, steps=crit_steps, seed=seed)
    criticality(model, x[:crit_batch], y[:crit_batch], attack=attack, selection=selection,
                eps=eps, seed=seed, input_shape=input_shape)
    timed = criticality(model, x[:crit_batch], y[:crit_batch], attack=attack,
                        selection=selection, eps=eps, seed=seed, input_shape=input_shape)
    epoch = time_training_epoch(model, train_data if train_data is not None else crit_data,
                                eps=eps, batch_size=epoch_batch_size, steps=epoch_steps,
                                max_batches=max_batches, epoch_size=epoch_size, seed=seed)
    return jsonable({
        "criticality_s": timed.elapsed_s,
        "criticality_batch": crit_batch,
        "criticality_attack": timed.attack,
        "epoch": epoch,
        "ratio": timed.elapsed_s / epoch["epoch_s"] if epoch["epoch_s"] > 0 else None,
        "ratio_rule": "criticality_s / epoch_s (one criticality computation per epoch)",
        "device": str(model_device(model)),
        "torch_threads": torch.get_num_threads(),
    })
