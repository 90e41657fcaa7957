"""Metadata stage: barcodes (per shard) -> BINs + taxonomy (whole table) -> the 23-column BIOSCAN-5M table.

- ``clean_shard``: one ingested shard -> its barcode table (processid, cleaned ``dna_barcode``,
  ``barcode_key``, QC columns; ``barcodes.py``). Embarrassingly parallel.
- ``curate_tables``: every ingested shard (label columns only, never the sequences) + every barcode shard ->
  curated labels, changes, BIN table, lineage, correction outcomes, rejects (bad barcodes, exclusions) and an
  accounting that must balance: records in = curated + rejected.
- ``bioscan_table``: curated labels + cleaned barcodes (+ split, chunk, size fields when known) -> the 23
  release columns in the published order.
- ``metadata_from_exports``: the ``bioscan-rebuild metadata`` command -- all of it (and the splits when asked)
  on BOLD exports alone.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from bioscan_rebuild.core.io import write_json, write_table
from bioscan_rebuild.core.params import BarcodeParams, TaxonomyParams
from bioscan_rebuild.core.schemas import (
    INGESTED_SCHEMA,
    LINEAGE_FIELDS,
    RANKS,
    RELEASE_COLUMNS,
    USABLE_IMAGE_STATUSES,
    make_rejects,
)
from bioscan_rebuild.metadata.barcodes import BARCODE_REASONS, QC_SCHEMA, clean_barcodes
from bioscan_rebuild.metadata.taxonomy import curate, load_corrections, load_fixes

BARCODE_TABLE_SCHEMA = pa.schema(
    [QC_SCHEMA.field("processid"), pa.field("dna_barcode", pa.string())] + list(QC_SCHEMA)[1:]
)
LABEL_COLUMNS = ("processid", "sampleid", *RANKS, "bin_uri", "country", "province_state", "lat", "lon", "batch")


def clean_shard(records_path, output, params: BarcodeParams | None = None) -> dict:
    table = pq.read_table(records_path, columns=["processid", "nucleotides"], schema=INGESTED_SCHEMA)
    dna, qc = clean_barcodes(table["processid"], table["nucleotides"], params)
    out = qc.add_column(1, "dna_barcode", dna)
    write_table(out.cast(BARCODE_TABLE_SCHEMA), output)
    statuses = pd.Series(qc["barcode_status"].to_numpy(zero_copy_only=False)).value_counts().sort_index()
    return {"records": table.num_rows, "status": {k: int(v) for k, v in statuses.items()}}


def _read(paths, columns, schema=None) -> pd.DataFrame:
    tables = [pq.read_table(p, columns=list(columns), schema=schema) for p in paths]
    return pa.concat_tables(tables).to_pandas(types_mapper=None) if tables else pd.DataFrame(columns=list(columns))


def _barcode_detail(reason: str, invalid_chars, length, ambiguous) -> str:
    found = {
        "invalid_barcode": f"; found {invalid_chars!r}",
        "short_barcode": f"; {length} bases",
        "ambiguous_barcode": f"; {ambiguous} of {length} bases ambiguous",
    }
    return BARCODE_REASONS[reason] + found.get(reason, "")


def curate_tables(
    record_paths,
    barcode_paths,
    outdir,
    *,
    taxonomy_params: TaxonomyParams | None = None,
    fixes_path=None,
    corrections_path=None,
) -> dict:
    """Writes into ``outdir``: curated.parquet, changes.parquet, bins.parquet, lineage.parquet,
    corrections.tsv, rejects.parquet, summary.json. Returns the summary."""
    outdir = Path(outdir)
    labels = _read(record_paths, LABEL_COLUMNS, None)
    qc = _read(
        barcode_paths, ("processid", "barcode_status", "barcode_key", "invalid_chars", "length", "ambiguity_count")
    )
    if len(labels) != len(qc) or not (labels["processid"].to_numpy() == qc["processid"].to_numpy()).all():
        raise RuntimeError("barcode shards do not line up with the record shards (re-run clean_barcodes)")
    bad = qc["barcode_status"].to_numpy() != "ok"
    rejected = labels[bad]
    reasons = qc["barcode_status"].to_numpy()[bad]
    details = [
        _barcode_detail(*facts)
        for facts in zip(
            reasons,
            qc["invalid_chars"].to_numpy()[bad],
            qc["length"].to_numpy()[bad],
            qc["ambiguity_count"].to_numpy()[bad],
        )
    ]
    records_in = len(labels)
    if bad.any():
        labels = labels[~bad]
    labels = labels.rename(columns={"bin_uri": "dna_bin"})
    labels["barcode_key"] = qc["barcode_key"].to_numpy()[~bad]
    del qc
    result = curate(labels, taxonomy_params, load_fixes(fixes_path), load_corrections(corrections_path))
    del labels
    curated = result["curated"]
    excluded = result["excluded"]
    rejects = pa.concat_tables(
        [
            make_rejects(
                kind="record",
                reason=list(reasons),
                detail=details,
                processid=list(rejected["processid"]),
                batch=list(rejected["batch"]),
            ),
            make_rejects(
                kind="record",
                reason=["excluded"] * len(excluded),
                detail=[f"{r} ({s})" for r, s in zip(excluded.get("reason", []), excluded.get("source", []))],
                processid=list(excluded["processid"]),
            ),
        ]
    ).sort_by([("reason", "ascending"), ("processid", "ascending")])
    counts = result["counts"]
    summary = {
        "records_in": records_in,
        "curated": len(curated),
        "rejected": {
            **{k: int(v) for k, v in pd.Series(reasons).value_counts().sort_index().items()},
            **({"excluded": counts["excluded"]} if counts["excluded"] else {}),
        },
        **{k: v for k, v in counts.items() if k not in ("records", "kept", "excluded")},
    }
    summary["balanced"] = summary["records_in"] == summary["curated"] + sum(summary["rejected"].values())
    if not summary["balanced"]:
        raise RuntimeError(f"metadata accounting does not balance: {summary}")
    outdir.mkdir(parents=True, exist_ok=True)
    curated_table = pa.Table.from_pandas(curated.astype({"inferred_ranks": "uint8"}), preserve_index=False)
    write_table(_strings(curated_table), outdir / "curated.parquet")
    write_table(_strings(pa.Table.from_pandas(result["changes"], preserve_index=False)), outdir / "changes.parquet")
    write_table(pa.Table.from_pandas(result["bins"], preserve_index=False), outdir / "bins.parquet")
    write_table(pa.Table.from_pandas(result["lineage"], preserve_index=False), outdir / "lineage.parquet")
    result["corrections"].to_csv(outdir / "corrections.tsv", sep="\t", index=False, lineterminator="\n")
    write_table(rejects, outdir / "rejects.parquet")
    write_json(summary, outdir / "summary.json")
    return summary


def _strings(table: pa.Table) -> pa.Table:
    """Object columns that came out all-null get a string type (stable schemas across runs)."""
    fields = [pa.field(f.name, pa.string()) if pa.types.is_null(f.type) else f for f in table.schema]
    return table.cast(pa.schema(fields))


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


def write_release_csv(frame: pd.DataFrame, path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False, lineterminator="\n", float_format=None)


def metadata_from_exports(
    exports,
    output_csv,
    *,
    split: bool = False,
    barcode_params: BarcodeParams | None = None,
    taxonomy_params: TaxonomyParams | None = None,
    fixes_path=None,
    corrections_path=None,
    workdir=None,
) -> dict:
    """`bioscan-rebuild metadata`: BOLD exports -> the 23-column table (size fields empty) + rejects, changes,
    BIN table, barcode QC beside it (``{stem}.rejects.csv`` etc.)."""
    import tempfile

    from bioscan_rebuild.ingest.join import ingest_local

    output_csv = Path(output_csv)
    stem = output_csv.with_suffix("")
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        tmp = Path(tmp)
        ingest = ingest_local(exports, [], tmp / "ingest", shards=1, require_images=False)
        records = tmp / "ingest" / "shards" / "shard-000" / "records.parquet"
        clean_shard(records, tmp / "barcodes.parquet", barcode_params)
        summary = curate_tables(
            [records],
            [tmp / "barcodes.parquet"],
            tmp / "metadata",
            taxonomy_params=taxonomy_params,
            fixes_path=fixes_path,
            corrections_path=corrections_path,
        )
        curated = pq.read_table(tmp / "metadata" / "curated.parquet").to_pandas()
        barcodes = pq.read_table(tmp / "barcodes.parquet").to_pandas()
        extra = None
        if split:
            from bioscan_rebuild.splits.protocol import assign_splits, chunk_of

            table = curated[["processid", "genus", "species"]].merge(
                barcodes[["processid", "dna_barcode"]], on="processid"
            )
            splits = assign_splits(table)
            extra = pd.DataFrame(
                {"processid": table["processid"], "split": splits, "chunk": chunk_of(table["processid"], splits)}
            )
        table = bioscan_table(curated, barcodes, extra).sort_values("processid", kind="stable")
        write_release_csv(table, output_csv)
        rejects = pa.concat_tables(
            [pq.read_table(tmp / "ingest" / "rejects.parquet"), pq.read_table(tmp / "metadata" / "rejects.parquet")]
        )
        rejects.to_pandas().to_csv(f"{stem}.rejects.csv", index=False, lineterminator="\n")
        pq.read_table(tmp / "metadata" / "changes.parquet").to_pandas().to_csv(
            f"{stem}.changes.csv", index=False, lineterminator="\n"
        )
        pq.read_table(tmp / "metadata" / "bins.parquet").to_pandas().to_csv(
            f"{stem}.bins.csv", index=False, lineterminator="\n"
        )
        barcodes.drop(columns=["dna_barcode"]).to_csv(f"{stem}.barcode_qc.csv", index=False, lineterminator="\n")
        # where each record of the table came from, with the raw sequence (dna_barcode is the cleaned one)
        lineage = pq.read_table(records, columns=["processid", *LINEAGE_FIELDS, "nucleotides"]).to_pandas()
        lineage = lineage.rename(columns={"nucleotides": "raw_nucleotides"})
        lineage = lineage[lineage["processid"].isin(table["processid"])].sort_values("processid", kind="stable")
        lineage.to_csv(f"{stem}.lineage.csv", index=False, lineterminator="\n")
    return {
        "exports": len(list(exports)),
        "ingest_rows": ingest["inputs"]["records"],
        "ingest_rejected": ingest["rejected"]["records"],
        "metadata_rejected": summary["rejected"],
        "records": len(table),
        "changes": summary["changes"],
        "split": bool(split),
        "splits": {k: int(v) for k, v in table["split"].value_counts().sort_index().items()} if split else None,
    }


def split_tables(curated_path, barcode_paths, outdir, freeze_csv=None, image_paths=None) -> dict:
    """The split stage: curated labels + cleaned barcodes -> ``splits.parquet`` (processid, split, chunk; sorted
    by processid) and ``summary.csv`` (samples, barcodes, species per split). ``freeze_csv``: processid,split of a
    previous release (``splits.assign_splits``: those records keep their split). ``image_paths``: the image
    stage's per-shard results; records whose photo shows no specimen (or is unusable) get no split and are
    written to ``excluded.parquet`` (reject table: ``no_specimen`` / ``image_unusable``)."""
    from bioscan_rebuild.core.schemas import SPLITS
    from bioscan_rebuild.splits.protocol import assign_splits, chunk_of, split_summary

    outdir = Path(outdir)
    # Arrow all the way (5.15M barcodes are 3.4 GB of text), filtered shard by shard: the barcode shards hold the
    # ingested rows in the order curation kept them, so filtering them to the curated ids lines them up.
    curated = pq.read_table(curated_path, columns=["processid", "genus", "species"])
    curated = curated.cast(pa.schema([(name, pa.string()) for name in curated.column_names]))
    kept_ids = pd.Index(curated["processid"].to_numpy())  # one hash table for every shard
    parts = []
    for path in barcode_paths:
        part = pq.read_table(path, columns=["processid", "dna_barcode", "barcode_key"])
        keep = kept_ids.get_indexer(part["processid"].to_numpy()) >= 0
        parts.append(part if keep.all() else part.filter(pa.array(keep)))
    barcodes = pa.concat_tables(parts)
    del parts
    if not barcodes["processid"].equals(curated["processid"]):
        raise RuntimeError("barcode shards do not line up with the curated records (re-run curate_taxonomy)")
    table = pa.table(
        {
            "processid": curated["processid"],
            "genus": curated["genus"],
            "species": curated["species"],
            "dna_barcode": barcodes["dna_barcode"],
            "barcode_key": barcodes["barcode_key"],
        }
    ).to_pandas()
    del curated, barcodes
    excluded = _image_exclusions(table["processid"], image_paths)
    if len(excluded):
        table = table[~table["processid"].isin(excluded["processid"])].reset_index(drop=True)
    write_table(
        make_rejects(
            kind="record",
            reason=list(excluded["reason"]),
            detail=list(excluded["detail"]),
            processid=list(excluded["processid"]),
        ),
        Path(outdir) / "excluded.parquet",
    )
    pa.default_memory_pool().release_unused()
    freeze = None
    if freeze_csv:
        frozen = pd.read_csv(freeze_csv, dtype=str, keep_default_na=False, usecols=["processid", "split"])
        unknown = sorted(set(frozen["split"]) - set(SPLITS))
        if unknown:
            raise ValueError(f"{freeze_csv}: unknown split names {unknown}")
        freeze = pd.Series(frozen["split"].to_numpy(), index=pd.Index(frozen["processid"]), name="split")
    split = assign_splits(table, freeze)
    table["split"] = split.astype(object).to_numpy()
    summary = split_summary(table.drop(columns=["dna_barcode"]))
    out = pd.DataFrame(
        {
            "processid": table["processid"],
            "split": table["split"],
            "chunk": chunk_of(table["processid"], table["split"]),
        }
    ).sort_values("processid", kind="stable")
    outdir.mkdir(parents=True, exist_ok=True)
    write_table(pa.Table.from_pandas(out, preserve_index=False), outdir / "splits.parquet")
    summary.to_csv(outdir / "summary.csv", index=False, lineterminator="\n")
    frozen_kept = 0 if freeze is None else int(table["processid"].isin(freeze.index).sum())
    return {
        "records": len(out),
        "frozen": frozen_kept,
        "excluded": {k: int(v) for k, v in excluded["reason"].value_counts().sort_index().items()},
        "splits": dict(zip(summary["split"], summary["samples"])),
    }


def _image_exclusions(processids: pd.Series, image_paths) -> pd.DataFrame:
    columns = ["processid", "reason", "detail"]
    if not image_paths:
        return pd.DataFrame(columns=columns)
    images = pd.concat(
        [pq.read_table(p, columns=["processid", "image_status"]).to_pandas() for p in image_paths], ignore_index=True
    )
    images = images[images["processid"].isin(processids)]
    bad = images[~images["image_status"].isin(USABLE_IMAGE_STATUSES)]
    reason = np.where(bad["image_status"] == "no_object", "no_specimen", "image_unusable")
    detail = ["image status " + str(s) for s in bad["image_status"]]
    return pd.DataFrame({"processid": bad["processid"].to_numpy(), "reason": reason, "detail": detail}).sort_values(
        "processid", kind="stable"
    )


def write_fasta_from(curated_path, barcode_paths, output, splits_path=None) -> int:
    """FASTA of the curated records' cleaned barcodes (``>processid|dna_bin|taxon``), shard by shard; with
    ``splits_path`` only the released records (those with a split)."""
    from bioscan_rebuild.metadata.barcodes import write_fasta

    curated = pq.read_table(curated_path, columns=["processid", "dna_bin", "taxon"]).to_pandas().set_index("processid")
    if splits_path:
        released = pq.read_table(splits_path, columns=["processid"])["processid"].to_numpy(zero_copy_only=False)
        curated = curated[curated.index.isin(released)]

    def rows():
        for path in barcode_paths:
            shard = pq.read_table(path, columns=["processid", "dna_barcode"]).to_pandas()
            shard = shard[shard["processid"].isin(curated.index)]
            labels = curated.reindex(shard["processid"])
            yield from zip(shard["processid"], labels["dna_bin"], labels["taxon"], shard["dna_barcode"])

    return write_fasta(rows(), output)
