"""BIOSCAN-5M split assignment (the partitioning protocol published with the dataset, Gharaee et al., NeurIPS
2024), record for record, plus frozen (versioned) rebuilds.

``assign_splits(df)`` reproduces the published 8-split protocol exactly. Everything except the barcode
choice inside routine P (the protocol's barcode draw, :func:`choose_barcodes`) runs as vectorised numpy on
factorized codes (species ranked in code point order, barcodes = ``strip`` values); the per-species loop of P
runs only for species that can receive records, on plain lists, with ties between equal barcode sizes ordered
by ``np.argsort(kind="quicksort")`` on the int64 sizes (what ``Series.sort_values()`` calls) and the
protocol's seeded random draws.

Frozen rebuilds (``freeze`` = the ``split`` column of a previous release, indexed by processid). Records in
``freeze`` are "old", the others "new". The protocol runs on the new records only (all counts, targets,
singletons and draws are over new records), with these pins:

==========================================================  =========================================
new record                                                  split
==========================================================  =========================================
old records (processid in ``freeze``)                       kept as frozen, never moved
strip barcode carried by an old record in val, test,        that split (like a protocol move, whatever
val_unseen or test_unseen                                   the new record's species)
strip barcode carried by an old record in train or          protocol result, but its barcode is never
key_unseen (and none of the above)                          drawn into a held-out split; if the result
                                                            is the other one of train/key_unseen:
                                                            other_heldout
strip barcode carried only by old pretrain/other_heldout    protocol result; barcode never drawn
species name mostly in the unseen family among old          unseen family (test_unseen / val_unseen /
records (key/val/test_unseen >= train/val/test rows)        key_unseen), as if it had >= 8 viable rows
species name mostly in the seen family among old records    never unseen; seen/placeholder as usual
anything else                                               the protocol on the new records
==========================================================  =========================================

Known genera are taken from all records (old and new). Every barcode an old record carries is excluded
from P and the val top-up (new records on it are not candidates), so no old barcode is ever drawn. Guarantees: no
old record moves; no new record puts a barcode into a labelled split (train, val, test, key_unseen,
val_unseen, test_unseen) other than the one its old records already hold; among the new records the
protocol's own invariants hold (a barcode drawn into a held-out split takes all new records carrying it).
``freeze`` entries whose processid is not in the table (a record withdrawn, or its photo late) pin their barcode
all the same when ``freeze_barcodes`` gives it (the split history's ``barcode_key``): new records on it are
placed as if the absent record were there, so that it can return to its split without its barcode spanning two
(without ``freeze_barcodes`` they are ignored, so the stage refuses such a freeze when records are absent). So
does the frozen barcode of a record still here whose barcode is now missing (failed by QC) or another (corrected).
Processids match as ingest matches records (``processid_keys``: case, surrounding spaces and Unicode form
aside); an empty ``freeze`` gives the protocol.
Not guaranteed: old records that already disagree (an old test record whose barcode was corrected to one
that old train records carry stays in test: old records never move), and a species whose old records are
all other_heldout can gain unseen-split records when 8 or more viable new ones arrive.
"""

from __future__ import annotations

import hashlib
import math
from bisect import bisect_left, bisect_right
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from itertools import accumulate
from operator import methodcaller

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from bioscan_rebuild.core.errors import InputError
from bioscan_rebuild.core.novel import novel_genus_names, novel_species_names, strip_barcode
from bioscan_rebuild.core.schemas import SPLITS, processid_keys

PRETRAIN, TRAIN, VAL, TEST, KEY_UNSEEN, VAL_UNSEEN, TEST_UNSEEN, OTHER_HELDOUT = range(8)
_SEEN, _UNSEEN = 8, 9  # working states, gone from the result

HELDOUT_CODES = (TEST, VAL, TEST_UNSEEN, VAL_UNSEEN)  # priority order when old records disagree
REQUIRED_COLUMNS = ("processid", "genus", "species", "dna_barcode")


def n_test(n: int) -> int:
    return 0 if n < 8 else min(25, math.floor(4 + (n - 8) / 4))


def ub_test(n: int) -> int:
    return 0 if n < 8 else math.floor(4 + (n - 8) / 3)


def bc_test(b: int) -> int:
    return 0 if b < 3 else math.floor(1 + (b - 2) / 3)


@dataclass(frozen=True)
class PartitionParams:
    """One call of routine P: size functions of n (rows) / b (barcodes), soft factors, seed."""

    target: Callable[[int], float]
    lower: Callable[[int], float]
    upper: Callable[[int], float]
    bc_upper: Callable[[int], float]
    soft1: float
    soft2: float
    seed: int
    min_n: int  # smallest n with target(n) != 0 (a vectorised pre-filter)


