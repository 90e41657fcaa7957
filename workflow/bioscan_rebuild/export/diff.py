"""The release diff: this build against the previous published release (config ``release.previous``).

``metadata/release_diff.csv``: one row per difference, ``processid, change, field, old, new, why``:
- ``added``: a record the previous release did not hold (``field`` split, ``new`` its split);
- ``removed``: a record of the previous release this one leaves out, ``why`` the reasons this build rejected it
  (``rejects.csv``), or that no input holds it any more;
- ``changed``: a field whose value differs, ``why`` the rules of this build's changes table for that record and
  field (``changes.csv``: curation, or ``superseded`` for a redelivery), or that its source row or photo changed;
- ``moved``: a record whose split differs (a frozen rebuild has none).

``metadata/release_diff_summary.json`` counts them. Values are compared as the release CSV writes them.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv

from bioscan_rebuild.core.io import file_sha256
from bioscan_rebuild.core.schemas import RANKS
from bioscan_rebuild.export.layout import CSV_PATH, ROOT

DIFF_SCHEMA = pa.schema(
    [
        pa.field("processid", pa.string()),
        pa.field("change", pa.string()),
        pa.field("field", pa.string()),
        pa.field("old", pa.string()),
        pa.field("new", pa.string()),
        pa.field("why", pa.string()),
    ]
)
# Names the ingest and curation logs use for release columns.
LOGGED_AS = {
    "dna_bin": ("dna_bin", "bin_uri"),
    "coord-lat": ("lat",),
    "coord-lon": ("lon",),
    "dna_barcode": ("nucleotides",),
}
NOT_COMPARED = ("split", "chunk")  # a split move is its own kind of change; the chunk follows the split


def _as_text(table: pa.Table) -> pd.DataFrame:
    """Every column as the release CSV writes it (text; missing = None)."""
    columns = {}
    for name in table.schema.names:
        column = table[name]
        if pa.types.is_dictionary(column.type):
            column = column.cast(column.type.value_type)
        columns[name] = column.cast(pa.string()).to_numpy(zero_copy_only=False)
    return pd.DataFrame(columns)


def read_release_csv(path) -> pd.DataFrame:
    header = pacsv.read_csv(path, read_options=pacsv.ReadOptions(block_size=1 << 16)).schema.names
    types = dict.fromkeys(header, pa.string())
    # only the empty cell is missing, as the release writes it: "NA", "null" or "nan" are values a record may hold
    options = pacsv.ConvertOptions(
        column_types=types, null_values=[""], strings_can_be_null=True, quoted_strings_can_be_null=True
    )
    return _as_text(pacsv.read_csv(path, convert_options=options))


def _why_changed(changes: pd.DataFrame) -> dict[tuple[str, str], str]:
    if changes.empty:
        return {}
    rules = changes.groupby(["processid", "field"], sort=False)["rule"].agg(lambda r: ";".join(dict.fromkeys(r)))
    return rules.to_dict()


def release_diff(previous_csv, new: pa.Table, rejects: pd.DataFrame, changes: pd.DataFrame) -> tuple[pa.Table, dict]:
    """(diff rows, summary) of the release table ``new`` (release columns) against ``previous_csv``."""
    old = read_release_csv(previous_csv).set_index("processid", drop=False)
    now = _as_text(new).set_index("processid", drop=False)
    rows = []
    added = now.index.difference(old.index)
    for pid in added.sort_values():
        rows.append((pid, "added", "split", None, now.at[pid, "split"], "new in this build"))
    removed = old.index.difference(now.index)
    record_rejects = rejects[rejects["kind"] == "record"]
    reasons = record_rejects.groupby("processid")["reason"].agg(lambda r: ";".join(sorted(set(r)))).to_dict()
    for pid in removed.sort_values():
        why = reasons.get(pid, "no input of this build holds it")
        rows.append((pid, "removed", "split", old.at[pid, "split"], None, why))
    common = now.index.intersection(old.index).sort_values()
    before, after = old.loc[common], now.loc[common]
    why = _why_changed(changes)
    changed_records = set()
    # derived from the ranks, which the changes log names: taxon from those whose labels it was and is,
    # inferred_ranks from those that changed (each rank's values read once, not per changed cell)
    ranks = [r for r in RANKS if r in after.columns and r in before.columns]
    rank_values = {r: (before[r].to_numpy(object), after[r].to_numpy(object)) for r in ranks}
    for field in [c for c in after.columns if c in before.columns and c not in (*NOT_COMPARED, "processid")]:
        a, b = before[field].to_numpy(object), after[field].to_numpy(object)
        a_missing, b_missing = pd.isna(a), pd.isna(b)
        differ = (a_missing != b_missing) | (~a_missing & ~b_missing & (a != b))
        for i in np.flatnonzero(differ):
            pid = common[i]
            names = LOGGED_AS.get(field, (field,))
            if field == "taxon":
                names = [r for r in ranks if b[i] in (rank_values[r][0][i], rank_values[r][1][i])]
                names += [r for r in ranks if a[i] in (rank_values[r][0][i], rank_values[r][1][i])]
            elif field == "inferred_ranks":
                names = [r for r in ranks if rank_values[r][0][i] != rank_values[r][1][i]]
            rules = [why[(pid, name)] for name in names if (pid, name) in why]
            reason = ";".join(dict.fromkeys(rules)) if rules else "its source row, photo or an earlier stage changed"
            rows.append((pid, "changed", field, None if a_missing[i] else a[i], None if b_missing[i] else b[i], reason))
            changed_records.add(pid)
    moved = before["split"].to_numpy(object) != after["split"].to_numpy(object)
    for i in np.flatnonzero(moved):
        pid = common[i]
        rows.append((pid, "moved", "split", before["split"].iat[i], after["split"].iat[i], "not frozen"))
    table = pa.Table.from_pylist([dict(zip(DIFF_SCHEMA.names, row)) for row in rows], schema=DIFF_SCHEMA)
    summary = {
        "previous_records": len(old),
        "records": len(now),
        "added": len(added),
        "removed": len(removed),
        "changed_records": len(changed_records),
        "changed_fields": sum(1 for row in rows if row[1] == "changed"),
        "moved": int(moved.sum()),
    }
    return table, summary


def write_release_diff(previous, new: pa.Table, rejects: pd.DataFrame, changes: pd.DataFrame, folder: Path) -> dict:
    """``release_diff`` against the release folder ``previous`` (holding MANIFEST.json), written as
    ``release_diff.csv`` and ``release_diff_summary.json`` in ``folder``; returns the file names -> paths."""
    release = Path(previous)
    table, summary = release_diff(release / ROOT / CSV_PATH, new, rejects, changes)
    summary["previous"] = release.name
    manifest = release / "MANIFEST.json"
    summary["previous_manifest_sha256"] = file_sha256(manifest) if manifest.exists() else None
    folder.mkdir(parents=True, exist_ok=True)
    pacsv.write_csv(table, folder / "release_diff.csv")
    (folder / "release_diff_summary.json").write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    return {
        "release_diff.csv": folder / "release_diff.csv",
        "release_diff_summary.json": folder / "release_diff_summary.json",
    }
