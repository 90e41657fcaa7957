"""Benchmark: the ``bioscan-rebuild split`` command, ``assign_splits`` and the literal spec reading, on one large
synthetic table built from the dev-100k split fixture, in one run.

The table is the fixture's 100k records replicated and cut to ``--rows``: replica r > 0 renames its
processids, genera and the genus word of its species with a letters-only suffix (so no placeholder rule
changes), and every replica puts its own code after the leading ``N`` padding of each barcode. Barcodes
are padded to ``--barcode-length`` nt (default 658, the COI-5P length) with a constant filler before the
trailing ``N`` run. Each species, barcode and split structure of the fixture thus repeats once per replica.

The table is written twice: as Parquet (what the in-process steps load) and as the metadata CSV the command
reads (all 23 columns, written by pandas as the published CSV is: minimal quoting).

Each step runs in its own process. The command (``python -m bioscan_rebuild split table.csv out.csv --summary
S.csv``) is timed end to end, its peak RSS taken from the kernel's rusage of that one process (``os.wait4``);
its split column is checked against ``assign_splits`` and every other column against the input. For
``assign_splits`` and the reference, the child loads the table (the 4 columns ``assign_splits`` reads, or all with
``--all-columns``), reports that RSS, resets the peak (``/proc/self/clear_refs``) and times the call, so its own
increment is visible. The last line is every figure as JSON.

    python bench/splits.py                    # 1,000,000 rows
    python bench/splits.py --rows 5150000 --no-reference   # full BIOSCAN-5M scale
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
FIXTURE = REPO.parent / "shared" / "fixtures" / "splits" / "dev-100k.input.csv.gz"
COLUMNS = ["processid", "genus", "species", "dna_barcode"]


def _status(field: str) -> float:
    """A /proc/self/status memory field in MiB."""
    with open("/proc/self/status") as handle:
        return next(int(line.split()[1]) for line in handle if line.startswith(field + ":")) / 1024


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")  # resets VmHWM to the current RSS
        return True
    except OSError:
        return False


def _suffix(r: int) -> str:
    """Letters-only replica tag (no digits, capitals or dots, so no placeholder rule changes)."""
    out = ""
    while True:
        out = "abcdefghijklmnopqrstuvwxyz"[r % 26] + out
        r //= 26
        if not r:
            return "q" + out


def _code(r: int, width: int) -> str:
    out = ""
    for _ in range(width):
        out = "ACGT"[r % 4] + out
        r //= 4
    return out


def generate(fixture: Path, rows: int, barcode_length: int, out: Path, csv: Path) -> dict:
    """Write the synthetic table to ``out`` (Parquet, one row group per replica, so memory is one replica) and
    to ``csv`` (the command's input)."""
    import numpy as np
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    base = pd.read_csv(fixture, dtype=str, keep_default_na=True)
    reps = -(-rows // len(base))
    width = max(1, int(np.ceil(np.log(max(reps, 2)) / np.log(4))))
    core = base["dna_barcode"].str.strip("N").str.len().max() + width
    filler = "".join("ACGT"[(7 * i * i + 3 * i) % 4] for i in range(max(0, barcode_length - core)))
    info = {"rows": 0, "species": 0, "barcodes": 0}
    writer = None
    for r in range(reps):
        part = base.iloc[: rows - r * len(base)].copy()
        if r:
            tag = _suffix(r)
            part["processid"] = part["processid"] + "." + tag
            for col in ("genus", "taxon"):
                part[col] = part[col] + tag
            part["species"] = part["species"].str.replace(r"^(\S*)", r"\1" + tag, regex=True)
        barcode = part["dna_barcode"].str.replace(r"^(N*)", r"\1" + _code(r, width), regex=True)
        part["dna_barcode"] = barcode.str.replace(r"(N*)$", filler + r"\1", regex=True)
        # replicas share no species or barcode, so their distinct counts add up
        info["rows"] += len(part)
        info["species"] += int(part["species"].nunique())
        info["barcodes"] += int(part["dna_barcode"].str.strip("N").nunique())
        table = pa.Table.from_pandas(part, preserve_index=False)
        writer = writer or pq.ParquetWriter(out, table.schema)
        writer.write_table(table)
        part.to_csv(csv, mode="a" if r else "w", header=not r, index=False, lineterminator="\n")
    writer.close()
    info["barcode_nt"] = int(part["dna_barcode"].str.len().median())
    return info


def reference_splits(df):
    """Literal, slow implementation of spec splits.md, straight from the text (for comparison only)."""
    import math

    import numpy as np
    import pandas as pd

    from bioscan_rebuild.core.novel import novel_mask, strip_barcode

    def test_n(n):
        return 0 if n < 8 else min(25, math.floor(4 + (n - 8) / 4))

    def test_ub(n):
        return 0 if n < 8 else math.floor(4 + (n - 8) / 3)

    def test_bc(b):
        return 0 if b < 3 else math.floor(1 + (b - 2) / 3)

    def routine_p(cands, target, lower, upper, bc_upper, soft1, soft2, seed):
        rng = np.random.default_rng(seed)
        out = set()
        for _, grp in cands.groupby("species", sort=True):
            n = len(grp)
            t = target(n)
            if t == 0:
                continue
            lb, ub = lower(n), upper(n)
            sizes = grp.groupby("strip").size().sort_values()
            bub = bc_upper(len(sizes))
            if len(sizes) == 1:
                continue
            keys, sz = list(sizes.index), [int(x) for x in sizes.to_numpy()]
            cs = [int(x) for x in np.cumsum(sz)]
            alloc, chosen = 0, []
            while True:
                opt = [sz[i] <= t - alloc and cs[i] >= t * soft1 - alloc for i in range(len(sz))]
                if not any(opt):
                    if alloc == 0 and not any(s <= t for s in sz):
                        if not (sz[0] >= lb and sz[0] < n / 2):
                            break
                        i = 0
                    elif sz[0] > t * soft2 - alloc:
                        if sz[0] > (t - alloc) / 2 or alloc + sz[0] > ub:
                            break
                        i = 0
                    else:
                        c = i = next(q for q, x in enumerate(cs) if x >= t * soft1 - alloc)
                        if c > 0 and abs(alloc + sz[c - 1] - t) < abs(t - (alloc + sz[c])):
                            i = c - 1
                        if alloc + sz[c] > ub:
                            break
                elif len(chosen) + 1 >= bub:
                    c = i = max(q for q, s in enumerate(sz) if s <= t - alloc)
                    if (
                        c + 1 < len(sz)
                        and abs(alloc + sz[c + 1] - t) < abs(t - (alloc + sz[c]))
                        and alloc + sz[c + 1] <= ub
                    ):
                        i = c + 1
                else:
                    k = sum(opt)
                    lo, hi = int(k * 0.5), k
                    if hi <= lo:
                        lo, hi = max(lo - 1, 0), min(hi + 1, k)
                    i = [q for q, o in enumerate(opt) if o][rng.integers(lo, hi, size=1)[0]]
                chosen.append(keys[i])
                alloc += sz[i]
                if alloc >= t:
                    break
                for q in range(i, len(cs)):
                    cs[q] -= sz[i]
                del keys[i], sz[i], cs[i]
                if len(chosen) >= bub:
                    break
            if alloc >= lb:
                out.update(chosen)
        return out

    species, genus = df["species"].astype(object), df["genus"].astype(object)
    strip = strip_barcode(df["dna_barcode"].astype(object))
    present = species.notna().to_numpy()
    split = pd.Series(np.where(~present | novel_mask(genus, species), "pretrain", "seen"), dtype=object)
    viable = genus.isin(genus[(split == "seen").to_numpy()]).to_numpy() & (split == "pretrain").to_numpy() & present
    counts = species[viable].value_counts()
    split[species.isin(counts.index[counts >= 8]).to_numpy()] = "unseen"
    counts = species[present & (split == "seen").to_numpy()].value_counts()
    singles = counts.index[counts == 1]
    split[species.isin(singles).to_numpy()] = "train"

    def cands(name):
        mask = present & (split == name).to_numpy()
        return pd.DataFrame({"species": species[mask], "strip": strip[mask]})

    def move(barcodes, name):
        split[strip.isin(list(barcodes)).to_numpy()] = name

    move(routine_p(cands("seen"), test_n, lambda n: 3, test_ub, test_bc, 1.1, 1.0, 1), "test")
    c = cands("seen")
    val = routine_p(
        c, lambda n: 0 if n < 20 else 0.05 * n, lambda n: 0, lambda n: 0.10 * n, lambda b: 0.05 * b, 1.1, 1.1, 3
    )
    sizes = c.groupby("species").size()
    goal = round(0.05 * (len(singles) + int(sizes[sizes < 20].sum())))
    test_species = species[(split == "test").to_numpy()]
    total = 0
    for sp, grp in c.groupby("species", sort=True):
        n = len(grp)
        nt = int((test_species == sp).sum())
        if not 7 <= n < 20 or nt > test_n(n + nt):
            continue
        by_barcode = grp.groupby("strip").size().sort_values()
        if by_barcode.iloc[0] > 1:
            continue
        val.add(by_barcode.index[0])
        total += by_barcode.iloc[0]
        if total >= goal:
            break
    move(val, "val")
    split[split == "seen"] = "train"
    move(routine_p(cands("unseen"), test_n, lambda n: 3, test_ub, test_bc, 1.1, 1.0, 5), "test_unseen")
    vu = routine_p(cands("unseen"), lambda n: 0.2 * n, lambda n: 0, lambda n: 0.4 * n, lambda b: 0.2 * b, 1.1, 1.1, 7)
    move(vu, "val_unseen")
    split[split == "unseen"] = "key_unseen"
    split[present & (split == "pretrain").to_numpy()] = "other_heldout"
    return split


def child(step: str, args: dict) -> dict:
    sys.path.insert(0, str(REPO / "workflow"))
    if step == "generate":
        t = time.perf_counter()
        info = generate(
            Path(args["fixture"]), args["rows"], args["barcode_length"], Path(args["table"]), Path(args["csv"])
        )
        return {"seconds": time.perf_counter() - t, "peak_mb": _status("VmHWM"), "info": info}
    import pandas as pd
    import pyarrow as pa

    from bioscan_rebuild.splits.protocol import assign_splits

    frame = pd.read_parquet(args["table"], columns=None if args["all_columns"] else COLUMNS)
    pa.default_memory_pool().release_unused()  # drop the allocator's cache of parquet decoding buffers
    frame_mb = frame.memory_usage(deep=True).sum() / 2**20
    loaded_mb = _status("VmRSS")
    reset = _reset_peak()
    t = time.perf_counter()
    split = (reference_splits if step == "reference" else assign_splits)(frame)
    seconds = time.perf_counter() - t
    peak = _status("VmHWM")
    pd.DataFrame({"split": pd.Series(split).astype(str).to_numpy()}).to_parquet(args["result"], index=False)
    return {"seconds": seconds, "frame_mb": frame_mb, "loaded_mb": loaded_mb, "peak_mb": peak, "peak_reset": reset}


def run_child(step: str, **args) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--child", step, json.dumps(args)], check=True, capture_output=True, text=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def run_command(csv: Path, out: Path, summary: Path) -> dict:
    """``bioscan-rebuild split`` as a person runs it: wall time, and the peak RSS and CPU time of that one process
    (``os.wait4`` gives its own rusage, not the maximum over every child this script has waited for)."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO / "workflow"), os.environ.get("PYTHONPATH")])),
    }
    command = [sys.executable, "-m", "bioscan_rebuild", "split", str(csv), str(out), "--summary", str(summary)]
    with tempfile.TemporaryFile() as log:
        start = time.perf_counter()
        proc = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        log.seek(0)
        text = log.read().decode(errors="replace")
    if proc.returncode:
        raise SystemExit(f"the split command failed (exit {proc.returncode}):\n{text[-3000:]}")
    return {"seconds": seconds, "peak_mb": usage.ru_maxrss / 1024, "cpu_seconds": usage.ru_utime + usage.ru_stime}


def _read_text(path: Path, columns: list[str]):
    """Columns of a CSV as raw text (no missing values, no type inference), with pyarrow."""
    import pyarrow.csv as pacsv

    convert = pacsv.ConvertOptions(
        column_types=dict.fromkeys(columns, "string"), include_columns=columns, strings_can_be_null=False
    )
    return pacsv.read_csv(path, parse_options=pacsv.ParseOptions(newlines_in_values=True), convert_options=convert)


def compare_cells(csv_in: Path, csv_out: Path) -> dict:
    """The command's output against its input: same header, and every column but split and chunk equal, cell for
    cell (a few columns at a time, to keep this process small)."""
    import csv

    with open(csv_in, newline="") as handle:
        header_in = next(csv.reader(handle))
    with open(csv_out, newline="") as handle:
        header_out = next(csv.reader(handle))
    kept = [c for c in header_in if c not in ("split", "chunk")]
    differing = []
    for i in range(0, len(kept), 6):
        columns = kept[i : i + 6]
        before, after = _read_text(csv_in, columns), _read_text(csv_out, columns)
        differing += [c for c in columns if not before[c].equals(after[c])]
    return {"same_header": header_in == header_out, "columns_compared": len(kept), "columns_differing": differing}


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        print(json.dumps(child(sys.argv[2], json.loads(sys.argv[3]))))
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--barcode-length", type=int, default=658)
    parser.add_argument("--fixture", type=Path, default=FIXTURE)
    parser.add_argument("--all-columns", action="store_true", help="load all 23 columns, not only the 4 used")
    parser.add_argument(
        "--reference", action=argparse.BooleanOptionalAction, default=True, help="the literal implementation too"
    )
    parser.add_argument(
        "--command", action=argparse.BooleanOptionalAction, default=True, help="the split command on the CSV too"
    )
    parser.add_argument("--repeat", type=int, default=1, help="time assign_splits this many times (fresh child)")
    args = parser.parse_args()
    if not args.fixture.exists():
        raise SystemExit(f"{args.fixture} is absent: the benchmark builds its table from that fixture")

    import pandas as pd

    figures: dict = {"rows": args.rows}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        table, table_csv = tmp / "table.parquet", tmp / "table.csv"
        gen = run_child(
            "generate",
            fixture=str(args.fixture),
            rows=args.rows,
            barcode_length=args.barcode_length,
            table=str(table),
            csv=str(table_csv),
        )
        info = gen["info"]
        figures["table"] = {**info, "csv_mb": table_csv.stat().st_size / 2**20}
        print(
            f"table: {info['rows']:,} rows, {info['species']:,} species, {info['barcodes']:,} barcodes"
            f" ({info['barcode_nt']} nt, CSV {figures['table']['csv_mb']:.0f} MiB); generated in"
            f" {gen['seconds']:.1f} s, peak {gen['peak_mb']:.0f} MiB"
        )
        steps = ["assign_splits"] * args.repeat + (["reference"] if args.reference else [])
        results = {}
        print(
            f"{'step':16s} {'seconds':>8s} {'frame MiB':>10s} {'loaded RSS':>11s} {'peak RSS':>9s} {'increment':>10s}"
        )
        for i, step in enumerate(steps):
            result = str(tmp / f"{step}-{i}.parquet")
            r = run_child(
                "reference" if step == "reference" else "split",
                table=str(table),
                all_columns=args.all_columns,
                result=result,
            )
            results[step] = pd.read_parquet(result)["split"]
            figures.setdefault(step, []).append({k: r[k] for k in ("seconds", "loaded_mb", "peak_mb")})
            note = "" if r["peak_reset"] else "  (peak includes loading)"
            print(
                f"{step:16s} {r['seconds']:8.2f} {r['frame_mb']:10.0f} {r['loaded_mb']:11.0f} {r['peak_mb']:9.0f}"
                f" {r['peak_mb'] - r['loaded_mb']:10.0f}{note}"
            )
        if args.command:
            out = tmp / "out.csv"
            r = run_command(table_csv, out, tmp / "summary.csv")
            split = _read_text(out, ["split"])["split"].to_numpy(zero_copy_only=False)
            r["agrees_with_assign_splits"] = int((split == results["assign_splits"].to_numpy()).sum())
            r.update(compare_cells(table_csv, out))
            figures["command"] = r
            print(
                f"{'split command':16s} {r['seconds']:8.2f} {'':>10s} {'':>11s} {r['peak_mb']:9.0f} {'':>10s}"
                f"  (CPU {r['cpu_seconds']:.2f} s)"
            )
            print(
                f"command: split agrees with assign_splits on {r['agrees_with_assign_splits']:,} of {info['rows']:,}"
                f" records; {r['columns_compared']} other columns, differing: {r['columns_differing'] or 'none'}"
                f"; header {'kept' if r['same_header'] else 'CHANGED'}"
            )
        counts = results["assign_splits"].value_counts()
        print("splits: " + ", ".join(f"{k} {counts.get(k, 0):,}" for k in sorted(counts.index)))
        if args.reference:
            same = int((results["reference"] == results["assign_splits"]).sum())
            figures["reference_agrees"] = same
            print(f"reference agrees on {same:,} of {len(results['reference']):,} records")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
