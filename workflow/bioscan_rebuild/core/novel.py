"""Placeholder ("novel") species names and barcode stripping, as the BIOSCAN-5M protocol defines them.

``novel_mask(genus, species)`` is True where the species is present and any of these holds (the
published partitioning protocol, section 0; Python ``re`` semantics, searched anywhere in the string):

1. species matches the Malaise-trap pattern ``MALAISE_RE`` (codes and misspellings);
2. species starts with a lowercase letter;
3. the genus is novel: present and matching ``MALAISE_RE``, or starting with a lowercase letter while not
   starting with ``unclassified`` / ``unassigned`` (so a clean species name under such a genus is novel);
4. species contains a digit, or two capitals in a row;
5. genus or species matches one of ``OPEN_NOMENCLATURE_RES`` (aff., n. sp., sp. ex, gen., sp. 1, affinis A);
6. species contains ``_`` or ``?``;
7. species has a capital letter after its first character;
8. species contains a literal ``.``.

The regexes run once per distinct name (not per row), on object-dtype strings so that Python ``re`` (not
Arrow's RE2) decides; the result is broadcast back through the factorized codes.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

MALAISE_RE = r"[mM]+[aA]+[lLiI]+[aA]+[iIlL]+[sSzZ]+[eE]+"
# Rule 5; note ``\b`` inside ``[...]`` is a backspace in Python ``re``, kept as published.
OPEN_NOMENCLATURE_RES = (
    r"\baff\b",
    r"\bn[\b\.\s]+sp\b",
    r"\bsp[\b\s]+ex\b",
    r"\bgen\b",
    r"\bsp\b\.?[\s\w\d]+",
    r"affinis\s+[0-9A-Z]+",
)
# Rules 1, 2, 4, 6, 7, 8 and the species half of rule 5: each searched on the species name.
SPECIES_RES = (
    MALAISE_RE,
    r"^[a-z]",
    r"[0-9]",
    r"[A-Z][A-Z]",
    *OPEN_NOMENCLATURE_RES,
    r"[_?]",
    r"[^$][A-Z]",
)


def _factorize(values: pd.Series) -> tuple[np.ndarray, pd.Series]:
    """Codes (-1 = missing) and the distinct non-missing values as an object Series (Python ``re``)."""
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    return np.asarray(codes, dtype=np.int64), pd.Series(np.asarray(uniques, dtype=object), dtype=object)


def _any_match(names: pd.Series, patterns) -> np.ndarray:
    hit = np.zeros(len(names), dtype=bool)
    for pattern in patterns:
        hit |= names.str.contains(pattern, regex=True).to_numpy(dtype=bool)
    return hit


def novel_species_names(names: pd.Series) -> np.ndarray:
    """Rules 1, 2, 4-8 on distinct species names (object Series without missing values)."""
    return _any_match(names, SPECIES_RES) | names.str.contains(".", regex=False).to_numpy(dtype=bool)


def novel_genus_names(names: pd.Series) -> np.ndarray:
    """Rule 3 and the genus half of rule 5 on distinct genus names (object Series without missing values)."""
    lower_start = names.str.contains(r"^[a-z]", regex=True).to_numpy(dtype=bool)
    exempt = (names.str.startswith("unclassified") | names.str.startswith("unassigned")).to_numpy(dtype=bool)
    return (lower_start & ~exempt) | _any_match(names, (MALAISE_RE, *OPEN_NOMENCLATURE_RES))


def novel_mask(genus: pd.Series, species: pd.Series) -> np.ndarray:
    """Per row: is this a placeholder species (rules 1-8)? Missing species is never novel.

    ``genus`` and ``species`` are aligned Series of names (any string-like or categorical dtype, missing as
    NA/NaN/None). Returns a numpy bool array of the same length, in row order.
    """
    if len(genus) != len(species):
        raise ValueError("genus and species must have the same length")
    sp_codes, sp_names = _factorize(species)
    ge_codes, ge_names = _factorize(genus)
    # index -1 (missing) lands on the appended False
    sp_novel = np.append(novel_species_names(sp_names), False)[sp_codes]
    ge_novel = np.append(novel_genus_names(ge_names), False)[ge_codes]
    return (sp_codes >= 0) & (sp_novel | ge_novel)


def strip_barcode(series: pd.Series) -> pd.Series:
    """Remove leading and trailing uppercase ``N`` (only those); missing stays missing."""
    return series.str.strip("N")
