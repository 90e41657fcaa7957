"""Split stage: curated labels + cleaned barcodes -> the split of every record (the protocol itself:
``splits.protocol``).

- ``split_tables``: the workflow's step (rule assign_splits, ``workflow/rules/splits.smk``), on the metadata
  stage's tables; photos without a specimen leave the release here.
- ``split_csv``: the ``bioscan-rebuild split`` command, on any metadata CSV.
- ``read_freeze``: the previous release's splits (a frozen rebuild), as both read them.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from itertools import count
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from bioscan_rebuild.core.errors import InputError
from bioscan_rebuild.core.io import write_table
from bioscan_rebuild.core.schemas import SPLITS, USABLE_IMAGE_STATUSES, make_rejects, processid_keys, repeated_values
from bioscan_rebuild.splits.csv_text import (
    CsvText,
    csv_writer,
    is_missing,
    missing_as_null,
    render_header,
    render_lines,
)
from bioscan_rebuild.splits.protocol import (
    PRETRAIN,
    REQUIRED_COLUMNS,
    assign_splits,
    barcode_digest,
    check_tie_order,
    chunk_names,
    chunk_of,
    held_digests,
    split_summary,
    strip_end_n,
)

# the split history's column of barcodes a record was released with in earlier versions and carries no more
HELD_KEYS = "held_barcode_keys"


def read_freeze(path) -> pd.Series:
    """A previous release's splits (CSV with processid and split; other columns are ignored) as
    ``assign_splits`` takes them: split names indexed by processid. Cells are raw strings: ``NA`` is a
    processid, not a missing value."""
    return read_freeze_with_barcodes(path, barcodes=False)[0]


def read_freeze_with_barcodes(path, barcodes: bool = True) -> tuple[pd.Series, pd.Series | None, pd.Series | None]:
    """``read_freeze``'s splits and, aligned with them, each frozen record's ``barcode_digest`` (an Arrow-backed
    string Series): the split history's ``barcode_key`` column, or the digests of a metadata CSV's ``dna_barcode``,
    hashed batch by batch (5.15M barcodes are 3.4 GB); None when the file has neither. Third, the split history's
    ``held_barcode_keys``: the barcodes each record was released with in an earlier version and carries no more,
    space-separated; None where the file has none. One pass over the file (``barcodes``: False reads the splits
    alone)."""
    source = CsvText(path, "a freeze table (processid, split)")
    missing = [c for c in ("processid", "split") if c not in source.columns]
    if missing:
        raise InputError(f"{path}: missing columns {missing}: a freeze table needs processid and split")
    column = next((c for c in ("barcode_key", "dna_barcode") if c in source.columns), None) if barcodes else None
    held_column = HELD_KEYS if barcodes and HELD_KEYS in source.columns else None
    wanted = ["processid", "split", *(name for name in (column, held_column) if name)]
    parts: dict[str, list] = {name: [] for name in wanted}
    for batch in source.batches(wanted):
        for name in ("processid", "split"):
            parts[name].append(batch.column(name))
        if column:
            cells = missing_as_null(batch.column(column)).cast(pa.string())
            parts[column].append(cells if column == "barcode_key" else barcode_digest(cells))
        if held_column:
            parts[held_column].append(missing_as_null(batch.column(held_column)).cast(pa.string()))

    def whole(name) -> pa.Array:
        return pa.concat_arrays(parts[name]) if parts[name] else pa.array([], pa.string())

    split = _freeze_splits(whole("processid"), whole("split"), path)
    keys = None
    if column:
        keys = whole(column).to_pandas(types_mapper=pd.ArrowDtype).rename("barcode_key")
        keys.index = split.index
    held = None
    if held_column:
        cells = whole(held_column)
        if cells.null_count < len(cells):
            held = cells.to_pandas(types_mapper=pd.ArrowDtype).rename(HELD_KEYS)
    return split, keys, held


def _freeze_splits(processid: pa.Array, split_names: pa.Array, path) -> pd.Series:
    split = split_names.to_numpy(zero_copy_only=False)
    unknown = sorted(set(split) - set(SPLITS))
    if unknown:
        raise InputError(f"{path}: unknown split names {unknown}; known: {list(SPLITS)}")
    processids = pd.Index(processid.to_numpy(zero_copy_only=False))
    keys = pd.Index(processid_keys(processids))  # two spellings of one record are one record
    twice = processids[keys.duplicated(keep=False)].unique()
    if len(twice):  # which of its splits a record keeps would be arbitrary
        shown = ", ".join(repr(p) for p in sorted(twice)[:5]) + (" ..." if len(twice) > 5 else "")
        raise InputError(f"{path}: {len(twice)} processid(s) appear more than once: {shown}; keep one row each")
    return pd.Series(split, index=processids, name="split")


SPLIT_OUTPUTS = ("splits.parquet", "summary.csv", "excluded.parquet")  # what ``split_tables`` writes into its folder


def split_tables(curated_path, barcode_paths, outdir, freeze_csv=None, image_paths=None, tie_order="reference") -> dict:
    """The split stage: curated labels + cleaned barcodes -> ``splits.parquet`` (processid, split, chunk,
    barcode_key; sorted by processid) and ``summary.csv`` (samples, barcodes, species per split). ``freeze_csv``:
    processid,split (and barcode_key) of a previous release (``read_freeze_with_barcodes``; ``assign_splits``:
    those records keep their split, and pin their barcodes). ``image_paths``: the image stage's per-shard results;
    records whose photo shows no specimen (or is unusable) get no split and are written to ``excluded.parquet``
    (reject table: ``no_specimen`` / ``image_unusable``). ``tie_order``: what ``check_tie_order`` accepts (the
    returned summary says which order the splits followed)."""
    outdir = Path(outdir)
    # Arrow all the way (5.15M barcodes are 3.4 GB of text), filtered shard by shard: the barcode shards hold the
    # ingested rows in the order curation kept them, so filtering them to the curated ids lines them up.
    curated = pq.read_table(curated_path, columns=["processid", "genus", "species"])
    curated = curated.cast(pa.schema([(name, pa.string()) for name in curated.column_names]))
    curated_ids = pd.Index(curated["processid"].to_numpy())  # one hash table for every shard
    excluded = _image_exclusions(curated_ids, image_paths)
    # Records without a specimen leave before the table is built: filtering 3.4 GB of barcodes afterwards
    # would copy them.
    excluded_ids = pd.Index(excluded["processid"].to_numpy(dtype=object))
    if len(excluded):
        curated = curated.filter(pa.array(excluded_ids.get_indexer(curated["processid"].to_numpy()) < 0))
    parts = []
    for path in barcode_paths:
        part = pq.read_table(path, columns=["processid", "dna_barcode", "barcode_key"])
        ids = part["processid"].to_numpy()
        keep = (curated_ids.get_indexer(ids) >= 0) & (excluded_ids.get_indexer(ids) < 0)
        parts.append(part if keep.all() else part.filter(pa.array(keep)))
    del curated_ids
    barcodes = pa.concat_tables(parts)
    del parts
    if not barcodes["processid"].equals(curated["processid"]):
        raise InputError(
            f"the barcode shards ({', '.join(str(p) for p in barcode_paths)}) do not line up with the curated records "
            f"({curated_path}): give every shard, in order, or run curate_taxonomy again"
        )
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
    freeze, freeze_barcodes, held = read_freeze_with_barcodes(freeze_csv) if freeze_csv else (None, None, None)
    if freeze is not None and len(freeze):  # the keys of 5M records only when they are needed
        present = pd.Index(processid_keys(table["processid"]))
        _refuse_unusable_freeze(freeze_csv, freeze, freeze_barcodes, present, len(table))
    order = check_tie_order(table["species"], table["barcode_key"], tie_order)
    split = assign_splits(table, freeze, freeze_barcodes, held)
    table["split"] = split.astype(object).to_numpy()
    summary = split_summary(table.drop(columns=["dna_barcode"]))
    out = pd.DataFrame(
        {
            "processid": table["processid"],
            "split": table["split"],
            "chunk": chunk_of(table["processid"], table["split"]),
            "barcode_key": table["barcode_key"],  # the split history keeps it: a record's barcode pins when it is gone
        }
    ).sort_values("processid", kind="stable")
    outdir.mkdir(parents=True, exist_ok=True)
    write_table(pa.Table.from_pandas(out, preserve_index=False), outdir / "splits.parquet")
    with csv_writer(outdir / "summary.csv") as handle:  # whole or absent, as the other outputs
        handle.write(summary.to_csv(index=False, lineterminator="\n").encode())
    frozen_kept = freeze_excluded = freeze_unmatched = 0
    if freeze is not None:
        keys = _keys(freeze)
        kept = keys.isin(pd.Index(processid_keys(table["processid"])))
        gone = ~kept & keys.isin(pd.Index(processid_keys(excluded["processid"].to_numpy(dtype=object))))
        frozen_kept, freeze_excluded = int(kept.sum()), int(gone.sum())
        freeze_unmatched = len(keys) - frozen_kept - freeze_excluded
    return {
        "records": len(out),
        "tie_order": order,
        "frozen": frozen_kept,
        "freeze_excluded": freeze_excluded,  # their photo shows no specimen (or is unusable): no split
        "freeze_unmatched": freeze_unmatched,
        "excluded": {k: int(v) for k, v in excluded["reason"].value_counts().sort_index().items()},
        "splits": dict(zip(summary["split"], summary["samples"])),
    }


def _image_exclusions(processids: pd.Index, image_paths) -> pd.DataFrame:
    columns = ["processid", "reason", "detail"]
    if not image_paths:
        return pd.DataFrame(columns=columns)
    images = pd.concat(
        [
            pq.read_table(p, columns=["processid", "image_status", "image_status_detail", "box_source"]).to_pandas()
            for p in image_paths
        ],
        ignore_index=True,
    )
    images = images[processids.get_indexer(images["processid"]) >= 0]
    bad = images[~images["image_status"].isin(USABLE_IMAGE_STATUSES)]
    reason = np.where(bad["image_status"] == "no_object", "no_specimen", "image_unusable")
    # The image stage's own words (the decoder's message) where it has them.
    detail = [
        f"image status {status}"
        + ("" if pd.isna(why) else f": {why}")
        + (" (a maintainer's box correction)" if source == "correction" else "")
        for status, why, source in zip(bad["image_status"], bad["image_status_detail"], bad["box_source"])
    ]
    return pd.DataFrame({"processid": bad["processid"].to_numpy(), "reason": reason, "detail": detail}).sort_values(
        "processid", kind="stable"
    )


_SPLIT_NAMES = pa.array(SPLITS, pa.string())


def _strip_keys(barcodes: pa.Array) -> list[bytes | None]:
    """Per cell (binary), its strip barcode (leading and trailing ``N`` removed); None where missing."""
    keys = barcodes.to_pylist()
    padded = pc.fill_null(pc.or_(pc.starts_with(barcodes, "N"), pc.ends_with(barcodes, "N")), False)
    for i in np.flatnonzero(padded.to_numpy(zero_copy_only=False)).tolist():
        keys[i] = keys[i].strip(b"N")
    for i in np.flatnonzero(is_missing(barcodes)).tolist():
        keys[i] = None
    return keys


@dataclass
class _FirstPass:
    """What pass 1 keeps: the records the protocol reads in full (those with a species, and those of the
    freeze), and every record's strip barcode as a number."""

    records: pa.Table  # processid, genus, species, dna_barcode; read_csv's missing values as nulls
    rows: np.ndarray  # the records' positions in the file
    strip_ids: np.ndarray  # per record of the file: its strip barcode's number (unique, not dense), -1: none
    n_strips: int  # distinct strip barcodes in the file
    strips: dict[bytes, int]  # strip barcode -> its number
    n_frozen: int  # records whose processid is in the freeze
    freeze_matched: int  # distinct freeze processids some record has
    frozen_keys: pa.ChunkedArray  # those processids (``processid_keys``)


