"""The statistics figures (`stats.figures`) and the offline basemap (`stats.basemap`).

Tables are built by hand to the `compute_stats` contract, so these tests need neither a workflow run nor the
statistics computation. Each check is one a broken figure would fail: a blank or missing image, a wrong size,
text missing from the SVG, a site drawn in the wrong place, land not drawn (or drawn over the sea), bytes that
change between runs.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
import pytest
from matplotlib import font_manager
from PIL import Image

from bioscan_rebuild.stats import basemap, figures

RANKS = ["class", "order", "family", "subfamily", "genus", "species", "dna_bin"]
PUBLISHED = {"class": 99.9, "order": 99.7, "family": 95.8, "subfamily": 28.6, "genus": 23.8, "species": 9.2}
LONDON = (0.0, 51.5)  # (lon, lat) of a site the map must put in the right place
AFRICA, PACIFIC = (20.0, 5.0), (-150.0, 0.0)


def _tables() -> dict[str, pd.DataFrame]:
    rng = np.random.default_rng(7)
    orders = ["Diptera", "Hymenoptera", "Coleoptera", "Hemiptera", "Lepidoptera", "Psocodea", "Thysanoptera"]
    order_records = [2500, 900, 300, 180, 90, 12, 1]
    labelled = [100.0, 99.5, 94.0, 30.0, 25.0, 11.0, 99.0]
    edges = np.linspace(0, 0.4, 41)

    def histogram(comparison: str, centre: float, spread: float, pairs: int) -> pd.DataFrame:
        counts, _ = np.histogram(np.clip(rng.normal(centre, spread, pairs), 0, 0.3999), bins=edges)
        return pd.DataFrame({"comparison": comparison, "bin_left": edges[:-1], "bin_right": edges[1:], "pairs": counts})

    genetic = [
        ("within_species", 0.01, 0.008, 400),
        ("within_genus", 0.08, 0.03, 400),
        ("within_order", 0.18, 0.04, 400),
        ("between_orders", 0.26, 0.04, 400),
        ("within_bin", 0.012, 0.008, 400),
        ("between_bins", 0.2, 0.05, 400),
    ]
    size_rows, size_hist = [], []
    for field, scale in [("image_measurement_value", 20000.0), ("area_fraction", 0.05), ("scale_factor", 0.8)]:
        for order, n in [("all", 4000), *zip(orders[:4], order_records[:4])]:
            values = rng.lognormal(np.log(scale), 0.5, n)
            q = np.quantile(values, [0.05, 0.25, 0.5, 0.75, 0.95])
            size_rows.append((order, field, n, values.mean(), *q))
            if order == "all":
                bins = np.geomspace(values.min(), values.max(), 31) if field == "image_measurement_value" else 30
                counts, e = np.histogram(values, bins=bins)
                size_hist.append(
                    pd.DataFrame(
                        {"field": field, "order": "all", "bin_left": e[:-1], "bin_right": e[1:], "records": counts}
                    )
                )
    splits = ["pretrain", "train", "val", "test", "key_unseen", "val_unseen", "test_unseen", "other_heldout"]
    split_records = [3000, 500, 40, 120, 80, 25, 20, 200]
    return {
        "label_completeness": pd.DataFrame(
            {
                "rank": RANKS,
                "categories": [3, 7, 60, 40, 200, 400, 900],
                "labelled": [round(p * 40) for p in labelled],
                "labelled_pct": labelled,
                "imbalance_ratio": [900.0, 2500.0, 300.0, 50.0, 20.0, 10.0, 5.0],
                "published_categories": [10, 55, 934, np.nan, 7605, 22622, 324411],
                "published_labelled_pct": [PUBLISHED.get(r, np.nan) for r in RANKS],
            }
        ),
        "records_per_order": pd.DataFrame({"order": orders, "records": order_records}),
        "records_per_family": pd.DataFrame(
            {
                "family": [f"Family{i:02d}" for i in range(30)],
                "order": [orders[i % 3] for i in range(30)],
                "records": [int(2000 / (i + 1)) for i in range(30)],
            }
        ),
        "species_sizes": pd.DataFrame(
            {"species": [f"Genus species{i}" for i in range(300)], "records": sorted(rng.zipf(1.8, 300), reverse=True)}
        ),
        "bins_per_species": pd.DataFrame({"bins": [1, 2, 3, 5], "species": [380, 15, 4, 1]}),
        "species_per_bin": pd.DataFrame({"species": [1, 2, 4], "bins": [890, 9, 1]}),
        "countries": pd.DataFrame(
            {
                "country": ["Canada", "Costa Rica", "South Africa", "Pakistan", "United Kingdom"],
                "records": [2000, 1500, 500, 80, 3],
            }
        ),
        "provinces": pd.DataFrame(
            {
                "country": ["Canada", "Canada", "Costa Rica", "South Africa"],
                "province_state": ["Ontario", "Quebec", "Guanacaste", "Western Cape"],
                "records": [1500, 500, 1500, 500],
            }
        ),
        "sites": pd.DataFrame(
            {
                "lat": [43.5, 10.8, -33.9, LONDON[1], 33.7],
                "lon": [-80.2, -85.6, 18.4, LONDON[0], 73.1],
                "records": [1500, 1500, 500, 3, 80],
            }
        ),
        "genetic_distances": pd.DataFrame(
            [(c, 50, n, m, m - s, m, m + s) for c, m, s, n in genetic],
            columns=["comparison", "groups", "pairs", "mean", "p05", "median", "p95"],
        ),
        "genetic_histogram": pd.concat([histogram(c, m, s, n) for c, m, s, n in genetic], ignore_index=True),
        "size_fields": pd.DataFrame(
            size_rows, columns=["order", "field", "count", "mean", "p05", "p25", "median", "p75", "p95"]
        ),
        "size_histogram": pd.concat(size_hist, ignore_index=True),
        "split_table": pd.DataFrame(
            {
                "split": [*splits, "total"],
                "records": [*split_records, sum(split_records)],
                "species": [0, 200, 30, 60, 50, 20, 15, 0, 400],
                "barcodes": [2800, 480, 40, 118, 79, 25, 20, 190, 3752],
                "bins": [900, 300, 30, 90, 60, 20, 18, 100, 1200],
            }
        ),
    }


def _empty_tables() -> dict[str, pd.DataFrame]:
    """A tiny release: every other table empty (its columns kept), the rest missing altogether."""
    return {name: table.iloc[0:0] for k, (name, table) in enumerate(_tables().items()) if k % 2 == 0}


SUMMARY = {"barcode_gap": {"within_bin_p95": 0.03, "between_bins_p05": 0.12}}


@pytest.fixture(scope="module")
def drawn(tmp_path_factory) -> tuple[dict[str, pd.DataFrame], list[Path], list[Path]]:
    tables = _tables()
    first = figures.draw_figures(tables, SUMMARY, tmp_path_factory.mktemp("first"))
    second = figures.draw_figures(tables, SUMMARY, tmp_path_factory.mktemp("second") / "nested")
    return tables, first, second


@pytest.fixture(scope="module")
def drawn_empty(tmp_path_factory) -> list[Path]:
    return figures.draw_figures(_empty_tables(), {}, tmp_path_factory.mktemp("empty"))


def _expected_names() -> set[str]:
    return {f"{name}.{ext}" for name in figures.FIGURES for ext in ("png", "svg")}


def _rgb(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"), dtype=np.int16)


def _check_not_blank(path: Path, min_colours: int) -> None:
    pixels = _rgb(path)
    assert pixels.std() > 10, f"{path.name} is nearly blank"
    packed = (pixels[..., 0].astype(np.int32) << 16) | (pixels[..., 1].astype(np.int32) << 8) | pixels[..., 2]
    colours = np.unique(packed)
    assert len(colours) > min_colours, f"{path.name}: only {len(colours)} colours"


def test_figure_names_match_the_workflow():
    # The rule's outputs and the dataset card name these files; a renamed figure would break both.
    assert set(figures.FIGURES) == {
        "splits",
        "label_completeness",
        "records_per_order",
        "records_per_family",
        "species_long_tail",
        "bins_species",
        "countries",
        "site_map",
        "genetic_distances",
        "size_fields",
    }


def test_every_figure_is_written_at_its_size_and_not_blank(drawn):
    _, paths, _ = drawn
    assert paths == sorted(paths)
    assert {p.name for p in paths} == _expected_names()
    for path in paths:
        assert path.is_file() and path.stat().st_size > 0
        if path.suffix == ".png":
            width, height = figures.SIZES[path.stem]
            with Image.open(path) as image:
                assert image.format == "PNG"
                assert image.size == (round(width * figures.DPI), round(height * figures.DPI))
            _check_not_blank(path, min_colours=20)


def test_svgs_parse_and_carry_their_text(drawn):
    tables, paths, _ = drawn
    svgs = {p.stem: p for p in paths if p.suffix == ".svg"}
    expected_text = {
        "label_completeness": ["subfamily", "this release", "BIOSCAN-5M (published)", "Records labelled (%)"],
        "records_per_order": ["Diptera", "Thysanoptera"],
        "records_per_family": ["Family00 (Diptera)", "Family19"],
        "species_long_tail": ["300 species"],
        "bins_species": ["BINs per species", "Species per BIN"],
        "countries": ["Costa Rica", "Western Cape (South Africa)"],
        "site_map": ["Longitude (° E)", "Natural Earth"],
        "genetic_distances": ["within species", "between orders", "barcode gap"],
        "size_fields": ["image_measurement_value", "area_fraction", "scale_factor", "Diptera (2,500)"],
        "splits": ["key_unseen", "other_heldout"],
    }
    for name, path in svgs.items():
        root = ET.parse(path).getroot()
        assert root.tag == "{http://www.w3.org/2000/svg}svg"
        text = path.read_text(encoding="utf-8")
        # Glyphs are paths; matplotlib keeps each text as a comment beside them (XML-escaped).
        for word in expected_text[name]:
            assert word.replace("&", "&amp;") in text, f"{name}.svg lacks {word!r}"
        assert "no data" not in text, f"{name}.svg says no data although its tables have rows"
        assert "<dc:date>" not in text and "Matplotlib v" not in text, "the SVG embeds a date or a version"
    # The splits, not the "total" row.
    assert "total" not in svgs["splits"].read_text(encoding="utf-8")


def test_two_runs_write_the_same_bytes(drawn):
    _, first, second = drawn
    assert [p.name for p in first] == [p.name for p in second]
    for a, b in zip(first, second):
        assert a.read_bytes() == b.read_bytes(), f"{a.name} differs between runs"


def test_a_users_matplotlib_settings_change_no_figure(drawn, tmp_path):
    """Reviewer determ: STYLE was laid over the process's settings, which matplotlib reads from a user's
    matplotlibrc (~/.config/matplotlib, the working folder's, $MATPLOTLIBRC): every figure, and so the manifest,
    Croissant and provenance hashes, came out different for a lab member with one. Figures start from matplotlib's
    own defaults."""
    import matplotlib

    tables, first, _ = drawn
    users = {
        "savefig.bbox": "tight",
        "lines.linewidth": 3,
        "axes.edgecolor": "red",
        "patch.force_edgecolor": True,
        "axes.unicode_minus": False,
        "axes.formatter.use_locale": True,
    }
    with matplotlib.rc_context(users):
        mine = figures.draw_figures(tables, SUMMARY, tmp_path)
        assert matplotlib.rcParams["axes.edgecolor"] == "red"  # the user's settings are theirs again after
    assert [p.name for p in mine] == [p.name for p in first]
    for a, b in zip(first, mine):
        assert a.read_bytes() == b.read_bytes(), f"{a.name} follows the user's matplotlib settings"


def test_png_has_no_software_or_date_chunk(drawn):
    _, paths, _ = drawn
    for path in paths:
        if path.suffix == ".png":
            with Image.open(path) as image:
                assert not {"Software", "Creation Time", "date:create"} & set(image.info), path.name


def test_empty_tables_draw_no_data_axes(drawn_empty):
    assert {p.name for p in drawn_empty} == _expected_names()
    for path in drawn_empty:
        if path.suffix == ".svg":
            text = path.read_text(encoding="utf-8")
            ET.fromstring(text)
            assert "no data" in text, f"{path.name} lacks the no-data note"
        else:
            # Axes, labels and the note still make a picture (the map keeps its land).
            _check_not_blank(path, min_colours=5)


def test_bundled_font_is_the_one_used():
    # A system DejaVu would make the pixels depend on the machine.
    with figures._style():
        found = Path(font_manager.findfont(font_manager.FontProperties(family="DejaVu Sans")))
    assert Path(matplotlib.get_data_path()) in found.parents


def _pixel(fig, ax, lon: float, lat: float) -> tuple[int, int]:
    """(column, row) of a lon/lat point in the saved PNG: display coordinates count up from the bottom."""
    x, y = ax.transData.transform((lon, lat))
    height = fig.bbox.height
    return int(round(x)), int(round(height - y))


def test_site_map_places_sites_and_land(drawn):
    tables, paths, _ = drawn
    png = next(p for p in paths if p.name == "site_map.png")
    pixels = _rgb(png)
    with figures._style():
        fig = figures.make_figure("site_map", tables, SUMMARY)
        fig.canvas.draw()  # applies the equal aspect, which moves the axes box
        ax = fig.axes[0]
        land = np.array(matplotlib.colors.to_rgb(figures.LAND)) * 255
        # The same layout as the saved file, or the pixel positions below would mean nothing.
        assert pixels.shape[:2] == (round(fig.bbox.height), round(fig.bbox.width))

        col, row = _pixel(fig, ax, *AFRICA)
        assert np.abs(pixels[row, col] - land).max() <= 2, f"Africa is {pixels[row, col]}, not land"
        ocean = np.array(matplotlib.colors.to_rgb(figures.OCEAN)) * 255
        for where, lon, lat in [
            ("the middle of the Pacific", *PACIFIC),
            ("the Caspian Sea (a hole in Eurasia)", 50.5, 41.5),
        ]:
            col, row = _pixel(fig, ax, lon, lat)
            assert np.abs(pixels[row, col] - ocean).max() <= 2, f"{where} is {pixels[row, col]}, not sea"

        # The London site: a blue marker (RELEASE) on land, i.e. blue clearly above red.
        col, row = _pixel(fig, ax, *LONDON)
        r, g, b = pixels[row, col]
        assert b - r > 40, f"no site marker at lon 0, lat 51.5 (pixel {pixels[row, col]})"
        # And nothing blue where no site is (lon 0, lat -20: the South Atlantic).
        col, row = _pixel(fig, ax, 0.0, -20.0)
        r, g, b = pixels[row, col]
        assert b - r < 20, "a marker where there is no site"


def test_site_map_marker_area_grows_with_log_records():
    area = figures._marker_area(np.array([1.0, 10.0, 100.0, 10000.0]))
    steps = np.diff(area)
    assert (steps > 0).all() and np.allclose(steps[:2], steps[0]) and np.isclose(steps[2], 2 * steps[0])


def test_land_rings_load_inside_the_globe():
    rings = basemap.land_rings()
    assert len(rings) > 100
    for ring in rings:
        assert ring.ndim == 2 and ring.shape[1] == 2 and len(ring) >= 4
        assert (ring[0] == ring[-1]).all(), "ring not closed"
        assert (np.abs(ring[:, 0]) <= 180).all() and (np.abs(ring[:, 1]) <= 90).all()
    # No edge jumps across the map: the antimeridian crossings were cut, not drawn as bands round the world.
    # The one long edge allowed is Antarctica's along the South Pole (lat -90), which closes it on a flat map.
    for ring in rings:
        long_edges = np.flatnonzero(np.abs(np.diff(ring[:, 0])) > 180)
        assert (ring[long_edges, 1] == -90).all() and (ring[long_edges + 1, 1] == -90).all()
    assert sum(bool((ring[:, 1] == -90).any()) for ring in rings) == 1
    assert "Natural Earth" in basemap.source()


def test_land_rings_are_package_data():
    # Read through importlib.resources (works from a wheel), and shipped by the package-data globs.
    from importlib import resources

    assert resources.files("bioscan_rebuild.stats").joinpath("data", basemap.DATA_FILE).is_file()
    pyproject = (Path(__file__).resolve().parents[1] / "pyproject.toml").read_text(encoding="utf-8")
    assert '"**/*.json"' in pyproject


def test_land_path_covers_land_and_not_the_sea():
    # contains_points tests each ring on its own (holes count as inside), so the Caspian is checked on the
    # rendered map above; here: the continents, Antarctica down to the pole, and no band across an ocean.
    path = figures.land_path()
    inside = path.contains_points(
        [AFRICA, (-100.0, 40.0), (135.0, -25.0), (0.0, -89.0), (-170.0, -84.0), (100.0, 60.0)]
    )
    outside = path.contains_points([PACIFIC, (-30.0, 0.0), (80.0, -20.0), (170.0, 0.0), (-175.0, -30.0)])
    assert inside.all(), inside
    assert not outside.any(), outside


def test_site_map_sums_many_sites_per_degree_cell(tmp_path):
    """Jittered coordinates give millions of distinct sites: above MAX_SITE_MARKERS the map draws 1° cells."""
    rng = np.random.default_rng(3)
    n = figures.MAX_SITE_MARKERS + 5000
    sites = pd.DataFrame(
        {"lat": rng.uniform(40, 43.99, n).round(2), "lon": rng.uniform(-80, -75.01, n).round(2), "records": 1}
    ).drop_duplicates(["lat", "lon"])
    fig = figures.make_figure("site_map", {"sites": sites})
    text = "".join(t.get_text() for ax in fig.axes for t in ax.texts)
    assert f"{len(sites):,} sites in 20 1° cells, {len(sites):,} records" in text
    markers = max(len(c.get_offsets()) for ax in fig.axes for c in ax.collections)
    assert markers == 20


def test_sites_on_the_map_edge_are_drawn_in_its_last_cells():
    """A site at latitude 90 or longitude 180 fell in a cell centred at 90.5 / 180.5, off the map, though counted."""
    n = figures.MAX_SITE_MARKERS + 1
    sites = pd.DataFrame({"lat": np.linspace(-60, 60, n).round(2), "lon": np.linspace(-170, 170, n).round(2)})
    edges = pd.DataFrame({"lat": [90.0, -90.0, 10.0], "lon": [180.0, -180.0, 180.0]})
    sites = pd.concat([sites, edges], ignore_index=True).drop_duplicates(["lat", "lon"]).assign(records=1)
    fig = figures.make_figure("site_map", {"sites": sites})
    offsets = np.concatenate([c.get_offsets() for ax in fig.axes for c in ax.collections if len(c.get_offsets())])
    assert (np.abs(offsets[:, 0]) <= 180).all() and (np.abs(offsets[:, 1]) <= 90).all()
    assert [179.5, 89.5] in offsets.tolist() and [-179.5, -89.5] in offsets.tolist()  # (lon, lat)


def test_a_dollar_sign_in_a_name_is_drawn_as_written(tmp_path):
    """matplotlib read text between two "$" as a formula: a province "Zone $\\alpha$ $\\x$" stopped the stats
    stage (ParseFatalException) and "Trap $1 and $2" was drawn in italics without its dollars."""
    names = ["Zone $\\alpha$ $\\x$", "Trap $1 and $2"]
    provinces = pd.DataFrame({"country": ["Canada", "Canada"], "province_state": names, "records": [5, 3]})
    countries = pd.DataFrame({"country": ["Canada"], "records": [8]})
    labels, _ = _bar_chart("countries", {"countries": countries, "provinces": provinces})
    assert labels == [f"{name} (Canada)" for name in names]
    with figures._style():
        fig = figures.make_figure("countries", {"countries": countries, "provinces": provinces})
        fig.savefig(tmp_path / "countries.png")


def test_log_axes_label_their_ticks_as_numbers_not_formula_source(drawn):
    """With `text.parse_math` off (the "$" fix above), matplotlib's log tick labels were drawn as their source,
    `$\\mathdefault{10^{2}}$`, on every log axis of seven figures, the card's figures among them."""
    tables, _, _ = drawn
    seen = 0
    with figures._style():
        for name in figures.FIGURES:
            fig = figures.make_figure(name, tables, SUMMARY)
            fig.canvas.draw()
            for ax in fig.axes:
                for axis in (ax.xaxis, ax.yaxis):
                    if axis.get_scale() != "log":
                        continue
                    labels = [label.get_text() for label in axis.get_ticklabels() if label.get_text()]
                    assert all(re.fullmatch(r"[\d,.]+", label) for label in labels), (name, labels)
                    seen += bool(labels)  # an axis sharing another's ticks shows none
    assert seen >= 7
    # an axis within one decade (a homogeneous batch's organism pixels) has no power of ten in view: its minor
    # ticks carry the numbers (blanked, the axis showed none)
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    with figures._style():
        fig = Figure()
        FigureCanvasAgg(fig)
        ax = fig.add_subplot()
        ax.set_xscale("log")
        ax.set_xlim(15_000, 80_000)
        figures.plain_log_ticks(fig)
        fig.canvas.draw()
    minor = [label.get_text() for label in ax.xaxis.get_minorticklabels() if label.get_text()]
    assert minor[:2] == ["20,000", "30,000"] and all(re.fullmatch(r"[\d,]+", label) for label in minor)


def _bar_chart(name: str, tables: dict) -> tuple[list[str], list[float]]:
    """The tick labels and bar lengths of a one-axes bar figure (horizontal bars: widths; vertical: heights)."""
    with figures._style():
        fig = figures.make_figure(name, tables)
    ax = fig.axes[-1] if name == "countries" else fig.axes[0]
    bars = ax.patches
    horizontal = name != "splits"
    ticks = ax.get_yticklabels() if horizontal else ax.get_xticklabels()
    lengths = [bar.get_width() if horizontal else bar.get_height() for bar in bars]
    return [t.get_text() for t in ticks], lengths


def test_a_family_bar_is_the_familys_total_and_a_province_without_country_has_no_empty_brackets():
    family = pd.DataFrame(
        {
            "family": ["Family16", "Family2", "Family16", "Family5"],
            "order": ["Order3", "Order1", None, None],
            "records": [3567, 3570, 15, 40],
        }
    )
    labels, lengths = _bar_chart("records_per_family", {"records_per_family": family})
    # Family16's records without an order belong to its bar: 3,582, above Family2's 3,570
    assert labels == ["Family16 (Order3)", "Family2 (Order1)", "Family5"] and lengths == [3582, 3570, 40]
    provinces = pd.DataFrame({"country": [None, "Canada"], "province_state": ["Ontario", "Quebec"], "records": [5, 3]})
    countries = pd.DataFrame({"country": ["Canada"], "records": [3]})
    labels, _ = _bar_chart("countries", {"countries": countries, "provinces": provinces})
    assert labels == ["Ontario", "Quebec (Canada)"]


def test_the_splits_figure_names_every_split_an_empty_one_too():
    from bioscan_rebuild.stats.compute import SPLITS

    records = [0] * len(SPLITS)
    records[list(SPLITS).index("train")] = 7
    table = pd.DataFrame({"split": [*SPLITS, "total"], "records": [*records, 7]})
    labels, lengths = _bar_chart("splits", {"split_table": table})
    assert labels == list(SPLITS) and lengths == [7]
