"""Export building blocks on small tables (the whole release is tested in test_release.py)."""

from __future__ import annotations

import zipfile

import pyarrow as pa
import pyarrow.parquet as pq

from bioscan_rebuild.export import ExportOptions, ShardedParquet, image_relpath, write_zip_packages


def test_image_paths_follow_the_chunk_rule():
    assert (
        image_relpath("cropped_256", "pretrain", "2e", "CRCBB46471-23")
        == "images/cropped_256/pretrain/2e/CRCBB46471-23.jpg"
    )
    assert image_relpath("original_full", "test", "", "X1") == "images/original_full/test/X1.jpg"


def test_parquet_files_roll_over_by_bytes_and_are_numbered_at_the_end(tmp_path):
    schema = pa.schema([pa.field("processid", pa.string()), pa.field("dna_barcode", pa.string())])
    options = ExportOptions(row_group_bytes=40_000, file_bytes=100_000)
    writer = ShardedParquet(tmp_path, "train", schema, options, compression="zstd")
    for part in range(10):
        writer.write(
            pa.table(
                {"processid": [f"P{part}-{i}" for i in range(30)], "dna_barcode": ["ACGT" * 150] * 30}, schema=schema
            )
        )
    files = writer.close()
    assert len(files) > 1 and [f.name for f in files][0] == f"train-00000-of-{len(files):05d}.parquet"
    rows = sum(pq.ParquetFile(f).metadata.num_rows for f in files)
    groups = [pq.ParquetFile(f).metadata.num_row_groups for f in files]
    assert rows == 300 and sum(groups) > len(files)
    assert pa.concat_tables(pq.read_table(f) for f in files)["processid"].to_pylist()[:2] == ["P0-0", "P0-1"]


def test_zip_packages_are_deterministic(tmp_path):
    root = tmp_path / "bioscan5m"
    for split, chunk in (("pretrain", "ab"), ("train", "a"), ("test", "")):
        folder = root / "images" / "cropped_256" / split / chunk
        folder.mkdir(parents=True)
        (folder / f"{split}1.jpg").write_bytes(b"\xff\xd8" + split.encode() + b"\xff\xd9")
    names = write_zip_packages(root)
    assert names == [
        "BIOSCAN_5M_cropped_256.pretrain.zip",
        "BIOSCAN_5M_cropped_256.train.zip",
        "BIOSCAN_5M_cropped_256.eval.zip",
    ]
    first = (root / "zips" / names[2]).read_bytes()
    with zipfile.ZipFile(root / "zips" / names[2]) as archive:
        assert archive.namelist() == ["bioscan5m/images/cropped_256/test/test1.jpg"]
        assert archive.infolist()[0].compress_type == zipfile.ZIP_STORED
    write_zip_packages(root)
    assert (root / "zips" / names[2]).read_bytes() == first
