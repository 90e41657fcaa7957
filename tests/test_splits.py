"""Split assignment: the published protocol record for record on the fixtures, its invariants, the helpers,
frozen (versioned) rebuilds and the CSV command."""

from __future__ import annotations

import importlib.util
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from bioscan_rebuild.cli.splits import cmd_split as run_split_command
from bioscan_rebuild.core.errors import InputError
from bioscan_rebuild.core.novel import novel_mask, strip_barcode
from bioscan_rebuild.core.schemas import LABELLED_SPLITS, SPLITS
from bioscan_rebuild.splits.protocol import (
    TEST_P,
    PartitionParams,
    _arrow,
    _strip_codes,
    assign_splits,
    barcode_digest,
    bc_test,
    choose_barcodes,
    chunk_of,
    n_test,
    split_summary,
    ub_test,
)
from bioscan_rebuild.splits.stage import split_csv, split_tables
from conftest import SHARED, require_shared

FIXTURES = SHARED / "fixtures" / "splits"
BENCH = Path(__file__).resolve().parents[1] / "bench" / "splits.py"
HELDOUT = ("val", "test", "val_unseen", "test_unseen")


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    return require_shared(FIXTURES)


_CACHE: dict[str, tuple[pd.DataFrame, pd.Series]] = {}


def _fixture(fixtures_dir: Path, name: str) -> tuple[pd.DataFrame, pd.Series]:
    """(input table, expected split by processid), read once per session."""
    if name not in _CACHE:
        table = pd.read_csv(fixtures_dir / f"{name}.input.csv.gz")
        expected = pd.read_csv(fixtures_dir / f"{name}.expected.csv.gz")
        _CACHE[name] = table, expected.set_index("processid")["split"]
    return _CACHE[name]


def _by_processid(table: pd.DataFrame, split: pd.Series) -> pd.Series:
    return pd.Series(split.astype(object).to_numpy(), index=table["processid"].to_numpy())


def _straddling(table: pd.DataFrame, split: pd.Series) -> pd.Series:
    """Barcodes whose rows sit in more than one labelled split."""
    frame = pd.DataFrame({"strip": strip_barcode(table["dna_barcode"]).to_numpy(), "split": split.astype(object)})
    frame = frame[frame["split"].isin(LABELLED_SPLITS)]
    n = frame.groupby("strip")["split"].nunique()
    return n[n > 1]


# -- the published protocol on the fixtures ------------------------------------------------------------------


@pytest.mark.parametrize("name", ["dev-20k", "dev-100k"])
def test_fixture_matches_every_record(fixtures_dir, name):
    table, expected = _fixture(fixtures_dir, name)
    before = table.copy()
    got = assign_splits(table)
    pd.testing.assert_frame_equal(table, before)  # pure: the input is untouched
    assert got.index.equals(table.index) and list(got.cat.categories) == list(SPLITS)
    got = _by_processid(table, got)
    assert len(got) == len(expected) and got.index.is_unique
    mismatched = (got != expected.reindex(got.index)).sum()
    assert mismatched == 0, f"{mismatched} of {len(got)} records differ"
    assert got.value_counts().to_dict() == expected.value_counts().to_dict()


def test_fixture_invariants(fixtures_dir):
    table, _ = _fixture(fixtures_dir, "dev-100k")
    split = assign_splits(table).astype(object)
    assert split.isin(SPLITS).all()
    species, genus = table["species"], table["genus"]
    assert species[split == "pretrain"].isna().all()
    assert species[split != "pretrain"].notna().all()  # barcode moves only ever pull labelled rows here
    # held-out barcodes lie wholly in their split, across the whole table
    strip = strip_barcode(table["dna_barcode"])
    for name in HELDOUT:
        barcodes = set(strip[split == name])
        assert (split[strip.isin(barcodes)] == name).all(), name
    assert _straddling(table, split).empty
    novel = novel_mask(genus, species)
    clean = species.notna().to_numpy() & ~novel
    # seen-family species are clean names unless a shared barcode or name brought them in
    seen_family = split.isin(["train", "val", "test"]).to_numpy()
    odd = seen_family & novel
    assert (strip[odd].isin(strip[clean]) | species[odd].isin(species[clean])).all()
    # unseen-family species all have a known genus
    unseen_family = split.isin(["key_unseen", "val_unseen", "test_unseen"]).to_numpy()
    assert genus[unseen_family].isin(genus[clean]).all()
    # and the two families share no species name
    assert not set(species[seen_family]) & set(species[unseen_family])


@pytest.mark.parametrize("seed", [0, 1])
def test_shuffled_rows_give_the_same_splits(fixtures_dir, seed):
    table, _ = _fixture(fixtures_dir, "dev-20k")
    reference = _by_processid(table, assign_splits(table))
    shuffled = table.sample(frac=1, random_state=seed)
    again = assign_splits(shuffled)
    assert again.index.equals(shuffled.index)
    pd.testing.assert_series_equal(_by_processid(shuffled, again).sort_index(), reference.sort_index())
    # a fresh RangeIndex and object-dtype columns change nothing either
    plain = shuffled.reset_index(drop=True).astype({c: object for c in ("genus", "species", "dna_barcode")})
    assert (_by_processid(plain, assign_splits(plain)).sort_index() == reference.sort_index()).all()


def test_rerun_is_byte_identical(fixtures_dir, tmp_path):
    """Two separate runs of `bioscan-rebuild split` write the same bytes. Separate processes with different
    PYTHONHASHSEEDs, so that an order taken from a set or a dict of strings cannot hide in one process."""
    outputs = []
    for run, hash_seed in enumerate(("1", "2")):
        out = tmp_path / f"run{run}"
        out.mkdir()
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "workflow")}
        env["PYTHONHASHSEED"] = hash_seed
        command = [sys.executable, "-m", "bioscan_rebuild", "split", str(fixtures_dir / "dev-20k.input.csv.gz")]
        command += [str(out / "splits.csv"), "--summary", str(out / "summary.csv")]
        result = subprocess.run(command, cwd=out, env=env, capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
        outputs.append({name: (out / name).read_bytes() for name in ("splits.csv", "summary.csv")})
    assert outputs[0] == outputs[1]
    assert outputs[0]["splits.csv"].count(b"\n") == 20_001  # header + every record: not two empty files


def _random_table(seed: int) -> pd.DataFrame:
    """A small table with every hard case: shared barcodes across species, N padding, missing values,
    placeholder names and genera, ties between barcode sizes."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(100, 1500))
    genera = np.array(["Aus", "Bus", "Cus", "dus", "Malaise", None, "unclassified Eus"], dtype=object)
    epithets = ["alpha", "beta", "gamma", "delta", "sp. 1", "aff. beta", "Malaise12", "x_y", "beta?", "AB", "zeta"]
    g = rng.choice(len(genera), n, p=[0.3, 0.25, 0.15, 0.05, 0.05, 0.1, 0.1])
    e = rng.choice(len(epithets), n, p=np.r_[[0.2, 0.15, 0.15, 0.1], np.full(7, 0.4 / 7)])
    species = [f"{genera[i] or 'Xus'} {epithets[j]}" for i, j in zip(g, e)]
    species = np.where(rng.random(n) < 0.3, None, np.array(species, dtype=object))
    codes = rng.integers(0, max(3, n // int(rng.integers(2, 6))), n)
    barcodes = [
        "N" * int(a) + "ACGT"[k % 4] + np.binary_repr(k).replace("0", "A").replace("1", "C") + "N" * int(b)
        for k, a, b in zip(codes, rng.integers(0, 3, n), rng.integers(0, 3, n))
    ]
    barcodes = np.where(rng.random(n) < 0.01, None, np.array(barcodes, dtype=object))
    return pd.DataFrame(
        {"processid": [f"P{i}" for i in range(n)], "genus": genera[g], "species": species, "dna_barcode": barcodes}
    )


def test_matches_the_literal_reference_on_random_tables():
    """The fast implementation against bench/splits.py's line-by-line reading of the spec."""
    spec = importlib.util.spec_from_file_location("bench_splits", BENCH)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    for seed in range(25):
        table = _random_table(seed)
        expected = bench.reference_splits(table).to_numpy()
        for dtype in ("str", object, "category"):
            typed = table.astype({c: dtype for c in ("genus", "species", "dna_barcode")})
            got = assign_splits(typed).astype(object).to_numpy()
            assert (got == expected).all(), (seed, dtype, int((got != expected).sum()))


def test_tie_order_is_that_of_series_sort_values():
    """P orders equal barcode sizes as Series.sort_values() (unstable quicksort) does; argsort must agree."""
    rng = np.random.default_rng(0)
    for length in [*range(1, 300), 1000, 4000]:
        sizes = rng.integers(1, int(rng.integers(2, 6)), size=length).astype(np.int64)
        by_pandas = pd.Series(sizes, index=np.arange(length)).sort_values().index.to_numpy()
        assert (np.argsort(sizes.copy(), kind="quicksort") == by_pandas).all(), length


def test_val_top_up_stops_at_the_rounded_goal():
    """More eligible long-tail species than the goal, and a goal where round() and int() differ."""
    # Four clean 7-row species, each on a 1-row and a 6-row barcode: test_n(7) = 0 and val's target is 0 below 20,
    # so neither P touches them (no rng draws), and each is eligible for the top-up (7 <= n < 20, nt = 0 <=
    # test_n(7), smallest barcode group 1 row).
    # Rows go in reverse name order, so the walk's name order is not the table's.
    names = ["Aus gamma", "Aus delta", "Aus beta", "Aus alpha"]
    rows = []
    for k, name in enumerate(names):
        rows.append((name, f"GATC{k}A"))
        rows += [(name, f"GATC{k}C")] * 6
    rows += [("Aus omega", "TTAGA"), ("Aus zeta", "TTAGC")]  # two singleton species: train
    table = pd.DataFrame(rows, columns=["species", "dna_barcode"])
    table.insert(0, "processid", [f"P{i:02d}" for i in range(len(table))])
    table.insert(1, "genus", "Aus")
    # goal = round(0.05 * (2 singleton species + 4 * 7 rows of species with n < 20)) = round(1.5) = 2 (half to
    # even); int() would give 1. Each eligible species adds one row, so the walk (alpha, beta, delta, gamma)
    # stops after beta: the 1-row barcodes of alpha and beta go to val, everything else to train.
    expected = np.where(table["dna_barcode"].isin(["GATC3A", "GATC2A"]), "val", "train")
    got = assign_splits(table).astype(object).to_numpy()
    assert got.tolist() == expected.tolist()


# -- helpers --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("genus", "species", "novel"),
    [
        ("Aus", "Aus bus", False),  # a clean name
        ("Aus", "Aus mallaise", True),  # 1: Malaise-trap code (misspelt, lowercase)
        ("Aus", "aus bus", True),  # 2: starts lowercase
        ("aus", "Aus bus", True),  # 3: genus starts lowercase
        ("Malaise", "Aus bus", True),  # 3: genus is a Malaise code
        ("unclassified Aus", "Aus bus", False),  # 3: exempt genus prefixes
        ("unassigned", "Aus bus", False),
        ("Aus", "Aus bus1", True),  # 4: a digit
        ("Aus", "AB bus", True),  # 4: two capitals
        ("Aus", "Aus aff bus", True),  # 5: aff
        ("Aus", "Aus n sp", True),  # 5: n. sp
        ("Aus", "Aus sp ex", True),  # 5: sp. ex
        ("Aus", "Aus gen bus", True),  # 5: gen
        ("Aus", "Aus sp bus", True),  # 5: sp. <something>
        ("Aus", "Aus affinis A", True),  # 5: affinis + code
        ("Aus gen", "Aus bus", True),  # 5 on the genus
        ("Aus", "Aus affinis", False),  # 5 needs its following token
        ("Aus", "Aus gena", False),  # word boundaries
        ("Aus", "Aus spus", False),
        ("Aus", "Aus bus_cus", True),  # 6: underscore
        ("Aus", "Aus bus?", True),  # 6: question mark
        ("Aus", "Aus Bus", True),  # 7: capital after the first character
        ("Aus", "Aus bus.", True),  # 8: a dot
        ("aus", None, False),  # no species: never novel
        (None, "Aus bus", False),  # no genus: species rules only
        (None, "Aus sp bus", True),
    ],
)
def test_novel_mask_rules(genus, species, novel):
    got = novel_mask(pd.Series([genus], dtype=object), pd.Series([species], dtype=object))
    assert got.dtype == bool and got.tolist() == [novel]


