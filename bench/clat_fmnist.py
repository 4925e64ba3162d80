"""Bench: CLAT (Gopal et al., "Criticality Leveraged Adversarial Training") on Fashion-MNIST
with the small CNN, equal total epochs for every arm.

1. Base: PGD-AT for ``--base-epochs``. Then, for ``--fine-epochs`` more epochs from its last
   checkpoint: PGD-AT continued (all layers) vs CLAT with critical / random / smallest layers,
   fixed vs dynamic (reselect every epoch), k ∈ {1, 2, 3}, CLAT (Fast), a λ sweep with clean and
   adversarial CE input. Each arm: clean and PGD-20 accuracy (``--test-size`` test images),
   AutoAttack subset (APGD-CE + APGD-T, ``--aa-size`` images), trainable-parameter share.
2. Criticality stability (CLAT §4.4: < 5% of batches change the top-k): ``--repeats`` random
   batches of 10 on the base PGD-AT small CNN and on a random-init ResNet-18 (CIFAR shape).

    .venv/bin/python bench/clat_fmnist.py --out bench/out/clat
    .venv/bin/python bench/clat_fmnist.py --train-size 500 --repeats 5 --quick  # smoke

Prints Markdown tables and writes ``results.json`` into ``--out``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

ARMS = {  # name -> (method, method_args); λ = 1 unless the name says otherwise
    "pgd-at continued": ("pgd-at", {}),
    "clat k=1 critical": ("clat", {"lam": 1.0, "k": 1}),
    "clat k=1 random": ("clat", {"lam": 1.0, "k": 1, "layers": "random"}),
    "clat k=1 smallest": ("clat", {"lam": 1.0, "k": 1, "layers": "smallest"}),
    "clat k=1 fixed": ("clat", {"lam": 1.0, "k": 1, "fixed": True}),
    "clat k=2 critical": ("clat", {"lam": 1.0, "k": 2}),
    "clat k=3 critical": ("clat", {"lam": 1.0, "k": 3}),
    "clat k=1 fast": ("clat", {"lam": 1.0, "k": 1, "inner": "fgsm-rs"}),
    "clat k=1 lam=0.1": ("clat", {"k": 1, "lam": 0.1}),
    "clat k=1 lam=10": ("clat", {"k": 1, "lam": 10.0}),
    "clat k=1 ce=adv": ("clat", {"lam": 1.0, "k": 1, "ce_input": "adv"}),
    "clat k=1 ce=adv lam=0.1": ("clat", {"k": 1, "ce_input": "adv", "lam": 0.1}),
    "clat k=1 ce=adv lam=10": ("clat", {"k": 1, "ce_input": "adv", "lam": 10.0}),
}
QUICK = ("pgd-at continued", "clat k=1 critical", "clat k=1 random")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="bench/out/clat")
    p.add_argument("--train-size", type=int, default=2000)
    p.add_argument("--base-epochs", type=int, default=4)
    p.add_argument("--fine-epochs", type=int, default=2)
    p.add_argument("--test-size", type=int, default=500)
    p.add_argument("--aa-size", type=int, default=100)
    p.add_argument("--repeats", type=int, default=100)
    p.add_argument("--resnet-steps", type=int, default=3, help="PGD steps of the ResNet-18 "
                   "stability attack (CPU budget; the small CNN uses 10)")
    p.add_argument("--quick", action="store_true", help="three arms only")
    p.add_argument("--threads", type=int, default=1)
    return p.parse_args(argv)


def config(args, out: Path, name: str, **overrides) -> dict:
    values = dict(model="smallcnn", dataset="fashion-mnist", train_size=args.train_size,
                  batch_size=128, lr=0.05, schedule="cosine", weight_decay=5e-4, eps=0.1,
                  alpha=0.025, steps=5, eval_steps=20, eval_size=args.test_size,
                  test_size=args.test_size, final_eval=False, seed=0, device="cpu",
                  quiet=True, out=str(out / name), runs_root=str(out))
    values.update(overrides)
    return values


def run(values: dict):
    from robustlayers.runs import RunDir
    from robustlayers.train import train

    path = Path(values["out"])
    if (path / "result.json").is_file() and RunDir.open(path).status == "finished":
        return RunDir.open(path)
    started = time.perf_counter()
    result = train(values)
    print(f"  {path.name}: {time.perf_counter() - started:.0f} s", flush=True)
    return result


def evaluate(run_dir, args) -> dict:
    """Clean, PGD-20 and AutoAttack (APGD-CE + APGD-T) accuracy of the last checkpoint."""
    from robustlayers.attacks import PGD, AutoAttackAdapter, ThreatModel
    from robustlayers.data import load_dataset
    from robustlayers.evaluate import evaluate_model
    from robustlayers.runs import load_run_model

    model, _ = load_run_model(run_dir.path, "last")
    data = load_dataset("fashion-mnist", "test", subset=args.test_size, seed=0)
    threat = ThreatModel("linf", 0.1)
    pgd = evaluate_model(model, data.x, data.y, {"pgd-20": PGD(threat, steps=20, alpha=0.01)})
    aa = evaluate_model(model, data.x[:args.aa_size], data.y[:args.aa_size],
                        {"aa": AutoAttackAdapter(threat, version="custom")})
    return {"clean": round(pgd.clean["accuracy"], 4),
            "pgd20": round(pgd.attacks["pgd-20"].accuracy, 4),
            "aa_subset": round(aa.attacks["aa"].accuracy, 4)}


def share(run_dir) -> dict:
    """Trainable parameters (CLAT Table 6) and the selected layers of a CLAT run."""
    method = run_dir.result["method"]
    history = method.get("history")
    if not history:
        return {"trainable_share": 1.0, "layers": "all"}
    return {"trainable_share": round(history[-1]["trainable_share"], 4),
            "trainable_params": history[-1]["trainable_params"],
            "layers": " / ".join(",".join(h["layers"]) for h in history)}


def stability(args, base_run) -> dict:
    """Top-k stability over ``repeats`` batches of 10 (CLAT §4.4) with the default choices."""
    from robustlayers.analysis import criticality_stability
    from robustlayers.data import load_dataset
    from robustlayers.models import create_model
    from robustlayers.runs import load_run_model

    out = {}
    model, _ = load_run_model(base_run.path, "last")
    data = load_dataset("fashion-mnist", "train", subset=2000, seed=1)
    for k in (1, 2):
        r = criticality_stability(model, data, batch_size=10, repeats=args.repeats, k=k,
                                  eps=0.1, steps=10, seed=0).to_dict()
        out[f"smallcnn pgd-at k={k}"] = _stab_row(r)
    resnet = create_model("resnet18", num_classes=10, seed=0).eval()
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(200, 3, 32, 32, generator=g), torch.randint(0, 10, (200,), generator=g)
    for k in (3,):
        r = criticality_stability(resnet, (x, y), batch_size=10, repeats=args.repeats, k=k,
                                  eps=0.03, steps=args.resnet_steps, seed=0).to_dict()
        out[f"resnet18 random-init k={k} (PGD-{args.resnet_steps})"] = _stab_row(r)
    return out


def _stab_row(r: dict) -> dict:
    depth = {name: i + 1 for i, name in enumerate(r["layers"])}
    return {"modal_top_k": [f"{n} (depth {depth[n]})" for n in r["modal_top_k"]],
            "change_rate": r["change_rate"], "repeats": r["repeats"],
            "histogram": r["layers_changed_histogram"], "c1": r["c1"],
            "mean_time_s": r["mean_time_s"]}


def main(argv=None):
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    results: dict = {"settings": vars(args), "arms": {}}
    print("base PGD-AT", flush=True)
    base_run = run(config(args, out, "base", method="pgd-at", epochs=args.base_epochs))
    results["base"] = evaluate(base_run, args)
    arms = {k: v for k, v in ARMS.items() if not args.quick or k in QUICK}
    for name, (method, margs) in arms.items():
        margs = dict(margs, reselect_every=1) if method == "clat" else margs
        r = run(config(args, out, name.replace(" ", "_").replace("=", ""), method=method,
                       method_args=margs, epochs=args.fine_epochs,
                       init_from=f"{base_run.path}@last"))
        results["arms"][name] = {**evaluate(r, args), **share(r)}
        print(f"  {name}: {results['arms'][name]}", flush=True)
    print("stability", flush=True)
    results["stability"] = stability(args, base_run)
    (out / "results.json").write_text(json.dumps(results, indent=1))
    print_tables(results)


def print_tables(results: dict) -> None:
    s = results["settings"]
    print(f"\n### CLAT on Fashion-MNIST small CNN: {s['base_epochs']} epochs PGD-AT + "
          f"{s['fine_epochs']} epochs of each arm (train {s['train_size']}, eps 0.1)\n")
    print("| arm | clean | PGD-20 | AA (APGD-CE+T) | trainable share | layers |")
    print("| --- | --- | --- | --- | --- | --- |")
    b = results["base"]
    print(f"| base (before) | {b['clean']} | {b['pgd20']} | {b['aa_subset']} | | |")
    for name, r in results["arms"].items():
        print(f"| {name} | {r['clean']} | {r['pgd20']} | {r['aa_subset']} | "
              f"{r['trainable_share']} | {r['layers']} |")
    print("\n| stability | modal top-k | change rate | repeats |")
    print("| --- | --- | --- | --- |")
    for name, r in results["stability"].items():
        print(f"| {name} | {', '.join(r['modal_top_k'])} | {r['change_rate']} | {r['repeats']} |")


if __name__ == "__main__":
    main()
