"""Run the image stage: the photos of each image batch's shard, then one table per shard of records.

:func:`run_photo_shard` (one job per image batch and shard, or group of shards) takes each distinct usable
photo of the batch's inventory from the content-addressed store, skips photos whose result for the same
parameters is already stored, and processes the rest in batches with the batch's detector.
:func:`run_image_shard` (one job per record shard) joins the records with those results: one table row per
record, the published bbox table and a contact sheet (``contact_sheet.py``) for a person to eyeball. A new
delivery adds photo jobs for its own batch only; the per-shard joins are cheap.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from pathlib import Path

import pyarrow as pa

from bioscan_rebuild.core.errors import InputError
from bioscan_rebuild.core.io import atomic_path, read_json, read_table, write_json, write_table
from bioscan_rebuild.core.params import CONTACT_SHEET_SIZE, ImageParams
from bioscan_rebuild.core.schemas import (
    IMAGE_PACKAGES,
    INGESTED_SCHEMA,
    REJECT_SCHEMA,
    processid_key,
    spelled_processid,
)
from bioscan_rebuild.core.store import ImageStore, params_key
from bioscan_rebuild.detect.registry import make_detector, make_segmenter
from bioscan_rebuild.images.contact_sheet import write_contact_sheet
from bioscan_rebuild.images.corrections import UNUSABLE_PHOTO, by_record, read_box_corrections
from bioscan_rebuild.images.corrections import outcomes as correction_outcomes
from bioscan_rebuild.images.process import (
    PHOTO_BATCH,
    REVIEW_REASONS,
    STAGE_VERSION,
    DerivedStore,
    DetectionStore,
    PhotoResult,
    detection_key,
    keep_freed_memory,
    process_corrected,
    process_photos,
    stage_key,
)
from bioscan_rebuild.ingest.inventory import INVENTORY_SCHEMA
from bioscan_rebuild.ingest.join import ANOTHER_COPY_KEPT

IMAGE_RECORD_SCHEMA = pa.schema(
    [
        ("processid", pa.string()),
        ("image_sha256", pa.string()),
        ("image_status", pa.string()),
        ("image_status_detail", pa.string()),
        ("source_width", pa.int64()),
        ("source_height", pa.int64()),
        ("width_original", pa.int64()),
        ("height_original", pa.int64()),
        ("x0", pa.int64()),
        ("y0", pa.int64()),
        ("x1", pa.int64()),
        ("y1", pa.int64()),
        ("crop_rotated", pa.bool_()),
        ("crop_x0", pa.int64()),
        ("crop_y0", pa.int64()),
        ("crop_x1", pa.int64()),
        ("crop_y1", pa.int64()),
        ("image_measurement_value", pa.int64()),
        ("area_fraction", pa.float64()),
        ("scale_factor", pa.float64()),
        ("sharpness", pa.float64()),
        ("detector", pa.string()),
        ("detector_score", pa.float64()),
        ("candidates", pa.int64()),
        ("params_key", pa.string()),  # the store key: image parameters + detector parameters + stage version
        ("detector_version", pa.string()),
        ("detector_params_key", pa.string()),  # params_key of the detector's own parameters (model hash included)
        ("image_params_key", pa.string()),  # params_key of the image parameters and stage version
        ("original_full_is_source", pa.bool_()),
        *[(f"sha256_{package}", pa.string()) for package in IMAGE_PACKAGES],
        ("needs_review", pa.bool_()),  # a person should look (bioscan-rebuild review)
        ("review_reason", pa.string()),  # why: REVIEW_REASONS joined by ";" (null when not)
        ("box_source", pa.string()),  # detector, or correction (images.box_corrections)
    ]
)
BBOX_COLUMNS = [
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


def result_row(processid: str, sha: str, result: PhotoResult, detector_name: str, keys: dict) -> dict:
    """One images.parquet row; ``keys``: params_key, detector_version, detector_params_key, image_params_key."""
    box = result.box or [None] * 4
    crop = result.crop_box or [None] * 4
    return {
        "processid": processid,
        "image_sha256": sha,
        "image_status": result.status,
        "image_status_detail": result.detail,
        "source_width": result.source_width,
        "source_height": result.source_height,
        "width_original": result.width_original,
        "height_original": result.height_original,
        "x0": box[0],
        "y0": box[1],
        "x1": box[2],
        "y1": box[3],
        "crop_rotated": result.crop_rotated,
        "crop_x0": crop[0],
        "crop_y0": crop[1],
        "crop_x1": crop[2],
        "crop_y1": crop[3],
        "image_measurement_value": result.image_measurement_value,
        "area_fraction": result.area_fraction,
        "scale_factor": result.scale_factor,
        "sharpness": result.sharpness,
        "detector": detector_name,
        "detector_score": result.detector_score,
        "candidates": result.candidates,
        **keys,
        "original_full_is_source": result.original_full_is_source,
        **{f"sha256_{p}": result.sha256.get(p) for p in IMAGE_PACKAGES},
        "needs_review": bool(result.review),
        "review_reason": ";".join(result.review) or None,
        "box_source": result.box_source,
    }


def _read_source(store: ImageStore, image_dirs: dict[str, str], row: dict) -> bytes | None:
    """The photo's bytes, checked against the sha256 the inventory recorded (results are cached under it): the
    stored original, else the delivered file, which then replaces a damaged stored copy. None when no bytes with
    that hash are left: the delivery was changed or removed after the ingest (and the store's hard link to it
    changed with it). Any other read error (permissions, I/O) fails the job, to be run again."""
    sha, image_format = row["image_sha256"], row["image_format"]
    data = store.read_original(sha, image_format)
    if data is not None:
        return data
    if row["batch"] not in image_dirs:  # run by hand: the store lacks it and no folder was named
        raise InputError(
            f"photo {row['image_path']} of batch {row['batch']} is not in the store and no --image-dir "
            f"{row['batch']}=DIR names its folder: give it, or ingest with --store"
        )
    delivered = Path(image_dirs[row["batch"]]) / row["image_path"]
    try:
        data = delivered.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as error:
        raise OSError(f"photo {delivered} (batch {row['batch']}): {error.strerror or error}") from error
    if hashlib.sha256(data).hexdigest() != sha:
        return None
    if store.original_path(sha, image_format).exists():
        store.repair_original(sha, image_format, data)
    return data


def _source_changed(row: dict) -> PhotoResult:
    """The result of a photo whose bytes are gone (never stored: a later run may find them again)."""
    where = f"{row['batch']}/{row['image_path']}"
    return PhotoResult(
        status="source_changed",
        detail=f"{where} (or the stored copy) is gone or no longer hashes to {row['image_sha256'][:12]}…: changed "
        "after ingest; ingest the batch again",
    )


def _read_chunk(store: ImageStore, image_dirs: dict[str, str], rows: list[dict]) -> tuple[list[int], list[bytes]]:
    """(positions, bytes) of the rows whose bytes could be read (``_read_source``)."""
    datas = [_read_source(store, image_dirs, row) for row in rows]
    readable = [i for i, data in enumerate(datas) if data is not None]
    return readable, [datas[i] for i in readable]


# One row per usable photo of an image batch's shard: where its results sit in the store (params_key); plus one
# per record whose photo takes a maintainer's box (``processid``: its processid_key; null on the shared row).
# The table's version (2: the processid column; 3: image_status_detail), a parameter of the rules: a new one
# re-writes the tables.
PHOTO_TABLE_VERSION = 3
PHOTO_SCHEMA = pa.schema(
    [
        ("batch", pa.string()),
        ("image_sha256", pa.string()),
        ("processid", pa.string()),
        ("detector", pa.string()),
        ("params_key", pa.string()),
        ("detector_version", pa.string()),
        ("detector_params_key", pa.string()),
        ("image_params_key", pa.string()),
        ("image_status", pa.string()),
        ("image_status_detail", pa.string()),  # only for results the store does not keep (``source_changed``)
    ]
)
UNCACHED_STATUSES = ("source_changed",)


def run_photo_shard(
    inventory_path,
    store_root,
    output,
    *,
    batch: str,
    backend: str = "classical",
    detector_params: dict | None = None,
    image_params: ImageParams | None = None,
    image_dirs: dict[str, str] | None = None,
    box_corrections: dict | None = None,
) -> dict:
    """Process the usable photos of one image batch's shard or group of shards (its inventory,
    ``inventory_path``) with that
    batch's detector parameters, into the store; write ``output`` (:data:`PHOTO_SCHEMA`, one row per distinct
    photo, by sha256) and return ``{"photos", "photos_processed", "photos_reused"}``. The photo of a processid in
    ``box_corrections`` (``images.corrections.load_box_corrections``) takes the maintainer's box instead of a
    detection, under a store key of its own (so only those photos are redone when the corrections change), in a
    row of that record's own: records sharing one photo each get their own box.

    The heavy work of the image stage: one job per batch and shard (group), so a new delivery adds jobs and never
    re-runs those of earlier batches. Results already stored under the same parameter key are reused."""
    params = image_params or ImageParams()
    keep_freed_memory()
    inventory = read_table(inventory_path, INVENTORY_SCHEMA).to_pylist()
    others = sorted({row["batch"] for row in inventory} - {batch})
    if others:  # its photos would be stamped with the wrong batch, and the shard step would fail on them
        raise InputError(f"{inventory_path}: an inventory of batch {others[0]!r}, not of --batch {batch!r}")
    by_key = {processid_key(processid): correction for processid, correction in (box_corrections or {}).items()}
    photos, corrected = {}, {}  # sha256 -> inventory row; (processid key, sha256) -> the maintainer's box
    named = set()  # (processid key, sha256) of every usable photo
    for row in sorted(inventory, key=lambda r: r["processid"] or ""):
        if row["image_problem"] is not None:
            continue
        record = processid_key((row["processid"] or "").strip())
        named.add((record, row["image_sha256"]))
        photos.setdefault(row["image_sha256"], row)
        if record in by_key and by_key[record].fits(row["image_sha256"]):
            corrected[(record, row["image_sha256"])] = by_key[record].box
    if not photos:  # most shards of a small delivery: no model to load
        write_table(PHOTO_SCHEMA.empty_table(), output)
        return {"photos": 0, "photos_processed": 0, "photos_reused": 0}
    detector = make_detector(backend, **(detector_params or {}))
    segmenter = make_segmenter(backend, detector)
    key = stage_key(params, detector, segmenter)
    facts = detector.params()
    keys = {
        "detector": detector.name,
        "params_key": key,
        "detector_version": None if facts.get("version") is None else str(facts["version"]),
        "detector_params_key": params_key(facts),
        "image_params_key": params_key({"stage_version": STAGE_VERSION, "image": params.as_dict()}),
    }
    store = ImageStore(store_root, mode="copy", job=f"images/{output}")  # the output path: unique to the job
    store.clear_scratch()  # what a killed run of this job left
    try:
        derived = DerivedStore(store, key)
        detections = DetectionStore(store, detection_key(params, detector))  # reused when only the crops change
        results: dict[str, PhotoResult] = {}
        fixed_results: dict[tuple[str, str], PhotoResult | None] = {}  # (sha256, fixed key) -> result, None: n/a
        todo = []
        reused = fixed = 0
        if corrected:  # the maintainer's boxes: no detection; the organism's pixels still need the segmenter
            fixer = segmenter or (detector if hasattr(detector, "segment_in_box") else make_detector("classical"))
            redo = []
            for sha, box in sorted({(sha, box) for (_, sha), box in corrected.items()}, key=str):
                fixed_key = _fixed_key(key, box)
                cached = DerivedStore(store, fixed_key).load(sha)
                if cached is None:
                    redo.append((sha, box, fixed_key))
                else:
                    fixed_results[(sha, fixed_key)] = cached
                    reused += 1
            for start in range(0, len(redo), PHOTO_BATCH):
                chunk = redo[start : start + PHOTO_BATCH]
                readable, datas = _read_chunk(store, image_dirs or {}, [photos[sha] for sha, _, _ in chunk])
                for sha, _, fixed_key in chunk:
                    fixed_results[(sha, fixed_key)] = _source_changed(photos[sha])
                boxes = [chunk[i][1] for i in readable]
                for i, (result, images) in zip(readable, process_corrected(datas, boxes, params, fixer), strict=True):
                    sha, _, fixed_key = chunk[i]
                    fixed_results[(sha, fixed_key)] = result  # None: the box lies outside the photo
                    if result is not None:
                        DerivedStore(store, fixed_key).save(sha, result, images)
                        fixed += 1
        applied = {
            (record, sha): fixed_key
            for (record, sha), box in corrected.items()
            if fixed_results[(sha, fixed_key := _fixed_key(key, box))] is not None
        }
        # the shared (detected) result: for every photo that a processid names without a box of its own
        covered = Counter(sha for _, sha in applied)
        needed = Counter(sha for _, sha in named)
        for sha in sorted(photos):
            if covered[sha] >= needed[sha]:
                continue
            cached = derived.load(sha)
            if cached is None:
                todo.append(photos[sha])
            else:
                results[sha] = cached
                reused += 1
        for start in range(0, len(todo), PHOTO_BATCH):
            chunk = todo[start : start + PHOTO_BATCH]
            readable, datas = _read_chunk(store, image_dirs or {}, chunk)
            for row in chunk:
                results[row["image_sha256"]] = _source_changed(row)
            shas = [chunk[i]["image_sha256"] for i in readable]
            done = process_photos(datas, detector, params, segmenter, stored=detections, shas=shas)
            for i, (result, images) in zip(readable, done, strict=True):
                derived.save(chunk[i]["image_sha256"], result, images)
                results[chunk[i]["image_sha256"]] = result
        rows = [
            {"batch": batch, "image_sha256": sha, "processid": None, **keys, **_status(results[sha])}
            for sha in sorted(results)
        ]
        rows += [
            {
                "batch": batch,
                "image_sha256": sha,
                "processid": record,
                **keys,
                "params_key": fixed_key,
                **_status(fixed_results[(sha, fixed_key)]),
            }
            for (record, sha), fixed_key in sorted(applied.items())
        ]
        write_table(pa.Table.from_pylist(rows, schema=PHOTO_SCHEMA), output)
    finally:
        store.close()  # a failed write removed its own temporary file; an empty scratch folder goes too
    return {"photos": len(photos), "photos_processed": len(todo) + fixed, "photos_reused": reused}


def _status(result: PhotoResult) -> dict:
    """A photo row's status columns; the detail only where the store keeps no result to read it from."""
    uncached = result.status in UNCACHED_STATUSES
    return {"image_status": result.status, "image_status_detail": result.detail if uncached else None}


