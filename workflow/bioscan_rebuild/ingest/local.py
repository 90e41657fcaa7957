"""The whole ingest stage in one process, for small deliveries and checks outside Snakemake."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from bioscan_rebuild.core.params import IngestParams
from bioscan_rebuild.core.schemas import shard_name
from bioscan_rebuild.ingest.accounting import write_accounting
from bioscan_rebuild.ingest.inventory import inventory_shard, list_to_shards
from bioscan_rebuild.ingest.join import join_shard_files
from bioscan_rebuild.ingest.parse import parse_to_shards


def ingest_local(
    exports,
    image_dirs,
    outdir,
    *,
    shards: int = 1,
    params: IngestParams | None = None,
    store=None,
    trim_end_n: bool = True,
) -> dict:
    """Run every ingest step in this process with the step functions the workflow's rules call,
    laid out as `workflow/rules/ingest.smk` lays out `results/ingest/`.

    Each export and each image folder is its own batch (`export-1`, `images-1`, ...), oldest
    first. Writes `outdir/shards/shard-NNN/records.parquet`, `outdir/accounting.json` and
    `outdir/rejects.parquet`; returns the accounting summary. `store` (an ImageStore) receives
    the usable originals, as in the workflow. With no image folders, records need no photo. ``trim_end_n``: the
    barcode step's (``barcodes.trim_end_n``): whether end Ns tell two copies of a record apart.
    """
    params = params or IngestParams()
    require_images = params.require_images and bool(image_dirs)
    outdir = Path(outdir)
    shard_names = [shard_name(s) for s in range(shards)]
    export_batches = [f"export-{i}" for i in range(1, len(exports) + 1)]
    image_batches = {f"images-{i}": image_dir for i, image_dir in enumerate(image_dirs, 1)}

    for batch, export in zip(export_batches, exports):
        parse_to_shards(
            export,
            batch,
            shards,
            outdir / "exports" / batch,
            missing_values=params.missing_values,
            markers=params.markers,
        )
    for batch, image_dir in image_batches.items():
        batch_dir = outdir / "images" / batch
        list_to_shards(image_dir, batch, shards, batch_dir, params.image_name_pattern)
        for shard in shard_names:
            inventory_shard(
                batch_dir / "listing" / f"{shard}.parquet",
                {batch: image_dir},
                batch_dir / "inventory" / f"{shard}.parquet",
                store,
            )
    for shard in shard_names:
        join_shard_files(
            [outdir / "exports" / batch / "records" / f"{shard}.parquet" for batch in export_batches],
            [outdir / "images" / batch / "inventory" / f"{shard}.parquet" for batch in image_batches],
            [*export_batches, *image_batches],
            outdir / "shards" / shard,
            rejected_key_paths=[
                outdir / "exports" / batch / "rejected_keys" / f"{shard}.parquet" for batch in export_batches
            ],
            duplicate_policy=params.duplicate_policy,
            markers=params.markers,
            require_images=require_images,
            trim_end_n=trim_end_n,
        )
    # an earlier run into the same folder left its own shards and batches: the next steps would read them beside
    # this run's (two runs' records, under an accounting of one). Removed once this run's are written, and only
    # what this layout writes (a folder holding an input, a delivery's photos say, is never touched)
    inputs = [*exports, *image_dirs]
    _remove_others(outdir / "shards", "shard-*", shard_names, "accounting.json", inputs)
    _remove_others(outdir / "exports", "export-*", export_batches, "summary.json", inputs)
    _remove_others(outdir / "images", "images-*", image_batches, "summary.json", inputs)
    return write_accounting(
        [outdir / "exports" / batch / "summary.json" for batch in export_batches],
        [outdir / "images" / batch / "summary.json" for batch in image_batches],
        [outdir / "shards" / shard / "accounting.json" for shard in shard_names],
        [outdir / "exports" / batch / "rejects.parquet" for batch in export_batches]
        + [outdir / "images" / batch / "rejects.parquet" for batch in image_batches]
        + [outdir / "shards" / shard / "rejects.parquet" for shard in shard_names],
        outdir / "accounting.json",
        outdir / "rejects.parquet",
    )


def _remove_others(folder: Path, pattern: str, kept, written: str, inputs) -> None:
    """The folders under ``folder`` named as this layout names them (``pattern``) that this run does not write, that
    hold the file this layout writes there (``written``) and that neither are nor hold an input."""

    def holds_an_input(where: str, given: list[str]) -> bool:  # is one, or holds one (not: lies inside one)
        return any(os.path.commonpath([where, path]) == where for path in given)

    resolved = [os.path.realpath(path) for path in inputs]
    as_named = [os.path.abspath(path) for path in inputs]  # an input named through a link
    for stale in sorted(folder.glob(pattern)) if folder.is_dir() else ():
        if not stale.is_dir() or stale.name in kept or not (stale / written).is_file():
            continue
        if holds_an_input(os.path.abspath(stale), as_named) or holds_an_input(os.path.realpath(stale), resolved):
            continue
        if stale.is_symlink():  # a link to another folder: the link goes, never what it points to
            stale.unlink()
        else:
            shutil.rmtree(stale)
