"""The release spool: every released row once, per split, that each format then streams (pass 2).

The released records are those with a split (``splits.stage.split_tables`` leaves out photos without a specimen).
``index_bioscan_1M_insect`` is empty: the pipeline has no BIOSCAN-1M mapping as input.

Pass 1 reads one shard at a time, builds its 23-column rows (+ image hashes, :data:`SPOOL_SCHEMA`) and writes
them per split (``{spool}/{split}/{i:05d}.parquet``); :func:`iter_split` reads a split back in release order.
Memory is one shard (plus the curated label table), whatever the number of records.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from bioscan_rebuild.core.errors import InputError
from bioscan_rebuild.core.schemas import IMAGE_PACKAGES, RANKS, RELEASE_COLUMNS, SPLITS
from bioscan_rebuild.core.store import JPEG_END, ImageStore, whole_jpeg

IMAGE_KEYS = ("image_sha256", "params_key", "original_full_is_source", *(f"sha256_{p}" for p in IMAGE_PACKAGES))
DICTIONARY_COLUMNS = (*RANKS, "taxon", "dna_bin", "country", "province_state", "split", "chunk")
FLOAT_COLUMNS = ("coord-lat", "coord-lon", "area_fraction", "scale_factor")
INT_COLUMNS = ("image_measurement_value", "index_bioscan_1M_insect")
EXTRA_COLUMNS = (
    "placeholder_species",
    "image_sha256",
    "image_status",
    "params_key",
    "original_full_is_source",
    *(f"sha256_{p}" for p in IMAGE_PACKAGES),
)


def release_schema() -> pa.Schema:
    fields = []
    for name in RELEASE_COLUMNS:
        if name in FLOAT_COLUMNS:
            fields.append(pa.field(name, pa.float64()))
        elif name in INT_COLUMNS:
            fields.append(pa.field(name, pa.int64()))
        elif name == "inferred_ranks":
            fields.append(pa.field(name, pa.uint8()))
        else:
            fields.append(pa.field(name, pa.string()))
    return pa.schema(fields)


def dictionary_schema() -> pa.Schema:
    """The release schema with the taxonomy and geography columns dictionary-encoded (the metadata Parquet)."""
    return pa.schema(
        [
            pa.field(f.name, pa.dictionary(pa.int32(), pa.string())) if f.name in DICTIONARY_COLUMNS else f
            for f in release_schema()
        ]
    )


SPOOL_SCHEMA = pa.schema(
    list(release_schema())
    + [pa.field("placeholder_species", pa.bool_()), pa.field("original_full_is_source", pa.bool_())]
    + [
        pa.field(name, pa.string())
        for name in EXTRA_COLUMNS
        if name not in ("placeholder_species", "original_full_is_source")
    ]
)


def release_columns(table: pa.Table) -> pa.Table:
    """A spool table cut to the 23 release columns, in order."""
    return table.select(list(RELEASE_COLUMNS))


# ---------------------------------------------------------------------------------------------- pass 1
def _empty_column(n: int, field: pa.Field) -> pa.Array:
    return pa.nulls(n, field.type)


def shard_release_rows(curated: pd.DataFrame, barcodes: pa.Table, splits: pd.DataFrame, images: pd.DataFrame | None):
    """One shard's released rows (SPOOL_SCHEMA): the shard's records that hold a split.

    ``curated``/``splits`` are indexed by processid (whole table); ``barcodes`` is the shard's barcode table;
    ``images`` the shard's image results (or None for a metadata-only release). Records without a split were
    rejected earlier (barcode, correction, no specimen in the photo) and are in those stages' rejects."""
    ids = barcodes["processid"].to_numpy(zero_copy_only=False)
    at = curated.index.get_indexer(ids)
    split_at = splits.index.get_indexer(ids)
    keep = (at >= 0) & (split_at >= 0)
    ids, at, split_at = ids[keep], at[keep], split_at[keep]
    labels = curated.iloc[at]
    n = len(ids)
    columns: dict[str, pa.Array] = {}
    for name in ("sampleid", "taxon", *RANKS, "dna_bin", "country", "province_state"):
        columns[name] = pa.array(labels[name].astype(object).where(labels[name].notna(), None), pa.string())
    columns["processid"] = pa.array(ids, pa.string())
    columns["dna_barcode"] = barcodes["dna_barcode"].filter(pa.array(keep)).combine_chunks()
    columns["coord-lat"] = pa.array(labels["lat"].to_numpy(dtype=float), pa.float64(), from_pandas=True)
    columns["coord-lon"] = pa.array(labels["lon"].to_numpy(dtype=float), pa.float64(), from_pandas=True)
    columns["inferred_ranks"] = pa.array(labels["inferred_ranks"].to_numpy(dtype=np.uint8), pa.uint8())
    columns["placeholder_species"] = pa.array(labels["placeholder_species"].to_numpy(dtype=bool), pa.bool_())
    columns["split"] = pa.array(splits["split"].to_numpy(dtype=object)[split_at], pa.string())
    chunks = splits["chunk"].to_numpy(dtype=object)[split_at]
    columns["chunk"] = pa.array([c or None for c in chunks], pa.string())  # no chunk folder: missing, as elsewhere
    if images is not None:
        rows = images.reindex(ids)  # missing -> NaN (also when the shard has no image rows at all)
        for name in ("image_status", "image_sha256", "params_key", *(f"sha256_{p}" for p in IMAGE_PACKAGES)):
            columns[name] = pa.array(rows[name], pa.string(), from_pandas=True)  # NaN/None -> null
        columns["original_full_is_source"] = pa.array(rows["original_full_is_source"], pa.bool_(), from_pandas=True)
        columns["image_measurement_value"] = pa.array(rows["image_measurement_value"], pa.int64(), from_pandas=True)
        columns["area_fraction"] = pa.array(rows["area_fraction"], pa.float64(), from_pandas=True)
        columns["scale_factor"] = pa.array(rows["scale_factor"], pa.float64(), from_pandas=True)
    return pa.table({f.name: columns.get(f.name, _empty_column(n, f)) for f in SPOOL_SCHEMA}, schema=SPOOL_SCHEMA)


