"""Run the layer analyses (EARLY's PSR, CLAT's criticality, SPECTRUM's filter norms,
quantisation and pre-activations) on one or more classifiers and write the report.

``diagnose(models, data, ...)`` runs the chosen analyses on the same images for every model,
writes ``diagnosis.json`` (every number with its attack configuration, selection, seed and the
library versions) and ``report.html`` (robustlayers.report.write_report), and returns the
diagnosis dict.
"""

from __future__ import annotations

import datetime as _dt
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from robustlayers.analysis._common import (
    data_shape, jsonable, layer_map_rows, resolve_eps, resolve_layers, split_data,
)
from robustlayers.evaluate.inputs import dataset_name
from robustlayers.evaluate.progress import note
from robustlayers.analysis.criticality import (
    DEFAULT_SELECTION as CRITICALITY_SELECTION, check_k, criticality, criticality_stability,
)
from robustlayers.analysis.filter_norms import filter_norms_family
from robustlayers.analysis.preactivation import preactivation_corruptions, preactivation_stats
from robustlayers.analysis.psr import DEFAULT_SELECTION as PSR_SELECTION, compare_psr
from robustlayers.criticality_core import candidate_names
from robustlayers.analysis.quantization import (
    DEFAULT_BETA, DEFAULT_BETAS, quantization_grid,
)
from robustlayers.analysis.timing import criticality_epoch_ratio
from robustlayers.attacks import describe_eps

ANALYSES = ("psr", "criticality", "filter-norms", "quantization", "preact")
_ALIASES = {"filter_norms": "filter-norms", "filternorms": "filter-norms",
            "quantisation": "quantization", "preactivation": "preact", "pre-activation": "preact"}
SECTION_KEYS = {"psr": "psr", "criticality": "criticality", "filter-norms": "filter_norms",
                "quantization": "quantization", "preact": "preactivation"}


def parse_analyses(value) -> tuple[str, ...]:
    """Analysis names from a comma-separated string or a list; unknown names are a ValueError
    listing the valid ones."""
    items = value.split(",") if isinstance(value, str) else list(value)
    names = []
    for item in items:
        key = str(item).strip().lower()
        if not key:
            continue
        key = _ALIASES.get(key, key)
        if key not in ANALYSES:
            raise ValueError(f"unknown analysis {item!r}; valid analyses: {', '.join(ANALYSES)}")
        if key not in names:
            names.append(key)
    if not names:
        raise ValueError(f"no analysis chosen; valid analyses: {', '.join(ANALYSES)}")
    return tuple(names)


def check_models(models: dict[str, nn.Module], x: torch.Tensor) -> tuple[int, ...]:
    """All models must take the same input shape, and it must be the data's (C, H, W)."""
    if not models:
        raise ValueError("diagnose needs at least one model")
    given = tuple(x.shape[1:])
    shapes = {label: tuple(getattr(m, "input_shape", None) or given)
              for label, m in models.items()}
    if len(set(shapes.values())) > 1:
        raise ValueError(f"incompatible models: they take different input shapes "
                         f"{shapes}; compare models built for the same dataset")
    shape = next(iter(shapes.values()))
    if shape != given:
        raise ValueError(f"the models take inputs of shape {shape} but the data has {given}; "
                         f"use the dataset the models were trained on")
    return shape


def _subset(x, y, n: int | None, seed: int):
    if n is None or n >= len(x):
        return x, y
    if n < 1:
        raise ValueError(f"n_examples must be >= 1, got {n}")
    idx = torch.randperm(len(x), generator=torch.Generator().manual_seed(int(seed)))[:n]
    return x[idx], y[idx]


def _conv_selection(selection) -> str | None:
    """Filter norms use the conv layers of a user selection (``(SEL) & kind:conv``)."""
    return None if selection is None else f"({selection}) & kind:conv"


def _check_conv_selection(models: dict[str, nn.Module], selection: str) -> None:
    from robustlayers.layers import SelectionError, select

    for label, model in models.items():
        try:
            select(model, _conv_selection(selection))
        except SelectionError as err:
            raise ValueError(f"selection {selection!r} has no conv layers in model {label!r}, so "
                             f"filter norms have nothing to measure; select conv layers or drop "
                             f"filter-norms from the analyses ({err})") from err


