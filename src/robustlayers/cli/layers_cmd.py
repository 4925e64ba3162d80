"""``robustlayers layers MODEL`` / ``layers --run RUN_DIR``: the layer map, with the layers a
selection picks."""

from __future__ import annotations

from robustlayers.cli.common import (HelpFormatter, add_normalize_option, add_quiet_option,
                                     default_dataset_for, print_json, print_table)
from robustlayers.data import get_dataset_info, list_datasets
from robustlayers.layers import layer_map, select

ROW_FIELDS = ("index", "name", "kind", "block", "params", "out_shape", "depth", "selected")


def add_parser(subparsers):
    parser = subparsers.add_parser(
        "layers", help="print a model's layer map", formatter_class=HelpFormatter,
        description="Print the layer map — parameterised leaf modules in forward execution "
        "order, EARLY's linearisation of the network (Bakiskan, Cekic, Madhow: Early Layers "
        "Are More Important For Adversarial Robustness) — with the output shape of each layer, "
        "and mark the layers a selection expression picks.")
    parser.add_argument("model", nargs="?", default=None,
                        help="zoo model name (see `robustlayers models`); not with --run")
    parser.add_argument("--run", metavar="RUN_DIR", default=None,
                        help="a training run directory: its model, dataset and weights")
    parser.add_argument("--which", default="best", metavar="best|last",
                        help="checkpoint of --run (also an epoch tag)")
    parser.add_argument("--dataset", default=None,
                        help=f"dataset that fixes input shape and classes "
                        f"({', '.join(list_datasets())}); default: the run's, else "
                        "fashion-mnist for smallcnn and cifar10 otherwise")
    parser.add_argument("--select", default=None, metavar="EXPR",
                        help="selection expression, e.g. 'block:3,4' or 'kind:conv - index:0'")
    parser.add_argument("--checkpoint", default=None, help="weights to load (.safetensors or .pt)")
    add_normalize_option(parser)
    parser.add_argument("--json", action="store_true",
                        help="print JSON: one object per layer with " + ", ".join(ROW_FIELDS))
    add_quiet_option(parser)
    return parser


def _load(args):
    """(model, dataset name, source text) from --run or MODEL [--checkpoint]."""
    if args.run is not None:
        if args.model or args.checkpoint or args.normalize:
            raise ValueError("--run takes the model, weights and normalisation from the run; "
                             "drop MODEL, --checkpoint and --normalize")
        from robustlayers.runs import load_run_model

        model, config = load_run_model(args.run, args.which)
        dataset = args.dataset or config.get("dataset")
        if not dataset:
            raise ValueError(f"the config of run {args.run} names no dataset; pass --dataset")
        return model, dataset, f"{config.get('model')} from run {args.run} ({args.which})"
    if not args.model:
        raise ValueError("name a zoo model (e.g. `robustlayers layers resnet18`) or pass "
                         "--run RUN_DIR")
    from robustlayers.builders import build_model

    dataset = args.dataset or default_dataset_for(args.model)
    model = build_model(args.model, dataset, checkpoint=args.checkpoint,
                        normalize=args.normalize)
    return model, dataset, args.model


def layer_rows(model, expression: str | None) -> list[dict]:
    """One row per layer: index, name, kind, block, params, out_shape (list), selected."""
    lmap = layer_map(model)
    chosen = set(select(model, expression).names) if expression is not None else set(lmap.names)
    return [{"index": i.index, "name": i.name, "kind": i.kind, "block": i.block,
             "params": i.params, "out_shape": list(i.out_shape or ()), "depth": i.depth,
             "selected": i.name in chosen} for i in lmap]


def run(args) -> int:
    from robustlayers.evaluate.progress import show_progress

    with show_progress(not args.quiet):
        model, dataset, source = _load(args)
    info = get_dataset_info(dataset)
    rows = layer_rows(model, args.select)
    if args.json:
        print_json(rows)
        return 0
    chosen = [r for r in rows if r["selected"]]
    print(f"{source} on {info.name} {info.shape}: {len(rows)} layers, "
          f"{sum(r['params'] for r in rows):,} parameters, blocks "
          f"{', '.join(layer_map(model).blocks)}")
    if args.select:
        print(f"selection {args.select!r}: {len(chosen)} layers, "
              f"{sum(r['params'] for r in chosen):,} parameters")
    table = [dict(r, out_shape="x".join(map(str, r["out_shape"])),
                  depth="" if r["depth"] is None else r["depth"],
                  selected="*" if r["selected"] else "") for r in rows]
    print_table(table, list(ROW_FIELDS))
    return 0
