"""The image stage over a shard and over a folder (the `detect` command), with the store's reuse."""

from __future__ import annotations

import csv
import hashlib
import io
import os
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from PIL import Image

import bioscan_rebuild.detect.base as detect_module
import bioscan_rebuild.detect.registry as detect_registry
from bioscan_rebuild.core.errors import InputError
from bioscan_rebuild.core.pilsafe import encode_jpeg
from bioscan_rebuild.images.folder import detect_folder
from bioscan_rebuild.images.shard import run_image_shard, run_photo_shard
from bioscan_rebuild.ingest.local import ingest_local
from bioscan_rebuild.synth.photos import draw_well_photo


class _OracleDetector:
    """Returns a fixed box for every photo: the stage's mechanics, not detection quality."""

    name = "oracle"

    def __init__(self, box=(300, 200, 420, 300), **_):
        self.box = tuple(box)

    def params(self):
        return {"box": list(self.box)}

    def detect_batch(self, images, halves=None):
        return [detect_module.Detection("ok", self.box, 500, 1.0, 1) for _ in images]

    def segment_in_box(self, image, box):
        """The organism fills the left half of any box it is given."""
        mask = np.zeros(image.shape[:2], bool)
        mask[box[1] : box[3], box[0] : (box[0] + box[2]) // 2] = True
        return mask


def _use_oracle(monkeypatch):
    monkeypatch.setattr(detect_registry, "make_detector", lambda backend, **params: _OracleDetector(**params))
    monkeypatch.setattr("bioscan_rebuild.images.shard.make_detector", lambda b, **p: _OracleDetector(**p))
    monkeypatch.setattr("bioscan_rebuild.images.folder.make_detector", lambda b, **p: _OracleDetector(**p))


def _photos(folder, n=5, seed=0):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        (folder / f"P{i}-21.jpg").write_bytes(encode_jpeg(draw_well_photo(rng).image))


def _ingest(tmp_path, n: int):
    """Records P0-21 ... of a metadata-less export joined with tmp_path/photos: the shard's records table."""
    export = tmp_path / "x.tsv"
    header = ["processid", "sampleid", "bin_uri", "coord", "marker_code", "nucraw", "province", "country"]
    header += ["phylum", "class", "order", "family", "subfamily", "genus", "species"]
    lines = ["\t".join(header)] + ["\t".join([f"P{i}-21"] + ["None"] * (len(header) - 1)) for i in range(n)]
    export.write_text("\n".join(lines) + "\n")
    ingest_local([export], [tmp_path / "photos"], tmp_path / "ingest", shards=1, store=None)
    return tmp_path / "ingest" / "shards" / "shard-000" / "records.parquet"


def _correction_outcomes(tmp_path, corrections, record_rejects=()) -> tuple[dict, list[str]]:
    """summarize_shards over tmp_path/out with the corrections file: the outcome counts and each row's outcome."""
    from bioscan_rebuild.images.shard import summarize_shards

    out = summarize_shards(
        [tmp_path / "out" / "summary.json"],
        tmp_path / "summary.json",
        image_tables=[tmp_path / "out" / "images.parquet"],
        box_corrections=corrections,
        corrections_out=tmp_path / "outcomes.tsv",
        record_rejects=record_rejects,
    )
    return out["box_corrections"], pd.read_csv(tmp_path / "outcomes.tsv", sep="\t")["outcome"].tolist()


def test_a_change_to_the_crop_or_jpeg_settings_redoes_the_crops_and_not_the_detection(tmp_path, monkeypatch):
    """`images.jpeg_quality` 90 -> 91 (or the crop's `enlarge`, `pad_color`, a gate) re-detected every photo: the
    store keyed detection and crops together (at 5.15M photos, tens of core-hours for the same boxes). The
    detection is stored under a key of its own; the crops are made again, the same bytes as a fresh store's."""
    from bioscan_rebuild.core.params import ImageParams
    from bioscan_rebuild.detect.classical import ClassicalDetector
    from bioscan_rebuild.images.process import detection_key

    _photos(tmp_path / "photos", n=4)
    _ingest(tmp_path, 4)
    inventory = tmp_path / "ingest" / "images" / "images-1" / "inventory" / "shard-000.parquet"
    dirs = {"images-1": str(tmp_path / "photos")}
    detected = []
    real = ClassicalDetector.detect_batch
    monkeypatch.setattr(
        ClassicalDetector,
        "detect_batch",
        lambda self, images, halves=None: detected.extend(images) or real(self, images, halves),
    )

    def photos(store, name, **params):
        output = tmp_path / f"{name}.parquet"
        run_photo_shard(
            inventory, tmp_path / store, output, batch="images-1", image_dirs=dirs, image_params=ImageParams(**params)
        )
        table = pq.read_table(output).to_pandas().drop(columns=["params_key", "image_params_key"])
        return table.to_dict("records")

    photos("store", "first")
    assert len(detected) == 4
    changed = {"jpeg_quality": 80, "enlarge": 0.5, "pad_color": (0, 0, 0), "max_pixels": 50_000_000}
    again = photos("store", "again", **changed)
    assert len(detected) == 4  # no photo detected again
    fresh = photos("fresh", "fresh", **changed)
    assert len(detected) == 8 and again == fresh  # the same boxes, crops and hashes as a store that never saw them
    store, fresh_store = tmp_path / "store" / "derived", tmp_path / "fresh" / "derived"
    crops = sorted(p.relative_to(fresh_store) for p in fresh_store.rglob("*.jpg"))
    assert crops and all((store / p).read_bytes() == (fresh_store / p).read_bytes() for p in crops)
    # the decode's size is the detector's input: another one detects again; a damaged detection file too
    photos("store", "size", original_full_size=(800, 600))
    assert len(detected) == 12
    key = detection_key(ImageParams(), ClassicalDetector())
    damaged = next((store / key).rglob("*.detection.json"))
    damaged.write_bytes(b"\0" * damaged.stat().st_size)  # zero-filled, of the same size
    photos("store", "damaged", **changed | {"jpeg_quality": 70})
    assert len(detected) == 13
    photos("store", "repaired", **changed | {"jpeg_quality": 71})  # written afresh: not detected every run
    assert len(detected) == 13


def test_shard_run_writes_tables_and_reuses_the_store(tmp_path, monkeypatch):
    _use_oracle(monkeypatch)
    _photos(tmp_path / "photos")
    (tmp_path / "photos" / "P9-21.jpg").write_bytes(b"\xff\xd8\xff")  # caught by ingest
    records = _ingest(tmp_path, 5)
    inventory = tmp_path / "ingest" / "images" / "images-1" / "inventory" / "shard-000.parquet"
    dirs = {"images-1": str(tmp_path / "photos")}

    def photos(name, **detector):
        return run_photo_shard(
            inventory, tmp_path / "store", tmp_path / f"{name}.parquet", batch="images-1", image_dirs=dirs, **detector
        )

    first = photos("photos1")
    assert first == {"photos": 5, "photos_processed": 5, "photos_reused": 0}  # the broken file is not a photo
    summary = run_image_shard(records, [tmp_path / "photos1.parquet"], tmp_path / "store", tmp_path / "out1")
    no_review = dict.fromkeys(("flagged", "low_confidence", "backends_disagree", "several_specimens"), 0)
    no_review |= {"box_on_rim": 0, "grey_photo": 0, "no_organism_pixels": 0}
    assert summary == {"records": 5, "status": {"ok": 5}, "review": no_review}
    table = pq.read_table(tmp_path / "out1" / "images.parquet").to_pandas()
    assert list(table["processid"]) == [f"P{i}-21" for i in range(5)]
    assert (table[["x0", "y0", "x1", "y1"]].iloc[0].tolist()) == [300, 200, 420, 300]
    assert (table["area_fraction"] == round(120 * 100 / (1024 * 768), 4)).all()
    bbox = pd.read_csv(tmp_path / "out1" / "bbox.tsv", sep="\t")
    assert list(bbox.columns) == [
        "processid",
        "width_original",
        "height_original",
        "x0",
        "y0",
        "x1",
        "y1",
        "scale_factor",
        "area_fraction",
    ]
    assert (tmp_path / "out1" / "contact_sheet.jpg").stat().st_size > 1000
    # Run again elsewhere: every photo comes from the store, outputs are byte-identical.
    second = photos("photos2")
    assert second["photos_processed"] == 0 and second["photos_reused"] == 5
    run_image_shard(records, [tmp_path / "photos2.parquet"], tmp_path / "store", tmp_path / "out2")
    for name in ("images.parquet", "bbox.tsv", "contact_sheet.jpg"):
        assert (tmp_path / "out1" / name).read_bytes() == (tmp_path / "out2" / name).read_bytes(), name
    # Derived images sit under their source hash and the parameter key.
    row = table.iloc[0]
    cropped = next((tmp_path / "store" / "derived" / row["params_key"]).rglob(f"{row['image_sha256']}.cropped.jpg"))
    assert hashlib.sha256(cropped.read_bytes()).hexdigest() == row["sha256_cropped"]
    # A stored JPEG deleted (a disk cleaned up): that photo is processed again, as the error message says to
    # (its result JSON alone used to count as stored, so every re-run kept the release failing).
    crop256 = cropped.with_name(f"{row['image_sha256']}.cropped_256.jpg")
    crop256.unlink()
    repaired = photos("photos2b")
    assert repaired["photos_processed"] == 1 and repaired["photos_reused"] == 4
    assert hashlib.sha256(crop256.read_bytes()).hexdigest() == row["sha256_cropped_256"]
    # Other parameters -> another key -> processed again, and the join takes that key's results.
    third = photos("photos3", detector_params={"box": [1, 1, 90, 90]})
    assert third["photos_processed"] == 5
    run_image_shard(records, [tmp_path / "photos3.parquet"], tmp_path / "store", tmp_path / "out3")
    moved = pq.read_table(tmp_path / "out3" / "images.parquet").to_pandas()
    assert (moved["params_key"] != row["params_key"]).all()


def _five_photos(tmp_path, monkeypatch):
    """Five records P0-21..P4-21 with photos, ingested; the oracle detector. (records, inventory, dirs, store)"""
    _use_oracle(monkeypatch)
    _photos(tmp_path / "photos")
    records = _ingest(tmp_path, 5)
    inventory = tmp_path / "ingest" / "images" / "images-1" / "inventory" / "shard-000.parquet"
    return records, inventory, {"images-1": str(tmp_path / "photos")}, tmp_path / "store"


def test_a_correction_for_a_record_whose_photo_ingest_refused_is_photo_unusable(tmp_path, monkeypatch):
    """P9-21's photo is a broken JPEG that ingest rejects (the record never reaches the image tables): its box
    correction was reported as unknown_processid, telling the maintainer the id was wrong."""
    _use_oracle(monkeypatch)
    _photos(tmp_path / "photos")
    (tmp_path / "photos" / "P9-21.jpg").write_bytes(b"\xff\xd8\xff")
    records = _ingest(tmp_path, 10)
    inventory = tmp_path / "ingest" / "images" / "images-1" / "inventory" / "shard-000.parquet"
    dirs = {"images-1": str(tmp_path / "photos")}
    run_photo_shard(inventory, tmp_path / "store", tmp_path / "photos.parquet", batch="images-1", image_dirs=dirs)
    run_image_shard(records, [tmp_path / "photos.parquet"], tmp_path / "store", tmp_path / "out")
    corrections = tmp_path / "corrections.tsv"
    corrections.write_text(
        "processid\tbox\treason\tsource\nP9-21\t1,1,50,50\tr\ts\nP8-21\tempty\tr\ts\nQ1-21\tempty\tr\ts\n"
    )
    rejects = [tmp_path / "ingest" / "shards" / "shard-000" / "rejects.parquet"]
    counts, outcomes = _correction_outcomes(tmp_path, corrections, rejects)
    # P8-21 has no photo at all: ingest refused the record (no_image); Q1-21 is no record
    assert outcomes == ["photo_unusable", "record_rejected", "unknown_processid"]
    assert counts == {"photo_unusable": 1, "record_rejected": 1, "unknown_processid": 1}


def test_box_corrections_name_records_as_ingest_does(tmp_path, monkeypatch):
    """A processid typed with a decomposed accent (E + U+0301, as macOS writes it) is the record ingest spelt in
    NFC (it was unknown_processid and its box never applied); a record ingest refused for its marker, or because
    its copies conflict, is record_rejected (unknown_processid sent the maintainer after a typo); a record of
    which one copy was kept is not refused."""
    from bioscan_rebuild.images.corrections import load_box_corrections

    _use_oracle(monkeypatch)
    folder = tmp_path / "photos"
    _photos(folder, n=3)
    (folder / "CAF\u00c91-21.jpg").write_bytes(encode_jpeg(draw_well_photo(np.random.default_rng(5)).image))
    header = ["processid", "sampleid", "bin_uri", "coord", "marker_code", "nucraw", "province", "country"]
    header += ["phylum", "class", "order", "family", "subfamily", "genus", "species"]

    def line(processid, marker="None", country="None"):
        fields = dict.fromkeys(header, "None") | {"processid": processid, "marker_code": marker, "country": country}
        return "\t".join(fields[column] for column in header)

    rows = [line("P0-21"), line("P0-21"), line("P1-21"), line("P1-21", country="Peru"), line("P2-21")]
    rows += [line("CAF\u00c91-21"), line("P7-21", marker="18S")]
    (tmp_path / "x.tsv").write_text("\n".join(["\t".join(header), *rows]) + "\n")
    ingest_local([tmp_path / "x.tsv"], [folder], tmp_path / "ingest", shards=1, store=None)
    records = tmp_path / "ingest" / "shards" / "shard-000" / "records.parquet"
    inventory = tmp_path / "ingest" / "images" / "images-1" / "inventory" / "shard-000.parquet"
    corrections = tmp_path / "corrections.tsv"
    corrections.write_text(
        "processid\tbox\treason\tsource\n"
        "CAFE\u03011-21\t1,1,50,50\tr\ts\nP7-21\tempty\tr\ts\nP1-21\tempty\tr\ts\nP0-21\t5,5,60,60\tr\ts\n"
        "Q1-21\tempty\tr\ts\n"
    )
    run_photo_shard(
        inventory,
        tmp_path / "store",
        tmp_path / "photos.parquet",
        batch="images-1",
        image_dirs={"images-1": str(folder)},
        box_corrections=load_box_corrections(corrections),
    )
    run_image_shard(records, [tmp_path / "photos.parquet"], tmp_path / "store", tmp_path / "out")
    rejects = sorted((tmp_path / "ingest").glob("*/*/rejects.parquet"))
    assert len(rejects) == 3  # the export's (P7-21's marker), the photos', the shard's (P0-21's and P1-21's copies)
    counts, outcomes = _correction_outcomes(tmp_path, corrections, rejects)
    assert outcomes == ["applied", "record_rejected", "record_rejected", "applied", "unknown_processid"]


def test_box_corrections_redo_only_their_photos_and_say_what_applied(tmp_path, monkeypatch):
    """The review queue's answer: P1 gets a maintainer's box, P2 is an empty well, Q9 is no record, P3's box
    lies outside the photo. Only P1 and P2 are redone (under keys of their own); the rest come from the store."""
    records, inventory, dirs, store = _five_photos(tmp_path, monkeypatch)
    run_photo_shard(inventory, store, tmp_path / "photos1.parquet", batch="images-1", image_dirs=dirs)
    corrections = tmp_path / "corrections.tsv"
    corrections.write_text(
        "processid\tbox\treason\tsource\n"
        "P1-21\t100,50,301,250\tfibre\treview\n"
        "P2-21\tempty\tno insect\treview\n"
        "Q9-21\t1,1,5,5\tunknown\treview\n"
        "P3-21\t2000,2000,2100,2100\toutside\treview\n"
    )
    from bioscan_rebuild.images.corrections import load_box_corrections

    second = run_photo_shard(
        inventory,
        store,
        tmp_path / "photos2.parquet",
        batch="images-1",
        image_dirs=dirs,
        box_corrections=load_box_corrections(corrections),
    )
    # P1, P2 redone; P3's correction cannot apply (outside the 1024x768 photo): detected as before, from the store
    assert second == {"photos": 5, "photos_processed": 2, "photos_reused": 3}
    summary = run_image_shard(records, [tmp_path / "photos2.parquet"], store, tmp_path / "out")
    table = pq.read_table(tmp_path / "out" / "images.parquet").to_pandas().set_index("processid")
    assert table.loc["P1-21", ["x0", "y0", "x1", "y1"]].tolist() == [100, 50, 301, 250]
    # size fields from the given box: 201 x 200 px of 1024 x 768; the segmenter's left half: 100 x 200 px
    assert table.loc["P1-21", "area_fraction"] == round(201 * 200 / (1024 * 768), 4)
    assert table.loc["P1-21", "image_measurement_value"] == (200 - 100) * 200
    assert table.loc["P2-21", "image_status"] == "no_object" and pd.isna(table.loc["P2-21", "x0"])
    assert table["box_source"].to_dict() == {
        "P0-21": "detector",
        "P1-21": "correction",
        "P2-21": "correction",
        "P3-21": "detector",
        "P4-21": "detector",
    }
    assert summary["status"] == {"no_object": 1, "ok": 4}
    first_keys = pq.read_table(tmp_path / "photos1.parquet").column("params_key").to_pylist()
    assert len(set(first_keys)) == 1 and (table.loc[["P1-21", "P2-21"], "params_key"] != first_keys[0]).all()
    counts, outcomes = _correction_outcomes(tmp_path, corrections)
    assert counts == {"applied": 2, "invalid_value": 1, "unknown_processid": 1}
    assert outcomes == ["applied", "applied", "unknown_processid", "invalid_value"]


def _images_with_box_corrections(tmp_path, records, inventory, dirs, store, corrections) -> pd.DataFrame:
    """The photo and image steps with the box corrections file: the image table by processid."""
    from bioscan_rebuild.images.corrections import load_box_corrections

    run_photo_shard(
        inventory,
        store,
        tmp_path / "photos.parquet",
        batch="images-1",
        image_dirs=dirs,
        box_corrections=load_box_corrections(corrections),
    )
    run_image_shard(records, [tmp_path / "photos.parquet"], store, tmp_path / "out")
    return pq.read_table(tmp_path / "out" / "images.parquet").to_pandas().set_index("processid")


def test_a_box_past_the_left_edge_is_clipped_and_a_good_box_replaced_by_a_refused_one_says_so(tmp_path, monkeypatch):
    """P1's box starts left of the photo: clipped and applied as one past the right edge is (it was refused as
    "not a box"). P3's good box is followed by one outside the photo: the record keeps the detector's box, and its
    good row says the later, refused one replaced it ("replaces it" alone told the maintainer it was applied)."""
    records, inventory, dirs, store = _five_photos(tmp_path, monkeypatch)
    corrections = tmp_path / "corrections.tsv"
    corrections.write_text(
        "processid\tbox\treason\tsource\n"
        "P1-21\t-5,10,100,100\tleft edge\treview\n"
        "P3-21\t400,270,540,410\tgood box\treview\n"
        "P3-21\t3000,3000,3100,3100\toutside\treview\n"
        "P4-21\t-30,-20,-2,-1\twholly outside\treview\n"
    )
    table = _images_with_box_corrections(tmp_path, records, inventory, dirs, store, corrections)
    assert table.loc["P1-21", ["x0", "y0", "x1", "y1"]].tolist() == [0, 10, 100, 100]
    assert table.loc[["P1-21", "P3-21", "P4-21"], "box_source"].tolist() == ["correction", "detector", "detector"]
    counts, outcomes = _correction_outcomes(tmp_path, corrections)
    assert outcomes == ["clipped", "superseded", "invalid_value", "invalid_value"]
    details = pd.read_csv(tmp_path / "outcomes.tsv", sep="\t")["detail"].tolist()
    assert "the record has the detector's box; fix or delete that row" in details[1]
    assert details[2].startswith("the box lies outside the photo") and details[3].startswith("the box lies outside")


def test_a_box_drawn_on_another_photo_is_not_applied_to_the_records_new_one(tmp_path, monkeypatch):
    """The template names the photo a box was drawn on (image_sha256). When the record's photo is another one by
    the next run (a redelivery replaced it), the old box used to be applied to it silently (box_source
    correction, out of the review queue); now the photo is detected, and the row says photo_changed."""
    records, inventory, dirs, store = _five_photos(tmp_path, monkeypatch)
    rows = pq.read_table(inventory).to_pandas().set_index("processid")
    sha_p1, sha_p2 = rows.loc["P1-21", "image_sha256"], rows.loc["P2-21", "image_sha256"]
    corrections = tmp_path / "corrections.tsv"
    corrections.write_text(
        "processid\tbox\treason\tsource\timage_sha256\n"
        f"P1-21\t100,50,301,250\tfibre\treview\t{sha_p1.upper()}\n"  # its photo (hex in either case)
        f"P2-21\t100,50,301,250\tfibre\treview\t{'0' * 64}\n"  # drawn on a photo P2 no longer has
        "\u200bP3-21\tempty\tno insect\treview\t\n"  # no photo named: whatever photo the record has
    )
    table = _images_with_box_corrections(tmp_path, records, inventory, dirs, store, corrections)
    assert table.loc[["P1-21", "P2-21", "P3-21"], "box_source"].tolist() == ["correction", "detector", "correction"]
    assert table.loc["P2-21", "image_sha256"] == sha_p2
    counts, outcomes = _correction_outcomes(tmp_path, corrections)
    assert outcomes == ["applied", "photo_changed", "applied"]


def test_a_record_whose_photo_was_not_processed_is_an_error_naming_it(tmp_path, monkeypatch):
    _use_oracle(monkeypatch)
    _photos(tmp_path / "photos", n=2)
    records = _ingest(tmp_path, 2)
    with pytest.raises(InputError, match="record P0-21: photo .* of batch images-1 has no processed result"):
        run_image_shard(records, [], tmp_path / "store", tmp_path / "out")


def test_detect_command_reports_boxes_in_source_pixels(tmp_path, monkeypatch, realdata):
    _use_oracle(monkeypatch)
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "big.jpg").write_bytes((realdata / "BIOSCAN-1M/dataset/bioscan_images/Diptera.jpg").read_bytes())
    (folder / "empty.jpg").write_bytes(b"")
    counts = detect_folder(folder, tmp_path / "out.csv", crop_dir=tmp_path / "crops")
    assert counts == {"ok": 1, "empty_file": 1}
    with open(tmp_path / "out.csv") as handle:
        rows = {r["file_name"]: r for r in csv.DictReader(handle)}
    big = rows["big.jpg"]
    # 2880/1024 = 2.8125: the original_full box (300, 200, 420, 300) in source pixels.
    assert [int(big[k]) for k in ("x0", "y0", "x1", "y1")] == [843, 562, 1182, 844]
    assert rows["empty.jpg"]["status"] == "empty_file" and rows["empty.jpg"]["x0"] == ""
    # The whole CSV as written, and the counts it returns agree with it. The oracle's box (300, 200, 420, 300) on the
    # 1024x768 original_full: pixel_count 500 (the oracle's), area_fraction 120*100/(1024*768) = 0.0153,
    # scale_factor min(120, 100)/256 = 0.3906.
    # The detector's confidence and the review reasons too (a box on a ruler was a plain "ok": reviewer degen).
    assert (tmp_path / "out.csv").read_text() == (
        "file_name,status,x0,y0,x1,y1,pixel_count,area_fraction,scale_factor,detector_score,needs_review,"
        "review_reason,detail\n"
        "big.jpg,ok,843,562,1182,844,500,0.0153,0.3906,1.0,False,,\n"
        "empty.jpg,empty_file,,,,,,,,,False,,0 bytes\n"
    )
    assert Counter(r["status"] for r in rows.values()) == counts
    # every package of the good photo, none of the empty one
    crops = sorted(p.relative_to(tmp_path / "crops").as_posix() for p in (tmp_path / "crops").rglob("*.jpg"))
    assert crops == [f"{package}/big.jpg" for package in ("cropped", "cropped_256", "original_256", "original_full")]


