"""End to end: the real Snakemake workflow on the generated sample, in a temporary directory."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import sys
import time
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
import yaml

from bioscan_rebuild.export.layout import CSV_PATH
from conftest import REPO, run_snakemake

pytestmark = pytest.mark.slow


def _photo_counts(run_dir: Path) -> dict:
    """Photos processed and reused by the photo jobs' last runs (their logs)."""
    totals = {"photos_processed": 0, "photos_reused": 0}
    for path in (run_dir / "logs" / "images" / "process_photos").glob("*/*.json"):
        for key, value in json.loads(path.read_text()).items():
            if key in totals:
                totals[key] += value
    return totals


def make_workdir(root, sample_dir):
    """A workdir laid out like the repo: config/config.yaml + resources/sample (relative paths)."""
    (root / "config").mkdir(parents=True)
    shutil.copy(REPO / "config" / "config.yaml", root / "config" / "config.yaml")
    shutil.copytree(sample_dir, root / "resources" / "sample")
    return root


def ingested(workdir):
    shards = sorted((workdir / "results" / "ingest" / "shards").glob("shard-*/records.parquet"))
    return pd.concat([pd.read_parquet(p) for p in shards], ignore_index=True)


@pytest.fixture(scope="module")
def finished_run(sample_dir, tmp_path_factory):
    workdir = make_workdir(tmp_path_factory.mktemp("run1"), sample_dir)
    run_snakemake(workdir)
    return workdir


def test_accounting_balances_over_every_stage(finished_run):
    """Inputs = released + rejected, each stage in = out + rejected, and every figure is what the tables hold."""
    results = finished_run / "results"
    accounting = json.loads((results / "accounting.json").read_text())
    assert accounting["balanced"] is True
    assert accounting["stage_order"] == ["ingest", "images", "metadata", "splits"]
    stages = [accounting["stages"][name] for name in accounting["stage_order"]]
    for what in ("records", "images"):
        assert accounting["inputs"][what] == accounting["released"][what] + accounting["rejected"][what]
        assert accounting["rejected"][what] == sum(sum(s[what]["rejected"].values()) for s in stages)
        for stage in stages:
            assert stage[what]["in"] == stage[what]["out"] + sum(stage[what]["rejected"].values())
        for before, after in zip(stages, stages[1:]):
            assert before[what]["out"] == after[what]["in"]
    # the figures are the tables' own: release rows, and rejects.csv by reason for the later stages
    release_csv = results / "release" / "bioscan5m" / "metadata" / "csv" / "BIOSCAN_5M_Insect_Dataset_metadata.csv"
    assert accounting["released"]["records"] == len(pd.read_csv(release_csv, usecols=["processid"]))
    rejects = pd.read_csv(results / "release" / "bioscan5m" / "metadata" / "rejects.csv", dtype=str)
    records = rejects[rejects["kind"] == "record"]["reason"].value_counts().to_dict()
    staged = Counter()
    for stage in stages:
        staged.update(stage["records"]["rejected"])
    assert records == dict(staged)
    assert (results / "release" / "accounting.json").read_bytes() == (results / "accounting.json").read_bytes()


def test_every_planted_fault_is_rejected_for_its_reason(finished_run):
    accounting = json.loads((finished_run / "results" / "ingest" / "accounting.json").read_text())
    assert accounting["balanced"] is True
    manifest = json.loads((finished_run / "resources" / "sample" / "faults.json").read_text())
    rejects = pd.read_parquet(finished_run / "results" / "ingest" / "rejects.parquet")
    for fault in manifest["faults"]:
        hits = rejects[(rejects["kind"] == fault["kind"]) & (rejects["reason"] == fault["reason"])]
        if fault["processid"] is not None:
            hits = hits[hits["processid"] == fault["processid"]]
        assert len(hits) >= 1, fault
    # Nothing else was rejected: every reject is a planted fault.
    planted = {(f["kind"], f["reason"], f["processid"]) for f in manifest["faults"]}
    for row in rejects.itertuples():
        key = (row.kind, row.reason, row.processid if isinstance(row.processid, str) else None)
        assert key in planted, key
    kept = ingested(finished_run)
    assert len(kept) == accounting["kept"]["records"] and kept["processid"].is_unique
    assert kept["image_sha256"].notna().all()
    # Originals sit in the content-addressed store under their hash.
    for sha in kept["image_sha256"].head(20):
        assert (finished_run / "results" / "store" / "original" / sha[:2] / f"{sha}.jpg").exists()


def test_image_stage_on_the_sample(finished_run):
    images = pd.concat(
        pd.read_parquet(p) for p in sorted((finished_run / "results" / "images").glob("shard-*/images.parquet"))
    )
    kept = ingested(finished_run)
    assert sorted(images["processid"]) == sorted(kept["processid"])  # one image row per kept record
    truth = pd.read_csv(finished_run / "resources" / "sample" / "ground_truth.csv")
    merged = truth.merge(images, on="processid", suffixes=("_truth", ""))
    empty = merged[merged["kind"] == "empty"]
    specimen = merged[merged["kind"] == "specimen"]
    assert len(empty) >= 5 and (empty["image_status"] == "no_object").mean() >= 0.7
    # Mechanics, not accuracy (bench/detect_accuracy.py measures that): most specimens are found.
    assert (specimen["image_status"].isin(["ok", "touches_edge", "multiple_candidates"])).mean() >= 0.8
    cropped = images[images["sha256_cropped"].notna()]
    assert (cropped["area_fraction"] > 0).all() and (cropped["image_measurement_value"] > 0).all()
    assert images.loc[images["image_status"] == "no_object", "sha256_cropped"].isna().all()
    bbox = pd.read_csv(finished_run / "results" / "release" / "bioscan5m" / "metadata" / "bbox.tsv", sep="\t")
    released = pd.read_parquet(finished_run / "results" / "splits" / "splits.parquet")["processid"]
    assert sorted(bbox["processid"]) == sorted(set(cropped["processid"]) & set(released))
    assert (bbox["width_original"] == 1024).all()
    for shard in (finished_run / "results" / "images").glob("shard-*"):
        assert (shard / "contact_sheet.jpg").stat().st_size > 5000
    summary = json.loads((finished_run / "results" / "images" / "summary.json").read_text())
    # The photo jobs process every usable photo of each batch once, a record's or not (an orphan too).
    inventories = pd.concat(
        pd.read_parquet(p).assign(job=p.parent.parent.name + p.stem)
        for p in (finished_run / "results" / "ingest" / "images").glob("*/inventory/*.parquet")
    )
    usable = inventories[inventories["image_problem"].isna()].drop_duplicates(["job", "image_sha256"])
    counts = _photo_counts(finished_run)
    assert summary["records"] == len(kept) and counts["photos_processed"] == len(usable) > len(kept)
    assert counts["photos_reused"] == 0 and "photos_processed" not in summary  # a run's fact, in the logs