def _fixed_key(stage: str, box) -> str:
    """The store key of a photo's results with a maintainer's ``box`` (None: an empty well) under stage key
    ``stage``."""
    return params_key({"stage": stage, "box": "empty" if box is None else list(box)})


def run_image_shard(
    records_path, photo_tables, store_root, outdir, *, contact_sheet_size: int = CONTACT_SHEET_SIZE
) -> dict:
    """Join one shard of ingested records (``records_path``) with the processed photos of every image batch
    for that shard (``photo_tables``, from :func:`run_photo_shard`) into ``outdir``: images.parquet (one row
    per record with a photo), bbox.tsv, contact_sheet.jpg (at most ``contact_sheet_size`` tiles) and
    summary.json, which is returned. Nothing is detected here: each result is read from the store."""
    records = read_table(records_path, INGESTED_SCHEMA).to_pylist()
    photos = {}  # (batch, sha256, processid key or None for the shared result) -> photo row
    for path in photo_tables:
        for row in read_table(path, PHOTO_SCHEMA).to_pylist():
            photos[(row["batch"], row["image_sha256"], row["processid"])] = row
    store = ImageStore(store_root, mode="copy", job=f"images/{outdir}")
    try:
        rows_out = []
        for row in sorted(records, key=lambda r: r["processid"]):
            if not row["image_sha256"]:
                continue
            where = (row["image_batch"], row["image_sha256"])
            photo = photos.get((*where, processid_key(row["processid"]))) or photos.get((*where, None))
            if photo is not None and photo["image_status"] in UNCACHED_STATUSES:
                result = PhotoResult(status=photo["image_status"], detail=photo["image_status_detail"])
            else:
                result = None if photo is None else DerivedStore(store, photo["params_key"]).load(row["image_sha256"])
            if result is None:
                raise InputError(
                    f"record {row['processid']}: photo {row['image_sha256'][:12]}… of batch {row['image_batch']} "
                    "has no processed result (its process_photos job's table or store entry is missing: give its "
                    "photo tables with --photos and the store they were made in with --store; or a JPEG of its result "
                    "was gone or damaged in the store: redo its photo jobs, snakemake --forcerun process_photos)"
                )
            keys = {k: photo[k] for k in ("params_key", "detector_version", "detector_params_key", "image_params_key")}
            rows_out.append(result_row(row["processid"], row["image_sha256"], result, photo["detector"], keys))
        table = pa.Table.from_pylist(rows_out, schema=IMAGE_RECORD_SCHEMA)
        outdir = Path(outdir)
        write_table(table, outdir / "images.parquet")
        write_bbox_tsv(table, outdir / "bbox.tsv")
        write_contact_sheet(table, store, outdir / "contact_sheet.jpg", contact_sheet_size)
        summary = {
            "records": len(records),
            "status": dict(sorted(Counter(table["image_status"].to_pylist()).items())),
            "review": review_counts(table),
        }
        write_json(summary, outdir / "summary.json")
    finally:
        store.close()
    return summary


