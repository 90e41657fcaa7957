"""Benchmark: barcode cleaning + BIN table + taxonomy curation at BIOSCAN-5M scale (5,150,850 records).

1. ``generate`` (its own process): a synthetic table with the published shape -- labelled shares per rank
   (class 99.9 % ... species 9.2 %), long-tailed species (Zipf), ~2.49M distinct 658-nt barcodes shared between
   records, ~324k BINs, and the real quirks (lower case, alignment gaps, end N, IUPAC codes, bad BINs, upper-case
   and padded names, placeholder species, barcode/BIN label conflicts) -- written to Parquet in 50 shards.
2. ``stage`` (a fresh process, so its peak memory is its own): barcode cleaning shard by shard (as the
   workflow's per-shard jobs, here one after another) + the whole-table curation (BINs, taxonomy, changes, BIN
   table). Prints wall time and peak RSS per step. Target: together <= 5 min and <= 8 GB. Run twice: without
   corrections (the baseline) and with a maintainer's table of ``--corrections`` rows (steps 8 and 7 again).
3. ``split`` (a fresh process): the workflow's split step on the curated table (``splits.stage.split_tables``).

    python bench/metadata.py [--records 5150850] [--workdir /tmp/bench-metadata]
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
SHARDS = 50


def _word(i: int) -> str:
    """0 -> 'a', 25 -> 'z', 26 -> 'ba', ...: distinct letter-only names."""
    out = ""
    while True:
        out = chr(97 + i % 26) + out
        i //= 26
        if not i:
            return out


def generate(n: int, workdir: Path, seed: int = 0) -> None:
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    n_barcodes, n_bins, n_species = int(n * 0.483), int(n * 0.063), 22_622
    # species -> genus -> subfamily -> family -> order -> class: a fixed random tree
    genus_of_species = rng.integers(0, 7_605, n_species)
    family_of_genus = rng.integers(0, 934, 7_605)
    subfamily_of_genus = rng.integers(0, 2_000, 7_605)
    order_of_family = rng.integers(0, 55, 934)
    class_of_order = rng.integers(0, 10, 55)
    # each record: a barcode (shared, long-tailed), its BIN, and a species drawn from the barcode
    barcode = np.minimum(rng.zipf(1.6, n) - 1, n_barcodes - 1)
    barcode = (barcode * 2_654_435_761 + rng.integers(0, 4, n)) % n_barcodes  # spread the heavy ones
    bin_of_barcode = rng.integers(0, n_bins, n_barcodes)
    species_of_barcode = np.minimum(rng.zipf(1.3, n_barcodes) - 1, n_species - 1)
    species = species_of_barcode[barcode]
    genus = genus_of_species[species]
    family = family_of_genus[genus]
    order = order_of_family[family]
    klass = class_of_order[order]

    def labels(prefix, codes, share, suffix=""):
        out = np.array([f"{prefix}{_word(i)}{suffix}" for i in range(codes.max() + 1)], dtype=object)[codes]
        out[rng.random(n) >= share] = None
        return out

    columns = {
        "processid": np.array([f"BSCN{i:07d}-24" for i in range(n)], dtype=object),
        "sampleid": np.array(
            [f"BIOUG{i // 96:06d}-{'ABCDEFGH'[i % 8]}{i % 12 + 1:02d}" for i in range(n)], dtype=object
        ),
        "phylum": np.full(n, "Arthropoda", dtype=object),
        "class": labels("Class", klass, 0.999),
        "order": labels("Order", order, 0.997),
        "family": labels("Family", family, 0.958, "idae"),
        "subfamily": labels("Subfamily", subfamily_of_genus[genus], 0.286, "inae"),
        "genus": labels("Genus", genus, 0.238),
        "species": None,
        "bin_uri": None,
    }
    # letters only: digits or capitals inside a name would make every species a placeholder (splits.md rule 4)
    species_names = np.array([f"Genus{_word(g)} ep{_word(s)}" for s, g in enumerate(genus_of_species)], dtype=object)
    interim = np.arange(n_species) % 7 == 3  # interim names of undescribed species (placeholders, as in BOLD)
    species_names[interim] = [f"Genus{_word(genus_of_species[s])} sp. BIOUG{s:05d}" for s in np.flatnonzero(interim)]
    sp = species_names[species]
    sp[(rng.random(n) >= 0.092) | (columns["genus"] == None)] = None  # noqa: E711 (element-wise)
    columns["species"] = sp
    bins = np.array(
        [
            f"BOLD:{chr(65 + i % 26)}{chr(65 + i // 26 % 26)}{chr(65 + i // 676 % 26)}{i % 10_000:04d}"
            for i in range(n_bins)
        ],
        dtype=object,
    )[bin_of_barcode[barcode]]
    bins[rng.random(n) < 0.003] = None
    quirky = rng.random(n)
    bins[quirky < 0.002] = [b.lower() + " " if b else b for b in bins[quirky < 0.002]]
    bins[(quirky >= 0.002) & (quirky < 0.0025)] = "BOLD:AB12"
    columns["bin_uri"] = bins
    for rank in ("order", "family"):  # shouting and padding, as in real exports
        values = columns[rank]
        pick = (rng.random(n) < 0.01) & (values != None)  # noqa: E711
        values[pick] = [f" {v.upper()} " for v in values[pick]]
    conflict = rng.random(n) < 0.01  # label noise inside shared barcodes
    columns["family"][conflict] = "Familyxidae"
    columns["country"] = np.where(rng.random(n) < 0.5, "Canada", "Costa Rica").astype(object)
    columns["province_state"] = None
    columns["lat"], columns["lon"] = rng.uniform(-60, 70, n), rng.uniform(-180, 180, n)
    bases = np.frombuffer(b"ACGT", np.uint8)
    # barcode id -> a 658-nt sequence: one of 1024 random templates, with the id's high bits written into
    # 12 fixed positions (2 bits each), so equal ids give equal sequences and distinct ids distinct ones
    templates = rng.integers(0, 4, (1024, 658)).astype(np.uint8)
    workdir.mkdir(parents=True, exist_ok=True)
    for shard in range(SHARDS):
        rows = np.arange(shard, n, SHARDS)
        ids = barcode[rows]
        mat = templates[ids % 1024]
        high = ids // 1024
        for k in range(12):
            mat[:, 20 + 50 * k] = (high >> (2 * k)) & 3
        raw = bases[mat]
        quirk = rng.random(len(rows))
        raw[quirk < 0.02, :3] = ord("N")  # end N
        raw[(quirk >= 0.02) & (quirk < 0.03), 101:103] = ord("R")  # IUPAC codes
        text = np.array([t.decode() for t in raw.view("S658").ravel()], dtype=object)
        gaps = (quirk >= 0.03) & (quirk < 0.10)
        text[gaps] = ["---" + t for t in text[gaps]]
        low = (quirk >= 0.10) & (quirk < 0.11)
        text[low] = [t.lower() for t in text[low]]
        table = {k: (v[rows] if isinstance(v, np.ndarray) else [v] * len(rows)) for k, v in columns.items()}
        table["nucleotides"] = text
        table["batch"] = ["bench"] * len(rows)
        pq.write_table(pa.table(table), workdir / f"records-{shard:03d}.parquet")


def write_corrections(workdir: Path, count: int) -> Path:
    """A maintainer's corrections table of ``count`` rows (half genus, half family), on records of the first shard
    that carry both: each takes the label of another such record, as user reports move a specimen."""
    import pyarrow.parquet as pq

    table = pq.read_table(workdir / "records-000.parquet", columns=["processid", "family", "genus"]).to_pandas()
    table = table.dropna().drop_duplicates("genus").head(count + 1)
    lines = ["processid\tfield\tvalue\treason\tsource"]
    for i in range(min(count, len(table) - 1)):
        field = ("genus", "family")[i % 2]
        lines.append(f"{table['processid'].iat[i]}\t{field}\t{table[field].iat[i + 1]}\twrong_label\tbench-{i}")
    path = workdir / "corrections.tsv"
    path.write_text("\n".join(lines) + "\n")
    return path


def stage(workdir: Path, corrections: int) -> dict:
    from bioscan_rebuild.metadata.stage import clean_shard, curate_tables

    paths = sorted(workdir.glob("records-*.parquet"))
    start = time.perf_counter()
    for path in paths:
        clean_shard(path, workdir / path.name.replace("records", "barcodes"))
    cleaned = time.perf_counter()
    peak_clean = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    summary = curate_tables(
        paths,
        [workdir / p.name.replace("records", "barcodes") for p in paths],
        workdir / "out",
        corrections_path=write_corrections(workdir, corrections) if corrections else None,
    )
    done = time.perf_counter()
    return {
        "corrections": corrections,
        "records": summary["records_in"],
        "barcode_cleaning_s": round(cleaned - start, 1),
        "curation_s": round(done - cleaned, 1),
        "total_s": round(done - start, 1),
        "peak_rss_gb_after_cleaning": round(peak_clean, 2),
        "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2, 2),
        "summary": {k: summary[k] for k in ("curated", "rejected", "changes_by_rule", "bins_malformed")},
    }


def split_step(workdir: Path) -> dict:
    from bioscan_rebuild.splits.stage import split_tables

    start = time.perf_counter()
    result = split_tables(
        workdir / "out" / "curated.parquet", sorted(workdir.glob("barcodes-*.parquet")), workdir / "splits"
    )
    return {
        "split_s": round(time.perf_counter() - start, 1),
        "split_peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2, 2),
        "splits": result["splits"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=5_150_850)
    parser.add_argument("--workdir", default="/tmp/bench-metadata")
    parser.add_argument("--step", choices=("all", "generate", "stage", "split"), default="all")
    parser.add_argument(
        "--corrections", type=int, default=500, help="rows of the maintainer's corrections table (0: none)"
    )
    args = parser.parse_args()
    workdir = Path(args.workdir)
    if args.step == "generate":
        generate(args.records, workdir)
        return
    if args.step == "stage":
        print(json.dumps(stage(workdir, args.corrections)))
        return
    if args.step == "split":
        print(json.dumps(split_step(workdir)))
        return
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, __file__, "--step", "generate", "--records", str(args.records), "--workdir", str(workdir)],
        check=True,
    )
    print(f"generated {args.records:,} records in {time.perf_counter() - start:.0f} s ({workdir})")
    # without corrections (the baseline), then with the maintainer's table: step 8 runs step 7 again
    for corrections in dict.fromkeys((0, args.corrections)):
        out = subprocess.run(
            [sys.executable, __file__, "--step", "stage", "--workdir", str(workdir), "--corrections", str(corrections)],
            check=True,
            capture_output=True,
            text=True,
        )
        result = json.loads(out.stdout.strip().splitlines()[-1])
        print(json.dumps(result, indent=2))
    # the workflow's split step (not part of the 5-minute target), in its own process
    out = subprocess.run(
        [sys.executable, __file__, "--step", "split", "--workdir", str(workdir)],
        check=True,
        capture_output=True,
        text=True,
    )
    print(json.dumps(json.loads(out.stdout.strip().splitlines()[-1]), indent=2))


if __name__ == "__main__":
    main()
