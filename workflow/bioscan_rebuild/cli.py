"""`bioscan-rebuild`: one command, a subcommand per stage; each works outside Snakemake too."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from bioscan_rebuild.core.schemas import shard_name
from bioscan_rebuild.ingest.bold import DEFAULT_MISSING_VALUES
from bioscan_rebuild.ingest.inventory import DEFAULT_NAME_PATTERN


def _batch_dirs(pairs: list[str]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        batch, _, directory = pair.partition("=")
        if not directory:
            raise SystemExit(f"--image-dir takes BATCH=DIR, got {pair!r}")
        out[batch] = directory
    return out


def cmd_sample(args) -> int:
    from bioscan_rebuild.synth.exports import generate_export, generate_sample

    share = {} if args.species_share is None else {"species_share": args.species_share}
    if args.export_only:
        rows = generate_export(args.outdir, args.records, seed=args.seed, layout=args.layout, **share)
        print(f"wrote {rows} rows to {args.outdir}")
        return 0
    manifest = generate_sample(args.outdir, n_records=args.records, seed=args.seed, images=not args.no_images, **share)
    print(f"wrote sample ({manifest['records']} records, {len(manifest['faults'])} planted faults) to {args.outdir}")
    return 0


def cmd_ingest_parse(args) -> int:
    from bioscan_rebuild.ingest.join import parse_to_shards

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
    from bioscan_rebuild.core.io import write_json, write_table
    from bioscan_rebuild.ingest.inventory import list_images

    listing, rejects = list_images(args.image_dir, args.batch, args.shards, args.name_pattern)
    outdir = Path(args.outdir)
    shards = listing["shard"].to_numpy()
    for shard in range(args.shards):
        write_table(listing.filter(shards == shard), outdir / "listing" / f"{shard_name(shard)}.parquet")
    write_table(rejects, outdir / "rejects.parquet")
    summary = {
        "batch": args.batch,
        "image_dir": str(args.image_dir),
        "files": listing.num_rows + rejects.num_rows,
        "listed": listing.num_rows,
        "rejected": {"unrecognised_name": rejects.num_rows} if rejects.num_rows else {},
    }
    write_json(summary, outdir / "summary.json")
    print(json.dumps(summary, sort_keys=True))
    return 0


def cmd_ingest_inventory(args) -> int:
    import pyarrow.parquet as pq

    from bioscan_rebuild.core.io import write_table
    from bioscan_rebuild.core.store import ImageStore
    from bioscan_rebuild.ingest.inventory import LISTING_SCHEMA, inventory

    listing = pq.read_table(args.listing, schema=LISTING_SCHEMA)
    store = ImageStore(args.store, args.store_mode) if args.store else None
    table = inventory(listing, _batch_dirs(args.image_dir), store)
    write_table(table, args.output)
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


def cmd_ingest_accounting(args) -> int:
    from bioscan_rebuild.core.io import write_json, write_table
    from bioscan_rebuild.ingest.join import account

    summary, rejects = account(args.parse_summary, args.list_summary, args.shard_accounting, args.rejects)
    write_json(summary, args.output)
    write_table(rejects, args.rejects_out)
    print(json.dumps({k: summary[k] for k in ("inputs", "kept", "rejected", "rejects_by_reason")}, sort_keys=True))
    return 0


def cmd_ingest_run(args) -> int:
    """The whole ingest stage in one process, for small deliveries and checks outside Snakemake."""
    from bioscan_rebuild.ingest.join import ingest_local

    summary = ingest_local(
        exports=args.export,
        image_dirs=args.images or [],
        outdir=args.outdir,
        shards=args.shards,
        name_pattern=args.name_pattern,
        duplicate_policy=args.duplicate_policy,
        require_images=args.require_images if args.images else False,
    )
    print(json.dumps({k: summary[k] for k in ("inputs", "kept", "rejected", "rejects_by_reason")}, sort_keys=True))
    return 0


def _detector_options(args) -> tuple[str, dict]:
    params = json.loads(args.detector_params) if args.detector_params else {}
    for item in args.param or []:
        key, _, value = item.partition("=")
        try:
            params[key] = json.loads(value)
        except json.JSONDecodeError:
            params[key] = value
    if args.weights:
        params["weights"] = args.weights
    return args.backend, params


def cmd_detect(args) -> int:
    from bioscan_rebuild.images.process import ImageParams
    from bioscan_rebuild.images.shard import detect_folder

    backend, params = _detector_options(args)
    counts = detect_folder(
        args.image_dir,
        args.output,
        backend=backend,
        detector_params=params,
        crop_dir=args.crop,
        image_params=ImageParams.from_dict(json.loads(args.image_params)) if args.image_params else None,
    )
    print(json.dumps({"images": sum(counts.values()), "status": dict(sorted(counts.items()))}))
    return 0


def cmd_images_shard(args) -> int:
    from bioscan_rebuild.images.process import ImageParams
    from bioscan_rebuild.images.shard import run_image_shard

    backend, params = _detector_options(args)
    summary = run_image_shard(
        args.records,
        args.store,
        args.outdir,
        backend=backend,
        detector_params=params,
        batch_params=json.loads(args.batch_params) if args.batch_params else {},
        image_params=ImageParams.from_dict(json.loads(args.image_params)) if args.image_params else None,
        image_dirs=_batch_dirs(args.image_dir),
        contact_sheet_size=args.contact_sheet_size,
    )
    print(json.dumps(summary, sort_keys=True))
    return 0


def cmd_images_summary(args) -> int:
    from bioscan_rebuild.images.shard import summarize_shards

    print(json.dumps(summarize_shards(args.summaries, args.output), sort_keys=True))
    return 0


def _add_detector_options(p) -> None:
    p.add_argument("--backend", choices=("classical", "yolo", "onnx"), default="classical")
    p.add_argument("--weights", help="model file for the yolo (.pt) or onnx (.onnx) backend")
    p.add_argument("--detector-params", help="backend parameters as a JSON object")
    p.add_argument("--param", action="append", metavar="KEY=VALUE", help="one backend parameter (JSON value)")
    p.add_argument("--image-params", help="image-stage parameters as a JSON object (see config/README.md)")


def cmd_train_detector(args) -> int:
    from bioscan_rebuild.detect.yolo import main as yolo_main

    return yolo_main(["train", *args.options])


def cmd_release(args) -> int:
    from bioscan_rebuild.export.release import build_release
    from bioscan_rebuild.export.writers import ExportOptions

    options = ExportOptions(**json.loads(args.options)) if args.options else ExportOptions()
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
        store=args.store,
        formats=tuple(args.formats.split(",")),
        options=options,
    )
    print(json.dumps(summary, sort_keys=True, default=str))
    return 0


def _barcode_params(args):
    from bioscan_rebuild.metadata.barcodes import BarcodeParams

    return BarcodeParams(min_length=args.min_length, max_ambiguity=args.max_ambiguity, trim_end_n=args.trim_end_n)


def _taxonomy_params(args):
    from bioscan_rebuild.metadata.taxonomy import TaxonomyParams

    return TaxonomyParams.from_dict(json.loads(args.taxonomy_params) if args.taxonomy_params else {})


def cmd_barcodes_clean(args) -> int:
    from bioscan_rebuild.metadata.stage import clean_shard

    print(json.dumps(clean_shard(args.records, args.output, _barcode_params(args)), sort_keys=True))
    return 0


def cmd_barcodes_fasta(args) -> int:
    from bioscan_rebuild.metadata.stage import write_fasta_from

    written = write_fasta_from(args.curated, args.barcodes, args.output, args.splits)
    print(f"wrote {written} sequences to {args.output}")
    return 0


def cmd_taxonomy_curate(args) -> int:
    from bioscan_rebuild.metadata.stage import curate_tables

    summary = curate_tables(
        args.records,
        args.barcodes,
        args.outdir,
        taxonomy_params=_taxonomy_params(args),
        fixes_path=args.fixes,
        corrections_path=args.corrections,
    )
    print(json.dumps(summary, sort_keys=True))
    return 0


def cmd_metadata(args) -> int:
    from bioscan_rebuild.metadata.stage import metadata_from_exports
    from bioscan_rebuild.metadata.taxonomy import shipped_table

    # as the workflow does: the repository's tables unless others are named or --no-shipped-tables
    fixes, corrections = args.fixes, args.corrections
    if args.shipped_tables:
        fixes = fixes or shipped_table("taxonomy_fixes.tsv")
        corrections = corrections or shipped_table("corrections.tsv")
    summary = metadata_from_exports(
        args.exports,
        args.output,
        split=args.split,
        barcode_params=_barcode_params(args),
        taxonomy_params=_taxonomy_params(args),
        fixes_path=fixes,
        corrections_path=corrections,
    )
    print(json.dumps(summary, sort_keys=True))
    return 0


def cmd_splits(args) -> int:
    from bioscan_rebuild.metadata.stage import split_tables

    summary = split_tables(args.curated, args.barcodes, args.outdir, args.freeze, args.images)
    print(json.dumps(summary, sort_keys=True))
    return 0


def cmd_split(args) -> int:
    from bioscan_rebuild.splits.protocol import run_split_command

    return run_split_command(args)


def _add_barcode_options(p):
    p.add_argument("--min-length", type=int, default=200, help="shortest barcode kept (bases)")
    p.add_argument("--max-ambiguity", type=float, default=0.05, help="largest share of ambiguous bases kept")
    p.add_argument("--trim-end-n", action=argparse.BooleanOptionalAction, default=True)


def _add_taxonomy_options(p):
    p.add_argument("--taxonomy-params", help='JSON, e.g. {"barcode_ratio": 0.8, "bin_ratio": 0.8}')
    p.add_argument("--fixes", default=None, help="typo / rewording table (TSV: rank, from, to, reason)")
    p.add_argument(
        "--corrections", default=None, help="record corrections (TSV: processid, field, value, reason, source)"
    )


def _add_ingest_options(p):
    p.add_argument("--duplicate-policy", choices=("reject", "latest"), default="reject")
    p.add_argument(
        "--require-images",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="reject records that have no usable photo (default: yes)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bioscan-rebuild", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("sample", help="generate the embedded sample (or a large metadata-only export)")
    p.add_argument("outdir", help="output folder (with --export-only: the export file)")
    p.add_argument("--records", type=int, default=300)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-images", action="store_true", help="metadata only")
    p.add_argument("--export-only", action="store_true", help="write one BOLD export file, for benchmarks")
    p.add_argument("--layout", choices=("v4", "bcdm2023", "bcdm2024"), default="bcdm2024")
    p.add_argument(
        "--species-share",
        type=float,
        help="fraction of records identified to species (default: 0.5 for the sample, fills all eight splits; "
        "0.10 as in BIOSCAN-5M with --export-only)",
    )
    p.set_defaults(func=cmd_sample)

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

    p = sub.add_parser("detect", help="detect (and with --crop, crop) the specimens of a folder of photos")
    p.add_argument("image_dir")
    p.add_argument("output", help="CSV: file_name, status, x0, y0, x1, y1, pixel_count, area_fraction, scale_factor")
    p.add_argument("--crop", metavar="DIR", help="also write the four image packages under DIR/{package}/")
    _add_detector_options(p)
    p.set_defaults(func=cmd_detect)

    images = sub.add_parser("images", help="image stage: detection, crops, packages, size fields").add_subparsers(
        dest="step", required=True
    )
    p = images.add_parser("shard", help="process the photos of one shard of ingested records")
    p.add_argument("records", help="ingested records of the shard (parquet)")
    p.add_argument("--store", required=True, help="content-addressed store root")
    p.add_argument("--outdir", required=True)
    p.add_argument("--image-dir", action="append", default=[], metavar="BATCH=DIR", help="source folders (fallback)")
    p.add_argument("--batch-params", help="per-batch detector parameter overrides, JSON {batch: {...}}")
    p.add_argument("--contact-sheet-size", type=int, default=120)
    _add_detector_options(p)
    p.set_defaults(func=cmd_images_shard)

    p = images.add_parser("summary", help="status counts over all shards")
    p.add_argument("summaries", nargs="*")
    p.add_argument("-o", "--output", required=True)
    p.set_defaults(func=cmd_images_summary)

    p = sub.add_parser(
        "train-detector",
        help="train the YOLO specimen detector offline (needs the yolo extra); "
        "options: python -m bioscan_rebuild.detect.yolo train --help",
    )
    p.add_argument("options", nargs=argparse.REMAINDER, help="passed to detect_yolo train")
    p.set_defaults(func=cmd_train_detector)

    barcodes = sub.add_parser("barcodes", help="barcode cleaning and QC").add_subparsers(dest="step", required=True)
    p = barcodes.add_parser("clean", help="clean the barcodes of one ingested shard")
    p.add_argument("records", help="ingested records of the shard (parquet)")
    p.add_argument("-o", "--output", required=True)
    _add_barcode_options(p)
    p.set_defaults(func=cmd_barcodes_clean)
    p = barcodes.add_parser("fasta", help="FASTA of the curated records' cleaned barcodes")
    p.add_argument("--curated", required=True)
    p.add_argument("--barcodes", nargs="*", default=[])
    p.add_argument("--splits", help="only the records with a split (the release)")
    p.add_argument("-o", "--output", required=True)
    p.set_defaults(func=cmd_barcodes_fasta)

    taxonomy = sub.add_parser("taxonomy", help="BINs + taxonomy curation").add_subparsers(dest="step", required=True)
    p = taxonomy.add_parser("curate", help="curate every shard's labels together; log every change")
    p.add_argument("--records", nargs="*", default=[], help="ingested record shards")
    p.add_argument("--barcodes", nargs="*", default=[], help="barcode shards (same order)")
    p.add_argument("--outdir", required=True)
    _add_taxonomy_options(p)
    p.set_defaults(func=cmd_taxonomy_curate)

    p = sub.add_parser("metadata", help="BOLD exports -> the 23-column table (ingest, barcodes, BINs, taxonomy)")
    p.add_argument("exports", nargs="+")
    p.add_argument("-o", "--output", required=True, help="CSV; rejects/changes/bins/QC are written beside it")
    p.add_argument("--split", action="store_true", help="also assign the 8 splits (and chunks)")
    _add_barcode_options(p)
    _add_taxonomy_options(p)
    p.add_argument(
        "--shipped-tables",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="use resources/taxonomy_fixes.tsv and resources/corrections.tsv where --fixes/--corrections are not given",
    )
    p.set_defaults(func=cmd_metadata)

    p = sub.add_parser("split", help="assign the BIOSCAN-5M splits to a metadata CSV")
    p.add_argument("input", help="metadata CSV with processid, genus, species, dna_barcode")
    p.add_argument("output", help="where to write the CSV with the split column filled")
    p.add_argument("--freeze", help="processid,split CSV of a previous release: those records keep their split")
    p.add_argument("--summary", help="also write samples/barcodes/species per split to this CSV")
    p.set_defaults(func=cmd_split)

    p = sub.add_parser("splits", help="the workflow's split step: curated labels + barcode shards")
    p.add_argument("--curated", required=True)
    p.add_argument("--barcodes", nargs="*", default=[])
    p.add_argument("--freeze", help="processid,split CSV of a previous release")
    p.add_argument("--images", nargs="*", default=[], help="image-stage results per shard (excludes empty wells)")
    p.add_argument("--outdir", required=True)
    p.set_defaults(func=cmd_splits)

    p = sub.add_parser("release", help="write the release: BIOSCAN-5M layout, CSV, Parquet, HDF5, JSON-LD, Croissant")
    p.add_argument("--curated", required=True)
    p.add_argument("--barcodes", nargs="*", default=[], help="barcode shards")
    p.add_argument("--splits", required=True)
    p.add_argument("--records", nargs="*", default=[], help="ingested record shards (lineage)")
    p.add_argument("--images", nargs="*", default=[], help="image-stage results per shard (same order)")
    p.add_argument("--rejects", nargs="*", default=[], help="reject tables of every stage (parquet)")
    p.add_argument("--changes", required=True)
    p.add_argument("--accounting", required=True)
    p.add_argument("--bbox", nargs="*", default=[], help="per-shard bbox tables (TSV)")
    p.add_argument("--fasta")
    p.add_argument("--split-summary")
    p.add_argument("--store", help="content-addressed store root (image packages)")
    p.add_argument("--formats", default="csv,parquet,images,hdf5,jsonld,croissant")
    p.add_argument("--options", help="export options, JSON (export.ExportOptions)")
    p.add_argument("--outdir", required=True)
    p.set_defaults(func=cmd_release)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["train-detector"]:  # its options belong to detect_yolo's own parser
        from bioscan_rebuild.detect.yolo import main as yolo_main

        return yolo_main(["train", *argv[1:]])
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
