"""Curation steps 4 and 6 (rules: "Conflicts" in the ``curate`` module docstring): within records sharing a
barcode or a BIN, the majority label or none."""

from __future__ import annotations

import numpy as np
import pandas as pd

from bioscan_rebuild.metadata.taxonomy.changelog import set_field
from bioscan_rebuild.metadata.taxonomy.names import claims_no_species


def resolve_conflicts(
    cols, log, key_codes, fields, ratio: float, rule: str, cascade: bool, abstain: dict | None = None
) -> dict:
    """Majority-or-drop within groups (``key_codes``: factorized barcode or BIN, -1 = none) for each of
    ``fields`` in order, logged as ``{rule}_majority`` / ``{rule}_conflict_dropped``. ``cascade``: a dropped
    field also drops every later field for the group's records. Returns how many groups a majority decided
    and how many lost the field. ``abstain``: field -> rows whose label there does not vote (a maintainer's
    correction replaces it in step 8)."""
    rules = (f"{rule}_majority", f"{rule}_conflict_dropped")
    has_key = key_codes >= 0
    counts = {"groups_majority": 0, "groups_dropped": 0}
    changed_at: dict[str, np.ndarray] = {}
    for position, field in enumerate(fields):
        labels = cols[field]
        claims = has_key & ~pd.isna(labels) & ~_no_claim(field, labels)
        if abstain and field in abstain:
            claims[abstain[field]] = False
        voting = np.flatnonzero(claims)
        if not len(voting):
            continue
        label_codes, label_values = pd.factorize(labels[voting])
        pairs = pd.DataFrame({"g": key_codes[voting], "l": label_codes})
        sizes = pairs.value_counts(sort=False).rename("n").reset_index()
        per_group = sizes.groupby("g")["n"]
        distinct = per_group.transform("size").to_numpy()
        sizes = sizes[distinct > 1]
        if sizes.empty:
            continue
        per_group = sizes.groupby("g")["n"]
        total = per_group.transform("sum").to_numpy()
        at_top = sizes["n"].to_numpy() == per_group.transform("max").to_numpy()
        n_top = pd.Series(at_top.astype(np.int64)).groupby(sizes["g"].to_numpy()).transform("sum").to_numpy()
        wins = at_top & (n_top == 1) & (sizes["n"].to_numpy() / total >= ratio)
        decided = pd.Series(sizes["l"].to_numpy()[wins], index=sizes["g"].to_numpy()[wins])
        share = pd.Series(sizes["n"].to_numpy()[wins] / total[wins], index=decided.index)
        conflicted = np.unique(sizes["g"].to_numpy())
        dropped = np.setdiff1d(conflicted, decided.index.to_numpy())
        counts["groups_majority"] += len(decided)
        counts["groups_dropped"] += len(dropped)
        # majority: voting records of a decided group with another label take the winner
        group_of_vote = key_codes[voting]
        win = decided.reindex(group_of_vote).to_numpy()
        change = ~np.isnan(win) & (label_codes != np.nan_to_num(win, nan=-1))
        rows = voting[change]
        set_field(
            cols,
            log,
            rules[0],
            field,
            rows,
            label_values[win[change].astype(np.int64)],
            share.reindex(group_of_vote[change]).to_numpy(),
        )
        changed_at[field] = rows
        # drop: every record of an undecided group loses this field (and the later ones when cascading);
        # the ratio column holds the top label's share that fell short
        top_share = (per_group.transform("max").to_numpy() / total)[~wins]
        short = pd.Series(top_share, index=sizes["g"].to_numpy()[~wins]).groupby(level=0).first()
        rows = np.flatnonzero(has_key & np.isin(key_codes, dropped))
        for later in fields[position:] if cascade else (field,):
            set_field(cols, log, rules[1], later, rows, None, short.reindex(key_codes[rows]).to_numpy())
    if cascade:  # after every rank has voted: lower labels the group does not back go
        for position, field in enumerate(fields):
            if field in changed_at:
                _drop_unsupported_below(
                    cols,
                    log,
                    key_codes,
                    has_key,
                    field,
                    fields[position + 1 :],
                    changed_at[field],
                    rules[0],
                    abstain or {},
                )
    return counts


def _no_claim(field: str, labels: np.ndarray) -> np.ndarray:
    """A species that claims none does not vote against a named species of its group (it erased the only
    identification of its BIN)."""
    if field != "species":
        return np.zeros(len(labels), bool)
    return claims_no_species(labels)


def _drop_unsupported_below(cols, log, key_codes, has_key, field, lower_fields, changed, rule, abstain=None) -> None:
    """Records whose ``field`` a majority replaced keep a lower-rank label only when a record of the same
    group that already carried the winning label holds it too (a genus "Megaselia" is not kept under a family
    changed to Phoridae unless the group's Phoridae records say Megaselia); otherwise it is removed
    [``{rule}_below``], so a majority change never leaves a lineage the group does not support. A record that
    did not vote on ``field`` (``abstain``: field -> rows whose label a correction replaces) still holds a losing
    label: it backs nothing; nor does a lower label a correction replaces back another's."""
    if not len(changed) or not lower_fields:
        return
    groups = np.unique(key_codes[changed])
    in_groups = has_key & np.isin(key_codes, groups) & ~pd.isna(cols[field])
    in_groups[changed] = False
    abstain = abstain or {}
    if field in abstain:
        in_groups[abstain[field]] = False
    supporters = np.flatnonzero(in_groups)
    for lower in lower_fields:
        values = cols[lower]
        held = changed[~pd.isna(values[changed])]
        if not len(held):
            continue
        backed = supporters[~pd.isna(values[supporters])]
        if lower in abstain:
            backed = backed[~np.isin(backed, abstain[lower])]
        known = pd.MultiIndex.from_arrays([key_codes[backed], values[backed].astype(object)])
        asked = pd.MultiIndex.from_arrays([key_codes[held], values[held].astype(object)])
        set_field(cols, log, f"{rule}_below", lower, held[~asked.isin(known)], None)
