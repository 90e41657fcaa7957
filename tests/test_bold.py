"""BOLD export parsing: the three real layouts from ../shared/realdata, and hand-made quirks."""

from __future__ import annotations

import hashlib

import pytest

from bioscan_rebuild.core.errors import InputError
from bioscan_rebuild.core.schemas import processid_key, processid_keys, spelled_processid
from bioscan_rebuild.ingest.bold import (
    LAYOUTS,
    LayoutError,
    _split_lines,
    check_export_bytes,
    detect_layout,
    parse_export,
    read_export,
    read_header,
)

COELIOXYS = "ropensci-bold/extracted/coelioxys_combined.tsv"
BCDM2023 = "barcode-constrained-phylogeny/tests/BOLD_Public.18-Dec-2023/BOLD_Public.18-Dec-2023.tsv"
CHIRONOMINAE = "bold-library-curation/resources/test_data/test_chironominae_norway_data.tsv"
ODONATA = "bold-library-curation/resources/test_data/test_odonata_small.tsv"


def test_v4_combined_rows_missing_values_and_lineage(realdata):
    path = realdata / COELIOXYS
    everything, rejects, stats = read_export(path, "v4batch", markers=None)
    assert stats.layout == "v4"
    assert stats.data_lines == 421 and everything.num_rows == 421 and rejects.num_rows == 0
    df = everything.to_pandas()
    # Counts from shared/realdata/SOURCES.md's profile of this file (empty = missing).
    assert df["species"].isna().sum() == 29
    assert df["bin_uri"].isna().sum() == 88
    assert df["nucleotides"].isna().sum() == 24
    assert (df["lat"].isna() | df["lon"].isna()).sum() == 55
    assert df["marker_code"].value_counts().to_dict() == {"COI-5P": 390, "28S": 7}
    first = df.iloc[0]
    assert first["processid"] == "ABEE117-17" and first["order"] == "Hymenoptera"
    assert first["bin_uri"] == "BOLD:AAS0189"
    assert (first["lat"], first["lon"]) == (48.2273, 16.3919)
    assert first["nucleotides"].startswith("---")  # raw: alignment padding kept for the barcode stage
    # Lineage: physical line numbers (header = line 1) and the file's hash.
    assert df["source_line"].tolist() == list(range(2, 423))
    assert first["source_sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    # CRLF line ends: no carriage return survives in any value.
    for column in ("processid", "species", "nucleotides", "province_state"):
        assert not df[column].dropna().str.contains("\r").any()

    kept, rejects, stats = read_export(path, "v4batch")
    assert kept.num_rows == 414
    assert rejects["reason"].to_pylist() == ["unsupported_marker"] * 7


def test_bcdm2023_literal_none_and_paren_coordinates(realdata):
    records, rejects, stats = read_export(realdata / BCDM2023, "dp2023")
    assert stats.layout == "bcdm2023"
    assert records.num_rows == 999 and rejects.num_rows == 0
    df = records.to_pandas()
    assert df["species"].isna().sum() == 830
    assert df["bin_uri"].isna().sum() == 88
    assert not df["species"].eq("None").any() and not df["class"].eq("None").any()
    assert df["class"].isna().sum() == 7  # class=None rows of the 2023 package
    row = df.set_index("processid").loc["AAASF001-17"]
    assert row["coord_raw"] == "(19.3786,-88.1892)"
    assert (row["lat"], row["lon"]) == (19.3786, -88.1892)
    assert row["province_state"] == "Quintana Roo"
    assert df["lat"].notna().all()
    # The three photographed specimens of shared/realdata are rows here.
    ids = set(df["processid"])
    assert {"AACTA1595-20", "AACTA1760-20", "AACTA1927-20"} <= ids


def test_bcdm2024_keeps_coi_rows_keyed_by_record(realdata):
    everything, _, stats = read_export(realdata / CHIRONOMINAE, "dp2024", markers=None)
    assert stats.layout == "bcdm2024" and everything.num_rows == 2006
    assert everything.to_pandas()["processid"].nunique() == 1648
    records, rejects, _ = read_export(realdata / CHIRONOMINAE, "dp2024")
    df = records.to_pandas()
    assert len(df) == 1648 and df["processid"].is_unique
    assert (df["record_id"] == df["processid"] + ".COI-5P").all()
    assert rejects.num_rows == 2006 - 1648
    assert set(rejects["reason"].to_pylist()) == {"unsupported_marker"}
    row = df.set_index("processid").loc["ARCHR068-11"]
    assert row["country"] == "Norway" and row["province_state"] == "Finnmark"
    assert (row["lat"], row["lon"]) == (69.6653, 30.3321)
    assert row["species"] == "Paratanytarsus sp. 2ES"
    assert row["bin_uri"] is None or row["bin_uri"] != row["bin_uri"]  # `None` in the file
    full = everything.to_pandas()
    assert full["species"].isna().sum() == 41 and full["bin_uri"].isna().sum() == 12
    assert full["lat"].isna().sum() == 10 and full["nucleotides"].isna().sum() == 1


def test_odonata_none_marker_rows_are_kept_for_the_barcode_stage(realdata):
    records, rejects, _ = read_export(realdata / ODONATA, "odo")
    assert records.num_rows == 72 + 6 and rejects.num_rows == 7
    assert records["marker_code"].null_count == 6


HEADER_2023 = [
    "processid",
    "sampleid",
    "bin_uri",
    "phylum",
    "class",
    "order",
    "family",
    "subfamily",
    "genus",
    "species",
    "coord",
    "country",
    "province",
    "marker_code",
    "nucraw",
]


def _row(**values):
    base = {name: "None" for name in HEADER_2023}
    base.update(values)
    return "\t".join(base[name] for name in HEADER_2023)


def test_quirks_bom_blank_lines_bad_rows_and_encoding(tmp_path):
    lines = [
        "\ufeff" + "\t".join(HEADER_2023),
        _row(processid="A-1", coord="(1.5,-2.25)", marker_code="COI-5P", nucraw="acgt-N"),
        "",
        _row(processid="A-2", coord="[3, 4]", species="no_data", family="not_classified", marker_code="COI-5P"),
        "A-3\tonly\tthree",
        _row(processid="None", marker_code="COI-5P"),
        _row(processid="A-4", coord="(garbage)", marker_code="16S"),
        _row(processid="A-5", coord="", country="Canada"),
    ]
    data = "\r\n".join(lines).encode("utf-8") + b"\r\nA-6\t\xff\xfe broken\r\n"
    path = tmp_path / "quirky.tsv"
    path.write_bytes(data)
    records, rejects, stats = read_export(path, "q")
    assert stats.data_lines == 7 and stats.blank_lines == 1
    df = records.to_pandas().set_index("processid")
    assert list(df.index) == ["A-1", "A-2", "A-5"]
    assert df.loc["A-1", "source_line"] == 2 and df.loc["A-2", "source_line"] == 4
    assert (df.loc["A-1", "lat"], df.loc["A-1", "lon"]) == (1.5, -2.25)
    assert (df.loc["A-2", "lat"], df.loc["A-2", "lon"]) == (3.0, 4.0)
    assert df.loc["A-1", "nucleotides"] == "acgt-N"  # raw, cleaned later
    assert df["species"].isna().all() and df["family"].isna().all()
    assert df.loc["A-5", "country"] == "Canada" and df["province_state"].isna().all()
    reasons = dict(zip(rejects["source_line"].to_pylist(), rejects["reason"].to_pylist()))
    assert reasons == {5: "unparseable_row", 6: "missing_processid", 7: "unsupported_marker", 9: "unparseable_row"}
    details = dict(zip(rejects["source_line"].to_pylist(), rejects["detail"].to_pylist()))
    assert details[9].startswith("not valid UTF-8: byte 0xFF in column ")
    assert details[5] == "3 fields, header has 15"
    # the damaged lines still name their processid (their photos are record_rejected, not no_record)
    processids = dict(zip(rejects["source_line"].to_pylist(), rejects["processid"].to_pylist()))
    assert (processids[5], processids[9]) == ("A-3", "A-6")
    assert stats.data_lines == records.num_rows + rejects.num_rows


def test_a_sequence_without_a_marker_code_is_not_taken_for_coi(tmp_path):
    """A sequence of an unknown gene (a 28S row with its marker blanked) used to be released as the COI barcode;
    a specimen row with neither marker nor sequence (as BOLD writes for one never sequenced) still goes on."""
    path = tmp_path / "m.tsv"
    rows = [
        _row(processid="M-1", marker_code="COI-5P", nucraw="ACGT" * 60),
        _row(processid="M-2", marker_code="None", nucraw="ACGT" * 60),
        _row(processid="M-3", marker_code="None", nucraw="None"),
    ]
    path.write_text("\n".join(["\t".join(HEADER_2023), *rows]) + "\n")
    records, rejects, _ = read_export(path, "m")
    assert records["processid"].to_pylist() == ["M-1", "M-3"]
    assert rejects.select(["processid", "reason", "detail"]).to_pylist() == [
        {
            "processid": "M-2",
            "reason": "unsupported_marker",
            "detail": "a sequence without a marker code: its gene is unknown",
        }
    ]


def test_invisible_characters_in_a_processid_make_no_second_record(tmp_path):
    """A zero-width space or word joiner pasted into an id used to make a second, distinct record of the specimen."""
    path = tmp_path / "z.tsv"
    ids = ["Z-1", "Z-2\u200b", "\u2060Z-3", "\ufeffZ-4 "]
    path.write_text("\n".join(["\t".join(HEADER_2023), *(_row(processid=i, marker_code="COI-5P") for i in ids)]))
    records, rejects, _ = read_export(path, "z")
    assert records["processid"].to_pylist() == ["Z-1", "Z-2", "Z-3", "Z-4"] and rejects.num_rows == 0
    assert list(processid_keys(["z-2\u200b", " \u2060Z-3", None])) == ["Z-2", "Z-3", None]


def test_one_spelling_of_a_processid_for_exports_file_names_and_maintainer_tables(tmp_path):
    """Ingest (a column, in Arrow), file names and corrections rows (one at a time, in Python) each spelled a processid
    with their own code; a difference in white space, invisible characters or accents would leave a photo or a
    correction without its record."""
    awkward = ["\u3000BSCN1-1\u00a0", "\u200bbscn1-2\u2060", "\ufeffE\u0301T-3\u2028", "\u2003Z-4\u202f", "  ", "ẞ-5"]
    path = tmp_path / "a.tsv"
    path.write_text("\n".join(["\t".join(HEADER_2023), *(_row(processid=i, marker_code="COI-5P") for i in awkward)]))
    records, _, _ = read_export(path, "a")
    spelled = [spelled_processid(i) for i in awkward]
    assert records["processid"].to_pylist() == [i for i in spelled if i]
    assert spelled[2] == "\u00c9T-3"
    assert list(processid_keys(awkward)) == [processid_key(i) for i in spelled]


def test_place_names_and_sample_ids_are_read_in_one_unicode_form(tmp_path):
    """A province typed decomposed (NFD: e + combining acute, as macOS writes) was a second province beside the
    composed one, and the release diff listed it as changed with two values that look the same."""
    import unicodedata

    path = tmp_path / "nfd.tsv"
    rows = [
        _row(processid="U-1", country="Canada", province="Qu\u00e9bec", sampleid="S-\u00e91", marker_code="COI-5P"),
        _row(processid="U-2", country="Canada", province="Que\u0301bec", sampleid="S-e\u03011", marker_code="COI-5P"),
    ]
    path.write_text("\n".join(["\t".join(HEADER_2023), *rows]) + "\n")
    records, rejects, _ = read_export(path, "u")
    assert rejects.num_rows == 0
    assert set(records["province_state"].to_pylist()) == {"Qu\u00e9bec"}
    assert set(records["sampleid"].to_pylist()) == {"S-\u00e91"}
    assert all(unicodedata.is_normalized("NFC", c) for c in records["country"].to_pylist())


def test_mojibake_controls_reject_a_line_only_in_a_column_that_is_read(tmp_path):
    """C1 controls (U+0080-U+009F: Windows-1252 text decoded as Latin-1) in the country or sampleid used to reach
    the release; in a column the pipeline never reads (BOLD's notes hold such text) they harm nothing."""
    header = [*HEADER_2023, "notes"]
    path = tmp_path / "c1.tsv"
    lines = [
        "\t".join(header),
        _row(processid="C-1", country="Mexico\x9b2J", marker_code="COI-5P") + "\tfine",
        _row(processid="C-2", sampleid="S-2\x81", marker_code="COI-5P") + "\tfine",
        _row(processid="C-3", marker_code="COI-5P") + "\tInternational Dragonfly Fund \u00e2\x80\x93 Report",
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    records, rejects, _ = read_export(path, "c1")
    assert records["processid"].to_pylist() == ["C-3"]
    assert rejects.select(["processid", "reason", "detail"]).to_pylist() == [
        {
            "processid": "C-1",
            "reason": "unparseable_row",
            "detail": "control character U+009B in column 'country' (saved in another encoding?)",
        },
        {
            "processid": "C-2",
            "reason": "unparseable_row",
            "detail": "control character U+0081 in column 'sampleid' (saved in another encoding?)",
        },
    ]


def test_unparseable_coordinate_keeps_raw_text(tmp_path):
    path = tmp_path / "c.tsv"
    path.write_text(
        "\t".join(HEADER_2023) + "\n" + _row(processid="B-1", coord="(abc,12)", marker_code="COI-5P") + "\n"
    )
    records, _, stats = read_export(path, "c")
    row = records.to_pylist()[0]
    # half a pair that did parse says nothing reliable about the site either: both blanked, and counted
    assert row["coord_raw"] == "(abc,12)" and row["lat"] is None and row["lon"] is None
    assert stats.coordinates_unparseable == 1


def test_small_blocks_give_the_same_result(realdata):
    whole, _, _ = read_export(realdata / CHIRONOMINAE, "b")
    blocks, _, _ = read_export(realdata / CHIRONOMINAE, "b", block_bytes=10_000)
    assert whole.equals(blocks)


def test_unknown_layout_names_the_missing_columns(tmp_path):
    path = tmp_path / "x.tsv"
    path.write_text("processid\tnucraw\tcoord\n")
    with pytest.raises(LayoutError, match=r"x.tsv.*bcdm2023.*marker_code"):
        read_export(path, "x")


# --- refusing what is not an export, before its header is read ------------------------------------------------------

EMPTY = "empty file (0 bytes): not a BOLD export; was the download or copy cut short?"
UTF16 = "UTF-16 text, not UTF-8: BOLD exports are UTF-8; convert it, e.g. iconv -f UTF-16 -t UTF-8 IN > OUT"
FIVE = b"processid\tspecies\tgenus\tfamily\torder\n"  # a header of as many columns as a layout's signature
UTF32 = "UTF-32 text, not UTF-8: BOLD exports are UTF-8; convert it, e.g. iconv -f UTF-32 -t UTF-8 IN > OUT"
BINARY = "binary data (NUL bytes): not a tab-separated BOLD export"


@pytest.mark.parametrize(
    ("head", "message"),
    [
        (b"", EMPTY),
        # a byte-order mark says UTF-16 even when the text is too short to hold many NULs (3 here)
        ("\ufeffpid".encode("utf-16-le"), UTF16),
        ("\ufeffpid".encode("utf-16-be"), UTF16),
        # no BOM: more than 8 NULs in the first 64 bytes is UTF-16 ("processid" is 9 characters, 9 NULs)
        ("processid".encode("utf-16-le"), UTF16),
        # UTF-32 (its BOM begins as UTF-16's): it was called UTF-16, and converting it so gave a NUL per character
        ("\ufeffpid".encode("utf-32-le"), UTF32),
        ("\ufeffpid".encode("utf-32-be"), UTF32),
        ("processid\tsampleid".encode("utf-32-le"), UTF32),
        ("processid\tsampleid".encode("utf-32-be"), UTF32),
        # an executable's NULs fall anywhere: binary data, not text to convert (it was called UTF-16, then UTF-32)
        (
            b"\x7fELF\x02\x01\x01\x00"
            + bytes(8)
            + b"\x03\x00>\x00\x01\x00\x00\x00\x10k"
            + bytes(6)
            + b"@\x00"
            + bytes(6),
            BINARY,
        ),
        # exactly 8 NULs in the first 64 bytes is not UTF-16 (the 9th sits at byte 64), but NULs in the header: binary
        (b"A" * 56 + b"\x00" * 9, BINARY),
        # one NUL in the header line (after a tab) makes it binary, however long the file
        (b"processid\tspe\x00cies\nP1\tA\n", BINARY),
        (b"processid\tspe\x00cies", BINARY),
        # one NUL in a data line is a damaged line, rejected on its own later: not a reason to refuse the file
        (b"processid\tspecies\nP1\tA\x00b\nP2\tB\n", None),
        (b"processid\tspecies\rP1\tA\x00b\rP2\tB\r", None),  # old-Mac CR line ends: the header is still one line
        # however many NULs one damaged line holds, it is one damaged line (a field overwritten with 100 NULs)
        (b"processid\tspecies\nP1\t" + b"A" * 64 + b"\x00" * 100 + b"\nP2\tB\nP3\tC\n", None),
        # NULs in more than a tenth of the lines (and at least 2) that are not the header's shape: binary
        (b"processid\tspecies\nP1\x00A\x00b\nP2\tB\x00\tc\n", BINARY),
        (b"processid\tspecies\n" + b"".join(b"P%d\x00A\x00b\n" % i for i in range(4)) + b"Q\tB\n" * 25, BINARY),
        (b"processid\tspecies\n" + b"".join(b"P%d\x00A\x00b\n" % i for i in range(3)) + b"Q\tB\n" * 26, None),
        # ... of the header's shape they are damaged lines, each refused or read on its own (4 of 30 lines with a
        # NUL in a note made a readable export "binary data")
        (FIVE + b"P1\tA\x00b\tc\td\te\nP2\tB\x00c\tc\td\te\n", None),
        (FIVE + b"".join(b"P%d\tA\x00b\tc\td\te\n" % i for i in range(4)) + b"Q\tB\tc\td\te\n" * 25, None),
        # ... but not when the first line cannot be a header (a PDF's has no tab, nor its lines of data)
        (b"%PDF-1.5\n" + b"".join(b"obj %d\x00\x00\n" % i for i in range(4)) + b"stream\n" * 25, BINARY),
    ],
)
def test_check_export_bytes_refuses_only_what_cannot_be_an_export(head, message):
    if message is None:
        check_export_bytes(head)  # no error
    else:
        with pytest.raises(LayoutError) as refused:
            check_export_bytes(head)
        assert str(refused.value) == message  # the one line the user reads


def test_only_the_start_of_a_file_is_sniffed_for_nul_bytes(tmp_path):
    """Damaged lines after the first 64 KiB are each rejected; they do not turn the file into 'binary data'."""
    clean = [_row(processid=f"C-{i}", marker_code="COI-5P") for i in range(900)]
    assert len("\n".join(["\t".join(HEADER_2023), *clean])) > 64 << 10
    damaged = [_row(processid=f"D-{i}", species="Aus\x00bus", marker_code="COI-5P") for i in range(200)]
    path = tmp_path / "big.tsv"
    path.write_text("\n".join(["\t".join(HEADER_2023), *clean, *damaged]) + "\n")
    assert path.stat().st_size < 128 << 10  # within the first 128 KiB, 200 damaged lines of 1100 would be binary
    records, rejects, stats = read_export(path, "big")
    assert records.num_rows == 900 and rejects.num_rows == 200
    assert set(rejects["detail"].to_pylist()) == {"control character U+0000 in column 'species'"}
    assert stats.rejects == {"unparseable_row": 200}


# --- layout detection -------------------------------------------------------------------------------------------------

# The columns that identify each layout (module docstring and ../shared/spec/sources.md).
V4_COLUMNS = ["processid", "order_name", "nucleotides", "markercode", "lat", "lon"]
BCDM2023_COLUMNS = ["processid", "nucraw", "marker_code", "coord", "province"]
BCDM2024_COLUMNS = ["processid", "record_id", "nuc", "marker_code", "coord", "country/ocean"]


@pytest.mark.parametrize(
    ("header", "layout"),
    [(V4_COLUMNS, "v4"), (BCDM2023_COLUMNS, "bcdm2023"), (BCDM2024_COLUMNS, "bcdm2024")],
)
def test_the_identifying_columns_name_the_layout_and_every_read_column_must_be_there(header, layout):
    full = [*header, *(name for name in LAYOUTS[layout].values() if name not in header)]
    assert detect_layout(full) == layout
    assert detect_layout(["extra", *reversed(full)]) == layout  # order and other columns do not matter
    # the identifying columns alone: the layout is known, but the fields it reads are not all there (this used to
    # be a KeyError traceback naming neither the file nor the fix)
    with pytest.raises(LayoutError) as refused:
        detect_layout(header)
    missing = sorted(set(LAYOUTS[layout].values()) - set(header))
    assert str(refused.value) == (
        f"a {layout} export, but the header lacks columns {missing}; if the export truly has no such data, "
        "add them as empty columns"
    )
    without_subfamily = [name for name in full if name not in ("subfamily", "subfamily_name")]
    with pytest.raises(LayoutError, match="lacks columns \\['subfamily"):
        detect_layout(without_subfamily)


def test_a_column_named_twice_is_refused_with_both_positions():
    with pytest.raises(LayoutError) as refused:
        detect_layout(["processid", "species", "nucraw", "species"])
    # positions count from 1, as a spreadsheet shows them
    assert str(refused.value) == (
        "column 'species' appears twice in the header (columns 2 and 4); remove or rename one"
    )


def test_an_unknown_header_names_the_closest_layout_and_its_missing_columns():
    with pytest.raises(LayoutError) as refused:
        detect_layout(["processid", "order_name", "nucleotides", "markercode", "lat", "species"])
    # v4 lacks only lon; each BCDM layout lacks at least three columns
    assert str(refused.value) == "not a known BOLD export layout; closest is 'v4', which also needs columns ['lon']"


def test_a_header_in_another_case_or_none_at_all_is_named_as_such():
    """A header in another case ("ProcessID"), or none at all (a BOM alone, blank lines), was refused as "closest
    is 'bcdm2023', which also needs columns ['processid']": a missing column where there was one (reviewer
    boldfuzz)."""
    with pytest.raises(LayoutError) as refused:
        detect_layout(["ProcessID", *BCDM2023_COLUMNS[1:]])
    assert str(refused.value) == (
        "a bcdm2023 export whose column names differ from BOLD's in case: rename 'ProcessID' to 'processid' "
        "(names are matched exactly)"
    )
    for header in ([""], ["", ""]):
        with pytest.raises(LayoutError, match="^no header line: the file holds no column names"):
            detect_layout(header)
    # every name upper-cased (it was compared with bcdm2023), or a column read beyond the layout's signature in
    # another case (the message said to add it as an empty column: every record's field blank; reviewer diffi)
    from bioscan_rebuild.ingest.bold import LAYOUTS

    with pytest.raises(LayoutError, match="^a v4 export whose column names differ from BOLD's in case: rename 'LAT'"):
        detect_layout([name.upper() for name in V4_COLUMNS])
    read = sorted(set(LAYOUTS["v4"].values()))
    recased = [("Species_Name" if name == "species_name" else name) for name in read]
    with pytest.raises(LayoutError) as refused:
        detect_layout(recased)
    assert str(refused.value) == (
        "a v4 export whose column names differ from BOLD's in case: rename 'Species_Name' to 'species_name' "
        "(names are matched exactly)"
    )


def test_a_header_that_fits_two_layouts_is_refused_naming_what_each_alone_has():
    """It said "closest is 'bcdm2023', which also needs columns []": nothing to act on."""
    with pytest.raises(LayoutError) as refused:
        detect_layout(V4_COLUMNS + BCDM2023_COLUMNS[1:])
    assert str(refused.value) == (
        "the header has the columns of more than one BOLD export layout (v4, bcdm2023): v4 alone has "
        "['lat', 'lon', 'markercode', 'nucleotides', 'order_name']; bcdm2023 alone has ['nucraw', 'province']; "
        "keep the columns of one layout"
    )


# --- the header line and the line splitter ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "header"),
    [
        (b"", [""]),  # an empty file has one empty header field
        (b"processid\tx", ["processid", "x"]),  # no line end at all
        (b"a\tb\rc\td\r", ["a", "b"]),  # lone CR ends the header
        (b"\xef\xbb\xbfXa\tb c\r\nrow\n", ["Xa", "b c"]),  # only the BOM is stripped; spaces stay inside a name
        (b'"province "\t" x"\n', ["province", "x"]),  # spaces inside quotes go too (they were kept: reviewer boldfuzz)
        (b"processid\tn\xe9\n", ["processid", "n\ufffd"]),  # a Latin-1 header byte reads as U+FFFD, no crash
    ],
)
def test_read_header(tmp_path, data, header):
    path = tmp_path / "h.tsv"
    path.write_bytes(data)
    assert read_header(path) == header


# Expected blocks worked out by hand: a block yields exactly the lines that end inside it (the rest waits for the
# next block), numbered from the line number of its first line; LF, CRLF and a lone CR each end one line.
@pytest.mark.parametrize(
    ("data", "block_bytes", "blocks"),
    [
        (b"", 4, []),
        (b"a\nb\nc\n", 100, [(1, [b"a", b"b", b"c"])]),
        (b"a\nb\nc\n", 4, [(1, [b"a", b"b"]), (3, [b"c"])]),  # the first block ends exactly at a line end
        (b"a\n\nb\n", 2, [(1, [b"a"]), (2, [b""]), (3, [b"b"])]),  # a block that starts with its only LF
        (b"abcdef\ngh\n", 3, [(1, [b"abcdef"]), (2, [b"gh"])]),  # a line longer than a block
        (b"a\r\nb\r\n", 100, [(1, [b"a", b"b"])]),
        (b"ab\r\ncd\r\n", 3, [(1, [b"ab"]), (2, [b"cd"])]),  # a CRLF cut in two by the block boundary
        (b"a\rb\r", 100, [(1, [b"a"]), (2, [b"b"])]),
        (b"abc\rdef\r", 4, [(1, [b"abc"]), (2, [b"def"])]),  # a lone CR as the last byte of a block without LF
        (b"a\nb\rc\n", 4, [(1, [b"a"]), (2, [b"b", b"c"])]),  # a lone CR as the last byte of a block with an LF
        (b"h\nx\ty", 100, [(1, [b"h"]), (2, [b"x\ty"])]),  # the last line has no line end
    ],
)
def test_split_lines_blocks(tmp_path, data, block_bytes, blocks):
    path = tmp_path / "s.tsv"
    path.write_bytes(data)
    assert list(_split_lines(path, block_bytes)) == blocks


# --- v4 coordinates: lat and lon columns ----------------------------------------------------------------------------

V4_HEADER = [
    "processid",
    "sampleid",
    "phylum_name",
    "class_name",
    "order_name",
    "family_name",
    "subfamily_name",
    "genus_name",
    "bin_uri",
    "nucleotides",
    "markercode",
    "country",
    "province_state",
    "lat",
    "lon",
    "species_name",  # last on purpose: the last field of a line is read verbatim
]


def _v4_file(path, lat: str, lon: str):
    values = dict.fromkeys(V4_HEADER, "")
    values.update(processid="P1", markercode="COI-5P", lat=lat, lon=lon, species_name="Coelioxys sp. X")
    path.write_text("\t".join(V4_HEADER) + "\n" + "\t".join(values[name] for name in V4_HEADER) + "\n")
    return path


# (lat, lon) -> (coord_raw, lat, lon, out of range, not a number): coord_raw is "lat; lon" as the export said
# (empty = missing); a value outside [-90, 90] / [-180, 180] blanks the pair and counts once; so does a given value
# that is not a number (it used to vanish uncounted, keeping the other half); so does a missing half: one number is
# no site (it used to stay, while the BCDM layouts' "(45.2,None)" blanked both).
@pytest.mark.parametrize(
    ("lat", "lon", "expected"),
    [
        ("45", "", ("45; ", None, None, 0, 1)),
        ("", "10", ("; 10", None, None, 0, 1)),
        ("", "", (None, None, None, 0, 0)),
        ("90", "180", ("90; 180", 90.0, 180.0, 0, 0)),
        ("-90", "-180", ("-90; -180", -90.0, -180.0, 0, 0)),
        ("90.5", "0", ("90.5; 0", None, None, 1, 0)),
        ("0", "180.5", ("0; 180.5", None, None, 1, 0)),
        ("-90.5", "", ("-90.5; ", None, None, 0, 1)),  # counted once
        ("", "-180.5", ("; -180.5", None, None, 0, 1)),
        ("4.5e1", "1.5E2", ("4.5e1; 1.5E2", 45.0, 150.0, 0, 0)),
        (" +12.5 ", ".5", ("+12.5; .5", 12.5, 0.5, 0, 0)),
        ("abc", "10", ("abc; 10", None, None, 0, 1)),
        ("45", "1,5", ("45; 1,5", None, None, 0, 1)),
        ("45°30'N", "", ("45°30'N; ", None, None, 0, 1)),
        ("inf", "nan", ("inf; nan", None, None, 0, 1)),
        ("None", "10", ("; 10", None, None, 0, 1)),  # a missing-value token is missing: a half again
        ("NA", "10", ("NA; 10", None, None, 0, 1)),  # not one by default (ingest.missing_values)
    ],
)
def test_v4_coordinates(tmp_path, lat, lon, expected):
    records, rejects, stats = read_export(_v4_file(tmp_path / "v4.tsv", lat, lon), "v4")
    (row,) = records.to_pylist()
    counts = (stats.coordinates_out_of_range, stats.coordinates_unparseable)
    assert (row["coord_raw"], row["lat"], row["lon"], *counts) == expected
    assert row["species"] == "Coelioxys sp. X" and rejects.num_rows == 0


@pytest.mark.parametrize(
    ("coord", "expected"),
    [
        ("(45.5,-10)", (45.5, -10.0, 0, 0)),
        ("[45.5, -10]", (45.5, -10.0, 0, 0)),
        ("(95,10)", (None, None, 1, 0)),
        ("(45.5 N, 10 W)", (None, None, 0, 1)),
        ("(45.5, NA)", (None, None, 0, 1)),
        ("45.5;10", (None, None, 0, 1)),
        ("", (None, None, 0, 0)),
    ],
)
def test_bcdm_coordinates_that_are_not_two_numbers_are_blanked_and_counted(tmp_path, coord, expected):
    path = tmp_path / "bcdm.tsv"
    path.write_text("\t".join(HEADER_2023) + "\n" + _row(processid="P1", marker_code="COI-5P", coord=coord) + "\n")
    records, _, stats = read_export(path, "bcdm")
    (row,) = records.to_pylist()
    assert (row["lat"], row["lon"], stats.coordinates_out_of_range, stats.coordinates_unparseable) == expected
    assert row["coord_raw"] == (coord or None)


# --- every line accounted for: records, rejects and their rows --------------------------------------------------------


def _reject_file(path):
    lines = [
        "\t".join(HEADER_2023),
        _row(processid=" A-1 ", marker_code="COI-5P"),  # 2: kept, trimmed
        "",  # 3: blank
        "only\tthree\tfields",  # 4
        _row(processid="  ", marker_code="COI-5P"),  # 5: white space only = no processid
        _row(processid="A/2", marker_code="16S"),  # 6: a path separator; its marker does not matter then
        _row(processid="A-3", marker_code="16S"),  # 7
        _row(processid="Z", marker_code="None"),  # 8: kept: one character is a processid; no marker is kept
        _row(processid="CAFE\u0301-4", marker_code="COI-5P"),  # 9: kept, in NFC
        "",  # 10: blank
    ]
    path.write_text("\n".join(lines) + "\n")
    return lines


@pytest.mark.parametrize("block_bytes", [1 << 20, 50])
def test_every_line_is_a_record_a_reject_or_blank(tmp_path, block_bytes):
    path = tmp_path / "r.tsv"
    lines = _reject_file(path)
    records, rejects, stats = read_export(path, "rb", block_bytes=block_bytes)
    assert records["processid"].to_pylist() == ["A-1", "Z", "CAF\u00c9-4"]
    assert records["source_line"].to_pylist() == [2, 8, 9]
    assert set(records["source_file"].to_pylist()) == {str(path)} and set(records["batch"].to_pylist()) == {"rb"}
    assert (stats.data_lines, stats.blank_lines, stats.records) == (7, 2, 3)
    assert stats.rejects == {
        "unparseable_row": 1,
        "missing_processid": 1,
        "invalid_processid": 1,
        "unsupported_marker": 1,
    }
    common = {"kind": "record", "batch": "rb", "source_file": str(path), "image_path": None, "image_sha256": None}
    got = sorted(rejects.to_pylist(), key=lambda row: row["source_line"])
    invalid_raw = got[2].pop("raw")
    assert got == [
        {**common, "reason": "unparseable_row", "detail": "3 fields, header has 15", "processid": None,
         "source_line": 4, "raw": lines[3]},
        {**common, "reason": "missing_processid", "detail": "no processid", "processid": None, "source_line": 5,
         "raw": lines[4]},
        {**common, "reason": "invalid_processid", "detail": "a path separator (/ or \\) in the processid",
         "processid": "A/2", "source_line": 6},
        {**common, "reason": "unsupported_marker", "detail": "marker '16S'", "processid": "A-3", "source_line": 7,
         "raw": lines[6]},
    ]  # fmt: skip
    assert invalid_raw in (None, lines[5])  # a preview is optional here: the processid itself says what is wrong


def test_a_reject_preview_is_the_first_2000_characters(tmp_path):
    line = _row(processid="L-1", marker_code="16S", nucraw="ACGT" * 700)
    path = tmp_path / "long.tsv"
    path.write_text("\t".join(HEADER_2023) + "\n" + line + "\n")
    _, rejects, _ = read_export(path, "l")
    (reject,) = rejects.to_pylist()
    assert reject["reason"] == "unsupported_marker" and reject["raw"] == line[:2000]
    path.write_text("\t".join(HEADER_2023) + "\n" + "X" * 2500 + "\n")  # one field: unparseable
    _, rejects, _ = read_export(path, "l")
    assert rejects["reason"].to_pylist() == ["unparseable_row"] and rejects["raw"].to_pylist() == ["X" * 2000]


def test_a_bad_byte_in_a_column_beyond_the_header_is_named_by_number(tmp_path):
    path = tmp_path / "extra.tsv"
    row = _row(processid="E-1", marker_code="COI-5P") + "\t"
    path.write_bytes(("\t".join(HEADER_2023) + "\n" + row).encode() + b"caf\xe9\n")
    _, rejects, _ = read_export(path, "e")
    (reject,) = rejects.to_pylist()
    # the header has 15 columns; the byte sits in the 16th field
    assert reject["detail"] == (
        "not valid UTF-8: byte 0xE9 in column #16 (a line saved as Latin-1 or Windows-1252? save the export as UTF-8)"
    )


def test_no_marker_accepted_rejects_every_sequenced_row(tmp_path):
    path = tmp_path / "m.tsv"
    path.write_text(
        "\t".join(HEADER_2023)
        + "\n"
        + _row(processid="M-1", marker_code="COI-5P")
        + "\n"
        + _row(processid="M-2", marker_code="None")
        + "\n"
    )
    records, rejects, _ = read_export(path, "m", markers=())
    assert records["processid"].to_pylist() == ["M-2"]
    assert rejects["detail"].to_pylist() == ["marker 'COI-5P'"]


def test_without_missing_value_tokens_only_an_empty_cell_is_missing(tmp_path):
    """Empty is missing in every layout (sources.md), whatever the configured tokens: without "" among them an
    empty cell was kept as text, and a specimen row with no marker and no sequence was refused as a sequence of
    an unknown gene."""
    path = tmp_path / "t.tsv"
    rows = [_row(processid="T-1", species="", family="no_data"), _row(processid="T-2", marker_code="", nucraw="")]
    path.write_text("\t".join(HEADER_2023) + "\n" + "\n".join(rows) + "\n")
    records, rejects, _ = read_export(path, "t", missing_values=("None",))
    assert records["processid"].to_pylist() == ["T-1", "T-2"] and rejects.num_rows == 0
    row = records.to_pylist()[0]
    assert (row["species"], row["family"], row["genus"]) == (None, "no_data", None)
    records, _, _ = read_export(path, "t", missing_values=(), markers=None)
    row = records.to_pylist()[0]
    assert (row["species"], row["family"], row["genus"]) == (None, "no_data", "None")


def test_source_name_and_default_batch(tmp_path):
    path = _v4_file(tmp_path / "v4.tsv", "1", "2")
    records, _, _ = read_export(path, source_name="delivery-7.tsv")
    assert records["source_file"].to_pylist() == ["delivery-7.tsv"] and records["batch"].to_pylist() == ["adhoc"]
    (tmp_path / "bad.tsv").write_text("processid\tspecies\n")
    with pytest.raises(LayoutError, match=r"^delivery-7\.tsv: not a known BOLD export layout"):
        read_export(tmp_path / "bad.tsv", source_name="delivery-7.tsv")


def _one_line_per_block(path, rows: list[dict]) -> int:
    """A v4 export whose lines (header included) all have the same length; returns that length with its LF."""
    header = "\t".join(V4_HEADER)
    lines = []
    for row in rows:
        values = dict.fromkeys(V4_HEADER, "")
        values.update(row)
        line = "\t".join(values[name] for name in V4_HEADER)
        values["sampleid"] = "S" * (len(header) - len(line))  # pad every line to the header's length
        lines.append("\t".join(values[name] for name in V4_HEADER))
    assert {len(line) for line in lines} == {len(header)}
    path.write_text("\n".join([header, *lines]) + "\n")
    return len(header) + 1


def test_each_block_yields_the_lines_that_end_in_it_and_stats_add_up(tmp_path):
    path = tmp_path / "blocks.tsv"
    rows = [
        {"processid": "P1", "markercode": "COI-5P", "lat": "95", "lon": "0"},  # kept, coordinates blanked
        {"processid": "P2", "markercode": "16S"},
        {"processid": "P3", "markercode": "COI-5P", "lat": "-95", "lon": "0"},  # kept, coordinates blanked
        {"processid": "P4", "markercode": "16S"},
    ]
    line_bytes = _one_line_per_block(path, rows)
    blocks = list(parse_export(path, "b", block_bytes=line_bytes))  # a block ends exactly where a line ends
    # one block per line: the header's block has no rows, then one row each
    assert [(records.num_rows, rejects.num_rows) for records, rejects, _ in blocks] == [
        (0, 0),
        (1, 0),
        (0, 1),
        (1, 0),
        (0, 1),
    ]
    stats = blocks[-1][2]  # one object, final after the last block
    assert (stats.data_lines, stats.records, stats.coordinates_out_of_range) == (4, 2, 2)
    assert stats.rejects == {"unsupported_marker": 2}


def test_a_file_that_grows_while_it_is_read_is_refused(tmp_path):
    path = tmp_path / "growing.tsv"
    line_bytes = _one_line_per_block(path, [{"processid": "P1", "markercode": "COI-5P"}] * 2)
    blocks = parse_export(path, "b", block_bytes=line_bytes)
    next(blocks)
    with open(path, "a") as handle:  # another process is still writing the delivery
        handle.write("P9\n")
    with pytest.raises(InputError) as refused:
        list(blocks)
    assert str(refused.value) == (
        f"{path}: the file changed while it was read (still being written?): run again once it is complete"
    )


def test_the_missing_value_flag_adds_a_token_to_the_configured_ones():
    """`ingest parse --missing-value NA` replaced the configured tokens: "None" and "no_data" became names."""
    from bioscan_rebuild.cli.ingest import _ingest_params
    from bioscan_rebuild.cli.main import build_parser

    args = build_parser().parse_args(["ingest", "parse", "x.tsv", "--batch", "b", "--shards", "1", "--outdir", "o"])
    assert "NA" not in _ingest_params(args).missing_values
    args = build_parser().parse_args(
        ["ingest", "parse", "x.tsv", "--batch", "b", "--shards", "1", "--outdir", "o", "--missing-value", "NA"]
    )
    assert _ingest_params(args).missing_values == ("", "None", "not_classified", "no_data", "NA")
