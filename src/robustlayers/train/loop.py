"""The training loop: epochs → batches → method step → schedule → evaluate → checkpoint.

``run_loop`` (called by :func:`robustlayers.train.train`) runs one method (see :mod:`robustlayers.train.methods`) and writes a run
directory (:class:`robustlayers.runs.RunDir`): config.json (the resolved config, with ε/α filled
in from the dataset and ``model_kwargs`` to rebuild the model), selections.json (the resolved layer
names of every selection used), environment.json (versions, code version), metrics.jsonl (one row
per epoch), checkpoints (``epoch-NNNN`` every ``checkpoint_every`` epochs, the newest
``keep_checkpoints`` kept, and ``best``) and result.json (best and last metrics and their gap).

Determinism and exact resume. Everything random is a function of ``config.seed`` and the epoch:
model initialisation (``builders.build_model(seed=...)``), data order and augmentation
(``iter_batches(seed, epoch)``), the method generator (reseeded each epoch) from which attack
seeds are drawn, and the evaluation attack (fixed seeds, the same every epoch). The global RNG
states are seeded at start and saved in every checkpoint anyway (for models that use them, e.g.
dropout). A checkpoint holds the weights, optimiser and schedule state, method state, trainable
set and parameter groups, the best-so-far record and the RNG states; ``resume`` loads the newest
*complete* one, cuts metrics.jsonl after its epoch, replaces a ``best`` saved after that epoch
(:func:`reconcile_best`) and replays from there, so a run killed at any
point ends with exactly the weights and metrics (except the timing fields :data:`TIME_FIELDS`)
of an uninterrupted run on the same machine (CPU; on CUDA only up to kernel non-determinism).
"""

from __future__ import annotations

import contextlib
import math
import sys
import time
from pathlib import Path

import torch
from tqdm.auto import tqdm

from robustlayers.attacks import attack_mode
from robustlayers.data import get_dataset_info, iter_batches, num_batches
from robustlayers.devices import resolve_device
from robustlayers.layers import count_params
from robustlayers.errors import RunInterrupted
from robustlayers.runs import RunDir, epoch_tag
from robustlayers.runs.liveness import heartbeat
from robustlayers.tracking import make_trackers
from robustlayers.train import distributed as ddp
from robustlayers.train.config import TrainConfig
from robustlayers.train.context import TrainContext
from robustlayers.train.evaluation import (device_layout, evaluate_split, final_evaluation,
                                           train_robust_metrics)
from robustlayers.train.signals import Terminated, terminate_as_interrupt
from robustlayers.train.state import checkpoint_state, reconcile_best, restore_state
from robustlayers.train.sync_bn import convert_sync_bn
from robustlayers.train.methods import make_method
from robustlayers.train.setup import (build_model, index_run, load_splits, seed_globals,
                                      start_weights)

TIME_FIELDS = ("seconds", "train_seconds", "eval_seconds", "images_per_s")
"""Metrics fields that measure wall-clock time; everything else is exactly reproducible."""
RUN_ONLY_KEYS = ("model_kwargs", "init_source")
"""Keys of config.json that are not TrainConfig fields (written for load_run_model)."""


def train_step(ctx: TrainContext, method, x: torch.Tensor, y: torch.Tensor):
    """One optimisation step of ``method`` on the batch ``(x, y)``: zero_grad → method.loss →
    backward → before_optimizer_step → optimizer.step → scheduler.step (per iteration).
    Returns ``(out, logits_clean)``: the method's StepOutput and the clean logits (the method's
    own, one extra eval-mode forward when ``config.train_clean_metrics``, or with
    ``attack_mode="train"`` the train-mode clean forward after the step; else None)."""
    model, config = ctx.model, ctx.config
    x = device_layout(ctx, x)
    ctx.optimizer.zero_grad(set_to_none=True)
    with ctx.autocast():
        out = method.loss(ctx, x, y)
    shard = getattr(ctx, "shard", None)  # data-parallel: this rank's rows of the global batch
    (out.loss if shard is None else out.loss * shard.weight).backward()
    if shard is not None:
        ddp.sync_gradients(model)
    method.before_optimizer_step(ctx)
    logits_clean = out.logits_clean
    if logits_clean is None and config.train_clean_metrics and not ctx.attack_train_mode:
        with attack_mode(model), torch.no_grad(), ctx.autocast():
            logits_clean = model(x)
    ctx.optimizer.step()
    ctx.scheduler.step()
    ctx.step += 1
    if ctx.attack_train_mode:
        # robust_overfitting / AWP / RAT code: a clean forward in train() mode after the step
        # (its BN running statistics are part of that protocol); its logits give train accuracy
        with torch.no_grad(), ctx.autocast():
            logits = model(x)
        logits_clean = logits if logits_clean is None else logits_clean
    if shard is not None:  # DistributedDataParallel's broadcast_buffers: rank 0's BN statistics
        ddp.broadcast_module(model, buffers_only=True)
    return out, logits_clean


