"""The release the workflow writes on the sample, read back by each format's own library and by the
`bioscan-dataset` loaders; every format carries the same records and values."""

from __future__ import annotations

import hashlib
import io
import json
import os

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from PIL import Image
from test_workflow import make_workdir

from bioscan_rebuild.core.schemas import RELEASE_COLUMNS, SPLITS
from conftest import import_or_skip, run_snakemake

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def release(sample_dir, tmp_path_factory):
    workdir = make_workdir(tmp_path_factory.mktemp("release"), sample_dir)
    run_snakemake(workdir)
    return workdir / "results" / "release" / "bioscan5m"


@pytest.fixture(scope="module")
def csv_table(release):
    return pd.read_csv(
        release / "metadata" / "csv" / "BIOSCAN_5M_Insect_Dataset_metadata.csv", dtype=str, keep_default_na=False
    )


def test_csv_layout_and_chunk_rule(release, csv_table):
    assert list(csv_table.columns) == list(RELEASE_COLUMNS)
    assert csv_table["processid"].is_unique and set(csv_table["split"]) == set(SPLITS)  # the sample fills all 8
    for row in csv_table.itertuples():
        width = {"pretrain": 2, "train": 1, "other_heldout": 1}.get(row.split, 0)
        assert row.chunk == hashlib.md5(row.processid.encode()).hexdigest()[:width]
        folder = "/".join(["images", "cropped_256", row.split] + ([row.chunk] if row.chunk else []))
        for package in ("original_full", "cropped", "original_256", "cropped_256"):
            assert (release / folder.replace("cropped_256", package, 1) / f"{row.processid}.jpg").exists()
    assert (csv_table["index_bioscan_1M_insect"] == "").all()
    lineage = pd.read_csv(release / "metadata" / "records_lineage.csv", dtype=str, keep_default_na=False)
    assert sorted(lineage["processid"]) == sorted(csv_table["processid"]) and (lineage["raw_nucleotides"] != "").all()
    assert (csv_table["area_fraction"] != "").all() and (csv_table["image_measurement_value"] != "").all()
    with Image.open(
        release
        / "images"
        / "cropped_256"
        / csv_table.loc[0, "split"]
        / csv_table.loc[0, "chunk"]
        / f"{csv_table.loc[0, 'processid']}.jpg"
    ) as image:
        assert min(image.size) == 256


def test_parquet_per_split(release, csv_table):
    folder = release / "metadata" / "parquet" / "data"
    frames = []
    for path in sorted(folder.glob("*.parquet")):
        split, _, rest = path.stem.partition("-")
        assert rest.endswith("-of-00001") and split in SPLITS
        table = pq.read_table(path)
        assert table.schema.names == list(RELEASE_COLUMNS)
        assert str(table.schema.field("family").type).startswith("dictionary")
        frames.append(table.to_pandas())
    parquet = pd.concat(frames, ignore_index=True)
    assert sorted(parquet["processid"]) == sorted(csv_table["processid"])
    assert isinstance(frames[0]["family"].dtype, pd.CategoricalDtype)  # dictionary columns read as categoricals
    images = pq.ParquetFile(next((release / "images_parquet" / "data").glob("*.parquet")))
    columns = {
        images.metadata.row_group(0).column(i).path_in_schema: images.metadata.row_group(0).column(i)
        for i in range(images.metadata.num_columns)
    }
    assert columns["image.bytes"].compression == "UNCOMPRESSED"
    assert "DICTIONARY" not in str(columns["image.bytes"].encodings).upper().replace("PLAIN_DICTIONARY", "")
    row = images.read().slice(0, 1).to_pylist()[0]
    with Image.open(io.BytesIO(row["image"]["bytes"])) as image:
        assert min(image.size) == 256
    assert row["image"]["path"].endswith(f"{row['processid']}.jpg")