def test_metadata_rules_on_the_sample(finished_run):
    import pyarrow.parquet as pq
    from Bio import SeqIO

    meta = finished_run / "results" / "metadata"
    summary = json.loads((meta / "summary.json").read_text())
    accounting = json.loads((finished_run / "results" / "accounting.json").read_text())
    assert summary["balanced"] and summary["records_in"] == accounting["stages"]["metadata"]["records"]["in"]
    curated = pq.read_table(meta / "curated.parquet").to_pandas()
    assert len(curated) == summary["curated"] == summary["records_in"] - sum(summary["rejected"].values())
    fasta = list(SeqIO.parse(meta / "barcodes.fasta", "fasta"))
    released = pd.read_parquet(finished_run / "results" / "splits" / "splits.parquet")["processid"]
    assert sorted(r.id.split("|")[0] for r in fasta) == sorted(released)  # the released records' barcodes
    assert all(set(str(r.seq)) <= set("ACGTRYSWKMBDHVN") for r in fasta)
    # >processid|dna_bin|taxon, each the curated value; a record without a BIN has an empty field (not "nan")
    labels = curated.set_index("processid")
    headers = [r.description.split("|") for r in fasta]  # .id ends at a space (taxa have them)
    bins = ["" if pd.isna(labels.at[h[0], "dna_bin"]) else labels.at[h[0], "dna_bin"] for h in headers]
    assert [h[1] for h in headers] == bins
    assert [h[2] for h in headers] == [labels.at[h[0], "taxon"] for h in headers]
    assert any(h[1] == "" for h in headers)
    changes = pq.read_table(meta / "changes.parquet").to_pandas()
    curation = changes[changes["step"] > 0]  # step 0: what redeliveries replaced, before curation
    assert len(curation) == summary["changes"] and set(changes["processid"]) <= set(curated["processid"])
    assert curated["taxon"].notna().all()


def test_split_rule_on_the_sample(finished_run):
    import hashlib

    import pyarrow.parquet as pq

    from bioscan_rebuild.core.schemas import SPLITS

    curated = pq.read_table(finished_run / "results" / "metadata" / "curated.parquet").to_pandas()
    splits = pq.read_table(finished_run / "results" / "splits" / "splits.parquet").to_pandas()
    excluded = pq.read_table(finished_run / "results" / "splits" / "excluded.parquet").to_pandas()
    # every curated record has a split, unless its photo shows no specimen
    assert sorted([*splits["processid"], *excluded["processid"]]) == sorted(curated["processid"])
    assert set(splits["split"]) <= set(SPLITS) and set(excluded["reason"]) <= {"no_specimen", "image_unusable"}
    images = pd.concat(pd.read_parquet(p) for p in (finished_run / "results" / "images").glob("shard-*/images.parquet"))
    empty = set(images.loc[images["image_status"] == "no_object", "processid"]) & set(curated["processid"])
    assert set(excluded.loc[excluded["reason"] == "no_specimen", "processid"]) == empty
    labelled = splits.merge(curated[["processid", "species"]], on="processid")
    assert labelled.loc[labelled["split"] == "pretrain", "species"].isna().all()
    for row in splits.itertuples():
        width = {"pretrain": 2, "train": 1, "other_heldout": 1}.get(row.split, 0)
        assert row.chunk == hashlib.md5(row.processid.encode()).hexdigest()[:width]
    summary = pd.read_csv(finished_run / "results" / "splits" / "summary.csv").set_index("split")
    assert summary.loc["total", "samples"] == len(splits) == summary.drop("total")["samples"].sum()


def test_split_stage_with_a_freeze_keeps_old_records(finished_run, tmp_path):
    """The workflow's split step (`splits.freeze`): records of the previous release keep their split, even
    one the protocol would not give them, and the rest are assigned as usual."""
    import pyarrow.parquet as pq

    from bioscan_rebuild.splits.stage import split_tables

    results = finished_run / "results"
    before = pq.read_table(results / "splits" / "splits.parquet").to_pandas().set_index("processid")
    freeze = before[["split", "barcode_key"]].iloc[::2].copy()  # a split history: absent records pin by barcode
    moved = freeze.index[freeze["split"] == "pretrain"][:3]
    freeze.loc[moved, "split"] = "other_heldout"  # an earlier release decided otherwise
    excluded = pq.read_table(results / "splits" / "excluded.parquet").to_pandas()["processid"]
    freeze = pd.concat([freeze, pd.DataFrame({"split": "test"}, index=[*excluded[:2], "GONE-1"])])
    freeze.index.name = "processid"
    freeze.reset_index().to_csv(tmp_path / "freeze.csv", index=False)
    summary = split_tables(
        results / "metadata" / "curated.parquet",
        sorted((results / "metadata" / "barcodes").glob("*.parquet")),
        tmp_path / "out",
        freeze_csv=tmp_path / "freeze.csv",
        image_paths=sorted((results / "images").glob("shard-*/images.parquet")),
    )
    after = pq.read_table(tmp_path / "out" / "splits.parquet").to_pandas().set_index("processid")
    assert sorted(after.index) == sorted(before.index) and len(moved) == 3 and len(excluded) >= 2
    kept = freeze.index[freeze.index.isin(after.index)]
    assert (after.loc[kept, "split"] == freeze.loc[kept, "split"]).all()
    # the rows of records without a specimen are no unmatched rows: only GONE-1 is
    assert (summary["frozen"], summary["freeze_excluded"], summary["freeze_unmatched"]) == (len(kept), 2, 1)
    assert (after.loc[moved, "chunk"].str.len() == 1).all()  # other_heldout's chunk rule


def test_the_release_job_is_given_the_frozen_table_for_its_split_history(sample_dir, tmp_path):
    """With ``splits.freeze`` the release wrote a split history of this version's records alone: a record the
    frozen table held and this build left out was drawn again in the next version (reviewer upgrade). The release
    job reads the table too (``split_history``'s own test shows what it carries)."""
    workdir = make_workdir(tmp_path / "frozen", sample_dir)
    config = yaml.safe_load((workdir / "config" / "config.yaml").read_text())
    config["splits"]["freeze"] = "previous history.csv"
    (workdir / "config" / "config.yaml").write_text(yaml.safe_dump(config))
    (workdir / "previous history.csv").write_text("processid,split,barcode_key\nGONE-1,val,0123\n")
    plan = run_snakemake(workdir, "--dry-run", "--printshellcmds")
    release = [line for line in plan.stdout.splitlines() if " release --curated " in line]
    assert len(release) == 1 and "--freeze 'previous history.csv'" in release[0], plan.stdout[-3000:]


def test_outputs_are_byte_identical_across_runs(finished_run, sample_dir, tmp_path):
    """Another run, whose photo jobs then run again with the store full (as after an interrupted job or a photo
    folder copied in again): the same bytes. The photo jobs' counts of photos processed and reused used to be
    outputs, hashed into the provenance, so the release's provenance, Croissant and manifest differed."""
    second = make_workdir(tmp_path / "run2", sample_dir)
    run_snakemake(second)
    run_snakemake(second, "--forcerun", "process_photos")
    assert _photo_counts(second)["photos_processed"] == 0
    compared = 0
    for folder in ("results/ingest", "results/metadata", "results/splits", "results/release"):
        for path in sorted((finished_run / folder).rglob("*")):
            if path.is_file():
                twin = second / path.relative_to(finished_run)
                assert twin.read_bytes() == path.read_bytes(), path.relative_to(finished_run)
                compared += 1
    assert compared > 20


def _planned_jobs(workdir, rules) -> dict[str, str]:
    """Jobs per rule of a dry run (Snakemake's job-count table), for the rules named."""
    plan = run_snakemake(workdir, "--dry-run", "--quiet", "rules")
    lines = (plan.stdout + plan.stderr).splitlines()
    return dict(line.split()[:2] for line in lines if line.count(" ") and line.split()[0] in rules)


