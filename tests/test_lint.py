"""The workflow passes `snakemake --lint`; the Python passes ruff (the project's style rules)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO, run_snakemake


def test_snakemake_lint_is_clean():
    result = run_snakemake(REPO, "--lint", check=False)
    assert "Congratulations, your workflow is in a good condition!" in result.stdout + result.stderr, result.stdout


def test_ruff_is_clean():
    ruff = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")
    if ruff is None:
        pytest.fail("ruff is not installed (it is in the project's test extra)")
    result = subprocess.run([ruff, "check", "workflow", "tests", "bench"], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout
