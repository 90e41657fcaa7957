"""Croissant 1.1 description of a release folder (``croissant.json``), plus offline checks with mlcroissant.

Every single file gets a FileObject with its sha256; the image packages and Parquet tables are FileSets (globs);
the tables and images are RecordSets that mlcroissant reads. Paths are relative to the folder of croissant.json:
mlcroissant resolves a FileObject's relative contentUrl, and a FileSet without ``containedIn``, on local disk
(``ctx.folder``), so nothing is downloaded. mlcroissant checks a FileObject's hash only when a RecordSet reads it,
hence ``verify_hashes``. The fixed-path files take their @id, media type and description from
``export.layout.DESCRIBED``; as the ``croissant`` format it runs after every other format and the side files.

mlcroissant 1.1.1 limits, as found: it reads CSV/TSV with pandas' type inference, so a Text column whose values
all look numeric comes back as the float's text (chunk '07' -> b'7.0') and the string 'NA' as missing; the
``parquet_metadata`` RecordSet keeps the stored types. It has no HDF5 reader (the .h5 is a hashed FileObject only).
To read one record it loads a whole CSV/TSV/Parquet shard and walks the whole croissant.json folder per FileSet.
"""

from __future__ import annotations

import csv
import fnmatch
import json
import os
import re
from collections import Counter
from collections.abc import Iterator, Mapping
from pathlib import Path

from bioscan_rebuild.core.io import file_sha256
from bioscan_rebuild.core.params import ExportOptions
from bioscan_rebuild.core.schemas import IMAGE_PACKAGES, RELEASE_COLUMNS, SPLITS
from bioscan_rebuild.export.formats.base import ExportContext, Format
from bioscan_rebuild.export.layout import (
    BBOX,
    CHANGES,
    CROISSANT_PATH,
    CSV_PATH,
    DESCRIBED,
    IMAGES_DIR,
    IMAGES_PARQUET_DIR,
    MANIFEST,
    METADATA_CSV,
    PARQUET_DIR,
    RECORDS_LINEAGE,
    REJECTS,
    SPLIT_SUMMARY,
)

METADATA_COLUMNS = RELEASE_COLUMNS
FLOAT_COLUMNS = frozenset({"coord-lat", "coord-lon", "area_fraction", "scale_factor"})
INTEGER_COLUMNS = frozenset(  # metadata and bbox.tsv columns
    {"image_measurement_value", "inferred_ranks", "index_bioscan_1M_insect", "width_original", "height_original"}
    | {"x0", "y0", "x1", "y1"}
)
# a barcode drawn into a held-out split takes every record carrying it, labelled to species or not
WITH_THE_BARCODE = ", with every record that carries a barcode drawn for it (some without a species label)"
SPLIT_INFO = {  # (cr split class or None, description)
    "pretrain": (
        "cr:TrainingSplit",
        "unlabelled to species when first released (a record frozen here keeps its split when a later version "
        "labels it): for self-supervised pretraining",
    ),
    "train": ("cr:TrainingSplit", "seen (described) species: training"),
    "val": ("cr:ValidationSplit", f"seen (described) species: validation{WITH_THE_BARCODE}"),
    "test": ("cr:TestSplit", f"seen (described) species: test{WITH_THE_BARCODE}"),
    "key_unseen": (
        None,
        "unseen species (placeholder names of described species' genera): keys (reference set) for the unseen "
        "val/test queries",
    ),
    "val_unseen": ("cr:ValidationSplit", f"unseen species: validation queries{WITH_THE_BARCODE}"),
    "test_unseen": ("cr:TestSplit", f"unseen species: test queries{WITH_THE_BARCODE}"),
    "other_heldout": (
        None,
        "placeholder species not in the unseen splits (novelty detection); a barcode drawn into a held-out split "
        "takes its records here with it",
    ),
}

