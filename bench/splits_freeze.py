"""Benchmark: a frozen rebuild (``assign_splits`` with a freeze) with and without the barcode digests of the frozen
records absent from the build, on the dev-100k split fixture replicated to ``--rows`` (barcodes padded to 658 nt,
a code per replica). 80 % of the records are frozen (split by the protocol first), 5 % of those are left out of
the build. Prints the time to digest the freeze's barcodes, the rebuild without digests (the old behaviour), with
them on a table without ``barcode_key`` (every barcode hashed) and with it (the workflow's split step), and how
many new records the digests place otherwise.

    python bench/splits_freeze.py [--rows 1000000]
"""

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "workflow"))

from bioscan_rebuild.splits.protocol import assign_splits, barcode_digest  # noqa: E402

ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
ap.add_argument("--rows", type=int, default=1_000_000)
a = ap.parse_args()
base = pd.read_csv(
    REPO.parent / "shared" / "fixtures" / "splits" / "dev-100k.input.csv.gz",
    usecols=["processid", "genus", "species", "dna_barcode"],
    keep_default_na=False,
    na_values=[""],
)
reps = -(-a.rows // len(base))
parts = []
for r in range(reps):
    p = base.copy()
    p["processid"] = p["processid"] + f"-r{r}"
    p["dna_barcode"] = p["dna_barcode"].where(
        p["dna_barcode"].isna(), p["dna_barcode"].str.pad(658, "right", "A") + f"C{r}"
    )
    parts.append(p)
table = pd.concat(parts, ignore_index=True).iloc[: a.rows]
rng = np.random.default_rng(0)
old = rng.random(len(table)) < 0.8
t = time.perf_counter()
frozen = assign_splits(table[old])
t_v1 = time.perf_counter() - t
freeze = pd.Series(frozen.astype(object).to_numpy(), index=table["processid"][old].to_numpy())
t = time.perf_counter()
digests = pd.Series(barcode_digest(table["dna_barcode"][old]), index=freeze.index)
t_dig = time.perf_counter() - t
absent = old & (rng.random(len(table)) < 0.05)
build = table[~absent]
t = time.perf_counter()
plain = assign_splits(build, freeze)
t_plain = time.perf_counter() - t
t = time.perf_counter()
pinned = assign_splits(build, freeze, digests)
t_pin = time.perf_counter() - t
moved = int((plain.astype(object) != pinned.astype(object)).sum())
print(
    f"rows {len(table):,}; absent frozen {int(absent.sum()):,}; digests of the freeze {t_dig:.1f} s; "
    f"frozen rebuild without digests {t_plain:.1f} s, with {t_pin:.1f} s; new records placed otherwise: {moved:,}"
)
keyed = build.assign(barcode_key=barcode_digest(build["dna_barcode"]).to_pylist())
t = time.perf_counter()
again = assign_splits(keyed, freeze, digests)
t_key = time.perf_counter() - t
assert (again.astype(object).to_numpy() == pinned.astype(object).to_numpy()).all()
print(f"with the table's own barcode_key column (the workflow's split step): {t_key:.1f} s")
