"""Progress of long work on stderr: one switch for a whole computation, and nested-safe bars.

    with show_progress():                      # the CLIs do this unless --quiet
        evaluate_model(model, x, y, attacks)   # one bar per attack (batches done / total)

Off by default (library calls print nothing). Only the outermost :func:`task` draws a bar, so a
criticality-stability loop shows one bar over its repeats, not one per inner attack. Bars and
notes go to stderr, so ``--json`` output on stdout stays clean.
"""

from __future__ import annotations

import sys
from contextlib import contextmanager
from contextvars import ContextVar

_ENABLED: ContextVar[bool] = ContextVar("robustlayers_progress", default=False)
_ACTIVE: ContextVar[bool] = ContextVar("robustlayers_progress_bar", default=False)


@contextmanager
def show_progress(enabled: bool = True):
    """Turn progress reporting on (or off) for the code run inside the block."""
    token = _ENABLED.set(bool(enabled))
    try:
        yield
    finally:
        _ENABLED.reset(token)


def progress_enabled() -> bool:
    """True inside ``show_progress()`` (and not inside ``show_progress(False)``)."""
    return _ENABLED.get()


def note(message: str) -> None:
    """One line on stderr when progress is on (a step starting, a file being read)."""
    if _ENABLED.get():
        print(message, file=sys.stderr, flush=True)


class _Silent:
    def update(self, n: int = 1) -> None:
        pass

    def set_postfix_str(self, text: str) -> None:
        pass


@contextmanager
def task(total: int, desc: str, unit: str = "batch"):
    """A progress bar over ``total`` steps (``bar.update(n)``) when progress is on and no outer
    bar is drawing; otherwise a silent stand-in with the same methods."""
    if not _ENABLED.get() or _ACTIVE.get():
        yield _Silent()
        return
    from tqdm.auto import tqdm

    token = _ACTIVE.set(True)
    bar = tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, leave=True,
               dynamic_ncols=True, mininterval=0.5)
    try:
        yield bar
    finally:
        bar.close()
        _ACTIVE.reset(token)
