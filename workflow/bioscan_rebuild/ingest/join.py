"""Ingest step 3: one shard across all batches -> kept records joined to their photos, rejects.

One job per shard. Duplicate records and duplicate photos of a processid are resolved in
delivery order (``duplicate_policy``), each record is joined to its photo, and everything that
cannot be joined is rejected with a reason; the shard's accounting must balance.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from bioscan_rebuild.core.bins import normalise_bin
from bioscan_rebuild.core.errors import InputError
from bioscan_rebuild.core.io import read_table, write_json, write_table
from bioscan_rebuild.core.names import name_as_curated, place_key
from bioscan_rebuild.core.params import IngestParams
from bioscan_rebuild.core.schemas import (
    IMAGE_COLUMNS,
    INGESTED_SCHEMA,
    INVISIBLE_CHARACTERS,
    MISSING_TOKENS,
    MISSING_TOKENS_UNDOTTED,
    RANKS,
    RECORD_SCHEMA,
    REDELIVERY_SCHEMA,
    REJECT_SCHEMA,
    SIGNATURE_FIELDS,
    comparable_sequences,
    make_rejects,
    processid_key,
    shard_of,
)
from bioscan_rebuild.ingest.accounting import check_balance, count_rejects
from bioscan_rebuild.ingest.inventory import INVENTORY_SCHEMA
from bioscan_rebuild.ingest.parse import REJECTED_KEYS_SCHEMA

POLICIES = ("latest", "first", "reject")
RECORD_OUTCOMES = {
    "identical": "duplicate_record",
    "conflict": "duplicate_conflict",
    "superseded": "superseded",
    "later": "later_delivery",
}
# a record's reject reasons that leave another copy of it kept (any other refuses the record itself)
ANOTHER_COPY_KEPT = (*(RECORD_OUTCOMES[kind] for kind in ("identical", "superseded", "later")), "other_marker")
# reasons that set one row aside while the record may still be kept through another: these, a row of another marker
# or a damaged one, and a copy of a delivery whose copies conflict (a later delivery may decide, policy latest)
ROW_SET_ASIDE = (
    *ANOTHER_COPY_KEPT,
    RECORD_OUTCOMES["conflict"],
    "unparseable_row",
    "missing_processid",
    "invalid_processid",
    "unsupported_marker",
)
IMAGE_OUTCOMES = {
    "identical": "duplicate_image",
    "conflict": "conflicting_images",
    "superseded": "superseded",
    "later": "later_delivery",
}


def _location(frame: pd.DataFrame) -> pd.Series:
    return (
        frame["batch"] + ":" + frame["source_file"].map(lambda p: Path(p).name) + ":" + frame["source_line"].astype(str)
    )


def _resolve_duplicates(frame: pd.DataFrame, signature: pd.Series, policy: str, location: pd.Series, names):
    """For rows sorted in delivery order, pick one row per processid (per ``_key``: case does not count).

    1. Within one batch, identical copies merge (the first kept, the others ``identical``); copies with different
       content in one delivery cannot be ordered, so every copy in that batch is rejected (``conflict``).
    2. Between the batches' copies left: identical ones merge; different ones follow ``policy``: ``latest`` keeps
       the latest batch's (the others ``superseded``), ``first`` the earliest's (the others ``later``), ``reject``
       rejects them all (``conflict``).

    Returns (keep mask, reason per row or None, detail per row or None, winner per row: the row that replaced it,
    or -1). `names` maps the generic outcomes to reason codes: identical, conflict, superseded, later.
    """
    n = len(frame)
    keep = np.ones(n, bool)
    reason = np.full(n, None, dtype=object)
    detail = np.full(n, None, dtype=object)
    winner = np.full(n, -1, dtype=np.int64)
    duplicated = frame["_key"].duplicated(keep=False).to_numpy()
    if not duplicated.any():
        return keep, reason, detail, winner
    positions = np.flatnonzero(duplicated)
    groups = frame.iloc[positions].groupby("_key", sort=False).indices
    spelled = frame["processid"].to_numpy()
    batch_of = frame["batch"].to_numpy()
    signatures = signature.to_numpy()

    def drop(row, why, text, case_note, by=-1):
        keep[row], reason[row], detail[row], winner[row] = False, names[why], text + case_note, by

    for _, members in groups.items():
        rows = positions[members]
        case_note = " (its processid differs only by case)" if len({spelled[r] for r in rows}) > 1 else ""
        survivors, conflicted = [], []
        batches = list(dict.fromkeys(batch_of[rows]))  # batches in delivery order
        for batch in batches:
            in_batch = [r for r in rows if batch_of[r] == batch]
            if len({signatures[r] for r in in_batch}) > 1:
                for row in in_batch:
                    drop(
                        row,
                        "conflict",
                        f"differs from {_others(location, in_batch, row)} in the same delivery",
                        case_note,
                    )
                conflicted.append(batch)
                continue
            survivors.append(in_batch[0])
            for row in in_batch[1:]:
                drop(row, "identical", "same as " + location.iloc[in_batch[0]], case_note, in_batch[0])
        # A delivery whose copies conflict still has its say: under reject it makes every copy a conflict; under
        # latest (first) it is the delivery that decides when it is the latest (earliest), and an older (newer)
        # copy must not come back in its place.
        deciding = batches[-1] if policy == "latest" else batches[0]
        if conflicted and (policy == "reject" or deciding in conflicted):
            blamed = ", ".join(conflicted) if policy == "reject" else deciding
            for row in survivors:
                drop(row, "conflict", f"the copies of delivery {blamed} differ from each other", case_note)
            continue
        if len(survivors) < 2:
            continue
        differ = len({signatures[r] for r in survivors}) > 1
        if differ and policy == "reject":
            for row in survivors:
                drop(row, "conflict", "differs from " + _others(location, survivors, row), case_note)
            continue
        chosen = survivors[-1] if differ and policy == "latest" else survivors[0]
        for row in survivors:
            if row == chosen:
                continue
            if signatures[row] == signatures[chosen]:
                drop(row, "identical", "same as " + location.iloc[chosen], case_note, chosen)
            elif policy == "latest":
                drop(row, "superseded", "replaced by " + location.iloc[chosen], case_note, chosen)
            else:
                drop(row, "later", "an earlier delivery is kept: " + location.iloc[chosen], case_note, chosen)
    return keep, reason, detail, winner


def _prefer_marker(records: pd.DataFrame, markers) -> tuple[pd.DataFrame, pa.Table]:
    """(records left, rejects): the rows of a specimen for a marker listed after another of its rows' markers."""
    if len(markers) < 2 or records.empty:
        return records, REJECT_SCHEMA.empty_table()
    order = {marker: position for position, marker in enumerate(markers)}
    position = records["marker_code"].map(order).fillna(len(markers)).astype(np.int64)
    # within a delivery: between deliveries the duplicate policy decides, and logs what changed
    best = position.groupby([records["_key"].to_numpy(), records["batch"].to_numpy()]).transform("min")
    later = (position > best).to_numpy()
    if not later.any():
        return records, REJECT_SCHEMA.empty_table()
    dropped = records[later]
    preferred = [markers[int(b)] for b in best[later]]
    rejects = make_rejects(
        kind="record",
        reason="other_marker",
        detail=[
            f"marker {marker}: the specimen's {kept} row is the record (ingest.markers order)"
            for marker, kept in zip(dropped["marker_code"], preferred, strict=True)
        ],
        processid=dropped["processid"].tolist(),
        batch=dropped["batch"].tolist(),
        source_file=dropped["source_file"].tolist(),
        source_line=dropped["source_line"].tolist(),
    )
    return records[~later].reset_index(drop=True), rejects


