"""BIN identifiers: their normal form (curation step 3, whose rules are in the ``metadata.taxonomy.curate``
docstring) and the per-BIN table."""

from __future__ import annotations

import re
import unicodedata

import numpy as np
import pandas as pd

from bioscan_rebuild.core.schemas import RANKS
from bioscan_rebuild.metadata.taxonomy.names import CONFUSABLES, MISSING_TOKENS

BIN_PATTERN = re.compile(r"^(?:BOLD:?)?([A-Z]{3}[0-9]{4})$")


def normalise_bin(value: str | None) -> str | None:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    text = unicodedata.normalize("NFKC", str(value)).translate(CONFUSABLES)
    # invisible format characters (a byte-order mark from a pasted first cell) go, as they do from names
    text = "".join("".join(ch for ch in text if unicodedata.category(ch) != "Cf").split()).upper()
    if text.lower() in MISSING_TOKENS:
        return None
    match = BIN_PATTERN.match(text)
    return f"BOLD:{match.group(1)}" if match else None


def bin_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Per BIN: records, distinct barcodes, and per rank the consensus label with its agreement ratio
    (share of the BIN's records labelled at that rank that carry it; ties -> the first in name order)."""
    has_bin = frame.loc[~pd.isna(frame["dna_bin"]), ["processid", "dna_bin", "barcode_key", *RANKS]]
    out = has_bin.groupby("dna_bin").agg(records=("processid", "size"), barcodes=("barcode_key", "nunique"))
    for rank in RANKS:
        labelled = has_bin.loc[~pd.isna(has_bin[rank]), ["dna_bin", rank]]
        counts = labelled.groupby(["dna_bin", rank]).size().rename("n").reset_index()
        counts = counts.sort_values(["dna_bin", "n", rank], ascending=[True, False, True])
        top = counts.drop_duplicates("dna_bin").set_index("dna_bin")
        total = counts.groupby("dna_bin")["n"].sum()
        out[rank] = top[rank].reindex(out.index)
        out[f"{rank}_agreement"] = (top["n"] / total).reindex(out.index).round(4)
    return out.reset_index()
