"""JSON-LD export of the release metadata: real linked data (inline ``@context``, typed literals, SHACL-checked).

One file per split (``metadata/jsonld/{split}.jsonld``, :func:`write_jsonld_files`): ``{"@context": {...},
"@graph": [node, node, ...]}``, one node per line, written record by record (bounded memory). The context is
inline and maps short JSON keys to Darwin Core (``dwc:``), schema.org (``schema:``), PROV-O (``prov:``) and the
project namespace ``bioscan:`` (:data:`BIOSCAN_NS`); no remote context is ever referenced, so any JSON-LD
processor turns the file into RDF offline.

Record node (``@type dwc:Occurrence``, ``@id`` = ``<dataset id>/records/<percent-encoded processid>``):

=========================  =============================  ===============================================
column                     JSON key -> term               value
=========================  =============================  ===============================================
processid                  occurrenceID -> dwc:           string (also the node ``@id``); required
sampleid                   catalogNumber -> dwc:          string: the specimen's number in the holding
                                                          collection (e.g. BIOUG...), not a subsample
taxon                      scientificName -> dwc:         string, the deepest label; for a placeholder species
                                                          the deepest published name above it (the genus
                                                          unless that is a placeholder too); an interim
                                                          genus (no species) -> verbatimIdentification, and
                                                          scientificName the rank above it
(rank of scientificName)   taxonRank -> dwc:              phylum ... species (derived)
phylum .. genus            phylum .. genus -> dwc:        strings (dwc:subfamily included)
species                    species -> bioscan:species     the full species string (DwC has no such term)
species (clean binomial)   specificEpithet -> dwc:        2nd word, only for "<genus> <lowercase word>"
                                                          names that are not placeholders
placeholder_species=True   verbatimIdentification -> dwc: the species string
                           identificationQualifier -> dwc "cf." / "aff." / "nr." / "sp." / "spp." / "gr."
                                                          found in it, else "interim name"
dna_bin                    taxonConceptID -> dwc:         string "BOLD:AAA0000" (dwc:*ID terms take literals)
coord-lat, coord-lon       decimalLatitude/-Longitude     xsd:decimal
country, province_state    country, stateProvince -> dwc: strings
dna_barcode                barcodeSequence -> bioscan:    string
barcode_sha256             barcodeSha256 -> bioscan:      hex; computed from dna_barcode (UTF-8) if absent
sha256_original_full       imageSha256 -> bioscan:        hex sha256 of the released original_full JPEG
image_sha256               sourceImageSha256 -> bioscan:  hex sha256 of the imager's photo (provenance)
image_measurement_value    imageMeasurementValue          xsd:integer (bioscan:)
area_fraction, scale_f.    areaFraction, scaleFactor      xsd:decimal (bioscan:)
inferred_ranks             inferredRanks -> bioscan:      xsd:integer bit mask (phylum 1 ... species 64)
split, chunk               split, chunk -> bioscan:       strings
index_bioscan_1M_insect    indexBioscan1MInsect           xsd:integer (bioscan:)
(the split)                isPartOf -> schema:isPartOf    the split node
=========================  =============================  ===============================================

Other nodes, in this order before the records: the release (``@type bioscan:Release, prov:Entity,
schema:Dataset``: name, version, license, description, url, dateCreated, hasPart -> split node,
prov:wasGeneratedBy -> activity), the build (``prov:Activity``: prov:used -> inputs, prov:wasAssociatedWith ->
software), the software (``prov:SoftwareAgent, schema:SoftwareApplication``: name, softwareVersion, url), the
inputs (``prov:Entity, schema:MediaObject``: name = file, schema:sha256); after the records, the split node
(``bioscan:Split, schema:Dataset``: name, version, license, split, isPartOf -> release, recordCount), last so
that its count is known.

Values: missing (None, NaN, NA, empty string) -> property omitted. Decimals are strings typed xsd:decimal by the
context: shortest round-trip digits of the column's float type, positional (no exponent), e.g. ``19.3786``,
``20.0``, ``0.00001``; integers are JSON integers typed xsd:integer. Output is deterministic (sorted keys,
input order, no clock). ``dataset`` keys: see :data:`DATASET_KEYS`.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from collections.abc import Iterable, Iterator
from datetime import datetime
from importlib import resources
from pathlib import Path
from urllib.parse import quote

import numpy as np
import pandas as pd

from bioscan_rebuild.core.novel import novel_genus_names
from bioscan_rebuild.core.params import ExportOptions
from bioscan_rebuild.core.schemas import RANKS, SPLITS
from bioscan_rebuild.export.formats.base import ExportContext, Format
from bioscan_rebuild.export.layout import JSONLD_DIR
from bioscan_rebuild.export.spool import iter_split

BIOSCAN_NS = "https://github.com/bioscan-rebuild/terms#"
NAMESPACES = {
    "bioscan": BIOSCAN_NS,
    "dwc": "http://rs.tdwg.org/dwc/terms/",
    "prov": "http://www.w3.org/ns/prov#",
    "schema": "https://schema.org/",
    "xsd": "http://www.w3.org/2001/XMLSchema#",
}
# Package data (importlib.resources), so an installed wheel validates as a checkout does.
DEFAULT_SHAPES = Path(str(resources.files(__package__) / "release.shacl.ttl"))

#: ``dataset`` keys: required ones map to True.
DATASET_KEYS = {
    "name": True,  # schema:name of the release
    "version": True,  # schema:version
    "license": True,  # licence URL -> schema:license (an IRI)
    "software_version": True,  # the bioscan-rebuild version that built the release
    "description": False,  # schema:description
    "id": False,  # absolute IRI of the release; default urn:bioscan-rebuild:release:<name>:<version>
    "url": False,  # landing page -> schema:url
    "created": False,  # ISO 8601 date or date-time -> schema:dateCreated (never taken from the clock)
    "software_name": False,  # default "bioscan-rebuild"
    "software_url": False,  # e.g. the code repository -> schema:url of the software agent
    "inputs": False,  # [{"file": str, "sha256": hex}, ...] -> prov:used, in this order
}

STRING_TERMS = {  # column -> JSON key (plain string literals)
    "processid": "occurrenceID",
    "sampleid": "catalogNumber",
    "taxon": "scientificName",
    "phylum": "phylum",
    "class": "class",
    "order": "order",
    "family": "family",
    "subfamily": "subfamily",
    "genus": "genus",
    "species": "species",
    "dna_bin": "taxonConceptID",
    "dna_barcode": "barcodeSequence",
    "country": "country",
    "province_state": "stateProvince",
    "split": "split",
    "chunk": "chunk",
    "sha256_original_full": "imageSha256",
    "image_sha256": "sourceImageSha256",
    "barcode_sha256": "barcodeSha256",
}
DECIMAL_TERMS = {
    "coord-lat": "decimalLatitude",
    "coord-lon": "decimalLongitude",
    "area_fraction": "areaFraction",
    "scale_factor": "scaleFactor",
}
INTEGER_TERMS = {
    "image_measurement_value": "imageMeasurementValue",
    "inferred_ranks": "inferredRanks",
    "index_bioscan_1M_insect": "indexBioscan1MInsect",
}
_DWC_KEYS = (
    *("occurrenceID", "catalogNumber", "scientificName", "taxonRank", "phylum", "class", "order", "family"),
    *("subfamily", "genus", "specificEpithet", "taxonConceptID", "verbatimIdentification"),
    *("identificationQualifier", "country", "stateProvince"),
)
_BIOSCAN_KEYS = (
    *("species", "barcodeSequence", "barcodeSha256", "imageSha256", "sourceImageSha256", "split", "chunk"),
)

_IRI_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:[^\s<>\"{}|\\^`]+$")
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
_DECIMAL_RE = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)$")
_QUALIFIERS = {"cf": "cf.", "aff": "aff.", "nr": "nr.", "sp": "sp.", "spp": "spp.", "gr": "gr.", "grp": "gr."}


def jsonld_context(dataset_id: str) -> dict:
    """The inline ``@context``; ``release:`` and ``rec:`` shorten the release's own IRIs (bytes per record)."""
    ctx: dict = dict(NAMESPACES)
    ctx["release"] = f"{dataset_id}/"
    ctx["rec"] = f"{dataset_id}/records/"
    ctx.update({key: f"dwc:{key}" for key in _DWC_KEYS})
    ctx.update({key: f"bioscan:{key}" for key in _BIOSCAN_KEYS})
    for key in ("decimalLatitude", "decimalLongitude"):
        ctx[key] = {"@id": f"dwc:{key}", "@type": "xsd:decimal"}
    for key in ("areaFraction", "scaleFactor"):
        ctx[key] = {"@id": f"bioscan:{key}", "@type": "xsd:decimal"}
    for key in ("imageMeasurementValue", "inferredRanks", "indexBioscan1MInsect", "recordCount"):
        ctx[key] = {"@id": f"bioscan:{key}", "@type": "xsd:integer"}
    ctx.update({key: f"schema:{key}" for key in ("name", "version", "description", "softwareVersion", "sha256")})
    ctx["dateCreated"] = "schema:dateCreated"  # values carry their own xsd:date / xsd:dateTime
    for key in ("license", "url", "isPartOf", "hasPart"):
        ctx[key] = {"@id": f"schema:{key}", "@type": "@id"}
    for key in ("wasGeneratedBy", "used", "wasAssociatedWith"):
        ctx[key] = {"@id": f"prov:{key}", "@type": "@id"}
    return ctx


