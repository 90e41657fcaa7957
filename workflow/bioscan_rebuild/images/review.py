"""The review queue: the photos a person should look at, on one HTML page, and the file to answer in.

``write_review`` reads the image tables of a run (``results/images/*/images.parquet``) and writes
``review.html`` (thumbnails with their boxes, grouped by reason: ``images.process.REVIEW_REASONS``; a photo
with several reasons appears under each; within a reason the least confident photos first, so a person with
little time starts where mistakes are likeliest) and ``box_corrections.tsv``, a template of the corrections file:
one commented-out line per flagged photo with its current box. Uncomment and edit the lines to change
(``x0,y0,x1,y1`` in ``original_full`` pixels, or ``empty``), point ``images.box_corrections`` at the file and
re-run: only those photos are redone (``images.corrections``). Written again into the same folder, the template
keeps the maintainer's lines (header, answers, comments) and lists only the flagged photos not answered (an answer
for a replaced photo, or with no box, answers nothing); queue lines follow the header's columns, and one whose box
was edited but left commented is kept as it is, above the fresh one (``edited_but_commented``).
With ``limit``, only the least confident flagged photos are shown (a maintainer's budget: with the fusion
backend the confidence is the chance the answer is right, so these are where the mistakes are likeliest); a box
typed into the line of a photo not shown now (past the limit, no longer flagged, its record gone) stays. The
page is deterministic (no dates) and self-contained (thumbnails inline), so it can be mailed or archived beside
the release.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path

import cv2

from bioscan_rebuild.core.io import atomic_path, read_table
from bioscan_rebuild.core.schemas import processid_key, spelled_processid
from bioscan_rebuild.core.store import ImageStore
from bioscan_rebuild.core.tsv import decoded, is_comment, unquote
from bioscan_rebuild.images.contact_sheet import least_confident, whole_photo
from bioscan_rebuild.images.corrections import (
    BOX_CORRECTION_COLUMNS,
    PHOTO_COLUMN,
    by_record,
    read_box_corrections,
)
from bioscan_rebuild.images.process import REVIEW_REASONS
from bioscan_rebuild.images.shard import IMAGE_RECORD_SCHEMA, shared_photos

THUMB_WIDTH = 320
REASON_TEXT = {
    "low_confidence": "low confidence: more likely wrong than the average hand-checked training photo",
    "backends_disagree": "the classical and the learned detector disagree (different boxes, or one sees none)",
    "several_specimens": "more than one separate object cleared the bar",
    "box_on_rim": "the box reaches the photo's border, where the well's rim is",
    "grey_photo": "a photo without colour: the detectors score colour contrast, so a specimen is easily missed",
    "no_organism_pixels": "the box holds no pixel the segmentation takes for an organism (a dark frame, noise)",
    "shared_photo": "one photo (the same file, or the same pixels in another) is the photo of more than one record: "
    "a copy under another name is likely a delivery mistake (two specimens cannot share a photo); set each record's "
    "box or empty",
}
# the page's reasons: the photo's own, and one only the whole run shows
REASONS = (*REVIEW_REASONS, "shared_photo")


def image_rows(image_tables) -> list[dict]:
    """Every photo row of the run, by processid, those shared by several records (``shared_photos``: only the
    whole run shows them) flagged with ``shared_photo`` added to their reasons unless a maintainer's box
    correction already answered for the record (it left the queue)."""
    image_tables = list(image_tables)
    shared = {processid for ids in shared_photos(image_tables).values() for processid in ids}
    rows = []
    for path in image_tables:
        for row in read_table(path, IMAGE_RECORD_SCHEMA).to_pylist():
            if row["processid"] in shared and row["box_source"] != "correction":
                row["review_reason"] = ";".join(filter(None, [row["review_reason"], "shared_photo"]))
                row["needs_review"] = True
            rows.append(row)
    return sorted(rows, key=lambda r: r["processid"])


def flagged_rows(image_tables) -> list[dict]:
    """The photos to look at: those their shard flagged, and those shared by several records."""
    return [row for row in image_rows(image_tables) if row["needs_review"]]


def _thumbnail(store: ImageStore, row: dict) -> str | None:
    """The whole photo with its box drawn, as a base64 JPEG (None when the store lacks it)."""
    found = whole_photo(store, row)
    if found is None:
        return None
    image, to_image = found
    scale = THUMB_WIDTH / image.shape[1]
    small = cv2.resize(image, (THUMB_WIDTH, round(image.shape[0] * scale)), interpolation=cv2.INTER_AREA)
    if row["x0"] is not None:
        box = [round(v * to_image * scale) for v in (row["x0"], row["y0"], row["x1"], row["y1"])]
        cv2.rectangle(small, (box[0], box[1]), (box[2] - 1, box[3] - 1), (0, 0, 255), 2)
    ok, encoded = cv2.imencode(".jpg", small, [cv2.IMWRITE_JPEG_QUALITY, 80])
    return base64.b64encode(encoded.tobytes()).decode() if ok else None


def least_confident_first(rows: list[dict]) -> list[dict]:
    """As ``contact_sheet.least_confident``, then by processid."""
    return sorted(rows, key=lambda row: (*least_confident(row), row["processid"]))


def _source_frame(row: dict) -> str:
    """Where the source photo (upright) is another size than ``original_full``: its size, and how to bring a box
    measured on it into ``original_full`` pixels (such a box was applied silently unless it reached past the
    photo)."""
    width, height = row.get("source_width"), row.get("source_height")
    if width is None or height is None or (width, height) == (row["width_original"], row["height_original"]):
        return ""
    across, down = width / row["width_original"], height / row["height_original"]
    factor = f"{across:.5g}" if f"{across:.5g}" == f"{down:.5g}" else f"{across:.5g} across and {down:.5g} down"
    return f" of original_full; the source photo is {width}×{height}: divide a box measured on it by {factor}"


def _box_text(row: dict) -> str:
    return "empty" if row["x0"] is None else f"{row['x0']},{row['y0']},{row['x1']},{row['y1']}"


TEMPLATE_NOTES = (
    "# Box corrections: uncomment (remove the leading '# ') and edit the lines of the photos to change.",
    "# box: x0,y0,x1,y1 in original_full pixels (x1, y1 exclusive), or empty. Then set images.box_corrections.",
    "# image_sha256: the photo shown (a box is not applied to another photo of the record, e.g. a redelivery's).",
)


QUEUE_SOURCE = "review"  # the source field of a queue line: what tells it from a maintainer's own comment
# the box a queue line offered when written: a box typed into a line left commented differs from it (the
# detector's current box cannot tell: after a detector update or a correction every untouched line differed)
OFFERED_COLUMN = "offered_box"


def _uncommented(line: str) -> str:
    """A commented line without its ``#``, also where a spreadsheet quoted the first cell (``"# PID-A"``)."""
    first, tab, rest = line.lstrip().partition("\t")
    return unquote(first.strip())[1:] + tab + rest


