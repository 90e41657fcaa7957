"""Barcode cleaning and QC: hand-made cases for every rule, then the real BOLD exports."""

from __future__ import annotations

import hashlib

import pyarrow as pa
import pytest
from Bio import SeqIO

from bioscan_rebuild.core.params import BarcodeParams
from bioscan_rebuild.ingest.bold import parse_export
from bioscan_rebuild.metadata.barcodes import clean_barcodes, md5_hex, write_fasta
from conftest import REPO

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
        # a cell saying there is none (R's NA was one base A after the end N, and rejected as short)
        ("NA", "no_barcode"),
        (" n/a ", "no_barcode"),
        ("null", "no_barcode"),
        ("NaN", "no_barcode"),
        (LONG + "<br>", "invalid_barcode"),
        (LONG + "123", "invalid_barcode"),
        (LONG + "EFILPQ", "invalid_barcode"),  # protein letters
        (LONG.replace("T", "U"), "invalid_barcode"),  # RNA
        ("ACGT" * 20, "short_barcode"),
        (LONG * 9, "long_barcode"),  # 2,160 bases: a 200,000-base cell was released as a barcode
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
    assert clean([LONG], max_length=239)[1][0]["barcode_status"] == "long_barcode"
    assert clean(["NN" + LONG + "NN"], max_length=240)[0][0] == LONG  # end N are no bases


def test_fasta_round_trips_through_biopython(tmp_path):
    path = tmp_path / "b.fasta"
    assert (
        write_fasta([("P1", "BOLD:AAA0001", "Diptera", LONG), ("P2", None, None, "ACGT"), ("P3", "x", "y", None)], path)
        == 2
    )
    records = list(SeqIO.parse(path, "fasta"))
    assert [r.id for r in records] == ["P1|BOLD:AAA0001|Diptera", "P2||"] and str(records[0].seq) == LONG


def test_fasta_is_utf8_whatever_the_locale_and_never_left_half_written(tmp_path):
    """The FASTA was written in place in the locale's encoding: a taxon "Psychóda" failed under LC_ALL=C, and an
    interrupted run left a partial barcodes.fasta under its final name."""
    import subprocess
    import sys

    path = tmp_path / "b.fasta"
    code = (
        "import sys; from bioscan_rebuild.metadata.barcodes import write_fasta; "
        "write_fasta([('P1', 'BOLD:AAA0001', 'Psych\\u00f3da', 'ACGT')], sys.argv[1])"
    )
    env = {"PYTHONPATH": str(REPO / "workflow"), "LC_ALL": "C", "PYTHONUTF8": "0"}
    subprocess.run([sys.executable, "-c", code, str(path)], env=env, check=True, capture_output=True)
    assert path.read_bytes() == ">P1|BOLD:AAA0001|Psych\u00f3da\nACGT\n".encode()

    def interrupted():
        yield ("P2", None, None, "ACGT")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_fasta(interrupted(), path)
    assert path.read_bytes().startswith(b">P1|") and list(tmp_path.iterdir()) == [path]


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
    # a limit whose product with the length is not exact in floating point (0.29 * 100 = 28.999999999999996)
    dna, qc = clean(["R" * 29 + "A" * 71, "R" * 58 + "A" * 142, "R" * 30 + "A" * 70], min_length=1, max_ambiguity=0.29)
    assert [q["barcode_status"] for q in qc] == ["ok", "ok", "ambiguous_barcode"]


def test_dots_are_alignment_gaps_and_are_removed():
    """Both '-' and '.' are alignment gaps (the module docstring): removed wherever they are, and counted."""
    dna, qc = clean(["..AC.GT--" + LONG + ".-."])
    assert dna[0] == "ACGT" + LONG
    assert qc[0]["gap_count"] == 8 and qc[0]["flags"] == "gaps" and qc[0]["length"] == 244


def test_a_missing_sequence_has_an_all_zero_qc_row():
    """No sequence at all: nothing was removed, trimmed or counted, so every count is 0, nothing is flagged and there
    is no identity (the QC schema: raw_length is 0 when missing)."""
    dna, qc = clean([None])
    assert dna == [None]
    assert qc[0] == {
        "processid": "p0",
        "barcode_status": "no_barcode",
        "raw_length": 0,
        "length": 0,
        "gap_count": 0,
        "whitespace_count": 0,
        "lowercase": False,
        "n_leading": 0,
        "n_trailing": 0,
        "n_internal": 0,
        "n_longest_run": 0,
        "ambiguity_count": 0,
        "invalid_chars": None,
        "flags": "",
        "barcode_key": None,
    }


