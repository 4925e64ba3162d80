"""Study ``clat``: CLAT (Gopal et al., "Boosting Adversarial Robustness with CLAT:
Criticality-Leveraged Adversarial Training" / "Criticality Leveraged Adversarial Training (CLAT)
for Boosted Performance via Parameter Efficiency").

Plan, per seed: a base PGD-AT run of E₁ epochs (the training preset's epochs), then from its
last checkpoint, for E₂ more epochs each (equal total epochs, CLAT §4.1: 50 + 50):

* ``baseline`` — PGD-AT continued on every layer (the paper's "PGD-AT" row of Table 1);
* ``clat`` — CLAT (Algorithm 1, Eq. 9) on the k most critical layers;
* the ablations asked for (CLAT §4.3, Tables 7, 14, 20, App. D): ``random`` layers,
  ``smallest`` criticality, ``fixed`` (non-dynamic) layers, ``fast`` (CLAT (Fast): FGSM-RS
  inner step, compared with Fast-AT continued from the same base), and a k sweep (Fig. 3);
* a pre-training-epochs axis (Fig. 2): PGD-AT for E epochs then CLAT for E₁ + E₂ − E epochs;
* an evaluation of the criticality stability of the base model (§4.4: the top-k set differs
  in < 5% of random batches of 10).

The analysis (:mod:`robustlayers.studies.clat_analysis`) tabulates clean and robust accuracy
(best and last) with the trainable-parameter share of every variant (CLAT Table 6) and decides
the papers' claims from the measured numbers.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from robustlayers.errors import ConfigError
from robustlayers.studies.base import CommonOptions, Study, base_config
from robustlayers.studies.tasks import evaluate_task, run_path_of, train_task
from robustlayers.train.settings import setting

PAPER = "CLAT (Gopal et al.)"
ABLATIONS = {
    "random": ({"layers": "random"}, "CLAT on k random layers (Table 7)"),
    "smallest": ({"layers": "smallest"}, "CLAT on the k least critical layers (Table 20)"),
    "fixed": ({"fixed": True}, "CLAT with layers chosen once (non-dynamic, Table 14)"),
    "fast": ({"inner": "fgsm-rs"}, "CLAT (Fast): FGSM-RS inner step (Table 1)"),
}
STABILITY_FN = "robustlayers.studies.clat:criticality_stability_of_run"
STABILITY_POOL = 2000
"""Training images the stability check draws its random batches from."""


def _int_list(name: str, text: str, low: int) -> list[int]:
    try:
        values = [int(v) for v in str(text or "").split(",") if v.strip()]
    except ValueError:
        raise ConfigError(f"{name} must be comma-separated integers, got {text!r}") from None
    if any(v < low for v in values) or len(set(values)) != len(values):
        raise ConfigError(f"{name} must list distinct integers >= {low}, got {text!r}")
    return values


@dataclasses.dataclass
class CLATOptions(CommonOptions):
    """What the ``clat`` study trains: the base PGD-AT run (``epochs``: its E₁ epochs) and,
    from it, E₂ = ``finetune_epochs`` of continued PGD-AT, CLAT and the chosen ablations."""

    epochs: int | None = setting(None, "epochs E1 of the base PGD-AT run (default: the "
                                 "training preset's; CLAT: 50)")
    finetune_epochs: int = setting(2, "epochs E2 of CLAT, of continued PGD-AT and of every "
                                   "ablation after the base run (CLAT: 50 after 50)")
    k: int | None = setting(None, "layers CLAT trains (default: CLAT's per architecture, "
                            "ResNet-18 1, small CNN 1)")
    lam: float | None = setting(None, "λ of CLAT Eq. 9 (default: the clat method's 0.1)")
    reselect_every: int | None = setting(None, "CLAT reselects its layers every N epochs "
                                         "(default: the method's 10, as in CLAT)")
    ablations: str = setting("", "comma-separated ablations, one run each: random (random "
                             "layers), smallest (least critical layers), fixed (layers chosen "
                             "once), fast (FGSM-RS inner step, plus Fast-AT continued)")
    k_sweep: str = setting("", "comma-separated further k values, one CLAT run each "
                           "(CLAT Fig. 3)")
    pretrain_epochs: str = setting("", "comma-separated other base lengths E: PGD-AT for E "
                                   "epochs, then CLAT for E1 + E2 - E (CLAT Fig. 2)")
    stability_repeats: int = setting(100, "random batches of the criticality stability check "
                                     "on the base model (CLAT: 1000; 0: no check)")
    stability_batch: int = setting(10, "images per batch of the stability check (CLAT: 10)")

    def ablation_list(self) -> list[str]:
        names = [a.strip().lower() for a in str(self.ablations or "").split(",") if a.strip()]
        unknown = [a for a in names if a not in ABLATIONS]
        if unknown:
            raise ConfigError(f"unknown clat ablation {unknown[0]!r}; valid choices: "
                              f"{', '.join(ABLATIONS)}")
        if len(set(names)) != len(names):
            raise ConfigError(f"ablations must not repeat a name, got {self.ablations!r}")
        return names

    def k_list(self) -> list[int]:
        return _int_list("k_sweep", self.k_sweep, 1)

    def pretrain_list(self) -> list[int]:
        return _int_list("pretrain_epochs", self.pretrain_epochs, 1)

    def check(self) -> None:
        super().check()
        self.ablation_list()
        self.k_list()
        self.pretrain_list()
        for name, low in (("finetune_epochs", 1), ("k", 1), ("reselect_every", 1),
                          ("stability_repeats", 0), ("stability_batch", 1)):
            value = getattr(self, name)
            if value is not None and value < low:
                raise ConfigError(f"{name} must be an integer >= {low}, got {value}")
        if self.lam is not None and self.lam < 0:
            raise ConfigError(f"lam (λ) must be >= 0, got {self.lam}")
        from robustlayers.train.methods.clat import CLATSettings

        every = self.reselect_every or CLATSettings().reselect_every
        if "fixed" in self.ablation_list() and every >= self.finetune_epochs:
            raise ConfigError(
                f"the fixed ablation needs CLAT to reselect within its {self.finetune_epochs} "
                f"fine-tuning epochs: reselect_every ({every}) must be smaller than "
                f"finetune_epochs, else fixed and dynamic CLAT are the same run")


@dataclasses.dataclass(frozen=True)
class Variant:
    """One stage-2 run of every seed: its name (task key ``NAME/sSEED``), what trains and from
    which base (``base``: the base run's name, ``base_epochs``: its length E)."""

    name: str
    label: str
    method: str
    method_args: dict
    epochs: int
    base: str = "base"
    base_epochs: int = 0


def base_epochs(opts) -> int:
    """E₁: the base run's epochs (``epochs`` or the training preset's)."""
    from robustlayers.train.presets import preset_values

    return int(opts.epochs or preset_values(opts.train_preset).get("epochs") or 1)


def main_k(opts) -> int:
    """The k of the main CLAT run: ``k``, or CLAT's default for the preset's model."""
    from robustlayers.train.methods.clat import DEFAULT_K, FALLBACK_K
    from robustlayers.train.presets import preset_values

    return opts.k or DEFAULT_K.get(preset_values(opts.train_preset).get("model"), FALLBACK_K)


def clat_args(opts, **extra) -> dict:
    """The clat method settings of a CLAT variant (only the values the options set)."""
    args = {name: getattr(opts, name) for name in ("k", "lam", "reselect_every")
            if getattr(opts, name) is not None}
    return {**args, **extra}


def variants(opts) -> list[Variant]:
    """Every stage-2 run of one seed, baseline and CLAT first."""
    e1, e2 = base_epochs(opts), opts.finetune_epochs
    out = [Variant("baseline", "PGD-AT continued", "pgd-at", {}, e2, base_epochs=e1),
           Variant("clat", "CLAT", "clat", clat_args(opts), e2, base_epochs=e1)]
    for name in opts.ablation_list():
        args, label = ABLATIONS[name]
        if name == "fast":
            out.append(Variant("fast-at", "Fast-AT continued", "fast-at", {}, e2,
                               base_epochs=e1))
        out.append(Variant(name, label, "clat", clat_args(opts, **args), e2, base_epochs=e1))
    k_main = main_k(opts)
    for k in opts.k_list():
        if k != k_main:
            out.append(Variant(f"k={k}", f"CLAT k={k}", "clat",
                               dict(clat_args(opts), k=k), e2, base_epochs=e1))
    for e in opts.pretrain_list():
        if e == e1:
            continue
        if e >= e1 + e2:
            raise ConfigError(f"pretrain_epochs {e} leaves no CLAT epochs: each must be "
                              f"smaller than the total {e1 + e2} (E1 {e1} + E2 {e2})")
        out.append(Variant(f"clat-after-{e}", f"CLAT after {e} base epochs", "clat",
                           clat_args(opts), e1 + e2 - e, base=f"base-{e}", base_epochs=e))
    return out


def key(name: str, seed: int) -> str:
    return f"{name}/s{seed}"


def plan(opts: CLATOptions, runs_root: Path) -> list:
    """Base runs, stage-2 variants from their last checkpoints, stability evaluations."""
    tasks = []
    all_variants = variants(opts)
    _check_k(opts, all_variants, runs_root)
    for seed in opts.seed_list():
        bases = {"base": train_task(key("base", seed), base_config(opts, runs_root, seed,
                                                                   method="pgd-at"),
                                    label=f"PGD-AT base, {base_epochs(opts)} epochs")}
        for v in all_variants:
            if v.base not in bases:
                bases[v.base] = train_task(key(v.base, seed), base_config(
                    opts, runs_root, seed, method="pgd-at", epochs=v.base_epochs),
                    label=f"PGD-AT base, {v.base_epochs} epochs")
        tasks += list(bases.values())
        for v in all_variants:
            base = bases[v.base]
            config = base_config(opts, runs_root, seed, method=v.method, epochs=v.epochs,
                                 init_from=f"{run_path_of(base)}@last")
            if v.method_args:
                config["method_args"] = dict(v.method_args)
            tasks.append(train_task(key(v.name, seed), config, needs=(base.key,),
                                    label=f"{v.label}, {v.epochs} epochs"))
        if opts.stability_repeats:
            base = bases["base"]
            tasks.append(evaluate_task(
                key("stability", seed), STABILITY_FN,
                {"run": str(run_path_of(base)), "k": opts.k, "repeats": opts.stability_repeats,
                 "batch_size": opts.stability_batch, "seed": seed},
                needs=(base.key,), label="criticality stability of the base model"))
    return tasks


def _check_k(opts, all_variants, runs_root) -> None:
    """Every k fits the model's candidate layers (before any work)."""
    ks = [v.method_args.get("k") for v in all_variants if v.method == "clat"]
    ks = [k for k in ks if k is not None]
    if not ks:
        return
    config = base_config(opts, runs_root, 0)
    n = candidate_count(config["model"], config["dataset"])
    if max(ks) > n:
        raise ConfigError(f"k={max(ks)} but {config['model']} has only {n} candidate layers "
                          f"for CLAT (depth layers less the classifier)")


def candidate_count(model: str, dataset: str) -> int:
    """CLAT's candidate layers of ``model``: its depth layers less the classifier."""
    from robustlayers.builders import build_model
    from robustlayers.data import get_dataset_info
    from robustlayers.layers import layer_map

    info = get_dataset_info(dataset)
    return len(layer_map(build_model(model, info, seed=0), info.shape).depth_layers) - 1


def criticality_stability_of_run(run: str, k: int | None, repeats: int, batch_size: int,
                                 seed: int, which: str = "last") -> dict:
    """CLAT §4.4 on a run's model: criticality (Eqs. 2–3) on ``repeats`` random batches of
    ``batch_size`` training images, δ from the run's own training PGD (ε, α, steps), k as CLAT
    trains (default per architecture); returns the stability record with what produced it."""
    from robustlayers.analysis import criticality_stability
    from robustlayers.data import load_dataset
    from robustlayers.runs import RunDir, load_run_model
    from robustlayers.train.methods.clat import DEFAULT_K, FALLBACK_K

    model, config = load_run_model(run, which)
    result = RunDir.open(run).result or {}
    eps = float(result["threat"]["eps"])
    data = load_dataset(config["dataset"], "train", data_dir=config.get("data_dir"),
                        subset=STABILITY_POOL, seed=seed)
    k = k or DEFAULT_K.get(config["model"], FALLBACK_K)
    record = criticality_stability(model, data, batch_size=batch_size, repeats=repeats, k=k,
                                   seed=seed, eps=eps, steps=int(config["steps"]),
                                   alpha=float(result["alpha"]),
                                   label=f"{Path(run).name}@{which}").to_dict()
    record.update(run=str(run), checkpoint=which, data={"dataset": config["dataset"],
                  "split": "train", "pool": STABILITY_POOL, "pool_seed": seed})
    return record


def _analyse(opts, results):
    from robustlayers.studies.clat_analysis import analyse

    return analyse(opts, results)


PRESETS = {
    "demo": {"train_preset": "fmnist-study", "finetune_epochs": 2, "reselect_every": 1,
             "stability_repeats": 50},
    "quick": {"train_preset": "fmnist-study", "finetune_epochs": 2, "reselect_every": 1,
              "ablations": "random,smallest,fixed", "k_sweep": "2",
              "pretrain_epochs": "2", "stability_repeats": 100},
    "paper": {"train_preset": "clat-pretrain", "finetune_epochs": 50, "reselect_every": 10,
              "ablations": "random,smallest,fixed,fast", "k_sweep": "1,2,3,5",
              "pretrain_epochs": "70,90", "stability_repeats": 1000},
}

STUDY = Study(
    name="clat", paper=PAPER,
    summary=("Base PGD-AT, then at equal total epochs: PGD-AT continued vs CLAT (train only "
             "the k most critical layers on CE + λ·feature difference), with ablations "
             "(random / smallest / fixed layers, k, Fast inner step, base length), the share "
             "of trainable parameters and the stability of the critical set over batches."),
    options=CLATOptions, presets=PRESETS, plan=plan, analyse=_analyse)
