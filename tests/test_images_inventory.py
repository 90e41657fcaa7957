"""Image listing and inventory on real BIOSCAN photos, plus the bad files the imager can produce."""

from __future__ import annotations

import hashlib
import io
import shutil

import numpy as np
import pyarrow as pa
from PIL import Image

from bioscan_rebuild.core.store import ImageStore, params_key
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


def test_unrecognised_names_are_rejected(tmp_path, realdata):
    folder = tmp_path / "imgs"
    (folder / "sub").mkdir(parents=True)
    shutil.copy(realdata / f"{IMGFILTER}/failed_crop_subset/AACTA1595-20.1024px.jpg", folder / "sub")
    (folder / "Thumbs.db").write_bytes(b"x")
    (folder / ".DS_Store").write_bytes(b"x")
    (folder / "notes.txt").write_text("hello")
    listing, rejects = list_images(folder, "b", n_shards=2)
    assert listing["image_path"].to_pylist() == ["sub/AACTA1595-20.1024px.jpg"]
    assert sorted(rejects["image_path"].to_pylist()) == [".DS_Store", "Thumbs.db", "notes.txt"]
    assert set(rejects["reason"].to_pylist()) == {"unrecognised_name"}


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
