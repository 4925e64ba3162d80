"""``layer-subsets`` (RAT: Nguyen et al., "On the Intriguing Layer-Wise Properties of Robust
Overfitting in Adversarial Training", §3.1 and §3.3).

Adversarial training with one subset of the network's stages treated differently: its
parameters never updated (fixed-parameter AT, RAT §3.1, Fig. 2), kept at a fixed learning rate
(RAT_LR) or the only ones whose weights AWP perturbs (RAT_WP, Eqs. 8–10) — for every non-empty
subset of the stages or a chosen list, beside standard AT. For each run: the per-epoch test and
train robust accuracy (RAT Figs. 2–4) and best / last / gap on the test split. RAT's claims:
robust overfitting (best − last) shrinks whenever the last stage is left unoptimised; fixing the
latter stages regularises more strongly than fixing the front ones (lower train robust
accuracy); RAT_LR / RAT_WP on the latter stages end with a smaller gap and a higher last robust
accuracy than AT.
"""

from __future__ import annotations

import dataclasses
import itertools
import re
from pathlib import Path

from robustlayers.errors import ConfigError
from robustlayers.studies.base import CommonOptions, Results, Study, base_config, finite
from robustlayers.studies.claims import compare, difference_noise, missing
from robustlayers.studies.tasks import train_task
from robustlayers.train.settings import setting

PAPER = "RAT (Nguyen et al.)"
METHODS = ("fixed", "rat-lr", "rat-wp")
BASELINE = "AT"


@dataclasses.dataclass
class Options(CommonOptions):
    method: str = setting("fixed", "what happens to the subset: fixed (parameters never "
                          "updated, RAT §3.1), rat-lr (fixed learning rate), rat-wp (AWP only "
                          "there)", choices=METHODS)
    stages: str = setting("auto", "comma-separated blocks that make up the stages; auto = the "
                          "residual stages layer1…layerN (RAT: PreAct ResNet-18's four), or every "
                          "block when a model has fewer than three (small CNN: layer1, layer2, "
                          "head)")
    subsets: str = setting("all", "all non-empty subsets of the stages (with method fixed, "
                           "not one that holds the whole model), or a ';'-separated list of "
                           "subsets, stages joined by '+' as 1-based numbers or block names "
                           "(e.g. 4;3+4;1+2)")


def _model(config: dict):
    from robustlayers.builders import build_model
    from robustlayers.data import get_dataset_info

    return build_model(config["model"], get_dataset_info(config["dataset"]),
                       **(config.get("model_kwargs") or {}))


def model_stages(opts: Options, config: dict, model=None) -> list[str]:
    """The stage (block) names of the runs' model (built from ``config`` unless given)."""
    from robustlayers.layers import layer_map

    blocks = list(layer_map(model if model is not None else _model(config)).blocks)
    if opts.stages != "auto":
        stages = [s.strip() for s in opts.stages.split(",") if s.strip()]
        unknown = [s for s in stages if s not in blocks]
        if unknown:
            raise ConfigError(f"stage {unknown[0]!r} is not a block of {config['model']}; its "
                              f"blocks: {', '.join(blocks)}")
        return stages
    residual = [b for b in blocks if re.fullmatch(r"layer\d+", b)]
    return residual if len(residual) >= 3 else blocks


def trainable_subsets(opts: Options, config: dict, model,
                      stages: list[str]) -> list[tuple[str, ...]]:
    """The subsets of ``opts.subsets`` that leave something to train. With ``method=fixed`` a
    subset holding every parameter of the model (the small CNN's stages are all its blocks)
    would train nothing: ``all`` leaves it out, a list naming it is refused."""
    from robustlayers.layers import count_params

    subsets = parse_subsets(opts.subsets, stages)
    if opts.method != "fixed":
        return subsets
    total = count_params(model)
    covers = [s for s in subsets if count_params(model, "block:" + ",".join(s)) == total]
    if covers and opts.subsets.strip().lower() != "all":
        raise ConfigError(f"subset {'+'.join(covers[0])} fixes every parameter of "
                          f"{config['model']} (its stages {', '.join(stages)} hold the whole "
                          f"model): nothing would train; leave it out of --subsets")
    return [s for s in subsets if s not in covers]


