"""Genetic distances between DNA barcodes, without alignment, and the barcode identity used for distinct counts.

**Distance.** Released barcodes are unaligned COI-5P reads that start and end at different places (and may carry
``N`` and other IUPAC letters), so a p-distance would need a multiple alignment of millions of reads. Instead the
Mash distance (Ondov et al. 2016, Genome Biology 17:132) is computed from the *exact* Jaccard index ``J`` of the
two reads' k-mer sets (k = :data:`K` = 12; k-mers holding a letter other than A, C, G, T are dropped)::

    d = -ln(2J / (1 + J)) / k,   d = 1 when J = 0, and d is capped at 1

Under a model of independent substitutions at rate ``p`` per base, a k-mer survives with probability ``(1-p)^k``
and ``d`` estimates ``-ln(1-p)``, which is ≈ ``p`` (the p-distance an alignment would give) at the distances that
matter for barcodes (a few %); reads of different start only lose the k-mers outside their overlap, which biases
``d`` upwards by the non-overlapping share. k = 12 keeps chance matches rare for one k-mer (a given 12-mer occurs
by chance in a 660 bp read with probability ≈ 650 / 4^12 ≈ 4e-5, while one substitution breaks only 12 k-mers),
but not for a pair of unrelated reads: about 2 % of them share some 12-mer by chance (more for the AT-rich base
composition of insect COI), which puts them at d ≈ 0.4-0.55 instead of 1. Distances above about 0.3 say
"unrelated", not how unrelated.

**Pairs** (:func:`sample_pairs`), drawn with ``numpy.random.default_rng(seed)`` in a fixed order, so a table and a
seed give the same pairs every time; only records with a barcode take part:

- ``within_species``, ``within_genus``, ``within_order``, ``within_bin``: a group (species, genus, order, BIN) is
  picked uniformly among the groups with at least two such records, then two distinct records of it;
- ``between_orders``: two distinct orders picked uniformly, one record of each;
- ``between_bins``: a genus picked uniformly among the genera holding at least two BINs, two distinct BINs of
  it, one record of each: congeneric BINs, the closest relatives a label names. Their distance has to exceed
  the within-BIN distance for BINs to be told apart (the barcode gap). It is not the nearest-neighbour distance
  (a BIN's closest BIN may be another of its genus than the one drawn, or in no named genus), so the gap it
  gives is an upper bound on the nearest-neighbour one; BINs of one order would be far apart anyway and say
  little about it.

A pair drawn twice counts once (the draws are with replacement: two records of one species would otherwise be
"2,000 pairs"), so a comparison holds at most as many pairs as there are distinct ones.

Only the sampled rows' barcodes are read (``pyarrow.compute.take``), never the whole column as Python objects.
A table may also leave its barcodes in the barcode shard files they came from (:class:`ShardBarcodes`: per row a
key, a file and a row in it, as ``stats.stage.read_workflow_table`` builds it); then only the sampled rows are read
back from those files.

**Barcode identity** (:func:`barcode_keys`): a 64-bit BLAKE2b hash of each barcode with its leading and trailing
``N`` removed, computed straight from the Arrow buffers; distinct barcodes are distinct keys. Two different
barcodes share a key with probability about n² / 2^65 (≈ 2e-7 for the 2.5 million distinct barcodes of
BIOSCAN-5M).
"""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

K = 12
METHOD = "mash"
WITHIN = {  # comparison -> the rank whose groups the pairs come from
    "within_species": "species",
    "within_genus": "genus",
    "within_order": "order",
    "within_bin": "dna_bin",
}
COMPARISONS = ("within_species", "within_genus", "within_order", "between_orders", "within_bin", "between_bins")
# The distance histogram: 0.00-0.50 in steps of 0.01, then one bin 0.5-1.0 (closed) for the distances above:
# Mash distances jump from about 0.55 (one shared k-mer) to 1 (none), so that bin is "unrelated".
HISTOGRAM_EDGES = np.r_[np.linspace(0.0, 0.5, 51), 1.0]

# A, C, G, T (either case) -> 0..3; anything else -> 4 (the k-mers holding it are dropped)
_BASE_CODE = np.full(256, 4, dtype=np.uint8)
for _code, _letters in enumerate(("Aa", "Cc", "Gg", "Tt")):
    for _letter in _letters:
        _BASE_CODE[ord(_letter)] = _code
_N = ord("N")
MISSING_KEY = np.uint64(0)


