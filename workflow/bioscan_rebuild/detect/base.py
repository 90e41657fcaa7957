"""Specimen detection: the interface every backend implements, and the shared evaluation helpers.

A detector takes one RGB photo (``original_full`` resolution, normally 1024x768) and returns a
``Detection``: a status, the tight box around the specimen in that image's pixels, and the
organism's pixel count at that resolution. Unlike the published DETR tool, a detector here may
say ``no_object`` (an empty well).

Backends (chosen in the config, ``images.detector.backend``):
- ``classical`` (default; CPU, no weights): ``detect_classical.ClassicalDetector``.
- ``yolo`` (ultralytics; GPU when present, else CPU) and ``onnx`` (the exported YOLO model on
  onnxruntime): ``detect_yolo``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

# Status codes a detector may return (the image stage adds decode/size statuses of its own).
DETECTOR_STATUSES = ("ok", "no_object", "multiple_candidates")


@dataclass(frozen=True)
class Detection:
    status: str  # one of DETECTOR_STATUSES
    box: tuple[int, int, int, int] | None  # tight box (x0, y0, x1, y1), x1/y1 exclusive; None if no_object
    pixel_count: int | None = None  # organism mask pixels at the input image's resolution
    score: float = 0.0  # backend-specific confidence, higher = surer
    candidates: int = 0  # separate objects that cleared the bar before merging/choosing
    mask: np.ndarray | None = field(default=None, repr=False, compare=False)  # bool (H, W), when known


class Detector(Protocol):
    name: str

    def params(self) -> dict:
        """Everything that changes the output (parameters, model hash); keys derived images."""

    def detect(self, image: np.ndarray) -> Detection:
        """One RGB uint8 (H, W, 3) image."""

    def detect_batch(self, images: list[np.ndarray], halves: list[np.ndarray] | None = None) -> list[Detection]:
        """Several images at once (backends that batch, e.g. YOLO on a GPU, override this). ``halves``:
        optionally the same images reduced 2x (INTER_AREA), which the caller has anyway; may be ignored."""


def iou(a, b) -> float:
    """Intersection over union of two (x0, y0, x1, y1) boxes with exclusive ends."""
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def dev_split(processid: str) -> str:
    """Deterministic halves of shared/realdata/imgfilter-dev: 'train' (tune or train on it) or
    'holdout' (score on it). By the second hex digit of md5(processid); the set itself was chosen
    by the first digit, so this split is independent of that."""
    return "holdout" if int(hashlib.md5(processid.encode()).hexdigest()[1], 16) % 2 else "train"


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
    """One entry per image of a COCO file as shared/realdata/imgfilter-dev writes it:
    `bbox` = [x, y, w, h]; [0, 0, 0, 0] marks an empty well."""
    coco = json.loads(Path(coco_path).read_text())
    by_image: dict[int, list[dict]] = {}
    for annotation in coco["annotations"]:
        by_image.setdefault(annotation["image_id"], []).append(annotation)
    truths = []
    for image in sorted(coco["images"], key=lambda item: item["file_name"]):
        boxes, area = [], 0.0
        for annotation in by_image.get(image["id"], []):
            x, y, w, h = annotation["bbox"]
            if w <= 0 or h <= 0:
                continue
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


def make_detector(backend: str = "classical", **params) -> Detector:
    """Build a detector by name; heavy backends are imported only when asked for."""
    if backend == "classical":
        from bioscan_rebuild.detect.classical import ClassicalDetector

        return ClassicalDetector(**params)
    if backend == "yolo":
        from bioscan_rebuild.detect.yolo import YoloDetector

        return YoloDetector(**params)
    if backend == "onnx":
        from bioscan_rebuild.detect.yolo import OnnxDetector

        return OnnxDetector(**params)
    raise ValueError(f"unknown detector backend {backend!r} (classical, yolo, onnx)")
