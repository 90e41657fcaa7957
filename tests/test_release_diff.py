"""``release_diff``: what changed between two versions, and why, field by field."""

from __future__ import annotations

import pandas as pd
import pyarrow as pa

from bioscan_rebuild.core.schemas import RELEASE_COLUMNS
from bioscan_rebuild.export.diff import release_diff


def _release(rows: list[dict]) -> pa.Table:
    return pa.table({c: pa.array([row.get(c) for row in rows], pa.string()) for c in RELEASE_COLUMNS})


def _write_csv(table: pa.Table, path) -> None:
    table.to_pandas().to_csv(path, index=False)


def test_a_derived_taxon_and_inferred_ranks_change_names_the_rule_that_changed_their_rank(tmp_path):
    """A correction of the species changes the derived taxon (and the inferred-rank bits): the taxon row used to
    say only 'its source row, photo or an earlier stage changed' although the changes log names the rule."""
    base = {"processid": "P1", "order": "Diptera", "family": "Phoridae", "genus": "Megaselia", "split": "train"}
    old = _release([{**base, "species": "Megaselia sp. 1", "taxon": "Megaselia sp. 1", "inferred_ranks": "32"}])
    new = _release([{**base, "species": "Megaselia rufipes", "taxon": "Megaselia rufipes", "inferred_ranks": "0"}])
    _write_csv(old, tmp_path / "old.csv")
    change = {"processid": "P1", "field": "species", "old": "Megaselia sp. 1", "new": "Megaselia rufipes"}
    changes = pd.DataFrame([{**change, "rule": "correction"}])
    rejects = pd.DataFrame(columns=["kind", "processid", "reason"])
    table, summary = release_diff(tmp_path / "old.csv", new, rejects, changes)
    why = {row["field"]: row["why"] for row in table.to_pylist()}
    assert why == {"species": "correction", "taxon": "correction", "inferred_ranks": "correction"}
    assert summary["changed_records"] == 1 and summary["changed_fields"] == 3


def test_text_that_a_csv_reader_takes_for_missing_is_no_change(tmp_path):
    """`NA`, `N/A`, `null`, `nan` are values a record may hold (ingest blanks only its configured tokens): the
    previous release's CSV read them back as missing, and an unchanged release listed them all as changed."""
    rows = [
        {"processid": "P1", "sampleid": "NA", "province_state": "N/A", "subfamily": "null", "split": "train"},
        {"processid": "P2", "sampleid": "nan", "country": "NULL", "genus": "1.#IND", "split": "val"},
    ]
    release = _release(rows)
    _write_csv(release, tmp_path / "old.csv")
    rejects = pd.DataFrame(columns=["kind", "processid", "reason"])
    changes = pd.DataFrame(columns=["processid", "field", "rule"])
    table, summary = release_diff(tmp_path / "old.csv", release, rejects, changes)
    assert table.num_rows == 0 and summary["changed_records"] == 0 and summary["changed_fields"] == 0