def test_more_than_a_thousand_shards_plan(sample_dir, tmp_path):
    """The schema allows 4096 shards; shard-1000 has four digits and the wildcard constraints used to allow three,
    so any shards value above 1000 failed to build the DAG (MissingInputException)."""
    workdir = make_workdir(tmp_path / "many", sample_dir)
    config = yaml.safe_load((workdir / "config" / "config.yaml").read_text())
    config["shards"] = 1001
    (workdir / "config" / "config.yaml").write_text(yaml.safe_dump(config))
    assert _planned_jobs(workdir, ("join_shard",)) == {"join_shard": "1001"}


def test_photo_jobs_per_group_of_shards_change_no_released_data(finished_run, sample_dir, tmp_path):
    """photo_job_shards: 3 (4 shards -> groups shards-000-002 and shard-003): half the photo jobs, and every table
    and released file is the one-job-per-shard run's; only the files that record the config differ."""
    workdir = make_workdir(tmp_path / "grouped", sample_dir)
    config = yaml.safe_load((workdir / "config" / "config.yaml").read_text())
    config["photo_job_shards"] = 3
    (workdir / "config" / "config.yaml").write_text(yaml.safe_dump(config))
    jobs = _planned_jobs(workdir, ("inventory_images", "process_photos", "join_shard"))
    assert jobs == {"inventory_images": "4", "process_photos": "4", "join_shard": "4"}
    run_snakemake(workdir)
    records_config = {"config.json", "provenance.jsonld", "croissant.json", "MANIFEST.json"}
    compared = 0
    for folder in ("results/ingest/shards", "results/images", "results/metadata", "results/splits", "results/release"):
        for path in sorted((finished_run / folder).rglob("*")):
            rel = path.relative_to(finished_run)
            if path.is_file() and "photos" not in rel.parts and path.name not in records_config:
                assert (workdir / rel).read_bytes() == path.read_bytes(), rel
                compared += 1
    assert compared > 40
    assert sorted(p.name for p in (workdir / "results" / "images" / "photos" / "sample-a").iterdir()) == [
        "shard-003.parquet",
        "shards-000-002.parquet",
    ]


def test_rerun_does_nothing_and_a_new_batch_runs_only_what_it_touches(finished_run, tmp_path_factory):
    # Its own copy: this test changes the config and adds a batch, which the module's other tests must not see.
    # copy2 keeps the mtimes (and symlinks=True the links) Snakemake decides what is up to date by. The copy sits
    # at the finished run's depth: rules record the package's tables by a path relative to the workdir, and a
    # changed param would rerun them.
    workdir = tmp_path_factory.mktemp("rerun")
    shutil.copytree(finished_run, workdir, symlinks=True, copy_function=shutil.copy2, dirs_exist_ok=True)
    again = run_snakemake(workdir, "--dry-run")
    assert "Nothing to be done" in again.stdout + again.stderr
    # A new delivery: a third batch with one export (metadata only).
    from bioscan_rebuild.synth.exports import generate_export

    generate_export(workdir / "resources" / "new.tsv", 40, seed=9, layout="bcdm2023")
    config = yaml.safe_load((workdir / "config" / "config.yaml").read_text())
    config["batches"].append({"name": "delivery-3", "export": "resources/new.tsv"})
    (workdir / "config" / "config.yaml").write_text(yaml.safe_dump(config))
    plan = run_snakemake(workdir, "--dry-run", "--quiet", "rules")
    text = plan.stdout + plan.stderr
    assert "parse_export" in text and "join_shard" in text
    assert "inventory_images" not in text and "list_images" not in text  # photos are not re-inventoried
    assert "process_photos" not in text  # no photo job of the earlier batches runs again
    # Run it: the new records have no photos, so no photo is processed again.
    photo_tables = sorted((workdir / "results" / "images" / "photos").rglob("*.parquet"))
    before = {p: p.stat().st_mtime_ns for p in photo_tables}
    run_snakemake(workdir)
    assert {p: p.stat().st_mtime_ns for p in photo_tables} == before
    # The delivery's file gone after its run: the next run stops and names it (it kept the old outputs, a release
    # still holding its records, its jobs missing from the provenance graph, and exited 0)
    (workdir / "resources" / "new.tsv").unlink()
    gone = run_snakemake(workdir, "--dry-run", check=False)
    said = gone.stdout + gone.stderr
    assert gone.returncode != 0 and "Missing input files for rule all" in said and "resources/new.tsv" in said
    shared = run_snakemake(finished_run, "--dry-run")  # the module's run is untouched: still nothing to do
    assert "Nothing to be done" in shared.stdout + shared.stderr


def _rules_to_run(workdir: Path, snakefile: Path = REPO / "Snakefile") -> set[str]:
    """The rules a dry run would run (Snakemake's job-count table), with another Snakefile if given."""
    import subprocess

    from conftest import snakemake_bin

    command = [snakemake_bin(), "--snakefile", str(snakefile), "--directory", str(workdir), "--cores", "2"]
    plan = subprocess.run([*command, "--dry-run", "--quiet", "rules"], capture_output=True, text=True, cwd=workdir)
    assert plan.returncode == 0, plan.stderr[-3000:]
    lines = (plan.stdout + plan.stderr).splitlines()
    return {line.split()[0] for line in lines if len(line.split()) == 2 and line.split()[1].isdigit()} - {"total"}


def test_an_older_fixed_file_and_a_code_update_rerun_what_they_touch(finished_run, tmp_path_factory):
    """A fixed export copied in with its sender's older time (cp -p, rsync -a and unzip keep it) was never parsed
    again: Snakemake re-runs a job for a newer input only; nor was one edited in place with its size and time put
    back (the fingerprint was size and mtime; it is the file's sha256 now). A stage's updated code re-ran none of its
    jobs, while the provenance named the new revision."""
    import os

    workdir = tmp_path_factory.mktemp("older")
    shutil.copytree(finished_run, workdir, symlinks=True, copy_function=shutil.copy2, dirs_exist_ok=True)
    assert _rules_to_run(workdir) == set()
    config = yaml.safe_load((workdir / "config" / "config.yaml").read_text())
    export = workdir / config["batches"][0]["export"]
    facts = export.stat()
    text = export.read_bytes()
    first = text.index(b"\n") + 1  # a letter of the first record: its case changed, the size kept
    at = first + next(i for i, c in enumerate(text[first:]) if chr(c).isalpha())
    export.write_bytes(text[:at] + bytes([text[at] ^ 0x20]) + text[at + 1 :])
    os.utime(export, ns=(facts.st_atime_ns, facts.st_mtime_ns - 86_400 * 10**9))  # a day older
    assert {"parse_export", "join_shard", "curate_taxonomy", "release"} <= _rules_to_run(workdir)
    assert "process_photos" not in _rules_to_run(workdir)
    # edited in place with its size and time put back (exiftool -P, a script's os.utime): the same
    os.utime(export, ns=(facts.st_atime_ns, facts.st_mtime_ns))
    assert "parse_export" in _rules_to_run(workdir)
    export.write_bytes(text)  # as it was, bytes and time: nothing to do again
    os.utime(export, ns=(facts.st_atime_ns, facts.st_mtime_ns))
    assert _rules_to_run(workdir) == set()

    code = tmp_path_factory.mktemp("code")  # this project's workflow, with one module of the metadata stage edited
    for name in ("Snakefile", "workflow", "profiles", "envs"):
        copy = shutil.copytree if (REPO / name).is_dir() else shutil.copy2
        copy(
            REPO / name,
            code / name,
            **({"ignore": shutil.ignore_patterns("__pycache__")} if name != "Snakefile" else {}),
        )
    before = _rules_to_run(workdir, code / "Snakefile")  # what another checkout's paths alone re-run
    assert "clean_barcodes" not in before, before
    # a shipped taxonomy table edited (a maintainer's label fix): the barcode jobs read none, and all re-ran
    fixes = code / "workflow" / "bioscan_rebuild" / "metadata" / "tables" / "taxonomy_fixes.tsv"
    fixes.write_text(fixes.read_text() + "genus\tAaaaxus\tAaaayus\ttypo\n")
    assert "clean_barcodes" not in _rules_to_run(workdir, code / "Snakefile")
    names = code / "workflow" / "bioscan_rebuild" / "metadata" / "taxonomy" / "names.py"
    names.write_text(names.read_text() + "\n# an update\n")
    after = _rules_to_run(workdir, code / "Snakefile")
    # the barcode jobs read no file of the package: only the code update re-runs them (the rest of the metadata
    # stage reruns anyway, for the other checkout's shipped tables); no job of another stage does
    assert "clean_barcodes" in after - before, (before, after)
    assert not {"parse_export", "join_shard", "process_photos"} & (after - before)
    # the image stage's whole-table job (box corrections, its summary) ran no code of its own through a version
    corrections = code / "workflow" / "bioscan_rebuild" / "images" / "corrections.py"
    corrections.write_text(corrections.read_text() + "\n# an update\n")
    updated = _rules_to_run(workdir, code / "Snakefile")
    assert "images_summary" in updated - after, (after, updated)
    assert not {"process_photos", "process_images"} & (updated - after)  # their hand-raised versions decide


