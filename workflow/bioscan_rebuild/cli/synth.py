"""The sample generator: `bioscan-rebuild sample`."""

from __future__ import annotations

from bioscan_rebuild.synth.exports import LAYOUT_COLUMNS


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


def register(sub) -> None:
    p = sub.add_parser("sample", help="generate the embedded sample (or a large metadata-only export)")
    p.add_argument("outdir", help="output folder (with --export-only: the export file)")
    p.add_argument("--records", type=int, default=300)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-images", action="store_true", help="metadata only")
    p.add_argument("--export-only", action="store_true", help="write one BOLD export file, for benchmarks")
    p.add_argument("--layout", choices=tuple(LAYOUT_COLUMNS), default="bcdm2024")
    p.add_argument(
        "--species-share",
        type=float,
        help="fraction of records identified to species (default: 0.5 for the sample, fills all eight splits; "
        "0.10 as in BIOSCAN-5M with --export-only)",
    )
    p.set_defaults(func=cmd_sample)
