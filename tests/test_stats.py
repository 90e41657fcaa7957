"""The statistics stage (bioscan_rebuild.stats): every table checked against an independent computation in plain
Python (Counter, sets, statistics) over ``to_pylist()`` rows, on a generated 100k-row table with a known structure
and on a release exported from the sample; the Mash distance against known substitution rates; determinism; the
command."""

from __future__ import annotations

import bisect
import csv
import importlib.util
import json
import math
import shutil
import statistics
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from bioscan_rebuild.core.schemas import RANKS, RELEASE_COLUMNS, SPLITS
from bioscan_rebuild.stats.compute import PUBLISHED_5M, SIZE_FIELDS, TABLES, compute_stats, summary
from bioscan_rebuild.stats.genetics import COMPARISONS, HISTOGRAM_EDGES, barcode_keys, sample_pairs, sequence_distance

COMPLETENESS_RANKS = (*RANKS, "dna_bin")
PAIRS = 1000


# ----------------------------------------------------------------------------------------------- helpers
def _missing(value) -> bool:
    return value is None or value == "" or (isinstance(value, float) and math.isnan(value))


def _rows(frame: pd.DataFrame) -> list[tuple]:
    """A table's rows as tuples, NaN as None, numpy scalars as Python values."""
    return [
        tuple(None if _missing(v) else (v.item() if hasattr(v, "item") else v) for v in row)
        for row in frame.itertuples(index=False)
    ]


def _by_records(counter: Counter) -> list[tuple]:
    """Counter of name tuples -> rows sorted most records first, then by name (missing last)."""

    def key(item):
        names, records = item
        return (-records, *[(name is None, name or "") for name in names])

    return [(*names, records) for names, records in sorted(counter.items(), key=key)]


def _columns(table: pa.Table) -> dict[str, list]:
    """Every column as a Python list, dictionary columns decoded, "" as None."""
    out = {}
    for name in table.column_names:
        column = table[name]
        if pa.types.is_dictionary(column.type):
            column = column.cast(pa.string())
        out[name] = [None if v == "" else v for v in column.to_pylist()]
    return out


def _quantiles(values: list[float], percents) -> list[float]:
    """Linear-interpolation percentiles (numpy's default), by statistics.quantiles: 1000 cut points."""
    if len(values) == 1:
        return [values[0]] * len(percents)
    cuts = statistics.quantiles(values, n=1000, method="inclusive")
    return [cuts[round(percent * 10) - 1] for percent in percents]


# ----------------------------------------------------------------------------------------------- generated table
def _mutate(matrix: np.ndarray, rate: float, rng: np.random.Generator) -> np.ndarray:
    """Each row with Poisson(rate * length) substitutions to another base (codes 0-3)."""
    out = matrix.copy()
    hits = rng.poisson(rate * matrix.shape[1], matrix.shape[0])
    rows = np.repeat(np.arange(matrix.shape[0]), hits)
    cols = rng.integers(0, matrix.shape[1], rows.size)
    out[rows, cols] = (out[rows, cols] + rng.integers(1, 4, rows.size)) % 4
    return out


def _with_missing(names: np.ndarray, present: np.ndarray, rng: np.random.Generator) -> list:
    """Names where present, else None or "" (both spellings of missing)."""
    empty = rng.random(names.size) < 0.5
    return [str(v) if keep else ("" if e else None) for v, keep, e in zip(names, present, empty)]


