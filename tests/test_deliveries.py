"""Deliveries over time: batch order (config order, or `delivered` dates) decides which copy of a redelivered
processid the release keeps."""

from __future__ import annotations

import re
import shutil

import pytest
import yaml

from conftest import REPO, run_snakemake


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