def _keys(freeze: pd.Series) -> pd.Index:
    """The freeze's processids as ``processid_keys`` (how ``assign_splits`` matches them)."""
    return pd.Index(processid_keys(freeze.index))


def _refuse_unusable_freeze(path, freeze: pd.Series | None, freeze_barcodes, present_keys, n_records: int) -> None:
    """A freeze table none of whose records this build holds is another dataset's, or another build's: its
    absent records' barcodes would still pin this build's records into its held-out splits, so it is refused.
    A frozen record absent from this build still holds its barcode's split, but only through the barcode the
    freeze gives it: without a ``barcode_key`` or ``dna_barcode`` column, new records on that barcode would be
    placed afresh (a barcode in test and in train, or its species seen and unseen at once), so it is refused."""
    if freeze is None or not len(freeze):
        return
    keys = _keys(freeze)
    absent = ~keys.isin(present_keys)
    if n_records and absent.all():
        raise InputError(
            f"{path}: none of its {len(keys)} frozen records is in this build (another dataset's or another "
            "build's split history?): its barcodes would pin this build's records to its splits; give the split "
            "history of the previous release of this dataset"
        )
    if freeze_barcodes is None and absent.any():
        gone = keys[absent]
        shown = ", ".join(sorted(gone)[:3]) + (" ..." if len(gone) > 3 else "")
        raise InputError(
            f"{path}: {len(gone)} frozen record(s) are not in this build ({shown}) and the freeze table has no "
            "barcode_key or dna_barcode column, so their barcodes cannot keep their split (new records on them "
            "would be placed afresh): give the previous release's metadata/split_history.csv or its metadata CSV"
        )


