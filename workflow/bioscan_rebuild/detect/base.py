"""Specimen detection: the interface every backend implements.

A detector takes one RGB photo (``original_full`` resolution, normally 1024x768) and returns a
``Detection``: a status, the tight box around the specimen in that image's pixels, and the
organism's pixel count at that resolution. Unlike the published DETR tool, a detector here may
say ``no_object`` (an empty well).

Backends (chosen in the config, ``images.detector.backend``; built by ``registry.make_detector``):
- ``classical`` (default; CPU, no weights): ``classical.ClassicalDetector``.
- ``yolo`` (ultralytics; GPU when present, else CPU) and ``onnx`` (the exported YOLO model on
  onnxruntime): ``yolo``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from bioscan_rebuild.core.errors import InputError
from bioscan_rebuild.core.params import typed_value


class ParameterError(InputError, TypeError):
    """A detector parameter that the backend does not have, or a value of the wrong type (``"false"`` for a
    switch): a config or command line to fix. A TypeError too, as Python's own for an unknown keyword."""


def typed_parameter(owner: str, key: str, value, default):
    """``value`` as the type of ``default``, refusing what would convert silently wrong (``bool("false")`` is
    True): ``core.params.typed_value``, raising ParameterError."""
    try:
        return typed_value(f"{owner} parameter {key}", value, type(default))
    except InputError as error:
        raise ParameterError(str(error)) from None


# The values a detector parameter of this name can take, (lowest, highest; None: no bound), whichever backend has
# it: a score threshold is a fraction (conf: 25, meant as 25 %, found nothing in any photo), a size or count at
# least 1 (batch: 0 crashed mid-run).
# The workflow's start-up check reads it from this source: keep it a literal.
PARAMETER_RANGES = {
    "conf": (0.0, 1.0),
    "iou": (0.0, 1.0),
    "learned_conf": (0.0, 1.0),
    "imgsz": (32, None),
    "batch": (1, None),
    "max_det": (1, None),
    "scale": (1, None),
    "threads": (0, None),  # 0: onnxruntime's own choice
}


def parameter_out_of_range(key: str, value) -> str | None:
    """Why ``value`` cannot be detector parameter ``key`` (None: it can, or the name has no range)."""
    if key not in PARAMETER_RANGES or isinstance(value, bool) or not isinstance(value, (int, float)):
        return None  # not a number: the type check says so
    low, high = PARAMETER_RANGES[key]
    if value < low or (high is not None and value > high):
        return f"{key}: {value!r} is not {f'from {low} to {high}' if high is not None else f'{low} or more'}"
    return None


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
    review: tuple[str, ...] = ()  # why a person should look (backends that can tell; see detect.fusion)


class Detector(Protocol):
    name: str

    def params(self) -> dict:
        """Everything that changes the output (parameters, model hash); keys derived images."""

    def detect(self, image: np.ndarray) -> Detection:
        """One RGB uint8 (H, W, 3) image."""

    def detect_batch(self, images: list[np.ndarray], halves: list[np.ndarray] | None = None) -> list[Detection]:
        """Several images at once (backends that batch, e.g. YOLO on a GPU, override this). ``halves``:
        optionally the same images reduced 2x (INTER_AREA), which the caller has anyway; may be ignored."""


def as_rgb8(image) -> np.ndarray:
    """An 8-bit photo as (H, W, 3) RGB, as every backend takes it: grey (H, W) or (H, W, 1) repeated, an alpha
    channel dropped. Anything else (16-bit, float, other shapes) is a ValueError saying what it got: the image
    stage converts its photos first (``images.process``), callers of the API must too."""
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[..., 0]
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    elif image.ndim == 3 and image.shape[2] == 4:
        image = image[..., :3]
    if image.ndim != 3 or image.shape[2] != 3 or min(image.shape[:2]) < 1:
        raise ValueError(f"expected an (H, W, 3) RGB photo, got an array of shape {image.shape}")
    if image.dtype != np.uint8:
        raise ValueError(f"expected 8-bit RGB (uint8), got {image.dtype}: scale it to 0..255 first")
    return np.ascontiguousarray(image)