def test_novel_mask_is_vectorised_and_aligned():
    genus = pd.Series(["Aus", "aus", None, "Aus", "unclassified x"], index=[5, 3, 9, 1, 0], dtype="str")
    species = pd.Series(["Aus bus", "Aus bus", "Aus bus", None, "Xus yus"], index=[5, 3, 9, 1, 0], dtype="str")
    assert novel_mask(genus, species).tolist() == [False, True, False, False, False]
    assert novel_mask(genus.astype("category"), species.astype(object)).tolist() == [False, True, False, False, False]


def test_strip_barcode():
    got = strip_barcode(pd.Series(["NNACGTNN", "nnACGTnn", "NANBN", None, "NNNN", "ACNGT"], dtype=object))
    assert got.iloc[[0, 1, 2, 4, 5]].tolist() == ["ACGT", "nnACGTnn", "ANB", "", "ACNGT"]
    assert pd.isna(got.iloc[3])


def test_chunk_of():
    pids = pd.Series(["CRCBB46471-23"] * 4, index=[7, 8, 9, 10])
    got = chunk_of(pids, pd.Series(["pretrain", "train", "other_heldout", "test"], index=[7, 8, 9, 10]))
    assert got.tolist() == ["2e", "2", "2", ""] and got.index.tolist() == [7, 8, 9, 10]


def test_split_summary():
    df = pd.DataFrame(
        {
            "split": ["train", "train", "test", "pretrain", "val"],
            "dna_barcode": ["NACG", "ACG", "TTT", "GGGN", None],
            "species": ["Aus bus", "Aus bus", "Aus cus", None, "Aus dus"],
        }
    )
    summary = split_summary(df).set_index("split")
    assert list(summary.index) == [*SPLITS, "total"]
    assert summary.loc["train"].tolist() == [2, 1, 1]
    assert summary.loc["val"].tolist() == [1, 0, 1]
    assert summary.loc["key_unseen"].tolist() == [0, 0, 0]
    assert summary.loc["total"].tolist() == [5, 3, 3]


# -- frozen rebuilds -----------------------------------------------------------------------------------------


def test_freeze_of_a_full_run_reproduces_it(fixtures_dir):
    table, _ = _fixture(fixtures_dir, "dev-20k")
    split = assign_splits(table)
    freeze = pd.Series(split.astype(object).to_numpy(), index=table["processid"].to_numpy())
    again = assign_splits(table.sample(frac=1, random_state=3), freeze)
    assert (again.astype(object) == split.astype(object).reindex(again.index)).all()
    empty = pd.Series([], dtype=object, index=pd.Index([], dtype=object))
    assert (assign_splits(table, empty).astype(object) == split.astype(object)).all()
    with pytest.raises(ValueError, match="outside"):
        assign_splits(table, freeze.replace("val", "validation"))


def _new_rows(table: pd.DataFrame, split: pd.Series) -> pd.DataFrame:
    """New records of every kind the module docstring lists, built from a frozen fixture run."""
    strip = strip_barcode(table["dna_barcode"])
    rows = []

    def add(tag, genus, species, barcode, k=1):
        rows.extend((f"NEW-{tag}-{len(rows)}", genus, species, barcode) for _ in range(k))

    # a new species: 30 rows over 12 fresh barcodes (P will pick test and val barcodes)
    for i in range(30):
        add("sp", "Genusnewa", "Genusnewa novus", f"TTTT{'ACGT'[i % 4]}{i % 12:02d}".replace("0", "A"))
    # rows sharing a frozen test barcode: one labelled (another species), one without species
    test_rows = table[split.to_numpy() == "test"].iloc[0]
    add("testbc", test_rows["genus"], "Genusnewb other", "NN" + strip[test_rows.name] + "N")
    add("testbc", None, None, strip[test_rows.name])
    # many new rows of a frozen train species, on fresh barcodes (P draws some among the new rows)
    counts = table["species"][split.to_numpy() == "train"].value_counts()
    train_species = counts.index[0]
    train_genus = table.loc[table["species"] == train_species, "genus"].iloc[0]
    for i in range(40):
        add("trainsp", train_genus, train_species, f"GGGG{i % 15:02d}".replace("0", "A").replace("1", "C"))
    # new rows of a frozen train species on a frozen train barcode
    train_row = table[(split.to_numpy() == "train") & (table["species"] == train_species).to_numpy()].iloc[0]
    add("trainbc", train_genus, train_species, train_row["dna_barcode"], k=3)
    # new rows of a frozen unseen species: clean names, yet they stay in the unseen family
    unseen_row = table[split.to_numpy() == "key_unseen"].iloc[0]
    for i in range(12):
        add("unseensp", unseen_row["genus"], unseen_row["species"], f"CCCC{i % 6}".replace("0", "A"))
    # an unseen-species record on a frozen train barcode: it would straddle, so it is held out
    add("clash", unseen_row["genus"], unseen_row["species"], train_row["dna_barcode"])
    return pd.DataFrame(rows, columns=["processid", "genus", "species", "dna_barcode"])


def test_freeze_with_new_records(fixtures_dir):
    table, _ = _fixture(fixtures_dir, "dev-20k")
    table = table[["processid", "genus", "species", "dna_barcode"]]
    split = assign_splits(table)
    freeze = pd.Series(split.astype(object).to_numpy(), index=table["processid"].to_numpy())
    new = _new_rows(table, split)
    grown = pd.concat([new.iloc[::2], table, new.iloc[1::2]], ignore_index=True)
    got = _by_processid(grown, assign_splits(grown, freeze))

    assert (got[freeze.index] == freeze).all()  # no old record moves
    assert _straddling(grown, pd.Series(got[grown["processid"]].to_numpy())).empty
    by_tag = got[new["processid"]].groupby(new["processid"].str.split("-").str[1].to_numpy())
    kinds = {tag: set(s) for tag, s in by_tag}
    assert kinds["testbc"] == {"test"}  # both rows on the frozen test barcode join it
    assert {"test", "val"} <= kinds["sp"] <= {"train", "val", "test"}  # the protocol runs on new species
    assert "test" in kinds["trainsp"] and kinds["trainsp"] <= {"train", "val", "test"}  # never unseen
    assert kinds["trainbc"] == {"train"}  # pinned barcode: never drawn away from train
    assert kinds["unseensp"] <= {"key_unseen", "val_unseen", "test_unseen"} and "key_unseen" in kinds["unseensp"]
    assert kinds["clash"] == {"other_heldout"}
    # the same rebuild again, rows shuffled: identical
    again = assign_splits(grown.sample(frac=1, random_state=5), freeze)
    assert (_by_processid(grown.sample(frac=1, random_state=5), again).sort_index() == got.sort_index()).all()


def test_freeze_random_tables_never_move_or_leak():
    for seed in range(25):
        rng = np.random.default_rng(100 + seed)
        table = _random_table(100 + seed)
        old = rng.random(len(table)) < rng.uniform(0.3, 0.9)
        frozen = assign_splits(table[old]).astype(object)
        freeze = pd.Series(frozen.to_numpy(), index=table["processid"][old].to_numpy())
        got = assign_splits(table, freeze).astype(object).to_numpy()
        assert (got[old] == frozen.to_numpy()).all()
        frame = pd.DataFrame({"b": strip_barcode(table["dna_barcode"]).to_numpy(), "s": got, "old": old})
        frame = frame[frame["s"].isin(LABELLED_SPLITS) & frame["b"].notna()]
        before = frame[frame["old"]].groupby("b")["s"].agg(set)
        after = frame[~frame["old"]].groupby("b")["s"].agg(set)
        shared = after.index.intersection(before.index)
        assert all(after[b] <= before[b] for b in shared), seed


