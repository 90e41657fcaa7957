"""BOLD export parsing: the three real layouts from ../shared/realdata, and hand-made quirks."""

from __future__ import annotations

import hashlib

import pytest

from bioscan_rebuild.ingest.bold import LayoutError, read_export

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
    assert details[9].startswith("not valid UTF-8: byte 0xFF in column ") and details[5] == "3 fields, header has 15"
    assert stats.data_lines == records.num_rows + rejects.num_rows


def test_unparseable_coordinate_keeps_raw_text(tmp_path):
    path = tmp_path / "c.tsv"
    path.write_text(
        "\t".join(HEADER_2023) + "\n" + _row(processid="B-1", coord="(abc,12)", marker_code="COI-5P") + "\n"
    )
    records, _, _ = read_export(path, "c")
    row = records.to_pylist()[0]
    assert row["coord_raw"] == "(abc,12)" and row["lat"] is None and row["lon"] == 12.0


def test_small_blocks_give_the_same_result(realdata):
    whole, _, _ = read_export(realdata / CHIRONOMINAE, "b")
    blocks, _, _ = read_export(realdata / CHIRONOMINAE, "b", block_bytes=10_000)
    assert whole.equals(blocks)


def test_unknown_layout_names_the_missing_columns(tmp_path):
    path = tmp_path / "x.tsv"
    path.write_text("processid\tnucraw\tcoord\n")
    with pytest.raises(LayoutError, match=r"x.tsv.*bcdm2023.*marker_code"):
        read_export(path, "x")
