"""Deliveries over time: batch order (config order, or `delivered` dates) decides which copy of a redelivered
processid the release keeps."""

from __future__ import annotations

import json
import re
import shutil

import pytest
import yaml

from conftest import REPO, rewrite_manifest, run_snakemake


def _workdir(tmp_path, sample_dir, change):
    (tmp_path / "config").mkdir(parents=True)
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    change(config["batches"])
    (tmp_path / "config" / "config.yaml").write_text(yaml.safe_dump(config))
    shutil.copytree(sample_dir, tmp_path / "resources" / "sample")
    return tmp_path


def _batch_order(workdir) -> str:
    result = run_snakemake(workdir, "--dry-run", "--printshellcmds", "--forceall")
    (order,) = set(re.findall(r"--batch-order '?([\w.,-]+)'?", result.stdout))
    return order


def test_batches_follow_their_delivered_dates_not_the_config_order(tmp_path, sample_dir):
    def dated(batches):
        batches[0]["delivered"], batches[1]["delivered"] = "2024-06-01", "2024-03-15"

    assert _batch_order(_workdir(tmp_path / "dated", sample_dir, dated)) == "sample-b,sample-a"
    assert _batch_order(_workdir(tmp_path / "listed", sample_dir, lambda batches: None)) == "sample-a,sample-b"


def test_dating_some_batches_but_not_all_is_refused_at_start_up(tmp_path, sample_dir):
    def half(batches):
        batches[1]["delivered"] = "2024-03-15"

    result = run_snakemake(_workdir(tmp_path, sample_dir, half), "--dry-run", check=False)
    assert result.returncode != 0
    assert "batches: ['sample-a'] have no `delivered` date but others do" in result.stdout + result.stderr


@pytest.mark.parametrize(("policy", "family_from"), [("latest", "sample-b"), ("first", "sample-a")])
def test_the_sample_redelivery_keeps_the_copy_the_policy_names(tmp_path, sample_dir, policy, family_from):
    """The sample's batch b redelivers a record with another family: it stays released either way, with the
    family of the delivery the policy names, and the replaced value is in changes.csv (step 0, both sources)."""
    import json

    import pandas as pd

    workdir = _workdir(tmp_path, sample_dir, lambda batches: None)
    config = yaml.safe_load((workdir / "config" / "config.yaml").read_text())
    config["ingest"]["duplicate_policy"] = policy
    (workdir / "config" / "config.yaml").write_text(yaml.safe_dump(config))
    run_snakemake(workdir, "--until", "curate_taxonomy")
    faults = json.loads((workdir / "resources" / "sample" / "faults.json").read_text())
    (changed,) = [f["processid"] for f in faults["faults"] if f["reason"] == "superseded"]
    records = pd.concat(pd.read_parquet(p) for p in sorted(workdir.glob("results/ingest/shards/*/records.parquet")))
    row = records[records["processid"] == changed].iloc[0]
    assert row["batch"] == family_from
    changes = pd.read_parquet(workdir / "results" / "metadata" / "changes.parquet")
    (logged,) = changes[(changes["step"] == 0) & (changes["processid"] == changed)].itertuples()
    assert logged.field == "family" and logged.new == row["family"]
    old_batch, new_batch = (side.split(":")[0] for side in logged.source.split(" -> "))
    assert new_batch == family_from and old_batch != family_from
    assert logged.rule == {"latest": "superseded", "first": "later_delivery"}[policy]


