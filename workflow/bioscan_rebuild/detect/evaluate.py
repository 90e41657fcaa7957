"""Score a detector against hand-drawn ground truth: COCO loading, the fixed train/holdout halves, IoU, and the
summary the accuracy benchmark and the training report print."""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from bioscan_rebuild.detect.base import Detector


def iou(a, b) -> float:
    """Intersection over union of two (x0, y0, x1, y1) boxes with exclusive ends (0 when either is None)."""
    if a is None or b is None:
        return 0.0
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def dev_split(processid: str) -> str:
    """Deterministic halves of the real dev set (COCO): 'train' (tune or train on it) or
    'holdout' (score on it). By the second hex digit of md5(processid); the set itself was chosen
    by the first digit, so this split is independent of that."""
    return "holdout" if int(hashlib.md5(processid.encode()).hexdigest()[1], 16) % 2 else "train"


def dev_fold(processid: str, folds: int) -> int:
    """The part (0 .. folds-1) of the dev set a photo falls in, for out-of-fold predictions on the train half:
    by the fourth hex digit of md5(processid), independent of ``dev_split`` (second digit) and of the
    validation photos (third digit). Deterministic; about equal parts for folds dividing 16."""
    if folds < 2:
        raise ValueError("folds must be at least 2")
    return int(hashlib.md5(processid.encode()).hexdigest()[3], 16) % folds


@dataclass(frozen=True)
class GroundTruth:
    file_name: str
    processid: str
    width: int | None  # None when the COCO file does not say
    height: int | None
    box: tuple[int, int, int, int] | None  # None = empty well
    polygon_area: float | None  # area of the specimen outline polygon(s), pixels


def _polygon_area(polygon: list[float]) -> float:
    xs, ys = np.asarray(polygon[0::2], float), np.asarray(polygon[1::2], float)
    return 0.5 * abs(float(np.dot(xs, np.roll(ys, 1)) - np.dot(ys, np.roll(xs, 1))))


def load_coco_ground_truth(coco_path: str | Path) -> list[GroundTruth]:
    """One entry per image of a COCO file as the real dev set writes it:
    `bbox` = [x, y, w, h]; [0, 0, 0, 0] marks an empty well. A file that could be misread (an annotation naming
    no image, an image without annotation, a box of no size that is not [0, 0, 0, 0], an empty-well mark beside
    a box) is refused with what is wrong: a specimen read as an empty well would teach and score the opposite."""
    coco = json.loads(Path(coco_path).read_text())
    _check_coco(coco, coco_path)
    by_image: dict[int, list[dict]] = {}
    for annotation in coco["annotations"]:
        by_image.setdefault(annotation["image_id"], []).append(annotation)
    truths = []
    for image in sorted(coco["images"], key=lambda item: item["file_name"]):
        boxes, area = [], 0.0
        for annotation in by_image.get(image["id"], []):
            x, y, w, h = annotation["bbox"]
            if w <= 0 or h <= 0:
                continue  # the empty-well mark
            boxes.append((x, y, x + w, y + h))
            segmentation = annotation.get("segmentation") or []
            if isinstance(segmentation, list):
                area += sum(_polygon_area(p) for p in segmentation if len(p) >= 6)
        box = None
        if boxes:
            box = (
                int(round(min(b[0] for b in boxes))),
                int(round(min(b[1] for b in boxes))),
                int(round(max(b[2] for b in boxes))),
                int(round(max(b[3] for b in boxes))),
            )
        name = image["file_name"]
        truths.append(
            GroundTruth(
                file_name=name,
                processid=name.split(".")[0],
                width=image.get("width"),
                height=image.get("height"),
                box=box,
                polygon_area=area if boxes else None,
            )
        )
    return truths


EMPTY_WELL = [0, 0, 0, 0]


