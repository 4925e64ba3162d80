"""The measurements of the ``eps-spectrum`` study, one trained model at a time (Sridhar et al.,
"Towards Alternative Techniques for Improving Adversarial Robustness: Analysis of Adversarial
Training at a Spectrum of Perturbations" — SPECTRUM).

Each function is an evaluate task of the study: it loads one run's checkpoint, measures on a
fixed, seeded subset of the test split (the same images for every model, so differences between
models are paired) and returns a JSON-ready dict that says what produced every number.

* :func:`robust_errors` — robust error against PGD_δ-N with α = δ/10 (SPECTRUM §3: PGD_δ-20,
  its released code's test step) for every δ of a grid (δ = 0: the clean error), which
  examples each attack left correct (for paired noise estimates), and the convolution-filter
  norms per layer (SPECTRUM §5: E and max over the k×k kernels w of ‖w‖∞);
* :func:`quantisation` — SPECTRUM §4's grid: clean, BPDA_δ and Transfer-PGD_δ accuracy with
  q(x) = ⌊βx⌋/β after chosen blocks, BPDA and transfer attacks with α = δ/10;
* :func:`corruptions` — mean accuracy on CIFAR-10-C (SPECTRUM §6).
"""

from __future__ import annotations

import numpy as np
import torch

EXAMPLE_SEED = 0
"""Seed of the fixed test subset (the same images for every model of the study)."""


def _device(name: str | None) -> torch.device:
    from robustlayers.devices import resolve_device

    if name and ":" in str(name):
        return torch.device(name)
    return resolve_device(name or "auto")


def _load(run: str, checkpoint: str, device: str | None):
    from robustlayers.runs import load_run_model

    model, config = load_run_model(run, checkpoint)
    return model.to(_device(device)), config


def _test_images(config: dict, images: int | None, data_dir: str | None):
    from robustlayers.data import load_dataset

    folder = data_dir if data_dir is not None else config.get("data_dir")
    data = load_dataset(config["dataset"], "test", data_dir=folder)
    return data.subset(min(images, len(data)), EXAMPLE_SEED) if images else data


def pack_bits(correct: torch.Tensor) -> str:
    """A bool vector as a hex string (8 examples per byte), to keep per-example outcomes small
    in JSON."""
    bits = np.packbits(correct.to(torch.bool).cpu().numpy().astype(np.uint8))
    return bits.tobytes().hex()


def unpack_bits(text: str, n: int) -> np.ndarray:
    """The bool vector of :func:`pack_bits` (its first ``n`` entries)."""
    return np.unpackbits(np.frombuffer(bytes.fromhex(text), dtype=np.uint8))[:n].astype(bool)


def _source(run: str, checkpoint: str, config: dict, n: int) -> dict:
    return {"run": run, "checkpoint": checkpoint, "dataset": config["dataset"],
            "model": config["model"], "method": config["method"], "eps": config.get("eps"),
            "seed": config.get("seed"), "n_examples": n, "example_seed": EXAMPLE_SEED}


def filter_norm_record(model, selection: str) -> dict:
    """SPECTRUM §5 per selected conv layer: mean and max over its kernels of ‖w‖∞, and the
    standard error of the mean over kernels (the sampling noise of "E_w ‖w‖∞")."""
    from robustlayers.analysis.filter_norms import filter_norms, kernel_norms
    from robustlayers.layers import resolve_module

    result = filter_norms(model, selection=selection)
    record = result.to_dict()
    record["se"] = []
    for name in result.layers:
        values = kernel_norms(resolve_module(model, name).weight)
        se = float(values.std()) / len(values) ** 0.5 if len(values) > 1 else 0.0
        record["se"].append(se)
    return record


def init_filter_norms(config: dict, selection: str) -> dict:
    """Filter norms of the run's architecture at initialisation (seeded by the run's seed): the
    reference a trained model's layer-to-layer norm ratios are read against (the default
    initialisation already scales kernels by their fan-in)."""
    from robustlayers import models

    model = models.create_model(config["model"], seed=int(config.get("seed") or 0),
                                **(config.get("model_kwargs") or {}))
    return filter_norm_record(model, selection)


