"""``eps-spectrum``: adversarial training at a spectrum of budgets ε (Sridhar et al., "Towards
Alternative Techniques for Improving Adversarial Robustness: Analysis of Adversarial Training at
a Spectrum of Perturbations" — SPECTRUM).

One PGD-AT model per ε of a list (ε = 0: natural training), each trained with α = ε/4 (SPECTRUM
§2.1: α = (ε/8)·2/255 for an ε written in /255 units — the same ε/4). Every model is evaluated
on one fixed test subset: its robust error against PGD_δ-20 with α = δ/10 for a grid of attack
budgets δ (SPECTRUM §3), its convolution-filter norms per layer (§5), the feature-quantisation
grid with BPDA and Transfer-PGD attacks (§4) and, when a CIFAR-10-C folder is given, its accuracy
on common corruptions (§6). The analysis reports ε*(δ) = argmin_ε robust error and tests the
paper's claims: ε* > δ (*overdesign*: train a bit above the attack strength) but the largest ε is
not the best; the first two conv layers' filter norms far above the rest and growing with ε;
quantisation raising BPDA / transfer accuracy for some ε; low-ε models handling corruptions
better.

    from robustlayers.studies import run
    record = run("eps-spectrum", "quick", out="studies/eps-spectrum-quick")
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from robustlayers.errors import ConfigError
from robustlayers.studies.base import CommonOptions, Study, base_config
from robustlayers.studies.tasks import evaluate_task, run_path_of, train_task
from robustlayers.train.settings import setting

PAPER = "SPECTRUM (Sridhar et al.)"
EVAL = "robustlayers.studies.eps_spectrum_eval"
_CHECKPOINT = re.compile(r"^(last|best|epoch-\d+)$")


def _budgets(name: str, text: str | None, *, allow_zero: bool = True) -> list[tuple[str, float]]:
    """``[(label, value)]`` of a comma-separated list of budgets ("0.1", "8/255"), sorted by
    value; ConfigError for an empty list, a repeat, a negative or unreadable entry."""
    from robustlayers.attacks import parse_eps

    out = []
    for token in str(text or "").split(","):
        token = token.strip()
        if not token:
            continue
        try:
            value = float(parse_eps(token))
        except ValueError as err:
            raise ConfigError(f"{name}: budget {token!r}: {err}") from None
        if value < 0 or (value == 0 and not allow_zero):
            lowest = "0" if allow_zero else "a value above 0"
            raise ConfigError(f"{name}: budget {token!r} must be at least {lowest}")
        out.append((token, value))
    if not out:
        raise ConfigError(f"{name} must list at least one budget, e.g. '0,0.05,0.1' or "
                          f"'0,4/255,8/255'; got {text!r}")
    values = [v for _, v in out]
    if len(set(values)) != len(values):
        raise ConfigError(f"{name} repeats a budget: {text!r}")
    return sorted(out, key=lambda item: item[1])


def _numbers(name: str, text: str) -> list[float]:
    try:
        values = [float(t) for t in str(text).split(",") if t.strip()]
    except ValueError:
        raise ConfigError(f"{name} must be comma-separated numbers, got {text!r}") from None
    if not values or any(v <= 0 for v in values):
        raise ConfigError(f"{name} must list numbers above 0, got {text!r}")
    return values


@dataclasses.dataclass
class EpsSpectrumOptions(CommonOptions):
    """Options of the ``eps-spectrum`` study (SPECTRUM)."""

    train_preset: str = setting("fmnist-study", "training preset every run starts from "
                                "(robustlayers train --list-presets); its method is replaced "
                                "by PGD-AT (natural training at ε = 0)")
    eps_list: str = setting("0,0.05,0.1,0.2", "comma-separated training budgets ε, one model "
                            "each (0 = natural training; '8/255' accepted)")
    delta_list: str = setting("0.05,0.1,0.15", "comma-separated attack budgets δ of the robust "
                              "error grid (0 = the clean error)")
    alpha_over_eps: float = setting(0.25, "training PGD step as a fraction of ε (SPECTRUM: "
                                    "(ε/8)·2/255 = ε/4)")
    eval_alpha_over_eps: float | None = setting(None, "per-epoch test PGD step as a fraction "
                                                "of ε (SPECTRUM: 0.1); default: the preset's "
                                                "(the training step)")
    checkpoint: str = setting("last", "checkpoint evaluated: last, best or epoch-N (SPECTRUM "
                              "evaluates a fixed epoch near the best)")
    attack_steps: int = setting(20, "PGD steps of the robust-error grid (SPECTRUM: PGD_δ-20)")
    attack_alpha_over_delta: float = setting(0.1, "PGD step of every study attack as a "
                                             "fraction of δ (SPECTRUM's code: δ/10)")
    eval_images: int | None = setting(1000, "test images of the robust-error grid (a fixed "
                                      "seeded subset, the same for every model; none = all)")
    filter_layers: str = setting("kind:conv & depth:all", "layers of the filter-norm analysis "
                                 "(default: main-path convs, leaving out 1×1 shortcut "
                                 "projections as SPECTRUM's figures do)")
    quant_images: int | None = setting(500, "test images of the quantisation grid (0 = no "
                                       "grid; none = all)")
    quant_placements: str = setting("conv0,layer1", "comma-separated quantiser placements "
                                    "(conv0 = after the first conv, layerN = after stage N)")
    quant_betas: str = setting("8", "comma-separated quantiser scales β of q(x) = ⌊βx⌋/β")
    quant_deltas: str | None = setting(None, "attack budgets δ of the quantisation grid "
                                       "(default: delta_list without 0)")
    corruption_dir: str | None = setting(None, "CIFAR-10-C folder: accuracy on common "
                                         "corruptions across ε (SPECTRUM §6)")
    corruption_images: int | None = setting(None, "images per corruption × severity "
                                            "(default: all 10 000)")
    corruption_severities: str = setting("1,2,3,4,5", "comma-separated corruption severities")
    eval_batch_size: int = setting(256, "batch size of the study's evaluations")

    def eps(self) -> list[tuple[str, float]]:
        return _budgets("eps_list", self.eps_list)

    def deltas(self) -> list[tuple[str, float]]:
        return _budgets("delta_list", self.delta_list)

    def quant_delta_values(self) -> list[float]:
        if self.quant_deltas is None:
            return [v for _, v in self.deltas() if v > 0]
        return [v for _, v in _budgets("quant_deltas", self.quant_deltas, allow_zero=False)]

    def check(self) -> None:
        super().check()
        self.eps(), self.deltas()
        for name in ("alpha_over_eps", "attack_alpha_over_delta", "eval_alpha_over_eps"):
            value = getattr(self, name)
            if value is not None and not 0 < value <= 1:
                raise ConfigError(f"{name} must be in (0, 1], got {value}")
        if not _CHECKPOINT.match(str(self.checkpoint)):
            raise ConfigError(f"checkpoint must be last, best or epoch-N (e.g. epoch-76), got "
                              f"{self.checkpoint!r}")
        for name in ("attack_steps", "eval_batch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be a positive integer, got {getattr(self, name)}")
        for name in ("eval_images", "corruption_images"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ConfigError(f"{name} must be a positive integer or none (all images), "
                                  f"got {getattr(self, name)}")
        if self.quant_images is not None and self.quant_images < 0:
            raise ConfigError(f"quant_images must be 0 (no grid), a positive integer or none "
                              f"(all images), got {self.quant_images}")
        if self.quant_images != 0:
            self._check_quantisation()
        if self.corruption_dir is not None:
            self._check_corruptions()

    def _check_quantisation(self) -> None:
        _numbers("quant_betas", self.quant_betas)
        if not self.quant_delta_values():
            raise ConfigError("the quantisation grid needs an attack budget above 0: set "
                              "quant_deltas, or quant_images=0 to leave the grid out")
        if not [p for p in self.quant_placements.split(",") if p.strip()]:
            raise ConfigError("quant_placements must name at least one placement (conv0, "
                              "layer1, ...), or set quant_images=0")

    def _check_corruptions(self) -> None:
        from robustlayers.evaluate import SEVERITIES
        from robustlayers.train.presets import preset_values

        if preset_values(self.train_preset).get("dataset") != "cifar10":
            raise ConfigError(f"corruption_dir holds CIFAR-10-C: it needs CIFAR-10 runs, and "
                              f"train_preset {self.train_preset!r} trains on "
                              f"{preset_values(self.train_preset).get('dataset')!r}")
        if not Path(self.corruption_dir).is_dir():
            raise ConfigError(f"corruption_dir {self.corruption_dir!r} is not a folder (the "
                              f"CIFAR-10-C .npy files)")
        values = _numbers("corruption_severities", self.corruption_severities)
        if any(v not in SEVERITIES for v in values):
            raise ConfigError(f"corruption_severities must be among 1, 2, 3, 4, 5; got "
                              f"{self.corruption_severities!r}")


def run_config(opts: EpsSpectrumOptions, runs_root: Path, seed: int, eps: float) -> dict:
    """The training config of the ε model: natural training at ε = 0 (the preset's config with
    only the method changed, so it is shared with other studies), else PGD-AT at ε with α =
    ``alpha_over_eps``·ε (and the per-epoch test α when ``eval_alpha_over_eps`` is set)."""
    if eps == 0:
        values = {"method": "natural"}
        if opts.eval_alpha_over_eps is not None:
            from robustlayers.train.presets import preset_values

            preset_eps = preset_values(opts.train_preset).get("eps")
            if preset_eps is not None:
                values["eval_alpha"] = opts.eval_alpha_over_eps * preset_eps
        return base_config(opts, runs_root, seed, **values)
    values = {"method": "pgd-at", "eps": eps, "alpha": opts.alpha_over_eps * eps}
    if opts.eval_alpha_over_eps is not None:
        values["eval_alpha"] = opts.eval_alpha_over_eps * eps
    return base_config(opts, runs_root, seed, **values)


def _tag(label: str, seed: int) -> str:
    return f"eps={label}/s{seed}"


def check_layers(opts: EpsSpectrumOptions, config: dict) -> None:
    """ConfigError, before any run starts, when filter_layers selects no conv layer or a
    quantiser placement names no module of the runs' model."""
    from robustlayers.analysis.quantization import resolve_placement
    from robustlayers.builders import build_model
    from robustlayers.layers import select

    model = build_model(config["model"], config["dataset"],
                        activation=config.get("activation", "relu"))
    modules = dict(model.named_modules())
    try:
        names = select(model, opts.filter_layers).names
    except ValueError as err:
        raise ConfigError(f"filter_layers {opts.filter_layers!r}: {err}") from None
    bad = [n for n in names if getattr(modules[n], "weight", None) is None
           or modules[n].weight.dim() < 3]
    if bad:
        raise ConfigError(f"filter_layers {opts.filter_layers!r} selects layers that are not "
                          f"convolutions: {bad[:4]}; add '& kind:conv'")
    if opts.quant_images == 0:
        return
    for spec in (p.strip() for p in opts.quant_placements.split(",") if p.strip()):
        try:
            resolve_placement(model, spec)
        except ValueError as err:
            raise ConfigError(f"quant_placements {spec!r}: {err}") from None


