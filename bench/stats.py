"""Benchmark: the statistics stage on BIOSCAN-5M size data: the release path (``stats.stage.run_stats``: read the
release, every table, stats.json, the figures) and, with ``--workflow``, the workflow path (what the ``stats`` rule
runs: ``stats.stage.read_workflow_table`` on the export's inputs, then ``stats_of_table``), next to a baseline from
the same run: reading the release's Parquet columns alone with pyarrow.

Without ``--release`` it first writes a release of ``--records`` generated rows (default 5,150,850, the published
size) in the release layout: the 23 columns as the metadata Parquet (``bioscan5m/metadata/parquet/data/{split}-
00000-of-00001.parquet``, the export's dictionary schema), split sizes in the published proportions, labels
missing at the published rates (species 9.2 %, genus 23.8 %, ...) over a 55-order / 934-family / 7,605-genus /
22,622-species tree, 324,411 BINs, barcodes of 640-680 nt (a few substitutions from one of 4,096 parents),
3,000 collection sites and size fields. It is written shard by shard from numpy: memory for one shard (and one
release row group).

``--workflow`` also writes the workflow's inputs of the same records, as the stages write them: curated.parquet
(the metadata stage's 19 columns), one barcode table per shard (``barcodes/shard-NNN.parquet``, ``--shards``
256 keyed by ``core.schemas.shard_of``, about 20,000 records each), splits.parquet and one image-results table per
shard (with the size fields), plus 1 % curated records without a split and 0.5 % rejected barcodes, which the
release leaves out. The release lists the records in the export's order (split, shard, shard order), so both paths
must write the same tables and stats.json byte for byte (``workflow_differs`` lists any that do not).

Each measured step runs in its own process; wall time, CPU time and peak RSS come from that process's rusage
(``os.wait4``: ``RUSAGE_CHILDREN`` of one child). It prints a table of the steps, then every figure as JSON (the
last line). ``--source DIR`` times another copy of the package (e.g. ``git archive`` of an older commit).

    python bench/stats.py --records 100000                # a quick check
    python bench/stats.py                                 # 5,150,850 records (target: <= 3 min and <= 6 GB)
    python bench/stats.py --workflow                      # ... and the workflow path
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
SHARDS = 256  # about 20,000 records a shard at the published size (config/README.md: shards)
NO_SPLIT = 0.01  # --workflow: curated records without a split (no specimen in the photo), as a share of --records
REJECTED = 0.005  # --workflow: barcodes the metadata stage rejected (in the barcode tables only)


def _dictionary(indices, present, names):
    import numpy as np
    import pyarrow as pa

    names = names if isinstance(names, pa.Array) else pa.array(names, pa.string())
    return pa.DictionaryArray.from_arrays(pa.array(indices.astype(np.int32), mask=~present), names)


def _hex(rng, n: int, width: int):
    """``n`` random lower-case hex strings of ``width`` digits (digests: image hashes, barcode keys)."""
    import numpy as np
    import pyarrow as pa

    digits = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)[rng.integers(0, 16, (n, width))]
    offsets = np.arange(n + 1, dtype=np.int32) * width
    return pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(digits.tobytes()))


def _batch(rng, ids, split_codes, names: dict, parents, sites):
    """Generated release rows (the export's dictionary schema) of the records ``ids`` (``BENCH{id}``), in the
    splits ``split_codes`` (``SPLITS`` positions; < 0: none, a record the release leaves out)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    from bioscan_rebuild.core.schemas import SPLITS
    from bioscan_rebuild.export.spool import dictionary_schema

    n = len(ids)
    species = (rng.pareto(1.2, n) * 50).astype(np.int64) % TREE["species"]  # a long tail
    codes = {"species": species}
    for rank in ("genus", "family", "order"):  # each rank's parent by integer scaling: a consistent tree
        codes[rank] = species * TREE[rank] // TREE["species"]
    codes["subfamily"] = codes["family"] * 2 + (codes["genus"] % 2)
    codes["class"] = np.zeros(n, dtype=np.int64)
    codes["phylum"] = np.zeros(n, dtype=np.int64)
    depth = rng.random(n)
    number = pa.array(np.asarray(ids, dtype=np.int64)).cast(pa.string())
    columns = {
        "processid": pc.binary_join_element_wise("BENCH", number, ""),
        "sampleid": pc.binary_join_element_wise("BIOUG", number, ""),
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
    split_codes = np.asarray(split_codes)
    columns["split"] = _dictionary(np.maximum(split_codes, 0), split_codes >= 0, names.get("split", list(SPLITS)))
    columns["index_bioscan_1M_insect"] = pa.nulls(n, pa.int64())
    columns["chunk"] = _dictionary(rng.integers(0, 256, n), np.ones(n, dtype=bool), names["chunk"])
    schema = dictionary_schema()
    return pa.table([columns[f.name].cast(f.type) for f in schema], schema=schema)


def _names() -> dict:
    import pyarrow as pa

    names = {rank: [f"{rank.capitalize()}{i}" for i in range(size)] for rank, size in TREE.items()}
    names["species"] = [f"Genus{i * TREE['genus'] // TREE['species']} species{i}" for i in range(TREE["species"])]
    names["subfamily"] = [f"Subfamily{i}" for i in range(2 * TREE["family"])]
    names["class"], names["phylum"] = ["Insecta"], ["Arthropoda"]
    names["dna_bin"] = [f"BOLD:B{i:06d}" for i in range(BINS)]
    names["country"] = [f"Country{i}" for i in range(40)]
    names["province"] = [f"Province{i}" for i in range(160)]
    names["chunk"] = [f"{i:02x}" for i in range(256)]
    return {name: pa.array(values, pa.string()) for name, values in names.items()}  # built once, shared by every shard


class _WorkflowWriter:
    """The workflow's inputs of the generated records, as the stages write them: ``curated.parquet`` (the
    metadata stage's columns), ``barcodes/shard-NNN.parquet`` (its barcode tables, one per shard),
    ``splits.parquet`` (processid, split, chunk; sorted by processid) and ``images/shard-NNN/images.parquet``
    (the image stage's results, one per shard)."""

    def __init__(self, folder: Path):
        import pyarrow as pa
        import pyarrow.parquet as pq

        from bioscan_rebuild.core.schemas import RANKS

        self.folder = folder
        (folder / "barcodes").mkdir(parents=True, exist_ok=True)
        strings = ("processid", "sampleid", *RANKS, "dna_bin", "country", "province_state")
        self.curated_schema = pa.schema(
            [(name, pa.large_string()) for name in strings]
            + [("lat", pa.float64()), ("lon", pa.float64())]
            + [(name, pa.large_string()) for name in ("batch", "barcode_key", "taxon")]
            + [("inferred_ranks", pa.uint8()), ("placeholder_species", pa.bool_())]
        )
        self.curated = pq.ParquetWriter(folder / "curated.parquet", self.curated_schema, compression="zstd")
        self.pending: list = []  # curated rows not written yet (the metadata stage writes 100,000-row groups)
        self.splits: list = []
        self.barcodes: list[str] = []
        self.images: list[str] = []

    def add_shard(self, shard: int, table, split_codes, rng) -> None:
        """One shard's records (``table``: release rows in the shard's order; ``split_codes`` < 0: no split,
        -1 in the curated table (e.g. no specimen in the photo), -2 a rejected barcode (barcode table only))."""
        import numpy as np
        import pyarrow as pa

        from bioscan_rebuild.core.io import write_parquet
        from bioscan_rebuild.core.schemas import IMAGE_PACKAGES, RANKS, SPLITS, shard_name
        from bioscan_rebuild.images.shard import IMAGE_RECORD_SCHEMA
        from bioscan_rebuild.metadata.stage import BARCODE_TABLE_SCHEMA

        n = table.num_rows
        keys = _hex(rng, n, 32)
        length = _lengths(table["dna_barcode"])
        rejected = split_codes == -2
        status = np.where(rejected, "short_barcode", "ok")
        counts = pa.array(np.zeros(n, dtype=np.int64))
        barcode_columns = {
            "processid": table["processid"],
            "dna_barcode": table["dna_barcode"],
            "barcode_status": pa.array(status),
            "raw_length": length,
            "length": length,
            "lowercase": pa.array(np.zeros(n, dtype=bool)),
            "barcode_key": keys,
            **{name: counts for name in ("gap_count", "whitespace_count", "n_leading", "n_trailing")},
            **{name: counts for name in ("n_internal", "n_longest_run", "ambiguity_count")},
        }
        path = self.folder / "barcodes" / f"{shard_name(shard)}.parquet"
        write_parquet(_table(barcode_columns, BARCODE_TABLE_SCHEMA, n), path)
        self.barcodes.append(str(path))
        curated = table.filter(pa.array(~rejected))
        m = curated.num_rows
        sized = curated["area_fraction"].is_valid()
        image_columns = {
            "processid": curated["processid"],
            "image_sha256": _hex(rng, m, 64),
            "image_status": pa.array(np.where(sized.to_numpy(zero_copy_only=False), "ok", "no_object")),
            "image_measurement_value": curated["image_measurement_value"],
            "area_fraction": curated["area_fraction"],
            "scale_factor": curated["scale_factor"],
            "params_key": pa.array(np.full(m, "bench-params")),
            "original_full_is_source": pa.array(np.zeros(m, dtype=bool)),
            **{f"sha256_{package}": _hex(rng, m, 64) for package in IMAGE_PACKAGES},
            "box_source": pa.array(np.full(m, "detector")),
        }
        path = self.folder / "images" / shard_name(shard) / "images.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        write_parquet(_table(image_columns, IMAGE_RECORD_SCHEMA, m), path)
        self.images.append(str(path))
        labels = {name: curated[name] for name in ("processid", "sampleid", *RANKS, "dna_bin", "taxon")}
        labels.update({name: curated[name] for name in ("country", "province_state", "inferred_ranks")})
        curated_columns = {
            **labels,
            "lat": curated["coord-lat"],
            "lon": curated["coord-lon"],
            "batch": pa.array(np.full(m, "bench")),
            "barcode_key": keys.filter(pa.array(~rejected)),
            "placeholder_species": pa.array(np.zeros(m, dtype=bool)),
        }
        self.pending.append(_table(curated_columns, self.curated_schema, m))
        if sum(part.num_rows for part in self.pending) >= 100_000:
            self._flush()
        released = table.filter(pa.array(split_codes >= 0))
        codes = split_codes[split_codes >= 0]
        self.splits.append(
            pa.table(
                {
                    "processid": released["processid"].cast(pa.large_string()),
                    "split": pa.array(np.asarray(SPLITS, dtype=object)[codes], pa.large_string()),
                    "chunk": released["chunk"].cast(pa.string()),
                }
            )
        )

    def _flush(self) -> None:
        import pyarrow as pa

        if self.pending:
            self.curated.write_table(pa.concat_tables(self.pending), row_group_size=100_000)
            self.pending = []

    def close(self) -> dict:
        import pyarrow as pa

        from bioscan_rebuild.core.io import write_parquet

        self._flush()
        self.curated.close()
        splits = pa.concat_tables(self.splits).sort_by("processid")
        self.splits = []
        write_parquet(splits, self.folder / "splits.parquet")
        return {
            "curated": str(self.folder / "curated.parquet"),
            "barcodes": self.barcodes,
            "splits": str(self.folder / "splits.parquet"),
            "images": self.images,
        }


def _lengths(column):
    """Characters per string (int64)."""
    import pyarrow.compute as pc

    return pc.utf8_length(column).cast("int64")


def _table(columns: dict, schema, n: int):
    """``columns`` as a table of ``schema``; the schema's other columns all missing."""
    import pyarrow as pa

    arrays = [columns[f.name].cast(f.type) if f.name in columns else pa.nulls(n, f.type) for f in schema]
    return pa.Table.from_arrays(arrays, schema=schema)


def build_release(
    outdir: Path, records: int, seed: int = 0, *, workflow: Path | None = None, shards: int = SHARDS
) -> dict:
    """Write a generated release of ``records`` rows under ``outdir`` (the metadata Parquet only) and, with
    ``workflow``, the workflow's inputs of the same records there (:class:`_WorkflowWriter`; plus
    :data:`NO_SPLIT` curated records without a split and :data:`REJECTED` rejected barcodes, which the release
    leaves out).

    Records are generated shard by shard (``core.schemas.shard_of`` of their processid); within a shard file a
    split's records keep their order, and the release lists each split's records shard by shard: the export's
    order, so the workflow path and the release path see the same rows in the same order."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from bioscan_rebuild.core.schemas import SPLITS, shard_of
    from bioscan_rebuild.export.layout import PARQUET_DIR, ROOT
    from bioscan_rebuild.export.spool import DICTIONARY_COLUMNS, dictionary_schema
    from bioscan_rebuild.stats.compute import PUBLISHED_5M

    rng = np.random.default_rng(seed)
    names = _names()
    parents = np.frombuffer(b"ACGT", dtype=np.uint8)[rng.integers(0, 4, (4096, 680))]
    sites = np.round(np.column_stack([rng.uniform(-40, 60, SITES), rng.uniform(-130, 150, SITES)]), 4)
    folder = outdir / ROOT / PARQUET_DIR
    folder.mkdir(parents=True, exist_ok=True)
    shares = np.array([PUBLISHED_5M["splits"][s] for s in SPLITS], dtype=float)
    sizes = np.floor(records * shares / shares.sum()).astype(int)
    sizes[0] += records - sizes.sum()
    extra = (round(records * NO_SPLIT), round(records * REJECTED)) if workflow else (0, 0)
    split_code = np.repeat(np.arange(len(SPLITS)), sizes)
    split_code = np.concatenate([split_code, np.full(extra[0], -1), np.full(extra[1], -2)])
    rng.shuffle(split_code)  # record i (BENCH{i}) is in split split_code[i]
    shard = shard_of([f"BENCH{i}" for i in range(split_code.size)], shards)
    by_shard = np.argsort(shard, kind="stable")
    bounds = np.searchsorted(shard[by_shard], np.arange(shards + 1))
    writers: dict[int, pq.ParquetWriter] = {}
    pending: dict[int, list] = {code: [] for code in range(len(SPLITS))}

    def flush(code: int) -> None:
        if not pending[code]:
            return
        if code not in writers:
            writers[code] = pq.ParquetWriter(
                folder / f"{SPLITS[code]}-00000-of-00001.parquet",
                dictionary_schema(),
                compression="zstd",
                use_dictionary=list(DICTIONARY_COLUMNS),
            )
        writers[code].write_table(pa.concat_tables(pending[code]), row_group_size=BATCH)
        pending[code] = []

    inputs = _WorkflowWriter(workflow) if workflow else None
    written = 0
    for number in range(shards):
        ids = by_shard[bounds[number] : bounds[number + 1]]
        codes = split_code[ids]
        # the shard file's order: split by split (each split's records in id order), the records the release
        # leaves out scattered among them
        order = np.argsort(np.where(codes >= 0, codes, rng.integers(0, len(SPLITS), codes.size)), kind="stable")
        ids, codes = ids[order], codes[order]
        table = _batch(rng, ids, codes, names, parents, sites)
        for code in np.unique(codes[codes >= 0]).tolist():
            pending[code].append(table.filter(pa.array(codes == code)))
            written += int((codes == code).sum())
            if sum(part.num_rows for part in pending[code]) >= BATCH:
                flush(code)
        if inputs:
            inputs.add_shard(number, table, codes, rng)
    for code in range(len(SPLITS)):
        flush(code)
    for writer in writers.values():
        writer.close()
    built = {"records": int(written), "splits": dict(zip(SPLITS, map(int, sizes)))}
    if inputs:
        built["workflow_inputs"] = inputs.close()
        built["workflow_records"] = {"no_split": extra[0], "rejected_barcodes": extra[1], "shards": shards}
    return built


def _measure(code: str, *args: str, source: Path | None = None) -> dict:
    """Run ``code`` in a fresh Python process (the package from ``source``, default the repository's
    ``workflow/``); its wall time, CPU time and peak RSS (its own rusage)."""
    return _run([sys.executable, "-c", code, *args], source, code.strip().splitlines()[0])


def _run(argv: list[str], source: Path | None, what: str) -> dict:
    """``argv`` as a child process: wall time, CPU time and peak RSS from its rusage (``os.wait4``), and the last
    line it prints, as JSON. A child's peak RSS counts from its parent's at the start (the kernel carries the
    high-water mark of the memory the child replaces by exec): this process stays small for that, and the
    data are generated in a child of their own."""
    env = dict(os.environ, PYTHONPATH=str(source or REPO / "workflow"))
    started = time.perf_counter()
    process = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE)
    output = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode:
        raise SystemExit(f"the measured step failed (exit {process.returncode}): {what}")
    result = {
        "wall_s": round(wall, 2),
        "cpu_s": round(usage.ru_utime + usage.ru_stime, 2),
        "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
    }
    last = output.decode().strip().splitlines()
    if last:
        result["output"] = json.loads(last[-1])
    return result


def prepare(release: Path, records: int, *, generate: bool, workflow: Path | None, shards: int) -> dict:
    """Generate the release (and the workflow's inputs) unless given; the release's metadata Parquet files and the
    columns the statistics read (for the baseline). Runs in a child process (``--prepare``)."""
    from bioscan_rebuild.export.layout import PARQUET_DIR
    from bioscan_rebuild.stats.compute import STAT_COLUMNS
    from bioscan_rebuild.stats.stage import release_root

    built = build_release(release, records, workflow=workflow, shards=shards) if generate else None
    files = sorted(str(p) for p in (release_root(release) / PARQUET_DIR).glob("*.parquet"))
    return {"built": built, "files": files, "columns": list(STAT_COLUMNS)}


STATS_CODE = """
import json, sys
from bioscan_rebuild.stats.stage import run_stats
summary = run_stats(sys.argv[1], sys.argv[2], seed=0, pairs_per_comparison=int(sys.argv[3]))
print(json.dumps({"records": summary["records"], "barcodes": summary["barcodes"], "gap": summary["barcode_gap"]}))
"""
WORKFLOW_CODE = """
import json, sys, time
from bioscan_rebuild.stats.stage import read_workflow_table, stats_of_table
inputs = json.loads(open(sys.argv[1]).read())
started = time.perf_counter()
table = read_workflow_table(inputs["curated"], inputs["barcodes"], inputs["splits"], inputs["images"])
read_s = time.perf_counter() - started
summary = stats_of_table(table, sys.argv[2], seed=0, pairs_per_comparison=int(sys.argv[3]))
figures = {"records": summary["records"], "barcodes": summary["barcodes"], "gap": summary["barcode_gap"]}
print(json.dumps({**figures, "read_s": round(read_s, 2), "table_mb": round(table.nbytes / 2**20, 1)}))
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
STEPS = {  # what each measured step is, for the table
    "baseline_read": "baseline: pyarrow reads the release columns",
    "run_stats": "release path: run_stats(release)",
    "workflow_stats": "workflow path: read_workflow_table + stats_of_table",
}


def _different_outputs(first: Path, second: Path) -> list[str]:
    """The tables (``{name}.csv``) and ``stats.json`` that differ (byte for byte) between two statistics folders."""
    names = sorted(p.name for p in first.iterdir() if p.suffix in (".csv", ".json"))
    names += sorted(p.name for p in second.iterdir() if p.suffix in (".csv", ".json") and p.name not in names)
    return [n for n in names if not (first / n).is_file() or (first / n).read_bytes() != (second / n).read_bytes()]


def _print_table(figures: dict) -> None:
    rows = [(STEPS[name], figures[name]) for name in STEPS if name in figures]
    width = max(len(label) for label, _ in rows)
    print(f"{'step':<{width}}  {'wall s':>8}  {'CPU s':>8}  {'peak RSS GB':>11}")
    for label, result in rows:
        gb = result["peak_rss_mb"] / 1024
        print(f"{label:<{width}}  {result['wall_s']:>8.1f}  {result['cpu_s']:>8.1f}  {gb:>11.2f}")


def _within_target(result: dict) -> bool:
    return result["wall_s"] <= TARGET["wall_s"] and result["peak_rss_mb"] <= TARGET["peak_rss_gb"] * 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--release", help="an existing release folder (else one is generated)")
    parser.add_argument("--records", type=int, default=FULL_SIZE, help="rows of the generated release")
    parser.add_argument("--pairs", type=int, default=2000, help="barcode pairs per comparison")
    parser.add_argument("--workdir", help="where to write the generated release and the outputs (default: /tmp)")
    parser.add_argument(
        "--workflow",
        action="store_true",
        help="also generate the workflow's inputs of the same records and time the workflow path (the stats rule)",
    )
    parser.add_argument("--shards", type=int, default=SHARDS, help="--workflow: barcode shards (default 256)")
    parser.add_argument(
        "--source", help="the package folder the measured steps import (default: this repository's workflow/)"
    )
    parser.add_argument("--prepare", help=argparse.SUPPRESS)  # internal: the generation, in a child process
    args = parser.parse_args()
    if args.prepare:
        settings = json.loads(args.prepare)
        workflow = Path(settings["workflow"]) if settings["workflow"] else None
        generate, shards = settings["generate"], settings["shards"]
        prepared = prepare(
            Path(settings["release"]), settings["records"], generate=generate, workflow=workflow, shards=shards
        )
        print(json.dumps(prepared))
        return
    if args.workflow and args.release:
        parser.error("--workflow generates its inputs: it takes no --release")
    source = Path(args.source).resolve() if args.source else None
    print(f"target: {TARGET_TEXT}", flush=True)
    with tempfile.TemporaryDirectory(dir=args.workdir, prefix="bench-stats-") as tmp:
        tmp = Path(tmp)
        figures = {"target": TARGET_TEXT}
        if source:
            figures["source"] = str(source)
        release = Path(args.release) if args.release else tmp / "release"
        settings = {
            "release": str(release),
            "records": args.records,
            "generate": not args.release,
            "workflow": str(tmp / "workflow") if args.workflow else None,
            "shards": args.shards,
        }
        prepared = _run([sys.executable, __file__, "--prepare", json.dumps(settings)], None, "generating the data")
        built, files = prepared["output"]["built"], prepared["output"]["files"]
        if built:
            inputs = built.pop("workflow_inputs", None)
            figures["generated"] = {
                **built,
                "build_s": prepared["wall_s"],
                "build_peak_rss_mb": prepared["peak_rss_mb"],
            }
            print(f"generated {built['records']:,} records in {prepared['wall_s']} s", flush=True)
            if inputs:
                (tmp / "inputs.json").write_text(json.dumps(inputs))
        if not files:
            raise SystemExit(f"{release}: no metadata Parquet to time (the baseline reads it)")
        columns = prepared["output"]["columns"]
        figures["baseline_read"] = _measure(BASELINE_CODE, json.dumps(files), json.dumps(columns))
        print(f"baseline (pyarrow reads the columns): {figures['baseline_read']}", flush=True)
        figures["run_stats"] = _measure(STATS_CODE, str(release), str(tmp / "stats"), str(args.pairs), source=source)
        print(f"run_stats: {figures['run_stats']}", flush=True)
        if args.workflow:
            figures["workflow_stats"] = _measure(
                WORKFLOW_CODE, str(tmp / "inputs.json"), str(tmp / "stats-workflow"), str(args.pairs), source=source
            )
            print(f"workflow path: {figures['workflow_stats']}", flush=True)
            # the same records in the same order: every table and stats.json byte for byte the same
            figures["workflow_differs"] = _different_outputs(tmp / "stats", tmp / "stats-workflow")
        records = figures["run_stats"]["output"]["records"]
        figures["records"] = records
        figures["over_baseline"] = {
            "wall_x": round(figures["run_stats"]["wall_s"] / max(figures["baseline_read"]["wall_s"], 1e-9), 2),
            "rss_x": round(figures["run_stats"]["peak_rss_mb"] / max(figures["baseline_read"]["peak_rss_mb"], 1e-9), 2),
        }
        measured = [name for name in ("run_stats", "workflow_stats") if name in figures]
        if records >= FULL_SIZE:
            figures["within_target"] = all(_within_target(figures[name]) for name in measured)
        else:
            figures["within_target"] = None  # the target is for the full size
        _print_table(figures)
        print(json.dumps(figures, sort_keys=True))


if __name__ == "__main__":
    main()
