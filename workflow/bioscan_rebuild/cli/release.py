"""Release: `bioscan-rebuild accounting` (the run's accounting, end to end) and `bioscan-rebuild release`."""

from __future__ import annotations

import json

from bioscan_rebuild.cli.common import distinct_outputs, file_outputs, json_option
from bioscan_rebuild.core.errors import InputError


def cmd_release(args) -> int:
    from bioscan_rebuild.core.params import ExportOptions
    from bioscan_rebuild.export.release import build_release

    options = ExportOptions.from_dict(json_option(args.options, "--options")) if args.options else ExportOptions()
    # one file per record shard in each list (a list left out was a zip() traceback deep in the export)
    shards = {"--records": args.records, "--barcodes": args.barcodes, "--images": args.images}
    if len({len(files) for files in shards.values()}) > 1:
        counts = ", ".join(f"{option} {len(files)}" for option, files in shards.items())
        raise InputError(f"release: --records, --barcodes and --images take one file per shard each ({counts})")
    summary = build_release(
        curated=args.curated,
        barcodes=args.barcodes,
        splits=args.splits,
        records=args.records,
        rejects=args.rejects,
        changes=args.changes,
        accounting=args.accounting,
        outdir=args.outdir,
        images=args.images,
        bbox=args.bbox,
        fasta=args.fasta,
        split_summary=args.split_summary,
        corrections=args.corrections,
        box_corrections=args.box_corrections,
        store=args.store,
        formats=args.formats,
        options=options,
        previous=args.previous,
        frozen=args.freeze,
        provenance_file=args.provenance_file,
        config_file=args.config_file,
        stats=args.stats,
        receipt=args.receipt,
    )
    print(json.dumps(summary, sort_keys=True, default=str))
    return 0


def cmd_accounting(args) -> int:
    from bioscan_rebuild.export.accounting import write_run_accounting

    inputs = [args.ingest_accounting, *args.records, *args.images, args.curated, args.metadata_rejects]
    distinct_outputs([*inputs, args.splits, args.split_excluded], [args.output])
    file_outputs(args.output)
    summary = write_run_accounting(
        args.output,
        ingest_accounting=args.ingest_accounting,
        records=args.records,
        images=args.images,
        curated=args.curated,
        metadata_rejects=args.metadata_rejects,
        splits=args.splits,
        split_excluded=args.split_excluded,
    )
    print(json.dumps({k: summary[k] for k in ("inputs", "released", "rejected")}, sort_keys=True))
    return 0


def cmd_audit(args) -> int:
    from bioscan_rebuild.export.audit import audit_release
    from bioscan_rebuild.stats.audit import check_released_stats

    # the record of the audit inside the release it audits overwrote its MANIFEST.json or a data file
    distinct_outputs(outputs=[args.json], folders=[args.release, args.previous])
    summary = audit_release(
        args.release, args.sources, every=args.all, previous=args.previous, row_checks=(check_released_stats,)
    )
    if args.json:  # the workflow's record of it (results/audit/audit.json): the same whether it passed or not
        from bioscan_rebuild.core.io import atomic_path

        with atomic_path(args.json) as temporary:
            temporary.write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    for line in summary["problems"]:
        print(line)
    for line in summary["notes"]:
        print(f"note: {line}")
    if summary["ok"]:
        differences = summary.get("replay_differences")
        if not args.sources:
            sources = ""
        elif differences is None:
            sources = " and the sources"
        else:  # another version built it: its replay's differences are notes, not agreement
            sources = (
                f" and the sources' files; this version's replay of the metadata differs from it in {differences} "
                "places (the notes)"
                if differences
                else " and the sources (replayed by this version)"
            )
        print(
            f"audit: {args.release}: whole. {summary['files']} files as the manifest lists them; "
            f"{summary['records']} records agree across the formats, the lineage"
            + sources
            + (f"; its diff is the one made again against {args.previous}" if args.previous else "")
        )
        return 0
    print(f"audit: {args.release}: {summary['count']} problems")
    return 1


def cmd_provenance(args) -> int:
    from bioscan_rebuild.export.provenance import write_provenance

    distinct_outputs([args.plan], [args.output, args.config_out])
    file_outputs(args.output, args.config_out)
    print(json.dumps(write_provenance(args.plan, args.output, args.config_out), sort_keys=True))
    return 0


