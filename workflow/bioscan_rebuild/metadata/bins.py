"""BIN identifiers: their normal form (curation step 3, whose rules are in the ``metadata.taxonomy.curate``
docstring) and the per-BIN table."""

from __future__ import annotations

import pandas as pd

from bioscan_rebuild.core.bins import BIN_PATTERN, normalise_bin  # noqa: F401 (the step's normal form)
from bioscan_rebuild.core.schemas import RANKS
from bioscan_rebuild.metadata.taxonomy.names import claims_no_species


def _most_common(frame: pd.DataFrame, rank: str) -> tuple[pd.Series, pd.Series]:
    """Per BIN, its most common label at ``rank`` (ties -> the first in name order) and that label's share of the
    BIN's records labelled at the rank. A species that claims none ("Acisoma sp.") is no label here, as it is no
    vote: it was the consensus of a BIN whose one named species it outnumbered, and it lowered the agreement."""
    labelled = ~pd.isna(frame[rank]).to_numpy()
    if rank == "species":
        labelled &= ~claims_no_species(frame[rank].to_numpy())
    labelled = frame.loc[labelled, ["dna_bin", rank]]
    counts = labelled.groupby(["dna_bin", rank]).size().rename("n").reset_index()
    counts = counts.sort_values(["dna_bin", "n", rank], ascending=[True, False, True])
    top = counts.drop_duplicates("dna_bin").set_index("dna_bin")
    return top[rank], (top["n"] / counts.groupby("dna_bin")["n"].sum()).round(4)


def bin_table(frame: pd.DataFrame, voted: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per BIN: records, distinct barcodes, and per rank the consensus label (its most common curated label) with
    an agreement ratio: the share of the BIN's records labelled at that rank that carry the most common label of
    ``voted`` (the labels as curation's votes met them, ``dna_bin`` and RANKS per record; None: ``frame``'s).
    After the votes a BIN holds one label a rank, so the curated labels alone always agree: 1.0 said nothing of
    the conflicts a vote settled, and below the vote's ratio the rank was taken off."""
    has_bin = frame.loc[~pd.isna(frame["dna_bin"]), ["processid", "dna_bin", "barcode_key", *RANKS]]
    out = has_bin.groupby("dna_bin").agg(records=("processid", "size"), barcodes=("barcode_key", "nunique"))
    met = has_bin if voted is None else voted.loc[~pd.isna(voted["dna_bin"])]
    for rank in RANKS:
        out[rank] = _most_common(has_bin, rank)[0].reindex(out.index)
        out[f"{rank}_agreement"] = _most_common(met, rank)[1].reindex(out.index)
    return out.reset_index()
