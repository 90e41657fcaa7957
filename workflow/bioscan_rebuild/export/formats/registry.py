"""The release's download formats: the registry, the one list of known formats.

Each format is one module here that defines ``FORMAT = Format(name, write, ...)`` (``formats.base``):
``write(context)`` streams the spooled rows (``context.spool``) into its files under ``context.root`` and
returns entries for the export summary. Adding a format: a new module, and its name in the import and in
``_MODULES`` below (that order is the writing order; a ``reads_tree`` format such as croissant runs after all
others whatever its place). :data:`FORMATS` is what the command line and ``export_release`` default to and
what config ``export.formats`` may name.
"""

from __future__ import annotations

from bioscan_rebuild.export.formats import croissant, csv, hdf5, images, jsonld, parquet
from bioscan_rebuild.export.formats.base import Format

_MODULES = (csv, parquet, images, hdf5, jsonld, croissant)
FORMATS: dict[str, Format] = {module.FORMAT.name: module.FORMAT for module in _MODULES}


def select(names) -> list[Format]:
    """The named formats in writing order (registry order, tree-reading formats last)."""
    unknown = sorted(set(names) - set(FORMATS))
    if unknown:
        raise ValueError(f"unknown export formats {unknown}; known: {list(FORMATS)}")
    chosen = [f for f in FORMATS.values() if f.name in set(names)]
    return sorted(chosen, key=lambda f: f.reads_tree)  # stable: registry order otherwise
