"""Bench: the six base training methods on Fashion-MNIST with the small CNN, same short schedule.

For natural, PGD-AT, TRADES, MART, AWP and Fast-AT: final clean accuracy (full test set), PGD-20
accuracy (fixed subset of test images, ε = 0.1) and training throughput (images/s, including the
attack) on the CPU with a fixed number of threads. Prints a Markdown table and writes JSON.

    .venv/bin/python bench/train_methods.py                 # defaults: ~5 min on 2 idle cores
    .venv/bin/python bench/train_methods.py --train-size 1000 --epochs 1 --eval-size 200  # smoke

Throughput is wall-clock (noisy on a shared machine); "CPU s" is the process CPU time of the
whole method run (training + final evaluation), steadier under contention; the 1-minute load
average before → after each method is printed so contended rows can be spotted.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import torch

METHODS = ("natural", "pgd-at", "trades", "mart", "awp", "fast-at")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument("--train-size", type=int, default=10000)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--steps", type=int, default=5, help="training PGD steps")
    p.add_argument("--eps", type=float, default=0.1)
    p.add_argument("--alpha", type=float, default=0.025)
    p.add_argument("--eval-size", type=int, default=1000, help="test images attacked")
    p.add_argument("--eval-steps", type=int, default=20)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default="bench/results/train_methods.json")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    from robustlayers.provenance import environment
    from robustlayers.train import TrainConfig, train

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, method in enumerate(args.methods.split(",")):
            config = TrainConfig(
                model="smallcnn", dataset="fashion-mnist", method=method, epochs=args.epochs,
                batch_size=args.batch_size, lr=args.lr, schedule="cosine", eps=args.eps,
                alpha=args.alpha, steps=args.steps, eval_steps=args.eval_steps,
                eval_size=args.eval_size, eval_every=args.epochs, train_size=args.train_size,
                seed=args.seed, device="cpu", quiet=True, out=f"{tmp}/{i}-{method}", runs_root=tmp)
            started, cpu, load = time.perf_counter(), time.process_time(), os.getloadavg()[0]
            run = train(config)
            metrics = run.metrics()
            last = metrics[-1]
            train_s = sum(r["train_seconds"] for r in metrics)
            rows.append({
                "method": method, "clean_acc": last["test_clean_acc"],
                "pgd20_acc": last["test_robust_acc"], "train_adv_acc": last["train_adv_acc"],
                "images_per_s": args.train_size * args.epochs / train_s,
                "train_seconds": train_s, "eval_seconds": last["eval_seconds"],
                "total_seconds": time.perf_counter() - started,
                "cpu_seconds": time.process_time() - cpu,
                "loadavg_1min": [load, os.getloadavg()[0]]})
            print(f"{method}: done in {rows[-1]['total_seconds']:.0f}s", flush=True)

    print(f"\nFashion-MNIST, smallcnn, {args.train_size} train images x {args.epochs} epochs, "
          f"batch {args.batch_size}, SGD lr {args.lr} cosine, eps {args.eps}, PGD-{args.steps} "
          f"(alpha {args.alpha}) for training; clean on 10000 test images, PGD-"
          f"{args.eval_steps} on {args.eval_size} (after the last epoch); {args.threads} "
          f"threads\n")
    print("| method | clean acc | PGD-20 acc | train adv acc | train images/s | train s "
          "| CPU s (all) | load 1 min |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        adv = "—" if r["train_adv_acc"] is None else f"{r['train_adv_acc']:.3f}"
        print(f"| {r['method']} | {r['clean_acc']:.3f} | {r['pgd20_acc']:.3f} | {adv} | "
              f"{r['images_per_s']:.0f} | {r['train_seconds']:.0f} | {r['cpu_seconds']:.0f} | "
              f"{r['loadavg_1min'][0]:.1f}→{r['loadavg_1min'][1]:.1f} |")
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"args": vars(args), "rows": rows, "environment": environment()},
                              indent=2))
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
