"""Ingest step 2, the imager photos: list folders, map file names to processids, hash and read headers.

Listing (``list_to_shards``) reads directory entries only (no file contents), so a batch of
millions of photos is listed in one cheap job and split into shards (or groups of shards). The
inventory of a listing file (``inventory_shard``) reads each file once: sha256, byte size, format
and size from the header, and a structural completeness check (the file ends with the format's end marker: JPEG EOI, PNG
IEND). Pixels are decoded in the image
stage, not here, so a photo is decoded once in the whole pipeline; a file whose entropy data is
damaged but whose structure is intact gets its `undecodable` status there. An inventory job run again reads only
the files whose size, times or inode changed since its last run (``INVENTORY_CACHE`` under the store).
"""

from __future__ import annotations

import hashlib
import os
import re
from collections import Counter
from importlib import resources
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from bioscan_rebuild.core.errors import InputError
from bioscan_rebuild.core.io import read_table, write_json, write_table
from bioscan_rebuild.core.params import IngestParams
from bioscan_rebuild.core.schemas import make_rejects, shard_groups, shard_of, spelled_processid
from bioscan_rebuild.core.store import ImageStore, job_name
from bioscan_rebuild.ingest.photo_facts import inspect_image

DEFAULT_NAME_PATTERN = IngestParams().image_name_pattern
# Under the store: each inventory job's last inventory with its files' stat facts, so that a job run again (one
# photo of its batch replaced re-lists every group) reads only the files that changed
INVENTORY_CACHE = "inventory-cache"

LISTING_SCHEMA = pa.schema(
    [
        pa.field("batch", pa.string()),
        pa.field("image_path", pa.string()),  # relative to the batch's image folder
        pa.field("processid", pa.string()),
        pa.field("shard", pa.int64()),
    ]
)

INVENTORY_SCHEMA = pa.schema(
    [
        pa.field("batch", pa.string()),
        pa.field("image_path", pa.string()),
        pa.field("processid", pa.string()),
        pa.field("image_sha256", pa.string()),
        pa.field("image_bytes", pa.int64()),
        pa.field("image_format", pa.string()),  # from the file's bytes, not its name
        pa.field("image_width", pa.int64()),
        pa.field("image_height", pa.int64()),
        pa.field("image_problem", pa.string()),  # null when the file is usable
        pa.field("image_problem_detail", pa.string()),
    ]
)


# What the walk rejects by name, and the detail. Where a link points is left out: an absolute path would differ
# between two copies of one delivery.
WALK_PROBLEMS = {
    "broken_link": "symbolic link to a file or folder that does not exist",
    "link_outside": "symbolic link to a file or folder outside the image folder",
    "link_loop": "symbolic link that leads back to itself through links",
    "not_a_file": "a named pipe, socket or device, not a regular file",
}
# what a Mac leaves beside each photo it copies to a share or zips (AppleDouble): not photos, never read
MAC_RESOURCE_DETAIL = "a macOS resource file (AppleDouble: ._NAME or under __MACOSX), not a photo"


def mac_resource_file(rel: Path) -> bool:
    return rel.name.startswith("._") or "__MACOSX" in rel.parts[:-1]


