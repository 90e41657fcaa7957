"""Curation steps 1 and 2 (rules: the ``curate`` module docstring): a name's normal form, and the typo / rewording
table. The missing vocabulary and the look-alike letters serve BINs too (``metadata.bins``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from bioscan_rebuild.core.errors import InputError
from bioscan_rebuild.core.names import (
    dot_qualifier,
    name_as_curated,
    normalise_name,
    without_author,
    without_subgenus,
)
from bioscan_rebuild.core.schemas import RANKS
from bioscan_rebuild.metadata.taxonomy.changelog import ChangeLog, map_unique, set_field
from bioscan_rebuild.metadata.taxonomy.tables import read_table

FIX_COLUMNS = ("rank", "from", "to", "reason")


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
        raise InputError(f"{path}: unknown ranks {sorted(bad)} (one of {', '.join(RANKS)} or * for any)")
    # both sides as the names they meet and make are written ("Megasella " matched nothing; "Lepidoptera " made a
    # second order); a row for any rank keeps its case, as species do
    for side in ("from", "to"):
        table[side] = [
            name_as_curated(value, "species" if rank == "*" else rank) or ""
            for rank, value in zip(table["rank"], table[side], strict=True)
        ]
    return table


def apply_fixes(cols: dict, log: ChangeLog, fixes: pd.DataFrame | None) -> None:
    """Step 2 [``typo_table``]: the fixes table (``load_fixes``) on the normalised names."""
    if fixes is None:
        return
    renames = _genus_renames(fixes)
    for rank in RANKS:
        table = fixes[(fixes["rank"] == rank) | (fixes["rank"] == "*")]
        # a table of genus rows alone still renames the species of those genera
        if table.empty and not (rank == "species" and renames):  # pragma: no mutate - an empty table maps nothing
            continue
        mapping = _rank_mapping(table, rank)
        values = cols[rank]
        rows = np.flatnonzero(pd.Series(values).isin(list(mapping)).to_numpy())
        new = [mapping[v] or None for v in values[rows]]
        if rank == "species":  # a renamed genus renames the first word of its species, placeholders too
            rows, new = _with_renamed_genus(values, rows, new, renames)
        set_field(cols, log, "typo_table", rank, rows, new)


def _rank_mapping(table: pd.DataFrame, rank: str) -> dict:
    """The fixes table's rows for ``rank`` and for any rank, as one mapping (old -> new, "" = delete)."""
    # rows for any rank first, so a row for this rank wins over them; a row for any rank is read as a name of
    # this one (its case: "PHORIDEA" -> "Phoridea" meets the family step 1 wrote)
    anyrank = table[table["rank"] == "*"]
    mapping = {
        name_as_curated(source, rank) or "": name_as_curated(target, rank) or ""
        for source, target in zip(anyrank["from"], anyrank["to"], strict=True)
    }
    table = table[table["rank"] == rank]
    mapping.update(zip(table["from"], table["to"]))
    return mapping


def fix_name(value: str, rank: str, fixes: pd.DataFrame | None) -> str | None:
    """Step 2's fixes table on one normalised name at ``rank`` (a maintainer's correction value): its new name,
    None where the table deletes it, the name itself where the table has no row for it."""
    if fixes is None:
        return value
    mapping = _rank_mapping(fixes, rank)
    if value in mapping:
        return mapping[value] or None
    first, _, rest = value.partition(" ")
    renames = _genus_renames(fixes) if rank == "species" and rest else {}
    return f"{renames[first]} {rest}" if first in renames else value


def _genus_renames(fixes: pd.DataFrame) -> dict:
    """The fixes table's genus renames (rows for genus or any rank, a genus row winning), as genus names: old ->
    new (none that only delete a genus: its species then meet step 5's check)."""
    ranked = fixes[fixes["rank"].isin(["genus", "*"])]
    # genus rows last, so over the rows for any rank (the key is what says so: "*" sorts first anyway)
    rows = ranked.sort_values("rank", key=lambda r: r == "genus", kind="stable")  # pragma: no mutate
    renames = {}
    for source, target in zip(rows["from"], rows["to"], strict=True):  # pragma: no mutate - equal lengths
        source, target = normalise_name(source, "genus"), normalise_name(target, "genus")
        # a genus written lower case is a placeholder's evidence, not a name to give its species
        if source and target and target[:1].isupper() and " " not in source + target:
            renames[source] = target
    return renames


def _with_renamed_genus(species: np.ndarray, rows: np.ndarray, new: list, renames: dict):
    """``rows``/``new`` (the species the table names itself) and every other species whose first word is a genus
    the table renames, with that word renamed (it was left as it was, so step 5 took the species off its genus
    as a mismatch: a fixed genus lost all its named species)."""
    if not renames:
        return rows, new
    # reindexed: a column of no species partitions into no columns
    parts = pd.Series(species, dtype=object).str.partition(" ").reindex(columns=[0, 1, 2])  # pragma: no mutate
    hit = parts[0].isin(list(renames)).to_numpy() & parts[2].astype(object).fillna("").ne("").to_numpy()
    hit[rows] = False  # pragma: no mutate - None is as false as False
    extra_rows = np.flatnonzero(hit)
    if not len(extra_rows):
        return rows, new
    firsts, rests = parts[0][hit], parts[2][hit]
    extra_new = [f"{renames[first]} {rest}" for first, rest in zip(firsts, rests, strict=True)]  # pragma: no mutate
    # unique rows: any sort gives this order; set_field casts them to int64 again
    order = np.argsort(np.concatenate([rows, extra_rows]), kind="stable")  # pragma: no mutate
    rows = np.concatenate([rows, extra_rows]).astype(np.int64)[order]  # pragma: no mutate
    combined = [*new, *extra_new]
    return rows, [combined[i] for i in order]


