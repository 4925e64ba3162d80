"""Study ``partial-at``: the partial adversarial training experiment of Bakiskan, Cekic & Madhow,
"Early Layers Are More Important For Adversarial Robustness" (EARLY §3.1, §4).

Stage 1 trains the whole network twice, naturally (N) and with PGD-AT (A); stage 2 starts from
one of them, freezes one side of a cut, re-initialises the other side and retrains it, N or A,
with the same schedule again (method ``partial-at``, codes A1N2 … N2N1; single-layer codes
NsNr NsAr AsAr AsNr retrain one layer). A cut comes before a layer of the layer map — every
Conv2d, BatchNorm2d and Linear in execution order, 41 layers for EARLY's ResNet-18 —
``--cuts all`` takes every layer, ``every:N`` every N-th from the first, or a comma-separated list
of layer names. For a code that retrains the *earlier* part (X2Y1) the cut before the first
layer retrains nothing and is skipped.

*Number of adversarially trained layers* (the x-axis of EARLY Figs. 2–4): the layers whose
weights were last trained adversarially — the A side of the code, whether it is the frozen
stage-1 side or the side retrained in stage 2 — counted in the layer map. With L layers and the
cut before layer c (0-based, so c layers lie before it): A1N2 has c, N2A1 and N1A2 have L − c,
A1A2 and A2A1 have L, N1N2 and N2N1 none; a single-layer code XsYr has [X = A] + (L − 1)·[Y = A].

The analysis (:mod:`robustlayers.studies.partial_at_analysis`) gives EARLY's tables (clean and
adversarial loss and accuracy per cut and code, collapsed runs marked), its figures (the
one-letter differences |A1A2−A1N2|, |N1N2−A1N2|, |N2N1−N2A1|, |N2A1−A2A1| against the number of
adversarially trained layers, in loss and in accuracy; |AsAr−NsAr| per retrained layer) and
verdicts (:mod:`robustlayers.studies.partial_at_claims`) on EARLY's claims: adversarial early
layers beat adversarial late layers at the middle cut (A1N2 vs N2A1, A2N1 vs N1A2; in accuracy
and in loss); natural early layers keep adversarial retraining of the rest from recovering
robustness (N1A2 vs A1A2 at the deepest cut); the earlier half closes most of the adversarial
loss gap (N1N2 − A1N2 > A1N2 − A1A2); the loss shows the first layers' effect where accuracy
is still near zero; one early layer retrained naturally costs more robustness than a late one.
With one seed the loss claims need the loss noise measured by ``loss_spread`` evaluations.
"""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path

from robustlayers.errors import ConfigError
from robustlayers.studies.base import CommonOptions, Study, base_config
from robustlayers.studies.partial_at_analysis import (
    adversarial_layers,
    loss_claim_runs,
    noise_key,
    stage1_key,
    stage2_key,
)
from robustlayers.studies.partial_at_analysis import analyse as analyse_grid
from robustlayers.studies.tasks import evaluate_task, run_path_of, train_task
from robustlayers.train.methods.partial import KIND_METHOD, SINGLE_CODES, SPLIT_CODES, parse_code
from robustlayers.train.settings import setting

PAPER = "EARLY (Bakiskan, Cekic & Madhow, Early Layers Are More Important For Adversarial " \
        "Robustness)"
CODE_GROUPS = {"all": SPLIT_CODES, "split": SPLIT_CODES, "single": SINGLE_CODES,
               "everything": SPLIT_CODES + SINGLE_CODES}


@dataclasses.dataclass
class PartialATOptions(CommonOptions):
    """Options of the ``partial-at`` study (EARLY §3.1)."""

    train_preset: str = setting("fmnist-study", "training preset of both stages (stage 2 runs "
                                "the same schedule again, as EARLY does)")
    codes: str = setting("all", "comma-separated partial-AT codes (A1N2 N1A2 A1A2 N1N2 A2N1 "
                         "N2A1 A2A1 N2N1; single-layer NsNr NsAr AsAr AsNr), or all (the 8 "
                         "split codes), single (the 4 single-layer codes), everything")
    cuts: str = setting("all", "where stage 2 cuts: all (before every layer of the layer map), "
                        "every:N (every N-th layer from the first), or comma-separated layer "
                        "names; single-layer codes retrain each of these layers")
    loss_noise: bool = setting(True, "with one seed, measure the standard error of the "
                               "per-image losses of the runs the loss claims compare (one more "
                               "evaluation of each), so those claims get a verdict")

    def code_list(self) -> list[str]:
        """The chosen codes, canonical spelling, in EARLY's order, without duplicates."""
        canonical = {c.lower(): c for c in SPLIT_CODES + SINGLE_CODES}
        chosen: list[str] = []
        for part in str(self.codes).split(","):
            part = part.strip()
            if not part:
                continue
            if part.lower() in CODE_GROUPS:
                chosen += CODE_GROUPS[part.lower()]
            elif part.lower() in canonical:
                chosen.append(canonical[part.lower()])
            else:
                raise ConfigError(f"partial-at study: unknown code {part!r} in codes; valid: "
                                  f"{', '.join(SPLIT_CODES + SINGLE_CODES)}, or "
                                  f"{', '.join(CODE_GROUPS)}")
        if not chosen:
            raise ConfigError("partial-at study: codes is empty; give at least one code, e.g. "
                              "A1N2,N1N2")
        order = SPLIT_CODES + SINGLE_CODES
        return sorted(set(chosen), key=order.index)

    def check(self) -> None:
        super().check()
        self.code_list()
        parse_cuts_syntax(self.cuts)


