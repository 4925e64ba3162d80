"""The cost estimate printed with a study's plan, from throughput measured on this machine.

A run's cost is counted in image passes (one forward and backward of one image): every attack
step is one pass, the training step one more, and the evaluations add theirs. The throughput
(passes per second) is measured once per model and dataset by timing a PGD attack on
one batch — an estimate of order of magnitude, which the plan says.
"""

from __future__ import annotations

import time

ADVERSARIAL_EXTRA = {"trades": 1, "mart": 1, "awp": 2, "rat-wp": 2, "clat": 1}
"""Passes per image beyond attack steps + 1 (extra clean forwards, weight perturbation)."""


def passes_per_image(config: dict) -> float:
    """Training passes per image per epoch of a run config."""
    method = config.get("method", "natural")
    steps = int(config.get("steps") or 0)
    if method == "natural":
        return 1.0
    if method == "fast-at":
        return 2.0
    if method == "partial-at":
        code = str((config.get("method_args") or {}).get("code", ""))
        return float(steps + 1) if ("A2" in code or "Ar" in code) else 1.0
    return float(steps + 1 + ADVERSARIAL_EXTRA.get(method, 0))


def train_passes(config: dict, train_images: int, test_images: int) -> float:
    """Image passes of a whole run: training, the per-epoch evaluation, the final one."""
    epochs = int(config.get("epochs") or 1)
    train_size = config.get("train_size") or train_images
    eval_size = config.get("eval_size") or test_images
    test_size = config.get("test_size") or test_images
    eval_steps = int(config.get("eval_steps") or 0)
    final_steps = config.get("final_steps")
    final_steps = eval_steps if final_steps is None else int(final_steps)
    per_epoch = train_size * passes_per_image(config) + eval_size * (eval_steps + 1) / 2
    if config.get("train_eval_size"):
        per_epoch += config["train_eval_size"] * (int(config.get("steps") or 0) + 1) / 2
    return epochs * per_epoch + 2 * test_size * (final_steps + 1) / 2


SPLIT_SIZES = {"fashion-mnist": (60000, 10000), "mnist": (60000, 10000),
               "cifar10": (50000, 10000), "cifar100": (50000, 10000), "svhn": (73257, 26032)}
"""(train, test) images of the registered datasets, for runs that use a whole split."""

_THROUGHPUT: dict = {}


def throughput(config: dict) -> float:
    """Measured image passes per second for the config's model, data shape and batch size:
    a PGD attack on one batch (the bulk of an adversarial run's work), timed after a warm-up."""
    import torch

    from robustlayers.attacks import PGD, ThreatModel
    from robustlayers.builders import build_model
    from robustlayers.data import get_dataset_info

    info = get_dataset_info(config["dataset"])
    batch = int(config.get("batch_size") or 128)
    key = (config["model"], config["dataset"], batch, torch.get_num_threads())
    if key not in _THROUGHPUT:
        model = build_model(config["model"], info, **(config.get("model_kwargs") or {})).eval()
        x = torch.rand(batch, *info.shape)
        y = torch.randint(0, info.num_classes, (batch,))
        attack = PGD(ThreatModel("linf", info.default_eps), steps=3, seed=0)
        attack(model, x, y)
        started = time.perf_counter()
        attack(model, x, y)
        _THROUGHPUT[key] = 3 * batch / max(time.perf_counter() - started, 1e-6)
    return _THROUGHPUT[key]


def estimate_seconds(task) -> float | None:
    """Estimated seconds of a train task on this machine (None for an evaluation, or a dataset
    whose size is not known)."""
    if task.kind != "train" or task.spec.get("dataset") not in SPLIT_SIZES:
        return None
    train_n, test_n = SPLIT_SIZES[task.spec["dataset"]]
    return train_passes(task.spec, train_n, test_n) / throughput(task.spec)