def train_steps(ctx: TrainContext, method, batches):
    """Train ``ctx.model`` (in train() mode) on each ``(x, y)`` of ``batches`` with
    :func:`train_step`; yields ``(y, out, logits_clean)`` per batch. The loop's
    :func:`train_epoch` and the training-time measurement of
    :func:`robustlayers.analysis.time_training_epoch` both run this."""
    ctx.model.train()
    for x, y in batches:
        out, logits_clean = train_step(ctx, method, x, y)
        yield y, out, logits_clean


def epoch_batches(ctx: TrainContext, data, epoch: int):
    """The shuffled (and, with ``config.augment``, augmented) training batches of ``epoch``: a
    deterministic function of (seed, epoch)."""
    config = ctx.config
    batches = iter_batches(data, config.batch_size, shuffle=True,
                           augment="default" if config.augment else None, seed=config.seed,
                           epoch=epoch, device=ctx.device, shard=ddp.batch_shard())
    if ddp.current() is None:
        return batches
    return ddp.track_shards(ctx, batches, len(data), config.batch_size)


def train_epoch(ctx: TrainContext, method, data, epoch: int) -> dict:
    """One pass over ``data`` (:func:`train_steps` on :func:`epoch_batches`). Returns the
    epoch's train metrics (lr at its start, loss, clean/adversarial accuracy, method extras)."""
    config, device = ctx.config, ctx.device
    lrs = ctx.scheduler.get_last_lr()
    zero = lambda: torch.zeros((), device=device)  # noqa: E731 - sums stay on device (no sync)
    sums, counts = {"loss": zero(), "clean": zero(), "adv": zero()}, {"clean": 0, "adv": 0}
    bar = tqdm(total=len(data), desc=f"epoch {epoch + 1}/{config.epochs}", unit="img",
               leave=False, disable=config.quiet, file=sys.stderr)
    for y, out, logits_clean in train_steps(ctx, method, epoch_batches(ctx, data, epoch)):
        n = len(y)
        sums["loss"] += out.loss.detach().float() * n
        for name, value in out.extra.items():
            sums[f"train_{name}"] = sums.get(f"train_{name}", 0.0) + torch.as_tensor(value) * n
        for kind, logits in (("clean", logits_clean), ("adv", out.logits_adv)):
            if logits is not None:
                sums[kind] += (logits.argmax(1) == y).sum()
                counts[kind] += n
        bar.update(n)
    bar.close()
    if ddp.current() is not None:  # the global batch's sums
        sums = ddp.reduce_sums(sums, device)
        counts = {k: int(v) for k, v in ddp.reduce_sums(counts, device).items()}
    row = {"lr": lrs[0], **({"lrs": lrs} if len(lrs) > 1 else {}),
           "train_loss": sums.pop("loss").item() / len(data)}
    for kind in ("clean", "adv"):
        total = sums.pop(kind).item()
        row[f"train_{kind}_acc"] = total / counts[kind] if counts[kind] else None
    row.update({name: float(value) / len(data) for name, value in sums.items()})
    return row


# --- the loop -----------------------------------------------------------------------------------