@pytest.mark.slow
def test_a_comment_or_a_new_time_in_a_taxonomy_table_reruns_nothing_and_a_changed_row_reruns_curation(
    finished_run, tmp_path_factory
):
    """A comment added to the label corrections, or the file touched, re-ran curation and everything after it
    (~22 min at 5.15M records) for the same release. The tables' rows decide now (as for the box corrections);
    a row changed re-runs curation, even in a file copied in with an older time."""
    import os

    workdir = tmp_path_factory.mktemp("tables")
    shutil.copytree(finished_run, workdir, symlinks=True, copy_function=shutil.copy2, dirs_exist_ok=True)
    corrections = workdir / "resources" / "corrections.tsv"
    text = "# from user reports\nprocessid\tfield\tvalue\treason\tsource\nNOT-IN-RUN\tgenus\tAus\tother\tlab\n"
    corrections.write_text(text)
    config = yaml.safe_load((workdir / "config" / "config.yaml").read_text())
    config["taxonomy"]["corrections"] = "resources/corrections.tsv"
    (workdir / "config" / "config.yaml").write_text(yaml.safe_dump(config))
    run_snakemake(workdir)
    assert _rules_to_run(workdir) == set()
    corrections.write_text(text + "# checked with the lab, 2026-12\n\n" + '"# a note, quoted by a spreadsheet"\n')
    assert _rules_to_run(workdir) == set()
    facts = corrections.stat()
    os.utime(corrections, ns=(facts.st_atime_ns, facts.st_mtime_ns + 86_400 * 10**9))  # touched: a day newer
    assert _rules_to_run(workdir) == set()
    corrections.write_text(text.replace("\tlab\n", "\tlab, checked\n"))  # the row's source changed
    os.utime(corrections, ns=(facts.st_atime_ns, facts.st_mtime_ns - 86_400 * 10**9))  # and a day older
    assert {"curate_taxonomy", "release"} <= _rules_to_run(workdir)

    # the tables the package ships (the default): they were hashed as the stage's code, so a comment re-ran it too
    code = tmp_path_factory.mktemp("code")
    for name in ("Snakefile", "workflow", "profiles", "envs"):
        copy = shutil.copytree if (REPO / name).is_dir() else shutil.copy2
        copy(
            REPO / name,
            code / name,
            **({"ignore": shutil.ignore_patterns("__pycache__")} if copy != shutil.copy2 else {}),
        )
    config["taxonomy"]["corrections"] = "shipped"
    (workdir / "config" / "config.yaml").write_text(yaml.safe_dump(config))
    run_snakemake(workdir, "--snakefile", str(code / "Snakefile"))
    assert _rules_to_run(workdir, code / "Snakefile") == set()
    shipped = code / "workflow" / "bioscan_rebuild" / "metadata" / "tables" / "corrections.tsv"
    shipped.write_text(shipped.read_text() + "# reviewed for version 2\n")
    assert _rules_to_run(workdir, code / "Snakefile") == set()
    shipped.write_text(shipped.read_text() + "NOT-IN-RUN\tgenus\tAus\tother\tlab\n")
    assert "curate_taxonomy" in _rules_to_run(workdir, code / "Snakefile")


def test_bad_config_fails_at_start_naming_the_key(sample_dir, tmp_path):
    workdir = make_workdir(tmp_path / "bad", sample_dir)
    config = yaml.safe_load((workdir / "config" / "config.yaml").read_text())
    config["ingest"]["duplicate_policy"] = "newest"
    (workdir / "config" / "config.yaml").write_text(yaml.safe_dump(config))
    result = run_snakemake(workdir, "--dry-run", check=False)
    assert result.returncode != 0
    assert "duplicate_policy" in result.stdout + result.stderr


def test_the_release_ships_a_prov_graph_of_the_build(finished_run):
    """metadata/provenance.jsonld: rdflib reads it, the SHACL shapes hold, one activity per planned job, each
    file entity's sha256 is the file's, outputs point at the job that made them; it names croissant.json and
    Croissant lists it; the resolved config ships too."""
    import hashlib

    import rdflib
    from pyshacl import validate

    from bioscan_rebuild.export.provenance import PROVENANCE_SHAPES

    metadata = finished_run / "results" / "release" / "bioscan5m" / "metadata"
    text = (metadata / "provenance.jsonld").read_text()
    graph = rdflib.Graph().parse(data=text, format="json-ld")
    shapes = rdflib.Graph().parse(PROVENANCE_SHAPES, format="turtle")
    conforms, _, report = validate(graph, shacl_graph=shapes)
    assert conforms, report
    # the shapes hold what they claim: a job without its rule, a file without its hash, a folder's hash not one, a
    # job using or run by nothing in the graph (each conformed: a node left out of the check by what it lost)
    nodes = json.loads(text)
    job = next(i for i, node in enumerate(nodes["@graph"]) if "rule" in node)
    file = next(i for i, node in enumerate(nodes["@graph"]) if "path" in node and "sha256" in node)
    folder = next(i for i, node in enumerate(nodes["@graph"]) if "fileListSha256" in node)
    for index, change in (
        (job, lambda node: node.pop("rule")),
        (file, lambda node: node.pop("sha256")),
        (folder, lambda node: node.update(fileListSha256="not a hash")),
        (job, lambda node: node.update(used=["urn:nothing:here"])),
        (job, lambda node: node.update(wasAssociatedWith="urn:nobody")),
    ):
        tampered = json.loads(text)
        change(tampered["@graph"][index])
        tampered_graph = rdflib.Graph().parse(data=json.dumps(tampered), format="json-ld")
        assert not validate(tampered_graph, shacl_graph=shapes)[0], tampered["@graph"][index]
    prov = rdflib.Namespace("http://www.w3.org/ns/prov#")
    bioscan = rdflib.Namespace("https://github.com/bioscan-rebuild/terms#")
    plan = json.loads((finished_run / "results" / "provenance" / "plan.json").read_text())
    jobs = set(graph.subjects(bioscan.rule, None))
    assert len(jobs) == len(plan["jobs"]) > 30
    assert {str(r) for r in graph.objects(None, bioscan.rule)} >= {"parse_export", "process_images", "assign_splits"}
    checked = 0
    for entity, path in graph.subject_objects(bioscan.path):
        file = finished_run / str(path)
        sha = graph.value(entity, bioscan.sha256)
        if sha is not None and file.is_file():
            assert str(sha) == hashlib.sha256(file.read_bytes()).hexdigest(), path
            checked += 1
        if str(path).startswith("results/"):
            assert graph.value(entity, prov.wasGeneratedBy) in jobs, path
    assert checked > 60
    assert "xsd:dateTime" not in text and "startedAtTime" not in text
    assert "/croissant.json" in text
    # the build's nodes are the release's (one fixed urn:bioscan-rebuild:build: prefix made every version's run,
    # config and files one node, with two sha256 each once two versions' graphs were loaded together)
    release = "urn:bioscan-rebuild:release:BIOSCAN-5M%20rebuild:0.1.0"
    subjects = {str(subject) for subject in graph.subjects()}
    assert f"{release}/build/run" in subjects and all(subject.startswith(f"{release}/") for subject in subjects)
    croissant = (finished_run / "results" / "release" / "bioscan5m" / "croissant.json").read_text()
    assert "metadata/provenance.jsonld" in croissant
    config = json.loads((metadata / "config.json").read_text())
    assert config["release"] == {"previous": None} and config["ingest"]["duplicate_policy"] == "latest"


