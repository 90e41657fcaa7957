"""`bioscan-rebuild metadata`: BOLD exports -> the 23-column BIOSCAN-5M table in one process, through the
workflow's own step functions (ingest, metadata, and the split step when asked). It lives here, with the last
stage it runs, because stages import only the stages before them."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from bioscan_rebuild.core.io import atomic_path
from bioscan_rebuild.core.params import BarcodeParams, TaxonomyParams
from bioscan_rebuild.core.rejects import with_sources
from bioscan_rebuild.core.schemas import LINEAGE_FIELDS, RELEASE_COLUMNS
from bioscan_rebuild.metadata.local import metadata_local
from bioscan_rebuild.splits.stage import split_tables


def metadata_from_exports(
    exports,
    output_csv,
    *,
    split: bool = False,
    tie_order: str = "reference",
    barcode_params: BarcodeParams | None = None,
    taxonomy_params: TaxonomyParams | None = None,
    fixes_path=None,
    corrections_path=None,
    workdir=None,
) -> dict:
    """BOLD exports -> ``output_csv`` (the 23 release columns, size fields empty; split and chunk filled when
    ``split``; ``tie_order``: as for ``split_tables``) + rejects, changes, BIN table, barcode QC and lineage beside
    it (``{stem}.rejects.csv`` etc.).
    The intermediate tables go to a temporary folder (in ``workdir`` when given)."""
    exports = list(exports)
    output_csv = Path(output_csv)
    stem = output_csv.with_suffix("")
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        tmp = Path(tmp)
        run = metadata_local(
            exports,
            tmp,
            barcode_params=barcode_params,
            taxonomy_params=taxonomy_params,
            fixes_path=fixes_path,
            corrections_path=corrections_path,
        )
        metadata = tmp / "metadata"
        extra = splits = None
        if split:
            splits = split_tables(metadata / "curated.parquet", run["barcodes"], tmp / "splits", tie_order=tie_order)
            columns = ["processid", "split", "chunk"]
            extra = pq.read_table(tmp / "splits" / "splits.parquet", columns=columns).to_pandas()
        curated = pq.read_table(metadata / "curated.parquet").to_pandas()
        barcodes = pa.concat_tables(pq.read_table(p) for p in run["barcodes"]).to_pandas()
        table = bioscan_table(curated, barcodes, extra).sort_values("processid", kind="stable")
        _write_csv(table, output_csv)
        rejects = pa.concat_tables(
            [pq.read_table(tmp / "ingest" / "rejects.parquet"), pq.read_table(metadata / "rejects.parquet")]
        )
        # as the release's rejects.csv: a record the metadata stage refused names its export row
        _write_csv(with_sources(rejects, run["records"]).to_pandas(), f"{stem}.rejects.csv")
        _write_csv(pq.read_table(metadata / "changes.parquet").to_pandas(), f"{stem}.changes.csv")
        _write_csv(pq.read_table(metadata / "bins.parquet").to_pandas(), f"{stem}.bins.csv")
        _write_csv(barcodes.drop(columns=["dna_barcode"]), f"{stem}.barcode_qc.csv")
        outcomes = Path(f"{stem}.corrections.tsv")
        if corrections_path:  # each correction's outcome (applied, record_rejected, unknown_processid, ...)
            with atomic_path(outcomes) as temporary:
                shutil.copyfile(metadata / "corrections.tsv", temporary)
        else:  # an earlier run's outcomes beside this table would describe corrections it never applied
            outcomes.unlink(missing_ok=True)
        # where each record of the table came from, with the raw sequence (dna_barcode is the cleaned one) and its
        # marker (ingest.markers may keep several)
        columns = ["processid", *LINEAGE_FIELDS, "nucleotides", "marker_code"]
        lineage = pa.concat_tables(pq.read_table(p, columns=columns) for p in run["records"]).to_pandas()
        lineage = lineage.rename(columns={"nucleotides": "raw_nucleotides"})
        lineage = lineage[lineage["processid"].isin(table["processid"])].sort_values("processid", kind="stable")
        _write_csv(lineage, f"{stem}.lineage.csv")
    summary = run["metadata"]
    return {
        "exports": len(exports),
        "ingest_rows": run["ingest"]["inputs"]["records"],
        "ingest_rejected": run["ingest"]["rejected"]["records"],
        "metadata_rejected": summary["rejected"],
        "records": len(table),
        "changes": summary["changes"],
        "split": bool(split),
        "splits": {k: n for k, n in splits["splits"].items() if k != "total"} if split else None,
        "tie_order": splits["tie_order"] if split else None,
    }


def bioscan_table(curated: pd.DataFrame, barcodes: pd.DataFrame, extra: pd.DataFrame | None = None) -> pd.DataFrame:
    """The 23 release columns in order. ``barcodes``: processid + dna_barcode; ``extra``: optional processid +
    any of split, chunk, image_measurement_value, area_fraction, scale_factor, index_bioscan_1M_insect."""
    out = curated.rename(columns={"lat": "coord-lat", "lon": "coord-lon"})
    out = out.merge(barcodes[["processid", "dna_barcode"]], on="processid", how="left", validate="one_to_one")
    if extra is not None:
        out = out.merge(extra, on="processid", how="left", validate="one_to_one")
    for column in RELEASE_COLUMNS:
        if column not in out:
            out[column] = None
    out["inferred_ranks"] = out["inferred_ranks"].astype("uint8")
    return out[list(RELEASE_COLUMNS)]


def _write_csv(frame: pd.DataFrame, path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as partial:  # whole or not at all under its name
        frame.to_csv(partial, index=False, lineterminator="\n")