def parse_subsets(text: str, stages: list[str]) -> list[tuple[str, ...]]:
    """The subsets ``text`` names, each a tuple of stage names in stage order."""
    if text.strip() == "all":
        return [c for r in range(1, len(stages) + 1) for c in itertools.combinations(stages, r)]
    out = []
    for part in (p.strip() for p in text.split(";")):
        if not part:
            continue
        chosen = set()
        for item in (i.strip() for i in part.split("+")):
            if item.isdigit() and 1 <= int(item) <= len(stages):
                chosen.add(stages[int(item) - 1])
            elif item in stages:
                chosen.add(item)
            else:
                raise ConfigError(f"subset {part!r}: {item!r} is neither a stage number "
                                  f"1..{len(stages)} nor a stage name ({', '.join(stages)})")
        subset = tuple(s for s in stages if s in chosen)
        if subset in out:
            raise ConfigError(f"subset {part!r} is listed twice")
        out.append(subset)
    if not out:
        raise ConfigError(f"subsets {text!r} names no subset; e.g. 'all' or '4;3+4'")
    return out


def subset_label(subset: tuple[str, ...], stages: list[str]) -> str:
    return "[" + ",".join(str(stages.index(s) + 1) for s in subset) + "]"


def _subset_config(opts: Options, subset: tuple[str, ...]) -> dict:
    selection = "block:" + ",".join(subset)
    if opts.method == "fixed":
        return {"freeze": selection}
    return {"method": opts.method, "method_args": {"layers": selection}}


def plan(opts: Options, runs_root: Path) -> list:
    tasks = []
    for seed in opts.seed_list():
        base = base_config(opts, runs_root, seed)
        if not base.get("train_eval_size"):
            base["train_eval_size"] = 500  # RAT Figs. 2-4 need the train robust accuracy
        model = _model(base)
        stages = model_stages(opts, base, model)
        tasks.append(train_task(f"{BASELINE}/s{seed}", dict(base, method="pgd-at"),
                                label="standard AT"))
        for subset in trainable_subsets(opts, base, model, stages):
            label = subset_label(subset, stages)
            config = dict(base, method="pgd-at")
            config.update(_subset_config(opts, subset))
            tasks.append(train_task(f"{opts.method}{label}/s{seed}", config,
                                    label=f"{opts.method} on stages {', '.join(subset)}"))
    return tasks


def _rows(opts: Options, results: Results) -> list[dict]:
    """One row per run: subset, seed, best/last robust and clean accuracy, gap, train robust."""
    rows = []
    for key, task in results.tasks.items():
        name, seed = key.rsplit("/s", 1)
        final = results.final(key) or {}
        best, last = final.get("best") or {}, final.get("last") or {}
        metrics = results.metrics(key)
        rows.append({
            "key": key, "variant": name, "seed": int(seed), "status": "finished" if results.ok(key) else results.status(key),
            "best_epoch": best.get("epoch"), "best_robust": finite(best.get("robust_acc")),
            "last_robust": finite(last.get("robust_acc")),
            "last_clean": finite(last.get("clean_acc")),
            "gap": finite((final.get("best_minus_last") or {}).get("robust_acc")),
            "train_robust_last": finite(metrics[-1].get("train_eval_robust_acc"))
            if metrics else None,
            "collapsed": final.get("collapsed"), "n": final.get("n"),
            "curve_test": [finite(m.get("test_robust_acc")) for m in metrics],
            "curve_train": [finite(m.get("train_eval_robust_acc")) for m in metrics]})
    return rows


def analyse(opts: Options, results: Results) -> dict:
    rows = _rows(opts, results)
    table = {"name": "best-last", "title": "Best, last and gap on the test split",
             "caption": "robust accuracy under the final PGD attack; best = the epoch with the "
                        "highest per-epoch test robust accuracy (RAT picks best by PGD-20)",
             "columns": ["run", "seed", "status", "best epoch", "best robust", "last robust",
                         "gap (best-last)", "last clean", "last train robust", "collapsed"],
             "rows": [[r["variant"], r["seed"], r["status"], r["best_epoch"], r["best_robust"],
                       r["last_robust"], r["gap"], r["last_clean"], r["train_robust_last"],
                       r["collapsed"]] for r in rows]}
    figures = [_curves(rows, "curve_test", "test", "test robust accuracy (per-epoch eval set)"),
               _curves(rows, "curve_train", "train", "train robust accuracy (training subset)")]
    return {"tables": [table], "figures": figures, "claims": claims(opts, rows, results),
            "notes": [f"Stages: {', '.join(_stages_of(opts, results))}; subsets are numbered "
                      f"1..N in that order; with method fixed a subset holding the whole model "
                      f"is left out (nothing would train)."]}


def _stages_of(opts: Options, results: Results) -> list[str]:
    task = next(iter(results.tasks.values()))
    return model_stages(opts, task.spec)


