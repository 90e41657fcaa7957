"""The statistics stage's figures: one PNG (110 dpi) and one SVG per figure, drawn from `compute_stats`' tables.

Every figure is drawn the same way (`_style()`: one font, one palette, titles, axis labels with units,
`tight_layout`) with matplotlib's object API on the Agg canvas (no pyplot, no GUI backend, no global state), and
saved so that a rerun writes the same bytes: the SVG ids are salted with a constant, the date and version
metadata are left out, and text uses the DejaVu Sans that ships inside matplotlib. Empty tables (a tiny release)
give the axes with a centred "no data" note, never an error.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
from matplotlib import ticker
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import PathPatch
from matplotlib.path import Path as MplPath

from bioscan_rebuild.stats.basemap import land_rings

DPI = 110
TOP_N = 20

# One palette (Okabe-Ito, readable with colour-vision deficiencies); every figure takes its colours from here.
PALETTE = ["#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000"]
RELEASE, PUBLISHED = PALETTE[0], PALETTE[1]
LAND, LAND_EDGE, OCEAN = "#d9d9d9", "#8c8c8c", "#f2f6fa"
NOTE = "#555555"

STYLE = {
    # matplotlib's own DejaVu Sans: a system font could differ between machines, and so would the pixels.
    "font.family": ["DejaVu Sans"],
    "mathtext.fontset": "dejavusans",
    # labels are the data's own text: "$" in a place or taxon name is no formula (it crashed, or drew italics)
    "text.parse_math": False,
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.labelsize": 9,
    "figure.titlesize": 11,
    "figure.titleweight": "bold",
    "legend.fontsize": 8,
    "legend.frameon": False,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "axes.prop_cycle": matplotlib.cycler(color=PALETTE),
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": False,
    "figure.dpi": DPI,
    "savefig.dpi": DPI,
    "figure.facecolor": "white",
    "savefig.facecolor": "white",
    # Fixed salt: SVG element ids are hashes, random per process otherwise.
    "svg.hashsalt": "bioscan-rebuild",
    "svg.fonttype": "path",  # glyphs as paths: the SVG looks the same without the font installed
    "path.simplify": True,
}
# Date, Creator (SVG) and Software (PNG) would embed the time of the run and matplotlib's version.
SVG_METADATA = {"Date": None, "Creator": None}
PNG_METADATA = {"Software": None}

# Figure name -> size in inches (the PNG is that × DPI pixels).
SIZES = {
    "splits": (6.4, 4.0),
    "label_completeness": (6.8, 4.4),
    "records_per_order": (6.8, 5.6),
    "records_per_family": (6.8, 5.6),
    "species_long_tail": (6.0, 4.4),
    "bins_species": (9.0, 3.8),
    "countries": (10.0, 5.6),
    "site_map": (10.0, 5.6),
    "genetic_distances": (10.0, 4.0),
    "size_fields": (12.0, 6.4),
}
FIGURES = tuple(sorted(SIZES))

GENETIC_LEVELS = ["within_species", "within_genus", "within_order", "between_orders"]
GAP_LEVELS = ["within_bin", "between_bins"]
SIZE_FIELDS = [
    ("image_measurement_value", "Organism pixels (original_full, log scale)", True),
    ("area_fraction", "Box area / image area", False),
    ("scale_factor", "Box shorter side / 256 px", False),
]
TOP_ORDERS = 8


def _register_bundled_fonts() -> None:
    """Make sure matplotlib's own DejaVu files are in its font list: the list is cached per user, not per
    environment, so a cache written by another environment names that one's files (or only the system's)."""
    from matplotlib import font_manager

    manager = font_manager.fontManager
    known = {font.fname for font in manager.ttflist}
    for path in sorted((Path(matplotlib.get_data_path()) / "fonts" / "ttf").glob("DejaVuSans*.ttf")):
        if str(path) not in known:
            manager.addfont(path)


@contextmanager
def _style() -> Iterator[None]:
    # A system DejaVu Sans (fonts-dejavu, pulled in by many packages) can win matplotlib's font lookup over its
    # own copy; findfont looks only in matplotlib's data folder while this variable is set.
    _register_bundled_fonts()
    saved = os.environ.get("MPL_IGNORE_SYSTEM_FONTS")
    os.environ["MPL_IGNORE_SYSTEM_FONTS"] = "1"
    try:
        # from matplotlib's own defaults, not the process's: a user's matplotlibrc (~/.config/matplotlib, the
        # working folder's, $MATPLOTLIBRC) set every key STYLE leaves out and changed every figure's bytes
        with matplotlib.rc_context():
            matplotlib.rcdefaults()
            matplotlib.rcParams.update(STYLE)
            yield
    finally:
        if saved is None:
            os.environ.pop("MPL_IGNORE_SYSTEM_FONTS", None)
        else:
            os.environ["MPL_IGNORE_SYSTEM_FONTS"] = saved


def _table(tables: dict[str, pd.DataFrame], name: str) -> pd.DataFrame:
    table = tables.get(name)
    return table if table is not None else pd.DataFrame()


def _no_data(ax: Axes, keep_ticks: bool = False) -> None:
    """The centred note of an empty table; its 0..1 ticks would mean nothing, so they go (the map keeps its own)."""
    box = {"facecolor": "white", "edgecolor": "none", "alpha": 0.8}
    ax.text(0.5, 0.5, "no data", transform=ax.transAxes, ha="center", va="center", color=NOTE, fontsize=11, bbox=box)
    if not keep_ticks:
        # tick_params, not set_xticks([]): a no-data panel may share its x axis with one that has data.
        ax.tick_params(left=False, bottom=False, labelleft=False, labelbottom=False)


def _numeric(table: pd.DataFrame, column: str) -> np.ndarray:
    return pd.to_numeric(table[column], errors="coerce").to_numpy(dtype=float)


def _positive(table: pd.DataFrame, column: str) -> pd.DataFrame:
    """Rows with a positive value: the rest cannot sit on a log axis."""
    if table.empty or column not in table:
        return table.iloc[0:0]
    return table[_numeric(table, column) > 0]


def _records(n: float) -> str:
    count = f"{n:,.0f}" if float(n).is_integer() else f"{n:,.1f}"
    return f"{count} record" + ("" if n == 1 else "s")


def _count_label(n: float) -> str:
    return f"{int(n):,}"


def _top_bars(ax: Axes, labels: list[str], values: np.ndarray, color: str, xlabel: str) -> None:
    """Horizontal bars, largest on top, on a log x axis starting just below 1 (bars start at 0, off the scale)."""
    ax.set_xlabel(xlabel)
    if len(values) == 0:
        _no_data(ax)
        ax.set_yticks([])
        return
    y = np.arange(len(values))
    ax.barh(y, values, color=color, height=0.7)
    ax.set_yticks(y, labels)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlim(0.8, float(values.max()) * 3)
    for yi, value in zip(y, values):
        ax.text(value * 1.08, yi, _count_label(value), va="center", fontsize=7, color=NOTE)


def _splits(fig: Figure, tables: dict, summary: dict) -> None:
    ax = fig.add_subplot()
    fig.suptitle("Records per split")
    ax.set_ylabel("Records (log scale)")
    table = _table(tables, "split_table")
    if not table.empty and "split" in table:
        table = table[table["split"].astype(str) != "total"]
    # every split of the table (the published eight, in order), an empty one too: "no records" is not "no split"
    records = np.nan_to_num(_numeric(table, "records")) if "records" in table else np.array([])
    if table.empty or not (records > 0).any():
        _no_data(ax)
        return
    x = np.arange(len(table))
    ax.bar(x[records > 0], records[records > 0], color=RELEASE, width=0.7)
    ax.set_xticks(x, table["split"].astype(str), rotation=30, ha="right")
    ax.set_yscale("log")
    ax.set_ylim(0.8, float(records.max()) * 4)
    for xi, value in zip(x, records):
        # an empty split: its 0 just above the axis, where no bar can start on a log scale
        ax.text(xi, max(value, 0.8) * 1.15, _count_label(value), ha="center", va="bottom", fontsize=7, color=NOTE)
    ax.set_xlabel("Split")


def _label_completeness(fig: Figure, tables: dict, summary: dict) -> None:
    ax = fig.add_subplot()
    fig.suptitle("Records labelled per rank")
    ax.set_xlabel("Records labelled (%)")
    ax.set_xlim(0, 112)  # room for the value labels right of a full bar
    table = _table(tables, "label_completeness")
    if table.empty:
        _no_data(ax)
        return
    y = np.arange(len(table))
    ours = _numeric(table, "labelled_pct")
    published = (
        _numeric(table, "published_labelled_pct") if "published_labelled_pct" in table else np.full(len(table), np.nan)
    )
    height = 0.38
    ax.barh(y - height / 2, np.nan_to_num(ours), height=height, color=RELEASE, label="this release")
    known = ~np.isnan(published)
    if known.any():
        ax.barh(y[known] + height / 2, published[known], height=height, color=PUBLISHED, label="BIOSCAN-5M (published)")
    for yi, value in zip(y - height / 2, ours):
        if not np.isnan(value):
            ax.text(value + 1, yi, f"{value:.1f}", va="center", fontsize=7, color=NOTE)
    for yi, value in zip(y[known] + height / 2, published[known]):
        ax.text(value + 1, yi, f"{value:.1f}", va="center", fontsize=7, color=NOTE)
    ax.set_yticks(y, table["rank"].astype(str))
    ax.invert_yaxis()
    ax.set_ylabel("Rank")
    # Outside the axes: inside, it would cover the bars of a full rank.
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.13), ncols=2)


def _largest(tables: dict, name: str, label: str) -> tuple[list[str], np.ndarray]:
    """The TOP_N rows of a counts table with the most records: their labels and record counts."""
    table = _positive(_table(tables, name), "records")
    if table.empty:
        return [], np.array([])
    table = table.sort_values("records", ascending=False, kind="stable").head(TOP_N)
    return table[label].astype(str).tolist(), _numeric(table, "records")


def _records_per_order(fig: Figure, tables: dict, summary: dict) -> None:
    ax = fig.add_subplot()
    fig.suptitle(f"Records per order (top {TOP_N})")
    _top_bars(ax, *_largest(tables, "records_per_order", "order"), RELEASE, "Records (log scale)")


def _records_per_family(fig: Figure, tables: dict, summary: dict) -> None:
    ax = fig.add_subplot()
    fig.suptitle(f"Records per family (top {TOP_N})")
    table = _positive(_table(tables, "records_per_family"), "records")
    labels, totals = [], np.array([])
    if not table.empty:
        # The table has a row per family and order (and one for the family's records without an order): a bar
        # is the family's total, labelled with the order holding most of its records.
        table = table.assign(
            family=table["family"].astype(str),
            order=table["order"].fillna("").astype(str) if "order" in table else "",
            records=_numeric(table, "records"),
        )
        total = table.groupby("family", sort=False)["records"].sum()
        ordered = table[table["order"] != ""].sort_values("records", ascending=False, kind="stable")
        main_order = ordered.drop_duplicates("family").set_index("family")["order"]
        families = sorted(total.index, key=lambda family: (-total[family], family))[:TOP_N]
        labels = [f"{family} ({main_order[family]})" if family in main_order else family for family in families]
        totals = total[families].to_numpy(dtype=float)
    _top_bars(ax, labels, totals, RELEASE, "Records (log scale)")


def _species_long_tail(fig: Figure, tables: dict, summary: dict) -> None:
    ax = fig.add_subplot()
    fig.suptitle("Records per species (the long tail)")
    ax.set_xlabel("Species rank by records (log scale)")
    ax.set_ylabel("Records per species (log scale)")
    table = _positive(_table(tables, "species_sizes"), "records")
    if table.empty:
        _no_data(ax)
        return
    records = np.sort(_numeric(table, "records"))[::-1]
    rank = np.arange(1, len(records) + 1)
    ax.plot(rank, records, color=RELEASE, linewidth=1.4, marker="o" if len(records) <= 50 else None, markersize=3)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(0.8, len(records) * 1.5)
    ax.set_ylim(0.8, float(records.max()) * 2)
    singletons = int((records == 1).sum())
    ax.text(
        0.98,
        0.95,
        f"{len(records):,} species\n{singletons:,} with one record\nmedian {_records(np.median(records))}",
        transform=ax.transAxes,
        ha="right",
        va="top",
        color=NOTE,
    )


def _count_bars(ax: Axes, table: pd.DataFrame, x_column: str, y_column: str, color: str) -> None:
    table = _positive(table, y_column)
    if table.empty or x_column not in table:
        _no_data(ax)
        return
    x = _numeric(table, x_column)
    y = _numeric(table, y_column)
    ax.bar(x, y, color=color, width=0.8)
    ax.set_yscale("log")
    ax.set_ylim(0.8, float(y.max()) * 3)
    ax.set_xticks(np.unique(x)[:: max(1, math.ceil(len(np.unique(x)) / 15))])
    if len(x) <= 20:  # beyond that the counts overlap; the table has them
        for xi, yi in zip(x, y):
            ax.text(xi, yi * 1.1, _count_label(yi), ha="center", va="bottom", fontsize=7, color=NOTE)


def _bins_species(fig: Figure, tables: dict, summary: dict) -> None:
    left, right = fig.subplots(1, 2)
    fig.suptitle("How BINs and species names agree")
    left.set_title("BINs per species")
    left.set_xlabel("BINs holding the species' records")
    left.set_ylabel("Species (log scale)")
    _count_bars(left, _table(tables, "bins_per_species"), "bins", "species", PALETTE[0])
    right.set_title("Species per BIN")
    right.set_xlabel("Species named among the BIN's records")
    right.set_ylabel("BINs (log scale)")
    _count_bars(right, _table(tables, "species_per_bin"), "species", "bins", PALETTE[2])


def _countries(fig: Figure, tables: dict, summary: dict) -> None:
    left, right = fig.subplots(1, 2)
    fig.suptitle("Where the records were collected")
    left.set_title(f"Records per country (top {TOP_N})")
    _top_bars(left, *_largest(tables, "countries", "country"), RELEASE, "Records (log scale)")
    right.set_title(f"Records per province or state (top {TOP_N})")
    table = _positive(_table(tables, "provinces"), "records")
    table = table.sort_values("records", ascending=False, kind="stable").head(TOP_N) if not table.empty else table
    labels = (
        [
            f"{p} ({c})" if c else p
            for p, c in zip(table["province_state"].fillna("").astype(str), table["country"].fillna("").astype(str))
        ]
        if not table.empty
        else []
    )
    _top_bars(
        right,
        labels,
        _numeric(table, "records") if not table.empty else np.array([]),
        PALETTE[2],
        "Records (log scale)",
    )


def land_path() -> MplPath:
    """All land rings as one compound path: exteriors clockwise, holes anticlockwise, so nonzero fill keeps lakes."""
    vertices, codes = [], []
    for ring in land_rings():
        vertices.append(ring)
        ring_codes = np.full(len(ring), MplPath.LINETO, dtype=MplPath.code_type)
        ring_codes[0], ring_codes[-1] = MplPath.MOVETO, MplPath.CLOSEPOLY
        codes.append(ring_codes)
    return MplPath(np.concatenate(vertices), np.concatenate(codes))


def _marker_area(records: np.ndarray) -> np.ndarray:
    """Marker area (pt²) grows with log10(records): one site of 1 record stays visible, 10⁵ doesn't swamp a map."""
    return 12.0 * (1.0 + np.log10(np.maximum(records, 1.0)))


