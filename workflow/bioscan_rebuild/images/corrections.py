"""A maintainer's box corrections (``images.box_corrections``): processid -> the right box, or ``empty``.

The file is what ``bioscan-rebuild review`` writes as a template, edited: TSV with the columns
``processid, box, reason, source`` (``#`` lines are comments); ``box`` is ``x0,y0,x1,y1`` in ``original_full``
pixels (x1/y1 exclusive) or ``empty`` (no specimen: the record leaves the release as ``no_specimen``). The next
run detects nothing for those photos: their crops and size fields come from the given box, their
``box_source`` is ``correction`` and they leave the review queue. Rows that cannot apply are never dropped in
silence: ``outcomes`` gives each row ``applied``, ``superseded`` (a later row for the same processid replaced
it), ``conflict`` (records sharing one photo were given different boxes: none applies), ``photo_unusable`` (the
photo itself cannot be decoded), ``unknown_processid`` or ``invalid_value``.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from bioscan_rebuild.core.errors import InputError

BOX_CORRECTION_COLUMNS = ("processid", "box", "reason", "source")
EMPTY = "empty"
# image statuses of a photo no box can be applied to (nothing derived from it)
UNUSABLE_PHOTO = ("empty_file", "undecodable", "too_small", "too_large")


@dataclass(frozen=True)
class BoxCorrection:
    processid: str
    box: tuple[int, int, int, int] | None  # None: an empty well
    reason: str
    source: str


def parse_box(text: str) -> tuple[int, int, int, int] | None | bool:
    """``x0,y0,x1,y1`` -> the box; ``empty`` -> None; anything else -> False."""
    text = (text or "").strip()
    if text.lower() == EMPTY:
        return None
    parts = text.split(",")
    # isascii: "4²".isdigit() is True, but int() refuses it
    if len(parts) != 4 or not all(part.strip().isascii() and part.strip().isdigit() for part in parts):
        return False
    x0, y0, x1, y1 = (int(part) for part in parts)
    return (x0, y0, x1, y1) if x1 > x0 and y1 > y0 else False


def read_box_corrections(path: str | Path | None) -> pd.DataFrame:
    """The table as written (strings); an empty one without a file, or with no line but comments. Only lines
    that start with ``#`` are comments (a ``#`` inside a reason is kept); tabs after the last field (as some
    spreadsheets write) are ignored; a row with more fields than the header is an InputError naming its line."""
    empty = pd.DataFrame(columns=list(BOX_CORRECTION_COLUMNS))
    if not path:
        return empty
    path = Path(path)
    try:
        numbered = [
            (number, line.rstrip("\t"))
            for number, line in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), start=1)
            if line.strip() and not line.lstrip().startswith("#")
        ]
        if not numbered:
            return empty
        fields = numbered[0][1].count("\t")
        for number, line in numbered[1:]:
            if line.count("\t") > fields:  # pandas would drop what lies past the header's columns
                raise InputError(f"{path}: line {number} has more fields than the header: {line!r}")
        text = "\n".join(line for _, line in numbered) + "\n"
        frame = pd.read_csv(io.StringIO(text), sep="\t", dtype=str, keep_default_na=False, index_col=False)
    except (OSError, pd.errors.ParserError, UnicodeDecodeError) as error:
        raise InputError(f"{path}: cannot read the box corrections ({error})") from error
    missing = [column for column in BOX_CORRECTION_COLUMNS if column not in frame.columns]
    if missing:
        raise InputError(f"{path}: the box corrections lack the column(s) {', '.join(missing)}")
    return frame[list(BOX_CORRECTION_COLUMNS)].fillna("")


def load_box_corrections(path: str | Path | None) -> dict[str, BoxCorrection]:
    """The valid rows by processid (a later row for the same processid wins, as a later edit would)."""
    valid = {}
    for row in read_box_corrections(path).itertuples(index=False):
        box = parse_box(row.box)
        if _is_valid(row):
            valid[row.processid.strip()] = BoxCorrection(row.processid.strip(), box, row.reason, row.source)
    return valid


def _is_valid(row) -> bool:
    return parse_box(row.box) is not False and bool(row.processid.strip())


def conflicting(corrections: dict[str, BoxCorrection], photo_of: dict[str, str]) -> set[str]:
    """The corrected processids whose photo (``photo_of``: processid -> image sha256) other corrected records
    share with a different box: one photo gets one box, and no order among the records may choose it."""
    boxes: dict[str, set] = {}
    for processid, correction in corrections.items():
        if processid in photo_of:
            boxes.setdefault(photo_of[processid], set()).add(correction.box)
    return {p for p in corrections if p in photo_of and len(boxes[photo_of[p]]) > 1}


def outcomes(
    corrections: pd.DataFrame,
    applied: set[str],
    known: set[str],
    conflicts: set[str] = frozenset(),
    unusable: set[str] = frozenset(),
) -> pd.DataFrame:
    """Each row with its outcome: ``applied`` (``applied``: processids whose image row took the box),
    ``superseded`` (a valid row that a later valid row for the same processid replaced, as
    ``load_box_corrections`` does), ``conflict`` (``conflicts``: see ``conflicting``), ``photo_unusable``
    (``unusable``: processids whose photo has an ``UNUSABLE_PHOTO`` status), ``invalid_value`` (not a box, or a
    box outside the photo), ``unknown_processid`` (no record with a photo)."""
    rows = list(corrections.itertuples(index=False))
    last_valid = {row.processid.strip(): i for i, row in enumerate(rows) if _is_valid(row)}
    result = []
    for i, row in enumerate(rows):
        processid = row.processid.strip()
        if processid not in known:
            outcome = "unknown_processid"
        elif not _is_valid(row):
            outcome = "invalid_value"
        elif last_valid[processid] != i:
            outcome = "superseded"
        elif processid in applied:
            outcome = "applied"
        elif processid in conflicts:
            outcome = "conflict"
        elif processid in unusable:
            outcome = "photo_unusable"
        else:
            outcome = "invalid_value"
        result.append({**row._asdict(), "outcome": outcome})
    return pd.DataFrame(result, columns=[*BOX_CORRECTION_COLUMNS, "outcome"])