# ------------------------------------------------------------------------------------------- identity
def _string_chunks(column: pa.ChunkedArray):
    """The column's chunks as plain (large) strings."""
    if pa.types.is_dictionary(column.type) or not (
        pa.types.is_string(column.type) or pa.types.is_large_string(column.type)
    ):
        column = column.cast(pa.string())
    return column.chunks


def _offsets_and_data(chunk: pa.Array) -> tuple[np.ndarray, memoryview]:
    """Start/end offsets (len n + 1, into the data buffer) and the data buffer of a string array."""
    offset_type = np.int64 if pa.types.is_large_string(chunk.type) else np.int32
    buffers = chunk.buffers()
    offsets = np.frombuffer(
        buffers[1], dtype=offset_type, count=len(chunk) + 1, offset=chunk.offset * offset_type(0).nbytes
    )
    data = memoryview(buffers[2]) if buffers[2] is not None else memoryview(b"")
    return offsets.astype(np.int64), data


def barcode_keys(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """Per row, a 64-bit key of the barcode with leading and trailing ``N`` stripped (uint64); 0 = no barcode
    (null, empty, or only ``N``). Equal stripped barcodes get equal keys; see the module docstring for the
    chance that different ones do."""
    if isinstance(column, pa.Array):
        column = pa.chunked_array([column])
    parts = []
    for chunk in _string_chunks(column):
        n = len(chunk)
        if not n:
            continue
        offsets, data = _offsets_and_data(chunk)
        starts, ends = offsets[:-1].copy(), offsets[1:].copy()
        present = ends > starts
        if chunk.null_count:
            present &= ~chunk.is_null().to_numpy(zero_copy_only=False)
        raw = np.frombuffer(data, dtype=np.uint8)
        if raw.size:  # the first and last letter of each read (anything for an empty one: it is not present)
            first, last = raw[np.minimum(starts, raw.size - 1)], raw[np.maximum(ends - 1, 0)]
        else:
            first = last = np.zeros(n, dtype=np.uint8)
        # only reads with N at an end are trimmed (in Python, one at a time): the project's barcodes have none
        for i in np.flatnonzero(present & ((first == _N) | (last == _N))):
            read = bytes(data[starts[i] : ends[i]])
            lead = len(read) - len(read.lstrip(b"N"))
            stripped = read.strip(b"N")
            starts[i], ends[i] = starts[i] + lead, starts[i] + lead + len(stripped)
        present &= ends > starts
        digests = b"".join(
            hashlib.blake2b(data[s:e], digest_size=8).digest() if keep else bytes(8)
            for s, e, keep in zip(starts.tolist(), ends.tolist(), present.tolist())
        )
        keys = np.frombuffer(digests, dtype="<u8").copy()
        keys[present & (keys == MISSING_KEY)] = 1  # a real barcode never reads as missing
        parts.append(keys)
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.uint64)


# ------------------------------------------------------------------------------------------- distance
def kmer_set(sequence: str, k: int = K) -> np.ndarray:
    """The distinct k-mers of ``sequence`` as sorted 2-bit-packed integers (uint64), dropping every k-mer that
    holds a letter other than A, C, G, T (IUPAC ambiguity codes, ``N``, gaps)."""
    if not 1 <= k <= 32:
        raise ValueError(f"k must be 1..32, got {k}")
    codes = _BASE_CODE[np.frombuffer(sequence.encode("ascii", "replace"), dtype=np.uint8)]
    windows = len(codes) - k + 1
    if windows <= 0:
        return np.zeros(0, dtype=np.uint64)
    bad = np.concatenate([[0], np.cumsum(codes == 4)])
    clean = (bad[k:] - bad[:-k]) == 0
    packed = np.zeros(windows, dtype=np.uint64)
    for j in range(k):
        packed = (packed << np.uint64(2)) | (codes[j : j + windows] & 3).astype(np.uint64)
    packed = np.sort(packed[clean])  # sort + drop repeats: faster than np.unique on reads this short
    return packed[np.concatenate(([True], packed[1:] != packed[:-1]))] if packed.size else packed


def jaccard(a: np.ndarray, b: np.ndarray) -> float:
    """Exact Jaccard index of two k-mer sets (sorted, distinct); NaN when both are empty."""
    if a.size > b.size:
        a, b = b, a
    at = np.minimum(np.searchsorted(b, a), max(b.size - 1, 0))  # where each of a would sit in b
    shared = int(np.count_nonzero(b[at] == a)) if b.size else 0
    union = a.size + b.size - shared
    return shared / union if union else float("nan")


