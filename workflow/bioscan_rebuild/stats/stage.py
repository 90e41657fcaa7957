"""The statistics stage: a release's metadata table (or the workflow tables a release is built from) -> the
statistics tables as CSV, ``stats.json`` and the figures.

- :func:`read_release_table`: a release folder's metadata (its Parquet, else its CSV), the columns the statistics
  read (``compute.STAT_COLUMNS``).
- :func:`read_workflow_table`: the same rows built from the export stage's inputs (curated labels, barcode shards,
  splits, image results) with the export's own row builder, in release order, for the workflow, which computes
  the statistics before the release that ships them.
- :func:`write_stats`: ``{name}.csv`` per table, ``stats.json``, then ``figures/`` (``stats.figures``).
- :func:`run_stats`: the three for a release folder.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from bioscan_rebuild.core.errors import InputError
from bioscan_rebuild.core.io import atomic_path
from bioscan_rebuild.core.schemas import SPLITS
from bioscan_rebuild.export.layout import CSV_PATH, PARQUET_DIR, ROOT
from bioscan_rebuild.stats.compute import SIZE_FIELDS, STAT_COLUMNS, compute_stats, summary

NUMERIC_COLUMNS = ("coord-lat", "coord-lon", *SIZE_FIELDS)
STATS_JSON = "stats.json"
FIGURES_DIR = "figures"
# Fixed float text, so equal tables give byte-identical CSV files: 10 significant digits keep every coordinate
# and size value as written and every statistic to far more precision than it has.
FLOAT_FORMAT = "%.10g"


def release_root(release_dir) -> Path:
    """The folder holding ``metadata/``: ``release_dir/bioscan5m`` when there is one, else ``release_dir``."""
    release_dir = Path(release_dir)
    return release_dir / ROOT if (release_dir / ROOT).is_dir() else release_dir


def _parquet_order(path: Path) -> tuple[int, str]:
    """Release order: by split (published order), then file name (``{split}-{i:05d}-of-{n:05d}.parquet``)."""
    split = path.name.rsplit("-", 3)[0]
    return (SPLITS.index(split) if split in SPLITS else len(SPLITS), path.name)


def read_release_table(release_dir) -> pa.Table:
    """The statistics' columns of a release (``release_dir`` or its ``bioscan5m/`` folder): the metadata Parquet
    (``metadata/parquet/data/*.parquet``, in release order) when present, else the metadata CSV (text as
    strings, coordinates and size fields as numbers).

    The Parquet's dictionary-encoded label columns stay dictionary-encoded (``compute`` reads both kinds): as
    plain strings they would take about 0.9 GB more at BIOSCAN-5M size, beside the 3.4 GB of barcodes."""
    root = release_root(release_dir)
    files = sorted((root / PARQUET_DIR).glob("*.parquet"), key=_parquet_order)
    if files:
        parts = []
        for path in files:
            missing = [name for name in STAT_COLUMNS if name not in pq.read_schema(path).names]
            if missing:
                raise InputError(f"{path}: not a release metadata table (no column {', '.join(missing)})")
            parts.append(pq.read_table(path, columns=list(STAT_COLUMNS)))
        # one type per column (a file whose column holds no value may come back as another type)
        schema = pa.unify_schemas([part.schema for part in parts], promote_options="permissive")
        return pa.concat_tables([part.cast(schema) for part in parts])
    csv_path = root / CSV_PATH
    if not csv_path.is_file():
        raise InputError(
            f"{release_dir}: no release metadata ({ROOT}/{PARQUET_DIR}/*.parquet or {ROOT}/{CSV_PATH}): "
            "give the folder that holds the release"
        )
    with open(csv_path, encoding="utf-8", newline="") as handle:
        header = next(csv.reader(handle), [])  # the release quotes its header cells
    missing = [name for name in STAT_COLUMNS if name not in header]
    if missing:
        raise InputError(f"{csv_path}: not a release metadata table (no column {', '.join(missing)})")
    types = {name: pa.float64() if name in NUMERIC_COLUMNS else pa.string() for name in STAT_COLUMNS}
    return pacsv.read_csv(
        csv_path,
        read_options=pacsv.ReadOptions(block_size=64 << 20),
        convert_options=pacsv.ConvertOptions(
            include_columns=list(STAT_COLUMNS), column_types=types, strings_can_be_null=True
        ),
    )


def read_workflow_table(curated, barcodes, splits, images=None) -> pa.Table:
    """The statistics' columns of the rows a release built from these export-stage inputs would hold, in its
    order (split, then shard, then the shard's order): ``curated`` (curated.parquet), ``barcodes`` (one
    barcode table per shard), ``splits`` (splits.parquet), ``images`` (the image results per shard, aligned with
    ``barcodes``; none: size fields missing). Rows are built by the export's own ``shard_release_rows``."""
    from bioscan_rebuild.export.spool import shard_release_rows

    barcodes = list(barcodes)
    images = list(images) if images else [None] * len(barcodes)
    if len(images) != len(barcodes):
        raise InputError(f"{len(barcodes)} barcode shards but {len(images)} image tables: give one per shard")
    curated_table = pq.read_table(curated).to_pandas().set_index("processid")
    split_table = pq.read_table(splits).to_pandas().set_index("processid")
    per_split: dict[str, list[pa.Table]] = {split: [] for split in SPLITS}
    for barcode_path, image_path in zip(barcodes, images):
        shard_barcodes = pq.read_table(barcode_path, columns=["processid", "dna_barcode"])
        shard_images = pq.read_table(image_path).to_pandas().set_index("processid") if image_path else None
        rows = shard_release_rows(curated_table, shard_barcodes, split_table, shard_images)
        rows = rows.select(list(STAT_COLUMNS))
        split_of_row = rows["split"].to_numpy(zero_copy_only=False)
        for split in SPLITS:  # per shard, so only one shard's rows are ever copied
            part = rows.filter(pa.array(split_of_row == split))
            if part.num_rows:
                per_split[split].append(part)
    parts = [part for split in SPLITS for part in per_split[split]]
    if not parts:
        return rows.slice(0, 0) if barcodes else _empty_table()
    return pa.concat_tables(parts)


def _empty_table() -> pa.Table:
    types = {name: pa.float64() if name in NUMERIC_COLUMNS else pa.string() for name in STAT_COLUMNS}
    return pa.schema(list(types.items())).empty_table()


def _write_text(path: Path, text: str) -> None:
    with atomic_path(path) as temporary:
        temporary.write_text(text, encoding="utf-8")


def write_stats(
    tables: dict[str, pd.DataFrame], summary_data: dict, outdir, *, figures: bool = True
) -> dict[str, Path]:
    """Write each table as ``outdir/{name}.csv`` (fixed float format: equal tables give equal bytes) and
    ``outdir/stats.json``, then (unless ``figures`` is false) the figures under ``outdir/figures``
    (``stats.figures.draw_figures``).
    Returns what was written: table name (and ``stats``, ``figures/{file}``) -> path."""
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    written = {}
    for name, frame in tables.items():
        path = outdir / f"{name}.csv"
        _write_text(path, frame.to_csv(index=False, lineterminator="\n", float_format=FLOAT_FORMAT))
        written[name] = path
    path = outdir / STATS_JSON
    _write_text(path, json.dumps(summary_data, indent=1, sort_keys=True, allow_nan=False) + "\n")
    written["stats"] = path
    if not figures:
        return written
    from bioscan_rebuild.stats.figures import draw_figures  # matplotlib: only when figures are drawn

    for figure in draw_figures(tables, summary_data, outdir / FIGURES_DIR):
        written[f"{FIGURES_DIR}/{Path(figure).name}"] = Path(figure)
    return written


def stats_of_table(
    table: pa.Table, outdir, *, seed: int = 0, pairs_per_comparison: int = 2000, figures: bool = True
) -> dict:
    """Compute and write (:func:`write_stats`) the statistics of a release-columns ``table``; returns the
    summary."""
    tables = compute_stats(table, seed=seed, pairs_per_comparison=pairs_per_comparison)
    summary_data = summary(tables, table)
    write_stats(tables, summary_data, outdir, figures=figures)
    return summary_data


def run_stats(release_dir, outdir, seed: int = 0, *, pairs_per_comparison: int = 2000, figures: bool = True) -> dict:
    """The statistics of the release in ``release_dir`` written to ``outdir`` (:func:`write_stats`); returns the
    summary (what ``stats.json`` holds)."""
    table = read_release_table(release_dir)
    return stats_of_table(table, outdir, seed=seed, pairs_per_comparison=pairs_per_comparison, figures=figures)
