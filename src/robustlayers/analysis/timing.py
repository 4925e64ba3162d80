"""Cost of one criticality computation relative to one adversarial-training epoch.

CLAT §4.4 / Table 10 argue the criticality index is cheap: computed on one batch of 10 it costs a
small fraction of one PGD-AT epoch. ``criticality_epoch_ratio`` measures that ratio on the model at
hand. The epoch is timed on the training engine itself (:mod:`robustlayers.train`): the per-batch
step of the ``pgd-at`` method (ℓ∞ PGD-10 with α = ε/4 — SPECTRUM's (2/255)·ε/8 — in eval(), then
loss, backward and an SGD step in train(), exactly as ``robustlayers train`` runs it) with a
:class:`~robustlayers.train.TrainContext` on a *deep copy* of the model, so the analysed weights
never change, on the shuffled (and, for a TensorData, augmented) batches of
:func:`robustlayers.data.iter_batches`. When ``max_batches`` is given, the epoch time is measured
on that many batches and extrapolated linearly to ``epoch_size`` examples; the record says which.
"""

from __future__ import annotations

import copy
import itertools
import math
import time

import torch
from torch import nn

from robustlayers.analysis._common import data_shape, jsonable, split_data
from robustlayers.attacks import describe_eps
from robustlayers.evaluate.metrics import model_device
from robustlayers.analysis.criticality import criticality, default_criticality_attack


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def time_training_epoch(model: nn.Module, data, *, eps: float, batch_size: int = 128,
                        steps: int = 10, alpha: float | None = None,
                        max_batches: int | None = None, epoch_size: int | None = None,
                        lr: float = 0.01, seed: int = 0, input_shape=None) -> dict:
    """Seconds for one PGD-AT epoch (Madry) over ``data`` (or ``epoch_size`` examples) of a copy
    of ``model``, timed on the training engine: ``robustlayers.train.train_steps`` with the
    ``pgd-at`` method (PGD-``steps``, α = ``alpha`` or ε/4, SGD lr ``lr`` momentum 0.9 weight
    decay 5e-4, the loop's defaults otherwise: bf16 autocast and channels-last on CUDA, the
    clean-accuracy forward) on ``iter_batches`` batches (the dataset's default augmentation when
    ``data`` is a TensorData, none for an ``(x, y)`` pair). One untimed step warms up first.
    ``input_shape`` (C, H, W) is needed only for a model without ``input_shape`` whose inputs
    differ from the data's (the layer map's dummy batch)."""
    from robustlayers.data import TensorData, get_dataset_info, iter_batches
    from robustlayers.layers import build_layer_map
    from robustlayers.train import TrainConfig, TrainContext, make_method, train_steps

    x, _y = split_data(data)
    if len(x) == 0:
        raise ValueError("time_training_epoch needs at least one training example, got none")
    size = len(x) if epoch_size is None else int(epoch_size)
    n_batches = math.ceil(size / batch_size)
    measured = n_batches if max_batches is None else max(1, min(n_batches, int(max_batches)))
    work = copy.deepcopy(model)
    device = model_device(work)
    info = data.info if isinstance(data, TensorData) else None
    config = TrainConfig(
        method="pgd-at", dataset=info.name if info is not None else TrainConfig.dataset,
        eps=float(eps), alpha=float(eps) / 4 if alpha is None else float(alpha), steps=steps,
        epochs=1, batch_size=batch_size, lr=lr, schedule="constant", augment=info is not None,
        seed=int(seed), device="cuda" if device.type == "cuda" else "cpu", quiet=True,
    ).validate()
    if device.type == "cuda" and config.channels_last:  # as the training loop does
        work = work.to(memory_format=torch.channels_last)
    # ``info`` only fills in a missing ε/α (both are explicit here)
    ctx = TrainContext(work, config, device=device,
                       info=info if info is not None else get_dataset_info(config.dataset),
                       steps_per_epoch=n_batches,
                       layer_map=build_layer_map(work, data_shape(work, x, input_shape)))
    method = make_method("pgd-at", config)
    method.setup(ctx)
    if ctx.optimizer is None:
        ctx.rebuild_optimizer()
    ctx.seed_epoch(0)
    method.on_epoch_start(ctx, 0)
    source = data if info is not None else split_data(data)
    augment = "default" if info is not None else None
    batches = itertools.chain.from_iterable(  # further passes when epoch_size > len(data)
        iter_batches(source, batch_size, shuffle=True, augment=augment, seed=config.seed,
                     epoch=epoch, device=device) for epoch in itertools.count())
    stepper = train_steps(ctx, method, batches)
    try:
        next(stepper)  # untimed warm-up: first-call costs (lazy imports, allocators)
        _sync(device)
        start = time.perf_counter()
        for _ in range(measured):
            next(stepper)
        _sync(device)
        measured_s = time.perf_counter() - start
    finally:
        stepper.close()
    attack = {**ctx.pgd().config(), "seed": f"per batch from the TrainContext (seed {seed})"}
    return jsonable({
        "epoch_s": measured_s * n_batches / measured,
        "measured_s": measured_s,
        "measured_batches": measured,
        "epoch_batches": n_batches,
        "extrapolated": measured < n_batches,
        "epoch_size": size,
        "batch_size": batch_size,
        "method": (f"pgd-at (robustlayers.train step): PGD in eval(), SGD step in train(), "
                   f"augment {info.augment if info is not None else 'none'}, on a copy of "
                   f"the model"),
        "attack": attack,
        "eps": describe_eps(eps),
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
                                max_batches=max_batches, epoch_size=epoch_size, seed=seed,
                                input_shape=input_shape)
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