def mash_distance(a: np.ndarray, b: np.ndarray, k: int = K) -> float:
    """Mash distance from the exact Jaccard index of two k-mer sets: ``-ln(2J/(1+J))/k``, 1 when J = 0, capped
    at 1; NaN when either set is empty (a read shorter than k, or without a clean k-mer)."""
    if not a.size or not b.size:
        return float("nan")
    j = jaccard(a, b)
    if j <= 0:
        return 1.0
    if j >= 1:
        return 0.0  # not -ln(1)/k, which is -0.0
    return float(min(1.0, -np.log(2 * j / (1 + j)) / k))


def sequence_distance(first: str, second: str, k: int = K) -> float:
    """Mash distance between two sequences (see :func:`mash_distance`)."""
    return mash_distance(kmer_set(first, k), kmer_set(second, k), k)


# ------------------------------------------------------------------------------------------- pairs
class _Groups:
    """Rows grouped by a code (rows with code < 0 left out): ``rows`` sorted by (code, content, row), and per group
    its code, first position in ``rows`` and size. ``content``: a per-row key of what is measured (the barcode's),
    so that the rows drawn hold the same barcodes whatever order the table's rows come in (the release's order
    follows its shards: another ``shards`` published other distances); None: by row."""

    def __init__(self, codes: np.ndarray, usable: np.ndarray, content: np.ndarray | None = None):
        rows = np.flatnonzero(usable & (codes >= 0))
        if content is None:
            self.rows = rows[np.argsort(codes[rows], kind="stable")]
        else:
            self.rows = rows[np.lexsort((content[rows], codes[rows]))]
        self.codes, self.starts, self.sizes = np.unique(codes[self.rows], return_index=True, return_counts=True)


