"""Score a detector against hand-drawn ground truth (COCO), as the accuracy benchmark reports it."""

from __future__ import annotations

import time
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from PIL import Image

from bioscan_rebuild.detect.base import Detector, GroundTruth, iou


def load_rgb(path: str | Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


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
