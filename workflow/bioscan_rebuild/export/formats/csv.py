"""``csv``: the 23-column metadata CSV (layout.CSV_PATH), every split in published order."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.csv as pacsv

from bioscan_rebuild.core.schemas import SPLITS
from bioscan_rebuild.export.formats.base import ExportContext, Format
from bioscan_rebuild.export.layout import CSV_PATH
from bioscan_rebuild.export.spool import SPOOL_SCHEMA, iter_split, release_columns


def write_csv_part(table: pa.Table, handle, header: bool) -> None:
    options = pacsv.WriteOptions(include_header=header, quoting_style="needed")
    pacsv.write_csv(release_columns(table), handle, options)


def write_csv(context: ExportContext) -> dict:
    path = context.root / CSV_PATH
    path.parent.mkdir(parents=True, exist_ok=True)
    with pa.OSFile(str(path), "wb") as handle:
        first = True
        for split in SPLITS:
            for table in iter_split(context.spool, split):
                write_csv_part(table, handle, first)
                first = False
        if first:  # no records: still the header
            write_csv_part(SPOOL_SCHEMA.empty_table(), handle, True)
    return {}


FORMAT = Format("csv", write_csv)