NAMED_COPIES = 3  # a conflict's detail names this many other copies, then counts the rest


def _others(location: pd.Series, rows: list, row) -> str:
    """The other copies' locations for a conflict's detail: a few named and the rest counted (naming every copy
    in every copy's detail grew as the square of the copies: 2,000 rows of one processid took 24 s and 110 MB)."""
    named = [location.iloc[other] for other in rows[: NAMED_COPIES + 1] if other != row][:NAMED_COPIES]
    more = len(rows) - 1 - len(named)
    return ", ".join(named) + (f" and {more} more copies" if more else "")


def _comparable_text(records: pd.DataFrame, fields: list[str]) -> pd.DataFrame:
    """The text fields as compared between copies of a record: Unicode NFC, invisible format characters out, white
    space trimmed and runs of it one space, a BIN in its normal form (``core.bins``) or missing where curation reads
    none (``MISSING_TOKENS``: "n.a.", "-"), a rank's name as curation's steps 1 and 2 leave it (``core.names``:
    "Aedes aegypti (Linnaeus, 1762)", "AEDES"). A decomposed "Psychóda", as macOS writes, a zero-width space, a
    trailing space or "bold: aaa1234" is the same value: two copies that differed only so were both refused as a
    conflict, or logged a change whose two values look the same. The values themselves stay as delivered; the
    taxonomy stage cleans names and BINs and logs it (its tables, which ingest does not read, may still make two
    names one)."""
    out = {}
    for field in fields:
        column = records[field]
        if not pd.api.types.is_numeric_dtype(column.dtype):
            text = pa.array(column, pa.string(), from_pandas=True)
            text = pc.replace_substring_regex(pc.utf8_normalize(text, form="NFC"), INVISIBLE_CHARACTERS, "")
            # every Unicode space (a no-break space too: RE2's \s is ASCII only), as the taxonomy stage's NFKC has it
            text = pc.utf8_trim(pc.replace_substring_regex(text, r"[\s\p{Z}]+", " "), " ")
            if field == "bin_uri":
                text = pc.utf8_upper(text)
            column = pd.Series(text.to_numpy(zero_copy_only=False), index=records.index, dtype=object)
            if field == "bin_uri":  # "AAA1234" and "BOLD: AAA1234" are the BIN curation makes BOLD:AAA1234
                # from the value as delivered, as curation reads it (upper-cased first, a Cyrillic look-alike maps
                # to another letter); once per BIN, not per copy: a whole delivery sent again makes every record a
                # copy. A malformed one compares as cleaned above.
                spelled = {value: normalise_bin(value) for value in records[field].dropna().unique()}
                normal = records[field].map(spelled)
                column = normal.where(normal.notna(), column)
            if field == "bin_uri":  # "n.a.", "-", "unknown": no BIN, as curation reads it
                said_none = {value for value in column.dropna().unique() if _is_missing_token(value)}
                if said_none:
                    column = column.where(~column.isin(said_none).to_numpy(), None)
            elif field in ("country", "province_state"):  # "CANADA" is Canada: curation writes each place one way
                keyed = {value: place_key(value) for value in column.dropna().unique()}
                column = column.map(keyed).astype(object).where(column.notna(), None)
            elif field in RANKS:  # a name as curation's steps 1 and 2 leave it ("Aedes aegypti (Linnaeus, 1762)",
                # "AEDES", "Culex pipiens x quinquefasciatus", "n.a."), once per name
                named = {value: name_as_curated(value, field) for value in records[field].dropna().unique()}
                curated = records[field].map(named)
                column = curated.astype(object).where(curated.notna(), None)
        out[field] = column
    return pd.DataFrame(out, index=records.index)


