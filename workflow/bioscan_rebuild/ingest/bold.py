"""Read BOLD exports in the three real layouts into the canonical record schema.

Layouts, detected from the header line:
- ``v4``: BOLD v4 "combined" TSV (``*_name`` ranks, ``lat``/``lon``, ``nucleotides``, ``markercode``).
- ``bcdm2023``: BOLD data package 2023 (``nucraw``, ``coord`` as ``(lat,lon)``, ``province``).
- ``bcdm2024``: BOLD data package 2024 (``nuc``, ``coord`` as ``[lat, lon]``, ``country/ocean``,
  ``record_id``; one row per specimen *and marker*).

Guarantees: every data line of the file is either returned as a record (with its physical line
number) or returned as a reject with a reason; blank lines are counted. The file is read in
blocks with vectorised Arrow string kernels, so memory is bounded by the block size and the
output, not by Python objects per cell.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from bioscan_rebuild.core.errors import InputError
from bioscan_rebuild.core.io import file_sha256
from bioscan_rebuild.core.params import IngestParams
from bioscan_rebuild.core.schemas import (
    CONTENT_FIELDS,
    CSV_NA_STRINGS,
    INVISIBLE_CHARACTERS,
    RECORD_SCHEMA,
    REJECT_SCHEMA,
    make_rejects,
    spelled_processids,
)

DEFAULT_MISSING_VALUES = IngestParams().missing_values
DEFAULT_MARKERS = IngestParams().markers
BLOCK_BYTES = 32 << 20
RAW_PREVIEW_CHARS = 2000

# canonical field -> source column, per layout. `coord` is handled separately.
LAYOUTS: dict[str, dict[str, str]] = {
    "v4": {
        "processid": "processid",
        "sampleid": "sampleid",
        "phylum": "phylum_name",
        "class": "class_name",
        "order": "order_name",
        "family": "family_name",
        "subfamily": "subfamily_name",
        "genus": "genus_name",
        "species": "species_name",
        "bin_uri": "bin_uri",
        "nucleotides": "nucleotides",
        "marker_code": "markercode",
        "country": "country",
        "province_state": "province_state",
        "lat": "lat",
        "lon": "lon",
    },
    "bcdm2023": {
        "processid": "processid",
        "sampleid": "sampleid",
        "phylum": "phylum",
        "class": "class",
        "order": "order",
        "family": "family",
        "subfamily": "subfamily",
        "genus": "genus",
        "species": "species",
        "bin_uri": "bin_uri",
        "nucleotides": "nucraw",
        "marker_code": "marker_code",
        "country": "country",
        "province_state": "province",
        "coord_raw": "coord",
    },
    "bcdm2024": {
        "processid": "processid",
        "sampleid": "sampleid",
        "record_id": "record_id",
        "phylum": "phylum",
        "class": "class",
        "order": "order",
        "family": "family",
        "subfamily": "subfamily",
        "genus": "genus",
        "species": "species",
        "bin_uri": "bin_uri",
        "nucleotides": "nuc",
        "marker_code": "marker_code",
        "country": "country/ocean",
        "province_state": "province/state",
        "coord_raw": "coord",
    },
}
# Columns that tell the layouts apart (each set is unique to its layout).
SIGNATURES = {
    "v4": {"processid", "order_name", "nucleotides", "markercode", "lat", "lon"},
    "bcdm2023": {"processid", "nucraw", "marker_code", "coord", "province"},
    "bcdm2024": {"processid", "record_id", "nuc", "marker_code", "coord", "country/ocean"},
}


def _others_columns(layout: str) -> set[str]:
    """The signature columns of every layout but ``layout``."""
    return set().union(*(columns for name, columns in SIGNATURES.items() if name != layout))


class LayoutError(InputError):
    pass


# The first bytes of files an export is often packed in: they are refused with what they are.
ARCHIVES = {
    b"PK\x03\x04": "a zip archive (or an Excel .xlsx workbook)",
    b"\x1f\x8b": "gzip-compressed",
    b"BZh": "bzip2-compressed",
    b"\xfd7zXZ\x00": "xz-compressed",
    b"(\xb5/\xfd": "zstd-compressed",
    b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1": "an Excel .xls workbook",
}
ARCHIVE_FIX = "unpack it, or save the sheet as tab-separated UTF-8 text, and give that file"


def _wide_ascii(head: bytes, width: int) -> bool:
    """Whether ``head`` reads as mostly-ASCII text of ``width`` bytes a character (UTF-16: 2, UTF-32: 4): nearly
    every group one non-zero byte and the rest zeros, at the same end (an executable's NULs fall anywhere)."""
    groups = [head[i : i + width] for i in range(0, len(head) - width + 1, width)]
    zeros = bytes(width - 1)
    little = sum(group[0] != 0 and group[1:] == zeros for group in groups)
    big = sum(group[-1] != 0 and group[:-1] == zeros for group in groups)
    return len(groups) >= 4 and max(little, big) >= 0.9 * len(groups)


def check_export_bytes(head: bytes) -> None:
    """Refuse what cannot be a BOLD export before its header is read, with what to do about it."""
    if not head:
        raise LayoutError("empty file (0 bytes): not a BOLD export; was the download or copy cut short?")
    for magic, what in ARCHIVES.items():
        if head.startswith(magic):
            raise LayoutError(f"{what}, not a BOLD export's text: {ARCHIVE_FIX}")
    # UTF-32 first: its BOM starts as UTF-16's does, and 3 NULs per ASCII character (converted as UTF-16 it gives
    # a NUL after every character, refused again)
    if head.startswith((b"\xff\xfe\x00\x00", b"\x00\x00\xfe\xff")) or _wide_ascii(head[:64], 4):
        raise LayoutError(
            "UTF-32 text, not UTF-8: BOLD exports are UTF-8; convert it, e.g. iconv -f UTF-32 -t UTF-8 IN > OUT"
        )
    if head.startswith((b"\xff\xfe", b"\xfe\xff")) or (head[:64].count(b"\x00") > 8 and _wide_ascii(head[:64], 2)):
        raise LayoutError(
            "UTF-16 text, not UTF-8: BOLD exports are UTF-8; convert it, e.g. iconv -f UTF-16 -t UTF-8 IN > OUT"
        )
    lines = head.replace(b"\r", b"\n").split(b"\n")
    # A NUL in a field is a damaged line (refused on its own where it lies in a column that is read, however many
    # NULs it holds); one in the header, or in many lines that are not even the header's shape, is a binary file.
    tabs = lines[0].count(b"\t")
    # a line of the header's shape is a damaged record, when the first line can be a header at all (a PDF's first
    # line has no tab, and neither have its lines of binary data)
    shaped = tabs >= len(min(SIGNATURES.values(), key=len)) - 1
    damaged = sum(b"\x00" in line and not (shaped and line.count(b"\t") == tabs) for line in lines[1:-1] if line)
    if b"\x00" in lines[0] or damaged > max(1, len(lines) // 10):
        raise LayoutError("binary data (NUL bytes): not a tab-separated BOLD export")


def detect_layout(header: list[str]) -> str:
    seen: dict[str, int] = {}
    if not any(header):
        raise LayoutError(
            "no header line: the file holds no column names (empty, a byte-order mark alone, or blank lines)"
        )
    if len(header) == 1 and header[0].count(",") >= len(min(SIGNATURES.values(), key=len)) - 1:
        raise LayoutError(
            "the header has commas but no tab: a comma-separated file? BOLD exports are tab-separated; save it "
            "as tab-separated text"
        )
    for position, name in enumerate(header, 1):
        if not name:  # a column without a name (a spreadsheet's trailing empty columns) is never read
            continue
        if name in seen:  # which of the two would be read is arbitrary: refuse rather than guess
            raise LayoutError(
                f"column {name!r} appears twice in the header (columns {seen[name]} and {position}); "
                "remove or rename one"
            )
        seen[name] = position
    columns = set(header)
    matches = [name for name, signature in SIGNATURES.items() if signature <= columns]
    if len(matches) == 1:
        missing = sorted(set(LAYOUTS[matches[0]].values()) - columns)
        _refuse_another_case(matches[0], missing, header)
        if missing:  # reading them as empty would blank a field of every record without a word
            raise LayoutError(
                f"a {matches[0]} export, but the header lacks columns {missing}; if the export truly has no such "
                "data, add them as empty columns"
            )
        return matches[0]
    if len(matches) > 1:  # columns of two layouts in one header (one edited into the other)
        raise LayoutError(
            f"the header has the columns of more than one BOLD export layout ({', '.join(matches)}): "
            + "; ".join(f"{name} alone has {sorted(SIGNATURES[name] - _others_columns(name))}" for name in matches)
            + "; keep the columns of one layout"
        )
    # "ProcessID", "SPECIES": a layout whose columns are all there in another case
    folded = {name.casefold() for name in header if name}
    for layout, signature in SIGNATURES.items():
        if {name.casefold() for name in signature} <= folded:
            _refuse_another_case(layout, sorted(set(LAYOUTS[layout].values()) - columns), header)
    closest = min(SIGNATURES, key=lambda name: len(SIGNATURES[name] - columns))
    raise LayoutError(
        f"not a known BOLD export layout; closest is {closest!r}, which also needs columns "
        f"{sorted(SIGNATURES[closest] - columns)}"
    )


def _refuse_another_case(layout: str, missing: list[str], header: list[str]) -> None:
    """A LayoutError naming the renames when columns the layout reads are in the header in another case only
    (adding them as empty columns, as the message for truly missing ones says, would blank every record's field)."""
    by_case = {name.casefold(): name for name in header if name}
    recased = [name for name in missing if name.casefold() in by_case]
    if recased:
        renames = ", ".join(f"{by_case[name.casefold()]!r} to {name!r}" for name in recased)
        raise LayoutError(
            f"a {layout} export whose column names differ from BOLD's in case: rename {renames} "
            "(names are matched exactly)"
        )


@dataclass
class ParseStats:
    layout: str = ""
    sha256: str = ""
    data_lines: int = 0
    blank_lines: int = 0
    records: int = 0
    rejects: dict[str, int] = field(default_factory=dict)
    coordinates_out_of_range: int = 0  # records whose lat/lon were blanked (the raw text stays in coord_raw)
    coordinates_unparseable: int = 0  # ... blanked because a given value was not a number (e.g. "1,5", "45 N")
    quoted_records: int = 0  # records with a read field in CSV quotes ("Quintana Roo"), which were taken off
    last_line_unterminated: bool = False  # no line break after the last line: the file may have been cut short
    last_line: int = 0  # the number of the last line that is not blank (0: none after the header)
    last_line_kept: bool = False  # whether that line became a record (else it has a reject row)


def _split_lines(
    path: Path, block_bytes: int, fields: frozenset[int] | None = None
) -> Iterator[tuple[int, list[bytes]]]:
    """Yield (line number of the first line, lines) in blocks. Every line ending counts: LF, CRLF (CRs doubled
    before the LF too) and a lone CR (old Mac exports, which would otherwise read as one header line and lose every
    row). The header's own ending is the file's. Where it is LF or CRLF, a lone CR inside a line (not at its start)
    is text of that line (a line break typed into a spreadsheet cell) unless it parts whole rows (``fields``: the
    header's field counts; a file of mixed endings), so that line numbers stay those line-based tools (sed, awk,
    editors) count. Where the header ends in a lone CR, an LF ends a line too (a line break typed into a cell of a
    CR file costs that row, not the file)."""
    line_no = 1
    tail = b""
    lf = None  # whether the header ends in LF (or CRLF): decided at its line break
    with open(path, "rb") as handle:
        while True:
            block = handle.read(block_bytes)
            if not block:
                break
            block = tail + block
            # a CR at the end may be the first half of a CRLF that the next block completes
            held = block.endswith(b"\r")
            block = block[:-1] if held else block
            if lf is None:
                lf = _header_ends_in_lf(block)
                if lf is None:  # the header's ending is not read yet: nothing is parted before it is known
                    tail = block + (b"\r" if held else b"")
                    continue
            block = _one_ending(block, lf)
            cut = block.rfind(b"\n")
            if cut < 0 and len(block) >= max(block_bytes, LONGEST_LINE) and b"\r" in block:
                # so long a stretch without LF is rows parted by CRs alone under an LF header: its CRs end lines
                # (held whole, it was scanned again with every block: hours and the file's size in memory)
                block = block.replace(b"\r", b"\n")
                cut = block.rfind(b"\n")
            if cut < 0:
                tail = block + (b"\r" if held else b"")
                continue
            tail = block[cut + 1 :] + (b"\r" if held else b"")
            lines = _rows_of(block[:cut].split(b"\n"), fields)
            yield line_no, lines
            line_no += len(lines)
    tail = _one_ending(tail, lf)
    if tail.endswith(b"\n"):  # the file's last line break
        tail = tail[:-1]
    elif lf:  # CRs that end a file of LF lines are its last line ending (a stray CR after its last LF: nothing)
        tail = tail.rstrip(b"\r")
    if tail:
        lines = _rows_of(tail.split(b"\n"), fields)
        yield line_no, lines


LONGEST_LINE = 1 << 24  # 16 MiB: no export line is so long (a 2 MB field is the longest seen)
BLANK_BYTES = b"\r\n\t \xef\xbb\xbf"  # what a line above the header may hold and still be blank (a BOM too)


def _header_ends_in_lf(block: bytes) -> bool | None:
    """Whether the header (the first line that is not blank) ends in LF or CR(s)LF (True) or a lone CR (False);
    None when ``block`` does not hold its ending yet."""
    start = len(block) - len(block.lstrip(BLANK_BYTES))
    if start == len(block):
        return None
    start = max(block.rfind(b"\n", 0, start), block.rfind(b"\r", 0, start)) + 1  # the header's line
    found = re.compile(rb"\r*\n|\r+").search(block, start)  # CRs doubled before an LF are an LF ending
    if found is None:
        return None
    if found.group().endswith(b"\n"):
        return True
    return None if found.end() == len(block) else False  # an LF may follow in the next block


def _one_ending(block: bytes, lf: bool | None) -> bytes:
    """Line endings as LF: CRLF (and CRs doubled before an LF) always, a lone CR too in a file whose header ends in
    one."""
    if not lf:
        return block.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    return re.sub(rb"\r+\n", b"\n", block)


def _rows_of(lines: list[bytes], fields: frozenset[int] | None) -> list[bytes]:
    """LF lines with a lone CR (few). CRs at a line's start end lines (blank ones: LF CR endings); a CR further in is
    text of its line, unless the header is not known yet, or the line is not one whole row and a part of it is
    (rows of a file of mixed endings: parted, each row by itself). A line of broken parts stays one line, as line
    tools count it, and is refused by its field count."""
    if not any(b"\r" in line for line in lines):
        return lines
    rows = []
    for line in lines:
        line = line.rstrip(b"\r")  # the file's last ending, a stray CR after its last LF
        rest = line.lstrip(b"\r")
        rows += [b""] * (len(line) - len(rest))
        if b"\r" in rest and (fields is None or _parts_whole_rows(rest, fields)):
            rows += rest.split(b"\r")
        else:
            rows.append(rest)
    return rows


def _parts_whole_rows(line: bytes, fields: frozenset[int]) -> bool:
    """Whether CRs in ``line`` part rows: the line is no whole row, and at least one of its parts is."""
    if line.count(b"\t") + 1 in fields:
        return False
    return any(part.count(b"\t") + 1 in fields for part in line.split(b"\r"))


def _decode(lines: list[bytes]) -> tuple[pa.Array, np.ndarray]:
    """Lines as an Arrow string array; lines that are not UTF-8 are flagged, their bad bytes written ``\\xE9``
    (so the reject's preview and detail can show them)."""
    raw = pa.array(lines, pa.binary())
    try:
        return pc.cast(raw, pa.string()), np.zeros(len(lines), bool)
    except pa.ArrowInvalid:
        decoded, bad = [], np.zeros(len(lines), bool)
        for i, line in enumerate(lines):
            try:
                decoded.append(line.decode("utf-8"))
            except UnicodeDecodeError:
                decoded.append(line.decode("utf-8", "backslashreplace"))
                bad[i] = True
        return pa.array(decoded, pa.string()), bad


_LAT_LON = r"^\s*[\(\[]\s*(?P<lat>[^,\s]+)\s*,\s*(?P<lon>[^\)\]\s]+)\s*[\)\]]\s*$"


def _to_float(values: pa.Array) -> pa.Array:
    """Parse decimal degrees; anything that is not a number becomes null (the raw text stays in coord_raw)."""
    numeric = pc.match_substring_regex(values, r"^\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*$")
    cleaned = pc.if_else(pc.fill_null(numeric, False), pc.utf8_trim_whitespace(values), pa.scalar(None, pa.string()))
    return pc.cast(cleaned, pa.float64())


def parse_coordinates(coord_raw: pa.Array) -> tuple[pa.Array, pa.Array]:
    """`(lat,lon)` or `[lat, lon]` text -> (lat, lon) float arrays; other text -> null."""
    parts = pc.extract_regex(coord_raw, _LAT_LON)
    return _to_float(pc.struct_field(parts, "lat")), _to_float(pc.struct_field(parts, "lon"))


# A field in CSV quotes: what a spreadsheet or CSV writer makes of a field when it saves the export again, and
# what BOLD writes for a note holding a quote (BCDM 2024: `"Microtendipes chloris ""var. lugubris"" Kieffer"`).
# The quotes are taken off and doubled quotes inside made single. A quoted field holding a tab or a line break
# is not read (one line per record): the line is unparseable_row, and its detail says so.
QUOTED_FIELD = r'^"((?:[^"]|"")*)"$'


def _unquote(values: pa.Array) -> tuple[pa.Array, pa.Array]:
    """Each field without its CSV quotes, and which fields had them."""
    if not pc.any(pc.starts_with(values, '"')).as_py():  # the common case, without a regex
        return values, pa.array(np.zeros(len(values), bool))
    quoted = pc.fill_null(pc.match_substring_regex(values, QUOTED_FIELD), False)
    if not pc.any(quoted).as_py():
        return values, quoted
    inner = pc.replace_substring(pc.replace_substring_regex(values, QUOTED_FIELD, r"\1"), '""', '"')
    return pc.if_else(quoted, inner, values), quoted


def _to_header_shape(text: pa.Array, n_fields: np.ndarray, n_columns: int, n_named: int) -> tuple[pa.Array, int]:
    """A header saved with a tab after its last name (unnamed columns at its end, never read) while most lines of
    the block lack them: those lines, padded to the header's field count. Returns the text and that habit, the
    lines' own field count (the header's where there is none): a line of the header's count in such a block holds a
    field more inside it (a stray tab), and the caller refuses it. Lines with more fields than the header are never
    reshaped: a writer's trailing tab cannot be told from a tab inside the line or R's row names, which would put
    every value one column off. ``n_fields``: each line's field count."""
    counts = np.bincount(n_fields[n_fields >= 0])
    habit = int(counts.argmax()) if len(counts) else n_columns
    if not n_named <= habit < n_columns or counts[habit] * 2 <= len(n_fields):
        return text, n_columns
    of_habit = n_fields == habit
    padding = pa.array(np.where(of_habit, "\t" * (n_columns - habit), ""), pa.string())
    return pc.if_else(pa.array(of_habit), pc.binary_join_element_wise(text, padding, ""), text), habit


def _unclosed_quotes(text: pa.Array, lists: pa.ListArray, shaped: np.ndarray, read_positions) -> np.ndarray:
    """Per line of the header's shape (``shaped``), the first column read whose field a line break inside CSV
    quotes cut in two, -1 where none: its head (it starts with a quote and holds an odd number of them; a quote
    inside a quoted field is doubled) in the last column, or its tail (it ends with a quote and holds an odd number)
    in the first: only there does the line keep the header's field count (the other half is a line of its own,
    ``unparseable_row``). Text with a quote in it (``Cora sp. "A"``, ``48°12'30"``) is a value."""
    found = np.full(len(text), -1, np.int64)
    quoted = pc.fill_null(pc.match_substring(text, '"'), False).to_numpy(zero_copy_only=False)
    rows = np.flatnonzero(shaped & quoted)  # a few lines of a block, where any (a note quoting a word)
    if not len(rows):
        return found
    quoted_lists = pc.take(lists, pa.array(rows))
    for position in sorted(read_positions, reverse=True):  # the first column last: it wins
        field = pc.utf8_trim_whitespace(pc.list_element(quoted_lists, position))
        odd = pc.equal(pc.bit_wise_and(pc.count_substring(field, '"'), 1), 1)
        cut = pc.starts_with(field, '"')
        if position == 0:  # the tail of a field of the first column
            cut = pc.or_(cut, pc.ends_with(field, '"'))
        half = pc.fill_null(pc.and_(cut, odd), False).to_numpy(zero_copy_only=False)
        found[rows[half]] = position
    return found


def unquote_name(name: str) -> str:
    """A header cell without its CSV quotes (R's write.table quotes every one)."""
    found = re.fullmatch(QUOTED_FIELD, name)
    return found.group(1).replace('""', '"') if found else name


# an invisible format character (zero-width space, word joiner: pasted from a web page) made "Ontario\u200b" a second
# province; these columns lose them, as processids and taxon names do
INVISIBLE_FREE = ("sampleid", "country", "province_state")


def _nullify(values: pa.Array, missing_values: tuple[str, ...]) -> pa.Array:
    # an empty cell is missing whatever the configured tokens say (sources.md; a list without "" kept "" as text)
    tokens = list(dict.fromkeys(["", *missing_values]))
    is_missing = pc.is_in(values, value_set=pa.array(tokens, pa.string()))
    return pc.if_else(is_missing, pa.scalar(None, pa.string()), values)


def _columns_for(
    layout: str, header: list[str], valid_lists: pa.ListArray, missing_values
) -> tuple[dict[str, pa.Array], int, int, int]:
    """The canonical columns; how many records' coordinates were blanked (out of range, not numbers); how many
    records had a read field in CSV quotes."""
    n_columns = len(header)
    values = valid_lists.flatten()
    n_rows = len(valid_lists)
    position = {name: i for i, name in enumerate(header)}
    out: dict[str, pa.Array] = {}
    quoted_rows = np.zeros(n_rows, bool)
    for canonical, source in LAYOUTS[layout].items():
        indices = pa.array(np.arange(position[source], n_rows * n_columns, n_columns, dtype=np.int64))
        # white space around a value is no part of it, inside its quotes or out: "None " is missing, "Québec\u00a0"
        # is Québec
        column, quoted = _unquote(pc.utf8_trim_whitespace(pc.take(values, indices)))
        quoted = quoted.to_numpy(zero_copy_only=False)
        quoted_rows |= quoted
        if quoted.any():  # a field in quotes may hold white space inside them
            column = pc.utf8_trim_whitespace(column)
        if canonical in INVISIBLE_FREE:  # "Ontario\u200b" is Ontario, "None\u200b" is missing
            column = pc.utf8_trim_whitespace(pc.replace_substring_regex(column, INVISIBLE_CHARACTERS, ""))
            # "Costa\u00a0Rica" and "Costa  Rica" are Costa Rica: one place (a delivery fixing the spelling was
            # the same copy to the join, which compares spaces so, and was thrown away)
            column = pc.replace_substring_regex(column, r"[\s\p{Z}]+", " ")
        out[canonical] = _nullify(column, missing_values)
    if layout == "v4":
        lat_text, lon_text = out.pop("lat"), out.pop("lon")
        either = pc.or_(pc.is_valid(lat_text), pc.is_valid(lon_text))
        # "; " between them: a decimal comma ("43,5") stays readable in the changes row of a refused site
        joined = pc.binary_join_element_wise(pc.fill_null(lat_text, ""), pc.fill_null(lon_text, ""), "; ")
        out["coord_raw"] = pc.if_else(either, joined, pa.scalar(None, pa.string()))
        out["lat"], out["lon"] = _to_float(lat_text), _to_float(lon_text)
        unparsed = pc.or_(_lost(lat_text, out["lat"]), _lost(lon_text, out["lon"]))
        # one half given, the other missing: no site either (as "(45.2,None)" in the BCDM layouts)
        unparsed = pc.or_(unparsed, pc.xor(pc.is_valid(lat_text), pc.is_valid(lon_text)))
    else:
        out["lat"], out["lon"] = parse_coordinates(out["coord_raw"])
        # the text is there, but not as two numbers: "(45.1 N, 10 E)", "(45, NA)", "45;10"
        unparsed = pc.or_(_lost(out["coord_raw"], out["lat"]), _lost(out["coord_raw"], out["lon"]))
    unparsed = pc.fill_null(unparsed, False)
    null = pa.scalar(None, pa.float64())
    out["lat"], out["lon"] = pc.if_else(unparsed, null, out["lat"]), pc.if_else(unparsed, null, out["lon"])
    out["lat"], out["lon"], out_of_range = _within_range(out["lat"], out["lon"])
    return out, out_of_range, int(pc.sum(unparsed).as_py() or 0), int(quoted_rows.sum())


def _lost(text: pa.Array, value: pa.Array) -> pa.Array:
    """Text was given (not a missing-value token) but no number came of it."""
    return pc.and_(pc.is_valid(text), pc.is_null(value))


def _within_range(lat: pa.Array, lon: pa.Array) -> tuple[pa.Array, pa.Array, int]:
    """A pair with latitude outside [-90, 90] or longitude outside [-180, 180] (or not finite) says nothing
    reliable about the site: both are blanked; coord_raw keeps what the export said."""
    given = pc.or_(pc.is_valid(lat), pc.is_valid(lon))
    fine = pc.and_(
        pc.fill_null(pc.less_equal(pc.abs(lat), 90.0), True), pc.fill_null(pc.less_equal(pc.abs(lon), 180.0), True)
    )
    bad = pc.and_(given, pc.invert(fine))
    null = pa.scalar(None, pa.float64())
    return pc.if_else(bad, null, lat), pc.if_else(bad, null, lon), int(pc.sum(bad).as_py() or 0)


def _header_line(path: Path) -> str:
    """The header as it stands in the file (its BOM too), whatever ends it (LF, CRLF or a lone CR): the first line
    that is not blank (blank lines above it are skipped)."""
    for _, lines in _split_lines(Path(path), 1 << 20):
        for line in lines:
            if line.strip(BLANK_BYTES):
                return line.decode("utf-8", errors="replace")
    return ""


def read_header(path: Path, line: str | None = None) -> list[str]:
    """The first line's fields (``line``: that line, when the caller has read it)."""
    text = (_header_line(path) if line is None else line).lstrip("\ufeff")
    # "species " is species: a second header's names are read so too (``_header_fields``)
    # '"province "' is province too: spaces inside the quotes go as well
    return [unquote_name(name.strip()).strip() for name in text.split("\t")]


# C0 controls but tab and LF, and DEL; a CR left inside a line (a line break typed into a cell) is one too
CONTROL_CHARACTERS = r"[\x00-\x08\x0b-\x1f\x7f]"
# C1 controls (U+0080-U+009F): Windows-1252 text decoded as Latin-1 and saved as UTF-8 ("â\x80\x93" for "–").
# Real exports hold such mojibake in notes columns, which are never read; in a column that is read, the value is
# garbage and its line is rejected as a control character would be.
C1_CONTROLS = r"[\x80-\x9f]"


def _damaged_read_field(raw: bytes, read_positions: frozenset[int]) -> int | None:
    """The position of the first field of a line that the pipeline reads and that is not UTF-8 or holds a control
    character (None: every damaged field is one never read, as BOLD's notes: the line is read as it is)."""
    for position, cell in enumerate(raw.rstrip(b"\r").split(b"\t")):
        if position not in read_positions:
            continue
        try:
            text = cell.decode("utf-8")
        except UnicodeDecodeError:
            return position
        if re.search(CONTROL_CHARACTERS, text):
            return position
    return None


def _unparseable_detail(
    bad_utf8: bool, n_fields: int, n_columns: int, line: str | None, header: list[str], field: int | None = None
) -> str:
    """Why a line is refused. ``field``: the position of the damaged field that is read (a damaged field never
    read refuses nothing), where the field count is right."""
    tabs_before = line.split("\t")[:field] if field is not None else []
    start = sum(len(part) + 1 for part in tabs_before)  # where that field starts in the line
    if field is not None and bad_utf8:  # the damage of the read field itself: its byte, or a control character
        cell = line.split("\t")[field]
        bad_utf8 = re.search(r"\\x[0-9a-f]{2}", cell) is not None and re.search(CONTROL_CHARACTERS, cell) is None
    if bad_utf8:
        found = re.compile(r"\\x([0-9a-f]{2})").search(line, start)
        where = ""  # pragma: no mutate - never used: a line flagged not-UTF-8 always holds a \xNN escape
        if found:
            tabs = line[: found.start()].count("\t")
            column = repr(header[tabs]) if tabs < len(header) else f"#{tabs + 1}"
            where = f": byte 0x{found.group(1).upper()} in column {column}"
        return f"not valid UTF-8{where} (a line saved as Latin-1 or Windows-1252? save the export as UTF-8)"
    if n_fields != n_columns:
        if '"' in line:
            return (
                f"{n_fields} fields, header has {n_columns} (a field in quotes holding a tab or a line break? "
                "this reader takes one line per record: remove them from that field, or export it again)"
            )
        return f"{n_fields} fields, header has {n_columns}"
    found = re.compile(CONTROL_CHARACTERS).search(line, start)
    column = header[line[: found.start()].count("\t")]
    if found.group() == "\r":
        return f"a carriage return (U+000D) in column {column!r}: a line break typed into a cell? remove it there"
    return f"control character U+{ord(found.group()):04X} in column {column!r}"


def _c1_in_read_columns(table: pa.Table, layout: str) -> tuple[np.ndarray, list[str]]:
    """Rows with a C1 control character in a column the pipeline reads, and for each a detail naming the export's
    column (the first one holding it)."""
    garbled = np.zeros(table.num_rows, bool)
    first = np.full(table.num_rows, None, object)  # canonical name of the first column holding one
    for name in CONTENT_FIELDS:
        if table.schema.field(name).type == pa.string():
            hit = pc.fill_null(pc.match_substring_regex(table[name], C1_CONTROLS), False).to_numpy(zero_copy_only=False)
            first[hit & ~garbled] = name
            garbled |= hit
    detail = []
    for row in np.flatnonzero(garbled):
        found = re.search(C1_CONTROLS, table[first[row]][row].as_py())
        column = LAYOUTS[layout].get(first[row], "lat/lon" if first[row] == "coord_raw" else first[row])
        detail.append(f"control character U+{ord(found.group()):04X} in column {column!r} (saved in another encoding?)")
    return garbled, detail


def _processids_of_damaged_lines(lines: pa.Array, column: int, repeated_header: np.ndarray) -> list[str | None]:
    """The processid field of each unparseable line where it reads as one, so that the line's photo is
    ``record_rejected`` and an audit of that processid finds the line; else None. A field is trusted only when it
    is a valid processid with a digit (BOLD's end in a number and a year) and without white space inside (the tail of
    a line broken inside a quoted note is prose), a control character or an undecodable byte (shown as ``\\xNN``)."""
    candidates = [
        None if repeated or line is None or len(fields := line.split("\t")) <= column else unquote_name(fields[column])
        for line, repeated in zip(lines.to_pylist(), repeated_header)
    ]  # without its quotes, as a well-formed line's field is read (R's write.table quotes every cell)
    table, why_bad = _normalise_processids(pa.table({"processid": pa.array(candidates, pa.string())}))
    damaged = re.compile(rf"\s|\\x[0-9a-f]{{2}}|{CONTROL_CHARACTERS}|{C1_CONTROLS}")
    return [
        pid if pid is not None and why is None and not damaged.search(pid) and re.search(r"\d", pid) else None
        for pid, why in zip(table["processid"].to_pylist(), why_bad)
    ]


def _header_fields(line: str) -> list[str]:
    """A line's fields as a header names columns: without a BOM, surrounding spaces and CSV quotes."""
    return [unquote_name(field.strip()).strip() for field in line.lstrip("\ufeff").split("\t")]


def _second_headers(
    text: pa.Array, header: list[str], read_columns: list[str], processid_name: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per line: is it a header again (every column the layout reads is named in it), is it one that puts a
    column that is read elsewhere than the first header does (another export's, a spreadsheet's reordering), and is
    it one naming the read columns only in another case (an upper-cased export's: its lines are refused, as a first
    header in another case is). Quotes, spaces, a BOM and the names of columns never read do not count: `cat a.tsv
    b.tsv` of an R-written export, or one whose header ends in a space."""
    first = _header_fields("\t".join(header))
    named = _lines_holding(text, processid_name)  # only lines naming the processid column can be headers
    repeated, reordered, recased = (np.zeros(len(text), bool) for _ in range(3))
    at_first = [first.index(column) for column in read_columns]
    folded_read = {column.casefold() for column in read_columns}
    for i in np.flatnonzero(named):
        fields = _header_fields(text[i].as_py())
        if set(read_columns) <= set(fields):  # names matched exactly first: a note column may differ only in case
            repeated[i] = True
            # only where the columns that are read stand counts (a note column renamed moves nothing)
            reordered[i] = len(fields) != len(first) or [fields.index(c) for c in read_columns] != at_first
        elif folded_read <= {field.casefold() for field in fields}:
            repeated[i] = reordered[i] = recased[i] = True
    return repeated, reordered, recased


def _processid_position(line: str, processid_name: str) -> int:
    """Where a second header puts the processid column: its exact name, else the first in another case."""
    fields = _header_fields(line)
    if processid_name in fields:
        return fields.index(processid_name)
    return [field.casefold() for field in fields].index(processid_name.casefold())


def _lines_holding(text: pa.Array, word: str) -> np.ndarray:
    """Per line of ``text``, whether it holds ``word`` in any case (Arrow's RE2 search: as fast as one search of
    the block's bytes, which took as long as splitting the lines into fields done per line in Python)."""
    if not len(text):
        return np.zeros(len(text), bool)
    return pc.fill_null(pc.match_substring(text, word, ignore_case=True), False).to_numpy(zero_copy_only=False)


def _under_second_header(headers: np.ndarray, reordered: np.ndarray, line_numbers: np.ndarray, state: dict):
    """Per line: the line number of the header of other columns it is read under (-1: the first header's). A header
    in the first one's order ends it; ``state`` carries the header in force from one block to the next."""
    under = np.full(len(headers), -1, np.int64)
    start, current = 0, state["second_header"]
    for i in np.flatnonzero(headers):
        under[start:i] = current
        current = int(line_numbers[i]) if reordered[i] else -1
        start = i + 1
    under[start:] = current
    state["second_header"] = current
    return under


# A file name Windows refuses: a character it reserves, a control character, a device name (with any extension).
# (A final dot is no problem: the files are named PROCESSID.jpg.)
WINDOWS_UNNAMEABLE = r'[:*?"<>|\x00-\x1f]|^(?i:con|prn|aux|nul|com[0-9¹²³]|lpt[0-9¹²³])(\.|$)'


def _normalise_processids(table: pa.Table) -> tuple[pa.Table, np.ndarray]:
    """Processids without invisible characters, trimmed of white space and in Unicode NFC, so that " BSCN1 " and a
    decomposed accent join their photos; blank ones become missing. Returns the table and, per record, why its
    processid cannot be one (None: it can): a path separator (it names files in the release, so it would escape
    its folder), a spelling CSV readers take for missing ("NA", "null": the record would lose its id in the
    released CSV as pandas and R read it), or a leading ``#`` (a comment in the maintainer's tables)."""
    # invisible format characters (zero-width space, word joiner, BOM) pasted into an id would make a second record
    ids = spelled_processids(table["processid"])
    ids = pc.if_else(pc.equal(pc.utf8_length(ids), 0), pa.scalar(None, pa.string()), ids)
    separator = pc.fill_null(pc.match_substring_regex(ids, r"[/\\]"), False).to_numpy(zero_copy_only=False)
    # BOLD's processids hold none; it would cut the id out of a FASTA header where readers split at white space
    spaced = pc.fill_null(pc.match_substring_regex(ids, r"[\s\p{Z}]"), False).to_numpy(zero_copy_only=False)
    missing_word = pc.fill_null(pc.is_in(ids, value_set=pa.array(sorted(CSV_NA_STRINGS))), False)
    # the release names files by processid: one Windows cannot create (unzipping the release there failed, or an
    # NTFS colon wrote an alternate stream) is refused as a path separator is
    unnameable = pc.fill_null(pc.match_substring_regex(ids, WINDOWS_UNNAMEABLE), False).to_numpy(zero_copy_only=False)
    # the maintainer's tables (corrections, box answers) read a line starting with # as a comment: never applied
    commented = pc.fill_null(pc.starts_with(ids, "#"), False).to_numpy(zero_copy_only=False)
    why = np.full(len(ids), None, object)
    why[commented] = (
        "a processid that starts with # (the maintainer's tables, label corrections and box answers, read such a "
        "line as a comment)"
    )
    why[missing_word.to_numpy(zero_copy_only=False)] = "a processid CSV readers take for missing (pandas, R)"
    why[unnameable] = (
        'a processid Windows cannot name a file by (one of : * ? " < > |, a control character, a '
        "reserved name such as CON or NUL)"
    )
    why[spaced] = "white space inside the processid (BOLD writes none; FASTA readers cut the id at it)"
    why[separator] = "a path separator (/ or \\) in the processid"
    return table.set_column(table.schema.get_field_index("processid"), "processid", ids), why


def parse_export(
    path: str | Path,
    batch: str,
    *,
    missing_values: tuple[str, ...] = DEFAULT_MISSING_VALUES,
    markers: tuple[str, ...] | None = DEFAULT_MARKERS,
    source_name: str | None = None,
    block_bytes: int = BLOCK_BYTES,
) -> Iterator[tuple[pa.Table, pa.Table, ParseStats]]:
    """Parse a BOLD export block by block.

    Yields (records, rejects, stats) per block; `stats` is one object updated in place, final
    after the last block. `markers=None` keeps every marker. A record with no marker is kept
    (specimen rows without a sequence); the barcode stage decides about those.
    """
    path = Path(path)
    source_name = source_name or str(path)
    opened = _identity(path)
    stats = ParseStats(sha256=file_sha256(path))
    try:
        with open(path, "rb") as handle:
            check_export_bytes(handle.read(1 << 16))
            handle.seek(max(0, os.path.getsize(path) - (1 << 16)))
            last = handle.read().replace(b"\r", b"\n").rsplit(b"\n", 1)[-1]
            # text after the last line break (a line of tabs only is blank, however it ends)
            stats.last_line_unterminated = bool(last.strip(b"\t "))
        # the header line as it stands in the file: a data line equal to it is a second export's header
        header_line = _header_line(path)
        header = read_header(path, header_line)
        stats.layout = layout = detect_layout(header)
    except LayoutError as error:
        raise LayoutError(f"{source_name}: {error}") from None
    n_columns = len(header)
    n_named = max(position for position, name in enumerate(header) if name) + 1  # without unnamed columns at the end
    processid_column = header.index(LAYOUTS[layout]["processid"])
    missing_values = tuple(missing_values)
    marker_set = pa.array(list(markers), pa.string()) if markers is not None else None
    read_columns = sorted(set(LAYOUTS[layout].values()))
    read_positions = frozenset(header.index(column) for column in read_columns)
    processid_name = LAYOUTS[layout]["processid"]
    # across blocks: the line of the second header (of other columns) in force, and where each puts the processid
    state = {"second_header": -1, "processid_at": {}, "recased": set()}

    above_header = True
    for first_line, lines in _split_lines(path, block_bytes, frozenset((n_columns, n_named))):
        if above_header:  # the blank lines above the header (counted blank), and the header
            blank_above = 0
            while blank_above < len(lines) and not lines[blank_above].strip(BLANK_BYTES):
                blank_above += 1
            stats.blank_lines += blank_above
            above_header = blank_above == len(lines)
            skip = blank_above if above_header else blank_above + 1
            lines, first_line = lines[skip:], first_line + skip
        line_numbers = np.arange(first_line, first_line + len(lines), dtype=np.int64)
        text, bad_utf8 = _decode(lines)
        text = pc.utf8_rtrim(text, characters="\r")
        # a line of tabs only (a spreadsheet's empty row) is blank too
        blank = pc.equal(pc.utf8_length(pc.utf8_trim(text, characters="\t")), 0)
        blank = pc.fill_null(blank, False).to_numpy(zero_copy_only=False)
        stats.blank_lines += int(blank.sum())
        keep = ~blank
        text, bad_utf8, line_numbers = text.filter(pa.array(keep)), bad_utf8[keep], line_numbers[keep]
        kept_at = np.flatnonzero(keep)  # each kept line's place among the block's lines (its bytes are there)
        stats.data_lines += len(text)

        lists = pc.split_pattern(text, "\t")
        n_fields = pc.fill_null(pc.list_value_length(lists), -1).to_numpy(zero_copy_only=False)
        habit, off_habit = n_columns, np.zeros(len(n_fields), bool)
        if ((n_fields != n_columns) & (n_fields >= 0)).any():  # lines of another field count: some may be ours
            text, habit = _to_header_shape(text, n_fields, n_columns, n_named)
            if habit != n_columns:  # the lines lack the header's unnamed end: one with it holds a field more
                off_habit = n_fields == n_columns
                lists = pc.split_pattern(text, "\t")
                n_fields = pc.fill_null(pc.list_value_length(lists), -1).to_numpy(zero_copy_only=False)
        unclosed = _unclosed_quotes(text, lists, (n_fields == n_columns) & ~off_habit, read_positions)
        # a control character (NUL, ESC...) in a field means a damaged line; it must not reach the release
        control = pc.fill_null(pc.match_substring_regex(text, CONTROL_CHARACTERS), False).to_numpy(zero_copy_only=False)
        control, bad_utf8 = control.copy(), bad_utf8.copy()
        # a line of the right shape whose damage (bytes of another encoding, a NUL) lies only in columns never read
        # (BOLD's notes, references) is read: nothing damaged reaches a record (a Windows-1252 note lost 9% of a
        # real export's records)
        damaged_field = {}
        for i in np.flatnonzero((bad_utf8 | control) & (n_fields == n_columns)):
            damaged_field[i] = _damaged_read_field(lines[kept_at[i]], read_positions)
            if damaged_field[i] is None:
                bad_utf8[i] = control[i] = False
        # reordered and recased: of repeated
        repeated, reordered, recased = _second_headers(text, header, read_columns, processid_name)
        for i in np.flatnonzero(reordered):
            state["processid_at"][int(line_numbers[i])] = _processid_position(text[i].as_py(), processid_name)
            if recased[i]:
                state["recased"].add(int(line_numbers[i]))
        # a line after a header with other columns or another order is read by that header's columns, not the
        # first's: each is refused rather than kept with its fields in the wrong columns
        under = _under_second_header(repeated, reordered, line_numbers, state)
        well_formed = (n_fields == n_columns) & ~bad_utf8 & ~control & ~repeated & (under < 0) & (unclosed < 0)
        well_formed &= ~off_habit
        reject_parts = []
        if not well_formed.all():
            bad = ~well_formed
            bad_text = text.filter(pa.array(bad))
            detail = [
                (
                    "the header line again (two exports joined into one file?)"
                    if repeated[i] and not reordered[i]
                    else "a second header, its column names in another case than the first header's (two exports "
                    "joined into one file? deliver each as its own file)"
                    if recased[i]
                    else "a second header, its columns not the first header's in order (two exports joined into "
                    "one file? deliver each as its own file)"
                    if reordered[i]
                    else f"after a second header (line {under[i]}) with its column names in another case: names "
                    "are matched exactly (deliver each export as its own file)"
                    if under[i] >= 0 and int(under[i]) in state["recased"]
                    else f"after a second header (line {under[i]}) with its columns in another order: its fields "
                    "would be read into the wrong columns (deliver each export as its own file)"
                    if under[i] >= 0
                    else f"{n_columns} fields where the export's lines have {habit} (the header without its unnamed "
                    "columns at the end): a tab inside a field?"
                    if off_habit[i]
                    else f"a field in quotes in column {header[unclosed[i]]!r} is cut in two by a line break inside "
                    "the quotes (this reader takes one line per record: remove it from that field, or export it "
                    "again)"
                    if unclosed[i] >= 0 and not bad_utf8[i] and not control[i]
                    else _unparseable_detail(
                        bad_utf8[i], n_fields[i], n_columns, text[i].as_py(), header, damaged_field.get(i)
                    )
                )
                for i in np.flatnonzero(bad)
            ]
            damaged_ids = _processids_of_damaged_lines(bad_text, processid_column, repeated[bad] | (under[bad] >= 0))
            for k, i in enumerate(np.flatnonzero(bad)):  # its processid where its own header puts it
                if under[i] >= 0 and not repeated[i]:
                    own_column = state["processid_at"][int(under[i])]
                    damaged_ids[k] = _processids_of_damaged_lines(text.slice(i, 1), own_column, [False])[0]
            reject_parts.append(
                make_rejects(
                    kind="record",
                    reason="unparseable_row",
                    detail=detail,
                    processid=damaged_ids,
                    batch=batch,
                    source_file=source_name,
                    source_line=line_numbers[bad],
                    raw=pc.utf8_slice_codeunits(bad_text, 0, RAW_PREVIEW_CHARS),
                )
            )
        columns, out_of_range, unparseable, quoted = _columns_for(
            layout, header, lists.filter(pa.array(well_formed)), missing_values
        )
        stats.coordinates_out_of_range += out_of_range
        stats.coordinates_unparseable += unparseable
        stats.quoted_records += quoted
        good_lines = line_numbers[well_formed]
        n_good = len(good_lines)
        columns.setdefault("record_id", pa.nulls(n_good, pa.string()))
        table = pa.table(
            {
                **{name: columns[name] for name in CONTENT_FIELDS},
                "batch": pa.array([batch] * n_good, pa.string()),
                "source_file": pa.array([source_name] * n_good, pa.string()),
                "source_sha256": pa.array([stats.sha256] * n_good, pa.string()),
                "source_layout": pa.array([layout] * n_good, pa.string()),
                "source_line": pa.array(good_lines, pa.int64()),
            },
            schema=RECORD_SCHEMA,  # pragma: no mutate - the columns already have exactly these names, order and types
        )

        table, why_bad_id = _normalise_processids(table)
        # one spelling per place: a decomposed "Québec" (NFD, as macOS writes) was a second province, and a
        # release diff listed it as changed with old and new values that look the same (invisible characters are
        # gone already: INVISIBLE_FREE)
        for name in INVISIBLE_FREE:
            position = table.schema.get_field_index(name)
            table = table.set_column(position, name, pc.utf8_normalize(table[name], form="NFC"))
        bad_id = why_bad_id != None  # noqa: E711 - element-wise on an object array
        no_id = pc.is_null(table["processid"]).to_numpy(zero_copy_only=False)
        # "COI-5P " is COI-5P (white space is never part of a marker code; the case is: see ingest.markers)
        marker = pc.utf8_trim_whitespace(table["marker_code"])
        marker = pc.if_else(pc.equal(marker, ""), pa.scalar(None, pa.string()), marker)  # spaces only: no marker
        table = table.set_column(table.schema.get_field_index("marker_code"), "marker_code", marker)
        if marker_set is not None:
            other_marker = pc.and_(pc.is_valid(marker), pc.invert(pc.is_in(marker, value_set=marker_set)))
            other_marker = pc.fill_null(other_marker, False).to_numpy(zero_copy_only=False) & ~no_id
            # a sequence without a marker code is of an unknown gene: it must not pass for COI (a specimen row with
            # neither, as BOLD writes for a specimen never sequenced, stays: the barcode stage gives its outcome)
            sequenced = pc.greater(pc.utf8_length(pc.utf8_trim_whitespace(table["nucleotides"])), 0)
            unknown_gene = pc.and_(pc.is_null(marker), pc.fill_null(sequenced, False))
            other_marker |= unknown_gene.to_numpy(zero_copy_only=False) & ~no_id
        else:
            other_marker = np.zeros(n_good, bool)
        garbled, garbled_detail = _c1_in_read_columns(table, layout)
        bad_id &= ~garbled
        if bad_id.any():
            selected = table.filter(pa.array(bad_id))
            reject_parts.append(
                make_rejects(
                    kind="record",
                    reason="invalid_processid",
                    detail=list(why_bad_id[bad_id]),
                    processid=selected["processid"],
                    batch=batch,
                    source_file=source_name,
                    source_line=selected["source_line"],
                )
            )
            other_marker = other_marker & ~bad_id
        if garbled.any():
            reject_parts.append(
                make_rejects(
                    kind="record",
                    reason="unparseable_row",
                    detail=garbled_detail,
                    processid=table["processid"].filter(pa.array(garbled)),
                    batch=batch,
                    source_file=source_name,
                    source_line=table["source_line"].filter(pa.array(garbled)),
                    raw=pc.utf8_slice_codeunits(
                        text.filter(pa.array(well_formed)).filter(pa.array(garbled)), 0, RAW_PREVIEW_CHARS
                    ),
                )
            )
            no_id, other_marker = no_id & ~garbled, other_marker & ~garbled
        for mask, reason, detail in (
            (no_id, "missing_processid", None),
            (other_marker, "unsupported_marker", table["marker_code"]),
        ):
            if mask.any():
                selected = table.filter(pa.array(mask))
                reject_parts.append(
                    make_rejects(
                        kind="record",
                        reason=reason,
                        detail=(
                            pc.fill_null(
                                pc.binary_join_element_wise("marker '", selected["marker_code"], "'", ""),
                                "a sequence without a marker code: its gene is unknown",
                            )
                            if detail is not None
                            else ["no processid"] * len(selected)
                        ),
                        processid=selected["processid"],
                        batch=batch,
                        source_file=source_name,
                        source_line=selected["source_line"],
                        raw=pc.utf8_slice_codeunits(
                            text.filter(pa.array(well_formed)).filter(pa.array(mask)), 0, RAW_PREVIEW_CHARS
                        ),
                    )
                )
        table = table.filter(pa.array(~(no_id | other_marker | bad_id | garbled)))
        rejects = pa.concat_tables(reject_parts) if reject_parts else REJECT_SCHEMA.empty_table()
        for reason, count in zip(*np.unique(rejects["reason"].to_numpy(zero_copy_only=False), return_counts=True)):
            stats.rejects[str(reason)] = stats.rejects.get(str(reason), 0) + int(count)
        stats.records += table.num_rows
        if len(line_numbers):
            stats.last_line = int(line_numbers[-1])
            stats.last_line_kept = bool(table.num_rows) and table["source_line"][-1].as_py() == stats.last_line
        yield table, rejects, stats
    if _identity(path) != opened:  # the hash and the rows would describe different files
        raise InputError(
            f"{source_name}: the file changed while it was read (still being written?): run again once it is complete"
        )


def _identity(path: Path) -> tuple[int, int, int]:
    """What changes when a file is written to or replaced: size, modification time, inode."""
    facts = os.stat(path)
    return facts.st_size, facts.st_mtime_ns, facts.st_ino


def read_export(path: str | Path, batch: str = "adhoc", **kwargs) -> tuple[pa.Table, pa.Table, ParseStats]:
    """Parse a whole export into memory: (records, rejects, stats). For tests and small files."""
    record_parts, reject_parts, stats = [], [], ParseStats()
    for records, rejects, stats in parse_export(path, batch, **kwargs):  # noqa: B007 - stats is final after the loop
        record_parts.append(records)
        reject_parts.append(rejects)
    records = pa.concat_tables(record_parts) if record_parts else RECORD_SCHEMA.empty_table()
    rejects = pa.concat_tables(reject_parts) if reject_parts else REJECT_SCHEMA.empty_table()
    return records, rejects, stats
