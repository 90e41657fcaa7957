"""Curation step 8 (rules: the ``curate`` module docstring): the record corrections table, applied last."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from bioscan_rebuild.core.names import name_as_curated
from bioscan_rebuild.core.novel import novel_mask
from bioscan_rebuild.core.schemas import MISSING_TOKENS, RANKS, processid_keys
from bioscan_rebuild.metadata.bins import normalise_bin
from bioscan_rebuild.metadata.taxonomy.changelog import ChangeLog, set_field
from bioscan_rebuild.metadata.taxonomy.names import FAMILY_GROUP_NAME, fix_name
from bioscan_rebuild.metadata.taxonomy.parents import RANK_BIT, genus_of_species
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


def _text(corrections: pd.DataFrame, column: str) -> pd.Series:
    return corrections[column].fillna("").astype(str).str.strip()


def _targets(corrections: pd.DataFrame) -> list[tuple[str, str]]:
    """Per correction row, the (record key, field) it corrects: records matched as ingest matches them
    (``processid_key``: any case, invisible characters and spaces ignored)."""
    return list(zip(processid_keys(_text(corrections, "processid")), _text(corrections, "field")))


def _exclusions(corrections: pd.DataFrame) -> np.ndarray:
    """Per correction row, whether it removes its record: ``record exclude`` with a known reason, and the last row
    for that record's ``record`` field (the maintainer's word). The one decision both the votes and step 8 use."""
    last = ~pd.Series(_targets(corrections), dtype=object).duplicated(keep="last").to_numpy()
    says_exclude = (_text(corrections, "field") == "record") & (_text(corrections, "value").str.lower() == "exclude")
    return last & says_exclude.to_numpy() & _text(corrections, "reason").isin(CORRECTION_REASONS).to_numpy()


def excluded_by_corrections(cols: dict, corrections: pd.DataFrame | None) -> np.ndarray:
    """The records a ``record exclude`` row will remove in step 8, known before the votes so that they take no
    part in them."""
    if corrections is None or corrections.empty:
        return np.zeros(len(cols["processid"]), bool)
    keys = [key for (key, _), excludes in zip(_targets(corrections), _exclusions(corrections)) if excludes]
    return pd.Series(processid_keys(cols["processid"]), dtype=object).isin(set(keys)).to_numpy()


def record_rows(cols: dict) -> pd.Series:
    """Each record's row by its ``processid_key`` (made once per curation: millions of records)."""
    return pd.Series(np.arange(len(cols["processid"])), index=processid_keys(cols["processid"]))


def _read_rows(
    cols: dict, corrections: pd.DataFrame, fixes: pd.DataFrame | None, row_of: pd.Series | None = None
) -> list[tuple]:
    """Per correction row: (the row stripped as records are, the record's row or None, the value as step 8 reads
    it, the outcome refusing it or None). ``row_of``: ``record_rows(cols)``, where the caller has it."""
    if corrections.empty:
        return []
    row_of = record_rows(cols) if row_of is None else row_of
    held_at = _ranks_holding(cols, corrections, fixes)
    targets = _targets(corrections)
    read = []
    for position, item in enumerate(corrections.itertuples(index=False)):  # hundreds of rows, not millions
        item = item._replace(processid=item.processid.strip(), field=item.field.strip())  # as the records are
        row = row_of.get(targets[position][0])
        value = item.value.strip() or None
        if value is not None and item.field in ("country", "province_state") and value.lower() in MISSING_TOKENS:
            value = None  # as ingest reads a place: "NA" is no place
        one_word = deleted = False
        if value is not None and item.field in RANKS:  # a maintainer's value gets the names' own cleaning
            value = name_as_curated(value, item.field)  # steps 1 and 2, the table last, as the records get them
            named, value = value, value if value is None else fix_name(value, item.field, fixes)
            deleted = named is not None and value is None  # the typo table holds it for no name
            if value is not None and item.field == "species":
                one_word = " " not in value
        refused = None
        if row is None:
            refused = "unknown_processid"
        elif (item.reason or "").strip() not in CORRECTION_REASONS:
            refused = "invalid_reason"
        elif item.field == "record":
            refused = None if (value or "").lower() == "exclude" else "invalid_value"
        elif item.field not in CORRECTABLE_FIELDS:
            refused = "unknown_field"
        elif (item.field == "dna_bin" and value is not None and normalise_bin(value) is None) or one_word or deleted:
            refused = "invalid_value"  # no BIN; one word names no species ("rufipes"); a name step 2 deletes
        elif item.field in RANKS and value is not None and _cannot_be(value, item.field, held_at):
            refused = "invalid_value"  # a family as a genus, a class as an order: step 2 would drop it
        if item.field == "dna_bin" and value is not None and refused is None:
            value = normalise_bin(value)
        read.append((item, row, value, refused))
    return read


