"""Content-addressed image store.

Originals are stored under their sha256; derived images under the sha256 of their source plus a
key of the processing parameters that made them. A path therefore names its content, so a
re-run skips any image already present, whatever shard or batch it now belongs to, and two
records that share a photo share its file.

Layout: ``{root}/original/{sha[:2]}/{sha}.{ext}`` and
``{root}/derived/{params_key}/{sha[:2]}/{sha}.{ext}``.
Writes are atomic: each file is written in the writing job's own scratch folder,
``{root}/.scratch/{job}/``, and renamed into place, so parallel jobs and killed jobs never leave a
half-written image under a final name. A failed write removes its temporary file; what a killed job
left is removed by the next run of the same job (``clear_scratch``), and only that job writes there.

A name is trusted only as far as it is checked: an object of another size than the bytes to store is written
again, and an original is read back through ``read_original``, which hashes it. In ``link`` mode an original is
the delivered file itself (one inode): a delivery rewritten in place changes it, which that check catches (the
image stage then repairs it from the delivery, or reports ``source_changed``); a photo whose result is cached is
checked too when its original is linked (``original_damaged``). A ``copy`` mode run copies an original that an
earlier ``link`` mode run left linked. The image stage's small JSON files (a photo's result, its detection) are
sealed with the sha256 of what they hold (``seal``/``unseal``): one whose bytes changed is made again, never
reused. A photo's result also records each of its stored JPEGs' size and modification time
(``file_fingerprint``): a JPEG whose fingerprint changed since (an edit in place, a copy of the store) is hashed
again before the result is reused. A change that keeps both (a disk fault, a time set back by hand) is not seen
here: the audit hashes every released file.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

from bioscan_rebuild.core.io import file_sha256

EXTENSIONS = {"jpeg": "jpg", "png": "png", "tiff": "tif"}
MODES = ("link", "copy", "none")
SCRATCH = ".scratch"
STORE_FILE = 0o444  # a store object is named by its content: nobody edits it in place


def params_key(params: dict) -> str:
    """Short stable key for a parameter set (sorted JSON, sha256, 16 hex digits)."""
    canonical = json.dumps(params, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


class ImageStore:
    def __init__(self, root: str | Path, mode: str = "copy", job: str | None = None):
        """``job``: a name unique to the writing job (its output path, say): its scratch folder's name. Without
        one, the process id (and nothing clears a killed process's leftovers)."""
        if mode not in MODES:
            raise ValueError(f"image store mode must be one of {MODES}, not {mode!r}")
        self.root = Path(root)
        self.mode = mode
        self.scratch = self.root / SCRATCH / (job_name(job) if job else f"pid-{os.getpid()}")

    def clear_scratch(self) -> None:
        """Remove what a killed run of this job left behind (half-written temporary files)."""
        shutil.rmtree(self.scratch, ignore_errors=True)

    def close(self) -> None:
        """Remove this job's scratch folder once it is empty (a finished job leaves nothing behind)."""
        for folder in (self.scratch, self.scratch.parent):
            try:
                folder.rmdir()
            except OSError:
                break  # absent, or holds another job's files  # pragma: no mutate - last statement: return is the same

    def _commit(self, target: Path, fill, *, own_file: bool = True) -> Path:
        """Write a temporary file in the scratch folder with ``fill(temporary path)`` and rename it onto
        ``target``; on any error the temporary file is removed and the error raised."""
        for attempt in range(3):
            try:
                self.scratch.mkdir(parents=True, exist_ok=True)
                break
            except FileNotFoundError:
                # another job's close removed the shared scratch folder between its making and ours: make it again
                if attempt == 2:  # pragma: no mutate - a third race in a row is no race
                    raise
        handle, temporary = tempfile.mkstemp(dir=self.scratch, suffix=".tmp")
        os.close(handle)
        try:
            fill(temporary)
            if own_file:  # mkstemp makes 0600; a hard link shares the source's mode, which is not ours to change
                os.chmod(temporary, STORE_FILE)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(temporary, target)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        return target

    def original_path(self, sha256: str, image_format: str) -> Path:
        return self.root / "original" / sha256[:2] / f"{sha256}.{EXTENSIONS.get(image_format, image_format)}"

    def derived_path(self, key: str, sha256: str, ext: str = "jpg") -> Path:
        return self.root / "derived" / key / sha256[:2] / f"{sha256}.{ext}"

    def derived_image_path(self, key: str, sha256: str, package: str) -> Path:
        """One image package (``original_256``, ``cropped``...) of a photo, made under parameter key ``key``."""
        return self.derived_path(key, sha256, f"{package}.jpg")

    def package_path(self, key: str, sha256: str, package: str, original_full_is_source: bool = False) -> Path:
        """Where a photo's image package is: a source JPEG that already is ``original_full`` (1024x768) is not
        stored twice, so that package is the original itself."""
        if package == "original_full" and original_full_is_source:
            return self.original_path(sha256, "jpeg")
        return self.derived_image_path(key, sha256, package)

    def derived_result_path(self, key: str, sha256: str) -> Path:
        """The image stage's JSON result for a photo under parameter key ``key``."""
        return self.derived_path(key, sha256, "json")

    def detection_path(self, key: str, sha256: str) -> Path:
        """A photo's detection (box, score, review reasons) under detection key ``key``: kept apart from its crops,
        so that a change to the crop or JPEG settings redoes the crops and not the detection."""
        return self.derived_path(key, sha256, "detection.json")

    def put_original(
        self, source: str | Path, sha256: str, image_format: str, data: bytes | None = None, size: int | None = None
    ) -> Path | None:
        """Store `source` under its hash; a no-op when already stored or the mode is 'none'. ``data``: the bytes
        that were hashed; they are what is stored (a file that changed since is not linked or copied). ``size``:
        without ``data``, the bytes the original holds (one stored with another size is damaged, and replaced)."""
        if self.mode == "none":
            return None
        target = self.original_path(sha256, image_format)
        # in copy mode the store owns its bytes: an original a link-mode run left linked to its delivery is copied
        linked_in_copy_mode = self.mode == "copy" and _linked(target)
        if _present(target, size if data is None else len(data)) and not linked_in_copy_mode:
            return target
        if self.mode == "link":
            try:
                return self._commit(
                    target,
                    lambda temporary: _link_checked(source, temporary, sha256),
                    own_file=False,  # pragma: no mutate - None is as false as False
                )
            except OSError:
                pass  # other file system, no permission, or changed since: fall back to a copy
        if data is not None:
            return self._commit(target, lambda temporary: Path(temporary).write_bytes(data))
        return self._commit(target, lambda temporary: _copy_checked(source, temporary, sha256))

    def replace_bytes(self, target: Path, data: bytes) -> Path:
        """Atomically write bytes to ``target``, whatever it holds now (a sealed file whose fingerprints changed
        may keep its size)."""
        return self._commit(target, lambda temporary: Path(temporary).write_bytes(data))

    def put_bytes(self, target: Path, data: bytes) -> Path:
        """Atomically write bytes to `target` unless it already holds as many (a file of another size there is
        damaged: truncated by a crash or a full disk, or changed through a hard link, and is replaced)."""
        if _present(target, len(data)):
            return target
        return self._commit(target, lambda temporary: Path(temporary).write_bytes(data))

    def read_original(self, sha256: str, image_format: str) -> bytes | None:
        """The stored original's bytes when they still hash to ``sha256``; else None (absent, or damaged: its
        name no longer says its content, e.g. the delivery it is hard-linked to was rewritten in place)."""
        try:
            data = self.original_path(sha256, image_format).read_bytes()
        except FileNotFoundError:
            return None
        return data if hashlib.sha256(data).hexdigest() == sha256 else None

    def original_damaged(self, sha256: str, image_format: str, since_ns: int | None = None) -> bool:
        """Whether the stored original no longer holds its content: hashed only when it is linked to another name
        (a delivery, in link mode), which may have been rewritten in place, and its inode changed after
        ``since_ns`` (a write changes the status-change time, which no tool sets back); a copy is read-only, and an
        original not stored (mode none) is no damage."""
        path = self.original_path(sha256, image_format)
        try:
            facts = path.stat()
        except FileNotFoundError:
            return False
        if facts.st_nlink < 2 or (since_ns is not None and facts.st_ctime_ns < since_ns):
            return False
        return self.read_original(sha256, image_format) is None

    def repair_original(self, sha256: str, image_format: str, data: bytes) -> Path:
        """Replace a damaged stored original with ``data`` (whose sha256 the caller checked): a copy, never a link
        (the damage may have come through one)."""
        return self._commit(self.original_path(sha256, image_format), lambda t: Path(t).write_bytes(data))


SEAL = "_sha256"  # the key a sealed JSON file holds its own checksum under


def seal(facts: dict) -> bytes:
    """``facts`` as JSON with the sha256 of their canonical form beside them (``unseal`` checks it)."""
    body = json.dumps(facts, sort_keys=True)
    return json.dumps({**facts, SEAL: hashlib.sha256(body.encode()).hexdigest()}, sort_keys=True).encode()


def unseal(data: bytes) -> tuple[dict, bool]:
    """The facts of a ``seal``-ed file and whether it was sealed (files an older version wrote were not: trusted as
    before, and sealed when next written). Raises ValueError when the bytes are not what was sealed."""
    facts = json.loads(data)
    if not isinstance(facts, dict):
        raise ValueError("not a JSON object")
    if SEAL not in facts:
        return facts, False
    digest = facts.pop(SEAL)
    if digest != hashlib.sha256(json.dumps(facts, sort_keys=True).encode()).hexdigest():
        raise ValueError("its bytes changed after it was written")
    return facts, True


def file_fingerprint(path: Path) -> list[int] | None:
    """Size and modification time of ``path`` (None when it is gone): what a write in place changes."""
    try:
        facts = path.stat()
    except FileNotFoundError:
        return None
    return [facts.st_size, facts.st_mtime_ns]


JPEG_END = b"\xff\xd9"  # the end-of-image marker every JPEG the image stage writes ends with


def whole_jpeg(path: Path) -> bool:
    """``path`` is there and ends with a JPEG's end marker, as every JPEG the image stage writes does (one cut
    short by an interrupted copy of the store or a full disk does not): one seek, two bytes read."""
    try:
        with open(path, "rb") as handle:
            handle.seek(-2, os.SEEK_END)
            return handle.read(2) == JPEG_END
    except OSError:  # absent, or shorter than two bytes
        return False


def _present(target: Path, size: int | None) -> bool:
    """``target`` exists (and, when ``size`` is given, holds that many bytes)."""
    try:
        held = target.stat().st_size
    except FileNotFoundError:
        return False
    return size is None or held == size


def _linked(path: Path) -> bool:
    """``path`` is a hard link that another name shares (False when absent)."""
    try:
        return path.stat().st_nlink > 1
    except FileNotFoundError:
        return False


def _link_checked(source, temporary, sha256: str) -> None:
    os.unlink(temporary)  # os.link makes the name; mkstemp only reserved it
    os.link(source, temporary)
    if file_sha256(temporary) != sha256:
        raise OSError(f"{source} changed after it was hashed")  # pragma: no mutate - put_original catches it, unshown


def _copy_checked(source, temporary, sha256: str) -> None:
    shutil.copyfile(source, temporary)
    if file_sha256(temporary) != sha256:
        raise ValueError(f"{source} changed after it was hashed: not stored under {sha256}")


# the longest name kept as it is: the inventory cache's file, "NAME.parquet", is written through a temporary
# ".NAME.parquet.XXXXXXXX.tmp", within NAME_MAX's 255 bytes (a longer one could not be written, so no earlier cache
# is lost by hashing it)
JOB_NAME_BYTES = 255 - len("..parquet.XXXXXXXX.tmp")


def job_name(name: str) -> str:
    """A folder name for a job, from a name unique to it (its output path): separators become ``--``. A name too
    long for a file name (a deep output path) keeps its end after a hash of the whole."""
    flat = str(name).strip("/").replace("/", "--") or "job"
    raw = flat.encode("utf-8", "surrogateescape")
    if len(raw) <= JOB_NAME_BYTES:
        return flat
    tail = raw[len(raw) - (JOB_NAME_BYTES - 18) :]  # after 16 hex digits and "--"
    return f"{hashlib.sha256(raw).hexdigest()[:16]}--{tail.decode('utf-8', 'ignore')}"
