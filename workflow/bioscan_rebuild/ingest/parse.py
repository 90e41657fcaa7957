"""Ingest step 1: one BOLD export -> record shards keyed by md5(processid), rejects, a summary.

One job per export. Because a processid always lands in the same shard, its duplicates across
exports meet in one join job.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from bioscan_rebuild.core.errors import AccountingError
from bioscan_rebuild.core.io import atomic_path, write_json, write_parquet, write_table
from bioscan_rebuild.core.schemas import RECORD_SCHEMA, REJECT_SCHEMA, shard_name, shard_of
from bioscan_rebuild.ingest.bold import DEFAULT_MARKERS, DEFAULT_MISSING_VALUES, parse_export

# Flush shard buffers once this many rows are held, so memory stays bounded on huge exports.
FLUSH_ROWS = 400_000


REJECTED_KEYS_SCHEMA = pa.schema([pa.field("processid", pa.string())])


def write_rejected_keys(processids: pa.ChunkedArray, n_shards: int, folder: Path) -> None:
    """Each shard's distinct rejected processids (sorted), one file per shard (all of them, maybe empty)."""
    names = np.array(sorted(set(pc.drop_null(processids).to_pylist())), dtype=object)
    shards = shard_of(names, n_shards) if len(names) else np.zeros(0, np.int64)
    order = np.argsort(shards, kind="stable")  # grouped by shard, each group still sorted
    bounds = np.searchsorted(shards[order], np.arange(n_shards + 1))
    for shard in range(n_shards):
        ids = names[order[bounds[shard] : bounds[shard + 1]]]
        write_table(pa.table({"processid": pa.array(ids, pa.string())}), folder / f"{shard_name(shard)}.parquet")


def parse_to_shards(
    export: str | Path,
    batch: str,
    n_shards: int,
    outdir: str | Path,
    *,
    missing_values=DEFAULT_MISSING_VALUES,
    markers=DEFAULT_MARKERS,
    source_name: str | None = None,
) -> dict:
    """Parse one export into `outdir/records/shard-NNN.parquet` (all n_shards written, maybe empty),
    `outdir/rejected_keys/shard-NNN.parquet` (the processids of the shard's rejected rows: the join tells a photo of
    a rejected record from one that no record names), `outdir/rejects.parquet` and `outdir/summary.json`. Returns
    the summary.

    Rejects unparseable and unkeyed rows and rows of other markers (`markers=None` keeps every
    marker); raises AccountingError unless every data line is a record or a reject."""

    outdir = Path(outdir)
    (outdir / "records").mkdir(parents=True, exist_ok=True)
    writers: dict[int, pq.ParquetWriter] = {}
    buffers: dict[int, list[pa.Table]] = {s: [] for s in range(n_shards)}
    buffered = 0
    reject_parts = []
    with contextlib.ExitStack() as finished:
        # every shard file is written under a temporary name and renamed only when the whole export parsed
        # and balanced: a killed or failed job leaves no shard that looks finished
        temporaries = {
            s: finished.enter_context(atomic_path(outdir / "records" / f"{shard_name(s)}.parquet"))
            for s in range(n_shards)
        }

        def flush():
            for shard, parts in buffers.items():
                if not parts:
                    continue
                if shard not in writers:
                    writers[shard] = pq.ParquetWriter(temporaries[shard], RECORD_SCHEMA, compression="zstd")
                writers[shard].write_table(pa.concat_tables(parts))
                parts.clear()

        stats = None
        try:
            for records, rejects, stats in parse_export(  # noqa: B007 - stats is final after the loop
                export, batch, missing_values=tuple(missing_values), markers=markers, source_name=source_name
            ):
                reject_parts.append(rejects)
                if records.num_rows:
                    shards = shard_of(records["processid"].to_pylist(), n_shards)
                    for shard in np.unique(shards):
                        part = records.filter(pa.array(shards == shard))
                        buffers[int(shard)].append(part)
                    buffered += records.num_rows
                    if buffered >= FLUSH_ROWS:
                        flush()
                        buffered = 0
            flush()
        finally:
            for writer in writers.values():
                writer.close()
        for shard in range(n_shards):
            if shard not in writers:
                write_parquet(RECORD_SCHEMA.empty_table(), temporaries[shard])
        if stats.data_lines != stats.records + sum(stats.rejects.values()):
            raise AccountingError(
                f"{export}: {stats.data_lines} lines != {stats.records} records + rejects {stats.rejects}"
            )
        rejects = pa.concat_tables(reject_parts) if reject_parts else REJECT_SCHEMA.empty_table()
        write_rejected_keys(rejects["processid"], n_shards, outdir / "rejected_keys")
        write_table(rejects, outdir / "rejects.parquet")
    summary = {
        "batch": batch,
        "export": source_name or str(export),
        "export_sha256": stats.sha256,
        "layout": stats.layout,
        "data_lines": stats.data_lines,
        "blank_lines": stats.blank_lines,
        "records": stats.records,
        "rejected": dict(sorted(stats.rejects.items())),
        "coordinates_out_of_range": stats.coordinates_out_of_range,
        "coordinates_unparseable": stats.coordinates_unparseable,
        "quoted_records": stats.quoted_records,
        "last_line_unterminated": stats.last_line_unterminated,
        "last_line": stats.last_line,
        "last_line_kept": stats.last_line_kept,
    }
    write_json(summary, outdir / "summary.json")
    return summary


def cut_short_warning(summary: dict) -> str | None:
    """What to tell the user of an export (its parse ``summary``) that ends without a line break: its last line may
    have been cut short, and what became of it. None for an export that ends with one."""
    if not summary.get("last_line_unterminated"):
        return None
    line = summary["last_line"]
    outcome = (
        "it holds no record (a header only)"
        if not line
        else f"line {line} was kept as a record: check it against the source"
        if summary["last_line_kept"]
        else f"line {line} was rejected (its reject row says why)"
    )
    return (
        f"{summary['export']} ends without a line break: its last line may have been cut short (an interrupted "
        f"download or copy); {outcome}"
    )