# mlcroissant reads a CSV with pandas' defaults: a reader of a CSV-backed record set must know what that changes
CSV_READING = (
    "mlcroissant's CSV/TSV reader takes the text NA, null or nan for a missing value and number-like text for a "
    "number; in the file only an empty field is missing (parquet_metadata holds the metadata's stored values)."
)
_COUNT = "sc:Integer"
SIDE_TABLES = {  # CSV side file -> (RecordSet @id, key column or None, description, non-text column types)
    REJECTS.path: (
        "rejects",
        None,
        "Every record and photo left out of the release, with the reason.",
        {"source_line": _COUNT},
    ),
    CHANGES.path: (
        "changes",
        None,  # one step changes many records: no single-column key
        "Every label change, in order: field, old, new, rule, ratio.",
        {"step": _COUNT, "ratio": "sc:Float"},
    ),
    SPLIT_SUMMARY.path: (
        "split_summary",
        "split",
        "Samples, barcodes and species per split.",
        {"samples": _COUNT, "barcodes": _COUNT, "species": _COUNT},
    ),
    RECORDS_LINEAGE.path: (
        "records_lineage",
        "processid",
        "Source file and line of each record.",
        {"source_line": _COUNT},
    ),
}
TABLES = {  # Parquet table folder -> (FileSet @id, RecordSet @id)
    PARQUET_DIR: ("metadata_parquet_files", "parquet_metadata"),
    IMAGES_PARQUET_DIR: ("images_parquet_files", "images_parquet"),
}
SKIPPED = (CROISSANT_PATH, MANIFEST)  # described elsewhere / written after this file

# The Croissant context as mlcroissant's 1.1 examples write it (schema.org over https), with the 1.1 spec's
# added terms (annotation, arrayShape, containedIn in cr:, excludes, isArray, readLines, sdVersion, unArchive,
# value).
CONTEXT = {
    "@language": "en",
    "@vocab": "https://schema.org/",
    "annotation": "cr:annotation",
    "arrayShape": "cr:arrayShape",
    "citeAs": "cr:citeAs",
    "column": "cr:column",
    "conformsTo": "dct:conformsTo",
    "containedIn": "cr:containedIn",
    "cr": "http://mlcommons.org/croissant/",
    "rai": "http://mlcommons.org/croissant/RAI/",
    "data": {"@id": "cr:data", "@type": "@json"},
    "dataType": {"@id": "cr:dataType", "@type": "@vocab"},
    "dct": "http://purl.org/dc/terms/",
    "equivalentProperty": "cr:equivalentProperty",
    "examples": {"@id": "cr:examples", "@type": "@json"},
    "excludes": "cr:excludes",
    "extract": "cr:extract",
    "field": "cr:field",
    "fileProperty": "cr:fileProperty",
    "fileObject": "cr:fileObject",
    "fileSet": "cr:fileSet",
    "format": "cr:format",
    "includes": "cr:includes",
    "isArray": "cr:isArray",
    "isLiveDataset": "cr:isLiveDataset",
    "jsonPath": "cr:jsonPath",
    "key": "cr:key",
    "md5": "cr:md5",
    "parentField": "cr:parentField",
    "path": "cr:path",
    "readLines": "cr:readLines",
    "recordSet": "cr:recordSet",
    "references": "cr:references",
    "regex": "cr:regex",
    "repeated": "cr:repeated",
    "replace": "cr:replace",
    "samplingRate": "cr:samplingRate",
    "sc": "https://schema.org/",
    "sdVersion": "cr:sdVersion",
    "separator": "cr:separator",
    "source": "cr:source",
    "subField": "cr:subField",
    "transform": "cr:transform",
    "unArchive": "cr:unArchive",
    "value": "cr:value",
}
# A fixed table, not `mimetypes`: that one reads the system's mime.types, so the output would vary by machine.
MEDIA_TYPES = {
    "csv": "text/csv",
    "tsv": "text/tab-separated-values",
    "txt": "text/plain",
    "md": "text/markdown",
    "json": "application/json",
    "jsonl": "application/jsonlines",
    "jsonld": "application/ld+json",
    "parquet": "application/x-parquet",
    "h5": "application/x-hdf5",
    "hdf5": "application/x-hdf5",
    "fasta": "text/x-fasta",
    "fa": "text/x-fasta",
    "jpg": "image/jpeg",
    "jpeg": "image/jpeg",
    "png": "image/png",
    "svg": "image/svg+xml",
    "gz": "application/gzip",
    "zip": "application/zip",
    "tar": "application/x-tar",
    "yaml": "application/yaml",
    "yml": "application/yaml",
}
CONFORMS_TO = "http://mlcommons.org/croissant/1.1"
INFO_KEYS = ("name", "description", "license", "url", "version", "citeAs", "datePublished")
RESERVED_KEYS = ("@context", "@type", "@id", "conformsTo", "distribution", "recordSet")

