"""`bioscan-rebuild audit RELEASE [--sources CONFIG]`: is this release what its build wrote, and does it agree
with itself and with its sources?

1. Files: every file listed in ``MANIFEST.json`` is there with its size and sha256 (every JPEG included); no file
   is missing and none is extra.
2. Formats: the CSV, the Parquet files, the HDF5 file and the JSON-LD agree record by record, field by field;
   the HDF5 images and the images Parquet's are the released image files they name; ``croissant.json`` lists
   only released files, with their sha256; the release holds as many records as the accounting released.
3. Lineage: every released record has one lineage row (the Parquet copy agrees with the CSV), from an export the
   accounting lists with that sha256; each image sha256 it names is a released file's, and each released file
   has one.
4. Sources (``--sources CONFIG``, the build's config): the exports hash as the accounting says, and the metadata
   stages replayed from the raw exports (the records the build ingested, the config's parameters and tables)
   give the released labels.
5. Versions: the release diff agrees with the release; with ``--previous`` (the release it was built against) it
   is the diff made again from that release (``audit_diff``).

Checks 2-5 find edits that a rewritten manifest would hide. Each problem names its file, record and field.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from collections import Counter, deque
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from itertools import islice
from pathlib import Path, PurePosixPath

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from bioscan_rebuild import __version__
from bioscan_rebuild.core.errors import InputError
from bioscan_rebuild.core.io import csv_header, file_sha256
from bioscan_rebuild.core.params import ExportOptions, IngestParams
from bioscan_rebuild.core.schemas import (
    IMAGE_PACKAGES,
    RANKS,
    RELEASE_COLUMNS,
    SPLITS,
    processid_keys,
    repeated_values,
)
from bioscan_rebuild.export.audit_description import check_description, release_software_version
from bioscan_rebuild.export.audit_diff import check_release_diff
from bioscan_rebuild.export.formats.hdf5 import HDF5_LABELS
from bioscan_rebuild.export.formats.jsonld import DECIMAL_TERMS, INTEGER_TERMS, STRING_TERMS
from bioscan_rebuild.export.layout import (
    ACCOUNTING,
    BARCODE_QC,
    BARCODE_QC_PARQUET,
    BARCODES_FASTA,
    BBOX,
    CHANGES,
    CONFIG,
    CROISSANT_PATH,
    CSV_PATH,
    HDF5_PATH,
    IMAGES_DIR,
    IMAGES_PARQUET_DIR,
    JSONLD_DIR,
    MANIFEST,
    PARQUET_DIR,
    PROVENANCE,
    RECORDS_LINEAGE,
    RECORDS_LINEAGE_PARQUET,
    REJECTS,
    RELEASE_DIFF_PATH,
    ROOT,
    SPLIT_HISTORY,
    SPLIT_SUMMARY,
    image_relpath,
)
from bioscan_rebuild.export.side_files import change_ids
from bioscan_rebuild.ingest.join import ANOTHER_COPY_KEPT, ROW_SET_ASIDE
from bioscan_rebuild.splits.protocol import barcode_digest, split_summary
from bioscan_rebuild.splits.stage import HELD_KEYS

# Shown per check and column before "... and N more"; a tampered column can differ in millions of rows.
SHOWN = 5
# Release columns the metadata stages make (the replay compares these): the text ones from sampleid to
# province_state (labels, BIN, barcode, geography), then the numbers.
REPLAYED = RELEASE_COLUMNS[RELEASE_COLUMNS.index("sampleid") : RELEASE_COLUMNS.index("coord-lat")]
REPLAYED_NUMBERS = ("coord-lat", "coord-lon", "inferred_ranks")


class Findings:
    """Problems, each 'where: what', with at most SHOWN per kind and a count of the rest."""

    def __init__(self, shown: int | None = SHOWN):
        self.limit = shown  # None: every problem
        self.lines: list[str] = []
        self.hidden: dict[str, int] = {}
        self.shown: dict[str, int] = {}
        self.notes: list[str] = []  # what was not checked, and why: no problem of the release
        self.replay_differences: int | None = None  # another version's replay: its differences, as notes

    def add(self, kind: str, line: str) -> None:
        if self.limit is None or self.shown.get(kind, 0) < self.limit:
            self.shown[kind] = self.shown.get(kind, 0) + 1
            self.lines.append(line)
        else:
            self.hidden[kind] = self.hidden.get(kind, 0) + 1

    def add_each(self, kind: str, rows: list, line, total: int | None = None) -> None:
        """One finding per row (``line(row)``), where ``rows`` may be cut to ``self.first(...)`` of ``total`` rows
        (millions of records: only those shown become Python objects); the rest are counted."""
        for row in rows:
            self.add(kind, line(row))
        missing = (total if total is not None else len(rows)) - len(rows)
        if missing > 0:
            self.hidden[kind] = self.hidden.get(kind, 0) + missing

    def first(self, rows):
        """As many of ``rows`` (a list or an Arrow array or table) as can be shown: all of them with ``every``."""
        return rows if self.limit is None else rows[: self.limit]

    def report(self) -> list[str]:
        return self.lines + [f"{kind}: and {n} more" for kind, n in sorted(self.hidden.items())]

    def __len__(self) -> int:
        return len(self.lines) + sum(self.hidden.values())


def audit_release(
    release, sources=None, *, threads: int = 2, every: bool = False, previous=None, row_checks=()
) -> dict:
    """Run every check on the release folder ``release`` (the one holding MANIFEST.json); ``previous``: the release
    it was built against, its diff is made again from it (``audit_diff``); ``row_checks``: checks of later stages
    on the released rows, each ``check(release, rows, config, findings)`` (the command passes the statistics').
    Returns a summary with
    ``problems`` (lines: SHOWN per kind and column, then a count, or all with ``every``) and their count; ``ok``
    is True only when nothing was found."""
    release = Path(release)
    manifest = manifest_files(release)  # read once: 20M entries at full scale
    if previous is not None:  # a person's mistake, one line (not a finding blamed on this release's diff)
        try:
            manifest_files(Path(previous))
        except InputError as error:
            raise InputError(f"--previous: {error}") from None
    limit = None if every else SHOWN
    file_findings, findings = Findings(limit), Findings(limit)
    malformed = sorted(rel for rel, entry in manifest.items() if not _manifest_entry(entry))
    findings.add_each(
        "manifest", malformed, lambda rel: f"{MANIFEST}: the entry of {rel} is not {{bytes, sha256}} (edited by hand?)"
    )
    manifest = {rel: entry for rel, entry in manifest.items() if _manifest_entry(entry)}
    # Hashing (hashlib lets go of the GIL) runs beside the record checks, which spend their time in Arrow.
    with ThreadPoolExecutor(max_workers=1) as background:
        hashed = background.submit(check_files, release, manifest, file_findings, threads=threads)
        records = check_records(release, manifest, sources, findings, previous, row_checks)
        files = hashed.result()
    problems = file_findings.report() + findings.report()
    count = len(file_findings) + len(findings)
    summary = {"ok": not problems, "files": files, "records": records, "problems": problems, "count": count}
    return summary | {"notes": findings.notes, "replay_differences": findings.replay_differences}


def _manifest_entry(entry) -> bool:
    """Whether a manifest entry is what the build writes: its size and its sha256."""
    return (
        isinstance(entry, dict)
        and type(entry.get("bytes")) is int
        and isinstance(entry.get("sha256"), str)
        and re.fullmatch(r"[0-9a-f]{64}", entry["sha256"]) is not None
    )


def manifest_files(release: Path) -> dict:
    """The release's ``MANIFEST.json`` files (path -> bytes, sha256). A folder that is no release (an empty one,
    its ``bioscan5m/`` sub-folder, one without its manifest) is the person's mistake, one line: its hundreds of
    findings said nothing useful."""
    manifest = release / MANIFEST
    try:
        files = json.loads(manifest.read_text()).get("files") if manifest.is_file() else None
    except (OSError, ValueError, AttributeError):
        files = None
    if not isinstance(files, dict):
        hint = " (the folder above it holds a release)" if (release.parent / MANIFEST).is_file() else ""
        raise InputError(
            f"{release}: not a release, no readable {MANIFEST} with its files{hint}: give the folder that holds "
            f"{MANIFEST} and {ROOT}/ (`bioscan-rebuild audit` checks a copy against the manifest its build wrote)"
        )
    return files


def _guarded(findings: Findings, what: str, check, *args, failed=None):
    """Run one check; a file it cannot read (truncated, garbled, a column renamed) is a finding, and the other
    checks go on (a crash lost every finding, the manifest's changed file too). Returns the check's result, or
    ``failed`` after such a finding."""
    try:
        return check(*args)
    except (MemoryError, InputError):  # the job's limit; a person's mistake (one line)
        raise
    except Exception as error:  # pyarrow, h5py and json raise anything on a damaged file
        findings.add(
            "unreadable",
            f"{what}: cannot be read as the release writes it ({type(error).__name__}: {str(error)[:200]})",
        )
        return failed


def check_records(release: Path, manifest: dict, sources, findings: Findings, previous=None, row_checks=()) -> int:
    """Checks 2-4 (and ``row_checks``, see :func:`audit_release`); returns the number of released records."""
    root = release / ROOT
    table = _guarded(findings, CSV_PATH, reference_table, root, findings)
    if table is None:
        return 0
    accounting = _json(release / ACCOUNTING, findings)
    if not _accounting_shape(accounting):  # hand-edited: every other finding went with its traceback
        findings.add("unreadable", f"{ACCOUNTING}: not the accounting the build writes (counts by part)")
        accounting = {}
    released = accounting.get("released", {}).get("records")
    if released is not None and released != table.num_rows:  # records gone from every format, manifest rewritten
        findings.add("accounting", f"{ACCOUNTING}: {released} records released, the release holds {table.num_rows}")
    check_accounting_sums(accounting, findings)
    config = _release_config(root, findings)
    checks = [
        (HDF5_PATH, check_hdf5, root, table, config, findings),
        (JSONLD_DIR, check_jsonld, root, table, findings),
        (RECORDS_LINEAGE.path, check_lineage, root, table, accounting, findings, manifest),
        (REJECTS.path, check_rejects, root, accounting, findings, table),
        (BBOX.path, check_bbox, root, table, config, findings),
        (BARCODES_FASTA.path, check_fasta, root, table, findings),
        (IMAGES_PARQUET_DIR, check_images_parquet, root, manifest, config, findings, table),
        (IMAGES_PARQUET_DIR, check_images_parquet_splits, root, table, findings),
        (SPLIT_HISTORY.path, check_split_history, root, table, config, findings),
        (SPLIT_SUMMARY.path, check_split_summary, root, table, findings),
        (BARCODE_QC.path, check_barcode_qc, root, table, findings),
        (CHANGES.path, check_changes, root, table, findings),
        (CROISSANT_PATH, check_croissant, root, manifest, findings),
        (RELEASE_DIFF_PATH, check_release_diff, root, table, findings, previous, config),
    ]
    checks += [(check.__module__, check, release, table, config, findings) for check in row_checks]
    for what, check, *args in checks:
        _guarded(findings, what, check, *args)
    if sources is None:
        options = _guarded(findings, "versions", check_version, root, config, findings)
    else:
        options = _guarded(
            findings, str(sources), check_sources, Path(sources), root, table, accounting, config, findings
        )
    _guarded(
        findings,
        "the self-description",
        check_description,
        release,
        manifest,
        table,
        accounting,
        config,
        options,
        findings,
    )
    return table.num_rows


def _accounting_shape(accounting) -> bool:
    """Whether the accounting's totals are where the checks read them: each of inputs, released and rejected (where
    present) an object whose records and images (where present) are whole numbers."""
    if not isinstance(accounting, dict):
        return False
    for part in ("inputs", "released", "rejected"):
        counts = accounting.get(part, {})
        if not isinstance(counts, dict):
            return False
        if any(what in counts and type(counts[what]) is not int for what in ("records", "images")):
            return False
    return True


def check_accounting_sums(accounting: dict, findings: Findings) -> None:
    """The accounting's own arithmetic: every input record row and photo file was released or rejected (the card's
    provenance table shows these numbers)."""
    inputs, released, rejected = (accounting.get(k) or {} for k in ("inputs", "released", "rejected"))
    for what in ("records", "images"):
        known = what in inputs and what in released and what in rejected
        if known and inputs[what] != released[what] + rejected[what]:
            findings.add(
                "accounting",
                f"{ACCOUNTING}: {what}: {inputs[what]} in, but {released[what]} released + {rejected[what]} rejected",
            )


def _release_config(root: Path, findings: Findings) -> dict | None:
    """The release's ``metadata/config.json`` (the options it was built with), read once for every check that
    needs it; None where the release has none. Unreadable or no JSON object: a finding, and {}."""
    path = root / CONFIG.path
    if not path.exists():
        return None
    config = _json(path, findings)
    if not isinstance(config, dict):
        findings.add("unreadable", f"{ROOT}/{CONFIG.path}: not the JSON object the build writes")
        return {}
    return config


def _configured(config: dict | None, section: str, key: str):
    """``config[section][key]``, None where either is absent or the section is no object (hand-edited)."""
    part = (config or {}).get(section)
    return part.get(key) if isinstance(part, dict) else None


def _json(path: Path, findings: Findings) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as error:
        findings.add("unreadable", f"{path.name}: cannot be read ({error})")
        return {}


# 1. Files against the manifest ---------------------------------------------------------------------------------


def release_files(release: Path, findings: Findings) -> set[str]:
    """The release's files (relative paths) but its own manifest. A file may be a link (a Hugging Face snapshot
    and git-annex store a release so): its content is what is checked. A link to a folder is a finding, not
    followed (it passed unseen, whatever it held), as is anything that is no file. Only the top-level
    MANIFEST.json is the manifest (one deeper passed unread)."""
    present = set()
    for folder, dirs, files in os.walk(release):  # links to folders are listed, not entered
        dirs.sort()
        for name in sorted([*dirs, *files]):
            path = Path(folder) / name
            rel = path.relative_to(release).as_posix()
            if name in dirs and path.is_symlink():
                findings.add("extra file", f"{rel}: a link to a folder (to {os.readlink(path)}): a release holds files")
            elif name in files and not path.is_file():
                findings.add("extra file", f"{rel}: not a file (a broken link, a pipe, a device)")
            elif name in files and rel != MANIFEST:
                present.add(rel)
    return present


def check_files(release: Path, manifest: dict, findings: Findings, *, threads: int = 2) -> int:
    present = release_files(release, findings)
    for rel in sorted(present - manifest.keys()):
        findings.add("extra file", f"{rel}: not in the manifest (added after the build)")
    for rel in sorted(manifest.keys() - present):
        findings.add("missing file", f"{rel}: in the manifest but missing")
    listed = sorted(manifest.keys() & present)

    def facts(rel: str) -> tuple[str, int, str]:
        path = release / rel
        return rel, path.stat().st_size, file_sha256(path)

    with ThreadPoolExecutor(max_workers=threads) as pool:  # hashlib lets go of the GIL on large reads
        for rel, size, sha in pool.map(facts, listed):
            expected = manifest[rel]
            if size != expected["bytes"] or sha != expected["sha256"]:
                findings.add(
                    "changed file",
                    f"{rel}: sha256 {sha[:12]}… ({size} bytes), manifest {expected['sha256'][:12]}… "
                    f"({expected['bytes']} bytes)",
                )
    return len(present)


# 2. Formats, record by record ----------------------------------------------------------------------------------


def reference_table(root: Path, findings: Findings) -> pa.Table | None:
    """The released records the other formats are checked against, once the CSV and the Parquet agree.

    Fast path: the CSV the export writes from the Parquet rows is byte for byte the released CSV (then every
    cell agrees, and the Parquet's typed table is the reference). Otherwise (an edit, or a release written by
    another writer) both are read and compared record by record, and the CSV's text is the reference."""
    parquet = parquet_paths(root)
    parquet_dir = f"{ROOT}/{PARQUET_DIR}"
    if parquet and (root / CSV_PATH).exists():
        # a damaged Parquet file is its own finding: blamed on the CSV, it cost every record check
        unreadable = object()
        table = _guarded(findings, parquet_dir, rendered_as_csv, root / CSV_PATH, parquet, failed=unreadable)
        if table is unreadable:
            table, parquet = None, []  # the CSV alone is the reference
        if table is not None:
            _duplicates(table, findings)
            # the rows agree in order, but a row at a file's edge can sit in the neighbouring split's file
            for path in parquet:
                splits = pq.read_table(path, columns=["split"])["split"]
                _check_file_splits(parquet_dir, path, splits, findings)
            return table
    csv = _csv_table(root / CSV_PATH, findings)
    if csv is not None and parquet:
        _guarded(findings, parquet_dir, check_parquet, root, csv, findings)
    return csv


