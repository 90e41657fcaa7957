"""Benchmark: release export of 5.15M metadata rows (no images) -- CSV + Parquet, then JSON-LD.

Uses the tables ``bench/metadata.py`` leaves in its work folder (barcode shards, curated labels, splits); runs
them first when absent. Each export runs in a fresh process so its peak memory is its own.
Target: CSV + Parquet <= 5 min and <= 6 GB.

    python bench/export.py [--workdir /tmp/bench-metadata]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "workflow"))


def export(workdir: Path, formats: list[str]) -> dict:
    from bioscan_rebuild.export import export_release

    start = time.perf_counter()
    summary = export_release(
        workdir / "out" / "curated.parquet",
        sorted(workdir.glob("barcodes-*.parquet")),
        workdir / "splits" / "splits.parquet",
        workdir / f"release-{'-'.join(formats)}",
        formats=tuple(formats),
        manifest=False,
    )
    seconds = time.perf_counter() - start
    out = workdir / f"release-{'-'.join(formats)}" / "bioscan5m"
    sizes = {p.relative_to(out).as_posix(): p.stat().st_size for p in sorted(out.rglob("*")) if p.is_file()}
    return {
        "formats": formats,
        "records": summary["released"],
        "seconds": round(seconds, 1),
        "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2, 2),
        "bytes": sum(sizes.values()),
        "files": len(sizes),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workdir", default="/tmp/bench-metadata")
    parser.add_argument("--formats", help="internal: one export run")
    args = parser.parse_args()
    workdir = Path(args.workdir)
    if args.formats:
        print(json.dumps(export(workdir, args.formats.split(","))))
        return
    if not (workdir / "splits" / "splits.parquet").exists():
        subprocess.run([sys.executable, str(ROOT / "bench" / "metadata.py"), "--workdir", str(workdir)], check=True)
    for formats in ("csv,parquet", "jsonld"):
        run = [sys.executable, __file__, "--workdir", str(workdir), "--formats", formats]
        out = subprocess.run(run, check=True, capture_output=True, text=True)
        print(out.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    main()