def test_hugging_face_datasets_reads_the_parquet_layout(release, csv_table, tmp_path, monkeypatch):
    """`datasets.load_dataset(folder)` finds the eight splits from the file names, and decodes images."""
    for name in ("HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE"):
        monkeypatch.setenv(name, "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    datasets = import_or_skip("datasets", "datasets (test extra) is not installed")

    metadata = datasets.load_dataset(str(release / "metadata" / "parquet"), cache_dir=str(tmp_path / "cache"))
    assert set(metadata) == set(SPLITS)
    for split in SPLITS:
        expected = csv_table[csv_table["split"] == split]
        assert metadata[split]["processid"] == list(expected["processid"])
    images = datasets.load_dataset(str(release / "images_parquet"), cache_dir=str(tmp_path / "cache"))
    assert set(images) == set(SPLITS)
    assert type(images["val"].features["image"]).__name__ == "Image"
    assert min(images["val"][0]["image"].size) == 256


def test_hdf5(release, csv_table):
    import h5py

    with h5py.File(release / "hdf5" / "BIOSCAN_5M.h5", "r") as h5:
        assert h5.attrs["licence"] and h5.attrs["version"] and json.loads(h5.attrs["provenance"])["inputs"]
        assert h5.attrs["name"] == "BIOSCAN-5M rebuild"  # config/README.md says so
        assert set(h5) == set(SPLITS)
        total = 0
        for split in h5:
            group = h5[split]
            image = group["image"]
            assert image.ndim == 1 and image.maxshape == (None,) and image.compression is None
            assert image.chunks is not None
            ids = [v.decode() for v in group["processid"][:]]
            total += len(ids)
            first = csv_table.set_index("processid").loc[ids[0]]
            jpeg = bytes(image[0])
            path = release / "images" / "cropped_256" / split / first["chunk"] / f"{ids[0]}.jpg"
            assert jpeg == path.read_bytes()
            assert group["family"][0].decode() == first["family"]
        assert total == len(csv_table)


def _rebuilt_class(bioscan_dataset):
    class RebuiltBIOSCAN5M(bioscan_dataset.BIOSCAN5M):
        def _check_integrity(self, verbose=1):  # the official CSV's md5 cannot match a rebuild
            return os.path.exists(self.metadata_path) and os.path.isdir(self.image_dir)

    return RebuiltBIOSCAN5M


def test_bioscan_dataset_loaders_read_the_release(release, csv_table):
    bioscan_dataset = import_or_skip("bioscan_dataset", "bioscan-dataset (test extra) is not installed")

    metadata = bioscan_dataset.load_bioscan5m_metadata(
        release / "metadata" / "csv" / "BIOSCAN_5M_Insect_Dataset_metadata.csv"
    )
    assert len(metadata) == len(csv_table) and list(metadata["processid"]) == list(csv_table["processid"])

    dataset_class = _rebuilt_class(bioscan_dataset)
    for split in SPLITS:
        dataset = dataset_class(
            release.parent, split=split, modality=("image", "dna"), target_type="family", target_format="text"
        )
        expected = csv_table[csv_table["split"] == split]
        assert len(dataset) == len(expected) > 0
        for (image, dna, target), row in zip(dataset, expected.itertuples(), strict=True):
            assert min(image.size) == 256 and dna == row.dna_barcode
            assert (target if isinstance(target, str) else "") == row.family  # the loader gives NaN for missing


def test_zipped_packages_extract_to_a_folder_the_loader_reads(release, csv_table, tmp_path):
    """The published download path: unzip the image packages beside the metadata, then load every split."""
    import zipfile

    bioscan_dataset = import_or_skip("bioscan_dataset", "bioscan-dataset (test extra) is not installed")
    from bioscan_rebuild.export.formats.images import write_zip_packages

    names = write_zip_packages(release, tmp_path / "zips")
    assert "BIOSCAN_5M_cropped_256_eval.zip" in names and "BIOSCAN_5M_cropped_256_train.zip" in names
    assert {"BIOSCAN_5M_cropped_256_pretrain.01.zip", "BIOSCAN_5M_cropped_256_pretrain.02.zip"} <= set(names)
    unpacked = tmp_path / "unpacked"
    for name in names:
        if name.startswith("BIOSCAN_5M_cropped_256_"):
            with zipfile.ZipFile(tmp_path / "zips" / name) as archive:
                archive.extractall(unpacked)
    csv_path = unpacked / "bioscan5m" / "metadata" / "csv" / "BIOSCAN_5M_Insect_Dataset_metadata.csv"
    csv_path.parent.mkdir(parents=True)
    csv_path.write_bytes((release / "metadata" / "csv" / csv_path.name).read_bytes())
    dataset_class = _rebuilt_class(bioscan_dataset)
    for split in SPLITS:
        dataset = dataset_class(unpacked, split=split, modality=("image",), target_type="species")
        assert len(dataset) == (csv_table["split"] == split).sum() > 0
        image, _ = dataset[len(dataset) - 1]
        assert min(image.size) == 256


def _text(values) -> list[str]:
    """Values as the CSV writes them: missing -> '', floats in their shortest round-trip form."""
    out = []
    for v in values:
        if v is None or v is pd.NA or (isinstance(v, float) and np.isnan(v)):
            out.append("")
        elif isinstance(v, bool | np.bool_):
            out.append(str(bool(v)).lower())
        elif isinstance(v, float | np.floating):
            out.append(repr(float(v)))
        elif isinstance(v, bytes):
            out.append(v.decode())
        else:
            out.append(str(v))
    return out


def _same_numbers(a: list[str], b: list[str]) -> bool:
    return all((x == y) or (x != "" and y != "" and float(x) == float(y)) for x, y in zip(a, b, strict=True))


def test_formats_agree_on_every_record(release, csv_table):
    """CSV, Parquet, HDF5, JSON-LD and the image files: the same records with the same value in every column
    each format carries, and the same image bytes."""
    import h5py

    from bioscan_rebuild.export.formats.hdf5 import HDF5_LABELS
    from bioscan_rebuild.export.formats.jsonld import read_jsonld_records

    csv = csv_table.set_index("processid")
    numeric = ("coord-lat", "coord-lon", "area_fraction", "scale_factor")
    parquet = pd.concat(
        pq.read_table(p).to_pandas() for p in sorted((release / "metadata" / "parquet" / "data").glob("*.parquet"))
    ).set_index("processid")
    assert sorted(parquet.index) == sorted(csv.index)
    for column in RELEASE_COLUMNS[1:]:
        ours, theirs = _text(parquet[column].astype(object).reindex(csv.index)), list(csv[column])
        assert _same_numbers(ours, theirs) if column in numeric else ours == theirs, column

    def folder_image(package, processid):
        row = csv.loc[processid]
        parts = ["images", package, row["split"]] + ([row["chunk"]] if row["chunk"] else []) + [f"{processid}.jpg"]
        return (release.joinpath(*parts)).read_bytes()

    with h5py.File(release / "hdf5" / "BIOSCAN_5M.h5", "r") as h5:
        package = h5.attrs["image_package"]
        for split in h5:
            ids = [v.decode() for v in h5[split]["processid"][:]]
            assert set(csv.loc[ids, "split"]) == {split}
            for column in HDF5_LABELS:
                assert _text(h5[split][column][:]) == list(csv.loc[ids, column]), (split, column)
            for k, processid in enumerate(ids):
                assert bytes(h5[split]["image"][k]) == folder_image(package, processid), processid
    images = pq.read_table(release / "images_parquet" / "data").to_pylist()
    assert sorted(r["processid"] for r in images) == sorted(csv.index)
    for row in images:
        assert row["split"] == csv.loc[row["processid"], "split"]
        assert row["image"]["bytes"] == folder_image("cropped_256", row["processid"]), row["processid"]

    linked = pd.concat(read_jsonld_records(p) for p in sorted((release / "metadata" / "jsonld").glob("*.jsonld")))
    linked = linked.set_index("processid")
    assert sorted(linked.index) == sorted(csv.index)
    for column in RELEASE_COLUMNS[1:]:
        ours = [("" if v in ("nan", "<NA>", "None") else v) for v in _text(linked[column].reindex(csv.index))]
        theirs = list(csv[column])
        assert _same_numbers(ours, theirs) if column in numeric else ours == theirs, column
    digests = csv["dna_barcode"].map(lambda s: hashlib.sha256(s.encode()).hexdigest())
    assert (linked["barcode_sha256"].reindex(csv.index) == digests).all()
    released = {pid: hashlib.sha256(folder_image("original_full", pid)).hexdigest() for pid in csv.index}
    assert linked["sha256_original_full"].reindex(csv.index).tolist() == [released[p] for p in csv.index]
    image_rows = pd.concat(pd.read_parquet(p) for p in (release.parents[1] / "images").glob("shard-*/images.parquet"))
    source_sha = image_rows.set_index("processid")["image_sha256"]
    assert (linked["image_sha256"].reindex(csv.index) == source_sha.reindex(csv.index)).all()


def test_jsonld_is_linked_data_and_conforms(release):
    from bioscan_rebuild.export.formats.jsonld import validate_jsonld

    for path in sorted((release / "metadata" / "jsonld").glob("*.jsonld")):
        conforms, report, triples = validate_jsonld(path)
        assert conforms, report
        assert triples > 20


def test_croissant_validates_and_reads_every_recordset(release):
    from bioscan_rebuild.export.formats.croissant import read_first_records, validate_croissant, verify_hashes

    path = release / "croissant.json"
    assert validate_croissant(path) == []
    assert verify_hashes(path) == []
    records = read_first_records(path)
    assert records and all(records.values())
    # the citation the card gives (mlcroissant warned "citeAs is recommended": it was left out)
    assert (release / "metadata" / "corrections.tsv").is_file() and (
        release / "metadata" / "box_corrections.tsv"
    ).is_file()
    assert json.loads(path.read_text())["citeAs"].startswith("@inproceedings{bioscan5m")


def test_manifest_covers_every_file(release):
    manifest = json.loads((release.parent / "MANIFEST.json").read_text())["files"]
    on_disk = sorted(
        p.relative_to(release.parent).as_posix()
        for p in release.parent.rglob("*")
        if p.is_file() and p.name != "MANIFEST.json"
    )
    assert sorted(manifest) == on_disk
    some = sorted(manifest)[::97]
    for name in some:
        assert hashlib.sha256((release.parent / name).read_bytes()).hexdigest() == manifest[name]["sha256"]
    assert np.all([manifest[n]["bytes"] > 0 for n in some])


def test_two_batches_of_one_export_name_it_once_among_the_release_inputs():
    """The JSON-LD refuses a file listed twice, and two batches may name one export: the build stopped at its end."""
    from bioscan_rebuild.export.release import release_inputs

    batches = {
        "b-photos": {"export": "deliveries/a.tsv", "export_sha256": "1" * 64},
        "a-records": {"export": "deliveries/a.tsv", "export_sha256": "1" * 64},
        "c": {"export": "deliveries/c.tsv", "export_sha256": "2" * 64},
        "d-images-only": {},
    }
    assert release_inputs({"batches": batches}) == [
        {"file": "deliveries/a.tsv", "sha256": "1" * 64},
        {"file": "deliveries/c.tsv", "sha256": "2" * 64},
    ]


def test_the_lineage_names_each_records_changes_by_rule_and_field(release):
    """Lineage rows named changes as step:field, and the step numbers count only the steps that changed anything:
    another delivery renumbered the lineage of records it never touched. Rule and field are stable."""
    lineage = pd.read_csv(release / "metadata" / "records_lineage.csv", dtype=str, keep_default_na=False)
    changes = pd.read_csv(release / "metadata" / "changes.csv", dtype=str, keep_default_na=False)
    expected = (changes["rule"] + ":" + changes["field"]).groupby(changes["processid"], sort=False).agg(";".join)
    named = lineage.set_index("processid")["changes"]
    named = named[named != ""]
    assert len(named) > 10
    assert all(named[pid] == expected[pid] for pid in named.index)


def test_a_release_replaces_only_an_empty_folder_or_an_earlier_release(tmp_path, monkeypatch):
    """`release --outdir` renamed whatever folder was there aside and deleted it: a folder of one's own files, or
    the folder holding the release's own input tables; `--outdir .` was a traceback. Now nothing is touched."""
    from bioscan_rebuild.core.errors import InputError
    from bioscan_rebuild.export.release import build_release

    own = tmp_path / "precious"
    own.mkdir()
    (own / "thesis.txt").write_text("my thesis")
    with pytest.raises(InputError, match="holds thesis.txt, which no release holds"):
        build_release(outdir=own, curated=tmp_path / "curated.parquet")
    assert (own / "thesis.txt").read_text() == "my thesis" and sorted(p.name for p in tmp_path.iterdir()) == [
        "precious"
    ]
    earlier = tmp_path / "release"
    (earlier / "bioscan5m").mkdir(parents=True)
    (earlier / "MANIFEST.json").write_text("{}")
    (earlier / "bioscan5m" / "curated.parquet").write_bytes(b"PAR1")
    with pytest.raises(InputError, match="an input of the release lies in --outdir"):
        build_release(outdir=earlier, curated=earlier / "bioscan5m" / "curated.parquet")
    monkeypatch.chdir(own)
    with pytest.raises(InputError, match="holds thesis.txt, which no release holds"):
        build_release(outdir=".")
    assert (own / "thesis.txt").is_file() and (earlier / "bioscan5m" / "curated.parquet").is_file()