def parquet_paths(root: Path) -> list[Path]:
    return sorted((root / PARQUET_DIR).glob("*.parquet")) if (root / PARQUET_DIR).exists() else []


def rendered_as_csv(csv_path: Path, parquet: list[Path], threads: int = 2) -> pa.Table | None:
    """The Parquet rows (splits in release order) when the CSV written from them is the released CSV's bytes;
    None at the first byte that differs. Text columns come back as large_string (a full release's barcodes pass
    2 GB), one chunk per Parquet file."""
    import mmap

    from bioscan_rebuild.export.formats.csv import write_csv_part

    by_split: dict[str, list[Path]] = {}
    for path in parquet:
        by_split.setdefault(path.name.split("-")[0], []).append(path)
    if set(by_split) - set(SPLITS):
        return None
    ordered = [path for split in SPLITS for path in by_split.get(split, [])]

    def render(item: tuple[int, Path]) -> tuple[pa.Table, pa.Buffer] | None:
        index, path = item
        table = pq.read_table(path)
        if table.schema.names != list(RELEASE_COLUMNS):
            return None
        table = pa.table(
            [c.cast(c.type.value_type) if pa.types.is_dictionary(c.type) else c for c in table.columns],
            names=table.schema.names,
        )
        sink = pa.BufferOutputStream()
        write_csv_part(table, sink, header=index == 0)
        return table, sink.getvalue()

    parts: list[pa.Table] = []
    pending: deque = deque()
    try:
        with open(csv_path, "rb") as handle, ThreadPoolExecutor(max_workers=threads) as pool:
            if handle.seek(0, 2) == 0:
                return None
            with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
                view, position, queued = memoryview(mapped), 0, iter(enumerate(ordered))
                try:
                    # files rendered `threads` at a time and compared in order; memory is those files
                    pending.extend(pool.submit(render, item) for item in islice(queued, threads))
                    while pending:
                        rendered = pending.popleft().result()
                        if rendered is None:
                            return None
                        table, text = rendered
                        if not text.equals(pa.py_buffer(view[position : position + text.size])):
                            return None
                        position += text.size
                        parts.append(table)
                        pending.extend(pool.submit(render, item) for item in islice(queued, 1))
                    if not parts or position != len(mapped):
                        return None
                finally:
                    for future in pending:
                        future.cancel()
                    view.release()
    except (OSError, ValueError, pa.ArrowException):
        return None
    table = pa.concat_tables(parts)
    return pa.table([_large(column) for column in table.columns], names=table.schema.names)


def _duplicates(table: pa.Table, findings: Findings) -> None:
    for processid, count in repeated_values(table["processid"]):
        findings.add("duplicate record", f"{ROOT}/{CSV_PATH}: {processid} has {count} rows")


def _csv_table(path: Path, findings: Findings) -> pa.Table | None:
    """The release CSV, every cell as text (empty = missing), sorted by processid."""
    try:
        header = csv_header(path)
        table = pacsv.read_csv(
            path,
            convert_options=pacsv.ConvertOptions(
                column_types=dict.fromkeys(header, pa.large_string()),  # a full release's barcodes pass 2 GB
                null_values=[""],  # only an empty field: "NA" or "null" is a value
                strings_can_be_null=True,
                quoted_strings_can_be_null=True,
            ),
        )
    except (OSError, pa.ArrowInvalid) as error:
        findings.add("unreadable", f"{ROOT}/{CSV_PATH}: cannot be read ({error})")
        return None
    _duplicates(table, findings)
    return table.sort_by("processid")


def _compare(
    where: str, field: str, ids: pa.Array, expected: pa.Array, got: pa.Array, findings: Findings, truth: str = "csv"
) -> None:
    """Report rows where ``got`` differs from ``expected`` (null-aware), naming record and field; ``truth`` names
    where ``expected`` comes from."""
    expected, got = _large(expected), _large(got)
    same = pc.fill_null(pc.equal(expected, got), False)
    both_null = pc.and_(pc.is_null(expected), pc.is_null(got))
    differ = np.flatnonzero(~pc.or_(same, both_null).to_numpy(zero_copy_only=False))
    for row in differ:
        pid, value, wanted = ids[row].as_py(), got[row].as_py(), expected[row].as_py()
        findings.add(f"{where} {field}", f"{where}: record {pid} field {field}: {value!r}, {truth} {wanted!r}")


def _large(array):
    """Text columns (arrays or chunked) as large_string (64-bit offsets): one type on both sides of a
    comparison, and a full release's barcodes pass 2 GB."""
    if pa.types.is_string(array.type) or pa.types.is_null(array.type):
        return array.cast(pa.large_string())
    return array


def _numeric_text(array: pa.Array) -> pa.Array:
    """Numbers compared by value: CSV text and Parquet floats both as float64 (integers exactly)."""
    return pc.cast(array, pa.float64())


def _split_of_file(path: Path) -> str:
    """The split a Hugging Face data file holds, by its name (``train-00000-of-00001.parquet``): what
    ``datasets`` loads it as."""
    return path.name.split("-")[0]


def _check_file_splits(where: str, path: Path, splits: pa.ChunkedArray, findings: Findings) -> None:
    """Every row of a per-split file is of that split: a row moved to another split's file is loaded as that one."""
    other = pc.not_equal(splits, _split_of_file(path))
    if pc.any(pc.fill_null(other, True)).as_py():
        findings.add(
            f"{where} split files",
            f"{where}/{path.name}: {pc.sum(pc.fill_null(other, True)).as_py()} rows "
            f"not of split {_split_of_file(path)}, which the file's name makes them",
        )


def check_parquet(root: Path, csv: pa.Table, findings: Findings) -> None:
    paths = parquet_paths(root)
    for path in paths:
        _check_file_splits(f"{ROOT}/{PARQUET_DIR}", path, pq.read_table(path, columns=["split"])["split"], findings)
    table = pa.concat_tables([pq.read_table(p) for p in paths], promote_options="permissive")
    order = pc.sort_indices(table["processid"])  # column by column below: one sorted column in memory at a time
    where = f"{ROOT}/{PARQUET_DIR}"
    ids = table["processid"].take(order)
    if ids.to_pylist() != csv["processid"].to_pylist():
        _record_sets(where, csv["processid"], ids, findings)
        return
    for field in csv.schema.names:
        if field not in table.schema.names:
            findings.add("missing column", f"{where}: no column {field}")
            continue
        column = table[field]
        if pa.types.is_string(column.type):
            column = column.cast(pa.large_string())
        column = column.take(order)
        value_type = column.type.value_type if pa.types.is_dictionary(column.type) else column.type
        if pa.types.is_floating(value_type) or pa.types.is_integer(value_type):
            expected = _numeric_text(csv[field].combine_chunks())
            got = _numeric_text(column.cast(value_type).combine_chunks())
        else:  # large_string before the chunks are joined: a full release's barcodes pass 2 GB
            expected, got = csv[field].combine_chunks(), column.cast(pa.large_string()).combine_chunks()
        _compare(where, field, csv["processid"].combine_chunks(), expected, got, findings)


def _record_sets(where: str, expected, got, findings: Findings) -> None:
    expected, got = set(expected.to_pylist()), set(got.to_pylist())
    for pid in sorted(expected - got):
        findings.add(f"{where} records", f"{where}: record {pid} of the csv is missing")
    for pid in sorted(got - expected):
        findings.add(f"{where} records", f"{where}: record {pid} is not in the csv")
    if expected == got:
        findings.add(f"{where} records", f"{where}: a record is there more than once")


def _by_split(csv: pa.Table) -> dict[str, pa.Table]:
    """The rows of each split: a zero-copy slice where they are contiguous (as the release writes them)."""
    splits = csv["split"]
    out = {}
    for split in SPLITS:
        rows = np.flatnonzero(pc.fill_null(pc.equal(splits, split), False).to_numpy(zero_copy_only=False))
        if not len(rows):
            out[split] = csv.slice(0, 0)  # a take, even of nothing, would join every chunk first
        elif rows[-1] - rows[0] + 1 == len(rows):
            out[split] = csv.slice(int(rows[0]), len(rows))
        else:
            out[split] = csv.take(pa.array(rows, pa.int64()))
    return out


def check_hdf5(root: Path, csv: pa.Table, config: dict | None, findings: Findings) -> None:
    path = root / HDF5_PATH
    if not path.exists():
        return
    import hashlib

    import h5py

    where = f"{ROOT}/{HDF5_PATH}"
    configured = _configured(config, "export", "image_package")
    with h5py.File(path, "r") as h5:
        package = h5.attrs.get("image_package")
        package = package.decode() if isinstance(package, bytes) else package
        if configured and package != configured:
            # the file's own word chose the images it was checked against: removed, nothing was; changed, the
            # images of another package passed
            findings.add(
                f"{where} image", f"{where}: image_package {package!r}, the release's config says {configured!r}"
            )
            package = configured
        for name in sorted(set(h5.keys()) - set(SPLITS)):
            findings.add(f"{where} records", f"{where}: group {name} is no split of the release")
        lineage = None  # read once, where images are compared
        for split, part in _by_split(csv).items():
            part = part.sort_by("processid")
            if part.num_rows == 0 and split not in h5:
                continue
            if split not in h5:
                findings.add(f"{where} records", f"{where}: no group {split} for its {part.num_rows} records")
                continue
            group = h5[split]
            ids = [v.decode() if isinstance(v, bytes) else v for v in group["processid"][:]]
            order = np.argsort(ids, kind="stable")
            ids_sorted = pa.array([ids[i] for i in order], pa.large_string())
            if ids_sorted.to_pylist() != part["processid"].to_pylist():
                _record_sets(f"{where}:{split}", part["processid"], ids_sorted, findings)
                continue
            for field in HDF5_LABELS:
                values = [(v.decode() if isinstance(v, bytes) else v) for v in group[field][:]]
                got = pa.array([values[i] or None for i in order], pa.large_string())
                _compare(f"{where}:{split}", field, ids_sorted, part[field].combine_chunks(), got, findings)
            if not package:
                continue
            chunks = part["chunk"].to_pylist()
            for k, i in enumerate(order):
                processid = ids_sorted[k].as_py()
                image = root / image_relpath(package, split, chunks[k], processid)
                blob = group["image"][i].tobytes()
                if image.exists():
                    if hashlib.sha256(blob).hexdigest() != file_sha256(image):
                        findings.add(
                            f"{where} image",
                            f"{where}:{split}: record {processid} image differs from {IMAGES_DIR}/{package} file",
                        )
                    continue
                # no file (a release without the images format, or a record without an image): the lineage names
                # the image's sha256, or none; the check of the lineage says which files are missing
                if lineage is None:  # read at the first record without a file: a release with images never needs it
                    lineage = _lineage_image_hashes(root, package)
                if processid not in lineage:
                    continue
                named = lineage[processid]
                if named is None and blob:
                    findings.add(
                        f"{where} image",
                        f"{where}:{split}: record {processid} holds an image of {len(blob)} bytes, but the lineage "
                        f"names no {package} image for it",
                    )
                elif named is not None and hashlib.sha256(blob).hexdigest() != named:
                    findings.add(
                        f"{where} image",
                        f"{where}:{split}: record {processid} image is not the one the lineage names "
                        f"(sha256_{package})" + ("" if blob else ": it holds none"),
                    )


