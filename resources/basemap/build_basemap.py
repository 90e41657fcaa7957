"""Build the offline basemap `workflow/bioscan_rebuild/stats/data/land_110m.json` from the npm package world-atlas.

The statistics stage draws its site map on Natural Earth 1:110m land (public domain). The run must not download
anything, so the polygons ship as package data; this script is how that file was made, and how anyone can remake
it byte for byte (development time only, needs npm once):

    tmp=$(mktemp -d) && (cd "$tmp" && npm pack world-atlas@2.0.2 && tar xzf world-atlas-2.0.2.tgz)
    .venv/bin/python resources/basemap/build_basemap.py "$tmp/package/land-110m.json"

What it does to the TopoJSON (https://github.com/topojson/topojson-specification):
1. delta-decodes the quantized arcs and applies the transform (lon = x * scale + translate);
2. builds each polygon ring from its arc indices (a negative index ~i is arc i reversed; consecutive arcs share
   their joining point, kept once);
3. cuts the rings that cross the antimeridian into pieces inside [-180, 180]: world-atlas keeps spherical rings
   (Eurasia, Fiji and Wrangel Island jump from +179 to -180; Antarctica winds around the pole with no polar edge),
   which a flat lon/lat map would draw as bands across the whole world. Each ring is unwrapped to continuous
   longitudes, a ring around a pole gets the polar edge back, and the planar polygon is clipped to the three
   360° strips around [-180, 180] and shifted home;
4. orients exterior rings clockwise and holes (the Caspian Sea) anticlockwise, so one compound path filled with
   the nonzero rule (matplotlib's and SVG's default) leaves the holes open;
5. rounds to 2 decimals (about 1 km, far below the 1:110m generalisation) and drops repeated points.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

# The input this file was built from: world-atlas 2.0.2, land-110m.json (Natural Earth 4.1.0).
SOURCE_SHA256 = "ead5f68119c49a9250902e7da303bcb209341bbb8fefe7369a439b48b704658a"
SOURCE = "world-atlas@2.0.2 land-110m.json (Natural Earth 4.1.0, 1:110m land), https://github.com/topojson/world-atlas"
DEFAULT_OUT = Path(__file__).resolve().parents[2] / "workflow/bioscan_rebuild/stats/data/land_110m.json"
DECIMALS = 2

Point = tuple[float, float]


def decode_arcs(topology: dict) -> list[list[Point]]:
    """Absolute lon/lat points of every arc (quantized topologies store deltas in integer grid units)."""
    (sx, sy), (tx, ty) = topology["transform"]["scale"], topology["transform"]["translate"]
    arcs = []
    for arc in topology["arcs"]:
        x = y = 0
        points = []
        for dx, dy in arc:
            x += dx
            y += dy
            points.append((x * sx + tx, y * sy + ty))
        arcs.append(points)
    return arcs


def ring_points(arc_indices: list[int], arcs: list[list[Point]]) -> list[Point]:
    points: list[Point] = []
    for index in arc_indices:
        arc = arcs[index] if index >= 0 else arcs[~index][::-1]
        points.extend(arc if not points else arc[1:])
    return points


def unwrap(ring: list[Point]) -> list[Point]:
    """Continuous longitudes: a step over 180° is the antimeridian, not a trip round the world."""
    out = [ring[0]]
    for lon, lat in ring[1:]:
        prev = out[-1][0]
        while lon - prev > 180:
            lon -= 360
        while lon - prev < -180:
            lon += 360
        out.append((lon, lat))
    drift = out[-1][0] - out[0][0]
    if abs(drift) > 180:
        # The ring winds round a pole (Antarctica): close it along the pole so the planar polygon covers it.
        pole = -90.0 if sum(lat for _, lat in out) < 0 else 90.0
        out += [(out[-1][0], pole), (out[0][0], pole), out[0]]
    return out


def _clip_half(ring: list[Point], x: float, keep_left: bool) -> list[Point]:
    """Sutherland–Hodgman against one vertical line (the strip is convex, so two passes clip to it)."""

    def inside(p: Point) -> bool:
        return p[0] <= x if keep_left else p[0] >= x

    def cross(p: Point, q: Point) -> Point:
        t = (x - p[0]) / (q[0] - p[0])
        return (x, p[1] + t * (q[1] - p[1]))

    out: list[Point] = []
    for k in range(len(ring) - 1):
        p, q = ring[k], ring[k + 1]
        if inside(q):
            if not inside(p):
                out.append(cross(p, q))
            out.append(q)
        elif inside(p):
            out.append(cross(p, q))
    if out and out[0] != out[-1]:
        out.append(out[0])
    return out


def signed_area(ring: list[Point]) -> float:
    return sum(ring[k][0] * ring[k + 1][1] - ring[k + 1][0] * ring[k][1] for k in range(len(ring) - 1)) / 2


def cut_at_antimeridian(ring: list[Point]) -> list[list[Point]]:
    """Pieces of a ring inside [-180, 180]; a ring that stays inside comes back unchanged."""
    ring = unwrap(ring)
    pieces = []
    for shift in (-360.0, 0.0, 360.0):
        lo, hi = -180.0 - shift, 180.0 - shift
        piece = _clip_half(_clip_half(ring, lo, keep_left=False), hi, keep_left=True)
        if len(piece) >= 4 and abs(signed_area(piece)) > 1e-9:
            pieces.append([(lon + shift, lat) for lon, lat in piece])
    return pieces


def tidy(ring: list[Point], hole: bool) -> list[list[float]]:
    """Round, drop repeated points, clamp to the map, and orient (exterior clockwise, hole anticlockwise)."""
    out: list[list[float]] = []
    for lon, lat in ring:
        point = [round(min(180.0, max(-180.0, lon)), DECIMALS), round(min(90.0, max(-90.0, lat)), DECIMALS)]
        if not out or point != out[-1]:
            out.append(point)
    if out[0] != out[-1]:
        out.append(out[0])
    clockwise = signed_area([(p[0], p[1]) for p in out]) < 0
    if clockwise == hole:
        out.reverse()
    return out


def build(topology: dict) -> list[list[list[float]]]:
    arcs = decode_arcs(topology)
    rings = []
    for geometry in topology["objects"]["land"]["geometries"]:
        polygons = geometry["arcs"] if geometry["type"] == "MultiPolygon" else [geometry["arcs"]]
        for polygon in polygons:
            for position, arc_indices in enumerate(polygon):
                for piece in cut_at_antimeridian(ring_points(arc_indices, arcs)):
                    ring = tidy(piece, hole=position > 0)
                    if len(ring) >= 4:
                        rings.append(ring)
    return rings


def write(rings: list[list[list[float]]], out: Path) -> None:
    # One ring per line: valid JSON that still diffs readably when the source is bumped.
    head = {"source": SOURCE, "licence": "public domain (Natural Earth)"}
    lines = [json.dumps(head, separators=(",", ":"))[:-1] + ',"rings":[']
    lines += [
        json.dumps(ring, separators=(",", ":")) + ("," if k < len(rings) - 1 else "") for k, ring in enumerate(rings)
    ]
    lines.append("]}")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("topojson", type=Path, help="land-110m.json from the world-atlas@2.0.2 npm package")
    parser.add_argument("-o", "--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    data = args.topojson.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if digest != SOURCE_SHA256:
        # Another version would silently change the shipped map; bump SOURCE/SOURCE_SHA256 on purpose instead.
        print(f"{args.topojson}: sha256 {digest}, expected {SOURCE_SHA256} (world-atlas@2.0.2)", file=sys.stderr)
        return 1
    rings = build(json.loads(data))
    write(rings, args.out)
    points = sum(len(r) for r in rings)
    print(f"{args.out}: {len(rings)} rings, {points} points, {args.out.stat().st_size} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
