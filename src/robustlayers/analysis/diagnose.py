"""Run the layer analyses of SPEC §4 on one or more classifiers and write the report.

``diagnose(models, data, ...)`` runs the chosen analyses on the same images for every model,
writes ``diagnosis.json`` (every number with its attack configuration, selection, seed and the
library versions) and ``report.html`` (robustlayers.report.write_report), and returns the
diagnosis dict.
"""

from __future__ import annotations

import datetime as _dt
import time
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from robustlayers.analysis._common import (
    data_shape, eps_record, jsonable, layer_map_rows, resolve_layers, split_data,
)
from robustlayers.analysis.criticality import criticality, criticality_stability
from robustlayers.analysis.filter_norms import filter_norms_family
from robustlayers.analysis.preactivation import preactivation_corruptions, preactivation_stats
from robustlayers.analysis.psr import DEFAULT_SELECTION as PSR_SELECTION, compare_psr
from robustlayers.analysis.quantization import DEFAULT_BETAS, quantization_grid
from robustlayers.analysis.timing import criticality_epoch_ratio

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


def diagnose(models: dict[str, nn.Module], data, *, analyses=ANALYSES, selection=None,
             n_examples: int | None = 256, seed: int = 0, out_dir=None, eps: float | None = None,
             dataset: str | None = None, psr_steps: int = 100, crit_steps: int = 10, k: int = 3,
             crit_examples: int | None = None, stability_repeats: int = 100,
             stability_batch: int = 10, quant_steps: int = 20,
             quant_examples: int | None = None, betas=DEFAULT_BETAS,
             eps_grid=None, placements=None, preact_module: str | None = None,
             corruption_dir=None, corruptions=None, train_data=None, epoch_batches: int | None = 10, epoch_size: int | None = None,
             batch_size: int = 128, sources: dict | None = None,
             log: Callable[[str], None] | None = None) -> dict:
    """Run ``analyses`` (psr, criticality, filter-norms, quantization, preact) on every model
    with the same ``n_examples`` images of ``data`` (a seeded subset) and return the diagnosis.

    ``crit_examples`` / ``quant_examples`` use only the first that many of those images for the
    full-batch criticality / the quantisation grid (the costliest analysis).
    ``selection`` (a layer-selection expression) overrides each analysis's default layers
    (PSR: conv outputs; criticality: conv + linear; filter norms: its conv layers).
    ``corruption_dir`` adds the final pre-activation mean on CIFAR-10-C (``corruptions``, default
    all 19 of SPECTRUM §9) to the preact analysis.
    ``eps`` defaults to the dataset's default ε (``dataset`` given) else 8/255. With ``out_dir``
    writes ``diagnosis.json`` and ``report.html`` there.
    """
    say = log or (lambda _msg: None)
    chosen = parse_analyses(analyses)
    x_all, y_all = split_data(data)
    check_models(models, x_all)
    if eps is None:
        from robustlayers.data import get_dataset_info

        eps = get_dataset_info(dataset).default_eps if dataset else 8 / 255
    x, y = _subset(x_all, y_all, n_examples, seed)
    sel_text = None if selection is None else str(selection)
    # fail early, before any attack runs, on a selection that does not resolve on some model
    info = {}
    for label, model in models.items():
        lmap, resolved = resolve_layers(model, sel_text, PSR_SELECTION, data_shape(model, x))
        info[label] = {
            "class": type(model).__name__,
            "params": sum(p.numel() for p in model.parameters()),
            "input_shape": list(x.shape[1:]),
            "source": (sources or {}).get(label),
            "selected_by": resolved.expression,
            "layer_map": layer_map_rows(lmap, resolved.names),
        }
    if "filter-norms" in chosen and sel_text is not None:
        _check_conv_selection(models, sel_text)
    sections, timing = {}, {}
    for name in chosen:
        say(f"diagnose: {name} ...")
        start = time.perf_counter()
        sections[SECTION_KEYS[name]] = _run_one(
            name, models, x, y, selection=sel_text, eps=eps, seed=seed, psr_steps=psr_steps,
            crit_steps=crit_steps, k=k, crit_examples=crit_examples,
            stability_repeats=stability_repeats, stability_batch=stability_batch,
            quant_steps=quant_steps, quant_examples=quant_examples, betas=betas,
            eps_grid=eps_grid, placements=placements,
            preact_module=preact_module, corruption_dir=corruption_dir,
            corruptions=corruptions, train_data=train_data, epoch_batches=epoch_batches,
            epoch_size=epoch_size, batch_size=batch_size)
        timing[name] = round(time.perf_counter() - start, 3)
    from robustlayers.provenance import environment
    from robustlayers.report.summary import summarize

    diagnosis = jsonable({
        "schema": "robustlayers.diagnosis/1",
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "analyses_run": list(chosen),
        "seed": seed,
        "eps": eps_record(eps),
        "selection": sel_text,
        "data": {"dataset": dataset or getattr(getattr(data, "info", None), "name", None),
                 "split": getattr(data, "split", None), "n_examples": len(x),
                 "subset_of": len(x_all), "subset_seed": seed},
        "models_info": info,
        "analyses": sections,
        "timing_s": timing,
        "environment": environment(),
    })
    diagnosis["summary"] = summarize(diagnosis)
    if out_dir is not None:
        write_outputs(diagnosis, out_dir)
    return diagnosis