@pytest.mark.parametrize(
    "insert,flag,count",
    [
        ("-", "gaps", ("gap_count", 1)),
        (".", "gaps", ("gap_count", 1)),
        (" ", "whitespace", ("whitespace_count", 1)),
        ("N", "internal_n", ("n_internal", 1)),
        ("R", "ambiguity_codes", ("ambiguity_count", 1)),
    ],
)
def test_one_occurrence_is_enough_to_flag(insert, flag, count):
    """``flags`` says what cleaning touched: a single gap, space, internal N or ambiguity code is already something
    (and 1 ambiguous base of 241 is far below the 5 % limit, so the barcode is kept)."""
    dna, qc = clean([LONG[:100] + insert + LONG[100:]])
    assert qc[0]["flags"] == flag and qc[0][count[0]] == count[1] and qc[0]["barcode_status"] == "ok"
    assert dna[0] == LONG[:100] + insert.strip("-. ") + LONG[100:]  # gaps and spaces go, N and R stay


def test_a_clean_barcode_has_no_flags():
    dna, qc = clean([LONG])
    assert dna == [LONG] and qc[0]["flags"] == "" and qc[0]["length"] == 240


def test_one_end_n_is_trimmed_and_length_counts_the_trimmed_sequence():
    dna, qc = clean(["N" + LONG, "NN" + LONG[:199]])
    assert dna[0] == LONG and qc[0]["flags"] == "end_n_trimmed" and (qc[0]["n_leading"], qc[0]["length"]) == (1, 240)
    # step 4 (trim) comes before step 5 (length): 2 end N + 199 bases is 199 bases, fewer than min_length 200
    assert dna[1] is None and qc[1]["barcode_status"] == "short_barcode" and qc[1]["length"] == 199


def test_untrimmed_end_n_are_flagged_end_n_and_counted_in_the_length():
    """With trim_end_n off the cleaned sequence keeps its end N: its length counts them (2 + 240 + 1), and the flag
    says they are there (``end_n``) rather than that they were trimmed (``end_n_trimmed``)."""
    dna, qc = clean(["NN" + LONG + "N"], trim_end_n=False)
    assert dna[0] == "NN" + LONG + "N" and qc[0]["length"] == 243 and qc[0]["flags"] == "end_n"
    assert (qc[0]["n_leading"], qc[0]["n_trailing"], qc[0]["n_internal"]) == (2, 1, 0)


def test_a_one_base_barcode_at_min_length_one():
    """min_length 1 (the schema's minimum) keeps one base; one ambiguity code in one base is 100 % of the length,
    above max_ambiguity 0.5; 0 of 1 is not."""
    dna, qc = clean(["A", "R"], min_length=1, max_ambiguity=0.5)
    assert dna == ["A", None] and [q["barcode_status"] for q in qc] == ["ok", "ambiguous_barcode"]
    assert qc[0]["length"] == 1 and qc[1]["ambiguity_count"] == 1


def test_invalid_characters_are_reported_distinct_and_sorted():
    # one character outside the alphabet is enough ("U": RNA); "3<1" reports each once, in code-point order
    dna, qc = clean([LONG + "U", LONG[:120] + "3<1" + LONG[120:] + "1"])
    assert dna == [None, None] and [q["barcode_status"] for q in qc] == ["invalid_barcode"] * 2
    assert [q["invalid_chars"] for q in qc] == ["U", "13<"]


def test_the_invalid_characters_detail_is_capped_at_40():
    """A pasted text blob must not flood the rejects table: the detail keeps the first 40 distinct characters.
    50 circled numbers (U+2460.., no case, not whitespace) given in reverse come back as the 40 lowest."""
    blob = "".join(chr(c) for c in range(0x2460, 0x2460 + 50))
    _, qc = clean([LONG + blob[::-1]])
    assert qc[0]["invalid_chars"] == "".join(chr(c) for c in range(0x2460, 0x2460 + 40))


