"""The dataset card: ``README.md`` at the release root, in the Hugging Face card format.

A YAML header (licence, task categories, tags, size category, one config per table with its Parquet files per
split) and then what a user reads before trusting the data: the split table, label completeness next to the
published BIOSCAN-5M figures, the statistics figures with what each shows, the split protocol, where the
records came from (the accounting and the provenance files) and the citation. Everything is read from files
the release already holds or the statistics stage wrote (``metadata/stats/``: ``stats.json`` and its CSV
tables), so the card says what the release contains, not what the code expects.
"""

from __future__ import annotations

import csv
import json
import math
import re
from pathlib import Path

from bioscan_rebuild.core.io import csv_header
from bioscan_rebuild.core.params import ExportOptions
from bioscan_rebuild.core.schemas import SPLITS
from bioscan_rebuild.export.layout import (
    CONFIG,
    CROISSANT_PATH,
    CSV_PATH,
    HDF5_PATH,
    IMAGES_DIR,
    IMAGES_PARQUET_DIR,
    JSONLD_DIR,
    PARQUET_DIR,
    PROVENANCE,
    ROOT,
)
from bioscan_rebuild.export.spool import FLOAT_COLUMNS, INT_COLUMNS

CARD = "README.md"  # beside ROOT, as the Hugging Face Hub reads it
STATS_DIR = "metadata/stats"  # under ROOT: the statistics stage's tables and figures

# Hugging Face licence ids of the IRIs a release is likely to carry; anything else is "other" + its link.
HF_LICENCES = {
    "https://creativecommons.org/licenses/by/3.0/": "cc-by-3.0",
    "https://creativecommons.org/licenses/by/4.0/": "cc-by-4.0",
    "https://creativecommons.org/licenses/by-sa/4.0/": "cc-by-sa-4.0",
    "https://creativecommons.org/licenses/by-nc/4.0/": "cc-by-nc-4.0",
    "https://creativecommons.org/licenses/by-nc-sa/4.0/": "cc-by-nc-sa-4.0",  # BIOSCAN's photos
    "https://creativecommons.org/publicdomain/zero/1.0/": "cc0-1.0",
}

# Figure file stem -> what it shows (the statistics stage draws them: ``stats.figures``).
FIGURES = {
    "splits": "Records per split (log scale): the closed-world splits are small beside pretrain.",
    "label_completeness": "Share of records labelled at each rank, beside the published BIOSCAN-5M shares.",
    "records_per_order": "The 20 largest orders by records (log scale): the class imbalance at order level.",
    "records_per_family": "The 20 largest families by records (log scale).",
    "species_long_tail": "Records per species against the species' rank (log-log): the long tail.",
    "bins_species": "BINs per species and species per BIN: how far BINs and species names agree.",
    "countries": "The 20 countries with the most records (log scale).",
    "site_map": "Collection sites over the Natural Earth 1:110m land (public domain), marker size ~ log records.",
    "genetic_distances": (
        "Mash distances (k = 12) between the DNA barcodes of seeded random pairs: within species, genus and order, "
        "between orders; and within a BIN vs between BINs of one genus (the barcode gap)."
    ),
    "size_fields": "image_measurement_value, area_fraction and scale_factor, over all records and per large order.",
}

CITATION = """@inproceedings{bioscan5m,
    title={{BIOSCAN-5M}: A Multimodal Dataset for Insect Biodiversity},
    booktitle={Advances in Neural Information Processing Systems},
    author={Zahra Gharaee and Scott C. Lowe and ZeMing Gong and Pablo Millan Arias
        and Nicholas Pellegrino and Austin T. Wang and Joakim Bruslund Haurum
        and Iuliia Zarubiieva and Lila Kari and Dirk Steinke and Graham W. Taylor
        and Paul Fieguth and Angel X. Chang
    },
    editor={A. Globerson and L. Mackey and D. Belgrave and A. Fan and U. Paquet and J. Tomczak and C. Zhang},
    pages={36285--36313},
    publisher={Curran Associates, Inc.},
    year={2024},
    volume={37},
}"""


