"""Release export: the BIOSCAN-5M folder layout and every download format, streamed shard by shard.

Layout (root ``bioscan5m/``; ``../shared/spec/dataset.md``):

- ``metadata/csv/BIOSCAN_5M_Insect_Dataset_metadata.csv``: the 23 columns in order, empty cells for missing
  values; rows by split (published order), then shard, then ingest order.
- ``metadata/parquet/data/{split}-{i:05d}-of-{n:05d}.parquet``: the same table per split (Hugging Face
  layout), row groups of about ``row_group_bytes``, files of about ``file_bytes``; taxonomy and geography
  columns are dictionary-encoded (categorical when read).
- ``images_parquet/data/{split}-…parquet``: processid, split, ``image`` = struct<bytes: binary, path: string>
  (the ``image_package`` JPEG; no compression and no dictionary on the bytes).
- ``hdf5/BIOSCAN_5M.h5``: one group per split; ``image`` = resizable 1-D dataset of variable-length uint8 (JPEG
  bytes, no filter), ``processid`` and label datasets beside it (UTF-8), chunked along axis 0, written in
  batches; file attributes for licence, version and provenance.
- ``images/{package}/{split}/{chunk}/{processid}.jpg`` (chunk folder only for pretrain/train/other_heldout),
  hard links into the content-addressed store where possible.
- ``metadata/bbox.tsv``, ``barcodes.fasta``, ``rejects.csv``, ``changes.csv``, ``split_summary.csv`` (side
  files from earlier stages), ``metadata/jsonld/{split}.jsonld``, ``croissant.json``; ``MANIFEST.json`` beside
  the root folder holds every file's sha256, and the optional ``zips/`` beside it the image packages zipped as
  published (``BIOSCAN_5M_{package}_{pretrain.01,pretrain.02,train,eval}.zip``).

The released records are those with a split (``splits.split_tables`` leaves out photos without a specimen).
``index_bioscan_1M_insect`` is empty: the pipeline has no BIOSCAN-1M mapping as input.

How: pass 1 reads one shard at a time, builds its 23-column rows (+ image hashes) and spools them per split
(Parquet); pass 2 streams each split's spool into every format. Memory is one shard (plus the curated label
table), whatever the number of records.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from bioscan_rebuild.core.io import file_sha256
from bioscan_rebuild.core.params import ExportOptions
from bioscan_rebuild.core.schemas import IMAGE_PACKAGES, RANKS, RELEASE_COLUMNS, SPLITS
from bioscan_rebuild.core.store import ImageStore

ROOT = "bioscan5m"
ZIP_DIR = "zips"  # beside ROOT: the archives hold ROOT/images/..., so they are not part of the tree they pack
CSV_PATH = "metadata/csv/BIOSCAN_5M_Insect_Dataset_metadata.csv"
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


SPOOL_SCHEMA = pa.schema(
    list(release_schema())
    + [pa.field("placeholder_species", pa.bool_()), pa.field("original_full_is_source", pa.bool_())]
    + [
        pa.field(name, pa.string())
        for name in EXTRA_COLUMNS
        if name not in ("placeholder_species", "original_full_is_source")
    ]
)


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

        def image_column(name):
            return [None if pd.isna(v) else v for v in rows[name].to_numpy(dtype=object)]

        for name in ("image_status", "image_sha256", "params_key", *(f"sha256_{p}" for p in IMAGE_PACKAGES)):
            columns[name] = pa.array(image_column(name), pa.string())
        columns["original_full_is_source"] = pa.array(image_column("original_full_is_source"), pa.bool_())
        columns["image_measurement_value"] = pa.array(image_column("image_measurement_value"), pa.int64())
        columns["area_fraction"] = pa.array(image_column("area_fraction"), pa.float64())
        columns["scale_factor"] = pa.array(image_column("scale_factor"), pa.float64())
    return pa.table({f.name: columns.get(f.name, _empty_column(n, f)) for f in SPOOL_SCHEMA}, schema=SPOOL_SCHEMA)


def spool_shards(curated_path, barcode_paths, splits_path, image_paths, spool: Path) -> dict:
    """Pass 1. Writes ``spool/{split}/{i:05d}.parquet`` per shard; returns rows per split."""
    curated = pq.read_table(curated_path).to_pandas().set_index("processid")
    splits = pq.read_table(splits_path).to_pandas().set_index("processid")
    counts = dict.fromkeys(SPLITS, 0)
    image_paths = list(image_paths) if image_paths else [None] * len(barcode_paths)
    for i, (barcode_path, image_path) in enumerate(zip(barcode_paths, image_paths, strict=True)):
        barcodes = pq.read_table(barcode_path, columns=["processid", "dna_barcode"])
        images = pq.read_table(image_path).to_pandas().set_index("processid") if image_path else None
        table = shard_release_rows(curated, barcodes, splits, images)
        split_column = table["split"].to_numpy(zero_copy_only=False)
        for split in SPLITS:
            part = table.filter(pa.array(split_column == split))
            if part.num_rows:
                (spool / split).mkdir(parents=True, exist_ok=True)
                pq.write_table(part, spool / split / f"{i:05d}.parquet", compression="zstd")
                counts[split] += part.num_rows
    return counts


def iter_split(spool: Path, split: str) -> Iterator[pa.Table]:
    for path in sorted((spool / split).glob("*.parquet")) if (spool / split).exists() else []:
        yield pq.read_table(path, schema=SPOOL_SCHEMA)


# ---------------------------------------------------------------------------------------------- pass 2
def _dictionary_schema() -> pa.Schema:
    return pa.schema(
        [
            pa.field(f.name, pa.dictionary(pa.int32(), pa.string())) if f.name in DICTIONARY_COLUMNS else f
            for f in release_schema()
        ]
    )


class ShardedParquet:
    """``data/{split}-{i:05d}-of-{n:05d}.parquet`` with row groups of about ``row_group_bytes``; files roll over
    at about ``file_bytes`` and are renamed with the final count when closed. Both sizes are of the in-memory
    (uncompressed Arrow) data: the files on disk are smaller by the compression ratio."""

    def __init__(self, folder: Path, split: str, schema: pa.Schema, options: ExportOptions, **writer_options):
        self.folder, self.split, self.schema, self.options = folder, split, schema, options
        self.writer_options = writer_options
        self.buffer: list[pa.Table] = []
        self.buffered = 0
        self.files: list[Path] = []
        self.writer = None
        self.written = 0

    def _open(self):
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / f"{self.split}-{len(self.files):05d}.partial"
        self.files.append(path)
        self.writer = pq.ParquetWriter(path, self.schema, **self.writer_options)
        self.written = 0

    def _flush(self):
        if not self.buffer:
            return
        if self.writer is None:
            self._open()
        table = pa.concat_tables(self.buffer).combine_chunks()
        self.writer.write_table(table, row_group_size=table.num_rows)
        self.written += self.buffered
        self.buffer, self.buffered = [], 0
        if self.written >= self.options.file_bytes:
            self.writer.close()
            self.writer = None

    def write(self, table: pa.Table):
        if not table.num_rows:
            return
        per_row = max(1, table.nbytes // table.num_rows)
        step = max(1, self.options.row_group_bytes // per_row)
        for start in range(0, table.num_rows, step):  # a big table becomes several row groups
            part = table.slice(start, step)
            self.buffer.append(part)
            self.buffered += part.num_rows * per_row
            if self.buffered >= self.options.row_group_bytes:
                self._flush()

    def close(self) -> list[Path]:
        self._flush()
        if self.writer is not None:
            self.writer.close()
        final = []
        for i, path in enumerate(self.files):
            target = self.folder / f"{self.split}-{i:05d}-of-{len(self.files):05d}.parquet"
            os.replace(path, target)
            final.append(target)
        return final


def _release_columns(table: pa.Table) -> pa.Table:
    return table.select(list(RELEASE_COLUMNS))


def write_csv_part(table: pa.Table, handle, header: bool) -> None:
    options = pacsv.WriteOptions(include_header=header, quoting_style="needed")
    pacsv.write_csv(_release_columns(table), handle, options)


class MissingImageError(RuntimeError):
    pass


def derived_image_path(store_root: Path, row: dict, package: str) -> Path | None:
    """Where the content-addressed store holds this record's ``package`` JPEG (None when the record has none,
    e.g. no crop for an empty well). Raises when the store should hold it but does not."""
    sha, key = row.get("image_sha256"), row.get("params_key")
    if not sha or not key or not row.get(f"sha256_{package}"):
        return None
    store = ImageStore(store_root)
    if package == "original_full" and row.get("original_full_is_source"):
        path = store.original_path(sha, "jpeg")  # the source JPEG itself
    else:
        path = store.derived_image_path(key, sha, package)
    if not path.exists():
        raise MissingImageError(
            f"{row.get('processid')}: {package} is not in the store at {path} "
            "(re-run the image stage; a release needs image_store.mode link or copy)"
        )
    return path


def _place(source: Path, target: Path, link: bool) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists():
        target.unlink()
    if link:
        try:
            os.link(source, target)
            return
        except OSError:
            pass
    shutil.copyfile(source, target)


def image_relpath(package: str, split: str, chunk: str | None, processid: str) -> str:
    parts = ["images", package, split] + ([chunk] if chunk else []) + [f"{processid}.jpg"]
    return "/".join(parts)


def export_release(
    curated_path,
    barcode_paths,
    splits_path,
    outdir,
    *,
    image_paths=None,
    store_root=None,
    side_files: dict | None = None,
    options: ExportOptions | None = None,
    formats=("csv", "parquet", "images", "hdf5", "jsonld", "croissant"),
    provenance: dict | None = None,
    manifest: bool = True,
) -> dict:
    """Write the release under ``outdir/bioscan5m`` (see the module doc). ``side_files``: name under
    ``metadata/`` -> source path (bbox.tsv, barcodes.fasta, rejects.csv, changes.csv, split_summary.csv).
    Returns a summary."""
    options = options or ExportOptions()
    outdir = Path(outdir)
    root = outdir / ROOT
    for folder in (root, outdir / ZIP_DIR):
        if folder.exists():
            shutil.rmtree(folder)
    root.mkdir(parents=True)
    summary: dict = {"formats": list(formats)}
    with tempfile.TemporaryDirectory(dir=outdir) as tmp:
        spool = Path(tmp)
        counts = spool_shards(curated_path, barcode_paths, splits_path, image_paths, spool)
        summary["records"] = counts
        summary["released"] = sum(counts.values())
        if "csv" in formats:
            path = root / CSV_PATH
            path.parent.mkdir(parents=True, exist_ok=True)
            with pa.OSFile(str(path), "wb") as handle:
                first = True
                for split in SPLITS:
                    for table in iter_split(spool, split):
                        write_csv_part(table, handle, first)
                        first = False
                if first:  # no records: still the header
                    write_csv_part(SPOOL_SCHEMA.empty_table(), handle, True)
        if "parquet" in formats:
            write_parquet(spool, root / "metadata" / "parquet" / "data", options)
        image_rows = None
        if "images" in formats and store_root is not None and image_paths:
            image_rows = write_image_folders(spool, root, Path(store_root), options)
            summary["images"] = image_rows
            write_images_parquet(spool, root / "images_parquet" / "data", Path(store_root), options)
            if options.zip_packages:
                summary["zips"] = write_zip_packages(root, outdir / ZIP_DIR, options.zip_pretrain_parts)
        if "hdf5" in formats and store_root is not None and image_paths:
            write_hdf5(spool, root / "hdf5" / "BIOSCAN_5M.h5", Path(store_root), options, provenance or {})
        if "jsonld" in formats:
            summary["jsonld"] = write_jsonld_files(spool, root / "metadata" / "jsonld", options, provenance or {})
    for name, source in (side_files or {}).items():
        target = root / "metadata" / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
    if "croissant" in formats:
        from bioscan_rebuild.export.formats.croissant import write_croissant

        write_croissant(root, info=_croissant_info(options, provenance or {}))
    if manifest:
        summary["manifest"] = write_manifest(outdir)
    return summary


def _croissant_info(options: ExportOptions, provenance: dict) -> dict:
    return {
        "name": options.name,
        "version": options.version,
        "license": options.licence,
        "description": "A BIOSCAN-5M-style release rebuilt from BOLD exports and imager photos by bioscan-rebuild.",
        **{k: v for k, v in provenance.items() if k in ("url", "citeAs", "datePublished")},
    }


def write_parquet(spool: Path, folder: Path, options: ExportOptions) -> dict:
    schema = _dictionary_schema()
    files = {}
    for split in SPLITS:
        writer = None
        for table in iter_split(spool, split):
            if writer is None:
                writer = ShardedParquet(
                    folder, split, schema, options, compression="zstd", use_dictionary=list(DICTIONARY_COLUMNS)
                )
            writer.write(_release_columns(table).cast(schema))
        if writer is not None:
            files[split] = [p.name for p in writer.close()]
    return files


def write_image_folders(spool: Path, root: Path, store_root: Path, options: ExportOptions) -> dict:
    placed = dict.fromkeys(IMAGE_PACKAGES, 0)
    for split in SPLITS:
        for table in iter_split(spool, split):
            for row in table.select(["processid", "chunk", *IMAGE_KEYS]).to_pylist():
                for package in IMAGE_PACKAGES:
                    source = derived_image_path(store_root, row, package)
                    if source is None:
                        continue
                    _place(
                        source,
                        root / image_relpath(package, split, row["chunk"], row["processid"]),
                        options.link_images,
                    )
                    placed[package] += 1
    return placed


ZIP_GROUPS = {
    "pretrain": ("pretrain",),
    "train": ("train",),
    "eval": ("val", "test", "key_unseen", "val_unseen", "test_unseen", "other_heldout"),
}


def _zip_parts(root: Path, package: str, group: str, splits, pretrain_parts: int) -> dict[str, list[Path]]:
    """Archive name -> its files. Pretrain is cut into ``pretrain_parts`` by chunk, i.e. by the first two hex
    digits of md5(processid): part k (1-based, named ``.01``, ``.02`` ... as published) holds the chunks c with
    int(c, 16) * parts // 256 == k - 1."""
    files = sorted(p for split in splits for p in (root / "images" / package / split).rglob("*.jpg") if p.is_file())
    if group != "pretrain" or pretrain_parts <= 1:
        return {f"BIOSCAN_5M_{package}_{group}.zip": files}
    from bioscan_rebuild.splits.protocol import chunk_of

    width = max(2, len(str(pretrain_parts)))
    chunks = chunk_of(pd.Series([p.stem for p in files], dtype=object), pd.Series(["pretrain"] * len(files)))
    parts: dict[str, list[Path]] = {}
    for path, chunk in zip(files, chunks, strict=True):  # the chunk rule on the processid, whatever the folder
        part = int(chunk, 16) * pretrain_parts // 256 + 1
        parts.setdefault(f"BIOSCAN_5M_{package}_{group}.{part:0{width}d}.zip", []).append(path)
    return dict(sorted(parts.items()))


