"""The statistics stage: a release's metadata table (or the workflow tables a release is built from) -> the
statistics tables as CSV, ``stats.json`` and the figures.

- :func:`read_release_table`: a release folder's metadata (its Parquet, else its CSV), the columns the statistics
  read (``compute.STAT_COLUMNS``).
- :func:`read_workflow_table`: the same rows built from the export stage's inputs (curated labels, barcode shards,
  splits, image results) with the export's own row builder, in release order, for the workflow, which computes
  the statistics before the release that ships them. It keeps label columns dictionary-encoded and leaves the
  barcodes in their shard files (``genetics.ShardBarcodes``): at BIOSCAN-5M size a 0.7 GB table, 2.5 GB peak
  (``bench/stats.py --workflow``), where the barcodes alone are 3.4 GB.
- :func:`write_stats`: ``{name}.csv`` per table, ``stats.json``, then ``figures/`` (``stats.figures``).
- :func:`run_stats`: the three for a release folder.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from bioscan_rebuild.core.errors import InputError
from bioscan_rebuild.core.io import atomic_path
from bioscan_rebuild.core.schemas import RANKS, SPLITS, STATS_FILES_KEY, STATS_JSON
from bioscan_rebuild.export.layout import CSV_PATH, PARQUET_DIR, ROOT
from bioscan_rebuild.export.spool import SPOOL_SCHEMA, check_same_shard, shard_release_rows
from bioscan_rebuild.stats.compute import LABEL_COLUMNS, SIZE_FIELDS, STAT_COLUMNS, compute_stats, summary
from bioscan_rebuild.stats.genetics import (
    FILES_METADATA,
    KEY_COLUMN,
    ROW_COLUMN,
    SHARD_COLUMN,
    barcode_keys,
    shard_barcode_schema,
)

NUMERIC_COLUMNS = ("coord-lat", "coord-lon", *SIZE_FIELDS)
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
            # only an empty field is missing (pyarrow's default list has "NA", "null"...: text in the Parquet copy)
            include_columns=list(STAT_COLUMNS),
            column_types=types,
            strings_can_be_null=True,
            null_values=[""],
        ),
    )


# What ``export.spool.shard_release_rows`` reads of the curated and split tables: the columns the statistics use
# are read; the others it needs are cheap stand-ins (they only fill release columns the statistics never read).
CURATED_LABELS = (*RANKS, "dna_bin", "country", "province_state")
CURATED_READ = ("processid", *CURATED_LABELS, "lat", "lon", "inferred_ranks", "placeholder_species")
CURATED_STAND_INS = ("sampleid", "taxon")


def workflow_schema(*, with_barcodes: bool = False) -> pa.Schema:
    """The columns :func:`read_workflow_table` returns, in ``compute.STAT_COLUMNS`` order: label columns
    dictionary-encoded, numbers as the release has them; ``dna_barcode`` itself, or (default) the three columns
    that stand for it (``genetics.shard_barcode_schema``)."""
    fields = []
    for name in STAT_COLUMNS:
        if name in LABEL_COLUMNS:
            fields.append(pa.field(name, pa.dictionary(pa.int32(), pa.string())))
        elif name == "dna_barcode" and not with_barcodes:
            fields += list(shard_barcode_schema())
        else:
            fields.append(SPOOL_SCHEMA.field(name))
    return pa.schema(fields)


def read_workflow_table(curated, barcodes, splits, images=None, *, with_barcodes: bool = False) -> pa.Table:
    """The statistics' columns of the rows a release built from these export-stage inputs would hold, in its
    order (split, then shard, then the shard's order): ``curated`` (curated.parquet), ``barcodes`` (one
    barcode table per shard), ``splits`` (splits.parquet), ``images`` (the image results per shard, aligned with
    ``barcodes``; none: size fields missing). Rows are built by the export's own ``shard_release_rows``, one
    shard at a time; each shard's label columns are dictionary-encoded before they are kept.

    The barcodes stay in their files (``with_barcodes`` false, the default): the table holds per row the
    barcode's key and where it lies (``genetics.ShardBarcodes``; the files are listed in the schema metadata),
    and ``compute.compute_stats`` reads back only the sampled rows; the statistics are the same as from the
    barcodes themselves (``with_barcodes``: the ``dna_barcode`` column, 3.4 GB at BIOSCAN-5M size)."""
    barcodes = list(barcodes)
    images = list(images) if images else [None] * len(barcodes)
    if len(images) != len(barcodes):
        raise InputError(f"{len(barcodes)} barcode shards but {len(images)} image tables: give one per shard")
    schema = workflow_schema(with_barcodes=with_barcodes)
    if not with_barcodes:
        files = [str(Path(path).absolute()) for path in barcodes]  # the statistics read them back later
        schema = schema.with_metadata({FILES_METADATA: json.dumps(files)})
    curated_table, split_table = _released_labels(curated, splits)  # one index (hash table) for both
    per_split: dict[str, list[pa.Table]] = {split: [] for split in SPLITS}
    released_ids = []  # each shard's released records, to check that every one is held once
    for number, (barcode_path, image_path) in enumerate(zip(barcodes, images)):
        shard_barcodes = pq.read_table(barcode_path, columns=["processid", "dna_barcode"])
        shard_images = pq.read_table(image_path).to_pandas().set_index("processid") if image_path else None
        if shard_images is not None:  # in another order: every size field silently missing
            check_same_shard(shard_images.index, shard_barcodes["processid"], image_path, barcode_path)
        rows = shard_release_rows(curated_table, shard_barcodes, split_table, shard_images)
        del shard_images
        # the file's rows it kept, in order: those of a released record, the records of its rows
        ids = shard_barcodes["processid"].cast(pa.string())
        kept = np.flatnonzero(pc.is_in(ids, value_set=rows["processid"].combine_chunks()).to_numpy())
        del shard_barcodes, ids
        if len(kept) != rows.num_rows:
            raise RuntimeError(f"{barcode_path}: the export kept {rows.num_rows} rows, not the {len(kept)} expected")
        released_ids.append(rows["processid"].combine_chunks().cast(pa.string()))
        rows = _stat_rows(rows, schema, number, kept)
        split_of_row = rows["split"].to_numpy(zero_copy_only=False)
        for split in SPLITS:  # per shard, so only one shard's rows are ever copied
            part = rows.filter(pa.array(split_of_row == split))
            if part.num_rows:
                per_split[split].append(part)
    released = len(split_table)
    del curated_table, split_table
    parts = [part for split in SPLITS for part in per_split[split]]
    ids = pa.chunked_array(released_ids, pa.string())
    held, distinct = len(ids), len(pc.unique(ids))
    # one shard of two gave the figures of half the release, exit 0; a shard given twice counted its records twice
    if held != released or distinct != held:
        raise InputError(
            f"the barcode shards given hold {distinct} of the {released} released records, {held - distinct} rows "
            "more than once: give every shard once"
        )
    return pa.concat_tables(parts) if parts else schema.empty_table()


def _released_labels(curated, splits) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The curated table (the columns of :data:`CURATED_READ`, label columns categorical, stand-ins for the rest)
    and the split table (``split``; ``chunk`` left empty) of the records a release holds: in both tables and in a
    published split. Both are indexed by one and the same processid index, in curated order."""
    curated_columns = pq.read_schema(curated).names
    missing = [name for name in (*CURATED_READ, *CURATED_STAND_INS) if name not in curated_columns]
    if missing:
        raise InputError(f"{curated}: not a curated table (no column {', '.join(missing)})")
    missing = [name for name in ("processid", "split") if name not in pq.read_schema(splits).names]
    if missing:
        raise InputError(f"{splits}: not a split table (no column {', '.join(missing)})")
    table = pq.read_table(curated, columns=list(CURATED_READ), read_dictionary=list(CURATED_LABELS))
    split_table = pq.read_table(splits, columns=["processid", "split"])
    split_ids = split_table["processid"].cast(pa.string()).combine_chunks()
    if pc.count_distinct(split_ids).as_py() != len(split_ids):
        raise InputError(f"{splits}: a processid appears more than once")
    # per curated record: its row in the split table (null: no split, it is not released)
    position = pc.index_in(table["processid"].cast(pa.string()), value_set=split_ids)
    del split_ids
    if split_table.num_rows:
        split_of = split_table["split"].cast(pa.string()).take(position.fill_null(0))
    else:
        split_of = pa.chunked_array([pa.nulls(table.num_rows, pa.string())])
    released = pc.and_(pc.is_valid(position), pc.is_in(split_of, value_set=pa.array(SPLITS))).fill_null(False)
    del position, split_table
    table, split_of = table.filter(released), split_of.filter(released)
    index = pd.Index(table["processid"].to_pandas())
    frame = table.drop_columns(["processid", *CURATED_LABELS]).to_pandas()
    frame.index = index
    for name in CURATED_LABELS:
        frame[name] = _categorical(table[name])
    del table
    for name in CURATED_STAND_INS:  # all missing, one byte a row
        frame[name] = pd.Categorical.from_codes(np.full(len(frame), -1, dtype=np.int8), categories=[])
    # split names as Python objects shared by every row (the export takes them per shard, ``to_numpy(object)``:
    # an object column gives them without a copy of the whole column)
    encoded = pc.dictionary_encode(split_of).combine_chunks()
    names = np.asarray(encoded.dictionary.to_pylist(), dtype=object)
    split_values = names[encoded.indices.to_numpy(zero_copy_only=False)] if len(encoded) else names[:0]
    split_frame = pd.DataFrame(
        {
            "split": pd.Series(split_values, index=index, dtype=object),
            "chunk": pd.Series(np.full(len(index), None, dtype=object), index=index, dtype=object),
        }
    )
    if frame.index is not index or split_frame.index is not index:
        raise AssertionError("the curated and split tables should share their index")
    return frame, split_frame