def test_detect_command_with_the_classical_detector_on_real_photos(realdata, tmp_path):
    from bioscan_rebuild.cli.main import main

    folder = realdata / "Bioscan-ImgFilter/dataset/filtered_imgs/valid"
    assert main(["detect", str(folder), str(tmp_path / "out.csv"), "--crop", str(tmp_path / "crops")]) == 0
    rows = pd.read_csv(tmp_path / "out.csv")
    assert len(rows) == 6 and set(rows["status"]) <= {"ok", "touches_edge", "multiple_candidates"}
    assert (rows["x1"] > rows["x0"]).all() and (rows["pixel_count"] > 0).all()
    assert ((rows["area_fraction"] > 0) & (rows["area_fraction"] < 1)).all()
    assert len(list((tmp_path / "crops" / "cropped_256").glob("*.jpg"))) == 6
    # the default fusion: the confidence and review reasons are the image stage's for the same photos
    from bioscan_rebuild.core.params import ImageParams
    from bioscan_rebuild.detect.registry import make_detector, make_segmenter
    from bioscan_rebuild.images.process import process_photos

    assert main(["detect", str(folder), str(tmp_path / "fused.csv"), "--backend", "fusion"]) == 0
    fused = pd.read_csv(tmp_path / "fused.csv", keep_default_na=False).set_index("file_name")
    detector = make_detector("fusion")
    names = sorted(fused.index)
    results = process_photos(
        [(folder / name).read_bytes() for name in names], detector, ImageParams(), make_segmenter("fusion", detector)
    )
    for name, (result, _) in zip(names, results, strict=True):
        row = fused.loc[name]
        assert (float(row["detector_score"]), row["review_reason"]) == (result.detector_score, ";".join(result.review))
        assert str(row["needs_review"]) == str(bool(result.review))