def test_absent_frozen_records_still_pin_their_barcodes(tmp_path):
    """A frozen record missing from this build (a delivery withdrawn, a photo late) used to free its barcode: new
    records on a v1 test barcode could go to train, and when the record returned to test (it keeps its split)
    the barcode spanned both. With the freeze's barcode digests, its barcode pins as a present record's does, and
    the `split` command (stand-ins for records without species) agrees with assign_splits record for record."""
    for seed in range(25):
        rng = np.random.default_rng(300 + seed)
        table = _random_table(300 + seed)
        old = rng.random(len(table)) < rng.uniform(0.3, 0.9)
        frozen = assign_splits(table[old]).astype(object).to_numpy()
        freeze = pd.Series(frozen, index=table["processid"][old].to_numpy())
        digests = pd.Series(barcode_digest(table["dna_barcode"][old]).to_pylist(), index=freeze.index, dtype=object)
        absent = old & (rng.random(len(table)) < 0.5)  # frozen, but not in this build
        build = table[~absent]
        got = assign_splits(build, freeze, digests).astype(object).to_numpy()
        new = ~old[~absent]
        assert (got[~new] == frozen[~absent[old]]).all()
        # every record of every version: the absent ones return in their frozen split
        everything = pd.DataFrame(
            {
                "b": strip_barcode(pd.concat([build["dna_barcode"], table["dna_barcode"][absent]])).to_numpy(),
                "s": np.r_[got, frozen[absent[old]]],
                "old": np.r_[~new, np.ones(int(absent.sum()), bool)],
            }
        )
        frame = everything[everything["s"].isin(LABELLED_SPLITS) & everything["b"].notna()]
        before = frame[frame["old"]].groupby("b")["s"].agg(set)
        after = frame[~frame["old"]].groupby("b")["s"].agg(set)
        shared = after.index.intersection(before.index)
        assert all(after[b] <= before[b] for b in shared), seed
        # the same build through the freeze of present records only is the old behaviour
        if seed == 0:
            plain = assign_splits(build, freeze).astype(object).to_numpy()
            assert (plain[~new] == got[~new]).all()
        if seed < 6:  # the command on the same files: the history's keys, each record's split
            history = pd.DataFrame({"processid": freeze.index, "split": frozen, "barcode_key": digests.to_numpy()})
            history.to_csv(tmp_path / "history.csv", index=False)
            build.to_csv(tmp_path / "build.csv", index=False)
            split_csv(tmp_path / "build.csv", tmp_path / "out.csv", freeze_csv=tmp_path / "history.csv")
            out = pd.read_csv(tmp_path / "out.csv", dtype=str, keep_default_na=False)["split"].to_numpy()
            assert (out == got).all(), seed


def test_absent_pins_take_any_digest_sequence_and_hash_barcodes_a_key_column_lacks():
    """``freeze_barcodes`` as barcode_digest returns it (Arrow), a list or a Series; a table whose barcode_key column
    is empty (read_csv's NaN) or Arrow-null hashes its barcodes instead of dropping the pins (a train/test leak)."""
    rows = [(f"A{i}", "Aus", "Aus alpha", f"ACGT{'ACGT'[i % 10 % 4]}{'ACGT'[i % 10 // 4]}") for i in range(40)]
    v1 = pd.DataFrame(rows, columns=["processid", "genus", "species", "dna_barcode"])
    frozen = assign_splits(v1).astype(object)
    test_barcode = v1.loc[frozen.to_numpy() == "test", "dna_barcode"].iloc[0]
    gone = (v1["dna_barcode"] == test_barcode).to_numpy()
    freeze = pd.Series(frozen.to_numpy(), index=v1["processid"].to_numpy())
    new = pd.DataFrame([(f"B{i}", "Aus", "Aus alpha", test_barcode) for i in range(2)], columns=v1.columns)
    build = pd.concat([v1[~gone], new], ignore_index=True)
    digests = barcode_digest(v1["dna_barcode"])
    for given in (digests, digests.to_pylist(), pd.Series(digests.to_pylist()), np.array(digests.to_pylist())):
        got = assign_splits(build, freeze, given).astype(object).to_numpy()
        assert list(got[-2:]) == ["test", "test"], type(given)
    for empty_key in (np.nan, pd.Series([None] * len(build), dtype="string[pyarrow]")):
        keyed = build.assign(barcode_key=empty_key)
        assert list(assign_splits(keyed, freeze, digests).astype(object).to_numpy()[-2:]) == ["test", "test"]


def test_a_frozen_test_record_whose_barcode_is_now_blank_or_corrected_still_holds_its_barcode(tmp_path):
    """Reviewer splitsv: a v1 test record still in v2 with its barcode now failed by QC (blank) or corrected held
    its old barcode nowhere (only absent records' barcodes pinned), so new records of the species on that barcode
    went to train: a barcode published as held-out, trained on in v2. Its old barcode pins them into test, through
    ``assign_splits`` (with and without the barcode stage's keys) and the command (history or metadata CSV)."""
    rows = [(f"A{i}", "Aus", "Aus alpha", f"ACGT{'ACGT'[i % 10 % 4]}{'ACGT'[i % 10 // 4]}") for i in range(40)]
    v1 = pd.DataFrame(rows, columns=["processid", "genus", "species", "dna_barcode"])
    v1_split = assign_splits(v1).astype(object).to_numpy()
    test_barcode = v1.loc[v1_split == "test", "dna_barcode"].iloc[0]
    on_it = (v1["dna_barcode"] == test_barcode).to_numpy()
    freeze = pd.Series(v1_split, index=v1["processid"].to_numpy())
    digests = barcode_digest(v1["dna_barcode"])
    history = pd.DataFrame({"processid": v1["processid"], "split": v1_split, "barcode_key": digests})
    history.to_csv(tmp_path / "history.csv", index=False)
    v1.assign(split=v1_split).to_csv(tmp_path / "v1.csv", index=False)
    labelled = pd.DataFrame([(f"B{i}", "Aus", "Aus alpha", test_barcode) for i in range(3)], columns=v1.columns)
    unlabelled = pd.DataFrame([("B9", None, None, test_barcode)], columns=v1.columns)  # no stand-in of its own
    withdrawn = v1.index[~on_it][-1]  # another record gone: the command then keys the barcodes that pin
    for case, now, arrivals, drop in (
        ("blank", None, labelled, []),
        ("corrected", "TTTTGGGGCCCC", labelled, []),
        ("corrected, unlabelled arrival", "TTTTGGGGCCCC", unlabelled, []),
        ("blank, a record withdrawn", None, labelled, [withdrawn]),
        ("corrected, unlabelled arrival, a record withdrawn", "TTTTGGGGCCCC", unlabelled, [withdrawn]),
    ):
        v2 = v1.copy()
        v2.loc[on_it, "dna_barcode"] = now
        build = pd.concat([v2.drop(index=drop), arrivals], ignore_index=True)
        keyed = build.assign(barcode_key=barcode_digest(build["dna_barcode"]).to_pylist())
        for table in (build, keyed):
            got = assign_splits(table, freeze, digests).astype(object).to_numpy()
            assert set(got[-len(arrivals) :]) == {"test"}, case
            kept = v1_split[~v1.index.isin(drop)]
            assert (got[: len(kept)] == kept).all(), case  # frozen records stay where they were
        build.to_csv(tmp_path / "v2.csv", index=False)
        for name in ("history.csv", "v1.csv"):
            split_csv(tmp_path / "v2.csv", tmp_path / "out.csv", freeze_csv=tmp_path / name)
            out = pd.read_csv(tmp_path / "out.csv", dtype=str, keep_default_na=False).set_index("processid")
            assert set(out["split"][arrivals["processid"]]) == {"test"}, (case, name)


def _version(tmp_path, name: str, records: pd.DataFrame, previous: Path | None) -> tuple[Path, pd.Series]:
    """One version through the workflow's split step, frozen from ``previous`` (a release folder), and the split
    history its release ships: (the release folder, split by processid)."""
    import pyarrow.csv as pacsv

    from bioscan_rebuild.export.side_files import split_history

    work = tmp_path / name
    work.mkdir()
    labels = records[["processid", "genus", "species"]]
    pq.write_table(pa.Table.from_pandas(labels, preserve_index=False), work / "c.pq")
    barcodes = pa.array([v if isinstance(v, str) else None for v in records["dna_barcode"]], pa.string())
    keyed = pa.table(
        {"processid": records["processid"].tolist(), "dna_barcode": barcodes, "barcode_key": barcode_digest(barcodes)}
    )
    pq.write_table(keyed, work / "b.pq")
    history = None if previous is None else previous / "bioscan5m" / "metadata" / "split_history.csv"
    split_tables(work / "c.pq", [work / "b.pq"], work / "splits", freeze_csv=history)
    release = work / "release"
    (release / "bioscan5m" / "metadata").mkdir(parents=True)
    made = split_history(work / "splits" / "splits.parquet", name, previous)
    pacsv.write_csv(made, release / "bioscan5m" / "metadata" / "split_history.csv")
    splits = pq.read_table(work / "splits" / "splits.parquet").to_pandas().set_index("processid")["split"]
    return release, splits


def test_a_barcode_a_frozen_record_no_longer_carries_holds_in_every_later_version(tmp_path):
    """Reviewer diffa: the split history keeps each record's key as it is now, so a v1 test barcode that its
    records lost in v2 (failed by QC) held new records in v2 but was forgotten by v3, which put them in train.
    The history's ``held_barcode_keys`` keeps the keys a record was released with and carries no more, in every
    later version, beside its key now: a barcode corrected in v2 and its record withdrawn in v3 hold both."""
    rows = [(f"A{i}", "Aus", "Aus alpha", f"ACGT{'ACGT'[i % 10 % 4]}{'ACGT'[i % 10 // 4]}") for i in range(40)]
    v1 = pd.DataFrame(rows, columns=["processid", "genus", "species", "dna_barcode"])
    release1, split1 = _version(tmp_path, "1", v1, None)
    old = split1.reindex(v1["processid"]).to_numpy()
    test_barcode = v1.loc[old == "test", "dna_barcode"].iloc[0]
    on_it = (v1["dna_barcode"] == test_barcode).to_numpy()
    corrected = "TTTTGGGGCCCC"

    def arrivals(prefix, barcode):
        return pd.DataFrame([(f"{prefix}{i}", "Aus", "Aus alpha", barcode) for i in range(3)], columns=v1.columns)

    # failed by QC in v2; new records on the old barcode in v3 and v4
    v2 = v1.assign(dna_barcode=np.where(on_it, None, v1["dna_barcode"]))
    release2, _ = _version(tmp_path, "2", v2, release1)
    v3 = pd.concat([v2, arrivals("N", test_barcode)], ignore_index=True)
    release3, split3 = _version(tmp_path, "3", v3, release2)
    assert set(split3[[f"N{i}" for i in range(3)]]) == {"test"}
    history2 = pd.read_csv(release2 / "bioscan5m" / "metadata" / "split_history.csv", dtype=str, keep_default_na=False)
    lost = history2.set_index("processid").loc[v1["processid"][on_it]]
    key = barcode_digest([test_barcode]).to_pylist()[0]
    assert set(lost["held_barcode_keys"]) == {key} and set(lost["barcode_key"]) == {""}
    assert (history2.set_index("processid").drop(index=lost.index)["held_barcode_keys"] == "").all()
    _, split4 = _version(tmp_path, "4", pd.concat([v3, arrivals("M", test_barcode)], ignore_index=True), release3)
    assert set(split4[[f"M{i}" for i in range(3)]]) == {"test"}
    # corrected in v2b, withdrawn in v3b: new records on the old barcode and on the corrected one
    v2b = v1.assign(dna_barcode=np.where(on_it, corrected, v1["dna_barcode"]))
    release2b, _ = _version(tmp_path, "2b", v2b, release1)
    v3b = pd.concat([v2b[~on_it], arrivals("N", test_barcode), arrivals("C", corrected)], ignore_index=True)
    _, split3b = _version(tmp_path, "3b", v3b, release2b)
    assert set(split3b[[f"N{i}" for i in range(3)] + [f"C{i}" for i in range(3)]]) == {"test"}