@pytest.mark.slow
def test_no_shared_inodes_and_a_photo_edited_in_place_is_processed_again(tmp_path, sample_dir):
    """The release, the store and the source photos are three sets of files (a store object is read-only), and a
    source photo overwritten in place, which leaves its folder's mtime alone, is noticed: listed, hashed and
    processed again, and only that photo is processed."""
    import hashlib
    import json
    import os

    import pandas as pd

    workdir = _workdir(tmp_path, sample_dir, lambda batches: None)
    run_snakemake(workdir)
    results = workdir / "results"
    records = pd.concat(pd.read_parquet(p) for p in sorted(results.glob("ingest/shards/*/records.parquet")))
    released = pd.read_parquet(results / "splits" / "splits.parquet")
    row = records[records["processid"].isin(released["processid"])].sort_values("processid").iloc[0]
    source = workdir / "resources" / "sample" / row["image_batch"] / "images" / row["image_path"]
    stored = next(results.glob(f"store/original/{row['image_sha256'][:2]}/{row['image_sha256']}.*"))
    split = released.set_index("processid").loc[row["processid"]]
    release_file = next(results.glob(f"release/bioscan5m/images/original_full/*/*/{row['processid']}.jpg"))
    inodes = {(p.stat().st_dev, p.stat().st_ino) for p in (source, stored, release_file)}
    assert len(inodes) == 3 and split["split"] in release_file.parts
    assert stored.stat().st_mode & 0o777 == 0o444 and release_file.stat().st_mode & 0o777 == 0o644

    # another photo's bytes written into this file in place; the folder's mtime put back as it was
    folder_times = os.stat(source.parent)
    other = next(p for p in sorted(source.parent.glob("*.jpg")) if p != source and p.stat().st_size > 1000)
    new_bytes = other.read_bytes()[:2] + b"\xff\xfe\x00\x08edited" + other.read_bytes()[2:]  # a new, valid JPEG
    with open(source, "r+b") as handle:
        handle.write(new_bytes)
        handle.truncate()
    os.utime(source.parent, ns=(folder_times.st_atime_ns, folder_times.st_mtime_ns))
    dry = run_snakemake(workdir, "--dry-run")
    assert "list_images" in dry.stdout, dry.stdout[-3000:]
    photo_logs = workdir / "logs" / "images" / "process_photos"  # each photo job's counts
    photo_jobs = {p: p.stat().st_mtime_ns for p in photo_logs.glob("*/*.json")}
    run_snakemake(workdir)
    records = pd.concat(pd.read_parquet(p) for p in sorted(results.glob("ingest/shards/*/records.parquet")))
    changed = records[records["processid"] == row["processid"]]
    new_sha = hashlib.sha256(new_bytes).hexdigest()
    assert changed["image_sha256"].tolist() == [new_sha]
    rerun = [p for p in sorted(photo_logs.glob("*/*.json")) if p.stat().st_mtime_ns != photo_jobs[p]]
    assert rerun and {p.parent.name for p in rerun} == {row["image_batch"]}  # that batch's photo jobs only
    summaries = [json.loads(p.read_text()) for p in rerun]
    assert sum(s["photos_processed"] for s in summaries) == 1  # the edited photo only
    assert sum(s["photos_reused"] for s in summaries) == sum(s["photos"] for s in summaries) - 1  # from the store
    assert stored.read_bytes() != new_bytes  # the old store object is untouched