def _preflight(models: dict[str, nn.Module], chosen, opts: "DiagnoseOptions", x) -> None:
    """Checks that would otherwise fail only after the earlier analyses' attacks have run."""
    if "filter-norms" in chosen and opts.selection is not None:
        _check_conv_selection(models, opts.selection)
    if "criticality" in chosen and opts.k is not None:
        for model in models.values():
            lmap, resolved = resolve_layers(model, opts.selection, CRITICALITY_SELECTION,
                                            data_shape(model, x))
            check_k(opts.k, len(candidate_names(lmap, resolved.names)))
    if "quantization" in chosen and float(opts.default_beta) not in map(float, opts.betas):
        raise ValueError(f"default β {opts.default_beta:g} is not in the β grid "
                         f"{[float(b) for b in opts.betas]}; add it to the grid or choose one "
                         f"of the grid's values as the default β")


@dataclass(frozen=True)
class DiagnoseOptions:
    """Settings shared by the analyses of one diagnosis (see :func:`diagnose`)."""

    selection: str | None
    eps: float | None
    seed: int
    psr_steps: int
    crit_steps: int
    k: int | None
    crit_examples: int | None
    stability_repeats: int
    stability_batch: int
    quant_steps: int
    quant_examples: int | None
    betas: tuple
    default_beta: float
    eps_grid: tuple
    placements: tuple | None
    preact_module: str | None
    corruption_dir: str | None
    corruptions: tuple | None
    epoch_batches: int | None
    epoch_size: int | None
    batch_size: int


def diagnose(models: dict[str, nn.Module], data, *, analyses=ANALYSES, selection=None,
             n_examples: int | None = 256, seed: int = 0, out_dir=None, eps: float | None = None,
             dataset: str | None = None, psr_steps: int = 100, crit_steps: int = 10,
             k: int | None = None, crit_examples: int | None = None,
             stability_repeats: int = 100, stability_batch: int = 10, quant_steps: int = 20,
             quant_examples: int | None = None, betas=DEFAULT_BETAS,
             default_beta: float = DEFAULT_BETA, eps_grid=None, placements=None,
             preact_module: str | None = None, corruption_dir=None, corruptions=None,
             train_data=None, epoch_batches: int | None = 10, epoch_size: int | None = None,
             batch_size: int = 128, sources: dict | None = None,
             evaluation: dict | None = None, training: dict | None = None,
             log: Callable[[str], None] | None = None) -> dict:
    """Run ``analyses`` (psr, criticality, filter-norms, quantization, preact) on every model
    with the same ``n_examples`` images of ``data`` (a seeded subset) and return the diagnosis.

    ``selection`` (a layer-selection expression) overrides each analysis's default layers
    (PSR: conv outputs; criticality: conv + linear; filter norms: its conv layers).
    ``eps`` defaults to the dataset's default ε (``dataset`` given, or ``data`` a TensorData),
    else the ε the models carry from their run or dataset (``model.data_context``); with none
    of these it is required. ``eps_grid`` (the quantisation δ grid) defaults to ``(eps,)``. ``k`` critical layers (1 ≤ k ≤ the selected
    layers; None = 3 or all when fewer). ``crit_examples`` / ``quant_examples`` use only the first
    that many images for the full-batch criticality / the quantisation grid (the costliest
    analysis); ``default_beta`` (one of ``betas``) is the β of the plain-PGD masking demo.
    ``train_data`` is what the PGD-AT epoch is timed on (``epoch_batches`` batches, extrapolated
    to ``epoch_size`` = its size; 0 skips timing, None times it all). ``corruption_dir`` adds the
    final pre-activation mean on CIFAR-10-C (``corruptions``, default all 19 of SPECTRUM §6) to
    the preact analysis. ``evaluation`` (label -> an evaluation record: ``EvaluationResult.
    to_dict()`` or the JSON of ``robustlayers evaluate``) and ``training`` (label -> the run's
    metrics.jsonl rows) are kept in the record and shown in the report. With ``out_dir`` writes
    ``diagnosis.json`` and ``report.html`` there. Progress (one line per analysis, bars for the
    attacks) goes to stderr inside ``show_progress()`` or to ``log``.
    """
    say = log or note
    chosen = parse_analyses(analyses)
    dataset = dataset or dataset_name(data)
    x_all, y_all = split_data(data)
    check_models(models, x_all)
    needs_eps = bool({"psr", "criticality", "quantization"} & set(chosen))
    eps = _default_eps(models, eps, dataset) if needs_eps else eps
    x, y = _subset(x_all, y_all, n_examples, seed)
    opts = DiagnoseOptions(
        selection=None if selection is None else str(selection),
        eps=None if eps is None else float(eps), seed=int(seed),
        psr_steps=psr_steps, crit_steps=crit_steps, k=k, crit_examples=crit_examples,
        stability_repeats=stability_repeats, stability_batch=stability_batch,
        quant_steps=quant_steps, quant_examples=quant_examples, betas=tuple(betas),
        default_beta=float(default_beta),
        eps_grid=tuple(eps_grid) if eps_grid else ((float(eps),) if eps is not None else ()),
        placements=tuple(placements) if placements else None, preact_module=preact_module,
        corruption_dir=corruption_dir, corruptions=tuple(corruptions) if corruptions else None,
        epoch_batches=epoch_batches, epoch_size=epoch_size, batch_size=batch_size)
    info = _models_info(models, x, opts.selection, sources or {})
    _preflight(models, chosen, opts, x)
    sections, timing = _run_all(chosen, models, x, y, opts, train_data, say)
    diagnosis = _record(chosen, opts, data, dataset, len(x), len(x_all), info, sections, timing)
    if evaluation:
        diagnosis["evaluation"] = jsonable(evaluation)
    if training:
        diagnosis["training"] = jsonable(training)
    if out_dir is not None:
        write_outputs(diagnosis, out_dir)
    return diagnosis