def _categorical(column: pa.ChunkedArray) -> pd.Categorical:
    """A dictionary column as a categorical with Python-object categories: the export takes each shard's labels
    ``astype(object)``, which with Arrow-backed categories would convert every category (324,411 BINs) per shard."""
    column = pa.table({"labels": column}).unify_dictionaries()["labels"]
    if not pa.types.is_dictionary(column.type):
        column = column.dictionary_encode()
    chunks = [chunk for chunk in column.chunks if len(chunk)]
    names = chunks[0].dictionary.to_pylist() if chunks else []
    codes = np.concatenate([chunk.indices.fill_null(-1).to_numpy(zero_copy_only=False) for chunk in chunks] or [[]])
    return pd.Categorical.from_codes(codes.astype(np.int32), categories=pd.Index(names, dtype=object))


def _stat_rows(rows: pa.Table, schema: pa.Schema, shard: int, kept: np.ndarray) -> pa.Table:
    """One shard's release rows cut to ``schema``: label columns dictionary-encoded and (unless the schema holds
    ``dna_barcode``) the barcodes as keys, this shard's number and the rows of its file."""
    columns = []
    for field in schema:
        if field.name in LABEL_COLUMNS:
            columns.append(pc.dictionary_encode(rows[field.name]).cast(field.type))
        elif field.name == KEY_COLUMN:
            columns.append(pa.array(barcode_keys(rows["dna_barcode"]), pa.uint64()))
        elif field.name == SHARD_COLUMN:
            columns.append(pa.array(np.full(len(kept), shard, dtype=np.int32)))
        elif field.name == ROW_COLUMN:
            columns.append(pa.array(kept.astype(np.int64)))
        else:
            columns.append(rows[field.name].cast(field.type))
    return pa.Table.from_arrays(columns, schema=schema)


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
    if figures:
        from bioscan_rebuild.stats.figures import draw_figures  # matplotlib: only when figures are drawn

        for figure in draw_figures(tables, summary_data, outdir / FIGURES_DIR):
            written[f"{FIGURES_DIR}/{Path(figure).name}"] = Path(figure)
    # written last, naming what this run wrote: a release ships those, never a file an older run left beside them
    files = sorted(path.relative_to(outdir).as_posix() for path in written.values())
    path = outdir / STATS_JSON
    text = json.dumps({**summary_data, STATS_FILES_KEY: files}, indent=1, sort_keys=True, allow_nan=False)
    _write_text(path, text + "\n")
    written["stats"] = path
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
