"""The statistics the BIOSCAN-5M paper documents its data with, computed from a release's metadata table.

:func:`compute_stats` returns one pandas table per statistic (:data:`TABLES`, in that order); :func:`summary` sums
them up as a small JSON-able dict. The figures (``stats.figures``) are drawn from these tables only.

Input: the release's columns (``core.schemas.RELEASE_COLUMNS``; :data:`STAT_COLUMNS` are the ones read). Text
columns may be plain or dictionary-encoded; a missing value is null or an empty string. Each text column is
dictionary-encoded once (integer codes, category names sorted), so every count is a ``numpy.bincount`` or
``numpy.unique`` over integers, and tables come out in an order fixed by the data alone. The barcode column is
never turned into Python strings: distinct barcodes are counted on 64-bit keys (``genetics.barcode_keys``) and the
genetic distances read only the sampled rows (``genetics``). Instead of ``dna_barcode`` a table may carry the keys
and where each barcode lies in its barcode shard file (``genetics.ShardBarcodes``, as
``stats.stage.read_workflow_table`` builds it): the same statistics, without holding the barcodes.

Tables (ints are int64; ties are broken by name, missing names last):

- ``label_completeness``: rank (phylum … species, dna_bin), categories, labelled, labelled_pct (rounded to 2),
  imbalance_ratio (records of the largest category / of the smallest, rounded to 1; NaN without categories), and
  the published BIOSCAN-5M figures (:data:`PUBLISHED_5M`) published_categories and published_labelled_pct (float:
  NaN where the paper gives none).
- ``records_per_order`` (order, records), ``records_per_family`` (family, order, records: one row per family and
  order it is filed under), ``species_sizes`` (species, records), ``countries`` (country, records),
  ``provinces`` (country, province_state, records): most records first.
- ``bins_per_species`` (bins, species: how many labelled species have records in that many distinct BINs; 0 =
  none of the species' records has a BIN) and ``species_per_bin`` (species, bins: how many BINs hold that many
  distinct labelled species; BINs without a labelled species left out), by the first column.
- ``sites``: lat, lon, records: distinct coordinate pairs rounded to :data:`SITE_DECIMALS` decimals (about 1 km:
  GPS scatter within one trap site is one site; both present, finite, |lat| ≤ 90, |lon| ≤ 180), by lat then lon.
- ``genetic_distances``, ``genetic_histogram``: see ``genetics.distance_tables``.
- ``size_fields``: order ("all" first, then the :data:`SIZE_ORDERS` largest orders), field (:data:`SIZE_FIELDS`),
  count, mean, p05, p25, median, p75, p95 over the non-missing values (percentiles: linear interpolation).
- ``size_histogram``: field, order, bin_left, bin_right, records: :data:`SIZE_BINS` equal bins per field between
  its 0.5th and 99.5th percentile over all rows (equal in log10 for ``image_measurement_value``, edges given in
  pixels), then the values below that range (a first row, ``bin_left`` empty) and above it (a last row,
  ``bin_right`` empty), so each (field, order) sums to its count and no bin holds a tail beyond its edges. Every
  row is listed, empty ones too.
- ``split_table``: split (``core.schemas.SPLITS`` in order, then ``total``), records, species (distinct labelled),
  barcodes (distinct, leading and trailing ``N`` stripped), bins. A row with another split value counts only in
  the total.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from bioscan_rebuild.core.schemas import RANKS, SPLITS
from bioscan_rebuild.stats.genetics import COMPARISONS, METHOD, K, ShardBarcodes, distance_tables, table_barcodes

# The published BIOSCAN-5M figures (5,150,850 records), as the project's dataset spec (spec/dataset.md) quotes
# them from Gharaee et al., "BIOSCAN-5M: A Multimodal Dataset for Insect Biodiversity", NeurIPS 2024 Datasets
# and Benchmarks. Only what the spec states is here: a rank without a figure stays NaN in the tables.
PUBLISHED_5M = {
    "records": 5_150_850,
    "splits": {
        "pretrain": 4_677_756,
        "train": 289_203,
        "val": 14_757,
        "test": 39_373,
        "key_unseen": 36_465,
        "val_unseen": 8_819,
        "test_unseen": 7_887,
        "other_heldout": 76_590,
    },
    "categories": {"class": 10, "order": 55, "family": 934, "genus": 7_605, "species": 22_622, "dna_bin": 324_411},
    "labelled_pct": {
        "class": 99.9,
        "order": 99.7,
        "family": 95.8,
        "subfamily": 28.6,
        "genus": 23.8,
        "species": 9.2,
        "dna_bin": 99.7,
    },
    "barcodes": 2_486_492,
}

COMPLETENESS_RANKS = (*RANKS, "dna_bin")
LABEL_COLUMNS = (*RANKS, "dna_bin", "country", "province_state", "split")
SIZE_FIELDS = ("image_measurement_value", "area_fraction", "scale_factor")
LOG_SIZE_FIELDS = ("image_measurement_value",)  # spans orders of magnitude: binned in log10
SIZE_ORDERS = 10
SIZE_BINS = 40
SIZE_RANGE_PERCENTILES = (0.5, 99.5)
SIZE_PERCENTILES = {"p05": 5, "p25": 25, "median": 50, "p75": 75, "p95": 95}
STAT_COLUMNS = (*LABEL_COLUMNS, "dna_barcode", "coord-lat", "coord-lon", *SIZE_FIELDS)
TABLES = (
    "label_completeness",
    "records_per_order",
    "records_per_family",
    "species_sizes",
    "bins_per_species",
    "species_per_bin",
    "countries",
    "provinces",
    "sites",
    "genetic_distances",
    "genetic_histogram",
    "size_fields",
    "size_histogram",
    "split_table",
)


@dataclass(frozen=True)
class Labels:
    """A text column as integer codes: ``codes`` per row (int32, -1 = missing) index ``names`` (str, sorted)."""

    codes: np.ndarray
    names: np.ndarray

    def counts(self) -> np.ndarray:
        """Records per name (aligned with ``names``)."""
        return np.bincount(self.codes[self.codes >= 0], minlength=len(self.names)).astype(np.int64)


def encode_labels(column: pa.ChunkedArray | pa.Array) -> Labels:
    """Integer codes of a text column, plain or dictionary-encoded (a dictionary column is never expanded to
    strings: its per-chunk dictionaries are unified); null and "" are missing. Only names that occur are kept."""
    if isinstance(column, pa.Array):
        column = pa.chunked_array([column])
    if pa.types.is_dictionary(column.type) and any(chunk.dictionary.null_count for chunk in column.chunks):
        column = column.cast(pa.string())  # Arrow cannot unify dictionaries holding a null: expand this rare one
    if pa.types.is_dictionary(column.type):
        if not (pa.types.is_string(column.type.value_type) or pa.types.is_large_string(column.type.value_type)):
            column = column.cast(pa.dictionary(column.type.index_type, pa.string()))
        # one dictionary for every chunk (the Parquet reader gives each row group its own)
        encoded = pa.table({"labels": column}).unify_dictionaries()["labels"]
    else:
        if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
            column = column.cast(pa.string())
        encoded = pc.dictionary_encode(column)  # one memo for the whole column: every chunk gets its dictionary
    chunks = [chunk for chunk in encoded.chunks if len(chunk)]
    if not chunks:
        return Labels(np.full(len(column), -1, dtype=np.int32), np.array([], dtype=object))
    dictionary = chunks[-1].dictionary
    if any(len(chunk.dictionary) != len(dictionary) for chunk in chunks):
        raise AssertionError("the column's chunks kept different dictionaries")
    indices = np.concatenate(
        [chunk.indices.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64) for chunk in chunks]
    )
    names = np.asarray(dictionary.to_pylist(), dtype=object)
    used = np.bincount(indices[indices >= 0], minlength=len(names)) > 0
    kept = np.flatnonzero(used & (names != "") & np.array([name is not None for name in names], dtype=bool))
    ordered = kept[np.argsort(names[kept], kind="stable")]
    remap = np.full(len(names) + 1, -1, dtype=np.int32)  # the extra slot maps the null index -1 to -1
    remap[ordered] = np.arange(len(ordered), dtype=np.int32)
    return Labels(remap[indices], names[ordered])


def numeric_values(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """A numeric column (or text holding numbers) as float64, NaN for missing (null or "")."""
    if pa.types.is_dictionary(column.type):
        column = column.cast(pa.string())
    if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
        column = pc.if_else(pc.equal(column, ""), pa.scalar(None, column.type), column)
    values = pc.fill_null(column.cast(pa.float64()), math.nan)
    return np.asarray(values.to_numpy(), dtype=np.float64)


def _names(labels: Labels, codes: np.ndarray) -> pd.Series:
    """Names of ``codes`` (-1 -> missing) as a str Series."""
    with_missing = np.append(labels.names, None)  # index -1 lands on None
    return pd.Series(with_missing[codes], dtype="str")


def _count_table(labels: dict[str, Labels], keys: list[str], required: list[str] | None = None) -> pd.DataFrame:
    """Records per distinct combination of ``keys`` over rows where every ``required`` key (default: all) is
    present; most records first, then by name (missing last)."""
    required = keys if required is None else required
    rows = np.ones(len(labels[keys[0]].codes), dtype=bool)
    for key in required:
        rows &= labels[key].codes >= 0
    combined = np.zeros(int(rows.sum()), dtype=np.int64)
    for key in keys:  # mixed radix: each digit is code + 1 (0 = missing)
        combined = combined * (len(labels[key].names) + 1) + labels[key].codes[rows] + 1
    values, counts = np.unique(combined, return_counts=True)
    digits = {}
    for key in reversed(keys):
        base = len(labels[key].names) + 1
        digits[key] = values % base - 1
        values = values // base
    sort_keys = [np.where(digits[key] < 0, len(labels[key].names), digits[key]) for key in reversed(keys)]
    order = np.lexsort((*sort_keys, -counts))
    table = {key: _names(labels[key], digits[key][order]) for key in keys}
    table["records"] = counts[order].astype(np.int64)
    return pd.DataFrame(table)


def _label_completeness(labels: dict[str, Labels], records: int) -> pd.DataFrame:
    rows = []
    for rank in COMPLETENESS_RANKS:
        counts = labels[rank].counts()
        counts = counts[counts > 0]
        labelled = int(counts.sum())
        rows.append(
            {
                "rank": rank,
                "categories": int(counts.size),
                "labelled": labelled,
                "labelled_pct": round(100 * labelled / records, 2) if records else math.nan,
                "imbalance_ratio": round(float(counts.max() / counts.min()), 1) if counts.size else math.nan,
                "published_categories": float(PUBLISHED_5M["categories"].get(rank, math.nan)),
                "published_labelled_pct": float(PUBLISHED_5M["labelled_pct"].get(rank, math.nan)),
            }
        )
    return pd.DataFrame(rows).astype({"categories": np.int64, "labelled": np.int64})


def _bins_and_species(labels: dict[str, Labels]) -> tuple[pd.DataFrame, pd.DataFrame]:
    species, bins = labels["species"], labels["dna_bin"]
    both = (species.codes >= 0) & (bins.codes >= 0)
    stride = len(bins.names)
    pairs = np.unique(species.codes[both].astype(np.int64) * stride + bins.codes[both])
    bins_of_species = np.bincount(pairs // stride, minlength=len(species.names))
    species_of_bin = np.bincount(pairs % stride, minlength=stride)
    species_of_bin = species_of_bin[species_of_bin > 0]

    def histogram(values: np.ndarray, value_name: str, count_name: str) -> pd.DataFrame:
        counts = np.bincount(values) if values.size else np.zeros(0, dtype=np.int64)
        present = np.flatnonzero(counts)
        return pd.DataFrame({value_name: present.astype(np.int64), count_name: counts[present].astype(np.int64)})

    return histogram(bins_of_species, "bins", "species"), histogram(species_of_bin, "species", "bins")


SITE_DECIMALS = 2


def _sites(lat: np.ndarray, lon: np.ndarray) -> pd.DataFrame:
    usable = np.isfinite(lat) & np.isfinite(lon) & (np.abs(lat) <= 90) & (np.abs(lon) <= 180)
    # + 0.0 makes -0.0 the same site as 0.0 (rounding can make a -0.0 too)
    lat, lon = np.round(lat[usable], SITE_DECIMALS) + 0.0, np.round(lon[usable], SITE_DECIMALS) + 0.0
    order = np.lexsort((lon, lat))
    lat, lon = lat[order], lon[order]
    new = np.ones(lat.size, dtype=bool)
    new[1:] = (lat[1:] != lat[:-1]) | (lon[1:] != lon[:-1])
    starts = np.flatnonzero(new)
    counts = np.diff(np.append(starts, lat.size)).astype(np.int64)
    return pd.DataFrame({"lat": lat[starts], "lon": lon[starts], "records": counts})


def _top_orders(orders: Labels) -> list[tuple[str, int]]:
    counts = orders.counts()
    ranked = np.lexsort((np.arange(counts.size), -counts))  # names are sorted: position breaks ties by name
    return [(str(orders.names[i]), int(i)) for i in ranked[:SIZE_ORDERS] if counts[i] > 0]


def _size_tables(values: dict[str, np.ndarray], orders: Labels) -> tuple[pd.DataFrame, pd.DataFrame]:
    groups = [("all", np.ones(len(orders.codes), dtype=bool))]
    groups += [(name, orders.codes == code) for name, code in _top_orders(orders)]
    stats, histograms = [], []
    for name, rows in groups:
        for field in SIZE_FIELDS:
            field_values = values[field][rows]
            field_values = field_values[np.isfinite(field_values)]
            row = {"order": name, "field": field, "count": int(field_values.size)}
            if field_values.size:
                row["mean"] = float(field_values.mean())
                quantiles = np.percentile(field_values, list(SIZE_PERCENTILES.values()))
                row.update({key: float(q) for key, q in zip(SIZE_PERCENTILES, quantiles)})
            else:
                row.update({"mean": math.nan, **dict.fromkeys(SIZE_PERCENTILES, math.nan)})
            stats.append(row)
    for field in SIZE_FIELDS:
        log = field in LOG_SIZE_FIELDS
        finite = values[field][np.isfinite(values[field])]
        scale = np.log10(finite[finite > 0]) if log else finite
        if not finite.size:
            continue
        # no positive value on a log scale (all zeros, legal): one decade from 1, every record below it, so the
        # rows still sum to the field's count
        low, high = np.percentile(scale, SIZE_RANGE_PERCENTILES) if scale.size else (0.0, 1.0)
        if not high > low:  # one value: a bin of width 1 (a decade in log10) around it
            high = low + 1.0
        edges = np.linspace(low, high, SIZE_BINS + 1)
        shown = 10.0**edges if log else edges
        for name, rows in groups:
            field_values = values[field][rows]
            field_values = field_values[np.isfinite(field_values)]
            with np.errstate(divide="ignore", invalid="ignore"):  # log10(0) = -inf: the first bin
                position = np.log10(field_values) if log else field_values
            if log:  # a negative value (a foreign release's) is below the range, as 0 is, not above it
                position = np.where(field_values < 0, -np.inf, position)
            # -1: below the range, SIZE_BINS: above it; the top edge belongs to the last bin
            where = np.searchsorted(edges, position, side="right") - 1
            where[position == edges[-1]] = SIZE_BINS - 1
            counts = np.bincount(np.clip(where, -1, SIZE_BINS) + 1, minlength=SIZE_BINS + 2).astype(np.int64)
            histograms.append(
                pd.DataFrame(
                    {
                        "field": field,
                        "order": name,
                        "bin_left": np.r_[np.nan, shown],
                        "bin_right": np.r_[shown, np.nan],
                        "records": counts,
                    }
                )
            )
    if not histograms:  # no size field has a value: the table's columns, no rows
        empty = np.zeros(0)
        histograms.append(
            pd.DataFrame(
                {"field": empty.astype(str), "order": empty.astype(str), "bin_left": empty, "bin_right": empty}
            )
        )
        histograms[0]["records"] = empty.astype(np.int64)
    histogram = pd.concat(histograms, ignore_index=True).astype({"field": "str", "order": "str"})
    stats_table = pd.DataFrame(stats)[["order", "field", "count", "mean", *SIZE_PERCENTILES]]
    return stats_table.astype({"count": np.int64}), histogram


def _distinct(codes: np.ndarray, rows: np.ndarray) -> int:
    present = codes[rows & (codes >= 0)]
    return int(np.count_nonzero(np.bincount(present))) if present.size else 0


def _distinct_values(values: np.ndarray) -> int:
    """How many distinct values (a sort: faster than numpy's hashing unique on millions of 64-bit keys)."""
    if not values.size:
        return 0
    ordered = np.sort(values)
    return int(np.count_nonzero(ordered[1:] != ordered[:-1])) + 1


def _split_table(labels: dict[str, Labels], keys: np.ndarray) -> pd.DataFrame:
    split = labels["split"]
    position = {str(name): code for code, name in enumerate(split.names)}
    has_barcode = keys != 0
    rows = []
    masks = [(name, split.codes == position.get(name, -2)) for name in SPLITS]
    masks.append(("total", np.ones(len(keys), dtype=bool)))
    for name, mask in masks:
        rows.append(
            {
                "split": name,
                "records": int(mask.sum()),
                "species": _distinct(labels["species"].codes, mask),
                "barcodes": _distinct_values(keys[mask & has_barcode]),
                "bins": _distinct(labels["dna_bin"].codes, mask),
            }
        )
    return pd.DataFrame(rows).astype({c: np.int64 for c in ("records", "species", "barcodes", "bins")})


def compute_stats(table: pa.Table, *, seed: int = 0, pairs_per_comparison: int = 2000) -> dict[str, pd.DataFrame]:
    """Every statistic of a release's metadata ``table`` (module docstring): table name -> DataFrame, in the
    order of :data:`TABLES`. ``seed`` and ``pairs_per_comparison`` drive the genetic-distance pairs; the
    ``genetic_distances`` table carries them in ``.attrs`` (method, k, seed, pairs_per_comparison)."""
    in_files = "dna_barcode" not in table.column_names and ShardBarcodes.of_table(table) is not None
    needed = [name for name in STAT_COLUMNS if not (in_files and name == "dna_barcode")]
    missing = [name for name in needed if name not in table.column_names]
    if missing:
        raise ValueError(f"the table has no column {', '.join(missing)} (a release's metadata table has them all)")
    records = table.num_rows
    labels = {name: encode_labels(table[name]) for name in LABEL_COLUMNS}
    keys, barcodes = table_barcodes(table)
    distances, distance_histogram = distance_tables(
        barcodes,
        {rank: labels[rank].codes for rank in ("species", "genus", "order", "dna_bin")},
        keys != 0,
        seed=seed,
        pairs=pairs_per_comparison,
        content=keys,  # the same barcodes drawn whatever the rows' order (it follows the shards)
    )
    distances.attrs.update(method=METHOD, k=K, seed=int(seed), pairs_per_comparison=int(pairs_per_comparison))
    size_stats, size_histogram = _size_tables({f: numeric_values(table[f]) for f in SIZE_FIELDS}, labels["order"])
    bins_per_species, species_per_bin = _bins_and_species(labels)
    tables = {
        "label_completeness": _label_completeness(labels, records),
        "records_per_order": _count_table(labels, ["order"]),
        "records_per_family": _count_table(labels, ["family", "order"], required=["family"]),
        "species_sizes": _count_table(labels, ["species"]),
        "bins_per_species": bins_per_species,
        "species_per_bin": species_per_bin,
        "countries": _count_table(labels, ["country"]),
        "provinces": _count_table(labels, ["country", "province_state"], required=["province_state"]),
        "sites": _sites(numeric_values(table["coord-lat"]), numeric_values(table["coord-lon"])),
        "genetic_distances": distances,
        "genetic_histogram": distance_histogram,
        "size_fields": size_stats,
        "size_histogram": size_histogram,
        "split_table": _split_table(labels, keys),
    }
    assert tuple(tables) == TABLES
    return tables


def _number(value):
    """A JSON number: Python int/float, None for NaN."""
    if value is None:
        return None
    value = float(value) if not isinstance(value, int | np.integer) else int(value)
    return None if isinstance(value, float) and math.isnan(value) else value


def summary(tables: dict[str, pd.DataFrame], table: pa.Table) -> dict:
    """The headline figures of :func:`compute_stats`'s ``tables`` for ``table`` (JSON-able; NaN -> None):
    records, records per split, species, genera, orders, families, BINs, distinct barcodes, the genetics
    method and its parameters, pairs per comparison, and the barcode gap (within-BIN p95 vs the p05 between BINs
    of one genus: an upper bound on the gap to the nearest-neighbour BIN, see ``genetics``)."""
    splits = tables["split_table"].set_index("split")
    ranks = tables["label_completeness"].set_index("rank")["categories"]
    distances = tables["genetic_distances"].set_index("comparison")
    within, between = distances.loc["within_bin", "p95"], distances.loc["between_bins", "p05"]
    return {
        "records": int(table.num_rows),
        "splits": {name: int(splits.loc[name, "records"]) for name in SPLITS},
        "species": int(ranks["species"]),
        "genera": int(ranks["genus"]),
        "families": int(ranks["family"]),
        "orders": int(ranks["order"]),
        "bins": int(ranks["dna_bin"]),
        "barcodes": int(splits.loc["total", "barcodes"]),
        "genetics": {
            "method": tables["genetic_distances"].attrs.get("method", METHOD),
            "k": int(tables["genetic_distances"].attrs.get("k", K)),
            "seed": _number(tables["genetic_distances"].attrs.get("seed")),
            "pairs_per_comparison": _number(tables["genetic_distances"].attrs.get("pairs_per_comparison")),
            "pairs": {name: int(distances.loc[name, "pairs"]) for name in COMPARISONS},
        },
        "barcode_gap": {
            "within_bin_p95": _number(within),
            "between_bins_p05": _number(between),
            "gap": _number(between - within),
        },
    }
