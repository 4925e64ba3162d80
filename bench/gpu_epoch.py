"""GPU figures of robustlayers: one PGD-10 adversarial-training epoch of PreAct ResNet-18 on
CIFAR-10-sized data against a textbook fp32 loop, PGD-20 and AutoAttack throughput, and the
largest batch that fits for PGD-10 AT of ResNet-18 and WRN-34-10.

(a) PGD-AT epoch (Madry et al. 2018; PGD-10, ℓ∞ ε = 8/255, α = 2/255, SGD momentum 0.9, batch
    128): ``robustlayers.train.train_steps`` with a ``TrainContext`` as ``robustlayers train``
    runs it (bf16 autocast and channels-last on CUDA, the config defaults) against a textbook
    fp32 loop of the kind of Rice et al.'s robust_overfitting code (written below: attack and
    update in train() mode, fp32, no layout change). Images/s, seconds per epoch (of
    ``--images`` images; CIFAR-10's 50 000 by default) and the ratio textbook / robustlayers
    (> 1: robustlayers faster), median and min–max over ``--reps`` interleaved rounds; with
    ``--compile MODE`` also the engine with its PGD step compiled (run config ``compile``).
(b) PGD-20 evaluation throughput (images/s, model in eval()) and AutoAttack standard
    (APGD-CE, APGD-T, FAB-T, Square through ``pyautoattack``) images/s when importable.
(c) The largest batch for which one PGD-10 AT step of ResNet-18 and of WRN-34-10 fits in device
    memory (doubling, then bisection; CUDA only — on CPU the search stops at ``--max-batch``).

The data are CIFAR-10 (``--data-dir``) when present, else random tensors of its shape (speed
does not depend on the pixels). ``--smoke`` runs every part with tiny sizes (CPU in seconds) to
check the script; its figures mean nothing.

    python bench/gpu_epoch.py [--device cuda] [--reps 3] [--images 50000] [--compile MODE]
        [--out FILE]
    python bench/gpu_epoch.py --smoke            # any machine: checks the script
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
from cpu_speed import textbook_pgd  # the same hand-written PGD (bench/ is on sys.path)
from robustlayers.attacks import PGD
from robustlayers.devices import resolve_device
from robustlayers.models import create_model

EPS, ALPHA = 8 / 255, 2 / 255


# --- the reference ---------------------------------------------------------------------------
def textbook_epoch(model, optimizer, batches, steps=10):
    """One PGD-AT epoch in train() mode, fp32 (robust_overfitting's training loop)."""
    model.train()
    for x, y in batches:
        x_adv = textbook_pgd(model, x, y, EPS, ALPHA, steps, train_mode=True)
        loss = F.cross_entropy(model(x_adv), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()


# --- robustlayers ----------------------------------------------------------------------------
def robustlayers_epoch(model, device, batch_size, steps=10, compile_mode="off"):
    """``run(batches)``: one PGD-AT epoch with robustlayers' engine at its defaults (and with
    ``compile=compile_mode``: the PGD step as one compiled graph)."""
    from robustlayers.data import get_dataset_info
    from robustlayers.train import TrainConfig, TrainContext, make_method, train_steps

    config = TrainConfig(model="preact_resnet18", dataset="cifar10", method="pgd-at", eps=EPS,
                         alpha=ALPHA, steps=steps, epochs=1, batch_size=batch_size, lr=0.1,
                         schedule="constant", device=device.type, quiet=True,
                         compile=compile_mode).validate()
    if device.type == "cuda" and config.channels_last:
        model = model.to(memory_format=torch.channels_last)
    ctx = TrainContext(model, config, device=device, info=get_dataset_info("cifar10"),
                       steps_per_epoch=1000)
    method = make_method("pgd-at", config)
    method.setup(ctx)
    if ctx.optimizer is None:
        ctx.rebuild_optimizer()

    def run(batches):
        ctx.seed_epoch(0)
        for _ in train_steps(ctx, method, batches):
            pass
    return run


# --- helpers ---------------------------------------------------------------------------------
def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device) -> float:
    sync(device)
    start = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - start


def cifar_batches(args, device, n, batch):
    """``n`` CIFAR-10 training images (or random ones of that shape) in batches on ``device``."""
    source = "random tensors (3x32x32, 10 classes)"
    try:
        from robustlayers.data import load_dataset
        data = load_dataset("cifar10", "train", data_dir=args.data_dir, subset=n, seed=0)
        x, y, source = data.x, data.y, f"CIFAR-10 train ({args.data_dir or 'default folder'})"
    except Exception:  # noqa: BLE001 - CIFAR-10 absent: random data of its shape
        g = torch.Generator().manual_seed(0)
        x, y = torch.rand(n, 3, 32, 32, generator=g), torch.randint(0, 10, (n,), generator=g)
    batches = [(x[i:i + batch].to(device), y[i:i + batch].to(device))
               for i in range(0, n, batch)]
    return batches, source


def ratio_stats(ref: list[float], ours: list[float]) -> dict:
    ratios = [r / o for r, o in zip(ref, ours)]
    return {"median": statistics.median(ratios), "min": min(ratios), "max": max(ratios)}


# --- (a) (b) (c) -----------------------------------------------------------------------------
def bench_epoch(args, device) -> dict:
    batches, source = cifar_batches(args, device, args.images, args.batch)
    init = create_model("preact_resnet18", seed=0).to(device)
    ours = robustlayers_epoch(copy.deepcopy(init), device, args.batch, args.steps)
    ref_model = copy.deepcopy(init)
    opt = torch.optim.SGD(ref_model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    variants = {"robustlayers": lambda: ours(batches),
                "textbook": lambda: textbook_epoch(ref_model, opt, batches, args.steps)}
    if args.compile != "off":
        compiled = robustlayers_epoch(copy.deepcopy(init), device, args.batch, args.steps,
                                      args.compile)
        variants[f"compile={args.compile}"] = lambda: compiled(batches)
    for fn in variants.values():  # warm-up (cuDNN autotuning, allocator, compilation)
        fn()
    times = {name: [] for name in variants}
    for r in range(args.reps):
        for name in (list(variants) if r % 2 == 0 else list(variants)[::-1]):
            times[name].append(timed(variants[name], device))
    n = sum(len(y) for _, y in batches)
    return {"data": source, "images": n, "batch": args.batch, "steps": args.steps,
            "seconds": times,
            "images_per_s": {k: n / statistics.median(v) for k, v in times.items()},
            "speedup_vs_textbook": {k: ratio_stats(times["textbook"], v)
                                    for k, v in times.items() if k != "textbook"}}


def bench_eval(args, device) -> dict:
    batches, _ = cifar_batches(args, device, args.eval_images, args.eval_batch)
    model = create_model("preact_resnet18", seed=0).to(device).eval()
    attack = PGD(eps=EPS, alpha=ALPHA, steps=20)
    run = lambda: [attack(model, x, y) for x, y in batches]  # noqa: E731
    run()
    n = sum(len(y) for _, y in batches)
    seconds = [timed(run, device) for _ in range(args.reps)]
    out = {"pgd20": {"images": n, "seconds": seconds,
                     "images_per_s": n / statistics.median(seconds)}}
    try:
        from robustlayers.attacks import AutoAttackAdapter
        aa = AutoAttackAdapter(eps=EPS, norm="Linf", version="standard",
                               batch_size=args.eval_batch)
        x, y = batches[0][0][:args.aa_images], batches[0][1][:args.aa_images]
        seconds = timed(lambda: aa(model, x, y), device)
        out["autoattack_standard"] = {"images": len(y), "seconds": seconds,
                                      "images_per_s": len(y) / seconds,
                                      "note": "untrained model: AutoAttack skips points "
                                              "misclassified clean, so this is an upper bound"}
    except ImportError as err:
        out["autoattack_standard"] = {"skipped": f"pyautoattack not importable: {err}"}
    return out


def fits(name, batch, device, steps) -> bool:
    """Whether one PGD-``steps`` AT step of ``name`` at ``batch`` fits in device memory."""
    try:
        model = create_model(name, seed=0).to(device)
        opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        x = torch.rand(batch, 3, 32, 32, device=device)
        y = torch.randint(0, 10, (batch,), device=device)
        model.eval()
        x_adv = PGD(eps=EPS, alpha=ALPHA, steps=steps)(model, x, y)
        model.train()
        opt.zero_grad()
        F.cross_entropy(model(x_adv), y).backward()
        opt.step()
        sync(device)
        return True
    except torch.cuda.OutOfMemoryError:
        return False
    finally:
        if device.type == "cuda":
            torch.cuda.empty_cache()


def largest_batch(name, device, args) -> dict:
    """Doubling from ``--start-batch`` until a step fails (or ``--max-batch``), then bisection."""
    low, high = 0, args.start_batch
    while high <= args.max_batch and fits(name, high, device, args.steps):
        low, high = high, high * 2
    capped = high > args.max_batch
    high = min(high, args.max_batch + 1)
    while high - low > max(1, low // 64):  # within ~1.5%
        mid = (low + high) // 2
        low, high = (mid, high) if fits(name, mid, device, args.steps) else (low, mid)
    return {"largest_batch": low, "capped_at": args.max_batch if capped else None,
            "steps": args.steps}


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="auto", help="cuda, cpu or auto")
    p.add_argument("--smoke", action="store_true", help="tiny sizes: check the script on a CPU")
    p.add_argument("--images", type=int, default=50_000, help="images per training epoch")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--steps", type=int, default=10, help="PGD steps of the training attack")
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--eval-images", type=int, default=10_000)
    p.add_argument("--eval-batch", type=int, default=500)
    p.add_argument("--aa-images", type=int, default=500)
    p.add_argument("--start-batch", type=int, default=128)
    p.add_argument("--max-batch", type=int, default=1 << 16)
    p.add_argument("--models", default="resnet18,wrn34_10", help="for the largest batch")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--compile", default="off", choices=("off", "default", "reduce-overhead",
                                                         "max-autotune"),
                   help="also time the engine with the PGD step compiled in this mode")
    p.add_argument("--out", default=None, help="also write the figures as JSON here")
    args = p.parse_args(argv)
    if args.smoke:
        args.images, args.batch, args.steps, args.reps = 8, 4, 2, 1
        args.eval_images, args.eval_batch, args.aa_images = 4, 4, 2
        args.start_batch, args.max_batch = 2, 2
    return args


