"""``robustlayers layers MODEL``: the layer map, with the layers a selection picks."""

from __future__ import annotations

from robustlayers.builders import build_model
from robustlayers.cli.common import default_dataset_for, print_json, print_table
from robustlayers.data import get_dataset_info, list_datasets
from robustlayers.layers import layer_map, select


def add_parser(subparsers):
    parser = subparsers.add_parser(
        "layers", help="print a model's layer map",
        description="Print the layer map (parameterised leaf modules in forward execution order) "
        "and mark the layers a selection expression picks.")
    parser.add_argument("model", help="zoo model name (see `robustlayers models`)")
    parser.add_argument("--dataset", default=None,
                        help=f"dataset that fixes input shape and classes ({', '.join(list_datasets())}); "
                        "default: fashion-mnist for smallcnn, cifar10 otherwise")
    parser.add_argument("--select", default=None, metavar="EXPR",
                        help="selection expression, e.g. 'block:3,4' or 'kind:conv - index:0'")
    parser.add_argument("--checkpoint", default=None, help="weights to load (.safetensors or .pt)")
    parser.add_argument("--json", action="store_true", help="print JSON")
    return parser


def run(args) -> int:
    dataset = args.dataset or default_dataset_for(args.model)
    info = get_dataset_info(dataset)
    model = build_model(args.model, info, checkpoint=args.checkpoint)
    lmap = layer_map(model)
    chosen = set(select(model, args.select).names) if args.select is not None else set(lmap.names)
    rows = [{"index": i.index, "name": i.name, "kind": i.kind, "block": i.block,
             "params": i.params, "depth": i.depth if i.depth is not None else "",
             "selected": i.name in chosen,
             "out_shape": "x".join(map(str, i.out_shape or ()))} for i in lmap]
    if args.json:
        print_json([{**{k: r[k] for k in ("index", "name", "kind", "block", "params",
                                          "selected")}, "depth": lmap[r["name"]].depth}
                    for r in rows])
        return 0
    for row in rows:
        row["selected"] = "*" if row["selected"] else ""
    print(f"{args.model} on {dataset} {info.shape}: {len(lmap)} layers, "
          f"{sum(i.params for i in lmap):,} parameters, blocks {', '.join(lmap.blocks)}")
    if args.select:
        print(f"selection {args.select!r}: {len(chosen)} layers, "
              f"{sum(i.params for i in lmap if i.name in chosen):,} parameters")
    print_table(rows, ["index", "name", "kind", "block", "params", "out_shape", "depth",
                       "selected"])
    return 0
