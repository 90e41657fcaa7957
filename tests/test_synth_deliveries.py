"""The sample generator makes deliveries: processid prefixes and offsets, redeliveries of an earlier export with
new identifications, and exports generated chunk by chunk in bounded memory."""

from __future__ import annotations

import subprocess
import sys

import pandas as pd
import pytest

from bioscan_rebuild.core.errors import InputError
from bioscan_rebuild.ingest.bold import read_export
from bioscan_rebuild.synth.exports import LAYOUT_COLUMNS, generate_export, generate_sample
from conftest import REPO

SPECIES = {"v4": "species_name", "bcdm2023": "species", "bcdm2024": "species"}
GENUS = {"v4": "genus_name", "bcdm2023": "genus", "bcdm2024": "genus"}
SEQUENCE = {"v4": "nucleotides", "bcdm2023": "nucraw", "bcdm2024": "nuc"}


def _raw(path) -> pd.DataFrame:
    """An export's rows as written (every field its literal text)."""
    return pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False, quoting=3)


def _taxonomy_columns(layout: str) -> list[str]:
    columns = LAYOUT_COLUMNS[layout]
    return columns[columns.index("order_name" if layout == "v4" else "order") : columns.index(SPECIES[layout]) + 1]


def _run_cli(*args) -> subprocess.CompletedProcess:
    env = {"PYTHONPATH": str(REPO / "workflow")}
    return subprocess.run(
        [sys.executable, "-m", "bioscan_rebuild", "sample", *args], capture_output=True, text=True, env=env
    )


def test_distinct_prefixes_or_offsets_give_disjoint_processids_and_sampleids(tmp_path):
    runs = {"first": {}, "later": {"id_offset": 1000 + 3 * 400}, "other_prefix": {"prefix": "ZZZ"}}
    exports = {}
    for name, ids in runs.items():
        generate_export(tmp_path / f"{name}.tsv", 400, seed=1, layout="bcdm2023", **ids)
        exports[name] = _raw(tmp_path / f"{name}.tsv")
    processids = {name: set(table["processid"]) for name, table in exports.items()}
    assert all(len(ids) == 400 for ids in processids.values())
    assert not processids["first"] & processids["later"]
    assert not processids["first"] & processids["other_prefix"]
    assert all(pid.startswith("ZZZ") for pid in processids["other_prefix"])
    numbers = {
        name: {int(pid[4:].split("-")[0]) for pid in ids} for name, ids in processids.items() if name != "other_prefix"
    }
    assert min(numbers["first"]) >= 1000 and max(numbers["first"]) < 1000 + 3 * 400
    assert min(numbers["later"]) >= 1000 + 3 * 400 and max(numbers["later"]) < 1000 + 6 * 400
    assert not set(exports["first"]["sampleid"]) & set(exports["later"]["sampleid"])


def test_the_sample_takes_the_prefix_and_offset_too(tmp_path):
    manifest = generate_sample(tmp_path / "s", n_records=300, seed=0, images=False, prefix="TEST", id_offset=50_000)
    for batch in manifest["batches"].values():
        records, _, _ = read_export(tmp_path / "s" / batch["export"], "b", markers=None)
        ids = records["processid"].to_pylist()
        assert ids and all(pid.startswith("TEST") for pid in ids)
        assert all(int(pid[4:].split("-")[0]) >= 50_000 for pid in ids if "BROKEN" not in pid)


@pytest.mark.parametrize("layout", sorted(LAYOUT_COLUMNS))
def test_redelivery_repeats_n_processids_with_new_identifications_after_the_new_rows(tmp_path, layout):
    previous, new = tmp_path / "previous.tsv", tmp_path / "new.tsv"
    generate_export(previous, 600, seed=2, layout=layout, species_share=0.4)
    rows = generate_export(new, 300, seed=3, layout=layout, id_offset=1000 + 3 * 600, redeliver=25, previous=previous)
    head = new.read_bytes().split(b"\n", 1)[0]
    assert head.rstrip(b"\r").decode().split("\t") == LAYOUT_COLUMNS[layout]
    if layout == "v4":  # v4 exports keep their CRLF line ends
        assert new.read_bytes().count(b"\n") == new.read_bytes().count(b"\r\n") == rows + 1

    old, got = _raw(previous), _raw(new)
    assert len(got) == rows
    repeated = set(old["processid"]) & set(got["processid"])
    assert len(repeated) == 25
    is_repeated = got["processid"].isin(repeated).to_numpy()
    assert is_repeated[-is_repeated.sum() :].all()  # the redelivered rows come after the new ones
    taxonomy = _taxonomy_columns(layout)
    kept = ["processid", "sampleid", "bin_uri", SEQUENCE[layout]]
    before = old[old["processid"].isin(repeated)].reset_index(drop=True)
    after = got[is_repeated].reset_index(drop=True)
    assert len(before) == len(after)  # every marker row of a redelivered processid comes again
    assert before[kept].equals(after[kept])
    changed = (before[taxonomy] != after[taxonomy]).any(axis=1)
    assert changed.all()
    assert (before[SPECIES[layout]] != after[SPECIES[layout]]).all()
    assert (after[SPECIES[layout]] != "").all() and (after[SPECIES[layout]] != "None").all()
    # the new identification is one the previous export holds: species and genus belong together
    pairs = set(zip(old[SPECIES[layout]], old[GENUS[layout]]))
    assert set(zip(after[SPECIES[layout]], after[GENUS[layout]])) <= pairs

    again = tmp_path / "again.tsv"
    generate_export(again, 300, seed=3, layout=layout, id_offset=1000 + 3 * 600, redeliver=25, previous=previous)
    assert again.read_bytes() == new.read_bytes()  # chosen by the seed