TEST_P = PartitionParams(n_test, lambda n: 3, ub_test, bc_test, 1.1, 1.0, seed=1, min_n=8)
VAL_P = PartitionParams(
    lambda n: 0 if n < 20 else 0.05 * n, lambda n: 0, lambda n: 0.10 * n, lambda b: 0.05 * b, 1.1, 1.1, 3, 20
)
TEST_UNSEEN_P = PartitionParams(n_test, lambda n: 3, ub_test, bc_test, 1.1, 1.0, seed=5, min_n=8)
VAL_UNSEEN_P = PartitionParams(
    lambda n: 0.2 * n, lambda n: 0, lambda n: 0.4 * n, lambda b: 0.2 * b, 1.1, 1.1, seed=7, min_n=1
)


def choose_barcodes(sizes: list[int], n: int, p: PartitionParams, rng: np.random.Generator) -> list[int]:
    """Routine P for one species: positions (into ``sizes``) of the barcodes it keeps, in pick order.

    ``sizes`` = rows per barcode, already in the order of the protocol's step 2 (ascending, quicksort ties). Because
    ``sizes`` stays sorted and ``cs`` (its running sum) strictly increasing, the options are the slice
    ``[lo_opt, hi_opt)`` found by bisection; ``cs`` after a deletion is the running sum of what is left.
    """
    t = p.target(n)
    lb, ub = p.lower(n), p.upper(n)
    bub = p.bc_upper(len(sizes))
    sizes = list(sizes)
    keys = list(range(len(sizes)))
    cs = list(accumulate(sizes))
    alloc = 0
    chosen: list[int] = []
    while True:
        hi_opt = bisect_right(sizes, t - alloc)  # sizes[:hi_opt] <= t - alloc
        lo_opt = bisect_left(cs, t * p.soft1 - alloc)  # cs[lo_opt:] >= t*soft1 - alloc
        if lo_opt >= hi_opt:  # no option
            if alloc == 0 and sizes[0] > t:
                if sizes[0] >= lb and sizes[0] < n / 2:
                    i = 0
                else:
                    break
            elif sizes[0] > t * p.soft2 - alloc:
                if sizes[0] > (t - alloc) / 2 or alloc + sizes[0] > ub:
                    break
                i = 0
            elif lo_opt == len(cs):
                raise RuntimeError("routine P: no running sum reaches the target (impossible)")
            else:
                c = i = lo_opt
                if c > 0 and abs(alloc + sizes[c - 1] - t) < abs(t - (alloc + sizes[c])):
                    i = c - 1
                if alloc + sizes[c] > ub:
                    break
        elif len(chosen) + 1 >= bub:
            c = i = hi_opt - 1
            if (
                c + 1 < len(sizes)
                and abs(alloc + sizes[c + 1] - t) < abs(t - (alloc + sizes[c]))
                and alloc + sizes[c + 1] <= ub
            ):
                i = c + 1
        else:
            k = hi_opt - lo_opt
            lo, hi = int(k * 0.5), k  # the spec's widening `if hi <= lo` is dead: k >= 1 here, so lo < hi
            i = lo_opt + int(rng.integers(lo, hi, size=1)[0])
        chosen.append(keys[i])
        alloc += sizes[i]
        if alloc >= t:
            break
        del keys[i], sizes[i]
        cs = list(accumulate(sizes))
        if len(chosen) >= bub:
            break
    return chosen if alloc >= lb else []


# Spec §2.2 orders equal barcode sizes as pandas' default (unstable) quicksort does, and the published splits
# depend on that order. numpy picks its sort kernel by CPU and by the number of values: the published order is
# that of x86-64 CPUs with AVX-512 (numpy 2.4.6). Without AVX-512, ties among more than 256 barcodes of a species
# come out in another order; without AVX2 (or on ARM) among as few as 6 (the probe fails at its first size, 16);
# about 0.2 % of a BIOSCAN-5M table's records then land in other splits. ``TIE_ORDER_PROBES``: per number of
# sizes, a digest of the reference machine's argsorts of tied sizes; a host that matches up to the largest block
# of the data orders it as the reference does. ``TIE_ORDERS``: what a run accepts otherwise.
TIE_ORDER_PROBES = {
    16: "f93e5101192ee5c8",
    32: "3a153bd9d31b0bea",
    64: "3dd147a0588cc982",
    128: "96253ad9a389664a",
    256: "714ef016a7fe30cd",
    512: "fa8b08d4b885b98f",
    1024: "6d1638e01ad28d3f",
    2048: "5b077d6d474e964d",
    4096: "eed1af18dcaf51e2",
    8192: "4018ffb3123aaf4c",
}
TIE_ORDERS = ("reference", "host")


def _probe_digest(n: int) -> str:
    """Digest of numpy's quicksort argsort of ``n`` tied int64 sizes (four draws), as ``sorted_block`` sorts."""
    rng = np.random.default_rng([20240601, n])
    digest = hashlib.sha256()
    for high in (2, 3, 5, 9):  # few distinct sizes: many ties
        digest.update(
            np.argsort(rng.integers(1, high, n).astype(np.int64), kind="quicksort").astype(np.int64).tobytes()
        )
    return digest.hexdigest()[:16]


@cache
def host_agrees_up_to() -> int | float:
    """The largest number of sizes up to which this machine orders ties as the reference does (0: not even 16;
    infinity: at every probe size, so it is a reference machine)."""
    agreed = 0
    for n, digest in sorted(TIE_ORDER_PROBES.items()):
        if _probe_digest(n) != digest:
            return agreed
        agreed = n
    return math.inf


