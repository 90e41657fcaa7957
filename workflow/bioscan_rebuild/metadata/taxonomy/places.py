"""Curation step 1, places [``place_spelling``] (rules: the ``curate`` module docstring): one spelling per country,
and per province within its country, where deliveries wrote one place in several letter cases (``CANADA``,
``canada``, ``Canada``): else the release held each as another place, and the statistics counted them apart."""

from __future__ import annotations

import numpy as np
import pandas as pd

from bioscan_rebuild.core.names import place_key
from bioscan_rebuild.metadata.taxonomy.changelog import ChangeLog, map_unique, set_field

PLACE_FIELDS = (("country", None), ("province_state", "country"))  # a field, and the field it lies within


def _written_as_a_name(spelling: str) -> bool:
    """Written in mixed case (``Canada``), as a place's name is, rather than in capitals or small letters alone; an
    abbreviation of up to three letters in capitals (``USA``, ``NY``) is written as such a name is."""
    short_capitals = spelling.isupper() and sum(ch.isalpha() for ch in spelling) <= 3
    return not (spelling.isupper() or spelling.islower()) or short_capitals


def unify_place_spelling(cols: dict, log: ChangeLog, voters: np.ndarray, only: np.ndarray | None = None) -> None:
    """The spelling of each place that most of its records carry among those in mixed case (else among all; an
    abbreviation of up to three letters in capitals counts as mixed case: ``USA`` beside one ``Usa`` stays); a tie
    goes to the first in code-point order. Only a spelling the data holds is chosen (``BOSNIA AND HERZEGOVINA`` is
    never made ``Bosnia And Herzegovina``), and only ``voters`` count (records that leave, a maintainer's exclusion,
    do not). A province is one place within one country (as that country is written after this step), so a province
    of the same name in another country is left as it is. ``only``: the records to respell (the rest vote, as they
    are written: after corrections, the records a maintainer's row gave a place); a place no voter holds keeps its
    spelling. Each record whose spelling changes is a row of the changes table, with the chosen spelling's share of
    the place's voting records as its ratio."""
    for field, within in PLACE_FIELDS:
        if field not in cols:
            continue
        values = cols[field]
        given = np.flatnonzero(~pd.isna(values))
        if not len(given):
            continue
        scope = (
            np.full(len(given), "", object)
            if within is None or within not in cols
            else map_unique(cols[within][given], lambda value: place_key(value) or "")
        )
        frame = pd.DataFrame({"scope": scope, "key": map_unique(values[given], place_key), "spelling": values[given]})
        voting = np.asarray(voters, bool)[given]
        if only is not None:
            voting &= ~np.asarray(only, bool)[given]
        counts = frame[voting].value_counts(sort=False).rename("records").reset_index()
        if counts.empty:
            continue
        counts["mixed"] = [_written_as_a_name(v) for v in counts["spelling"]]
        counts = counts.sort_values(
            ["scope", "key", "mixed", "records", "spelling"], ascending=[True, True, False, False, True], kind="stable"
        )
        place = counts.groupby(["scope", "key"], sort=False)
        chosen = pd.DataFrame(
            {
                "chosen": place["spelling"].first(),
                "share": place["records"].first() / place["records"].sum(),
            }
        )
        at = pd.MultiIndex.from_arrays([frame["scope"], frame["key"]])
        found = chosen.reindex(at)
        respell = found["chosen"].notna().to_numpy() & (found["chosen"].to_numpy() != frame["spelling"].to_numpy())
        if only is not None:
            respell &= np.asarray(only, bool)[given]
        if not respell.any():
            continue
        set_field(
            cols,
            log,
            "place_spelling",
            field,
            given[respell],
            found["chosen"].to_numpy(dtype=object)[respell],
            ratio=found["share"].to_numpy(dtype=float)[respell],
        )
