"""Splits: `bioscan-rebuild split` (any metadata CSV) and `splits` (the workflow step)."""

from __future__ import annotations

import json
from pathlib import Path

from bioscan_rebuild.cli.common import distinct_outputs, file_outputs, tie_order_option
from bioscan_rebuild.core.errors import InputError
from bioscan_rebuild.core.io import check_listed

FREEZE_MANIFEST_HELP = (
    "the MANIFEST.json of the release the --freeze CSV belongs to: the CSV must be the file it lists (a release "
    "edited after it was built is refused)"
)


def cmd_split(args) -> int:
    from bioscan_rebuild.splits.stage import split_csv

    _check_freeze(args)
    distinct_outputs([args.input, args.freeze], [args.output, args.summary])
    file_outputs(args.output, args.summary)
    summary = split_csv(
        args.input, args.output, freeze_csv=args.freeze, summary_csv=args.summary, tie_order=args.tie_order
    )
    counts = ", ".join(f"{k} {v}" for k, v in summary["splits"].items())
    unmatched = f"; {summary['freeze_unmatched']} freeze rows match no record" if summary["freeze_unmatched"] else ""
    print(
        f"wrote {summary['rows']} rows ({summary['frozen']} frozen{unmatched}) to {args.output}: {counts}; "
        f"tie_order: {summary['tie_order']}"
    )
    return 0


def _check_freeze(args) -> None:
    if args.freeze_manifest:
        if not args.freeze:
            raise InputError("--freeze-manifest checks the --freeze file: give both")
        check_listed(args.freeze_manifest, args.freeze)


def cmd_splits(args) -> int:
    from bioscan_rebuild.splits.stage import SPLIT_OUTPUTS, split_tables

    if not args.barcodes:  # "must pass at least one table", naming no option
        raise InputError("splits: give the barcode shards (--barcodes)")
    _check_freeze(args)
    outputs = [Path(args.outdir) / name for name in SPLIT_OUTPUTS]
    distinct_outputs([args.curated, *args.barcodes, args.freeze, args.freeze_manifest, *args.images], outputs)
    summary = split_tables(args.curated, args.barcodes, args.outdir, args.freeze, args.images, args.tie_order)
    print(json.dumps(summary, sort_keys=True))
    return 0


def register(sub) -> None:
    p = sub.add_parser("split", help="assign the BIOSCAN-5M splits to a metadata CSV")
    p.add_argument("input", help="metadata CSV with processid, genus, species, dna_barcode")
    p.add_argument("output", help="where to write the CSV with the split column filled")
    p.add_argument(
        "--freeze",
        help="processid,split CSV of a previous release (its metadata/split_history.csv, or its metadata CSV): "
        "those records keep their split; its barcode_key or dna_barcode column keeps their barcodes' split too, "
        "and is required when some of them are not in the input",
    )
    p.add_argument("--freeze-manifest", help=FREEZE_MANIFEST_HELP)
    p.add_argument("--summary", help="also write samples/barcodes/species per split to this CSV")
    tie_order_option(p)
    p.set_defaults(func=cmd_split)

    p = sub.add_parser("splits", help="the workflow's split step: curated labels + barcode shards")
    p.add_argument("--curated", required=True)
    p.add_argument("--barcodes", nargs="*", action="extend", default=[])
    p.add_argument(
        "--freeze",
        help="processid,split CSV of a previous release, with barcode_key or dna_barcode (its "
        "metadata/split_history.csv, or its metadata CSV): those records and their barcodes keep their split",
    )
    p.add_argument("--freeze-manifest", help=FREEZE_MANIFEST_HELP)
    p.add_argument(
        "--images", nargs="*", action="extend", default=[], help="image-stage results per shard (excludes empty wells)"
    )
    p.add_argument("--outdir", required=True)
    tie_order_option(p)
    p.set_defaults(func=cmd_splits)