def write_outputs(diagnosis: dict, out_dir) -> dict:
    """Write ``diagnosis.json`` and ``report.html`` into ``out_dir``; adds their paths."""
    from robustlayers.report import write_report
    from robustlayers.runs import atomic_write_json

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    report = write_report(diagnosis, out)
    diagnosis["paths"] = {"diagnosis": str(out / "diagnosis.json"), "report": str(report)}
    atomic_write_json(out / "diagnosis.json", diagnosis)
    return diagnosis["paths"]


def _run_one(name, models, x, y, *, selection, eps, seed, psr_steps, crit_steps, k,
             crit_examples, stability_repeats, stability_batch, quant_steps, quant_examples,
             betas, eps_grid,
             placements, preact_module, corruption_dir, corruptions, train_data,
             epoch_batches, epoch_size, batch_size):
    if name == "psr":
        return compare_psr(models, x, y, selection=selection, eps=eps, steps=psr_steps,
                                   batch_size=batch_size, seed=seed).to_dict()
    if name == "filter-norms":
        return filter_norms_family(models, selection=_conv_selection(selection)).to_dict()
    per_model = {}
    for label, model in models.items():
        if name == "criticality":
            per_model[label] = _criticality_entry(
                model, x, y, label=label, selection=selection, eps=eps, seed=seed,
                steps=crit_steps, k=k, crit_examples=crit_examples,
                repeats=stability_repeats, batch=stability_batch, train_data=train_data,
                epoch_batches=epoch_batches, epoch_size=epoch_size, batch_size=batch_size)
        elif name == "quantization":
            nq = len(x) if quant_examples is None else min(len(x), quant_examples)
            per_model[label] = quantization_grid(
                model, x[:nq], y[:nq], placements=placements, betas=betas, steps=quant_steps,
                eps_grid=tuple(eps_grid) if eps_grid else (eps,), batch_size=batch_size,
                seed=seed, label=label)
        else:
            per_model[label] = preactivation_stats(model, (x, y), module=preact_module,
                                                   batch_size=batch_size, seed=seed, label=label)
            if corruption_dir is not None:
                per_model[label]["corruptions"] = preactivation_corruptions(
                    model, corruption_dir, corruptions=corruptions, module=preact_module,
                    batch_size=batch_size, seed=seed, label=label)
    return {"models": per_model}


def _criticality_entry(model, x, y, *, label, selection, eps, seed, steps, k, crit_examples,
                       repeats, batch, train_data, epoch_batches, epoch_size, batch_size) -> dict:
    """CLAT Eq. 3 on ``crit_examples`` images (all by default), its stability over ``repeats``
    batches of ``batch``, the agreement of the two, and the criticality/epoch time ratio."""
    n = len(x) if crit_examples is None else min(len(x), crit_examples)
    full = criticality(model, x[:n], y[:n], selection=selection, eps=eps, steps=steps,
                                k=k, batch_size=batch_size, seed=seed, label=label).to_dict()
    entry = {"criticality": full, "stability": None, "timing": None}
    if repeats and repeats > 0:
        stab = criticality_stability(
            model, (x, y), batch_size=min(batch, len(x)), repeats=repeats, k=k, seed=seed,
            selection=selection, eps=eps, steps=steps, label=label).to_dict()
        stab["modal_equals_full_batch_top_k"] = set(stab["modal_top_k"]) == set(full["top_k"])
        entry["stability"] = stab
    if epoch_batches is None or epoch_batches > 0:
        train = train_data if train_data is not None else (x, y)
        size = epoch_size if epoch_size is not None else len(split_data(train)[0])
        entry["timing"] = criticality_epoch_ratio(
            model, (x, y), train, eps=eps, crit_batch=min(batch, len(x)), crit_steps=steps,
            selection=selection, max_batches=epoch_batches, epoch_size=size, seed=seed)
    return entry
