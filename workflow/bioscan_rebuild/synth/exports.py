"""Deterministic generator of realistic raw deliveries: BOLD exports + imager photos.

``generate_sample`` writes what a lab receives: per batch a BOLD export (the real column layouts
that ``ingest/bold.py`` reads, with their real quirks: literal ``None``, ``not_classified``, CRLF,
``[lat, lon]`` / ``(lat,lon)`` coordinates, lower-case bases, ``-`` padding, ``N`` runs, IUPAC
codes, empty sequences, extra marker rows, placeholder species, non-insects, missing BINs) and
a folder of 1024x768 well photos with known ground truth. It also plants one of each fault the
ingest stage must catch and lists them, with the expected reject reason, in ``faults.json``.

Metadata is generated column-wise with numpy and written with Arrow, so millions of rows take
seconds (``--no-images`` for benchmarks). ``generate_export`` writes one large export chunk by chunk in bounded
memory, and makes later deliveries: processids under another prefix or id offset, and redeliveries of an earlier
export's records with new identifications.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from bioscan_rebuild.core.errors import InputError
from bioscan_rebuild.core.schemas import RANKS
from bioscan_rebuild.synth import ID_OFFSET, ID_PREFIX, LAYOUTS

V4_COLUMNS = [
    "processid",
    "sampleid",
    "recordID",
    "catalognum",
    "fieldnum",
    "institution_storing",
    "collection_code",
    "bin_uri",
    "phylum_taxID",
    "phylum_name",
    "class_taxID",
    "class_name",
    "order_taxID",
    "order_name",
    "family_taxID",
    "family_name",
    "subfamily_taxID",
    "subfamily_name",
    "genus_taxID",
    "genus_name",
    "species_taxID",
    "species_name",
    "subspecies_taxID",
    "subspecies_name",
    "identification_provided_by",
    "identification_method",
    "identification_reference",
    "tax_note",
    "voucher_status",
    "tissue_type",
    "collection_event_id",
    "collectors",
    "collectiondate_start",
    "collectiondate_end",
    "collectiontime",
    "collection_note",
    "site_code",
    "sampling_protocol",
    "lifestage",
    "sex",
    "reproduction",
    "habitat",
    "associated_specimens",
    "associated_taxa",
    "extrainfo",
    "notes",
    "lat",
    "lon",
    "coord_source",
    "coord_accuracy",
    "elev",
    "depth",
    "elev_accuracy",
    "depth_accuracy",
    "country",
    "province_state",
    "region",
    "sector",
    "exactsite",
    "image_ids",
    "image_urls",
    "media_descriptors",
    "captions",
    "copyright_holders",
    "copyright_years",
    "copyright_licenses",
    "copyright_institutions",
    "photographers",
    "sequenceID",
    "markercode",
    "genbank_accession",
    "nucleotides",
    "trace_ids",
    "trace_names",
    "trace_links",
    "run_dates",
    "sequencing_centers",
    "directions",
    "seq_primers",
    "marker_codes",
]
BCDM2023_COLUMNS = [
    "processid",
    "sampleid",
    "specimenid",
    "museumid",
    "fieldid",
    "inst",
    "bin_uri",
    "identification",
    "funding_src",
    "kingdom",
    "phylum",
    "class",
    "order",
    "family",
    "subfamily",
    "genus",
    "species",
    "subspecies",
    "identified_by",
    "voucher_type",
    "collectors",
    "collection_date",
    "collection_date_accuracy",
    "life_stage",
    "sex",
    "reproduction",
    "extrainfo",
    "notes",
    "coord",
    "coord_source",
    "coord_accuracy",
    "elev",
    "depth",
    "elev_accuracy",
    "depth_accuracy",
    "country",
    "province",
    "country_iso",
    "region",
    "sector",
    "site",
    "collection_time",
    "habitat",
    "collection_note",
    "associated_taxa",
    "associated_specimen",
    "species_reference",
    "identification_method",
    "recordset_code_arr",
    "gb_acs",
    "marker_code",
    "nucraw",
    "sequence_run_site",
    "processid_minted_date",
    "sequence_upload_date",
    "identification_rank",
]
BCDM2024_COLUMNS = [
    "processid",
    "sampleid",
    "fieldid",
    "museumid",
    "record_id",
    "specimenid",
    "processid_minted_date",
    "bin_uri",
    "bin_created_date",
    "collection_code",
    "inst",
    "sovereign_inst",
    "taxid",
    "kingdom",
    "phylum",
    "class",
    "order",
    "family",
    "subfamily",
    "tribe",
    "genus",
    "species",
    "subspecies",
    "species_reference",
    "identification",
    "identification_method",
    "identification_rank",
    "identified_by",
    "identifier_email",
    "taxonomy_notes",
    "sex",
    "reproduction",
    "life_stage",
    "short_note",
    "notes",
    "voucher_type",
    "tissue_type",
    "specimen_linkout",
    "associated_specimens",
    "associated_taxa",
    "collectors",
    "collection_date_start",
    "collection_date_end",
    "collection_event_id",
    "collection_time",
    "collection_notes",
    "geoid",
    "country/ocean",
    "country_iso",
    "province/state",
    "region",
    "sector",
    "site",
    "site_code",
    "coord",
    "coord_accuracy",
    "coord_source",
    "elev",
    "elev_accuracy",
    "depth",
    "depth_accuracy",
    "habitat",
    "realm",
    "biome",
    "ecoregion",
    "sampling_protocol",
    "nuc",
    "nuc_basecount",
    "insdc_acs",
    "funding_src",
    "marker_code",
    "primers_forward",
    "primers_reverse",
    "sequence_run_site",
    "sequence_upload_date",
    "bold_recordset_code_arr",
]
LAYOUT_COLUMNS = dict(zip(LAYOUTS, (V4_COLUMNS, BCDM2023_COLUMNS, BCDM2024_COLUMNS), strict=True))

# (order, share, families); genera and species are made up below, from syllables.
ORDERS = [
    ("Diptera", 0.46, ["Cecidomyiidae", "Chironomidae", "Phoridae", "Sciaridae", "Ceratopogonidae", "Psychodidae"]),
    ("Hymenoptera", 0.20, ["Platygastridae", "Diapriidae", "Braconidae", "Ichneumonidae", "Mymaridae"]),
    ("Hemiptera", 0.10, ["Cicadellidae", "Aphididae", "Miridae"]),
    ("Coleoptera", 0.08, ["Staphylinidae", "Curculionidae", "Chrysomelidae"]),
    ("Lepidoptera", 0.07, ["Gelechiidae", "Tortricidae", "Erebidae"]),
    ("Psocodea", 0.04, ["Ectopsocidae", "Lachesillidae"]),
    ("Thysanoptera", 0.03, ["Thripidae"]),
    ("Trichoptera", 0.02, ["Hydroptilidae"]),
]
NON_INSECTS = [("Arachnida", "Araneae", "Linyphiidae"), ("Collembola", "Entomobryomorpha", "Entomobryidae")]
PLACES = [
    ("Canada", "Ontario", 43.5, -80.2),
    ("Canada", "Alberta", 53.5, -113.5),
    ("Costa Rica", "Guanacaste", 10.8, -85.6),
    ("South Africa", "Western Cape", -33.9, 18.8),
    ("Australia", "Australian Capital Territory", -35.3, 149.1),
    ("Pakistan", "Punjab", 31.5, 74.3),
]
SYLLABLES = np.array(
    [
        "ba",
        "ca",
        "da",
        "fe",
        "ge",
        "hi",
        "la",
        "li",
        "mo",
        "na",
        "no",
        "pa",
        "pe",
        "ra",
        "ri",
        "sa",
        "te",
        "ti",
        "to",
        "ula",
        "us",
        "xe",
        "zo",
    ]
)
BASES = np.frombuffer(b"ACGT", dtype=np.uint8)
SPECIES_SHARE = 0.10
# Every UNDESCRIBED_EVERY-th species from UNDESCRIBED_OFFSET on (by abundance rank) has an interim name.
UNDESCRIBED_EVERY, UNDESCRIBED_OFFSET = 4, 1
SAMPLE_SPECIES_SHARE = 0.5
MAX_SPECIES_SHARE = 0.96  # the rest is left for the ranks above species and the missing labels
# records a sample needs (images: False/True) for its planted faults: two in the first batch, five with photos
MIN_SAMPLE_RECORDS = {False: 4, True: 8}
BARCODE_LENGTH = 658


def _names(rng: np.random.Generator, n: int, suffix: str, capital: bool) -> np.ndarray:
    """n distinct made-up Latin-looking names of 3 or 4 syllables (up to ~290k of them)."""
    k = len(SYLLABLES)
    three, four = k**3, k**4
    if n > three + four:
        raise ValueError(f"cannot make {n} distinct names")
    picks = rng.choice(three + four, n, replace=False)
    names = []
    for pick in picks:
        length, code = (3, pick) if pick < three else (4, pick - three)
        parts = []
        for _ in range(length):
            code, digit = divmod(code, k)
            parts.append(SYLLABLES[digit])
        name = "".join(parts) + suffix
        names.append(name.capitalize() if capital else name)
    return np.array(names, dtype=object)


def _filled(n: int, value: str) -> np.ndarray:
    """An object array of n references to one string (np.full makes n copies of it: 50 bytes a cell)."""
    array = np.empty(n, dtype=object)
    array.fill(value)
    return array


def _bin_codes(rng: np.random.Generator, n: int) -> np.ndarray:
    letters = np.array(list("ABCDEFGHIJKLMNOPQRSTUVWXYZ"))
    codes, seen = [], set()
    while len(codes) < n:
        code = "BOLD:" + "".join(rng.choice(letters, 3)) + f"{rng.integers(0, 10000):04d}"
        if code not in seen:
            seen.add(code)
            codes.append(code)
    return np.array(codes, dtype=object)


@dataclass
class Taxonomy:
    """What all records of one export share: the tree and its names; for a chunked export also the BIN codes,
    the per-BIN base sequences and the processid numbers (otherwise drawn with the specimens, as they always were).
    """

    order_names: list[str]
    family_order: np.ndarray
    family_names: list[str]
    subfamily_names: np.ndarray
    genus_family: np.ndarray
    genus_names: np.ndarray
    species_genus: np.ndarray
    epithets: np.ndarray
    species_names: np.ndarray
    bins: np.ndarray | None = None
    bin_bases: np.ndarray | None = None
    id_numbers: np.ndarray | None = None


def _draw_tree(rng: np.random.Generator, n: int) -> Taxonomy:
    """Genera, species and their names, sized for n records."""
    n_species = max(40, n // 60)
    n_genera = max(15, n_species // 3)
    # Taxonomy tree: genus -> family -> order.
    order_names = [o for o, _, _ in ORDERS]
    family_order, family_names = [], []
    for i, (_, _, families) in enumerate(ORDERS):
        family_names += families
        family_order += [i] * len(families)
    family_order = np.array(family_order)
    order_share = np.array([s for _, s, _ in ORDERS])
    family_weight = order_share[family_order] / np.bincount(family_order)[family_order]
    genus_family = rng.choice(len(family_names), n_genera, p=family_weight / family_weight.sum())
    genus_names = _names(rng, n_genera, "", capital=True)
    species_genus = rng.integers(0, n_genera, n_species)
    epithets = _names(rng, n_species, "", capital=False)
    # Undescribed species carry one interim name on all their records, as BOLD's curators give them. Each sits
    # in the genus of the next more abundant (described) species, so with enough records it becomes an
    # open-world ("unseen") species of the splits.
    undescribed = np.arange(UNDESCRIBED_OFFSET, n_species, UNDESCRIBED_EVERY)
    species_genus[undescribed] = species_genus[undescribed - 1]
    species_names = np.array([f"{genus_names[g]} {e}" for g, e in zip(species_genus, epithets)], dtype=object)
    for i, k in enumerate(undescribed):
        interim = f"sp. {k}BIOUG" if i % 2 else f"Malaise{k:04d}"
        species_names[k] = f"{genus_names[species_genus[k]]} {interim}"
    subfamily_names = np.array([f"{f[:-4]}inae" for f in family_names], dtype=object)
    return Taxonomy(
        order_names=order_names,
        family_order=family_order,
        family_names=family_names,
        subfamily_names=subfamily_names,
        genus_family=genus_family,
        genus_names=genus_names,
        species_genus=species_genus,
        epithets=epithets,
        species_names=species_names,
    )


# Share of sites redrawn at each step down the tree (a redrawn site keeps its base 1 time in 4). Measured between
# BIN sequences (p-distance): sister BINs about 4 % apart, BINs of one genus 15 %, of one family 30 %, of one
# order 45 %, of two orders 75 % (unrelated); a record's variant adds 3 sites. Coarser than real COI above genus,
# but enough for the genetics statistics to have a structure to find.
DIVERGENCE = {"family": 0.20, "genus": 0.12, "species": 0.08, "bin": 0.03}


def _draw_bin_bases(rng: np.random.Generator, n_bins: int, taxonomy: Taxonomy) -> np.ndarray:
    """Each BIN's base sequence, evolved down the tree: order (random) -> family -> genus -> species -> BIN.
    ``rng`` gives what it always gave (one random sequence per BIN), so the draws after it stay the same; the
    mutations come from a generator seeded by those sequences."""
    independent = BASES[rng.integers(0, 4, (n_bins, BARCODE_LENGTH))]
    tree = np.random.default_rng(np.frombuffer(hashlib.sha256(independent.tobytes()).digest()[:16], np.uint64))

    def evolve(parents: np.ndarray, share: float) -> np.ndarray:
        children = parents.copy()
        redraw = tree.random(children.shape) < share
        children[redraw] = BASES[tree.integers(0, 4, int(redraw.sum()))]
        return children

    n_orders = int(taxonomy.family_order.max()) + 1
    orders = independent[np.arange(n_orders) % n_bins]
    families = evolve(orders[taxonomy.family_order], DIVERGENCE["family"])
    genera = evolve(families[taxonomy.genus_family], DIVERGENCE["genus"])
    species = evolve(genera[taxonomy.species_genus], DIVERGENCE["species"])
    return evolve(species[np.arange(n_bins) // 2], DIVERGENCE["bin"])  # BIN 2s and 2s + 1 are species s's


def _draw_id_numbers(rng: np.random.Generator, n: int, id_offset: int) -> np.ndarray:
    return rng.permutation(np.arange(id_offset, id_offset + n * 3))[:n]


def draw_taxonomy(n_records: int, seed: int = 0, id_offset: int = ID_OFFSET) -> Taxonomy:
    """The whole taxonomy of a chunked export of n_records, drawn once from the seed."""
    rng = np.random.default_rng(seed)
    taxonomy = _draw_tree(rng, n_records)
    n_bins = len(taxonomy.species_names) * 2
    taxonomy.bins = _bin_codes(rng, n_bins)
    taxonomy.bin_bases = _draw_bin_bases(rng, n_bins, taxonomy)
    taxonomy.id_numbers = _draw_id_numbers(rng, n_records, id_offset)
    return taxonomy


def draw_specimens(
    taxonomy: Taxonomy,
    rng: np.random.Generator,
    n: int,
    species_share: float = SPECIES_SHARE,
    prefix: str = ID_PREFIX,
    id_offset: int = ID_OFFSET,
    first: int = 0,
) -> dict[str, np.ndarray]:
    """Column arrays for records first .. first + n - 1 of an export (see ``generate_metadata``).

    What `taxonomy` leaves out (BINs, base sequences, id numbers) is drawn from `rng` where the single-call
    generator always drew it, so that ``generate_metadata`` keeps its exact output.
    """
    if not 0.0 < species_share <= MAX_SPECIES_SHARE:
        raise ValueError(f"species_share must be in (0, {MAX_SPECIES_SHARE}], got {species_share}")
    n_species = len(taxonomy.species_names)
    genus_names, epithets = taxonomy.genus_names, taxonomy.epithets
    # Long tail: Zipf-like abundance over species.
    weights = 1.0 / np.arange(1, n_species + 1) ** 1.1
    species = rng.choice(n_species, n, p=weights / weights.sum())
    genus = taxonomy.species_genus[species]
    family = taxonomy.genus_family[genus]
    order = taxonomy.family_order[family]

    # Which ranks carry a label (deeper ranks only when the shallower one does).
    depth = rng.random(n)
    has_family = depth < 0.96
    has_subfamily = depth < max(0.29, species_share)
    has_genus = depth < max(0.24, species_share)
    has_species = depth < species_share
    col = {
        "phylum": _filled(n, "Arthropoda"),
        "class": _filled(n, "Insecta"),
        "order": np.array(taxonomy.order_names, dtype=object)[order],
        "family": np.where(has_family, np.array(taxonomy.family_names, dtype=object)[family], None),
        "subfamily": np.where(has_subfamily, taxonomy.subfamily_names[family], None),
        "genus": np.where(has_genus, genus_names[genus], None),
        "species": np.where(has_species, taxonomy.species_names[species], None),
    }
    # Placeholder and open-nomenclature names, as real BOLD records carry them.
    placeholder = has_species & (rng.random(n) < 0.15)
    idx = np.flatnonzero(placeholder)
    forms = ["{g} sp. {c}", "{g} cf. {e}", "{g} aff. {e}", "{g} Malaise{c}", "{g} sp."]
    for k, i in enumerate(idx):
        g, e = genus_names[genus[i]], epithets[species[i]]
        col["species"][i] = forms[k % len(forms)].format(g=g, e=e, c=f"{rng.integers(1, 9)}{'TE' if k % 2 else 'ES'}")
    non_insect = rng.random(n) < 0.005
    for i in np.flatnonzero(non_insect):
        cls, odr, fam = NON_INSECTS[i % len(NON_INSECTS)]
        col["class"][i], col["order"][i], col["family"][i] = cls, odr, fam
        col["subfamily"][i] = col["genus"][i] = col["species"][i] = None
    # A few unlabelled at class/order level, and the 1M release's `not_classified` token.
    unlabelled = rng.random(n) < 0.003
    col["order"][unlabelled] = None
    col["family"][unlabelled] = None
    col["subfamily"][unlabelled] = col["genus"][unlabelled] = col["species"][unlabelled] = None
    nc = np.flatnonzero(~has_subfamily & has_family & (rng.random(n) < 0.05))
    col["subfamily"][nc] = "not_classified"

    # BINs: 1-2 per species; a few records without one.
    n_bins = n_species * 2
    bins = taxonomy.bins if taxonomy.bins is not None else _bin_codes(rng, n_bins)
    record_bin = species * 2 + (rng.random(n) < 0.2)
    col["bin_uri"] = np.where(rng.random(n) < 0.015, None, bins[record_bin])

    # Barcodes: variants of a per-BIN sequence, shared between records (Zipf over variants).
    variant = np.minimum(rng.zipf(1.6, n) - 1, 40)
    pair = record_bin.astype(np.int64) * 64 + variant
    unique_pairs, inverse = np.unique(pair, return_inverse=True)
    base = taxonomy.bin_bases if taxonomy.bin_bases is not None else _draw_bin_bases(rng, n_bins, taxonomy)
    seqs = base[unique_pairs // 64].copy()
    n_mut = np.where(unique_pairs % 64 == 0, 0, 3)
    rows = np.repeat(np.arange(len(unique_pairs)), n_mut)
    seqs[rows, rng.integers(0, BARCODE_LENGTH, len(rows))] = BASES[rng.integers(0, 4, len(rows))]
    seq_text = seqs.view(f"S{BARCODE_LENGTH}").ravel()[inverse].astype(object)
    seq_text = np.array([s.decode() for s in seq_text], dtype=object)
    quirk = rng.random(n)
    for i in np.flatnonzero(quirk < 0.10):  # real exports pad with alignment gaps
        seq_text[i] = "-" * int(rng.integers(1, 40)) + seq_text[i] + "-" * int(rng.integers(0, 30))
    for i in np.flatnonzero((quirk >= 0.10) & (quirk < 0.15)):
        seq_text[i] = "N" * int(rng.integers(1, 20)) + seq_text[i][20:] + "NNN"
    for i in np.flatnonzero((quirk >= 0.15) & (quirk < 0.17)):
        seq_text[i] = seq_text[i].lower()
    for i in np.flatnonzero((quirk >= 0.17) & (quirk < 0.18)):
        s = list(seq_text[i])
        s[100], s[300] = "Y", "R"
        seq_text[i] = "".join(s)
    no_seq = quirk >= 0.995
    seq_text[no_seq] = None
    col["nucleotides"] = seq_text
    col["marker_code"] = np.where(no_seq, None, "COI-5P").astype(object)

    place = rng.integers(0, len(PLACES), n)
    col["country"] = np.array([PLACES[p][0] for p in place], dtype=object)
    col["province_state"] = np.array([PLACES[p][1] for p in place], dtype=object)
    lat = np.array([PLACES[p][2] for p in place]) + rng.normal(0, 0.3, n)
    lon = np.array([PLACES[p][3] for p in place]) + rng.normal(0, 0.3, n)
    no_coord = rng.random(n) < 0.02
    col["lat"] = np.where(no_coord, None, np.char.mod("%.4f", lat)).astype(object)
    col["lon"] = np.where(no_coord, None, np.char.mod("%.4f", lon)).astype(object)

    if taxonomy.id_numbers is not None:
        numbers = taxonomy.id_numbers[first : first + n]
    else:
        numbers = _draw_id_numbers(rng, n, id_offset)
    col["processid"] = np.array([f"{prefix}{k}-{21 + k % 4}" for k in numbers], dtype=object)
    # Wells are numbered on from the id offset, so that deliveries with disjoint id ranges hold distinct sampleids.
    well_number = id_offset - ID_OFFSET + first + np.arange(n)
    plate = 60000 + well_number // 95
    well = well_number % 95
    col["sampleid"] = np.array(
        [f"BIOUG{p}-{'ABCDEFGH'[w // 12]}{w % 12 + 1:02d}" for p, w in zip(plate, well)], dtype=object
    )
    return col


def generate_metadata(
    n: int,
    seed: int = 0,
    prefix: str = ID_PREFIX,
    species_share: float = SPECIES_SHARE,
    id_offset: int = ID_OFFSET,
) -> dict[str, np.ndarray]:
    """Column arrays (object dtype, None = missing) for n specimens; canonical names.

    ``species_share`` is the fraction of records identified to species (BIOSCAN-5M: about 10 %). Processids are
    ``{prefix}{k}-{suffix}`` with distinct numbers k drawn from [id_offset, id_offset + 3 n).
    """
    rng = np.random.default_rng(seed)
    taxonomy = _draw_tree(rng, n)
    return draw_specimens(taxonomy, rng, n, species_share=species_share, prefix=prefix, id_offset=id_offset)


def _coord_text(lat, lon, layout: str):
    if lat is None or lon is None:
        return None
    return f"({lat},{lon})" if layout == "bcdm2023" else f"[{lat}, {lon}]"


def export_columns(col: dict[str, np.ndarray], layout: str, rng: np.random.Generator, extra_markers: float = 0.0):
    """Map canonical columns to a layout's full header; returns (columns dict, missing token).

    With `extra_markers` > 0 (bcdm2024 only), that share of specimens gets an extra non-COI row.
    """
    n = len(col["processid"])
    if layout == "bcdm2024" and extra_markers:
        extra = np.flatnonzero(rng.random(n) < extra_markers)
        order = np.sort(np.concatenate([np.arange(n), extra]))
        is_extra = np.zeros(len(order), bool)
        is_extra[1:] = order[1:] == order[:-1]
        col = {k: v[order] for k, v in col.items()}
        col["marker_code"] = np.where(
            is_extra, np.array(["28S", "CAD", "18S"], dtype=object)[np.arange(len(order)) % 3], col["marker_code"]
        )
        n = len(order)
    missing = "" if layout == "v4" else "None"
    out = {name: _filled(n, missing) for name in LAYOUT_COLUMNS[layout]}

    def put(name, values):
        filled = np.array(values, dtype=object)
        filled[np.equal(values, None)] = missing  # one shared string, not one per cell
        out[name] = filled

    if layout == "v4":
        mapping = {
            "processid": "processid",
            "sampleid": "sampleid",
            "bin_uri": "bin_uri",
            "phylum_name": "phylum",
            "class_name": "class",
            "order_name": "order",
            "family_name": "family",
            "subfamily_name": "subfamily",
            "genus_name": "genus",
            "species_name": "species",
            "nucleotides": "nucleotides",
            "markercode": "marker_code",
            "country": "country",
            "province_state": "province_state",
            "lat": "lat",
            "lon": "lon",
        }
    else:
        mapping = {name: name for name in ("processid", "sampleid", "bin_uri", *RANKS, "marker_code")}
        mapping["nucraw" if layout == "bcdm2023" else "nuc"] = "nucleotides"
        mapping["country" if layout == "bcdm2023" else "country/ocean"] = "country"
        mapping["province" if layout == "bcdm2023" else "province/state"] = "province_state"
        put("coord", np.array([_coord_text(a, b, layout) for a, b in zip(col["lat"], col["lon"])], dtype=object))
        put("kingdom", _filled(n, "Animalia"))
        if layout == "bcdm2024":
            put(
                "record_id",
                np.array(
                    [f"{p}.{m}" if m else None for p, m in zip(col["processid"], col["marker_code"])], dtype=object
                ),
            )
    for target, source in mapping.items():
        put(target, col[source])
    return out


# Arrow always quotes header names, BOLD never does: headers are written by hand, rows without one.
WRITE_OPTIONS = pacsv.WriteOptions(delimiter="\t", quoting_style="none", include_header=False)
CRLF_SLICE_ROWS = 10_000


def _header_line(names, crlf: bool) -> bytes:
    return ("\t".join(names) + ("\r\n" if crlf else "\n")).encode()


def _append_rows(sink, table: pa.Table, crlf: bool) -> None:
    """Data rows onto an open Arrow sink; CRLF line ends are made slice by slice, never on a whole export."""
    if not crlf:
        pacsv.write_csv(table, sink, write_options=WRITE_OPTIONS)
        return
    for start in range(0, table.num_rows, CRLF_SLICE_ROWS):
        buffer = pa.BufferOutputStream()
        pacsv.write_csv(table.slice(start, CRLF_SLICE_ROWS), buffer, write_options=WRITE_OPTIONS)
        sink.write(buffer.getvalue().to_pybytes().replace(b"\n", b"\r\n"))


def _string_table(columns: dict[str, np.ndarray]) -> pa.Table:
    return pa.table({k: pa.array(v, pa.string()) for k, v in columns.items()})


def write_export(
    columns: dict[str, np.ndarray], path: Path, crlf: bool = False, extra_lines: dict[int, str] | None = None
):
    """TSV with no quoting, as BOLD writes it. `extra_lines` inserts raw lines before data row i."""
    table = _string_table(columns)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not extra_lines:
        with pa.OSFile(str(path), "wb") as sink:  # streamed: large benchmark exports never sit in memory twice
            sink.write(_header_line(columns, crlf))
            _append_rows(sink, table, crlf)
        return
    sink = pa.BufferOutputStream()
    pacsv.write_csv(table, sink, write_options=WRITE_OPTIONS)
    data = _header_line(columns, crlf=False) + sink.getvalue().to_pybytes()
    lines = data.split(b"\n")
    for i in sorted(extra_lines, reverse=True):
        lines.insert(1 + i, extra_lines[i].encode())
    data = b"\n".join(lines)
    if crlf:
        data = data.replace(b"\n", b"\r\n")
    path.write_bytes(data)


def _select(col: dict[str, np.ndarray], index) -> dict[str, np.ndarray]:
    return {k: v[index] for k, v in col.items()}


# What a sample writes into its folder: all that a new sample there replaces.
SAMPLE_ENTRIES = ("sample-a", "sample-b", "ground_truth.csv", "faults.json")


def _clear_previous_sample(outdir: Path) -> None:
    """A sample written again into its folder replaces the last one (its photos of other processids stayed:
    orphans no fault list names, and photos of a smaller sample's missing records); a folder holding anything
    else is refused, untouched."""
    if not outdir.exists():
        return
    if not outdir.is_dir():
        raise InputError(f"{outdir}: not a folder: give a new or empty folder for the sample")
    others = sorted(entry.name for entry in outdir.iterdir() if entry.name not in SAMPLE_ENTRIES)
    if others:
        shown = ", ".join(others[:3]) + (" ..." if len(others) > 3 else "")
        raise InputError(f"{outdir}: holds {shown}, not a sample's files: give a new or empty folder")
    for name in SAMPLE_ENTRIES:
        entry = outdir / name
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        elif entry.exists() or entry.is_symlink():
            entry.unlink()


def generate_sample(
    outdir: str | Path,
    n_records: int = 300,
    seed: int = 0,
    images: bool = True,
    species_share: float = SAMPLE_SPECIES_SHARE,
    prefix: str = ID_PREFIX,
    id_offset: int = ID_OFFSET,
) -> dict:
    """Write two batches (a BCDM-2024 delivery and a later v4 delivery) with planted faults.

    The sample identifies more records to species than BIOSCAN-5M does (``SAMPLE_SPECIES_SHARE``), so that a
    few hundred records fill all eight splits.

    Returns the manifest also written to `outdir/faults.json`.
    """
    from bioscan_rebuild.core.pilsafe import encode_jpeg
    from bioscan_rebuild.synth.photos import draw_well_photo

    least = MIN_SAMPLE_RECORDS[images]
    if n_records < least:
        raise InputError(
            f"a sample {'with' if images else 'without'} images needs at least {least} records for its planted "
            f"faults, not {n_records}"
        )
    outdir = Path(outdir)
    _clear_previous_sample(outdir)
    rng = np.random.default_rng(seed)
    col = generate_metadata(n_records, seed=seed, species_share=species_share, prefix=prefix, id_offset=id_offset)
    n_a = int(n_records * 0.65)
    a, b = _select(col, np.arange(n_a)), _select(col, np.arange(n_a, n_records))
    faults = []

    # Batch b repeats two records of batch a: one unchanged, one with a changed identification.
    same, changed = a["processid"][0], a["processid"][1]
    b = {k: np.concatenate([v, a[k][:2]]) for k, v in b.items()}
    b["family"][-1] = "Sciaridae" if a["family"][1] != "Sciaridae" else "Phoridae"
    faults += [
        {
            "kind": "record",
            "processid": same,
            "reason": "duplicate_record",
            "what": "same record delivered again in batch b",
        },
        {
            "kind": "record",
            "processid": changed,
            "reason": "superseded",
            "what": "batch b changes its family: the redelivery wins (duplicate_policy latest)",
        },
    ]
    batches = {"sample-a": ("bcdm2024", a, False), "sample-b": ("v4", b, True)}
    manifest = {"seed": seed, "records": n_records, "batches": {}, "faults": faults}
    ground_truth = []
    for name, (layout, c, crlf) in batches.items():
        batch_dir = outdir / name
        columns = export_columns(c, layout, rng, extra_markers=0.05 if layout == "bcdm2024" else 0.0)
        n_rows = len(columns["processid"])
        extra = {}
        if name == "sample-a":
            # A row cut short (fewer fields) and a row with no processid.
            extra[n_rows // 2] = "\t".join([f"{prefix}BROKEN-21", "BIOUG99999-A01", "None"])
            blank = {k: "None" for k in LAYOUT_COLUMNS[layout]}
            blank.update(processid="None", marker_code="COI-5P", nuc="ACGT" * 10)
            extra[n_rows // 3] = "\t".join(blank[k] for k in LAYOUT_COLUMNS[layout])
            faults += [
                {
                    "kind": "record",
                    "processid": f"{prefix}BROKEN-21",
                    "reason": "unparseable_row",
                    "what": "row with 3 fields",
                },
                {"kind": "record", "processid": None, "reason": "missing_processid", "what": "processid is None"},
            ]
            faults += [
                {"kind": "record", "processid": pid, "reason": "unsupported_marker", "what": f"extra {m} row"}
                for pid, m in zip(columns["processid"], columns["marker_code"])
                if m not in ("COI-5P", "None")
            ]
        export = batch_dir / ("bold_export.tsv" if layout != "v4" else "bold_combined.tsv")
        write_export(columns, export, crlf=crlf, extra_lines=extra)
        manifest["batches"][name] = {
            "layout": layout,
            "export": str(export.relative_to(outdir)),
            "rows": n_rows + len(extra),
        }
        if not images:
            continue
        image_dir = batch_dir / "images"
        image_dir.mkdir(parents=True, exist_ok=True)
        ids = [p for p in c["processid"]]
        if name == "sample-b":
            ids = ids[:-2]  # the repeated records' photos came with batch a
        # Planted image faults (batch a): record without image, corrupt, empty, orphan, stray file.
        if name == "sample-a":
            no_image, corrupt, empty, orphan = ids[2], ids[3], ids[4], f"{prefix}ORPHAN-24"
            faults += [
                {"kind": "record", "processid": no_image, "reason": "no_image", "what": "photo missing"},
                {"kind": "image", "processid": corrupt, "reason": "undecodable", "what": "JPEG cut in half"},
                {"kind": "record", "processid": corrupt, "reason": "image_rejected", "what": "its photo is corrupt"},
                {"kind": "image", "processid": empty, "reason": "empty_file", "what": "zero-byte photo"},
                {"kind": "record", "processid": empty, "reason": "image_rejected", "what": "its photo is empty"},
                {"kind": "image", "processid": orphan, "reason": "no_record", "what": "photo with no record"},
                {"kind": "image", "processid": None, "reason": "unrecognised_name", "what": "Thumbs.db"},
            ]
            ids = [p for p in ids if p != no_image] + [orphan]
            (image_dir / "Thumbs.db").write_bytes(b"\x00" * 64)
        kinds = rng.choice(["specimen", "empty", "edge"], len(ids), p=[0.86, 0.07, 0.07])
        for pid, kind in zip(ids, kinds):
            photo = draw_well_photo(rng, kind=str(kind))
            data = encode_jpeg(photo.image, quality=90)
            if name == "sample-a" and pid == corrupt:
                data = data[: len(data) // 2]
            if name == "sample-a" and pid == empty:
                data = b""
            file_name = f"{pid}.1024px.jpg" if name == "sample-a" else f"{pid}.jpg"
            (image_dir / file_name).write_bytes(data)
            box = photo.box or (None, None, None, None)
            ground_truth.append(
                {
                    "batch": name,
                    "file_name": file_name,
                    "processid": pid,
                    "kind": photo.kind,
                    "x0": box[0],
                    "y0": box[1],
                    "x1": box[2],
                    "y1": box[3],
                    "mask_pixels": int(photo.mask.sum()),
                }
            )
        manifest["batches"][name]["images"] = str(image_dir.relative_to(outdir))
    if ground_truth:
        import pandas as pd

        pd.DataFrame(ground_truth).to_csv(outdir / "ground_truth.csv", index=False)
    (outdir / "faults.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return manifest


# Specimens generated and written at a time by generate_export: bounds its memory (1M records in about 1 GB).
CHUNK_RECORDS = 100_000
# The redelivery's own random stream; chunk streams are keyed by their index, which never gets this high.
REDELIVERY_STREAM = 2**32 - 1
MISSING_TOKENS = pa.array(["", "None"])
# Besides the lineage (phylum .. species), what a re-identification rewrites, where a layout has the column.
IDENTIFICATION_COLUMNS = (
    "taxid",
    "identification",
    "identification_rank",
    "identified_by",
    "identifier_email",
    "identification_method",
    "species_reference",
    "taxonomy_notes",
    "identification_provided_by",
    "identification_reference",
    "tax_note",
)


def _export_chunks(
    n_records: int, seed: int, layout: str, species_share: float, prefix: str, id_offset: int, chunk_records: int
) -> Iterator[pa.Table]:
    """The export's rows as string tables, chunk_records specimens at a time.

    Up to one chunk: exactly what the single-call generator always wrote. Beyond: one taxonomy (and one set of
    processid numbers) drawn from the seed, each chunk's specimens from their own stream.
    """
    extra_markers = 0.02 if layout == "bcdm2024" else 0.0
    if n_records <= chunk_records:
        col = generate_metadata(n_records, seed=seed, prefix=prefix, species_share=species_share, id_offset=id_offset)
        yield _string_table(export_columns(col, layout, np.random.default_rng(seed + 1), extra_markers=extra_markers))
        return
    taxonomy = draw_taxonomy(n_records, seed=seed, id_offset=id_offset)
    for index, first in enumerate(range(0, n_records, chunk_records)):
        rng = np.random.default_rng([seed, index])
        n = min(chunk_records, n_records - first)
        specimens = draw_specimens(
            taxonomy, rng, n, species_share=species_share, prefix=prefix, id_offset=id_offset, first=first
        )
        table = _string_table(export_columns(specimens, layout, rng, extra_markers=extra_markers))
        del specimens  # neither this nor the written table stays alive beside the next chunk's
        yield table
        del table


def export_layout(path: str | Path) -> str | None:
    """The layout whose header a file starts with, or None."""
    with open(path, "rb") as handle:
        names = handle.readline().decode("utf-8", "replace").rstrip("\r\n").split("\t")
    return next((layout for layout, columns in LAYOUT_COLUMNS.items() if names == columns), None)


def _open_export(path: Path, columns: list[str], include: list[str] | None = None):
    """Arrow's streaming reader over an export: every field as its literal text, malformed rows skipped."""
    return pacsv.open_csv(
        path,
        read_options=pacsv.ReadOptions(block_size=1 << 22),
        parse_options=pacsv.ParseOptions(delimiter="\t", quote_char=False, invalid_row_handler=lambda row: "skip"),
        convert_options=pacsv.ConvertOptions(
            column_types={name: pa.string() for name in columns},
            strings_can_be_null=False,
            include_columns=include or columns,
        ),
    )


def redelivery(previous: str | Path, n: int, seed: int, layout: str) -> tuple[pa.Table, pa.Array]:
    """Rows of `n` processids of an earlier export, as BOLD exports them again after a re-identification.

    The processids are chosen by the seed; each (with all its marker rows) takes the lineage (phylum .. species)
    and identification columns of another row of that export that names a different species; everything else
    (sampleid, BIN, sequence ...) stays. Returns those rows and every processid of the earlier export.
    """
    previous = Path(previous)
    found = export_layout(previous)
    if found != layout:
        what = f"a {found} export" if found else "not a BOLD export of a known layout (v4, bcdm2023, bcdm2024)"
        raise InputError(f"{previous}: {what}; a redelivery keeps the layout of the export it repeats ({layout})")
    columns = LAYOUT_COLUMNS[layout]
    species_column = "species_name" if layout == "v4" else "species"
    lineage_start = columns.index("phylum_taxID" if layout == "v4" else "phylum")
    relabelled = columns[lineage_start : columns.index(species_column) + 1]
    relabelled += [name for name in IDENTIFICATION_COLUMNS if name in columns]

    ids = _open_export(previous, columns, ["processid", species_column]).read_all()
    processid, species = ids["processid"], ids[species_column]
    rows = pa.array(np.arange(ids.num_rows))
    has_id = pc.invert(pc.is_in(processid, value_set=MISSING_TOKENS))
    firsts = (
        pa.table({"processid": processid, "row": rows}).filter(has_id).group_by("processid").aggregate([("row", "min")])
    )
    if n > firsts.num_rows:
        raise InputError(f"{previous} holds {firsts.num_rows} processids: cannot redeliver {n}")
    named = np.flatnonzero(pc.invert(pc.is_in(species, value_set=MISSING_TOKENS)).to_numpy(zero_copy_only=False))
    if pc.count_distinct(species.take(named)).as_py() < 2:
        raise InputError(f"{previous} names fewer than two species: no other identification to give a record")

    rng = np.random.default_rng([seed, REDELIVERY_STREAM])
    target_rows = np.sort(rng.choice(np.sort(firsts["row_min"].to_numpy()), n, replace=False))
    target_species = species.take(target_rows).to_numpy(zero_copy_only=False)
    donor_rows = named[rng.integers(0, len(named), n)]
    same = species.take(donor_rows).to_numpy(zero_copy_only=False) == target_species
    while same.any():  # ends: every target has a different species among two or more
        donor_rows[same] = named[rng.integers(0, len(named), int(same.sum()))]
        same = species.take(donor_rows).to_numpy(zero_copy_only=False) == target_species
    target_ids = processid.take(target_rows).combine_chunks()
    previous_ids = firsts["processid"].combine_chunks()
    del ids, processid, species, firsts

    # Second pass, streamed: every row of the chosen processids, and the donor rows' labels.
    donor_wanted = np.unique(donor_rows)
    target_parts, donor_parts, offset = [], [], 0
    for batch in _open_export(previous, columns):
        table = pa.Table.from_batches([batch])
        target_parts.append(table.filter(pc.is_in(table["processid"], value_set=target_ids)))
        here = donor_wanted[(donor_wanted >= offset) & (donor_wanted < offset + table.num_rows)]
        donor_parts.append(table.select(relabelled).take(here - offset))
        offset += table.num_rows
    redelivered = pa.concat_tables(target_parts)
    donors = pa.concat_tables(donor_parts)  # in donor_wanted order
    target_of_row = pc.index_in(redelivered["processid"], value_set=target_ids).to_numpy()
    donor_of_row = np.searchsorted(donor_wanted, donor_rows[target_of_row])
    for name in relabelled:
        redelivered = redelivered.set_column(columns.index(name), name, donors[name].take(donor_of_row))
    return redelivered, previous_ids


def generate_export(
    path: str | Path,
    n_records: int,
    seed: int = 0,
    layout: str = "bcdm2024",
    species_share: float = SPECIES_SHARE,
    prefix: str = ID_PREFIX,
    id_offset: int = ID_OFFSET,
    redeliver: int = 0,
    previous: str | Path | None = None,
    chunk_records: int = CHUNK_RECORDS,
) -> int:
    """A single metadata-only export of n_records specimens (benchmarks, later deliveries). Returns rows written.

    Written chunk_records specimens at a time, in bounded memory. With `redeliver`, that many processids of the
    `previous` export (same layout) follow the new rows with new identifications (see ``redelivery``); a new
    processid that the previous export already holds is refused (choose another prefix or id offset).
    """
    path = Path(path)
    redelivered = previous_ids = None
    if redeliver:
        if previous is None:
            raise InputError("a redelivery needs the previous export to take its processids from")
        if Path(previous).resolve() == path.resolve():
            raise InputError(f"{path}: the new export would overwrite the previous export it redelivers from")
        redelivered, previous_ids = redelivery(previous, redeliver, seed, layout)
    crlf = layout == "v4"
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = 0
    try:
        with pa.OSFile(str(path), "wb") as sink:
            sink.write(_header_line(LAYOUT_COLUMNS[layout], crlf))
            for table in _export_chunks(n_records, seed, layout, species_share, prefix, id_offset, chunk_records):
                if previous_ids is not None:
                    clash = table["processid"].filter(pc.is_in(table["processid"], value_set=previous_ids))
                    if len(clash):
                        raise InputError(
                            f"new processid {clash[0]} is already in {previous}: give the new delivery another "
                            "--prefix, or an --id-offset past the previous one's range"
                        )
                _append_rows(sink, table, crlf)
                rows += table.num_rows
                del table
            if redelivered is not None:
                _append_rows(sink, redelivered, crlf)
                rows += redelivered.num_rows
    except BaseException:
        path.unlink(missing_ok=True)  # half an export must not pass for a delivery
        raise
    return rows
