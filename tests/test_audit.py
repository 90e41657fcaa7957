"""`bioscan-rebuild audit`: a release checks out whole, and each way of tampering with it is found, named by
file, record and field, with a non-zero exit. Tampering that rewrites the manifest too is found by the
record-by-record checks."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from bioscan_rebuild import __version__
from bioscan_rebuild.export.audit import parquet_paths, rendered_as_csv
from conftest import REPO, rewrite_manifest, run_snakemake

CSV = "bioscan5m/metadata/csv/BIOSCAN_5M_Insect_Dataset_metadata.csv"


@pytest.fixture(scope="module")
def built(sample_dir, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("audit")
    (workdir / "config").mkdir()
    shutil.copy(REPO / "config" / "config.yaml", workdir / "config" / "config.yaml")
    shutil.copytree(sample_dir, workdir / "resources" / "sample")
    run_snakemake(workdir)
    return workdir


@pytest.fixture
def copy(built, tmp_path):
    """A copy of the built project (release and sources) to tamper with."""
    target = tmp_path / "project"
    shutil.copytree(built / "results" / "release", target / "results" / "release")
    shutil.copytree(built / "resources", target / "resources")
    shutil.copytree(built / "config", target / "config")
    return target


def audit(project: Path, *extra: str) -> subprocess.CompletedProcess:
    env = {"PYTHONPATH": str(REPO / "workflow")}
    command = [sys.executable, "-m", "bioscan_rebuild", "audit", "results/release", *extra]
    return subprocess.run(command, capture_output=True, text=True, env=env, cwd=project)


def test_a_release_as_built_is_whole_with_its_sources(copy):
    result = audit(copy, "--sources", "config/config.yaml")
    assert result.returncode == 0, result.stdout[-3000:]
    assert "whole" in result.stdout and "agree across the formats, the lineage and the sources" in result.stdout


def _edit_csv_cell(release: Path) -> str:
    path = release / CSV
    lines = path.read_text().split("\n")
    header = lines[0].split(",")
    fields = lines[1].split(",")
    pid = fields[0].strip('"')
    column = header.index('"family"')
    fields[column] = '"Culicidae"'
    lines[1] = ",".join(fields)
    path.write_text("\n".join(lines))
    return f"record {pid} field family: "


def _edit_parquet_value(release: Path) -> str:
    path = next((release / "bioscan5m/metadata/parquet/data").glob("train-*.parquet"))
    table = pq.read_table(path)
    species = table["species"].combine_chunks().cast("string").to_pylist()
    pid = table["processid"][0].as_py()
    species[0] = "Musca domestica"
    import pyarrow as pa

    table = table.set_column(table.schema.get_field_index("species"), "species", pa.array(species).dictionary_encode())
    pq.write_table(table, path)
    return f"parquet/data: record {pid} field species: 'Musca domestica'"


def _images(release: Path, package: str = "cropped_256") -> list[Path]:
    return sorted((release / "bioscan5m" / "images" / package).rglob("*.jpg"))


def _swap_images(release: Path) -> str:
    first, second = _images(release)[:2]
    a, b = first.read_bytes(), second.read_bytes()
    first.write_bytes(b)
    second.write_bytes(a)
    return f"record {first.stem} image differs"


def _flip_jpeg_byte(release: Path) -> str:
    image = _images(release)[3]
    data = bytearray(image.read_bytes())
    data[len(data) // 2] ^= 0x01
    image.write_bytes(bytes(data))
    return f"record {image.stem} image differs"


def _remove_file(release: Path) -> str:
    (release / "bioscan5m/metadata/bbox.tsv").unlink()
    return "bioscan5m/metadata/bbox.tsv: in the manifest but missing"


def _add_file(release: Path) -> str:
    (release / "bioscan5m/images/cropped_256/train/EXTRA-1.jpg").write_bytes(b"\xff\xd8\xff\xd9")
    return "bioscan5m/images/cropped_256/train/EXTRA-1.jpg: not in the manifest"


def _edit_lineage_row(release: Path) -> str:
    path = release / "bioscan5m/metadata/records_lineage.csv"
    lines = path.read_text().split("\n")
    fields = lines[1].split(",")
    pid = fields[0].strip('"')
    fields[3] = '"' + "0" * 64 + '"'
    lines[1] = ",".join(fields)
    path.write_text("\n".join(lines))
    return f"record {pid} names"


def _edit_jsonld_value(release: Path) -> str:
    path = release / "bioscan5m/metadata/jsonld/train.jsonld"
    lines = path.read_text().split("\n")
    row = next(i for i, line in enumerate(lines) if line.startswith('{"@id":"rec:'))
    node = json.loads(lines[row].rstrip(","))
    node["barcodeSequence"] = node["barcodeSequence"][:-1] + ("A" if node["barcodeSequence"][-1] != "A" else "C")
    lines[row] = json.dumps(node, sort_keys=True, ensure_ascii=False, separators=(",", ":")) + ","
    path.write_text("\n".join(lines))
    return f"train.jsonld: record {node['occurrenceID']} field dna_barcode: "


def _edit_jsonld_node(release: Path, change) -> str:
    """One record node of train.jsonld edited by ``change(node)``, written as the writer writes nodes."""
    path = release / "bioscan5m/metadata/jsonld/train.jsonld"
    lines = path.read_text().split("\n")
    row = next(i for i, line in enumerate(lines) if line.startswith('{"@id":"rec:') and '"taxonRank"' in line)
    node = json.loads(lines[row].rstrip(","))
    change(node)
    lines[row] = json.dumps(node, sort_keys=True, ensure_ascii=False, separators=(",", ":")) + ","
    path.write_text("\n".join(lines))
    return node["occurrenceID"]


def _retype_jsonld_node(release: Path) -> str:
    _edit_jsonld_node(release, lambda node: node.update({"@type": "dwc:Event"}))
    return "1 record nodes in a block are not typed dwc:Occurrence"


def _jsonld_node_context(release: Path) -> str:
    _edit_jsonld_node(release, lambda node: node.update({"@context": {"genus": None, "species": None}}))
    return "a node of the graph holds an @context of its own"


def _jsonld_taxon_rank(release: Path) -> str:
    pid = _edit_jsonld_node(release, lambda node: node.update({"taxonRank": "phylum"}))
    return f"record {pid} field taxonRank: 'phylum', its labels give"


def _jsonld_is_part_of(release: Path) -> str:
    pid = _edit_jsonld_node(release, lambda node: node.update({"isPartOf": "release:splits/test"}))
    return f"record {pid} field isPartOf: 'release:splits/test', its split 'release:splits/train'"


def _edit_jsonld_hash(release: Path, key: str) -> str:
    """A hash a JSON-LD node states (the photo's, the source photo's, the barcode's) made another: only the fields
    the csv holds were compared."""
    path = release / "bioscan5m/metadata/jsonld/train.jsonld"
    lines = path.read_text().split("\n")
    row = next(i for i, line in enumerate(lines) if f'"{key}":' in line and line.startswith('{"@id":"rec:'))
    node = json.loads(lines[row].rstrip(","))
    node[key] = "0" * 64
    lines[row] = json.dumps(node, sort_keys=True, ensure_ascii=False, separators=(",", ":")) + ","
    path.write_text("\n".join(lines))
    return node["occurrenceID"]


def _edit_jsonld_image_hash(release: Path) -> str:
    pid = _edit_jsonld_hash(release, "imageSha256")
    return f"train.jsonld: record {pid} field sha256_original_full: '{'0' * 64}', records_lineage.csv '"


def _edit_jsonld_source_photo_hash(release: Path) -> str:
    pid = _edit_jsonld_hash(release, "sourceImageSha256")
    return f"train.jsonld: record {pid} field image_sha256: '{'0' * 64}', records_lineage.csv '"


def _edit_jsonld_barcode_hash(release: Path) -> str:
    pid = _edit_jsonld_hash(release, "barcodeSha256")
    return f"train.jsonld: record {pid} field barcode_sha256: '{'0' * 64}', sha256 of its dna_barcode '"


def _edit_split_summary(release: Path) -> str:
    """A split's size in split_summary.csv made one more: the file was never read."""
    path = release / "bioscan5m/metadata/split_summary.csv"
    lines = path.read_text().split("\n")
    row = next(i for i, line in enumerate(lines) if line.startswith("train,"))
    fields = lines[row].split(",")
    held = int(fields[1])
    fields[1] = str(held + 1)
    lines[row] = ",".join(fields)
    path.write_text("\n".join(lines))
    return f"split_summary.csv: train samples {held + 1}, the csv holds {held}"


def _edit_barcode_qc(release: Path, column: str, value) -> tuple[str, object]:
    """A field of the first row of barcode_qc.csv and its Parquet copy alike (the file was never read); returns
    the record and the value it held."""
    import pyarrow as pa

    path = release / "bioscan5m/metadata/barcode_qc.csv"
    lines = path.read_text().split("\n")
    header = [name.strip('"') for name in lines[0].split(",")]
    fields = lines[1].split(",")
    at = header.index(column)
    pid, was = fields[0].strip('"'), fields[at]
    fields[at] = str(value)  # a text value comes quoted, as the CSV writes it
    lines[1] = ",".join(fields)
    path.write_text("\n".join(lines))
    parquet = path.with_suffix(".parquet")
    table = pq.read_table(parquet)
    values = table[column].to_pylist()
    values[0] = value.strip('"') if isinstance(value, str) else value
    table = table.set_column(at, column, pa.array(values, table.schema.field(column).type))
    pq.write_table(table, parquet)
    return pid, was


def _edit_barcode_qc_length(release: Path) -> str:
    pid, was = _edit_barcode_qc(release, "length", 7)
    return f"barcode_qc.csv: record {pid} field length: 7, its dna_barcode has {was}"


def _edit_barcode_qc_status(release: Path) -> str:
    pid, _ = _edit_barcode_qc(release, "barcode_status", '"short_barcode"')
    return f"barcode_qc.csv: record {pid} field barcode_status: 'short_barcode', released records have 'ok'"


def _edit_barcode_qc_parquet_alone(release: Path) -> str:
    import pyarrow as pa

    parquet = release / "bioscan5m/metadata/barcode_qc.parquet"
    table = pq.read_table(parquet)
    flags = table["flags"].to_pylist()
    flags[0] = "gaps"
    pq.write_table(table.set_column(table.column_names.index("flags"), "flags", pa.array(flags)), parquet)
    return f"barcode_qc.parquet: record {table['processid'][0].as_py()} field flags: 'gaps', csv ''"


def _released_ids(release: Path) -> set[str]:
    import csv

    with open(release / CSV, newline="") as handle:
        return {row["processid"] for row in csv.DictReader(handle)}


def _edit_last_change(release: Path) -> str:
    """The value a released record's field was last changed to, edited in changes.csv (the log was never read)."""
    import csv

    path = release / "bioscan5m/metadata/changes.csv"
    with open(path, newline="") as handle:
        rows = list(csv.reader(handle))
    released = _released_ids(release)
    last = {(row[1], row[2]): i for i, row in enumerate(rows[1:], 1)}  # the log is in step order
    row = rows[next(i for (pid, field), i in last.items() if pid in released and field == "species")]
    row[4] = "Bogus"
    with open(path, "w", newline="") as handle:
        csv.writer(handle, quoting=csv.QUOTE_NONNUMERIC, lineterminator="\n").writerows(rows)
    return f"changes.csv: record {row[1]} field species: 'Bogus', the csv holds "


def _exclusion_of_a_released_record(release: Path) -> str:
    pid = sorted(_released_ids(release))[0]
    path = release / "bioscan5m/metadata/changes.csv"
    path.write_text(path.read_text() + f'99,"{pid}","record","","excluded","correction",,"report"\n')
    return f"changes.csv: record {pid} is excluded by the log and released"


def _drop_split(release: Path) -> str:
    """A split's records taken out of every format and side file alike: only the accounting still counts them."""
    import pandas as pd
    import pyarrow as pa
    import pyarrow.compute as pc

    root = release / "bioscan5m"
    table = pd.read_csv(root / CSV.split("/", 1)[1], dtype=str, keep_default_na=False)
    counts = table["split"].value_counts()
    split = counts.index[-1]  # the smallest
    gone = set(table.loc[table["split"] == split, "processid"])
    for name in ("metadata/csv/BIOSCAN_5M_Insect_Dataset_metadata.csv", "metadata/records_lineage.csv"):
        lines = (root / name).read_text().split("\n")
        (root / name).write_text("\n".join(line for line in lines if line.split(",")[0].strip('"') not in gone))
    lineage = pq.read_table(root / "metadata/records_lineage.parquet")
    keep = pc.invert(pc.is_in(lineage["processid"], pa.array(sorted(gone))))
    pq.write_table(lineage.filter(keep), root / "metadata/records_lineage.parquet")
    for path in [*root.glob(f"metadata/parquet/data/{split}-*"), *root.glob(f"images_parquet/data/{split}-*")]:
        path.unlink()
    (root / f"metadata/jsonld/{split}.jsonld").unlink()
    for folder in root.glob(f"images/*/{split}"):
        shutil.rmtree(folder)
    with h5py.File(root / "hdf5/BIOSCAN_5M.h5", "r+") as h5:
        del h5[split]
    return f"accounting.json: {len(table)} records released, the release holds {len(table) - counts[split]}"


def _delete_image(release: Path) -> str:
    image = _images(release)[2]
    image.unlink()
    return f"record {image.stem} names a cropped_256 image, no file"


def _blank_lineage_hash(release: Path) -> str:
    path = release / "bioscan5m/metadata/records_lineage.csv"
    lines = path.read_text().split("\n")
    column = lines[0].split(",").index('"sha256_cropped_256"')
    fields = lines[1].split(",")
    fields[column] = ""
    lines[1] = ",".join(fields)
    path.write_text("\n".join(lines))
    return f"record {fields[0].strip(chr(34))} has no cropped_256 sha256"


def _edit_images_parquet(release: Path) -> str:
    import pyarrow as pa

    path = sorted((release / "bioscan5m/images_parquet/data").glob("*.parquet"))[0]
    table = pq.read_table(path)
    images = table["image"].to_pylist()
    images[0] = {"bytes": images[1]["bytes"], "path": images[0]["path"]}
    table = table.set_column(table.schema.get_field_index("image"), "image", pa.array(images, table["image"].type))
    pq.write_table(table, path)
    return f"record {table['processid'][0].as_py()}: image bytes differ from"


def _edit_fasta_base(release: Path) -> str:
    path = release / "bioscan5m/metadata/barcodes.fasta"
    lines = path.read_text().split("\n")
    pid = lines[0][1:].split("|")[0]
    lines[1] = ("C" if lines[1][0] != "C" else "T") + lines[1][1:]
    path.write_text("\n".join(lines))
    return f"barcodes.fasta: record {pid} field dna_barcode: "


def _drop_fasta_entry(release: Path) -> str:
    path = release / "bioscan5m/metadata/barcodes.fasta"
    entries = path.read_text().split(">")  # "" then one "header\nsequence lines\n" per entry
    pid = entries[2].split("|")[0]
    path.write_text(">".join(entries[:2] + entries[3:]))
    return f"barcodes.fasta: record {pid} of the csv is missing"


def _jsonld_node(release: Path, node: dict) -> None:
    """Insert ``node`` as the first node of the train split's graph, one line, as the writer lays nodes out."""
    path = release / "bioscan5m/metadata/jsonld/train.jsonld"
    text = path.read_text()
    line = json.dumps(node, sort_keys=True, separators=(",", ":")) + ",\n"
    at = text.index('"@graph": [\n') + len('"@graph": [\n')
    path.write_text(text[:at] + line + text[at:])


def _add_jsonld_record_under_a_full_iri(release: Path) -> str:
    """A record node whose @id is spelled out in full instead of as rec:...: the audit skipped it."""
    path = release / "bioscan5m/metadata/jsonld/train.jsonld"
    records = json.loads(path.read_text())["@context"]["rec"]
    _jsonld_node(release, {"@id": records + "FORGED-1", "@type": "dwc:Occurrence", "occurrenceID": "FORGED-1"})
    return "record FORGED-1 is not in the csv's train split"


def _add_jsonld_foreign_node(release: Path) -> str:
    _jsonld_node(release, {"@id": "https://example.org/specimen/1", "@type": "dwc:Occurrence", "genus": "Forgedia"})
    return "node 'https://example.org/specimen/1' is neither a record nor part of the release"


def _edit_hdf5_version(release: Path) -> str:
    with h5py.File(release / "bioscan5m/hdf5/BIOSCAN_5M.h5", "r+") as h5:
        h5.attrs["version"] = "9.9.9"
    return "hdf5/BIOSCAN_5M.h5: version '9.9.9', bioscan5m/croissant.json says '0.1.0'"


def _nested_manifest(release: Path) -> str:
    (release / "bioscan5m/metadata/MANIFEST.json").write_text('{"files": {}}\n')
    return "bioscan5m/metadata/MANIFEST.json: not in the manifest"


def _linked_folder(release: Path) -> str:
    outside = release.parent / "outside"
    outside.mkdir()
    (outside / "FORGED-1.jpg").write_bytes(b"\xff\xd8\xff\xd9")
    (release / "bioscan5m/images/cropped_256/extra").symlink_to(outside)
    return f"bioscan5m/images/cropped_256/extra: a link to a folder (to {outside})"


def _stray_image(release: Path) -> str:
    image = _images(release)[5]
    stray = image.with_name("FAKE0001-99.jpg")
    stray.write_bytes(image.read_bytes())
    return f"{stray.relative_to(release).as_posix()}: an image no released record has"


def _images_parquet_rows(release: Path, change) -> str:
    import pyarrow as pa

    path = sorted((release / "bioscan5m/images_parquet/data").glob("*.parquet"))[0]
    table = pq.read_table(path)
    images = table["image"].to_pylist()
    pid = table["processid"][0].as_py()
    images[0] = change(release, images[0])
    table = table.set_column(table.schema.get_field_index("image"), "image", pa.array(images, table["image"].type))
    pq.write_table(table, path)
    return pid


def _images_parquet_other_package(release: Path) -> str:
    def uncropped(release, image):
        other = image["path"].replace("/cropped_256/", "/original_256/")
        return {"bytes": (release / "bioscan5m" / other).read_bytes(), "path": other}

    pid = _images_parquet_rows(release, uncropped)
    return f"record {pid}: its image names 'images/original_256/"


def _images_parquet_null(release: Path) -> str:
    pid = _images_parquet_rows(release, lambda release, image: None)
    return f"record {pid}: no image, though its cropped_256 file is released"


def _edit_bbox_box(release: Path) -> str:
    path = release / "bioscan5m/metadata/bbox.tsv"
    lines = path.read_text().split("\n")
    fields = lines[1].split("\t")
    fields[3:7] = ["1", "1", "2", "2"]  # its size fields as they were
    lines[1] = "\t".join(fields)
    path.write_text("\n".join(lines))
    return f"record {fields[0]}: its box does not lie in its photo or give its area_fraction"


def _repeat_bbox_row(release: Path) -> str:
    path = release / "bioscan5m/metadata/bbox.tsv"
    lines = path.read_text().rstrip("\n").split("\n")
    path.write_text("\n".join([*lines, lines[2]]) + "\n")
    return f"record {lines[2].split(chr(9))[0]} has more than one row"


def _hdf5_other_package(release: Path) -> str:
    """The attribute set to another package, and the first train image replaced by that package's image."""
    with h5py.File(release / "bioscan5m/hdf5/BIOSCAN_5M.h5", "r+") as h5:
        h5.attrs["image_package"] = "original_256"
    return "image_package 'original_256', the release's config says 'cropped_256'"


def _hdf5_group_of_no_split(release: Path) -> str:
    with h5py.File(release / "bioscan5m/hdf5/BIOSCAN_5M.h5", "r+") as h5:
        h5.create_group("bogus").create_dataset("processid", data=[b"FORGED-1"])
    return "hdf5/BIOSCAN_5M.h5: group bogus is no split of the release"


def _rename_reject_row(release: Path, reason: str, to: str | None) -> str:
    """The first ``reason`` row of rejects.csv renamed to ``to`` (None: a released record): the counts by reason
    stay, which was all that was compared."""
    path = release / "bioscan5m/metadata/rejects.csv"
    lines = path.read_text().split("\n")
    to = to or (release / CSV).read_text().split("\n")[1].split(",")[0].strip('"')
    row = next(i for i, line in enumerate(lines) if line.startswith(f'"record","{reason}",'))
    fields = lines[row].split(",")
    fields[3] = f'"{to}"'
    lines[row] = ",".join(fields)
    path.write_text("\n".join(lines))
    return to


def _duplicate_reject_renamed(release: Path) -> str:
    pid = _rename_reject_row(release, "duplicate_record", "INVENTED-99")
    return f"record {pid}: a copy set aside (duplicate_record) for one the release neither holds nor rejects"


def _refused_reject_renamed(release: Path) -> str:
    return f"record {_rename_reject_row(release, 'no_specimen', None)} is rejected (no_specimen) and released"


def _config_not_an_object(release: Path) -> str:
    """The release's config.json, which four checks read, made a JSON list: each of them used to fail alone."""
    (release / "bioscan5m/metadata/config.json").write_text("[]\n")
    return "bioscan5m/metadata/config.json: not the JSON object the build writes"


def _edit_croissant(release: Path, change) -> None:
    path = release / "bioscan5m/croissant.json"
    doc = json.loads(path.read_text())
    change(doc)
    path.write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n")


def _croissant_licence(release: Path) -> None:
    _edit_croissant(release, lambda doc: doc.__setitem__("license", "https://example.org/licence"))


def _hdf5_licence(release: Path) -> None:
    with h5py.File(release / "bioscan5m/hdf5/BIOSCAN_5M.h5", "r+") as h5:
        h5.attrs["licence"] = "https://example.org/licence"


def _croissant_field_column(release: Path) -> None:
    def point_genus_at_family(doc):
        metadata = next(node for node in doc["recordSet"] if node["@id"] == "metadata")
        genus = next(field for field in metadata["field"] if field["name"] == "genus")
        genus["source"]["extract"]["column"] = "family"

    _edit_croissant(release, point_genus_at_family)


def _croissant_record_set_dropped(release: Path) -> None:
    _edit_croissant(release, lambda doc: doc.__setitem__("recordSet", doc["recordSet"][:1] + doc["recordSet"][2:]))


def _croissant_file_dropped(release: Path) -> None:
    _edit_croissant(
        release, lambda doc: doc.__setitem__("distribution", [n for n in doc["distribution"] if n["@id"] != "hdf5"])
    )


def _card_count(release: Path) -> str:
    path = release / "README.md"
    lines = path.read_text().split("\n")
    number, line = next((i, line) for i, line in enumerate(lines, 1) if " insect specimens, each" in line)
    lines[number - 1] = "9" + line
    path.write_text("\n".join(lines))
    return f"README.md: line {number}: "


def _jsonld_record_count(release: Path) -> str:
    path = release / "bioscan5m/metadata/jsonld/train.jsonld"
    text = path.read_text()
    count = int(re.search(r'"recordCount":(\d+)', text).group(1))
    path.write_text(text.replace(f'"recordCount":{count}', f'"recordCount":{count + 1}'))
    return f"train.jsonld: the split node's recordCount: {count + 1}, the build writes {count}"


def _jsonld_head_licence(release: Path) -> str:
    path = release / "bioscan5m/metadata/jsonld/val.jsonld"
    lines = path.read_text().split("\n")
    number = next(i for i, line in enumerate(lines, 1) if '"bioscan:Release"' in line)
    lines[number - 1] = re.sub(r'"license":"[^"]*"', '"license":"https://example.org/licence"', lines[number - 1])
    path.write_text("\n".join(lines))
    return f"val.jsonld: line {number}: "


def _provenance_config(release: Path) -> None:
    path = release / "bioscan5m/metadata/provenance.jsonld"
    doc = json.loads(path.read_text())
    next(node for node in doc["@graph"] if node["@id"] == "build:config")["sha256"] = "0" * 64
    path.write_text(json.dumps(doc))


def _provenance_software_version(release: Path) -> None:
    """The version provenance.jsonld names decides whether croissant.json, the card and the JSON-LD heads are made
    again: edited there, it turned those checks off (a licence edited beside it passed)."""
    path = release / "bioscan5m/metadata/provenance.jsonld"
    doc = json.loads(path.read_text())
    next(node for node in doc["@graph"] if "softwareVersion" in node)["softwareVersion"] = "0.0.1"
    path.write_text(json.dumps(doc))


def _edit_provenance(release: Path, edit) -> None:
    path = release / "bioscan5m/metadata/provenance.jsonld"
    doc = json.loads(path.read_text())
    edit(doc["@graph"])
    path.write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")


def _provenance_file(graph: list, ending: str) -> dict:
    return next(n for n in graph if n.get("@type") == "prov:Entity" and str(n.get("path", "")).endswith(ending))


def _provenance_copy_hash(release: Path) -> None:
    """The graph's hash of a file the release copies (the run's accounting) edited."""
    _edit_provenance(release, lambda graph: _provenance_file(graph, "results/accounting.json").update(sha256="0" * 64))


def _provenance_export_hash(release: Path) -> None:
    _edit_provenance(release, lambda graph: _provenance_file(graph, "bold_export.tsv").update(sha256="f" * 64))


def _provenance_derivation(release: Path) -> None:
    _edit_provenance(
        release, lambda graph: _provenance_file(graph, "results/accounting.json").update(wasDerivedFrom=[])
    )


def _provenance_hash_deleted(release: Path) -> None:
    _edit_provenance(release, lambda graph: _provenance_file(graph, "results/metadata/barcodes.fasta").pop("sha256"))


def _provenance_removed(release: Path) -> None:
    """The graph and its Croissant node gone: the card still names it."""
    (release / "bioscan5m/metadata/provenance.jsonld").unlink()
    croissant = release / "bioscan5m/croissant.json"
    doc = json.loads(croissant.read_text())
    doc["distribution"] = [n for n in doc["distribution"] if "provenance" not in str(n.get("contentUrl", ""))]
    croissant.write_text(json.dumps(doc, indent=2) + "\n")


def _released_stats_table(release: Path) -> None:
    """A statistics table edited: it is a copy of the build's file, whose hash the graph holds."""
    path = release / "bioscan5m/metadata/stats/countries.csv"
    lines = path.read_text().split("\n")
    lines[1] = lines[1].rsplit(",", 1)[0] + ",999"
    path.write_text("\n".join(lines))


def _swap_stats_figures(release: Path) -> None:
    """Two figures swapped: each is a file of the build, but not the one of its name."""
    figures = release / "bioscan5m/metadata/stats/figures"
    first, second = figures / "splits.png", figures / "genetic_distances.png"
    data = first.read_bytes()
    first.write_bytes(second.read_bytes())
    second.write_bytes(data)


def _lineage_parquet_cell(release: Path, column: str, value) -> str:
    path = release / "bioscan5m/metadata/records_lineage.parquet"
    table = pq.read_table(path)
    values = table[column].to_pylist()
    values[0] = value
    field = table.schema.field(column)
    pq.write_table(table.set_column(table.schema.names.index(column), field, pa.array(values, field.type)), path)
    return f"record {table['processid'][0].as_py()} field {column}: {str(value)!r}"


def _lineage_csv_cell(release: Path, column: str, value: str) -> str:
    """One cell of records_lineage.csv and its Parquet copy alike."""
    import pyarrow.csv as pacsv

    path = release / "bioscan5m/metadata/records_lineage.csv"
    names = pacsv.read_csv(path).schema.names
    options = pacsv.ConvertOptions(column_types=dict.fromkeys(names, pa.string()), strings_can_be_null=True)
    table = pacsv.read_csv(path, convert_options=options)
    values = table[column].to_pylist()
    values[0] = value
    pacsv.write_csv(table.set_column(names.index(column), column, pa.array(values, pa.string())), path)
    _lineage_parquet_cell(release, column, value)
    return table["processid"][0].as_py()


def _lineage_batch(release: Path) -> str:
    pid = _lineage_csv_cell(release, "batch", "not-a-batch")
    return f"record {pid} (the first of 1 with batch 'not-a-batch'"


def _lineage_changes(release: Path) -> str:
    pid = _lineage_csv_cell(release, "changes", "invented_rule:species")
    return f"record {pid} field changes: 'invented_rule:species'"


TAMPERS = {  # name -> (tamper, what the finding says (None: what the tamper returns), found behind a new manifest)
    "csv_cell": (_edit_csv_cell, "field family", True),
    "parquet_value": (_edit_parquet_value, "field species: 'Musca domestica'", True),
    "swapped_image": (_swap_images, "image differs", True),
    "flipped_jpeg_byte": (_flip_jpeg_byte, "image differs", True),
    "removed_file": (_remove_file, "in the manifest but missing", False),
    "added_file": (_add_file, "not in the manifest", False),
    "lineage_row": (_edit_lineage_row, "not what the accounting lists", True),
    "jsonld_value": (_edit_jsonld_value, "field dna_barcode: ", True),
    # these four used to pass as whole behind a rewritten manifest (or crash the audit: the blank hash)
    "dropped_split": (_drop_split, "records released, the release holds", True),
    "deleted_image": (_delete_image, "names a cropped_256 image, no file", True),
    "blank_lineage_hash": (_blank_lineage_hash, "has no cropped_256 sha256", True),
    "images_parquet_bytes": (_edit_images_parquet, "image bytes differ from", True),
    # and these five too: the FASTA was never read, a JSON-LD node not spelled rec:... was skipped, and nothing
    # compared the versions the files name
    "fasta_base": (_edit_fasta_base, "field dna_barcode: ", True),
    "fasta_entry_dropped": (_drop_fasta_entry, "of the csv is missing", True),
    "jsonld_record_under_a_full_iri": (_add_jsonld_record_under_a_full_iri, "FORGED-1 is not in the csv", True),
    "jsonld_foreign_node": (_add_jsonld_foreign_node, "is neither a record nor part of the release", True),
    "hdf5_version": (_edit_hdf5_version, "version '9.9.9'", True),
    # a file named MANIFEST.json passed at any depth; a folder linked in was never looked at
    "nested_manifest": (_nested_manifest, "bioscan5m/metadata/MANIFEST.json: not in the manifest", True),
    "linked_folder": (_linked_folder, "cropped_256/extra: a link to a folder", True),
    # an image file no record has, and an images Parquet row holding another package's image, or none
    "stray_image": (_stray_image, "an image no released record has", True),
    "images_parquet_other_package": (_images_parquet_other_package, "its image names 'images/original_256/", True),
    "images_parquet_null": (_images_parquet_null, "no image, though its cropped_256 file is released", True),
    # only bbox.tsv's size fields were compared: a box edited alone, or a row twice, passed
    "bbox_box": (_edit_bbox_box, "its box does not lie in its photo or give its area_fraction", True),
    "bbox_row_twice": (_repeat_bbox_row, "has more than one row", True),
    # the HDF5 file's own attribute chose which images it was checked against; a group of no split was unread
    "hdf5_package": (_hdf5_other_package, "the release's config says 'cropped_256'", True),
    "hdf5_group": (_hdf5_group_of_no_split, "group bogus is no split of the release", True),
    # only the counts by reason were compared: a row could name any record
    "duplicate_reject_renamed": (_duplicate_reject_renamed, "INVENTED-99: a copy set aside (duplicate_record)", True),
    "refused_reject_renamed": (_refused_reject_renamed, "is rejected (no_specimen) and released", True),
    "config_not_an_object": (_config_not_an_object, "config.json: not the JSON object the build writes", True),
    # the hashes the JSON-LD states and the split summary were never compared with anything
    "jsonld_image_hash": (_edit_jsonld_image_hash, None, True),
    "jsonld_source_photo_hash": (_edit_jsonld_source_photo_hash, None, True),
    "jsonld_barcode_hash": (_edit_jsonld_barcode_hash, None, True),
    "split_summary": (_edit_split_summary, None, True),
    # barcode_qc.csv and its Parquet copy were never read
    "barcode_qc_length": (_edit_barcode_qc_length, None, True),
    "barcode_qc_status": (_edit_barcode_qc_status, None, True),
    "barcode_qc_parquet_alone": (_edit_barcode_qc_parquet_alone, None, True),
    # changes.csv was never read
    "changes_new": (_edit_last_change, None, True),
    "changes_exclusion": (_exclusion_of_a_released_record, None, True),
    # the licence and everything croissant.json, the card and the JSON-LD heads say beyond hashes went unchecked
    "croissant_licence": (_croissant_licence, "licence 'https://example.org/licence'", True),
    "hdf5_licence": (_hdf5_licence, "BIOSCAN_5M.h5: licence 'https://example.org/licence'", True),
    "croissant_field_column": (
        _croissant_field_column,
        'recordSet[metadata].field[metadata/genus].source.extract.column: "family", the build writes "genus"',
        True,
    ),
    "croissant_record_set_dropped": (_croissant_record_set_dropped, "missing (the build describes it)", True),
    "croissant_file_dropped": (_croissant_file_dropped, "distribution[hdf5]: missing (the build describes it)", True),
    "card_count": (_card_count, None, True),
    "jsonld_record_count": (_jsonld_record_count, None, True),
    "jsonld_head_licence": (_jsonld_head_licence, None, True),
    "provenance_config": (_provenance_config, "provenance.jsonld: build:config sha256 000000000000", True),
    # only the fields the csv holds were compared: a node retyped (gone to an RDF reader), a node's own @context
    # (mapping its labels to nothing), its split or its derived terms edited all passed
    "provenance_software_version": (
        _provenance_software_version,
        f"train.jsonld: built by bioscan-rebuild {__version__}, bioscan5m/metadata/provenance.jsonld says 0.0.1",
        True,
    ),
    "jsonld_node_type": (_retype_jsonld_node, None, True),
    "jsonld_node_context": (_jsonld_node_context, None, True),
    "jsonld_taxon_rank": (_jsonld_taxon_rank, None, True),
    "jsonld_is_part_of": (_jsonld_is_part_of, None, True),
    # provenance.jsonld was held to nothing but the config's hash and the version: every other edit passed
    "provenance_copy_hash": (_provenance_copy_hash, "named …/accounting.json has accounting.json's sha256", True),
    "provenance_export_hash": (_provenance_export_hash, "bold_export.tsv has sha256 ffffffffffff", True),
    "provenance_derivation": (_provenance_derivation, "is derived from other files than its job", True),
    "provenance_shapes": (_provenance_hash_deleted, "does not conform to the provenance shapes", True),
    "provenance_removed": (_provenance_removed, "provenance.jsonld: missing (the card names it", True),
    "stats_table": (_released_stats_table, "…/countries.csv has bioscan5m/metadata/stats/countries.csv's", True),
    "stats_figures_swapped": (_swap_stats_figures, "…/figures/splits.png has bioscan5m/metadata/stats/figures/", True),
    # the lineage's Parquet copy was compared on six columns, its batch and changes with nothing
    "lineage_parquet_line": (lambda release: _lineage_parquet_cell(release, "source_line", 100_000), None, True),
    "lineage_parquet_raw": (lambda release: _lineage_parquet_cell(release, "raw_nucleotides", "ACGT"), None, True),
    "lineage_batch": (_lineage_batch, None, True),
    "lineage_changes": (_lineage_changes, None, True),
}


def test_a_missing_file_and_an_edited_card_are_both_found(copy):
    """A file gone from the release stopped the whole self-description check (croissant.json was made again from
    the files, which stat-ed the missing one): the card edited beside it was not reported."""
    release = copy / "results" / "release"
    card = _card_count(release)
    rewrite_manifest(release)
    (release / "bioscan5m/metadata/stats/sites.csv").unlink()
    manifest = json.loads((release / "MANIFEST.json").read_text())
    manifest["files"]["bioscan5m/metadata/bbox.tsv"]["bytes"] += 1  # its size alone differs
    (release / "MANIFEST.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    result = audit(copy)
    assert result.returncode == 1
    assert "bioscan5m/metadata/stats/sites.csv: in the manifest but missing" in result.stdout
    assert card in result.stdout and "cannot be read" not in result.stdout, result.stdout[-3000:]
    size = (release / "bioscan5m/metadata/bbox.tsv").stat().st_size
    assert f"({size} bytes), manifest " in result.stdout and f"({size + 1} bytes)" in result.stdout


@pytest.mark.parametrize("tamper", TAMPERS)
def test_each_way_of_tampering_is_found(copy, tamper):
    change, phrase, deep = TAMPERS[tamper]
    release = copy / "results" / "release"
    said = change(release)
    phrase = phrase or said  # None in TAMPERS: the tamper says what to find (the record it picked)
    result = audit(copy)
    assert result.returncode == 1, result.stdout[-3000:]
    assert result.stdout.strip().splitlines()[-1].startswith("audit: results/release: ")
    assert "problems" in result.stdout.strip().splitlines()[-1]
    if deep:
        rewrite_manifest(release)
        result = audit(copy)
        assert result.returncode == 1, f"{tamper} hides behind a rewritten manifest"
        assert phrase in result.stdout, result.stdout[-3000:]
    else:
        assert phrase in result.stdout, result.stdout[-3000:]


def test_a_batch_path_spelt_otherwise_than_the_workflow_spells_it_is_no_finding(tmp_path):
    """A config that writes its exports ``./resources/...`` or as absolute paths: the accounting keeps that
    spelling, while the lineage and the graph hold the one Snakemake gives (``resources/...``). The sources are
    found by the jobs that read them, the lineage's batches by the normal form of the path."""
    import pyarrow as pa

    from bioscan_rebuild.export.audit import Findings, _check_lineage_batches
    from bioscan_rebuild.export.audit_description import _check_provenance

    accounting = {
        "batches": {
            "export:a": {"export": "./resources/a/export.tsv", "export_sha256": "1" * 64},
            "images:a": {"files": 3},
            "export:b": {"export": str(tmp_path / "b.tsv"), "export_sha256": "2" * 64},
        }
    }
    lineage = pa.table(
        {
            "processid": ["p1", "p2"],
            "batch": ["a", "b"],
            "source_file": ["resources/a/export.tsv", str(tmp_path / "b.tsv")],
        }
    )
    findings = Findings(None)
    _check_lineage_batches("lineage", lineage, accounting, findings)
    graph = [
        {
            "@id": "build:jobs/pa",
            "@type": "prov:Activity",
            "rule": "parse_export",
            "wildcards": '{"batch": "a"}',
            "used": ["build:files/x"],
        },
        {
            "@id": "build:jobs/pb",
            "@type": "prov:Activity",
            "rule": "parse_export",
            "wildcards": '{"batch": "b"}',
            "used": ["build:files/y"],
        },
        {
            "@id": "build:jobs/la",
            "@type": "prov:Activity",
            "rule": "list_images",
            "wildcards": '{"batch": "a"}',
            "used": ["build:files/z"],
        },
        {"@id": "build:files/x", "@type": "prov:Entity", "path": "resources/a/export.tsv", "sha256": "1" * 64},
        {"@id": "build:files/y", "@type": "prov:Entity", "path": "b.tsv", "sha256": "2" * 64},
        {"@id": "build:files/z", "@type": "prov:Entity", "path": "resources/a/images", "fileCount": 3},
    ]
    metadata = tmp_path / "release" / "bioscan5m" / "metadata"
    metadata.mkdir(parents=True)
    (metadata / "provenance.jsonld").write_text(json.dumps({"@graph": graph}))
    (metadata / "config.json").write_text("{}")
    from unittest import mock

    with mock.patch("bioscan_rebuild.export.audit_description._provenance_conforms", return_value=(True, "")):
        _check_provenance(tmp_path / "release", {}, accounting, findings)
    assert findings.report() == []
    graph[3]["sha256"] = "3" * 64  # the job's own file is what is compared
    (metadata / "provenance.jsonld").write_text(json.dumps({"@graph": graph}))
    with mock.patch("bioscan_rebuild.export.audit_description._provenance_conforms", return_value=(True, "")):
        _check_provenance(tmp_path / "release", {}, accounting, findings)
    assert findings.report() == [
        "bioscan5m/metadata/provenance.jsonld: batch a's export resources/a/export.tsv has sha256 333333333333, "
        "accounting.json says 111111111111"
    ]


def test_the_statistics_are_made_again_from_the_released_rows(copy):
    """A statistics table edited with the card line it feeds, and the graph's hash of it, passed as whole (the card
    was made again from the shipped table; edited alone, the honest card was blamed)."""
    release = copy / "results" / "release"
    table = release / "bioscan5m/metadata/stats/label_completeness.csv"
    lines = table.read_text().split("\n")
    number, row = next((i, line) for i, line in enumerate(lines) if line.startswith("species,"))
    cells = row.split(",")
    cells[2] = str(int(cells[2]) + 100)  # labelled records
    lines[number] = ",".join(cells)
    table.write_text("\n".join(lines))
    forged = hashlib.sha256(table.read_bytes()).hexdigest()
    _edit_provenance(
        release,
        lambda graph: _provenance_file(graph, "results/stats/label_completeness.csv").update(
            sha256=forged, contentSize=table.stat().st_size
        ),
    )
    card = release / "README.md"
    text = card.read_text()
    said = next(line for line in text.split("\n") if line.startswith("| species |"))
    card.write_text(text.replace(said, said.replace(f" {row.split(',')[2]} ", f" {cells[2]} ", 1)))
    rewrite_manifest(release)
    result = audit(copy)
    assert result.returncode == 1, result.stdout[-3000:]
    assert (
        f'metadata/stats/label_completeness.csv: line {number + 1}: "{lines[number]}", the released rows give "{row}"'
        in (result.stdout)
    ), result.stdout[-3000:]
    assert "README.md" not in result.stdout  # the card agrees with the forged table: the table is the finding


def test_an_edited_source_export_is_found(copy):
    config = yaml.safe_load((copy / "config" / "config.yaml").read_text())
    export = copy / config["batches"][1]["export"]
    export.write_bytes(export.read_bytes().replace(b"Insecta", b"Arachnida", 1))
    result = audit(copy, "--sources", "config/config.yaml")
    assert result.returncode == 1
    assert f"{config['batches'][1]['export']}: sha256 differs from the one the build read" in result.stdout


def _forge(release: Path, columns: tuple[str, ...], old: str, new: str) -> None:
    """A forgery consistent across the formats: every whole cell ``old`` of ``columns`` made ``new`` in the CSV,
    JSON-LD (as quoted text), Parquet, HDF5 and the FASTA headers, and the manifest rewritten."""
    import pyarrow as pa

    root = release / "bioscan5m"
    csv = root / "metadata/csv/BIOSCAN_5M_Insect_Dataset_metadata.csv"
    for path in [csv, *root.glob("metadata/jsonld/*.jsonld")]:
        path.write_text(path.read_text().replace(f'"{old}"', f'"{new}"'))
    for path in root.glob("metadata/parquet/data/*.parquet"):
        table = pq.read_table(path)
        for column in columns:
            values = table[column].combine_chunks().cast("string").to_pylist()
            values = [new if v == old else v for v in values]
            index = table.schema.get_field_index(column)
            table = table.set_column(index, column, pa.array(values).dictionary_encode())
        pq.write_table(table, path)
    if "taxon" in columns:  # the FASTA headers name it: >processid|dna_bin|taxon
        fasta = root / "metadata/barcodes.fasta"
        fasta.write_text(fasta.read_text().replace(f"|{old}\n", f"|{new}\n"))
    with h5py.File(root / "hdf5/BIOSCAN_5M.h5", "r+") as h5:
        for split in h5:
            for column in (c for c in columns if c in h5[split]):  # the HDF5 holds no geography
                values = [v.decode() for v in h5[split][column][:]]
                h5[split][column][:] = [new if v == old else v for v in values]
    rewrite_manifest(release)


def _first_row(release: Path) -> dict:
    import csv

    path = release / "bioscan5m/metadata/csv/BIOSCAN_5M_Insect_Dataset_metadata.csv"
    with open(path, newline="") as handle:
        return next(csv.DictReader(handle))


def _formats_agree_only_the_build_copies_tell(result) -> None:
    """A forgery consistent across the formats: without the sources, only the statistics made again from the
    released rows (and the graph's hash of a copied file the forgery rewrote) tell."""
    lines = result.stdout.strip().splitlines()
    assert result.returncode == 1 and lines, result.stdout[-2000:]
    assert any("metadata/stats/" in line for line in lines[:-1]), result.stdout[-2000:]
    assert all("metadata/stats/" in line or "provenance.jsonld" in line for line in lines[:-1]), result.stdout[-2000:]


def test_the_replay_finds_labels_the_sources_do_not_give(copy):
    """A release whose CSV, Parquet, HDF5 and JSON-LD were all edited alike, manifest rewritten: only the
    replay of the raw exports can tell."""
    release = copy / "results" / "release"
    first = _first_row(release)
    # a family: a genus forged alone would leave its species' epithets, which the JSON-LD check finds
    _forge(release, ("family", "taxon"), first["family"], "Forgedidae")
    _formats_agree_only_the_build_copies_tell(audit(copy))
    result = audit(copy, "--sources", "config/config.yaml")
    assert result.returncode == 1
    assert (
        f"replay of the sources: record {first['processid']} field family: '{first['family']}', csv 'Forgedidae'"
        in result.stdout
    )


def test_the_replay_finds_a_geography_the_sources_do_not_give(copy):
    """The replay compared the labels only: a country (or barcode, or coordinate) forged alike in every format
    left the release whole."""
    release = copy / "results" / "release"
    first = _first_row(release)
    assert first["country"]
    _forge(release, ("country",), first["country"], "Atlantis")
    _formats_agree_only_the_build_copies_tell(audit(copy))
    result = audit(copy, "--sources", "config/config.yaml", "--all")
    assert result.returncode == 1
    assert f"record {first['processid']} field country: '{first['country']}', csv 'Atlantis'" in result.stdout


def test_a_reject_row_deleted_or_a_bbox_edited_is_found_with_the_manifest_rewritten(copy):
    """rejects.csv and bbox.tsv were never checked against anything: a record's reject row deleted, or a box's
    size fields edited, with the manifest rewritten, left the release whole."""
    release = copy / "results" / "release"
    metadata = release / "bioscan5m" / "metadata"
    rejects = (metadata / "rejects.csv").read_text().split("\n")
    dropped = next(line for line in rejects[1:] if line.startswith('"record","no_specimen"'))
    (metadata / "rejects.csv").write_text("\n".join(line for line in rejects if line != dropped))
    bbox = (metadata / "bbox.tsv").read_text().split("\n")
    fields = bbox[1].split("\t")
    fields[-1] = "0.9999"  # area_fraction
    (metadata / "bbox.tsv").write_text("\n".join([bbox[0], "\t".join(fields), *bbox[2:]]))
    rewrite_manifest(release)
    result = audit(copy)
    assert result.returncode == 1, result.stdout[-2000:]
    assert "rejects.csv: 20 record rows of reason no_specimen, the accounting counts 21" in result.stdout
    assert f"bbox.tsv: record {fields[0]} field area_fraction: 0.9999, csv " in result.stdout


def test_the_replay_reads_the_batches_in_delivery_order(copy):
    """Batches listed newest first with their `delivered` dates: the workflow reads them by date, and so must the
    replay (it read them as listed, kept the older copy of a redelivered record and called the release forged)."""
    path = copy / "config" / "config.yaml"
    config = yaml.safe_load(path.read_text())
    first, second = config["batches"]
    config["batches"] = [{**second, "delivered": "2024-06-20"}, {**first, "delivered": "2024-01-10"}]
    path.write_text(yaml.safe_dump(config))
    result = audit(copy, "--sources", "config/config.yaml")
    assert result.returncode == 0, result.stdout[-3000:]


def test_an_edited_source_photo_is_found(copy):
    config = yaml.safe_load((copy / "config" / "config.yaml").read_text())
    folder = copy / config["batches"][0]["images"]
    lineage = (copy / "results/release/bioscan5m/metadata/records_lineage.csv").read_text().split("\n")
    header = [c.strip('"') for c in lineage[1 - 1].split(",")]
    rows = [dict(zip(header, (c.strip('"') for c in line.split(",")))) for line in lineage[1:] if line]
    row = next(r for r in rows if r["image_batch"] == config["batches"][0]["name"])
    photo = folder / row["image_path"]
    photo.write_bytes(photo.read_bytes()[:2] + b"\xff\xfe\x00\x04ok" + photo.read_bytes()[2:])
    result = audit(copy, "--sources", "config/config.yaml")
    assert result.returncode == 1
    assert f"sha256 differs from the photo the build read for {row['processid']}" in result.stdout


def test_five_of_a_kind_then_a_count_or_every_problem_with_all(copy):
    release = copy / "results" / "release"
    path = release / CSV
    lines = path.read_text().split("\n")
    column = [c.strip('"') for c in lines[0].split(",")].index("country")
    for k in range(1, 9):
        fields = lines[k].split(",")
        fields[column] = '"Atlantis"'
        lines[k] = ",".join(fields)
    path.write_text("\n".join(lines))
    rewrite_manifest(release)
    output = audit(copy).stdout
    shown = [line for line in output.splitlines() if "parquet/data: record" in line and "field country" in line]
    assert len(shown) == 5 and "bioscan5m/metadata/parquet/data country: and 3 more" in output
    every = [line for line in audit(copy, "--all").stdout.splitlines() if "parquet/data: record" in line]
    assert len([line for line in every if "field country" in line]) == 8
    # a count of records, not of lines: --all showed six of ten split-history rows, "and 1 more" without it
    history = release / "bioscan5m/metadata/split_history.csv"
    rows = history.read_text().split("\n")
    edited = [i for i, row in enumerate(rows) if ',"pretrain",' in row][:10]
    for i in edited:
        rows[i] = rows[i].replace(',"pretrain",', ',"test",')
    history.write_text("\n".join(rows))
    rewrite_manifest(release)
    moved = [line for line in audit(copy, "--all").stdout.splitlines() if "split_history.csv: record" in line]
    assert len(edited) == 10 and len([line for line in moved if "the csv says pretrain" in line]) == 10
    assert "split history: and 5 more" in audit(copy).stdout


def test_a_csv_written_by_another_writer_is_read_cell_by_cell(copy):
    """Every cell quoted: not the bytes the export writes from the Parquet, so the audit reads the CSV and
    compares it with the Parquet record by record; the same records and values are whole."""
    import pyarrow.csv as pacsv

    release = copy / "results" / "release"
    table = pacsv.read_csv(release / CSV)
    pacsv.write_csv(table, release / CSV, pacsv.WriteOptions(quoting_style="all_valid"))
    rewrite_manifest(release)
    result = audit(copy)
    assert result.returncode == 0, result.stdout[-3000:]


def test_a_truncated_jsonld_file_is_named(copy):
    release = copy / "results" / "release"
    path = release / "bioscan5m/metadata/jsonld/train.jsonld"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    rewrite_manifest(release)
    result = audit(copy)
    assert result.returncode == 1
    assert "jsonld/train.jsonld: not the JSON-LD the release writes" in result.stdout, result.stdout[-3000:]


def test_the_csv_of_a_release_as_built_is_the_csv_its_parquet_renders(built):
    """The fast path: no CSV parse when the export's writer, run on the Parquet rows, gives the CSV's bytes."""
    root = built / "results" / "release" / "bioscan5m"
    table = rendered_as_csv(root / CSV.removeprefix("bioscan5m/"), parquet_paths(root))
    assert table is not None
    assert table.num_rows == len((root / CSV.removeprefix("bioscan5m/")).read_text().splitlines()) - 1


def test_every_rejected_photo_is_named_in_rejects_csv_with_its_hash(built):
    """A photo that left with its record (a bad barcode, no specimen in it) had no row: the record's row held no
    export line, photo name or sha256, and rejects.csv named 4 of the 27 photos the accounting rejected."""
    import pandas as pd

    release = built / "results" / "release"
    rejects = pd.read_csv(release / "bioscan5m/metadata/rejects.csv", dtype=str, keep_default_na=False)
    accounting = json.loads((release / "accounting.json").read_text())
    named = rejects[rejects["image_path"] != ""]
    assert len(named) == accounting["rejected"]["images"]
    later = rejects[rejects["reason"].isin(["no_specimen", "no_barcode"])]
    assert len(later) == 23
    for row in later.itertuples():
        assert row.source_file and int(row.source_line) > 1
        photo = built / "resources" / "sample" / row.batch / "images" / row.image_path
        assert hashlib.sha256(photo.read_bytes()).hexdigest() == row.image_sha256


def test_lineage_image_hashes_need_files_only_where_the_images_were_released():
    """The lineage names every package's image sha256 whatever export.formats says; a release without the
    'images' format has no image files, and that is no finding (the check for deleted images flagged every
    record of such a release)."""
    import pyarrow as pa

    from bioscan_rebuild.export.audit import Findings, _check_image_hashes

    lineage = pa.table({"processid": ["P1", "P2"], "sha256_cropped_256": ["a" * 64, "b" * 64]})
    rows = pa.table({"split": ["test", "test"], "chunk": [None, None]})
    findings = Findings(None)
    _check_image_hashes("lineage", lineage, rows, {}, findings)
    assert findings.report() == []
    manifest = {"bioscan5m/images/cropped_256/test/P1.jpg": {"sha256": "a" * 64, "bytes": 1}}
    _check_image_hashes("lineage", lineage, rows, manifest, findings)
    assert findings.report() == ["lineage: record P2 names a cropped_256 image, no file images/cropped_256/test/P2.jpg"]


def _lineage_rows(release: Path) -> tuple[list[str], list[list[str]]]:
    import csv

    with open(release / "bioscan5m/metadata/records_lineage.csv", newline="") as handle:
        rows = list(csv.reader(handle))
    return rows[0], rows[1:]


def _write_lineage(
    release: Path, header: list[str], rows: list[list[str]], columns=("source_line", "image_path", "image_sha256")
) -> None:
    """The lineage CSV and its Parquet copy, both edited alike (the forger keeps them in agreement): ``columns``
    copied to the Parquet file, and the columns ``header`` no longer names dropped from it."""
    import csv

    import pyarrow as pa

    root = release / "bioscan5m/metadata"
    with open(root / "records_lineage.csv", "w", newline="") as handle:
        writer = csv.writer(handle, quoting=csv.QUOTE_NONNUMERIC)
        writer.writerow(header)
        writer.writerows(rows)
    table = pq.read_table(root / "records_lineage.parquet")
    table = table.select([name for name in table.column_names if name in header])
    for column in columns:
        values = [row[header.index(column)] for row in rows]
        kind = table.schema.field(column).type
        values = [int(v) for v in values] if pa.types.is_integer(kind) else [v or None for v in values]
        table = table.set_column(table.schema.get_field_index(column), column, pa.array(values, kind))
    pq.write_table(table, root / "records_lineage.parquet")


def test_a_lineage_row_moved_or_two_photos_swapped_is_found_against_the_sources(copy):
    """The lineage named an export row and a photo that the audit only checked for existence and hash: a record's
    line number moved, or two records' photos swapped (paths and hashes alike), passed with its sources. The swap
    now shows without them too: the JSON-LD states each record's source photo hash."""
    release = copy / "results" / "release"
    header, rows = _lineage_rows(release)
    line, path, sha, batch = (header.index(c) for c in ("source_line", "image_path", "image_sha256", "image_batch"))
    moved = rows[0]
    moved[line] = str(int(moved[line]) + 1)
    first, second = [row for row in rows[1:] if row[path]][:2]
    first[path], second[path] = second[path], first[path]
    first[sha], second[sha] = second[sha], first[sha]
    first[batch], second[batch] = second[batch], first[batch]
    _write_lineage(release, header, rows)
    rewrite_manifest(release)
    plain = audit(copy)
    # the JSON-LD states each record's source photo hash, so the swap shows without the sources; the line does not
    assert plain.returncode == 1, plain.stdout[-2000:]
    for row in (first, second):
        assert f"record {row[0]} field image_sha256: '" in plain.stdout
        assert f"', records_lineage.csv '{row[sha]}'" in plain.stdout  # the swapped-in hash, named as the lineage's
    assert "source_line" not in plain.stdout
    result = audit(copy, "--sources", "config/config.yaml", "--all")
    assert result.returncode == 1
    was, now = int(moved[line]) - 1, int(moved[line])
    assert f"records_lineage.csv: record {moved[0]} field source_line: {now}, the sources {was}" in result.stdout
    for row in (first, second):
        assert f"{row[path]} ({row[batch]}): the file name does not name {row[0]}, its record" in result.stdout
    assert "sha256 differs from the photo" not in result.stdout  # the hashes travelled with the paths


def test_each_record_marker_is_in_the_lineage_and_held_to_the_sources(copy):
    """No release file said which marker each barcode is (``ingest.markers`` may keep several). The lineage names
    each record's ``marker_code``, and the replay holds it to the export row; a lineage without the column (an
    earlier version's) is one finding naming it, and the rest of the lineage is still checked."""
    release = copy / "results" / "release"
    header, rows = _lineage_rows(release)
    marker = header.index("marker_code")
    assert {row[marker] for row in rows} == {"COI-5P"}
    rows[0][marker] = "18S"
    _write_lineage(release, header, rows, columns=("marker_code",))
    rewrite_manifest(release)
    result = audit(copy, "--sources", "config/config.yaml")
    assert result.returncode == 1
    found = f"records_lineage.csv: record {rows[0][0]} field marker_code: '18S', the sources 'COI-5P'"
    assert found in result.stdout, result.stdout[-2000:]
    line = header.index("source_line")
    rows[1][line] = str(int(rows[1][line]) + 1)
    _write_lineage(release, header[:marker] + header[marker + 1 :], [row[:marker] + row[marker + 1 :] for row in rows])
    rewrite_manifest(release)
    result = audit(copy, "--sources", "config/config.yaml")
    assert result.returncode == 1
    assert "records_lineage.csv: no column marker_code (the build writes one)" in result.stdout, result.stdout[-2000:]
    assert f"records_lineage.csv: record {rows[1][0]} field source_line: " in result.stdout


def _curation_read_a_table(tmp_path: Path) -> tuple[Path, dict]:
    """A release whose provenance names the curation's one table file (``tmp_path/table.tsv``, as read), and a
    config naming that table: for ``_check_taxonomy_tables``."""
    root = tmp_path / "release"
    (root / "metadata").mkdir(parents=True)
    graph = [
        {"@id": "build:jobs/curate_taxonomy", "used": ["build:files/t"]},
        {"@id": "build:files/t", "sha256": hashlib.sha256(b"as read\n").hexdigest()},
    ]
    (root / "metadata" / "provenance.jsonld").write_text(json.dumps({"@graph": graph}))
    (tmp_path / "table.tsv").write_bytes(b"as read\n")
    return root, {"taxonomy": {"fixes": None, "corrections": str(tmp_path / "table.tsv")}}


def test_sources_the_build_did_not_read_are_named_not_blamed_on_the_release(copy, tmp_path):
    """A corrections table with a user report added since the build: the replay applied it and blamed the intact
    release ("changes.csv: step 13 ... is missing", exit 1) without naming the table. A config naming another table
    than the build's, or an export of another config (a later delivery): "sha256 differs" or a blamed release
    (reviewers maint, diffi)."""
    import yaml

    from bioscan_rebuild.export.audit import Findings, _check_taxonomy_tables
    from bioscan_rebuild.metadata.taxonomy.tables import shipped_table

    config_path = copy / "config" / "config.yaml"
    config = yaml.safe_load(config_path.read_text())
    first = _first_row(copy / "results" / "release")
    table = copy / "config" / "corrections.tsv"
    table.write_text(
        Path(shipped_table("corrections.tsv")).read_text().rstrip("\n")
        + f"\n{first['processid']}\tcountry\tCanada\tother\tuser report 6\n"
    )
    config["taxonomy"]["corrections"] = "config/corrections.tsv"
    config_path.write_text(yaml.safe_dump(config))
    result = audit(copy, "--sources", "config/config.yaml")
    assert result.returncode == 1
    assert "taxonomy.corrections: the config names 'config/corrections.tsv', the build's" in result.stdout
    assert "replay of the sources" not in result.stdout and "changes.csv" not in result.stdout, result.stdout[-2000:]
    config["taxonomy"]["corrections"] = None  # the build read the shipped table: null is not its config either
    config_path.write_text(yaml.safe_dump(config))
    assert "taxonomy.corrections: the config names None" in audit(copy, "--sources", "config/config.yaml").stdout
    config["taxonomy"]["corrections"] = "shipped"
    config["batches"].append({"name": "later", "export": "resources/later.tsv"})
    (copy / "resources" / "later.tsv").write_text("processid\n")
    config_path.write_text(yaml.safe_dump(config))
    result = audit(copy, "--sources", "config/config.yaml")
    assert "resources/later.tsv: not an export the build read (accounting.json): is it its config?" in result.stdout
    # the build's own table, changed since it was read: named against the curation's files in provenance.jsonld
    root, named = _curation_read_a_table(tmp_path)
    findings = Findings()
    _check_taxonomy_tables(named, named, root, findings, built_by_another=False)
    assert findings.report() == []
    (tmp_path / "table.tsv").write_bytes(b"as read\nand a user report\n")
    _check_taxonomy_tables(named, named, root, findings, built_by_another=False)
    assert findings.report() == [
        f"taxonomy.corrections {tmp_path / 'table.tsv'}: not the table the build read (provenance.jsonld: the "
        "curation's files); audit with the table as it was, or build again"
    ]


def test_a_barcode_qc_field_edited_in_both_copies_is_found_against_the_sources(copy):
    """A QC field only the raw sequence tells (its gap count), edited in the CSV and its Parquet copy alike:
    consistent with the released barcode, so only the barcode stage replayed from the sources finds it."""
    release = copy / "results" / "release"
    pid, was = _edit_barcode_qc(release, "gap_count", 5)
    rewrite_manifest(release)
    assert audit(copy).returncode == 0, audit(copy).stdout[-2000:]
    result = audit(copy, "--sources", "config/config.yaml")
    assert result.returncode == 1
    assert f"barcode_qc.csv: record {pid} field gap_count: 5, the sources {was}" in result.stdout, result.stdout[-2000:]


def test_a_change_log_row_edited_or_dropped_is_found_against_the_sources(copy):
    """changes.csv with a change's old value edited and a rejected record's change dropped: the released values
    still agree with the log, so only curation replayed from the sources tells."""
    import csv

    release = copy / "results" / "release"
    path = release / "bioscan5m/metadata/changes.csv"
    with open(path, newline="") as handle:
        rows = list(csv.reader(handle))
    released = _released_ids(release)
    edited = next(row for row in rows[1:] if row[3])
    was = edited[3]
    edited[3] = "Forged"
    dropped = next(row for row in rows[1:] if row[1] not in released and row is not edited)
    rows.remove(dropped)
    with open(path, "w", newline="") as handle:
        csv.writer(handle, quoting=csv.QUOTE_NONNUMERIC, lineterminator="\n").writerows(rows)
    rewrite_manifest(release)
    assert audit(copy).returncode == 0, audit(copy).stdout[-2000:]
    result = audit(copy, "--sources", "config/config.yaml")
    assert result.returncode == 1
    said = result.stdout
    assert f"changes.csv: record {edited[1]} step {edited[0]} field old: 'Forged', the sources '{was}'" in said, said
    assert f"changes.csv: step {dropped[0]} of record {dropped[1]} ({dropped[2]}) is missing" in said, said


def test_a_version_rewritten_in_every_file_is_found_against_the_sources(copy):
    """Croissant, HDF5, the JSON-LD IRIs, the card and the config all say 2.0.0 (manifest rewritten): not the
    version the build's config gave. What the forgery left (the JSON-LD split nodes' version, the provenance's
    hash of the config) is found without the sources too."""
    release = copy / "results" / "release"
    root = release / "bioscan5m"
    croissant = json.loads((root / "croissant.json").read_text())
    old = croissant["version"]
    croissant["version"] = "2.0.0"
    (root / "croissant.json").write_text(json.dumps(croissant, indent=2) + "\n")
    with h5py.File(root / "hdf5/BIOSCAN_5M.h5", "r+") as h5:
        h5.attrs["version"] = "2.0.0"
    for path in root.glob("metadata/jsonld/*.jsonld"):
        path.write_text(path.read_text().replace(f"rebuild:{old}", "rebuild:2.0.0"))
    card = release / "README.md"
    card.write_text(card.read_text().replace(f"(version {old})", "(version 2.0.0)"))
    config = json.loads((root / "metadata/config.json").read_text())
    config["export"]["version"] = "2.0.0"
    (root / "metadata/config.json").write_text(json.dumps(config))
    history = root / "metadata/split_history.csv"
    history.write_text(history.read_text().replace(f'"{old}"', '"2.0.0"'))
    rewrite_manifest(release)
    alone = audit(copy, "--all")
    assert alone.returncode == 1
    assert f'train.jsonld: the split node\'s version: "{old}", the build writes "2.0.0"' in alone.stdout
    assert "provenance.jsonld: build:config sha256" in alone.stdout
    result = audit(copy, "--sources", "config/config.yaml", "--all")
    assert result.returncode == 1
    assert f"bioscan5m/croissant.json: version '2.0.0', the build's config says '{old}'" in result.stdout
    assert "train.jsonld: names the release 'urn:bioscan-rebuild:release:BIOSCAN-5M%20rebuild:2.0.0/'" in result.stdout


def test_the_fasta_reader_gives_every_entry_whole_across_block_boundaries(tmp_path):
    """Arrow reads the FASTA a block at a time: an entry cut by a block's end must come back whole."""
    from bioscan_rebuild.export.audit import _fasta_entries
    from bioscan_rebuild.metadata.barcodes import write_fasta

    entries = [
        (f"P{i}", f"BOLD:A{i}" if i % 3 else "", "Genus species" if i % 2 else "", "ACGT" * (i + 20)) for i in range(40)
    ]
    write_fasta(entries, tmp_path / "x.fasta")
    got = [row for table in _fasta_entries(tmp_path / "x.fasta", block=300) for row in table.to_pylist()]
    assert got == [
        {"processid": p, "dna_bin": b or None, "taxon": t or None, "dna_barcode": s} for p, b, t, s in entries
    ]
    # a processid may hold "|" (only "/" and "\\" make one invalid): the header is read from the right
    write_fasta([("AB|12", "BOLD:A", "Aus bus", "ACGT")], tmp_path / "pipe.fasta")
    (pipe,) = _fasta_entries(tmp_path / "pipe.fasta", block=1 << 20)
    assert pipe.to_pylist() == [{"processid": "AB|12", "dna_bin": "BOLD:A", "taxon": "Aus bus", "dna_barcode": "ACGT"}]
    (tmp_path / "bad.fasta").write_text("ACGT\n>P1|B|T\nACGT\n")
    with pytest.raises(ValueError, match="a sequence line before its header"):
        list(_fasta_entries(tmp_path / "bad.fasta", block=1 << 20))


def test_a_batch_with_its_own_photo_name_pattern_checks_out_with_its_sources(copy):
    """The photo-name check used ingest.image_name_pattern for every batch: a batch whose photos are named by its
    own pattern (IMG_0001__BSCN1-22.jpg) made every release built with it fail its audit."""
    release = copy / "results" / "release"
    path = copy / "config" / "config.yaml"
    config = yaml.safe_load(path.read_text())
    batch = config["batches"][0]
    batch["image_name_pattern"] = r"^(?:IMG_\d+__)?(?P<processid>.+?)(?:\.1024px)?\.jpe?g$"
    path.write_text(yaml.safe_dump(config))
    header, rows = _lineage_rows(release)
    column, of_batch = header.index("image_path"), header.index("image_batch")
    row = next(r for r in rows if r[of_batch] == batch["name"] and r[column].endswith(".jpg"))
    folder = copy / batch["images"]
    renamed = f"IMG_0001__{Path(row[column]).name}"
    (folder / row[column]).rename(folder / Path(row[column]).parent / renamed)
    row[column] = str(Path(row[column]).parent / renamed) if "/" in row[column] else renamed
    _write_lineage(release, header, rows)
    rewrite_manifest(release)
    result = audit(copy, "--sources", "config/config.yaml")
    assert result.returncode == 0, result.stdout[-3000:]


def test_the_audit_record_is_never_written_into_the_release_it_audits(copy):
    """`audit --json results/release/MANIFEST.json` replaced the manifest with the audit's summary, exit 0: the
    release could never be audited again. Refused before anything is written; outside the release it is written."""
    manifest = copy / "results" / "release" / "MANIFEST.json"
    before = manifest.read_bytes()
    result = audit(copy, "--json", "results/release/MANIFEST.json")
    assert result.returncode == 2 and "an output inside the input folder results/release" in result.stderr
    assert manifest.read_bytes() == before
    # ... nor into the previous release it compares with
    shutil.copytree(copy / "results" / "release", copy / "previous")
    result = audit(copy, "--previous", "previous", "--json", "previous/MANIFEST.json")
    assert result.returncode == 2 and "an output inside the input folder previous" in result.stderr
    assert (copy / "previous" / "MANIFEST.json").read_bytes() == before
    assert audit(copy, "--json", "audit.json").returncode == 0 and json.loads((copy / "audit.json").read_text())["ok"]


def test_a_damaged_file_is_a_finding_and_the_other_checks_go_on(copy):
    """A truncated HDF5 file or a garbled rejects.csv crashed the audit with a traceback, and every other finding
    (the manifest's 'changed file' too) was lost."""
    root = copy / "results" / "release" / "bioscan5m"
    with open(root / "hdf5" / "BIOSCAN_5M.h5", "r+b") as handle:
        handle.truncate(4096)
    (root / "metadata" / "rejects.csv").write_bytes(bytes(range(256)) * 8)
    result = audit(copy, "--all")
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert "bioscan5m/hdf5/BIOSCAN_5M.h5: sha256" in result.stdout  # the manifest check still ran
    assert "hdf5/BIOSCAN_5M.h5: cannot be read as the release writes it" in result.stdout
    assert "metadata/rejects.csv: cannot be read as the release writes it" in result.stdout


def test_a_damaged_manifest_entry_accounting_or_parquet_is_a_finding_and_the_other_checks_go_on(copy):
    """A manifest entry without its size, an accounting.json that is a list, and a metadata Parquet file cut in half
    crashed the audit (KeyError, AttributeError) or were blamed on the CSV, losing every record check."""
    release = copy / "results" / "release"
    root = release / "bioscan5m"
    manifest = json.loads((release / "MANIFEST.json").read_text())
    del manifest["files"]["bioscan5m/metadata/bbox.tsv"]["bytes"]
    (release / "MANIFEST.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    (release / "accounting.json").write_text("[]\n")
    parquet = sorted((root / "metadata/parquet/data").glob("train-*.parquet"))[0]
    parquet.write_bytes(parquet.read_bytes()[: parquet.stat().st_size // 2])
    jsonld_finding = _edit_jsonld_value(release)
    result = audit(copy, "--all")
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-2000:]
    out = result.stdout
    assert "MANIFEST.json: the entry of bioscan5m/metadata/bbox.tsv is not {bytes, sha256}" in out, out[-3000:]
    assert "accounting.json: not the accounting the build writes" in out
    assert "bioscan5m/metadata/parquet/data: cannot be read as the release writes it" in out
    assert "csv: cannot be read" not in out and jsonld_finding in out  # the CSV was the reference: records checked


def test_a_release_whose_files_are_links_is_whole(copy):
    """A Hugging Face snapshot or a git-annex checkout holds a release as links to its files: the same release."""
    release = copy / "results" / "release"
    linked = copy / "linked" / "results" / "release"
    for path in sorted(release.rglob("*")):
        if path.is_file():
            target = linked / path.relative_to(release)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.symlink_to(path)
    result = audit(copy / "linked")
    assert result.returncode == 0 and "whole" in result.stdout, result.stdout[-3000:]


def test_a_source_photo_path_outside_its_batch_folder_is_found(copy):
    """A lineage row pointing its photo at a file outside the batch's folder (with that file's hash) passed the
    source check: the real source photo was never looked at."""
    import pandas as pd

    release = copy / "results" / "release"
    path = release / "bioscan5m/metadata/records_lineage.csv"
    lineage = pd.read_csv(path, dtype=str, keep_default_na=False)
    row = lineage.index[lineage["image_path"] != ""][0]
    forged = copy / "forged.jpg"
    forged.write_bytes(b"\xff\xd8\xff\xd9")
    lineage.loc[row, "image_path"] = "../" * 12 + str(forged).lstrip("/")
    lineage.loc[row, "image_sha256"] = hashlib.sha256(forged.read_bytes()).hexdigest()
    text = path.read_text()
    old_line = text.split("\n")[row + 1]
    fields = old_line.split(",")
    header = [c.strip('"') for c in text.split("\n")[0].split(",")]
    fields[header.index("image_path")] = f'"{lineage.loc[row, "image_path"]}"'
    fields[header.index("image_sha256")] = f'"{lineage.loc[row, "image_sha256"]}"'
    path.write_text(text.replace(old_line, ",".join(fields)))
    rewrite_manifest(release)
    result = audit(copy, "--sources", "config/config.yaml")
    assert result.returncode == 1
    assert f"the photo of {lineage.loc[row, 'processid']} lies outside the batch's folder" in result.stdout


def test_a_folder_that_is_no_release_is_one_line(copy, tmp_path):
    """An empty folder gave a few findings, the release's bioscan5m/ folder 517, a release without its manifest 696:
    a person's mistake is one line, exit 2."""
    env = {"PYTHONPATH": str(REPO / "workflow")}
    for folder, phrase in (
        (tmp_path, "not a release, no readable MANIFEST.json"),
        (copy / "results" / "release" / "bioscan5m", "(the folder above it holds a release)"),
    ):
        result = subprocess.run(
            [sys.executable, "-m", "bioscan_rebuild", "audit", str(folder)], capture_output=True, text=True, env=env
        )
        assert result.returncode == 2 and phrase in result.stderr and len(result.stderr.strip().splitlines()) == 1
    # --previous naming a folder that is no release: that option named, one line (it was a finding blaming the
    # release's diff when there was one, or none at all)
    result = audit(copy, "--previous", str(tmp_path))
    assert result.returncode == 2 and f"--previous: {tmp_path}: not a release" in result.stderr, result.stderr


def test_a_release_another_version_of_the_package_built_is_not_described_again_and_says_so(copy):
    """croissant.json, the card and the JSON-LD heads are made again by this package: from another version's
    release they could differ in wording alone, so they are left out, with a note (not a problem)."""
    release = copy / "results" / "release"
    path = release / "bioscan5m/metadata/provenance.jsonld"
    doc = json.loads(path.read_text())
    next(node for node in doc["@graph"] if node["@id"] == "build:software")["softwareVersion"] = "9.9.9"
    path.write_text(json.dumps(doc))
    for split in (release / "bioscan5m/metadata/jsonld").glob("*.jsonld"):  # its files all say so
        split.write_text(re.sub(r'"softwareVersion":"[^"]*"', '"softwareVersion":"9.9.9"', split.read_text()))
    _card_count(release)  # a card another version words otherwise
    rewrite_manifest(release)
    result = audit(copy)
    assert result.returncode == 0, result.stdout[-3000:]
    assert "note: bioscan5m/metadata/provenance.jsonld: built by bioscan-rebuild 9.9.9, this audit is" in result.stdout
    # the metadata stages replayed from the sources by this version: what differs is shown as notes, not problems
    # (another version's curation reported every label it words otherwise as a problem of an intact release, 36
    # in a 0.2.0 release: reviewer upgrade), nor agreement (my first fix skipped the replay and still said the
    # records agree with the sources: a forgery passed; reviewer diffg)
    result = audit(copy, "--sources", "config/config.yaml")
    assert result.returncode == 0, result.stdout[-3000:]
    assert "the metadata stages replayed by this version differ from the release in 0 places" in result.stdout
    assert "agree across the formats, the lineage and the sources (replayed by this version)" in result.stdout
    first = _first_row(release)
    _forge(release, ("country",), first["country"], "Atlantis")
    result = audit(copy, "--sources", "config/config.yaml")
    assert result.returncode == 0, result.stdout[-3000:]
    assert f"note: replay of the sources: record {first['processid']} field country:" in result.stdout
    assert "this version's replay of the metadata differs from it in" in result.stdout
    assert "the lineage and the sources (replayed" not in result.stdout


def test_a_card_line_dropped_or_added_is_one_difference_not_every_line_after_it():
    from bioscan_rebuild.export.audit_description import _line_differences

    made = "\n".join(f"line {i}" for i in range(200))
    dropped = made.replace("line 3\n", "")
    assert _line_differences(dropped, made) == ['after line 3: the build writes "line 3"']
    added = made.replace("line 3\n", "line 3\nforged\n")
    assert _line_differences(added, made) == ['line 5: "forged", which the build does not write']
    edited = made.replace("line 7\n", "line 7!\n")
    assert _line_differences(edited, made) == ['line 8: "line 7!", the build writes "line 7"']


def test_one_file_with_another_version_is_the_one_named(copy):
    """The first file read was the truth: croissant.json edited alone had the HDF5, the card and every JSON-LD file
    blamed. Most files say the version; the odd one is named."""
    root = copy / "results" / "release" / "bioscan5m"
    croissant = json.loads((root / "croissant.json").read_text())
    croissant["version"] = "9.9.9"
    (root / "croissant.json").write_text(json.dumps(croissant, indent=2) + "\n")
    rewrite_manifest(copy / "results" / "release")
    result = audit(copy, "--all")
    versions = [line for line in result.stdout.splitlines() if "version" in line and "9.9.9" in line]
    assert result.returncode == 1 and len(versions) == 1 and "croissant.json: version '9.9.9'" in versions[0]


def test_a_record_moved_between_split_files_or_its_split_history_edited_is_found(copy):
    """Hugging Face loads a Parquet file as the split its name says: a train row moved into the test file, an
    images Parquet row dropped, or an edited split history (the next version freezes from it, and pins its
    barcodes) passed as whole
    with the manifest rewritten; so did an accounting whose sums no longer add up."""
    import pyarrow as pa

    root = copy / "results" / "release" / "bioscan5m"
    data = root / "metadata" / "parquet" / "data"
    train, other = (next(data.glob(f"{split}-*.parquet")) for split in ("train", "pretrain"))
    rows, kept = pq.read_table(train), pq.read_table(other)
    pq.write_table(pa.concat_tables([kept, rows.slice(0, 1).cast(kept.schema)]), other)
    pq.write_table(rows.slice(1), train)
    images = next((root / "images_parquet" / "data").glob("train-*.parquet"))
    dropped = pq.read_table(images).slice(0, 1)["processid"][0].as_py()
    pq.write_table(pq.read_table(images).slice(1), images)
    history = root / "metadata" / "split_history.csv"
    lines = history.read_text().splitlines()
    lines[1] = lines[1].replace('"pretrain"', '"test"').replace('"train"', '"test"')
    cells = lines[2].split(",")
    assert len(cells) == 5 and cells[4] == ""  # processid, split, last_version, barcode_key, held_barcode_keys
    lines[2] = ",".join([*cells[:3], '"' + "0" * 32 + '"', ""])  # a barcode key that pins another barcode
    cells = lines[3].split(",")
    lines[3] = ",".join([*cells[:4], '"' + cells[3].strip('"') + ' 12ab"'])  # held: its own key, and no md5
    history.write_text("\n".join(lines) + "\n")
    accounting = copy / "results" / "release" / "accounting.json"
    numbers = json.loads(accounting.read_text())
    numbers["inputs"]["records"] += 5
    accounting.write_text(json.dumps(numbers))
    rewrite_manifest(copy / "results" / "release")
    result = audit(copy, "--all")
    assert result.returncode == 1
    assert "metadata/parquet/data/" in result.stdout and "not of split pretrain" in result.stdout
    assert f"images_parquet/data: record {dropped} of the csv is missing" in result.stdout
    assert "metadata/split_history.csv: record" in result.stdout and "the csv says" in result.stdout
    assert "barcode_key is not its dna_barcode's" in result.stdout
    assert "held_barcode_keys are not sorted md5 keys apart from its barcode_key" in result.stdout
    assert "accounting.json: records:" in result.stdout and "rejected" in result.stdout


def test_sources_audited_from_another_folder_is_one_line(copy, tmp_path):
    """The config's relative paths are the workflow folder's: run from elsewhere, every export and photo was
    reported missing (exit 1). Now one line naming the folder to run from."""
    env = {"PYTHONPATH": str(REPO / "workflow")}
    release, config = copy / "results" / "release", copy / "config" / "config.yaml"
    command = [sys.executable, "-m", "bioscan_rebuild", "audit", str(release), "--sources", str(config)]
    result = subprocess.run(command, capture_output=True, text=True, env=env, cwd=tmp_path)
    assert result.returncode == 2 and f"run the audit from {copy.resolve()}" in result.stderr, result.stderr[-1000:]


def test_rows_set_aside_while_their_record_was_kept_are_no_finding(tmp_path):
    """A delivery whose two copies of X conflict, decided by a later delivery (policy latest): both copies are
    `duplicate_conflict` rows and X is released. The check took every such row for the record refused, and
    failed a release built as it should be; a refused record released, or a set-aside copy of a record nobody has,
    is still found."""
    import pyarrow as pa

    from bioscan_rebuild.export.audit import Findings, _check_rejected_records

    released = pa.table({"processid": ["X-1", "Y-1"]})
    rows = [
        ("record", "duplicate_conflict", "X-1"),
        ("record", "duplicate_conflict", "X-1"),
        ("record", "unsupported_marker", "Y-1"),
        ("record", "superseded", "x-1"),
        ("record", "no_specimen", "Y-1"),
        ("record", "duplicate_record", "Z-9"),
    ]
    path = tmp_path / "rejects.csv"
    path.write_text("kind,reason,processid\n" + "".join(f"{k},{r},{p}\n" for k, r, p in rows))
    findings = Findings(None)
    _check_rejected_records(path, "rejects.csv", released, findings)
    assert findings.report() == [
        "rejects.csv: record Y-1 is rejected (no_specimen) and released",
        "rejects.csv: record Z-9: a copy set aside (duplicate_record) for one the release neither holds nor rejects",
    ]


def test_a_redelivered_bin_then_normalised_is_one_released_field(tmp_path):
    """A redelivery logs the BIN under ingest's name (bin_uri), curation under the release's (dna_bin): the
    redelivered spelling was taken as a last change of its own and blamed on a BIN curation had normalised."""
    from bioscan_rebuild.export import audit as audit_module

    root = tmp_path / "bioscan5m"
    (root / "metadata").mkdir(parents=True)
    (root / "metadata/changes.csv").write_text(
        '"step","processid","field","old","new","rule","ratio","source"\n'
        '0,"P1","bin_uri","BOLD:AAA0002","bold:aaa0001","superseded",,"a:x.tsv:2 -> b:y.tsv:3"\n'
        '3,"P1","dna_bin","bold:aaa0001","BOLD:AAA0001","bin_normalise",,\n'
    )
    released = pa.table({"processid": ["P1"], "dna_bin": ["BOLD:AAA0001"]}).cast(
        pa.schema([("processid", pa.large_string()), ("dna_bin", pa.large_string())])
    )
    findings = audit_module.Findings()
    audit_module.check_changes(root, released, findings)
    assert findings.report() == []
    findings = audit_module.Findings()
    audit_module.check_changes(
        root, released.set_column(1, "dna_bin", pa.array(["BOLD:AAA0009"], pa.large_string())), findings
    )
    assert any(
        "record P1 field dna_bin: 'BOLD:AAA0001', the csv holds 'BOLD:AAA0009'" in line for line in findings.report()
    )


def test_a_record_delivered_three_times_has_each_replaced_copy_met_in_the_replay(tmp_path):
    """Two step-0 rows of one record and field (one per copy a third delivery replaced) were joined two by two with
    the replay's: the crossed pairs were reported as changed, though log and replay agree."""
    import pyarrow.csv as pacsv

    from bioscan_rebuild.export import audit as audit_module

    root = tmp_path / "bioscan5m"
    (root / "metadata").mkdir(parents=True)
    changes = pa.table(
        {
            "step": pa.array([0, 0], pa.int64()),
            "processid": ["P1", "P1"],
            "field": ["species", "species"],
            "old": ["Aus bus", "Aus cus"],
            "new": ["Aus dus", "Aus dus"],
            "rule": ["superseded"] * 2,
            "ratio": pa.array([None, None], pa.float64()),
            "source": ["a:a.tsv:2 -> c:c.tsv:2", "b:b.tsv:2 -> c:c.tsv:2"],
        }
    )
    pacsv.write_csv(changes, root / "metadata/changes.csv")
    # the replay names its batches export-1, export-2, ... and writes the rows in its own order
    replayed = changes.take([1, 0])
    replayed = replayed.set_column(
        7, "source", pa.array(["export-2:b.tsv:2 -> export-3:c.tsv:2", "export-1:a.tsv:2 -> export-3:c.tsv:2"])
    )
    findings = audit_module.Findings()
    audit_module._check_replayed_changes(root, replayed, ["a", "b", "c"], findings)
    assert findings.report() == []
    forged = changes.set_column(3, "old", pa.array(["Aus bus", "Aus zus"]))
    pacsv.write_csv(forged, root / "metadata/changes.csv")
    findings = audit_module.Findings()
    audit_module._check_replayed_changes(root, replayed, ["a", "b", "c"], findings)
    assert any("record P1 step 0 field old: 'Aus zus', the sources 'Aus cus'" in line for line in findings.report())


def test_hdf5_images_of_a_release_without_image_files_are_checked_against_the_lineage(copy):
    """An HDF5 image was compared only with its released JPEG: in a release without the images format (no files)
    an image swapped, emptied or given to a record the lineage names no image for passed. Now each is held to
    the lineage's sha256 of that package."""
    import numpy as np

    from bioscan_rebuild.export.audit import Findings, check_hdf5

    release = copy / "results" / "release"
    root = release / "bioscan5m"
    shutil.rmtree(root / "images")
    config = json.loads((root / "metadata" / "config.json").read_text())
    table = pa.concat_tables(pq.read_table(p) for p in sorted((root / "metadata/parquet/data").glob("*.parquet")))
    findings = Findings(None)
    check_hdf5(root, table, config, findings)
    assert findings.report() == []  # whole: every image the one the lineage names

    header, rows = _lineage_rows(release)
    with h5py.File(root / "hdf5/BIOSCAN_5M.h5", "r+") as h5:
        split = next(name for name in h5 if len(h5[name]["processid"]) >= 3)
        ids = [v.decode() for v in h5[split]["processid"][:3]]
        images = h5[split]["image"]
        images[0], images[1] = images[1], images[0]  # swapped
        images[2] = np.zeros(0, np.uint8)  # emptied
    package = config["export"]["image_package"]
    column = header.index(f"sha256_{package}")
    third = next(row for row in rows if row[0] == ids[2])
    third[column] = ""  # the lineage names no image for it: then its (empty) blob is right
    _write_lineage(release, header, rows)
    findings = Findings(None)
    check_hdf5(root, table, config, findings)
    where = f"bioscan5m/hdf5/BIOSCAN_5M.h5:{split}"
    assert sorted(findings.report()) == sorted(
        f"{where}: record {pid} image is not the one the lineage names (sha256_{package})" for pid in ids[:2]
    )
    with h5py.File(root / "hdf5/BIOSCAN_5M.h5", "r+") as h5:
        h5[split]["image"][2] = np.frombuffer(b"\xff\xd8 a photo \xff\xd9", np.uint8)
    findings = Findings(None)
    check_hdf5(root, table, config, findings)
    assert f"{where}: record {ids[2]} holds an image of 13 bytes, but the lineage names no {package} image for it" in (
        findings.report()
    )


def test_the_node_shape_check_derives_the_terms_as_the_writer_does():
    """Nodes the writer made, of an interim genus (Malaise1) with and without a placeholder species, a named species
    and a family alone, check out; one with its taxonRank edited does not. (The check took an interim genus for a
    published one and failed correct releases.)"""
    import pandas as pd

    from bioscan_rebuild.export.audit import Findings, _check_jsonld_node_shape
    from bioscan_rebuild.export.formats.jsonld import STRING_TERMS, _record_nodes

    rows = pd.DataFrame(
        {
            "processid": ["P1", "P2", "P3", "P4"],
            "family": ["Cecidomyiidae", "Cecidomyiidae", "Phoridae", "Phoridae"],
            "genus": ["Malaise1", "Malaise1", "Megaselia", None],
            "species": ["Malaise1 sp. 3", None, "Megaselia scalaris", None],
            "placeholder_species": [True, False, False, False],
        }
    )
    nodes = list(_record_nodes(rows, "train", "release:splits/train"))
    lines = "\n".join(json.dumps(n, sort_keys=True, separators=(",", ":")) for n in nodes).encode()
    keys = ["occurrenceID", "isPartOf", "taxonRank", "specificEpithet", "identificationQualifier"]
    keys += ["verbatimIdentification", *(STRING_TERMS[c] for c in ("family", "genus", "species"))]

    def found(table_nodes) -> list:
        table = pa.table({k: pa.array([n.get(k) for n in table_nodes], pa.large_string()) for k in dict.fromkeys(keys)})
        findings = Findings()
        _check_jsonld_node_shape("train.jsonld", "train", table, lines, findings)
        return findings.lines

    assert [n.get("taxonRank") for n in nodes] == ["family", "family", "species", "family"]
    assert found(nodes) == []
    nodes[0]["taxonRank"] = "genus"
    assert found(nodes) == ["train.jsonld: record P1 field taxonRank: 'genus', its labels give 'family'"]


def test_a_source_named_by_another_spelling_is_the_same_file(copy, tmp_path):
    """The build's own export named by its absolute path was "not an export the build read" (exit 1), and a typo
    table named relative and absolute was "not the release's config" (reviewer diffj). Paths are compared as
    written, made absolute: an export replaced by a symlink to changed bytes is still named (matching by where a
    symlink points now let it pass: reviewer diffk). A taxonomy section of config.json hand-edited into no object
    crashed the audit with a TypeError."""
    import yaml

    from bioscan_rebuild.export.audit import Findings, _check_taxonomy_tables

    config_path = copy / "config" / "config.yaml"
    config = yaml.safe_load(config_path.read_text())
    export = config["batches"][0]["export"]
    config["batches"][0]["export"] = str((copy / export).absolute())
    config_path.write_text(yaml.safe_dump(config))
    result = audit(copy, "--sources", "config/config.yaml")
    assert result.returncode == 0, result.stdout[-3000:]
    # the export the build read, now a symlink to a changed copy: its bytes are the build's no longer
    changed = tmp_path / "elsewhere.tsv"
    lines = (copy / export).read_text().split("\n")
    lines[1] = lines[1].replace("\t", "\tx", 1)
    changed.write_text("\n".join(lines))
    (copy / export).unlink()
    (copy / export).symlink_to(changed)
    result = audit(copy, "--sources", "config/config.yaml")
    assert result.returncode == 1 and "sha256 differs from the one the build read" in result.stdout
    # one table, two spellings; a hand-edited taxonomy section (a list, a text): no crash, no table blamed
    root, named = _curation_read_a_table(tmp_path)
    relative = {"taxonomy": {"fixes": None, "corrections": os.path.relpath(tmp_path / "table.tsv")}}
    findings = Findings()
    _check_taxonomy_tables(named, relative, root, findings, built_by_another=False)
    for edited in (["fixes", "corrections"], "fixes corrections"):
        _check_taxonomy_tables(named, {"taxonomy": edited}, root, findings, built_by_another=False)
    assert findings.report() == []