def _is_missing_token(value: str) -> bool:
    text = str(value).strip().casefold()
    return text in MISSING_TOKENS or text.rstrip(".") in MISSING_TOKENS_UNDOTTED


def _redeliveries(records: pd.DataFrame, locations: pd.Series, reason, winner, comparable) -> pa.Table:
    """Field by field, what a later (or, under ``first``, an earlier) delivery of a record replaced."""
    rows = []
    fields = [f for f in SIGNATURE_FIELDS if f != "processid"]
    for row in np.flatnonzero(np.isin(reason, ["superseded", "later_delivery"])):
        chosen = winner[row]
        for field in fields:
            old, new = records[field].iat[row], records[field].iat[chosen]
            if (pd.isna(old) and pd.isna(new)) or old == new:
                continue
            if field in comparable and comparable[field].iat[row] == comparable[field].iat[chosen]:
                continue  # another Unicode form, an invisible character: the same text
            if field == "nucleotides" and records["_sequence"].iat[row] == records["_sequence"].iat[chosen]:
                continue  # gaps, case or line breaks of another layout: the same sequence
            rows.append(
                {
                    "processid": records["processid"].iat[chosen],
                    "field": field,
                    "old": None if pd.isna(old) else str(old),
                    "new": None if pd.isna(new) else str(new),
                    "old_source": locations.iat[row],
                    "new_source": locations.iat[chosen],
                    "rule": reason[row],
                }
            )
    return pa.Table.from_pylist(rows, schema=REDELIVERY_SCHEMA)


