"""A maintainer's box corrections (``images.box_corrections``): processid -> the right box, or ``empty``.

The file is what ``bioscan-rebuild review`` writes as a template, edited: TSV with the columns ``processid, box,
reason, source`` and optionally ``image_sha256`` (``#`` lines are comments); ``box`` is ``x0,y0,x1,y1`` in
``original_full`` pixels (x1/y1 exclusive) or ``empty`` (no specimen: the record leaves the release as
``no_specimen``). ``image_sha256``, which the template fills, is the photo the box was drawn on: when the record's
photo is another one by the next run (a redelivery replaced it), the box is not applied (``photo_changed``): the new
photo is detected and reviewed again. The next run detects nothing for those photos: their crops and size fields
come from the given box, their ``box_source`` is ``correction`` and they leave the review queue. Rows that cannot
apply are never dropped in silence: ``outcomes`` gives each row ``applied``, ``clipped`` (applied, but the box
reached past the photo), ``superseded`` (a later row for the same processid replaced it), ``record_rejected``
(ingest refused the record: its reject row says why), ``photo_changed`` (drawn on another photo than the record's
now, or a hash edited by mistake), ``photo_unusable`` (nothing can be derived from the photo: undecodable, too small
or too large, or ingest refused it), ``unknown_processid`` or ``invalid_value``. Processids match as records do
(``processid_key``: case aside), and records that share one photo each get their own box.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from bioscan_rebuild.core.errors import InputError
from bioscan_rebuild.core.schemas import processid_key, spelled_processid
from bioscan_rebuild.core.tsv import read_maintainer_table

BOX_CORRECTION_COLUMNS = ("processid", "box", "reason", "source")
PHOTO_COLUMN = "image_sha256"  # optional: the photo the box was drawn on
EMPTY = "empty"
OUTCOME_COLUMNS = ("outcome", "detail")  # what ``outcomes`` adds to the maintainer's columns
# image statuses of a photo no box can be applied to (nothing derived from it)
UNUSABLE_PHOTO = ("empty_file", "undecodable", "too_small", "too_large", "source_changed")


@dataclass(frozen=True)
class BoxCorrection:
    processid: str
    box: tuple[int, int, int, int] | None  # None: an empty well
    reason: str
    source: str
    image_sha256: str | None = None  # the photo the box was drawn on (None: whatever photo the record has)

    def fits(self, sha256: str) -> bool:
        """Whether the box applies to the record's photo ``sha256``."""
        return self.image_sha256 is None or self.image_sha256 == (sha256 or "").lower()


def parse_box(text: str) -> tuple[int, int, int, int] | None | bool:
    """``x0,y0,x1,y1`` -> the box; ``empty`` -> None; anything else -> False. A corner past the left or top edge
    (``-5``) is a box as one past the right or bottom is: the image stage clips both."""
    text = (text or "").strip()
    if text.lower() == EMPTY:
        return None
    parts = [part.strip() for part in text.split(",")]
    # isascii: "4²".isdigit() is True, but int() refuses it
    if len(parts) != 4 or not all(part.isascii() and part.removeprefix("-").isdigit() for part in parts):
        return False
    x0, y0, x1, y1 = (int(part) for part in parts)
    return (x0, y0, x1, y1) if x1 > x0 and y1 > y0 else False


def read_box_corrections(path: str | Path | None) -> pd.DataFrame:
    """The table as written (strings, ``core.tsv``); an empty one without a file, or with no line but comments."""
    if not path:
        return pd.DataFrame(columns=[*BOX_CORRECTION_COLUMNS, PHOTO_COLUMN])
    try:
        table = read_maintainer_table(
            path, BOX_CORRECTION_COLUMNS, "the box corrections", optional=(PHOTO_COLUMN,), others=True
        )
    except FileNotFoundError as error:
        raise InputError(f"{path}: cannot read the box corrections ({error})") from error
    taken = [column for column in OUTCOME_COLUMNS if column in table.columns]
    if len(taken) == len(OUTCOME_COLUMNS):  # an earlier run's outcome table as the answers: this run gives its own
        return table.drop(columns=taken)
    if taken:  # a maintainer's own column of that name would be overwritten in the outcome table
        raise InputError(
            f"{path}: a column named {taken[0]!r}, a name the outcome table gives its own column: rename it"
        )
    return table


def load_box_corrections(path: str | Path | None) -> dict[str, BoxCorrection]:
    """The boxes to apply by ``processid_key``: each record's last row, as a later edit would be, where it is a box
    (a last row that is none is the maintainer's word too: it is refused, and the record keeps the detector's)."""
    return by_record(read_box_corrections(path))


def by_record(corrections: pd.DataFrame) -> dict[str, BoxCorrection]:
    """``load_box_corrections`` of a table ``read_box_corrections`` has read."""
    valid = {}
    for row in corrections.itertuples(index=False):
        processid = spelled_processid(row.processid)
        if not processid:
            continue
        if not _is_valid(row):
            valid.pop(processid_key(processid), None)  # the last row decides, refused or not
            continue
        photo = getattr(row, PHOTO_COLUMN, "").strip().lower() or None
        box = parse_box(row.box)
        valid[processid_key(processid)] = BoxCorrection(processid, box, row.reason, row.source, photo)
    return valid


