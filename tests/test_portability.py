"""A finished project moved elsewhere has nothing to re-run; the package installed from a wheel (not editable, run
outside the checkout) carries its tables and gives the same metadata as the checkout."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO, snakemake_bin

# What a checkout holds that the workflow reads (git-tracked), besides the generated sample.
CHECKOUT_PARTS = ("Snakefile", "workflow", "config", "profiles", "envs")
IGNORE = shutil.ignore_patterns("__pycache__", "*.egg-info")


def _snakemake(project: Path, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    result = subprocess.run([snakemake_bin(), *args], cwd=project, env=env, capture_output=True, text=True)
    assert result.returncode == 0, f"{result.stdout[-3000:]}\n{result.stderr[-5000:]}"
    return result


@pytest.mark.slow
def test_a_moved_checkout_has_nothing_to_do(sample_dir, tmp_path):
    project = tmp_path / "first" / "bioscan-rebuild"
    for part in CHECKOUT_PARTS:
        source = REPO / part
        if source.is_dir():
            shutil.copytree(source, project / part, ignore=IGNORE)
        else:
            project.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, project / part)
    shutil.copytree(sample_dir, project / "resources" / "sample")
    _snakemake(project, "--cores", "2")
    assert (project / "results" / "release" / "MANIFEST.json").is_file()

    moved = tmp_path / "somewhere" / "else" / "bioscan-rebuild"
    shutil.copytree(project, moved, symlinks=True)  # copy2: file times kept, as cp -a or rsync -a do
    shutil.rmtree(project)  # nothing may still point at the first place
    dry_run = _snakemake(moved, "--dry-run", "--cores", "1")
    assert "Nothing to be done" in dry_run.stdout + dry_run.stderr, dry_run.stdout[-3000:]


def test_an_installed_wheel_runs_metadata_with_the_shipped_tables(realdata, tmp_path):
    export = realdata / "ropensci-bold" / "extracted" / "coelioxys_combined.tsv"
    # Build from a copy: setuptools writes build/ into the source tree.
    source = tmp_path / "source"
    shutil.copytree(REPO / "workflow" / "bioscan_rebuild", source / "workflow" / "bioscan_rebuild", ignore=IGNORE)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, source / name)
    site = tmp_path / "site"
    install = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "--no-index"]
        + ["--target", str(site), str(source)],
        capture_output=True,
        text=True,
    )
    assert install.returncode == 0, install.stderr[-3000:]
    shutil.rmtree(source)  # the installed copy must stand alone

    def run(pythonpath: Path, outdir: Path) -> subprocess.CompletedProcess:
        outdir.mkdir()
        env = {"PYTHONPATH": str(pythonpath), "PATH": os.environ.get("PATH", "")}
        code = (
            "import sys, bioscan_rebuild\n"
            "from bioscan_rebuild.metadata.taxonomy.tables import shipped_table\n"
            "print(bioscan_rebuild.__file__); print(shipped_table('taxonomy_fixes.tsv'))\n"
            "from bioscan_rebuild.cli import main\n"
            "sys.exit(main(sys.argv[1:]))\n"
        )
        args = ["metadata", str(export), "-o", str(outdir / "meta.csv")]
        result = subprocess.run(
            [sys.executable, "-c", code, *args], cwd=outdir, env=env, capture_output=True, text=True
        )
        assert result.returncode == 0, result.stderr[-3000:]
        return result

    installed = run(site, tmp_path / "installed")
    package_file, fixes = installed.stdout.splitlines()[:2]
    assert Path(package_file).is_relative_to(site) and Path(fixes).is_relative_to(site) and Path(fixes).is_file()
    checkout = run(REPO / "workflow", tmp_path / "checkout")
    assert Path(checkout.stdout.splitlines()[0]).is_relative_to(REPO)
    written = sorted(p.name for p in (tmp_path / "checkout").iterdir())
    assert "meta.csv" in written and "meta.changes.csv" in written
    for name in written:
        assert (tmp_path / "installed" / name).read_bytes() == (tmp_path / "checkout" / name).read_bytes(), name