def run_loop(config: TrainConfig, *, run_path: Path, resuming: bool,
         saved_config: dict | None = None, user: dict | None = None) -> RunDir:
    user = user or {}
    dp = ddp.current()  # None in one process (torchrun: see robustlayers.train.distributed)
    device = ddp.rank_device(dp, resolve_device(config.device))
    splits = user.get("splits")
    info = splits["train"].info if splits else get_dataset_info(config.dataset)
    seed_globals(ddp.rank_seed(config.seed))
    data = load_splits(config, device, splits)
    model, model_kwargs = build_model(config, info, device, user.get("model"))
    steps_per_epoch = num_batches(data["train"], config.batch_size)
    if dp is not None:
        ddp.check_last_batch(len(data["train"]), config.batch_size)
        config.quiet = config.quiet or not dp.main  # one progress display: rank 0's
        if config.sync_bn:
            convert_sync_bn(model)
    context = TrainContext if dp is None else ddp.DataParallelContext
    ctx = context(model, config, device=device, info=info, steps_per_epoch=steps_per_epoch)
    ctx.train_data = data["train"]
    method = make_method(config.method, config)

    # the start weights, then selections: resolved (and failing) before anything is written
    ctx.init_source = start_weights(config, model, model_kwargs, run_path, saved_config)
    if config.reinit:
        ctx.reinit(config.reinit, label="reinit")
    if config.freeze:
        ctx.freeze(config.freeze, label="freeze")
    for i, spec in enumerate(config.param_groups):
        ctx.select(spec["select"], label=f"param_groups[{i}]")
    method.setup(ctx)
    if ctx.optimizer is None:
        ctx.rebuild_optimizer()
    record = saved_config or {**config.to_dict(), "model_kwargs": model_kwargs,
                              **({"init_source": ctx.init_source} if ctx.init_source else {})}
    run = ddp.on_main(lambda: RunDir.create(run_path, record, selections=ctx.selections,
                                            exist_ok=resuming))
    if dp is not None:  # identical start weights (as DistributedDataParallel); rank 0 writes
        ddp.broadcast_module(model)
        run = run or ddp.FollowerRun(RunDir.open(run_path))
    # from here on every failure leaves result.json failed / interrupted (never running)
    main = ddp.is_main()
    trackers = make_trackers(config.log if main else [], run_dir=run.path, uri=config.log_uri)
    beat = heartbeat(run.path) if main else contextlib.nullcontext()
    with trackers, beat, terminate_as_interrupt():
        try:
            trackers.start(run.config)
            ctx.on_selection = lambda label, resolved: run.record_selections({label: resolved})
            select_by = config.select_by
            if select_by == "auto":
                select_by = "robust" if method.adversarial and config.eval_steps > 0 else "clean"
            split = "val" if data["val"] is not None else "test"
            key = f"{split}_{select_by}_acc"
            start_epoch, best = 0, {"value": None, "epoch": None, "metrics": None}
            diverged = None
            if resuming:
                tag, state = ddp.broadcast_object(run.latest_checkpoint()), None
                for note in run.warnings if main else ():
                    print(f"robustlayers train: {note}", file=sys.stderr)
                if tag is not None:
                    state = run.load_checkpoint(tag, model)
                    start_epoch, best = restore_state(ctx, method, state)
                    if main:
                        print(f"resuming {run.path} from checkpoint {tag}", file=sys.stderr)
                elif main:
                    print(f"no complete checkpoint in {run.path}; starting from epoch 0",
                          file=sys.stderr)
                run.truncate_metrics(start_epoch)
                if main:
                    reconcile_best(run, model, state, start_epoch, best)
            if main:
                index_run(run, config)

            started = time.perf_counter()
            for epoch in range(start_epoch, config.epochs):
                t0 = time.perf_counter()
                ctx.seed_epoch(epoch)
                method.on_epoch_start(ctx, epoch)
                row = {"epoch": epoch + 1, **train_epoch(ctx, method, data["train"], epoch)}
                if not math.isfinite(row["train_loss"]):
                    diverged = epoch + 1  # stop: keep the last finite checkpoint
                    run.append_metrics({**row, "diverged": True})
                    break
                method.on_epoch_end(ctx, epoch)
                t1 = time.perf_counter()
                done = epoch + 1
                if done % config.eval_every == 0 or done == config.epochs:
                    row.update(evaluate_split(ctx, data["test"], robust_data=data["eval"],
                                              prefix="test"))
                    if data["val"] is not None:
                        row.update(evaluate_split(ctx, data["val"], robust_data=data["val_eval"],
                                                  prefix="val"))
                    if data["train_eval"] is not None:
                        row.update(train_robust_metrics(ctx, data["train_eval"]))
                value = row.get(key)
                row["best"] = value is not None and (best["value"] is None or value > best["value"])
                t2 = time.perf_counter()
                row.update({"train_seconds": t1 - t0, "eval_seconds": t2 - t1, "seconds": t2 - t0,
                            "images_per_s": len(data["train"]) / max(t1 - t0, 1e-9)})
                run.append_metrics(row)
                trackers.log_epoch(row, step=done)
                state = None
                if row["best"]:
                    best = {"value": value, "epoch": done, "metrics": row}
                    state = checkpoint_state(ctx, method, done, best)
                    run.save_checkpoint("best", model, state, epoch=done)
                if (done % config.checkpoint_every == 0 or done == config.epochs
                        or done in config.keep_epochs):
                    state = state or checkpoint_state(ctx, method, done, best)
                    run.save_checkpoint(epoch_tag(done), model, state)
                    run.prune_checkpoints(config.keep_checkpoints,
                                          keep_epochs=config.keep_epochs)
                if not config.quiet:
                    tqdm.write(_summary(row), file=sys.stderr)
            final = (final_evaluation(ctx, run, data["test"], best["epoch"])
                     if config.final_eval and not diverged else None)
            result = _result(run, config, ctx, method, best, key,
                             time.perf_counter() - started, device, final)
            if dp is not None:
                result["distributed"] = {**dp.describe(), "sync_bn": config.sync_bn}
            if diverged:
                result.update(status="diverged", diverged_epoch=diverged,
                              last_finite_checkpoint=run.latest_checkpoint(),
                              error=f"the training loss became non-finite in epoch {diverged}")
            run.write_result(result)
            trackers.finish(run.result, artifacts=[run.path / "config.json",
                                                   run.path / "result.json"])
        except (KeyboardInterrupt, Terminated) as err:
            code = 143 if isinstance(err, Terminated) else 130
            what = "SIGTERM" if code == 143 else "Ctrl-C"
            run.write_result({"error": f"interrupted by {what}"}, status="interrupted")
            if main:
                _index_quietly(run, config)
            raise RunInterrupted(f"run {run.path} interrupted by {what}; continue it with: "
                                 f"robustlayers train --resume {run.path}",
                                 exit_code=code) from None
        except BaseException as err:
            run.mark_failed(err)
            if main:
                _index_quietly(run, config)
            raise

    if main:
        index_run(run, config)
    if dp is not None:  # the other ranks return the run once rank 0 has written it
        ddp.barrier()
        return run if main else RunDir.open(run_path)
    return run


