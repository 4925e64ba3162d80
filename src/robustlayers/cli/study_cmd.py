"""``robustlayers study NAME``: one paper's experiment as one command (see
:mod:`robustlayers.studies`). Every option of the study's options dataclass is a flag; the
preset (``demo``, ``quick``, ``paper``) fills the rest. ``--dry-run`` prints the plan only;
running the same study into the same ``--out`` again reuses every finished run;
``robustlayers study --resume FOLDER`` continues an interrupted study with its saved options.
"""

from __future__ import annotations

import dataclasses

from robustlayers.cli.common import HelpFormatter, print_json
from robustlayers.studies.execute import EXECUTORS


def _add_runtime(parser) -> None:
    parser.add_argument("--executor", default="local", choices=EXECUTORS,
                        help="local: this machine (--jobs processes); ray: Ray tasks on a local "
                        "instance or the cluster at --address")
    parser.add_argument("--jobs", type=int, default=1,
                        help="runs at once (local: worker processes, each with cores/jobs "
                        "threads; ray: slots the cluster's CPUs are split into)")
    parser.add_argument("--address", default=None,
                        help="Ray cluster address (auto, HOST:PORT, ray://HOST:10001); default: "
                        "start a local Ray instance")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--json", action="store_true",
                        help="print the study record (what study.json holds) as JSON")


def _add_study(sub, study) -> None:
    parser = sub.add_parser(study.name, help=f"{study.paper}: {study.summary}",
                            description=f"{study.paper}. {study.summary}",
                            formatter_class=HelpFormatter)
    parser.add_argument("--preset", default="quick", choices=list(study.presets),
                        help="option values to start from: "
                        + "; ".join(f"{name}: {', '.join(f'{k}={v}' for k, v in values.items())}"
                                    for name, values in study.presets.items()))
    parser.add_argument("--out", default=None,
                        help="study folder (runs/, evaluations/, study.json, report.html); "
                        "default studies/NAME-PRESET")
    parser.add_argument("--dry-run", action="store_true",
                        help="print the plan (runs, dependencies, estimated cost) and stop")
    group = parser.add_argument_group(f"{study.name} options (default: the preset's value)")
    for field in dataclasses.fields(study.options):
        choices = field.metadata.get("choices")
        group.add_argument(f"--{field.name.replace('_', '-')}", dest=f"opt_{field.name}",
                           default=None, metavar=field.name.upper(),
                           help=field.metadata.get("help", "") + (
                               f" (choices: {', '.join(choices)})" if choices else "")
                           + f" [built-in default: {field.default}]")
    _add_runtime(parser)
    parser.set_defaults(_study=study.name)


def add_parser(subparsers):
    from robustlayers.studies import get_study, list_studies

    parser = subparsers.add_parser(
        "study", help="run a paper's experiment: plan, execute, aggregate, claim verdicts",
        formatter_class=HelpFormatter,
        description="The papers' experiments as one command each: partial-at (EARLY), "
        "eps-spectrum (SPECTRUM), layer-subsets (RAT), clat (CLAT). Each plans its runs, "
        "executes them (in parallel with --jobs, or on Ray), reuses finished runs, and writes "
        "study.json and report.html with the paper's tables and whether each claim holds.")
    parser.add_argument("--resume", default=None, metavar="FOLDER",
                        help="continue the study in FOLDER with the options it was started with")
    parser.add_argument("--list", action="store_true", help="list the studies")
    _add_runtime(parser)
    sub = parser.add_subparsers(dest="study", metavar="STUDY")
    for name in list_studies():
        _add_study(sub, get_study(name))
    return parser


def run(args) -> int:
    from robustlayers import studies
    from robustlayers.errors import ConfigError

    if args.list:
        for name in studies.list_studies():
            study = studies.get_study(name)
            print(f"{name:14s} {study.paper}: {study.summary}")
        return 0
    runtime = dict(executor=args.executor, jobs=args.jobs, address=args.address,
                   quiet=args.quiet)
    if args.resume:
        if getattr(args, "_study", None):
            raise ConfigError("--resume FOLDER takes the study from FOLDER/study.json; give "
                              "either a study name or --resume, not both")
        record = studies.resume(args.resume, **runtime)
    elif not getattr(args, "_study", None):
        raise ConfigError(f"name a study ({', '.join(studies.list_studies())}) or --resume "
                          f"FOLDER; robustlayers study --list describes them")
    else:
        options = {k[4:]: v for k, v in vars(args).items() if k.startswith("opt_")}
        record = studies.run(args._study, args.preset, out=args.out, dry_run=args.dry_run,
                             **runtime, **options)
    if args.json:
        print_json(record)
    elif record.get("status") != "planned":
        _print_summary(record)
    return 0 if record.get("status") in ("planned", "finished") else 1


def _print_summary(record: dict) -> None:
    print(f"\nstudy {record['study']}: {record['status']} in {record.get('wall_s', 0):.0f} s")
    for claim in record.get("claims", []):
        print(f"  [{claim['verdict']}] {claim['id']}: {claim['claim']}")
    print(f"report: {record.get('report')}")
