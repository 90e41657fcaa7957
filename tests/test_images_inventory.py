"""Image listing and inventory on real BIOSCAN photos, plus the bad files the imager can produce."""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import stat
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet
import pytest
from PIL import Image

from bioscan_rebuild.core.store import ImageStore, job_name, params_key
from bioscan_rebuild.ingest.inventory import inspect_image, inventory, list_images

IMGFILTER = "Bioscan-ImgFilter/dataset"
BIOSCAN1M = "BIOSCAN-1M/dataset/bioscan_images"


def test_real_photos_sizes_formats_and_hashes(realdata):
    expected = {
        f"{BIOSCAN1M}/Diptera.jpg": (2880, 2160),
        f"{BIOSCAN1M}/Hymenoptera.jpg": (2880, 2160),
        f"{IMGFILTER}/failed_crop_subset/AACTA1595-20.1024px.jpg": (1024, 768),
        f"{BIOSCAN1M}/cropped_images/BIOUG68001-C12.jpg": (341, 256),
    }
    for rel, size in expected.items():
        data = (realdata / rel).read_bytes()
        facts = inspect_image(data)
        assert (facts["image_width"], facts["image_height"]) == size, rel
        assert facts["image_format"] == "jpeg" and facts["image_problem"] is None
        assert facts["image_bytes"] == len(data)
        assert facts["image_sha256"] == hashlib.sha256(data).hexdigest()


def test_listing_maps_names_to_processids_and_shards(realdata):
    listing, rejects = list_images(realdata / IMGFILTER, "imgfilter", n_shards=4)
    rows = {r["image_path"]: r for r in listing.to_pylist()}
    assert len(rows) == 10 and rejects.num_rows == 0
    assert rows["failed_crop_subset/AACTA1595-20.1024px.jpg"]["processid"] == "AACTA1595-20"
    assert rows["filtered_imgs/valid/ABINP2539-21.1024px.jpg"]["processid"] == "ABINP2539-21"
    assert set(listing["shard"].to_pylist()) <= {0, 1, 2, 3}
    # Stable: md5-based, the same on every run and machine.
    again, _ = list_images(realdata / IMGFILTER, "imgfilter", n_shards=4)
    assert again.equals(listing)


def test_inventory_of_real_photos_puts_them_in_the_store(realdata, tmp_path):
    listing, _ = list_images(realdata / IMGFILTER, "b", n_shards=1)
    store = ImageStore(tmp_path / "store", mode="copy")
    table = inventory(listing, {"b": realdata / IMGFILTER}, store)
    assert table.num_rows == 10 and table["image_problem"].null_count == 10
    for row in table.to_pylist():
        stored = store.original_path(row["image_sha256"], "jpeg")
        assert stored.read_bytes() == (realdata / IMGFILTER / row["image_path"]).read_bytes()
        assert (row["image_width"], row["image_height"]) == (1024, 768)
    # A second inventory finds everything stored already and changes nothing.
    before = sorted((p, p.stat().st_mtime_ns) for p in (tmp_path / "store").rglob("*.jpg"))
    inventory(listing, {"b": realdata / IMGFILTER}, store)
    assert sorted((p, p.stat().st_mtime_ns) for p in (tmp_path / "store").rglob("*.jpg")) == before