def test_freeze_digests_may_mark_a_missing_barcode_as_nan():
    """Reviewer diffa: a list or object array of digests with NaN for a record frozen without a barcode (what
    pandas' read_csv gives) stopped ``assign_splits`` on an ArrowTypeError, even for a build that changed nothing."""
    rows = [(f"A{i}", "Aus", "Aus alpha", f"ACGT{'ACGT'[i % 10 % 4]}{'ACGT'[i % 10 // 4]}") for i in range(40)]
    v1 = pd.DataFrame(rows, columns=["processid", "genus", "species", "dna_barcode"])
    v1.loc[5, "dna_barcode"] = None
    frozen = assign_splits(v1).astype(object).to_numpy()
    freeze = pd.Series(frozen, index=v1["processid"].to_numpy())
    digests = [math.nan if d is None else d for d in barcode_digest(v1["dna_barcode"]).to_pylist()]
    for given in (digests, np.array(digests, dtype=object), pd.Series(digests, dtype=object)):
        assert (assign_splits(v1, freeze, given).astype(object).to_numpy() == frozen).all(), type(given)


def test_absent_frozen_test_record_holds_its_barcode_in_test_through_the_csv_command(tmp_path):
    """The reviewer's case: v1 puts a barcode in test, its records are withdrawn in v2, and v2 brings new records of
    the species on it. They join test (from the history's barcode_key, or a pre-history CSV's dna_barcode)."""
    rows = [(f"A{i}", "Aus", "Aus alpha", f"ACGT{'ACGT'[i % 10 % 4]}{'ACGT'[i % 10 // 4]}") for i in range(40)]
    v1 = pd.DataFrame(rows, columns=["processid", "genus", "species", "dna_barcode"])
    v1_split = assign_splits(v1).astype(object)
    test_barcode = v1.loc[v1_split.to_numpy() == "test", "dna_barcode"].iloc[0]
    gone = v1["dna_barcode"] == test_barcode
    history = pd.DataFrame(
        {
            "processid": v1["processid"],
            "split": v1_split.to_numpy(),
            "last_version": "1.0",
            "barcode_key": barcode_digest(v1["dna_barcode"]),
        }
    )
    new = pd.DataFrame(
        [(f"B{i}", "Aus", "Aus alpha", "NN" + test_barcode) for i in range(3)] + [("B9", None, None, test_barcode)],
        columns=v1.columns,
    )
    # labelled new records on the barcode, and a record without species alone on it (no stand-in of its own: the
    # command crashed on it, concatenating a chunked array)
    for case, arrivals in (("labelled", new), ("unlabelled", new.tail(1))):
        pd.concat([v1[~gone], arrivals]).to_csv(tmp_path / "v2.csv", index=False)
        for freeze, name in ((history, "history.csv"), (v1.assign(split=v1_split.to_numpy()), "v1.csv")):
            freeze.to_csv(tmp_path / name, index=False)
            split_csv(tmp_path / "v2.csv", tmp_path / f"out-{name}", freeze_csv=tmp_path / name)
            out = pd.read_csv(tmp_path / f"out-{name}", dtype=str, keep_default_na=False)
            assert set(out.set_index("processid")["split"][arrivals["processid"]]) == {"test"}, (case, name)
    # a freeze without barcodes (processid,split only) cannot hold them: the new records went to train, the
    # barcode in test and train at once, and the command said only how many freeze rows matched no record
    history.drop(columns="barcode_key").to_csv(tmp_path / "old-history.csv", index=False)
    with pytest.raises(InputError, match=r"4 frozen record\(s\) are not in this build .*no barcode_key or dna_barcode"):
        split_csv(tmp_path / "v2.csv", tmp_path / "out-old.csv", freeze_csv=tmp_path / "old-history.csv")
    assert not (tmp_path / "out-old.csv").exists()
    # every frozen record present: nothing to hold, the plain table is enough
    history[~gone.to_numpy()].drop(columns="barcode_key").to_csv(tmp_path / "present.csv", index=False)
    split_csv(tmp_path / "v2.csv", tmp_path / "out-present.csv", freeze_csv=tmp_path / "present.csv")
    # another dataset's history (not one record of this build): its barcodes moved this build's records into its
    # test split, and the command exited 0 saying only how many rows matched no record
    foreign = history.assign(processid="X" + history["processid"])
    foreign.to_csv(tmp_path / "foreign.csv", index=False)
    with pytest.raises(InputError, match=r"none of its 40 frozen records is in this build \(another dataset's"):
        split_csv(tmp_path / "v2.csv", tmp_path / "out-foreign.csv", freeze_csv=tmp_path / "foreign.csv")
    assert not (tmp_path / "out-foreign.csv").exists()
    v2 = pd.read_csv(tmp_path / "v2.csv", dtype=str, keep_default_na=False)  # the workflow's step: the same
    for name, frame in (
        ("curated", v2[["processid", "genus", "species"]]),
        ("barcodes", v2.assign(barcode_key=barcode_digest(v2["dna_barcode"]).to_pylist())),
    ):
        table = pa.Table.from_pandas(frame, preserve_index=False)
        pq.write_table(
            table.cast(pa.schema([(n, pa.string()) for n in table.column_names])), tmp_path / f"{name}.parquet"
        )
    with pytest.raises(InputError, match="none of its 40 frozen records is in this build"):
        split_tables(
            tmp_path / "curated.parquet", [tmp_path / "barcodes.parquet"], tmp_path / "out", tmp_path / "foreign.csv"
        )


# -- the CSV command -----------------------------------------------------------------------------------------


