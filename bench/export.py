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
    from bioscan_rebuild.export.release import export_release

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


def spot_check(workdir: Path, sample: int = 500) -> dict:
    """The same records in CSV, Parquet and JSON-LD at scale: ``sample`` processids (every n-th of the CSV),
    streamed from each format and compared on family, genus, BIN, split and the barcode's sha256."""
    import hashlib

    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    from bioscan_rebuild.export.layout import CSV_PATH

    csv_root = workdir / "release-csv-parquet" / "bioscan5m" / "metadata"
    fields = ["processid", "family", "genus", "dna_bin", "split", "dna_barcode"]

    def digest(row):
        return (
            row["family"],
            row["genus"],
            row["dna_bin"],
            row["split"],
            hashlib.sha256((row["dna_barcode"] or "").encode()).hexdigest(),
        )

    picked, seen = {}, 0
    options = pacsv.ConvertOptions(include_columns=fields, strings_can_be_null=True)
    rows = sum(pq.ParquetFile(p).metadata.num_rows for p in (csv_root / "parquet" / "data").glob("*.parquet"))
    step = max(1, rows // sample)  # this release's size (a fixed 5.15M checked 2 records of a small one)
    with pacsv.open_csv(csv_root.parent / CSV_PATH, convert_options=options) as reader:
        for batch in reader:
            for row in batch.to_pylist():
                if seen % step == 0:
                    picked[row["processid"]] = digest(row)
                seen += 1
    parquet = {}
    for path in sorted((csv_root / "parquet" / "data").glob("*.parquet")):
        for batch in pq.ParquetFile(path).iter_batches(columns=fields):
            for row in batch.to_pylist():
                if row["processid"] in picked:
                    parquet[row["processid"]] = digest(row)
    linked = {}
    for path in sorted((workdir / "release-jsonld" / "bioscan5m" / "metadata" / "jsonld").glob("*.jsonld")):
        with open(path) as handle:
            for line in handle:
                if not line.startswith('{"@id"') or '"occurrenceID"' not in line:
                    continue
                node = json.loads(line.rstrip().rstrip(","))
                if node["occurrenceID"] in picked:
                    linked[node["occurrenceID"]] = (
                        node.get("family"),
                        node.get("genus"),
                        node.get("taxonConceptID"),
                        node.get("split"),
                        node.get("barcodeSha256"),
                    )
    return {
        "records_checked": len(picked),
        "parquet_agree": sum(parquet.get(k) == v for k, v in picked.items()),
        "jsonld_agree": sum(linked.get(k) == v for k, v in picked.items()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workdir", default="/tmp/bench-metadata")
    parser.add_argument("--formats", help="internal: one export run")
    parser.add_argument("--spot-check-only", action="store_true", help="only compare the formats already written")
    args = parser.parse_args()
    workdir = Path(args.workdir)
    if args.formats:
        print(json.dumps(export(workdir, args.formats.split(","))))
        return
    if args.spot_check_only:
        print(json.dumps(spot_check(workdir)))
        return
    if not (workdir / "splits" / "splits.parquet").exists():
        subprocess.run([sys.executable, str(ROOT / "bench" / "metadata.py"), "--workdir", str(workdir)], check=True)
    for formats in ("csv,parquet", "jsonld"):
        run = [sys.executable, __file__, "--workdir", str(workdir), "--formats", formats]
        out = subprocess.run(run, check=True, capture_output=True, text=True)
        print(out.stdout.strip().splitlines()[-1])
    print(json.dumps(spot_check(workdir)))


if __name__ == "__main__":
    main()
