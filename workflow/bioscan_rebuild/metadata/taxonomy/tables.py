"""The maintainers' tables (fixes, corrections): how one is read, and those shipped with the package."""

from __future__ import annotations

import io
from importlib import resources
from pathlib import Path

import pandas as pd

SHIPPED_TABLES = ("taxonomy_fixes.tsv", "corrections.tsv")


def shipped_table(name: str) -> Path:
    """A table shipped as package data (``metadata/tables/``), so a wheel carries it as a checkout does."""
    if name not in SHIPPED_TABLES:
        raise ValueError(f"no shipped table {name!r} (known: {', '.join(SHIPPED_TABLES)})")
    return Path(str(resources.files("bioscan_rebuild.metadata") / "tables" / name))


def read_table(path, columns) -> pd.DataFrame:
    """A maintainer's TSV: lines starting with ``#`` are comments (a ``#`` inside a value is kept)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such table")
    lines = [line for line in path.read_text(encoding="utf-8").splitlines(keepends=True) if not line.startswith("#")]
    table = pd.read_csv(io.StringIO("".join(lines)), sep="\t", dtype=str, keep_default_na=False)
    missing = set(columns) - set(table.columns)
    if missing:
        raise ValueError(f"{path}: missing columns {sorted(missing)}")
    return table[list(columns)]