def _toy_csv(path: Path) -> pd.DataFrame:
    rows = []
    for s, (n, nb) in enumerate([(40, 14), (24, 9), (12, 5), (9, 9), (1, 1)]):
        for i in range(n):
            rows.append((f"Aus {'bcdef'[s]}us", f"ACGT{s}{i % nb:02d}"))
    rows += [("NA", "NNGGGA"), ("", "GGGC"), ("Aus sp. 3", "GGGT")] * 3
    frame = pd.DataFrame(rows, columns=["species", "dna_barcode"])
    frame.insert(0, "processid", [f"P{i:04d}" for i in range(len(frame))])
    frame.insert(1, "note", ["1.50", "NA", "", "x,y", '"q"'] * (len(frame) // 5) + ["z"] * (len(frame) % 5))
    frame.insert(2, "genus", "Aus")
    frame["split"] = "junk"
    frame = frame.sample(frac=1, random_state=0)  # row order to keep is not sorted
    frame.to_csv(path, index=False)
    return frame


def _freeze_case(old: list[tuple[str, str, str]], new: list[tuple[str, str]]):
    """old: (genus, species, frozen split) rows; new: (genus, species) rows. Every row its own barcode."""
    rows = [(f"old{i}", g, sp, f"ACGT{i:05d}") for i, (g, sp, _) in enumerate(old)]
    rows += [(f"new{i}", g, sp, f"TTGA{i:05d}") for i, (g, sp) in enumerate(new)]
    table = pd.DataFrame(rows, columns=["processid", "genus", "species", "dna_barcode"])
    freeze = pd.Series([s for *_, s in old], index=[f"old{i}" for i in range(len(old))])
    split = assign_splits(table, freeze).astype(object)
    assert split.iloc[: len(old)].tolist() == freeze.tolist()  # old records never move
    return set(split.iloc[len(old) :])


UNSEEN_FAMILY = {"key_unseen", "val_unseen", "test_unseen"}


def test_freeze_keeps_an_old_unseen_species_unseen_with_few_new_records():
    old = [("Aus", "Aus alpha", "train")] * 3 + [("Aus", "Aus Malaise01", "key_unseen")] * 10
    assert _freeze_case(old, [("Aus", "Aus Malaise01")] * 3) <= UNSEEN_FAMILY  # protocol alone: other_heldout
    assert _freeze_case([], [("Aus", "Aus alpha")] * 3 + [("Aus", "Aus Malaise01")] * 3) >= {"other_heldout"}


def test_freeze_never_makes_an_old_seen_species_unseen():
    # a placeholder name that reached train through a shared barcode stays out of the unseen splits
    old = [("Aus", "Aus alpha", "train")] * 3 + [("Aus", "Aus sp. 7", "train")] * 5
    assert _freeze_case(old, [("Aus", "Aus sp. 7")] * 10) == {"other_heldout"}
    assert _freeze_case(old[:3], [("Aus", "Aus sp. 7")] * 10) <= UNSEEN_FAMILY  # no old records of it: unseen


def test_freeze_takes_known_genera_from_old_records_too():
    old = [("Bus", "Bus alpha", "train")] * 5
    assert _freeze_case(old, [("Bus", "Bus Malaise9")] * 10) <= UNSEEN_FAMILY
    assert _freeze_case([], [("Bus", "Bus Malaise9")] * 10) == {"other_heldout"}  # genus unknown without them


def test_split_csv_keeps_rows_and_other_columns(tmp_path):
    frame = _toy_csv(tmp_path / "in.csv")
    summary = split_csv(tmp_path / "in.csv", tmp_path / "out.csv", summary_csv=tmp_path / "summary.csv")
    raw_in = pd.read_csv(tmp_path / "in.csv", dtype=str, keep_default_na=False)
    raw_out = pd.read_csv(tmp_path / "out.csv", dtype=str, keep_default_na=False)
    assert list(raw_out.columns) == list(raw_in.columns)
    pd.testing.assert_frame_equal(raw_out.drop(columns="split"), raw_in.drop(columns="split"))
    # the split is assign_splits on the same table read with pandas' default missing values
    expected = assign_splits(pd.read_csv(tmp_path / "in.csv", dtype=str)).astype(object)
    assert raw_out["split"].tolist() == expected.tolist()
    assert summary["rows"] == len(frame) and summary["frozen"] == 0
    assert sum(summary["splits"].values()) == len(frame) and summary["splits"]["test"] > 0
    # "NA" and "" species are missing (pretrain), "Aus sp. 3" is a placeholder name
    assert set(raw_out.loc[raw_in["species"].isin(["NA", ""]), "split"]) == {"pretrain"}
    assert set(raw_out.loc[raw_in["species"] == "Aus sp. 3", "split"]) == {"other_heldout"}
    table = pd.read_csv(tmp_path / "summary.csv").set_index("split")
    assert table.loc["total", "samples"] == len(frame)


def test_split_csv_refills_chunk_and_keeps_na_processids_in_the_freeze(tmp_path):
    frame = _toy_csv(tmp_path / "in.csv")
    table = pd.read_csv(tmp_path / "in.csv", dtype=str, keep_default_na=False)
    table.loc[0, "processid"] = "NA"  # a processid, not a missing value
    table["chunk"] = "stale"
    table.to_csv(tmp_path / "in.csv", index=False)
    split_csv(tmp_path / "in.csv", tmp_path / "v1.csv")
    v1 = pd.read_csv(tmp_path / "v1.csv", dtype=str, keep_default_na=False)
    assert v1["chunk"].tolist() == chunk_of(v1["processid"], v1["split"]).tolist()
    other = next(s for s in ("val", "test", "train") if s != v1.loc[0, "split"])
    pd.DataFrame({"processid": ["NA"], "split": [other]}).to_csv(tmp_path / "freeze.csv", index=False)
    summary = split_csv(tmp_path / "in.csv", tmp_path / "v2.csv", freeze_csv=tmp_path / "freeze.csv")
    v2 = pd.read_csv(tmp_path / "v2.csv", dtype=str, keep_default_na=False)
    assert v2.loc[0, "split"] == other and summary["frozen"] == 1 and len(v2) == len(frame)


def test_split_command_with_freeze(tmp_path, capsys):
    _toy_csv(tmp_path / "in.csv")
    from bioscan_rebuild.cli.main import build_parser

    parser = build_parser()  # the real `bioscan-rebuild split` arguments
    args = parser.parse_args(["split", str(tmp_path / "in.csv"), str(tmp_path / "v1.csv")])
    assert run_split_command(args) == 0
    v1 = pd.read_csv(tmp_path / "v1.csv", dtype=str, keep_default_na=False)
    v1[["processid", "split"]].iloc[: len(v1) // 2].to_csv(tmp_path / "freeze.csv", index=False)
    args = parser.parse_args(
        ["split", str(tmp_path / "in.csv"), str(tmp_path / "v2.csv"), "--freeze", str(tmp_path / "freeze.csv")]
    )
    assert run_split_command(args) == 0
    assert "frozen" in capsys.readouterr().out
    v2 = pd.read_csv(tmp_path / "v2.csv", dtype=str, keep_default_na=False)
    half = len(v1) // 2
    assert v2["split"].iloc[:half].tolist() == v1["split"].iloc[:half].tolist()
    assert _straddling(v2.replace({"": None}), v2["split"]).empty


def test_split_summary_takes_an_all_missing_barcode_column_as_read_csv_gives_it():
    table = pd.DataFrame({"split": ["pretrain", "train"], "species": [None, "Aus bus"], "dna_barcode": [np.nan] * 2})
    summary = split_summary(table).set_index("split")
    assert summary.loc["total", "samples"] == 2 and summary.loc["total", "barcodes"] == 0


# -- the CSV command: cells come back as they were --------------------------------------------------------------

# raw CSV text of cells, as pandas writes them (quoted only around a comma, a quote or a line break)
ODD_CELLS = [
    "007",
    "1.50",
    "",
    "None",
    "NA",
    "nan",
    '"a,b"',
    '"say ""hi"""',
    '"two\nlines"',
    "café",
    "中文 ünïcödé",
    " padded ",
    "#x",
    "'",
    "1e3",
    "-0",
    "TRUE",
    "0010",
]


def _odd_csv(seed: int) -> tuple[list[str], list[list[str]]]:
    """(header, rows) of raw field texts: odd cells around the columns the split reads, rows not sorted."""
    rng = np.random.default_rng(seed)
    rows = []
    for s, (n, nb) in enumerate([(40, 14), (24, 9), (12, 5), (9, 9), (1, 1)]):
        for i in range(n):
            rows.append(["Aus", f"Aus {'bcdef'[s]}us", f"NNACGT{s}{i % nb:02d}N"])
    rows += [["Aus", "NA", "ACGT000"], ["", "", "ACGT001"], ["Aus", "Aus sp. 3", ""], ["None", "None", "None"]] * 3
    out = []
    for i, (genus, species, barcode) in enumerate(rows):
        odd = [ODD_CELLS[(i * k) % len(ODD_CELLS)] for k in (1, 5, 7)]
        out.append([f"P{i:04d}", odd[0], genus, species, barcode, "stale", odd[1], odd[2]])
    order = rng.permutation(len(out))
    return ["processid", "note", "genus", "species", "dna_barcode", "split", "count", "Ünïcode column"], [
        out[i] for i in order
    ]


def _csv_bytes(header: list[str], rows: list[list[str]]) -> bytes:
    return "".join(",".join(fields) + "\n" for fields in [header, *rows]).encode()


def test_split_command_keeps_every_other_cell_byte_for_byte(tmp_path):
    header, rows = _odd_csv(0)
    (tmp_path / "in.csv").write_bytes(_csv_bytes(header, rows))
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "workflow")}
    command = [sys.executable, "-m", "bioscan_rebuild", "split", "in.csv", "out.csv", "--summary", "summary.csv"]
    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    got = (tmp_path / "out.csv").read_bytes()
    splits = pd.read_csv(tmp_path / "out.csv", dtype=str, keep_default_na=False)["split"].tolist()
    assert set(splits) <= set(SPLITS) and {"train", "test", "pretrain", "other_heldout"} <= set(splits)
    # the input's bytes with only the split cells changed: same rows, same order, every other cell as it was
    at = header.index("split")
    expected = _csv_bytes(header, [[*f[:at], split, *f[at + 1 :]] for f, split in zip(rows, splits)])
    assert got == expected
    table = pd.read_csv(tmp_path / "in.csv", dtype=str)  # read_csv's missing values, as the split reads them
    assert splits == assign_splits(table).astype(object).tolist()


def test_split_csv_reads_any_quoting_back_to_the_same_values(tmp_path):
    """Quotes around plain cells and CRLF line ends are not kept, the values are: pandas reads both files alike."""
    header, rows = _odd_csv(1)
    requoted = [[f if f.startswith('"') else f'"{f}"' if i % 2 else f for i, f in enumerate(r)] for r in rows]
    text = "".join(",".join(fields) + "\r\n" for fields in [header, *requoted])
    (tmp_path / "in.csv").write_bytes(text.encode())
    split_csv(tmp_path / "in.csv", tmp_path / "out.csv")
    before = pd.read_csv(tmp_path / "in.csv", dtype=str, keep_default_na=False)
    after = pd.read_csv(tmp_path / "out.csv", dtype=str, keep_default_na=False)
    pd.testing.assert_frame_equal(after.drop(columns="split"), before.drop(columns="split"))
    assert (tmp_path / "out.csv").read_bytes() == _csv_bytes(
        header, [[*f[:5], s, *f[6:]] for f, s in zip(rows, after["split"])]
    )


def test_split_csv_is_assign_splits_on_the_whole_table(tmp_path):
    """The command keeps in memory only the records with a species (and frozen ones) and gives the others the
    split of their barcode: the same as the protocol on the whole table, with and without a freeze, and the
    same summary as ``split_summary``."""
    moved_without_species = 0
    for seed in range(12):
        rng = np.random.default_rng(seed)
        table = _random_table(300 + seed)
        raw = table.astype(object).where(table.notna(), "")
        for column in ("genus", "species", "dna_barcode"):  # missing values spelt as read_csv's tokens too
            spelt = raw[column].eq("") & (rng.random(len(raw)) < 0.5)
            raw.loc[spelt, column] = rng.choice(["NA", "None", "nan", "N/A", "NULL"], int(spelt.sum()))
        raw["chunk"] = "stale"
        raw.to_csv(tmp_path / "in.csv", index=False)
        freeze, freeze_csv = None, None
        if seed % 2:
            old = rng.random(len(table)) < 0.5
            freeze = pd.Series(assign_splits(table[old]).astype(object).to_numpy(), index=table["processid"][old])
            freeze.rename("split").rename_axis("processid").reset_index().to_csv(tmp_path / "freeze.csv", index=False)
            freeze_csv = tmp_path / "freeze.csv"
        summary = split_csv(tmp_path / "in.csv", tmp_path / "out.csv", freeze_csv, tmp_path / "summary.csv")
        read = pd.read_csv(tmp_path / "in.csv", dtype=str)
        expected = assign_splits(read, freeze).astype(object)
        out = pd.read_csv(tmp_path / "out.csv", dtype=str, keep_default_na=False)
        assert out["split"].tolist() == expected.tolist(), seed
        assert out["chunk"].tolist() == chunk_of(out["processid"], out["split"]).tolist()
        assert summary["frozen"] == (0 if freeze is None else len(freeze))
        assert summary["splits"] == expected.value_counts().reindex(SPLITS, fill_value=0).to_dict()
        frame = pd.DataFrame({"split": expected, "species": read["species"], "dna_barcode": read["dna_barcode"]})
        pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "summary.csv"), split_summary(frame))
        moved_without_species += int((read["species"].isna() & (expected != "pretrain")).sum())
    assert moved_without_species > 0  # records without species did move with their barcodes


@pytest.mark.parametrize(
    ("line", "phrase"),
    [
        (b"P2,x\xff,Aus,Aus bus,ACGT,", "not a metadata CSV"),  # not UTF-8 where the protocol does not look
        (b"P2,x,Aus,,NN\xffACGT,", "not a metadata CSV"),  # nor in a barcode of a record without species
        (b"P2,x,Aus,Aus bus,ACGT", "Expected 6 columns, got 5"),
    ],
)
def test_split_csv_rejects_a_broken_row_and_writes_nothing(tmp_path, line, phrase):
    head = b"processid,note,genus,species,dna_barcode,split\nP1,a,Aus,Aus bus,ACGT,\n"
    (tmp_path / "in.csv").write_bytes(head + line)
    with pytest.raises(InputError, match=phrase):
        split_csv(tmp_path / "in.csv", tmp_path / "out.csv")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.csv"]