def _check_iri(value, key: str) -> str:
    if not isinstance(value, str) or not _IRI_RE.match(value):
        raise ValueError(f"dataset[{key!r}] must be an absolute IRI, got {value!r}")
    return value


def _check_text(value, key: str) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"dataset[{key!r}] must be a non-empty string, got {value!r}")
    return value


def _check_dataset(dataset: dict) -> dict:
    unknown = sorted(set(dataset) - set(DATASET_KEYS))
    if unknown:
        raise ValueError(f"unknown dataset keys {unknown}; allowed: {sorted(DATASET_KEYS)}")
    missing = [k for k, required in DATASET_KEYS.items() if required and dataset.get(k) in (None, "")]
    if missing:
        raise ValueError(f"dataset is missing {missing}")
    meta = {k: _check_text(dataset[k], k) for k in ("name", "version", "software_version")}
    meta["license"] = _check_iri(dataset["license"], "license")
    for key in ("description", "software_name"):
        if dataset.get(key) is not None:
            meta[key] = _check_text(dataset[key], key)
    for key in ("url", "software_url"):
        if dataset.get(key) is not None:
            meta[key] = _check_iri(dataset[key], key)
    default_id = f"urn:bioscan-rebuild:release:{quote(meta['name'], safe='')}:{quote(meta['version'], safe='')}"
    meta["id"] = _check_iri(dataset.get("id") or default_id, "id").rstrip("/")
    created = dataset.get("created")
    if created is not None:
        try:
            datetime.fromisoformat(_check_text(created, "created"))
        except ValueError as exc:
            raise ValueError(f"dataset['created'] is not ISO 8601: {created!r}") from exc
        meta["created"] = created
    inputs = dataset.get("inputs") or []
    files = [item.get("file") for item in inputs]
    if len(set(files)) != len(files):
        raise ValueError("dataset['inputs'] lists a file twice")
    for item in inputs:
        if set(item) != {"file", "sha256"} or not isinstance(item["file"], str) or not item["file"]:
            raise ValueError(f"dataset['inputs'] entries are {{'file': str, 'sha256': hex}}, got {item!r}")
        if not isinstance(item["sha256"], str) or not _SHA256_RE.match(item["sha256"]):
            raise ValueError(f"input {item['file']!r}: sha256 must be 64 lowercase hex digits")
    meta["inputs"] = [dict(item) for item in inputs]
    return meta


