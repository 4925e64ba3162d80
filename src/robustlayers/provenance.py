"""What produced a result: library versions, code version, machine."""

from __future__ import annotations

import platform
import re
import subprocess
from pathlib import Path

import numpy
import torch

from robustlayers import __version__

_PACKAGE_DIR = Path(__file__).resolve().parent


def _git(root: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True,
                          timeout=5, check=True).stdout.strip()


def _is_robustlayers_checkout(top: Path, package_dir: Path) -> bool:
    """True when the git work tree ``top`` is robustlayers' own source tree: this package lives
    at ``top/src/robustlayers`` and ``top/pyproject.toml`` names the project robustlayers.
    A copy installed into some other repository (a virtual environment inside a project, a
    vendored package) fails this test, so that repository's commit is never recorded."""
    try:
        if (top / "src" / "robustlayers").resolve() != package_dir.resolve():
            return False
        text = (top / "pyproject.toml").read_text(encoding="utf-8")
    except OSError:
        return False
    return re.search(r'^\s*name\s*=\s*"robustlayers"\s*$', text, flags=re.MULTILINE) is not None


def git_commit(package_dir: Path = _PACKAGE_DIR) -> str | None:
    """The commit of robustlayers' own git checkout holding ``package_dir`` (with ``-dirty``
    when tracked files have local edits), or None when the package does not run from one."""
    try:
        top = Path(_git(package_dir, "rev-parse", "--show-toplevel"))
        if not _is_robustlayers_checkout(top, package_dir):
            return None
        commit = _git(top, "rev-parse", "HEAD")
        dirty = _git(top, "status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ("-dirty" if dirty else "")


def code_version(package_dir: Path = _PACKAGE_DIR) -> str:
    """What code produced a result: ``"robustlayers 0.1.0"`` for an installed copy, plus
    ``"+git <commit>[-dirty]"`` when running from robustlayers' own git checkout. A copy
    installed inside another project's git repository records only its version."""
    commit = git_commit(package_dir)
    return f"robustlayers {__version__}" + (f" +git {commit}" if commit else "")


def environment() -> dict:
    """Versions and code version recorded with every result."""
    return {
        "robustlayers": __version__,
        "code_version": code_version(),
        "git_commit": git_commit(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "platform": platform.platform(),
        "cuda": torch.version.cuda,
        "num_threads": torch.get_num_threads(),
    }
