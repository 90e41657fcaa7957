"""The audit's check of a release's statistics (``metadata/stats/``): each table and ``stats.json`` made again from
the released rows, with the seed and pairs of the release's config, must be the bytes the release ships. The card is
made again from the shipped statistics (``export.audit_description``): a table edited with the card line it feeds
passed as whole. The figures are not drawn again: each must be the build's figure of its name by its hash in
``provenance.jsonld`` (``export.audit_description``), which a forger who edits the graph too can rewrite.

``bioscan-rebuild audit`` hands this check to ``export.audit.audit_release`` (the export stage comes before this
one and imports nothing of it).
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pyarrow as pa

from bioscan_rebuild.core.schemas import STATS_FILES_KEY, STATS_JSON
from bioscan_rebuild.export.audit_description import release_software_version
from bioscan_rebuild.export.card import STATS_DIR
from bioscan_rebuild.export.layout import ROOT
from bioscan_rebuild.stats.compute import compute_stats, summary
from bioscan_rebuild.stats.stage import write_stats


def check_released_stats(release: Path, table: pa.Table, config: dict | None, findings) -> None:
    """``table``: the released rows (every column of the metadata CSV); ``config``: the release's resolved config
    (its ``stats`` section: seed, pairs_per_comparison). Each table or ``stats.json`` that is not what the rows give
    is a finding, with its first differing line."""
    from bioscan_rebuild import __version__

    shipped = Path(release) / ROOT / STATS_DIR
    if not (shipped / STATS_JSON).is_file():  # a release without statistics (the release command's --stats)
        return
    built_by = release_software_version(Path(release) / ROOT)
    if built_by is not None and built_by != __version__:  # another version may draw or round otherwise
        findings.notes.append(
            f"{ROOT}/{STATS_DIR}: built by bioscan-rebuild {built_by}, this audit is {__version__}: the statistics "
            "were not made again (audit with the version that built it)"
        )
        return
    settings = (config or {}).get("stats") or {}
    seed, pairs = int(settings.get("seed", 0)), int(settings.get("pairs_per_comparison", 2000))
    tables = compute_stats(table, seed=seed, pairs_per_comparison=pairs)
    where = f"{ROOT}/{STATS_DIR}"
    with tempfile.TemporaryDirectory() as folder:
        written = write_stats(tables, summary(tables, table), folder, figures=False)
        for name in tables:
            _compare_lines(f"{where}/{name}.csv", shipped / f"{name}.csv", written[name], findings)
        made = json.loads(Path(written["stats"]).read_text())
    try:
        said = json.loads((shipped / STATS_JSON).read_text())
    except ValueError:
        said = None
    if not isinstance(said, dict):
        findings.add("statistics", f"{where}/{STATS_JSON}: not the JSON object the build writes")
        return
    for key in sorted((set(made) | set(said)) - {STATS_FILES_KEY}):
        if made.get(key) != said.get(key):
            findings.add(
                "statistics",
                f"{where}/{STATS_JSON}: {key} {json.dumps(said.get(key))[:120]}, the released rows give "
                f"{json.dumps(made.get(key))[:120]}",
            )


def _compare_lines(where: str, shipped: Path, made: Path, findings) -> None:
    if not shipped.is_file():
        findings.add("statistics", f"{where}: missing (the released rows give it)")
        return
    ours, theirs = made.read_text().split("\n"), shipped.read_text(errors="replace").split("\n")
    if ours == theirs:
        return
    line = next((i for i, (a, b) in enumerate(zip(ours, theirs)) if a != b), min(len(ours), len(theirs)))
    found = theirs[line] if line < len(theirs) else "(no line)"
    wanted = ours[line] if line < len(ours) else "(no line)"
    findings.add(
        "statistics",
        f'{where}: line {line + 1}: "{found[:120]}", the released rows give "{wanted[:120]}"',
    )