MAX_SITE_MARKERS = 20_000


def _site_map(fig: Figure, tables: dict, summary: dict) -> None:
    ax = fig.add_subplot()
    fig.suptitle("Collection sites")
    ax.set_facecolor(OCEAN)
    ax.add_patch(PathPatch(land_path(), facecolor=LAND, edgecolor=LAND_EDGE, linewidth=0.4, zorder=1))
    ax.set_xlim(-180, 180)
    ax.set_ylim(-90, 90)
    ax.set_aspect("equal")  # equirectangular: one degree is as long in lon as in lat
    ax.set_xticks(np.arange(-180, 181, 60))
    ax.set_yticks(np.arange(-90, 91, 30))
    ax.set_xlabel("Longitude (° E)")
    ax.set_ylabel("Latitude (° N)")
    for side in ("top", "right"):
        ax.spines[side].set_visible(True)
    table = _table(tables, "sites")
    if not table.empty:
        lat, lon, records = _numeric(table, "lat"), _numeric(table, "lon"), _numeric(table, "records")
        keep = ~(np.isnan(lat) | np.isnan(lon)) & (np.abs(lat) <= 90) & (np.abs(lon) <= 180)
        table, lat, lon, records = table[keep], lat[keep], lon[keep], np.nan_to_num(records[keep], nan=1.0)
    if table.empty:
        _no_data(ax, keep_ticks=True)
        return
    binned = len(lat) > MAX_SITE_MARKERS
    if binned:  # a marker per site would bury the map (and make the SVG huge): sum the sites per 1° cell
        # the cell of latitude 90 (longitude 180) is the last one, not one beyond the map's edge
        cell_lat, cell_lon = np.clip(np.floor(lat), -90, 89) + 0.5, np.clip(np.floor(lon), -180, 179) + 0.5
        cells = pd.DataFrame({"lat": cell_lat, "lon": cell_lon, "records": records})
        cells = cells.groupby(["lat", "lon"], sort=True)["records"].sum().reset_index()
        lat, lon, records = (cells[c].to_numpy(dtype=float) for c in ("lat", "lon", "records"))
    # Largest first, so small sites stay visible on top of big ones.
    order = np.argsort(-records, kind="stable")
    ax.scatter(
        lon[order],
        lat[order],
        s=_marker_area(records[order]),
        color=RELEASE,
        alpha=0.75,
        edgecolors="white",
        linewidths=0.4,
        zorder=3,
    )
    # Size key: a few reference counts up to the largest site.
    top = max(1, int(10 ** math.floor(math.log10(max(records.max(), 1)))))
    keys = sorted({1, max(1, top // 100), top} if top >= 100 else {1, top})
    handles = [
        ax.scatter([], [], s=_marker_area(np.array([k], dtype=float)), color=RELEASE, alpha=0.75, edgecolors="white")
        for k in keys
    ]
    ax.legend(handles, [_records(k) for k in keys], loc="lower left", scatterpoints=1)
    ax.text(
        0.99,
        0.015,
        f"{len(table):,} sites{f' in {len(lat):,} 1° cells' if binned else ''}, {int(records.sum()):,} records"
        " · land: Natural Earth 1:110m (public domain)",
        transform=ax.transAxes,
        ha="right",
        va="bottom",
        fontsize=7,
        color=NOTE,
    )


def _density_step(ax: Axes, table: pd.DataFrame, label: str, color: str) -> bool:
    """A step histogram normalised to density (area 1) from the table's bins; False when it has no pairs."""
    table = table.sort_values("bin_left", kind="stable")
    left, right, pairs = _numeric(table, "bin_left"), _numeric(table, "bin_right"), _numeric(table, "pairs")
    width = right - left
    total = np.nansum(pairs)
    if total <= 0 or not (width > 0).all():
        return False
    density = pairs / (total * width)
    x = np.column_stack([left, right]).ravel()
    y = np.repeat(density, 2)
    ax.plot(np.r_[left[0], x, right[-1]], np.r_[0, y, 0], color=color, linewidth=1.4, label=label)
    return True


def _comparison_label(name: str, distances: pd.DataFrame) -> str:
    row = distances[distances["comparison"].astype(str) == name] if "comparison" in distances else distances.iloc[0:0]
    if row.empty:
        return name.replace("_", " ")
    row = row.iloc[0]
    return f"{name.replace('_', ' ')} (median {float(row['median']):.3f}, {int(row['pairs']):,} pairs)"


def _genetic_panel(ax: Axes, histogram: pd.DataFrame, distances: pd.DataFrame, levels: list[str], colors) -> bool:
    drawn = False
    for level, color in zip(levels, colors):
        part = histogram[histogram["comparison"].astype(str) == level] if not histogram.empty else histogram
        if not part.empty:
            drawn |= _density_step(ax, part, _comparison_label(level, distances), color)
    return drawn


def _finite(value) -> float | None:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def _genetic_distances(fig: Figure, tables: dict, summary: dict) -> None:
    left, right = fig.subplots(1, 2)
    fig.suptitle("Pairwise distances between DNA barcodes")
    histogram, distances = _table(tables, "genetic_histogram"), _table(tables, "genetic_distances")
    for ax in (left, right):
        ax.set_xlabel("Mash distance between barcodes")
        ax.set_ylabel("Density (pairs)")
    left.set_title("By taxonomic level")
    if _genetic_panel(left, histogram, distances, GENETIC_LEVELS, PALETTE[:4]):
        left.legend(loc="best")  # computed from the lines drawn: still the same every run
        left.set_ylim(bottom=0)
    else:
        _no_data(left)
    right.set_title("Within a BIN vs between BINs of one genus (barcode gap)")
    drawn = _genetic_panel(right, histogram, distances, GAP_LEVELS, [PALETTE[2], PALETTE[3]])
    gap = (summary or {}).get("barcode_gap") or {}
    within, between = _finite(gap.get("within_bin_p95")), _finite(gap.get("between_bins_p05"))
    if within is not None:
        right.axvline(within, color=PALETTE[2], linestyle="--", linewidth=1, label=f"within-BIN p95 = {within:.3f}")
    if between is not None:
        right.axvline(between, color=PALETTE[3], linestyle=":", linewidth=1.2, label=f"between-BIN p05 = {between:.3f}")
    if within is not None and between is not None and between > within:
        right.axvspan(within, between, color=PALETTE[5], alpha=0.15, linewidth=0, label="barcode gap")
    if drawn or within is not None or between is not None:
        right.legend(loc="best")
        right.set_ylim(bottom=0)
    if not drawn:
        _no_data(right)


def _size_stats(fields: pd.DataFrame, field: str, orders: list[str]) -> list[dict]:
    stats = []
    for order in orders:
        row = fields[(fields["order"].astype(str) == order) & (fields["field"].astype(str) == field)]
        if row.empty:
            continue
        row = row.iloc[0]
        values = {key: _finite(row.get(key)) for key in ("p05", "p25", "median", "p75", "p95")}
        if any(v is None for v in values.values()):
            continue
        stats.append(
            {
                "label": f"{order} ({int(row['count']):,})",
                "whislo": values["p05"],
                "q1": values["p25"],
                "med": values["median"],
                "q3": values["p75"],
                "whishi": values["p95"],
                "fliers": [],
            }
        )
    return stats


def _size_fields(fig: Figure, tables: dict, summary: dict) -> None:
    axes = fig.subplots(2, 3, sharex="col", gridspec_kw={"height_ratios": [1, 1.3]})
    fig.suptitle("Size fields: all records (top) and the largest orders (p05–p95 whiskers, p25–p75 box, median)")
    histogram, fields = _table(tables, "size_histogram"), _table(tables, "size_fields")
    orders: list[str] = []
    if not fields.empty:
        # The orders with the most records measured, the same rows in every panel.
        per_order = fields[fields["order"].astype(str) != "all"].groupby("order", sort=True)["count"].max()
        orders = per_order.sort_values(ascending=False, kind="stable").head(TOP_ORDERS).index.astype(str).tolist()
    first_labels: list[str] = []
    for column, (field, xlabel, log) in enumerate(SIZE_FIELDS):
        top, bottom = axes[0, column], axes[1, column]
        top.set_title(field)
        top.set_ylabel("Records")
        bottom.set_xlabel(xlabel)
        part = histogram
        if not histogram.empty:
            part = histogram[(histogram["field"].astype(str) == field) & (histogram["order"].astype(str) == "all")]
            part = part.sort_values("bin_left", kind="stable")
        outside = 0
        if not part.empty:  # the tails beyond the range (rows with an open side) are said, not drawn as bins
            bounded = np.isfinite(_numeric(part, "bin_left")) & np.isfinite(_numeric(part, "bin_right"))
            outside = int(np.nansum(_numeric(part, "records")[~bounded]))
            part = part[bounded]
        if log and not part.empty:
            part = part[_numeric(part, "bin_left") > 0]
        if part.empty or np.nansum(_numeric(part, "records")) <= 0:
            _no_data(top)
        else:
            left, right = _numeric(part, "bin_left"), _numeric(part, "bin_right")
            top.bar(left, _numeric(part, "records"), width=right - left, align="edge", color=RELEASE, linewidth=0)
            if outside:
                top.text(
                    0.98,
                    0.95,
                    f"{outside:,} outside the range shown",
                    transform=top.transAxes,
                    ha="right",
                    va="top",
                    fontsize=7,
                    color=NOTE,
                )
        stats = _size_stats(fields, field, orders) if not fields.empty else []
        if log:
            stats = [s for s in stats if s["whislo"] > 0]
        if stats:
            bottom.bxp(
                stats[::-1],  # largest order on top
                orientation="horizontal",
                showfliers=False,
                patch_artist=True,
                boxprops={"facecolor": PALETTE[5], "edgecolor": PALETTE[0]},
                medianprops={"color": PALETTE[3], "linewidth": 1.5},
                whiskerprops={"color": PALETTE[0]},
                capprops={"color": PALETTE[0]},
            )
        else:
            _no_data(bottom)
            bottom.set_yticks([])
        if log and (not part.empty or stats):
            top.set_xscale("log")
        labels = [s["label"] for s in stats]
        if column == 0:
            bottom.set_ylabel("Order (records measured)")
            first_labels = labels
        elif stats and labels == first_labels:
            bottom.tick_params(labelleft=False)  # the same rows as the first column: say them once


DRAW: dict[str, Callable[[Figure, dict, dict], None]] = {
    "splits": _splits,
    "label_completeness": _label_completeness,
    "records_per_order": _records_per_order,
    "records_per_family": _records_per_family,
    "species_long_tail": _species_long_tail,
    "bins_species": _bins_species,
    "countries": _countries,
    "site_map": _site_map,
    "genetic_distances": _genetic_distances,
    "size_fields": _size_fields,
}


def make_figure(name: str, tables: dict[str, pd.DataFrame], summary: dict | None = None) -> Figure:
    """One figure, laid out, on its own Agg canvas (call inside `_style()` so the rcParams apply to its artists)."""
    fig = Figure(figsize=SIZES[name], dpi=DPI)
    FigureCanvasAgg(fig)
    DRAW[name](fig, tables, summary or {})
    plain_log_ticks(fig)
    fig.tight_layout()
    return fig


def plain_log_ticks(fig: Figure) -> None:
    """Every log axis of ``fig`` labelled in plain numbers: matplotlib's own labels are formulas, drawn as their
    source (`$\\mathdefault{10^{2}}$`) with `text.parse_math` off. Minor ticks are labelled where matplotlib
    would label them (an axis spanning about a decade or less holds no power of ten to label)."""
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            if axis.get_scale() == "log":
                axis.set_major_formatter(ticker.FuncFormatter(_log_tick))
                axis.set_minor_formatter(_PlainMinorLogFormatter(labelOnlyBase=False))


class _PlainMinorLogFormatter(ticker.LogFormatter):
    """matplotlib's choice of which minor ticks to label, each in plain numbers."""

    def __call__(self, value, position=None):
        return _log_tick(value, position) if super().__call__(value, position) else ""


def _log_tick(value: float, _position) -> str:
    """A log axis's tick as plain text: 1, 10, 1,000, 20,000, 0.1."""
    return f"{value:,.0f}" if value >= 1 else f"{value:g}"


def draw_figures(tables: dict[str, pd.DataFrame], summary: dict, outdir) -> list[Path]:
    """Write `outdir/NAME.png` (DPI) and `outdir/NAME.svg` for every name in FIGURES; return the paths, sorted."""
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    paths = []
    with _style():
        for name in FIGURES:
            fig = make_figure(name, tables, summary)
            png, svg = outdir / f"{name}.png", outdir / f"{name}.svg"
            fig.savefig(png, format="png", dpi=DPI, metadata=PNG_METADATA)
            fig.savefig(svg, format="svg", metadata=SVG_METADATA)
            paths += [png, svg]
    return sorted(paths)