def _refuse_repeated_processids(source: CsvText, keys: pa.ChunkedArray) -> None:
    """One record in two rows would get two splits (its image in two folders, a specimen in train and test)."""
    repeated = [key for key, _ in repeated_values(keys.drop_null())]
    if repeated:
        shown = ", ".join(repr(p) for p in repeated[:5]) + (" ..." if len(repeated) > 5 else "")
        raise InputError(
            f"{source.path}: {len(repeated)} processid(s) appear more than once (case and invisible characters "
            f"aside): {shown}; keep one row each"
        )


def _first_pass(source: CsvText, freeze: pd.Series | None) -> _FirstPass:
    frozen_ids = None if freeze is None else pa.array(_keys(freeze).astype(object), pa.string())
    numbers: dict[bytes | None, int] = {}  # strip barcode -> its number: the first record's position
    parts, rows, strip_ids, n_rows, n_frozen, matched, all_keys = [], [], [], 0, 0, [], []
    # barcodes as bytes: only the kept ones are checked here (cast to text), the others in pass 2
    for batch in source.batches(list(REQUIRED_COLUMNS), as_bytes=("dna_barcode",)):
        barcodes = batch.column("dna_barcode")
        # map() and count() keep the loop in C: a new strip takes the position, a known one its number
        ids = map(numbers.setdefault, _strip_keys(barcodes), count(n_rows))
        strip_ids.append(np.fromiter(ids, dtype=np.int64, count=batch.num_rows))
        species = missing_as_null(batch.column("species"))
        keep = pc.is_valid(species)
        keys = pa.array(processid_keys(batch.column("processid").to_numpy(zero_copy_only=False)), pa.string())
        all_keys.append(keys)
        if frozen_ids is not None:
            old = pc.fill_null(pc.is_in(keys, value_set=frozen_ids), False)
            n_frozen += int(np.count_nonzero(old.to_numpy(zero_copy_only=False)))
            matched.append(pc.unique(keys.filter(old)))
            keep = pc.or_(keep, old)
        positions = np.flatnonzero(keep.to_numpy(zero_copy_only=False))
        take = pa.array(positions)
        parts.append(
            pa.table(
                {
                    "processid": batch.column("processid").take(take),
                    "genus": missing_as_null(batch.column("genus").take(take)),
                    "species": species.take(take),
                    "dna_barcode": missing_as_null(source.text(barcodes.take(take))),
                }
            )
        )
        rows.append(positions + n_rows)
        n_rows += batch.num_rows
    _refuse_repeated_processids(source, pa.chunked_array(all_keys, pa.string()))
    strip_ids = np.concatenate(strip_ids) if strip_ids else np.zeros(0, np.int64)
    missing = numbers.pop(None, None)
    if missing is not None:
        strip_ids[strip_ids == missing] = -1
    schema = pa.schema([(name, pa.string()) for name in REQUIRED_COLUMNS])
    frozen_keys = pc.unique(pa.chunked_array(matched, pa.string()))
    return _FirstPass(
        records=pa.concat_tables(parts) if parts else schema.empty_table(),
        rows=np.concatenate(rows) if rows else np.zeros(0, np.int64),
        strip_ids=strip_ids,
        n_strips=len(numbers),
        strips=numbers,
        n_frozen=n_frozen,
        freeze_matched=len(frozen_keys),
        frozen_keys=frozen_keys,
    )


