"""Curation step 8 (rules: the ``curate`` module docstring): the record corrections table, applied last."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from bioscan_rebuild.core.novel import MALAISE_RE
from bioscan_rebuild.core.schemas import RANKS, processid_keys
from bioscan_rebuild.metadata.bins import normalise_bin
from bioscan_rebuild.metadata.taxonomy.changelog import ChangeLog, set_field
from bioscan_rebuild.metadata.taxonomy.names import MISSING_TOKENS, clean_species, normalise_name
from bioscan_rebuild.metadata.taxonomy.parents import BINOMIAL_GENUS, HIGHER_RANK_SUFFIX, RANK_BIT
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
    reason = corrections["reason"].fillna("").astype(str).str.strip()
    keys = pd.Series(processid_keys(corrections["processid"].fillna("").astype(str).str.strip()), dtype=object)
    last = ~pd.DataFrame({"key": keys, "field": field}).duplicated(keep="last").to_numpy()
    applies = last & (field == "record").to_numpy() & (value == "exclude").to_numpy()
    applies &= reason.isin(CORRECTION_REASONS).to_numpy()
    return pd.Series(processid_keys(cols["processid"]), dtype=object).isin(set(keys[applies])).to_numpy()


def apply_corrections(
    cols: dict,
    log: ChangeLog,
    corrections: pd.DataFrame | None,
    inferred: np.ndarray,
    lineage: pd.DataFrame | None = None,
) -> tuple[np.ndarray, pd.DataFrame]:
    """Step 8 [``correction``]. Returns (bool mask of excluded rows, per-correction outcome table: applied,
    excluded, no_change, unknown_processid, invalid_reason (not one of ``CORRECTION_REASONS``), overridden (a
    later row corrects the same field of the record), unknown_field, invalid_value). A corrected rank is a
    maintainer's label, not an inference: its bit leaves ``inferred``, and the record's ranks inferred
    from the label it replaces go with it (``_infer_again``, from ``lineage``: step 7's table)."""
    if corrections is None:
        corrections = pd.DataFrame(columns=list(CORRECTION_COLUMNS))
    # matched as records are (``processid_key``: any case, invisible characters and spaces ignored)
    row_of = pd.Series(np.arange(len(cols["processid"])), index=processid_keys(cols["processid"]))
    excluded = np.zeros(len(cols["processid"]), bool)
    outcomes = []
    # two rows for one field of one record: the last one in the table is the maintainer's word
    targets = list(zip(processid_keys(corrections["processid"].str.strip()), corrections["field"].str.strip()))
    last_of = {target: position for position, target in enumerate(targets)}
    for position, item in enumerate(corrections.itertuples(index=False)):  # hundreds of rows, not millions
        item = item._replace(processid=item.processid.strip(), field=item.field.strip())  # as the records are
        row = row_of.get(targets[position][0])
        value = item.value.strip() or None
        if value is not None and item.field in ("country", "province_state") and value.lower() in MISSING_TOKENS:
            value = None  # as ingest reads a place: "NA" is no place
        one_word = False
        if value is not None and item.field in RANKS:  # a maintainer's value gets the names' own cleaning
            value = normalise_name(value, item.field)
            if value is not None and item.field == "species":
                cleaned = clean_species(value)
                one_word, value = cleaned is None, cleaned or value
        if row is None:
            outcome = "unknown_processid"
        elif (item.reason or "").strip() not in CORRECTION_REASONS:
            outcome = "invalid_reason"
        elif last_of[targets[position]] != position:
            outcome = "overridden"
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
                    _infer_again(cols, log, inferred, row, item.field, lineage, _source_of(item))
                outcome = "applied"
        outcomes.append({**item._asdict(), "outcome": outcome})
    return excluded, pd.DataFrame(outcomes, columns=[*CORRECTION_COLUMNS, "outcome"])


def _infer_again(cols, log, inferred, row: int, field: str, lineage, source) -> None:
    """After a maintainer corrects ``field`` of record ``row``: every rank above it that steps 5 and 7 inferred
    came from the record's lower labels, the replaced one among them, so it goes [``correction_inferred_dropped``]
    (a genus inferred from a corrected species, a family inferred from a corrected genus: Culex left under
    Phoridae). Then they are inferred again from the corrected labels, as those steps do: the genus from the
    species' first word [``genus_from_species``], a parent from the nearest labelled lower rank the lineage
    links to one parent [``parent_from_child``]."""
    rows = np.array([row])
    stale = [rank for rank in RANKS[: RANKS.index(field)] if inferred[row] & RANK_BIT[rank]]
    for rank in stale:
        set_field(cols, log, "correction_inferred_dropped", rank, rows, None, source=source)
        inferred[row] &= np.uint8(~RANK_BIT[rank] & 0xFF)
    if not stale:
        return
    species = cols["species"][row]
    if "genus" in stale and not pd.isna(species):
        first = BINOMIAL_GENUS.match(str(species))
        if first and not re.search(HIGHER_RANK_SUFFIX, first.group(1)) and not re.search(MALAISE_RE, first.group(1)):
            set_field(cols, log, "genus_from_species", "genus", rows, first.group(1))
            inferred[row] |= RANK_BIT["genus"]
    if lineage is None or lineage.empty:
        return
    links = lineage[lineage["parents"] == 1].set_index(["child_rank", "child", "parent_rank"])["parent"]
    for parent in reversed(RANKS[: RANKS.index("genus")]):
        if parent not in stale or not pd.isna(cols[parent][row]):
            continue
        for child in RANKS[RANKS.index("genus") : RANKS.index(parent) : -1]:
            value = cols[child][row]
            found = None if pd.isna(value) else links.get((child, value, parent))
            if found is not None:
                set_field(cols, log, "parent_from_child", parent, rows, found)
                inferred[row] |= RANK_BIT[parent]
                break