def _index_quietly(run: RunDir, config) -> None:
    try:
        index_run(run, config)
    except Exception as index_err:  # the original error is the one to report
        print(f"robustlayers train: could not update the runs index: {index_err}",
              file=sys.stderr)


def _summary(row: dict) -> str:
    parts = [f"epoch {row['epoch']}", f"loss {row['train_loss']:.4f}"]
    for name in ("train_clean_acc", "train_adv_acc", "test_clean_acc", "test_robust_acc",
                 "val_robust_acc"):
        if row.get(name) is not None:
            parts.append(f"{name} {row[name]:.4f}")
    parts.append(f"{row['images_per_s']:.0f} img/s" + ("  *best" if row["best"] else ""))
    return "  ".join(parts)


def _result(run: RunDir, config, ctx, method, best: dict, key: str, seconds: float,
            device, final: dict | None) -> dict:
    rows = run.metrics()
    last = rows[-1] if rows else {}
    best_row = best["metrics"] or {}
    gap = {}
    for name in ("test_robust_acc", "test_clean_acc", "val_robust_acc", "val_clean_acc"):
        if best_row.get(name) is not None and last.get(name) is not None:
            gap[name] = best_row[name] - last[name]
    strip = lambda r: {k: v for k, v in r.items() if k not in TIME_FIELDS}  # noqa: E731
    return {
        "method": method.describe(), "select_by": key, "best_epoch": best["epoch"],
        "best": strip(best_row), "last": strip(last), "best_minus_last": gap,
        "clean_acc": last.get("test_clean_acc"),
        "robust_acc_best": best_row.get("test_robust_acc"),
        "robust_acc_last": last.get("test_robust_acc"),
        "threat": ctx.threat.to_dict(), "alpha": ctx.alpha,
        "eval_attack": {"name": "pgd", "steps": config.eval_steps, "alpha": ctx.eval_alpha,
                        "eps": ctx.threat.eps, "norm": ctx.threat.norm,
                        "n": config.eval_size, "random_start": True},
        "selections": ctx.selections, "events": ctx.events,
        "params": {"total": count_params(ctx.model),
                   "trainable": count_params(ctx.model, trainable_only=True)},
        "final": final, "collapsed": final["collapsed"] if final else None,
        "init_source": _source_summary(ctx.init_source), "attack_mode": config.attack_mode,
        "device": str(device), "seconds": seconds,
    }


def _source_summary(source: dict | None) -> dict | None:
    """The init source without the source run's whole config (config.json keeps that)."""
    if source is None:
        return None
    config = source.get("config") or {}
    return {**{k: v for k, v in source.items() if k != "config"},
            "method": config.get("method"), "seed": config.get("seed")}