def largest_species_block(species, barcodes) -> int:
    """An upper bound on the sizes ``sorted_block`` sorts at once: the most distinct barcodes of one species."""
    frame = pd.DataFrame({"species": np.asarray(species, dtype=object), "barcode": np.asarray(barcodes, dtype=object)})
    frame = frame[frame["species"].notna() & frame["barcode"].notna()]
    return int(frame.groupby("species", sort=False)["barcode"].nunique().max()) if len(frame) else 0


def check_tie_order(species, barcodes, accept: str = "reference") -> str:
    """``reference`` when this machine orders the ties of every species' barcode sizes (``species``, ``barcodes``:
    per record) as the published splits were made, else ``host``. With ``accept="reference"`` (the default),
    ``host`` is an error saying why and what to do. A reference machine never counts the blocks."""
    if accept not in TIE_ORDERS:
        raise ValueError(f"tie order must be one of {TIE_ORDERS}, not {accept!r}")
    agreed = host_agrees_up_to()
    if agreed == math.inf:
        return "reference"
    largest_block = largest_species_block(species, barcodes)
    order = "reference" if largest_block <= agreed else "host"
    if order == "host" and accept == "reference":
        raise TieOrderError(
            f"a species here has up to {largest_block} distinct barcodes, and this machine's numpy orders equal "
            f"barcode sizes otherwise than the machines that made the published splits (x86-64 with AVX-512, numpy "
            f"2.4.6) for more than {agreed} of them, so some records would get another split than the protocol "
            "gives there. Run the split step on such a machine, or accept this machine's order "
            "(splits.tie_order: host; the command line's --tie-order host): the run records that it did."
        )
    return order


class TieOrderError(InputError):
    """The host's tie order differs from the reference and the run did not accept it (a setting to choose)."""


@dataclass
class _Groups:
    """Candidate rows grouped by species (code point order), then by barcode (code point order)."""

    species: np.ndarray  # species code per group, ascending
    n: np.ndarray  # candidate rows per species (barcode-less rows count too)
    start: np.ndarray  # slice of ``sizes``/``barcodes`` per species
    stop: np.ndarray
    sizes: np.ndarray  # int64 rows per (species, barcode)
    barcodes: np.ndarray  # barcode code per (species, barcode)
    n_by_species: np.ndarray  # candidate rows per species code, all species

    def sorted_block(self, g: int) -> tuple[np.ndarray, np.ndarray]:
        sizes = self.sizes[self.start[g] : self.stop[g]].copy()
        order = np.argsort(sizes, kind="quicksort")  # = Series.sort_values(): ties matter
        return sizes[order], self.barcodes[self.start[g] : self.stop[g]][order]


def _arrow(values: pd.Series) -> pa.ChunkedArray | None:
    """The Arrow data behind an Arrow-backed string Series (zero copy), else None."""
    if getattr(values.dtype, "storage", None) == "pyarrow":
        arr = pa.array(values.array)
        return arr if isinstance(arr, pa.ChunkedArray) else pa.chunked_array([arr])
    return None


def _strip_codes(barcodes: pd.Series, universe: np.ndarray) -> tuple[np.ndarray, int]:
    """Per row, the code point rank of its ``strip`` among the strips of the ``universe`` rows (else -1).

    P only groups and moves barcodes of labelled rows, so only those strips are materialised (sorted); every
    row is matched against them by hashing, and only rows whose raw barcode starts or ends with ``N`` are
    stripped first (the rest are their own strip). The whole column is never copied: Arrow-backed strings go
    through Arrow kernels chunk by chunk (``take`` on a chunked array would concatenate it).
    """
    arr = _arrow(barcodes)
    if arr is None:
        values = barcodes.astype(object)
        padded = (values.str.startswith("N") | values.str.endswith("N")).fillna(False).to_numpy(dtype=bool)
        names = np.sort(strip_barcode(pd.Series(values[universe].dropna().unique(), dtype=object)).unique())
        index = pd.Index(names, dtype=object)
        codes = np.asarray(index.get_indexer(values), dtype=np.int64)
        codes[padded] = index.get_indexer(strip_barcode(values[padded]))
        return codes, len(names)
    padded = pc.fill_null(pc.or_(pc.starts_with(arr, "N"), pc.ends_with(arr, "N")), False)
    names = pc.unique(strip_end_n(pc.filter(arr, pa.array(universe)))).drop_null()
    names = names.take(pc.array_sort_indices(names))  # byte order of UTF-8 = code point order
    # one hash lookup for the raw values and the stripped padded ones, appended as extra chunks
    stripped = pc.utf8_trim(pc.filter(arr, padded), "N")
    chunks = [*arr.chunks, *(stripped.chunks if isinstance(stripped, pa.ChunkedArray) else [stripped])]
    found = pc.index_in(pa.chunked_array(chunks, type=arr.type), value_set=names)
    found = np.asarray(pc.fill_null(found, -1).to_numpy(), dtype=np.int64)
    codes = found[: len(barcodes)]
    codes[np.flatnonzero(padded.to_numpy(zero_copy_only=False))] = found[len(barcodes) :]
    return codes, len(names)