def test_a_shard_without_photos_loads_no_detector(tmp_path, monkeypatch):
    def refuse(backend, **params):
        raise AssertionError("a detector was built for a shard with no photo")

    monkeypatch.setattr("bioscan_rebuild.images.shard.make_detector", refuse)
    inventory = tmp_path / "inventory.parquet"
    from bioscan_rebuild.core.io import write_table
    from bioscan_rebuild.ingest.inventory import INVENTORY_SCHEMA

    write_table(INVENTORY_SCHEMA.empty_table(), inventory)
    summary = run_photo_shard(inventory, tmp_path / "store", tmp_path / "photos.parquet", batch="b", backend="yolo")
    assert summary == {"photos": 0, "photos_processed": 0, "photos_reused": 0}
    assert pq.read_table(tmp_path / "photos.parquet").num_rows == 0


def test_records_sharing_a_photo_take_their_own_boxes_and_unusable_photos_say_so(tmp_path, monkeypatch):
    """P5 has P1's photo: each record takes its own box (a correction matches its record case aside); P4 has it
    too and no correction: the detected box. P3's photo is too small to derive anything from
    (``photo_unusable``), not a bad box."""
    from bioscan_rebuild.images.corrections import load_box_corrections

    _use_oracle(monkeypatch)
    _photos(tmp_path / "photos")
    for name in ("P4-21.jpg", "P5-21.jpg"):
        (tmp_path / "photos" / name).write_bytes((tmp_path / "photos" / "P1-21.jpg").read_bytes())
    (tmp_path / "photos" / "P3-21.jpg").write_bytes(encode_jpeg(np.full((20, 20, 3), 200, np.uint8)))
    records = _ingest(tmp_path, 6)
    inventory = tmp_path / "ingest" / "images" / "images-1" / "inventory" / "shard-000.parquet"
    corrections = tmp_path / "corrections.tsv"
    corrections.write_text(
        "processid\tbox\treason\tsource\n"
        "P1-21\t100,50,301,250\tfibre\treview\n"
        "p5-21\t10,10,60,60\tthe same photo\treview\n"
        "P3-21\t1,1,5,5\ttiny photo\treview\n"
        "P2-21\tempty\tno insect\treview\n"
        "P0-21\t900,700,1100,800\tpast the edge\treview\n"
    )

    def photos(name: str) -> dict:
        return run_photo_shard(
            inventory,
            tmp_path / "store",
            tmp_path / f"{name}.parquet",
            batch="images-1",
            image_dirs={"images-1": str(tmp_path / "photos")},
            box_corrections=load_box_corrections(corrections),
        )

    counts = photos("photos")
    # 4 distinct photos; P1/P5's photo three times (two boxes, one detection), P0, P2 and P3 with their boxes
    assert counts == {"photos": 4, "photos_processed": 6, "photos_reused": 0}
    run_image_shard(records, [tmp_path / "photos.parquet"], tmp_path / "store", tmp_path / "out")
    table = pq.read_table(tmp_path / "out" / "images.parquet").to_pandas().set_index("processid")
    assert table["box_source"].to_dict() == {
        **{f"P{i}-21": "detector" for i in range(6)},
        **{p: "correction" for p in ("P0-21", "P1-21", "P2-21", "P5-21")},
    }
    boxes = table[["x0", "y0", "x1", "y1"]]
    assert boxes.loc["P1-21"].tolist() == [100, 50, 301, 250] and boxes.loc["P5-21"].tolist() == [10, 10, 60, 60]
    assert boxes.loc["P4-21"].tolist() == [300, 200, 420, 300]  # no correction: the detection
    assert table.loc["P3-21", "image_status"] == "too_small"
    assert boxes.loc["P0-21"].tolist() == [900, 700, 1024, 768]  # what lies inside the 1024 x 768 photo
    counts, outcomes = _correction_outcomes(tmp_path, corrections)
    assert counts == {"applied": 3, "clipped": 1, "photo_unusable": 1}
    assert outcomes == ["applied", "applied", "photo_unusable", "applied", "clipped"]
    # run again: every result comes from the store, the same table
    again = photos("photos2")
    assert again == {"photos": 4, "photos_processed": 0, "photos_reused": 6}
    assert (tmp_path / "photos.parquet").read_bytes() == (tmp_path / "photos2.parquet").read_bytes()