def test_bad_files_get_a_problem_each(realdata, tmp_path):
    good = (realdata / f"{IMGFILTER}/failed_crop_subset/AACTA1595-20.1024px.jpg").read_bytes()
    png = io.BytesIO()
    Image.fromarray(np.full((30, 40, 3), 200, np.uint8)).save(png, format="PNG")
    cases = {
        "truncated": (good[: len(good) // 2], "undecodable"),
        "empty": (b"", "empty_file"),
        "garbage": (b"this is not an image at all" * 10, "undecodable"),
        "png named jpg": (png.getvalue(), None),
        "good with trailing zeros": (good + b"\x00" * 16, None),
    }
    for name, (data, problem) in cases.items():
        assert inspect_image(data)["image_problem"] == problem, name
    assert inspect_image(png.getvalue())["image_format"] == "png"
    # Huge declared size: the header is read without decoding, so it does not blow up.
    bomb = io.BytesIO()
    Image.new("L", (20000, 20000)).save(bomb, format="PNG")
    facts = inspect_image(bomb.getvalue())
    assert (facts["image_width"], facts["image_height"]) == (20000, 20000)


def _damaged_files(photo: bytes) -> dict[str, bytes]:
    """A real photo saved as AVIF and as DDS, each with one field broken: Pillow's plugins then raise errors
    that are not OSError (RuntimeError, NotImplementedError) while reading the header or the pixels."""
    import struct

    rgb = Image.open(io.BytesIO(photo)).convert("RGB")
    out = {}
    for kind in ("AVIF", "DDS"):
        buffer = io.BytesIO()
        rgb.save(buffer, format=kind)
        out[kind] = bytearray(buffer.getvalue())
    header_avif, pixels_avif = bytearray(out["AVIF"]), bytearray(out["AVIF"])
    header_avif[81] = 0  # a byte of the 'meta' box: "Missing or empty image item"
    pixels_avif[pixels_avif.find(b"mdat") + 4] ^= 0xFF  # the first byte of the AV1 data
    out["DDS"][80:84] = struct.pack("<I", 0)  # the pixel format's flags: "Unknown pixel format flags 0"
    return {"avif header": bytes(header_avif), "avif pixels": bytes(pixels_avif), "dds": bytes(out["DDS"])}


def test_a_damaged_file_of_any_format_is_undecodable_not_a_failed_job(realdata, tmp_path):
    from bioscan_rebuild.core.params import ImageParams
    from bioscan_rebuild.detect.classical import ClassicalDetector
    from bioscan_rebuild.images.process import process_photos
    from bioscan_rebuild.ingest.inventory import LISTING_SCHEMA

    good = (realdata / f"{IMGFILTER}/failed_crop_subset/AACTA1595-20.1024px.jpg").read_bytes()
    damaged = _damaged_files(good)
    folder = tmp_path / "imgs"
    folder.mkdir()
    (folder / "GOOD-1.jpg").write_bytes(good)
    for i, data in enumerate(damaged.values()):
        (folder / f"BAD-{i}.jpg").write_bytes(data)
    names = ["GOOD-1.jpg", *(f"BAD-{i}.jpg" for i in range(len(damaged)))]
    listing = pa.Table.from_pylist(
        [{"batch": "b", "image_path": n, "processid": n[:-4], "shard": 0} for n in names], schema=LISTING_SCHEMA
    )
    rows = inventory(listing, {"b": folder}).to_pylist()
    problems = {row["processid"]: row["image_problem"] for row in rows}
    assert problems["GOOD-1"] is None
    assert all(problems[f"BAD-{i}"] == "undecodable" for i in range(len(damaged))), problems
    # the image stage: a photo in a format it does not take, or whose pixels cannot be decoded, is undecodable;
    # its neighbours are processed
    tiff = io.BytesIO()
    Image.open(io.BytesIO(good)).convert("RGB").save(tiff, format="TIFF", compression="tiff_lzw")
    broken_tiff = bytearray(tiff.getvalue())
    for k in range(1000, len(broken_tiff) // 2, 7):  # LZW data damaged behind an intact header
        broken_tiff[k] ^= 0xFF
    results = process_photos(
        [good, damaged["avif pixels"], good, bytes(broken_tiff), good], ClassicalDetector(), ImageParams()
    )
    statuses = [result.status for result, _ in results]
    assert statuses[1] == statuses[3] == "undecodable" and statuses[0] == statuses[2] == statuses[4] != "undecodable"
    assert results[1][0].detail == "unsupported format AVIF" and results[3][0].detail.startswith("OSError: ")


def test_running_out_of_memory_fails_the_job_and_marks_no_photo(realdata, monkeypatch):
    """A MemoryError is the job's limit, not the photo's: saved as undecodable, the photo stayed rejected on every
    later run (the store keeps results)."""
    from bioscan_rebuild.core.params import ImageParams
    from bioscan_rebuild.images import process
    from bioscan_rebuild.ingest import photo_facts

    good = (realdata / f"{IMGFILTER}/failed_crop_subset/AACTA1595-20.1024px.jpg").read_bytes()

    def out_of_memory(*args, **kwargs):
        raise MemoryError

    monkeypatch.setattr(process, "_decode_jpeg_strict", out_of_memory)
    monkeypatch.setattr(photo_facts, "open_image", out_of_memory)
    with pytest.raises(MemoryError):
        process.decode_photo(good, ImageParams())
    with pytest.raises(MemoryError):
        inspect_image(good)


def test_a_name_a_pattern_matches_without_its_processid_group_is_unrecognised(tmp_path):
    """A pattern whose group may match nothing (``^A$|^thumb_.*$``) stopped the listing job with a TypeError on
    the first file matched without it."""
    folder = tmp_path / "imgs"
    folder.mkdir()
    for name in ("P1.jpg", "thumb_1.jpg"):
        (folder / name).write_bytes(b"x")
    listing, rejects = list_images(folder, "b", n_shards=1, name_pattern=r"^(?P<processid>P\d+)\.jpg$|^thumb_.*$")
    assert listing["processid"].to_pylist() == ["P1"]
    assert rejects["image_path"].to_pylist() == ["thumb_1.jpg"] and rejects["reason"].to_pylist() == [
        "unrecognised_name"
    ]


def test_unrecognised_names_are_rejected(tmp_path, realdata):
    folder = tmp_path / "imgs"
    (folder / "sub").mkdir(parents=True)
    shutil.copy(realdata / f"{IMGFILTER}/failed_crop_subset/AACTA1595-20.1024px.jpg", folder / "sub")
    (folder / "Thumbs.db").write_bytes(b"x")
    (folder / ".DS_Store").write_bytes(b"x")
    (folder / "notes.txt").write_text("hello")
    # what a Mac leaves beside each photo (AppleDouble): never read as a photo of processid "._AACTA1595-20"
    (folder / "sub" / "._AACTA1595-20.1024px.jpg").write_bytes(b"\x00\x05\x16\x07Mac OS X")
    (folder / "__MACOSX" / "sub").mkdir(parents=True)
    (folder / "__MACOSX" / "sub" / "AACTA1595-20.1024px.jpg").write_bytes(b"\x00\x05\x16\x07Mac OS X")
    listing, rejects = list_images(folder, "b", n_shards=2)
    assert listing["image_path"].to_pylist() == ["sub/AACTA1595-20.1024px.jpg"]
    assert sorted(rejects["image_path"].to_pylist()) == [
        ".DS_Store",
        "Thumbs.db",
        "__MACOSX/sub/AACTA1595-20.1024px.jpg",
        "notes.txt",
        "sub/._AACTA1595-20.1024px.jpg",
    ]
    assert set(rejects["reason"].to_pylist()) == {"unrecognised_name"}
    assert sum("macOS resource file" in detail for detail in rejects["detail"].to_pylist()) == 2


def test_store_link_mode_and_derived_keys(tmp_path):
    source = tmp_path / "a.jpg"
    source.write_bytes(b"\xff\xd8hello\xff\xd9")
    store = ImageStore(tmp_path / "store", mode="link")
    sha = hashlib.sha256(source.read_bytes()).hexdigest()
    stored = store.put_original(source, sha, "jpeg")
    assert stored.read_bytes() == source.read_bytes() and stored.name == f"{sha}.jpg"
    assert ImageStore(tmp_path / "none", mode="none").put_original(source, sha, "jpeg") is None
    assert params_key({"a": 1, "b": [1, 2]}) == params_key({"b": [1, 2], "a": 1})
    assert params_key({"a": 1}) != params_key({"a": 2})
    target = store.derived_path(params_key({"a": 1}), sha)
    store.put_bytes(target, b"derived")
    assert target.read_bytes() == b"derived"
    assert not list(target.parent.glob(".*.tmp"))


def test_inventory_of_empty_listing(tmp_path):
    from bioscan_rebuild.ingest.inventory import LISTING_SCHEMA

    table = inventory(LISTING_SCHEMA.empty_table(), {}, None)
    assert table.num_rows == 0 and isinstance(table, pa.Table)


SHA = "ab" + "c" * 62  # a sha256 in hex: its first two digits, "ab", name the fan-out folder
KEY = "0123456789abcdef"  # a params_key: 16 hex digits


def test_store_paths_follow_the_documented_layout(tmp_path):
    # {root}/original/{sha[:2]}/{sha}.{ext} and {root}/derived/{params_key}/{sha[:2]}/{sha}.{ext}
    store = ImageStore(tmp_path)
    assert store.original_path(SHA, "jpeg") == tmp_path / "original" / "ab" / f"{SHA}.jpg"
    assert store.original_path(SHA, "png") == tmp_path / "original" / "ab" / f"{SHA}.png"
    assert store.original_path(SHA, "tiff") == tmp_path / "original" / "ab" / f"{SHA}.tif"
    assert store.original_path(SHA, "webp") == tmp_path / "original" / "ab" / f"{SHA}.webp"  # unlisted: as named
    derived = tmp_path / "derived" / KEY / "ab"
    assert store.derived_path(KEY, SHA) == derived / f"{SHA}.jpg"
    assert store.derived_path(KEY, SHA, "png") == derived / f"{SHA}.png"
    assert store.derived_image_path(KEY, SHA, "cropped_256") == derived / f"{SHA}.cropped_256.jpg"
    assert store.derived_result_path(KEY, SHA) == derived / f"{SHA}.json"
    assert store.detection_path(KEY, SHA) == derived / f"{SHA}.detection.json"


def test_original_full_is_the_source_itself_only_when_flagged_so(tmp_path):
    store = ImageStore(tmp_path)
    derived = tmp_path / "derived" / KEY / "ab"
    assert store.package_path(KEY, SHA, "original_full", True) == tmp_path / "original" / "ab" / f"{SHA}.jpg"
    assert store.package_path(KEY, SHA, "original_full", False) == derived / f"{SHA}.original_full.jpg"
    assert store.package_path(KEY, SHA, "original_full") == derived / f"{SHA}.original_full.jpg"
    # the flag concerns original_full only: every other package is a derived image
    assert store.package_path(KEY, SHA, "cropped", True) == derived / f"{SHA}.cropped.jpg"


def test_params_key_is_the_sha256_of_sorted_compact_json():
    # {"b": [1, 2], "a": 1} sorted, without spaces: '{"a":1,"b":[1,2]}'; its sha256, first 16 hex digits.
    assert params_key({"b": [1, 2], "a": 1}) == hashlib.sha256(b'{"a":1,"b":[1,2]}').hexdigest()[:16]


def test_store_mode_is_checked_and_defaults_to_copy(tmp_path):
    assert ImageStore(tmp_path).mode == "copy"
    with pytest.raises(ValueError, match=r"image store mode must be one of .*link.*copy.*none.*, not 'links'"):
        ImageStore(tmp_path, mode="links")


def test_scratch_folder_is_named_after_the_job_or_the_process(tmp_path):
    job = ImageStore(tmp_path, job="results/images/shard-3.parquet")
    assert job.scratch == tmp_path / ".scratch" / "results--images--shard-3.parquet"
    assert ImageStore(tmp_path).scratch == tmp_path / ".scratch" / f"pid-{os.getpid()}"
    assert ImageStore(tmp_path, job="").scratch == tmp_path / ".scratch" / f"pid-{os.getpid()}"


@pytest.mark.parametrize(
    "name,folder",
    [
        ("results/images/3.parquet", "results--images--3.parquet"),
        ("/abs/out/", "abs--out"),  # leading and trailing separators dropped
        ("X/Y", "X--Y"),  # only separators are stripped, not letters
        (Path("a/b"), "a--b"),
        ("/", "job"),  # nothing left: a fixed name
        ("", "job"),
    ],
)
def test_job_name(name, folder):
    assert job_name(name) == folder


def test_copy_mode_stores_a_read_only_copy_once(tmp_path):
    source = tmp_path / "a.jpg"
    source.write_bytes(b"\xff\xd8photo\xff\xd9")
    source.chmod(0o644)
    sha = hashlib.sha256(source.read_bytes()).hexdigest()
    store = ImageStore(tmp_path / "store", mode="copy", job="inventory/0")
    stored = store.put_original(source, sha, "jpeg")
    assert stored == tmp_path / "store" / "original" / sha[:2] / f"{sha}.jpg"
    assert stored.read_bytes() == source.read_bytes() and stored.stat().st_ino != source.stat().st_ino
    assert stat.S_IMODE(stored.stat().st_mode) == 0o444 and stat.S_IMODE(source.stat().st_mode) == 0o644
    # already stored: a no-op, whatever the file now holds
    source.write_bytes(b"other")
    assert store.put_original(source, sha, "jpeg") == stored and stored.read_bytes() == b"\xff\xd8photo\xff\xd9"
    store.close()
    assert not (tmp_path / "store" / ".scratch").exists()  # a finished job leaves no scratch folder


def _photo(colour) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (64, 48), colour).save(out, format="JPEG")
    return out.getvalue()


def test_an_inventory_run_again_reads_only_the_files_that_changed(tmp_path, monkeypatch):
    """One photo replaced re-lists every group of its batch, so every inventory job of the batch ran again and read
    and hashed every photo (the whole batch, at 5M records) to find the one that changed."""
    import bioscan_rebuild.ingest.inventory as inv

    folder = tmp_path / "photos"
    folder.mkdir()
    for i, colour in enumerate(("red", "green", "blue")):
        (folder / f"P{i}.jpg").write_bytes(_photo(colour))
    listing = pa.table(
        {"batch": ["b"] * 3, "image_path": [f"P{i}.jpg" for i in range(3)], "processid": ["P0", "P1", "P2"]}
        | {"shard": [0, 0, 0]}
    )
    pa.parquet.write_table(listing, tmp_path / "listing.parquet")
    store = ImageStore(tmp_path / "store", mode="copy")
    read = []
    real_read = inv.read_whole
    monkeypatch.setattr(inv, "read_whole", lambda path: read.append(path.name) or real_read(path))
    output = tmp_path / "inventory" / "0.parquet"
    first = inv.inventory_shard(tmp_path / "listing.parquet", {"b": folder}, output, store)
    assert sorted(read) == ["P0.jpg", "P1.jpg", "P2.jpg"] and first.schema == inv.INVENTORY_SCHEMA
    written = output.read_bytes()
    read.clear()
    output.unlink()  # as Snakemake does before a job runs again
    assert inv.inventory_shard(tmp_path / "listing.parquet", {"b": folder}, output, store) == first
    assert read == [] and output.read_bytes() == written
    (folder / "P1.jpg").write_bytes(_photo("white"))  # replaced
    stored = store.original_path(first["image_sha256"][2].as_py(), "jpeg")
    stored.unlink()  # an original gone from the store is stored again, from its unchanged file
    again = inv.inventory_shard(tmp_path / "listing.parquet", {"b": folder}, output, store)
    assert read == ["P1.jpg"] and again["image_sha256"][1] != first["image_sha256"][1]
    assert stored.read_bytes() == (folder / "P2.jpg").read_bytes()
    (store.root / inv.INVENTORY_CACHE / f"{job_name(output)}.parquet").write_bytes(b"damaged")
    read.clear()
    assert inv.inventory_shard(tmp_path / "listing.parquet", {"b": folder}, output, store) == again
    assert sorted(read) == ["P0.jpg", "P1.jpg", "P2.jpg"]  # a damaged cache: every file read again
    read.clear()
    monkeypatch.setattr(inv, "facts_version", lambda: "fixed-header-check")  # the code that makes the facts changed
    assert inv.inventory_shard(tmp_path / "listing.parquet", {"b": folder}, output, store) == again
    assert sorted(read) == ["P0.jpg", "P1.jpg", "P2.jpg"]  # its old facts were kept for unchanged photos
    # a stored original cut short (an interrupted copy of the store, a disk fault) is put again from its unchanged
    # file, not trusted for its name (the release took the cut bytes)
    stored.chmod(0o644)
    os.truncate(stored, stored.stat().st_size // 3)
    read.clear()
    assert inv.inventory_shard(tmp_path / "listing.parquet", {"b": folder}, output, store) == again
    assert read == [] and stored.read_bytes() == (folder / "P2.jpg").read_bytes()


def test_link_mode_reads_each_photo_once(tmp_path, monkeypatch):
    """Linking a photo into the store changes its status-change time: the next run read and hashed every photo of
    the delivery again (the whole delivery once more, at 5M photos)."""
    import bioscan_rebuild.ingest.inventory as inv

    folder = tmp_path / "photos"
    folder.mkdir()
    for i, colour in enumerate(("red", "green")):
        (folder / f"P{i}.jpg").write_bytes(_photo(colour))
    listing = pa.table({"batch": ["b"] * 2, "image_path": ["P0.jpg", "P1.jpg"], "processid": ["P0", "P1"]})
    pa.parquet.write_table(listing.append_column("shard", pa.array([0, 0])), tmp_path / "listing.parquet")
    store = ImageStore(tmp_path / "store", mode="link")
    read = []
    real_read = inv.read_whole
    monkeypatch.setattr(inv, "read_whole", lambda path: read.append(path.name) or real_read(path))
    output = tmp_path / "inventory.parquet"
    first = inv.inventory_shard(tmp_path / "listing.parquet", {"b": folder}, output, store)
    assert sorted(read) == ["P0.jpg", "P1.jpg"] and (folder / "P0.jpg").stat().st_nlink == 2
    read.clear()
    output.unlink()
    assert inv.inventory_shard(tmp_path / "listing.parquet", {"b": folder}, output, store) == first
    assert read == []


def test_a_photo_rewritten_while_it_was_stored_is_read_again_next_time(tmp_path, monkeypatch):
    """The stat that marks a photo unchanged is taken again after linking it into the store (the link changes its
    status-change time alone); a photo rewritten meanwhile must not have its old hash cached under its new stat."""
    import bioscan_rebuild.ingest.inventory as inv

    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "P0.jpg").write_bytes(_photo("red"))
    listing = pa.table({"batch": ["b"], "image_path": ["P0.jpg"], "processid": ["P0"], "shard": [0]})
    pa.parquet.write_table(listing, tmp_path / "listing.parquet")
    store = ImageStore(tmp_path / "store", mode="link")
    real_put = ImageStore.put_original

    def put_then_rewrite(self, *args, **kwargs):
        stored = real_put(self, *args, **kwargs)
        (folder / "P0.jpg").unlink()  # a new delivery of the photo lands right after it was linked
        (folder / "P0.jpg").write_bytes(_photo("blue"))
        return stored

    monkeypatch.setattr(ImageStore, "put_original", put_then_rewrite)
    output = tmp_path / "inventory.parquet"
    first = inv.inventory_shard(tmp_path / "listing.parquet", {"b": folder}, output, store)
    monkeypatch.setattr(ImageStore, "put_original", real_put)
    output.unlink()
    again = inv.inventory_shard(tmp_path / "listing.parquet", {"b": folder}, output, store)
    assert again["image_sha256"][0].as_py() == hashlib.sha256(_photo("blue")).hexdigest() != first["image_sha256"][0]


def test_a_file_too_big_for_the_jobs_memory_is_named(tmp_path, monkeypatch):
    """One huge file (a misnamed archive, a focus-stacked TIFF) stopped the inventory job with a bare MemoryError
    that named no file."""
    from bioscan_rebuild.core.errors import InputError
    from bioscan_rebuild.ingest.inventory import read_whole

    big = tmp_path / "P1.tif"
    big.write_bytes(b"x" * 1000)

    def out_of_memory(self):
        raise MemoryError

    monkeypatch.setattr(Path, "read_bytes", out_of_memory)
    with pytest.raises(InputError, match=r"P1\.tif: 1,000 bytes do not fit in this job's memory"):
        read_whole(big)


def test_link_mode_hard_links_without_touching_the_source_mode(tmp_path):
    source = tmp_path / "a.jpg"
    source.write_bytes(b"\xff\xd8photo\xff\xd9")
    source.chmod(0o644)
    sha = hashlib.sha256(source.read_bytes()).hexdigest()
    store = ImageStore(tmp_path / "store", mode="link", job="inventory/0")
    stored = store.put_original(source, sha, "jpeg")
    assert stored == tmp_path / "store" / "original" / sha[:2] / f"{sha}.jpg"
    assert stored.stat().st_ino == source.stat().st_ino  # the same file, not a copy
    assert stat.S_IMODE(source.stat().st_mode) == 0o644  # the link shares the source's mode: not made read-only


def test_a_copy_mode_run_copies_an_original_a_link_mode_run_left_linked(tmp_path):
    """Switched from link to copy mode, the store kept its hard links (of the right size, so "present"): a delivery
    rewritten in place later changed the store's original too, and the release shipped the changed bytes."""
    source = tmp_path / "a.jpg"
    source.write_bytes(b"\xff\xd8photo\xff\xd9")
    data = source.read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    linked = ImageStore(tmp_path / "store", mode="link").put_original(source, sha, "jpeg", data)
    assert linked.stat().st_ino == source.stat().st_ino
    copy_mode = ImageStore(tmp_path / "store", mode="copy")
    for given in (data, None):  # the bytes hashed, or only the source's path
        stored = copy_mode.put_original(source, sha, "jpeg", given)
        assert stored == linked and stored.stat().st_ino != source.stat().st_ino and stored.stat().st_nlink == 1
        assert stat.S_IMODE(stored.stat().st_mode) == 0o444
        inode = stored.stat().st_ino
        assert copy_mode.put_original(source, sha, "jpeg", given).stat().st_ino == inode  # a copy stays as it is
        stored.unlink()
        ImageStore(tmp_path / "store", mode="link").put_original(source, sha, "jpeg", data)
    with open(source, "r+b") as handle:  # rewritten in place, the same size
        handle.seek(3)
        handle.write(b"X")
    assert ImageStore(tmp_path / "store", mode="copy").put_original(source, sha, "jpeg", data).read_bytes() == data


def test_a_stored_original_is_damaged_only_when_a_link_to_it_was_rewritten(tmp_path):
    source = tmp_path / "a.jpg"
    source.write_bytes(b"\xff\xd8photo\xff\xd9")
    data = source.read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    store = ImageStore(tmp_path / "store", mode="link")
    assert not store.original_damaged(sha, "jpeg")  # not stored (mode none): no damage
    store.put_original(source, sha, "jpeg", data)
    assert not store.original_damaged(sha, "jpeg")
    with open(source, "r+b") as handle:
        handle.seek(3)
        handle.write(b"X")
    assert store.original_damaged(sha, "jpeg")
    copies = ImageStore(tmp_path / "copies", mode="copy")
    copies.put_original(source, hashlib.sha256(source.read_bytes()).hexdigest(), "jpeg")
    assert not copies.original_damaged(hashlib.sha256(source.read_bytes()).hexdigest(), "jpeg")


def test_a_cached_result_whose_linked_original_was_rewritten_is_processed_again(tmp_path):
    """The image stage reused such a photo's result without reading its original (a later delivery of the same
    photo named it), so the release copied the rewritten bytes as original_full."""
    from bioscan_rebuild.images.process import DerivedStore, PhotoResult

    source = tmp_path / "a.jpg"
    source.write_bytes(b"\xff\xd8photo\xff\xd9")
    data = source.read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    ImageStore(tmp_path / "store", mode="link").put_original(source, sha, "jpeg", data)
    derived = DerivedStore(ImageStore(tmp_path / "store", mode="copy"), KEY)
    result = PhotoResult("ok", sha256={"original_full": sha}, original_full_is_source=True)
    derived.save(sha, result, {})
    read = []
    real_read = derived.store.read_original
    derived.store.read_original = lambda *args: read.append(args) or real_read(*args)
    assert derived.load(sha) == result
    assert read == []  # unchanged since the result was stored: not read (a re-run read every linked original twice)
    with open(source, "r+b") as handle:
        handle.seek(3)
        handle.write(b"X")
    assert derived.load(sha) is None


def test_a_cached_result_whose_jpeg_was_cut_short_is_processed_again(tmp_path):
    """Only a JPEG gone from the store made its photo run again: one cut short (an interrupted copy of the store, a
    full disk) was reused, and the release took it."""
    from bioscan_rebuild.core.pilsafe import encode_jpeg
    from bioscan_rebuild.images.process import DerivedStore, PhotoResult

    derived = DerivedStore(ImageStore(tmp_path / "store", mode="copy"), KEY)
    crop = encode_jpeg(np.zeros((8, 8, 3), np.uint8))
    result = PhotoResult("ok", sha256={"cropped": hashlib.sha256(crop).hexdigest()})
    derived.save(SHA, result, {"cropped": crop})
    assert derived.load(SHA) == result
    stored = derived.image_path(SHA, "cropped")
    stored.chmod(0o644)
    os.truncate(stored, len(crop) // 2)
    assert derived.load(SHA) is None
    derived.save(SHA, result, {"cropped": crop})  # the photo's job made it again: the cut file is replaced
    assert derived.load(SHA) == result and stored.read_bytes() == crop
    # its end zeroed, its size kept (a crash mid-write): put_bytes kept a file of the right size, so every run
    # processed the photo again and the damage stayed
    stored.chmod(0o644)
    stored.write_bytes(crop[:-32] + bytes(32))
    assert derived.load(SHA) is None
    derived.save(SHA, result, {"cropped": crop})
    assert derived.load(SHA) == result and stored.read_bytes() == crop


@pytest.mark.parametrize("damage", ["emptied", "cut short", "not a result"])
def test_a_cached_result_json_damaged_in_the_store_is_processed_again(tmp_path, damage):
    """Reviewer concur: a store copied onto a full disk left result JSONs empty or cut short, and every later photo
    job and shard join stopped on a JSONDecodeError traceback naming no file, run after run. The damaged result is
    taken for none: removed, the photo processed again and the result written afresh (as a damaged detection
    file, or JPEG, is)."""
    from bioscan_rebuild.core.pilsafe import encode_jpeg
    from bioscan_rebuild.images.process import DerivedStore, PhotoResult

    derived = DerivedStore(ImageStore(tmp_path / "store", mode="copy"), KEY)
    crop = encode_jpeg(np.zeros((8, 8, 3), np.uint8))
    result = PhotoResult("ok", sha256={"cropped": hashlib.sha256(crop).hexdigest()})
    derived.save(SHA, result, {"cropped": crop})
    path = derived.result_path(SHA)
    written = path.read_bytes()
    path.chmod(0o644)
    path.write_bytes({"emptied": b"", "cut short": written[: len(written) // 2], "not a result": b'{"a": 1}'}[damage])
    assert derived.load(SHA) is None and not path.exists()
    derived.save(SHA, result, {"cropped": crop})  # the photo's job made it again
    assert derived.load(SHA) == result and path.read_bytes() == written


def test_a_whole_result_with_fields_this_code_does_not_know_is_left_in_the_store(tmp_path):
    """Reviewer diffa: a well-formed result with a field this code does not know (a later code sharing the store)
    was deleted as damaged. It is not taken for damage (this code's result is written in its place when the photo
    is processed again)."""
    import json
    from dataclasses import asdict

    from bioscan_rebuild.images.process import DerivedStore, PhotoResult

    derived = DerivedStore(ImageStore(tmp_path / "store", mode="copy"), KEY)
    path = derived.result_path(SHA)
    later = json.dumps({**asdict(PhotoResult("no_specimen")), "a_later_field": 1}).encode()
    derived.store.put_bytes(path, later)
    assert derived.load(SHA) is None and path.read_bytes() == later


def test_a_job_writes_while_another_job_removes_the_shared_scratch_folder(tmp_path, monkeypatch):
    """Reviewer concur: a finishing job removes the shared `.scratch` folder once it is empty; between another
    job's making of it and of its own folder inside, that job's first write failed (9-20 of 3,000 writes per
    process, 4 jobs at once), reported as a path to check."""
    store = ImageStore(tmp_path / "store", job="images/1")
    real_mkdir = Path.mkdir
    raced = []

    def mkdir_in_a_race(self, *args, **kwargs):
        if self == store.scratch and not raced:  # the parent made, then removed by the other job's close
            raced.append(self)
            real_mkdir(self.parent, parents=True, exist_ok=True)
            self.parent.rmdir()
            raise FileNotFoundError(2, "No such file or directory", str(self))
        return real_mkdir(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", mkdir_in_a_race)
    target = store.derived_image_path(KEY, SHA, "cropped")
    assert store.put_bytes(target, b"derived") == target and raced and target.read_bytes() == b"derived"


def test_a_deep_output_path_names_its_scratch_folder_and_inventory_cache_within_a_file_name(tmp_path):
    """Reviewer concur: an output path of 251 characters (well within PATH_MAX) became one folder or file name
    of the store: `File name too long` for a name the user never gave. A long name keeps its end after a hash of
    the whole: the cache's file and its temporary name within 255 bytes, the same for the same path, another for
    another; a name that fitted keeps its form (its cache from earlier runs is found)."""
    import bioscan_rebuild.ingest.inventory as inv

    deep = tmp_path.joinpath(*(f"deep_folder_name_{i:02d}" for i in range(12)))
    names = {job_name(deep / "inventory.parquet"), job_name(deep / "other.parquet"), job_name(deep / "x" / "y")}
    assert len(names) == 3 and all(len(name.encode()) <= 233 for name in names)
    assert job_name(deep / "inventory.parquet") == job_name(deep / "inventory.parquet")
    flat = str(deep / "inventory.parquet").strip("/").replace("/", "--")
    digest = hashlib.sha256(flat.encode()).hexdigest()[:16]
    assert job_name(deep / "inventory.parquet") == f"{digest}--{flat[-215:]}" and len(flat) > 233
    accented = job_name("é" * 200)  # 400 bytes: the cut falls inside a character, which is left out
    assert accented == f"{hashlib.sha256(('é' * 200).encode()).hexdigest()[:16]}--{'é' * 107}"
    assert job_name("/") == "job" and job_name("a" * 233) == "a" * 233 and len(job_name("a" * 234)) == 233
    short = "results/ingest/images/a/inventory/g0.parquet"  # as before: the caches of earlier runs are found
    assert job_name(short) == "results--ingest--images--a--inventory--g0.parquet"
    fits = "/".join(["d" * 20] * 10) + "/g0.parquet"  # 230 bytes flat: its cache name could be made before
    assert job_name(fits) == fits.replace("/", "--") and len(job_name(fits).encode()) <= 233
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "P0.jpg").write_bytes(_photo("red"))
    listing = pa.table({"batch": ["b"], "image_path": ["P0.jpg"], "processid": ["P0"], "shard": [0]})
    pa.parquet.write_table(listing, tmp_path / "listing.parquet")
    store = ImageStore(tmp_path / "store", mode="copy", job=deep / "inventory.parquet")
    table = inv.inventory_shard(tmp_path / "listing.parquet", {"b": folder}, deep / "inventory.parquet", store)
    assert table.num_rows == 1 and table["image_problem"][0].as_py() is None
    assert (deep / "inventory.parquet").is_file() and len(list((tmp_path / "store" / "inventory-cache").iterdir())) == 1


def test_put_bytes_writes_a_read_only_file_through_the_scratch_folder(tmp_path):
    store = ImageStore(tmp_path / "store", job="images/0")
    target = store.derived_image_path(KEY, SHA, "cropped")
    assert store.put_bytes(target, b"derived") == target
    assert target.read_bytes() == b"derived" and stat.S_IMODE(target.stat().st_mode) == 0o444
    assert store.scratch.is_dir() and not list(store.scratch.iterdir())  # the temporary file was renamed away


def test_a_failed_write_leaves_nothing_and_raises_the_writers_error(tmp_path):
    store = ImageStore(tmp_path / "store", job="images/0")
    target = store.derived_path(KEY, SHA)
    temporaries = []

    def half_write(temporary):
        temporaries.append(Path(temporary))
        Path(temporary).write_bytes(b"half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        store._commit(target, half_write)
    # written as a .tmp file in the job's own scratch folder, removed on failure; nothing under the final name
    assert temporaries[0].parent == store.scratch and temporaries[0].suffix == ".tmp"
    assert not temporaries[0].exists() and not target.exists()

    def link_failed(temporary):  # as a hard link that fails: the temporary name is already gone
        os.unlink(temporary)
        raise RuntimeError("cross-device link")

    with pytest.raises(RuntimeError, match="cross-device link"):
        store._commit(target, link_failed)
    assert not target.exists()


def test_clear_scratch_removes_only_this_jobs_leftovers(tmp_path):
    store = ImageStore(tmp_path / "store", job="images/0")
    store.clear_scratch()  # nothing there yet: not an error
    other = ImageStore(tmp_path / "store", job="images/1")
    for job in (store, other):
        job.scratch.mkdir(parents=True)
        (job.scratch / "tmp1234.tmp").write_bytes(b"half")
    store.clear_scratch()
    assert not store.scratch.exists() and (other.scratch / "tmp1234.tmp").exists()
    store.close()  # .scratch still holds the other job's folder: left alone
    assert other.scratch.is_dir()


def test_a_batch_without_its_folder_or_a_photo_job_of_another_batch_is_refused(tmp_path):
    """A listed batch with no --image-dir was a KeyError traceback; a folder that is not there made every photo
    unreadable_file (exit 0); a photo job given another batch's inventory stamped its photos with the wrong
    batch, and the shard step failed on them later."""
    from bioscan_rebuild.core.errors import InputError
    from bioscan_rebuild.core.io import write_table
    from bioscan_rebuild.images.shard import run_photo_shard
    from bioscan_rebuild.ingest.inventory import INVENTORY_SCHEMA, inventory

    listing = pa.table({"batch": ["a"], "image_path": ["P1.jpg"], "processid": ["P1"]})
    with pytest.raises(InputError, match="no image folder for batch 'a'"):
        inventory(listing, {"zz": str(tmp_path)})
    with pytest.raises(InputError, match="the image folder of batch 'a' is not a folder"):
        inventory(listing, {"a": str(tmp_path / "gone")})
    row = {field.name: None for field in INVENTORY_SCHEMA}
    row.update(batch="a", image_path="P1.jpg", processid="P1", image_problem="undecodable")
    write_table(pa.Table.from_pylist([row], schema=INVENTORY_SCHEMA), tmp_path / "inventory.parquet")
    with pytest.raises(InputError, match="an inventory of batch 'a', not of --batch 'b'"):
        run_photo_shard(tmp_path / "inventory.parquet", tmp_path / "store", tmp_path / "photos.parquet", batch="b")
    assert not (tmp_path / "photos.parquet").exists()


def test_a_change_to_the_inventory_code_but_the_photo_facts_reads_no_photo_again(tmp_path):
    """The cache of photo facts was keyed by the whole inventory module: a comment edited in its listing code read
    every photo again (5M at full scale). Now only the code that makes the facts (and Pillow's version) keys it."""
    import shutil
    import subprocess
    import sys

    from conftest import REPO

    package = tmp_path / "workflow"
    shutil.copytree(REPO / "workflow" / "bioscan_rebuild", package / "bioscan_rebuild")
    probe = "from bioscan_rebuild.ingest.inventory import facts_version; print(facts_version())"

    def version() -> str:
        env = {"PYTHONPATH": str(package), "PATH": ""}
        return subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True).stdout

    first = version()
    inventory_code = package / "bioscan_rebuild" / "ingest" / "inventory.py"
    inventory_code.write_text(inventory_code.read_text() + "\n# a comment on how files are listed\n")
    assert version() == first and len(first.strip()) == 16
    facts_code = package / "bioscan_rebuild" / "ingest" / "photo_facts.py"
    facts_code.write_text(facts_code.read_text() + "\n# a change to how facts are made\n")
    assert version() != first


def _flip_in_place(path: Path, old: bytes, new: bytes) -> None:
    """Replace ``old`` by ``new`` (as long) inside ``path``, as an edit in place or a disk fault does: the size is
    kept, the modification time moved on (set here: the test runs within one tick of the file system's clock)."""
    assert len(old) == len(new)
    data = path.read_bytes()
    assert old in data
    path.chmod(0o644)
    with open(path, "r+b") as handle:
        handle.seek(data.index(old))
        handle.write(new)
    moved = path.stat().st_mtime_ns + 1_000_000_000
    os.utime(path, ns=(moved, moved))


def test_a_stored_result_or_jpeg_whose_bytes_changed_is_made_again(tmp_path):
    """A digit changed in a photo's stored result (its size field, its box), or bytes changed inside a stored JPEG or
    the stored original, kept the size: the result was reused, and the release took the wrong value or bytes with
    exit 0 (the audit passed the changed size field; reviewer store)."""
    from bioscan_rebuild.core.pilsafe import encode_jpeg
    from bioscan_rebuild.detect.base import Detection
    from bioscan_rebuild.images.process import DerivedStore, DetectionStore, PhotoResult

    store = ImageStore(tmp_path / "store", mode="copy")
    original = encode_jpeg(np.full((8, 8, 3), 90, np.uint8))
    sha = hashlib.sha256(original).hexdigest()
    source = tmp_path / "a.jpg"
    source.write_bytes(original)
    store.put_original(source, sha, "jpeg", original)
    derived = DerivedStore(store, KEY)
    crop = encode_jpeg(np.zeros((8, 8, 3), np.uint8))
    result = PhotoResult(
        "ok",
        sha256={"cropped": hashlib.sha256(crop).hexdigest(), "original_full": sha},
        original_full_is_source=True,
        image_measurement_value=34202,
    )
    derived.save(sha, result, {"cropped": crop})
    assert derived.load(sha) == result
    _flip_in_place(derived.result_path(sha), b"34202", b"74202")
    assert derived.load(sha) is None and not derived.result_path(sha).exists()

    derived.save(sha, result, {"cropped": crop})
    stored_crop = derived.image_path(sha, "cropped")
    middle = stored_crop.read_bytes()[len(crop) // 2 : len(crop) // 2 + 4]
    _flip_in_place(stored_crop, middle, bytes(b ^ 0xFF for b in middle))
    assert derived.load(sha) is None and not stored_crop.exists()

    derived.save(sha, result, {"cropped": crop})
    stored_original = store.original_path(sha, "jpeg")
    _flip_in_place(stored_original, original[20:24], bytes(b ^ 0xFF for b in original[20:24]))
    assert derived.load(sha) is None  # the photo job reads the delivery again and repairs the stored original

    store.repair_original(sha, "jpeg", original)
    derived.save(sha, result, {"cropped": crop})
    os.utime(stored_crop, ns=(1, 1))  # a copy of the store that did not keep the times: the bytes are the same
    assert derived.load(sha) == result
    assert json.loads(derived.result_path(sha).read_bytes())["files"]["cropped"][1] == 1  # hashed once, not again

    # a result an older version wrote (no seal, no fingerprints) is trusted as before, and sealed
    legacy = {key: value for key, value in json.loads(derived.result_path(sha).read_bytes()).items()}
    del legacy["_sha256"], legacy["files"]
    derived.result_path(sha).write_bytes(json.dumps(legacy, sort_keys=True).encode())
    assert derived.load(sha) == result and "_sha256" in json.loads(derived.result_path(sha).read_bytes())

    detections = DetectionStore(store, KEY)
    detections.save(sha, Detection("ok", (475, 10, 600, 90), pixel_count=5, score=0.5, candidates=1))
    assert detections.load(sha).box == (475, 10, 600, 90)
    _flip_in_place(store.detection_path(KEY, sha), b"475", b"575")
    assert detections.load(sha) is None