def check_same_shard(image_ids: pd.Index, barcode_ids: pa.ChunkedArray, image_path, barcode_path) -> None:
    """The image table of a shard holds records of its barcode shard only: tables given in another order (the
    ``release`` command by hand) left every record without its images, and the release said nothing."""
    strays = image_ids.difference(pd.Index(barcode_ids.to_numpy(zero_copy_only=False)))
    if len(strays):
        raise InputError(
            f"{image_path} holds {len(strays)} records that {barcode_path} does not ({strays[0]} first): the image "
            "tables do not line up with the barcode shards; give them in the same order, shard for shard"
        )


def spool_shards(curated_path, barcode_paths, splits_path, image_paths, spool: Path) -> dict:
    """Pass 1. Writes ``spool/{split}/{i:05d}.parquet`` per shard; returns rows per split."""
    curated = pq.read_table(curated_path).to_pandas().set_index("processid")
    splits = pq.read_table(splits_path, columns=["processid", "split", "chunk"]).to_pandas().set_index("processid")
    counts = dict.fromkeys(SPLITS, 0)
    image_paths = list(image_paths) if image_paths else [None] * len(barcode_paths)
    for i, (barcode_path, image_path) in enumerate(zip(barcode_paths, image_paths, strict=True)):
        barcodes = pq.read_table(barcode_path, columns=["processid", "dna_barcode"])
        images = pq.read_table(image_path).to_pandas().set_index("processid") if image_path else None
        if images is not None:
            check_same_shard(images.index, barcodes["processid"], image_path, barcode_path)
        table = shard_release_rows(curated, barcodes, splits, images)
        split_column = table["split"].to_numpy(zero_copy_only=False)
        for split in SPLITS:
            part = table.filter(pa.array(split_column == split))
            if part.num_rows:
                (spool / split).mkdir(parents=True, exist_ok=True)
                pq.write_table(part, spool / split / f"{i:05d}.parquet", compression="zstd")
                counts[split] += part.num_rows
    return counts


