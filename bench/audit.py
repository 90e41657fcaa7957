"""Benchmark: `bioscan-rebuild audit` on a 5.15M-record metadata release (CSV, Parquet, JSON-LD; no images).

Uses the tables ``bench/metadata.py`` leaves in its work folder (runs it first when absent), exports the release
with the formats above, adds what an audit reads beside it (a lineage table, an empty rejects table, the
barcodes' FASTA and the accounting naming the one generated export) and the manifest. Then, in the same run, the
baselines: sha256 of every file of the release (the same 2 threads the audit uses; and coreutils' ``sha256sum``,
one process), then the audit itself in a process of its own (its peak memory is its own).
Target: audit <= 2 x the 2-thread baseline.

    python bench/audit.py [--workdir /tmp/bench-metadata] [--formats csv,parquet,jsonld]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "workflow"))

EXPORT = "bench.tsv"
EXPORT_SHA256 = "0" * 64  # the generated tables have no export file; the lineage and accounting name this one


def build(workdir: Path, formats: tuple[str, ...]) -> Path:
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    from bioscan_rebuild.export.layout import BARCODES_FASTA, RECORDS_LINEAGE, REJECTS
    from bioscan_rebuild.export.layout import ROOT as RELEASE_ROOT
    from bioscan_rebuild.export.release import export_release, write_manifest
    from bioscan_rebuild.metadata.stage import write_fasta_from

    release = workdir / "release-audit"
    if (release / "MANIFEST.json").exists():
        return release
    export_release(
        workdir / "out" / "curated.parquet",
        sorted(workdir.glob("barcodes-*.parquet")),
        workdir / "splits" / "splits.parquet",
        release,
        formats=formats,
        manifest=False,
    )
    ids = pq.read_table(workdir / "splits" / "splits.parquet", columns=["processid"])["processid"]
    n = len(ids)
    lineage = pa.table(
        {
            "processid": ids,
            "batch": pa.array(["bench"] * n),
            "source_file": pa.array([EXPORT] * n),
            "source_sha256": pa.array([EXPORT_SHA256] * n),
        }
    )
    pacsv.write_csv(lineage, release / RELEASE_ROOT / RECORDS_LINEAGE.path)
    # the side files the audit reads: no record rejected (as the accounting below says) and the barcodes' FASTA
    (release / RELEASE_ROOT / REJECTS.path).write_text('"kind","reason","detail","processid"\n')
    write_fasta_from(
        workdir / "out" / "curated.parquet",
        sorted(workdir.glob("barcodes-*.parquet")),
        release / RELEASE_ROOT / BARCODES_FASTA.path,
        workdir / "splits" / "splits.parquet",
    )
    accounting = {"batches": {"export:bench": {"export": EXPORT, "export_sha256": EXPORT_SHA256}}, "stages": {}}
    (release / "accounting.json").write_text(json.dumps(accounting))
    write_manifest(release)
    return release


def hash_everything(release: Path) -> dict:
    from bioscan_rebuild.core.io import file_sha256

    files = sorted(p for p in release.rglob("*") if p.is_file())
    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=2) as pool:
        list(pool.map(file_sha256, files))
    return {"files": len(files), "bytes": sum(p.stat().st_size for p in files), "seconds": time.perf_counter() - start}


def sha256sum(release: Path) -> dict:
    """The same files through coreutils' sha256sum (one process): what checking the manifest by hand costs."""
    files = sorted(str(p) for p in release.rglob("*") if p.is_file())
    start = time.perf_counter()
    subprocess.run(["sha256sum", *files], check=True, capture_output=True)
    return {"seconds": time.perf_counter() - start}


AUDIT = """
import json, sys, time
sys.path.insert(0, sys.argv[2])
from bioscan_rebuild.export.audit import audit_release
start = time.perf_counter()
summary = audit_release(sys.argv[1])
seconds = time.perf_counter() - start
peak = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(json.dumps({**summary, "seconds": seconds, "peak_gb": round(peak / 1024**2, 2)}))
"""


def audit_in_a_child(release: Path) -> dict:
    """The audit in a process of its own: its time, and its own peak memory (VmHWM), not this one's export."""
    done = subprocess.run(
        [sys.executable, "-c", AUDIT, str(release), str(ROOT / "workflow")], capture_output=True, text=True, check=True
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workdir", default="/tmp/bench-metadata")
    parser.add_argument("--formats", default="csv,parquet,jsonld")
    args = parser.parse_args()
    workdir = Path(args.workdir)
    if not (workdir / "splits" / "splits.parquet").exists():
        subprocess.run([sys.executable, str(ROOT / "bench" / "metadata.py"), "--workdir", str(workdir)], check=True)
    start = time.perf_counter()
    release = build(workdir, tuple(args.formats.split(",")))
    print(json.dumps({"step": "build", "seconds": round(time.perf_counter() - start, 1)}), flush=True)

    hash_everything(release)  # warm the page cache, so neither measurement pays for the first read alone
    baseline = hash_everything(release)
    coreutils = sha256sum(release)
    summary = audit_in_a_child(release)
    audit_seconds = summary["seconds"]
    print(
        json.dumps(
            {
                "records": summary["records"],
                "files": baseline["files"],
                "gigabytes": round(baseline["bytes"] / 1e9, 2),
                "hash_seconds": round(baseline["seconds"], 1),
                "audit_seconds": round(audit_seconds, 1),
                "ratio": round(audit_seconds / baseline["seconds"], 2),
                "sha256sum_seconds": round(coreutils["seconds"], 1),
                "ratio_to_sha256sum": round(audit_seconds / coreutils["seconds"], 2),
                "target_ratio": 2.0,
                "peak_rss_gb": summary["peak_gb"],  # the audit's own process (the export ran in this one)
                "ok": summary["ok"],
                "problems": summary["problems"][:5],
            }
        )
    )


if __name__ == "__main__":
    main()