def test_detect_crops_of_photos_sharing_a_stem_do_not_overwrite_each_other(tmp_path, monkeypatch, realdata):
    """``a.jpg`` and ``a.png`` both used to write ``a.jpg`` (the later one won); a file without extension in a
    dotted folder (``x.v2/photo``) was written as ``x.jpg``."""
    _use_oracle(monkeypatch)
    folder = tmp_path / "in"
    source = (realdata / "BIOSCAN-1M/dataset/bioscan_images/Diptera.jpg").read_bytes()
    (folder / "x.v2").mkdir(parents=True)
    (folder / "a.jpg").write_bytes(source)
    Image.open(io.BytesIO(source)).save(folder / "a.png")
    (folder / "x.v2" / "photo").write_bytes(source)
    assert detect_folder(folder, tmp_path / "out.csv", crop_dir=tmp_path / "crops") == {"ok": 3}
    cropped = tmp_path / "crops" / "cropped"
    crops = sorted(p.relative_to(cropped).as_posix() for p in cropped.rglob("*.jpg"))
    assert crops == ["a.jpg.jpg", "a.png.jpg", "x.v2/photo.jpg"]


def test_detect_walks_linked_folders_and_gives_bad_names_and_links_a_row_of_their_own(tmp_path, monkeypatch, realdata):
    """``detect`` used rglob: a linked sub-folder and a broken link had no row at all, a file name that is not UTF-8
    crashed the CSV (losing the good photos' rows), and a folder named like a photo's crop (``a.jpg/``) stopped
    the crops half written. Now it walks as the workflow's inventory does."""
    _use_oracle(monkeypatch)
    folder, elsewhere = tmp_path / "in", tmp_path / "batch2"
    source = (realdata / "BIOSCAN-1M/dataset/bioscan_images/Diptera.jpg").read_bytes()
    (folder / "a.jpg").mkdir(parents=True)
    elsewhere.mkdir()
    (folder / "real.jpg").write_bytes(source)
    (folder / "a.png").write_bytes(source)
    (folder / "a.jpg" / "b.png").write_bytes(source)
    (folder / "inside").mkdir()
    (folder / "inside" / "linked.jpg").write_bytes(source)
    (folder / "more").symlink_to(folder / "inside")  # a linked folder inside: walked (each real folder once)
    (folder / "outside").symlink_to(elsewhere)  # a person's folder of links: followed wherever it points
    (elsewhere / "far.jpg").write_bytes(source)
    (folder / "broken.jpg").symlink_to(tmp_path / "nowhere.jpg")
    (folder / os.fsdecode(b"caf\xe9.jpg")).write_bytes(source)
    counts = detect_folder(folder, tmp_path / "out.csv", crop_dir=tmp_path / "crops")
    rows = pd.read_csv(tmp_path / "out.csv", dtype=str, keep_default_na=False).set_index("file_name")["status"]
    assert rows.to_dict() == {
        "broken.jpg": "broken_link",
        "caf\\xe9.jpg": "unreadable_name",
        "a.png": "ok",
        "real.jpg": "ok",
        "a.jpg/b.png": "ok",
        "inside/linked.jpg": "ok",
        "outside/far.jpg": "ok",
    }
    assert counts == {"ok": 5, "broken_link": 1, "unreadable_name": 1}
    cropped = tmp_path / "crops" / "cropped"
    crops = sorted(p.relative_to(cropped).as_posix() for p in cropped.rglob("*.jpg") if p.is_file())
    assert crops == ["a.jpg/b.jpg", "a.png.1.jpg", "inside/linked.jpg", "outside/far.jpg", "real.jpg"]


