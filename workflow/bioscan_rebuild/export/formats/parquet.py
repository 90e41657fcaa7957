"""``parquet``: the metadata table per split in the Hugging Face layout (layout.PARQUET_DIR), and
:class:`ShardedParquet`, the size-bounded Parquet writer the images Parquet uses too."""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from bioscan_rebuild.core.params import ExportOptions
from bioscan_rebuild.core.schemas import SPLITS
from bioscan_rebuild.export.formats.base import ExportContext, Format
from bioscan_rebuild.export.layout import PARQUET_DIR
from bioscan_rebuild.export.spool import DICTIONARY_COLUMNS, dictionary_schema, iter_split, release_columns


class ShardedParquet:
    """``data/{split}-{i:05d}-of-{n:05d}.parquet`` with row groups of about ``row_group_bytes``; files roll over
    at about ``file_bytes`` and are renamed with the final count when closed. Both sizes are of the in-memory
    (uncompressed Arrow) data: the files on disk are smaller by the compression ratio."""

    def __init__(self, folder: Path, split: str, schema: pa.Schema, options: ExportOptions, **writer_options):
        self.folder, self.split, self.schema, self.options = folder, split, schema, options
        self.writer_options = writer_options
        self.buffer: list[pa.Table] = []
        self.buffered = 0
        self.files: list[Path] = []
        self.writer = None
        self.written = 0

    def _open(self):
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / f"{self.split}-{len(self.files):05d}.partial"
        self.files.append(path)
        self.writer = pq.ParquetWriter(path, self.schema, **self.writer_options)
        self.written = 0

    def _flush(self):
        if not self.buffer:
            return
        if self.writer is None:
            self._open()
        table = pa.concat_tables(self.buffer).combine_chunks()
        self.writer.write_table(table, row_group_size=table.num_rows)
        self.written += self.buffered
        self.buffer, self.buffered = [], 0
        if self.written >= self.options.file_bytes:
            self.writer.close()
            self.writer = None

    def write(self, table: pa.Table):
        if not table.num_rows:
            return
        per_row = max(1, table.nbytes // table.num_rows)
        step = max(1, self.options.row_group_bytes // per_row)
        for start in range(0, table.num_rows, step):  # a big table becomes several row groups
            part = table.slice(start, step)
            self.buffer.append(part)
            self.buffered += part.num_rows * per_row
            if self.buffered >= self.options.row_group_bytes:
                self._flush()

    def close(self) -> list[Path]:
        self._flush()
        if self.writer is not None:
            self.writer.close()
        final = []
        for i, path in enumerate(self.files):
            target = self.folder / f"{self.split}-{i:05d}-of-{len(self.files):05d}.parquet"
            os.replace(path, target)
            final.append(target)
        return final


def write_parquet(spool: Path, folder: Path, options: ExportOptions) -> dict:
    """The metadata Parquet shards of every split: split -> file names."""
    schema = dictionary_schema()
    files = {}
    for split in SPLITS:
        writer = None
        for table in iter_split(spool, split):
            if writer is None:
                writer = ShardedParquet(
                    folder, split, schema, options, compression="zstd", use_dictionary=list(DICTIONARY_COLUMNS)
                )
            writer.write(release_columns(table).cast(schema))
        if writer is not None:
            files[split] = [p.name for p in writer.close()]
    return files


def _write(context: ExportContext) -> dict:
    write_parquet(context.spool, context.root / PARQUET_DIR, context.options)
    return {}


FORMAT = Format("parquet", _write)
