"""Evaluation inside a training run: the per-epoch test numbers, RAT's train robust accuracy, and
the final numbers of the best and last checkpoints on the whole test split.

All attacks are PGD with fixed seeds (the same random starts every epoch), the model in
``eval()``. The final evaluation exists because the per-epoch robust numbers come from a fixed
subset (``eval_size``): RAT's best-minus-last gaps of under a point are below the noise of a
1000-image subset, so ``best`` and ``last`` are measured again on every test image
(``test_size``, None = the whole split) with PGD-``final_steps`` (default ``eval_steps``).
"""

from __future__ import annotations

import copy
import sys

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from robustlayers.attacks import PGD, attack_mode
from robustlayers.data import iter_batches
from robustlayers.train import distributed as ddp
from robustlayers.train.context import derive_seed

COLLAPSE_FACTOR = 1.5
"""A run whose last clean accuracy (final evaluation) is at most 1.5 × chance is ``collapsed``
(EARLY: stage 2 after a late cut cannot learn; such runs are reported, not dropped)."""


def device_layout(ctx, x: torch.Tensor) -> torch.Tensor:
    """Channels-last images on CUDA when ``config.channels_last`` (the model is converted too)."""
    if ctx.device.type == "cuda" and ctx.config.channels_last:
        return x.contiguous(memory_format=torch.channels_last)
    return x


def evaluate_split(ctx, data, *, robust_data=None, prefix: str, steps: int | None = None,
                   alpha: float | None = None, model=None) -> dict:
    """Clean accuracy/loss on ``data`` and PGD-``steps`` (default ``eval_steps``, step
    ``alpha``, default ``eval_alpha``) accuracy/loss on ``robust_data``, fixed seeds, model
    (default ``ctx.model``) in eval(). Keys ``{prefix}_{clean|robust}_{acc|loss}``."""
    model = ctx.model if model is None else model
    config = ctx.config
    steps = config.eval_steps if steps is None else steps
    out = {}
    for kind, part in (("clean", data), ("robust", robust_data)):
        if part is None or (kind == "robust" and steps == 0):
            continue
        attack = None
        if kind == "robust":
            attack = PGD(ctx.threat, steps=steps, alpha=ctx.eval_alpha if alpha is None else alpha,
                         random_start=True, seed=0)
        loss_sum, correct = torch.zeros((), device=ctx.device), torch.zeros((), device=ctx.device)
        bar = tqdm(total=len(part), desc=f"{prefix} {kind}", unit="img", leave=False,
                   disable=config.quiet or not ddp.is_main(), file=sys.stderr)
        batches = iter_batches(part, config.eval_batch_size, shuffle=False, device=ctx.device,
                               shard=ddp.batch_shard())  # data-parallel: this rank's rows
        if ddp.current() is not None:
            batches = ddp.track_shards(ctx, batches, len(part), config.eval_batch_size)
        for i, (x, y) in enumerate(batches):
            if len(y) == 0:  # a short last batch with fewer examples than processes
                continue
            x = device_layout(ctx, x)
            if attack is not None:
                ddp.shard_start(attack, getattr(ctx, "shard", None))
                with ctx.autocast():
                    x = attack(model, x, y, seed=derive_seed(config.seed, "eval", prefix, i))
            with attack_mode(model), torch.no_grad(), ctx.autocast():
                logits = model(x).float()
            loss_sum += F.cross_entropy(logits, y, reduction="sum")
            correct += (logits.argmax(1) == y).sum()
            bar.update(len(y))
        bar.close()
        if ddp.current() is not None:
            sums = ddp.reduce_sums({"loss": loss_sum, "correct": correct}, ctx.device)
            loss_sum, correct = sums["loss"], sums["correct"]
        out[f"{prefix}_{kind}_acc"] = correct.item() / len(part)
        out[f"{prefix}_{kind}_loss"] = loss_sum.item() / len(part)
    return out


def train_robust_metrics(ctx, data) -> dict:
    """RAT's train robust accuracy (Figs. 2–4): clean and PGD-``steps`` (the training attack's
    steps and α) accuracy/loss on a fixed subset of the training split, eval() mode, no
    augmentation. Keys ``train_eval_*``."""
    return evaluate_split(ctx, data, robust_data=data, prefix="train_eval",
                          steps=ctx.config.steps, alpha=ctx.alpha)


def final_evaluation(ctx, run, test, best_epoch: int | None) -> dict:
    """Best and last checkpoints on the whole ``test`` split: clean and PGD accuracy/loss, the
    best-minus-last gap, the attack, and whether the last model ``collapsed``."""
    config = ctx.config
    steps = config.final_steps if config.final_steps is not None else config.eval_steps
    alpha = config.final_alpha if config.final_alpha is not None else ctx.eval_alpha
    last_epoch = config.epochs

    def measure(model, label):
        row = evaluate_split(ctx, test, robust_data=test, prefix=label, steps=steps,
                             alpha=alpha, model=model)
        return {k[len(label) + 1:]: v for k, v in row.items()}

    last = {"epoch": last_epoch, **measure(ctx.model, "final last")}
    if best_epoch is None:
        best = None
    elif best_epoch == last_epoch:
        best = dict(last, epoch=best_epoch)
    else:
        model = copy.deepcopy(ctx.model)
        ddp.barrier()  # data-parallel: rank 0 has written checkpoint best
        run.load_weights("best", model)
        best = {"epoch": best_epoch, **measure(model, "final best")}
    gap = {}
    if best is not None:
        gap = {k: best[k] - last[k] for k in last if k != "epoch" and k.endswith("acc")}
    chance = 1.0 / ctx.info.num_classes
    return {
        "best": best, "last": last, "best_minus_last": gap, "n": len(test),
        "attack": {"name": "pgd", "steps": steps, "alpha": alpha, "eps": ctx.threat.eps,
                   "norm": ctx.threat.norm, "random_start": True, "seed": 0} if steps else None,
        "collapsed": last["clean_acc"] <= COLLAPSE_FACTOR * chance,
        "collapse_rule": f"last clean accuracy <= {COLLAPSE_FACTOR} x chance "
                         f"({COLLAPSE_FACTOR * chance:.3f})",
    }
