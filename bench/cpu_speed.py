"""CPU speed of robustlayers against the code a user would write by hand, in one process.

(a) PGD-20 (ℓ∞, ε = 8/255, α = 2/255, random start, model in eval()) on a batch:
    robustlayers ``PGD`` at its defaults (batch-norm folding and channels-last "auto"), the same
    with both off ("plain"), a textbook hand-written loop and torchattacks' ``PGD`` when installed;
(b) a PGD-AT epoch (Madry et al. 2018; PGD-10, α = ε/4, SGD) on a fixed list of batches:
    ``robustlayers.train.train_steps`` with a ``TrainContext`` (as ``robustlayers train`` runs it,
    ``train_clean_metrics=False``) against a 40-line textbook loop.

Models: the zoo's small CNN on Fashion-MNIST-shaped data (1×28×28) and ResNet-18 on CIFAR-shaped
data (3×32×32), random images in [0, 1] (speed does not depend on the pixels). Every variant runs
once untimed, then ``--reps`` rounds run every variant once each, in a rotating order; a speedup
is ``reference seconds / robustlayers seconds`` of the same round, reported as median and
min–max over rounds (> 1: robustlayers is faster).

    python bench/cpu_speed.py [--threads 2] [--reps 5] [--models smallcnn,resnet18]
"""
from __future__ import annotations

import argparse
import copy
import json
import platform
import statistics
import time

import torch
import torch.nn.functional as F

import robustlayers
from robustlayers.attacks import PGD
from robustlayers.models import create_model

EPS, ALPHA = 8 / 255, 2 / 255
SHAPES = {"smallcnn": (1, 28, 28), "resnet18": (3, 32, 32)}
DATASETS = {"smallcnn": "fashion-mnist", "resnet18": "cifar10"}


# --- the references ------------------------------------------------------------------------------
def textbook_pgd(model, x, y, eps=EPS, alpha=ALPHA, steps=20, *, train_mode=False):
    """PGD as written in papers' code (Madry et al.; Rice et al.'s robust_overfitting), in
    eval() or, with ``train_mode``, in the mode the model is in (robust_overfitting's loop)."""
    if not train_mode:
        model.eval()
    delta = torch.empty_like(x).uniform_(-eps, eps)
    delta = ((x + delta).clamp(0, 1) - x).detach()
    for _ in range(steps):
        delta.requires_grad_(True)
        loss = F.cross_entropy(model(x + delta), y)
        (grad,) = torch.autograd.grad(loss, delta)
        delta = (delta + alpha * grad.sign()).clamp(-eps, eps)
        delta = ((x + delta).clamp(0, 1) - x).detach()
    return x + delta


