"""A taxon name's normal form, one value at a time: curation's steps 1 and 2 without their tables
(``metadata.taxonomy.names`` applies them to the rank columns and logs each change), and what ingest compares two
copies of a record by (copies that differ only where curation makes them one are one record); and a place's key,
by which curation writes each place one way."""

from __future__ import annotations

import re
import unicodedata

import numpy as np

from bioscan_rebuild.core.bins import CONFUSABLES
from bioscan_rebuild.core.schemas import MISSING_TOKENS, MISSING_TOKENS_UNDOTTED

# What no name holds: markup an export kept ("<i>Aedes</i>"), quotes around a name or a word of it, symbols (emoji,
# "™"; the hybrid sign "×" excepted) and marks no name carries ("aegypti*", "%"); above the species, a bracketed
# aside ("Diptera (fly)", a subgenus after its genus) and a placeholder word after the name ("Zoxeda sp.")
_MARKUP = re.compile(r"<[^<>]*>")
_QUOTES = str.maketrans("", "", "\"'`‘’‚“”„«»‹›")
_STRAY_MARKS = str.maketrans("", "", "*%\\!#@")
# ICZN Art. 32.5.2: a ligature is written as its two letters ("Cœlioxys" is Coelioxys)
_LIGATURES = str.maketrans({"æ": "ae", "Æ": "Ae", "œ": "oe", "Œ": "Oe"})
_ASIDE = re.compile(r"\s*\([^()]*\)")
_PLACEHOLDER_AFTER = re.compile(r"\s+(?:sp|spp|gen|indet|nov|n)\.?$", re.IGNORECASE)
_PLACEHOLDER_WORDS = frozenset({"sp", "spp", "gen", "indet", "cf", "aff"})
_NAMES_APART = re.compile(r"[;,/|&+]")
_HYBRID_X = re.compile(r"(?<=[a-z]) x (?=[a-z])")  # "Culex pipiens x quinquefasciatus": the hybrid sign ×

# Open-nomenclature words (Sigovini et al. 2016) and their spellings in BOLD: after a species' first word, with or
# without their dot, they say the name is no described species ("Psathyromyia sp", "Chironomus near pseudothummi",
# "Anopheles gambiae complex"): dotted, the published protocol's placeholder test (a "." in the species) sees it.
OPEN_NOMENCLATURE = (
    "sp|spp|ssp|sps|spec|nsp|spnov|msp|morphosp|morphospecies|morphotype|cf|cfr|aff|nr|near|prope|indet|undet|gr|gp"
    "|grp|group|agg|aggr|complex|cplx|cmplx|compl|undescribed|species|sl|ss|sensu|subsp|sbsp"
)
QUALIFIER_WITHOUT_DOT = rf"(?<=\s)({OPEN_NOMENCLATURE})(?=\s|$)"
# Words that make a name another group than the species it follows, or no claim to one: never an author's
_NOT_AN_AUTHOR = frozenset(OPEN_NOMENCLATURE.split("|")) | {
    *("nov", "gen", "var", "forma", "form", "morpha", "type", "like", "lato", "stricto", "aggregate", "subgroup"),
    *("section", "series", "cluster", "clade", "lineage", "superspecies", "ined", "auct", "nec", "non"),
}


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
    """Step 1: a cell's name in its normal form at ``rank``; None where it holds none."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    # invisible characters and look-alike letters out first: one of them kept the repair from decoding
    text = "".join(ch for ch in str(value) if unicodedata.category(ch) != "Cf").translate(CONFUSABLES)
    text = unicodedata.normalize("NFKC", undo_mojibake(text)).translate(CONFUSABLES)
    # every dash is a hyphen ("w–albus" is w-albus; the minus sign is a symbol and would go with them)
    text = "".join("-" if unicodedata.category(ch) == "Pd" or ch == "\u2212" else ch for ch in text)
    text = "".join(ch for ch in text if unicodedata.category(ch) != "Cf").translate(_LIGATURES)
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
    text = _MARKUP.sub(" ", text).translate(_QUOTES).translate(_STRAY_MARKS)
    text = "".join(ch for ch in text if ch == "×" or not unicodedata.category(ch).startswith("S"))
    words = text.split()
    # a last word of no letter or digit ends no name ("Aedes -", "Culicidae .", a hybrid sign with no parent after);
    # in a species, its full stop goes to the word before ("Aedes albopictus ." is the placeholder "albopictus.")
    while len(words) > 1 and not any(ch.isalnum() for ch in words[-1]):
        dropped = words.pop()
        if rank == "species" and "." in dropped and not words[-1].endswith("."):
            words[-1] += "."
    text = " ".join(words).rstrip(",;:").rstrip()
    if rank == "species":
        text = _HYBRID_X.sub(" × ", text)
    else:
        text = _ASIDE.sub("", text).strip()
        while (shorter := _PLACEHOLDER_AFTER.sub("", text).rstrip("._- ")) != text:  # "Phoridae gen. sp."
            text = shorter
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


def dot_qualifier(value: str) -> str:
    """Step 2 [``qualifier_dot``]: an open-nomenclature word after a species' first word gets its dot."""
    return re.sub(QUALIFIER_WITHOUT_DOT, r"\1.", value)