_IMAGE_RE = re.compile(rf"^{IMAGES_DIR}/([^/]+)/([^/]+)/(?:([^/]+)/)?([^/]+)\.jpg$")


def _prefix(release_dir: Path, base: Path) -> str:
    """The release folder as seen from croissant.json's folder ('' or 'a/b/')."""
    try:
        rel = release_dir.resolve().relative_to(base.resolve())
    except ValueError as exc:
        # mlcroissant only walks down from the JSON-LD's folder (FileSets) and relative globs cannot climb.
        raise ValueError(f"croissant.json must be in {release_dir} or a folder above it, not in {base}") from exc
    return "" if rel == Path(".") else rel.as_posix() + "/"


def _walked(release_dir: Path) -> Iterator[str]:
    for folder, dirs, files in os.walk(release_dir):
        dirs.sort()
        for name in files:
            yield (Path(folder) / name).relative_to(release_dir).as_posix()


def release_files(release_dir, skip=(), listed=None, count_images: bool = False) -> dict:
    """Classify the files of a release: single files, Parquet shards per table, JPEGs per image package.
    ``listed``: the files' paths under ``release_dir`` (the audit's manifest), instead of walking the folder;
    ``count_images``: each package's number of JPEGs instead of their paths (20M of them at full scale)."""
    release_dir = Path(release_dir)
    skipped = set(SKIPPED) | set(skip)
    found = {"single": [], "tables": {t: [] for t in TABLES}, "images": {p: [] for p in IMAGE_PACKAGES}}
    counted = Counter()
    for rel in _walked(release_dir) if listed is None else listed:
        if rel in skipped:
            continue
        match = _IMAGE_RE.match(rel)
        table = rel.rsplit("/", 1)[0] if "/" in rel else ""
        if match and match.group(1) in IMAGE_PACKAGES:
            if count_images:
                counted[match.group(1)] += 1
            else:
                found["images"][match.group(1)].append(rel)
            continue
        if table in TABLES and rel.endswith(".parquet"):
            found["tables"][table].append(rel)
        found["single"].append(rel)  # a Parquet shard also gets its own hashed FileObject
    for files in (found["single"], *found["tables"].values(), *found["images"].values()):
        files.sort()
    if count_images:
        found["images"] = {package: counted[package] for package in IMAGE_PACKAGES}
    return found


def _encoding(rel: str) -> str:
    if rel in DESCRIBED:
        return DESCRIBED[rel].media_type
    suffix = rel.rsplit("/", 1)[-1].rpartition(".")[2].lower()
    return MEDIA_TYPES.get(suffix, "application/octet-stream")


def _file_id(rel: str) -> str:
    # mlcroissant rejects an @id with whitespace, even URL-escaped
    return DESCRIBED[rel].id if rel in DESCRIBED else re.sub(r"\s", "_", rel)


def _file_object(release_dir: Path, rel: str, prefix: str, hashes: Mapping[str, str], sizes: Mapping[str, int]) -> dict:
    path = release_dir / rel
    node = {"@type": "cr:FileObject", "@id": _file_id(rel), "name": rel.rsplit("/", 1)[-1]}
    if rel in DESCRIBED:
        node["description"] = DESCRIBED[rel].description
    node.update(
        contentUrl=prefix + rel,
        contentSize=f"{sizes[rel] if rel in sizes else path.stat().st_size} B",
        encodingFormat=_encoding(rel),
        sha256=hashes[rel] if rel in hashes else file_sha256(path),
    )
    return node


