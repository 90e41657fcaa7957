"""Rejected inputs, as every stage writes them (``REJECT_SCHEMA``) and as one table shows them all."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from bioscan_rebuild.core.io import read_table
from bioscan_rebuild.core.schemas import INGESTED_SCHEMA, REJECT_SCHEMA

REJECT_ORDER = [("kind", "ascending"), ("reason", "ascending"), ("processid", "ascending")]

# A record a later stage refused (a bad barcode, a photo with no specimen) leaves with its photo: its row takes the
# export row and the photo (name and sha256) ingest joined to it, so that every rejected photo is in the file.
SOURCE_OF_REJECTED = ("batch", "source_file", "source_line", "image_path", "image_sha256")


def with_sources(rejects: pa.Table, records) -> pa.Table:
    """``rejects`` (sorted by ``REJECT_ORDER``) with the source columns of each record row that lacks them
    (``source_file`` empty: a stage after ingest wrote it) filled from the ingested ``records`` shards; read shard
    by shard, keeping only those records."""
    rejects = rejects.sort_by(REJECT_ORDER)
    lacking = pc.and_(pc.equal(rejects["kind"], "record"), pc.is_null(rejects["source_file"]))
    lacking = pc.and_(lacking, pc.is_valid(rejects["processid"]))
    wanted = pc.unique(rejects.filter(lacking)["processid"])
    if not len(wanted) or not records:
        return rejects
    found = pa.concat_tables(
        read_table(path, INGESTED_SCHEMA, columns=["processid", *SOURCE_OF_REJECTED]).filter(
            pc.is_in(pc.field("processid"), wanted)
        )
        for path in records
    )
    # only those rows leave Arrow: a full redelivery rejects a row per record (5M)
    frame = rejects.filter(lacking).to_pandas()
    facts = found.to_pandas().drop_duplicates("processid").set_index("processid")
    for name in SOURCE_OF_REJECTED:
        frame[name] = frame[name].fillna(facts[name].reindex(frame["processid"]).set_axis(frame.index))
    filled = pa.Table.from_pandas(frame, schema=REJECT_SCHEMA, preserve_index=False)
    return pa.concat_tables([rejects.filter(pc.invert(lacking)), filled]).sort_by(REJECT_ORDER)