def plan(opts: EpsSpectrumOptions, runs_root: Path) -> list:
    """Per seed and ε: the training run, its robust-error evaluation, its quantisation grid
    (unless quant_images is 0) and its corruption accuracy (with corruption_dir)."""
    check_layers(opts, run_config(opts, runs_root, opts.seed_list()[0], 0.0))
    tasks = []
    for seed in opts.seed_list():
        for label, eps in opts.eps():
            train = train_task(f"train/{_tag(label, seed)}", run_config(opts, runs_root, seed, eps),
                               label=f"ε = {label}, seed {seed}")
            tasks.append(train)
            tasks.extend(_evaluations(opts, train, _tag(label, seed)))
    return tasks


def _evaluations(opts: EpsSpectrumOptions, train, tag: str) -> list:
    run = str(run_path_of(train))
    common = {"checkpoint": opts.checkpoint, "batch_size": opts.eval_batch_size,
              "device": opts.device}
    data = {"data_dir": opts.data_dir}
    out = [evaluate_task(f"robust/{tag}", f"{EVAL}:robust_errors", dict(
        common, **data, run=run, deltas=[v for _, v in opts.deltas()], steps=opts.attack_steps,
        alpha_over_delta=opts.attack_alpha_over_delta, images=opts.eval_images,
        filter_layers=opts.filter_layers), needs=(train.key,))]
    if opts.quant_images != 0:
        out.append(evaluate_task(f"quant/{tag}", f"{EVAL}:quantisation", dict(
            common, **data, run=run, deltas=opts.quant_delta_values(),
            placements=[p.strip() for p in opts.quant_placements.split(",") if p.strip()],
            betas=_numbers("quant_betas", opts.quant_betas), steps=opts.attack_steps,
            alpha_over_delta=opts.attack_alpha_over_delta, images=opts.quant_images),
            needs=(train.key,)))
    if opts.corruption_dir is not None:
        out.append(evaluate_task(f"corrupt/{tag}", f"{EVAL}:corruptions", dict(
            common, run=run, corruption_dir=str(Path(opts.corruption_dir).resolve()),
            severities=[int(s) for s in _numbers("corruption_severities",
                                                 opts.corruption_severities)],
            images=opts.corruption_images), needs=(train.key,)))
    return out


