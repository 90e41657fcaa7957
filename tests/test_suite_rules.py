"""Rules for the test suite itself: a test never goes green on CI by skipping.

Every skip goes through conftest's guard (``require`` / ``import_or_skip`` / ``require_shared``), which skips
locally but fails under CI=true.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from conftest import import_or_skip, require

TESTS = Path(__file__).resolve().parent
# Written as regexes (escaped dots and parentheses), so that this file does not match itself.
BARE_SKIP = re.compile(r"pytest\.skip\(|importorskip\(|mark\.skip(if)?\b|unittest\.skip")


def test_every_skip_goes_through_the_conftest_guard():
    found = [
        f"{path.relative_to(TESTS)}:{number}: {line.strip()}"
        for path in sorted(TESTS.rglob("*.py"))
        if path.name != "conftest.py"
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if BARE_SKIP.search(line)
    ]
    assert not found, "skip with conftest's require/import_or_skip (they fail under CI=true):\n" + "\n".join(found)


def test_require_skips_locally_and_fails_under_ci(monkeypatch):
    require(True, "met: nothing happens")
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="no widget"):
        require(False, "no widget")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match=r"no widget \(CI=true"):
        require(False, "no widget")


def test_import_or_skip_skips_only_a_missing_module(monkeypatch, tmp_path):
    monkeypatch.setenv("CI", "true")
    assert import_or_skip("json", "json is missing") is json
    with pytest.raises(pytest.fail.Exception, match="not installed"):
        import_or_skip("bioscan_no_such_module", "not installed")
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception, match="not installed"):
        import_or_skip("bioscan_no_such_module", "not installed")
    # installed but broken (a dependency of its own is missing): an error, never a skip
    (tmp_path / "bioscan_broken_module.py").write_text("import bioscan_no_such_dependency\n")
    monkeypatch.syspath_prepend(tmp_path)
    with pytest.raises(ModuleNotFoundError, match="bioscan_no_such_dependency"):
        import_or_skip("bioscan_broken_module", "not installed")
