"""Metadata: `bioscan-rebuild barcodes {clean,fasta}`, `taxonomy curate`, `metadata`."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from bioscan_rebuild.cli.common import distinct_outputs, file_outputs, json_option, tie_order_option
from bioscan_rebuild.core.errors import InputError

BARCODE_FLAGS = ("min_length", "max_ambiguity", "trim_end_n")


def _barcode_params(args):
    """The parameter document (the workflow passes one), with any flag given on the command line over it."""
    from bioscan_rebuild.core.params import BarcodeParams

    values = json_option(args.barcode_params, "--barcode-params") or {}
    values.update({flag: getattr(args, flag) for flag in BARCODE_FLAGS if getattr(args, flag) is not None})
    return BarcodeParams.from_dict(values)


def _taxonomy_params(args):
    from bioscan_rebuild.core.params import TaxonomyParams

    return TaxonomyParams.from_dict(json_option(args.taxonomy_params, "--taxonomy-params") or {})


def _add_barcode_options(p, document: str):
    p.add_argument(
        document,
        dest="barcode_params",
        help='JSON, e.g. {"min_length": 200, "max_ambiguity": 0.05, "trim_end_n": true}; flags below override it',
    )
    p.add_argument("--min-length", type=int, help="shortest barcode kept (bases; default 200)")
    p.add_argument("--max-ambiguity", type=float, help="largest share of ambiguous bases kept (default 0.05)")
    p.add_argument("--trim-end-n", action=argparse.BooleanOptionalAction, help="trim end Ns (default: yes)")


def _add_taxonomy_options(p):
    p.add_argument("--taxonomy-params", help='JSON, e.g. {"barcode_ratio": 0.8, "bin_ratio": 0.8}')
    p.add_argument("--fixes", default=None, help="typo / rewording table (TSV: rank, from, to, reason)")
    p.add_argument(
        "--corrections", default=None, help="record corrections (TSV: processid, field, value, reason, source)"
    )
    p.add_argument(
        "--shipped-tables",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="use the package's own taxonomy_fixes.tsv and corrections.tsv where --fixes/--corrections are not "
        "given, as the workflow's config does by default (taxonomy.fixes, taxonomy.corrections: shipped)",
    )


def _taxonomy_tables(args) -> tuple[str | None, str | None]:
    """(fixes, corrections) as the workflow resolves them: the package's tables unless others are named or
    --no-shipped-tables (a hand-run curation left out the typo table the workflow applies)."""
    from bioscan_rebuild.metadata.taxonomy.tables import shipped_table

    fixes, corrections = args.fixes, args.corrections
    if args.shipped_tables:
        fixes = fixes or shipped_table("taxonomy_fixes.tsv")
        corrections = corrections or shipped_table("corrections.tsv")
    return fixes, corrections


def cmd_barcodes_clean(args) -> int:
    distinct_outputs([args.records], [args.output])
    file_outputs(args.output)
    from bioscan_rebuild.metadata.stage import clean_shard

    print(json.dumps(clean_shard(args.records, args.output, _barcode_params(args)), sort_keys=True))
    return 0


def cmd_barcodes_fasta(args) -> int:
    from bioscan_rebuild.metadata.stage import write_fasta_from

    if not args.barcodes:  # the sequences are there: without them the FASTA is empty, exit 0
        raise InputError("barcodes fasta: give the barcode shards (--barcodes)")
    distinct_outputs([args.curated, *args.barcodes, args.splits], [args.output])
    file_outputs(args.output)
    written = write_fasta_from(args.curated, args.barcodes, args.output, args.splits)
    print(f"wrote {written} sequences to {args.output}")
    return 0


def cmd_taxonomy_curate(args) -> int:
    from bioscan_rebuild.metadata.stage import CURATE_OUTPUTS, curate_tables

    if not args.records or not args.barcodes:  # an empty curation, "balanced", exit 0
        raise InputError("taxonomy curate: give the record shards (--records) and their barcode shards (--barcodes)")
    fixes, corrections = _taxonomy_tables(args)
    inputs = [*args.records, *args.barcodes, fixes, corrections, *args.redeliveries, *args.ingest_rejects]
    distinct_outputs(inputs, [Path(args.outdir) / name for name in CURATE_OUTPUTS])
    summary = curate_tables(
        args.records,
        args.barcodes,
        args.outdir,
        taxonomy_params=_taxonomy_params(args),
        fixes_path=fixes,
        corrections_path=corrections,
        redelivery_paths=args.redeliveries,
        ingest_reject_paths=args.ingest_rejects,
    )
    print(json.dumps(summary, sort_keys=True))
    return 0


def cmd_metadata(args) -> int:
    from bioscan_rebuild.splits.local import metadata_from_exports

    fixes, corrections = _taxonomy_tables(args)
    stem = Path(args.output).with_suffix("")
    sides = [f"{stem}.{name}" for name in ("rejects.csv", "changes.csv", "bins.csv", "barcode_qc.csv", "lineage.csv")]
    distinct_outputs([*args.exports, fixes, corrections], [args.output, *sides, f"{stem}.corrections.tsv"])
    file_outputs(args.output, *sides, f"{stem}.corrections.tsv")
    summary = metadata_from_exports(
        args.exports,
        args.output,
        split=args.split,
        tie_order=args.tie_order,
        barcode_params=_barcode_params(args),
        taxonomy_params=_taxonomy_params(args),
        fixes_path=fixes,
        corrections_path=corrections,
    )
    print(json.dumps(summary, sort_keys=True))
    return 0


def register(sub) -> None:
    barcodes = sub.add_parser("barcodes", help="barcode cleaning and QC").add_subparsers(dest="step", required=True)
    p = barcodes.add_parser("clean", help="clean the barcodes of one ingested shard")
    p.add_argument("records", help="ingested records of the shard (parquet)")
    p.add_argument("-o", "--output", required=True)
    _add_barcode_options(p, "--params")
    p.set_defaults(func=cmd_barcodes_clean)
    p = barcodes.add_parser("fasta", help="FASTA of the curated records' cleaned barcodes")
    p.add_argument("--curated", required=True)
    p.add_argument("--barcodes", nargs="*", action="extend", default=[])
    p.add_argument("--splits", help="only the records with a split (the release)")
    p.add_argument("-o", "--output", required=True)
    p.set_defaults(func=cmd_barcodes_fasta)

    taxonomy = sub.add_parser("taxonomy", help="BINs + taxonomy curation").add_subparsers(dest="step", required=True)
    p = taxonomy.add_parser("curate", help="curate every shard's labels together; log every change")
    p.add_argument("--records", nargs="*", action="extend", default=[], help="ingested record shards")
    p.add_argument("--barcodes", nargs="*", action="extend", default=[], help="barcode shards (same order)")
    p.add_argument(
        "--redeliveries",
        nargs="*",
        action="extend",
        default=[],
        help="ingest's redeliveries per shard (step 0 of the log)",
    )
    p.add_argument(
        "--ingest-rejects",
        nargs="*",
        action="extend",
        default=[],
        help="ingest's reject tables (a correction of a record they hold is record_rejected)",
    )
    p.add_argument("--outdir", required=True)
    _add_taxonomy_options(p)
    p.set_defaults(func=cmd_taxonomy_curate)

    p = sub.add_parser("metadata", help="BOLD exports -> the 23-column table (ingest, barcodes, BINs, taxonomy)")
    p.add_argument("exports", nargs="+")
    p.add_argument("-o", "--output", required=True, help="CSV; rejects/changes/bins/QC are written beside it")
    p.add_argument("--split", action="store_true", help="also assign the 8 splits (and chunks)")
    tie_order_option(p)
    _add_barcode_options(p, "--barcode-params")
    _add_taxonomy_options(p)
    p.set_defaults(func=cmd_metadata)
