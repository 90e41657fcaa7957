"""Bad input gets a clear, reproducible outcome (issue 11's fault catalogue, growing)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from bioscan_rebuild.core.params import ImageParams
from bioscan_rebuild.images.process import decode_photo
from bioscan_rebuild.ingest.bold import read_export
from bioscan_rebuild.ingest.inventory import inspect_image
from conftest import REPO

NOT_AN_IMAGE = b"this is not an image, just text that a scanner saved with a .jpg name\n" * 4


def _in_fresh_process(code: str) -> str:
    """Run in a new interpreter: object addresses differ between processes, not always within one."""
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env={"PYTHONPATH": str(REPO / "workflow")}
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def test_undecodable_photo_details_are_reproducible():
    """PIL names the in-memory buffer with its address; a reject detail must not carry it."""
    code = (
        "from bioscan_rebuild.ingest.inventory import inspect_image\n"
        "from bioscan_rebuild.images.process import decode_photo\n"
        "from bioscan_rebuild.core.params import ImageParams\n"
        f"data = {NOT_AN_IMAGE!r}\n"
        "print(inspect_image(data)['image_problem_detail'])\n"
        "print(decode_photo(data, ImageParams()).detail)\n"
    )
    first, second = _in_fresh_process(code), _in_fresh_process(code)
    assert first == second
    assert "0x" not in first and "object" not in first
    inventory_detail = inspect_image(NOT_AN_IMAGE)["image_problem_detail"]
    decoded = decode_photo(NOT_AN_IMAGE, ImageParams())
    assert inventory_detail == "header: cannot identify image file"
    assert decoded.status == "undecodable" and decoded.detail == "UnidentifiedImageError: cannot identify image file"


REAL_V4 = "ropensci-bold/extracted/coelioxys_combined.tsv"


def _content(table):
    return table.drop_columns([c for c in ("source_file", "source_sha256") if c in table.column_names]).to_pylist()


@pytest.mark.parametrize(
    ("ending", "block_bytes"),
    [(b"\r", 1 << 20), (b"\r\n", 1 << 20), (b"\r\n", 997), (b"\r", 997), ("mixed", 997)],
)
def test_every_line_ending_reads_every_row(realdata, tmp_path, ending, block_bytes):
    """Old-Mac CR exports used to read as one header line (every row silently lost); small blocks cut CRLF pairs."""
    original = (realdata / REAL_V4).read_bytes().replace(b"\r\n", b"\n")
    lines = original.split(b"\n")
    if ending == "mixed":  # what concatenating exports from several tools gives
        endings = [b"\n", b"\r\n", b"\r"]
        data = b"".join(line + endings[i % 3] for i, line in enumerate(lines[:-1])) + lines[-1]
    else:
        data = original.replace(b"\n", ending)
    (tmp_path / "lf.tsv").write_bytes(original)
    (tmp_path / "other.tsv").write_bytes(data)
    expected, expected_rejects, expected_stats = read_export(tmp_path / "lf.tsv", "b")
    got, got_rejects, stats = read_export(tmp_path / "other.tsv", "b", block_bytes=block_bytes)
    assert expected.num_rows > 100 and stats.data_lines == expected_stats.data_lines
    assert _content(got) == _content(expected)  # same records, same source lines
    assert _content(got_rejects) == _content(expected_rejects)
