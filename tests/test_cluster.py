"""The whole workflow through SLURM (profiles/slurm) on a running cluster gives the release a local run gives.

`.ci/run` starts a single-node cluster on the machine (Debian packages slurm-wlm and munge) and stops it after;
by hand: `profiles/slurm/local-cluster.sh start`, then `pytest tests/test_cluster.py`. Without an idle node the
test is skipped, and under CI=true it fails instead.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess

import pytest

from conftest import REPO, require, run_snakemake

LOCAL_JOBS = ("all", "provenance_plan")  # the localrules: every other job is submitted


def _cluster_idle() -> bool:
    if not shutil.which("sinfo"):
        return False
    result = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True, check=False)
    return result.returncode == 0 and "idle" in result.stdout


@pytest.fixture
def cluster():
    require(_cluster_idle(), "no idle SLURM node (start one: profiles/slurm/local-cluster.sh start)")


def _project(root, sample_dir):
    (root / "config").mkdir(parents=True)
    shutil.copy(REPO / "config" / "config.yaml", root / "config" / "config.yaml")
    shutil.copytree(sample_dir, root / "resources" / "sample")
    return root


def _digests(release) -> dict[str, str]:
    return {
        p.relative_to(release).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(release.rglob("*"))
        if p.is_file()
    }


def test_the_whole_workflow_through_slurm_gives_the_local_release(cluster, sample_dir, tmp_path):
    on_slurm = _project(tmp_path / "slurm", sample_dir)
    # status checks every 2 s from the start (the profile keeps the plugin's 40 s, kinder to a busy controller)
    result = run_snakemake(
        on_slurm,
        "--workflow-profile",
        str(REPO / "profiles" / "slurm"),
        "--slurm-init-seconds-before-status-checks",
        "2",
    )
    log = result.stdout + result.stderr
    submitted = log.count("has been submitted with SLURM jobid")
    planned = int(log.split("Job stats:")[1].split("\ntotal")[1].split()[0])
    assert submitted == planned - len(LOCAL_JOBS), log[-3000:]
    assert all(f"localrule {rule}:" in log for rule in LOCAL_JOBS), log[-3000:]
    local = _project(tmp_path / "local", sample_dir)
    run_snakemake(local)
    cluster_files, local_files = _digests(on_slurm / "results" / "release"), _digests(local / "results" / "release")
    assert cluster_files.keys() == local_files.keys()
    differ = sorted(name for name in local_files if cluster_files[name] != local_files[name])
    assert not differ, f"{len(differ)} released files differ, e.g. {differ[:5]}"


def test_the_local_cluster_script_leaves_a_running_cluster_alone(cluster):
    """A second start (another session's, or `.ci/run` on a machine whose cluster runs) exits 3 and changes
    nothing: `.ci/run`'s clean-up then stopped the running cluster and moved its slurm.conf away."""
    require(shutil.which("pgrep") is not None, "pgrep (procps) is not installed")
    script = REPO / "profiles" / "slurm" / "local-cluster.sh"
    second = subprocess.run([str(script), "start"], capture_output=True, text=True, check=False)
    assert second.returncode == 3 and "running already" in second.stderr
    assert _cluster_idle()  # still there, as it was
    ci = (REPO / ".ci" / "run").read_text()
    assert "3) echo" in ci and ci.index('"$cluster" start') < ci.index("trap '\"$cluster\" stop' EXIT")