def test_split_csv_refuses_a_processid_in_two_rows(tmp_path):
    """A processid twice (here once in another case) used to get two splits: its image in train and test."""
    rows = [f"P{i:02d},Aus,Aus bus,{code}" for i, code in enumerate(["AAA", "AAA", "CCC", "CCC", "GGG", "TTT"])]
    rows.append("p03,Aus,Aus bus,ACA")
    (tmp_path / "in.csv").write_text("processid,genus,species,dna_barcode\n" + "\n".join(rows) + "\n")
    with pytest.raises(InputError, match=r"1 processid\(s\) appear more than once .*'P03'; keep one row each"):
        split_csv(tmp_path / "in.csv", tmp_path / "out.csv")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.csv"]


def test_a_species_mostly_without_barcodes_is_a_clear_error(tmp_path):
    """Records without a barcode count in a species' size but cannot be drawn: with too few barcoded ones routine P
    had no answer and the command ended in a RuntimeError traceback ("impossible")."""
    barcodes = ["ACGT", "ACGA"] + [""] * 10
    rows = [f"P{i:02d},Aus,Aus bus,{code}" for i, code in enumerate(barcodes)]
    (tmp_path / "in.csv").write_text("processid,genus,species,dna_barcode\n" + "\n".join(rows) + "\n")
    with pytest.raises(InputError, match=r"species 'Aus bus': 12 records, only 2 of them on a barcode"):
        split_csv(tmp_path / "in.csv", tmp_path / "out.csv")
    barcodes = ["ACGT", "ACGA", "ACGC", "ACGG", "ACTT", "ACTA"] + [""] * 6  # enough barcoded records: split
    rows = [f"P{i:02d},Aus,Aus bus,{code}" for i, code in enumerate(barcodes)]
    (tmp_path / "in.csv").write_text("processid,genus,species,dna_barcode\n" + "\n".join(rows) + "\n")
    summary = split_csv(tmp_path / "in.csv", tmp_path / "out.csv")
    assert sum(summary["splits"].values()) == 12


# -- routine P and the size functions, branch by branch ----------------------------------------------------------


@pytest.mark.parametrize(
    ("n", "test_n", "test_ub"),
    [
        (0, 0, 0),  # below 8: nothing (the formulas would give 2 and 1)
        (7, 0, 0),
        (8, 4, 4),  # the threshold itself: floor(4 + 0)
        (9, 4, 4),  # floor(4.25), floor(4.33)
        (11, 4, 5),  # floor(4.75), floor(4 + 3/3) = 5 exactly
        (12, 5, 5),  # floor(4 + 4/4) = 5 exactly, floor(5.33)
        (92, 25, 32),  # floor(4 + 84/4) = 25, floor(4 + 84/3) = 32
        (200, 25, 68),  # test_n is capped at 25, test_ub is not
    ],
)
def test_test_size_functions(n, test_n, test_ub):
    assert (n_test(n), ub_test(n)) == (test_n, test_ub)


@pytest.mark.parametrize(("b", "expected"), [(0, 0), (2, 0), (3, 1), (4, 1), (5, 2), (8, 3)])
def test_test_barcode_cap(b, expected):
    # test_bc(b) = 0 below 3, else floor(1 + (b - 2)/3): 3 -> 1.33, 4 -> 1.67, 5 -> 2, 8 -> 3
    assert bc_test(b) == expected


def _params(target, lower=0, upper=100, bc_upper=100, soft1=1.1, soft2=1.0):
    """P parameters with constant size functions (a callable ``lower`` is passed through)."""
    low = lower if callable(lower) else (lambda n: lower)
    return PartitionParams(lambda n: target, low, lambda n: upper, lambda b: bc_upper, soft1, soft2, seed=0, min_n=1)


def _p(sizes, n, params):
    return choose_barcodes(list(sizes), n, params, np.random.default_rng(0))


def test_p_no_option_falls_back_to_the_barcode_at_the_target():
    # test parameters, n = 11 (two rows without barcode): t = 4, lb = 3, ub = 5, bub = test_bc(2) = 0.
    # sizes [4, 5], cs [4, 9]: no option (4 <= t but cs 4 < 4.4; 5 > t). sizes[0] = 4 is not > t (first branch)
    # nor > t*soft2 = 4 (second), so c = first cs >= 4.4 = 1 and c - 1 is closer to t (|4-4| < |4-5|): i = 0;
    # alloc + sizes[c] = 5 <= ub, so it is taken, reaches t and is kept (4 >= lb).
    assert _p([4, 5], 11, TEST_P) == [0]


def test_p_last_pick_may_overshoot_to_the_next_barcode_up_to_ub():
    # test parameters, n = 20: t = 7, lb = 3, ub = 8, bub = test_bc(4) = 1, so the first pick is the last one.
    # sizes [3, 4, 5, 8], cs [3, 7, 12, 20]: options = size <= 7 and cs >= 7.7 = {2}. bub branch: c = last
    # size <= 7 = 2; c + 1 = 3 exists, |8 - 7| = 1 < |7 - 5| = 2 and 8 <= ub = 8 (equal: allowed): i = 3.
    assert _p([3, 4, 5, 8], 20, TEST_P) == [3]


def test_p_a_lone_barcode_above_the_target():
    # n = 11: t = 4, lb = 3; the only barcode (5 rows) exceeds t, is >= lb and < n/2 = 5.5: taken and kept
    assert _p([5], 11, TEST_P) == [0]


@pytest.mark.parametrize(
    ("lower", "expected"),
    [
        (3, [0]),  # sizes[0] = lb exactly: taken (>=), and kept (alloc 3 >= lb)
        (lambda n: n * 0.3, [0]),  # lower is a function of n: 0.3 * 10 = 3 again
        (3.5, []),  # sizes[0] < lb: stop, nothing
    ],
)
def test_p_smallest_barcode_above_the_target_needs_lb(lower, expected):
    # t = 2 < every size: no option, alloc == 0 and no size <= t -> take i = 0 iff sizes[0] >= lb and
    # sizes[0] < n/2 = 5
    assert _p([3, 4], 10, _params(2, lower=lower)) == expected


@pytest.mark.parametrize(
    ("upper", "expected"),
    [
        (4, [0]),  # sizes[0] = 4 <= (t - alloc)/2 = 4 and alloc + 4 = ub (not above): i = 0 taken
        (3.9, []),  # alloc + sizes[0] > ub: stop
    ],
)
def test_p_second_branch_takes_the_smallest_when_soft2_allows(upper, expected):
    # soft2 = 0.25 (published calls use >= 1, where this branch always stops). t = 8, bub = 1.
    # sizes [4, 9], cs [4, 13]: options need size <= 8 and cs >= 8.8: none. Not (alloc == 0 and all sizes > t);
    # sizes[0] = 4 > t*soft2 = 2, so the second branch: 4 > 8/2 is false, then the ub test decides.
    assert _p([4, 9], 13, _params(8, upper=upper, bc_upper=1, soft2=0.25)) == expected


def test_p_second_branch_stops_once_alloc_plus_the_smallest_exceeds_ub():
    # soft2 = 0.25, t = 10, ub = 5, bub = 5. sizes [3, 3, 20]: cs [3, 6, 26], no cs >= 11 among sizes <= 10.
    # Step 1: second branch (3 > 2.5, 3 <= 10/2, 0 + 3 <= 5): take position 0, alloc 3.
    # Step 2: sizes [3, 20], cs [3, 23]: none (cs >= 8 only at 20 > 7); 3 > 2.5 - 3, 3 <= 7/2, but 3 + 3 > 5: stop.
    assert _p([3, 3, 20], 26, _params(10, upper=5, bc_upper=5, soft2=0.25)) == [0]


def test_p_second_branch_after_a_pick_with_one_barcode_left():
    # soft2 = 1, t = 5, ub = 20, bub = 10. sizes [1, 10], cs [1, 11]: no option (cs >= 5.5 only at 10 > 5).
    # Third branch: c = 1, |1 - 5| = 4 < |5 - 10| = 5 -> i = 0, 0 + 10 <= ub: alloc 1. Left: [10], no option,
    # alloc > 0 and 10 > 5 - 1: second branch, 10 > (5 - 1)/2: stop. Kept (lb = 0).
    assert _p([1, 10], 11, _params(5, upper=20, bc_upper=10)) == [0]


def test_p_without_a_running_sum_reaching_the_target_is_an_error():
    # n = 40 counts rows without barcode: t = test_n(40) = 12 but the barcodes hold 2 rows, so no cs >= 13.2
    # and sizes[0] = 1 is neither > t nor > t*soft2: the spec's "impossible (error)" case
    with pytest.raises(RuntimeError, match=r"^routine P: no running sum reaches the target \(impossible\)$"):
        _p([1, 1], 40, TEST_P)


# -- the steps on tiny tables ------------------------------------------------------------------------------------


def _table(rows: list[tuple[str | None, str | None, str | None]]) -> pd.DataFrame:
    """(genus, species, barcode) rows, processids P00, P01, ..."""
    table = pd.DataFrame(rows, columns=["genus", "species", "dna_barcode"], dtype=object)
    table.insert(0, "processid", [f"P{i:02d}" for i in range(len(table))])
    return table


def _seven_row_species(names: list[str]) -> list[tuple[str, str, str]]:
    """Per name 7 rows: a 1-row barcode ``<k>A...`` and a 6-row one: eligible for the val top-up (n = 7 is below
    both P calls' minimum, test_n(7) = 0 and the smallest barcode holds one row)."""
    rows = []
    for k, name in enumerate(names):
        rows.append(("Aus", name, f"GATC{k}A"))
        rows += [("Aus", name, f"GATC{k}C")] * 6
    return rows


def _splits(table: pd.DataFrame, freeze: pd.Series | None = None) -> list[str]:
    return assign_splits(table, freeze).astype(object).tolist()


