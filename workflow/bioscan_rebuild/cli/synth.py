"""The sample generator: `bioscan-rebuild sample`."""

from __future__ import annotations

from bioscan_rebuild.cli.common import bounded_int, non_negative_int, positive_int
from bioscan_rebuild.core.errors import InputError
from bioscan_rebuild.synth import ID_OFFSET, ID_PREFIX, LAYOUTS


def cmd_sample(args) -> int:
    from bioscan_rebuild.synth.exports import MAX_SPECIES_SHARE, generate_export, generate_sample

    if (args.redeliver or args.previous) and not args.export_only:
        raise InputError("--redeliver and --previous make a delivery: they need --export-only")
    if bool(args.redeliver) != bool(args.previous):
        raise InputError("--redeliver N and --previous EXPORT go together")
    if args.species_share is not None and not 0 < args.species_share <= MAX_SPECIES_SHARE:
        share = args.species_share
        raise InputError(f"--species-share {share}: give a fraction above 0 and at most {MAX_SPECIES_SHARE}")
    share = {} if args.species_share is None else {"species_share": args.species_share}
    ids = {"prefix": args.prefix, "id_offset": args.id_offset}
    if args.export_only:
        rows = generate_export(
            args.outdir,
            args.records,
            seed=args.seed,
            layout=args.layout,
            redeliver=args.redeliver,
            previous=args.previous,
            **ids,
            **share,
        )
        redelivered = f", {args.redeliver} processids of {args.previous} redelivered" if args.redeliver else ""
        print(f"wrote {rows} rows to {args.outdir}{redelivered}")
        return 0
    manifest = generate_sample(
        args.outdir, n_records=args.records, seed=args.seed, images=not args.no_images, **ids, **share
    )
    print(f"wrote sample ({manifest['records']} records, {len(manifest['faults'])} planted faults) to {args.outdir}")
    return 0


def register(sub) -> None:
    p = sub.add_parser("sample", help="generate the embedded sample (or a large metadata-only export)")
    p.add_argument("outdir", help="output folder (with --export-only: the export file)")
    p.add_argument("--records", type=positive_int, default=300)
    p.add_argument("--seed", type=non_negative_int, default=0)
    p.add_argument("--no-images", action="store_true", help="metadata only")
    p.add_argument(
        "--export-only",
        action="store_true",
        help="write one BOLD export file, for benchmarks or a later delivery (generated in bounded memory)",
    )
    p.add_argument("--layout", choices=LAYOUTS, default="bcdm2024")
    p.add_argument(
        "--species-share",
        type=float,
        help="fraction of records identified to species (default: 0.5 for the sample, fills all eight splits; "
        "0.10 as in BIOSCAN-5M with --export-only)",
    )
    p.add_argument("--prefix", default=ID_PREFIX, help=f"processid prefix (default {ID_PREFIX})")
    p.add_argument(
        "--id-offset",
        type=bounded_int(0, 10**15),  # the numbers are drawn as 64-bit integers
        default=ID_OFFSET,
        metavar="K",
        help=f"processid numbers are drawn from [K, K + 3 x records) (default {ID_OFFSET}); a later delivery with "
        "K at or past the earlier one's K + 3 x records shares no processid or sampleid (another --prefix keeps "
        "processids apart, not sampleids: those are numbered from K)",
    )
    p.add_argument(
        "--redeliver",
        type=non_negative_int,
        default=0,
        metavar="N",
        help="with --export-only and --previous: also carry N processids of the previous export (chosen by the "
        "seed), after the new rows, each with the identification of another of its records (another species)",
    )
    p.add_argument("--previous", metavar="EXPORT", help="the earlier export (same --layout) that --redeliver repeats")
    p.set_defaults(func=cmd_sample)
