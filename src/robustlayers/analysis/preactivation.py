"""Final pre-activation statistics (SPECTRUM §6, Fig. 3).

SPECTRUM explains why low-ε models cope better with common corruptions by the mean of the *final
pre-ReLU / pre-Swish features*: the further from zero, the fewer ReLU inputs a large corruption
flips. Here "final pre-activation" = the *input* of the last activation module executed before
global pooling / the head (zoo ResNets: the last block's ``act``; PreAct ResNet: the top-level
final ``act``); any module path can be given instead. Mean, standard deviation, share of
positive values and per-channel means are exact; quantiles and the histogram come from a seeded
uniform subsample of at most ``max_samples`` values (stated in the record).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from robustlayers.analysis._common import (
    data_shape, histogram, is_activation, jsonable, quantiles, round_sig, shared_edges,
    split_data,
)
from robustlayers.evaluate.metrics import batches, eval_mode, model_device
from robustlayers.evaluate.validate import validate_count


def final_activation(model: nn.Module, input_shape=None) -> str:
    """Module path of the final activation: the input of the last activation module executed on
    a spatial (N, C, H, W) input, i.e. before global pooling / the MLP head.

    Zoo models declare it (``model.final_activation``: ResNet ``layer4.1.act``, PreAct ResNet /
    WRN ``act``, small CNN ``layer2.5``) and that name is used as is. Other models are probed
    with one forward pass; see :func:`probe_final_activation`."""
    declared = getattr(model, "final_activation", None)
    if isinstance(declared, str) and declared:
        return declared
    return probe_final_activation(model, input_shape)


def probe_final_activation(model: nn.Module, input_shape=None) -> str:
    """For models that do not declare ``final_activation``: run zeros of ``input_shape`` through
    the model and return the last activation module that saw a spatial input (the last one
    executed when none did)."""
    shape = tuple(input_shape or getattr(model, "input_shape", ()) or ())
    if not shape:
        raise ValueError("final_activation needs input_shape (C,H,W): the model has no "
                         "input_shape attribute; pass input_shape or a module path")
    order, handles = [], []

    def record(name):
        return lambda _m, args: order.append((name, args[0].dim() >= 3))

    for name, module in model.named_modules():
        if name and is_activation(module):
            handles.append(module.register_forward_pre_hook(record(name)))
    try:
        with eval_mode(model), torch.no_grad():
            model(torch.zeros((2, *shape), device=model_device(model)))
    finally:
        for handle in handles:
            handle.remove()
    if not order:
        raise ValueError("the model has no activation modules (ReLU, SiLU, ...); "
                         "pass the module path of the pre-activation point")
    spatial = [name for name, is_spatial in order if is_spatial]
    return (spatial or [name for name, _ in order])[-1]


class _Moments:
    """Forward pre-hook that accumulates exact moments of a module's input, per-channel sums and
    a seeded uniform subsample of about ``max_samples`` values over ``n_images`` images."""

    def __init__(self, n_images: int, max_samples: int, seed: int):
        self.n_images, self.max_samples = n_images, max_samples
        self.generator = torch.Generator().manual_seed(int(seed))
        self.sum = self.sumsq = 0.0
        self.n = self.pos = self.channel_n = 0
        self.min, self.max = math.inf, -math.inf
        self.channel_sum, self.quota, self.samples = None, None, []

    def __call__(self, _module, args) -> None:
        z = args[0].detach().double()
        self.sum += float(z.sum())
        self.sumsq += float((z * z).sum())
        self.n += z.numel()
        self.pos += int((z > 0).sum())
        self.min, self.max = min(self.min, float(z.min())), max(self.max, float(z.max()))
        if z.dim() >= 2:
            per = z.transpose(0, 1).flatten(1)
            csum = per.sum(1).cpu()
            self.channel_sum = csum if self.channel_sum is None else self.channel_sum + csum
            self.channel_n += per.shape[1]
        if self.quota is None:
            self.quota = self.max_samples / max(1, z[0].numel() * self.n_images)
        flat = z.flatten().cpu()
        take = min(flat.numel(), math.ceil(self.quota * flat.numel()))
        self.samples.append(flat[torch.randperm(flat.numel(), generator=self.generator)[:take]]
                            .float())

    def summary(self, bins: int) -> dict:
        sample = torch.cat(self.samples).numpy().astype(np.float64)
        mean = self.sum / self.n
        edges = shared_edges(sample, bins)
        channel = (self.channel_sum / self.channel_n).tolist() \
            if self.channel_sum is not None else []
        return {
            "n_values": self.n, "mean": mean,
            "std": math.sqrt(max(0.0, self.sumsq / self.n - mean * mean)),
            "min": self.min, "max": self.max, "fraction_positive": self.pos / self.n,
            "per_channel_mean": [round_sig(v) for v in channel],
            "quantiles": quantiles(sample),
            "histogram": {"edges": [round_sig(float(e)) for e in edges],
                          "counts": histogram(sample, edges)},
            "n_sampled": int(sample.size),
        }


def preactivation_stats(model: nn.Module, data, *, module: str | None = None,
                        batch_size: int = 256, bins: int = 50, max_samples: int = 200_000,
                        seed: int = 0, input_shape=None, label: str | None = None,
                        source: str = "data") -> dict:
    """Distribution of the input of ``module`` (default: ``final_activation``) over ``data``
    (TensorData or (x, y)); SPECTRUM Fig. 3 plots its mean. Mean, std, share of positive
    values and per-channel means are exact; quantiles and the histogram come from a seeded
    uniform subsample of at most ``max_samples`` values."""
    from robustlayers.layers import resolve_module

    batch_size = validate_count(batch_size, name="batch_size")
    x, _ = split_data(data)
    path = module or final_activation(model, data_shape(model, x, input_shape))
    target = resolve_module(model, path)
    device = model_device(model)
    moments = _Moments(len(x), max_samples, seed)
    handle = target.register_forward_pre_hook(moments)
    try:
        with eval_mode(model), torch.no_grad():
            for part in batches(len(x), batch_size):
                model(x[part].to(device))
    finally:
        handle.remove()
    if moments.n == 0:
        raise ValueError(f"module {path!r} did not run during the forward pass")
    return jsonable({
        "analysis": "preactivation",
        "equation": "SPECTRUM §6 / Fig. 3 (mean of the final pre-activation features)",
        "label": label, "module": path, "where": "input", "source": source,
        "n_images": len(x),
        **moments.summary(bins),
        "sampling": f"uniform subsample of at most {max_samples} values (seed {seed}) "
                    "for quantiles and histogram; mean/std/fraction_positive are exact",
        "seed": seed,
    })


SPECTRUM_SEVERITIES = (5,)
"""Severities of SPECTRUM's pre-activation statistics on CIFAR-10-C (its released code)."""


