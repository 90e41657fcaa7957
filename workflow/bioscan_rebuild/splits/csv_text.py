"""CSV files as raw text, with pyarrow: every cell a string exactly as the file holds it (no missing values, no
number parsing), read in small batches, and written back as pandas' ``to_csv`` writes strings.

Reading: ``pyarrow.csv`` with every column typed ``string``, nulls off (an empty cell and ``NA`` stay the strings
they are), quoted line breaks allowed. Compressed files are read as pandas reads them (by the name's suffix).

Writing: pyarrow's own CSV writer quotes every string cell, so the lines are rendered with Arrow kernels instead,
in pandas' (Python ``csv.QUOTE_MINIMAL``) style: a cell is quoted only when it holds a ``"`` (doubled inside),
a comma or a line break (``\\n`` or ``\\r``; Python 3.11's writer leaves a lone ``\\r`` bare, which reads back as
a line break, so here it is quoted too). Lines end with ``\\n``. A file pandas wrote (the published metadata)
therefore comes back byte for byte, apart from the cells the caller replaces; any other file comes back with
the same values.
"""

from __future__ import annotations

import gzip
import lzma
import os
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
from pandas.io.common import get_handle, infer_compression

from bioscan_rebuild.core.errors import InputError
from bioscan_rebuild.core.schemas import CSV_NA_STRINGS as NA_STRINGS

_NA_VALUES = pa.array(sorted(NA_STRINGS), pa.string())

# The streaming reader keeps a few dozen blocks in flight: small blocks bound its memory.
BLOCK_BYTES = 4 << 20
_ARROW_CODECS = {"gzip", "bz2", "zstd"}  # decompressed by Arrow itself; pandas' others (zip, xz, tar) by pandas
_SPECIAL_BYTES = np.array([ord(c) for c in '",\n\r'], dtype=np.uint8)
_LAST_SPECIAL = max(_SPECIAL_BYTES)  # ',': letters, digits and most punctuation sort above every special byte