class _Table:
    """Factorized columns of the whole table (species and barcode codes in code point order)."""

    def __init__(self, df: pd.DataFrame, extra_universe: np.ndarray):
        missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
        if missing:
            raise KeyError(f"assign_splits needs columns {missing}")
        sp_codes, sp_names = pd.factorize(df["species"])
        sp_names = np.asarray(sp_names, dtype=object)
        rank = np.empty(len(sp_names), dtype=np.int64)
        rank[np.argsort(sp_names, kind="stable")] = np.arange(len(sp_names))  # Python str order = code points
        self.species = np.where(sp_codes >= 0, np.append(rank, -1)[sp_codes], -1)
        self.n_species = len(sp_names)
        names = np.empty(len(sp_names), dtype=object)
        names[rank] = sp_names
        self.species_names = names  # by species code
        ge_codes, ge_names = pd.factorize(df["genus"])
        self.genus = np.asarray(ge_codes, dtype=np.int64)
        self.n_genus = len(ge_names)
        sp_novel = novel_species_names(pd.Series(names, dtype=object))
        ge_novel = novel_genus_names(pd.Series(np.asarray(ge_names, dtype=object), dtype=object))
        self.present = self.species >= 0
        self.novel = self.present & (np.append(sp_novel, False)[self.species] | np.append(ge_novel, False)[self.genus])
        self.barcode, self.n_barcodes = _strip_codes(df["dna_barcode"], self.present | extra_universe)


def _lookup(codes: np.ndarray, table: np.ndarray) -> np.ndarray:
    """``table[codes]`` with code -1 (missing) mapped to False."""
    return np.append(table, False)[codes]


class _Protocol:
    """The published steps on the records of ``rows`` (all rows, or the new ones of a frozen rebuild)."""

    def __init__(self, tab: _Table, rows: np.ndarray, known_genus: np.ndarray, pinned: np.ndarray):
        self.tab = tab
        self.species = tab.species[rows]
        self.barcode = tab.barcode[rows]
        self.present = tab.present[rows]
        self.known = known_genus[tab.genus[rows]]  # known_genus[-1]: is a missing genus known
        # candidates of P are the records on barcodes that may move (present and not pinned)
        self.selectable = (self.barcode >= 0) & ~_lookup(self.barcode, pinned)
        self.counted = self.selectable | (self.barcode < 0)
        self.split = np.where(self.present & ~tab.novel[rows], _SEEN, PRETRAIN).astype(np.int8)

    def count(self, mask: np.ndarray) -> np.ndarray:
        """Rows per species code among ``mask`` (rows without species are not counted)."""
        return np.bincount(self.species[mask & self.present], minlength=self.tab.n_species)

    def species_rows(self, species_mask: np.ndarray) -> np.ndarray:
        return _lookup(self.species, species_mask)

    def move(self, barcodes, code: int) -> None:
        hit = np.zeros(self.tab.n_barcodes, dtype=bool)
        hit[np.asarray(barcodes, dtype=np.int64)] = True
        self.split[_lookup(self.barcode, hit)] = code

    def groups(self, state: int) -> _Groups:
        tab = self.tab
        in_state = self.present & (self.split == state)
        cand = in_state & self.selectable
        stride = np.int64(max(tab.n_barcodes, 1))
        keys, sizes = np.unique(self.species[cand] * stride + self.barcode[cand], return_counts=True)
        species = keys // stride
        start = np.flatnonzero(np.r_[True, species[1:] != species[:-1]]) if len(keys) else np.zeros(0, np.int64)
        stop = np.r_[start[1:], len(keys)].astype(np.int64)
        n_by_species = self.count(in_state & self.counted)
        return _Groups(
            species[start],
            n_by_species[species[start]],
            start,
            stop,
            sizes.astype(np.int64),
            keys % stride,
            n_by_species,
        )

    def partition(self, groups: _Groups, p: PartitionParams) -> list[int]:
        rng = np.random.default_rng(p.seed)
        chosen: list[int] = []
        for g in np.flatnonzero((groups.n >= p.min_n) & (groups.stop - groups.start >= 2)):
            n = int(groups.n[g])
            if p.target(n) == 0:
                continue  # pragma: no mutate - never reached: min_n filters out every n with target(n) == 0
            sizes, barcodes = groups.sorted_block(g)
            if sizes.sum() < p.target(n) * p.soft1:
                # routine P needs barcoded rows worth its target: records without a barcode count in n (as every
                # published record had one) but can never be drawn
                name = self.tab.species_names[groups.species[g]]
                raise InputError(
                    f"species {name!r}: {n} records, only {int(sizes.sum())} of them on a barcode the split may draw; "
                    "the protocol's targets assume every record has one: fill in the missing dna_barcode values or "
                    "drop those records"
                )
            picked = choose_barcodes(sizes.tolist(), n, p, rng)
            chosen.extend(barcodes[picked].tolist())
        return chosen

    def run(self, forced_unseen: np.ndarray, never_unseen: np.ndarray) -> np.ndarray:
        # unseen species: >= 8 viable (known genus, placeholder) rows, or pinned by a frozen release
        viable = self.count(self.known & (self.split == PRETRAIN) & self.present)
        self.split[self.species_rows(((viable >= 8) & ~never_unseen) | forced_unseen)] = _UNSEEN
        singles = self.count(self.present & (self.split == _SEEN)) == 1
        self.split[self.species_rows(singles)] = TRAIN
        self.move(self.partition(self.groups(_SEEN), TEST_P), TEST)
        val_groups = self.groups(_SEEN)
        val = self.partition(val_groups, VAL_P) + self.top_up(val_groups, singles)
        self.move(val, VAL)
        self.split[self.split == _SEEN] = TRAIN
        self.move(self.partition(self.groups(_UNSEEN), TEST_UNSEEN_P), TEST_UNSEEN)
        self.move(self.partition(self.groups(_UNSEEN), VAL_UNSEEN_P), VAL_UNSEEN)
        self.split[self.split == _UNSEEN] = KEY_UNSEEN
        self.split[self.present & (self.split == PRETRAIN)] = OTHER_HELDOUT
        return self.split

    def top_up(self, groups: _Groups, singles: np.ndarray) -> list[int]:
        """Long-tail val top-up: one single-record barcode from each eligible 7..19-row species."""
        n_all = groups.n_by_species
        goal = round(0.05 * (int(singles.sum()) + int(n_all[n_all < 20].sum())))
        small = groups.n < 20
        nt = self.count(self.split == TEST)[groups.species]
        m = groups.n + nt
        allowed = np.where(m < 8, 0, np.minimum(25, np.floor(4 + (m - 8) / 4)))
        min_size = np.minimum.reduceat(groups.sizes, groups.start) if len(groups.start) else groups.n
        eligible = np.flatnonzero((groups.n >= 7) & small & (nt <= allowed) & (min_size == 1))
        # each adds one row; the walk stops once the total reaches the goal (one at least)
        return [int(groups.sorted_block(g)[1][0]) for g in eligible[: max(goal, 1)]]