# A subgenus between a species' genus and epithet ("Aedes (Stegomyia) aegypti"): no part of the binomial, and the
# same species with and without it voted as two in its BIN
SUBGENUS_IN_SPECIES = re.compile(r"^([A-Z][a-z]+) \([A-Z][a-z]+\) (?=[a-z])")


def without_subgenus(value: str) -> str:
    """Step 2 [``species_subgenus``]: ``Aedes (Stegomyia) aegypti`` -> ``Aedes aegypti``."""
    return SUBGENUS_IN_SPECIES.sub(r"\1 ", value)


# A species name followed by its author citation and year ("Chironomus riparius Meigen, 1804", "Brumptomyia mesai
# (Barretto & Coutinho, 1941)"): the citation is no part of the name, and two spellings of one species would vote
# apart. Lower-case words that begin an author's name ("de Geer", "van der
# Wulp"), never a subspecies epithet.
AUTHOR_PARTICLES = r"(?:de|van|von|der|den|des|du|da|di|dos|das|del|della|la|le|ter|zu|zur)"
_SPECIES_NAME = rf"(?P<name>[A-Z][a-z]+(?: \([A-Z][a-z]+\))? [a-z][a-z-]+(?: (?!{AUTHOR_PARTICLES} )[a-z][a-z-]+)?)"
# the author begins with a capital or a particle: a word in small letters or dotted before it is a qualifier
# ("Anopheles gambiae s.l. Giles, 1902"), which stays with the name and its author
SPECIES_WITH_AUTHOR = re.compile(
    rf"^{_SPECIES_NAME} (?P<author>\(?(?:{AUTHOR_PARTICLES} )*[A-Z][^()\d]*?,? (?:1[5-9]|20)\d{{2}}\)?)$"
)


def without_author(value: str) -> str:
    """Step 2 [``species_author``]: the name without an author citation and its year after it. Without a year the
    words stay: a word in brackets, in capitals or abbreviated after a species may as well be a qualifier, a group
    or a form (``(Cmplx)``, ``S.L.``, ``Subgroup``, ``(Morphospecies)``) as an author, and taking one off would
    release a placeholder as the described species; kept, the name is a placeholder by the protocol's capital
    letter rule."""
    found = SPECIES_WITH_AUTHOR.match(value)
    if found is None:
        return value
    words = re.findall(r"[A-Za-z]+", found.group("author"))
    # "Drosophila melanogaster Subgroup Johannsen, 1928": the group stays, author and all
    return value if any(word.lower() in _NOT_AN_AUTHOR for word in words) else found.group("name")


def species_as_step_2_leaves_it(value: str) -> str:
    """A normalised species name as step 2 leaves it without its tables: its qualifiers' dots, no subgenus, no
    author."""
    return without_author(without_subgenus(dot_qualifier(value)))


def clean_species(value: str) -> str | None:
    """A normalised species name as step 2 leaves one, or None when it is one word and so names no species
    (``species_one_word``): a maintainer's correction gets the same rules."""
    value = species_as_step_2_leaves_it(value)
    return value if " " in value else None


def place_key(value) -> str | None:
    """What two spellings of one place (a country, a province) share: the text in small letters and one Unicode
    form (``CANADA``, ``canada`` and ``Canada`` are one place; curation writes each place one way). Letter case only:
    ``Groß`` is not ``Gross`` (casefold would make it so); Turkish ``İ`` and ``ı`` are ``i`` (``TÜRKİYE``, ``AYDIN``
    are ``Türkiye``, ``Aydın``)."""
    if value is None or (isinstance(value, float) and value != value):
        return None
    text = unicodedata.normalize("NFC", str(value)).lower().replace("i\u0307", "i").replace("\u0131", "i")
    return unicodedata.normalize("NFC", text)


def name_as_curated(value: str | None, rank: str) -> str | None:
    """``value`` at ``rank`` as curation's steps 1 and 2 leave it, without their tables: what ingest compares copies
    of a record by."""
    name = normalise_name(value, rank)
    if name is None or rank != "species":
        return name
    return species_as_step_2_leaves_it(name)
