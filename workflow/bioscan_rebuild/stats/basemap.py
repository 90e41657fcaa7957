"""Offline world basemap: Natural Earth 1:110m land (public domain), shipped as package data.

`data/land_110m.json` was made by `resources/basemap/build_basemap.py` from the npm package world-atlas@2.0.2
(provenance in `data/SOURCE.md`). Rings are lon/lat (WGS 84 degrees) inside [-180, 180] × [-90, 90], cut at the
antimeridian; exteriors run clockwise and holes anticlockwise, so one compound path filled with the nonzero rule
draws land with its lakes open.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources

import numpy as np

DATA_FILE = "land_110m.json"


@cache
def _load() -> dict:
    # importlib.resources, not a path beside this module: the file must come from an installed wheel too.
    text = resources.files("bioscan_rebuild.stats").joinpath("data", DATA_FILE).read_text(encoding="utf-8")
    return json.loads(text)


def land_rings() -> list[np.ndarray]:
    """Closed land rings, each an (n, 2) float array of (lon, lat); fresh copies, safe to modify."""
    return [np.asarray(ring, dtype=float) for ring in _load()["rings"]]


def source() -> str:
    """Where the polygons come from, for captions and provenance."""
    data = _load()
    return f"{data['source']}; {data['licence']}"
