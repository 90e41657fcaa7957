"""Benchmark: the real workflow on 5,150,850 generated records in 50 batches, end to end.

Generates the batches with the streaming generator (metadata-only BOLD exports) and the sample's two photo
batches for a photo subset, sets 256 shards and ``ingest.require_images: false``, times the dry run (DAG size
and planning time), runs the workflow (2 cores) and prints a table per stage from the rules' benchmark files:
wall seconds (summed over jobs), CPU seconds, peak RSS of one job, MB written; plus the run's wall time and the
image stage's throughput per core on the subset, projected to 5.15M photos.

Targets (issue 13, this 2-core machine): metadata path <= 15 min and <= 10 GB peak; dry run <= 20 s.

    python bench/scale.py [--workdir /tmp/bench-scale] [--records 5150850] [--batches 50] [--photos 2000]
                          [--shards 256] [--photo-job-shards 16] [--formats csv,parquet,jsonld,croissant]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "workflow"))


def snakemake(workdir: Path, *args: str) -> tuple[str, float]:
    command = [str(Path(sys.executable).parent / "snakemake"), "--snakefile", str(ROOT / "Snakefile")]
    command += ["--directory", str(workdir), "--cores", "2", *args]
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    start = time.perf_counter()
    result = subprocess.run(command, cwd=workdir, capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - start
    if result.returncode:
        raise SystemExit(result.stdout[-3000:] + result.stderr[-3000:])
    return result.stdout + result.stderr, seconds


def _numbers(row: dict):
    def number(key: str) -> float:
        try:
            return float(row[key])
        except (KeyError, ValueError):  # "NA" where the job ended before a sample
            return 0.0

    return number


def stage_table(workdir: Path) -> dict[str, dict]:
    """Per rule: jobs, wall and CPU seconds (sums), peak RSS of one job (MB), MB written (sum)."""
    table: dict[str, dict] = defaultdict(
        lambda: {"jobs": 0, "wall_s": 0.0, "cpu_s": 0.0, "peak_rss_mb": 0.0, "written_mb": 0.0}
    )
    for path in (workdir / "benchmarks").rglob("*.tsv"):
        parts = path.relative_to(workdir / "benchmarks").parts
        rule = parts[1] if len(parts) > 2 else Path(parts[1]).stem
        with open(path) as handle:
            row = next(csv.DictReader(handle, delimiter="\t"))
        number = _numbers(row)
        entry = table[f"{parts[0]}/{rule}"]
        entry["jobs"] += 1
        entry["wall_s"] += number("s")
        entry["cpu_s"] += number("cpu_time")
        entry["peak_rss_mb"] = max(entry["peak_rss_mb"], number("max_rss"))
        entry["written_mb"] += number("io_out")
    return {k: {m: round(v, 1) for m, v in entry.items()} for k, entry in sorted(table.items())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", default="/tmp/bench-scale")
    parser.add_argument("--records", type=int, default=5_150_850)
    parser.add_argument("--batches", type=int, default=50)
    parser.add_argument("--photos", type=int, default=2000, help="records of the two photo batches")
    parser.add_argument("--shards", type=int, default=256)
    parser.add_argument(
        "--photo-job-shards",
        type=int,
        default=16,
        help="the config's photo_job_shards: the subset is ~8 photos a shard",
    )
    parser.add_argument("--formats", default="csv,parquet,jsonld,croissant")
    args = parser.parse_args()

    from bioscan_rebuild.synth.exports import generate_export, generate_sample

    workdir = Path(args.workdir)
    shutil.rmtree(workdir, ignore_errors=True)
    (workdir / "config").mkdir(parents=True)
    start = time.perf_counter()
    generate_sample(workdir / "resources" / "sample", n_records=args.photos, seed=0)
    config = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    config.update(shards=args.shards, photo_job_shards=args.photo_job_shards)
    config["ingest"]["require_images"] = False
    config["export"]["formats"] = args.formats.split(",")
    per_batch = (args.records - args.photos) // args.batches
    for i in range(args.batches):
        count = per_batch if i < args.batches - 1 else args.records - args.photos - per_batch * (args.batches - 1)
        path = workdir / "resources" / "exports" / f"batch-{i:02d}.tsv"
        generate_export(path, count, seed=1000 + i, prefix=f"S{i:02d}X")
        config["batches"].append({"name": f"batch-{i:02d}", "export": str(path.relative_to(workdir))})
    (workdir / "config" / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    generated = time.perf_counter() - start
    print(json.dumps({"step": "generated", "records": args.records, "seconds": round(generated, 1)}), flush=True)

    plan, dry_seconds = snakemake(workdir, "--dry-run", "--quiet", "rules")
    jobs = int(plan.split("Job stats:")[1].split("\ntotal")[1].split()[0])
    print(json.dumps({"step": "dry-run", "jobs": jobs, "seconds": round(dry_seconds, 1)}), flush=True)
    _, run_seconds = snakemake(workdir)
    stages = stage_table(workdir)
    images = [k for k in stages if k.startswith("images/")]
    photo_logs = (workdir / "logs" / "images" / "process_photos").rglob("*.json")
    photo_summaries = [json.loads(p.read_text()) for p in photo_logs]
    photos = sum(s["photos_processed"] for s in photo_summaries)
    photo_cpu = stages.get("images/process_photos", {}).get("cpu_s", 0.0)
    metadata_path = sum(v["wall_s"] for k, v in stages.items() if k not in images)
    release = json.loads((workdir / "results" / "accounting.json").read_text())["released"]
    print(
        json.dumps(
            {
                "records": args.records,
                "batches": args.batches + 2,
                "shards": args.shards,
                "photo_job_shards": args.photo_job_shards,
                "formats": args.formats,
                "dag_jobs": jobs,
                "dry_run_seconds": round(dry_seconds, 1),
                "run_wall_seconds": round(run_seconds, 1),
                "metadata_path_job_seconds": round(metadata_path, 1),
                "peak_rss_mb": max(v["peak_rss_mb"] for v in stages.values()),
                "released": release,
                "photos_processed": photos,
                "photo_cpu_seconds_per_photo": round(photo_cpu / max(1, photos), 3),
                "projected_cpu_hours_5150850_photos": round(photo_cpu / max(1, photos) * 5_150_850 / 3600, 1),
                "stages": stages,
                "targets": {"metadata_path_minutes": 15, "peak_rss_gb": 10, "dry_run_seconds": 20},
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