def _data_type(name: str) -> str:
    if name in FLOAT_COLUMNS:
        return "sc:Float"
    if name in INTEGER_COLUMNS:
        return "sc:Integer"
    return "sc:Text"


def _arrow_type(arrow_type) -> str | None:
    import pyarrow as pa

    if pa.types.is_dictionary(arrow_type):
        arrow_type = arrow_type.value_type
    if pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type):
        return "sc:Text"
    if pa.types.is_floating(arrow_type):
        return "sc:Float"
    if pa.types.is_integer(arrow_type):
        return "sc:Integer"
    if pa.types.is_boolean(arrow_type):
        return "sc:Boolean"
    return None  # structs etc.: handled by the caller or left out


def _field(record_set: str, name: str, data_type: str, source: dict, **extra) -> dict:
    node = {"@type": "cr:Field", "@id": f"{record_set}/{name}", "name": name}
    if "description" in extra:
        node["description"] = extra.pop("description")
    node["dataType"] = data_type
    node["source"] = source
    node.update(extra)
    return node


def _header(path: Path, delimiter: str) -> list[str]:
    with open(path, encoding="utf-8", newline="") as handle:
        return next(csv.reader(handle, delimiter=delimiter), [])


def _column_source(kind: str, node_id: str, column: str) -> dict:
    return {kind: {"@id": node_id}, "extract": {"column": column}}


def _metadata_record_set(release_dir: Path) -> dict:
    columns = _header(release_dir / CSV_PATH, ",")
    fields = []
    for name in columns:
        extra = {}
        if name == "split":  # the split names are the `splits` enumeration
            extra["references"] = {"field": {"@id": "splits/name"}}
        fields.append(
            _field("metadata", name, _data_type(name), _column_source("fileObject", METADATA_CSV.id, name), **extra)
        )
    node = {
        "@type": "cr:RecordSet",
        "@id": "metadata",
        "name": "metadata",
        "description": (
            "One record per specimen: taxonomy, DNA barcode, geography, image size fields, split. Read from the CSV: "
            f"{CSV_READING}"
        ),
    }
    if "processid" in columns:
        node["key"] = {"@id": "metadata/processid"}
    node["field"] = fields
    return node


def _bbox_record_set(release_dir: Path) -> dict:
    columns = _header(release_dir / BBOX.path, "\t")
    return {
        "@type": "cr:RecordSet",
        "@id": "bbox",
        "name": "bbox",
        "description": (
            f"The insect's bounding box (x0, y0, x1, y1) in original_full pixels. Read from a TSV: {CSV_READING}"
        ),
        "field": [_field("bbox", n, _data_type(n), _column_source("fileObject", BBOX.id, n)) for n in columns],
    }


def _side_table_record_set(release_dir: Path, rel: str) -> dict:
    record_set, key, description, types = SIDE_TABLES[rel]
    file_id = DESCRIBED[rel].id
    columns = _header(release_dir / rel, ",")
    node = {
        "@type": "cr:RecordSet",
        "@id": record_set,
        "name": record_set,
        "description": f"{description} Read from a CSV: {CSV_READING}",
    }
    if key in columns:
        node["key"] = {"@id": f"{record_set}/{key}"}
    node["field"] = [
        _field(record_set, n, types.get(n, "sc:Text"), _column_source("fileObject", file_id, n)) for n in columns
    ]
    return node