@pytest.mark.slow
def test_a_second_version_freezes_the_first_and_says_what_changed(tmp_path, sample_dir):
    """v1 from the first delivery, published; v2 adds the second delivery with release.previous = v1: no record
    of v1 moves split, the redelivered record's new family is a `changed` row saying `superseded`, the second
    delivery's records are `added`, and v2 audits whole."""
    import subprocess
    import sys

    import pandas as pd

    workdir = _workdir(tmp_path / "project", sample_dir, lambda batches: batches.pop(1))
    run_snakemake(workdir)
    published = tmp_path / "published" / "v1"
    shutil.copytree(workdir / "results" / "release", published)
    v1 = pd.read_csv(published / "bioscan5m/metadata/csv/BIOSCAN_5M_Insect_Dataset_metadata.csv", dtype=str)

    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    config["release"] = {"previous": str(published)}
    (workdir / "config" / "config.yaml").write_text(yaml.safe_dump(config))
    # the version left as v1's: two releases would claim one version (and one JSON-LD IRI); refused at start
    same = run_snakemake(workdir, check=False)
    assert same.returncode != 0 and "export.version 0.1.0 is not newer than 0.1.0" in same.stderr, same.stderr[-2000:]
    config["export"]["version"] = "0.2.0"
    (workdir / "config" / "config.yaml").write_text(yaml.safe_dump(config))
    run_snakemake(workdir)
    metadata = workdir / "results" / "release" / "bioscan5m" / "metadata"
    v2 = pd.read_csv(metadata / "csv" / "BIOSCAN_5M_Insect_Dataset_metadata.csv", dtype=str)
    diff = pd.read_csv(metadata / "release_diff.csv", dtype=str, keep_default_na=False)
    summary = yaml.safe_load((metadata / "release_diff_summary.json").read_text())
    assert summary["previous_version"] == "0.1.0"

    kept = v1.merge(v2, on="processid", suffixes=("_v1", "_v2"))
    assert (kept["split_v1"] == kept["split_v2"]).all() and summary["moved"] == 0  # frozen
    assert set(diff.loc[diff["change"] == "added", "processid"]) == set(v2["processid"]) - set(v1["processid"])
    assert summary["added"] == len(set(v2["processid"]) - set(v1["processid"])) > 50
    faults = yaml.safe_load((workdir / "resources" / "sample" / "faults.json").read_text())
    (redelivered,) = [f["processid"] for f in faults["faults"] if f["reason"] == "superseded"]
    assert redelivered in set(v1["processid"])
    row = diff[(diff["processid"] == redelivered) & (diff["field"] == "family")]
    assert row["change"].tolist() == ["changed"] and "superseded" in row["why"].iloc[0]
    assert summary["removed"] == len(set(v1["processid"]) - set(v2["processid"]))
    for removed in diff[diff["change"] == "removed"].itertuples():
        assert removed.why  # a reason of this build's rejects, or that no input holds it

    env = {"PYTHONPATH": str(REPO / "workflow")}

    def audit(release, *extra):
        command = [sys.executable, "-m", "bioscan_rebuild", "audit", str(release), *extra]
        return subprocess.run(command, capture_output=True, text=True, env=env, cwd=workdir)

    whole = audit("results/release", "--sources", "config/config.yaml", "--previous", str(published))
    assert whole.returncode == 0 and f"made again against {published}" in whole.stdout, whole.stdout[-3000:]
    run_snakemake(workdir, "--report", "report.html")
    assert "release.json" in (workdir / "report.html").read_text(errors="replace")  # the receipt: the diff's summary
    receipt = json.loads((workdir / "results" / "release.json").read_text())
    diff = workdir / "results" / "release" / "bioscan5m" / "metadata" / "release_diff_summary.json"
    assert receipt["diff"] == json.loads(diff.read_text()) and receipt["diff"]["previous_version"]

    # the diff edited and the manifest listed again (the file check alone passes): the record's value now against
    # the release, the reason only against the diff made again from v1; v1 itself is named when it is another
    tampered = tmp_path / "tampered"
    shutil.copytree(workdir / "results" / "release", tampered)
    diff_path = tampered / "bioscan5m" / "metadata" / "release_diff.csv"
    text = diff_path.read_text()
    line = next(row for row in text.splitlines() if row.startswith(f'"{redelivered}","changed","family"'))
    *head, new_value, why = line.split(",")
    edited = ",".join([*head, '"Formicidae_x"', why])
    diff_path.write_text(text.replace(line, edited))
    rewrite_manifest(tampered)
    found = audit(tampered)
    assert found.returncode == 1 and f"{redelivered} family is now 'Formicidae_x', the release holds" in found.stdout
    diff_path.write_text(text.replace(line, ",".join([*head, new_value, '"corrected by hand"'])))
    rewrite_manifest(tampered)
    assert audit(tampered).returncode == 0  # nothing in the release itself says why
    found = audit(tampered, "--previous", str(published))
    assert found.returncode == 1 and "why='corrected by hand'" in found.stdout, found.stdout[-3000:]
    assert "; the diff made again against --previous gives processid=" in found.stdout  # line by line
    found = audit(tampered, "--previous", str(workdir / "results" / "release"))
    assert found.returncode == 1 and "made against a release whose MANIFEST.json has sha256" in found.stdout