def _last_words(read: list[tuple]) -> dict[tuple[int, str], int]:
    """(record row, field) -> the position of the last row for it: the maintainer's word, applied or refused."""
    return {(row, item.field): position for position, (item, row, _, _) in enumerate(read) if row is not None}


def declared_wrong(
    cols: dict,
    corrections: pd.DataFrame | None,
    fixes: pd.DataFrame | None = None,
    fields: tuple[str, ...] = (*RANKS, "dna_bin"),
    stated: bool = False,
    row_of: pd.Series | None = None,
) -> dict:
    """Per field (the ranks and ``dna_bin``), the records whose value there a maintainer's row declares wrong: the
    row step 8 applies for that field of the record (``_last_words``), giving another value than the record holds
    when it is called (a row that confirms the label is no such row). Known before the votes (steps 4 and 6), so
    that a label step 8 replaces takes no part in them: one wrong species on a barcode must not drop its mates'
    right one. Field -> Series: the record's row -> the maintainer's value (None: no label; a ``dna_bin`` row's is
    the BIN the record is grouped under in step 6). ``fields``: those to look at; ``stated``: a row that confirms
    the value counts too (a BIN a maintainer states is not voted over)."""
    if corrections is None or corrections.empty:
        return {}
    read = _read_rows(cols, corrections, fixes, row_of)
    found: dict[str, dict[int, str | None]] = {}
    for (row, field), position in _last_words(read).items():
        if field not in fields or read[position][3] is not None:
            continue  # a refused row leaves the record its label
        value, old = read[position][2], cols[field][row]
        if not stated and ((value is None and pd.isna(old)) or (value is not None and old == value)):
            continue  # the maintainer confirms the label: it votes
        found.setdefault(field, {})[int(row)] = value
    return {field: pd.Series(rows, dtype=object) for field, rows in found.items()}


def apply_corrections(
    cols: dict,
    log: ChangeLog,
    corrections: pd.DataFrame | None,
    inferred: np.ndarray,
    teaching: np.ndarray | None = None,
    fixes: pd.DataFrame | None = None,
    row_of: pd.Series | None = None,
) -> tuple[np.ndarray, pd.DataFrame, np.ndarray, np.ndarray]:
    """Step 8 [``correction``]. Returns (bool mask of excluded rows, per-correction outcome table: applied,
    excluded, no_change, unknown_processid, invalid_reason (not one of ``CORRECTION_REASONS``), overridden (a later
    row for the same field of the record is the maintainer's word, whether applied or refused), unknown_field,
    invalid_value). A corrected rank is a maintainer's label, not an inference: its bit leaves ``inferred``, and the
    record's ranks inferred from the label it replaces go with it (``_drop_stale_inferences``); the third mask holds
    those records, to infer again; the fourth, the records whose genus the maintainer's word (the last row for it,
    applied or confirming) says is none, as step 8 reads the value (empty, `sp.`, a dash). ``teaching``: the records
    whose labels make the lineage the corrected ones are held to (default all; not the ones leaving the table).
    ``fixes``: step 2's typo table, which a corrected name meets too. ``row_of``: ``record_rows(cols)``, where the
    caller has it."""
    if corrections is None:
        corrections = pd.DataFrame(columns=list(CORRECTION_COLUMNS))
    excluded = np.zeros(len(cols["processid"]), bool)
    reinfer = np.zeros(len(cols["processid"]), bool)
    genus_none = np.zeros(len(cols["processid"]), bool)
    outcomes = []
    read = _read_rows(cols, corrections, fixes, row_of)
    # two rows for one field of one record: the last one in the table is the maintainer's word
    last_of = _last_words(read)
    applied_ranks: dict[int, dict[str, int]] = {}  # record row -> corrected rank -> the correction's position
    confirmed_ranks: dict[int, dict[str, int]] = {}  # the same for rows that gave the label the record holds
    for position, (item, row, value, refused) in enumerate(read):
        if refused in ("unknown_processid", "invalid_reason"):
            outcome = refused
        elif last_of[(row, item.field)] != position:
            outcome = "overridden"
        elif refused is not None:
            outcome = refused
        elif item.field == "record":
            excluded[row] = True
            log.record("correction", "record", np.array([row]), ["kept"], ["excluded"], source=_source_of(item))
            outcome = "excluded"
        else:
            old = cols[item.field][row]
            if item.field == "genus":
                genus_none[row] = value is None
            if (pd.isna(old) and value is None) or old == value:
                outcome = "no_change"
                if item.field in RANK_BIT:  # still the maintainer's word: the lineage check leaves it
                    confirmed_ranks.setdefault(int(row), {})[item.field] = position
                    inferred[row] &= np.uint8(~RANK_BIT[item.field] & 0xFF)  # an inferred label confirmed: theirs
            else:
                set_field(cols, log, "correction", item.field, np.array([row]), value, source=_source_of(item))
                if item.field in RANK_BIT:
                    inferred[row] &= np.uint8(~RANK_BIT[item.field] & 0xFF)
                    if _drop_stale_inferences(cols, log, inferred, row, item.field, _source_of(item)):
                        reinfer[row] = True
                    applied_ranks.setdefault(int(row), {})[item.field] = position
                outcome = "applied"
        outcomes.append({**item._asdict(), "outcome": outcome})
    for position in _keep_species_under_genus(cols, log, inferred, reinfer, applied_ranks, corrections):
        outcomes[position]["outcome"] = "invalid_value"
    if teaching is None:
        teaching = np.ones(len(cols["processid"]), bool)
    maintainers = {row: {**confirmed_ranks.get(row, {}), **fields} for row, fields in applied_ranks.items()}
    _keep_lineage_of_corrections(cols, log, inferred, reinfer, maintainers, corrections, teaching & ~excluded)
    return excluded, pd.DataFrame(outcomes, columns=[*CORRECTION_COLUMNS, "outcome"]), reinfer, genus_none


