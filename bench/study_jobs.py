"""Wall time of one study with ``--jobs 1`` and ``--jobs N`` (fresh folders each), and the
speed-up; the same tables must come out of both.

    .venv/bin/python bench/study_jobs.py --study layer-subsets --preset quick --jobs 2 \\
        [--set subsets=1;3 --set epochs=4] [--out bench/results/study_jobs.json]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from robustlayers import studies
from robustlayers.provenance import environment
from robustlayers.runs import atomic_write_json


def _timed(name: str, preset: str, jobs: int, options: dict) -> tuple[float, dict]:
    with tempfile.TemporaryDirectory(prefix="study-jobs-") as folder:
        started = time.perf_counter()
        record = studies.run(name, preset, out=Path(folder) / "study", jobs=jobs, quiet=True,
                             log=lambda *_: None, **options)
        return time.perf_counter() - started, record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--study", default="layer-subsets")
    parser.add_argument("--preset", default="quick")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--set", action="append", default=[], metavar="OPTION=VALUE")
    parser.add_argument("--out", default="bench/results/study_jobs.json")
    args = parser.parse_args()
    options = dict(item.split("=", 1) for item in args.set)
    one, record_one = _timed(args.study, args.preset, 1, options)
    many, record_many = _timed(args.study, args.preset, args.jobs, options)
    same = record_one["tables"] == record_many["tables"]
    result = {"study": args.study, "preset": args.preset, "options": options,
              "runs": sum(t["kind"] == "train" for t in record_one["plan"]),
              "tasks": len(record_one["plan"]), "seconds_jobs_1": round(one, 1),
              f"seconds_jobs_{args.jobs}": round(many, 1), "speedup": round(one / many, 2),
              "same_tables": same,
              "verdicts": {c["id"]: c["verdict"] for c in record_one.get("claims", [])},
              "environment": environment()}
    print(json.dumps({k: v for k, v in result.items() if k != "environment"}, indent=2))
    atomic_write_json(args.out, result)


if __name__ == "__main__":
    main()
