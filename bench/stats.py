"""Benchmark: the statistics stage (``stats.stage.run_stats``: read the release, every table, stats.json, the
figures) on a release of BIOSCAN-5M size, next to a baseline from the same run: reading the same Parquet
columns alone with pyarrow.

Without ``--release`` it first writes a release of ``--records`` generated rows (default 5,150,850, the published
size) in the release layout: the 23 columns as the metadata Parquet (``bioscan5m/metadata/parquet/data/{split}-
00000-of-00001.parquet``, the export's dictionary schema), split sizes in the published proportions, labels
missing at the published rates (species 9.2 %, genus 23.8 %, ...) over a 55-order / 934-family / 7,605-genus /
22,622-species tree, 324,411 BINs, barcodes of 640-680 nt (a few substitutions from one of 4,096 parents),
3,000 collection sites and size fields. It is written batch by batch from numpy: memory for one batch.

Each measured step runs in its own process; wall time, CPU time and peak RSS come from that process's rusage
(``os.wait4``: ``RUSAGE_CHILDREN`` of one child). The last line printed is every figure as JSON.

    python bench/stats.py --records 100000        # a quick check
    python bench/stats.py                         # 5,150,850 records (target: <= 3 min and <= 6 GB)
    python bench/stats.py --release results/release
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "workflow"))

FULL_SIZE = 5_150_850
TARGET = {"records": FULL_SIZE, "wall_s": 180, "peak_rss_gb": 6.0}
TARGET_TEXT = "5.15M records: run_stats <= 3 min wall and <= 6 GB peak RSS"
BATCH = 250_000
# published labelled shares (the dataset spec): a row is labelled at a rank when its draw is below the share
LABELLED = {
    "phylum": 1.0,
    "class": 0.999,
    "order": 0.997,
    "family": 0.958,
    "subfamily": 0.286,
    "genus": 0.238,
    "species": 0.092,
}
TREE = {"order": 55, "family": 934, "genus": 7_605, "species": 22_622}
BINS = 324_411
SITES = 3_000


def _dictionary(indices, present, names):
    import numpy as np
    import pyarrow as pa

    return pa.DictionaryArray.from_arrays(
        pa.array(indices.astype(np.int32), mask=~present), pa.array(names, pa.string())
    )


def _batch(rng, start: int, n: int, split: str, names: dict, parents, sites):
    """One batch of ``n`` generated release rows (the export's dictionary schema)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    from bioscan_rebuild.export.spool import dictionary_schema

    species = (rng.pareto(1.2, n) * 50).astype(np.int64) % TREE["species"]  # a long tail
    codes = {"species": species}
    for rank in ("genus", "family", "order"):  # each rank's parent by integer scaling: a consistent tree
        codes[rank] = species * TREE[rank] // TREE["species"]
    codes["subfamily"] = codes["family"] * 2 + (codes["genus"] % 2)
    codes["class"] = np.zeros(n, dtype=np.int64)
    codes["phylum"] = np.zeros(n, dtype=np.int64)
    depth = rng.random(n)
    columns = {
        "processid": pc.binary_join_element_wise("BENCH", pa.array(np.arange(start, start + n)).cast(pa.string()), ""),
        "sampleid": pa.nulls(n, pa.string()),
    }
    for rank in LABELLED:
        present = depth < LABELLED[rank]
        columns[rank] = _dictionary(codes[rank], present, names[rank])
    columns["taxon"] = columns["order"]
    bins = (species * 14 + rng.integers(0, 14, n)) % BINS
    columns["dna_bin"] = _dictionary(bins, rng.random(n) < 0.997, names["dna_bin"])
    length = parents.shape[1]
    start_at, end_at = rng.integers(0, 20, n), length - rng.integers(0, 20, n)
    letters = parents[bins % len(parents)]
    hits = rng.poisson(3, n)
    rows = np.repeat(np.arange(n), hits)
    cols = rng.integers(0, length, rows.size)
    letters[rows, cols] = np.frombuffer(b"ACGT", dtype=np.uint8)[rng.integers(0, 4, rows.size)]
    keep = (np.arange(length) >= start_at[:, None]) & (np.arange(length) < end_at[:, None])
    offsets = np.concatenate([[0], np.cumsum(end_at - start_at)]).astype(np.int32)
    columns["dna_barcode"] = pa.StringArray.from_buffers(
        n, pa.py_buffer(offsets), pa.py_buffer(letters[keep].tobytes())
    )
    country = rng.integers(0, len(names["country"]), n)
    columns["country"] = _dictionary(country, rng.random(n) < 0.99, names["country"])
    columns["province_state"] = _dictionary(country * 4 + rng.integers(0, 4, n), rng.random(n) < 0.9, names["province"])
    located = rng.random(n) < 0.97
    site = rng.integers(0, len(sites), n)  # a few thousand trap sites, as in BIOSCAN-5M
    columns["coord-lat"] = pa.array(sites[site, 0], mask=~located)
    columns["coord-lon"] = pa.array(sites[site, 1], mask=~located)
    sized = rng.random(n) < 0.98
    columns["image_measurement_value"] = pa.array(np.round(rng.lognormal(9, 1.2, n)).astype(np.int64), mask=~sized)
    columns["area_fraction"] = pa.array(np.round(rng.uniform(0.001, 0.6, n), 4), mask=~sized)
    columns["scale_factor"] = pa.array(np.round(rng.lognormal(0, 0.5, n), 4), mask=~sized)
    columns["inferred_ranks"] = pa.array(np.zeros(n, dtype=np.uint8))
    columns["split"] = _dictionary(np.zeros(n), np.ones(n, dtype=bool), [split])
    columns["index_bioscan_1M_insect"] = pa.nulls(n, pa.int64())
    columns["chunk"] = _dictionary(rng.integers(0, 256, n), np.ones(n, dtype=bool), names["chunk"])
    schema = dictionary_schema()
    return pa.table([columns[f.name].cast(f.type) for f in schema], schema=schema)


def build_release(outdir: Path, records: int, seed: int = 0) -> dict:
    """Write a generated release of ``records`` rows under ``outdir`` (the metadata Parquet only)."""
    import numpy as np
    import pyarrow.parquet as pq

    from bioscan_rebuild.core.schemas import SPLITS
    from bioscan_rebuild.export.layout import PARQUET_DIR, ROOT
    from bioscan_rebuild.export.spool import DICTIONARY_COLUMNS, dictionary_schema
    from bioscan_rebuild.stats.compute import PUBLISHED_5M

    rng = np.random.default_rng(seed)
    names = {rank: [f"{rank.capitalize()}{i}" for i in range(size)] for rank, size in TREE.items()}
    names["species"] = [f"Genus{i * TREE['genus'] // TREE['species']} species{i}" for i in range(TREE["species"])]
    names["subfamily"] = [f"Subfamily{i}" for i in range(2 * TREE["family"])]
    names["class"], names["phylum"] = ["Insecta"], ["Arthropoda"]
    names["dna_bin"] = [f"BOLD:B{i:06d}" for i in range(BINS)]
    names["country"] = [f"Country{i}" for i in range(40)]
    names["province"] = [f"Province{i}" for i in range(160)]
    names["chunk"] = [f"{i:02x}" for i in range(256)]
    parents = np.frombuffer(b"ACGT", dtype=np.uint8)[rng.integers(0, 4, (4096, 680))]
    sites = np.round(np.column_stack([rng.uniform(-40, 60, SITES), rng.uniform(-130, 150, SITES)]), 4)
    folder = outdir / ROOT / PARQUET_DIR
    folder.mkdir(parents=True, exist_ok=True)
    shares = np.array([PUBLISHED_5M["splits"][s] for s in SPLITS], dtype=float)
    sizes = np.floor(records * shares / shares.sum()).astype(int)
    sizes[0] += records - sizes.sum()
    written = 0
    for split, size in zip(SPLITS, sizes):
        if not size:
            continue
        with pq.ParquetWriter(
            folder / f"{split}-00000-of-00001.parquet",
            dictionary_schema(),
            compression="zstd",
            use_dictionary=list(DICTIONARY_COLUMNS),
        ) as writer:
            for first in range(0, size, BATCH):
                n = min(BATCH, size - first)
                writer.write_table(_batch(rng, written, n, split, names, parents, sites))
                written += n
    return {"records": int(written), "splits": dict(zip(SPLITS, map(int, sizes)))}


def _measure(code: str, *args: str) -> dict:
    """Run ``code`` in a fresh Python process; its wall time, CPU time and peak RSS (its own rusage)."""
    env = dict(os.environ, PYTHONPATH=str(REPO / "workflow"))
    started = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-c", code, *args], env=env, stdout=subprocess.PIPE)
    output = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode:
        raise SystemExit(f"the measured step failed (exit {process.returncode}): {code.splitlines()[0]}")
    result = {
        "wall_s": round(wall, 2),
        "cpu_s": round(usage.ru_utime + usage.ru_stime, 2),
        "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
    }
    last = output.decode().strip().splitlines()
    if last:
        result["output"] = json.loads(last[-1])
    return result


STATS_CODE = """
import json, sys
from bioscan_rebuild.stats.stage import run_stats
summary = run_stats(sys.argv[1], sys.argv[2], seed=0, pairs_per_comparison=int(sys.argv[3]))
print(json.dumps({"records": summary["records"], "barcodes": summary["barcodes"], "gap": summary["barcode_gap"]}))
"""
BASELINE_CODE = """
import json, sys
from pathlib import Path
import pyarrow as pa
import pyarrow.parquet as pq
files, columns = json.loads(sys.argv[1]), json.loads(sys.argv[2])
table = pa.concat_tables(pq.read_table(f, columns=columns) for f in files)  # held together, as run_stats holds it
print(json.dumps({"records": table.num_rows}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--release", help="an existing release folder (else one is generated)")
    parser.add_argument("--records", type=int, default=FULL_SIZE, help="rows of the generated release")
    parser.add_argument("--pairs", type=int, default=2000, help="barcode pairs per comparison")
    parser.add_argument("--workdir", help="where to write the generated release and the outputs (default: /tmp)")
    args = parser.parse_args()
    from bioscan_rebuild.export.layout import PARQUET_DIR
    from bioscan_rebuild.stats.compute import STAT_COLUMNS
    from bioscan_rebuild.stats.stage import release_root

    print(f"target: {TARGET_TEXT}", flush=True)
    with tempfile.TemporaryDirectory(dir=args.workdir, prefix="bench-stats-") as tmp:
        tmp = Path(tmp)
        figures = {"target": TARGET_TEXT}
        release = Path(args.release) if args.release else tmp / "release"
        if not args.release:
            started = time.perf_counter()
            built = build_release(release, args.records)
            figures["generated"] = {**built, "build_s": round(time.perf_counter() - started, 1)}
            print(f"generated {built['records']:,} records in {figures['generated']['build_s']} s", flush=True)
        files = sorted(str(p) for p in (release_root(release) / PARQUET_DIR).glob("*.parquet"))
        if not files:
            raise SystemExit(f"{release}: no metadata Parquet to time (the baseline reads it)")
        figures["baseline_read"] = _measure(BASELINE_CODE, json.dumps(files), json.dumps(list(STAT_COLUMNS)))
        print(f"baseline (pyarrow reads the columns): {figures['baseline_read']}", flush=True)
        figures["run_stats"] = _measure(STATS_CODE, str(release), str(tmp / "stats"), str(args.pairs))
        print(f"run_stats: {figures['run_stats']}", flush=True)
        records = figures["run_stats"]["output"]["records"]
        figures["records"] = records
        figures["over_baseline"] = {
            "wall_x": round(figures["run_stats"]["wall_s"] / max(figures["baseline_read"]["wall_s"], 1e-9), 2),
            "rss_x": round(figures["run_stats"]["peak_rss_mb"] / max(figures["baseline_read"]["peak_rss_mb"], 1e-9), 2),
        }
        if records >= FULL_SIZE:
            figures["within_target"] = (
                figures["run_stats"]["wall_s"] <= TARGET["wall_s"]
                and figures["run_stats"]["peak_rss_mb"] <= TARGET["peak_rss_gb"] * 1024
            )
        else:
            figures["within_target"] = None  # the target is for the full size
        print(json.dumps(figures, sort_keys=True))


if __name__ == "__main__":
    main()
