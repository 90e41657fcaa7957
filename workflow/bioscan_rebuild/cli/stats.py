"""Statistics: `bioscan-rebuild stats` (the tables and figures the BIOSCAN-5M paper documents its data with)."""

from __future__ import annotations

import json

from bioscan_rebuild.cli.common import distinct_outputs, non_negative_int, positive_int


def cmd_stats(args) -> int:
    from bioscan_rebuild.core.errors import InputError
    from bioscan_rebuild.stats.stage import read_workflow_table, run_stats, stats_of_table

    workflow_inputs = args.curated or args.barcodes or args.splits or args.images
    if bool(args.release) == bool(workflow_inputs):
        raise InputError("stats: give either a RELEASE folder or --curated, --barcodes and --splits (not both)")
    if args.release:  # a release's files are its manifest's: stats written into it broke its audit
        distinct_outputs(outputs=[args.outdir], folders=[args.release])
        summary = run_stats(args.release, args.outdir, seed=args.seed, pairs_per_comparison=args.pairs)
    else:
        if not (args.curated and args.barcodes and args.splits):
            raise InputError("stats: the workflow inputs are --curated, --barcodes and --splits (and --images)")
        table = read_workflow_table(args.curated, args.barcodes, args.splits, args.images)
        summary = stats_of_table(table, args.outdir, seed=args.seed, pairs_per_comparison=args.pairs)
    print(json.dumps(summary, sort_keys=True))
    return 0


def register(sub) -> None:
    p = sub.add_parser(
        "stats",
        help="statistics tables, stats.json and figures of a release (or of the workflow tables it is built from)",
    )
    p.add_argument("release", nargs="?", help="release folder (the one holding bioscan5m/, or bioscan5m/ itself)")
    p.add_argument("-o", "--outdir", required=True, help="folder for the {table}.csv files, stats.json, figures/")
    p.add_argument("--seed", type=non_negative_int, default=0, help="seed of the random barcode pairs (default 0)")
    p.add_argument("--pairs", type=positive_int, default=2000, help="barcode pairs per comparison (default 2000)")
    p.add_argument("--curated", help="instead of a release: the metadata stage's curated.parquet")
    p.add_argument("--barcodes", nargs="*", action="extend", default=[], help="... its barcode shards")
    p.add_argument("--splits", help="... the split stage's splits.parquet")
    p.add_argument(
        "--images", nargs="*", action="extend", default=[], help="... the image results per shard (for the size fields)"
    )
    p.set_defaults(func=cmd_stats)