def _codes_of(values: pd.Series) -> np.ndarray:
    names = pd.Series(values).astype(object)
    unknown = sorted(set(names.dropna().unique()) - set(SPLITS)) + (["<missing>"] if names.isna().any() else [])
    if unknown:
        raise ValueError(f"freeze holds split names outside {SPLITS}: {unknown[:5]}")
    return pd.Categorical(names, categories=SPLITS).codes.astype(np.int8)


def assign_splits(
    df: pd.DataFrame,
    freeze: pd.Series | None = None,
    freeze_barcodes: pd.Series | None = None,
    held_barcodes: pd.Series | None = None,
) -> pd.Series:
    """The split of every row of ``df`` (needs processid, genus, species, dna_barcode).

    Returns a categorical Series (categories in the published order ``SPLITS``), aligned with ``df``'s index
    and row order; ``df`` is not modified. ``freeze``: the splits of a previous release, indexed by
    processid; see the module docstring for what happens to old and new records. ``freeze_barcodes``: the
    frozen records' ``barcode_digest`` (aligned with ``freeze``; missing: no barcode), so that the barcodes of
    frozen records absent from ``df``, or whose barcode is now missing or another, pin new records as present
    ones do. ``held_barcodes``: barcodes frozen records were released with in earlier versions and carry no more
    (aligned with ``freeze``: space-separated ``barcode_digest`` values, or missing), which pin all the same.
    """
    old_split = np.full(len(df), -1, dtype=np.int8)
    absent_split = old_split
    if freeze is not None and len(freeze):
        keys = pd.Index(processid_keys(freeze.index))  # as ingest matches records: case, spaces, NFC aside
        if not keys.is_unique:
            raise ValueError("freeze: processid appears more than once")
        frozen = _codes_of(freeze)
        where = keys.get_indexer(pd.Index(processid_keys(df["processid"])))
        old_split = np.where(where >= 0, frozen[where], -1).astype(np.int8)
        ghost_splits, ghost_digests = [], []
        if freeze_barcodes is not None:
            # a frozen barcode its record no longer carries (the record gone, its barcode failed or corrected) still
            # pins: only these digests are read out (millions of frozen records are not)
            gone = np.flatnonzero(~_carry_their_barcodes(df, where, freeze_barcodes, len(keys)))
            ghost_splits.append(frozen[gone])
            ghost_digests.append(np.array([_text_or_none(v) for v in _values_at(freeze_barcodes, gone)], object))
        if held_barcodes is not None:
            held_split, held_digest = _held_pairs(held_barcodes, frozen)
            ghost_splits.append(held_split)
            ghost_digests.append(held_digest)
        if ghost_splits:
            absent_split = _absent_pins(df, np.concatenate(ghost_splits), np.concatenate(ghost_digests))
    old = old_split >= 0
    new_rows = np.flatnonzero(~old)
    # a new row on an absent frozen record's barcode is pinned by it as by an old row
    pin_split = np.where(old, old_split, absent_split).astype(np.int8)
    pins = pin_split >= 0
    tab = _Table(df, extra_universe=pins & (pin_split != PRETRAIN) & (pin_split != OTHER_HELDOUT))

    # known genera: genus values of clean-species rows, over the whole table (isin: NaN matches NaN)
    known_genus = np.zeros(tab.n_genus + 1, dtype=bool)  # last slot = missing genus
    known_genus[tab.genus[tab.present & ~tab.novel]] = True
    pinned = np.zeros(tab.n_barcodes, dtype=bool)
    forced_unseen = np.zeros(tab.n_species, dtype=bool)
    never_unseen = np.zeros(tab.n_species, dtype=bool)
    pinned[tab.barcode[pins & (tab.barcode >= 0)]] = True  # every old barcode: never drawn
    if old.any():
        # pin each old species name to its majority family
        named = old & tab.present
        n_unseen = np.bincount(
            tab.species[named & np.isin(old_split, (KEY_UNSEEN, VAL_UNSEEN, TEST_UNSEEN))], minlength=tab.n_species
        )
        n_seen = np.bincount(tab.species[named & np.isin(old_split, (TRAIN, VAL, TEST))], minlength=tab.n_species)
        forced_unseen = (n_unseen > 0) & (n_unseen >= n_seen)
        never_unseen = (n_seen > 0) & ~forced_unseen
    proto = _Protocol(tab, new_rows, known_genus, pinned)
    new_split = proto.run(forced_unseen, never_unseen)
    split = old_split.copy()
    split[new_rows] = new_split
    if pins.any() and len(new_rows):
        split[new_rows] = _pin_to_frozen_barcodes(tab, pin_split, proto.barcode, new_split)
    return pd.Series(pd.Categorical.from_codes(split, categories=SPLITS), index=df.index, name="split")