def _lineage_image_hashes(root: Path, package: str) -> dict[str, str | None]:
    """processid -> the lineage's sha256 of its ``package`` image (None: it has none); {} without a lineage."""
    path = root / RECORDS_LINEAGE.path
    column = f"sha256_{package}"
    if not path.exists():
        return {}
    header = csv_header(path)
    if column not in header or "processid" not in header:
        return {}
    options = pacsv.ConvertOptions(
        column_types=dict.fromkeys(["processid", column], pa.string()),
        include_columns=["processid", column],
        null_values=[""],
        strings_can_be_null=True,
    )
    table = pacsv.read_csv(path, convert_options=options)
    return dict(zip(table["processid"].to_pylist(), table[column].to_pylist(), strict=True))


# What each record node says exactly as the writer spells it (compact JSON): its type. Counted in the raw lines,
# since the release's own nodes type themselves with lists, which one Arrow column cannot hold beside text.
OCCURRENCE_TYPE = b'"@type":"dwc:Occurrence"'


def _jsonld_batches(path: Path, keys: dict[str, pa.DataType], block: int) -> Iterator[tuple[pa.Table, bytes]]:
    """The nodes of a JSON-LD split file as Arrow tables, about ``block`` bytes of the file each, with those bytes.

    The release writes one node per line (``node,``) between ``"@graph": [`` and ``]}``; a raw newline cannot
    occur inside a JSON string, so blanking each line's trailing comma leaves newline-delimited JSON, which
    Arrow's reader parses on every core. Memory is one block, not the gigabytes of a full release's pretrain
    file. Raises ``ValueError`` when the file is not laid out so, ``pyarrow.ArrowInvalid`` on bad JSON."""
    import pyarrow.json as pajson

    schema = pa.schema([pa.field("@id", pa.large_string()), *(pa.field(key, kind) for key, kind in keys.items())])
    options = pajson.ParseOptions(explicit_schema=schema, unexpected_field_behavior="ignore")
    start, end = b'"@graph": [\n', b"\n]}\n"
    buffer = bytearray(block)  # reused: a fresh block per read would cost its page faults every time
    view = memoryview(buffer)
    with open(path, "rb") as handle:
        at = handle.read(1 << 20).find(start)
        size = handle.seek(0, 2)
        handle.seek(max(0, size - len(end)))
        if at < 0 or handle.read() != end:
            raise ValueError('the nodes are not one per line between "@graph": [ and ]}')
        position = handle.seek(at + len(start))
        stop = size - len(end) + 1  # through the newline after the last node
        carried = 0
        while position < stop:
            if carried == block:
                raise ValueError(f"a node is longer than {block} bytes")
            filled = carried + handle.readinto(view[carried : min(block, carried + stop - position)])
            position = handle.tell()
            data = np.frombuffer(buffer, np.uint8, count=filled)
            newlines = np.flatnonzero(data == 0x0A)
            cut = int(newlines[-1]) + 1 if len(newlines) else 0
            if cut:
                ends = newlines - 1
                data[ends[(ends >= 0) & (data[np.maximum(ends, 0)] == 0x2C)]] = 0x20  # "node,\n" -> "node \n"
                raw = bytes(view[:cut])
                yield pajson.read_json(pa.BufferReader(raw), parse_options=options), raw
            del data
            carried = filled - cut
            view[:carried] = view[cut:filled]
        if carried:
            raise ValueError("the last node does not end its line")
    view.release()


class _SplitRows:
    """The released rows of one split, looked up by the processids of a block of JSON-LD nodes: the next rows in
    order when the nodes follow the release's order (as the export writes them), else by a hash index."""

    def __init__(self, part: pa.Table):
        self.part, self.ids = part, part["processid"]
        self.cursor, self.index = 0, None
        self.seen = np.zeros(part.num_rows, bool)

    def rows(self, ids: pa.Array) -> np.ndarray:
        """Row of each id in the split (-1: not in it)."""
        end = self.cursor + len(ids)
        if end <= self.part.num_rows and self.ids.slice(self.cursor, len(ids)).combine_chunks().equals(ids):
            rows = np.arange(self.cursor, end)
            self.cursor = end
            return rows
        if self.index is None:
            import pandas as pd

            self.index = pd.Index(self.ids.to_numpy())
        self.cursor = self.part.num_rows + 1  # out of order: the index from here on
        return self.index.get_indexer(ids.to_numpy(zero_copy_only=False))

    def take(self, rows: np.ndarray) -> pa.Table:
        if len(rows) and (np.diff(rows) == 1).all():
            return self.part.slice(int(rows[0]), len(rows))
        return self.part.take(pa.array(rows, pa.int64()))

    def missing(self) -> list:
        return self.ids.filter(pa.array(~self.seen)).to_pylist()


def check_jsonld(root: Path, csv: pa.Table, findings: Findings, block: int = 1 << 26) -> None:
    """Record nodes read in blocks and compared with the released rows they name: memory is one block, not the
    gigabytes of a full release's JSON-LD."""
    folder = root / JSONLD_DIR
    if not folder.exists():
        return
    csv = _with_stated_hashes(root, csv)
    terms = {c: k for c, k in STRING_TERMS.items() if c in csv.schema.names}
    numbers = {c: k for c, k in {**DECIMAL_TERMS, **INTEGER_TERMS}.items() if c in csv.schema.names}
    keys = {key: pa.large_string() for key in [*terms.values(), "verbatimIdentification"]}
    keys.update({key: pa.large_string() for key in DECIMAL_TERMS.values()})  # xsd:decimal literals are text
    keys.update({key: pa.int64() for key in INTEGER_TERMS.values()})
    keys.update({key: pa.large_string() for key in ("isPartOf", *DERIVED_KEYS)})
    for split, part in _by_split(csv).items():
        path = folder / f"{split}.jsonld"
        where = f"{ROOT}/{JSONLD_DIR}/{split}.jsonld"
        if not path.exists():
            if part.num_rows:
                findings.add(f"{where} records", f"{where}: missing, for {part.num_rows} records")
            continue
        released = _SplitRows(part)
        try:
            own = _jsonld_own_prefixes(path)
            for nodes, raw in _jsonld_batches(path, keys, block):
                nodes = _jsonld_record_nodes(where, nodes, own, findings)
                _check_jsonld_nodes(where, split, nodes, released, terms, numbers, findings)
                _check_jsonld_node_shape(where, split, nodes, raw, findings)
        except (ValueError, pa.ArrowInvalid) as error:
            findings.add("unreadable", f"{where}: not the JSON-LD the release writes ({error})")
            continue
        for pid in released.missing():
            findings.add(f"{where} records", f"{where}: record {pid} of the csv is missing")


# The lineage's hash columns a JSON-LD node states (as ``imageSha256``, ``sourceImageSha256``).
JSONLD_LINEAGE_HASHES = ("sha256_original_full", "image_sha256")
# Where the hashes the nodes state are checked against, as a finding names it.
STATED_HASH_TRUTH = {
    **dict.fromkeys(JSONLD_LINEAGE_HASHES, RECORDS_LINEAGE.path.rsplit("/", 1)[-1]),
    "barcode_sha256": "sha256 of its dna_barcode",
}


def _with_stated_hashes(root: Path, csv: pa.Table) -> pa.Table:
    """``csv`` and the hashes each JSON-LD node states beside its fields: the released original_full JPEG's and
    the source photo's (the lineage's, which check 3 holds to the manifest and the accounting) and the barcode's
    (sha256 of its UTF-8 text). An edited hash was never compared: a reader checking a photo by it was misled."""
    import hashlib

    if "dna_barcode" in csv.schema.names:
        barcodes, digests = csv["dna_barcode"], []
        for start in range(0, len(barcodes), 1 << 16):  # a slice at a time: a full release's are 3.4 GB of text
            digests += [
                None if text is None else hashlib.sha256(text.encode("utf-8")).hexdigest()
                for text in barcodes.slice(start, 1 << 16).to_pylist()
            ]
        csv = csv.append_column("barcode_sha256", pa.array(digests, pa.large_string()))
    wanted = ["processid", *JSONLD_LINEAGE_HASHES]
    try:
        if (root / RECORDS_LINEAGE_PARQUET.path).exists():  # three columns of it, not GBs of CSV text parsed
            lineage = pq.read_table(root / RECORDS_LINEAGE_PARQUET.path, columns=wanted)
            lineage = lineage.cast(pa.schema([(name, pa.large_string()) for name in wanted]))
        else:
            lineage = pacsv.read_csv(
                root / RECORDS_LINEAGE.path,
                convert_options=pacsv.ConvertOptions(
                    column_types=dict.fromkeys(wanted, pa.large_string()),
                    include_columns=wanted,
                    null_values=[""],
                    strings_can_be_null=True,
                ),
            )
    except (OSError, KeyError, pa.ArrowException):
        return csv  # checks 3 name what is wrong with the lineage (the Parquet copy against the CSV)
    rows = pc.index_in(csv["processid"], value_set=lineage["processid"].combine_chunks())
    for column in JSONLD_LINEAGE_HASHES:
        csv = csv.append_column(column, lineage[column].combine_chunks().take(rows))
    return csv


def _jsonld_own_prefixes(path: Path) -> tuple[str, str]:
    """(the release's IRI, its records' IRI prefix) from the file's ``@context`` (``release:`` and ``rec:``)."""
    with open(path, "rb") as handle:
        head = handle.read(1 << 20)
    at = head.find(b'"@graph": [')
    if at < 0:
        raise ValueError('no "@graph": [ in its first MB')
    context = json.loads(head[:at].decode().rstrip().rstrip(",") + "}").get("@context", {})
    release, records = context.get("release"), context.get("rec")
    if not isinstance(release, str) or not isinstance(records, str):
        raise ValueError("its @context defines no release: and rec: prefixes")
    return release, records


def _jsonld_record_nodes(where: str, nodes: pa.Table, own: tuple[str, str], findings: Findings) -> pa.Table:
    """The record nodes (``rec:`` ids, or any node with an ``occurrenceID``: an Occurrence under a full IRI is a
    record to an RDF reader too); every other node must be one of the release's own (``release:...``)."""
    release, records = own
    ids = nodes["@id"]
    by_id = pc.or_(pc.starts_with(ids, "rec:"), pc.starts_with(ids, records))
    is_record = pc.fill_null(pc.or_(by_id, pc.is_valid(nodes["occurrenceID"])), False)
    own_node = pc.or_(pc.starts_with(ids, "release:"), pc.equal(ids, release.rstrip("/")))
    for node in ids.filter(pc.invert(pc.fill_null(pc.or_(is_record, own_node), False))).to_pylist():
        findings.add(f"{where} nodes", f"{where}: node {node!r} is neither a record nor part of the release")
    nodes = nodes.filter(is_record)
    prefix, empty = pa.scalar("rec:", pa.large_string()), pa.scalar("", pa.large_string())
    expected = pc.binary_join_element_wise(prefix, _percent_encoded(nodes["occurrenceID"]), empty)
    named = pc.fill_null(pc.equal(nodes["@id"], expected), False)
    for node, pid in zip(*(nodes.filter(pc.invert(named))[c].to_pylist() for c in ("@id", "occurrenceID"))):
        findings.add(f"{where} nodes", f"{where}: node {node!r} holds record {pid!r}: its @id is not that record's")
    return nodes.filter(pc.is_valid(nodes["occurrenceID"]))


def _percent_encoded(ids) -> pa.Array:
    """``urllib.parse.quote(id, safe="")`` of each id, as the JSON-LD writer names record nodes."""
    from urllib.parse import quote

    ids = ids.combine_chunks() if isinstance(ids, pa.ChunkedArray) else ids
    plain = pc.fill_null(pc.match_substring_regex(ids, r"^[A-Za-z0-9_.~-]*$"), True)
    if pc.all(plain).as_py() is not False:
        return ids
    return pa.array([None if v is None else quote(v, safe="") for v in ids.to_pylist()], ids.type)