def _head_nodes(meta: dict, split: str) -> list[dict]:
    """Release, build activity, software agent, inputs (everything before the records)."""
    release = {
        "@id": meta["id"],
        "@type": ["bioscan:Release", "prov:Entity", "schema:Dataset"],
        "name": meta["name"],
        "version": meta["version"],
        "license": meta["license"],
        "hasPart": f"release:splits/{split}",
        "wasGeneratedBy": "release:build",
    }
    for key in ("description", "url"):
        if key in meta:
            release[key] = meta[key]
    if "created" in meta:
        kind = "xsd:date" if len(meta["created"]) == 10 else "xsd:dateTime"
        release["dateCreated"] = {"@value": meta["created"], "@type": kind}
    input_ids = [f"release:inputs/{quote(item['file'], safe='')}" for item in meta["inputs"]]
    activity = {"@id": "release:build", "@type": "prov:Activity", "wasAssociatedWith": "release:software"}
    if input_ids:
        activity["used"] = input_ids
    software = {
        "@id": "release:software",
        "@type": ["prov:SoftwareAgent", "schema:SoftwareApplication"],
        "name": meta.get("software_name", "bioscan-rebuild"),
        "softwareVersion": meta["software_version"],
    }
    if "software_url" in meta:
        software["url"] = meta["software_url"]
    inputs = [
        {"@id": iid, "@type": ["prov:Entity", "schema:MediaObject"], "name": item["file"], "sha256": item["sha256"]}
        for iid, item in zip(input_ids, meta["inputs"])
    ]
    return [release, activity, software, *inputs]