# frozen splits by how strongly they pin a barcode: the held-out ones (in reverse priority) over train and key_unseen
_PIN_ORDER = (KEY_UNSEEN, TRAIN, *HELDOUT_CODES[::-1])


_DIGEST_SLICE = 1 << 16  # barcodes turned into Python strings at once (5.15M of them are 3.4 GB)


def _values_at(values, positions: np.ndarray) -> list:
    """``values[positions]`` as Python objects, for a Series (by position), Arrow array, numpy array or list,
    without converting the rest (a freeze's digests are millions; the absent records' are few)."""
    if isinstance(values, pd.Series):
        return values.iloc[positions].tolist()
    if isinstance(values, pa.Array | pa.ChunkedArray):
        return values.take(pa.array(positions, pa.int64())).to_pylist()
    return [values[i] for i in positions.tolist()]


def strip_end_n(array):
    """``utf8_trim(array, "N")``: each barcode without its end N (the ``strip`` barcode). Arrow trims 10 s per
    5M barcodes, so only those that start or end with N are trimmed (cleaned barcodes seldom do: ~0.3 s)."""
    if isinstance(array, pa.ChunkedArray):  # a mask replaces values of one array
        return pa.chunked_array([strip_end_n(chunk) for chunk in array.chunks], array.type)
    ends = pc.fill_null(pc.or_(pc.starts_with(array, "N"), pc.ends_with(array, "N")), False)
    n_ends = pc.sum(ends).as_py() or 0
    if n_ends == 0:
        return array
    if n_ends > len(array) // 8:  # many: trimming all is cheaper than picking them out and back
        return pc.utf8_trim(array, "N")
    return pc.replace_with_mask(array, ends, pc.utf8_trim(array.filter(ends), "N"))


def barcode_digest(barcodes) -> pa.Array:
    """Per value, the md5 hex digest of its ``strip`` barcode (the barcode stage's ``barcode_key``); null where
    missing or all ``N``. ``barcodes``: Arrow, a (possibly Arrow-backed) Series or a sequence; read a slice at a
    time, so that only the digests are held whole."""
    if isinstance(barcodes, pa.Array | pa.ChunkedArray):
        arrow, values = barcodes, None
    else:
        arrow = _arrow(barcodes) if isinstance(barcodes, pd.Series) else None
        values = None if arrow is not None else np.asarray(barcodes, dtype=object)
    parts = []
    for start in range(0, len(arrow if arrow is not None else values), _DIGEST_SLICE):
        if arrow is not None:
            # large_string: a slice of a column past 2 GB of text has offsets 32 bits cannot hold
            part = strip_end_n(arrow.slice(start, _DIGEST_SLICE).cast(pa.large_string())).to_pylist()
        else:
            part = [v.strip("N") if isinstance(v, str) else None for v in values[start : start + _DIGEST_SLICE]]
        known: dict[str, str] = {}  # records share barcodes: one digest each
        digests = [
            (known.get(v) or known.setdefault(v, hashlib.md5(v.encode("utf-8")).hexdigest())) if v else None
            for v in part
        ]
        parts.append(pa.array(digests, pa.string()))
    return pa.concat_arrays(parts) if parts else pa.array([], pa.string())


