"""Benchmark: the ingest stage on a large generated BOLD export (metadata only).

Prints wall time and peak memory of each ingest step, next to a baseline measured in the same
run on the same file (pandas.read_csv of the whole export as strings), because this machine
is shared and absolute numbers drift.

    python bench/ingest.py --records 1000000 --shards 50
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHILD = r"""
import json, sys, time
sys.path.insert(0, {pkg!r})
step, args = sys.argv[1], json.loads(sys.argv[2])
t = time.perf_counter()
if step == "baseline":
    import csv, pandas as pd
    frame = pd.read_csv(args["export"], sep="\t", dtype=str, quoting=csv.QUOTE_NONE, keep_default_na=False)
    info = {{"rows": len(frame)}}
elif step == "ingest":
    from bioscan_rebuild.ingest.local import ingest_local
    summary = ingest_local([args["export"]], [], args["out"], shards=args["shards"])
    info = {{k: summary[k] for k in ("inputs", "kept", "rejected")}}
elif step == "parse":
    from bioscan_rebuild.ingest.parse import parse_to_shards
    info = parse_to_shards(args["export"], "bench", args["shards"], args["out"])
# VmHWM, not ru_maxrss: the latter survives exec and would report the parent's peak.
peak_kb = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM"))
print(json.dumps({{"seconds": time.perf_counter() - t, "peak_mb": peak_kb / 1024, "info": info}}))
"""


def run_step(step: str, **args) -> dict:
    code = CHILD.format(pkg=str(Path(__file__).resolve().parents[1] / "workflow"))
    out = subprocess.run(
        [sys.executable, "-c", code, step, json.dumps(args)], check=True, capture_output=True, text=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--shards", type=int, default=50)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "workflow"))
    from bioscan_rebuild.synth.exports import LAYOUT_COLUMNS, generate_export

    parser.add_argument("--layout", default="bcdm2024", choices=tuple(LAYOUT_COLUMNS))
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        export = Path(tmp) / "export.tsv"
        t = time.perf_counter()
        rows = generate_export(export, args.records, seed=1, layout=args.layout)
        print(
            f"generated {rows:,} rows ({export.stat().st_size / 1e6:,.0f} MB, layout {args.layout}) "
            f"in {time.perf_counter() - t:.1f} s"
        )
        baseline = run_step("baseline", export=str(export))
        print(
            f"baseline pandas.read_csv (all columns as str): {baseline['seconds']:.1f} s, "
            f"peak {baseline['peak_mb']:,.0f} MB"
        )
        parse = run_step("parse", export=str(export), shards=args.shards, out=str(Path(tmp) / "parse"))
        print(
            f"ingest parse -> {args.shards} shards: {parse['seconds']:.1f} s, peak {parse['peak_mb']:,.0f} MB "
            f"({parse['info']['records']:,} records, rejects {parse['info']['rejected']})"
        )
        whole = run_step("ingest", export=str(export), shards=args.shards, out=str(Path(tmp) / "all"))
        print(
            f"whole ingest stage (parse + {args.shards} shard joins + accounting, one process): "
            f"{whole['seconds']:.1f} s, peak {whole['peak_mb']:,.0f} MB; {json.dumps(whole['info'])}"
        )
        print(f"parse / baseline = {parse['seconds'] / baseline['seconds']:.2f}")


if __name__ == "__main__":
    main()
