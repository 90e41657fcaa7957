"""Ingest: `bioscan-rebuild ingest {parse,list,inventory,join,accounting,run}`."""

from __future__ import annotations

import argparse
import json

from bioscan_rebuild.cli.common import batch_dirs
from bioscan_rebuild.ingest.bold import DEFAULT_MISSING_VALUES
from bioscan_rebuild.ingest.inventory import DEFAULT_NAME_PATTERN


def cmd_ingest_parse(args) -> int:
    from bioscan_rebuild.ingest.parse import parse_to_shards

    summary = parse_to_shards(
        args.export,
        args.batch,
        args.shards,
        args.outdir,
        missing_values=args.missing_value or DEFAULT_MISSING_VALUES,
        markers=tuple(args.marker) if args.marker else None,
    )
    print(json.dumps(summary, sort_keys=True))
    return 0


def cmd_ingest_list(args) -> int:
    from bioscan_rebuild.ingest.inventory import list_to_shards

    summary = list_to_shards(args.image_dir, args.batch, args.shards, args.outdir, args.name_pattern)
    print(json.dumps(summary, sort_keys=True))
    return 0


def cmd_ingest_inventory(args) -> int:
    from bioscan_rebuild.core.store import ImageStore
    from bioscan_rebuild.ingest.inventory import inventory_shard

    store = ImageStore(args.store, args.store_mode) if args.store else None
    table = inventory_shard(args.listing, batch_dirs(args.image_dir), args.output, store)
    problems = table["image_problem"].drop_null().to_pylist()
    print(f"{table.num_rows} images inventoried, {len(problems)} with problems")
    return 0


def cmd_ingest_join(args) -> int:
    from bioscan_rebuild.ingest.join import join_shard_files

    accounting = join_shard_files(
        args.records,
        args.inventory,
        args.batch_order.split(","),
        args.outdir,
        duplicate_policy=args.duplicate_policy,
        require_images=args.require_images,
    )
    print(json.dumps(accounting, sort_keys=True))
    return 0


def _print_totals(summary: dict) -> None:
    print(json.dumps({k: summary[k] for k in ("inputs", "kept", "rejected", "rejects_by_reason")}, sort_keys=True))


def cmd_ingest_accounting(args) -> int:
    from bioscan_rebuild.ingest.accounting import write_accounting

    _print_totals(
        write_accounting(
            args.parse_summary, args.list_summary, args.shard_accounting, args.rejects, args.output, args.rejects_out
        )
    )
    return 0


def cmd_ingest_run(args) -> int:
    """The whole ingest stage in one process, for small deliveries and checks outside Snakemake."""
    from bioscan_rebuild.ingest.local import ingest_local

    _print_totals(
        ingest_local(
            exports=args.export,
            image_dirs=args.images or [],
            outdir=args.outdir,
            shards=args.shards,
            name_pattern=args.name_pattern,
            duplicate_policy=args.duplicate_policy,
            require_images=args.require_images if args.images else False,
        )
    )
    return 0


def _add_ingest_options(p):
    p.add_argument("--duplicate-policy", choices=("reject", "latest"), default="reject")
    p.add_argument(
        "--require-images",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="reject records that have no usable photo (default: yes)",
    )


def register(sub) -> None:
    ingest = sub.add_parser("ingest", help="ingest stage: BOLD exports + photos -> sharded records").add_subparsers(
        dest="step", required=True
    )
    p = ingest.add_parser("parse", help="parse one BOLD export into shards")
    p.add_argument("export")
    p.add_argument("--batch", required=True)
    p.add_argument("--shards", type=int, required=True)
    p.add_argument("--outdir", required=True)
    p.add_argument("--marker", action="append", help="marker to keep (repeatable; default COI-5P)")
    p.add_argument("--missing-value", action="append", help="token read as missing (repeatable)")
    p.set_defaults(func=cmd_ingest_parse)

    p = ingest.add_parser("list", help="list an image folder into shards")
    p.add_argument("image_dir")
    p.add_argument("--batch", required=True)
    p.add_argument("--shards", type=int, required=True)
    p.add_argument("--outdir", required=True)
    p.add_argument("--name-pattern", default=DEFAULT_NAME_PATTERN)
    p.set_defaults(func=cmd_ingest_list)

    p = ingest.add_parser("inventory", help="hash and inspect the photos of one listing shard")
    p.add_argument("listing")
    p.add_argument("--image-dir", action="append", default=[], metavar="BATCH=DIR", required=True)
    p.add_argument("--store", help="content-addressed store root (originals are put there)")
    p.add_argument("--store-mode", choices=("link", "copy", "none"), default="link")
    p.add_argument("-o", "--output", required=True)
    p.set_defaults(func=cmd_ingest_inventory)

    p = ingest.add_parser("join", help="resolve duplicates and join records to photos in one shard")
    p.add_argument("--records", nargs="*", default=[])
    p.add_argument("--inventory", nargs="*", default=[])
    p.add_argument("--batch-order", required=True, help="comma-separated batch names, oldest first")
    p.add_argument("--outdir", required=True)
    _add_ingest_options(p)
    p.set_defaults(func=cmd_ingest_join)

    p = ingest.add_parser("accounting", help="sum all counts; fail unless inputs = kept + rejected")
    p.add_argument("--parse-summary", nargs="*", default=[])
    p.add_argument("--list-summary", nargs="*", default=[])
    p.add_argument("--shard-accounting", nargs="*", default=[])
    p.add_argument("--rejects", nargs="*", default=[])
    p.add_argument("-o", "--output", required=True)
    p.add_argument("--rejects-out", required=True)
    p.set_defaults(func=cmd_ingest_accounting)

    p = ingest.add_parser("run", help="the whole ingest stage in one process (no Snakemake)")
    p.add_argument("--export", nargs="*", default=[], help="BOLD export files (one batch each)")
    p.add_argument("--images", nargs="*", default=[], help="image folders (one batch each)")
    p.add_argument("--shards", type=int, default=1)
    p.add_argument("--name-pattern", default=DEFAULT_NAME_PATTERN)
    p.add_argument("-o", "--outdir", required=True)
    _add_ingest_options(p)
    p.set_defaults(func=cmd_ingest_run)