def test_a_redelivery_refuses_another_layout_and_colliding_processids(tmp_path):
    previous = tmp_path / "previous.tsv"
    generate_export(previous, 300, seed=2, layout="bcdm2023")
    with pytest.raises(InputError, match="a bcdm2023 export; a redelivery keeps the layout"):
        generate_export(tmp_path / "a.tsv", 100, layout="bcdm2024", redeliver=5, previous=previous)
    with pytest.raises(InputError, match=r"is already in .*another --prefix, or an --id-offset"):
        generate_export(tmp_path / "b.tsv", 300, seed=9, layout="bcdm2023", redeliver=5, previous=previous)
    assert not (tmp_path / "a.tsv").exists() and not (tmp_path / "b.tsv").exists()
    with pytest.raises(InputError, match="holds 300 processids: cannot redeliver 301"):
        generate_export(tmp_path / "c.tsv", 10, layout="bcdm2023", prefix="X", redeliver=301, previous=previous)


@pytest.mark.parametrize("layout", ["bcdm2024", "v4"])
def test_a_chunked_export_has_one_taxonomy_and_parses(tmp_path, layout):
    path = tmp_path / "chunked.tsv"
    rows = generate_export(path, 2000, seed=4, layout=layout, species_share=0.5, chunk_records=500)
    assert generate_export(tmp_path / "again.tsv", 2000, seed=4, layout=layout, species_share=0.5, chunk_records=500)
    assert (tmp_path / "again.tsv").read_bytes() == path.read_bytes()
    data = path.read_bytes()
    if layout == "v4":
        assert data.count(b"\n") == data.count(b"\r\n") == rows + 1
    else:  # the extra-marker rows are made in every chunk
        extra = _raw(path).index[_raw(path)["marker_code"].isin(["28S", "CAD", "18S"])]
        assert rows > 2000 and (extra < 500).any() and (extra > 1500).any()

    everything, rejects, stats = read_export(path, "b", markers=None)
    assert stats.layout == layout and len(rejects) == 0 and everything.num_rows == rows
    records, _, _ = read_export(path, "b")  # COI-5P rows (and the few without a sequence)
    table = records.to_pandas()
    assert len(table) == 2000 and table["processid"].is_unique
    named = table.dropna(subset=["species"])
    assert (named.groupby("species")["genus"].nunique() == 1).all()
    assert (table.dropna(subset=["bin_uri", "genus"]).groupby("bin_uri")["genus"].nunique() == 1).all()
    # one tree for the whole export: 2000 records make 40 species in 15 genera, not 15 per chunk
    assert table["genus"].nunique() <= 15
    assert table["sampleid"].is_unique


def test_an_export_of_one_chunk_is_the_single_call_export(tmp_path):
    generate_export(tmp_path / "a.tsv", 800, seed=5, layout="bcdm2024", chunk_records=800)
    generate_export(tmp_path / "b.tsv", 800, seed=5, layout="bcdm2024")
    assert (tmp_path / "a.tsv").read_bytes() == (tmp_path / "b.tsv").read_bytes()


def test_the_command_line_makes_a_redelivery(tmp_path):
    previous, new = tmp_path / "previous.tsv", tmp_path / "new.tsv"
    first = _run_cli(str(previous), "--export-only", "--records", "500", "--layout", "v4", "--prefix", "AAA")
    assert first.returncode == 0, first.stderr
    args = [str(new), "--export-only", "--records", "200", "--layout", "v4", "--id-offset", "2500"]
    second = _run_cli(*args, "--prefix", "AAA", "--redeliver", "12", "--previous", str(previous))
    assert second.returncode == 0, second.stderr
    assert "12 processids of" in second.stdout and "redelivered" in second.stdout
    assert len(set(_raw(previous)["processid"]) & set(_raw(new)["processid"])) == 12

    other_layout = ["--export-only", "--layout", "bcdm2023", "--redeliver", "3", "--previous", str(previous)]
    wrong = _run_cli(str(tmp_path / "x.tsv"), *other_layout)
    assert wrong.returncode == 2 and "a v4 export; a redelivery keeps the layout" in wrong.stderr
    alone = _run_cli(str(tmp_path / "y"), "--redeliver", "3", "--previous", str(previous))
    assert alone.returncode == 2 and "need --export-only" in alone.stderr