def test_barcode_key_is_the_md5_of_the_stripped_cleaned_sequence():
    # the module docstring: md5 of the cleaned sequence with its end N stripped (lower case and gaps cleaned first)
    _, qc = clean(["nn-" + LONG.lower() + " n"])
    assert qc[0]["barcode_key"] == hashlib.md5(LONG.encode("ascii")).hexdigest()


def test_md5_hex_keeps_missing_values_missing():
    """md5_hex: one digest per value, None stays None, equal values share a digest."""
    digests = md5_hex(["ACGT", None, "ACGT", "ACGTN"])
    assert list(digests) == [
        hashlib.md5(b"ACGT").hexdigest(),
        None,
        hashlib.md5(b"ACGT").hexdigest(),
        hashlib.md5(b"ACGTN").hexdigest(),
    ]
    assert list(md5_hex([])) == [] and list(md5_hex([None])) == [None]


def test_arrow_input_is_cleaned_in_its_own_string_type():
    """Shards arrive as Arrow columns (chunked, and large_string where 64-bit offsets are needed: a full release's
    barcodes pass 2 GB). They are cleaned as a list would be, and a large_string column is not narrowed to the
    32-bit string type."""
    raw = ["--" + LONG.lower(), None, LONG + "<br>"]
    expected_dna, expected_qc = clean(raw)
    chunked = pa.chunked_array([pa.array(raw[:1], pa.string()), pa.array(raw[1:], pa.string())])
    large = pa.array(raw, pa.large_string())
    for column in (chunked, large):
        dna, qc = clean_barcodes(["p0", "p1", "p2"], column)
        assert dna.to_pylist() == expected_dna == [LONG, None, None] and qc.to_pylist() == expected_qc
    assert clean_barcodes(["p0", "p1", "p2"], large)[0].type == pa.large_string()


def test_fasta_headers_carry_no_description(tmp_path):
    """The header is exactly ``>processid|dna_bin|taxon``: nothing after the id (Biopython would otherwise write a
    description such as ``<unknown description>``)."""
    path = tmp_path / "b.fasta"
    write_fasta([("P1", "BOLD:AAA0001", "Diptera", "ACGT"), ("P2", None, None, "AC")], path)
    assert path.read_text().splitlines() == [">P1|BOLD:AAA0001|Diptera", "ACGT", ">P2||", "AC"]


def test_processids_must_be_text():
    """processid is text (the QC schema's string column): a numeric column passed by mistake is refused, not turned
    into "1234" that would match no record."""
    with pytest.raises(TypeError):
        clean_barcodes([1234], [LONG])


def test_letters_that_upper_case_into_the_alphabet_are_invalid():
    """Unicode upper-cases the long s "ſ" to "S" and the dotless "ı" to "I": they used to pass as an IUPAC code
    (flagged only as ``ambiguity_codes``). The alphabet is judged on the characters as given."""
    dna, qc = clean([LONG[:120] + "ſ" + LONG[120:], LONG + "acgtn"])
    assert dna[0] is None and qc[0]["barcode_status"] == "invalid_barcode" and qc[0]["invalid_chars"] == "ſ"
    assert dna[1] == LONG + "ACGT" and qc[1]["lowercase"]  # plain lower case still cleans


def test_kept_end_n_are_no_bases_for_min_length():
    """With trim_end_n off, 300 end N around 10 bases used to pass min_length 200 as 310 'bases'."""
    dna, qc = clean(["N" * 300 + "ACGTACGTAC", "NN" + LONG], trim_end_n=False)
    assert dna[0] is None and qc[0]["barcode_status"] == "short_barcode"
    assert dna[1] == "NN" + LONG and qc[1]["barcode_status"] == "ok"


def test_limits_that_refuse_every_record_are_refused_by_the_commands_too():
    """`barcodes clean --params '{"min_length": 700, "max_length": 600}'` rejected every barcode as long_barcode,
    exit 0; `detect --image-params '{"min_side": 800}'` made every photo too_small."""
    from bioscan_rebuild.core.errors import InputError
    from bioscan_rebuild.core.params import BarcodeParams, ImageParams

    with pytest.raises(InputError, match="min_length 700 is above barcodes.max_length 600"):
        BarcodeParams(min_length=700, max_length=600)
    with pytest.raises(InputError, match=r"min_side 800 is above the short side .* \[1024, 768\]"):
        ImageParams(min_side=800)
    assert BarcodeParams(min_length=600, max_length=600).max_length == 600
    assert ImageParams(min_side=768).min_side == 768