def test_a_two_row_species_counts_its_rows_in_the_top_up_goal():
    # Four eligible 7-row species and one 2-row species (not a singleton: its rows stay candidates).
    # goal = round(0.05 * (0 singleton species + 28 + 2 rows of species with n < 20)) = round(1.5) = 2, so alpha
    # and beta (name order) give their 1-row barcodes to val. (Counting the 2-row species as a singleton would
    # give round(0.05 * 29) = 1.)
    table = _table(
        _seven_row_species(["Aus delta", "Aus alpha", "Aus beta", "Aus gamma"]) + [("Aus", "Aus zeta", "TT")] * 2
    )
    expected = np.where(table["dna_barcode"].isin(["GATC1A", "GATC2A"]), "val", "train")
    assert _splits(table) == expected.tolist()


def test_a_twenty_row_species_is_not_long_tail():
    # "Aaus big" (first in name order): 20 rows on barcodes of 1 and 19 rows.
    # test P (t = 7, lb = 3, ub = 8): no option (cs 1, 20 vs 7.7 with only size 1 <= 7); third branch c = 1,
    #   i = 0 is closer, but alloc + sizes[1] = 19 > ub: stop, nothing.
    # val P (t = 1.0, ub = 2.0): no option (cs 1 < 1.1); 1 is not > t nor > 1.1 t; c = 1, 19 > ub: nothing.
    # Top-up: n = 20 is not < 20, so it neither counts in the goal nor is eligible: goal = round(0.05 * 28) = 1,
    # the walk takes alpha's 1-row barcode and stops at the goal.
    big = [("Aaus", "Aaus big", "CA")] + [("Aaus", "Aaus big", "CC")] * 19
    table = _table(big + _seven_row_species(["Aus alpha", "Aus beta", "Aus delta", "Aus gamma"]))
    expected = np.where(table["dna_barcode"] == "GATC0A", "val", "train")
    assert _splits(table) == expected.tolist()


def test_top_up_counts_test_rows_that_came_through_a_shared_barcode():
    # "Aus big": 20 rows on barcodes of 3, 4, 5 and 8 rows (BB). test P: t = 7, ub = 8, bub = test_bc(4) = 1:
    # options = {5-row} (cs 3, 7, 12 vs 7.7), bub branch moves to the 8-row BB (|8-7| < |7-5|, 8 <= ub).
    # "Aus small": one row on BB, then a 1-row and a 6-row barcode. Its own test P (n = 8, t = 4, ub = 4,
    # sizes [1, 1, 6]): no option, c = 2 (6) is closer than 1, 6 > ub: nothing.
    # BB moves with all its rows: small has nt = 1 test row and 7 left. Top-up: goal = round(0.05 * (12 + 7))
    # = 1; big is not eligible (nt = 8 > test_n(20) = 7); small: nt = 1 <= test_n(7 + 1) = 4: its 1-row barcode.
    rows = [("Aus", "Aus big", bc) for bc, k in (("AA", 3), ("AC", 4), ("AG", 5), ("BB", 8)) for _ in range(k)]
    rows += [("Aus", "Aus small", "BB"), ("Aus", "Aus small", "GA")] + [("Aus", "Aus small", "GC")] * 6
    table = _table(rows)
    expected = table["dna_barcode"].map({"BB": "test", "GA": "val"}).fillna("train")
    assert _splits(table) == expected.tolist()


def test_a_species_on_one_barcode_is_never_split():
    # "Aus beta": 10 rows, 3 on one barcode and 7 without: n = 10 >= 8 but b = 1, so P skips it (spec step 2);
    # not a top-up either (smallest barcode group 3 rows). "Aus alpha" (2 barcodes, n = 2) comes first.
    rows = [("Aus", "Aus alpha", "AC"), ("Aus", "Aus alpha", "AG")]
    rows += [("Aus", "Aus beta", "GGG")] * 3 + [("Aus", "Aus beta", None)] * 7
    assert _splits(_table(rows)) == ["train"] * 12


def test_rows_without_species_stay_pretrain_beside_an_unseen_species():
    # "Aus bus" (1 row) makes Aus a known genus and goes to train (singleton). "Aus sp. 1" (placeholder, last
    # species name) has 8 viable rows: unseen; one barcode, so neither unseen P moves it: key_unseen.
    # A record without species, on its own barcode, stays pretrain.
    rows = [("Aus", "Aus bus", "AAA")] + [("Aus", "Aus sp. 1", "CCC")] * 8 + [("Aus", None, "GGG")]
    assert _splits(_table(rows)) == ["train"] + ["key_unseen"] * 8 + ["pretrain"]


def test_result_is_a_categorical_series_named_split():
    table = _table([("Aus", "Aus bus", "AAA"), ("Aus", None, None)])
    got = assign_splits(table)
    assert got.name == "split" and list(got.cat.categories) == list(SPLITS)
    assert got.astype(object).tolist() == ["train", "pretrain"]


def test_missing_columns_are_named():
    table = _table([("Aus", "Aus bus", "AAA")]).drop(columns=["genus", "dna_barcode"])
    with pytest.raises(KeyError, match=r"assign_splits needs columns \['genus', 'dna_barcode'\]"):
        assign_splits(table)


# -- helpers: Arrow data, strip codes, chunks, summary ------------------------------------------------------------


def test_arrow_gives_the_arrow_data_of_arrow_strings_only():
    values = pd.Series(["ACG", None, "T"], dtype="string[pyarrow]")
    arr = _arrow(values)
    assert arr is not None and arr.to_pylist() == ["ACG", None, "T"] and hasattr(arr, "chunks")
    assert _arrow(values.astype(object)) is None and _arrow(values.astype("category")) is None


@pytest.mark.parametrize("dtype", [object, "string[pyarrow]", "category"])
def test_strip_codes_rank_the_strips_of_the_universe(dtype):
    # strips: "XA", "A", "XA", missing, "" (all N), "AC"; only uppercase N is stripped, so "XAN" -> "XA".
    # The universe (rows 0-4) holds the strips "", "A", "XA" (code point order: codes 0, 1, 2); "AC" is only
    # outside it (-1), as is the missing barcode.
    barcodes = pd.Series(["XAN", "NA", "XA", None, "NNN", "NAC"], dtype=dtype)
    universe = np.array([True, True, True, True, True, False])
    codes, n = _strip_codes(barcodes, universe)
    assert codes.tolist() == [2, 1, 2, -1, 0, -1] and n == 3


def test_chunk_of_plain_sequences():
    got = chunk_of(["CRCBB46471-23", "CRCBB46471-23"], ["pretrain", "val"])
    assert got.tolist() == ["2e", ""] and got.index.tolist() == [0, 1]
    assert got.name == "chunk" and got.dtype == object


def test_split_summary_counts_barcode_keys_when_present():
    # same sequence, two keys in train; a val row with a missing key counts no barcode
    df = pd.DataFrame(
        {
            "split": ["train", "train", "val"],
            "species": ["Aus bus", "Aus bus", "Aus cus"],
            "dna_barcode": ["ACGT", "ACGT", "ACGT"],
            "barcode_key": ["k1", "k2", None],
        }
    )
    summary = split_summary(df).set_index("split")
    assert summary.loc["train"].tolist() == [2, 2, 1] and summary.loc["val"].tolist() == [1, 0, 1]
    assert summary.loc["total"].tolist() == [3, 2, 2]


def test_split_summary_strips_only_n_from_object_barcodes():
    # strips "XACG", "ACG", "ACG", missing: two distinct barcodes
    df = pd.DataFrame(
        {
            "split": ["train"] * 4,
            "species": ["Aus bus"] * 4,
            "dna_barcode": pd.Series(["XACGN", "ACG", "NACG", None], dtype=object),
        }
    )
    assert split_summary(df).set_index("split").loc["train"].tolist() == [4, 2, 1]


# -- frozen rebuilds on tiny tables ----------------------------------------------------------------------------------


def _frozen(rows: list[tuple[str | None, str | None, str | None, str | None]]) -> list[str]:
    """(genus, species, barcode, frozen split or None for a new record) rows: the splits of a rebuild."""
    table = _table([r[:3] for r in rows])
    old = [i for i, r in enumerate(rows) if r[3] is not None]
    freeze = pd.Series([rows[i][3] for i in old], index=table["processid"].iloc[old].to_numpy())
    got = _splits(table, freeze)
    assert [got[i] for i in old] == freeze.tolist()  # old records never move
    return got


def test_freeze_a_new_record_joins_the_held_out_barcode_of_an_old_record_without_species():
    # the old test record has no species, yet its barcode is pinned: the new record on it (no species either,
    # N padding) joins test; "Aus bus" is a new singleton: train
    rows = [("Aus", None, "GATTACA", "test"), (None, None, "NNGATTACAN", None), ("Aus", "Aus bus", "CCCC", None)]
    assert _frozen(rows) == ["test", "test", "train"]


def test_freeze_new_records_on_an_old_barcode_are_not_candidates():
    # old train record on AAAA (the first barcode in code point order). New "Bus bus": 4 rows on AAAA, 2 on CCCC,
    # 2 on GGGG. AAAA is pinned, so its new rows are neither candidates nor counted: n = 4 < 8, no P, no top-up;
    # all train (AAAA stays with its old train record).
    rows = [("Aus", "Aus aus", "AAAA", "train")] + [("Bus", "Bus bus", "AAAA", None)] * 4
    rows += [("Bus", "Bus bus", "CCCC", None)] * 2 + [("Bus", "Bus bus", "GGGG", None)] * 2
    assert _frozen(rows) == ["train"] * 9


def test_freeze_new_records_without_barcode_are_not_pinned():
    # an old test record without barcode pins nothing: the new 2-row species (no barcodes) is plain train
    rows = [("Aus", "Aus alpha", None, "test"), ("Aus", "Aus beta", None, None), ("Aus", "Aus beta", None, None)]
    assert _frozen(rows) == ["test", "train", "train"]


@pytest.mark.parametrize(
    ("first", "second", "joined"),
    [
        ("test", "val", "test"),  # priority test > val > test_unseen > val_unseen, and held-out over train
        ("val", "test", "test"),
        ("val", "test_unseen", "val"),
        ("test_unseen", "val_unseen", "test_unseen"),
        ("train", "val_unseen", "val_unseen"),
    ],
)
def test_freeze_old_records_that_disagree_on_a_barcode(first, second, joined):
    # the new record is a singleton ("Aus gamma": train by the protocol), then pinned to the barcode's split
    rows = [
        ("Aus", "Aus alpha", "ACGT", first),
        ("Aus", "Aus alpha", "ACGT", second),
        ("Aus", "Aus gamma", "ACGT", None),
    ]
    assert _frozen(rows)[2] == joined


