"""Split stage: curated labels + cleaned barcodes -> the split of every record (the protocol itself:
``splits.protocol``).

- ``split_tables``: the workflow's step (rule assign_splits, ``workflow/rules/splits.smk``), on the metadata
  stage's tables; photos without a specimen leave the release here.
- ``split_csv``: the ``bioscan-rebuild split`` command, on any metadata CSV.
- ``read_freeze``: the previous release's splits (a frozen rebuild), as both read them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from pandas.io.common import get_handle

from bioscan_rebuild.core.errors import InputError
from bioscan_rebuild.core.io import write_table
from bioscan_rebuild.core.schemas import SPLITS, USABLE_IMAGE_STATUSES, make_rejects
from bioscan_rebuild.splits.protocol import REQUIRED_COLUMNS, assign_splits, chunk_of, split_summary

# pandas read_csv's default missing-value strings (pandas._libs.parsers.STR_NA_VALUES)
NA_STRINGS = frozenset(
    ("", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN", "<NA>", "N/A")
    + ("NA", "NULL", "NaN", "None", "n/a", "nan", "null")
)


def _read_csv_text(path, what: str, columns=None) -> pd.DataFrame:
    """A CSV as raw strings (only ``columns`` of it, where given), or an InputError saying why it is not ``what``."""
    # read as pandas will: decompressed when the name says so (the published metadata ships as .csv.gz)
    with get_handle(path, "rb", compression="infer", is_text=False) as handles:
        head = handles.handle.read(1 << 16)
    if not head.strip():
        raise InputError(f"{path}: empty file: not {what}")
    if b"\x00" in head:
        raise InputError(f"{path}: binary data (NUL bytes): not {what}; is it compressed, or another format?")
    try:
        usecols = None if columns is None else (lambda name: name in columns)
        return pd.read_csv(path, dtype=str, keep_default_na=False, na_filter=False, usecols=usecols)
    except (UnicodeDecodeError, pd.errors.ParserError) as error:
        raise InputError(f"{path}: not {what} ({str(error).splitlines()[0]})") from None


def read_freeze(path) -> pd.Series:
    """A previous release's splits (CSV with processid and split; other columns are ignored) as
    ``assign_splits`` takes them: split names indexed by processid. Cells are raw strings: ``NA`` is a
    processid, not a missing value."""
    frozen = _read_csv_text(path, "a freeze table (processid, split)", columns=("processid", "split"))
    missing = [c for c in ("processid", "split") if c not in frozen.columns]
    if missing:
        raise InputError(f"{path}: missing columns {missing}: a freeze table needs processid and split")
    unknown = sorted(set(frozen["split"]) - set(SPLITS))
    if unknown:
        raise InputError(f"{path}: unknown split names {unknown}; known: {list(SPLITS)}")
    return pd.Series(frozen["split"].to_numpy(), index=pd.Index(frozen["processid"]), name="split")


def split_tables(curated_path, barcode_paths, outdir, freeze_csv=None, image_paths=None) -> dict:
    """The split stage: curated labels + cleaned barcodes -> ``splits.parquet`` (processid, split, chunk; sorted
    by processid) and ``summary.csv`` (samples, barcodes, species per split). ``freeze_csv``: processid,split of a
    previous release (``read_freeze``; ``assign_splits``: those records keep their split). ``image_paths``: the image
    stage's per-shard results; records whose photo shows no specimen (or is unusable) get no split and are
    written to ``excluded.parquet`` (reject table: ``no_specimen`` / ``image_unusable``)."""
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
    freeze = read_freeze(freeze_csv) if freeze_csv else None
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
        [
            pq.read_table(p, columns=["processid", "image_status", "image_status_detail"]).to_pandas()
            for p in image_paths
        ],
        ignore_index=True,
    )
    images = images[images["processid"].isin(processids)]
    bad = images[~images["image_status"].isin(USABLE_IMAGE_STATUSES)]
    reason = np.where(bad["image_status"] == "no_object", "no_specimen", "image_unusable")
    # The image stage's own words (the decoder's message) where it has them.
    detail = [
        f"image status {status}" + ("" if pd.isna(why) else f": {why}")
        for status, why in zip(bad["image_status"], bad["image_status_detail"])
    ]
    return pd.DataFrame({"processid": bad["processid"].to_numpy(), "reason": reason, "detail": detail}).sort_values(
        "processid", kind="stable"
    )


def _with_missing(column: pd.Series) -> pd.Series:
    """A raw string column with pandas read_csv's default missing-value strings as NaN."""
    return column.mask(column.isin(list(NA_STRINGS)))  # keeps Arrow-backed strings as they are


def split_csv(input_csv, output_csv, freeze_csv=None, summary_csv=None) -> dict:
    """Read a metadata CSV, write it back with ``split`` filled (other cells as read, row order kept).

    Cells are read as raw strings, so other columns come back as written; only genus, species and dna_barcode
    are interpreted, with read_csv's default missing values (a processid is an identifier: ``NA`` is a
    processid, as in the freeze file). A ``chunk`` column, where the table has one (the published CSV does),
    is refilled from the new split so that image paths follow. ``freeze_csv``: processid,split of a previous
    release. Returns counts per split and how many records were kept from the freeze.
    """
    raw = _read_csv_text(input_csv, "a metadata CSV")
    missing = [c for c in REQUIRED_COLUMNS if c not in raw.columns]
    if missing:
        raise InputError(f"{input_csv}: missing columns {missing}: the split needs {list(REQUIRED_COLUMNS)}")
    work = pd.DataFrame({c: raw[c] if c == "processid" else _with_missing(raw[c]) for c in REQUIRED_COLUMNS})
    freeze = None if freeze_csv is None else read_freeze(freeze_csv)
    split = assign_splits(work, freeze)
    raw["split"] = split.astype(object).to_numpy()  # overwrites in place, else appends
    if "chunk" in raw.columns:
        raw["chunk"] = chunk_of(raw["processid"], raw["split"]).to_numpy()
    Path(output_csv).parent.mkdir(parents=True, exist_ok=True)
    raw.to_csv(output_csv, index=False)
    kept = 0 if freeze is None else int(work["processid"].isin(freeze.index).sum())
    if summary_csv is not None:
        split_summary(pd.DataFrame({"split": raw["split"], **{c: work[c] for c in ("species", "dna_barcode")}})).to_csv(
            summary_csv, index=False
        )
    counts = split.value_counts(sort=False)
    return {"rows": len(raw), "frozen": kept, "new": len(raw) - kept, "splits": {k: int(counts[k]) for k in SPLITS}}