def _analyse(opts, results):
    from robustlayers.studies.eps_spectrum_analysis import analyse

    return analyse(opts, results)


_PAPER_EPS = ",".join(["0"] + [f"{k}/255" for k in range(1, 13)])

PRESETS = {
    # the natural and PGD-AT (ε = 0.1) runs are the fmnist-study runs other studies share
    "demo": dict(train_preset="fmnist-study", eps_list="0,0.1,0.2",
                 delta_list="0.05,0.1,0.15", attack_steps=10, eval_images=500,
                 quant_images=200, quant_placements="conv0", quant_betas="8",
                 quant_deltas="0.1"),
    # five runs (~1 min each on 2 CPU cores) and small evaluations: a few CPU minutes
    "quick": dict(train_preset="fmnist-study", eps_list="0,0.05,0.1,0.15,0.2",
                  delta_list="0,0.05,0.1,0.15", attack_steps=10, eval_images=1000,
                  quant_images=500, quant_placements="conv0,layer1", quant_betas="8",
                  quant_deltas="0.1"),
    "paper": dict(train_preset="spectrum-resnet", eps_list=_PAPER_EPS,
                  delta_list=_PAPER_EPS, eval_alpha_over_eps=0.1, checkpoint="best",
                  attack_steps=20, eval_images=None, quant_images=None,
                  quant_placements="conv0,layer1,layer2,layer3,layer4", quant_betas="8",
                  quant_deltas="2/255,4/255,6/255,8/255,10/255,12/255"),
}

STUDY = Study(
    name="eps-spectrum",
    paper=PAPER,
    summary="PGD-AT models across a spectrum of training budgets ε, each attacked with PGD_δ-20 "
            "(α = δ/10) over a grid of δ: ε*(δ) = the ε of the lowest robust error and the "
            "overdesign claim ε* > δ (SPECTRUM §3); filter norms per layer across ε (§5); "
            "feature quantisation against BPDA and Transfer-PGD (§4); CIFAR-10-C accuracy "
            "across ε when given (§6).",
    options=EpsSpectrumOptions,
    presets=PRESETS,
    plan=plan,
    analyse=_analyse,
)
