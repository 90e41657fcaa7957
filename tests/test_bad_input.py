"""Bad input gets a clear, reproducible outcome (issue 11's fault catalogue, growing)."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import io
import json
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import yaml

from bioscan_rebuild.core.params import ImageParams
from bioscan_rebuild.core.store import ImageStore
from bioscan_rebuild.images.process import DerivedStore, PhotoResult, decode_photo
from bioscan_rebuild.ingest.bold import read_export
from bioscan_rebuild.ingest.inventory import DEFAULT_NAME_PATTERN, inspect_image, inventory, list_images, list_to_shards
from bioscan_rebuild.ingest.local import ingest_local
from bioscan_rebuild.ingest.parse import parse_to_shards
from conftest import REPO, run_snakemake

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
        "from bioscan_rebuild.images.process import DerivedStore, PhotoResult, decode_photo\n"
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


def _corrupt_scan_data(jpeg: bytes, seed: int = 0) -> bytes:
    """The same JPEG with bytes of its entropy-coded data changed; every marker stays where it was."""
    import numpy as np

    sos = jpeg.index(b"\xff\xda")
    start, end = sos + 2 + int.from_bytes(jpeg[sos + 2 : sos + 4], "big"), jpeg.rindex(b"\xff\xd9")
    data = bytearray(jpeg)
    rng = np.random.default_rng(seed)
    for at in rng.integers(start + (end - start) // 4, end - (end - start) // 4, 40):
        if data[at] != 0xFF and data[at - 1] != 0xFF:  # never make or break a marker
            data[at] = int(rng.integers(0, 0xFF))
    return bytes(data)


def _markers(jpeg: bytes) -> list[tuple[int, int]]:
    return [(at, jpeg[at + 1]) for at in range(len(jpeg) - 1) if jpeg[at] == 0xFF and jpeg[at + 1] not in (0, 0xFF)]


def test_corrupt_scan_data_behind_intact_markers_is_undecodable(realdata):
    """Pillow and OpenCV only warn and return garbage for these; the header and end marker look fine."""
    photo = (realdata / "BIOSCAN-1M/dataset/bioscan_images/Diptera.jpg").read_bytes()
    damaged = _corrupt_scan_data(photo)
    assert damaged != photo and _markers(damaged) == _markers(photo)
    assert inspect_image(damaged)["image_problem"] is None  # structurally intact: the header check passes
    decoded = decode_photo(damaged, ImageParams())
    assert decoded.status == "undecodable" and "Corrupt JPEG data" in decoded.detail, decoded.detail
    assert decode_photo(photo, ImageParams()).status == "ok"


def _jfif_revision_2(jpeg: bytes) -> bytes:
    assert jpeg[6:11] == b"JFIF\x00"
    return jpeg[:11] + b"\x02\x01" + jpeg[13:]


def _sequential_scan_with_se_0(jpeg: bytes) -> bytes:
    sos = jpeg.index(b"\xff\xda")
    se = sos + 2 + int.from_bytes(jpeg[sos + 2 : sos + 4], "big") - 2  # Ss, Se, Ah/Al end the segment
    return jpeg[:se] + b"\x00" + jpeg[se + 1 :]


def _icc_segment_3_of_2(jpeg: bytes) -> bytes:
    payload = b"ICC_PROFILE\x00\x03\x02" + b"\x00" * 16
    return jpeg[:2] + b"\xff\xe2" + (len(payload) + 2).to_bytes(2, "big") + payload + jpeg[2:]


def _zero_padding_before_the_end(jpeg: bytes) -> bytes:
    end = jpeg.rindex(b"\xff\xd9")
    return jpeg[:end] + b"\x00" * 16 + jpeg[end:]


def _zero_padding_and_a_header_warning(jpeg: bytes) -> bytes:
    return _zero_padding_before_the_end(_jfif_revision_2(jpeg))


@pytest.mark.parametrize(
    "mutate",
    [
        _jfif_revision_2,
        _sequential_scan_with_se_0,
        _icc_segment_3_of_2,
        _zero_padding_before_the_end,
        _zero_padding_and_a_header_warning,
    ],
)
def test_a_header_warning_the_decoder_ignores_keeps_the_photo_and_its_scan_is_still_checked(realdata, mutate):
    """libjpeg warns on a JFIF revision 2.01, a sequential scan's progression fields not 0/63/0 and an ICC
    segment numbered 3 of 2, then decodes the same pixels; the strict check made each photo ``undecodable``."""
    photo = (realdata / "imgfilter-dev/CRBLA1993-22.1024px.jpg").read_bytes()
    clean = decode_photo(photo, ImageParams())
    odd = mutate(photo)
    assert odd != photo
    decoded = decode_photo(odd, ImageParams())
    assert decoded.status == clean.status == "ok", decoded.detail
    assert np.array_equal(decoded.rgb, clean.rgb)
    damaged = decode_photo(_corrupt_scan_data(odd), ImageParams())  # damage behind the odd header is still found
    assert damaged.status == "undecodable" and "Corrupt JPEG data" in damaged.detail, damaged.detail


def test_zero_padding_is_taken_off_anywhere_but_other_bytes_before_a_marker_are_damage(realdata):
    """Zero bytes padding a scan ("N extraneous bytes before marker") made a sound photo `undecodable` from 3 of
    them on: before the end marker, or before a progressive photo's next scan. Other bytes there, or zeros with a
    byte of something else, stay damage."""
    import re

    from PIL import Image

    photo = (realdata / "imgfilter-dev/AACTA244-20.1024px.jpg").read_bytes()
    buffer = io.BytesIO()
    Image.open(io.BytesIO(photo)).save(buffer, format="JPEG", progressive=True, quality=90)
    progressive = buffer.getvalue()
    clean = decode_photo(progressive, ImageParams())
    scans = [m.start() for m in re.finditer(rb"\xff\xda", progressive)][1:]
    for at in scans:  # before each later scan's header
        padded = progressive[:at] + b"\x00" * 4 + progressive[at:]
        decoded = decode_photo(padded, ImageParams())
        assert decoded.status == "ok" and np.array_equal(decoded.rgb, clean.rgb), decoded.detail
    # one zero byte, where a byte of scan data before another marker is a zero too (the wrong place, tried first,
    # still leaves a padding said: the search kept it and lost the photo)
    small = Image.open(realdata / "imgfilter-dev/ABINP386-21.1024px.jpg").convert("RGB").resize((256, 192))
    buffer = io.BytesIO()
    small.save(buffer, format="JPEG", quality=75, progressive=True, optimize=True)
    optimized = buffer.getvalue()
    expected = decode_photo(optimized, ImageParams())
    for at in [m.start() for m in re.finditer(rb"\xff[\xc4\xda\xd9]", optimized)][3:]:
        decoded = decode_photo(optimized[:at] + b"\x00" + optimized[at:], ImageParams())
        assert decoded.status == "ok" and np.array_equal(decoded.rgb, expected.rgb), (at, decoded.detail)
    # a tool that pads one scan pads them all, and the end: each padding is taken off in turn
    padded = progressive
    for at in sorted([*scans, progressive.rindex(b"\xff\xd9")], reverse=True):
        padded = padded[:at] + b"\x00" * 4 + padded[at:]
    decoded = decode_photo(padded, ImageParams())
    assert decoded.status == "ok" and np.array_equal(decoded.rgb, clean.rgb), decoded.detail
    end = photo.rindex(b"\xff\xd9")
    for junk in (b"abc", b"\x00\x00a", b"\x00" * 3 + b"\x01"):
        refused = decode_photo(photo[:end] + junk + photo[end:], ImageParams())
        assert refused.status == "undecodable" and "extraneous bytes before marker 0xd9" in refused.detail, junk


def test_a_photo_stored_undecodable_by_an_older_check_is_judged_again(tmp_path):
    """The store kept such a photo's old `undecodable` result under the same key: a re-run never tried it again
    (a new stage version would have re-processed every photo instead). A result of this check is kept, whatever
    its detail says (matching the detail re-processed a photo the mending could not save on every run, and the
    image join then found no result for it and failed)."""
    store = DerivedStore(ImageStore(tmp_path / "store"), "key")
    store.save("a" * 64, PhotoResult("undecodable", "ValueError: Warning: unknown JFIF revision number 2.01"), {})
    store.save("b" * 64, PhotoResult("ok"), {})
    assert store.load("a" * 64).status == "undecodable" and store.load("b" * 64).status == "ok"
    for sha in ("a" * 64, "b" * 64):  # as an older version stored them
        path = store.result_path(sha)
        stored = json.loads(path.read_text())
        for key in ("decode_check", "_sha256", "files"):  # older versions wrote none of these (nor sealed the file)
            del stored[key]
        path.chmod(0o644)
        path.write_text(json.dumps(stored))
    assert store.load("a" * 64) is None
    assert store.load("b" * 64).status == "ok"  # only undecodable ones: the others' pixels did decode


def _sequential_jpeg_of_three_scans() -> bytes:
    """256x256 grey-level baseline JPEG, one scan per component, each scan's Se 0 instead of 63."""
    import struct

    def segment(marker: int, payload: bytes) -> bytes:
        return b"\xff" + bytes([marker]) + struct.pack(">H", len(payload) + 2) + payload

    jpeg = b"\xff\xd8" + segment(0xE0, b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00")
    jpeg += segment(0xDB, b"\x00" + bytes([1] * 64))
    jpeg += segment(0xC0, bytes([8]) + struct.pack(">HH", 256, 256) + bytes([3, 1, 0x11, 0, 2, 0x11, 0, 3, 0x11, 0]))
    jpeg += segment(0xC4, b"\x00" + bytes([1] + [0] * 15) + b"\x00")  # DC: one code, difference 0
    jpeg += segment(0xC4, b"\x10" + bytes([1] + [0] * 15) + b"\x00")  # AC: one code, end of block
    scan = bytes(32 * 32 * 2 // 8)  # per block: DC "0", EOB "0"
    for component in (1, 2, 3):
        jpeg += segment(0xDA, bytes([1, component, 0x00, 0, 0, 0])) + scan
    return jpeg + b"\xff\xd9"


def test_the_sharpness_of_a_box_outside_the_photo_is_zero_not_a_failed_shard():
    from bioscan_rebuild.images.process import sharpness

    rgb = np.zeros((48, 64, 3), np.uint8)
    assert sharpness(rgb, (70, 50, 90, 60)) == sharpness(rgb, (10, 10, 10, 20)) == 0.0
    assert sharpness(rgb, (-5, -5, 10, 10)) == 0.0  # partly outside: the part inside (flat)


def test_every_scan_of_a_sequential_jpeg_is_mended():
    """Only the first scan's fields were mended: a photo of one scan per component stayed `undecodable`."""
    from PIL import Image

    from bioscan_rebuild.images.process import _decode_jpeg_strict

    jpeg = _sequential_jpeg_of_three_scans()
    pixels = _decode_jpeg_strict(jpeg, (256, 256), (256, 256), "RGB")
    assert np.array_equal(pixels, np.asarray(Image.open(io.BytesIO(jpeg)).convert("RGB")))


def test_corrupt_scan_data_in_an_mpo_photo_is_undecodable(realdata):
    """An MPO (a camera's multi-picture JPEG) used to skip the strict decode and give garbage pixels as ``ok``."""
    import io

    from PIL import Image

    photo = Image.open(realdata / "BIOSCAN-1M/dataset/bioscan_images/Diptera.jpg").convert("RGB")
    buffer = io.BytesIO()
    photo.save(buffer, format="MPO", save_all=True, append_images=[photo.rotate(180)], quality=90)
    mpo = buffer.getvalue()
    assert Image.open(io.BytesIO(mpo)).format == "MPO"
    first_end = mpo.index(b"\xff\xd9", mpo.index(b"\xff\xda")) + 2  # the main picture's end marker
    damaged = _corrupt_scan_data(mpo[:first_end]) + mpo[first_end:]
    assert damaged != mpo and _markers(damaged) == _markers(mpo)
    decoded = decode_photo(damaged, ImageParams())
    assert decoded.status == "undecodable" and "Corrupt JPEG data" in decoded.detail, decoded.detail
    clean = decode_photo(mpo, ImageParams())
    assert clean.status == "ok" and clean.source_format == "mpo" and not clean.reuse_source


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


def test_a_carriage_return_typed_into_a_cell_keeps_every_line_number(realdata, tmp_path):
    """Reviewer lineage: a lone CR inside a field (a line break typed into an Excel cell) was taken for a line
    ending in a file of LF lines: the row was rejected as two broken rows without naming the CR, and the lineage
    named the line after the right one for every later row (the audit, replaying the same parser, agreed). It is
    the line's text: in a column never read the row is kept; in a read one it is refused naming the CR; CRs doubled
    before an LF end one line; a file of mixed endings still reads every row."""
    lines = (realdata / REAL_V4).read_bytes().replace(b"\r\n", b"\n").split(b"\n")
    header = lines[0].decode().split("\t")
    notes, species = header.index("notes"), header.index("species_name")

    def typed(line: bytes, column: int) -> bytes:
        cells = line.split(b"\t")
        cells[column] = b"typed in\rExcel"
        return b"\t".join(cells)

    (tmp_path / "lf.tsv").write_bytes(b"\n".join(lines))
    expected, expected_rejects, expected_stats = read_export(tmp_path / "lf.tsv", "b")
    (tmp_path / "note.tsv").write_bytes(b"\n".join([*lines[:3], typed(lines[3], notes), *lines[4:]]))
    got, got_rejects, stats = read_export(tmp_path / "note.tsv", "b", block_bytes=997)
    assert got.num_rows == expected.num_rows and stats.data_lines == expected_stats.data_lines
    assert got["source_line"].to_pylist() == expected["source_line"].to_pylist()  # every row at its own line
    assert _content(got) == _content(expected) and _content(got_rejects) == _content(expected_rejects)
    (tmp_path / "species.tsv").write_bytes(b"\n".join([*lines[:3], typed(lines[3], species), *lines[4:]]))
    got, got_rejects, _ = read_export(tmp_path / "species.tsv", "b")
    assert got.num_rows == expected.num_rows - 1
    added = got_rejects.filter(pc.equal(got_rejects["source_line"], 4))
    assert added["detail"].to_pylist() == [
        "a carriage return (U+000D) in column 'species_name': a line break typed into a cell? remove it there"
    ]
    assert got["source_line"].to_pylist() == [n for n in expected["source_line"].to_pylist() if n != 4]
    (tmp_path / "crcrlf.tsv").write_bytes(b"\r\r\n".join(lines))
    got, _, stats = read_export(tmp_path / "crcrlf.tsv", "b", block_bytes=997)
    assert got["source_line"].to_pylist() == expected["source_line"].to_pylist()
    assert stats.data_lines == expected_stats.data_lines
    # reviewer diffb: the header's ending is the file's. A CR file (Excel for Mac) with an LF typed into a cell lost
    # every row when any LF put the file in LF mode; now that row alone is lost, as before
    cells = lines[300].split(b"\t")
    cells[notes] = b"collected at dusk\nnear the river"
    (tmp_path / "cr.tsv").write_bytes(b"\r".join([*lines[:300], b"\t".join(cells), *lines[301:]]))
    got, _, _ = read_export(tmp_path / "cr.tsv", "b", block_bytes=997)
    assert set(got["processid"].to_pylist()) == set(expected["processid"].to_pylist()) - {cells[0].decode()}
    # rows parted by a lone CR in a file of LF lines (mixed endings): a short row among them is its own reject
    short = b"\t".join(lines[5].split(b"\t")[:-3])
    mixed = b"\n".join([*lines[:4], lines[4] + b"\r" + short + b"\r" + lines[6], *lines[7:]])
    (tmp_path / "mixed.tsv").write_bytes(mixed)
    got, got_rejects, _ = read_export(tmp_path / "mixed.tsv", "b")
    short_id = short.split(b"\t")[0].decode()
    assert set(got["processid"].to_pylist()) == set(expected["processid"].to_pylist()) - {short_id}
    assert [d for d in got_rejects["detail"].to_pylist() if "fields, header has" in d] == [
        f"{len(header) - 3} fields, header has {len(header)}"
    ]
    # a stray CR after the last LF is no line of its own; a long run of CRs before an LF ends one line
    (tmp_path / "stray.tsv").write_bytes(b"\n".join(lines) + b"\r")
    assert read_export(tmp_path / "stray.tsv", "b")[2].blank_lines == expected_stats.blank_lines
    (tmp_path / "run.tsv").write_bytes(b"\n".join([lines[0], lines[1] + b"\r" * 100_000, lines[2]]))
    assert read_export(tmp_path / "run.tsv", "b")[0]["source_line"].to_pylist() == [2, 3]


@pytest.mark.parametrize("above", [b"\n", b"\r\n", b"\t\t\n\n"])
def test_blank_lines_above_the_header_are_skipped_and_counted_in_the_line_numbers(realdata, tmp_path, above):
    """Reviewer lineage: a blank line before the header refused the export as "not a known BOLD export layout",
    naming columns it holds. The header is the first line that is not blank; every line keeps its number."""
    data = (realdata / REAL_V4).read_bytes()
    (tmp_path / "plain.tsv").write_bytes(data)
    (tmp_path / "above.tsv").write_bytes(above + data)
    expected, expected_rejects, _ = read_export(tmp_path / "plain.tsv", "b")
    got, got_rejects, _ = read_export(tmp_path / "above.tsv", "b")
    shift = above.count(b"\n")
    assert got["source_line"].to_pylist() == [n + shift for n in expected["source_line"].to_pylist()]
    assert got.drop_columns(["source_line"]).drop_columns(["source_file", "source_sha256"]).to_pylist() == (
        expected.drop_columns(["source_line", "source_file", "source_sha256"]).to_pylist()
    )
    assert got_rejects["source_line"].to_pylist() == [n + shift for n in expected_rejects["source_line"].to_pylist()]


def test_invisible_characters_in_a_place_or_sample_id_make_no_second_name(realdata, tmp_path):
    """Reviewer lineage: "Ontario\u200b" and "Canada\u2060" (a zero-width space, a word joiner) were released as
    written: second places beside "Ontario" and "Canada", with no changes row. They are taken out, as from a
    processid and from taxon names; a value of nothing else is missing."""
    lines = (realdata / REAL_V4).read_bytes().replace(b"\r\n", b"\n").split(b"\n")
    header = lines[0].decode().split("\t")
    at = {name: header.index(name) for name in ("country", "province_state", "sampleid")}
    (tmp_path / "plain.tsv").write_bytes(b"\n".join(lines))
    expected, _, _ = read_export(tmp_path / "plain.tsv", "b")
    rows = []
    for i, line in enumerate(lines):
        cells = line.split(b"\t")
        if 0 < i < 40 and len(cells) == len(header):
            for name, mark in (("country", "\u2060"), ("province_state", "\u200b"), ("sampleid", "\ufeff")):
                if cells[at[name]]:
                    cells[at[name]] += mark.encode()
        rows.append(b"\t".join(cells))
    (tmp_path / "marked.tsv").write_bytes(b"\n".join(rows))
    got, _, _ = read_export(tmp_path / "marked.tsv", "b")
    assert _content(got) == _content(expected)
    cells = lines[1].split(b"\t")
    cells[at["province_state"]] = "\u200b".encode()
    (tmp_path / "only.tsv").write_bytes(b"\n".join([lines[0], b"\t".join(cells)]))
    assert read_export(tmp_path / "only.tsv", "b")[0]["province_state"].to_pylist() == [None]


def test_spaces_inside_a_place_name_make_no_second_place(realdata, tmp_path):
    """ "Costa\u00a0Rica", "Costa  Rica" and "Costa\u2009Rica" were released as three countries beside Costa Rica,
    and a later delivery spelling it plainly was thrown away as the same copy (the join compares runs of spaces as
    one; reviewer geo). A run of any spaces inside a place or sample id is one space."""
    lines = (realdata / REAL_V4).read_bytes().replace(b"\r\n", b"\n").split(b"\n")
    header = lines[0].decode().split("\t")
    at = {name: header.index(name) for name in ("country", "province_state", "sampleid")}
    cells = lines[1].decode().split("\t")
    spellings = ["Costa\u00a0Rica", "Costa  Rica", "Costa\u2009Rica", "Costa \u3000 Rica", "Costa Rica"]
    rows = []
    for k, country in enumerate(spellings):
        row = cells[:]
        row[0] = f"SPACE{k}-21"
        row[at["country"]], row[at["province_state"]], row[at["sampleid"]] = country, "Guana\u00a0caste", f"S\u00a0{k}"
        rows.append("\t".join(row))
    (tmp_path / "spaced.tsv").write_text("\n".join([lines[0].decode(), *rows]) + "\n")
    got, rejects, _ = read_export(tmp_path / "spaced.tsv", "b")
    assert rejects.num_rows == 0
    assert set(got["country"].to_pylist()) == {"Costa Rica"}
    assert set(got["province_state"].to_pylist()) == {"Guana caste"}
    assert got["sampleid"].to_pylist() == [f"S {k}" for k in range(len(spellings))]
    # the plain spelling delivered later is the record's: nothing thrown away, one place released
    (tmp_path / "v1.tsv").write_text("\n".join([lines[0].decode(), rows[0]]) + "\n")
    (tmp_path / "v2.tsv").write_text("\n".join([lines[0].decode(), rows[0].replace("Costa\u00a0Rica", "Costa Rica")]))
    result = _run_cli("metadata", "v1.tsv", "v2.tsv", "-o", "out.csv", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    released = pd.read_csv(tmp_path / "out.csv", dtype=str, keep_default_na=False)
    assert released["country"].tolist() == ["Costa Rica"]


def _run_cli(*args: str, cwd) -> subprocess.CompletedProcess:
    env = {"PYTHONPATH": str(REPO / "workflow")}
    return subprocess.run(
        [sys.executable, "-m", "bioscan_rebuild", *args], capture_output=True, text=True, env=env, cwd=cwd
    )


def _v4_with_two_species_columns(realdata) -> bytes:
    lines = (realdata / REAL_V4).read_bytes().split(b"\n")
    return b"\n".join([lines[0] + b"\tspecies_name", *(line + b"\tx" for line in lines[1:3])]) + b"\n"


EXPORT_FAULTS = {  # name -> (bytes of the file, what the one-line message must say)
    "zero_bytes": (lambda realdata: b"", ["empty file (0 bytes)"]),
    "utf16": (
        lambda realdata: (realdata / REAL_V4).read_bytes()[:4000].decode("utf-8", "ignore").encode("utf-16"),
        ["UTF-16", "iconv"],
    ),
    "binary": (lambda realdata: b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4, ["binary data"]),
    "duplicated_column": (_v4_with_two_species_columns, ["'species_name' appears twice", "remove or rename one"]),
}


@pytest.mark.parametrize("fault", EXPORT_FAULTS)
def test_an_export_that_cannot_be_read_gets_one_clear_line(realdata, tmp_path, fault):
    make, phrases = EXPORT_FAULTS[fault]
    export = tmp_path / f"{fault}.tsv"
    export.write_bytes(make(realdata))
    parse = ("ingest", "parse", str(export), "--batch", "b", "--shards", "1", "--outdir", "out")
    result = _run_cli(*parse, cwd=tmp_path)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert lines[0].startswith("bioscan-rebuild: error: ") and str(export) in lines[0]
    for phrase in phrases:
        assert phrase in lines[0], lines[0]
    debug = _run_cli(
        "--debug", "ingest", "parse", str(export), "--batch", "b", "--shards", "1", "--outdir", "o", cwd=tmp_path
    )
    assert debug.returncode != 0 and "Traceback" in debug.stderr


def _config_with(tmp_path, change) -> Path:
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    change(config)
    (tmp_path / "config").mkdir(exist_ok=True)
    (tmp_path / "config" / "config.yaml").write_text(yaml.safe_dump(config))
    return tmp_path


def _set_pattern(config):
    config["ingest"]["image_name_pattern"] = "^(?P<processid>[A-Z+)\\.jpg$"


def _images_is_a_file(config):
    config["batches"][0]["images"] = "photos.zip"


def _export_is_a_folder(config):
    config["batches"][0]["export"] = "config"


def _store_none(config):
    config["image_store"]["mode"] = "none"


def _unknown_key(config):
    config["ingest"]["image_name_patern"] = "^(?P<processid>.+)\\.jpg$"


def _wrong_type(config):
    config["shards"] = "four"


def _yolo_without_weights(config):
    config["images"]["detector"]["backend"] = "yolo"


def _fusion_weights_without_their_rule(config):
    config["images"]["detector"]["backend"] = "fusion"
    config["images"]["detector"]["weights"] = "results/detector/model.onnx"


def _batch_pattern_without_processid(config):
    config["batches"][0]["image_name_pattern"] = "^(?P<pid>.+)\\.jpg$"


def _zips_without_images(config):
    config["export"]["zip_packages"] = True
    config["export"]["formats"] = [f for f in config["export"]["formats"] if f != "images"]


def _missing_export(config):
    config["batches"] = [{"name": "d1", "export": "deliveries/d1.tsv", "images": "config"}]


def _missing_tables(config):
    config["batches"] = [{"name": "d1", "export": "config/config.yaml"}]  # there (the DAG is built), not an export
    config["taxonomy"]["corrections"] = "reports/corrections.tsv"


def _detector_param_typo(config):
    config["images"]["detector"]["params"] = {"mask_wel": True}


def _detector_param_as_text(config):
    # what Snakemake's --config makes of a nested false; bool("false") is True
    config["images"]["detector"]["params"] = {"mask_well": "false"}


def _detector_param_typed_by_annotation(config):
    config["images"]["detector"]["backend"] = "onnx"
    config["images"]["detector"]["params"] = {"imgsz": "320", "threads": 1.5}


def _detector_params_out_of_range(config):
    config["images"]["detector"]["backend"] = "onnx"
    config["images"]["detector"]["params"] = {"conf": 25, "imgsz": -32}
    config["batches"][0]["detector_params"] = {"batch": 0}


def _licence_not_an_iri(config):
    config["export"]["licence"] = "CC BY 4.0"


def _folder_for_a_table(config):
    config["images"]["box_corrections"] = "config"
    config["taxonomy"]["fixes"] = "config"


def _empty_export_path(config):  # the delivery's export went unread, its photos no_record, exit 0
    config["batches"][0]["export"] = ""


def _empty_fixes_path(config):  # the shipped typo table left out
    config["taxonomy"]["fixes"] = ""


def _empty_classes_path(config):  # the per-class held-out scores dropped without a word
    config["train_detector"]["classes"] = ""


def _empty_version(config):  # a traceback in the release job, the last of the run
    config["export"]["version"] = " "


def _pattern_without_a_group(config):  # the text "(?P<processid>" in a character class: no group
    config["batches"][0]["image_name_pattern"] = "[(?P<processid>]"


def _day_and_month_swapped(config):  # sorted as text, the batch counted as the latest delivery
    config["batches"][0]["delivered"] = "2024-28-02"
    config["batches"][1]["delivered"] = "2024-05-03"


def _enlarge_as_a_percentage(config):  # 40 meant as 40 %: 38 s and 4.4 GB for 39 photos
    config["images"]["enlarge"] = 40


def _huge_hdf5_batch(config):  # the rows held at once: filled the disk
    config["export"]["hdf5_batch"] = 1_000_000_000


def _limits_that_refuse_everything(config):
    config["barcodes"]["min_length"] = 2500
    config["images"]["min_side"] = 800


CONFIG_FAULTS = {  # name -> (change, file to create, what the message must say)
    "unknown_key": (_unknown_key, None, ["image_name_patern"]),
    "wrong_type": (_wrong_type, None, ["'four' is not of type 'integer'"]),
    # found while the DAG is built, before any job: Snakemake names the rule and the file
    "missing_export": (
        _missing_export,
        None,
        ["MissingInputException in rule parse_export", "deliveries/d1.tsv"],
    ),
    "missing_tables": (
        _missing_tables,
        None,
        ["MissingInputException", "reports/corrections.tsv"],
    ),
    "regex": (_set_pattern, None, ["ingest.image_name_pattern: not a regular expression"]),
    "images_file": (_images_is_a_file, "photos.zip", ["batches: sample-a: images: photos.zip is a file"]),
    "export_folder": (_export_is_a_folder, None, ["batches: sample-a: export: config is a folder"]),
    "store_none": (_store_none, None, ["image_store.mode: none", "['images']", "use link or copy"]),
    # these two used to pass the dry run and fail in every photo / listing job
    "yolo_without_weights": (_yolo_without_weights, None, ["backend yolo needs weights", "sample-a"]),
    "fusion_weights_without_rule": (
        _fusion_weights_without_their_rule,
        None,
        ["backend fusion with weights of your own needs their rule", "images.detector.params.rule"],
    ),
    "batch_pattern": (_batch_pattern_without_processid, None, ["image_name_pattern", "does not match"]),
    "zips_without_images": (_zips_without_images, None, ["export.zip_packages", "add it to export.formats"]),
    # these four passed start-up and failed in a job (the licence in the last one), or silently flipped a switch
    "detector_param_typo": (_detector_param_typo, None, ["images.detector: backend fusion has no parameters"]),
    "detector_param_as_text": (_detector_param_as_text, None, ["mask_well: 'false' is not true or false"]),
    "detector_param_typed_by_annotation": (
        _detector_param_typed_by_annotation,
        None,
        ["imgsz: '320' is not a whole number", "threads: 1.5 is not a whole number"],
    ),
    # conf 25 (meant as 25 %) found nothing in any photo, every record lost as no_specimen; batch 0 crashed mid-run
    "detector_params_out_of_range": (
        _detector_params_out_of_range,
        None,
        ["conf: 25 is not from 0.0 to 1.0", "imgsz: -32 is not 32 or more", "batch: 0 is not 1 or more"],
    ),
    "licence_not_an_iri": (_licence_not_an_iri, None, ["'CC BY 4.0' does not match"]),
    "folder_for_a_table": (
        _folder_for_a_table,
        None,
        ["images.box_corrections: config is a folder, not a table file", "taxonomy.fixes: config is a folder"],
    ),
    # these passed start-up (reviewer config)
    "empty_export_path": (_empty_export_path, None, ["'' should be non-empty", "['batches'][0]['export']"]),
    "empty_fixes_path": (_empty_fixes_path, None, ["'' should be non-empty", "['taxonomy']['fixes']"]),
    "empty_classes_path": (_empty_classes_path, None, ["'' should be non-empty", "['train_detector']['classes']"]),
    "empty_version": (_empty_version, None, ["' ' does not match", "['export']['version']"]),
    "pattern_without_a_group": (
        _pattern_without_a_group,
        None,
        ["batches: sample-a: image_name_pattern: '[(?P<processid>]' has no (?P<processid>...) group"],
    ),
    "day_and_month_swapped": (_day_and_month_swapped, None, ["batches: sample-a: delivered '2024-28-02' is no date"]),
    "enlarge_as_a_percentage": (_enlarge_as_a_percentage, None, ["40 is greater than the maximum of 4"]),
    "huge_hdf5_batch": (_huge_hdf5_batch, None, ["1000000000 is greater than the maximum of 65536"]),
    # each refuses every record: the run went through ingest, images and curation and failed at its accounting
    "limits_refusing_everything": (
        _limits_that_refuse_everything,
        None,
        [
            "barcodes.min_length 2500 is above barcodes.max_length 2000: every barcode would be rejected",
            "images.min_side 800 is above the short side of images.original_full_size [1024, 768]",
        ],
    ),
}


def test_whole_numbers_written_as_floats_and_unquoted_dates_pass_start_up(tmp_path, sample_dir):
    """JSON Schema takes 4.0 as an integer and YAML an unquoted 2024-01-05 as a date: the first passed start-up
    and failed in range() and OpenCV, the second was refused although config/README.md documents it."""
    import datetime

    def change(config):
        config["shards"] = 2.0
        config["images"]["short_side"] = 256.0
        config["export"]["hdf5_batch"] = 1024.0
        config["batches"][0]["delivered"] = datetime.date(2024, 1, 5)
        config["batches"][1]["delivered"] = datetime.date(2024, 6, 20)

    workdir = _config_with(tmp_path, change)
    shutil.copytree(sample_dir, workdir / "resources" / "sample")
    assert "delivered: 2024-01-05\n" in (workdir / "config" / "config.yaml").read_text()  # unquoted
    result = run_snakemake(workdir, "--dry-run", check=False)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert "shard-001" in output and "shard-002" not in output  # two shards, from 2.0


@pytest.mark.parametrize("fault", CONFIG_FAULTS)
def test_config_problems_stop_the_run_at_start_up(tmp_path, fault):
    change, create, phrases = CONFIG_FAULTS[fault]
    workdir = _config_with(tmp_path, change)
    if create:
        (workdir / create).write_bytes(b"PK\x03\x04")
    result = run_snakemake(workdir, "--dry-run", check=False)
    output = result.stdout + result.stderr
    assert result.returncode != 0 and ("Building DAG" not in output or fault.startswith("missing_"))
    for phrase in phrases:
        assert phrase in output, output[-3000:]


def test_fusion_with_a_copy_of_the_shipped_model_needs_no_rule(tmp_path):
    """The start-up check refuses weights of one's own without their rule; the shipped model under another path
    is not one's own (its rule is the shipped one), so the plan goes on."""
    from bioscan_rebuild.detect.shipped import MODEL, shipped

    def copy_of_shipped(config):
        config["images"]["detector"]["backend"] = "fusion"
        config["images"]["detector"]["weights"] = "models/copy.onnx"

    workdir = _config_with(tmp_path, copy_of_shipped)
    (workdir / "models").mkdir()
    (workdir / "models" / "copy.onnx").write_bytes(shipped(MODEL).read_bytes())
    result = run_snakemake(workdir, "--dry-run", check=False)
    assert "needs their rule" not in result.stdout + result.stderr
    assert "Building DAG" in result.stdout + result.stderr


def _photo(path: Path, seed: int = 0) -> None:
    import numpy as np

    from bioscan_rebuild.core.pilsafe import encode_jpeg

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(encode_jpeg(np.random.default_rng(seed).integers(0, 255, (64, 80, 3), dtype=np.uint8)))


def test_links_and_names_in_an_image_folder(tmp_path):
    """Linked folders inside are walked (they used to be skipped silently); links out, to nothing or in a loop,
    pipes, and names that are not UTF-8, are rejected by name and counted (a loop of file links used to crash the
    listing; a pipe used to vanish from it)."""
    folder, elsewhere = tmp_path / "photos", tmp_path / "elsewhere"
    _photo(folder / "real" / "P1.jpg", 1)
    _photo(folder / "P2.jpg", 2)
    (folder / "linked").symlink_to(folder / "real", target_is_directory=True)  # inside: walked once
    (folder / "again").mkdir()
    (folder / "again" / "loop").symlink_to(folder, target_is_directory=True)  # a loop: each folder once
    _photo(elsewhere / "P3.jpg", 3)
    (folder / "P3.jpg").symlink_to(elsewhere / "P3.jpg")
    (folder / "outside").symlink_to(elsewhere, target_is_directory=True)
    (folder / "P4.jpg").symlink_to(folder / "missing.jpg")
    (folder / os.fsdecode(b"P5-\xff.jpg")).write_bytes(b"x")
    (folder / "P7.jpg").symlink_to(folder / "P8.jpg")  # two links pointing at each other
    (folder / "P8.jpg").symlink_to(folder / "P7.jpg")
    os.mkfifo(folder / "P9.jpg")  # never opened: reading a pipe would block the listing
    summary = list_to_shards(folder, "b", 1, tmp_path / "out", DEFAULT_NAME_PATTERN)
    listing = pq.read_table(tmp_path / "out" / "listing" / "shard-000.parquet").to_pylist()
    rejects = pq.read_table(tmp_path / "out" / "rejects.parquet").to_pylist()
    # each real folder once, under its first name in sorted order
    assert [row["image_path"] for row in listing] == ["P2.jpg", "linked/P1.jpg"]
    assert {(row["image_path"], row["reason"]) for row in rejects} == {
        ("P3.jpg", "link_outside"),
        ("outside", "link_outside"),
        ("P4.jpg", "broken_link"),
        ("P5-\\xff.jpg", "unreadable_name"),
        ("P7.jpg", "link_loop"),
        ("P8.jpg", "link_loop"),
        ("P9.jpg", "not_a_file"),
    }
    assert summary["files"] == 9 and summary["listed"] == 2
    assert summary["rejected"] == {
        "broken_link": 1,
        "link_loop": 2,
        "link_outside": 2,
        "not_a_file": 1,
        "unreadable_name": 1,
    }
    # a linked photo inside the folder goes into the store as the file itself, never as a link
    (folder / "P6.jpg").symlink_to(folder / "real" / "P1.jpg")
    listing, _ = list_images(folder, "b", 1)
    store = ImageStore(tmp_path / "store", "copy")
    table = inventory(listing, {"b": folder}, store)
    assert table.num_rows == 3 and table["image_problem"].null_count == 3
    stored = list((tmp_path / "store" / "original").rglob("*.jpg"))
    assert stored and not any(path.is_symlink() for path in stored)


def test_a_link_loop_is_a_loop_whatever_python_resolves_it_to(tmp_path, monkeypatch):
    """Python 3.13's lenient ``Path.resolve`` no longer raises on a loop of links: the loop was a ``broken_link``
    there and a ``link_loop`` on 3.11 (the reason depended on the interpreter)."""
    folder = tmp_path / "photos"
    _photo(folder / "P1.jpg")
    (folder / "P7.jpg").symlink_to(folder / "P8.jpg")
    (folder / "P8.jpg").symlink_to(folder / "P7.jpg")
    (folder / "P9.jpg").symlink_to(folder / "gone.jpg")
    lenient = Path.resolve

    def resolve_as_313(self, strict=False):
        if strict:
            return lenient(self, strict=True)
        try:
            return lenient(self)
        except RuntimeError:  # 3.13 gives back the path it reached
            return Path(os.path.abspath(self))

    monkeypatch.setattr(Path, "resolve", resolve_as_313)
    _, rejects = list_images(folder, "b", 1)
    assert sorted(zip(rejects["image_path"].to_pylist(), rejects["reason"].to_pylist())) == [
        ("P7.jpg", "link_loop"),
        ("P8.jpg", "link_loop"),
        ("P9.jpg", "broken_link"),
    ]


def test_a_photo_given_read_access_changes_its_folders_fingerprint(tmp_path, monkeypatch):
    """``chmod`` keeps a file's size and mtime: a photo made readable after a run that rejected it as
    ``unreadable_file`` was never listed again, and its record stayed ``image_rejected``."""
    import hashlib

    text = (REPO / "workflow" / "rules" / "common.smk").read_text()
    source = re.search(r"def folder_fingerprint\(.*?(?=\n\n\n)", text, re.S).group(0)
    namespace = {"hashlib": hashlib, "os": os, "images_of": lambda wildcards: str(tmp_path)}
    exec(source, namespace)
    fingerprint = namespace["folder_fingerprint"]
    _photo(tmp_path / "P1.jpg")
    _photo(tmp_path / "P2.jpg")
    (tmp_path / "P1.jpg").chmod(0o600)  # not readable by all: its access is checked
    asked = []

    def access(path, mode):  # the tests run as root, who reads anything: the owner's view is played here
        asked.append(os.path.basename(path))
        return not locked

    monkeypatch.setattr(os, "access", access)
    locked = False
    readable = fingerprint(None)
    locked = True
    assert fingerprint(None) != readable
    locked = False
    assert fingerprint(None) == readable
    assert set(asked) == {"P1.jpg"}  # a photo readable by all costs no access check


def test_an_images_path_that_is_not_a_folder_is_one_clear_line(tmp_path):
    (tmp_path / "photos.zip").write_bytes(b"PK\x03\x04")
    result = _run_cli("ingest", "list", "photos.zip", "--batch", "b", "--shards", "1", "--outdir", "o", cwd=tmp_path)
    assert (
        result.returncode == 2 and result.stderr.strip() == "bioscan-rebuild: error: photos.zip: not a folder of photos"
    )


def _v4_rows(realdata, processids: list[str], species: list[str] | None = None) -> bytes:
    """Real v4 rows with the given processids (and species_name values)."""
    lines = (realdata / REAL_V4).read_bytes().decode().replace("\r\n", "\n").split("\n")
    header = lines[0].split("\t")
    pid, sp = header.index("processid"), header.index("species_name")
    rows = []
    for i, processid in enumerate(processids):
        fields = lines[1 + i].split("\t")
        fields[pid] = processid
        if species:
            fields[sp] = species[i]
        rows.append("\t".join(fields))
    return ("\n".join([lines[0], *rows]) + "\n").encode()


def test_processids_are_trimmed_and_nfc_and_never_paths(realdata, tmp_path):
    decomposed, composed = "CAFE\u0301-1", "CAF\u00c9-1"
    ids = [" BSCN1-22 ", "\u00a0\u3000", "BSCN/../2", decomposed, "BSCN3-22"]
    (tmp_path / "e.tsv").write_bytes(_v4_rows(realdata, ids))
    for name in ("BSCN1-22", composed, "BSCN3-22"):
        _photo(tmp_path / "photos" / f"{name}.jpg", len(name))
    summary = ingest_local([tmp_path / "e.tsv"], [tmp_path / "photos"], tmp_path / "out", shards=1)
    kept = pq.read_table(tmp_path / "out" / "shards" / "shard-000" / "records.parquet")
    rejects = pq.read_table(tmp_path / "out" / "rejects.parquet").to_pylist()
    assert sorted(kept["processid"].to_pylist()) == ["BSCN1-22", "BSCN3-22", composed]
    assert kept["image_sha256"].null_count == 0  # each joined its photo, the decomposed one included
    reasons = {(row["reason"], row["source_line"]) for row in rejects if row["kind"] == "record"}
    assert reasons == {("missing_processid", 3), ("invalid_processid", 4)}
    assert summary["balanced"] is True


def test_a_processid_windows_cannot_name_a_file_by_is_refused(realdata, tmp_path):
    """The release names each record's images by its processid: ``AB:1-22``, ``CON`` or ``PRN|2?`` were released, and
    unzipping the release on Windows failed (or an NTFS colon wrote an alternate stream)."""
    ids = ["AB:1-22", "CON", "aux.1", "PRN|2?", "LPT9", "BSCN4.", "CONE-1", "COM10", "BSCN5-22"]
    records, rejects, _ = read_export_bytes(tmp_path, _v4_rows(realdata, ids))
    # a final dot is no problem (BSCN4..jpg), nor a device name inside a longer one
    assert sorted(records["processid"].to_pylist()) == ["BSCN4.", "BSCN5-22", "COM10", "CONE-1"]
    refused = {row["processid"]: row for row in rejects.to_pylist()}
    assert sorted(refused) == ["AB:1-22", "CON", "LPT9", "PRN|2?", "aux.1"]
    assert {row["reason"] for row in refused.values()} == {"invalid_processid"}
    assert "Windows cannot name a file by" in refused["CON"]["detail"]


def test_a_processid_the_maintainers_tables_read_as_a_comment_is_refused(realdata, tmp_path):
    """``#P6-21`` was released and offered for review, but every maintainer's table (label corrections, box
    answers) reads a line starting with ``#`` as a comment: the answer was never applied and left no outcome
    (reviewer boxrt)."""
    ids = ["#P6-21", '"#P7-21"', " #P8-21", "P#9-21", "BSCN5-22"]
    records, rejects, _ = read_export_bytes(tmp_path, _v4_rows(realdata, ids))
    assert sorted(records["processid"].to_pylist()) == ["BSCN5-22", "P#9-21"]
    refused = {row["processid"]: row for row in rejects.to_pylist()}
    assert sorted(refused) == ["#P6-21", "#P7-21", "#P8-21"]
    assert {row["reason"] for row in refused.values()} == {"invalid_processid"}
    assert "starts with #" in refused["#P6-21"]["detail"]


def test_a_processid_with_white_space_inside_is_refused(realdata, tmp_path):
    """``BSCN 9012-24`` was released; Biopython reads its FASTA header's id as ``BSCN`` (it splits at white space),
    and its image files were named with the space."""
    ids = ["BSCN 9012-24", "BSCN\u00a09013-24", "BSCN\t9014-24", " BSCN9015-24 ", "BSCN9016-24"]
    records, rejects, _ = read_export_bytes(tmp_path, _v4_rows(realdata, ids))
    assert sorted(records["processid"].to_pylist()) == ["BSCN9015-24", "BSCN9016-24"]
    refused = sorted(rejects.to_pylist(), key=lambda row: row["source_line"])
    assert [row["reason"] for row in refused] == ["invalid_processid", "invalid_processid", "unparseable_row"]
    assert refused[0]["processid"] == "BSCN 9012-24" and "white space inside the processid" in refused[0]["detail"]


def test_white_space_around_a_value_is_no_part_of_it(realdata, tmp_path):
    """A country ``None `` (a missing-value token with a space) was released as the country "None ", and a province
    ``Québec`` followed by a no-break space as a second province beside Québec."""
    lines = (realdata / REAL_V4).read_bytes().decode().replace("\r\n", "\n").split("\n")
    header = lines[0].split("\t")
    country, province = header.index("country"), header.index("province_state")
    rows = [line.split("\t") for line in lines[1:4]]
    rows[0][country], rows[0][province] = "None ", "Qu\u00e9bec\u00a0"
    rows[1][country], rows[1][province] = "\u2003Canada ", "Qu\u00e9bec"
    rows[2][country] = " None"
    data = ("\n".join([lines[0], *("\t".join(row) for row in rows)]) + "\n").encode()
    records, rejects, _ = read_export_bytes(tmp_path, data)
    assert rejects.num_rows == 0
    assert records["country"].to_pylist() == [None, "Canada", None]
    assert records["province_state"].to_pylist()[:2] == ["Qu\u00e9bec", "Qu\u00e9bec"]


def read_export_bytes(tmp_path, data: bytes):
    (tmp_path / "e.tsv").write_bytes(data)
    return read_export(tmp_path / "e.tsv", "b")


def test_a_control_character_in_a_field_rejects_its_line(realdata, tmp_path):
    export = tmp_path / "e.tsv"
    export.write_bytes(_v4_rows(realdata, ["P1", "P2"], species=["Coelioxys\x00 afra", "Coelioxys afra"]))
    records, rejects, _ = read_export(export, "b")
    assert records["processid"].to_pylist() == ["P2"]
    (reject,) = rejects.to_pylist()
    assert reject["reason"] == "unparseable_row" and reject["source_line"] == 2
    assert reject["detail"] == "control character U+0000 in column 'species_name'"


def test_damage_in_a_column_never_read_keeps_its_line(realdata, tmp_path):
    """A byte of another encoding or a NUL in a column the pipeline never reads (BOLD's notes, references) refused
    the whole line: an export saved as Windows-1252 lost 9% of its records to names in `identification_reference`.
    The same damage in a column that is read still refuses the line, naming that column, even after a damaged note."""
    data = _v4_rows(realdata, ["P1", "P2", "P3", "P4"])
    lines = data.split(b"\n")
    header = lines[0].split(b"\t")
    note, reference, species = (header.index(name) for name in (b"notes", b"catalognum", b"species_name"))

    def damaged(line: bytes, changes: dict) -> bytes:
        fields = line.split(b"\t")
        for position, value in changes.items():
            fields[position] = value
        return b"\t".join(fields)

    lines[1] = damaged(lines[1], {note: "Gr\u00f6\u00dfe".encode("cp1252")})
    lines[2] = damaged(lines[2], {reference: b"CAT\x00-1"})
    lines[3] = damaged(lines[3], {note: b"\xf6", species: "Coelioxys \u00e9legans".encode("latin-1")})
    lines[4] = damaged(lines[4], {reference: b"\x00", species: b"Coelioxys\x00afra"})
    lines.insert(5, damaged(lines[4].replace(b"P4", b"P5"), {reference: b"caf\xe9", species: b"Coelioxys\x00afra"}))
    (tmp_path / "e.tsv").write_bytes(b"\n".join(lines))
    records, rejects, _ = read_export(tmp_path / "e.tsv", "b")
    assert records["processid"].to_pylist() == ["P1", "P2"]
    assert rejects["source_line"].to_pylist() == [4, 5, 6]
    assert rejects["detail"].to_pylist() == [
        "not valid UTF-8: byte 0xE9 in column 'species_name' (a line saved as Latin-1 or Windows-1252? save the "
        "export as UTF-8)",
        "control character U+0000 in column 'species_name'",
        "control character U+0000 in column 'species_name'",  # not the byte in the unread column before it
    ]


def test_coordinates_out_of_range_are_blanked_and_counted(realdata, tmp_path):
    lines = (realdata / REAL_V4).read_bytes().decode().replace("\r\n", "\n").split("\n")
    header = lines[0].split("\t")
    lat, lon, pid = header.index("lat"), header.index("lon"), header.index("processid")
    rows = []
    for i, (la, lo) in enumerate([("95", "10"), ("45", "-500"), ("-33.5", "151.2"), ("90", "-180")]):
        fields = lines[1 + i].split("\t")
        fields[pid], fields[lat], fields[lon] = f"P{i}", la, lo
        rows.append("\t".join(fields))
    (tmp_path / "e.tsv").write_text("\n".join([lines[0], *rows]) + "\n")
    summary = parse_to_shards(tmp_path / "e.tsv", "b", 1, tmp_path / "out")
    table = pq.read_table(tmp_path / "out" / "records" / "shard-000.parquet").sort_by("processid")
    assert table["lat"].to_pylist() == [None, None, -33.5, 90.0]
    assert table["lon"].to_pylist() == [None, None, 151.2, -180.0]
    assert table["coord_raw"].to_pylist() == ["95; 10", "45; -500", "-33.5; 151.2", "90; -180"]  # what the export said
    assert summary["coordinates_out_of_range"] == 2 and summary["records"] == 4


def _release_inputs(workdir: Path) -> dict:
    """What the release rule passes build_release, from a finished run."""
    results = workdir / "results"
    return {
        "curated": results / "metadata" / "curated.parquet",
        "barcodes": sorted((results / "metadata" / "barcodes").glob("*.parquet")),
        "splits": results / "splits" / "splits.parquet",
        "split_summary": results / "splits" / "summary.csv",
        "records": sorted((results / "ingest" / "shards").glob("*/records.parquet")),
        "images": sorted((results / "images").glob("shard-*/images.parquet")),
        "bbox": sorted((results / "images").glob("shard-*/bbox.tsv")),
        "rejects": [
            results / "ingest" / "rejects.parquet",
            results / "metadata" / "rejects.parquet",
            results / "splits" / "excluded.parquet",
        ],
        "changes": results / "metadata" / "changes.parquet",
        "corrections": results / "metadata" / "corrections.tsv",
        "box_corrections": results / "images" / "box_corrections.tsv",
        "fasta": results / "metadata" / "barcodes.fasta",
        "accounting": results / "accounting.json",
        "provenance_file": results / "provenance" / "provenance.jsonld",
        "config_file": results / "provenance" / "config.json",
        "stats": results / "stats",
        "store": results / "store",
    }


@pytest.mark.slow
def test_the_release_is_atomic_readable_and_survives_kill_9(sample_dir, tmp_path, monkeypatch):
    import bioscan_rebuild.export.release as release_module
    from bioscan_rebuild.core.errors import InputError
    from bioscan_rebuild.export.release import build_release

    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "config.yaml").write_text((REPO / "config" / "config.yaml").read_text())
    shutil.copytree(sample_dir, tmp_path / "resources" / "sample")
    run_snakemake(tmp_path)
    release = tmp_path / "results" / "release"
    manifest = (release / "MANIFEST.json").read_bytes()

    # a failure half-way: the finished release stays as it was, nothing is left beside it
    def failing(names):
        (chosen,) = [f for f in release_module.FORMATS.values() if f.name == "csv"]
        broken = dataclasses.replace(chosen, write=lambda context: 1 / 0)
        return [broken]

    monkeypatch.setattr(release_module, "select", failing)
    receipt = tmp_path / "results" / "release.json"
    receipt_bytes = receipt.read_bytes()
    with pytest.raises(ZeroDivisionError):
        build_release(**_release_inputs(tmp_path), outdir=release, receipt=receipt)
    assert (release / "MANIFEST.json").read_bytes() == manifest and receipt.read_bytes() == receipt_bytes
    assert [p.name for p in release.parent.iterdir() if p.name.startswith(".release")] == [".release.lock"]
    monkeypatch.undo()
    # a receipt inside the release would be swept away by the next release: refused before any work
    with pytest.raises(InputError, match="the receipt would lie in --outdir"):
        build_release(**_release_inputs(tmp_path), outdir=release, receipt=release / "receipt.json")
    assert (release / "MANIFEST.json").read_bytes() == manifest

    # what a killed run leaves is cleared; whatever the umask, files are 0644 and folders 0755
    (release.parent / ".release.building" / "bioscan5m").mkdir(parents=True)
    (release.parent / ".release.building" / "half-written.h5").write_bytes(b"\x89HDF")
    previous = os.umask(0o077)
    try:
        build_release(**_release_inputs(tmp_path), outdir=release)
    finally:
        os.umask(previous)
    assert (release / "MANIFEST.json").read_bytes() == manifest
    assert [p.name for p in release.parent.iterdir() if p.name.startswith(".release")] == [".release.lock"]
    modes = {(p.is_dir(), p.stat().st_mode & 0o777) for p in [release, *release.rglob("*")]}
    assert modes == {(True, 0o755), (False, 0o644)}, modes

    # kill -9 while the release command writes: the finished release is untouched, a rerun is the same bytes
    inputs = _release_inputs(tmp_path)
    args = ["release", "--outdir", str(release)]
    for key, value in inputs.items():
        flag = "--" + key.replace("_", "-")
        args += [flag, *map(str, value)] if isinstance(value, list) else [flag, str(value)]
    env = {**os.environ, "PYTHONPATH": str(REPO / "workflow")}
    job = subprocess.Popen([sys.executable, "-m", "bioscan_rebuild", *args], env=env, stdout=subprocess.DEVNULL)
    building = release.parent / ".release.building"
    deadline = time.monotonic() + 120
    while not any(building.rglob("*.parquet")) and job.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert job.poll() is None, "the release step ended before it could be killed"
    job.send_signal(signal.SIGKILL)
    job.wait()
    assert building.exists() and (release / "MANIFEST.json").read_bytes() == manifest
    result = subprocess.run([sys.executable, "-m", "bioscan_rebuild", *args], env=env, capture_output=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert not building.exists() and (release / "MANIFEST.json").read_bytes() == manifest

    # a full disk: one line, exit 1, no partial release and nothing left beside it; with room, the same bytes
    disk = SmallDisk(tmp_path / "small", size=8 << 20, file_limit=1 << 20)
    try:
        small_args = [*args[:2], str(disk.folder / "release"), *args[3:]]
        command = [sys.executable, "-m", "bioscan_rebuild", *small_args]
        result = subprocess.run(command, env=env, capture_output=True, text=True, preexec_fn=disk.preexec())
        assert result.returncode == 1 and len(result.stderr.strip().splitlines()) == 1, result.stderr[-2000:]
        assert "out of disk space" in result.stderr and "needs room for a second copy" in result.stderr
        assert [p.name for p in disk.folder.iterdir()] == [".release.lock"]  # the writers' lock, nothing else
        disk.grow()
        result = subprocess.run(command, env=env, capture_output=True, text=True, preexec_fn=disk.preexec())
        assert result.returncode == 0, result.stderr[-2000:]
        assert (disk.folder / "release" / "MANIFEST.json").read_bytes() == manifest
        assert sorted(p.name for p in disk.folder.iterdir()) == [".release.lock", "release"]
    finally:
        disk.close()


SPLIT_INPUT_FAULTS = {  # file bytes -> what the one line says
    "empty": (b"", "empty file: not a metadata CSV"),
    "binary": (b"\x1f\x8b\x08\x00" + bytes(range(256)), "binary data (NUL bytes)"),
    "no_columns": (b"processid,genus\nP1,Aus\n", "missing columns ['species', 'dna_barcode']"),
    "not_utf8": (b"processid,genus,species,dna_barcode\nP1,\xe9\xff\xfe,,ACGT\n", "not a metadata CSV"),
}


@pytest.mark.parametrize("fault", SPLIT_INPUT_FAULTS)
def test_the_split_command_on_a_file_that_is_not_a_metadata_csv(tmp_path, fault):
    data, phrase = SPLIT_INPUT_FAULTS[fault]
    (tmp_path / "in.csv").write_bytes(data)
    result = _run_cli("split", "in.csv", "out.csv", cwd=tmp_path)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert lines[0].startswith("bioscan-rebuild: error: in.csv: ") and phrase in lines[0], lines[0]
    assert not (tmp_path / "out.csv").exists()


def _metadata_csv(rows: int) -> bytes:
    barcodes = np.array(list("ACGT"))[np.random.default_rng(0).integers(0, 4, (rows, 40))].view("<U40").ravel()
    lines = ["processid,genus,species,dna_barcode"] + [
        f"P{i},Aus,Aus b{i % 50},{barcode}" for i, barcode in enumerate(barcodes)
    ]
    return ("\n".join(lines) + "\n").encode()


@functools.cache
def _compressed_faults() -> dict:
    import gzip

    whole = gzip.compress(_metadata_csv(150_000), mtime=0)  # 9 MB: past the first 4 MB block
    return {  # name -> (file name, bytes, given as the --freeze file?)
        "gzip_cut_at_its_head": ("in.csv.gz", whole[:300], False),
        "gzip_cut_deep_inside": ("in.csv.gz", whole[: len(whole) * 4 // 5], False),
        "zip_that_is_none": ("in.csv.zip", b"PK\x03\x04" + bytes(200), False),
        "gzip_named_bz2": ("in.csv.bz2", whole, False),
        "freeze_gzip_cut_short": ("old.csv.gz", whole[: len(whole) // 2], True),
    }


@pytest.mark.parametrize(
    "fault",
    ["gzip_cut_at_its_head", "gzip_cut_deep_inside", "zip_that_is_none", "gzip_named_bz2", "freeze_gzip_cut_short"],
)
def test_a_cut_short_or_corrupt_compressed_split_input_is_one_line(tmp_path, fault):
    """A download cut short or a file with the wrong suffix ended in an OSError / EOFError / BadZipFile traceback
    naming no file."""
    name, data, is_freeze = _compressed_faults()[fault]
    (tmp_path / name).write_bytes(data)
    args = ["split", "in.csv", "out.csv", "--freeze", name] if is_freeze else ["split", name, "out.csv"]
    if is_freeze:
        (tmp_path / "in.csv").write_bytes(_metadata_csv(10))
    result = _run_cli(*args, cwd=tmp_path)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert lines[0].startswith(f"bioscan-rebuild: error: {name}: ") and "cut short or corrupt" in lines[0], lines[0]
    assert not (tmp_path / "out.csv").exists()


def test_a_freeze_without_its_columns_is_one_clear_line(tmp_path):
    (tmp_path / "in.csv").write_text("processid,genus,species,dna_barcode\nP1,Aus,Aus bus,ACGT\n")
    (tmp_path / "old.csv").write_text("processid,partition\nP1,train\n")
    result = _run_cli("split", "in.csv", "out.csv", "--freeze", "old.csv", cwd=tmp_path)
    assert result.returncode == 2
    assert "old.csv: missing columns ['split']: a freeze table needs processid and split" in result.stderr
    # a processid frozen twice used to end in a traceback naming neither the file nor the record
    (tmp_path / "old.csv").write_text("processid,split\nP1,train\nP2,test\nP1,test\n")
    result = _run_cli("split", "in.csv", "out.csv", "--freeze", "old.csv", cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "old.csv: 1 processid(s) appear more than once: 'P1'; keep one row each" in result.stderr


def test_records_outside_the_taxonomic_scope_are_rejected_and_listed(realdata, tmp_path):
    """An insect dataset takes no mammals: phylum Chordata rows of a BOLD export leave as out_of_scope."""
    source = realdata / "bold-library-curation/resources/test_data/test_odonata_small.tsv"
    lines = source.read_text().replace("\r\n", "\n").split("\n")
    header = lines[0].split("\t")
    phylum, pid = header.index("phylum"), header.index("processid")
    rows, moved = [], []
    for i, line in enumerate(lines[1:]):
        fields = line.split("\t")
        if len(fields) == len(header) and i % 7 == 0:
            fields[phylum] = "Chordata"
            moved.append(fields[pid])
        rows.append("\t".join(fields))
    (tmp_path / "e.tsv").write_text("\n".join([lines[0], *rows]))
    result = _run_cli("metadata", "e.tsv", "-o", "meta.csv", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    table = pd.read_csv(tmp_path / "meta.csv", dtype=str, keep_default_na=False)
    rejects = pd.read_csv(tmp_path / "meta.rejects.csv", dtype=str, keep_default_na=False)
    changes = pd.read_csv(tmp_path / "meta.changes.csv", dtype=str, keep_default_na=False)
    scoped = rejects[rejects["reason"] == "out_of_scope"]
    assert len(scoped) >= 3 and set(scoped["processid"]) <= set(moved)
    assert (scoped["detail"] == "phylum Chordata: outside the dataset's scope").all()
    assert set(changes.loc[changes["rule"] == "out_of_scope", "processid"]) == set(scoped["processid"])
    # what stays is in scope: a changed row whose record stayed got its phylum back by a barcode/BIN majority
    # (logged), or was not its record's COI-5P row (BCDM 2024 has a row per marker)
    assert set(table["phylum"]) <= {"Arthropoda", ""}


def test_bom_with_crlf_and_a_very_long_line(realdata, tmp_path):
    """A UTF-8 BOM and CRLF together read as plain LF; a line of megabytes is one reject with a short preview."""
    original = (realdata / REAL_V4).read_bytes().replace(b"\r\n", b"\n")
    lines = original.split(b"\n")
    long_line = b"X" * (3 << 20)
    data = b"\xef\xbb\xbf" + b"\r\n".join([lines[0], lines[1], long_line, *lines[2:]])
    (tmp_path / "lf.tsv").write_bytes(original)
    (tmp_path / "odd.tsv").write_bytes(data)
    expected, expected_rejects, _ = read_export(tmp_path / "lf.tsv", "b")
    got, rejects, _ = read_export(tmp_path / "odd.tsv", "b", block_bytes=1 << 20)
    assert got["processid"].to_pylist() == expected["processid"].to_pylist()
    # the long line is physical line 3, so the rows after it sit one line further down
    assert got["source_line"].to_pylist() == [2, *(n + 1 for n in expected["source_line"].to_pylist()[1:])]
    (reject,) = [row for row in rejects.to_pylist() if row["reason"] == "unparseable_row"]
    assert reject["source_line"] == 3 and len(reject["raw"]) == 2000
    assert rejects.num_rows == expected_rejects.num_rows + 1


CORRUPT_SCAN_PHOTO = "BSCN1000-21.1024px.jpg"  # a sample record's photo, damaged in place


def _plant_bad_inputs(project: Path, outside: Path) -> None:
    """The sample plus the catalogue's bad inputs: photos and links in sample-a's folder, damaged export rows."""
    images = project / "resources" / "sample" / "sample-a" / "images"
    (images / "NOTANIMAGE-1.jpg").write_bytes(NOT_AN_IMAGE)
    damaged = images / CORRUPT_SCAN_PHOTO
    damaged.write_bytes(_corrupt_scan_data(damaged.read_bytes()))
    (images / "ELSEWHERE-1.jpg").symlink_to(outside / "photo.jpg")
    (images / "GONE-1.jpg").symlink_to(images / "never-there.jpg")
    export = project / "resources" / "sample" / "sample-a" / "bold_export.tsv"
    lines = export.read_text().split("\n")
    fields = lines[1].split("\t")
    header = lines[0].split("\t")
    nul = list(fields)
    nul[header.index("processid")], nul[header.index("species")] = "NUL-1", "Aus\x00bus"
    space = list(fields)
    space[header.index("processid")] = "  "
    export.write_text("\r".join([*[line for line in lines if line], "\t".join(nul), "\t".join(space)]) + "\r")


@pytest.mark.slow
def test_runs_with_bad_inputs_are_byte_identical_in_two_places(sample_dir, tmp_path):
    outside = tmp_path / "outside"
    _photo(outside / "photo.jpg", 7)
    runs = []
    for name in ("first", "second"):
        project = tmp_path / name / "project"
        (project / "config").mkdir(parents=True)
        (project / "config" / "config.yaml").write_text((REPO / "config" / "config.yaml").read_text())
        shutil.copytree(sample_dir, project / "resources" / "sample")
        _plant_bad_inputs(project, outside)
        run_snakemake(project)
        runs.append(project / "results")
    files = sorted(p.relative_to(runs[0]) for p in runs[0].rglob("*") if p.is_file() and "store" not in p.parts)
    assert len(files) > 900
    for rel in files:
        assert (runs[0] / rel).read_bytes() == (runs[1] / rel).read_bytes(), rel
    rejects = pd.read_csv(runs[0] / "release" / "bioscan5m" / "metadata" / "rejects.csv", dtype=str)
    planted = {
        ("NOTANIMAGE-1.jpg", "undecodable"),
        ("ELSEWHERE-1.jpg", "link_outside"),
        ("GONE-1.jpg", "broken_link"),
    }
    assert planted <= set(zip(rejects["image_path"], rejects["reason"]))
    assert {"unparseable_row", "missing_processid"} <= set(rejects["reason"])
    (damaged,) = rejects[rejects["processid"] == "BSCN1000-21"].itertuples()
    assert damaged.reason == "image_unusable" and "undecodable: ValueError: Corrupt JPEG data" in damaged.detail
    accounting = json.loads((runs[0] / "accounting.json").read_text())
    assert accounting["balanced"] is True


def test_an_invalid_name_pattern_on_the_command_line_is_one_clear_line(tmp_path):
    (tmp_path / "photos").mkdir()
    listing = ("ingest", "list", "photos", "--batch", "b", "--shards", "1", "--outdir", "o")
    result = _run_cli(*listing, "--name-pattern", "^(?P<processid>[A-Z+)", cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "not a regular expression" in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_an_export_that_changes_while_read_is_one_clear_line_and_leaves_no_shards(realdata, tmp_path, monkeypatch):
    """A delivery still being copied in: the rows and the recorded sha256 would describe different files."""
    import bioscan_rebuild.ingest.parse as parse_module
    from bioscan_rebuild.core.errors import InputError

    export = tmp_path / "e.tsv"
    export.write_bytes((realdata / REAL_V4).read_bytes())
    real_parse = parse_module.parse_export

    def appending(*args, **kwargs):  # another process appends a line after the first block was read
        for n, block in enumerate(real_parse(*args, **{**kwargs, "block_bytes": 4096})):
            if n == 0:
                with open(export, "ab") as handle:
                    handle.write(export.read_bytes().split(b"\n")[1] + b"\n")
            yield block

    monkeypatch.setattr(parse_module, "parse_export", appending)
    with pytest.raises(InputError, match="e.tsv: the file changed while it was read .*run again once it is complete"):
        parse_to_shards(export, "b", 2, tmp_path / "out")
    assert [p.name for p in (tmp_path / "out").rglob("*") if p.is_file()] == []  # no shard looks finished


def test_a_photo_that_changes_while_read_is_rejected_for_it(tmp_path, monkeypatch):
    """The bytes read are not the file that is there: not hashed, stored or released as if they were."""
    import pathlib

    folder = tmp_path / "photos"
    for name in ("GROWING-1", "STEADY-1"):
        _photo(folder / f"{name}.jpg", len(name))
    real_read = pathlib.Path.read_bytes

    def read_while_written(path):
        data = real_read(path)
        if path.name.startswith("GROWING"):
            with open(path, "ab") as handle:
                handle.write(b"\0" * 100)
        return data

    listing, _ = list_images(folder, "b", 1)
    store = ImageStore(tmp_path / "store", "copy")
    monkeypatch.setattr(pathlib.Path, "read_bytes", read_while_written)
    table = inventory(listing, {"b": folder}, store).to_pylist()
    monkeypatch.undo()
    by_id = {row["processid"]: row for row in table}
    assert by_id["GROWING-1"]["image_problem"] == "changed_while_read"
    assert by_id["GROWING-1"]["image_problem_detail"].endswith(
        "read, " + str((folder / "GROWING-1.jpg").stat().st_size) + " after"
    )
    assert by_id["STEADY-1"]["image_problem"] is None
    stored = [p for p in (tmp_path / "store").rglob("*") if p.is_file()]
    assert [p.stem for p in stored] == [by_id["STEADY-1"]["image_sha256"]]


def test_the_store_holds_the_bytes_it_hashed_even_when_the_file_changes_after(tmp_path):
    source = tmp_path / "photo.jpg"
    _photo(source)
    data = source.read_bytes()
    facts = inspect_image(data)
    source.write_bytes(data + b"changed")  # after the read, before the store links or copies it
    for mode in ("link", "copy"):
        store = ImageStore(tmp_path / mode, mode)
        stored = store.put_original(source, facts["image_sha256"], "jpeg", data=data)
        assert stored.read_bytes() == data and stored.stat().st_ino != source.stat().st_ino
        store.close()
        assert not (tmp_path / mode / ".scratch").exists()


def _other_device(tmp_path: Path) -> Path:
    """A folder on another file system than tmp_path: /dev/shm where it is one, else a tmpfs mounted here."""
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK) and shm.stat().st_dev != tmp_path.stat().st_dev:
        folder = Path(__import__("tempfile").mkdtemp(dir=shm))
        return folder
    folder = tmp_path / "mnt"
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(folder)], capture_output=True)
    if mounted.returncode != 0:
        pytest.fail("no second file system here (no /dev/shm and tmpfs cannot be mounted)")
    return folder


def test_a_photo_folder_on_another_device_is_copied_into_the_store(tmp_path):
    """Hard links cannot cross file systems: the store falls back to a copy, and counts stay whole."""
    photos = _other_device(tmp_path)
    try:
        for name in ("BSCN1-22", "BSCN2-22"):
            _photo(photos / "sub" / f"{name}.jpg", len(name))
        listing, rejects = list_images(photos, "b", 1)
        assert listing.num_rows == 2 and rejects.num_rows == 0
        store = ImageStore(tmp_path / "store", "link", job="inventory/x")
        table = inventory(listing, {"b": photos}, store)
        store.close()
        for row in table.to_pylist():
            stored = store.original_path(row["image_sha256"], "jpeg")
            assert stored.read_bytes() == (photos / row["image_path"]).read_bytes()
            assert stored.stat().st_dev != (photos / row["image_path"]).stat().st_dev
        assert not (tmp_path / "store" / ".scratch").exists()
    finally:
        shutil.rmtree(photos, ignore_errors=True)
        subprocess.run(["umount", str(photos)], capture_output=True)


def test_processids_that_differ_only_by_case_are_one_record(realdata, tmp_path):
    """BSCN1-22 and bscn1-22 would name the same files on a case-insensitive file system: they are one processid
    (its duplicates resolved as any others, the detail saying why), and a photo named in either case joins it."""
    header = (realdata / REAL_V4).read_text().split("\n")[0].split("\t")
    first_species = (realdata / REAL_V4).read_text().split("\n")[1].split("\t")[header.index("species_name")]
    (tmp_path / "a.tsv").write_bytes(_v4_rows(realdata, ["BSCN1-22", "BSCN2-22"]))
    (tmp_path / "b.tsv").write_bytes(_v4_rows(realdata, ["bscn1-22", "bscn2-22"], species=[first_species, "Other"]))
    _photo(tmp_path / "photos" / "bscn1-22.jpg", 1)
    _photo(tmp_path / "photos" / "BSCN2-22.jpg", 2)
    summary = ingest_local([tmp_path / "a.tsv", tmp_path / "b.tsv"], [tmp_path / "photos"], tmp_path / "out", shards=4)
    kept = [
        row
        for path in sorted((tmp_path / "out").glob("shards/*/records.parquet"))
        for row in pq.read_table(path).to_pylist()
    ]
    # same content: the first delivery's row stays; new content: the later delivery's content wins (policy latest),
    # under the first delivery's spelling (it took the later spelling: a released record renamed)
    assert sorted((row["processid"], row["image_path"], row["species"]) for row in kept) == [
        ("BSCN1-22", "bscn1-22.jpg", first_species),
        ("BSCN2-22", "BSCN2-22.jpg", "Other"),
    ]
    rejects = pq.read_table(tmp_path / "out" / "rejects.parquet").to_pylist()
    outcomes = sorted((r["kind"], r["processid"], r["reason"]) for r in rejects)
    assert outcomes == [("record", "BSCN2-22", "superseded"), ("record", "bscn1-22", "duplicate_record")]
    assert all(r["detail"].endswith("(its processid differs only by case)") for r in rejects if r["kind"] == "record")
    assert summary["balanced"] is True


def test_a_photo_of_a_record_the_parse_rejected_says_so(realdata, tmp_path):
    """A photo whose record was rejected while the export was parsed (another marker, a path in its processid) is
    ``record_rejected``; it used to read ``no_record`` ("no record has this processid"), as if the export lacked
    it. So is the photo of a line too damaged to parse whose processid field still reads as one (a line cut short,
    a stray byte in a later column); that line's reject names the processid. A photo of a processid no export
    names stays ``no_record``, and prose in the processid field of a damaged line names nothing."""
    export = _v4_rows(realdata, ["BSCN1-22", "BSCN2-22", "BSCN3-22", "BSCN4-22"]).decode().split("\n")
    header = export[0].split("\t")
    fields = export[2].split("\t")
    fields[header.index("markercode")] = "28S"
    export[2] = "\t".join(fields)
    export[4] = "\t".join(export[4].split("\t")[:5])  # BSCN4-22's line cut short
    export.append("a tail of a note\tthat broke\tthe line")
    (tmp_path / "e.tsv").write_text("\n".join(export))
    for i, name in enumerate(["BSCN1-22", "bscn2-22", "BSCN9-22", "BSCN4-22"]):
        _photo(tmp_path / "photos" / f"{name}.jpg", i)
    summary = ingest_local([tmp_path / "e.tsv"], [tmp_path / "photos"], tmp_path / "out", shards=4)
    rejects = pq.read_table(tmp_path / "out" / "rejects.parquet").to_pylist()
    outcomes = sorted((r["kind"], r["processid"] or "", r["reason"]) for r in rejects)
    assert outcomes == [
        ("image", "BSCN4-22", "record_rejected"),
        ("image", "BSCN9-22", "no_record"),
        ("image", "bscn2-22", "record_rejected"),
        ("record", "", "unparseable_row"),
        ("record", "BSCN2-22", "unsupported_marker"),
        ("record", "BSCN3-22", "no_image"),
        ("record", "BSCN4-22", "unparseable_row"),
    ]
    assert summary["balanced"] is True


def test_a_damaged_line_of_a_quoted_export_names_its_processid_without_quotes(realdata, tmp_path):
    """In an export R's write.table saved (every cell quoted), a damaged line's reject named "BSCN2-22" with its
    quotes, so its photo read ``no_record`` and an audit of BSCN2-22 found nothing."""
    export = _v4_rows(realdata, ["BSCN1-22", "BSCN2-22"]).decode().split("\n")
    export = ["\t".join(f'"{cell}"' for cell in line.split("\t")) if line else line for line in export]
    export[2] = "\t".join(export[2].split("\t")[:5])  # BSCN2-22's line cut short
    (tmp_path / "e.tsv").write_text("\n".join(export))
    for i, name in enumerate(["BSCN1-22", "BSCN2-22"]):
        _photo(tmp_path / "photos" / f"{name}.jpg", i)
    ingest_local([tmp_path / "e.tsv"], [tmp_path / "photos"], tmp_path / "out", shards=1)
    rejects = pq.read_table(tmp_path / "out" / "rejects.parquet").to_pylist()
    assert sorted((r["kind"], r["processid"], r["reason"]) for r in rejects) == [
        ("image", "BSCN2-22", "record_rejected"),
        ("record", "BSCN2-22", "unparseable_row"),
    ]


@pytest.fixture
def shared_tmp():
    """A folder another user can enter (pytest's own are 0700 to root)."""
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix="bioscan-perm-"))
    folder.chmod(0o755)
    yield folder
    for path in [folder, *folder.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    shutil.rmtree(folder)


def _as_unprivileged(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """The command line as a user that file modes apply to: root reads everything, so root runs it as nobody."""
    prefix = []
    if os.geteuid() == 0:
        prefix = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    env = {"PYTHONPATH": str(REPO / "workflow"), "HOME": str(cwd)}
    command = [*prefix, sys.executable, "-m", "bioscan_rebuild", *args]
    return subprocess.run(command, capture_output=True, text=True, env=env, cwd=cwd)


def test_permission_denied_photos_folders_and_exports(realdata, shared_tmp):
    """An unreadable photo is a per-record reject; a folder whose photos cannot even be listed, or an export that
    cannot be read, stops the run in one line that says what to do."""
    work = shared_tmp
    (work / "e.tsv").write_bytes(_v4_rows(realdata, ["BSCN1-22", "BSCN2-22"]))
    for name in ("BSCN1-22", "BSCN2-22"):
        _photo(work / "photos" / f"{name}.jpg", len(name))
    (work / "out").mkdir()
    for path in [work, *work.rglob("*")]:
        path.chmod(0o777 if path.is_dir() else 0o644)
    (work / "photos" / "BSCN2-22.jpg").chmod(0o000)
    run = ("ingest", "run", "--export", "e.tsv", "--images", "photos", "-o", "out")
    result = _as_unprivileged(*run, cwd=work)
    assert result.returncode == 0, result.stderr[-2000:]
    rejects = pq.read_table(work / "out" / "rejects.parquet").to_pylist()
    assert sorted((r["kind"], r["processid"], r["reason"], r["detail"]) for r in rejects) == [
        ("image", "BSCN2-22", "unreadable_file", "Permission denied"),
        ("record", "BSCN2-22", "image_rejected", "images rejected: unreadable_file"),
    ]

    (work / "photos" / "locked").mkdir()
    (work / "photos" / "locked").chmod(0o000)
    result = _as_unprivileged(*run, cwd=work)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip() == (
        "bioscan-rebuild: error: photos/locked: cannot list this folder (Permission denied): give read access to it, "
        "or move it out of the image folder"
    )

    (work / "photos" / "locked").chmod(0o755)
    (work / "e.tsv").chmod(0o000)
    result = _as_unprivileged(*run, cwd=work)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip() == (
        "bioscan-rebuild: error: e.tsv: Permission denied: give this user access to it, then run again"
    )


class SmallDisk:
    """A folder with little room: a tmpfs of ``size`` bytes where mounting is allowed, else a limit of
    ``file_limit`` bytes per file on the process that writes there (RLIMIT_FSIZE, with SIGXFSZ ignored so a
    write fails as on a full disk)."""

    def __init__(self, folder: Path, size: int, file_limit: int):
        self.folder, self.size, self.file_limit = folder, size, file_limit
        folder.mkdir(parents=True)
        mount = ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)]
        self.mounted = subprocess.run(mount, capture_output=True).returncode == 0
        self.limited = not self.mounted

    def preexec(self):
        if not self.limited:
            return None

        def limit():
            import resource

            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            resource.setrlimit(resource.RLIMIT_FSIZE, (self.file_limit, self.file_limit))

        return limit

    def grow(self) -> None:
        """Room again (what a person does after the error)."""
        if self.mounted:
            subprocess.run(["mount", "-o", "remount,size=512m", str(self.folder)], check=True)
        self.limited = False

    def close(self) -> None:
        if self.mounted:
            subprocess.run(["umount", str(self.folder)], capture_output=True)


def _leftovers(*folders: Path) -> list[str]:
    """Temporary files and scratch folders: what a killed or failed run must not leave after its rerun."""
    return sorted(
        str(p) for folder in folders for p in folder.rglob("*") if p.name.endswith(".tmp") or p.name == ".scratch"
    )


def _without_file_times(path: Path) -> bytes:
    """A store file's bytes; a photo's result without the size and time it records of each JPEG, which differ from
    run to run (the file system's clock), and the seal over them (checked when the result is loaded)."""
    if not path.name.endswith(".json") or path.name.endswith(".detection.json"):
        return path.read_bytes()
    facts = json.loads(path.read_bytes())
    facts.pop("_sha256", None)
    files = facts.pop("files", {})
    return json.dumps({**facts, "files": sorted(files)}, sort_keys=True).encode()


@pytest.mark.slow
def test_the_image_stage_survives_kill_9_and_a_full_disk(sample_dir, tmp_path):
    """Killed mid-shard, or out of space: nothing half-written under a final name, no orphan temporary files
    after the rerun, and the rerun gives the bytes of an uninterrupted run."""
    from bioscan_rebuild.core.store import SCRATCH, job_name

    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "config.yaml").write_text((REPO / "config" / "config.yaml").read_text())
    shutil.copytree(sample_dir, tmp_path / "resources" / "sample")
    run_snakemake(tmp_path, "--until", "ingest_accounting")
    # the heavy image job: one batch's photos of a shard (detect, crop, write the store)
    inventory = tmp_path / "results" / "ingest" / "images" / "sample-a" / "inventory" / "shard-000.parquet"
    folder = f"--image-dir=sample-a={tmp_path / 'resources' / 'sample' / 'sample-a' / 'images'}"
    env = {**os.environ, "PYTHONPATH": str(REPO / "workflow")}

    def shard(name: str, store: Path, outdir: Path, **popen) -> subprocess.Popen:
        args = ["images", "photos", str(inventory), "--batch", "sample-a", "--store", str(store)]
        args += ["-o", str(outdir / "photos.parquet"), "--summary", str(outdir / "photos.json"), folder]
        command = [sys.executable, "-m", "bioscan_rebuild", *args]
        return subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, **popen)

    def finished(job: subprocess.Popen) -> tuple[int, str]:
        _, err = job.communicate(timeout=600)
        return job.returncode, err.decode()

    def outputs(outdir: Path, store: Path) -> dict:
        files = {f"out/{n}": (outdir / n).read_bytes() for n in ("photos.parquet",)}
        derived = {
            f"store/{p.relative_to(store)}": _without_file_times(p)
            for p in (store / "derived").rglob("*")
            if p.is_file()
        }
        return {**files, **derived}

    reference_store, reference_out = tmp_path / "ref" / "store", tmp_path / "ref" / "out"
    assert finished(shard("ref", reference_store, reference_out)) == (0, "")
    expected = outputs(reference_out, reference_store)
    assert len(expected) > 100

    # kill -9 once photos are being written; plant what a kill can leave in the job's scratch folder
    store, outdir = tmp_path / "killed" / "store", tmp_path / "killed" / "out"
    job = shard("killed", store, outdir)
    deadline = time.monotonic() + 300
    while job.poll() is None and len(list(store.glob("derived/*/*/*.json"))) < 5 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert job.poll() is None, "the shard finished before it could be killed"
    job.send_signal(signal.SIGKILL)
    job.wait()
    scratch = store / SCRATCH / job_name(f"images/{outdir / 'photos.parquet'}")
    scratch.mkdir(parents=True, exist_ok=True)
    (scratch / "tmpk1ll3d.tmp").write_bytes(b"\xff\xd8 half a JPEG")
    outdir.mkdir(parents=True, exist_ok=True)
    (outdir / ".photos.parquet.k1ll3d.tmp").write_bytes(b"PAR1")
    assert finished(shard("killed", store, outdir)) == (0, "")
    assert _leftovers(store, outdir) == []
    assert outputs(outdir, store) == expected

    # a full disk: one line, exit 1, nothing half-written; with room again the rerun gives the same bytes
    disk = SmallDisk(tmp_path / "small", size=400_000, file_limit=20_000)
    try:
        store, outdir = disk.folder / "store", disk.folder / "out"
        code, err = finished(shard("full", store, outdir, preexec_fn=disk.preexec()))
        assert code == 1 and len(err.strip().splitlines()) == 1, err
        assert err.startswith("bioscan-rebuild: error: ") and "out of disk space" in err, err
        assert _leftovers(store, disk.folder) == []
        assert not (outdir / "photos.parquet").exists()
        disk.grow()
        assert finished(shard("full", store, outdir, preexec_fn=disk.preexec())) == (0, "")
        assert _leftovers(store, outdir) == []
        assert outputs(outdir, store) == expected
    finally:
        disk.close()


def test_a_line_in_another_encoding_is_rejected_with_its_byte_and_column(realdata, tmp_path):
    """Mixed encodings: one row saved as Latin-1 in a UTF-8 export. Its row leaves as unparseable_row, saying
    which byte in which column, with a readable preview; the UTF-8 rows around it are read as they are."""
    data = _v4_rows(realdata, ["BSCN1-22", "BSCN2-22", "BSCN3-22"], species=["Aus b\u00e9a", "Aus caf\u00e9", "Aus d"])
    lines = data.split(b"\n")
    lines[2] = lines[2].decode("utf-8").encode("latin-1")
    (tmp_path / "e.tsv").write_bytes(b"\n".join(lines))
    records, rejects, _ = read_export(tmp_path / "e.tsv", "b")
    assert records["processid"].to_pylist() == ["BSCN1-22", "BSCN3-22"]
    assert records["species"].to_pylist()[0] == "Aus b\u00e9a"
    (reject,) = rejects.to_pylist()
    assert (reject["reason"], reject["source_line"]) == ("unparseable_row", 3)
    assert reject["detail"] == (
        "not valid UTF-8: byte 0xE9 in column 'species_name' (a line saved as Latin-1 or Windows-1252? save the "
        "export as UTF-8)"
    )
    assert "Aus caf\\xe9" in reject["raw"] and reject["raw"].startswith("BSCN2-22")


WRONG_FILE_COMMANDS = {  # a stage command handed the wrong file -> what its one line says
    "missing_records": (
        ("images", "shard", "missing.parquet", "--store", "s", "--outdir", "o"),
        "missing.parquet: no such file",
    ),
    "not_parquet": (("barcodes", "clean", "notes.parquet", "-o", "x.parquet"), "notes.parquet: not a Parquet table"),
    "other_columns": (
        ("images", "shard", "other.parquet", "--store", "s", "--outdir", "o"),
        "other.parquet: not the table this step reads (it has no column processid, sampleid, record_id, phylum "
        "and 26 more)",
    ),
    "join_other_columns": (
        ("ingest", "join", "--records", "other.parquet", "--inventory", "--batch-order", "a", "--outdir", "o"),
        "other.parquet: not the table this step reads",
    ),
    "splits_not_parquet": (
        ("splits", "--curated", "notes.parquet", "--barcodes", "notes.parquet", "--images", "--outdir", "o"),
        "cannot read an input table",
    ),
    "detect_no_folder": (("detect", "nowhere", "out.csv"), "nowhere: not a folder of photos"),
    "summary_missing": (
        ("images", "summary", "gone.json", "-o", "s.json"),
        "gone.json: no such file or folder: check the path",
    ),
    # argument checks of the commands: the same one line and exit status 2 (they exited 1, without the prefix)
    "join_shard_without_shards": (
        ("ingest", "join", "--records", "other.parquet", "--batch-order", "a", "--outdir", "o", "--shard", "1"),
        "ingest join: --shard and --shards go together",
    ),
    "image_dir_without_batch": (
        ("images", "photos", "other.parquet", "--batch", "b", "--store", "s", "-o", "o", "--image-dir", "nodir"),
        "--image-dir takes BATCH=DIR, got 'nodir'",
    ),
    "refit_nothing_trained": (("refit-fusion", "trained"), "refit-fusion: trained: no model.onnx, report.json"),
    # a mistyped store: a page of "photo not in the store", exit 0
    "review_no_store": (
        ("review", "other.parquet", "--store", "nostore", "-o", "o"),
        "review: nostore: not a folder: give the image store the run used",
    ),
}


@pytest.mark.parametrize("case", WRONG_FILE_COMMANDS)
def test_a_stage_command_given_the_wrong_file_says_so_in_one_line(tmp_path, case):
    import pyarrow as pa

    (tmp_path / "notes.parquet").write_text("a text file with the wrong name\n")
    pq.write_table(pa.table({"x": [1]}), tmp_path / "other.parquet")
    args, phrase = WRONG_FILE_COMMANDS[case]
    result = _run_cli(*args, cwd=tmp_path)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert lines[0].startswith("bioscan-rebuild: error: ") and phrase in lines[0], lines[0]
    assert not (tmp_path / "o").exists() and not (tmp_path / "x.parquet").exists()


def test_splits_given_barcode_shards_that_do_not_line_up_say_so_in_one_line(tmp_path):
    """One barcode shard of two given to `splits`: a traceback (RuntimeError) and exit 1, where `taxonomy curate`
    says the same in one line."""
    import pyarrow as pa

    text = pa.string()
    curated = pa.table({"processid": ["P1", "P2"], "genus": ["Aus", "Aus"], "species": ["Aus b", "Aus b"]})
    pq.write_table(curated.cast(pa.schema([(n, text) for n in curated.column_names])), tmp_path / "curated.parquet")
    shard = pa.table({"processid": ["P1"], "dna_barcode": ["ACGT"], "barcode_key": ["k"]})
    pq.write_table(shard.cast(pa.schema([(n, text) for n in shard.column_names])), tmp_path / "shard-000.parquet")
    args = ("splits", "--curated", "curated.parquet", "--barcodes", "shard-000.parquet", "--outdir", "o")
    result = _run_cli(*args, cwd=tmp_path)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1, result.stderr[-2000:]
    assert "the barcode shards (shard-000.parquet) do not line up with the curated records" in lines[0]


def test_provenance_of_a_plan_whose_files_are_not_there_is_one_line(tmp_path):
    """Run from another folder (the plan's paths are the workflow's), `provenance` wrote a graph whose file
    entities had no hash at all, against its own shapes, and exited 0."""
    job = {"rule": "r", "wildcards": {}, "inputs": ["in.txt"], "outputs": ["out.txt"], "params_sha256": "0" * 64}
    (tmp_path / "plan.json").write_text(json.dumps({"jobs": [job], "config": {}, "git_revision": None}))
    (tmp_path / "in.txt").write_text("x")
    result = _run_cli("provenance", "plan.json", "-o", "graph.jsonld", "--config-out", "c.json", cwd=tmp_path)
    assert result.returncode == 2 and "1 file(s) of the plan are not there: out.txt" in result.stderr
    assert not (tmp_path / "graph.jsonld").exists()
    (tmp_path / "out.txt").write_text("y")
    assert (
        _run_cli("provenance", "plan.json", "-o", "graph.jsonld", "--config-out", "c.json", cwd=tmp_path).returncode
        == 0
    )


def test_the_readme_catalogue_names_tests_that_exist():
    """README's "What happens to bad input" is the catalogue: at least 45 cases, each naming a test that exists."""
    import ast
    import re

    readme = (REPO / "README.md").read_text()
    section = readme.split("### What happens to bad input")[1].split("\n### ")[0]
    named = re.findall(r"^\| (\d+) \|.*\| `([\w.]+)::(\w+)` \|$", section, re.MULTILINE)
    assert [int(n) for n, _, _ in named] == list(range(1, len(named) + 1)) and len(named) >= 45
    for _, module, test in named:
        tree = ast.parse((REPO / "tests" / module).read_text())
        assert test in {node.name for node in tree.body if isinstance(node, ast.FunctionDef)}, (module, test)


@pytest.mark.parametrize(
    ("args", "phrase"),
    [
        (["ingest", "parse", "x.tsv", "--batch", "b", "--shards", "0", "--outdir", "o"], "--shards: 0 is below 1"),
        (["ingest", "list", "p", "--batch", "b", "--shards", "-2", "--outdir", "o"], "--shards: -2 is below 1"),
        (["sample", "--records", "-5", "--outdir", "x"], "--records: -5 is below 1"),
        (["sample", "o", "--records", "7"], "needs at least 8 records"),  # IndexError from the planted faults
        (["sample", "o", "--records", "3", "--no-images"], "needs at least 4 records"),
        (["sample", "o", "--seed", "-1"], "--seed: -1 is below 0"),  # numpy's ValueError
        (["sample", "o", "--species-share", "1.0"], "--species-share 1.0: give a fraction above 0"),
        (["stats", "rel", "-o", "o", "--seed", "-1"], "--seed: -1 is below 0"),
        (["release", "--outdir", "o"], "--rejects"),  # it used to default to none, then crash in Arrow
        (["ingest", "join", "--batch-order", "a", "--outdir", "o", "--params", "{bad"], "--params: not JSON"),
        (["ingest", "join", "--batch-order", "a", "--outdir", "o", "--params", '{"foo": 1}'], "unknown ingest param"),
        (
            ["stats", "--curated", "none.parquet", "--barcodes", "b.parquet", "--splits", "s.parquet", "-o", "o"],
            "none.parquet",
        ),
    ],
)
def test_bad_command_arguments_are_one_clear_line(tmp_path, args, phrase):
    """Each of these used to end in a traceback (KeyError, OverflowError, JSONDecodeError, ValueError, pyarrow's
    FileNotFoundError without a file name) and a shard count of -2 left a partial folder."""
    result = _run_cli(*args, cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert phrase in result.stderr.strip().splitlines()[-1]
    assert not (tmp_path / "o").exists()


def test_the_store_replaces_a_cut_short_object_and_never_stores_bytes_under_another_hash(tmp_path):
    """An object of the wrong size under a final name (a crash, a full disk) is written again, not trusted; a
    copy without the hashed bytes is checked against the hash it is stored under."""
    source = tmp_path / "photo.jpg"
    _photo(source)
    data = source.read_bytes()
    sha = inspect_image(data)["image_sha256"]
    store = ImageStore(tmp_path / "store", "copy")
    target = store.original_path(sha, "jpeg")
    target.parent.mkdir(parents=True)
    target.write_bytes(data[:100])
    assert store.put_original(source, sha, "jpeg", data=data).read_bytes() == data
    derived = store.derived_path("k" * 16, sha)
    derived.parent.mkdir(parents=True)
    derived.write_bytes(b"cut")
    assert store.put_bytes(derived, b"derived bytes").read_bytes() == b"derived bytes"
    assert store.read_original(sha, "jpeg") == data
    # the same size, other bytes (changed through a hard link): read as absent, then repaired with a copy
    linked = ImageStore(tmp_path / "linked", "link")
    stored = linked.put_original(source, sha, "jpeg", data=data)
    source.write_bytes(data[::-1])  # rewritten in place: the store's link shows it
    assert stored.read_bytes() == data[::-1] and linked.read_original(sha, "jpeg") is None
    source.write_bytes(data)
    repaired = linked.repair_original(sha, "jpeg", data)
    assert repaired == stored and linked.read_original(sha, "jpeg") == data
    assert repaired.stat().st_ino != source.stat().st_ino and stat.S_IMODE(repaired.stat().st_mode) == 0o444
    other = ImageStore(tmp_path / "other", "copy")
    source.write_bytes(data + b"changed")  # after it was hashed
    with pytest.raises(ValueError, match="changed after it was hashed"):
        other.put_original(source, sha, "jpeg")
    assert not other.original_path(sha, "jpeg").exists() and other.read_original(sha, "jpeg") is None


def test_a_scope_that_matches_no_record_stops_the_metadata_stage(realdata, tmp_path):
    """scope_taxa is matched exactly: spelled in another case, every record went out as out_of_scope and the run
    made an empty release with exit status 0."""
    export = str(realdata / REAL_V4)
    params = '{"scope_taxa": ["arthropoda"]}'
    result = _run_cli("metadata", export, "-o", "out.csv", "--taxonomy-params", params, cwd=tmp_path)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert "taxonomy.scope_taxa ['arthropoda'] matches none of the records' phylum labels" in lines[0]
    assert "most common: Arthropoda (" in lines[0]


@pytest.mark.slow
def test_a_run_that_would_release_nothing_fails_and_names_why(sample_dir, tmp_path):
    """ingest.markers in another case: every sequence left as unsupported_marker, the rest as no_barcode, and the
    run wrote an empty release with exit status 0."""

    def change(config):
        config["ingest"]["markers"] = ["coi-5p"]
        config["images"]["detector"]["backend"] = "classical"

    workdir = _config_with(tmp_path, change)
    shutil.copytree(sample_dir, workdir / "resources" / "sample")
    result = run_snakemake(workdir, check=False)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "no record is released: all " in output and "unsupported_marker" in output, output[-3000:]
    assert "check ingest.markers (names are matched exactly)" in output
    assert not (workdir / "results" / "release").exists()


def _ingested(tmp_path, exports, photos=(), policy="latest"):
    from bioscan_rebuild.core.params import IngestParams

    params = IngestParams.from_dict({"duplicate_policy": policy, "require_images": bool(photos)})
    out = tmp_path / f"out-{policy}"
    summary = ingest_local(exports, list(photos), out, shards=1, params=params)
    kept = pq.read_table(out / "shards" / "shard-000" / "records.parquet").to_pylist()
    rejects = pq.read_table(out / "rejects.parquet").to_pylist()
    return summary, kept, rejects


@pytest.mark.parametrize("policy", ["latest", "reject"])
def test_a_delivery_whose_own_copies_conflict_does_not_bring_back_an_older_copy(realdata, tmp_path, policy):
    """The latest delivery held two different copies of BSCN1-22: both were rejected, the delivery dropped out of
    the comparison, and the older delivery's copy was released (under reject too, which promises no copy)."""
    (tmp_path / "a.tsv").write_bytes(_v4_rows(realdata, ["BSCN1-22"]))
    (tmp_path / "b.tsv").write_bytes(_v4_rows(realdata, ["BSCN1-22", "BSCN1-22"], species=["One", "Two"]))
    summary, kept, rejects = _ingested(tmp_path, [tmp_path / "a.tsv", tmp_path / "b.tsv"], policy=policy)
    assert kept == [] and summary["balanced"] is True
    outcomes = sorted((r["batch"], r["reason"], r["detail"]) for r in rejects if r["kind"] == "record")
    assert [(batch, reason) for batch, reason, _ in outcomes] == [("export-1", "duplicate_conflict")] + [
        ("export-2", "duplicate_conflict")
    ] * 2
    assert outcomes[0][2] == "the copies of delivery export-2 differ from each other"


def test_an_older_delivery_whose_copies_conflict_leaves_the_latest_copy(realdata, tmp_path):
    (tmp_path / "a.tsv").write_bytes(_v4_rows(realdata, ["BSCN1-22", "BSCN1-22"], species=["One", "Two"]))
    (tmp_path / "b.tsv").write_bytes(_v4_rows(realdata, ["BSCN1-22"], species=["Three"]))
    _, kept, rejects = _ingested(tmp_path, [tmp_path / "a.tsv", tmp_path / "b.tsv"])
    assert [(row["processid"], row["species"], row["batch"]) for row in kept] == [("BSCN1-22", "Three", "export-2")]
    assert sorted(r["reason"] for r in rejects) == ["duplicate_conflict", "duplicate_conflict"]


def test_a_sequence_padded_with_gaps_by_another_layout_is_the_same_content(realdata, tmp_path):
    """v4 and BCDM-2024 pad a sequence with alignment gaps, BCDM-2023 does not: one record delivered both ways was
    'different content' (under reject, lost; under latest, a spurious superseded row and nucleotides change)."""
    first = _v4_rows(realdata, ["BSCN1-22"]).decode().split("\n")
    header = first[0].split("\t")
    fields = first[1].split("\t")
    column = header.index("nucleotides")
    assert fields[column]
    fields[column] = "--" + "-".join(fields[column][i : i + 50] for i in range(0, len(fields[column]), 50)).lower()
    (tmp_path / "a.tsv").write_text("\n".join(first))
    (tmp_path / "b.tsv").write_text("\n".join([first[0], "\t".join(fields), ""]))
    for policy in ("reject", "latest"):
        summary, kept, rejects = _ingested(tmp_path, [tmp_path / "a.tsv", tmp_path / "b.tsv"], policy=policy)
        assert [row["processid"] for row in kept] == ["BSCN1-22"]
        assert [r["reason"] for r in rejects] == ["duplicate_record"]
        redeliveries = pq.read_table(tmp_path / f"out-{policy}" / "shards" / "shard-000" / "redeliveries.parquet")
        assert redeliveries.num_rows == 0


def test_a_photo_name_with_an_invisible_character_names_its_record(realdata, tmp_path):
    """Export processids lose zero-width spaces and BOMs; photo names kept them, and the photo was no_record."""
    (tmp_path / "e.tsv").write_bytes(_v4_rows(realdata, ["BSCN1-22", "BSCN2-22"]))
    _photo(tmp_path / "photos" / "BSCN1-22\u200b.jpg", 1)
    _photo(tmp_path / "photos" / "\ufeffBSCN2-22.jpg", 2)
    _, kept, rejects = _ingested(tmp_path, [tmp_path / "e.tsv"], photos=[tmp_path / "photos"])
    assert sorted((row["processid"], row["image_path"]) for row in kept) == [
        ("BSCN1-22", "BSCN1-22\u200b.jpg"),
        ("BSCN2-22", "\ufeffBSCN2-22.jpg"),
    ]
    assert rejects == []


REAL_BCDM2023 = "barcode-constrained-phylogeny/tests/BOLD_Public.18-Dec-2023/BOLD_Public.18-Dec-2023.tsv"
REAL_BCDM2024 = "bold-library-curation/resources/test_data/test_chironominae_norway_data.tsv"


def _slice(realdata, name: str, rows: int = 40) -> list[list[str]]:
    """The header and the first ``rows`` rows of a real export, as fields."""
    text = (realdata / name).read_bytes().decode("utf-8").replace("\r\n", "\n")
    return [line.split("\t") for line in text.split("\n")[: rows + 1]]


def _tsv(rows: list[list[str]]) -> str:
    return "".join("\t".join(row) + "\n" for row in rows)


@pytest.mark.parametrize("layout", [REAL_BCDM2023, REAL_BCDM2024])
def test_an_export_saved_again_with_csv_quotes_reads_as_the_original(realdata, tmp_path, layout):
    """A spreadsheet or CSV writer quotes fields when it saves the export again (BOLD never does): the quotes
    ended up in the release ("Quintana Roo" with its quotes), and a quoted coordinate pair blanked every site."""
    import csv

    rows = _slice(realdata, layout)
    (tmp_path / "plain.tsv").write_text(_tsv(rows))
    expected, expected_rejects, expected_stats = read_export(tmp_path / "plain.tsv", "b")

    def excel(field: str) -> str:  # Excel's tab-separated text: a cell holding a comma or a quote is quoted
        return '"' + field.replace('"', '""') + '"' if ("," in field or '"' in field) else field

    (tmp_path / "excel.tsv").write_text(_tsv([[excel(field) for field in row] for row in rows]))
    # R's write.table and QUOTE_ALL writers: every cell, the header too
    with open(tmp_path / "all.tsv", "w", newline="", encoding="utf-8") as handle:
        csv.writer(handle, dialect="excel-tab", quoting=csv.QUOTE_ALL, lineterminator="\n").writerows(rows)
    for name in ("excel", "all"):
        got, rejects, stats = read_export(tmp_path / f"{name}.tsv", "b")
        assert _content(got) == _content(expected), name
        assert rejects["reason"].to_pylist() == expected_rejects["reason"].to_pylist(), name
        assert stats.quoted_records > 0 and expected_stats.quoted_records == 0
    assert expected["lat"].null_count < expected.num_rows  # the sites are there to lose
    # a quote inside a field is written doubled, and read back single
    header = rows[0]
    rows[1][header.index("species")] = 'Lutzomyia "longipalpis"'
    with open(tmp_path / "inner.tsv", "w", newline="", encoding="utf-8") as handle:
        csv.writer(handle, dialect="excel-tab", lineterminator="\n").writerows(rows)
    got, _, _ = read_export(tmp_path / "inner.tsv", "b")
    assert got["species"][0].as_py() == 'Lutzomyia "longipalpis"'


@pytest.mark.parametrize("block_bytes", [1 << 20, 300])
def test_a_second_header_in_another_order_refuses_the_lines_it_heads(realdata, tmp_path, block_bytes):
    """Two exports joined into one file, the second with two columns the other way round: its lines were kept with
    order and family swapped, and its header (not byte for byte the first) was an `unsupported_marker` record."""
    rows = _slice(realdata, REAL_BCDM2023, rows=6)
    header = rows[0]
    i, j = header.index("order"), header.index("family")
    p, q = header.index("processid"), header.index("sampleid")

    def swapped(row):
        row = row[:]
        row[i], row[j], row[p], row[q] = row[j], row[i], row[q], row[p]
        return row

    first, second = rows[:4], [swapped(row) for row in [rows[0], *rows[4:]]]
    (tmp_path / "joined.tsv").write_text(_tsv(first) + _tsv(second) + _tsv(rows[:1]) + _tsv(rows[5:]))
    got, rejects, _ = read_export(tmp_path / "joined.tsv", "b", block_bytes=block_bytes)
    # after the first header's order returns (line 9), lines are read again
    assert got["source_line"].to_pylist() == [2, 3, 4, 10, 11]
    assert got["order"].to_pylist() == [row[i] for row in [*rows[1:4], *rows[5:]]]
    assert rejects["source_line"].to_pylist() == [5, 6, 7, 8, 9]
    assert rejects["reason"].to_pylist() == ["unparseable_row"] * 5
    assert rejects["detail"][0].as_py().startswith("a second header, its columns not the first header's in order")
    assert all(d.startswith("after a second header (line 5)") for d in rejects["detail"].to_pylist()[1:4])
    # each refused line names its record, read where its own header puts the processid
    assert rejects["processid"].to_pylist()[1:4] == [row[header.index("processid")] for row in rows[4:]]
    assert rejects["detail"][4].as_py() == "the header line again (two exports joined into one file?)"
    # a second header in the first one's order, written by R (every cell quoted), ending in a space, or naming a
    # column never read otherwise, is the header again: the lines under it are read
    from bioscan_rebuild.ingest.bold import LAYOUTS

    unread = next(i for i, c in enumerate(header) if c not in set(LAYOUTS["bcdm2023"].values()))
    renamed = [c.upper() if k == unread else c for k, c in enumerate(header)]
    for name, again in (
        ("quoted", "\t".join(f'"{c}"' for c in header)),
        ("spaced", "\t".join(header) + " "),
        ("renamed", "\t".join(renamed)),
    ):
        (tmp_path / f"{name}.tsv").write_text(_tsv(rows[:4]) + again + "\n" + _tsv(rows[4:]))
        got, rejects, _ = read_export(tmp_path / f"{name}.tsv", "b", block_bytes=block_bytes)
        assert got.num_rows == len(rows) - 1 and rejects["source_line"].to_pylist() == [5]
        assert rejects["detail"].to_pylist() == ["the header line again (two exports joined into one file?)"]
    # an exact repeated header where a note column's name differs from a read column's only in case ("Order"
    # before "order") is the header again: taking names in any case first lost every later record (reviewer diffk)
    noted = [[*row[:1], "Order" if k == 0 else "note", *row[1:]] for k, row in enumerate(rows)]
    (tmp_path / "noted.tsv").write_text(_tsv(noted[:4]) + _tsv(noted[:1]) + _tsv(noted[4:]))
    got, rejects, _ = read_export(tmp_path / "noted.tsv", "b", block_bytes=block_bytes)
    assert got["source_line"].to_pylist() == [2, 3, 4, *range(6, len(rows) + 2)]
    assert rejects["detail"].to_pylist() == ["the header line again (two exports joined into one file?)"]
    assert got["order"].to_pylist() == [row[i] for row in rows[1:]]
    # a second header in another case, its columns swapped: its lines were read under the first header's columns
    # (order and family swapped, silently) and the header itself was a record (reviewer diffj)
    upper = [[c.upper() for c in second[0]], *second[1:]]
    (tmp_path / "upper.tsv").write_text(_tsv(first) + _tsv(upper))
    got, rejects, _ = read_export(tmp_path / "upper.tsv", "b", block_bytes=block_bytes)
    assert got["source_line"].to_pylist() == [2, 3, 4] and rejects["source_line"].to_pylist() == [5, 6, 7, 8]
    assert rejects["detail"][0].as_py().startswith("a second header, its column names in another case")
    assert all(
        d.startswith("after a second header (line 5) with its column names in another case")
        for d in rejects["detail"].to_pylist()[1:]
    )
    assert rejects["processid"].to_pylist()[1:] == [row[header.index("processid")] for row in rows[4:]]


def test_spreadsheet_leftovers_in_an_export_get_a_clear_outcome(realdata, tmp_path):
    rows = _slice(realdata, REAL_BCDM2023, rows=10)
    header, marker = rows[0], rows[0].index("marker_code")
    (tmp_path / "plain.tsv").write_text(_tsv(rows))
    expected, _, _ = read_export(tmp_path / "plain.tsv", "b")
    # empty rows (tabs only), two unnamed trailing columns, a marker code with a trailing space
    padded = [row + ["", ""] for row in rows]
    padded[3][marker] += " "
    padded.append([""] * len(padded[0]))
    (tmp_path / "padded.tsv").write_text(_tsv(padded))
    got, rejects, stats = read_export(tmp_path / "padded.tsv", "b")
    assert rejects.num_rows == 0 and stats.blank_lines == 1 and _content(got) == _content(expected)
    # two exports joined into one file: the second header line is rejected for what it is
    (tmp_path / "joined.tsv").write_text(_tsv(rows) + _tsv(rows))
    got, rejects, _ = read_export(tmp_path / "joined.tsv", "b")
    assert got.num_rows == 2 * expected.num_rows and rejects["source_line"].to_pylist() == [len(rows) + 1]
    assert rejects["detail"].to_pylist() == ["the header line again (two exports joined into one file?)"]
    # ... each saved with its own BOM (`cat a.tsv b.tsv` of two Excel exports)
    (tmp_path / "joined_bom.tsv").write_text("\ufeff" + _tsv(rows) + "\ufeff" + _tsv(rows))
    got, rejects, _ = read_export(tmp_path / "joined_bom.tsv", "b")
    assert got.num_rows == 2 * expected.num_rows and rejects["source_line"].to_pylist() == [len(rows) + 1]
    # a marker code of spaces only is no marker: the sequence's gene is unknown (not "marker ''")
    blank_marker = [row[:] for row in rows]
    blank_marker[1][marker] = "  "
    (tmp_path / "blank_marker.tsv").write_text(_tsv(blank_marker))
    _, rejects, _ = read_export(tmp_path / "blank_marker.tsv", "b")
    assert rejects["detail"].to_pylist() == ["a sequence without a marker code: its gene is unknown"]
    # a quoted field holding a tab breaks its line: the detail says why
    broken = [row[:] for row in rows]
    broken[2][header.index("species")] = '"Chironomus\tsp."'
    (tmp_path / "tab.tsv").write_text(_tsv(broken))
    _, rejects, _ = read_export(tmp_path / "tab.tsv", "b")
    assert "a field in quotes holding a tab or a line break?" in rejects["detail"][0].as_py()
    # no line break after the last line: kept, and said (the file may have been cut short)
    (tmp_path / "cut.tsv").write_text(_tsv(rows)[:-1])
    got, _, stats = read_export(tmp_path / "cut.tsv", "b")
    assert got.num_rows == expected.num_rows and stats.last_line_unterminated
    assert not read_export(tmp_path / "plain.tsv", "b")[2].last_line_unterminated
    (tmp_path / "tabs_last.tsv").write_text(_tsv(rows) + "\t" * (len(header) - 1))  # an empty row, unended
    assert not read_export(tmp_path / "tabs_last.tsv", "b")[2].last_line_unterminated


def test_a_header_ending_in_a_tab_and_spaces_around_its_names_lose_no_record(realdata, tmp_path):
    """A header saved with a tab after its last name rejected every line, `unparseable_row` "56 fields, header has
    57"; a header name with a space around it ("species ") refused the export although a second header's names are
    read without them. Lines with more fields than the header stay refused: a writer's trailing tab cannot be told
    from a tab inside the line or R's row names, which would put every value one column off."""
    rows = _slice(realdata, REAL_BCDM2023, rows=40)
    (tmp_path / "plain.tsv").write_text(_tsv(rows))
    expected, _, _ = read_export(tmp_path / "plain.tsv", "b")
    for name, variant in {
        "header_tab.tsv": [rows[0] + [""]] + rows[1:],
        "header_two_tabs.tsv": [rows[0] + ["", ""]] + rows[1:],
        "spaced_names.tsv": [[f" {name} " for name in rows[0]]] + rows[1:],
    }.items():
        (tmp_path / name).write_text(_tsv(variant))
        got, rejects, _ = read_export(tmp_path / name, "b")
        assert rejects.num_rows == 0 and _content(got) == _content(expected), name
    # ... but a line there of the header's count holds a tab inside a field: refused (half a barcode was kept)
    stray = [rows[0] + [""]] + [row[:] for row in rows[1:]]
    barcode = rows[0].index("nucraw")
    stray[5][barcode] = stray[5][barcode][:400] + "\t" + stray[5][barcode][400:]
    (tmp_path / "stray.tsv").write_text(_tsv(stray))
    got, rejects, _ = read_export(tmp_path / "stray.tsv", "b", block_bytes=1 << 20)
    assert rejects["source_line"].to_pylist() == [6] and got.num_rows == expected.num_rows - 1
    assert "a tab inside a field?" in rejects["detail"][0].as_py()
    # a named column missing at the end of a line is no unnamed one: the line is refused
    short = [rows[0] + [""]] + [row[:-1] if i == 2 else row for i, row in enumerate(rows[1:], 1)]
    (tmp_path / "short.tsv").write_text(_tsv(short))
    _, rejects, _ = read_export(tmp_path / "short.tsv", "b")
    assert rejects["source_line"].to_pylist() == [3]
    # more fields than the header: a tab at each line's end, R's row names (every last field empty too)
    for name, variant in {
        "rows_tab.tsv": [rows[0]] + [row + [""] for row in rows[1:]],
        "rownames.tsv": [rows[0]] + [[str(i), *row[:-1], ""] for i, row in enumerate(rows[1:], 1)],
    }.items():
        (tmp_path / name).write_text(_tsv(variant))
        got, rejects, _ = read_export(tmp_path / name, "b")
        assert got.num_rows == 0 and set(rejects["reason"].to_pylist()) == {"unparseable_row"}, name


def test_a_quoted_line_break_in_the_last_column_keeps_no_half_value(realdata, tmp_path):
    """A species saved as "Paratanytarsus<line break>sp. 2ES" in the export's last column: the first half of the
    line had the header's field count and was kept with the species `"Paratanytarsus`; the second half was a reject
    without a processid. Now the first half is `unparseable_row`, its processid named, and the field named."""
    rows = _slice(realdata, REAL_BCDM2023, rows=6)
    at = rows[0].index("species")
    moved = [row[:at] + row[at + 1 :] + [row[at]] for row in rows]  # species last, as a reordered export puts it
    (tmp_path / "plain.tsv").write_text(_tsv(moved))
    expected, _, _ = read_export(tmp_path / "plain.tsv", "b")
    broken = [row[:] for row in moved]
    broken[2][-1] = '"Paratanytarsus\nsp. 2ES"'
    (tmp_path / "broken.tsv").write_text(_tsv(broken))
    got, rejects, _ = read_export(tmp_path / "broken.tsv", "b")
    assert got.num_rows == expected.num_rows - 1 and broken[2][0] not in got["processid"].to_pylist()
    assert rejects["source_line"].to_pylist() == [3, 4]
    assert rejects["processid"][0].as_py() == broken[2][rows[0].index("processid")]
    assert rejects["detail"][0].as_py().startswith("a field in quotes in column 'species' is cut in two by a line")
    # ... and in the first column: the second half (the tail, "sp. 2ES\"") has the header's field count there
    first = [[row[at], *row[:at], *row[at + 1 :]] for row in rows]  # species first
    first[3][0] = '"Paratanytarsus\nsp. 2ES"'
    (tmp_path / "first.tsv").write_text(_tsv(first))
    got, rejects, _ = read_export(tmp_path / "first.tsv", "b")
    assert rejects["source_line"].to_pylist() == [4, 5] and got.num_rows == expected.num_rows - 1
    assert rejects["processid"][1].as_py() == rows[3][rows[0].index("processid")]
    assert rejects["detail"][1].as_py().startswith("a field in quotes in column 'species' is cut in two")
    # quotes that open and close on the line, around a read field or inside a note, are no break
    quoted = [row[:] for row in rows]
    quoted[1][at] = f'"{rows[1][at]}"' if rows[1][at] else '""'
    (tmp_path / "quoted.tsv").write_text(_tsv(quoted))
    got, rejects, _ = read_export(tmp_path / "quoted.tsv", "b")
    assert rejects.num_rows == 0 and _content(got) == _content(read_export(tmp_path / "plain.tsv", "b")[0])
    # nor is text with a quote in it: the records are kept with the text (the quote check refused them)
    texts = ['Cora sp. "A"', '"Cora" sp. A', '"Cora sp. A" ', 'Cora sp. A"']
    odd = [rows[0]] + [row[:] for row in rows[1 : len(texts) + 1]]
    for row, text in zip(odd[1:], texts, strict=True):
        row[at] = text
    (tmp_path / "odd.tsv").write_text(_tsv(odd))
    got, rejects, _ = read_export(tmp_path / "odd.tsv", "b")
    assert rejects.num_rows == 0 and got["species"].to_pylist() == [
        'Cora sp. "A"',
        '"Cora" sp. A',
        "Cora sp. A",
        'Cora sp. A"',
    ]


def test_an_export_that_may_have_been_cut_short_is_said_by_ingest_run_and_in_the_accounting(realdata, tmp_path):
    """Its last line kept as a record (a 353-nt stub of a 653-nt barcode passes min_length) was said only by
    `ingest parse` and in the export's own summary: `ingest run` printed its totals alone, and the accounting
    dropped the flag."""
    from bioscan_rebuild.cli.main import main

    rows = _slice(realdata, REAL_BCDM2023, rows=4)
    at = rows[0].index("nucraw")
    rows = [row[:at] + row[at + 1 :] + [row[at]] for row in rows]  # the sequence last, as a reordered export has it
    (tmp_path / "cut.tsv").write_text(_tsv(rows)[:-300])
    (tmp_path / "whole.tsv").write_text(_tsv(rows))
    err = io.StringIO()
    args = ["ingest", "run", "--export", str(tmp_path / "whole.tsv"), "--export", str(tmp_path / "cut.tsv")]
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        assert main([*args, "-o", str(tmp_path / "out")]) == 0
    said = f"line {len(rows)} was kept as a record: check it against the source"
    assert err.getvalue().count("warning:") == 1 and said in err.getvalue() and "cut.tsv ends without" in err.getvalue()
    accounting = json.loads((tmp_path / "out" / "accounting.json").read_text())
    assert [warning.endswith(said) for warning in accounting["warnings"]] == [True]
    entries = {Path(item["export"]).name: item for item in accounting["batches"].values() if "export" in item}
    assert entries["cut.tsv"]["last_line_unterminated"] and entries["cut.tsv"]["last_line_kept"]
    assert not entries["whole.tsv"]["last_line_unterminated"]


@pytest.mark.slow
def test_the_workflow_says_an_export_may_have_been_cut_short_when_it_ends(sample_dir, tmp_path):
    """The parse job's warning went to its log alone, which a successful run never shows."""
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "config.yaml").write_text((REPO / "config" / "config.yaml").read_text())
    shutil.copytree(sample_dir, tmp_path / "resources" / "sample")
    export = tmp_path / "resources" / "sample" / "sample-a" / "bold_export.tsv"
    export.write_bytes(export.read_bytes().rstrip(b"\n"))
    result = run_snakemake(tmp_path, "--until", "ingest_accounting")
    assert "warning: resources/sample/sample-a/bold_export.tsv ends without a line break" in result.stderr
    assert "was kept as a record: check it against the source" in result.stderr


def test_the_cut_short_warning_says_what_became_of_the_last_line(realdata, tmp_path):
    """It said "its record was kept" whatever became of the line: of a line cut mid-row (rejected: too few fields)
    and of a header with nothing after it too."""
    from bioscan_rebuild.cli.main import main

    rows = _slice(realdata, REAL_BCDM2023, rows=4)
    whole = _tsv(rows)
    cases = {
        "kept.tsv": (whole[:-1], f"line {len(rows)} was kept as a record: check it against the source"),
        "cut.tsv": (whole[: whole.rindex("\t")], f"line {len(rows)} was rejected (its reject row says why)"),
        "header.tsv": (whole.split("\n")[0], "it holds no record (a header only)"),
    }
    for name, (text, said) in cases.items():
        (tmp_path / name).write_text(text)
        err = io.StringIO()
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
            assert (
                main(
                    [
                        "ingest",
                        "parse",
                        str(tmp_path / name),
                        "--batch",
                        "b",
                        "--shards",
                        "1",
                        "--outdir",
                        str(tmp_path / name.replace(".tsv", "")),
                    ]
                )
                == 0
            )
        assert err.getvalue().rstrip().endswith(said) and "ends without a line break" in err.getvalue(), name


def test_a_packed_or_comma_separated_export_is_refused_with_what_it_is(realdata, tmp_path):
    import gzip
    import zipfile

    from bioscan_rebuild.ingest.bold import LayoutError

    text = _tsv(_slice(realdata, REAL_BCDM2023, rows=5))
    with zipfile.ZipFile(tmp_path / "export.zip", "w") as archive:
        archive.writestr("export.tsv", text)
    (tmp_path / "export.tsv.gz").write_bytes(gzip.compress(text.encode(), mtime=0))
    (tmp_path / "export.csv").write_text(text.replace("\t", ","))
    for name, says in (
        ("export.zip", "a zip archive (or an Excel .xlsx workbook)"),
        ("export.tsv.gz", "gzip-compressed"),
        ("export.csv", "a comma-separated file? BOLD exports are tab-separated"),
    ):
        with pytest.raises(LayoutError, match=re.escape(says)):
            read_export(tmp_path / name, "b")


def test_a_processid_csv_readers_take_for_missing_is_rejected_for_it(realdata, tmp_path):
    """A processid "NA" or "null" was released: pandas and R read it as missing from the released CSV (the
    dataset's own loader then failed on its image path), and the audit and the release diff lost the record."""
    rows = _slice(realdata, REAL_BCDM2023, rows=6)
    pid = rows[0].index("processid")
    for i, spelling in enumerate(("NA", "null", "NaN", "N/A"), start=1):
        rows[i][pid] = spelling
    (tmp_path / "na.tsv").write_text(_tsv(rows))
    records, rejects, _ = read_export(tmp_path / "na.tsv", "b")
    assert records.num_rows == 2 and set(rejects["reason"].to_pylist()) == {"invalid_processid"}
    details = dict(zip(rejects["processid"].to_pylist(), rejects["detail"].to_pylist(), strict=True))
    assert details["NA"] == details["null"] == details["NaN"] == "a processid CSV readers take for missing (pandas, R)"
    assert details["N/A"] == "a path separator (/ or \\) in the processid"


@pytest.mark.parametrize(
    "args, phrase",
    [
        (["--barcode-params", "[1]"], "--barcode-params: not a JSON object"),
        (["--taxonomy-params", "null"], "--taxonomy-params: not a JSON object"),
        (["--max-ambiguity", "nan"], "barcodes.max_ambiguity: nan is not a finite number"),
    ],
)
def test_a_json_option_that_is_no_object_or_a_nan_limit_is_one_line(realdata, tmp_path, args, phrase):
    """`--barcode-params '[1]'` was an AttributeError traceback, `null` ran as no parameters, and a NaN limit passed
    every check (each comparison with NaN is false): the ambiguity filter was off, exit 0."""
    export = str(realdata / REAL_V4)
    result = _run_cli("metadata", export, "-o", str(tmp_path / "m.csv"), *args, cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr and phrase in result.stderr
    assert not (tmp_path / "m.csv").exists()


def test_release_formats_must_be_known_and_hold_csv(tmp_path):
    """An unknown name was a traceback; a list without csv built a release (exit 0) that failed its own audit."""
    for formats, phrase in (("csv,bogus", "unknown formats ['bogus']"), ("parquet", "csv must be among them")):
        result = _run_cli("release", "--formats", formats, "--outdir", str(tmp_path / "r"), cwd=tmp_path)
        assert result.returncode == 2 and phrase in result.stderr and "Traceback" not in result.stderr


def test_an_output_that_is_an_input_is_refused_and_the_input_kept(realdata, tmp_path):
    """`metadata in.tsv -o in.tsv` replaced the export with the CSV, `split in.csv out.csv --summary in.csv` the
    input with the summary, `detect photos photos/x.jpg` a photo with the CSV: each exited 0."""
    export = tmp_path / "in.tsv"
    export.write_bytes((realdata / REAL_V4).read_bytes())
    before = export.read_bytes()
    photos = tmp_path / "photos"
    photos.mkdir()
    _photo(photos / "BSCN1-22.jpg", 0)
    runs = [
        (["metadata", str(export), "-o", str(export)], "the output is an input"),
        (["metadata", str(export), "-o", str(tmp_path / "in.csv")] + ["--fixes", str(tmp_path / "in.bins.csv")], None),
        (["split", str(export), str(tmp_path / "out.csv"), "--summary", str(export)], "the output is an input"),
        (["detect", str(photos), str(photos / "BSCN1-22.jpg")], "give the output a .csv name"),
        # an output that is a folder: the error named the hidden temporary file (".out.x1y2.tmp: Is a directory")
        (["metadata", str(export), "-o", str(photos)], f"{photos}: a folder: give the name of a file to write"),
    ]
    for args, phrase in runs:
        if phrase is None:  # a side file (in.bins.csv) that is an input too
            (tmp_path / "in.bins.csv").write_text("rank\tfrom\tto\treason\n")
            phrase = "the output is an input"
        result = _run_cli(*args, cwd=tmp_path)
        assert result.returncode == 2 and phrase in result.stderr and "Traceback" not in result.stderr, args
    assert export.read_bytes() == before and (photos / "BSCN1-22.jpg").stat().st_size > 100
    assert (tmp_path / "in.bins.csv").read_text() == "rank\tfrom\tto\treason\n"


def test_a_step_file_that_is_garbage_or_another_steps_is_one_line(tmp_path):
    """A summary, plan or accounting that was not JSON, or another step's, ended in a JSONDecodeError / KeyError /
    TypeError traceback; a garbage model file in onnxruntime's InvalidProtobuf."""
    (tmp_path / "garbage.json").write_text("not json {")
    (tmp_path / "list.json").write_text("[1, 2]")
    (tmp_path / "other.json").write_text('{"records": 3}')
    (tmp_path / "garbage.onnx").write_bytes(b"\x00\x01 not a model")
    (tmp_path / "photos").mkdir()
    runs = [
        (["images", "summary", "garbage.json", "-o", "s.json"], "garbage.json: not a photo shard's summary"),
        (["images", "summary", "other.json", "-o", "s.json"], "other.json: not a photo shard's summary (no 'status')"),
        (["provenance", "list.json", "-o", "g.jsonld", "--config-out", "c.json"], "list.json: not a workflow plan"),
        (["detect", "photos", "d.csv", "--backend", "onnx", "--weights", "garbage.onnx"], "not an ONNX model"),
    ]
    for args, phrase in runs:
        result = _run_cli(*args, cwd=tmp_path)
        assert result.returncode == 2 and phrase in result.stderr and "Traceback" not in result.stderr, args


def _parsers(parser):
    """The command's parser and every subcommand's, depth first."""
    import argparse

    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                yield from _parsers(child)


def test_every_option_of_every_command_says_its_default():
    """59 options showed no help text or hid their default (`sample --records RECORDS`: neither what nor 300)."""
    import argparse

    from bioscan_rebuild.cli.main import build_parser

    for parser in _parsers(build_parser()):
        text = " ".join(parser.format_help().split())
        for action in parser._actions:
            default = action.default
            if not action.option_strings or default is None or default is False or default == argparse.SUPPRESS:
                continue
            shown = str(list(default) if isinstance(default, tuple) else default)
            assert "default" in text and (shown in text or "default" in (action.help or "")), (parser.prog, action.dest)


def test_an_option_of_several_values_given_twice_keeps_both():
    """`ingest run --export a.tsv --export b.tsv` ingested b.tsv alone, and said nothing of a.tsv: the second
    `--export` replaced the first. Every option that takes several values adds to them when repeated."""
    from bioscan_rebuild.cli.main import build_parser

    several = [
        (parser.prog, action.dest, type(action).__name__)
        for parser in _parsers(build_parser())
        for action in parser._actions
        if action.option_strings and action.nargs in ("*", "+")
    ]
    assert len(several) > 20 and all(kind == "_ExtendAction" for *_, kind in several), several
    args = build_parser().parse_args(["ingest", "run", "--export", "a.tsv", "--export", "b.tsv", "c.tsv", "-o", "o"])
    assert args.export == ["a.tsv", "b.tsv", "c.tsv"]


@pytest.mark.parametrize(
    "args, phrase",
    [
        (["ingest", "join", "--records", "r.parquet", "--inventory", "i.parquet", "--batch-order", "a"], "--shard 7"),
        (["images", "shard", "--contact-sheet-size=-5"], "-5 is below 0"),
        (["train-detector", "--out", "td", "--no-real", "--prepare-only", "--generated", "-5"], "-5 is below 0"),
        (["train-detector", "--out", "td", "--no-real", "--prepare-only", "--generated", "0"], "no validation images"),
    ],
)
def test_numbers_out_of_range_are_one_line(tmp_path, args, phrase):
    """`ingest join --shard 7 --shards 2` rejected every record as no_image (exit 0); a negative contact sheet size
    dropped photos from the sheet; a negative or zero photo count for the detector's training was a traceback."""
    if args[0] == "ingest":
        args = [*args, "--outdir", "o", "--shard", "7", "--shards", "2"]
    result = _run_cli(*args, cwd=tmp_path)
    assert result.returncode == 2 and phrase in result.stderr and "Traceback" not in result.stderr


def test_a_release_with_shard_lists_of_different_lengths_is_one_line(tmp_path):
    """A release given record shards but no barcode shards ended in a zip() traceback deep in the export."""
    for name in ("r0.parquet", "r1.parquet", "i0.parquet", "i1.parquet"):
        (tmp_path / name).write_bytes(b"PAR1")
    args = ["release", "--records", "r0.parquet", "r1.parquet", "--images", "i0.parquet", "i1.parquet"]
    required = [f"--{name}={name}.parquet" for name in ("curated", "splits", "rejects", "changes", "accounting")]
    result = _run_cli(*args, *required, "--outdir", "out", cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "one file per shard each (--records 2, --barcodes 0, --images 2)" in result.stderr


def test_a_command_with_nothing_to_work_on_says_so(tmp_path):
    """`barcodes fasta` without barcode shards wrote an empty FASTA and `ingest run` without inputs an empty ingest
    (both exit 0); `ship-detector` on a folder with a broken rule named no file."""
    (tmp_path / "trained").mkdir()
    for name in ("model.onnx", "MODEL_CARD.md", "report.json"):
        (tmp_path / "trained" / name).write_text("x")
    (tmp_path / "trained" / "fusion.json").write_text("not json")
    runs = [
        (["barcodes", "fasta", "--curated", "c.parquet", "-o", "b.fasta"], "give the barcode shards"),
        (["ingest", "run", "-o", "ingest"], "give at least one --export or --images"),
        (["ship-detector", "trained", "--models-dir", "models"], "fusion.json: not a fusion rule"),
    ]
    for args, phrase in runs:
        result = _run_cli(*args, cwd=tmp_path)
        assert result.returncode == 2 and phrase in result.stderr and "Traceback" not in result.stderr, args
    assert not (tmp_path / "b.fasta").exists() and not (tmp_path / "ingest").exists()


def test_a_site_ingest_refuses_is_named_in_the_changes_of_its_record(realdata, tmp_path):
    """A decimal comma ("43,5") or a BCDM site written with a semicolon: the site was blanked and only counted per
    export, outside the release, so a user could not tell a refused site from none given (reviewer geo). The
    release's changes name the record, the text as delivered and its source row (step 0, coordinates_refused)."""
    lines = (realdata / REAL_V4).read_bytes().replace(b"\r\n", b"\n").decode().split("\n")
    header = lines[0].split("\t")
    at = {name: header.index(name) for name in ("processid", "lat", "lon")}
    rows = []
    for k, (lat, lon) in enumerate((("43,5", "10.2"), ("95", "10"), ("45.5", "10.2"), ("", ""))):
        cells = lines[1].split("\t")
        cells[at["processid"]], cells[at["lat"]], cells[at["lon"]] = f"SITE{k}-21", lat, lon
        rows.append("\t".join(cells))
    (tmp_path / "sites.tsv").write_text("\n".join([lines[0], *rows]) + "\n")
    result = _run_cli("metadata", "sites.tsv", "-o", "out.csv", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    released = pd.read_csv(tmp_path / "out.csv", dtype=str, keep_default_na=False).set_index("processid")
    assert released.loc["SITE2-21", "coord-lat"] == "45.5" and released.loc["SITE0-21", "coord-lat"] == ""
    changes = pd.read_csv(tmp_path / "out.changes.csv", dtype=str, keep_default_na=False)
    refused = changes[changes["rule"] == "coordinates_refused"]
    assert refused[["step", "processid", "field", "old", "new"]].values.tolist() == [
        ["0", "SITE0-21", "coord", "43,5; 10.2", ""],
        ["0", "SITE1-21", "coord", "95; 10", ""],
    ]
    assert refused["source"].tolist() == ["export-1:sites.tsv:2", "export-1:sites.tsv:3"]


def test_no_command_writes_over_one_of_its_inputs(tmp_path):
    """`barcodes fasta -o curated.parquet` replaced the curated table with a FASTA, `accounting -o` ingest's
    accounting with the run's, exit 0 (reviewer cli); the other commands that write named files had no guard
    either. Each is one line, exit 2, its input left as it was."""
    for name in ("c.parquet", "b.parquet", "a.json", "r.parquet", "s.json", "plan.json", "x.parquet"):
        (tmp_path / name).write_bytes(b"input " + name.encode())
    (tmp_path / "meta").mkdir()
    (tmp_path / "meta" / "curated.parquet").write_bytes(b"input")
    (tmp_path / "sp").mkdir()
    (tmp_path / "sp" / "splits.parquet").write_bytes(b"input")
    runs = [
        ["barcodes", "fasta", "--curated", "c.parquet", "--barcodes", "b.parquet", "-o", "c.parquet"],
        ["accounting", "--ingest-accounting", "a.json", "--records", "r.parquet", "--images", "x.parquet"]
        + ["--curated", "c.parquet", "--metadata-rejects", "r.parquet", "--splits", "s.json"]
        + ["--split-excluded", "x.parquet", "-o", "a.json"],
        ["images", "summary", "s.json", "-o", "s.json"],
        ["ingest", "accounting", "--parse-summary", "s.json", "-o", "o.json", "--rejects-out", "s.json"],
        ["provenance", "plan.json", "-o", "plan.json", "--config-out", "c.json"],
        ["taxonomy", "curate", "--records", "meta/curated.parquet", "--barcodes", "b.parquet", "--outdir", "meta"],
        ["splits", "--curated", "c.parquet", "--barcodes", "sp/splits.parquet", "--outdir", "sp"],
    ]
    for args in runs:
        result = _run_cli(*args, cwd=tmp_path)
        assert result.returncode == 2 and "the output is an input" in result.stderr, (args, result.stderr[-500:])
        assert "Traceback" not in result.stderr
    assert (tmp_path / "c.parquet").read_bytes() == b"input c.parquet"
    assert (tmp_path / "meta" / "curated.parquet").read_bytes() == b"input"


def test_a_command_given_another_steps_accounting_or_no_shards_says_so(tmp_path):
    """`accounting` given another step's JSON, `ingest accounting` given swapped summaries: KeyError tracebacks;
    `taxonomy curate` without shards wrote an empty "balanced" curation, exit 0, and `splits` without barcode
    shards named no option (reviewer cli)."""
    (tmp_path / "other.json").write_text('{"records": 3}')
    (tmp_path / "listing.json").write_text('{"batch": "images-1", "files": 2, "listed": 2, "rejected": 0}')
    runs = [
        (
            ["accounting", "--ingest-accounting", "other.json", "--curated", "c.parquet"]
            + ["--metadata-rejects", "r.parquet", "--splits", "s.parquet", "--split-excluded", "e.parquet"]
            + ["-o", "acc.json"],
            "other.json: not ingest's accounting",
        ),
        (
            ["ingest", "accounting", "--parse-summary", "listing.json", "-o", "ia.json", "--rejects-out", "ir.parquet"],
            "listing.json: not an export's parse summary",
        ),
        (["taxonomy", "curate", "--outdir", "cur"], "give the record shards (--records) and their barcode shards"),
        (["splits", "--curated", "c.parquet", "--outdir", "sp"], "give the barcode shards (--barcodes)"),
        (["images", "summary", "--box-corrections", "b.tsv", "-o", "s.json"], "give both"),
    ]
    for args, phrase in runs:
        result = _run_cli(*args, cwd=tmp_path)
        assert result.returncode == 2 and phrase in result.stderr and "Traceback" not in result.stderr, (
            args,
            result.stderr[-800:],
        )
    assert not (tmp_path / "cur").exists()


def test_the_same_record_shard_given_twice_is_refused_by_curation(realdata, tmp_path):
    """`taxonomy curate` given one shard twice said "balanced" with every record of it counted twice, and the
    split step then failed in a pandas traceback (reviewer cli)."""
    from bioscan_rebuild.core.errors import InputError
    from bioscan_rebuild.metadata.stage import clean_shard, curate_tables

    ingest_local([realdata / REAL_V4], [], tmp_path / "ingest")
    records = tmp_path / "ingest" / "shards" / "shard-000" / "records.parquet"
    clean_shard(records, tmp_path / "barcodes.parquet")
    with pytest.raises(InputError, match="more than once .* give each shard once"):
        curate_tables([records, records], [tmp_path / "barcodes.parquet"] * 2, tmp_path / "meta")
    assert not (tmp_path / "meta").exists()
    assert curate_tables([records], [tmp_path / "barcodes.parquet"], tmp_path / "meta")["balanced"]


def test_an_ingest_run_into_an_earlier_runs_folder_leaves_none_of_its_shards(realdata, tmp_path):
    """`ingest run -o OUT` with fewer shards or exports than an earlier run into OUT left that run's shards and
    batches there; the next steps read them beside this run's, under an accounting of this run alone (reviewer
    cli)."""
    (tmp_path / "keep").mkdir(parents=True)
    ingest_local([realdata / REAL_V4, realdata / REAL_V4], [], tmp_path, shards=4)
    (tmp_path / "shards" / "notes").mkdir()  # not the layout's: left alone
    (tmp_path / "images" / "images-5").mkdir(parents=True)  # a delivery's photos kept there (reviewer diffo)
    (tmp_path / "images" / "images-5" / "P1.jpg").write_bytes(b"photo")
    # an export kept in a folder the layout names, beside a summary of its own: an input, never removed
    delivery = tmp_path / "exports" / "export-7"
    delivery.mkdir()
    shutil.copy(realdata / REAL_V4, delivery / "export.tsv")
    (delivery / "summary.json").write_text("{}")
    elsewhere = tmp_path / "elsewhere"  # a stale shard linked from another folder: the link goes, not its target
    shutil.copytree(tmp_path / "shards" / "shard-003", elsewhere)
    (tmp_path / "shards" / "shard-009").symlink_to(elsewhere)
    with pytest.raises(FileNotFoundError):  # a run that fails removes nothing
        ingest_local([tmp_path / "missing.tsv"], [], tmp_path, shards=1)
    assert (tmp_path / "shards" / "shard-003").is_dir()
    summary = ingest_local([delivery / "export.tsv"], [], tmp_path, shards=2)
    assert sorted(p.name for p in (tmp_path / "shards").iterdir()) == ["notes", "shard-000", "shard-001"]
    assert sorted(p.name for p in (tmp_path / "exports").iterdir()) == ["export-1", "export-7"]
    assert (tmp_path / "images" / "images-5" / "P1.jpg").is_file() and (delivery / "export.tsv").is_file()
    assert (elsewhere / "accounting.json").is_file()
    # the output folder inside a delivery's photo folder: its stale shards are still this layout's (reviewer diffq)
    from bioscan_rebuild.core.params import IngestParams

    delivery = tmp_path / "photos"
    ingest_local([realdata / REAL_V4, realdata / REAL_V4], [], delivery / "ingest", shards=3)
    params = IngestParams(require_images=False)
    ingest_local([realdata / REAL_V4], [delivery], delivery / "ingest", shards=1, params=params)
    assert sorted(p.name for p in (delivery / "ingest" / "shards").iterdir()) == ["shard-000"]
    held = sum(pq.read_metadata(p).num_rows for p in (tmp_path / "shards").glob("shard-*/records.parquet"))
    assert held == summary["kept"]["records"] and (tmp_path / "keep").is_dir()