def _check_jsonld_nodes(where, split, nodes, released: _SplitRows, terms, numbers, findings) -> None:
    """One block of record nodes against the released rows they name."""
    ids = nodes["occurrenceID"].combine_chunks()
    rows = released.rows(ids)
    for pid in ids.filter(pa.array(rows < 0)).to_pylist():
        findings.add(f"{where} records", f"{where}: record {pid} is not in the csv's {split} split")
    twice = rows[(rows >= 0) & released.seen[np.maximum(rows, 0)]]
    for row in twice:
        findings.add(f"{where} records", f"{where}: record {released.ids[int(row)]} is there more than once")
    known = rows >= 0
    released.seen[rows[known]] = True
    if not known.all():
        nodes, rows, ids = nodes.filter(pa.array(known)), rows[known], ids.filter(pa.array(known))
    expected_rows = released.take(rows)
    interim = pc.is_valid(nodes["verbatimIdentification"])
    for column, key in terms.items():
        expected, got = expected_rows[column].combine_chunks(), nodes[key].combine_chunks()
        if column == "taxon":  # an interim name is not a scientific name: it is the verbatim identification
            named = pc.coalesce(expected_rows["species"].combine_chunks(), expected_rows["genus"].combine_chunks())
            expected = pc.if_else(interim, named, expected)
            got = pc.if_else(interim, nodes["verbatimIdentification"].combine_chunks(), got)
        _compare(where, column, ids, expected, got, findings, STATED_HASH_TRUTH.get(column, "csv"))
    for column, key in numbers.items():
        got = pc.cast(nodes[key].combine_chunks(), pa.float64())
        _compare(where, column, ids, _numeric_text(expected_rows[column].combine_chunks()), got, findings)


# What a record node says that no column holds: derived from its labels (the writer's rules, run again).
DERIVED_KEYS = ("taxonRank", "specificEpithet", "identificationQualifier")


def _check_jsonld_node_shape(where: str, split: str, nodes: pa.Table, raw: bytes, findings: Findings) -> None:
    """What an RDF reader takes from a record node beyond its fields: its type (a node retyped is no Occurrence,
    and its record is gone to the reader), the split it is part of, no ``@context`` of its own (one that maps a
    field to nothing takes it away), and the terms derived from its labels."""
    from bioscan_rebuild.export.formats.jsonld import derived_node_terms, interim_genera

    typed = raw.count(OCCURRENCE_TYPE)
    if typed != nodes.num_rows:
        findings.add(
            f"{where} nodes",
            f"{where}: {nodes.num_rows - typed} record nodes in a block are not typed dwc:Occurrence as written",
        )
    if b'"@context"' in raw:  # the file's own is above the graph (in a value, its quotes are escaped)
        findings.add(f"{where} nodes", f"{where}: a node of the graph holds an @context of its own")
    ids = nodes["occurrenceID"].combine_chunks()
    parent = pa.array([f"release:splits/{split}"] * nodes.num_rows, pa.large_string())
    _compare(where, "isPartOf", ids, parent, nodes["isPartOf"].combine_chunks(), findings, "its split")
    labels = {
        rank: nodes[key].combine_chunks().to_pylist()
        for rank, key in STRING_TERMS.items()
        if rank in RANKS and key in nodes.schema.names  # a release without a rank's column: none to derive from
    }
    # what the writer knew: a verbatim identification beside a species is a placeholder's; an interim genus is
    # known by its name, as the writer knows it
    verbatim = [v is not None for v in nodes["verbatimIdentification"].combine_chunks().to_pylist()]
    named = [v is not None for v in labels.get("species", [None] * nodes.num_rows)]
    placeholder = [v and n for v, n in zip(verbatim, named, strict=True)]
    expected = derived_node_terms(labels, placeholder, interim_genera(labels.get("genus", [None] * nodes.num_rows)))
    for key in DERIVED_KEYS:
        got = nodes[key].combine_chunks()
        _compare(where, key, ids, pa.array(expected[key], pa.large_string()), got, findings, "its labels give")


# 3. Lineage ----------------------------------------------------------------------------------------------------


def check_lineage(root: Path, csv: pa.Table, accounting: dict, findings: Findings, manifest=None) -> None:
    path = root / RECORDS_LINEAGE.path
    where = f"{ROOT}/{RECORDS_LINEAGE.path}"
    if not path.exists():
        findings.add("lineage", f"{where}: missing")
        return
    header = csv_header(path)
    wanted = [
        "processid",
        "batch",
        "source_file",
        "source_sha256",
        "changes",
        *(c for c in header if c.startswith("sha256_")),
    ]
    options = pacsv.ConvertOptions(
        null_values=[""],  # only an empty field: a processid "NA" is a processid
        strings_can_be_null=True,
        column_types=dict.fromkeys(wanted, pa.string()),
        include_columns=[c for c in wanted if c in header],
    )
    lineage = pacsv.read_csv(path, convert_options=options).combine_chunks()
    released = csv["processid"].combine_chunks().cast(pa.string())
    lineage_ids = lineage["processid"].combine_chunks()
    if lineage.num_rows != csv.num_rows or len(pc.unique(lineage_ids)) != lineage.num_rows:
        _record_sets(where, released, lineage_ids, findings)
        return
    if lineage_ids.equals(released):  # the build writes it in the release's order
        rows = pa.array(np.arange(len(released)))
    else:
        rows = pc.index_in(lineage_ids, value_set=released)  # hashed in Arrow: no Python object per record
        if rows.null_count:
            _record_sets(where, released, lineage_ids, findings)
            return
    exports = {  # as the workflow spells a path ("./x" is "x")
        os.path.normpath(str(item["export"])): item["export_sha256"]
        for item in accounting.get("batches", {}).values()
        if "export" in item
    }
    _check_image_hashes(where, lineage, csv.select(["split", "chunk"]).take(rows), manifest or {}, findings)
    _check_lineage_batches(where, lineage, accounting, findings)
    _guarded(findings, CHANGES.path, _check_lineage_changes, root, where, lineage, findings)
    parquet = f"{ROOT}/{RECORDS_LINEAGE_PARQUET.path}"  # a damaged copy is its own finding, not the CSV's
    _guarded(findings, parquet, check_lineage_parquet, root, findings)
    sources = pc.unique(lineage["source_file"])
    listed = pa.array([exports.get(os.path.normpath(str(source))) for source in sources.to_pylist()], pa.string())
    expected = listed.take(pc.index_in(lineage["source_file"], value_set=sources))
    wrong = pc.invert(pc.fill_null(pc.equal(expected, lineage["source_sha256"]), False))
    for pid, source, sha in zip(
        *(lineage[column].filter(wrong).to_pylist() for column in ("processid", "source_file", "source_sha256"))
    ):
        findings.add(
            "lineage source",
            f"{where}: record {pid} names {source} with sha256 {str(sha)[:12]}…, not what the accounting lists",
        )


def _check_lineage_batches(where: str, lineage: pa.Table, accounting: dict, findings: Findings) -> None:
    """Each record's ``batch`` is a delivery whose export is the record's ``source_file`` (by the accounting)."""
    if "batch" not in lineage.schema.names:
        findings.add("lineage batch", f"{where}: no column batch")
        return
    exports = {  # as the workflow spells them ("./x" is "x")
        name.split(":", 1)[1]: os.path.normpath(str(item.get("export")))
        for name, item in accounting.get("batches", {}).items()
        if name.startswith("export:") and isinstance(item, dict)
    }
    pairs = lineage.select(["batch", "source_file"]).group_by(["batch", "source_file"]).aggregate([([], "count_all")])
    for batch, source, count in zip(*(pairs[name].to_pylist() for name in ("batch", "source_file", "count_all"))):
        if exports.get(batch) != os.path.normpath(str(source)):
            rows = pc.and_(
                pc.equal(pc.fill_null(lineage["batch"], ""), batch or ""),
                pc.equal(pc.fill_null(lineage["source_file"], ""), source or ""),
            )
            first = lineage["processid"].filter(rows)[0].as_py()
            findings.add(
                "lineage batch",
                f"{where}: record {first} (the first of {count} with batch {batch!r} and source file {source}): "
                f"the accounting's batch {batch!r} delivered {exports.get(batch) or 'no export'}",
            )


def _check_lineage_changes(root: Path, where: str, lineage: pa.Table, findings: Findings) -> None:
    """Each record's ``changes`` are its ``changes.csv`` rows' ``rule:field``, in order (as the release makes
    them: ``side_files.change_ids``)."""
    path = root / CHANGES.path
    if not path.exists() or "changes" not in lineage.schema.names:
        return
    columns = ["processid", "field", "rule"]
    options = pacsv.ConvertOptions(
        null_values=[""],
        strings_can_be_null=True,
        column_types=dict.fromkeys(columns, pa.string()),
        include_columns=columns,
    )
    logged = change_ids(pacsv.read_csv(path, convert_options=options))
    expected = pc.take(logged["changes"], pc.index_in(lineage["processid"], value_set=logged["processid"]))
    got = lineage["changes"].combine_chunks()
    _compare(where, "changes", lineage["processid"], expected.combine_chunks(), got, findings, CHANGES.path)


def _check_image_hashes(where: str, lineage: pa.Table, csv: pa.Table, manifest: dict, findings: Findings) -> None:
    """Each released image file is the one the lineage names (by the manifest's sha256, hashed in check 1).
    ``csv`` holds the released rows in the lineage's order."""
    splits = chunks = None
    images = f"{ROOT}/{IMAGES_DIR}/"
    files_of = Counter(key[len(images) :].split("/", 1)[0] for key in manifest if key.startswith(images))
    for package in IMAGE_PACKAGES:
        column = f"sha256_{package}"
        if column not in lineage.schema.names:
            continue
        # the lineage names every package's image; the files are released only with the 'images' format
        released = files_of[package] > 0
        if splits is None:
            splits, chunks = csv["split"].to_pylist(), csv["chunk"].to_pylist()
        owned = 0
        for pid, split, chunk, sha in zip(
            lineage["processid"].to_pylist(), splits, chunks, lineage[column].to_pylist()
        ):
            rel = image_relpath(package, split, chunk, pid)
            listed = manifest.get(f"{ROOT}/{rel}")
            owned += listed is not None
            if listed is None and sha is not None and released:
                findings.add(f"lineage {package}", f"{where}: record {pid} names a {package} image, no file {rel}")
            elif listed is not None and sha is None:
                findings.add(f"lineage {package}", f"{where}: record {pid} has no {package} sha256, but {rel} is there")
            elif listed is not None and listed["sha256"] != sha:
                findings.add(
                    f"lineage {package}", f"{where}: record {pid} {package} is {sha[:12]}…, the released file is not"
                )
        if files_of[package] > owned:  # only then: the released records' 5M paths as a set
            paths = {
                f"{ROOT}/{image_relpath(package, *row)}"
                for row in zip(splits, chunks, lineage["processid"].to_pylist())
            }
            strays = sorted(key for key in manifest if key.startswith(f"{images}{package}/") and key not in paths)
            findings.add_each(
                f"images {package}",
                findings.first(strays),
                lambda key: f"{key}: an image no released record has",
                len(strays),
            )


def check_rejects(root: Path, accounting: dict, findings: Findings, csv: pa.Table | None = None) -> None:
    """``rejects.csv`` holds every record the accounting says a stage rejected, and every photo ingest rejected,
    by reason (a photo that leaves with its record is named on its record's row)."""

    path, where = root / REJECTS.path, f"{ROOT}/{REJECTS.path}"
    if not path.exists():
        findings.add("rejects", f"{where}: missing")
        return
    options = pacsv.ConvertOptions(
        column_types={"kind": pa.string(), "reason": pa.string()}, include_columns=["kind", "reason"]
    )
    table = pacsv.read_csv(path, convert_options=options)
    rows = Counter(zip(table["kind"].to_pylist(), table["reason"].to_pylist()))
    stages = accounting.get("stages", {})
    expected = Counter()
    for stage in stages.values():
        expected.update({("record", reason): n for reason, n in stage.get("records", {}).get("rejected", {}).items()})
    expected.update(
        {("image", r): n for r, n in stages.get("ingest", {}).get("images", {}).get("rejected", {}).items()}
    )
    for kind, reason in sorted(set(rows) | set(expected)):
        if rows[(kind, reason)] != expected[(kind, reason)]:
            findings.add(
                "rejects",
                f"{where}: {rows[(kind, reason)]} {kind} rows of reason {reason}, "
                f"the accounting counts {expected[(kind, reason)]}",
            )
    if csv is not None:
        _check_rejected_records(path, where, csv, findings)


def _check_rejected_records(path: Path, where: str, csv: pa.Table, findings: Findings) -> None:
    """Which records the rejects name, against the released ones (counts alone let a row name any record): a record
    refused is not released, and a copy set aside for another copy (a duplicate, a later delivery) names a record
    that is released or refused for itself."""
    options = pacsv.ConvertOptions(
        column_types=dict.fromkeys(("kind", "reason", "processid"), pa.string()),
        include_columns=["kind", "reason", "processid"],
        strings_can_be_null=True,
    )
    table = pacsv.read_csv(path, convert_options=options)
    records = table.filter(pc.and_(pc.equal(table["kind"], "record"), pc.is_valid(table["processid"])))
    pids, reasons = records["processid"].to_pylist(), records["reason"].to_pylist()
    keys = processid_keys(pids)
    copy_kept = np.isin(np.array(reasons, dtype=object), ANOTHER_COPY_KEPT)
    whole = ~np.isin(np.array(reasons, dtype=object), ROW_SET_ASIDE)  # the record itself refused
    released = set(processid_keys(csv["processid"].to_pylist()))
    refused = {key for key, is_whole in zip(keys, whole) if is_whole}
    both = [(pid, why) for pid, key, why, is_whole in zip(pids, keys, reasons, whole) if is_whole and key in released]
    findings.add_each("rejects", both, lambda row: f"{where}: record {row[0]} is rejected ({row[1]}) and released")
    lost = [
        (pid, why)
        for pid, key, why, kept in zip(pids, keys, reasons, copy_kept)
        if kept and key not in released and key not in refused
    ]
    findings.add_each(
        "rejects",
        lost,
        lambda row: (
            f"{where}: record {row[0]}: a copy set aside ({row[1]}) for one the release neither holds nor rejects"
        ),
    )