# ---------------------------------------------------------------------------------------------- pass 2
def iter_split(spool: Path, split: str) -> Iterator[pa.Table]:
    """One split's spooled rows, shard by shard in release order (nothing for a split without rows)."""
    for path in sorted((spool / split).glob("*.parquet")) if (spool / split).exists() else []:
        yield pq.read_table(path, schema=SPOOL_SCHEMA)


def split_rows(spool: Path, split: str) -> int:
    """How many rows one split's spool holds (from the Parquet footers)."""
    return sum(pq.ParquetFile(path).metadata.num_rows for path in sorted((spool / split).glob("*.parquet")))


class MissingImageError(InputError):
    """A derived JPEG the image stage wrote is gone from the store (deleted, a disk cleaned up) or damaged since: a
    person's fix, one line (the store is not a job input, so a plain re-run does not notice)."""


def _damaged(row: dict, package: str, path: Path, what: str) -> MissingImageError:
    return MissingImageError(
        f"{row.get('processid')}: {package} in the store at {path} {what}: it was damaged after the image stage "
        "wrote it (an interrupted copy of the store, a disk fault); delete it and redo its photo jobs, which make "
        "it again: snakemake --forcerun process_photos"
    )


def read_derived_image(store_root: Path, row: dict, package: str) -> bytes | None:
    """The bytes of ``derived_image_path``'s JPEG, checked against the sha256 the image stage recorded: a damaged
    store file is never released."""
    path = derived_image_path(store_root, row, package, check_end=False)  # the hash below sees every byte
    if path is None:
        return None
    data = path.read_bytes()
    if hashlib.sha256(data).hexdigest() != row[f"sha256_{package}"]:
        if not _is_source(row, package) and not data.endswith(JPEG_END):
            raise _damaged(row, package, path, "is cut short (no JPEG end marker)")
        raise _damaged(row, package, path, f"no longer holds sha256 {row[f'sha256_{package}'][:12]}…")
    return data


def _is_source(row: dict, package: str) -> bool:
    """The package is the photo as delivered (which may end otherwise than a JPEG the image stage writes)."""
    return package == "original_full" and bool(row.get("original_full_is_source"))


def derived_image_path(store_root: Path, row: dict, package: str, check_end: bool = True) -> Path | None:
    """Where the content-addressed store holds this spooled row's ``package`` JPEG (None when the record has
    none, e.g. no crop for an empty well). Raises when the store should hold it but does not, or (``check_end``)
    when the JPEG is cut short."""
    sha, key = row.get("image_sha256"), row.get("params_key")
    if not sha or not key or not row.get(f"sha256_{package}"):
        return None
    path = ImageStore(store_root).package_path(key, sha, package, bool(row.get("original_full_is_source")))
    if not path.exists():
        # the original as delivered is the inventory's to store, the other packages the photo jobs'
        remedy = (
            "redo the inventory of its batch, which stores only what is missing: snakemake --forcerun inventory_images"
            if _is_source(row, package)
            else "redo its photo jobs, which make only what is missing again: snakemake --forcerun process_photos"
        )
        raise MissingImageError(
            f"{row.get('processid')}: {package} is not in the store at {path}: files were removed from the store "
            f"after the image stage wrote them; {remedy} (with image_store.mode none a release cannot take images)"
        )
    # the cheap check, for files cloned unread (the audit compares every hash); a source photo may end otherwise
    if check_end and not _is_source(row, package) and not whole_jpeg(path):
        raise _damaged(row, package, path, "is cut short (no JPEG end marker)")
    return path
