"""Release assembly: what users download, with a manifest of every file's sha256.

For now the release holds the ingested records (canonical schema, one CSV streamed shard by
shard, sorted by shard then processid), every reject with its reason, the accounting, the
bbox table and the image-stage status counts. Later stages add the image packages and the
23-column BIOSCAN-5M table.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from .ingest import INGESTED_SCHEMA
from .records import REJECT_SCHEMA
from .store import file_sha256


def concat_tsv(paths, target: Path) -> None:
    """Concatenate TSV files that share one header line, keeping the header once."""
    with open(target, "wb") as out:
        for i, path in enumerate(paths):
            with open(path, "rb") as handle:
                header = handle.readline()
                if i == 0:
                    out.write(header)
                shutil.copyfileobj(handle, out)


def write_release(record_paths, rejects_path, accounting_path, outdir, bbox_paths=(), image_summary=None) -> dict:
    outdir = Path(outdir)
    (outdir / "metadata").mkdir(parents=True, exist_ok=True)
    records_csv = outdir / "metadata" / "records.csv"
    with pacsv.CSVWriter(records_csv, INGESTED_SCHEMA) as writer:
        for path in record_paths:  # shard by shard: memory is one shard
            writer.write_table(pq.read_table(path, schema=INGESTED_SCHEMA))
    rejects = pq.read_table(rejects_path, schema=REJECT_SCHEMA)
    pacsv.write_csv(rejects, outdir / "metadata" / "rejects.csv")
    shutil.copyfile(accounting_path, outdir / "accounting.json")
    if bbox_paths:
        concat_tsv(bbox_paths, outdir / "metadata" / "bbox.tsv")
    if image_summary:
        shutil.copyfile(image_summary, outdir / "images_summary.json")
    files = sorted(p for p in outdir.rglob("*") if p.is_file() and p.name != "MANIFEST.json")
    manifest = {
        "files": {
            p.relative_to(outdir).as_posix(): {"bytes": p.stat().st_size, "sha256": file_sha256(p)} for p in files
        },
    }
    (outdir / "MANIFEST.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return manifest
