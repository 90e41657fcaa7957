"""BIN identifiers' normal form (``BOLD:AAA1234``), shared by ingest (two deliveries' copies of a record compare
their BINs so) and curation step 3 (``metadata.bins``), and the Latin look-alikes that taxon names and BINs lose."""

from __future__ import annotations

import re
import unicodedata

# Latin look-alikes seen in pasted names (Cyrillic and Greek letters render identically), applied after NFKC. A
# taxon name or a BIN is Latin script: no Cyrillic or Greek letter in one is meant as such.
_LOOKALIKES = {
    "Cyrillic capitals": ("АВЕКМНОРСТХІЈЅҮӀԚԜ", "ABEKMHOPCTXIJSYIQW"),
    "Cyrillic small": ("аеорсухіјѕԁһӏԛԝ", "aeopcyxijsdhlqw"),
    "Greek capitals": ("ΑΒΕΖΗΙΚΜΝΟΡΤΥΧ", "ABEZHIKMNOPTYX"),
    "Greek small": ("αικνορτυςϳ", "aikvoptucj"),  # ς: what NFKC makes of the lunate sigma ϲ
}
CONFUSABLES = str.maketrans("".join(a for a, _ in _LOOKALIKES.values()), "".join(b for _, b in _LOOKALIKES.values()))
BIN_PATTERN = re.compile(r"^(?:BOLD:?)?([A-Z]{3}[0-9]{4})$")


def normalise_bin(value) -> str | None:
    """``BOLD:AAA1234`` from any spelling of one (``aaa1234``, ``BOLD: AAA1234``, a Cyrillic look-alike, a
    byte-order mark); None for anything else (a missing value, a malformed BIN)."""
    if value is None or (isinstance(value, float) and value != value):
        return None
    text = unicodedata.normalize("NFKC", str(value)).translate(CONFUSABLES)
    # invisible format characters (a byte-order mark from a pasted first cell) go, as they do from names
    text = "".join("".join(ch for ch in text if unicodedata.category(ch) != "Cf").split()).upper()
    match = BIN_PATTERN.match(text)
    return f"BOLD:{match.group(1)}" if match else None
