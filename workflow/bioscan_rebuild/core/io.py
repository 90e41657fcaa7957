"""Writing tables and documents: fixed settings, so equal content gives byte-identical files, and atomic
(temporary file + rename), so a killed job never leaves a half-written file under a final name."""

from __future__ import annotations

import contextlib
import errno
import glob
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from bioscan_rebuild.core.errors import InputError


def file_sha256(path: str | Path) -> str:
    """sha256 of a file, read in 4 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 22):
            digest.update(chunk)
    return digest.hexdigest()


def csv_header(path: str | Path) -> list[str]:
    """A CSV file's column names, from its first block only (``read_csv`` reads and parses the whole file: a full
    release's 4.5 GB lineage, to learn its header)."""
    import pyarrow.csv as pacsv

    reader = pacsv.open_csv(path)
    try:
        return reader.schema.names
    finally:
        reader.close()


def read_json(path: str | Path, what: str, keys: tuple[str, ...] = ()) -> dict:
    """A JSON object another step wrote (a summary, an accounting, a plan), or InputError naming the file when it
    is not JSON, not an object, or lacks one of ``keys`` (another step's file, garbage: a traceback before)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InputError(f"{path}: not {what} ({error})") from None
    if not isinstance(data, dict):
        raise InputError(f"{path}: not {what} (a JSON {type(data).__name__}, not an object)")
    missing = [key for key in keys if key not in data]
    if missing:
        raise InputError(f"{path}: not {what} (no {', '.join(repr(k) for k in missing)})")
    return data


def check_listed(manifest_path: str | Path, path: str | Path) -> None:
    """``path``, a file of a published release, is the one that release's ``MANIFEST.json`` lists (same size and
    sha256). Raises InputError when it is not: a previous release edited after it was built would freeze splits
    and explain a diff it never held, while the summary names the untouched release's manifest."""
    manifest_path, path = Path(manifest_path), Path(path)
    try:
        files = json.loads(manifest_path.read_text()).get("files", {})
        # the folders resolved, not the file: a release whose files are links (a hub snapshot, git-annex) is read
        rel = (path.parent.resolve() / path.name).relative_to(manifest_path.parent.resolve()).as_posix()
    except (OSError, ValueError, AttributeError) as error:
        raise InputError(f"{manifest_path}: cannot check {path} against it ({error})") from None
    if not isinstance(files, dict):
        raise InputError(f"{manifest_path}: not a release manifest ('files' is no mapping of paths to their entries)")
    listed = files.get(rel)
    if listed is None:
        raise InputError(f"{path}: not listed in {manifest_path}")
    if not isinstance(listed, dict):
        raise InputError(f"{manifest_path}: not a release manifest (the entry of {rel} is no object)")
    size, sha = path.stat().st_size, file_sha256(path)
    if size != listed.get("bytes") or sha != listed.get("sha256"):
        raise InputError(
            f"{path}: not the file {manifest_path} lists (sha256 {sha[:12]}…, {size} bytes; listed "
            f"{str(listed.get('sha256'))[:12]}…, {listed.get('bytes')} bytes): the release was changed after it was "
            "built; use an untouched copy (`bioscan-rebuild audit` on it names every change)"
        )


READABLE_FILE = 0o644  # what a temporary file (0600) becomes before it takes its final name


@contextlib.contextmanager
def readable_outputs() -> Iterator[None]:
    """New files 0644 and folders 0755 whatever the caller's umask, while the block runs (one process writing
    a release: the umask is per process). Cheaper than walking millions of written files to chmod them."""
    previous = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(previous)


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary path beside ``path``; renamed onto it when the block ends without an error, removed when not.

    One job writes a given output, so a temporary of the same name pattern found beside it is what a killed
    writer of that file left: it is removed first (no orphan temporary files after a rerun)."""
    path = Path(path)
    if path.is_dir():  # the rename's error named the hidden temporary, not the folder given
        raise InputError(f"{path}: a folder: give the name of a file to write")
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        stale.unlink(missing_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(handle)
    try:
        yield Path(temporary)
        os.chmod(temporary, READABLE_FILE)  # mkstemp makes 0600; outputs are for everyone to read
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)


FICLONE = 0x40049409  # Linux ioctl: share the source's blocks copy-on-write (Btrfs, XFS, ...)


def clone_file(source: str | Path, target: str | Path) -> None:
    """``target`` as a copy of ``source`` that never shares its inode: a reflink (copy-on-write: no extra blocks,
    and writing either file leaves the other as it was) where the file system has them, else a byte copy."""
    import fcntl

    with open(source, "rb") as src, open(target, "wb") as dst:
        try:
            fcntl.ioctl(dst.fileno(), FICLONE, src.fileno())
            return
        except OSError:
            pass  # no reflinks here (ext4, tmpfs, another file system): copy the bytes
        shutil.copyfileobj(src, dst, 1 << 20)


def read_table(path: str | Path, schema: pa.Schema, columns=None) -> pa.Table:
    """A step's Parquet table read with its contract's ``schema`` (types fixed), refusing a file that lacks any
    column it needs: pyarrow would fill those with nulls and the step would run on with wrong data."""
    if not Path(path).is_file():  # pyarrow's own error names no file
        raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), str(path))
    needed = list(columns) if columns is not None else schema.names
    try:
        names = pq.read_schema(path).names
    except pa.ArrowInvalid as error:  # Arrow's words name no file
        first = str(error).strip().splitlines()[0]
        raise InputError(f"{path}: not a Parquet table ({first}): check the file given") from None
    missing = [name for name in needed if name not in names]
    if missing:
        shown = ", ".join(missing[:4]) + (f" and {len(missing) - 4} more" if len(missing) > 4 else "")
        raise InputError(f"{path}: not the table this step reads (it has no column {shown}): check the file given")
    return pq.read_table(path, columns=columns, schema=schema)


def write_parquet(table: pa.Table, path: str | Path) -> None:
    """Parquet with fixed settings, so equal tables give byte-identical files (in place: see write_table)."""
    pq.write_table(table, path, compression="zstd", row_group_size=100_000, write_statistics=True)


def write_table(table: pa.Table, path: str | Path) -> None:
    """``write_parquet``, atomically."""
    with atomic_path(path) as temporary:
        write_parquet(table, temporary)


def write_json(data: dict, path: str | Path) -> None:
    with atomic_path(path) as temporary:
        temporary.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