def check_bbox(root: Path, csv: pa.Table, config: dict | None, findings: Findings) -> None:
    """``bbox.tsv``: a row for each released record with a box (an area fraction), none for another, and the size
    fields the release columns hold."""
    path, where = root / BBOX.path, f"{ROOT}/{BBOX.path}"
    if not path.exists():
        return  # optional: a release of records without photos has none
    table = pacsv.read_csv(  # a processid "007" is text, not the number 7
        path,
        parse_options=pacsv.ParseOptions(delimiter="\t"),
        convert_options=pacsv.ConvertOptions(column_types={"processid": pa.string()}),
    )
    released = csv["processid"].combine_chunks().cast(pa.string())
    boxed = csv.filter(pc.is_valid(_numeric_text(csv["area_fraction"].combine_chunks())))
    ids = table["processid"].combine_chunks().cast(pa.string())
    repeated = [processid for processid, _ in repeated_values(ids)]
    findings.add_each(f"{where} records", repeated, lambda pid: f"{where}: record {pid} has more than one row")
    short_side = _configured(config, "images", "short_side") or 256
    _check_box_geometry(where, table, ids, short_side, findings)
    if set(ids.to_pylist()) != set(boxed["processid"].cast(pa.string()).to_pylist()):
        _record_sets(where, boxed["processid"].combine_chunks().cast(pa.string()), ids, findings)
        return
    rows = pc.index_in(ids, value_set=released)
    for field in ("area_fraction", "scale_factor"):
        expected = _numeric_text(csv[field].combine_chunks().take(rows))
        _compare(where, field, ids, expected, _numeric_text(table[field].combine_chunks()), findings)


def _check_box_geometry(where: str, table: pa.Table, ids: pa.Array, short_side: int, findings: Findings) -> None:
    """Each row's box lies in its photo and gives the row's size fields by the published formulas
    (``area_fraction = round(w*h / (W*H), 4)``, ``scale_factor = round(min(w, h) / short_side, 4)``): a box
    edited alone (its size fields left as they were) passed, as the fields were all that was compared."""
    names = ("width_original", "height_original", "x0", "y0", "x1", "y1", "area_fraction", "scale_factor")
    width, height, x0, y0, x1, y1, area, scale = (
        pc.cast(table[name], pa.float64()).to_numpy(zero_copy_only=False) for name in names
    )
    w, h = x1 - x0, y1 - y0
    with np.errstate(divide="ignore", invalid="ignore"):
        inside = (x0 >= 0) & (y0 >= 0) & (w > 0) & (h > 0) & (x1 <= width) & (y1 <= height)
        # half a unit of the 4th decimal: the writer rounds, the check does not need to round alike
        fits = (np.abs(w * h / (width * height) - area) <= 5.1e-5) & (
            np.abs(np.minimum(w, h) / short_side - scale) <= 5.1e-5
        )
    wrong = np.flatnonzero(~(inside & fits))
    findings.add_each(
        f"{where} box",
        [ids[int(row)].as_py() for row in findings.first(wrong)],
        lambda pid: (
            f"{where}: record {pid}: its box does not lie in its photo or give its area_fraction and scale_factor"
        ),
        len(wrong),
    )


def check_fasta(root: Path, csv: pa.Table, findings: Findings, block: int = 1 << 26) -> None:
    """``barcodes.fasta``: one entry ``>processid|dna_bin|taxon`` per released record with a barcode, and its
    sequence the record's ``dna_barcode``. Parsed in Arrow, about ``block`` bytes at a time (a full release's file
    is GBs; a Python parser took 7 s per million entries)."""
    import pandas as pd

    path, where = root / BARCODES_FASTA.path, f"{ROOT}/{BARCODES_FASTA.path}"
    if not path.exists():
        return  # optional, like every side file the config may leave out
    ids = csv["processid"].combine_chunks()
    rows_of = pd.Index(ids.to_numpy(zero_copy_only=False))
    seen = np.zeros(len(ids), bool)

    def compare(entries: pa.Table) -> None:
        rows = rows_of.get_indexer(entries["processid"].to_numpy(zero_copy_only=False))
        for pid in entries["processid"].filter(pa.array(rows < 0)).to_pylist():
            findings.add(f"{where} records", f"{where}: record {pid} is not released")
        known = np.flatnonzero(rows >= 0)
        rows, entries = rows[known], entries.take(pa.array(known))
        for row in rows[seen[rows]]:
            findings.add(f"{where} records", f"{where}: record {ids[int(row)]} is there more than once")
        seen[rows] = True
        expected = csv.take(pa.array(rows, pa.int64()))
        names = entries["processid"].combine_chunks()
        for field in ("dna_bin", "taxon", "dna_barcode"):
            expected_field = _large(expected[field].combine_chunks())
            _compare(where, field, names, expected_field, entries[field].combine_chunks(), findings)

    try:
        for entries in _fasta_entries(path, block):
            compare(entries)
    except (OSError, ValueError, pa.ArrowInvalid) as error:
        findings.add("unreadable", f"{where}: not the FASTA the release writes ({error})")
        return
    barcoded = pc.fill_null(pc.greater(pc.utf8_length(csv["dna_barcode"].combine_chunks()), 0), False)
    for pid in ids.filter(pc.and_(barcoded, pa.array(~seen))).to_pylist():
        findings.add(f"{where} records", f"{where}: record {pid} of the csv is missing")


# from the right: a processid may hold "|" (only "/" and "\\" make it invalid), a BIN or taxon does not
_FASTA_HEADER = r"^>(?P<processid>.*)\|(?P<dna_bin>[^|]*)\|(?P<taxon>[^|]*)$"


def _fasta_entries(path: Path, block: int) -> Iterator[pa.Table]:
    """The entries of a FASTA file as tables (processid, dna_bin, taxon, dna_barcode; empty = null): its lines read
    by Arrow's CSV reader as one column, an entry's sequence lines joined by re-cutting the line buffer's offsets.
    Raises ValueError on a header not ``>processid|dna_bin|taxon`` or a sequence before the first header."""
    read = pacsv.ReadOptions(column_names=["line"], block_size=block)
    parse = pacsv.ParseOptions(delimiter="\x01", quote_char=False, escape_char=False)
    convert = pacsv.ConvertOptions(column_types={"line": pa.large_string()}, strings_can_be_null=False)
    carried = pa.array([], pa.large_string())
    reader = pacsv.open_csv(path, read_options=read, parse_options=parse, convert_options=convert)
    for batch in (*(b.column(0) for b in reader), None):
        lines = pa.concat_arrays([carried, batch]) if batch is not None else carried
        if not len(lines):
            continue
        heads = np.flatnonzero(pc.starts_with(lines, ">").to_numpy(zero_copy_only=False))
        if not len(heads) or heads[0] != 0:
            raise ValueError("a sequence line before its header")
        cut = int(heads[-1]) if batch is not None else len(lines)  # the last entry may go on in the next block
        if cut:
            yield _fasta_block(lines.slice(0, cut), heads[heads < cut])
        carried = lines.slice(cut)


def _fasta_block(lines: pa.Array, heads: np.ndarray) -> pa.Table:
    is_head = np.zeros(len(lines), bool)
    is_head[heads] = True
    headers = pc.extract_regex(lines.filter(pa.array(is_head)), _FASTA_HEADER)
    if headers.null_count:
        bad = lines.filter(pa.array(is_head)).filter(pc.is_null(headers))[0].as_py()
        raise ValueError(f"a header not >processid|dna_bin|taxon: {bad[:80]!r}")
    sequence = lines.filter(pa.array(~is_head))  # a fresh array: its lines' bytes are contiguous
    counts = np.diff(np.append(heads, len(lines))) - 1  # sequence lines per entry
    line_offsets = np.frombuffer(sequence.buffers()[1], np.int64)[sequence.offset : sequence.offset + len(sequence) + 1]
    offsets = line_offsets[np.concatenate([[0], np.cumsum(counts)])]
    joined = pa.LargeStringArray.from_buffers(len(heads), pa.py_buffer(offsets), sequence.buffers()[2])
    table = {name: headers.field(name) for name in ("processid", "dna_bin", "taxon")}
    table["dna_barcode"] = joined
    empty = pa.scalar("", pa.large_string())
    return pa.table(
        {
            name: column
            if name == "processid"
            else pc.if_else(pc.equal(column.cast(pa.large_string()), empty), None, column.cast(pa.large_string()))
            for name, column in table.items()
        }
    )


def check_lineage_parquet(root: Path, findings: Findings, block: int = 1 << 16) -> None:
    """``records_lineage.parquet`` holds what ``records_lineage.csv`` holds: every column, row by row (a Parquet
    reader's export line, raw sequence and photo are the CSV's). Read in blocks of ``block`` rows from both files
    (the raw sequences of a full release are gigabytes), the CSV with the Parquet's types."""
    csv_path, path = root / RECORDS_LINEAGE.path, root / RECORDS_LINEAGE_PARQUET.path
    where = f"{ROOT}/{RECORDS_LINEAGE_PARQUET.path}"
    if not path.exists() or not csv_path.exists():
        return
    parquet = pq.ParquetFile(path)
    names = parquet.schema_arrow.names
    header = csv_header(csv_path)
    if names != header:
        findings.add(f"{where} columns", f"{where}: columns {names}, the csv has {header}")
        return
    types = {field.name: field.type for field in parquet.schema_arrow}
    options = pacsv.ConvertOptions(null_values=[""], strings_can_be_null=True, column_types=types)
    reader = pacsv.open_csv(csv_path, convert_options=options)
    rows = 0
    for expected, got in _aligned_blocks(reader, parquet.iter_batches(batch_size=block)):
        if expected is None or got is None:
            findings.add(f"{where} records", f"{where}: {parquet.metadata.num_rows} records, the csv has another count")
            return
        rows += expected.num_rows
        if got.equals(expected):  # the common case, at memory speed; else cell by cell
            continue
        ids = expected.column("processid")
        if not ids.equals(got.column("processid")):
            findings.add(f"{where} records", f"{where}: the records differ from the csv's from row {rows + 1} on")
            return
        for name in names[1:]:
            wanted, held = expected.column(name), got.column(name)
            if pa.types.is_string(wanted.type):  # a CSV cannot tell a missing text from an empty one
                wanted, held = pc.fill_null(wanted, ""), pc.fill_null(held, "")
            _compare(where, name, ids, wanted.cast(pa.string()), held.cast(pa.string()), findings)


def _aligned_blocks(first, second) -> Iterator[tuple[pa.RecordBatch | None, pa.RecordBatch | None]]:
    """Pairs of equally long slices of two streams of record batches (the same rows, batched otherwise). When one
    stream ends before the other, a last pair holds None on its side."""
    first, second = iter(first), iter(second)
    left = right = None
    while True:
        while left is None or left.num_rows == 0:
            left = next(first, None)
            if left is None:
                break
        while right is None or right.num_rows == 0:
            right = next(second, None)
            if right is None:
                break
        if left is None and right is None:
            return
        if left is None or right is None:
            yield left, right
            return
        size = min(left.num_rows, right.num_rows)
        yield left.slice(0, size), right.slice(0, size)
        left, right = left.slice(size), right.slice(size)


def _check_parquet_copy(root: Path, relpath: str, csv_table: pa.Table, findings: Findings) -> None:
    """A side file's Parquet copy holds what its CSV (read as ``csv_table``, processid first) holds: the same
    records in the same order, and the same value in each of ``csv_table``'s columns (a missing text and an
    empty one alike: a CSV cannot tell them apart)."""
    path, where = root / relpath, f"{ROOT}/{relpath}"
    if not path.exists():
        return
    names = pq.read_schema(path).names
    columns = [c for c in csv_table.schema.names if c in names]
    table = pq.read_table(path, columns=columns)
    ids = csv_table["processid"].combine_chunks()
    if table.num_rows != csv_table.num_rows or not table["processid"].combine_chunks().equals(ids):
        _record_sets(where, ids, table["processid"].combine_chunks(), findings)
        return
    for column in columns[1:]:
        expected = csv_table[column].combine_chunks()
        got = table[column].combine_chunks().cast(expected.type)
        if pa.types.is_string(expected.type):
            expected, got = pc.fill_null(expected, ""), pc.fill_null(got, "")
        _compare(where, column, ids, expected, got, findings)