def robust_errors(run: str, deltas: list, *, checkpoint: str = "last", steps: int = 20,
                  alpha_over_delta: float = 0.1, images: int | None = 1000,
                  filter_layers: str = "kind:conv & depth:all", batch_size: int = 256,
                  data_dir: str | None = None, device: str | None = None) -> dict:
    """Robust error of one model against PGD_δ-``steps`` (α = ``alpha_over_delta``·δ, random
    start, seed 0) for every δ in ``deltas`` (δ = 0: the clean error), SPECTRUM §3, on
    ``images`` test images (None: the whole split); and its filter norms (SPECTRUM §5)."""
    from robustlayers.analysis._common import make_pgd
    from robustlayers.evaluate import eps_sweep

    model, config = _load(run, checkpoint, device)
    data = _test_images(config, images, data_dir)

    def attack(delta):
        return make_pgd(delta, steps=steps, alpha=alpha_over_delta * delta, seed=0)

    sweep = eps_sweep(model, data.x, data.y, attack, [float(d) for d in deltas],
                      batch_size=batch_size)
    points = [{"delta": d, "accuracy": a, "error": 1.0 - a, "loss": lo, "attack": c,
               "correct": pack_bits(k)}
              for d, a, lo, c, k in zip(sweep.eps, sweep.accuracy, sweep.loss, sweep.configs,
                                        sweep.correct)]
    return {"source": _source(run, checkpoint, config, len(data.x)),
            "attack_rule": f"PGD-{steps}, alpha = {alpha_over_delta:g} x delta, random start, "
                           f"seed 0; delta = 0 is the clean input",
            "points": points,
            "filter_norms": filter_norm_record(model, filter_layers),
            "filter_norms_at_init": init_filter_norms(config, filter_layers)}


def quantisation(run: str, deltas: list, *, checkpoint: str = "last", placements=None,
                 betas=(8.0,), steps: int = 20, alpha_over_delta: float = 0.1,
                 images: int | None = 500, batch_size: int = 256, data_dir: str | None = None,
                 device: str | None = None) -> dict:
    """SPECTRUM §4's quantisation grid of one model: clean, Transfer-PGD_δ-``steps`` and
    BPDA_δ accuracy for every placement × β × δ, next to the unquantised model's PGD_δ accuracy;
    every attack with α = ``alpha_over_delta``·δ (SPECTRUM's code: δ/10)."""
    from robustlayers.analysis.quantization import quantization_grid

    model, config = _load(run, checkpoint, device)
    data = _test_images(config, images, data_dir)
    betas = [float(b) for b in betas]
    grid = quantization_grid(model, data.x, data.y, placements=placements or None, betas=betas,
                             eps_grid=[float(d) for d in deltas], steps=steps,
                             bpda_alpha_over_eps=alpha_over_delta,
                             test_alpha_over_eps=alpha_over_delta,
                             default_beta=8.0 if 8.0 in betas else betas[0],
                             batch_size=batch_size, seed=0, label=run)
    return {"source": _source(run, checkpoint, config, len(data.x)), "grid": grid}


def corruptions(run: str, corruption_dir: str, *, checkpoint: str = "last",
                severities=(1, 2, 3, 4, 5), images: int | None = None, batch_size: int = 256,
                device: str | None = None) -> dict:
    """Mean accuracy of one model on the CIFAR-10-C corruptions (SPECTRUM §6, Table 2: all
    19 corruptions; ``images`` per corruption × severity, None: all 10 000)."""
    from robustlayers.evaluate import corruption_accuracy

    model, config = _load(run, checkpoint, device)
    result = corruption_accuracy(model, corruption_dir, severities=tuple(severities),
                                 n_examples=images, batch_size=batch_size)
    n = result["n_per_cell"] * len(result["corruptions"]) * len(result["severities"])
    return {"source": _source(run, checkpoint, config, n), "corruptions": result}
