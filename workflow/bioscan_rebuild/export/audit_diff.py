"""The audit's check of the release diff (``metadata/release_diff.csv`` and its summary), written when a release
follows a previous one (config ``release.previous``).

Alone, the release shows whether the diff agrees with it: the summary's counts are the rows', every added,
changed or moved record is released with the value the row says it now has (its split, the field's text, the
image's sha256), and every removed one is not released. With ``--previous`` (the release it was built against)
the diff is made again, as the build makes it, from that release and this one's own files (CSV, rejects, changes,
lineage), and must be the released one byte for byte: an old value or a reason edited is found too.
"""

from __future__ import annotations

import json
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from bioscan_rebuild.core.schemas import RELEASE_COLUMNS, processid_keys
from bioscan_rebuild.export.diff import (
    ANOTHER_SPELLING,
    DIFF_SCHEMA,
    IMAGE_COLUMNS,
    SOURCE_COLUMNS,
    _as_text,
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


def _read_diff(path: Path) -> pa.Table:
    """The diff as the build writes it: every column text, an empty field missing (a quoted "" is a value)."""
    options = pacsv.ConvertOptions(
        column_types=dict.fromkeys(DIFF_SCHEMA.names, pa.string()),
        null_values=[""],
        strings_can_be_null=True,
        quoted_strings_can_be_null=False,
    )
    table = pacsv.read_csv(path, convert_options=options)
    if table.schema.names != DIFF_SCHEMA.names:
        raise ValueError(f"columns {table.schema.names}, not {DIFF_SCHEMA.names}")
    return table.combine_chunks()


def _lineage(root: Path, columns) -> pa.Table | None:
    path = root / RECORDS_LINEAGE.path
    if not path.exists():
        return None
    header = pacsv.read_csv(path, read_options=pacsv.ReadOptions(block_size=1 << 16)).schema.names
    wanted = [c for c in columns if c in header]
    options = pacsv.ConvertOptions(
        column_types=dict.fromkeys(wanted, pa.string()),
        include_columns=wanted,
        null_values=[""],
        strings_can_be_null=True,
    )
    return pacsv.read_csv(path, convert_options=options).combine_chunks()


def _positions(keys: pa.Array, of: pa.Array) -> pa.Array:
    """Each key's row in ``of`` (keys too), null where ``of`` lacks it."""
    return pc.index_in(keys, value_set=of)


def _keys(column) -> pa.Array:
    values = column.to_numpy(zero_copy_only=False) if hasattr(column, "to_numpy") else column
    return pa.array(processid_keys(values), pa.string())


def check_release_diff(root: Path, csv: pa.Table, findings, previous: Path | None = None) -> None:
    """The diff against the released records (``csv``, the audit's reference table); with ``previous`` (a release
    folder holding MANIFEST.json), against the diff made again from it."""
    path, summary_path = root / RELEASE_DIFF_PATH, root / RELEASE_DIFF_SUMMARY_PATH
    where, summary_where = f"{ROOT}/{RELEASE_DIFF_PATH}", f"{ROOT}/{RELEASE_DIFF_SUMMARY_PATH}"
    if not path.exists() and not summary_path.exists():
        if previous is not None:
            findings.add(
                KIND,
                f"{ROOT}/metadata: no release_diff.csv, so nothing to check against --previous {previous} (this "
                "release was built without release.previous)",
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
    if not isinstance(summary, dict):
        if summary is not None:
            findings.add("unreadable", f"{summary_where}: not the JSON object the build writes")
        summary = None
    if summary is not None:
        _check_summary(diff, summary, csv.num_rows, where, summary_where, findings)
    _check_rows(root, diff, csv, where, findings)
    if previous is not None:
        _check_against_previous(root, csv, Path(previous), path, summary_path, findings)


def _check_summary(diff: pa.Table, summary: dict, records: int, where: str, summary_where: str, findings) -> None:
    change = diff["change"].to_numpy(zero_copy_only=False)
    field = diff["field"].to_numpy(zero_copy_only=False)
    processid = diff["processid"].to_numpy(zero_copy_only=False)
    image = np.array([isinstance(f, str) and f.startswith(IMAGE_FIELD) for f in field], dtype=bool)
    changed = (change == "changed") & ~image
    counted = {
        "records": records,
        "added": int((change == "added").sum()),
        "removed": int((change == "removed").sum()),
        "changed_fields": int(changed.sum()),
        "changed_records": len(set(processid[changed])),
        "moved": int((change == "moved").sum()),
    }
    if "changed_images" in summary or image.any():
        counted["changed_images"] = len(set(processid[image & (change == "changed")]))
    for key, count in counted.items():
        said = summary.get(key)
        if said != count:
            held = "the release holds" if key == "records" else f"{where} holds"
            findings.add(KIND, f"{summary_where}: {key} {said}, {held} {count}")
    before = summary.get("previous_records")
    if type(before) is not int or before - counted["removed"] + counted["added"] != records:
        findings.add(
            KIND,
            f"{summary_where}: previous_records {before} - removed {counted['removed']} + added {counted['added']} "
            f"is not the {records} records released",
        )


def _check_rows(root: Path, diff: pa.Table, csv: pa.Table, where: str, findings) -> None:
    """Each row's record is released (or, removed, is not) with the value the row says it has now."""
    released_keys = _keys(csv["processid"].combine_chunks())
    keys = _keys(diff["processid"])
    at = _positions(keys, released_keys)
    held = pc.is_valid(at).to_numpy(zero_copy_only=False)
    change = diff["change"].to_numpy(zero_copy_only=False)
    field = diff["field"].to_numpy(zero_copy_only=False)
    new = diff["new"].to_numpy(zero_copy_only=False)
    processid = diff["processid"].to_numpy(zero_copy_only=False)
    line = np.arange(diff.num_rows) + 2  # the file's line: after the header
    known = np.isin(change, ["added", "removed", "changed", "moved"])
    for i in np.flatnonzero(~known)[:10]:
        findings.add(KIND, f"{where}:{line[i]}: {processid[i]}: change {change[i]!r} is none the diff writes")
    # a previous release holding one record under two spellings: the second is removed, the record stays
    respelled = diff["why"].to_numpy(zero_copy_only=False) == ANOTHER_SPELLING
    for i in np.flatnonzero((change == "removed") & held & ~respelled):
        findings.add(KIND, f"{where}:{line[i]}: {processid[i]} is removed, but the release holds it")
    gone = (change != "removed") & known & ~held
    for i in np.flatnonzero(gone):
        findings.add(KIND, f"{where}:{line[i]}: {processid[i]} is {change[i]}, but the release does not hold it")
    image = np.array([isinstance(f, str) and f.startswith(IMAGE_FIELD) for f in field], dtype=bool)
    # the released text of each (row, field) the row names: split for added and moved rows, the field otherwise
    named = np.where(np.isin(change, ["added", "moved"]), "split", field).astype(object)
    columns = set(csv.schema.names)
    checked = held & (change != "removed") & known & ~image
    for name in sorted({n for n in named[checked] if isinstance(n, str)}):
        rows = np.flatnonzero(checked & (named == name))
        if name not in columns:
            for i in rows:
                findings.add(KIND, f"{where}:{line[i]}: {processid[i]}: field {name!r} is no release column")
            continue
        values = _as_text(csv.select([name]).take(at.take(pa.array(rows))))[name].to_numpy(object)
        for i, value in zip(rows, values, strict=True):
            value = None if _missing(value) else value
            if not _same_text(value, new[i]):
                findings.add(
                    KIND, f"{where}:{line[i]}: {processid[i]} {name} is now {new[i]!r}, the release holds {value!r}"
                )
    if (image & held).any():
        _check_image_rows(root, diff, keys, image & held, line, where, findings)


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and np.isnan(value))


def _same_text(released, stated) -> bool:
    return (stated is None) if _missing(released) else released == stated


def _check_image_rows(root, diff, keys, rows_mask, line, where, findings) -> None:
    """An image row's new sha256 (its first digits) is the lineage's for that record and package."""
    lineage = _lineage(root, ["processid", *IMAGE_COLUMNS])
    if lineage is None:
        findings.add(KIND, f"{where}: image rows, but the release has no {ROOT}/{RECORDS_LINEAGE.path} to hold them")
        return
    short = shortened(lineage)
    at = _positions(keys, _keys(short["processid"]))
    field = diff["field"].to_numpy(zero_copy_only=False)
    new = diff["new"].to_numpy(zero_copy_only=False)
    processid = diff["processid"].to_numpy(zero_copy_only=False)
    for package_field in sorted(set(field[rows_mask])):
        column = f"sha256_{package_field.removeprefix(IMAGE_FIELD)}"
        rows = np.flatnonzero(rows_mask & (field == package_field))
        if column not in short.schema.names:
            for i in rows:
                findings.add(KIND, f"{where}:{line[i]}: {processid[i]}: {package_field} is no released package")
            continue
        values = short[column].take(at.take(pa.array(rows))).to_numpy(zero_copy_only=False)
        for i, value in zip(rows, values, strict=True):
            if value != new[i]:
                findings.add(
                    KIND,
                    f"{where}:{line[i]}: {processid[i]} {package_field} is now {new[i]!r}, the lineage says {value!r}",
                )


def _check_against_previous(root: Path, csv: pa.Table, previous: Path, path: Path, summary_path: Path, findings):
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
    lineage = _lineage(root, list(dict.fromkeys(["processid", *IMAGE_COLUMNS, *SOURCE_COLUMNS])))
    images = None
    if lineage is not None and all(c in lineage.schema.names for c in IMAGE_COLUMNS):
        images = shortened(lineage.select(["processid", *IMAGE_COLUMNS]))

    def sources(processids) -> pd.DataFrame:  # the records' source rows, as the build's records give them
        if lineage is None or not all(c in lineage.schema.names for c in SOURCE_COLUMNS):
            return pd.DataFrame(columns=list(SOURCE_COLUMNS))
        wanted = pa.array(list(processids), pa.string())
        picked = lineage.select(list(SOURCE_COLUMNS))
        return picked.filter(pc.is_in(picked["processid"], value_set=wanted)).to_pandas()

    with tempfile.TemporaryDirectory(prefix="audit-diff-") as folder:
        made = write_release_diff(previous, new, rejects, changes, Path(folder), images, sources)
        remade_summary = json.loads(made["release_diff_summary.json"].read_text())
        stated = json.loads(summary_path.read_text())
        said_manifest = stated.get("previous_manifest_sha256") if isinstance(stated, dict) else None
        if said_manifest != remade_summary["previous_manifest_sha256"]:
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
    released = _read_diff(path)
    stated_rows, remade_rows = _row_counts(released), _row_counts(remade)
    for row in sorted(stated_rows - remade_rows, key=_order)[:50]:
        findings.add(KIND, f"{where}: a row the diff made again against --previous does not give: {_shown(row)}")
    for row in sorted(remade_rows - stated_rows, key=_order)[:50]:
        findings.add(KIND, f"{where}: no row {_shown(row)}, which the diff made again against --previous gives")
    if stated_rows == remade_rows:
        findings.add(KIND, f"{where}: the rows of the diff made again against --previous, in another order")


def _row_counts(table: pa.Table) -> Counter:
    return Counter(zip(*(table[name].to_pylist() for name in DIFF_SCHEMA.names), strict=True))


def _order(row) -> tuple:
    return tuple("" if value is None else value for value in row)


def _shown(row) -> str:
    return ", ".join(f"{name}={value!r}" for name, value in zip(DIFF_SCHEMA.names, row, strict=True) if value)
