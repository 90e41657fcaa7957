"""Ingest: `bioscan-rebuild ingest {parse,list,inventory,join,accounting,run}`."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys

from bioscan_rebuild.cli.common import batch_dirs, distinct_outputs, file_outputs, json_option, positive_int
from bioscan_rebuild.core.errors import InputError
from bioscan_rebuild.core.params import IngestParams
from bioscan_rebuild.core.store import MODES


def _ingest_params(args) -> IngestParams:
    """The rule's parameter document (``--params``), with any flag given on the command line on top."""
    params = IngestParams.from_dict(json_option(args.params, "--params") or {})
    flags = {
        "markers": tuple(args.marker) if getattr(args, "marker", None) else None,
        # added to the configured tokens, not instead of them (the empty cell among them)
        "missing_values": tuple(dict.fromkeys([*params.missing_values, *args.missing_value]))
        if getattr(args, "missing_value", None)
        else None,
        "image_name_pattern": getattr(args, "name_pattern", None),
        "duplicate_policy": getattr(args, "duplicate_policy", None),
        "require_images": getattr(args, "require_images", None),
    }
    return dataclasses.replace(params, **{key: value for key, value in flags.items() if value is not None})


def cmd_ingest_parse(args) -> int:
    from bioscan_rebuild.ingest.parse import cut_short_warning, parse_to_shards

    params = _ingest_params(args)
    summary = parse_to_shards(
        args.export,
        args.batch,
        args.shards,
        args.outdir,
        missing_values=params.missing_values,
        markers=params.markers,
    )
    print(json.dumps(summary, sort_keys=True))
    warning = cut_short_warning(summary)
    if warning:
        print(f"warning: {warning}", file=sys.stderr)
    return 0


def cmd_ingest_list(args) -> int:
    from bioscan_rebuild.ingest.inventory import list_to_shards

    pattern = _ingest_params(args).image_name_pattern
    summary = list_to_shards(args.image_dir, args.batch, args.shards, args.outdir, pattern, args.group_shards)
    print(json.dumps(summary, sort_keys=True))
    return 0


def cmd_ingest_inventory(args) -> int:
    from bioscan_rebuild.core.store import ImageStore
    from bioscan_rebuild.ingest.inventory import inventory_shard

    store = ImageStore(args.store, args.store_mode, job=f"inventory/{args.output}") if args.store else None
    if store is not None:
        store.clear_scratch()  # what a killed run of this job left
    table = inventory_shard(args.listing, batch_dirs(args.image_dir), args.output, store)
    if store is not None:
        store.close()
    problems = table["image_problem"].drop_null().to_pylist()
    print(f"{table.num_rows} images inventoried, {len(problems)} with problems")
    return 0


def cmd_ingest_join(args) -> int:
    from bioscan_rebuild.ingest.join import join_shard_files

    if (args.shard is None) != (args.shards is None):
        raise InputError("ingest join: --shard and --shards go together")
    if args.shard is not None and not 0 <= args.shard < args.shards:  # no photo is of such a shard: all no_image
        raise InputError(f"ingest join: --shard {args.shard}: need 0 <= shard < --shards {args.shards}")
    params = _ingest_params(args)
    accounting = join_shard_files(
        args.records,
        args.inventory,
        args.batch_order.split(","),
        args.outdir,
        shard=None if args.shard is None else (args.shard, args.shards),
        rejected_key_paths=args.rejected_keys,
        duplicate_policy=params.duplicate_policy,
        markers=params.markers,
        require_images=params.require_images,
        trim_end_n=args.trim_end_n,
    )
    print(json.dumps(accounting, sort_keys=True))
    return 0


def _print_totals(summary: dict) -> None:
    print(json.dumps({k: summary[k] for k in ("inputs", "kept", "rejected", "rejects_by_reason")}, sort_keys=True))
    for warning in summary["warnings"]:  # what a person must look at, in the accounting too
        print(f"warning: {warning}", file=sys.stderr)


def cmd_ingest_accounting(args) -> int:
    from bioscan_rebuild.ingest.accounting import write_accounting

    inputs = [*args.parse_summary, *args.list_summary, *args.shard_accounting, *args.rejects]
    distinct_outputs(inputs, [args.output, args.rejects_out])
    file_outputs(args.output, args.rejects_out)
    _print_totals(
        write_accounting(
            args.parse_summary, args.list_summary, args.shard_accounting, args.rejects, args.output, args.rejects_out
        )
    )
    return 0


def cmd_ingest_run(args) -> int:
    """The whole ingest stage in one process, for small deliveries and checks outside Snakemake."""
    from bioscan_rebuild.core.store import ImageStore
    from bioscan_rebuild.ingest.local import ingest_local

    if not args.export and not args.images:  # nothing to ingest: an empty stage, exit 0
        raise InputError("ingest run: give at least one --export or --images")
    # with a store, the originals go in as the workflow's inventory puts them: the image stage and the release
    # then read them from there
    store = ImageStore(args.store, args.store_mode, job=f"ingest-run/{args.outdir}") if args.store else None
    if store is not None:
        store.clear_scratch()
    _print_totals(
        ingest_local(
            exports=args.export,
            image_dirs=args.images or [],
            outdir=args.outdir,
            shards=args.shards,
            params=_ingest_params(args),
            store=store,
            trim_end_n=args.trim_end_n,
        )
    )
    if store is not None:
        store.close()
    return 0