def _assign(
    first: _FirstPass,
    freeze: pd.Series | None,
    freeze_barcodes: pd.Series | None = None,
    held_barcodes: pd.Series | None = None,
) -> np.ndarray:
    """The split code of every record of the file.

    The protocol reads the records of pass 1 in full. The others (no species, not frozen) change no count,
    target or draw; they only move with a barcode, so each takes the split of a record without species on its
    strip barcode: one such stand-in per strip barcode of the protocol's records goes through
    ``assign_splits`` with them; records on any other barcode stay pretrain. So does one per strip barcode of a
    frozen record absent from the file (``freeze_barcodes``), which pins it: the rows on such a barcode carry its
    ``barcode_key`` (only those: no other barcode is hashed in ``assign_splits``)."""
    record_ids = first.strip_ids[first.rows]
    with_barcode = np.flatnonzero(record_ids >= 0)
    stand_in_ids, first_record = np.unique(record_ids[with_barcode], return_index=True)
    strips = strip_end_n(first.records["dna_barcode"].take(pa.array(with_barcode[first_record])))
    strips = strips.combine_chunks() if isinstance(strips, pa.ChunkedArray) else strips
    pinning = _pinning_strips(first, freeze, freeze_barcodes, held_barcodes)  # strip number -> (strip, digest)
    have = set(stand_in_ids.tolist())
    extra = [number for number in sorted(pinning or {}) if number not in have]
    if extra:
        stand_in_ids = np.r_[stand_in_ids, np.array(extra, np.int64)]
        strips = pa.concat_arrays([strips, _strip_text([pinning[number][0] for number in extra])])
    stand_ins = {name: pa.nulls(len(strips), pa.string()) for name in REQUIRED_COLUMNS} | {"dna_barcode": strips}
    table = pa.concat_tables([first.records, pa.table(stand_ins).cast(first.records.schema)])
    if pinning is not None:  # absent frozen records: their barcodes' keys; "" for every other barcode (hashed here)
        numbers = np.r_[record_ids, stand_in_ids]
        keys = [pinning[n][1] if n in pinning else "" for n in numbers.tolist()]
        table = table.append_column("barcode_key", pa.array(keys, pa.string()))
    codes = assign_splits(table.to_pandas(), freeze, freeze_barcodes, held_barcodes).cat.codes.to_numpy()
    by_strip = np.full(len(first.strip_ids) + 1, PRETRAIN, dtype=np.int8)  # the last: no barcode
    by_strip[stand_in_ids] = codes[first.records.num_rows :]
    split = by_strip[first.strip_ids]
    split[first.rows] = codes[: first.records.num_rows]
    return split


