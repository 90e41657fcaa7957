"""Metadata stage: barcodes (per shard) -> BINs + taxonomy (whole table). One function per rule of
``workflow/rules/metadata.smk``:

- ``clean_shard`` (clean_barcodes): one ingested shard -> its barcode table (processid, cleaned ``dna_barcode``,
  ``barcode_key``, QC columns; ``metadata.barcodes``). Embarrassingly parallel.
- ``curate_tables`` (curate_taxonomy): every ingested shard (label columns only, never the sequences) + every
  barcode shard -> curated labels, changes, BIN table, lineage, correction outcomes, rejects (bad barcodes,
  exclusions) and an accounting that must balance: records in = curated + rejected (rules:
  ``metadata.taxonomy.curate``).
- ``write_fasta_from`` (barcode_fasta): the released records' cleaned barcodes as FASTA.

``metadata.local.metadata_local`` runs ingest and the first two in one process.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from bioscan_rebuild.core.errors import AccountingError, InputError
from bioscan_rebuild.core.io import read_table, write_json, write_table
from bioscan_rebuild.core.params import BarcodeParams, TaxonomyParams
from bioscan_rebuild.core.schemas import (
    INGESTED_SCHEMA,
    RANKS,
    REDELIVERY_SCHEMA,
    REJECT_SCHEMA,
    make_rejects,
    processid_keys,
)
from bioscan_rebuild.metadata.barcodes import BARCODE_REASONS, QC_SCHEMA, clean_barcodes, write_fasta
from bioscan_rebuild.metadata.taxonomy.changelog import CHANGE_COLUMNS, REDELIVERY_STEP
from bioscan_rebuild.metadata.taxonomy.corrections import load_corrections
from bioscan_rebuild.metadata.taxonomy.curate import curate
from bioscan_rebuild.metadata.taxonomy.names import load_fixes

BARCODE_TABLE_SCHEMA = pa.schema(
    [QC_SCHEMA.field("processid"), pa.field("dna_barcode", pa.string())] + list(QC_SCHEMA)[1:]
)
LABEL_COLUMNS = ("processid", "sampleid", *RANKS, "bin_uri", "country", "province_state", "lat", "lon", "batch")


def clean_shard(records_path, output, params: BarcodeParams | None = None) -> dict:
    table = read_table(records_path, INGESTED_SCHEMA, columns=["processid", "nucleotides"])
    dna, qc = clean_barcodes(table["processid"], table["nucleotides"], params)
    out = qc.add_column(1, "dna_barcode", dna)
    write_table(out.cast(BARCODE_TABLE_SCHEMA), output)
    statuses = pd.Series(qc["barcode_status"].to_numpy(zero_copy_only=False)).value_counts().sort_index()
    return {"records": table.num_rows, "status": {k: int(v) for k, v in statuses.items()}}


def _read(paths, columns, schema=None) -> pd.DataFrame:
    tables = [read_table(p, schema, columns=list(columns)) for p in paths]
    return pa.concat_tables(tables).to_pandas(types_mapper=None) if tables else pd.DataFrame(columns=list(columns))


def _bases_judged(qc: pd.DataFrame) -> np.ndarray:
    """The bases the length and ambiguity rules judged: the sequence without N at its ends, which ``length``
    still counts where they were kept (``trim_end_n`` off: the flag ``end_n``, not ``end_n_trimmed``)."""
    flags = qc["flags"].fillna("").str.split(",")
    kept_ends = flags.map(lambda names: "end_n" in names).to_numpy(bool)
    ends = (qc["n_leading"] + qc["n_trailing"]).to_numpy()
    return qc["length"].to_numpy() - np.where(kept_ends, ends, 0)


def _barcode_detail(reason: str, invalid_chars, length, ambiguous) -> str:
    found = {
        "invalid_barcode": f"; found {invalid_chars!r}",
        "short_barcode": f"; {length} bases",
        "long_barcode": f"; {length} bases",
        "ambiguous_barcode": f"; {ambiguous} of {length} bases ambiguous",
    }
    return BARCODE_REASONS[reason] + found.get(reason, "")


def _redelivery_changes(paths) -> pd.DataFrame:
    """Ingest's redeliveries as rows of the changes table (step 0, rule ``superseded`` / ``later_delivery``), and
    the sites it refused (``coordinates_refused``: field ``coord``, the text as delivered)."""
    tables = [read_table(p, REDELIVERY_SCHEMA) for p in paths]
    frame = (pa.concat_tables(tables) if tables else REDELIVERY_SCHEMA.empty_table()).to_pandas()
    frame = frame.sort_values(["processid", "old_source"], kind="stable")
    return pd.DataFrame(
        {
            "step": np.full(len(frame), REDELIVERY_STEP, dtype="int64"),
            "processid": frame["processid"].to_numpy(object),
            "field": frame["field"].to_numpy(object),
            "old": frame["old"].to_numpy(object),
            "new": frame["new"].to_numpy(object),
            "rule": frame["rule"].to_numpy(object),
            "ratio": np.full(len(frame), np.nan),
            # a site ingest refused has one source: the row it read
            "source": (frame["old_source"] + " -> " + frame["new_source"])
            .where(frame["old_source"] != frame["new_source"], frame["new_source"])
            .to_numpy(object),
        },
        columns=list(CHANGE_COLUMNS),
    )


def _ingest_rejected(paths) -> list:
    """The processids of the records ingest refused (kind ``record``) in its reject tables."""
    found = []
    for path in paths:  # in Arrow: a full redelivery rejects a row per record (5M)
        table = read_table(path, REJECT_SCHEMA, columns=["kind", "processid"])
        ids = table.filter(pc.and_(pc.equal(table["kind"], "record"), pc.is_valid(table["processid"])))["processid"]
        found.extend(pc.unique(ids).to_pylist())
    return found


def _name_rejected_corrections(outcomes: pd.DataFrame, rejected_processids) -> None:
    """A correction of a record this stage rejected for its barcode, or ingest refused, said
    ``unknown_processid``, sending a maintainer after a typo that is not there: it is ``record_rejected``
    (``rejects.csv`` says why)."""
    if outcomes.empty or not len(rejected_processids):
        return
    rejected = set(processid_keys(rejected_processids))
    unknown = (outcomes["outcome"] == "unknown_processid").to_numpy()
    ours = np.array([key in rejected for key in processid_keys(outcomes["processid"].str.strip())], dtype=bool)
    outcomes.loc[unknown & ours, "outcome"] = "record_rejected"


# what ``curate_tables`` writes into its folder
CURATE_OUTPUTS = (
    "curated.parquet",
    "changes.parquet",
    "bins.parquet",
    "lineage.parquet",
    "corrections.tsv",
    "rejects.parquet",
    "summary.json",
)


def curate_tables(
    record_paths,
    barcode_paths,
    outdir,
    *,
    taxonomy_params: TaxonomyParams | None = None,
    fixes_path=None,
    corrections_path=None,
    redelivery_paths=(),
    ingest_reject_paths=(),
) -> dict:
    """Writes into ``outdir``: curated.parquet, changes.parquet, bins.parquet, lineage.parquet,
    corrections.tsv, rejects.parquet, summary.json. Returns the summary. ``redelivery_paths``: ingest's
    redeliveries (``ingest.join``), put first in the changes table as step 0. ``ingest_reject_paths``: ingest's reject
    tables (a correction of a record they refused is ``record_rejected``)."""
    outdir = Path(outdir)
    labels = _read(record_paths, LABEL_COLUMNS, None)
    qc = _read(
        barcode_paths,
        (
            *("processid", "barcode_status", "barcode_key", "invalid_chars", "length", "n_internal"),
            *("ambiguity_count", "n_leading", "n_trailing", "flags"),
        ),
    )
    if len(labels) != len(qc) or not (labels["processid"].to_numpy() == qc["processid"].to_numpy()).all():
        raise InputError(
            f"the barcode shards ({', '.join(str(p) for p in barcode_paths)}) do not line up with the record shards "
            f"({', '.join(str(p) for p in record_paths)}): {len(qc)} against {len(labels)} rows; give them in the "
            "same order, or run clean_barcodes again"
        )
    repeated = labels["processid"].duplicated(keep=False).to_numpy()
    if repeated.any():  # a shard given twice, or two runs' shards: "balanced", and the split step's traceback
        named = ", ".join(pd.unique(labels["processid"][repeated])[:3])
        raise InputError(
            f"the record shards ({', '.join(str(p) for p in record_paths)}) hold {len(labels)} records, "
            f"{int(labels['processid'].duplicated().sum())} of them more than once ({named}...): give each shard "
            "once, of one ingest run"
        )
    bad = qc["barcode_status"].to_numpy() != "ok"
    rejected = labels[bad]
    reasons = qc["barcode_status"].to_numpy()[bad]
    details = [
        _barcode_detail(*facts)
        for facts in zip(
            reasons,
            qc["invalid_chars"].to_numpy()[bad],
            _bases_judged(qc[bad]),
            # what the rule counts: internal Ns and the other IUPAC codes
            (qc["n_internal"] + qc["ambiguity_count"]).to_numpy()[bad],
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
    if (result["corrections"]["outcome"] == "unknown_processid").any():  # only then: nothing else to name
        refused = [*rejected["processid"], *_ingest_rejected(ingest_reject_paths)]
        _name_rejected_corrections(result["corrections"], refused)
    curated = result["curated"]
    excluded = result["excluded"]
    scope = result["out_of_scope"]
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
                reason="out_of_scope",
                detail=[
                    f"{rank} {label}: outside the dataset's scope" for rank, label in zip(scope["rank"], scope["label"])
                ],
                processid=list(scope["processid"]),
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
            **({"out_of_scope": counts["out_of_scope"]} if counts["out_of_scope"] else {}),
        },
        **{k: v for k, v in counts.items() if k not in ("records", "kept", "excluded", "out_of_scope")},
    }
    summary["balanced"] = summary["records_in"] == summary["curated"] + sum(summary["rejected"].values())
    if not summary["balanced"]:
        raise AccountingError(f"metadata accounting does not balance: {summary}")
    outdir.mkdir(parents=True, exist_ok=True)
    curated_table = pa.Table.from_pandas(curated.astype({"inferred_ranks": "uint8"}), preserve_index=False)
    write_table(_strings(curated_table), outdir / "curated.parquet")
    changes = pd.concat([_redelivery_changes(redelivery_paths), result["changes"]], ignore_index=True)
    write_table(_strings(pa.Table.from_pandas(changes, preserve_index=False)), outdir / "changes.parquet")
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


def _processids(path) -> np.ndarray:
    return pq.read_table(path, columns=["processid"])["processid"].to_numpy(zero_copy_only=False)


def write_fasta_from(curated_path, barcode_paths, output, splits_path=None) -> int:
    """FASTA of the curated records' cleaned barcodes (``>processid|dna_bin|taxon``), shard by shard; with
    ``splits_path`` only the released records (those with a split)."""
    curated = pq.read_table(curated_path, columns=["processid", "dna_bin", "taxon"])
    if splits_path:
        released = pq.read_table(splits_path, columns=["processid"])["processid"]
        curated = curated.filter(pc.is_in(curated["processid"], value_set=released.combine_chunks()))
    # one hash table over the curated ids, looked up by every shard (5.15M ids: isin per shard rebuilt it)
    index = pd.Index(curated["processid"].to_numpy(zero_copy_only=False))
    dna_bin = curated["dna_bin"].to_numpy(zero_copy_only=False)
    taxon = curated["taxon"].to_numpy(zero_copy_only=False)
    del curated
    # every record in exactly one of the shards given: one shard of two wrote half the FASTA, exit 0, and a shard
    # given twice wrote its records twice
    held = np.zeros(len(index), np.int64)
    for path in barcode_paths:
        where = index.get_indexer(_processids(path))
        np.add.at(held, where[where >= 0], 1)
    if (held != 1).any():
        raise InputError(
            f"the barcode shards given ({len(barcode_paths)}) hold {int((held > 0).sum())} of the {len(index)} "
            f"records, {int((held > 1).sum())} more than once: give every shard once"
        )

    def rows():
        for path in barcode_paths:
            shard = pq.read_table(path, columns=["processid", "dna_barcode"])
            processids = shard["processid"].to_numpy(zero_copy_only=False)
            where = index.get_indexer(processids)
            keep = np.flatnonzero(where >= 0)
            found = where[keep]
            barcodes = shard["dna_barcode"].to_numpy(zero_copy_only=False)
            yield from zip(processids[keep], dna_bin[found], taxon[found], barcodes[keep])

    return write_fasta(rows(), output)
