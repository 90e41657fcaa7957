"""Every change curation makes to a field: the working columns, how a field is written (and logged), the
changes table and its ``replay``. The table's columns are described in the ``curate`` module docstring."""

from __future__ import annotations

import numpy as np
import pandas as pd

CHANGE_COLUMNS = ("step", "processid", "field", "old", "new", "rule", "ratio", "source")
# Step 0: what a later delivery replaced (ingest, before curation; ``source``: "old batch:file:line -> new ...").
REDELIVERY_STEP = 0


class ChangeLog:
    """Collects changes as arrays per step (vectorised), so millions of changes cost little."""

    def __init__(self, processids: np.ndarray):
        self.processids = processids
        self.parts: list[pd.DataFrame] = []
        self.step = 0

    def record(self, rule: str, field: str, rows: np.ndarray, old, new, ratio=None, source=None) -> None:
        """Log rows whose value changes (``old`` != ``new``, missing-aware) as one step. ``source``: where the new
        value comes from, when not from the data itself (a maintainer's correction: its reason and report)."""
        old = np.asarray(old, dtype=object)
        new = np.asarray(new, dtype=object)
        old_missing, new_missing = pd.isna(old), pd.isna(new)
        changed = (old_missing != new_missing) | (~old_missing & ~new_missing & (old != new))
        if not changed.any():
            return
        self.step += 1
        ratios = np.full(len(rows), np.nan) if ratio is None else np.broadcast_to(np.asarray(ratio, float), len(rows))
        self.parts.append(
            pd.DataFrame(
                {
                    "step": self.step,
                    "processid": self.processids[rows[changed]],
                    "field": field,
                    "old": np.where(old_missing, None, old)[changed],
                    "new": np.where(new_missing, None, new)[changed],
                    "rule": rule,
                    "ratio": np.round(ratios[changed], 4),
                    "source": source,
                }
            )
        )

    def table(self) -> pd.DataFrame:
        if not self.parts:
            return pd.DataFrame({c: pd.Series(dtype="float64" if c == "ratio" else object) for c in CHANGE_COLUMNS})
        out = pd.concat(self.parts, ignore_index=True)
        out["step"] = out["step"].astype("int64")
        return out


def working_columns(records: pd.DataFrame, required) -> dict:
    """Plain numpy columns while curating: pandas would re-encode object arrays on every write. Equal names share
    one Python object (5M records carry ~30k distinct names; a str object per cell cost gigabytes). Columns of
    ``required`` that ``records`` lacks are all missing."""
    cols = {
        column: records[column].to_numpy(copy=True)
        if records[column].dtype.kind in "fiub"
        else _shared(records[column])
        for column in records.columns
    }
    for column in required:
        if column not in cols:
            cols[column] = np.full(len(records), None, object)
    return cols


def _shared(values) -> np.ndarray:
    """Object array of ``values`` (missing -> None) in which equal values are one object."""
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    table = np.empty(len(uniques) + 1, dtype=object)
    table[:-1] = np.asarray(uniques, dtype=object)
    return table[codes]


def map_unique(values: np.ndarray, function) -> np.ndarray:
    """Apply ``function`` once per distinct value (names repeat a lot: 5M records, ~30k names)."""
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    mapped = np.array([function(u) for u in uniques] + [function(None)], dtype=object)
    return mapped[codes]  # code -1 (missing) -> the last entry


def set_field(
    cols: dict, log: ChangeLog, rule: str, field: str, rows: np.ndarray, new, ratio=None, source=None
) -> None:
    """Write ``new`` into ``field`` at ``rows``, logging what changes under ``rule`` (and ``source``: see
    ``ChangeLog.record``): the only way curation writes a working column."""
    rows = np.asarray(rows, dtype=np.int64)
    if not len(rows):
        return
    values = cols[field]
    new = np.broadcast_to(np.asarray(new, dtype=object), len(rows))
    log.record(rule, field, rows, values[rows], new, ratio, source)
    values[rows] = new
    cols[field] = values


def replay(records: pd.DataFrame, changes: pd.DataFrame) -> pd.DataFrame:
    """Apply a changes table to the input records, step by step, checking each ``old`` value on the way.
    Returns the fields as curated (before taxon/inferred_ranks, which are derived from them)."""
    frame = records.reset_index(drop=True).copy()
    row_of = pd.Series(np.arange(len(frame)), index=frame["processid"].to_numpy())
    excluded = np.zeros(len(frame), bool)
    changes = changes[changes["step"] != REDELIVERY_STEP]  # applied by ingest, before these records existed
    for (_, field), part in changes.groupby(["step", "field"], sort=True):
        rows = row_of.reindex(part["processid"].to_numpy()).to_numpy()
        if field == "record":  # a maintainer's exclusion: the record leaves the table
            excluded[rows[part["new"].to_numpy(dtype=object) == "excluded"]] = True
            continue
        values = frame[field].to_numpy(dtype=object).copy()
        current = values[rows]
        old = part["old"].to_numpy(dtype=object)
        same = (pd.isna(current) & pd.isna(old)) | (current == old)
        if not same.all():
            first = int(np.flatnonzero(~same)[0])
            raise ValueError(
                f"replay: {field} of {part['processid'].iloc[first]} is {current[first]!r}, log says {old[first]!r}"
            )
        values[rows] = part["new"].to_numpy(dtype=object)
        frame[field] = values
    return frame[~excluded].reset_index(drop=True)
