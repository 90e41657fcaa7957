"""The workflow through SLURM (profiles/slurm) on a running cluster; skipped where none runs.

Start a single-node cluster on this machine with `profiles/slurm/local-cluster.sh start`
(Debian packages slurm-wlm and munge), then run `pytest tests/test_cluster.py`.
"""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from conftest import REPO, run_snakemake


def _cluster_idle() -> bool:
    if not shutil.which("sinfo"):
        return False
    result = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True, check=False)
    return result.returncode == 0 and "idle" in result.stdout


pytestmark = pytest.mark.skipif(
    not _cluster_idle(), reason="no idle SLURM node (start one: profiles/slurm/local-cluster.sh start)"
)


def test_ingest_runs_through_slurm(sample_dir, tmp_path):
    (tmp_path / "config").mkdir()
    shutil.copy(REPO / "config" / "config.yaml", tmp_path / "config" / "config.yaml")
    shutil.copytree(sample_dir, tmp_path / "resources" / "sample")
    result = run_snakemake(tmp_path, "--profile", str(REPO / "profiles" / "slurm"), "--until", "ingest_accounting")
    accounting = json.loads((tmp_path / "results" / "ingest" / "accounting.json").read_text())
    assert accounting["balanced"] is True
    submitted = (result.stdout + result.stderr).count("has been submitted with SLURM jobid")
    assert submitted >= 17  # every job went through SLURM