def _pinning_strips(
    first: _FirstPass,
    freeze: pd.Series | None,
    freeze_barcodes: pd.Series | None,
    held_barcodes: pd.Series | None = None,
) -> dict[int, tuple[bytes, str]] | None:
    """The file's strip barcodes that a frozen record carried (by ``freeze_barcodes``, and the barcodes it holds
    from earlier versions, ``held_barcodes``): strip number -> (strip, its ``barcode_key``); None when no frozen
    record has a barcode. A frozen record absent from the file, or whose barcode is now missing or another, pins its
    old barcode through these (``assign_splits``); one that still carries it finds its own key here. Every strip is
    hashed when the freeze has barcodes."""
    if freeze is None or not len(freeze) or (freeze_barcodes is None and held_barcodes is None):
        return None
    digests = [] if freeze_barcodes is None else [pa.array(freeze_barcodes.array, pa.string(), from_pandas=True)]
    if held_barcodes is not None:
        digests.append(pa.array(held_digests(held_barcodes)[1], pa.string()))
    frozen = pc.drop_null(pc.unique(pa.chunked_array(digests, pa.string())))
    frozen = frozen.filter(pc.not_equal(frozen, ""))
    if not len(frozen):
        return None
    strips = list(first.strips)
    digests = pa.array([hashlib.md5(strip).hexdigest() for strip in strips], pa.string())
    hit = np.flatnonzero(pc.is_in(digests, value_set=frozen).to_numpy(zero_copy_only=False))
    numbers = list(first.strips.values())
    return {numbers[i]: (strips[i], digests[i].as_py()) for i in hit.tolist()}


def _strip_text(strips: list[bytes]) -> pa.Array:
    """Strip barcodes (the file's bytes, UTF-8) as a string array."""
    return pa.array([strip.decode("utf-8", "replace") for strip in strips], pa.string())