def parse_cuts_syntax(text: str) -> tuple[str, object]:
    """("all", None), ("every", N) or ("list", [names]) from ``--cuts``; ConfigError otherwise."""
    text = str(text).strip()
    if text.lower() == "all":
        return "all", None
    if text.lower().startswith("every:"):
        value = text.split(":", 1)[1].strip()
        if not value.isdigit() or int(value) < 1:
            raise ConfigError(f"partial-at study: cuts {text!r}: every:N needs a positive "
                              f"integer N (every:2 = before layers 0, 2, 4, …)")
        return "every", int(value)
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise ConfigError("partial-at study: cuts is empty; give all, every:N or layer names")
    return "list", names


@functools.lru_cache(maxsize=16)
def _layer_names(model: str, dataset: str, activation: str) -> tuple[str, ...]:
    from robustlayers import builders
    from robustlayers.layers import layer_map

    net = builders.build_model(model, dataset, activation=activation, seed=0)
    return tuple(layer.name for layer in layer_map(net))


def layer_names(opts: PartialATOptions) -> tuple[str, ...]:
    """The layer map of the preset's model (names in execution order)."""
    from robustlayers.train.runner import resolve_config

    config = resolve_config(base_config(opts, Path("."), opts.seed_list()[0]))
    return _layer_names(config.model, config.dataset, config.activation)


