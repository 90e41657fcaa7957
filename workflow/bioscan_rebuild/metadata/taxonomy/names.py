"""Curation steps 1 and 2 (rules: the ``curate`` module docstring): a name's normal form, and the typo / rewording
table. The missing vocabulary and the look-alike letters serve BINs too (``metadata.bins``)."""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path

import numpy as np
import pandas as pd

from bioscan_rebuild.core.bins import CONFUSABLES
from bioscan_rebuild.core.errors import InputError
from bioscan_rebuild.core.schemas import MISSING_TOKENS, MISSING_TOKENS_UNDOTTED, RANKS
from bioscan_rebuild.metadata.taxonomy.changelog import ChangeLog, map_unique, set_field
from bioscan_rebuild.metadata.taxonomy.tables import read_table

# What no name holds: markup an export kept ("<i>Aedes</i>"), quotes around a name or a word of it, symbols (emoji,
# "™"; the hybrid sign "×" excepted); above the species, a bracketed aside ("Diptera (fly)", a subgenus after its
# genus) and a placeholder word after the name ("Zoxeda sp.")
_MARKUP = re.compile(r"<[^<>]*>")
_QUOTES = str.maketrans("", "", "\"'`‘’‚“”„«»‹›")
_ASIDE = re.compile(r"\s*\([^()]*\)")
_PLACEHOLDER_AFTER = re.compile(r"\s+(?:sp|spp|gen|indet)\.?$", re.IGNORECASE)
_PLACEHOLDER_WORDS = frozenset({"sp", "spp", "gen", "indet", "cf", "aff"})
_NAMES_APART = re.compile(r"[;,/|&+]")
FIX_COLUMNS = ("rank", "from", "to", "reason")


def undo_mojibake(text: str) -> str:
    """UTF-8 read as cp1252 or Latin-1, as often as it happened (``ChirÃ³nomus``) back to what was written
    (``Chirónomus``): NFKC would make a new name of it (``³`` -> ``3``: ``ChirA3nomus``). Only text that decodes as
    UTF-8 again changes; a name never carries these letters otherwise. Each round merges bytes into fewer
    characters, so there are never more rounds than characters (a bound a changed line cannot loop past)."""
    for _ in range(len(text)):
        if not any("\x80" <= ch <= "\xff" for ch in text):  # every byte of UTF-8 read so lands there
            return text
        for encoding in ("cp1252", "latin-1"):  # cp1252 has no \x81, \x8d, \x8f, \x90, \x9d: Latin-1 does
            try:
                text = text.encode(encoding).decode("utf-8")
                break
            except UnicodeError:
                continue
        else:
            return text
    return text


def normalise_name(value: str | None, rank: str) -> str | None:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    # invisible characters and look-alike letters out first: one of them kept the repair from decoding
    text = "".join(ch for ch in str(value) if unicodedata.category(ch) != "Cf").translate(CONFUSABLES)
    text = unicodedata.normalize("NFKC", undo_mojibake(text)).translate(CONFUSABLES)
    text = "".join(ch for ch in text if unicodedata.category(ch) != "Cf")
    text = " ".join(text.split())
    if text.lower() in MISSING_TOKENS or "?" in text:  # "Megaselia?", "Phoridae?": a guess is no label
        return None
    # scientific names carry no diacritics (ICZN Art. 27): "Chirónomus" is Chironomus, and would pass its accent on
    text = unicodedata.normalize(
        "NFC", "".join(c for c in unicodedata.normalize("NFD", text) if not unicodedata.combining(c))
    )
    # a lone accent ("´" is a space and a combining mark once NFKC-normalised) leaves nothing, or a space behind
    text = " ".join(text.split())
    if text.lower() in MISSING_TOKENS:
        return None
    text = _name_shape(text, rank)
    if text is None:
        return None
    # a lower-case genus is evidence of a placeholder (published split protocol, rule 3): only upper case is fixed there
    if rank != "species" and text.isalpha() and (text.isupper() or (text.islower() and rank != "genus")):
        text = text.capitalize()
    return text