def _fields(line: str, columns: list[str]) -> dict[str, str]:
    """A tab-separated line (without its ``#``) by the header's columns; missing trailing fields are empty."""
    values = [unquote(value.strip()) for value in line.split("\t")]
    return dict(zip(columns, values + [""] * (len(columns) - len(values))))


def _earlier_template(template: Path) -> tuple[list[str], list[str], dict[str, list[str]]]:
    """An earlier template as the maintainer left it: their lines word for word (the header, answers with any
    columns of their own, their own comments, tab-separated or not), the header's columns (``image_sha256`` added
    when their header lacks it: the queue lines pin their photo), and the queue lines (``# `` + fields, source
    ``review``) by processid key, to be written afresh unless edited. A new template: just the header."""
    lines = []
    if template.exists():
        text = decoded(template.read_bytes(), template).replace("\r\n", "\n")
        # the notes as written, or as a spreadsheet quoted them (they hold commas)
        lines = [line for line in text.split("\n") if line.strip() and unquote(line.strip()) not in TEMPLATE_NOTES]
    header = next((i for i, line in enumerate(lines) if not is_comment(line)), None)
    if header is None:
        lines.append("\t".join([*BOX_CORRECTION_COLUMNS, PHOTO_COLUMN]))
        header = len(lines) - 1
    columns = [unquote(column.strip()) for column in lines[header].split("\t")]
    for column in (PHOTO_COLUMN, OFFERED_COLUMN):  # optional columns: answers without them keep working
        if column not in columns:
            # after the last named column (a spreadsheet's trailing tabs would put an unnamed column before it)
            while columns and not columns[-1]:
                columns.pop()
            lines[header] = lines[header].rstrip("\t ") + "\t" + column
            columns.append(column)
    kept, queue = [], {}
    for line in lines:
        comment = is_comment(line)
        fields = _fields(_uncommented(line), columns) if comment and "\t" in line else {}
        if fields.get("source") == QUEUE_SOURCE and fields.get("processid"):
            queue.setdefault(processid_key(spelled_processid(fields["processid"])), []).append(line)
        else:
            kept.append(line)
    return kept, columns, queue