def resolve_cuts(text: str, layers: tuple[str, ...]) -> list[int]:
    """Indices of the layers the cuts come before (sorted, distinct)."""
    kind, value = parse_cuts_syntax(text)
    if kind == "all":
        return list(range(len(layers)))
    if kind == "every":
        return list(range(0, len(layers), value))
    unknown = [n for n in value if n not in layers]
    if unknown:
        import difflib

        close = difflib.get_close_matches(unknown[0], layers, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(f"partial-at study: cut {unknown[0]!r} is not a layer of the model"
                          f"{hint}; layers: {', '.join(layers)}")
    return sorted({layers.index(n) for n in value})


def retrains_earlier(code: str) -> bool:
    """True for the codes whose stage 2 retrains the earlier part (X2Y1)."""
    return code in SPLIT_CODES and parse_code(code)["frozen"] == "later"


def grid(opts: PartialATOptions) -> tuple[tuple[str, ...], list[tuple[str, int]]]:
    """(layer names, [(code, cut index)]) of the stage-2 runs, one seed's worth."""
    layers = layer_names(opts)
    cuts = resolve_cuts(opts.cuts, layers)
    cells = [(code, c) for code in opts.code_list() for c in cuts
             if not (retrains_earlier(code) and c == 0)]
    if not cells:
        raise ConfigError(f"partial-at study: codes {opts.codes!r} with cuts {opts.cuts!r} leave "
                          f"no stage-2 run (a cut before the first layer retrains nothing for "
                          f"X2Y1 codes); choose later cuts")
    return layers, cells


def plan(opts: PartialATOptions, runs_root: Path) -> list:
    """Both stage-1 runs per seed, then one stage-2 run per (code, cut, seed), each started from
    its stage-1 run's last checkpoint; with one seed, the loss-noise evaluations of the runs the
    loss claims compare."""
    layers, cells = grid(opts)
    tasks = []
    for seed in opts.seed_list():
        stage1 = {}
        for kind in ("N", "A"):
            task = train_task(stage1_key(seed, kind), base_config(
                opts, runs_root, seed, method=KIND_METHOD[kind]),
                label=f"stage 1: whole network {KIND_METHOD[kind]}, seed {seed}")
            stage1[kind] = task
            tasks.append(task)
        for code, cut in cells:
            source = stage1[parse_code(code)["stage1"]]
            where = "layer" if code in SINGLE_CODES else "cut"
            config = base_config(opts, runs_root, seed, method="partial-at",
                                 method_args={"code": code, where: layers[cut]},
                                 init_from=f"{run_path_of(source)}@last")
            tasks.append(train_task(stage2_key(seed, code, layers[cut]), config,
                                    needs=(source.key,),
                                    label=f"stage 2: {code}, {where} {layers[cut]}, seed {seed}"))
    if opts.loss_noise and len(opts.seed_list()) == 1:
        keys = {t.key: t for t in tasks}
        for key in loss_claim_runs(opts.seed_list()[0], layers, cells):
            tasks.append(evaluate_task(noise_key(key), "robustlayers.studies.partial_at:"
                                       "loss_spread", {"run": str(run_path_of(keys[key]))},
                                       needs=(key,), label=f"per-image loss spread of {key}"))
    return tasks


def loss_spread(run: str, which: str = "last") -> dict:
    """Clean and adversarial loss of a run's ``which`` checkpoint on the images and with the
    attack (and its seeds) of the run's final evaluation, with the standard error of each mean
    over images: the sampling noise of a loss with one seed. Runs on CUDA when there is one."""
    import torch

    from robustlayers.attacks import PGD
    from robustlayers.data import get_dataset_info
    from robustlayers.devices import resolve_device
    from robustlayers.evaluate.metrics import per_example_metrics
    from robustlayers.runs import RunDir, load_run_model
    from robustlayers.train.context import derive_seed, resolve_threat
    from robustlayers.train.setup import load_splits
    from robustlayers.train.runner import saved_config

    device = resolve_device("auto")
    model = load_run_model(run, which)[0].to(device)
    config = saved_config(RunDir.open(run))
    threat, _, eval_alpha = resolve_threat(config, get_dataset_info(config.dataset))
    steps = config.final_steps if config.final_steps is not None else config.eval_steps
    alpha = config.final_alpha if config.final_alpha is not None else eval_alpha
    test = load_splits(config, device)["test"]
    attack = PGD(threat, steps=steps, alpha=alpha, random_start=True, seed=0)
    losses: dict[str, list] = {"clean": [], "robust": []}
    size = config.eval_batch_size
    for i, start in enumerate(range(0, len(test), size)):
        x, y = test.x[start:start + size], test.y[start:start + size]
        x_adv = attack(model, x, y, seed=derive_seed(config.seed, "eval", f"final {which}", i))
        for kind, inputs in (("clean", x), ("robust", x_adv)):
            losses[kind].append(per_example_metrics(model, inputs, y, validate=False)[1])
    out = {"n": len(test), "which": which, "device": str(device),
           "attack": {"name": "pgd", "steps": steps, "alpha": alpha, "eps": threat.eps,
                      "norm": threat.norm, "random_start": True}}
    for kind, parts in losses.items():
        values = torch.cat(parts).double()
        out[f"{kind}_loss"] = values.mean().item()
        out[f"{kind}_loss_se"] = (values.std(unbiased=True) / len(values) ** 0.5).item()
    return out


def analyse(opts: PartialATOptions, results) -> dict:
    """EARLY's tables, figures and claim verdicts (:mod:`.partial_at_analysis`)."""
    layers, cells = grid(opts)
    return analyse_grid(opts, results, layers, cells)


PRESETS = {
    # the stage-1 runs are the demo's shared fmnist-study runs; two natural retrainings of the
    # adversarial network at the middle cut (the pair of the early-vs-late claims)
    "demo": dict(train_preset="fmnist-study", seeds="0", codes="A1N2,N2A1", cuts="layer2.1"),
    # all eight codes at a quarter, half and nine tenths of the small CNN's 10 layers, on
    # 2 000 training and 500 test images (CPU minutes)
    "quick": dict(train_preset="fmnist-study", seeds="0", codes="all",
                  cuts="layer1.3,layer2.1,head.1", train_size=2000, test_size=500,
                  eval_size=100),
    # EARLY's grid: ResNet-18 on CIFAR-10, all eight codes, a cut before each of its 41 layers
    "paper": dict(train_preset="early-resnet", seeds="2022", codes="all", cuts="all"),
}

__all__ = ["STUDY", "PartialATOptions", "adversarial_layers", "analyse", "grid", "layer_names",
           "loss_spread", "plan", "resolve_cuts", "stage1_key", "stage2_key"]

STUDY = Study(
    name="partial-at", paper=PAPER,
    summary="Partial adversarial training (EARLY §3.1): a natural and an adversarial stage-1 "
            "network; stage 2 freezes one side of a cut, re-initialises the other and retrains "
            "it naturally or adversarially. Which layers carry robustness: EARLY finds the "
            "earlier layers matter more.",
    options=PartialATOptions, presets=PRESETS, plan=plan, analyse=analyse)
