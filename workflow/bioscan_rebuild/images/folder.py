"""The `detect` command: the image stage over a plain folder of photos, without ingest or store."""

from __future__ import annotations

import csv
import math
from collections import Counter
from pathlib import Path

from bioscan_rebuild.core.errors import InputError
from bioscan_rebuild.core.io import atomic_path
from bioscan_rebuild.core.params import ImageParams
from bioscan_rebuild.detect.registry import make_detector, make_segmenter
from bioscan_rebuild.images.process import PHOTO_BATCH, keep_freed_memory, process_photos
from bioscan_rebuild.ingest.inventory import walk_named


def _crop_names(rels: list[Path]) -> dict[str, str]:
    """File name of each photo's crops: its path with ``.jpg`` for its extension, or appended to its whole name
    where two photos share a stem (``a.jpg``, ``a.png``), so neither overwrites the other."""
    stems = Counter(rel.with_suffix("").as_posix().lower() for rel in rels)
    names = {
        rel.as_posix(): (
            f"{rel.with_suffix('').as_posix()}.jpg"
            if stems[rel.with_suffix("").as_posix().lower()] == 1
            else f"{rel}.jpg"
        )
        for rel in rels
    }
    # still one name for two photos (`a.png` and `a.png.jpg`; `A.jpg` and `a.jpg` on a case-blind disk), or a
    # photo's name that is another crop's folder (`a.png` and `a.jpg/b.png`): numbered
    counts, used = Counter(name.lower() for name in names.values()), set()
    folders = {parent.as_posix().lower() for name in names.values() for parent in Path(name).parents}
    for rel in sorted(names):
        name, k = names[rel], 0
        while (k == 0 and counts[name.lower()] > 1) or name.lower() in used or name.lower() in folders:
            k += 1
            name = f"{rel}.{k}.jpg"
        names[rel] = name
        used.add(name.lower())
    return names


def detect_folder(
    image_dir, output_csv, *, backend="classical", detector_params=None, crop_dir=None, image_params=None
):
    """`bioscan-rebuild detect`: one CSV row per file of a folder (recursively, sorted, following links to files
    and folders; each real folder once).

    x0..y1 are the tight box in pixels of the image as given (after EXIF orientation); the pixel
    count, area_fraction and scale_factor follow the release's definitions (original_full); detector_score,
    needs_review and review_reason are the image stage's (the confidence, and why a person should look). A file
    that cannot be read gets a row of its own with the reason: ``unreadable_file``, ``unreadable_name`` (not
    UTF-8; shown with the bytes escaped), ``broken_link``, ``link_loop``, ``not_a_file``.
    """
    params = image_params or ImageParams()
    keep_freed_memory()
    detector = make_detector(backend, **(detector_params or {}))
    segmenter = make_segmenter(backend, detector)
    image_dir = Path(image_dir)
    if not image_dir.is_dir():
        raise InputError(f"{image_dir}: not a folder of photos")
    files, refused = [], []
    for text, problem, detail in walk_named(image_dir, links_outside=True):  # a person's folder: links go anywhere
        if problem is None:
            files.append(Path(text))
        else:
            refused.append((text, problem, detail))
    crop_names = _crop_names(files)
    counts = Counter()
    output_csv = Path(output_csv)
    output_csv.parent.mkdir(parents=True, exist_ok=True)
    # the detector's confidence and the review queue's reasons too, as images.parquet has them: a box on a ruler
    # was a plain "ok" here
    fields = [
        "file_name",
        "status",
        "x0",
        "y0",
        "x1",
        "y1",
        "pixel_count",
        "area_fraction",
        "scale_factor",
        "detector_score",
        "needs_review",
        "review_reason",
        "detail",
    ]
    # whole or not at all: an interrupted run left a partial CSV in place of the finished one
    with atomic_path(output_csv) as partial, open(partial, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields, lineterminator="\n")
        writer.writeheader()
        for name, status, detail in refused:  # one file's problem, a row of its own; the others go on
            counts[status] += 1
            writer.writerow({"file_name": name, "status": status, "detail": detail})
        for start in range(0, len(files), PHOTO_BATCH):
            chunk, datas = [], []
            for rel in files[start : start + PHOTO_BATCH]:
                try:
                    datas.append((image_dir / rel).read_bytes())
                    chunk.append(rel.as_posix())
                except OSError as error:
                    counts["unreadable_file"] += 1
                    row = {"file_name": rel.as_posix(), "status": "unreadable_file", "detail": error.strerror}
                    writer.writerow(row)
            for rel, (result, images) in zip(chunk, process_photos(datas, detector, params, segmenter)):
                counts[result.status] += 1
                box = [None] * 4
                if result.box:
                    sx = result.source_width / result.width_original
                    sy = result.source_height / result.height_original
                    x0, y0, x1, y1 = result.box
                    box = [
                        math.floor(x0 * sx),
                        math.floor(y0 * sy),
                        min(result.source_width, math.ceil(x1 * sx)),
                        min(result.source_height, math.ceil(y1 * sy)),
                    ]
                writer.writerow(
                    {
                        "file_name": rel,
                        "status": result.status,
                        "x0": box[0],
                        "y0": box[1],
                        "x1": box[2],
                        "y1": box[3],
                        "pixel_count": result.image_measurement_value,
                        "area_fraction": result.area_fraction,
                        "scale_factor": result.scale_factor,
                        "detector_score": result.detector_score,
                        "needs_review": bool(result.review),
                        "review_reason": ";".join(result.review),
                        "detail": result.detail,
                    }
                )
                if crop_dir is not None:
                    for package, blob in images.items():
                        target = Path(crop_dir) / package / crop_names[rel]
                        target.parent.mkdir(parents=True, exist_ok=True)
                        target.write_bytes(blob)
    return dict(counts)