def test_freeze_species_family_from_old_records():
    alpha = [("Aus", "Aus alpha", "train")] * 3  # Aus: a known genus
    # one old unseen record is enough to keep a placeholder species unseen (3 new rows: protocol alone would
    # give other_heldout)
    assert (
        _freeze_case(alpha + [("Aus", "Aus Malaise01", "key_unseen")], [("Aus", "Aus Malaise01")] * 3) <= UNSEEN_FAMILY
    )
    # a tie between old unseen and old seen records goes to the unseen family
    old = alpha + [("Aus", "Aus Malaise01", "key_unseen")] * 2 + [("Aus", "Aus Malaise01", "train")] * 2
    assert _freeze_case(old, [("Aus", "Aus Malaise01")] * 3) <= UNSEEN_FAMILY
    # one old seen record is enough to keep 10 new viable rows out of the unseen family
    assert _freeze_case(alpha + [("Aus", "Aus sp. 7", "train")], [("Aus", "Aus sp. 7")] * 10) == {"other_heldout"}


def test_freeze_rejects_duplicate_processids_and_unknown_or_missing_names():
    table = _table([("Aus", "Aus bus", "AAA"), ("Aus", "Aus bus", "CCC")])
    with pytest.raises(ValueError, match=r"^freeze: processid appears more than once$"):
        assign_splits(table, pd.Series(["train", "train"], index=["P00", "P00"]))
    with pytest.raises(ValueError, match=r": \['<missing>'\]$"):
        assign_splits(table, pd.Series(["train", None], index=["P00", "P01"], dtype=object))
    bad = pd.Series(list("fedcba"), index=[f"X{i}" for i in range(6)])
    with pytest.raises(ValueError, match=r": \['a', 'b', 'c', 'd', 'e'\]$"):  # sorted, at most five listed
        assign_splits(table, bad)


def test_a_machine_that_orders_ties_otherwise_is_refused_unless_its_order_is_accepted(tmp_path):
    """numpy picks its sort kernel by CPU and size, and the published splits follow the tie order of x86-64 with
    AVX-512. Simulated here by switching numpy's AVX-512 kernels off (ties among more than 256 sizes differ): a
    species with 600 barcodes is refused, naming the setting, and --tie-order host runs and says so; a table whose
    species have fewer is split as the reference machines split it, with no setting needed."""
    from bioscan_rebuild.splits.protocol import host_agrees_up_to

    assert host_agrees_up_to() == math.inf  # this machine makes the published splits
    small = _toy_csv(tmp_path / "small.csv")  # 14 barcodes at most per species
    big = pd.DataFrame({"species": "Bus bigus", "genus": "Bus", "dna_barcode": [f"ACGT{i:04d}" for i in range(600)]})
    big.insert(0, "processid", [f"B{i:04d}" for i in range(len(big))])
    pd.concat([small, big]).to_csv(tmp_path / "big.csv", index=False)
    no_avx512 = {**os.environ, "NPY_DISABLE_CPU_FEATURES": "X86_V4 AVX512_ICL AVX512_SKX"}

    def split(name, *extra):
        command = [sys.executable, "-m", "bioscan_rebuild", "split", str(tmp_path / f"{name}.csv")]
        return subprocess.run(
            [*command, str(tmp_path / f"{name}-out.csv"), *extra], env=no_avx512, capture_output=True, text=True
        )

    refused = split("big")
    assert refused.returncode == 2 and "splits.tie_order: host" in refused.stderr and "Traceback" not in refused.stderr
    assert "up to 600 distinct barcodes" in refused.stderr and not (tmp_path / "big-out.csv").exists()
    accepted = split("big", "--tie-order", "host")
    assert accepted.returncode == 0 and accepted.stdout.rstrip().endswith("; tie_order: host"), accepted.stderr
    assert split("small").returncode == 0  # blocks of at most 256: the same order there
    assert split_csv(tmp_path / "small.csv", tmp_path / "here.csv")["tie_order"] == "reference"
    assert (tmp_path / "here.csv").read_bytes() == (tmp_path / "small-out.csv").read_bytes()


@pytest.mark.parametrize("suffix", [".csv.gz", ".csv.zip", ".csv.bz2", ".csv.xz"])
def test_compressed_split_output_is_the_same_bytes_on_every_run(tmp_path, suffix):
    """gzip and zip put a write time (and pandas the temporary file's name) into the file: two runs on the same
    input differed byte for byte. The output and its summary now carry neither and read back as written."""
    import time

    _toy_csv(tmp_path / "in.csv")
    outputs = []
    for run in ("a", "b"):
        out = tmp_path / run
        split_csv(tmp_path / "in.csv", out / f"out{suffix}", summary_csv=out / f"summary{suffix}")
        outputs.append([(out / f"{name}{suffix}").read_bytes() for name in ("out", "summary")])
        time.sleep(2.1)  # another time in any timestamp (zip counts in 2 s steps)
    assert outputs[0] == outputs[1]
    assert b".partial" not in outputs[0][0]
    plain = tmp_path / "plain.csv"
    split_csv(tmp_path / "in.csv", plain)
    with pytest.raises(InputError, match="not into a tar archive"):  # a tar member carries its time and name
        split_csv(tmp_path / "in.csv", tmp_path / "out.csv.tar.gz")
    assert pd.read_csv(tmp_path / "a" / f"out{suffix}", dtype=str).equals(pd.read_csv(plain, dtype=str))


def test_a_freeze_finds_its_records_as_ingest_does_and_counts_the_rows_it_could_not(tmp_path, capsys):
    """A freeze edited by hand (`bscn7-21 `) named a record the table spells `BSCN7-21`: it was re-split as new,
    silently. Processids now match as ingest matches records; rows matching none are counted and said."""
    _toy_csv(tmp_path / "in.csv")
    table = pd.read_csv(tmp_path / "in.csv", dtype=str, keep_default_na=False)
    split_csv(tmp_path / "in.csv", tmp_path / "v1.csv")
    v1 = pd.read_csv(tmp_path / "v1.csv", dtype=str, keep_default_na=False)
    first = table["processid"].iloc[0]
    other = next(s for s in ("val", "test", "train") if s != v1.loc[0, "split"])
    freeze = pd.DataFrame(
        {"processid": [f" {first.lower()} ", "GONE-1"], "split": [other, "test"], "dna_barcode": ["", "ACGTA"]}
    )
    freeze.to_csv(tmp_path / "freeze.csv", index=False)
    summary = split_csv(tmp_path / "in.csv", tmp_path / "v2.csv", freeze_csv=tmp_path / "freeze.csv")
    v2 = pd.read_csv(tmp_path / "v2.csv", dtype=str, keep_default_na=False)
    assert v2.loc[0, "split"] == other and summary["frozen"] == 1 and summary["freeze_unmatched"] == 1
    from bioscan_rebuild.cli.main import build_parser

    args = build_parser().parse_args(
        ["split", str(tmp_path / "in.csv"), str(tmp_path / "v3.csv"), "--freeze", str(tmp_path / "freeze.csv")]
    )
    assert run_split_command(args) == 0 and "1 freeze rows match no record" in capsys.readouterr().out
    twice = pd.concat([table, table.iloc[:1]])  # a CSV naming the frozen record twice: refused, not split twice
    twice.to_csv(tmp_path / "twice.csv", index=False)
    with pytest.raises(InputError, match=rf"1 processid\(s\) appear more than once .*{first!r}"):
        split_csv(tmp_path / "twice.csv", tmp_path / "v5.csv", freeze_csv=tmp_path / "freeze.csv")
    freeze.loc[1, "processid"] = first  # two spellings of one record: which split it keeps would be arbitrary
    freeze.to_csv(tmp_path / "freeze.csv", index=False)
    with pytest.raises(InputError, match="appear more than once"):
        split_csv(tmp_path / "in.csv", tmp_path / "v4.csv", freeze_csv=tmp_path / "freeze.csv")


def test_every_command_that_splits_takes_the_tie_order_its_refusal_names():
    """`metadata --split` refused on such a machine, naming --tie-order host, which it did not take."""
    from bioscan_rebuild.cli.main import build_parser

    parser = build_parser()
    for command in (
        ["split", "in.csv", "out.csv"],
        ["splits", "--curated", "c", "--outdir", "o"],
        ["metadata", "x.tsv", "-o", "o.csv", "--split"],
    ):
        assert parser.parse_args(command).tie_order == "reference"
        assert parser.parse_args([*command, "--tie-order", "host"]).tie_order == "host"


def test_barcode_digest_takes_a_column_past_2gb_of_text():
    """The audit reads a full release's barcodes as one large_string column (3.4 GB of text): each slice was cast to
    32-bit offsets and the split history check failed with "input array too large". The column here holds its
    last value past 2 GB (the memory is mapped, zero pages untouched: nothing but the two values is resident)."""
    import hashlib
    import mmap

    import pyarrow as pa

    far = 1 << 31
    space = mmap.mmap(-1, far + 4096)
    space[0:4], space[far : far + 8] = b"ACGT", b"NNACGTNN"
    offsets = pa.py_buffer(np.array([0, 4, far, far + 8], np.int64).tobytes())
    column = pa.Array.from_buffers(pa.large_string(), 3, [pa.py_buffer(bytes([0b101])), offsets, pa.py_buffer(space)])
    acgt = hashlib.md5(b"ACGT").hexdigest()
    assert barcode_digest(pa.chunked_array([column])).to_pylist() == [acgt, None, acgt]


@pytest.mark.parametrize("share_with_end_n", [0.0, 0.05, 0.5])
def test_strip_end_n_is_utf8_trim_whichever_way_it_trims(share_with_end_n):
    """Only barcodes that start or end with N are trimmed (Arrow's trim of every barcode cost 10 s per 5M): the
    result is ``utf8_trim`` of every one, chunked or not, few or many of them with end N."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from bioscan_rebuild.splits.protocol import strip_end_n

    rng = np.random.default_rng(7)
    values = ["".join(rng.choice(list("ACGTN"), 12)) for _ in range(400)]
    values = [
        ("NN" + v + "N" if rng.random() < share_with_end_n else v.strip("N") or "A") if i % 50 else None
        for i, v in enumerate(values)
    ] + ["N", "ÑNÉN", "NÑ"]
    column = pa.array(values, pa.large_string())
    assert strip_end_n(column).to_pylist() == pc.utf8_trim(column, "N").to_pylist()
    chunked = pa.chunked_array([column[:137], column[137:]])
    assert strip_end_n(chunked).to_pylist() == pc.utf8_trim(column, "N").to_pylist()
