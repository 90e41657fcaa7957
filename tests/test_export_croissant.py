"""Croissant export: a small synthetic release folder -> croissant.json, validated and read back with mlcroissant."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import shutil
import zipfile
from pathlib import Path

import h5py
import mlcroissant as mlc
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from bioscan_rebuild.core.schemas import SPLITS
from bioscan_rebuild.export.formats.croissant import (
    FLOAT_COLUMNS,
    INTEGER_COLUMNS,
    METADATA_COLUMNS,
    build_croissant,
    read_first_records,
    release_files,
    uncovered_files,
    validate_croissant,
    verify_hashes,
    write_croissant,
)

pytestmark = [  # third-party deprecations inside mlcroissant's reading, not ours
    pytest.mark.filterwarnings("ignore:ConjunctiveGraph is deprecated:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:The inplace keyword in DataFrame.reset_index"),
]

INFO = {
    "name": "BIOSCAN-5M-rebuild-test",
    "description": "Synthetic release used by the tests.",
    "license": "https://creativecommons.org/licenses/by/3.0/",
    "url": "https://example.org/bioscan5m",
    "version": "0.0.1",
    "citeAs": "@misc{test, title={test}}",
    "datePublished": "2024-01-01",
}
# (split, chunk) per record; pretrain/train/other_heldout get chunk sub-folders like the real release.
LAYOUT = [("pretrain", "3f")] * 6 + [("train", "a")] * 5 + [("val", "")] * 4 + [("test", "")] * 3 + [("train", "7")] * 2


def _rows() -> list[dict]:
    rows = []
    for i, (split, chunk) in enumerate(LAYOUT):
        labelled = split != "pretrain"
        rows.append(
            {
                "processid": f"BIOUG{1000 + i:05d}-A{i:02d}",
                "sampleid": f"S{i:04d}",
                "taxon": "Cecidomyiidae" if labelled else "Diptera",
                "phylum": "Arthropoda",
                "class": "Insecta",
                "order": "Diptera",
                "family": "Cecidomyiidae" if labelled else "",
                "subfamily": "",
                "genus": "Asphondylia" if labelled and i % 2 else "",
                "species": f"Asphondylia sp{i % 3}" if labelled and i % 2 else "",
                "dna_bin": f"BOLD:AAA{i:04d}",
                "dna_barcode": "ACGT" * 10,
                "country": "Canada",
                "province_state": "Ontario" if i % 3 else "",
                "coord-lat": f"{43.5 + i / 100:.4f}" if i % 4 else "",
                "coord-lon": f"{-80.25 - i / 100:.4f}",
                "image_measurement_value": str(1000 + 10 * i) if i % 5 else "",
                "area_fraction": f"{0.1 + i / 100:.3f}",
                "scale_factor": "1.25",
                "inferred_ranks": str(i % 3),
                "split": split,
                "index_bioscan_1M_insect": str(i) if i % 2 else "",
                "chunk": chunk,
            }
        )
    return rows


def _jpeg(i: int, size: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (size, size * 3 // 4), (10 * i % 256, 80, 160)).save(buf, format="JPEG", quality=80)
    return buf.getvalue()


def _write_parquet(path: Path, table) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)


def make_release(root: Path) -> list[dict]:
    """The release layout the release module writes, small: returns the metadata rows."""
    rows = _rows()
    (root / "metadata" / "csv").mkdir(parents=True)
    with open(root / "metadata/csv/BIOSCAN_5M_Insect_Dataset_metadata.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(METADATA_COLUMNS), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)

    def column(name):
        values = [r[name] or None for r in rows]
        if name in FLOAT_COLUMNS:
            return pa.array([None if v is None else float(v) for v in values], pa.float64())
        if name in INTEGER_COLUMNS:
            return pa.array([None if v is None else int(v) for v in values], pa.int64())
        if name in ("taxon", "phylum", "class", "order", "family", "country", "province_state"):
            return pa.array(values, pa.string()).dictionary_encode()
        return pa.array(values, pa.string())

    table = pa.table({name: column(name) for name in METADATA_COLUMNS})
    splits = [r["split"] for r in rows]
    for split in ("pretrain", "train", "val", "test"):
        mask = pa.array([s == split for s in splits])
        part = table.filter(mask)
        if split == "pretrain":  # two shards for one split
            _write_parquet(root / "metadata/parquet/data/pretrain-00000-of-00002.parquet", part.slice(0, 3))
            _write_parquet(root / "metadata/parquet/data/pretrain-00001-of-00002.parquet", part.slice(3))
        else:
            _write_parquet(root / f"metadata/parquet/data/{split}-00000-of-00001.parquet", part)

    image_rows = {s: [] for s in ("train", "val")}
    for i, row in enumerate(rows):
        if row["split"] not in ("train", "val"):
            continue  # pretrain/test have no images in this release
        chunk = row["chunk"]
        for package, size in (("cropped_256", 64), ("original_full", 128)):
            folder = root / "images" / package / row["split"]
            folder = folder / chunk if chunk else folder
            folder.mkdir(parents=True, exist_ok=True)
            (folder / f"{row['processid']}.jpg").write_bytes(_jpeg(i, size))
        image_rows[row["split"]].append(
            {"processid": row["processid"], "split": row["split"], "image": {"bytes": _jpeg(i, 64), "path": None}}
        )
    image_type = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    schema = pa.schema([("processid", pa.string()), ("split", pa.string()), ("image", image_type)])
    for split, items in image_rows.items():
        _write_parquet(
            root / f"images_parquet/data/{split}-00000-of-00001.parquet", pa.Table.from_pylist(items, schema=schema)
        )

    (root / "hdf5").mkdir()
    with h5py.File(root / "hdf5/BIOSCAN_5M.h5", "w", track_order=True) as h5:
        h5.create_dataset("train/processid", data=[r["processid"].encode() for r in rows[6:11]])
    (root / "metadata/jsonld").mkdir()
    for split in ("pretrain", "train"):
        (root / f"metadata/jsonld/{split}.jsonld").write_text(json.dumps({"@graph": [], "split": split}) + "\n")
    with open(root / "metadata/bbox.tsv", "w") as handle:
        handle.write("processid\twidth_original\theight_original\tx0\ty0\tx1\ty1\tscale_factor\tarea_fraction\n")
        for i, row in enumerate(rows[6:15]):
            handle.write(f"{row['processid']}\t1024\t768\t{10 + i}\t20\t900\t700\t1.25\t0.42\n")
    (root / "metadata/barcodes.fasta").write_text("".join(f">{r['processid']}\n{r['dna_barcode']}\n" for r in rows))
    (root / "metadata/rejects.csv").write_text("processid,reason\nX1,no_barcode\n")
    (root / "metadata/changes.csv").write_text("step,processid,field,old,new,rule,ratio\n1,X2,species,a,b,typo,\n")
    (root / "metadata/split_summary.csv").write_text("split,samples\ntrain,7\n")
    (root / "extra").mkdir()  # any other file: a hashed FileObject, not read
    with zipfile.ZipFile(root / "extra/BIOSCAN_5M_cropped_256_train.zip", "w") as archive:
        for path in sorted((root / "images/cropped_256/train").rglob("*.jpg")):
            info = zipfile.ZipInfo(f"bioscan5m/{path.relative_to(root).as_posix()}", date_time=(1980, 1, 1, 0, 0, 0))
            archive.writestr(info, path.read_bytes())
    (root / "MANIFEST.json").write_text("{}\n")
    return rows


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    root = tmp_path_factory.mktemp("release") / "bioscan5m"
    rows = make_release(root)
    write_croissant(root, info=INFO)
    return root, rows


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _walk(node):
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk(value)


@pytest.fixture(autouse=True)
def _offline(monkeypatch, tmp_path):
    """mlcroissant must validate and read from local paths only: a connection attempt fails the test, and
    nothing may land in its download cache."""
    import socket

    from mlcroissant._src.core import constants

    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    cache = tmp_path / "croissant-cache"
    monkeypatch.setattr(constants, "DOWNLOAD_PATH", cache / "download")
    yield
    assert not cache.exists(), "mlcroissant downloaded something"


def _doc(root: Path, name: str = "croissant.json") -> dict:
    return json.loads((root / name).read_text())


def test_constants_match_the_release_modules():
    from bioscan_rebuild.core.schemas import RELEASE_COLUMNS
    from bioscan_rebuild.core.schemas import SPLITS as PROJECT_SPLITS

    assert tuple(METADATA_COLUMNS) == tuple(RELEASE_COLUMNS)
    assert tuple(SPLITS) == tuple(PROJECT_SPLITS)


def test_document_shape(release):
    root, _ = release
    doc = _doc(root)
    context = doc["@context"]
    assert context["@vocab"] == "https://schema.org/"
    assert context["cr"] == "http://mlcommons.org/croissant/"
    assert context["sc"] == "https://schema.org/" and context["dct"] == "http://purl.org/dc/terms/"
    assert context["data"] == {"@id": "cr:data", "@type": "@json"}
    assert context["dataType"] == {"@id": "cr:dataType", "@type": "@vocab"}
    assert context["conformsTo"] == "dct:conformsTo" and context["citeAs"] == "cr:citeAs"
    for term in [
        "examples",
        "extract",
        "field",
        "fileProperty",
        "fileObject",
        "fileSet",
        "format",
        "includes",
        "isLiveDataset",
        "jsonPath",
        "key",
        "md5",
        "parentField",
        "path",
        "recordSet",
        "references",
        "regex",
        "repeated",
        "replace",
        "samplingRate",
        "separator",
        "source",
        "subField",
        "transform",
        "equivalentProperty",
        "column",
    ]:
        expected = {"@id": "cr:examples", "@type": "@json"} if term == "examples" else f"cr:{term}"
        assert context[term] == expected, term
    assert context["rai"] == "http://mlcommons.org/croissant/RAI/"
    assert doc["conformsTo"] == "http://mlcommons.org/croissant/1.1"
    for key, value in INFO.items():
        assert doc[key] == value
    assert "dateModified" not in doc and "dateCreated" not in doc

    ids = [node["@id"] for node in _walk(doc) if "@type" in node and "@id" in node]
    assert len(ids) == len(set(ids)), "duplicate @id"
    record_sets = [rs["@id"] for rs in doc["recordSet"]]
    assert record_sets == [
        "splits",
        "metadata",
        "bbox",
        "rejects",
        "changes",
        "split_summary",
        "parquet_metadata",
        "images_parquet",
        "images_original_full",
        "images_cropped_256",
    ]
    splits = doc["recordSet"][0]
    assert "cr:Split" in splits["dataType"] and "sc:Enumeration" in splits["dataType"]
    assert [row["splits/name"] for row in splits["data"]] == list(SPLITS)
    metadata = doc["recordSet"][1]
    types = {f["name"]: f["dataType"] for f in metadata["field"]}
    assert list(types) == list(METADATA_COLUMNS)
    assert types["coord-lat"] == "sc:Float" and types["inferred_ranks"] == "sc:Integer" and types["chunk"] == "sc:Text"
    split_field = next(f for f in metadata["field"] if f["name"] == "split")
    assert split_field["references"] == {"field": {"@id": "splits/name"}}
    # every CSV-backed record set warns that mlcroissant reads `NA` as missing (the file holds the text)
    csv_backed = [rs for rs in doc["recordSet"] if any("fileObject" in f.get("source", {}) for f in rs["field"])]
    assert csv_backed and all(
        "takes the text NA, null or nan for a missing value" in rs["description"] for rs in csv_backed
    )

    for node in doc["distribution"]:
        url = node.get("contentUrl")
        if url is not None:
            assert "://" not in url and not url.startswith("/"), url
        if node["@type"] == "cr:FileSet":
            assert "containedIn" not in node  # a local folder: mlcroissant walks the croissant.json folder
    filesets = {n["@id"]: n for n in doc["distribution"] if n["@type"] == "cr:FileSet"}
    assert filesets["images_cropped_256_files"]["includes"] == "images/cropped_256/**/*.jpg"
    assert filesets["images_cropped_256_files"]["encodingFormat"] == "image/jpeg"
    assert filesets["metadata_parquet_files"]["includes"] == "metadata/parquet/data/*.parquet"
    assert not any("croissant.json" in (n.get("contentUrl") or "") for n in doc["distribution"])


def test_validates_offline(release):
    root, _ = release
    assert validate_croissant(root / "croissant.json", warnings=True) == []  # not even a warning


def test_reads_one_record_from_every_record_set(release):
    root, rows = release
    doc = _doc(root)
    records = read_first_records(root / "croissant.json")
    assert set(records) == {rs["@id"] for rs in doc["recordSet"]}
    assert all(record for record in records.values())

    assert records["splits"]["splits/name"] == "pretrain"
    assert records["splits"]["splits/url"] == "cr:TrainingSplit"

    first = rows[0]
    meta = records["metadata"]
    assert meta["metadata/processid"] == first["processid"].encode()
    assert meta["metadata/split"] == b"pretrain" and meta["metadata/chunk"] == b"3f"
    assert meta["metadata/coord-lon"] == pytest.approx(float(first["coord-lon"]))
    assert meta["metadata/area_fraction"] == pytest.approx(float(first["area_fraction"]))
    assert meta["metadata/inferred_ranks"] == int(first["inferred_ranks"])
    assert first["coord-lat"] == "" and meta["metadata/coord-lat"] is None  # empty cell -> missing
    assert meta["metadata/family"] is None

    parquet = records["parquet_metadata"]  # shards in name order: pretrain-00000-of-00002 first
    assert parquet["parquet_metadata/processid"] == first["processid"].encode()
    assert parquet["parquet_metadata/scale_factor"] == pytest.approx(1.25)
    assert parquet["parquet_metadata/taxon"] == first["taxon"].encode()  # a dictionary column

    bbox = records["bbox"]
    assert bbox["bbox/processid"] == rows[6]["processid"].encode()
    assert (bbox["bbox/x0"], bbox["bbox/y1"], bbox["bbox/width_original"]) == (10, 700, 1024)
    assert bbox["bbox/area_fraction"] == pytest.approx(0.42)

    pq_image = records["images_parquet"]
    assert pq_image["images_parquet/processid"] == rows[6]["processid"].encode()
    assert pq_image["images_parquet/split"] == b"train"
    assert pq_image["images_parquet/image"].convert("RGB").size == (64, 48)

    for package, size in (("cropped_256", (64, 48)), ("original_full", (128, 96))):
        record = records[f"images_{package}"]
        path = record[f"images_{package}/path"].decode()
        # first in path order: images/{package}/train/7/... (chunk '7' sorts before 'a')
        pid = next(r["processid"] for r in rows if r["split"] == "train" and r["chunk"] == "7")
        assert path == f"images/{package}/train/7/{pid}.jpg"
        assert record[f"images_{package}/processid"] == pid.encode()
        assert record[f"images_{package}/split"] == b"train"
        image = record[f"images_{package}/image"]
        assert image.size == size
        with Image.open(root / path) as on_disk:
            assert on_disk.convert("RGB").tobytes() == image.convert("RGB").tobytes()


def test_hashes_and_coverage(release):
    root, _ = release
    doc = _doc(root)
    objects = [n for n in doc["distribution"] if n["@type"] == "cr:FileObject"]
    named = set()
    for node in objects:
        path = root / node["contentUrl"]
        assert node["sha256"] == _sha256(path), node["@id"]
        assert node["contentSize"] == f"{path.stat().st_size} B"
        named.add(node["contentUrl"])
    globbed = set()
    for node in doc["distribution"]:
        if node["@type"] == "cr:FileSet":
            globbed |= {p.relative_to(root).as_posix() for p in root.glob(node["includes"]) if p.is_file()}
    files = {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()} - {
        "croissant.json",
        "MANIFEST.json",
    }
    assert files == named | globbed
    assert "hdf5/BIOSCAN_5M.h5" in named and "metadata/jsonld/train.jsonld" in named
    assert {"extra/BIOSCAN_5M_cropped_256_train.zip", "metadata/split_summary.csv"} <= named
    assert "metadata/parquet/data/pretrain-00001-of-00002.parquet" in named  # shards hashed one by one
    assert any(f.startswith("images/cropped_256/val/") for f in globbed)  # no chunk folder
    assert any(f.startswith("images/original_full/train/a/") for f in globbed)  # chunk folder
    assert verify_hashes(root / "croissant.json") == []
    assert uncovered_files(root / "croissant.json") == []


def test_tampered_and_missing_files_are_detected(release, tmp_path):
    root = tmp_path / "bioscan5m"
    shutil.copytree(release[0], root)
    assert verify_hashes(root / "croissant.json") == []
    tsv = root / "metadata/bbox.tsv"
    tsv.write_text(tsv.read_text().replace("\t900\t", "\t901\t", 1))  # same size, other bytes
    (root / "metadata/jsonld/pretrain.jsonld").unlink()
    problems = verify_hashes(root / "croissant.json")
    assert len(problems) == 2
    assert any(p.startswith("bbox_tsv: sha256") for p in problems)
    assert any("pretrain.jsonld is missing" in p for p in problems)
    # mlcroissant itself checks the sha256 of a FileObject it reads
    with pytest.raises(mlc.GenerationError) as raised:
        read_first_records(root / "croissant.json", ["bbox"])
    assert "Hash of downloaded file" in str(raised.value.__cause__)


def test_output_is_byte_identical(release, tmp_path):
    root = release[0]
    first = (root / "croissant.json").read_bytes()
    write_croissant(root, info=INFO)
    assert (root / "croissant.json").read_bytes() == first
    other = tmp_path / "elsewhere" / "bioscan5m"
    shutil.copytree(root, other)
    (other / "croissant.json").unlink()
    write_croissant(other, info=INFO)
    assert (other / "croissant.json").read_bytes() == first  # relative paths: independent of the location


def test_croissant_above_the_release_folder(release, tmp_path):
    root = tmp_path / "bioscan5m"
    shutil.copytree(release[0], root)
    (root / "croissant.json").unlink()
    output = tmp_path / "croissant.json"
    doc = write_croissant(root, output, info=INFO)
    urls = [n["contentUrl"] for n in doc["distribution"] if "contentUrl" in n]
    assert urls and all(u.startswith("bioscan5m/") for u in urls)
    assert validate_croissant(output) == []
    record = read_first_records(output, ["images_cropped_256"])["images_cropped_256"]
    assert record["images_cropped_256/split"] == b"train"
    assert verify_hashes(output) == []
    with pytest.raises(ValueError, match="folder above"):
        write_croissant(root, tmp_path / "other" / "croissant.json", info=INFO)


def test_partial_release_describes_what_exists(tmp_path):
    root = tmp_path / "bioscan5m"
    (root / "metadata/csv").mkdir(parents=True)
    with open(root / "metadata/csv/BIOSCAN_5M_Insect_Dataset_metadata.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(METADATA_COLUMNS), lineterminator="\n")
        writer.writeheader()
        writer.writerows(_rows()[:3])
    (root / "notes.txt").write_text("an unexpected file is still hashed\n")
    doc = write_croissant(root, info={"name": "partial"})
    assert [rs["@id"] for rs in doc["recordSet"]] == ["splits", "metadata"]
    assert {n["contentUrl"] for n in doc["distribution"]} == {
        "metadata/csv/BIOSCAN_5M_Insect_Dataset_metadata.csv",
        "notes.txt",
    }
    assert "license" not in doc and "datePublished" not in doc
    assert validate_croissant(root / "croissant.json") == []
    assert any("license" in w for w in validate_croissant(root / "croissant.json", warnings=True))
    assert (
        read_first_records(root / "croissant.json")["metadata"]["metadata/processid"]
        == _rows()[0]["processid"].encode()
    )
    assert release_files(root)["images"]["cropped_256"] == []


def test_validate_reports_problems(release, tmp_path):
    root = tmp_path / "bioscan5m"
    shutil.copytree(release[0], root)
    doc = _doc(root)
    broken = json.loads(json.dumps(doc))
    bbox = next(rs for rs in broken["recordSet"] if rs["@id"] == "bbox")
    bbox["field"][0]["source"] = {"fileObject": {"@id": "no_such_file"}, "extract": {"column": "x"}}
    (root / "broken.json").write_text(json.dumps(broken))
    problems = validate_croissant(root / "broken.json")
    assert len(problems) == 1 and "no_such_file" in problems[0]

    remote = json.loads(json.dumps(doc))
    remote["distribution"][0]["contentUrl"] = "https://example.org/file.csv"
    (root / "remote.json").write_text(json.dumps(remote))
    problems = validate_croissant(root / "remote.json")
    assert len(problems) == 1 and "not a local path" in problems[0]

    (root / "metadata/rejects.csv").unlink()
    assert validate_croissant(root / "croissant.json") == ["rejects_csv: metadata/rejects.csv is missing"]


def test_info_extras_and_reserved_keys(release):
    root = release[0]
    doc = build_croissant(root, info={**INFO, "keywords": ["insects", "DNA barcodes"], "creator": None})
    assert list(doc)[3:11] == [*INFO, "keywords"] and "creator" not in doc
    with pytest.raises(ValueError, match="recordSet"):
        build_croissant(root, info={"name": "x", "recordSet": []})


def test_the_images_parquet_is_described_as_the_package_it_holds(tmp_path):
    """``export.image_package`` may be any package: the description used to say cropped_256 whatever it held."""
    import pyarrow.parquet as pq

    from bioscan_rebuild.export.formats.croissant import _parquet_record_set

    image_type = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    schema = pa.schema([("processid", pa.string()), ("split", pa.string()), ("image", image_type)])
    shard = "images_parquet/data/train-00000-of-00001.parquet"
    (tmp_path / shard).parent.mkdir(parents=True)
    rows = [
        {"processid": "P0", "split": "train", "image": None},
        {"processid": "P1", "split": "train", "image": {"bytes": b"\xff\xd8", "path": "images/original_256/x/P1.jpg"}},
    ]
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), tmp_path / shard)
    node = _parquet_record_set(tmp_path, "images_parquet/data", [shard])
    assert node["description"] == "The original_256 images with processid and split, from Parquet shards."


def test_the_statistics_figures_have_their_media_types():
    """The stats stage writes each figure as PNG and SVG: the SVG ones were application/octet-stream."""
    from bioscan_rebuild.export.formats.croissant import _encoding

    assert _encoding("metadata/stats/figures/size_fields.svg") == "image/svg+xml"
    assert _encoding("metadata/stats/figures/size_fields.png") == "image/png"


def test_the_split_descriptions_fit_what_the_protocol_puts_in_each_split():
    """``test`` was "seen species: test" where half its records had no species (a drawn barcode takes every record
    carrying it), and ``other_heldout`` "species held out from all other splits" where a species of it was in
    ``test_unseen`` too; the report's caption said ``pretrain`` holds every record without a species."""
    from bioscan_rebuild.export.formats.croissant import SPLIT_INFO
    from conftest import REPO

    for split in ("val", "test", "val_unseen", "test_unseen"):
        assert (
            "with every record that carries a barcode drawn for it (some without a species label)"
            in (SPLIT_INFO[split][1])
        )
    assert "held out from all other splits" not in SPLIT_INFO["other_heldout"][1]
    assert "placeholder names of described species' genera" in SPLIT_INFO["key_unseen"][1]
    caption = " ".join((REPO / "workflow" / "report" / "stats" / "splits.rst").read_text().split())
    assert "which holds every record without a species label" not in caption
