"""Export building blocks on small tables (the whole release is tested in test_release.py)."""

from __future__ import annotations

import hashlib
import zipfile

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from bioscan_rebuild.core.params import ExportOptions
from bioscan_rebuild.export.formats.images import write_zip_packages
from bioscan_rebuild.export.formats.parquet import ShardedParquet
from bioscan_rebuild.export.layout import image_relpath
from bioscan_rebuild.images.shard import IMAGE_RECORD_SCHEMA


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


def test_zip_packages_are_named_and_cut_as_published_and_deterministic(tmp_path):
    root = tmp_path / "bioscan5m"
    md5 = {f"P{i}": hashlib.md5(f"P{i}".encode()).hexdigest() for i in range(40)}
    low = next(pid for pid, h in md5.items() if h[0] < "8")  # chunk 00-7f: part 1
    high = next(pid for pid, h in md5.items() if h[0] >= "8")  # chunk 80-ff: part 2
    for pid, split, chunk in (
        (high, "pretrain", md5[high][:2]),
        (low, "pretrain", md5[low][:2]),
        ("T1", "train", "a"),
        ("test", "test", ""),
    ):
        folder = root / "images" / "cropped_256" / split / chunk
        folder.mkdir(parents=True)
        (folder / f"{pid}.jpg").write_bytes(b"\xff\xd8" + split.encode() + b"\xff\xd9")
    names = write_zip_packages(root, tmp_path / "zips")
    assert names == [
        "BIOSCAN_5M_cropped_256_pretrain.01.zip",  # chunks 00-7f
        "BIOSCAN_5M_cropped_256_pretrain.02.zip",  # chunks 80-ff
        "BIOSCAN_5M_cropped_256_train.zip",
        "BIOSCAN_5M_cropped_256_eval.zip",
    ]
    with zipfile.ZipFile(tmp_path / "zips" / names[1]) as archive:
        assert archive.namelist() == [f"bioscan5m/images/cropped_256/pretrain/{md5[high][:2]}/{high}.jpg"]
    first = (tmp_path / "zips" / names[3]).read_bytes()
    with zipfile.ZipFile(tmp_path / "zips" / names[3]) as archive:
        assert archive.namelist() == ["bioscan5m/images/cropped_256/test/test.jpg"]
        assert archive.infolist()[0].compress_type == zipfile.ZIP_STORED
    write_zip_packages(root, tmp_path / "zips")
    assert (tmp_path / "zips" / names[3]).read_bytes() == first
    assert write_zip_packages(root, tmp_path / "one", pretrain_parts=1)[0] == "BIOSCAN_5M_cropped_256_pretrain.zip"


BLOB = b"\xff\xd8" + b"x" * 20 + b"\xff\xd9"  # every tiny image: a JPEG's first and last markers
BLOB_SHA = hashlib.sha256(BLOB).hexdigest()


def _tiny_release_inputs(tmp_path, *, images_per_shard):
    """Curated labels, barcode shards, splits and image results for 4 records in 2 shards, with a store."""
    import pandas as pd

    from bioscan_rebuild.core.schemas import RANKS

    ids = [["A1", "A2"], ["B1", "B2"]]
    curated = pd.DataFrame(
        {
            "processid": [p for shard in ids for p in shard],
            "sampleid": "S",
            **{rank: "X" for rank in RANKS},
            "dna_bin": "BOLD:AAA0001",
            "country": "Canada",
            "province_state": None,
            "lat": 45.5,
            "lon": -75.25,
            "taxon": "X",
            "inferred_ranks": 0,
            "placeholder_species": False,
        }
    ).astype({"inferred_ranks": "uint8"})
    pq.write_table(pa.Table.from_pandas(curated, preserve_index=False), tmp_path / "curated.parquet")
    splits = pd.DataFrame({"processid": curated["processid"], "split": ["val", "val", "test", "test"], "chunk": ""})
    pq.write_table(pa.Table.from_pandas(splits, preserve_index=False), tmp_path / "splits.parquet")
    barcode_paths, image_paths = [], []
    for i, shard in enumerate(ids):
        path = tmp_path / f"barcodes-{i}.parquet"
        pq.write_table(pa.table({"processid": shard, "dna_barcode": ["ACGT" * 60] * len(shard)}), path)
        barcode_paths.append(path)
        rows = []
        for pid in shard[: images_per_shard[i]]:
            sha = f"{pid:0<64}".lower().replace("a", "a")
            rows.append(
                {
                    "processid": pid,
                    "image_sha256": sha,
                    "image_status": "ok",
                    "params_key": "k",
                    "original_full_is_source": False,
                    "image_measurement_value": 10,
                    "area_fraction": 0.1,
                    "scale_factor": 0.5,
                    **{f"sha256_{p}": BLOB_SHA for p in ("original_full", "cropped", "original_256", "cropped_256")},
                }
            )
            for package in ("original_full", "cropped", "original_256", "cropped_256"):
                target = tmp_path / "store" / "derived" / "k" / sha[:2] / f"{sha}.{package}.jpg"
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(BLOB)  # equal lengths on purpose
        path = tmp_path / f"images-{i}.parquet"
        pq.write_table(pa.Table.from_pylist(rows, schema=IMAGE_RECORD_SCHEMA), path)  # the image stage's table
        image_paths.append(path)
    return barcode_paths, image_paths


