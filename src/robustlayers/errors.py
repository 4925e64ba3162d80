"""The errors robustlayers raises on purpose: one base type with a subclass per area.

Every error names the offending input and, where there is a fixed set, the valid choices.
``RobustLayersError`` subclasses ``ValueError``, so code written against the earlier
``except ValueError`` keeps working. Each class carries the exit status the command line uses:
2 for bad input (the command was called wrongly: fix the command), 1 for work that failed on
valid input (a corrupt file, a run that broke). This module imports nothing from robustlayers,
so that every package may use it.

    RobustLayersError
    ├── ConfigError          a setting or argument has the wrong type or value
    │   └── OutputPathError  an output file or folder cannot be written there
    ├── SelectionError       a layer selection that cannot be parsed or matches nothing
    ├── DataError            a dataset that is unknown, missing or malformed
    ├── CheckpointError      a weights file that cannot be read safely or does not fit
    │   └── CheckpointCorrupt  a run's checkpoint that fails verification (exit 1)
    ├── RunError             a run directory or runs index that cannot be used as asked
    │   ├── RunStoreError    a run's files or the runs index cannot be read (exit 1)
    │   └── RunInterrupted   a run stopped by Ctrl-C / SIGTERM (exit 130 / 143)
    └── AttackError          an attack or threat model with invalid settings
"""

from __future__ import annotations

USAGE = 2
FAILURE = 1


class RobustLayersError(ValueError):
    """Base of every error robustlayers raises on purpose. ``exit_code`` is what the command
    line exits with (2: bad input, 1: failed work)."""

    exit_code: int = USAGE


class ConfigError(RobustLayersError):
    """A configuration value or function argument has the wrong type or value; the message names
    the key and what is expected."""


class OutputPathError(ConfigError):
    """An output path that cannot be written: a file where a folder is expected (or the
    reverse), a read-only folder, or a name too long for the filesystem."""


class SelectionError(RobustLayersError):
    """A selection that cannot be parsed, names an unknown layer, or matches nothing."""


class DataError(RobustLayersError):
    """Data missing, malformed or unknown; the message names the path and how to get the data."""


class CheckpointError(RobustLayersError):
    """A checkpoint cannot be read safely or does not match the model."""


class CheckpointCorrupt(CheckpointError):
    """A checkpoint file is missing, truncated, does not match its manifest, or holds more than
    plain tensors; it is never loaded."""

    exit_code = FAILURE


class RunError(RobustLayersError):
    """A run directory or runs index that cannot be used as asked (unknown run, unreadable
    record, config that differs from the run's)."""


class RunStoreError(RunError):
    """A run's files (config.json, metrics.jsonl, result.json, ...) or the runs index cannot be
    read or written; the message names the file."""

    exit_code = FAILURE


class RunInterrupted(RunError):
    """A run stopped by a signal: Ctrl-C (exit 130) or SIGTERM (exit 143). The message says how
    to resume it."""

    exit_code = 130

    def __init__(self, message: str, *, exit_code: int = 130):
        super().__init__(message)
        self.exit_code = exit_code


class AttackError(RobustLayersError):
    """An attack or threat model with invalid settings (norm, budget, steps)."""


def describe_value(value: object, limit: int = 60) -> str:
    """``the str 'smallcnn'``: a value's type and a short repr, for error messages."""
    text = repr(value)
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return f"the {type(value).__name__} {text}"


def expect_module(value: object, *, function: str, argument: str = "model") -> None:
    """ConfigError unless ``value`` is a ``torch.nn.Module`` (checked without importing torch
    here). A model name in its place gets the hint to build the model first."""
    if hasattr(value, "named_modules") and hasattr(value, "state_dict"):
        return
    hint = ""
    if isinstance(value, str):
        hint = (f"; build the model first, e.g. robustlayers.models.create_model({value!r}, "
                "num_classes=...) or robustlayers.builders.build_model(name, dataset)")
    raise ConfigError(f"{function}() expects a torch.nn.Module as {argument!r}, got "
                      f"{describe_value(value)}{hint}")


__all__ = [
    "AttackError", "CheckpointCorrupt", "CheckpointError", "ConfigError", "DataError",
    "FAILURE", "OutputPathError", "RobustLayersError", "RunError", "RunInterrupted",
    "RunStoreError", "SelectionError", "USAGE", "describe_value", "expect_module",
]