def _carry_their_barcodes(df: pd.DataFrame, where: np.ndarray, freeze_barcodes, n_frozen: int) -> np.ndarray:
    """Per frozen record, whether a row of ``df`` is that record (``where``: per row, its frozen record or -1) and
    carries the barcode it was frozen with (by digest, ``_row_digests``), or it was frozen without one."""
    carried = np.zeros(n_frozen, dtype=bool)
    rows = np.flatnonzero(where >= 0)
    if not len(rows):
        return carried
    frozen = where[rows]
    if isinstance(freeze_barcodes, pa.Array | pa.ChunkedArray):
        digests = freeze_barcodes
    else:
        arrow = _arrow(freeze_barcodes) if isinstance(freeze_barcodes, pd.Series) else None
        # a list or object array may hold NaN for "no barcode" (pandas' missing value)
        digests = arrow if arrow is not None else pa.array([_text_or_none(v) for v in freeze_barcodes], pa.string())
    was = digests.take(pa.array(frozen, pa.int64()))
    now = _row_digests(df).take(pa.array(rows, pa.int64()))
    nothing = pc.fill_null(pc.equal(was, ""), True)  # frozen without a barcode: nothing to hold
    same = pc.fill_null(pc.equal(was, now), False)
    carried[frozen] = pc.or_(nothing, same).to_numpy(zero_copy_only=False)
    return carried


def _text_or_none(value) -> str | None:
    return value if isinstance(value, str) else None


def held_digests(held_barcodes) -> tuple[np.ndarray, list[str]]:
    """Each barcode a frozen record holds without carrying it (``held_barcodes``, aligned with the freeze:
    space-separated digests or missing; few records have any): the freeze positions and the digests, one pair per
    barcode."""
    cells = held_barcodes if isinstance(held_barcodes, pd.Series) else pd.Series(list(held_barcodes), dtype=object)
    positions = np.flatnonzero(cells.notna().to_numpy() & (cells.astype(str).str.strip() != "").to_numpy())
    at, digests = [], []
    for position, cell in zip(positions.tolist(), cells.iloc[positions].tolist()):
        for digest in str(cell).split():
            at.append(position)
            digests.append(digest)
    return np.array(at, dtype=np.int64), digests