def test_the_provenance_plan_keeps_every_job_and_a_missing_source_stops_the_release(finished_run, sample_dir, tmp_path):
    """The plan kept a job only when its inputs were existing sources or kept jobs' outputs: a model that
    train_detector makes (README: "try a model without shipping it") dropped every photo job and what follows
    (22 of 39 jobs), and a delivery's export moved away after a run left a release target building a graph without
    most of its jobs, exit 0 (only `all` asked for the configured sources)."""
    plain = Counter(
        job["rule"] for job in json.loads((finished_run / "results/provenance/plan.json").read_text())["jobs"]
    )
    trained = make_workdir(tmp_path / "trained", sample_dir)
    config = yaml.safe_load((trained / "config" / "config.yaml").read_text())
    config["images"]["detector"] |= {
        "weights": "results/detector/model.onnx",
        "params": {"rule": "results/detector/fusion.json"},
    }
    (trained / "config" / "config.yaml").write_text(yaml.safe_dump(config))
    run_snakemake(trained, "results/provenance/plan.json")  # the plan alone: no model is needed to write it
    planned = json.loads((trained / "results" / "provenance" / "plan.json").read_text())["jobs"]
    assert Counter(job["rule"] for job in planned) == plain and plain["process_photos"] > 0
    moved = tmp_path / "moved"
    shutil.copytree(finished_run, moved, symlinks=True)
    export = next((moved / "resources" / "sample" / "sample-b").glob("*.tsv"))
    export.rename(export.with_suffix(".away"))
    done = run_snakemake(moved, "--dry-run", "results/release.json", check=False)
    assert done.returncode != 0 and export.relative_to(moved).as_posix() in done.stdout + done.stderr


@pytest.mark.parametrize(
    ("backend", "params", "batch_params", "gpus"),
    [
        ("yolo", {}, {}, 1),
        ("yolo", {"device": "cpu"}, {}, 0),
        ("onnx", {}, {}, 0),
        # a batch's own device decides (the config's alone did: a CUDA job on a node without a GPU)
        ("yolo", {"device": "cpu"}, {"device": "cuda"}, 1),
        ("yolo", {}, {"device": "cpu"}, 0),
    ],
)
def test_gpu_detector_jobs_ask_the_cluster_for_a_gpu(sample_dir, tmp_path, backend, params, batch_params, gpus):
    workdir = make_workdir(tmp_path / "gpu", sample_dir)
    (workdir / "model.pt").write_bytes(b"not loaded by a dry run")
    config = yaml.safe_load((workdir / "config" / "config.yaml").read_text())
    config["images"]["detector"] = {"backend": backend, "weights": "model.pt", "params": params}
    for batch in config["batches"]:
        batch["detector_params"] = batch_params
    (workdir / "config" / "config.yaml").write_text(yaml.safe_dump(config))
    plan = run_snakemake(workdir, "--dry-run", "--printshellcmds", "results/images/shard-000/summary.json")
    text = plan.stdout + plan.stderr
    job = text[text.index("rule process_photos") :]
    assert f"gpu={gpus}" in job.split("Shell command")[0]


@pytest.mark.parametrize(
    ("detector", "batch_params", "missing"),
    [
        ({"backend": "fusion", "weights": None, "params": {"rule": "my-rule.json"}}, {}, "my-rule.json"),
        ({"backend": "onnx", "weights": None, "params": {"weights": "my-model.onnx"}}, {}, "my-model.onnx"),
        ({"backend": "fusion", "weights": None, "params": {}}, {"rule": "batch-rule.json"}, "batch-rule.json"),
    ],
)
def test_model_files_named_anywhere_in_the_config_are_inputs_of_the_photo_jobs(
    sample_dir, tmp_path, detector, batch_params, missing
):
    """A weights or rule file named by the detector's params, or by one batch's detector_params, is an input of
    the photo jobs that read it (so an edit re-runs them); a missing one stops the plan naming it."""
    workdir = make_workdir(tmp_path / "files", sample_dir)
    config = yaml.safe_load((workdir / "config" / "config.yaml").read_text())
    config["images"]["detector"] = detector
    if batch_params:
        config["batches"][1]["detector_params"] = batch_params
    (workdir / "config" / "config.yaml").write_text(yaml.safe_dump(config))
    plan = run_snakemake(workdir, "--dry-run", check=False)
    text = plan.stdout + plan.stderr
    assert plan.returncode != 0 and "MissingInputException" in text and missing in text, text[-3000:]
    assert "process_photos" in text


@pytest.mark.slow
def test_a_model_file_gone_after_a_run_stops_the_next_one(finished_run, tmp_path):
    """After a run, a config naming a model or fusion rule that is not there: the photo jobs (whose outputs
    existed) were left out, and the release was rebuilt with the old boxes under a config naming the missing
    model, exit 0. Now the plan stops naming the file, as for a missing delivery."""
    workdir = tmp_path / "run"
    shutil.copytree(finished_run, workdir, symlinks=True, copy_function=shutil.copy2, dirs_exist_ok=True)
    original = (workdir / "config" / "config.yaml").read_text()
    for detector in (
        {"backend": "onnx", "weights": "nope.onnx", "params": {}},
        {"backend": "fusion", "weights": None, "params": {"rule": "nope-rule.json"}},
    ):
        config = yaml.safe_load(original)
        config["images"]["detector"] = detector
        (workdir / "config" / "config.yaml").write_text(yaml.safe_dump(config))
        plan = run_snakemake(workdir, "--dry-run", check=False)
        text = plan.stdout + plan.stderr
        missing = detector["weights"] or detector["params"]["rule"]
        assert plan.returncode != 0 and "MissingInputException" in text and missing in text, text[-3000:]