def _check_replayed_changes(root: Path, replayed: pa.Table, batch_names: list[str], findings: Findings) -> None:
    """Every row of ``changes.csv`` against the changes curation logs when replayed from the sources: the same
    changes (step, record, field), each with its old and new value, rule, ratio and source."""
    path, where = root / CHANGES.path, f"{ROOT}/{CHANGES.path}"
    if not path.exists():
        return
    key = ["step", "processid", "field"]
    compared = ["old", "new", "rule", "ratio", "source"]
    text = ["processid", "field", "old", "new", "rule", "source"]
    types = {"step": pa.int64(), "ratio": pa.float64(), **dict.fromkeys(text, pa.string())}
    options = pacsv.ConvertOptions(
        column_types=types, null_values=[""], strings_can_be_null=True, quoted_strings_can_be_null=True
    )
    logged = pacsv.read_csv(path, convert_options=options).select([*key, *compared])
    replayed = replayed.select([*key, *compared]).cast(logged.schema)
    # the replay's ingest names its batches export-1, export-2, ... in the order the exports were given
    source = replayed["source"]
    for number, name in reversed(list(enumerate(batch_names, 1))):  # export-12 before export-1
        source = pc.replace_substring(source, f"export-{number}:", f"{name}:")
    replayed = replayed.set_column(replayed.column_names.index("source"), "source", source)
    # a record delivered three times has two step-0 rows per field (one per copy replaced): numbered by their
    # source, so that each row meets its own
    logged, replayed = _numbered_copies(logged, key), _numbered_copies(replayed, key)
    joined = logged.join(
        replayed, keys=[*key, "copy"], join_type="full outer", left_suffix="", right_suffix="_replayed"
    ).sort_by([(name, "ascending") for name in [*key, "copy"]])
    unlogged = joined.filter(pc.is_null(joined["rule"]))
    findings.add_each(
        f"{where} rows",
        findings.first(unlogged.select(key)).to_pylist(),
        lambda row: f"{where}: step {row['step']} of record {row['processid']} ({row['field']}) is missing",
        unlogged.num_rows,
    )
    invented = joined.filter(pc.is_null(joined["rule_replayed"]))
    findings.add_each(
        f"{where} rows",
        findings.first(invented.select(key)).to_pylist(),
        lambda row: (
            f"{where}: step {row['step']} of record {row['processid']} ({row['field']}) is no change the sources give"
        ),
        invented.num_rows,
    )
    both = joined.filter(pc.and_(pc.is_valid(joined["rule"]), pc.is_valid(joined["rule_replayed"])))
    ids = pc.binary_join_element_wise(
        both["processid"], pc.cast(both["step"], pa.string()), " step ", null_handling="replace"
    )
    for column in compared:
        got, want = both[column].combine_chunks(), both[f"{column}_replayed"].combine_chunks()
        _compare(where, column, ids, want, got, findings, "the sources")


def _numbered_copies(table: pa.Table, key: list[str]) -> pa.Table:
    """``table`` sorted by ``key``, then source and old value, with ``copy``: 0, 1, ... among rows of one key."""
    import pandas as pd

    table = table.sort_by([(name, "ascending") for name in [*key, "source", "old"]])
    frame = pd.DataFrame({name: table[name].to_numpy(zero_copy_only=False) for name in key})
    copies = frame.groupby(key, sort=False, dropna=False).cumcount().to_numpy(np.int64)
    return table.append_column("copy", pa.array(copies))


# changes.csv field -> the release column it becomes (curation's names; the others are the same or not released)
CHANGED_FIELD_COLUMN = {"bin_uri": "dna_bin", "lat": "coord-lat", "lon": "coord-lon"}


def check_changes(root: Path, csv: pa.Table, findings: Findings) -> None:
    """``changes.csv``: the last change logged to a released record's field left the value the release holds (an
    edited ``new``, or a change dropped from the log, passed), and a record the log excludes is not released."""
    path, where = root / CHANGES.path, f"{ROOT}/{CHANGES.path}"
    if not path.exists():
        return
    text = ("processid", "field", "new")
    options = pacsv.ConvertOptions(
        column_types={"step": pa.int64(), **dict.fromkeys(text, pa.large_string())},
        include_columns=["step", *text],
        null_values=[""],  # as the release CSV is read: empty is missing
        strings_can_be_null=True,
        quoted_strings_can_be_null=True,
    )
    log = pacsv.read_csv(path, convert_options=options).sort_by("step")  # stable: a step's rows keep their order
    # by release column: a redelivery logs the BIN as bin_uri (ingest's name), curation as dna_bin
    column = log["field"]
    for field, released_as in CHANGED_FIELD_COLUMN.items():
        column = pc.if_else(pc.equal(column, field), pa.scalar(released_as, pa.large_string()), column)
    log = log.append_column("column", column).append_column("order", pa.array(np.arange(log.num_rows)))
    last = log.group_by(["processid", "column"], use_threads=False).aggregate([("order", "max")])
    log = log.take(last["order_max"]).sort_by([("processid", "ascending"), ("column", "ascending")])
    released = csv["processid"].combine_chunks().cast(pa.large_string())
    rows = pc.index_in(log["processid"], value_set=released)
    log = log.filter(pc.is_valid(rows)).append_column("row", rows.filter(pc.is_valid(rows)))
    excluded = log.filter(pc.and_(pc.equal(log["field"], "record"), pc.equal(log["new"], "excluded")))
    findings.add_each(
        f"{where} records",
        excluded["processid"].to_pylist(),
        lambda pid: f"{where}: record {pid} is excluded by the log and released",
    )
    for column in pc.unique(log["column"]).to_pylist():
        if column not in csv.schema.names or column == "processid":
            continue  # the raw sequence, the marker, an exclusion: not a release column
        part = log.filter(pc.equal(log["column"], column))
        held, logged = csv[column].take(part["row"]).combine_chunks(), part["new"].combine_chunks()
        if column in REPLAYED_NUMBERS:
            held, logged = _numeric_text(held), pc.cast(logged, pa.float64())
        _compare(where, column, part["processid"].combine_chunks(), held, logged, findings, "the csv holds")


def _read_barcode_qc(path: Path) -> pa.Table:
    """``barcode_qc.csv`` with the types the barcode stage wrote it with; text never missing (empty is empty)."""
    from bioscan_rebuild.metadata.barcodes import QC_SCHEMA

    options = pacsv.ConvertOptions(column_types={field.name: field.type for field in QC_SCHEMA})
    return pacsv.read_csv(path, convert_options=options)


def check_barcode_qc(root: Path, csv: pa.Table, findings: Findings) -> None:
    """``barcode_qc.csv``: one row per released record, each saying its barcode passed (a record whose barcode
    failed is rejected), with the length and ``barcode_key`` of the released ``dna_barcode``; the Parquet copy
    holds the same. (``--sources`` checks every field against the barcode stage replayed.)"""
    path, where = root / BARCODE_QC.path, f"{ROOT}/{BARCODE_QC.path}"
    if not path.exists():
        return
    qc = _read_barcode_qc(path)
    _check_parquet_copy(root, BARCODE_QC_PARQUET.path, qc, findings)
    repeated = [pid for pid, _ in repeated_values(qc["processid"])]
    findings.add_each(f"{where} records", repeated, lambda pid: f"{where}: record {pid} has more than one row")
    ids, held = csv["processid"].combine_chunks().cast(pa.string()), qc["processid"].combine_chunks()
    if set(ids.to_pylist()) != set(held.to_pylist()):
        _record_sets(where, ids, held, findings)
        return
    ordered = qc.take(pc.index_in(ids, value_set=held))
    barcodes = csv["dna_barcode"].combine_chunks()
    ok = pa.array(["ok"] * len(ids), pa.string())
    _compare(where, "barcode_status", ids, ok, ordered["barcode_status"], findings, "released records have")
    length = pc.cast(pc.utf8_length(barcodes), pa.int64())
    _compare(where, "length", ids, length, ordered["length"], findings, "its dna_barcode has")
    key = barcode_digest(barcodes).cast(pa.string())
    _compare(
        where, "barcode_key", ids, key, ordered["barcode_key"].combine_chunks(), findings, "md5 of its dna_barcode"
    )


def _check_replayed_barcode_qc(root: Path, replayed: pa.Table, findings: Findings) -> None:
    """Every field of ``barcode_qc.csv`` against the barcode stage replayed from the sources (the raw sequence's
    gaps, N runs, flags, ...), for the records both hold (``check_barcode_qc`` names the others)."""
    path, where = root / BARCODE_QC.path, f"{ROOT}/{BARCODE_QC.path}"
    if not path.exists():
        return
    qc = _read_barcode_qc(path)
    rows = pc.index_in(qc["processid"], value_set=replayed["processid"].combine_chunks())
    both = pc.is_valid(rows)
    qc, expected = qc.filter(both), replayed.take(rows.filter(both))
    ids = qc["processid"].combine_chunks()
    for column in qc.column_names[1:]:
        want, got = expected[column].combine_chunks(), qc[column].combine_chunks()
        if pa.types.is_string(want.type):  # the CSV writes a missing text as empty
            want, got = pc.fill_null(want, ""), pc.fill_null(got, "")
        _compare(where, column, ids, want, got, findings, "the sources")


def _image_paths_as_written(path: Path, csv: pa.Table, package: str | None, manifest: dict, where: str, findings):
    """Each row's image path is its record's file of the release's image package (``image_relpath`` of the csv's
    split and chunk: one of another package, or another record's, passed), and an image is missing only where
    the record has no released file. In Arrow: the file's paths at once, not its blobs."""
    held = pq.read_table(path, columns=["processid", "split", "image.path"])
    rels = held["path"] if "path" in held.column_names else pc.struct_field(held["image"], "path")
    text = pa.schema([("processid", pa.string()), ("chunk", pa.string())])
    chunks = csv.select(["processid", "chunk"]).cast(text)
    rows = pa.table({"processid": held["processid"].cast(pa.string()), "split": held["split"], "rel": rels})
    rows = rows.join(chunks, keys="processid", join_type="left outer").sort_by("processid")
    no_chunk = pc.fill_null(pc.equal(rows["chunk"], ""), True)  # image_relpath: a split without chunks
    rows = rows.set_column(
        rows.column_names.index("chunk"), "chunk", pc.if_else(no_chunk, pa.scalar(None, pa.string()), rows["chunk"])
    )
    packages = [package] if package else list(IMAGE_PACKAGES)
    named = np.zeros(rows.num_rows, bool)
    for each in packages:
        name = pc.binary_join_element_wise(rows["processid"], ".jpg", "")
        expected = pc.binary_join_element_wise(
            IMAGES_DIR, each, rows["split"], rows["chunk"], name, "/", null_handling="skip"
        )
        named |= pc.fill_null(pc.equal(rows["rel"], expected), False).to_numpy(zero_copy_only=False)
    wrong = rows.filter(pc.and_(pc.is_valid(rows["rel"]), pa.array(~named)))
    findings.add_each(
        "images parquet",
        findings.first(wrong.select(["processid", "rel"])).to_pylist(),
        lambda row: f"{where}: record {row['processid']}: its image names {row['rel']!r}, not its file",
        wrong.num_rows,
    )
    for pid, split, chunk in zip(
        *(rows.filter(pc.is_null(rows["rel"]))[c].to_pylist() for c in ("processid", "split", "chunk"))
    ):
        released = [each for each in packages if f"{ROOT}/{image_relpath(each, split, chunk, pid)}" in manifest]
        if released:
            findings.add(
                "images parquet", f"{where}: record {pid}: no image, though its {released[0]} file is released"
            )


def check_images_parquet(
    root: Path,
    manifest: dict,
    config: dict | None,
    findings: Findings,
    csv: pa.Table | None = None,
    batch_rows: int = 512,
) -> None:
    """Each image in the images Parquet is the bytes of the released file it names (by the manifest's sha256,
    which check 1 holds the files to), and names its own record's file. Read a batch at a time."""
    import hashlib

    folder = root / IMAGES_PARQUET_DIR
    if not folder.exists():
        return
    package = _configured(config, "export", "image_package")
    for path in sorted(folder.glob("*.parquet")):
        where = f"{ROOT}/{IMAGES_PARQUET_DIR}/{path.name}"
        if csv is not None:
            _guarded(findings, where, _image_paths_as_written, path, csv, package, manifest, where, findings)
        try:
            batches = pq.ParquetFile(path).iter_batches(batch_size=batch_rows, columns=["processid", "image"])
            for batch in batches:
                images = batch.column("image")
                blobs = pc.struct_field(images, "bytes").to_pylist()
                for pid, rel, blob in zip(
                    batch.column("processid").to_pylist(), pc.struct_field(images, "path").to_pylist(), blobs
                ):
                    if blob is None:
                        continue
                    if not rel or not rel.startswith(f"{IMAGES_DIR}/") or not rel.endswith(f"/{pid}.jpg"):
                        if csv is None:  # else named, exactly, by _image_paths_as_written
                            findings.add(
                                "images parquet", f"{where}: record {pid}: its image names {rel!r}, not its file"
                            )
                        continue
                    listed = manifest.get(f"{ROOT}/{rel}")
                    if listed is None:
                        findings.add("images parquet", f"{where}: record {pid}: no released file {rel}")
                    elif hashlib.sha256(blob).hexdigest() != listed["sha256"]:
                        findings.add("images parquet", f"{where}: record {pid}: image bytes differ from {rel}")
        except (OSError, KeyError, pa.ArrowException) as error:
            findings.add("unreadable", f"{where}: not the images Parquet the release writes ({error})")


def _against_csv(where: str, held: pa.Table, csv: pa.Table, findings: Findings, kind: str) -> pa.Table:
    """``held`` (processid, split, ...) against the released records, in Arrow (millions of rows): each record
    once, each row a released record's, with its split. Returns ``held`` joined to the csv's split (``csv_split``)."""
    repeated = [processid for processid, _ in repeated_values(held["processid"])]
    findings.add_each(kind, repeated, lambda pid: f"{where}: record {pid} is there more than once")
    text = pa.schema([("processid", pa.string()), ("csv_split", pa.string())])
    released = csv.select(["processid", "split"]).rename_columns(text.names).cast(text)
    held = held.cast(pa.schema([(name, pa.string()) for name in held.schema.names]))
    # a hash join's rows come in no set order: sorted, the findings shown are the same every run
    joined = held.join(released, keys="processid", join_type="full outer").sort_by("processid")
    missing = joined.filter(pc.is_null(joined["split"]))["processid"]
    shown = findings.first(missing).to_pylist()
    findings.add_each(kind, shown, lambda pid: f"{where}: record {pid} of the csv is missing", len(missing))
    extra = joined.filter(pc.is_null(joined["csv_split"]))["processid"]
    findings.add_each(
        kind, findings.first(extra).to_pylist(), lambda pid: f"{where}: record {pid} is not in the csv", len(extra)
    )
    moved = joined.filter(pc.fill_null(pc.not_equal(joined["split"], joined["csv_split"]), False))
    shown = findings.first(moved.select(["processid", "split", "csv_split"])).to_pylist()
    findings.add_each(
        kind,
        shown,
        lambda row: f"{where}: record {row['processid']} is in {row['split']}, the csv says {row['csv_split']}",
        moved.num_rows,
    )
    return joined


