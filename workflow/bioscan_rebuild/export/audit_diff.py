"""The audit's check of the release diff (``metadata/release_diff.csv`` and its summary), written when a release
follows a previous one (config ``release.previous``).

Alone, the release shows whether the diff agrees with it: the summary's counts are the rows', every added,
changed or moved record is released with the value the row says it now has (its split, the field's text, the
image's sha256), every removed one is not released, and no record or field has two rows. With ``--previous`` (the
release it was built against) the diff is made again, as the build makes it, from that release and this one's own
files (CSV, rejects, changes, lineage), and must be the released one byte for byte: an old value or a reason
edited is found too. All in Arrow: a new detector gives every record's images a row, tens of millions at 5M.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from bioscan_rebuild.core.io import csv_header
from bioscan_rebuild.core.schemas import RELEASE_COLUMNS, processid_keys
from bioscan_rebuild.export.diff import (
    ANOTHER_SPELLING,
    DIFF_SCHEMA,
    IMAGE_COLUMNS,
    SOURCE_COLUMNS,
    shortened,
    write_release_diff,
)
from bioscan_rebuild.export.layout import (
    CHANGES,
    RECORDS_LINEAGE,
    REJECTS,
    RELEASE_DIFF_PATH,
    RELEASE_DIFF_SUMMARY_PATH,
    ROOT,
)

KIND = "release diff"
IMAGE_FIELD = "image:"  # the field of a released image's row: image:{package}
CHANGES_WRITTEN = ("added", "removed", "changed", "moved")
SHOWN_ROWS = 50  # rows of a diff that differs from the one made again, each way


def _read_diff(path: Path) -> pa.Table:
    """The diff as the build writes it: every column text, an empty field missing (a quoted "" is a value)."""
    options = pacsv.ConvertOptions(
        column_types=dict.fromkeys(DIFF_SCHEMA.names, pa.large_string()),
        null_values=[""],
        strings_can_be_null=True,
        quoted_strings_can_be_null=False,
    )
    table = pacsv.read_csv(path, convert_options=options)
    if table.schema.names != DIFF_SCHEMA.names:
        raise ValueError(f"columns {table.schema.names}, not {DIFF_SCHEMA.names}")
    return table.combine_chunks()


class _Lineage:
    """The release's lineage columns the diff checks need, read once (4.5 GB at 5M), and its records' keys."""

    def __init__(self, root: Path):
        self.path = root / RECORDS_LINEAGE.path
        self._table: pa.Table | None = None
        self._keys: pa.Array | None = None

    def table(self) -> pa.Table | None:
        if self._table is None and self.path.exists():
            header = csv_header(self.path)
            wanted = [c for c in dict.fromkeys(["processid", *IMAGE_COLUMNS, *SOURCE_COLUMNS]) if c in header]
            options = pacsv.ConvertOptions(
                column_types=dict.fromkeys(wanted, pa.string()),
                include_columns=wanted,
                null_values=[""],
                strings_can_be_null=True,
            )
            self._table = pacsv.read_csv(self.path, convert_options=options).combine_chunks()
        return self._table

    def keys(self) -> pa.Array:
        if self._keys is None:
            self._keys = _keys(self.table()["processid"])
        return self._keys


def _keys(processids) -> pa.Array:
    """``processid_keys`` of an Arrow column, each distinct processid keyed once."""
    processids = processids.combine_chunks() if isinstance(processids, pa.ChunkedArray) else processids
    distinct = pc.unique(processids)
    keyed = pa.array(processid_keys(distinct.to_numpy(zero_copy_only=False)), pa.string())
    return keyed.take(pc.index_in(processids, value_set=distinct))


def _text(column) -> pa.ChunkedArray | pa.Array:
    """A released column as the release CSV writes it (the diff's values): large_string, so that millions of
    barcodes taken into one chunk pass 2 GB."""
    if pa.types.is_dictionary(column.type):
        column = column.cast(column.type.value_type)
    if not pa.types.is_large_string(column.type):
        column = column.cast(pa.large_string())
    return column


TAKE_SLICE = 1 << 16  # positions taken from a released column at a time


def _take_text(column, positions: pa.Array) -> pa.ChunkedArray:
    """``column``'s values at ``positions``, as text, a slice of positions at a time: the whole column is never
    cast (a copy of 3.4 GB of barcodes at 5M, beside the audit's own 14 GB), and no piece passes 2 GB."""
    chunks = []
    for start in range(0, len(positions), TAKE_SLICE):
        taken = _text(column.take(positions.slice(start, TAKE_SLICE)))
        chunks += taken.chunks if isinstance(taken, pa.ChunkedArray) else [taken]
    return pa.chunked_array(chunks, pa.large_string())


def _differs(a, b) -> pa.Array:
    """Per row: the two texts differ (missing equals missing only)."""
    a, b = _text(a), _text(b)
    unequal = pc.fill_null(pc.not_equal(a, b), False)
    return pc.or_(unequal, pc.xor(pc.is_null(a), pc.is_null(b)))


def _rows(mask) -> np.ndarray:
    mask = mask.combine_chunks() if isinstance(mask, pa.ChunkedArray) else mask
    return np.flatnonzero(pc.fill_null(mask, False).to_numpy(zero_copy_only=False))


def _configured_previous(config: dict | None):
    """The release's ``release.previous`` from its config.json; None where the config does not say."""
    release = (config or {}).get("release")
    return release.get("previous") if isinstance(release, dict) else None


def check_release_diff(
    root: Path, csv: pa.Table, findings, previous: Path | None = None, config: dict | None = None
) -> None:
    """The diff against the released records (``csv``, the audit's reference table); with ``previous`` (a release
    folder holding MANIFEST.json), against the diff made again from it. ``config``: the release's config.json,
    whose ``release.previous`` says a diff must be there."""
    path, summary_path = root / RELEASE_DIFF_PATH, root / RELEASE_DIFF_SUMMARY_PATH
    where, summary_where = f"{ROOT}/{RELEASE_DIFF_PATH}", f"{ROOT}/{RELEASE_DIFF_SUMMARY_PATH}"
    if not path.exists() and not summary_path.exists():
        if previous is not None:
            findings.add(
                KIND,
                f"{ROOT}/metadata: no release_diff.csv, so nothing to check against --previous {previous} (this "
                "release was built without release.previous)",
            )
        elif _configured_previous(config):
            findings.add(
                KIND,
                f"{ROOT}/metadata: no release_diff.csv or its summary, but metadata/config.json says the release "
                f"follows {_configured_previous(config)} (release.previous): the build writes both",
            )
        return
    for missing, there in ((path, summary_where), (summary_path, where)):
        if not missing.exists():
            findings.add(KIND, f"{ROOT}/{missing.relative_to(root).as_posix()}: missing, beside {there}")
            return
    try:
        diff = _read_diff(path)
    except (pa.ArrowInvalid, ValueError) as error:
        findings.add("unreadable", f"{where}: not the diff the release writes ({str(error).splitlines()[0][:200]})")
        return
    try:
        summary = json.loads(summary_path.read_text())
    except (OSError, ValueError) as error:
        summary = None
        findings.add("unreadable", f"{summary_where}: cannot be read ({error})")
    else:
        if not isinstance(summary, dict):
            findings.add("unreadable", f"{summary_where}: not the JSON object the build writes")
            summary = None
    lineage = _Lineage(root)
    if summary is not None:
        _check_summary(diff, summary, csv.num_rows, where, summary_where, findings)
    _check_rows(diff, csv, lineage, where, findings)
    if previous is not None:
        _check_against_previous(root, csv, lineage, Path(previous), path, summary_path, findings)


def _masks(diff: pa.Table) -> dict[str, pa.Array]:
    change, field = diff["change"], diff["field"]
    image = pc.fill_null(pc.starts_with(field, IMAGE_FIELD), False)
    return {
        "image": image,
        **{kind: pc.fill_null(pc.equal(change, kind), False) for kind in CHANGES_WRITTEN},
    }


def _check_summary(diff: pa.Table, summary: dict, records: int, where: str, summary_where: str, findings) -> None:
    masks = _masks(diff)
    changed = pc.and_(masks["changed"], pc.invert(masks["image"]))

    def count(mask) -> int:
        return int(pc.sum(pc.cast(mask, pa.int64())).as_py() or 0)

    def distinct(mask) -> int:  # a missing processid counts as one, as the build's set of them does
        return int(pc.count_distinct(diff["processid"].filter(mask), mode="all").as_py())

    counted = {
        "records": records,
        "added": count(masks["added"]),
        "removed": count(masks["removed"]),
        "changed_fields": count(changed),
        "changed_records": distinct(changed),
        "moved": count(masks["moved"]),
    }
    image_rows = pc.and_(masks["changed"], masks["image"])
    if "changed_images" in summary or count(masks["image"]):
        counted["changed_images"] = distinct(image_rows)
    for key, number in counted.items():
        said = summary.get(key)
        if said != number:
            held = "the release holds" if key == "records" else f"{where} holds"
            findings.add(KIND, f"{summary_where}: {key} {said}, {held} {number}")
    before = summary.get("previous_records")
    if type(before) is not int or before - counted["removed"] + counted["added"] != records:
        findings.add(
            KIND,
            f"{summary_where}: previous_records {before} - removed {counted['removed']} + added {counted['added']} "
            f"is not the {records} records released",
        )


def _check_rows(diff: pa.Table, csv: pa.Table, lineage: _Lineage, where: str, findings) -> None:
    """Each row's record is released (or, removed, is not) with the value the row says it has now; no record or
    field has two rows."""
    if diff.num_rows == 0:
        return
    masks = _masks(diff)
    released = csv["processid"].combine_chunks()
    keys = _keys(diff["processid"])
    at = pc.index_in(keys, value_set=_keys(released))
    held = pc.is_valid(at)
    known = pc.is_in(diff["change"], value_set=pa.array(CHANGES_WRITTEN, pa.large_string()))
    known = pc.fill_null(known, False)

    def report(mask, line) -> None:
        rows = _rows(mask)
        findings.add_each(KIND, [int(i) for i in findings.first(rows)], line, total=len(rows))

    def value(column: str, i: int):
        return diff[column][i].as_py()

    report(
        pc.invert(known),
        lambda i: f"{where}:{i + 2}: {value('processid', i)}: change {value('change', i)!r} is none the diff writes",
    )
    # a previous release holding one record twice (two spellings, or one twice): the copy after the first is
    # removed while the record stays, whichever spelling this build kept
    second_spelling = _second_spellings(diff)
    report(
        pc.and_(pc.and_(masks["removed"], held), pc.invert(second_spelling)),
        lambda i: f"{where}:{i + 2}: {value('processid', i)} is removed, but the release holds it",
    )
    report(
        pc.and_(pc.and_(known, pc.invert(masks["removed"])), pc.invert(held)),
        lambda i: f"{where}:{i + 2}: {value('processid', i)} is {value('change', i)}, but the release does not hold it",
    )
    report(
        pc.and_(masks["image"], pc.invert(masks["changed"])),
        lambda i: (
            f"{where}:{i + 2}: {value('processid', i)}: {value('field', i)} is {value('change', i)}: an "
            "image's row is always changed"
        ),
    )
    report(
        pc.and_(masks["changed"], pc.is_null(diff["field"])),
        lambda i: f"{where}:{i + 2}: {value('processid', i)} is changed, but the row names no field",
    )
    _check_repeated(diff, second_spelling, where, findings)
    # the released text of what each row names: the split for added and moved rows, the field for changed ones
    plain = pc.and_(pc.and_(masks["changed"], pc.invert(masks["image"])), pc.is_valid(diff["field"]))
    to_split = pc.or_(masks["added"], masks["moved"])
    named = pc.if_else(to_split, pa.scalar("split", pa.large_string()), diff["field"])
    checked = pc.and_(pc.or_(plain, to_split), held)
    columns = set(csv.schema.names)
    for name in pc.unique(named.filter(checked)).to_pylist():
        mask = pc.and_(checked, pc.fill_null(pc.equal(named, name), False))
        if name not in columns:
            report(
                mask, lambda i, name=name: f"{where}:{i + 2}: {value('processid', i)}: {name!r} is no release column"
            )
            continue
        rows = pa.array(_rows(mask), pa.int64())
        now = _take_text(csv[name], at.take(rows))
        wrong = _rows(_differs(diff["new"].take(rows), now))  # positions in rows

        def line(k, name=name, now=now, rows=rows) -> str:
            i = rows[k].as_py()
            return (
                f"{where}:{i + 2}: {value('processid', i)} {name} is now {value('new', i)!r}, the release holds "
                f"{now[k].as_py()!r}"
            )

        findings.add_each(KIND, [int(k) for k in findings.first(wrong)], line, total=len(wrong))
    image_rows = pc.and_(pc.and_(masks["image"], masks["changed"]), held)
    if pc.any(image_rows).as_py():
        _check_image_rows(diff, keys, image_rows, lineage, where, findings)


def _second_spellings(diff: pa.Table) -> pa.Array:
    """The rows removing a previous release's later copy of a record it held twice (``ANOTHER_SPELLING``)."""
    return pc.and_(
        pc.fill_null(pc.equal(diff["change"], "removed"), False),
        pc.fill_null(pc.equal(diff["why"], ANOTHER_SPELLING), False),
    )


def _codes(column) -> np.ndarray:
    """Each value's code, a missing one its own."""
    encoded = pc.dictionary_encode(column, null_encoding="encode").combine_chunks()
    return encoded.indices.to_numpy(zero_copy_only=False)


def _check_repeated(diff: pa.Table, second_spelling, where: str, findings) -> None:
    """A record (as spelled) has one row per change and field: a row repeated, or a record added twice (the later
    copies of a record a previous release held twice aside). Sorted codes, neighbours compared (a group-by over
    three text columns took half the check's time)."""
    rows = np.flatnonzero(~pc.fill_null(second_spelling, False).to_numpy(zero_copy_only=False))
    if len(rows) < 2:
        return
    codes = [_codes(diff[name].take(pa.array(rows)))[: len(rows)] for name in ("field", "change", "processid")]
    order = np.lexsort(codes)  # stable: equal rows keep their file order
    same = np.ones(len(rows) - 1, bool)
    for code in codes:
        same &= code[order][1:] == code[order][:-1]
    if not same.any():
        return
    starts = np.flatnonzero(same & ~np.concatenate([[False], same[:-1]]))  # the first pair of each run
    times = {}
    for start in starts:
        end = start + 1
        while end < len(same) and same[end]:
            end += 1
        times[int(rows[order[start]])] = end - start + 1
    repeated = sorted(times)

    def line(i) -> str:
        row = {name: diff[name][i].as_py() for name in ("processid", "change", "field")}
        return f"{where}:{i + 2}: {row['processid']} has {times[i]} rows {row['change']} {row['field']}"

    findings.add_each(KIND, findings.first(repeated), line, total=len(repeated))


def _check_image_rows(diff, keys, mask, lineage: _Lineage, where, findings) -> None:
    """An image row's new sha256 (its first digits) is the lineage's for that record and package."""
    table = lineage.table()
    if table is None:
        findings.add(KIND, f"{where}: image rows, but the release has no {ROOT}/{RECORDS_LINEAGE.path} to hold them")
        return
    found = pc.index_in(keys, value_set=lineage.keys())
    for field in pc.unique(diff["field"].filter(mask)).to_pylist():
        column = f"sha256_{field.removeprefix(IMAGE_FIELD)}"
        rows = pa.array(_rows(pc.and_(mask, pc.fill_null(pc.equal(diff["field"], field), False))), pa.int64())
        if column not in table.schema.names:
            findings.add_each(
                KIND,
                findings.first(rows).to_pylist(),
                lambda i, field=field: (
                    f"{where}:{i + 2}: {diff['processid'][i].as_py()}: {field} is no released package"
                ),
                total=len(rows),
            )
            continue
        named = shortened(pa.table({"processid": table["processid"], column: table[column]}))[column]
        now = named.take(found.take(rows))
        wrong = _rows(_differs(diff["new"].take(rows), now))  # positions in rows

        def line(k, field=field, now=now, rows=rows) -> str:
            i = rows[k].as_py()
            pid, new = diff["processid"][i].as_py(), diff["new"][i].as_py()
            return f"{where}:{i + 2}: {pid} {field} is now {new!r}, the lineage says {now[k].as_py()!r}"

        findings.add_each(KIND, [int(k) for k in findings.first(wrong)], line, total=len(wrong))


def _check_against_previous(
    root: Path, csv: pa.Table, lineage: _Lineage, previous: Path, path: Path, summary_path: Path, findings
) -> None:
    """The diff made again from ``previous`` and this release's own files, compared with the released one."""
    import pandas as pd

    where = f"{ROOT}/{RELEASE_DIFF_PATH}"
    summary_where = f"{ROOT}/{RELEASE_DIFF_SUMMARY_PATH}"
    new = csv.select([c for c in RELEASE_COLUMNS if c in csv.schema.names])
    text = {"dtype": str, "keep_default_na": False, "na_values": [""]}
    rejects_path, changes_path = root / REJECTS.path, root / CHANGES.path
    rejects = pd.read_csv(rejects_path, **text) if rejects_path.exists() else pd.DataFrame()
    changes = (
        pd.read_csv(changes_path, usecols=["processid", "field", "rule"], **text)
        if changes_path.exists()
        else pd.DataFrame(columns=["processid", "field", "rule"])
    )
    table = lineage.table()
    images = None
    if table is not None and all(c in table.schema.names for c in IMAGE_COLUMNS):
        images = shortened(table.select(["processid", *IMAGE_COLUMNS]))
        # the build's image rows hold no photo hash where no image was made (no store key): the lineage's comes
        # from the ingested record
        photo = pc.if_else(
            pc.is_null(images["params_key"]), pa.nulls(images.num_rows, pa.string()), images["image_sha256"]
        )
        images = images.set_column(images.schema.get_field_index("image_sha256"), "image_sha256", photo)

    def sources(processids) -> pd.DataFrame:  # the records' source rows, as the build's records give them
        if table is None or not all(c in table.schema.names for c in SOURCE_COLUMNS):
            return pd.DataFrame(columns=list(SOURCE_COLUMNS))
        picked = table.select(list(SOURCE_COLUMNS))
        return picked.filter(
            pc.is_in(picked["processid"], value_set=pa.array(list(processids), pa.string()))
        ).to_pandas()

    with tempfile.TemporaryDirectory(prefix="audit-diff-") as folder:
        made = write_release_diff(previous, new, rejects, changes, Path(folder), images, sources)
        remade_summary = json.loads(made["release_diff_summary.json"].read_text())
        try:
            stated = json.loads(summary_path.read_text())
        except (OSError, ValueError):
            stated = None  # said already
        said_manifest = stated.get("previous_manifest_sha256") if isinstance(stated, dict) else None
        if isinstance(stated, dict) and said_manifest != remade_summary["previous_manifest_sha256"]:
            findings.add(
                KIND,
                f"{summary_where}: made against a release whose MANIFEST.json has sha256 {str(said_manifest)[:16]}…, "
                f"--previous {previous} has {remade_summary['previous_manifest_sha256'][:16]}…: another release "
                "(or one changed since)",
            )
            return
        if isinstance(stated, dict):
            for key in sorted(set(stated) | set(remade_summary)):
                if stated.get(key) != remade_summary.get(key):
                    findings.add(
                        KIND,
                        f"{summary_where}: {key} {stated.get(key)!r}, the diff made again against --previous gives "
                        f"{remade_summary.get(key)!r}",
                    )
        if made["release_diff.csv"].read_bytes() == path.read_bytes():
            return
        remade = _read_diff(made["release_diff.csv"])
    _compare_diffs(_read_diff(path), remade, where, findings)


NO_VALUE = "\x00"  # a missing cell in a grouping key: no CSV text holds it, unlike a quoted ""


def _surplus(a: pa.Table, b: pa.Table) -> tuple[pa.Table, pa.Table]:
    """(rows ``a`` holds more often than ``b``, and the reverse), each with both counts, sorted: the two diffs
    as multisets of rows, in Arrow."""
    filled = [pa.table({n: pc.fill_null(t[n], NO_VALUE) for n in DIFF_SCHEMA.names}) for t in (a, b)]
    counts = [t.group_by(DIFF_SCHEMA.names).aggregate([([], "count_all")]) for t in filled]
    joined = counts[0].join(
        counts[1], DIFF_SCHEMA.names, join_type="full outer", left_suffix="_stated", right_suffix="_made"
    )
    said, made = (pc.fill_null(joined[f"count_all_{side}"], 0) for side in ("stated", "made"))
    joined = pa.table({**{n: joined[n] for n in DIFF_SCHEMA.names}, "stated": said, "made": made})
    order = [(name, "ascending") for name in DIFF_SCHEMA.names]
    return (joined.filter(pc.greater(said, made)).sort_by(order), joined.filter(pc.less(said, made)).sort_by(order))


def _compare_diffs(stated: pa.Table, remade: pa.Table, where: str, findings) -> None:
    """The rows of the released diff against those of the one made again, in Arrow: line by line where a few
    rows were edited in place, else as rows one diff holds more often than the other (a row added or dropped
    shifts every later line; rows sorted otherwise are all in the wrong line)."""
    more, fewer = _surplus(stated, remade)
    if stated.num_rows == remade.num_rows:
        differing = pa.array(np.zeros(stated.num_rows, bool))
        for name in DIFF_SCHEMA.names:
            differing = pc.or_(differing, _differs(stated[name], remade[name]))
        rows = _rows(differing)
        if not more.num_rows and not fewer.num_rows:
            what = "in another order" if len(rows) else "written otherwise (quoting)"
            findings.add(KIND, f"{where}: the rows of the diff made again against --previous, {what}")
            return
        if len(rows) <= more.num_rows + fewer.num_rows:  # edits in place: each its own line
            findings.add_each(
                KIND,
                [int(i) for i in findings.first(rows)][:SHOWN_ROWS],
                lambda i: (
                    f"{where}:{i + 2}: {_shown(stated, i)}; the diff made again against --previous gives "
                    f"{_shown(remade, i)}"
                ),
                total=len(rows),
            )
            return
    for rows, phrase in (
        (more, "a row it holds more often than the diff made again against --previous"),
        (fewer, "a row the diff made again against --previous holds more often"),
    ):
        shown = findings.first(rows)
        findings.add_each(
            KIND,
            shown.slice(0, SHOWN_ROWS).to_pylist(),
            lambda r, phrase=phrase: (
                f"{where}: {phrase} ({r['stated']} against {r['made']}): "
                + ", ".join(f"{n}={r[n]!r}" for n in DIFF_SCHEMA.names if r[n] not in (None, NO_VALUE))
            ),
            total=rows.num_rows,
        )


def _shown(table: pa.Table, i: int) -> str:
    return ", ".join(f"{n}={table[n][i].as_py()!r}" for n in DIFF_SCHEMA.names if table[n][i].as_py())