@pytest.mark.slow
def test_a_failed_release_job_runs_again_on_the_next_run(finished_run, tmp_path):
    """A release job that failed (a store file gone, a node out of memory) is run again by the next run once the
    cause is fixed; never taken for done with the old release in place (as marking its outputs update() did).
    Meanwhile the previous release stays whole: Snakemake deletes a failed job's outputs, and when those were the
    release's manifest, CSV and accounting, the published folder was left without them."""
    workdir = tmp_path / "run"
    shutil.copytree(finished_run, workdir, symlinks=True, copy_function=shutil.copy2, dirs_exist_ok=True)
    release = workdir / "results" / "release"
    before = {p.relative_to(release).as_posix(): p.read_bytes() for p in release.rglob("*") if p.is_file()}
    receipt = json.loads((workdir / "results" / "release.json").read_text())
    manifest = release / "MANIFEST.json"
    assert receipt["manifest_sha256"] == hashlib.sha256(manifest.read_bytes()).hexdigest()
    assert receipt["manifest_bytes"] == manifest.stat().st_size and receipt["release"] == "results/release"
    stored = next((workdir / "results" / "store" / "derived").rglob("*.cropped_256.jpg"))
    aside = tmp_path / "aside.jpg"
    stored.rename(aside)  # the release job fails on it
    result = run_snakemake(workdir, "--forcerun", "release", "results/release.json", check=False)
    assert result.returncode != 0 and "is not in the store" in result.stdout + result.stderr + _logs(workdir)
    after = {p.relative_to(release).as_posix(): p.read_bytes() for p in release.rglob("*") if p.is_file()}
    assert after == before and not (workdir / "results" / "release.json").exists()
    aside.rename(stored)
    assert "release" in _rules_to_run(workdir)


def test_a_job_killed_for_memory_asks_for_more_on_its_retry(finished_run, tmp_path_factory):
    """A whole-table job killed for memory (exit 137: SLURM's OUT_OF_MEMORY on a cluster that enforces requests)
    asks for twice its memory on the first retry (profiles/slurm: retries 2); with the same request it would be
    killed again on every retry. The retry's outputs are the first run's."""
    workdir = tmp_path_factory.mktemp("run")
    shutil.copytree(finished_run, workdir, symlinks=True, copy_function=shutil.copy2, dirs_exist_ok=True)
    stand_in = workdir / "stand-in"
    stand_in.mkdir()
    killed_once = workdir / "killed-once"
    python = stand_in / "python"
    # the jobs run `python -m bioscan_rebuild ...`: the first split job is killed as the kernel kills it
    python.write_text(
        "#!/bin/sh\n"
        f'if [ "$3" = splits ] && [ ! -e "{killed_once}" ]; then : > "{killed_once}"; exit 137; fi\n'
        f'exec "{sys.executable}" "$@"\n'
    )
    python.chmod(0o755)
    splits = workdir / "results" / "splits" / "splits.parquet"
    before = splits.read_bytes()
    result = run_snakemake(
        workdir, "--forcerun", "assign_splits", "--until", "assign_splits", "--retries", "2", path_first=stand_in
    )
    log = result.stdout + result.stderr
    requests = re.findall(r"rule assign_splits:\n(?:    .*\n)*?    resources: .*?\bmem_mb=(\d+)", log)
    assert killed_once.exists() and requests == ["8000", "16000"], log[-3000:]
    assert splits.read_bytes() == before
    # the FASTA job is a whole-table job too (2.96 GB at 4.98M records): it asked for the profile's 2 GB
    plan = run_snakemake(workdir, "--dry-run", "--forcerun", "barcode_fasta", "--until", "barcode_fasta")
    asked = re.findall(
        r"rule barcode_fasta:\n(?:    .*\n)*?    resources: .*?\bmem_mb=(\d+)", plan.stdout + plan.stderr
    )
    assert asked == ["4000"], plan.stdout[-3000:]


def _one_digit_changed(path: Path):
    def change():
        text = path.read_text()
        at = text.index('"sha256": "') + len('"sha256": "')
        path.write_text(text[:at] + ("1" if text[at] != "1" else "2") + text[at + 1 :])

    return change


@pytest.mark.slow
def test_a_release_removed_or_replaced_by_hand_is_made_again(finished_run, tmp_path, tmp_path_factory):
    """The release job's output is a receipt beside the release; a release folder removed, or its CSV removed,
    or its manifest replaced by another one, is made again by the next run (as when they were the outputs)."""
    workdir = tmp_path_factory.mktemp("run")  # as deep as finished_run: the shipped tables' relative paths hold
    shutil.copytree(finished_run, workdir, symlinks=True, copy_function=shutil.copy2, dirs_exist_ok=True)
    assert _rules_to_run(workdir) == set()
    release = workdir / "results" / "release"
    manifest = release / "MANIFEST.json"
    csv = release / "bioscan5m" / "metadata" / "csv" / "BIOSCAN_5M_Insect_Dataset_metadata.csv"
    receipt = workdir / "results" / "release.json"
    aside, kept_receipt = tmp_path / "aside", receipt.read_bytes()
    shutil.copytree(release, aside)
    audit = workdir / "results" / "audit" / "audit.json"
    kept_audit = audit.read_bytes()
    for change, rules in (
        (lambda: shutil.rmtree(release), {"release", "audit"}),
        (lambda: csv.unlink(), {"release", "audit"}),
        (lambda: manifest.write_text(manifest.read_text().replace("}", "} ", 1)), {"release", "audit"}),
        # another manifest of the same size (one hash digit): newer than the receipt the release job writes after it
        (_one_digit_changed(manifest), {"release", "audit"}),
        # a value of the CSV edited by hand: the release is audited again (the audit's record said it was whole)
        (lambda: csv.write_text(csv.read_text().replace("Insecta", "Arachnida", 1)), {"audit"}),
    ):
        shutil.rmtree(release, ignore_errors=True)
        shutil.copytree(aside, release)  # the files as they were, times included
        receipt.write_bytes(kept_receipt)  # the dry run below forgets the receipt of a changed release
        audit.write_bytes(kept_audit)
        assert _rules_to_run(workdir) == set()
        time.sleep(0.05)  # past the file system's clock tick
        change()
        assert rules <= _rules_to_run(workdir)

    # a release moved aside during a dry run: the dry run lists its rebuild, and once it is back nothing is to do
    receipt.write_bytes(kept_receipt)
    audit.write_bytes(kept_audit)
    shutil.rmtree(release)
    shutil.copytree(aside, release)
    assert _rules_to_run(workdir) == set()
    release.rename(tmp_path / "moved")
    assert {"release", "audit"} <= _rules_to_run(workdir) and not receipt.exists()
    (tmp_path / "moved").rename(release)
    assert _rules_to_run(workdir) == set() and receipt.read_bytes() == kept_receipt
    # the audit asks for memory by the release's size (its only input, the receipt, is a few hundred bytes), with
    # 1.5 GB for its own tables (a 500k-record release, 420 MB of CSV, peaked at 2.12 GB and asked for 2 GB)
    os.truncate(csv, 200 * 10**6)  # sparse
    plan = run_snakemake(workdir, "--dry-run", "--forcerun", "audit", "results/audit/audit.json")
    asked = re.findall(r"rule audit:\n(?:    .*\n)*?    resources: .*?\bmem_mb=(\d+)", plan.stdout + plan.stderr)
    assert len(asked) == 1 and int(asked[0]) >= 1500 + 4 * 200, plan.stdout[-3000:]
    os.truncate(csv, 4 * 10**9)
    plan = run_snakemake(workdir, "--dry-run", "--forcerun", "audit", "results/audit/audit.json")
    assert "mem_mb=16000" in plan.stdout + plan.stderr, plan.stdout[-3000:]