def _name_shape(text: str, rank: str) -> str | None:
    """The name a cell holds once what no name holds is taken off; None when no name is left: no letter (``123``,
    ``---``), a number or a truth value (``1e5``, ``True``, a spreadsheet's), a placeholder word alone (``sp.``),
    a missing token with its full stop (``n.a``), or, above the species, several names in one cell."""
    text = _MARKUP.sub(" ", text).translate(_QUOTES)
    text = "".join(ch for ch in text if ch == "×" or not unicodedata.category(ch).startswith("S"))
    text = " ".join(text.split()).rstrip(",;:")
    if rank != "species":
        text = _PLACEHOLDER_AFTER.sub("", _ASIDE.sub("", text)).rstrip("._-")
        if _NAMES_APART.search(text):
            return None
    folded = text.lower().rstrip(".")
    if not any(ch.isalpha() for ch in text) or folded in ("true", "false") or folded in _PLACEHOLDER_WORDS:
        return None
    if folded in MISSING_TOKENS_UNDOTTED or _is_number(text):
        return None
    return text


def _is_number(text: str) -> bool:
    try:
        float(text.replace(",", ""))
    except ValueError:
        return False
    return True


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
            normalise_name(value, "species" if rank == "*" else rank) or ""
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
        normalise_name(source, rank) or "": normalise_name(target, rank) or ""
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


# Open-nomenclature qualifiers written without their dot ("Psathyromyia sp", "Tanytarsus spp", "Dicrotendipes cf
# lobiger"): with it, the published protocol's placeholder test (a "." in the species) sees what they are.
QUALIFIER_WITHOUT_DOT = r"(?<=\s)(sp|spp|cf|aff|nr|indet)(?=\s|$)"


def dot_qualifiers(cols: dict, log: ChangeLog) -> None:
    """Step 2, last [``qualifier_dot``]: ``sp``, ``spp``, ``cf``, ``aff``, ``nr``, ``indet`` after the first word
    of a species name get their dot, so that ``Psathyromyia sp`` is the placeholder ``Psathyromyia sp.`` and not
    a species of the closed-world splits."""
    species = cols["species"]
    given = np.flatnonzero(~pd.isna(species))
    fixed = map_unique(species[given], lambda v: None if v is None else re.sub(QUALIFIER_WITHOUT_DOT, r"\1.", v))
    set_field(cols, log, "qualifier_dot", "species", given, fixed)


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


# A species name followed by its author citation ("Chironomus riparius Meigen, 1804", "Brumptomyia mesai (Barretto &
# Coutinho, 1941)"): the citation is no part of the name, and two spellings of one species would vote apart.
# Lower-case words that begin an author's name ("de Geer", "van der Wulp"), never a subspecies epithet.
AUTHOR_PARTICLES = r"(?:de|van|von|der|den|des|du|da|di|dos|das|del|della|la|le|ter|zu|zur)"
SPECIES_WITH_AUTHOR = re.compile(
    rf"^(?P<name>[A-Z][a-z]+(?: \([A-Z][a-z]+\))? [a-z][a-z-]+(?: (?!{AUTHOR_PARTICLES} )[a-z][a-z-]+)?)"
    r" \(?[^\W\d_][^()\d]*?,? (?:1[5-9]|20)\d{2}\)?$"
)


def clean_species(value: str) -> str | None:
    """A normalised species name as step 2 leaves one (its qualifier's dot, without its author), or None when it is
    one word and so names no species (``species_one_word``): a maintainer's correction gets the same rules."""
    value = re.sub(QUALIFIER_WITHOUT_DOT, r"\1.", value)
    found = SPECIES_WITH_AUTHOR.match(value)
    value = found.group("name") if found else value
    return value if " " in value else None


def strip_authors(cols: dict, log: ChangeLog) -> None:
    """Step 2, last [``species_author``]: an author citation with its year after a species name is taken off
    (``Chironomus riparius Meigen, 1804`` -> ``Chironomus riparius``): otherwise the same species spelt with and
    without it counts as two in the BIN vote, and the year's digits make it a placeholder to the protocol."""
    species = cols["species"]
    given = np.flatnonzero(~pd.isna(species))

    def without_author(value):
        found = None if value is None else SPECIES_WITH_AUTHOR.match(value)
        return found.group("name") if found else value

    set_field(cols, log, "species_author", "species", given, map_unique(species[given], without_author))