def _add_params_option(p):
    p.add_argument("--params", help="the config's ingest section, JSON (what the rules pass); flags override it")


def _add_ingest_options(p):
    _add_params_option(p)
    # the policies of ingest.join.POLICIES (not imported here: it pulls in pandas for every command)
    p.add_argument(
        "--duplicate-policy",
        choices=("latest", "first", "reject"),
        help="which delivery of a processid to keep when batches disagree (default: latest)",
    )
    p.add_argument(
        "--require-images",
        action=argparse.BooleanOptionalAction,
        help="reject records that have no usable photo (default: yes)",
    )
    p.add_argument(
        "--trim-end-n",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="the barcode step trims end Ns (barcodes.trim_end_n): copies differing only there are the same "
        "(default: yes)",
    )


def register(sub) -> None:
    ingest = sub.add_parser("ingest", help="ingest stage: BOLD exports + photos -> sharded records").add_subparsers(
        dest="step", required=True
    )
    p = ingest.add_parser("parse", help="parse one BOLD export into shards")
    p.add_argument("export")
    p.add_argument("--batch", required=True)
    p.add_argument("--shards", type=positive_int, required=True)
    p.add_argument("--outdir", required=True)
    p.add_argument("--marker", action="append", help="marker to keep (repeatable; default COI-5P)")
    p.add_argument(
        "--missing-value", action="append", help="another token read as missing (repeatable; added to the configured)"
    )
    _add_params_option(p)
    p.set_defaults(func=cmd_ingest_parse)

    p = ingest.add_parser("list", help="list an image folder into shards")
    p.add_argument("image_dir")
    p.add_argument("--batch", required=True)
    p.add_argument("--shards", type=positive_int, required=True)
    p.add_argument("--outdir", required=True)
    p.add_argument("--name-pattern", help="file name -> processid regex (default: the config schema's)")
    p.add_argument(
        "--group-shards", type=positive_int, default=1, help="shards per listing file (photo jobs per group; default 1)"
    )
    _add_params_option(p)
    p.set_defaults(func=cmd_ingest_list)

    p = ingest.add_parser("inventory", help="hash and inspect the photos of one listing file")
    p.add_argument("listing")
    p.add_argument("--image-dir", action="append", default=[], metavar="BATCH=DIR", required=True)
    p.add_argument("--store", help="content-addressed store root (originals are put there)")
    p.add_argument("--store-mode", choices=MODES, default="copy")
    p.add_argument("-o", "--output", required=True)
    p.set_defaults(func=cmd_ingest_inventory)

    p = ingest.add_parser("join", help="resolve duplicates and join records to photos in one shard")
    p.add_argument("--records", nargs="*", action="extend", default=[])
    p.add_argument("--inventory", nargs="*", action="extend", default=[])
    p.add_argument(
        "--rejected-keys",
        nargs="*",
        action="extend",
        default=[],
        help="the parse's rejected_keys files of this shard (parquet)",
    )
    p.add_argument("--batch-order", required=True, help="comma-separated batch names, oldest first")
    p.add_argument("--outdir", required=True)
    p.add_argument("--shard", type=int, help="this shard's number, where inventory files cover groups of shards")
    p.add_argument("--shards", type=positive_int, help="number of record shards (with --shard)")
    _add_ingest_options(p)
    p.set_defaults(func=cmd_ingest_join)

    p = ingest.add_parser("accounting", help="sum all counts; fail unless inputs = kept + rejected")
    p.add_argument("--parse-summary", nargs="*", action="extend", default=[])
    p.add_argument("--list-summary", nargs="*", action="extend", default=[])
    p.add_argument("--shard-accounting", nargs="*", action="extend", default=[])
    p.add_argument("--rejects", nargs="*", action="extend", default=[])
    p.add_argument("-o", "--output", required=True)
    p.add_argument("--rejects-out", required=True)
    p.set_defaults(func=cmd_ingest_accounting)

    p = ingest.add_parser("run", help="the whole ingest stage in one process (no Snakemake)")
    p.add_argument("--export", nargs="*", action="extend", default=[], help="BOLD export files (one batch each)")
    p.add_argument("--images", nargs="*", action="extend", default=[], help="image folders (one batch each)")
    p.add_argument("--shards", type=positive_int, default=1)
    p.add_argument("--name-pattern", help="file name -> processid regex (default: the config schema's)")
    p.add_argument("-o", "--outdir", required=True)
    p.add_argument("--store", help="content-addressed store root: the usable originals go in (as the workflow's)")
    p.add_argument("--store-mode", choices=MODES, default="copy")
    _add_ingest_options(p)
    p.set_defaults(func=cmd_ingest_run)
