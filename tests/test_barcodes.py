"""Barcode cleaning and QC: hand-made cases for every rule, then the real BOLD exports."""

from __future__ import annotations

import pyarrow as pa
import pytest
from Bio import SeqIO

from bioscan_rebuild.core.params import BarcodeParams
from bioscan_rebuild.ingest.bold import parse_export
from bioscan_rebuild.metadata.barcodes import clean_barcodes, write_fasta

LONG = "ACGT" * 60  # 240 bases


def clean(values, **params):
    dna, qc = clean_barcodes([f"p{i}" for i in range(len(values))], values, BarcodeParams(**params))
    return dna.to_pylist(), qc.to_pylist()


def test_gaps_whitespace_case_and_end_n():
    dna, qc = clean(["--acgt " + LONG.lower() + "\tNNNN--", "NN" + LONG + "NNN", LONG[:100] + "NNN" + LONG[100:]])
    assert dna[0] == "ACGT" + LONG and qc[0]["gap_count"] == 4 and qc[0]["whitespace_count"] == 2
    assert (
        qc[0]["lowercase"] and qc[0]["n_trailing"] == 4 and qc[0]["flags"] == "lowercase,gaps,whitespace,end_n_trimmed"
    )
    assert dna[1] == LONG and (qc[1]["n_leading"], qc[1]["n_trailing"]) == (2, 3)
    assert qc[2]["n_internal"] == 3 and qc[2]["n_longest_run"] == 3 and dna[2].count("N") == 3
    assert qc[1]["barcode_key"] == clean([LONG])[1][0]["barcode_key"]  # identity ignores end N


def test_end_n_kept_when_configured_but_identity_still_strips_them():
    dna, qc = clean(["NN" + LONG], trim_end_n=False)
    assert dna[0] == "NN" + LONG and qc[0]["barcode_key"] == clean([LONG])[1][0]["barcode_key"]


@pytest.mark.parametrize(
    "raw,reason",
    [
        (None, "no_barcode"),
        ("", "no_barcode"),
        ("---NNNN--", "no_barcode"),
        (LONG + "<br>", "invalid_barcode"),
        (LONG + "123", "invalid_barcode"),
        (LONG + "EFILPQ", "invalid_barcode"),  # protein letters
        (LONG.replace("T", "U"), "invalid_barcode"),  # RNA
        ("ACGT" * 20, "short_barcode"),
        (LONG[:200] + "RYKMSW" * 3 + LONG[:40], "ambiguous_barcode"),
    ],
)
def test_bad_barcodes_get_a_reason(raw, reason):
    dna, qc = clean([raw])
    assert dna == [None] and qc[0]["barcode_status"] == reason and qc[0]["barcode_key"] is None
    if reason == "invalid_barcode":
        assert qc[0]["invalid_chars"]


def test_ambiguity_limit_is_configurable():
    seq = LONG[:200] + "RYKMSW" * 3 + LONG[:40]
    assert clean([seq], max_ambiguity=0.1)[0][0] == seq  # 18 of 258 bases
    assert clean([LONG], min_length=241)[1][0]["barcode_status"] == "short_barcode"


def test_fasta_round_trips_through_biopython(tmp_path):
    path = tmp_path / "b.fasta"
    assert (
        write_fasta([("P1", "BOLD:AAA0001", "Diptera", LONG), ("P2", None, None, "ACGT"), ("P3", "x", "y", None)], path)
        == 2
    )
    records = list(SeqIO.parse(path, "fasta"))
    assert [r.id for r in records] == ["P1|BOLD:AAA0001|Diptera", "P2||"] and str(records[0].seq) == LONG


def _real(realdata, path):
    return pa.concat_tables([t for t, _, _ in parse_export(realdata / path, "b")])


def test_real_exports_keep_real_barcodes(realdata):
    v4 = _real(realdata, "ropensci-bold/extracted/coelioxys_combined.tsv")
    dna, qc = clean_barcodes(v4["processid"], v4["nucleotides"])
    status = qc["barcode_status"].to_pylist()
    assert v4.num_rows == 414  # COI-5P rows only (7 x 28S rejected at ingest)
    assert status.count("no_barcode") == 24  # the 24 rows without a sequence
    assert status.count("ambiguous_barcode") == 2 and status.count("ok") == 388
    gapped = [q for q in qc.to_pylist() if q["gap_count"]]
    assert len(gapped) >= 140 and all("-" not in d for d in dna.to_pylist() if d)
    assert max(qc["length"].to_pylist()) == 1515  # long real sequences are kept whole

    bcdm = _real(realdata, "bold-library-curation/resources/test_data/test_chironominae_norway_data.tsv")
    dna, qc = clean_barcodes(bcdm["processid"], bcdm["nucleotides"])
    assert bcdm.num_rows == 1648 and qc["barcode_status"].to_pylist().count("ok") == 1648
    flags = qc["flags"].to_pylist()
    assert sum("end_n_trimmed" in f for f in flags) == 36 and sum("ambiguity_codes" in f for f in flags) > 0

    odonata = _real(realdata, "bold-library-curation/resources/test_data/test_odonata_small.tsv")
    dna, qc = clean_barcodes(odonata["processid"], odonata["nucleotides"])
    rows = qc.to_pylist()
    assert sum(r["lowercase"] for r in rows) == 7
    assert all(d == d.upper() for d in dna.to_pylist() if d)


def test_every_unicode_whitespace_is_removed():
    raw = [LONG[:100] + ws + LONG[100:] for ws in ("\v", "\xa0", "\u3000", "\u2028", "\x85")]
    dna, qc = clean(raw)
    assert dna == [LONG] * 5 and qc[0]["whitespace_count"] == 1


def test_length_and_ambiguity_limits_sit_on_the_kept_side():
    """The module's rules: *fewer* than min_length bases is short, ambiguous bases *above* max_ambiguity of the
    length is ambiguous; so a barcode exactly on either limit is kept."""
    exact = "ACGT" * 50  # 200 bases = the default min_length
    assert clean([exact])[1][0]["barcode_status"] == "ok"
    assert clean([exact[:-1]])[1][0]["barcode_status"] == "short_barcode"  # 199
    # 200 bases; 5 % of 200 = 10 ambiguous bases (internal N counts) is the limit itself
    at_limit = exact[:95] + "RYKMSRYKMN" + exact[105:]
    above = exact[:95] + "RYKMSRYKMNN" + exact[106:]
    assert len(at_limit) == len(above) == 200
    dna, qc = clean([at_limit, above])
    assert dna[0] == at_limit and qc[0]["barcode_status"] == "ok"
    assert (qc[0]["ambiguity_count"], qc[0]["n_internal"]) == (9, 1)
    assert dna[1] is None and qc[1]["barcode_status"] == "ambiguous_barcode"


def test_dots_are_alignment_gaps_and_are_removed():
    """Both '-' and '.' are alignment gaps (the module docstring): removed wherever they are, and counted."""
    dna, qc = clean(["..AC.GT--" + LONG + ".-."])
    assert dna[0] == "ACGT" + LONG
    assert qc[0]["gap_count"] == 8 and qc[0]["flags"] == "gaps" and qc[0]["length"] == 244
