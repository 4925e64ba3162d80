"""The papers' experiments as studies: one call (or ``robustlayers study NAME``) plans the runs,
executes them on a local pool or a Ray cluster, survives interruption, aggregates the paper's
tables and figures, and says whether each of the paper's claims holds here.

    from robustlayers.studies import run
    record = run("layer-subsets", preset="quick", jobs=2)
    record["claims"]        # [{"id", "paper", "claim", "verdict", "measured", "threshold"}]

Studies: ``partial-at`` (EARLY), ``eps-spectrum`` (SPECTRUM), ``layer-subsets`` (RAT),
``clat`` (CLAT).
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path

from robustlayers.errors import ConfigError

MODULES = {
    "partial-at": "robustlayers.studies.partial_at",
    "eps-spectrum": "robustlayers.studies.eps_spectrum",
    "layer-subsets": "robustlayers.studies.layer_subsets",
    "clat": "robustlayers.studies.clat",
}


def list_studies() -> list[str]:
    return list(MODULES)


def get_study(name: str):
    """The :class:`~robustlayers.studies.base.Study` called ``name``."""
    if name not in list_studies():
        import difflib

        close = difflib.get_close_matches(str(name), list_studies(), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(f"unknown study {name!r}{hint}; studies: {', '.join(list_studies())}")
    return importlib.import_module(MODULES[name]).STUDY


def default_out(name: str, preset: str) -> Path:
    return Path("studies") / f"{name}-{preset}"


def run(name: str, preset: str = "quick", *, out=None, executor: str = "local", jobs: int = 1,
        address: str | None = None, dry_run: bool = False, quiet: bool = False, log=print,
        runs_root=None, **options) -> dict:
    """Run study ``name`` (its ``preset`` with ``options`` on top) into ``out`` and return its
    record (what study.json holds); ``runs_root`` (default ``out/runs``) may be shared."""
    from robustlayers.studies.runner import run_study

    study = get_study(name)
    opts = study.build_options(preset, options)
    return run_study(study, opts, preset=preset, out=out or default_out(name, preset),
                     executor=executor, jobs=jobs, address=address, dry_run=dry_run,
                     quiet=quiet, log=log, runs_root=runs_root)


def resume(folder, *, executor: str = "local", jobs: int = 1, address: str | None = None,
           quiet: bool = False, log=print) -> dict:
    """Continue the study in ``folder`` with the options its study.json records."""
    path = Path(folder) / "study.json"
    if not path.is_file():
        raise ConfigError(f"{folder} holds no study (no study.json); start one with "
                          f"robustlayers study NAME --out {folder}")
    saved = json.loads(path.read_text(encoding="utf-8"))
    return run(saved["study"], saved["preset"], out=folder, executor=executor, jobs=jobs,
               address=address, quiet=quiet, log=log, runs_root=saved.get("runs_root"),
               **saved["options"])