def check_images_parquet_splits(root: Path, csv: pa.Table, findings: Findings) -> None:
    """The images Parquet holds each released record once, in its split's file (Hugging Face loads a file as the
    split its name says: a row moved, dropped or relabelled went unseen)."""
    folder = root / IMAGES_PARQUET_DIR
    if not folder.exists():
        return
    where = f"{ROOT}/{IMAGES_PARQUET_DIR}"
    parts = []
    for path in sorted(folder.glob("*.parquet")):
        table = pq.read_table(path, columns=["processid", "split"])
        _check_file_splits(where, path, table["split"], findings)
        parts.append(table.cast(pa.schema([("processid", pa.string()), ("split", pa.string())])))
    held = (
        pa.concat_tables(parts)
        if parts
        else pa.table({"processid": pa.array([], pa.string()), "split": pa.array([], pa.string())})
    )
    _against_csv(where, held, csv, findings, "images parquet records")


def check_split_history(root: Path, csv: pa.Table, config: dict | None, findings: Findings) -> None:
    """The split history (the next version freezes from it) holds every released record once, with its split,
    this release's version and its barcode's key (the next version pins that barcode while the record is gone)."""
    path = root / SPLIT_HISTORY.path
    if not path.exists():
        return
    types = {name: pa.string() for name in ("processid", "split", "last_version", "barcode_key", HELD_KEYS)}
    history = pacsv.read_csv(
        path, convert_options=pacsv.ConvertOptions(column_types=types, null_values=[""], strings_can_be_null=True)
    )
    where = f"{ROOT}/{SPLIT_HISTORY.path}"
    version = _configured(config, "export", "version")
    released = pc.is_in(history["processid"], value_set=csv["processid"].combine_chunks().cast(pa.string()))
    # records of earlier versions that this one left out stay in the history: only the released ones are checked
    held = history.filter(released)
    joined = _against_csv(where, held.select(["processid", "split", "last_version"]), csv, findings, "split history")
    if version is not None:
        stale = joined.filter(
            pc.and_(
                pc.is_valid(joined["split"]), pc.fill_null(pc.not_equal(joined["last_version"], str(version)), True)
            )
        )
        findings.add_each(
            "split history",
            findings.first(stale.select(["processid", "last_version"])).to_pylist(),
            lambda row: f"{where}: record {row['processid']} last released in {row['last_version']}, this is {version}",
            stale.num_rows,
        )
    if "barcode_key" in history.column_names and "dna_barcode" in csv.column_names:
        keys = pa.table(
            {
                "processid": csv["processid"].cast(pa.string()),
                "csv_key": barcode_digest(csv["dna_barcode"]),  # a slice at a time: the column stays Arrow
            }
        )
        paired = held.select(["processid", "barcode_key"]).join(keys, keys="processid").sort_by("processid")
        differ = paired.filter(
            pc.invert(
                pc.or_(
                    pc.fill_null(pc.equal(paired["barcode_key"], paired["csv_key"]), False),
                    pc.and_(pc.is_null(paired["barcode_key"]), pc.is_null(paired["csv_key"])),
                )
            )
        )
        findings.add_each(
            "split history",
            findings.first(differ["processid"]).to_pylist(),
            lambda pid: f"{where}: record {pid}'s barcode_key is not its dna_barcode's",
            differ.num_rows,
        )
    if HELD_KEYS in history.column_names:
        # keys of barcodes a record no longer carries: md5s, sorted, one space apart, never its own key now
        # (few records have any: read one by one)
        cells = history[HELD_KEYS]
        wellformed = pc.match_substring_regex(cells, r"^[0-9a-f]{32}( [0-9a-f]{32})*$")
        keys = history["barcode_key"] if "barcode_key" in history.column_names else pa.nulls(len(cells), pa.string())
        bad = []
        for i in np.flatnonzero(pc.is_valid(cells).to_numpy(zero_copy_only=False)).tolist():
            tokens = cells[i].as_py().split(" ")
            if not wellformed[i].as_py() or tokens != sorted(set(tokens)) or keys[i].as_py() in tokens:
                bad.append(history["processid"][i].as_py())
        findings.add_each(
            "split history",
            findings.first(bad),
            lambda pid: f"{where}: record {pid}'s {HELD_KEYS} are not sorted md5 keys apart from its barcode_key",
            len(bad),
        )


def check_split_summary(root: Path, csv: pa.Table, findings: Findings) -> None:
    """``split_summary.csv`` (samples, distinct strip barcodes and distinct species per split, and their total)
    counted again from the released records: the table a reader quotes for the splits' sizes was never read."""
    import pandas as pd

    path, where = root / SPLIT_SUMMARY.path, f"{ROOT}/{SPLIT_SUMMARY.path}"
    if not path.exists():
        return
    counts = ["samples", "barcodes", "species"]
    try:
        stated = pd.read_csv(path, dtype={"split": str}, keep_default_na=False)
        stated = stated.set_index("split", verify_integrity=True)[counts]
    except (ValueError, KeyError) as error:
        findings.add("unreadable", f"{where}: not the split summary the release writes ({error})")
        return
    records = csv.select(["split", "dna_barcode", "species"]).to_pandas(types_mapper=pd.ArrowDtype)
    counted = split_summary(records).set_index("split")
    for split in [*counted.index, *(name for name in stated.index if name not in counted.index)]:
        if split not in stated.index:
            findings.add(f"{where} counts", f"{where}: no row for {split}")
        elif split not in counted.index:
            findings.add(f"{where} counts", f"{where}: a row for {split!r}, which is no split of the release")
        else:
            for count in counts:
                said, held = stated.at[split, count], int(counted.at[split, count])
                if str(said) != str(held):
                    findings.add(f"{where} counts", f"{where}: {split} {count} {said}, the csv holds {held}")


def check_version(
    root: Path, config: dict | None, findings: Findings, expected: ExportOptions | None = None
) -> ExportOptions | None:
    """Every file that names the release names the same one, under the same licence: ``croissant.json`` (name,
    version, license), the HDF5 file's attributes, each JSON-LD file's release IRI and the card's title. Against
    ``expected`` (the build's config, with ``--sources``); else against what most of them say, the release's
    ``metadata/config.json`` among them (the first file used to be the truth: one edited croissant.json had every
    untouched file blamed). Returns the options the release was built with, as far as its files tell (the config's,
    with the name, version and licence found here), for the self-description to be made again; None when the
    files do not say."""
    from bioscan_rebuild.export.provenance import release_id

    named: list[tuple[str, str | None, str | None, str | None]] = []  # (file, name, version, licence); None: silent
    croissant = root / CROISSANT_PATH
    if croissant.exists():
        doc = _json(croissant, findings)
        named.append((f"{ROOT}/{CROISSANT_PATH}", doc.get("name"), doc.get("version"), doc.get("license")))
    if (root / HDF5_PATH).exists():
        import h5py

        try:
            with h5py.File(root / HDF5_PATH, "r") as h5:
                said = [h5.attrs.get(key) for key in ("name", "version", "licence")]
            named.append((f"{ROOT}/{HDF5_PATH}", *(None if v is None else str(v) for v in said)))
        except OSError as error:
            findings.add("unreadable", f"{ROOT}/{HDF5_PATH}: cannot be read ({error})")
    card = root.parent / "README.md"
    if card.exists():
        title = re.search(r"^# (.*) \(version (.*)\)$", card.read_text(), re.MULTILINE)
        named.append(("README.md", *(title.groups() if title else (None, None)), None))  # its licence: remade
    if config is not None:
        named.append(
            (
                f"{ROOT}/{CONFIG.path}",
                *(_configured(config, "export", key) for key in ("name", "version", "licence")),
            )
        )
    if expected is None:
        if not named:
            return None
        agreed = [_most_said([entry[i] for entry in named]) for i in (1, 2, 3)]
        source = "most of the release's files"
    else:
        agreed, source = [expected.name, expected.version, expected.licence], "the build's config"
    for where, *said in named:
        for what, value, wanted in zip(("name", "version", "licence"), said, agreed):
            if value is not None and wanted is not None and str(value) != wanted:
                findings.add("version", f"{where}: {what} {value!r}, {source} says {wanted!r}")
    expected_name, expected_version, expected_licence = agreed
    if expected_name is None or expected_version is None:
        return None
    iri = release_id({"export": {"name": expected_name, "version": expected_version}}) + "/"
    for path in sorted((root / JSONLD_DIR).glob("*.jsonld")):
        try:
            release, _ = _jsonld_own_prefixes(path)
        except (OSError, ValueError) as error:
            findings.add("unreadable", f"{ROOT}/{JSONLD_DIR}/{path.name}: not the JSON-LD the release writes ({error})")
            continue
        if release != iri:
            findings.add("version", f"{ROOT}/{JSONLD_DIR}/{path.name}: names the release {release!r}, not {iri!r}")
    base = expected or _configured_options(config)
    changed = {"name": expected_name, "version": expected_version}
    if expected_licence is not None:
        changed["licence"] = expected_licence
    return dataclasses.replace(base, **changed)


def _configured_options(config: dict | None) -> ExportOptions:
    """The export options ``metadata/config.json`` gives (the defaults where it gives none or ones no build
    writes: those are findings of their own)."""
    export = (config or {}).get("export")
    known = {field.name for field in dataclasses.fields(ExportOptions)}
    try:
        return ExportOptions.from_dict({k: v for k, v in export.items() if k in known})
    except (AttributeError, InputError, TypeError, ValueError):
        return ExportOptions()


def _most_said(values: list) -> str | None:
    """The value most files give (None ignored; on a tie, the one given first)."""
    said = [str(v) for v in values if v is not None]
    return max(dict.fromkeys(said), key=said.count) if said else None


def check_croissant(root: Path, manifest: dict, findings: Findings) -> None:
    """Every file ``croissant.json`` lists is released with the sha256 it gives (the manifest's, which check 1
    holds the files to): a file deleted with the manifest rewritten would still be promised to Croissant users."""
    path = root / CROISSANT_PATH
    if not path.exists():
        return
    where = f"{ROOT}/{CROISSANT_PATH}"
    doc = _json(path, findings)
    for node in doc.get("distribution", []):
        if node.get("@type") != "cr:FileObject" or "contentUrl" not in node:
            continue
        # the path, not its target: a release whose files are links (a hub snapshot, git-annex) is the same release
        rel = Path(os.path.normpath(path.parent / node["contentUrl"]))
        try:
            key = rel.relative_to(os.path.normpath(root.parent)).as_posix()
        except ValueError:
            findings.add("croissant", f"{where}: {node['@id']} points outside the release: {node['contentUrl']}")
            continue
        listed = manifest.get(key)
        if listed is None:
            findings.add("croissant", f"{where}: {node['@id']}: {node['contentUrl']} is not released")
        elif "sha256" in node and node["sha256"] != listed["sha256"]:
            findings.add("croissant", f"{where}: {node['@id']}: sha256 differs from the released {key}")


# 4. Sources ----------------------------------------------------------------------------------------------------


def _refuse_another_folder(config: dict, config_path: Path) -> None:
    """The config's relative paths are the workflow folder's: run from elsewhere, every source read as missing."""
    named = [batch.get(key) for batch in config.get("batches", []) for key in ("export", "images") if batch.get(key)]
    relative = [path for path in named if not Path(path).is_absolute()]
    workflow = config_path.resolve().parent.parent  # config/config.yaml in the folder the workflow ran in
    if relative and not any(Path(p).exists() for p in relative) and any((workflow / p).exists() for p in relative):
        raise InputError(
            f"{config_path}: its relative paths ({relative[0]}, ...) are read from the folder the workflow ran in, "
            f"not from here: run the audit from {workflow}"
        )


