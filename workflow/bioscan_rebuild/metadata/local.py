"""The metadata stage in one process, on BOLD exports alone (no images), for small deliveries and checks outside
Snakemake."""

from __future__ import annotations

from pathlib import Path

from bioscan_rebuild.core.params import BarcodeParams, TaxonomyParams
from bioscan_rebuild.core.schemas import shard_name
from bioscan_rebuild.ingest.local import ingest_local
from bioscan_rebuild.metadata.stage import clean_shard, curate_tables


def metadata_local(
    exports,
    outdir,
    *,
    shards: int = 1,
    barcode_params: BarcodeParams | None = None,
    taxonomy_params: TaxonomyParams | None = None,
    fixes_path=None,
    corrections_path=None,
) -> dict:
    """Ingest ``exports`` (``ingest.local.ingest_local``, into ``outdir/ingest``) and run the metadata rules on
    them with the step functions the rules call, laid out as ``workflow/rules/metadata.smk`` lays out
    ``results/metadata/``: ``outdir/metadata/barcodes/shard-NNN.parquet`` (clean_barcodes), then curated.parquet,
    changes, BIN table, rejects ... in ``outdir/metadata`` (curate_taxonomy).

    Returns ``ingest`` and ``metadata`` (the two summaries) and the per-shard ``records`` and ``barcodes`` paths.
    """
    outdir = Path(outdir)
    shard_names = [shard_name(s) for s in range(shards)]
    trim_end_n = (barcode_params or BarcodeParams()).trim_end_n
    ingest = ingest_local(list(exports), [], outdir / "ingest", shards=shards, trim_end_n=trim_end_n)
    records = [outdir / "ingest" / "shards" / shard / "records.parquet" for shard in shard_names]
    barcodes = [outdir / "metadata" / "barcodes" / f"{shard}.parquet" for shard in shard_names]
    for records_path, barcodes_path in zip(records, barcodes):
        clean_shard(records_path, barcodes_path, barcode_params)
    metadata = curate_tables(
        records,
        barcodes,
        outdir / "metadata",
        taxonomy_params=taxonomy_params,
        fixes_path=fixes_path,
        corrections_path=corrections_path,
        redelivery_paths=[outdir / "ingest" / "shards" / shard / "redeliveries.parquet" for shard in shard_names],
        ingest_reject_paths=[outdir / "ingest" / "rejects.parquet"],
    )
    return {"ingest": ingest, "metadata": metadata, "records": records, "barcodes": barcodes}
