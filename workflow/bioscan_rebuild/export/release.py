"""Release assembly: earlier stages' tables -> the release folder (``export.layout``) with its manifest.

:func:`export_release` spools the released rows once (``export.spool``, pass 1), then each chosen format of the
registry (``export.formats``) streams them into its files (pass 2). :func:`build_release` adds what comes
from the other stages: the side files (``export.side_files``) and ``accounting.json``, then ``MANIFEST.json``
(every file's size and sha256), last.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

from bioscan_rebuild.core.errors import InputError
from bioscan_rebuild.core.io import atomic_path, file_sha256, read_json, readable_outputs
from bioscan_rebuild.core.params import ExportOptions
from bioscan_rebuild.core.schemas import STATS_FILES_KEY, STATS_JSON
from bioscan_rebuild.export.accounting import check_released
from bioscan_rebuild.export.card import CARD, CITATION, STATS_DIR, write_card
from bioscan_rebuild.export.diff import previous_version
from bioscan_rebuild.export.formats.base import ExportContext
from bioscan_rebuild.export.formats.registry import FORMATS, select
from bioscan_rebuild.export.layout import (
    ACCOUNTING,
    CONFIG,
    MANIFEST,
    PROVENANCE,
    RELEASE_DIFF_SUMMARY_PATH,
    ROOT,
    ZIP_DIR,
)
from bioscan_rebuild.export.side_files import write_side_files
from bioscan_rebuild.export.spool import spool_shards


def export_release(
    curated_path,
    barcode_paths,
    splits_path,
    outdir,
    *,
    image_paths=None,
    store_root=None,
    side_files: dict | None = None,
    options: ExportOptions | None = None,
    formats=None,
    provenance: dict | None = None,
    manifest: bool = True,
    after_spool=None,
) -> dict:
    """Write the release under ``outdir/bioscan5m`` in ``formats`` (names in ``export.formats.FORMATS``;
    default: all). The image formats need ``image_paths`` and ``store_root``; without them they are skipped.
    ``side_files``: path under the root -> source file, copied in first (croissant describes them).
    Returns a summary."""
    options = options or ExportOptions()
    formats = tuple(FORMATS) if formats is None else tuple(formats)
    chosen = select(formats)
    outdir = Path(outdir)
    root = outdir / ROOT
    for folder in (root, outdir / ZIP_DIR):
        if folder.exists():
            shutil.rmtree(folder)
    root.mkdir(parents=True)
    for rel, source in (side_files or {}).items():
        target = root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
    summary: dict = {"formats": list(formats)}
    with tempfile.TemporaryDirectory(dir=outdir) as tmp:
        spool = Path(tmp)
        counts = spool_shards(curated_path, barcode_paths, splits_path, image_paths, spool)
        summary["records"] = counts
        summary["released"] = sum(counts.values())
        for rel, source in (after_spool(spool) if after_spool else {}).items():  # files made from the rows
            shutil.copyfile(source, root / rel)
        store = Path(store_root) if store_root is not None and image_paths else None
        context = ExportContext(spool, outdir, options, provenance or {}, store)
        for export_format in chosen:
            if export_format.needs_images and store is None:
                continue
            summary.update(export_format.write(context))
    if manifest:
        summary["manifest"] = write_manifest(outdir)
    return summary


def write_manifest(outdir: Path) -> dict:
    outdir = Path(outdir)
    files = sorted(p for p in outdir.rglob("*") if p.is_file() and p.relative_to(outdir).as_posix() != MANIFEST)
    manifest = {
        "files": {
            p.relative_to(outdir).as_posix(): {"bytes": p.stat().st_size, "sha256": file_sha256(p)} for p in files
        }
    }
    (Path(outdir) / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return {"files": len(files)}


def release_inputs(accounting_data: dict) -> list[dict]:
    """The export files the release was built from, once each (two batches may name one export), in batch order."""
    pairs = (
        (item["export"], item["export_sha256"])
        for _, item in sorted(accounting_data.get("batches", {}).items())
        if "export_sha256" in item
    )
    return [{"file": file, "sha256": sha256} for file, sha256 in dict.fromkeys(pairs)]


def build_release(*, outdir, receipt=None, **inputs) -> dict:
    """The whole release step: a new ``outdir``, filled from ``inputs`` (the tables of the other stages, as
    :func:`_build` names them: :func:`export_release`, side files, ``accounting.json``) and ended with
    ``MANIFEST.json``. ``formats``: default all registered.

    It is built in a hidden sibling folder and renamed into place when complete, so a killed or failed run
    never leaves a partial release where the finished one belongs; the next run removes what a killed one left.
    ``receipt``: a file outside ``outdir``, written once the release is in place (:func:`write_receipt`).
    """
    given = outdir
    final = Path(outdir).resolve()  # "." has no name to build beside
    _check_replaceable(final, inputs)
    if receipt is not None and Path(receipt).resolve().is_relative_to(final):
        raise InputError(f"{receipt}: the receipt would lie in --outdir {final}, which the release replaces")
    final.parent.mkdir(parents=True, exist_ok=True)
    with _writer_lock(final):
        _restore_interrupted_swap(final)
        outdir = final.with_name(f".{final.name}.building")
        if outdir.exists():  # a killed run's leftovers (no other writer: the lock is ours)
            shutil.rmtree(outdir)
        try:
            with readable_outputs():
                outdir.mkdir(parents=True)
                summary = _build(outdir, **inputs)
            _swap_into_place(outdir, final)
        except BaseException as error:
            shutil.rmtree(outdir, ignore_errors=True)
            if isinstance(error, OSError) and (
                error.errno == errno.ENOSPC or os.strerror(errno.ENOSPC) in str(error)  # Arrow's: no errno
            ):
                raise OSError(
                    errno.ENOSPC,
                    f"{os.strerror(errno.ENOSPC)} building the release beside {final}: a release is built whole "
                    "next to the previous one, so it needs room for a second copy",
                ) from None
            raise
        if receipt is not None:
            write_receipt(receipt, given, summary, where=final)
    return summary


@contextmanager
def _writer_lock(final: Path):
    """One release writer per folder: a job left running by a Snakemake killed alone (kill -9, the OOM killer)
    and the job of the run after it both built in, deleted and swapped the same hidden folder, and published a
    half-built release with its receipt. The lock is the operating system's (``flock``), so a killed writer holds
    none; its file stays beside the release."""
    import fcntl

    lock = final.with_name(f".{final.name}.lock")
    with open(lock, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise InputError(
                f"{final}: another release job is writing it (it holds {lock}): wait until it ends, or stop it "
                "(the jobs of a Snakemake run killed with kill -9 go on running), then run again"
            ) from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _restore_interrupted_swap(final: Path) -> None:
    """A swap killed between its two renames left no release, the previous one whole and hidden aside: put it
    back. One replaced is renamed once more before it is removed, so a removal cut short is never put back, but
    finished here."""
    old = final.with_name(f".{final.name}.old")
    if not final.exists() and old.is_dir():
        old.rename(final)
    elif old.exists():
        _remove_replaced(final)
    shutil.rmtree(final.with_name(f".{final.name}.replaced"), ignore_errors=True)


def _remove_replaced(final: Path) -> None:
    old, replaced = final.with_name(f".{final.name}.old"), final.with_name(f".{final.name}.replaced")
    shutil.rmtree(replaced, ignore_errors=True)
    if old.exists():
        old.rename(replaced)  # from here on it is no release to put back
        shutil.rmtree(replaced, ignore_errors=True)


def write_receipt(receipt, release, summary: dict, where=None) -> None:
    """The workflow's record of a finished release, outside it: the release job's only declared output. Snakemake
    deletes a job's outputs before it runs and after it fails; when those were the release's own files (its
    manifest, CSV, accounting), a failed release job left the previous, finished release without them. The
    workflow builds the release again when one of those files is gone or the manifest has another size than the
    one written here, or is newer than this file (common.smk, check_release_receipt). ``release``: the folder as
    the receipt names it; ``where``: that folder, where a relative name no longer finds it (``--outdir .``: the
    working folder was the previous release, renamed away)."""
    named, release = Path(release), Path(where if where is not None else release)
    diff = release / ROOT / RELEASE_DIFF_SUMMARY_PATH
    text = {
        "release": named.as_posix(),
        "manifest_sha256": file_sha256(release / MANIFEST),
        "manifest_bytes": (release / MANIFEST).stat().st_size,  # the workflow's check at start-up
        "files": summary["manifest"]["files"],
        "records": summary["records"],
        "released": summary["released"],
        "diff": json.loads(diff.read_text()) if diff.is_file() else None,
    }
    with atomic_path(receipt) as temporary:
        temporary.write_text(json.dumps(text, indent=2, sort_keys=True) + "\n")


def _diff_against(previous, rejects, changes, records, folder: Path):
    """The ``after_spool`` step writing the diff against the previous release (``export.diff``)."""

    def write(spool: Path) -> dict:
        import pandas as pd
        import pyarrow as pa
        import pyarrow.compute as pc
        import pyarrow.parquet as pq

        from bioscan_rebuild.core.io import read_table
        from bioscan_rebuild.core.schemas import INGESTED_SCHEMA, REJECT_SCHEMA, SPLITS
        from bioscan_rebuild.export.diff import IMAGE_COLUMNS, SOURCE_COLUMNS, shortened, write_release_diff
        from bioscan_rebuild.export.spool import SPOOL_SCHEMA, iter_split, release_columns

        parts = [t for split in SPLITS for t in iter_split(spool, split)] or [SPOOL_SCHEMA.empty_table()]
        new = pa.concat_tables([release_columns(t) for t in parts])
        images = pa.concat_tables([shortened(t.select(["processid", *IMAGE_COLUMNS])) for t in parts])
        reject_table = pd.concat([read_table(p, REJECT_SCHEMA).to_pandas() for p in rejects])
        change_table = pq.read_table(changes, columns=["processid", "field", "rule"]).to_pandas()

        def sources(processids) -> pd.DataFrame:  # these records' source rows: a few, from 5M
            wanted = pa.array(processids, pa.string())
            parts = [read_table(p, INGESTED_SCHEMA, columns=list(SOURCE_COLUMNS)) for p in records]
            parts = [t.filter(pc.is_in(t["processid"], value_set=wanted)) for t in parts]
            return pa.concat_tables(parts).to_pandas() if parts else pd.DataFrame(columns=list(SOURCE_COLUMNS))

        written = write_release_diff(previous, new, reject_table, change_table, folder, images, sources)
        return {f"metadata/{name}": path for name, path in written.items()}

    return write


def _input_paths(inputs: dict):
    """Every path among the inputs (single paths and lists of them)."""
    for value in inputs.values():
        for item in value if isinstance(value, (list, tuple)) else (value,):
            if isinstance(item, (str, Path)) and str(item):
                yield Path(item)


RELEASE_TOP = {ROOT, ZIP_DIR, MANIFEST, ACCOUNTING, CARD}  # a release's top-level names


def _check_replaceable(final: Path, inputs: dict) -> None:
    """InputError unless ``final`` may be replaced by a release: absent, empty, or a release (its
    ``MANIFEST.json``), and holding none of the inputs. Replacing swept away whatever the folder held: a folder
    of one's own, or the tables the release was being built from."""
    from bioscan_rebuild.core.errors import InputError

    if final.exists() and not final.is_dir():
        raise InputError(f"{final}: --outdir is a file, not a folder")
    # what a release holds (MANIFEST.json may be gone: it was the workflow's output, which Snakemake deletes)
    foreign = sorted(p.name for p in final.iterdir() if p.name not in RELEASE_TOP) if final.is_dir() else []
    if foreign:
        raise InputError(
            f"{final}: --outdir holds {', '.join(foreign[:3])}{' ...' if len(foreign) > 3 else ''}, which no "
            "release holds: a release replaces only an empty folder or an earlier release; give a new folder"
        )
    for path in _input_paths(inputs):
        if path.exists() and path.resolve().is_relative_to(final):
            raise InputError(f"{path}: an input of the release lies in --outdir {final}, which the release replaces")


