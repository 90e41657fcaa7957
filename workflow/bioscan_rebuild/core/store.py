"""Content-addressed image store.

Originals are stored under their sha256; derived images under the sha256 of their source plus a
key of the processing parameters that made them. A path therefore names its content, so a
re-run skips any image already present, whatever shard or batch it now belongs to, and two
records that share a photo share its file.

Layout: ``{root}/original/{sha[:2]}/{sha}.{ext}`` and
``{root}/derived/{params_key}/{sha[:2]}/{sha}.{ext}``.
Writes are atomic (temporary file + rename), so parallel jobs and killed jobs never leave a
half-written image under a final name.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

from bioscan_rebuild.core.io import READABLE_FILE

EXTENSIONS = {"jpeg": "jpg", "png": "png", "tiff": "tif"}
MODES = ("link", "copy", "none")


def params_key(params: dict) -> str:
    """Short stable key for a parameter set (sorted JSON, sha256, 16 hex digits)."""
    canonical = json.dumps(params, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


class ImageStore:
    def __init__(self, root: str | Path, mode: str = "link"):
        if mode not in MODES:
            raise ValueError(f"image store mode must be one of {MODES}, not {mode!r}")
        self.root = Path(root)
        self.mode = mode

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

    def put_original(self, source: str | Path, sha256: str, image_format: str) -> Path | None:
        """Store `source` under its hash; a no-op when already stored or the mode is 'none'."""
        if self.mode == "none":
            return None
        target = self.original_path(sha256, image_format)
        if target.exists():
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        if self.mode == "link":
            try:
                temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
                os.link(source, temporary)
                os.replace(temporary, target)
                return target
            except OSError:
                pass  # other file system or no permission: fall back to a copy
        with (
            tempfile.NamedTemporaryFile(dir=target.parent, prefix=".", suffix=".tmp", delete=False) as handle,
            open(source, "rb") as src,
        ):
            shutil.copyfileobj(src, handle)
        os.chmod(handle.name, READABLE_FILE)  # a temporary file is 0600
        os.replace(handle.name, target)
        return target

    def put_bytes(self, target: Path, data: bytes) -> Path:
        """Atomically write derived bytes to `target` unless it already exists."""
        if target.exists():
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=target.parent, prefix=".", suffix=".tmp", delete=False) as handle:
            handle.write(data)
        os.chmod(handle.name, READABLE_FILE)  # a temporary file is 0600
        os.replace(handle.name, target)
        return target