def preactivation_corruptions(model: nn.Module, data_dir, *, corruptions=None,
                              severities=SPECTRUM_SEVERITIES, module: str | None = None,
                              batch_size: int = 256, seed: int = 0, label: str | None = None,
                              input_shape=None) -> dict:
    """``preactivation_stats`` on CIFAR-10-C (SPECTRUM §6, Fig. 3: its 19 corruptions at
    severity 5, as its released code computes them; ``severities`` takes any of 1–5): per
    (corruption, severity) mean and the overall mean over every value. The severities used
    are recorded."""
    from robustlayers.data import CIFAR10C_CORRUPTIONS, load_corruption
    from robustlayers.evaluate.corruptions import _check_severities

    severities = _check_severities(severities)
    names = list(corruptions or CIFAR10C_CORRUPTIONS)
    path = module or final_activation(model, input_shape)
    rows, total, count = [], 0.0, 0
    for name in names:
        for severity in severities:
            stats = preactivation_stats(model, load_corruption(data_dir, name, severity),
                                        module=path, batch_size=batch_size, seed=seed,
                                        source=f"{name}/{severity}", max_samples=10_000)
            rows.append({"corruption": name, "severity": severity, "mean": stats["mean"],
                         "fraction_positive": stats["fraction_positive"]})
            total += stats["mean"] * stats["n_values"]
            count += stats["n_values"]
    return jsonable({"analysis": "preactivation_corruptions", "label": label, "module": path,
                     "corruptions": names, "severities": list(severities),
                     "severity_rule": "SPECTRUM's code: severity 5 only"
                     if severities == SPECTRUM_SEVERITIES else "chosen severities",
                     "rows": rows, "mean": total / count if count else None, "seed": seed})
