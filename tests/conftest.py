"""Shared test fixtures: paths to ../shared (real third-party data) and the generated sample."""

from __future__ import annotations

import importlib
import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
REALDATA = SHARED / "realdata"
# A bare checkout without `pip install -e .`; an installed package (or bench/mutation.py's mutated copy) wins.
if importlib.util.find_spec("bioscan_rebuild") is None:
    sys.path.insert(0, str(REPO / "workflow"))


def on_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def require(condition: object, reason: str) -> None:
    """The one way a test skips: when ``condition`` is false, skip with ``reason`` locally, but fail under CI=true,
    so that CI can never go green by skipping what it was meant to check. Works at module level too."""
    if condition:
        return
    if on_ci():
        pytest.fail(reason + " (CI=true: failing instead of skipping)", pytrace=False)
    pytest.skip(reason, allow_module_level=True)


def import_or_skip(name: str, reason: str):
    """``require`` for an optional module: the module, or a skip (a fail under CI=true) when it is not installed.
    A module that is installed but breaks on import is an error, not a skip."""
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as error:
        if error.name != name and not name.startswith(f"{error.name}."):
            raise
        require(False, reason)


def require_shared(path: Path) -> Path:
    """``path`` under ../shared (real third-party data), or a skip (a fail under CI=true) without it."""
    require(path.exists(), f"{path} is absent: real-data tests need the ../shared folder beside the checkout")
    return path


@pytest.fixture(scope="session")
def realdata() -> Path:
    return require_shared(REALDATA)


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
