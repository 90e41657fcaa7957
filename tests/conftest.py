"""Shared test fixtures: paths to ../shared (real third-party data) and the generated sample."""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import json
import os
import shutil
import signal
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


# A workflow run of the sample takes minutes; one that hangs (a cluster job whose end is never seen) fails the test.
SNAKEMAKE_TIMEOUT = 1800


def run_snakemake(
    workdir: Path, *args: str, check: bool = True, path_first: Path | None = None
) -> subprocess.CompletedProcess:
    """``path_first``: a folder put before the environment's on the jobs' PATH (a stand-in for a command)."""
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    env = dict(os.environ, PATH=f"{path_first}{os.pathsep}{path}" if path_first else path)
    cmd = [snakemake_bin(), "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir), "--cores", "2", *args]
    pipes = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "text": True, "start_new_session": True}
    with subprocess.Popen(cmd, cwd=workdir, env=env, **pipes) as run:
        try:
            stdout, stderr = run.communicate(timeout=SNAKEMAKE_TIMEOUT)
        except subprocess.TimeoutExpired:
            # as Ctrl-C, to Snakemake and its jobs (their own session): Snakemake cancels its cluster jobs and exits
            os.killpg(run.pid, signal.SIGINT)
            try:
                stdout, stderr = run.communicate(timeout=120)
            except subprocess.TimeoutExpired:
                os.killpg(run.pid, signal.SIGKILL)
                stdout, stderr = run.communicate(timeout=30)
            raise AssertionError(
                f"snakemake ran past {SNAKEMAKE_TIMEOUT} s and was stopped:\n{stdout[-4000:]}\n{stderr[-6000:]}"
            ) from None
    result = subprocess.CompletedProcess(cmd, run.returncode, stdout, stderr)
    if check and result.returncode != 0:
        raise AssertionError(
            f"snakemake failed ({result.returncode}):\n{result.stdout[-4000:]}\n{result.stderr[-6000:]}"
        )
    return result


def rewrite_manifest(release: Path) -> None:
    """What a careful forger does: hash the tampered files again, in croissant.json, then in the manifest."""
    croissant = release / "bioscan5m" / "croissant.json"
    doc = json.loads(croissant.read_text())
    for node in doc["distribution"]:
        file = croissant.parent / node.get("contentUrl", "")
        if node["@type"] == "cr:FileObject" and file.is_file():
            node.update(sha256=hashlib.sha256(file.read_bytes()).hexdigest(), contentSize=f"{file.stat().st_size} B")
    croissant.write_text(json.dumps(doc, indent=2) + "\n")
    manifest = json.loads((release / "MANIFEST.json").read_text())
    files = sorted(p for p in release.rglob("*") if p.is_file() and p.name != "MANIFEST.json")
    manifest["files"] = {
        p.relative_to(release).as_posix(): {
            "bytes": p.stat().st_size,
            "sha256": hashlib.sha256(p.read_bytes()).hexdigest(),
        }
        for p in files
    }
    (release / "MANIFEST.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
