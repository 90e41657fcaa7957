"""Ingest accounting: every input record row and every image file is either kept or rejected.

Each step balances its own counts (``check_balance``); ``account`` sums the per-export,
per-folder and per-shard counts of a whole run and fails unless they balance too.
"""

from __future__ import annotations

import pyarrow as pa

from bioscan_rebuild.core.errors import AccountingError
from bioscan_rebuild.core.io import read_json, read_table, write_json, write_table
from bioscan_rebuild.core.schemas import REJECT_SCHEMA
from bioscan_rebuild.ingest.parse import cut_short_warning


def count_rejects(rejects: pa.Table) -> dict[str, dict[str, int]]:
    counts = {"record": {}, "image": {}}
    for kind, reason in zip(rejects["kind"].to_pylist(), rejects["reason"].to_pylist()):
        counts[kind][reason] = counts[kind].get(reason, 0) + 1
    return {kind: dict(sorted(c.items())) for kind, c in counts.items()}


def check_balance(n_in: int, n_kept: int, rejected: dict[str, int], what: str) -> None:
    n_rejected = sum(rejected.values())
    if n_in != n_kept + n_rejected:
        raise AccountingError(f"{what}: {n_in} in != {n_kept} kept + {n_rejected} rejected {rejected}")


def _read_tables(paths, schema: pa.Schema) -> pa.Table:
    tables = [read_table(p, schema) for p in paths]
    return pa.concat_tables(tables) if tables else schema.empty_table()


def account(parse_summaries, listing_summaries, shard_accountings, reject_paths) -> tuple[dict, pa.Table]:
    """Sum every count and check the whole run balances. Returns (summary, all rejects)."""
    # each with the keys read below: another step's file was a KeyError traceback
    parse_keys = ("batch", "export", "export_sha256", "layout", "data_lines", "records", "rejected", "blank_lines")
    parse = [read_json(p, "an export's parse summary", parse_keys) for p in parse_summaries]
    listing_keys = ("batch", "files", "listed", "rejected")
    listings = [read_json(p, "an image folder's listing summary", listing_keys) for p in listing_summaries]
    shard_keys = ("records_in", "records_kept", "images_in", "images_kept")
    shards = [read_json(p, "a shard's accounting", shard_keys) for p in shard_accountings]
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
                    **{k: p[k] for k in ("export", "export_sha256", "layout", "data_lines", "records", "rejected")},
                    # an export that may have been cut short (a parse summary of an earlier version: not said)
                    **{k: p.get(k, False) for k in ("last_line_unterminated", "last_line_kept")},
                }
                for p in parse
            },
            **{f"images:{item['batch']}": {k: item[k] for k in ("files", "listed", "rejected")} for item in listings},
        },
        "shards": len(shards),
        # what a person must look at: an export that may have been cut short
        "warnings": [warning for warning in map(cut_short_warning, parse) if warning],
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


def write_accounting(
    parse_summaries, listing_summaries, shard_accountings, reject_paths, output, rejects_output
) -> dict:
    """``account`` the run, write its summary to `output` and all rejects to `rejects_output`."""
    summary, rejects = account(parse_summaries, listing_summaries, shard_accountings, reject_paths)
    write_json(summary, output)
    write_table(rejects, rejects_output)
    return summary
