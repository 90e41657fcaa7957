"""The detector model that ships with the package (``detect/models/``: the ONNX export, its fusion rule and its
model card), so the ``onnx`` and ``fusion`` backends run out of the box in the light install."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

MODEL = "specimen-yolo11n.onnx"
FUSION_RULE = "fusion.json"
MODEL_CARD = "MODEL_CARD.md"


def shipped(name: str) -> Path:
    """A file of the shipped model (package data)."""
    return Path(str(resources.files("bioscan_rebuild.detect") / "models" / name))