def walk_folder(image_dir: Path, links_outside: bool = False):
    """(relative path, reject reason or None) of every file under ``image_dir``, sorted, following symbolic links
    that stay inside it (a link to a folder is walked like the folder; each real folder once). A link that points
    outside, or nowhere, is a reject: following it would take in files the delivery does not hold (with
    ``links_outside``, as for a person's own folder of links, one outside is followed)."""
    root = image_dir.resolve()
    seen = set()

    def inside(path: Path) -> bool:
        return path == root or root in path.parents

    def walk(folder: Path, rel: Path):
        real = folder.resolve()
        if real in seen:  # a link back to a folder already walked: a loop, or the same photos twice
            return
        seen.add(real)
        folders = []
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError as error:  # its photos cannot even be counted: a person must fix this
            raise InputError(
                f"{folder}: cannot list this folder ({error.strerror}): give read access to it, or move it out of "
                "the image folder"
            ) from None
        for entry in entries:
            entry_rel = rel / entry.name
            path = Path(entry.path)
            if entry.is_symlink():
                try:
                    target = path.resolve(strict=True)
                except (FileNotFoundError, NotADirectoryError, PermissionError):
                    yield entry_rel, "broken_link"
                    continue
                except (RuntimeError, OSError):  # a loop of links (3.11 raises RuntimeError, 3.13 OSError ELOOP)
                    yield entry_rel, "link_loop"
                    continue
                if not links_outside and not inside(target):
                    yield entry_rel, "link_outside"
                    continue
            if entry.is_dir():
                folders.append((path, entry_rel))
            elif entry.is_file():
                yield entry_rel, None
            else:  # a named pipe, socket or device: never opened (reading a pipe would block)
                yield entry_rel, "not_a_file"
        for path, entry_rel in folders:  # a folder's own files first, as os.walk lists them
            yield from walk(path, entry_rel)

    yield from walk(image_dir, Path())


def walk_named(image_dir: Path, links_outside: bool = False):
    """``walk_folder`` with each path as text: (relative path, reject reason or None, its detail or None), a name
    that is not UTF-8 rejected as ``unreadable_name`` (shown with its bytes escaped)."""
    for rel, problem in walk_folder(image_dir, links_outside):
        text = printable(rel)
        if text is None:
            shown = os.fsencode(rel).decode("utf-8", "backslashreplace")
            yield shown, "unreadable_name", "the file name is not UTF-8: rename it"
        elif problem is not None:
            yield text, problem, WALK_PROBLEMS[problem]
        elif mac_resource_file(rel):
            yield text, "unrecognised_name", MAC_RESOURCE_DETAIL
        else:
            yield text, None, None


def printable(rel: Path) -> str | None:
    """The path as UTF-8 text, or None when a name in it is not UTF-8 (Arrow tables and JSON hold text only)."""
    text = rel.as_posix()
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return None
    return text


def list_images(image_dir: str | Path, batch: str, n_shards: int, name_pattern: str = DEFAULT_NAME_PATTERN):
    """Walk `image_dir` (recursively, sorted) -> (listing table, rejects for files that cannot be listed).

    The processid is the pattern's `processid` group, matched case-insensitively on the file name. Rejected by
    name: `unrecognised_name`, `unreadable_name` (not UTF-8), `link_outside`, `broken_link`, `link_loop`,
    `not_a_file` (a pipe, socket or device).
    """
    image_dir = Path(image_dir)
    if not image_dir.is_dir():
        raise InputError(f"{image_dir}: not a folder of photos")
    try:
        pattern = re.compile(name_pattern, re.IGNORECASE)
    except re.error as error:
        raise InputError(f"image name pattern {name_pattern!r}: not a regular expression ({error})") from None
    if "processid" not in pattern.groupindex:
        raise InputError(f"image name pattern {name_pattern!r} has no (?P<processid>...) group")
    matched_paths, processids, rejected = [], [], []
    for text, problem, detail in walk_named(image_dir):
        if problem is not None:
            rejected.append((text, problem, detail))
            continue
        match = pattern.match(Path(text).name)
        # as the exports' processids are: a decomposed accent, a zero-width space or a BOM in a file name still
        # names its record
        group = match.group("processid") if match else None  # None: a pattern whose group may match nothing
        named = spelled_processid(group) if group else ""
        if named:
            matched_paths.append(text)
            processids.append(named)
        else:
            rejected.append((text, "unrecognised_name", f"does not match {name_pattern}"))
    listing = pa.table(
        {
            "batch": [batch] * len(matched_paths),
            "image_path": matched_paths,
            "processid": processids,
            "shard": shard_of(processids, n_shards),
        },
        schema=LISTING_SCHEMA,
    )
    rejects = make_rejects(
        kind="image",
        reason=[r[1] for r in rejected],
        detail=[r[2] for r in rejected],
        batch=batch,
        image_path=[r[0] for r in rejected],
    )
    return listing, rejects