def check_sources(
    config_path: Path, root: Path, csv: pa.Table, accounting: dict, release_config: dict | None, findings: Findings
) -> ExportOptions | None:
    """Check 4; returns ``check_version``'s options (the build's config's)."""

    import yaml

    config = yaml.safe_load(config_path.read_text())
    _refuse_another_folder(config, config_path)
    # one file however its path is spelled, by its path alone (where a symlink points now is no evidence); a
    # relative path is the workflow folder's, where the audit runs (_refuse_another_folder)
    read = [item for item in accounting.get("batches", {}).values() if "export" in item]
    listed = {os.path.abspath(item["export"]): item["export_sha256"] for item in read}
    spelled = {os.path.abspath(item["export"]): item["export"] for item in read}  # as the build (and lineage) named it
    exports = []
    batches = config.get("batches", [])
    if batches and all("delivered" in batch for batch in batches):  # delivery order, as the workflow reads them
        batches = sorted(batches, key=lambda batch: str(batch["delivered"]))  # stable: ties keep config order
    for batch in batches:
        export = batch.get("export")
        if not export:
            continue
        exports.append((batch["name"], spelled.get(os.path.abspath(export), export)))
        if not Path(export).exists():
            findings.add("source", f"{export}: the source export is missing")
        elif os.path.abspath(export) not in listed:  # a batch of another config (a later version's delivery)
            findings.add("source", f"{export}: not an export the build read (accounting.json): is it its config?")
        elif listed[os.path.abspath(export)] != file_sha256(export):
            findings.add("source", f"{export}: sha256 differs from the one the build read (accounting.json)")
    built_by = release_software_version(root)
    built_by_another = built_by is not None and built_by != __version__
    _check_taxonomy_tables(config, release_config, root, findings, built_by_another)
    export = {k: v for k, v in (config.get("export") or {}).items() if k != "formats"}  # formats: not an option
    described = check_version(root, release_config, findings, ExportOptions.from_dict(export))
    folders = {batch["name"]: batch["images"] for batch in config.get("batches", []) if batch.get("images")}
    photo_columns = ["processid", "image_batch", "image_path", "image_sha256"]
    options = pacsv.ConvertOptions(
        column_types=dict.fromkeys(photo_columns, pa.string()),
        include_columns=photo_columns,
        include_missing_columns=True,
        null_values=[""],  # a record without a photo (ingest.require_images false) has none: not a photo named ""
        strings_can_be_null=True,
    )
    lineage = pacsv.read_csv(root / RECORDS_LINEAGE.path, convert_options=options)
    default = IngestParams.from_dict(config.get("ingest") or {}).image_name_pattern
    patterns = {  # each batch's own, as ingest listed its photos (name_pattern_of in the rules)
        batch["name"]: re.compile(batch.get("image_name_pattern") or default, re.IGNORECASE)
        for batch in config.get("batches", [])
    }

    if lineage["image_sha256"].null_count < lineage.num_rows:
        pids, batches, rels, shas = (
            lineage[c].to_pylist() for c in ("processid", "image_batch", "image_path", "image_sha256")
        )
        named = []
        for batch, rel in zip(batches, rels):
            match = patterns[batch].match(PurePosixPath(rel).name) if batch in patterns and rel else None
            named.append(match.group("processid") if match else None)
        # keys, spelled as ingest spells ids, of whole columns at once (a call per row: ~0.3 ms, an hour at 5M)
        wrong_name = processid_keys(named) != processid_keys(pids)
        for pid, batch, rel, sha, wrong in zip(pids, batches, rels, shas, wrong_name):
            if batch is None:
                continue
            if wrong:
                findings.add("source photo", f"{rel} ({batch}): the file name does not name {pid}, its record")
            photo = Path(folders.get(batch, "")) / rel
            if PurePosixPath(rel).is_absolute() or ".." in PurePosixPath(rel).parts:
                # ingest lists a batch's photos by their paths inside its folder: one outside it is no source
                findings.add("source photo", f"{rel} ({batch}): the photo of {pid} lies outside the batch's folder")
            elif not photo.is_file():
                findings.add("source photo", f"{photo}: the source photo of {pid} is missing")
            elif file_sha256(photo) != sha:
                findings.add("source photo", f"{photo}: sha256 differs from the photo the build read for {pid}")
    if findings.shown.get("source"):
        return described  # a replay of other exports than the build read would only repeat this
    # another version's curation may differ from this one's: what the replay finds is shown, as notes
    replay_findings = Findings(findings.limit) if built_by_another else findings
    _replay_and_compare(config, exports, root, csv, replay_findings)
    if built_by_another:
        findings.replay_differences = len(replay_findings)
        findings.notes.append(
            f"{ROOT}/{PROVENANCE.path}: built by bioscan-rebuild {built_by}, this audit is {__version__}: the "
            f"metadata stages replayed by this version differ from the release in {len(replay_findings)} places"
            + (
                " (below; a change of the code or of the release: audit with the version that built it)"
                if len(replay_findings)
                else ""
            )
        )
        findings.notes.extend(replay_findings.report())
    return described


def _check_taxonomy_tables(
    config: dict, release_config: dict | None, root: Path, findings: Findings, built_by_another: bool
) -> None:
    """The typo and corrections tables the config names now (``taxonomy.fixes``, ``taxonomy.corrections``) must be
    the ones the curation read: named alike in the build's config (``metadata/config.json``), and the same bytes
    as ``provenance.jsonld`` records its job's files. A user report added since the build made the replay blame
    the release (a change the sources give that the release lacks). A release another version built is not held
    to this version's shipped tables (its replay's differences are notes)."""
    from bioscan_rebuild.metadata.taxonomy.tables import shipped_table

    built = None if release_config is None else release_config.get("taxonomy")
    # a section hand-edited into no object is config.json's own finding (its checksum), not a table's
    built = built if isinstance(built, dict) or release_config is None else {}
    taxonomy = config.get("taxonomy") or {}

    def spelled(value):  # one file however its path is spelled (the audit runs in the workflow's folder)
        return value if value in (None, "shipped") else os.path.abspath(str(value))

    try:
        graph = json.loads((root / PROVENANCE.path).read_text())["@graph"]
        nodes = {node["@id"]: node for node in graph if isinstance(node, dict) and "@id" in node}
        used = nodes["build:jobs/curate_taxonomy"].get("used", [])
        read = {nodes[name].get("sha256") for name in ([used] if isinstance(used, str) else used) if name in nodes}
    except (OSError, ValueError, KeyError, TypeError):
        read = None
    for key, name in (("fixes", "taxonomy_fixes.tsv"), ("corrections", "corrections.tsv")):
        value = taxonomy.get(key, "shipped")
        if built is not None and key in built and spelled(built[key]) != spelled(value):
            findings.add(
                "source",
                f"taxonomy.{key}: the config names {value!r}, the build's ({ROOT}/{CONFIG.path}) {built[key]!r}: is "
                "it the release's config?",
            )
            continue
        if value is None or (value == "shipped" and built_by_another):
            continue
        path = Path(shipped_table(name) if value == "shipped" else value)
        if not path.is_file():
            findings.add("source", f"taxonomy.{key} {path}: missing")
        elif read is None:
            findings.notes.append(f"{ROOT}/{PROVENANCE.path}: names no curation job: taxonomy.{key} was not checked")
        elif file_sha256(path) not in read:
            findings.add(
                "source",
                f"taxonomy.{key} {path}: not the table the build read (provenance.jsonld: the curation's files); "
                "audit with the table as it was, or build again",
            )


def _replay_and_compare(config: dict, exports, root: Path, csv: pa.Table, findings: Findings) -> None:
    """The metadata stages replayed from the raw exports (``replay_metadata``), compared with the release."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        replayed, barcodes, origins, changes = replay_metadata(config, exports, root, Path(tmp))
    _check_replayed_lineage(root, origins, findings)
    _check_replayed_barcode_qc(root, barcodes, findings)
    _check_replayed_changes(root, changes, [name for name, _ in exports], findings)
    ids = csv["processid"].combine_chunks()
    got = replayed.set_index("processid").reindex(ids.to_pylist())
    by_record = barcodes.select(["processid", "dna_barcode"]).to_pandas().set_index("processid")["dna_barcode"]
    got["dna_barcode"] = by_record.reindex(ids.to_pylist()).to_numpy()
    got = got.rename(columns={"lat": "coord-lat", "lon": "coord-lon"})
    for field in (*REPLAYED, *REPLAYED_NUMBERS):
        if field in csv.schema.names and field in got.columns:
            values = pa.array(got[field].astype(object).where(got[field].notna(), None).tolist())
            expected = csv[field].combine_chunks()
            if field in REPLAYED_NUMBERS:
                expected, values = _numeric_text(expected), _numeric_text(values.cast(pa.float64()))
            else:
                values = values.cast(pa.string())
            _compare("replay of the sources", field, ids, expected, values, findings)


# lineage column -> the ingested records' column it copies (``export/side_files.py``)
REPLAYED_LINEAGE = {
    "source_file": "source_file",
    "source_layout": "source_layout",
    "source_line": "source_line",
    "raw_nucleotides": "nucleotides",
    "marker_code": "marker_code",
}


def _check_replayed_lineage(root: Path, origins: pa.Table, findings: Findings) -> None:
    """Each released record's lineage row names the export row the replayed ingest found it on (file, layout,
    line), its raw sequence and its marker: a line number moved, or two records' rows swapped, is found."""
    where = f"{ROOT}/{RECORDS_LINEAGE.path}"
    try:
        header = csv_header(root / RECORDS_LINEAGE.path)
    except (OSError, ValueError, pa.ArrowInvalid) as error:
        findings.add("unreadable", f"{where}: cannot be read ({error})")
        return
    for column in ("processid", *REPLAYED_LINEAGE):
        if column not in header:
            findings.add("lineage source", f"{where}: no column {column} (the build writes one)")
    columns = [column for column in ("processid", *REPLAYED_LINEAGE) if column in header]
    if "processid" not in columns:
        return
    options = pacsv.ConvertOptions(
        column_types={**dict.fromkeys(columns, pa.large_string()), "source_line": pa.int64()},
        include_columns=columns,
        null_values=[""],  # only an empty field: a processid "NA" is a processid
        strings_can_be_null=True,
    )
    try:
        lineage = pacsv.read_csv(root / RECORDS_LINEAGE.path, convert_options=options)
    except (OSError, pa.ArrowInvalid) as error:
        findings.add("unreadable", f"{where}: cannot be read ({error})")
        return
    ids = lineage["processid"].combine_chunks()
    rows = pc.index_in(ids, value_set=origins["processid"].combine_chunks().cast(pa.large_string()))
    known = pc.is_valid(rows)
    for pid in ids.filter(pc.invert(known)).to_pylist():
        findings.add("lineage source", f"{where}: record {pid} is on no row of the sources")
    rows, ids = rows.filter(known), ids.filter(known)
    for column, source in REPLAYED_LINEAGE.items():
        if column not in columns:
            continue
        expected = origins[source].take(rows).combine_chunks()
        got = lineage[column].filter(known).combine_chunks()
        if column == "source_line":
            expected, got = expected.cast(pa.int64()), got.cast(pa.int64())
        _compare(where, column, ids, _large(expected), _large(got), findings, truth="the sources")


def replay_metadata(config: dict, exports, root: Path, workdir: Path):
    """The metadata stages again, from the raw exports: ingest (the config's markers, missing values and duplicate
    policy, batches in delivery order) restricted to the records the build ingested (released, or rejected by the
    metadata or split stage), barcode cleaning and curation with the config's parameters and tables. Returns the
    curated table, the barcode stage's table (processid, dna_barcode and the QC columns; Arrow), the replayed
    records' export rows and the changes curation logged (Arrow)."""
    import pandas as pd

    from bioscan_rebuild.core.params import BarcodeParams, IngestParams, TaxonomyParams
    from bioscan_rebuild.core.schemas import INGESTED_SCHEMA
    from bioscan_rebuild.ingest.local import ingest_local
    from bioscan_rebuild.metadata.stage import clean_shard, curate_tables
    from bioscan_rebuild.metadata.taxonomy.tables import shipped_table

    released = pacsv.read_csv(
        root / CSV_PATH,
        convert_options=pacsv.ConvertOptions(column_types={"processid": pa.string()}, include_columns=["processid"]),
    )
    rejects = pacsv.read_csv(
        root / "metadata" / "rejects.csv", convert_options=pacsv.ConvertOptions(column_types={"processid": pa.string()})
    ).to_pandas()
    later = rejects[(rejects["kind"] == "record") & rejects["reason"].isin(LATER_REASONS)]["processid"]
    ingested = set(released["processid"].to_pylist()) | set(later)
    settings = config.get("ingest", {})
    params = IngestParams.from_dict(
        {
            **{k: settings[k] for k in ("markers", "missing_values", "duplicate_policy") if k in settings},
            "require_images": False,
        }
    )
    trim_end_n = (config.get("barcodes") or {}).get("trim_end_n", True)
    ingest_local([path for _, path in exports], [], workdir / "ingest", shards=1, params=params, trim_end_n=trim_end_n)
    shard = workdir / "ingest" / "shards" / "shard-000"
    records = pq.read_table(shard / "records.parquet", schema=INGESTED_SCHEMA)
    records = records.filter(pc.is_in(records["processid"], pa.array(sorted(ingested), pa.string())))
    pq.write_table(records, shard / "records.parquet")
    clean_shard(
        shard / "records.parquet", workdir / "barcodes.parquet", BarcodeParams.from_dict(config.get("barcodes", {}))
    )
    taxonomy = config.get("taxonomy", {})
    tables = {}
    for key, name in (("fixes", "taxonomy_fixes.tsv"), ("corrections", "corrections.tsv")):
        value = taxonomy.get(key, "shipped")
        tables[key] = shipped_table(name) if value == "shipped" else value
    curate_tables(
        [shard / "records.parquet"],
        [workdir / "barcodes.parquet"],
        workdir / "metadata",
        taxonomy_params=TaxonomyParams.from_dict(
            {k: v for k, v in taxonomy.items() if k not in ("fixes", "corrections")}
        ),
        fixes_path=tables["fixes"],
        corrections_path=tables["corrections"],
        redelivery_paths=[shard / "redeliveries.parquet"],
    )
    barcodes = pq.read_table(workdir / "barcodes.parquet")
    origins = records.select(["processid", *REPLAYED_LINEAGE.values()])
    changes = pq.read_table(workdir / "metadata" / "changes.parquet")
    return pd.read_parquet(workdir / "metadata" / "curated.parquet"), barcodes, origins, changes


# Reasons of the stages after ingest: these records were ingested, so the replay curates them too.
LATER_REASONS = (
    "no_barcode",
    "invalid_barcode",
    "short_barcode",
    "long_barcode",
    "ambiguous_barcode",
    "excluded",
    "out_of_scope",
    "no_specimen",
    "image_unusable",
)
