"""A maintainer's hand-edited TSV table (corrections, fixes, box corrections), read the same way everywhere.

Editors and spreadsheets add what a plain ``pandas.read_csv`` misreads: a byte-order mark (the first column
name would not match), CRLF line ends, tabs after the last field (pandas would then take the first column as
the index and shift every value one column left), quotes (a stray quote in a reason would join rows). Here:
only lines that start with ``#`` (or ``"#``: a spreadsheet quoted the cell) are comments (a ``#`` inside a value
is kept); blank lines are skipped; a row with more fields than the header is an InputError naming its line, and
so is a line holding a lone carriage return or the short tail of a quoted cell holding a line break; a field the
spreadsheet wrapped in double quotes is unwrapped; every value is a string (missing = ``""``); a file saved in
another encoding than UTF-8 is an InputError saying so.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pandas as pd

from bioscan_rebuild.core.errors import InputError


def read_maintainer_table(
    path: str | Path, columns: tuple[str, ...], what: str, optional: tuple[str, ...] = (), others: bool = False
) -> pd.DataFrame:
    """The table's ``columns`` (strings), then its ``optional`` ones (empty where the file has none), then, with
    ``others``, the maintainer's own columns as the file orders them (a note). ``what`` names the table in errors
    ("the box corrections"). A file with no line but comments is an empty table; a missing column is an
    InputError."""
    path = Path(path)
    empty = pd.DataFrame(columns=[*columns, *optional])
    try:
        # lines end at \n only (str.splitlines would also break at a form feed or U+2028 inside a value); a lone CR
        # stays one, to be found
        text = decoded(path.read_bytes(), path).replace("\r\n", "\n")
        numbered = [
            (number, line.rstrip("\t"))
            for number, line in enumerate(text.split("\n"), start=1)
            if line.strip() and not is_comment(line)
        ]
        if not numbered:
            return empty
        fields = numbered[0][1].count("\t")
        opened = False  # the line before ended in a quoted cell its quotes did not close
        for number, line in numbered:
            # pandas ends a line at a lone CR too: a value would be cut and its tail read as a row of its own
            if "\r" in line:
                raise InputError(
                    f"{path}: line {number} holds a carriage return inside a value (a line break in a cell, or old "
                    f"Mac line ends? save it with LF or CRLF line ends): {line!r}"
                )
            # a spreadsheet quotes a cell holding a line break: the line ends inside the quotes and the cell's tail
            # makes a short line of its own (a stray quote in a value, with its row whole, is a value)
            if opened and line.count("\t") < fields:
                raise InputError(
                    f"{path}: lines {number - 1}-{number}: a cell in quotes holds a line break (put its text on one "
                    f"line): {line!r}"
                )
            last = line.rsplit("\t", 1)[-1]
            opened = last.startswith('"') and last.count('"') % 2 == 1
            if line.count("\t") > fields:  # pandas would drop what lies past the header's columns
                raise InputError(f"{path}: line {number} has more fields than the header: {line!r}")
        text = "\n".join(line for _, line in numbered) + "\n"
        # no quoting: a quote in a value must not join rows; a spreadsheet's quotes around a field are removed below
        frame = pd.read_csv(
            io.StringIO(text), sep="\t", dtype=str, keep_default_na=False, index_col=False, quoting=csv.QUOTE_NONE
        )
    except FileNotFoundError:
        raise
    except (OSError, pd.errors.ParserError, UnicodeDecodeError) as error:
        raise InputError(f"{path}: cannot read {what} ({error})") from error
    header = [unquote(name) for name in numbered[0][1].split("\t")]
    repeated = sorted({name for name in header if header.count(name) > 1})
    if repeated:  # pandas renames a repeated name ("note.1"), and which copy a column means is anyone's guess
        raise InputError(f"{path}: column name(s) {', '.join(map(repr, repeated))} more than once in the header")
    frame.columns = [unquote(column) for column in frame.columns]
    missing = [column for column in columns if column not in frame.columns]
    if missing:
        raise InputError(f"{path}: missing column(s) {', '.join(missing)} ({what}; is the header line there?)")
    for column in optional:
        if column not in frame.columns:
            frame[column] = ""
    own = [column for column in frame.columns if column not in (*columns, *optional)] if others else []
    return frame[[*columns, *optional, *own]].fillna("").map(unquote)


def is_comment(line: str) -> bool:
    """A line starting with ``#``, also when a spreadsheet quoted it (Excel quotes a cell holding a comma, and a
    quoted note was taken for the header)."""
    start = line.lstrip()
    return start.startswith("#") or start.startswith('"#')


def decoded(data: bytes, path) -> str:
    """The file's text (UTF-8, with or without a byte-order mark); another encoding is an InputError naming it, or
    the line of the first byte UTF-8 does not allow, and saying to save the file as UTF-8."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")) or b"\x00" in data[:4096]:
        raise InputError(
            f"{path}: saved as UTF-16 (a spreadsheet's 'Unicode Text'): save it as UTF-8 text, tab-delimited"
        )
    body = data.removeprefix(b"\xef\xbb\xbf")  # a byte-order mark: no text (error offsets count after it)
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as error:
        line = body[: error.start].count(b"\n") + 1
        raise InputError(
            f"{path}: line {line} is not UTF-8 (byte {body[error.start : error.start + 1]!r}; Windows-1252 or "
            "Latin-1?): save it as UTF-8 text, tab-delimited"
        ) from error


def unquote(field: str) -> str:
    """A field a spreadsheet wrapped in double quotes (inner quotes doubled) -> its text; any other as it is."""
    if len(field) >= 2 and field[0] == field[-1] == '"':
        return field[1:-1].replace('""', '"')
    return field