def _split_node(meta: dict, split: str, n_records: int) -> dict:
    return {
        "@id": f"release:splits/{split}",
        "@type": ["bioscan:Split", "schema:Dataset"],
        "name": f"{meta['name']} {split} split",
        "version": meta["version"],
        "license": meta["license"],
        "split": split,
        "isPartOf": meta["id"],
        "recordCount": n_records,
    }


def _strings(series: pd.Series) -> list:
    na = series.isna().to_numpy(dtype=bool)
    values = series.astype(object).tolist()
    return [None if m or v == "" else (v if isinstance(v, str) else str(v)) for v, m in zip(values, na)]


def _decimal_from_object(value) -> str | None:
    if value is None or value is pd.NA or value == "":
        return None
    if isinstance(value, str):
        text = value.strip()
        if not _DECIMAL_RE.match(text):
            raise ValueError(f"not a decimal: {value!r}")
        return text
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return str(int(value))
    number = float(value)
    if math.isnan(number):
        return None
    return _format_float(np.float64(number))


def _format_float(value: np.floating) -> str:
    if not np.isfinite(value):
        raise ValueError(f"{value!r} has no xsd:decimal form")
    # shortest digits that round-trip in the value's own float type, never an exponent
    return np.format_float_positional(value, trim="0")


def _decimals(series: pd.Series) -> list:
    dtype = series.dtype
    if pd.api.types.is_bool_dtype(dtype):
        raise TypeError(f"column {series.name!r}: booleans are not decimals")
    if pd.api.types.is_integer_dtype(dtype):
        return [None if v is None else str(v) for v in series.astype(object).where(series.notna(), None).tolist()]
    if pd.api.types.is_float_dtype(dtype):
        array = series.to_numpy(dtype=getattr(dtype, "numpy_dtype", dtype), na_value=np.nan)
        return [None if np.isnan(v) else _format_float(v) for v in array]
    return [_decimal_from_object(v) for v in series.astype(object).tolist()]


def _integers(series: pd.Series) -> list:
    out = []
    for value in series.astype(object).tolist():
        if value is None or value is pd.NA or value == "" or (isinstance(value, float) and math.isnan(value)):
            out.append(None)
        elif isinstance(value, float):
            if not value.is_integer():
                raise ValueError(f"column {series.name!r}: {value!r} is not an integer")
            out.append(int(value))
        else:
            out.append(int(value))
    return out


def _bools(series: pd.Series) -> list:
    return [v is True or (v is not None and v is not pd.NA and v == v and bool(v)) for v in series.tolist()]


def qualifier(species: str) -> str:
    """The open-nomenclature qualifier of a placeholder species name ("sp.", "cf." ...), else "interim name"."""
    for word in species.split()[1:]:
        found = _QUALIFIERS.get(word.rstrip(".").lower())
        if found:
            return found
    return "interim name"


def _epithet(species: str, genus: str | None) -> str | None:
    if not genus or not species.startswith(genus + " "):
        return None
    word = species[len(genus) + 1 :]
    # one lowercase word (hyphens allowed): a real epithet, not "sp. 12" or "BOLD:AAA0001"
    if word.islower() and word.replace("-", "").isalpha() and not word.startswith("-"):
        return word
    return None


def interim_genera(genus: list) -> list[bool]:
    """Per record, whether its genus is an interim name (``Malaise0042``: ``novel_genus_names``)."""
    distinct = pd.Series(sorted({g for g in genus if g is not None}), dtype=object)
    interim = set(distinct[novel_genus_names(distinct)]) if len(distinct) else set()
    return [g in interim for g in genus]