def _logs(workdir) -> str:
    return "".join(path.read_text() for path in (workdir / "logs" / "release").glob("*.log"))


def test_records_without_photos_pass_the_image_stage_when_photos_are_not_required(sample_dir, tmp_path):
    """ingest.require_images: false (a metadata-only delivery): its records pass the image stage as they came,
    the run's accounting balances, and they are released without images."""
    from bioscan_rebuild.synth.exports import generate_export

    workdir = make_workdir(tmp_path / "no-photos", sample_dir)
    generate_export(workdir / "resources" / "metadata-only.tsv", 200, seed=5, prefix="MONLY")
    config = yaml.safe_load((workdir / "config" / "config.yaml").read_text())
    config["ingest"]["require_images"] = False
    config["batches"].append({"name": "metadata-only", "export": "resources/metadata-only.tsv"})
    (workdir / "config" / "config.yaml").write_text(yaml.safe_dump(config))
    run_snakemake(workdir)
    accounting = json.loads((workdir / "results" / "accounting.json").read_text())
    assert accounting["balanced"] is True
    released = pd.read_parquet(workdir / "results" / "splits" / "splits.parquet")["processid"]
    photoless = released[released.str.startswith("MONLY")]
    assert len(photoless) > 100
    assert accounting["released"]["records"] - accounting["released"]["images"] >= len(photoless)


def test_the_stats_rule_computes_what_the_stats_command_reads_from_the_release(finished_run, tmp_path):
    """The stats stage runs before the release that ships it, on the rows the release will hold: the command on
    the finished release gives the same tables byte for byte; the release carries them and its card."""
    from bioscan_rebuild.cli.main import main

    stats = finished_run / "results" / "stats"
    release = finished_run / "results" / "release"
    assert main(["stats", str(release), "-o", str(tmp_path / "again")]) == 0
    tables = sorted(p.name for p in stats.glob("*.csv"))
    assert len(tables) == 14
    for name in [*tables, "stats.json"]:
        assert (tmp_path / "again" / name).read_bytes() == (stats / name).read_bytes(), name
        assert (release / "bioscan5m" / "metadata" / "stats" / name).read_bytes() == (stats / name).read_bytes()
    manifest = json.loads((release / "MANIFEST.json").read_text())["files"]
    assert "README.md" in manifest and "bioscan5m/metadata/stats/figures/site_map.png" in manifest
    released = len(pd.read_parquet(finished_run / "results" / "splits" / "splits.parquet"))
    assert json.loads((stats / "stats.json").read_text())["records"] == released