def _ranks_holding(cols: dict, corrections: pd.DataFrame, fixes: pd.DataFrame | None) -> dict[str, pd.Series]:
    """Each name a correction gives a rank (as steps 1 and 2 write it) -> how many records hold it at each rank
    (only those names are counted: one pass per rank over the records)."""
    ranked = _text(corrections, "field").isin(RANKS[:-1])
    given = zip(_text(corrections, "value")[ranked], _text(corrections, "field")[ranked])
    normalised = ((name_as_curated(value, field), field) for value, field in given if value)
    names = {fix_name(name, field, fixes) for name, field in normalised if name} - {None}
    if not names:
        return {}
    counts = {}
    for rank in RANKS[:-1]:
        values = pd.Series(cols[rank], dtype=object)
        counts[rank] = values[values.isin(names)].value_counts()
    table = pd.DataFrame(counts).fillna(0)
    return {name: table.loc[name] for name in table.index}


def _cannot_be(value: str, field: str, held_at: dict[str, pd.Series]) -> bool:
    """Whether a maintainer's ``value`` cannot be the rank ``field``, by step 2's rule (``rank_misplaced``): a
    capitalised family-group name as a genus, or a name the records hold at another rank and never at this one."""
    if field == "genus" and re.match(FAMILY_GROUP_NAME, value):
        return True
    counts = held_at.get(value)
    if counts is None or field == "species":
        return False
    return counts.sum() > 0 and counts.get(field, 0) == 0


def names_another_genus(genus, species) -> bool:
    """Step 5's rule, as step 8 holds a corrected record to it: a formal species (neither name a placeholder)
    that begins with another genus than ``genus``."""
    if pd.isna(genus) or pd.isna(species) or novel_mask(pd.Series([genus]), pd.Series([species]))[0]:
        return False
    first = re.match(r"^([A-Z]\S*)\s", species)
    return first is not None and first.group(1).casefold() != genus.casefold()


def _keep_species_under_genus(cols, log, inferred, reinfer, applied_ranks, corrections) -> list[int]:
    """After step 8, step 5's rule again for the corrected records: a species must begin with its genus. A
    corrected species under the record's own genus takes the genus off [``correction_genus_dropped``] (step 5 then
    gives it from the species); a corrected genus takes off a species of another genus [``correction_species_
    dropped``], the maintainer's own species too: that row's outcome is ``invalid_value``. Returns those rows."""
    refused = []
    for row, fields in applied_ranks.items():
        if not names_another_genus(cols["genus"][row], cols["species"][row]):
            continue
        item = corrections.iloc[fields.get("genus", fields.get("species"))]
        source = _source_of(item)
        if "species" in fields and "genus" not in fields:
            set_field(cols, log, "correction_genus_dropped", "genus", np.array([row]), None, source=source)
            _drop_stale_inferences(cols, log, inferred, row, "genus", source)
            reinfer[row] = True
        else:
            set_field(cols, log, "correction_species_dropped", "species", np.array([row]), None, source=source)
            if "species" in fields:
                refused.append(fields["species"])
    return refused