def review_counts(table: pa.Table) -> dict:
    """Photos flagged for review: in all, and per reason (a photo may have several)."""
    counts = Counter(
        reason for reasons in table["review_reason"].to_pylist() if reasons for reason in reasons.split(";")
    )
    return {"flagged": sum(table["needs_review"].to_pylist()), **{r: counts.get(r, 0) for r in REVIEW_REASONS}}


def write_bbox_tsv(table: pa.Table, path: Path) -> None:
    """The published bbox table: one row per record with a box, in original_full pixels."""
    frame = table.select(BBOX_COLUMNS).to_pandas()
    frame = frame[frame["x0"].notna()].astype({c: "int64" for c in BBOX_COLUMNS[1:7]})
    with atomic_path(path) as temporary:
        frame.to_csv(temporary, sep="\t", index=False, lineterminator="\n")


SHARED_SHOWN = 20  # photos named in the summary


def shared_photos(image_tables) -> dict[str, list[str]]:
    """Photos that are the photo of more than one record -> those records' processids, sorted; a photo is named by
    its sha256 (the smallest of its files'). One photo copied under a second name is almost always a delivery
    mistake (two specimens cannot share a photo); each record is released with it all the same, so a person must
    look. The same pixels in another file (saved again with other metadata) are the same photo: records are
    grouped by their ``original_256`` image where they have one (made from the decoded pixels, so byte-identical
    for identical pixels), else by the file's sha256. Two passes over the shards, the first keeping only the first
    16 hex digits of each key (they tell millions of photos apart): 5.15M records in well under the 2 GB a
    whole-table job gets by default."""
    import pyarrow.compute as pc

    image_tables = list(image_tables)

    def keyed(path, columns=()) -> pa.Table:
        table = read_table(path, IMAGE_RECORD_SCHEMA, columns=[*columns, "image_sha256", "sha256_original_256"])
        pixels = pc.binary_join_element_wise("pixels:", table["sha256_original_256"], "")
        return table.append_column("key", pc.coalesce(pixels, table["image_sha256"]))

    if not image_tables:
        return {}
    chunks = [chunk for path in image_tables for chunk in pc.utf8_slice_codeunits(keyed(path)["key"], 0, 16).chunks]
    chunks = [chunk.drop_null() for chunk in chunks]
    counts = pc.value_counts(pa.chunked_array(chunks, pa.string()))  # typed: every table may be empty
    repeated = counts.filter(pc.greater(counts.field("counts"), 1)).field("values")
    groups: dict[str, list[tuple[str, str]]] = {}
    for path in image_tables if len(repeated) else ():
        table = keyed(path, ["processid"])
        hit = pc.fill_null(pc.is_in(pc.utf8_slice_codeunits(table["key"], 0, 16), value_set=repeated), False)
        rows = table.filter(hit).to_pydict()
        for processid, sha, key in zip(rows["processid"], rows["image_sha256"], rows["key"], strict=True):
            groups.setdefault(key, []).append((sha, processid))
    shared = {min(sha for sha, _ in rows): sorted(pid for _, pid in rows) for rows in groups.values() if len(rows) > 1}
    return dict(sorted(shared.items()))


