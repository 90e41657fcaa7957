"""`bioscan-rebuild metadata` on the real BOLD exports: the 23-column table, rejects and changes beside it."""

from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd

from bioscan_rebuild.core.params import BarcodeParams
from bioscan_rebuild.core.schemas import RELEASE_COLUMNS
from conftest import REPO

EXPORTS = (
    "ropensci-bold/extracted/coelioxys_combined.tsv",
    "barcode-constrained-phylogeny/tests/BOLD_Public.18-Dec-2023/BOLD_Public.18-Dec-2023.tsv",
    "bold-library-curation/resources/test_data/test_chironominae_norway_data.tsv",
    "bold-library-curation/resources/test_data/test_odonata_small.tsv",
)


def run_cli(*args):
    env = {"PYTHONPATH": str(REPO / "workflow")}
    result = subprocess.run([sys.executable, "-m", "bioscan_rebuild", *args], capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def test_metadata_command_on_real_exports(realdata, tmp_path):
    out = tmp_path / "meta.csv"
    result = run_cli("metadata", *(str(realdata / e) for e in EXPORTS), "-o", str(out))
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    table = pd.read_csv(out, dtype=str, keep_default_na=False)
    assert list(table.columns) == list(RELEASE_COLUMNS)
    rejects = pd.read_csv(tmp_path / "meta.rejects.csv", dtype=str, keep_default_na=False)
    # every input row is in the table or in the rejects, with a reason
    assert summary["ingest_rows"] == 3511 and len(table) + len(rejects) == 3511 and (rejects["reason"] != "").all()
    assert set(rejects["reason"]) >= {"unsupported_marker", "no_barcode", "ambiguous_barcode"}
    # each names its export row, the barcode stage's rejects as ingest's (an auditor finds the line to fix)
    assert (rejects["source_file"] != "").all() and rejects["source_line"].str.fullmatch(r"\d+").all()
    counted = rejects.loc[rejects["reason"] == "ambiguous_barcode", "detail"].str.extract(
        r"; (\d+) of (\d+) bases ambiguous$"
    )
    assert counted.notna().all().all() and len(counted) > 0
    # the count is what the rule counted (internal Ns too): above its share of the length (a run of Ns said 0)
    ambiguous, length = counted[0].astype(int), counted[1].astype(int)
    assert (ambiguous > BarcodeParams().max_ambiguity * length).all()
    assert table["processid"].is_unique and (table["dna_barcode"].str.fullmatch("[ACGTRYSWKMBDHVN]+")).all()
    assert (table[["image_measurement_value", "area_fraction", "scale_factor", "split"]] == "").all().all()
    assert table["dna_bin"].str.fullmatch(r"(BOLD:[A-Z]{3}\d{4})?").all()
    changes = pd.read_csv(tmp_path / "meta.changes.csv", dtype=str, keep_default_na=False)
    assert len(changes) == summary["changes"] > 0
    qc = pd.read_csv(tmp_path / "meta.barcode_qc.csv")
    assert len(qc) == len(table) + sum(summary["metadata_rejected"].values())
    assert (tmp_path / "meta.bins.csv").exists()
    # the raw sequence stays in the lineage, beside the export line it came from
    lineage = pd.read_csv(tmp_path / "meta.lineage.csv", dtype=str, keep_default_na=False).set_index("processid")
    assert sorted(lineage.index) == sorted(table["processid"]) and (lineage["source_line"] != "").all()
    assert (lineage["marker_code"] == "COI-5P").all()  # the marker each barcode is (ingest.markers may keep more)
    raw = lineage.loc[table["processid"], "raw_nucleotides"]
    cleaned = raw.str.upper().str.replace(r"[-.\s]", "", regex=True).str.strip("N")
    assert (cleaned.to_numpy() == table["dna_barcode"].to_numpy()).all() and (
        raw != table["dna_barcode"].to_numpy()
    ).any()


def test_metadata_command_uses_the_shipped_typo_table_like_the_workflow(tmp_path):
    from bioscan_rebuild.synth.exports import generate_export

    export = tmp_path / "export.tsv"
    generate_export(export, 60, seed=4, layout="bcdm2024")
    table = pd.read_csv(export, sep="\t", dtype=str, keep_default_na=False)
    table.loc[table["family"] != "None", "family"] = "Ceratopogonidea"  # a typo listed in resources/
    table.to_csv(export, sep="\t", index=False)
    run_cli("metadata", str(export), "-o", str(tmp_path / "shipped.csv"))
    run_cli("metadata", str(export), "-o", str(tmp_path / "bare.csv"), "--no-shipped-tables")
    shipped = pd.read_csv(tmp_path / "shipped.csv", dtype=str)["family"].dropna()
    bare = pd.read_csv(tmp_path / "bare.csv", dtype=str)["family"].dropna()
    assert len(shipped) > 0 and set(shipped) == {"Ceratopogonidae"} and set(bare) == {"Ceratopogonidea"}
    # the workflow's own step, run by hand, too (it applied no table unless one was named: reviewer config)
    run_cli(
        "ingest", "run", "--export", str(export), "--shards", "1", "-o", str(tmp_path / "ing"), "--no-require-images"
    )
    records = tmp_path / "ing" / "shards" / "shard-000" / "records.parquet"
    run_cli("barcodes", "clean", str(records), "-o", str(tmp_path / "barcodes.parquet"))
    for name, extra in (("step_shipped", []), ("step_bare", ["--no-shipped-tables"])):
        run_cli(
            "taxonomy", "curate", "--records", str(records), "--barcodes", str(tmp_path / "barcodes.parquet"),
            "--outdir", str(tmp_path / name), *extra,
        )  # fmt: skip
    families = {
        name: set(pd.read_parquet(tmp_path / name / "curated.parquet")["family"].dropna())
        for name in ("step_shipped", "step_bare")
    }
    assert families == {"step_shipped": {"Ceratopogonidae"}, "step_bare": {"Ceratopogonidea"}}


def test_metadata_command_applies_corrections(realdata, tmp_path):
    corrections = tmp_path / "corrections.tsv"
    corrections.write_text(
        "processid\tfield\tvalue\treason\tsource\n"
        "AACTA1040-20\trecord\texclude\tno_insect\ttest\n"
        "AACTA1041-20\tfamily\tSciaridae\twrong_label\ttest\n"
    )
    out = tmp_path / "meta.csv"
    run_cli("metadata", str(realdata / EXPORTS[1]), "-o", str(out), "--corrections", str(corrections))
    table = pd.read_csv(out, dtype=str, keep_default_na=False).set_index("processid")
    rejects = pd.read_csv(tmp_path / "meta.rejects.csv", dtype=str, keep_default_na=False)
    assert "AACTA1040-20" not in table.index
    assert rejects.loc[rejects["processid"] == "AACTA1040-20", "reason"].tolist() == ["excluded"]
    assert table.loc["AACTA1041-20", "family"] == "Sciaridae"
    assert (tmp_path / "meta.corrections.tsv").exists()
    # the same output made again without corrections: the earlier outcomes were left beside it
    run_cli("metadata", str(realdata / EXPORTS[1]), "-o", str(out), "--no-shipped-tables")
    assert not (tmp_path / "meta.corrections.tsv").exists()
    assert "AACTA1040-20" in pd.read_csv(out, dtype=str, keep_default_na=False)["processid"].tolist()


def test_metadata_command_with_splits(realdata, tmp_path):
    out = tmp_path / "meta.csv"
    result = run_cli("metadata", *(str(realdata / e) for e in EXPORTS), "-o", str(out), "--split")
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    table = pd.read_csv(out, dtype=str, keep_default_na=False)
    assert (table["split"] != "").all() and sum(summary["splits"].values()) == len(table)
    assert (table.loc[table["split"] == "pretrain", "species"] == "").all()
    assert {"train", "test", "pretrain"} <= set(table["split"])  # the real exports hold species with >= 8 records
    has_chunk = table["split"].isin(["pretrain", "train", "other_heldout"])
    assert (table.loc[has_chunk, "chunk"] != "").all() and (table.loc[~has_chunk, "chunk"] == "").all()


def test_split_command_reproduces_the_published_fixture(tmp_path):
    from conftest import SHARED, require_shared

    fixtures = require_shared(SHARED / "fixtures" / "splits")
    out = tmp_path / "out.csv"
    run_cli("split", str(fixtures / "dev-20k.input.csv.gz"), str(out), "--summary", str(tmp_path / "summary.csv"))
    got = pd.read_csv(out, dtype=str, keep_default_na=False)
    expected = pd.read_csv(fixtures / "dev-20k.expected.csv.gz", dtype=str, keep_default_na=False)
    merged = expected.merge(got[["processid", "split"]], on="processid", suffixes=("_expected", ""))
    assert len(merged) == len(expected) == len(got) and (merged["split"] == merged["split_expected"]).all()
    summary = pd.read_csv(tmp_path / "summary.csv").set_index("split")
    assert summary.loc["total", "samples"] == len(got)


def test_a_correction_is_cleaned_as_names_are_and_one_for_a_rejected_record_says_so(realdata, tmp_path):
    """A corrected species `Lutzomyia sp` (no dot) was released as a closed-world species and a one-word `rufipes`
    as a species; a correction of a record rejected for its barcode said `unknown_processid` (a typo hunt for a
    record that is there). The metadata command now also writes each correction's outcome."""
    from bioscan_rebuild.ingest.bold import read_export

    export = realdata / EXPORTS[1]
    records, _, _ = read_export(export, "x")
    ids = records["processid"].to_pylist()
    lines = export.read_text(encoding="utf-8").splitlines()
    header = lines[0].split("\t")
    short = next(i for i, line in enumerate(lines[1:], 1) if line.split("\t")[0] == ids[2])
    fields = lines[short].split("\t")
    fields[header.index("nucraw")] = "ACGT" * 10  # too short: rejected for its barcode
    lines[short] = "\t".join(fields)
    (tmp_path / "e.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    corrections = tmp_path / "corrections.tsv"
    corrections.write_text(
        "processid\tfield\tvalue\treason\tsource\n"
        f"{ids[0]}\tspecies\tLutzomyia sp\twrong_label\tr1\n"
        f"{ids[1]}\tspecies\trufipes\twrong_label\tr2\n"
        f"{ids[2]}\tfamily\tSciaridae\twrong_label\tr3\n"
        f"{ids[3]}\tspecies\tMegaselia rufipes Meigen, 1830\twrong_label\tr4\n"
    )
    out = tmp_path / "meta.csv"
    run_cli("metadata", str(tmp_path / "e.tsv"), "-o", str(out), "--corrections", str(corrections))
    outcomes = pd.read_csv(tmp_path / "meta.corrections.tsv", sep="\t", dtype=str).set_index("processid")["outcome"]
    assert outcomes.to_dict() == {
        ids[0]: "applied",
        ids[1]: "invalid_value",
        ids[2]: "record_rejected",
        ids[3]: "applied",
    }
    table = pd.read_csv(out, dtype=str, keep_default_na=False).set_index("processid")
    assert table.loc[ids[0], "species"] == "Lutzomyia sp." and table.loc[ids[3], "species"] == "Megaselia rufipes"


def test_a_correction_of_a_record_ingest_refused_is_record_rejected(realdata, tmp_path):
    """A correction naming a record ingest refused (a marker it does not take) said ``unknown_processid``, as for a
    typo; only the barcode rejects of this stage were known. Both kinds are ``record_rejected`` now."""
    export = str(realdata / EXPORTS[0])
    run_cli("metadata", export, "-o", str(tmp_path / "first.csv"))
    rejects = pd.read_csv(tmp_path / "first.rejects.csv", dtype=str, keep_default_na=False)
    records = rejects[(rejects["kind"] == "record") & (rejects["processid"] != "")]
    by_ingest = records.loc[records["reason"] == "unsupported_marker", "processid"].iloc[0]
    by_barcode = records.loc[records["reason"].str.endswith("_barcode"), "processid"].iloc[0]
    corrections = tmp_path / "corrections.tsv"
    corrections.write_text(
        "processid\tfield\tvalue\treason\tsource\n"
        f"{by_ingest}\tgenus\tCoelioxys\twrong_label\tr1\n{by_barcode}\tgenus\tCoelioxys\twrong_label\tr2\n"
        "NOPE1-21\tgenus\tCoelioxys\twrong_label\tr3\n"
    )
    run_cli("metadata", export, "-o", str(tmp_path / "meta.csv"), "--corrections", str(corrections))
    outcomes = pd.read_csv(tmp_path / "meta.corrections.tsv", sep="\t", dtype=str, keep_default_na=False)
    assert outcomes["outcome"].tolist() == ["record_rejected", "record_rejected", "unknown_processid"]


def test_a_fixes_table_with_an_unknown_rank_is_one_line(realdata, tmp_path):
    """A person's mistake in a table is one line and exit 2 (it was a ValueError traceback, exit 1)."""
    fixes = tmp_path / "fixes.tsv"
    fixes.write_text("rank\tfrom\tto\treason\nGenus\tAus\tBus\ttypo\n")
    env = {"PYTHONPATH": str(REPO / "workflow")}
    result = subprocess.run(
        [sys.executable, "-m", "bioscan_rebuild", "metadata", str(realdata / EXPORTS[0]), "-o", str(tmp_path / "m.csv")]
        + ["--fixes", str(fixes)],
        capture_output=True,
        text=True,
        env=env,
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"{fixes}: unknown ranks ['Genus']" in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_a_barcode_rejected_for_its_length_says_the_bases_the_rule_counted(realdata, tmp_path):
    """With --no-trim-end-n the detail gave the length with its end N (460 bases for a 150-base core padded with
    310 N), though the rule judged the core: a barcode "of 460 bases" refused for being under 200."""
    lines = (realdata / EXPORTS[3]).read_text().split("\n")
    header = lines[0].split("\t")
    fields = next(line.split("\t") for line in lines if line.startswith("ABGEN1023-20\t"))  # a COI-5P row
    fields[header.index("nuc")] = "N" * 300 + "ACGTTGCA" * 18 + "ACGTAC" + "N" * 10  # 150 bases
    (tmp_path / "export.tsv").write_text("\n".join([lines[0], "\t".join(fields), ""]))
    run_cli("metadata", str(tmp_path / "export.tsv"), "-o", str(tmp_path / "meta.csv"), "--no-trim-end-n")
    rejects = pd.read_csv(tmp_path / "meta.rejects.csv", dtype=str, keep_default_na=False)
    (detail,) = rejects.loc[rejects["processid"] == fields[header.index("processid")], "detail"]
    assert detail.endswith("; 150 bases"), detail