def _keep_lineage_of_corrections(cols, log, inferred, reinfer, applied_ranks, corrections, teaching) -> None:
    """After step 8, step 7's lineage for the corrected records: where the other records' own labels (not what
    steps 5 and 7 inferred: a family inferred from the corrected record's wrong one) give a corrected name one label
    at a rank the record labels otherwise, the record's label goes. A rank above the corrected one goes
    [``correction_parent_dropped``] (genus corrected to Culex: the record's Phoridae, Culicidae for the data; step 7
    gives the parent again from the corrected label), with the uncorrected ranks between whose lineage the data puts
    under the label that went (its subfamily Metopininae); a rank below it goes with every uncorrected rank under it
    [``correction_child_dropped``] (family corrected to Culicidae: the record's genus Megaselia and its species). A
    corrected species without a genus is judged by the genus step 5 will read from it.
    Only a pair of one corrected and one uncorrected rank is judged: two corrected ranks are the maintainer's word
    (a genus moved to another family; a row that gives the label the record holds counts), two uncorrected ones the
    source's. ``applied_ranks``: record row -> its corrected ranks -> their correction rows."""
    if not applied_ranks:
        return
    rows = np.fromiter(applied_ranks, dtype=np.int64, count=len(applied_ranks))
    # the genus step 5 will give a corrected species that has none: the maintainer's too
    bare = [row for row in rows if "species" in applied_ranks[row] and pd.isna(cols["genus"][row])]
    read = dict(zip(bare, genus_of_species(cols, cols["species"][np.array(bare, np.int64)]))) if bare else {}
    virtual = {row: genus for row, genus in read.items() if not pd.isna(genus)}
    others = teaching.copy()
    others[rows] = False  # the corrected records themselves teach nothing: their labels are the ones judged
    parent_of = {}  # (rank, higher rank) -> the one label the other records give each of the corrected' names
    for depth, rank in enumerate(RANKS[1:], start=1):
        names = set(pd.unique(cols[rank][rows][~pd.isna(cols[rank][rows])]))
        names |= set(virtual.values()) if rank == "genus" else set()
        own = ~(inferred & RANK_BIT[rank]).astype(bool)
        holding = others & own & pd.Series(cols[rank], dtype=object).isin(names).to_numpy()
        for higher in RANKS[:depth]:
            both = holding & ~pd.isna(cols[higher]) & ~(inferred & RANK_BIT[higher]).astype(bool)
            pairs = pd.DataFrame({"name": cols[rank][both], "higher": cols[higher][both]})
            distinct = pairs.groupby("name")["higher"].agg(["nunique", "first"])
            parent_of[rank, higher] = distinct.loc[distinct["nunique"] == 1, "first"].to_dict()
    for row, fields in applied_ranks.items():
        if row in virtual:
            fields = {**fields, "genus": fields["species"]}
        for depth, rank in enumerate(RANKS[1:], start=1):
            for higher in RANKS[:depth]:
                name = virtual[row] if rank == "genus" and row in virtual else cols[rank][row]
                label = cols[higher][row]
                if pd.isna(name) or pd.isna(label) or (rank in fields) == (higher in fields):
                    continue
                expected = parent_of[rank, higher].get(name)
                if expected is None or expected == label:
                    continue
                if rank in fields:
                    between = RANKS[RANKS.index(higher) + 1 : depth]
                    under = [r for r in between if r not in fields and parent_of[r, higher].get(cols[r][row]) == label]
                    gone, rule, by = [higher, *under], "correction_parent_dropped", rank
                else:
                    below = RANKS[RANKS.index(rank) :]
                    gone, rule, by = [r for r in below if r not in fields], "correction_child_dropped", higher
                source = _source_of(corrections.iloc[fields[by]])
                for dropped in gone:
                    if not pd.isna(cols[dropped][row]):
                        set_field(cols, log, rule, dropped, np.array([row]), None, source=source)
                        inferred[row] &= np.uint8(~RANK_BIT[dropped] & 0xFF)
                reinfer[row] = True


def _drop_stale_inferences(cols, log, inferred, row: int, field: str, source) -> bool:
    """After a maintainer corrects ``field`` of record ``row``: every rank above it that steps 5 and 7 inferred
    came from the record's lower labels, the replaced one among them, so it goes [``correction_inferred_dropped``]
    (a genus inferred from a corrected species, a family inferred from a corrected genus: Culex left under
    Phoridae). Returns whether any went: ``curate`` infers them again from the corrected labels, by steps 5 and 7
    themselves (``reinfer``)."""
    stale = [rank for rank in RANKS[: RANKS.index(field)] if inferred[row] & RANK_BIT[rank]]
    for rank in stale:
        set_field(cols, log, "correction_inferred_dropped", rank, np.array([row]), None, source=source)
        inferred[row] &= np.uint8(~RANK_BIT[rank] & 0xFF)
    return bool(stale)
