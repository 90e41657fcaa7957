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
    abbreviation of up to three letters (``USA``, ``NY``) is written so in capitals."""
    return not (spelling.isupper() or spelling.islower()) or sum(ch.isalpha() for ch in spelling) <= 3


def unify_place_spelling(cols: dict, log: ChangeLog) -> None:
    """The spelling of each place that most of its records carry among those in mixed case (else among all; an
    abbreviation of up to three letters counts as mixed case: ``USA`` beside one ``Usa`` stays); a tie goes to the
    first in code-point order. Only a spelling the data holds is chosen (``BOSNIA AND HERZEGOVINA`` is
    never made ``Bosnia And Herzegovina``). A province is one place within one country (as that country is written
    after this step), so a province of the same name in another country is left as it is. Each record whose spelling
    changes is a row of the changes table, with the chosen spelling's share of the place's records as its ratio."""
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
        frame = pd.DataFrame({"scope": scope, "spelling": values[given]})
        counts = frame.value_counts(sort=False).rename("records").reset_index()
        counts["key"] = [place_key(v) for v in counts["spelling"]]
        counts["mixed"] = [_written_as_a_name(v) for v in counts["spelling"]]
        counts = counts.sort_values(
            ["scope", "key", "mixed", "records", "spelling"], ascending=[True, True, False, False, True], kind="stable"
        )
        place = counts.groupby(["scope", "key"], sort=False)
        counts["chosen"] = place["spelling"].transform("first")
        counts["share"] = place["records"].transform("first") / place["records"].transform("sum")
        moved = counts[counts["spelling"] != counts["chosen"]]
        if moved.empty:
            continue
        respelled = moved.set_index(["scope", "spelling"])
        at = pd.MultiIndex.from_arrays([frame["scope"], frame["spelling"]])
        hit = at.isin(respelled.index)
        chosen = respelled.reindex(at[hit])
        set_field(
            cols,
            log,
            "place_spelling",
            field,
            given[hit],
            chosen["chosen"].to_numpy(dtype=object),
            ratio=chosen["share"].to_numpy(dtype=float),
        )
