"""The contact sheet of an image shard: thumbnails of the originals with their boxes drawn, for
a person to eyeball (photos flagged for review first, the least confident first, then those with a status
other than ok)."""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import pyarrow as pa

from bioscan_rebuild.core.io import atomic_path
from bioscan_rebuild.core.store import ImageStore
from bioscan_rebuild.images.process import JPEG_MAX_SIDE


def whole_photo(store: ImageStore, row: dict) -> tuple[np.ndarray, float] | None:
    """A photo's whole frame (BGR) and the factor from ``original_full`` pixels (its box's frame) to its pixels:
    ``original_full``, else ``original_256``: a store in mode ``none`` holds no originals, so where the source
    itself is ``original_full`` only the derived 256-px copy is there. None when neither can be read."""
    if row.get("params_key") is None or not row.get("width_original"):
        return None  # the photo was never decoded: nothing was derived from it
    sha = row["image_sha256"]
    for package in ("original_full", "original_256"):
        path = store.package_path(row["params_key"], sha, package, bool(row["original_full_is_source"]))
        image = cv2.imread(str(path)) if path.exists() else None
        if image is not None:
            return image, image.shape[1] / row["width_original"]
    return None


def _thumbnail(store: ImageStore, row: dict, size=(256, 192)) -> np.ndarray:
    tile = np.full((size[1] + 18, size[0], 3), 255, np.uint8)
    found = whole_photo(store, row)
    if found is not None:
        image, to_image = found
        scale = min(size[0] / image.shape[1], size[1] / image.shape[0])
        small = cv2.resize(
            image, (int(image.shape[1] * scale), int(image.shape[0] * scale)), interpolation=cv2.INTER_AREA
        )
        tile[: small.shape[0], : small.shape[1]] = small
        if row["x0"] is not None:
            box = [int(round(v * to_image * scale)) for v in (row["x0"], row["y0"], row["x1"], row["y1"])]
            cv2.rectangle(tile, (box[0], box[1]), (box[2] - 1, box[3] - 1), (0, 0, 255), 2)
    color = (0, 120, 0) if row["image_status"] == "ok" and not row.get("needs_review") else (0, 0, 200)
    label = f"{row['processid']} {row['image_status']}" + (" review" if row.get("needs_review") else "")
    cv2.putText(tile, label, (2, size[1] + 13), cv2.FONT_HERSHEY_SIMPLEX, 0.38, color, 1, cv2.LINE_AA)
    return tile


def least_confident(row: dict) -> tuple[bool, float]:
    """Sort key, lowest ``detector_score`` first (the fusion backend's confidence: the chance that its answer is
    right, learned from the training photos' mistakes; the other backends' scores also grow with their
    certainty); no score first."""
    score = row.get("detector_score")
    return score is not None, score or 0.0


def sheet_order(rows: list[dict]) -> list[dict]:
    """Photos flagged for review first, the least confident of them first (as on the review page), then other
    statuses than ok, then ok ones; each group by processid."""

    def key(row: dict) -> tuple:
        flagged = bool(row.get("needs_review"))
        return (not flagged, *(least_confident(row) if flagged else (True, 0.0)), row["image_status"] == "ok")

    return sorted(rows, key=lambda row: (*key(row), row["processid"]))


def write_contact_sheet(table: pa.Table, store: ImageStore, path: Path, limit: int, columns: int = 8) -> None:
    """Originals with boxes drawn, in ``sheet_order``, at most ``limit``."""
    rows = sheet_order(table.to_pylist())[:limit]
    tiles = [_thumbnail(store, row) for row in rows] or [np.full((210, 256, 3), 255, np.uint8)]
    # a JPEG is at most JPEG_MAX_SIDE tall: the sheet keeps the rows that fit (flagged photos come first)
    tiles = tiles[: columns * (JPEG_MAX_SIDE // tiles[0].shape[0])]
    n_rows = math.ceil(len(tiles) / columns)
    blank = np.full_like(tiles[0], 255)
    tiles += [blank] * (n_rows * columns - len(tiles))
    sheet = np.vstack([np.hstack(tiles[i * columns : (i + 1) * columns]) for i in range(n_rows)])
    ok, encoded = cv2.imencode(".jpg", sheet, [cv2.IMWRITE_JPEG_QUALITY, 85])
    if not ok:
        raise RuntimeError("JPEG encoding of the contact sheet failed")
    with atomic_path(path) as temporary:
        temporary.write_bytes(encoded.tobytes())
