"""Ingest stage: BOLD exports + image inventories -> sharded record tables, rejects, accounting.

Work is split so that it scales to millions of records with a bounded number of jobs:

1. ``parse_to_shards`` (one job per export): parse, reject unparseable/unkeyed/other-marker rows,
   write the records into a fixed number of shards keyed by md5(processid).
2. ``list_images`` / ``inventory`` (per image folder, then per shard): see ``images_inventory``.
3. ``join_shard`` (one job per shard, across all batches): resolve duplicate records and images,
   join each record to its photo, and reject everything that cannot be joined.
4. ``account`` (one job): sums the per-shard and per-batch counts and fails unless every input
   record row and every image file is either kept or rejected with a reason.

Because a processid always lands in the same shard, duplicates across batches meet in one job.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from bioscan_rebuild.core.io import write_json, write_table
from bioscan_rebuild.core.schemas import (
    IMAGE_COLUMNS,
    INGESTED_SCHEMA,
    RECORD_SCHEMA,
    REJECT_SCHEMA,
    SIGNATURE_FIELDS,
    make_rejects,
    shard_name,
    shard_of,
)
from bioscan_rebuild.ingest.bold import DEFAULT_MISSING_VALUES, parse_export
from bioscan_rebuild.ingest.inventory import INVENTORY_SCHEMA

POLICIES = ("reject", "latest")

# Flush shard buffers once this many rows are held, so memory stays bounded on huge exports.
FLUSH_ROWS = 400_000


class AccountingError(RuntimeError):
    pass


def parse_to_shards(
    export: str | Path,
    batch: str,
    n_shards: int,
    outdir: str | Path,
    *,
    missing_values=DEFAULT_MISSING_VALUES,
    markers=("COI-5P",),
    source_name: str | None = None,
) -> dict:
    """Parse one export into `outdir/records/shard-NNN.parquet` (all n_shards written, maybe empty),
    `outdir/rejects.parquet` and `outdir/summary.json`. Returns the summary."""

    outdir = Path(outdir)
    (outdir / "records").mkdir(parents=True, exist_ok=True)
    writers: dict[int, pq.ParquetWriter] = {}
    buffers: dict[int, list[pa.Table]] = {s: [] for s in range(n_shards)}
    buffered = 0
    reject_parts = []
    rows_per_shard = Counter()

    def flush():
        for shard, parts in buffers.items():
            if not parts:
                continue
            if shard not in writers:
                writers[shard] = pq.ParquetWriter(
                    outdir / "records" / f"{shard_name(shard)}.parquet", RECORD_SCHEMA, compression="zstd"
                )
            writers[shard].write_table(pa.concat_tables(parts))
            parts.clear()

    stats = None
    for records, rejects, stats in parse_export(  # noqa: B007 - stats is final after the loop
        export, batch, missing_values=tuple(missing_values), markers=markers, source_name=source_name
    ):
        reject_parts.append(rejects)
        if records.num_rows:
            shards = shard_of(records["processid"].to_pylist(), n_shards)
            for shard in np.unique(shards):
                part = records.filter(pa.array(shards == shard))
                buffers[int(shard)].append(part)
                rows_per_shard[int(shard)] += part.num_rows
            buffered += records.num_rows
            if buffered >= FLUSH_ROWS:
                flush()
                buffered = 0
    flush()
    for writer in writers.values():
        writer.close()
    for shard in range(n_shards):
        if shard not in writers:
            write_table(RECORD_SCHEMA.empty_table(), outdir / "records" / f"{shard_name(shard)}.parquet")
    write_table(
        pa.concat_tables(reject_parts) if reject_parts else REJECT_SCHEMA.empty_table(), outdir / "rejects.parquet"
    )
    summary = {
        "batch": batch,
        "export": source_name or str(export),
        "export_sha256": stats.sha256,
        "layout": stats.layout,
        "data_lines": stats.data_lines,
        "blank_lines": stats.blank_lines,
        "records": stats.records,
        "rejected": dict(sorted(stats.rejects.items())),
    }
    if stats.data_lines != stats.records + sum(stats.rejects.values()):
        raise AccountingError(
            f"{export}: {stats.data_lines} lines != {stats.records} records + rejects {stats.rejects}"
        )
    write_json(summary, outdir / "summary.json")
    return summary


def _read_tables(paths, schema: pa.Schema) -> pa.Table:
    tables = [pq.read_table(p, schema=schema) for p in paths]
    return pa.concat_tables(tables) if tables else schema.empty_table()


def _location(frame: pd.DataFrame) -> pd.Series:
    return (
        frame["batch"] + ":" + frame["source_file"].map(lambda p: Path(p).name) + ":" + frame["source_line"].astype(str)
    )


def _resolve_duplicates(frame: pd.DataFrame, signature: pd.Series, policy: str, location: pd.Series, names):
    """For rows sorted in delivery order, pick one row per processid.

    Returns (keep mask, reason per row or None, detail per row or None). `names` maps the
    generic outcomes to reason codes: identical, conflict, superseded.
    """
    n = len(frame)
    keep = np.ones(n, bool)
    reason = np.full(n, None, dtype=object)
    detail = np.full(n, None, dtype=object)
    duplicated = frame["processid"].duplicated(keep=False).to_numpy()
    if not duplicated.any():
        return keep, reason, detail
    positions = np.flatnonzero(duplicated)
    groups = frame.iloc[positions].groupby("processid", sort=False).indices
    for _, members in groups.items():
        rows = positions[members]
        signatures = signature.iloc[rows].to_numpy()
        conflicting = len(set(signatures)) > 1
        if conflicting and policy == "reject":
            keep[rows] = False
            reason[rows] = names["conflict"]
            for row in rows:
                others = [location.iloc[r] for r in rows if r != row]
                detail[row] = "differs from " + ", ".join(others)
            continue
        chosen = rows[-1] if (conflicting and policy == "latest") else rows[0]
        for row in rows:
            if row == chosen:
                continue
            keep[row] = False
            same = signature.iloc[row] == signature.iloc[chosen]
            reason[row] = names["identical"] if same else names["superseded"]
            detail[row] = ("same as " if same else "replaced by ") + location.iloc[chosen]
    return keep, reason, detail


def join_shard(
    record_tables: list[pa.Table],
    inventory_tables: list[pa.Table],
    batch_order: list[str],
    *,
    duplicate_policy: str = "reject",
    require_images: bool = True,
) -> tuple[pa.Table, pa.Table, dict]:
    """Resolve duplicates and join records to images within one shard.

    Returns (kept records with image columns, rejects, accounting). Raises AccountingError if an
    input row or file is neither kept nor rejected.
    """
    if duplicate_policy not in POLICIES:
        raise ValueError(f"duplicate_policy must be one of {POLICIES}")
    rank = {batch: i for i, batch in enumerate(batch_order)}
    records = pa.concat_tables(record_tables).to_pandas() if record_tables else RECORD_SCHEMA.empty_table().to_pandas()
    images = (
        pa.concat_tables(inventory_tables).to_pandas()
        if inventory_tables
        else INVENTORY_SCHEMA.empty_table().to_pandas()
    )
    records_in, images_in = len(records), len(images)

    records["_rank"] = records["batch"].map(rank)
    records = records.sort_values(["_rank", "source_file", "source_line"], kind="stable").reset_index(drop=True)
    images["_rank"] = images["batch"].map(rank)
    images = images.sort_values(["_rank", "image_path"], kind="stable").reset_index(drop=True)

    reject_parts = []

    # Records: one per processid.
    content_hash = pd.util.hash_pandas_object(records[list(SIGNATURE_FIELDS)], index=False)
    keep, reason, detail = _resolve_duplicates(
        records,
        content_hash,
        duplicate_policy,
        _location(records),
        {"identical": "duplicate_record", "conflict": "duplicate_conflict", "superseded": "superseded"},
    )
    dropped = records[~keep]
    if len(dropped):
        reject_parts.append(
            make_rejects(
                kind="record",
                reason=list(reason[~keep]),
                detail=list(detail[~keep]),
                processid=dropped["processid"].tolist(),
                batch=dropped["batch"].tolist(),
                source_file=dropped["source_file"].tolist(),
                source_line=dropped["source_line"].tolist(),
            )
        )
    records = records[keep].reset_index(drop=True)

    # Images: broken files out first, then one per processid.
    def image_rejects(frame: pd.DataFrame, reasons, details) -> pa.Table:
        return make_rejects(
            kind="image",
            reason=list(reasons),
            detail=list(details),
            processid=frame["processid"].tolist(),
            batch=frame["batch"].tolist(),
            image_path=frame["image_path"].tolist(),
            image_sha256=frame["image_sha256"].tolist(),
        )

    broken = images["image_problem"].notna().to_numpy()
    if broken.any():
        bad = images[broken]
        reject_parts.append(image_rejects(bad, bad["image_problem"], bad["image_problem_detail"]))
    image_reasons_by_id: dict[str, list[str]] = {}
    for pid, problem in zip(images.loc[broken, "processid"], images.loc[broken, "image_problem"]):
        image_reasons_by_id.setdefault(pid, []).append(problem)
    usable = images[~broken].reset_index(drop=True)
    keep, reason, detail = _resolve_duplicates(
        usable,
        usable["image_sha256"],
        duplicate_policy,
        usable["batch"] + ":" + usable["image_path"],
        {"identical": "duplicate_image", "conflict": "conflicting_images", "superseded": "superseded"},
    )
    if (~keep).any():
        reject_parts.append(image_rejects(usable[~keep], reason[~keep], detail[~keep]))
        for pid, why in zip(usable.loc[~keep, "processid"], reason[~keep]):
            if why == "conflicting_images":
                image_reasons_by_id.setdefault(pid, []).append(why)
    usable = usable[keep].reset_index(drop=True)

    # Join.
    all_record_ids = set(pa.concat_tables(record_tables)["processid"].to_pylist()) if record_tables else set()
    kept_ids = set(records["processid"])
    image_has_record = usable["processid"].isin(kept_ids).to_numpy()
    orphans = usable[~image_has_record]
    if len(orphans):
        orphan_reason = np.where(orphans["processid"].isin(all_record_ids), "record_rejected", "no_record")
        orphan_detail = np.where(
            orphan_reason == "record_rejected",
            "every record of this processid was rejected",
            "no record has this processid",
        )
        reject_parts.append(image_rejects(orphans, orphan_reason, orphan_detail))
    usable = usable[image_has_record]

    image_part = usable.rename(columns={"batch": "image_batch"})[[f.name for f in IMAGE_COLUMNS] + ["processid"]]
    joined = records.merge(image_part, on="processid", how="left", validate="one_to_one")
    without_image = joined["image_sha256"].isna().to_numpy()
    if require_images and without_image.any():
        lost = joined[without_image]
        reasons = ["image_rejected" if pid in image_reasons_by_id else "no_image" for pid in lost["processid"]]
        details = [
            "images rejected: " + ", ".join(sorted(set(image_reasons_by_id[pid])))
            if pid in image_reasons_by_id
            else "no image file names this processid"
            for pid in lost["processid"]
        ]
        reject_parts.append(
            make_rejects(
                kind="record",
                reason=reasons,
                detail=details,
                processid=lost["processid"].tolist(),
                batch=lost["batch"].tolist(),
                source_file=lost["source_file"].tolist(),
                source_line=lost["source_line"].tolist(),
            )
        )
        joined = joined[~without_image]

    joined = joined.sort_values("processid", kind="stable").reset_index(drop=True)
    kept = pa.Table.from_pandas(joined[INGESTED_SCHEMA.names], schema=INGESTED_SCHEMA, preserve_index=False)
    rejects = pa.concat_tables(reject_parts) if reject_parts else REJECT_SCHEMA.empty_table()
    rejects = rejects.sort_by(
        [
            ("kind", "ascending"),
            ("processid", "ascending"),
            ("batch", "ascending"),
            ("image_path", "ascending"),
            ("source_line", "ascending"),
        ]
    )

    accounting = {
        "records_in": records_in,
        "images_in": images_in,
        "records_kept": kept.num_rows,
        "images_kept": kept.num_rows - kept["image_sha256"].null_count,
        "rejected": count_rejects(rejects),
    }
    check_balance(accounting["records_in"], accounting["records_kept"], accounting["rejected"]["record"], "records")
    check_balance(accounting["images_in"], accounting["images_kept"], accounting["rejected"]["image"], "images")
    return kept, rejects, accounting


def count_rejects(rejects: pa.Table) -> dict[str, dict[str, int]]:
    counts = {"record": {}, "image": {}}
    for kind, reason in zip(rejects["kind"].to_pylist(), rejects["reason"].to_pylist()):
        counts[kind][reason] = counts[kind].get(reason, 0) + 1
    return {kind: dict(sorted(c.items())) for kind, c in counts.items()}


def check_balance(n_in: int, n_kept: int, rejected: dict[str, int], what: str) -> None:
    n_rejected = sum(rejected.values())
    if n_in != n_kept + n_rejected:
        raise AccountingError(f"{what}: {n_in} in != {n_kept} kept + {n_rejected} rejected {rejected}")


def join_shard_files(record_paths, inventory_paths, batch_order, outdir, **options) -> dict:
    record_tables = [pq.read_table(p, schema=RECORD_SCHEMA) for p in record_paths]
    inventory_tables = [pq.read_table(p, schema=INVENTORY_SCHEMA) for p in inventory_paths]
    kept, rejects, accounting = join_shard(record_tables, inventory_tables, batch_order, **options)
    outdir = Path(outdir)
    write_table(kept, outdir / "records.parquet")
    write_table(rejects, outdir / "rejects.parquet")
    write_json(accounting, outdir / "accounting.json")
    return accounting


def account(parse_summaries, listing_summaries, shard_accountings, reject_paths) -> tuple[dict, pa.Table]:
    """Sum every count and check the whole run balances. Returns (summary, all rejects)."""
    parse = [json.loads(Path(p).read_text()) for p in parse_summaries]
    listings = [json.loads(Path(p).read_text()) for p in listing_summaries]
    shards = [json.loads(Path(p).read_text()) for p in shard_accountings]
    rejects = _read_tables(reject_paths, REJECT_SCHEMA)
    rejects = rejects.sort_by(
        [
            ("kind", "ascending"),
            ("reason", "ascending"),
            ("processid", "ascending"),
            ("batch", "ascending"),
            ("source_line", "ascending"),
            ("image_path", "ascending"),
        ]
    )
    by_reason = count_rejects(rejects)
    inputs = {
        "records": sum(p["data_lines"] for p in parse),
        "images": sum(item["files"] for item in listings),
    }
    kept = {
        "records": sum(s["records_kept"] for s in shards),
        "images": sum(s["images_kept"] for s in shards),
    }
    rejected = {"records": sum(by_reason["record"].values()), "images": sum(by_reason["image"].values())}
    # Rows handed between steps must match too: a shard cannot lose what a parse job wrote.
    handed = {
        "records": (sum(p["records"] for p in parse), sum(s["records_in"] for s in shards)),
        "images": (sum(item["listed"] for item in listings), sum(s["images_in"] for s in shards)),
    }
    summary = {
        "inputs": inputs,
        "kept": kept,
        "rejected": rejected,
        "rejects_by_reason": by_reason,
        "blank_lines": sum(p["blank_lines"] for p in parse),
        "batches": {
            **{
                f"export:{p['batch']}": {
                    k: p[k] for k in ("export", "export_sha256", "layout", "data_lines", "records", "rejected")
                }
                for p in parse
            },
            **{f"images:{item['batch']}": {k: item[k] for k in ("files", "listed", "rejected")} for item in listings},
        },
        "shards": len(shards),
    }
    problems = []
    for what in ("records", "images"):
        if inputs[what] != kept[what] + rejected[what]:
            problems.append(f"{what}: {inputs[what]} inputs != {kept[what]} kept + {rejected[what]} rejected")
        if handed[what][0] != handed[what][1]:
            problems.append(f"{what}: {handed[what][0]} handed to shards but {handed[what][1]} arrived")
    summary["balanced"] = not problems
    if problems:
        raise AccountingError("; ".join(problems))
    return summary, rejects


def ingest_local(
    exports,
    image_dirs,
    outdir,
    *,
    shards: int = 1,
    name_pattern: str | None = None,
    duplicate_policy: str = "reject",
    require_images: bool = True,
    store=None,
) -> dict:
    """Run every ingest step in this process, laid out as the workflow lays it out.

    Each export and each image folder is its own batch (`export-1`, `images-1`, ...), oldest
    first. Writes `outdir/accounting.json` and `outdir/rejects.parquet`; returns the summary.
    """
    from bioscan_rebuild.ingest.inventory import DEFAULT_NAME_PATTERN, inventory, list_images

    outdir = Path(outdir)
    batch_order, parse_summaries, listing_summaries, reject_paths = [], [], [], []
    record_paths: dict[int, list[Path]] = {s: [] for s in range(shards)}
    inventory_paths: dict[int, list[Path]] = {s: [] for s in range(shards)}
    for i, export in enumerate(exports, 1):
        batch = f"export-{i}"
        batch_order.append(batch)
        batch_dir = outdir / "batches" / batch
        parse_to_shards(export, batch, shards, batch_dir)
        parse_summaries.append(batch_dir / "summary.json")
        reject_paths.append(batch_dir / "rejects.parquet")
        for s in range(shards):
            record_paths[s].append(batch_dir / "records" / f"{shard_name(s)}.parquet")
    for i, image_dir in enumerate(image_dirs, 1):
        batch = f"images-{i}"
        batch_order.append(batch)
        batch_dir = outdir / "batches" / batch
        listing, rejects = list_images(image_dir, batch, shards, name_pattern or DEFAULT_NAME_PATTERN)
        write_table(rejects, batch_dir / "rejects.parquet")
        reject_paths.append(batch_dir / "rejects.parquet")
        write_json(
            {
                "batch": batch,
                "image_dir": str(image_dir),
                "files": listing.num_rows + rejects.num_rows,
                "listed": listing.num_rows,
                "rejected": {"unrecognised_name": rejects.num_rows} if rejects.num_rows else {},
            },
            batch_dir / "summary.json",
        )
        listing_summaries.append(batch_dir / "summary.json")
        shard_column = listing["shard"].to_numpy()
        for s in range(shards):
            path = batch_dir / "inventory" / f"{shard_name(s)}.parquet"
            write_table(inventory(listing.filter(shard_column == s), {batch: image_dir}, store), path)
            inventory_paths[s].append(path)
    shard_accountings = []
    for s in range(shards):
        shard_dir = outdir / "shards" / shard_name(s)
        join_shard_files(
            record_paths[s],
            inventory_paths[s],
            batch_order,
            shard_dir,
            duplicate_policy=duplicate_policy,
            require_images=require_images,
        )
        shard_accountings.append(shard_dir / "accounting.json")
        reject_paths.append(shard_dir / "rejects.parquet")
    summary, rejects = account(parse_summaries, listing_summaries, shard_accountings, reject_paths)
    write_json(summary, outdir / "accounting.json")
    write_table(rejects, outdir / "rejects.parquet")
    return summary
