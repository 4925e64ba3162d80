"""Bench: the layer-targeted training methods on Fashion-MNIST with the small CNN, one equal short
budget per run (EARLY's partial AT, RAT_LR / RAT_WP against PGD-AT, fixed-parameter AT).

1. Stage 1: a PGD-AT run (A) and a natural run (N). Stage 2: A1N2, N1A2, A1A2, N1N2 with the cut
   before an early, a middle and a late layer (full stage-2 schedule, fresh optimiser); final
   clean / PGD loss and accuracy of the last epoch on ``--test-size`` test images.
2. PGD-AT vs RAT_LR vs RAT_WP (the small CNN's latter stage: ``block:layer2``; RAT excludes the
   classifier from its stages), attacking in train() mode as RAT's code does; best / last / gap on
   the whole test split.
3. Fixed-parameter AT with ``block:layer1`` and with ``block:layer2`` never updated.

    .venv/bin/python bench/layer_targeted_fmnist.py --out bench/out/layer-targeted
    .venv/bin/python bench/layer_targeted_fmnist.py --train-size 1000 --epochs 1  # smoke

Prints Markdown tables and writes ``results.json`` into ``--out``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

CUTS = {"early": "layer1.3", "middle": "layer2.0", "late": "head.1"}
CODES = ("A1N2", "N1A2", "A1A2", "N1N2")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="bench/out/layer-targeted")
    p.add_argument("--train-size", type=int, default=5000)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--test-size", type=int, default=2000, help="final evaluation of stage 2")
    p.add_argument("--rat-epochs", type=int, default=4, help="epochs of the RAT comparison")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--parts", default="rat,fixed,partial",
                   help="which comparisons to run (finished runs are reused, so two processes "
                        "with different parts share the work)")
    return p.parse_args(argv)


def base(args, out: Path, name: str, **overrides) -> dict:
    config = dict(model="smallcnn", dataset="fashion-mnist", epochs=args.epochs,
                  train_size=args.train_size, batch_size=128, lr=0.05, schedule="cosine",
                  weight_decay=5e-4, eps=0.1, alpha=0.025, steps=5, eval_steps=20,
                  eval_size=500, test_size=args.test_size, seed=0, device="cpu", quiet=True,
                  out=str(out / name), runs_root=str(out))
    config.update(overrides)
    return config


def run(config: dict):
    from robustlayers.runs import RunDir
    from robustlayers.train import train

    path = Path(config["out"])
    if (path / "result.json").is_file() and RunDir.open(path).status == "finished":
        return RunDir.open(path)  # reuse a finished run of an earlier invocation
    started = time.perf_counter()
    result = train(config)
    print(f"  {path.name}: {time.perf_counter() - started:.0f} s", flush=True)
    return result


def final_row(r) -> dict:
    last = r.result["final"]["last"]
    return {k: round(last[k], 4) for k in ("clean_acc", "clean_loss", "robust_acc", "robust_loss")}


def main(argv=None):
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    results: dict = {"settings": vars(args), "partial": {}, "rat": {}, "fixed": {}}
    print("stage 1", flush=True)
    stage1 = {"A": run(base(args, out, "stage1-A", method="pgd-at")),
              "N": run(base(args, out, "stage1-N", method="natural"))}
    results["stage1"] = {k: final_row(v) for k, v in stage1.items()}
    parts = args.parts.split(",")
    print("RAT", flush=True)
    rat = dict(attack_mode="train", test_size=None, eval_size=1000, epochs=args.rat_epochs)
    for method, extra in (("pgd-at", {}), ("rat-lr", {"layers": "block:layer2"}),
                          ("rat-wp", {"layers": "block:layer2"})) if "rat" in parts else ():
        r = run(base(args, out, f"rat-{method}", method=method, method_args=extra,
                     schedule="piecewise", milestones=[0.5, 0.75], **rat))
        final = r.result["final"]
        results["rat"][method] = {"best_epoch": final["best"]["epoch"],
                                  "best": final["best"], "last": final["last"],
                                  "gap": final["best_minus_last"], "n": final["n"]}
    for blocks in ("block:layer1", "block:layer2") if "fixed" in parts else ():
        r = run(base(args, out, f"fixed-{blocks.split(':')[1]}", method="pgd-at", freeze=blocks))
        results["fixed"][blocks] = {**final_row(r), "trainable": r.result["params"]}
    print("partial AT", flush=True)
    for code in CODES if "partial" in parts else ():
        for where, cut in CUTS.items():
            kind = code[0] if code[1] == "1" else code[2]
            r = run(base(args, out, f"{code}-{where}", method="partial-at",
                         init_from=str(stage1[kind].path),
                         method_args={"code": code, "cut": cut}))
            results["partial"][f"{code}@{cut}"] = {**final_row(r),
                                                  "collapsed": r.result["collapsed"]}
    (out / "results.json").write_text(json.dumps(results, indent=2))
    report(results)


def report(results: dict) -> None:
    print("\n| code | cut | clean acc | clean loss | PGD-20 acc | PGD-20 loss | collapsed |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for kind, row in results["stage1"].items():
        print(f"| stage 1 {kind} | – | {row['clean_acc']:.3f} | {row['clean_loss']:.3f} | "
              f"{row['robust_acc']:.3f} | {row['robust_loss']:.3f} | |")
    for key, row in results["partial"].items():
        code, cut = key.split("@")
        print(f"| {code} | {cut} | {row['clean_acc']:.3f} | {row['clean_loss']:.3f} | "
              f"{row['robust_acc']:.3f} | {row['robust_loss']:.3f} | {row['collapsed']} |")
    print("\n| method | best epoch | best PGD-20 | last PGD-20 | gap | best clean | last clean |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for method, row in results["rat"].items():
        print(f"| {method} | {row['best_epoch']} | {row['best']['robust_acc']:.4f} | "
              f"{row['last']['robust_acc']:.4f} | {row['gap']['robust_acc']:+.4f} | "
              f"{row['best']['clean_acc']:.4f} | {row['last']['clean_acc']:.4f} |")
    print("\n| fixed | clean acc | PGD-20 acc | trainable / total params |")
    print("| --- | --- | --- | --- |")
    for blocks, row in results["fixed"].items():
        print(f"| {blocks} | {row['clean_acc']:.3f} | {row['robust_acc']:.3f} | "
              f"{row['trainable']['trainable']} / {row['trainable']['total']} |")


if __name__ == "__main__":
    main()
