"""Curation step 8 (rules: the ``curate`` module docstring): the record corrections table, applied last."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from bioscan_rebuild.core.schemas import RANKS, processid_keys
from bioscan_rebuild.metadata.bins import normalise_bin
from bioscan_rebuild.metadata.taxonomy.changelog import ChangeLog, set_field
from bioscan_rebuild.metadata.taxonomy.names import clean_species, normalise_name
from bioscan_rebuild.metadata.taxonomy.parents import RANK_BIT
from bioscan_rebuild.metadata.taxonomy.tables import read_table

CORRECTABLE_FIELDS = (*RANKS, "dna_bin", "country", "province_state")
CORRECTION_COLUMNS = ("processid", "field", "value", "reason", "source")
CORRECTION_REASONS = ("wrong_label", "wrong_bin", "no_insect", "multiple_insects", "bad_crop", "duplicate", "other")


def load_corrections(path: str | Path | None) -> pd.DataFrame:
    """The corrections table: processid, field, value, reason, source (TSV, ``#`` comment lines)."""
    if not path:
        return pd.DataFrame(columns=list(CORRECTION_COLUMNS))
    return read_table(path, CORRECTION_COLUMNS)


def _source_of(item) -> str | None:
    """A correction's reason and report as its change's ``source`` ("wrong_label (report-12)")."""
    reason, report = (str(v).strip() if isinstance(v, str) else "" for v in (item.reason, item.source))
    if reason and report:
        return f"{reason} ({report})"
    return reason or report or None


def excluded_by_corrections(cols: dict, corrections: pd.DataFrame | None) -> np.ndarray:
    """The records a ``record exclude`` row will remove (matched as ``apply_corrections`` does), known before
    the votes so that they take no part in them."""
    if corrections is None or corrections.empty:
        return np.zeros(len(cols["processid"]), bool)
    field = corrections["field"].fillna("").astype(str).str.strip()
    value = corrections["value"].fillna("").astype(str).str.strip().str.lower()
    keys = set(processid_keys(corrections["processid"][(field == "record") & (value == "exclude")]))
    return pd.Series(processid_keys(cols["processid"]), dtype=object).isin(keys).to_numpy()


def apply_corrections(
    cols: dict, log: ChangeLog, corrections: pd.DataFrame | None, inferred: np.ndarray
) -> tuple[np.ndarray, pd.DataFrame]:
    """Step 8 [``correction``]. Returns (bool mask of excluded rows, per-correction outcome table). A corrected
    rank is a maintainer's label, not an inference: its bit leaves ``inferred``."""
    if corrections is None:
        corrections = pd.DataFrame(columns=list(CORRECTION_COLUMNS))
    # matched as records are (``processid_key``: any case, invisible characters and spaces ignored)
    row_of = pd.Series(np.arange(len(cols["processid"])), index=processid_keys(cols["processid"]))
    excluded = np.zeros(len(cols["processid"]), bool)
    outcomes = []
    for item in corrections.itertuples(index=False):  # a maintainer's table: hundreds of rows, not millions
        item = item._replace(processid=item.processid.strip(), field=item.field.strip())  # as the records are
        row = row_of.get(processid_keys([item.processid])[0])
        value = item.value.strip() or None
        one_word = False
        if value is not None and item.field in RANKS:  # a maintainer's value gets the names' own cleaning
            value = normalise_name(value, item.field)
            if value is not None and item.field == "species":
                cleaned = clean_species(value)
                one_word, value = cleaned is None, cleaned or value
        if row is None:
            outcome = "unknown_processid"
        elif item.field == "record":
            if (value or "").lower() == "exclude":
                excluded[row] = True
                log.record("correction", "record", np.array([row]), ["kept"], ["excluded"], source=_source_of(item))
                outcome = "excluded"
            else:
                outcome = "invalid_value"
        elif item.field not in CORRECTABLE_FIELDS:
            outcome = "unknown_field"
        elif (item.field == "dna_bin" and value is not None and normalise_bin(value) is None) or one_word:
            outcome = "invalid_value"  # no BIN; one word names no species ("rufipes")
        else:
            if item.field == "dna_bin" and value is not None:
                value = normalise_bin(value)
            old = cols[item.field][row]
            if (pd.isna(old) and value is None) or old == value:
                outcome = "no_change"
            else:
                set_field(cols, log, "correction", item.field, np.array([row]), value, source=_source_of(item))
                if item.field in RANK_BIT:
                    inferred[row] &= np.uint8(~RANK_BIT[item.field] & 0xFF)
                outcome = "applied"
        outcomes.append({**item._asdict(), "outcome": outcome})
    return excluded, pd.DataFrame(outcomes, columns=[*CORRECTION_COLUMNS, "outcome"])
