"""The release's side files (``layout.SIDE_FILES``), from earlier stages' tables rather than the released rows.

``rejects.csv`` (every rejected input of every stage, one table), ``changes.csv`` (the curation log),
``bbox.tsv`` (released records), ``barcodes.fasta``, ``split_summary.csv`` and ``records_lineage.csv`` (each
released record's source batch, file, line and file sha256, for auditors).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from bioscan_rebuild.core.io import read_table
from bioscan_rebuild.core.schemas import INGESTED_SCHEMA, LINEAGE_FIELDS, REJECT_SCHEMA
from bioscan_rebuild.export.layout import BARCODES_FASTA, BBOX, CHANGES, RECORDS_LINEAGE, REJECTS, SPLIT_SUMMARY

REJECT_ORDER = [("kind", "ascending"), ("reason", "ascending"), ("processid", "ascending")]


def _released_ids(splits_path) -> pd.Index:
    return pd.Index(pq.read_table(splits_path, columns=["processid"])["processid"].to_numpy(zero_copy_only=False))


def write_side_files(tmp: Path, *, rejects, changes, bbox, fasta, split_summary, records, splits) -> dict:
    """Write the derived side files into ``tmp``: path under the release root -> file to copy there."""
    released = _released_ids(splits)

    def staged(file) -> Path:
        return tmp / Path(file.path).name

    all_rejects = pa.concat_tables(read_table(p, REJECT_SCHEMA) for p in rejects).sort_by(REJECT_ORDER)
    pacsv.write_csv(all_rejects, staged(REJECTS))
    pacsv.write_csv(pq.read_table(changes), staged(CHANGES))
    if bbox:
        table = pd.concat(pd.read_csv(p, sep="\t", dtype=str, keep_default_na=False) for p in bbox)
        table[table["processid"].isin(released)].to_csv(staged(BBOX), sep="\t", index=False, lineterminator="\n")
    # the raw sequence as the export had it: dna_barcode is the cleaned one (metadata.barcodes)
    fields = ("processid", *LINEAGE_FIELDS, "nucleotides")
    lineage_schema = pa.schema(
        [INGESTED_SCHEMA.field(f) for f in fields[:-1]]
        + [INGESTED_SCHEMA.field("nucleotides").with_name("raw_nucleotides")]
    )
    with pacsv.CSVWriter(staged(RECORDS_LINEAGE), lineage_schema) as out:
        for path in records:  # shard by shard: memory is one shard; released records only
            table = read_table(path, INGESTED_SCHEMA, columns=list(fields))
            keep = released.get_indexer(table["processid"].to_numpy(zero_copy_only=False)) >= 0
            out.write_table(table.filter(pa.array(keep)).rename_columns(lineage_schema.names))
    files = {f.path: staged(f) for f in (REJECTS, CHANGES, RECORDS_LINEAGE)}
    if bbox:
        files[BBOX.path] = staged(BBOX)
    if fasta:
        files[BARCODES_FASTA.path] = Path(fasta)
    if split_summary:
        files[SPLIT_SUMMARY.path] = Path(split_summary)
    return files
