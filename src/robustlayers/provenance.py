"""What produced a result: library versions, code version, machine."""

from __future__ import annotations

import platform
import subprocess
from pathlib import Path

import numpy
import torch

from robustlayers import __version__


def code_version() -> str:
    """The git commit of the robustlayers checkout (with ``-dirty`` when it has local edits),
    or ``"unknown"`` when the package is not running from a git checkout."""
    root = Path(__file__).resolve().parents[2]
    try:
        commit = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"],
            capture_output=True, text=True, timeout=5, check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, timeout=5, check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return commit + ("-dirty" if dirty else "")


def environment() -> dict:
    """Versions and code version recorded with every result."""
    return {
        "robustlayers": __version__,
        "code_version": code_version(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "platform": platform.platform(),
        "cuda": torch.version.cuda,
        "num_threads": torch.get_num_threads(),
    }