REFUSED_SITE = "coordinates_refused"  # the changes table's rule for a site ingest could not take


def _refused_sites(records: pd.DataFrame, locations: pd.Series, keep, reason, winner) -> pa.Table:
    """A row per site ingest refused (the export gave coordinates, not two numbers in range) of a kept record, or
    of a copy merged into one as the same content (``duplicate_record``: a refused site and none given are the same
    release, and its text is no content: "(95,10)" and "95; 10" say one thing in two layouts), each with the text
    as delivered and its own source row: the release tells a refused site from none given (it was counted per
    export only, outside the release)."""
    refused = (records["coord_raw"].notna() & (records["lat"].isna() | records["lon"].isna())).to_numpy()
    merged = RECORD_OUTCOMES["identical"]
    rows, named = [], []
    for row in np.flatnonzero(refused):
        kept_as = row
        while not keep[kept_as] and reason[kept_as] == merged and winner[kept_as] >= 0:
            kept_as = winner[kept_as]
        if keep[kept_as]:  # a copy another delivery replaced names no site of the release
            rows.append(row)
            named.append(records["processid"].iat[kept_as])
    text = records["coord_raw"].iloc[rows].tolist()
    sources = locations.iloc[rows].tolist()
    return pa.table(
        {
            "processid": pa.array(named, pa.string()),
            "field": pa.array(["coord"] * len(rows), pa.string()),
            "old": pa.array(text, pa.string()),
            "new": pa.nulls(len(rows), pa.string()),
            "old_source": pa.array(sources, pa.string()),
            "new_source": pa.array(sources, pa.string()),
            "rule": pa.array([REFUSED_SITE] * len(rows), pa.string()),
        },
        schema=REDELIVERY_SCHEMA,
    )


