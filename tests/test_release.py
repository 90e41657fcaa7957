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

from bioscan_rebuild.metadata import RELEASE_COLUMNS
from bioscan_rebuild.splits import SPLITS
from conftest import run_snakemake

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


def test_hdf5(release, csv_table):
    import h5py

    with h5py.File(release / "hdf5" / "BIOSCAN_5M.h5", "r") as h5:
        assert h5.attrs["licence"] and h5.attrs["version"] and json.loads(h5.attrs["provenance"])["inputs"]
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


def test_bioscan_dataset_loaders_read_the_release(release, csv_table):
    bioscan_dataset = pytest.importorskip("bioscan_dataset", reason="bioscan-dataset (test extra) is not installed")

    metadata = bioscan_dataset.load_bioscan5m_metadata(
        release / "metadata" / "csv" / "BIOSCAN_5M_Insect_Dataset_metadata.csv"
    )
    assert len(metadata) == len(csv_table) and list(metadata["processid"]) == list(csv_table["processid"])

    class RebuiltBIOSCAN5M(bioscan_dataset.BIOSCAN5M):
        def _check_integrity(self, verbose=1):  # the official CSV's md5 cannot match a rebuild
            return os.path.exists(self.metadata_path) and os.path.isdir(self.image_dir)

    for split in SPLITS:
        dataset = RebuiltBIOSCAN5M(
            release.parent, split=split, modality=("image", "dna"), target_type="family", target_format="text"
        )
        assert len(dataset) == (csv_table["split"] == split).sum() > 0
        image, dna, target = dataset[0]
        assert image.size[1] == 256 and set(dna) <= set("ACGTRYSWKMBDHVN") and isinstance(target, str)


def test_formats_agree_on_every_record(release, csv_table):
    """CSV, Parquet, HDF5 and JSON-LD: same records, taxonomy, BIN, sequence hash, image sha256."""
    import h5py

    from bioscan_rebuild.export_jsonld import read_jsonld_records

    csv = csv_table.set_index("processid")
    parquet = pd.concat(
        pq.read_table(p).to_pandas() for p in (release / "metadata" / "parquet" / "data").glob("*.parquet")
    )
    parquet = parquet.set_index("processid").astype({"family": object, "genus": object, "dna_bin": object})
    for column in ("family", "genus", "dna_bin", "dna_barcode"):
        assert (parquet[column].fillna("").reindex(csv.index) == csv[column]).all(), column
    with h5py.File(release / "hdf5" / "BIOSCAN_5M.h5", "r") as h5:
        for split in h5:
            ids = [v.decode() for v in h5[split]["processid"][:]]
            for column in ("family", "dna_bin", "dna_barcode"):
                values = [v.decode() for v in h5[split][column][:]]
                assert values == list(csv.loc[ids, column]), (split, column)
    linked = pd.concat(read_jsonld_records(p) for p in sorted((release / "metadata" / "jsonld").glob("*.jsonld")))
    linked = linked.set_index("processid")
    assert sorted(linked.index) == sorted(csv.index)
    for column in ("family", "genus", "dna_bin", "split"):
        assert (linked[column].fillna("").reindex(csv.index) == csv[column]).all(), column
    digests = csv["dna_barcode"].map(lambda s: hashlib.sha256(s.encode()).hexdigest())
    assert (linked["barcode_sha256"].reindex(csv.index) == digests).all()
    image_rows = pd.concat(pd.read_parquet(p) for p in (release.parents[1] / "images").glob("shard-*/images.parquet"))
    image_sha = image_rows.set_index("processid")["image_sha256"]
    assert (linked["image_sha256"].reindex(csv.index) == image_sha.reindex(csv.index)).all()


def test_jsonld_is_linked_data_and_conforms(release):
    from bioscan_rebuild.export_jsonld import validate_jsonld

    for path in sorted((release / "metadata" / "jsonld").glob("*.jsonld")):
        conforms, report, triples = validate_jsonld(path)
        assert conforms, report
        assert triples > 20


def test_croissant_validates_and_reads_every_recordset(release):
    from bioscan_rebuild.export_croissant import read_first_records, validate_croissant, verify_hashes

    path = release / "croissant.json"
    assert validate_croissant(path) == []
    assert verify_hashes(path) == []
    records = read_first_records(path)
    assert records and all(records.values())


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
