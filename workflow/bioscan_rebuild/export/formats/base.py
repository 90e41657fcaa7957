"""What a download format is: a name and a writer that reads the spooled release rows (:class:`ExportContext`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bioscan_rebuild.core.params import ExportOptions
from bioscan_rebuild.export.layout import ROOT


@dataclass(frozen=True)
class ExportContext:
    """What every format writer gets: the spool (``export.spool.iter_split``) and where to write."""

    spool: Path
    outdir: Path  # holds ROOT, and ZIP_DIR beside it
    options: ExportOptions
    provenance: dict  # {"software", "inputs": [{"file", "sha256"}, ...]} and optional url/citeAs/datePublished
    store: Path | None  # the content-addressed image store; None for a release without image results

    @property
    def root(self) -> Path:
        return self.outdir / ROOT


@dataclass(frozen=True)
class Format:
    name: str  # as in config ``export.formats`` and ``--formats``
    write: Callable[[ExportContext], dict]  # -> entries for the export summary (often none)
    needs_images: bool = False  # skipped in a release without image results or store
    reads_tree: bool = False  # describes the files written under ROOT: runs after every other format