def list_to_shards(
    image_dir: str | Path,
    batch: str,
    n_shards: int,
    outdir: str | Path,
    name_pattern: str = DEFAULT_NAME_PATTERN,
    group_size: int = 1,
) -> dict:
    """``list_images`` written out: `outdir/listing/GROUP.parquet` per group of ``group_size`` shards (all of
    them, maybe empty; ``shard_groups`` names them: `shard-NNN` for single shards), `outdir/rejects.parquet` and
    `outdir/summary.json`. Returns the summary."""
    listing, rejects = list_images(image_dir, batch, n_shards, name_pattern)
    outdir = Path(outdir)
    shards = listing["shard"].to_numpy()
    for name, members in shard_groups(n_shards, group_size).items():
        inside = (shards >= members.start) & (shards < members.stop)
        write_table(listing.filter(inside), outdir / "listing" / f"{name}.parquet")
    write_table(rejects, outdir / "rejects.parquet")
    summary = {
        "batch": batch,
        "image_dir": str(image_dir),
        "files": listing.num_rows + rejects.num_rows,
        "listed": listing.num_rows,
        "rejected": dict(sorted(Counter(rejects["reason"].to_pylist()).items())),
    }
    write_json(summary, outdir / "summary.json")
    return summary


def read_whole(path: Path) -> tuple[bytes | None, tuple[str, str] | None]:
    """A file's bytes, read once, with (reason, detail) when they cannot be trusted: ``unreadable_file`` (an
    OSError: permission, I/O) or ``changed_while_read`` (size, time or inode differ after the read: a file
    still being copied in)."""
    try:
        before = os.stat(path)
        data = path.read_bytes()
        after = os.stat(path)
    except OSError as error:
        return None, ("unreadable_file", error.strerror or type(error).__name__)
    except MemoryError:  # this job's limit, not the file's fault: the one file that did not fit is named
        raise InputError(
            f"{path}: {before.st_size:,} bytes do not fit in this job's memory: give the inventory jobs more "
            "(mem_mb), or take the file out of the image folder if it is not a photo"
        ) from None
    if (before.st_size, before.st_mtime_ns, before.st_ino) != (after.st_size, after.st_mtime_ns, after.st_ino) or (
        len(data) != after.st_size
    ):
        detail = f"{before.st_size} bytes when opened, {len(data)} read, {after.st_size} after"
        return data, ("changed_while_read", detail)
    return data, None


# What says a file is as it was when last inventoried (the check rsync and git make): size, modification time,
# inode and status-change time (which no tool sets back)
CACHE_SCHEMA = pa.schema(
    [*INVENTORY_SCHEMA, *(pa.field(name, pa.int64()) for name in ("st_size", "st_mtime_ns", "st_ino", "st_ctime_ns"))]
)
READ_PROBLEMS = ("unreadable_file", "changed_while_read")  # facts of the read, not of the file: never kept


def facts_version() -> str:
    """What the facts of a file come from: ``photo_facts``' and ``core.pilsafe``'s code and Pillow's version. A
    cache of another is not used (a fixed header check would never reach an unchanged photo); a change to the rest
    of this module (how files are listed, cached, stored) reads no photo again."""
    import PIL

    digest = hashlib.sha256(PIL.__version__.encode())
    for package, module in (("bioscan_rebuild.ingest", "photo_facts.py"), ("bioscan_rebuild.core", "pilsafe.py")):
        digest.update(resources.files(package).joinpath(module).read_bytes())
    return digest.hexdigest()[:16]


def _unchanged_key(path: Path) -> tuple[int, int, int, int] | None:
    try:
        facts = os.stat(path)
    except OSError:
        return None
    return facts.st_size, facts.st_mtime_ns, facts.st_ino, facts.st_ctime_ns


