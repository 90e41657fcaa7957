"""Shared test fixtures: paths to ../shared (real third-party data) and the generated sample."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
REALDATA = SHARED / "realdata"
sys.path.insert(0, str(REPO / "workflow"))


def _require_shared(path: Path) -> Path:
    if path.exists():
        return path
    reason = f"{path} is absent: real-data tests need the ../shared folder beside the checkout"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(reason + " (CI=true: failing instead of skipping)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def realdata() -> Path:
    return _require_shared(REALDATA)


@pytest.fixture(scope="session")
def sample_dir(tmp_path_factory) -> Path:
    """The embedded sample, generated once per test session (as `make run` does)."""
    from bioscan_rebuild.synth.exports import generate_sample

    out = tmp_path_factory.mktemp("sample") / "resources" / "sample"
    generate_sample(out, n_records=300, seed=0)
    return out


def snakemake_bin() -> str:
    found = shutil.which("snakemake", path=str(Path(sys.executable).parent)) or shutil.which("snakemake")
    if not found:
        pytest.fail("snakemake is not installed in this environment")
    return found


def run_snakemake(workdir: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    cmd = [snakemake_bin(), "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir), "--cores", "2", *args]
    result = subprocess.run(cmd, cwd=workdir, env=env, capture_output=True, text=True)
    if check and result.returncode != 0:
        raise AssertionError(
            f"snakemake failed ({result.returncode}):\n{result.stdout[-4000:]}\n{result.stderr[-6000:]}"
        )
    return result