def textbook_pgd_at_epoch(model, optimizer, batches, eps=EPS, steps=10):
    """One PGD-AT epoch: PGD in eval(), cross-entropy on x_adv in train(), SGD step."""
    for x, y in batches:
        x_adv = textbook_pgd(model, x, y, eps, eps / 4, steps)
        model.train()
        loss = F.cross_entropy(model(x_adv), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()


def torchattacks_pgd(steps=20):
    try:
        import torchattacks
    except Exception as err:  # noqa: BLE001 - report why, keep benchmarking the rest
        return None, f"torchattacks not importable: {type(err).__name__}: {err}"
    return (lambda model, x, y: torchattacks.PGD(model, eps=EPS, alpha=ALPHA, steps=steps,
                                                 random_start=True)(x, y)), torchattacks.__version__


# --- robustlayers' training engine ---------------------------------------------------------------
def robustlayers_trainer(model, name, batch_size, steps=10):
    """``run(batches)`` training ``model`` one epoch with robustlayers' engine (pgd-at)."""
    from robustlayers.data import get_dataset_info
    from robustlayers.train import TrainConfig, TrainContext, make_method, train_steps

    config = TrainConfig(model=name, dataset=DATASETS[name], method="pgd-at", eps=EPS,
                         alpha=EPS / 4, steps=steps, epochs=1, batch_size=batch_size, lr=0.01,
                         schedule="constant", augment=False, train_clean_metrics=False,
                         device="cpu", quiet=True).validate()
    ctx = TrainContext(model, config, device=torch.device("cpu"),
                       info=get_dataset_info(config.dataset), steps_per_epoch=1000)
    method = make_method("pgd-at", config)
    method.setup(ctx)
    if ctx.optimizer is None:
        ctx.rebuild_optimizer()
    epoch = [0]

    def run(batches):
        ctx.seed_epoch(epoch[0])
        method.on_epoch_start(ctx, epoch[0])
        for _ in train_steps(ctx, method, batches):
            pass
        epoch[0] += 1
    return run


# --- timing --------------------------------------------------------------------------------------
def interleaved(variants: dict, reps: int) -> dict[str, list[float]]:
    """Seconds per call of every variant: one untimed warm-up each, then ``reps`` rounds of one
    call each, the order rotating by one every round."""
    names = list(variants)
    for name in names:
        variants[name]()
    times = {name: [] for name in names}
    for r in range(reps):
        for name in names[r % len(names):] + names[:r % len(names)]:
            start = time.perf_counter()
            variants[name]()
            times[name].append(time.perf_counter() - start)
    return times


def speedups(times, ours: str) -> dict:
    """Per reference: median and min–max of reference/ours over the rounds."""
    out = {}
    for name, ref in times.items():
        if name == ours:
            continue
        ratios = [r / o for r, o in zip(ref, times[ours])]
        out[name] = {"median": statistics.median(ratios), "min": min(ratios), "max": max(ratios)}
    return out


def bench_attack(name, batch, reps, ta):
    torch.manual_seed(0)
    model = (create_model(name, in_channels=1, input_size=28, seed=0) if name == "smallcnn"
             else create_model(name, seed=0)).eval()
    x, y = torch.rand(batch, *SHAPES[name]), torch.randint(0, 10, (batch,))
    fast = PGD(eps=EPS, alpha=ALPHA, steps=20)
    variants = {"robustlayers": lambda: fast(model, x, y),
                "robustlayers plain": lambda: PGD(eps=EPS, alpha=ALPHA, steps=20, fold_bn=False,
                                                  channels_last=False)(model, x, y),
                "textbook": lambda: textbook_pgd(model, x, y)}
    if ta is not None:
        variants["torchattacks"] = lambda: ta(model, x, y)
    times = interleaved(variants, reps)
    return {"batch": batch, "seconds": times, "speedup": speedups(times, "robustlayers"),
            "fast_path": fast.last_report["fast_path"]}


def bench_training(name, batch, n_batches, reps):
    init = (create_model(name, in_channels=1, input_size=28, seed=0) if name == "smallcnn"
            else create_model(name, seed=0))
    g = torch.Generator().manual_seed(0)
    batches = [(torch.rand(batch, *SHAPES[name], generator=g),
                torch.randint(0, 10, (batch,), generator=g)) for _ in range(n_batches)]
    ours_model, ref_model = copy.deepcopy(init), copy.deepcopy(init)
    ours = robustlayers_trainer(ours_model, name, batch)
    opt = torch.optim.SGD(ref_model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    times = interleaved({"robustlayers": lambda: ours(batches),
                         "textbook": lambda: textbook_pgd_at_epoch(ref_model, opt, batches)},
                        reps)
    return {"batch": batch, "batches": n_batches, "seconds": times,
            "speedup": speedups(times, "robustlayers")}


def _line(label, s):
    return (f"  {label:<44} {s['median']:.2f}x  (min {s['min']:.2f}, max {s['max']:.2f})")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--models", default="smallcnn,resnet18")
    p.add_argument("--attack-batch", default="smallcnn=128,resnet18=8")
    p.add_argument("--train-batch", default="smallcnn=128,resnet18=8")
    p.add_argument("--train-batches", type=int, default=2)
    p.add_argument("--out", default=None, help="also write the figures as JSON here")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    attack_batch = dict((k, int(v)) for k, v in (s.split("=") for s in args.attack_batch.split(",")))
    train_batch = dict((k, int(v)) for k, v in (s.split("=") for s in args.train_batch.split(",")))
    ta, ta_version = torchattacks_pgd()
    record = {"robustlayers": robustlayers.__version__, "torch": torch.__version__,
              "torchattacks": ta_version, "threads": args.threads, "reps": args.reps,
              "cpu": platform.processor() or platform.machine(), "results": {}}
    print(f"robustlayers {record['robustlayers']}, torch {record['torch']}, torchattacks "
          f"{ta_version}; {args.threads} threads, {args.reps} interleaved rounds")
    print("speedup = reference seconds / robustlayers seconds (same round); > 1: robustlayers "
          "faster")
    for name in args.models.split(","):
        a = bench_attack(name, attack_batch[name], args.reps, ta)
        print(f"\n(a) PGD-20 on {name}, batch {a['batch']} (robustlayers median "
              f"{statistics.median(a['seconds']['robustlayers']):.2f} s; fast path: BN folded "
              f"{len(a['fast_path']['fold_bn'])} pairs, channels_last "
              f"{a['fast_path']['channels_last']})")
        for ref, s in a["speedup"].items():
            print(_line(f"robustlayers vs {ref}", s))
        t = bench_training(name, train_batch[name], args.train_batches, args.reps)
        print(f"(b) PGD-AT epoch (PGD-10) on {name}, {t['batches']} batches of {t['batch']} "
              f"(robustlayers median {statistics.median(t['seconds']['robustlayers']):.2f} s)")
        print(_line("robustlayers train_steps vs textbook loop", t["speedup"]["textbook"]))
        record["results"][name] = {"attack": a, "train": t}
    if args.out:
        with open(args.out, "w") as f:
            json.dump(record, f, indent=1)


if __name__ == "__main__":
    main()