def missing_as_null(column: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    """``column`` with read_csv's default missing-value strings as nulls (a copy)."""
    return pc.if_else(pc.is_in(column, value_set=_NA_VALUES), pa.scalar(None, column.type), column)


def is_missing(column: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """Per cell, whether it is one of read_csv's default missing-value strings. Only cells as short as the
    longest of them are looked up (a barcode column is mostly long cells)."""
    lengths = pc.binary_length(column).to_numpy(zero_copy_only=False)
    short = np.flatnonzero(lengths <= max(map(len, NA_STRINGS)))
    out = np.zeros(len(lengths), dtype=bool)
    if len(short):
        found = pc.is_in(pc.take(column, pa.array(short)), value_set=_NA_VALUES.cast(column.type))
        out[short] = found.to_numpy(zero_copy_only=False)
    return out


class CsvText:
    """A CSV file (plain or compressed) whose cells are read as raw text; ``what`` names it in errors."""

    def __init__(self, path, what: str):
        self.path, self.what = Path(path), what
        self._check_head()
        with self._errors(), self._source() as source:
            reader = pacsv.open_csv(
                source,
                read_options=pacsv.ReadOptions(block_size=BLOCK_BYTES),
                parse_options=pacsv.ParseOptions(newlines_in_values=True),
            )
            self.columns: list[str] = reader.schema.names
            reader.close()

    def _check_head(self) -> None:
        with self._errors(), get_handle(self.path, "rb", compression="infer", is_text=False) as handles:
            head = handles.handle.read(1 << 16)
        if not head.strip():
            raise InputError(f"{self.path}: empty file: not {self.what}")
        if b"\x00" in head:
            raise InputError(
                f"{self.path}: binary data (NUL bytes): not {self.what}; is it compressed, or another format?"
            )

    @contextmanager
    def _source(self):
        if infer_compression(str(self.path), "infer") in (None, *_ARROW_CODECS):
            yield str(self.path)  # Arrow opens it, and decompresses by the suffix
            return
        with get_handle(self.path, "rb", compression="infer", is_text=False) as handles:
            yield handles.handle

    @contextmanager
    def _errors(self):
        try:
            yield
        except (pa.ArrowInvalid, UnicodeDecodeError) as error:
            raise InputError(f"{self.path}: not {self.what} ({str(error).splitlines()[0]})") from None
        except (EOFError, zlib.error, zipfile.BadZipFile, lzma.LZMAError) as error:
            raise InputError(f"{self.path}: compressed data cut short or corrupt ({error}): not {self.what}") from None
        except OSError as error:
            if error.filename is not None:  # the file itself (missing, unreadable): named as such by the caller
                raise
            # a decompressor's complaint (a truncated gzip, a gzip named .bz2) names no file
            raise InputError(f"{self.path}: compressed data cut short or corrupt ({error}): not {self.what}") from None

    def batches(self, columns: list[str] | None = None, as_bytes=()) -> Iterator[pa.RecordBatch]:
        """The rows in file order, ``BLOCK_BYTES`` of the file at a time: ``columns`` only (all by default).
        Columns named in ``as_bytes`` come as binary, unchecked (UTF-8 checking is most of a long column's cost)."""
        types = {name: pa.binary() if name in as_bytes else pa.string() for name in self.columns}
        convert = pacsv.ConvertOptions(
            column_types=types,
            include_columns=columns,
            strings_can_be_null=False,
            quoted_strings_can_be_null=False,
        )
        with self._errors(), self._source() as source:
            reader = pacsv.open_csv(
                source,
                read_options=pacsv.ReadOptions(block_size=BLOCK_BYTES),
                parse_options=pacsv.ParseOptions(newlines_in_values=True),
                convert_options=convert,
            )
            yield from reader

    def text(self, cells: pa.Array) -> pa.Array:
        """Cells read ``as_bytes`` as text, with the reader's UTF-8 check and its error."""
        with self._errors():
            return cells.cast(pa.string())

    def read(self, columns: list[str]) -> pa.Table:
        """``columns`` of every row (for small tables)."""
        batches = list(self.batches(columns))
        if not batches:
            return pa.table({name: pa.array([], pa.string()) for name in columns})
        return pa.Table.from_batches(batches)


def _quote_rows(cells: pa.StringArray) -> np.ndarray:
    """Positions of the cells that need quotes, found on the bytes (no per-cell work when there are none)."""
    data_buffer = cells.buffers()[2]
    if data_buffer is None or len(cells) == 0:
        return np.zeros(0, dtype=np.int64)
    offsets = _offsets(cells)
    data = np.frombuffer(data_buffer, dtype=np.uint8)[offsets[0] : offsets[-1]]
    low = np.flatnonzero(data <= _LAST_SPECIAL)
    hits = low[np.isin(data[low], _SPECIAL_BYTES)] + offsets[0]
    return np.unique(np.searchsorted(offsets, hits, side="right") - 1)


def _quoted(cells: pa.Array) -> pa.Array:
    rows = _quote_rows(cells)
    if not len(rows):
        return cells
    changed = pc.take(cells, pa.array(rows))
    changed = pc.binary_join_element_wise('"', pc.replace_substring(changed, '"', '""'), '"', "")
    mask = np.zeros(len(cells), dtype=bool)
    mask[rows] = True
    return pc.replace_with_mask(cells, pa.array(mask), changed)


def render_header(names: list[str]) -> bytes:
    return render_lines([pa.array([name], pa.string()) for name in names]).to_pybytes()


def _offsets(cells: pa.Array) -> np.ndarray:
    width = np.int64 if pa.types.is_large_string(cells.type) else np.int32
    itemsize = np.dtype(width).itemsize
    return np.frombuffer(cells.buffers()[1], dtype=width, count=len(cells) + 1, offset=itemsize * cells.offset)


def render_lines(columns: list[pa.Array]) -> pa.Buffer:
    """One CSV line per row (``\\n`` after each), as one buffer: the cells quoted as the module says."""
    cells = [_quoted(column) for column in columns]
    cells[-1] = pc.binary_join_element_wise(cells[-1], "\n", "")
    lines = pc.binary_join_element_wise(*cells, ",") if len(cells) > 1 else cells[0]
    offsets = _offsets(lines)
    return lines.buffers()[2][offsets[0] : offsets[-1]]


@contextmanager
def csv_writer(path):
    """A binary handle to write CSV bytes to ``path``, compressed as pandas would by the name; the file appears
    only when the block ends without an error (written beside it, then renamed)."""
    path = Path(path)
    method = infer_compression(str(path), "infer")
    if method == "tar":  # a tar member carries its write time and name: the bytes would differ every run
        raise InputError(f"{path}: write the CSV plain or as .gz, .bz2, .xz, .zst or .zip, not into a tar archive")
    if path.is_dir():  # the rename's error named the hidden partial file, not the folder given
        raise InputError(f"{path}: a folder: give the name of a file to write")
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    try:
        with _compressed(partial, method, member=path.name.removesuffix(".zip")) as handle:
            yield handle
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


@contextmanager
def _compressed(partial: Path, method: str | None, member: str):
    """A binary handle writing ``partial`` compressed by ``method``; the same bytes on every run: gzip and zip
    carry no write time and no temporary name (pandas would put both in); bz2, xz and zstd carry neither anyway
    (tar is refused by ``csv_writer``)."""
    if method == "gzip":
        with open(partial, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as handle:
            yield handle
    elif method == "zip":  # one member, named as pandas names it
        with zipfile.ZipFile(partial, "w") as archive:
            info = zipfile.ZipInfo(member, date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            with archive.open(info, "w", force_zip64=True) as handle:
                yield handle
    else:
        with get_handle(partial, "wb", compression={"method": method} if method else None, is_text=False) as handles:
            yield handles.handle
