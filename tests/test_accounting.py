"""The run's accounting over every stage (export.accounting): it balances, and it fails loudly where a stage
loses a record, counts one twice, or disagrees with the tables it summarises."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from bioscan_rebuild.core.errors import AccountingError
from bioscan_rebuild.core.schemas import make_rejects
from bioscan_rebuild.export.accounting import account_run, check_released
from conftest import REPO

IDS = [f"P{i}" for i in range(1, 9)]


def _ledger(tmp_path: Path, *, curated=IDS[1:], metadata_out=("P1",), released=IDS[1:6], excluded=("P7", "P8")):
    """A small run: 10 lines and 9 photos in; ingest keeps P1..P8 (P8 without a photo), metadata drops P1,
    splits exclude P7 and P8 and release P2..P6."""
    (tmp_path / "ingest").mkdir(exist_ok=True)
    ingest = {
        "inputs": {"records": 10, "images": 9},
        "kept": {"records": 8, "images": 7},
        "rejects_by_reason": {
            "record": {"unparseable_row": 1, "missing_processid": 1},
            "image": {"no_record": 1, "undecodable": 1},
        },
        "batches": {},
        "blank_lines": 0,
        "shards": 1,
    }
    (tmp_path / "ingest" / "accounting.json").write_text(json.dumps(ingest))
    photos = [f"{pid}.jpg" if pid != "P8" else None for pid in IDS]
    pq.write_table(pa.table({"processid": IDS, "image_path": photos}), tmp_path / "records.parquet")
    pq.write_table(pa.table({"processid": IDS, "image_status": ["ok"] * 8}), tmp_path / "images.parquet")
    pq.write_table(pa.table({"processid": list(curated)}), tmp_path / "curated.parquet")
    dropped = make_rejects(kind="record", reason="no_barcode", processid=list(metadata_out))
    pq.write_table(dropped, tmp_path / "meta_rejects.parquet")
    pq.write_table(pa.table({"processid": list(released)}), tmp_path / "splits.parquet")
    unusable = make_rejects(kind="record", reason="no_specimen", processid=list(excluded))
    pq.write_table(unusable, tmp_path / "excl.parquet")
    return {
        "ingest_accounting": tmp_path / "ingest" / "accounting.json",
        "records": [tmp_path / "records.parquet"],
        "images": [tmp_path / "images.parquet"],
        "curated": tmp_path / "curated.parquet",
        "metadata_rejects": tmp_path / "meta_rejects.parquet",
        "splits": tmp_path / "splits.parquet",
        "split_excluded": tmp_path / "excl.parquet",
    }


def test_a_run_that_balances_is_followed_through_every_stage(tmp_path):
    summary = account_run(**_ledger(tmp_path))
    assert summary["balanced"] is True
    assert summary["released"] == {"records": 5, "images": 5}
    assert summary["rejected"] == {"records": 5, "images": 4}  # a photo leaves with its record (P8 had none)
    assert summary["stages"]["metadata"] == {
        "records": {"in": 8, "out": 7, "rejected": {"no_barcode": 1}},
        "images": {"in": 7, "out": 6, "rejected": {"no_barcode": 1}},
    }
    assert summary["stages"]["splits"]["images"] == {"in": 6, "out": 5, "rejected": {"no_specimen": 1}}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"excluded": ("P7",)}, "splits stage does not balance: 1 came in but were neither kept nor rejected (P8)"),
        ({"excluded": ("P6", "P7", "P8")}, "splits stage does not balance: 1 both kept and rejected (P6)"),
        ({"metadata_out": ("P1", "P9")}, "metadata stage does not balance: 1 kept or rejected without coming in (P9)"),
        ({"released": [*IDS[1:6], "P3"]}, "splits: processids listed more than once: P3"),
    ],
)
def test_a_stage_that_loses_or_double_counts_a_record_fails(tmp_path, change, message):
    with pytest.raises(AccountingError, match=message.replace("(", r"\(").replace(")", r"\)")):
        account_run(**_ledger(tmp_path, **change))


def test_ingest_figures_that_disagree_with_its_tables_fail(tmp_path):
    inputs = _ledger(tmp_path)
    ingest = json.loads(inputs["ingest_accounting"].read_text())
    ingest["kept"]["records"] = 9
    inputs["ingest_accounting"].write_text(json.dumps(ingest))
    with pytest.raises(AccountingError, match="ingest: its accounting says 9 records"):
        account_run(**inputs)


def test_the_release_refuses_rows_the_accounting_does_not_know():
    check_released({"released": {"records": 5}}, 5)
    with pytest.raises(AccountingError, match="the release holds 6 records but the run's accounting says 5"):
        check_released({"released": {"records": 5}}, 6)


def test_the_command_says_it_in_one_line_and_writes_nothing(tmp_path):
    inputs = _ledger(tmp_path, excluded=("P7",))
    args = ["accounting", "-o", str(tmp_path / "accounting.json")]
    for key, value in inputs.items():
        flag = "--" + key.replace("_", "-")
        args += [flag, *map(str, value)] if isinstance(value, list) else [flag, str(value)]
    env = {"PYTHONPATH": str(REPO / "workflow")}
    result = subprocess.run([sys.executable, "-m", "bioscan_rebuild", *args], capture_output=True, text=True, env=env)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip() == (
        "bioscan-rebuild: accounting does not balance: splits stage does not balance: "
        "1 came in but were neither kept nor rejected (P8)"
    )
    assert not (tmp_path / "accounting.json").exists()