def _parquet_record_set(release_dir: Path, table: str, shards: list[str]) -> dict | None:
    import pyarrow.parquet as pq

    fileset_id, record_set = TABLES[table]
    schema = pq.read_schema(release_dir / shards[0])
    fields = []
    for item in schema:
        source = _column_source("fileSet", fileset_id, item.name)
        data_type = _arrow_type(item.type)
        if data_type is None and item.name == "image":  # Hugging Face Image: struct<bytes, path>
            source["transform"] = {"jsonPath": "bytes"}
            data_type = "sc:ImageObject"
        if data_type is None:
            continue
        extra = {"references": {"field": {"@id": "splits/name"}}} if item.name == "split" else {}
        fields.append(_field(record_set, item.name, data_type, source, **extra))
    if not fields:
        return None
    if record_set == "images_parquet":
        package = _images_package(release_dir, shards)
        description = f"The {package} images with processid and split, from Parquet shards."
    else:
        description = "The metadata table from its Parquet shards (Hugging Face layout)."
    node = {"@type": "cr:RecordSet", "@id": record_set, "name": record_set, "description": description}
    if "processid" in schema.names:
        node["key"] = {"@id": f"{record_set}/processid"}
    node["field"] = fields
    return node


def _images_package(release_dir: Path, shards: list[str]) -> str:
    """The image package the images Parquet holds (``export.image_package``), from the paths its rows name."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    for shard in shards:
        paths = pc.drop_null(pq.read_table(release_dir / shard, columns=["image.path"]).column(0))
        if len(paths):
            match = re.match(rf"{re.escape(IMAGES_DIR)}/([^/]+)/", paths[0].as_py())
            if match:
                return match.group(1)
    return "JPEG"


def _image_record_set(package: str, prefix: str) -> dict:
    record_set, fileset = f"images_{package}", {"fileSet": {"@id": f"images_{package}_files"}}
    base = re.escape(f"{prefix}{IMAGES_DIR}/{package}/")
    return {
        "@type": "cr:RecordSet",
        "@id": record_set,
        "name": record_set,
        "description": f"The {package} JPEGs: {IMAGES_DIR}/{package}/{{split}}/[{{chunk}}/]{{processid}}.jpg.",
        "key": {"@id": f"{record_set}/path"},
        "field": [
            _field(record_set, "image", "sc:ImageObject", {**fileset, "extract": {"fileProperty": "content"}}),
            _field(record_set, "path", "sc:Text", {**fileset, "extract": {"fileProperty": "fullpath"}}),
            _field(
                record_set,
                "processid",
                "sc:Text",
                {**fileset, "extract": {"fileProperty": "filename"}, "transform": {"regex": r"^(.+)\.jpg$"}},
            ),
            _field(
                record_set,
                "split",
                "sc:Text",
                {**fileset, "extract": {"fileProperty": "fullpath"}, "transform": {"regex": f"^{base}([^/]+)/.*$"}},
            ),
        ],
    }


def _splits_record_set() -> dict:
    data = []
    for name in SPLITS:
        url, description = SPLIT_INFO[name]
        # every row carries every field (mlcroissant checks), so the non-standard splits get a null url
        data.append({"splits/name": name, "splits/url": url, "splits/description": description})
    return {
        "@type": "cr:RecordSet",
        "@id": "splits",
        "name": "splits",
        "description": "The BIOSCAN-5M split names; url maps the standard ones to Croissant split classes.",
        "dataType": ["cr:Split", "sc:Enumeration"],
        "key": {"@id": "splits/name"},
        "field": [
            {"@type": "cr:Field", "@id": "splits/name", "name": "name", "dataType": "sc:Text"},
            {"@type": "cr:Field", "@id": "splits/url", "name": "url", "dataType": ["sc:URL", "cr:Split"]},
            {"@type": "cr:Field", "@id": "splits/description", "name": "description", "dataType": "sc:Text"},
        ],
        "data": data,
    }


def build_croissant(
    release_dir,
    output=None,
    *,
    info: dict,
    listed=None,
    hashes: Mapping[str, str] | None = None,
    sizes: Mapping[str, int] | None = None,
) -> dict:
    """The Croissant document for ``release_dir``, its paths relative to the folder of ``output``. ``listed`` (the
    files under ``release_dir``), ``hashes`` (path -> sha256) and ``sizes`` (path -> bytes): what the audit already
    knows from the manifest (a file gone from the release is described as the manifest lists it)."""
    release_dir = Path(release_dir)
    output = Path(output) if output is not None else release_dir / CROISSANT_PATH
    prefix = _prefix(release_dir, output.parent)
    try:  # never describe the output itself (a second write would hash the first)
        skip = [output.resolve().relative_to(release_dir.resolve()).as_posix()]
    except ValueError:
        skip = []
    found = release_files(release_dir, skip, listed, count_images=True)

    distribution = [_file_object(release_dir, rel, prefix, hashes or {}, sizes or {}) for rel in found["single"]]
    for table, shards in found["tables"].items():
        if shards:
            distribution.append(
                {
                    "@type": "cr:FileSet",
                    "@id": TABLES[table][0],
                    "name": f"{table}/*.parquet",
                    "encodingFormat": "application/x-parquet",
                    "includes": f"{prefix}{table}/*.parquet",
                }
            )
    for package, count in found["images"].items():
        if count:
            distribution.append(
                {
                    "@type": "cr:FileSet",
                    "@id": f"images_{package}_files",
                    "name": f"{IMAGES_DIR}/{package}",
                    "description": f"{count} {package} JPEGs.",
                    "encodingFormat": "image/jpeg",
                    "includes": f"{prefix}{IMAGES_DIR}/{package}/**/*.jpg",
                }
            )

    record_sets = [_splits_record_set()]
    if CSV_PATH in found["single"]:
        record_sets.append(_metadata_record_set(release_dir))
    if BBOX.path in found["single"]:
        record_sets.append(_bbox_record_set(release_dir))
    record_sets += [_side_table_record_set(release_dir, rel) for rel in SIDE_TABLES if rel in found["single"]]
    for table, shards in found["tables"].items():
        if shards and (node := _parquet_record_set(release_dir, table, shards)):
            record_sets.append(node)
    record_sets += [_image_record_set(p, prefix) for p, count in found["images"].items() if count]

    if reserved := sorted(set(info) & set(RESERVED_KEYS)):
        raise ValueError(f"info may not set {reserved}: this module writes them")
    doc = {"@context": CONTEXT, "@type": "sc:Dataset", "conformsTo": CONFORMS_TO}
    # the usual dataset properties in a fixed order, then any others (creator, keywords...) sorted
    doc.update((key, info[key]) for key in INFO_KEYS if info.get(key) is not None)
    doc.update((key, info[key]) for key in sorted(set(info) - set(INFO_KEYS)) if info[key] is not None)
    doc["distribution"] = distribution
    doc["recordSet"] = record_sets
    return doc


def write_croissant(release_dir, output=None, *, info: dict) -> dict:
    """Write ``croissant.json`` (default: in the release folder); byte-identical for the same release."""
    release_dir = Path(release_dir)
    output = Path(output) if output is not None else release_dir / CROISSANT_PATH
    doc = build_croissant(release_dir, output, info=info)
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(output.name + ".tmp")
    tmp.write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, output)
    return doc


def croissant_info(options: ExportOptions, provenance: dict) -> dict:
    return {
        "name": options.name,
        "version": options.version,
        "license": options.licence,
        "description": (
            "A BIOSCAN-5M-style release rebuilt from BOLD exports and imager photos by bioscan-rebuild. Its dataset "
            "card, README.md beside this folder (../README.md from this file), holds the statistics and figures, "
            "the split protocol, the provenance summary and the citation."
        ),
        **{k: v for k, v in provenance.items() if k in ("url", "citeAs", "datePublished")},
    }


def _write(context: ExportContext) -> dict:
    write_croissant(context.root, info=croissant_info(context.options, context.provenance))
    return {}


# last: it hashes every file the other formats and the side files put under the root
FORMAT = Format("croissant", _write, reads_tree=True)


def _load(path) -> tuple[Path, dict]:
    path = Path(path)
    return path.parent, json.loads(path.read_text(encoding="utf-8"))


def verify_hashes(path) -> list[str]:
    """Check every FileObject's sha256 and contentSize against the files on disk: the mismatches."""
    folder, doc = _load(path)
    errors = []
    for node in doc.get("distribution", []):
        if node.get("@type") != "cr:FileObject" or "contentUrl" not in node:
            continue
        file = folder / node["contentUrl"]
        if not file.is_file():
            errors.append(f"{node['@id']}: {node['contentUrl']} is missing")
            continue
        if "contentSize" in node and node["contentSize"] != f"{file.stat().st_size} B":
            errors.append(f"{node['@id']}: size {file.stat().st_size} B, expected {node['contentSize']}")
        if "sha256" in node and file_sha256(file) != node["sha256"]:
            errors.append(f"{node['@id']}: sha256 differs from {node['sha256']}")
    return errors


