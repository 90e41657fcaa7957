"""The contracts every stage agrees on: record, ingested, reject and release columns, ranks, splits,
image packages and statuses, shard keys.

A *record* is one specimen row from a BOLD export, mapped to the columns below whatever
layout it came in. Values are kept as they came (only missing-value tokens become null);
cleaning belongs to later stages. Lineage columns say where each row came from.
"""

from __future__ import annotations

import hashlib
import unicodedata

import numpy as np
import pyarrow as pa

# pandas read_csv's default missing-value strings (pandas._libs.parsers.STR_NA_VALUES): what a released CSV's
# reader takes for missing. A label spelt like one must be missing in our tables too, or the CSV re-splits otherwise.
CSV_NA_STRINGS = frozenset(
    ("", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN", "<NA>", "N/A")
    + ("NA", "NULL", "NaN", "None", "n/a", "nan", "null")
)

RANKS = ("phylum", "class", "order", "family", "subfamily", "genus", "species")

# What curation reads as no label or BIN: BOLD's placeholders, and every string a CSV reader takes for missing
# (``#N/A``, ``<NA>``...: kept as a name, it would be a genus in our tables but missing in the released CSV, and the
# CSV would re-split otherwise). Ingest compares two copies of a record so too.
MISSING_TOKENS = frozenset(
    {"", "none", "not_classified", "not classified", "no_data", "no data", "na", "n/a", "n.a.", "nan", "null", "-"}
    | {"?", "unknown", "unidentified", "undetermined", "incertae sedis"}  # said in words: no label
    | {token.lower() for token in CSV_NA_STRINGS}
)
# The same without their closing dot: "n.a" is read as "n.a."
MISSING_TOKENS_UNDOTTED = frozenset(token.rstrip(".") for token in MISSING_TOKENS)

# Content fields: what a record says about the specimen. Two rows with the same
# processid and equal content fields are the same record delivered twice.
CONTENT_FIELDS = (
    "processid",
    "sampleid",
    "record_id",
    *RANKS,
    "bin_uri",
    "nucleotides",
    "marker_code",
    "country",
    "province_state",
    "coord_raw",
    "lat",
    "lon",
)

# What two deliveries of one specimen are compared on: the layout-specific spellings
# (record_id, coord_raw text) are left out, so a v4 and a BCDM export of one record agree.
SIGNATURE_FIELDS = tuple(f for f in CONTENT_FIELDS if f not in ("record_id", "coord_raw"))

LINEAGE_FIELDS = ("batch", "source_file", "source_sha256", "source_layout", "source_line")

RECORD_SCHEMA = pa.schema(
    [pa.field(name, pa.float64() if name in ("lat", "lon") else pa.string()) for name in CONTENT_FIELDS]
    + [
        pa.field("batch", pa.string()),
        pa.field("source_file", pa.string()),
        pa.field("source_sha256", pa.string()),
        pa.field("source_layout", pa.string()),
        pa.field("source_line", pa.int64()),
    ]
)

# What ingest hands the later stages: a record joined with its one photo.
IMAGE_COLUMNS = [
    pa.field("image_batch", pa.string()),
    pa.field("image_path", pa.string()),
    pa.field("image_sha256", pa.string()),
    pa.field("image_bytes", pa.int64()),
    pa.field("image_format", pa.string()),
    pa.field("image_width", pa.int64()),
    pa.field("image_height", pa.int64()),
]
INGESTED_SCHEMA = pa.schema(list(RECORD_SCHEMA) + IMAGE_COLUMNS)

# The eight published splits, in the published order.
SPLITS = ("pretrain", "train", "val", "test", "key_unseen", "val_unseen", "test_unseen", "other_heldout")
LABELLED_SPLITS = ("train", "val", "test", "key_unseen", "val_unseen", "test_unseen")

# The four image packages, in the published order.
IMAGE_PACKAGES = ("original_full", "cropped", "original_256", "cropped_256")
# Image-stage statuses of a photo that was cropped and can be released (README: the full list).
USABLE_IMAGE_STATUSES = ("ok", "touches_edge", "multiple_candidates")

# The 23 columns of the published metadata CSV, in order.
RELEASE_COLUMNS = (
    "processid",
    "sampleid",
    "taxon",
    *RANKS,
    "dna_bin",
    "dna_barcode",
    "country",
    "province_state",
    "coord-lat",
    "coord-lon",
    "image_measurement_value",
    "area_fraction",
    "scale_factor",
    "inferred_ranks",
    "split",
    "index_bioscan_1M_insect",
    "chunk",
)

# One table holds every rejected input, records and images alike, so an auditor reads one file.
REJECT_SCHEMA = pa.schema(
    [
        pa.field("kind", pa.string()),  # "record" or "image"
        pa.field("reason", pa.string()),
        pa.field("detail", pa.string()),
        pa.field("processid", pa.string()),
        pa.field("batch", pa.string()),
        pa.field("source_file", pa.string()),
        pa.field("source_line", pa.int64()),
        pa.field("image_path", pa.string()),
        pa.field("image_sha256", pa.string()),
        pa.field("raw", pa.string()),
    ]
)

# Reason codes, documented in README; tests check the planted faults land on these.
RECORD_REASONS = {
    "unparseable_row": "the line does not have the header's number of tab-separated fields, is not UTF-8, or holds "
    "a control character (its processid is the line's processid field where that reads as one)",
    "missing_processid": "no processid, so the row cannot be keyed",
    "invalid_processid": "a path separator in the processid (it names the record's files), or a processid CSV "
    "readers take for missing (NA, null, NaN)",
    "unsupported_marker": "a marker other than the configured ones (COI-5P by default), or a sequence without a "
    "marker code",
    "other_marker": "the specimen's row for a marker listed in ingest.markers after the marker of another of its "
    "rows in the same delivery (one record per specimen: the first-listed marker's)",
    "duplicate_record": "same processid and same content as a row kept earlier",
    "duplicate_conflict": "same processid as another row with different content in the same delivery (or in any "
    "delivery, policy: reject)",
    "superseded": "same processid as a row in a later batch, which wins (policy: latest)",
    "later_delivery": "same processid as a row in an earlier batch, which wins (policy: first)",
    "no_image": "no image file names this processid",
    "image_rejected": "every image of this processid was rejected (see the image rejects)",
}
IMAGE_REASONS = {
    "unrecognised_name": "the file name does not match the image name pattern",
    "unreadable_name": "the file name is not UTF-8",
    "link_outside": "a symbolic link to a file or folder outside the image folder (not followed)",
    "broken_link": "a symbolic link to nothing",
    "link_loop": "a symbolic link that leads back to itself through links",
    "not_a_file": "a named pipe, socket or device in the image folder, not a regular file (never opened)",
    "unreadable_file": "the file could not be read (permission denied, an I/O error): the detail says which",
    "changed_while_read": "the file changed while it was read (still being written?): run again once it is complete",
    "empty_file": "zero bytes",
    "undecodable": "not a readable JPEG/PNG/TIFF, or its data stops before the end marker",
    "no_record": "no record has this processid",
    "record_rejected": "its record was rejected (see the record rejects)",
    "duplicate_image": "another file of the same processid has the same bytes",
    "conflicting_images": "the processid has several images with different bytes in one delivery (or in any, "
    "policy: reject)",
    "superseded": "a later batch delivers another image for this processid (policy: latest)",
    "later_delivery": "an earlier batch delivered another image for this processid (policy: first)",
}


# What a later (or, under duplicate_policy first, an earlier) delivery of a record replaced, field by field.
REDELIVERY_SCHEMA = pa.schema(
    [
        pa.field("processid", pa.string()),  # as the kept record spells it
        pa.field("field", pa.string()),
        pa.field("old", pa.string()),  # the value the replaced delivery had
        pa.field("new", pa.string()),  # the value kept
        pa.field("old_source", pa.string()),  # batch:file:line
        pa.field("new_source", pa.string()),
        # the policy that chose: superseded (latest) or later_delivery (first); coordinates_refused: a site ingest
        # could not take (field coord: old is the text as delivered, from one source row)
        pa.field("rule", pa.string()),
    ]
)


def processid_key(processid: str) -> str:
    """What makes two processids the same record: BOLD's ids are upper case, and ``BSCN1-21`` and ``bscn1-21``
    would name the same files on a case-insensitive file system, so case does not tell records apart."""
    return processid.upper()


# Every Unicode whitespace: RE2's \s is ASCII-only (no \v, NBSP, ideographic space, line separators).
SEQUENCE_WHITESPACE = r"[\s\x{0b}\x{85}\p{Z}]"
# What layouts write around one sequence (v4 and BCDM-2024 pad with alignment gaps, BCDM-2023 does not, any may
# wrap or upper-case it): removed before two deliveries' copies are compared, as barcode cleaning removes it.
SEQUENCE_NOISE = rf"(?:{SEQUENCE_WHITESPACE}|[.\-])+"


def comparable_sequences(values, trim_end_n: bool = True) -> np.ndarray:
    """Each raw sequence without ``SEQUENCE_NOISE``, upper-cased, and without the Ns at its ends where the barcode
    step trims them (``trim_end_n``, as ``barcodes.trim_end_n``; object array, None stays): what two layouts'
    copies of one record must agree on. Two copies that differed only in end Ns the barcode step trims were a
    conflict, and the record was lost."""
    import pandas as pd
    import pyarrow.compute as pc

    given = pa.array(pd.Series(values, dtype=object), pa.string(), from_pandas=True)
    bases = pc.utf8_upper(pc.replace_substring_regex(given, SEQUENCE_NOISE, ""))
    if trim_end_n:
        bases = pc.replace_substring_regex(bases, r"^N+|N+$", "")
    return bases.to_numpy(zero_copy_only=False)


# Unicode format characters (zero-width space and joiners, word joiner, BOM...): invisible, so pasted into a
# processid they would make another record. RE2 syntax (pyarrow); ``strip_invisible`` is the Python side.
INVISIBLE_CHARACTERS = r"\p{Cf}"


def strip_invisible(text: str) -> str:
    return "".join(ch for ch in text if unicodedata.category(ch) != "Cf")


def spelled_processid(text: str) -> str:
    """A processid as ingest spells records': invisible characters and surrounding white space removed, Unicode NFC
    (an "É" typed as E + accent is the record's "É"). ``spelled_processids`` does a whole column."""
    return unicodedata.normalize("NFC", strip_invisible(text).strip())


def spelled_processids(processids):
    """``spelled_processid`` of an Arrow string column, in Arrow (millions of records: no Python call per id)."""
    import pyarrow.compute as pc

    visible = pc.replace_substring_regex(processids, INVISIBLE_CHARACTERS, "")
    return pc.utf8_normalize(pc.utf8_trim_whitespace(visible), form="NFC")


def processid_keys(processids) -> np.ndarray:
    """``processid_key`` of each processid as ingest spells it (``spelled_processids``): how a table written
    elsewhere (a previous release's freeze file, a corrections table, edited by hand) finds its records. Object
    array; None stays."""
    import pandas as pd

    given = pa.array(pd.Series(processids, dtype=object), pa.string(), from_pandas=True)  # NaN, None: missing
    ids = pd.Series(spelled_processids(given).to_numpy(zero_copy_only=False), dtype=object)
    return ids.str.upper().to_numpy(dtype=object)  # Python's upper, as processid_key's


def repeated_values(column) -> list[tuple]:
    """(value, count) of each value an Arrow column holds more than once, sorted by value (missing first): the
    records a table names twice. In Arrow: a release's tables hold millions."""
    import pyarrow.compute as pc

    counts = pc.value_counts(column)
    many = counts.filter(pc.greater(counts.field("counts"), 1))
    pairs = zip(many.field("values").to_pylist(), many.field("counts").to_pylist())
    return sorted(pairs, key=lambda pair: (pair[0] is not None, pair[0] or ""))


def shard_of(processids: list[str] | np.ndarray, n_shards: int) -> np.ndarray:
    """Stable shard number per processid: md5 of its key (``processid_key``), first 8 hex digits, modulo n_shards.

    md5 (not Python's hash) so the key is the same on every machine and run, and a record
    stays in its shard whatever batch or order it arrives in; processids that differ only
    by case meet in one shard, where the join treats them as one.
    """
    keys = np.fromiter(
        (int(hashlib.md5(processid_key(p).encode("utf-8")).hexdigest()[:8], 16) for p in processids),
        dtype=np.uint64,
        count=len(processids),
    )
    return (keys % np.uint64(n_shards)).astype(np.int64)


def shard_name(shard: int) -> str:
    return f"shard-{shard:03d}"


def shard_groups(n_shards: int, group_size: int) -> dict[str, range]:
    """Consecutive record shards in groups of ``group_size`` (the last may hold fewer), by name: a group of one
    shard is named as the shard (``shard-007``), a larger one by its range (``shards-000-015``). Photo jobs run
    per image batch and group: where a batch holds few photos per shard, one job per shard would mostly pay
    start-up. ``workflow/rules/common.smk`` names the groups the same way (it does not import this package)."""
    if n_shards < 1 or group_size < 1:
        raise ValueError(f"shard_groups: {n_shards} shards in groups of {group_size}")
    groups = {}
    for first in range(0, n_shards, group_size):
        last = min(first + group_size, n_shards) - 1
        name = shard_name(first) if first == last else f"shards-{first:03d}-{last:03d}"
        groups[name] = range(first, last + 1)
    return groups


def empty_rejects() -> pa.Table:
    return REJECT_SCHEMA.empty_table()


def make_rejects(**columns) -> pa.Table:
    """Build a reject table from the given columns; columns left out are null."""
    n = max(len(v) for v in columns.values() if not isinstance(v, str))
    arrays = []
    for field in REJECT_SCHEMA:
        value = columns.get(field.name)
        if value is None:
            arrays.append(pa.nulls(n, field.type))
        elif isinstance(value, str):
            arrays.append(pa.array([value] * n, field.type))
        else:
            arrays.append(
                pa.array(value, field.type)
                if not isinstance(value, pa.Array | pa.ChunkedArray)
                else value.cast(field.type)
            )
    return pa.Table.from_arrays(arrays, schema=REJECT_SCHEMA)


# The statistics stage's summary file, and its key listing the tables and figures written with it (what a release
# ships of the stage's folder).
STATS_JSON = "stats.json"
STATS_FILES_KEY = "files"