def _default_eps(models: dict, eps, dataset: str | None) -> float:
    """``eps``, else the dataset's default ε, else the one ε all models carry; else an error."""
    if eps is not None or dataset is not None:
        from robustlayers.data import get_dataset_info

        return resolve_eps(None, eps if eps is not None else
                           get_dataset_info(dataset).default_eps, what="diagnose")
    budgets = {resolve_eps(m, None, what="diagnose") for m in models.values()}
    if len(budgets) > 1:
        raise ValueError(f"the models carry different default ε {sorted(budgets)}; pass eps= "
                         f"(or dataset=) so they are analysed with one budget")
    return budgets.pop()


def _run_all(chosen, models, x, y, opts: DiagnoseOptions, train_data, say):
    """Each chosen analysis' section and its wall-clock seconds."""
    sections, timing = {}, {}
    for i, name in enumerate(chosen):
        say(f"diagnose: {name} [{i + 1}/{len(chosen)}] ...")
        start = time.perf_counter()
        sections[SECTION_KEYS[name]] = _run_one(name, models, x, y, opts, train_data)
        timing[name] = round(time.perf_counter() - start, 3)
    return sections, timing


def _record(chosen, opts: DiagnoseOptions, data, dataset, n: int, n_all: int, info: dict,
            sections: dict, timing: dict) -> dict:
    """The diagnosis dict (schema robustlayers.diagnosis/1) with its summary sentences."""
    from robustlayers.provenance import environment
    from robustlayers.report.summary import summarize

    diagnosis = jsonable({
        "schema": "robustlayers.diagnosis/1",
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "analyses_run": list(chosen),
        "seed": opts.seed,
        "eps": describe_eps(opts.eps) if opts.eps is not None else None,
        "selection": opts.selection,
        "options": asdict(opts),
        "data": {"dataset": dataset or getattr(getattr(data, "info", None), "name", None),
                 "split": getattr(data, "split", None), "n_examples": n,
                 "subset_of": n_all, "subset_seed": opts.seed},
        "models_info": info,
        "analyses": sections,
        "timing_s": timing,
        "environment": environment(),
    })
    diagnosis["summary"] = summarize(diagnosis)
    return diagnosis


