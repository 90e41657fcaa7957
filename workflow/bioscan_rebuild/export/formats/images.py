"""``images``: the four image packages as folders (layout.image_relpath), the images Parquet
(layout.IMAGES_PARQUET_DIR) and, with ``zip_packages``, the folders zipped as published (layout.ZIP_DIR)."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pandas as pd
import pyarrow as pa

from bioscan_rebuild.core.io import clone_file
from bioscan_rebuild.core.params import ExportOptions
from bioscan_rebuild.core.schemas import IMAGE_PACKAGES, SPLITS
from bioscan_rebuild.export.formats.base import ExportContext, Format
from bioscan_rebuild.export.formats.parquet import ShardedParquet
from bioscan_rebuild.export.layout import (
    IMAGES_DIR,
    IMAGES_PARQUET_DIR,
    ROOT,
    ZIP_DIR,
    ZIP_GROUPS,
    image_relpath,
    zip_name,
)
from bioscan_rebuild.export.spool import IMAGE_KEYS, derived_image_path, iter_split, read_derived_image


def _place(source: Path, target: Path) -> None:
    """A released image is its own file (a reflink or a copy of the store's), never a hard link: editing it
    must not edit the store, nor the store the release."""
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists():
        target.unlink()
    clone_file(source, target)


def write_image_folders(spool: Path, root: Path, store_root: Path, options: ExportOptions) -> dict:
    """Every package's JPEGs under ``root``, cloned (or copied) from the store: package -> files placed."""
    placed = dict.fromkeys(IMAGE_PACKAGES, 0)
    for split in SPLITS:
        for table in iter_split(spool, split):
            for row in table.select(["processid", "chunk", *IMAGE_KEYS]).to_pylist():
                for package in IMAGE_PACKAGES:
                    source = derived_image_path(store_root, row, package)
                    if source is None:
                        continue
                    _place(source, root / image_relpath(package, split, row["chunk"], row["processid"]))
                    placed[package] += 1
    return placed


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
                    data = read_derived_image(store_root, row, package)
                    path = image_relpath(package, split, row["chunk"], row["processid"])
                    images.append(None if data is None else {"bytes": data, "path": path})
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


def _zip_parts(root: Path, package: str, group: str, splits, pretrain_parts: int) -> dict[str, list[Path]]:
    """Archive name -> its files. Pretrain is cut into ``pretrain_parts`` by chunk, i.e. by the first two hex
    digits of md5(processid): part k (1-based, named ``.01``, ``.02`` ... as published) holds the chunks c with
    int(c, 16) * parts // 256 == k - 1."""
    folders = [root / IMAGES_DIR / package / split for split in splits]
    files = sorted(p for folder in folders for p in folder.rglob("*.jpg") if p.is_file())
    if group != "pretrain" or pretrain_parts <= 1:
        return {zip_name(package, group): files}
    from bioscan_rebuild.splits.protocol import chunk_of

    width = max(2, len(str(pretrain_parts)))
    chunks = chunk_of(pd.Series([p.stem for p in files], dtype=object), pd.Series(["pretrain"] * len(files)))
    parts: dict[str, list[Path]] = {}
    for path, chunk in zip(files, chunks, strict=True):  # the chunk rule on the processid, whatever the folder
        part = int(chunk, 16) * pretrain_parts // 256 + 1
        parts.setdefault(zip_name(package, group, f"{part:0{width}d}"), []).append(path)
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
    target.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(target, "w", zipfile.ZIP_STORED) as archive:
        for path in files:
            info = zipfile.ZipInfo(f"{ROOT}/{path.relative_to(root).as_posix()}", date_time=(1980, 1, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16
            archive.writestr(info, path.read_bytes())


def _write(context: ExportContext) -> dict:
    options = context.options
    summary = {"images": write_image_folders(context.spool, context.root, context.store, options)}
    write_images_parquet(context.spool, context.root / IMAGES_PARQUET_DIR, context.store, options)
    if options.zip_packages:
        summary["zips"] = write_zip_packages(context.root, context.outdir / ZIP_DIR, options.zip_pretrain_parts)
    return summary


FORMAT = Format("images", _write, needs_images=True)