def join_shard(
    record_tables: list[pa.Table],
    inventory_tables: list[pa.Table],
    batch_order: list[str],
    *,
    duplicate_policy: str = IngestParams.duplicate_policy,
    require_images: bool = IngestParams.require_images,
    rejected_keys: list[str] = (),
    markers: tuple[str, ...] = IngestParams.markers,
    trim_end_n: bool = True,
) -> tuple[pa.Table, pa.Table, dict]:
    """Resolve duplicates and join records to images within one shard.

    ``markers``: the kept markers in order of preference. A delivery's rows of one specimen for two of them
    (COI-5P and COI-3P) are one record: the row of the marker listed first; the others are ``other_marker``
    (they were a conflict between copies, and the specimen was lost). Between deliveries ``duplicate_policy``
    decides, as for any field, and the redeliveries log the change.

    ``rejected_keys``: processids of this shard's rows the parse rejected (their photos are ``record_rejected``,
    not ``no_record``). Returns (kept records with image columns, rejects, accounting, redeliveries: what each
    replaced delivery had, field by field, ``REDELIVERY_SCHEMA``). Raises AccountingError if an
    input row or file is neither kept nor rejected.
    """
    if duplicate_policy not in POLICIES:
        raise ValueError(f"duplicate_policy must be one of {POLICIES}")
    rank = {batch: i for i, batch in enumerate(batch_order)}
    records = pa.concat_tables(record_tables).to_pandas() if record_tables else RECORD_SCHEMA.empty_table().to_pandas()
    images = (
        pa.concat_tables(inventory_tables).to_pandas()
        if inventory_tables
        else INVENTORY_SCHEMA.empty_table().to_pandas()
    )
    records_in, images_in = len(records), len(images)
    records["_key"] = records["processid"].map(processid_key)
    images["_key"] = images["processid"].map(processid_key)

    # a batch the order does not name would rank last, as the latest delivery (a typo reversed which copy wins)
    unnamed = sorted((set(records["batch"].dropna()) | set(images["batch"].dropna())) - set(rank))
    if unnamed:
        raise InputError(
            f"batches {unnamed} are not in the batch order {list(batch_order)}: name every delivery the records "
            "and photos come from, oldest first"
        )
    records["_rank"] = records["batch"].map(rank)
    records = records.sort_values(["_rank", "source_file", "source_line"], kind="stable").reset_index(drop=True)
    images["_rank"] = images["batch"].map(rank)
    images = images.sort_values(["_rank", "image_path"], kind="stable").reset_index(drop=True)

    reject_parts = []

    # Records: one per specimen, of its first-listed marker.
    records, other_marker = _prefer_marker(records, markers)
    if len(other_marker):
        reject_parts.append(other_marker)
    # Only copies of one specimen are compared, so only they are normalised (the rest is most of 5M rows).
    # A v4 or BCDM-2024 copy pads its sequence with alignment gaps, a BCDM-2023 copy does not: the same content.
    copies = records[records["_key"].duplicated(keep=False)]
    # the end Ns count where the barcode step keeps them (barcodes.trim_end_n: false): a redelivery adding them
    # changes the released barcode
    sequences = pd.Series(comparable_sequences(copies["nucleotides"], trim_end_n), index=copies.index, dtype=object)
    comparable = _comparable_text(copies, [f for f in SIGNATURE_FIELDS if f not in ("processid", "nucleotides")])
    content_hash = pd.Series(np.zeros(len(records), np.uint64), index=records.index)
    content_hash.loc[copies.index] = pd.util.hash_pandas_object(
        comparable.assign(processid=copies["_key"], nucleotides=sequences), index=False
    ).to_numpy()
    sequences, comparable = sequences.reindex(records.index), comparable.reindex(records.index)
    locations = _location(records)
    keep, reason, detail, winner = _resolve_duplicates(
        records, content_hash, duplicate_policy, locations, RECORD_OUTCOMES
    )
    # A record keeps the spelling of its first delivery, whichever copy's content wins: a later delivery typing it in
    # another case must not rename a released record (its files, chunk and the diff between versions follow it).
    first_spelling = records.groupby("_key", sort=False)["processid"].transform("first")
    records["processid"] = records["processid"].where(~keep, first_spelling)
    redelivered = _redeliveries(records.assign(_sequence=sequences), locations, reason, winner, comparable)
    dropped = records[~keep]
    if len(dropped):
        reject_parts.append(
            make_rejects(
                kind="record",
                reason=list(reason[~keep]),
                detail=list(detail[~keep]),
                processid=dropped["processid"].tolist(),
                batch=dropped["batch"].tolist(),
                source_file=dropped["source_file"].tolist(),
                source_line=dropped["source_line"].tolist(),
            )
        )
    refused_sites = _refused_sites(records, locations, keep, reason, winner)
    if refused_sites.num_rows:
        redelivered = pa.concat_tables([redelivered, refused_sites])
    records = records[keep].reset_index(drop=True)

    # Images: broken files out first, then one per processid.
    def image_rejects(frame: pd.DataFrame, reasons, details) -> pa.Table:
        return make_rejects(
            kind="image",
            reason=list(reasons),
            detail=list(details),
            processid=frame["processid"].tolist(),
            batch=frame["batch"].tolist(),
            image_path=frame["image_path"].tolist(),
            image_sha256=frame["image_sha256"].tolist(),
        )

    broken = images["image_problem"].notna().to_numpy()
    if broken.any():
        bad = images[broken]
        reject_parts.append(image_rejects(bad, bad["image_problem"], bad["image_problem_detail"]))
    image_reasons_by_id: dict[str, list[str]] = {}  # by _key
    for pid, problem in zip(images.loc[broken, "_key"], images.loc[broken, "image_problem"]):
        image_reasons_by_id.setdefault(pid, []).append(problem)
    usable = images[~broken].reset_index(drop=True)
    keep, reason, detail, _ = _resolve_duplicates(
        usable, usable["image_sha256"], duplicate_policy, usable["batch"] + ":" + usable["image_path"], IMAGE_OUTCOMES
    )
    if (~keep).any():
        reject_parts.append(image_rejects(usable[~keep], reason[~keep], detail[~keep]))
        for pid, why in zip(usable.loc[~keep, "_key"], reason[~keep]):
            if why == "conflicting_images":
                image_reasons_by_id.setdefault(pid, []).append(why)
    usable = usable[keep].reset_index(drop=True)

    # Join.
    all_record_keys = (
        {processid_key(p) for p in pa.concat_tables(record_tables)["processid"].to_pylist()} if record_tables else set()
    )
    all_record_keys |= {processid_key(p) for p in rejected_keys}
    image_has_record = usable["_key"].isin(set(records["_key"])).to_numpy()
    orphans = usable[~image_has_record]
    if len(orphans):
        orphan_reason = np.where(orphans["_key"].isin(all_record_keys), "record_rejected", "no_record")
        orphan_detail = np.where(
            orphan_reason == "record_rejected",
            "every record of this processid was rejected",
            "no record has this processid",
        )
        reject_parts.append(image_rejects(orphans, orphan_reason, orphan_detail))
    usable = usable[image_has_record]

    image_part = usable.rename(columns={"batch": "image_batch"})[[f.name for f in IMAGE_COLUMNS] + ["_key"]]
    joined = records.merge(image_part, on="_key", how="left", validate="one_to_one")
    without_image = joined["image_sha256"].isna().to_numpy()
    if require_images and without_image.any():
        lost = joined[without_image]
        reasons = ["image_rejected" if key in image_reasons_by_id else "no_image" for key in lost["_key"]]
        details = [
            "images rejected: " + ", ".join(sorted(set(image_reasons_by_id[key])))
            if key in image_reasons_by_id
            else "no image file names this processid"
            for key in lost["_key"]
        ]
        reject_parts.append(
            make_rejects(
                kind="record",
                reason=reasons,
                detail=details,
                processid=lost["processid"].tolist(),
                batch=lost["batch"].tolist(),
                source_file=lost["source_file"].tolist(),
                source_line=lost["source_line"].tolist(),
            )
        )
        joined = joined[~without_image]

    joined = joined.sort_values("processid", kind="stable").reset_index(drop=True)
    kept = pa.Table.from_pandas(joined[INGESTED_SCHEMA.names], schema=INGESTED_SCHEMA, preserve_index=False)
    rejects = pa.concat_tables(reject_parts) if reject_parts else REJECT_SCHEMA.empty_table()
    rejects = rejects.sort_by(
        [
            ("kind", "ascending"),
            ("processid", "ascending"),
            ("batch", "ascending"),
            ("image_path", "ascending"),
            ("source_line", "ascending"),
        ]
    )

    accounting = {
        "records_in": records_in,
        "images_in": images_in,
        "records_kept": kept.num_rows,
        "images_kept": kept.num_rows - kept["image_sha256"].null_count,
        "rejected": count_rejects(rejects),
    }
    check_balance(accounting["records_in"], accounting["records_kept"], accounting["rejected"]["record"], "records")
    check_balance(accounting["images_in"], accounting["images_kept"], accounting["rejected"]["image"], "images")
    return kept, rejects, accounting, redelivered