def _export_tiny(tmp_path, *, images_per_shard, formats=("csv", "parquet", "images", "hdf5"), options=None) -> dict:
    """``_tiny_release_inputs`` exported to `tmp_path/out` (by default as CSV, Parquet, images and HDF5)."""
    from bioscan_rebuild.export.release import export_release

    barcode_paths, image_paths = _tiny_release_inputs(tmp_path, images_per_shard=images_per_shard)
    return export_release(
        tmp_path / "curated.parquet",
        barcode_paths,
        tmp_path / "splits.parquet",
        tmp_path / "out",
        image_paths=image_paths,
        store_root=tmp_path / "store",
        formats=formats,
        options=options or ExportOptions(hdf5_batch=2),
    )


def test_export_survives_empty_image_shards_and_equal_sized_images(tmp_path):
    import h5py

    summary = _export_tiny(tmp_path, images_per_shard=[2, 0])
    assert summary["released"] == 4 and summary["images"]["cropped_256"] == 2
    with h5py.File(tmp_path / "out" / "bioscan5m" / "hdf5" / "BIOSCAN_5M.h5") as h5:
        assert [len(x) for x in h5["val"]["image"][:]] == [24, 24] and [len(x) for x in h5["test"]["image"][:]] == [
            0,
            0,
        ]


def test_an_hdf5_chunk_is_no_longer_than_its_split(tmp_path):
    """``hdf5_batch`` was each dataset's chunk length, stored whole however few rows a split held: 65,536 made the
    sample's HDF5 file 22 times larger."""
    import h5py

    _export_tiny(tmp_path, images_per_shard=[2, 2], formats=("csv", "hdf5"), options=ExportOptions(hdf5_batch=65536))
    path = tmp_path / "out" / "bioscan5m" / "hdf5" / "BIOSCAN_5M.h5"
    with h5py.File(path) as h5:
        for split in h5:
            for name, dataset in h5[split].items():
                assert dataset.chunks == (max(1, len(dataset)),), (split, name, dataset.chunks)
    assert path.stat().st_size < 1_000_000