def derived_node_terms(ranks: dict[str, list], placeholder: list, interim_genus: list) -> dict[str, list]:
    """A record node's terms derived from its labels (``ranks``: rank -> values), whether its species is a
    placeholder and its genus an interim name: ``taxonRank`` (of the deepest label, or of the deepest published
    one above an interim name), ``identificationQualifier`` (a placeholder's) and ``specificEpithet`` (a clean
    binomial's). The writer's rule, and the audit's."""
    n = len(placeholder)
    species, genus = ranks.get("species", [None] * n), ranks.get("genus", [None] * n)
    rank_columns = [(rank, ranks[rank]) for rank in reversed(RANKS) if rank in ranks]
    published = [(rank, values) for rank, values in rank_columns if rank != "species"]
    out = {"taxonRank": [None] * n, "identificationQualifier": [None] * n, "specificEpithet": [None] * n}
    for i in range(n):
        name = species[i]
        out["taxonRank"][i] = next((rank for rank, values in rank_columns if values[i] is not None), None)
        if name is not None and placeholder[i]:
            out["identificationQualifier"][i] = qualifier(name)
        if (name is not None and placeholder[i]) or (name is None and interim_genus[i]):
            # Darwin Core: an interim name is not a scientific name; the deepest published taxon above it is
            out["taxonRank"][i] = next(
                (
                    rank
                    for rank, values in published
                    if values[i] is not None and not (rank == "genus" and interim_genus[i])
                ),
                None,
            )
        if name is not None and not placeholder[i]:
            out["specificEpithet"][i] = _epithet(name, genus[i])
    return out


def _record_nodes(chunk: pd.DataFrame, split: str, split_id: str) -> Iterator[dict]:
    """Record nodes of one chunk, in row order."""
    n = len(chunk)
    if n == 0:
        return
    if "processid" not in chunk.columns:
        raise ValueError("records need a processid column")
    columns: dict[str, list] = {}
    for column, key in STRING_TERMS.items():
        if column in chunk.columns:
            columns[key] = _strings(chunk[column])
    for column, key in DECIMAL_TERMS.items():
        if column in chunk.columns:
            columns[key] = _decimals(chunk[column])
    for column, key in INTEGER_TERMS.items():
        if column in chunk.columns:
            columns[key] = _integers(chunk[column])
    splits = columns.pop("split", [None] * n)
    wrong = {s for s in splits if s is not None and s != split}
    if wrong:
        raise ValueError(f"records of split {split!r} include split values {sorted(wrong)[:5]}")
    if "barcodeSha256" not in columns:
        columns["barcodeSha256"] = [None] * n
    placeholder = _bools(chunk["placeholder_species"]) if "placeholder_species" in chunk.columns else [False] * n
    sequences = columns.get("barcodeSequence", [None] * n)
    species = columns.get("species", [None] * n)
    genus = columns.get("genus", [None] * n)
    rank_columns = [(rank, columns[rank]) for rank in reversed(RANKS) if rank in columns]
    published_ranks = [(rank, values) for rank, values in rank_columns if rank != "species"]
    interim = interim_genera(genus)
    derived = derived_node_terms({rank: values for rank, values in rank_columns}, placeholder, interim)
    keys = list(columns)
    for i in range(n):
        node = {"@type": "dwc:Occurrence"}
        for key in keys:
            value = columns[key][i]
            if value is not None:
                node[key] = value
        pid = node.get("occurrenceID")
        if pid is None:
            raise ValueError(f"record {i} of a chunk has no processid")
        node["@id"] = "rec:" + quote(pid, safe="")
        node["split"] = split
        node["isPartOf"] = split_id
        if "barcodeSha256" not in node and sequences[i] is not None:
            node["barcodeSha256"] = hashlib.sha256(sequences[i].encode("utf-8")).hexdigest()
        name = species[i]
        if name is not None and placeholder[i]:
            node["verbatimIdentification"] = name
        elif name is None and interim[i]:
            node["verbatimIdentification"] = genus[i]
        if "verbatimIdentification" in node:
            # Darwin Core: an interim name is not a scientific name; name the deepest published taxon above it
            node.pop("scientificName", None)
            for rank, values in published_ranks:
                if values[i] is not None and not (rank == "genus" and interim[i]):
                    node["scientificName"] = values[i]
                    break
        for key, values in derived.items():
            if values[i]:
                node[key] = values[i]
        yield node


