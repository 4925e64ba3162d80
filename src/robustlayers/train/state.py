"""What a checkpoint holds besides the weights, and making ``best`` agree with a resume point.

A checkpoint's state is every stateful object of the run (Lightning Fabric / torchtitan style):
optimiser and schedule, method state, the trainable set and parameter groups, selections and
events, the best-so-far record and the RNG states.
"""

from __future__ import annotations

import copy
import os
import shutil
import sys

from robustlayers.runs import (CheckpointCorrupt, RunDir, capture_rng_state, epoch_tag,
                               restore_rng_state)
from robustlayers.train import distributed as ddp
from robustlayers.train.context import TrainContext


def checkpoint_state(ctx: TrainContext, method, epoch: int, best: dict) -> dict:
    """The checkpoint's state. Data-parallel: called on every rank (a collective), it also
    holds every rank's RNG states (``rank_rng``, by rank) so each rank resumes its own."""
    rng = capture_rng_state()
    state = {"epoch": epoch, "step": ctx.step, "optimizer": ctx.optimizer.state_dict(),
             "scheduler": ctx.scheduler.state_dict(), "method": method.state_dict(),
             "frozen": ctx.frozen_names(), "group_spec": ctx.group_spec,
             "selections": ctx.selections, "events": ctx.events, "best": best, "rng": rng}
    ranks = ddp.gather_objects(rng)
    if ranks is not None:
        state["rank_rng"] = ranks
    return state


def restore_state(ctx: TrainContext, method, state: dict) -> tuple[int, dict]:
    ctx.set_frozen_names(state["frozen"])
    ctx.group_spec, ctx.step = state["group_spec"], state["step"]
    ctx.selections.update(state["selections"])
    ctx.events = list(state["events"])
    ctx.rebuild_optimizer(keep_state=False)
    ctx.optimizer.load_state_dict(state["optimizer"])
    ctx.scheduler.load_state_dict(state["scheduler"])
    method.load_state_dict(state["method"])
    dp = ddp.current()
    if dp is None or dp.main:
        restore_rng_state(state["rng"])
    elif len(state.get("rank_rng") or ()) == dp.world_size:
        restore_rng_state(state["rank_rng"][dp.rank])
    # else: resumed on another number of processes; ranks > 0 keep their seeded RNGs
    return state["epoch"], state["best"]


def reconcile_best(run: RunDir, model, state: dict | None, start_epoch: int,
                   best: dict) -> None:
    """On resume, make checkpoint ``best`` agree with the best record ``best`` restored from the
    resume checkpoint (epoch ``start_epoch``, ``state``), i.e. with the replay.

    ``best`` is saved before the epoch checkpoint of the same epoch (and on epochs without one
    when ``checkpoint_every`` > 1), so a run killed in between leaves a ``best`` from an epoch
    later than the one it resumes from, which may have overwritten the recorded best. Such a
    ``best`` (or a corrupt one) is replaced by the recorded best epoch's weights — the resumed
    weights when that is ``start_epoch``, else its epoch checkpoint if still kept — or, when
    those are gone, dropped (with a warning): the replay saves a new one when it finds it."""
    want = best["epoch"]
    root = run.checkpoint_root
    try:
        have = run.verify_checkpoint("best").get("epoch")
        present = True
    except FileNotFoundError:
        have, present = None, False
    except CheckpointCorrupt:
        have, present = "corrupt", True
    if present and have == want:
        return
    stale = present and (have == "corrupt" or want is None
                         or not isinstance(have, int) or have > start_epoch)
    if want is not None:
        if want == start_epoch and state is not None:
            run.save_checkpoint("best", model, state, epoch=want)
            return
        source = copy.deepcopy(model)
        try:
            saved = run.load_checkpoint(epoch_tag(want), source)
        except (FileNotFoundError, CheckpointCorrupt):
            print(f"robustlayers train: the weights of the recorded best epoch {want} are no "
                  f"longer kept (checkpoint best holds epoch {have}); the replay saves a new "
                  f"best when it finds one", file=sys.stderr)
        else:
            run.save_checkpoint("best", source, saved, epoch=want)
            return
    if stale:
        print(f"robustlayers train: dropping checkpoint best (epoch {have}): it is later than "
              f"the resume point (epoch {start_epoch}) or corrupt", file=sys.stderr)
        trash = root / f".tmp-drop-best-{os.getpid()}"
        os.rename(root / "best", trash)   # .tmp-* leftovers are removed on the next resume
        shutil.rmtree(trash, ignore_errors=True)


