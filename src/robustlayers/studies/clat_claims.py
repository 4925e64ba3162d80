"""The claims of CLAT (Gopal et al., "Boosting Adversarial Robustness with CLAT:
Criticality-Leveraged Adversarial Training") that the ``clat`` study tests, each decided from the
measured numbers (last checkpoint, equal total epochs): a difference no larger than its noise —
the seed-to-seed spread with two or more seeds, else two binomial standard errors of the
difference on the test images — is inconclusive; a missing number makes a claim inconclusive.
"""

from __future__ import annotations

from robustlayers.studies.claims import (
    FAILS, HOLDS, INCONCLUSIVE, accuracy_noise, claim, combine, compare, difference_noise,
    missing,
)
from robustlayers.studies.clat import PAPER, base_epochs, key, main_k, variants
from robustlayers.studies.clat_analysis import mean, per_seed, share_of, test_images

SHARE_LIMIT = 0.06
"""CLAT Table 6: CLAT trains 2.7% (WRN-34-10) to 6.0% (VGG-19) of the parameters."""
CHANGE_LIMIT = 0.05
"""CLAT §4.4: the top-k critical set differs in less than 5% of random batches."""


def versus(opts, results, claim_id: str, text: str, a: str, b: str,
           metric: str = "robust_acc") -> dict:
    """Claim "variant ``a`` beats variant ``b`` on ``metric`` (last checkpoint)"."""
    va, vb = per_seed(opts, results, a, metric), per_seed(opts, results, b, metric)
    ma, mb = mean(va), mean(vb)
    n = test_images(opts, results)
    noise = difference_noise(ma, mb, n) if ma is not None and mb is not None and n else None
    word = metric.replace("_acc", " accuracy")
    return compare(claim_id, PAPER, f"{text} ({word}, last checkpoint)", va, vb,
                   relation=">", noise=noise, names=(a, b))


def k_optimum(opts, results) -> dict | None:
    """CLAT Fig. 3 / Fig. 7: robust and clean accuracy peak at the same number of layers k."""
    k0 = main_k(opts)
    ks = sorted({k0, *opts.k_list()})
    if len(ks) < 2:
        return None
    text = ("Robust and clean accuracy are best at the same number of CLAT layers k "
            "(Fig. 3 and Fig. 7)")
    names = {k: "clat" if k == k0 else f"k={k}" for k in ks}
    robust = {k: mean(per_seed(opts, results, names[k], "robust_acc")) for k in ks}
    clean = {k: mean(per_seed(opts, results, names[k], "clean_acc")) for k in ks}
    if any(v is None for v in [*robust.values(), *clean.values()]):
        return missing("k-optimum", PAPER, text, "a k-sweep run is missing")
    n = test_images(opts, results)
    r_best = max(ks, key=robust.__getitem__)
    c_best = max(ks, key=clean.__getitem__)
    measured = {"k": ks, "robust": [robust[k] for k in ks], "clean": [clean[k] for k in ks],
                "robust best k": r_best, "clean best k": c_best}
    threshold = "argmax_k robust = argmax_k clean"
    if r_best == c_best:
        others = [k for k in ks if k != r_best]
        clear = all(robust[r_best] - robust[k] > difference_noise(robust[r_best], robust[k], n)
                    for k in others)
        return claim("k-optimum", PAPER, text, HOLDS if clear else INCONCLUSIVE, measured,
                     threshold, "same k, and its robust accuracy beats every other k by more "
                                "than the noise (2 binomial standard errors of the difference)")
    apart = (robust[r_best] - robust[c_best] > difference_noise(robust[r_best], robust[c_best], n)
             and clean[c_best] - clean[r_best] > difference_noise(clean[c_best], clean[r_best], n))
    return claim("k-optimum", PAPER, text, FAILS if apart else INCONCLUSIVE, measured, threshold,
                 "different k: does not hold when each leads the other by more than the noise")


