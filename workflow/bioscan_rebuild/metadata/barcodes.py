"""DNA barcode cleaning and QC, vectorised with Arrow string kernels (no per-record Python on the hot path).

What cleaning means -- the release's ``dna_barcode`` is the raw sequence after, in this order:
1. every whitespace character and alignment gap (``-``, ``.``) removed, wherever it is;
2. upper-cased;
3. checked against the IUPAC nucleotide alphabet (Biopython's ``ambiguous_dna_letters``:
   A C G T R Y S W K M B D H V N). Anything else (digits, HTML, protein-only letters, ``U``) rejects the
   record: ``invalid_barcode``, with the offending characters in the detail;
4. leading and trailing ``N`` trimmed (``trim_end_n``, default on);
5. then: nothing left (or no sequence at all, or a cell that says so: ``NA``, ``N/A``, ``nan``, ``null``, ``none``)
   -> ``no_barcode``; fewer than ``min_length`` bases -> ``short_barcode``; more than ``max_length`` (2,000: no
   COI-5P barcode is that long) -> ``long_barcode``; ambiguous bases (internal ``N`` + the other IUPAC codes)
   above ``max_ambiguity`` of the length -> ``ambiguous_barcode``.
Nothing else is changed: no base is ever substituted, nothing is cut to 660 nt (loaders do that).
``barcode_key`` = md5 of the cleaned sequence with its end ``N`` stripped -- the barcode identity used by the
conflict rules (the splits use that same stripped sequence). The raw sequence stays in the ingested records
(lineage); the QC table says what cleaning did to each record.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from Bio.Data.IUPACData import ambiguous_dna_letters
from Bio.Seq import Seq
from Bio.SeqRecord import SeqRecord

from bioscan_rebuild.core.io import atomic_path
from bioscan_rebuild.core.params import BarcodeParams
from bioscan_rebuild.core.schemas import SEQUENCE_WHITESPACE

IUPAC_DNA = "".join(sorted(ambiguous_dna_letters))  # ABCDGHKMNRSTVWY
AMBIGUOUS = "".join(sorted(set(IUPAC_DNA) - set("ACGTN")))  # BDHKMRSVWY
WHITESPACE = SEQUENCE_WHITESPACE
# a sequence cell saying it is empty (R writes NA; "NA" read as bases is one A once the end N is trimmed)
SAID_MISSING = ("na", "n/a", "nan", "null", "none")

BARCODE_REASONS = {
    "no_barcode": "no sequence (or a cell saying NA or null), or nothing left after removing gaps, whitespace, end N",
    "invalid_barcode": "characters outside the IUPAC nucleotide alphabet (digits, HTML, protein letters, U)",
    "short_barcode": "fewer bases than barcodes.min_length",
    "long_barcode": "more bases than barcodes.max_length",
    "ambiguous_barcode": "ambiguous bases (internal N + IUPAC codes) above barcodes.max_ambiguity of the length",
}

QC_SCHEMA = pa.schema(
    [
        pa.field("processid", pa.string()),
        pa.field("barcode_status", pa.string()),  # ok or a reason of BARCODE_REASONS
        pa.field("raw_length", pa.int64()),  # characters of the raw value (0 when missing)
        pa.field("length", pa.int64()),  # bases of the cleaned sequence
        pa.field("gap_count", pa.int64()),  # '-' and '.' removed
        pa.field("whitespace_count", pa.int64()),
        pa.field("lowercase", pa.bool_()),  # the raw value held lower-case letters
        pa.field("n_leading", pa.int64()),  # end N (trimmed when trim_end_n)
        pa.field("n_trailing", pa.int64()),
        pa.field("n_internal", pa.int64()),
        pa.field("n_longest_run", pa.int64()),  # longest internal N run
        pa.field("ambiguity_count", pa.int64()),  # IUPAC codes other than ACGTN
        pa.field("invalid_chars", pa.string()),  # distinct offending characters, when any
        pa.field("flags", pa.string()),  # comma-separated: what cleaning touched
        pa.field("barcode_key", pa.string()),  # md5 of the end-N-stripped cleaned sequence
    ]
)


def _lengths(array) -> np.ndarray:
    return pc.fill_null(pc.utf8_length(array), 0).to_numpy(zero_copy_only=False).astype(np.int64)


def _count(array, pattern: str) -> np.ndarray:
    return pc.fill_null(pc.count_substring_regex(array, pattern), 0).to_numpy(zero_copy_only=False).astype(np.int64)


def _longest_run(core) -> np.ndarray:
    """Longest run of N per string (0 when none)."""
    runs = pc.split_pattern_regex(core, "[^N]+")  # a missing sequence: a null list, no runs, so 0
    lengths = pc.utf8_length(pc.list_flatten(runs)).to_numpy(zero_copy_only=False).astype(np.int64)
    parents = pc.list_parent_indices(runs).to_numpy(zero_copy_only=False)
    out = np.zeros(len(core), np.int64)
    np.maximum.at(out, parents, lengths)
    return out


def md5_hex(values) -> np.ndarray:
    """md5 hex digest per value (None stays None), computed once per distinct value: records share barcodes."""
    codes, uniques = pd.factorize(np.asarray(values, dtype=object), use_na_sentinel=True)
    digests = np.array([hashlib.md5(v.encode("ascii")).hexdigest() for v in uniques] + [None], dtype=object)
    return digests[codes]


def clean_barcodes(processid, raw, params: BarcodeParams | None = None) -> tuple[pa.Array, pa.Table]:
    """Raw sequences -> (cleaned ``dna_barcode`` array, null where rejected; QC table, one row per input)."""
    params = params or BarcodeParams()
    raw = pa.array(raw, pa.string()) if not isinstance(raw, pa.Array | pa.ChunkedArray) else raw
    if isinstance(raw, pa.ChunkedArray):
        raw = raw.combine_chunks()
    n = len(raw)
    gaps = _count(raw, r"[-.]")
    spaces = _count(raw, WHITESPACE)
    lowercase = pc.fill_null(pc.match_substring_regex(raw, "[a-z]"), False)
    stripped = pc.replace_substring_regex(raw, f"(?:{WHITESPACE}|[.\\-])+", "")
    upper = pc.utf8_upper(stripped)
    # judged before upper-casing: Unicode upper-cases some letters into the alphabet (the long s "ſ" -> "S")
    invalid = pc.replace_substring_regex(stripped, f"[{IUPAC_DNA}{IUPAC_DNA.lower()}]+", "")
    said_missing = pc.is_in(pc.utf8_lower(pc.utf8_trim_whitespace(raw)), value_set=pa.array(SAID_MISSING))
    said_missing = pc.fill_null(said_missing, False).to_numpy(zero_copy_only=False)
    has_invalid = pc.fill_null(pc.greater(pc.utf8_length(invalid), 0), False).to_numpy(zero_copy_only=False)
    has_invalid &= ~said_missing  # "N/A" holds a "/", but says no sequence
    full_length = _lengths(upper)
    no_lead = pc.replace_substring_regex(upper, "^N+", "")
    core = pc.replace_substring_regex(no_lead, "N+$", "")
    core_length = _lengths(core)
    n_leading = full_length - _lengths(no_lead)
    n_trailing = full_length - n_leading - core_length
    cleaned = core if params.trim_end_n else upper
    length = core_length if params.trim_end_n else full_length
    n_internal = _count(core, "N")
    ambiguity = _count(core, f"[{AMBIGUOUS}]")

    status = np.full(n, "ok", dtype=object)
    # a share, not a product: 0.29 * 100 is 28.999999999999996 and refused a barcode exactly at the limit; a
    # correctly rounded quotient equals the limit there
    too_ambiguous = (n_internal + ambiguity) / np.maximum(core_length, 1) > params.max_ambiguity
    status[too_ambiguous] = "ambiguous_barcode"
    status[core_length < params.min_length] = "short_barcode"  # end-N padding is no bases, kept or not
    status[core_length > params.max_length] = "long_barcode"
    status[core_length == 0] = "no_barcode"
    status[has_invalid] = "invalid_barcode"
    status[said_missing] = "no_barcode"
    ok = status == "ok"

    flag_names, flag_masks = zip(
        ("lowercase", lowercase.to_numpy(zero_copy_only=False)),
        ("gaps", gaps > 0),
        ("whitespace", spaces > 0),
        ("end_n_trimmed" if params.trim_end_n else "end_n", (n_leading + n_trailing) > 0),
        ("internal_n", n_internal > 0),
        ("ambiguity_codes", ambiguity > 0),
        strict=True,  # pragma: no mutate - six literal pairs: zip's length check can never fire
    )
    # each record's flags as a 6-bit code; the 64 possible texts are built once
    code = sum(mask.astype(np.int64) << bit for bit, mask in enumerate(flag_masks))
    texts = np.array(
        [",".join(name for bit, name in enumerate(flag_names) if c >> bit & 1) for c in range(1 << len(flag_names))],
        dtype=object,  # pragma: no mutate - a numpy str array converts to the same Arrow strings
    )
    flags = texts[code]

    invalid_chars = np.full(n, None, dtype=object)
    for i in np.flatnonzero(has_invalid):  # rare: the per-record loop only runs on bad rows
        invalid_chars[i] = "".join(sorted(set(invalid[i].as_py())))[:40]
    core_values = core.to_numpy(zero_copy_only=False)
    keys = np.full(n, None, dtype=object)
    keys[ok] = md5_hex(core_values[ok])
    dna = pc.if_else(pa.array(ok), cleaned, pa.nulls(n, pa.string()))
    qc = pa.table(
        {
            "processid": pa.array(processid, pa.string()),
            "barcode_status": pa.array(status, pa.string()),
            "raw_length": pa.array(_lengths(raw)),
            "length": pa.array(length),
            "gap_count": pa.array(gaps),
            "whitespace_count": pa.array(spaces),
            "lowercase": lowercase,
            "n_leading": pa.array(n_leading),
            "n_trailing": pa.array(n_trailing),
            "n_internal": pa.array(n_internal),
            "n_longest_run": pa.array(_longest_run(core)),
            "ambiguity_count": pa.array(ambiguity),
            "invalid_chars": pa.array(invalid_chars, pa.string()),
            "flags": pa.array(flags, pa.string()),
            "barcode_key": pa.array(keys, pa.string()),
        },
        schema=QC_SCHEMA,  # pragma: no mutate - the columns already have exactly these names, order and types
    )
    return dna, qc


def write_fasta(records, path) -> int:
    """FASTA of cleaned barcodes, ``>processid|dna_bin|taxon`` (empty fields stay empty), via Bio.SeqIO.
    ``records``: iterable of (processid, dna_bin, taxon, sequence). Returns the number written."""
    from Bio import SeqIO

    def seqrecords():
        for processid, dna_bin, taxon, sequence in records:
            if sequence:
                name = f"{processid}|{dna_bin or ''}|{taxon or ''}"
                yield SeqRecord(Seq(sequence), id=name, description="")

    # whole or not at all under its name, and UTF-8 whatever the locale (a taxon "Psychóda" failed under LC_ALL=C)
    with atomic_path(path) as partial, open(partial, "w", encoding="utf-8", newline="\n") as handle:
        return SeqIO.write(seqrecords(), handle, "fasta")