def test_a_split_without_records_has_an_empty_hdf5_group_and_the_card_says_how_each_format_holds_it(
    tmp_path, monkeypatch
):
    """Reviewer loaders: a split without records (here 6 of the 8) had no HDF5 group, where the card, croissant.json
    and `bioscan-dataset` show it: h5["val"] failed in a loop over the published splits. It has an empty group of
    the same datasets. `datasets` cannot load a split of no rows (an empty Parquet file fails the whole config), so
    such a split stays out of the Parquet configs, and the card says so."""
    import h5py

    from bioscan_rebuild.core.schemas import SPLITS
    from bioscan_rebuild.export.card import write_card

    _export_tiny(tmp_path, images_per_shard=[2, 2])
    root = tmp_path / "out" / "bioscan5m"
    counts = {split: {"val": 2, "test": 2}.get(split, 0) for split in SPLITS}
    with h5py.File(root / "hdf5" / "BIOSCAN_5M.h5") as h5:
        assert list(h5) == list(SPLITS)
        assert {split: len(h5[split]["processid"]) for split in SPLITS} == counts
        assert set(h5["pretrain"]) == set(h5["val"]) and h5["pretrain"]["image"].dtype == h5["val"]["image"].dtype
    stats = root / "metadata" / "stats"
    stats.mkdir(parents=True, exist_ok=True)
    rows = "".join(f"{split},{n},0,0,0\n" for split, n in counts.items())
    (stats / "split_table.csv").write_text("split,records,species,barcodes,bins\n" + rows)
    records = {"records": 4, "images": 4}
    accounting = {"inputs": records, "released": records, "rejected": {"records": 0, "images": 0}, "batches": {}}
    card = write_card(tmp_path / "out", ExportOptions(), accounting).read_text()
    empty = ", ".join(f"`{split}`" for split in SPLITS if not counts[split])
    assert f"These splits have no records in this release: {empty}. The HDF5 file holds an empty group" in card
    assert "no Hugging Face split (`datasets` cannot load a split of no rows)" in card
    for name in ("HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE"):
        monkeypatch.setenv(name, "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    from conftest import import_or_skip

    datasets = import_or_skip("datasets", "datasets (test extra) is not installed")
    for config in ("metadata", "images"):  # as the card's configs name the files: the splits there are
        loaded = datasets.load_dataset(str(tmp_path / "out"), config, cache_dir=str(tmp_path / "cache"))
        assert {split: loaded[split].num_rows for split in loaded} == {"val": 2, "test": 2}, config


def test_one_release_writer_at_a_time_and_an_interrupted_swap_keeps_the_previous_release(tmp_path, monkeypatch):
    """Reviewer interrupt: a release job left running by a Snakemake killed alone, and the job of the run after it,
    built in, deleted and swapped the same hidden folder: a half-built release was published with its receipt. A
    second writer is refused while the first holds the lock. An interrupt between the swap's two renames deleted
    the new release and left the old one hidden; it is put back, and after a kill there the next job puts it back."""
    import fcntl
    from pathlib import Path

    from bioscan_rebuild.core.errors import InputError
    from bioscan_rebuild.export import release as rel

    final = tmp_path / "release"
    (final / "bioscan5m").mkdir(parents=True)
    (final / "MANIFEST.json").write_text("previous")
    tables = {name: tmp_path / f"{name}.parquet" for name in ("curated", "barcodes", "splits", "records")}
    tables |= {name: tmp_path / f"{name}.csv" for name in ("rejects", "changes")}
    tables["accounting"] = tmp_path / "no-accounting.json"  # the build fails at its first read
    with open(tmp_path / ".release.lock", "a+") as other:
        fcntl.flock(other, fcntl.LOCK_EX)
        with pytest.raises(InputError, match="another release job is writing it .* kill -9"):
            rel.build_release(outdir=final, **tables)
    assert (final / "MANIFEST.json").read_text() == "previous"
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == [".release.lock"]
    built = tmp_path / ".release.building"
    built.mkdir()
    (built / "MANIFEST.json").write_text("new")
    renamed = Path.rename

    def interrupted(self, target):
        if self == built:
            raise KeyboardInterrupt
        return renamed(self, target)

    with monkeypatch.context() as patched:
        patched.setattr(Path, "rename", interrupted)
        with pytest.raises(KeyboardInterrupt):
            rel._swap_into_place(built, final)
    assert (final / "MANIFEST.json").read_text() == "previous" and not (tmp_path / ".release.old").exists()
    final.rename(tmp_path / ".release.old")  # killed between the two renames: no release in place
    with pytest.raises(FileNotFoundError, match="no-accounting.json"):
        rel.build_release(outdir=final, **tables)
    assert (final / "MANIFEST.json").read_text() == "previous" and not (tmp_path / ".release.old").exists()
    # killed while a finished swap removed the replaced release: it is never put back, even with no release there
    (tmp_path / ".release.replaced" / "bioscan5m").mkdir(parents=True)
    final.rename(tmp_path / "kept")
    with pytest.raises(FileNotFoundError, match="no-accounting.json"):
        rel.build_release(outdir=final, **tables)
    assert not final.exists() and not (tmp_path / ".release.replaced").exists()
    (tmp_path / "kept").rename(final)
    # a full disk says that a release needs room for a second copy beside the previous one
    monkeypatch.setattr(rel, "_build", lambda outdir, **inputs: (_ for _ in ()).throw(OSError(28, "No space left")))
    with pytest.raises(OSError, match="needs room for a second copy"):
        rel.build_release(outdir=final, **tables)
    assert (final / "MANIFEST.json").read_text() == "previous" and not built.exists()


def test_a_release_written_over_the_working_folder_gets_its_receipt(tmp_path, monkeypatch):
    """Reviewer diffc: `release --outdir .` from inside an earlier release, with a receipt, published the release
    and then stopped on FileNotFoundError 'MANIFEST.json': the working folder was the previous release, renamed
    away. The receipt reads the release where it now is, and names it as it was given."""
    import json

    from bioscan_rebuild.export import release as rel

    final = tmp_path / "release"
    (final / "bioscan5m").mkdir(parents=True)
    (final / "MANIFEST.json").write_text("previous")

    def build(outdir, **inputs):
        (outdir / "bioscan5m").mkdir()
        (outdir / "MANIFEST.json").write_text("new")
        return {"manifest": {"files": 0}, "records": {}, "released": 0}

    monkeypatch.setattr(rel, "_build", build)
    monkeypatch.chdir(final)
    rel.build_release(outdir=".", receipt=tmp_path / "release.json")
    receipt = json.loads((tmp_path / "release.json").read_text())
    assert receipt["release"] == "." and receipt["manifest_bytes"] == 3
    assert (final / "MANIFEST.json").read_text() == "new"


def test_image_tables_in_another_order_than_the_barcode_shards_are_refused(tmp_path):
    """Paired by position, shard 0's barcodes with shard 1's images: every record lost its images and size fields,
    and the release (its card saying every image released) exited 0."""
    import pytest

    from bioscan_rebuild.core.errors import InputError
    from bioscan_rebuild.export.release import export_release

    barcode_paths, image_paths = _tiny_release_inputs(tmp_path, images_per_shard=[2, 2])
    with pytest.raises(InputError, match=r"images-1.parquet holds 2 records that .*barcodes-0.parquet does not"):
        export_release(
            tmp_path / "curated.parquet",
            barcode_paths,
            tmp_path / "splits.parquet",
            tmp_path / "out",
            image_paths=image_paths[::-1],
            store_root=tmp_path / "store",
            formats=("csv", "images"),
        )


@pytest.mark.parametrize("formats", [("csv", "images"), ("csv", "hdf5")])
def test_a_store_image_damaged_after_the_image_stage_is_never_released(tmp_path, formats):
    """A derived JPEG cut short (an interrupted rsync of the store, a full disk) or with a byte changed was copied
    into the release as it was: the release shipped a broken image under the sha256 of the sound one."""
    from bioscan_rebuild.export.release import export_release
    from bioscan_rebuild.export.spool import MissingImageError

    barcode_paths, image_paths = _tiny_release_inputs(tmp_path, images_per_shard=[2, 2])
    package = "cropped_256"  # the package HDF5 and the images Parquet carry
    damaged = next((tmp_path / "store").rglob(f"*.{package}.jpg"))
    arguments = dict(image_paths=image_paths, store_root=tmp_path / "store", formats=formats)
    release = (tmp_path / "curated.parquet", barcode_paths, tmp_path / "splits.parquet", tmp_path / "out")
    damaged.write_bytes(BLOB[:10])
    with pytest.raises(MissingImageError, match=rf"{package} in the store at .* is cut short .* delete it"):
        export_release(*release, **arguments)
    damaged.write_bytes(BLOB.replace(b"x", b"y", 1))  # as long, and whole: only its hash tells
    with pytest.raises(MissingImageError, match=rf"{package} in the store .* no longer holds sha256"):
        export_release(*release, **arguments)


def test_export_fails_loudly_when_the_store_lost_an_image(tmp_path):
    import pytest

    from bioscan_rebuild.export.release import export_release
    from bioscan_rebuild.export.spool import MissingImageError

    barcode_paths, image_paths = _tiny_release_inputs(tmp_path, images_per_shard=[2, 2])
    next((tmp_path / "store").rglob("*.cropped.jpg")).unlink()
    # a person's fix, one line naming the command that makes the missing file again (it was a traceback saying
    # "re-run the image stage", which a plain re-run does not do: the store is not a job input)
    with pytest.raises(MissingImageError, match="cropped is not in the store .* snakemake --forcerun process_photos"):
        export_release(
            tmp_path / "curated.parquet",
            barcode_paths,
            tmp_path / "splits.parquet",
            tmp_path / "out",
            image_paths=image_paths,
            store_root=tmp_path / "store",
            formats=("csv", "images"),
        )


def test_a_photo_as_delivered_gone_from_the_store_names_the_job_that_stores_it(tmp_path):
    """The original as delivered is the inventory's to store: the message sent the maintainer to the photo jobs,
    which never store it, so following it failed the same way on every run (reviewer store)."""
    import pytest

    from bioscan_rebuild.export.spool import MissingImageError, derived_image_path

    sha = "d8" + "2" * 62
    row = {"processid": "P1", "image_sha256": sha, "params_key": "k", "original_full_is_source": True}
    row.update({f"sha256_{package}": sha for package in ("original_full", "cropped")})
    with pytest.raises(MissingImageError, match="original_full is not in the store .* --forcerun inventory_images"):
        derived_image_path(tmp_path / "store", row, "original_full")
    with pytest.raises(MissingImageError, match="cropped is not in the store .* --forcerun process_photos"):
        derived_image_path(tmp_path / "store", row, "cropped")


def test_the_correction_outcomes_say_what_applied_and_overridden_mean():
    """``overridden`` claimed a later row corrected the field where that row was refused; ``applied`` said nothing
    of a record a later stage took out of the release (the table is shipped as the build wrote it: the audit checks
    it is a copy)."""
    from bioscan_rebuild.export.layout import CORRECTION_OUTCOMES

    assert "a record a later stage removed, for its photo or its scope, is in rejects.csv" in (
        CORRECTION_OUTCOMES.description
    )
    assert "its own outcome says whether it was applied" in CORRECTION_OUTCOMES.description