def test_a_damaged_stored_photo_is_repaired_and_a_photo_changed_after_ingest_is_never_cached(tmp_path, monkeypatch):
    """Results are cached under the photo's sha256, so the bytes read must hash to it: a truncated stored copy
    is replaced from the delivery; a delivery rewritten in place (and its hard-linked store copy) gives
    ``source_changed`` for that photo alone, every run, and no cached result."""
    from bioscan_rebuild.core.store import ImageStore

    _use_oracle(monkeypatch)
    _photos(tmp_path / "photos", n=3)
    store = ImageStore(tmp_path / "store", mode="copy")
    export = tmp_path / "x.tsv"
    header = ["processid", "sampleid", "bin_uri", "coord", "marker_code", "nucraw", "province", "country"]
    header += ["phylum", "class", "order", "family", "subfamily", "genus", "species"]
    rows = ["\t".join([f"P{i}-21"] + ["None"] * (len(header) - 1)) for i in range(3)]
    export.write_text("\n".join(["\t".join(header), *rows]) + "\n")
    ingest_local([export], [tmp_path / "photos"], tmp_path / "ingest", shards=1, store=store)
    inventory = pd.read_parquet(tmp_path / "ingest" / "images" / "images-1" / "inventory" / "shard-000.parquet")
    sha = dict(zip(inventory["image_path"], inventory["image_sha256"]))
    stored = {name: store.original_path(sha[name], "jpeg") for name in sha}

    def damage(path, data):
        path.unlink()
        path.write_bytes(data)

    def photo_shard(name, box):
        return run_photo_shard(
            tmp_path / "ingest" / "images" / "images-1" / "inventory" / "shard-000.parquet",
            tmp_path / "store",
            tmp_path / f"{name}.parquet",
            batch="images-1",
            image_dirs={"images-1": str(tmp_path / "photos")},
            detector_params={"box": box},
        )

    good = stored["P0-21.jpg"].read_bytes()
    damage(stored["P0-21.jpg"], good[:100])  # a crash or a full disk cut it short
    assert photo_shard("first", [1, 1, 90, 90])["photos_processed"] == 3
    assert stored["P0-21.jpg"].read_bytes() == good  # repaired from the delivery
    first = pq.read_table(tmp_path / "first.parquet").to_pandas()
    assert set(first["image_status"]) == {"ok"}

    # P1's delivery rewritten in place after ingest; its store copy shares the change (a hard link would)
    changed = encode_jpeg(draw_well_photo(np.random.default_rng(9)).image)
    (tmp_path / "photos" / "P1-21.jpg").write_bytes(changed)
    damage(stored["P1-21.jpg"], changed)
    for name, processed in (("second", 3), ("third", 1)):  # P1 never cached: tried again
        assert photo_shard(name, [2, 2, 90, 90])["photos_processed"] == processed
        table = pq.read_table(tmp_path / f"{name}.parquet").to_pandas().set_index("image_sha256")["image_status"]
        assert table[sha["P1-21.jpg"]] == "source_changed"
        assert (table.drop(sha["P1-21.jpg"]) == "ok").all()
    # P2: its store copy damaged and its delivery removed: gone, the same outcome; an I/O error is no outcome
    damage(stored["P2-21.jpg"], b"cut")
    delivered = tmp_path / "photos" / "P2-21.jpg"
    real_read = Path.read_bytes

    def failing_read(path):
        if path == delivered:
            raise PermissionError(13, "Permission denied")
        return real_read(path)

    monkeypatch.setattr(Path, "read_bytes", failing_read)
    with pytest.raises(OSError, match="P2-21.jpg.*Permission denied"):
        photo_shard("fourth", [3, 3, 90, 90])
    monkeypatch.setattr(Path, "read_bytes", real_read)
    delivered.unlink()
    photo_shard("fifth", [4, 4, 90, 90])  # new settings: nothing cached to fall back on
    fifth = pq.read_table(tmp_path / "fifth.parquet").to_pandas().set_index("image_sha256")["image_status"]
    assert fifth[sha["P2-21.jpg"]] == fifth[sha["P1-21.jpg"]] == "source_changed" and fifth[sha["P0-21.jpg"]] == "ok"
    records = tmp_path / "ingest" / "shards" / "shard-000" / "records.parquet"
    run_image_shard(records, [tmp_path / "fifth.parquet"], tmp_path / "store", tmp_path / "out")
    images = pq.read_table(tmp_path / "out" / "images.parquet").to_pandas().set_index("processid")
    assert images.loc["P1-21", "image_status"] == "source_changed"
    detail = images.loc["P1-21", "image_status_detail"]
    assert "P1-21.jpg" in detail and "changed after ingest" in detail