def _count_triples(node) -> int:
    """Triples a node object yields (no lists, no reverse properties in what this module writes)."""
    if isinstance(node, list):
        return sum(_count_triples(item) for item in node)
    if not isinstance(node, dict) or "@value" in node:
        return 0
    total = 0
    for key, value in node.items():
        if key == "@id":
            continue
        values = value if isinstance(value, list) else [value]
        total += len(values) + (0 if key == "@type" else sum(_count_triples(v) for v in values))
    return total


def _dumps(node: dict) -> str:
    return json.dumps(node, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def write_jsonld(chunks: Iterable[pd.DataFrame], path, *, split: str, dataset: dict) -> dict:
    """Stream the records of one split (``chunks``, in order) into one JSON-LD file; returns counts.

    Memory is one chunk plus one node. The file is written next to ``path`` and renamed into place.
    Returns ``{"split", "records", "triples", "bytes"}`` (``triples`` = what an RDF parser yields).
    """
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
    meta = _check_dataset(dataset)
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    split_id = f"release:splits/{split}"
    records = triples = 0
    try:
        with open(tmp, "w", encoding="utf-8", newline="\n") as out:
            context = json.dumps(jsonld_context(meta["id"]), sort_keys=True, ensure_ascii=False, indent=1)
            out.write('{"@context": ' + context + ',\n"@graph": [\n')
            sep = ""
            for node in _head_nodes(meta, split):
                out.write(sep + _dumps(node))
                triples += _count_triples(node)
                sep = ",\n"
            for chunk in chunks:
                for node in _record_nodes(chunk, split, split_id):
                    out.write(sep + _dumps(node))
                    triples += len(node) - 1  # one triple per key but @id; @type holds one class
                    records += 1
            tail = _split_node(meta, split, records)
            out.write(sep + _dumps(tail) + "\n]}\n")
            triples += _count_triples(tail)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return {"split": split, "records": records, "triples": triples, "bytes": path.stat().st_size}


def _context_refs(value) -> Iterator[str]:
    """Remote references in a JSON-LD document: string ``@context`` entries and ``@import``."""
    if isinstance(value, list):
        for item in value:
            yield from _context_refs(item)
    elif isinstance(value, dict):
        for key, item in value.items():
            if key == "@import":
                yield str(item)
            elif key == "@context":
                for ctx in item if isinstance(item, list) else [item]:
                    if isinstance(ctx, str):
                        yield ctx
                    else:
                        yield from _context_refs(ctx)
            else:
                yield from _context_refs(item)


def load_graph(path):
    """Parse a JSON-LD file with rdflib, offline: a document that references a remote context is refused."""
    from rdflib import Graph
    from rdflib.plugins.parsers.jsonld import to_rdf

    with open(path, encoding="utf-8") as handle:
        document = json.load(handle)
    remote = sorted(set(_context_refs(document)))
    if remote:
        raise ValueError(f"{path}: remote JSON-LD contexts are not fetched: {remote[:3]}")
    graph = Graph()
    to_rdf(document, graph)
    return graph


def validate_jsonld(path, shapes_path=None) -> tuple[bool, str, int]:
    """SHACL-validate a JSON-LD file: ``(conforms, report text, number of triples)``.

    The whole graph is held in memory (rdflib + pyshacl): meant for tests, samples and small splits.
    ``shapes_path`` defaults to :data:`DEFAULT_SHAPES` (``release.shacl.ttl`` beside this module).
    """
    import pyshacl
    from rdflib import Graph

    data = load_graph(path)
    shapes = Graph().parse(Path(shapes_path or DEFAULT_SHAPES), format="turtle")
    conforms, _, text = pyshacl.validate(
        data, shacl_graph=shapes, inference="none", advanced=False, do_owl_imports=False, allow_warnings=False
    )
    return bool(conforms), str(text), len(data)


READ_COLUMNS = (
    *STRING_TERMS,
    *DECIMAL_TERMS,
    *INTEGER_TERMS,
    "placeholder_species",
)


def read_jsonld_records(path) -> pd.DataFrame:
    """The record nodes of a JSON-LD file, one row each, sorted by processid.

    Columns: :data:`READ_COLUMNS` (the export's input columns). Decimal columns hold the lexical forms as
    written (strings), integer columns are Int64, ``placeholder_species`` = has an identificationQualifier.
    """
    from rdflib import RDF, URIRef

    graph = load_graph(path)
    ns = NAMESPACES
    column_of = {}
    for column, key in STRING_TERMS.items():
        column_of[URIRef((ns["bioscan"] if key in _BIOSCAN_KEYS else ns["dwc"]) + key)] = column
    for column, key in DECIMAL_TERMS.items():
        column_of[URIRef((ns["dwc"] if key.startswith("decimal") else ns["bioscan"]) + key)] = column
    for column, key in INTEGER_TERMS.items():
        column_of[URIRef(ns["bioscan"] + key)] = column
    qualifier_iri = URIRef(ns["dwc"] + "identificationQualifier")
    verbatim_iri = URIRef(ns["dwc"] + "verbatimIdentification")
    rows = []
    for subject in graph.subjects(RDF.type, URIRef(ns["dwc"] + "Occurrence")):
        row: dict = {"placeholder_species": False}
        verbatim = None
        for predicate, obj in graph.predicate_objects(subject):
            column = column_of.get(predicate)
            if predicate == qualifier_iri:
                row["placeholder_species"] = True
            if predicate == verbatim_iri:
                verbatim = str(obj)
            if column is None:
                continue
            if column in row:
                raise ValueError(f"{subject} has more than one {predicate}")
            row[column] = int(obj) if column in INTEGER_TERMS else str(obj)
        if row["placeholder_species"]:  # taxon is the deepest label: the placeholder species itself
            row["taxon"] = row.get("species")
        elif verbatim is not None:  # ... or the interim genus
            row["taxon"] = verbatim
        rows.append(row)
    frame = pd.DataFrame(rows, columns=list(READ_COLUMNS))
    for column in READ_COLUMNS:
        if column in INTEGER_TERMS:
            frame[column] = frame[column].astype("Int64")
        elif column == "placeholder_species":
            frame[column] = frame[column].astype(bool)
        else:
            frame[column] = frame[column].astype("str")
    return frame.sort_values("processid", kind="stable").reset_index(drop=True)


def release_dataset(options: ExportOptions, provenance: dict, software_version: str | None = None) -> dict:
    """The ``dataset`` a release's JSON-LD files describe themselves with (this package's version by default)."""
    from bioscan_rebuild import __version__

    return {
        "name": options.name,
        "version": options.version,
        "license": options.licence,
        "description": "Specimen records of a BIOSCAN-5M-style release rebuilt by bioscan-rebuild.",
        "software_name": "bioscan-rebuild",
        "software_version": software_version or __version__,
        "inputs": provenance.get("inputs", []),
    }


def described_text(dataset: dict, split: str, records: int) -> tuple[str, str]:
    """What :func:`write_jsonld` writes before a split's first record (the context and the head nodes) and after
    its last one (the split node): the audit makes them again to compare."""
    meta = _check_dataset(dataset)
    context = json.dumps(jsonld_context(meta["id"]), sort_keys=True, ensure_ascii=False, indent=1)
    head = '{"@context": ' + context + ',\n"@graph": [\n' + ",\n".join(_dumps(n) for n in _head_nodes(meta, split))
    return head + ",\n", ",\n" + _dumps(_split_node(meta, split, records)) + "\n]}\n"


def write_jsonld_files(spool: Path, folder: Path, options: ExportOptions, provenance: dict) -> dict:
    """``{split}.jsonld`` in ``folder`` for every split with records: split -> :func:`write_jsonld`'s counts."""
    folder.mkdir(parents=True, exist_ok=True)
    dataset = release_dataset(options, provenance)
    out = {}
    for split in SPLITS:
        if not (spool / split).exists():
            continue
        chunks = (table.to_pandas() for table in iter_split(spool, split))
        out[split] = write_jsonld(chunks, folder / f"{split}.jsonld", split=split, dataset=dataset)
    return out


def _write(context: ExportContext) -> dict:
    return {"jsonld": write_jsonld_files(context.spool, context.root / JSONLD_DIR, context.options, context.provenance)}


FORMAT = Format("jsonld", _write)