def test_the_review_queue_round_trip(finished_run, tmp_path_factory):
    """`bioscan-rebuild review` lists the flagged photos and writes a corrections template; a maintainer's answer
    (one photo is an empty well, one gets a new box, plus a typo'd processid and a box that is no box) set as
    images.box_corrections redoes only those two photos; the release follows; each row's outcome is listed."""
    import subprocess
    import sys

    workdir = tmp_path_factory.mktemp("review")  # the finished run's depth: see the rerun test
    shutil.copytree(finished_run, workdir, symlinks=True, copy_function=shutil.copy2, dirs_exist_ok=True)
    tables = sorted(str(p) for p in (workdir / "results" / "images").glob("shard-*/images.parquet"))
    cli = [sys.executable, "-m", "bioscan_rebuild", "review", *tables, "--store", str(workdir / "results" / "store")]
    done = subprocess.run([*cli, "-o", str(workdir / "review")], capture_output=True, text=True, check=True)
    counts = json.loads(done.stdout)
    flagged = pd.concat([pd.read_parquet(t) for t in tables]).query("needs_review")
    assert counts["flagged"] == len(flagged) > 2
    page = (workdir / "review" / "review.html").read_text()
    assert page.count("<figure>") == sum(len(r.split(";")) for r in flagged["review_reason"])
    template = (workdir / "review" / "box_corrections.tsv").read_text().splitlines()
    answers = [line[2:] for line in template if line.startswith("# ") and "\t" in line]
    assert len(answers) == len(flagged)
    # a maintainer's budget: the 3 least confident flagged photos (no score first, then by processid)
    done = subprocess.run([*cli, "--limit", "3", "-o", str(workdir / "review-3")], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert {k: json.loads(done.stdout)[k] for k in ("flagged", "shown")} == {"flagged": len(flagged), "shown": 3}
    least = flagged.sort_values(["detector_score", "processid"], na_position="first")["processid"].head(3)
    budget = (workdir / "review-3" / "box_corrections.tsv").read_text().splitlines()
    assert sorted(line[2:].split("\t")[0] for line in budget if line.startswith("# ") and "\t" in line) == sorted(least)
    csv_path = ("results", "release", "bioscan5m", *CSV_PATH.split("/"))
    released_before = set(pd.read_csv(finished_run.joinpath(*csv_path))["processid"])
    was_released = [a.split("\t") for a in answers if a.split("\t")[0] in released_before]
    first, second = was_released[:2]
    third = next(a.split("\t") for a in answers if a.split("\t")[0] not in (first[0], second[0]))
    header = next(line for line in template if line.startswith("processid\t"))
    assert header == "processid\tbox\treason\tsource\timage_sha256\toffered_box"
    # a header a maintainer cut to their own columns, offered_box kept: review adds image_sha256 after it, which
    # changed no answer but re-ran every photo job
    header = "processid\tbox\treason\tsource\toffered_box"
    corrections = workdir / "box_corrections.tsv"
    corrections.write_text(
        "\ufeff"  # saved by a spreadsheet: a byte-order mark, which review's rewrite drops (it re-ran every photo)
        + "\n".join(
            [
                header,
                f"{first[0]}\tempty\tno insect\treview",
                f"{second[0]}\t100,100,400,300\tfibre in the box\treview",
                "NOT-A-RECORD\t1,1,9,9\ttypo\treview",
                f"{third[0]}\t9,9,3,3\tbackwards\treview",
            ]
        )
        + "\n"
    )
    config = yaml.safe_load((workdir / "config" / "config.yaml").read_text())
    config["images"]["box_corrections"] = str(corrections)
    # a label correction of the record the empty well takes out of the release: the release ships the outcome
    # table as the build wrote it (rewritten, it failed the workflow's own audit, which checks it is a copy)
    labels = workdir / "label_corrections.tsv"
    labels.write_text(f"processid\tfield\tvalue\treason\tsource\n{first[0]}\tcountry\tIceland\tother\treview\n")
    config["taxonomy"]["corrections"] = str(labels)
    (workdir / "config" / "config.yaml").write_text(yaml.safe_dump(config))
    run_snakemake(workdir)
    released_outcomes = workdir / "results" / "release" / "bioscan5m" / "metadata" / "corrections.tsv"
    assert released_outcomes.read_bytes() == (workdir / "results" / "metadata" / "corrections.tsv").read_bytes()
    assert pd.read_csv(released_outcomes, sep="\t")["outcome"].tolist() == ["applied"]
    summary = json.loads((workdir / "results" / "images" / "summary.json").read_text())
    counts = _photo_counts(workdir)
    photos = counts["photos_processed"] + counts["photos_reused"]
    assert counts["photos_processed"] == 2 and photos == _photo_counts(finished_run)["photos_processed"]
    assert summary["box_corrections"] == {"applied": 2, "invalid_value": 1, "unknown_processid": 1}
    outcomes = pd.read_csv(workdir / "results" / "images" / "box_corrections.tsv", sep="\t")
    assert outcomes["outcome"].tolist() == ["applied", "applied", "unknown_processid", "invalid_value"]
    images = pd.concat(pd.read_parquet(t) for t in tables).set_index("processid")
    assert images.loc[first[0], "image_status"] == "no_object" and images.loc[first[0], "box_source"] == "correction"
    assert images.loc[second[0], ["x0", "y0", "x1", "y1"]].tolist() == [100, 100, 400, 300]
    assert not images.loc[[first[0], second[0]], "needs_review"].any()
    released = set(pd.read_csv(workdir.joinpath(*csv_path))["processid"])
    assert first[0] not in released and second[0] in released  # an empty well leaves the release (no_specimen)
    # the release says a person drew the box (the lineage credited the detector, the reject named no one)
    metadata = workdir / "results" / "release" / "bioscan5m" / "metadata"
    lineage = pd.read_csv(metadata / "records_lineage.csv", dtype=str).set_index("processid")
    assert lineage.loc[second[0], "box_source"] == "correction"
    assert set(lineage.drop(index=second[0])["box_source"].dropna()) == {"detector"}
    rejects = pd.read_csv(metadata / "rejects.csv", dtype=str).set_index("processid")
    assert rejects.loc[first[0], "detail"] == "image status no_object (a maintainer's box correction)"
    # the loop goes on: the review page written again over the answered file (its queue lines change, its answers
    # do not) re-runs nothing; it re-ran every photo job and the release, with new provenance bytes
    manifest = (workdir / "results" / "release" / "MANIFEST.json").read_bytes()
    before = corrections.read_text()
    done = subprocess.run([*cli, "-o", str(workdir)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert corrections.read_text() != before  # the queue was written afresh
    assert _rules_to_run(workdir) == set()
    run_snakemake(workdir)
    assert (workdir / "results" / "release" / "MANIFEST.json").read_bytes() == manifest


def test_every_run_audits_its_release_and_a_release_that_does_not_check_out_fails_it(finished_run, tmp_path):
    """The run's last job audits the release (`results/audit/audit.json`); the command it runs exits 1 and writes
    the problems when the release does not check out (the job then fails, its log naming them)."""
    import subprocess
    import sys

    audit = json.loads((finished_run / "results" / "audit" / "audit.json").read_text())
    manifest = json.loads((finished_run / "results" / "release" / "MANIFEST.json").read_text())
    released = json.loads((finished_run / "results" / "accounting.json").read_text())["released"]["records"]
    assert audit["ok"] is True and audit["problems"] == [] and audit["count"] == 0
    assert (audit["files"], audit["records"]) == (len(manifest["files"]), released)
    assert "whole" in (finished_run / "logs" / "release" / "audit.log").read_text()

    release = tmp_path / "release"
    shutil.copytree(finished_run / "results" / "release", release, symlinks=True)
    csv = release / "bioscan5m" / "metadata" / "csv" / "BIOSCAN_5M_Insect_Dataset_metadata.csv"
    csv.write_text(csv.read_text().replace('"Insecta","', '"Arachnida","', 1))
    command = [sys.executable, "-m", "bioscan_rebuild", "audit", str(release), "--json", str(tmp_path / "audit.json")]
    result = subprocess.run(command, capture_output=True, text=True, env={"PYTHONPATH": str(REPO / "workflow")})
    written = json.loads((tmp_path / "audit.json").read_text())
    assert result.returncode == 1 and written["ok"] is False and written["count"] >= 1
    assert any("BIOSCAN_5M_Insect_Dataset_metadata.csv" in line for line in written["problems"])


FAKE_CONDA = """#!/bin/sh
# enough of conda for `snakemake --list-conda-envs` (it creates nothing)
case "$*" in
  "--version") echo "conda 24.7.1";;
  *"info --json"*) echo '{"conda_prefix": "/nonexistent", "envs_dirs": [], "platform": "linux-64"}';;
  *"config --get"*) echo '{"get": {"channel_priority": "strict"}}';;
  *) echo '{}';;
esac
"""


def test_the_photo_jobs_of_the_yolo_backend_run_in_the_environment_with_torch(sample_dir, tmp_path):
    """Under ``--software-deployment-method conda`` the photo jobs always ran in ``envs/images.yaml``, which has no
    torch: the yolo backend could never run there (reviewer modelint). They take ``envs/yolo.yaml`` for it."""
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "conda").write_text(FAKE_CONDA)
    (fake / "conda").chmod(0o755)
    listed = {}
    for backend in ("classical", "yolo"):
        workdir = make_workdir(tmp_path / backend, sample_dir)
        config = yaml.safe_load((workdir / "config" / "config.yaml").read_text())
        config["images"]["detector"]["backend"] = backend
        if backend == "yolo":
            (workdir / "weights.pt").write_bytes(b"a checkpoint")
            config["images"]["detector"]["weights"] = "weights.pt"
        (workdir / "config" / "config.yaml").write_text(yaml.safe_dump(config))
        result = run_snakemake(workdir, "--list-conda-envs", path_first=fake)
        envs = [line.split()[0] for line in result.stdout.splitlines() if line.split()[:1] and ".yaml" in line]
        listed[backend] = {Path(env).name for env in envs}
    assert "images.yaml" in listed["classical"] and "yolo.yaml" not in listed["classical"], listed
    assert "yolo.yaml" in listed["yolo"], listed


def test_the_graph_names_the_shipped_model_and_rule_the_photo_jobs_read(finished_run):
    """The release named neither the shipped model nor its fusion rule: only a hash of the photo jobs' parameters
    held their sha256, so a model put in place of the shipped one left no trace a reviewer could read (reviewer
    modelint). Each is now a file the photo jobs used, with its sha256."""
    from bioscan_rebuild.core.io import file_sha256
    from bioscan_rebuild.detect.shipped import FUSION_RULE, MODEL, shipped

    metadata = finished_run / "results" / "release" / "bioscan5m" / "metadata"
    nodes = json.loads((metadata / "provenance.jsonld").read_text())["@graph"]
    by_name = {node["path"].rsplit("/", 1)[-1]: node for node in nodes if "path" in node}
    for name in (MODEL, FUSION_RULE):
        assert by_name[name]["path"] == f"workflow/bioscan_rebuild/detect/models/{name}"
        assert by_name[name]["sha256"] == file_sha256(shipped(name))
    photo_jobs = [node for node in nodes if node.get("rule") == "process_photos"]
    assert photo_jobs
    for job in photo_jobs:
        used = job["used"] if isinstance(job["used"], list) else [job["used"]]
        assert {by_name[MODEL]["@id"], by_name[FUSION_RULE]["@id"]} <= set(used)


def test_the_join_jobs_compare_end_ns_as_the_barcode_step_reads_them(sample_dir, tmp_path):
    """With ``barcodes.trim_end_n: false`` the barcode step keeps end Ns, so two deliveries differing only there
    differ in the release: the join jobs must not take them for one copy (reviewer diffm)."""
    for trim, option in ((True, "--trim-end-n"), (False, "--no-trim-end-n")):
        workdir = make_workdir(tmp_path / str(trim), sample_dir)
        config = yaml.safe_load((workdir / "config" / "config.yaml").read_text())
        config["barcodes"]["trim_end_n"] = trim
        (workdir / "config" / "config.yaml").write_text(yaml.safe_dump(config))
        plan = run_snakemake(workdir, "--dry-run", "--printshellcmds")
        joins = [line for line in plan.stdout.splitlines() if " ingest join " in line]
        assert joins and all(line.rstrip().split(" > ")[0].endswith(option) for line in joins), joins[:1]