def _swap_into_place(built: Path, final: Path) -> None:
    """Replace ``final`` by ``built``: two renames, so ``final`` is either the old release or the new one (an
    interrupt between them puts the old one back; a kill between them leaves it aside, and the next release job
    puts it back first: ``_restore_interrupted_swap``)."""
    old = final.with_name(f".{final.name}.old")
    if final.exists():
        final.rename(old)
    try:
        built.rename(final)
    except BaseException:
        if old.is_dir() and not final.exists():
            old.rename(final)
        raise
    _remove_replaced(final)


def stats_files(stats: Path) -> list[str]:
    """The statistics stage's files in ``stats`` (relative names): ``stats.json`` and what it says was written
    with it, so a file an older run left in the folder is never shipped. A ``stats.json`` from before that list
    was kept: every file in the folder."""
    summary = json.loads((stats / STATS_JSON).read_text())
    if STATS_FILES_KEY not in summary:
        return sorted(p.relative_to(stats).as_posix() for p in stats.rglob("*") if p.is_file())
    missing = [name for name in summary[STATS_FILES_KEY] if not (stats / name).is_file()]
    if missing:
        raise InputError(f"{stats}: {STATS_JSON} lists files the folder lacks ({missing[:5]}): run the stats stage")
    return sorted([STATS_JSON, *summary[STATS_FILES_KEY]])