def _two_distinct(rng: np.random.Generator, sizes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two distinct positions in 0..size-1 per entry of ``sizes`` (each ≥ 2), uniformly."""
    first = rng.integers(0, sizes)
    second = rng.integers(0, sizes - 1)
    return first, second + (second >= first)


def _empty_pairs() -> tuple[np.ndarray, np.ndarray, int]:
    return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64), 0


def sample_pairs(
    groups: dict[str, np.ndarray],
    has_barcode: np.ndarray,
    *,
    seed: int = 0,
    pairs: int = 2000,
    content: np.ndarray | None = None,
) -> dict[str, tuple[np.ndarray, np.ndarray, int]]:
    """Row pairs per comparison (:data:`COMPARISONS`, rules in the module docstring): comparison -> (first rows,
    second rows, number of groups drawn from). ``groups`` maps species, genus, order and dna_bin to per-row
    integer codes (-1 = missing); ``has_barcode`` says which rows take part; ``content``: per-row barcode keys,
    which order the rows of a group (:class:`_Groups`). Fewer (or no) pairs come back only where no group
    qualifies."""
    rng = np.random.default_rng(seed)
    out = {}
    for comparison in COMPARISONS:
        if comparison in WITHIN:
            grouped = _Groups(groups[WITHIN[comparison]], has_barcode, content)
            eligible = grouped.sizes >= 2
            starts, sizes = grouped.starts[eligible], grouped.sizes[eligible]
            if not sizes.size:
                out[comparison] = _empty_pairs()
                continue
            pick = rng.integers(0, sizes.size, pairs)
            i, j = _two_distinct(rng, sizes[pick])
            out[comparison] = (grouped.rows[starts[pick] + i], grouped.rows[starts[pick] + j], int(sizes.size))
        elif comparison == "between_orders":
            grouped = _Groups(groups["order"], has_barcode, content)
            if grouped.sizes.size < 2:
                out[comparison] = _empty_pairs()
                continue
            first, second = _two_distinct(rng, np.full(pairs, grouped.sizes.size))
            i = rng.integers(0, grouped.sizes[first])
            j = rng.integers(0, grouped.sizes[second])
            rows = grouped.rows
            out[comparison] = (rows[grouped.starts[first] + i], rows[grouped.starts[second] + j], grouped.sizes.size)
        else:  # between_bins: cells (genus, BIN), two cells of one genus
            genus, bin_code = groups["genus"].astype(np.int64), groups["dna_bin"].astype(np.int64)
            stride = int(bin_code.max(initial=0)) + 1
            cell_codes = np.where((genus >= 0) & (bin_code >= 0), genus * stride + bin_code, -1)
            cells = _Groups(cell_codes, has_barcode, content)
            cell_genus = cells.codes // stride
            _, genus_start, bins_in_genus = np.unique(cell_genus, return_index=True, return_counts=True)
            eligible = bins_in_genus >= 2
            genus_start, bins_in_genus = genus_start[eligible], bins_in_genus[eligible]
            if not bins_in_genus.size:
                out[comparison] = _empty_pairs()
                continue
            pick = rng.integers(0, bins_in_genus.size, pairs)
            c1, c2 = _two_distinct(rng, bins_in_genus[pick])
            c1, c2 = genus_start[pick] + c1, genus_start[pick] + c2
            i = rng.integers(0, cells.sizes[c1])
            j = rng.integers(0, cells.sizes[c2])
            out[comparison] = (
                cells.rows[cells.starts[c1] + i],
                cells.rows[cells.starts[c2] + j],
                int(bins_in_genus.size),
            )
    return {comparison: _distinct_pairs(*drawn) for comparison, drawn in out.items()}


def _distinct_pairs(first: np.ndarray, second: np.ndarray, n_groups: int) -> tuple[np.ndarray, np.ndarray, int]:
    """The drawn pairs without repeats of one record pair (either order), in the order first drawn."""
    if not first.size:
        return first, second, n_groups
    low, high = np.minimum(first, second), np.maximum(first, second)
    _, at = np.unique(np.stack([low, high], axis=1), axis=0, return_index=True)
    at = np.sort(at)
    return first[at], second[at], n_groups


# ------------------------------------------------------------------------------------------- barcodes left in files
KEY_COLUMN = "dna_barcode_key"  # barcode_keys of the row's barcode (uint64)
SHARD_COLUMN = "dna_barcode_shard"  # the barcode file holding it: an index into the table's list of files (int32)
ROW_COLUMN = "dna_barcode_row"  # its row in that file (int64)
FILES_METADATA = b"bioscan_rebuild.stats.barcode_files"  # schema metadata: the files, a JSON list of paths


def shard_barcode_schema() -> pa.Schema:
    """The three columns that stand for ``dna_barcode`` in a table whose barcodes stay in their files."""
    return pa.schema([(KEY_COLUMN, pa.uint64()), (SHARD_COLUMN, pa.int32()), (ROW_COLUMN, pa.int64())])


class ShardBarcodes:
    """A table's barcodes left in the barcode shard files (``processid``, ``dna_barcode``) its rows were built
    from: per row the file (an index into ``paths``) and the row in it. The statistics read the text of only
    the sampled rows (:meth:`take`); distinct barcodes are counted on keys computed when the rows were built.
    At BIOSCAN-5M size that is 20 bytes a row instead of the 3.4 GB of barcode text."""

    def __init__(self, paths, shard: np.ndarray, row: np.ndarray):
        self.paths = [str(path) for path in paths]
        self.shard = np.asarray(shard, dtype=np.int64)
        self.row = np.asarray(row, dtype=np.int64)

    @classmethod
    def of_table(cls, table: pa.Table) -> ShardBarcodes | None:
        """The barcodes of a table that carries :func:`shard_barcode_schema`'s columns and the list of files in
        its schema metadata; None for any other table."""
        metadata = table.schema.metadata or {}
        if FILES_METADATA not in metadata or any(name not in table.column_names for name in (SHARD_COLUMN, ROW_COLUMN)):
            return None
        return cls(json.loads(metadata[FILES_METADATA]), table[SHARD_COLUMN].to_numpy(), table[ROW_COLUMN].to_numpy())

    def __len__(self) -> int:
        return len(self.shard)

    def take(self, rows: np.ndarray) -> list[str | None]:
        """The barcodes of ``rows`` (row numbers of the table), in that order, reading each file that holds one
        (its ``dna_barcode`` column) once."""
        rows = np.asarray(rows, dtype=np.int64)
        reads: list[str | None] = [None] * rows.size
        shard, local = self.shard[rows], self.row[rows]
        for number in np.unique(shard).tolist():
            where = np.flatnonzero(shard == number)
            column = pq.read_table(self.paths[number], columns=["dna_barcode"])["dna_barcode"]
            if local[where].max() >= len(column):
                raise RuntimeError(f"{self.paths[number]}: fewer rows than when the table was built (changed since?)")
            taken = column.take(pa.array(local[where], pa.int64())).cast(pa.string()).to_pylist()
            for position, read in zip(where.tolist(), taken):
                reads[position] = read
        return reads


def table_barcodes(table: pa.Table) -> tuple[np.ndarray, pa.ChunkedArray | ShardBarcodes]:
    """A table's barcode keys (:func:`barcode_keys`) and its barcodes for :func:`gather_reads`: the
    ``dna_barcode`` column, else the :class:`ShardBarcodes` the table carries (its keys from ``KEY_COLUMN``)."""
    if "dna_barcode" in table.column_names:
        return barcode_keys(table["dna_barcode"]), table["dna_barcode"]
    shards = ShardBarcodes.of_table(table)
    if shards is None or KEY_COLUMN not in table.column_names:
        raise ValueError("the table has no column dna_barcode (nor the barcode files and keys that stand for it)")
    return table[KEY_COLUMN].to_numpy().astype(np.uint64), shards


def gather_reads(barcodes: pa.ChunkedArray | pa.Array | ShardBarcodes, rows: np.ndarray) -> list[str | None]:
    """The barcodes of ``rows`` (sorted row numbers) as Python strings, taken chunk by chunk: ``take`` on the
    whole chunked column would first join its chunks (3.4 GB of text for BIOSCAN-5M). Barcodes left in their
    files (:class:`ShardBarcodes`) are read back from them."""
    if isinstance(barcodes, ShardBarcodes):
        return barcodes.take(rows)
    if isinstance(barcodes, pa.Array):
        barcodes = pa.chunked_array([barcodes])
    bounds = np.cumsum([0, *(len(chunk) for chunk in barcodes.chunks)])
    chunk_of_row = np.searchsorted(bounds, rows, side="right") - 1
    reads: list[str | None] = []
    for chunk_number in np.unique(chunk_of_row):
        local = rows[chunk_of_row == chunk_number] - bounds[chunk_number]
        chunk = barcodes.chunk(int(chunk_number))
        reads += pc.take(chunk, pa.array(local, pa.int64())).cast(pa.string()).to_pylist()
    return reads


def _quantiles(values: np.ndarray) -> dict:
    if not values.size:
        return {"mean": np.nan, "p05": np.nan, "median": np.nan, "p95": np.nan}
    p05, median, p95 = np.percentile(values, [5, 50, 95])
    return {"mean": float(values.mean()), "p05": float(p05), "median": float(median), "p95": float(p95)}


def distance_tables(
    barcodes: pa.ChunkedArray | ShardBarcodes,
    groups: dict[str, np.ndarray],
    has_barcode: np.ndarray,
    *,
    seed: int = 0,
    pairs: int = 2000,
    k: int = K,
    content: np.ndarray | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``genetic_distances`` (comparison, groups, pairs, mean, p05, median, p95) and ``genetic_histogram``
    (comparison, bin_left, bin_right, pairs; :data:`HISTOGRAM_EDGES`: 0.00-0.50 in steps of 0.01, then one bin
    0.5-1.0 for the distances above, the last bin closed) of Mash distances between sampled barcode pairs.

    ``pairs`` counts the pairs with a distance: a pair whose read has no clean k-mer is left out."""
    sampled = sample_pairs(groups, has_barcode, seed=seed, pairs=pairs, content=content)
    rows = np.unique(np.concatenate([np.concatenate([a, b]) for a, b, _ in sampled.values()]))
    kmers = {int(row): kmer_set(read or "", k) for row, read in zip(rows, gather_reads(barcodes, rows))}
    summary, histogram = [], []
    n_bins = len(HISTOGRAM_EDGES) - 1
    for comparison in COMPARISONS:
        first, second, n_groups = sampled[comparison]
        distances = np.array([mash_distance(kmers[int(a)], kmers[int(b)], k) for a, b in zip(first, second)])
        distances = distances[~np.isnan(distances)] if distances.size else np.zeros(0)
        summary.append({"comparison": comparison, "groups": n_groups, "pairs": distances.size, **_quantiles(distances)})
        where = np.clip(np.searchsorted(HISTOGRAM_EDGES, distances, side="right") - 1, 0, n_bins - 1)
        counts = np.bincount(where, minlength=n_bins)
        histogram.append(
            pd.DataFrame(
                {
                    "comparison": comparison,
                    "bin_left": np.round(HISTOGRAM_EDGES[:-1], 2),
                    "bin_right": np.round(HISTOGRAM_EDGES[1:], 2),
                    "pairs": counts.astype(np.int64),
                }
            )
        )
    table = pd.DataFrame(summary).astype({"groups": np.int64, "pairs": np.int64})
    return table, pd.concat(histogram, ignore_index=True)
