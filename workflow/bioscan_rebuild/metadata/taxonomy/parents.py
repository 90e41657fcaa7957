"""Curation steps 5 and 7 (rules: the ``curate`` module docstring): genus from species, parent ranks from the
lineage the data itself holds, and the ``inferred_ranks`` bits of what they filled."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from bioscan_rebuild.core.novel import MALAISE_RE
from bioscan_rebuild.core.schemas import RANKS
from bioscan_rebuild.metadata.taxonomy.changelog import ChangeLog, set_field

BINOMIAL_GENUS = re.compile(r"^([A-Z][a-z]+)(?:\s|$)")
HIGHER_RANK_SUFFIX = r"(?:idae|inae|oidea|ini)$"  # family, subfamily, superfamily, tribe endings
RANK_BIT = {rank: 1 << i for i, rank in enumerate(RANKS)}  # the ``inferred_ranks`` mask


def genus_from_species(cols: dict, log: ChangeLog, inferred: np.ndarray, only: np.ndarray | None = None) -> None:
    """Step 5 [``genus_from_species``]: a missing genus from the first word of the species name (``only``: of
    these records alone)."""
    species = cols["species"]
    wanted = pd.isna(cols["genus"]) & ~pd.isna(species)
    rows = np.flatnonzero(wanted if only is None else wanted & only)
    first = genus_of_species(cols, species[rows])
    found = ~pd.isna(first)
    set_field(cols, log, "genus_from_species", "genus", rows[found], first[found])
    inferred[rows[found]] |= RANK_BIT["genus"]


def genus_of_species(cols: dict, species: np.ndarray) -> np.ndarray:
    """The genus step 5 reads from each of ``species`` (None where it reads none): the first word, capitalised
    Latin. A family/subfamily/tribe name in the species slot ("Cecidomyiidae sp. 3") is not a genus, nor is a name
    the data uses above genus ("Diptera sp. 1", "Insecta sp. BOLD:AAA1234"), nor a trap code ("Malaise trap 4")."""
    first = pd.Series(species, dtype=object).str.extract(BINOMIAL_GENUS.pattern, expand=False).to_numpy(object)
    words = pd.Series(first, dtype=object)
    above_genus = set()
    for rank in RANKS[: RANKS.index("genus")]:
        above_genus.update(pd.unique(cols[rank][~pd.isna(cols[rank])]))
    higher = (words.str.contains(HIGHER_RANK_SUFFIX, na=False) | words.isin(above_genus)).to_numpy()
    code = words.str.contains(MALAISE_RE, na=False).to_numpy()
    return np.where(~pd.isna(first) & ~higher & ~code, first, None)


def forget_removed(cols: dict, inferred: np.ndarray) -> None:
    """A rank a conflict removed is no longer inferred."""
    for rank in RANKS:
        inferred[pd.isna(cols[rank])] &= np.uint8(~RANK_BIT[rank] & 0xFF)


def infer_parents(
    cols: dict,
    log: ChangeLog,
    inferred: np.ndarray,
    group_codes,
    teaching: np.ndarray | None = None,
    only: np.ndarray | None = None,
    unheard: dict[str, np.ndarray] | None = None,
    kept: dict[str, np.ndarray] | None = None,
) -> pd.DataFrame:
    """Step 7 [``parent_from_child``]. Returns the lineage table (child -> parent links and whether they are
    consistent). ``group_codes``: the factorized barcode and BIN keys, whose groups no inference may contradict.
    ``teaching``: the records whose labels make the lineage (default all; not the ones leaving the table).
    ``only``: fill these records alone. ``unheard``: per rank, cells that are no group's word (a maintainer's
    correction speaks for its record alone; the votes of step 6 never met it). ``kept``: per rank, cells never
    filled (a maintainer's: a label removed stays removed, and teaches no rank above it)."""
    if teaching is None:
        teaching = np.ones(len(cols["processid"]), bool)
    if only is None:
        only = np.ones(len(cols["processid"]), bool)
    links = []
    for parent_index in range(RANKS.index("subfamily"), -1, -1):
        parent = RANKS[parent_index]
        children = RANKS[parent_index + 1 : RANKS.index("genus") + 1]
        parent_values = cols[parent]
        missing_parent = pd.isna(parent_values)
        # what records sharing a barcode / a BIN already say at this rank: no inference may contradict it
        heard = parent_values if unheard is None else np.where(unheard[parent], None, parent_values)
        group_held = [(codes, _group_labels(codes, heard)) for codes in group_codes]
        # nor the record's own ranks above it: a family whose records all say order Diptera is no parent of a
        # record that says Hymenoptera
        above = _lineage_above(cols, parent, teaching)
        open_cells = only if kept is None else only & ~kept[parent]
        # the nearest labelled lower rank that gives a parent decides: genus first; a record whose genus the data
        # links to no one family (unknown, or two) takes it from its subfamily, and so on up
        for child in reversed(children):
            child_values = cols[child]
            both = ~missing_parent & ~pd.isna(child_values) & teaching
            pairs = pd.DataFrame({"child": child_values[both], "parent": parent_values[both]})
            distinct = pairs.groupby("child")["parent"].agg(["nunique", "first", "size"])
            links.append(
                pd.DataFrame(
                    {
                        "child_rank": child,
                        "child": distinct.index,
                        "parent_rank": parent,
                        "parent": np.where(distinct["nunique"] == 1, distinct["first"], None),
                        "parents": distinct["nunique"].to_numpy(),
                        "records": distinct["size"].to_numpy(),
                    }
                )
            )
            consistent = distinct.loc[distinct["nunique"] == 1, "first"]
            # records still without the parent (nearer children gave none)
            rows = np.flatnonzero(pd.isna(cols[parent]) & ~pd.isna(child_values) & open_cells)
            guess = consistent.reindex(child_values[rows]).to_numpy(dtype=object)
            found = _agreeing_fills(group_held, rows, guess) & ~_contradicts_above(cols, above, rows, guess)
            if found.any():
                set_field(cols, log, "parent_from_child", parent, rows[found], guess[found])
                inferred[rows[found]] |= RANK_BIT[parent]
                _remember_fills(group_held, rows[found], guess[found])
    return pd.concat(links, ignore_index=True) if links else pd.DataFrame()


def refill_after_corrections(
    cols: dict,
    log: ChangeLog,
    inferred: np.ndarray,
    group_codes,
    teaching: np.ndarray,
    kept: dict[str, np.ndarray],
    unheard: dict[str, np.ndarray],
) -> pd.DataFrame:
    """After step 8: step 7 on the corrected labels. Its fills were made from the lineage before the corrections
    (a family given to every Megaselia by the one record whose family a maintainer then corrected), so step 7 runs
    again on a copy without them, taught by ``teaching``. A fill it no longer makes goes
    [``correction_lineage_changed``], and what it makes now is written [``parent_from_child``], on records other
    than ``teaching`` too (they leave the table later). ``kept``: per rank, the cells a maintainer gave or
    confirmed: never filled nor taken off (a label removed stays removed). ``unheard``: the cells a maintainer
    changed: such a label teaches the lineage but is no word of its barcode or BIN group (one record moved to
    another family does not stop the fills of its 500 BIN mates). Returns the lineage table of the corrected
    labels."""
    parents = RANKS[: RANKS.index("subfamily") + 1]
    again = {rank: cols[rank].copy() for rank in RANKS}
    again["processid"] = cols["processid"]
    again_inferred = inferred.copy()
    for rank in parents:
        filled = (again_inferred & RANK_BIT[rank]) != 0
        again[rank][filled] = None
        again_inferred[filled] &= np.uint8(~RANK_BIT[rank] & 0xFF)
    scratch_log = ChangeLog(cols["processid"])
    lineage = infer_parents(again, scratch_log, again_inferred, group_codes, teaching, unheard=unheard, kept=kept)
    for rank in parents:
        bit = RANK_BIT[rank]
        old, new = cols[rank], again[rank]
        same = (pd.isna(old) & pd.isna(new)) | (old == new)
        stale = np.flatnonzero(((inferred & bit) != 0) & ~same & ~kept[rank])
        set_field(cols, log, "correction_lineage_changed", rank, stale, None)
        inferred[stale] &= np.uint8(~bit & 0xFF)
        rows = np.flatnonzero(pd.isna(cols[rank]) & ~pd.isna(new) & ~kept[rank])
        set_field(cols, log, "parent_from_child", rank, rows, new[rows])
        inferred[rows] |= bit
    return lineage


def _lineage_above(cols: dict, rank: str, teaching: np.ndarray) -> dict[str, pd.Series]:
    """For each rank above ``rank``: the one label the ``teaching`` records give it per name at ``rank`` (names
    they give two or more are left out: nothing to contradict)."""
    values = cols[rank]
    lineage = {}
    for higher in RANKS[: RANKS.index(rank)]:
        both = ~pd.isna(values) & ~pd.isna(cols[higher]) & teaching
        pairs = pd.DataFrame({"name": values[both], "higher": cols[higher][both]})
        distinct = pairs.groupby("name")["higher"].agg(["nunique", "first"])
        lineage[higher] = distinct.loc[distinct["nunique"] == 1, "first"]
    return lineage


def _contradicts_above(cols: dict, lineage: dict[str, pd.Series], rows: np.ndarray, guess: np.ndarray) -> np.ndarray:
    """Which guesses the data places under another label at a rank the record already labels."""
    wrong = np.zeros(len(rows), bool)
    for higher, of_name in lineage.items():
        theirs = cols[higher][rows]
        expected = of_name.reindex(guess).to_numpy(dtype=object)
        wrong |= ~pd.isna(theirs) & ~pd.isna(expected) & (theirs != expected)
    return wrong


_CONFLICT = "\x00conflict"  # a group whose records carry two labels at the rank: nothing agrees with it


def _distinct_per_group(codes: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For group codes (>= 0) and their values (not missing): each group, one of its values, and how many
    distinct values it holds."""
    value_codes, uniques = pd.factorize(values)
    width = len(uniques) + 1
    pairs = np.unique(codes.astype(np.int64) * width + value_codes)
    groups, first, count = np.unique(pairs // width, return_index=True, return_counts=True)
    return groups, np.asarray(uniques, dtype=object)[pairs[first] % width], count


def _group_labels(codes: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Per group code: the one label its records carry at a rank, None if none, ``_CONFLICT`` if several (a
    barcode mate outside the BIN can keep its own label). The last slot answers code -1 (no group)."""
    held = np.full(codes.max(initial=-1) + 2, None, dtype=object)
    rows = np.flatnonzero((codes >= 0) & ~pd.isna(labels))
    if len(rows):
        groups, one, count = _distinct_per_group(codes[rows], labels[rows])
        held[groups] = np.where(count == 1, one, _CONFLICT)
    return held


def _agreeing_fills(group_held, rows: np.ndarray, guess: np.ndarray) -> np.ndarray:
    """Which guesses may be written: none that differs from what the record's barcode or BIN group already
    holds, and none in a group that would receive two different guesses in this pass."""
    found = ~pd.isna(guess)
    for codes, held in group_held:
        theirs = held[codes[rows]]
        found &= pd.isna(theirs) | (theirs == guess)
    for codes, _ in group_held:
        at = np.flatnonzero(found & (codes[rows] >= 0))
        if len(at):
            groups, _, count = _distinct_per_group(codes[rows[at]], guess[at])
            found[at[np.isin(codes[rows[at]], groups[count > 1])]] = False
    return found


def _remember_fills(group_held, rows: np.ndarray, values: np.ndarray) -> None:
    for codes, held in group_held:
        at = codes[rows]
        empty = (at >= 0) & pd.isna(held[at])
        held[at[empty]] = values[empty]