def _curves(rows, key: str, name: str, label: str) -> dict:
    seed = min(r["seed"] for r in rows)
    series = [{"label": r["variant"], "x": list(range(1, len(r[key]) + 1)), "y": r[key]}
              for r in rows if r["seed"] == seed and r[key]]
    return {"name": f"curves-{name}", "title": f"Per-epoch {label} (seed {seed})",
            "caption": f"RAT Figs. 2-4: {label} of every run, one line per stage subset",
            "x_label": "epoch", "y_label": label, "series": series}


def _per_seed(rows, field: str, pick) -> list[float]:
    """Per seed, the mean of ``field`` over the rows ``pick`` selects (seeds with no value
    left out)."""
    out = []
    for seed in sorted({r["seed"] for r in rows}):
        values = [r[field] for r in rows if r["seed"] == seed and pick(r)
                  and r[field] is not None]
        if values:
            out.append(sum(values) / len(values))
    return out


def claims(opts: Options, rows: list[dict], results: Results) -> list[dict]:
    stages = _stages_of(opts, results)
    last, first = subset_label((stages[-1],), stages), subset_label((stages[0],), stages)
    n = next((r["n"] for r in rows if r["n"]), 0)
    mean = lambda xs: sum(xs) / len(xs)  # noqa: E731
    out = []
    subset_rows = [r for r in rows if r["variant"] != BASELINE]
    has_last = lambda r: str(len(stages)) in r["variant"].split("[")[-1]  # noqa: E731
    if opts.method == "fixed":
        text = ("Robust overfitting (best - last robust accuracy) is smaller when the last "
                "stage is left unoptimised than when it is trained, standard AT included "
                "(RAT §3.1, Fig. 2a)")
        a = _per_seed(rows, "gap", lambda r: r["variant"] == BASELINE or not has_last(r))
        b = _per_seed(subset_rows, "gap", has_last)
        if a and b:
            best = mean(_per_seed(rows, "best_robust", lambda r: True))
            noise = difference_noise(best, best, n) if n else None
            out.append(compare("RAT-1", PAPER, text, a, b, relation=">", noise=noise,
                               names=("gap, last stage trained", "gap, last stage fixed")))
        else:
            out.append(missing("RAT-1", PAPER, text, "needs subsets with and without the last "
                               "stage"))
        text = ("Fixing the latter stage regularises more strongly than fixing the front "
                "stage: lower train robust accuracy at the end (RAT §3.1, Fig. 2b)")
        a = _per_seed(rows, "train_robust_last", lambda r: r["variant"].endswith(first))
        b = _per_seed(rows, "train_robust_last", lambda r: r["variant"].endswith(last))
        if a and b:
            tr_n = (results.tasks[rows[0]["key"]].spec.get("train_eval_size") or 500)
            out.append(compare("RAT-2", PAPER, text, a, b, relation=">",
                               noise=difference_noise(mean(a), mean(b), tr_n),
                               names=(f"train robust, fixed {first}",
                                      f"train robust, fixed {last}")))
        else:
            out.append(missing("RAT-2", PAPER, text, f"needs the subsets {first} and {last}"))
        return out
    at = [r for r in rows if r["variant"] == BASELINE]
    latter = [r for r in rows if r["variant"].endswith(last)]
    name = "RAT_LR" if opts.method == "rat-lr" else "RAT_WP"
    for cid, field, relation, text in (
            ("RAT-3", "last_robust", ">", f"{name} on the last stage ends with a higher robust "
                                          f"accuracy than AT (RAT Table 1, last)"),
            ("RAT-4", "gap", "<", f"{name} on the last stage has a smaller best - last gap than "
                                  f"AT (RAT Table 1)")):
        a, b = _per_seed(latter, field, lambda r: True), _per_seed(at, field, lambda r: True)
        if not a or not b:
            out.append(missing(cid, PAPER, text, f"needs AT and {name}{last}"))
            continue
        level = mean(_per_seed(at, "last_robust", lambda r: True) or [0.5])
        out.append(compare(cid, PAPER, text, a, b, relation=relation,
                           noise=difference_noise(level, level, n) if n else None,
                           names=(f"{name}{last}", "AT")))
    return out


STUDY = Study(
    name="layer-subsets", paper=PAPER,
    summary="Adversarial training with a subset of the stages fixed (or regularised with "
            "RAT_LR / RAT_WP), over all non-empty subsets: per-epoch train and test robust "
            "accuracy and best / last / gap, testing whether robust overfitting lives in the "
            "latter stages.",
    options=Options,
    presets={
        "demo": {"train_preset": "fmnist-study", "subsets": "3"},
        "quick": {"train_preset": "fmnist-study", "epochs": 10, "train_size": 2000,
                  "subsets": "all"},
        "paper": {"train_preset": "rat-cifar10", "subsets": "all"},
    },
    plan=plan, analyse=analyse)