def summarize_shards(
    summary_paths,
    output,
    photo_summaries=(),
    image_tables=(),
    box_corrections=None,
    corrections_out=None,
    record_rejects=(),
) -> dict:
    """Status and review counts over all shards (the image stage's part of the accounting), and, given the photo
    jobs' counts (``photo_summaries``), the photos processed and reused as of their last run (the workflow keeps
    those in its logs: they depend on what the store held, not on the data). With ``corrections_out``:
    each row of the ``box_corrections`` file with its outcome, from the shards' ``image_tables`` and, for
    records whose photo ingest rejected (``image_rejected`` in the ingest shards' ``record_rejects``: they have
    no image row), ``photo_unusable``."""
    total, review = Counter(), Counter()
    processed = reused = records = 0
    for path in summary_paths:
        data = read_json(path, "a photo shard's summary", ("status", "records"))
        total.update(data["status"])
        review.update(data.get("review", {}))
        records += data["records"]
    for path in photo_summaries:
        data = read_json(path, "a photo job's summary", ("photos_processed", "photos_reused"))
        processed += data["photos_processed"]
        reused += data["photos_reused"]
    summary = {
        "records": records,
        **({"photos_processed": processed, "photos_reused": reused} if photo_summaries else {}),
        "status": dict(sorted(total.items())),
        "review": {key: review.get(key, 0) for key in ("flagged", *REVIEW_REASONS)},
    }
    if image_tables:
        shared = shared_photos(image_tables)
        summary["shared_photos"] = {
            "photos": len(shared),
            "records": sum(len(ids) for ids in shared.values()),
            "shown": dict(list(shared.items())[:SHARED_SHOWN]),
        }
    if corrections_out:
        corrections = read_box_corrections(box_corrections)
        wanted = {processid_key(spelled_processid(processid)) for processid in corrections["processid"]}
        given = by_record(corrections)
        known, applied, unusable, clipped, changed = set(), set(), set(), set(), set()  # processid keys
        # Without corrections there is nothing to look up: 5M records' tables stay unread.
        for path in image_tables if wanted else ():
            columns = ["processid", "image_sha256", "image_status", "box_source", "x0", "y0", "x1", "y1"]
            table = read_table(path, IMAGE_RECORD_SCHEMA, columns=columns).to_pydict()
            for processid, sha, status, source, *box in zip(*(table[column] for column in columns)):
                record = processid_key(processid)
                if record not in wanted:
                    continue
                known.add(record)
                if record in given and not given[record].fits(sha):
                    changed.add(record)  # drawn on a photo the record no longer has
                if source == "correction":
                    applied.add(record)
                    if record in given and given[record].box != (None if box[0] is None else tuple(box)):
                        clipped.add(record)  # the box reached past the photo: what lies inside was applied
                if status in UNUSABLE_PHOTO:
                    unusable.add(record)
        refused = set()  # records ingest refused outright: every copy
        for path in record_rejects if wanted else ():
            rejects = read_table(path, REJECT_SCHEMA, columns=["kind", "reason", "processid"]).to_pydict()
            for kind, reason, processid in zip(rejects["kind"], rejects["reason"], rejects["processid"]):
                record = processid_key(processid or "")
                if kind != "record" or record not in wanted:
                    continue
                if reason == "image_rejected":
                    known.add(record)  # a real record: its photo was refused at ingest (empty, undecodable ...)
                    unusable.add(record)
                # a record no image table has, whose rows ingest set aside (its only row of another marker, copies
                # in conflict), not for a copy it kept
                elif reason not in ANOTHER_COPY_KEPT:
                    refused.add(record)
        frame = correction_outcomes(corrections, applied, known, unusable, clipped, changed, refused - known)
        with atomic_path(corrections_out) as temporary:
            frame.to_csv(temporary, sep="\t", index=False, lineterminator="\n")
        summary["box_corrections"] = dict(sorted(Counter(frame["outcome"]).items()))
    write_json(summary, output)
    return summary