def _is_valid(row) -> bool:
    return parse_box(row.box) is not False and bool(spelled_processid(row.processid))


def _names_a_sha256(row) -> bool:
    """The row's ``image_sha256`` is a sha256 (64 hex digits): another is an edited or cut cell."""
    return re.fullmatch(r"[0-9a-fA-F]{64}", (getattr(row, PHOTO_COLUMN, "") or "").strip()) is not None


# Each outcome's detail in the outcome table: what happened and what to do (empty: nothing to do).
NOT_A_BOX = "not a box: give x0,y0,x1,y1 in whole pixels with x1 > x0 and y1 > y0, or empty"
NOT_A_SHA256 = (
    "image_sha256 is not a sha256 (64 hex digits), so it names no photo: the cell was edited or cut; give the one "
    "the review template wrote, or leave it empty for the record's photo whatever it is"
)
OUTSIDE_THE_PHOTO = "the box lies outside the photo (original_full pixels): nothing of it could be applied"
SUPERSEDED_BY_REFUSED = (
    "a later row for this record replaces it, and the last of them was not applied (its outcome says why): the "
    "record has the detector's box; fix or delete that row"
)
OUTCOME_DETAIL = {
    "applied": "",
    "clipped": "the box reached past the photo: only its part inside was applied (a box measured on the full-size "
    "source instead of original_full?)",
    "superseded": "a later row for this record replaces it",
    "photo_changed": "image_sha256 is not the record's photo now: a redelivery replaced the photo the box was drawn "
    "on (the new photo is detected and reviewed again), or the cell was edited: give the one the review template "
    "wrote",
    "photo_unusable": "nothing can be derived from the record's photo (its image_status, or ingest's reject, says why)",
    "record_rejected": "ingest refused the record: its reject row says why",
    "unknown_processid": "no record with a photo has this processid",
}


def outcomes(
    corrections: pd.DataFrame,
    applied: set[str],
    known: set[str],
    unusable: set[str] = frozenset(),
    clipped: set[str] = frozenset(),
    changed: set[str] = frozenset(),
    refused: set[str] = frozenset(),
) -> pd.DataFrame:
    """Each row with its outcome: ``applied`` (``applied``: the processid keys whose image row took the box),
    ``clipped`` (``clipped``: applied, but the box reached past the photo and only what lies inside was taken: a
    box measured on a larger copy than ``original_full`` shows up here when it reaches past the photo),
    ``superseded`` (a valid row that a later row for the same record replaced, as ``load_box_corrections`` does;
    the detail says when that row was refused), ``photo_unusable`` (``unusable``: the keys whose photo has an
    ``UNUSABLE_PHOTO`` status), ``invalid_value`` (not a box, or a box outside the photo), ``unknown_processid``
    (``known``: the keys of the records with a photo), ``record_rejected`` (``refused``: the keys of records ingest
    refused, so not ``unknown_processid``: their reject row says why), ``photo_changed`` (``changed``: the keys whose
    row names another photo than the record's). Each row's ``detail`` says what happened and what to do
    (``OUTCOME_DETAIL``; for ``invalid_value``, which of the two)."""
    rows = list(corrections.itertuples(index=False))
    keys = [processid_key(spelled_processid(row.processid)) for row in rows]
    last = {key: i for i, (key, row) in enumerate(zip(keys, rows)) if spelled_processid(row.processid)}
    result = []
    for i, (key, row) in enumerate(zip(keys, rows)):
        if key not in known:
            outcome = "record_rejected" if key in refused else "unknown_processid"
        elif not _is_valid(row):
            outcome, detail = "invalid_value", NOT_A_BOX
        elif last[key] != i:
            outcome, detail = "superseded", OUTCOME_DETAIL["superseded"]
            if key not in applied and key not in unusable:  # the row that replaces it was refused
                detail = SUPERSEDED_BY_REFUSED
        elif key in changed:
            outcome = "photo_changed"
        elif key in applied:
            outcome = "clipped" if key in clipped else "applied"
        elif key in unusable:
            outcome = "photo_unusable"
        else:
            box = parse_box(row.box)
            outcome, detail = "invalid_value", OUTSIDE_THE_PHOTO if box else "not applied to the record's photo"
        if outcome not in ("invalid_value", "superseded"):
            detail = OUTCOME_DETAIL[outcome]
        if outcome == "photo_changed" and not _names_a_sha256(row):
            detail = NOT_A_SHA256
        result.append({"outcome": outcome, "detail": detail})
    # the maintainer's row as written, every column of it (a note), then its outcome
    return pd.concat([corrections.reset_index(drop=True), pd.DataFrame(result, columns=list(OUTCOME_COLUMNS))], axis=1)