def register(sub) -> None:
    p = sub.add_parser("provenance", help="the build as a PROV-O graph (JSON-LD), from the workflow's job plan")
    p.add_argument("plan", help="the plan the provenance_plan rule writes (jobs, config, git revision)")
    p.add_argument("-o", "--output", required=True)
    p.add_argument("--config-out", required=True, help="where the resolved config goes (JSON)")
    p.set_defaults(func=cmd_provenance)

    p = sub.add_parser(
        "audit",
        help="check a release: every file against its manifest, the formats record by record, the lineage; "
        "with --sources, the raw exports and a replay of the metadata stages",
    )
    p.add_argument("release", help="the release folder (holding MANIFEST.json), e.g. results/release")
    p.add_argument("--sources", metavar="CONFIG", help="the build's config: its exports are hashed and replayed")
    p.add_argument(
        "--previous",
        metavar="RELEASE",
        help="the release this one was built against (release.previous): its release_diff.csv is made again",
    )
    p.add_argument("--all", action="store_true", help="print every problem (default: 5 of each kind, then a count)")
    p.add_argument("--json", metavar="FILE", help="also write the summary (ok, files, records, problems) as JSON")
    p.set_defaults(func=cmd_audit)

    p = sub.add_parser(
        "accounting",
        help="follow every record and photo through every stage; fail unless inputs = released + rejected",
    )
    p.add_argument("--ingest-accounting", required=True, help="ingest's accounting.json")
    p.add_argument("--records", nargs="*", action="extend", default=[], help="ingested record shards")
    p.add_argument("--images", nargs="*", action="extend", default=[], help="image-stage results per shard")
    p.add_argument("--curated", required=True, help="the metadata stage's curated table")
    p.add_argument("--metadata-rejects", required=True)
    p.add_argument("--splits", required=True)
    p.add_argument("--split-excluded", required=True)
    p.add_argument("-o", "--output", required=True)
    p.set_defaults(func=cmd_accounting)

    p = sub.add_parser("release", help="write the release: BIOSCAN-5M layout, CSV, Parquet, HDF5, JSON-LD, Croissant")
    p.add_argument("--curated", required=True)
    p.add_argument("--barcodes", nargs="*", action="extend", default=[], help="barcode shards")
    p.add_argument("--splits", required=True)
    p.add_argument("--records", nargs="*", action="extend", default=[], help="ingested record shards (lineage)")
    p.add_argument(
        "--images", nargs="*", action="extend", default=[], help="image-stage results per shard (same order)"
    )
    p.add_argument(
        "--rejects", nargs="+", action="extend", required=True, help="reject tables of every stage (parquet)"
    )
    p.add_argument("--changes", required=True)
    p.add_argument("--accounting", required=True)
    p.add_argument("--bbox", nargs="*", action="extend", default=[], help="per-shard bbox tables (TSV)")
    p.add_argument("--fasta")
    p.add_argument("--split-summary")
    p.add_argument("--corrections", help="the label corrections' outcome table (shipped as metadata/corrections.tsv)")
    p.add_argument("--box-corrections", help="the box answers' outcome table (metadata/box_corrections.tsv)")
    p.add_argument("--store", help="content-addressed store root (image packages)")
    p.add_argument(
        "--formats",
        type=format_list,
        help="comma-separated, csv among them (export.formats.FORMATS); default: all of them",
    )
    p.add_argument("--options", help="export options, JSON (core.params.ExportOptions)")
    p.add_argument("--outdir", required=True)
    p.add_argument(
        "--receipt",
        help="a JSON file outside --outdir written once the release is in place (the manifest's sha256, counts, "
        "the diff's summary): the workflow's output for the release job",
    )
    p.add_argument("--provenance-file", help="the build's PROV-O graph (shipped as metadata/provenance.jsonld)")
    p.add_argument("--config-file", help="the resolved config (shipped as metadata/config.json)")
    p.add_argument("--previous", help="the previous release's folder (holding MANIFEST.json): write the diff")
    p.add_argument(
        "--freeze",
        help="the table the splits were frozen from (splits.freeze): its records this release leaves out stay in "
        "metadata/split_history.csv, as a previous release's do",
    )
    p.add_argument("--stats", help="the statistics stage's folder: shipped as metadata/stats/, summed up in README.md")
    p.set_defaults(func=cmd_release)


def format_list(text: str) -> tuple[str, ...]:
    """``--formats``: known names, csv among them, as the config schema wants (an unknown name was a traceback; a
    release without csv was built, exit 0, and failed its audit)."""
    import argparse

    from bioscan_rebuild.export.formats.registry import FORMATS

    names = tuple(name.strip() for name in text.split(","))
    unknown = [name for name in names if name not in FORMATS]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown formats {unknown}; known: {', '.join(FORMATS)}")
    if "csv" not in names:
        raise argparse.ArgumentTypeError("csv must be among them (the metadata CSV is the release's core)")
    return tuple(dict.fromkeys(names))