def pretrain_stages(opts, results) -> dict | None:
    """CLAT Fig. 2: CLAT after any length of base AT beats PGD-AT at equal total epochs."""
    e1 = base_epochs(opts)
    splits = {e1: "clat", **{v.base_epochs: v.name for v in variants(opts)
                             if v.name.startswith("clat-after-")}}
    if len(splits) < 2:
        return None
    parts = [versus(opts, results, f"{splits[e]}-{metric}", f"CLAT after {e} base epochs",
                    splits[e], "baseline", metric)
             for e in sorted(splits) for metric in ("robust_acc", "clean_acc")]
    return combine("pretrain-stages", PAPER, "Including CLAT at any stage of training gives "
                   "higher clean and robust accuracy than PGD-AT at equal total epochs (Fig. 2)",
                   parts, "every split: CLAT - PGD-AT continued > 0, robust and clean")


def stability(opts, results) -> dict | None:
    if not opts.stability_repeats:
        return None
    text = ("The top-k critical layers are stable over random batches of 10: the set changes "
            "in < 5% of batches (§4.4)")
    records = [results.evaluation(key("stability", s)) for s in opts.seed_list()]
    records = [r for r in records if r]
    if not records:
        return missing("stability", PAPER, text, "no stability evaluation finished")
    rates = [float(r["change_rate"]) for r in records]
    rate, batches = mean(rates), sum(int(r["repeats"]) for r in records)
    noise = accuracy_noise(rate, batches)
    measured = {"change rate": rate, "per seed": rates, "batches": batches, "noise": noise,
                "k": records[0]["k"], "batch size": records[0]["batch_size"]}
    verdict = INCONCLUSIVE if abs(rate - CHANGE_LIMIT) <= noise else \
        HOLDS if rate < CHANGE_LIMIT else FAILS
    return claim("stability", PAPER, text, verdict, measured, f"change rate < {CHANGE_LIMIT}",
                 "|rate - 0.05| must exceed the noise (2 binomial standard errors over all "
                 "batches)")


def trainable_share(opts, results) -> dict:
    text = ("CLAT trains a small share of the parameters (Table 6: 2.7%-6.0%; "
            "\"fewer than 4%\" in the abstract)")
    shares = [share_of(results, key("clat", s)) for s in opts.seed_list()]
    shares = [s for s in shares if s and s["share"] is not None]
    if not shares:
        return missing("trainable-share", PAPER, text, "no CLAT run finished")
    worst = max(shares, key=lambda s: s["share"])
    measured = {"share": worst["share"], "trainable": worst["trainable"],
                "total": worst["total"], "layers": worst["layers"]}
    return claim("trainable-share", PAPER, text, HOLDS if worst["share"] <= SHARE_LIMIT
                 else FAILS, measured, f"largest share over reselections <= {SHARE_LIMIT}",
                 "a parameter count, exact: no noise")


def claims(opts, results) -> list[dict]:
    out = [versus(opts, results, "clat-robust", "CLAT improves robust accuracy over the base "
                  "AT continued for the same epochs (Table 1: ResNet-18 PGD-10 53.63 -> 55.37)",
                  "clat", "baseline"),
           versus(opts, results, "clat-clean", "CLAT improves clean accuracy over the base AT "
                  "continued for the same epochs (Table 1: ResNet-18 81.46 -> 83.89)",
                  "clat", "baseline", "clean_acc")]
    ablations = opts.ablation_list()
    for name, claim_id, text in (
            ("random", "critical-vs-random", "Critical layers beat random layers (Table 7: "
             "ResNet-18 PGD-10 55.37 vs 51.03)"),
            ("smallest", "critical-vs-smallest", "The most critical layers beat the least "
             "critical (Table 20: ResNet-18 PGD-10 55.37 vs 54.01)"),
            ("fixed", "dynamic-vs-fixed", "Dynamic reselection beats layers fixed once "
             "(Table 14, CIFAR-100 ResNet-50 PGD-10 36.23 vs 31.89)")):
        if name in ablations:
            out.append(versus(opts, results, claim_id, text, "clat", name))
    if "fast" in ablations:
        out.append(versus(opts, results, "fast-vs-fast-at", "CLAT (Fast) beats Fast-AT "
                          "(Table 1: PreAct ResNet-18 PGD-10 45.55 -> 49.62)", "fast",
                          "fast-at"))
    out += [c for c in (k_optimum(opts, results), pretrain_stages(opts, results),
                        stability(opts, results)) if c]
    out.append(trainable_share(opts, results))
    return out