def write_zip_packages(root: Path, target_dir: Path, pretrain_parts: int = 2) -> list[str]:
    """``BIOSCAN_5M_{package}_{pretrain.01,pretrain.02,train,eval}.zip`` in ``target_dir``, named and cut as
    published, each holding ``bioscan5m/images/{package}/{split}/...`` (extract them beside ``bioscan5m/``).
    Stored, not deflated (JPEGs do not shrink); fixed member dates and sorted members, so equal folders give
    identical archives."""

    written = []
    for package in IMAGE_PACKAGES:
        for group, splits in ZIP_GROUPS.items():
            for name, files in _zip_parts(root, package, group, splits, pretrain_parts).items():
                if files:
                    _write_zip(root, target_dir / name, files)
                    written.append(name)
    return written


def _write_zip(root: Path, target: Path, files: list[Path]) -> None:
    import zipfile

    target.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(target, "w", zipfile.ZIP_STORED) as archive:
        for path in files:
            info = zipfile.ZipInfo(f"{ROOT}/{path.relative_to(root).as_posix()}", date_time=(1980, 1, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16
            archive.writestr(info, path.read_bytes())


def write_images_parquet(spool: Path, folder: Path, store_root: Path, options: ExportOptions) -> None:
    image_type = pa.struct([pa.field("bytes", pa.binary()), pa.field("path", pa.string())])
    # Hugging Face `datasets` reads its feature types from this schema metadata: `image` decodes as an Image
    features = {
        "processid": {"dtype": "string", "_type": "Value"},
        "split": {"dtype": "string", "_type": "Value"},
        "image": {"_type": "Image"},
    }
    schema = pa.schema(
        [pa.field("processid", pa.string()), pa.field("split", pa.string()), pa.field("image", image_type)],
        metadata={"huggingface": json.dumps({"info": {"features": features}}, sort_keys=True)},
    )
    package = options.image_package
    for split in SPLITS:
        writer = None
        for table in iter_split(spool, split):
            for batch in table.select(["processid", "chunk", *IMAGE_KEYS]).to_batches(max_chunksize=options.hdf5_batch):
                rows = batch.to_pylist()  # one batch of JPEGs in memory at a time
                images = []
                for row in rows:
                    source = derived_image_path(store_root, row, package)
                    path = image_relpath(package, split, row["chunk"], row["processid"])
                    images.append(None if source is None else {"bytes": source.read_bytes(), "path": path})
                part = pa.table(
                    {"processid": [r["processid"] for r in rows], "split": [split] * len(rows), "image": images},
                    schema=schema,
                )
                if writer is None:
                    writer = ShardedParquet(
                        folder,
                        split,
                        schema,
                        options,
                        compression={"processid": "zstd", "split": "zstd", "image.bytes": "none", "image.path": "zstd"},
                        use_dictionary=["split"],
                    )
                writer.write(part)
        if writer is not None:
            writer.close()


HDF5_LABELS = ("taxon", *RANKS, "dna_bin", "dna_barcode", "chunk")


def write_hdf5(spool: Path, path: Path, store_root: Path, options: ExportOptions, provenance: dict) -> None:
    import h5py

    path.parent.mkdir(parents=True, exist_ok=True)
    text = h5py.string_dtype("utf-8")
    blob = h5py.vlen_dtype(np.dtype("uint8"))
    with h5py.File(path, "w", track_order=True) as h5:
        h5.attrs["licence"] = options.licence
        h5.attrs["version"] = options.version
        h5.attrs["image_package"] = options.image_package
        from bioscan_rebuild import __version__

        h5.attrs["provenance"] = json.dumps(
            {"software": "bioscan-rebuild", "software_version": __version__, **provenance}, sort_keys=True
        )
        for split in SPLITS:
            tables = iter_split(spool, split)
            group = None
            for table in tables:
                if group is None:
                    group = h5.create_group(split)
                    chunk = (options.hdf5_batch,)
                    # no timestamps in the object headers: two runs must give identical files
                    group.create_dataset("image", (0,), maxshape=(None,), dtype=blob, chunks=chunk, track_times=False)
                    group.create_dataset(
                        "processid", (0,), maxshape=(None,), dtype=text, chunks=chunk, track_times=False
                    )
                    for name in HDF5_LABELS:
                        group.create_dataset(name, (0,), maxshape=(None,), dtype=text, chunks=chunk, track_times=False)
                rows = table.select(["processid", "chunk", *IMAGE_KEYS]).to_pylist()
                for start in range(0, len(rows), options.hdf5_batch):
                    batch = rows[start : start + options.hdf5_batch]
                    size = group["processid"].shape[0]
                    end = size + len(batch)
                    for name in ("image", "processid", *HDF5_LABELS):
                        group[name].resize((end,))
                    images = np.empty(len(batch), dtype=object)
                    for k, row in enumerate(batch):
                        source = derived_image_path(store_root, row, options.image_package)
                        images[k] = np.frombuffer(source.read_bytes() if source is not None else b"", np.uint8)
                    _write_vlen(group["image"], size, images)
                    group["processid"][size:end] = [r["processid"] for r in batch]
                    part = table.slice(start, len(batch))
                    for name in HDF5_LABELS:
                        values = part[name].to_pylist()
                        group[name][size:end] = ["" if v is None else v for v in values]


def _write_vlen(dataset, start: int, values: np.ndarray) -> None:
    """Write a 1-D object array of uint8 arrays at ``start`` in one call. The low-level write, because
    h5py's slice assignment stacks equal-length arrays into a 2-D array and then refuses it."""
    from h5py import h5s

    file_space = dataset.id.get_space()
    file_space.select_hyperslab((start,), (len(values),))
    dataset.id.write(h5s.create_simple((len(values),)), file_space, values)


def write_jsonld_files(spool: Path, folder: Path, options: ExportOptions, provenance: dict) -> dict:
    from bioscan_rebuild.export.formats.jsonld import write_jsonld

    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    from bioscan_rebuild import __version__

    dataset = {
        "name": options.name,
        "version": options.version,
        "license": options.licence,
        "description": "Specimen records of a BIOSCAN-5M-style release rebuilt by bioscan-rebuild.",
        "software_name": "bioscan-rebuild",
        "software_version": __version__,
        "inputs": provenance.get("inputs", []),
    }
    for split in SPLITS:
        if not (spool / split).exists():
            continue
        chunks = (table.to_pandas() for table in iter_split(spool, split))
        out[split] = write_jsonld(chunks, folder / f"{split}.jsonld", split=split, dataset=dataset)
    return out


def write_manifest(outdir: Path) -> dict:
    files = sorted(p for p in Path(outdir).rglob("*") if p.is_file() and p.name != "MANIFEST.json")
    manifest = {
        "files": {
            p.relative_to(outdir).as_posix(): {"bytes": p.stat().st_size, "sha256": file_sha256(p)} for p in files
        }
    }
    (Path(outdir) / "MANIFEST.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return {"files": len(files)}