def main(argv=None):
    args = parse(argv)
    device = resolve_device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else \
        (platform.processor() or platform.machine())
    record = {"robustlayers": robustlayers.__version__, "torch": torch.__version__,
              "device": f"{device.type}: {name}", "smoke": args.smoke, "eps": EPS,
              "alpha": ALPHA}
    print(f"robustlayers {record['robustlayers']}, torch {record['torch']}, {record['device']}"
          + ("  [--smoke: tiny sizes, figures meaningless]" if args.smoke else ""))
    a = record["epoch"] = bench_epoch(args, device)
    per_epoch = {k: 50_000 / v for k, v in a["images_per_s"].items()}
    print(f"(a) PGD-{a['steps']} AT epoch, PreAct ResNet-18, {a['images']} images of {a['data']}, "
          f"batch {a['batch']}:")
    for k, v in a["images_per_s"].items():
        print(f"    {k:<22} {v:9.1f} images/s  {per_epoch[k]:8.1f} s per 50 000-image epoch")
    for k, s in a["speedup_vs_textbook"].items():
        print(f"    textbook / {k}: {s['median']:.2f}x (min {s['min']:.2f}, max {s['max']:.2f})")
    b = record["eval"] = bench_eval(args, device)
    print(f"(b) PGD-20 eval: {b['pgd20']['images_per_s']:.1f} images/s "
          f"({b['pgd20']['images']} images)")
    aa = b["autoattack_standard"]
    print("    AutoAttack standard: " + (aa["skipped"] if "skipped" in aa else
                                          f"{aa['images_per_s']:.2f} images/s ({aa['images']} "
                                          f"images; {aa['note']})"))
    record["largest_batch"] = {}
    for model in args.models.split(","):
        c = record["largest_batch"][model] = largest_batch(model, device, args)
        cap = f" (search capped at {c['capped_at']})" if c["capped_at"] else ""
        print(f"(c) largest PGD-{c['steps']} AT batch, {model}: {c['largest_batch']}{cap}")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(record, f, indent=2)
    return record


if __name__ == "__main__":
    main()
