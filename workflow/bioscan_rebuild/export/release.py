"""Release assembly: the earlier stages' tables -> the side files of the release, then ``export.export_release``.

Side files under ``bioscan5m/metadata/``: ``rejects.csv`` (every rejected input of every stage, one table),
``changes.csv`` (the curation log), ``bbox.tsv`` (released records), ``barcodes.fasta``, ``split_summary.csv``
and ``records_lineage.csv`` (each kept record's source batch, file, line and file sha256, for auditors).
``accounting.json`` sits beside ``bioscan5m/``; ``MANIFEST.json`` lists every file with its sha256.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from bioscan_rebuild.core.params import ExportOptions
from bioscan_rebuild.core.schemas import INGESTED_SCHEMA, LINEAGE_FIELDS, REJECT_SCHEMA
from bioscan_rebuild.export.writers import export_release, write_manifest

REJECT_ORDER = [("kind", "ascending"), ("reason", "ascending"), ("processid", "ascending")]


def _released_ids(splits_path) -> pd.Index:
    return pd.Index(pq.read_table(splits_path, columns=["processid"])["processid"].to_numpy(zero_copy_only=False))


def write_side_files(tmp: Path, *, rejects, changes, bbox, fasta, split_summary, records, splits) -> dict:
    released = _released_ids(splits)
    all_rejects = pa.concat_tables(pq.read_table(p, schema=REJECT_SCHEMA) for p in rejects).sort_by(REJECT_ORDER)
    pacsv.write_csv(all_rejects, tmp / "rejects.csv")
    pacsv.write_csv(pq.read_table(changes), tmp / "changes.csv")
    if bbox:
        table = pd.concat(pd.read_csv(p, sep="\t", dtype=str, keep_default_na=False) for p in bbox)
        table[table["processid"].isin(released)].to_csv(tmp / "bbox.tsv", sep="\t", index=False, lineterminator="\n")
    # the raw sequence as the export had it: dna_barcode is the cleaned one (barcodes.py)
    fields = ("processid", *LINEAGE_FIELDS, "nucleotides")
    lineage_schema = pa.schema(
        [INGESTED_SCHEMA.field(f) for f in fields[:-1]]
        + [INGESTED_SCHEMA.field("nucleotides").with_name("raw_nucleotides")]
    )
    with pacsv.CSVWriter(tmp / "records_lineage.csv", lineage_schema) as out:
        for path in records:  # shard by shard: memory is one shard; released records only
            table = pq.read_table(path, columns=list(fields), schema=INGESTED_SCHEMA)
            keep = released.get_indexer(table["processid"].to_numpy(zero_copy_only=False)) >= 0
            out.write_table(table.filter(pa.array(keep)).rename_columns(lineage_schema.names))
    files = {name: tmp / name for name in ("rejects.csv", "changes.csv", "records_lineage.csv")}
    if bbox:
        files["bbox.tsv"] = tmp / "bbox.tsv"
    if fasta:
        files["barcodes.fasta"] = Path(fasta)
    if split_summary:
        files["split_summary.csv"] = Path(split_summary)
    return files


def build_release(
    *,
    curated,
    barcodes,
    splits,
    records,
    rejects,
    changes,
    accounting,
    outdir,
    images=(),
    bbox=(),
    fasta=None,
    split_summary=None,
    store=None,
    formats=("csv", "parquet", "images", "hdf5", "jsonld", "croissant"),
    options: ExportOptions | None = None,
) -> dict:
    outdir = Path(outdir)
    if outdir.exists():  # the folder is this step's alone: nothing stale may reach the manifest
        shutil.rmtree(outdir)
    outdir.mkdir(parents=True)
    accounting_data = json.loads(Path(accounting).read_text())
    provenance = {
        "software": "bioscan-rebuild",
        "inputs": [
            {"file": item["export"], "sha256": item["export_sha256"]}
            for _, item in sorted(accounting_data.get("batches", {}).items())
            if "export_sha256" in item
        ],
    }
    shutil.copyfile(accounting, outdir / "accounting.json")
    with tempfile.TemporaryDirectory(dir=outdir) as tmp:
        side = write_side_files(
            Path(tmp),
            rejects=rejects,
            changes=changes,
            bbox=bbox,
            fasta=fasta,
            split_summary=split_summary,
            records=records,
            splits=splits,
        )
        summary = export_release(
            curated,
            barcodes,
            splits,
            outdir,
            image_paths=list(images) or None,
            store_root=store,
            side_files=side,
            options=options,
            formats=formats,
            provenance=provenance,
            manifest=False,
        )
    summary["manifest"] = write_manifest(outdir)  # after the side files and accounting
    return summary