def _held_pairs(held_barcodes, frozen: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(split code, digest) for each barcode a frozen record holds without carrying it (``held_digests``)."""
    at, digests = held_digests(held_barcodes)
    return frozen[at].astype(np.int8), np.array(digests, dtype=object)


def _absent_pins(df: pd.DataFrame, splits: np.ndarray, digests: np.ndarray) -> np.ndarray:
    """Per row of ``df``, the split that frozen records absent from ``df`` hold on its barcode (their codes
    ``splits``, their ``barcode_digest`` values ``digests``; the strongest pin where they disagree), else -1.
    ``df``'s own ``barcode_key`` column (the barcode stage's, equal to ``barcode_digest``) is used where it has
    one: no barcode is hashed again."""
    out = np.full(len(df), -1, dtype=np.int8)
    known = np.array([isinstance(d, str) and d != "" for d in digests], dtype=bool)
    if not known.any():
        return out
    rank = np.zeros(len(SPLITS), dtype=np.int64)  # pretrain and other_heldout: pin the barcode, not a split
    rank[list(_PIN_ORDER)] = np.arange(1, len(_PIN_ORDER) + 1)
    ghosts = pd.DataFrame({"digest": digests[known], "split": splits[known], "rank": rank[splits[known]]})
    strongest = ghosts.sort_values(["digest", "rank"], kind="stable").drop_duplicates("digest", keep="last")
    rows = _row_digests(df)
    ghosts = pa.array(strongest["digest"].to_numpy(dtype=object), pa.string())
    where = pc.fill_null(pc.index_in(rows, value_set=ghosts), -1).to_numpy(zero_copy_only=False)
    hit = where >= 0
    out[hit] = strongest["split"].to_numpy(dtype=np.int8)[where[hit]]
    return out


def _row_digests(df: pd.DataFrame) -> pa.Array:
    """Each row's ``barcode_digest``: its ``barcode_key`` where the table has one (the barcode stage's: nothing
    hashed again; "" = known to pin nothing), hashed from ``dna_barcode`` where the key is missing but a barcode
    is there."""
    if "barcode_key" not in df:
        return barcode_digest(df["dna_barcode"])
    column = df["barcode_key"]
    arrow = _arrow(column)
    if arrow is None:
        keys = pa.array([v if isinstance(v, str) else None for v in column.tolist()], pa.string())
    else:
        chunks = [chunk.cast(pa.string()) for chunk in arrow.chunks]
        keys = pa.concat_arrays(chunks) if chunks else pa.array([], pa.string())
    unkeyed = ~pc.is_valid(keys).to_numpy(zero_copy_only=False) & pd.notna(df["dna_barcode"]).to_numpy()
    if not unkeyed.any():
        return keys
    filled = keys.to_pylist()
    positions = np.flatnonzero(unkeyed)
    for i, digest in zip(positions.tolist(), barcode_digest(df["dna_barcode"].iloc[positions]).to_pylist()):
        filled[i] = digest
    return pa.array(filled, pa.string())


def _pin_to_frozen_barcodes(tab: _Table, pin_split: np.ndarray, barcode: np.ndarray, split: np.ndarray):
    """New records on a barcode whose old (or absent frozen) records hold a labelled split: join it, or hold out
    (table). ``pin_split``: per row of the table, the frozen split that pins its barcode, else -1."""
    frozen = np.full(tab.n_barcodes + 1, -1, dtype=np.int8)  # last slot: missing barcode
    old = (pin_split >= 0) & (tab.barcode >= 0)
    # lowest priority first, so the held-out splits (last written, in reverse priority) win
    for code in _PIN_ORDER:
        frozen[tab.barcode[old & (pin_split == code)]] = code
    pin = frozen[barcode]
    split = split.copy()
    heldout = np.isin(pin, HELDOUT_CODES)
    split[heldout] = pin[heldout]
    clash = np.isin(pin, (TRAIN, KEY_UNSEEN)) & np.isin(split, (TRAIN, KEY_UNSEEN)) & (split != pin)
    split[clash] = OTHER_HELDOUT
    return split


def chunk_of(processid: pd.Series, split: pd.Series) -> pd.Series:
    """Image sub-folder: md5(processid) hex, 2 digits for pretrain, 1 for train/other_heldout, else ''."""
    split = pd.Series(split).astype(object).to_numpy()
    width = np.select([split == "pretrain", np.isin(split, ("train", "other_heldout"))], [2, 1], 0)
    pids = pd.Series(processid).astype(object).to_numpy()
    out = np.full(len(pids), "", dtype=object)
    for i in np.flatnonzero(width):
        out[i] = hashlib.md5(str(pids[i]).encode("utf-8")).hexdigest()[: width[i]]
    index = processid.index if isinstance(processid, pd.Series) else None
    return pd.Series(out, index=index, name="chunk", dtype=object)


# chunk names by index: 0-255 two hex digits (a first md5 byte), 256-271 one digit (its high half), 272 none
_CHUNK_NAMES = pa.array([f"{i:02x}" for i in range(256)] + [f"{i:x}" for i in range(16)] + [""], pa.string())


def chunk_names(processid: pa.Array, split: np.ndarray) -> pa.Array:
    """``chunk_of`` for Arrow text and split codes (``SPLITS`` positions), md5 on the processids' UTF-8 bytes."""
    width = np.select([split == PRETRAIN, (split == TRAIN) | (split == OTHER_HELDOUT)], [2, 1], 0)
    rows = np.flatnonzero(width)
    ids = pc.take(processid, pa.array(rows)).cast(pa.binary()).to_pylist()
    digests = b"".join(map(methodcaller("digest"), map(hashlib.md5, ids)))  # no Python frame per record
    first = np.frombuffer(digests, dtype=np.uint8)[::16].astype(np.int64)
    index = np.full(len(split), len(_CHUNK_NAMES) - 1, dtype=np.int64)
    index[rows] = np.where(width[rows] == 2, first, 256 + (first >> 4))
    return _CHUNK_NAMES.take(pa.array(index))


def split_summary(df: pd.DataFrame) -> pd.DataFrame:
    """Per split (published order, then a total row): samples, distinct strip barcodes, distinct species.
    A ``barcode_key`` column (one value per strip barcode, e.g. its md5 from the barcode stage) is counted
    instead of the sequences when present; otherwise the sequences are stripped and counted on Arrow data."""
    split = pd.Categorical(df["split"].astype(object), categories=SPLITS).codes.astype(np.int64)
    if "barcode_key" in df:
        barcode = pd.factorize(df["barcode_key"])[0].astype(np.int64)
    else:
        barcodes = df["dna_barcode"]
        if pd.api.types.is_string_dtype(barcodes.dtype) and barcodes.dtype != object:
            array = pa.array(barcodes)
        else:  # object, or the float64 read_csv gives an all-missing column
            array = pa.array(barcodes.astype(object).where(barcodes.notna(), None), pa.string())
        stripped = strip_end_n(array)
        # codes against one value set: a chunked column's chunks would each get their own dictionary
        barcode = pc.fill_null(pc.index_in(stripped, value_set=pc.unique(stripped).drop_null()), -1)
        barcode = barcode.to_numpy().astype(np.int64)
    species = pd.factorize(df["species"].astype(object))[0].astype(np.int64)

    def distinct(codes: np.ndarray, mask: np.ndarray) -> int:
        return int(np.unique(codes[mask & (codes >= 0)]).size)

    rows = []
    for code, name in enumerate(SPLITS):
        mask = split == code
        rows.append((name, int(mask.sum()), distinct(barcode, mask), distinct(species, mask)))
    everything = np.ones(len(split), dtype=bool)
    rows.append(("total", len(split), distinct(barcode, everything), distinct(species, everything)))
    return pd.DataFrame(rows, columns=["split", "samples", "barcodes", "species"])
