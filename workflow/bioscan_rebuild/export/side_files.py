"""The release's side files (``layout.SIDE_FILES``), from earlier stages' tables rather than the released rows.

``rejects.csv`` (every rejected input of every stage, one table), ``changes.csv`` (the curation log),
``bbox.tsv`` (released records), ``barcodes.fasta``, ``split_summary.csv`` and ``records_lineage.csv`` (each
released record's source batch, file, line and file sha256, for auditors).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from bioscan_rebuild.core.errors import InputError
from bioscan_rebuild.core.io import check_listed, csv_header, read_table
from bioscan_rebuild.core.rejects import with_sources
from bioscan_rebuild.core.schemas import IMAGE_PACKAGES, INGESTED_SCHEMA, LINEAGE_FIELDS, REJECT_SCHEMA, processid_keys
from bioscan_rebuild.export.diff import previous_version
from bioscan_rebuild.export.layout import (
    BARCODE_QC,
    BARCODE_QC_PARQUET,
    BARCODES_FASTA,
    BBOX,
    BOX_CORRECTION_OUTCOMES,
    CHANGES,
    CORRECTION_OUTCOMES,
    CSV_PATH,
    MANIFEST,
    RECORDS_LINEAGE,
    RECORDS_LINEAGE_PARQUET,
    REJECTS,
    ROOT,
    SPLIT_HISTORY,
    SPLIT_SUMMARY,
)
from bioscan_rebuild.metadata.barcodes import QC_SCHEMA
from bioscan_rebuild.splits.csv_text import CsvText, missing_as_null
from bioscan_rebuild.splits.protocol import barcode_digest
from bioscan_rebuild.splits.stage import HELD_KEYS, read_freeze_with_barcodes

IMAGE_SOURCE = ("image_batch", "image_path", "image_sha256")


def _released_ids(splits_path) -> pd.Index:
    return pd.Index(pq.read_table(splits_path, columns=["processid"])["processid"].to_numpy(zero_copy_only=False))


# Per released record: where it came from (export row, source photo), what made its images (the detector or a
# maintainer's box, the detector's version and parameter hash, the image parameters' hash, the store key), the
# released images' sha256, and the changes applied to it (``rule:field`` of its changes.csv rows, in order).
LINEAGE_FIELDS_OUT = ("processid", *LINEAGE_FIELDS)
IMAGE_LINEAGE = (
    "box_source",  # detector, or correction: a maintainer's box (images.box_corrections) made the crop
    "detector",
    "detector_version",
    "detector_params_key",
    "image_params_key",
    "params_key",
    *(f"sha256_{package}" for package in IMAGE_PACKAGES),
)
LINEAGE_SCHEMA = pa.schema(
    [INGESTED_SCHEMA.field(f) for f in LINEAGE_FIELDS_OUT]
    + [INGESTED_SCHEMA.field("nucleotides").with_name("raw_nucleotides"), INGESTED_SCHEMA.field("marker_code")]
    + [INGESTED_SCHEMA.field(f) for f in ("image_batch", "image_path", "image_sha256")]
    + [pa.field(name, pa.string()) for name in IMAGE_LINEAGE]
    + [pa.field("changes", pa.string())]
)


def _change_ids(changes_path) -> pd.Series:
    """processid -> "rule:field;..." of every change logged for it, in order. By rule, not by step number: the
    numbers count the steps that changed anything, so another delivery renumbered records it never touched."""
    ids = change_ids(pq.read_table(changes_path, columns=["processid", "field", "rule"]))
    return pd.Series(
        ids["changes"].to_numpy(zero_copy_only=False), index=ids["processid"].to_numpy(zero_copy_only=False)
    )


def change_ids(changes: pa.Table) -> pa.Table:
    """The lineage's ``changes`` of each record of a changes table (processid, field, rule; in the table's order):
    a table of processid and "rule:field;...", one row per record with a change. The audit makes them again from
    ``changes.csv`` with it. In Arrow: a full release logs millions of changes."""
    rule, field = (pc.fill_null(changes[name].cast(pa.large_string()), "None") for name in ("rule", "field"))
    ids = pc.binary_join_element_wise(rule, field, pa.scalar(":", pa.large_string()))
    # one thread: each record's list keeps the log's order
    grouped = (
        pa.table({"processid": changes["processid"], "change": ids})
        .group_by("processid", use_threads=False)
        .aggregate([("change", "list")])
    )
    joined = pc.binary_join(grouped["change_list"], pa.scalar(";", pa.large_string()))
    return pa.table({"processid": grouped["processid"], "changes": joined})


def _lineage_parts(records, images, released: pd.Index, change_ids: pd.Series):
    by_shard = {Path(p).parent.name: p for p in images}
    for path in records:
        table = read_table(
            path, INGESTED_SCHEMA, columns=[*LINEAGE_FIELDS_OUT, "nucleotides", "marker_code", *IMAGE_SOURCE]
        )
        keep = released.get_indexer(table["processid"].to_numpy(zero_copy_only=False)) >= 0
        frame = table.filter(pa.array(keep)).to_pandas().rename(columns={"nucleotides": "raw_nucleotides"})
        image_path = by_shard.get(Path(path).parent.name)
        if image_path is not None:
            facts = pq.read_table(image_path, columns=["processid", *IMAGE_LINEAGE]).to_pandas()
            frame = frame.merge(facts, on="processid", how="left", validate="one_to_one")
        for name in IMAGE_LINEAGE:
            if name not in frame:
                frame[name] = None
        frame["changes"] = change_ids.reindex(frame["processid"].to_numpy()).to_numpy()
        yield pa.Table.from_pandas(frame[LINEAGE_SCHEMA.names], schema=LINEAGE_SCHEMA, preserve_index=False)


HISTORY_SCHEMA = pa.schema(
    [
        ("processid", pa.string()),
        ("split", pa.string()),
        ("last_version", pa.string()),
        ("barcode_key", pa.string()),
        (HELD_KEYS, pa.string()),
    ]
)


def previous_splits(previous) -> Path:
    """The file a release following ``previous`` freezes its splits from: its split history, or, for a release
    from before there was one, its metadata CSV (both checked against its manifest by whoever reads them)."""
    history = Path(previous) / ROOT / SPLIT_HISTORY.path
    return history if history.is_file() else Path(previous) / ROOT / CSV_PATH


def split_history(splits_path, version: str, previous=None, frozen=None) -> pa.Table:
    """Every record any version has released: this one's (processid, split, ``version``) and, for records this
    version leaves out, the previous release's history (its records, for one without a history; or the table the
    splits were frozen from, ``splits.freeze``, where no previous release is named), so that a
    record left out of one version (a photo late, a delivery withdrawn) is frozen to its split when it returns
    instead of drawn again, perhaps into train from test. Each keeps its ``barcode_key`` (md5 of the strip
    barcode), so that while it is gone its barcode still pins the records that carry it (``assign_splits``), and
    in ``held_barcode_keys`` the keys of the barcodes an earlier version released it with that it carries no more
    (failed by QC, or corrected), which pin all the same, in every later version. Sorted by processid."""
    has_keys = "barcode_key" in pq.read_schema(splits_path).names  # a split table from before there were keys: none
    now = pq.read_table(splits_path, columns=["processid", "split", *(["barcode_key"] if has_keys else [])])
    now = pa.table(
        {
            "processid": now["processid"],
            "split": now["split"],
            "last_version": pa.array([str(version)] * now.num_rows, pa.string()),
            "barcode_key": now["barcode_key"] if has_keys else pa.nulls(now.num_rows, pa.string()),
            HELD_KEYS: pa.nulls(now.num_rows, pa.string()),
        },
        schema=HISTORY_SCHEMA,
    )
    parts = [now]
    if previous is not None and frozen is not None:
        raise InputError("a release follows one earlier release: give --previous or --freeze, not both")
    before = None
    if previous is not None:
        source = previous_splits(previous)
        if (Path(previous) / MANIFEST).is_file():
            check_listed(Path(previous) / MANIFEST, source)
        header = csv_header(source)
        before = pacsv.read_csv(
            source,
            convert_options=pacsv.ConvertOptions(
                column_types={name: pa.string() for name in HISTORY_SCHEMA.names},
                include_columns=HISTORY_SCHEMA.names,
                include_missing_columns=True,
                null_values=[""],
                strings_can_be_null=True,
            ),
        )
    elif frozen is not None:
        before = _frozen_history(frozen)
    if before is not None:
        before_keys = pd.Index(processid_keys(before["processid"].to_numpy(zero_copy_only=False)))
        now_keys = pd.Index(processid_keys(now["processid"].to_numpy(zero_copy_only=False)))
        gone = ~before_keys.isin(now_keys)
        if previous is not None and "last_version" not in header:  # a release from before there was a history
            version_before = previous_version(Path(previous))
            before = before.set_column(2, "last_version", pa.array([version_before] * before.num_rows, pa.string()))
            # every record's key where this version has keys, to find the records whose barcode changed since
            marked = np.ones(before.num_rows, bool) if has_keys else gone
            before = before.set_column(3, "barcode_key", _barcode_keys(source, marked))
        if has_keys:
            now = now.set_column(4, HELD_KEYS, _held_keys(now, now_keys, before, before_keys))
        parts = [now, before.filter(pa.array(gone)).cast(HISTORY_SCHEMA)]
    history = pa.concat_tables(parts)
    return history.take(pa.array(np.argsort(history["processid"].to_numpy(zero_copy_only=False), kind="stable")))


def _frozen_history(path) -> pa.Table:
    """The table a build's splits were frozen from (``splits.freeze``) as a history, read as the split stage reads
    it (``read_freeze_with_barcodes``: plain or compressed; ``NA`` and the other missing-value words are no key;
    the barcode keys made from a ``dna_barcode`` column where it has no ``barcode_key``). Its ``last_version``
    where it has one (a split history), else none; a row with a blank processid names no record and is left out."""
    split, keys, held = read_freeze_with_barcodes(path)
    source = CsvText(path, "a freeze table (processid, split)")
    versions = pa.nulls(len(split), pa.string())
    if "last_version" in source.columns:
        cells = [missing_as_null(batch.column(0)).cast(pa.string()) for batch in source.batches(["last_version"])]
        versions = pa.concat_arrays(cells) if cells else versions

    def column(series) -> pa.Array:
        if series is None:
            return pa.nulls(len(split), pa.string())
        return pa.array(series.astype(object).where(series.notna(), None).tolist(), pa.string())

    table = pa.table(
        {
            "processid": pa.array(split.index.astype(str).tolist(), pa.string()),
            "split": pa.array(split.to_numpy(dtype=object).tolist(), pa.string()),
            "last_version": versions,
            "barcode_key": column(keys),
            HELD_KEYS: column(held),
        },
        schema=HISTORY_SCHEMA,
    )
    return table.filter(pc.not_equal(pc.utf8_trim_whitespace(table["processid"]), ""))


def _held_keys(now: pa.Table, now_keys: pd.Index, before: pa.Table, before_keys: pd.Index) -> pa.Array:
    """Per record of this version, the keys of the barcodes earlier versions released it with that it no longer
    carries (the previous history's ``barcode_key`` and ``held_barcode_keys``, less its own key now): sorted,
    space-separated, or missing (nearly every record)."""
    held = [None] * now.num_rows
    if not len(before_keys) or not before_keys.is_unique:  # a history holds each record once (the audit checks)
        return pa.array(held, pa.string())
    position = before_keys.get_indexer(now_keys)
    rows = np.flatnonzero(position >= 0)
    taken = pa.array(position[rows], pa.int64())
    was, kept = before["barcode_key"].take(taken), before[HELD_KEYS].take(taken)
    current = now["barcode_key"].take(pa.array(rows, pa.int64()))
    moved = pc.fill_null(pc.and_(pc.is_valid(was), pc.not_equal(was, pc.fill_null(current, ""))), True)
    moved = pc.and_(moved, pc.and_(pc.is_valid(was), pc.not_equal(was, "")))
    changed = pc.or_(pc.fill_null(moved, False), pc.is_valid(kept)).to_numpy(zero_copy_only=False)
    for i in np.flatnonzero(changed).tolist():
        keys = set((kept[i].as_py() or "").split()) | {was[i].as_py() or ""}
        keys -= {"", current[i].as_py()}
        held[int(rows[i])] = " ".join(sorted(keys)) or None
    return pa.array(held, pa.string())


def _barcode_keys(csv_path: Path, marked: np.ndarray) -> pa.Array:
    """Per row of a release's metadata CSV, the ``barcode_digest`` of its ``dna_barcode`` where ``marked``, else
    missing; read a block at a time (its 5.15M barcodes are 3.4 GB)."""
    if not marked.any():
        return pa.nulls(len(marked), pa.string())
    reader = pacsv.open_csv(
        csv_path,
        convert_options=pacsv.ConvertOptions(
            column_types={"dna_barcode": pa.string()},
            include_columns=["dna_barcode"],
            include_missing_columns=True,
            null_values=[""],
            strings_can_be_null=True,
        ),
    )
    keys, done = [], 0
    for batch in reader:
        wanted = marked[done : done + batch.num_rows]
        done += batch.num_rows
        if wanted.all():
            keys.append(barcode_digest(batch.column(0)))
            continue
        cells = np.full(batch.num_rows, None, dtype=object)
        rows = np.flatnonzero(wanted)
        if rows.size:
            cells[rows] = barcode_digest(batch.column(0).take(pa.array(rows))).to_pylist()
        keys.append(pa.array(cells, pa.string()))
    return pa.concat_arrays(keys) if keys else pa.array([], pa.string())


def write_side_files(
    tmp: Path,
    *,
    rejects,
    changes,
    bbox,
    fasta,
    split_summary,
    records,
    splits,
    images=(),
    barcodes=(),
    corrections=None,
    box_corrections=None,
    version: str = "",
    previous=None,
    frozen=None,
) -> dict:
    """Write the derived side files into ``tmp``: path under the release root -> file to copy there.
    ``corrections``, ``box_corrections``: the outcome tables of the maintainers' corrections, shipped as they are.
    ``version``, ``previous``, ``frozen``: this release's version, the previous release's folder and the table
    its splits were frozen from (``split_history``)."""
    released = _released_ids(splits)

    def staged(file) -> Path:
        return tmp / Path(file.path).name

    all_rejects = with_sources(pa.concat_tables(read_table(p, REJECT_SCHEMA) for p in rejects), records)
    pacsv.write_csv(all_rejects, staged(REJECTS))
    pacsv.write_csv(pq.read_table(changes), staged(CHANGES))
    pacsv.write_csv(split_history(splits, version, previous, frozen), staged(SPLIT_HISTORY))
    if bbox:
        table = pd.concat(pd.read_csv(p, sep="\t", dtype=str, keep_default_na=False) for p in bbox)
        table[table["processid"].isin(released)].to_csv(staged(BBOX), sep="\t", index=False, lineterminator="\n")
    change_ids = _change_ids(changes)
    with (
        pacsv.CSVWriter(staged(RECORDS_LINEAGE), LINEAGE_SCHEMA) as csv_out,
        pq.ParquetWriter(staged(RECORDS_LINEAGE_PARQUET), LINEAGE_SCHEMA, compression="zstd") as parquet_out,
    ):
        for table in _lineage_parts(records, images, released, change_ids):  # shard by shard: bounded memory
            csv_out.write_table(table)
            parquet_out.write_table(table)
    qc_columns = list(QC_SCHEMA.names)
    with (
        pacsv.CSVWriter(staged(BARCODE_QC), QC_SCHEMA) as csv_out,
        pq.ParquetWriter(staged(BARCODE_QC_PARQUET), QC_SCHEMA, compression="zstd") as parquet_out,
    ):
        for path in barcodes:
            table = read_table(path, QC_SCHEMA, columns=qc_columns)
            keep = released.get_indexer(table["processid"].to_numpy(zero_copy_only=False)) >= 0
            table = table.filter(pa.array(keep))
            csv_out.write_table(table)
            parquet_out.write_table(table)
    files = {
        f.path: staged(f)
        for f in (
            REJECTS,
            CHANGES,
            SPLIT_HISTORY,
            RECORDS_LINEAGE,
            RECORDS_LINEAGE_PARQUET,
            BARCODE_QC,
            BARCODE_QC_PARQUET,
        )
    }
    if bbox:
        files[BBOX.path] = staged(BBOX)
    if fasta:
        files[BARCODES_FASTA.path] = Path(fasta)
    if split_summary:
        files[SPLIT_SUMMARY.path] = Path(split_summary)
    for file, source in ((CORRECTION_OUTCOMES, corrections), (BOX_CORRECTION_OUTCOMES, box_corrections)):
        if source:  # a copy of the build's own file, as the audit checks by its sha256
            files[file.path] = Path(source)
    return files