def _models_info(models, x, selection, sources) -> dict:
    """Class, size, source and layer map of each model. Resolving the selection here fails
    early, before any attack runs, on a selection that does not resolve on some model."""
    info = {}
    for label, model in models.items():
        lmap, resolved = resolve_layers(model, selection, PSR_SELECTION, data_shape(model, x))
        info[label] = {
            "class": type(model).__name__,
            "normalization": getattr(model, "normalization", None),
            "data_context": getattr(model, "data_context", None),
            "params": sum(p.numel() for p in model.parameters()),
            "input_shape": list(x.shape[1:]),
            "source": sources.get(label),
            "selected_by": resolved.expression,
            "layer_map": layer_map_rows(lmap, resolved.names),
        }
    return info


def write_outputs(diagnosis: dict, out_dir) -> dict:
    """Write ``diagnosis.json`` and ``report.html`` into ``out_dir``; adds their paths."""
    from robustlayers.report import REPORT_NAME, write_report
    from robustlayers.runs import atomic_write_json

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    diagnosis["paths"] = {"diagnosis": str(out / "diagnosis.json"),
                          "report": str(out / REPORT_NAME)}
    # the JSON is the record; the report is drawn from it, so the record goes first
    atomic_write_json(out / "diagnosis.json", diagnosis)
    write_report(diagnosis, out)
    return diagnosis["paths"]


def _run_one(name: str, models, x, y, o: DiagnoseOptions, train_data) -> dict:
    if name == "psr":
        return compare_psr(models, x, y, selection=o.selection, eps=o.eps, steps=o.psr_steps,
                           batch_size=o.batch_size, seed=o.seed).to_dict()
    if name == "filter-norms":
        return filter_norms_family(models, selection=_conv_selection(o.selection)).to_dict()
    per_model = {}
    for label, model in models.items():
        if name == "criticality":
            per_model[label] = _criticality_entry(model, x, y, label, o, train_data)
        elif name == "quantization":
            nq = len(x) if o.quant_examples is None else min(len(x), o.quant_examples)
            per_model[label] = quantization_grid(
                model, x[:nq], y[:nq], placements=o.placements, betas=o.betas,
                default_beta=o.default_beta, steps=o.quant_steps, eps_grid=o.eps_grid,
                batch_size=o.batch_size, seed=o.seed, label=label)
        else:
            per_model[label] = preactivation_stats(model, (x, y), module=o.preact_module,
                                                   batch_size=o.batch_size, seed=o.seed,
                                                   label=label)
            if o.corruption_dir is not None:
                per_model[label]["corruptions"] = preactivation_corruptions(
                    model, o.corruption_dir, corruptions=o.corruptions, module=o.preact_module,
                    batch_size=o.batch_size, seed=o.seed, label=label)
    return {"models": per_model}


def _criticality_entry(model, x, y, label: str, o: DiagnoseOptions, train_data) -> dict:
    """CLAT Eq. 3 on ``crit_examples`` images (all by default), its stability over
    ``stability_repeats`` batches of ``stability_batch``, whether the two agree, and the
    criticality / PGD-AT-epoch time ratio."""
    n = len(x) if o.crit_examples is None else min(len(x), o.crit_examples)
    full = criticality(model, x[:n], y[:n], selection=o.selection, eps=o.eps,
                       steps=o.crit_steps, k=o.k, batch_size=o.batch_size, seed=o.seed,
                       label=label).to_dict()
    entry = {"criticality": full, "stability": None, "timing": None}
    batch = min(o.stability_batch, len(x))
    if o.stability_repeats > 0:
        stab = criticality_stability(
            model, (x, y), batch_size=batch, repeats=o.stability_repeats, k=o.k, seed=o.seed,
            selection=o.selection, eps=o.eps, steps=o.crit_steps, label=label).to_dict()
        stab["modal_equals_full_batch_top_k"] = set(stab["modal_top_k"]) == set(full["top_k"])
        entry["stability"] = stab
    if o.epoch_batches is None or o.epoch_batches > 0:
        train = train_data if train_data is not None else (x, y)
        size = o.epoch_size if o.epoch_size is not None else len(split_data(train)[0])
        entry["timing"] = criticality_epoch_ratio(
            model, (x, y), train, eps=o.eps, crit_batch=batch, crit_steps=o.crit_steps,
            selection=o.selection, max_batches=o.epoch_batches, epoch_size=size, seed=o.seed)
    return entry