def _finite_number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _check_coco(coco: dict, coco_path) -> None:
    """Raise ValueError naming each way ``coco`` could be misread (see ``load_coco_ground_truth``)."""
    names = {image["id"]: image["file_name"] for image in coco["images"]}
    problems, marks = [], {}
    if len(names) < len(coco["images"]):  # which image an annotation belongs to would be a guess
        ids = [image["id"] for image in coco["images"]]
        problems.append(f"image ids used twice: {sorted({i for i in ids if ids.count(i) > 1}, key=str)[:5]}")
    for annotation in coco["annotations"]:
        image_id, bbox = annotation.get("image_id"), annotation.get("bbox")
        if image_id not in names:
            problems.append(f"annotation {annotation.get('id')!r} names image_id {image_id!r}, which no image has")
            continue
        if not (isinstance(bbox, list) and len(bbox) == 4 and all(_finite_number(v) for v in bbox)):
            problems.append(f"{names[image_id]}: bbox {bbox!r} is not [x, y, width, height]")
            continue
        empty = bbox == EMPTY_WELL
        if not empty and (bbox[2] <= 0 or bbox[3] <= 0):
            problems.append(f"{names[image_id]}: bbox {bbox} has no size (an empty well is [0, 0, 0, 0])")
        marks.setdefault(image_id, set()).add(empty)
    problems += [
        f"{names[i]}: no annotation (an empty well is one with bbox [0, 0, 0, 0])" for i in names if i not in marks
    ]
    problems += [f"{names[i]}: both an empty-well mark and a box" for i, kinds in marks.items() if len(kinds) > 1]
    if problems:
        shown = "; ".join(problems[:5]) + (f"; and {len(problems) - 5} more" if len(problems) > 5 else "")
        raise ValueError(f"{coco_path}: {len(problems)} annotation problem(s): {shown}")


def load_rgb(path: str | Path) -> np.ndarray:
    """The photo's pixels upright, as the image stage decodes them (its EXIF orientation applied): a dev set from
    an imager that writes the tag was scored against pixels turned the wrong way."""
    with Image.open(path) as image:
        return np.asarray(ImageOps.exif_transpose(image).convert("RGB"))


def evaluate(detector: Detector, truths: Iterable[GroundTruth], image_dir: str | Path, batch_size: int = 16) -> dict:
    """Per-image results and summary figures.

    Summary: specimens, empty wells, mean IoU over specimens (a missed specimen counts 0), share
    with IoU >= 0.5 and >= 0.75, share of empty wells reported `no_object`, share of specimens
    wrongly reported `no_object`, and pixel count / polygon area (median, and Pearson r).
    """
    truths = list(truths)
    rows, seconds = [], 0.0
    for start in range(0, len(truths), batch_size):
        chunk = truths[start : start + batch_size]
        images = [load_rgb(Path(image_dir) / t.file_name) for t in chunk]
        t0 = time.perf_counter()
        detections = detector.detect_batch(images)
        seconds += time.perf_counter() - t0
        for truth, detection in zip(chunk, detections, strict=True):
            overlap = iou(truth.box, detection.box) if (truth.box and detection.box) else 0.0
            rows.append(
                {
                    "file_name": truth.file_name,
                    "empty_truth": truth.box is None,
                    "status": detection.status,
                    "iou": overlap,
                    "box": detection.box,
                    "truth_box": truth.box,
                    "pixel_count": detection.pixel_count,
                    "polygon_area": truth.polygon_area,
                }
            )
    return {"summary": summarize(rows, 1000 * seconds / max(1, len(rows))), "rows": rows}


def summarize(rows: list[dict], ms_per_image: float) -> dict:
    """The summary figures of `evaluate` for any subset of its per-image rows."""
    specimens = [r for r in rows if not r["empty_truth"]]
    empties = [r for r in rows if r["empty_truth"]]
    ious = np.array([r["iou"] for r in specimens]) if specimens else np.zeros(0)
    pairs = np.array(
        [(r["pixel_count"], r["polygon_area"]) for r in specimens if r["pixel_count"] and r["polygon_area"]], float
    )
    return {
        "images": len(rows),
        "specimens": len(specimens),
        "empty_wells": len(empties),
        "mean_iou": float(ious.mean()) if len(ious) else None,
        "iou_ge_0.5": float((ious >= 0.5).mean()) if len(ious) else None,
        "iou_ge_0.75": float((ious >= 0.75).mean()) if len(ious) else None,
        "empty_recognised": float(np.mean([r["status"] == "no_object" for r in empties])) if empties else None,
        "specimens_missed": float(np.mean([r["status"] == "no_object" for r in specimens])) if specimens else None,
        "pixels_over_polygon_median": float(np.median(pairs[:, 0] / pairs[:, 1])) if len(pairs) else None,
        "pixels_vs_polygon_r": float(np.corrcoef(pairs[:, 0], pairs[:, 1])[0, 1]) if len(pairs) > 2 else None,
        "ms_per_image": ms_per_image,
    }