def _inside(box, row: dict) -> bool:
    """Whether an answer's box (None: empty) has any part inside the row's photo: one outside it is refused by
    the run (``invalid_value``), so the photo stays in the queue."""
    if box is None or row["width_original"] is None:
        return True
    x0, y0, x1, y1 = box
    return x0 < row["width_original"] and y0 < row["height_original"] and x1 > 0 and y1 > 0


def _queue_line(row: dict, columns: list[str]) -> str:
    values = {
        "processid": row["processid"],
        "box": _box_text(row),
        "reason": row["review_reason"] or "",
        "source": QUEUE_SOURCE,
        PHOTO_COLUMN: row["image_sha256"] or "",
        OFFERED_COLUMN: _box_text(row),
    }
    return "# " + "\t".join(values.get(column, "") for column in columns).rstrip("\t")


def _edited(before: str, fresh: str | None, columns: list[str]) -> bool:
    """Whether an earlier queue line carries a box the maintainer typed (it differs from the box the line offered)
    but is still commented out, so it answers nothing yet; with a ``fresh`` line (the record is in the run), only
    one drawn on the same photo. A line from before ``offered_box`` was written: typed if it differs from the fresh
    line's box (with no fresh line, kept as it is)."""
    old = _fields(_uncommented(before), columns)
    box = old.get("box", "").replace(" ", "").lower()
    offered = old.get(OFFERED_COLUMN, "").replace(" ", "").lower()
    if fresh is None:
        return not offered or box != offered
    new = _fields(_uncommented(fresh), columns)
    same_photo = old.get(PHOTO_COLUMN, "").lower() in ("", new.get(PHOTO_COLUMN, "").lower())
    return same_photo and box != (offered or new.get("box", "").lower())


