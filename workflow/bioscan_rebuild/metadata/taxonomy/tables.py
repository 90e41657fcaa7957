"""The maintainers' tables (fixes, corrections): how one is read, and those shipped with the package."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import pandas as pd

from bioscan_rebuild.core.tsv import read_maintainer_table

SHIPPED_TABLES = ("taxonomy_fixes.tsv", "corrections.tsv", "class_phylum.tsv")


def shipped_table(name: str) -> Path:
    """A table shipped as package data (``metadata/tables/``), so a wheel carries it as a checkout does."""
    if name not in SHIPPED_TABLES:
        raise ValueError(f"no shipped table {name!r} (known: {', '.join(SHIPPED_TABLES)})")
    return Path(str(resources.files("bioscan_rebuild.metadata") / "tables" / name))


def class_phylum() -> dict[str, str]:
    """The shipped class -> phylum reference (``class_phylum.tsv``): the scope step's fallback for a record
    without a phylum."""
    table = read_table(shipped_table("class_phylum.tsv"), ("class", "phylum"))
    return dict(zip(table["class"].str.strip(), table["phylum"].str.strip(), strict=True))


def read_table(path, columns) -> pd.DataFrame:
    """A maintainer's TSV (``core.tsv``: ``#`` comment lines, a BOM, CRLF, tabs after the last field and quoted
    fields as a spreadsheet writes them). FileNotFoundError when there is no such file."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such table")
    return read_maintainer_table(path, tuple(columns), f"the table {path.name}")