def test_crop_names_never_share_a_file_even_case_aside():
    """`a.png` and `a.png.jpg` (and `Bug.jpg`, `bug.jpg` on a case-blind disk) wrote their crops to one file."""
    from bioscan_rebuild.images.folder import _crop_names

    rels = [Path(name) for name in ("a.jpg", "a.png", "a.png.jpg", "b.jpg", "Bug.jpg", "bug.jpg", "sub/b.jpg")]
    names = _crop_names(rels)
    assert len({name.lower() for name in names.values()}) == len(rels)
    assert names["b.jpg"] == "b.jpg" and names["sub/b.jpg"] == "sub/b.jpg"  # unshared names stay as they were


def test_the_stage_commands_by_hand_take_the_photos_from_the_store_ingest_run_filled(sample_dir, tmp_path):
    """Outside Snakemake `ingest run` had no --store: `images photos` as the README shows it died with a KeyError
    traceback (the batch's folder unknown), and a release could not find its originals. With --store the photos
    come from the store; without either, one line names the missing folder."""
    import subprocess
    import sys

    from conftest import REPO

    env = {"PYTHONPATH": str(REPO / "workflow"), "PATH": "/usr/bin:/bin"}

    def cli(*args):
        return subprocess.run(
            [sys.executable, "-m", "bioscan_rebuild", *args], capture_output=True, text=True, env=env, cwd=tmp_path
        )

    batch = sample_dir / "sample-a"
    for name, store in (("stored", ["--store", "store"]), ("bare", [])):
        ran = cli(
            "ingest",
            "run",
            "--export",
            str(batch / "bold_export.tsv"),
            "--images",
            str(batch / "images"),
            "-o",
            name,
            *store,
        )
        assert ran.returncode == 0, ran.stderr[-2000:]
    inventory = "images/images-1/inventory/shard-000.parquet"
    photos = cli(
        "images",
        "photos",
        f"stored/{inventory}",
        "--batch",
        "images-1",
        "--store",
        "store",
        "--backend",
        "classical",
        "-o",
        "photos.parquet",
    )
    assert photos.returncode == 0, photos.stderr[-2000:]
    assert len(pq.read_table(tmp_path / "photos.parquet")) > 10
    bare = cli(
        "images",
        "photos",
        f"bare/{inventory}",
        "--batch",
        "images-1",
        "--store",
        "empty-store",
        "--backend",
        "classical",
        "-o",
        "none.parquet",
    )
    assert bare.returncode == 2 and "Traceback" not in bare.stderr
    assert "of batch images-1 is not in the store and no --image-dir images-1=DIR names its folder" in bare.stderr