def generated_table(n: int = 100_000, seed: int = 7) -> pa.Table:
    """A release table with a known shape: 10 orders x 5 families x 4 genera x 6 species, Zipf-like species
    sizes, labels missing at rising rates down the ranks (as null or ""), 1-2 BINs per species and a few BINs
    shared by two species, barcodes of 658 nt evolved down the tree (order parents random; family 15 %, genus
    8 %, species 4 %, BIN 1.5 %, record 0.3 % substitutions), reads of varying start and end, some with N ends
    or none at all, coordinates (duplicates, -0.0, out of range, missing) and size fields (some missing)."""
    rng = np.random.default_rng(seed)
    length = 658
    n_species = 10 * 5 * 4 * 6
    weights = 1.0 / np.arange(1, n_species + 1) ** 1.1
    species = rng.permutation(n_species)[rng.choice(n_species, n, p=weights / weights.sum())]
    genus, family = species // 6, species // 24
    order = family // 5
    two_bins = species % 3 == 0
    bin_id = species * 2 + (two_bins & (rng.random(n) < 0.3))
    shares = species % 97 == 5  # these species use a BIN of the species before them
    bin_id[shares] = (species[shares] - 1) * 2

    order_parent = rng.integers(0, 4, (10, length), dtype=np.uint8)
    family_parent = _mutate(order_parent[np.arange(50) // 5], 0.15, rng)
    genus_parent = _mutate(family_parent[np.arange(200) // 4], 0.08, rng)
    species_parent = _mutate(genus_parent[np.arange(n_species) // 6], 0.04, rng)
    bin_parent = _mutate(species_parent[np.arange(n_species * 2) // 2], 0.015, rng)
    letters = np.frombuffer(b"ACGT", dtype=np.uint8)[_mutate(bin_parent[bin_id], 0.003, rng)]
    start, end = rng.integers(0, 20, n), length - rng.integers(0, 20, n)
    n_ends = np.flatnonzero(rng.random(n) < 0.05)
    letters[n_ends[:, None], start[n_ends, None] + np.arange(3)] = ord("N")
    letters[n_ends[:, None], end[n_ends, None] - 1 - np.arange(2)] = ord("N")
    keep = (np.arange(length) >= start[:, None]) & (np.arange(length) < end[:, None])
    offsets = np.concatenate([[0], np.cumsum(end - start)]).astype(np.int32)
    barcode = pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(letters[keep].tobytes()))
    kind = rng.random(n)
    barcode = pc.if_else(pa.array(kind < 0.01), pa.scalar(None, pa.string()), barcode)
    barcode = pc.if_else(pa.array((kind >= 0.01) & (kind < 0.015)), "", barcode)
    barcode = pc.if_else(pa.array((kind >= 0.015) & (kind < 0.017)), "NNNNNN", barcode)

    depth = rng.random(n)
    present = {
        "phylum": np.ones(n, dtype=bool),
        "class": depth < 0.995,
        "order": depth < 0.99,
        "family": depth < 0.95,
        "genus": depth < 0.45,
        "species": depth < 0.3,
    }
    present["subfamily"] = present["family"] & (rng.random(n) < 0.4)
    present["order"] &= rng.random(n) > 0.005  # a few families filed without their order
    names = {
        "phylum": np.full(n, "Arthropoda"),
        "class": np.full(n, "Insecta"),
        "order": np.char.add("Order", order.astype(str)),
        "family": np.char.add("Family", family.astype(str)),
        "subfamily": np.char.add(np.char.add("Subfamily", family.astype(str)), (genus % 2).astype(str)),
        "genus": np.char.add("Genus", genus.astype(str)),
        "species": np.char.add(np.char.add("Genus", genus.astype(str)), np.char.add(" sp", species.astype(str))),
    }
    countries = np.array(["Canada", "Costa Rica", "South Africa", "Pakistan", "Australia", "Thailand"])
    provinces = np.array(["North", "South", "East"])
    country_code = rng.choice(6, n, p=[0.4, 0.2, 0.15, 0.1, 0.1, 0.05])
    lat = np.round(rng.uniform(-60, 70, n), 1)
    lat = np.where(rng.random(n) < 0.3, np.round(lat), lat)  # whole degrees: shared sites
    lon = np.round(rng.uniform(-180, 180, n), 1)
    lat[rng.random(n) < 0.03] = np.nan
    lon[rng.random(n) < 0.03] = np.nan
    lat[:50], lon[:50] = np.where(np.arange(50) % 2, 0.0, -0.0), 12.5  # -0.0 and 0.0: one site
    lat[50:60] = 95.0  # out of range
    sizes = {
        "image_measurement_value": np.round(rng.lognormal(9, 1.2, n)),
        "area_fraction": np.round(rng.uniform(0.001, 0.6, n), 4),
        "scale_factor": np.round(rng.lognormal(0, 0.5, n), 4),
    }
    sizes["image_measurement_value"][:20] = 0  # an empty mask: no log10, counted in the first bin
    split_names = np.array([*SPLITS, ""])
    split = split_names[rng.choice(9, n, p=[0.6, 0.2, 0.03, 0.05, 0.04, 0.02, 0.02, 0.035, 0.005])]

    columns = {
        "processid": pa.array([f"GEN{i}-24" for i in range(n)]),
        "sampleid": pa.nulls(n, pa.string()),
        "taxon": pa.nulls(n, pa.string()),
    }

    def dictionary_chunks(values: pa.Array) -> pa.ChunkedArray:
        """Three chunks, each with its own dictionary, as the Parquet reader gives row groups."""
        cuts = [0, n // 3, n // 2, n]
        return pa.chunked_array([pc.dictionary_encode(values.slice(a, b - a)) for a, b in zip(cuts, cuts[1:])])

    for rank in RANKS:
        values = pa.array(_with_missing(names[rank], present[rank], rng), pa.string())
        # half the rank columns dictionary-encoded, as the release Parquet holds them
        columns[rank] = dictionary_chunks(values) if rank in ("order", "genus", "species") else values
    columns["dna_bin"] = dictionary_chunks(
        pa.array(_with_missing(np.char.add("BOLD:B", bin_id.astype(str)), rng.random(n) > 0.005, rng))
    )
    columns["dna_barcode"] = barcode
    columns["country"] = pa.array(_with_missing(countries[country_code], rng.random(n) > 0.02, rng))
    columns["province_state"] = pa.array(_with_missing(provinces[rng.integers(0, 3, n)], rng.random(n) > 0.1, rng))
    columns["coord-lat"] = pa.array(lat, from_pandas=True)
    columns["coord-lon"] = pa.array(lon, from_pandas=True)
    for field, values in sizes.items():
        missing = rng.random(n) < 0.05
        values = pa.array(np.where(missing, np.nan, values), from_pandas=True)
        columns[field] = values.cast(pa.int64()) if field == "image_measurement_value" else values
    columns["inferred_ranks"] = pa.array(np.zeros(n, dtype=np.uint8))
    columns["split"] = pc.dictionary_encode(pa.array([s or None for s in split]))
    columns["index_bioscan_1M_insect"] = pa.nulls(n, pa.int64())
    columns["chunk"] = pa.nulls(n, pa.string())
    return pa.table({name: columns[name] for name in RELEASE_COLUMNS})


@pytest.fixture(scope="module")
def generated():
    table = generated_table()
    return table, _columns(table), compute_stats(table, seed=3, pairs_per_comparison=PAIRS)


def test_every_table_is_returned_with_its_columns_and_int64_counts(generated):
    _, _, tables = generated
    assert tuple(tables) == TABLES
    expected = {
        "label_completeness": ["rank", "categories", "labelled", "labelled_pct", "imbalance_ratio"]
        + ["published_categories", "published_labelled_pct"],
        "records_per_order": ["order", "records"],
        "records_per_family": ["family", "order", "records"],
        "species_sizes": ["species", "records"],
        "bins_per_species": ["bins", "species"],
        "species_per_bin": ["species", "bins"],
        "countries": ["country", "records"],
        "provinces": ["country", "province_state", "records"],
        "sites": ["lat", "lon", "records"],
        "genetic_distances": ["comparison", "groups", "pairs", "mean", "p05", "median", "p95"],
        "genetic_histogram": ["comparison", "bin_left", "bin_right", "pairs"],
        "size_fields": ["order", "field", "count", "mean", "p05", "p25", "median", "p75", "p95"],
        "size_histogram": ["field", "order", "bin_left", "bin_right", "records"],
        "split_table": ["split", "records", "species", "barcodes", "bins"],
    }
    for name, columns in expected.items():
        assert list(tables[name].columns) == columns, name
        for column in columns:
            if column in ("records", "labelled", "categories", "pairs", "groups", "count", "barcodes", "bins") or (
                name in ("bins_per_species", "species_per_bin", "split_table") and column == "species"
            ):
                assert tables[name][column].dtype == np.int64, (name, column)


def test_label_completeness_matches_a_count_of_the_rows(generated):
    table, rows, tables = generated
    n = table.num_rows
    expected = []
    for rank in COMPLETENESS_RANKS:
        counts = Counter(v for v in rows[rank] if v is not None)
        expected.append(
            (
                rank,
                len(counts),
                sum(counts.values()),
                round(100 * sum(counts.values()) / n, 2),
                round(max(counts.values()) / min(counts.values()), 1),
                PUBLISHED_5M["categories"].get(rank),
                PUBLISHED_5M["labelled_pct"].get(rank),
            )
        )
    assert _rows(tables["label_completeness"]) == expected
    published = tables["label_completeness"].set_index("rank")
    assert (
        published.loc["species", "published_categories"] == 22_622
        and published.loc["order", "published_labelled_pct"] == 99.7
    )
    assert math.isnan(published.loc["subfamily", "published_categories"])  # the spec gives none: never invented


def test_records_per_rank_country_and_province_match_counters(generated):
    _, rows, tables = generated
    assert _rows(tables["records_per_order"]) == _by_records(Counter((v,) for v in rows["order"] if v is not None))
    families = Counter((f, o) for f, o in zip(rows["family"], rows["order"]) if f is not None)
    assert _rows(tables["records_per_family"]) == _by_records(families)
    assert any(o is None for _, o, _ in _rows(tables["records_per_family"]))  # a family without its order
    assert _rows(tables["species_sizes"]) == _by_records(Counter((v,) for v in rows["species"] if v is not None))
    assert _rows(tables["countries"]) == _by_records(Counter((v,) for v in rows["country"] if v is not None))
    provinces = Counter((c, p) for c, p in zip(rows["country"], rows["province_state"]) if p is not None)
    assert _rows(tables["provinces"]) == _by_records(provinces)


def test_bins_per_species_and_species_per_bin_match_sets(generated):
    _, rows, tables = generated
    bins_of, species_of = defaultdict(set), defaultdict(set)
    for species, dna_bin in zip(rows["species"], rows["dna_bin"]):
        if species is not None:
            bins_of[species]  # noqa: B018  (a species without any BIN counts with 0)
            if dna_bin is not None:
                bins_of[species].add(dna_bin)
                species_of[dna_bin].add(species)
    assert _rows(tables["bins_per_species"]) == sorted(Counter(len(b) for b in bins_of.values()).items())
    assert _rows(tables["species_per_bin"]) == sorted(Counter(len(s) for s in species_of.values()).items())
    assert dict(_rows(tables["species_per_bin"])).get(2, 0) > 0  # the shared BINs are seen


def test_sites_are_the_distinct_coordinate_pairs_to_two_decimals(generated):
    _, rows, tables = generated
    sites = Counter()
    for lat, lon in zip(rows["coord-lat"], rows["coord-lon"]):
        if lat is not None and lon is not None and -90 <= lat <= 90 and -180 <= lon <= 180:
            lat, lon = (float(f"{v:.2f}") for v in (lat, lon))
            sites[(0.0 if lat == 0 else lat, 0.0 if lon == 0 else lon)] += 1
    assert _rows(tables["sites"]) == [(lat, lon, count) for (lat, lon), count in sorted(sites.items())]
    assert (0.0, 12.5, 50) in _rows(tables["sites"])


def test_split_table_matches_sets_of_the_rows(generated):
    _, rows, tables = generated
    expected = []
    for split in (*SPLITS, "total"):
        members = [i for i, s in enumerate(rows["split"]) if split == "total" or s == split]
        barcodes = {rows["dna_barcode"][i].strip("N") for i in members if rows["dna_barcode"][i] is not None}
        barcodes.discard("")
        expected.append(
            (
                split,
                len(members),
                len({rows["species"][i] for i in members} - {None}),
                len(barcodes),
                len({rows["dna_bin"][i] for i in members} - {None}),
            )
        )
    assert _rows(tables["split_table"]) == expected


def test_size_fields_match_statistics_quantiles(generated):
    _, rows, tables = generated
    orders = Counter(v for v in rows["order"] if v is not None)
    top = [name for name, _ in sorted(orders.items(), key=lambda item: (-item[1], item[0]))[:10]]
    assert tables["size_fields"]["order"].drop_duplicates().tolist() == ["all", *top]
    got = {(r[0], r[1]): r[2:] for r in _rows(tables["size_fields"])}
    for name in ("all", top[0], top[-1]):
        for field in SIZE_FIELDS:
            values = [v for v, o in zip(rows[field], rows["order"]) if v is not None and (name == "all" or o == name)]
            count, mean, *quantiles = got[(name, field)]
            assert count == len(values)
            assert mean == pytest.approx(statistics.fmean(values), rel=1e-9)
            expected = _quantiles(values, (5, 25, 50, 75, 95))
            assert quantiles == pytest.approx(expected, rel=1e-9), (name, field)


def test_size_histogram_bins_span_the_central_99_percent_and_hold_every_value(generated):
    _, rows, tables = generated
    histogram = tables["size_histogram"]
    counts = {(r[0], r[1]): r[2] for r in _rows(tables["size_fields"])}
    for (field, name), part in histogram.groupby(["field", "order"], sort=False):
        assert len(part) == 42 and part["records"].sum() == counts[(name, field)], (field, name)
        assert np.isnan(part["bin_left"].iloc[0]) and np.isnan(part["bin_right"].iloc[-1])  # the two tails
    for field in SIZE_FIELDS:
        values = [v for v in rows[field] if v is not None]
        whole = histogram[(histogram["field"] == field) & (histogram["order"] == "all")]
        part = whole.iloc[1:-1]
        edges = [*part["bin_left"], part["bin_right"].iloc[-1]]
        if field == "image_measurement_value":  # log10 bins, edges in pixels
            logs = [math.log10(v) for v in values if v > 0]
            assert np.log10([edges[0], edges[-1]]) == pytest.approx(_quantiles(logs, (0.5, 99.5)))
            assert np.allclose(np.diff(np.log10(edges)), np.diff(np.log10(edges))[0])
            continue
        assert [edges[0], edges[-1]] == pytest.approx(_quantiles(values, (0.5, 99.5)))
        # each value in its bin, the top edge in the last; the tails beyond the edges in the first and last rows
        expected = Counter(
            39 if v == edges[-1] else min(max(bisect.bisect_right(edges, v) - 1, -1), 40) for v in values
        )
        assert whole["records"].tolist() == [expected.get(i, 0) for i in range(-1, 41)]
        assert expected.get(-1, 0) > 0 and expected.get(40, 0) > 0  # the tails are there, not in the end bins


def test_a_log_size_field_of_zeros_only_still_sums_to_its_count():
    """Every image_measurement_value 0 (legal: an organism of no pixel): size_fields counted them, the histogram
    had no row at all for the field, against the rule that each (field, order) sums to its count."""
    table = generated_table(2_000, seed=5)
    zeros = pa.array(np.zeros(table.num_rows, np.int64))
    at = table.schema.get_field_index("image_measurement_value")
    table = table.set_column(at, "image_measurement_value", zeros.cast(table.schema.field(at).type))
    tables = compute_stats(table, seed=3, pairs_per_comparison=PAIRS)
    count = {(r[0], r[1]): r[2] for r in _rows(tables["size_fields"])}[("all", "image_measurement_value")]
    part = tables["size_histogram"]
    part = part[(part["field"] == "image_measurement_value") & (part["order"] == "all")]
    assert count == table.num_rows and part["records"].sum() == count and part["records"].iloc[0] == count
    # a negative value (a hand-edited or foreign release's): below the range with the zeros, not in the top tail
    values = np.r_[-5, np.zeros(table.num_rows - 1, np.int64)]
    table = table.set_column(at, "image_measurement_value", pa.array(values).cast(table.schema.field(at).type))
    part = compute_stats(table, seed=3, pairs_per_comparison=PAIRS)["size_histogram"]
    part = part[(part["field"] == "image_measurement_value") & (part["order"] == "all")]
    assert part["records"].iloc[0] == table.num_rows and part["records"].iloc[-1] == 0


def test_genetic_distances_follow_the_tree_the_barcodes_evolved_down(generated):
    _, rows, tables = generated
    distances = tables["genetic_distances"].set_index("comparison")
    assert list(distances.index) == list(COMPARISONS)
    # every generated read has clean k-mers: each distinct pair drawn has its distance (a pair drawn twice counts
    # once: small species repeat theirs)
    table, _, _ = generated
    from bioscan_rebuild.stats.compute import encode_labels

    codes = {rank: encode_labels(table[rank]).codes for rank in ("species", "genus", "order", "dna_bin")}
    has_barcode = np.array([b is not None and bool(b.strip("N")) for b in rows["dna_barcode"]])
    keys = barcode_keys(table["dna_barcode"])
    sampled = sample_pairs(codes, has_barcode, seed=3, pairs=PAIRS, content=keys)
    drawn = {name: len(first) for name, (first, _, _) in sampled.items()}
    assert distances["pairs"].to_dict() == drawn and (distances["pairs"] > 0.9 * PAIRS).all()
    barcoded = [i for i, b in enumerate(rows["dna_barcode"]) if b is not None and b.strip("N")]
    for comparison, rank in (("within_species", "species"), ("within_order", "order"), ("within_bin", "dna_bin")):
        sizes = Counter(rows[rank][i] for i in barcoded if rows[rank][i] is not None)
        assert distances.loc[comparison, "groups"] == sum(1 for size in sizes.values() if size >= 2), comparison
    assert distances.loc["between_orders", "groups"] == len({rows["order"][i] for i in barcoded} - {None})
    median = distances["median"]
    # record 0.3 % from its BIN's parent, BIN 1.5 % from the species', species 4 % from the genus', ...
    assert 0.002 < median["within_bin"] < 0.03
    assert median["within_bin"] < median["within_species"] < median["within_genus"] < median["within_order"]
    assert median["within_order"] < median["between_orders"] and median["between_orders"] > 0.9
    assert distances.loc["within_species", "mean"] < distances.loc["between_orders", "mean"]
    assert distances.loc["within_bin", "p95"] < distances.loc["between_bins", "p05"]  # a barcode gap
    histogram = tables["genetic_histogram"]
    assert histogram.groupby("comparison", sort=False)["pairs"].sum().to_dict() == distances["pairs"].to_dict()
    first = histogram[histogram["comparison"] == "within_order"]
    assert first["bin_left"].tolist() == pytest.approx(list(HISTOGRAM_EDGES[:-1]))
    assert first["bin_right"].iloc[-2] == 0.5 and first["bin_right"].iloc[-1] == 1.0  # the unrelated pairs' bin
    unrelated = histogram[(histogram["comparison"] == "between_orders") & (histogram["bin_left"] == 0.5)]
    assert unrelated["pairs"].iloc[0] > 0.9 * PAIRS  # d = 1 is there, not in 0.49-0.50


def test_the_genetic_distances_do_not_depend_on_the_order_of_the_rows():
    """The release's row order follows its shards: the same records with another ``shards`` drew other pairs, and
    the card published another barcode gap."""
    table = generated_table(20_000, seed=11)
    shuffled = table.take(pa.array(np.random.default_rng(0).permutation(table.num_rows)))
    first = compute_stats(table, seed=3, pairs_per_comparison=500)
    again = compute_stats(shuffled, seed=3, pairs_per_comparison=500)
    pd.testing.assert_frame_equal(first["genetic_distances"], again["genetic_distances"])
    pd.testing.assert_frame_equal(first["genetic_histogram"], again["genetic_histogram"])


def test_pairs_are_drawn_from_the_groups_they_name(generated):
    table, rows, _ = generated
    from bioscan_rebuild.stats.compute import encode_labels

    codes = {rank: encode_labels(table[rank]).codes for rank in ("species", "genus", "order", "dna_bin")}
    has_barcode = np.array([b is not None and bool(b.strip("N")) for b in rows["dna_barcode"]])
    pairs = sample_pairs(codes, has_barcode, seed=5, pairs=300)
    again = sample_pairs(codes, has_barcode, seed=5, pairs=300)
    for comparison, (first, second, _) in pairs.items():
        assert np.array_equal(first, again[comparison][0]) and np.array_equal(second, again[comparison][1])
        assert (
            0 < len(first) <= 300 and (first != second).all() and has_barcode[first].all() and has_barcode[second].all()
        )
        assert len({(min(a, b), max(a, b)) for a, b in zip(first.tolist(), second.tolist())}) == len(first)
        for a, b in zip(first.tolist(), second.tolist()):
            if comparison.startswith("within_"):
                rank = {"within_bin": "dna_bin"}.get(comparison, comparison.removeprefix("within_"))
                assert rows[rank][a] is not None and rows[rank][a] == rows[rank][b], comparison
            elif comparison == "between_orders":
                assert None not in (rows["order"][a], rows["order"][b]) and rows["order"][a] != rows["order"][b]
            else:  # between_bins: BINs of one genus
                assert rows["genus"][a] == rows["genus"][b] and rows["genus"][a] is not None
                assert None not in (rows["dna_bin"][a], rows["dna_bin"][b]) and rows["dna_bin"][a] != rows["dna_bin"][b]
    other = sample_pairs(codes, has_barcode, seed=6, pairs=300)
    assert not np.array_equal(other["within_species"][0], pairs["within_species"][0])


def test_a_record_pair_drawn_twice_counts_once():
    """Draws are with replacement: one species of two records gave "2,000 pairs" of the one pair, in the table,
    stats.json, the card and the figure legend."""
    codes = {"species": np.array([0, 0, 1, 1, 1]), "genus": np.array([0, 0, 0, 0, 0])}
    codes |= {"order": np.array([0, 0, 0, 1, 1]), "dna_bin": np.array([0, 0, 1, 1, 2])}
    pairs = sample_pairs(codes, np.ones(5, bool), seed=0, pairs=2000)
    counts = {name: len(first) for name, (first, _, _) in pairs.items()}
    # species: {0,1} and three pairs of {2,3,4}; genus: all 10; orders: 2 x 3; BINs: 1 + 1 within, 2x2+2x1+2x1 between
    assert counts == {
        "within_species": 4,
        "within_genus": 10,
        "within_order": 4,
        "within_bin": 2,
        "between_orders": 6,
        "between_bins": 8,
    }


@pytest.mark.parametrize("rate", [0.01, 0.05, 0.1])
def test_mash_distance_estimates_the_substitution_rate(rate):
    rng = np.random.default_rng(int(rate * 1000))

    def pair(length):
        first = rng.integers(0, 4, length)
        second = first.copy()
        sites = rng.choice(length, round(rate * length), replace=False)  # exactly this share, no indels
        second[sites] = (second[sites] + rng.integers(1, 4, sites.size)) % 4
        return "".join("ACGT"[i] for i in first), "".join("ACGT"[i] for i in second)

    assert sequence_distance(*pair(3000)) == pytest.approx(rate, abs=0.02)
    barcodes = [sequence_distance(*pair(658)) for _ in range(20)]  # barcode length: noisier, unbiased enough
    assert statistics.fmean(barcodes) == pytest.approx(rate, abs=0.02)
    assert max(abs(d - rate) for d in barcodes) < 0.05


def test_mash_distance_edges():
    read = "ACGTTGCAAGGCTTACCGATAGGCTTAACG" * 10
    assert sequence_distance(read, read) == 0.0
    assert sequence_distance(read, "TTTT" * 60) == 1.0  # no shared 12-mer
    assert math.isnan(sequence_distance(read, "ACGTN" * 3))  # no clean 12-mer: no distance
    assert sequence_distance(read, read.lower()) == 0.0


def test_labels_are_codes_of_sorted_names_missing_as_minus_one():
    from bioscan_rebuild.stats.compute import encode_labels

    plain = pa.chunked_array([pa.array(["b", None, "a"]), pa.array(["", "b", "c"])])
    labels = encode_labels(plain)
    assert labels.names.tolist() == ["a", "b", "c"] and labels.codes.tolist() == [1, -1, 0, -1, 1, 2]
    # per-chunk dictionaries with entries no row uses, and a null in a dictionary
    first = pa.DictionaryArray.from_arrays(pa.array([0, 1, None], pa.int32()), pa.array(["b", "", "unused"]))
    second = pa.DictionaryArray.from_arrays(pa.array([2, 0, 1], pa.int32()), pa.array(["c", "b", None]))
    labels = encode_labels(pa.chunked_array([first, second]))
    assert labels.names.tolist() == ["b", "c"] and labels.codes.tolist() == [0, -1, -1, -1, 1, 0]
    assert encode_labels(pa.chunked_array([], pa.string())).codes.size == 0


def test_barcode_keys_strip_n_and_mark_missing():
    column = pa.chunked_array([pa.array(["ACGT", "NNACGTN", None, "", "NNNN"]), pa.array(["ACGA", "ACGT"])])
    keys = barcode_keys(column)
    assert keys[0] == keys[1] == keys[6] and keys[0] != keys[5] and keys[0] != 0
    assert (keys[2:5] == 0).all()
    assert np.array_equal(barcode_keys(column.cast(pa.large_string())), keys)
    assert np.array_equal(barcode_keys(column.dictionary_encode()), keys)
    assert np.array_equal(barcode_keys(pa.chunked_array([pa.array(["x", "ACGT"]).slice(1)])), keys[:1])


def _barcodes_in_files(table: pa.Table, folder, files: int, seed: int = 0) -> pa.Table:
    """``table`` with its barcodes moved to ``files`` barcode files (rows scattered over them, in a shuffled order
    within each): the keys, file and row columns and the list of files instead of ``dna_barcode``."""
    from bioscan_rebuild.stats.genetics import FILES_METADATA, KEY_COLUMN, ROW_COLUMN, SHARD_COLUMN

    rng = np.random.default_rng(seed)
    n = table.num_rows
    shard = rng.integers(0, files, n)
    row = np.zeros(n, dtype=np.int64)
    paths = []
    for number in range(files):
        members = rng.permutation(np.flatnonzero(shard == number))
        row[members] = np.arange(members.size)
        paths.append(str(folder / f"shard-{number:03d}.parquet"))
        index = pa.array(members)
        pq.write_table(
            pa.table({"processid": table["processid"].take(index), "dna_barcode": table["dna_barcode"].take(index)}),
            paths[-1],
        )
    lean = table.drop_columns(["dna_barcode"])
    lean = lean.append_column(KEY_COLUMN, pa.array(barcode_keys(table["dna_barcode"])))
    lean = lean.append_column(SHARD_COLUMN, pa.array(shard.astype(np.int32)))
    lean = lean.append_column(ROW_COLUMN, pa.array(row))
    return lean.replace_schema_metadata({FILES_METADATA: json.dumps(paths)})


def test_barcodes_left_in_their_files_give_the_same_statistics(tmp_path):
    """Keys + where each barcode lies (genetics.ShardBarcodes) stand for the dna_barcode column: the same tables,
    the sampled reads read back from the files."""
    from bioscan_rebuild.stats.genetics import ShardBarcodes, gather_reads, table_barcodes

    table = generated_table(20_000, seed=11)
    lean = _barcodes_in_files(table, tmp_path, files=3)
    shards = ShardBarcodes.of_table(lean)
    assert shards is not None and len(shards) == table.num_rows and ShardBarcodes.of_table(table) is None
    rows = np.array([0, 5, 17, 18, 999, 19_999])
    assert gather_reads(shards, rows) == table["dna_barcode"].take(pa.array(rows)).to_pylist()
    assert gather_reads(shards, rows[::-1]) == gather_reads(shards, rows)[::-1]  # in the order asked
    keys, _ = table_barcodes(lean)
    assert np.array_equal(keys, barcode_keys(table["dna_barcode"]))
    first = compute_stats(table, seed=2, pairs_per_comparison=300)
    second = compute_stats(lean, seed=2, pairs_per_comparison=300)
    for name in TABLES:
        pd.testing.assert_frame_equal(first[name], second[name], check_exact=True, obj=name)
    assert second["genetic_distances"]["pairs"].gt(0).all()
    with pytest.raises(ValueError, match="dna_barcode"):
        compute_stats(lean.replace_schema_metadata({}))  # the keys without the files: no barcodes to read
    with pytest.raises(RuntimeError, match="fewer rows"):
        pq.write_table(pa.table({"processid": ["x"], "dna_barcode": ["ACGT"]}), shards.paths[0])
        shards.take(np.flatnonzero(shards.shard == 0)[-1:])


# ----------------------------------------------------------------------------------------------- a sample release
@pytest.fixture(scope="module")
def sample_release(tmp_path_factory):
    """The embedded sample (no photos) through metadata, splits and the export (CSV + Parquet), with image
    results carrying size fields: the release, a copy of it with only the CSV, and the export's inputs."""
    from bioscan_rebuild.export.release import export_release
    from bioscan_rebuild.images.shard import IMAGE_RECORD_SCHEMA
    from bioscan_rebuild.metadata.local import metadata_local
    from bioscan_rebuild.splits.stage import split_tables
    from bioscan_rebuild.synth.exports import generate_sample

    tmp = tmp_path_factory.mktemp("stats_sample")
    generate_sample(tmp / "sample", n_records=300, seed=0, images=False)
    run = metadata_local(sorted((tmp / "sample").rglob("*.tsv")), tmp / "work", shards=2)
    curated = tmp / "work" / "metadata" / "curated.parquet"
    split_tables(curated, run["barcodes"], tmp / "splits")
    rng = np.random.default_rng(0)
    images = []
    for i, path in enumerate(run["barcodes"]):
        ids = pq.read_table(path, columns=["processid"])["processid"].to_pylist()
        empty = rng.random(len(ids)) < 0.1  # an empty well: no size fields
        rows = [
            {
                "processid": pid,
                "image_sha256": f"{pid:0>64}"[-64:],
                "image_status": "no_object" if e else "ok",
                "params_key": "k",
                "original_full_is_source": False,
                "image_measurement_value": None if e else int(rng.integers(500, 90_000)),
                "area_fraction": None if e else round(float(rng.uniform(0.01, 0.5)), 4),
                "scale_factor": None if e else round(float(rng.uniform(0.2, 3.0)), 4),
            }
            for pid, e in zip(ids, empty)
        ]
        images.append(tmp / f"images-{i}.parquet")
        pq.write_table(pa.Table.from_pylist(rows, schema=IMAGE_RECORD_SCHEMA), images[-1])
    inputs = {"curated": curated, "barcodes": run["barcodes"], "splits": tmp / "splits" / "splits.parquet"}
    export_release(
        curated, run["barcodes"], inputs["splits"], tmp / "release", image_paths=images, formats=("csv", "parquet")
    )
    csv_only = tmp / "csv_only"
    shutil.copytree(tmp / "release" / "bioscan5m", csv_only / "bioscan5m")
    shutil.rmtree(csv_only / "bioscan5m" / "metadata" / "parquet")
    return {"release": tmp / "release", "csv_only": csv_only, "inputs": {**inputs, "images": images}}


def test_the_release_parquet_csv_and_workflow_tables_give_the_same_statistics(sample_release):
    from bioscan_rebuild.stats.stage import read_release_table, read_workflow_table

    parquet = read_release_table(sample_release["release"])
    assert pa.types.is_dictionary(parquet.schema.field("species").type)  # never expanded to strings
    csv_table = read_release_table(sample_release["csv_only"] / "bioscan5m")  # the root folder itself also works
    workflow = read_workflow_table(**sample_release["inputs"])
    assert parquet.num_rows == csv_table.num_rows == workflow.num_rows > 250
    first = compute_stats(parquet, pairs_per_comparison=200)
    for other in (csv_table, workflow):
        second = compute_stats(other, pairs_per_comparison=200)
        for name in TABLES:
            pd.testing.assert_frame_equal(first[name], second[name], check_exact=False, rtol=1e-12, obj=name)


def test_sample_release_statistics_match_a_reading_of_its_csv(sample_release):
    from bioscan_rebuild.stats.stage import read_release_table

    path = sample_release["release"] / "bioscan5m" / "metadata" / "csv" / "BIOSCAN_5M_Insect_Dataset_metadata.csv"
    with open(path, newline="", encoding="utf-8") as handle:
        records = list(csv.DictReader(handle))
    table = read_release_table(sample_release["release"])
    tables = compute_stats(table, pairs_per_comparison=200)
    for rank in COMPLETENESS_RANKS:
        counts = Counter(r[rank] for r in records if r[rank])
        row = tables["label_completeness"].set_index("rank").loc[rank]
        assert (row["categories"], row["labelled"]) == (len(counts), sum(counts.values())), rank
    for split in (*SPLITS, "total"):
        members = [r for r in records if split in ("total", r["split"])]
        row = tables["split_table"].set_index("split").loc[split]
        barcodes = {r["dna_barcode"].strip("N") for r in members} - {""}
        assert (row["records"], row["species"], row["barcodes"], row["bins"]) == (
            len(members),
            len({r["species"] for r in members} - {""}),
            len(barcodes),
            len({r["dna_bin"] for r in members} - {""}),
        ), split
    assert tables["split_table"]["records"].iloc[:-1].gt(0).all()  # the sample fills every split
    sizes = [float(r["area_fraction"]) for r in records if r["area_fraction"]]
    row = tables["size_fields"].set_index(["order", "field"]).loc[("all", "area_fraction")]
    assert row["count"] == len(sizes) and row["median"] == pytest.approx(statistics.median(sizes))
    result = summary(tables, table)
    assert result["records"] == len(records)
    assert result["splits"] == {split: sum(r["split"] == split for r in records) for split in SPLITS}
    assert result["genetics"]["k"] == 12 and result["genetics"]["pairs_per_comparison"] == 200


def test_two_runs_write_byte_identical_files(sample_release, tmp_path):
    from bioscan_rebuild.stats.stage import run_stats

    first = run_stats(sample_release["release"], tmp_path / "a", seed=4, pairs_per_comparison=300, figures=False)
    second = run_stats(sample_release["release"], tmp_path / "b", seed=4, pairs_per_comparison=300, figures=False)
    assert first == second
    names = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert names == sorted([*(f"{name}.csv" for name in TABLES), "stats.json"])
    for name in names:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    run_stats(sample_release["release"], tmp_path / "c", seed=5, pairs_per_comparison=300, figures=False)
    assert (tmp_path / "c" / "genetic_histogram.csv").read_bytes() != (
        tmp_path / "a" / "genetic_histogram.csv"
    ).read_bytes()
    assert (tmp_path / "c" / "split_table.csv").read_bytes() == (tmp_path / "a" / "split_table.csv").read_bytes()


def test_the_command_writes_the_statistics(sample_release, tmp_path, capsys):
    import json

    from bioscan_rebuild.cli.main import main

    out = tmp_path / "stats"
    assert main(["stats", str(sample_release["release"]), "-o", str(out), "--seed", "1", "--pairs", "100"]) == 0
    for name in TABLES:
        assert (out / f"{name}.csv").stat().st_size > 0, name
    summary_data = json.loads((out / "stats.json").read_text())
    assert summary_data["genetics"]["seed"] == 1 and set(summary_data["genetics"]["pairs"]) == set(COMPARISONS)
    figures = [f"figures/{p.name}" for p in (out / "figures").iterdir()]
    assert summary_data["files"] == sorted([*(f"{name}.csv" for name in TABLES), *figures]) and len(figures) > 10
    assert json.loads(capsys.readouterr().out) == {k: v for k, v in summary_data.items() if k != "files"}
    inputs = sample_release["inputs"]
    workflow_args = ["--curated", str(inputs["curated"]), "--splits", str(inputs["splits"]), "--seed", "1"]
    workflow_args += ["--barcodes", *map(str, inputs["barcodes"]), "--images", *map(str, inputs["images"])]
    assert main(["stats", "-o", str(tmp_path / "wf"), "--pairs", "100", *workflow_args]) == 0
    assert (tmp_path / "wf" / "split_table.csv").read_bytes() == (out / "split_table.csv").read_bytes()
    assert (tmp_path / "wf" / "stats.json").read_bytes() == (out / "stats.json").read_bytes()
    capsys.readouterr()
    assert main(["stats", str(tmp_path / "nothing"), "-o", str(tmp_path / "x")]) == 2
    assert "no release metadata" in capsys.readouterr().err


# ----------------------------------------------------------------------------------------------- the workflow path
def _plain_workflow_rows(curated, barcodes, splits, images) -> pa.Table:
    """The export's rows built the plain way: whole tables in pandas, every image column, the release columns as
    plain strings, the barcodes themselves; cut to the statistics' columns, in release order (split, shard,
    the shard's order)."""
    from bioscan_rebuild.export.spool import shard_release_rows
    from bioscan_rebuild.stats.compute import STAT_COLUMNS

    curated_frame = pq.read_table(curated).to_pandas().set_index("processid")
    split_frame = pq.read_table(splits).to_pandas().set_index("processid")
    per_split = {split: [] for split in SPLITS}
    for barcode_path, image_path in zip(barcodes, images):
        shard = pq.read_table(barcode_path, columns=["processid", "dna_barcode"])
        image_frame = pq.read_table(image_path).to_pandas().set_index("processid")
        rows = shard_release_rows(curated_frame, shard, split_frame, image_frame).select(list(STAT_COLUMNS))
        for split in SPLITS:
            per_split[split].append(rows.filter(pc.equal(rows["split"], split)))
    return pa.concat_tables([part for split in SPLITS for part in per_split[split]])


def _decoded(table: pa.Table, name: str) -> list:
    column = table[name]
    return (column.cast(pa.string()) if pa.types.is_dictionary(column.type) else column).to_pylist()


@pytest.fixture(scope="module")
def awkward_inputs(sample_release, tmp_path_factory):
    """The sample's workflow inputs with what a real run also holds: curated records without a split, a split
    outside the published ones, barcodes of no curated record, records without an image result (and, from the
    fixture, image results without size fields)."""
    tmp = tmp_path_factory.mktemp("stats_awkward")
    inputs = sample_release["inputs"]
    splits = pq.read_table(inputs["splits"])
    keep = np.arange(splits.num_rows) % 11 != 3
    splits = splits.filter(pa.array(keep))
    split_values = splits["split"].to_pylist()
    split_values[5] = "retired"
    splits = splits.set_column(1, "split", pa.array(split_values, splits.schema.field("split").type))
    pq.write_table(splits, tmp / "splits.parquet")
    barcodes, images = [], []
    for i, (barcode_path, image_path) in enumerate(zip(inputs["barcodes"], inputs["images"])):
        shard = pq.read_table(barcode_path)  # a barcode of no curated record first
        stray = pa.Table.from_pylist([{"processid": f"STRAY{i}-24", "dna_barcode": "ACGTACGTACGTACGTAC"}])
        barcodes.append(tmp / f"shard-{i:03d}.parquet")
        shard = shard.select(stray.column_names)
        pq.write_table(pa.concat_tables([stray.cast(shard.schema), shard]), barcodes[-1])
        image_table = pq.read_table(image_path)
        images.append(tmp / f"images-{i}.parquet")
        pq.write_table(image_table.filter(pa.array(np.arange(image_table.num_rows) % 7 != 2)), images[-1])
    return {"curated": inputs["curated"], "barcodes": barcodes, "splits": tmp / "splits.parquet", "images": images}


@pytest.mark.parametrize("which", ["sample", "awkward"])
def test_the_lean_workflow_table_holds_the_rows_the_export_builds(sample_release, awkward_inputs, which):
    from bioscan_rebuild.stats.compute import LABEL_COLUMNS, STAT_COLUMNS
    from bioscan_rebuild.stats.genetics import ShardBarcodes
    from bioscan_rebuild.stats.stage import read_workflow_table

    inputs = sample_release["inputs"] if which == "sample" else awkward_inputs
    plain = _plain_workflow_rows(**inputs)
    full = read_workflow_table(**inputs, with_barcodes=True)
    lean = read_workflow_table(**inputs)
    assert plain.num_rows == full.num_rows == lean.num_rows > 200
    assert "dna_barcode" not in lean.column_names and lean.nbytes < full.nbytes
    for name in STAT_COLUMNS:
        assert _decoded(full, name) == plain[name].to_pylist(), name
        if name in LABEL_COLUMNS:
            assert pa.types.is_dictionary(lean.schema.field(name).type), name
        if name != "dna_barcode":
            assert _decoded(lean, name) == plain[name].to_pylist(), name
    shards = ShardBarcodes.of_table(lean)
    assert shards.take(np.arange(lean.num_rows)) == plain["dna_barcode"].to_pylist()
    assert np.array_equal(lean["dna_barcode_key"].to_numpy(), barcode_keys(plain["dna_barcode"]))
    if which == "awkward":  # fewer records released, none in the retired split
        assert lean.num_rows < read_workflow_table(**sample_release["inputs"]).num_rows
        assert set(_decoded(lean, "split")) <= set(SPLITS)


def test_a_release_ships_only_the_files_the_stats_run_wrote(sample_release, tmp_path):
    """A table an older run (or a person) left in the stats folder used to be published with the release."""
    from bioscan_rebuild.core.errors import InputError
    from bioscan_rebuild.export.release import stats_files
    from bioscan_rebuild.stats.stage import run_stats

    out = tmp_path / "stats"
    run_stats(sample_release["release"], out, seed=1, pairs_per_comparison=100, figures=False)
    (out / "records_per_order_v0.csv").write_text("order,records\n")
    (out / "figures").mkdir()
    (out / "figures" / "splits_old.png").write_bytes(b"png")
    assert stats_files(out) == sorted([*(f"{name}.csv" for name in TABLES), "stats.json"])
    (out / "split_table.csv").unlink()
    with pytest.raises(InputError, match=r"lists files the folder lacks \(\['split_table.csv'\]\)"):
        stats_files(out)


def test_the_workflow_path_writes_the_release_paths_files_byte_for_byte(sample_release, tmp_path):
    from bioscan_rebuild.stats.stage import read_workflow_table, run_stats, stats_of_table

    run_stats(sample_release["release"], tmp_path / "release", seed=2, pairs_per_comparison=150, figures=False)
    table = read_workflow_table(**sample_release["inputs"])
    stats_of_table(table, tmp_path / "workflow", seed=2, pairs_per_comparison=150, figures=False)
    names = sorted(p.name for p in (tmp_path / "release").iterdir())
    assert names == sorted(p.name for p in (tmp_path / "workflow").iterdir()) and "stats.json" in names
    for name in names:
        assert (tmp_path / "release" / name).read_bytes() == (tmp_path / "workflow" / name).read_bytes(), name


def test_the_workflow_table_of_no_released_record_is_empty_with_its_columns(sample_release, tmp_path):
    import pyarrow.parquet as pq

    from bioscan_rebuild.core.errors import InputError
    from bioscan_rebuild.stats.stage import read_workflow_table, workflow_schema

    splits = pq.read_table(sample_release["inputs"]["splits"])
    pq.write_table(splits.slice(0, 0), tmp_path / "no-splits.parquet")
    inputs = {**sample_release["inputs"], "splits": tmp_path / "no-splits.parquet", "barcodes": [], "images": []}
    assert read_workflow_table(**inputs).schema.equals(workflow_schema())
    assert read_workflow_table(**inputs, with_barcodes=True).schema.equals(workflow_schema(with_barcodes=True))
    # shards that hold only some of the released records: the figures of part of the release, exit 0
    inputs = sample_release["inputs"]
    with pytest.raises(InputError, match=r"the barcode shards given hold \d+ of the \d+ released records"):
        read_workflow_table(**{**inputs, "barcodes": inputs["barcodes"][:1], "images": inputs["images"][:1]})
    # one shard twice: as many rows as the release, the figures of half of it counted twice
    twice = {"barcodes": [inputs["barcodes"][0]] * 2, "images": [inputs["images"][0]] * 2}
    with pytest.raises(InputError, match=r"rows more than once: give every shard once"):
        read_workflow_table(**{**inputs, **twice})
    # the image tables in another order: every size field silently missing
    with pytest.raises(InputError, match="the image tables do not line up with the barcode shards"):
        read_workflow_table(**{**inputs, "images": inputs["images"][::-1]})


# ----------------------------------------------------------------------------------------------- the benchmark's data
BENCH = Path(__file__).resolve().parents[1] / "bench" / "stats.py"


def _bench():
    spec = importlib.util.spec_from_file_location("bench_stats", BENCH)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    return bench


def test_the_benchmarks_workflow_inputs_are_what_the_stages_write_and_give_the_release(sample_release, tmp_path):
    """bench/stats.py --workflow at a small size: the stages' schemas and file layout, records in the shard
    ``core.schemas.shard_of`` gives them, and the workflow path on them gives the generated release's rows."""
    from bioscan_rebuild.core.schemas import shard_of
    from bioscan_rebuild.images.shard import IMAGE_RECORD_SCHEMA
    from bioscan_rebuild.metadata.stage import BARCODE_TABLE_SCHEMA
    from bioscan_rebuild.stats.compute import STAT_COLUMNS
    from bioscan_rebuild.stats.stage import read_release_table, read_workflow_table

    built = _bench().build_release(tmp_path / "release", 3_000, seed=1, workflow=tmp_path / "workflow", shards=8)
    inputs = built["workflow_inputs"]
    assert built["records"] == 3_000 and len(inputs["barcodes"]) == len(inputs["images"]) == 8
    real_curated = pq.read_schema(sample_release["inputs"]["curated"]).remove_metadata()
    assert pq.read_schema(inputs["curated"]).remove_metadata().equals(real_curated)
    splits = pq.read_table(inputs["splits"])
    assert splits.column_names == ["processid", "split", "chunk"] and splits.num_rows == 3_000
    assert splits["processid"].to_pylist() == sorted(splits["processid"].to_pylist())
    curated_rows = pq.read_metadata(inputs["curated"]).num_rows
    barcode_rows = 0
    for number, (barcode_path, image_path) in enumerate(zip(inputs["barcodes"], inputs["images"])):
        assert Path(barcode_path).name == f"shard-{number:03d}.parquet"
        assert Path(image_path).parent.name == f"shard-{number:03d}"
        shard = pq.read_table(barcode_path)
        assert shard.schema.remove_metadata().equals(BARCODE_TABLE_SCHEMA)
        assert pq.read_schema(image_path).remove_metadata().equals(IMAGE_RECORD_SCHEMA)
        assert (shard_of(shard["processid"].to_pylist(), 8) == number).all()
        barcode_rows += shard.num_rows
    assert 3_000 < curated_rows < barcode_rows  # records without a split; barcodes of no curated record
    release = read_release_table(tmp_path / "release")
    workflow = read_workflow_table(inputs["curated"], inputs["barcodes"], inputs["splits"], inputs["images"])
    for name in STAT_COLUMNS:
        if name != "dna_barcode":
            assert _decoded(workflow, name) == _decoded(release, name), name
    assert np.array_equal(workflow["dna_barcode_key"].to_numpy(), barcode_keys(release["dna_barcode"]))
    first = compute_stats(release, pairs_per_comparison=100)
    second = compute_stats(workflow, pairs_per_comparison=100)
    for name in TABLES:
        pd.testing.assert_frame_equal(first[name], second[name], check_exact=True, obj=name)


def test_the_csv_path_reads_na_like_text_as_the_parquet_copy_holds_it(tmp_path):
    """pyarrow's CSV reader takes "NA", "null", "N/A"... for missing by default; the Parquet copy of the release
    holds them as text, so the statistics of the two would differ. Only an empty field is missing."""
    from bioscan_rebuild.export.layout import CSV_PATH, ROOT
    from bioscan_rebuild.stats.compute import STAT_COLUMNS
    from bioscan_rebuild.stats.stage import read_release_table

    path = tmp_path / ROOT / CSV_PATH
    path.parent.mkdir(parents=True)
    row = dict.fromkeys(STAT_COLUMNS, "") | {"country": "Canada", "province_state": "NA", "species": "null"}
    second = dict.fromkeys(STAT_COLUMNS, "") | {"country": "N/A", "coord-lat": "45.5"}
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(STAT_COLUMNS), quoting=csv.QUOTE_NONNUMERIC)
        writer.writeheader()
        writer.writerows([row, second])
    table = read_release_table(tmp_path).to_pydict()
    assert table["province_state"] == ["NA", None] and table["species"] == ["null", None]
    assert table["country"] == ["Canada", "N/A"] and table["coord-lat"] == [None, 45.5]


def test_the_fasta_of_some_of_the_shards_is_refused(sample_release, tmp_path):
    """`barcodes fasta` given one barcode shard of two wrote the barcodes of half the records, exit 0."""
    from bioscan_rebuild.core.errors import InputError
    from bioscan_rebuild.metadata.stage import write_fasta_from

    inputs = sample_release["inputs"]
    written = write_fasta_from(inputs["curated"], inputs["barcodes"], tmp_path / "all.fasta", inputs["splits"])
    assert written == (tmp_path / "all.fasta").read_text().count(">") > 0
    with pytest.raises(InputError, match=r"the barcode shards given \(1\) hold \d+ of the \d+ records, 0 more than"):
        write_fasta_from(inputs["curated"], inputs["barcodes"][:1], tmp_path / "half.fasta", inputs["splits"])
    assert not (tmp_path / "half.fasta").exists()
    # a shard given twice in place of another: as many rows as records, half of them twice
    twice = [inputs["barcodes"][0]] * len(inputs["barcodes"])
    with pytest.raises(InputError, match=r"hold \d+ of the \d+ records, \d+ more than once: give every shard once"):
        write_fasta_from(inputs["curated"], twice, tmp_path / "twice.fasta", inputs["splits"])