def check_newer_version(previous: Path, version: str) -> None:
    """Refuse a release that claims the version of the one it follows, or an older one: two different releases
    would share one version (and the JSON-LD's release IRI), and a reader could not tell them apart."""
    from packaging.version import InvalidVersion, Version

    before = previous_version(previous)
    if before is None:
        return
    try:
        newer = Version(str(version)) > Version(str(before))
    except InvalidVersion:  # not PEP 440: at least another one
        newer = str(version) != str(before)
    if not newer:
        raise InputError(
            f"export.version {version} is not newer than {before}, the version of the previous release "
            f"({previous}, release.previous): raise export.version"
        )


def _build(
    outdir: Path,
    *,
    curated,
    barcodes,
    splits,
    records,
    rejects,
    changes,
    accounting,
    images=(),
    bbox=(),
    fasta=None,
    split_summary=None,
    corrections=None,
    box_corrections=None,
    store=None,
    formats=None,
    options: ExportOptions | None = None,
    previous=None,
    frozen=None,
    provenance_file=None,
    config_file=None,
    stats=None,
) -> dict:
    """``stats``: the statistics stage's folder (``stats.json``, tables, ``figures/``): copied under
    ``metadata/stats/`` and summed up in the dataset card, ``README.md`` beside the root."""
    if previous is not None:
        check_newer_version(Path(previous), (options or ExportOptions()).version)
    accounting_data = read_json(accounting, "the run's accounting")
    provenance = {"software": "bioscan-rebuild", "inputs": release_inputs(accounting_data), "citeAs": CITATION}
    shutil.copyfile(accounting, outdir / ACCOUNTING)
    with tempfile.TemporaryDirectory(dir=outdir) as tmp:
        side = write_side_files(
            Path(tmp),
            rejects=rejects,
            changes=changes,
            bbox=bbox,
            fasta=fasta,
            split_summary=split_summary,
            corrections=corrections,
            box_corrections=box_corrections,
            version=(options or ExportOptions()).version,
            previous=previous,
            frozen=frozen,
            records=records,
            splits=splits,
            images=images,
            barcodes=barcodes,
        )
        for file, source in ((PROVENANCE, provenance_file), (CONFIG, config_file)):
            if source is not None:
                side[file.path] = Path(source)
        if stats is not None:
            for name in stats_files(Path(stats)):
                side[f"{STATS_DIR}/{name}"] = Path(stats) / name
        summary = export_release(
            curated,
            barcodes,
            splits,
            outdir,
            image_paths=list(images) or None,
            store_root=store,
            side_files=side,
            options=options,
            formats=formats,
            provenance=provenance,
            manifest=False,
            after_spool=None
            if previous is None
            else _diff_against(previous, rejects, changes, records, Path(tmp) / "diff"),
        )
    check_released(accounting_data, summary["released"])  # never publish rows the accounting does not know
    diff = outdir / ROOT / RELEASE_DIFF_SUMMARY_PATH
    write_card(
        outdir, options or ExportOptions(), accounting_data, json.loads(diff.read_text()) if diff.is_file() else None
    )
    summary["manifest"] = write_manifest(outdir)  # after the side files, accounting and card
    return summary
