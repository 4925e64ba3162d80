"""``robustlayers models``: list the model zoo."""

from __future__ import annotations

from robustlayers.cli.common import print_json, print_table
from robustlayers.errors import ConfigError
from robustlayers.models import list_models, model_info


def add_parser(subparsers):
    parser = subparsers.add_parser("models", help="list the model zoo",
                                   description="List the zoo's architectures.")
    parser.add_argument("pattern", nargs="?", default="*", help="fnmatch filter, e.g. 'resnet*'")
    parser.add_argument("--json", action="store_true", help="print JSON")
    return parser


def run(args) -> int:
    names = list_models(args.pattern)
    if not names:
        raise ConfigError(f"no zoo model matches {args.pattern!r}; models: {', '.join(list_models())}")
    rows = []
    for name in names:
        info = model_info(name)
        rows.append({"name": name, "family": info.family, "papers": ",".join(info.papers),
                     "description": info.description})
    if args.json:
        print_json(rows)
    else:
        print_table(rows, ["name", "family", "papers", "description"])
    return 0
