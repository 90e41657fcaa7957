"""A maintainer's hand-edited TSV table (corrections, fixes, box corrections), read the same way everywhere.

Editors and spreadsheets add what a plain ``pandas.read_csv`` misreads: a byte-order mark (the first column
name would not match), CRLF line ends, tabs after the last field (pandas would then take the first column as
the index and shift every value one column left), quotes (a stray quote in a reason would join rows). Here:
only lines that start with ``#`` are comments (a ``#`` inside a value is kept); blank lines are skipped; a
row with more fields than the header is an InputError naming its line, and so is a line holding a lone carriage
return or the short tail of a quoted cell holding a line break; a field the spreadsheet wrapped in double quotes
is unwrapped; every value is a string (missing = ``""``).
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pandas as pd

from bioscan_rebuild.core.errors import InputError


def read_maintainer_table(
    path: str | Path, columns: tuple[str, ...], what: str, optional: tuple[str, ...] = ()
) -> pd.DataFrame:
    """The table's ``columns`` (strings), then its ``optional`` ones (empty where the file has none). ``what`` names
    the table in errors ("the box corrections"). A file with no line but comments is an empty table; a missing
    column is an InputError."""
    path = Path(path)
    empty = pd.DataFrame(columns=[*columns, *optional])
    try:
        # lines end at \n only (str.splitlines would also break at a form feed or U+2028 inside a value)
        with open(path, encoding="utf-8-sig", newline="") as handle:  # newline="": a lone CR stays one, to be found
            text = handle.read().replace("\r\n", "\n")
        numbered = [
            (number, line.rstrip("\t"))
            for number, line in enumerate(text.split("\n"), start=1)
            if line.strip() and not line.lstrip().startswith("#")
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
    frame.columns = [unquote(column) for column in frame.columns]
    missing = [column for column in columns if column not in frame.columns]
    if missing:
        raise InputError(f"{path}: missing column(s) {', '.join(missing)} ({what}; is the header line there?)")
    for column in optional:
        if column not in frame.columns:
            frame[column] = ""
    return frame[[*columns, *optional]].fillna("").map(unquote)


def unquote(field: str) -> str:
    """A field a spreadsheet wrapped in double quotes (inner quotes doubled) -> its text; any other as it is."""
    if len(field) >= 2 and field[0] == field[-1] == '"':
        return field[1:-1].replace('""', '"')
    return field