def dot_qualifiers(cols: dict, log: ChangeLog) -> None:
    """Step 2, last [``qualifier_dot``]: an open-nomenclature word after the first word of a species name
    (``core.names.OPEN_NOMENCLATURE``: ``sp``, ``cf``, ``nr``, ``near``, ``gr``, ``complex``...) gets its dot, so
    that ``Psathyromyia sp`` is the placeholder ``Psathyromyia sp.`` and not a species of the closed-world splits."""
    _each_species(cols, log, "qualifier_dot", dot_qualifier)


def _each_species(cols: dict, log: ChangeLog, rule: str, rewrite) -> None:
    species = cols["species"]
    given = np.flatnonzero(~pd.isna(species))
    rewritten = map_unique(species[given], lambda value: None if value is None else rewrite(value))
    set_field(cols, log, rule, "species", given, rewritten)


# A capitalised family-group name (family, subfamily, superfamily, tribe endings): never a genus. (A lower-case
# one, "cecidomyiidae", stays: a lower-case genus is the published protocol's placeholder evidence, rule 3.)
FAMILY_GROUP_NAME = r"^[A-Z].*(?:idae|inae|oidea|ini)$"
# A species that only says "some species of this genus" ("Acisoma sp.", "Culex spp."): no claim at the species
# rank. With a code ("Agathis sp. 1ZZZZ") it names an interim species.
NO_SPECIES_CLAIM = r"^\S+ spp?\.$"


def claims_no_species(labels) -> np.ndarray:
    """Which species labels claim no species (``NO_SPECIES_CLAIM``): they take no part in a vote or a consensus."""
    return pd.Series(labels, dtype=object).str.match(NO_SPECIES_CLAIM, na=False).to_numpy(bool)


def home_ranks(cols: dict) -> dict[str, str]:
    """Each name the data holds at more than one rank -> the rank most of its records give it (on a tie, the
    highest of those: a name is more often shifted down a column than up). A species votes only as a binomial:
    one word in the species slot is a genus, or nothing."""

    def named(rank: str) -> pd.Series:
        values = pd.Series(cols[rank][~pd.isna(cols[rank])], dtype=object)
        if rank == "species":
            values = values[values.str.contains(" ", regex=False)]
        return values.value_counts().rename(rank)

    counts = pd.concat([named(rank) for rank in RANKS], axis=1).fillna(0)
    counts = counts[(counts > 0).sum(axis=1) > 1]
    return counts.idxmax(axis=1).to_dict()  # idxmax: the first of equal counts, RANKS run from the top


def drop_misplaced_ranks(cols: dict, log: ChangeLog) -> None:
    """Step 2, last [``rank_misplaced``]: a name in a rank's column that cannot be that rank becomes missing: a
    name most records give at another rank (``Insecta`` as an order where the data gives it as the class;
    ``Noctuidae`` as a genus where it is the family; a row whose ranks are shifted one column: ``Diptera`` as its
    class), and a capitalised family-group name (``-idae``, ``-inae``, ``-oidea``, ``-ini``) as a genus. By the
    majority (``home_ranks``), so one shifted row cannot take the order off the records that are right. Genus from
    species and the parent ranks may then fill the rank from better evidence. Species names are counted, never
    dropped here (one word in the species slot is ``species_one_word``'s)."""
    home = home_ranks(cols)
    for rank in RANKS[:-1]:
        values = cols[rank]
        given = ~pd.isna(values)
        names = pd.Series(values[given], dtype=object)
        wrong = names.isin([name for name, at in home.items() if at != rank]).to_numpy(bool, copy=True)
        if rank == "genus":
            wrong |= names.str.contains(FAMILY_GROUP_NAME, regex=True, na=False).to_numpy(bool)
        set_field(cols, log, "rank_misplaced", rank, np.flatnonzero(given)[wrong], None)


def check_species_genus(cols: dict, log: ChangeLog, placeholder: np.ndarray) -> None:
    """Step 5, last [``species_genus_mismatch``]: a species name must begin with its record's genus. Another genus
    (``Lutzomyia olmeca`` under ``Bichromomyia``: an older combination, or a mislabel) leaves the species missing:
    the genus is kept, the species cannot be trusted to go with it. The same word in another case is no other
    genus (names lost their accents in step 1). Placeholders (``placeholder``: the published protocol's test) and
    names not starting with a capitalised word keep their form: their case and words are the protocol's evidence."""
    genus, species = cols["genus"], cols["species"]
    rows = np.flatnonzero(~pd.isna(genus) & ~pd.isna(species) & ~placeholder)
    if not len(rows):
        return
    first = pd.Series(species[rows], dtype=object).str.extract(r"^([A-Z]\S*)\s", expand=False).to_numpy(object)
    named = ~pd.isna(first)
    rows, first = rows[named], first[named]
    other = np.array([a.casefold() != b.casefold() for a, b in zip(first, genus[rows])], dtype=bool)
    set_field(cols, log, "species_genus_mismatch", "species", rows[other], None)


def strip_authors(cols: dict, log: ChangeLog) -> None:
    """Step 2, last: a subgenus between a species' genus and epithet is taken off [``species_subgenus``: ``Aedes
    (Stegomyia) aegypti`` -> ``Aedes aegypti``], then an author citation after a species name [``species_author``:
    ``Chironomus riparius Meigen, 1804`` -> ``Chironomus riparius``; without a year nothing goes: ``core.names``]:
    otherwise the same species spelt with and without them counts as two in the BIN vote, and the year's digits
    or the author's capital make it a placeholder to the protocol."""
    _each_species(cols, log, "species_subgenus", without_subgenus)
    _each_species(cols, log, "species_author", without_author)