def size_category(n: int) -> str:
    """The Hub's size_categories bucket of ``n`` records."""
    bounds = [(1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M")]
    bounds += [(10_000_000, "1M<n<10M"), (100_000_000, "10M<n<100M"), (1_000_000_000, "100M<n<1B")]
    bounds += [(10**10, "1B<n<10B"), (10**11, "10B<n<100B"), (10**12, "100B<n<1T")]
    return next((name for bound, name in bounds if n < bound), "n>1T")


def _read_csv(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def _number(text) -> str:
    """A table cell: thousands separators for counts, '—' for a missing value."""
    if text is None or text == "":
        return "—"
    value = float(text)
    if math.isnan(value):
        return "—"
    return f"{int(value):,}" if value.is_integer() else f"{value:,.2f}".rstrip("0").rstrip(".")


def hf_licence(iri: str) -> str | None:
    """The Hugging Face id of a licence IRI, however the IRI is spelt (http or https, with or without ``www.``,
    the trailing slash, ``legalcode`` or ``deed.en``); None for a licence it has no id for."""
    spelt = re.sub(r"^https?://(www\.)?", "", iri.strip().lower())
    spelt = re.sub(r"/(legalcode|deed)(\.[a-z-]+)?$", "", spelt.rstrip("/")).rstrip("/")
    return next((hf for known, hf in HF_LICENCES.items() if known.removeprefix("https://").rstrip("/") == spelt), None)


def _yaml_text(text: str) -> str:
    """``text`` as a YAML double-quoted scalar, in ASCII: JSON's escapes, but a character beyond the BMP as YAML's
    ``\\U`` escape (JSON's surrogate pair reads back as two lone surrogates, which no UTF-8 writer accepts)."""

    def joined(pair: re.Match) -> str:
        high, low = int(pair.group(1), 16), int(pair.group(2), 16)
        return f"\\U{0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00):08x}"

    return re.sub(r"\\u(d[89ab][0-9a-f]{2})\\u(d[c-f][0-9a-f]{2})", joined, json.dumps(text))


def _yaml_header(root: Path, options: ExportOptions, records: int) -> list[str]:
    licence = hf_licence(options.licence)
    lines = ["---", f"license: {licence or 'other'}"]
    if licence is None:
        lines.append(f"license_link: {_yaml_text(options.licence)}")
    lines += [
        f"pretty_name: {_yaml_text(options.name)}",
        "task_categories:",
        "- image-classification",
        "- zero-shot-classification",
        "tags:",
        *(f"- {tag}" for tag in ("biology", "biodiversity", "insects", "dna-barcodes", "taxonomy", "bioscan")),
        "size_categories:",
        f"- {size_category(records)}",
    ]
    configs = []
    for config, folder in (("metadata", PARQUET_DIR), ("images", IMAGES_PARQUET_DIR)):
        present = [s for s in SPLITS if any((root / folder).glob(f"{s}-*.parquet"))]
        if not present:
            continue
        configs += [f"- config_name: {config}", *(["  default: true"] if config == "metadata" else []), "  data_files:"]
        for split in present:
            configs += [f"  - split: {split}", f"    path: {ROOT}/{folder}/{split}-*.parquet"]
    features = []
    if "- config_name: metadata" not in configs and (root / CSV_PATH).is_file():
        # no metadata Parquet: the CSV, every split in one table (its split column tells them apart); with no
        # config at all `datasets` reads every file of the release, croissant.json too, and fails; beside the
        # images Parquet alone, the metadata had no config
        csv_config = ["- config_name: metadata", "  default: true", "  data_files:"]
        csv_config += [f"  - split: {CSV_SPLIT}", f"    path: {ROOT}/{CSV_PATH}"]
        # read as the card tells pandas to: "NA", "nan", "null" are text (a province, a sampleid), blank is missing
        configs = [*csv_config, "  keep_default_na: false", "  na_values:", '  - ""', *configs]
        # each column's type, or `datasets` guesses them from the first 10,000 rows: pretrain's, whose species
        # are all blank, so the first named species failed to load as a number
        features = ["dataset_info:", "  config_name: metadata", "  features:"]
        for name in csv_header(root / CSV_PATH):
            features += [f"  - name: {_yaml_text(name)}", f"    dtype: {_csv_dtype(name)}"]
    lines += ["configs:", *configs] if configs else []
    lines += features
    lines.append("---")
    return lines


def _empty_splits(empty: list[str], formats: set[str], root: Path) -> list[str]:
    """What a split without records looks like in each format (a loop over the eight split names meets it)."""
    if not empty:
        return []
    names = ", ".join(f"`{split}`" for split in empty)
    said = [f"{'This split has' if len(empty) == 1 else 'These splits have'} no records in this release: {names}."]
    if "hdf5" in formats:
        said.append("The HDF5 file holds an empty group for each.")
    if "parquet" in formats or (root / IMAGES_PARQUET_DIR).is_dir():
        said.append(
            "They have no Parquet files and no Hugging Face split (`datasets` cannot load a split of no rows): "
            "`load_dataset(..., split=...)` names the splits there are."
        )
    return ["", " ".join(said)]


def _formats_present(root: Path) -> set[str]:
    """The formats whose files this release holds (``export.formats`` may name a few): the card names no other."""
    present = {
        "parquet": any((root / PARQUET_DIR).glob("*.parquet")),
        "jsonld": any((root / JSONLD_DIR).glob("*")),
        "hdf5": (root / HDF5_PATH).is_file(),
        "images": (root / IMAGES_DIR).is_dir() or (root / IMAGES_PARQUET_DIR).is_dir(),
        "croissant": (root / CROISSANT_PATH).is_file(),
    }
    return {name for name, here in present.items() if here}


def _photo_less(accounting: dict, records: int, formats: set[str]) -> list[str]:
    """A paragraph on the released records without a photo (a build that does not require one), if any: the
    published release has none, so a loader of its images fails on them."""
    photo_less = records - int(accounting.get("released", {}).get("images", records))
    if photo_less <= 0:
        return []
    held = ["the image folders and the `images` config hold no file for them"] if "images" in formats else []
    held += ["the HDF5 file holds an image of 0 bytes for each"] if "hdf5" in formats else []
    text = (
        f"{photo_less:,} of the records have no photo (built with `ingest.require_images: false`): their image "
        f"columns are empty{''.join(f', {part}' for part in held[:-1])}{f' and {held[-1]}' if held else ''}."
    )
    if "images" in formats:  # a release without image files has no image loader to fail
        text += (
            " The published release has no such record, so a loader of its images (`bioscan-dataset`'s "
            "`BIOSCAN5M` with images) fails on them: leave out the records whose `image_measurement_value` is empty."
        )
    return [text, ""]


def _copies(formats: set[str]) -> str:
    """The card's sentences on the other formats, for those this release holds."""
    copies = [name for key, name in (("parquet", "Parquet"), ("jsonld", "JSON-LD")) if key in formats]
    text = ""
    if copies:
        text += f" The {' and '.join(copies)} cop{'ies hold' if len(copies) > 1 else 'y holds'} the same values"
        text += ";" if "hdf5" in formats else "."
    if "hdf5" in formats:
        text += (" the" if copies else " The") + (
            " HDF5 file holds the labels, DNA barcode, BIN and image of each record (an image of 0 bytes: none)."
        )
    if "croissant" in formats:
        text += (
            " mlcroissant reads the CSV-backed record sets of `croissant.json` (`metadata` and the side tables) with "
            "pandas' defaults, which this cannot be set for: there `NA` comes back missing and number-like text as "
            "a number"
            + ("; its `parquet_metadata` record set holds the stored values." if "parquet" in formats else ".")
        )
    return text


CSV_SPLIT = "all_splits"  # the Hugging Face split of a release whose only table is the CSV


def _csv_dtype(column: str) -> str:
    """A CSV column's Hugging Face type: numbers as float64 (a blank cell is missing, which an integer type
    refuses), ``inferred_ranks`` (never blank) as the Parquet holds it, the rest text."""
    if column == "inferred_ranks":
        return "uint8"
    return "float64" if column in (*FLOAT_COLUMNS, *INT_COLUMNS) else "string"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header), *("| " + " | ".join(r) + " |" for r in rows)]


def _delivery_batches(accounting: dict) -> int:
    """Batches delivered: the accounting has an ``export:{batch}`` and an ``images:{batch}`` entry for each."""
    return len({key.partition(":")[2] or key for key in accounting.get("batches", {})})


def write_card(release_dir, options: ExportOptions, accounting: dict, diff_summary: dict | None = None) -> Path:
    """Write ``release_dir/README.md`` from the release's own files (see the module docstring)."""
    path = Path(release_dir) / CARD
    path.write_text(card_text(release_dir, options, accounting, diff_summary), encoding="utf-8")
    return path


def _markers(root: Path) -> str:
    """The barcodes' marker as the build's resolved config (``ingest.markers``) has it; nothing where the release
    ships no config, so the card claims no marker it cannot know."""
    try:
        markers = json.loads((root / CONFIG.path).read_text()).get("ingest", {}).get("markers")
    except (OSError, ValueError, AttributeError):
        return ""
    if not isinstance(markers, list) or not markers or not all(isinstance(m, str) for m in markers):
        return ""
    if len(markers) == 1:
        return f" ({markers[0]})"
    listed = ", ".join(markers)
    return (
        f" (of the markers {listed}, as `ingest.markers` lists them: a specimen with rows of several keeps the "
        "first-listed marker's; `records_lineage.csv` names each record's marker (`marker_code`) and the export row "
        "its barcode came from)"
    )


def card_text(release_dir, options: ExportOptions, accounting: dict, diff_summary: dict | None = None) -> str:
    """The card of the release in ``release_dir`` (the audit makes it again to compare)."""
    release_dir = Path(release_dir)
    root = release_dir / ROOT
    stats_dir = root / STATS_DIR
    stats = json.loads((stats_dir / "stats.json").read_text()) if (stats_dir / "stats.json").is_file() else {}
    records = int(accounting.get("released", {}).get("records", stats.get("records", 0)))
    formats = _formats_present(root)
    lines = _yaml_header(root, options, records)
    lines += [
        "",
        f"# {options.name} (version {options.version})",
        "",
        f"{records:,} insect specimens, each with a DNA barcode{_markers(root)}, a BOLD Barcode Index Number "
        "where BOLD assigned one, a taxonomic label to the deepest rank known, collection-site geography and, where "
        "photographed, a microscope photo with its crop and size fields; partitioned into the 8 BIOSCAN-5M splits. "
        "Rebuilt from BOLD exports and imager photos by the `bioscan-rebuild` workflow, in the layout of BIOSCAN-5M "
        "(Gharaee et al., NeurIPS 2024): "
        + (
            f"`bioscan-dataset`, the Hugging Face `datasets` library and Croissant (`{ROOT}/{CROISSANT_PATH}`)"
            if "croissant" in formats
            else "`bioscan-dataset` and the Hugging Face `datasets` library"
        )
        + " read it as they read the published release.",
        "",
        *_photo_less(accounting, records, formats),
        "## Splits",
        "",
    ]
    split_rows = _read_csv(stats_dir / "split_table.csv")
    if split_rows:
        columns = ["split", "records", "species", "barcodes", "bins"]
        lines += _table(columns, [[r["split"], *(_number(r[c]) for c in columns[1:])] for r in split_rows])
        lines += _empty_splits([r["split"] for r in split_rows if _number(r["records"]) == "0"], formats, root)
    else:
        lines.append("(no statistics in this release)")
    completeness = _read_csv(stats_dir / "label_completeness.csv")
    if completeness:
        lines += [
            "",
            "## Label completeness",
            "",
            "Per rank: distinct categories, labelled records, their share, and the imbalance ratio (records of the "
            "largest category / the smallest). The published columns are BIOSCAN-5M's (5,150,850 records); "
            "— where the paper gives no figure.",
            "",
        ]
        header = ["rank", "categories", "labelled", "labelled %", "imbalance ratio"]
        header += ["published categories", "published labelled %"]
        keys = ["categories", "labelled", "labelled_pct", "imbalance_ratio", "published_categories"]
        keys.append("published_labelled_pct")
        lines += _table(header, [[r["rank"], *(_number(r.get(k)) for k in keys)] for r in completeness])
    figures = [name for name in FIGURES if (stats_dir / "figures" / f"{name}.png").is_file()]
    if figures:
        lines += ["", "## Figures", ""]
        for name in figures:
            lines += [f"### {name.replace('_', ' ').capitalize()}", "", FIGURES[name], ""]
            lines.append(f"![{name}]({ROOT}/{STATS_DIR}/figures/{name}.png)")
            lines.append("")
        genetics, gap = stats.get("genetics") or {}, stats.get("barcode_gap") or {}
        if genetics:
            drawn = genetics.get("pairs") or {}
            counts = ", ".join(f"{name.replace('_', ' ')} {count:,}" for name, count in drawn.items())
            text = (
                f"Genetic distances: {genetics.get('method', '?')} distance, k = {genetics.get('k', '?')}, "
                f"up to {genetics.get('pairs_per_comparison', '?')} seeded pairs per comparison (seed "
                f"{genetics.get('seed', '?')}){f'; distinct pairs: {counts}' if counts else ''}; see "
                f"`{ROOT}/{STATS_DIR}/genetic_distances.csv`."
            )
            if gap.get("within_bin_p95") is not None and gap.get("between_bins_p05") is not None:
                text += (
                    f" Barcode gap: 95 % of within-BIN pairs lie below {gap['within_bin_p95']:.4f}, 95 % of "
                    f"pairs of BINs of one genus above {gap['between_bins_p05']:.4f} (random congeneric BINs, not "
                    "nearest neighbours: the gap to the nearest BIN may be smaller)."
                )
            lines += [text, ""]
    lines += [
        "## Split protocol",
        "",
        "The published BIOSCAN-5M partitioning protocol, step for step: records without a species label go to "
        "`pretrain`; described species are split into the seen sets (`train`, `val`, `test`); species whose names "
        "are placeholders (not yet described) go to the unseen sets (`key_unseen`, `val_unseen`, `test_unseen`) "
        "where their genus is a described species' genus and they have at least 8 such records, else to "
        "`other_heldout`. A DNA barcode drawn into a held-out split (`val`, `test`, "
        "`val_unseen`, `test_unseen`) takes every record carrying it; other barcodes can be shared by `train`, "
        "`key_unseen`, `other_heldout` and `pretrain`. A "
        "versioned release keeps every earlier record in its split (frozen) and assigns only new records, so a "
        "`pretrain` record that a later version labels to species stays in `pretrain` with its label (the split "
        "table counts the species there): drop those labels where pretraining must see none; and a record of a "
        "seen or unseen split whose species a later version drops keeps its split without one (the split table "
        "counts fewer species there). "
        "`metadata/split_history.csv` holds every record any version released, with its split and its barcode's "
        "`barcode_key` (md5 of the barcode without end `N`s), and in `held_barcode_keys` the keys of barcodes an "
        "earlier version released it with that it no longer carries (failed by QC, or corrected): the next version "
        "freezes from it, so a record left out of one version (a late photo, a withdrawn delivery) returns to its "
        "split, and its barcodes, old and new, still hold new records to that split. "
        "Records whose photo shows no specimen get no split and are listed in `metadata/rejects.csv`.",
        "",
        "In the CSV files an empty field is a missing value and any other text is a value: read them with "
        '`pandas.read_csv(path, keep_default_na=False, na_values=[""])` (R: `na = ""`), or a sample id or a '
        "province spelt `NA` or `null` reads as missing." + _copies(formats),
        "",
        "## Provenance",
        "",
    ]
    inputs, rejected = accounting.get("inputs", {}), accounting.get("rejected", {})
    lines += _table(
        ["", "records", "images"],
        [
            ["read", _number(inputs.get("records")), _number(inputs.get("images"))],
            ["rejected", _number(rejected.get("records")), _number(rejected.get("images"))],
            ["released", _number(records), _number(accounting.get("released", {}).get("images"))],
        ],
    )
    build = []  # named where shipped: a release built by hand may have neither (the audit holds the card to it)
    if (root / PROVENANCE.path).is_file():
        build.append(
            f"the build (every job's inputs, parameters and outputs, by sha256) in `{ROOT}/{PROVENANCE.path}` (PROV-O)"
        )
    if (root / CONFIG.path).is_file():
        build.append(f"the resolved configuration in `{ROOT}/{CONFIG.path}`")
    lines += [
        "",
        f"{_delivery_batches(accounting)} delivery batches. Every rejected record and photo is in "
        f"`{ROOT}/metadata/rejects.csv` with its reason; every released record's sources (batch, file, line, "
        f"photo hash) in `{ROOT}/metadata/records_lineage.csv`"
        + "".join(f"; {part}" for part in build)
        + ". `MANIFEST.json` holds every file's size and sha256 (`bioscan-rebuild audit` checks a copy against it).",
    ]
    if diff_summary:
        lines += [
            "",
            "## Changes since the previous version",
            "",
            f"Every added, removed, changed and moved record, field by field with the reason, is in "
            f"`{ROOT}/metadata/release_diff.csv`; the counts:",
            "",
        ]
        lines += _table(["", ""], [[k, json.dumps(v, sort_keys=True)] for k, v in sorted(diff_summary.items())])
    lines += ["", "## Citation", "", "```bibtex", CITATION, "```", ""]
    return "\n".join(lines)
