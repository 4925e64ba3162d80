"""One PGD ascent step compiled as a single graph: forward, input gradient, projection.

``PGD(..., compile=True)`` (or a ``torch.compile`` mode: ``"default"``, ``"reduce-overhead"``
— CUDA graphs —, ``"max-autotune"``) runs every step after the first of each restart through
:func:`compiled_ascent_step`: ``torch.compile(ascent_step, fullgraph=True)``, so a step that
would break the graph (a host synchronisation such as ``.item()``, a data-dependent branch)
fails loudly instead of silently falling back to eager. The first step of each restart stays
eager: it holds the once-per-call checks (label range, zero-gradient note) that read values
from the device.

The compiled function is built once per mode for the whole process and takes the attack, the
model and the tensors as arguments, so new attack objects (a training loop makes one per batch
with a fresh seed) reuse the compiled code instead of compiling again. ``torch.autograd.grad``
is traced (Dynamo's ``trace_autograd_ops``), so the step is one forward-and-backward graph.

Compiling costs seconds to minutes once per process and shape; it pays on GPUs, where the step
is launch-bound. On CPU it is allowed but not the default (not measured faster there).
"""
from __future__ import annotations

import torch

MODES = ("default", "reduce-overhead", "max-autotune")
BACKEND = "inductor"  # tests trace with "aot_eager" (same graph, no code generation)
_COMPILED: dict[tuple[str, str], object] = {}


def check_compile(value):
    """Validate ``compile=``: False, True (= "default") or one of :data:`MODES`."""
    if value is False or value is None:
        return False
    if value is True:
        return "default"
    if value in MODES:
        return value
    raise ValueError(f"compile must be False, True or one of {', '.join(MODES)}, got {value!r}")


def ascent_step(attack, model, x, y, delta, alpha):
    """δ ← Π(δ + α·dir(∇_δ L(f(x+δ), y))) with x+δ kept in [0, 1] (the attack's own step rule;
    Madry et al. 2018, Eq. (2.1) for ℓ∞)."""
    grad = attack.gradient(lambda d: attack.objective(model(x + d), y), delta)
    return attack.step(x, delta, grad, alpha).detach()


def compiled_ascent_step(mode: str):
    """The process-wide compiled :func:`ascent_step` for ``mode`` (built on first use)."""
    key = (BACKEND, mode)
    if key not in _COMPILED:
        options = {"mode": mode} if BACKEND == "inductor" else {}
        _COMPILED[key] = torch.compile(ascent_step, fullgraph=True, backend=BACKEND, **options)
    compiled = _COMPILED[key]

    def run(*args):
        with torch._dynamo.config.patch(trace_autograd_ops=True):
            return compiled(*args)
    return run
