"""Detector backends by name: the one place that knows them all.

Heavy backends (ultralytics, onnxruntime) are imported only when asked for, so the light install (with
onnxruntime, without torch) runs the classical, onnx and fusion backends. To add a backend: a module with a
class that implements ``base.Detector``, and one line in ``BACKENDS``.
"""

from __future__ import annotations

import importlib
import inspect
import typing

from bioscan_rebuild.detect.base import Detector, ParameterError, parameter_out_of_range, typed_parameter

BACKENDS = {  # name -> (module, class)
    "classical": ("bioscan_rebuild.detect.classical", "ClassicalDetector"),
    "yolo": ("bioscan_rebuild.detect.yolo.backends", "YoloDetector"),
    "onnx": ("bioscan_rebuild.detect.yolo.backends", "OnnxDetector"),
    "fusion": ("bioscan_rebuild.detect.fusion", "FusionDetector"),
}
# Backends that return the organism mask; the others give a box only.
GIVES_MASK = frozenset({"classical"})


def make_detector(backend: str = "classical", **params) -> Detector:
    """Build a detector by name."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown detector backend {backend!r} ({', '.join(BACKENDS)})")
    module, name = BACKENDS[backend]
    kind = getattr(importlib.import_module(module), name)
    try:
        inspect.signature(kind).bind(**params)
    except TypeError as error:  # an unknown keyword, or weights missing: the person's parameters, not a bug
        raise ParameterError(f"detector backend {backend}: {error}") from None
    try:
        hints = typing.get_type_hints(kind.__init__)
    except (NameError, TypeError):  # an annotation this Python cannot evaluate: the backend checks its own
        hints = {}
    for key, value in params.items():
        kinds = [t for t in (typing.get_args(hints.get(key)) or (hints.get(key),)) if t is not type(None)]
        if value is not None and len(kinds) == 1 and kinds[0] in (bool, int, float):
            # bool | None and the like: ``bool("false")`` is True
            params[key] = typed_parameter(f"detector backend {backend}", key, value, kinds[0]())
    for key, value in params.items():
        problem = parameter_out_of_range(key, value)
        if problem:
            raise ParameterError(f"detector backend {backend}: {problem}")
    return kind(**params)


def make_segmenter(backend: str, detector: Detector | None = None) -> Detector | None:
    """For a box-only backend, the classical segmenter that counts the organism's pixels inside its box
    (``image_measurement_value``): the backend's own classical detector where it has one (``fusion``, with the
    parameters it was given), else the default one; None when the backend gives the mask itself."""
    if backend in GIVES_MASK:
        return None
    own = getattr(detector, "classical", None)
    return own if own is not None else make_detector("classical")
