"""The release diff: this build against the previous published release (config ``release.previous``).

``metadata/release_diff.csv``: one row per difference, ``processid, change, field, old, new, why``:
- ``added``: a record the previous release did not hold (``field`` split, ``new`` its split);
- ``removed``: a record of the previous release this one leaves out, ``why`` the reasons this build rejected it
  (``rejects.csv``), or that no input holds it any more;
- ``changed``: a field whose value differs, ``why`` the rules of this build's changes table for that record and
  field (``changes.csv``: curation, or ``superseded`` for a redelivery), or that its source row or photo changed;
- ``moved``: a record whose split differs (a frozen rebuild has none);
- ``changed`` with field ``image:{package}``: a released image that differs (old and new sha256, their first 16 hex
  digits; the lineage files hold them whole), ``why`` whether
  its source photo or the parameters that made it changed.

``metadata/release_diff_summary.json`` counts them. Values are compared as the release CSV writes them.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv

from bioscan_rebuild.core.errors import InputError
from bioscan_rebuild.core.io import check_listed, csv_header, file_sha256
from bioscan_rebuild.core.schemas import IMAGE_PACKAGES, RANKS, processid_keys
from bioscan_rebuild.export.layout import CHANGES, CONFIG, CSV_PATH, RECORDS_LINEAGE, REJECTS, ROOT, SPLIT_HISTORY

DIFF_SCHEMA = pa.schema(
    [
        pa.field("processid", pa.string()),
        pa.field("change", pa.string()),
        pa.field("field", pa.string()),
        pa.field("old", pa.string()),
        pa.field("new", pa.string()),
        pa.field("why", pa.string()),
    ]
)
# Names the ingest and curation logs use for release columns.
LOGGED_AS = {
    "dna_bin": ("dna_bin", "bin_uri"),
    "coord-lat": ("lat", "coord"),  # coord: a site ingest refused (coordinates_refused)
    "coord-lon": ("lon", "coord"),
    "dna_barcode": ("nucleotides",),
}
NOT_COMPARED = ("split", "chunk")  # a split move is its own kind of change; the chunk follows the split


def _as_text(table: pa.Table) -> pd.DataFrame:
    """Every column as the release CSV writes it (text; missing = None)."""
    columns = {}
    for name in table.schema.names:
        column = table[name]
        if pa.types.is_dictionary(column.type):
            column = column.cast(column.type.value_type)
        if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
            # text already is text: a cast of a full release's barcodes (3.4 GB in one chunk) to 32-bit offsets
            # fails ('input array too large')
            column = column.cast(pa.string())
        columns[name] = column.to_numpy(zero_copy_only=False)
    return pd.DataFrame(columns)


def read_release_csv(path) -> pd.DataFrame:
    header = csv_header(path)
    types = dict.fromkeys(header, pa.string())
    # only the empty cell is missing, as the release writes it: "NA", "null" or "nan" are values a record may hold
    options = pacsv.ConvertOptions(
        column_types=types, null_values=[""], strings_can_be_null=True, quoted_strings_can_be_null=True
    )
    return _as_text(pacsv.read_csv(path, convert_options=options))


_REJECT_ROW = ("reason", "batch", "source_file", "source_line")  # one rejected source row


def _reject_rows(records: pd.DataFrame) -> list[tuple]:
    """(processid key, reason, batch, source file, line) of each reject, as text (a line read from the previous
    release's CSV and one from this build's table compare equal)."""
    line = pd.to_numeric(records["source_line"], errors="coerce").astype("Int64").astype(str)
    text = [records[c].astype(object).where(records[c].notna(), "").astype(str) for c in _REJECT_ROW[:-1]]
    return list(zip(processid_keys(records["processid"]), *text, line, strict=True))


UNEXPLAINED = "its source row, photo or an earlier stage changed"  # a change no rule or delivery names
ANOTHER_SPELLING = "another spelling of a record the previous release held"  # removed: the record is held


def _reasons(rejects: pd.DataFrame | None, known: pd.DataFrame | None = None) -> dict[str, str]:
    """processid key -> its record rejects' reasons (sorted, ``;``-joined). ``known``: rejects of the previous
    release; a source row it rejected already (a record's 18S row beside its COI one) did not remove the record,
    so its reason is left out where the record has others."""
    if rejects is None or rejects.empty:
        return {}
    records = rejects[rejects["kind"] == "record"]
    columns = {"kind", "processid", *_REJECT_ROW}
    if known is not None and not known.empty and columns <= set(known.columns) and columns <= set(records.columns):
        seen = set(_reject_rows(known[known["kind"] == "record"]))
        old = pd.Series([row in seen for row in _reject_rows(records)], index=records.index, dtype=bool)
        keys = pd.Series(processid_keys(records["processid"]), index=records.index)
        nothing_new = ~(~old).groupby(keys, dropna=False).transform("any")
        records = records[~old | nothing_new]  # a record with no new reject keeps the ones it has
    keys = pd.Series(processid_keys(records["processid"]), index=records.index)
    return records.groupby(keys)["reason"].agg(lambda r: ";".join(sorted(set(r)))).to_dict()


def _why_changed(changes: pd.DataFrame) -> dict[tuple[str, str], str]:
    if changes.empty:
        return {}
    rules = changes.groupby(["processid", "field"], sort=False)["rule"].agg(lambda r: ";".join(dict.fromkeys(r)))
    return rules.to_dict()


def release_diff(
    previous_csv,
    new: pa.Table,
    rejects: pd.DataFrame,
    changes: pd.DataFrame,
    previous_rejects: pd.DataFrame | None = None,
    previous_changes: pd.DataFrame | None = None,
    previous_history: pd.DataFrame | None = None,
) -> tuple[pa.Table, dict]:
    """(diff rows, summary) of the release table ``new`` (release columns) against ``previous_csv``. The previous
    release's rejects and changes (when given) explain what this build no longer does: a record it rejected (an
    exclusion withdrawn), a change it made that no longer applies (a correction withdrawn); its split history, a
    record an earlier version released and it left out (a delivery withdrawn) that is back."""
    # records are matched by processid key (case and invisible characters aside), as every stage matches them
    old = read_release_csv(previous_csv)
    old.index = pd.Index(processid_keys(old["processid"]))
    now = _as_text(new)
    now.index = pd.Index(processid_keys(now["processid"]))
    rows = []
    # a release from before spellings were merged may hold one record twice (X and x): its first spelling is the
    # record, the others are gone
    twice = old.index.duplicated(keep="first")
    previous_records = len(old)  # every row: the summary's counts add up (previous - removed + added = records)
    for pid, split in zip(old.loc[twice, "processid"], old.loc[twice, "split"]):
        rows.append((pid, "removed", "split", split, None, ANOTHER_SPELLING))
    old = old[~twice]
    added = now.index.difference(old.index)
    rejected_before = _reasons(previous_rejects)
    released_before = _released_before(previous_history)
    for key in added.sort_values():
        pid = now.at[key, "processid"]
        before = rejected_before.get(key)
        why = f"the previous release left it out ({before}); this build does not" if before else "new in this build"
        if not before and key in released_before:  # left out of the previous release with no reject: back
            version, split = released_before[key]
            why = f"released in {version} ({split}), left out of the previous release; back in this build"
        rows.append((pid, "added", "split", None, now.at[key, "split"], why))
    removed = old.index.difference(now.index)
    reasons = _reasons(rejects, previous_rejects)
    for key in removed.sort_values():
        why = reasons.get(key, "no input of this build holds it")
        rows.append((old.at[key, "processid"], "removed", "split", old.at[key, "split"], None, why))
    common = now.index.intersection(old.index).sort_values()
    before, after = old.loc[common], now.loc[common]
    changed_records = set()
    respelled = before["processid"].to_numpy(object) != after["processid"].to_numpy(object)
    for a, b in zip(before["processid"].to_numpy(object)[respelled], after["processid"].to_numpy(object)[respelled]):
        rows.append((b, "changed", "processid", a, b, "spelled otherwise (case or invisible characters) by its source"))
        changed_records.add(b)
    common = pd.Index(after["processid"].to_numpy(object))  # the rows below name a record as this build spells it
    why = _why_changed(changes)
    why_before = _why_changed(previous_changes if previous_changes is not None else pd.DataFrame())
    # derived from the ranks, which the changes log names: taxon from those whose labels it was and is,
    # inferred_ranks from those that changed (each rank's values read once, not per changed cell)
    ranks = [r for r in RANKS if r in after.columns and r in before.columns]
    rank_values = {r: (before[r].to_numpy(object), after[r].to_numpy(object)) for r in ranks}
    for field in [c for c in after.columns if c in before.columns and c not in (*NOT_COMPARED, "processid")]:
        a, b = before[field].to_numpy(object), after[field].to_numpy(object)
        a_missing, b_missing = pd.isna(a), pd.isna(b)
        differ = (a_missing != b_missing) | (~a_missing & ~b_missing & (a != b))
        for i in np.flatnonzero(differ):
            pid = common[i]
            names = LOGGED_AS.get(field, (field,))
            if field == "taxon":
                names = [r for r in ranks if b[i] in (rank_values[r][0][i], rank_values[r][1][i])]
                names += [r for r in ranks if a[i] in (rank_values[r][0][i], rank_values[r][1][i])]
            elif field == "inferred_ranks":
                names = [r for r in ranks if rank_values[r][0][i] != rank_values[r][1][i]]
            rules = [why[(pid, name)] for name in names if (pid, name) in why]
            undone = [why_before[(pid, name)] for name in names if (pid, name) in why_before]
            if rules:
                reason = ";".join(dict.fromkeys(rules))
            elif undone:  # e.g. a maintainer's correction taken back out of the corrections table
                reason = f"the previous release's {';'.join(dict.fromkeys(undone))} no longer applies"
            else:
                reason = UNEXPLAINED
            rows.append((pid, "changed", field, None if a_missing[i] else a[i], None if b_missing[i] else b[i], reason))
            changed_records.add(pid)
    moved = before["split"].to_numpy(object) != after["split"].to_numpy(object)
    for i in np.flatnonzero(moved):
        pid = common[i]
        rows.append((pid, "moved", "split", before["split"].iat[i], after["split"].iat[i], "not frozen"))
    table = pa.Table.from_pylist([dict(zip(DIFF_SCHEMA.names, row)) for row in rows], schema=DIFF_SCHEMA)
    summary = {
        "previous_records": previous_records,
        "records": len(now),
        "added": len(added),
        "removed": len(removed) + int(twice.sum()),
        "changed_records": len(changed_records),
        "changed_fields": sum(1 for row in rows if row[1] == "changed"),
        "moved": int(moved.sum()),
    }
    return table, summary


def previous_version(previous: Path) -> str | None:
    """The ``export.version`` a release was built with (its resolved config), None when it does not say."""
    config = previous / ROOT / CONFIG.path
    if not config.is_file():
        return None
    return (json.loads(config.read_text()).get("export") or {}).get("version")


IMAGE_COLUMNS = ("image_sha256", "params_key", *(f"sha256_{package}" for package in IMAGE_PACKAGES))


HASH_SHOWN = 16  # hex digits of a sha256 the image rows compare and show (the lineage files hold them whole)


def shortened(table: pa.Table) -> pa.Table:
    """Every column but processid cut to its first ``HASH_SHOWN`` characters: a sixth of the memory for the
    comparison (5M records x 6 hashes), and 64 bits of a sha256 tell two images apart."""
    import pyarrow.compute as pc

    return pa.table(
        {
            name: table[name] if name == "processid" else pc.utf8_slice_codeunits(table[name], 0, HASH_SHOWN)
            for name in table.schema.names
        }
    )


def _keys(processids) -> pa.Array:
    """``processid_keys`` as an Arrow column: the one definition the records are joined by (Arrow's own trim and
    upper case differ from Python's on some characters, e.g. a non-breaking space or ß)."""
    return pa.array(processid_keys(processids.to_numpy()), pa.string())


SOURCE_COLUMNS = ("processid", "batch", "source_file", "source_sha256")


def source_changes(previous_lineage, sources: pd.DataFrame) -> dict[str, str]:
    """processid key -> how its source row changed since the previous release (its ``records_lineage.csv``): its
    export delivered again under the same name with other bytes, or the record now from another delivery.
    ``sources``: this build's ``SOURCE_COLUMNS`` of the records to explain (a few: the lineage is read in Arrow
    and cut to them first). A release without a lineage gives nothing."""
    import pyarrow.compute as pc

    path = Path(previous_lineage)
    if not path.is_file() or sources.empty:
        return {}
    types = dict.fromkeys(SOURCE_COLUMNS, pa.string())
    options = pacsv.ConvertOptions(
        column_types=types, include_columns=list(types), include_missing_columns=True, null_values=[""]
    )
    lineage = pacsv.read_csv(path, convert_options=options)
    given = pa.array(sources["processid"].astype(object), pa.string())
    # a cheap superset first (the keys, and Arrow's own upper case, which differs from Python's on ß and
    # ligatures), then the exact key
    arrow_upper = pc.utf8_upper(pc.utf8_trim_whitespace(given)).to_pylist()
    keys = {str(k) for k in (*processid_keys(sources["processid"]), *arrow_upper) if k}
    wanted = pa.array(sorted(keys), pa.string())
    lineage = lineage.filter(pc.is_in(pc.utf8_upper(pc.utf8_trim_whitespace(lineage["processid"])), value_set=wanted))
    before = lineage.to_pandas()
    before.index = pd.Index(processid_keys(before["processid"]))
    now = sources.set_index(pd.Index(processid_keys(sources["processid"])))
    before, now = before[~before.index.duplicated()], now[~now.index.duplicated()]
    why = {}
    for key in now.index.intersection(before.index):
        (b_old, f_old, s_old), (b_new, f_new, s_new) = (
            tuple(frame.loc[key, ["batch", "source_file", "source_sha256"]]) for frame in (before, now)
        )
        if (b_old, f_old) != (b_new, f_new):
            why[key] = f"now from batch {b_new} ({f_new}), before from batch {b_old} ({f_old})"
        elif s_old != s_new:
            why[key] = (
                f"its export {f_new} was delivered again with other content "
                f"(sha256 {str(s_old)[:12]}… -> {str(s_new)[:12]}…)"
            )
    return why


def image_diff(previous_lineage, images: pa.Table) -> pa.Table:
    """``changed`` rows (``DIFF_SCHEMA``; field ``image:{package}``, the first ``HASH_SHOWN`` hex digits of the old
    and new sha256) for the records both
    releases hold whose released image differs: the release columns never show it (new image parameters, detector,
    a corrected box, a replaced photo). ``images``: processid and ``IMAGE_COLUMNS`` of this build;
    ``previous_lineage``: the previous release's ``records_lineage.csv`` (a release without one gives no rows).
    All in Arrow (a hash join, column kernels): a new detector changes every record's crops, millions of rows."""
    import pyarrow.compute as pc

    path = Path(previous_lineage)
    if not path.is_file():
        return DIFF_SCHEMA.empty_table()
    types = dict.fromkeys(("processid", *IMAGE_COLUMNS), pa.string())
    options = pacsv.ConvertOptions(
        column_types=types,
        include_columns=list(types),
        include_missing_columns=True,
        null_values=[""],  # only an empty field: a processid "NA" is a processid
        strings_can_be_null=True,
    )
    old = shortened(pacsv.read_csv(path, convert_options=options))
    old = old.rename_columns([name if name == "processid" else f"{name}_old" for name in old.schema.names])
    now = shortened(images.select(["processid", *IMAGE_COLUMNS]).cast(pa.schema([(n, pa.string()) for n in types])))
    # joined by processid key, as the records are (a record spelled otherwise by a later delivery is the same one)
    old = old.append_column("key", _keys(old["processid"])).drop_columns(["processid"])
    # a record the previous release held under two spellings is its first one, as release_diff takes it (joined to
    # both, it had two rows per image, in the join's order)
    first = old.append_column("row", pa.array(np.arange(old.num_rows))).group_by("key").aggregate([("row", "min")])
    old = old.take(np.sort(first["row_min"].to_numpy()))
    now = now.append_column("key", _keys(now["processid"]))
    joined = now.join(old, keys="key", join_type="inner").drop_columns(["key"])

    def differs(column: str) -> pa.Array:
        current, before = (pc.fill_null(joined[name].combine_chunks(), "") for name in (column, f"{column}_old"))
        return pc.not_equal(current, before)

    # small repeated texts as dictionaries: a new detector gives every record rows (tens of millions at 5M)
    reasons = pa.array(
        [
            "its source photo changed",
            "made with other image parameters, detector or a corrected box (store key changed)",
            "made again with the same parameters (a library or the image stage changed)",
        ]
    )
    photo, params = differs("image_sha256"), differs("params_key")
    why_index = pc.if_else(photo, 0, pc.if_else(params, 1, 2)).cast(pa.int8())
    parts = []
    for package in IMAGE_PACKAGES:
        column = f"sha256_{package}"
        changed = differs(column)
        rows = joined.filter(changed)
        constant = pa.array(np.zeros(rows.num_rows, np.int8))  # one dictionary entry, repeated
        parts.append(
            pa.table(
                {
                    "processid": rows["processid"],
                    "change": pa.DictionaryArray.from_arrays(constant, pa.array(["changed"])),
                    "field": pa.DictionaryArray.from_arrays(constant, pa.array([f"image:{package}"])),
                    "old": rows[f"{column}_old"],
                    "new": rows[column],
                    "why": pa.DictionaryArray.from_arrays(why_index.filter(changed), reasons),
                    "order": pc.add(constant, sorted(IMAGE_PACKAGES).index(package)),  # the field's, by name
                }
            )
        )
    table = pa.concat_tables(parts, promote_options="permissive").combine_chunks()
    table = table.take(pc.sort_indices(table, [("processid", "ascending"), ("order", "ascending")]))
    return table.drop_columns(["order"]).cast(DIFF_SCHEMA)


SIZE_FIELDS = ("image_measurement_value", "area_fraction", "scale_factor")  # measured on the record's box


def _explained_by_images(table: pa.Table, image_rows: pa.Table) -> pa.Table:
    """``table`` with the why of its unexplained size-field changes replaced by why the record's images were made
    again (``image_diff``'s rows): a maintainer's box, a new detector or new image parameters change them."""
    import pyarrow.compute as pc

    unexplained = pc.and_(pc.equal(table["why"], UNEXPLAINED), pc.is_in(table["field"], pa.array(SIZE_FIELDS)))
    rows = np.flatnonzero(unexplained.to_numpy(zero_copy_only=False))
    if not len(rows) or not image_rows.num_rows:
        return table
    processids = table["processid"].take(pa.array(rows))
    remade = image_rows.filter(pc.is_in(image_rows["processid"], value_set=processids))  # a few of maybe millions
    why_by_pid = dict(zip(remade["processid"].to_pylist(), remade["why"].cast(pa.string()).to_pylist()))
    why = table["why"].to_pylist()
    for row, pid in zip(rows, processids.to_pylist()):
        if pid in why_by_pid:
            said = why_by_pid[pid]
            why[row] = said if said.startswith("its ") else f"its images were {said}"
    return table.set_column(table.schema.get_field_index("why"), "why", pa.array(why, table.schema.field("why").type))


def _explained_by_sources(table: pa.Table, previous_lineage, sources) -> pa.Table:
    """``table`` with the why of its unexplained changes (``UNEXPLAINED``) replaced by how the record's source row
    changed (``source_changes``). ``sources``: processids -> their ``SOURCE_COLUMNS`` in this build."""
    import pyarrow.compute as pc

    unexplained = pc.equal(table["why"], UNEXPLAINED).to_numpy(zero_copy_only=False)
    if not unexplained.any():
        return table
    rows = np.flatnonzero(unexplained)
    processids = table["processid"].to_numpy(zero_copy_only=False)[rows]  # a few of maybe millions of rows
    why_by_key = source_changes(previous_lineage, sources(sorted(set(processids))))
    if not why_by_key:
        return table
    why = table["why"].to_numpy(zero_copy_only=False).copy()
    for i, key in zip(rows, processid_keys(processids), strict=True):
        why[i] = why_by_key.get(key, why[i])
    return table.set_column(table.schema.get_field_index("why"), "why", pa.array(why, pa.string()))


def _listed_files(manifest: Path) -> dict:
    """The files a release's manifest lists (none without one; ``check_listed`` says what is wrong with one)."""
    try:
        files = json.loads(manifest.read_text()).get("files") if manifest.is_file() else None
    except (OSError, ValueError, AttributeError):
        return {}
    return files if isinstance(files, dict) else {}


def _released_before(history: pd.DataFrame | None) -> dict[str, tuple[str, str]]:
    """processid key -> (the last version that released it, its split), from a release's split history."""
    if history is None or history.empty or not {"processid", "split", "last_version"} <= set(history.columns):
        return {}
    keys = processid_keys(history["processid"].astype(str))
    return {
        key: (str(version), str(split))
        for key, version, split in zip(keys, history["last_version"], history["split"], strict=True)
        if not pd.isna(version)
    }


def write_release_diff(
    previous,
    new: pa.Table,
    rejects: pd.DataFrame,
    changes: pd.DataFrame,
    folder: Path,
    images=None,
    sources=None,
) -> dict:
    """``release_diff`` against the release folder ``previous`` (holding MANIFEST.json), and with ``images``
    (``image_diff``) the released images that changed, written as ``release_diff.csv`` and
    ``release_diff_summary.json`` in ``folder``; returns the file names -> paths. ``sources``: processids -> their
    ``SOURCE_COLUMNS`` in this build (a DataFrame), to explain changes no rule made by their source rows."""
    release = Path(previous)
    manifest = release / "MANIFEST.json"
    # each file read must be the one the manifest lists: the summary names that manifest's sha256
    read = [CSV_PATH, REJECTS.path, CHANGES.path, RECORDS_LINEAGE.path, CONFIG.path, SPLIT_HISTORY.path]
    listed = _listed_files(manifest)
    for rel in read:
        path = release / ROOT / rel
        if path.is_file() and manifest.is_file():
            check_listed(manifest, path)
        elif f"{ROOT}/{rel}" in listed:  # deleted since: read as "no such file" it silently emptied the diff
            raise InputError(
                f"{path}: {manifest} lists it, but it is missing: the release was changed after it was built; use "
                "an untouched copy (`bioscan-rebuild audit` on it names every change)"
            )
    previous_rejects, previous_changes, previous_history = (
        pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""]) if path.is_file() else None
        for path in (release / ROOT / REJECTS.path, release / ROOT / CHANGES.path, release / ROOT / SPLIT_HISTORY.path)
    )
    table, summary = release_diff(
        release / ROOT / CSV_PATH, new, rejects, changes, previous_rejects, previous_changes, previous_history
    )
    if sources is not None:  # changes no rule made: say how the record's source row changed, where it did
        table = _explained_by_sources(table, release / ROOT / RECORDS_LINEAGE.path, sources)
    if images is not None:
        image_rows = image_diff(release / ROOT / RECORDS_LINEAGE.path, images)
        table = _explained_by_images(table, image_rows)
        table = pa.concat_tables([table, image_rows])
        summary["changed_images"] = len(image_rows["processid"].unique())
    # not the folder's name: a copy of the same release elsewhere must give the same bytes
    summary["previous_version"] = previous_version(release)
    summary["previous_manifest_sha256"] = file_sha256(manifest) if manifest.exists() else None
    folder.mkdir(parents=True, exist_ok=True)
    pacsv.write_csv(table, folder / "release_diff.csv")
    (folder / "release_diff_summary.json").write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    return {
        "release_diff.csv": folder / "release_diff.csv",
        "release_diff_summary.json": folder / "release_diff_summary.json",
    }
