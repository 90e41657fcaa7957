"""Curation steps 1 and 2 (rules: the ``curate`` module docstring): a name's normal form, and the typo / rewording
table. The missing vocabulary and the look-alike letters serve BINs too (``metadata.bins``)."""

from __future__ import annotations

import unicodedata
from pathlib import Path

import numpy as np
import pandas as pd

from bioscan_rebuild.core.schemas import CSV_NA_STRINGS, RANKS
from bioscan_rebuild.metadata.taxonomy.changelog import ChangeLog, map_unique, set_field
from bioscan_rebuild.metadata.taxonomy.tables import read_table

# BOLD's placeholders, and every string a CSV reader takes for missing (``#N/A``, ``<NA>``...: kept as a name, it
# would be a genus in our tables but missing in the released CSV, and the CSV would re-split otherwise)
MISSING_TOKENS = frozenset(
    {"", "none", "not_classified", "not classified", "no_data", "no data", "na", "n/a", "n.a.", "nan", "null", "-"}
    | {token.lower() for token in CSV_NA_STRINGS}
)
# Latin look-alikes seen in pasted names (Cyrillic and Greek letters render identically), applied after NFKC. A
# taxon name or a BIN is Latin script: no Cyrillic or Greek letter in one is meant as such.
_LOOKALIKES = {
    "Cyrillic capitals": ("АВЕКМНОРСТХІЈЅҮӀԚԜ", "ABEKMHOPCTXIJSYIQW"),
    "Cyrillic small": ("аеорсухіјѕԁһӏԛԝ", "aeopcyxijsdhlqw"),
    "Greek capitals": ("ΑΒΕΖΗΙΚΜΝΟΡΤΥΧ", "ABEZHIKMNOPTYX"),
    "Greek small": ("αικνορτυςϳ", "aikvoptucj"),  # ς: what NFKC makes of the lunate sigma ϲ
}
CONFUSABLES = str.maketrans("".join(a for a, _ in _LOOKALIKES.values()), "".join(b for _, b in _LOOKALIKES.values()))
FIX_COLUMNS = ("rank", "from", "to", "reason")


def normalise_name(value: str | None, rank: str) -> str | None:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    text = unicodedata.normalize("NFKC", str(value)).translate(CONFUSABLES)
    text = "".join(ch for ch in text if unicodedata.category(ch) != "Cf")
    text = " ".join(text.split())
    if text.lower() in MISSING_TOKENS:
        return None
    # a lower-case genus is evidence of a placeholder (published split protocol, rule 3): only upper case is fixed there
    if rank != "species" and text.isalpha() and (text.isupper() or (text.islower() and rank != "genus")):
        text = text.capitalize()
    return text


def normalise_names(cols: dict, log: ChangeLog) -> None:
    """Step 1 [``normalise``]: every rank's names, then lower-case genera the data knows capitalised."""
    everyone = np.arange(len(cols["processid"]))
    for rank in RANKS:
        values = cols[rank]
        set_field(cols, log, "normalise", rank, everyone, map_unique(values, lambda v, r=rank: normalise_name(v, r)))
    _capitalise_known_genera(cols, log)


def _capitalise_known_genera(cols: dict, log: ChangeLog) -> None:
    """A lower-case one-word genus (``megaselia``) is written as the genus the data already knows (``Megaselia``)
    when there is one; otherwise it stays, as evidence of a placeholder (published split protocol, rule 3)."""
    genus = cols["genus"]
    names = pd.Series(pd.unique(genus[~pd.isna(genus)]), dtype=object)
    lower = names[names.str.isalpha() & names.str.islower()]
    known = set(names) & set(lower.str.capitalize())
    mapping = {name: name.capitalize() for name in lower if name.capitalize() in known}
    if mapping:
        rows = np.flatnonzero(pd.Series(genus, dtype=object).isin(list(mapping)).to_numpy())
        set_field(cols, log, "normalise", "genus", rows, [mapping[v] for v in genus[rows]])


def drop_one_word_species(cols: dict, log: ChangeLog) -> None:
    """Step 5, last [``species_one_word``]: a species name is at least two words (``Megaselia rufipes``,
    ``Megaselia sp. 3``); one word (``Diptera``, ``rufipes``, ``sp.``) names no species, so it becomes missing
    instead of counting as a labelled species in the splits. The changes table keeps what it said."""
    species = cols["species"]
    given = ~pd.isna(species)
    one_word = np.zeros(len(species), bool)
    one_word[given] = ~pd.Series(species[given], dtype=object).str.contains(" ", regex=False).to_numpy(bool)
    set_field(cols, log, "species_one_word", "species", np.flatnonzero(one_word), None)


def load_fixes(path: str | Path | None) -> pd.DataFrame:
    """The typo / rewording table: rank, from, to, reason (TSV, ``#`` comment lines)."""
    if not path:
        return pd.DataFrame(columns=list(FIX_COLUMNS))
    table = read_table(path, FIX_COLUMNS)
    bad = set(table["rank"]) - {*RANKS, "*"}
    if bad:
        raise ValueError(f"{path}: unknown ranks {sorted(bad)}")
    return table


def apply_fixes(cols: dict, log: ChangeLog, fixes: pd.DataFrame | None) -> None:
    """Step 2 [``typo_table``]: the fixes table (``load_fixes``) on the normalised names."""
    if fixes is None:
        return
    for rank in RANKS:
        table = fixes[(fixes["rank"] == rank) | (fixes["rank"] == "*")]
        if table.empty:
            continue
        # rows for any rank first, so a row for this rank wins over them
        table = pd.concat([table[table["rank"] == "*"], table[table["rank"] == rank]])
        mapping = dict(zip(table["from"], table["to"]))
        values = cols[rank]
        rows = np.flatnonzero(pd.Series(values).isin(list(mapping)).to_numpy())
        set_field(cols, log, "typo_table", rank, rows, [mapping[v] or None for v in values[rows]])