def write_review(image_tables, store_root, outdir, limit: int | None = None) -> dict:
    """review.html and box_corrections.tsv under ``outdir``; returns the photos flagged, those shown (``limit``:
    the least confident ones only) and the shown ones per reason."""
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be at least 1, not {limit}")
    outdir = Path(outdir)
    if outdir.exists() and not outdir.is_dir():
        raise ValueError(f"{outdir} is a file: give a folder for review.html and box_corrections.tsv")
    template = outdir / "box_corrections.tsv"
    # a maintainer's answers in an earlier template: kept, never overwritten (read_box_corrections refuses a file
    # that is no corrections table, so nothing else is overwritten either): read before anything is written
    answers = read_box_corrections(template if template.exists() else None)
    valid_answers = by_record(answers)  # an invalid box or one drawn on a replaced photo answers nothing

    def answered(row: dict) -> bool:
        answer = valid_answers.get(processid_key(row["processid"]))
        return answer is not None and answer.fits(row["image_sha256"]) and _inside(answer.box, row)

    everyone = image_rows(image_tables)
    rows = [row for row in everyone if row["needs_review"]]
    flagged = len(rows)
    # answered photos leave the page and the budget: the next pass shows the next ones (they are redone only when
    # the workflow runs again)
    rows = [row for row in rows if not answered(row)]
    pending = len(rows)
    if limit is not None:
        rows = sorted(least_confident_first(rows)[:limit], key=lambda row: row["processid"])
    by_reason = {
        reason: least_confident_first([row for row in rows if reason in (row["review_reason"] or "").split(";")])
        for reason in REASONS
    }
    store = ImageStore(store_root, mode="none")  # read only
    thumbs = {row["processid"]: _thumbnail(store, row) for row in rows}
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>Review queue</title><style>",
        "body{font-family:sans-serif;margin:1em} figure{display:inline-block;margin:4px;width:"
        f"{THUMB_WIDTH}px;vertical-align:top}} figcaption{{font-size:12px}} img{{width:{THUMB_WIDTH}px}}",
        "</style></head><body>",
        f"<h1>Review queue: {len(rows)} photos</h1>"
        + (
            f"<p>{flagged - pending} of the {flagged} flagged photos are answered in box_corrections.tsv and are not "
            "shown.</p>"
            if pending < flagged
            else ""
        )
        + (
            f"<p>The {len(rows)} least confident of the {pending} "
            + ("flagged photos" if pending == flagged else "unanswered ones")
            + ".</p>"
            if len(rows) < pending
            else ""
        ),
        "<p>Answer in <code>box_corrections.tsv</code> (beside this page): uncomment a photo's line, set its box "
        "(<code>x0,y0,x1,y1</code>, original_full pixels: the size under each photo, not its source's) or "
        "<code>empty</code>, point "
        "<code>images.box_corrections</code> at the file and re-run. Under each reason the least confident "
        "photos come first (the lowest detector score).</p><ul>",
        *[f"<li><a href='#{reason}'>{reason}</a>: {len(by_reason[reason])}</li>" for reason in REASONS],
        "</ul>",
    ]
    for reason in REASONS:
        parts.append(f"<h2 id='{reason}'>{reason} ({len(by_reason[reason])})</h2>")
        parts.append(f"<p>{html.escape(REASON_TEXT[reason])}</p>")
        for row in by_reason[reason]:
            thumb = thumbs[row["processid"]]
            image = f"<img alt='' src='data:image/jpeg;base64,{thumb}'>" if thumb else "<p>(photo not in the store)</p>"
            caption = (
                f"{html.escape(row['processid'])} · {html.escape(row['image_status'])} · "
                f"score {row['detector_score']} · box {_box_text(row)}"
            )
            if row["width_original"] is not None:  # the frame a corrected box is given in
                caption += f" in {row['width_original']}×{row['height_original']} px"
                caption += _source_frame(row)
            parts.append(f"<figure>{image}<figcaption>{caption}</figcaption></figure>")
    parts.append("</body></html>\n")
    with atomic_path(outdir / "review.html") as temporary:
        temporary.write_text("\n".join(parts), encoding="utf-8")
    kept, columns, earlier_queue = _earlier_template(template)
    queue, edited = [], 0
    for row in rows:
        if answered(row):
            continue
        line = _queue_line(row, columns)
        # a box typed but left commented is the maintainer's, kept; the detector's box now follows it (the old
        # line's box may also be an earlier detector's: the two side by side, a person chooses)
        kept_edits = [
            before
            for before in earlier_queue.get(processid_key(row["processid"]), [])
            if _edited(before, line, columns)
        ]
        queue += [*kept_edits, line]
        edited += len(kept_edits)
    # A photo not shown now (past ``limit``, no longer flagged, or its record gone from the run) keeps the boxes
    # typed into its earlier lines: a smaller budget on the next pass must not erase a maintainer's work.
    shown = {processid_key(row["processid"]) for row in rows}
    current = {processid_key(row["processid"]): row for row in everyone}
    not_shown = 0
    for key in sorted(set(earlier_queue) - shown):
        row = current.get(key)
        if row is not None and answered(row):
            continue
        fresh = _queue_line(row, columns) if row is not None else None
        held = [before for before in earlier_queue[key] if _edited(before, fresh, columns)]
        queue += held
        not_shown += len(held)
    lines = [*TEMPLATE_NOTES, *kept, *queue]
    with atomic_path(template) as temporary:
        temporary.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return {
        "flagged": flagged,
        "shown": len(rows),
        "answers_kept": len(answers),
        "edited_but_commented": edited,
        "kept_not_shown": not_shown,
        **{reason: len(by_reason[reason]) for reason in REASONS},
    }