def join_shard_files(
    record_paths, inventory_paths, batch_order, outdir, *, shard=None, rejected_key_paths=(), **options
) -> dict:
    """`join_shard` over files: writes `outdir/records.parquet`, `outdir/rejects.parquet` and
    `outdir/redeliveries.parquet` and `outdir/accounting.json`; returns the accounting. ``shard``: (index,
    n_shards) where an inventory file covers a group of shards: only its photos of that shard are joined (each
    of the group's other shards takes its own). ``rejected_key_paths``: the parse's ``rejected_keys`` files of
    this shard."""
    record_tables = [read_table(p, RECORD_SCHEMA) for p in record_paths]
    inventory_tables = [read_table(p, INVENTORY_SCHEMA) for p in inventory_paths]
    if shard is not None:
        index, n_shards = shard
        inventory_tables = [
            table.filter(pa.array(shard_of(table["processid"].to_pylist(), n_shards) == index))
            for table in inventory_tables
        ]
    rejected_keys = [
        p for path in rejected_key_paths for p in read_table(path, REJECTED_KEYS_SCHEMA)["processid"].to_pylist()
    ]
    kept, rejects, accounting, redelivered = join_shard(
        record_tables, inventory_tables, batch_order, rejected_keys=rejected_keys, **options
    )
    outdir = Path(outdir)
    write_table(kept, outdir / "records.parquet")
    write_table(rejects, outdir / "rejects.parquet")
    write_table(redelivered, outdir / "redeliveries.parquet")
    write_json(accounting, outdir / "accounting.json")
    return accounting