def _known(row: dict | None, key, path: Path, store: ImageStore | None) -> dict | None:
    """The facts the last inventory found for this file when it is unchanged since (and, where the store keeps
    originals, its original is still stored: put again from the file when gone, or when copy mode finds a link
    a link-mode run left); None: read it."""
    if row is None or key is None or (row["st_size"], row["st_mtime_ns"], row["st_ino"], row["st_ctime_ns"]) != key:
        return None
    facts = {name: row[name] for name in INVENTORY_SCHEMA.names[3:]}
    if store is not None and facts["image_problem"] is None:
        try:
            # a stored original of another size (cut short by a copy of the store, a disk fault) is put again
            store.put_original(path.resolve(), facts["image_sha256"], facts["image_format"], size=facts["image_bytes"])
        except (OSError, ValueError):  # changed after all (its hash differs): read it
            return None
    return facts


def inventory(
    listing: pa.Table, image_dirs: dict[str, str | Path], store: ImageStore | None = None, known=None
) -> pa.Table:
    """Hash and inspect every listed file; usable files are put into the content-addressed store. ``known``: the
    last inventory of these files with their ``CACHE_SCHEMA`` stat columns (a file unchanged since is not read
    again). Returns the inventory with those columns."""
    known = {(row["batch"], row["image_path"]): row for row in known.to_pylist()} if known is not None else {}
    # a batch without its folder, or a folder that is not there: every photo would read as unreadable (exit 0)
    for batch in sorted(set(listing["batch"].to_pylist())):
        if batch not in image_dirs:
            raise InputError(f"no image folder for batch {batch!r} (give --image-dir {batch}=DIR)")
        if not Path(image_dirs[batch]).is_dir():
            raise InputError(f"{image_dirs[batch]}: the image folder of batch {batch!r} is not a folder")
    rows = []
    for batch, rel_path, processid in zip(
        listing["batch"].to_pylist(), listing["image_path"].to_pylist(), listing["processid"].to_pylist()
    ):
        path = Path(image_dirs[batch]) / rel_path
        key = _unchanged_key(path)
        facts = _known(known.get((batch, rel_path)), key, path, store)
        if facts is None:
            data, problem = read_whole(path)
            facts = inspect_image(data or b"")
            if problem is not None:
                facts.update(image_problem=problem[0], image_problem_detail=problem[1])
                key = None
            elif store is not None and facts["image_problem"] is None:
                # the bytes hashed above, so the store holds what the sha256 names (the file, not a link)
                store.put_original(path.resolve(), facts["image_sha256"], facts["image_format"], data=data)
                # a hard link (link mode) changed its status-change time alone; a file rewritten meanwhile is read
                # again next time
                after = _unchanged_key(path)
                key = after if after is not None and key is not None and after[:3] == key[:3] else None
        stat = dict(zip(CACHE_SCHEMA.names[-4:], key or (None,) * 4))
        rows.append({"batch": batch, "image_path": rel_path, "processid": processid, **facts, **stat})
    return pa.Table.from_pylist(rows, schema=CACHE_SCHEMA)


def inventory_shard(
    listing_path: str | Path, image_dirs: dict[str, str | Path], output: str | Path, store: ImageStore | None = None
) -> pa.Table:
    """``inventory`` of one listing file (a shard's or a group of shards'), written to `output`. Returns the
    table."""
    listing = read_table(listing_path, LISTING_SCHEMA)
    cache = None if store is None else store.root / INVENTORY_CACHE / f"{job_name(output)}.parquet"
    known = None
    version = facts_version()
    if cache is not None and cache.is_file():
        try:
            made_by = (pq.read_schema(cache).metadata or {}).get(b"facts_version")
            # made by other code, its facts may be what that code got wrong: every file read again, as when damaged
            known = read_table(cache, CACHE_SCHEMA) if made_by == version.encode() else None
        except (OSError, ValueError, InputError, pa.ArrowException):  # damaged (a full disk): every file read again
            known = None
    table = inventory(listing, image_dirs, store, known)
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        write_table(table.replace_schema_metadata({"facts_version": version}), cache)
    inventoried = table.select(INVENTORY_SCHEMA.names)
    write_table(inventoried, output)
    return inventoried