def uncovered_files(path, release_dir=None) -> list[str]:
    """Files under the release folder (default: croissant.json's folder) that no FileObject names and no
    FileSet glob matches, croissant.json and MANIFEST.json aside."""
    folder, doc = _load(path)
    release_dir = Path(release_dir) if release_dir is not None else folder
    urls, globs = set(), []
    for node in doc.get("distribution", []):
        if node.get("@type") == "cr:FileObject":
            urls.add(node.get("contentUrl"))
        elif node.get("@type") == "cr:FileSet":
            includes = node.get("includes", [])
            globs += [includes] if isinstance(includes, str) else includes
    prefix = _prefix(release_dir, folder)
    missing = []
    for root, dirs, files in os.walk(release_dir):
        dirs.sort()
        for name in sorted(files):
            rel = (Path(root) / name).relative_to(release_dir).as_posix()
            if rel in SKIPPED or (Path(root) / name).resolve() == Path(path).resolve():
                continue
            # fnmatch, as mlcroissant matches FileSet globs ('*' also crosses '/')
            if prefix + rel not in urls and not any(fnmatch.fnmatchcase(prefix + rel, g) for g in globs):
                missing.append(rel)
    return missing


def validate_croissant(path, *, warnings: bool = False) -> list[str]:
    """mlcroissant's static checks plus offline checks of the contentUrls: the errors (empty = valid), and
    mlcroissant's warnings (e.g. a recommended property such as license missing) too when ``warnings``."""
    import mlcroissant as mlc

    try:
        folder, doc = _load(path)
    except (OSError, ValueError) as exc:
        return [f"cannot read {path}: {exc}"]
    problems = []
    for node in doc.get("distribution", []):
        url = node.get("contentUrl")
        if url is None:
            continue
        if re.match(r"^[a-z][a-z0-9+.-]*:", url, re.IGNORECASE):
            problems.append(f"{node.get('@id')}: contentUrl {url} is not a local path")
        elif not (folder / url).is_file():
            problems.append(f"{node.get('@id')}: {url} is missing")
    ctx = mlc.Context()
    try:
        metadata = mlc.Metadata.from_file(ctx=ctx, file=os.fspath(path))
        mlc.Dataset.from_metadata(metadata)  # builds the operation graph: sources, joins, readers
    except Exception as exc:  # ValidationError mostly, but malformed input also raises assorted types
        return [*problems, f"{type(exc).__name__}: {exc}"]
    problems += [f"error: {e}" for e in sorted(ctx.issues.errors)]
    if warnings:
        problems += [f"warning: {w}" for w in sorted(ctx.issues.warnings)]
    return problems


def read_first_records(path, record_sets=None) -> dict[str, dict | None]:
    """The first record of every RecordSet (or of those named), read by mlcroissant from the local files;
    None for an empty RecordSet. mlcroissant checks the sha256 of the FileObjects it reads, not of FileSets."""
    import mlcroissant as mlc

    _, doc = _load(path)
    names = record_sets or [node["@id"] for node in doc.get("recordSet", [])]
    dataset = mlc.Dataset(jsonld=os.fspath(path))
    return {name: next(iter(dataset.records(record_set=name)), None) for name in names}