def _summary(first: _FirstPass, split: np.ndarray) -> pd.DataFrame:
    """``split_summary``'s table: samples, distinct strip barcodes and distinct species per split."""
    with_barcode = first.strip_ids >= 0
    seen = np.zeros((len(SPLITS), len(split)), dtype=bool)  # strip numbers are record positions
    seen[split[with_barcode], first.strip_ids[with_barcode]] = True
    barcodes = seen.sum(axis=1)
    # only the protocol's records have a species
    species = pd.factorize(first.records["species"].to_pandas().astype(object))[0]
    named = species >= 0
    record_split = split[first.rows]
    rows = [
        (name, int((split == code).sum()), int(barcodes[code]), np.unique(species[named & (record_split == code)]).size)
        for code, name in enumerate(SPLITS)
    ]
    rows.append(("total", len(split), first.n_strips, np.unique(species[named]).size))
    return pd.DataFrame(rows, columns=["split", "samples", "barcodes", "species"])


def split_csv(input_csv, output_csv, freeze_csv=None, summary_csv=None, tie_order="reference") -> dict:
    """Read a metadata CSV, write it back with ``split`` filled (other cells as read, row order kept).

    Cells are read as raw strings, so other columns come back as written (``csv_text``: byte for byte where
    pandas wrote the file); only genus, species and dna_barcode are interpreted, with read_csv's default missing
    values (a processid is an identifier: ``NA`` is a processid, as in the freeze file). A ``chunk`` column,
    where the table has one (the published CSV does), is refilled from the new split so that image paths follow.
    ``freeze_csv``: processid,split of a previous release. Returns counts per split and how many records were
    kept from the freeze.

    The file is read twice, in small batches, so that memory holds only what the protocol needs: pass 1 reads
    the four columns it uses (``_first_pass``: the protocol's records whole, and one copy of each distinct strip
    barcode to number them), pass 2 copies every row to the output with its split. ``tie_order``: as for
    ``split_tables``.
    """
    source = CsvText(input_csv, "a metadata CSV")
    columns = source.columns
    missing = [c for c in REQUIRED_COLUMNS if c not in columns]
    if missing:
        raise InputError(f"{input_csv}: missing columns {missing}: the split needs {list(REQUIRED_COLUMNS)}")
    repeated = sorted({c for c in columns if columns.count(c) > 1} & {*REQUIRED_COLUMNS, "split", "chunk"})
    if repeated:
        raise InputError(f"{input_csv}: columns {repeated} appear more than once")
    freeze, freeze_barcodes, held = (None, None, None) if freeze_csv is None else read_freeze_with_barcodes(freeze_csv)
    first = _first_pass(source, freeze)
    _refuse_unusable_freeze(
        freeze_csv, freeze, freeze_barcodes, pd.Index(first.frozen_keys.to_pylist()), len(first.strip_ids)
    )
    order = check_tie_order(first.records["species"], first.records["dna_barcode"], tie_order)
    split = _assign(first, freeze, freeze_barcodes, held)
    if summary_csv is not None:
        summary = _summary(first, split)
    n_frozen, freeze_matched = first.n_frozen, first.freeze_matched
    del first  # pass 2 needs none of it

    processid_at = columns.index("processid")
    split_at = columns.index("split") if "split" in columns else len(columns)  # appended where absent
    chunk_at = columns.index("chunk") if "chunk" in columns else None
    done = 0
    with csv_writer(output_csv) as out:
        out.write(render_header(columns if split_at < len(columns) else [*columns, "split"]))
        for batch in source.batches():
            batch_split = split[done : done + batch.num_rows]
            cells = list(batch.columns)
            cells[split_at : split_at + 1] = [_SPLIT_NAMES.take(pa.array(batch_split))]  # or appended
            if chunk_at is not None:
                cells[chunk_at] = chunk_names(batch.column(processid_at), batch_split)
            out.write(render_lines(cells))
            done += batch.num_rows
        if done != len(split):
            raise InputError(f"{input_csv}: {done} records on the second reading, {len(split)} on the first")
    if summary_csv is not None:
        with csv_writer(summary_csv) as handle:
            handle.write(summary.to_csv(index=False, lineterminator="\n").encode())
    counts = np.bincount(split, minlength=len(SPLITS)).tolist()
    return {
        "rows": len(split),
        "tie_order": order,
        "frozen": n_frozen,
        "freeze_unmatched": 0 if freeze is None else len(freeze) - freeze_matched,
        "new": len(split) - n_frozen,
        "splits": dict(zip(SPLITS, counts)),
    }
